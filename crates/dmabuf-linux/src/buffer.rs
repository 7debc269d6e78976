//! [`DmaBuf`]: a dma-buf fd, and its CPU [`Mapping`] whose bytes are reachable only
//! through bracketing guards.

use std::ffi::CString;
use std::ops::{Deref, DerefMut, Range};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use dmabuf::uapi::{self, Readiness, SyncFlags};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::OFlags;
use rustix::io::Errno;
use rustix::mm::{MapFlags, ProtFlags};

use crate::error::{Error, Op, Result};
use crate::sync_file::SyncFile;
use crate::sys;

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
    writable: bool,
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

/// Checks a dma-buf or sync file name and makes it the kernel's NUL-padded array.
pub(crate) fn name_bytes(name: &str) -> Result<[u8; uapi::DMA_BUF_NAME_LEN]> {
    let max = uapi::DMA_BUF_NAME_LEN - 1;
    if name.as_bytes().contains(&0) {
        return Err(Error::NameHasNul { name: name.into() });
    }
    if name.len() > max {
        return Err(Error::NameTooLong { name: name.into(), len: name.len(), max });
    }
    let mut out = [0u8; uapi::DMA_BUF_NAME_LEN];
    out[..name.len()].copy_from_slice(name.as_bytes());
    Ok(out)
}

/// The (dev, inode) pairs of the dma-bufs this process has mapped: a second mapping of one
/// buffer would let two write guards alias the same bytes.
static MAPPED: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());

/// One entry of [`MAPPED`], removed on drop.
#[derive(Debug)]
struct Registration {
    key: (u64, u64),
}

impl Registration {
    fn new(dev: u64, ino: u64) -> Result<Self> {
        let mut mapped = MAPPED.lock().unwrap_or_else(|p| p.into_inner());
        if mapped.contains(&(dev, ino)) {
            return Err(Error::AlreadyMapped { ino });
        }
        mapped.push((dev, ino));
        Ok(Registration { key: (dev, ino) })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut mapped = MAPPED.lock().unwrap_or_else(|p| p.into_inner());
        mapped.retain(|k| *k != self.key);
    }
}

impl DmaBuf {
    /// Takes ownership of `fd` after checking that it is a dma-buf (its file system is the
    /// dma-buf pseudo file system). On error the fd is closed.
    pub fn from_owned(fd: OwnedFd) -> Result<Self> {
        let fs = rustix::fs::fstatfs(&fd).map_err(Error::os(Op::Fstatfs))?;
        // `f_type` is a signed word on some targets; the magic is a small positive value.
        #[allow(clippy::unnecessary_cast)]
        let magic = fs.f_type as u64;
        if magic != sys::DMA_BUF_MAGIC {
            return Err(Error::NotDmaBuf { magic });
        }
        let st = rustix::fs::fstat(&fd).map_err(Error::os(Op::Fstat))?;
        let fl = rustix::fs::fcntl_getfl(&fd).map_err(Error::os(Op::FcntlGetfl))?;
        let writable = fl & OFlags::RWMODE == OFlags::RDWR;
        Ok(DmaBuf {
            size: usize::try_from(st.st_size).unwrap_or(0),
            #[allow(clippy::unnecessary_cast)]
            dev: st.st_dev as u64,
            #[allow(clippy::unnecessary_cast)]
            ino: st.st_ino as u64,
            writable,
            fd,
        })
    }

    /// Checks that the borrowed `fd` is a dma-buf and takes a duplicate of it
    /// (`F_DUPFD_CLOEXEC`), leaving the caller's fd alone.
    pub fn import(fd: BorrowedFd<'_>) -> Result<Self> {
        let fs = rustix::fs::fstatfs(fd).map_err(Error::os(Op::Fstatfs))?;
        #[allow(clippy::unnecessary_cast)]
        let magic = fs.f_type as u64;
        if magic != sys::DMA_BUF_MAGIC {
            return Err(Error::NotDmaBuf { magic });
        }
        let dup = rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(Error::os(Op::FcntlDupfdCloexec))?;
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
        self.writable
    }

