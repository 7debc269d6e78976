//! Attach-time validation: can this device use this buffer, and how?
//!
//! Upstream `dma_buf_attach()` checks nothing: a display controller that cannot reach the
//! pages, an ISP that needs contiguous memory given scattered pages, a NIC handed VRAM it
//! has no path to, all attach fine and fail later as corrupted frames or IOMMU faults.
//! Here the decision is taken once, at attach, from what the platform says about the
//! device and what the exporter says about the buffer, and a refusal names the rule, the
//! buffer, the device and what would work instead.
//!
//! The rules live here, in one place, not in each exporter (exporters describe their
//! memory with a [`Backing`]; the framework decides). Under [`AttachPolicy::Linux`] the
//! same plan is computed but a refusal is only recorded: the attach succeeds, as it does
//! upstream, and the failure shows later on the simulated hardware.

use dmabuf_sim::{DeviceDesc, MemAttr, PAGE_SIZE, PhysRange, Platform, RegionKind};

/// Whether attach enforces the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AttachPolicy {
    /// Refuse, at attach, any combination that cannot work.
    #[default]
    Strict,
    /// Accept everything, as upstream does today, and let it break later.
    Linux,
}

/// What an exporter says about the memory behind a buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backing {
    /// The physical pages, in buffer order (page aligned).
    pub pages: Vec<PhysRange>,
    /// The attribute of the exporter's CPU mappings.
    pub attr: MemAttr,
}

impl Backing {
    /// Whether the pages are one physically contiguous range.
    pub fn is_contiguous(&self) -> bool {
        self.pages.windows(2).all(|w| w[0].end() == w[1].start)
    }

    /// The buffer's size in bytes: its pages' lengths summed.
    pub fn size(&self) -> u64 {
        self.pages.iter().map(|r| r.len).sum()
    }
}

/// How a device that may use a buffer reaches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachPlan {
    /// It addresses the pages directly.
    Direct,
    /// Through its IOMMU.
    Iommu,
    /// Some pages are above its DMA mask: they are bounced through swiotlb (every map
    /// and sync copies them).
    Bounce,
    /// The pages are another device's local memory, reached over a peer-to-peer path.
    PeerToPeer,
}

