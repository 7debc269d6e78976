//! A write-back line cache, stored page by page.
//!
//! Lines are grouped by the page they belong to: a page block holds a valid and a dirty
//! bit per line and the page's bytes, so bulk operations over megabytes touch one hash
//! entry per page and work on bit masks. Capacity (sets x ways, LRU) is an optional overlay
//! that says which line a full set gives up; without it the cache is unbounded.

use rustc_hash::FxHashMap;

use crate::platform::CacheGeometry;
use crate::store::{PageBytes, ProvPage, WriteId};

/// The bit mask of lines `[l0, l1)` of a page.
pub(crate) fn line_mask(l0: u32, l1: u32) -> u128 {
    if l1 <= l0 {
        0
    } else if l1 - l0 >= 128 {
        u128::MAX << l0
    } else {
        ((1u128 << (l1 - l0)) - 1) << l0
    }
}

/// Maximal runs of set bits in `mask`, as `(first line, count)`.
pub(crate) fn runs(mut mask: u128) -> impl Iterator<Item = (u32, u32)> {
    std::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let start = mask.trailing_zeros();
        let len = (!(mask >> start)).trailing_zeros().min(128 - start);
        mask &= !line_mask(start, start + len);
        Some((start, len))
    })
}

/// The lines of one page in one cache: a valid and a dirty bit per line, the page's bytes
/// (meaningful in valid lines only) and their provenance.
pub(crate) struct CachePage {
    pub(crate) valid: u128,
    pub(crate) dirty: u128,
    pub(crate) data: PageBytes,
    pub(crate) prov: ProvPage,
}

/// Set-associative capacity with LRU replacement.
struct SetAssoc {
    sets: u64,
    ways: usize,
    /// `line index + 1` per way; 0 is an empty way.
    tags: Vec<u64>,
    stamps: Vec<u64>,
    clock: u64,
}

impl SetAssoc {
    fn new(g: CacheGeometry) -> Self {
        let n = g.sets as usize * g.ways as usize;
        SetAssoc { sets: g.sets as u64, ways: g.ways as usize, tags: vec![0; n], stamps: vec![0; n], clock: 0 }
    }

    fn set_of(&self, line: u64) -> std::ops::Range<usize> {
        let s = (line % self.sets) as usize * self.ways;
        s..s + self.ways
    }

    fn find(&self, line: u64) -> Option<usize> {
        self.set_of(line).find(|&w| self.tags[w] == line + 1)
    }

    fn touch(&mut self, line: u64) {
        if let Some(w) = self.find(line) {
            self.clock += 1;
            self.stamps[w] = self.clock;
        }
    }

    /// Records `line` as present; returns the line it replaced, if the set was full.
    fn insert(&mut self, line: u64) -> Option<u64> {
        self.clock += 1;
        let tag = line + 1;
        // One pass over the set: the line itself, else an empty way, else the LRU way.
        let set = self.set_of(line);
        let (mut empty, mut lru, mut oldest) = (None, set.start, u64::MAX);
        for w in set {
            let t = self.tags[w];
            if t == tag {
                self.stamps[w] = self.clock;
                return None;
            }
            if t == 0 {
                if empty.is_none() {
                    empty = Some(w);
                }
            } else if self.stamps[w] < oldest {
                oldest = self.stamps[w];
                lru = w;
            }
        }
        let w = empty.unwrap_or(lru);
        let victim = self.tags[w].checked_sub(1);
        self.tags[w] = tag;
        self.stamps[w] = self.clock;
        victim
    }

    fn remove(&mut self, line: u64) {
        if let Some(w) = self.find(line) {
            self.tags[w] = 0;
        }
    }
}

/// A write-back cache of physical lines.
pub(crate) struct LineCache {
    pub(crate) pages: FxHashMap<u64, CachePage>,
    capacity: Option<SetAssoc>,
    track: bool,
}

impl LineCache {
    pub(crate) fn new(geometry: Option<CacheGeometry>, track: bool) -> Self {
        LineCache { pages: FxHashMap::default(), capacity: geometry.map(SetAssoc::new), track }
    }

    /// Whether capacity is modelled.
    pub(crate) fn bounded(&self) -> bool {
        self.capacity.is_some()
    }

    /// Whether making several lines of one page present at once could evict one of them:
    /// only when consecutive lines of a page share sets (fewer sets than lines per page).
    pub(crate) fn may_self_evict(&self, lines_per_page: u32) -> bool {
        self.capacity.as_ref().is_some_and(|c| c.sets < lines_per_page as u64)
    }

    pub(crate) fn page(&self, pfn: u64) -> Option<&CachePage> {
        self.pages.get(&pfn)
    }

    pub(crate) fn page_mut(&mut self, pfn: u64) -> Option<&mut CachePage> {
        self.pages.get_mut(&pfn)
    }

    pub(crate) fn page_or_insert(&mut self, pfn: u64) -> &mut CachePage {
        let track = self.track;
        self.pages.entry(pfn).or_insert_with(|| CachePage {
            valid: 0,
            dirty: 0,
            // The bytes of invalid lines are never read.
            data: PageBytes::Uniform(0),
            prov: if track { ProvPage::uniform(WriteId::INITIAL) } else { ProvPage::default() },
        })
    }

    /// Valid and dirty masks of a page (zero if the page holds no line).
    pub(crate) fn state(&self, pfn: u64) -> (u128, u128) {
        self.pages.get(&pfn).map_or((0, 0), |p| (p.valid, p.dirty))
    }