    /// Names the buffer (`DMA_BUF_SET_NAME`): at most 31 bytes, no NUL. The name shows in
    /// `/proc/<pid>/fdinfo/<fd>` and debugfs.
    pub fn set_name(&self, name: &str) -> Result<()> {
        name_bytes(name)?;
        // Checked above: no interior NUL.
        let c = CString::new(name).map_err(|_| Error::NameHasNul { name: name.into() })?;
        sys::dma_buf_set_name(self.fd.as_fd(), &c).map_err(Error::os(Op::DmaBufSetName))
    }

    /// Reads `/proc/self/fdinfo/<fd>`: size, exporter and name.
    pub fn fdinfo(&self) -> Result<FdInfo> {
        let path = format!("/proc/self/fdinfo/{}", self.fd.as_raw_fd());
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Open {
            path: path.clone().into(),
            errno: Errno::from_io_error(&e).unwrap_or(Errno::IO),
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
        let registration = Registration::new(self.dev, self.ino)?;
        let ptr = if self.size == 0 {
            NonNull::dangling()
        } else {
            let prot = if self.writable { ProtFlags::READ | ProtFlags::WRITE } else { ProtFlags::READ };
            // SAFETY: a fresh shared mapping chosen by the kernel (null hint) overlaps
            // nothing of ours; `fd` is a dma-buf of `size` bytes.
            let p = unsafe { rustix::mm::mmap(std::ptr::null_mut(), self.size, prot, MapFlags::SHARED, &self.fd, 0) }
                .map_err(Error::os(Op::Mmap))?;
            NonNull::new(p.cast::<u8>()).ok_or(Error::Os { op: Op::Mmap, errno: Errno::FAULT })?
        };
        Ok(Mapping { buf: self, ptr, len: self.size, deferred: AtomicI32::new(0), _registration: registration })
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
            Err(Errno::INTR) => continue,
            Err(errno) => return Err(Error::Os { op: Op::Poll, errno }),
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

/// A CPU mapping of a [`DmaBuf`] (unmapped on drop). The bytes are reachable only through
/// guards: [`Mapping::read`], [`Mapping::write`], [`Mapping::read_write`] and the
/// `*_range` forms. A guard issues `DMA_BUF_IOCTL_SYNC` with `DMA_BUF_SYNC_START` and its
/// flags when made, and `DMA_BUF_SYNC_END` with the same flags when dropped (both retried
/// on `EINTR`/`EAGAIN`). Write guards borrow the mapping mutably, so they exclude every
/// other guard at compile time, and only one mapping of a buffer can exist per process.
///
/// The one way around the bracket is to leak a guard on purpose (`std::mem::forget`), which
/// skips its `END` as it skips every destructor.
///
/// `START` also waits for the fences the access must wait for (implicit sync), so devices
/// that honour the buffer's fences do not touch the bytes while a guard is alive. Another
/// process writing to the same buffer through its own mapping without fences is outside
/// what any type here can prevent.
#[derive(Debug)]
pub struct Mapping<'buf> {
    buf: &'buf DmaBuf,
    ptr: NonNull<u8>,
    len: usize,
    /// The errno of a failed `SYNC_END` issued by a dropped guard, or 0: the next guard
    /// reports it.
    deferred: AtomicI32,
    _registration: Registration,
}

// SAFETY: the mapping is plain shared memory owned by this value; moving it to another
// thread moves that ownership (munmap works from any thread).
unsafe impl Send for Mapping<'_> {}
// SAFETY: through `&Mapping` only read guards (shared `&[u8]`) can be made; write guards
// need `&mut Mapping`. The deferred-error slot is atomic.
unsafe impl Sync for Mapping<'_> {}

impl Drop for Mapping<'_> {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: `ptr`/`len` is the mapping made in `DmaBuf::mmap`; no guard can be
            // alive (they borrow `self`), so nothing refers to it any more. A failing
            // munmap leaves the pages mapped, which is safe; nothing can be done here.
            let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

impl<'buf> Mapping<'buf> {
    /// The mapped buffer.
    pub fn buffer(&self) -> &'buf DmaBuf {
        self.buf
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn check(&self, range: &Range<usize>) -> Result<()> {
        if range.start > range.end || range.end > self.len {
            return Err(Error::RangeOutOfBounds { start: range.start, end: range.end, len: self.len });
        }
        Ok(())
    }

    #[inline]
    fn begin(&self, flags: SyncFlags, range: &Range<usize>) -> Result<Bracket<'_>> {
        self.check(range)?;
        if flags.writes() && !self.buf.writable {
            return Err(Error::NotWritable);
        }
        Bracket::begin(self.buf.fd.as_fd(), flags, &self.deferred)
    }

    /// Begins a read of `range` (`SYNC_START | SYNC_READ`).
    #[inline]
    pub fn read_range(&self, range: Range<usize>) -> Result<ReadGuard<'_>> {
        let bracket = self.begin(SyncFlags::Read, &range)?;
        // SAFETY: `range` is inside the live mapping (checked); the guard borrows `self`,
        // so the mapping outlives the slice; write guards need `&mut self`, and no other
        // mapping of this buffer exists in the process, so nothing writes these bytes
        // through Rust while the slice lives.
        let data = unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(range.start), range.len()) };
        Ok(ReadGuard { bracket, data })
    }

    #[inline]
    fn write_guard(&mut self, flags: SyncFlags, range: Range<usize>) -> Result<WriteGuard<'_>> {
        let ptr = self.ptr;
        let bracket = self.begin(flags, &range)?;
        // SAFETY: `range` is inside the live mapping (checked), which is writable (checked);
        // the guard holds the only borrow of the mapping (`&mut self`), and no other
        // mapping of this buffer exists in the process, so this is the only reference to
        // these bytes.
        let data = unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr().add(range.start), range.len()) };
        Ok(WriteGuard { bracket, data })
    }

    /// Begins a write of `range` (`SYNC_START | SYNC_WRITE`).
    #[inline]
    pub fn write_range(&mut self, range: Range<usize>) -> Result<WriteGuard<'_>> {
        self.write_guard(SyncFlags::Write, range)
    }

    /// Begins a read-modify-write of `range` (`SYNC_START | SYNC_RW`).
    #[inline]
    pub fn read_write_range(&mut self, range: Range<usize>) -> Result<WriteGuard<'_>> {
        self.write_guard(SyncFlags::ReadWrite, range)
    }

    /// Begins a read of the whole mapping.
    #[inline]
    pub fn read(&self) -> Result<ReadGuard<'_>> {
        self.read_range(0..self.len)
    }

    /// Begins a write of the whole mapping.
    #[inline]
    pub fn write(&mut self) -> Result<WriteGuard<'_>> {
        let len = self.len;
        self.write_range(0..len)
    }

    /// Begins a read-modify-write of the whole mapping.
    #[inline]
    pub fn read_write(&mut self) -> Result<WriteGuard<'_>> {
        let len = self.len;
        self.read_write_range(0..len)
    }
}

