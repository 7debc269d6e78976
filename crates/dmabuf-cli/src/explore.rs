//! `dmabuf explore FILE`: every choice of the hardware, a proof or a counterexample.
//! Exit status: 0 proved, 1 counterexample, 2 bad input, 3 inconclusive.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::io::{is_stdin, read_scenario, write_whole};
use crate::{Format, report_error};
use dmabuf_check::explore::{Exploration, ExploreConfig, Verdict, explore};
use dmabuf_check::replay::Replay;
use dmabuf_check::report::{FileReport, Styles, to_text};
use dmabuf_check::runner::RunConfig;

/// Flags of `dmabuf explore`.
#[derive(clap::Args)]
pub struct ExploreArgs {
    /// The scenario file to explore; `-` reads it from standard input (then no replay
    /// file is written: a replay names its scenario's file).
    file: PathBuf,
    /// Stop as inconclusive after this many distinct states.
    #[arg(long, default_value_t = 1_000_000)]
    max_states: u64,
    /// Stop as inconclusive after this many seconds (more than 0, at most a million).
    #[arg(long, value_parser = parse_timeout)]
    timeout: Option<Duration>,
    /// Where to save the counterexample's replay file (default: FILE.replay next to the
    /// scenario).
    #[arg(long)]
    replay_out: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Also write the result as one self-contained HTML page to FILE: the verdict, and
    /// the counterexample's path with the hardware's moves on the timeline.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Line classes explored at once, each in its own process (default: the machine's
    /// cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    jobs: Option<u16>,
    /// Re-run every path from the start instead of branching from snapshots (forked
    /// copies of the run); the same search, one process, slower on long runs.
    #[arg(long)]
    no_snapshots: bool,
}

/// The longest `--timeout`, in seconds: eleven days and a half, beyond any exploration
/// worth waiting for, and far inside what a `Duration` holds.
const MAX_TIMEOUT: f64 = 1e6;

/// `--timeout S`: seconds, more than 0 and at most [`MAX_TIMEOUT`].
fn parse_timeout(s: &str) -> Result<Duration, String> {
    let t: f64 = s.trim().parse().map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(t > 0.0 && t <= MAX_TIMEOUT) {
        return Err(format!("{s} seconds is out of range: give more than 0 and at most {MAX_TIMEOUT:.0}"));
    }
    Duration::try_from_secs_f64(t).map_err(|e| format!("{s}: {e}"))
}

fn spinner() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} exploring: {msg} [{elapsed}]") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    Some(bar)
}

fn json(e: &Exploration, file: &str, replay: Option<&str>) -> serde_json::Value {
    let ce = e.counterexample.as_ref().map(|c| {
        serde_json::json!({
            "moves": c.moves,
            "findings": c.result.findings,
            "replay": replay,
        })
    });
    serde_json::json!({
        "file": file,
        "verdict": e.verdict.name(),
        "states": e.states,
        "paths": e.paths,
        "max_depth": e.max_depth,
        "seconds": e.elapsed.as_secs_f64(),
        "bound": e.bound,
        "counterexample": ce,
        "not_covered": e.not_covered,
        "checkpoints": e.checkpoints,
        "points": e.points,
    })
}

