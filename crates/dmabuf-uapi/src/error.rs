//! [`Error`], the one error type of the user API, and [`Op`], the kernel operation a
//! failure happened in.
//!
//! Every failure names the operation (the ioctl or syscall, by its kernel name) and the
//! errno, or the rule checked before the call. A rule that mirrors a kernel refusal
//! carries the errno the kernel would have returned ([`Error::errno`]), so that a program
//! handles `EINVAL` the same way whether the kernel or this crate said no first.

use std::fmt;
use std::path::PathBuf;

use crate::data::{FdFlags, HeapFlags};
use crate::errno::Errno;

/// The kernel operation that failed, named as in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// `DMA_HEAP_IOCTL_ALLOC`.
    DmaHeapIoctlAlloc,
    /// `DMA_BUF_IOCTL_SYNC` with `DMA_BUF_SYNC_START`.
    DmaBufIoctlSyncStart,
    /// `DMA_BUF_IOCTL_SYNC` with `DMA_BUF_SYNC_END`.
    DmaBufIoctlSyncEnd,
    /// `DMA_BUF_IOCTL_SYNC_PARTIAL` (vendor kernels) with `DMA_BUF_SYNC_START`.
    DmaBufIoctlSyncPartialStart,
    /// `DMA_BUF_IOCTL_SYNC_PARTIAL` with `DMA_BUF_SYNC_END`.
    DmaBufIoctlSyncPartialEnd,
    /// `DMA_BUF_SET_NAME`.
    DmaBufSetName,
    /// `DMA_BUF_IOCTL_EXPORT_SYNC_FILE`.
    DmaBufIoctlExportSyncFile,
    /// `DMA_BUF_IOCTL_IMPORT_SYNC_FILE`.
    DmaBufIoctlImportSyncFile,
    /// `UDMABUF_CREATE`.
    UdmabufCreate,
    /// `UDMABUF_CREATE_LIST`.
    UdmabufCreateList,
    /// `SYNC_IOC_MERGE`.
    SyncIocMerge,
    /// `SYNC_IOC_FILE_INFO`.
    SyncIocFileInfo,
    /// `SYNC_IOC_SET_DEADLINE`.
    SyncIocSetDeadline,
    /// `SW_SYNC_IOC_CREATE_FENCE`.
    SwSyncIocCreateFence,
    /// `SW_SYNC_IOC_INC`.
    SwSyncIocInc,
    /// `DRM_IOCTL_GEM_CLOSE`.
    DrmIoctlGemClose,
    /// `DRM_IOCTL_PRIME_FD_TO_HANDLE`.
    DrmIoctlPrimeFdToHandle,
    /// `DRM_IOCTL_PRIME_HANDLE_TO_FD`.
    DrmIoctlPrimeHandleToFd,
    /// `DRM_IOCTL_MODE_CREATE_DUMB`.
    DrmIoctlModeCreateDumb,
    /// `DRM_IOCTL_VGEM_FENCE_ATTACH`.
    DrmIoctlVgemFenceAttach,
    /// `DRM_IOCTL_VGEM_FENCE_SIGNAL`.
    DrmIoctlVgemFenceSignal,
    /// `mmap`.
    Mmap,
    /// `poll`.
    Poll,
    /// `fstat`.
    Fstat,
    /// `fstatfs`.
    Fstatfs,
    /// `fcntl(F_GETFL)`.
    FcntlGetfl,
    /// `fcntl(F_DUPFD_CLOEXEC)`.
    FcntlDupfdCloexec,
    /// `memfd_create`.
    MemfdCreate,
    /// `ftruncate`.
    Ftruncate,
    /// `fcntl(F_ADD_SEALS)`.
    FcntlAddSeals,
    /// `fcntl(F_GET_SEALS)`.
    FcntlGetSeals,
    /// `pread`.
    Pread,
    /// `pwrite`.
    Pwrite,
}

