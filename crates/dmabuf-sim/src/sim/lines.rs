//! The hardware's moves on lines: write-back, discard, fill and eviction, the steps every
//! access, maintenance operation and freedom is made of.

use super::simulator::Sim;
use crate::addr::{PAGE_SIZE, PhysAddr, PhysRange};
use crate::cache::{line_mask, runs};
use crate::event::Event;
use crate::hw::Sel;
use crate::store::{ProvRun, WriteId, expand, push_run};
use crate::vocab::Cause;

impl Sim {
    /// Writes the lines `mask` of `pfn` back from a cache to memory; they stay valid.
    pub(super) fn write_back(&mut self, s: Sel, pfn: u64, mask: u128, cause: Cause) -> u64 {
        let line = self.hw.line as usize;
        let observed = self.observed();
        let via = self.via_slc(s);
        let mut events: Vec<(PhysRange, Vec<ProvRun>, Vec<ProvRun>)> = Vec::new();
        let cache = match s {
            Sel::Cpu => &mut self.hw.cpu,
            Sel::Dev(i) => self.hw.dev_caches[i].as_mut().expect("selected device has a cache"),
        };
        let Some(cp) = cache.page_mut(pfn) else { return 0 };
        let mask = mask & cp.dirty;
        if mask == 0 {
            return 0;
        }
        let count = if via {
            // The agent goes through the system cache: the lines land there, dirty.
            if observed {
                for (l0, n) in runs(mask) {
                    let (o, len) = (l0 as usize * line, n as usize * line);
                    let mut p = Vec::new();
                    cp.prov.runs(o, len, 0, &mut p);
                    let range = PhysRange { start: PhysAddr(pfn * PAGE_SIZE + o as u64), len: len as u64 };
                    events.push((range, p, Vec::new()));
                }
            }
            cp.dirty &= !mask;
            self.slc_take_lines(s, pfn, mask);
            mask.count_ones() as u64
        } else {
            self.write_back_to_memory(s, pfn, mask, &mut events)
        };
        for (range, prov, replaced) in events {
            self.emit(Event::WriteBack { cache: s.id(), range, cause, prov: &prov, replaced: &replaced });
        }
        // A coherent device's cache writes back through the coherent interconnect, which
        // takes the lines away from the CPU like any other coherent write.
        if let Sel::Dev(i) = s
            && self.hw.platform.devices[i].coherent
        {
            for (l0, n) in runs(mask) {
                self.snoop_invalidate(pfn * PAGE_SIZE + l0 as u64 * self.hw.line, n as usize * line);
            }
        }
        count
    }

    /// Copies dirty lines `mask` of `pfn` from a cache to memory and marks them clean,
    /// recording events when observed; returns how many.
    fn write_back_to_memory(
        &mut self,
        s: Sel,
        pfn: u64,
        mask: u128,
        events: &mut Vec<(PhysRange, Vec<ProvRun>, Vec<ProvRun>)>,
    ) -> u64 {
        let line = self.hw.line as usize;
        let observed = self.observed();
        let mut count = 0u64;
        let cache = match s {
            Sel::Cpu => &mut self.hw.cpu,
            Sel::Dev(i) => self.hw.dev_caches[i].as_mut().expect("selected device has a cache"),
        };
        let Some(cp) = cache.page_mut(pfn) else { return 0 };
        let mp = self.hw.mem.page_mut(pfn);
        for (l0, n) in runs(mask) {
            let (o, len) = (l0 as usize * line, n as usize * line);
            let mut replaced = Vec::new();
            if observed {
                mp.prov.runs(o, len, 0, &mut replaced);
            }
            mp.data.copy_from(&cp.data, o, len);
            mp.prov.copy_from(&cp.prov, o, o, len);
            count += n as u64;
            if observed {
                let mut p = Vec::new();
                cp.prov.runs(o, len, 0, &mut p);
                events.push((PhysRange { start: PhysAddr(pfn * PAGE_SIZE + o as u64), len: len as u64 }, p, replaced));
            }
        }
        cp.dirty &= !mask;
        count
    }

