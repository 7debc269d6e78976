//! The DMA-buf framework: fences, reservation objects, sync files, and (later) buffer
//! sharing on the simulated hardware.
pub mod attach;
pub mod buffer;
pub mod fence;
pub mod heap;
pub mod ranges;
pub mod uapi;
