//! Device trees into platforms: a board's flattened device tree (DTB) read into the
//! simulator's [`Platform`], each fact with the node it came from.
//!
//! Users run boards, not presets: every fact the checker needs about a Rock Pi 4, a
//! Raspberry Pi 4 or an i.MX 8M Plus EVK is in its device tree, and this crate reads it
//! the way the kernel does:
//!
//! - memory nodes, and reserved memory: the default CMA pool with its size and
//!   `alloc-ranges` (placed top-down as memblock does), `no-map` and other fixed
//!   carve-outs (left out of every heap), restricted DMA pools (reported: the format has no
//!   per-device pools); the default swiotlb pool below the DMA zone's limit;
//! - each DMA master: a short stable name (the node name; the compatible's model or the
//!   unit address where names repeat), its role from its compatible or node name, its node
//!   path; its DMA windows from `dma-ranges` composed up to the root
//!   (`of_dma_get_range()`); its coherency from `dma-coherent` and its inheritance
//!   (`of_dma_is_coherent()`); its IOMMU from `iommus` or `iommu-map`, counted only when
//!   that IOMMU is enabled (a disabled SMMU translates nothing: `of_iommu_xlate()` refuses
//!   an unavailable IOMMU);
//! - the CPU's cache geometry from the cache nodes, a system-level cache (an `llcc`, a
//!   level-3 cache outside the CPUs), and cache-coherent interconnects (CCI, CCN, CMN).
//!
//! A disabled node is no device, as in the kernel; [`Import::disabled`] lists the masters
//! the tree disables, and [`import_enabling`] enables some first, as an overlay setting
//! `status = "okay"` would (a camera interface left disabled until a sensor is fitted).
//!
//! What the tree cannot say is assumed and said so: a DMA mask is the driver's (32 bits,
//! the kernel's default for platform devices, 64 for PCIe endpoints whose reach the host
//! bridge's window bounds); memory the bootloader fills in is assumed 2 GiB.
//!
//! The blob is parsed with `flat_device_tree`, the maintained fork of the `fdt` crate: it
//! returns errors instead of panicking on malformed blobs (`fdt` 0.1 panics on a missing
//! `/chosen` or a bad property tag; `fdt` 0.2 is an alpha; `fdt-rs` needs `unsafe` to open
//! a blob; `dtb` unwraps on malformed input). The header is checked before the parser
//! sees it and the tree's size and depth are bounded, so a hostile blob is an error.

#![deny(missing_docs)]

mod board;
mod dma;
mod emit;
mod masters;
mod tree;

use std::path::Path;

pub use board::{ASSUMED_MEMORY, Disabled, Import};
use dmabuf_sim::{Platform, PlatformError};

/// The largest blob accepted (real ones are under 300 KiB).
pub const MAX_DTB: u64 = 8 << 20;

/// Imports a DTB's bytes; `file` names it in errors and notes.
pub fn import(bytes: &[u8], file: &str) -> Result<Import, PlatformError> {
    import_enabling(bytes, file, &[])
}

/// Imports a DTB's bytes with some disabled nodes enabled first, as an overlay setting
/// their `status = "okay"` would (a camera's `unicam` or `isi` node, which boards leave
/// disabled until a sensor is fitted). Each of `enable` is a node path, an alias
/// (`/aliases`) or a label (`/__symbols__`, what an overlay's `&label` names); one that
/// names no node, or a node under a disabled bus, is an error naming it.
pub fn import_enabling(bytes: &[u8], file: &str, enable: &[String]) -> Result<Import, PlatformError> {
    let bad = |node: &str, rule: String| PlatformError::Import { file: file.to_string(), node: node.to_string(), rule };
    let mut t = tree::Tree::parse(bytes).map_err(|e| bad("header", e))?;
    let mut enabled = Vec::new();
    for spec in enable {
        let n = t.resolve(spec).ok_or_else(|| {
            bad(spec, "no such node: name a node path, an alias (/aliases) or a label (/__symbols__)".into())
        })?;
        t.enable(n);
        if !t.available(n) {
            let off = std::iter::successors(t.nodes[n].parent, |&p| t.nodes[p].parent)
                .find(|&p| !t.nodes[p].enabled())
                .map_or_else(String::new, |p| t.nodes[p].path.clone());
            return Err(bad(&t.nodes[n].path, format!("it sits under {off}, which is disabled: enable that too")));
        }
        enabled.push(t.nodes[n].path.clone());
    }
    let stem = Path::new(file).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "board".into());
    let mut imp = board::import_tree(&t, file, &stem).map_err(|e| bad("/", e))?;
    imp.platform.validate(file)?;
    for path in &enabled {
        imp.notes.push(format!("{path}: enabled on request (status = \"okay\", as an overlay would)"));
    }
    imp.enabled = enabled;
    Ok(imp)
}

/// Reads and imports a DTB file.
pub fn import_path(path: &Path) -> Result<Import, PlatformError> {
    import_path_enabling(path, &[])
}

/// Reads and imports a DTB file with nodes enabled first ([`import_enabling`]).
pub fn import_path_enabling(path: &Path, enable: &[String]) -> Result<Import, PlatformError> {
    let file = path.display().to_string();
    let bytes = dmabuf_sim::read_bounded(path, MAX_DTB).map_err(|e| PlatformError::Io {
        file: file.clone(),
        reason: if e.kind() == std::io::ErrorKind::FileTooLarge {
            format!("larger than {} MiB; not a device tree blob", MAX_DTB >> 20)
        } else {
            e.to_string()
        },
    })?;
    import_enabling(&bytes, &file, enable)
}

/// Reads a DTB file into a platform (what `--platform BOARD.dtb` loads).
pub fn import_file(path: &Path) -> Result<Platform, PlatformError> {
    import_path(path).map(|i| i.platform)
}

impl Import {
    /// The platform as TOML, each fact preceded by a comment naming the node it came
    /// from; [`Platform::from_toml`] reads it back to the same platform.
    pub fn to_commented_toml(&self) -> String {
        emit::commented(self)
    }
}
