//! User-space CPU access: `mmap` of the buffer's fd, `DMA_BUF_IOCTL_SYNC`, and the ranged
//! `DMA_BUF_IOCTL_SYNC_PARTIAL` of vendor kernels with the proposed
//! `DMA_BUF_SYNC_OVERWRITE` (docs/proposals/sync-partial.md).
//!
//! `DMA_BUF_IOCTL_SYNC_PARTIAL` takes `struct dma_buf_sync_partial { __u64 flags; __u32
//! offset; __u32 len; }` and is checked as Rockchip's `dma_buf_ioctl` checks it
//! (drivers/dma-buf/dma-buf.c of its BSP, `CONFIG_DMABUF_PARTIAL`): a zero length does
//! nothing, a range past the end is `EINVAL`, flags as for `DMA_BUF_IOCTL_SYNC`. Upstream
//! has no such ioctl (`ENOTTY`, [`Error::NoSyncPartial`]); a program falls back to
//! `DMA_BUF_IOCTL_SYNC`, as Rockchip's MPP does (`mpp_dmabuf_sync_partial_begin`).

use std::ops::Range;

use dmabuf_sim::{CpuMapId, DmaDirection, WriteId};

use crate::bracket::CpuBracket;
use crate::dma_buf::DmaBuf;
use crate::error::Error;
use crate::ranges::RangeSet;
use crate::report::Report;
use crate::state::{BufferId, Inner};
use crate::uapi::{SyncFlags, SyncPhase};

// The raw flag words, as the uapi crate defines them (one definition of each bit).
/// `DMA_BUF_SYNC_READ`.
pub const DMA_BUF_SYNC_READ: u64 = SyncFlags::READ_BIT as u64;
/// `DMA_BUF_SYNC_WRITE`.
pub const DMA_BUF_SYNC_WRITE: u64 = SyncFlags::WRITE_BIT as u64;
/// `DMA_BUF_SYNC_RW`.
pub const DMA_BUF_SYNC_RW: u64 = DMA_BUF_SYNC_READ | DMA_BUF_SYNC_WRITE;
/// `DMA_BUF_SYNC_START`.
pub const DMA_BUF_SYNC_START: u64 = SyncPhase::Start.bits();
/// `DMA_BUF_SYNC_END`.
pub const DMA_BUF_SYNC_END: u64 = SyncPhase::End.bits();
pub use crate::uapi::DMA_BUF_SYNC_OVERWRITE;
// include/uapi/linux/dma-buf.h's values.
const _: () =
    assert!(DMA_BUF_SYNC_READ == 1 && DMA_BUF_SYNC_WRITE == 2 && DMA_BUF_SYNC_START == 0 && DMA_BUF_SYNC_END == 4);

/// Decodes `DMA_BUF_IOCTL_SYNC` flags as the kernel does: any bit outside RW|END, or no
/// direction, is EINVAL. Returns (is end, direction).
pub fn decode_sync_flags(flags: u64) -> Option<(bool, DmaDirection)> {
    if flags & !(DMA_BUF_SYNC_RW | DMA_BUF_SYNC_END) != 0 {
        return None;
    }
    let dir = match flags & DMA_BUF_SYNC_RW {
        DMA_BUF_SYNC_READ => DmaDirection::FromDevice,
        DMA_BUF_SYNC_WRITE => DmaDirection::ToDevice,
        DMA_BUF_SYNC_RW => DmaDirection::Bidirectional,
        _ => return None,
    };
    Some((flags & DMA_BUF_SYNC_END != 0, dir))
}

/// Decodes `DMA_BUF_IOCTL_SYNC_PARTIAL` flags as the proposal defines them: those of
/// `DMA_BUF_IOCTL_SYNC`, plus `DMA_BUF_SYNC_OVERWRITE` on a `START` of a write alone
/// (`WRITE`, not `RW`: a bracket that reads cannot give up the bytes it reads). Returns
/// (is end, direction, overwrite).
pub fn decode_sync_partial_flags(flags: u64) -> Option<(bool, DmaDirection, bool)> {
    let overwrite = flags & DMA_BUF_SYNC_OVERWRITE != 0;
    let (end, dir) = decode_sync_flags(flags & !DMA_BUF_SYNC_OVERWRITE)?;
    if overwrite && (end || dir != DmaDirection::ToDevice) {
        return None;
    }
    Some((end, dir, overwrite))
}

/// The CPU touched `r` of buffer `id` while a user-space bracket is open: what the bracket
/// declared holds it to (its range, an overwrite's unwritten bytes).
pub(crate) fn note_user_access(i: &mut Inner, id: usize, r: Range<u64>, write: bool) {
    let buffer = BufferId(id as u32);
    let Some((bracket, written)) = &mut i.bufs[id].user_bracket else {
        i.reports.push(Report::AccessOutsideBracket { buffer, range: r, write });
        return;
    };
    let declared = bracket.range.clone();
    let outside = if bracket.partial { bracket.outside(&r) } else { None };
    let unwritten = if write { None } else { bracket.read_before_write(&r, written) };
    if write {
        written.insert(r);
    }
    if let Some(range) = outside {
        i.reports.push(Report::AccessOutsideRange { buffer, range, declared: declared.clone(), write });
    }
    if let Some(range) = unwritten {
        i.reports.push(Report::ReadInOverwrite { buffer, range, declared });
    }
}

