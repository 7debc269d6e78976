//! What a run shares with its fences: the framework, the program's objects, the device
//! job queues and the vector clocks.
//!
//! Scenario fences are the framework's [`Fence`]s. A job's fence goes into the real
//! reservation objects of the buffers it touches, exports and imports go through the
//! buffer's sync-file ioctls, and the framework's own waits (the implicit wait of a CPU
//! bracket, a static importer's map) wait on them. Those waits run the device jobs: the
//! fences are simulated-time fences ([`dmabuf::sim_time`]) whose simulation is this run's
//! job queue, so waiting for a job's fence runs the jobs of its device up to it, as late
//! as the program allows. An explorer runs jobs earlier, between steps, to try every
//! order of what nothing orders.
//!
//! Fences must be `Send + Sync`, and a run is single-threaded: a fence reaches its run
//! through a key into a thread-local table, so a fence that outlives its run (or crosses
//! to another thread) finds nothing to run and reports a deadlock instead of blocking.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dmabuf::fence::{Fence, FenceError, FenceOps, MonotonicTime, context_alloc, unwrap};
use dmabuf::sim_time::{Simulation, Step, sim_wait};
use dmabuf::{Attachment, BufferId, DmaBuf, Memfd, ResvUsage, System, UserMapping};
use dmabuf_sim::{CpuMapId, DeviceId};

use super::program::{BufId, FenceId, JobCmd, Program};
use super::trace::{FenceKey, TraceEvent, Tracer, TracerRef, Waiter};
use crate::sanitizer::{Sanitizer, VClock};

/// How long a device job takes in simulated time (it orders fence timestamps only).
const JOB_TIME: Duration = Duration::from_micros(100);

thread_local! {
    /// The runs alive on this thread, by key.
    static WORLDS: RefCell<HashMap<u64, Weak<World>>> = RefCell::new(HashMap::new());
}

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// A buffer variable's object at run time.
pub(crate) struct BufRt {
    /// The framework's buffer; `None` once released.
    pub(crate) handle: Option<DmaBuf>,
    /// Attachments, by device index.
    pub(crate) atts: Vec<Option<Attachment>>,
    pub(crate) umap: Option<UserMapping>,
    /// The lines of the kernel CPU brackets open, innermost last.
    pub(crate) kernel_open: Vec<u32>,
    /// The line of the user sync bracket open (`sync BUF start`), if one is.
    pub(crate) user_open: Option<u32>,
    /// The line of each device's current `map` (0: none).
    pub(crate) map_lines: Vec<u32>,
    /// Devices whose attach was refused: their later uses are not reported again.
    pub(crate) refused: Vec<bool>,
    /// Importers' own kernel mappings of the pages (`DEV vmap BUF`).
    pub(crate) importer_maps: Vec<Option<CpuMapId>>,
    /// A udmabuf's memfd, kept open while the buffer lives.
    _memfd: Option<Memfd>,
}

impl BufRt {
    pub(crate) fn new(handle: DmaBuf, devices: usize, memfd: Option<Memfd>) -> BufRt {
        BufRt {
            handle: Some(handle),
            atts: (0..devices).map(|_| None).collect(),
            umap: None,
            kernel_open: Vec::new(),
            user_open: None,
            map_lines: vec![0; devices],
            refused: vec![false; devices],
            importer_maps: vec![None; devices],
            _memfd: memfd,
        }
    }

    pub(crate) fn att(&self, dev: DeviceId) -> Option<&Attachment> {
        self.atts.get(dev.index()).and_then(Option::as_ref)
    }
}

/// The program's objects: what each variable holds now.
#[derive(Default)]
pub(crate) struct Objects {
    pub(crate) bufs: Vec<Option<BufRt>>,
    pub(crate) fences: Vec<Option<Fence>>,
    /// The framework's buffers, back to the variables that held them.
    pub(crate) ids: HashMap<BufferId, BufId>,
}

impl Objects {
    pub(crate) fn buf(&self, b: BufId) -> Option<&BufRt> {
        self.bufs.get(b.index()).and_then(Option::as_ref)
    }

    pub(crate) fn buf_mut(&mut self, b: BufId) -> Option<&mut BufRt> {
        self.bufs.get_mut(b.index()).and_then(Option::as_mut)
    }

