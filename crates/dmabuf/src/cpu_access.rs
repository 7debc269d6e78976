//! Kernel CPU access: the `begin_cpu_access` / `end_cpu_access` bracket and the
//! exporter's kernel mapping (`vmap`) that code inside it reads and writes through.

use std::ops::Range;

use dmabuf_sim::{CpuMapId, DmaDirection, WriteId};

use crate::bracket::CpuBracket;
use crate::dma_buf::DmaBuf;
use crate::error::Error;
use crate::ranges::RangeSet;
use crate::report::Report;
use crate::state::Inner;

impl DmaBuf {
    /// `dma_buf_begin_cpu_access`: the kernel's CPU bracket. The bytes are read and
    /// written through the returned guard; dropping it is `dma_buf_end_cpu_access`.
    pub fn begin_cpu_access(&self, dir: DmaDirection) -> Result<CpuAccess<'_>, Error> {
        self.begin_cpu_access_with(CpuBracket::full(dir, self.size()))
    }

    /// `dma_buf_begin_cpu_access_partial` (Android kernels): a bracket declared to touch
    /// only `range`, so the maintenance can be limited to it. Accesses outside it fail.
    /// Dropping the guard is `dma_buf_end_cpu_access_partial` over the same range.
    pub fn begin_cpu_access_partial(&self, dir: DmaDirection, range: Range<u64>) -> Result<CpuAccess<'_>, Error> {
        self.begin_cpu_access_with(CpuBracket::partial(dir, range))
    }

    /// A write bracket over `range` that overwrites every byte of it before it ends
    /// (proposed: docs/proposals/sync-partial.md): the previous contents are not needed, so
    /// a kernel that honours it skips the invalidate of the lines the range covers whole.
    /// Reading a byte before writing it, or ending with bytes unwritten, is reported
    /// ([`Report::ReadInOverwrite`], [`Report::OverwriteNotWhole`]). Where the kernel does
    /// not honour it ([`crate::MaintenancePolicy::honours_overwrite`]) it is a plain ranged
    /// write bracket.
    pub fn begin_cpu_access_overwrite(&self, range: Range<u64>) -> Result<CpuAccess<'_>, Error> {
        self.begin_cpu_access_with(CpuBracket::overwrite(range))
    }

    /// The kernel bracket `bracket` declares, with a guard.
    pub fn begin_cpu_access_with(&self, bracket: CpuBracket) -> Result<CpuAccess<'_>, Error> {
        self.check_range(&bracket.range)?;
        let bracket = self.honoured(bracket);
        self.begin_cpu_bracket(&bracket)?;
        self.with(|i, id| i.bufs[id].kernel_brackets += 1);
        Ok(CpuAccess { buf: self, bracket, written: RangeSet::new(), ended: false })
    }

    /// `dma_buf_begin_cpu_access` (or its partial or overwrite form, as `bracket` says)
    /// without a guard, as kernel code calls it: the bracket stays open until
    /// [`raw::end_cpu_access`](crate::raw::end_cpu_access). Accesses in between go through a
    /// [`Vmap`]. This path exists to express what real code gets wrong; the guard of
    /// [`DmaBuf::begin_cpu_access`] is the safe one.
    pub(crate) fn begin_cpu_access_raw(&self, bracket: CpuBracket) -> Result<(), Error> {
        self.check_range(&bracket.range)?;
        let bracket = self.honoured(bracket);
        self.begin_cpu_bracket(&bracket)?;
        self.with(|i, id| {
            let b = &mut i.bufs[id];
            b.kernel_brackets += 1;
            b.raw_brackets.push(bracket);
        });
        Ok(())
    }

    /// `dma_buf_end_cpu_access` without a guard (on the whole buffer: the call has no
    /// range). An end with no bracket open, or with another direction than its begin, is
    /// reported; the exporter's end runs anyway, as in the kernel.
    pub(crate) fn end_cpu_access_raw(&self, dir: DmaDirection) -> Result<(), Error> {
        let buffer = self.id();
        let (started, written) = self.with(|i, id| {
            let b = &mut i.bufs[id];
            match b.raw_brackets.pop() {
                None => {
                    i.reports.push(Report::DoubleEnd { buffer });
                    (None, RangeSet::new())
                }
                Some(started) => {
                    if started.dir != dir {
                        i.reports.push(Report::DirectionMismatch { buffer, started: started.dir, ended: dir });
                    }
                    b.kernel_brackets = b.kernel_brackets.saturating_sub(1);
                    let w = if b.kernel_brackets == 0 {
                        std::mem::take(&mut b.kernel_written)
                    } else {
                        b.kernel_written.clone()
                    };
                    (Some(started), w)
                }
            }
        });
        if let Some(started) = &started {
            self.check_overwrite(started, &written);
        }
        self.end_cpu_bracket(&CpuBracket::full(dir, self.size()), &written)
    }

    /// `dma_buf_vmap` without a guard: the mapping stays until [`raw::vunmap`](crate::raw::vunmap).
    pub(crate) fn vmap_raw(&self) -> Result<(), Error> {
        let mut inner = self.sys.0.borrow_mut();
        self.kmap(&mut inner)?;
        let b = &mut inner.bufs[self.id];
        b.vmaps += 1;
        b.exporter.vmap();
        Ok(())
    }

    /// `dma_buf_vunmap` without a guard; a vunmap of what is not vmapped is reported.
    pub(crate) fn vunmap_raw(&self) -> Result<(), Error> {
        let buffer = self.id();
        let ok = self.with(|i, id| {
            let b = &mut i.bufs[id];
            if b.vmaps == 0 {
                i.reports.push(Report::VunmapNotMapped { buffer });
                return false;
            }
            b.vmaps -= 1;
            b.exporter.vunmap();
            true
        });
        if ok { Ok(()) } else { Err(Error::NotMapped { buffer: self.name(), device: "the kernel (vmap)".into() }) }
    }

    /// Whether the kernel holds a vmap of the buffer.
    pub fn is_vmapped(&self) -> bool {
        self.with(|i, id| i.bufs[id].vmaps > 0)
    }

    /// A CPU read through the kernel mapping, as code holding a vmap does it: inside a
    /// bracket or reported.
    pub(crate) fn kernel_read(&self, at: u64, out: &mut [u8]) -> Result<(), Error> {
        let r = at..at.saturating_add(out.len() as u64);
        self.check_range(&r)?;
        self.note_kernel_access(r, false);
        let mut inner = self.sys.0.borrow_mut();
        let m = self.kmap(&mut inner)?;
        Ok(inner.sim.cpu_read(m, at, out)?)
    }

    /// A CPU write through the kernel mapping: inside a bracket or reported.
    pub(crate) fn kernel_write(&self, at: u64, data: &[u8]) -> Result<WriteId, Error> {
        let r = at..at.saturating_add(data.len() as u64);
        self.check_range(&r)?;
        self.note_kernel_access(r, true);
        let mut inner = self.sys.0.borrow_mut();
        let m = self.kmap(&mut inner)?;
        Ok(inner.sim.cpu_write(m, at, data)?)
    }

    fn note_kernel_access(&self, r: Range<u64>, write: bool) {
        let buffer = self.id();
        self.with(|i, id| {
            let b = &mut i.bufs[id];
            if write {
                b.cpu_written(r.clone());
            }
            if b.kernel_brackets > 0 {
                if write {
                    b.kernel_written.insert(r);
                } else if let Some((declared, range)) = b
                    .raw_brackets
                    .iter()
                    .find_map(|k| k.read_before_write(&r, &b.kernel_written).map(|u| (k.range.clone(), u)))
                {
                    i.reports.push(Report::ReadInOverwrite { buffer, range, declared });
                }
            } else {
                // Inside the user's bracket, or outside every bracket.
                crate::mmap::note_user_access(i, id, r, write);
            }
        });
    }

    /// `dma_buf_vmap`: a kernel mapping of the whole buffer.
    pub fn vmap(&self) -> Result<Vmap<'_>, Error> {
        self.vmap_raw()?;
        Ok(Vmap { buf: self })
    }

    pub(crate) fn kmap(&self, inner: &mut Inner) -> Result<CpuMapId, Error> {
        if let Some(m) = inner.bufs[self.id].kmap {
            return Ok(m);
        }
        let b = inner.bufs[self.id].exporter.backing().clone();
        let m = inner.sim.cpu_map(&b.pages, b.attr)?;
        inner.bufs[self.id].kmap = Some(m);
        Ok(m)
    }
}

