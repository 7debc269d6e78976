//! The hardware's freedoms, and who decides when to take them.
//!
//! Real caches write back dirty lines when they please, drop clean lines when they please,
//! and prefetch any line of a cacheable mapping when they please. A correct program must
//! be correct whatever they do. The simulator makes each of these decisions an explicit
//! [`Freedom`] and asks a [`Chooser`] after every operation which ones to take, so a run is
//! deterministic given its chooser, and an explorer can enumerate every choice (the
//! candidates at a point are listed by [`HwView::candidates`]).
//!
//! | chooser | takes | capacity (sets x ways) |
//! |---|---|---|
//! | [`Adversarial`] | the freedom that exposes a bug | unbounded cache |
//! | [`Seeded`] | random freedoms on the lines just touched | modelled, LRU |
//! | [`Lru`] | none | modelled, LRU |
//! | [`Never`] | none | unbounded cache |

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::addr::PhysRange;
use crate::hw::HwView;
use crate::vocab::{Freedom, MaintOp, OpInfo, OpKind};

/// Decides which freedoms the hardware takes after each operation.
pub trait Chooser {
    /// The chooser's name, as given on a command line (`adversarial`, `seeded:7`).
    fn name(&self) -> String;

    /// Whether the platform's cache capacity is modelled (a full set evicts its
    /// least-recently-used line). When false, caches are unbounded.
    fn bounded(&self) -> bool;

    /// Pushes the freedoms to take now, in order, onto `out`.
    fn choose(&mut self, op: &OpInfo, hw: &HwView<'_>, out: &mut Vec<Freedom>);
}

/// Takes the freedom that exposes a bug:
/// - right after CPU cache maintenance on a range, prefetches every absent line of it (so
///   data that is about to change in memory sits stale in the cache: the reason a
///   FROM_DEVICE buffer needs an invalidate after the transfer as well as before);
/// - right after anything wrote memory, writes back every dirty line of any cache over the
///   same bytes (an old dirty line destroys newer data: a lost write);
/// - never drops a clean line and never writes back otherwise (stale lines stay, dirty
///   data stays unseen by devices).
#[derive(Clone, Copy, Debug, Default)]
pub struct Adversarial;

impl Chooser for Adversarial {
    fn name(&self) -> String {
        "adversarial".into()
    }

    fn bounded(&self) -> bool {
        false
    }

    fn choose(&mut self, op: &OpInfo, hw: &HwView<'_>, out: &mut Vec<Freedom>) {
        if matches!(op.kind, OpKind::Maintenance(MaintOp::Clean | MaintOp::Invalidate | MaintOp::CleanInvalidate)) {
            for r in &op.ranges {
                hw.prefetch_candidates(r, out);
            }
        }
        if op.writes_memory {
            for r in &op.ranges {
                hw.dirty_lines(r, |cache, line| out.push(Freedom::WriteBack { cache, line }));
            }
        }
    }
}

/// Takes random freedoms, from a seed: after each operation, up to three freedoms on
/// random lines among those the operation touched. Cache capacity is modelled.
#[derive(Clone, Debug)]
pub struct Seeded {
    seed: u64,
    rng: ChaCha8Rng,
    scratch: Vec<Freedom>,
}

impl Seeded {
    /// A chooser whose every decision follows from `seed`.
    pub fn new(seed: u64) -> Self {
        Seeded { seed, rng: ChaCha8Rng::seed_from_u64(seed), scratch: Vec::new() }
    }
}

impl Chooser for Seeded {
    fn name(&self) -> String {
        format!("seeded:{}", self.seed)
    }

    fn bounded(&self) -> bool {
        true
    }

    fn choose(&mut self, op: &OpInfo, hw: &HwView<'_>, out: &mut Vec<Freedom>) {
        let ranges: Vec<PhysRange> = op.ranges.iter().filter(|r| !r.is_empty()).copied().collect();
        if ranges.is_empty() {
            return;
        }
        let line = hw.line_size();
        let n = self.rng.random_range(0..4u32);
        for _ in 0..n {
            let r = ranges[self.rng.random_range(0..ranges.len())].align_out(line);
            let idx = self.rng.random_range(0..r.len / line);
            let l = PhysRange { start: r.start.add(idx * line), len: line };
            self.scratch.clear();
            hw.candidates(&l, &mut self.scratch);
            if !self.scratch.is_empty() {
                out.push(self.scratch[self.rng.random_range(0..self.scratch.len())]);
            }
        }
    }
}

/// Takes no freedom; lines leave the cache only when capacity forces them out (LRU).
#[derive(Clone, Copy, Debug, Default)]
pub struct Lru;

impl Chooser for Lru {
    fn name(&self) -> String {
        "lru".into()
    }

    fn bounded(&self) -> bool {
        true
    }

    fn choose(&mut self, _: &OpInfo, _: &HwView<'_>, _: &mut Vec<Freedom>) {}
}

/// Takes no freedom at all: an unbounded cache that changes only when the program acts.
#[derive(Clone, Copy, Debug, Default)]
pub struct Never;

impl Chooser for Never {
    fn name(&self) -> String {
        "never".into()
    }

    fn bounded(&self) -> bool {
        false
    }

    fn choose(&mut self, _: &OpInfo, _: &HwView<'_>, _: &mut Vec<Freedom>) {}
}

/// Why a chooser name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown chooser `{0}`: use adversarial, seeded:N (N a number), lru or never")]
pub struct UnknownChooser(pub String);

/// Builds a chooser from its command-line name: `adversarial`, `seeded:N`, `lru`, `never`.
pub fn chooser_from_name(name: &str) -> Result<Box<dyn Chooser>, UnknownChooser> {
    match name {
        "adversarial" => Ok(Box::new(Adversarial)),
        "lru" => Ok(Box::new(Lru)),
        "never" => Ok(Box::new(Never)),
        _ => match name.strip_prefix("seeded:").map(str::parse::<u64>) {
            Some(Ok(seed)) => Ok(Box::new(Seeded::new(seed))),
            _ => Err(UnknownChooser(name.to_string())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for n in ["adversarial", "seeded:42", "lru", "never"] {
            assert_eq!(chooser_from_name(n).unwrap().name(), n);
        }
        assert!(chooser_from_name("seeded:x").is_err());
        assert!(chooser_from_name("random").is_err());
    }
}
