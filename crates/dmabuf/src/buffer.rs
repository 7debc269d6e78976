//! Buffers, attachments, mappings and CPU access on the simulated hardware.
//!
//! The objects and their kernel names:
//!
//! | here | kernel |
//! |---|---|
//! | [`System`] | the machine: the simulated hardware plus the framework's state |
//! | [`Heap::allocate`] | `DMA_HEAP_IOCTL_ALLOC` |
//! | [`DmaBuf`] (clone / drop) | `struct dma_buf` (`get_dma_buf` / `dma_buf_put`) |
//! | [`DmaBuf::attach`] / drop of [`Attachment`] | `dma_buf_attach` / `dma_buf_detach` |
//! | [`Attachment::map`] / drop of [`Mapping`] | `dma_buf_map_attachment` / `dma_buf_unmap_attachment` |
//! | [`DmaBuf::begin_cpu_access`] / drop of [`CpuAccess`] | `dma_buf_begin_cpu_access` / `dma_buf_end_cpu_access` |
//! | [`DmaBuf::mmap`], [`UserMapping::sync`] | `mmap` of the fd, `DMA_BUF_IOCTL_SYNC` |
//! | [`DmaBuf::resv`] | `dma_buf->resv` |
//! | [`DmaBuf::export_sync_file`] / [`DmaBuf::import_sync_file`] | `DMA_BUF_IOCTL_EXPORT_SYNC_FILE` / `IMPORT_SYNC_FILE` |
//! | [`DmaBuf::poll`] | `poll` on the fd (`dma_buf_poll`) |
//!
//! Every CPU bracket first waits for the fences it must (`dma_buf_begin_cpu_access`
//! waits with `dma_resv_wait_timeout`): a read for the writers, a write for everyone.
//!
//! Brackets and mappings are RAII guards: a mapping unmaps on drop, a CPU access ends on
//! drop, so the safe API cannot forget them. The raw path stays available
//! ([`UserMapping::sync`] with any flags, [`UserMapping::read_unsynced`]) because a checker's
//! users must be able to write the mistakes real programs make; the framework records
//! each one as a [`Report`].
//!
//! Maintenance follows the [`MaintenancePolicy`]: `Linux` does what the upstream system
//! heap does (a whole-buffer sync of every mapped attachment at every CPU bracket, full
//! maintenance at map and unmap); `Minimal` maintains only the byte ranges declared
//! written since the last hand-over, only for non-coherent parties, and nothing at all on
//! a coherent platform. `Minimal` never looks at the simulator's cache state.

use std::cell::RefCell;
use std::mem::ManuallyDrop;
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use dmabuf_sim::{
    CpuMapId, DeviceId, DmaAttrs, DmaDirection, DmaMapping, PhysRange, Platform, Sim, SimError, Stats, WriteId,
};

use crate::attach::{AttachError, AttachPlan, AttachPolicy, Backing, ImporterCaps, check_attach};
use crate::fence::{FenceError, unwrap};
use crate::heap::{DeviceBuffer, Exporter, HeapKind, PageAllocator, UdmabufBuffer};
use crate::ranges::RangeSet;
use crate::resv::{Resv, ResvUsage};
use crate::sync_file::SyncFile;
use crate::uapi::{Readiness, SyncFlags};

/// Which maintenance the framework performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MaintenancePolicy {
    /// What the upstream system heap does: whole buffers, every mapped attachment.
    Linux,
    /// Only the ranges declared written since the last hand-over, only for non-coherent
    /// parties.
    #[default]
    Minimal,
}

/// How a [`System`] behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SystemConfig {
    /// Whether attach enforces the rules.
    pub attach: AttachPolicy,
    /// Which maintenance the framework performs.
    pub maintenance: MaintenancePolicy,
}

/// A protocol violation or leak the framework saw (the DMA-API-debug class).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Report {
    /// The CPU touched an mmap outside a `DMA_BUF_IOCTL_SYNC` bracket.
    AccessOutsideBracket {
        /// The buffer.
        buffer: String,
        /// The bytes.
        range: Range<u64>,
        /// Whether it was a write.
        write: bool,
    },
    /// `DMA_BUF_IOCTL_SYNC` with flags the kernel refuses (EINVAL).
    BadSyncFlags {
        /// The buffer.
        buffer: String,
        /// The flags.
        flags: u64,
    },
    /// An end without a matching start.
    DoubleEnd {
        /// The buffer.
        buffer: String,
    },
    /// A sync end whose direction differs from its start.
    DirectionMismatch {
        /// The buffer.
        buffer: String,
        /// The direction the bracket started with.
        started: DmaDirection,
        /// The direction it ended with.
        ended: DmaDirection,
    },
    /// An attachment refused under `Strict` was let through under the `Linux` policy.
    AttachAccepted {
        /// The refusal `Strict` would have given.
        error: AttachError,
    },
    /// Attachments were still attached when the buffer was released.
    LeakedAttachments {
        /// The buffer.
        buffer: String,
        /// How many.
        count: usize,
    },
    /// Mappings were still mapped when the buffer was released.
    LeakedMappings {
        /// The buffer.
        buffer: String,
        /// How many.
        count: usize,
    },
    /// An unmap of an attachment that is not mapped.
    UnmapNotMapped {
        /// The buffer.
        buffer: String,
        /// The device.
        device: String,
    },
    /// A device accessed a buffer through an attachment it has not mapped.
    DeviceAccessUnmapped {
        /// The buffer.
        buffer: String,
        /// The device.
        device: String,
    },
    /// A device accessed a mapping against its direction (a write through a TO_DEVICE
    /// mapping, a read through a FROM_DEVICE one).
    DeviceDirection {
        /// The buffer.
        buffer: String,
        /// The device.
        device: String,
        /// The mapping's direction.
        mapped: DmaDirection,
        /// What it did: "read" or "write".
        access: &'static str,
    },
    /// A vunmap of a buffer that is not vmapped.
    VunmapNotMapped {
        /// The buffer.
        buffer: String,
    },
}

