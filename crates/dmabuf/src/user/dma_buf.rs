//! [`DmaBuf`]: a simulated dma-buf as user space holds it (the fd), and [`SimMap`], the
//! simulated side of its guarded [`Mapping`].

use std::fmt;
use std::ops::{Deref, DerefMut, Range};
use std::rc::Rc;
use std::time::Duration;

use dmabuf_sim::PAGE_SIZE;
use dmabuf_uapi::mapping::{self, CpuMapping, MapRegistry};
use dmabuf_uapi::{Error, FdFlags, Op, Readiness, Result, SyncFlags, SyncPhase, traits, validate};

use super::{Shared, SyncFile, SyncIoctls, framework};
use crate::{UserMapping, raw};

/// A guarded CPU mapping of a simulated dma-buf (unmapped on drop): its bytes are
/// reachable only through guards, which bracket the access with `DMA_BUF_IOCTL_SYNC` as
/// the kernel backend's do (unless the heaps were set to [`SyncIoctls::Omit`]).
pub type Mapping<'buf> = mapping::Mapping<SimMap<'buf>>;
/// Read access to (part of) a simulated [`Mapping`].
pub type ReadGuard<'m, 'buf> = mapping::ReadGuard<'m, SimMap<'buf>>;
/// Exclusive access to (part of) a simulated [`Mapping`].
pub type WriteGuard<'m, 'buf> = mapping::WriteGuard<'m, SimMap<'buf>>;

/// The simulated buffers this process has mapped, by (system, buffer).
static MAPPED: MapRegistry = MapRegistry::new();

/// A simulated dma-buf, as user space holds it (the fd).
pub struct DmaBuf {
    pub(super) inner: crate::DmaBuf,
    pub(super) shared: Rc<Shared>,
    pub(super) id: u64,
    /// The fd's access mode (`fd_flags` at allocation).
    access: FdFlags,
}

impl fmt::Debug for DmaBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaBuf").field("name", &self.inner.name()).field("size", &self.inner.size()).finish()
    }
}

impl DmaBuf {
    pub(super) fn new(inner: crate::DmaBuf, shared: Rc<Shared>, id: u64, access: FdFlags) -> DmaBuf {
        DmaBuf { inner, shared, id, access }
    }

    /// The framework's buffer (its reservation object, name, backing, attachments).
    pub fn framework(&self) -> &crate::DmaBuf {
        &self.inner
    }

    /// The buffer's size in bytes.
    pub fn size(&self) -> usize {
        usize::try_from(self.inner.size()).unwrap_or(usize::MAX)
    }

    /// The buffer's name (`buf<N>` until [`DmaBuf::set_name`]).
    pub fn name(&self) -> String {
        self.inner.name()
    }

    /// Whether the fd is open read-write (a read-only fd gives a read-only mapping).
    pub fn is_writable(&self) -> bool {
        self.access.readable() && self.access.writable()
    }

    /// Names the buffer (`DMA_BUF_SET_NAME`): at most 31 bytes, no NUL.
    pub fn set_name(&self, name: &str) -> Result<()> {
        self.shared.record(Op::DmaBufSetName, self.inner.name(), None, None);
        validate::name(name)?;
        self.inner.set_name(name).map_err(framework(Op::DmaBufSetName))
    }

