//! Bounded resources: a run too big for its memory ends with exit 2 (`check`) or 3
//! (`explore`, inconclusive) and a message, never an abort (134) or a panic (101); a
//! bound on time holds inside a long run too.

use std::path::PathBuf;
use std::process::{Command, Output};

fn tmp(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dmabuf-bounds-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `dmabuf ARGS` under `ulimit -v KIB` (the shell's address-space limit).
fn under_ulimit(kib: u64, args: &[&str]) -> Output {
    let bin = env!("CARGO_BIN_EXE_dmabuf");
    Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {kib} && exec \"$0\" \"$@\""))
        .arg(bin)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run dmabuf under sh")
}

const VRAM_8G: &str = "platform x86-pcie\nbuffer v size=8GiB device=dgpu\nvmap v\nvunmap v\n";

#[test]
fn under_an_address_space_limit_check_exits_2_and_explore_3_never_abort() {
    let f = tmp("vram8g.dmabuf", VRAM_8G);
    let f = f.to_str().unwrap();
    // 600 MB: the default --max-memory is three quarters of it, and an 8 GiB buffer's
    // bookkeeping is more.
    let o = under_ulimit(600_000, &["check", f]);
    assert_eq!(o.status.code(), Some(2), "stdout {} stderr {}", text(&o.stdout), text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("--max-memory") && err.contains(":2:"), "{err}");
    let o = under_ulimit(600_000, &["explore", f]);
    assert_eq!(o.status.code(), Some(3), "stdout {} stderr {}", text(&o.stdout), text(&o.stderr));
    assert!(text(&o.stdout).contains("inconclusive"), "{}", text(&o.stdout));
}

#[test]
fn a_step_that_would_pass_max_memory_stops_the_run_at_its_line() {
    let f = tmp(
        "read64m.dmabuf",
        "platform arm64-noncoherent\nbuffer b size=64MiB heap=system\nmmap b\nsync b start read\ncpu read b\nsync b end read\nmunmap b\n",
    );
    let f = f.to_str().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_dmabuf")).args(["check", "--max-memory", "100MiB", f]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    // The report wraps its lines: read its words.
    let words: Vec<&str> = err.split_whitespace().filter(|w| *w != "│").collect();
    assert!(err.contains(":5:") && words.join(" ").contains("needs 128 MiB more"), "{err}");
    // With room, the same scenario runs clean.
    let o = Command::new(env!("CARGO_BIN_EXE_dmabuf")).args(["check", "--max-memory", "1GiB", f]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
    // A size that is not one is refused by the flag's parser.
    let o = Command::new(env!("CARGO_BIN_EXE_dmabuf")).args(["check", "--max-memory", "lots", f]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn explore_stops_at_its_timeout_inside_a_long_run() {
    // One run of this takes far longer than the timeout; before the bound was checked
    // inside runs, explore ran past it to the end of the path.
    let body = "  map vdec cap from_device\n  vdec write cap = frame\n  unmap vdec cap\n  sync cap start read\n  cpu read cap expect frame\n  sync cap end read\n";
    let f = tmp(
        "long.dmabuf",
        &format!(
            "platform arm64-noncoherent\nbuffer cap size=64KiB heap=system\nattach vdec cap\nmmap cap\nrepeat 100000 {{\n{body}}}\nmunmap cap\n"
        ),
    );
    let o = Command::new(env!("CARGO_BIN_EXE_dmabuf"))
        .args(["explore", "--timeout", "1", "--format", "json", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "inconclusive");
    assert!(v["bound"].as_str().unwrap().contains("--timeout"), "{v}");
}

#[test]
fn a_proof_says_which_findings_it_does_not_cover() {
    let f = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/litmus/user-sync-forgotten.dmabuf");
    let o = Command::new(env!("CARGO_BIN_EXE_dmabuf"))
        .args(["explore", "--maintenance", "linux", "--format", "json", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "proved");
    assert_eq!(v["not_covered"], serde_json::json!(["misuse"]));
    let o = Command::new(env!("CARGO_BIN_EXE_dmabuf"))
        .args(["explore", "--maintenance", "linux", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(text(&o.stdout).contains("not covered by the exploration: misuse"), "{}", text(&o.stdout));
}

/// A pipeline of `frames` frames: a decoder writes, the CPU reads in a bracket.
fn frames(name: &str, frames: u32) -> PathBuf {
    let body = "  map vdec cap from_device\n  vdec write cap = frame\n  unmap vdec cap\n  sync cap start read\n  cpu read cap expect frame\n  sync cap end read\n";
    tmp(
        name,
        &format!(
            "platform arm64-noncoherent\nbuffer cap size=64KiB heap=system\nattach vdec cap\nmmap cap\nrepeat {frames} {{\n{body}}}\nmunmap cap\n"
        ),
    )
}

#[test]
fn explore_branches_from_snapshots_and_without_them_finds_the_same() {
    let f = frames("snap.dmabuf", 40);
    let json = |extra: &[&str]| -> serde_json::Value {
        let o = Command::new(env!("CARGO_BIN_EXE_dmabuf"))
            .args(["explore", "--format", "json"])
            .args(extra)
            .arg(&f)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let snap = json(&["--jobs", "2"]);
    let again = json(&["--no-snapshots"]);
    assert_eq!(snap["verdict"], "proved");
    assert!(snap["checkpoints"].as_u64().unwrap() > 0, "{snap}");
    assert_eq!(again["checkpoints"], 0);
    for k in ["verdict", "states", "paths", "max_depth"] {
        assert_eq!(snap[k], again[k], "{k}");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_dmabuf")).args(["explore", "--jobs", "0"]).arg(&f).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_killed_explore_leaves_no_process_behind() {
    // Long enough to be searching when it is killed, short enough for the pilot run (one
    // run of the whole scenario, before any fork) to end soon in a debug build.
    let f = frames("killed.dmabuf", 3_000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_dmabuf"))
        .args(["explore", "--timeout", "100"])
        .arg(&f)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The search is under way when its processes (workers, checkpoints) run the scenario.
    let running = || -> Vec<String> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok().map(|c| (e.file_name(), c)))
            .filter(|(_, c)| String::from_utf8_lossy(c).contains(f.to_str().unwrap()))
            .map(|(pid, _)| pid.to_string_lossy().into_owned())
            .collect()
    };
    let t0 = std::time::Instant::now();
    while running().len() < 2 && t0.elapsed() < std::time::Duration::from_secs(90) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(running().len() >= 2, "no search processes after 90 s: {:?}", running());
    child.kill().unwrap();
    child.wait().unwrap();
    let mut left = running();
    for _ in 0..50 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        left = running();
    }
    assert!(left.is_empty(), "processes left behind: {left:?}");
}
