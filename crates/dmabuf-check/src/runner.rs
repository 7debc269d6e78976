//! Runs a scenario on the simulated framework with the sanitizer watching.
//!
//! The runner first checks every name and range of the scenario against the platform
//! (bad input is an error, before anything runs), then executes the steps in order on a
//! [`System`]. Device jobs with `signal F` are submitted and run *later*: when something
//! waits for their fence (a `wait`, a job's `after`, the implicit wait of a CPU bracket
//! on the buffer's reservation object), when a later job of the same device must run, or
//! at the end. Their happens-before is what the program established (submission, fences),
//! not when they happened to run, so a missing wait shows up as a race whatever the
//! order.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::rc::Rc;

use dmabuf::{AttachError, AttachPolicy, BufferId, ImporterCaps, raw};
use dmabuf::{
    Attachment, DMA_BUF_SYNC_END, DMA_BUF_SYNC_READ, DMA_BUF_SYNC_RW, DMA_BUF_SYNC_WRITE, DmaBuf, Error as FwError,
    MaintenancePolicy, Memfd, Placement, Report, System, SystemConfig, UserMapping,
};
use dmabuf_sim::{
    Chooser, CpuMapId, DmaDirection, MemAttr, Observer, PhysAddr, Platform, Sim, Stats, chooser_from_name,
};

use crate::sanitizer::{AccessInfo, Finding, FindingKind, Involved, Path, Sanitizer, VClock, fmt_range};
use crate::scenario::{
    Access, ByteRange, Dir, Ident, Job, JobKind, MigrateTo, Op, PlatformRef, Scenario, Source, Span, Spanned, Step,
    SyncFlags, Target, Usage, Value,
};

/// How to run a scenario (the `dmabuf check` flags).
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The chooser: `adversarial`, `seeded:N`, `lru`, `never`.
    pub chooser: String,
    /// The attach policy.
    pub attach: AttachPolicy,
    /// The maintenance policy.
    pub maintenance: MaintenancePolicy,
    /// A platform (preset name or TOML path) overriding the scenario's.
    pub platform: Option<String>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            chooser: "adversarial".into(),
            attach: AttachPolicy::Strict,
            maintenance: MaintenancePolicy::Minimal,
            platform: None,
        }
    }
}

/// What a run found.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The platform's name.
    pub platform: String,
    /// The findings, deduplicated, in the order first seen.
    pub findings: Vec<Finding>,
    /// What the hardware did (maintenance counts, bytes and cycles).
    pub stats: Stats,
    /// Steps executed (a loop body counts once per iteration).
    pub steps: u64,
    /// The run was stopped early by an explorer (its state had been seen).
    pub stopped: bool,
}

/// A scenario the runner cannot run: a name that does not exist, a range out of bounds.
///
/// Boxed, so the `Result`s that carry it stay small on the success path.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error(transparent)]
#[diagnostic(transparent)]
pub struct RunError(Box<RunErrorInner>);

impl RunError {
    /// The scenario file.
    pub fn file(&self) -> &str {
        &self.0.file
    }
    /// 1-based line.
    pub fn line(&self) -> u32 {
        self.0.line
    }
    /// 1-based column.
    pub fn column(&self) -> u32 {
        self.0.column
    }
    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.0.message
    }
    /// What would work, when something would.
    pub fn help(&self) -> Option<&str> {
        self.0.help.as_deref()
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{file}:{line}:{column}: {message}")]
#[diagnostic(code(dmabuf::scenario))]
struct RunErrorInner {
    file: String,
    line: u32,
    column: u32,
    message: String,
    #[help]
    help: Option<String>,
    #[source_code]
    src: miette::NamedSource<String>,
    #[label("here")]
    span: miette::SourceSpan,
}

/// 1-based line and column of byte `offset` in `src`.
pub fn line_col(src: &str, offset: usize) -> (u32, u32) {
    let offset = offset.min(src.len());
    let before = &src.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
    let start = before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[start..]).chars().count() as u32 + 1;
    (line, column)
}

struct Ctx<'a> {
    file: &'a str,
    src: &'a str,
}

impl Ctx<'_> {
    fn err(&self, span: Span, message: String, help: Option<String>) -> RunError {
        let (line, column) = line_col(self.src, span.start);
        RunError(Box::new(RunErrorInner {
            file: self.file.to_string(),
            line,
            column,
            message,
            help,
            src: miette::NamedSource::new(self.file, self.src.to_string()),
            span: span.into(),
        }))
    }
}

/// Names close to `name` among `known`, for "did you mean" hints.
fn suggest(name: &str, known: &[String]) -> Option<String> {
    let close: Vec<&String> = known.iter().filter(|k| edit_distance(name, k) <= 2 || k.contains(name)).collect();
    let list = if close.is_empty() { known.iter().collect::<Vec<_>>() } else { close };
    if list.is_empty() {
        return None;
    }
    let names: Vec<String> = list.iter().map(|s| format!("`{s}`")).collect();
    Some(if names.len() == 1 { format!("did you mean {}?", names[0]) } else { format!("known: {}", names.join(", ")) })
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Loads the platform a scenario names (or the override), relative to the scenario file.
pub fn load_platform(scenario: &Scenario, file: &FsPath, src: &str, over: Option<&str>) -> Result<Platform, RunError> {
    let ctx = Ctx { file: &file.display().to_string(), src };
    let (spec, span) = match (over, &scenario.platform) {
        (Some(o), _) => (o.to_string(), None),
        (None, Some(p)) => match &p.node {
            PlatformRef::Preset(n) => (n.clone(), Some(p.span)),
            PlatformRef::File(f) => {
                let path: PathBuf = file.parent().map(|d| d.join(f)).unwrap_or_else(|| PathBuf::from(f));
                (path.display().to_string(), Some(p.span))
            }
        },
        (None, None) => {
            return Err(ctx.err(
                Span::new(0, 0),
                "the scenario names no platform".into(),
                Some(format!(
                    "add `platform NAME` as its first step, or pass --platform; presets: {}",
                    Platform::preset_names().join(", ")
                )),
            ));
        }
    };
    Platform::load(&spec).map_err(|e| {
        let help = Some(format!("presets: {}", Platform::preset_names().join(", ")));
        match span {
            Some(s) => ctx.err(s, e.to_string(), help),
            None => ctx.err(Span::new(0, 0), format!("--platform {spec}: {e}"), help),
        }
    })
}

/// Checks names and ranges before anything runs.
struct Validator<'a> {
    ctx: Ctx<'a>,
    platform: &'a Platform,
    devices: Vec<String>,
    buffers: HashMap<String, u64>,
    fences: HashSet<String>,
}

