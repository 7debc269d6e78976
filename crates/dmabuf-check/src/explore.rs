//! The exhaustive explorer: every choice the hardware may make, every order of what
//! nothing orders.
//!
//! `dmabuf check` runs one choice sequence (one chooser). A protocol is correct only if it
//! is correct for every write-back, drop and speculative fill the hardware may do, and
//! for every order in which device jobs that nothing orders may complete. The explorer
//! enumerates them depth-first: a path is the list of choices made at each choice point,
//! a run follows a prefix and then takes the first option everywhere, and the next path
//! changes the last choice that has an option left. A path does not re-run from the
//! start: it branches from a snapshot of the run (a forked process) at or above the point
//! where it turns, so a run of `F` frames costs at most `F log F` runs of a frame, not
//! `F^2` (`explore/snapshot.rs` places the snapshots and argues the bounds; measured, it
//! is a few runs of each point, whatever `F`). Line classes are searched in parallel.
//! `ExploreConfig::snapshots` off re-runs every path from the start, in one process: the
//! same search (a test holds the two to the same states and verdicts).
//!
//! Choice points:
//! - after every hardware operation, for each line of the operation's range that holds
//!   a candidate freedom (from [`dmabuf_sim::HwView::candidates`]): a dirty line may
//!   stay, be written back, or be written back and dropped; a clean line may stay or be
//!   dropped; an absent line of a cacheable mapping may stay absent or be prefetched;
//! - before every step, for each device with a pending job: run it now or not (the runner
//!   otherwise runs jobs as late as the program allows).
//!
//! # Reductions, and why they are sound
//!
//! - **Only lines the scenario reads or writes are choice points.** A pilot run records the
//!   lines of every CPU and device access. A stale read, lost write or race is about bytes
//!   some access wrote or read; a freedom on any other line changes no byte an access
//!   sees, so leaving those lines alone loses no verdict.
//! - **Lines are explored one at a time.** The hardware's freedoms on one line change no
//!   byte of another line, and stale reads and lost writes are properties of bytes; so a
//!   violation on some path shows up on a path that takes only that line's freedoms. Each
//!   line's choices are explored on their own (with every order of jobs, which are not
//!   per line), and the states add up over lines instead of multiplying. Races do not
//!   depend on the hardware's choices at all (they come from the happens-before order of
//!   the program and its jobs), so every line's exploration finds them.
//! - **Symmetric lines are explored once.** The pilot records, for every line, the list
//!   of operations that touched it (the program step during which each ran, its kind,
//!   agent and attribute, whether it covered the whole line, whether it was one of the
//!   scenario's accesses). Two lines with the same list see the same operations during
//!   the same steps, each acting on the whole line the same way; the explorer's choice
//!   points (job orders, state hashes) lie between steps, and a line's freedoms are
//!   offered right after the operations on it, so every path on one line has a mirror
//!   path on the other with the same verdict (only the byte values differ, and verdicts
//!   come from provenance). Within one step, operations on other lines (a clean that
//!   walks a buffer page by page) neither see nor change the line, so where in the step
//!   its own operations fall does not matter. A 1 GiB frame written, cleaned page by page
//!   and read as a whole is one class, not 16 million lines. The record is kept as runs
//!   of lines (`pilot`), so the pilot's memory follows the buffer's pieces, not its lines.
//! - **A freedom on a line is only offered right after an operation on that line.** Between
//!   two operations on line L, operations on other lines neither see nor change L's cache
//!   state or memory, so a freedom on L taken anywhere in that interval commutes to right
//!   after the first of them (partial-order reduction: independent moves commute).
//!   Freedoms in different caches at one point are independent too, so each choice is
//!   made once per point, never in every permutation.
//! - **State hashing.** Before every step the runner hashes the whole state that decides the
//!   future: program position, vector clocks, pending jobs, fences, the sanitizer's
//!   shadow (latest writes and reads with their clocks, destroyed writes, findings so
//!   far), and the hardware's state of the explored line (every cache's line state,
//!   bytes and provenance, memory's bytes and provenance, pending write-combined stores).
//!   The other lines take no choices, so their state follows from the program position
//!   and the order in which jobs ran, which the rest of the hash holds.
//!   Equal hashes behave the same from there on, so a state already visited is not
//!   explored again: depth-first order has explored everything below it the first time.
//!   (A 64-bit hash collision could merge two states; at the state counts here the odds
//!   are below 1 in 10^9.)
//!
//! Bounds (`max_states`, `timeout`, the run's `max_memory`) end the search as
//! `Inconclusive`, never `Proved`; the time bound holds inside a run too (a run is cut
//! at the first step past it).

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use dmabuf_sim::{CacheId, Chooser, Freedom, HwView, OpInfo, OpKind, PhysAddr};

