//! The guarded mapping, written once over a thin backend hook ([`CpuMapping`]: the sync
//! ioctls and the bytes).
//!
//! [`Mapping`] checks what every backend would otherwise check again (a guard's range,
//! write access, the error a dropped guard left behind) and makes the guards: a guard's
//! creation is `DMA_BUF_SYNC_START` with its flags, its drop the `DMA_BUF_SYNC_END` with
//! the same flags. An `END` that fails in a destructor is kept and returned by the next
//! guard of the mapping ([`Error::DeferredEnd`]), since a destructor cannot return it.
//! [`MapRegistry`] keeps the one-mapping-per-buffer rule.
//!
//! # Ranged brackets
//!
//! A guard over part of the buffer asks for `DMA_BUF_IOCTL_SYNC_PARTIAL` over its bytes,
//! so that a kernel that has it maintains only those (Rockchip's BSP; upstream has no such
//! ioctl). The mapping probes as Rockchip's MPP does (`mpp_dmabuf_sync_partial_begin` in
//! osal/mpp_dmabuf.c): the range goes out widened to 64-byte lines (the 2021 patch refused
//! anything else with `EINVAL`), and the first `ENOTTY` makes it fall back to
//! `DMA_BUF_IOCTL_SYNC` on the whole buffer, for that call and every later one. An
//! overwrite ([`Mapping::overwrite`]) adds the proposed `DMA_BUF_SYNC_OVERWRITE` (exactly
//! its range, which it writes whole); a kernel that has the ioctl but not the flag answers
//! `EINVAL`, and the mapping syncs without it from then on. Falling back is always
//! correct: the full bracket maintains a superset of the ranged one.

use std::fmt;
use std::ops::{Deref, DerefMut, Range};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::data::{SyncFlags, SyncPhase};
use crate::errno::Errno;
use crate::error::{Error, Op, Result};
use crate::traits::{self, CpuAccess};
use crate::validate;

/// What a backend provides for a CPU mapping: its length and place in the buffer, the sync
/// ioctls, and the bytes. Validation, the guards, the deferred errors and the choice of
/// ioctl are [`Mapping`]'s.
///
/// Ranges of bytes are relative to the mapping's start; the ioctls take the buffer's.
pub trait CpuMapping {
    /// The bytes a read guard hands out: the mapped memory itself, or a copy of it.
    type ReadBytes<'m>: Deref<Target = [u8]>
    where
        Self: 'm;
    /// The bytes a write guard hands out.
    type WriteBytes<'m>: DerefMut<Target = [u8]>
    where
        Self: 'm;

    /// The mapping's length in bytes.
    fn len(&self) -> usize;

    /// Whether the mapping has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the mapping may be written (the fd is open read-write).
    fn writable(&self) -> bool;

    /// Where the mapping starts in the buffer, in bytes (the offset given to `mmap`).
    fn offset(&self) -> usize {
        0
    }

    /// The buffer's size in bytes: an access to all of it needs no range.
    fn buffer_len(&self) -> usize {
        self.len()
    }

    /// Whether the guards issue the sync ioctls at all. A simulated backend may be told to
    /// leave them out, to show what a program that forgets them gets; the guards then skip
    /// them, and learn nothing about the kernel from a call never made.
    fn issues_sync(&self) -> bool {
        true
    }

    /// `DMA_BUF_IOCTL_SYNC` with `phase` and `flags`, on the whole buffer.
    fn sync(&self, phase: SyncPhase, flags: SyncFlags) -> Result<()>;

    /// `DMA_BUF_IOCTL_SYNC_PARTIAL` with `phase` and `flags` over `len` bytes of the buffer
    /// from `offset` (`struct dma_buf_sync_partial`), with `DMA_BUF_SYNC_OVERWRITE` when
    /// `overwrite`. A kernel without the ioctl answers `ENOTTY`, as this default does for a
    /// backend that cannot issue it.
    fn sync_partial(&self, phase: SyncPhase, flags: SyncFlags, offset: u32, len: u32, overwrite: bool) -> Result<()> {
        let _ = (flags, offset, len, overwrite);
        Err(Error::Os { op: Op::sync(phase, true), errno: Errno::ENOTTY })
    }

