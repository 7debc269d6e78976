//! Counters and cycle costs of everything the simulated hardware did.
//!
//! Cycles and bytes saturate at `u64::MAX` instead of wrapping: a platform built in code
//! skips [`Platform::validate`](crate::Platform::validate)'s bound on costs, and a counter
//! stuck at the top says "more than can be counted" where a wrapped one would report a
//! small, wrong number.

use serde::Serialize;

/// One kind of operation: how often, over how much, at what cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OpCount {
    /// Operations issued: calls of one maintenance operation, or bounce copies.
    pub ops: u64,
    /// Lines the calls covered (what the hardware walks and what it costs).
    pub lines: u64,
    /// Bytes the calls covered (`lines` times the line size, for maintenance).
    pub bytes: u64,
    /// Lines on which the operation changed something (a dirty line written back, a line
    /// dropped): the part of the work that was not wasted.
    pub effective_lines: u64,
    /// Cycles, from the platform's cost table.
    pub cycles: u64,
}

impl OpCount {
    pub(crate) fn add(&mut self, lines: u64, bytes: u64, effective: u64, cycles: u64) {
        self.ops = self.ops.saturating_add(1);
        self.lines = self.lines.saturating_add(lines);
        self.bytes = self.bytes.saturating_add(bytes);
        self.effective_lines = self.effective_lines.saturating_add(effective);
        self.cycles = self.cycles.saturating_add(cycles);
    }
}

/// The cycles of an operation that costs `fixed` plus `per_line` for each of `lines`
/// lines, saturating.
pub(crate) fn cycles(fixed: u64, per_line: u64, lines: u64) -> u64 {
    fixed.saturating_add(per_line.saturating_mul(lines))
}

/// What the hardware did on its own (not asked for by the program).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HwCounts {
    /// Lines filled on demand by CPU or device-cache misses.
    pub demand_fills: u64,
    /// Lines speculatively prefetched.
    pub prefetches: u64,
    /// Dirty lines written back by a freedom (eviction at any time).
    pub freedom_write_backs: u64,
    /// Clean lines dropped by a freedom.
    pub freedom_drops: u64,
    /// Lines replaced because a set was full.
    pub capacity_evictions: u64,
    /// CPU lines a coherent device's access snooped.
    pub snoops: u64,
    /// Dirty lines destroyed by an invalidate before reaching memory.
    pub dirty_lines_discarded: u64,
    /// Write-combining buffer lines drained to memory.
    pub wc_drains: u64,
}

/// All counters of a simulation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Cleans of the CPU cache by range (the program's, and the DMA layer's syncs).
    pub clean: OpCount,
    /// Invalidates of the CPU cache by range.
    pub invalidate: OpCount,
    /// Clean-and-invalidates of the CPU cache by range.
    pub clean_invalidate: OpCount,
    /// Write-backs of a device's private cache by range.
    pub device_flush: OpCount,
    /// Invalidates of a device's private cache by range.
    pub device_invalidate: OpCount,
    /// swiotlb's copies between the original pages and bounce slots.
    pub bounce: OpCount,
    /// Bytes the CPU loaded through its mappings, whatever their attribute.
    pub cpu_read_bytes: u64,
    /// Bytes the CPU stored through its mappings, whatever their attribute.
    pub cpu_write_bytes: u64,
    /// Bytes devices read by DMA.
    pub device_read_bytes: u64,
    /// Bytes devices wrote by DMA.
    pub device_write_bytes: u64,
    /// Cycles spent in CPU and device accesses (hits, misses, uncached and DMA lines).
    pub access_cycles: u64,
    /// What the hardware did on its own: fills, prefetches, evictions, snoops, drains.
    pub hw: HwCounts,
}

impl Stats {
    /// The maintenance counters, bounce copies included.
    fn maintenance(&self) -> [&OpCount; 6] {
        [
            &self.clean,
            &self.invalidate,
            &self.clean_invalidate,
            &self.device_flush,
            &self.device_invalidate,
            &self.bounce,
        ]
    }

    /// Cycles spent on maintenance and bounce copies: the price of coherency.
    pub fn maintenance_cycles(&self) -> u64 {
        self.maintenance().iter().fold(0, |n, c| n.saturating_add(c.cycles))
    }

    /// Maintenance calls of every kind, bounce copies included.
    pub fn maintenance_ops(&self) -> u64 {
        self.maintenance().iter().fold(0, |n, c| n.saturating_add(c.ops))
    }

    /// Bytes covered by maintenance of every kind, bounce copies included.
    pub fn maintenance_bytes(&self) -> u64 {
        self.maintenance().iter().fold(0, |n, c| n.saturating_add(c.bytes))
    }

    /// Everything: accesses and maintenance.
    pub fn total_cycles(&self) -> u64 {
        self.access_cycles.saturating_add(self.maintenance_cycles())
    }

    /// Adds the cycles of an access.
    pub(crate) fn charge(&mut self, cycles: u64) {
        self.access_cycles = self.access_cycles.saturating_add(cycles);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: counters and their sums wrapped past 2^64 (a cost table of 2^63 - 1
    /// cycles reported `total_cycles` 18446744073709551584).
    #[test]
    fn counters_and_their_sums_saturate_at_the_top() {
        let mut s = Stats { access_cycles: u64::MAX - 1, ..Stats::default() };
        s.clean.add(1, 64, 1, u64::MAX - 3);
        s.clean.add(1, 64, 1, 5);
        s.bounce.add(1, u64::MAX, 1, 7);
        s.bounce.add(1, 1, 1, 7);
        assert_eq!((s.clean.ops, s.clean.cycles, s.bounce.bytes), (2, u64::MAX, u64::MAX));
        assert_eq!(s.maintenance_cycles(), u64::MAX);
        assert_eq!(s.maintenance_bytes(), u64::MAX);
        assert_eq!(s.total_cycles(), u64::MAX);
        s.charge(10);
        assert_eq!(s.access_cycles, u64::MAX);
        assert_eq!(cycles(u64::MAX, 1, 1), u64::MAX);
        assert_eq!(cycles(200, 40, 1 << 60), u64::MAX);
        assert_eq!(cycles(200, 40, 64), 200 + 40 * 64);
    }
}
