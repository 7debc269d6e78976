//! The simulator: memory, the CPU's cache and mappings, devices and their caches, the
//! streaming DMA layer, each operation followed by the chooser's freedoms.
//!
//! One type, [`Sim`], in pieces along the hardware's seams:
//!
//! | file | what |
//! |---|---|
//! | `simulator.rs` | the type, its builder, what the pieces share |
//! | `lines.rs` | the hardware's moves on lines: write-back, discard, fill, eviction |
//! | `cpu.rs` | CPU mappings, loads and stores, the write-combining buffer |
//! | `device.rs` | DMA by bus address, snooping, device caches |
//! | `maint.rs` | cache maintenance of the CPU cache and of device caches |
//! | `freedom.rs` | the hardware's freedoms, asked of the chooser after every operation |
//! | `dma.rs` | streaming DMA: map, sync, unmap; the IOMMU; swiotlb's bounce slots and copies |
//! | `slc.rs` | the system-level cache in front of DRAM, for the agents that go through it |
//! | `error.rs` | why an operation was refused |

mod cpu;
mod device;
mod dma;
mod error;
mod freedom;
mod lines;
mod maint;
mod simulator;
mod slc;

pub use dma::{DmaAttrs, DmaMapping, DmaSegment};
pub use error::SimError;
pub use simulator::{AliasConflict, Sim, SimBuilder};
