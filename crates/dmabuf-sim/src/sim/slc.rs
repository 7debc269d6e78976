//! The system-level cache: a write-back cache in front of DRAM that some agents go
//! through and others bypass.
//!
//! It is kept only when it lies before the point of coherency (some agent bypasses it,
//! [`Platform::system_cache_before_poc`](crate::Platform::system_cache_before_poc)): a
//! system cache every agent goes through changes nothing any agent reads, so the model
//! keeps no lines for it. Agents that go through it read its lines over memory and write
//! into it; the CPU cache's write-backs land in it when the CPU goes through it; agents
//! that bypass it read and write DRAM alone. The CPU's maintenance to the point of
//! coherency reaches it (arm64's `dcache_clean_poc` cleans every level up to the point
//! of coherency): a clean writes its dirty lines to DRAM, an invalidate drops its lines
//! after writing dirty ones back. The system cache holds other masters' writes, which no
//! invalidate by one CPU may discard, so it performs an invalidate as a clean and
//! invalidate, as the Arm architecture allows (`DC IVAC` may clean); the CPU's own caches
//! lose dirty lines on an invalidate as before. It takes no freedoms of its own: it
//! writes back on maintenance and when its capacity gives up a line.

use super::simulator::{ProvSrc, Sim, Src};
use crate::addr::{PAGE_SIZE, PhysRange};
use crate::cache::{LineCache, runs};
use crate::hw::Sel;
use crate::store::ProvRun;

impl Sim {
    /// Whether the agent of cache selection `s` goes through a modelled system cache.
    pub(super) fn via_slc(&self, s: Sel) -> bool {
        match s {
            Sel::Cpu => self.hw.slc_cpu,
            Sel::Dev(i) => self.hw.slc_dev.get(i).copied().unwrap_or(false),
        }
    }

    /// Overlays the system cache's lines on `out`, bytes read from memory at `pa` (one
    /// page chunk), with their provenance in `prov` (runs relative to `out`).
    pub(super) fn slc_overlay(&self, pa: u64, out: &mut [u8], prov: Option<&mut Vec<ProvRun>>) {
        let Some(slc) = &self.hw.slc else { return };
        let pfn = pa / PAGE_SIZE;
        let po = (pa % PAGE_SIZE) as usize;
        let Some(cp) = slc.page(pfn) else { return };
        let (mask, _) = self.hw.chunk_masks(po, out.len());
        let hit = cp.valid & mask;
        if hit == 0 {
            return;
        }
        let line = self.hw.line as usize;
        let mut per_byte = prov.as_ref().map(|p| crate::store::expand(p, out.len()));
        for (l0, n) in runs(hit) {
            let s = (l0 as usize * line).max(po);
            let e = ((l0 + n) as usize * line).min(po + out.len());
            cp.data.read(s, &mut out[s - po..e - po]);
            if let Some(pb) = &mut per_byte {
                for i in s..e {
                    pb[i - po] = cp.prov.at(i);
                }
            }
        }
        if let (Some(p), Some(pb)) = (prov, per_byte) {
            *p = crate::store::compress(&pb);
        }
    }
}

/// Makes lines `mask` of `pfn` present in the system cache (filling them from memory)
/// and returns the lines a full set gave up, to be written back by the caller.
fn make_present(
    slc: &mut LineCache,
    mem: &crate::store::SparseMem,
    pfn: u64,
    mask: u128,
    line: usize,
    lpp: u32,
) -> Vec<u64> {
    let (valid, _) = slc.state(pfn);
    let missing = mask & !valid;
    let mut victims = Vec::new();
    if slc.bounded() {
        for (l0, n) in runs(missing) {
            for l in l0..l0 + n {
                if let Some(v) = slc.insert_tag(pfn * lpp as u64 + l as u64) {
                    victims.push(v);
                }
            }
        }
    }
    if missing != 0 {
        let mp = mem.page(pfn);
        let cp = slc.page_or_insert(pfn);
        for (l0, n) in runs(missing) {
            let (o, len) = (l0 as usize * line, n as usize * line);
            match mp {
                Some(mp) => {
                    cp.data.copy_from(&mp.data, o, len);
                    cp.prov.copy_from(&mp.prov, o, o, len);
                }
                None => {
                    cp.data.fill(o, len, 0);
                    cp.prov.set(o, len, crate::store::WriteId::INITIAL);
                }
            }
        }
        cp.valid |= missing;
    }
    victims
}