impl Validator<'_> {
    fn device(&self, d: &Ident) -> Result<(), RunError> {
        if self.devices.contains(&d.node) {
            return Ok(());
        }
        Err(self.ctx.err(
            d.span,
            format!("platform {} has no device `{}`", self.platform.name, d.node),
            suggest(&d.node, &self.devices),
        ))
    }

    fn buffer(&self, b: &Ident) -> Result<u64, RunError> {
        if let Some(&s) = self.buffers.get(&b.node) {
            return Ok(s);
        }
        let known: Vec<String> = self.buffers.keys().cloned().collect();
        Err(self.ctx.err(
            b.span,
            format!("no buffer `{}` is declared before this line", b.node),
            suggest(&b.node, &known).or(Some("declare it with `buffer NAME size=SIZE heap=system`".into())),
        ))
    }

    fn target(&self, t: &Target) -> Result<(), RunError> {
        let size = self.buffer(&t.buf)?;
        if let Some(r) = &t.range
            && (r.node.end > size || r.node.start > r.node.end)
        {
            return Err(self.ctx.err(
                r.span,
                format!("range {} is outside buffer `{}` of {size:#x} bytes", r.node, t.buf.node),
                Some(format!("use offsets within 0..{size:#x}")),
            ));
        }
        Ok(())
    }

    fn fence(&self, f: &Ident) -> Result<(), RunError> {
        if self.fences.contains(&f.node) {
            return Ok(());
        }
        let known: Vec<String> = self.fences.iter().cloned().collect();
        Err(self.ctx.err(
            f.span,
            format!("no fence `{}` is made before this line", f.node),
            suggest(&f.node, &known)
                .or(Some("make it with `fence F`, a job's `signal F`, or `export BUF read as F`".into())),
        ))
    }

    fn steps(&mut self, steps: &[Step]) -> Result<(), RunError> {
        for s in steps {
            self.step(s)?;
        }
        Ok(())
    }

    fn step(&mut self, s: &Step) -> Result<(), RunError> {
        match &s.op {
            Op::Buffer(b) => {
                if self.buffers.contains_key(&b.name.node) {
                    return Err(self.ctx.err(b.name.span, format!("buffer `{}` is declared twice", b.name.node), None));
                }
                if b.size.node == 0 {
                    return Err(self.ctx.err(b.size.span, "a buffer cannot be empty".into(), None));
                }
                match &b.source.node {
                    Source::Heap(h) => {
                        let known = ["system", "cma", "uncached", "linux,cma", "reserved", "default_cma_region"];
                        if !known.contains(&h.as_str()) {
                            let known: Vec<String> = known.iter().map(|s| s.to_string()).collect();
                            return Err(self.ctx.err(b.source.span, format!("no heap `{h}`"), suggest(h, &known)));
                        }
                    }
                    Source::Device(d) => self.device(&Spanned::new(d.clone(), b.source.span))?,
                    Source::Udmabuf => {}
                }
                self.buffers.insert(b.name.node.clone(), b.size.node);
            }
            Op::Attach { dev, buf, expect_refused, .. } => {
                self.device(dev)?;
                self.buffer(buf)?;
                if let Some(rule) = expect_refused {
                    let rules = [
                        "contiguity",
                        "reachability",
                        "p2p",
                        "p2p-not-allowed",
                        "bounce",
                        "dma-mask",
                        "memory",
                        "exporter",
                    ];
                    if !rules.contains(&rule.node.as_str()) {
                        let known: Vec<String> = rules.iter().map(|s| s.to_string()).collect();
                        return Err(self.ctx.err(
                            rule.span,
                            format!("no attach rule `{}`", rule.node),
                            suggest(&rule.node, &known),
                        ));
                    }
                }
            }
            Op::Detach { dev, buf }
            | Op::ImporterVmap { dev, buf }
            | Op::ImporterVunmap { dev, buf }
            | Op::Pin { dev, buf }
            | Op::Unpin { dev, buf }
            | Op::Map { dev, buf, .. }
            | Op::Unmap { dev, buf } => {
                self.device(dev)?;
                self.buffer(buf)?;
            }
            Op::Migrate { buf, .. }
            | Op::Vmap { buf }
            | Op::Vunmap { buf }
            | Op::Mmap { buf }
            | Op::Munmap { buf }
            | Op::Sync { buf, .. }
            | Op::SetName { buf, .. }
            | Op::Release { buf }
            | Op::CpuEnd { buf, .. } => {
                self.buffer(buf)?;
            }
            Op::DeviceBegin { dev, target } | Op::DeviceEnd { dev, target } => {
                self.device(dev)?;
                self.target(target)?;
            }
            Op::DeviceSync { from, to, target } => {
                self.device(from)?;
                self.device(to)?;
                self.target(target)?;
            }
            Op::Job(j) => {
                self.device(&j.dev)?;
                for f in &j.after {
                    self.fence(f)?;
                }
                match &j.kind {
                    JobKind::Read { src, .. } => self.target(src)?,
                    JobKind::Write { dst, .. } => self.target(dst)?,
                    JobKind::Copy { src, dst } | JobKind::Transform { src, dst, .. } => {
                        self.target(src)?;
                        self.target(dst)?;
                        let len = |t: &Target| {
                            t.range.as_ref().map_or(self.buffers[&t.buf.node], |r| r.node.end - r.node.start)
                        };
                        if len(src) != len(dst) {
                            let span = dst.range.as_ref().map_or(dst.buf.span, |r| r.span);
                            return Err(self.ctx.err(
                                span,
                                format!("a copy needs ranges of one length: {} bytes to {} bytes", len(src), len(dst)),
                                None,
                            ));
                        }
                    }
                }
                if let Some(f) = &j.signal {
                    self.fences.insert(f.node.clone());
                }
            }
            Op::CpuBegin { target, .. } | Op::CpuRead { target, .. } | Op::CpuWrite { target, .. } => {
                self.target(target)?
            }
            Op::Fence { name } => {
                self.fences.insert(name.node.clone());
            }
            Op::Signal { fence } => self.fence(fence)?,
            Op::Wait { fences } => {
                for f in fences {
                    self.fence(f)?;
                }
            }
            Op::Export { buf, fence, .. } => {
                self.buffer(buf)?;
                self.fences.insert(fence.node.clone());
            }
            Op::Import { fence, buf, .. } | Op::ResvAdd { buf, fence, .. } => {
                self.fence(fence)?;
                self.buffer(buf)?;
            }
            Op::Repeat { body, .. } => self.steps(body)?,
        }
        Ok(())
    }
}

/// Checks a scenario's names and ranges against a platform.
pub fn validate(scenario: &Scenario, platform: &Platform, file: &str, src: &str) -> Result<(), RunError> {
    let mut v = Validator {
        ctx: Ctx { file, src },
        platform,
        devices: platform.devices.iter().map(|d| d.name.clone()).collect(),
        buffers: HashMap::new(),
        fences: HashSet::new(),
    };
    v.steps(&scenario.steps)?;
    let total = total_steps(&scenario.steps);
    if total > MAX_STEPS {
        // Point at the outermost repeat that makes it so.
        let span = scenario
            .steps
            .iter()
            .filter(|s| matches!(s.op, Op::Repeat { .. }))
            .max_by_key(|s| total_steps(std::slice::from_ref(*s)))
            .map_or(Span::new(0, 0), |s| s.span);
        return Err(v.ctx.err(
            span,
            format!("the scenario runs {total} steps; the limit is {MAX_STEPS}"),
            Some("lower the repeat counts: a few hundred frames show any bug a loop has".into()),
        ));
    }
    Ok(())
}

/// The most steps a run may execute (a `repeat` body counts once per iteration).
pub const MAX_STEPS: u64 = 100_000_000;

// ----- execution ---------------------------------------------------------------------

struct Buf {
    buf: Option<DmaBuf>,
    size: u64,
    atts: HashMap<String, Attachment>,
    umap: Option<UserMapping>,
    /// The CPU brackets open, for the hints: kernel ones, and the user sync ioctl.
    kernel_open: u32,
    user_open: bool,
    /// Fences on the buffer's reservation object, with their usage.
    resv: Vec<(String, Usage)>,
    /// The line of each device's current `map`.
    map_lines: HashMap<String, u32>,
    /// Devices whose attach was refused: their later uses are not reported again.
    refused: HashSet<String>,
    /// Importers' own kernel mappings of the pages (`DEV vmap BUF`).
    importer_maps: HashMap<String, CpuMapId>,
    _memfd: Option<Memfd>,
}

#[derive(Clone)]
enum FenceState {
    /// Signalled, with the clock of its signaller.
    Signalled(VClock),
    /// Signalled by a job still pending.
    Job(usize),
    /// A software fence nobody signalled yet.
    Software,
    /// Signals when all of these do (an exported sync file).
    All(Vec<String>),
}

struct Pending {
    id: usize,
    dev: usize,
    job: Job,
    line: u32,
    frame: u64,
    submit: VClock,
}

struct Exec<'a, 'h> {
    ctx: Ctx<'a>,
    sys: System,
    san: Rc<RefCell<Sanitizer>>,
    bufs: HashMap<String, Buf>,
    /// The framework's buffers, by the scenario's names.
    names: HashMap<BufferId, String>,
    fences: HashMap<String, FenceState>,
    pending: Vec<Pending>,
    next_job: usize,
    cpu: VClock,
    devs: Vec<VClock>,
    frame: u64,
    line: u32,
    reports_seen: usize,
    steps: u64,
    progress: Option<&'h mut dyn FnMut(u64)>,
    schedule: Option<&'h mut Schedule>,
    visit: Option<&'h mut dyn FnMut(u64) -> bool>,
    lines: Option<Rc<RefCell<Vec<PhysAddr>>>>,
    line_cell: Option<Rc<Cell<u32>>>,
    accessing: Option<Rc<Cell<bool>>>,
    stopped: bool,
}

/// Runs a scenario: parses nothing, checks names, executes, and returns the findings.
pub fn run(scenario: &Scenario, file: &FsPath, src: &str, cfg: &RunConfig) -> Result<RunResult, RunError> {
    run_with_progress(scenario, file, src, cfg, &mut |_| {})
}

