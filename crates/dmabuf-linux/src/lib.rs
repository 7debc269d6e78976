//! The real Linux backend of the user API (crate `dmabuf-uapi`): dma-buf heaps, udmabuf,
//! the dma-buf ioctls and sync files, through file descriptors and ioctls.
//!
//! User space shares buffers on Linux with a handful of ioctls, and gets them wrong in a
//! handful of ways: CPU access to a mapping without the `DMA_BUF_IOCTL_SYNC` bracket
//! (invisible on x86, stale pixels on Arm), heaps hard-coded by a name that changed, fds
//! leaked on error paths, errno values lost. This crate makes the correct use the easy
//! one:
//! - [`Heaps`] discovers `/dev/dma_heap` and opens a heap by name, listing the heaps that
//!   exist when the one asked for does not; [`Heap::allocate`] returns a [`DmaBuf`];
//! - [`Udmabuf`] turns a sealed [`Memfd`] (shmem or hugetlb) into a dma-buf, refusing (with
//!   the rule and the item) what the kernel would refuse with a bare `EINVAL`;
//! - a [`DmaBuf`] owns its fd; [`DmaBuf::mmap`] and [`DmaBuf::mmap_range`] give a
//!   [`Mapping`] whose bytes are reachable only through guards that issue `SYNC_START`
//!   when made and `SYNC_END` when dropped, write guards borrowing the mapping mutably;
//! - [`SyncFile`] merges, inspects, waits and sets deadlines; [`SwSyncTimeline`] makes
//!   software fences where the kernel has sw_sync; [`vgem`] drives the vgem DRM driver as a
//!   real importer and fence source.
//!
//! Every fd is an `OwnedFd` from the moment the kernel returns it, so none leaks on any
//! path, and every failure is an [`Error`] naming the operation (the ioctl, by its kernel
//! name) and the errno, or the rule checked before the call.
//!
//! This crate is the thin part. The rules (names, flags, lengths, mmap windows, udmabuf
//! items), the guards and their deferred errors, and the error type are the user API's,
//! shared with the simulated backend (crate `dmabuf`, module `user`); this crate issues the
//! syscalls, keeps the fds, and adds what only a real kernel has: [`DmaBuf::fdinfo`],
//! [`vgem`], [`SwSyncTimeline`]. A program generic over the user API's traits runs unchanged
//! on a simulated non-coherent platform and on this kernel backend (see
//! `examples/frame_share.rs`).
//!
//! [`sys`] is the raw layer underneath: the uapi structures, the ioctl numbers and one thin
//! call per ioctl, returning the bare errno.
#![deny(missing_docs)]

mod buffer;
mod heap;
mod sw_sync;
mod sync_file;
pub mod sys;
mod udmabuf;
pub mod vgem;

pub use buffer::{DmaBuf, FdInfo, LinuxMap, Mapping, ReadGuard, WriteGuard, page_size};
pub use dmabuf_uapi::{
    CpuAccess, Errno, Error, FdFlags, FenceInfo, FenceStatus, HUGETLB_PAGE_SIZE, HeapFlags, MemfdKind, MonotonicTime,
    Op, Readiness, Result, Seals, SyncFileInfo, SyncFlags, UdmabufLimits, WaitStatus,
};
pub use heap::{CMA_HEAP_NAMES, DEFAULT_HEAP_DIR, Heap, Heaps};
pub use sw_sync::{SW_SYNC_PATH, SwSyncTimeline};
pub use sync_file::{SyncFile, monotonic_now};
pub use udmabuf::{Memfd, UDMABUF_DEV, Udmabuf, UdmabufItem, udmabuf_limits};
