//! Plain data of the user API: the flags and records the ioctls take and give, as the
//! kernel's uapi headers define them.

use std::ops::{BitOr, BitOrAssign};
use std::time::Duration;

/// `DMA_BUF_NAME_LEN`: a dma-buf name, including its terminating NUL, fits in this many
/// bytes (so at most 31 bytes of name). The same bound applies to sync file names.
pub const DMA_BUF_NAME_LEN: usize = 32;

/// The access flags shared by `DMA_BUF_IOCTL_SYNC`, `DMA_BUF_IOCTL_EXPORT_SYNC_FILE` and
/// `DMA_BUF_IOCTL_IMPORT_SYNC_FILE` (`DMA_BUF_SYNC_READ`, `DMA_BUF_SYNC_WRITE`, or both).
///
/// The kernel refuses an empty set and unknown bits with `EINVAL`; this type cannot
/// express either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncFlags {
    /// `DMA_BUF_SYNC_READ`: the CPU (or the fence's user) reads the buffer.
    Read,
    /// `DMA_BUF_SYNC_WRITE`: the CPU (or the fence's user) writes the buffer.
    Write,
    /// `DMA_BUF_SYNC_RW`: both.
    ReadWrite,
}

impl SyncFlags {
    /// `DMA_BUF_SYNC_READ`.
    pub const READ_BIT: u32 = 1 << 0;
    /// `DMA_BUF_SYNC_WRITE`.
    pub const WRITE_BIT: u32 = 1 << 1;

    /// The uapi bits (`DMA_BUF_SYNC_READ` = 1, `DMA_BUF_SYNC_WRITE` = 2).
    pub const fn bits(self) -> u32 {
        match self {
            SyncFlags::Read => Self::READ_BIT,
            SyncFlags::Write => Self::WRITE_BIT,
            SyncFlags::ReadWrite => Self::READ_BIT | Self::WRITE_BIT,
        }
    }

    /// The flags for these bits, or `None` for a set the kernel refuses (empty, or with a
    /// bit other than READ and WRITE).
    pub const fn from_bits(bits: u32) -> Option<Self> {
        match bits {
            1 => Some(SyncFlags::Read),
            2 => Some(SyncFlags::Write),
            3 => Some(SyncFlags::ReadWrite),
            _ => None,
        }
    }

    /// Whether the access reads.
    pub const fn reads(self) -> bool {
        matches!(self, SyncFlags::Read | SyncFlags::ReadWrite)
    }

    /// Whether the access writes.
    pub const fn writes(self) -> bool {
        matches!(self, SyncFlags::Write | SyncFlags::ReadWrite)
    }
}

/// Which end of a CPU-access bracket a sync ioctl marks (`DMA_BUF_SYNC_START` or
/// `DMA_BUF_SYNC_END`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncPhase {
    /// `DMA_BUF_SYNC_START` (0): the CPU is about to access the bytes.
    Start,
    /// `DMA_BUF_SYNC_END` (4): the CPU is done with them.
    End,
}

impl SyncPhase {
    /// The uapi bit (`DMA_BUF_SYNC_START` is 0, `DMA_BUF_SYNC_END` is `1 << 2`).
    pub const fn bits(self) -> u64 {
        match self {
            SyncPhase::Start => 0,
            SyncPhase::End => 1 << 2,
        }
    }

    /// The `flags` word of `struct dma_buf_sync` (and `dma_buf_sync_partial`) for a
    /// bracket's end over `flags`, with [`DMA_BUF_SYNC_OVERWRITE`] when `overwrite`.
    pub const fn word(self, flags: SyncFlags, overwrite: bool) -> u64 {
        self.bits() | flags.bits() as u64 | if overwrite { DMA_BUF_SYNC_OVERWRITE } else { 0 }
    }
}

/// `DMA_BUF_SYNC_OVERWRITE` (proposed in docs/proposals/sync-partial.md; no kernel has it
/// yet): with `DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE` on `DMA_BUF_IOCTL_SYNC_PARTIAL`,
/// the CPU writes every byte of the range before the `END`, so the kernel need not make
/// their previous contents visible (no invalidate of the lines the range covers whole).
/// A kernel that has the ioctl but not the flag refuses it with `EINVAL`.
pub const DMA_BUF_SYNC_OVERWRITE: u64 = 1 << 3;