/// How many steps a run executes: a `repeat` body counts once per iteration (saturating).
pub fn total_steps(steps: &[Step]) -> u64 {
    steps.iter().fold(0u64, |n, s| {
        let k = match &s.op {
            Op::Repeat { count, body } => count.node.saturating_mul(total_steps(body)),
            _ => 1,
        };
        n.saturating_add(k)
    })
}

/// [`run`], calling `progress` with the number of steps executed so far (out of
/// [`total_steps`]) after every step, for a progress bar.
pub fn run_with_progress(
    scenario: &Scenario,
    file: &FsPath,
    src: &str,
    cfg: &RunConfig,
    progress: &mut dyn FnMut(u64),
) -> Result<RunResult, RunError> {
    let fname = file.display().to_string();
    let ctx = Ctx { file: &fname, src };
    let chooser = chooser_from_name(&cfg.chooser).map_err(|e| {
        ctx.err(Span::new(0, 0), e.to_string(), Some("choosers: adversarial, seeded:N, lru, never".into()))
    })?;
    run_hooked(scenario, file, src, cfg, Hooks { progress: Some(progress), ..Hooks::new(chooser) })
}

/// An explorer's say in when pending jobs run: given the devices whose next job may run
/// now, 0 to go on or `i` to run device `i - 1`'s job first.
pub type Schedule = dyn FnMut(&[String]) -> usize;

/// What an explorer plugs into a run: its own chooser, a say in when pending device jobs
/// run, and a look at the whole state between steps.
pub struct Hooks<'a> {
    /// The hardware's chooser (used instead of the config's).
    pub chooser: Box<dyn Chooser>,
    /// Called with the steps executed so far after every step.
    pub progress: Option<&'a mut dyn FnMut(u64)>,
    /// Before every step: given the devices whose next pending job may run now, returns
    /// 0 to go on with the step or `i` to run device `i - 1`'s job first (and is asked
    /// again). Without it, jobs run as late as the program allows.
    pub schedule: Option<&'a mut Schedule>,
    /// Before every step: given a hash of the whole state (program position, clocks,
    /// pending jobs, fences, the sanitizer's shadow and the hardware's state of `lines`),
    /// returns false to stop the run here (the state was seen before).
    pub visit: Option<&'a mut dyn FnMut(u64) -> bool>,
    /// The lines whose hardware state [`Hooks::visit`] hashes (those the program touched).
    pub lines: Option<Rc<RefCell<Vec<PhysAddr>>>>,
    /// Set to the line of the step being executed.
    pub line: Option<Rc<Cell<u32>>>,
    /// True while one of the scenario's accesses (a CPU read or write, a device job's
    /// read or write) runs, false during the framework's own work (allocation, maintenance).
    pub accessing: Option<Rc<Cell<bool>>>,
    /// One more observer of the hardware beside the sanitizer (the oracle of
    /// `dmabuf bench`).
    pub observer: Option<Box<dyn Observer>>,
}

impl<'a> Hooks<'a> {
    /// Hooks with only a chooser.
    pub fn new(chooser: Box<dyn Chooser>) -> Hooks<'a> {
        Hooks {
            chooser,
            progress: None,
            schedule: None,
            visit: None,
            lines: None,
            line: None,
            accessing: None,
            observer: None,
        }
    }
}

/// [`run`] with one more observer of the simulated hardware beside the sanitizer (the
/// oracle of `dmabuf bench`); read its results through your own handle to it.
pub fn run_observed(
    scenario: &Scenario,
    file: &FsPath,
    src: &str,
    cfg: &RunConfig,
    observer: Box<dyn Observer>,
) -> Result<RunResult, RunError> {
    let fname = file.display().to_string();
    let ctx = Ctx { file: &fname, src };
    let chooser = chooser_from_name(&cfg.chooser).map_err(|e| {
        ctx.err(Span::new(0, 0), e.to_string(), Some("choosers: adversarial, seeded:N, lru, never".into()))
    })?;
    run_hooked(scenario, file, src, cfg, Hooks { observer: Some(observer), ..Hooks::new(chooser) })
}

/// Runs a scenario with an explorer's [`Hooks`]. A run stopped by `visit` returns the
/// findings so far, with `stopped` set.
pub fn run_hooked(
    scenario: &Scenario,
    file: &FsPath,
    src: &str,
    cfg: &RunConfig,
    hooks: Hooks<'_>,
) -> Result<RunResult, RunError> {
    let platform = load_platform(scenario, file, src, cfg.platform.as_deref())?;
    let fname = file.display().to_string();
    validate(scenario, &platform, &fname, src)?;
    let ctx = Ctx { file: &fname, src };
    let san = Rc::new(RefCell::new(Sanitizer::new()));
    let builder = Sim::builder(platform.clone()).chooser_boxed(hooks.chooser);
    let sim = match hooks.observer {
        Some(o) => builder.observer((san.clone(), o)).build(),
        None => builder.observer(san.clone()).build(),
    };
    let sys = System::new(sim, SystemConfig { attach: cfg.attach, maintenance: cfg.maintenance });
    let ndev = platform.devices.len();
    let mut ex = Exec {
        ctx,
        sys,
        san,
        bufs: HashMap::new(),
        names: HashMap::new(),
        fences: HashMap::new(),
        pending: Vec::new(),
        next_job: 0,
        cpu: VClock::default(),
        devs: vec![VClock::default(); ndev],
        frame: 0,
        line: 0,
        reports_seen: 0,
        steps: 0,
        progress: hooks.progress,
        schedule: hooks.schedule,
        visit: hooks.visit,
        lines: hooks.lines,
        line_cell: hooks.line,
        accessing: hooks.accessing,
        stopped: false,
    };
    ex.cpu.tick(0);
    ex.steps(&scenario.steps)?;
    let stopped = ex.stopped;
    if !stopped {
        ex.finish();
    }
    let stats = ex.sys.stats();
    // Tear down quietly: what a program leaves at exit the kernel cleans up.
    for (_, mut b) in ex.bufs.drain() {
        b.umap = None;
        for (_, a) in b.atts.drain() {
            let _ = raw::unmap_attachment(&a);
        }
    }
    let mut san = ex.san.borrow_mut();
    if !stopped {
        san.finish();
    }
    let findings = std::mem::take(&mut *san).into_findings();
    Ok(RunResult { platform: platform.name.clone(), findings, stats, steps: ex.steps, stopped })
}

fn dir(d: Dir) -> DmaDirection {
    match d {
        Dir::ToDevice => DmaDirection::ToDevice,
        Dir::FromDevice => DmaDirection::FromDevice,
        Dir::Bidirectional => DmaDirection::Bidirectional,
    }
}

fn dir_word(d: DmaDirection) -> &'static str {
    match d {
        DmaDirection::ToDevice => "write",
        DmaDirection::FromDevice => "read",
        DmaDirection::Bidirectional => "rw",
    }
}

impl Exec<'_, '_> {
    fn steps(&mut self, steps: &[Step]) -> Result<(), RunError> {
        for s in steps {
            if self.stopped {
                break;
            }
            self.step(s)?;
        }
        Ok(())
    }

    fn range(&self, t: &Target) -> Range<u64> {
        match &t.range {
            Some(r) => r.node.start..r.node.end,
            None => 0..self.bufs.get(&t.buf.node).map_or(0, |b| b.size),
        }
    }

    fn bytes(&self, v: Value, r: &Range<u64>, frame: u64) -> Vec<u8> {
        let len = (r.end - r.start) as usize;
        match v {
            Value::Byte(b) => vec![b; len],
            Value::Frame => vec![(frame.wrapping_add(1) & 0xff) as u8; len],
            Value::Seq => (r.start..r.end).map(|x| (x.wrapping_add(frame) & 0xff) as u8).collect(),
        }
    }

    fn dev_index(&self, name: &str) -> usize {
        self.sys.device(name).map(|d| d.index()).unwrap_or(0)
    }

    fn coherent(&self, dev: usize) -> bool {
        self.sys.platform().devices[dev].coherent
    }

    fn finding(
        &self,
        kind: FindingKind,
        buffer: &str,
        range: Range<u64>,
        agents: Vec<String>,
        msg: String,
        hint: String,
    ) {
        let steps = vec![Involved { line: self.line, role: "this step".into() }];
        self.san.borrow_mut().report(kind, buffer, range, agents, steps, msg, hint);
    }

