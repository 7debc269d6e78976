//! Snapshots: branching from a copy of the run at a choice point instead of re-running
//! the path to it.
//!
//! A run's state is the simulator, the framework (buffers, attachments, fences with their
//! callbacks, reservation objects), the runner and the sanitizer: a graph of shared
//! objects and closures that no `Clone` copies faithfully. `fork(2)` does: the child is
//! the whole run, call stack included, with its pages shared copy-on-write. So a choice
//! point inside a hardware operation is a checkpoint like any other.
//!
//! # The search
//!
//! The search is the same depth-first search as re-execution, in the same order with
//! the same states (a test holds the two to the same result): a path is a list of
//! choices, and the next path turns off the last one at its last point with an option
//! left. What changes is where the next path starts.
//!
//! - A run that reaches a point with an option left may fork there. The child goes on
//!   along the path; the parent (now a *checkpoint*) waits for it.
//! - A run that ends writes the next path's choices into memory shared by the search and
//!   exits. The path turns at point `k`; the checkpoint that serves it is the deepest
//!   one at or above `k` (the runner knows its chain of checkpoints). That checkpoint
//!   forks a child that replays the choices from its own point to `k` and goes on; the
//!   checkpoints below `k` exit. When the checkpoint's own point has no option left
//!   after this one, it takes the path itself instead of forking.
//! - A *worker* runs paths from the start: the first, and any that no checkpoint serves.
//!
//! # Where checkpoints go
//!
//! Checkpoints are processes, so a path keeps at most [`MAX_CHAIN`] of them: a checkpoint
//! at every point of a 10,000-frame run would be more processes than the system allows.
//! Depth-first search walks back up a path one point at a time, as reversing a
//! computation does, and the placement is the one for that (Griewank's bisection): going
//! forward a run forks at points 1, 2, 4, 8, ... past its last checkpoint; replaying
//! towards the point `k` where its path turns, it forks at the first point with an
//! option left past the middle, and again past the middle of what is left. So a path of
//! `L` points holds about `2 log2 L` checkpoints, and the search replays each point at
//! most `log2 L` times over instead of once per path behind it: a run of `F` frames
//! costs at most `F log F`, where re-execution costs `F^2`. That is the bound; on the
//! frame pipeline of `bench/scale.sh` the runs pass 4 to 5 choice points per state in
//! all, from 30 frames to 3,000 (`Exploration::points`), because most turns find a
//! checkpoint a few points above them. A point where no checkpoint fits (the chain is
//! full, or `fork` fails) is served by one above it, which replays to it.
//!
//! # Shared memory
//!
//! The visited states, the counts and the paths handed between processes live in
//! anonymous shared mappings created before the first fork. A class's visited set is
//! an open-addressing table of 64-bit state hashes; within a class one process runs at
//! a time (the others wait in `waitpid`), so the processes of a class take turns and
//! the table needs no lock. Line classes are independent (see the module doc of
//! [`super`]) and run in parallel, one worker process per core.
//!
//! # Bounds and failures
//!
//! Every process reads the same stop word: the deadline, `max_states` and a run over
//! `--max-memory` stop the whole search; a counterexample without a hardware move stops
//! its class and the ones after it (the shortest possible, as the sequential search
//! stops at it). `--max-memory` bounds each process's own heap; the chain shares its
//! pages, and each checkpoint holds only the pages written since it forked. A process
//! that dies (a signal, a panic) stops the search with an error naming how it died:
//! never a partial proof. Children end with `_exit`: they never return into the
//! caller's code, flush its buffers or run its destructors.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use super::trail::Trail;

/// The most checkpoints (waiting processes) one path keeps.
const MAX_CHAIN: usize = 64;

/// The longest path (in choice points) whose choices the search can hand on.
const PATH_CAP: usize = 1 << 22;

/// The most bytes of a message a child leaves for the root.
const MSG_CAP: usize = 1024;