/// What `poll` on a dma-buf reported.
///
/// `readable` (`POLLIN`) means every writer's fence has signaled, so a reader may start;
/// `writable` (`POLLOUT`) means every fence, readers' and writers', has signaled, so a
/// writer may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Readiness {
    /// No unsignaled write fence is attached (`POLLIN`).
    pub readable: bool,
    /// No unsignaled fence at all is attached (`POLLOUT`).
    pub writable: bool,
}

/// The state of one fence, as `struct sync_fence_info.status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceStatus {
    /// Not signaled yet (`0`).
    Active,
    /// Signaled without error (`1`).
    Signaled,
    /// Signaled with an error; the value is the negative errno the driver set (for
    /// example `-ETIMEDOUT`).
    Error(i32),
}

impl FenceStatus {
    /// Decodes the kernel's status integer: `0` active, `1` signaled, negative an error.
    pub const fn from_raw(status: i32) -> Self {
        match status {
            0 => FenceStatus::Active,
            s if s < 0 => FenceStatus::Error(s),
            _ => FenceStatus::Signaled,
        }
    }

    /// Whether the fence has signaled (with or without an error).
    pub const fn is_signaled(self) -> bool {
        !matches!(self, FenceStatus::Active)
    }
}

/// One fence inside a sync file (`struct sync_fence_info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceInfo {
    /// The name of the fence's timeline (`obj_name`).
    pub obj_name: String,
    /// The name of the driver that owns the fence (`driver_name`).
    pub driver_name: String,
    /// Active, signaled or failed.
    pub status: FenceStatus,
    /// When the fence signaled, in nanoseconds of the monotonic clock; `None` while it is
    /// active (the kernel reports 0).
    pub timestamp_ns: Option<u64>,
}

/// What `SYNC_IOC_FILE_INFO` reports about a sync file (`struct sync_file_info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncFileInfo {
    /// The sync file's name (given at merge, or made up by the kernel).
    pub name: String,
    /// Signaled only when every fence has signaled; an error if one failed.
    pub status: FenceStatus,
    /// The individual fences, containers (arrays, chains) unwrapped.
    pub fences: Vec<FenceInfo>,
}

impl SyncFileInfo {
    /// How many of the fences have this status.
    pub fn count_with_status(&self, status: FenceStatus) -> usize {
        self.fences.iter().filter(|f| f.status == status).count()
    }
}

/// The outcome of waiting on a sync file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStatus {
    /// Every fence has signaled (check [`SyncFileInfo::status`] for an error).
    Signaled,
    /// The timeout passed first.
    TimedOut,
}

/// An absolute time on the clock fences use (`CLOCK_MONOTONIC` on Linux, the simulation's
/// clock in the simulation), in nanoseconds. Used for `SYNC_IOC_SET_DEADLINE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MonotonicTime(u64);

impl MonotonicTime {
    /// The time `ns` nanoseconds after the clock's origin.
    pub const fn from_nanos(ns: u64) -> Self {
        MonotonicTime(ns)
    }

    /// Nanoseconds since the clock's origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// This time plus `d`, or `None` on overflow.
    pub fn checked_add(self, d: Duration) -> Option<Self> {
        let d = u64::try_from(d.as_nanos()).ok()?;
        self.0.checked_add(d).map(MonotonicTime)
    }
}

/// Flags of the dma-buf fd a heap hands out (`dma_heap_allocation_data.fd_flags`): an
/// access mode and `O_CLOEXEC`. The kernel refuses any other bit with `EINVAL`
/// (`DMA_HEAP_VALID_FD_FLAGS`, include/uapi/linux/dma-heap.h).
///
/// The values are those of the generic `fcntl.h` (every architecture but alpha, parisc
/// and sparc, whose `O_CLOEXEC` differs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FdFlags(u32);

impl FdFlags {
    /// `O_RDONLY`: the buffer can be mapped for reading only.
    pub const RDONLY: FdFlags = FdFlags(0);
    /// `O_WRONLY`: the buffer cannot be mapped at all (`mmap` needs read access).
    pub const WRONLY: FdFlags = FdFlags(0o1);
    /// `O_RDWR`.
    pub const RDWR: FdFlags = FdFlags(0o2);
    /// `O_ACCMODE`: the bits of the access mode.
    pub const ACCMODE: FdFlags = FdFlags(0o3);
    /// `O_CLOEXEC`: the fd is closed across `exec`, so buffers do not leak into other
    /// programs.
    pub const CLOEXEC: FdFlags = FdFlags(0o2000000);
    /// `DMA_HEAP_VALID_FD_FLAGS` = `O_CLOEXEC | O_ACCMODE`.
    pub const VALID: FdFlags = FdFlags(Self::CLOEXEC.0 | Self::ACCMODE.0);