    /// Maps the whole buffer for the CPU. One live mapping per buffer: a second one fails
    /// with [`Error::AlreadyMapped`].
    pub fn mmap(&self) -> Result<Mapping<'_>> {
        self.mmap_range(0, self.size())
    }

    /// Maps `len` bytes from `offset` (whole pages), as `mmap` of the fd at that offset;
    /// what `dma_buf_mmap_internal` refuses is refused with the kernel's errno. The
    /// framework maps the whole buffer; the window is kept here.
    pub fn mmap_range(&self, offset: usize, len: usize) -> Result<Mapping<'_>> {
        self.shared.record(Op::Mmap, self.inner.name(), None, Some(offset..offset.saturating_add(len)));
        validate::mmap_window(offset as u64, len as u64, self.inner.size(), PAGE_SIZE, self.access)?;
        let key = (Rc::as_ptr(&self.shared) as u64, self.id);
        let registration = MAPPED.register(key, || format!("{:?}", self.inner.name()))?;
        let map = self.inner.mmap().map_err(framework(Op::Mmap))?;
        let sim = SimMap { buf: self, map, offset, len, writable: self.is_writable() };
        Ok(mapping::Mapping::new(sim, registration))
    }

    /// Snapshots the buffer's fences as a sync file (`DMA_BUF_IOCTL_EXPORT_SYNC_FILE`):
    /// `Read` gives the writers' fences, `Write`/`ReadWrite` every fence.
    pub fn export_sync_file(&self, flags: SyncFlags) -> Result<SyncFile> {
        self.shared.record(Op::DmaBufIoctlExportSyncFile, self.inner.name(), Some(flags), None);
        let sf =
            self.inner.export_sync_file(u64::from(flags.bits())).map_err(framework(Op::DmaBufIoctlExportSyncFile))?;
        Ok(SyncFile::from(sf))
    }

    /// Adds the sync file's fences to the buffer (`DMA_BUF_IOCTL_IMPORT_SYNC_FILE`), as a
    /// writer's if `flags` writes, else as a reader's.
    pub fn import_sync_file(&self, flags: SyncFlags, sync_file: &SyncFile) -> Result<()> {
        self.shared.record(Op::DmaBufIoctlImportSyncFile, self.inner.name(), Some(flags), None);
        self.inner
            .import_sync_file(u64::from(flags.bits()), sync_file.framework())
            .map_err(framework(Op::DmaBufIoctlImportSyncFile))
    }

    /// Waits (`poll`) until the buffer is ready for `interest` or `timeout` passes
    /// (`None`: no limit, `Some(ZERO)`: just look); simulated fences run simulated time.
    ///
    /// Reports what the kernel's `poll` reports: only the events asked for (`Read` asks
    /// for `POLLIN`, `Write` for `POLLOUT`, `ReadWrite` for both), with writable implying
    /// readable. A `false` field is "not known to be ready".
    pub fn poll(&self, interest: SyncFlags, timeout: Option<Duration>) -> Result<Readiness> {
        self.shared.record(Op::Poll, self.inner.name(), Some(interest), None);
        let r = self.inner.poll_timeout(interest, timeout).map_err(framework(Op::Poll))?;
        Ok(match interest {
            SyncFlags::Read => Readiness { readable: r.readable, writable: false },
            SyncFlags::Write => Readiness { readable: r.writable, writable: r.writable },
            SyncFlags::ReadWrite => Readiness { readable: r.readable || r.writable, writable: r.writable },
        })
    }
}

impl traits::DmaBuf for DmaBuf {
    type SyncFile = SyncFile;
    type Mapping<'a>
        = Mapping<'a>
    where
        Self: 'a;

    fn size(&self) -> usize {
        DmaBuf::size(self)
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

/// The simulated side of a [`Mapping`]: the framework's user mapping of the whole buffer,
/// the window `offset..offset + len` of it that the program mapped, and the sync ioctl
/// through the framework. The guards' bytes are copies, read right after `START` and
/// stored (what changed) right before `END`.
pub struct SimMap<'buf> {
    buf: &'buf DmaBuf,
    map: UserMapping,
    offset: usize,
    len: usize,
    writable: bool,
}

impl fmt::Debug for SimMap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimMap")
            .field("buffer", &self.buf.inner.name())
            .field("offset", &self.offset)
            .field("len", &self.len)
            .finish()
    }
}

impl SimMap<'_> {
    /// `range` of the mapping as a range of the buffer.
    fn in_buffer(&self, range: &Range<usize>) -> Range<usize> {
        self.offset + range.start..self.offset + range.end
    }

    /// Where the writes of a range go: `store` for a guard's changed runs, `overwrite_bytes`
    /// for all of it.
    fn write_at(&self, at: usize, data: &[u8]) -> Result<()> {
        self.map
            .write_unsynced(at as u64, data)
            .map(|_| ())
            .map_err(|source| Error::Access { buffer: self.buf.inner.name(), source: Box::new(source) })
    }

    fn copy(&self, range: &Range<usize>) -> Result<Vec<u8>> {
        let mut data = vec![0u8; range.len()];
        self.map
            .read_unsynced(self.in_buffer(range).start as u64, &mut data)
            .map_err(|source| Error::Access { buffer: self.buf.inner.name(), source: Box::new(source) })?;
        Ok(data)
    }
}

