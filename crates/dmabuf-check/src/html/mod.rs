//! The HTML report: one self-contained file (inline CSS, script and SVG; nothing is
//! fetched, it opens from disk) that shows a run as a story in time.
//!
//! - A timeline with a lane per agent (the CPU program, each device, the framework's own
//!   maintenance and copies, swiotlb's bounce copies, the hardware's own moves): steps
//!   as marks, device jobs as spans (queued, then running), fences as arrows from the
//!   signal to the wait.
//! - Under it, for each line range a finding involves, its state over time in every
//!   cache and in memory: absent, clean or dirty, whose bytes it holds, stale marked.
//! - The finding's scenario lines highlighted, and the missing step its hint names drawn
//!   where the hint places it.
//!
//! The data comes from a second run of the scenario with a [`Recorder`] (the simulator's
//! observer and the runner's tracer): runs are deterministic, so it is the run that was
//! checked, and what it keeps is bounded ([`mod@record`] says how). The runner knows nothing
//! of this module; the CLI only calls [`check_page`], [`explore_page`] and
//! [`bench_page`].

pub mod bench;
mod hint;
pub mod record;

use std::cell::RefCell;
use std::ops::Range;
use std::path::Path;
use std::rc::Rc;

use dmabuf::{AttachPolicy, MaintenancePolicy};
use serde_json::{Value, json};

pub use hint::{Ghost, ghosts};
pub use record::{Recorder, Recording};

use crate::explore::{Exploration, Verdict};
use crate::runner::{Hooks, RunConfig, RunError, load_platform, run_hooked};
use crate::sanitizer::{Finding, Severity};
use crate::scenario::Scenario;
use crate::verdict::{CheckConfig, Checked};

/// The page's stylesheet and script, inlined into every report.
const CSS: &str = include_str!("report.css");
const SCRIPT: &str = include_str!("report.js");

/// Why a report could not be made: the scenario's second run failed (it ran the first
/// time, so this is a bug, reported rather than hidden).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The run to record failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The counterexample's path did not replay.
    #[error("the counterexample's path does not replay: {0}")]
    Replay(String),
}

impl miette::Diagnostic for ReportError {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        match self {
            ReportError::Run(e) => miette::Diagnostic::code(e),
            ReportError::Replay(_) => Some(Box::new("dmabuf::report")),
        }
    }

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        match self {
            ReportError::Run(e) => miette::Diagnostic::help(e),
            ReportError::Replay(_) => None,
        }
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        match self {
            ReportError::Run(e) => miette::Diagnostic::source_code(e),
            ReportError::Replay(_) => None,
        }
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        match self {
            ReportError::Run(e) => miette::Diagnostic::labels(e),
            ReportError::Replay(_) => None,
        }
    }
}

/// One checked file, as `dmabuf check` has it.
pub struct CheckedFile<'a> {
    /// The file's name as given (`-` for standard input).
    pub name: &'a str,
    /// Its path, to find a platform file it names.
    pub path: &'a Path,
    /// Its source.
    pub src: &'a str,
    /// It, parsed.
    pub scenario: &'a Scenario,
    /// What the check found.
    pub checked: &'a Checked,
}

/// The ranges of interest of some findings: each finding's buffer and bytes (the whole
/// buffer when the finding names none), with their consequences'.
fn interest(findings: &[&Finding]) -> Vec<(String, Range<u64>)> {
    let mut out: Vec<(String, Range<u64>)> = Vec::new();
    let mut add = |f: &Finding| {
        if f.buffer.is_empty() {
            return;
        }
        let r = if f.range[0] < f.range[1] { f.range[0]..f.range[1] } else { 0..u64::MAX };
        if !out.iter().any(|(b, x)| *b == f.buffer && *x == r) {
            out.push((f.buffer.clone(), r));
        }
    };
    for f in findings {
        add(f);
        for c in &f.consequences {
            add(c);
        }
    }
    out
}