/// Why the search stopped before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(super) enum Stop {
    /// The deadline passed.
    Timeout = 1,
    /// `max_states` states were visited.
    MaxStates = 2,
    /// A run went over `--max-memory` (the message says where).
    OverMemory = 3,
    /// A run failed: the failing path is in the failing worker's next buffer.
    Failed = 4,
    /// A process died or could not be made (the message says how).
    Died = 5,
    /// A path was longer than the search can hand on, or a visited table filled up.
    TooBig = 6,
}

impl Stop {
    fn from_u32(v: u32) -> Option<Stop> {
        [Stop::Timeout, Stop::MaxStates, Stop::OverMemory, Stop::Failed, Stop::Died, Stop::TooBig]
            .into_iter()
            .find(|s| *s as u32 == v)
    }
}

/// What every process of the search reads and writes.
#[repr(C)]
struct Global {
    /// A [`Stop`] code, 0 while running.
    stop: AtomicU32,
    /// The first class with a counterexample without moves: it and the later ones stop.
    cutoff: AtomicU64,
    /// The next line class for a worker to take.
    next_class: AtomicU64,
    /// States visited over all classes (for `max_states`).
    states: AtomicU64,
    /// The worker whose run failed ([`Stop::Failed`]), and its class.
    failed_worker: AtomicU64,
    failed_class: AtomicU64,
    msg_len: AtomicU64,
    msg: [AtomicU32; MSG_CAP / 4],
}

/// One worker's results and hand-over slots.
#[repr(C)]
struct Area {
    states: AtomicU64,
    paths: AtomicU64,
    max_depth: AtomicU64,
    /// The worker's shortest counterexample: its moves (`u64::MAX`: none), class, length.
    best_moves: AtomicU64,
    best_class: AtomicU64,
    best_len: AtomicU64,
    /// The next path, from point `next_from` on, `next_len` choices (0: none).
    next_from: AtomicU64,
    next_len: AtomicU64,
    /// Checkpoints forked.
    checkpoints: AtomicU64,
    /// States in the current class's table.
    in_table: AtomicU64,
    /// Choice points passed, replays included.
    points: AtomicU64,
}

