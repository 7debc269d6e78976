//! The DMA-buf framework: buffer sharing on the simulated hardware, with the kernel's
//! fences, reservation objects and sync files.
//!
//! | module | kernel |
//! |---|---|
//! | [`fence`] | `dma_fence`, `dma_fence_chain`, `dma_fence_array`, `dma-fence-unwrap.c` |
//! | [`resv`] | `dma_resv` |
//! | [`sync_file`] | `sync_file` (`SYNC_IOC_MERGE`, `SYNC_IOC_FILE_INFO`, `poll`) |
//! | [`sw_sync`] | `sw_sync` (the software timeline behind `/sys/kernel/debug/sync/sw_sync`) |
//! | [`sim_time`] | (none) fences completed in simulated time, whose waits run the simulation |
//! | [`buffer`] | `dma_buf`, its attachments, mappings, CPU access and sync-file ioctls |
//! | [`uapi`] | (none) crate `dmabuf-uapi`, the user API (traits, rules, guards, errors), re-exported |
//! | [`user`] | `/dev/dma_heap`, `/dev/udmabuf`, memfds, the dma-buf and sync-file fds: the simulated backend of [`uapi`], with simulated devices |
pub mod attach;
pub mod buffer;
pub mod fence;
pub mod heap;
pub mod ranges;
pub mod resv;
pub mod sim_time;
pub mod sw_sync;
pub mod sync_file;
pub use dmabuf_uapi as uapi;
pub mod user;
