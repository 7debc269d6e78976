//! The snapshot search is the re-execution search with checkpoints: on every litmus test
//! and on a multi-frame pipeline, both give the same verdict, states, paths, depth and
//! counterexample, with snapshots forced at every point the placement allows; and line
//! classes in parallel give the same verdict and counterexample.

mod common;

use std::path::Path;
use std::time::Duration;

use dmabuf_check::explore::{Exploration, ExploreConfig, explore};
use dmabuf_check::scenario::parse;

fn run(path: &Path, src: &str, cfg: &ExploreConfig) -> Exploration {
    let s = parse(src, &path.display().to_string()).unwrap();
    explore(&s, path, src, cfg, &mut |_, _, _| {}).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What must not change with the way the search branches: verdict, states, paths,
/// depth, and the counterexample's line, choices and number of findings.
fn summary(e: &Exploration) -> String {
    let c = e.counterexample.as_ref().map(|c| (c.line, c.choices.clone(), c.result.findings.len()));
    format!("{} {} states {} paths depth {} {c:?}", e.verdict.name(), e.states, e.paths, e.max_depth)
}

fn config(snapshots: bool, jobs: usize) -> ExploreConfig {
    ExploreConfig {
        snapshots,
        jobs,
        // Fork wherever the placement allows, so that short runs branch from snapshots too.
        checkpoint_after: Duration::ZERO,
        timeout: Some(Duration::from_secs(120)),
        ..ExploreConfig::default()
    }
}

/// A capture pipeline of `frames` frames: a decoder writes, the CPU reads in a bracket.
fn frames(frames: u32) -> String {
    format!(
        "platform arm64-noncoherent\nbuffer cap size=8KiB heap=system\nattach vdec cap\nmmap cap\n\
         repeat {frames} {{\n  map vdec cap from_device\n  vdec write cap = frame\n  unmap vdec cap\n  \
         sync cap start read\n  cpu read cap expect frame\n  sync cap end read\n}}\nmunmap cap\ndetach vdec cap\nrelease cap\n"
    )
}

#[test]
fn snapshots_search_the_same_states_as_reexecution_on_every_litmus_test() {
    let mut checkpoints = 0;
    for f in common::litmus() {
        let src = std::fs::read_to_string(&f).unwrap();
        let again = run(&f, &src, &config(false, 1));
        let snap = run(&f, &src, &config(true, 1));
        assert_eq!(summary(&snap), summary(&again), "{}", f.display());
        assert_eq!(again.checkpoints, 0);
        checkpoints += snap.checkpoints;
    }
    assert!(checkpoints > 10, "the suite branched from only {checkpoints} snapshots");
}

#[test]
fn a_long_pipeline_branches_from_snapshots_to_the_same_proof() {
    let src = frames(12);
    let path = Path::new("frames.dmabuf");
    let again = run(path, &src, &config(false, 1));
    let snap = run(path, &src, &config(true, 1));
    assert_eq!(again.verdict.name(), "proved");
    assert_eq!(summary(&snap), summary(&again));
    assert!(snap.checkpoints >= 8, "{} checkpoints", snap.checkpoints);
    // Re-execution runs every path from the start; snapshots replay from a checkpoint.
    assert!(snap.points > 0 && snap.points * 2 < again.points, "{} against {} points", snap.points, again.points);
}

#[test]
fn a_broken_pipeline_gives_the_same_counterexample_from_snapshots() {
    // The CPU reads without the bracket's start: a stale read the hardware can cause.
    let src = frames(6).replace("  sync cap start read\n", "");
    let path = Path::new("frames-broken.dmabuf");
    let again = run(path, &src, &config(false, 1));
    let snap = run(path, &src, &config(true, 1));
    assert_eq!(again.verdict.name(), "counterexample");
    assert_eq!(summary(&snap), summary(&again));
}

#[test]
fn line_classes_in_parallel_reach_the_same_verdict_and_counterexample() {
    for f in common::litmus() {
        let src = std::fs::read_to_string(&f).unwrap();
        let one = run(&f, &src, &config(true, 1));
        let two = run(&f, &src, &config(true, 2));
        assert_eq!(two.verdict, one.verdict, "{}", f.display());
        let cex = |e: &Exploration| e.counterexample.as_ref().map(|c| (c.line, c.choices.clone()));
        assert_eq!(cex(&two), cex(&one), "{}", f.display());
        if one.verdict.name() == "proved" {
            // Every class is searched to its end either way.
            assert_eq!((two.states, two.paths), (one.states, one.paths), "{}", f.display());
        }
    }
}

/// A forked run leaves its objects for the exit to free (`Hooks::exits_after`); it must
/// still report what a run that frees them does, the lost writes found only at its end
/// included.
#[test]
fn a_run_that_exits_after_reports_what_a_run_that_frees_its_objects_does() {
    use dmabuf_check::runner::{Hooks, RunConfig, run_hooked};
    // The CPU's dirty line is written back over the decoder's bytes, and nobody reads them
    // again: the write is lost at the end of the run.
    let src = "platform arm64-noncoherent\nbuffer b size=4KiB heap=system\nattach vdec b\nvmap b\n\
               map vdec b from_device\ncpu begin b write\ncpu write b[0..64] = 0x11\n\
               vdec write b[0..64] = 0x22\ncpu end b write\nunmap vdec b\n";
    let path = Path::new("lost-at-end.dmabuf");
    let s = parse(src, "lost-at-end.dmabuf").unwrap();
    let cfg = RunConfig::default();
    let findings = |exits: bool| {
        let chooser = dmabuf_sim::chooser_from_name(&cfg.chooser).unwrap();
        let hooks = Hooks { exits_after: Some(Box::new(move || exits)), ..Hooks::new(chooser) };
        let r = run_hooked(&s, path, src, &cfg, hooks).unwrap();
        r.findings.iter().map(|f| format!("{:?} {} {}", f.kind, f.line, f.message)).collect::<Vec<_>>()
    };
    let freed = findings(false);
    assert!(freed.iter().any(|f| f.starts_with("LostWrite")), "{freed:?}");
    assert_eq!(findings(true), freed);
}
