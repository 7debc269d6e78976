//! Platform descriptions: agents, memory regions, cache geometry, costs and the arch's DMA
//! profile, read from TOML.
//!
//! A platform is data, not code: the built-in presets are TOML files shipped in the crate
//! (`platforms/*.toml`) and go through the same parser and validation as a user's file.
//! Every rule broken by a description is reported with the file, the line and column of
//! the key, and the rule.
//!
//! The format, key by key, is the fields of [`Platform`] and the types under it: top-level
//! `name`, `description`, `line_size` and `dma_profile`; a `[cpu]` table ([`CpuDesc`]);
//! one `[[region]]` per memory region ([`RegionDesc`]); one `[[device]]` per DMA master
//! ([`DeviceDesc`], with its DMA windows ([`DmaWindow`]), IOMMU, port and role); one
//! `[[iommu]]` per IOMMU ([`IommuDesc`]: its input address width); one `[[port]]` per
//! interconnect port whose snooping a device takes ([`PortDesc`]); one `[[system_cache]]`
//! per cache in front of DRAM ([`SystemCacheDesc`]: which agents go through it); and an
//! optional `[costs]` table ([`Costs`]) whose every key is a cycle count of at most
//! 1,000,000,000 (10^9) per operation or per line.
//!
//! | module | what it holds |
//! |---|---|
//! | `mod.rs` | the description's types and the questions asked of it (reach, windows) |
//! | `error.rs` | why a description was refused, with where |
//! | `load.rs` | presets, files, TOML in and out, keys located in the text |
//! | `validate.rs` | the rules |

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::addr::{BusAddr, PAGE_SIZE, PhysAddr, PhysRange};
use crate::vocab::DmaProfile;

mod error;
mod load;
#[cfg(test)]
mod tests;
mod validate;

pub use error::{Location, PlatformError};

/// The built-in presets, by name, as TOML text.
const PRESETS: &[(&str, &str)] = &[
    ("x86-pcie", include_str!("../../platforms/x86-pcie.toml")),
    ("arm64-noncoherent", include_str!("../../platforms/arm64-noncoherent.toml")),
    ("arm64-mixed", include_str!("../../platforms/arm64-mixed.toml")),
    ("arm64-dma32", include_str!("../../platforms/arm64-dma32.toml")),
    ("riscv-noncoherent", include_str!("../../platforms/riscv-noncoherent.toml")),
];

/// A byte count, written in TOML as an integer or a string with a unit
/// (`"64KiB"`, `"4GiB"`, `"0x1000"`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `"4GiB"`, `"64 KiB"`, `"0x1000"`, `"4096"`, `"2M"` (binary units).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| c.is_ascii_alphabetic() && !s.starts_with("0x")).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let num = num.trim().replace('_', "");
        let n = if let Some(hex) = num.strip_prefix("0x") { u64::from_str_radix(hex, 16) } else { num.parse::<u64>() }
            .map_err(|_| format!("`{s}` is not a size (examples: 4096, \"64KiB\", \"4GiB\", \"0x1000\")"))?;
        let Some(shift) = ByteSize::unit_shift(unit.trim()) else {
            return Err(format!("unknown size unit `{}` in `{s}` ({})", unit.trim(), ByteSize::UNITS_HELP));
        };
        n.checked_mul(1 << shift).map(ByteSize).ok_or_else(|| format!("size `{s}` overflows 64 bits"))
    }

    /// The power of two a size unit multiplies by: `KiB` (also `K`, `KB`) 10, `MiB` 20,
    /// `GiB` 30, `TiB` 40, `B` or none 0. Units are binary everywhere, in platform files
    /// and in scenarios alike: one table for both.
    pub fn unit_shift(unit: &str) -> Option<u32> {
        Some(match unit {
            "" | "B" => 0,
            "K" | "KiB" | "KB" => 10,
            "M" | "MiB" | "MB" => 20,
            "G" | "GiB" | "GB" => 30,
            "T" | "TiB" | "TB" => 40,
            _ => return None,
        })
    }

    /// The units [`ByteSize::unit_shift`] knows, in words for an error's help.
    pub const UNITS_HELP: &'static str =
        "units: B, KiB, MiB, GiB, TiB (powers of 1024; K, M, G, T and KB, MB, GB, TB mean the same)";
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
            if n != 0 && n.is_multiple_of(1u64 << shift) {
                return write!(f, "{}{unit}", n >> shift);
            }
        }
        write!(f, "{n}")
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(i) => {
                u64::try_from(i).map(ByteSize).map_err(|_| serde::de::Error::custom("a size cannot be negative"))
            }
            Raw::Str(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// An address written in TOML as an integer (`0x4000_0000`) or a string (`"0x1_0000_0000"`,
/// needed above 2^63 where TOML integers end).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default)]
pub struct Address(pub u64);

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:#x}", self.0))
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ByteSize::deserialize(d).map(|b| Address(b.0))
    }
}