impl Op {
    /// The kernel's name for the operation.
    pub const fn name(self) -> &'static str {
        match self {
            Op::DmaHeapIoctlAlloc => "DMA_HEAP_IOCTL_ALLOC",
            Op::DmaBufIoctlSyncStart => "DMA_BUF_IOCTL_SYNC(DMA_BUF_SYNC_START)",
            Op::DmaBufIoctlSyncEnd => "DMA_BUF_IOCTL_SYNC(DMA_BUF_SYNC_END)",
            Op::DmaBufIoctlSyncPartialStart => "DMA_BUF_IOCTL_SYNC_PARTIAL(DMA_BUF_SYNC_START)",
            Op::DmaBufIoctlSyncPartialEnd => "DMA_BUF_IOCTL_SYNC_PARTIAL(DMA_BUF_SYNC_END)",
            Op::DmaBufSetName => "DMA_BUF_SET_NAME",
            Op::DmaBufIoctlExportSyncFile => "DMA_BUF_IOCTL_EXPORT_SYNC_FILE",
            Op::DmaBufIoctlImportSyncFile => "DMA_BUF_IOCTL_IMPORT_SYNC_FILE",
            Op::UdmabufCreate => "UDMABUF_CREATE",
            Op::UdmabufCreateList => "UDMABUF_CREATE_LIST",
            Op::SyncIocMerge => "SYNC_IOC_MERGE",
            Op::SyncIocFileInfo => "SYNC_IOC_FILE_INFO",
            Op::SyncIocSetDeadline => "SYNC_IOC_SET_DEADLINE",
            Op::SwSyncIocCreateFence => "SW_SYNC_IOC_CREATE_FENCE",
            Op::SwSyncIocInc => "SW_SYNC_IOC_INC",
            Op::DrmIoctlGemClose => "DRM_IOCTL_GEM_CLOSE",
            Op::DrmIoctlPrimeFdToHandle => "DRM_IOCTL_PRIME_FD_TO_HANDLE",
            Op::DrmIoctlPrimeHandleToFd => "DRM_IOCTL_PRIME_HANDLE_TO_FD",
            Op::DrmIoctlModeCreateDumb => "DRM_IOCTL_MODE_CREATE_DUMB",
            Op::DrmIoctlVgemFenceAttach => "DRM_IOCTL_VGEM_FENCE_ATTACH",
            Op::DrmIoctlVgemFenceSignal => "DRM_IOCTL_VGEM_FENCE_SIGNAL",
            Op::Mmap => "mmap",
            Op::Poll => "poll",
            Op::Fstat => "fstat",
            Op::Fstatfs => "fstatfs",
            Op::FcntlGetfl => "fcntl(F_GETFL)",
            Op::FcntlDupfdCloexec => "fcntl(F_DUPFD_CLOEXEC)",
            Op::MemfdCreate => "memfd_create",
            Op::Ftruncate => "ftruncate",
            Op::FcntlAddSeals => "fcntl(F_ADD_SEALS)",
            Op::FcntlGetSeals => "fcntl(F_GET_SEALS)",
            Op::Pread => "pread",
            Op::Pwrite => "pwrite",
        }
    }
}