impl DmaBuf {
    /// `mmap` of the buffer for user space, with the exporter's attribute.
    pub fn mmap(&self) -> Result<UserMapping, Error> {
        if let Err(reason) = self.with(|i, id| i.bufs[id].exporter.mmap()) {
            return Err(Error::MmapRefused { buffer: self.name(), reason });
        }
        let map = self.with(|i, id| {
            let b = i.bufs[id].exporter.backing().clone();
            let m = i.sim.cpu_map(&b.pages, b.attr);
            if m.is_ok() {
                i.bufs[id].mmaps += 1;
            }
            m
        })?;
        Ok(UserMapping { buf: self.clone(), map })
    }
}

/// A user-space `mmap` of a buffer. Unmaps on drop.
///
/// The safe way in is the guards ([`UserMapping::read`], [`UserMapping::write`]), which
/// issue the sync ioctl around the access. The raw way ([`raw::sync_ioctl`](crate::raw::sync_ioctl),
/// [`raw::mmap_read`](crate::raw::mmap_read), [`raw::mmap_write`](crate::raw::mmap_write)) does exactly what a
/// program asks, and the framework reports what it gets wrong.
pub struct UserMapping {
    buf: DmaBuf,
    map: CpuMapId,
}

impl Drop for UserMapping {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.buf.sys.0.try_borrow_mut() {
            let _ = inner.sim.cpu_unmap(self.map);
            let b = &mut inner.bufs[self.buf.id];
            b.mmaps = b.mmaps.saturating_sub(1);
        }
    }
}

impl UserMapping {
    /// `DMA_BUF_IOCTL_SYNC` with raw flags, as a program issues it. Invalid flags are
    /// refused with EINVAL (and reported); an END without a START is reported.
    pub(crate) fn sync(&self, flags: u64) -> Result<(), Error> {
        let buffer = self.buf.id();
        let Some((end, dir)) = decode_sync_flags(flags) else {
            self.buf.with(|i, _| i.reports.push(Report::BadSyncFlags { buffer, flags }));
            return Err(Error::BadSyncFlags { flags });
        };
        let bracket = CpuBracket::full(dir, self.buf.size());
        if end { self.end(bracket) } else { self.start(bracket) }
    }

    /// `DMA_BUF_IOCTL_SYNC_PARTIAL` with raw flags over `len` bytes from `offset`, as a
    /// program issues it. Upstream answers [`Error::NoSyncPartial`] (`ENOTTY`); a kernel
    /// that has the ioctl but not `DMA_BUF_SYNC_OVERWRITE` answers [`Error::NoOverwrite`]
    /// (`EINVAL`); neither is a misuse (a program probes with them). A zero length does
    /// nothing; a range past the end is [`Error::OutOfBounds`]; flags no kernel accepts are
    /// refused and reported as for [`UserMapping::sync`].
    pub(crate) fn sync_partial(&self, flags: u64, offset: u32, len: u32) -> Result<(), Error> {
        let policy = self.buf.with(|i, _| i.cfg.maintenance);
        if !policy.has_sync_partial() {
            return Err(Error::NoSyncPartial);
        }
        if len == 0 {
            return Ok(());
        }
        let range = u64::from(offset)..u64::from(offset) + u64::from(len);
        self.buf.check_range(&range)?;
        let buffer = self.buf.id();
        let Some((end, dir, overwrite)) = decode_sync_partial_flags(flags) else {
            self.buf.with(|i, _| i.reports.push(Report::BadSyncFlags { buffer, flags }));
            return Err(Error::BadSyncPartialFlags { flags });
        };
        if overwrite && !policy.honours_overwrite() {
            return Err(Error::NoOverwrite { flags });
        }
        let bracket = CpuBracket { dir, range, partial: true, overwrite };
        if end { self.end(bracket) } else { self.start(bracket) }
    }

    /// The sync ioctl as this crate's guards issue it: `DMA_BUF_IOCTL_SYNC_PARTIAL` over
    /// the bytes the access touches, falling back to `DMA_BUF_IOCTL_SYNC` where the kernel
    /// does not have it (or the range does not fit its 32-bit fields).
    fn sync_access(&self, flags: u64, r: &Range<u64>) -> Result<(), Error> {
        let whole = r.start == 0 && r.end == self.buf.size();
        if let (false, Ok(offset), Ok(len)) = (whole, u32::try_from(r.start), u32::try_from(r.end - r.start)) {
            match self.sync_partial(flags, offset, len) {
                Err(Error::NoSyncPartial) => {}
                other => return other,
            }
        }
        self.sync(flags)
    }

    fn start(&self, bracket: CpuBracket) -> Result<(), Error> {
        self.buf.begin_cpu_bracket(&bracket)?;
        self.buf.with(|i, id| i.bufs[id].user_bracket = Some((bracket, RangeSet::new())));
        Ok(())
    }