/// Why a device cannot use a buffer. One variant per rule; each names the buffer, the
/// device and what would work instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// The device needs physically contiguous memory and has no IOMMU; the pages are
    /// scattered.
    #[error(
        "cannot attach `{buffer}` to `{device}`: the device needs physically contiguous memory (no IOMMU, no scatter-gather) and the buffer's {segments} pages are scattered; allocate it from the `cma` heap"
    )]
    NotContiguous {
        /// The buffer the device would use, by its name (as set, or `buf<N>`).
        buffer: String,
        /// The device that would use it, by its name in the platform.
        device: String,
        /// How many discontiguous pieces the buffer has.
        segments: usize,
    },
    /// The device snoops the CPU cache and the buffer's CPU mappings are not cacheable
    /// (an uncached or write-combined heap): the device's reads would meet lines the CPU
    /// speculatively filled through the kernel's cacheable linear map, which the CPU's
    /// writes through its own mapping never update.
    #[error(
        "cannot attach `{buffer}` to `{device}`: the device snoops the CPU cache and the buffer is mapped {attr} by the CPU, so its reads would meet stale lines of the kernel's cacheable linear map; give a coherent device a cached buffer (the `system` or `cma` heap)"
    )]
    MismatchedCoherency {
        /// The buffer the device would use, by its name (as set, or `buf<N>`).
        buffer: String,
        /// The device that would use it, by its name in the platform.
        device: String,
        /// How the exporter maps the buffer for the CPU (`uncached`, `write-combine`).
        attr: &'static str,
    },
    /// A page lies in a system-memory region the device has no path to.
    #[error(
        "cannot attach `{buffer}` to `{device}`: the buffer lies in region `{region}`, which the device cannot reach; allocate it from memory the device reaches ({reachable})"
    )]
    RegionUnreachable {
        /// The buffer the device would use, by its name (as set, or `buf<N>`).
        buffer: String,
        /// The device that would use it, by its name in the platform.
        device: String,
        /// The name of the platform region holding the page.
        region: String,
        /// The regions the device does reach, by name, comma-separated.
        reachable: String,
    },
    /// The buffer is another device's local memory and there is no peer-to-peer path.
    #[error(
        "cannot attach `{buffer}` to `{device}`: the buffer is in `{owner}`'s local memory `{region}` and `{device}` has no peer-to-peer path to it; migrate it to system memory first (a dynamic exporter can do this on attach) or use a device with a path"
    )]
    NoPeerToPeer {
        /// The buffer the device would use, by its name (as set, or `buf<N>`).
        buffer: String,
        /// The device that would use it, by its name in the platform.
        device: String,
        /// The name of the device-local region holding the buffer.
        region: String,
        /// The device whose local memory that region is, by name.
        owner: String,
    },
    /// The importer does not accept peer-to-peer buffers (it did not set
    /// `allow_peer2peer`).
    #[error(
        "cannot attach `{buffer}` to `{device}`: the buffer is device memory (`{region}`) and the importer did not allow peer-to-peer access; attach as a peer-to-peer capable importer, or migrate the buffer to system memory"
    )]
    PeerToPeerNotAllowed {
        /// The buffer the device would use, by its name (as set, or `buf<N>`).
        buffer: String,
        /// The device that would use it, by its name in the platform.
        device: String,
        /// The name of the device-local region holding the buffer.
        region: String,
    },
    /// Pages lie where the device cannot address them directly (above its DMA mask or
    /// outside its DMA windows), it has no IOMMU, and it keeps its mapping without syncing
    /// (a scanout, a USB gadget, an IIO buffer): a bounce buffer would never be copied
    /// between its accesses.
    #[error(
        "cannot attach `{buffer}` to `{device}`: page {page} lies outside what the device addresses ({addresses}), the device has no IOMMU and keeps its mapping without syncing (nobody would copy a bounce buffer between its accesses); allocate memory it addresses (for example from the `cma` heap in low memory)"
    )]
    BounceRefused {
        /// The buffer the device would use, by its name (as set, or `buf<N>`).
        buffer: String,
        /// The device that would use it, by its name in the platform.
        device: String,
        /// The physical address of the first page the device cannot address.
        page: String,
        /// The physical address of the buffer's highest byte.
        top: u64,
        /// What the device addresses, in words (its mask and DMA windows).
        addresses: String,
        /// The width of the device's DMA mask, in bits.
        bits: u32,
        /// One past the highest physical address the device addresses directly (0 if none).
        limit: u64,
    },
    /// The device cannot address the pages directly and has no IOMMU, so it would work
    /// through a swiotlb bounce buffer; but the buffer is not cached for the CPU, and
    /// swiotlb copies through the kernel's cacheable linear map (`swiotlb_bounce`), where
    /// lines the CPU filled speculatively are stale.
    #[error(
        "cannot attach `{buffer}` to `{device}`: page {page} lies outside what the device addresses ({addresses}), so the device would read a swiotlb bounce copy; the buffer is mapped {attr} by the CPU and the copy goes through the kernel's cacheable linear map, where stale lines sit; allocate memory the device addresses, or from a cached heap"
    )]
    BounceUncached {
        /// The buffer the device would use, by its name (as set, or `buf<N>`).
        buffer: String,
        /// The device that would use it, by its name in the platform.
        device: String,
        /// The physical address of the first page the device cannot address.
        page: String,
        /// What the device addresses, in words (its mask and DMA windows).
        addresses: String,
        /// How the exporter maps the buffer for the CPU (`uncached`, `write-combine`).
        attr: &'static str,
    },
    /// Pages lie where the device cannot address them directly (above its DMA mask or
    /// outside its DMA windows), it has no IOMMU, and the platform has no bounce pool the
    /// device can address.
    #[error(
        "cannot attach `{buffer}` to `{device}`: page {page} lies outside what the device addresses ({addresses}); the device has no IOMMU and no bounce pool it addresses; allocate memory it addresses"
    )]
    AboveDmaMask {
        /// The buffer the device would use, by its name (as set, or `buf<N>`).
        buffer: String,
        /// The device that would use it, by its name in the platform.
        device: String,
        /// The physical address of the first page the device cannot address.
        page: String,
        /// The physical address of the buffer's highest byte.
        top: u64,
        /// What the device addresses, in words (its mask and DMA windows).
        addresses: String,
        /// The width of the device's DMA mask, in bits.
        bits: u32,
        /// One past the highest physical address the device addresses directly (0 if none).
        limit: u64,
    },
    /// The exporter refused the device for a reason of its own.
    #[error("cannot attach `{buffer}` to `{device}`: exporter `{exporter}` refuses: {reason}")]
    RefusedByExporter {
        /// The buffer the device would use, by its name (as set, or `buf<N>`).
        buffer: String,
        /// The device that would use it, by its name in the platform.
        device: String,
        /// The exporter's name (`exp_name`).
        exporter: String,
        /// Why the exporter refused, in its own words.
        reason: String,
    },
    /// A page of the buffer is outside every memory region.
    #[error("cannot attach `{buffer}` to `{device}`: page {page} is not in any memory region of the platform")]
    NotInMemory {
        /// The buffer the device would use, by its name (as set, or `buf<N>`).
        buffer: String,
        /// The device that would use it, by its name in the platform.
        device: String,
        /// The physical address of the page outside memory.
        page: String,
    },
}

