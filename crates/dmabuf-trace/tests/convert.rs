//! Logs the interposer wrote in the guest for the C programs of
//! `crates/dmabuf-record/programs`, converted to scenarios and run by the checker: what
//! the recorded program did must come out as the findings its header names.

use std::collections::BTreeSet;
use std::path::Path;

use dmabuf_check::runner::{RunConfig, run};
use dmabuf_check::scenario::parse;
use dmabuf_trace::{Options, Symbolizer, read, to_scenario};

fn convert(name: &str) -> (String, dmabuf_trace::Summary) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(format!("{name}.log"));
    let records = read(&std::fs::read_to_string(path).unwrap()).unwrap();
    let opts = Options { platform: "arm64-noncoherent".into(), agents: Default::default(), command: name.into() };
    to_scenario(&records, &opts, &mut Symbolizer::new()).unwrap()
}

fn findings(text: &str) -> BTreeSet<&'static str> {
    let scenario = parse(text, "trace.dmabuf").unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    let r = run(&scenario, Path::new("trace.dmabuf"), text, &RunConfig::default())
        .unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    r.findings.iter().map(|f| f.kind.name()).collect()
}

#[test]
fn an_unbracketed_read_is_a_misuse_and_a_stale_read() {
    let (text, summary) = convert("unbracketed-read-broken");
    assert_eq!(summary.misuse, 1);
    assert!(text.contains("# MISUSE: thread"), "{text}");
    assert!(text.contains("cpu read buf1[0x0..0x1000]"), "{text}");
    assert_eq!(findings(&text), BTreeSet::from(["misuse", "stale_read"]));
}

#[test]
fn the_fixed_read_has_no_finding() {
    let (text, summary) = convert("unbracketed-read-fixed");
    assert_eq!(summary.misuse, 0);
    assert!(text.contains("sync buf1 start read"), "{text}");
    assert_eq!(findings(&text), BTreeSet::new());
}

#[test]
fn a_forked_child_is_recorded_as_its_own_process() {
    let (text, summary) = convert("forked-child-broken");
    assert_eq!(summary.processes, 2);
    assert!(text.contains("started by process"), "{text}");
    // Sixteen pages written by one memset: one misuse, one access over the whole buffer.
    assert_eq!(summary.misuse, 1);
    assert!(text.contains("cpu write buf1[0x0..0x10000] = 0x5a"), "{text}");
    assert_eq!(findings(&text), BTreeSet::from(["misuse", "stale_read"]));
}

#[test]
fn a_write_in_a_read_bracket_is_seen_by_the_interposer() {
    let (text, summary) = convert("write-in-read-broken");
    assert_eq!(summary.misuse, 1);
    assert!(text.contains("inside a READ bracket"), "{text}");
    assert!(text.contains("sync buf1 start read"), "{text}");
}

#[test]
fn a_log_that_is_not_the_interposers_is_refused_with_its_line() {
    let e = read("1 2 3 sync\n4 5 x mmap\n").unwrap_err();
    assert_eq!(e.to_string(), "line 2: `x` is not a number");
}