    /// Turns the framework's new reports into findings at the current line.
    fn drain_reports(&mut self, path_user: Option<bool>) {
        let reports = self.sys.reports();
        for r in reports.iter().skip(self.reports_seen) {
            let name = |b: &BufferId| self.names.get(b).cloned().unwrap_or_else(|| format!("buffer {}", b.index()));
            let dev = |d: &dmabuf_sim::DeviceId| self.sys.platform().devices[d.index()].name.clone();
            let (buffer, range, agents, msg, hint) = match r {
                Report::AccessOutsideBracket { buffer, range, write } => {
                    let b = name(buffer);
                    let verb = if *write { "write" } else { "read" };
                    let hint = if path_user == Some(true) {
                        format!(
                            "put `sync {b} start {verb}` before line {} and `sync {b} end {verb}` after it",
                            self.line
                        )
                    } else {
                        format!(
                            "put `cpu begin {b} {verb}` before line {} and `cpu end {b} {verb}` after it",
                            self.line
                        )
                    };
                    (
                        b.clone(),
                        range.clone(),
                        vec!["cpu".into()],
                        format!("CPU {verb} of {b}{} outside a CPU access bracket", fmt_range(range)),
                        hint,
                    )
                }
                Report::BadSyncFlags { buffer, flags } => {
                    let b = name(buffer);
                    (
                        b.clone(),
                        0..0,
                        vec!["cpu".into()],
                        format!("DMA_BUF_IOCTL_SYNC on {b} with flags {flags:#x}: EINVAL"),
                        "use START or END with READ, WRITE or RW (`sync BUF start read`)".into(),
                    )
                }
                Report::DoubleEnd { buffer } => {
                    let b = name(buffer);
                    (
                        b.clone(),
                        0..0,
                        vec!["cpu".into()],
                        format!("end of a CPU access to {b} with no access begun (double end)"),
                        "end each bracket once, after its begin".into(),
                    )
                }
                Report::DirectionMismatch { buffer, started, ended } => {
                    let b = name(buffer);
                    (
                        b.clone(),
                        0..0,
                        vec!["cpu".into()],
                        format!(
                            "CPU access to {b} began for {} and ended for {}",
                            dir_word(*started),
                            dir_word(*ended)
                        ),
                        format!("end with the direction it began with ({})", dir_word(*started)),
                    )
                }
                Report::LeakedAttachments { buffer, devices } => {
                    let b = name(buffer);
                    let count = devices.len();
                    (
                        b.clone(),
                        0..0,
                        vec![],
                        format!("{b} released with {count} attachment(s) still attached"),
                        format!("detach every device from {b} before releasing it"),
                    )
                }
                Report::LeakedMappings { buffer, devices } => {
                    let b = name(buffer);
                    let count = devices.len();
                    (
                        b.clone(),
                        0..0,
                        vec![],
                        format!("{b} released with {count} mapping(s) still mapped"),
                        format!("unmap every mapping of {b} before releasing it"),
                    )
                }
                Report::UnmapNotMapped { buffer, device } => {
                    let b = name(buffer);
                    let device = &dev(device);
                    (
                        b.clone(),
                        0..0,
                        vec![device.clone()],
                        format!("unmap of {b} by {device}, which has not mapped it"),
                        "unmap only what is mapped, once".into(),
                    )
                }
                Report::DeviceAccessUnmapped { buffer, device } => {
                    let b = name(buffer);
                    let device = &dev(device);
                    (
                        b.clone(),
                        0..0,
                        vec![device.clone()],
                        format!("{device} accesses {b} without a mapping"),
                        format!("`map {device} {b} DIR` before the job"),
                    )
                }
                Report::DeviceDirection { buffer, device, mapped, access } => {
                    let b = name(buffer);
                    let device = &dev(device);
                    (
                        b.clone(),
                        0..0,
                        vec![device.clone()],
                        format!("{device} {access}s {b} through a mapping made {mapped:?}"),
                        "map with the direction the device uses (bidirectional if both)".into(),
                    )
                }
                Report::VunmapNotMapped { buffer } => {
                    let b = name(buffer);
                    (
                        b.clone(),
                        0..0,
                        vec![],
                        format!("vunmap of {b}, which is not vmapped"),
                        "vunmap once per vmap".into(),
                    )
                }
                // Accepted under the Linux policy: what breaks later is reported then.
                _ => continue,
            };
            self.finding(FindingKind::Misuse, &buffer, range, agents, msg, hint);
        }
        self.reports_seen = reports.len();
    }

    fn fw_error(&mut self, buffer: &str, agents: Vec<String>, e: FwError) {
        // Reports already carry the misuse the error stands for.
        let before = self.reports_seen;
        self.drain_reports(None);
        if self.reports_seen != before {
            return;
        }
        self.finding(FindingKind::Misuse, buffer, 0..0, agents, e.to_string(), "see the framework's error".into());
    }

    fn buf(&self, b: &Ident) -> Option<&Buf> {
        self.bufs.get(&b.node).filter(|x| x.buf.is_some())
    }

    fn released(&self, b: &Ident) {
        self.finding(
            FindingKind::Misuse,
            &b.node,
            0..0,
            vec![],
            format!("{} is used after its release", b.node),
            "release a buffer only after its last use".into(),
        );
    }

    fn step(&mut self, s: &Step) -> Result<(), RunError> {
        if let Op::Repeat { count, body } = &s.op {
            let outer = self.frame;
            for i in 0..count.node {
                self.frame = i;
                self.steps(body)?;
            }
            self.frame = outer;
            return Ok(());
        }
        if self.schedule.is_some() || self.visit.is_some() {
            self.explore_point();
            if self.stopped {
                return Ok(());
            }
        }
        self.steps += 1;
        self.line = s.line;
        if let Some(c) = &self.line_cell {
            c.set(s.line);
        }
        let buffer = step_buffer(&s.op).unwrap_or_default();
        self.san.borrow_mut().set_step(s.line, &buffer);
        self.exec(s)?;
        self.drain_reports(None);
        if let Some(p) = self.progress.as_mut() {
            p(self.steps);
        }
        Ok(())
    }

    /// Between two steps: lets the explorer stop a run whose state it has seen, and run
    /// pending device jobs now rather than later.
    fn explore_point(&mut self) {
        if let Some(visit) = self.visit.as_mut() {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (self.steps, self.frame, &self.cpu, &self.devs).hash(&mut h);
            for p in &self.pending {
                (p.id, p.dev, &p.submit).hash(&mut h);
            }
            let mut fences: Vec<_> = self.fences.iter().collect();
            fences.sort_by(|a, b| a.0.cmp(b.0));
            for (name, st) in fences {
                name.hash(&mut h);
                match st {
                    FenceState::Signalled(c) => (0u8, c).hash(&mut h),
                    FenceState::Job(id) => (1u8, id).hash(&mut h),
                    FenceState::Software => 2u8.hash(&mut h),
                    FenceState::All(v) => (3u8, v).hash(&mut h),
                }
            }
            self.san.borrow().digest(&mut h);
            if let Some(lines) = &self.lines {
                let lines = lines.borrow();
                lines.hash(&mut h);
                self.sys.with_sim(|sim| sim.hash_lines(&lines, &mut h));
            }
            if !visit(h.finish()) {
                self.stopped = true;
                return;
            }
        }
        while self.schedule.is_some() {
            let mut devs: Vec<usize> = Vec::new();
            for p in &self.pending {
                if !devs.contains(&p.dev) {
                    devs.push(p.dev);
                }
            }
            if devs.is_empty() {
                return;
            }
            let names: Vec<String> = devs.iter().map(|&d| self.sys.platform().devices[d].name.clone()).collect();
            let pick = self.schedule.as_mut().map_or(0, |f| f(&names));
            let Some(&d) = pick.checked_sub(1).and_then(|i| devs.get(i)) else { return };
            let first = self.pending.iter().find(|p| p.dev == d).map(|p| p.id);
            self.run_device_until(d, first);
        }
    }