/// An anonymous shared mapping, unmapped when dropped (only the process that made it
/// drops it: children leave with `_exit`).
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> Option<Mapping> {
        // SAFETY: a fresh anonymous mapping: no file, no address hint, nothing aliased.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        (ptr != libc::MAP_FAILED).then_some(Mapping { ptr: ptr.cast(), len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `Mapping::new` with this length, and every view
        // into it (`Region`, `Table`) is gone with the search that made it.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// The search's shared memory: the global word, an area per worker, then per worker a
/// buffer for its best counterexample and one for the next path.
#[derive(Clone, Copy)]
pub(super) struct Region {
    base: *mut u8,
    workers: usize,
}

impl Region {
    fn size(workers: usize) -> usize {
        Self::buffers_at(workers) + 2 * workers * PATH_CAP
    }

    fn buffers_at(workers: usize) -> usize {
        (size_of::<Global>() + workers * size_of::<Area>()).next_multiple_of(4096)
    }

    fn global(&self) -> &Global {
        // SAFETY: the mapping starts with a `Global` (all atomics: zeroed memory is a
        // valid value, and every process reads and writes it through atomics only).
        unsafe { &*self.base.cast::<Global>() }
    }

    fn area(&self, w: usize) -> &Area {
        assert!(w < self.workers);
        // SAFETY: the areas follow the `Global`, one per worker, inside the mapping; atomics
        // only, as for `global`.
        unsafe { &*self.base.add(size_of::<Global>()).cast::<Area>().add(w) }
    }

    /// Buffer `which` (0: best counterexample, 1: next path) of worker `w`.
    fn buffer(&self, w: usize, which: usize) -> *mut u8 {
        assert!(w < self.workers && which < 2);
        // SAFETY: inside the mapping (`size` counts two buffers per worker).
        unsafe { self.base.add(Self::buffers_at(self.workers) + (2 * w + which) * PATH_CAP) }
    }

    /// Writes a path into buffer `which` of worker `w`; a path too long for it stops the
    /// search ([`Stop::TooBig`]) and returns false.
    fn write(&self, w: usize, which: usize, bytes: &[u8]) -> bool {
        if bytes.len() > PATH_CAP {
            self.stop(Stop::TooBig, &format!("a path longer than {PATH_CAP} choice points"));
            return false;
        }
        // SAFETY: `bytes` fits the buffer; one process of a class runs at a time, and a
        // worker's buffers belong to its class, so nobody reads them while this writes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.buffer(w, which), bytes.len()) };
        true
    }

    fn read(&self, w: usize, which: usize, len: usize) -> Vec<u8> {
        let len = len.min(PATH_CAP);
        let mut v = vec![0; len];
        // SAFETY: within the buffer; the writer has exited (it was waited for) or is this
        // process.
        unsafe { std::ptr::copy_nonoverlapping(self.buffer(w, which), v.as_mut_ptr(), len) };
        v
    }

    /// Stops the search with `why` and its message, unless it stopped already.
    fn stop(&self, why: Stop, msg: &str) {
        let g = self.global();
        if g.stop.compare_exchange(0, why as u32, Relaxed, Relaxed).is_ok() {
            let bytes = msg.as_bytes();
            let len = bytes.len().min(MSG_CAP);
            for (i, chunk) in bytes[..len].chunks(4).enumerate() {
                let mut word = [0u8; 4];
                word[..chunk.len()].copy_from_slice(chunk);
                g.msg[i].store(u32::from_le_bytes(word), Relaxed);
            }
            g.msg_len.store(len as u64, Relaxed);
        }
    }

    fn stopped(&self) -> bool {
        self.global().stop.load(Relaxed) != 0
    }

    fn message(&self) -> String {
        let g = self.global();
        let len = (g.msg_len.load(Relaxed) as usize).min(MSG_CAP);
        let bytes: Vec<u8> = g.msg.iter().flat_map(|w| w.load(Relaxed).to_le_bytes()).take(len).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// A class's visited states: open addressing over 64-bit hashes (0 marks a free slot).
#[derive(Clone, Copy)]
pub(super) struct Table {
    slots: *const AtomicU64,
    mask: usize,
}

impl Table {
    /// Inserts `key`: true if it is new. `None` when the table is three quarters full.
    fn insert(&self, count: u64, key: u64) -> Option<bool> {
        if count >= (self.mask as u64 + 1) / 4 * 3 {
            return None;
        }
        let key = key.max(1);
        let mut i = key as usize & self.mask;
        loop {
            // SAFETY: `i <= mask`, inside the table's mapping; atomics only.
            let slot = unsafe { &*self.slots.add(i) };
            match slot.compare_exchange(0, key, Relaxed, Relaxed) {
                Ok(_) => return Some(true),
                Err(k) if k == key => return Some(false),
                Err(_) => i = (i + 1) & self.mask,
            }
        }
    }
}

/// A process's place in the search: which worker and class it runs for, and the chain
/// of checkpoints above it.
pub(super) struct Snap {
    region: Region,
    worker: usize,
    class: u64,
    table: Table,
    /// The points of the checkpoints above this process, in order.
    ancestors: Vec<usize>,
    /// Going forward, fork at the first point with an option left this far past the last
    /// checkpoint (doubling).
    gap: usize,
    /// Whether this is the worker itself, which runs paths from the start in a loop: with
    /// nothing to serve, it unwinds its run ([`Rewind`]) instead of exiting.
    root: bool,
    /// When this process started running from its last checkpoint (or the start).
    since: Instant,
    /// How long a run goes from there before a checkpoint pays.
    after: std::time::Duration,
}

/// The payload a worker's run unwinds with when the worker, as a checkpoint, has no
/// path left to serve: it drops the run and starts the next path from the start.
struct Rewind;

/// A checkpoint pays for itself when replaying to it costs more than forking: a fork,
/// the copy-on-write faults after it and the exit take about half a millisecond for the
/// explorer's process, and 1 ms of run before a checkpoint measured best on the frame
/// benchmark (`bench/scale.sh`).
pub(super) const CHECKPOINT_AFTER: std::time::Duration = std::time::Duration::from_millis(1);

/// `fork(2)`: `Ok(None)` in the child, `Ok(Some(pid))` in the parent.
/// The child dies with its parent (`PR_SET_PDEATHSIG`): a search whose root is killed
/// leaves no process behind, each chain falling from the top.
fn fork() -> std::io::Result<Option<libc::pid_t>> {
    // SAFETY: `getpid` has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the child runs only the search (the run and this module) and ends with
    // `_exit`; glibc's `fork` leaves `malloc` usable in the child even when other threads
    // (a progress bar's ticker, a test harness) exist in the parent.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => {
            // SAFETY: `prctl(PR_SET_PDEATHSIG, sig)` takes a signal number and touches no
            // memory; `getppid` has no preconditions.
            let orphan = unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 || libc::getppid() != parent
            };
            if orphan {
                // The parent died before the signal was armed (or it cannot be).
                exit_child(0);
            }
            Ok(None)
        }
        pid => Ok(Some(pid)),
    }
}