impl Op {
    /// The operation of `DMA_BUF_IOCTL_SYNC` (`partial`: `DMA_BUF_IOCTL_SYNC_PARTIAL`) at
    /// `phase`.
    pub const fn sync(phase: crate::data::SyncPhase, partial: bool) -> Op {
        match (phase, partial) {
            (crate::data::SyncPhase::Start, false) => Op::DmaBufIoctlSyncStart,
            (crate::data::SyncPhase::End, false) => Op::DmaBufIoctlSyncEnd,
            (crate::data::SyncPhase::Start, true) => Op::DmaBufIoctlSyncPartialStart,
            (crate::data::SyncPhase::End, true) => Op::DmaBufIoctlSyncPartialEnd,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failure the simulated framework explains (its own error), boxed so that this crate
/// needs nothing of the framework.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in the user API, on either backend.
///
/// [`Error::Os`] is the kernel saying no, [`Error::Framework`] the simulated framework
/// saying no as the kernel would; the other variants are the rules checked before the
/// call, each with what was wrong and what would be accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A syscall or ioctl failed.
    #[error("{op} failed: {errno}")]
    Os {
        /// What was called.
        op: Op,
        /// What the kernel answered.
        errno: Errno,
    },

    /// The simulated framework refused an operation; `errno` is what the kernel returns
    /// for the same refusal.
    #[error("{op} failed: {errno}: {source}")]
    Framework {
        /// What was called.
        op: Op,
        /// The kernel's answer to the same request.
        errno: Errno,
        /// The framework's own error, which says why it refused.
        source: Cause,
    },

    /// Opening a device or file failed.
    #[error("open {} failed: {errno}", path.display())]
    Open {
        /// What was opened.
        path: PathBuf,
        /// What the kernel answered.
        errno: Errno,
    },

    /// The heap directory is missing or unreadable: the kernel has no dma-buf heaps
    /// (`CONFIG_DMABUF_HEAPS`) or they are not visible here.
    #[error(
        "no dma-buf heaps: cannot list {}: {errno} (is CONFIG_DMABUF_HEAPS enabled and /dev mounted?)",
        path.display()
    )]
    NoHeaps {
        /// The directory that was listed.
        path: PathBuf,
        /// Why listing failed.
        errno: Errno,
    },

    /// No heap has this name (opening it gives `ENOENT`); `available` lists the heaps that
    /// exist.
    #[error("no dma-buf heap named {name:?} in {location}; this system has: {}", list(available))]
    HeapNotFound {
        /// The heap name that matched none.
        name: String,
        /// Where heaps were looked for: the heap directory, or the simulated platform.
        location: String,
        /// The heaps that do exist, sorted.
        available: Vec<String>,
    },

    /// The fd is not a dma-buf (its file system is not the dma-buf pseudo file system).
    #[error("fd is not a dma-buf: its file system magic is {magic:#x}, a dma-buf's is 0x444d4142")]
    NotDmaBuf {
        /// `f_type` of the fd's file system.
        magic: u64,
    },

    /// The fd is not a sync file.
    #[error("fd is not a sync file: it is {what:?}, a sync file is \"anon_inode:sync_file\"")]
    NotSyncFile {
        /// What `/proc/self/fd` says the fd is.
        what: String,
    },

    /// `DMA_HEAP_IOCTL_ALLOC` of zero bytes (`dma_heap_buffer_alloc`: `EINVAL`).
    #[error("DMA_HEAP_IOCTL_ALLOC: cannot allocate a zero-sized dma-buf (EINVAL)")]
    ZeroSize,

    /// `DMA_HEAP_IOCTL_ALLOC` of a length that wraps to 0 when rounded up to whole pages
    /// (`dma_heap_buffer_alloc`: `PAGE_ALIGN(len)` is 0, `EINVAL`).
    #[error("DMA_HEAP_IOCTL_ALLOC: {len} bytes wrap to 0 when rounded up to {page_size}-byte pages (EINVAL)")]
    LengthWraps {
        /// The `len` passed, so close to 2^64 that rounding it up to pages wraps.
        len: u64,
        /// The page size in bytes (the kernel's `PAGE_SIZE`).
        page_size: u64,
    },