    /// The bytes of `range` for reading, taken after `START`.
    ///
    /// # Safety
    /// No [`CpuMapping::write_bytes`] of this mapping may be alive while the result is.
    unsafe fn read_bytes(&self, range: Range<usize>) -> Result<Self::ReadBytes<'_>>;

    /// The bytes of `range` for writing, taken after `START`.
    ///
    /// # Safety
    /// Nothing else taken from this mapping (read or write bytes) may be alive while the
    /// result is: the caller holds the mapping exclusively.
    unsafe fn write_bytes(&self, range: Range<usize>) -> Result<Self::WriteBytes<'_>>;

    /// Makes what a write guard changed visible in the buffer, right before its `END`. A
    /// backend whose bytes are the mapped memory has nothing to do.
    fn store(&self, bytes: &Self::WriteBytes<'_>, range: &Range<usize>) -> Result<()> {
        let _ = (bytes, range);
        Ok(())
    }

    /// Stores `data` over all of `range` (its length), taken after an overwrite's `START`,
    /// without reading the bytes first: their previous contents were given up.
    ///
    /// # Safety
    /// As for [`CpuMapping::write_bytes`]: the caller holds the mapping exclusively.
    unsafe fn overwrite_bytes(&self, range: Range<usize>, data: &[u8]) -> Result<()> {
        // SAFETY: the caller holds the mapping exclusively, as write_bytes requires.
        let mut bytes = unsafe { self.write_bytes(range.clone())? };
        bytes.copy_from_slice(data);
        self.store(&bytes, &range)
    }
}

/// What the kernel behind a mapping was found to support, by the answers to the calls so
/// far (unknown until the first).
#[derive(Debug, Default)]
struct Probe(AtomicU8);

impl Probe {
    const UNKNOWN: u8 = 0;
    const YES: u8 = 1;
    const NO: u8 = 2;

    fn get(&self) -> Option<bool> {
        match self.0.load(Ordering::Relaxed) {
            Self::YES => Some(true),
            Self::NO => Some(false),
            _ => None,
        }
    }

    fn found(&self, yes: bool) {
        self.0.store(if yes { Self::YES } else { Self::NO }, Ordering::Relaxed);
    }

    fn unknown(&self) -> bool {
        self.0.load(Ordering::Relaxed) == Self::UNKNOWN
    }
}

/// MPP's `CACHE_LINE_SIZE`: the alignment a ranged sync is widened to.
const SYNC_ALIGN: usize = 64;

/// The processes' buffers with a live mapping, by a key the backend chooses (the device
/// and inode of a dma-buf fd, a simulated buffer's identity): a second mapping of one
/// buffer would let two write guards alias the same bytes.
#[derive(Debug, Default)]
pub struct MapRegistry {
    mapped: Mutex<Vec<(u64, u64)>>,
}

impl MapRegistry {
    /// An empty registry (for a `static`).
    pub const fn new() -> Self {
        MapRegistry { mapped: Mutex::new(Vec::new()) }
    }

    /// Records a mapping of the buffer `key`, or refuses with [`Error::AlreadyMapped`]
    /// (naming the buffer as `describe` does) while another one lives.
    pub fn register(&'static self, key: (u64, u64), describe: impl FnOnce() -> String) -> Result<MapRegistration> {
        let mut mapped = self.mapped.lock().unwrap_or_else(|p| p.into_inner());
        if mapped.contains(&key) {
            return Err(Error::AlreadyMapped { buffer: describe() });
        }
        mapped.push(key);
        Ok(MapRegistration { registry: self, key })
    }
}

/// One entry of a [`MapRegistry`], removed on drop.
#[derive(Debug)]
pub struct MapRegistration {
    registry: &'static MapRegistry,
    key: (u64, u64),
}