/// Waits for child `pid`; `Err` says how it died when it did not exit with 0.
fn wait(pid: libc::pid_t) -> Result<(), String> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer; `pid` is this process's child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("waitpid on explorer process {pid}: {e}"));
        }
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else if libc::WIFSIGNALED(status) {
        Err(format!("an explorer process ({pid}) was killed by signal {}", libc::WTERMSIG(status)))
    } else {
        Err(format!("an explorer process ({pid}) exited with status {}", libc::WEXITSTATUS(status)))
    }
}

/// Ends this child process now: no destructor, no buffered output of the parent's.
fn exit_child(code: i32) -> ! {
    // SAFETY: `_exit` only ends the process; nothing of it runs after.
    unsafe { libc::_exit(code) }
}

impl Snap {
    /// Whether a run at point `i` (with an option left) should leave a checkpoint there;
    /// `target` is the point where its path turns, while it replays towards it.
    pub(super) fn wants_checkpoint(&self, i: usize, target: Option<usize>) -> bool {
        if self.ancestors.len() >= MAX_CHAIN || self.stopped() || self.since.elapsed() < self.after {
            return false;
        }
        let anchor = self.ancestors.last().map_or(-1, |&a| a as i64);
        let i = i as i64;
        match target {
            Some(t) if (i as u64) < t as u64 => i >= anchor + (t as i64 - anchor + 1) / 2,
            Some(_) => true,
            None => i >= anchor + self.gap as i64,
        }
    }

    /// A run passed a choice point.
    pub(super) fn count_point(&self) {
        self.region.area(self.worker).points.fetch_add(1, Relaxed);
    }

    /// Whether this process exits when its run ends (a forked child; the worker goes on
    /// to its next path).
    pub(super) fn exits_after_run(&self) -> bool {
        !self.root
    }

    /// Whether the search (or this class) is over.
    fn stopped(&self) -> bool {
        self.region.stopped() || self.class >= self.region.global().cutoff.load(Relaxed)
    }

    /// Becomes a checkpoint at point `i`, which has `n` options and no path handed yet.
    /// Returns `None` in the child that goes on with the choice it had, `Some(prefix)` in
    /// a process handed a later path from point `i` on. A checkpoint with nothing left
    /// to serve exits here.
    pub(super) fn checkpoint(&mut self, i: usize, n: usize, forward: bool) -> Option<Vec<u8>> {
        self.ancestors.push(i);
        let mut handed: Option<Vec<u8>> = None;
        loop {
            let pid = match fork() {
                Ok(None) => {
                    self.gap = if forward && handed.is_none() { self.gap.saturating_mul(2) } else { 1 };
                    self.root = false;
                    self.since = Instant::now();
                    return handed;
                }
                Ok(Some(pid)) => {
                    self.region.area(self.worker).checkpoints.fetch_add(1, Relaxed);
                    pid
                }
                // No process to spare: go on without this checkpoint (one above serves
                // its later paths, by replaying).
                Err(_) => {
                    self.ancestors.pop();
                    return handed;
                }
            };
            if let Err(e) = wait(pid) {
                self.region.stop(Stop::Died, &e);
            }
            let area = self.region.area(self.worker);
            let len = area.next_len.load(Relaxed) as usize;
            if self.stopped() || len == 0 || area.next_from.load(Relaxed) as usize != i {
                // Not this checkpoint's path: one above serves it, or the class is done.
                self.leave();
            }
            let prefix = self.region.read(self.worker, 1, len);
            area.next_len.store(0, Relaxed);
            if prefix[0] as usize + 1 >= n {
                // The last option here: take it in this process instead of forking.
                self.ancestors.pop();
                self.gap = 1;
                self.since = Instant::now();
                return Some(prefix);
            }
            handed = Some(prefix);
        }
    }