/// Why a framework call failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Attach refused a device (under the `Strict` policy).
    #[error(transparent)]
    Attach(#[from] AttachError),
    /// The hardware refused an operation.
    #[error(transparent)]
    Hardware(#[from] SimError),
    /// No heap has that name.
    #[error("no heap `{name}`; heaps: {}", HeapKind::ALL.map(HeapKind::name).join(", "))]
    NoSuchHeap {
        /// The name asked for.
        name: String,
    },
    /// The platform has no device with that name.
    #[error("no device `{name}` on platform {platform}; devices: {known}")]
    NoSuchDevice {
        /// The name asked for.
        name: String,
        /// The platform.
        platform: String,
        /// The devices it has.
        known: String,
    },
    /// The heap could not provide the memory.
    #[error("heap `{heap}` cannot allocate {size} bytes (ENOMEM)")]
    OutOfMemory {
        /// The heap.
        heap: String,
        /// The size asked for.
        size: u64,
    },
    /// A zero-sized allocation (the kernel refuses it with EINVAL).
    #[error("a dma-buf cannot be empty (EINVAL)")]
    ZeroSize,
    /// A byte range outside the buffer.
    #[error("range {start:#x}..{end:#x} is outside buffer `{buffer}` of {size:#x} bytes")]
    OutOfBounds {
        /// The buffer.
        buffer: String,
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
        /// The buffer's size.
        size: u64,
    },
    /// `DMA_BUF_IOCTL_SYNC` flags the kernel refuses.
    #[error("DMA_BUF_IOCTL_SYNC: flags {flags:#x} are invalid (EINVAL): use READ, WRITE or RW with START or END")]
    BadSyncFlags {
        /// The flags.
        flags: u64,
    },
    /// `DMA_BUF_IOCTL_EXPORT_SYNC_FILE` or `IMPORT_SYNC_FILE` with flags that are not a
    /// non-empty subset of READ | WRITE (EINVAL).
    #[error("{ioctl}: flags {flags:#x} are invalid (EINVAL): use READ (0x1), WRITE (0x2) or both")]
    BadSyncFileFlags {
        /// Which ioctl.
        ioctl: &'static str,
        /// The flags.
        flags: u64,
    },
    /// A fence, reservation-object or sync-file operation failed (a wait timed out, a
    /// simulated wait could never complete, ...).
    #[error(transparent)]
    Fence(#[from] FenceError),
    /// `DMA_BUF_SET_NAME` with a name too long (EINVAL).
    #[error("DMA_BUF_SET_NAME: `{name}` is longer than 31 bytes (EINVAL)")]
    NameTooLong {
        /// The name.
        name: String,
    },
    /// A migration was asked for while an importer pins the buffer.
    #[error("cannot move `{buffer}`: `{device}` pins it (a static importer, or an explicit pin)")]
    Pinned {
        /// The buffer.
        buffer: String,
        /// The device that pins it.
        device: String,
    },
    /// A migration was asked for while the buffer is mapped (by a device or the CPU).
    #[error("cannot move `{buffer}` while it is mapped ({what})")]
    Busy {
        /// The buffer.
        buffer: String,
        /// Who maps it.
        what: String,
    },
    /// The exporter cannot move its memory.
    #[error("`{buffer}` comes from `{exporter}`, which cannot migrate buffers")]
    NotDynamic {
        /// The buffer.
        buffer: String,
        /// The exporter.
        exporter: String,
    },
    /// `UDMABUF_CREATE` refused the request (EINVAL), for the reason given.
    #[error("UDMABUF_CREATE: {reason} (EINVAL)")]
    Udmabuf {
        /// Which of udmabuf's rules was broken.
        reason: String,
    },
    /// The exporter refused a user mapping.
    #[error("mmap of `{buffer}` refused by its exporter: {reason}")]
    MmapRefused {
        /// The buffer.
        buffer: String,
        /// The exporter's reason.
        reason: String,
    },
    /// The device has no local memory to export.
    #[error("`{device}` has no local memory to export buffers from")]
    NoLocalMemory {
        /// The device.
        device: String,
    },
    /// A map of an attachment that is already mapped.
    #[error("`{device}` has already mapped `{buffer}`: unmap it first")]
    AlreadyMapped {
        /// The buffer.
        buffer: String,
        /// The device.
        device: String,
    },
    /// An unmap, or a device access, of an attachment that is not mapped.
    #[error("`{device}` has not mapped `{buffer}`")]
    NotMapped {
        /// The buffer.
        buffer: String,
        /// The device.
        device: String,
    },
    /// A device access through a mapping the device did not map for that direction.
    #[error("`{device}` mapped `{buffer}` {mapped:?} and cannot {access} it")]
    WrongDirection {
        /// The buffer.
        buffer: String,
        /// The device.
        device: String,
        /// The mapping's direction.
        mapped: DmaDirection,
        /// What it tried.
        access: &'static str,
    },
}

/// `DMA_BUF_SYNC_READ`.
pub const DMA_BUF_SYNC_READ: u64 = 1;
/// `DMA_BUF_SYNC_WRITE`.
pub const DMA_BUF_SYNC_WRITE: u64 = 2;
/// `DMA_BUF_SYNC_RW`.
pub const DMA_BUF_SYNC_RW: u64 = 3;
/// `DMA_BUF_SYNC_START`.
pub const DMA_BUF_SYNC_START: u64 = 0;
/// `DMA_BUF_SYNC_END`.
pub const DMA_BUF_SYNC_END: u64 = 4;

/// Decodes `DMA_BUF_IOCTL_SYNC` flags as the kernel does: any bit outside RW|END, or no
/// direction, is EINVAL. Returns (is end, direction).
pub fn decode_sync_flags(flags: u64) -> Option<(bool, DmaDirection)> {
    if flags & !(DMA_BUF_SYNC_RW | DMA_BUF_SYNC_END) != 0 {
        return None;
    }
    let dir = match flags & DMA_BUF_SYNC_RW {
        DMA_BUF_SYNC_READ => DmaDirection::FromDevice,
        DMA_BUF_SYNC_WRITE => DmaDirection::ToDevice,
        DMA_BUF_SYNC_RW => DmaDirection::Bidirectional,
        _ => return None,
    };
    Some((flags & DMA_BUF_SYNC_END != 0, dir))
}

struct AttState {
    dev: usize,
    plan: AttachPlan,
    caps: ImporterCaps,
    /// Pins held: a static importer of a dynamic exporter holds one from attach.
    pins: u32,
    /// A dynamic importer's `move_notify`.
    move_notify: Option<Box<dyn FnMut()>>,
    mapping: Option<DmaMapping>,
    /// Bytes this device wrote since it mapped.
    written: RangeSet,
    /// Bytes others changed since this device's cache last looked (device caches only).
    stale: RangeSet,
}

struct BufState {
    name: String,
    exporter: Box<dyn Exporter>,
    refs: usize,
    attachments: Vec<Option<AttState>>,
    /// The exporter's kernel mapping (vmap), made on first CPU access.
    kmap: Option<CpuMapId>,
    /// Bytes the CPU wrote since the last hand-over to a device (Minimal).
    cpu_dirty: RangeSet,
    /// Bytes non-coherent devices wrote since the CPU last looked (Minimal).
    dev_dirty: RangeSet,
    /// The user-space sync bracket in progress, with the bytes written in it.
    user_bracket: Option<(DmaDirection, RangeSet)>,
    /// Live user-space mappings.
    mmaps: usize,
    /// Kernel CPU brackets in progress, and what vmap writes declared inside them.
    kernel_brackets: u32,
    kernel_written: RangeSet,
    /// Directions of brackets opened with the unguarded `begin_cpu_access_raw`.
    raw_brackets: Vec<DmaDirection>,
    /// Live kernel mappings (vmap).
    vmaps: u32,
    /// Whether the framework frees the backing at release (heap and device memory), or
    /// the memory belongs to someone else (a udmabuf's memfd, a custom exporter).
    owns_pages: bool,
    released: bool,
    /// The reservation object: the fences of the buffer's users (`dma_buf->resv`).
    resv: Arc<Resv>,
}

impl BufState {
    fn new(exporter: Box<dyn Exporter>, id: usize) -> Self {
        BufState {
            name: format!("buf{id}"),
            exporter,
            refs: 1,
            attachments: Vec::new(),
            kmap: None,
            cpu_dirty: RangeSet::new(),
            dev_dirty: RangeSet::new(),
            user_bracket: None,
            mmaps: 0,
            kernel_brackets: 0,
            kernel_written: RangeSet::new(),
            raw_brackets: Vec::new(),
            vmaps: 0,
            owns_pages: false,
            released: false,
            resv: Arc::new(Resv::new()),
        }
    }
}

struct Inner {
    sim: Sim,
    cfg: SystemConfig,
    pages: PageAllocator,
    bufs: Vec<BufState>,
    reports: Vec<Report>,
}

/// The DMA-buf framework on one simulated machine. Cheap to clone (a shared handle);
/// single-threaded, like the simulation it drives.
#[derive(Clone)]
pub struct System(Rc<RefCell<Inner>>);

impl System {
    /// The framework on `sim`.
    pub fn new(sim: Sim, cfg: SystemConfig) -> System {
        let pages = PageAllocator::new(sim.platform());
        System(Rc::new(RefCell::new(Inner { sim, cfg, pages, bufs: Vec::new(), reports: Vec::new() })))
    }

    /// The configuration.
    pub fn config(&self) -> SystemConfig {
        self.0.borrow().cfg
    }

    /// Runs `f` on the simulated hardware (to read memory in tests, add freedoms, read stats).
    pub fn with_sim<R>(&self, f: impl FnOnce(&mut Sim) -> R) -> R {
        f(&mut self.0.borrow_mut().sim)
    }

    /// The hardware's counters.
    pub fn stats(&self) -> Stats {
        *self.0.borrow().sim.stats()
    }

    /// The platform.
    pub fn platform(&self) -> Platform {
        self.0.borrow().sim.platform().clone()
    }

    /// Protocol violations and leaks seen so far.
    pub fn reports(&self) -> Vec<Report> {
        self.0.borrow().reports.clone()
    }

    /// A heap by name (`system`, `cma`, `uncached`, or the kernel's other names for CMA).
    pub fn heap(&self, name: &str) -> Result<Heap, Error> {
        let kind = HeapKind::from_name(name).ok_or_else(|| Error::NoSuchHeap { name: name.into() })?;
        Ok(Heap { sys: self.clone(), kind })
    }

    /// A device by name.
    pub fn device(&self, name: &str) -> Result<DeviceId, Error> {
        let inner = self.0.borrow();
        inner.sim.device(name).ok_or_else(|| Error::NoSuchDevice {
            name: name.into(),
            platform: inner.sim.platform().name.clone(),
            known: inner.sim.platform().devices.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", "),
        })
    }
}

/// A dma-buf heap.
pub struct Heap {
    sys: System,
    kind: HeapKind,
}

impl Heap {
    /// Allocates a buffer of `size` bytes (rounded up to pages), zeroed.
    pub fn allocate(&self, size: u64) -> Result<DmaBuf, Error> {
        if size == 0 {
            return Err(Error::ZeroSize);
        }
        let backing = self
            .sys
            .0
            .borrow_mut()
            .pages
            .allocate(self.kind, size)
            .ok_or_else(|| Error::OutOfMemory { heap: self.kind.name().into(), size })?;
        self.sys.register(Box::new(PageAllocator::buffer(self.kind, backing)))
    }
}

/// A device that exports buffers from its local memory (a dGPU's VRAM driver).
pub struct DeviceExporter {
    sys: System,
    dev: usize,
}

impl DeviceExporter {
    /// Allocates a buffer of `size` bytes in the device's local memory, zeroed. The
    /// exporter is dynamic: it can move the buffer to system memory and back.
    pub fn allocate(&self, size: u64) -> Result<DmaBuf, Error> {
        if size == 0 {
            return Err(Error::ZeroSize);
        }
        let mut inner = self.sys.0.borrow_mut();
        let name = format!("{}-vram", inner.sim.platform().devices[self.dev].name);
        let backing = inner
            .pages
            .allocate_local(self.dev, size)
            .ok_or_else(|| Error::OutOfMemory { heap: name.clone(), size })?;
        drop(inner);
        self.sys.register(Box::new(DeviceBuffer { name, owner: self.dev, backing, in_local: true }))
    }
}

/// A memfd: anonymous user memory (cached system pages) that udmabuf can export.
pub struct Memfd {
    sys: System,
    backing: Backing,
    map: CpuMapId,
    sealed_shrink: bool,
}

impl Memfd {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.backing.size()
    }

    /// `fcntl(F_ADD_SEALS, F_SEAL_SHRINK)`: udmabuf refuses memory that could shrink
    /// under the device.
    pub fn seal_shrink(&mut self) {
        self.sealed_shrink = true;
    }

    /// Writes through the process's own (cached) mapping of the memory.
    pub fn write(&self, at: u64, data: &[u8]) -> Result<WriteId, Error> {
        Ok(self.sys.0.borrow_mut().sim.cpu_write(self.map, at, data)?)
    }

    /// Reads through the process's own mapping.
    pub fn read(&self, at: u64, out: &mut [u8]) -> Result<(), Error> {
        Ok(self.sys.0.borrow_mut().sim.cpu_read(self.map, at, out)?)
    }

    /// `UDMABUF_CREATE`: a dma-buf over `[offset, offset + size)` of the memfd. The kernel's
    /// rules: the memfd is sealed against shrinking, offset and size are page aligned and
    /// non-zero, and the range lies inside the memfd. The buffer aliases the memfd's pages
    /// (the same cached attribute, so no mismatched alias).
    pub fn udmabuf(&self, offset: u64, size: u64) -> Result<DmaBuf, Error> {
        let bad = |reason: &str| Err(Error::Udmabuf { reason: reason.into() });
        if !self.sealed_shrink {
            return bad("the memfd is not sealed with F_SEAL_SHRINK");
        }
        if size == 0 {
            return bad("size is zero");
        }
        if !offset.is_multiple_of(dmabuf_sim::PAGE_SIZE) || !size.is_multiple_of(dmabuf_sim::PAGE_SIZE) {
            return bad("offset and size must be multiples of the page size");
        }
        if offset.checked_add(size).is_none_or(|e| e > self.size()) {
            return bad("the range runs past the end of the memfd");
        }
        let (first, count) = ((offset / dmabuf_sim::PAGE_SIZE) as usize, (size / dmabuf_sim::PAGE_SIZE) as usize);
        let mut pages = Vec::new();
        for r in &self.backing.pages {
            for i in 0..r.len / dmabuf_sim::PAGE_SIZE {
                pages.push(PhysRange { start: r.start.add(i * dmabuf_sim::PAGE_SIZE), len: dmabuf_sim::PAGE_SIZE });
            }
        }
        let backing = Backing { pages: pages[first..first + count].to_vec(), attr: self.backing.attr };
        Ok(self.sys.adopt(Box::new(UdmabufBuffer { backing })))
    }
}

impl Drop for Memfd {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.sys.0.try_borrow_mut() {
            let _ = inner.sim.cpu_unmap(self.map);
            // A real memfd lives while a udmabuf holds its pages; the model keeps the
            // pages allocated for the rest of the simulation instead of tracking that.
        }
    }
}

impl System {
    /// `memfd_create` and `ftruncate(size)`: zeroed anonymous memory, mapped cached.
    pub fn memfd(&self, size: u64) -> Result<Memfd, Error> {
        if size == 0 {
            return Err(Error::ZeroSize);
        }
        let mut inner = self.0.borrow_mut();
        let backing = inner
            .pages
            .allocate(HeapKind::System, size)
            .ok_or_else(|| Error::OutOfMemory { heap: "memfd".into(), size })?;
        let map = inner.sim.cpu_map(&backing.pages, backing.attr)?;
        inner.sim.cpu_fill(map, 0, backing.size(), 0)?;
        Ok(Memfd { sys: self.clone(), backing, map, sealed_shrink: false })
    }

