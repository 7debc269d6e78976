//! The user API (crate `dmabuf-uapi`) on the simulated framework: heaps, dma-bufs, CPU
//! mappings, sync files, udmabuf and memfds, and simulated devices to hand buffers to.
//!
//! This is the simulated backend, and a thin one: the rules (names, flags, lengths, mmap
//! windows, udmabuf items), the guards and their deferred errors, and the error type are
//! the user API's, shared with crate `dmabuf-linux`, which implements the same traits with
//! file descriptors and ioctls on a real kernel. A program written against the traits
//! therefore runs unchanged on a simulated platform (a non-coherent Arm SoC on any machine,
//! where a missing `DMA_BUF_IOCTL_SYNC` shows up as stale bytes) and on a real kernel; a
//! refusal carries the errno the kernel returns for it on both.
//!
//! | here | kernel | framework underneath |
//! |---|---|---|
//! | [`Heaps`] | the entries of `/dev/dma_heap` | the [`System`]'s heaps, under the names a kernel gives them |
//! | [`Heap::allocate_with`] | `DMA_HEAP_IOCTL_ALLOC` | [`crate::Heap::allocate`]; the fd's access mode is kept here |
//! | [`DmaBuf::set_name`] | `DMA_BUF_SET_NAME` | [`crate::DmaBuf::set_name`] |
//! | [`DmaBuf::mmap_range`] | `mmap` of the fd | [`crate::DmaBuf::mmap`] of the whole buffer, the window kept here |
//! | [`Mapping`]'s guards | `DMA_BUF_IOCTL_SYNC` `START` / `END`, `DMA_BUF_IOCTL_SYNC_PARTIAL` for a range (`ENOTTY` under `MaintenancePolicy::Linux`, as upstream: the guards fall back) | [`raw::sync_ioctl`](crate::raw::sync_ioctl), [`raw::sync_ioctl_partial`](crate::raw::sync_ioctl_partial), the bytes moved by [`raw::mmap_read`](crate::raw::mmap_read) / [`raw::mmap_write`](crate::raw::mmap_write) inside the bracket |
//! | [`DmaBuf::export_sync_file`] / [`DmaBuf::import_sync_file`] | `DMA_BUF_IOCTL_EXPORT_SYNC_FILE` / `IMPORT_SYNC_FILE` | the same on [`crate::DmaBuf`] |
//! | [`DmaBuf::poll`] | `poll` on the fd | [`crate::DmaBuf::poll_timeout`] |
//! | [`SyncFile`] | `sync_file` | [`crate::sync_file::SyncFile`] |
//! | [`Udmabuf`], [`Memfd`] | `/dev/udmabuf`, `memfd_create` | [`System::memfd`], [`crate::Memfd::udmabuf`]; other seals, hugetlb and lists kept here |
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

mod device;
mod dma_buf;
mod sync_file;
mod udmabuf;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use dmabuf_sim::{PAGE_SIZE, RegionKind};
use dmabuf_uapi::validate::HeapAllocation;
use dmabuf_uapi::{Errno, FdFlags, HeapFlags, SyncFlags, traits};

pub use self::device::Device;
pub use self::dma_buf::{DmaBuf, Mapping, ReadGuard, SimMap, WriteGuard};
pub use self::sync_file::SyncFile;
pub use self::udmabuf::{Memfd, Udmabuf, UdmabufItem};
#[doc(no_inline)]
pub use dmabuf_uapi::{Error, Op, Result};

use crate::fence::MonotonicTime;
use crate::heap::HeapKind;
use crate::sim_time::{EventQueue, Simulation};
use crate::{Report, System, SystemConfig};

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

/// The errno the kernel returns where the framework refuses with `e`.
pub fn errno_of(e: &crate::Error) -> Errno {
    use crate::Error as E;
    match e {
        E::OutOfMemory { .. } => Errno::ENOMEM,
        E::NoSuchHeap { .. } => Errno::ENOENT,
        E::NoSuchDevice { .. } | E::NoLocalMemory { .. } => Errno::ENODEV,
        E::Pinned { .. } | E::Busy { .. } | E::AlreadyMapped { .. } => Errno::EBUSY,
        E::Fence(f) => f.errno(),
        E::NoSyncPartial => Errno::ENOTTY,
        // A device the memory does not suit is refused at attach or map, as drivers
        // refuse it (dma_buf_attach, dma_map_sgtable): EINVAL.
        E::Attach(_)
        | E::ZeroSize
        | E::OutOfBounds { .. }
        | E::BadSyncFlags { .. }
        | E::BadSyncPartialFlags { .. }
        | E::NoOverwrite { .. }
        | E::BadSyncFileFlags { .. }
        | E::NameTooLong { .. }
        | E::NotDynamic { .. }
        | E::Udmabuf { .. }
        | E::MmapRefused { .. }
        | E::NotMapped { .. }
        | E::WrongDirection { .. } => Errno::EINVAL,
        // The hardware refusing an access is a device error.
        _ => Errno::EIO,
    }
}