    /// The live (not released) framework buffer of variable `b`.
    pub(crate) fn handle(&self, b: BufId) -> Option<DmaBuf> {
        self.buf(b).and_then(|x| x.handle.clone())
    }

    pub(crate) fn fence(&self, f: FenceId) -> Option<Fence> {
        self.fences.get(f.index()).cloned().flatten()
    }
}

/// A device job submitted and not run yet.
pub(crate) struct Pending {
    pub(crate) id: u64,
    pub(crate) dev: DeviceId,
    pub(crate) job: JobCmd,
    pub(crate) line: u32,
    pub(crate) frame: u64,
    pub(crate) in_loop: bool,
    /// The CPU's clock at submission: what the program did before happens before the job.
    pub(crate) submit: VClock,
    /// The fences the job waits for, as bound when it was submitted.
    pub(crate) after: Vec<(FenceId, Fence)>,
    /// The fence it signals, if it has one.
    pub(crate) fence: Option<Fence>,
}

/// The job queues and the clocks.
#[derive(Default)]
pub(crate) struct Jobs {
    /// Pending jobs in submission order; each device runs its own in order.
    pub(crate) pending: Vec<Pending>,
    pub(crate) next_id: u64,
    /// The CPU program's clock (thread 0).
    pub(crate) cpu: VClock,
    /// Each device queue's clock (thread `d + 1`).
    pub(crate) devs: Vec<VClock>,
    /// Simulated time, in nanoseconds.
    pub(crate) now: u64,
}

/// Where the program is, for the findings made there.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Pos {
    pub(crate) line: u32,
    /// The iteration of the innermost `repeat` (0 outside any).
    pub(crate) frame: u64,
    /// Whether the program is inside a `repeat`.
    pub(crate) in_loop: bool,
}

impl Pos {
    /// The 1-based iteration of the innermost loop, inside one.
    pub(crate) fn iteration(self) -> Option<u64> {
        self.in_loop.then_some(self.frame + 1)
    }
}

/// One run's shared state.
pub(crate) struct World {
    key: u64,
    /// The fence context of this run's fences.
    context: u64,
    next_seqno: Cell<u64>,
    pub(crate) prog: Rc<Program>,
    pub(crate) sys: System,
    pub(crate) san: Rc<RefCell<Sanitizer>>,
    pub(crate) objs: RefCell<Objects>,
    pub(crate) jobs: RefCell<Jobs>,
    pub(crate) pos: Cell<Pos>,
    /// How many of the framework's reports are already turned into findings: the next to
    /// read is at this index.
    pub(crate) reports_seen: Cell<usize>,
    /// Software fences a pending job will signal, by seqno: the job's id.
    pub(crate) job_of: RefCell<HashMap<u64, u64>>,
    /// The attach rule the step being run expects to refuse its attach (`expect refused`).
    pub(crate) expected_rule: RefCell<Option<String>>,
    /// Every software fence the program made, with its line.
    pub(crate) software: RefCell<Vec<(Fence, u32)>>,
    /// Set while one of the scenario's accesses runs (an explorer's hook).
    pub(crate) accessing: Option<Rc<Cell<bool>>>,
    /// Set to the line being executed (an explorer's hook).
    pub(crate) line_cell: Option<Rc<Cell<u32>>>,
    /// The run's memory bound ([`crate::runner::RunConfig::max_memory`]).
    pub(crate) max_memory: Option<u64>,
    /// Hears what the program does (the HTML report's recorder).
    pub(crate) tracer: Option<TracerRef>,
}

impl World {
    pub(crate) fn new(
        prog: Rc<Program>,
        sys: System,
        san: Rc<RefCell<Sanitizer>>,
        accessing: Option<Rc<Cell<bool>>>,
        line_cell: Option<Rc<Cell<u32>>>,
        tracer: Option<TracerRef>,
        max_memory: Option<u64>,
    ) -> Rc<World> {
        let ndev = prog.devices.len();
        let objs = Objects {
            bufs: (0..prog.buffers.len()).map(|_| None).collect(),
            fences: vec![None; prog.fences.len()],
            ids: HashMap::new(),
        };
        let jobs = Jobs { devs: vec![VClock::default(); ndev], ..Jobs::default() };
        let world = Rc::new(World {
            key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
            context: context_alloc(1),
            next_seqno: Cell::new(1),
            prog,
            sys,
            san,
            objs: RefCell::new(objs),
            jobs: RefCell::new(jobs),
            pos: Cell::new(Pos::default()),
            reports_seen: Cell::new(0),
            software: RefCell::new(Vec::new()),
            expected_rule: RefCell::new(None),
            job_of: RefCell::new(HashMap::new()),
            accessing,
            line_cell,
            max_memory,
            tracer,
        });
        WORLDS.with(|w| w.borrow_mut().insert(world.key, Rc::downgrade(&world)));
        world
    }

