//! The command as its users expect it: `-` for standard input, `--color`, completions and
//! the man page, `--format sarif`, `--html`, errors that say things once.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn dmabuf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dmabuf")).args(args).env_remove("NO_COLOR").output().expect("run dmabuf")
}

fn with_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dmabuf"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dmabuf");
    // A closed pipe is fine: the command may refuse before it reads.
    let _ = c.stdin.take().unwrap().write_all(input);
    c.wait_with_output().unwrap()
}

fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios").join(name).display().to_string()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn a_dash_reads_the_scenario_from_stdin() {
    let src = std::fs::read(scenario("keeps-mapping-broken.dmabuf")).unwrap();
    let o = with_stdin(&["check", "--format", "json", "-"], &src);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["files"][0]["file"], "<stdin>");
    assert_eq!(v["findings"][0]["kind"], "misuse");
    // The same findings as from the file.
    let f = dmabuf(&["check", "--format", "json", &scenario("keeps-mapping-broken.dmabuf")]);
    let w: Value = serde_json::from_slice(&f.stdout).unwrap();
    assert_eq!(v["findings"].as_array().unwrap().len(), w["findings"].as_array().unwrap().len());
    // A parse error names <stdin> and the line.
    let o = with_stdin(&["check", "-"], b"platform arm64-noncoherent\nbuffer b size=4KiB heap=system\nfrobnicate b\n");
    assert_eq!(o.status.code(), Some(2));
    let e = text(&o.stderr);
    assert!(e.contains("<stdin>:3"), "{e}");
    // Explore reads it too, and writes no replay file (it would name no scenario file).
    let o = with_stdin(&["explore", "--format", "json", "-"], &src);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["counterexample"]["replay"], Value::Null);
    let o = with_stdin(&["explore", "--replay-out", "x.replay", "-"], &src);
    assert_eq!(o.status.code(), Some(2));
    // Standard input once.
    let o = with_stdin(&["check", "-", "-"], &src);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("once"), "{}", text(&o.stderr));
}

#[test]
fn stdin_over_the_size_limit_is_refused() {
    let big = vec![b'#'; 16 * 1024 * 1024 + 10];
    let o = with_stdin(&["check", "-"], &big);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("<stdin>"), "{}", text(&o.stderr));
}

#[test]
fn color_always_colours_a_pipe_and_never_does_not() {
    let f = scenario("keeps-mapping-broken.dmabuf");
    let always = dmabuf(&["--color", "always", "check", &f]);
    assert!(text(&always.stdout).contains("\x1b["), "no escape with --color always");
    let never = dmabuf(&["check", "--color", "never", &f]);
    assert!(!text(&never.stdout).contains('\x1b'));
    // Auto into a pipe: plain.
    let auto = dmabuf(&["check", &f]);
    assert!(!text(&auto.stdout).contains('\x1b'));
    // Errors too.
    let bad = dmabuf(&["--color", "always", "check", "/nonexistent/x.dmabuf"]);
    assert!(text(&bad.stderr).contains("\x1b["), "{}", text(&bad.stderr));
    let bad = dmabuf(&["--color", "never", "check", "/nonexistent/x.dmabuf"]);
    assert!(!text(&bad.stderr).contains('\x1b'), "{}", text(&bad.stderr));
    assert_eq!(dmabuf(&["--color", "sometimes", "check", &f]).status.code(), Some(2));
}

#[test]
fn completions_and_the_man_page_come_from_the_definitions() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = dmabuf(&["completions", shell]);
        assert_eq!(o.status.code(), Some(0), "{shell}");
        let s = text(&o.stdout);
        // fish spells a long flag `-l html`.
        for word in ["check", "explore", "html", "chooser"] {
            assert!(s.contains(word), "{shell}: no `{word}`");
        }
    }
    assert_eq!(dmabuf(&["completions", "tcsh"]).status.code(), Some(2));
    // A reader that stops early is no panic.
    let mut c = Command::new(env!("CARGO_BIN_EXE_dmabuf"))
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(c.stdout.take());
    let o = c.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let man = dmabuf(&["man"]);
    assert_eq!(man.status.code(), Some(0));
    let m = text(&man.stdout);
    assert!(m.starts_with(".ie") || m.contains(".TH dmabuf"), "{}", &m[..m.len().min(200)]);
    for word in ["check", "explore", "bench", "completions", "\\-\\-color"] {
        assert!(m.contains(word), "the man page has no `{word}`");
    }
}