    /// Ends this process's part in the search: a child exits, the worker unwinds its run.
    fn leave(&self) -> ! {
        if self.root {
            std::panic::resume_unwind(Box::new(Rewind));
        }
        exit_child(0)
    }

    /// Records a state: whether it is new. A full table stops the search.
    pub(super) fn visit(&self, key: u64) -> bool {
        let area = self.region.area(self.worker);
        match self.table.insert(area.in_table.load(Relaxed), key) {
            Some(true) => {
                area.in_table.fetch_add(1, Relaxed);
                area.states.fetch_add(1, Relaxed);
                self.region.global().states.fetch_add(1, Relaxed);
                true
            }
            Some(false) => false,
            None => {
                self.region.stop(Stop::TooBig, "the table of visited states is full");
                false
            }
        }
    }
}

/// What a finished path reports.
pub(super) struct PathEnd {
    /// The run was not stopped at a visited state or a bound.
    pub(super) complete: bool,
    /// It broke the protocol: with how many moves.
    pub(super) violation: Option<usize>,
}

/// The end of a path: records it, hands the next path to the checkpoint that serves it,
/// and exits (the worker returns instead).
fn end_path(trail: &Trail, end: PathEnd, bounds: &Bounds) {
    let snap = trail.snap.as_ref().expect("a snapshot search's trail");
    let (region, w) = (snap.region, snap.worker);
    let area = region.area(w);
    if end.complete {
        area.paths.fetch_add(1, Relaxed);
    }
    area.max_depth.fetch_max(trail.taken.len() as u64, Relaxed);
    if let Some(moves) = end.violation
        && (moves as u64) < area.best_moves.load(Relaxed)
    {
        let choices = trail.choices();
        if region.write(w, 0, &choices) {
            area.best_moves.store(moves as u64, Relaxed);
            area.best_class.store(snap.class, Relaxed);
            area.best_len.store(choices.len() as u64, Relaxed);
            if moves == 0 {
                region.global().cutoff.fetch_min(snap.class, Relaxed);
            }
        }
    }
    if bounds.deadline.is_some_and(|d| Instant::now() >= d) {
        region.stop(Stop::Timeout, "");
    } else if region.global().states.load(Relaxed) >= bounds.max_states {
        region.stop(Stop::MaxStates, "");
    }
    area.next_len.store(0, Relaxed);
    if !snap.stopped()
        && let Some(&k) = trail.open.last()
    {
        // The deepest checkpoint at or above the turn serves the path (point 0: the worker).
        let from = snap.ancestors.iter().rev().find(|&&a| a <= k).copied().unwrap_or(0);
        let next = trail.next_prefix(from).expect("a point is open");
        if region.write(w, 1, &next) {
            area.next_from.store(from as u64, Relaxed);
            area.next_len.store(next.len() as u64, Relaxed);
        }
    }
    if !snap.root {
        exit_child(0)
    }
}