use crate::runner::{Hooks, Prepared, RunConfig, RunError, RunResult, prepare, run_hooked};
use crate::sanitizer::{Finding, FindingKind};
use crate::scenario::Scenario;

/// Bounds and settings of an exploration.
#[derive(Clone, Debug)]
pub struct ExploreConfig {
    /// Policies and platform, as for `dmabuf check` (the chooser is ignored).
    pub run: RunConfig,
    /// Stop as inconclusive after this many distinct states.
    pub max_states: u64,
    /// Stop as inconclusive after this long.
    pub timeout: Option<Duration>,
    /// Branch from snapshots of the run (forked processes: `explore/snapshot.rs`) instead of
    /// re-running every path from the start.
    pub snapshots: bool,
    /// Line classes explored at once (processes), with snapshots.
    pub jobs: usize,
    /// With snapshots: how long a run goes past its last checkpoint before it leaves
    /// another (a checkpoint pays when replaying to it costs more than a fork). Zero
    /// forks at every point the placement allows (tests use it).
    pub checkpoint_after: Duration,
}

impl Default for ExploreConfig {
    fn default() -> Self {
        ExploreConfig {
            run: RunConfig::default(),
            max_states: 1_000_000,
            timeout: None,
            snapshots: true,
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            checkpoint_after: snapshot::CHECKPOINT_AFTER,
        }
    }
}

/// How an exploration ended: every path clean, a path with a finding, or a bound first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No stale read, lost write or race on any path.
    Proved,
    /// Some path has a stale read, lost write or race; the shortest found is the
    /// [`Exploration::counterexample`].
    Counterexample,
    /// A bound (states or time) stopped the search before either was known.
    Inconclusive,
}

impl Verdict {
    /// A counterexample wins over a bound; a search that ended without either proved.
    fn of(counterexample: bool, bound: bool) -> Verdict {
        match (counterexample, bound) {
            (true, _) => Verdict::Counterexample,
            (false, true) => Verdict::Inconclusive,
            (false, false) => Verdict::Proved,
        }
    }

    /// The name in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Proved => "proved",
            Verdict::Counterexample => "counterexample",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// One choice taken on a path (the first option, "nothing", is not listed).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Move {
    /// The scenario line being executed when the choice was made (the step after which
    /// the hardware acted, or before which a job ran).
    pub line: u32,
    /// What the choice made happen, in words, as the report prints it.
    pub what: String,
}

/// A path that breaks the protocol.
#[derive(Clone, Debug)]
pub struct Counterexample {
    /// The line whose freedoms were explored (an index into the scenario's accessed
    /// lines, in address order), when there are any.
    pub line: Option<usize>,
    /// The choice made at every point, in order: what a replay file stores.
    pub choices: Vec<u8>,
    /// The choices that were not "nothing", in order.
    pub moves: Vec<Move>,
    /// The run along this path: its findings, statistics and steps.
    pub result: RunResult,
}

/// What an exploration found.
#[derive(Clone, Debug)]
pub struct Exploration {
    /// Whether every path was clean, one was not, or the search stopped early.
    pub verdict: Verdict,
    /// Distinct states visited.
    pub states: u64,
    /// Complete paths run.
    pub paths: u64,
    /// The most choice points on one path.
    pub max_depth: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// The shortest counterexample found (fewest moves).
    pub counterexample: Option<Counterexample>,
    /// Why the search stopped early, when it did.
    pub bound: Option<String>,
    /// The kinds of the other findings (misuse, refused attaches: what a proof does not
    /// cover) that the first path has, by name, each once: `dmabuf check` reports them.
    pub not_covered: Vec<&'static str>,
    /// Snapshots taken (checkpoint processes forked); 0 when re-executing.
    pub checkpoints: u64,
    /// Choice points the search's runs passed, replays included. Over `states`, it is
    /// how often the search ran a point again: re-execution runs every path from the
    /// start, a snapshot search from a checkpoint.
    pub points: u64,
}