    /// `dma_buf_export`: makes a buffer of a custom exporter's memory (a test's stand-in
    /// for a driver's objects). The memory stays the exporter's: it is neither cleared
    /// nor freed by the framework.
    pub fn export(&self, exporter: Box<dyn Exporter>) -> DmaBuf {
        self.adopt(exporter)
    }

    /// Wraps memory that already has content (a udmabuf's pages) as a buffer, without
    /// clearing it.
    fn adopt(&self, exporter: Box<dyn Exporter>) -> DmaBuf {
        let mut inner = self.0.borrow_mut();
        let id = inner.bufs.len();
        inner.bufs.push(BufState::new(exporter, id));
        DmaBuf { sys: self.clone(), id }
    }

    /// The exporter of `device`'s local memory.
    pub fn device_exporter(&self, device: &str) -> Result<DeviceExporter, Error> {
        let dev = self.device(device)?.index();
        if !self.0.borrow().pages.has_local(dev) {
            return Err(Error::NoLocalMemory { device: device.into() });
        }
        Ok(DeviceExporter { sys: self.clone(), dev })
    }

    /// Makes a buffer of an exporter's freshly allocated memory: zeroes it, as every
    /// exporter must, and hands it out.
    fn register(&self, exporter: Box<dyn Exporter>) -> Result<DmaBuf, Error> {
        let mut inner = self.0.borrow_mut();
        let backing = exporter.backing().clone();
        // Pages come zeroed: clear them, as the heap does, through the kernel's mapping.
        let map = inner.sim.cpu_map(&backing.pages, backing.attr)?;
        inner.sim.cpu_fill(map, 0, backing.size(), 0)?;
        inner.sim.cpu_unmap(map)?;
        let id = inner.bufs.len();
        inner.bufs.push(BufState::new(exporter, id));
        inner.bufs[id].owns_pages = true;
        // The zeroed lines reach memory before anyone sees the buffer, as the CMA heap
        // flushes its freshly cleared pages: no device may read another user's old data.
        // On a platform where every device snoops there is nothing to hand over.
        inner.sim.cpu_barrier();
        let any_noncoherent = inner.sim.platform().devices.iter().any(|d| !d.coherent);
        if any_noncoherent && backing_attr_cached(&inner.bufs[id]) {
            for p in inner.bufs[id].exporter.backing().pages.clone() {
                inner.sim.cache_clean(p)?;
            }
        }
        drop(inner);
        Ok(DmaBuf { sys: self.clone(), id })
    }
}

fn backing_attr_cached(b: &BufState) -> bool {
    b.exporter.needs_cpu_sync()
}

/// Where a dynamic exporter's buffer lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// System memory (scattered cached pages).
    System,
    /// The exporting device's local memory.
    Device,
}

fn total_pins(b: &BufState) -> u32 {
    b.attachments.iter().flatten().map(|a| a.pins).sum()
}

/// A shared buffer (`struct dma_buf`). Cloning takes a reference; dropping the last one
/// releases the buffer, reporting attachments or mappings still alive.
pub struct DmaBuf {
    sys: System,
    id: usize,
}

impl Clone for DmaBuf {
    fn clone(&self) -> Self {
        self.sys.0.borrow_mut().bufs[self.id].refs += 1;
        DmaBuf { sys: self.sys.clone(), id: self.id }
    }
}

impl Drop for DmaBuf {
    fn drop(&mut self) {
        let Ok(mut inner) = self.sys.0.try_borrow_mut() else { return };
        let inner = &mut *inner;
        let b = &mut inner.bufs[self.id];
        b.refs -= 1;
        if b.refs > 0 {
            return;
        }
        b.released = true;
        let live: Vec<_> = b.attachments.iter().flatten().collect();
        let mapped = live.iter().filter(|a| a.mapping.is_some()).count();
        let (name, attached) = (b.name.clone(), live.len());
        if attached > 0 {
            inner.reports.push(Report::LeakedAttachments { buffer: name.clone(), count: attached });
        }
        if mapped > 0 {
            inner.reports.push(Report::LeakedMappings { buffer: name, count: mapped });
        }
        if let Some(m) = b.kmap.take() {
            let _ = inner.sim.cpu_unmap(m);
        }
        b.exporter.release();
        // Pages of a leaked mapping stay with the device; only a clean release frees them.
        if attached == 0 && b.owns_pages {
            inner.pages.free(b.exporter.backing());
        }
    }
}

impl DmaBuf {
    fn with<R>(&self, f: impl FnOnce(&mut Inner, usize) -> R) -> R {
        f(&mut self.sys.0.borrow_mut(), self.id)
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.with(|i, id| i.bufs[id].exporter.backing().size())
    }

    /// The name (`DMA_BUF_SET_NAME`; `buf<N>` until set).
    pub fn name(&self) -> String {
        self.with(|i, id| i.bufs[id].name.clone())
    }

    /// The exporter's name.
    pub fn exporter_name(&self) -> String {
        self.with(|i, id| i.bufs[id].exporter.name().to_string())
    }

    /// The physical pages (what an exporter would put in its sg table).
    pub fn backing(&self) -> Backing {
        self.with(|i, id| i.bufs[id].exporter.backing().clone())
    }

    /// `DMA_BUF_SET_NAME`: at most 31 bytes.
    pub fn set_name(&self, name: &str) -> Result<(), Error> {
        if name.len() > 31 {
            return Err(Error::NameTooLong { name: name.into() });
        }
        self.with(|i, id| i.bufs[id].name = name.to_string());
        Ok(())
    }

    /// The system the buffer lives in.
    pub fn system(&self) -> &System {
        &self.sys
    }

    /// The buffer's reservation object (`dma_buf->resv`): add fences to it under its lock,
    /// wait for them, or walk them.
    pub fn resv(&self) -> Arc<Resv> {
        self.with(|i, id| i.bufs[id].resv.clone())
    }

    /// `DMA_BUF_IOCTL_EXPORT_SYNC_FILE`: a sync file of what an access with `flags` must
    /// wait for: with `DMA_BUF_SYNC_WRITE` every user's fence (usage READ and stricter),
    /// with only `DMA_BUF_SYNC_READ` the writers' (WRITE and stricter). Nothing to wait
    /// for gives a signalled stub. `flags` must be a non-empty subset of READ | WRITE.
    pub fn export_sync_file(&self, flags: u64) -> Result<SyncFile, Error> {
        let flags = Self::sync_file_flags("DMA_BUF_IOCTL_EXPORT_SYNC_FILE", flags)?;
        let fence = self.resv().get_singleton(ResvUsage::rw(flags.writes()))?;
        Ok(SyncFile::new(fence.unwrap_or_else(crate::fence::Fence::stub)))
    }

    /// `DMA_BUF_IOCTL_IMPORT_SYNC_FILE`: adds the fences of `sync_file` (unwrapped) to the
    /// buffer, as writers' fences (usage WRITE) if `flags` has `DMA_BUF_SYNC_WRITE`, else
    /// as readers' (READ). Implicitly synchronised users then wait for them.
    pub fn import_sync_file(&self, flags: u64, sync_file: &SyncFile) -> Result<(), Error> {
        let flags = Self::sync_file_flags("DMA_BUF_IOCTL_IMPORT_SYNC_FILE", flags)?;
        let usage = if flags.writes() { ResvUsage::Write } else { ResvUsage::Read };
        let fences: Vec<_> = unwrap(sync_file.fence()).collect();
        if fences.is_empty() {
            return Ok(());
        }
        let resv = self.resv();
        let mut guard = resv.lock();
        guard.reserve_fences(fences.len());
        for f in &fences {
            guard.add_fence(f, usage)?;
        }
        Ok(())
    }

    fn sync_file_flags(ioctl: &'static str, flags: u64) -> Result<SyncFlags, Error> {
        u32::try_from(flags).ok().and_then(SyncFlags::from_bits).ok_or(Error::BadSyncFileFlags { ioctl, flags })
    }

    /// What `poll` on the buffer reports now (`dma_buf_poll`): readable (`POLLIN`) when
    /// every writer's fence has signalled, writable (`POLLOUT`) when every reader's and
    /// writer's has.
    pub fn poll(&self) -> Readiness {
        let resv = self.resv();
        Readiness {
            readable: resv.test_signaled(ResvUsage::rw(false)),
            writable: resv.test_signaled(ResvUsage::rw(true)),
        }
    }

    /// `poll` with a timeout: waits until the buffer is ready for `interest` (readable
    /// for `Read`, writable for `Write`, either for `ReadWrite`) or `timeout` passes
    /// (`None`: no limit), then reports what is ready. A timeout is not an error: the
    /// readiness says what is not ready.
    pub fn poll_timeout(&self, interest: SyncFlags, timeout: Option<Duration>) -> Result<Readiness, Error> {
        // Readable comes no later than writable, so "either" waits for readable.
        let usage = ResvUsage::rw(interest == SyncFlags::Write);
        match self.resv().wait_timeout(usage, timeout) {
            Ok(()) | Err(FenceError::Timeout) => Ok(self.poll()),
            Err(e) => Err(e.into()),
        }
    }

    fn check_range(&self, r: &Range<u64>) -> Result<(), Error> {
        let size = self.size();
        if r.start > r.end || r.end > size {
            return Err(Error::OutOfBounds { buffer: self.name(), start: r.start, end: r.end, size });
        }
        Ok(())
    }

    /// `dma_buf_attach`: checks the device against the buffer. Under `Strict` a
    /// combination that cannot work is refused here; under `Linux` it is accepted and
    /// recorded as a [`Report::AttachAccepted`].
    pub fn attach(&self, dev: DeviceId) -> Result<Attachment, Error> {
        self.attach_with(dev, ImporterCaps::default())
    }

    /// `dma_buf_dynamic_attach` with the importer's capabilities.
    pub fn attach_with(&self, dev: DeviceId, caps: ImporterCaps) -> Result<Attachment, Error> {
        let idx = self.attach_state(dev, caps)?;
        // An attachment does not hold a reference on the buffer (as in the kernel, the
        // importer holds the file): releasing the buffer with attachments left is a leak.
        Ok(Attachment { buf: ManuallyDrop::new(DmaBuf { sys: self.sys.clone(), id: self.id }), idx })
    }

    /// `dma_buf_dynamic_attach` with `move_notify`: the importer does not pin the buffer;
    /// when the exporter moves it, `move_notify` is called and the importer must map
    /// again.
    pub fn attach_dynamic(
        &self,
        dev: DeviceId,
        allow_peer2peer: bool,
        move_notify: impl FnMut() + 'static,
    ) -> Result<Attachment, Error> {
        let caps = ImporterCaps { allow_peer2peer, dynamic: true };
        let idx = self.attach_state(dev, caps)?;
        self.with(|i, id| {
            if let Some(a) = i.bufs[id].attachments[idx].as_mut() {
                a.move_notify = Some(Box::new(move_notify));
            }
        });
        Ok(Attachment { buf: ManuallyDrop::new(DmaBuf { sys: self.sys.clone(), id: self.id }), idx })
    }

