//! The words every module of the model speaks: who acts ([`Agent`], [`DeviceId`]), which
//! cache holds a line ([`CacheId`]), how the CPU maps memory ([`MemAttr`], [`CpuMapId`]),
//! what maintenance and streaming DMA do ([`MaintOp`], [`DmaDirection`], [`DmaProfile`],
//! [`SyncOp`]), why a line moved ([`Cause`]), what the hardware may do on its own
//! ([`Freedom`]) and which operation just happened ([`OpKind`], [`OpInfo`]).
//!
//! The ground floor: it imports nothing but addresses, so every other module may import
//! it and none has to import the simulator, the chooser or the event stream for a word.

use serde::{Deserialize, Serialize};

use crate::addr::{PhysAddr, PhysRange};

/// A DMA master of the platform, by index into [`Platform::devices`](crate::Platform).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct DeviceId(pub u16);

impl DeviceId {
    /// Index into the platform's device list.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Who performed an access or an operation.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Agent {
    /// The CPU, through a mapping or through the kernel's linear map (a bounce copy).
    Cpu,
    /// A DMA master, by bus address.
    Device(DeviceId),
}

/// A cache: the CPU's, or a device's private one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum CacheId {
    /// The CPU's write-back cache.
    Cpu,
    /// A device's private cache.
    Device(DeviceId),
}

/// The memory attribute of a CPU mapping.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemAttr {
    /// Write-back cacheable.
    Cached,
    /// Write-combined: uncached, writes buffered until a barrier.
    WriteCombine,
    /// Uncached: every access goes to memory.
    Uncached,
}

impl MemAttr {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            MemAttr::Cached => "cached",
            MemAttr::WriteCombine => "write-combine",
            MemAttr::Uncached => "uncached",
        }
    }
}

/// A CPU mapping, as returned by [`Sim::cpu_map`](crate::Sim::cpu_map).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct CpuMapId(pub u32);

/// A cache-maintenance operation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum MaintOp {
    /// Write dirty CPU lines back; lines stay valid.
    Clean,
    /// Drop CPU lines without writing them back.
    Invalidate,
    /// Clean, then drop.
    CleanInvalidate,
    /// Write a device cache's dirty lines back.
    DeviceFlush,
    /// Drop a device cache's lines.
    DeviceInvalidate,
}

/// Why the hardware moved a line.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Cause {
    /// A maintenance operation the program (or its framework) asked for.
    Maintenance,
    /// A freedom the chooser took (the hardware may do this at any time).
    Freedom,
    /// The cache was full and replaced the line.
    Capacity,
    /// A coherent device's access snooped the line.
    Snoop,
    /// An access needed the line (a demand fill).
    Demand,
}

/// One thing the hardware may do at any moment.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Freedom {
    /// Write a dirty line back to memory (it stays valid and becomes clean).
    WriteBack {
        /// The cache holding the line.
        cache: CacheId,
        /// The address of the line's first byte.
        line: PhysAddr,
    },
    /// Drop a clean line.
    Drop {
        /// The cache holding the line.
        cache: CacheId,
        /// The address of the line's first byte.
        line: PhysAddr,
    },
    /// Fill an absent line of a cacheable mapping from memory (speculative prefetch).
    Prefetch {
        /// The address of the line's first byte.
        line: PhysAddr,
    },
}

/// What kind of operation just happened.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OpKind {
    /// The CPU loaded bytes through a mapping.
    CpuRead,
    /// The CPU stored bytes through a mapping.
    CpuWrite,
    /// A device read memory by DMA.
    DeviceRead,
    /// A device wrote memory by DMA.
    DeviceWrite,
    /// Maintenance of the CPU cache, or of a device's private cache.
    Maintenance(MaintOp),
    /// A CPU barrier (drains the write-combining buffer).
    Barrier,
    /// A copy to or from the bounce pool.
    BounceCopy,
    /// A CPU mapping was created.
    CpuMap,
}

/// The operation after which the chooser is asked.
#[derive(Clone, Debug)]
pub struct OpInfo {
    /// An access, maintenance, a barrier, a bounce copy or a new mapping.
    pub kind: OpKind,
    /// The CPU, or the device that accessed memory or whose cache was maintained.
    pub agent: Agent,
    /// For CPU accesses, the mapping's attribute.
    pub attr: Option<MemAttr>,
    /// The physical bytes it touched.
    pub ranges: Vec<PhysRange>,
    /// Whether it changed memory (not only a cache).
    pub writes_memory: bool,
}

/// The direction of a DMA transfer (the kernel's `enum dma_data_direction`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DmaDirection {
    /// `DMA_BIDIRECTIONAL`: the device reads and writes.
    Bidirectional,
    /// `DMA_TO_DEVICE`: the device reads.
    ToDevice,
    /// `DMA_FROM_DEVICE`: the device writes.
    FromDevice,
}

impl DmaDirection {
    /// The kernel's constant for the direction (`DMA_TO_DEVICE`), for reports.
    pub fn kernel_name(self) -> &'static str {
        match self {
            DmaDirection::Bidirectional => "DMA_BIDIRECTIONAL",
            DmaDirection::ToDevice => "DMA_TO_DEVICE",
            DmaDirection::FromDevice => "DMA_FROM_DEVICE",
        }
    }

    /// Whether the device may read the buffer.
    pub fn device_reads(self) -> bool {
        self != DmaDirection::FromDevice
    }

    /// Whether the device may write the buffer.
    pub fn device_writes(self) -> bool {
        self != DmaDirection::ToDevice
    }
}

/// What the arch's streaming DMA layer does for a non-coherent device.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DmaProfile {
    /// arm64 since Linux 5.19 (and RISC-V since 6.x): clean at map for every direction;
    /// invalidate at unmap unless TO_DEVICE.
    Arm64,
    /// Older kernels and other arches: invalidate (instead of clean) at map for
    /// FROM_DEVICE; the rest as `arm64`.
    InvalidateBeforeFromDevice,
}

/// The maintenance a sync performs on the CPU cache.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SyncOp {
    /// The CPU cache is left alone (arm64's `arch_sync_dma_for_cpu` returns early for
    /// `DMA_TO_DEVICE`).
    Nothing,
    /// Dirty lines are written back and stay valid (`dcache_clean_poc` on arm64).
    Clean,
    /// Lines are dropped, dirty or not (`dcache_inval_poc` on arm64).
    Invalidate,
}

impl DmaProfile {
    /// What `dma_sync_*_for_device` (and map) does for a direction.
    pub fn for_device(self, dir: DmaDirection) -> SyncOp {
        match (self, dir) {
            (DmaProfile::InvalidateBeforeFromDevice, DmaDirection::FromDevice) => SyncOp::Invalidate,
            _ => SyncOp::Clean,
        }
    }

    /// What `dma_sync_*_for_cpu` (and unmap) does for a direction.
    pub fn for_cpu(self, dir: DmaDirection) -> SyncOp {
        match dir {
            DmaDirection::ToDevice => SyncOp::Nothing,
            _ => SyncOp::Invalidate,
        }
    }
}
