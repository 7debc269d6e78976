//! What a scheme costs per frame, measured on the simulator with the platform's cost
//! table, and the explorer's proof of its protocol.
//!
//! The cost of a frame is the cycles of a run of three frames less those of a run of two
//! (with the `never` chooser, so the hardware takes no freedom): what is paid once
//! (allocation, the first clean of the kernel's zeroing, kept mappings) cancels out, and
//! what remains is the steady state, accesses, maintenance and bounce copies together.
//! It is measured under upstream Linux's maintenance, which the board runs today, and
//! under the minimal one, which is what the DMA API requires.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dmabuf::{AttachPolicy, MaintenancePolicy};
use dmabuf_sim::{Platform, Stats};

use super::protocol::{self, FRAMES};
use super::{Party, PlanError, Request, Scheme, Verdict};
use crate::explore::{ExploreConfig, Verdict as ExploreVerdict, explore};
use crate::runner::{RunConfig, run};
use crate::scenario::parse;

/// Cycles of one frame in the steady state under one maintenance policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameCost {
    /// Every cycle: the parties' accesses, maintenance and bounce copies.
    pub cycles: u64,
    /// Of which cache maintenance and bounce copies.
    pub maintenance: u64,
    /// Bytes cleaned, invalidated or flushed.
    pub maintenance_bytes: u64,
    /// Bytes copied to or from bounce slots.
    pub bounce_bytes: u64,
}

/// A scheme's cost per frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cost {
    /// Under upstream Linux's maintenance.
    pub linux: FrameCost,
    /// Under the minimal conforming maintenance.
    pub minimal: FrameCost,
}

/// The explorer's verdict on a protocol under one maintenance policy.
#[derive(Clone, Debug)]
pub struct Proof {
    /// `linux` or `minimal`.
    pub maintenance: &'static str,
    /// Proved, counterexample or inconclusive.
    pub verdict: ExploreVerdict,
    /// Distinct states visited.
    pub states: u64,
    /// Complete paths run.
    pub paths: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// For a counterexample, its first finding; for an inconclusive search, the bound.
    pub counterexample: Option<String>,
}

/// Runs and explores protocols on one platform, which it writes once for the runner (a
/// platform is read by name or path).
pub(super) struct Runner {
    _dir: tempfile::TempDir,
    toml: PathBuf,
}

const POLICIES: [(MaintenancePolicy, &str); 2] =
    [(MaintenancePolicy::Linux, "linux"), (MaintenancePolicy::Minimal, "minimal")];

/// The runner's name of the generated scenario (nothing is read at that path).
const FILE: &str = "plan.dmabuf";

fn frame_cost(more: &Stats, less: &Stats) -> FrameCost {
    FrameCost {
        cycles: more.total_cycles().saturating_sub(less.total_cycles()),
        maintenance: more.maintenance_cycles().saturating_sub(less.maintenance_cycles()),
        maintenance_bytes: more.maintenance_bytes().saturating_sub(less.maintenance_bytes()),
        bounce_bytes: more.bounce.bytes.saturating_sub(less.bounce.bytes),
    }
}

impl Runner {
    pub(super) fn new(p: &Platform) -> Result<Runner, PlanError> {
        let dir = tempfile::Builder::new().prefix("dmabuf-plan").tempdir().map_err(|e| PlanError::Io(e.to_string()))?;
        let toml = dir.path().join("platform.toml");
        std::fs::write(&toml, p.to_toml()).map_err(|e| PlanError::Io(format!("{}: {e}", toml.display())))?;
        Ok(Runner { _dir: dir, toml })
    }

    fn config(&self, maintenance: MaintenancePolicy) -> RunConfig {
        RunConfig {
            chooser: "never".into(),
            attach: AttachPolicy::Strict,
            maintenance,
            platform: Some(self.toml.display().to_string()),
            max_memory: None,
        }
    }

    /// Runs a body: its statistics, or the first finding.
    fn run(&self, body: &str, maintenance: MaintenancePolicy) -> Result<Result<Stats, String>, PlanError> {
        let src = protocol::with_platform(body, "platform plan");
        let s = parse(&src, FILE).map_err(|e| PlanError::Protocol(format!("{e}\n{src}")))?;
        let r = run(&s, Path::new(FILE), &src, &self.config(maintenance))
            .map_err(|e| PlanError::Protocol(format!("{e}\n{src}")))?;
        Ok(match r.findings.first() {
            Some(f) => Err(format!("{} at line {}: {}", f.kind.name(), f.line, f.message)),
            None => Ok(r.stats),
        })
    }

    /// Gives a scheme every party attaches to its protocol and its cost per frame, or says
    /// why its protocol does not run clean.
    pub(super) fn judge(&self, s: &mut Scheme, p: &Platform, parties: &[Party], size: u64) -> Result<(), PlanError> {
        if s.verdict() == Verdict::Refused {
            return Ok(());
        }
        let bounced = s.bounced();
        let body = protocol::body(p, parties, &s.kind, &bounced, size);
        let mut costs = Vec::new();
        for (policy, name) in POLICIES {
            let more = protocol::body_frames(p, parties, &s.kind, &bounced, size, FRAMES + 1);
            let (a, b) = (self.run(&more, policy)?, self.run(&body, policy)?);
            match (a, b) {
                (Ok(more), Ok(less)) => costs.push(frame_cost(&more, &less)),
                (Err(f), _) | (_, Err(f)) => {
                    s.unusable = Some(format!("a run of its protocol under {name} maintenance: {f}"));
                    return Ok(());
                }
            }
        }
        s.cost = Some(Cost { linux: costs[0], minimal: costs[1] });
        s.protocol = Some(body);
        Ok(())
    }

    /// Explores a body under both maintenance policies.
    pub(super) fn prove(&self, body: &str, req: &Request) -> Result<Vec<Proof>, PlanError> {
        let src = protocol::with_platform(body, "platform plan");
        let s = parse(&src, FILE).map_err(|e| PlanError::Protocol(format!("{e}\n{src}")))?;
        let mut out = Vec::new();
        for (policy, name) in POLICIES {
            let cfg = ExploreConfig {
                run: self.config(policy),
                max_states: req.max_states,
                timeout: req.timeout,
                ..ExploreConfig::default()
            };
            let e = explore(&s, Path::new(FILE), &src, &cfg, &mut |_, _, _| {})
                .map_err(|e| PlanError::Protocol(format!("{e}\n{src}")))?;
            let counterexample = match (&e.counterexample, &e.bound) {
                (Some(c), _) => c.result.findings.first().map(|f| {
                    let lines: Vec<&str> = src.lines().collect();
                    let at = lines.get(f.line.saturating_sub(1) as usize).map_or("", |l| l.trim());
                    format!("{} at `{at}`: {}", f.kind.name(), f.message)
                }),
                (None, Some(b)) => Some(b.clone()),
                (None, None) => None,
            };
            let stop = e.verdict == ExploreVerdict::Counterexample;
            out.push(Proof {
                maintenance: name,
                verdict: e.verdict,
                states: e.states,
                paths: e.paths,
                elapsed: e.elapsed,
                counterexample,
            });
            if stop {
                break;
            }
        }
        Ok(out)
    }
}