/// Runs `dmabuf explore`.
pub fn run(a: ExploreArgs, run: RunConfig) -> ExitCode {
    if is_stdin(&a.file) && a.replay_out.is_some() {
        eprintln!("error: --replay-out needs a scenario file: a replay file names its scenario, and `-` has no name");
        return ExitCode::from(2);
    }
    let (path, scenario, src) = match read_scenario(&a.file) {
        Ok(x) => x,
        Err(e) => {
            report_error(e);
            return ExitCode::from(2);
        }
    };
    let mut cfg = ExploreConfig { run, max_states: a.max_states, timeout: a.timeout, ..ExploreConfig::default() };
    cfg.snapshots = !a.no_snapshots;
    if let Some(j) = a.jobs {
        cfg.jobs = j.into();
    }
    let bar = spinner();
    let mut tick = |states: u64, depth: usize, paths: u64| {
        if let Some(b) = &bar {
            b.set_message(format!("{states} states, {paths} paths, depth {depth}"));
        }
    };
    let res = explore(&scenario, &path, &src, &cfg, &mut tick);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let e = match res {
        Ok(e) => e,
        Err(e) => {
            report_error(e);
            return ExitCode::from(2);
        }
    };
    let file = path.display().to_string();
    // Save the counterexample as a replay file.
    let mut replay = None;
    if let Some(c) = e.counterexample.as_ref().filter(|_| !is_stdin(&a.file)) {
        let out = a.replay_out.clone().unwrap_or_else(|| a.file.with_extension("replay"));
        let text = Replay::new(&out, &a.file, &cfg.run, c.line, &c.choices).to_toml();
        match std::fs::write(&out, text) {
            Ok(()) => replay = Some(out.display().to_string()),
            Err(err) => eprintln!("warning: cannot write the replay file {}: {err}", out.display()),
        }
    }
    if let Some(out) = &a.html {
        let page =
            match dmabuf_check::html::explore_page(&file, &path, &src, &scenario, &cfg.run, &e, replay.as_deref()) {
                Ok(p) => p,
                Err(err) => {
                    report_error(err);
                    return ExitCode::from(2);
                }
            };
        if let Err(err) = write_whole(out, &page) {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    }
    let mut stdout = anstream::stdout();
    match a.format {
        Format::Json => {
            let v = json(&e, &file, replay.as_deref());
            let _ = writeln!(stdout, "{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        Format::Text => {
            // anstream drops the colours where --color and the terminal say so.
            let _ = write!(stdout, "{}", text(&e, &file, &src, replay.as_deref(), Styles::colored()));
        }
    }
    ExitCode::from(match e.verdict {
        Verdict::Proved => 0,
        Verdict::Counterexample => 1,
        Verdict::Inconclusive => 3,
    })
}

/// How the replay file names the scenario: relative to the replay file's directory when
/// both sit under it, else as given.
fn text(e: &Exploration, file: &str, src: &str, replay: Option<&str>, st: Styles) -> String {
    let mut out = String::new();
    let lines: Vec<&str> = src.lines().collect();
    let quote =
        |n: u32| lines.get(n.saturating_sub(1) as usize).map_or("", |l| l.split('#').next().unwrap_or("").trim());
    let stats =
        format!("{} states, {} paths, depth {}, {:.3} s", e.states, e.paths, e.max_depth, e.elapsed.as_secs_f64());
    match (&e.verdict, &e.counterexample) {
        (Verdict::Counterexample, Some(c)) => {
            out += &format!("{file}: counterexample ({stats})\n");
            out += "  the path, the scenario's steps with the hardware's choices:\n";
            let mut shown = 0;
            for m in &c.moves {
                if m.line != shown {
                    out += &format!("    {:>5} | {}\n", m.line, quote(m.line));
                    shown = m.line;
                }
                out += &format!("          ^ {}\n", m.what);
            }
            if c.moves.is_empty() {
                out += "    (no choice needed: the first path fails)\n";
            }
            if let Some(r) = replay {
                out += &format!("  replay: dmabuf check --replay {r}\n");
            }
            out.push('\n');
            out += &to_text(&FileReport { file, src, result: &c.result }, st);
        }
        (Verdict::Inconclusive, _) => {
            out += &format!(
                "{file}: inconclusive ({stats}): {}; no counterexample in what was covered\n",
                e.bound.as_deref().unwrap_or("a bound was reached")
            );
        }
        _ => out += &format!("{file}: proved ({stats}): no stale read, lost write or race on any path\n"),
    }
    if !e.not_covered.is_empty() {
        out += &format!(
            "  not covered by the exploration: {} on the first path; `dmabuf check {file}` reports it\n",
            e.not_covered.join(", ")
        );
    }
    out
}
