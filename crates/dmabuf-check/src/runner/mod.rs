//! Runs a scenario on the simulated framework with the sanitizer watching.
//!
//! The runner first checks every name and range of the scenario against the platform and
//! lowers it into a [`Program`] (bad input is an error, before anything runs), then
//! executes the steps in order on a [`System`]. Device jobs with `signal F` are submitted
//! and run *later*: when something waits for their fence (a `wait`, a job's `after`, the
//! implicit wait of a CPU bracket or a map on the buffer's reservation object), when a
//! later job of the same device must run, or at the end. Their happens-before is what the
//! program established (submission, fences), not when they happened to run, so a missing
//! wait shows up as a race whatever the order.
//!
//! | module | what it holds |
//! |---|---|
//! | `program`, `lower` | the resolved program, and validation into it |
//! | `world` | what a run shares with its fences: objects, job queues, clocks |
//! | `exec` | the steps, in order, with an explorer's say between them |
//! | `jobs` | device jobs and the accesses the sanitizer watches |
//! | `findings` | the runner's own findings and the framework's reports as findings |
//! | `trace` | what the program does, told to a [`Tracer`](trace::Tracer) (the HTML report) |

mod error;
mod exec;
mod findings;
mod jobs;
mod lower;
mod program;
pub mod trace;
mod world;

use std::cell::{Cell, RefCell};
use std::path::{Path as FsPath, PathBuf};
use std::rc::Rc;

use dmabuf::{AttachPolicy, MaintenancePolicy, System, SystemConfig};
use dmabuf_sim::{Chooser, Observer, PhysAddr, Platform, Sim, Stats, chooser_from_name};

pub(crate) use error::internal_error;
pub use error::{RunError, line_col};
pub use lower::{MAX_STEPS, lower, total_steps};
pub use program::{BufId, Bytes, Cmd, FenceId, JobCmd, JobKind, Program, Source, Stmt};

use crate::sanitizer::{Finding, Sanitizer};
use crate::scenario::{ByteRange, PlatformRef, Scenario, Span};
use error::Ctx;

/// How to run a scenario (the `dmabuf check` flags).
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The chooser: `adversarial`, `seeded:N`, `lru`, `never`.
    pub chooser: String,
    /// Whether attach refuses what a rule forbids (`Strict`) or lets it through and reports
    /// it, as upstream does (`Linux`).
    pub attach: AttachPolicy,
    /// Whose cache maintenance the framework does: upstream's (`Linux`) or the minimal
    /// correct one (`Minimal`).
    pub maintenance: MaintenancePolicy,
    /// A platform (preset name or TOML path) overriding the scenario's.
    pub platform: Option<String>,
    /// The most memory the process may hold ([`crate::memory`]): a run that would hold
    /// more stops with an error that [`RunError::over_memory`] tells apart.
    pub max_memory: Option<u64>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            chooser: "adversarial".into(),
            attach: AttachPolicy::Strict,
            maintenance: MaintenancePolicy::Minimal,
            platform: None,
            max_memory: None,
        }
    }
}

/// What a run found.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The name of the platform the scenario ran on: its own, or the one that overrode it.
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
    // A board's device tree is a platform too (`--platform BOARD.dtb`).
    let loaded =
        if spec.ends_with(".dtb") { dmabuf_dt::import_file(FsPath::new(&spec)) } else { Platform::load(&spec) };
    loaded.map_err(|e| {
        let help = Some(format!("presets: {}", Platform::preset_names().join(", ")));
        // A broken rule or a syntax error in a TOML file points into that file, at the
        // key, not at the scenario's `platform` line.
        if let (Some(at), Some(toml)) = (e.location(), e.file())
            && let Ok(text) = Platform::read_toml_file(FsPath::new(toml))
        {
            let toml_ctx = Ctx { file: toml, src: &text };
            return toml_ctx.err(Span::new(at.span.start, at.span.end), e.rule(), None);
        }
        match span {
            Some(s) => ctx.err(s, e.to_string(), help),
            None => ctx.err(Span::new(0, 0), format!("--platform {spec}: {e}"), help),
        }
    })
}