impl AttachError {
    /// The rule's short name, as scenarios write it (`expect refused contiguity`).
    pub fn rule(&self) -> &'static str {
        match self {
            AttachError::NotContiguous { .. } => "contiguity",
            AttachError::RegionUnreachable { .. } => "reachability",
            AttachError::NoPeerToPeer { .. } => "p2p",
            AttachError::PeerToPeerNotAllowed { .. } => "p2p-not-allowed",
            AttachError::BounceRefused { .. } | AttachError::BounceUncached { .. } => "bounce",
            AttachError::AboveDmaMask { .. } => "dma-mask",
            AttachError::NotInMemory { .. } => "memory",
            AttachError::RefusedByExporter { .. } => "exporter",
            AttachError::MismatchedCoherency { .. } => "coherency",
        }
    }
}

/// What the importer declares at attach (the kernel's `dma_buf_attach_ops` and
/// `allow_peer2peer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ImporterCaps {
    /// The importer accepts buffers in another device's local memory.
    pub allow_peer2peer: bool,
    /// The importer is dynamic: it handles `move_notify` and does not pin the buffer.
    pub dynamic: bool,
}

/// Decides whether `dev` can use a buffer with this backing, and how.
pub fn check_attach(
    platform: &Platform,
    buffer: &str,
    backing: &Backing,
    dev: usize,
    caps: ImporterCaps,
) -> Result<AttachPlan, AttachError> {
    let d: &DeviceDesc = &platform.devices[dev];
    let device = d.name.clone();
    let mut plan = if d.iommu { AttachPlan::Iommu } else { AttachPlan::Direct };
    for r in &backing.pages {
        let Some(ri) = platform.region_of(r.start) else {
            return Err(AttachError::NotInMemory { buffer: buffer.into(), device, page: r.start.to_string() });
        };
        let region = &platform.regions[ri];
        if region.kind == RegionKind::DeviceLocal && region.owner.as_deref() != Some(d.name.as_str()) {
            if !platform.device_reaches(dev, ri) {
                return Err(AttachError::NoPeerToPeer {
                    buffer: buffer.into(),
                    device,
                    region: region.name.clone(),
                    owner: region.owner.clone().unwrap_or_default(),
                });
            }
            if !caps.allow_peer2peer {
                return Err(AttachError::PeerToPeerNotAllowed {
                    buffer: buffer.into(),
                    device,
                    region: region.name.clone(),
                });
            }
            plan = AttachPlan::PeerToPeer;
            continue;
        }
        if !platform.device_reaches(dev, ri) {
            let reachable: Vec<&str> = (0..platform.regions.len())
                .filter(|&i| platform.device_reaches(dev, i))
                .map(|i| platform.regions[i].name.as_str())
                .collect();
            return Err(AttachError::RegionUnreachable {
                buffer: buffer.into(),
                device,
                region: region.name.clone(),
                reachable: reachable.join(", "),
            });
        }
    }
    let linear = backing
        .pages
        .iter()
        .any(|r| platform.region_of(r.start).is_some_and(|ri| platform.regions[ri].linear_mapped()));
    if d.coherent && backing.attr != MemAttr::Cached && linear && platform.cpu.cacheable_linear_alias {
        return Err(AttachError::MismatchedCoherency { buffer: buffer.into(), device, attr: backing.attr.name() });
    }
    if d.iommu || plan == AttachPlan::PeerToPeer {
        return Ok(plan);
    }
    if d.needs_contiguous && !backing.is_contiguous() {
        return Err(AttachError::NotContiguous {
            buffer: buffer.into(),
            device,
            segments: count_segments(&backing.pages),
        });
    }
    // Without an IOMMU the device addresses a page directly only through one of its DMA
    // windows and below its mask (the kernel's `dma_capable()`); any other page is bounced
    // through swiotlb, which needs a pool slot the device can address and a device that
    // syncs.
    let Some(first) = backing.pages.iter().find(|r| !d.dma_capable(**r)) else { return Ok(plan) };
    let top = backing.pages.iter().map(|r| r.end().raw().saturating_sub(1)).max().unwrap_or(0);
    let reach = d.direct_reach();
    let limit = reach.last().map_or(0, |r| r.end().raw());
    let page = first.start.to_string();
    let addresses = d.reach_words();
    if d.keeps_mapping {
        return Err(AttachError::BounceRefused {
            buffer: buffer.into(),
            device,
            page,
            top,
            addresses,
            bits: d.dma_mask,
            limit,
        });
    }
    let pool = platform.regions.iter().position(|r| r.kind == RegionKind::Bounce);
    let usable = pool.is_some_and(|p| {
        let pool = platform.regions[p].range();
        platform.device_reaches(dev, p) && reach.iter().any(|w| w.intersect(&pool).is_some_and(|x| x.len >= PAGE_SIZE))
    });
    if !usable {
        return Err(AttachError::AboveDmaMask {
            buffer: buffer.into(),
            device,
            page,
            top,
            addresses,
            bits: d.dma_mask,
            limit,
        });
    }
    if backing.attr != MemAttr::Cached && platform.cpu.cacheable_linear_alias {
        let attr = backing.attr.name();
        return Err(AttachError::BounceUncached { buffer: buffer.into(), device, page, addresses, attr });
    }
    plan = AttachPlan::Bounce;
    Ok(plan)
}

