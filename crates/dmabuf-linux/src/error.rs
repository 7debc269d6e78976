//! Errors: every failure names the operation (the ioctl or syscall, by its kernel name)
//! and the errno, or the rule that this crate checked before asking the kernel.

use std::fmt;
use std::path::PathBuf;

pub use rustix::io::Errno;

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

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An errno shown as the kernel names it, then as libc describes it:
/// `EINVAL (Invalid argument)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrnoName(pub Errno);

impl fmt::Display for ErrnoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        let name = match e {
            Errno::PERM => "EPERM",
            Errno::NOENT => "ENOENT",
            Errno::INTR => "EINTR",
            Errno::IO => "EIO",
            Errno::NXIO => "ENXIO",
            Errno::TOOBIG => "E2BIG",
            Errno::BADF => "EBADF",
            Errno::AGAIN => "EAGAIN",
            Errno::NOMEM => "ENOMEM",
            Errno::ACCESS => "EACCES",
            Errno::FAULT => "EFAULT",
            Errno::BUSY => "EBUSY",
            Errno::EXIST => "EEXIST",
            Errno::NODEV => "ENODEV",
            Errno::NOTDIR => "ENOTDIR",
            Errno::INVAL => "EINVAL",
            Errno::NFILE => "ENFILE",
            Errno::MFILE => "EMFILE",
            Errno::NOTTY => "ENOTTY",
            Errno::FBIG => "EFBIG",
            Errno::NOSPC => "ENOSPC",
            Errno::SPIPE => "ESPIPE",
            Errno::RANGE => "ERANGE",
            Errno::NOSYS => "ENOSYS",
            Errno::TIME => "ETIME",
            Errno::OVERFLOW => "EOVERFLOW",
            Errno::BADFD => "EBADFD",
            Errno::OPNOTSUPP => "EOPNOTSUPP",
            Errno::TIMEDOUT => "ETIMEDOUT",
            _ => "",
        };
        let text = std::io::Error::from_raw_os_error(e.raw_os_error());
        // std appends " (os error N)"; keep only the description.
        let text = text.to_string();
        let text = text.split(" (os error").next().unwrap_or_default();
        if name.is_empty() { write!(f, "errno {} ({text})", e.raw_os_error()) } else { write!(f, "{name} ({text})") }
    }
}

/// Everything that can go wrong in this crate.
///
/// [`Error::Os`] is the kernel saying no; the other variants are the rules this crate
/// checks first, each with what was wrong and what would be accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A syscall or ioctl failed.
    #[error("{op} failed: {}", ErrnoName(*errno))]
    Os {
        /// What was called.
        op: Op,
        /// What the kernel answered.
        errno: Errno,
    },

    /// Opening a device or file failed.
    #[error("open {} failed: {}", path.display(), ErrnoName(*errno))]
    Open {
        /// What was opened.
        path: PathBuf,
        /// What the kernel answered.
        errno: Errno,
    },

    /// The heap directory is missing or unreadable: the kernel has no dma-buf heaps
    /// (`CONFIG_DMABUF_HEAPS`) or they are not visible here.
    #[error(
        "no dma-buf heaps: cannot list {}: {} (is CONFIG_DMABUF_HEAPS enabled and /dev mounted?)",
        path.display(), ErrnoName(*errno)
    )]
    NoHeaps {
        /// The directory that was listed.
        path: PathBuf,
        /// Why listing failed.
        errno: Errno,
    },

    /// No heap has this name; `available` lists the heaps that exist.
    #[error("no dma-buf heap named {name:?} in {}; this system has: {}", dir.display(), list(available))]
    HeapNotFound {
        /// The name asked for.
        name: String,
        /// The heap directory.
        dir: PathBuf,
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

    /// The buffer already has a live mapping in this process; a second one would let two
    /// write guards alias the same bytes.
    #[error("dma-buf (inode {ino}) is already mapped in this process; drop the other mapping first")]
    AlreadyMapped {
        /// The dma-buf's inode number.
        ino: u64,
    },

    /// A write guard was asked for on a mapping of a read-only fd.
    #[error("the dma-buf fd is open read-only, so its mapping cannot be written")]
    NotWritable,

    /// A guard's range does not fit in the mapping.
    #[error("range {start}..{end} is not inside the {len}-byte mapping")]
    RangeOutOfBounds {
        /// Start of the range asked for.
        start: usize,
        /// End of the range asked for.
        end: usize,
        /// Length of the mapping.
        len: usize,
    },

    /// An earlier guard was dropped and its `DMA_BUF_IOCTL_SYNC(DMA_BUF_SYNC_END)` failed;
    /// reported by the next guard of the same mapping (use `CpuAccess::end` to see it at
    /// once).
    #[error("an earlier guard's DMA_BUF_IOCTL_SYNC(DMA_BUF_SYNC_END), issued when it was dropped, failed: {}", ErrnoName(*errno))]
    DeferredSyncEnd {
        /// What the kernel answered to the END.
        errno: Errno,
    },

    /// A dma-buf or sync file name is too long for `DMA_BUF_NAME_LEN`.
    #[error("name {name:?} is {len} bytes; at most {max} fit (DMA_BUF_NAME_LEN - 1)")]
    NameTooLong {
        /// The name.
        name: String,
        /// Its length in bytes.
        len: usize,
        /// The most that fits.
        max: usize,
    },

    /// A name contains a NUL byte, which would silently cut it.
    #[error("name {name:?} contains a NUL byte")]
    NameHasNul {
        /// The name.
        name: String,
    },

    /// The heap could not allocate a zero-sized buffer.
    #[error("cannot allocate a zero-sized dma-buf")]
    ZeroSize,

    /// udmabuf: an item's offset is not a multiple of the page size.
    #[error("udmabuf item {index}: offset {offset} is not a multiple of the page size {page_size}")]
    UdmabufOffsetNotAligned {
        /// Which item of the list.
        index: usize,
        /// The offset given.
        offset: u64,
        /// The page size.
        page_size: u64,
    },

    /// udmabuf: an item's size is not a multiple of the page size.
    #[error("udmabuf item {index}: size {size} is not a multiple of the page size {page_size}")]
    UdmabufSizeNotAligned {
        /// Which item of the list.
        index: usize,
        /// The size given.
        size: u64,
        /// The page size.
        page_size: u64,
    },

    /// udmabuf: an empty list or an item of size zero.
    #[error("udmabuf: the buffer would be empty (no items, or all of size 0)")]
    UdmabufEmpty,

    /// udmabuf: the fd is not a memfd (not a shmem file the kernel can pin pages of).
    #[error("udmabuf item {index}: the fd is not a memfd (fcntl(F_GET_SEALS) says EINVAL)")]
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

    /// udmabuf: the memfd is sealed against writes, which the kernel refuses (the device
    /// may write).
    #[error("udmabuf item {index}: the memfd has F_SEAL_WRITE; udmabuf needs writable pages")]
    UdmabufWriteSealed {
        /// Which item of the list.
        index: usize,
    },

    /// udmabuf: the range reaches past the end of the memfd.
    #[error("udmabuf item {index}: range {offset}+{size} reaches past the memfd's end ({file_size} bytes)")]
    UdmabufPastEnd {
        /// Which item of the list.
        index: usize,
        /// Offset given.
        offset: u64,
        /// Size given.
        size: u64,
        /// The memfd's size.
        file_size: u64,
    },

    /// udmabuf: the total size exceeds the driver's `size_limit_mb`.
    #[error("udmabuf: {size} bytes exceed the driver's limit of {limit} bytes (module parameter size_limit_mb)")]
    UdmabufTooLarge {
        /// The total size asked for.
        size: u64,
        /// The limit.
        limit: u64,
    },

    /// udmabuf: the list has more items than the driver's `list_limit`.
    #[error("udmabuf: {count} items exceed the driver's limit of {limit} (module parameter list_limit)")]
    UdmabufTooManyItems {
        /// Items given.
        count: usize,
        /// The limit.
        limit: usize,
    },

    /// No vgem device was found under `/dev/dri`.
    #[error("no vgem device under /dev/dri (load it: modprobe vgem)")]
    VgemNotFound,

    /// The sw_sync debugfs file is missing (`CONFIG_SW_SYNC` off, or debugfs not mounted).
    #[error("sw_sync is unavailable: {}: {} (needs CONFIG_SW_SYNC and debugfs mounted)", path.display(), ErrnoName(*errno))]
    SwSyncUnavailable {
        /// The debugfs file.
        path: PathBuf,
        /// Why opening it failed.
        errno: Errno,
    },
}

