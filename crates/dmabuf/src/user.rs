//! The user-space API ([`crate::uapi`]) on the simulated framework: heaps, dma-bufs, CPU
//! mappings with bracketing guards, sync files, and simulated devices to hand buffers to.
//!
//! Crate `dmabuf-linux` implements the [`uapi`] traits with file descriptors and ioctls on
//! a real kernel; this module implements them on a [`System`]. A program written against
//! the traits therefore runs unchanged on a simulated platform (a non-coherent Arm SoC on
//! any machine, where a missing `DMA_BUF_IOCTL_SYNC` shows up as stale bytes) and on a real
//! kernel.
//!
//! | here | kernel | framework underneath |
//! |---|---|---|
//! | [`Heaps`] | the entries of `/dev/dma_heap` | the [`System`]'s heaps, under the names a kernel gives them |
//! | [`Heap::allocate`] | `DMA_HEAP_IOCTL_ALLOC` | [`crate::Heap::allocate`] |
//! | [`DmaBuf::set_name`] | `DMA_BUF_SET_NAME` | [`crate::DmaBuf::set_name`] |
//! | [`DmaBuf::mmap`] | `mmap` of the fd | [`crate::DmaBuf::mmap`] |
//! | [`Mapping`]'s guards | `DMA_BUF_IOCTL_SYNC` `START` / `END` | [`raw::sync_ioctl_range`](crate::raw::sync_ioctl_range), the bytes moved by [`raw::mmap_read`](crate::raw::mmap_read) / [`raw::mmap_write`](crate::raw::mmap_write) inside the bracket |
//! | [`DmaBuf::export_sync_file`] / [`DmaBuf::import_sync_file`] | `DMA_BUF_IOCTL_EXPORT_SYNC_FILE` / `IMPORT_SYNC_FILE` | the same on [`crate::DmaBuf`] |
//! | [`DmaBuf::poll`] | `poll` on the fd | [`crate::DmaBuf::poll_timeout`] |
//! | [`SyncFile`] | `sync_file` | [`crate::sync_file::SyncFile`] |
//! | [`Device`] | a driver that imports the buffer (PRIME import) and runs fenced jobs on it | [`crate::DmaBuf::attach`], [`raw::map_attachment`](crate::raw::map_attachment), device-side access brackets, [`crate::sim_time`] fences |
//!
//! # The bytes
//!
//! A guard gives the program a slice, as the kernel backend does, but the simulated memory
//! lives in the simulator: a guard reads its range through the simulated CPU mapping right
//! after its `SYNC_START` and hands the program a copy; a write guard stores the bytes the
//! program changed right before its `SYNC_END`. So every simulated CPU load and store
//! happens inside the bracket, as in the program. (A device that accesses the buffer while
//! a guard is alive races with the CPU in the real world too; here it sees the bytes as
//! they were before the guard's stores.)
//!
//! # Devices and simulated time
//!
//! [`Heaps::device`] gives a [`Device`]: a DMA master of the platform, driven the way a
//! GPU or display driver drives it. It imports a buffer on first use (attach, and a
//! mapping kept for as long as the device holds the buffer, as a DRM driver's PRIME import
//! does) and runs jobs that read or write the buffer. A job waits for the fences it must
//! (implicit sync), adds its own fence to the buffer's reservation object, accesses the
//! bytes inside a device-side access bracket, and completes in simulated time: its fence
//! signals when a wait (a guard's `SYNC_START`, `poll` with a timeout, a sync file's
//! `wait`) runs the simulation that far, or at [`Device::complete`].
//!
//! # Forgetting the bracket
//!
//! [`SyncIoctls::Omit`] makes the guards skip the `DMA_BUF_IOCTL_SYNC` calls (and the
//! implicit-sync wait inside `SYNC_START`): the same program then does what it would do
//! with a bare `mmap`, and the framework reports every access as outside a bracket
//! ([`crate::Report::AccessOutsideBracket`]). On a non-coherent platform that is a stale
//! read; on a coherent one it works, which is why the bug survives testing on x86.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::ops::{Deref, DerefMut, Range};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use dmabuf_sim::{DeviceId, DmaDirection, RegionKind};

use crate::fence::{Errno, Fence, MonotonicTime, context_alloc};
use crate::heap::HeapKind;
use crate::resv::ResvUsage;
use crate::sim_time::{EventQueue, Simulation};
use crate::sync_file;
use crate::uapi::{self, DMA_BUF_NAME_LEN, Readiness, SyncFileInfo, SyncFlags, WaitStatus};
use crate::{Attachment, DMA_BUF_SYNC_END, DMA_BUF_SYNC_START, Report, System, SystemConfig, UserMapping};

/// The name the kernel gives the CMA heap since 6.17; older kernels used the device-tree
/// region's name (`linux,cma`, `reserved`).
pub const CMA_HEAP_NAME: &str = "default_cma_region";

/// How long a device job waits for the fences it depends on when they are not
/// simulated ones (a software fence someone else must signal), like a driver's job
/// timeout. Simulated fences never need it: waiting for them runs the simulation.
pub const DEPENDENCY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a device job takes in simulated time, unless set with
/// [`Device::set_job_time`].
pub const DEFAULT_JOB_TIME: Duration = Duration::from_millis(1);

