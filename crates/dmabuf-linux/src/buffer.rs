//! [`DmaBuf`]: a dma-buf fd, and [`LinuxMap`], the kernel side of its guarded
//! [`Mapping`]: `mmap`, `DMA_BUF_IOCTL_SYNC` and the mapped bytes themselves.

use std::ffi::CString;
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use dmabuf_uapi::mapping::{self, CpuMapping, MapRegistry};
use dmabuf_uapi::{Errno, Error, FdFlags, Op, Readiness, Result, SyncFlags, SyncPhase, traits, validate};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::OFlags;
use rustix::mm::{MapFlags, ProtFlags};

use crate::sync_file::SyncFile;
use crate::sys::{self, errno};

/// A guarded CPU mapping of a [`DmaBuf`] (unmapped on drop): its bytes are reachable only
/// through guards that issue `DMA_BUF_SYNC_START` when made and `DMA_BUF_SYNC_END` when
/// dropped (both retried on `EINTR`/`EAGAIN`): `DMA_BUF_IOCTL_SYNC_PARTIAL` for a guard
/// over part of the buffer where the kernel has it, `DMA_BUF_IOCTL_SYNC` otherwise (the
/// mapping falls back on the first `ENOTTY`, as Rockchip's MPP does; see
/// [`dmabuf_uapi::mapping`]).
///
/// `START` also waits for the fences the access must wait for (implicit sync), so devices
/// that honour the buffer's fences do not touch the bytes while a guard is alive. Another
/// process writing to the same buffer through its own mapping without fences is outside
/// what any type here can prevent.
pub type Mapping<'buf> = mapping::Mapping<LinuxMap<'buf>>;
/// Read access to (part of) a [`Mapping`].
pub type ReadGuard<'m, 'buf> = mapping::ReadGuard<'m, LinuxMap<'buf>>;
/// Exclusive access to (part of) a [`Mapping`].
pub type WriteGuard<'m, 'buf> = mapping::WriteGuard<'m, LinuxMap<'buf>>;

/// A dma-buf, owning its fd (closed on drop).
///
/// Made by a heap ([`crate::Heap::allocate`]), by udmabuf ([`crate::Udmabuf`]), by a DRM
/// exporter ([`crate::vgem::Vgem::export`]), or from a foreign fd with
/// [`DmaBuf::from_owned`] / [`DmaBuf::import`], which check that the fd really is a
/// dma-buf.
#[derive(Debug)]
pub struct DmaBuf {
    fd: OwnedFd,
    size: usize,
    dev: u64,
    ino: u64,
    access: FdFlags,
}

/// What `/proc/self/fdinfo/<fd>` says about a dma-buf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdInfo {
    /// `size:`.
    pub size: u64,
    /// `exp_name:`, the exporter (`system`, `udmabuf`, `drm`, ...).
    pub exp_name: String,
    /// `name:`, set by [`DmaBuf::set_name`]; `None` before.
    pub name: Option<String>,
}

/// The dma-bufs this process has mapped, by (device, inode): the same for every fd of a
/// buffer.
static MAPPED: MapRegistry = MapRegistry::new();

/// The page size the kernel maps and aligns in.
pub fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

/// Checks that `fd` is on the dma-buf pseudo file system.
fn check_dma_buf(fd: BorrowedFd<'_>) -> Result<()> {
    let fs = rustix::fs::fstatfs(fd).map_err(|e| Error::Os { op: Op::Fstatfs, errno: errno(e) })?;
    // `f_type` is a signed word on some targets; the magic is a small positive value.
    #[allow(clippy::unnecessary_cast)]
    let magic = fs.f_type as u64;
    if magic != sys::DMA_BUF_MAGIC {
        return Err(Error::NotDmaBuf { magic });
    }
    Ok(())
}

impl DmaBuf {
    /// Takes ownership of `fd` after checking that it is a dma-buf (its file system is the
    /// dma-buf pseudo file system). On error the fd is closed.
    pub fn from_owned(fd: OwnedFd) -> Result<Self> {
        check_dma_buf(fd.as_fd())?;
        let st = rustix::fs::fstat(&fd).map_err(|e| Error::Os { op: Op::Fstat, errno: errno(e) })?;
        let fl = rustix::fs::fcntl_getfl(&fd).map_err(|e| Error::Os { op: Op::FcntlGetfl, errno: errno(e) })?;
        Ok(DmaBuf {
            size: usize::try_from(st.st_size).unwrap_or(0),
            #[allow(clippy::unnecessary_cast)]
            dev: st.st_dev as u64,
            #[allow(clippy::unnecessary_cast)]
            ino: st.st_ino as u64,
            access: FdFlags::from_bits_retain((fl & OFlags::RWMODE).bits()),
            fd,
        })
    }

