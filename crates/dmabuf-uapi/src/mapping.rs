//! The guarded mapping, written once over a thin backend hook ([`CpuMapping`]: the sync
//! ioctl's `START` and `END`, and the bytes).
//!
//! [`Mapping`] checks what every backend would otherwise check again (a guard's range,
//! write access, the error a dropped guard left behind) and makes the guards: a guard's
//! creation is `DMA_BUF_IOCTL_SYNC` with `DMA_BUF_SYNC_START` and its flags, its drop the
//! `DMA_BUF_SYNC_END` with the same flags. An `END` that fails in a destructor is kept and
//! returned by the next guard of the mapping ([`Error::DeferredEnd`]), since a destructor
//! cannot return it. [`MapRegistry`] keeps the one-mapping-per-buffer rule.

use std::fmt;
use std::ops::{Deref, DerefMut, Range};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::data::SyncFlags;
use crate::error::{Error, Result};
use crate::traits::{self, CpuAccess};
use crate::validate;

/// What a backend provides for a CPU mapping: its length, the sync ioctl, and the bytes.
/// Validation, the guards and the deferred errors are [`Mapping`]'s.
///
/// Ranges are relative to the mapping's start.
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

    /// `DMA_BUF_IOCTL_SYNC` with `DMA_BUF_SYNC_START | flags`, for an access to `range`
    /// (the kernel ioctl has no range; a backend may use it to limit maintenance).
    fn sync_start(&self, flags: SyncFlags, range: &Range<usize>) -> Result<()>;

    /// `DMA_BUF_IOCTL_SYNC` with `DMA_BUF_SYNC_END | flags`, for the same access.
    fn sync_end(&self, flags: SyncFlags, range: &Range<usize>) -> Result<()>;

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
}

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
        Mapping { backend, deferred: Deferred::default(), _registration: registration }
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
    fn begin(&self, flags: SyncFlags, range: &Range<usize>) -> Result<()> {
        validate::range(range, self.backend.len())?;
        if flags.writes() && !self.backend.writable() {
            return Err(Error::NotWritable);
        }
        if let Some(e) = self.deferred.take() {
            return Err(Error::DeferredEnd { source: Box::new(e) });
        }
        self.backend.sync_start(flags, range)
    }

    /// A bracket that is open but has no guard (taking the bytes failed): closed at once.
    fn abandon(&self, flags: SyncFlags, range: &Range<usize>, e: Error) -> Error {
        let _ = self.backend.sync_end(flags, range);
        e
    }

    /// Begins a read of `range` (`SYNC_START | SYNC_READ`).
    #[inline]
    pub fn read_range(&self, range: Range<usize>) -> Result<ReadGuard<'_, B>> {
        self.begin(SyncFlags::Read, &range)?;
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
        this.begin(flags, &range)?;
        // SAFETY: the guard keeps the only borrow of the mapping (taken mutably) for as long
        // as the bytes live, so no other guard, hence no other bytes, can exist.
        match unsafe { this.backend.write_bytes(range.clone()) } {
            Ok(bytes) => Ok(WriteGuard { mapping: this, flags, range, bytes, ended: false }),
            Err(e) => Err(this.abandon(flags, &range, e)),
        }
    }

    /// Begins a write of `range` (`SYNC_START | SYNC_WRITE`): its previous content is not
    /// needed.
    #[inline]
    pub fn write_range(&mut self, range: Range<usize>) -> Result<WriteGuard<'_, B>> {
        self.write_guard(SyncFlags::Write, range)
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
        self.mapping.backend.sync_end(SyncFlags::Read, &self.range)
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
            && let Err(e) = self.mapping.backend.sync_end(SyncFlags::Read, &self.range)
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
        let backend = &self.mapping.backend;
        let stored = backend.store(&self.bytes, &self.range);
        let ended = backend.sync_end(self.flags, &self.range);
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
    use crate::errno::Errno;
    use crate::error::Op;

    /// A backend over a plain vector that logs its ioctls and fails them on request.
    #[derive(Default)]
    struct Fake {
        bytes: RefCell<Vec<u8>>,
        read_only: bool,
        log: RefCell<Vec<(bool, SyncFlags, Range<usize>)>>,
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
        fn sync_start(&self, flags: SyncFlags, range: &Range<usize>) -> Result<()> {
            self.log.borrow_mut().push((true, flags, range.clone()));
            Ok(())
        }
        fn sync_end(&self, flags: SyncFlags, range: &Range<usize>) -> Result<()> {
            self.log.borrow_mut().push((false, flags, range.clone()));
            if self.fail_end.get() {
                return Err(Error::Os { op: Op::DmaBufIoctlSyncEnd, errno: Errno::EIO });
            }
            Ok(())
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

    fn mapping(key: u64, len: usize) -> Mapping<Fake> {
        let fake = Fake { bytes: RefCell::new(vec![0; len]), ..Fake::default() };
        Mapping::new(fake, REGISTRY.register((0, key), || format!("fake {key}")).expect("register"))
    }

    fn log(m: &Mapping<Fake>) -> Vec<(bool, SyncFlags, Range<usize>)> {
        m.backend.log.take()
    }

    #[test]
    fn guards_bracket_their_access_with_their_flags_and_range() {
        let mut m = mapping(1, 16);
        {
            let mut w = m.write_range(4..8).expect("write");
            assert_eq!(w.flags(), SyncFlags::Write);
            w.copy_from_slice(b"abcd");
        }
        assert_eq!(&m.read().expect("read")[4..8], b"abcd");
        m.read_write().expect("rw").end().expect("end");
        assert_eq!(
            log(&m),
            vec![
                (true, SyncFlags::Write, 4..8),
                (false, SyncFlags::Write, 4..8),
                (true, SyncFlags::Read, 0..16),
                (false, SyncFlags::Read, 0..16),
                (true, SyncFlags::ReadWrite, 0..16),
                (false, SyncFlags::ReadWrite, 0..16),
            ]
        );
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
        assert_eq!(log(&m), vec![(true, SyncFlags::Read, 0..16), (false, SyncFlags::Read, 0..16)]);
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