    fn attach_state(&self, dev: DeviceId, caps: ImporterCaps) -> Result<usize, Error> {
        if dev.index() >= self.sys.platform().devices.len() {
            return Err(SimError::NoSuchDevice(dev).into());
        }
        // A dynamic exporter moves the buffer where the new importer can reach it (to
        // system memory), unless someone pins it where it is.
        let (refused, dynamic) = self.with(|inner, id| {
            let b = &inner.bufs[id];
            let r = check_attach(inner.sim.platform(), &b.name, b.exporter.backing(), dev.index(), caps);
            (r.err(), b.exporter.is_dynamic())
        });
        if let Some(e) = refused
            && dynamic
            && matches!(e, AttachError::NoPeerToPeer { .. } | AttachError::PeerToPeerNotAllowed { .. })
            && self.can_migrate().is_ok()
        {
            self.migrate(Placement::System)?;
        }
        let mut inner = self.sys.0.borrow_mut();
        let inner = &mut *inner;
        let platform = inner.sim.platform();
        let b = &inner.bufs[self.id];
        let plan = match check_attach(platform, &b.name, b.exporter.backing(), dev.index(), caps) {
            Ok(plan) => plan,
            Err(e) if inner.cfg.attach == AttachPolicy::Strict => return Err(e.into()),
            Err(e) => {
                inner.reports.push(Report::AttachAccepted { error: e });
                if platform.devices[dev.index()].iommu { AttachPlan::Iommu } else { AttachPlan::Direct }
            }
        };
        let desc = inner.sim.platform().devices[dev.index()].clone();
        let b = &mut inner.bufs[self.id];
        if let Err(reason) = b.exporter.attach(&desc) {
            return Err(AttachError::RefusedByExporter {
                buffer: b.name.clone(),
                device: desc.name,
                exporter: b.exporter.name().into(),
                reason,
            }
            .into());
        }
        let idx = b.attachments.len();
        // A static importer of a dynamic exporter pins the buffer for as long as it is
        // attached.
        let pins = u32::from(b.exporter.is_dynamic() && !caps.dynamic);
        if pins > 0 && total_pins(b) == 0 {
            b.exporter.pin();
        }
        b.attachments.push(Some(AttState {
            dev: dev.index(),
            plan,
            caps,
            pins,
            move_notify: None,
            mapping: None,
            written: RangeSet::new(),
            stale: RangeSet::new(),
        }));
        Ok(idx)
    }