/// Runs `scenario` once more with a recorder following `interest` (every buffer, whole,
/// when it is empty).
pub fn record(
    scenario: &Scenario,
    file: &Path,
    src: &str,
    cfg: &RunConfig,
    interest: Vec<(String, Range<u64>)>,
    hooks: impl FnOnce(Hooks<'_>) -> Result<crate::runner::RunResult, ReportError>,
) -> Result<Recording, ReportError> {
    let platform = load_platform(scenario, file, src, cfg.platform.as_deref())?;
    let rec = Rc::new(RefCell::new(Recorder::new(&platform, interest)));
    let chooser = dmabuf_sim::chooser_from_name(&cfg.chooser).unwrap_or_else(|_| Box::new(dmabuf_sim::Never));
    let mut h = Hooks::new(chooser);
    h.observer = Some(Box::new(rec.clone()));
    h.tracer = Some(rec.clone());
    hooks(h)?;
    let recording = rec.borrow_mut().finish();
    Ok(recording)
}

/// A finding for the page: its JSON, the run it comes from, where its missing steps go.
fn finding_json(f: &Finding, run: usize) -> Value {
    let mut v = serde_json::to_value(f).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("run".into(), json!(run));
        m.insert("ghosts".into(), json!(ghosts(&f.hint)));
    }
    v
}

fn run_name(m: MaintenancePolicy) -> &'static str {
    match m {
        MaintenancePolicy::Linux => "upstream Linux's maintenance",
        MaintenancePolicy::Minimal => "the minimal implementation",
        MaintenancePolicy::Vendor => "a vendor kernel's maintenance (Rockchip's)",
    }
}

/// The page of `dmabuf check --html`: one section per file.
pub fn check_page(files: &[CheckedFile<'_>], cfg: &CheckConfig) -> Result<String, ReportError> {
    let mut sections = Vec::new();
    for f in files {
        let run_cfg = |m: MaintenancePolicy| RunConfig {
            chooser: cfg.chooser.clone(),
            attach: cfg.attach.unwrap_or(AttachPolicy::Linux),
            maintenance: m,
            platform: cfg.platform.clone(),
            max_memory: cfg.max_memory,
        };
        let policies: Vec<MaintenancePolicy> = match cfg.maintenance {
            Some(m) => vec![m],
            None => vec![MaintenancePolicy::Linux, MaintenancePolicy::Minimal],
        };
        let findings = &f.checked.result.findings;
        let mut runs = Vec::new();
        let mut shown = Vec::new();
        for (i, &m) in policies.iter().enumerate() {
            // Definite findings are the upstream run's; latent ones the minimal run's.
            let mine: Vec<&Finding> = findings
                .iter()
                .filter(|x| cfg.maintenance.is_some() || (x.severity == Severity::Latent) == (i == 1))
                .collect();
            let rc = run_cfg(m);
            let rec = record(f.scenario, f.path, f.src, &rc, interest(&mine), |h| {
                Ok(run_hooked(f.scenario, f.path, f.src, &rc, h)?)
            })?;
            runs.push(json!({ "name": run_name(m), "recording": rec }));
            for x in mine {
                shown.push((x, i));
            }
        }
        // The findings in the order of the text report, each with the run it belongs to.
        let list: Vec<Value> = findings
            .iter()
            .map(|x| {
                let run = shown.iter().find(|(y, _)| std::ptr::eq(*y, x)).map_or(0, |(_, r)| *r);
                finding_json(x, run)
            })
            .collect();
        let r = &f.checked.result;
        sections.push(json!({
            "kind": "check",
            "file": f.name,
            "platform": r.platform,
            "steps": r.steps,
            "source": f.src,
            "findings": list,
            "runs": runs,
            "chooser": cfg.chooser,
            "implementation": cfg.implementation(),
            "stats": crate::report::stats_json(&r.stats),
        }));
    }
    let title = match files {
        [one] => format!("dmabuf check: {}", one.name),
        _ => format!("dmabuf check: {} files", files.len()),
    };
    Ok(page(&title, &json!({ "sections": sections })))
}

/// The page of `dmabuf explore --html`: the verdict, and the counterexample's path (or
/// the path without hardware moves, for a proof) on the timeline.
#[allow(clippy::too_many_arguments)]
pub fn explore_page(
    name: &str,
    path: &Path,
    src: &str,
    scenario: &Scenario,
    cfg: &RunConfig,
    e: &Exploration,
    replay_file: Option<&str>,
) -> Result<String, ReportError> {
    let (rec, findings, moves) = match &e.counterexample {
        Some(c) => {
            let all: Vec<&Finding> = c.result.findings.iter().collect();
            let rec = record(scenario, path, src, cfg, interest(&all), |h| {
                crate::explore::replay_hooked(scenario, path, src, cfg, c.line, &c.choices, h).map_err(|e| match e {
                    crate::explore::ReplayMismatch::Run(e) => ReportError::Run(e),
                    e => ReportError::Replay(e.to_string()),
                })
            })?;
            let list: Vec<Value> = c.result.findings.iter().map(|f| finding_json(f, 0)).collect();
            (rec, list, json!(c.moves))
        }
        None => {
            let never = RunConfig { chooser: "never".into(), ..cfg.clone() };
            let rec =
                record(scenario, path, src, &never, Vec::new(), |h| Ok(run_hooked(scenario, path, src, &never, h)?))?;
            (rec, Vec::new(), json!([]))
        }
    };
    let run_name = match e.verdict {
        Verdict::Counterexample => "the counterexample's path",
        _ => "the path on which the hardware takes no freedom",
    };
    let section = json!({
        "kind": "explore",
        "file": name,
        "platform": rec_platform(scenario, path, src, cfg),
        "source": src,
        "verdict": e.verdict.name(),
        "states": e.states,
        "paths": e.paths,
        "max_depth": e.max_depth,
        "seconds": e.elapsed.as_secs_f64(),
        "bound": e.bound,
        "moves": moves,
        "replay": replay_file,
        "findings": findings,
        "runs": [{ "name": run_name, "recording": rec }],
        "implementation": run_name_of(cfg.maintenance),
    });
    Ok(page(&format!("dmabuf explore: {name}"), &json!({ "sections": [section] })))
}

fn run_name_of(m: MaintenancePolicy) -> &'static str {
    m.name()
}

