//! A deterministic model of the memory system that DMA buffer sharing runs on.
//!
//! On most Arm and many RISC-V SoCs, DMA masters do not snoop the CPU's caches: a device
//! reads DRAM and misses what the CPU still holds dirty, and the CPU keeps (or
//! speculatively refetches) stale lines after a device wrote DRAM. Whether a sharing
//! protocol is correct therefore depends on the hardware, and a program that works on an
//! x86 laptop corrupts frames on an Arm board. This crate models that hardware with real
//! bytes, so the question can be asked and answered on any machine:
//!
//! - [`Platform`]: regions (DRAM, CMA, bounce pool, VRAM, SRAM), the CPU's cache geometry,
//!   DMA masters (coherent or not, private caches, DMA masks, IOMMUs, contiguity,
//!   peer-to-peer paths), a cost table and the arch's DMA profile; read from TOML, with
//!   built-in presets ([`Platform::preset`]).
//! - [`Sim`]: CPU accesses through cached, write-combined or uncached mappings; device
//!   accesses by bus address; cache maintenance; the streaming DMA layer
//!   ([`Sim::dma_map`], [`Sim::dma_sync_for_cpu`], ...) with IOMMU mapping and swiotlb
//!   bouncing. Every operation is counted and costed ([`Stats`]).
//! - [`Chooser`]: the hardware's freedoms (write back a dirty line, drop a clean line,
//!   prefetch any line of a cacheable mapping) are explicit decisions, so a run is
//!   deterministic given its chooser and an explorer can enumerate every choice.
//! - [`Observer`]: every memory event, with provenance (which write produced each byte an
//!   access returned). Without an observer, nothing is recorded.
//! - [`Oracle`]: an observer that computes, after a run, the maintenance the run truly
//!   needed (lines, bytes, operations and cycles of each kind): the minimum to compare a
//!   maintenance policy with.
//!
//! The model knows nothing of DMA-buf: it is the hardware and the kernel's DMA-mapping
//! layer below it. The rules it implements are in `docs/coherency-model.md`,
//! sections 2 to 5.
//!
//! The source is built in floors, each module importing only those below it (a test,
//! `tests/layering.rs`, reads the imports and holds them to it): addresses (`addr`) and
//! counters (`stats`); the shared vocabulary (`vocab`: agents, caches, memory attributes,
//! maintenance, DMA directions, freedoms, operations); byte storage with provenance
//! (`store`); platform descriptions (`platform`); line caches (`cache`); the hardware's
//! state and what a chooser sees of it (`hw`); events and observers (`event`); choosers
//! (`chooser`); the simulator (`sim/`, one file per seam); the oracle (`oracle/`).
//!
//! ```
//! use dmabuf_sim::{MemAttr, PhysAddr, PhysRange, Platform, Sim, BusAddr};
//!
//! let mut sim = Sim::new(Platform::preset("arm64-noncoherent").unwrap());
//! let usb = sim.device("usb").unwrap(); // no IOMMU, no private cache
//! let page = PhysRange::new(PhysAddr(0x4000_0000), 4096).unwrap();
//! let map = sim.cpu_map(&[page], MemAttr::Cached).unwrap();
//! sim.cpu_fill(map, 0, 4096, 0x5a).unwrap();
//!
//! let mut seen = [0u8; 64];
//! sim.device_read(usb, BusAddr(0x4000_0000), &mut seen).unwrap();
//! assert_eq!(seen, [0; 64], "the controller does not snoop: it reads stale DRAM");
//!
//! sim.cache_clean(page).unwrap();
//! sim.device_read(usb, BusAddr(0x4000_0000), &mut seen).unwrap();
//! assert_eq!(seen, [0x5a; 64], "after a clean it sees the CPU's bytes");
//! ```

#![deny(missing_docs)]

mod addr;
mod cache;
mod chooser;
mod event;
mod file;
mod hw;
pub mod oracle;
mod platform;
mod sim;
mod stats;
mod store;
mod vocab;

pub use addr::{BusAddr, BusRange, Iova, PAGE_SIZE, PhysAddr, PhysRange, Range};
pub use cache::RangeAlloc;
pub use chooser::{Adversarial, Chooser, Lru, Never, Seeded, UnknownChooser, chooser_from_name};
pub use event::{Event, EventLog, Observer};
pub use file::read_bounded;
pub use hw::{HwView, LineState};
pub use oracle::Oracle;
pub use platform::{
    Address, ByteSize, CacheGeometry, Costs, CpuDesc, DeviceDesc, DeviceRole, DmaWindow, IommuDesc, Location, Platform,
    PlatformError, PortDesc, RegionDesc, RegionKind, SystemCacheDesc,
};
pub use sim::{AliasConflict, DmaAttrs, DmaMapping, DmaSegment, Sim, SimBuilder, SimError};
pub use stats::{HwCounts, OpCount, Stats};
pub use store::{ProvRun, WriteId};
pub use vocab::{
    Agent, CacheId, Cause, CpuMapId, DeviceId, DmaDirection, DmaProfile, Freedom, MaintOp, MemAttr, OpInfo, OpKind,
    SyncOp,
};