mod pilot;
mod snapshot;
mod trail;

use pilot::LineRecord;
use snapshot::{Bounds, PathEnd, RunEnd, Stop};
use trail::Trail;

/// The explorer's chooser: records the lines accesses touch (in the pilot run) and asks
/// the trail at every candidate freedom on them.
struct ExploreChooser {
    trail: Rc<RefCell<Trail>>,
    /// The lines whose freedoms are explored (after the pilot).
    lines: Rc<RefCell<Vec<PhysAddr>>>,
    /// The pilot's record of every operation on every line, when this is the pilot.
    /// Lines with the same record are symmetric.
    pilot: Option<Rc<RefCell<LineRecord>>>,
    /// Whether one of the scenario's accesses is running (set by the runner).
    accessing: Rc<Cell<bool>>,
    /// The steps the runner has executed (the pilot's clock).
    steps: Rc<Cell<u64>>,
}

fn cache_name(c: CacheId) -> String {
    match c {
        CacheId::Cpu => "the CPU cache".into(),
        CacheId::Device(d) => format!("device {}'s cache", d.index()),
    }
}

impl Chooser for ExploreChooser {
    fn name(&self) -> String {
        "explore".into()
    }

    fn bounded(&self) -> bool {
        false
    }

    fn choose(&mut self, op: &OpInfo, hw: &HwView<'_>, out: &mut Vec<Freedom>) {
        let line = hw.line_size();
        if let Some(pilot) = &self.pilot {
            let what = {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                format!("{:?} {:?} {:?} {}", op.kind, op.agent, op.attr, op.writes_memory).hash(&mut h);
                h.finish()
            };
            let accessing = self.accessing.get();
            let access =
                matches!(op.kind, OpKind::CpuRead | OpKind::CpuWrite | OpKind::DeviceRead | OpKind::DeviceWrite);
            let mut pilot = pilot.borrow_mut();
            for r in &op.ranges {
                pilot.touch(line, r.start.raw()..r.end().raw(), self.steps.get(), what, accessing, access && accessing);
            }
            return;
        }
        // Only the explored lines the operation touched are choice points: ask for their
        // candidates alone, not for the whole (possibly megabytes long) operation.
        let lines = self.lines.borrow();
        let mut cands = Vec::new();
        for &l in lines.iter() {
            let touched = op.ranges.iter().any(|r| {
                let a = r.align_out(line);
                a.start.raw() <= l.raw() && l.raw() < a.end().raw()
            });
            if touched {
                hw.candidates(&dmabuf_sim::PhysRange { start: l, len: line }, &mut cands);
            }
        }
        cands.sort();
        cands.dedup();
        let mut trail = self.trail.borrow_mut();
        for f in cands {
            let at = match f {
                Freedom::WriteBack { line, .. } | Freedom::Drop { line, .. } | Freedom::Prefetch { line } => line,
            };
            if lines.binary_search(&at).is_err() {
                continue;
            }
            match f {
                Freedom::WriteBack { cache, line } => {
                    let c = trail.next(3, |c| {
                        let verb = if c == 1 { "writes back" } else { "writes back and drops" };
                        format!("{} {verb} dirty line {:#x}", cache_name(cache), line.raw())
                    });
                    if c >= 1 {
                        out.push(f);
                    }
                    if c == 2 {
                        out.push(Freedom::Drop { cache, line });
                    }
                }
                Freedom::Drop { cache, line } => {
                    if trail.next(2, |_| format!("{} drops clean line {:#x}", cache_name(cache), line.raw())) == 1 {
                        out.push(f);
                    }
                }
                Freedom::Prefetch { line } => {
                    if trail.next(2, |_| format!("the CPU prefetches line {:#x}", line.raw())) == 1 {
                        out.push(f);
                    }
                }
            }
        }
    }
}

/// What a search stopped by `--timeout` says.
fn timeout_bound(timeout: Option<Duration>) -> String {
    format!("--timeout {:.1}s reached", timeout.unwrap_or_default().as_secs_f64())
}