    /// Drops the lines `mask` of `pfn` from a cache (dirty data in them is lost).
    /// Returns (lines dropped, dirty lines destroyed).
    pub(super) fn discard(&mut self, s: Sel, pfn: u64, mask: u128, cause: Cause) -> (u64, u64) {
        let line = self.hw.line as usize;
        let lpp = self.hw.lines_per_page;
        let observed = self.observed();
        // What is lost is the dirty bytes memory does not hold as well: a line written back
        // (or copied) earlier and dirtied again with the same write loses nothing.
        let mut lost = Vec::new();
        if observed && let Some(cp) = self.hw.cache(s.id()).and_then(|c| c.page(pfn)) {
            for (l0, n) in runs(mask & cp.valid & cp.dirty) {
                let (o, len) = (l0 as usize * line, n as usize * line);
                let (mut in_cache, mut in_mem) = (Vec::new(), Vec::new());
                cp.prov.runs(o, len, 0, &mut in_cache);
                self.hw.mem.read_prov(pfn * PAGE_SIZE + o as u64, len as u64, 0, &mut in_mem);
                let (c, m) = (expand(&in_cache, len), expand(&in_mem, len));
                for (i, (&c, &m)) in c.iter().zip(&m).enumerate() {
                    if c != m {
                        push_run(&mut lost, (o + i) as u64, 1, c);
                    }
                }
            }
        }
        let cache = self.hw.cache_mut(s);
        let Some(cp) = cache.page_mut(pfn) else { return (0, 0) };
        let mask = mask & cp.valid;
        if mask == 0 {
            return (0, 0);
        }
        let lost_mask = mask & cp.dirty;
        cp.valid &= !mask;
        cp.dirty &= !mask;
        cache.remove_tags(pfn, mask, lpp);
        cache.release_if_empty(pfn);
        if observed {
            let (first, last) = (mask.trailing_zeros() as u64, 127 - mask.leading_zeros() as u64);
            let start = PhysAddr(pfn * PAGE_SIZE + first * line as u64);
            let range = PhysRange { start, len: (last - first + 1) * line as u64 };
            for r in &mut lost {
                r.offset -= first * line as u64;
            }
            self.emit(Event::Discard { cache: s.id(), range, cause, lost: &lost });
        }
        (mask.count_ones() as u64, lost_mask.count_ones() as u64)
    }

    /// Loads the lines `mask` of `pfn` into a cache from memory, overlaying the CPU's
    /// lines when the cache belongs to a coherent device (a snooped fill).
    pub(super) fn fill_from_memory(&mut self, s: Sel, pfn: u64, mask: u128, cause: Cause) {
        if mask == 0 {
            return;
        }
        let line = self.hw.line as usize;
        let observed = self.observed();
        let snoop = matches!(s, Sel::Dev(i) if self.hw.platform.devices[i].coherent);
        let via = self.via_slc(s);
        let (cache, cpu) = match s {
            Sel::Cpu => (&mut self.hw.cpu, None),
            Sel::Dev(i) => (self.hw.dev_caches[i].as_mut().expect("selected device has a cache"), Some(&self.hw.cpu)),
        };
        let mp = self.hw.mem.page(pfn);
        let slc_page = if via { self.hw.slc.as_ref().and_then(|c| c.page(pfn)) } else { None };
        let cpu_page = if snoop { cpu.and_then(|c| c.page(pfn)) } else { None };
        let cp = cache.page_or_insert(pfn);
        let mut events = Vec::new();
        for (l0, n) in runs(mask) {
            let (o, len) = (l0 as usize * line, n as usize * line);
            match mp {
                Some(mp) => {
                    cp.data.copy_from(&mp.data, o, len);
                    if mp.prov.is_tracked() {
                        cp.prov.copy_from(&mp.prov, o, o, len);
                    } else {
                        cp.prov.set(o, len, WriteId::INITIAL);
                    }
                }
                None => {
                    cp.data.fill(o, len, 0);
                    cp.prov.set(o, len, WriteId::INITIAL);
                }
            }
            if let Some(sp) = slc_page {
                for (d0, dn) in runs(sp.valid & line_mask(l0, l0 + n)) {
                    let (d, dl) = (d0 as usize * line, dn as usize * line);
                    cp.data.copy_from(&sp.data, d, dl);
                    cp.prov.copy_from(&sp.prov, d, d, dl);
                }
            }
            if let Some(cpu_page) = cpu_page {
                for (d0, dn) in runs(cpu_page.valid & line_mask(l0, l0 + n)) {
                    let (d, dl) = (d0 as usize * line, dn as usize * line);
                    cp.data.copy_from(&cpu_page.data, d, dl);
                    cp.prov.copy_from(&cpu_page.prov, d, d, dl);
                }
            }
            if observed {
                let mut p = Vec::new();
                cp.prov.runs(o, len, 0, &mut p);
                events.push((PhysRange { start: PhysAddr(pfn * PAGE_SIZE + o as u64), len: len as u64 }, p));
            }
        }
        cp.valid |= mask;
        let n = mask.count_ones() as u64;
        match cause {
            Cause::Freedom => self.stats.hw.prefetches += n,
            _ => self.stats.hw.demand_fills += n,
        }
        for (range, prov) in events {
            self.emit(Event::Fill { cache: s.id(), range, cause, prov: &prov });
        }
    }