    /// `dma_buf_begin_cpu_access`: the kernel's CPU bracket. The bytes are read and
    /// written through the returned guard; dropping it is `dma_buf_end_cpu_access`.
    pub fn begin_cpu_access(&self, dir: DmaDirection) -> Result<CpuAccess<'_>, Error> {
        self.begin_cpu_access_partial(dir, 0..self.size())
    }

    /// `dma_buf_begin_cpu_access_partial` (Android kernels): a bracket declared to touch
    /// only `range`, so the maintenance can be limited to it. Accesses outside it fail.
    pub fn begin_cpu_access_partial(&self, dir: DmaDirection, range: Range<u64>) -> Result<CpuAccess<'_>, Error> {
        self.check_range(&range)?;
        self.begin_cpu_bracket(dir, range.clone())?;
        self.with(|i, id| i.bufs[id].kernel_brackets += 1);
        Ok(CpuAccess { buf: self, dir, range, written: RangeSet::new(), ended: false })
    }

    /// `dma_buf_begin_cpu_access` without a guard, as kernel code calls it: the bracket
    /// stays open until [`DmaBuf::end_cpu_access_raw`]. Accesses in between go through a
    /// [`Vmap`]. This path exists to express what real code gets wrong; the guard of
    /// [`DmaBuf::begin_cpu_access`] is the safe one.
    pub fn begin_cpu_access_raw(&self, dir: DmaDirection, range: Range<u64>) -> Result<(), Error> {
        self.check_range(&range)?;
        self.begin_cpu_bracket(dir, range)?;
        self.with(|i, id| {
            let b = &mut i.bufs[id];
            b.kernel_brackets += 1;
            b.raw_brackets.push(dir);
        });
        Ok(())
    }

    /// `dma_buf_end_cpu_access` without a guard. An end with no bracket open, or with
    /// another direction than its begin, is reported; the exporter's end runs anyway, as
    /// in the kernel.
    pub fn end_cpu_access_raw(&self, dir: DmaDirection) -> Result<(), Error> {
        let name = self.name();
        let written = self.with(|i, id| {
            let b = &mut i.bufs[id];
            match b.raw_brackets.pop() {
                None => {
                    i.reports.push(Report::DoubleEnd { buffer: name });
                    RangeSet::new()
                }
                Some(started) => {
                    if started != dir {
                        i.reports.push(Report::DirectionMismatch { buffer: name, started, ended: dir });
                    }
                    b.kernel_brackets = b.kernel_brackets.saturating_sub(1);
                    if b.kernel_brackets == 0 {
                        std::mem::take(&mut b.kernel_written)
                    } else {
                        b.kernel_written.clone()
                    }
                }
            }
        });
        self.end_cpu_bracket(dir, &written)
    }

    /// `dma_buf_vmap` without a guard: the mapping stays until [`DmaBuf::vunmap_raw`].
    pub fn vmap_raw(&self) -> Result<(), Error> {
        let mut inner = self.sys.0.borrow_mut();
        self.kmap(&mut inner)?;
        let b = &mut inner.bufs[self.id];
        b.vmaps += 1;
        b.exporter.vmap();
        Ok(())
    }

    /// `dma_buf_vunmap` without a guard; a vunmap of what is not vmapped is reported.
    pub fn vunmap_raw(&self) -> Result<(), Error> {
        let name = self.name();
        let ok = self.with(|i, id| {
            let b = &mut i.bufs[id];
            if b.vmaps == 0 {
                i.reports.push(Report::VunmapNotMapped { buffer: name });
                return false;
            }
            b.vmaps -= 1;
            b.exporter.vunmap();
            true
        });
        if ok { Ok(()) } else { Err(Error::NotMapped { buffer: self.name(), device: "the kernel (vmap)".into() }) }
    }

    /// Whether the kernel holds a vmap of the buffer.
    pub fn is_vmapped(&self) -> bool {
        self.with(|i, id| i.bufs[id].vmaps > 0)
    }

    /// A CPU read through the kernel mapping, as code holding a vmap does it: inside a
    /// bracket or reported.
    pub fn kernel_read(&self, at: u64, out: &mut [u8]) -> Result<(), Error> {
        let r = at..at.saturating_add(out.len() as u64);
        self.check_range(&r)?;
        self.note_kernel_access(r, false);
        let mut inner = self.sys.0.borrow_mut();
        let m = self.kmap(&mut inner)?;
        Ok(inner.sim.cpu_read(m, at, out)?)
    }

    /// A CPU write through the kernel mapping: inside a bracket or reported.
    pub fn kernel_write(&self, at: u64, data: &[u8]) -> Result<WriteId, Error> {
        let r = at..at.saturating_add(data.len() as u64);
        self.check_range(&r)?;
        self.note_kernel_access(r, true);
        let mut inner = self.sys.0.borrow_mut();
        let m = self.kmap(&mut inner)?;
        Ok(inner.sim.cpu_write(m, at, data)?)
    }

    /// A CPU fill of `r` with `byte` through the kernel mapping: inside a bracket or
    /// reported.
    pub fn kernel_fill(&self, r: Range<u64>, byte: u8) -> Result<WriteId, Error> {
        self.check_range(&r)?;
        self.note_kernel_access(r.clone(), true);
        let mut inner = self.sys.0.borrow_mut();
        let m = self.kmap(&mut inner)?;
        Ok(inner.sim.cpu_fill(m, r.start, r.end - r.start, byte)?)
    }

    fn note_kernel_access(&self, r: Range<u64>, write: bool) {
        let name = self.name();
        self.with(|i, id| {
            let b = &mut i.bufs[id];
            if b.kernel_brackets > 0 {
                if write {
                    b.kernel_written.insert(r);
                }
            } else if let Some((_, w)) = &mut b.user_bracket {
                if write {
                    w.insert(r);
                }
            } else {
                i.reports.push(Report::AccessOutsideBracket { buffer: name, range: r, write });
            }
        });
    }

    /// `dma_buf_vmap`: a kernel mapping of the whole buffer.
    pub fn vmap(&self) -> Result<Vmap<'_>, Error> {
        self.vmap_raw()?;
        Ok(Vmap { buf: self })
    }

    /// `mmap` of the buffer for user space, with the exporter's attribute.
    pub fn mmap(&self) -> Result<UserMapping, Error> {
        if let Err(reason) = self.with(|i, id| i.bufs[id].exporter.mmap()) {
            return Err(Error::MmapRefused { buffer: self.name(), reason });
        }
        let map = self.with(|i, id| {
            let b = i.bufs[id].exporter.backing().clone();
            let m = i.sim.cpu_map(&b.pages, b.attr);
            if m.is_ok() {
                i.bufs[id].mmaps += 1;
            }
            m
        })?;
        Ok(UserMapping { buf: self.clone(), map })
    }

    fn kmap(&self, inner: &mut Inner) -> Result<CpuMapId, Error> {
        if let Some(m) = inner.bufs[self.id].kmap {
            return Ok(m);
        }
        let b = inner.bufs[self.id].exporter.backing().clone();
        let m = inner.sim.cpu_map(&b.pages, b.attr)?;
        inner.bufs[self.id].kmap = Some(m);
        Ok(m)
    }

    /// Whether the buffer may move now: a dynamic exporter, nobody pinning, nothing
    /// mapped.
    pub fn can_migrate(&self) -> Result<(), Error> {
        self.with(|inner, id| {
            let b = &inner.bufs[id];
            let devices = &inner.sim.platform().devices;
            if !b.exporter.is_dynamic() {
                return Err(Error::NotDynamic { buffer: b.name.clone(), exporter: b.exporter.name().into() });
            }
            if let Some(a) = b.attachments.iter().flatten().find(|a| a.pins > 0) {
                return Err(Error::Pinned { buffer: b.name.clone(), device: devices[a.dev].name.clone() });
            }
            if let Some(a) = b.attachments.iter().flatten().find(|a| a.mapping.is_some()) {
                return Err(Error::Busy {
                    buffer: b.name.clone(),
                    what: format!("mapped by `{}`", devices[a.dev].name),
                });
            }
            if b.vmaps > 0 {
                return Err(Error::Busy { buffer: b.name.clone(), what: "vmapped by the kernel".into() });
            }
            if b.mmaps > 0 || b.user_bracket.is_some() {
                return Err(Error::Busy { buffer: b.name.clone(), what: "mmapped by user space".into() });
            }
            Ok(())
        })
    }

    /// Moves a dynamic exporter's buffer to system memory or back to its device's local
    /// memory. The owner device copies the bytes by DMA; every dynamic importer gets
    /// `move_notify`. Refused while pinned or mapped, or when an attached importer could
    /// not reach the new place.
    pub fn migrate(&self, to: Placement) -> Result<(), Error> {
        self.can_migrate()?;
        let notify = {
            let mut inner = self.sys.0.borrow_mut();
            let inner = &mut *inner;
            let id = self.id;
            let Some(owner) = inner.bufs[id].exporter.exporting_device() else {
                let b = &inner.bufs[id];
                return Err(Error::NotDynamic { buffer: b.name.clone(), exporter: b.exporter.name().into() });
            };
            let old = inner.bufs[id].exporter.backing().clone();
            if inner.bufs[id].exporter.owner().is_some() == (to == Placement::Device) {
                return Ok(());
            }
            let size = old.size();
            let new = match to {
                Placement::System => inner.pages.allocate(HeapKind::System, size),
                Placement::Device => inner.pages.allocate_local(owner, size),
            }
            .ok_or_else(|| Error::OutOfMemory { heap: format!("{to:?}"), size })?;
            // Every importer must reach the new place.
            let name = inner.bufs[id].name.clone();
            for a in inner.bufs[id].attachments.iter().flatten() {
                if let Err(e) = check_attach(inner.sim.platform(), &name, &new, a.dev, a.caps) {
                    inner.pages.free(&new);
                    return Err(e.into());
                }
            }
            // The owner's copy engine moves the bytes, through the streaming DMA API.
            let o = DeviceId(owner as u16);
            let src = inner.sim.dma_map(o, &old.pages, DmaDirection::ToDevice, DmaAttrs::default())?;
            let dst = inner.sim.dma_map(o, &new.pages, DmaDirection::FromDevice, DmaAttrs::default())?;
            // The copy engine's cache may hold lines others have since overwritten, and
            // its writes land in that cache: drop it before, write it back after.
            for p in &old.pages {
                inner.sim.device_cache_invalidate(o, *p)?;
            }
            let mut bytes = vec![0u8; size as usize];
            let mut off = 0usize;
            for (bus, n) in src.bus_ranges(0, size) {
                inner.sim.device_read(o, bus, &mut bytes[off..off + n as usize])?;
                off += n as usize;
            }
            off = 0;
            for (bus, n) in dst.bus_ranges(0, size) {
                inner.sim.device_write(o, bus, &bytes[off..off + n as usize])?;
                off += n as usize;
            }
            for p in &new.pages {
                inner.sim.device_cache_flush(o, *p)?;
            }
            inner.sim.dma_unmap(src, DmaAttrs::default())?;
            inner.sim.dma_unmap(dst, DmaAttrs::default())?;
            if let Some(m) = inner.bufs[id].kmap.take() {
                inner.sim.cpu_unmap(m)?;
            }
            inner.pages.free(&old);
            inner.bufs[id].exporter.set_backing(new.clone());
            for a in inner.bufs[id].attachments.iter_mut().flatten() {
                if let Ok(plan) = check_attach(inner.sim.platform(), &name, &new, a.dev, a.caps) {
                    a.plan = plan;
                }
            }
            // Ranges tracked against the old pages mean nothing now.
            inner.bufs[id].cpu_dirty.clear();
            inner.bufs[id].dev_dirty.clear();
            let mut notify = Vec::new();
            for (i, a) in inner.bufs[id].attachments.iter_mut().enumerate() {
                if let Some(a) = a
                    && let Some(f) = a.move_notify.take()
                {
                    notify.push((i, f));
                }
            }
            notify
        };
        // Called without the framework borrowed: an importer may map again from it.
        let mut back = Vec::new();
        for (i, mut f) in notify {
            f();
            back.push((i, f));
        }
        self.with(|inner, id| {
            for (i, f) in back {
                if let Some(a) = inner.bufs[id].attachments[i].as_mut() {
                    a.move_notify = Some(f);
                }
            }
        });
        Ok(())
    }

    /// Physical pieces of buffer range `r`.
    fn phys(&self, inner: &Inner, r: Range<u64>) -> Vec<PhysRange> {
        let mut out = Vec::new();
        let mut base = 0u64;
        for p in &inner.bufs[self.id].exporter.backing().pages {
            let (s, e) = (r.start.max(base), r.end.min(base + p.len));
            if s < e {
                out.push(PhysRange { start: p.start.add(s - base), len: e - s });
            }
            base += p.len;
        }
        out
    }

    fn noncoherent(inner: &Inner, dev: usize) -> bool {
        !inner.sim.platform().devices[dev].coherent
    }

    /// The start of a CPU bracket (kernel or user space) over `range`: the policy's
    /// maintenance, then the exporter's hook.
    fn begin_cpu_bracket(&self, dir: DmaDirection, range: Range<u64>) -> Result<(), Error> {
        // Implicit synchronisation first (`__dma_buf_begin_cpu_access`): a write waits for
        // every reader and writer, a read for the writers. The kernel lets the exporter's
        // hook run before this wait; here the wait comes first, so the maintenance sees
        // what the devices finished. With no fences attached this is a no-op.
        let write = matches!(dir, DmaDirection::ToDevice | DmaDirection::Bidirectional);
        self.resv().wait_timeout(ResvUsage::rw(write), None)?;
        self.begin_cpu_maintenance(dir, range)?;
        self.with(|i, id| i.bufs[id].exporter.begin_cpu_access(dir));
        Ok(())
    }

    fn begin_cpu_maintenance(&self, dir: DmaDirection, range: Range<u64>) -> Result<(), Error> {
        let mut inner = self.sys.0.borrow_mut();
        let inner = &mut *inner;
        let b = &inner.bufs[self.id];
        if !b.exporter.needs_cpu_sync() {
            return Ok(());
        }
        match inner.cfg.maintenance {
            MaintenancePolicy::Linux => {
                // The system heap: dma_sync_sgtable_for_cpu(attachment, dir) for every
                // attachment that is mapped, whole buffer.
                let maps: Vec<DmaMapping> = b
                    .attachments
                    .iter()
                    .flatten()
                    .filter_map(|a| a.mapping.clone())
                    .map(|mut m| {
                        m.dir = dir;
                        m
                    })
                    .collect();
                for m in maps {
                    inner.sim.dma_sync_for_cpu(&m, 0, m.len())?;
                }
            }
            MaintenancePolicy::Minimal => {
                // A device that keeps its mapping hands over what it wrote in the range now,
                // as the kernel's begin_cpu_access syncs every mapped attachment for the CPU.
                let keeping: Vec<usize> = b
                    .attachments
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| {
                        a.as_ref().is_some_and(|a| a.mapping.is_some() && !a.written.within(range.clone()).is_empty())
                    })
                    .map(|(i, _)| i)
                    .collect();
                for idx in keeping {
                    Attachment::end_at(inner, self.id, idx, range.clone())?;
                }
                let b = &inner.bufs[self.id];
                // Only what non-coherent devices wrote since the CPU last looked, inside the
                // bracket's range. For every direction: a partial-line CPU write into a
                // stale line would merge with stale bytes.
                let _ = dir;
                let dirty: Vec<_> = b.dev_dirty.within(range.clone()).iter().collect();
                for r in dirty {
                    for p in self.phys(inner, r) {
                        inner.sim.cache_invalidate(p)?;
                    }
                }
                inner.bufs[self.id].dev_dirty.remove(range);
            }
        }
        Ok(())
    }

    /// The end of a CPU bracket: `written` are the bytes the CPU declared written in it.
    fn end_cpu_bracket(&self, dir: DmaDirection, written: &RangeSet) -> Result<(), Error> {
        let r = self.end_cpu_maintenance(dir, written);
        self.with(|i, id| i.bufs[id].exporter.end_cpu_access(dir));
        r
    }

    fn end_cpu_maintenance(&self, dir: DmaDirection, written: &RangeSet) -> Result<(), Error> {
        let mut inner = self.sys.0.borrow_mut();
        let inner = &mut *inner;
        // The end of a bracket is a barrier: write-combined stores reach memory.
        inner.sim.cpu_barrier();
        let b = &mut inner.bufs[self.id];
        for a in b.attachments.iter_mut().flatten() {
            a.stale.union(written);
        }
        if !b.exporter.needs_cpu_sync() {
            return Ok(());
        }
        match inner.cfg.maintenance {
            MaintenancePolicy::Linux => {
                let maps: Vec<DmaMapping> = b
                    .attachments
                    .iter()
                    .flatten()
                    .filter_map(|a| a.mapping.clone())
                    .map(|mut m| {
                        m.dir = dir;
                        m
                    })
                    .collect();
                for m in maps {
                    inner.sim.dma_sync_for_device(&m, 0, m.len())?;
                }
            }
            MaintenancePolicy::Minimal => {
                b.cpu_dirty.union(written);
                // Hand the bytes over now if a non-coherent device holds a long-lived
                // mapping; otherwise its map will.
                let devices = &inner.sim.platform().devices;
                let mapped_noncoherent = inner.bufs[self.id]
                    .attachments
                    .iter()
                    .flatten()
                    .any(|a| a.mapping.as_ref().is_some_and(|m| !fully_bounced(m)) && !devices[a.dev].coherent);
                if mapped_noncoherent {
                    self.clean_cpu_dirty(inner)?;
                }
                // A bounced long-lived mapping reads its own copy: copy what the CPU
                // wrote into the bounce slots now (the kernel's end_cpu_access syncs every
                // mapped attachment for the device), only the written ranges.
                if dir != DmaDirection::FromDevice {
                    let bounced: Vec<DmaMapping> = inner.bufs[self.id]
                        .attachments
                        .iter()
                        .flatten()
                        .filter_map(|a| a.mapping.clone())
                        .filter(|m| m.is_bounced())
                        .map(|mut m| {
                            m.dir = DmaDirection::ToDevice;
                            m
                        })
                        .collect();
                    for m in bounced {
                        for r in written.iter() {
                            inner.sim.dma_sync_for_device(&m, r.start, r.end - r.start)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Minimal: cleans what the CPU wrote since the last hand-over.
    fn clean_cpu_dirty(&self, inner: &mut Inner) -> Result<(), Error> {
        let dirty: Vec<_> = inner.bufs[self.id].cpu_dirty.iter().collect();
        for r in dirty {
            for p in self.phys(inner, r) {
                inner.sim.cache_clean(p)?;
            }
        }
        inner.bufs[self.id].cpu_dirty.clear();
        Ok(())
    }
}

/// A device attached to a buffer (`struct dma_buf_attachment`). Dropping it detaches.
pub struct Attachment {
    buf: ManuallyDrop<DmaBuf>,
    idx: usize,
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.buf.sys.0.try_borrow_mut() {
            let inner = &mut *inner;
            let b = &mut inner.bufs[self.buf.id];
            if let Some(a) = b.attachments[self.idx].take() {
                let desc = &inner.sim.platform().devices[a.dev];
                if a.pins > 0 && total_pins(b) == 0 {
                    b.exporter.unpin();
                }
                b.exporter.detach(desc);
            }
        }
    }
}

impl Attachment {
    /// The buffer.
    pub fn buffer(&self) -> &DmaBuf {
        &self.buf
    }

    /// The device.
    pub fn device(&self) -> DeviceId {
        DeviceId(self.state(|a| a.dev) as u16)
    }

    /// How the device reaches the buffer.
    pub fn plan(&self) -> AttachPlan {
        self.state(|a| a.plan)
    }

    /// `dma_buf_pin`: the buffer may not move until [`Attachment::unpin`].
    pub fn pin(&self) {
        let mut inner = self.buf.sys.0.borrow_mut();
        let b = &mut inner.bufs[self.buf.id];
        if total_pins(b) == 0 {
            b.exporter.pin();
        }
        if let Some(a) = b.attachments[self.idx].as_mut() {
            a.pins += 1;
        }
    }

    /// `dma_buf_unpin`.
    pub fn unpin(&self) {
        let mut inner = self.buf.sys.0.borrow_mut();
        let b = &mut inner.bufs[self.buf.id];
        if let Some(a) = b.attachments[self.idx].as_mut()
            && a.pins > 0
        {
            a.pins -= 1;
            if total_pins(b) == 0 {
                b.exporter.unpin();
            }
        }
    }

    fn state<R>(&self, f: impl FnOnce(&AttState) -> R) -> R {
        let inner = self.buf.sys.0.borrow();
        f(inner.bufs[self.buf.id].attachments[self.idx].as_ref().expect("a live handle's attachment exists"))
    }

    /// `dma_buf_map_attachment`: maps the buffer for the device; the returned mapping
    /// unmaps on drop. Map is the barrier after which the device sees every CPU write
    /// that was handed over (ended brackets).
    pub fn map(&self, dir: DmaDirection) -> Result<Mapping<'_>, Error> {
        self.map_raw(dir)?;
        Ok(Mapping { att: self, dir })
    }

    /// The direction the attachment is mapped for, if it is mapped.
    pub fn mapped_direction(&self) -> Option<DmaDirection> {
        self.state(|a| a.mapping.as_ref().map(|m| m.dir))
    }

    fn device_name(&self) -> String {
        self.buf.system().platform().devices[self.device().index()].name.clone()
    }

    /// `dma_buf_map_attachment` without a guard: the mapping stays until
    /// [`Attachment::unmap_raw`]. For programs that keep mappings across calls, and for
    /// expressing what real code gets wrong; [`Attachment::map`] is the safe path.
    pub fn map_raw(&self, dir: DmaDirection) -> Result<(), Error> {
        if self.mapped_direction().is_some() {
            return Err(Error::AlreadyMapped { buffer: self.buf.name(), device: self.device_name() });
        }
        let mut inner = self.buf.sys.0.borrow_mut();
        let inner = &mut *inner;
        let id = self.buf.id;
        let (_, devid) = self.dev(inner);
        let backing = inner.bufs[id].exporter.backing().clone();
        let sync = inner.bufs[id].exporter.needs_cpu_sync();
        let mapping = match inner.cfg.maintenance {
            MaintenancePolicy::Linux => {
                let m = inner.sim.dma_map(devid, &backing.pages, dir, DmaAttrs { skip_cpu_sync: !sync })?;
                if inner.sim.device_has_cache(devid) {
                    // The driver starts a job with a clean view: its whole cache goes.
                    for p in &backing.pages {
                        inner.sim.device_cache_invalidate(devid, *p)?;
                    }
                }
                m
            }
            MaintenancePolicy::Minimal => {
                inner.sim.dma_map(devid, &backing.pages, dir, DmaAttrs { skip_cpu_sync: true })?
            }
        };
        let len = mapping.len();
        if let Some(a) = inner.bufs[id].attachments[self.idx].as_mut() {
            a.mapping = Some(mapping);
            a.written.clear();
        }
        if inner.cfg.maintenance == MaintenancePolicy::Minimal {
            // A bounce slot starts empty: fill all of it (what swiotlb's map does).
            self.device_begin(inner, 0..len, true)?;
        } else if let Some(a) = inner.bufs[id].attachments[self.idx].as_mut() {
            a.stale.clear();
        }
        let desc = &inner.sim.platform().devices[devid.index()];
        inner.bufs[id].exporter.map(desc, dir);
        Ok(())
    }

    /// `dma_buf_unmap_attachment` without a guard. An unmap of what is not mapped is
    /// reported and refused.
    pub fn unmap_raw(&self) -> Result<(), Error> {
        if self.mapped_direction().is_none() {
            let (buffer, device) = (self.buf.name(), self.device_name());
            self.buf
                .with(|i, _| i.reports.push(Report::UnmapNotMapped { buffer: buffer.clone(), device: device.clone() }));
            return Err(Error::NotMapped { buffer, device });
        }
        self.unmap()
    }

    /// The mapping a device access goes through: a missing one, or one of the wrong
    /// direction, is reported and refused.
    fn mapping_for(&self, access: &'static str) -> Result<DmaDirection, Error> {
        let (buffer, device) = (self.buf.name(), self.device_name());
        let Some(mapped) = self.mapped_direction() else {
            self.buf.with(|i, _| {
                i.reports.push(Report::DeviceAccessUnmapped { buffer: buffer.clone(), device: device.clone() })
            });
            return Err(Error::NotMapped { buffer, device });
        };
        let ok = match access {
            "read" => mapped.device_reads(),
            "write" => mapped.device_writes(),
            _ => true,
        };
        if !ok {
            self.buf.with(|i, _| {
                i.reports.push(Report::DeviceDirection {
                    buffer: buffer.clone(),
                    device: device.clone(),
                    mapped,
                    access,
                })
            });
            return Err(Error::WrongDirection { buffer, device, mapped, access });
        }
        Ok(mapped)
    }

    /// How the device addresses buffer range `r`: through the sg table, or, for a device
    /// that needs contiguous memory and has no IOMMU, linearly from the first address
    /// (what such hardware does with whatever it is given).
    fn pieces(&self, inner: &Inner, r: &Range<u64>) -> Vec<(dmabuf_sim::BusAddr, u64)> {
        let Some(a) = inner.bufs[self.buf.id].attachments[self.idx].as_ref() else { return Vec::new() };
        let Some(m) = a.mapping.as_ref() else { return Vec::new() };
        let d = &inner.sim.platform().devices[a.dev];
        if d.needs_contiguous && !d.iommu {
            return m.bus_address(0).map(|b| vec![(b.add(r.start), r.end - r.start)]).unwrap_or_default();
        }
        m.bus_ranges(r.start, r.end - r.start)
    }

    /// A device job that reads buffer range `r` through the attachment's current
    /// mapping; returns the bytes the device saw. No mapping, or a FROM_DEVICE one, is
    /// reported and refused.
    pub fn device_read_raw(&self, r: Range<u64>) -> Result<Vec<u8>, Error> {
        self.buf.check_range(&r)?;
        self.mapping_for("read")?;
        let dev = self.device();
        let mut inner = self.buf.sys.0.borrow_mut();
        let mut out = vec![0u8; (r.end - r.start) as usize];
        let mut off = 0usize;
        for (bus, len) in self.pieces(&inner, &r) {
            inner.sim.device_read(dev, bus, &mut out[off..off + len as usize])?;
            off += len as usize;
        }
        Ok(out)
    }

    /// A device job that writes `data` at buffer offset `at` through the current
    /// mapping. No mapping, or a TO_DEVICE one, is reported and refused.
    pub fn device_write_raw(&self, at: u64, data: &[u8]) -> Result<Vec<WriteId>, Error> {
        let r = at..at.saturating_add(data.len() as u64);
        self.buf.check_range(&r)?;
        self.mapping_for("write")?;
        let dev = self.device();
        let mut inner = self.buf.sys.0.borrow_mut();
        let mut ids = Vec::new();
        let mut off = 0usize;
        for (bus, len) in self.pieces(&inner, &r) {
            ids.push(inner.sim.device_write(dev, bus, &data[off..off + len as usize])?);
            off += len as usize;
        }
        if let Some(a) = inner.bufs[self.buf.id].attachments[self.idx].as_mut() {
            a.written.insert(r);
        }
        Ok(ids)
    }

    /// Device-side `begin_access` on the current mapping, without a guard.
    pub fn begin_access_raw(&self, range: Range<u64>) -> Result<(), Error> {
        self.buf.check_range(&range)?;
        self.mapping_for("access")?;
        let mut inner = self.buf.sys.0.borrow_mut();
        let inner = &mut *inner;
        match inner.cfg.maintenance {
            MaintenancePolicy::Linux => {
                let (_, devid) = self.dev(inner);
                let Some(m) = self.current_mapping(inner) else { return Ok(()) };
                // Like its map (DMA_ATTR_SKIP_CPU_SYNC), no CPU sync for uncached memory.
                if inner.bufs[self.buf.id].exporter.needs_cpu_sync() {
                    inner.sim.dma_sync_for_device(&m, range.start, range.end - range.start)?;
                }
                if inner.sim.device_has_cache(devid) {
                    for p in bus_phys(&m, range.clone()) {
                        inner.sim.device_cache_invalidate(devid, p)?;
                    }
                }
            }
            MaintenancePolicy::Minimal => self.device_begin(inner, range, false)?,
        }
        Ok(())
    }

    /// The driver drops the device's own cache over `range` of the current mapping, as a
    /// GPU driver does at the start of every job whatever it knows of who wrote the
    /// buffer. Nothing happens for a device without a cache or an unmapped attachment.
    pub fn invalidate_device_cache(&self, range: Range<u64>) -> Result<(), Error> {
        self.buf.check_range(&range)?;
        let mut inner = self.buf.sys.0.borrow_mut();
        let inner = &mut *inner;
        let (_, devid) = self.dev(inner);
        let Some(m) = self.current_mapping(inner) else { return Ok(()) };
        if inner.sim.device_has_cache(devid) {
            for p in bus_phys(&m, range) {
                inner.sim.device_cache_invalidate(devid, p)?;
            }
        }
        Ok(())
    }

    /// Device-side `end_access` on the current mapping, without a guard: what the
    /// device wrote in `range` is handed to the CPU and the other devices.
    pub fn end_access_raw(&self, range: Range<u64>) -> Result<(), Error> {
        self.buf.check_range(&range)?;
        self.mapping_for("access")?;
        let mut inner = self.buf.sys.0.borrow_mut();
        let inner = &mut *inner;
        match inner.cfg.maintenance {
            MaintenancePolicy::Linux => {
                let (_, devid) = self.dev(inner);
                let Some(m) = self.current_mapping(inner) else { return Ok(()) };
                if inner.sim.device_has_cache(devid) {
                    for p in bus_phys(&m, range.clone()) {
                        inner.sim.device_cache_flush(devid, p)?;
                    }
                }
                if inner.bufs[self.buf.id].exporter.needs_cpu_sync() {
                    inner.sim.dma_sync_for_cpu(&m, range.start, range.end - range.start)?;
                }
                let id = self.buf.id;
                let written = inner.bufs[id].attachments[self.idx]
                    .as_mut()
                    .map(|a| {
                        let w = a.written.within(range.clone());
                        a.written.remove(range.clone());
                        w
                    })
                    .unwrap_or_default();
                for (i, other) in inner.bufs[id].attachments.iter_mut().enumerate() {
                    if let Some(o) = other
                        && i != self.idx
                    {
                        o.stale.union(&written);
                    }
                }
            }
            MaintenancePolicy::Minimal => self.device_end(inner, range)?,
        }
        Ok(())
    }

    /// `sync_device_to_device` between two attachments' current mappings, without
    /// guards: this device (which wrote `range`) hands it to `to`'s device.
    pub fn sync_to_raw(&self, to: &Attachment, range: Range<u64>) -> Result<(), Error> {
        self.end_access_raw(range.clone())?;
        to.begin_access_raw(range)
    }

    fn current_mapping(&self, inner: &Inner) -> Option<DmaMapping> {
        inner.bufs[self.buf.id].attachments[self.idx].as_ref().and_then(|a| a.mapping.clone())
    }

    fn dev(&self, inner: &Inner) -> (usize, DeviceId) {
        let dev = inner.bufs[self.buf.id].attachments[self.idx].as_ref().map(|a| a.dev).unwrap_or_default();
        (dev, DeviceId(dev as u16))
    }

    /// The device is about to access `range` through its mapping: make what others wrote
    /// visible to it (Minimal). `fill_slot`: copy the whole range into a bounce slot.
    fn device_begin(&self, inner: &mut Inner, range: Range<u64>, fill_slot: bool) -> Result<(), Error> {
        let id = self.buf.id;
        let (dev, devid) = self.dev(inner);
        let sync = inner.bufs[id].exporter.needs_cpu_sync();
        let Some(m) = inner.bufs[id].attachments[self.idx].as_ref().and_then(|a| a.mapping.clone()) else {
            return Ok(());
        };
        if sync && Self::noncoherent(inner, dev) && !fully_bounced(&m) {
            // Only the CPU's bytes that were not handed over yet, wherever they are: a
            // clean is cheap to keep exact and leaves nothing dirty for a later eviction.
            // A mapping bounced everywhere reads its slots, which the copy fills through
            // the CPU cache: the pages need no clean for it.
            self.buf.clean_cpu_dirty(inner)?;
        }
        if sync && !Self::noncoherent(inner, dev) {
            // A coherent device's reads hit the CPU's lines: drop the ones that went stale
            // when a non-coherent device wrote memory behind them.
            let dirty: Vec<_> = inner.bufs[id].dev_dirty.within(range.clone()).iter().collect();
            for r in dirty {
                for p in self.buf.phys(inner, r) {
                    inner.sim.cache_invalidate(p)?;
                }
            }
            inner.bufs[id].dev_dirty.remove(range.clone());
        }
        if m.is_bounced() {
            if fill_slot {
                inner.sim.dma_sync_for_device(&m, range.start, range.end - range.start)?;
            } else {
                let stale: Vec<_> = inner.bufs[id].attachments[self.idx]
                    .as_ref()
                    .map(|a| a.stale.within(range.clone()).iter().collect())
                    .unwrap_or_default();
                for r in stale {
                    inner.sim.dma_sync_for_device(&m, r.start, r.end - r.start)?;
                }
            }
        }
        if inner.sim.device_has_cache(devid) {
            let stale: Vec<_> = inner.bufs[id].attachments[self.idx]
                .as_ref()
                .map(|a| a.stale.within(range.clone()).iter().collect())
                .unwrap_or_default();
            for r in stale {
                for p in bus_phys(&m, r) {
                    inner.sim.device_cache_invalidate(devid, p)?;
                }
            }
        }
        if let Some(a) = inner.bufs[id].attachments[self.idx].as_mut() {
            a.stale.remove(range);
        }
        Ok(())
    }

    /// The device finished accessing `range`: hand what it wrote there to everyone else
    /// (Minimal). `to_cpu`: also make it ready for the CPU (copy a bounce slot back).
    fn device_end(&self, inner: &mut Inner, range: Range<u64>) -> Result<(), Error> {
        Self::end_at(inner, self.buf.id, self.idx, range)
    }

    /// [`Attachment::device_end`] for attachment `idx` of buffer `id`: hands what the
    /// device wrote in `range` over to everyone else (Minimal).
    fn end_at(inner: &mut Inner, id: usize, idx: usize, range: Range<u64>) -> Result<(), Error> {
        let dev = inner.bufs[id].attachments[idx].as_ref().map(|a| a.dev).unwrap_or_default();
        let devid = DeviceId(dev as u16);
        let sync = inner.bufs[id].exporter.needs_cpu_sync();
        let Some(a) = inner.bufs[id].attachments[idx].as_mut() else { return Ok(()) };
        let Some(m) = a.mapping.clone() else { return Ok(()) };
        let written = a.written.within(range.clone());
        a.written.remove(range);
        if written.is_empty() {
            return Ok(());
        }
        if inner.sim.device_has_cache(devid) {
            for r in written.iter() {
                for p in bus_phys(&m, r) {
                    inner.sim.device_cache_flush(devid, p)?;
                }
            }
        }
        let (bounced, direct) = split_bounced(&m, &written);
        for r in bounced.iter() {
            inner.sim.dma_sync_for_cpu(&m, r.start, r.end - r.start)?;
        }
        if sync {
            // The copy back went through the CPU cache: those lines are dirty now, and a
            // non-coherent reader of the pages needs them cleaned.
            inner.bufs[id].cpu_dirty.union(&bounced);
            if Self::noncoherent(inner, dev) {
                inner.bufs[id].dev_dirty.union(&direct);
            }
        }
        // Every other device may hold (in its cache or its bounce slot) what this one
        // overwrote.
        for (i, other) in inner.bufs[id].attachments.iter_mut().enumerate() {
            if let Some(o) = other
                && i != idx
            {
                o.stale.union(&written);
            }
        }
        Ok(())
    }

    fn unmap(&self) -> Result<(), Error> {
        let mut inner = self.buf.sys.0.borrow_mut();
        let inner = &mut *inner;
        let id = self.buf.id;
        let (_, devid) = self.dev(inner);
        let Some(len) = inner.bufs[id].attachments[self.idx].as_ref().and_then(|a| a.mapping.as_ref()).map(|m| m.len())
        else {
            return Ok(());
        };
        let sync = inner.bufs[id].exporter.needs_cpu_sync();
        let dir = inner.bufs[id].attachments[self.idx].as_ref().and_then(|a| a.mapping.as_ref()).map(|m| m.dir);
        match inner.cfg.maintenance {
            MaintenancePolicy::Linux => {
                let written = inner.bufs[id].attachments[self.idx].as_mut().map(|a| std::mem::take(&mut a.written));
                if inner.sim.device_has_cache(devid) {
                    // The driver ends its job by writing its cache back.
                    for p in &inner.bufs[id].exporter.backing().pages.clone() {
                        inner.sim.device_cache_flush(devid, *p)?;
                    }
                }
                let m = inner.bufs[id].attachments[self.idx].as_mut().and_then(|a| a.mapping.take());
                if let Some(m) = m {
                    inner.sim.dma_unmap(m, DmaAttrs { skip_cpu_sync: !sync })?;
                }
                if let Some(w) = written {
                    for (i, other) in inner.bufs[id].attachments.iter_mut().enumerate() {
                        if let Some(o) = other
                            && i != self.idx
                        {
                            o.stale.union(&w);
                        }
                    }
                }
            }
            MaintenancePolicy::Minimal => {
                self.device_end(inner, 0..len)?;
                let m = inner.bufs[id].attachments[self.idx].as_mut().and_then(|a| a.mapping.take());
                if let Some(m) = m {
                    inner.sim.dma_unmap(m, DmaAttrs { skip_cpu_sync: true })?;
                }
            }
        }
        if let Some(dir) = dir {
            let desc = &inner.sim.platform().devices[devid.index()];
            inner.bufs[id].exporter.unmap(desc, dir);
        }
        Ok(())
    }

    fn noncoherent(inner: &Inner, dev: usize) -> bool {
        DmaBuf::noncoherent(inner, dev)
    }
}

/// Whether every segment of a mapping is bounced (the device never reads the pages).
fn fully_bounced(m: &DmaMapping) -> bool {
    m.segments.iter().all(|s| s.bounce.is_some())
}

/// Splits buffer ranges into the parts a mapping bounces and the parts it maps directly.
fn split_bounced(m: &DmaMapping, set: &RangeSet) -> (RangeSet, RangeSet) {
    let (mut bounced, mut direct) = (RangeSet::new(), RangeSet::new());
    let mut base = 0u64;
    for s in &m.segments {
        for r in set.within(base..base + s.len).iter() {
            if s.bounce.is_some() { bounced.insert(r) } else { direct.insert(r) }
        }
        base += s.len;
    }
    (bounced, direct)
}

/// The physical addresses a device's cache tags for buffer range `r` of a mapping: the
/// bounce slot when bounced, the pages otherwise.
fn bus_phys(m: &DmaMapping, r: Range<u64>) -> Vec<PhysRange> {
    let mut out = Vec::new();
    let mut base = 0u64;
    for s in &m.segments {
        let (a, b) = (r.start.max(base), r.end.min(base + s.len));
        if a < b {
            let start = s.bounce.unwrap_or(s.phys).add(a - base);
            out.push(PhysRange { start, len: b - a });
        }
        base += s.len;
    }
    out
}

/// A mapped attachment (`struct sg_table` as the device sees it). Dropping it unmaps.
/// Device jobs run through it.
pub struct Mapping<'a> {
    att: &'a Attachment,
    dir: DmaDirection,
}

impl Drop for Mapping<'_> {
    fn drop(&mut self) {
        // An unmap the hardware refuses leaves nothing half-done: the mapping is gone
        // either way; the error is the framework's to report through the next call.
        let _ = self.att.unmap();
    }
}

impl Mapping<'_> {
    /// The direction it was mapped for.
    pub fn direction(&self) -> DmaDirection {
        self.dir
    }

    /// The bus addresses the device uses, as `(address, length)` pieces.
    pub fn sg_table(&self) -> Vec<(dmabuf_sim::BusAddr, u64)> {
        let inner = self.att.buf.sys.0.borrow();
        self.att.current_mapping(&inner).map(|m| m.bus_ranges(0, m.len())).unwrap_or_default()
    }

    /// A device job that reads buffer range `r`; returns the bytes the device saw.
    pub fn device_read(&self, r: Range<u64>) -> Result<Vec<u8>, Error> {
        self.att.device_read_raw(r)
    }

    /// A device job that writes `data` at buffer offset `at`.
    pub fn device_write(&self, at: u64, data: &[u8]) -> Result<Vec<WriteId>, Error> {
        self.att.device_write_raw(at, data)
    }

    /// A device job that fills buffer range `r` with `byte`.
    pub fn device_fill(&self, r: Range<u64>, byte: u8) -> Result<(), Error> {
        let data = vec![byte; (r.end.saturating_sub(r.start)) as usize];
        self.device_write(r.start, &data).map(|_| ())
    }

    /// Device-side `begin_access`: the device is about to access `range` through this
    /// long-lived mapping (IIO and USB gadget streaming keep their mapping and synchronise
    /// with fences). Makes what others wrote there visible to it. End it with
    /// [`Mapping::end_access`] (the [`DeviceAccess`] guard does it on drop).
    pub fn begin_access(&self, range: Range<u64>) -> Result<DeviceAccess<'_, '_>, Error> {
        self.att.begin_access_raw(range.clone())?;
        Ok(DeviceAccess { map: self, range, ended: false })
    }

    /// Device-side `end_access`: the device finished with `range`; what it wrote there is
    /// handed to the CPU and the other devices.
    pub fn end_access(&self, range: Range<u64>) -> Result<(), Error> {
        self.att.end_access_raw(range)
    }

    /// `sync_device_to_device`: hands `range` from this mapping's device (which wrote it)
    /// to `to`'s device, doing only what the pair needs: the writer's cache is written
    /// back, the reader's cache and any CPU line it would snoop are dropped, bounce slots
    /// are copied; nothing at all between two coherent devices without caches.
    pub fn sync_to(&self, to: &Mapping<'_>, range: Range<u64>) -> Result<(), Error> {
        self.att.sync_to_raw(to.att, range)
    }
}

