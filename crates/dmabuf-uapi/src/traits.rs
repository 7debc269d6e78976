//! The user API as traits, implemented by every backend: a program generic over them runs
//! unchanged on the simulated framework and on a real kernel.

use std::ops::{Deref, DerefMut, Range};
use std::time::Duration;

use crate::data::{
    FdFlags, HeapFlags, MemfdKind, MonotonicTime, Readiness, Seals, SyncFileInfo, SyncFlags, WaitStatus,
};
use crate::error::Result;
use crate::udmabuf::{UdmabufItem, UdmabufLimits};

/// The set of dma-buf heaps a system offers (Linux: the entries of `/dev/dma_heap`).
///
/// Heap names change between kernels (`system`; `default_cma_region`, formerly
/// `linux,cma` or `reserved`), so programs should look them up rather than hard-code a
/// path.
pub trait Heaps {
    /// A heap opened from this set.
    type Heap: Heap;

    /// The names of the heaps that exist, sorted.
    fn names(&self) -> Result<Vec<String>>;

    /// Opens the heap called `name`; the error names the heaps that do exist when it is
    /// missing.
    fn open(&self, name: &str) -> Result<Self::Heap>;
}

/// One dma-buf heap: an allocator of dma-bufs (`DMA_HEAP_IOCTL_ALLOC`).
pub trait Heap {
    /// The buffers this heap hands out.
    type Buffer: DmaBuf;

    /// The heap's name (`system`, `default_cma_region`, ...).
    fn name(&self) -> &str;

    /// Allocates a buffer of at least `len` bytes (heaps round up to whole pages), zeroed,
    /// readable and writable (`O_RDWR | O_CLOEXEC`).
    fn allocate(&self, len: usize) -> Result<Self::Buffer> {
        self.allocate_with(len, FdFlags::DEFAULT, HeapFlags::NONE)
    }

    /// Allocates with the kernel's `fd_flags` and `heap_flags` (`DMA_HEAP_IOCTL_ALLOC` as
    /// `dma_heap_ioctl_allocate` checks it: [`crate::validate::HeapAllocation::check`]).
    /// An `O_RDONLY` buffer maps read-only, an `O_WRONLY` one not at all.
    fn allocate_with(&self, len: usize, fd_flags: FdFlags, heap_flags: HeapFlags) -> Result<Self::Buffer>;
}

/// A dma-buf: a buffer shared between devices and processes, with its reservation object
/// (the fences of its readers and writers).
pub trait DmaBuf {
    /// The sync files this backend hands out and accepts.
    type SyncFile: SyncFile;
    /// A CPU mapping of the buffer, borrowed from it; its bytes are reachable only through
    /// bracketing guards.
    type Mapping<'a>: Mapping
    where
        Self: 'a;

    /// The buffer's size in bytes.
    fn size(&self) -> usize;

    /// Names the buffer for debugging (`DMA_BUF_SET_NAME`; shown in
    /// `/proc/<pid>/fdinfo` and debugfs). At most `DMA_BUF_NAME_LEN - 1` bytes, no NUL.
    fn set_name(&self, name: &str) -> Result<()>;