/// The kernel operation a failure happened in, named as `dmabuf-linux` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// `DMA_HEAP_IOCTL_ALLOC`.
    DmaHeapIoctlAlloc,
    /// `DMA_BUF_IOCTL_SYNC` with `DMA_BUF_SYNC_START`.
    DmaBufIoctlSyncStart,
    /// `DMA_BUF_IOCTL_SYNC` with `DMA_BUF_SYNC_END`.
    DmaBufIoctlSyncEnd,
    /// `DMA_BUF_SET_NAME`.
    DmaBufSetName,
    /// `DMA_BUF_IOCTL_EXPORT_SYNC_FILE`.
    DmaBufIoctlExportSyncFile,
    /// `DMA_BUF_IOCTL_IMPORT_SYNC_FILE`.
    DmaBufIoctlImportSyncFile,
    /// `SYNC_IOC_MERGE`.
    SyncIocMerge,
    /// `SYNC_IOC_FILE_INFO`.
    SyncIocFileInfo,
    /// `SYNC_IOC_SET_DEADLINE`.
    SyncIocSetDeadline,
    /// `mmap`.
    Mmap,
    /// `poll`.
    Poll,
}

impl Op {
    /// The kernel's name for the operation.
    pub const fn name(self) -> &'static str {
        match self {
            Op::DmaHeapIoctlAlloc => "DMA_HEAP_IOCTL_ALLOC",
            Op::DmaBufIoctlSyncStart => "DMA_BUF_IOCTL_SYNC(DMA_BUF_SYNC_START)",
            Op::DmaBufIoctlSyncEnd => "DMA_BUF_IOCTL_SYNC(DMA_BUF_SYNC_END)",
            Op::DmaBufSetName => "DMA_BUF_SET_NAME",
            Op::DmaBufIoctlExportSyncFile => "DMA_BUF_IOCTL_EXPORT_SYNC_FILE",
            Op::DmaBufIoctlImportSyncFile => "DMA_BUF_IOCTL_IMPORT_SYNC_FILE",
            Op::SyncIocMerge => "SYNC_IOC_MERGE",
            Op::SyncIocFileInfo => "SYNC_IOC_FILE_INFO",
            Op::SyncIocSetDeadline => "SYNC_IOC_SET_DEADLINE",
            Op::Mmap => "mmap",
            Op::Poll => "poll",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything that can go wrong in the simulated user-space API.
///
/// [`Error::Op`] is the framework refusing an operation (what the kernel would answer
/// with an errno), named by the operation; the other variants are the rules checked
/// before the call, worded as `dmabuf-linux` words them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The framework refused an operation.
    #[error("{op} failed: {source}")]
    Op {
        /// What was called.
        op: Op,
        /// The framework's reason.
        source: Box<crate::Error>,
    },

    /// No heap has this name; `available` lists the heaps that exist.
    #[error("no dma-buf heap named {name:?} on simulated platform {platform}; this system has: {}", list(available))]
    HeapNotFound {
        /// The name asked for.
        name: String,
        /// The simulated platform.
        platform: String,
        /// The heaps that do exist, sorted.
        available: Vec<String>,
    },

    /// The buffer already has a live mapping; a second one would let two write guards
    /// alias the same bytes.
    #[error("dma-buf {buffer:?} is already mapped in this process; drop the other mapping first")]
    AlreadyMapped {
        /// The buffer's name.
        buffer: String,
    },

    /// A guard's or a device job's range does not fit in the buffer.
    #[error("range {start}..{end} is not inside the {len}-byte buffer")]
    RangeOutOfBounds {
        /// Start of the range asked for.
        start: usize,
        /// End of the range asked for.
        end: usize,
        /// Length of the buffer.
        len: usize,
    },

    /// A dma-buf or sync file name is too long for `DMA_BUF_NAME_LEN`.
    #[error("name {name:?} is {len} bytes; at most {max} fit (DMA_BUF_NAME_LEN - 1)")]
    NameTooLong {
        /// The name.
        name: String,
        /// Its length in bytes.
        len: usize,
        /// The most that fits.
        max: usize,
    },

    /// A name contains a NUL byte, which would silently cut it.
    #[error("name {name:?} contains a NUL byte")]
    NameHasNul {
        /// The name.
        name: String,
    },

    /// A simulated CPU load or store through the mapping failed (the hardware refused it).
    #[error("CPU access to {buffer:?} through its mapping failed: {source}")]
    Access {
        /// The buffer's name.
        buffer: String,
        /// The framework's reason.
        source: Box<crate::Error>,
    },

    /// An earlier guard was dropped and ending it failed; reported by the next guard of
    /// the same mapping (use [`uapi::CpuAccess::end`] to see it at once).
    #[error("an earlier guard's end, done when it was dropped, failed: {source}")]
    DeferredEnd {
        /// What failed.
        source: Box<Error>,
    },

    /// A device could not be found, import the buffer, or run a job.
    #[error("device {device:?}: {action} failed: {source}")]
    Device {
        /// The device's name.
        device: String,
        /// What it was doing.
        action: &'static str,
        /// The framework's reason.
        source: Box<crate::Error>,
    },

    /// A device was handed a buffer of another simulated system.
    #[error("device {device:?} cannot use buffer {buffer:?}: it belongs to another simulated system")]
    ForeignBuffer {
        /// The device's name.
        device: String,
        /// The buffer's name.
        buffer: String,
    },
}

fn list(names: &[String]) -> String {
    if names.is_empty() { "no heaps at all".to_owned() } else { names.join(", ") }
}

impl Error {
    /// The operation that failed, when the framework refused one.
    pub fn op(&self) -> Option<Op> {
        match self {
            Error::Op { op, .. } => Some(*op),
            Error::DeferredEnd { source } => source.op(),
            _ => None,
        }
    }