/// A device-side access bracket on a long-lived mapping; ends on drop.
pub struct DeviceAccess<'m, 'a> {
    map: &'m Mapping<'a>,
    range: Range<u64>,
    ended: bool,
}

impl DeviceAccess<'_, '_> {
    /// Ends the bracket now, returning any error the maintenance hit.
    pub fn end(mut self) -> Result<(), Error> {
        self.ended = true;
        self.map.end_access(self.range.clone())
    }
}

impl Drop for DeviceAccess<'_, '_> {
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.map.end_access(self.range.clone());
        }
    }
}

/// A kernel CPU-access bracket. Reads and writes go through the exporter's kernel
/// mapping (vmap); dropping the guard (or [`CpuAccess::end`]) is `dma_buf_end_cpu_access`.
pub struct CpuAccess<'a> {
    buf: &'a DmaBuf,
    dir: DmaDirection,
    range: Range<u64>,
    written: RangeSet,
    ended: bool,
}

impl CpuAccess<'_> {
    /// Reads buffer range `r`.
    pub fn read(&mut self, r: Range<u64>) -> Result<Vec<u8>, Error> {
        self.check(&r)?;
        let mut inner = self.buf.sys.0.borrow_mut();
        let m = self.buf.kmap(&mut inner)?;
        let mut out = vec![0u8; (r.end - r.start) as usize];
        inner.sim.cpu_read(m, r.start, &mut out)?;
        Ok(out)
    }

    /// Writes `data` at buffer offset `at`.
    pub fn write(&mut self, at: u64, data: &[u8]) -> Result<WriteId, Error> {
        let r = at..at.saturating_add(data.len() as u64);
        self.check(&r)?;
        let mut inner = self.buf.sys.0.borrow_mut();
        let m = self.buf.kmap(&mut inner)?;
        let w = inner.sim.cpu_write(m, at, data)?;
        self.written.insert(r);
        Ok(w)
    }

    /// Fills buffer range `r` with `byte`.
    pub fn fill(&mut self, r: Range<u64>, byte: u8) -> Result<WriteId, Error> {
        self.check(&r)?;
        let mut inner = self.buf.sys.0.borrow_mut();
        let m = self.buf.kmap(&mut inner)?;
        let w = inner.sim.cpu_fill(m, r.start, r.end - r.start, byte)?;
        self.written.insert(r);
        Ok(w)
    }

    /// Accesses must stay inside the bracket's declared range.
    fn check(&self, r: &Range<u64>) -> Result<(), Error> {
        if r.start < self.range.start || r.end > self.range.end || r.start > r.end {
            return Err(Error::OutOfBounds {
                buffer: self.buf.name(),
                start: r.start,
                end: r.end,
                size: self.buf.size(),
            });
        }
        Ok(())
    }

    /// Ends the bracket, returning any error the maintenance hit.
    pub fn end(mut self) -> Result<(), Error> {
        self.ended = true;
        self.finish()
    }

    fn finish(&mut self) -> Result<(), Error> {
        let vmap_written = self.buf.with(|i, id| {
            let b = &mut i.bufs[id];
            b.kernel_brackets = b.kernel_brackets.saturating_sub(1);
            if b.kernel_brackets == 0 { std::mem::take(&mut b.kernel_written) } else { b.kernel_written.clone() }
        });
        self.written.union(&vmap_written);
        self.buf.end_cpu_bracket(self.dir, &self.written)
    }
}