/// A run that failed: stops the search with it (the root runs the path again to report
/// the error), and exits in a child.
fn fail_path(trail: &Trail, over_memory: Option<String>) {
    let snap = trail.snap.as_ref().expect("a snapshot search's trail");
    let region = snap.region;
    match over_memory {
        Some(msg) => region.stop(Stop::OverMemory, &msg),
        None => {
            let choices = trail.choices();
            if region.write(snap.worker, 1, &choices) {
                let g = region.global();
                g.failed_worker.store(snap.worker as u64, Relaxed);
                g.failed_class.store(snap.class, Relaxed);
                region.area(snap.worker).next_len.store(choices.len() as u64, Relaxed);
                region.stop(Stop::Failed, "");
            }
        }
    }
    if !snap.root {
        exit_child(0)
    }
}

/// A panic in a child: stops the search with its message and exits.
fn panic_path(region: Region, payload: &(dyn std::any::Any + Send)) -> ! {
    let msg = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    region.stop(Stop::Died, &format!("an explorer process panicked: {msg}"));
    exit_child(101)
}

/// How a run along a path ended.
pub(super) enum RunEnd {
    /// It ran to its end or to a visited state.
    Path(PathEnd),
    /// It went over `--max-memory`: the message says where.
    OverMemory(String),
    /// It failed (the root runs the path again for the error).
    Failed,
}

/// Runs a path from the start in the worker (`run` takes the trail and gives it back
/// with how the run ended), then records it. The children the run forks at checkpoints
/// come back through here too, and exit after recording their path; the worker returns.
pub(super) fn follow(trail: Trail, bounds: Bounds, run: impl FnOnce(Trail) -> (RunEnd, Trail)) {
    let region = trail.snap.as_ref().expect("a snapshot search's trail").region;
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(trail))) {
        Ok((RunEnd::Path(end), trail)) => end_path(&trail, end, &bounds),
        Ok((RunEnd::OverMemory(m), trail)) => fail_path(&trail, Some(m)),
        Ok((RunEnd::Failed, trail)) => fail_path(&trail, None),
        // The worker, a checkpoint with nothing left to serve, dropped its run.
        Err(p) if p.is::<Rewind>() => {}
        Err(p) => panic_path(region, &*p),
    }
}

/// The search's bounds, as every process checks them.
#[derive(Clone, Copy)]
pub(super) struct Bounds {
    pub(super) deadline: Option<Instant>,
    pub(super) max_states: u64,
    /// How long a run goes past its last checkpoint before it leaves another.
    pub(super) checkpoint_after: std::time::Duration,
}

/// How the search went, gathered by the root.
pub(super) struct Outcome {
    pub(super) states: u64,
    pub(super) paths: u64,
    pub(super) max_depth: usize,
    /// Checkpoints forked.
    pub(super) checkpoints: u64,
    /// Choice points passed, replays included.
    pub(super) points: u64,
    /// The shortest counterexample: its class and choices.
    pub(super) best: Option<(usize, Vec<u8>)>,
    /// Why it stopped early, with the message.
    pub(super) stop: Option<(Stop, String)>,
    /// A failed run's class and choices ([`Stop::Failed`]).
    pub(super) failed: Option<(usize, Vec<u8>)>,
}

