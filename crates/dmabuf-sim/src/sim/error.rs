//! The simulator's one error type: every rule an operation can break, one variant each.

use crate::addr::{BusAddr, PhysAddr, PhysRange};
use crate::vocab::{CpuMapId, DeviceId};

/// Why the hardware refused an operation. Each variant is one rule.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum SimError {
    /// The CPU mapping does not exist (never made, or unmapped).
    #[error("no CPU mapping {0:?}")]
    NoSuchMapping(CpuMapId),
    /// A CPU access runs past the end of its mapping.
    #[error("access at offset {offset:#x} of {len:#x} bytes is outside CPU mapping {map:?} of {size:#x} bytes")]
    OutsideMapping {
        /// The mapping accessed.
        map: CpuMapId,
        /// Where the access starts, in bytes from the start of the mapping.
        offset: u64,
        /// Bytes the access asked for.
        len: u64,
        /// Bytes the mapping holds.
        size: u64,
    },
    /// Physical memory outside every region.
    #[error("{range} is not inside a memory region of the platform")]
    NotInRegion {
        /// The bytes asked for; some of them (at least) lie in no region.
        range: PhysRange,
    },
    /// A page-granular operation got a range that is not page aligned.
    #[error("{range} is not page aligned")]
    Unaligned {
        /// The range as given; its start or its length is not a multiple of the page size.
        range: PhysRange,
    },
    /// A device was given a bus address above what it can drive.
    #[error("device `{dev}` drives {bits} address bits; bus address {addr} is above its DMA mask")]
    AboveDmaMask {
        /// The device's name in the platform description.
        dev: String,
        /// The address bits the device drives (its DMA mask).
        bits: u32,
        /// The first address of the access above the mask.
        addr: BusAddr,
    },
    /// A device without an IOMMU drove a bus address outside its DMA windows.
    #[error("device `{dev}` has no DMA window holding bus address {addr}")]
    OutsideDmaWindow {
        /// The device's name in the platform description.
        dev: String,
        /// The first bus address outside its windows.
        addr: BusAddr,
    },
    /// A device addressed memory it has no path to.
    #[error("device `{dev}` has no path to {addr} in region `{region}`")]
    Unreachable {
        /// The device's name in the platform description.
        dev: String,
        /// The first physical address of the access the device cannot reach.
        addr: PhysAddr,
        /// The name of the region holding that address.
        region: String,
    },
    /// A device behind an IOMMU used an IOVA that is not mapped.
    #[error("IOMMU fault: device `{dev}` has no mapping at {addr}")]
    IommuFault {
        /// The device's name in the platform description.
        dev: String,
        /// The first IOVA of the access that no IOMMU page maps.
        addr: BusAddr,
    },
    /// An IOMMU operation on a device without an IOMMU.
    #[error("device `{dev}` is not behind an IOMMU")]
    NoIommu {
        /// The device's name in the platform description.
        dev: String,
    },
    /// The device's IOVA space (below its DMA mask) is full.
    #[error("IOVA space of device `{dev}` has no room for {len:#x} bytes")]
    IovaExhausted {
        /// The device's name in the platform description.
        dev: String,
        /// Bytes of IOVA space asked for (the ranges rounded out to whole pages).
        len: u64,
    },
    /// An IOVA range that was not mapped was unmapped.
    #[error("device `{dev}`: {addr} (+{len:#x}) is not an IOMMU mapping")]
    BadIommuUnmap {
        /// The device's name in the platform description.
        dev: String,
        /// The first IOVA of the range to unmap.
        addr: BusAddr,
        /// Bytes of the range to unmap.
        len: u64,
    },
    /// Bouncing was needed and the platform has no bounce pool.
    #[error("the platform has no bounce pool (swiotlb)")]
    NoBouncePool,
    /// The bounce pool is full, or is itself out of the device's reach.
    #[error("the bounce pool has no room for {len:#x} bytes below {limit:#x}")]
    BounceExhausted {
        /// Bytes asked for.
        len: u64,
        /// The highest address the device can use, so the highest a slot may end at.
        limit: u64,
    },
    /// A bounce slot that was not allocated was freed.
    #[error("{addr} (+{len:#x}) is not an allocated bounce slot")]
    BadBounceFree {
        /// The address given as the slot's start.
        addr: PhysAddr,
        /// The length given; it must round up to the slot's size.
        len: u64,
    },
    /// A device id that the platform does not have.
    #[error("no device {0:?} on this platform")]
    NoSuchDevice(DeviceId),
    /// A length or address overflowed 64 bits.
    #[error("address arithmetic overflows 64 bits")]
    Overflow,
}
