//! The hardware's state: memory, the CPU's cache, devices' private caches, the
//! write-combining buffer and the pages the CPU may prefetch; and [`HwView`], what a
//! chooser may see of it.
//!
//! The simulator changes this state and the chooser reads it, so it sits below both: the
//! chooser knows the hardware without knowing the simulator that drives it.

use rustc_hash::FxHashMap;

use crate::addr::{PAGE_SIZE, PhysAddr, PhysRange, page_chunks};
use crate::cache::{LineCache, line_mask, runs};
use crate::platform::Platform;
use crate::store::{SparseMem, WriteId};
use crate::vocab::{CacheId, DeviceId, Freedom};

/// The state of one line in one cache.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LineState {
    /// Not present.
    Invalid,
    /// Present, equal to what was last filled or written back.
    Clean,
    /// Present and newer than memory.
    Dirty,
}

/// One line of the write-combining buffer: the bytes stored to it so far, which of them
/// were stored, and by which write.
pub(crate) struct WcEntry {
    /// Line index (address / line size).
    pub(crate) line: u64,
    pub(crate) data: Vec<u8>,
    pub(crate) mask: Vec<bool>,
    /// Empty when provenance is not kept.
    pub(crate) prov: Vec<WriteId>,
}

/// Which cache an internal operation works on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Sel {
    Cpu,
    Dev(usize),
}

impl Sel {
    pub(crate) fn id(self) -> CacheId {
        match self {
            Sel::Cpu => CacheId::Cpu,
            Sel::Dev(i) => CacheId::Device(DeviceId(i as u16)),
        }
    }
}

/// Everything the hardware holds: the platform it is, memory's bytes, each cache's lines,
/// the write-combining buffer, and which pages live cacheable CPU mappings cover.
pub(crate) struct Hw {
    pub(crate) platform: Platform,
    /// The cache line size.
    pub(crate) line: u64,
    pub(crate) lines_per_page: u32,
    pub(crate) mem: SparseMem,
    pub(crate) cpu: LineCache,
    /// Per device of the platform, its private cache if it has one.
    pub(crate) dev_caches: Vec<Option<LineCache>>,
    pub(crate) wc: Vec<WcEntry>,
    /// Lines the write-combining buffer holds before its oldest drains.
    pub(crate) wc_cap: usize,
    /// Pages under live cacheable CPU mappings, with how many such mappings cover each
    /// (what the CPU may prefetch besides the linear map). Page granular, as an MMU is;
    /// asked once per line by every prefetch, so a hash lookup rather than a scan.
    pub(crate) cached_pages: FxHashMap<u64, u32>,
    /// Pages whose linear-map alias the kernel made uncached or write-combined.
    pub(crate) uncached_linear: rustc_hash::FxHashSet<u64>,
    /// The system-level cache's lines, when it lies before the point of coherency.
    pub(crate) slc: Option<LineCache>,
    /// Whether the CPU goes through the system cache (when it is kept).
    pub(crate) slc_cpu: bool,
    /// Per device of the platform, whether it goes through the system cache.
    pub(crate) slc_dev: Vec<bool>,
}

impl Hw {
    /// The hardware of `platform` as it powers up: memory reads as zeros, caches are
    /// empty. Caches are bounded by their geometry only if `bounded`; provenance is kept
    /// if `track`.
    pub(crate) fn new(platform: Platform, bounded: bool, track: bool) -> Hw {
        let line = platform.line_size;
        let cpu = LineCache::new(if bounded { platform.cpu.cache } else { None }, track);
        let dev_caches =
            platform.devices.iter().map(|d| d.cache.map(|g| LineCache::new(bounded.then_some(g), track))).collect();
        let kept = platform.system_cache_before_poc();
        let slc = platform
            .system_cache()
            .filter(|_| kept)
            .map(|c| LineCache::new(if bounded { c.cache } else { None }, track));
        let slc_cpu = kept && platform.through_system_cache("cpu");
        let slc_dev = platform.devices.iter().map(|d| kept && platform.through_system_cache(&d.name)).collect();
        Hw {
            slc,
            slc_cpu,
            slc_dev,
            line,
            lines_per_page: (PAGE_SIZE / line) as u32,
            mem: SparseMem::new(track),
            cpu,
            dev_caches,
            wc: Vec::new(),
            wc_cap: platform.cpu.wc_buffer_lines as usize,
            cached_pages: FxHashMap::default(),
            uncached_linear: Default::default(),
            platform,
        }
    }

    pub(crate) fn cache(&self, id: CacheId) -> Option<&LineCache> {
        match id {
            CacheId::Cpu => Some(&self.cpu),
            CacheId::Device(d) => self.dev_caches.get(d.index()).and_then(|c| c.as_ref()),
        }
    }

    pub(crate) fn cache_mut(&mut self, s: Sel) -> &mut LineCache {
        match s {
            Sel::Cpu => &mut self.cpu,
            Sel::Dev(i) => self.dev_caches[i].as_mut().expect("selected device has a cache"),
        }
    }