/// One `DMA_BUF_IOCTL_SYNC` bracket: `START` made, `END` owed.
#[derive(Debug)]
struct Bracket<'m> {
    fd: BorrowedFd<'m>,
    flags: SyncFlags,
    deferred: &'m AtomicI32,
    open: bool,
}

/// `DMA_BUF_IOCTL_SYNC`, retried while the kernel says `EINTR` or `EAGAIN` (as the uapi
/// documentation asks).
#[inline]
fn sync(fd: BorrowedFd<'_>, flags: u64) -> std::result::Result<(), Errno> {
    loop {
        match sys::dma_buf_sync(fd, flags) {
            Err(Errno::INTR | Errno::AGAIN) => continue,
            other => return other,
        }
    }
}

impl<'m> Bracket<'m> {
    #[inline]
    fn begin(fd: BorrowedFd<'m>, flags: SyncFlags, deferred: &'m AtomicI32) -> Result<Self> {
        // A plain load first: the slot is almost always empty, and a swap costs more.
        let pending = match deferred.load(Ordering::Relaxed) {
            0 => 0,
            _ => deferred.swap(0, Ordering::Relaxed),
        };
        if pending != 0 {
            return Err(Error::DeferredSyncEnd { errno: Errno::from_raw_os_error(pending) });
        }
        sync(fd, sys::DMA_BUF_SYNC_START | u64::from(flags.bits()))
            .map_err(|errno| Error::Os { op: Op::DmaBufIoctlSyncStart, errno })?;
        Ok(Bracket { fd, flags, deferred, open: true })
    }