fn is_violation(f: &Finding) -> bool {
    matches!(f.kind, FindingKind::StaleRead | FindingKind::LostWrite | FindingKind::Race)
}

/// What the pilot run learnt: for each line the scenario's accesses touch, the
/// representative of its symmetry class (index into the lines).
type Classes = Vec<usize>;

/// The pilot's lines, their classes, the kinds of its findings a proof does not cover,
/// and the prepared scenario every later run starts from.
type Pilot = (LineRecord, Classes, Vec<&'static str>, Rc<Prepared>);

/// The pilot run: records the lines the scenario's accesses touch, and groups them into
/// classes of lines that every operation treats alike.
fn pilot(
    scenario: &Scenario,
    file: &Path,
    src: &str,
    cfg: &RunConfig,
    deadline: Option<Instant>,
) -> Result<Option<Pilot>, RunError> {
    let accessing = Rc::new(Cell::new(false));
    let record = Rc::new(RefCell::new(LineRecord::default()));
    let steps: Rc<Cell<u64>> = Rc::default();
    let chooser = ExploreChooser {
        trail: Rc::default(),
        lines: Rc::default(),
        pilot: Some(record.clone()),
        accessing: accessing.clone(),
        steps: steps.clone(),
    };
    let mut count = move |n: u64| steps.set(n);
    let prepared = Rc::new(prepare(scenario, file, src, cfg)?);
    let mut hooks = Hooks::new(Box::new(chooser));
    hooks.prepared = Some(prepared.clone());
    hooks.accessing = Some(accessing);
    hooks.progress = Some(&mut count);
    hooks.deadline = deadline;
    let result = run_hooked(scenario, file, src, cfg, hooks)?;
    if result.stopped {
        return Ok(None);
    }
    let mut others: Vec<&'static str> = Vec::new();
    for f in result.findings.iter().filter(|f| !is_violation(f)) {
        if !others.contains(&f.kind.name()) {
            others.push(f.kind.name());
        }
    }
    let record = Rc::try_unwrap(record).map_or_else(|_| unreachable!("the run is over"), RefCell::into_inner);
    let reps = record.classes();
    Ok(Some((record, reps, others, prepared)))
}

/// How a run along a path counts its states.
enum Visited<'v> {
    /// Not at all: a replay.
    No,
    /// In this set (re-execution).
    Local(&'v mut HashSet<u64>),
    /// In the snapshot search's shared table (the trail's).
    Shared,
}

/// One run along `trail` (its prefix, then first options), offering freedoms on `choice`
/// lines and hashing the state of those lines; returns the result and the trail with the
/// points passed. A run that counts states stops at `deadline`.
#[allow(clippy::too_many_arguments)]
fn run_trail(
    scenario: &Scenario,
    file: &Path,
    src: &str,
    cfg: &RunConfig,
    trail: Trail,
    choice: &Rc<RefCell<Vec<PhysAddr>>>,
    visited: Visited<'_>,
    deadline: Option<Instant>,
    watch: Option<Hooks<'_>>,
    prepared: &Rc<Prepared>,
) -> (Result<RunResult, RunError>, Trail) {
    let line = trail.line.clone();
    let trail = Rc::new(RefCell::new(trail));
    let chooser = ExploreChooser {
        trail: trail.clone(),
        lines: choice.clone(),
        pilot: None,
        accessing: Rc::default(),
        steps: Rc::default(),
    };
    let sched_trail = trail.clone();
    let mut schedule = move |devs: &[String]| -> usize {
        sched_trail.borrow_mut().next(devs.len() + 1, |c| format!("{}'s pending job runs", devs[c - 1]))
    };
    let visit_trail = trail.clone();
    let exit_trail = trail.clone();
    let mut visit_fn;
    let mut hooks = Hooks::new(Box::new(chooser));
    hooks.schedule = Some(&mut schedule);
    hooks.prepared = Some(prepared.clone());
    hooks.exits_after = Some(Box::new(move || exit_trail.borrow().snap.as_ref().is_some_and(|s| s.exits_after_run())));
    // The state hash covers the hardware state of the explored lines only: the other
    // lines take no choices, so their state follows from the program position and the
    // order in which jobs ran, which the runner's part of the hash holds.
    hooks.lines = Some(choice.clone());
    hooks.line = Some(line);
    if let Some(w) = watch {
        hooks.observer = w.observer;
        hooks.tracer = w.tracer;
    }
    if !matches!(visited, Visited::No) {
        let mut visited = visited;
        // A run that is still going at the deadline stops there: a bound is a bound
        // inside a run too (one run of a long scenario can take seconds).
        hooks.deadline = deadline;
        visit_fn = move |key: u64| -> bool {
            let t = visit_trail.borrow();
            match &mut visited {
                _ if t.replaying() => true,
                Visited::Local(set) => set.insert(key),
                _ => t.snap.as_ref().is_none_or(|snap| snap.visit(key)),
            }
        };
        hooks.visit = Some(&mut visit_fn);
    }
    let result = run_hooked(scenario, file, src, cfg, hooks);
    let trail = std::mem::take(&mut *trail.borrow_mut());
    (result, trail)
}

/// Explores every path of `scenario`. `progress` is called now and then with
/// (states, depth, paths).
pub fn explore(
    scenario: &Scenario,
    file: &Path,
    src: &str,
    cfg: &ExploreConfig,
    progress: &mut dyn FnMut(u64, usize, u64),
) -> Result<Exploration, RunError> {
    let start = Instant::now();
    // The pilot: which lines the accesses touch, in classes of symmetric lines.
    let inconclusive = |bound: String| Exploration {
        verdict: Verdict::Inconclusive,
        states: 0,
        paths: 0,
        max_depth: 0,
        elapsed: start.elapsed(),
        counterexample: None,
        bound: Some(bound),
        not_covered: Vec::new(),
        checkpoints: 0,
        points: 0,
    };
    let deadline = cfg.timeout.and_then(|t| start.checked_add(t));
    let timed_out = || timeout_bound(cfg.timeout);
    let (lines, reps, not_covered, prepared) = match pilot(scenario, file, src, &cfg.run, deadline) {
        Ok(Some(x)) => x,
        Ok(None) => return Ok(inconclusive(timed_out())),
        Err(e) if e.over_memory() => return Ok(inconclusive(e.message().to_string())),
        Err(e) => return Err(e),
    };

    // Lines are independent: the hardware's freedoms on one line change no byte of
    // another, and the verdicts are about bytes. So each line's freedoms are explored
    // on their own (with every job order), instead of the product of all lines', and of
    // lines that every operation treats alike, one stands for all.
    let groups: Vec<(Option<usize>, Vec<PhysAddr>)> = if lines.len() == 0 {
        vec![(None, Vec::new())]
    } else {
        reps.iter().filter_map(|&i| Some((Some(i), vec![lines.nth(i)?]))).collect()
    };
    if cfg.snapshots {
        return explore_snapshots(scenario, file, src, cfg, &groups, deadline, &prepared, progress).map(|mut e| {
            e.elapsed = start.elapsed();
            e.not_covered = not_covered;
            e
        });
    }
    let (mut paths, mut max_depth, mut states, mut points) = (0u64, 0usize, 0u64, 0u64);
    let mut best: Option<Counterexample> = None;
    let mut bound = None;
    'lines: for (index, group) in groups {
        let choice = Rc::new(RefCell::new(group));
        let mut visited = HashSet::new();
        let mut prefix = Vec::new();
        loop {
            let trail = Trail { prefix, ..Trail::default() };
            let visit = Visited::Local(&mut visited);
            let (run, trail) =
                run_trail(scenario, file, src, &cfg.run, trail, &choice, visit, deadline, None, &prepared);
            let result = match run {
                Err(e) if e.over_memory() => {
                    bound = Some(e.message().to_string());
                    states += visited.len() as u64;
                    break 'lines;
                }
                r => r?,
            };
            max_depth = max_depth.max(trail.taken.len());
            points += trail.taken.len() as u64;
            if !result.stopped {
                paths += 1;
            }
            // The next path: change the last choice that has an option left.
            let next = trail.next_prefix(0);
            if result.findings.iter().any(is_violation) {
                if best.as_ref().is_none_or(|b| trail.moves() < b.moves.len()) {
                    let choices = trail.choices();
                    let moves = trail.taken.into_iter().filter_map(|p| p.mv).collect();
                    best = Some(Counterexample { line: index, choices, moves, result });
                }
                if best.as_ref().is_some_and(|b| b.moves.is_empty()) {
                    states += visited.len() as u64;
                    break 'lines;
                }
            }
            if paths.is_multiple_of(64) {
                progress(states + visited.len() as u64, max_depth, paths);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                // The run was cut at the deadline: what lies below it is unexplored.
                bound = Some(timed_out());
                states += visited.len() as u64;
                break 'lines;
            }
            let Some(next) = next else { break };
            prefix = next;
            if states + visited.len() as u64 >= cfg.max_states {
                bound = Some(format!("--max-states {} reached", cfg.max_states));
            } else if cfg.timeout.is_some_and(|t| start.elapsed() >= t) {
                bound = Some(timed_out());
            }
            if bound.is_some() {
                states += visited.len() as u64;
                break 'lines;
            }
        }
        states += visited.len() as u64;
    }
    progress(states, max_depth, paths);
    Ok(Exploration {
        verdict: Verdict::of(best.is_some(), bound.is_some()),
        states,
        paths,
        max_depth,
        elapsed: start.elapsed(),
        counterexample: best,
        bound,
        not_covered,
        checkpoints: 0,
        points,
    })
}