/// What a memory region is.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegionKind {
    /// System DRAM.
    Dram,
    /// A contiguous-memory (CMA) area inside system memory.
    Cma,
    /// The swiotlb bounce pool.
    Bounce,
    /// A device's local memory (a discrete GPU's VRAM), owned by one device.
    DeviceLocal,
    /// On-chip SRAM.
    Sram,
}

/// A memory region (bank).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionDesc {
    /// Unique name (`dram`, `cma`, `swiotlb`, `vram`).
    pub name: String,
    /// Its kind, which sets its defaults (whether the linear map covers it) and rules (a
    /// device-local region names its owner).
    pub kind: RegionKind,
    /// First physical address (page aligned).
    pub base: Address,
    /// Size in bytes (a multiple of the page size).
    pub size: ByteSize,
    /// For `device-local` regions: the device that owns the memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Whether the kernel's cacheable linear map covers the region, so the CPU may
    /// speculatively prefetch any of its lines. Defaults to true for system memory
    /// (DRAM, CMA, bounce pool) and false for device-local memory and SRAM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear_map: Option<bool>,
}

impl RegionDesc {
    /// The physical bytes the region holds, `[base, base + size)`.
    pub fn range(&self) -> PhysRange {
        PhysRange { start: PhysAddr(self.base.0), len: self.size.0 }
    }

    /// Whether the kernel's linear map (cacheable) covers the region.
    pub fn linear_mapped(&self) -> bool {
        self.linear_map.unwrap_or(matches!(self.kind, RegionKind::Dram | RegionKind::Cma | RegionKind::Bounce))
    }
}

/// Cache geometry: `sets` x `ways` lines, replaced in LRU order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheGeometry {
    /// Number of sets (a power of two).
    pub sets: u32,
    /// Lines per set.
    pub ways: u32,
}

/// The CPU side of the platform.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuDesc {
    /// Capacity of the (last-level) data cache; absent means unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheGeometry>,
    /// Lines the write-combining buffer holds before it drains on its own.
    #[serde(default = "default_wc_lines")]
    pub wc_buffer_lines: u32,
    /// Whether the kernel's linear map keeps a cacheable alias of pages an exporter maps
    /// uncached or write-combined, which the CPU may fill speculatively (arm64 and RISC-V
    /// leave the linear map alone). `false` where the kernel changes the linear map's
    /// attribute with the pages' (x86's `set_memory_wc`), so no cacheable alias remains.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub cacheable_linear_alias: bool,
}

fn default_wc_lines() -> u32 {
    4
}