impl Drop for CpuAccess<'_> {
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.finish();
        }
    }
}

/// A kernel mapping of a buffer (`dma_buf_vmap`). Kernel code reads and writes through
/// it inside brackets it opens itself ([`DmaBuf::begin_cpu_access`]); an access outside
/// any bracket is reported. Dropping it is `dma_buf_vunmap`.
pub struct Vmap<'a> {
    buf: &'a DmaBuf,
}

impl Vmap<'_> {
    /// Reads at `at`.
    pub fn read(&self, at: u64, out: &mut [u8]) -> Result<(), Error> {
        self.buf.kernel_read(at, out)
    }

    /// Writes `data` at `at`.
    pub fn write(&self, at: u64, data: &[u8]) -> Result<WriteId, Error> {
        self.buf.kernel_write(at, data)
    }
}

impl Drop for Vmap<'_> {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.buf.sys.0.try_borrow_mut() {
            let b = &mut inner.bufs[self.buf.id];
            b.vmaps = b.vmaps.saturating_sub(1);
            b.exporter.vunmap();
        }
    }
}

/// A user-space `mmap` of a buffer. Unmaps on drop.
///
/// The safe way in is the guards ([`UserMapping::read`], [`UserMapping::write`]), which
/// issue the sync ioctl around the access. The raw way ([`UserMapping::sync`],
/// [`UserMapping::read_unsynced`], [`UserMapping::write_unsynced`]) does exactly what a
/// program asks, and the framework reports what it gets wrong.
pub struct UserMapping {
    buf: DmaBuf,
    map: CpuMapId,
}

