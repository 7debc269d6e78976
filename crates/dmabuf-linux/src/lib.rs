//! The real Linux backend of the `dmabuf` user-space API: dma-buf heaps, udmabuf, the
//! dma-buf ioctls and sync files, through file descriptors and ioctls.
//!
//! User space shares buffers on Linux with a handful of ioctls, and gets them wrong in a
//! handful of ways: CPU access to a mapping without the `DMA_BUF_IOCTL_SYNC` bracket
//! (invisible on x86, stale pixels on Arm), heaps hard-coded by a name that changed, fds
//! leaked on error paths, errno values lost. This crate makes the correct use the easy
//! one:
//! - [`Heaps`] discovers `/dev/dma_heap` and opens a heap by name, listing the heaps that
//!   exist when the one asked for does not; [`Heap::allocate`] returns a [`DmaBuf`];
//! - [`Udmabuf`] turns a sealed [`Memfd`] into a dma-buf, refusing (with the rule and the
//!   item) what the kernel would refuse with a bare `EINVAL`;
//! - a [`DmaBuf`] owns its fd; [`DmaBuf::mmap`] gives a [`Mapping`] whose bytes are
//!   reachable only through guards that issue `SYNC_START` when made and `SYNC_END` when
//!   dropped, write guards borrowing the mapping mutably;
//! - [`SyncFile`] merges, inspects, waits and sets deadlines; [`SwSyncTimeline`] makes
//!   software fences where the kernel has sw_sync; [`vgem`] drives the vgem DRM driver as a
//!   real importer and fence source.
//!
//! Every fd is an `OwnedFd` from the moment the kernel returns it, so none leaks on any
//! path, and every failure is an [`Error`] naming the operation (the ioctl, by its kernel
//! name) and the errno, or the rule checked before the call.
//!
//! The types implement the traits of [`dmabuf::uapi`], which the simulated framework
//! implements too: a program generic over those traits runs unchanged on a simulated
//! non-coherent platform and on this kernel backend (see `examples/frame_share.rs`).
//!
//! [`sys`] is the raw layer underneath: the uapi structures, the ioctl numbers and one thin
//! call per ioctl, returning the bare errno.
#![deny(missing_docs)]

mod buffer;
mod error;
mod heap;
mod sw_sync;
mod sync_file;
pub mod sys;
mod udmabuf;
pub mod vgem;

pub use buffer::{DmaBuf, FdInfo, Mapping, ReadGuard, WriteGuard};
pub use dmabuf::uapi::{
    CpuAccess, FenceInfo, FenceStatus, MonotonicTime, Readiness, SyncFileInfo, SyncFlags, WaitStatus,
};
pub use error::{Errno, ErrnoName, Error, Op, Result};
pub use heap::{CMA_HEAP_NAMES, DEFAULT_HEAP_DIR, FdAccess, Heap, Heaps};
pub use sw_sync::{SW_SYNC_PATH, SwSyncTimeline};
pub use sync_file::{SyncFile, monotonic_now};
pub use udmabuf::{Memfd, UDMABUF_DEV, Udmabuf, UdmabufItem, UdmabufLimits, page_size};
