//! Checks every example under `scenarios/` as `dmabuf check` does (both implementations,
//! each finding classified) and compares its findings with the `# expect:` lines in its
//! header, exactly: kind, buffer, byte range, line and severity, and nothing else.
//!
//! The header says what the example shows, so the files document themselves and this
//! test keeps them honest. A finding that holds only for the minimal implementation ends
//! with `latent`. `# expect[FLAGS]:` lines state the findings under other `dmabuf check`
//! flags (`--attach-policy`, `--maintenance`, `--platform`, `--chooser`):
//!
//! ```text
//! # expect: stale_read frame 0x0..0x10000 line 13
//! # expect: stale_read frame 0x0..0x10000 line 13 latent
//! # expect: none
//! # expect[--maintenance minimal]: stale_read raw 0x80000..0x100000 line 16
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use dmabuf::AttachPolicy;
use dmabuf::MaintenancePolicy;
use dmabuf_check::scenario::parse;
use dmabuf_check::verdict::{CheckConfig, check};

type Expected = BTreeSet<(String, String, u64, u64, u32, String)>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios")
}

fn num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The check configuration the flags of an `# expect[FLAGS]:` line select.
fn config(flags: &str, file: &Path) -> CheckConfig {
    let mut cfg = CheckConfig::default();
    let w: Vec<&str> = flags.split_whitespace().collect();
    for pair in w.chunks(2) {
        match pair {
            ["--attach-policy", "linux"] => cfg.attach = Some(AttachPolicy::Linux),
            ["--attach-policy", "strict"] => cfg.attach = Some(AttachPolicy::Strict),
            ["--maintenance", "linux"] => cfg.maintenance = Some(MaintenancePolicy::Linux),
            ["--maintenance", "minimal"] => cfg.maintenance = Some(MaintenancePolicy::Minimal),
            ["--platform", p] => cfg.platform = Some(p.to_string()),
            ["--chooser", c] => cfg.chooser = c.to_string(),
            _ => panic!("{}: bad flags {flags:?}", file.display()),
        }
    }
    cfg
}

/// The `# expect:` lines of a scenario, by the flags they are for (`""`: the defaults).
/// Every example must have a line for the defaults.
fn expected(src: &str, file: &Path) -> BTreeMap<String, Expected> {
    let mut out: BTreeMap<String, Expected> = BTreeMap::new();
    for l in src.lines() {
        let Some(rest) = l.trim().strip_prefix("# expect") else { continue };
        let (flags, rest) = match rest.strip_prefix('[') {
            Some(r) => r.split_once("]:").unwrap_or_else(|| panic!("{}: bad expect line {l:?}", file.display())),
            None => match rest.strip_prefix(':') {
                Some(r) => ("", r),
                None => continue,
            },
        };
        let set = out.entry(flags.trim().to_string()).or_default();
        let w: Vec<&str> = rest.split_whitespace().collect();
        if w == ["none"] {
            continue;
        }
        let bad = || -> ! { panic!("{}: bad expect line {l:?}", file.display()) };
        let (kind, buf, range, line, severity) = match w[..] {
            [kind, buf, range, "line", line] => (kind, buf, range, line, "definite"),
            [kind, buf, range, "line", line, s @ ("definite" | "latent")] => (kind, buf, range, line, s),
            _ => bad(),
        };
        let (a, b) = range.split_once("..").unwrap_or_else(|| bad());
        let (Some(a), Some(b), Ok(line)) = (num(a), num(b), line.parse()) else { bad() };
        set.insert((kind.to_string(), buf.to_string(), a, b, line, severity.to_string()));
    }
    assert!(out.contains_key(""), "{}: no `# expect:` line", file.display());
    out
}

fn bracket(flags: &str) -> String {
    if flags.is_empty() { String::new() } else { format!("[{flags}]") }
}

fn examples(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "dmabuf"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_example_reports_exactly_its_expected_findings() {
    let files = examples(&root());
    assert!(files.len() >= 20, "only {} examples", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let src = std::fs::read_to_string(file).unwrap();
        let scenario = parse(&src, &file.display().to_string()).unwrap_or_else(|e| panic!("{e:?}"));
        for (flags, want) in expected(&src, file) {
            let checked =
                check(&scenario, file, &src, &config(&flags, file), &mut |_| {}).unwrap_or_else(|e| panic!("{e:?}"));
            let got: Expected = checked
                .result
                .findings
                .iter()
                .map(|f| {
                    let s = f.severity.name().to_string();
                    (f.kind.name().to_string(), f.buffer.clone(), f.range[0], f.range[1], f.line, s)
                })
                .collect();
            if got != want {
                let show = |s: &Expected| {
                    s.iter()
                        .map(|(k, b, x, y, l, sev)| {
                            let sev = if sev == "latent" { " latent" } else { "" };
                            format!("# expect{}: {k} {b} {x:#x}..{y:#x} line {l}{sev}", bracket(&flags))
                        })
                        .collect::<Vec<_>>()
                };
                failures.push(format!(
                    "{} [{flags}]:\n  expected {:#?}\n  got {:#?}",
                    file.file_name().unwrap().to_string_lossy(),
                    show(&want),
                    show(&got)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A broken example and its fixed version differ in the findings: the broken one has at
/// least one, the fixed one none.
#[test]
fn broken_examples_have_a_fixed_twin_that_is_clean() {
    let mut pairs = 0;
    for file in examples(&root()) {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let Some(stem) = name.strip_suffix("-broken.dmabuf") else { continue };
        let fixed = file.with_file_name(format!("{stem}-fixed.dmabuf"));
        if !fixed.exists() {
            continue;
        }
        pairs += 1;
        for (f, want_clean) in [(&file, false), (&fixed, true)] {
            let src = std::fs::read_to_string(f).unwrap();
            let s = parse(&src, "x").unwrap();
            let r = check(&s, f, &src, &CheckConfig::default(), &mut |_| {}).unwrap().result;
            assert_eq!(r.findings.is_empty(), want_clean, "{}: {:#?}", f.display(), r.findings);
        }
    }
    assert!(pairs >= 8, "only {pairs} broken/fixed pairs");
}