    /// `DMA_HEAP_IOCTL_ALLOC` with fd flags outside `DMA_HEAP_VALID_FD_FLAGS`
    /// (`dma_heap_ioctl_allocate`: `EINVAL`).
    #[error(
        "DMA_HEAP_IOCTL_ALLOC: fd_flags {:#o} has bits outside O_ACCMODE | O_CLOEXEC ({:#o}, DMA_HEAP_VALID_FD_FLAGS) (EINVAL)",
        fd_flags.bits(), FdFlags::VALID.bits()
    )]
    FdFlags {
        /// The `fd_flags` passed, with bits outside the valid set.
        fd_flags: FdFlags,
    },

    /// `DMA_HEAP_IOCTL_ALLOC` with heap flags, of which no heap defines any
    /// (`dma_heap_ioctl_allocate`: `EINVAL`).
    #[error(
        "DMA_HEAP_IOCTL_ALLOC: heap_flags {:#x}: no heap flag is defined (DMA_HEAP_VALID_HEAP_FLAGS is 0) (EINVAL)",
        heap_flags.bits()
    )]
    HeapFlags {
        /// The `heap_flags` passed, none of which any heap defines.
        heap_flags: HeapFlags,
    },

    /// `DMA_HEAP_IOCTL_ALLOC` with the output `fd` field set (`dma_heap_ioctl_allocate`:
    /// `EINVAL`).
    #[error("DMA_HEAP_IOCTL_ALLOC: the fd field is {fd}; it is output only and must be 0 (EINVAL)")]
    FdNotZero {
        /// What the caller left in the output-only field.
        fd: u32,
    },

    /// `mmap` at an offset that is not a whole number of pages (`EINVAL`).
    #[error("mmap: offset {offset} is not a multiple of the page size {page_size} (EINVAL)")]
    MmapOffsetNotAligned {
        /// The byte offset into the buffer passed to `mmap`.
        offset: u64,
        /// The page size in bytes (the kernel's `PAGE_SIZE`).
        page_size: u64,
    },

    /// `mmap` of zero bytes (`EINVAL`).
    #[error("mmap: a mapping cannot be empty (EINVAL)")]
    MmapEmpty,

    /// `mmap` of pages past the end of the buffer (`dma_buf_mmap_internal`: `vm_pgoff` plus
    /// the mapping's pages exceed the buffer's, `EINVAL`).
    #[error("mmap: {len} bytes at offset {offset} reach past the end of the {size}-byte dma-buf (EINVAL)")]
    MmapPastEnd {
        /// The byte offset into the buffer passed to `mmap`.
        offset: u64,
        /// The mapping's length in bytes.
        len: u64,
        /// The dma-buf's size in bytes.
        size: u64,
    },

    /// `mmap` of an fd opened write-only: a mapping needs read access (`EACCES`).
    #[error("mmap: the dma-buf fd is open write-only (O_WRONLY); a mapping needs read access (EACCES)")]
    NotReadable,

    /// The buffer already has a live mapping in this process; a second one would let two
    /// write guards alias the same bytes.
    #[error("dma-buf {buffer} is already mapped in this process; drop the other mapping first")]
    AlreadyMapped {
        /// The buffer (its name, or its inode).
        buffer: String,
    },

    /// A write guard was asked for on a mapping of a read-only fd.
    #[error("the dma-buf fd is open read-only, so its mapping cannot be written")]
    NotWritable,

    /// A guard's or a device job's range does not fit in the mapping or buffer.
    #[error("range {start}..{end} is not inside the {len}-byte mapping")]
    RangeOutOfBounds {
        /// Start of the range asked for.
        start: usize,
        /// End of the range asked for.
        end: usize,
        /// Length of the mapping or buffer.
        len: usize,
    },

    /// An earlier guard was dropped and ending it failed; reported by the next guard of
    /// the same mapping (use [`crate::CpuAccess::end`] to see it at once).
    #[error("an earlier guard's end, done when it was dropped, failed: {source}")]
    DeferredEnd {
        /// What failed.
        source: Box<Error>,
    },

    /// A dma-buf or sync file name is too long for `DMA_BUF_NAME_LEN` (the kernel's
    /// `strndup_user` refuses it with `EINVAL`).
    #[error("name {name:?} is {len} bytes; at most {max} fit (DMA_BUF_NAME_LEN - 1)")]
    NameTooLong {
        /// The name refused, as given.
        name: String,
        /// Its length in bytes.
        len: usize,
        /// The most that fits.
        max: usize,
    },

    /// A name contains a NUL byte, which would silently cut it.
    #[error("name {name:?} contains a NUL byte")]
    NameHasNul {
        /// The name refused, NUL included.
        name: String,
    },

    /// udmabuf: an item's offset is not a multiple of the page size.
    #[error("udmabuf item {index}: offset {offset} is not a multiple of the page size {page_size}")]
    UdmabufOffsetNotAligned {
        /// Which item of the list.
        index: usize,
        /// The item's offset into its memfd, in bytes.
        offset: u64,
        /// The page size in bytes (the kernel's `PAGE_SIZE`).
        page_size: u64,
    },

    /// udmabuf: an item's size is not a multiple of the page size.
    #[error("udmabuf item {index}: size {size} is not a multiple of the page size {page_size}")]
    UdmabufSizeNotAligned {
        /// Which item of the list.
        index: usize,
        /// The item's size in bytes.
        size: u64,
        /// The page size in bytes (the kernel's `PAGE_SIZE`).
        page_size: u64,
    },

    /// udmabuf: an empty list or an item of size zero.
    #[error("udmabuf: the buffer would be empty (no items, or all of size 0)")]
    UdmabufEmpty,

    /// udmabuf: the file is not a memfd (neither shmem nor hugetlbfs; `check_memfd_seals`
    /// says `EBADFD`).
    #[error("udmabuf item {index}: the fd is not a memfd (neither shmem nor hugetlbfs)")]
    UdmabufNotMemfd {
        /// Which item of the list.
        index: usize,
    },

    /// udmabuf: the memfd is not sealed against shrinking, so its pages could vanish
    /// under the device.
    #[error("udmabuf item {index}: the memfd lacks F_SEAL_SHRINK (create it with MFD_ALLOW_SEALING and add the seal)")]
    UdmabufMissingShrinkSeal {
        /// Which item of the list.
        index: usize,
    },

    /// udmabuf: the memfd is sealed against writes (`F_SEAL_WRITE` or
    /// `F_SEAL_FUTURE_WRITE`), which the kernel refuses: the device may write.
    #[error("udmabuf item {index}: the memfd has {seal}; udmabuf needs writable pages")]
    UdmabufWriteSealed {
        /// Which item of the list.
        index: usize,
        /// The seal found: `F_SEAL_WRITE` or `F_SEAL_FUTURE_WRITE`.
        seal: &'static str,
    },

    /// udmabuf: the range reaches past the end of the memfd.
    #[error("udmabuf item {index}: range {offset}+{size} reaches past the memfd's end ({file_size} bytes)")]
    UdmabufPastEnd {
        /// Which item of the list.
        index: usize,
        /// The item's offset into its memfd, in bytes.
        offset: u64,
        /// The item's size in bytes.
        size: u64,
        /// The memfd's size in bytes, which `offset + size` passes.
        file_size: u64,
    },

    /// udmabuf: the total size exceeds the driver's `size_limit_mb`.
    #[error("udmabuf: {size} bytes exceed the driver's limit of {limit} bytes (module parameter size_limit_mb)")]
    UdmabufTooLarge {
        /// The items' sizes summed, up to the first that passes the limit, in bytes.
        size: u64,
        /// The driver's `size_limit_mb`, in bytes.
        limit: u64,
    },

    /// udmabuf: the list has more items than the driver's `list_limit`.
    #[error("udmabuf: {count} items exceed the driver's limit of {limit} (module parameter list_limit)")]
    UdmabufTooManyItems {
        /// How many items the list has.
        count: usize,
        /// The driver's `list_limit`.
        limit: usize,
    },

    /// A simulated CPU load or store through the mapping failed (the hardware refused it).
    #[error("CPU access to {buffer:?} through its mapping failed: {source}")]
    Access {
        /// The buffer accessed, by its name.
        buffer: String,
        /// The framework's error for the refused load or store.
        source: Cause,
    },

    /// A simulated device could not be found, import the buffer, or run a job.
    #[error("device {device:?}: {action} failed: {source}")]
    Device {
        /// The simulated device, by its name on the platform.
        device: String,
        /// What it was doing.
        action: &'static str,
        /// What the framework reported: no such device, a refused import, a failed job.
        source: Cause,
    },

    /// A simulated device was handed a buffer of another simulated system.
    #[error("device {device:?} cannot use buffer {buffer:?}: it belongs to another simulated system")]
    ForeignBuffer {
        /// The simulated device handed the buffer, by its name on the platform.
        device: String,
        /// The buffer from the other system, by its name.
        buffer: String,
    },

    /// No vgem device was found under `/dev/dri`.
    #[error("no vgem device under /dev/dri (load it: modprobe vgem)")]
    VgemNotFound,

    /// The sw_sync debugfs file is missing (`CONFIG_SW_SYNC` off, or debugfs not mounted).
    #[error("sw_sync is unavailable: {}: {errno} (needs CONFIG_SW_SYNC and debugfs mounted)", path.display())]
    SwSyncUnavailable {
        /// The sw_sync file it tried to open (`/sys/kernel/debug/sync/sw_sync`, unless
        /// another path was given).
        path: PathBuf,
        /// Why opening it failed.
        errno: Errno,
    },
}

