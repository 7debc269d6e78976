//! What the pilot run learns: the lines the scenario's accesses touch, and which of them
//! every operation treats alike.
//!
//! Lines are kept as runs of consecutive line addresses with one record each, never one
//! entry per line: a gigabyte buffer is as many runs as it has physically contiguous
//! pieces (at most its pages), and an operation over it updates those runs, so the pilot's
//! memory and time follow the pieces, not the square of the lines.

use std::collections::HashSet;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::ops::Range;

use dmabuf_sim::PhysAddr;
use rangemap::{RangeMap, RangeSet};

/// For every line an operation touched, a digest of the list of operations that touched
/// it; and the lines the scenario's accesses touched.
#[derive(Default)]
pub(super) struct LineRecord {
    line: u64,
    /// A 64-bit digest of (program step, what it was, whether it covered the whole line,
    /// whether it was one of the scenario's accesses) for every operation on the line, in
    /// order. Equal digests are equal lists (a collision is below 1 in 10^9 at
    /// these sizes, as for the state hash).
    sigs: RangeMap<u64, u64>,
    accessed: RangeSet<u64>,
}

fn mix(old: u64, step: (u64, u64, bool, bool)) -> u64 {
    // DefaultHasher::new() has fixed keys: digests are the same on every run.
    let mut h = DefaultHasher::new();
    (old, step).hash(&mut h);
    h.finish()
}

impl LineRecord {
    /// An operation during program step `step` (`what` digests its kind, agent and
    /// attribute) touched bytes `r`
    /// of lines of `line` bytes; `access` if it was one of the scenario's accesses,
    /// `record` if its lines count as accessed.
    pub(super) fn touch(&mut self, line: u64, r: Range<u64>, step: u64, what: u64, access: bool, record: bool) {
        if r.is_empty() {
            return;
        }
        self.line = line;
        let (a, b) = (r.start / line * line, r.end.div_ceil(line) * line);
        // Only the first and the last line can be partly covered.
        let mut segs: Vec<(Range<u64>, bool)> = Vec::with_capacity(3);
        if b - a == line {
            segs.push((a..b, r.start == a && r.end == b));
        } else {
            segs.push((a..a + line, r.start == a));
            if b - a > 2 * line {
                segs.push((a + line..b - line, true));
            }
            segs.push((b - line..b, r.end == b));
        }
        for (s, full) in segs {
            let op = (step, what, full, access);
            let old: Vec<(Range<u64>, u64)> =
                self.sigs.overlapping(&s).map(|(rg, &v)| (rg.start.max(s.start)..rg.end.min(s.end), v)).collect();
            let gaps: Vec<Range<u64>> = self.sigs.gaps(&s).collect();
            for (rg, v) in old {
                self.sigs.insert(rg, mix(v, op));
            }
            for g in gaps {
                self.sigs.insert(g, mix(0, op));
            }
        }
        if record {
            self.accessed.insert(a..b);
        }
    }

    /// How many lines the accesses touched.
    pub(super) fn len(&self) -> usize {
        self.accessed.iter().map(|r| ((r.end - r.start) / self.line) as usize).sum()
    }

    /// The `i`th line the accesses touched, in address order.
    pub(super) fn nth(&self, mut i: usize) -> Option<PhysAddr> {
        for r in self.accessed.iter() {
            let n = ((r.end - r.start) / self.line) as usize;
            if i < n {
                return Some(PhysAddr(r.start + i as u64 * self.line));
            }
            i -= n;
        }
        None
    }

    /// For each class of accessed lines with the same record, the index of its first
    /// line (in address order): the line that stands for the class.
    pub(super) fn classes(&self) -> Vec<usize> {
        let mut seen = HashSet::new();
        let mut reps = Vec::new();
        let mut base = 0usize;
        for r in self.accessed.iter() {
            // An accessed line always has a record: `touch` records a range before it
            // counts it as accessed.
            debug_assert!(self.sigs.gaps(r).next().is_none(), "an accessed line without a record");
            let mut pieces: Vec<(u64, u64)> =
                self.sigs.overlapping(r).map(|(rg, &v)| (rg.start.max(r.start), v)).collect();
            pieces.sort_unstable();
            for (start, sig) in pieces {
                if seen.insert(sig) {
                    reps.push(base + ((start - r.start) / self.line) as usize);
                }
            }
            base += ((r.end - r.start) / self.line) as usize;
        }
        reps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_treated_alike_are_one_class_whatever_their_number() {
        let mut r = LineRecord::default();
        // Two scattered pages written whole, then read whole: one class.
        for (seq, page) in [(1, 0x10000u64), (1, 0x30000)] {
            r.touch(64, page..page + 4096, seq, 7, true, true);
        }
        for page in [0x10000u64, 0x30000] {
            r.touch(64, page..page + 4096, 2, 8, true, true);
        }
        assert_eq!(r.len(), 128);
        assert_eq!(r.classes(), vec![0]);
        assert_eq!(r.nth(64), Some(PhysAddr(0x30000)));
        assert_eq!(r.nth(128), None);
    }

    #[test]
    fn a_partly_covered_line_is_a_class_of_its_own() {
        let mut r = LineRecord::default();
        r.touch(64, 0x1000..0x1100, 1, 7, true, true);
        r.touch(64, 0x1010..0x1100, 2, 7, true, true);
        // Line 0 is partly written by the second op; lines 1-3 whole.
        assert_eq!(r.classes(), vec![0, 1]);
    }

    #[test]
    fn operations_outside_accesses_split_classes_but_add_no_lines() {
        let mut r = LineRecord::default();
        r.touch(64, 0..256, 1, 7, true, true);
        // Maintenance over the second half only.
        r.touch(64, 128..256, 2, 9, false, false);
        assert_eq!(r.len(), 4);
        assert_eq!(r.classes(), vec![0, 2]);
    }
}