/// Runs the search over `classes` line classes with `jobs` workers. `start` runs class
/// `c`'s path along the given trail from the start, in the worker (see [`follow`]).
pub(super) fn search(
    classes: usize,
    jobs: usize,
    bounds: Bounds,
    progress: &mut dyn FnMut(u64, usize, u64),
    start: &dyn Fn(usize, Trail),
) -> Result<Outcome, String> {
    let workers = jobs.clamp(1, classes.max(1));
    let map = Mapping::new(Region::size(workers)).ok_or("cannot map the explorer's shared memory")?;
    let region = Region { base: map.ptr, workers };
    region.global().cutoff.store(u64::MAX, Relaxed);
    for w in 0..workers {
        region.area(w).best_moves.store(u64::MAX, Relaxed);
    }
    let table_slots = (bounds.max_states.saturating_mul(2)).clamp(1024, 1 << 24).next_power_of_two() as usize;
    let mut pids = Vec::new();
    for w in 0..workers {
        match fork() {
            Ok(None) => worker(region, w, classes, table_slots, bounds.checkpoint_after, start),
            Ok(Some(pid)) => pids.push(pid),
            Err(e) => {
                region.stop(Stop::Died, &format!("cannot start an explorer process: {e}"));
                break;
            }
        }
    }
    // Wait on threads, so that this thread can report progress meanwhile.
    let (tx, rx) = std::sync::mpsc::channel();
    for &pid in &pids {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(wait(pid));
        });
    }
    drop(tx);
    let totals = |region: Region| {
        let (mut states, mut paths, mut depth) = (0, 0, 0);
        for w in 0..workers {
            let a = region.area(w);
            states += a.states.load(Relaxed);
            paths += a.paths.load(Relaxed);
            depth = depth.max(a.max_depth.load(Relaxed) as usize);
        }
        (states, paths, depth)
    };
    let mut left = pids.len();
    while left > 0 {
        match rx.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(r) => {
                left -= 1;
                if let Err(e) = r {
                    region.stop(Stop::Died, &e);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let (s, p, d) = totals(region);
                progress(s, d, p);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let (states, paths, max_depth) = totals(region);
    let checkpoints = (0..workers).map(|w| region.area(w).checkpoints.load(Relaxed)).sum();
    let points = (0..workers).map(|w| region.area(w).points.load(Relaxed)).sum();
    let best = (0..workers)
        .map(|w| (region.area(w), w))
        .filter(|(a, _)| a.best_moves.load(Relaxed) != u64::MAX)
        .min_by_key(|(a, _)| (a.best_moves.load(Relaxed), a.best_class.load(Relaxed)))
        .map(|(a, w)| (a.best_class.load(Relaxed) as usize, region.read(w, 0, a.best_len.load(Relaxed) as usize)));
    let g = region.global();
    let stop = Stop::from_u32(g.stop.load(Relaxed)).map(|s| (s, region.message()));
    let failed = (stop.as_ref().map(|s| s.0) == Some(Stop::Failed)).then(|| {
        let w = g.failed_worker.load(Relaxed) as usize;
        (g.failed_class.load(Relaxed) as usize, region.read(w, 1, region.area(w).next_len.load(Relaxed) as usize))
    });
    drop(map);
    Ok(Outcome { states, paths, max_depth, checkpoints, points, best, stop, failed })
}

/// A worker: takes the next line class, runs its paths from the start in this process
/// (the first, and any no checkpoint serves), and exits when no class is left.
fn worker(
    region: Region,
    w: usize,
    classes: usize,
    table_slots: usize,
    after: std::time::Duration,
    start: &dyn Fn(usize, Trail),
) -> ! {
    let body = || {
        loop {
            let class = region.global().next_class.fetch_add(1, Relaxed);
            if class as usize >= classes || region.stopped() || class >= region.global().cutoff.load(Relaxed) {
                return;
            }
            let Some(map) = Mapping::new(table_slots * size_of::<AtomicU64>()) else {
                region.stop(Stop::OverMemory, "cannot map the table of visited states");
                return;
            };
            let table = Table { slots: map.ptr.cast(), mask: table_slots - 1 };
            let area = region.area(w);
            area.in_table.store(0, Relaxed);
            let mut prefix = Vec::new();
            loop {
                area.next_len.store(0, Relaxed);
                let trail = Trail {
                    prefix: std::mem::take(&mut prefix),
                    snap: Some(Snap {
                        region,
                        worker: w,
                        class,
                        table,
                        ancestors: Vec::new(),
                        gap: 1,
                        root: true,
                        since: Instant::now(),
                        after,
                    }),
                    ..Trail::default()
                };
                start(class as usize, trail);
                let len = area.next_len.load(Relaxed) as usize;
                if region.stopped() || class >= region.global().cutoff.load(Relaxed) || len == 0 {
                    break;
                }
                // Only paths turning above every checkpoint reach the worker.
                debug_assert_eq!(area.next_from.load(Relaxed), 0);
                prefix = region.read(w, 1, len);
            }
            drop(map);
        }
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(()) => exit_child(0),
        Err(p) => panic_path(region, &*p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region() -> (Mapping, Region) {
        let map = Mapping::new(Region::size(1)).expect("a small shared mapping");
        let region = Region { base: map.ptr, workers: 1 };
        region.global().cutoff.store(u64::MAX, Relaxed);
        (map, region)
    }

    fn snap(region: Region, table: Table, ancestors: Vec<usize>, gap: usize) -> Snap {
        let since = Instant::now() - std::time::Duration::from_secs(1);
        let after = std::time::Duration::ZERO;
        Snap { region, worker: 0, class: 0, table, ancestors, gap, root: false, since, after }
    }

    #[test]
    fn a_table_tells_new_states_from_visited_ones_and_fills_up() {
        let map = Mapping::new(1024 * 8).unwrap();
        let t = Table { slots: map.ptr.cast(), mask: 1023 };
        assert_eq!(t.insert(0, 42), Some(true));
        assert_eq!(t.insert(1, 42), Some(false));
        assert_eq!(t.insert(1, 42 + 1024), Some(true), "a collision on the slot probes on");
        assert_eq!(t.insert(2, 0), Some(true), "hash 0 is stored (as 1)");
        assert_eq!(t.insert(768, 7), None, "three quarters full");
    }

    #[test]
    fn checkpoints_go_forward_at_doubling_gaps_and_bisect_towards_a_turn() {
        let (_map, region) = region();
        let table = Table { slots: std::ptr::null(), mask: 0 };
        // Forward from a checkpoint at 8 with gap 4: the next at 12 or later.
        let s = snap(region, table, vec![0, 8], 4);
        assert!(!s.wants_checkpoint(11, None));
        assert!(s.wants_checkpoint(12, None));
        // Replaying from 8 towards a turn at 40: past the middle (24), and the turn itself.
        assert!(!s.wants_checkpoint(23, Some(40)));
        assert!(s.wants_checkpoint(24, Some(40)));
        assert!(s.wants_checkpoint(40, Some(40)));
        // A full chain takes no more.
        let full = snap(region, table, (0..MAX_CHAIN).collect(), 1);
        assert!(!full.wants_checkpoint(1000, None));
        // Nor does a run that has not gone long enough since its last checkpoint.
        let fresh =
            Snap { since: Instant::now(), after: std::time::Duration::from_secs(60), ..snap(region, table, vec![], 1) };
        assert!(!fresh.wants_checkpoint(5, None));
        // Nor a stopped search.
        region.stop(Stop::Timeout, "");
        assert!(!s.wants_checkpoint(12, None));
    }

    fn bounds() -> Bounds {
        Bounds { deadline: None, max_states: 1000, checkpoint_after: std::time::Duration::ZERO }
    }

    #[test]
    fn a_panicking_run_stops_the_search_with_its_message_never_a_proof() {
        let start = |_: usize, trail: Trail| follow(trail, bounds(), |_| panic!("the simulator broke an invariant"));
        let out = search(1, 1, bounds(), &mut |_, _, _| {}, &start).unwrap();
        let (why, msg) = out.stop.expect("the search stopped");
        assert_eq!(why, Stop::Died);
        assert!(msg.contains("panicked: the simulator broke an invariant"), "{msg}");
    }

    #[test]
    fn a_worker_killed_by_a_signal_is_named_by_it() {
        let start = |_: usize, _: Trail| std::process::abort();
        let out = search(2, 2, bounds(), &mut |_, _, _| {}, &start).unwrap();
        let (why, msg) = out.stop.expect("the search stopped");
        assert_eq!(why, Stop::Died);
        assert!(msg.contains("killed by signal 6"), "{msg}");
    }

    #[test]
    fn the_first_stop_and_its_message_win() {
        let (_map, region) = region();
        assert!(!region.stopped());
        region.stop(Stop::OverMemory, "this step needs 2048 MiB more");
        region.stop(Stop::Timeout, "later");
        assert_eq!(Stop::from_u32(region.global().stop.load(Relaxed)), Some(Stop::OverMemory));
        assert_eq!(region.message(), "this step needs 2048 MiB more");
    }
}
