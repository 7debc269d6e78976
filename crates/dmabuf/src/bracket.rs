//! What a CPU access bracket declares when it begins, and the rules its accesses keep.
//!
//! A bracket is `dma_buf_begin_cpu_access` / `dma_buf_end_cpu_access` in the kernel, or
//! `DMA_BUF_IOCTL_SYNC` with `START` and `END` from user space. The full calls cover the
//! whole buffer; the ranged ones (`dma_buf_begin_cpu_access_partial` of Android kernels,
//! `DMA_BUF_IOCTL_SYNC_PARTIAL` of Rockchip's) declare the bytes the CPU will touch, and
//! a write bracket may declare that it overwrites its range whole (`DMA_BUF_SYNC_OVERWRITE`,
//! proposed in `docs/proposals/sync-partial.md`, after OpenGL's
//! `GL_MAP_INVALIDATE_RANGE_BIT`): the bytes' previous contents are not needed, so the
//! kernel need not invalidate the lines the range covers whole.
//!
//! A declaration is a promise the maintenance relies on, so breaking it is a misuse: a
//! ranged bracket whose accesses leave its range, an end whose range misses bytes the
//! bracket wrote, an overwrite bracket that reads bytes before writing them or ends with
//! some unwritten ([`crate::Report`]).

use std::ops::Range;

use dmabuf_sim::DmaDirection;

use crate::ranges::RangeSet;

/// A CPU access bracket as its begin (or end) declares it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CpuBracket {
    /// The direction of the access: `ToDevice` for a write (`DMA_BUF_SYNC_WRITE`),
    /// `FromDevice` for a read, `Bidirectional` for both.
    pub dir: DmaDirection,
    /// The bytes the CPU will access, as offsets into the buffer.
    pub range: Range<u64>,
    /// Whether the call carries the range (`dma_buf_begin_cpu_access_partial`,
    /// `DMA_BUF_IOCTL_SYNC_PARTIAL`). A full call covers the whole buffer; kernels treat
    /// the two differently (see [`crate::MaintenancePolicy`]).
    pub partial: bool,
    /// Whether the CPU writes every byte of `range` before the end, so that their previous
    /// contents may be discarded (`DMA_BUF_SYNC_OVERWRITE`). Only for a write
    /// (`ToDevice`) bracket, and only where the kernel honours it
    /// ([`crate::MaintenancePolicy::honours_overwrite`]).
    pub overwrite: bool,
}

impl CpuBracket {
    /// The full call (`dma_buf_begin_cpu_access`, `DMA_BUF_IOCTL_SYNC`) on a buffer of
    /// `size` bytes.
    pub fn full(dir: DmaDirection, size: u64) -> CpuBracket {
        CpuBracket { dir, range: 0..size, partial: false, overwrite: false }
    }

    /// The ranged call over `range`.
    pub fn partial(dir: DmaDirection, range: Range<u64>) -> CpuBracket {
        CpuBracket { dir, range, partial: true, overwrite: false }
    }

    /// A ranged write bracket that overwrites `range` whole.
    pub fn overwrite(range: Range<u64>) -> CpuBracket {
        CpuBracket { dir: DmaDirection::ToDevice, range, partial: true, overwrite: true }
    }

    /// The bytes of `r` outside the declared range, if any (their first run).
    pub(crate) fn outside(&self, r: &Range<u64>) -> Option<Range<u64>> {
        if r.start < self.range.start {
            Some(r.start..r.end.min(self.range.start))
        } else if r.end > self.range.end {
            Some(r.start.max(self.range.end)..r.end)
        } else {
            None
        }
    }

    /// The bytes of a read of `r` that an overwrite bracket has not written yet: their
    /// contents are whatever the cache held, the previous contents having been given up.
    pub(crate) fn read_before_write(&self, r: &Range<u64>, written: &RangeSet) -> Option<Range<u64>> {
        if !self.overwrite {
            return None;
        }
        let r = r.start.max(self.range.start)..r.end.min(self.range.end);
        written.missing_in(r).iter().next()
    }

    /// The bytes an overwrite bracket declared and did not write, at its end (their first
    /// run).
    pub(crate) fn unwritten(&self, written: &RangeSet) -> Option<Range<u64>> {
        if !self.overwrite {
            return None;
        }
        written.missing_in(self.range.clone()).iter().next()
    }
}

/// `range` shrunk to the whole lines of `line` bytes it covers (empty when it covers none):
/// the lines an overwrite bracket writes whole.
pub(crate) fn whole_lines(range: &Range<u64>, line: u64) -> Range<u64> {
    let start = range.start.div_ceil(line).saturating_mul(line);
    let end = range.end / line * line;
    if start < end { start..end } else { start..start }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overwrite_bracket_knows_what_it_has_not_written() {
        let b = CpuBracket::overwrite(64..256);
        let mut w = RangeSet::new();
        w.insert(64..128);
        assert_eq!(b.read_before_write(&(96..160), &w), Some(128..160), "the unwritten part of the read");
        assert_eq!(b.read_before_write(&(0..100), &w), None, "before the range, and written in it");
        assert_eq!(b.unwritten(&w), Some(128..256));
        w.insert(128..256);
        assert_eq!(b.unwritten(&w), None);
        let plain = CpuBracket::partial(DmaDirection::ToDevice, 64..256);
        assert_eq!(plain.unwritten(&RangeSet::new()), None, "only an overwrite bracket promises");
    }

    #[test]
    fn accesses_outside_the_declared_range_are_found() {
        let b = CpuBracket::partial(DmaDirection::FromDevice, 4096..8192);
        assert_eq!(b.outside(&(4096..8192)), None);
        assert_eq!(b.outside(&(0..4200)), Some(0..4096));
        assert_eq!(b.outside(&(8000..9000)), Some(8192..9000));
    }

    #[test]
    fn whole_lines_round_in() {
        assert_eq!(whole_lines(&(10..200), 64), 64..192);
        assert_eq!(whole_lines(&(0..128), 64), 0..128);
        assert!(whole_lines(&(10..60), 64).is_empty());
    }
}