    /// Makes lines `mask` of `pfn` present, filling those in `fill` from memory. With a
    /// bounded cache, each new line may push out another (written back if dirty); callers
    /// split accesses so that no line of `mask` can push out another ([`Sim::line_pieces`]).
    /// Returns the number of lines that were missing.
    pub(super) fn make_present(&mut self, s: Sel, pfn: u64, mask: u128, fill: u128) -> u64 {
        let lpp = self.hw.lines_per_page as u64;
        let (valid, _) = self.hw.cache_mut(s).state(pfn);
        let missing = mask & !valid;
        if self.hw.cache_mut(s).bounded() {
            for (l0, n) in runs(mask) {
                for l in l0..l0 + n {
                    let idx = pfn * lpp + l as u64;
                    if missing >> l & 1 == 0 {
                        self.hw.cache_mut(s).touch(idx);
                    } else if let Some(victim) = self.hw.cache_mut(s).insert_tag(idx) {
                        self.evict(s, victim);
                    }
                }
            }
        }
        if missing != 0 {
            self.fill_from_memory(s, pfn, missing & fill, Cause::Demand);
            self.hw.cache_mut(s).page_or_insert(pfn).valid |= missing;
        }
        missing.count_ones() as u64
    }

    /// A full set gives up line `idx`.
    pub(super) fn evict(&mut self, s: Sel, idx: u64) {
        let lpp = self.hw.lines_per_page as u64;
        let (pfn, l) = (idx / lpp, (idx % lpp) as u32);
        let bit = 1u128 << l;
        self.stats.hw.capacity_evictions += 1;
        let (_, dirty) = self.hw.cache_mut(s).state(pfn);
        // The common case, a clean victim with nobody watching, in one lookup; the rest
        // goes through the write-back path that reports and snoops.
        if dirty & bit != 0 || self.observed() || matches!(s, Sel::Dev(_)) {
            self.write_back(s, pfn, bit, Cause::Capacity);
        }
        let cache = self.hw.cache_mut(s);
        let mut dropped = false;
        if let Some(cp) = cache.page_mut(pfn) {
            dropped = cp.valid & bit != 0;
            cp.valid &= !bit;
            cp.dirty &= !bit;
            if cp.valid == 0 {
                cache.release_if_empty(pfn);
            }
        }
        // An observer is told of every line that leaves a cache, a clean one too: what it
        // draws of the cache would otherwise keep a line the hardware no longer has.
        if dropped && self.observed() {
            let range = PhysRange { start: PhysAddr(pfn * PAGE_SIZE + l as u64 * self.hw.line), len: self.hw.line };
            self.emit(Event::Discard { cache: s.id(), range, cause: Cause::Capacity, lost: &[] });
        }
    }
}
