//! Byte ranges of a buffer as a set: what the framework was told was written, or is
//! stale, per buffer and per attachment. A thin face over `rangemap`'s set, with the
//! operations the maintenance implementations use.

use std::ops::Range;

/// A set of bytes of a buffer, as disjoint sorted ranges (adjacent ones merged).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeSet(rangemap::RangeSet<u64>);

impl RangeSet {
    /// The empty set.
    pub fn new() -> Self {
        RangeSet::default()
    }

    /// Whether the set holds no byte.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ranges, in order.
    pub fn iter(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        self.0.iter().cloned()
    }

    /// How many bytes the set holds.
    pub fn len(&self) -> u64 {
        self.0.iter().map(|r| r.end - r.start).sum()
    }

    /// Adds the bytes of `r` (an empty range adds nothing).
    pub fn insert(&mut self, r: Range<u64>) {
        if r.start < r.end {
            self.0.insert(r);
        }
    }

    /// Adds every range of `other`.
    pub fn union(&mut self, other: &RangeSet) {
        for r in other.iter() {
            self.insert(r);
        }
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.0 = rangemap::RangeSet::new();
    }

    /// The part of the set inside `r`.
    pub fn within(&self, r: Range<u64>) -> RangeSet {
        let mut out = RangeSet::new();
        if r.start < r.end {
            for x in self.0.overlapping(&r) {
                out.insert(x.start.max(r.start)..x.end.min(r.end));
            }
        }
        out
    }

    /// Removes the bytes of `r`.
    pub fn remove(&mut self, r: Range<u64>) {
        if r.start < r.end {
            self.0.remove(r);
        }
    }

    /// The bytes of `r` the set does not hold.
    pub fn missing_in(&self, r: Range<u64>) -> RangeSet {
        let mut out = RangeSet::new();
        if r.start < r.end {
            for g in self.0.gaps(&r) {
                out.insert(g);
            }
        }
        out
    }

    /// Whether the set holds every byte of `r`.
    pub fn covers(&self, r: Range<u64>) -> bool {
        self.missing_in(r).is_empty()
    }
}

impl FromIterator<Range<u64>> for RangeSet {
    fn from_iter<I: IntoIterator<Item = Range<u64>>>(iter: I) -> Self {
        let mut s = RangeSet::new();
        for r in iter {
            s.insert(r);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_merges_overlapping_and_adjacent() {
        let mut s = RangeSet::new();
        s.insert(10..20);
        s.insert(30..40);
        s.insert(20..25);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![10..25, 30..40]);
        s.insert(0..100);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0..100]);
        s.remove(40..50);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0..40, 50..100]);
        assert_eq!(s.within(35..60).iter().collect::<Vec<_>>(), vec![35..40, 50..60]);
        assert_eq!(s.len(), 90);
        assert!(s.within(60..60).is_empty(), "an empty window holds nothing");
        assert_eq!(s.missing_in(30..120).iter().collect::<Vec<_>>(), vec![40..50, 100..120]);
        assert!(s.covers(0..40) && !s.covers(0..41));
    }
}