/// A DMA master: how it reaches memory (snooping or not, its DMA mask, an IOMMU, the
/// regions it has a path to) and whether it has a private cache.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceDesc {
    /// Unique name (`gpu`, `vdec`, `display`).
    pub name: String,
    /// One line on what the device is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Whether it snoops the CPU cache.
    #[serde(default)]
    pub coherent: bool,
    /// Address bits the device can drive (1 to 64).
    pub dma_mask: u32,
    /// Whether it sees memory through an IOMMU.
    #[serde(default)]
    pub iommu: bool,
    /// Whether, without an IOMMU, it needs physically contiguous memory.
    #[serde(default)]
    pub needs_contiguous: bool,
    /// Whether the importer keeps its mapping and never syncs it (a scanout engine, a USB
    /// gadget's functionfs DMABUF, an IIO buffer, a long-lived DRM mapping): it cannot
    /// work from a bounce buffer, because nobody copies between its accesses. (`scanout`
    /// is the older name.)
    #[serde(default, alias = "scanout", skip_serializing_if = "is_false")]
    pub keeps_mapping: bool,
    /// Whether its driver keeps the job contract (coherency model, section 7): every job
    /// starts by invalidating what the device's private cache holds of its buffers, and
    /// its fence signals only once its writes are visible. On by default; off for hardware
    /// whose driver does not manage its cache at job boundaries.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub job_contract: bool,
    /// Whether a coherent device's writes allocate into the CPU's cache (ZynqMP's ACP,
    /// cache stashing) instead of going to memory: the bytes sit in dirty CPU lines, which
    /// a non-coherent reader does not see until they are cleaned.
    #[serde(default, skip_serializing_if = "is_false")]
    pub stash: bool,
    /// The regions it reaches (system memory, by name). Absent: every region that is not
    /// device-local.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reaches: Option<Vec<String>>,
    /// Device-local regions of other devices it reaches peer-to-peer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub p2p: Vec<String>,
    /// A private cache, coherent with nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheGeometry>,
    /// The windows through which the device addresses physical memory without an IOMMU,
    /// as a device tree's `dma-ranges` state them: physical `cpu + x` is bus address
    /// `bus + x` for `x` below `size`, and nothing outside a window is addressable (it is
    /// bounced, or refused). Empty: bus addresses are physical addresses, bounded by the
    /// mask alone. Behind an IOMMU the windows bound the IOVA space instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dma_windows: Vec<DmaWindow>,
    /// The `[[iommu]]` the device sits behind (implies `iommu = true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iommu_unit: Option<String>,
    /// The interconnect `[[port]]` the device is attached to: the device is coherent
    /// exactly when the port snoops (`coherent`, if given, must agree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// What kind of master it is, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<DeviceRole>,
    /// The device-tree node the description came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A DMA window (one entry of `dma-ranges`): physical `[cpu, cpu + size)` appears to the
/// device at bus `[bus, bus + size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DmaWindow {
    /// The first physical address of the window.
    pub cpu: Address,
    /// The bus address at which the device sees `cpu`.
    pub bus: Address,
    /// The window's length in bytes (not zero).
    pub size: ByteSize,
}

impl DmaWindow {
    /// The physical bytes the window covers.
    pub fn phys(&self) -> PhysRange {
        PhysRange { start: PhysAddr(self.cpu.0), len: self.size.0 }
    }

    /// The bus address of physical `pa`, if the window covers it.
    pub fn to_bus(&self, pa: PhysAddr) -> Option<BusAddr> {
        let off = pa.0.checked_sub(self.cpu.0).filter(|&o| o < self.size.0)?;
        self.bus.0.checked_add(off).map(BusAddr)
    }

    /// The physical address of bus address `bus`, if the window covers it.
    pub fn to_phys(&self, bus: BusAddr) -> Option<PhysAddr> {
        let off = bus.0.checked_sub(self.bus.0).filter(|&o| o < self.size.0)?;
        self.cpu.0.checked_add(off).map(PhysAddr)
    }
}

/// What kind of DMA master a device is, as a device tree's compatible or node name tells
/// it (`display`, `video-codec`, `gpu`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceRole {
    /// A display controller: it scans frames out.
    Display,
    /// A video decoder or encoder (or a JPEG codec).
    VideoCodec,
    /// A 3D GPU.
    Gpu,
    /// A 2D engine (blitter, scaler, rotator).
    Graphics2d,
    /// A camera interface or image signal processor.
    Camera,
    /// A USB controller.
    Usb,
    /// A PCIe root complex, standing for the endpoints behind it.
    Pcie,
    /// A DMA engine.
    DmaEngine,
    /// A storage controller (MMC, UFS, SATA, NAND).
    Storage,
    /// A network controller.
    Network,
    /// An audio controller.
    Audio,
    /// A crypto engine.
    Crypto,
}

impl DeviceRole {
    /// The role as the TOML writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceRole::Display => "display",
            DeviceRole::VideoCodec => "video-codec",
            DeviceRole::Gpu => "gpu",
            DeviceRole::Graphics2d => "graphics2d",
            DeviceRole::Camera => "camera",
            DeviceRole::Usb => "usb",
            DeviceRole::Pcie => "pcie",
            DeviceRole::DmaEngine => "dma-engine",
            DeviceRole::Storage => "storage",
            DeviceRole::Network => "network",
            DeviceRole::Audio => "audio",
            DeviceRole::Crypto => "crypto",
        }
    }
}

