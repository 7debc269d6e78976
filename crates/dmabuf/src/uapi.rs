//! The user-space face of DMA-buf, as traits that every backend implements.
//!
//! A Linux program shares a buffer in five moves: allocate it from a dma-buf heap
//! (`/dev/dma_heap/<name>`, `DMA_HEAP_IOCTL_ALLOC`), map it (`mmap`), bracket every CPU
//! access to the mapping with `DMA_BUF_IOCTL_SYNC` (`START` then `END`, with the
//! `READ`/`WRITE` flags of the access), hand fences around as sync files
//! (`DMA_BUF_IOCTL_EXPORT_SYNC_FILE` / `IMPORT_SYNC_FILE`, `SYNC_IOC_MERGE`, `poll`), and
//! wait for readiness with `poll` on the dma-buf. The last two are implicit and explicit
//! synchronisation; the bracket is cache maintenance (see the coherency model, section 6).
//!
//! These traits describe exactly that surface and nothing else, so that one program can be
//! written once and run against two backends:
//! - the real kernel (crate `dmabuf-linux`, one file descriptor per object);
//! - the simulated framework of this crate ([`crate::user`]: a simulated non-coherent
//!   platform, where a missing bracket shows up as a stale read instead of silently
//!   working on x86).
//!
//! The mapping is the part that makes correct use the only easy one: a [`Mapping`] hands
//! out its bytes only through guards ([`Mapping::read`], [`Mapping::write`],
//! [`Mapping::read_write`] and their `*_range` forms). Creating a guard is the `SYNC_START`,
//! dropping it (or [`CpuAccess::end`]) is the `SYNC_END` with the same flags. Write guards
//! borrow the mapping mutably, so two writers (or a writer and a reader) cannot overlap,
//! and there is no way to reach the bytes without a bracket around the access.
//!
//! Everything here is plain data and traits: no I/O, no file descriptors.

use std::ops::{Deref, DerefMut, Range};
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

/// The set of dma-buf heaps a system offers (Linux: the entries of `/dev/dma_heap`).
///
/// Heap names change between kernels (`system`; `default_cma_region`, formerly
/// `linux,cma` or `reserved`), so programs should look them up rather than hard-code a
/// path.
pub trait Heaps {
    /// A heap opened from this set.
    type Heap: Heap;
    /// The backend's error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The names of the heaps that exist, sorted.
    fn names(&self) -> Result<Vec<String>, Self::Error>;

    /// Opens the heap called `name`; the error names the heaps that do exist when it is
    /// missing.
    fn open(&self, name: &str) -> Result<Self::Heap, Self::Error>;
}

/// One dma-buf heap: an allocator of dma-bufs (`DMA_HEAP_IOCTL_ALLOC`).
pub trait Heap {
    /// The buffers this heap hands out.
    type Buffer: DmaBuf;

    /// The heap's name (`system`, `default_cma_region`, ...).
    fn name(&self) -> &str;

    /// Allocates a buffer of at least `len` bytes (heaps round up to whole pages), zeroed,
    /// readable and writable.
    fn allocate(&self, len: usize) -> Result<Self::Buffer, <Self::Buffer as DmaBuf>::Error>;
}

/// A dma-buf: a buffer shared between devices and processes, with its reservation object
/// (the fences of its readers and writers).
pub trait DmaBuf {
    /// The backend's error type.
    type Error: std::error::Error + Send + Sync + 'static;
    /// The sync files this backend hands out and accepts.
    type SyncFile: SyncFile<Error = Self::Error>;
    /// A CPU mapping of the buffer, borrowed from it; its bytes are reachable only through
    /// bracketing guards.
    type Mapping<'a>: Mapping<Error = Self::Error>
    where
        Self: 'a;

    /// The buffer's size in bytes.
    fn size(&self) -> usize;

    /// Names the buffer for debugging (`DMA_BUF_SET_NAME`; shown in
    /// `/proc/<pid>/fdinfo` and debugfs). At most `DMA_BUF_NAME_LEN - 1` bytes, no NUL.
    fn set_name(&self, name: &str) -> Result<(), Self::Error>;

    /// Maps the whole buffer for the CPU. A buffer can have one live mapping per process:
    /// a second one would let two write guards alias the same bytes.
    fn mmap(&self) -> Result<Self::Mapping<'_>, Self::Error>;

    /// Snapshots the buffer's current fences as a sync file
    /// (`DMA_BUF_IOCTL_EXPORT_SYNC_FILE`): with [`SyncFlags::Read`] the writers' fences
    /// (what a reader must wait for), otherwise all fences (what a writer must wait for).
    fn export_sync_file(&self, flags: SyncFlags) -> Result<Self::SyncFile, Self::Error>;

    /// Adds the fences of `sync_file` to the buffer (`DMA_BUF_IOCTL_IMPORT_SYNC_FILE`), as
    /// a writer's fence when `flags` writes, else as a reader's fence. Implicitly
    /// synchronised users of the buffer then wait for them.
    fn import_sync_file(&self, flags: SyncFlags, sync_file: &Self::SyncFile) -> Result<(), Self::Error>;