/// A mapper of the framework's refusal of `op` to the user API's error, with the errno
/// the kernel returns for it.
pub fn framework(op: Op) -> impl FnOnce(crate::Error) -> Error {
    move |source| Error::Framework { op, errno: errno_of(&source), source: Box::new(source) }
}

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
    /// Which ioctl or system call it was.
    pub op: Op,
    /// The buffer's name (the heap's, for an allocation).
    pub target: String,
    /// The flags (`SYNC`, export, import) or the interest (`poll`).
    pub flags: Option<SyncFlags>,
    /// The byte range of the buffer the ioctl names: the whole buffer for
    /// `DMA_BUF_IOCTL_SYNC`, `offset..offset + len` for `DMA_BUF_IOCTL_SYNC_PARTIAL`.
    pub range: Option<Range<usize>>,
}

/// What the heaps, buffers, memfds and devices of one simulated system share.
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

    /// A user-space handle on a framework buffer, with a fresh identity.
    fn adopt(self: &Rc<Self>, inner: crate::DmaBuf, access: FdFlags) -> DmaBuf {
        let id = self.next_buffer.get();
        self.next_buffer.set(id + 1);
        DmaBuf::new(inner, self.clone(), id, access)
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
        let heap = self.shared.sys.heap(kind.name()).map_err(framework(Op::DmaHeapIoctlAlloc))?;
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
        Error::HeapNotFound {
            name: name.to_owned(),
            location: format!("simulated platform {}", self.shared.platform),
            available: self.names(),
        }
    }

    /// The udmabuf device of the simulated system, with the driver's default limits.
    pub fn udmabuf(&self) -> Udmabuf {
        Udmabuf::new(self.shared.clone())
    }

    /// The platform's device `name`, as a driver that imports buffers and runs jobs on
    /// them. The error lists the platform's devices.
    pub fn device(&self, name: &str) -> Result<Device> {
        Device::new(self.shared.clone(), name)
    }
}

impl traits::Heaps for Heaps {
    type Heap = Heap;

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
    /// The name it was opened by, one of [`Heaps::names`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Allocates a zeroed, read-write buffer of `len` bytes, rounded up to whole pages
    /// (`DMA_HEAP_IOCTL_ALLOC`).
    pub fn allocate(&self, len: usize) -> Result<DmaBuf> {
        self.allocate_with(len, FdFlags::DEFAULT, HeapFlags::NONE)
    }

    /// Allocates with the kernel's fd and heap flags (`DMA_HEAP_IOCTL_ALLOC`): what the
    /// kernel refuses is refused first, with its errno; an `O_RDONLY` buffer maps
    /// read-only, an `O_WRONLY` one not at all.
    pub fn allocate_with(&self, len: usize, fd_flags: FdFlags, heap_flags: HeapFlags) -> Result<DmaBuf> {
        let len = HeapAllocation::new(len as u64, fd_flags, heap_flags).check(PAGE_SIZE)?;
        self.shared.record(Op::DmaHeapIoctlAlloc, self.name.clone(), None, None);
        let inner = self.heap.allocate(len).map_err(framework(Op::DmaHeapIoctlAlloc))?;
        Ok(self.shared.adopt(inner, fd_flags))
    }
}

impl traits::Heap for Heap {
    type Buffer = DmaBuf;

    fn name(&self) -> &str {
        &self.name
    }

    fn allocate_with(&self, len: usize, fd_flags: FdFlags, heap_flags: HeapFlags) -> Result<DmaBuf> {
        Heap::allocate_with(self, len, fd_flags, heap_flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fence::FenceError;

    #[test]
    fn framework_refusals_carry_the_errno_the_kernel_returns() {
        assert_eq!(errno_of(&crate::Error::ZeroSize), Errno::EINVAL);
        assert_eq!(errno_of(&crate::Error::OutOfMemory { heap: "system".into(), size: 1 }), Errno::ENOMEM);
        assert_eq!(errno_of(&crate::Error::Fence(FenceError::Timeout)), Errno::ETIME);
        assert_eq!(errno_of(&crate::Error::NoSuchHeap { name: "x".into() }), Errno::ENOENT);
        let e = framework(Op::Mmap)(crate::Error::MmapRefused { buffer: "b".into(), reason: "no".into() });
        assert_eq!((e.errno(), e.op()), (Some(Errno::EINVAL), Some(Op::Mmap)));
    }
}
