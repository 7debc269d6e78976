//! Cache maintenance: clean, invalidate and clean+invalidate of the CPU cache by physical
//! range, and flush and invalidate of a device's private cache.

use super::error::SimError;
use super::simulator::Sim;
use crate::addr::{PAGE_SIZE, PhysRange};
use crate::event::Event;
use crate::hw::Sel;
use crate::stats::cycles;
use crate::vocab::{Agent, Cause, DeviceId, MaintOp, OpInfo, OpKind};

impl Sim {
    /// Writes the CPU's dirty lines in `range` back to memory; lines stay valid.
    pub fn cache_clean(&mut self, range: PhysRange) -> Result<(), SimError> {
        self.cpu_maintenance(MaintOp::Clean, range)
    }

    /// Drops the CPU's lines in `range` without writing them back: dirty data is lost.
    pub fn cache_invalidate(&mut self, range: PhysRange) -> Result<(), SimError> {
        self.cpu_maintenance(MaintOp::Invalidate, range)
    }

    /// Cleans, then drops, the CPU's lines in `range`.
    pub fn cache_clean_invalidate(&mut self, range: PhysRange) -> Result<(), SimError> {
        self.cpu_maintenance(MaintOp::CleanInvalidate, range)
    }

    fn cpu_maintenance(&mut self, op: MaintOp, range: PhysRange) -> Result<(), SimError> {
        self.check_in_regions(range)?;
        if range.is_empty() {
            return Ok(());
        }
        let r = range.align_out(self.hw.line);
        let effective = self.maintain(Sel::Cpu, op, r);
        // Maintenance to the point of coherency reaches a system cache before it.
        self.slc_maintain(op != MaintOp::Clean, r);
        let lines = r.len / self.hw.line;
        let c = &self.hw.platform.costs;
        let (per_line, count) = match op {
            MaintOp::Clean => (c.clean_line, &mut self.stats.clean),
            MaintOp::Invalidate => (c.invalidate_line, &mut self.stats.invalidate),
            _ => (c.clean_invalidate_line, &mut self.stats.clean_invalidate),
        };
        count.add(lines, r.len, effective, cycles(c.maintenance_op, per_line, lines));
        self.emit(Event::Maintenance { op, agent: Agent::Cpu, range: r });
        let writes_memory = op != MaintOp::Invalidate;
        self.after_op(OpInfo {
            kind: OpKind::Maintenance(op),
            agent: Agent::Cpu,
            attr: None,
            ranges: vec![r],
            writes_memory,
        });
        Ok(())
    }

    /// Applies a maintenance operation to one cache over line-aligned `r`; returns the
    /// lines it changed.
    fn maintain(&mut self, s: Sel, op: MaintOp, r: PhysRange) -> u64 {
        let first = r.start.raw() / PAGE_SIZE;
        let last = (r.end().raw() - 1) / PAGE_SIZE;
        let pages = self.hw.cache_mut(s).pages_in(first, last);
        let mut effective = 0;
        for pfn in pages {
            let lo = (pfn * PAGE_SIZE).max(r.start.raw());
            let hi = ((pfn + 1) * PAGE_SIZE).min(r.end().raw());
            let (mask, _) = self.hw.chunk_masks((lo % PAGE_SIZE) as usize, (hi - lo) as usize);
            match op {
                MaintOp::Clean | MaintOp::DeviceFlush => effective += self.write_back(s, pfn, mask, Cause::Maintenance),
                MaintOp::Invalidate | MaintOp::DeviceInvalidate => {
                    let (dropped, lost) = self.discard(s, pfn, mask, Cause::Maintenance);
                    effective += dropped;
                    self.stats.hw.dirty_lines_discarded += lost;
                }
                MaintOp::CleanInvalidate => {
                    let wb = self.write_back(s, pfn, mask, Cause::Maintenance);
                    let (dropped, _) = self.discard(s, pfn, mask, Cause::Maintenance);
                    effective += wb.max(dropped);
                }
            }
        }
        effective
    }

    /// Writes a device's dirty private-cache lines in `range` back to memory. A device
    /// without a cache has nothing to flush.
    pub fn device_cache_flush(&mut self, dev: DeviceId, range: PhysRange) -> Result<(), SimError> {
        self.device_maintenance(dev, MaintOp::DeviceFlush, range)
    }

    /// Drops a device's private-cache lines in `range` (dirty data in them is lost).
    pub fn device_cache_invalidate(&mut self, dev: DeviceId, range: PhysRange) -> Result<(), SimError> {
        self.device_maintenance(dev, MaintOp::DeviceInvalidate, range)
    }

    fn device_maintenance(&mut self, dev: DeviceId, op: MaintOp, range: PhysRange) -> Result<(), SimError> {
        let di = self.check_device(dev)?;
        self.check_in_regions(range)?;
        if self.hw.dev_caches[di].is_none() || range.is_empty() {
            return Ok(());
        }
        let r = range.align_out(self.hw.line);
        let effective = self.maintain(Sel::Dev(di), op, r);
        let lines = r.len / self.hw.line;
        let c = &self.hw.platform.costs;
        let (per_line, count) = match op {
            MaintOp::DeviceFlush => (c.device_flush_line, &mut self.stats.device_flush),
            _ => (c.device_invalidate_line, &mut self.stats.device_invalidate),
        };
        count.add(lines, r.len, effective, cycles(c.device_op, per_line, lines));
        self.emit(Event::Maintenance { op, agent: Agent::Device(dev), range: r });
        let writes_memory = op == MaintOp::DeviceFlush;
        self.after_op(OpInfo {
            kind: OpKind::Maintenance(op),
            agent: Agent::Device(dev),
            attr: None,
            ranges: vec![r],
            writes_memory,
        });
        Ok(())
    }
}
