//! The DMA-buf framework: buffer sharing on the simulated hardware, with the kernel's
//! fences, reservation objects and sync files.
//!
//! One [`System`] is a simulated machine (`dmabuf_sim::Sim`) with the framework on it.
//! Buffers come from [`Heap`]s, a device's local memory ([`DeviceExporter`]) or a
//! [`Memfd`] through udmabuf; devices [`attach`](DmaBuf::attach) to them, which checks
//! at attach time whether the device can use the buffer at all, and
//! [`map`](Attachment::map) them; the CPU reaches the bytes inside access brackets
//! ([`DmaBuf::begin_cpu_access`], or [`DmaBuf::mmap`] and the sync ioctl). The
//! maintenance the framework performs at each hand-over is a [`MaintenancePolicy`]:
//! upstream Linux's, or the minimal conforming one. What a program gets wrong is
//! recorded as a [`Report`].
//!
//! | here | kernel |
//! |---|---|
//! | [`Heap::allocate`] | `DMA_HEAP_IOCTL_ALLOC` |
//! | [`DmaBuf`] (clone / drop) | `struct dma_buf` (`get_dma_buf` / `dma_buf_put`) |
//! | [`DmaBuf::attach`] / drop of [`Attachment`] | `dma_buf_attach` / `dma_buf_detach` |
//! | [`Attachment::map`] / drop of [`Mapping`] | `dma_buf_map_attachment` / `dma_buf_unmap_attachment` |
//! | [`DmaBuf::begin_cpu_access`] / drop of [`CpuAccess`] | `dma_buf_begin_cpu_access` / `dma_buf_end_cpu_access` |
//! | [`DmaBuf::vmap`] / drop of [`Vmap`] | `dma_buf_vmap` / `dma_buf_vunmap` |
//! | [`DmaBuf::begin_cpu_access_partial`] / [`DmaBuf::begin_cpu_access_overwrite`] | `dma_buf_begin_cpu_access_partial` (Android); the overwrite bracket is proposed (docs/proposals/sync-partial.md) |
//! | [`DmaBuf::mmap`], [`UserMapping::read`] / [`UserMapping::write`] / [`UserMapping::overwrite`] | `mmap` of the fd, `DMA_BUF_IOCTL_SYNC`, `DMA_BUF_IOCTL_SYNC_PARTIAL` (Rockchip) with the proposed `DMA_BUF_SYNC_OVERWRITE` |
//! | [`DmaBuf::resv`] | `dma_buf->resv` ([`Resv`]: `dma_resv`) |
//! | [`DmaBuf::export_sync_file`] / [`DmaBuf::import_sync_file`] | `DMA_BUF_IOCTL_EXPORT_SYNC_FILE` / `IMPORT_SYNC_FILE` |
//! | [`DmaBuf::poll`] | `poll` on the fd (`dma_buf_poll`) |
//! | [`DmaBuf::migrate`] | a dynamic exporter's move, with `move_notify` |
//! | [`fence`] | `dma_fence`, `dma_fence_chain`, `dma_fence_array`, `dma-fence-unwrap.c` |
//! | [`SyncFile`] | `sync_file` (`SYNC_IOC_MERGE`, `SYNC_IOC_FILE_INFO`, `poll`) |
//! | [`SyncTimeline`] | `sw_sync` (the software timeline behind `/sys/kernel/debug/sync/sw_sync`) |
//! | [`sim_time`] | (none) fences completed in simulated time, whose waits run the simulation |
//! | [`raw`] | the same calls without guards, as kernel code makes them |
//! | [`uapi`] | (none) crate `dmabuf-uapi`, the user API (traits, rules, guards, errors), re-exported |
//! | [`user`] | `/dev/dma_heap`, `/dev/udmabuf`, memfds, the dma-buf and sync-file fds: the simulated backend of [`uapi`], with simulated devices |
//!
//! Every CPU bracket first waits for the fences it must (`dma_buf_begin_cpu_access`
//! waits with `dma_resv_wait_timeout`): a read for the writers, a write for everyone.
//! Brackets and mappings are RAII guards; [`raw`] has the unguarded calls.
#![deny(missing_docs)]

mod attach;
mod attachment;
mod bracket;
mod cpu_access;
mod dma_buf;
mod error;
pub mod fence;
mod heap;
mod maintenance;
mod migrate;
mod mmap;
mod ranges;
pub mod raw;
mod report;
mod resv;
pub mod sim_time;
mod state;
mod sw_sync;
mod sync_file;
mod system;
pub use dmabuf_uapi as uapi;
pub mod user;

pub use attach::{AttachError, AttachPlan, AttachPolicy, Backing, ImporterCaps, check_attach};
pub use attachment::{Attachment, DeviceAccess, Mapping};
pub use bracket::CpuBracket;
pub use cpu_access::{CpuAccess, Vmap};
pub use dma_buf::DmaBuf;
pub use error::Error;
pub use heap::{DeviceBuffer, Exporter, HeapBuffer, HeapKind, UdmabufBuffer};
pub use maintenance::MaintenancePolicy;
pub use migrate::Placement;
pub use mmap::{
    DMA_BUF_SYNC_END, DMA_BUF_SYNC_OVERWRITE, DMA_BUF_SYNC_READ, DMA_BUF_SYNC_RW, DMA_BUF_SYNC_START,
    DMA_BUF_SYNC_WRITE, UserMapping, decode_sync_flags, decode_sync_partial_flags,
};
pub use ranges::RangeSet;
pub use report::Report;
pub use resv::{Resv, ResvGuard, ResvIterUnlocked, ResvUsage};
pub use state::BufferId;
pub use sw_sync::SyncTimeline;
pub use sync_file::SyncFile;
pub use system::{DeviceExporter, Heap, Memfd, System, SystemConfig};
