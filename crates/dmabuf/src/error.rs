//! Why a framework call failed: one variant per rule, each naming the objects involved.

use dmabuf_sim::{DmaDirection, SimError};

use crate::attach::AttachError;
use crate::fence::FenceError;
use crate::heap::HeapKind;

/// Why a framework call failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Attach refused a device (under the `Strict` policy).
    #[error(transparent)]
    Attach(#[from] AttachError),
    /// The hardware refused an operation.
    #[error(transparent)]
    Hardware(#[from] SimError),
    /// No heap has that name.
    #[error("no heap `{name}`; heaps: {}", HeapKind::ALL.map(HeapKind::name).join(", "))]
    NoSuchHeap {
        /// The heap name that matched none (`HeapKind::from_name`).
        name: String,
    },
    /// The platform has no device with that name.
    #[error("no device `{name}` on platform {platform}; devices: {known}")]
    NoSuchDevice {
        /// The device name that matched none of the platform's.
        name: String,
        /// The name of the platform searched.
        platform: String,
        /// The platform's device names, comma-separated.
        known: String,
    },
    /// The heap could not provide the memory.
    #[error("heap `{heap}` cannot allocate {size} bytes (ENOMEM)")]
    OutOfMemory {
        /// The name of the heap that ran out.
        heap: String,
        /// The bytes the allocation asked for.
        size: u64,
    },
    /// A zero-sized allocation (the kernel refuses it with EINVAL).
    #[error("a dma-buf cannot be empty (EINVAL)")]
    ZeroSize,
    /// A byte range outside the buffer.
    #[error("range {start:#x}..{end:#x} is outside buffer `{buffer}` of {size:#x} bytes")]
    OutOfBounds {
        /// The buffer accessed, by its name (as set, or `buf<N>`).
        buffer: String,
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
        /// The buffer's size in bytes: the bound the range broke.
        size: u64,
    },
    /// `DMA_BUF_IOCTL_SYNC` flags the kernel refuses.
    #[error("DMA_BUF_IOCTL_SYNC: flags {flags:#x} are invalid (EINVAL): use READ, WRITE or RW with START or END")]
    BadSyncFlags {
        /// The `dma_buf_sync.flags` passed, as given.
        flags: u64,
    },
    /// `DMA_BUF_IOCTL_SYNC_PARTIAL` flags no kernel accepts: those `DMA_BUF_IOCTL_SYNC`
    /// refuses, or `DMA_BUF_SYNC_OVERWRITE` on anything but a `START` of a write.
    #[error(
        "DMA_BUF_IOCTL_SYNC_PARTIAL: flags {flags:#x} are invalid (EINVAL): use READ, WRITE or RW with START or END, and OVERWRITE (0x8) only with START|WRITE"
    )]
    BadSyncPartialFlags {
        /// The `dma_buf_sync_partial.flags` passed, as given.
        flags: u64,
    },
    /// `DMA_BUF_IOCTL_SYNC_PARTIAL` on a kernel that does not have it: upstream's
    /// `dma_buf_ioctl` answers `ENOTTY` (its `default:` case).
    #[error("DMA_BUF_IOCTL_SYNC_PARTIAL: this kernel has no such ioctl (ENOTTY): fall back to DMA_BUF_IOCTL_SYNC")]
    NoSyncPartial,
    /// `DMA_BUF_SYNC_OVERWRITE` on a kernel that has `DMA_BUF_IOCTL_SYNC_PARTIAL` but not
    /// the flag (Rockchip's checks `DMA_BUF_SYNC_VALID_FLAGS_MASK`): `EINVAL`.
    #[error(
        "DMA_BUF_IOCTL_SYNC_PARTIAL: this kernel does not know DMA_BUF_SYNC_OVERWRITE in flags {flags:#x} (EINVAL): sync without it"
    )]
    NoOverwrite {
        /// The flags passed, with the unknown bit.
        flags: u64,
    },
    /// `DMA_BUF_IOCTL_EXPORT_SYNC_FILE` or `IMPORT_SYNC_FILE` with flags that are not a
    /// non-empty subset of READ | WRITE (EINVAL).
    #[error("{ioctl}: flags {flags:#x} are invalid (EINVAL): use READ (0x1), WRITE (0x2) or both")]
    BadSyncFileFlags {
        /// Which ioctl refused them, by its name.
        ioctl: &'static str,
        /// The flags passed, as given.
        flags: u64,
    },
    /// A fence, reservation-object or sync-file operation failed (a wait timed out, a
    /// simulated wait could never complete, ...).
    #[error(transparent)]
    Fence(#[from] FenceError),
    /// `DMA_BUF_SET_NAME` with a name too long (EINVAL).
    #[error("DMA_BUF_SET_NAME: `{name}` is longer than 31 bytes (EINVAL)")]
    NameTooLong {
        /// The name refused, as given.
        name: String,
    },
    /// A migration was asked for while an importer pins the buffer.
    #[error("cannot move `{buffer}`: `{device}` pins it (a static importer, or an explicit pin)")]
    Pinned {
        /// The buffer that was to move, by its name.
        buffer: String,
        /// The importer that pins it (explicitly, or as a static importer), by its name.
        device: String,
    },
    /// A migration was asked for while the buffer is mapped (by a device or the CPU).
    #[error("cannot move `{buffer}` while it is mapped ({what})")]
    Busy {
        /// The buffer that was to move, by its name.
        buffer: String,
        /// Who maps it, in words (`` mapped by `gpu` ``, `vmapped by the kernel`).
        what: String,
    },
    /// The exporter cannot move its memory.
    #[error("`{buffer}` comes from `{exporter}`, which cannot migrate buffers")]
    NotDynamic {
        /// The buffer that was to move, by its name.
        buffer: String,
        /// The exporter's name (`exp_name`), which has no way to move its memory.
        exporter: String,
    },
    /// `UDMABUF_CREATE` refused the request (EINVAL), for the reason given.
    #[error("UDMABUF_CREATE: {reason} (EINVAL)")]
    Udmabuf {
        /// Which of udmabuf's rules was broken.
        reason: String,
    },
    /// The exporter refused a user mapping.
    #[error("mmap of `{buffer}` refused by its exporter: {reason}")]
    MmapRefused {
        /// The buffer whose mmap was refused, by its name.
        buffer: String,
        /// Why the exporter refused, in its own words.
        reason: String,
    },
    /// The device has no local memory to export.
    #[error("`{device}` has no local memory to export buffers from")]
    NoLocalMemory {
        /// The device named as the exporter, by its name in the platform.
        device: String,
    },
    /// The importing driver refuses the buffer at map: it needs physically contiguous
    /// memory and has no IOMMU, and the buffer's pages are scattered. Upstream's
    /// `drm_gem_dma_prime_import_sg_table` (vc4, and every `drm_gem_dma` driver) checks
    /// `drm_prime_get_contiguous_size(sgt) < dmabuf->size` and fails with EINVAL.
    #[error(
        "`{device}` refuses to import `{buffer}` (EINVAL): it needs physically contiguous memory and has no IOMMU, and the buffer's {segments} pieces are scattered (drm_gem_dma_prime_import_sg_table)"
    )]
    ImportNotContiguous {
        /// The buffer the importer refuses, by its name.
        buffer: String,
        /// The importing device, by its name in the platform.
        device: String,
        /// How many discontiguous pieces the buffer has.
        segments: usize,
    },
    /// A map of an attachment that is already mapped.
    #[error("`{device}` has already mapped `{buffer}`: unmap it first")]
    AlreadyMapped {
        /// The buffer already mapped, by its name.
        buffer: String,
        /// The device whose attachment is mapped, by its name in the platform.
        device: String,
    },
    /// An unmap, or a device access, of an attachment that is not mapped.
    #[error("`{device}` has not mapped `{buffer}`")]
    NotMapped {
        /// The buffer not mapped, by its name.
        buffer: String,
        /// The device whose attachment is not mapped, by its name in the platform.
        device: String,
    },
    /// A device access through a mapping the device did not map for that direction.
    #[error("`{device}` mapped `{buffer}` {mapped:?} and cannot {access} it")]
    WrongDirection {
        /// The buffer accessed, by its name.
        buffer: String,
        /// The device that tried the access, by its name in the platform.
        device: String,
        /// The direction the attachment was mapped for.
        mapped: DmaDirection,
        /// The access it tried: `read` or `write`.
        access: &'static str,
    },
}