fn count_segments(pages: &[PhysRange]) -> usize {
    1 + pages.windows(2).filter(|w| w[0].end() != w[1].start).count()
}

#[cfg(test)]
mod tests {
    use dmabuf_sim::{Address, ByteSize, PhysAddr};

    use super::*;

    fn pages(list: &[(u64, u64)]) -> Backing {
        Backing {
            pages: list.iter().map(|&(a, n)| PhysRange::new(PhysAddr(a), n).unwrap()).collect(),
            attr: MemAttr::Cached,
        }
    }

    fn check(preset: &str, dev: &str, b: &Backing, caps: ImporterCaps) -> Result<AttachPlan, AttachError> {
        let p = Platform::preset(preset).unwrap();
        let d = p.device_index(dev).unwrap();
        check_attach(&p, "frame", b, d, caps)
    }

    const NONE: ImporterCaps = ImporterCaps { allow_peer2peer: false, dynamic: false };
    const P2P: ImporterCaps = ImporterCaps { allow_peer2peer: true, dynamic: true };

    #[test]
    fn scattered_pages_are_refused_for_a_contiguous_only_device() {
        let scattered = pages(&[(0x4000_0000, 4096), (0x4010_0000, 4096)]);
        let e = check("arm64-noncoherent", "isp", &scattered, NONE).unwrap_err();
        assert_eq!(e.rule(), "contiguity");
        let msg = e.to_string();
        assert!(msg.contains("`frame`") && msg.contains("`isp`") && msg.contains("`cma` heap"), "{msg}");
        let contiguous = pages(&[(0x1_4000_0000, 4096), (0x1_4000_1000, 4096)]);
        assert_eq!(check("arm64-noncoherent", "isp", &contiguous, NONE), Ok(AttachPlan::Direct));
        assert_eq!(check("arm64-noncoherent", "vdec", &scattered, NONE), Ok(AttachPlan::Iommu));
    }