    /// A new fence of this run, unsignalled: a software fence (`job: None`) or job
    /// `job`'s.
    pub(crate) fn new_fence(&self, name: &str, job: Option<u64>) -> Fence {
        let seqno = self.next_seqno.get();
        self.next_seqno.set(seqno + 1);
        let ops = ScenarioFence { world: self.key, name: name.to_string(), job, clock: Mutex::new(None) };
        Fence::new(self.context, seqno, ops)
    }

    /// Tells the tracer, if there is one (the event is built only then).
    pub(crate) fn trace(&self, f: impl FnOnce(&mut dyn Tracer)) {
        if let Some(t) = &self.tracer {
            f(&mut *t.borrow_mut());
        }
    }

    /// Tells the tracer about every leaf of `f` that is one of this run's fences.
    pub(crate) fn trace_waited(&self, f: &Fence, by: Waiter) {
        if self.tracer.is_none() {
            return;
        }
        for leaf in unwrap(f) {
            if let Some(s) = leaf.ops_as::<ScenarioFence>()
                && s.world == self.key
            {
                let (fence, name) = (FenceKey(leaf.seqno()), s.name.as_str());
                self.trace(|t| t.trace(&TraceEvent::Waited { fence, name, by }));
            }
        }
    }

    pub(crate) fn set_pos(&self, line: u32, frame: u64) {
        let in_loop = self.pos.get().in_loop;
        self.pos.set(Pos { line, frame, in_loop });
        if let Some(c) = &self.line_cell {
            c.set(line);
        }
    }

    /// Runs device `dev`'s pending jobs in order, up to job `until` (all when `None`).
    pub(crate) fn run_device_until(&self, dev: DeviceId, until: Option<u64>) {
        loop {
            let p = {
                let mut jobs = self.jobs.borrow_mut();
                let Some(i) = jobs.pending.iter().position(|p| p.dev == dev) else { return };
                jobs.pending.remove(i)
            };
            let id = p.id;
            super::jobs::run_job(self, p);
            if Some(id) == until {
                return;
            }
        }
    }

    /// Runs the next job on the way to `target` signalling; false if no pending job
    /// leads there (nothing will ever signal it).
    fn step_toward(&self, target: &Fence) -> bool {
        for leaf in unwrap(target) {
            if leaf.is_signaled() {
                continue;
            }
            let job = leaf.ops_as::<ScenarioFence>().and_then(|s| s.job);
            let Some(job) = job.or_else(|| self.job_of.borrow().get(&leaf.seqno()).copied()) else { continue };
            let dev = self.jobs.borrow().pending.iter().find(|p| p.id == job).map(|p| p.dev);
            if let Some(dev) = dev {
                // The device's queue runs in order: its first job is the next step.
                let first = self.jobs.borrow().pending.iter().find(|p| p.dev == dev).map(|p| p.id);
                self.run_device_until(dev, first);
                return true;
            }
        }
        false
    }

