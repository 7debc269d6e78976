//! The hardware's freedoms: after every operation the chooser picks which to take (write
//! back a dirty line, drop a clean one, prefetch a line the CPU may fill).

use super::simulator::Sim;
use crate::addr::PhysAddr;
use crate::hw::{HwView, Sel};
use crate::vocab::{Cause, Freedom, OpInfo};

impl Sim {
    /// Whether the CPU may speculatively fill the line at `addr`: it lies in memory the
    /// kernel's linear map covers, or a live cacheable mapping covers its page.
    pub fn prefetchable(&self, addr: PhysAddr) -> bool {
        self.hw.prefetchable(addr)
    }

    /// Takes one freedom now. Returns false (and does nothing) when it does not apply: a
    /// write-back of a line that is not dirty, a drop of a line that is not clean, a
    /// prefetch of a line that is present or not prefetchable.
    pub fn take_freedom(&mut self, f: Freedom) -> bool {
        match f {
            Freedom::WriteBack { cache, line } => {
                let Some(s) = self.hw.sel(cache) else { return false };
                let (pfn, l) = self.hw.line_pos(line.raw());
                let n = self.write_back(s, pfn, 1u128 << l, Cause::Freedom);
                self.stats.hw.freedom_write_backs += n;
                n > 0
            }
            Freedom::Drop { cache, line } => {
                let Some(s) = self.hw.sel(cache) else { return false };
                let (pfn, l) = self.hw.line_pos(line.raw());
                let (_, dirty) = self.hw.cache_mut(s).state(pfn);
                if dirty >> l & 1 == 1 {
                    return false;
                }
                let (n, _) = self.discard(s, pfn, 1u128 << l, Cause::Freedom);
                self.stats.hw.freedom_drops += n;
                n > 0
            }
            Freedom::Prefetch { line } => {
                let (pfn, l) = self.hw.line_pos(line.raw());
                let (valid, _) = self.hw.cpu.state(pfn);
                if valid >> l & 1 == 1 || !self.prefetchable(line) || self.hw.platform.region_of(line).is_none() {
                    return false;
                }
                let bit = 1u128 << l;
                if self.hw.cpu.bounded()
                    && let Some(victim) = self.hw.cpu.insert_tag(pfn * self.hw.lines_per_page as u64 + l as u64)
                {
                    self.evict(Sel::Cpu, victim);
                }
                self.fill_from_memory(Sel::Cpu, pfn, bit, Cause::Freedom);
                true
            }
        }
    }

    pub(super) fn after_op(&mut self, info: OpInfo) {
        if let Some(o) = &mut self.observer {
            o.operation(&info);
        }
        let Some(mut ch) = self.chooser.take() else { return };
        let mut out = std::mem::take(&mut self.freedoms);
        ch.choose(&info, &HwView::new(&self.hw), &mut out);
        self.chooser = Some(ch);
        let mut i = 0;
        while i < out.len() {
            i += match out[i] {
                // Prefetches of the lines of one page fill together: the same fills as one
                // at a time (an unbounded cache evicts nothing), in one pass over the page.
                Freedom::Prefetch { .. } if !self.hw.cpu.bounded() => self.prefetch_page(&out[i..]),
                f => {
                    self.take_freedom(f);
                    1
                }
            };
        }
        out.clear();
        self.freedoms = out;
    }

    /// Takes the leading prefetches of `fs` that fall in one page, with one fill; returns
    /// how many it consumed (at least one).
    fn prefetch_page(&mut self, fs: &[Freedom]) -> usize {
        let Some(Freedom::Prefetch { line }) = fs.first() else { return 1 };
        let (pfn, _) = self.hw.line_pos(line.raw());
        let (valid, _) = self.hw.cpu.state(pfn);
        let mut mask = 0u128;
        let mut n = 0;
        for f in fs {
            let Freedom::Prefetch { line } = *f else { break };
            let (p, l) = self.hw.line_pos(line.raw());
            if p != pfn {
                break;
            }
            n += 1;
            if valid >> l & 1 == 0 && self.prefetchable(line) && self.hw.platform.region_of(line).is_some() {
                mask |= 1u128 << l;
            }
        }
        self.fill_from_memory(Sel::Cpu, pfn, mask, Cause::Freedom);
        n.max(1)
    }
}