/// A write guard's bytes: the program's copy, and the bytes as the guard found them, to
/// store only what changed.
pub struct WriteBytes {
    data: Vec<u8>,
    original: Vec<u8>,
}

impl Deref for WriteBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.data
    }
}

impl DerefMut for WriteBytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }
}

/// Runs of differing bytes, with gaps shorter than a cache line merged (one store per
/// run).
fn changed_runs(old: &[u8], new: &[u8]) -> Vec<Range<usize>> {
    const MERGE_GAP: usize = 64;
    let mut runs: Vec<Range<usize>> = Vec::new();
    let mut i = 0;
    while i < new.len() {
        if old.get(i) == new.get(i) {
            i += 1;
            continue;
        }
        let start = i;
        while i < new.len() && old.get(i) != new.get(i) {
            i += 1;
        }
        match runs.last_mut() {
            Some(last) if start - last.end < MERGE_GAP => last.end = i,
            _ => runs.push(start..i),
        }
    }
    runs
}

impl CpuMapping for SimMap<'_> {
    type ReadBytes<'m>
        = Vec<u8>
    where
        Self: 'm;
    type WriteBytes<'m>
        = WriteBytes
    where
        Self: 'm;

    fn len(&self) -> usize {
        self.len
    }

    fn writable(&self) -> bool {
        self.writable
    }

    fn offset(&self) -> usize {
        self.offset
    }

    fn buffer_len(&self) -> usize {
        self.buf.size()
    }

    fn issues_sync(&self) -> bool {
        self.buf.shared.sync_ioctls.get() == SyncIoctls::Issue
    }

    fn sync(&self, phase: SyncPhase, flags: SyncFlags) -> Result<()> {
        let op = Op::sync(phase, false);
        self.buf.shared.record(op, self.buf.inner.name(), Some(flags), Some(0..self.buf.size()));
        raw::sync_ioctl(&self.map, phase.word(flags, false)).map_err(framework(op))
    }

    fn sync_partial(&self, phase: SyncPhase, flags: SyncFlags, offset: u32, len: u32, overwrite: bool) -> Result<()> {
        let op = Op::sync(phase, true);
        let range = offset as usize..offset as usize + len as usize;
        self.buf.shared.record(op, self.buf.inner.name(), Some(flags), Some(range));
        raw::sync_ioctl_partial(&self.map, phase.word(flags, overwrite), offset, len).map_err(framework(op))
    }

    unsafe fn read_bytes(&self, range: Range<usize>) -> Result<Vec<u8>> {
        self.copy(&range)
    }

    unsafe fn write_bytes(&self, range: Range<usize>) -> Result<WriteBytes> {
        let data = self.copy(&range)?;
        Ok(WriteBytes { original: data.clone(), data })
    }

    fn store(&self, bytes: &WriteBytes, range: &Range<usize>) -> Result<()> {
        let start = self.in_buffer(range).start;
        for run in changed_runs(&bytes.original, &bytes.data) {
            self.write_at(start + run.start, &bytes.data[run])?;
        }
        Ok(())
    }

    unsafe fn overwrite_bytes(&self, range: Range<usize>, data: &[u8]) -> Result<()> {
        // One store of every byte, and no load: an overwrite gave the old bytes up.
        self.write_at(self.in_buffer(&range).start, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_runs_merge_gaps_shorter_than_a_line() {
        let old = vec![0u8; 300];
        let mut new = old.clone();
        new[1] = 1;
        new[3] = 1;
        new[200] = 1;
        assert_eq!(changed_runs(&old, &new), vec![1..4, 200..201]);
        assert!(changed_runs(&old, &old).is_empty());
    }
}