    #[test]
    fn above_the_mask_bounces_unless_the_device_scans_out() {
        let high = pages(&[(0x1_0000_0000, 8192)]);
        assert_eq!(check("arm64-dma32", "legacy-dma", &high, NONE), Ok(AttachPlan::Bounce));
        let e = check("arm64-dma32", "display", &high, NONE).unwrap_err();
        assert_eq!(e.rule(), "bounce");
        assert!(e.to_string().contains("30-bit DMA mask"), "{e}");
        assert!(e.to_string().contains("page 0x100000000"), "{e}");
        assert_eq!(check("arm64-dma32", "gpu", &high, NONE), Ok(AttachPlan::Iommu));
        let low = pages(&[(0x2c00_0000, 8192)]);
        assert_eq!(check("arm64-dma32", "display", &low, NONE), Ok(AttachPlan::Direct));
    }

    #[test]
    fn without_a_bounce_pool_above_the_mask_is_refused() {
        let mut p = Platform::preset("arm64-dma32").unwrap();
        p.regions.retain(|r| r.kind != RegionKind::Bounce);
        let d = p.device_index("legacy-dma").unwrap();
        let e = check_attach(&p, "frame", &pages(&[(0x1_0000_0000, 4096)]), d, NONE).unwrap_err();
        assert_eq!(e.rule(), "dma-mask");
    }

    #[test]
    fn device_memory_needs_a_peer_to_peer_path_and_an_importer_that_allows_it() {
        let vram = pages(&[(0x40_0000_0000, 1 << 20)]);
        assert_eq!(check("x86-pcie", "nic", &vram, P2P), Ok(AttachPlan::PeerToPeer));
        let e = check("x86-pcie", "nic", &vram, NONE).unwrap_err();
        assert_eq!(e.rule(), "p2p-not-allowed");
        let e = check("x86-pcie", "capture", &vram, P2P).unwrap_err();
        assert_eq!(e.rule(), "p2p");
        assert!(e.to_string().contains("`dgpu`'s local memory `vram`"), "{e}");
        assert_eq!(check("x86-pcie", "dgpu", &vram, NONE), Ok(AttachPlan::Iommu), "its own VRAM");
    }

    #[test]
    fn unreachable_regions_are_named_with_the_alternatives() {
        let mut p = Platform::preset("arm64-noncoherent").unwrap();
        let d = p.device_index("usb").unwrap();
        p.devices[d].reaches = Some(vec!["dram".into()]);
        let e = check_attach(&p, "frame", &pages(&[(0x1_4000_0000, 4096)]), d, NONE).unwrap_err();
        assert_eq!(e.rule(), "reachability");
        assert!(e.to_string().contains("region `cma`") && e.to_string().contains("(dram)"), "{e}");
    }

    /// A window's lower bound and offset are rules too: the i.MX 8M Plus USB3 reaches DRAM
    /// from 1 GiB to 4 GiB only; bcm2711's legacy masters see the low 1 GiB at bus
    /// 0xc000_0000, so their 32-bit mask does not reach above it.
    #[test]
    fn windows_bound_what_a_device_without_an_iommu_addresses() {
        let mut p = Platform::preset("arm64-dma32").unwrap();
        let d = p.device_index("display").unwrap();
        p.devices[d].dma_mask = 32;
        p.devices[d].dma_windows = vec![dmabuf_sim::DmaWindow {
            cpu: Address(0x4000_0000),
            bus: Address(0x4000_0000),
            size: ByteSize(3 << 30),
        }];
        let low = pages(&[(0x2c00_0000, 8192)]);
        let e = check_attach(&p, "frame", &low, d, NONE).unwrap_err();
        assert_eq!(e.rule(), "bounce", "below the window, and a scanout cannot bounce");
        assert!(e.to_string().contains("window [0x40000000, 0x100000000)"), "{e}");
        assert_eq!(check_attach(&p, "frame", &pages(&[(0x4000_0000, 8192)]), d, NONE), Ok(AttachPlan::Direct));
        let l = p.device_index("legacy-dma").unwrap();
        p.devices[l].dma_mask = 32;
        p.devices[l].dma_windows =
            vec![dmabuf_sim::DmaWindow { cpu: Address(0), bus: Address(0xc000_0000), size: ByteSize(1 << 30) }];
        assert_eq!(check_attach(&p, "frame", &low, l, NONE), Ok(AttachPlan::Direct), "0x2c00_0000 is in the window");
        assert_eq!(check_attach(&p, "frame", &pages(&[(0x4000_0000, 4096)]), l, NONE), Ok(AttachPlan::Bounce));
    }
}