impl fmt::Display for DeviceRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An IOMMU: the devices that name it translate through it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IommuDesc {
    /// Unique name (`apps-smmu`, `vop-mmu`).
    pub name: String,
    /// One line on what it is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Input address bits: the IOVA space it translates is `[0, 2^input_bits)`, whatever
    /// a device's mask (12 to 64).
    pub input_bits: u32,
    /// The device-tree node it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// An interconnect port (a CCI slave interface) with snooping on or off: the devices
/// attached to it are coherent exactly when it snoops.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortDesc {
    /// Unique name (`cci-s3`).
    pub name: String,
    /// One line on what it is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Whether the port's masters snoop the CPU caches.
    pub snoop: bool,
    /// The device-tree node it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A system-level cache in front of DRAM (J721E's MSMC L3, SDM845's LLCC), and the agents
/// whose accesses go through it; the others reach DRAM directly.
///
/// When every agent goes through it, it is beyond the point of coherency: every agent sees
/// the same bytes through it, and it changes nothing any agent reads. When some agent
/// bypasses it, the point of coherency is DRAM: the CPU's maintenance to the point of
/// coherency (arm64's `dcache_clean_poc`, `dcache_inval_poc`) reaches the system cache
/// too, and the simulator keeps its lines.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemCacheDesc {
    /// Unique name (`llcc`, `msmc-l3`).
    pub name: String,
    /// One line on what it is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Capacity; absent means unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheGeometry>,
    /// The agents that go through it: `cpu` and device names.
    pub masters: Vec<String>,
    /// The device-tree node it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

fn default_true() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl DeviceDesc {
    /// The highest bus address the device can drive.
    pub fn max_address(&self) -> u64 {
        if self.dma_mask >= 64 { u64::MAX } else { (1u64 << self.dma_mask) - 1 }
    }

    /// The bus address at which the device, without an IOMMU, sees physical `pa`: through
    /// the window holding it, or `pa` itself when the device has no windows. `None` when
    /// no window holds it (the mask is not checked here).
    pub fn phys_to_bus(&self, pa: PhysAddr) -> Option<BusAddr> {
        if self.dma_windows.is_empty() {
            return Some(BusAddr(pa.0));
        }
        self.dma_windows.iter().find_map(|w| w.to_bus(pa))
    }

    /// The physical address behind bus address `bus` for a device without an IOMMU.
    pub fn bus_to_phys(&self, bus: BusAddr) -> Option<PhysAddr> {
        if self.dma_windows.is_empty() {
            return Some(PhysAddr(bus.0));
        }
        self.dma_windows.iter().find_map(|w| w.to_phys(bus))
    }

    /// Whether the device addresses all of `range` directly, without an IOMMU: one window
    /// holds it and its bus addresses are within the mask (the kernel's `dma_capable()`,
    /// which checks `phys_to_dma()` against `dma_mask` and `bus_dma_limit`).
    pub fn dma_capable(&self, range: PhysRange) -> bool {
        if range.is_empty() {
            return true;
        }
        let Some(last) = range.start.0.checked_add(range.len - 1) else { return false };
        let (Some(b0), Some(b1)) = (self.phys_to_bus(range.start), self.phys_to_bus(PhysAddr(last))) else {
            return false;
        };
        // Both ends in one window, in order (windows are linear).
        b1.0 >= b0.0 && b1.0 - b0.0 == range.len - 1 && b1.0 <= self.max_address()
    }

    /// The physical ranges the device addresses directly (without an IOMMU): each window's
    /// part whose bus addresses are within the mask, in physical order.
    pub fn direct_reach(&self) -> Vec<PhysRange> {
        let max = self.max_address();
        let mut v: Vec<PhysRange> = if self.dma_windows.is_empty() {
            vec![PhysRange { start: PhysAddr(0), len: max.saturating_add(1).max(1) }]
        } else {
            self.dma_windows
                .iter()
                .filter(|w| w.bus.0 <= max)
                .map(|w| {
                    let room = (max - w.bus.0).saturating_add(1);
                    PhysRange { start: PhysAddr(w.cpu.0), len: w.size.0.min(room) }
                })
                .collect()
        };
        v.sort_by_key(|r| r.start);
        v
    }

    /// In words, what the device addresses directly: its mask and its windows.
    pub fn reach_words(&self) -> String {
        let mut s = format!("{}-bit DMA mask", self.dma_mask);
        for w in &self.dma_windows {
            let off = w.bus.0.wrapping_sub(w.cpu.0);
            s.push_str(&format!(", window {} at bus {}", w.phys(), BusAddr(w.bus.0)));
            if off != 0 {
                s.push_str(&format!(" (offset {:#x})", off));
            }
        }
        s
    }
}

/// Cycle costs of every operation, so two strategies can be compared on the same work.
///
/// In TOML, the `[costs]` table; a key left out takes its default (below). Validation
/// refuses any cost above 1,000,000,000 cycles (10^9), naming the key: no real operation
/// costs a second per line, and with every cost below the bound a run covers 1.8 x 10^10
/// lines before a counter could pass 2^64. Counters saturate there rather than wrap (a
/// platform built in code is not validated).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Costs {
    /// Fixed cost of one CPU cache-maintenance call (range walk set-up and barrier).
    pub maintenance_op: u64,
    /// Per line cleaned.
    pub clean_line: u64,
    /// Per line invalidated.
    pub invalidate_line: u64,
    /// Per line cleaned and invalidated.
    pub clean_invalidate_line: u64,
    /// Fixed cost of one device-cache flush or invalidate.
    pub device_op: u64,
    /// Per device-cache line flushed.
    pub device_flush_line: u64,
    /// Per device-cache line invalidated.
    pub device_invalidate_line: u64,
    /// Per line copied to or from the bounce pool.
    pub bounce_line: u64,
    /// Per line of a CPU read that hits the cache.
    pub cpu_hit_line: u64,
    /// Per line of a CPU access that fills from memory.
    pub cpu_miss_line: u64,
    /// Per line of a CPU read through a write-combined or uncached mapping.
    pub cpu_uncached_read_line: u64,
    /// Per line of a CPU write through a write-combined mapping.
    pub cpu_wc_write_line: u64,
    /// Per line of a CPU write through an uncached mapping.
    pub cpu_uncached_write_line: u64,
    /// Per line a device reads or writes.
    pub device_access_line: u64,
}