impl Drop for MapRegistration {
    fn drop(&mut self) {
        let mut mapped = self.registry.mapped.lock().unwrap_or_else(|p| p.into_inner());
        mapped.retain(|k| *k != self.key);
    }
}

/// The first failure of a dropped guard's end, for the next guard to report.
#[derive(Default)]
struct Deferred {
    /// Whether `error` holds something: a plain load on the guards' fast path.
    pending: AtomicBool,
    error: Mutex<Option<Error>>,
}

impl Deferred {
    #[inline]
    fn take(&self) -> Option<Error> {
        if !self.pending.load(Ordering::Acquire) {
            return None;
        }
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        self.pending.store(false, Ordering::Release);
        slot.take()
    }

    fn defer(&self, e: Error) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
            self.pending.store(true, Ordering::Release);
        }
    }
}

/// A CPU mapping of a dma-buf whose bytes are reachable only through guards:
/// [`Mapping::read`], [`Mapping::write`], [`Mapping::read_write`] and their `*_range`
/// forms. Write guards borrow the mapping mutably, so they exclude every other guard at
/// compile time; with one mapping per buffer ([`MapRegistry`]) nothing else in the
/// process reaches the bytes.
///
/// The one way around the bracket is to leak a guard on purpose (`std::mem::forget`), which
/// skips its `END` as it skips every destructor.
pub struct Mapping<B: CpuMapping> {
    backend: B,
    deferred: Deferred,
    /// Whether the kernel has `DMA_BUF_IOCTL_SYNC_PARTIAL`.
    partial: Probe,
    /// Whether it knows `DMA_BUF_SYNC_OVERWRITE`.
    overwrite: Probe,
    _registration: MapRegistration,
}

impl<B: CpuMapping + fmt::Debug> fmt::Debug for Mapping<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapping").field("backend", &self.backend).finish_non_exhaustive()
    }
}

impl<B: CpuMapping> Mapping<B> {
    /// The guarded mapping over a backend's, registered as its buffer's one mapping.
    pub fn new(backend: B, registration: MapRegistration) -> Self {
        Mapping {
            backend,
            deferred: Deferred::default(),
            partial: Probe::default(),
            overwrite: Probe::default(),
            _registration: registration,
        }
    }

    /// Whether the kernel has `DMA_BUF_IOCTL_SYNC_PARTIAL`, as found by the ranged guards
    /// so far (`None` before the first).
    pub fn sync_partial_support(&self) -> Option<bool> {
        self.partial.get()
    }

    /// Whether the kernel knows `DMA_BUF_SYNC_OVERWRITE`, as found by the overwrites so far
    /// (`None` before the first reached a kernel with `DMA_BUF_IOCTL_SYNC_PARTIAL`).
    pub fn overwrite_support(&self) -> Option<bool> {
        self.overwrite.get()
    }

