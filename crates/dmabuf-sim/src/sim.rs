//! The simulator: memory, the CPU's cache and mappings, devices and their caches.

use rustc_hash::FxHashMap;

use crate::addr::{BusAddr, PAGE_SIZE, PhysAddr, PhysRange, page_chunks};
use crate::cache::{LineCache, RangeAlloc, line_mask, runs};
use crate::chooser::{Chooser, Never};
use crate::event::{Event, Observer};
use crate::platform::{Platform, RegionKind};
use crate::stats::Stats;
use crate::store::{ProvPage, ProvRun, SparseMem, WriteId, push_run};
use crate::vocab::{Agent, CacheId, Cause, CpuMapId, DeviceId, Freedom, MaintOp, MemAttr, OpInfo, OpKind};

/// Why the hardware refused an operation. Each variant is one rule.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum SimError {
    /// The CPU mapping does not exist (never made, or unmapped).
    #[error("no CPU mapping {0:?}")]
    NoSuchMapping(CpuMapId),
    /// A CPU access runs past the end of its mapping.
    #[error("access at offset {offset:#x} of {len:#x} bytes is outside CPU mapping {map:?} of {size:#x} bytes")]
    OutsideMapping {
        /// The mapping.
        map: CpuMapId,
        /// Offset of the access.
        offset: u64,
        /// Length of the access.
        len: u64,
        /// Size of the mapping.
        size: u64,
    },
    /// Physical memory outside every region.
    #[error("{range} is not inside a memory region of the platform")]
    NotInRegion {
        /// The range.
        range: PhysRange,
    },
    /// A page-granular operation got a range that is not page aligned.
    #[error("{range} is not page aligned")]
    Unaligned {
        /// The range.
        range: PhysRange,
    },
    /// A device was given a bus address above what it can drive.
    #[error("device `{dev}` drives {bits} address bits; bus address {addr} is above its DMA mask")]
    AboveDmaMask {
        /// The device.
        dev: String,
        /// Its mask, in bits.
        bits: u32,
        /// The address.
        addr: BusAddr,
    },
    /// A device addressed memory it has no path to.
    #[error("device `{dev}` has no path to {addr} in region `{region}`")]
    Unreachable {
        /// The device.
        dev: String,
        /// The address.
        addr: PhysAddr,
        /// The region holding it.
        region: String,
    },
    /// A device behind an IOMMU used an IOVA that is not mapped.
    #[error("IOMMU fault: device `{dev}` has no mapping at {addr}")]
    IommuFault {
        /// The device.
        dev: String,
        /// The bus address.
        addr: BusAddr,
    },
    /// An IOMMU operation on a device without an IOMMU.
    #[error("device `{dev}` is not behind an IOMMU")]
    NoIommu {
        /// The device.
        dev: String,
    },
    /// The device's IOVA space (below its DMA mask) is full.
    #[error("IOVA space of device `{dev}` has no room for {len:#x} bytes")]
    IovaExhausted {
        /// The device.
        dev: String,
        /// The request.
        len: u64,
    },
    /// An IOVA range that was not mapped was unmapped.
    #[error("device `{dev}`: {addr} (+{len:#x}) is not an IOMMU mapping")]
    BadIommuUnmap {
        /// The device.
        dev: String,
        /// The start.
        addr: BusAddr,
        /// The length.
        len: u64,
    },
    /// Bouncing was needed and the platform has no bounce pool.
    #[error("the platform has no bounce pool (swiotlb)")]
    NoBouncePool,
    /// The bounce pool is full, or is itself out of the device's reach.
    #[error("the bounce pool has no room for {len:#x} bytes below {limit:#x}")]
    BounceExhausted {
        /// The request.
        len: u64,
        /// The highest usable address.
        limit: u64,
    },
    /// A bounce slot that was not allocated was freed.
    #[error("{addr} (+{len:#x}) is not an allocated bounce slot")]
    BadBounceFree {
        /// The start.
        addr: PhysAddr,
        /// The length.
        len: u64,
    },
    /// A device id that the platform does not have.
    #[error("no device {0:?} on this platform")]
    NoSuchDevice(DeviceId),
    /// A length or address overflowed 64 bits.
    #[error("address arithmetic overflows 64 bits")]
    Overflow,
}

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

/// A mismatched alias: one page mapped by the CPU with two attributes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AliasConflict {
    /// The page.
    pub page: PhysAddr,
    /// Attribute of the mapping that was there.
    pub existing: MemAttr,
    /// Attribute of the new mapping.
    pub new: MemAttr,
    /// The new mapping.
    pub map: CpuMapId,
    /// The bytes mapped twice.
    pub range: PhysRange,
}

struct CpuMapping {
    /// Page-aligned physical ranges, in mapping order.
    ranges: Vec<PhysRange>,
    /// Offset in the mapping of each range's first byte.
    starts: Vec<u64>,
    size: u64,
    attr: MemAttr,
}

impl CpuMapping {
    /// The physical address of byte `off` (below `size`).
    fn phys(&self, off: u64) -> u64 {
        let i = self.starts.partition_point(|&s| s <= off) - 1;
        self.ranges[i].start.raw() + (off - self.starts[i])
    }
}

/// Bytes to write: a slice, or one byte repeated (bulk fills without a buffer).
#[derive(Clone, Copy)]
pub(crate) enum Src<'a> {
    Bytes(&'a [u8]),
    Fill(u8),
}

impl Src<'_> {
    fn put(&self, dst: &mut [u8], off: usize) {
        match self {
            Src::Bytes(b) => dst.copy_from_slice(&b[off..off + dst.len()]),
            Src::Fill(v) => dst.fill(*v),
        }
    }
}

/// Where the provenance of written bytes comes from.
#[derive(Clone, Copy)]
pub(crate) enum ProvSrc<'a> {
    /// A new write.
    Id(WriteId),
    /// Copied bytes: runs relative to the start of the write.
    Runs(&'a [ProvRun]),
}

impl ProvSrc<'_> {
    fn apply(&self, p: &mut ProvPage, dst_off: usize, n: usize, src_off: usize) {
        match self {
            ProvSrc::Id(id) => p.set(dst_off, n, *id),
            ProvSrc::Runs(r) => p.set_from_runs(dst_off, n, src_off as u64, r),
        }
    }
}

struct WcEntry {
    line: u64,
    data: Vec<u8>,
    mask: Vec<bool>,
    prov: Vec<WriteId>,
}

/// Which cache an internal operation works on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sel {
    Cpu,
    Dev(usize),
}

impl Sel {
    fn id(self) -> CacheId {
        match self {
            Sel::Cpu => CacheId::Cpu,
            Sel::Dev(i) => CacheId::Device(DeviceId(i as u16)),
        }
    }
}

/// Builds a [`Sim`].
pub struct SimBuilder {
    platform: Platform,
    chooser: Box<dyn Chooser>,
    observer: Option<Box<dyn Observer>>,
}

impl SimBuilder {
    /// Chooses who takes the hardware's freedoms (default [`Never`]).
    pub fn chooser(mut self, c: impl Chooser + 'static) -> Self {
        self.chooser = Box::new(c);
        self
    }

    /// Chooses who takes the hardware's freedoms, boxed.
    pub fn chooser_boxed(mut self, c: Box<dyn Chooser>) -> Self {
        self.chooser = c;
        self
    }

    /// Installs an observer. Provenance is kept from the first byte if it wants it.
    pub fn observer(mut self, o: impl Observer + 'static) -> Self {
        self.observer = Some(Box::new(o));
        self
    }

