//! `dmabuf bench`: the maintenance benchmark (`dmabuf_check::bench`) from the command
//! line: a table or JSON on stdout, a chart as SVG.
//!
//! Exit status: 0 when both policies ran every workload without a finding, 1 when the
//! sanitizer found something (a policy is wrong), 2 for bad usage or a file that cannot
//! be written. Missed cost targets are reported in the output, not in the status.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use dmabuf_check::bench::{Suite, run_suite, to_json, to_svg, to_text};

use crate::Format;

/// Flags of `dmabuf bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Also write a bar chart of the results (SVG) to FILE.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Also write the results as one self-contained HTML page to FILE: the charts of
    /// bytes and ratios with their targets, and the table.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Frames each pipeline runs after its warm-up frame.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    frames: u32,
    /// Frames of 320x240 instead of 1920x1080 (a quick look).
    #[arg(long)]
    small: bool,
}

pub fn run(a: BenchArgs) -> ExitCode {
    let base = if a.small { Suite::short() } else { Suite::default() };
    let suite = Suite { frames: a.frames, ..base };
    let results = match run_suite(&suite) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut out = anstream::stdout();
    let _ = match a.format {
        Format::Json => {
            writeln!(out, "{}", serde_json::to_string_pretty(&to_json(&suite, &results)).unwrap_or_default())
        }
        Format::Text => write!(out, "{}", to_text(&suite, &results)),
    };
    if let Some(path) = &a.svg
        && let Err(e) = crate::io::write_whole(path, &to_svg(&suite, &results))
    {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if let Some(path) = &a.html
        && let Err(e) = crate::io::write_whole(path, &dmabuf_check::html::bench_page(&suite, &results))
    {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let found = results.iter().any(|r| r.findings.linux + r.findings.minimal > 0);
    ExitCode::from(u8::from(found))
}
