//! Counters and cycle costs of everything the simulated hardware did.

use serde::Serialize;

/// One kind of operation: how often, over how much, at what cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OpCount {
    /// Calls.
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
        self.ops += 1;
        self.lines += lines;
        self.bytes += bytes;
        self.effective_lines += effective;
        self.cycles += cycles;
    }
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
    /// CPU cache clean.
    pub clean: OpCount,
    /// CPU cache invalidate.
    pub invalidate: OpCount,
    /// CPU cache clean + invalidate.
    pub clean_invalidate: OpCount,
    /// Device cache flush (write-back).
    pub device_flush: OpCount,
    /// Device cache invalidate.
    pub device_invalidate: OpCount,
    /// Copies to and from the bounce pool.
    pub bounce: OpCount,
    /// Bytes read by the CPU.
    pub cpu_read_bytes: u64,
    /// Bytes written by the CPU.
    pub cpu_write_bytes: u64,
    /// Bytes read by devices.
    pub device_read_bytes: u64,
    /// Bytes written by devices.
    pub device_write_bytes: u64,
    /// Cycles spent in CPU and device accesses.
    pub access_cycles: u64,
    /// The hardware's own moves.
    pub hw: HwCounts,
}

impl Stats {
    /// Cycles spent on maintenance and bounce copies: the price of coherency.
    pub fn maintenance_cycles(&self) -> u64 {
        self.clean.cycles
            + self.invalidate.cycles
            + self.clean_invalidate.cycles
            + self.device_flush.cycles
            + self.device_invalidate.cycles
            + self.bounce.cycles
    }

    /// Maintenance calls of every kind, bounce copies included.
    pub fn maintenance_ops(&self) -> u64 {
        self.clean.ops
            + self.invalidate.ops
            + self.clean_invalidate.ops
            + self.device_flush.ops
            + self.device_invalidate.ops
            + self.bounce.ops
    }

    /// Bytes covered by maintenance of every kind, bounce copies included.
    pub fn maintenance_bytes(&self) -> u64 {
        self.clean.bytes
            + self.invalidate.bytes
            + self.clean_invalidate.bytes
            + self.device_flush.bytes
            + self.device_invalidate.bytes
            + self.bounce.bytes
    }

    /// Everything: accesses and maintenance.
    pub fn total_cycles(&self) -> u64 {
        self.access_cycles + self.maintenance_cycles()
    }
}