fn list(names: &[String]) -> String {
    if names.is_empty() { "no heaps at all".to_owned() } else { names.join(", ") }
}

impl Error {
    /// The errno, when the kernel produced the error.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Os { errno, .. }
            | Error::Open { errno, .. }
            | Error::NoHeaps { errno, .. }
            | Error::DeferredSyncEnd { errno }
            | Error::SwSyncUnavailable { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    pub(crate) fn os(op: Op) -> impl FnOnce(Errno) -> Error {
        move |errno| Error::Os { op, errno }
    }
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_name_the_ioctl_and_the_errno() {
        let e = Error::Os { op: Op::DmaHeapIoctlAlloc, errno: Errno::INVAL };
        assert_eq!(e.to_string(), "DMA_HEAP_IOCTL_ALLOC failed: EINVAL (Invalid argument)");
        assert_eq!(e.errno(), Some(Errno::INVAL));
        let e = Error::Os { op: Op::DmaBufIoctlSyncEnd, errno: Errno::INTR };
        assert_eq!(e.to_string(), "DMA_BUF_IOCTL_SYNC(DMA_BUF_SYNC_END) failed: EINTR (Interrupted system call)");
    }

    #[test]
    fn unnamed_errnos_still_show_their_number() {
        let s = ErrnoName(Errno::from_raw_os_error(133)).to_string();
        assert!(s.starts_with("errno 133 ("), "{s}");
    }

    #[test]
    fn heap_not_found_lists_the_heaps_that_exist() {
        let e = Error::HeapNotFound {
            name: "linux,cma".into(),
            dir: "/dev/dma_heap".into(),
            available: vec!["default_cma_region".into(), "system".into()],
        };
        assert_eq!(
            e.to_string(),
            "no dma-buf heap named \"linux,cma\" in /dev/dma_heap; this system has: default_cma_region, system"
        );
        let e = Error::HeapNotFound { name: "system".into(), dir: "/x".into(), available: vec![] };
        assert!(e.to_string().ends_with("this system has: no heaps at all"));
        assert_eq!(e.errno(), None);
    }

    #[test]
    fn udmabuf_refusals_say_what_to_fix() {
        let e = Error::UdmabufMissingShrinkSeal { index: 0 };
        assert!(e.to_string().contains("F_SEAL_SHRINK"), "{e}");
        let e = Error::UdmabufSizeNotAligned { index: 1, size: 2048, page_size: 4096 };
        assert_eq!(e.to_string(), "udmabuf item 1: size 2048 is not a multiple of the page size 4096");
    }
}