    #[inline]
    fn end(&mut self) -> Result<()> {
        if !self.open {
            return Ok(());
        }
        self.open = false;
        sync(self.fd, sys::DMA_BUF_SYNC_END | u64::from(self.flags.bits()))
            .map_err(|errno| Error::Os { op: Op::DmaBufIoctlSyncEnd, errno })
    }
}

impl Drop for Bracket<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Err(e) = self.end() {
            // Keep the first failure for the next guard of this mapping.
            let errno = e.errno().map_or(Errno::IO.raw_os_error(), |e| e.raw_os_error());
            let _ = self.deferred.compare_exchange(0, errno, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

/// Read access to (part of) a mapping, between `SYNC_START|READ` and `SYNC_END|READ`.
#[derive(Debug)]
pub struct ReadGuard<'m> {
    bracket: Bracket<'m>,
    data: &'m [u8],
}

impl ReadGuard<'_> {
    /// Ends the access now and reports the `SYNC_END` result.
    #[inline]
    pub fn end(mut self) -> Result<()> {
        self.bracket.end()
    }
}

impl Deref for ReadGuard<'_> {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        self.data
    }
}

/// Exclusive access to (part of) a mapping, between `SYNC_START` and `SYNC_END` with
/// `WRITE` (or `RW`).
#[derive(Debug)]
pub struct WriteGuard<'m> {
    bracket: Bracket<'m>,
    data: &'m mut [u8],
}

impl WriteGuard<'_> {
    /// Ends the access now and reports the `SYNC_END` result.
    #[inline]
    pub fn end(mut self) -> Result<()> {
        self.bracket.end()
    }

    /// `Write` or `ReadWrite`.
    pub fn flags(&self) -> SyncFlags {
        self.bracket.flags
    }
}

impl Deref for WriteGuard<'_> {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        self.data
    }
}

impl DerefMut for WriteGuard<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        self.data
    }
}

impl uapi::CpuAccess for ReadGuard<'_> {
    type Error = Error;

    fn flags(&self) -> SyncFlags {
        self.bracket.flags
    }

    fn end(self) -> Result<()> {
        ReadGuard::end(self)
    }
}

impl uapi::CpuAccess for WriteGuard<'_> {
    type Error = Error;

    fn flags(&self) -> SyncFlags {
        self.bracket.flags
    }

    fn end(self) -> Result<()> {
        WriteGuard::end(self)
    }
}

impl uapi::Mapping for Mapping<'_> {
    type Error = Error;
    type ReadGuard<'g>
        = ReadGuard<'g>
    where
        Self: 'g;
    type WriteGuard<'g>
        = WriteGuard<'g>
    where
        Self: 'g;

    fn len(&self) -> usize {
        self.len
    }

    fn read_range(&self, range: Range<usize>) -> Result<ReadGuard<'_>> {
        Mapping::read_range(self, range)
    }

    fn write_range(&mut self, range: Range<usize>) -> Result<WriteGuard<'_>> {
        Mapping::write_range(self, range)
    }

    fn read_write_range(&mut self, range: Range<usize>) -> Result<WriteGuard<'_>> {
        Mapping::read_write_range(self, range)
    }
}

impl uapi::DmaBuf for DmaBuf {
    type Error = Error;
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

    fn mmap(&self) -> Result<Mapping<'_>> {
        DmaBuf::mmap(self)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_longer_than_the_kernel_keeps_are_refused() {
        assert!(name_bytes("frame-0").is_ok());
        assert!(name_bytes(&"x".repeat(31)).is_ok());
        match name_bytes(&"x".repeat(32)) {
            Err(Error::NameTooLong { len: 32, max: 31, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(name_bytes("a\0b"), Err(Error::NameHasNul { .. })));
        let b = name_bytes("ab").unwrap_or_default();
        assert_eq!(&b[..3], b"ab\0");
    }

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

    #[test]
    fn one_mapping_per_buffer_is_enforced_by_the_registry() {
        let a = Registration::new(u64::MAX, 42).expect("first");
        assert!(matches!(Registration::new(u64::MAX, 42), Err(Error::AlreadyMapped { ino: 42 })));
        let other = Registration::new(u64::MAX, 43).expect("other buffer");
        drop(a);
        let again = Registration::new(u64::MAX, 42).expect("after drop");
        drop((other, again));
    }
}