    /// Checks that the borrowed `fd` is a dma-buf and takes a duplicate of it
    /// (`F_DUPFD_CLOEXEC`), leaving the caller's fd alone.
    pub fn import(fd: BorrowedFd<'_>) -> Result<Self> {
        check_dma_buf(fd)?;
        let dup = rustix::io::fcntl_dupfd_cloexec(fd, 0)
            .map_err(|e| Error::Os { op: Op::FcntlDupfdCloexec, errno: errno(e) })?;
        DmaBuf::from_owned(dup)
    }

    /// The buffer's size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The dma-buf's inode number: unique per buffer, the same in every process and for
    /// every fd of it (what `/sys/kernel/dmabuf/buffers/<ino>` names).
    pub fn inode(&self) -> u64 {
        self.ino
    }

    /// Whether the fd is open read-write (a read-only fd gives a read-only mapping).
    pub fn is_writable(&self) -> bool {
        self.access.readable() && self.access.writable()
    }

    /// Names the buffer (`DMA_BUF_SET_NAME`): at most 31 bytes, no NUL. The name shows in
    /// `/proc/<pid>/fdinfo/<fd>` and debugfs.
    pub fn set_name(&self, name: &str) -> Result<()> {
        validate::name(name)?;
        // Checked above: no interior NUL.
        let c = CString::new(name).map_err(|_| Error::NameHasNul { name: name.into() })?;
        sys::dma_buf_set_name(self.fd.as_fd(), &c).map_err(Error::os(Op::DmaBufSetName))
    }

    /// Reads `/proc/self/fdinfo/<fd>`: size, exporter and name.
    pub fn fdinfo(&self) -> Result<FdInfo> {
        let path = format!("/proc/self/fdinfo/{}", self.fd.as_raw_fd());
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Open {
            path: path.clone().into(),
            errno: e.raw_os_error().and_then(Errno::new).unwrap_or(Errno::EIO),
        })?;
        let mut info = FdInfo { size: 0, exp_name: String::new(), name: None };
        for line in text.lines() {
            if let Some((key, value)) = line.split_once(':') {
                let value = value.trim();
                match key {
                    "size" => info.size = value.parse().unwrap_or(0),
                    "exp_name" => info.exp_name = value.to_owned(),
                    "name" => info.name = Some(value.to_owned()),
                    _ => {}
                }
            }
        }
        Ok(info)
    }

    /// Maps the whole buffer (`mmap`, `MAP_SHARED`; read-only when the fd is). One live
    /// mapping per buffer per process: a second one fails with [`Error::AlreadyMapped`].
    pub fn mmap(&self) -> Result<Mapping<'_>> {
        self.mmap_range(0, self.size)
    }

    /// Maps `len` bytes from `offset` (whole pages), as `mmap` of the fd at that offset;
    /// what `dma_buf_mmap_internal` refuses is refused first, with the rule.
    pub fn mmap_range(&self, offset: usize, len: usize) -> Result<Mapping<'_>> {
        validate::mmap_window(offset as u64, len as u64, self.size as u64, page_size(), self.access)?;
        let registration = MAPPED.register((self.dev, self.ino), || format!("(inode {})", self.ino))?;
        let writable = self.is_writable();
        let prot = if writable { ProtFlags::READ | ProtFlags::WRITE } else { ProtFlags::READ };
        // SAFETY: a fresh shared mapping chosen by the kernel (null hint) overlaps nothing
        // of ours; `fd` is a dma-buf, and the window lies inside it (checked above).
        let p = unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, prot, MapFlags::SHARED, &self.fd, offset as u64) }
            .map_err(|e| Error::Os { op: Op::Mmap, errno: errno(e) })?;
        let ptr = NonNull::new(p.cast::<u8>()).ok_or(Error::Os { op: Op::Mmap, errno: Errno::EFAULT })?;
        let map = LinuxMap { fd: self.fd.as_fd(), ptr, offset, len, size: self.size, writable };
        Ok(mapping::Mapping::new(map, registration))
    }

    /// Snapshots the buffer's fences as a sync file (`DMA_BUF_IOCTL_EXPORT_SYNC_FILE`):
    /// `Read` gives the writers' fences, `Write`/`ReadWrite` all fences. A buffer with no
    /// fences gives an already signaled sync file.
    pub fn export_sync_file(&self, flags: SyncFlags) -> Result<SyncFile> {
        let fd = sys::dma_buf_export_sync_file(self.fd.as_fd(), flags.bits())
            .map_err(Error::os(Op::DmaBufIoctlExportSyncFile))?;
        Ok(SyncFile::from_kernel(fd))
    }

    /// Adds the sync file's fences to the buffer (`DMA_BUF_IOCTL_IMPORT_SYNC_FILE`), as a
    /// writer's fence if `flags` writes, else as a reader's.
    pub fn import_sync_file(&self, flags: SyncFlags, sync_file: &SyncFile) -> Result<()> {
        sys::dma_buf_import_sync_file(self.fd.as_fd(), flags.bits(), sync_file.as_fd())
            .map_err(Error::os(Op::DmaBufIoctlImportSyncFile))
    }

    /// Waits (`poll`) until the buffer is ready for `interest` or `timeout` passes
    /// (`None`: forever, `Some(ZERO)`: just look). `Read` waits for `POLLIN` (writers
    /// done), `Write` for `POLLOUT` (everyone done), `ReadWrite` for either. Writable
    /// implies readable, and the report says so; a `false` field is "not known to be
    /// ready".
    pub fn poll(&self, interest: SyncFlags, timeout: Option<Duration>) -> Result<Readiness> {
        let events = match interest {
            SyncFlags::Read => PollFlags::IN,
            SyncFlags::Write => PollFlags::OUT,
            SyncFlags::ReadWrite => PollFlags::IN | PollFlags::OUT,
        };
        let revents = poll_one(self.fd.as_fd(), events, timeout)?;
        let writable = revents.contains(PollFlags::OUT);
        Ok(Readiness { readable: writable || revents.contains(PollFlags::IN), writable })
    }
}

