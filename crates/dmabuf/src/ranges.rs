//! A set of byte ranges of a buffer, kept sorted and merged.

use std::ops::Range;

/// Disjoint, sorted, non-adjacent half-open ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<Range<u64>>,
}

impl RangeSet {
    /// The empty set.
    pub fn new() -> Self {
        RangeSet::default()
    }

    /// Whether the set holds no byte.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The ranges, in order.
    pub fn iter(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        self.ranges.iter().cloned()
    }

    /// Bytes in the set.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|r| r.end - r.start).sum()
    }

    /// Adds `r`.
    pub fn insert(&mut self, r: Range<u64>) {
        if r.start >= r.end {
            return;
        }
        let first = self.ranges.partition_point(|x| x.end < r.start);
        let last = self.ranges.partition_point(|x| x.start <= r.end);
        let mut merged = r;
        if first < last {
            merged.start = merged.start.min(self.ranges[first].start);
            merged.end = merged.end.max(self.ranges[last - 1].end);
        }
        self.ranges.splice(first..last, std::iter::once(merged));
    }

    /// Adds every range of `other`.
    pub fn union(&mut self, other: &RangeSet) {
        for r in other.iter() {
            self.insert(r);
        }
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.ranges.clear();
    }

    /// The part of the set inside `r`.
    pub fn within(&self, r: Range<u64>) -> RangeSet {
        let mut out = RangeSet::new();
        for x in &self.ranges {
            let (s, e) = (x.start.max(r.start), x.end.min(r.end));
            if s < e {
                out.ranges.push(s..e);
            }
        }
        out
    }

    /// Removes `r`.
    pub fn remove(&mut self, r: Range<u64>) {
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        for x in self.ranges.drain(..) {
            if x.end <= r.start || x.start >= r.end {
                out.push(x);
                continue;
            }
            if x.start < r.start {
                out.push(x.start..r.start);
            }
            if x.end > r.end {
                out.push(r.end..x.end);
            }
        }
        self.ranges = out;
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
    }
}