    fn op_err(op: Op) -> impl FnOnce(crate::Error) -> Error {
        move |source| Error::Op { op, source: Box::new(source) }
    }
}

/// This module's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether the guards issue `DMA_BUF_IOCTL_SYNC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncIoctls {
    /// `SYNC_START` when a guard is made, `SYNC_END` when it ends: the correct program.
    #[default]
    Issue,
    /// No ioctl at all: the program as it behaves with a bare `mmap` and no bracket
    /// (the framework reports each access). For showing what the bracket is for.
    Omit,
}

/// One operation the API issued, as `strace` would show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ioctl {
    /// The operation.
    pub op: Op,
    /// The buffer's name (the heap's, for an allocation).
    pub target: String,
    /// The flags (`SYNC`, export, import) or the interest (`poll`).
    pub flags: Option<SyncFlags>,
    /// The byte range a guard declared (the kernel ioctl has no range; the framework
    /// limits its maintenance to it).
    pub range: Option<Range<usize>>,
}

struct Shared {
    sys: System,
    queue: Arc<EventQueue>,
    platform: String,
    heaps: RefCell<Vec<(String, HeapKind)>>,
    sync_ioctls: Cell<SyncIoctls>,
    log: RefCell<Vec<Ioctl>>,
    next_buffer: Cell<u64>,
}

impl Shared {
    fn record(&self, op: Op, target: String, flags: Option<SyncFlags>, range: Option<Range<usize>>) {
        self.log.borrow_mut().push(Ioctl { op, target, flags, range });
    }
}

/// The dma-buf heaps of a simulated [`System`], as user space sees them: the framework's
/// heaps under the names a kernel gives them.
///
/// By default: `system`, and [`CMA_HEAP_NAME`] when the platform has a CMA area, as on
/// an upstream kernel of 6.17 or later. [`Heaps::with_heap`] and [`Heaps::without_heap`]
/// change that to another kernel's set (an older CMA name, a vendor kernel's
/// `system-uncached`), so that a program can be checked against heaps being renamed under
/// it.
///
/// Cheap to clone: clones share the system, the simulated clock and the ioctl log.
#[derive(Clone)]
pub struct Heaps {
    shared: Rc<Shared>,
}

impl fmt::Debug for Heaps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heaps")
            .field("platform", &self.shared.platform)
            .field("heaps", &*self.shared.heaps.borrow())
            .field("sync_ioctls", &self.shared.sync_ioctls.get())
            .finish()
    }
}

impl Heaps {
    /// The heaps of `sys`, with the names of a current upstream kernel.
    pub fn new(sys: &System) -> Heaps {
        let platform = sys.platform();
        let mut heaps = vec![(HeapKind::System.name().to_owned(), HeapKind::System)];
        if platform.regions.iter().any(|r| r.kind == RegionKind::Cma) {
            heaps.push((CMA_HEAP_NAME.to_owned(), HeapKind::Cma));
        }
        Heaps {
            shared: Rc::new(Shared {
                sys: sys.clone(),
                queue: EventQueue::new(),
                platform: platform.name.clone(),
                heaps: RefCell::new(heaps),
                sync_ioctls: Cell::new(SyncIoctls::Issue),
                log: RefCell::new(Vec::new()),
                next_buffer: Cell::new(0),
            }),
        }
    }

    /// The heaps of a fresh [`System`] on `sim`, in the framework's default
    /// configuration.
    pub fn on(sim: dmabuf_sim::Sim) -> Heaps {
        Heaps::new(&System::new(sim, SystemConfig::default()))
    }

    /// Offers the framework heap `kind` under `name` too (replacing a heap of that name).
    pub fn with_heap(self, name: &str, kind: HeapKind) -> Heaps {
        {
            let mut heaps = self.shared.heaps.borrow_mut();
            heaps.retain(|(n, _)| n != name);
            heaps.push((name.to_owned(), kind));
        }
        self
    }

    /// Stops offering the heap called `name`.
    pub fn without_heap(self, name: &str) -> Heaps {
        self.shared.heaps.borrow_mut().retain(|(n, _)| n != name);
        self
    }

    /// Sets whether the guards issue the sync ioctl (see [`SyncIoctls`]).
    pub fn with_sync_ioctls(self, mode: SyncIoctls) -> Heaps {
        self.set_sync_ioctls(mode);
        self
    }

    /// Changes whether guards made from now on issue the sync ioctl.
    pub fn set_sync_ioctls(&self, mode: SyncIoctls) {
        self.shared.sync_ioctls.set(mode);
    }

    /// Whether the guards issue the sync ioctl.
    pub fn sync_ioctls(&self) -> SyncIoctls {
        self.shared.sync_ioctls.get()
    }

    /// The simulated system underneath (its stats, reports and hardware).
    pub fn system(&self) -> &System {
        &self.shared.sys
    }

    /// The simulated platform's name.
    pub fn platform(&self) -> &str {
        &self.shared.platform
    }

    /// The simulated clock that device jobs complete on.
    pub fn now(&self) -> MonotonicTime {
        self.shared.queue.now()
    }

    /// The operations issued so far, oldest first (`SYNC_START` and `SYNC_END` with their
    /// flags and ranges, allocations, names, maps, exports, imports and polls).
    pub fn ioctls(&self) -> Vec<Ioctl> {
        self.shared.log.borrow().clone()
    }