    /// The cache a freedom names, if it exists.
    pub(crate) fn sel(&self, c: CacheId) -> Option<Sel> {
        match c {
            CacheId::Cpu => Some(Sel::Cpu),
            CacheId::Device(d) => self.dev_caches.get(d.index()).and_then(|x| x.as_ref()).map(|_| Sel::Dev(d.index())),
        }
    }

    /// The page frame of `pa` and the index of its line in the page.
    pub(crate) fn line_pos(&self, pa: u64) -> (u64, u32) {
        (pa / PAGE_SIZE, ((pa % PAGE_SIZE) / self.line) as u32)
    }

    /// Lines of a page chunk `[po, po + n)`: the mask, and the mask of lines only partly
    /// covered.
    pub(crate) fn chunk_masks(&self, po: usize, n: usize) -> (u128, u128) {
        let line = self.line as usize;
        let l0 = (po / line) as u32;
        let l1 = (po + n).div_ceil(line) as u32;
        let mask = line_mask(l0, l1);
        let mut partial = 0;
        if !po.is_multiple_of(line) {
            partial |= 1u128 << l0;
        }
        if !(po + n).is_multiple_of(line) {
            partial |= 1u128 << (l1 - 1);
        }
        (mask, partial)
    }

    /// Splits a page chunk into pieces that stay within one line each, when the cache
    /// `s` is bounded: a line made present for one piece could otherwise be evicted by the
    /// next before its bytes land.
    pub(crate) fn line_pieces(&self, s: Sel, pa: u64, n: usize) -> Vec<(u64, usize, usize)> {
        let lpp = self.lines_per_page;
        let split = match s {
            Sel::Cpu => self.cpu.may_self_evict(lpp),
            Sel::Dev(i) => self.dev_caches[i].as_ref().is_some_and(|c| c.may_self_evict(lpp)),
        };
        if !split {
            return vec![(pa, 0, n)];
        }
        let mut v = Vec::new();
        let (mut a, end) = (pa, pa + n as u64);
        while a < end {
            let e = ((a / self.line + 1) * self.line).min(end);
            v.push((a, (a - pa) as usize, (e - a) as usize));
            a = e;
        }
        v
    }

    /// The state of a line in a cache.
    pub(crate) fn line_state(&self, cache: CacheId, addr: PhysAddr) -> LineState {
        let Some(c) = self.cache(cache) else { return LineState::Invalid };
        let (pfn, l) = self.line_pos(addr.raw());
        let (v, d) = c.state(pfn);
        if d >> l & 1 == 1 {
            LineState::Dirty
        } else if v >> l & 1 == 1 {
            LineState::Clean
        } else {
            LineState::Invalid
        }
    }

    /// Whether the CPU may speculatively fill the line at `addr`: it lies in memory the
    /// kernel's linear map covers, or a live cacheable mapping covers its page.
    pub(crate) fn prefetchable(&self, addr: PhysAddr) -> bool {
        let pfn = addr.raw() / PAGE_SIZE;
        if self.cached_pages.contains_key(&pfn) {
            return true;
        }
        if self.uncached_linear.contains(&pfn) {
            return false;
        }
        self.platform.region_of(addr).is_some_and(|r| self.platform.regions[r].linear_mapped())
    }
}

/// What a [`Chooser`](crate::Chooser) may look at: the state of lines, never the bytes.
pub struct HwView<'a> {
    hw: &'a Hw,
}

impl<'a> HwView<'a> {
    pub(crate) fn new(hw: &'a Hw) -> Self {
        HwView { hw }
    }
}