    /// Runs the earliest submitted job; false if none is pending.
    fn step_any(&self) -> bool {
        let first = self.jobs.borrow().pending.first().map(|p| (p.dev, p.id));
        match first {
            Some((dev, id)) => {
                self.run_device_until(dev, Some(id));
                true
            }
            None => false,
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = WORLDS.try_with(|w| w.borrow_mut().remove(&self.key));
    }
}

/// The run a fence belongs to, if it is alive on this thread.
fn world(key: u64) -> Option<Rc<World>> {
    WORLDS.with(|w| w.borrow().get(&key).and_then(Weak::upgrade))
}

/// The clock a fence stands for: the join of the clocks of the scenario fences inside it
/// that have signalled (a stub, or another provider's fence, stands for nothing).
pub(crate) fn clock_of(f: &Fence) -> VClock {
    let mut c = VClock::default();
    for leaf in unwrap(f) {
        if let Some(s) = leaf.ops_as::<ScenarioFence>()
            && let Some(lc) = s.clock.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
        {
            c.join(lc);
        }
    }
    c
}

/// Signals a scenario fence with its signaller's clock; false if it had signalled already.
pub(crate) fn signal_with_clock(f: &Fence, clock: VClock) -> bool {
    if f.is_signaled() {
        return false;
    }
    if let Some(s) = f.ops_as::<ScenarioFence>() {
        *s.clock.lock().unwrap_or_else(|e| e.into_inner()) = Some(clock);
    }
    f.signal().is_ok()
}

/// Whether `f` is a software fence of a scenario (`fence F`), which the CPU signals.
pub(crate) fn is_software(f: &Fence) -> bool {
    f.ops_as::<ScenarioFence>().is_some_and(|s| s.job.is_none())
}

/// The scenario's name of a fence (its variable), for messages.
pub(crate) fn fence_name(f: &Fence) -> String {
    match f.ops_as::<ScenarioFence>() {
        Some(s) => s.name.clone(),
        None => format!("{} of {}", f.seqno(), f.timeline_name()),
    }
}

/// The name of a fence inside `f` that will never signal, if any.
pub(crate) fn stuck_leaf(f: &Fence) -> Option<String> {
    unwrap(f).find(|l| !l.is_signaled()).map(|l| fence_name(&l))
}

/// A scenario fence: a software fence the program signals, or a device job's.
struct ScenarioFence {
    world: u64,
    name: String,
    /// The job that signals it, if a job does.
    job: Option<u64>,
    /// The clock of whoever signalled it, once signalled.
    clock: Mutex<Option<VClock>>,
}

impl FenceOps for ScenarioFence {
    fn driver_name(&self) -> &str {
        "dmabuf-check"
    }

    fn timeline_name(&self) -> &str {
        &self.name
    }

    fn wait(&self, fence: &Fence, timeout: Option<Duration>) -> Option<Result<Duration, FenceError>> {
        Some(sim_wait(&RunClock { world: self.world }, fence, timeout))
    }

    fn timestamp(&self, _fence: &Fence) -> MonotonicTime {
        RunClock { world: self.world }.now()
    }
}

/// A run's job queue as a simulation in simulated time: each step runs one job.
struct RunClock {
    world: u64,
}

impl Simulation for RunClock {
    fn now(&self) -> MonotonicTime {
        MonotonicTime::from_nanos(world(self.world).map_or(0, |w| w.jobs.borrow().now))
    }

    fn step(&self, _limit: Option<MonotonicTime>) -> Step {
        match world(self.world) {
            Some(w) if w.step_any() => Step::Ran,
            _ => Step::Idle,
        }
    }

    fn step_toward(&self, target: &Fence, _limit: Option<MonotonicTime>) -> Step {
        match world(self.world) {
            Some(w) if w.step_toward(target) => Step::Ran,
            _ => Step::Idle,
        }
    }
}

/// Advances simulated time by one job.
pub(crate) fn tick_time(w: &World) {
    w.jobs.borrow_mut().now += JOB_TIME.as_nanos() as u64;
}

/// Tells the tracer that the CPU waited (implicitly, as the framework does) for every
/// fence of `buf`'s reservation object at `usage` and stricter that has signalled.
pub(crate) fn trace_resv_wait(w: &World, buf: &DmaBuf, usage: ResvUsage) {
    if w.tracer.is_none() {
        return;
    }
    let fences: Vec<Fence> = {
        let resv = buf.resv();
        let guard = resv.lock();
        guard.iter(usage).filter(|(f, _)| f.is_signaled()).map(|(f, _)| f).collect()
    };
    for f in fences {
        w.trace_waited(&f, Waiter::Cpu { implicit: true });
    }
}

/// The clock of every fence of `buf`'s reservation object at `usage` and stricter that
/// has signalled: what a waiter on the object has synchronised with.
pub(crate) fn resv_clock(buf: &DmaBuf, usage: ResvUsage) -> VClock {
    let resv = buf.resv();
    let guard = resv.lock();
    let mut c = VClock::default();
    for (f, _) in guard.iter(usage) {
        if f.is_signaled() {
            c.join(&clock_of(&f));
        }
    }
    c
}