    /// Forgets the operations issued so far.
    pub fn clear_ioctls(&self) {
        self.shared.log.borrow_mut().clear();
    }

    /// The framework's reports of misuse so far ([`System::reports`]).
    pub fn reports(&self) -> Vec<Report> {
        self.shared.sys.reports()
    }

    /// The names of the heaps, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.shared.heaps.borrow().iter().map(|(n, _)| n.clone()).collect();
        names.sort();
        names
    }

    /// Opens the heap `name`; a missing heap gives [`Error::HeapNotFound`] listing the
    /// heaps that exist.
    pub fn open(&self, name: &str) -> Result<Heap> {
        let kind = self.shared.heaps.borrow().iter().find(|(n, _)| n == name).map(|(_, k)| *k);
        let kind = kind.ok_or_else(|| self.not_found(name))?;
        let heap = self.shared.sys.heap(kind.name()).map_err(Error::op_err(Op::DmaHeapIoctlAlloc))?;
        Ok(Heap { heap, name: name.to_owned(), shared: self.shared.clone() })
    }

    /// Opens the first heap of `names` that exists (for names that changed between
    /// kernels); the error names them all and lists what exists.
    pub fn open_any(&self, names: &[&str]) -> Result<Heap> {
        for name in names {
            match self.open(name) {
                Err(Error::HeapNotFound { .. }) => continue,
                other => return other,
            }
        }
        Err(self.not_found(&names.join("|")))
    }

    fn not_found(&self, name: &str) -> Error {
        Error::HeapNotFound { name: name.to_owned(), platform: self.shared.platform.clone(), available: self.names() }
    }

    /// The platform's device `name`, as a driver that imports buffers and runs jobs on
    /// them. The error lists the platform's devices.
    pub fn device(&self, name: &str) -> Result<Device> {
        let id = self.shared.sys.device(name).map_err(|source| Error::Device {
            device: name.to_owned(),
            action: "lookup",
            source: Box::new(source),
        })?;
        Ok(Device {
            shared: self.shared.clone(),
            id,
            name: name.to_owned(),
            context: context_alloc(1),
            seqno: 0,
            job_time: DEFAULT_JOB_TIME,
            imports: Vec::new(),
            last: None,
        })
    }
}

impl uapi::Heaps for Heaps {
    type Heap = Heap;
    type Error = Error;

    fn names(&self) -> Result<Vec<String>> {
        Ok(Heaps::names(self))
    }

    fn open(&self, name: &str) -> Result<Heap> {
        Heaps::open(self, name)
    }
}

/// An open simulated heap.
pub struct Heap {
    heap: crate::Heap,
    name: String,
    shared: Rc<Shared>,
}

impl fmt::Debug for Heap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heap").field("name", &self.name).finish()
    }
}

impl Heap {
    /// The heap's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Allocates a zeroed buffer of `len` bytes, rounded up to whole pages
    /// (`DMA_HEAP_IOCTL_ALLOC`).
    pub fn allocate(&self, len: usize) -> Result<DmaBuf> {
        self.shared.record(Op::DmaHeapIoctlAlloc, self.name.clone(), None, None);
        let inner = self.heap.allocate(len as u64).map_err(Error::op_err(Op::DmaHeapIoctlAlloc))?;
        let id = self.shared.next_buffer.get();
        self.shared.next_buffer.set(id + 1);
        Ok(DmaBuf { inner, shared: self.shared.clone(), id, mapped: Cell::new(false) })
    }
}

impl uapi::Heap for Heap {
    type Buffer = DmaBuf;

    fn name(&self) -> &str {
        &self.name
    }

    fn allocate(&self, len: usize) -> Result<DmaBuf> {
        Heap::allocate(self, len)
    }
}

/// Checks a dma-buf or sync file name as the kernel backend does.
fn check_name(name: &str) -> Result<()> {
    let max = DMA_BUF_NAME_LEN - 1;
    if name.as_bytes().contains(&0) {
        return Err(Error::NameHasNul { name: name.into() });
    }
    if name.len() > max {
        return Err(Error::NameTooLong { name: name.into(), len: name.len(), max });
    }
    Ok(())
}

fn size_of(buf: &crate::DmaBuf) -> usize {
    usize::try_from(buf.size()).unwrap_or(usize::MAX)
}

fn check_range(range: &Range<usize>, len: usize) -> Result<()> {
    if range.start > range.end || range.end > len {
        return Err(Error::RangeOutOfBounds { start: range.start, end: range.end, len });
    }
    Ok(())
}

fn range64(r: &Range<usize>) -> Range<u64> {
    r.start as u64..r.end as u64
}

/// A simulated dma-buf, as user space holds it (the fd).
pub struct DmaBuf {
    inner: crate::DmaBuf,
    shared: Rc<Shared>,
    id: u64,
    mapped: Cell<bool>,
}

impl fmt::Debug for DmaBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaBuf").field("name", &self.inner.name()).field("size", &self.inner.size()).finish()
    }
}

impl DmaBuf {
    /// The framework's buffer (its reservation object, name, backing, attachments).
    pub fn framework(&self) -> &crate::DmaBuf {
        &self.inner
    }

    /// The buffer's size in bytes.
    pub fn size(&self) -> usize {
        size_of(&self.inner)
    }

    /// The buffer's name (`buf<N>` until [`DmaBuf::set_name`]).
    pub fn name(&self) -> String {
        self.inner.name()
    }