    /// Forgets the page block once it holds no line, so walks stay proportional to use.
    pub(crate) fn release_if_empty(&mut self, pfn: u64) {
        if self.pages.get(&pfn).is_some_and(|p| p.valid == 0) {
            self.pages.remove(&pfn);
        }
    }

    pub(crate) fn touch(&mut self, line: u64) {
        if let Some(c) = &mut self.capacity {
            c.touch(line);
        }
    }

    /// Records a newly valid line; returns the line index a full set gives up.
    pub(crate) fn insert_tag(&mut self, line: u64) -> Option<u64> {
        self.capacity.as_mut().and_then(|c| c.insert(line))
    }

    pub(crate) fn remove_tags(&mut self, pfn: u64, mask: u128, lines_per_page: u32) {
        if let Some(c) = &mut self.capacity {
            for (l0, n) in runs(mask) {
                for l in l0..l0 + n {
                    c.remove(pfn * lines_per_page as u64 + l as u64);
                }
            }
        }
    }

    /// The pages holding lines, in ascending order, within `[first, last]` page frames.
    /// Walks whichever is smaller: the range or the cache.
    pub(crate) fn pages_in(&self, first: u64, last: u64) -> Vec<u64> {
        let span = last - first + 1;
        let mut v: Vec<u64> = if span <= self.pages.len() as u64 {
            (first..=last).filter(|p| self.pages.contains_key(p)).collect()
        } else {
            self.pages.keys().copied().filter(|p| (first..=last).contains(p)).collect()
        };
        v.sort_unstable();
        v
    }
}

/// First-fit allocator of address ranges with coalescing (IOVA space, bounce pool,
/// a heap's pages).
#[derive(Debug, Clone)]
pub struct RangeAlloc {
    free: std::collections::BTreeMap<u64, u64>,
}

impl RangeAlloc {
    /// An allocator handing out `[start, start + len)`.
    pub fn new(start: u64, len: u64) -> Self {
        let mut free = std::collections::BTreeMap::new();
        if len > 0 {
            free.insert(start, len);
        }
        RangeAlloc { free }
    }

    /// Allocates `len` bytes aligned to `align` (a power of two).
    pub fn alloc(&mut self, len: u64, align: u64) -> Option<u64> {
        self.alloc_within(len, align, 0, u64::MAX)
    }

    /// Allocates `len` bytes aligned to `align` (a power of two) inside `[lo, hi)`.
    pub fn alloc_within(&mut self, len: u64, align: u64, lo: u64, hi: u64) -> Option<u64> {
        let (start, flen, at) = self.free.iter().find_map(|(&s, &l)| {
            let at = s.max(lo).checked_add(align - 1)? & !(align - 1);
            let end = at.checked_add(len)?;
            (end <= s + l && end <= hi).then_some((s, l, at))
        })?;
        self.free.remove(&start);
        if at > start {
            self.free.insert(start, at - start);
        }
        if at + len < start + flen {
            self.free.insert(at + len, start + flen - at - len);
        }
        Some(at)
    }

    /// Returns `[start, start + len)`; false if any of it was not allocated.
    pub fn free(&mut self, start: u64, len: u64) -> bool {
        let end = start + len;
        if let Some((&s, &l)) = self.free.range(..end).next_back()
            && s + l > start
        {
            return false;
        }
        let mut s = start;
        let mut e = end;
        if let Some((&ps, &pl)) = self.free.range(..start).next_back()
            && ps + pl == start
        {
            self.free.remove(&ps);
            s = ps;
        }
        if let Some(&nl) = self.free.get(&end) {
            self.free.remove(&end);
            e = end + nl;
        }
        self.free.insert(s, e - s);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_runs() {
        assert_eq!(line_mask(0, 64), u64::MAX as u128);
        assert_eq!(line_mask(0, 128), u128::MAX);
        assert_eq!(line_mask(3, 3), 0);
        let m = line_mask(1, 3) | line_mask(10, 12) | line_mask(127, 128);
        assert_eq!(runs(m).collect::<Vec<_>>(), vec![(1, 2), (10, 2), (127, 1)]);
        assert_eq!(runs(u128::MAX).collect::<Vec<_>>(), vec![(0, 128)]);
    }

    #[test]
    fn lru_replaces_the_least_recently_used_way() {
        let mut c = SetAssoc::new(CacheGeometry { sets: 1, ways: 2 });
        assert_eq!(c.insert(1), None);
        assert_eq!(c.insert(2), None);
        c.touch(1);
        assert_eq!(c.insert(3), Some(2));
        c.remove(1);
        assert_eq!(c.insert(4), None);
    }

    #[test]
    fn range_alloc_first_fit_and_coalesce() {
        let mut a = RangeAlloc::new(0x1000, 0x4000);
        let x = a.alloc(0x1000, 0x1000).unwrap();
        let y = a.alloc(0x2000, 0x2000).unwrap();
        assert_eq!((x, y), (0x1000, 0x2000));
        assert!(a.alloc(0x2000, 0x1000).is_none());
        assert!(a.free(x, 0x1000));
        assert!(!a.free(x, 0x1000), "double free is refused");
        assert!(a.free(y, 0x2000));
        assert_eq!(a.alloc(0x4000, 0x1000), Some(0x1000));
    }
}