/// The largest cost [`Platform::validate`] accepts, in cycles per operation or per line.
const MAX_COST: u64 = 1_000_000_000;

impl Costs {
    /// Every cost with its TOML key.
    fn entries(&self) -> [(&'static str, u64); 14] {
        // Destructured without `..`, so that a new cost cannot be left out of validation.
        let Costs {
            maintenance_op,
            clean_line,
            invalidate_line,
            clean_invalidate_line,
            device_op,
            device_flush_line,
            device_invalidate_line,
            bounce_line,
            cpu_hit_line,
            cpu_miss_line,
            cpu_uncached_read_line,
            cpu_wc_write_line,
            cpu_uncached_write_line,
            device_access_line,
        } = *self;
        [
            ("maintenance_op", maintenance_op),
            ("clean_line", clean_line),
            ("invalidate_line", invalidate_line),
            ("clean_invalidate_line", clean_invalidate_line),
            ("device_op", device_op),
            ("device_flush_line", device_flush_line),
            ("device_invalidate_line", device_invalidate_line),
            ("bounce_line", bounce_line),
            ("cpu_hit_line", cpu_hit_line),
            ("cpu_miss_line", cpu_miss_line),
            ("cpu_uncached_read_line", cpu_uncached_read_line),
            ("cpu_wc_write_line", cpu_wc_write_line),
            ("cpu_uncached_write_line", cpu_uncached_write_line),
            ("device_access_line", device_access_line),
        ]
    }
}

impl Default for Costs {
    fn default() -> Self {
        Costs {
            maintenance_op: 200,
            clean_line: 40,
            invalidate_line: 20,
            clean_invalidate_line: 45,
            device_op: 500,
            device_flush_line: 20,
            device_invalidate_line: 5,
            bounce_line: 30,
            cpu_hit_line: 2,
            cpu_miss_line: 120,
            cpu_uncached_read_line: 400,
            cpu_wc_write_line: 10,
            cpu_uncached_write_line: 100,
            device_access_line: 8,
        }
    }
}

/// A platform: the hardware a scenario runs on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    /// Name (a preset's name, or the user's).
    pub name: String,
    /// One paragraph on what it models.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Cache line size in bytes (32, 64, 128 or 256).
    #[serde(default = "default_line")]
    pub line_size: u64,
    /// What the arch's streaming DMA layer does at map, sync and unmap.
    pub dma_profile: DmaProfile,
    /// The CPU's cache capacity and write-combining buffer (`[cpu]`).
    pub cpu: CpuDesc,
    /// Memory regions (`[[region]]`), which do not overlap.
    #[serde(rename = "region")]
    pub regions: Vec<RegionDesc>,
    /// DMA masters (`[[device]]`); a [`DeviceId`](crate::DeviceId) indexes this list.
    #[serde(rename = "device", default)]
    pub devices: Vec<DeviceDesc>,
    /// IOMMUs (`[[iommu]]`) that devices name with `iommu_unit`.
    #[serde(rename = "iommu", default, skip_serializing_if = "Vec::is_empty")]
    pub iommus: Vec<IommuDesc>,
    /// Interconnect ports (`[[port]]`) that devices name with `port`.
    #[serde(rename = "port", default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortDesc>,
    /// System-level caches in front of DRAM (`[[system_cache]]`; at most one).
    #[serde(rename = "system_cache", default, skip_serializing_if = "Vec::is_empty")]
    pub system_caches: Vec<SystemCacheDesc>,
    /// What each operation costs, in cycles (`[costs]`; defaults where absent).
    #[serde(default)]
    pub costs: Costs,
}