impl Sim {
    /// Writes bytes into the system cache at `pa` (one page chunk), allocating the lines:
    /// a write by an agent that goes through it.
    pub(super) fn slc_write(&mut self, pa: u64, n: usize, src: Src<'_>, off: usize, prov: ProvSrc<'_>) {
        let line = self.hw.line as usize;
        let lpp = self.hw.lines_per_page;
        let pfn = pa / PAGE_SIZE;
        let po = (pa % PAGE_SIZE) as usize;
        let (mask, _) = self.hw.chunk_masks(po, n);
        let Some(slc) = self.hw.slc.as_mut() else { return };
        let victims = make_present(slc, &self.hw.mem, pfn, mask, line, lpp);
        let cp = slc.page_or_insert(pfn);
        src.put(&mut cp.data, po, n, off);
        prov.apply(&mut cp.prov, po, n, off);
        cp.dirty |= mask;
        for v in victims {
            self.slc_evict(v);
        }
    }

    /// Copies whole lines `mask` of `pfn` from a cache page into the system cache, dirty:
    /// a write-back from a cache whose agent goes through it.
    pub(super) fn slc_take_lines(&mut self, from: Sel, pfn: u64, mask: u128) {
        let line = self.hw.line as usize;
        let lpp = self.hw.lines_per_page;
        let Some(mut slc) = self.hw.slc.take() else { return };
        let victims = make_present(&mut slc, &self.hw.mem, pfn, mask, line, lpp);
        let src = match from {
            Sel::Cpu => self.hw.cpu.page(pfn),
            Sel::Dev(i) => self.hw.dev_caches[i].as_ref().and_then(|c| c.page(pfn)),
        };
        if let Some(src) = src {
            let cp = slc.page_or_insert(pfn);
            for (l0, n) in runs(mask) {
                let (o, len) = (l0 as usize * line, n as usize * line);
                cp.data.copy_from(&src.data, o, len);
                cp.prov.copy_from(&src.prov, o, o, len);
            }
            cp.dirty |= mask;
        }
        self.hw.slc = Some(slc);
        for v in victims {
            self.slc_evict(v);
        }
    }

    /// The system cache gives up line `idx` (written to memory if dirty).
    fn slc_evict(&mut self, idx: u64) {
        let lpp = self.hw.lines_per_page as u64;
        let (pfn, l) = (idx / lpp, (idx % lpp) as u32);
        self.slc_write_back(pfn, 1u128 << l, true);
    }

    /// Writes the system cache's dirty lines `mask` of `pfn` to memory; drops them (and
    /// the clean ones of `mask`) too when `drop`.
    fn slc_write_back(&mut self, pfn: u64, mask: u128, drop: bool) -> u64 {
        let line = self.hw.line as usize;
        let lpp = self.hw.lines_per_page;
        let Some(slc) = self.hw.slc.as_mut() else { return 0 };
        let Some(cp) = slc.page_mut(pfn) else { return 0 };
        let dirty = cp.dirty & mask;
        if dirty != 0 {
            let mp = self.hw.mem.page_mut(pfn);
            for (l0, n) in runs(dirty) {
                let (o, len) = (l0 as usize * line, n as usize * line);
                mp.data.copy_from(&cp.data, o, len);
                mp.prov.copy_from(&cp.prov, o, o, len);
            }
            cp.dirty &= !dirty;
        }
        if drop {
            let gone = cp.valid & mask;
            cp.valid &= !gone;
            slc.remove_tags(pfn, gone, lpp);
            slc.release_if_empty(pfn);
        }
        dirty.count_ones() as u64
    }

    /// Maintenance to the point of coherency reaching the system cache over line-aligned
    /// `r`: cleans write its dirty lines to memory; invalidates write them back and drop
    /// every line.
    pub(super) fn slc_maintain(&mut self, drop: bool, r: PhysRange) {
        let Some(slc) = &self.hw.slc else { return };
        if r.is_empty() {
            return;
        }
        let first = r.start.raw() / PAGE_SIZE;
        let last = (r.end().raw() - 1) / PAGE_SIZE;
        for pfn in slc.pages_in(first, last) {
            let lo = (pfn * PAGE_SIZE).max(r.start.raw());
            let hi = ((pfn + 1) * PAGE_SIZE).min(r.end().raw());
            let (mask, _) = self.hw.chunk_masks((lo % PAGE_SIZE) as usize, (hi - lo) as usize);
            self.slc_write_back(pfn, mask, drop);
        }
    }
}
