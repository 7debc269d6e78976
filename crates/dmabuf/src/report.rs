//! What the framework saw a program get wrong: the DMA-API-debug class of misuse.
//!
//! The framework does what a program asks, as the kernel does, and records each misuse
//! as a [`Report`]; a checker turns them into findings. Reports name buffers and devices
//! by their typed identities, never by name.

use std::ops::Range;

use dmabuf_sim::{DeviceId, DmaDirection};

use crate::attach::AttachError;
use crate::state::BufferId;

/// A protocol violation or leak the framework saw.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Report {
    /// The CPU touched a mapping (an mmap, or a vmap) outside any access bracket.
    AccessOutsideBracket {
        /// The buffer whose mapping the CPU touched.
        buffer: BufferId,
        /// The bytes touched, as offsets into the buffer.
        range: Range<u64>,
        /// A write (else a read).
        write: bool,
    },
    /// The CPU touched bytes outside the range its ranged bracket declared
    /// (`DMA_BUF_IOCTL_SYNC_PARTIAL`): the maintenance covered only the range, so the bytes
    /// outside it may be stale (a read) or merge with stale bytes (a write).
    AccessOutsideRange {
        /// The buffer whose mapping the CPU touched.
        buffer: BufferId,
        /// The bytes touched outside the declared range (their first run).
        range: Range<u64>,
        /// The range the bracket declared.
        declared: Range<u64>,
        /// A write (else a read).
        write: bool,
    },
    /// The end of a ranged bracket covers less than the CPU wrote in it: the bytes outside
    /// its range are not handed over.
    EndMissesWrites {
        /// The buffer of the bracket.
        buffer: BufferId,
        /// Bytes written in the bracket and outside the end's range (their first run).
        missed: Range<u64>,
        /// The range the end declared.
        end: Range<u64>,
    },
    /// A bracket declared to overwrite its range ended with bytes of it unwritten: the
    /// kernel skipped their invalidate, so they hold whatever the cache had, and the end
    /// hands that over.
    OverwriteNotWhole {
        /// The buffer of the bracket.
        buffer: BufferId,
        /// The range the bracket declared it overwrites.
        declared: Range<u64>,
        /// Bytes of it not written (their first run).
        missed: Range<u64>,
    },
    /// The CPU read bytes an overwrite bracket declared it replaces before writing them:
    /// their previous contents were given up, so the read may return stale bytes.
    ReadInOverwrite {
        /// The buffer read.
        buffer: BufferId,
        /// The bytes read before being written (their first run).
        range: Range<u64>,
        /// The range the bracket declared it overwrites.
        declared: Range<u64>,
    },
    /// `DMA_BUF_IOCTL_SYNC` (or `_SYNC_PARTIAL`) with flags the kernel refuses (EINVAL).
    BadSyncFlags {
        /// The buffer the ioctl was issued on.
        buffer: BufferId,
        /// The flags as passed.
        flags: u64,
    },
    /// An end of a CPU access bracket with none open.
    DoubleEnd {
        /// The buffer the end was issued on.
        buffer: BufferId,
    },
    /// A CPU access bracket ended with another direction than it began with.
    DirectionMismatch {
        /// The buffer of the bracket.
        buffer: BufferId,
        /// The direction the bracket began with.
        started: DmaDirection,
        /// The direction it ended with.
        ended: DmaDirection,
    },
    /// An attachment the `Strict` rules refuse was let through under the `Linux` policy.
    AttachAccepted {
        /// The buffer attached.
        buffer: BufferId,
        /// The device let through.
        device: DeviceId,
        /// The refusal `Strict` would have given.
        error: AttachError,
    },
    /// Devices were still attached when the last reference to the buffer went.
    LeakedAttachments {
        /// The released buffer.
        buffer: BufferId,
        /// The devices still attached, one entry per attachment.
        devices: Vec<DeviceId>,
    },
    /// Devices still had the buffer mapped when the last reference to it went.
    LeakedMappings {
        /// The released buffer.
        buffer: BufferId,
        /// The devices whose mapping leaked, one entry per mapping.
        devices: Vec<DeviceId>,
    },
    /// The last reference to the buffer went while the kernel still had it vmapped: the
    /// kernel mapping outlives the buffer (`dma_buf_vmap` takes no reference).
    VmapAtRelease {
        /// The released buffer.
        buffer: BufferId,
    },
    /// A dynamic importer used the mapping it had before the exporter moved the buffer
    /// (it ignored `move_notify`): it reached the old pages, not the buffer.
    MappingAfterMove {
        /// The moved buffer.
        buffer: BufferId,
        /// The dynamic importer that used its stale mapping.
        device: DeviceId,
    },
    /// A dynamic exporter moved the buffer to memory the new importer reaches, because
    /// that importer has no peer-to-peer path to where it was (upstream moves it
    /// silently; under `Strict` it is reported: the exporting device now reaches its own
    /// buffer across the bus).
    MigratedForImporter {
        /// The moved buffer.
        buffer: BufferId,
        /// The importer that forced the move.
        device: DeviceId,
    },
    /// An unmap of an attachment that is not mapped.
    UnmapNotMapped {
        /// The buffer of the attachment.
        buffer: BufferId,
        /// The device whose attachment it is.
        device: DeviceId,
    },
    /// A device accessed a buffer through an attachment it has not mapped.
    DeviceAccessUnmapped {
        /// The buffer accessed.
        buffer: BufferId,
        /// The device that accessed it.
        device: DeviceId,
    },
    /// A device accessed a mapping against its direction (a write through a TO_DEVICE
    /// mapping, a read through a FROM_DEVICE one).
    DeviceDirection {
        /// The buffer accessed.
        buffer: BufferId,
        /// The device that accessed it.
        device: DeviceId,
        /// The direction the mapping was made for.
        mapped: DmaDirection,
        /// What the device did: "read" or "write".
        access: &'static str,
    },
    /// A `dma_buf_unpin` of an attachment that holds no pin.
    UnpinNotPinned {
        /// The buffer of the attachment.
        buffer: BufferId,
        /// The device whose attachment it is.
        device: DeviceId,
    },
    /// A vunmap of a buffer that is not vmapped.
    VunmapNotMapped {
        /// The buffer the vunmap was issued on.
        buffer: BufferId,
    },
}