/// `poll` on one fd, retried on `EINTR` with the remaining time.
pub(crate) fn poll_one(fd: BorrowedFd<'_>, events: PollFlags, timeout: Option<Duration>) -> Result<PollFlags> {
    let deadline = timeout.map(|t| (Instant::now(), t));
    loop {
        let remaining = deadline.map(|(start, t)| t.saturating_sub(start.elapsed()));
        let ts = remaining
            .map(|r| Timespec { tv_sec: r.as_secs().try_into().unwrap_or(i64::MAX), tv_nsec: r.subsec_nanos().into() });
        let mut fds = [PollFd::from_borrowed_fd(fd, events)];
        match rustix::event::poll(&mut fds, ts.as_ref()) {
            Ok(_) => return Ok(fds[0].revents()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Error::Os { op: Op::Poll, errno: errno(e) }),
        }
    }
}

impl AsFd for DmaBuf {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl From<DmaBuf> for OwnedFd {
    fn from(buf: DmaBuf) -> OwnedFd {
        buf.fd
    }
}

impl TryFrom<OwnedFd> for DmaBuf {
    type Error = Error;

    fn try_from(fd: OwnedFd) -> Result<Self> {
        DmaBuf::from_owned(fd)
    }
}

impl traits::DmaBuf for DmaBuf {
    type SyncFile = SyncFile;
    type Mapping<'a>
        = Mapping<'a>
    where
        Self: 'a;

    fn size(&self) -> usize {
        self.size
    }

    fn set_name(&self, name: &str) -> Result<()> {
        DmaBuf::set_name(self, name)
    }

    fn mmap_range(&self, offset: usize, len: usize) -> Result<Mapping<'_>> {
        DmaBuf::mmap_range(self, offset, len)
    }

    fn export_sync_file(&self, flags: SyncFlags) -> Result<SyncFile> {
        DmaBuf::export_sync_file(self, flags)
    }

    fn import_sync_file(&self, flags: SyncFlags, sync_file: &SyncFile) -> Result<()> {
        DmaBuf::import_sync_file(self, flags, sync_file)
    }