fn default_line() -> u64 {
    64
}

impl Platform {
    /// Index of the region holding `addr`.
    pub fn region_of(&self, addr: PhysAddr) -> Option<usize> {
        self.regions.iter().position(|r| r.range().contains(addr))
    }

    /// Index of the region with that name.
    pub fn region_index(&self, name: &str) -> Option<usize> {
        self.regions.iter().position(|r| r.name == name)
    }

    /// Index of the device with that name.
    pub fn device_index(&self, name: &str) -> Option<usize> {
        self.devices.iter().position(|d| d.name == name)
    }

    /// Whether device `dev` reaches region `region`: a system region it lists (or any
    /// system region if it lists none), its own local memory, or another device's local
    /// memory over a peer-to-peer path. Whether it addresses the region's pages directly
    /// (its mask and windows) is [`DeviceDesc::dma_capable`].
    pub fn device_reaches(&self, dev: usize, region: usize) -> bool {
        let d = &self.devices[dev];
        let r = &self.regions[region];
        if r.kind == RegionKind::DeviceLocal {
            return r.owner.as_deref() == Some(d.name.as_str()) || d.p2p.contains(&r.name);
        }
        match &d.reaches {
            Some(list) => list.contains(&r.name),
            None => true,
        }
    }

    /// The IOMMU device `dev` sits behind, when the description names one.
    pub fn iommu_of(&self, dev: usize) -> Option<&IommuDesc> {
        let name = self.devices[dev].iommu_unit.as_deref()?;
        self.iommus.iter().find(|m| m.name == name)
    }

    /// The IOVA space of device `dev` behind its IOMMU, `[first, last]`: above page 0 (a
    /// NULL DMA address is never handed out), within its mask, the IOMMU's input width and
    /// the bus span of its windows (the kernel's `iommu_dma_init_domain()` limits it to
    /// `bus_dma_limit`); below 2^63 so that sums stay in range.
    pub fn iova_space(&self, dev: usize) -> (u64, u64) {
        let d = &self.devices[dev];
        let mut last = d.max_address().min((1u64 << 63) - 1);
        if let Some(m) = self.iommu_of(dev)
            && m.input_bits < 64
        {
            last = last.min((1u64 << m.input_bits) - 1);
        }
        let mut first = PAGE_SIZE;
        if !d.dma_windows.is_empty() {
            let lo = d.dma_windows.iter().map(|w| w.bus.0).min().unwrap_or(0);
            let hi = d.dma_windows.iter().map(|w| w.bus.0.saturating_add(w.size.0 - 1)).max().unwrap_or(u64::MAX);
            first = first.max(lo.next_multiple_of(PAGE_SIZE));
            last = last.min(hi);
        }
        (first, last)
    }

    /// The system-level cache, if the platform has one.
    pub fn system_cache(&self) -> Option<&SystemCacheDesc> {
        self.system_caches.first()
    }

    /// Whether an agent (`cpu` or a device name) goes through the system cache.
    pub fn through_system_cache(&self, agent: &str) -> bool {
        self.system_cache().is_some_and(|s| s.masters.iter().any(|m| m == agent))
    }

    /// Whether the system cache lies before the point of coherency: some agent bypasses
    /// it, so it can hold bytes that agent does not see and maintenance to the point of
    /// coherency must reach it. A system cache every agent goes through is transparent.
    pub fn system_cache_before_poc(&self) -> bool {
        self.system_cache().is_some_and(|_| {
            !self.through_system_cache("cpu") || self.devices.iter().any(|d| !self.through_system_cache(&d.name))
        })
    }
}