    /// The sync ioctl for an access to `range` of the mapping: the ranged one where it can
    /// be had (see the module's doc), else `DMA_BUF_IOCTL_SYNC`. An empty range needs
    /// none, as MPP skips it.
    fn sync(&self, phase: SyncPhase, flags: SyncFlags, range: &Range<usize>, overwrite: bool) -> Result<()> {
        if range.is_empty() || !self.backend.issues_sync() {
            return Ok(());
        }
        let total = self.backend.buffer_len();
        let (mut start, mut end) = (self.backend.offset() + range.start, self.backend.offset() + range.end);
        let whole = start == 0 && end == total;
        let overwrite = overwrite && self.overwrite.get() != Some(false);
        if (!whole || overwrite) && self.partial.get() != Some(false) {
            if !overwrite {
                start = start / SYNC_ALIGN * SYNC_ALIGN;
                end = end.div_ceil(SYNC_ALIGN).saturating_mul(SYNC_ALIGN).min(total);
            }
            if let (Ok(offset), Ok(len)) = (u32::try_from(start), u32::try_from(end - start)) {
                match self.backend.sync_partial(phase, flags, offset, len, overwrite) {
                    Ok(()) => {
                        self.partial.found(true);
                        if overwrite {
                            self.overwrite.found(true);
                        }
                        return Ok(());
                    }
                    Err(e) if e.errno() == Some(Errno::ENOTTY) => self.partial.found(false),
                    Err(e) if overwrite && self.overwrite.unknown() && e.errno() == Some(Errno::EINVAL) => {
                        self.partial.found(true);
                        self.overwrite.found(false);
                        return self.sync(phase, flags, range, false);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        self.backend.sync(phase, flags)
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.backend.len()
    }

    /// Whether the mapping is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The checks, then `SYNC_START`.
    #[inline]
    fn begin(&self, flags: SyncFlags, range: &Range<usize>, overwrite: bool) -> Result<()> {
        validate::range(range, self.backend.len())?;
        if flags.writes() && !self.backend.writable() {
            return Err(Error::NotWritable);
        }
        if let Some(e) = self.deferred.take() {
            return Err(Error::DeferredEnd { source: Box::new(e) });
        }
        self.sync(SyncPhase::Start, flags, range, overwrite)
    }

    /// `SYNC_END` of an access to `range`.
    #[inline]
    fn end(&self, flags: SyncFlags, range: &Range<usize>) -> Result<()> {
        self.sync(SyncPhase::End, flags, range, false)
    }

    /// A bracket that is open but has no guard (taking the bytes failed): closed at once.
    fn abandon(&self, flags: SyncFlags, range: &Range<usize>, e: Error) -> Error {
        let _ = self.end(flags, range);
        e
    }

    /// Begins a read of `range` (`SYNC_START | SYNC_READ`).
    #[inline]
    pub fn read_range(&self, range: Range<usize>) -> Result<ReadGuard<'_, B>> {
        self.begin(SyncFlags::Read, &range, false)?;
        // SAFETY: write bytes are taken only by write guards, which borrow the mapping
        // mutably, so none is alive while `&self` is.
        match unsafe { self.backend.read_bytes(range.clone()) } {
            Ok(bytes) => Ok(ReadGuard { mapping: self, range, bytes, ended: false }),
            Err(e) => Err(self.abandon(SyncFlags::Read, &range, e)),
        }
    }

    #[inline]
    fn write_guard(&mut self, flags: SyncFlags, range: Range<usize>) -> Result<WriteGuard<'_, B>> {
        let this: &Self = self;
        this.begin(flags, &range, false)?;
        // SAFETY: the guard keeps the only borrow of the mapping (taken mutably) for as long
        // as the bytes live, so no other guard, hence no other bytes, can exist.
        match unsafe { this.backend.write_bytes(range.clone()) } {
            Ok(bytes) => Ok(WriteGuard { mapping: this, flags, range, bytes, ended: false }),
            Err(e) => Err(this.abandon(flags, &range, e)),
        }
    }

    /// Begins a write of `range` (`SYNC_START | SYNC_WRITE`). The guard's bytes start as
    /// the buffer's; a write that replaces every byte is [`Mapping::overwrite`], which lets
    /// the kernel skip making the old ones visible.
    #[inline]
    pub fn write_range(&mut self, range: Range<usize>) -> Result<WriteGuard<'_, B>> {
        self.write_guard(SyncFlags::Write, range)
    }

    /// Writes `data` at `offset`, replacing every byte of that range, in one bracket
    /// declared as an overwrite (`DMA_BUF_SYNC_OVERWRITE`, proposed): a kernel that honours
    /// it does not invalidate the lines the range covers whole before the write, since
    /// none of their old bytes survive it. The flag is the whole point, so the bytes come
    /// from `data` and never pass through a guard that could leave some unwritten. On a
    /// kernel without the flag (or without `DMA_BUF_IOCTL_SYNC_PARTIAL`) it is a plain
    /// write bracket.
    pub fn overwrite(&mut self, offset: usize, data: &[u8]) -> Result<()> {
        // An end past `usize::MAX` saturates there, and `begin` refuses it as out of bounds.
        let range = offset..offset.saturating_add(data.len());
        self.begin(SyncFlags::Write, &range, true)?;
        // SAFETY: `&mut self` is the only borrow of the mapping, so no guard (hence no
        // bytes) of it is alive.
        let stored = unsafe { self.backend.overwrite_bytes(range.clone(), data) };
        let ended = self.end(SyncFlags::Write, &range);
        stored.and(ended)
    }

    /// Begins a read-modify-write of `range` (`SYNC_START | SYNC_RW`).
    #[inline]
    pub fn read_write_range(&mut self, range: Range<usize>) -> Result<WriteGuard<'_, B>> {
        self.write_guard(SyncFlags::ReadWrite, range)
    }