/// [`explore`] by snapshots: the same search, in the same order, with forked processes
/// as checkpoints (see [`snapshot`]); line classes in parallel.
#[allow(clippy::too_many_arguments)]
fn explore_snapshots(
    scenario: &Scenario,
    file: &Path,
    src: &str,
    cfg: &ExploreConfig,
    groups: &[(Option<usize>, Vec<PhysAddr>)],
    deadline: Option<Instant>,
    prepared: &Rc<Prepared>,
    progress: &mut dyn FnMut(u64, usize, u64),
) -> Result<Exploration, RunError> {
    let bounds = Bounds { deadline, max_states: cfg.max_states, checkpoint_after: cfg.checkpoint_after };
    let choice_of = |class: usize| Rc::new(RefCell::new(groups[class].1.clone()));
    let start = |class: usize, trail: Trail| {
        snapshot::follow(trail, bounds, |trail| {
            let choice = choice_of(class);
            let (r, trail) =
                run_trail(scenario, file, src, &cfg.run, trail, &choice, Visited::Shared, deadline, None, prepared);
            let end = match r {
                Ok(result) => RunEnd::Path(PathEnd {
                    complete: !result.stopped,
                    violation: result.findings.iter().any(is_violation).then(|| trail.moves()),
                }),
                Err(e) if e.over_memory() => RunEnd::OverMemory(e.message().to_string()),
                Err(_) => RunEnd::Failed,
            };
            (end, trail)
        })
    };
    let internal = |msg: String| {
        let fname = file.display().to_string();
        crate::runner::internal_error(
            &fname,
            src,
            format!("{msg} (a bug in the explorer: `--no-snapshots` searches without forking)"),
        )
    };
    let out =
        snapshot::search(groups.len(), cfg.jobs, bounds, progress, &start).map_err(|m| internal(m.to_string()))?;
    // A path that failed fails again here, in this process, with its error.
    if let Some((class, choices)) = out.failed {
        let (r, _) = run_trail(
            scenario,
            file,
            src,
            &cfg.run,
            Trail { prefix: choices, ..Trail::default() },
            &choice_of(class),
            Visited::No,
            None,
            None,
            prepared,
        );
        r?;
        return Err(internal("a path failed in an explorer process but not when run again".into()));
    }
    let bound = match out.stop {
        None | Some((Stop::Failed, _)) => None,
        Some((Stop::Died, msg)) => return Err(internal(msg)),
        Some((Stop::Timeout, _)) => Some(timeout_bound(cfg.timeout)),
        Some((Stop::MaxStates, _)) => Some(format!("--max-states {} reached", cfg.max_states)),
        Some((Stop::OverMemory | Stop::TooBig, msg)) => Some(msg),
    };
    // The counterexample's run, again in this process: its findings and moves.
    let counterexample = match out.best {
        Some((class, choices)) => {
            let trail = Trail { prefix: choices.clone(), ..Trail::default() };
            let (r, trail) =
                run_trail(scenario, file, src, &cfg.run, trail, &choice_of(class), Visited::No, None, None, prepared);
            let result = r?;
            let moves = trail.taken.into_iter().filter_map(|p| p.mv).collect();
            Some(Counterexample { line: groups[class].0, choices, moves, result })
        }
        None => None,
    };
    progress(out.states, out.max_depth, out.paths);
    Ok(Exploration {
        verdict: Verdict::of(counterexample.is_some(), bound.is_some()),
        states: out.states,
        paths: out.paths,
        max_depth: out.max_depth,
        elapsed: Duration::ZERO,
        counterexample,
        bound,
        not_covered: Vec::new(),
        checkpoints: out.checkpoints,
        points: out.points,
    })
}

