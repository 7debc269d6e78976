//! Platform descriptions: agents, memory regions, cache geometry, costs and the arch's DMA
//! profile, read from TOML.
//!
//! A platform is data, not code: the built-in presets are TOML files shipped in the crate
//! (`platforms/*.toml`) and go through the same parser and validation as a user's file.
//! Every rule broken by a description is reported with the file, the key and the rule.
//!
//! The format, key by key, is the fields of [`Platform`] and the types under it: top-level
//! `name`, `description`, `line_size` and `dma_profile`; a `[cpu]` table ([`CpuDesc`]);
//! one `[[region]]` per memory region ([`RegionDesc`]); one `[[device]]` per DMA master
//! ([`DeviceDesc`]); and an optional `[costs]` table ([`Costs`]) whose every key is a cycle
//! count of at most 1,000,000,000 (10^9) per operation or per line.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::addr::{PAGE_SIZE, PhysAddr, PhysRange};
use crate::vocab::DmaProfile;

/// The built-in presets, by name, as TOML text.
const PRESETS: &[(&str, &str)] = &[
    ("x86-pcie", include_str!("../platforms/x86-pcie.toml")),
    ("arm64-noncoherent", include_str!("../platforms/arm64-noncoherent.toml")),
    ("arm64-mixed", include_str!("../platforms/arm64-mixed.toml")),
    ("arm64-dma32", include_str!("../platforms/arm64-dma32.toml")),
    ("riscv-noncoherent", include_str!("../platforms/riscv-noncoherent.toml")),
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
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "K" | "KiB" | "KB" => 1 << 10,
            "M" | "MiB" | "MB" => 1 << 20,
            "G" | "GiB" | "GB" => 1 << 30,
            "T" | "TiB" | "TB" => 1 << 40,
            u => return Err(format!("unknown size unit `{u}` in `{s}` (use B, KiB, MiB, GiB, TiB)")),
        };
        n.checked_mul(mult).map(ByteSize).ok_or_else(|| format!("size `{s}` overflows 64 bits"))
    }
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
    /// What each operation costs, in cycles (`[costs]`; defaults where absent).
    #[serde(default)]
    pub costs: Costs,
}

fn default_line() -> u64 {
    64
}

/// Why a platform description was refused. Each variant is one rule.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum PlatformError {
    /// The file could not be read.
    #[error("{file}: cannot read: {reason}")]
    Io {
        /// The path as given.
        file: String,
        /// What the OS said.
        reason: String,
    },
    /// The TOML is malformed or a key has the wrong type or is unknown.
    #[error("{file}: {message}")]
    Syntax {
        /// The description's name: its path, or `<preset NAME>`.
        file: String,
        /// The parser's message, with line, column and the offending text.
        message: String,
    },
    /// No preset has that name.
    #[error("unknown platform preset `{name}`; known presets: {}", known.join(", "))]
    UnknownPreset {
        /// The name asked for.
        name: String,
        /// The presets that exist.
        known: Vec<String>,
    },
    /// A rule about the description's contents is broken.
    #[error("{file}: `{key}`: {rule}")]
    Invalid {
        /// The description's name: its path, or `<preset NAME>`.
        file: String,
        /// The key, as a path (`device[2].dma_mask`, `region.cma`).
        key: String,
        /// The rule broken, in words.
        rule: String,
    },
}