    /// Names the buffer (`DMA_BUF_SET_NAME`): at most 31 bytes, no NUL.
    pub fn set_name(&self, name: &str) -> Result<()> {
        self.shared.record(Op::DmaBufSetName, self.inner.name(), None, None);
        check_name(name)?;
        self.inner.set_name(name).map_err(Error::op_err(Op::DmaBufSetName))
    }

    /// Maps the whole buffer for the CPU. One live mapping per buffer: a second one fails
    /// with [`Error::AlreadyMapped`].
    pub fn mmap(&self) -> Result<Mapping<'_>> {
        self.shared.record(Op::Mmap, self.inner.name(), None, None);
        if self.mapped.get() {
            return Err(Error::AlreadyMapped { buffer: self.inner.name() });
        }
        let map = self.inner.mmap().map_err(Error::op_err(Op::Mmap))?;
        self.mapped.set(true);
        Ok(Mapping { buf: self, len: self.size(), map, deferred: RefCell::new(None) })
    }

    /// Snapshots the buffer's fences as a sync file (`DMA_BUF_IOCTL_EXPORT_SYNC_FILE`):
    /// `Read` gives the writers' fences, `Write`/`ReadWrite` every fence.
    pub fn export_sync_file(&self, flags: SyncFlags) -> Result<SyncFile> {
        self.shared.record(Op::DmaBufIoctlExportSyncFile, self.inner.name(), Some(flags), None);
        let sf = self
            .inner
            .export_sync_file(u64::from(flags.bits()))
            .map_err(Error::op_err(Op::DmaBufIoctlExportSyncFile))?;
        Ok(SyncFile(sf))
    }

    /// Adds the sync file's fences to the buffer (`DMA_BUF_IOCTL_IMPORT_SYNC_FILE`), as a
    /// writer's if `flags` writes, else as a reader's.
    pub fn import_sync_file(&self, flags: SyncFlags, sync_file: &SyncFile) -> Result<()> {
        self.shared.record(Op::DmaBufIoctlImportSyncFile, self.inner.name(), Some(flags), None);
        self.inner
            .import_sync_file(u64::from(flags.bits()), &sync_file.0)
            .map_err(Error::op_err(Op::DmaBufIoctlImportSyncFile))
    }

    /// Waits (`poll`) until the buffer is ready for `interest` or `timeout` passes
    /// (`None`: no limit, `Some(ZERO)`: just look); simulated fences run simulated time.
    ///
    /// Reports what the kernel's `poll` reports: only the events asked for (`Read` asks
    /// for `POLLIN`, `Write` for `POLLOUT`, `ReadWrite` for both), with writable implying
    /// readable. A `false` field is "not known to be ready".
    pub fn poll(&self, interest: SyncFlags, timeout: Option<Duration>) -> Result<Readiness> {
        self.shared.record(Op::Poll, self.inner.name(), Some(interest), None);
        let r = self.inner.poll_timeout(interest, timeout).map_err(Error::op_err(Op::Poll))?;
        Ok(match interest {
            SyncFlags::Read => Readiness { readable: r.readable, writable: false },
            SyncFlags::Write => Readiness { readable: r.writable, writable: r.writable },
            SyncFlags::ReadWrite => Readiness { readable: r.readable || r.writable, writable: r.writable },
        })
    }
}

impl uapi::DmaBuf for DmaBuf {
    type Error = Error;
    type SyncFile = SyncFile;
    type Mapping<'a>
        = Mapping<'a>
    where
        Self: 'a;

    fn size(&self) -> usize {
        DmaBuf::size(self)
    }

    fn set_name(&self, name: &str) -> Result<()> {
        DmaBuf::set_name(self, name)
    }

    fn mmap(&self) -> Result<Mapping<'_>> {
        DmaBuf::mmap(self)
    }

    fn export_sync_file(&self, flags: SyncFlags) -> Result<SyncFile> {
        DmaBuf::export_sync_file(self, flags)
    }

    fn import_sync_file(&self, flags: SyncFlags, sync_file: &SyncFile) -> Result<()> {
        DmaBuf::import_sync_file(self, flags, sync_file)
    }

    fn poll(&self, interest: SyncFlags, timeout: Option<Duration>) -> Result<Readiness> {
        DmaBuf::poll(self, interest, timeout)
    }
}

/// A CPU mapping of a simulated dma-buf (unmapped on drop). Its bytes are reachable only
/// through guards, which bracket the access with `DMA_BUF_IOCTL_SYNC` as the kernel
/// backend's do (unless the heaps were set to [`SyncIoctls::Omit`]).
pub struct Mapping<'buf> {
    buf: &'buf DmaBuf,
    len: usize,
    map: UserMapping,
    /// A failed end of a dropped guard: the next guard reports it.
    deferred: RefCell<Option<Error>>,
}

impl fmt::Debug for Mapping<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapping").field("buffer", &self.buf.inner.name()).field("len", &self.len).finish()
    }
}

impl Drop for Mapping<'_> {
    fn drop(&mut self) {
        self.buf.mapped.set(false);
    }
}