    fn exec(&mut self, s: &Step) -> Result<(), RunError> {
        match &s.op {
            Op::Buffer(b) => self.allocate(b)?,
            Op::Attach { dev, buf, dynamic, p2p, expect_refused } => {
                let Some(bb) = self.buf(buf) else {
                    self.released(buf);
                    return Ok(());
                };
                let d = self.sys.device(&dev.node).map_err(|e| self.ctx.err(dev.span, e.to_string(), None))?;
                let handle = bb.buf.clone();
                let Some(handle) = handle else { return Ok(()) };
                // A dynamic exporter may migrate the buffer to suit the new importer: the
                // copy carries the bytes' provenance.
                self.san.borrow_mut().begin_copy();
                let res = if *dynamic {
                    handle.attach_dynamic(d, *p2p, || {})
                } else {
                    handle.attach_with(d, ImporterCaps { allow_peer2peer: *p2p, dynamic: false })
                };
                self.san.borrow_mut().end_copy();
                match (res, expect_refused) {
                    (Ok(a), None) => {
                        if let Some(b) = self.bufs.get_mut(&buf.node) {
                            b.refused.remove(&dev.node);
                        }
                        // A second attach of the same device replaces (and detaches) the first.
                        if let Some(b) = self.bufs.get_mut(&buf.node) {
                            b.atts.insert(dev.node.clone(), a);
                        }
                    }
                    (Ok(a), Some(rule)) => {
                        self.bufs.get_mut(&buf.node).map(|b| b.atts.insert(dev.node.clone(), a));
                        self.finding(
                            FindingKind::ExpectFailed,
                            &buf.node,
                            0..0,
                            vec![dev.node.clone()],
                            format!(
                                "attach of {} to {} was expected to be refused ({}) but was accepted",
                                buf.node, dev.node, rule.node
                            ),
                            "under --attach-policy linux every attach is accepted; check the rule and the platform"
                                .into(),
                        );
                    }
                    (Err(FwError::Attach(e)), expect) => {
                        if let Some(b) = self.bufs.get_mut(&buf.node) {
                            b.refused.insert(dev.node.clone());
                        }
                        if expect.as_ref().map(|r| r.node.as_str()) != Some(e.rule()) {
                            let hint = attach_hint(&e);
                            let msg = format!("{e} (rule: {})", e.rule());
                            self.finding(
                                FindingKind::AttachRefused,
                                &buf.node,
                                0..0,
                                vec![dev.node.clone()],
                                msg,
                                hint,
                            );
                        }
                    }
                    (Err(e), _) => self.fw_error(&buf.node, vec![dev.node.clone()], e),
                }
            }
            Op::Detach { dev, buf } => {
                let Some(b) = self.bufs.get_mut(&buf.node) else { return Ok(()) };
                match b.atts.remove(&dev.node) {
                    Some(a) => {
                        if a.mapped_direction().is_some() {
                            let _ = raw::unmap_attachment(&a);
                            self.finding(
                                FindingKind::Misuse,
                                &buf.node,
                                0..0,
                                vec![dev.node.clone()],
                                format!("{} detaches from {} while still mapped", dev.node, buf.node),
                                format!("`unmap {} {}` before detaching", dev.node, buf.node),
                            );
                        }
                    }
                    None => self.finding(
                        FindingKind::Misuse,
                        &buf.node,
                        0..0,
                        vec![dev.node.clone()],
                        format!("detach of {} from {}, which is not attached", dev.node, buf.node),
                        "detach only what is attached".into(),
                    ),
                }
            }
            Op::Pin { dev, buf } | Op::Unpin { dev, buf } => {
                let pin = matches!(s.op, Op::Pin { .. });
                match self.att(dev, buf) {
                    Some(a) if pin => a.pin(),
                    Some(a) => a.unpin(),
                    None => self.not_attached(dev, buf),
                }
            }
            Op::Migrate { buf, to } => {
                let Some(b) = self.buf(buf).and_then(|b| b.buf.clone()) else {
                    self.released(buf);
                    return Ok(());
                };
                let place = match to.node {
                    MigrateTo::System => Placement::System,
                    MigrateTo::Device => Placement::Device,
                };
                self.san.borrow_mut().begin_copy();
                let r = b.migrate(place);
                self.san.borrow_mut().end_copy();
                if let Err(e) = r {
                    self.fw_error(&buf.node, vec![], e);
                }
            }
            Op::Map { dev, buf, dir: d } => {
                self.wait_resv(buf, Usage::Kernel);
                let line = self.line;
                if let Some(b) = self.bufs.get_mut(&buf.node) {
                    b.map_lines.insert(dev.node.clone(), line);
                }
                let r = match self.att(dev, buf) {
                    Some(a) => raw::map_attachment(a, dir(d.node)),
                    None => {
                        self.not_attached(dev, buf);
                        return Ok(());
                    }
                };
                if let Err(e) = r {
                    self.fw_error(&buf.node, vec![dev.node.clone()], e);
                }
            }
            Op::Unmap { dev, buf } => {
                self.in_flight_check(dev, buf, "unmap");
                let r = match self.att(dev, buf) {
                    Some(a) => raw::unmap_attachment(a),
                    None => {
                        self.not_attached(dev, buf);
                        return Ok(());
                    }
                };
                if let Err(e) = r {
                    self.fw_error(&buf.node, vec![dev.node.clone()], e);
                }
            }
            Op::DeviceBegin { dev, target } | Op::DeviceEnd { dev, target } => {
                let begin = matches!(s.op, Op::DeviceBegin { .. });
                let r = self.range(target);
                let res = match self.att(dev, &target.buf) {
                    Some(a) if begin => raw::begin_device_access(a, r),
                    Some(a) => raw::end_device_access(a, r),
                    None => {
                        self.not_attached(dev, &target.buf);
                        return Ok(());
                    }
                };
                if let Err(e) = res {
                    self.fw_error(&target.buf.node, vec![dev.node.clone()], e);
                }
            }
            Op::DeviceSync { from, to, target } => {
                let r = self.range(target);
                let (Some(a), Some(b)) = (self.att(from, &target.buf), self.att(to, &target.buf)) else {
                    let missing = if self.att(from, &target.buf).is_none() { from } else { to };
                    self.not_attached(missing, &target.buf);
                    return Ok(());
                };
                if let Err(e) = raw::sync_device_to_device(a, b, r) {
                    self.fw_error(&target.buf.node, vec![from.node.clone(), to.node.clone()], e);
                }
            }
            Op::Job(j) => self.submit(j, s.line),
            Op::CpuBegin { target, dir: d } => {
                let Some(b) = self.buf(&target.buf).and_then(|b| b.buf.clone()) else {
                    self.released(&target.buf);
                    return Ok(());
                };
                self.implicit_wait(&target.buf, dir(d.node));
                let r = self.range(target);
                match raw::begin_cpu_access(&b, dir(d.node), r) {
                    Ok(()) => {
                        if let Some(x) = self.bufs.get_mut(&target.buf.node) {
                            x.kernel_open += 1;
                        }
                    }
                    Err(e) => self.fw_error(&target.buf.node, vec!["cpu".into()], e),
                }
            }
            Op::CpuEnd { buf, dir: d } => {
                let Some(b) = self.buf(buf).and_then(|b| b.buf.clone()) else {
                    self.released(buf);
                    return Ok(());
                };
                if let Err(e) = raw::end_cpu_access(&b, dir(d.node)) {
                    self.fw_error(&buf.node, vec!["cpu".into()], e);
                }
                if let Some(x) = self.bufs.get_mut(&buf.node) {
                    x.kernel_open = x.kernel_open.saturating_sub(1);
                }
            }
            Op::CpuRead { target, expect } => self.cpu_access(target, None, expect.as_ref()),
            Op::CpuWrite { target, value } => self.cpu_access(target, Some(value.node), None),
            Op::ImporterVmap { dev, buf } => self.importer_vmap(dev, buf),
            Op::ImporterVunmap { dev, buf } => {
                let id = self.bufs.get_mut(&buf.node).and_then(|b| b.importer_maps.remove(&dev.node));
                match id {
                    Some(id) => {
                        let _ = self.sys.with_sim(|sim| sim.cpu_unmap(id));
                    }
                    None => self.finding(
                        FindingKind::Misuse,
                        &buf.node,
                        0..0,
                        vec![dev.node.clone()],
                        format!("{} vunmaps {}, which it has not mapped", dev.node, buf.node),
                        format!("`{} vmap {}` first, and vunmap once", dev.node, buf.node),
                    ),
                }
            }
            Op::Vmap { buf } => {
                let Some(b) = self.buf(buf).and_then(|b| b.buf.clone()) else {
                    self.released(buf);
                    return Ok(());
                };
                if let Err(e) = raw::vmap(&b) {
                    self.fw_error(&buf.node, vec!["cpu".into()], e);
                }
            }
            Op::Vunmap { buf } => {
                let Some(b) = self.buf(buf).and_then(|b| b.buf.clone()) else {
                    self.released(buf);
                    return Ok(());
                };
                let _ = raw::vunmap(&b);
            }
            Op::Mmap { buf } => {
                let Some(b) = self.buf(buf).and_then(|b| b.buf.clone()) else {
                    self.released(buf);
                    return Ok(());
                };
                match b.mmap() {
                    Ok(m) => {
                        if let Some(x) = self.bufs.get_mut(&buf.node) {
                            x.umap = Some(m);
                        }
                    }
                    Err(e) => self.fw_error(&buf.node, vec!["cpu".into()], e),
                }
            }
            Op::Munmap { buf } => {
                let had = self.bufs.get_mut(&buf.node).and_then(|x| x.umap.take()).is_some();
                if !had {
                    self.finding(
                        FindingKind::Misuse,
                        &buf.node,
                        0..0,
                        vec!["cpu".into()],
                        format!("munmap of {}, which is not mmapped", buf.node),
                        "munmap once per mmap".into(),
                    );
                }
            }
            Op::Sync { buf, flags } => self.sync(buf, flags),
            Op::SetName { buf, name } => {
                let Some(b) = self.buf(buf).and_then(|b| b.buf.clone()) else {
                    self.released(buf);
                    return Ok(());
                };

                match b.set_name(&name.node) {
                    Ok(()) => {}
                    Err(e) => self.fw_error(&buf.node, vec!["cpu".into()], e),
                }
            }
            Op::Fence { name } => {
                self.fences.insert(name.node.clone(), FenceState::Software);
            }
            Op::Signal { fence } => match self.fences.get(&fence.node) {
                Some(FenceState::Software) => {
                    self.fences.insert(fence.node.clone(), FenceState::Signalled(self.cpu.clone()));
                    self.cpu.tick(0);
                }
                _ => self.finding(
                    FindingKind::Misuse,
                    "",
                    0..0,
                    vec!["cpu".into()],
                    format!("signal of fence {}, which is not an unsignalled software fence", fence.node),
                    "a fence signals once; a job's fence is signalled by the job".into(),
                ),
            },
            Op::Wait { fences } => {
                for f in fences {
                    self.cpu_wait(&f.node);
                }
            }
            Op::Export { buf, access, fence } => {
                let deps = self.resv_deps(buf, matches!(access.node, Access::Write | Access::ReadWrite));
                self.fences.insert(fence.node.clone(), FenceState::All(deps));
            }
            Op::Import { fence, buf, access } => {
                let usage = if matches!(access.node, Access::Read) { Usage::Read } else { Usage::Write };
                self.resv_add(buf, &fence.node, usage);
            }
            Op::ResvAdd { buf, fence, usage } => self.resv_add(buf, &fence.node, usage.node),
            Op::Release { buf } => {
                let b = self.bufs.get_mut(&buf.node).and_then(|b| b.buf.take());
                if b.is_none() {
                    self.released(buf);
                }
                drop(b);
            }
            Op::Repeat { .. } => {}
        }
        Ok(())
    }