impl Platform {
    /// The names of the built-in presets.
    pub fn preset_names() -> Vec<&'static str> {
        PRESETS.iter().map(|(n, _)| *n).collect()
    }

    /// The TOML text of a preset, as shipped.
    pub fn preset_source(name: &str) -> Option<&'static str> {
        PRESETS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
    }

    /// The built-in preset `name`, parsed and validated as a user's file is.
    pub fn preset(name: &str) -> Result<Platform, PlatformError> {
        let src = Self::preset_source(name).ok_or_else(|| PlatformError::UnknownPreset {
            name: name.to_string(),
            known: Self::preset_names().iter().map(|s| s.to_string()).collect(),
        })?;
        Self::from_toml(src, &format!("<preset {name}>"))
    }

    /// Reads a description from a TOML file.
    pub fn from_file(path: &Path) -> Result<Platform, PlatformError> {
        let file = path.display().to_string();
        let meta =
            std::fs::metadata(path).map_err(|e| PlatformError::Io { file: file.clone(), reason: e.to_string() })?;
        // A platform is a page of text; refuse anything that is clearly not one.
        if meta.len() > 1 << 20 {
            return Err(PlatformError::Io { file, reason: "larger than 1 MiB; not a platform description".into() });
        }
        let bytes = std::fs::read(path).map_err(|e| PlatformError::Io { file: file.clone(), reason: e.to_string() })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| PlatformError::Syntax { file: file.clone(), message: "not UTF-8 text".into() })?;
        Self::from_toml(&text, &file)
    }

    /// Reads a preset by name, or a file when `name_or_path` ends in `.toml` or contains a
    /// path separator.
    pub fn load(name_or_path: &str) -> Result<Platform, PlatformError> {
        if name_or_path.ends_with(".toml") || name_or_path.contains('/') {
            Self::from_file(Path::new(name_or_path))
        } else {
            Self::preset(name_or_path)
        }
    }

    /// Parses and validates a description; `file` names it in errors.
    pub fn from_toml(text: &str, file: &str) -> Result<Platform, PlatformError> {
        let p: Platform = toml::from_str(text)
            .map_err(|e| PlatformError::Syntax { file: file.to_string(), message: e.to_string() })?;
        p.validate(file)?;
        Ok(p)
    }

    /// The description as TOML, which [`Platform::from_toml`] reads back to an equal
    /// platform.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot serialize platform: {e}\n"))
    }

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
    /// memory over a peer-to-peer path.
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

    /// Checks every rule; `file` names the description in errors.
    pub fn validate(&self, file: &str) -> Result<(), PlatformError> {
        let bad = |key: String, rule: String| PlatformError::Invalid { file: file.to_string(), key, rule };
        if !(self.line_size.is_power_of_two() && (32..=256).contains(&self.line_size)) {
            return Err(bad("line_size".into(), format!("must be 32, 64, 128 or 256 bytes, not {}", self.line_size)));
        }
        if let Some(g) = &self.cpu.cache {
            check_geometry(g).map_err(|rule| bad("cpu.cache".into(), rule))?;
        }
        if self.cpu.wc_buffer_lines == 0 || self.cpu.wc_buffer_lines > 64 {
            return Err(bad("cpu.wc_buffer_lines".into(), "must be between 1 and 64".into()));
        }
        if self.regions.is_empty() {
            return Err(bad("region".into(), "a platform needs at least one memory region".into()));
        }
        for (i, r) in self.regions.iter().enumerate() {
            let key = format!("region[{i}] ({})", r.name);
            if r.name.is_empty() {
                return Err(bad(format!("region[{i}].name"), "must not be empty".into()));
            }
            if self.regions[..i].iter().any(|o| o.name == r.name) {
                return Err(bad(format!("{key}.name"), format!("duplicate region name `{}`", r.name)));
            }
            if r.size.0 == 0 || !r.size.0.is_multiple_of(PAGE_SIZE) {
                return Err(bad(format!("{key}.size"), format!("must be a non-zero multiple of {PAGE_SIZE} bytes")));
            }
            if !r.base.0.is_multiple_of(PAGE_SIZE) {
                return Err(bad(format!("{key}.base"), format!("must be aligned to {PAGE_SIZE} bytes")));
            }
            if r.base.0.checked_add(r.size.0).is_none() {
                return Err(bad(format!("{key}.size"), "base + size overflows 64 bits".into()));
            }
            for (j, o) in self.regions[..i].iter().enumerate() {
                if o.range().overlaps(&r.range()) {
                    return Err(bad(
                        key.clone(),
                        format!("overlaps region[{j}] ({}) {} with {}", o.name, o.range(), r.range()),
                    ));
                }
            }
            match (&r.kind, &r.owner) {
                (RegionKind::DeviceLocal, None) => {
                    return Err(bad(format!("{key}.owner"), "a device-local region names its owner device".into()));
                }
                (RegionKind::DeviceLocal, Some(o)) if self.device_index(o).is_none() => {
                    return Err(bad(format!("{key}.owner"), format!("no device is named `{o}`")));
                }
                (k, Some(_)) if *k != RegionKind::DeviceLocal => {
                    return Err(bad(format!("{key}.owner"), "only device-local regions have an owner".into()));
                }
                _ => {}
            }
        }
        if self.regions.iter().filter(|r| r.kind == RegionKind::Bounce).count() > 1 {
            return Err(bad("region".into(), "at most one bounce pool".into()));
        }
        for (i, d) in self.devices.iter().enumerate() {
            let key = format!("device[{i}] ({})", d.name);
            if d.name.is_empty() || d.name == "cpu" {
                return Err(bad(format!("device[{i}].name"), "must be non-empty and not `cpu`".into()));
            }
            if self.devices[..i].iter().any(|o| o.name == d.name) {
                return Err(bad(format!("{key}.name"), format!("duplicate device name `{}`", d.name)));
            }
            if d.dma_mask == 0 || d.dma_mask > 64 {
                return Err(bad(
                    format!("{key}.dma_mask"),
                    format!("must be between 1 and 64 address bits, not {}", d.dma_mask),
                ));
            }
            if let Some(g) = &d.cache {
                check_geometry(g).map_err(|rule| bad(format!("{key}.cache"), rule))?;
            }
            for n in d.reaches.iter().flatten() {
                match self.region_index(n) {
                    None => return Err(bad(format!("{key}.reaches"), format!("no region is named `{n}`"))),
                    Some(r) if self.regions[r].kind == RegionKind::DeviceLocal => {
                        return Err(bad(
                            format!("{key}.reaches"),
                            format!("`{n}` is device-local memory: list it under `p2p`"),
                        ));
                    }
                    _ => {}
                }
            }
            for n in &d.p2p {
                match self.region_index(n) {
                    Some(r) if self.regions[r].kind == RegionKind::DeviceLocal => {}
                    Some(_) => {
                        return Err(bad(format!("{key}.p2p"), format!("`{n}` is not device-local memory")));
                    }
                    None => return Err(bad(format!("{key}.p2p"), format!("no region is named `{n}`"))),
                }
            }
            if !(0..self.regions.len()).any(|r| self.device_reaches(i, r)) {
                return Err(bad(format!("{key}.reaches"), "the device reaches no memory region".into()));
            }
        }
        for (name, cost) in self.costs.entries() {
            if cost > MAX_COST {
                return Err(bad(
                    format!("costs.{name}"),
                    format!(
                        "must be at most {MAX_COST} cycles (10^9, per operation or per line: more would drown \
                         every counter of a run), not {cost}"
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn check_geometry(g: &CacheGeometry) -> Result<(), String> {
    if g.sets == 0 || !g.sets.is_power_of_two() || g.ways == 0 || g.ways > 64 {
        return Err(format!("sets must be a power of two and ways 1 to 64 (got {} x {})", g.sets, g.ways));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_parses_and_round_trips() {
        for name in Platform::preset_names() {
            let p = Platform::preset(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(p.name, name);
            let again = Platform::from_toml(&p.to_toml(), "round-trip").unwrap();
            assert_eq!(again, p, "{name} does not survive a TOML round trip");
        }
    }

    #[test]
    fn sizes_take_units() {
        assert_eq!(ByteSize::parse("64KiB"), Ok(ByteSize(65536)));
        assert_eq!(ByteSize::parse("4 GiB"), Ok(ByteSize(4 << 30)));
        assert_eq!(ByteSize::parse("0x1000"), Ok(ByteSize(4096)));
        assert!(ByteSize::parse("16EiB").is_err());
        assert!(ByteSize::parse("99999999999TiB").unwrap_err().contains("overflows"));
        assert_eq!(ByteSize(3 << 20).to_string(), "3MiB");
    }

    #[test]
    fn unknown_preset_lists_the_known_ones() {
        let e = Platform::preset("arm64-coherent").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("arm64-noncoherent") && msg.contains("x86-pcie"), "{msg}");
    }

    const BASE: &str = r#"
name = "t"
dma_profile = "arm64"
[cpu]
[[region]]
name = "dram"
kind = "dram"
base = 0x8000_0000
size = "1GiB"
"#;

    fn err(extra: &str) -> String {
        Platform::from_toml(&format!("{BASE}{extra}"), "t.toml").unwrap_err().to_string()
    }

    #[test]
    fn overlapping_regions_are_refused() {
        let e = err("[[region]]\nname = \"cma\"\nkind = \"cma\"\nbase = 0xb000_0000\nsize = \"512MiB\"\n");
        assert!(e.starts_with("t.toml: `region[1] (cma)`: overlaps region[0] (dram)"), "{e}");
    }

    #[test]
    fn a_mask_over_64_bits_is_refused() {
        let e = err("[[device]]\nname = \"gpu\"\ndma_mask = 65\n");
        assert!(e.contains("`device[0] (gpu).dma_mask`") && e.contains("between 1 and 64"), "{e}");
    }

    #[test]
    fn a_device_that_reaches_nothing_is_refused() {
        let e = err("[[device]]\nname = \"gpu\"\ndma_mask = 32\nreaches = []\n");
        assert!(e.contains("reaches no memory region"), "{e}");
        let e = err("[[device]]\nname = \"gpu\"\ndma_mask = 32\nreaches = [\"sram\"]\n");
        assert!(e.contains("no region is named `sram`"), "{e}");
    }

    /// Regression: a cost of 2^63 - 1 cycles was accepted and wrapped the counters
    /// (`total_cycles` 18446744073709551584).
    #[test]
    fn a_cost_above_a_billion_cycles_is_refused_with_its_field_named() {
        let e = err("[costs]\ncpu_miss_line = 9223372036854775807\n");
        assert!(e.starts_with("t.toml: `costs.cpu_miss_line`: must be at most 1000000000 cycles"), "{e}");
        assert!(e.contains("not 9223372036854775807"), "{e}");
        let e = err("[costs]\nmaintenance_op = 1_000_000_001\n");
        assert!(e.contains("`costs.maintenance_op`"), "{e}");
        let at_bound = format!("{BASE}[costs]\nclean_line = 1_000_000_000\ndevice_op = 1_000_000_000\n");
        assert!(Platform::from_toml(&at_bound, "t.toml").is_ok(), "the bound itself is a cost");
    }

    #[test]
    fn syntax_errors_name_the_file_and_line() {
        let e = Platform::from_toml("name = \"x\"\nline_size = \"big\"\n", "bad.toml").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("bad.toml:") && msg.contains("line 2"), "{msg}");
        let e = err("[[device]]\nname = \"gpu\"\ndma_mask = 32\nsnoops = true\n").to_string();
        assert!(e.contains("unknown field `snoops`"), "{e}");
    }
}