/// Why a path cannot be replayed on its scenario.
#[derive(Debug, thiserror::Error)]
pub enum ReplayMismatch {
    /// The scenario does not run.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The explored line is past the lines the scenario's accesses touch.
    #[error("`line = {line}`: the scenario's accesses touch {lines} lines (0 to {last})", last = lines.saturating_sub(1))]
    Line {
        /// The line index asked for.
        line: usize,
        /// How many lines there are.
        lines: usize,
    },
    /// A choice the path has no such option for.
    #[error("choice {index} is {choice}, but the path has {options} options there (0 to {last})", last = options - 1)]
    Choice {
        /// Its position in the list.
        index: usize,
        /// The choice.
        choice: u8,
        /// How many options the point had.
        options: usize,
    },
    /// More choices than the path has points.
    #[error("{given} choices, but the path has {points} choice points")]
    TooMany {
        /// How many the file gives.
        given: usize,
        /// How many the path has.
        points: usize,
    },
}

/// Runs one path again, deterministically, with the full sanitizer: what
/// `dmabuf check --replay` does with a replay file's line and choices, after checking
/// them against the scenario.
pub fn replay(
    scenario: &Scenario,
    file: &Path,
    src: &str,
    cfg: &RunConfig,
    line: Option<usize>,
    choices: &[u8],
) -> Result<(RunResult, Vec<Move>), ReplayMismatch> {
    replay_watched(scenario, file, src, cfg, line, choices, None)
}