    /// Builds the simulator: memory reads as zeros, caches are empty.
    pub fn build(self) -> Sim {
        let p = self.platform;
        let track = self.observer.as_ref().is_some_and(|o| o.wants_provenance());
        let bounded = self.chooser.bounded();
        let line = p.line_size;
        let cpu = LineCache::new(if bounded { p.cpu.cache } else { None }, track);
        let dev_caches =
            p.devices.iter().map(|d| d.cache.map(|g| LineCache::new(bounded.then_some(g), track))).collect();
        let iommus = p
            .devices
            .iter()
            .map(|d| {
                d.iommu.then(|| Iommu {
                    // IOVA 0 is never handed out, like a NULL DMA address; 2^63 bytes of
                    // IOVA space is more than any scenario maps and keeps sums in range.
                    space: RangeAlloc::new(PAGE_SIZE, d.max_address().min(1 << 63) - PAGE_SIZE + 1),
                    table: FxHashMap::default(),
                })
            })
            .collect();
        let bounce = p.regions.iter().find(|r| r.kind == RegionKind::Bounce).map(|r| {
            let range = r.range();
            BouncePool { range, alloc: RangeAlloc::new(range.start.raw(), range.len), slots: FxHashMap::default() }
        });
        Sim {
            line,
            lines_per_page: (PAGE_SIZE / line) as u32,
            mem: SparseMem::new(track),
            cpu,
            dev_caches,
            wc: Vec::new(),
            wc_cap: p.cpu.wc_buffer_lines as usize,
            maps: Vec::new(),
            cached_pages: FxHashMap::default(),
            iommus,
            bounce,
            stats: Stats::default(),
            chooser: Some(self.chooser),
            observer: self.observer,
            track,
            next_write: 1,
            freedoms: Vec::new(),
            aliases: Vec::new(),
            platform: p,
        }
    }
}

pub(crate) struct Iommu {
    pub(crate) space: RangeAlloc,
    /// IOVA page frame to physical page frame.
    pub(crate) table: FxHashMap<u64, u64>,
}

pub(crate) struct BouncePool {
    pub(crate) range: PhysRange,
    pub(crate) alloc: RangeAlloc,
    /// Allocated slots: start to length.
    pub(crate) slots: FxHashMap<u64, u64>,
}

/// The simulated hardware of one platform.
///
/// Every access moves real bytes through the model: a CPU store lands in a cache line, a
/// non-coherent device reads DRAM and sees only what was written back, a cleaned line
/// reaches memory, an invalidated dirty line is gone. After every operation the
/// [`Chooser`] decides which of the hardware's freedoms to take, so a run is deterministic
/// given its chooser. An [`Observer`] sees every event with provenance.
pub struct Sim {
    platform: Platform,
    line: u64,
    lines_per_page: u32,
    mem: SparseMem,
    cpu: LineCache,
    dev_caches: Vec<Option<LineCache>>,
    wc: Vec<WcEntry>,
    wc_cap: usize,
    maps: Vec<Option<CpuMapping>>,
    /// Pages under live cacheable CPU mappings, with how many such mappings cover each
    /// (what the CPU may prefetch besides the linear map). Page granular, as an MMU is;
    /// asked once per line by every prefetch, so a hash lookup rather than a scan.
    cached_pages: FxHashMap<u64, u32>,
    pub(crate) iommus: Vec<Option<Iommu>>,
    pub(crate) bounce: Option<BouncePool>,
    pub(crate) stats: Stats,
    chooser: Option<Box<dyn Chooser>>,
    observer: Option<Box<dyn Observer>>,
    track: bool,
    next_write: u64,
    freedoms: Vec<Freedom>,
    aliases: Vec<AliasConflict>,
}

/// A piece of an access within one page: (physical address, offset in the access, length).
pub(crate) type Chunk = (u64, usize, usize);

/// Coalesces page chunks `(address, len)` into ranges.
fn coalesce(chunks: impl Iterator<Item = (u64, u64)>) -> Vec<PhysRange> {
    let mut v: Vec<PhysRange> = Vec::new();
    for (a, n) in chunks {
        match v.last_mut() {
            Some(last) if last.end().raw() == a => last.len += n,
            _ => v.push(PhysRange { start: PhysAddr(a), len: n }),
        }
    }
    v
}

impl Sim {
    /// A simulator of `platform` whose hardware takes no freedom and has no observer.
    pub fn new(platform: Platform) -> Sim {
        Sim::builder(platform).build()
    }

    /// Starts building a simulator of `platform`.
    pub fn builder(platform: Platform) -> SimBuilder {
        SimBuilder { platform, chooser: Box::new(Never), observer: None }
    }

    /// The platform.
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// The cache line size.
    pub fn line_size(&self) -> u64 {
        self.line
    }

    /// Counters and cycles so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The chooser's name.
    pub fn chooser_name(&self) -> String {
        self.chooser.as_ref().map_or_else(String::new, |c| c.name())
    }

    /// The observer, to read its findings (downcast it through your own type, or share it
    /// with an `Rc<RefCell<_>>`).
    pub fn observer_mut(&mut self) -> Option<&mut (dyn Observer + 'static)> {
        self.observer.as_deref_mut()
    }

    /// Whether byte provenance is being kept.
    pub fn tracks_provenance(&self) -> bool {
        self.track
    }

    /// Pages of backing store that exist (memory is sparse: untouched pages cost nothing).
    pub fn resident_pages(&self) -> usize {
        self.mem.resident_pages()
    }

    /// Mismatched aliases seen so far.
    pub fn alias_conflicts(&self) -> &[AliasConflict] {
        &self.aliases
    }

    /// The device with that name.
    pub fn device(&self, name: &str) -> Option<DeviceId> {
        self.platform.device_index(name).map(|i| DeviceId(i as u16))
    }

    fn new_write(&mut self) -> WriteId {
        let id = WriteId(self.next_write);
        self.next_write += 1;
        id
    }

    fn emit(&mut self, ev: Event<'_>) {
        if let Some(o) = &mut self.observer {
            o.event(&ev);
        }
    }

    fn observed(&self) -> bool {
        self.observer.is_some()
    }

    fn check_device(&self, dev: DeviceId) -> Result<usize, SimError> {
        if dev.index() < self.platform.devices.len() { Ok(dev.index()) } else { Err(SimError::NoSuchDevice(dev)) }
    }

    /// Checks that every byte of `range` lies in some region.
    pub(crate) fn check_in_regions(&self, range: PhysRange) -> Result<(), SimError> {
        let covered: u64 =
            self.platform.regions.iter().filter_map(|r| r.range().intersect(&range)).map(|r| r.len).sum();
        if covered == range.len { Ok(()) } else { Err(SimError::NotInRegion { range }) }
    }

    // ----- raw memory -------------------------------------------------------------------

    /// What memory holds, bypassing every cache and costing nothing (for tests and
    /// reports: it is not an access of any agent).
    pub fn peek_memory(&self, addr: PhysAddr, buf: &mut [u8]) {
        self.mem.read(addr.raw(), buf);
    }

