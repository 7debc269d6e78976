//! `dmabuf record`'s interposer on this machine, with memfd stand-ins for the dma-bufs
//! (the `standin` example): the fault handler, brackets, the kernel's copies, threads,
//! a forked child, symbolized backtraces, and the program's output unchanged.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use dmabuf_trace::run::record;
use dmabuf_trace::{Options, Symbolizer, convert};

/// target/debug (tests run from target/debug/deps).
fn target_dir() -> PathBuf {
    std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf()
}

/// The interposer and the `standin` example, built if this test run did not build them.
fn interposer() -> PathBuf {
    let lib = target_dir().join("libdmabuf_record.so");
    let release = target_dir().ends_with("release");
    let status = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "dmabuf-record", "-p", "dmabuf-trace", "--lib", "--example", "standin"])
        .args(release.then_some("--release"))
        .env("CARGO_TARGET_DIR", target_dir().parent().unwrap())
        .status()
        .unwrap();
    assert!(status.success() && lib.is_file(), "{}", lib.display());
    lib
}

#[test]
fn a_recorded_program_runs_as_it_does_alone_and_its_accesses_are_seen() {
    let lib = interposer();
    let prog = target_dir().join("examples/standin");
    let plain = Command::new(&prog).output().unwrap();
    assert!(plain.status.success());

    let mut live = Vec::new();
    let mut sym = Symbolizer::new();
    let out = {
        let mut printer = dmabuf_trace::live::Live::new(&mut live);
        let out = record(&lib, &[OsString::from(&prog)], &mut |r| printer.record(r, &mut sym)).unwrap();
        printer.finish();
        out
    };
    assert_eq!(out.status, 0);

    // The interposer's misuse: the peek (a read), the write(2) (the kernel's read, at
    // the call), the child's write and the parent's read of it, each outside a bracket;
    // the thread's write inside a READ bracket.
    let misuse: Vec<(String, u64)> = out
        .records
        .iter()
        .filter(|r| r.verb == "misuse")
        .map(|r| (r.get("what").unwrap().to_string(), r.num("w").unwrap()))
        .collect();
    assert!(misuse.contains(&("outside".into(), 0)), "{misuse:?}");
    assert!(misuse.contains(&("outside".into(), 1)), "{misuse:?}");
    assert!(misuse.contains(&("write_in_read".into(), 1)), "{misuse:?}");
    assert_eq!(misuse.iter().filter(|m| m.0 == "outside").count(), 4, "{misuse:?}");
    let live = String::from_utf8(live).unwrap();
    assert!(live.contains("at standin::peek"), "{live}");
    assert!(live.contains("inside a READ bracket"), "{live}");

    // Two processes (the fork), the fill's four pages in one step, the peek's access.
    let opts = Options { platform: "arm64-noncoherent".into(), agents: Default::default(), command: "standin".into() };
    let c = convert(&out.records, &opts, &mut Symbolizer::new()).unwrap();
    assert_eq!(c.summary.processes, 2, "{}", c.text);
    assert_eq!(c.summary.buffers, 2, "{}", c.text);
    assert!(c.text.contains("cpu write buf1[0x0..0x4000] = 0x5a"), "{}", c.text);
    assert!(c.text.contains("cpu read buf1[0x1000..0x2000]"), "{}", c.text);
    assert!(c.text.contains("cpu read buf1[0x2000..0x3000]"), "{}", c.text);
    assert!(c.text.contains("cpu write buf2[0x1000..0x2000] = 0x5a"), "{}", c.text);

    // What the program printed is what it prints alone; the interposer said nothing on
    // stdout. (The recorded run's stdout went to this test's: compare a second run's.)
    let again = Command::new(&prog).env("LD_PRELOAD", &lib).output().unwrap();
    assert_eq!(again.stdout, plain.stdout);
}

#[test]
fn a_statically_linked_or_missing_program_is_refused() {
    let lib = interposer();
    let e = record(&lib, &[OsString::from("/no/such/program")], &mut |_| {}).err().unwrap();
    assert_eq!(e.to_string(), "/no/such/program: no such program");
    // An ELF with no program interpreter: refused before it runs.
    let path = std::env::temp_dir().join(format!("dmabuf-record-static-{}", std::process::id()));
    let mut elf = vec![0u8; 64];
    elf[..5].copy_from_slice(b"\x7fELF\x02");
    elf[0x20] = 64; // e_phoff
    elf[0x36] = 56; // e_phentsize, e_phnum 0
    std::fs::write(&path, elf).unwrap();
    let e = record(&lib, &[path.clone().into_os_string()], &mut |_| {}).err().unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(
        e.to_string().ends_with("is statically linked: an LD_PRELOAD interposer cannot see its system calls"),
        "{e}"
    );
}

/// Handling a record can take seconds (symbolizing a backtrace in a slow guest): the
/// lines behind it must still be read. The recorder used to stop 2 s after it saw the
/// program exit, even while lines were still coming, and lost the rest of the run (a
/// guest test of a forked child lost the parent's job and its exit).
#[test]
fn a_slow_record_handler_loses_no_line_after_the_program_exits() {
    let lib = interposer();
    let prog = target_dir().join("examples/standin");
    let all = record(&lib, &[OsString::from(&prog)], &mut |_| {}).unwrap().records.len();
    // The first handler call outlasts the program (the recorder sees it exit), the
    // second outlasts the old 2 s grace.
    let mut calls = 0;
    let out = record(&lib, &[OsString::from(&prog)], &mut |_| {
        calls += 1;
        if calls <= 2 {
            std::thread::sleep(std::time::Duration::from_millis(if calls == 1 { 1500 } else { 3000 }));
        }
    })
    .unwrap();
    assert_eq!(out.status, 0);
    assert_eq!(out.records.len(), all, "every line of the run arrives");
}
