//! The DMA-buf framework: fences, reservation objects, sync files, and (later) buffer
//! sharing on the simulated hardware.
pub mod uapi;