    /// What [`crate::Heap::allocate`] asks for: `O_RDWR | O_CLOEXEC`.
    pub const DEFAULT: FdFlags = FdFlags(Self::RDWR.0 | Self::CLOEXEC.0);

    /// Flags with exactly these bits, valid or not (validation refuses the others).
    pub const fn from_bits_retain(bits: u32) -> FdFlags {
        FdFlags(bits)
    }

    /// The bits as `dma_heap_allocation_data.fd_flags` holds them.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether an fd with these flags can be read (`O_RDONLY` or `O_RDWR`), so mapped.
    pub const fn readable(self) -> bool {
        self.0 & Self::ACCMODE.0 != Self::WRONLY.0
    }

    /// Whether an fd with these flags can be written (`O_WRONLY` or `O_RDWR`).
    pub const fn writable(self) -> bool {
        matches!(self.0 & Self::ACCMODE.0, 0o1 | 0o2)
    }
}

impl BitOr for FdFlags {
    type Output = FdFlags;

    fn bitor(self, rhs: FdFlags) -> FdFlags {
        FdFlags(self.0 | rhs.0)
    }
}

/// Heap-specific allocation flags (`dma_heap_allocation_data.heap_flags`). No heap defines
/// any, so the kernel refuses every bit with `EINVAL` (`DMA_HEAP_VALID_HEAP_FLAGS` is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HeapFlags(u64);

impl HeapFlags {
    /// No flag: the only value the kernel accepts.
    pub const NONE: HeapFlags = HeapFlags(0);
    /// `DMA_HEAP_VALID_HEAP_FLAGS`: none.
    pub const VALID: HeapFlags = HeapFlags(0);

    /// Flags with exactly these bits (validation refuses them all).
    pub const fn from_bits_retain(bits: u64) -> HeapFlags {
        HeapFlags(bits)
    }

    /// The bits as `dma_heap_allocation_data.heap_flags` holds them.
    pub const fn bits(self) -> u64 {
        self.0
    }
}

/// The seals of a memfd (`F_GET_SEALS`, `F_ADD_SEALS`; include/uapi/linux/fcntl.h). A
/// seal, once added, stays; udmabuf wants `F_SEAL_SHRINK` and refuses the write seals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Seals(u32);

impl Seals {
    /// No seal.
    pub const NONE: Seals = Seals(0);
    /// `F_SEAL_SEAL`: no more seals can be added (every memfd made without
    /// `MFD_ALLOW_SEALING` has it).
    pub const SEAL: Seals = Seals(0x0001);
    /// `F_SEAL_SHRINK`: the file cannot shrink, so pinned pages cannot vanish.
    pub const SHRINK: Seals = Seals(0x0002);
    /// `F_SEAL_GROW`: the file cannot grow.
    pub const GROW: Seals = Seals(0x0004);
    /// `F_SEAL_WRITE`: the content cannot change any more.
    pub const WRITE: Seals = Seals(0x0008);
    /// `F_SEAL_FUTURE_WRITE`: no new writable mapping or write; existing mappings may
    /// still write.
    pub const FUTURE_WRITE: Seals = Seals(0x0010);
    /// `F_SEAL_EXEC`: the exec bits cannot change.
    pub const EXEC: Seals = Seals(0x0020);

    /// Seals with exactly these bits.
    pub const fn from_bits_retain(bits: u32) -> Seals {
        Seals(bits)
    }

    /// The bits as `F_GET_SEALS` returns them and `F_ADD_SEALS` takes them.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every seal of `other` is set.
    pub const fn contains(self, other: Seals) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any seal of `other` is set.
    pub const fn intersects(self, other: Seals) -> bool {
        self.0 & other.0 != 0
    }
}

impl BitOr for Seals {
    type Output = Seals;

    fn bitor(self, rhs: Seals) -> Seals {
        Seals(self.0 | rhs.0)
    }
}

impl BitOrAssign for Seals {
    fn bitor_assign(&mut self, rhs: Seals) {
        self.0 |= rhs.0;
    }
}