    fn allocate(&mut self, b: &crate::scenario::BufferDecl) -> Result<(), RunError> {
        let size = b.size.node;
        let mut memfd = None;
        let res = match &b.source.node {
            Source::Heap(h) => self.sys.heap(h).and_then(|heap| heap.allocate(size)),
            Source::Device(d) => self.sys.device_exporter(d).and_then(|x| x.allocate(size)),
            Source::Udmabuf => self.sys.memfd(size).and_then(|mut m| {
                m.seal_shrink();
                let r = m.udmabuf(0, size);
                memfd = Some(m);
                r
            }),
        };
        let buf =
            res.map_err(|e| self.ctx.err(b.source.span, format!("cannot allocate `{}`: {e}", b.name.node), None))?;
        let fw_name: String = b.label.as_ref().map_or(b.name.node.clone(), |l| l.node.clone());
        let fw_name: String = fw_name.chars().take(31).collect();
        let _ = buf.set_name(&fw_name);
        self.names.insert(buf.id(), b.name.node.clone());
        self.bufs.insert(
            b.name.node.clone(),
            Buf {
                buf: Some(buf),
                size,
                atts: HashMap::new(),
                umap: None,
                kernel_open: 0,
                user_open: false,
                resv: Vec::new(),
                importer_maps: HashMap::new(),
                map_lines: HashMap::new(),
                refused: HashSet::new(),
                _memfd: memfd,
            },
        );
        Ok(())
    }

    fn att(&self, dev: &Ident, buf: &Ident) -> Option<&Attachment> {
        self.bufs.get(&buf.node).and_then(|b| b.atts.get(&dev.node))
    }

    fn not_attached(&self, dev: &Ident, buf: &Ident) {
        // After a refused attach, the refusal is the finding; what follows from it is not.
        if self.bufs.get(&buf.node).is_some_and(|b| b.refused.contains(&dev.node)) {
            return;
        }
        self.finding(
            FindingKind::Misuse,
            &buf.node,
            0..0,
            vec![dev.node.clone()],
            format!("{} uses {} without an attachment", dev.node, buf.node),
            format!("`attach {} {}` first", dev.node, buf.node),
        );
    }

    fn in_flight_check(&mut self, dev: &Ident, buf: &Ident, what: &str) {
        let d = self.dev_index(&dev.node);
        let lines: Vec<u32> = self
            .pending
            .iter()
            .filter(|p| p.dev == d && job_buffers(&p.job).contains(&buf.node))
            .map(|p| p.line)
            .collect();
        if let Some(l) = lines.first() {
            let msg = format!("{what} of {} by {} while its job from line {l} is still in flight", buf.node, dev.node);
            let hint = format!("`wait` for the job's fence before line {}", self.line);
            self.finding(FindingKind::Race, &buf.node, 0..0, vec![dev.node.clone()], msg, hint);
            // The hardware most likely finished the job first; run it so the rest of the
            // scenario sees its effect.
            self.run_device_until(d, None);
        }
    }

    fn sync(&mut self, buf: &Ident, flags: &Spanned<SyncFlags>) {
        let raw = match flags.node {
            SyncFlags::Raw(f) => f,
            SyncFlags::Named { end, access } => {
                let a = match access {
                    Access::Read => DMA_BUF_SYNC_READ,
                    Access::Write => DMA_BUF_SYNC_WRITE,
                    Access::ReadWrite => DMA_BUF_SYNC_RW,
                };
                a | if end { DMA_BUF_SYNC_END } else { 0 }
            }
        };
        let decoded = dmabuf::decode_sync_flags(raw);
        if let Some((false, d)) = decoded {
            self.implicit_wait(buf, d);
        }
        let Some(x) = self.bufs.get(&buf.node) else { return };
        let Some(m) = x.umap.as_ref() else {
            self.finding(
                FindingKind::Misuse,
                &buf.node,
                0..0,
                vec!["cpu".into()],
                format!("sync ioctl on {}, which is not mmapped", buf.node),
                format!("`mmap {}` first", buf.node),
            );
            return;
        };
        let res = raw::sync_ioctl(m, raw);
        if let Some((end, _)) = decoded
            && let Some(x) = self.bufs.get_mut(&buf.node)
        {
            x.user_open = !end;
        }
        if let Err(e) = res {
            self.fw_error(&buf.node, vec!["cpu".into()], e);
        }
    }

    fn cpu_access(&mut self, t: &Target, write: Option<Value>, expect: Option<&Spanned<Value>>) {
        let Some(b) = self.bufs.get(&t.buf.node) else { return };
        let Some(handle) = b.buf.clone() else { return self.released(&t.buf) };
        let r = self.range(t);
        let user = b.umap.is_some();
        let path =
            if user { Path::User { bracketed: b.user_open } } else { Path::Kernel { bracketed: b.kernel_open > 0 } };
        let info = AccessInfo {
            agent: "cpu".into(),
            thread: 0,
            clock: self.cpu.clone(),
            buffer: t.buf.node.clone(),
            range: r.clone(),
            write: write.is_some(),
            line: self.line,
            path,
        };
        let data = write.map(|v| self.bytes(v, &r, self.frame));
        open_access(&self.san, &self.accessing, info);
        let b = &self.bufs[&t.buf.node];
        let res: Result<Option<Vec<u8>>, FwError> = match (&data, &b.umap) {
            (Some(d), Some(m)) => raw::mmap_write(m, r.start, d).map(|_| None),
            (Some(d), None) => raw::kernel_write(&handle, r.start, d).map(|_| None),
            (None, Some(m)) => {
                let mut out = vec![0u8; (r.end - r.start) as usize];
                raw::mmap_read(m, r.start, &mut out).map(|()| Some(out))
            }
            (None, None) => {
                let mut out = vec![0u8; (r.end - r.start) as usize];
                raw::kernel_read(&handle, r.start, &mut out).map(|()| Some(out))
            }
        };
        let found = close_access(&self.san, &self.accessing);
        self.cpu.tick(0);
        self.drain_reports(Some(user));
        match res {
            Ok(Some(got)) => {
                if let Some(e) = expect
                    && !found
                {
                    self.check_expect(&t.buf.node, &r, e.node, &got, "cpu", self.frame);
                }
            }
            Ok(None) => {}
            Err(e) => self.fw_error(&t.buf.node, vec!["cpu".into()], e),
        }
    }