    /// Begins a read of the whole mapping.
    #[inline]
    pub fn read(&self) -> Result<ReadGuard<'_, B>> {
        self.read_range(0..self.len())
    }

    /// Begins a write of the whole mapping.
    #[inline]
    pub fn write(&mut self) -> Result<WriteGuard<'_, B>> {
        let len = self.len();
        self.write_range(0..len)
    }

    /// Begins a read-modify-write of the whole mapping.
    #[inline]
    pub fn read_write(&mut self) -> Result<WriteGuard<'_, B>> {
        let len = self.len();
        self.read_write_range(0..len)
    }
}

impl<B: CpuMapping> traits::Mapping for Mapping<B> {
    type ReadGuard<'g>
        = ReadGuard<'g, B>
    where
        Self: 'g;
    type WriteGuard<'g>
        = WriteGuard<'g, B>
    where
        Self: 'g;

    fn len(&self) -> usize {
        Mapping::len(self)
    }

    fn read_range(&self, range: Range<usize>) -> Result<ReadGuard<'_, B>> {
        Mapping::read_range(self, range)
    }

    fn write_range(&mut self, range: Range<usize>) -> Result<WriteGuard<'_, B>> {
        Mapping::write_range(self, range)
    }

    fn read_write_range(&mut self, range: Range<usize>) -> Result<WriteGuard<'_, B>> {
        Mapping::read_write_range(self, range)
    }

    fn overwrite(&mut self, offset: usize, data: &[u8]) -> Result<()> {
        Mapping::overwrite(self, offset, data)
    }
}

/// Read access to (part of) a mapping, between `SYNC_START|READ` and `SYNC_END|READ`.
pub struct ReadGuard<'m, B: CpuMapping + 'm> {
    mapping: &'m Mapping<B>,
    range: Range<usize>,
    bytes: B::ReadBytes<'m>,
    ended: bool,
}

impl<B: CpuMapping> fmt::Debug for ReadGuard<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadGuard").field("range", &self.range).finish()
    }
}

impl<B: CpuMapping> ReadGuard<'_, B> {
    /// Ends the access now and reports the `SYNC_END` result.
    #[inline]
    pub fn end(mut self) -> Result<()> {
        self.ended = true;
        self.mapping.end(SyncFlags::Read, &self.range)
    }

    /// `Read`.
    pub fn flags(&self) -> SyncFlags {
        SyncFlags::Read
    }
}

impl<B: CpuMapping> Drop for ReadGuard<'_, B> {
    #[inline]
    fn drop(&mut self) {
        if !self.ended
            && let Err(e) = self.mapping.end(SyncFlags::Read, &self.range)
        {
            self.mapping.deferred.defer(e);
        }
    }
}

impl<B: CpuMapping> Deref for ReadGuard<'_, B> {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl<B: CpuMapping> CpuAccess for ReadGuard<'_, B> {
    fn flags(&self) -> SyncFlags {
        SyncFlags::Read
    }

    fn end(self) -> Result<()> {
        ReadGuard::end(self)
    }
}

/// Exclusive access to (part of) a mapping, between `SYNC_START` and `SYNC_END` with
/// `WRITE` (or `RW`).
pub struct WriteGuard<'m, B: CpuMapping + 'm> {
    mapping: &'m Mapping<B>,
    flags: SyncFlags,
    range: Range<usize>,
    bytes: B::WriteBytes<'m>,
    ended: bool,
}