/// A kernel CPU-access bracket. Reads and writes go through the exporter's kernel
/// mapping (vmap); dropping the guard (or [`CpuAccess::end`]) is `dma_buf_end_cpu_access`.
pub struct CpuAccess<'a> {
    buf: &'a DmaBuf,
    bracket: CpuBracket,
    written: RangeSet,
    ended: bool,
}

impl CpuAccess<'_> {
    /// The bracket as the kernel took it (an overwrite only where the kernel honours one).
    pub fn bracket(&self) -> &CpuBracket {
        &self.bracket
    }

    /// Reads buffer range `r`. In an overwrite bracket, bytes not written in it yet hold
    /// no defined value: reading them is reported.
    pub fn read(&mut self, r: Range<u64>) -> Result<Vec<u8>, Error> {
        self.check(&r)?;
        if let Some(range) = self.bracket.read_before_write(&r, &self.written) {
            let (buffer, declared) = (self.buf.id(), self.bracket.range.clone());
            self.buf.with(|i, _| i.reports.push(Report::ReadInOverwrite { buffer, range, declared }));
        }
        let mut inner = self.buf.sys.0.borrow_mut();
        let m = self.buf.kmap(&mut inner)?;
        let mut out = vec![0u8; (r.end - r.start) as usize];
        inner.sim.cpu_read(m, r.start, &mut out)?;
        Ok(out)
    }

    /// Writes `data` at buffer offset `at`.
    pub fn write(&mut self, at: u64, data: &[u8]) -> Result<WriteId, Error> {
        let r = at..at.saturating_add(data.len() as u64);
        self.check(&r)?;
        let mut inner = self.buf.sys.0.borrow_mut();
        let m = self.buf.kmap(&mut inner)?;
        let w = inner.sim.cpu_write(m, at, data)?;
        inner.bufs[self.buf.id].cpu_written(r.clone());
        self.written.insert(r);
        Ok(w)
    }

    /// Fills buffer range `r` with `byte`.
    pub fn fill(&mut self, r: Range<u64>, byte: u8) -> Result<WriteId, Error> {
        self.check(&r)?;
        let mut inner = self.buf.sys.0.borrow_mut();
        let m = self.buf.kmap(&mut inner)?;
        let w = inner.sim.cpu_fill(m, r.start, r.end - r.start, byte)?;
        inner.bufs[self.buf.id].cpu_written(r.clone());
        self.written.insert(r);
        Ok(w)
    }

    /// Accesses must stay inside the bracket's declared range.
    fn check(&self, r: &Range<u64>) -> Result<(), Error> {
        if r.start < self.bracket.range.start || r.end > self.bracket.range.end || r.start > r.end {
            return Err(Error::OutOfBounds {
                buffer: self.buf.name(),
                start: r.start,
                end: r.end,
                size: self.buf.size(),
            });
        }
        Ok(())
    }

    /// Ends the bracket, returning any error the maintenance hit.
    pub fn end(mut self) -> Result<(), Error> {
        self.ended = true;
        self.finish()
    }

    fn finish(&mut self) -> Result<(), Error> {
        let vmap_written = self.buf.with(|i, id| {
            let b = &mut i.bufs[id];
            b.kernel_brackets = b.kernel_brackets.saturating_sub(1);
            if b.kernel_brackets == 0 { std::mem::take(&mut b.kernel_written) } else { b.kernel_written.clone() }
        });
        self.written.union(&vmap_written);
        self.buf.check_overwrite(&self.bracket, &self.written);
        let end = CpuBracket { overwrite: false, ..self.bracket.clone() };
        self.buf.end_cpu_bracket(&end, &self.written)
    }
}

impl Drop for CpuAccess<'_> {
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.finish();
        }
    }
}

/// A kernel mapping of a buffer (`dma_buf_vmap`). Kernel code reads and writes through
/// it inside brackets it opens itself ([`DmaBuf::begin_cpu_access`]); an access outside
/// any bracket is reported. Dropping it is `dma_buf_vunmap`.
pub struct Vmap<'a> {
    buf: &'a DmaBuf,
}

impl Vmap<'_> {
    /// Reads at `at`.
    pub fn read(&self, at: u64, out: &mut [u8]) -> Result<(), Error> {
        self.buf.kernel_read(at, out)
    }

    /// Writes `data` at `at`.
    pub fn write(&self, at: u64, data: &[u8]) -> Result<WriteId, Error> {
        self.buf.kernel_write(at, data)
    }
}

impl Drop for Vmap<'_> {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.buf.sys.0.try_borrow_mut() {
            let b = &mut inner.bufs[self.buf.id];
            b.vmaps = b.vmaps.saturating_sub(1);
            b.exporter.vunmap();
        }
    }
}