fn rec_platform(scenario: &Scenario, path: &Path, src: &str, cfg: &RunConfig) -> String {
    load_platform(scenario, path, src, cfg.platform.as_deref()).map(|p| p.name).unwrap_or_default()
}

/// The page of `dmabuf bench --html`: the charts and the targets.
pub fn bench_page(suite: &crate::bench::Suite, results: &[crate::bench::WorkloadResult]) -> String {
    let section = json!({
        "kind": "bench",
        "bytes_chart": bench::bytes_chart(suite, results),
        "ratio_chart": bench::ratio_chart(results),
        "table": bench::table(results),
        "targets": crate::bench::targets(results),
        "suite": { "frames": suite.frames, "width": suite.width, "height": suite.height },
    });
    page("dmabuf bench", &json!({ "sections": [section] }))
}

/// Text for HTML element content and attributes.
pub fn escape(t: &str) -> String {
    t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The whole page: the data as JSON in a script element, the renderer after it.
fn page(title: &str, data: &Value) -> String {
    // `</` inside a script element would end it: JSON allows `<\/` for `</`.
    let json = serde_json::to_string(data).unwrap_or_else(|_| "{}".into()).replace("</", "<\\/");
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <link rel=\"icon\" href=\"data:,\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{t}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n\
         <header><h1>{t}</h1></header>\n<main id=\"report\"><noscript>This report draws itself with JavaScript.</noscript></main>\n\
         <script type=\"application/json\" id=\"data\">{json}</script>\n<script>\n{SCRIPT}</script>\n</body>\n</html>\n",
        t = escape(title)
    )
}
