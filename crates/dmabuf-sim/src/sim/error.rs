//! Why the hardware refused an operation.

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
        /// The mapping.
        map: CpuMapId,
        /// Offset of the access.
        offset: u64,
        /// Length of the access.
        len: u64,
        /// Size of the mapping.
        size: u64,
    },
    /// Physical memory outside every region.
    #[error("{range} is not inside a memory region of the platform")]
    NotInRegion {
        /// The range.
        range: PhysRange,
    },
    /// A page-granular operation got a range that is not page aligned.
    #[error("{range} is not page aligned")]
    Unaligned {
        /// The range.
        range: PhysRange,
    },
    /// A device was given a bus address above what it can drive.
    #[error("device `{dev}` drives {bits} address bits; bus address {addr} is above its DMA mask")]
    AboveDmaMask {
        /// The device.
        dev: String,
        /// Its mask, in bits.
        bits: u32,
        /// The address.
        addr: BusAddr,
    },
    /// A device addressed memory it has no path to.
    #[error("device `{dev}` has no path to {addr} in region `{region}`")]
    Unreachable {
        /// The device.
        dev: String,
        /// The address.
        addr: PhysAddr,
        /// The region holding it.
        region: String,
    },
    /// A device behind an IOMMU used an IOVA that is not mapped.
    #[error("IOMMU fault: device `{dev}` has no mapping at {addr}")]
    IommuFault {
        /// The device.
        dev: String,
        /// The bus address.
        addr: BusAddr,
    },
    /// An IOMMU operation on a device without an IOMMU.
    #[error("device `{dev}` is not behind an IOMMU")]
    NoIommu {
        /// The device.
        dev: String,
    },
    /// The device's IOVA space (below its DMA mask) is full.
    #[error("IOVA space of device `{dev}` has no room for {len:#x} bytes")]
    IovaExhausted {
        /// The device.
        dev: String,
        /// The request.
        len: u64,
    },
    /// An IOVA range that was not mapped was unmapped.
    #[error("device `{dev}`: {addr} (+{len:#x}) is not an IOMMU mapping")]
    BadIommuUnmap {
        /// The device.
        dev: String,
        /// The start.
        addr: BusAddr,
        /// The length.
        len: u64,
    },
    /// Bouncing was needed and the platform has no bounce pool.
    #[error("the platform has no bounce pool (swiotlb)")]
    NoBouncePool,
    /// The bounce pool is full, or is itself out of the device's reach.
    #[error("the bounce pool has no room for {len:#x} bytes below {limit:#x}")]
    BounceExhausted {
        /// The request.
        len: u64,
        /// The highest usable address.
        limit: u64,
    },
    /// A bounce slot that was not allocated was freed.
    #[error("{addr} (+{len:#x}) is not an allocated bounce slot")]
    BadBounceFree {
        /// The start.
        addr: PhysAddr,
        /// The length.
        len: u64,
    },
    /// A device id that the platform does not have.
    #[error("no device {0:?} on this platform")]
    NoSuchDevice(DeviceId),
    /// A length or address overflowed 64 bits.
    #[error("address arithmetic overflows 64 bits")]
    Overflow,
}