    /// The state of a line in a cache.
    pub fn line_state(&self, cache: CacheId, addr: PhysAddr) -> LineState {
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

    fn cache(&self, id: CacheId) -> Option<&LineCache> {
        match id {
            CacheId::Cpu => Some(&self.cpu),
            CacheId::Device(d) => self.dev_caches.get(d.index()).and_then(|c| c.as_ref()),
        }
    }

    fn cache_mut(&mut self, s: Sel) -> &mut LineCache {
        match s {
            Sel::Cpu => &mut self.cpu,
            Sel::Dev(i) => self.dev_caches[i].as_mut().expect("selected device has a cache"),
        }
    }

    fn line_pos(&self, pa: u64) -> (u64, u32) {
        (pa / PAGE_SIZE, ((pa % PAGE_SIZE) / self.line) as u32)
    }

    /// Lines of a page chunk `[po, po + n)`: the mask, and the mask of lines only partly
    /// covered.
    fn chunk_masks(&self, po: usize, n: usize) -> (u128, u128) {
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

    // ----- the hardware's moves on lines ------------------------------------------------

    /// Writes the lines `mask` of `pfn` back from a cache to memory; they stay valid.
    fn write_back(&mut self, s: Sel, pfn: u64, mask: u128, cause: Cause) -> u64 {
        let line = self.line as usize;
        let observed = self.observed();
        let mut count = 0u64;
        let mut events: Vec<(PhysRange, Vec<ProvRun>, Vec<ProvRun>)> = Vec::new();
        let cache = match s {
            Sel::Cpu => &mut self.cpu,
            Sel::Dev(i) => self.dev_caches[i].as_mut().expect("selected device has a cache"),
        };
        let Some(cp) = cache.page_mut(pfn) else { return 0 };
        let mask = mask & cp.dirty;
        if mask == 0 {
            return 0;
        }
        let mp = self.mem.page_mut(pfn);
        for (l0, n) in runs(mask) {
            let (o, len) = (l0 as usize * line, n as usize * line);
            let mut replaced = Vec::new();
            if observed {
                mp.prov.runs(o, len, 0, &mut replaced);
            }
            mp.data[o..o + len].copy_from_slice(&cp.data[o..o + len]);
            mp.prov.copy_from(&cp.prov, o, o, len);
            count += n as u64;
            if observed {
                let mut p = Vec::new();
                cp.prov.runs(o, len, 0, &mut p);
                events.push((PhysRange { start: PhysAddr(pfn * PAGE_SIZE + o as u64), len: len as u64 }, p, replaced));
            }
        }
        cp.dirty &= !mask;
        for (range, prov, replaced) in events {
            self.emit(Event::WriteBack { cache: s.id(), range, cause, prov: &prov, replaced: &replaced });
        }
        // A coherent device's cache writes back through the coherent interconnect, which
        // takes the lines away from the CPU like any other coherent write.
        if let Sel::Dev(i) = s
            && self.platform.devices[i].coherent
        {
            for (l0, n) in runs(mask) {
                self.snoop_invalidate(pfn * PAGE_SIZE + l0 as u64 * self.line, n as usize * line);
            }
        }
        count
    }

    /// Drops the lines `mask` of `pfn` from a cache (dirty data in them is lost).
    /// Returns (lines dropped, dirty lines destroyed).
    fn discard(&mut self, s: Sel, pfn: u64, mask: u128, cause: Cause) -> (u64, u64) {
        let line = self.line as usize;
        let lpp = self.lines_per_page;
        let observed = self.observed();
        let cache = self.cache_mut(s);
        let Some(cp) = cache.page_mut(pfn) else { return (0, 0) };
        let mask = mask & cp.valid;
        if mask == 0 {
            return (0, 0);
        }
        let lost_mask = mask & cp.dirty;
        let mut lost = Vec::new();
        if observed {
            for (l0, n) in runs(lost_mask) {
                let o = l0 as usize * line;
                cp.prov.runs(o, n as usize * line, o as u64, &mut lost);
            }
        }
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
    fn fill_from_memory(&mut self, s: Sel, pfn: u64, mask: u128, cause: Cause) {
        if mask == 0 {
            return;
        }
        let line = self.line as usize;
        let observed = self.observed();
        let snoop = matches!(s, Sel::Dev(i) if self.platform.devices[i].coherent);
        let (cache, cpu) = match s {
            Sel::Cpu => (&mut self.cpu, None),
            Sel::Dev(i) => (self.dev_caches[i].as_mut().expect("selected device has a cache"), Some(&self.cpu)),
        };
        let mp = self.mem.page(pfn);
        let cpu_page = if snoop { cpu.and_then(|c| c.page(pfn)) } else { None };
        let cp = cache.page_or_insert(pfn);
        let mut events = Vec::new();
        for (l0, n) in runs(mask) {
            let (o, len) = (l0 as usize * line, n as usize * line);
            match mp {
                Some(mp) => {
                    cp.data[o..o + len].copy_from_slice(&mp.data[o..o + len]);
                    if mp.prov.is_tracked() {
                        cp.prov.copy_from(&mp.prov, o, o, len);
                    } else {
                        cp.prov.set(o, len, WriteId::INITIAL);
                    }
                }
                None => {
                    cp.data[o..o + len].fill(0);
                    cp.prov.set(o, len, WriteId::INITIAL);
                }
            }
            if let Some(cpu_page) = cpu_page {
                for (d0, dn) in runs(cpu_page.valid & line_mask(l0, l0 + n)) {
                    let (d, dl) = (d0 as usize * line, dn as usize * line);
                    cp.data[d..d + dl].copy_from_slice(&cpu_page.data[d..d + dl]);
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
    fn make_present(&mut self, s: Sel, pfn: u64, mask: u128, fill: u128) -> u64 {
        let lpp = self.lines_per_page as u64;
        let (valid, _) = self.cache_mut(s).state(pfn);
        let missing = mask & !valid;
        if self.cache_mut(s).bounded() {
            for (l0, n) in runs(mask) {
                for l in l0..l0 + n {
                    let idx = pfn * lpp + l as u64;
                    if missing >> l & 1 == 0 {
                        self.cache_mut(s).touch(idx);
                    } else if let Some(victim) = self.cache_mut(s).insert_tag(idx) {
                        self.evict(s, victim);
                    }
                }
            }
        }
        if missing != 0 {
            self.fill_from_memory(s, pfn, missing & fill, Cause::Demand);
            self.cache_mut(s).page_or_insert(pfn).valid |= missing;
        }
        missing.count_ones() as u64
    }

    /// A full set gives up line `idx`.
    fn evict(&mut self, s: Sel, idx: u64) {
        let lpp = self.lines_per_page as u64;
        let (pfn, l) = (idx / lpp, (idx % lpp) as u32);
        let bit = 1u128 << l;
        self.stats.hw.capacity_evictions += 1;
        let (_, dirty) = self.cache_mut(s).state(pfn);
        // The common case, a clean victim with nobody watching, in one lookup; the rest
        // goes through the write-back path that reports and snoops.
        if dirty & bit != 0 || self.observed() || matches!(s, Sel::Dev(_)) {
            self.write_back(s, pfn, bit, Cause::Capacity);
        }
        let cache = self.cache_mut(s);
        if let Some(cp) = cache.page_mut(pfn) {
            cp.valid &= !bit;
            cp.dirty &= !bit;
            if cp.valid == 0 {
                cache.release_if_empty(pfn);
            }
        }
    }

    // ----- CPU mappings -----------------------------------------------------------------

    /// Maps physical pages into the CPU with a memory attribute. The ranges must be page
    /// aligned and inside regions. Mapping a page that already has a live mapping with a
    /// different attribute is a mismatched alias: it is allowed (hardware allows it) and
    /// reported as an event and in [`Sim::alias_conflicts`].
    pub fn cpu_map(&mut self, ranges: &[PhysRange], attr: MemAttr) -> Result<CpuMapId, SimError> {
        let mut size = 0u64;
        let mut starts = Vec::with_capacity(ranges.len());
        for r in ranges {
            if !r.start.is_aligned(PAGE_SIZE) || r.len % PAGE_SIZE != 0 {
                return Err(SimError::Unaligned { range: *r });
            }
            self.check_in_regions(*r)?;
            starts.push(size);
            size = size.checked_add(r.len).ok_or(SimError::Overflow)?;
        }
        let id = CpuMapId(self.maps.len() as u32);
        let mut conflicts = Vec::new();
        for other in self.maps.iter().flatten().filter(|m| m.attr != attr) {
            for a in &other.ranges {
                for b in ranges {
                    if let Some(range) = a.intersect(b) {
                        conflicts.push(AliasConflict {
                            page: range.start,
                            existing: other.attr,
                            new: attr,
                            map: id,
                            range,
                        });
                    }
                }
            }
        }
        if attr == MemAttr::Cached {
            for pfn in ranges.iter().flat_map(range_pages) {
                *self.cached_pages.entry(pfn).or_insert(0) += 1;
            }
        }
        self.maps.push(Some(CpuMapping { ranges: ranges.to_vec(), starts, size, attr }));
        for c in conflicts {
            self.aliases.push(c);
            self.emit(Event::MismatchedAlias { page: c.page, existing: c.existing, new: c.new, map: c.map });
        }
        let ranges = ranges.to_vec();
        self.after_op(OpInfo {
            kind: OpKind::CpuMap,
            agent: Agent::Cpu,
            attr: Some(attr),
            ranges,
            writes_memory: false,
        });
        Ok(id)
    }

    /// Removes a CPU mapping. Dirty lines stay in the cache (the cache is physically
    /// tagged); pending write-combined writes stay in the buffer until a barrier.
    pub fn cpu_unmap(&mut self, id: CpuMapId) -> Result<(), SimError> {
        let m = self.maps.get_mut(id.0 as usize).and_then(Option::take).ok_or(SimError::NoSuchMapping(id))?;
        if m.attr == MemAttr::Cached {
            for pfn in m.ranges.iter().flat_map(range_pages) {
                if let Some(n) = self.cached_pages.get_mut(&pfn) {
                    *n -= 1;
                    if *n == 0 {
                        self.cached_pages.remove(&pfn);
                    }
                }
            }
        }
        Ok(())
    }

    /// The size and attribute of a live CPU mapping.
    pub fn cpu_mapping(&self, id: CpuMapId) -> Option<(u64, MemAttr)> {
        self.maps.get(id.0 as usize)?.as_ref().map(|m| (m.size, m.attr))
    }

    /// Resolves `[offset, offset + len)` of a mapping to physical page chunks.
    fn resolve(&self, id: CpuMapId, offset: u64, len: u64) -> Result<(MemAttr, Vec<Chunk>), SimError> {
        let m = self.maps.get(id.0 as usize).and_then(|m| m.as_ref()).ok_or(SimError::NoSuchMapping(id))?;
        let size = m.size;
        if offset.checked_add(len).is_none_or(|e| e > size) {
            return Err(SimError::OutsideMapping { map: id, offset, len, size });
        }
        let chunks = page_chunks(offset, len).map(|(va, off, n)| (m.phys(va), off, n)).collect();
        Ok((m.attr, chunks))
    }

    // ----- CPU accesses -----------------------------------------------------------------

    /// The CPU reads through a mapping: cached mappings hit or fill lines; write-combined
    /// and uncached ones read memory (a write-combined read sees the CPU's own pending
    /// writes).
    pub fn cpu_read(&mut self, id: CpuMapId, offset: u64, buf: &mut [u8]) -> Result<(), SimError> {
        let (attr, chunks) = self.resolve(id, offset, buf.len() as u64)?;
        let mut prov = Vec::new();
        let want = self.observed();
        for &(pa, off, n) in &chunks {
            match attr {
                MemAttr::Cached => self.cached_read(pa, &mut buf[off..off + n], want.then_some((&mut prov, off))),
                _ => self.uncached_read(pa, &mut buf[off..off + n], attr, want.then_some((&mut prov, off))),
            }
        }
        self.stats.cpu_read_bytes += buf.len() as u64;
        if want {
            let len = buf.len() as u64;
            self.emit(Event::CpuRead { map: id, offset, len, attr, prov: &prov });
        }
        let ranges = coalesce(chunks.iter().map(|&(pa, _, n)| (pa, n as u64)));
        self.after_op(OpInfo {
            kind: OpKind::CpuRead,
            agent: Agent::Cpu,
            attr: Some(attr),
            ranges,
            writes_memory: false,
        });
        Ok(())
    }

    /// The CPU writes `data` through a mapping. Returns the write's id.
    pub fn cpu_write(&mut self, id: CpuMapId, offset: u64, data: &[u8]) -> Result<WriteId, SimError> {
        self.cpu_store(id, offset, data.len() as u64, Src::Bytes(data))
    }

    /// The CPU fills `len` bytes with `byte` through a mapping. Returns the write's id.
    pub fn cpu_fill(&mut self, id: CpuMapId, offset: u64, len: u64, byte: u8) -> Result<WriteId, SimError> {
        self.cpu_store(id, offset, len, Src::Fill(byte))
    }

    fn cpu_store(&mut self, id: CpuMapId, offset: u64, len: u64, src: Src<'_>) -> Result<WriteId, SimError> {
        let (attr, chunks) = self.resolve(id, offset, len)?;
        let w = self.new_write();
        for &(pa, off, n) in &chunks {
            match attr {
                MemAttr::Cached => self.cached_write(pa, n, src, off, ProvSrc::Id(w)),
                MemAttr::WriteCombine => self.wc_write(pa, n, src, off, w),
                MemAttr::Uncached => {
                    self.mem_write(pa, n, src, off, ProvSrc::Id(w));
                    self.stats.access_cycles += self.lines_of(pa, n) * self.platform.costs.cpu_uncached_write_line;
                }
            }
        }
        self.stats.cpu_write_bytes += len;
        self.emit(Event::CpuWrite { map: id, offset, len, attr, write: w });
        let ranges = coalesce(chunks.iter().map(|&(pa, _, n)| (pa, n as u64)));
        let writes_memory = attr != MemAttr::Cached;
        self.after_op(OpInfo { kind: OpKind::CpuWrite, agent: Agent::Cpu, attr: Some(attr), ranges, writes_memory });
        Ok(w)
    }

    fn lines_of(&self, pa: u64, n: usize) -> u64 {
        PhysRange { start: PhysAddr(pa), len: n as u64 }.units(self.line)
    }

    /// Writes memory directly (one page chunk).
    fn mem_write(&mut self, pa: u64, n: usize, src: Src<'_>, off: usize, prov: ProvSrc<'_>) {
        let po = (pa % PAGE_SIZE) as usize;
        let p = self.mem.page_mut(pa / PAGE_SIZE);
        src.put(&mut p.data[po..po + n], off);
        prov.apply(&mut p.prov, po, n, off);
    }

    /// Splits a page chunk into pieces that stay within one line each, when the cache
    /// `s` is bounded: a line made present for one piece could otherwise be evicted by the
    /// next before its bytes land.
    fn line_pieces(&self, s: Sel, pa: u64, n: usize) -> Vec<(u64, usize, usize)> {
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

    /// A cached read of one page chunk.
    fn cached_read(&mut self, pa: u64, out: &mut [u8], mut prov: Option<(&mut Vec<ProvRun>, usize)>) {
        for (a, o, n) in self.line_pieces(Sel::Cpu, pa, out.len()) {
            let p = prov.as_mut().map(|(v, base)| (&mut **v, *base + o));
            self.cached_read_piece(a, &mut out[o..o + n], p);
        }
    }

    fn cached_read_piece(&mut self, pa: u64, out: &mut [u8], prov: Option<(&mut Vec<ProvRun>, usize)>) {
        let pfn = pa / PAGE_SIZE;
        let po = (pa % PAGE_SIZE) as usize;
        let n = out.len();
        let (mask, _) = self.chunk_masks(po, n);
        let misses = self.make_present(Sel::Cpu, pfn, mask, mask);
        let costs = &self.platform.costs;
        self.stats.access_cycles +=
            misses * costs.cpu_miss_line + (mask.count_ones() as u64 - misses) * costs.cpu_hit_line;
        let cp = self.cpu.page(pfn).expect("lines were just made present");
        out.copy_from_slice(&cp.data[po..po + n]);
        if let Some((v, base)) = prov {
            cp.prov.runs(po, n, base as u64, v);
        }
    }

    /// A cached write of one page chunk: lines become dirty; partly written lines are
    /// filled first (write-allocate).
    fn cached_write(&mut self, pa: u64, n: usize, src: Src<'_>, off: usize, prov: ProvSrc<'_>) {
        for (a, o, k) in self.line_pieces(Sel::Cpu, pa, n) {
            self.cached_write_piece(a, k, src, off + o, prov);
        }
    }

    fn cached_write_piece(&mut self, pa: u64, n: usize, src: Src<'_>, off: usize, prov: ProvSrc<'_>) {
        let pfn = pa / PAGE_SIZE;
        let po = (pa % PAGE_SIZE) as usize;
        let (mask, partial) = self.chunk_masks(po, n);
        let misses = self.make_present(Sel::Cpu, pfn, mask, partial);
        let costs = &self.platform.costs;
        self.stats.access_cycles += misses * costs.cpu_miss_line + mask.count_ones() as u64 * costs.cpu_hit_line;
        let cp = self.cpu.page_or_insert(pfn);
        src.put(&mut cp.data[po..po + n], off);
        prov.apply(&mut cp.prov, po, n, off);
        cp.dirty |= mask;
    }

    /// A write-combined or uncached read of one page chunk.
    fn uncached_read(&mut self, pa: u64, out: &mut [u8], attr: MemAttr, prov: Option<(&mut Vec<ProvRun>, usize)>) {
        self.mem.read(pa, out);
        let mut runs_here = Vec::new();
        let track = prov.is_some();
        if track {
            self.mem.read_prov(pa, out.len() as u64, 0, &mut runs_here);
        }
        if attr == MemAttr::WriteCombine && !self.wc.is_empty() {
            // The CPU sees its own pending write-combined stores.
            let mut per_byte: Option<Vec<WriteId>> = track.then(|| expand(&runs_here, out.len()));
            let line = self.line;
            for e in &self.wc {
                let (ls, le) = (e.line * line, e.line * line + line);
                let (s, t) = (pa.max(ls), (pa + out.len() as u64).min(le));
                for a in s..t {
                    let i = (a - ls) as usize;
                    if e.mask[i] {
                        out[(a - pa) as usize] = e.data[i];
                        if let Some(pb) = &mut per_byte {
                            pb[(a - pa) as usize] = e.prov[i];
                        }
                    }
                }
            }
            if let Some(pb) = per_byte {
                runs_here = compress(&pb);
            }
        }
        if let Some((v, base)) = prov {
            for r in runs_here {
                push_run(v, r.offset + base as u64, r.len, r.write);
            }
        }
        self.stats.access_cycles += self.lines_of(pa, out.len()) * self.platform.costs.cpu_uncached_read_line;
    }

    /// A write-combined write of one page chunk: bytes join the write-combining buffer;
    /// when it holds more lines than it has, the oldest drains to memory.
    fn wc_write(&mut self, pa: u64, n: usize, src: Src<'_>, off: usize, w: WriteId) {
        let line = self.line;
        let mut a = pa;
        let end = pa + n as u64;
        while a < end {
            let li = a / line;
            let le = ((li + 1) * line).min(end);
            let idx = match self.wc.iter().position(|e| e.line == li) {
                Some(i) => i,
                None => {
                    self.wc.push(WcEntry {
                        line: li,
                        data: vec![0; line as usize],
                        mask: vec![false; line as usize],
                        prov: if self.track { vec![WriteId::INITIAL; line as usize] } else { Vec::new() },
                    });
                    self.wc.len() - 1
                }
            };
            let e = &mut self.wc[idx];
            let s = (a - li * line) as usize;
            let t = (le - li * line) as usize;
            src.put(&mut e.data[s..t], off + (a - pa) as usize);
            e.mask[s..t].fill(true);
            if !e.prov.is_empty() {
                e.prov[s..t].fill(w);
            }
            a = le;
            if self.wc.len() > self.wc_cap {
                self.drain_wc_entry(0);
            }
        }
        self.stats.access_cycles += self.lines_of(pa, n) * self.platform.costs.cpu_wc_write_line;
    }

    fn drain_wc_entry(&mut self, i: usize) {
        let e = self.wc.remove(i);
        let base = e.line * self.line;
        let mut start = None;
        for j in 0..=e.mask.len() {
            let set = j < e.mask.len() && e.mask[j];
            match (set, start) {
                (true, None) => start = Some(j),
                (false, Some(s)) => {
                    let runs_v = if e.prov.is_empty() { vec![] } else { compress(&e.prov[s..j]) };
                    let pa = base + s as u64;
                    let data = &e.data[s..j];
                    if runs_v.is_empty() {
                        self.mem.write(pa, data, WriteId::INITIAL);
                    } else {
                        self.mem.write_with_runs(pa, data, &runs_v);
                    }
                    if self.observed() {
                        let range = PhysRange { start: PhysAddr(pa), len: (j - s) as u64 };
                        self.emit(Event::Drain { range, prov: &runs_v });
                    }
                    start = None;
                }
                _ => {}
            }
        }
        self.stats.hw.wc_drains += 1;
    }

    /// A CPU barrier: drains the write-combining buffer to memory. The end of a CPU access
    /// bracket is one.
    pub fn cpu_barrier(&mut self) {
        let ranges = coalesce(self.wc.iter().map(|e| (e.line * self.line, self.line)));
        while !self.wc.is_empty() {
            self.drain_wc_entry(0);
        }
        if !ranges.is_empty() {
            self.after_op(OpInfo { kind: OpKind::Barrier, agent: Agent::Cpu, attr: None, ranges, writes_memory: true });
        }
    }

    /// Lines pending in the write-combining buffer.
    pub fn wc_pending_lines(&self) -> usize {
        self.wc.len()
    }

    // ----- CPU cache maintenance --------------------------------------------------------

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
        let r = range.align_out(self.line);
        let effective = self.maintain(Sel::Cpu, op, r);
        let lines = r.len / self.line;
        let c = &self.platform.costs;
        let (per_line, count) = match op {
            MaintOp::Clean => (c.clean_line, &mut self.stats.clean),
            MaintOp::Invalidate => (c.invalidate_line, &mut self.stats.invalidate),
            _ => (c.clean_invalidate_line, &mut self.stats.clean_invalidate),
        };
        count.add(lines, r.len, effective, c.maintenance_op + per_line * lines);
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
        let pages = self.cache_mut(s).pages_in(first, last);
        let mut effective = 0;
        for pfn in pages {
            let lo = (pfn * PAGE_SIZE).max(r.start.raw());
            let hi = ((pfn + 1) * PAGE_SIZE).min(r.end().raw());
            let (mask, _) = self.chunk_masks((lo % PAGE_SIZE) as usize, (hi - lo) as usize);
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

    // ----- devices ----------------------------------------------------------------------

    /// Translates a device's bus range to physical page chunks `(phys, offset, len)`,
    /// checking its DMA mask, its IOMMU and its reach.
    pub(crate) fn translate(&self, dev: usize, bus: BusAddr, len: u64) -> Result<Vec<Chunk>, SimError> {
        let d = &self.platform.devices[dev];
        let end = bus.raw().checked_add(len).ok_or(SimError::Overflow)?;
        if len > 0 && end - 1 > d.max_address() {
            let addr = if bus.raw() > d.max_address() { bus } else { BusAddr(d.max_address() + 1) };
            return Err(SimError::AboveDmaMask { dev: d.name.clone(), bits: d.dma_mask, addr });
        }
        let mut out = Vec::new();
        for (a, off, n) in page_chunks(bus.raw(), len) {
            let pa = match &self.iommus[dev] {
                Some(mmu) => {
                    let pfn = mmu
                        .table
                        .get(&(a / PAGE_SIZE))
                        .ok_or_else(|| SimError::IommuFault { dev: d.name.clone(), addr: BusAddr(a) })?;
                    pfn * PAGE_SIZE + a % PAGE_SIZE
                }
                None => a,
            };
            let region = self
                .platform
                .region_of(PhysAddr(pa))
                .ok_or(SimError::NotInRegion { range: PhysRange { start: PhysAddr(pa), len: n as u64 } })?;
            if !self.platform.device_reaches(dev, region) {
                return Err(SimError::Unreachable {
                    dev: d.name.clone(),
                    addr: PhysAddr(pa),
                    region: self.platform.regions[region].name.clone(),
                });
            }
            out.push((pa, off, n));
        }
        Ok(out)
    }

    /// A device reads `buf.len()` bytes by DMA from bus address `bus`. A coherent device
    /// sees the CPU's cached lines; a non-coherent one sees memory only. A device with a
    /// private cache reads through it.
    pub fn device_read(&mut self, dev: DeviceId, bus: BusAddr, buf: &mut [u8]) -> Result<(), SimError> {
        let di = self.check_device(dev)?;
        let chunks = self.translate(di, bus, buf.len() as u64)?;
        let want = self.observed();
        let mut prov = Vec::new();
        let coherent = self.platform.devices[di].coherent;
        for &(pa, off, n) in &chunks {
            let out = &mut buf[off..off + n];
            if self.dev_caches[di].is_some() {
                for (a, o, k) in self.line_pieces(Sel::Dev(di), pa, n) {
                    let pfn = a / PAGE_SIZE;
                    let po = (a % PAGE_SIZE) as usize;
                    let (mask, _) = self.chunk_masks(po, k);
                    self.make_present(Sel::Dev(di), pfn, mask, mask);
                    let cp =
                        self.dev_caches[di].as_ref().and_then(|c| c.page(pfn)).expect("lines were just made present");
                    out[o..o + k].copy_from_slice(&cp.data[po..po + k]);
                    if want {
                        cp.prov.runs(po, k, (off + o) as u64, &mut prov);
                    }
                }
            } else {
                self.mem.read(pa, out);
                let mut here = Vec::new();
                if want {
                    self.mem.read_prov(pa, n as u64, 0, &mut here);
                }
                if coherent {
                    self.snoop_read(pa, out, want.then_some(&mut here));
                }
                for r in here {
                    push_run(&mut prov, r.offset + off as u64, r.len, r.write);
                }
            }
        }
        let len = buf.len() as u64;
        self.stats.device_read_bytes += len;
        self.stats.access_cycles += len.div_ceil(self.line) * self.platform.costs.device_access_line;
        if want {
            self.emit(Event::DeviceRead { dev, bus, len, prov: &prov });
        }
        let ranges = coalesce(chunks.iter().map(|&(pa, _, n)| (pa, n as u64)));
        self.after_op(OpInfo {
            kind: OpKind::DeviceRead,
            agent: Agent::Device(dev),
            attr: None,
            ranges,
            writes_memory: false,
        });
        Ok(())
    }

    /// Overlays the CPU's lines on bytes read from memory (a coherent read). A snoop that
    /// hits a line is served by the cache, clean or dirty: on a coherent system the two
    /// agree, but a clean line left stale by a non-coherent writer reaches coherent readers
    /// too (the mixed-coherency hazard).
    fn snoop_read(&mut self, pa: u64, out: &mut [u8], prov: Option<&mut Vec<ProvRun>>) {
        let pfn = pa / PAGE_SIZE;
        let po = (pa % PAGE_SIZE) as usize;
        let n = out.len();
        let Some(cp) = self.cpu.page(pfn) else { return };
        let (mask, _) = self.chunk_masks(po, n);
        let dirty = cp.valid & mask;
        if dirty == 0 {
            return;
        }
        let line = self.line as usize;
        let mut per_byte = prov.as_ref().map(|p| expand(p, n));
        for (l0, cnt) in runs(dirty) {
            let s = (l0 as usize * line).max(po);
            let e = ((l0 + cnt) as usize * line).min(po + n);
            out[s - po..e - po].copy_from_slice(&cp.data[s..e]);
            if let Some(pb) = &mut per_byte {
                for i in s..e {
                    pb[i - po] = cp.prov.at(i);
                }
            }
        }
        self.stats.hw.snoops += dirty.count_ones() as u64;
        if let (Some(p), Some(pb)) = (prov, per_byte) {
            *p = compress(&pb);
        }
    }

    /// A device writes `data` by DMA at bus address `bus`. Returns the write's id.
    pub fn device_write(&mut self, dev: DeviceId, bus: BusAddr, data: &[u8]) -> Result<WriteId, SimError> {
        self.device_store(dev, bus, data.len() as u64, Src::Bytes(data))
    }

    /// A device fills `len` bytes with `byte` by DMA. Returns the write's id.
    pub fn device_fill(&mut self, dev: DeviceId, bus: BusAddr, len: u64, byte: u8) -> Result<WriteId, SimError> {
        self.device_store(dev, bus, len, Src::Fill(byte))
    }

    fn device_store(&mut self, dev: DeviceId, bus: BusAddr, len: u64, src: Src<'_>) -> Result<WriteId, SimError> {
        let di = self.check_device(dev)?;
        let chunks = self.translate(di, bus, len)?;
        let w = self.new_write();
        let coherent = self.platform.devices[di].coherent;
        let cached = self.dev_caches[di].is_some();
        for &(pa, off, n) in &chunks {
            if coherent {
                self.snoop_invalidate(pa, n);
            }
            if cached {
                for (a, o, k) in self.line_pieces(Sel::Dev(di), pa, n) {
                    let pfn = a / PAGE_SIZE;
                    let po = (a % PAGE_SIZE) as usize;
                    let (mask, partial) = self.chunk_masks(po, k);
                    self.make_present(Sel::Dev(di), pfn, mask, partial);
                    let cp = self.cache_mut(Sel::Dev(di)).page_or_insert(pfn);
                    src.put(&mut cp.data[po..po + k], off + o);
                    cp.prov.set(po, k, w);
                    cp.dirty |= mask;
                }
            } else {
                self.mem_write(pa, n, src, off, ProvSrc::Id(w));
            }
        }
        self.stats.device_write_bytes += len;
        self.stats.access_cycles += len.div_ceil(self.line) * self.platform.costs.device_access_line;
        self.emit(Event::DeviceWrite { dev, bus, len, write: w });
        let ranges = coalesce(chunks.iter().map(|&(pa, _, n)| (pa, n as u64)));
        let writes_memory = !cached;
        self.after_op(OpInfo {
            kind: OpKind::DeviceWrite,
            agent: Agent::Device(dev),
            attr: None,
            ranges,
            writes_memory,
        });
        Ok(w)
    }

    /// A coherent write takes ownership of the CPU's lines: partly overwritten dirty lines
    /// are written back first so their other bytes survive, then every line is dropped.
    fn snoop_invalidate(&mut self, pa: u64, n: usize) {
        let pfn = pa / PAGE_SIZE;
        let po = (pa % PAGE_SIZE) as usize;
        let (mask, partial) = self.chunk_masks(po, n);
        let (valid, dirty) = self.cpu.state(pfn);
        if valid & mask == 0 {
            return;
        }
        self.stats.hw.snoops += (dirty & mask).count_ones() as u64;
        self.write_back(Sel::Cpu, pfn, partial & dirty, Cause::Snoop);
        self.discard(Sel::Cpu, pfn, mask, Cause::Snoop);
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

    /// Whether the device has a private cache.
    pub fn device_has_cache(&self, dev: DeviceId) -> bool {
        self.dev_caches.get(dev.index()).is_some_and(|c| c.is_some())
    }

    fn device_maintenance(&mut self, dev: DeviceId, op: MaintOp, range: PhysRange) -> Result<(), SimError> {
        let di = self.check_device(dev)?;
        self.check_in_regions(range)?;
        if self.dev_caches[di].is_none() || range.is_empty() {
            return Ok(());
        }
        let r = range.align_out(self.line);
        let effective = self.maintain(Sel::Dev(di), op, r);
        let lines = r.len / self.line;
        let c = &self.platform.costs;
        let (per_line, count) = match op {
            MaintOp::DeviceFlush => (c.device_flush_line, &mut self.stats.device_flush),
            _ => (c.device_invalidate_line, &mut self.stats.device_invalidate),
        };
        count.add(lines, r.len, effective, c.device_op + per_line * lines);
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

    // ----- the copy the kernel does for swiotlb ----------------------------------------

    /// Copies `len` bytes from `from` to `to` the way swiotlb does: a CPU memcpy through
    /// the kernel's cacheable linear map (the source is read as the CPU sees it, the
    /// destination lines become dirty in the CPU cache). Counted as bounce traffic.
    pub fn bounce_copy(&mut self, from: PhysAddr, to: PhysAddr, len: u64) -> Result<(), SimError> {
        let src = PhysRange::new(from, len).ok_or(SimError::Overflow)?;
        let dst = PhysRange::new(to, len).ok_or(SimError::Overflow)?;
        self.check_in_regions(src)?;
        self.check_in_regions(dst)?;
        if len == 0 {
            return Ok(());
        }
        let mut buf = vec![0u8; len as usize];
        let mut prov = Vec::new();
        let track = self.track;
        let before = self.stats.access_cycles;
        for (pa, off, n) in page_chunks(from.raw(), len) {
            self.cached_read(pa, &mut buf[off..off + n], track.then_some((&mut prov, off)));
        }
        for (pa, off, n) in page_chunks(to.raw(), len) {
            let p = if track { ProvSrc::Runs(&prov) } else { ProvSrc::Id(WriteId::INITIAL) };
            self.cached_write(pa, n, Src::Bytes(&buf), off, p);
        }
        // The copy's cost is the bounce cost, not an access of the program.
        self.stats.access_cycles = before;
        let lines = src.units(self.line);
        let cycles = lines * self.platform.costs.bounce_line;
        self.stats.bounce.add(lines, len, lines, cycles);
        if self.observed() {
            self.emit(Event::BounceCopy { from: src, to, prov: &prov });
        }
        self.after_op(OpInfo {
            kind: OpKind::BounceCopy,
            agent: Agent::Cpu,
            attr: Some(MemAttr::Cached),
            ranges: vec![src, dst],
            writes_memory: false,
        });
        Ok(())
    }

    // ----- freedoms ---------------------------------------------------------------------

    /// Whether the CPU may speculatively fill the line at `addr`: it lies in memory the
    /// kernel's linear map covers, or a live cacheable mapping covers its page.
    pub fn prefetchable(&self, addr: PhysAddr) -> bool {
        if self.cached_pages.contains_key(&(addr.raw() / PAGE_SIZE)) {
            return true;
        }
        self.platform.region_of(addr).is_some_and(|r| self.platform.regions[r].linear_mapped())
    }

    /// Takes one freedom now. Returns false (and does nothing) when it does not apply: a
    /// write-back of a line that is not dirty, a drop of a line that is not clean, a
    /// prefetch of a line that is present or not prefetchable.
    pub fn take_freedom(&mut self, f: Freedom) -> bool {
        let sel = |sim: &Sim, c: CacheId| match c {
            CacheId::Cpu => Some(Sel::Cpu),
            CacheId::Device(d) => sim.dev_caches.get(d.index()).and_then(|x| x.as_ref()).map(|_| Sel::Dev(d.index())),
        };
        match f {
            Freedom::WriteBack { cache, line } => {
                let Some(s) = sel(self, cache) else { return false };
                let (pfn, l) = self.line_pos(line.raw());
                let n = self.write_back(s, pfn, 1u128 << l, Cause::Freedom);
                self.stats.hw.freedom_write_backs += n;
                n > 0
            }
            Freedom::Drop { cache, line } => {
                let Some(s) = sel(self, cache) else { return false };
                let (pfn, l) = self.line_pos(line.raw());
                let (_, dirty) = self.cache_mut(s).state(pfn);
                if dirty >> l & 1 == 1 {
                    return false;
                }
                let (n, _) = self.discard(s, pfn, 1u128 << l, Cause::Freedom);
                self.stats.hw.freedom_drops += n;
                n > 0
            }
            Freedom::Prefetch { line } => {
                let (pfn, l) = self.line_pos(line.raw());
                let (valid, _) = self.cpu.state(pfn);
                if valid >> l & 1 == 1 || !self.prefetchable(line) || self.platform.region_of(line).is_none() {
                    return false;
                }
                let bit = 1u128 << l;
                if self.cpu.bounded()
                    && let Some(victim) = self.cpu.insert_tag(pfn * self.lines_per_page as u64 + l as u64)
                {
                    self.evict(Sel::Cpu, victim);
                }
                self.fill_from_memory(Sel::Cpu, pfn, bit, Cause::Freedom);
                true
            }
        }
    }

    fn after_op(&mut self, info: OpInfo) {
        if let Some(o) = &mut self.observer {
            o.operation(&info);
        }
        let Some(mut ch) = self.chooser.take() else { return };
        let mut out = std::mem::take(&mut self.freedoms);
        ch.choose(&info, &HwView { sim: self }, &mut out);
        self.chooser = Some(ch);
        let mut i = 0;
        while i < out.len() {
            i += match out[i] {
                // Prefetches of the lines of one page fill together: the same fills as one
                // at a time (an unbounded cache evicts nothing), in one pass over the page.
                Freedom::Prefetch { .. } if !self.cpu.bounded() => self.prefetch_page(&out[i..]),
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
        let (pfn, _) = self.line_pos(line.raw());
        let (valid, _) = self.cpu.state(pfn);
        let mut mask = 0u128;
        let mut n = 0;
        for f in fs {
            let Freedom::Prefetch { line } = *f else { break };
            let (p, l) = self.line_pos(line.raw());
            if p != pfn {
                break;
            }
            n += 1;
            if valid >> l & 1 == 0 && self.prefetchable(line) && self.platform.region_of(line).is_some() {
                mask |= 1u128 << l;
            }
        }
        self.fill_from_memory(Sel::Cpu, pfn, mask, Cause::Freedom);
        n.max(1)
    }
}

/// The page frame numbers a range touches.
fn range_pages(r: &PhysRange) -> std::ops::Range<u64> {
    let first = r.start.raw() / PAGE_SIZE;
    let end = if r.len == 0 { first } else { (r.start.raw() + r.len - 1) / PAGE_SIZE + 1 };
    first..end
}

/// Per-byte write ids from runs over `n` bytes.
fn expand(runs: &[ProvRun], n: usize) -> Vec<WriteId> {
    let mut v = vec![WriteId::INITIAL; n];
    for r in runs {
        let s = r.offset as usize;
        let e = (r.offset + r.len) as usize;
        v[s.min(n)..e.min(n)].fill(r.write);
    }
    v
}

/// Runs from per-byte write ids.
fn compress(ids: &[WriteId]) -> Vec<ProvRun> {
    let mut out = Vec::new();
    for (i, &w) in ids.iter().enumerate() {
        push_run(&mut out, i as u64, 1, w);
    }
    out
}

/// What a [`Chooser`] may look at: the state of lines, never the bytes.
pub struct HwView<'a> {
    sim: &'a Sim,
}

impl HwView<'_> {
    /// The line size.
    pub fn line_size(&self) -> u64 {
        self.sim.line
    }

    /// The state of a line in a cache.
    pub fn line_state(&self, cache: CacheId, addr: PhysAddr) -> LineState {
        self.sim.line_state(cache, addr)
    }

    /// Whether the CPU may prefetch the line at `addr`.
    pub fn prefetchable(&self, addr: PhysAddr) -> bool {
        self.sim.prefetchable(addr)
    }

    fn caches(&self) -> impl Iterator<Item = (CacheId, &LineCache)> {
        std::iter::once((CacheId::Cpu, &self.sim.cpu)).chain(
            self.sim
                .dev_caches
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.as_ref().map(|c| (CacheId::Device(DeviceId(i as u16)), c))),
        )
    }

    /// Calls `f` for every dirty line of every cache in `range`.
    pub fn dirty_lines(&self, range: &PhysRange, mut f: impl FnMut(CacheId, PhysAddr)) {
        if range.is_empty() {
            return;
        }
        let r = range.align_out(self.sim.line);
        let (first, last) = (r.start.raw() / PAGE_SIZE, (r.end().raw() - 1) / PAGE_SIZE);
        for (id, c) in self.caches() {
            for pfn in c.pages_in(first, last) {
                let lo = (pfn * PAGE_SIZE).max(r.start.raw());
                let hi = ((pfn + 1) * PAGE_SIZE).min(r.end().raw());
                let (mask, _) = self.sim.chunk_masks((lo % PAGE_SIZE) as usize, (hi - lo) as usize);
                let (_, dirty) = c.state(pfn);
                for (l0, n) in runs(dirty & mask) {
                    for l in l0..l0 + n {
                        f(id, PhysAddr(pfn * PAGE_SIZE + l as u64 * self.sim.line));
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
        let r = range.align_out(self.sim.line);
        for (pa, _, n) in page_chunks(r.start.raw(), r.len) {
            if !self.sim.prefetchable(PhysAddr(pa)) {
                continue;
            }
            let pfn = pa / PAGE_SIZE;
            let (mask, _) = self.sim.chunk_masks((pa % PAGE_SIZE) as usize, n);
            let (valid, _) = self.sim.cpu.state(pfn);
            for (l0, cnt) in runs(mask & !valid) {
                for l in l0..l0 + cnt {
                    out.push(Freedom::Prefetch { line: PhysAddr(pfn * PAGE_SIZE + l as u64 * self.sim.line) });
                }
            }
        }
    }

    /// Every freedom the hardware could take on the lines of `range` right now: write
    /// back a dirty line, drop a clean one (in any cache), prefetch an absent one. The
    /// choice points an explorer enumerates.
    pub fn candidates(&self, range: &PhysRange, out: &mut Vec<Freedom>) {
        if range.is_empty() {
            return;
        }
        let r = range.align_out(self.sim.line);
        let (first, last) = (r.start.raw() / PAGE_SIZE, (r.end().raw() - 1) / PAGE_SIZE);
        for (id, c) in self.caches() {
            for pfn in c.pages_in(first, last) {
                let lo = (pfn * PAGE_SIZE).max(r.start.raw());
                let hi = ((pfn + 1) * PAGE_SIZE).min(r.end().raw());
                let (mask, _) = self.sim.chunk_masks((lo % PAGE_SIZE) as usize, (hi - lo) as usize);
                let (valid, dirty) = c.state(pfn);
                for (l0, n) in runs(valid & mask) {
                    for l in l0..l0 + n {
                        let line = PhysAddr(pfn * PAGE_SIZE + l as u64 * self.sim.line);
                        out.push(if dirty >> l & 1 == 1 {
                            Freedom::WriteBack { cache: id, line }
                        } else {
                            Freedom::Drop { cache: id, line }
                        });
                    }
                }
            }
        }
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
        let line = self.sim.line as usize;
        let mut prov = Vec::new();
        for &a in lines {
            let (pfn, l) = self.sim.line_pos(a.raw());
            let off = l as usize * line;
            for (id, c) in self.caches() {
                let (valid, dirty) = c.state(pfn);
                let (v, d) = (valid >> l & 1 == 1, dirty >> l & 1 == 1);
                (id, v, d).hash(h);
                if let Some(p) = c.page(pfn).filter(|_| v) {
                    p.data[off..off + line].hash(h);
                    prov.clear();
                    p.prov.runs(off, line, 0, &mut prov);
                    prov.iter().for_each(|r| (r.offset, r.len, r.write).hash(h));
                }
            }
            match self.sim.mem.page(pfn) {
                Some(p) => {
                    p.data[off..off + line].hash(h);
                    prov.clear();
                    p.prov.runs(off, line, 0, &mut prov);
                    prov.iter().for_each(|r| (r.offset, r.len, r.write).hash(h));
                }
                None => 0u8.hash(h),
            }
        }
        for e in &self.sim.wc {
            (e.line, &e.data, &e.mask, &e.prov).hash(h);
        }
    }
}

impl Sim {
    /// [`HwView::hash_lines`] from outside a chooser.
    pub fn hash_lines(&self, lines: &[PhysAddr], h: &mut impl std::hash::Hasher) {
        HwView { sim: self }.hash_lines(lines, h)
    }

    /// The candidates of [`HwView::candidates`], for callers outside a chooser (an
    /// explorer choosing between operations).
    pub fn candidates(&self, range: &PhysRange) -> Vec<Freedom> {
        let mut v = Vec::new();
        HwView { sim: self }.candidates(range, &mut v);
        v
    }
}