fn list(names: &[String]) -> String {
    if names.is_empty() { "no heaps at all".to_owned() } else { names.join(", ") }
}

impl Error {
    /// The errno: the kernel's answer, or for a rule checked first the errno the kernel
    /// returns for the same request. `None` for this API's own rules (one mapping per
    /// buffer, guards' ranges, read-only mappings) and for what only the simulation knows.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Os { errno, .. }
            | Error::Framework { errno, .. }
            | Error::Open { errno, .. }
            | Error::NoHeaps { errno, .. }
            | Error::SwSyncUnavailable { errno, .. } => Some(*errno),
            Error::DeferredEnd { source } => source.errno(),
            Error::HeapNotFound { .. } => Some(Errno::ENOENT),
            Error::NotReadable => Some(Errno::EACCES),
            Error::UdmabufNotMemfd { .. } => Some(Errno::EBADFD),
            Error::ZeroSize
            | Error::LengthWraps { .. }
            | Error::FdFlags { .. }
            | Error::HeapFlags { .. }
            | Error::FdNotZero { .. }
            | Error::MmapOffsetNotAligned { .. }
            | Error::MmapEmpty
            | Error::MmapPastEnd { .. }
            | Error::NameTooLong { .. }
            | Error::NameHasNul { .. }
            | Error::UdmabufOffsetNotAligned { .. }
            | Error::UdmabufSizeNotAligned { .. }
            | Error::UdmabufEmpty
            | Error::UdmabufMissingShrinkSeal { .. }
            | Error::UdmabufWriteSealed { .. }
            | Error::UdmabufPastEnd { .. }
            | Error::UdmabufTooLarge { .. }
            | Error::UdmabufTooManyItems { .. } => Some(Errno::EINVAL),
            Error::NotDmaBuf { .. }
            | Error::NotSyncFile { .. }
            | Error::AlreadyMapped { .. }
            | Error::NotWritable
            | Error::RangeOutOfBounds { .. }
            | Error::Access { .. }
            | Error::Device { .. }
            | Error::ForeignBuffer { .. }
            | Error::VgemNotFound => None,
        }
    }

    /// The operation that failed or was refused, when there is one.
    pub fn op(&self) -> Option<Op> {
        match self {
            Error::Os { op, .. } | Error::Framework { op, .. } => Some(*op),
            Error::DeferredEnd { source } => source.op(),
            Error::ZeroSize
            | Error::LengthWraps { .. }
            | Error::FdFlags { .. }
            | Error::HeapFlags { .. }
            | Error::FdNotZero { .. } => Some(Op::DmaHeapIoctlAlloc),
            Error::MmapOffsetNotAligned { .. } | Error::MmapEmpty | Error::MmapPastEnd { .. } | Error::NotReadable => {
                Some(Op::Mmap)
            }
            _ => None,
        }
    }

    /// A mapper for the kernel's answer to `op`: `.map_err(Error::os(Op::Mmap))`.
    pub fn os(op: Op) -> impl FnOnce(Errno) -> Error {
        move |errno| Error::Os { op, errno }
    }
}

