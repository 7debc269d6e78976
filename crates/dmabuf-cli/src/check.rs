//! `dmabuf check FILE...`: each scenario run with the sanitizer, under both maintenance
//! implementations by default. Exit status: 0 no definite finding, 1 a definite finding
//! (or a latent one with `--deny latent`), 2 bad input or usage.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::ValueEnum;
use dmabuf_check::html::{CheckedFile, check_page};
use dmabuf_check::report::{FileReport, Styles, to_json, to_sarif, to_text};
use dmabuf_check::runner::total_steps;
use dmabuf_check::scenario::Scenario;
use dmabuf_check::verdict::{self, Checked};

use crate::io::{is_stdin, read_scenario, write_whole};
use crate::{Format, PolicyArgs, check_replay, report_error};

/// What `dmabuf check` prints on stdout.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum CheckFormat {
    /// For people.
    Text,
    /// For scripts.
    Json,
    /// SARIF 2.1.0, for code-scanning views: each finding at its scenario line.
    Sarif,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Deny {
    /// Latent findings fail the run too (exit 1).
    Latent,
}

/// Flags of `dmabuf check`.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// Scenario files; `-` reads one from standard input.
    #[arg(required_unless_present = "replay")]
    files: Vec<PathBuf>,
    /// How the hardware uses its freedoms: adversarial, seeded:N, lru, never.
    #[arg(long, default_value = "adversarial")]
    chooser: String,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Run the path of a replay file that `dmabuf explore` saved (its scenario and
    /// policies come from the file).
    #[arg(long, conflicts_with_all = ["files", "chooser", "html"])]
    replay: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: CheckFormat,
    /// Findings of this severity fail the run as well as definite ones.
    #[arg(long, value_enum)]
    deny: Vec<Deny>,
    /// Also write the report as one self-contained HTML page to FILE: each file's
    /// timeline, line states and findings.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

/// Steps from which a run shows a progress bar (on a terminal only).
const PROGRESS_FROM: u64 = 5_000;

/// A progress bar on stderr for a long run, when stderr is a terminal.
fn progress_bar(file: &Path, steps: u64) -> Option<indicatif::ProgressBar> {
    if steps < PROGRESS_FROM || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(steps);
    let style = indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} steps, {per_sec}, eta {eta}")
        .map(|s| s.progress_chars("=> "));
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar.set_message(file.display().to_string());
    Some(bar)
}

/// Runs `dmabuf check`.
pub fn run(a: CheckArgs) -> ExitCode {
    if let Some(r) = &a.replay {
        let format = match a.format {
            CheckFormat::Json => Format::Json,
            CheckFormat::Text => Format::Text,
            CheckFormat::Sarif => {
                eprintln!("error: --format sarif is for scenario files, not --replay");
                return ExitCode::from(2);
            }
        };
        return check_replay(r, format);
    }
    let cfg = a.policy.check_config(&a.chooser);
    if let Err(e) = dmabuf_sim::chooser_from_name(&cfg.chooser) {
        // The error lists the choosers.
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if a.files.iter().filter(|f| is_stdin(f)).count() > 1 {
        eprintln!("error: `-` (standard input) may be given once");
        return ExitCode::from(2);
    }
    // Read and check every file before running any: bad input is exit 2, with no partial
    // report.
    let mut inputs: Vec<(PathBuf, Scenario, String)> = Vec::new();
    for f in &a.files {
        match read_scenario(f) {
            Ok(x) => inputs.push(x),
            Err(e) => {
                report_error(e);
                return ExitCode::from(2);
            }
        }
    }
    let runs = if cfg.maintenance.is_some() { 1 } else { 2 };
    let mut results: Vec<(String, Checked)> = Vec::new();
    for (f, s, src) in &inputs {
        let bar = progress_bar(f, total_steps(&s.steps).saturating_mul(runs));
        let mut tick = |done: u64| {
            if let Some(b) = &bar
                && done.is_multiple_of(256)
            {
                b.set_position(done);
            }
        };
        let res = verdict::check(s, f, src, &cfg, &mut tick);
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        match res {
            Ok(r) => results.push((f.display().to_string(), r)),
            Err(e) => {
                report_error(e);
                return ExitCode::from(2);
            }
        }
    }
    // The page is written before anything is printed: a page that cannot be made or
    // written is exit 2 with no report on stdout.
    if let Some(path) = &a.html {
        let files: Vec<CheckedFile<'_>> = inputs
            .iter()
            .zip(&results)
            .map(|((p, s, src), (name, r))| CheckedFile { name, path: p, src, scenario: s, checked: r })
            .collect();
        let page = match check_page(&files, &cfg) {
            Ok(p) => p,
            Err(e) => {
                report_error(e);
                return ExitCode::from(2);
            }
        };
        if let Err(e) = write_whole(path, &page) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    let reports: Vec<FileReport<'_>> = inputs
        .iter()
        .zip(&results)
        .map(|((_, _, src), (f, r))| FileReport { file: f, src, result: &r.result })
        .collect();
    let mut out = anstream::stdout();
    match a.format {
        CheckFormat::Json => {
            let mut v = to_json(&reports);
            v["implementation"] = serde_json::json!(cfg.implementation());
            if let Some(files) = v["files"].as_array_mut() {
                for (j, (_, r)) in files.iter_mut().zip(&results) {
                    if let Some(m) = &r.minimal_stats {
                        j["stats_minimal"] = dmabuf_check::report::stats_json(m);
                    }
                }
            }
            let _ = writeln!(out, "{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        CheckFormat::Sarif => {
            let _ = writeln!(out, "{}", serde_json::to_string_pretty(&to_sarif(&reports)).unwrap_or_default());
        }
        CheckFormat::Text => {
            // anstream drops the colours where --color and the terminal say so.
            for r in &reports {
                let _ = write!(out, "{}", to_text(r, Styles::colored()));
            }
        }
    }
    let definite = results.iter().any(|(_, r)| r.definite());
    let latent = results.iter().any(|(_, r)| r.latent());
    ExitCode::from(u8::from(definite || (latent && a.deny.contains(&Deny::Latent))))
}