    /// Maps the whole buffer for the CPU. A buffer can have one live mapping per process:
    /// a second one would let two write guards alias the same bytes.
    fn mmap(&self) -> Result<Self::Mapping<'_>> {
        self.mmap_range(0, self.size())
    }

    /// Maps `len` bytes from `offset` (whole pages) for the CPU, as `mmap` of the fd with
    /// that offset; a guard's range is then relative to `offset`. Pages past the end of the
    /// buffer are refused as `dma_buf_mmap_internal` refuses them
    /// ([`crate::validate::mmap_window`]). One live mapping per buffer, as for
    /// [`DmaBuf::mmap`].
    fn mmap_range(&self, offset: usize, len: usize) -> Result<Self::Mapping<'_>>;

    /// Snapshots the buffer's current fences as a sync file
    /// (`DMA_BUF_IOCTL_EXPORT_SYNC_FILE`): with [`SyncFlags::Read`] the writers' fences
    /// (what a reader must wait for), otherwise all fences (what a writer must wait for).
    fn export_sync_file(&self, flags: SyncFlags) -> Result<Self::SyncFile>;

    /// Adds the fences of `sync_file` to the buffer (`DMA_BUF_IOCTL_IMPORT_SYNC_FILE`), as
    /// a writer's fence when `flags` writes, else as a reader's fence. Implicitly
    /// synchronised users of the buffer then wait for them.
    fn import_sync_file(&self, flags: SyncFlags, sync_file: &Self::SyncFile) -> Result<()>;

    /// Waits until the buffer is ready for `interest` (`poll`: [`SyncFlags::Read`] asks
    /// for `POLLIN`, [`SyncFlags::Write`] for `POLLOUT`, both for either) or the timeout
    /// passes (`None`: no timeout, `Some(ZERO)`: just look), and reports what is ready.
    fn poll(&self, interest: SyncFlags, timeout: Option<Duration>) -> Result<Readiness>;
}

/// The end of a CPU-access bracket: what every guard can do besides giving access to its
/// bytes.
pub trait CpuAccess {
    /// The flags of this access (`READ`, `WRITE` or both).
    fn flags(&self) -> SyncFlags;

    /// Ends the access now (`DMA_BUF_IOCTL_SYNC` with `DMA_BUF_SYNC_END`) and reports its
    /// result. Dropping the guard ends it too; an error there is kept and returned by the
    /// next guard the mapping hands out.
    fn end(self) -> Result<()>;
}

/// A CPU mapping of a dma-buf. Its bytes are reachable only through guards: creating a
/// guard begins CPU access (`SYNC_START`, waiting for the fences the access must wait for),
/// dropping it ends it (`SYNC_END`). Write guards borrow the mapping mutably, so they
/// exclude every other guard.
///
/// The `*_range` forms give a slice of the buffer, bracketed with
/// `DMA_BUF_IOCTL_SYNC_PARTIAL` where the kernel has it (vendor kernels) so that only those
/// bytes are maintained, and with `DMA_BUF_IOCTL_SYNC` on the whole buffer where it
/// answers `ENOTTY` (upstream).
pub trait Mapping {
    /// Shared read access to (part of) the mapping, `DMA_BUF_SYNC_READ`.
    type ReadGuard<'g>: Deref<Target = [u8]> + CpuAccess
    where
        Self: 'g;
    /// Exclusive access to (part of) the mapping, `DMA_BUF_SYNC_WRITE` or `_RW`.
    type WriteGuard<'g>: DerefMut<Target = [u8]> + CpuAccess
    where
        Self: 'g;

    /// The mapping's length in bytes (the buffer's size, for a whole mapping).
    fn len(&self) -> usize;

    /// Whether the mapping has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Begins a read of the bytes in `range`.
    fn read_range(&self, range: Range<usize>) -> Result<Self::ReadGuard<'_>>;

    /// Begins a write of the bytes in `range` (the guard's bytes start as the buffer's).
    fn write_range(&mut self, range: Range<usize>) -> Result<Self::WriteGuard<'_>>;

    /// Begins a read-modify-write of the bytes in `range`.
    fn read_write_range(&mut self, range: Range<usize>) -> Result<Self::WriteGuard<'_>>;

    /// Replaces the bytes at `offset` with `data`, every one of them, in one bracket that
    /// declares so (`DMA_BUF_SYNC_OVERWRITE`, proposed), letting the kernel skip making
    /// their old contents visible first. This default is a plain write bracket.
    fn overwrite(&mut self, offset: usize, data: &[u8]) -> Result<()> {
        let end = offset.saturating_add(data.len());
        let mut guard = self.write_range(offset..end)?;
        guard.copy_from_slice(data);
        guard.end()
    }

