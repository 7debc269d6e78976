//! The [`Sim`] type, its builder and what its parts share.

use rustc_hash::FxHashMap;

use super::error::SimError;
use crate::addr::{PhysAddr, PhysRange};
use crate::cache::RangeAlloc;
use crate::chooser::{Chooser, Never};
use crate::event::{Event, Observer};
use crate::hw::{Hw, HwView, LineState};
use crate::platform::{Platform, RegionKind};
use crate::stats::Stats;
use crate::store::{PageBytes, ProvPage, ProvRun, WriteId};
use crate::vocab::{CacheId, CpuMapId, DeviceId, Freedom, MemAttr};

/// A mismatched alias: one page mapped by the CPU with two attributes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AliasConflict {
    /// The first page mapped with both attributes (`range.start`).
    pub page: PhysAddr,
    /// Attribute of the mapping that was there.
    pub existing: MemAttr,
    /// Attribute of the new mapping.
    pub new: MemAttr,
    /// The mapping just made, which created the alias.
    pub map: CpuMapId,
    /// The bytes mapped with both attributes (one mapping's range over the other's).
    pub range: PhysRange,
}

/// A live CPU mapping: physical pages at consecutive offsets, with one attribute.
pub(super) struct CpuMapping {
    /// Page-aligned physical ranges, in mapping order.
    pub(super) ranges: Vec<PhysRange>,
    /// Offset in the mapping of each range's first byte.
    pub(super) starts: Vec<u64>,
    pub(super) size: u64,
    pub(super) attr: MemAttr,
}

impl CpuMapping {
    /// The physical address of byte `off` (below `size`).
    pub(super) fn phys(&self, off: u64) -> u64 {
        let i = self.starts.partition_point(|&s| s <= off) - 1;
        self.ranges[i].start.raw() + (off - self.starts[i])
    }
}

/// Bytes to write: a slice, or one byte repeated (bulk fills without a buffer).
#[derive(Clone, Copy)]
pub(super) enum Src<'a> {
    Bytes(&'a [u8]),
    Fill(u8),
}

impl Src<'_> {
    /// Writes bytes `[off, off + n)` of the source at `at` in page `dst`.
    pub(super) fn put(&self, dst: &mut PageBytes, at: usize, n: usize, off: usize) {
        match self {
            Src::Bytes(b) => dst.write(at, &b[off..off + n]),
            Src::Fill(v) => dst.fill(at, n, *v),
        }
    }

    /// Writes bytes `[off, off + dst.len())` of the source into `dst`.
    pub(super) fn put_slice(&self, dst: &mut [u8], off: usize) {
        match self {
            Src::Bytes(b) => dst.copy_from_slice(&b[off..off + dst.len()]),
            Src::Fill(v) => dst.fill(*v),
        }
    }
}

/// Where the provenance of written bytes comes from.
#[derive(Clone, Copy)]
pub(super) enum ProvSrc<'a> {
    /// A new write.
    Id(WriteId),
    /// Copied bytes: runs relative to the start of the write.
    Runs(&'a [ProvRun]),
}

impl ProvSrc<'_> {
    pub(super) fn apply(&self, p: &mut ProvPage, dst_off: usize, n: usize, src_off: usize) {
        match self {
            ProvSrc::Id(id) => p.set(dst_off, n, *id),
            ProvSrc::Runs(r) => p.set_from_runs(dst_off, n, src_off as u64, r),
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
        let iommus = (0..p.devices.len())
            .map(|i| {
                p.devices[i].iommu.then(|| {
                    let (first, last) = p.iova_space(i);
                    let len = if last >= first { last - first + 1 } else { 0 };
                    Iommu { space: RangeAlloc::new(first, len), table: FxHashMap::default() }
                })
            })
            .collect();
        let bounce = p.regions.iter().find(|r| r.kind == RegionKind::Bounce).map(|r| {
            let range = r.range();
            BouncePool { range, alloc: RangeAlloc::new(range.start.raw(), range.len), slots: FxHashMap::default() }
        });
        Sim {
            hw: Hw::new(p, bounded, track),
            maps: Vec::new(),
            iommus,
            bounce,
            stats: Stats::default(),
            chooser: Some(self.chooser),
            observer: self.observer,
            track,
            next_write: 1,
            freedoms: Vec::new(),
            aliases: Vec::new(),
        }
    }
}

/// One device's IOMMU: its IOVA space and page table.
pub(super) struct Iommu {
    pub(super) space: RangeAlloc,
    /// IOVA page frame to physical page frame.
    pub(super) table: FxHashMap<u64, u64>,
}