    /// Waits until the buffer is ready for `interest` (`poll`: [`SyncFlags::Read`] asks
    /// for `POLLIN`, [`SyncFlags::Write`] for `POLLOUT`, both for either) or the timeout
    /// passes (`None`: no timeout, `Some(ZERO)`: just look), and reports what is ready.
    fn poll(&self, interest: SyncFlags, timeout: Option<Duration>) -> Result<Readiness, Self::Error>;
}

/// The end of a CPU-access bracket: what every guard can do besides giving access to its
/// bytes.
pub trait CpuAccess {
    /// The backend's error type.
    type Error;

    /// The flags of this access (`READ`, `WRITE` or both).
    fn flags(&self) -> SyncFlags;

    /// Ends the access now (`DMA_BUF_IOCTL_SYNC` with `DMA_BUF_SYNC_END`) and reports its
    /// result. Dropping the guard ends it too; an error there is kept and returned by the
    /// next guard the mapping hands out.
    fn end(self) -> Result<(), Self::Error>;
}

/// A CPU mapping of a dma-buf. Its bytes are reachable only through guards: creating a
/// guard begins CPU access (`SYNC_START`, waiting for the fences the access must wait for),
/// dropping it ends it (`SYNC_END`). Write guards borrow the mapping mutably, so they
/// exclude every other guard.
///
/// The `*_range` forms give a slice of the buffer; the bracket still covers the whole
/// buffer on Linux (the ioctl has no range) but a backend may use the range to limit cache
/// maintenance.
pub trait Mapping {
    /// The backend's error type.
    type Error;
    /// Shared read access to (part of) the mapping, `DMA_BUF_SYNC_READ`.
    type ReadGuard<'g>: Deref<Target = [u8]> + CpuAccess<Error = Self::Error>
    where
        Self: 'g;
    /// Exclusive access to (part of) the mapping, `DMA_BUF_SYNC_WRITE` or `_RW`.
    type WriteGuard<'g>: DerefMut<Target = [u8]> + CpuAccess<Error = Self::Error>
    where
        Self: 'g;

    /// The mapping's length in bytes (the buffer's size).
    fn len(&self) -> usize;

    /// Whether the mapping has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Begins a read of the bytes in `range`.
    fn read_range(&self, range: Range<usize>) -> Result<Self::ReadGuard<'_>, Self::Error>;

    /// Begins a write of the bytes in `range` (their previous content is not needed).
    fn write_range(&mut self, range: Range<usize>) -> Result<Self::WriteGuard<'_>, Self::Error>;

    /// Begins a read-modify-write of the bytes in `range`.
    fn read_write_range(&mut self, range: Range<usize>) -> Result<Self::WriteGuard<'_>, Self::Error>;

    /// Begins a read of the whole mapping.
    fn read(&self) -> Result<Self::ReadGuard<'_>, Self::Error> {
        self.read_range(0..self.len())
    }

    /// Begins a write of the whole mapping.
    fn write(&mut self) -> Result<Self::WriteGuard<'_>, Self::Error> {
        let len = self.len();
        self.write_range(0..len)
    }

    /// Begins a read-modify-write of the whole mapping.
    fn read_write(&mut self) -> Result<Self::WriteGuard<'_>, Self::Error> {
        let len = self.len();
        self.read_write_range(0..len)
    }
}

/// A sync file: a handle on a set of fences that user space can pass around, merge, inspect
/// and wait for.
pub trait SyncFile: Sized {
    /// The backend's error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// A new sync file that signals when both this one and `other` have
    /// (`SYNC_IOC_MERGE`). Fences of one timeline collapse to the later one. `name` is at
    /// most `DMA_BUF_NAME_LEN - 1` bytes.
    fn merge(&self, name: &str, other: &Self) -> Result<Self, Self::Error>;

    /// The sync file's name, status and fences (`SYNC_IOC_FILE_INFO`).
    fn info(&self) -> Result<SyncFileInfo, Self::Error>;

    /// Waits until every fence has signaled, or the timeout passes (`None`: no timeout,
    /// `Some(ZERO)`: just look).
    fn wait(&self, timeout: Option<Duration>) -> Result<WaitStatus, Self::Error>;

    /// Tells the fences' drivers that someone will wait for them at `deadline`
    /// (`SYNC_IOC_SET_DEADLINE`), a hint to raise clocks. Drivers without deadline support
    /// ignore it.
    fn set_deadline(&self, deadline: MonotonicTime) -> Result<(), Self::Error>;
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
    fn monotonic_time_adds_without_wrapping() {
        let t = MonotonicTime::from_nanos(5);
        assert_eq!(t.checked_add(Duration::from_nanos(7)).map(MonotonicTime::as_nanos), Some(12));
        assert_eq!(MonotonicTime::from_nanos(u64::MAX).checked_add(Duration::from_nanos(1)), None);
    }
}