impl HwView<'_> {
    /// The cache line size in bytes: the unit of every freedom.
    pub fn line_size(&self) -> u64 {
        self.hw.line
    }

    /// The state of a line in a cache.
    pub fn line_state(&self, cache: CacheId, addr: PhysAddr) -> LineState {
        self.hw.line_state(cache, addr)
    }

    /// Whether the CPU may prefetch the line at `addr`.
    pub fn prefetchable(&self, addr: PhysAddr) -> bool {
        self.hw.prefetchable(addr)
    }

    fn caches(&self) -> impl Iterator<Item = (CacheId, &LineCache)> {
        std::iter::once((CacheId::Cpu, &self.hw.cpu)).chain(
            self.hw
                .dev_caches
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.as_ref().map(|c| (CacheId::Device(DeviceId(i as u16)), c))),
        )
    }

    /// Calls `f` for every dirty line of every cache in `range`.
    pub fn dirty_lines(&self, range: &PhysRange, mut f: impl FnMut(CacheId, PhysAddr)) {
        self.cached_lines(range, true, |id, line, _| f(id, line));
    }

    /// Calls `f` with every line of every cache in `range` that the cache holds (only the
    /// dirty ones with `dirty_only`: it walks those alone), and whether it is dirty.
    fn cached_lines(&self, range: &PhysRange, dirty_only: bool, mut f: impl FnMut(CacheId, PhysAddr, bool)) {
        if range.is_empty() {
            return;
        }
        let r = range.align_out(self.hw.line);
        let (first, last) = (r.start.raw() / PAGE_SIZE, (r.end().raw() - 1) / PAGE_SIZE);
        for (id, c) in self.caches() {
            for pfn in c.pages_in(first, last) {
                let lo = (pfn * PAGE_SIZE).max(r.start.raw());
                let hi = ((pfn + 1) * PAGE_SIZE).min(r.end().raw());
                let (mask, _) = self.hw.chunk_masks((lo % PAGE_SIZE) as usize, (hi - lo) as usize);
                let (valid, dirty) = c.state(pfn);
                for (l0, n) in runs(if dirty_only { dirty } else { valid } & mask) {
                    for l in l0..l0 + n {
                        f(id, PhysAddr(pfn * PAGE_SIZE + l as u64 * self.hw.line), dirty >> l & 1 == 1);
                    }
                }
            }
        }
    }

    /// Pushes a prefetch for every absent prefetchable line in `range`.
    pub fn prefetch_candidates(&self, range: &PhysRange, out: &mut Vec<Freedom>) {
        if range.is_empty() {
            return;
        }
        let r = range.align_out(self.hw.line);
        for (pa, _, n) in page_chunks(r.start.raw(), r.len) {
            if !self.hw.prefetchable(PhysAddr(pa)) {
                continue;
            }
            let pfn = pa / PAGE_SIZE;
            let (mask, _) = self.hw.chunk_masks((pa % PAGE_SIZE) as usize, n);
            let (valid, _) = self.hw.cpu.state(pfn);
            for (l0, cnt) in runs(mask & !valid) {
                for l in l0..l0 + cnt {
                    out.push(Freedom::Prefetch { line: PhysAddr(pfn * PAGE_SIZE + l as u64 * self.hw.line) });
                }
            }
        }
    }

    /// Every freedom the hardware could take on the lines of `range` right now: write
    /// back a dirty line, drop a clean one (in any cache), prefetch an absent one. The
    /// choice points an explorer enumerates.
    pub fn candidates(&self, range: &PhysRange, out: &mut Vec<Freedom>) {
        self.cached_lines(range, false, |cache, line, dirty| {
            out.push(if dirty { Freedom::WriteBack { cache, line } } else { Freedom::Drop { cache, line } })
        });
        self.prefetch_candidates(range, out);
    }
}

impl HwView<'_> {
    /// Feeds into `h` everything the hardware holds for the lines at `lines`: each cache's
    /// state of the line with its bytes and their provenance, memory's bytes and
    /// provenance, and every pending write-combined store. Two states with the same hash
    /// (for the lines a program touches) behave the same from here on, whatever path led
    /// to them: what an explorer uses to visit a state once.
    pub fn hash_lines(&self, lines: &[PhysAddr], h: &mut impl std::hash::Hasher) {
        use std::hash::Hash;
        let line = self.hw.line as usize;
        let mut prov = Vec::new();
        for &a in lines {
            let (pfn, l) = self.hw.line_pos(a.raw());
            let off = l as usize * line;
            for (id, c) in self.caches() {
                let (valid, dirty) = c.state(pfn);
                let (v, d) = (valid >> l & 1 == 1, dirty >> l & 1 == 1);
                (id, v, d).hash(h);
                if let Some(p) = c.page(pfn).filter(|_| v) {
                    p.data.hash_range(off, line, h);
                    prov.clear();
                    p.prov.runs(off, line, 0, &mut prov);
                    prov.iter().for_each(|r| (r.offset, r.len, r.write).hash(h));
                }
            }
            match self.hw.mem.page(pfn) {
                Some(p) => {
                    p.data.hash_range(off, line, h);
                    prov.clear();
                    p.prov.runs(off, line, 0, &mut prov);
                    prov.iter().for_each(|r| (r.offset, r.len, r.write).hash(h));
                }
                None => 0u8.hash(h),
            }
        }
        if let Some(slc) = &self.hw.slc {
            for &a in lines {
                let (pfn, l) = self.hw.line_pos(a.raw());
                let off = l as usize * line;
                let (valid, dirty) = slc.state(pfn);
                ("slc", valid >> l & 1, dirty >> l & 1).hash(h);
                if let Some(p) = slc.page(pfn).filter(|_| valid >> l & 1 == 1) {
                    p.data.hash_range(off, line, h);
                    prov.clear();
                    p.prov.runs(off, line, 0, &mut prov);
                    prov.iter().for_each(|r| (r.offset, r.len, r.write).hash(h));
                }
            }
        }
        for e in &self.hw.wc {
            (e.line, &e.data, &e.mask, &e.prov).hash(h);
        }
    }
}