/// [`replay`] with an observer and a tracer from `hooks` watching the path (the HTML
/// report's recorder); the rest of `hooks` is the explorer's own.
pub fn replay_hooked(
    scenario: &Scenario,
    file: &Path,
    src: &str,
    cfg: &RunConfig,
    line: Option<usize>,
    choices: &[u8],
    hooks: Hooks<'_>,
) -> Result<RunResult, ReplayMismatch> {
    replay_watched(scenario, file, src, cfg, line, choices, Some(hooks)).map(|(r, _)| r)
}

fn replay_watched(
    scenario: &Scenario,
    file: &Path,
    src: &str,
    cfg: &RunConfig,
    line: Option<usize>,
    choices: &[u8],
    watch: Option<Hooks<'_>>,
) -> Result<(RunResult, Vec<Move>), ReplayMismatch> {
    let (lines, _, _, prepared) = pilot(scenario, file, src, cfg, None)?.expect("a pilot without a deadline finishes");
    let n = lines.len();
    if let Some(i) = line
        && i >= n
    {
        return Err(ReplayMismatch::Line { line: i, lines: n });
    }
    let group: Vec<PhysAddr> = line.and_then(|i| lines.nth(i)).into_iter().collect();
    let choice = Rc::new(RefCell::new(group));
    let trail = Trail { prefix: choices.to_vec(), ..Trail::default() };
    let (result, trail) = run_trail(scenario, file, src, cfg, trail, &choice, Visited::No, None, watch, &prepared);
    let (result, taken) = (result?, trail.taken);
    if let Some((index, choice, options)) = trail.bad {
        return Err(ReplayMismatch::Choice { index, choice, options });
    }
    if taken.len() < choices.len() {
        return Err(ReplayMismatch::TooMany { given: choices.len(), points: taken.len() });
    }
    Ok((result, taken.into_iter().filter_map(|p| p.mv).collect()))
}
