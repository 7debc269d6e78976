//! Reports of a run, for people (text) and for scripts (JSON).
//!
//! `--format sarif` is [`to_sarif`], SARIF 2.1.0 for code-scanning views.
//!
//! The JSON is a stable contract: an object with `findings` (each with `kind`, `buffer`,
//! `range` as `[start, end)`, `agents`, `line`, `message`, `hint`, `count`, `severity`,
//! plus `file` and `steps`) and `stats` (maintenance counts and bytes by kind, and
//! cycles).

use std::fmt::Write as _;

use dmabuf_sim::{OpCount, Stats};
use serde_json::{Value, json};

use crate::runner::RunResult;
use crate::sanitizer::{FindingKind, Severity};

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

/// Every finding kind, with what it means: the rules of the SARIF report.
const RULES: [(FindingKind, &str); 8] = [
    (FindingKind::StaleRead, "A read returned older bytes although a newer write happens before it."),
    (FindingKind::LostWrite, "A write's bytes were destroyed before anything replaced them."),
    (FindingKind::Race, "Two accesses to the same bytes, one a write, with no happens-before between them."),
    (FindingKind::Misuse, "A violation of the DMA API's or the dma-buf framework's rules."),
    (FindingKind::AttachRefused, "Attach refused a device, or the importing driver refused the buffer at map."),
    (FindingKind::AttachUnsafe, "An attach a rule refuses, accepted as upstream Linux does."),
    (FindingKind::Migrated, "A dynamic exporter moved the buffer for an importer without a peer-to-peer path."),
    (FindingKind::ExpectFailed, "An `expect` did not hold and no other finding explains why."),
];

/// A file name as a SARIF `uri`: a relative reference with `/` separators and the
/// characters a URI reserves percent-encoded; an absolute path is a `file://` URI (SARIF
/// 2.1.0, 3.10.3: a URI reference, which a bare absolute path is not meant to be).
fn uri(file: &str) -> String {
    let mut out = String::new();
    if file.starts_with('/') {
        out.push_str("file://");
    }
    for c in file.replace('\\', "/").chars() {
        match c {
            ' ' | '%' | '#' | '?' | '"' | '<' | '>' | '[' | ']' | '{' | '}' | '|' | '^' | '`' => {
                let mut b = [0; 4];
                for byte in c.encode_utf8(&mut b).bytes() {
                    out += &format!("%{byte:02X}");
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// The SARIF 2.1.0 log of one or more files, for code-scanning views: one result per
/// finding (its consequences as results of their own), at the line it is reported at,
/// with every line involved as a related location. A definite finding is an `error`, a
/// latent one a `warning`.
pub fn to_sarif(all: &[FileReport<'_>]) -> Value {
    use crate::sanitizer::Finding;
    let rules: Vec<Value> = RULES
        .iter()
        .map(|(k, what)| {
            json!({
                "id": k.name(),
                "shortDescription": { "text": what },
                "defaultConfiguration": { "level": "error" },
            })
        })
        .collect();
    let location = |file: &str, src: &str, line: u32| {
        let text = src.lines().nth(line.saturating_sub(1) as usize).unwrap_or("");
        json!({
            "physicalLocation": {
                "artifactLocation": { "uri": uri(file) },
                "region": { "startLine": line.max(1), "snippet": { "text": text } },
            }
        })
    };
    let mut results = Vec::new();
    fn push(out: &mut Vec<(String, u32, Finding)>, f: &Finding, file: &str) {
        out.push((file.to_string(), f.line, f.clone()));
        for c in &f.consequences {
            push(out, c, file);
        }
    }
    let mut flat = Vec::new();
    for r in all {
        for f in &r.result.findings {
            push(&mut flat, f, r.file);
        }
    }
    for (file, line, f) in flat {
        let src = all.iter().find(|r| r.file == file).map_or("", |r| r.src);
        let rule = RULES.iter().position(|(k, _)| *k == f.kind).unwrap_or(0);
        let mut seen = Vec::new();
        let related: Vec<Value> = f
            .steps
            .iter()
            .filter(|s| {
                s.line != 0 && !seen.contains(&(s.line, &s.role)) && {
                    seen.push((s.line, &s.role));
                    true
                }
            })
            .enumerate()
            .map(|(i, s)| {
                let mut l = location(&file, src, s.line);
                l["id"] = json!(i + 1);
                l["message"] = json!({ "text": s.role });
                l
            })
            .collect();
        let text = if f.hint.is_empty() { f.message.clone() } else { format!("{} Hint: {}", f.message, f.hint) };
        results.push(json!({
            "ruleId": f.kind.name(),
            "ruleIndex": rule,
            "level": if f.severity == Severity::Latent { "warning" } else { "error" },
            "message": { "text": text },
            "locations": [location(&file, src, line)],
            "relatedLocations": related,
            "properties": {
                "severity": f.severity.name(),
                "buffer": f.buffer,
                "range": f.range,
                "agents": f.agents,
                "count": f.count,
            },
        }));
    }
    let artifacts: Vec<Value> = all.iter().map(|r| json!({ "location": { "uri": uri(r.file) } })).collect();
    json!({
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": { "name": "dmabuf", "version": env!("CARGO_PKG_VERSION"), "rules": rules } },
            "artifacts": artifacts,
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::uri;

    #[test]
    fn sarif_uris_are_uri_references() {
        assert_eq!(uri("scenarios/uvc gpu.dmabuf"), "scenarios/uvc%20gpu.dmabuf");
        assert_eq!(uri("/home/me/x.dmabuf"), "file:///home/me/x.dmabuf");
        assert_eq!(uri("<stdin>"), "%3Cstdin%3E");
        assert_eq!(uri("a\\b#1.dmabuf"), "a/b%231.dmabuf");
    }
}
