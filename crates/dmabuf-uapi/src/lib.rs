//! The user-space face of DMA-buf: what a Linux program sees of buffer sharing, with the
//! rules checked once, above thin backends.
//!
//! A Linux program shares a buffer in five moves: allocate it from a dma-buf heap
//! (`/dev/dma_heap/<name>`, `DMA_HEAP_IOCTL_ALLOC`) or make it of a memfd's pages
//! (`/dev/udmabuf`), map it (`mmap`), bracket every CPU access to the mapping with
//! `DMA_BUF_IOCTL_SYNC` (`START` then `END`, with the `READ`/`WRITE` flags of the access),
//! hand fences around as sync files (`DMA_BUF_IOCTL_EXPORT_SYNC_FILE` /
//! `IMPORT_SYNC_FILE`, `SYNC_IOC_MERGE`, `poll`), and wait for readiness with `poll` on the
//! dma-buf. The last two are implicit and explicit synchronisation; the bracket is cache
//! maintenance (see the coherency model, section 6).
//!
//! This crate is that surface and nothing else, so that one program is written once and
//! runs against two backends:
//! - the real kernel (crate `dmabuf-linux`: file descriptors and ioctls);
//! - the simulated framework (crate `dmabuf`, module `user`: a simulated non-coherent
//!   platform, where a missing bracket shows up as a stale read instead of silently
//!   working on x86).
//!
//! The split is wgpu-hal's: validation lives here, above the backends, and a backend does
//! only what differs (an ioctl, or a call into the simulated framework). A refusal is the
//! same [`Error`] on both, with the errno the kernel returns for the same request
//! ([`Error::errno`]), so a program checks `EINVAL` or `ENOMEM` one way.
//!
//! | module | what | kernel |
//! |---|---|---|
//! | [`traits`] | the API as traits: [`Heaps`], [`Heap`], [`DmaBuf`], [`Mapping`], [`CpuAccess`], [`SyncFile`], [`Udmabuf`], [`Memfd`] | `/dev/dma_heap`, the dma-buf fd, `sync_file`, `/dev/udmabuf`, memfds |
//! | [`data`] | plain data: [`SyncFlags`], [`SyncPhase`], [`Readiness`], [`FenceStatus`], [`SyncFileInfo`], [`MonotonicTime`], [`FdFlags`], [`HeapFlags`], [`Seals`] | the uapi headers' structures and flags |
//! | [`errno`], [`error`] | [`Errno`], [`Error`] (one type, with the errno), [`Op`] (the operation, named by its ioctl) | errno-base.h, the ioctls' names |
//! | [`validate`], [`udmabuf`] | the rules: names, ranges, heap flags and lengths, mmap windows, udmabuf items | `dma_heap_ioctl_allocate`, `dma_buf_mmap_internal`, `udmabuf_create`, `check_memfd_seals` |
//! | [`conformance`] | the kernel's refusals as one generic program, which every backend's tests run | the same |
//! | [`mapping`] | the guarded [`mapping::Mapping`] and its RAII guards, over a backend's [`CpuMapping`] hook (the sync ioctls, the bytes); ranged guards use `DMA_BUF_IOCTL_SYNC_PARTIAL` where the kernel has it and fall back where it answers `ENOTTY` | `DMA_BUF_IOCTL_SYNC`, `DMA_BUF_IOCTL_SYNC_PARTIAL` |
//!
//! The mapping is the part that makes correct use the only easy one: its bytes are
//! reachable only through guards. Creating a guard is the `SYNC_START`, dropping it (or
//! [`CpuAccess::end`]) is the `SYNC_END` with the same flags. Write guards borrow the
//! mapping mutably, so two writers (or a writer and a reader) cannot overlap, and there is
//! no way to reach the bytes without a bracket around the access.
//!
//! Nothing here does I/O: no file descriptors, no simulator.
#![deny(missing_docs)]

pub mod conformance;
pub mod data;
pub mod errno;
pub mod error;
pub mod mapping;
pub mod traits;
pub mod udmabuf;
pub mod validate;

pub use data::{
    DMA_BUF_NAME_LEN, DMA_BUF_SYNC_OVERWRITE, FdFlags, FenceInfo, FenceStatus, HUGETLB_PAGE_SIZE, HeapFlags, MemfdKind,
    MonotonicTime, Readiness, Seals, SyncFileInfo, SyncFlags, SyncPhase, WaitStatus,
};
pub use errno::Errno;
pub use error::{Cause, Error, Op, Result};
pub use mapping::{CpuMapping, MapRegistration, MapRegistry, ReadGuard, WriteGuard};
pub use traits::{CpuAccess, DmaBuf, Heap, Heaps, Mapping, Memfd, SyncFile, Udmabuf};
pub use udmabuf::{UdmabufItem, UdmabufLimits};
