//! The `dmabuf` command as scripts use it: exit statuses, the JSON contract, and bad input
//! (exit 2 with an error naming the file, line and rule, never a panic).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn dmabuf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dmabuf")).args(args).env("NO_COLOR", "1").output().expect("run dmabuf")
}

fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios").join(name).display().to_string()
}

fn tmp(name: &str, contents: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dmabuf-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_broken_example_exits_1_and_names_the_stale_read_and_the_fix() {
    let o = dmabuf(&["check", &scenario("keeps-mapping-broken.dmabuf")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("stale_read"), "{out}");
    assert!(out.contains("sync fb start write"), "{out}");
}

/// A finding that holds only for the minimal implementation is printed as latent and
/// fails the run only when asked to.
#[test]
fn a_latent_finding_exits_0_unless_denied() {
    let o = dmabuf(&["check", &scenario("uvc-gpu-broken.dmabuf")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
    let out = text(&o.stdout);
    assert!(out.contains("stale_read (latent)"), "{out}");
    assert!(out.contains("cpu end frame write"), "{out}");
    let o = dmabuf(&["check", "--deny", "latent", &scenario("uvc-gpu-broken.dmabuf")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    let o = dmabuf(&["check", "--maintenance", "minimal", &scenario("uvc-gpu-broken.dmabuf")]);
    assert_eq!(o.status.code(), Some(1), "forced, the minimal implementation's findings are its own");
    let o = dmabuf(&["check", "--maintenance", "linux", &scenario("uvc-gpu-broken.dmabuf")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
}

#[test]
fn a_fixed_example_exits_0() {
    let o = dmabuf(&["check", &scenario("uvc-gpu-fixed.dmabuf")]);
    assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
}

#[test]
fn json_has_the_documented_fields() {
    let o = dmabuf(&["check", "--format", "json", &scenario("uvc-gpu-broken.dmabuf")]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    assert_eq!(v["implementation"], "both");
    let f = &v["findings"][0];
    assert_eq!(f["kind"], "stale_read");
    assert_eq!(f["severity"], "latent");
    assert_eq!(f["buffer"], "frame");
    assert_eq!(f["range"], serde_json::json!([0, 65536]));
    for k in ["agents", "line", "message", "hint", "count"] {
        assert!(!f[k].is_null(), "finding lacks {k}: {f}");
    }
    let st = &v["stats"];
    for k in ["clean", "invalidate", "bounce", "device_flush", "cycles"] {
        assert!(!st[k].is_null(), "stats lack {k}: {st}");
    }
}

#[test]
fn the_linux_policies_are_selectable_and_a_bad_chooser_is_exit_2() {
    let o = dmabuf(&[
        "check",
        "--attach-policy",
        "linux",
        "--maintenance",
        "linux",
        "--chooser",
        "seeded:7",
        &scenario("uvc-gpu-fixed.dmabuf"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
    let o = dmabuf(&["check", "--chooser", "sometimes", &scenario("uvc-gpu-fixed.dmabuf")]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn the_platform_flag_overrides_the_file() {
    // The program that forgets the sync ioctl: stale on Arm, only a misuse on x86.
    let broken = scenario("mmap-no-sync-broken.dmabuf");
    let arm = dmabuf(&["check", "--format", "json", &broken]);
    let x86 = dmabuf(&["check", "--format", "json", "--platform", "x86-pcie", &broken]);
    // Findings and what they lead to.
    let kinds = |o: &Output| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let mut out = Vec::new();
        for f in v["findings"].as_array().unwrap() {
            out.push(f["kind"].as_str().unwrap().to_string());
            for c in f["consequences"].as_array().into_iter().flatten() {
                out.push(c["kind"].as_str().unwrap().to_string());
            }
        }
        out
    };
    assert!(kinds(&arm).contains(&"stale_read".to_string()), "{:?}", kinds(&arm));
    assert!(!kinds(&x86).contains(&"stale_read".to_string()), "{:?}", kinds(&x86));
}

#[test]
fn bad_input_is_exit_2_with_the_file_and_line() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.dmabuf", b"".to_vec(), "empty"),
        ("binary.dmabuf", vec![0x7f, b'E', b'L', b'F', 0, 0, 1, 2, 0xff, 0xfe], "binary.dmabuf"),
        (
            "unknown-dev.dmabuf",
            b"platform arm64-noncoherent\nbuffer b size=4KiB heap=system\nattach gpx b\n".to_vec(),
            "gpu",
        ),
        ("unknown-heap.dmabuf", b"platform arm64-noncoherent\nbuffer b size=4KiB heap=sytem\n".to_vec(), "system"),
        (
            "unknown-preset.dmabuf",
            b"platform arm64-noncoherant\nbuffer b size=4KiB heap=system\n".to_vec(),
            "arm64-noncoherent",
        ),
        (
            "out-of-bounds.dmabuf",
            b"platform arm64-noncoherent\nbuffer b size=4KiB heap=system\nvmap b\ncpu read b[0..8KiB]\n".to_vec(),
            ":4:",
        ),
        (
            "overflow.dmabuf",
            b"platform arm64-noncoherent\nbuffer b size=99999999999999999999GiB heap=system\n".to_vec(),
            ":2:",
        ),
        (
            "huge-repeat.dmabuf",
            b"platform x86-pcie\nbuffer b size=4KiB heap=system\nrepeat 18446744073709551615 {\n  mmap b\n  munmap b\n}\n"
                .to_vec(),
            "limit",
        ),
        ("syntax.dmabuf", b"platform arm64-noncoherent\nbuffer b size=4KiB heap=system\nmap gpu\n".to_vec(), ":3:"),
    ];
    for (name, bytes, needle) in cases {
        let p = tmp(name, &bytes);
        let o = dmabuf(&["check", p.to_str().unwrap()]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}{}", text(&o.stdout));
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert!(err.contains(needle), "{name}: {needle:?} not in {err}");
        assert!(o.stdout.is_empty(), "{name}: a partial report on stdout");
    }
}

#[test]
fn a_100_megabyte_file_is_refused_without_reading_it() {
    let p = tmp("huge.dmabuf", b"");
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(100 << 20).unwrap();
    let o = dmabuf(&["check", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("huge.dmabuf"), "{}", text(&o.stderr));
}

#[test]
fn a_missing_file_and_a_bad_flag_are_exit_2() {
    assert_eq!(dmabuf(&["check", "/nonexistent/x.dmabuf"]).status.code(), Some(2));
    assert_eq!(dmabuf(&["check", "--format", "yaml", &scenario("uvc-gpu-fixed.dmabuf")]).status.code(), Some(2));
    assert_eq!(dmabuf(&["check"]).status.code(), Some(2));
}

#[test]
fn one_bad_file_among_good_ones_prints_no_partial_report() {
    let bad = tmp("bad-among-good.dmabuf", b"platform nowhere\n");
    let o = dmabuf(&["check", &scenario("uvc-gpu-broken.dmabuf"), bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty(), "{}", text(&o.stdout));
}

#[test]
fn platforms_lists_and_shows_presets() {
    let o = dmabuf(&["platforms"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o.stdout).contains("arm64-noncoherent"));
    let o = dmabuf(&["platforms", "show", "x86-pcie"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o.stdout).contains("name = \"x86-pcie\""));
    assert_eq!(dmabuf(&["platforms", "show", "pdp-11"]).status.code(), Some(2));
}

fn litmus(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/litmus").join(name).display().to_string()
}

#[test]
fn explore_proves_exits_0_and_a_counterexample_exits_1_with_a_replay_that_reproduces_it() {
    let o = dmabuf(&["explore", &litmus("cpu-to-dev-bracketed.dmabuf")]);
    assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
    assert!(text(&o.stdout).contains("proved"));

    let replay = std::env::temp_dir().join(format!("dmabuf-cli-replay-{}.replay", std::process::id()));
    let o = dmabuf(&[
        "explore",
        "--format",
        "json",
        "--replay-out",
        replay.to_str().unwrap(),
        &litmus("lost-write-late-end.dmabuf"),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "counterexample");
    assert!(v["states"].as_u64().unwrap() > 0);
    let kind = v["counterexample"]["findings"][0]["kind"].clone();

    let o = dmabuf(&["check", "--format", "json", "--replay", replay.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["findings"][0]["kind"], kind);
}

#[test]
fn explore_with_a_tiny_bound_is_inconclusive_exit_3() {
    let o = dmabuf(&["explore", "--max-states", "2", &litmus("riscv-bracketed.dmabuf")]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stdout));
    assert!(text(&o.stdout).contains("inconclusive"));
}

#[test]
fn a_bad_replay_file_is_exit_2_naming_the_line() {
    let p = tmp("bad.replay", b"scenario = \"x.dmabuf\"\nchoices = [1, \"two\"]\n");
    let o = dmabuf(&["check", "--replay", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("bad.replay:2:"), "{}", text(&o.stderr));
}

/// Regression: a replay file whose fields no longer fit its scenario (a line index or a
/// choice edited by hand) is refused with its line, never run as another path.
#[test]
fn a_replay_file_is_checked_against_its_scenario() {
    let dir = std::env::temp_dir().join(format!("dmabuf-cli-replay-{}", std::process::id()));
    let sub = dir.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::copy(scenario("litmus/stray-dirty-line.dmabuf"), sub.join("s.dmabuf")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../dmabuf-sim/platforms/arm64-noncoherent.toml"),
        dir.join("plat.toml"),
    )
    .unwrap();
    // Explore from the directory above, with a platform file given relative to it.
    let o = Command::new(env!("CARGO_BIN_EXE_dmabuf"))
        .current_dir(&dir)
        .args(["explore", "sub/s.dmabuf", "--platform", "plat.toml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let replay = sub.join("s.replay");
    let saved = std::fs::read_to_string(&replay).unwrap();
    assert!(saved.contains("platform = \"../plat.toml\""), "{saved}");
    // It runs from anywhere.
    let o = dmabuf(&["check", "--replay", replay.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    // A line past the explored ones, or a choice the path has no option for, is exit 2.
    for (from, to, key) in [("line = 0", "line = 999", "line ="), ("choices = [", "choices = [9, ", "choices =")] {
        std::fs::write(&replay, saved.replace(from, to)).unwrap();
        let o = dmabuf(&["check", "--replay", replay.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{to}: {}", text(&o.stdout));
        let line = saved.lines().position(|l| l.starts_with(key)).unwrap() + 1;
        assert!(text(&o.stderr).contains(&format!("s.replay:{line}:")), "{}", text(&o.stderr));
    }
}

/// Regression: a control character in a scenario is named (`U+000C`), and no control
/// byte reaches the terminal, in the message or in the quoted line.
#[test]
fn control_characters_are_named_never_printed() {
    for (name, bytes, what) in [
        ("ff.dmabuf", &b"platform arm64-noncoherent\nbuffer b size=4KiB heap=system\x0c\n"[..], "U+000C"),
        ("vt.dmabuf", &b"platform arm64-noncoherent\nbuffer b \x0b size=4KiB heap=system\n"[..], "U+000B"),
        ("esc.dmabuf", &b"platform arm64-noncoherent\nbuffer b \x1b[2J size=4KiB\n"[..], "U+001B"),
        ("nul.dmabuf", &b"platform arm64-noncoherent\nbuf\x00fer b\n"[..], "NUL"),
    ] {
        let p = tmp(name, bytes);
        let o = dmabuf(&["check", p.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{name}");
        let err = text(&o.stderr);
        assert!(err.contains(what), "{name}: {err}");
        assert!(!o.stderr.iter().any(|&b| b < 0x20 && b != b'\n' && b != b'\r' && b != b'\t'), "{name}: {err:?}");
    }
}

/// Regression: an error on a line of megabytes quotes a window of it, not the line.
#[test]
fn an_error_on_a_huge_line_quotes_a_window() {
    let mut src = b"platform arm64-noncoherent\nbuffer b size=4KiB heap=system ".to_vec();
    src.extend(std::iter::repeat_n(b'x', 12 << 20));
    src.push(b'\n');
    let p = tmp("long.dmabuf", &src);
    let o = dmabuf(&["check", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stderr.len() < 4096, "{} bytes of error", o.stderr.len());
    assert!(text(&o.stderr).contains("long.dmabuf:2:"), "{}", text(&o.stderr));
}