/// Runs a scenario: parses nothing, checks names, executes, and returns the findings.
pub fn run(scenario: &Scenario, file: &FsPath, src: &str, cfg: &RunConfig) -> Result<RunResult, RunError> {
    run_with_progress(scenario, file, src, cfg, &mut |_| {})
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
    // The error names the choosers already.
    let chooser = chooser_from_name(&cfg.chooser).map_err(|e| ctx.err(Span::new(0, 0), e.to_string(), None))?;
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
    /// Stop the run (as [`Hooks::visit`] does) at the first step after this moment: an
    /// explorer's time bound, which must hold inside a long run too.
    pub deadline: Option<std::time::Instant>,
    /// Hears what the program does: steps, jobs, fences and waits (the HTML report).
    pub tracer: Option<trace::TracerRef>,
    /// The platform and the lowered program, from [`prepare`] with the same scenario and
    /// config: an explorer runs a scenario thousands of times and parses it once.
    pub prepared: Option<Rc<Prepared>>,
    /// Asked when the run ends: true when the process exits right after it (an explorer's
    /// forked run). The run's objects are then left for the exit to free: freeing them
    /// one by one costs as much as the run was long, and a search ends thousands of runs.
    pub exits_after: Option<Box<dyn Fn() -> bool + 'a>>,
}

/// A scenario checked against its platform and lowered, ready to run.
pub struct Prepared {
    platform: Platform,
    prog: Rc<Program>,
}

/// Loads the scenario's platform and lowers the scenario for it (what every run of it
/// starts with).
pub fn prepare(scenario: &Scenario, file: &FsPath, src: &str, cfg: &RunConfig) -> Result<Prepared, RunError> {
    let platform = load_platform(scenario, file, src, cfg.platform.as_deref())?;
    let fname = file.display().to_string();
    let prog = Rc::new(lower(scenario, &platform, &fname, src)?);
    Ok(Prepared { platform, prog })
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
            deadline: None,
            tracer: None,
            prepared: None,
            exits_after: None,
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
    // The error names the choosers already.
    let chooser = chooser_from_name(&cfg.chooser).map_err(|e| ctx.err(Span::new(0, 0), e.to_string(), None))?;
    run_hooked(scenario, file, src, cfg, Hooks { observer: Some(observer), ..Hooks::new(chooser) })
}

/// Runs a scenario with an explorer's [`Hooks`]. A run stopped by `visit` returns the
/// findings so far, with `stopped` set.
pub fn run_hooked(
    scenario: &Scenario,
    file: &FsPath,
    src: &str,
    cfg: &RunConfig,
    mut hooks: Hooks<'_>,
) -> Result<RunResult, RunError> {
    let fname = file.display().to_string();
    let (platform, prog) = match hooks.prepared.take() {
        Some(p) => (p.platform.clone(), p.prog.clone()),
        None => {
            let p = prepare(scenario, file, src, cfg)?;
            (p.platform, p.prog)
        }
    };
    let ctx = Ctx { file: &fname, src };
    let exits_after = hooks.exits_after.take();
    let san = Rc::new(RefCell::new(Sanitizer::new()));
    let chooser = std::mem::replace(&mut hooks.chooser, Box::new(dmabuf_sim::Never));
    let platform_name = platform.name.clone();
    let builder = Sim::builder(platform).chooser_boxed(chooser);
    let sim = match hooks.observer.take() {
        Some(o) => builder.observer((san.clone(), o)).build(),
        None => builder.observer(san.clone()).build(),
    };
    let sys = System::new(sim, SystemConfig { attach: cfg.attach, maintenance: cfg.maintenance });
    let w = world::World::new(
        prog.clone(),
        sys,
        san.clone(),
        hooks.accessing.clone(),
        hooks.line.clone(),
        hooks.tracer.clone(),
        cfg.max_memory,
    );
    w.jobs.borrow_mut().cpu.tick(0);
    let mut ex = exec::Exec { ctx, w: w.clone(), steps: 0, hooks, stopped: false };
    ex.run(&prog.steps)?;
    let stopped = ex.stopped;
    if !stopped {
        ex.finish();
        ex.leak_check();
    }
    let steps = ex.steps;
    drop(ex);
    let stats = w.sys.stats();
    // Tear down quietly: what a program leaves at exit the kernel cleans up.
    let bufs: Vec<_> = w.objs.borrow_mut().bufs.drain(..).collect();
    for mut b in bufs.into_iter().flatten() {
        b.umap = None;
        for a in b.atts.drain(..).flatten() {
            let _ = dmabuf::raw::unmap_attachment(&a);
        }
    }
    let mut s = san.borrow_mut();
    if !stopped {
        s.finish();
    }
    if exits_after.is_some_and(|exits| exits()) {
        let findings = s.findings().to_vec();
        drop(s);
        std::mem::forget((san, w));
        return Ok(RunResult { platform: platform_name, findings, stats, steps, stopped });
    }
    let findings = std::mem::take(&mut *s).into_findings();
    Ok(RunResult { platform: platform_name, findings, stats, steps, stopped })
}

/// `[start, end)` of a range for JSON.
pub fn range_of(r: &ByteRange) -> [u64; 2] {
    [r.start, r.end]
}