impl<B: CpuMapping> fmt::Debug for WriteGuard<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteGuard").field("flags", &self.flags).field("range", &self.range).finish()
    }
}

impl<B: CpuMapping> WriteGuard<'_, B> {
    /// Ends the access now: makes the changes visible, then `SYNC_END`; reports the first
    /// failure (the `END` is issued either way).
    #[inline]
    pub fn end(mut self) -> Result<()> {
        self.finish()
    }

    /// `Write` or `ReadWrite`.
    pub fn flags(&self) -> SyncFlags {
        self.flags
    }

    #[inline]
    fn finish(&mut self) -> Result<()> {
        self.ended = true;
        let stored = self.mapping.backend.store(&self.bytes, &self.range);
        let ended = self.mapping.end(self.flags, &self.range);
        stored.and(ended)
    }
}

impl<B: CpuMapping> Drop for WriteGuard<'_, B> {
    #[inline]
    fn drop(&mut self) {
        if !self.ended
            && let Err(e) = self.finish()
        {
            self.mapping.deferred.defer(e);
        }
    }
}

impl<B: CpuMapping> Deref for WriteGuard<'_, B> {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl<B: CpuMapping> DerefMut for WriteGuard<'_, B> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
}

impl<B: CpuMapping> CpuAccess for WriteGuard<'_, B> {
    fn flags(&self) -> SyncFlags {
        self.flags
    }

    fn end(self) -> Result<()> {
        WriteGuard::end(self)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use super::*;

    /// Which ranged ioctls the fake kernel has.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    enum Kernel {
        /// Upstream: `DMA_BUF_IOCTL_SYNC_PARTIAL` is `ENOTTY`.
        #[default]
        Upstream,
        /// Rockchip's BSP: the ioctl, not the overwrite flag.
        Vendor,
        /// The proposal: both.
        Proposal,
    }

    /// One ioctl the fake saw: the phase, the flags, the range (`None` for the whole
    /// buffer) and the overwrite flag, and whether it succeeded.
    type Call = (SyncPhase, SyncFlags, Option<(u32, u32)>, bool, bool);

    /// A backend over a plain vector that logs its ioctls and fails them on request.
    #[derive(Default)]
    struct Fake {
        bytes: RefCell<Vec<u8>>,
        read_only: bool,
        kernel: Kernel,
        log: RefCell<Vec<Call>>,
        fail_end: Cell<bool>,
        fail_bytes: Cell<bool>,
    }

    impl CpuMapping for Fake {
        type ReadBytes<'m> = Vec<u8>;
        type WriteBytes<'m> = Vec<u8>;

        fn len(&self) -> usize {
            self.bytes.borrow().len()
        }
        fn writable(&self) -> bool {
            !self.read_only
        }
        fn sync(&self, phase: SyncPhase, flags: SyncFlags) -> Result<()> {
            let fail = phase == SyncPhase::End && self.fail_end.get();
            self.log.borrow_mut().push((phase, flags, None, false, !fail));
            if fail {
                return Err(Error::Os { op: Op::DmaBufIoctlSyncEnd, errno: Errno::EIO });
            }
            Ok(())
        }
        fn sync_partial(&self, phase: SyncPhase, flags: SyncFlags, off: u32, len: u32, overwrite: bool) -> Result<()> {
            let errno = match self.kernel {
                Kernel::Upstream => Some(Errno::ENOTTY),
                Kernel::Vendor if overwrite => Some(Errno::EINVAL),
                _ if phase == SyncPhase::End && self.fail_end.get() => Some(Errno::EIO),
                _ => None,
            };
            self.log.borrow_mut().push((phase, flags, Some((off, len)), overwrite, errno.is_none()));
            match errno {
                Some(errno) => Err(Error::Os { op: Op::sync(phase, true), errno }),
                None => Ok(()),
            }
        }
        unsafe fn read_bytes(&self, range: Range<usize>) -> Result<Vec<u8>> {
            if self.fail_bytes.get() {
                return Err(Error::Os { op: Op::Mmap, errno: Errno::EFAULT });
            }
            Ok(self.bytes.borrow()[range].to_vec())
        }
        unsafe fn write_bytes(&self, range: Range<usize>) -> Result<Vec<u8>> {
            // SAFETY: the contract is the same.
            unsafe { self.read_bytes(range) }
        }
        fn store(&self, bytes: &Vec<u8>, range: &Range<usize>) -> Result<()> {
            self.bytes.borrow_mut()[range.clone()].copy_from_slice(bytes);
            Ok(())
        }
    }

    static REGISTRY: MapRegistry = MapRegistry::new();

    fn mapping_on(key: u64, len: usize, kernel: Kernel) -> Mapping<Fake> {
        let fake = Fake { bytes: RefCell::new(vec![0; len]), kernel, ..Fake::default() };
        Mapping::new(fake, REGISTRY.register((0, key), || format!("fake {key}")).expect("register"))
    }

    fn mapping(key: u64, len: usize) -> Mapping<Fake> {
        mapping_on(key, len, Kernel::Upstream)
    }

    fn log(m: &Mapping<Fake>) -> Vec<Call> {
        m.backend.log.take()
    }

    const START: SyncPhase = SyncPhase::Start;
    const END: SyncPhase = SyncPhase::End;

    #[test]
    fn guards_bracket_their_access_with_their_flags_and_range() {
        let mut m = mapping_on(1, 256, Kernel::Vendor);
        {
            let mut w = m.write_range(70..74).expect("write");
            assert_eq!(w.flags(), SyncFlags::Write);
            w.copy_from_slice(b"abcd");
        }
        assert_eq!(&m.read().expect("read")[70..74], b"abcd");
        m.read_write().expect("rw").end().expect("end");
        use SyncFlags::*;
        assert_eq!(
            log(&m),
            vec![
                // Widened to 64-byte lines, as MPP does.
                (START, Write, Some((64, 64)), false, true),
                (END, Write, Some((64, 64)), false, true),
                // The whole buffer needs no range.
                (START, Read, None, false, true),
                (END, Read, None, false, true),
                (START, ReadWrite, None, false, true),
                (END, ReadWrite, None, false, true),
            ]
        );
        assert_eq!(m.sync_partial_support(), Some(true));
    }

    #[test]
    fn enotty_falls_back_to_the_full_sync_once_and_for_all() {
        let m = mapping(10, 4096);
        drop(m.read_range(100..200).expect("read"));
        drop(m.read_range(0..64).expect("read"));
        use SyncFlags::Read;
        assert_eq!(
            log(&m),
            vec![
                (START, Read, Some((64, 192)), false, false),
                (START, Read, None, false, true),
                (END, Read, None, false, true),
                (START, Read, None, false, true),
                (END, Read, None, false, true),
            ],
            "one probe, then the full ioctl"
        );
        assert_eq!(m.sync_partial_support(), Some(false));
    }

    #[test]
    fn an_overwrite_carries_the_flag_where_the_kernel_knows_it() {
        let mut m = mapping_on(11, 4096, Kernel::Proposal);
        m.overwrite(128, &[7; 256]).expect("overwrite");
        assert_eq!(&m.backend.bytes.borrow()[128..384], &[7; 256][..]);
        use SyncFlags::Write;
        assert_eq!(
            log(&m),
            vec![(START, Write, Some((128, 256)), true, true), (END, Write, Some((128, 256)), false, true)],
            "exactly the range written: an overwrite is never widened"
        );
        assert_eq!(m.overwrite_support(), Some(true));
    }

    #[test]
    fn einval_for_the_flag_retries_without_it_and_remembers() {
        let mut m = mapping_on(12, 4096, Kernel::Vendor);
        m.overwrite(100, &[1; 10]).expect("overwrite");
        m.overwrite(100, &[2; 10]).expect("overwrite");
        assert_eq!(&m.backend.bytes.borrow()[100..110], &[2; 10][..]);
        use SyncFlags::Write;
        assert_eq!(
            log(&m),
            vec![
                (START, Write, Some((100, 10)), true, false),
                (START, Write, Some((64, 64)), false, true),
                (END, Write, Some((64, 64)), false, true),
                (START, Write, Some((64, 64)), false, true),
                (END, Write, Some((64, 64)), false, true),
            ]
        );
        assert_eq!((m.sync_partial_support(), m.overwrite_support()), (Some(true), Some(false)));
        // Upstream: ENOTTY, and the overwrite is a plain write of the whole buffer.
        let mut up = mapping(13, 4096);
        up.overwrite(0, &[3; 4096]).expect("overwrite");
        assert_eq!(
            log(&up),
            vec![
                (START, Write, Some((0, 4096)), true, false),
                (START, Write, None, false, true),
                (END, Write, None, false, true)
            ]
        );
    }

    #[test]
    fn an_empty_range_needs_no_ioctl() {
        let m = mapping_on(14, 4096, Kernel::Proposal);
        assert!(m.read_range(10..10).expect("read").is_empty());
        assert!(log(&m).is_empty());
    }

    #[test]
    #[allow(clippy::reversed_empty_ranges)] // a backwards range is one of the mistakes
    fn refused_guards_issue_nothing() {
        let mut m = mapping(2, 16);
        assert!(matches!(m.read_range(0..17), Err(Error::RangeOutOfBounds { start: 0, end: 17, len: 16 })));
        assert!(matches!(m.write_range(9..3), Err(Error::RangeOutOfBounds { .. })));
        let mut ro = mapping(3, 16);
        ro.backend.read_only = true;
        assert!(matches!(ro.write(), Err(Error::NotWritable)));
        assert!(matches!(ro.read_write_range(0..1), Err(Error::NotWritable)));
        assert!(matches!(ro.overwrite(0, &[0; 4]), Err(Error::NotWritable)));
        assert!(ro.read().is_ok());
        assert!(log(&m).is_empty());
        assert_eq!(log(&ro).len(), 2, "only the read was bracketed");
    }

    #[test]
    fn a_failed_end_on_drop_is_reported_by_the_next_guard_once() {
        let m = mapping(4, 16);
        m.backend.fail_end.set(true);
        drop(m.read().expect("read"));
        m.backend.fail_end.set(false);
        let e = m.read().expect_err("deferred");
        assert!(matches!(&e, Error::DeferredEnd { .. }), "{e:?}");
        assert_eq!((e.errno(), e.op()), (Some(Errno::EIO), Some(Op::DmaBufIoctlSyncEnd)));
        assert!(m.read().is_ok(), "reported once");
        // An explicit end reports at once and leaves nothing behind.
        m.backend.fail_end.set(true);
        assert!(m.read().expect("read").end().is_err());
        m.backend.fail_end.set(false);
        assert!(m.read().is_ok());
    }

    #[test]
    fn a_bracket_whose_bytes_cannot_be_had_is_closed() {
        let m = mapping(5, 16);
        m.backend.fail_bytes.set(true);
        assert!(m.read().is_err());
        assert_eq!(
            log(&m),
            vec![(START, SyncFlags::Read, None, false, true), (END, SyncFlags::Read, None, false, true)]
        );
    }

    #[test]
    fn one_mapping_per_buffer_is_enforced_by_the_registry() {
        let a = REGISTRY.register((9, 42), || "buffer 42".into()).expect("first");
        match REGISTRY.register((9, 42), || "buffer 42".into()) {
            Err(Error::AlreadyMapped { buffer }) => assert_eq!(buffer, "buffer 42"),
            other => panic!("{other:?}"),
        }
        let other = REGISTRY.register((9, 43), String::new).expect("other buffer");
        drop(a);
        let again = REGISTRY.register((9, 42), String::new).expect("after drop");
        drop((other, again));
    }
}
