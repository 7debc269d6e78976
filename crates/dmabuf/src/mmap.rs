//! User-space CPU access: `mmap` of the buffer's fd and `DMA_BUF_IOCTL_SYNC`.

use std::ops::Range;

use dmabuf_sim::{CpuMapId, DmaDirection, WriteId};

use crate::dma_buf::DmaBuf;
use crate::error::Error;
use crate::ranges::RangeSet;
use crate::report::Report;

/// `DMA_BUF_SYNC_READ`.
pub const DMA_BUF_SYNC_READ: u64 = 1;
/// `DMA_BUF_SYNC_WRITE`.
pub const DMA_BUF_SYNC_WRITE: u64 = 2;
/// `DMA_BUF_SYNC_RW`.
pub const DMA_BUF_SYNC_RW: u64 = 3;
/// `DMA_BUF_SYNC_START`.
pub const DMA_BUF_SYNC_START: u64 = 0;
/// `DMA_BUF_SYNC_END`.
pub const DMA_BUF_SYNC_END: u64 = 4;

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
        self.sync_range(flags, 0..self.buf.size())
    }

    /// The sync ioctl as this crate's guards (and [`crate::user`]'s) issue it: the
    /// bracket declares the range the access will touch (the kernel ioctl has no range;
    /// the framework uses it to keep `Minimal` maintenance to the bytes involved). Flags
    /// are checked and misuse reported as for [`UserMapping::sync`].
    pub(crate) fn sync_range(&self, flags: u64, range: Range<u64>) -> Result<(), Error> {
        let buffer = self.buf.id();
        let Some((end, dir)) = decode_sync_flags(flags) else {
            self.buf.with(|i, _| i.reports.push(Report::BadSyncFlags { buffer, flags }));
            return Err(Error::BadSyncFlags { flags });
        };
        if !end {
            self.buf.begin_cpu_bracket(dir, range)?;
            self.buf.with(|i, id| i.bufs[id].user_bracket = Some((dir, RangeSet::new())));
            return Ok(());
        }
        let open = self.buf.with(|i, id| i.bufs[id].user_bracket.take());
        let written = match open {
            None => {
                self.buf.with(|i, _| i.reports.push(Report::DoubleEnd { buffer }));
                RangeSet::new()
            }
            Some((started, written)) => {
                if started != dir {
                    self.buf.with(|i, _| i.reports.push(Report::DirectionMismatch { buffer, started, ended: dir }));
                }
                written
            }
        };
        self.buf.end_cpu_bracket(dir, &written)
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
        let buffer = self.buf.id();
        if write {
            self.buf.with(|i, id| i.bufs[id].cpu_written(r.clone()));
        }
        self.buf.with(|i, id| match &mut i.bufs[id].user_bracket {
            Some((_, written)) => {
                if write {
                    written.insert(r);
                }
            }
            None => i.reports.push(Report::AccessOutsideBracket { buffer, range: r, write }),
        });
    }

    /// Reads buffer range `r` inside a READ bracket (SYNC_START|READ before, SYNC_END|READ
    /// after).
    pub fn read(&self, r: Range<u64>) -> Result<Vec<u8>, Error> {
        self.buf.check_range(&r)?;
        self.sync_range(DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ, r.clone())?;
        let mut out = vec![0u8; (r.end - r.start) as usize];
        let res = self.read_unsynced(r.start, &mut out);
        self.sync_range(DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ, r)?;
        res.map(|()| out)
    }

    /// Writes `data` at `at` inside a WRITE bracket.
    pub fn write(&self, at: u64, data: &[u8]) -> Result<WriteId, Error> {
        let r = at..at.saturating_add(data.len() as u64);
        self.buf.check_range(&r)?;
        self.sync_range(DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE, r.clone())?;
        let res = self.write_unsynced(at, data);
        self.sync_range(DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE, r)?;
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