    /// Begins a read of the whole mapping.
    fn read(&self) -> Result<Self::ReadGuard<'_>> {
        self.read_range(0..self.len())
    }

    /// Begins a write of the whole mapping.
    fn write(&mut self) -> Result<Self::WriteGuard<'_>> {
        let len = self.len();
        self.write_range(0..len)
    }

    /// Begins a read-modify-write of the whole mapping.
    fn read_write(&mut self) -> Result<Self::WriteGuard<'_>> {
        let len = self.len();
        self.read_write_range(0..len)
    }
}

/// A sync file: a handle on a set of fences that user space can pass around, merge, inspect
/// and wait for.
pub trait SyncFile: Sized {
    /// A new sync file that signals when both this one and `other` have
    /// (`SYNC_IOC_MERGE`). Fences of one timeline collapse to the later one. `name` is at
    /// most `DMA_BUF_NAME_LEN - 1` bytes.
    fn merge(&self, name: &str, other: &Self) -> Result<Self>;

    /// The sync file's name, status and fences (`SYNC_IOC_FILE_INFO`).
    fn info(&self) -> Result<SyncFileInfo>;

    /// Waits until every fence has signaled, or the timeout passes (`None`: no timeout,
    /// `Some(ZERO)`: just look).
    fn wait(&self, timeout: Option<Duration>) -> Result<WaitStatus>;

    /// Tells the fences' drivers that someone will wait for them at `deadline`
    /// (`SYNC_IOC_SET_DEADLINE`), a hint to raise clocks. Drivers without deadline support
    /// ignore it.
    fn set_deadline(&self, deadline: MonotonicTime) -> Result<()>;
}

/// A file whose pages a udmabuf takes: normally a memfd (`memfd_create`, shmem or
/// hugetlbfs), sealed against shrinking.
pub trait Memfd {
    /// The file's size in bytes (`fstat`).
    fn size(&self) -> Result<u64>;

    /// The seals (`F_GET_SEALS`); `None` when the file is no memfd (neither shmem nor
    /// hugetlbfs, so the kernel has no seals for it).
    fn seals(&self) -> Result<Option<Seals>>;

    /// Adds seals (`F_ADD_SEALS`); they stay for the file's life.
    fn add_seals(&self, seals: Seals) -> Result<()>;

    /// Reads `buf.len()` bytes at `offset` through the file (`pread`), not through any
    /// mapping.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// Writes `data` at `offset` through the file (`pwrite`); a write seal refuses it.
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()>;
}

/// The udmabuf device (`/dev/udmabuf`): dma-bufs made of the pages of memfds, which the
/// buffer and the file then share.
pub trait Udmabuf {
    /// The files this backend makes udmabufs of.
    type Memfd: Memfd;
    /// The buffers it hands out.
    type Buffer: DmaBuf;

    /// The page size items are aligned to.
    fn page_size(&self) -> u64;

    /// The driver's limits the checks use.
    fn limits(&self) -> UdmabufLimits;

    /// Makes a memfd (`memfd_create` with `MFD_CLOEXEC | MFD_ALLOW_SEALING`, and
    /// `MFD_HUGETLB` for [`MemfdKind::Hugetlb`]) of `size` bytes rounded up to the kind's
    /// granule (whole pages, or whole huge pages as hugetlbfs requires), zeroed, with
    /// `seals` added: [`Seals::SHRINK`] makes it ready for udmabuf.
    fn create_memfd(&self, name: &str, size: u64, kind: MemfdKind, seals: Seals) -> Result<Self::Memfd>;

    /// A dma-buf of `size` bytes of `memfd` from `offset` (`UDMABUF_CREATE`), after the
    /// kernel's checks ([`UdmabufLimits::check`]).
    fn create(&self, memfd: &Self::Memfd, offset: u64, size: u64) -> Result<Self::Buffer>;

    /// A dma-buf made of the items' ranges, in order (`UDMABUF_CREATE_LIST`), after the
    /// kernel's checks.
    fn create_list(&self, items: &[UdmabufItem<'_, Self::Memfd>]) -> Result<Self::Buffer>;
}
