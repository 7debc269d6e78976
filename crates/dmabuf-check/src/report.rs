//! Reports of a run, for people (text) and for scripts (JSON).
//!
//! The JSON is a stable contract: an object with `findings` (each with `kind`, `buffer`,
//! `range` as `[start, end)`, `agents`, `line`, `message`, `hint`, `count`, `severity`,
//! plus `file` and `steps`) and `stats` (maintenance counts and bytes by kind, and
//! cycles).

use std::fmt::Write as _;

use dmabuf_sim::{OpCount, Stats};
use serde_json::{Value, json};

use crate::runner::RunResult;
use crate::sanitizer::Severity;

/// One checked file.
pub struct FileReport<'a> {
    /// The file's path as given.
    pub file: &'a str,
    /// Its source (to quote lines).
    pub src: &'a str,
    /// What the run found.
    pub result: &'a RunResult,
}

fn op(c: &OpCount) -> Value {
    json!({ "ops": c.ops, "lines": c.lines, "bytes": c.bytes, "cycles": c.cycles })
}

/// The `stats` object.
pub fn stats_json(s: &Stats) -> Value {
    json!({
        "clean": op(&s.clean),
        "invalidate": op(&s.invalidate),
        "clean_invalidate": op(&s.clean_invalidate),
        "bounce": op(&s.bounce),
        "device_flush": op(&s.device_flush),
        "device_invalidate": op(&s.device_invalidate),
        "maintenance_ops": s.maintenance_ops(),
        "maintenance_bytes": s.maintenance_bytes(),
        "cycles": s.maintenance_cycles(),
        "total_cycles": s.total_cycles(),
    })
}

fn add(a: &mut OpCount, b: &OpCount) {
    a.ops += b.ops;
    a.lines += b.lines;
    a.bytes += b.bytes;
    a.effective_lines += b.effective_lines;
    a.cycles += b.cycles;
}

/// The stats of several runs, summed.
pub fn sum_stats(all: &[FileReport<'_>]) -> Stats {
    let mut t = Stats::default();
    for r in all {
        let s = &r.result.stats;
        add(&mut t.clean, &s.clean);
        add(&mut t.invalidate, &s.invalidate);
        add(&mut t.clean_invalidate, &s.clean_invalidate);
        add(&mut t.bounce, &s.bounce);
        add(&mut t.device_flush, &s.device_flush);
        add(&mut t.device_invalidate, &s.device_invalidate);
        t.access_cycles += s.access_cycles;
    }
    t
}

/// The JSON report of one or more files.
pub fn to_json(all: &[FileReport<'_>]) -> Value {
    let mut findings = Vec::new();
    for r in all {
        for f in &r.result.findings {
            let mut v = serde_json::to_value(f).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert("file".into(), json!(r.file));
            }
            findings.push(v);
        }
    }
    let files: Vec<Value> = all
        .iter()
        .map(|r| {
            json!({
                "file": r.file,
                "platform": r.result.platform,
                "findings": r.result.findings.len(),
                "steps": r.result.steps,
                "stats": stats_json(&r.result.stats),
            })
        })
        .collect();
    json!({ "findings": findings, "stats": stats_json(&sum_stats(all)), "files": files })
}

/// Styles for the text report; all empty when colour is off.
#[derive(Clone, Copy, Default)]
pub struct Styles {
    /// Finding kinds.
    pub kind: anstyle::Style,
    /// Line numbers and quotes.
    pub dim: anstyle::Style,
    /// Hints: what to do about a finding.
    pub hint: anstyle::Style,
    /// A clean result.
    pub ok: anstyle::Style,
}

impl Styles {
    /// Colours for a terminal.
    pub fn colored() -> Styles {
        use anstyle::{AnsiColor, Style};
        Styles {
            kind: Style::new().bold().fg_color(Some(AnsiColor::Red.into())),
            dim: Style::new().fg_color(Some(AnsiColor::BrightBlack.into())),
            hint: Style::new().fg_color(Some(AnsiColor::Cyan.into())),
            ok: Style::new().bold().fg_color(Some(AnsiColor::Green.into())),
        }
    }
}

/// A scenario line without its `#` comment (a `#` inside a string is not one).
fn strip_comment(line: &str) -> &str {
    let mut in_str = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_str => escaped = true,
            '"' => in_str = !in_str,
            '#' if !in_str => return &line[..i],
            _ => {}
        }
    }
    line
}

/// The text report of one file: one block per finding, the scenario lines quoted.
pub fn to_text(r: &FileReport<'_>, st: Styles) -> String {
    let lines: Vec<&str> = r.src.lines().collect();
    let quote = |n: u32| lines.get(n.saturating_sub(1) as usize).map_or("", |l| strip_comment(l).trim());
    let mut out = String::new();
    let (k, kr) = (st.kind.render(), st.kind.render_reset());
    let (d, dr) = (st.dim.render(), st.dim.render_reset());
    let (h, hr) = (st.hint.render(), st.hint.render_reset());
    for f in &r.result.findings {
        let times = if f.count > 1 { format!(" (x{})", f.count) } else { String::new() };
        let latent = if f.severity == Severity::Latent { " (latent)" } else { "" };
        let _ = writeln!(out, "{k}{}{kr}{latent}: {}:{}: {}{times}", f.kind.name(), r.file, f.line, f.message);
        let mut shown = Vec::new();
        let mut steps: Vec<_> = f.steps.iter().collect();
        steps.sort_by_key(|s| s.line);
        for s in steps {
            if shown.contains(&s.line) || s.line == 0 {
                continue;
            }
            shown.push(s.line);
            let _ = writeln!(out, "  {d}{:>5} |{dr} {:<44} {d}<- {}{dr}", s.line, quote(s.line), s.role);
        }
        if !f.hint.is_empty() {
            let _ = writeln!(out, "  {h}hint:{hr} {}", f.hint);
        }
        for c in &f.consequences {
            let latent = if c.severity == Severity::Latent { " (latent)" } else { "" };
            let times = if c.count > 1 { format!(" (x{})", c.count) } else { String::new() };
            let _ = writeln!(
                out,
                "  which leads to {k}{}{kr}{latent} at line {}: {}{times}",
                c.kind.name(),
                c.line,
                c.message
            );
        }
        out.push('\n');
    }
    let s = &r.result.stats;
    let latent = r.result.findings.iter().filter(|f| f.severity == Severity::Latent).count();
    let summary = if r.result.findings.is_empty() {
        format!("{}ok{}: no findings", st.ok.render(), st.ok.render_reset())
    } else if latent > 0 {
        let definite = r.result.findings.len() - latent;
        format!("{} finding(s): {definite} definite, {latent} latent", r.result.findings.len())
    } else {
        format!("{} finding(s)", r.result.findings.len())
    };
    let _ = writeln!(
        out,
        "{}: {summary} on {} ({} steps); maintenance: clean {} ops / {} B, invalidate {} ops / {} B, clean+invalidate {} ops / {} B, bounce {} ops / {} B, device flush {} ops / {} B; {} cycles",
        r.file,
        r.result.platform,
        r.result.steps,
        s.clean.ops,
        s.clean.bytes,
        s.invalidate.ops,
        s.invalidate.bytes,
        s.clean_invalidate.ops,
        s.clean_invalidate.bytes,
        s.bounce.ops,
        s.bounce.bytes,
        s.device_flush.ops,
        s.device_flush.bytes,
        s.maintenance_cycles()
    );
    out
}
