//! The litmus suite: every scenario under `scenarios/litmus/` states its verdict in a
//! `# verdict: proved|counterexample` header, and the explorer must reach it. A
//! counterexample must replay to the same findings.

mod common;

use std::path::Path;
use std::time::Duration;

use dmabuf_check::explore::{ExploreConfig, Verdict, explore, replay};
use dmabuf_check::runner::RunConfig;
use dmabuf_check::scenario::parse;

fn verdict(src: &str) -> Option<Verdict> {
    let line = src.lines().find_map(|l| l.trim().strip_prefix("# verdict:"))?;
    match line.trim() {
        "proved" => Some(Verdict::Proved),
        "counterexample" => Some(Verdict::Counterexample),
        _ => None,
    }
}

#[test]
fn every_litmus_test_reaches_its_verdict() {
    let files = common::litmus();
    assert!(files.len() >= 20, "only {} litmus tests", files.len());
    let (mut proved, mut broken) = (0, 0);
    let mut wrong = Vec::new();
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap();
        let want = verdict(&src).unwrap_or_else(|| panic!("{}: no `# verdict:` header", f.display()));
        let s = parse(&src, &f.display().to_string()).unwrap();
        let cfg = ExploreConfig { timeout: Some(Duration::from_secs(60)), ..ExploreConfig::default() };
        let e = explore(&s, f, &src, &cfg, &mut |_, _, _| {}).unwrap();
        if e.verdict != want {
            wrong.push(format!("{}: expected {want:?}, got {:?} ({} states)", f.display(), e.verdict, e.states));
            continue;
        }
        match want {
            Verdict::Proved => {
                proved += 1;
                assert!(e.paths >= 1 && e.states >= 1, "{}", f.display());
            }
            _ => {
                broken += 1;
                let c = e.counterexample.as_ref().unwrap();
                // The replay reproduces the violation, deterministically.
                let (again, moves) = replay(&s, f, &src, &RunConfig::default(), c.line, &c.choices).unwrap();
                assert_eq!(moves, c.moves, "{}", f.display());
                let kinds = |fs: &[dmabuf_check::sanitizer::Finding]| {
                    fs.iter().map(|x| (x.kind, x.line, x.range)).collect::<Vec<_>>()
                };
                assert_eq!(kinds(&again.findings), kinds(&c.result.findings), "{}", f.display());
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(proved >= 8 && broken >= 8, "{proved} proved, {broken} counterexamples");
}

/// A write-back the hardware may make only on some paths: on the first path (no freedom
/// taken) the invalidate discards the CPU's stray dirty line and the read is right; only
/// exploring finds the path where the line is written back over the decoder's data.
#[test]
fn a_hazard_that_needs_a_choice_is_found_by_exploring() {
    let src = "platform arm64-noncoherent
buffer b size=4KiB heap=system
attach vdec b
vmap b
map vdec b from_device
cpu write b[0..64] = 0x11
vdec write b[0..64] = 0x22
unmap vdec b
cpu begin b read
cpu read b[0..64] expect 0x22
cpu end b read
";
    let s = parse(src, "writeback.dmabuf").unwrap();
    let file = Path::new("writeback.dmabuf");
    let never =
        dmabuf_check::runner::run(&s, file, src, &RunConfig { chooser: "never".into(), ..RunConfig::default() })
            .unwrap();
    let violation = |fs: &[dmabuf_check::sanitizer::Finding]| {
        fs.iter().any(|f| {
            use dmabuf_check::sanitizer::FindingKind::*;
            matches!(f.kind, StaleRead | LostWrite | Race)
        })
    };
    assert!(!violation(&never.findings), "{:#?}", never.findings);
    let e = explore(&s, file, src, &ExploreConfig::default(), &mut |_, _, _| {}).unwrap();
    assert_eq!(e.verdict, Verdict::Counterexample, "{e:?}");
    let c = e.counterexample.unwrap();
    assert!(c.moves.iter().any(|m| m.what.contains("writes back") && m.line == 7), "{:?}", c.moves);
    assert!(violation(&c.result.findings));
}

#[test]
fn a_bound_gives_inconclusive_never_proved() {
    let f = common::litmus().into_iter().find(|p| p.ends_with("riscv-bracketed.dmabuf")).unwrap();
    let src = std::fs::read_to_string(&f).unwrap();
    let s = parse(&src, "x").unwrap();
    let cfg = ExploreConfig { max_states: 3, ..ExploreConfig::default() };
    let e = explore(&s, &f, &src, &cfg, &mut |_, _, _| {}).unwrap();
    assert_eq!(e.verdict, Verdict::Inconclusive);
    assert!(e.bound.unwrap().contains("max-states"));
}