    /// The END: what the bracket wrote inside the end's range is handed over; what it
    /// wrote outside it is not, and is reported.
    fn end(&self, end: CpuBracket) -> Result<(), Error> {
        let buffer = self.buf.id();
        let open = self.buf.with(|i, id| i.bufs[id].user_bracket.take());
        let written = match open {
            None => {
                self.buf.with(|i, _| i.reports.push(Report::DoubleEnd { buffer }));
                RangeSet::new()
            }
            Some((started, written)) => {
                if started.dir != end.dir {
                    let ended = end.dir;
                    self.buf
                        .with(|i, _| i.reports.push(Report::DirectionMismatch { buffer, started: started.dir, ended }));
                }
                self.buf.check_overwrite(&started, &written);
                let mut missed = written.clone();
                missed.remove(end.range.clone());
                if let Some(first) = missed.iter().next() {
                    let end_range = end.range.clone();
                    self.buf
                        .with(|i, _| i.reports.push(Report::EndMissesWrites { buffer, missed: first, end: end_range }));
                }
                written.within(end.range.clone())
            }
        };
        self.buf.end_cpu_bracket(&end, &written)
    }

    /// Reads through the mapping with no bracket check beyond a report.
    pub(crate) fn read_unsynced(&self, at: u64, out: &mut [u8]) -> Result<(), Error> {
        let r = at..at.saturating_add(out.len() as u64);
        self.buf.check_range(&r)?;
        self.note_access(r, false);
        self.buf.with(|i, _| i.sim.cpu_read(self.map, at, out))?;
        Ok(())
    }

    /// Writes through the mapping with no bracket check beyond a report.
    pub(crate) fn write_unsynced(&self, at: u64, data: &[u8]) -> Result<WriteId, Error> {
        let r = at..at.saturating_add(data.len() as u64);
        self.buf.check_range(&r)?;
        self.note_access(r, true);
        Ok(self.buf.with(|i, _| i.sim.cpu_write(self.map, at, data))?)
    }

    fn note_access(&self, r: Range<u64>, write: bool) {
        self.buf.with(|i, id| {
            if write {
                i.bufs[id].cpu_written(r.clone());
            }
            note_user_access(i, id, r, write);
        });
    }

    /// Reads buffer range `r` inside a READ bracket over it (`SYNC_START|READ` before,
    /// `SYNC_END|READ` after, ranged where the kernel can).
    pub fn read(&self, r: Range<u64>) -> Result<Vec<u8>, Error> {
        self.buf.check_range(&r)?;
        self.sync_access(DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ, &r)?;
        let mut out = vec![0u8; (r.end - r.start) as usize];
        let res = self.read_unsynced(r.start, &mut out);
        self.sync_access(DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ, &r)?;
        res.map(|()| out)
    }

    /// Writes `data` at `at` inside a WRITE bracket over it.
    pub fn write(&self, at: u64, data: &[u8]) -> Result<WriteId, Error> {
        self.write_with(at, data, 0)
    }

    /// Writes `data` at `at` inside a WRITE bracket that declares it overwrites those bytes
    /// whole (`DMA_BUF_SYNC_OVERWRITE`), which it does: where the kernel honours it, the
    /// lines the range covers whole are not invalidated first. Elsewhere it is
    /// [`UserMapping::write`].
    pub fn overwrite(&self, at: u64, data: &[u8]) -> Result<WriteId, Error> {
        let honoured = self.buf.with(|i, _| i.cfg.maintenance.honours_overwrite());
        self.write_with(at, data, if honoured { DMA_BUF_SYNC_OVERWRITE } else { 0 })
    }

    fn write_with(&self, at: u64, data: &[u8], extra: u64) -> Result<WriteId, Error> {
        let r = at..at.saturating_add(data.len() as u64);
        self.buf.check_range(&r)?;
        if extra != 0 {
            // Only the ranged ioctl carries the flag.
            let (offset, len) = (u32::try_from(r.start), u32::try_from(r.end - r.start));
            let (Ok(offset), Ok(len)) = (offset, len) else { return self.write_with(at, data, 0) };
            self.sync_partial(DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE | extra, offset, len)?;
        } else {
            self.sync_access(DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE, &r)?;
        }
        let res = self.write_unsynced(at, data);
        self.sync_access(DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE, &r)?;
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_flags_follow_the_kernel() {
        assert_eq!(decode_sync_flags(DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ), Some((false, DmaDirection::FromDevice)));
        assert_eq!(decode_sync_flags(DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW), Some((true, DmaDirection::Bidirectional)));
        assert_eq!(decode_sync_flags(DMA_BUF_SYNC_WRITE), Some((false, DmaDirection::ToDevice)));
        assert_eq!(decode_sync_flags(DMA_BUF_SYNC_END), None, "END without a direction");
        assert_eq!(decode_sync_flags(0), None, "no direction");
        assert_eq!(decode_sync_flags(8 | DMA_BUF_SYNC_READ), None, "an unknown bit");
    }
}