impl Mapping<'_> {
    /// The mapped buffer.
    pub fn buffer(&self) -> &DmaBuf {
        self.buf
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn issue(&self) -> bool {
        self.buf.shared.sync_ioctls.get() == SyncIoctls::Issue
    }

    /// `SYNC_START` with `flags` over `range`, then a copy of the range's bytes.
    fn begin(&self, flags: SyncFlags, range: &Range<usize>) -> Result<Vec<u8>> {
        check_range(range, self.len)?;
        if let Some(e) = self.deferred.borrow_mut().take() {
            return Err(Error::DeferredEnd { source: Box::new(e) });
        }
        if self.issue() {
            let name = self.buf.inner.name();
            self.buf.shared.record(Op::DmaBufIoctlSyncStart, name, Some(flags), Some(range.clone()));
            self.map
                .sync_range(DMA_BUF_SYNC_START | u64::from(flags.bits()), range64(range))
                .map_err(Error::op_err(Op::DmaBufIoctlSyncStart))?;
        }
        let mut data = vec![0u8; range.len()];
        if let Err(source) = self.map.read_unsynced(range.start as u64, &mut data) {
            // The bracket was opened: close it before reporting.
            let _ = self.end(flags, range);
            return Err(Error::Access { buffer: self.buf.inner.name(), source: Box::new(source) });
        }
        Ok(data)
    }

    /// `SYNC_END` with `flags` over `range`.
    fn end(&self, flags: SyncFlags, range: &Range<usize>) -> Result<()> {
        if !self.issue() {
            return Ok(());
        }
        let name = self.buf.inner.name();
        self.buf.shared.record(Op::DmaBufIoctlSyncEnd, name, Some(flags), Some(range.clone()));
        self.map
            .sync_range(DMA_BUF_SYNC_END | u64::from(flags.bits()), range64(range))
            .map_err(Error::op_err(Op::DmaBufIoctlSyncEnd))
    }

    fn defer(&self, e: Error) {
        let mut slot = self.deferred.borrow_mut();
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    /// Begins a read of `range` (`SYNC_START | SYNC_READ`).
    pub fn read_range(&self, range: Range<usize>) -> Result<ReadGuard<'_>> {
        let data = self.begin(SyncFlags::Read, &range)?;
        Ok(ReadGuard { mapping: self, range, data, ended: false })
    }

    fn write_guard(&mut self, flags: SyncFlags, range: Range<usize>) -> Result<WriteGuard<'_>> {
        let data = self.begin(flags, &range)?;
        let original = data.clone();
        Ok(WriteGuard { mapping: self, flags, range, data, original, ended: false })
    }

    /// Begins a write of `range` (`SYNC_START | SYNC_WRITE`).
    pub fn write_range(&mut self, range: Range<usize>) -> Result<WriteGuard<'_>> {
        self.write_guard(SyncFlags::Write, range)
    }

    /// Begins a read-modify-write of `range` (`SYNC_START | SYNC_RW`).
    pub fn read_write_range(&mut self, range: Range<usize>) -> Result<WriteGuard<'_>> {
        self.write_guard(SyncFlags::ReadWrite, range)
    }
}

impl uapi::Mapping for Mapping<'_> {
    type Error = Error;
    type ReadGuard<'g>
        = ReadGuard<'g>
    where
        Self: 'g;
    type WriteGuard<'g>
        = WriteGuard<'g>
    where
        Self: 'g;

    fn len(&self) -> usize {
        self.len
    }

    fn read_range(&self, range: Range<usize>) -> Result<ReadGuard<'_>> {
        Mapping::read_range(self, range)
    }

    fn write_range(&mut self, range: Range<usize>) -> Result<WriteGuard<'_>> {
        Mapping::write_range(self, range)
    }

    fn read_write_range(&mut self, range: Range<usize>) -> Result<WriteGuard<'_>> {
        Mapping::read_write_range(self, range)
    }
}

/// Shared read access to (part of) a mapping, between `SYNC_START` and `SYNC_END` with
/// `READ`.
pub struct ReadGuard<'m> {
    mapping: &'m Mapping<'m>,
    range: Range<usize>,
    data: Vec<u8>,
    ended: bool,
}

impl fmt::Debug for ReadGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadGuard").field("range", &self.range).finish()
    }
}

impl ReadGuard<'_> {
    /// Ends the access now and reports the `SYNC_END` result.
    pub fn end(mut self) -> Result<()> {
        self.ended = true;
        self.mapping.end(SyncFlags::Read, &self.range)
    }
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        if !self.ended
            && let Err(e) = self.mapping.end(SyncFlags::Read, &self.range)
        {
            self.mapping.defer(e);
        }
    }
}

impl Deref for ReadGuard<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.data
    }
}

impl uapi::CpuAccess for ReadGuard<'_> {
    type Error = Error;

    fn flags(&self) -> SyncFlags {
        SyncFlags::Read
    }

    fn end(self) -> Result<()> {
        ReadGuard::end(self)
    }
}

/// Exclusive access to (part of) a mapping, between `SYNC_START` and `SYNC_END` with
/// `WRITE` (or `RW`). The bytes the program changed are stored through the simulated CPU
/// mapping when the guard ends, before its `SYNC_END`.
pub struct WriteGuard<'m> {
    mapping: &'m Mapping<'m>,
    flags: SyncFlags,
    range: Range<usize>,
    data: Vec<u8>,
    /// The bytes as the guard found them, to store only what changed.
    original: Vec<u8>,
    ended: bool,
}

impl fmt::Debug for WriteGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteGuard").field("flags", &self.flags).field("range", &self.range).finish()
    }
}