    fn poll(&self, interest: SyncFlags, timeout: Option<Duration>) -> Result<Readiness> {
        DmaBuf::poll(self, interest, timeout)
    }
}

/// The kernel's side of a [`Mapping`]: `len` bytes mapped shared from a dma-buf fd, the
/// sync ioctl on that fd, and the mapped memory itself as the guards' bytes (no copy).
#[derive(Debug)]
pub struct LinuxMap<'buf> {
    fd: BorrowedFd<'buf>,
    ptr: NonNull<u8>,
    /// Where the mapping starts in the buffer (mmap's offset).
    offset: usize,
    len: usize,
    /// The buffer's size.
    size: usize,
    writable: bool,
}

// SAFETY: the mapping is plain shared memory owned by this value; moving it to another
// thread moves that ownership (munmap works from any thread).
unsafe impl Send for LinuxMap<'_> {}
// SAFETY: through `&LinuxMap` the bytes are reachable only by the unsafe `read_bytes` and
// `write_bytes`, whose callers (the guarded mapping) promise that write bytes are never
// alive beside other bytes: read guards share `&Mapping`, write guards need `&mut`.
unsafe impl Sync for LinuxMap<'_> {}

impl Drop for LinuxMap<'_> {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` is the mapping made in `DmaBuf::mmap_range`; no guard can be
        // alive (they borrow the mapping that owns this), so nothing refers to it any more.
        // A failing munmap leaves the pages mapped, which is safe; nothing can be done
        // here.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// An ioctl, retried while the kernel says `EINTR` or `EAGAIN` (as the uapi documentation
/// asks of `DMA_BUF_IOCTL_SYNC`; the partial one waits for the same fences).
#[inline]
fn retried(call: impl Fn() -> std::result::Result<(), Errno>) -> std::result::Result<(), Errno> {
    loop {
        match call() {
            Err(Errno::EINTR | Errno::EAGAIN) => continue,
            other => return other,
        }
    }
}

impl CpuMapping for LinuxMap<'_> {
    type ReadBytes<'m>
        = &'m [u8]
    where
        Self: 'm;
    type WriteBytes<'m>
        = &'m mut [u8]
    where
        Self: 'm;

    #[inline]
    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn writable(&self) -> bool {
        self.writable
    }

    #[inline]
    fn offset(&self) -> usize {
        self.offset
    }

    #[inline]
    fn buffer_len(&self) -> usize {
        self.size
    }

    #[inline]
    fn sync(&self, phase: SyncPhase, flags: SyncFlags) -> Result<()> {
        retried(|| sys::dma_buf_sync(self.fd, phase.word(flags, false))).map_err(Error::os(Op::sync(phase, false)))
    }

    #[inline]
    fn sync_partial(&self, phase: SyncPhase, flags: SyncFlags, offset: u32, len: u32, overwrite: bool) -> Result<()> {
        retried(|| sys::dma_buf_sync_partial(self.fd, phase.word(flags, overwrite), offset, len))
            .map_err(Error::os(Op::sync(phase, true)))
    }

    #[inline]
    unsafe fn read_bytes(&self, range: Range<usize>) -> Result<&[u8]> {
        // SAFETY: `range` is inside the live mapping (the guarded mapping checked it), which
        // outlives the borrow of `self`; the caller promises no write bytes are alive, and
        // no other mapping of this buffer exists in the process, so nothing writes these
        // bytes through Rust while the slice lives.
        Ok(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(range.start), range.len()) })
    }

    #[inline]
    unsafe fn write_bytes(&self, range: Range<usize>) -> Result<&mut [u8]> {
        // SAFETY: `range` is inside the live mapping (checked), which is writable (checked);
        // the caller holds the mapping exclusively while the slice lives, and no other
        // mapping of this buffer exists in the process, so this is the only reference to
        // these bytes.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(range.start), range.len()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memfd_is_not_taken_for_a_dma_buf() {
        let fd = rustix::fs::memfd_create("x", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd_create");
        match DmaBuf::import(fd.as_fd()) {
            Err(Error::NotDmaBuf { magic }) => assert_ne!(magic, sys::DMA_BUF_MAGIC),
            other => panic!("{other:?}"),
        }
        match DmaBuf::from_owned(fd) {
            Err(Error::NotDmaBuf { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
}