/// The size of a huge page of a hugetlb memfd (`MFD_HUGETLB` with the default huge page
/// size of x86-64 and of arm64 with 4 KiB pages): hugetlbfs sizes files in whole huge pages
/// (`hugetlbfs_setattr` refuses anything else with `EINVAL`).
pub const HUGETLB_PAGE_SIZE: u64 = 2 << 20;

/// How a memfd is made (`memfd_create`'s flags beyond `MFD_CLOEXEC | MFD_ALLOW_SEALING`,
/// which are always set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MemfdKind {
    /// Ordinary shmem pages.
    #[default]
    Shmem,
    /// `MFD_HUGETLB`: huge pages of [`HUGETLB_PAGE_SIZE`], from the pool reserved in
    /// `/proc/sys/vm/nr_hugepages`. The file's size is whole huge pages.
    Hugetlb,
}

impl MemfdKind {
    /// The granule the file is sized in: the page size, or a huge page.
    pub const fn granule(self, page_size: u64) -> u64 {
        match self {
            MemfdKind::Shmem => page_size,
            MemfdKind::Hugetlb => HUGETLB_PAGE_SIZE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_flags_round_trip_the_uapi_bits() {
        for f in [SyncFlags::Read, SyncFlags::Write, SyncFlags::ReadWrite] {
            assert_eq!(SyncFlags::from_bits(f.bits()), Some(f));
        }
        assert_eq!(SyncFlags::Read.bits(), 1);
        assert_eq!(SyncFlags::Write.bits(), 2);
        assert_eq!(SyncFlags::ReadWrite.bits(), 3);
        // What the kernel refuses with EINVAL has no value here.
        assert_eq!(SyncFlags::from_bits(0), None);
        assert_eq!(SyncFlags::from_bits(4), None);
        assert_eq!(SyncFlags::from_bits(7), None);
        assert!(SyncFlags::ReadWrite.reads() && SyncFlags::ReadWrite.writes());
        assert!(!SyncFlags::Read.writes() && !SyncFlags::Write.reads());
    }

    #[test]
    fn fence_status_decodes_the_kernel_integer() {
        assert_eq!(FenceStatus::from_raw(0), FenceStatus::Active);
        assert_eq!(FenceStatus::from_raw(1), FenceStatus::Signaled);
        assert_eq!(FenceStatus::from_raw(-110), FenceStatus::Error(-110));
        assert!(!FenceStatus::Active.is_signaled());
        assert!(FenceStatus::Error(-5).is_signaled());
    }

    #[test]
    fn fd_flags_follow_the_dma_heap_header() {
        // DMA_HEAP_VALID_FD_FLAGS = O_CLOEXEC | O_ACCMODE, with the generic fcntl.h values.
        assert_eq!(FdFlags::VALID.bits(), 0o2000003);
        assert_eq!(FdFlags::DEFAULT.bits() & !FdFlags::VALID.bits(), 0);
        assert!(FdFlags::DEFAULT.readable() && FdFlags::DEFAULT.writable());
        assert!(FdFlags::RDONLY.readable() && !FdFlags::RDONLY.writable());
        assert!(!FdFlags::WRONLY.readable() && FdFlags::WRONLY.writable());
        assert_eq!(HeapFlags::VALID.bits(), 0);
    }

    #[test]
    fn seals_combine_like_the_fcntl_bits() {
        let s = Seals::SHRINK | Seals::GROW;
        assert!(s.contains(Seals::SHRINK) && !s.contains(Seals::SHRINK | Seals::WRITE));
        assert!(s.intersects(Seals::GROW | Seals::WRITE) && !s.intersects(Seals::WRITE));
        assert_eq!((Seals::WRITE | Seals::FUTURE_WRITE).bits(), 0x18);
        assert_eq!(MemfdKind::Hugetlb.granule(4096), 2 << 20);
        assert_eq!(MemfdKind::Shmem.granule(4096), 4096);
    }

    #[test]
    fn monotonic_time_adds_without_wrapping() {
        let t = MonotonicTime::from_nanos(5);
        assert_eq!(t.checked_add(Duration::from_nanos(7)).map(MonotonicTime::as_nanos), Some(12));
        assert_eq!(MonotonicTime::from_nanos(u64::MAX).checked_add(Duration::from_nanos(1)), None);
    }
}