/// Runs of differing bytes, with gaps shorter than a cache line merged (one store per
/// run).
fn changed_runs(old: &[u8], new: &[u8]) -> Vec<Range<usize>> {
    const MERGE_GAP: usize = 64;
    let mut runs: Vec<Range<usize>> = Vec::new();
    let mut i = 0;
    while i < new.len() {
        if old.get(i) == new.get(i) {
            i += 1;
            continue;
        }
        let start = i;
        while i < new.len() && old.get(i) != new.get(i) {
            i += 1;
        }
        match runs.last_mut() {
            Some(last) if start - last.end < MERGE_GAP => last.end = i,
            _ => runs.push(start..i),
        }
    }
    runs
}

impl WriteGuard<'_> {
    /// `Write` or `ReadWrite`.
    pub fn flags(&self) -> SyncFlags {
        self.flags
    }

    /// Ends the access now: stores the changed bytes, then `SYNC_END`; reports the first
    /// failure.
    pub fn end(mut self) -> Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> Result<()> {
        self.ended = true;
        let mut stored = Ok(());
        for run in changed_runs(&self.original, &self.data) {
            let at = (self.range.start + run.start) as u64;
            if let Err(source) = self.mapping.map.write_unsynced(at, &self.data[run]) {
                stored = Err(Error::Access { buffer: self.mapping.buf.inner.name(), source: Box::new(source) });
                break;
            }
        }
        let ended = self.mapping.end(self.flags, &self.range);
        stored.and(ended)
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if !self.ended
            && let Err(e) = self.finish()
        {
            self.mapping.defer(e);
        }
    }
}

impl Deref for WriteGuard<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.data
    }
}

impl DerefMut for WriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }
}

impl uapi::CpuAccess for WriteGuard<'_> {
    type Error = Error;

    fn flags(&self) -> SyncFlags {
        self.flags
    }

    fn end(self) -> Result<()> {
        WriteGuard::end(self)
    }
}

/// A simulated sync file, as user space holds it: the framework's
/// [`sync_file::SyncFile`] with this module's errors and the kernel backend's name rules.
#[derive(Clone, Debug)]
pub struct SyncFile(sync_file::SyncFile);

impl From<sync_file::SyncFile> for SyncFile {
    fn from(sf: sync_file::SyncFile) -> Self {
        SyncFile(sf)
    }
}

impl SyncFile {
    /// The framework's sync file (its fence).
    pub fn framework(&self) -> &sync_file::SyncFile {
        &self.0
    }

    /// A new sync file signaling when both have (`SYNC_IOC_MERGE`). `name`: at most 31
    /// bytes, no NUL.
    pub fn merge(&self, name: &str, other: &SyncFile) -> Result<SyncFile> {
        check_name(name)?;
        let merged =
            self.0.merge(name, &other.0).map_err(|e| Error::Op { op: Op::SyncIocMerge, source: Box::new(e.into()) })?;
        Ok(SyncFile(merged))
    }

    /// Name, status and fences (`SYNC_IOC_FILE_INFO`).
    pub fn info(&self) -> SyncFileInfo {
        self.0.info()
    }

    /// Waits until every fence has signaled or the timeout passes; simulated fences run
    /// simulated time.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<WaitStatus> {
        self.0.wait(timeout).map_err(|e| Error::Op { op: Op::Poll, source: Box::new(e.into()) })
    }

    /// Hints the fences' providers that they are needed by `deadline`
    /// (`SYNC_IOC_SET_DEADLINE`).
    pub fn set_deadline(&self, deadline: MonotonicTime) {
        self.0.set_deadline(deadline);
    }
}

impl uapi::SyncFile for SyncFile {
    type Error = Error;

    fn merge(&self, name: &str, other: &Self) -> Result<Self> {
        SyncFile::merge(self, name, other)
    }

    fn info(&self) -> Result<SyncFileInfo> {
        Ok(SyncFile::info(self))
    }

    fn wait(&self, timeout: Option<Duration>) -> Result<WaitStatus> {
        SyncFile::wait(self, timeout)
    }

    fn set_deadline(&self, deadline: MonotonicTime) -> Result<()> {
        SyncFile::set_deadline(self, deadline);
        Ok(())
    }
}

/// A buffer a device has imported: attached and mapped until the device lets it go.
struct Import {
    id: u64,
    att: Attachment,
    /// The reference the importer holds (a driver holds the dma-buf's file).
    _buf: crate::DmaBuf,
}

impl Drop for Import {
    fn drop(&mut self) {
        // The mapping goes before the attachment, as a driver's release does it; an
        // unmap the hardware refuses leaves nothing to undo.
        let _ = self.att.unmap_raw();
    }
}

/// A simulated device on the same [`System`], driven as its driver would drive it: it
/// imports buffers and runs jobs on them, fenced through their reservation objects, in
/// simulated time. Made by [`Heaps::device`].
pub struct Device {
    shared: Rc<Shared>,
    id: DeviceId,
    name: String,
    context: u64,
    seqno: u64,
    job_time: Duration,
    imports: Vec<Import>,
    /// The fence of the last job submitted.
    last: Option<Fence>,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device").field("name", &self.name).field("jobs", &self.seqno).finish()
    }
}

impl Device {
    /// The device's name on the platform.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets how long each job takes in simulated time (at least 1 ns).
    pub fn set_job_time(&mut self, t: Duration) {
        self.job_time = t.max(Duration::from_nanos(1));
    }

    /// How many jobs have been submitted.
    pub fn jobs(&self) -> u64 {
        self.seqno
    }

    /// The fence of the last job, if any (signalled once the job completed).
    pub fn last_fence(&self) -> Option<&Fence> {
        self.last.as_ref()
    }