    fn check_expect(&mut self, buffer: &str, r: &Range<u64>, v: Value, got: &[u8], agent: &str, frame: u64) {
        // A device whose attach was refused never wrote: the refusal is the finding.
        if self.bufs.get(buffer).is_some_and(|b| !b.refused.is_empty()) {
            return;
        }
        if let Some(i) = first_mismatch(v, r.start, frame, got) {
            let want = self.bytes(v, &(r.start + i as u64..r.start + i as u64 + 1), frame);
            let off = r.start + i as u64;
            self.finding(
                FindingKind::ExpectFailed,
                buffer,
                off..r.end,
                vec![agent.into()],
                format!(
                    "{agent} read {buffer}{} and byte {off:#x} is {:#04x}, expected {:#04x}",
                    fmt_range(r),
                    got[i],
                    want[0]
                ),
                "the sanitizer saw no coherency problem here: check what the scenario writes and expects".into(),
            );
        }
    }

    // ----- fences and jobs -----------------------------------------------------------

    fn resv_add(&mut self, buf: &Ident, fence: &str, usage: Usage) {
        // A fence already signalled adds nothing to wait for; prune what has signalled.
        let signalled: HashSet<String> =
            self.fences.iter().filter(|(_, s)| matches!(s, FenceState::Signalled(_))).map(|(n, _)| n.clone()).collect();
        if let Some(b) = self.bufs.get_mut(&buf.node) {
            b.resv.retain(|(f, _)| !signalled.contains(f));
            match b.resv.iter_mut().find(|(f, _)| f == fence) {
                // Usage is promoted (to a stricter one), never demoted.
                Some((_, u)) => *u = (*u).min(usage),
                None => b.resv.push((fence.to_string(), usage)),
            }
        }
    }

    /// The fences of `buf` a waiter must wait for: `write` access waits for every user,
    /// read access for the writers (and the kernel's).
    fn resv_deps(&self, buf: &Ident, write: bool) -> Vec<String> {
        let limit = if write { Usage::Read } else { Usage::Write };
        self.bufs
            .get(&buf.node)
            .map(|b| b.resv.iter().filter(|(_, u)| *u <= limit).map(|(f, _)| f.clone()).collect())
            .unwrap_or_default()
    }

    fn wait_resv(&mut self, buf: &Ident, limit: Usage) {
        let deps: Vec<String> = self
            .bufs
            .get(&buf.node)
            .map(|b| b.resv.iter().filter(|(_, u)| *u <= limit).map(|(f, _)| f.clone()).collect())
            .unwrap_or_default();
        for f in deps {
            self.cpu_wait(&f);
        }
    }

    /// What `dma_buf_begin_cpu_access` and the sync ioctl's START do first: wait for the
    /// fences of the reservation object that the access must wait for.
    fn implicit_wait(&mut self, buf: &Ident, d: DmaDirection) {
        let deps = self.resv_deps(buf, d != DmaDirection::FromDevice);
        for f in deps {
            self.cpu_wait(&f);
        }
    }

    /// Makes `fence` signal (running the jobs it needs); its clock, or `None` if nothing
    /// will ever signal it.
    fn resolve_fence(&mut self, fence: &str, depth: u32) -> Option<VClock> {
        if depth > 64 {
            return None;
        }
        match self.fences.get(fence).cloned() {
            Some(FenceState::Signalled(c)) => Some(c),
            Some(FenceState::Job(id)) => {
                let dev = self.pending.iter().find(|p| p.id == id).map(|p| p.dev)?;
                self.run_device_until(dev, Some(id));
                match self.fences.get(fence) {
                    Some(FenceState::Signalled(c)) => Some(c.clone()),
                    _ => None,
                }
            }
            Some(FenceState::All(deps)) => {
                let mut c = VClock::default();
                for d in deps {
                    c.join(&self.resolve_fence(&d, depth + 1)?);
                }
                self.fences.insert(fence.to_string(), FenceState::Signalled(c.clone()));
                Some(c)
            }
            Some(FenceState::Software) | None => None,
        }
    }

    fn cpu_wait(&mut self, fence: &str) {
        match self.resolve_fence(fence, 0) {
            Some(c) => self.cpu.join(&c),
            None => self.finding(
                FindingKind::Misuse,
                "",
                0..0,
                vec!["cpu".into()],
                format!("wait for fence {fence} would block forever: nothing signals it"),
                format!("`signal {fence}` before waiting for it, or make a job signal it"),
            ),
        }
    }

    fn submit(&mut self, j: &Job, line: u32) {
        let dev = self.dev_index(&j.dev.node);
        let id = self.next_job;
        self.next_job += 1;
        let p = Pending { id, dev, job: j.clone(), line, frame: self.frame, submit: self.cpu.clone() };
        self.cpu.tick(0);
        match &j.signal {
            Some(f) => {
                self.fences.insert(f.node.clone(), FenceState::Job(id));
                // Drivers add their job's fence to the buffers it touches (implicit sync).
                let (reads, writes) = job_access(j);
                for b in reads {
                    self.resv_add(&b, &f.node, Usage::Read);
                }
                for b in writes {
                    self.resv_add(&b, &f.node, Usage::Write);
                }
                self.pending.push(p);
            }
            None => {
                // A synchronous job: the step waits for it.
                self.pending.push(p);
                self.run_device_until(dev, Some(id));
                if let Some(c) = self.devs.get(dev).cloned() {
                    self.cpu.join(&c);
                }
            }
        }
    }

    /// Runs device `dev`'s pending jobs in order, up to job `until` (all when `None`).
    fn run_device_until(&mut self, dev: usize, until: Option<usize>) {
        loop {
            let Some(pos) = self.pending.iter().position(|p| p.dev == dev) else { return };
            let p = self.pending.remove(pos);
            let id = p.id;
            self.run_job(p);
            if Some(id) == until {
                return;
            }
        }
    }

    fn run_job(&mut self, p: Pending) {
        let mut clock = p.submit.clone();
        clock.join(&self.devs[p.dev]);
        for f in &p.job.after {
            match self.resolve_fence(&f.node, 1) {
                Some(c) => clock.join(&c),
                None => {
                    let saved = self.line;
                    self.line = p.line;
                    self.finding(
                        FindingKind::Misuse,
                        "",
                        0..0,
                        vec![p.job.dev.node.clone()],
                        format!("the job waits for fence {}, which nothing signals: it never runs", f.node),
                        format!("`signal {}` (or a job that signals it) before the job can run", f.node),
                    );
                    self.line = saved;
                    if let Some(s) = &p.job.signal {
                        self.fences.insert(s.node.clone(), FenceState::Software);
                    }
                    return;
                }
            }
        }
        let t = p.dev + 1;
        clock.tick(t);
        self.devs[p.dev] = clock.clone();
        let saved = self.line;
        self.line = p.line;
        let buffer = job_buffers(&p.job).first().cloned().unwrap_or_default();
        self.san.borrow_mut().set_step(p.line, &buffer);
        let dev_name = p.job.dev.node.clone();
        match &p.job.kind {
            JobKind::Read { src, expect } => {
                if let Some(got) = self.device_read(&dev_name, t, &clock, src)
                    && let Some(e) = expect
                {
                    let r = self.range(src);
                    self.check_expect(&src.buf.node, &r, e.node, &got, &dev_name, p.frame);
                }
            }
            JobKind::Write { dst, value } => {
                let r = self.range(dst);
                let data = self.bytes(value.node, &r, p.frame);
                self.device_write(&dev_name, t, &clock, dst, &data);
            }
            JobKind::Copy { src, dst } | JobKind::Transform { src, dst, .. } => {
                let key = if let JobKind::Transform { xor, .. } = &p.job.kind { xor.node } else { 0 };
                if let Some(mut got) = self.device_read(&dev_name, t, &clock, src) {
                    got.iter_mut().for_each(|b| *b ^= key);
                    self.device_write(&dev_name, t, &clock, dst, &got);
                }
            }
        }
        self.drain_reports(None);
        if let Some(s) = &p.job.signal {
            self.fences.insert(s.node.clone(), FenceState::Signalled(clock));
        }
        self.line = saved;
    }