#[test]
fn sarif_has_the_shape_code_scanning_reads() {
    let f = scenario("keeps-mapping-broken.dmabuf");
    let o = dmabuf(&["check", "--format", "sarif", &f]);
    assert_eq!(o.status.code(), Some(1), "the exit status is the check's");
    let v: Value = serde_json::from_slice(&o.stdout).expect("SARIF is JSON");
    assert_eq!(v["version"], "2.1.0");
    let run = &v["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "dmabuf");
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    for k in
        ["stale_read", "lost_write", "race", "misuse", "attach_refused", "attach_unsafe", "migrated", "expect_failed"]
    {
        assert!(ids.contains(&k), "no rule {k}");
    }
    let results = run["results"].as_array().unwrap();
    assert!(results.len() >= 2, "the misuse and the stale read it leads to");
    for r in results {
        let id = r["ruleId"].as_str().unwrap();
        let idx = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(ids[idx], id, "ruleIndex points at the rule");
        assert!(["error", "warning", "note"].contains(&r["level"].as_str().unwrap()));
        assert!(!r["message"]["text"].as_str().unwrap().is_empty());
        let loc = &r["locations"][0]["physicalLocation"];
        assert!(loc["artifactLocation"]["uri"].as_str().unwrap().ends_with("keeps-mapping-broken.dmabuf"));
        let line = loc["region"]["startLine"].as_u64().unwrap();
        assert!(line >= 1);
        for rel in r["relatedLocations"].as_array().unwrap() {
            assert!(rel["id"].is_u64() && rel["message"]["text"].is_string());
            assert!(rel["physicalLocation"]["region"]["startLine"].as_u64().unwrap() >= 1);
        }
    }
    let misuse = results.iter().find(|r| r["ruleId"] == "misuse").expect("the misuse");
    assert_eq!(misuse["locations"][0]["physicalLocation"]["region"]["startLine"], 15);
    assert_eq!(misuse["locations"][0]["physicalLocation"]["region"]["snippet"]["text"], "  cpu write fb = frame");
    // A clean file: no results, exit 0.
    let o = dmabuf(&["check", "--format", "sarif", &scenario("keeps-mapping-fixed.dmabuf")]);
    assert_eq!(o.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["runs"][0]["results"].as_array().unwrap().len(), 0);
}

#[test]
fn html_is_written_for_check_explore_and_bench() {
    let d = tmpdir();
    let page = |n: &str| -> PathBuf { d.path().join(n) };
    let f = scenario("keeps-mapping-broken.dmabuf");
    let o = dmabuf(&["check", "--html", page("c.html").to_str().unwrap(), &f]);
    assert_eq!(o.status.code(), Some(1));
    let c = std::fs::read_to_string(page("c.html")).unwrap();
    assert!(c.starts_with("<!DOCTYPE html>") && c.contains("keeps-mapping-broken.dmabuf"));
    assert!(c.contains("\"kind\":\"misuse\""));
    // The report on stdout is the same as without --html.
    assert_eq!(o.stdout, dmabuf(&["check", &f]).stdout);
    let o = dmabuf(&[
        "explore",
        "--html",
        page("e.html").to_str().unwrap(),
        "--replay-out",
        page("e.replay").to_str().unwrap(),
        &f,
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = std::fs::read_to_string(page("e.html")).unwrap();
    assert!(e.contains("\"verdict\":\"counterexample\""));
    let o = dmabuf(&["bench", "--frames", "1", "--html", page("b.html").to_str().unwrap()]);
    assert!(o.status.code().unwrap() < 2, "{}", text(&o.stderr));
    let b = std::fs::read_to_string(page("b.html")).unwrap();
    assert!(b.contains("bytes-chart") && b.contains("ratio-chart"));
}

#[test]
fn a_page_that_cannot_be_written_is_exit_2_with_no_report() {
    let f = scenario("keeps-mapping-broken.dmabuf");
    let o = dmabuf(&["check", "--html", "/nonexistent/dir/r.html", &f]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty(), "no partial report");
    let e = text(&o.stderr);
    assert!(e.contains("/nonexistent/dir/r.html"), "{e}");
    assert_eq!(e.matches("No such file or directory").count(), 1, "the OS error once: {e}");
}

#[test]
fn errors_say_the_os_error_and_the_choosers_once() {
    let o = dmabuf(&["check", "/nonexistent/x.dmabuf"]);
    assert_eq!(o.status.code(), Some(2));
    let e = text(&o.stderr);
    assert_eq!(e.matches("No such file or directory").count(), 1, "{e}");
    let o = dmabuf(&["check", "--chooser", "sometimes", &scenario("keeps-mapping-fixed.dmabuf")]);
    assert_eq!(o.status.code(), Some(2));
    let e = text(&o.stderr);
    assert_eq!(e.matches("adversarial").count(), 1, "{e}");
    assert_eq!(e.matches("lru").count(), 1, "{e}");
}