    /// Whether the device has imported `buf`.
    pub fn has_imported(&self, buf: &DmaBuf) -> bool {
        self.imports.iter().any(|i| i.id == buf.id)
    }

    /// Imports `buf` if not done yet: attaches the device and maps the buffer for it, both
    /// ways, for as long as the device holds it (a DRM driver's PRIME import).
    pub fn import(&mut self, buf: &DmaBuf) -> Result<()> {
        self.import_index(buf).map(|_| ())
    }

    /// Lets `buf` go: unmaps and detaches it. Nothing happens if it was not imported.
    pub fn release(&mut self, buf: &DmaBuf) {
        self.imports.retain(|i| i.id != buf.id);
    }

    /// The index of `buf`'s import, importing it first if needed.
    fn import_index(&mut self, buf: &DmaBuf) -> Result<usize> {
        if !Rc::ptr_eq(&buf.shared, &self.shared) {
            return Err(Error::ForeignBuffer { device: self.name.clone(), buffer: buf.inner.name() });
        }
        if let Some(pos) = self.imports.iter().position(|i| i.id == buf.id) {
            return Ok(pos);
        }
        let err = |action| {
            let device = self.name.clone();
            move |source| Error::Device { device, action, source: Box::new(source) }
        };
        let att = buf.inner.attach(self.id).map_err(err("attach"))?;
        att.map_raw(DmaDirection::Bidirectional).map_err(err("map"))?;
        self.imports.push(Import { id: buf.id, att, _buf: buf.inner.clone() });
        Ok(self.imports.len() - 1)
    }

    /// Runs a job on `buf`: waits for the fences it must (a writer for everyone, a reader
    /// for the writers), adds its own fence, runs `work` on the attachment inside a
    /// device-side access bracket over `range` (with the device's own cache dropped over
    /// it first, as a GPU driver does at every job), and schedules the fence to signal
    /// after the job time.
    fn job<R>(
        &mut self,
        buf: &DmaBuf,
        write: bool,
        range: Range<usize>,
        work: impl FnOnce(&Attachment) -> Result<R, crate::Error>,
    ) -> Result<R> {
        check_range(&range, buf.size())?;
        let idx = self.import_index(buf)?;
        let device = self.name.clone();
        let fail = |action| {
            let device = device.clone();
            move |source| Error::Device { device, action, source: Box::new(source) }
        };
        let resv = buf.inner.resv();
        resv.wait_timeout(ResvUsage::rw(write), Some(DEPENDENCY_TIMEOUT))
            .map_err(|e| fail("waiting for the job's dependencies")(e.into()))?;
        self.seqno += 1;
        let fence = self.shared.queue.fence(self.context, self.seqno, &self.name, "jobs");
        {
            let mut guard = resv.lock();
            guard.reserve_fences(1);
            guard
                .add_fence(&fence, if write { ResvUsage::Write } else { ResvUsage::Read })
                .map_err(|e| fail("adding the job's fence")(e.into()))?;
        }
        let r64 = range64(&range);
        let att = &self.imports[idx].att;
        // The driver starts the job with its device's cache dropped over the range, as GPU
        // drivers do whatever they know of who wrote the buffer; then the device-side
        // access bracket hands it what others wrote.
        let result =
            att.begin_access_raw(r64.clone()).and_then(|()| att.invalidate_device_cache(r64.clone())).and_then(|()| {
                let out = work(att);
                let ended = att.end_access_raw(r64);
                out.and_then(|o| ended.map(|()| o))
            });
        match result {
            Ok(out) => {
                let at =
                    self.shared.queue.now().checked_add(self.job_time).unwrap_or(MonotonicTime::from_nanos(u64::MAX));
                self.shared.queue.signal_at(at, &fence);
                self.last = Some(fence);
                Ok(out)
            }
            Err(source) => {
                // A failed job signals at once, with the error, as a driver's reset does.
                let _ = fence.signal_with_error(Errno::EIO);
                self.last = Some(fence);
                Err(Error::Device {
                    device,
                    action: if write { "write job" } else { "read job" },
                    source: Box::new(source),
                })
            }
        }
    }

    /// A job in which the device reads `range` of `buf`; returns the bytes it read. Its
    /// read fence stays on the buffer until the job completes in simulated time.
    pub fn read(&mut self, buf: &DmaBuf, range: Range<usize>) -> Result<Vec<u8>> {
        let r = range64(&range);
        self.job(buf, false, range, |att| att.device_read_raw(r))
    }

    /// A job in which the device writes `data` at offset `at` of `buf`. Its write fence
    /// stays on the buffer until the job completes in simulated time.
    pub fn write(&mut self, buf: &DmaBuf, at: usize, data: &[u8]) -> Result<()> {
        let range = at..at.saturating_add(data.len());
        self.job(buf, true, range, |att| att.device_write_raw(at as u64, data).map(|_| ()))
    }

    /// Runs simulated time until every job of this device has completed (its fence
    /// signalled).
    pub fn complete(&mut self) -> Result<()> {
        let Some(last) = &self.last else { return Ok(()) };
        // Jobs complete in submission order: the last one signals last.
        match last.wait_opt(None) {
            Ok(()) => Ok(()),
            Err(e) => {
                Err(Error::Device { device: self.name.clone(), action: "completing jobs", source: Box::new(e.into()) })
            }
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // A device going away finishes its jobs first: no fence is left for nobody to
        // signal.
        let _ = self.complete();
        self.imports.clear();
    }
}
