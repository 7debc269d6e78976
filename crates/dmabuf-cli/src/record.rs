//! `dmabuf record [-o TRACE] [--live] -- PROG ARGS...`: runs an unmodified program under
//! the interposer and writes what it did with dma-bufs as a scenario.
//!
//! Exit status: the program's (128 + N if signal N ended it); 125 when the recording
//! itself failed (no interposer, a statically linked program, an unwritable TRACE).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use dmabuf_trace::live::Live;
use dmabuf_trace::reference::{KernelTrace, compare, parse_kernel_trace};
use dmabuf_trace::run::{find_interposer, record};
use dmabuf_trace::{Agents, Options, Symbolizer, convert};

#[derive(clap::Args)]
pub struct RecordArgs {
    /// Where to write the scenario (default: PROG.dmabuf in the current directory).
    #[arg(short = 'o', long = "output", value_name = "TRACE")]
    output: Option<PathBuf>,
    /// Print each misuse as it happens (an access outside a bracket, a write in a READ
    /// bracket, END without START), with its backtrace, on stderr.
    #[arg(long)]
    live: bool,
    /// The platform the scenario names (`dmabuf check --platform` overrides it).
    #[arg(long, default_value = "arm64-noncoherent")]
    platform: String,
    /// The platform device standing for a kind of device: drm=NAME (vgem, PRIME
    /// importers), capture=NAME (V4L2 capture queues), output=NAME (V4L2 output queues).
    #[arg(long = "device", value_name = "KIND=NAME")]
    devices: Vec<String>,
    /// Also keep the interposer's raw log in this file.
    #[arg(long, value_name = "FILE")]
    raw_log: Option<PathBuf>,
    /// Record the kernel's own DMA API calls too (tracefs `dma` and `dma_fence` events;
    /// root, Linux 6.12) and write their comparison with the simulated framework's calls
    /// for the trace to FILE (the kernel's trace beside it, as FILE.ftrace).
    #[arg(long, value_name = "FILE")]
    kernel_reference: Option<PathBuf>,
    /// The program and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "PROG ARGS")]
    command: Vec<OsString>,
}

const FAILED: u8 = 125;

pub fn run(a: RecordArgs) -> ExitCode {
    let mut agents = Agents::default();
    for d in &a.devices {
        match d.split_once('=') {
            Some(("drm", n)) => agents.drm = n.to_string(),
            Some(("capture", n)) => agents.capture = n.to_string(),
            Some(("output", n)) => agents.output = n.to_string(),
            _ => {
                eprintln!("error: --device {d}: expected drm=NAME, capture=NAME or output=NAME");
                return ExitCode::from(2);
            }
        }
    }
    let lib = match find_interposer() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("dmabuf record: {e}");
            return ExitCode::from(FAILED);
        }
    };
    let name =
        PathBuf::from(&a.command[0]).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or("record".into());
    let output = a.output.clone().unwrap_or_else(|| PathBuf::from(format!("{name}.dmabuf")));
    // A trace that cannot be written is said before the program runs, not after.
    if let Err(e) = std::fs::File::create(&output) {
        eprintln!("dmabuf record: {}: {e}", output.display());
        return ExitCode::from(FAILED);
    }
    let ktrace = match a.kernel_reference.as_ref().map(|_| KernelTrace::start()) {
        Some(Err(e)) => {
            eprintln!("dmabuf record: --kernel-reference: {e}");
            return ExitCode::from(FAILED);
        }
        Some(Ok(k)) => Some(k),
        None => None,
    };
    let mut sym = Symbolizer::new();
    let mut live = Live::new(std::io::stderr());
    let outcome = record(&lib, &a.command, &mut |r| {
        if a.live {
            live.record(r, &mut sym);
        }
    });
    live.finish();
    let kernel_text = match ktrace.map(KernelTrace::stop) {
        Some(Err(e)) => {
            eprintln!("dmabuf record: --kernel-reference: {e}");
            return ExitCode::from(FAILED);
        }
        Some(Ok(t)) => Some(t),
        None => None,
    };
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            eprintln!("dmabuf record: {e}");
            return ExitCode::from(FAILED);
        }
    };
    if let Some(p) = &a.raw_log
        && let Err(e) = std::fs::write(p, &outcome.raw)
    {
        eprintln!("dmabuf record: {}: {e}", p.display());
        return ExitCode::from(FAILED);
    }
    let command = a.command.iter().map(|s| s.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ");
    let drm = agents.drm.clone();
    let opts = Options { platform: a.platform.clone(), agents, command };
    let conv = match convert(&outcome.records, &opts, &mut Symbolizer::new()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("dmabuf record: the interposer's log, {e}");
            return ExitCode::from(FAILED);
        }
    };
    if let Err(e) = std::fs::write(&output, &conv.text) {
        eprintln!("dmabuf record: {}: {e}", output.display());
        return ExitCode::from(FAILED);
    }
    if let (Some(path), Some(ktext)) = (&a.kernel_reference, kernel_text) {
        // The board's DRM device is the kernel's DRM driver (vgem's device is "vgem").
        let driver = outcome
            .records
            .iter()
            .find_map(|r| r.get("driver").filter(|d| !d.is_empty()))
            .unwrap_or("vgem")
            .to_string();
        let name = |d: &str| if d == drm { driver.clone() } else { d.to_string() };
        let events = parse_kernel_trace(&ktext);
        let report = match compare(&outcome.records, &conv, &events, &name) {
            Ok(c) => {
                eprint!("{}", c.to_text().lines().last().map(|l| format!("dmabuf record: {l}\n")).unwrap_or_default());
                c.to_text()
            }
            Err(e) => format!("the trace could not be simulated: {e}\n"),
        };
        let ftrace = PathBuf::from(format!("{}.ftrace", path.display()));
        if let Err(e) = std::fs::write(path, report).and_then(|_| std::fs::write(&ftrace, ktext)) {
            eprintln!("dmabuf record: {}: {e}", path.display());
            return ExitCode::from(FAILED);
        }
    }
    let summary = conv.summary;
    eprintln!(
        "dmabuf record: {}: {} process(es), {} buffer(s), {} misuse; check it with `dmabuf check --platform BOARD {}`",
        output.display(),
        summary.processes,
        summary.buffers,
        summary.misuse,
        output.display()
    );
    if summary.buffers == 0 {
        eprintln!(
            "dmabuf record: the program used no dma-buf the interposer could see: the trace has nothing to check"
        );
    }
    if summary.unrecorded_execs > 0 || summary.unseen_maps > 0 {
        eprintln!("dmabuf record: WARNING: part of the program was not recorded (see the trace's header)");
    }
    ExitCode::from(outcome.status.clamp(0, 255) as u8)
}
