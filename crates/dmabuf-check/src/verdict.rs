//! Verdicts about a kernel: one check runs a program under upstream Linux's maintenance
//! and under the minimal conforming implementation, and says of each finding which
//! kernels it holds for.
//!
//! - **definite**: the upstream run has it. The program is broken on this platform with
//!   the kernel its user runs.
//! - **latent**: only the minimal run has it. The program works today because upstream
//!   over-maintains (the whole-buffer clean at every map on arm64, the sync of every
//!   mapped attachment at every CPU bracket), and breaks on a kernel that does only what
//!   the DMA API promises, as vendor kernels that skip syncs do.
//!
//! Both runs accept every attach, as upstream does; an attach a rule refuses is reported
//! (`attach_unsafe`) with what goes wrong. Forcing an implementation (`--maintenance`,
//! `--attach-policy`) runs that one only, and its findings are definite for it.
//! `docs/verdicts.md` says which kernel behaviour each verdict rests on.

use std::path::Path;

use dmabuf::{AttachPolicy, MaintenancePolicy};
use dmabuf_sim::Stats;

use crate::runner::{RunConfig, RunError, RunResult, run_with_progress};
use crate::sanitizer::{Finding, Severity};
use crate::scenario::Scenario;

/// How to check a program (the `dmabuf check` flags).
#[derive(Clone, Debug)]
pub struct CheckConfig {
    /// The chooser: `adversarial`, `seeded:N`, `lru`, `never`.
    pub chooser: String,
    /// A platform (preset name, TOML or DTB path) overriding the scenario's.
    pub platform: Option<String>,
    /// One attach policy; `None`: upstream's (accept, and report what a rule refuses).
    pub attach: Option<AttachPolicy>,
    /// One maintenance implementation; `None`: both, each finding classified.
    pub maintenance: Option<MaintenancePolicy>,
    /// The most memory the process may hold (see [`RunConfig::max_memory`]).
    pub max_memory: Option<u64>,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig { chooser: "adversarial".into(), platform: None, attach: None, maintenance: None, max_memory: None }
    }
}

impl CheckConfig {
    fn run(&self, maintenance: MaintenancePolicy) -> RunConfig {
        RunConfig {
            chooser: self.chooser.clone(),
            attach: self.attach.unwrap_or(AttachPolicy::Linux),
            maintenance,
            platform: self.platform.clone(),
            max_memory: self.max_memory,
        }
    }

    /// The implementations a check runs, as the JSON names them: `both`, `linux`,
    /// `minimal` or `vendor`.
    pub fn implementation(&self) -> &'static str {
        match self.maintenance {
            None => "both",
            Some(MaintenancePolicy::Linux) => "linux",
            Some(MaintenancePolicy::Minimal) => "minimal",
            Some(MaintenancePolicy::Vendor) => "vendor",
        }
    }
}

/// A checked program.
#[derive(Clone, Debug)]
pub struct Checked {
    /// The findings of every run, classified, by line; the stats of the upstream run
    /// (or of the one forced).
    pub result: RunResult,
    /// The minimal implementation's stats, when both ran.
    pub minimal_stats: Option<Stats>,
}

impl Checked {
    /// Whether some finding holds for upstream Linux.
    pub fn definite(&self) -> bool {
        self.result.findings.iter().any(|f| f.severity == Severity::Definite)
    }

    /// Whether some finding holds only for the minimal implementation.
    pub fn latent(&self) -> bool {
        self.result.findings.iter().any(|f| f.severity == Severity::Latent)
    }
}

/// What identifies a finding across runs: its kind, buffer and the lines involved.
fn key(f: &Finding) -> (crate::sanitizer::FindingKind, String, u32, Vec<u32>) {
    let mut lines: Vec<u32> = f.steps.iter().map(|s| s.line).collect();
    lines.sort_unstable();
    lines.dedup();
    (f.kind, f.buffer.clone(), f.line, lines)
}

/// Checks a program: under both implementations by default, classifying each finding;
/// under the forced one otherwise. `progress` gets the steps done so far, out of
/// [`crate::runner::total_steps`] times the number of runs.
pub fn check(
    scenario: &Scenario,
    file: &Path,
    src: &str,
    cfg: &CheckConfig,
    progress: &mut dyn FnMut(u64),
) -> Result<Checked, RunError> {
    if let Some(m) = cfg.maintenance {
        let mut result = run_with_progress(scenario, file, src, &cfg.run(m), progress)?;
        result.findings = group(std::mem::take(&mut result.findings));
        return Ok(Checked { result, minimal_stats: None });
    }
    let mut upstream = run_with_progress(scenario, file, src, &cfg.run(MaintenancePolicy::Linux), progress)?;
    let done = upstream.steps;
    let minimal =
        run_with_progress(scenario, file, src, &cfg.run(MaintenancePolicy::Minimal), &mut |n| progress(done + n))?;
    let seen: std::collections::HashSet<_> = upstream.findings.iter().map(key).collect();
    for mut f in minimal.findings {
        if !seen.contains(&key(&f)) {
            f.severity = Severity::Latent;
            upstream.findings.push(f);
        }
    }
    upstream.findings = group(std::mem::take(&mut upstream.findings));
    Ok(Checked { result: upstream, minimal_stats: Some(minimal.stats) })
}

/// Puts each finding that follows from an earlier one under it: one bug, one finding,
/// with its consequences listed. A stale read or lost write of bytes a misused access,
/// an unsafe attach, a race or another stale read involves follows from that finding; a
/// failed `expect` follows from any finding on its buffer, which explains it.
pub fn group(mut findings: Vec<Finding>) -> Vec<Finding> {
    use crate::sanitizer::FindingKind as K;
    // Causes first: on one line, a misuse or a refusal comes before what it leads to.
    let effect = |k: K| matches!(k, K::StaleRead | K::LostWrite | K::ExpectFailed);
    findings.sort_by_key(|f| (f.line, effect(f.kind)));
    let mut out: Vec<Finding> = Vec::new();
    for f in findings {
        let lines: Vec<u32> = f.steps.iter().map(|s| s.line).chain([f.line]).collect();
        let root = out.iter_mut().find(|r| {
            r.buffer == f.buffer
                && match f.kind {
                    K::StaleRead | K::LostWrite => {
                        matches!(r.kind, K::Misuse | K::AttachUnsafe | K::Race | K::StaleRead | K::LostWrite)
                            // A read outside a bracket is the cause of its own stale bytes.
                            && (r.line != f.line || r.kind == K::Misuse)
                            && lines.contains(&r.line)
                    }
                    K::ExpectFailed => r.kind != K::ExpectFailed,
                    _ => false,
                }
        });
        match root {
            Some(r) => {
                if f.severity == Severity::Definite {
                    r.severity = Severity::Definite;
                }
                r.consequences.push(f);
            }
            None => out.push(f),
        }
    }
    out
}