impl Drop for UserMapping {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.buf.sys.0.try_borrow_mut() {
            let _ = inner.sim.cpu_unmap(self.map);
            let b = &mut inner.bufs[self.buf.id];
            b.mmaps = b.mmaps.saturating_sub(1);
        }
    }
}

impl UserMapping {
    /// `DMA_BUF_IOCTL_SYNC` with raw flags, as a program issues it. Invalid flags are
    /// refused with EINVAL (and reported); an END without a START is reported.
    pub fn sync(&self, flags: u64) -> Result<(), Error> {
        self.sync_range(flags, 0..self.buf.size())
    }

    /// The sync ioctl as this crate's guards (and [`crate::user`]'s) issue it: the
    /// bracket declares the range the access will touch (the kernel ioctl has no range;
    /// the framework uses it to keep `Minimal` maintenance to the bytes involved). Flags
    /// are checked and misuse reported as for [`UserMapping::sync`].
    pub fn sync_range(&self, flags: u64, range: Range<u64>) -> Result<(), Error> {
        let name = self.buf.name();
        let Some((end, dir)) = decode_sync_flags(flags) else {
            self.buf.with(|i, _| i.reports.push(Report::BadSyncFlags { buffer: name.clone(), flags }));
            return Err(Error::BadSyncFlags { flags });
        };
        if !end {
            self.buf.begin_cpu_bracket(dir, range)?;
            self.buf.with(|i, id| i.bufs[id].user_bracket = Some((dir, RangeSet::new())));
            return Ok(());
        }
        let open = self.buf.with(|i, id| i.bufs[id].user_bracket.take());
        let written = match open {
            None => {
                self.buf.with(|i, _| i.reports.push(Report::DoubleEnd { buffer: name.clone() }));
                RangeSet::new()
            }
            Some((started, written)) => {
                if started != dir {
                    self.buf.with(|i, _| {
                        i.reports.push(Report::DirectionMismatch { buffer: name.clone(), started, ended: dir })
                    });
                }
                written
            }
        };
        self.buf.end_cpu_bracket(dir, &written)
    }

    /// Reads through the mapping with no bracket check beyond a report.
    pub fn read_unsynced(&self, at: u64, out: &mut [u8]) -> Result<(), Error> {
        let r = at..at.saturating_add(out.len() as u64);
        self.buf.check_range(&r)?;
        self.note_access(r, false);
        self.buf.with(|i, _| i.sim.cpu_read(self.map, at, out))?;
        Ok(())
    }

    /// Writes through the mapping with no bracket check beyond a report.
    pub fn write_unsynced(&self, at: u64, data: &[u8]) -> Result<WriteId, Error> {
        let r = at..at.saturating_add(data.len() as u64);
        self.buf.check_range(&r)?;
        self.note_access(r, true);
        Ok(self.buf.with(|i, _| i.sim.cpu_write(self.map, at, data))?)
    }

    fn note_access(&self, r: Range<u64>, write: bool) {
        let name = self.buf.name();
        self.buf.with(|i, id| match &mut i.bufs[id].user_bracket {
            Some((_, written)) => {
                if write {
                    written.insert(r);
                }
            }
            None => i.reports.push(Report::AccessOutsideBracket { buffer: name, range: r, write }),
        });
    }

    /// Reads buffer range `r` inside a READ bracket (SYNC_START|READ before, SYNC_END|READ
    /// after).
    pub fn read(&self, r: Range<u64>) -> Result<Vec<u8>, Error> {
        self.buf.check_range(&r)?;
        self.sync_range(DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ, r.clone())?;
        let mut out = vec![0u8; (r.end - r.start) as usize];
        let res = self.read_unsynced(r.start, &mut out);
        self.sync_range(DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ, r)?;
        res.map(|()| out)
    }

    /// Writes `data` at `at` inside a WRITE bracket.
    pub fn write(&self, at: u64, data: &[u8]) -> Result<WriteId, Error> {
        let r = at..at.saturating_add(data.len() as u64);
        self.buf.check_range(&r)?;
        self.sync_range(DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE, r.clone())?;
        let res = self.write_unsynced(at, data);
        self.sync_range(DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE, r)?;
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_flags_follow_the_kernel() {
        assert_eq!(decode_sync_flags(DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ), Some((false, DmaDirection::FromDevice)));
        assert_eq!(decode_sync_flags(DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW), Some((true, DmaDirection::Bidirectional)));
        assert_eq!(decode_sync_flags(DMA_BUF_SYNC_WRITE), Some((false, DmaDirection::ToDevice)));
        assert_eq!(decode_sync_flags(DMA_BUF_SYNC_END), None, "END without a direction");
        assert_eq!(decode_sync_flags(0), None, "no direction");
        assert_eq!(decode_sync_flags(8 | DMA_BUF_SYNC_READ), None, "an unknown bit");
    }
}