    fn device_read(&mut self, dev: &str, t: usize, clock: &VClock, src: &Target) -> Option<Vec<u8>> {
        let r = self.range(src);
        let d = self.dev_index(dev);
        let coherent = self.coherent(d);
        let mapped_at = self.map_line(&src.buf.node, dev);
        let Some(att) = self.bufs.get(&src.buf.node).and_then(|b| b.atts.get(dev)) else {
            self.not_attached(&Spanned::new(dev.to_string(), Span::default()), &src.buf);
            return None;
        };
        let info = AccessInfo {
            agent: dev.to_string(),
            thread: t,
            clock: clock.clone(),
            buffer: src.buf.node.clone(),
            range: r.clone(),
            write: false,
            line: self.line,
            path: Path::Device { coherent, mapped_at },
        };
        open_access(&self.san, &self.accessing, info);
        let res = raw::device_read(att, r);
        let found = close_access(&self.san, &self.accessing);
        match res {
            Ok(v) if !found => Some(v),
            Ok(_) => None,
            Err(e) => {
                self.fw_error(&src.buf.node, vec![dev.to_string()], e);
                None
            }
        }
    }

    fn device_write(&mut self, dev: &str, t: usize, clock: &VClock, dst: &Target, data: &[u8]) {
        let r = self.range(dst);
        let d = self.dev_index(dev);
        let coherent = self.coherent(d);
        let mapped_at = self.map_line(&dst.buf.node, dev);
        let Some(att) = self.bufs.get(&dst.buf.node).and_then(|b| b.atts.get(dev)) else {
            return self.not_attached(&Spanned::new(dev.to_string(), Span::default()), &dst.buf);
        };
        let info = AccessInfo {
            agent: dev.to_string(),
            thread: t,
            clock: clock.clone(),
            buffer: dst.buf.node.clone(),
            range: r.clone(),
            write: true,
            line: self.line,
            path: Path::Device { coherent, mapped_at },
        };
        open_access(&self.san, &self.accessing, info);
        let res = raw::device_write(att, r.start, data);
        close_access(&self.san, &self.accessing);
        if let Err(e) = res {
            self.fw_error(&dst.buf.node, vec![dev.to_string()], e);
        }
    }

    fn map_line(&self, buf: &str, dev: &str) -> u32 {
        self.bufs.get(buf).and_then(|b| b.map_lines.get(dev)).copied().unwrap_or(0)
    }

    /// The importer's own cacheable kernel mapping of the buffer's pages.
    fn importer_vmap(&mut self, dev: &Ident, buf: &Ident) {
        if self.att(dev, buf).is_none() {
            self.not_attached(dev, buf);
            return;
        }
        let Some(b) = self.buf(buf).and_then(|b| b.buf.clone()) else {
            self.released(buf);
            return;
        };
        let pages = b.backing().pages;
        match self.sys.with_sim(|sim| sim.cpu_map(&pages, MemAttr::Cached)) {
            Ok(id) => {
                if let Some(x) = self.bufs.get_mut(&buf.node) {
                    x.importer_maps.insert(dev.node.clone(), id);
                }
            }
            Err(e) => self.finding(
                FindingKind::Misuse,
                &buf.node,
                0..0,
                vec![dev.node.clone()],
                format!("{} cannot map {}: {e}", dev.node, buf.node),
                "map through dma_buf_vmap".into(),
            ),
        }
    }

    fn finish(&mut self) {
        // Jobs nobody waited for still run (the hardware does not forget them).
        let devs: Vec<usize> = self.pending.iter().map(|p| p.dev).collect();
        for d in devs {
            self.run_device_until(d, None);
        }
    }
}

/// The index of the first byte of `got` (read at buffer offset `start`) that is not
/// `v`. Compares a block at a time: a frame's worth of bytes is checked per read.
fn first_mismatch(v: Value, start: u64, frame: u64, got: &[u8]) -> Option<usize> {
    const BLOCK: usize = 64;
    let uniform = match v {
        Value::Byte(b) => Some(b),
        Value::Frame => Some((frame.wrapping_add(1) & 0xff) as u8),
        Value::Seq => None,
    };
    match uniform {
        Some(b) => {
            let block = [b; BLOCK];
            let mut chunks = got.chunks_exact(BLOCK);
            let mut base = 0;
            for c in &mut chunks {
                if c != block {
                    return c.iter().position(|&x| x != b).map(|i| base + i);
                }
                base += BLOCK;
            }
            chunks.remainder().iter().position(|&x| x != b).map(|i| base + i)
        }
        None => got.iter().enumerate().position(|(i, &x)| x != ((start + i as u64).wrapping_add(frame) & 0xff) as u8),
    }
}

/// An access of the scenario starts: the sanitizer watches it, and the explorer knows.
fn open_access(san: &RefCell<Sanitizer>, accessing: &Option<Rc<Cell<bool>>>, info: AccessInfo) {
    san.borrow_mut().begin_access(info);
    if let Some(a) = accessing {
        a.set(true);
    }
}

/// The access ends; whether the sanitizer found something in it.
fn close_access(san: &RefCell<Sanitizer>, accessing: &Option<Rc<Cell<bool>>>) -> bool {
    if let Some(a) = accessing {
        a.set(false);
    }
    san.borrow_mut().end_access()
}

fn job_buffers(j: &Job) -> Vec<String> {
    let (r, w) = job_access(j);
    r.iter().chain(&w).map(|i| i.node.clone()).collect()
}

fn job_access(j: &Job) -> (Vec<Ident>, Vec<Ident>) {
    match &j.kind {
        JobKind::Read { src, .. } => (vec![src.buf.clone()], vec![]),
        JobKind::Write { dst, .. } => (vec![], vec![dst.buf.clone()]),
        JobKind::Copy { src, dst } | JobKind::Transform { src, dst, .. } => {
            (vec![src.buf.clone()], vec![dst.buf.clone()])
        }
    }
}

fn step_buffer(op: &Op) -> Option<String> {
    Some(
        match op {
            Op::Buffer(b) => &b.name,
            Op::Attach { buf, .. }
            | Op::Detach { buf, .. }
            | Op::ImporterVmap { buf, .. }
            | Op::ImporterVunmap { buf, .. }
            | Op::Pin { buf, .. }
            | Op::Unpin { buf, .. }
            | Op::Migrate { buf, .. }
            | Op::Map { buf, .. }
            | Op::Unmap { buf, .. }
            | Op::CpuEnd { buf, .. }
            | Op::Vmap { buf }
            | Op::Vunmap { buf }
            | Op::Mmap { buf }
            | Op::Munmap { buf }
            | Op::Sync { buf, .. }
            | Op::SetName { buf, .. }
            | Op::Export { buf, .. }
            | Op::Import { buf, .. }
            | Op::ResvAdd { buf, .. }
            | Op::Release { buf } => buf,
            Op::DeviceBegin { target, .. }
            | Op::DeviceEnd { target, .. }
            | Op::DeviceSync { target, .. }
            | Op::CpuBegin { target, .. }
            | Op::CpuRead { target, .. }
            | Op::CpuWrite { target, .. } => &target.buf,
            Op::Job(j) => return job_buffers(j).into_iter().next(),
            _ => return None,
        }
        .node
        .clone(),
    )
}

fn attach_hint(e: &AttachError) -> String {
    match e.rule() {
        "contiguity" => "the device needs physically contiguous memory and has no IOMMU: allocate from `heap=cma`".into(),
        "reachability" => "the device cannot reach that memory region: allocate from a region it reaches (see `dmabuf platforms show`)".into(),
        "dma-mask" => "the pages lie above the device's DMA mask and it has no IOMMU: allocate below the mask (a DMA32 zone or `heap=cma`) or bounce where bouncing is allowed".into(),
        "bounce" => "this device cannot work through a bounce buffer (a scanout reads the frame continuously): allocate memory it reaches directly".into(),
        "p2p" => "there is no peer-to-peer path from this device to the exporter's memory: migrate the buffer to system memory (a dynamic exporter does it at attach) or use a device with a path".into(),
        "p2p-not-allowed" => "the importer does not accept peer-to-peer addresses: attach it with `p2p` if its driver can, or migrate the buffer to system memory".into(),
        _ => "see the rule in the message".into(),
    }
}

/// `[start, end)` of a range for JSON.
pub fn range_of(r: &ByteRange) -> [u64; 2] {
    [r.start, r.end]
}