/// The user API's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_name_the_ioctl_and_the_errno() {
        let e = Error::Os { op: Op::DmaHeapIoctlAlloc, errno: Errno::EINVAL };
        assert_eq!(e.to_string(), "DMA_HEAP_IOCTL_ALLOC failed: EINVAL (Invalid argument)");
        assert_eq!(e.errno(), Some(Errno::EINVAL));
        assert_eq!(e.op(), Some(Op::DmaHeapIoctlAlloc));
        let e = Error::Os { op: Op::DmaBufIoctlSyncEnd, errno: Errno::EINTR };
        assert_eq!(e.to_string(), "DMA_BUF_IOCTL_SYNC(DMA_BUF_SYNC_END) failed: EINTR (Interrupted system call)");
    }

    #[test]
    fn framework_refusals_carry_the_kernels_errno_and_their_reason() {
        let e = Error::Framework { op: Op::DmaHeapIoctlAlloc, errno: Errno::ENOMEM, source: "heap is full".into() };
        assert_eq!(e.to_string(), "DMA_HEAP_IOCTL_ALLOC failed: ENOMEM (Cannot allocate memory): heap is full");
        assert_eq!(e.errno(), Some(Errno::ENOMEM));
        let deferred = Error::DeferredEnd { source: Box::new(e) };
        assert_eq!((deferred.errno(), deferred.op()), (Some(Errno::ENOMEM), Some(Op::DmaHeapIoctlAlloc)));
    }

    #[test]
    fn heap_not_found_lists_the_heaps_that_exist() {
        let e = Error::HeapNotFound {
            name: "linux,cma".into(),
            location: "/dev/dma_heap".into(),
            available: vec!["default_cma_region".into(), "system".into()],
        };
        assert_eq!(
            e.to_string(),
            "no dma-buf heap named \"linux,cma\" in /dev/dma_heap; this system has: default_cma_region, system"
        );
        let e = Error::HeapNotFound { name: "system".into(), location: "/x".into(), available: vec![] };
        assert!(e.to_string().ends_with("this system has: no heaps at all"));
        // Opening /dev/dma_heap/<name> says ENOENT.
        assert_eq!(e.errno(), Some(Errno::ENOENT));
    }

    #[test]
    fn udmabuf_refusals_say_what_to_fix() {
        let e = Error::UdmabufMissingShrinkSeal { index: 0 };
        assert!(e.to_string().contains("F_SEAL_SHRINK"), "{e}");
        let e = Error::UdmabufSizeNotAligned { index: 1, size: 2048, page_size: 4096 };
        assert_eq!(e.to_string(), "udmabuf item 1: size 2048 is not a multiple of the page size 4096");
        assert_eq!(Error::UdmabufNotMemfd { index: 0 }.errno(), Some(Errno::EBADFD));
        assert_eq!(Error::UdmabufWriteSealed { index: 0, seal: "F_SEAL_FUTURE_WRITE" }.errno(), Some(Errno::EINVAL));
    }

    #[test]
    fn the_apis_own_rules_have_no_errno() {
        for e in [Error::NotWritable, Error::AlreadyMapped { buffer: "b".into() }, Error::VgemNotFound] {
            assert_eq!(e.errno(), None, "{e}");
        }
        assert_eq!(Error::NotReadable.errno(), Some(Errno::EACCES));
        assert_eq!(Error::MmapEmpty.op(), Some(Op::Mmap));
    }
}
