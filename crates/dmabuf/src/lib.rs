//! The DMA-buf framework: fences, reservation objects, sync files, and (later) buffer
//! sharing on the simulated hardware.
pub mod attach;
pub mod buffer;
pub mod fence;
pub mod heap;
pub mod ranges;
pub mod resv;
pub mod sim_time;
pub mod sw_sync;
pub mod sync_file;
pub mod uapi;