/// The swiotlb bounce pool: its region and the slots handed out.
pub(super) struct BouncePool {
    pub(super) range: PhysRange,
    pub(super) alloc: RangeAlloc,
    /// Allocated slots: start to length.
    pub(super) slots: FxHashMap<u64, u64>,
}

/// The simulated hardware of one platform.
///
/// Every access moves real bytes through the model: a CPU store lands in a cache line, a
/// non-coherent device reads DRAM and sees only what was written back, a cleaned line
/// reaches memory, an invalidated dirty line is gone. After every operation the
/// [`Chooser`] decides which of the hardware's freedoms to take, so a run is deterministic
/// given its chooser. An [`Observer`] sees every event with provenance.
pub struct Sim {
    /// Memory, caches, the write-combining buffer: what the chooser may look at.
    pub(super) hw: Hw,
    /// CPU mappings by id; `None` once unmapped (ids are never reused).
    pub(super) maps: Vec<Option<CpuMapping>>,
    /// Per device of the platform, its IOMMU if it sits behind one.
    pub(super) iommus: Vec<Option<Iommu>>,
    pub(super) bounce: Option<BouncePool>,
    pub(super) stats: Stats,
    /// Taken out while it chooses, so that it can look at the hardware.
    pub(super) chooser: Option<Box<dyn Chooser>>,
    pub(super) observer: Option<Box<dyn Observer>>,
    /// Whether byte provenance is kept (an observer asked for it).
    pub(super) track: bool,
    pub(super) next_write: u64,
    /// The chooser's output, kept to reuse its allocation.
    pub(super) freedoms: Vec<Freedom>,
    pub(super) aliases: Vec<AliasConflict>,
}

/// A piece of an access within one page: (physical address, offset in the access, length).
pub(super) type Chunk = (u64, usize, usize);

/// Coalesces page chunks `(address, len)` into ranges.
pub(super) fn coalesce(chunks: impl Iterator<Item = (u64, u64)>) -> Vec<PhysRange> {
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

    /// The hardware description the simulator models.
    pub fn platform(&self) -> &Platform {
        &self.hw.platform
    }

    /// The cache line size in bytes, the unit of every cache and of maintenance.
    pub fn line_size(&self) -> u64 {
        self.hw.line
    }

    /// Counters and cycles so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The chooser's name as a command line gives it (`adversarial`, `seeded:7`), to
    /// report or replay a run.
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
        self.hw.mem.resident_pages()
    }

    /// Mismatched aliases seen so far.
    pub fn alias_conflicts(&self) -> &[AliasConflict] {
        &self.aliases
    }

    /// The id of the device the platform description calls `name`.
    pub fn device(&self, name: &str) -> Option<DeviceId> {
        self.hw.platform.device_index(name).map(|i| DeviceId(i as u16))
    }

    pub(super) fn new_write(&mut self) -> WriteId {
        let id = WriteId(self.next_write);
        self.next_write += 1;
        id
    }

    pub(super) fn emit(&mut self, ev: Event<'_>) {
        if let Some(o) = &mut self.observer {
            o.event(&ev);
        }
    }

    pub(super) fn observed(&self) -> bool {
        self.observer.is_some()
    }

    pub(super) fn check_device(&self, dev: DeviceId) -> Result<usize, SimError> {
        if dev.index() < self.hw.platform.devices.len() { Ok(dev.index()) } else { Err(SimError::NoSuchDevice(dev)) }
    }

    /// Checks that every byte of `range` lies in some region.
    pub(super) fn check_in_regions(&self, range: PhysRange) -> Result<(), SimError> {
        let covered: u64 =
            self.hw.platform.regions.iter().filter_map(|r| r.range().intersect(&range)).map(|r| r.len).sum();
        if covered == range.len { Ok(()) } else { Err(SimError::NotInRegion { range }) }
    }

    /// What memory holds, bypassing every cache and costing nothing (for tests and
    /// reports: it is not an access of any agent).
    pub fn peek_memory(&self, addr: PhysAddr, buf: &mut [u8]) {
        self.hw.mem.read(addr.raw(), buf);
    }

    /// The state of a line in a cache.
    pub fn line_state(&self, cache: CacheId, addr: PhysAddr) -> LineState {
        self.hw.line_state(cache, addr)
    }

    /// [`HwView::hash_lines`] from outside a chooser.
    pub fn hash_lines(&self, lines: &[PhysAddr], h: &mut impl std::hash::Hasher) {
        HwView::new(&self.hw).hash_lines(lines, h)
    }

    /// The candidates of [`HwView::candidates`], for callers outside a chooser (an
    /// explorer choosing between operations).
    pub fn candidates(&self, range: &PhysRange) -> Vec<Freedom> {
        let mut v = Vec::new();
        HwView::new(&self.hw).candidates(range, &mut v);
        v
    }
}
