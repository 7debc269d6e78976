//! Sparse byte storage and byte-precise provenance.
//!
//! Memory regions may describe gigabytes; only pages that someone touched exist. A page
//! that was never written reads as zeros, like memory the kernel cleared before handing it
//! out. Alongside the bytes, when provenance is tracked, each page keeps a run-length list
//! of which write produced each byte, so that a read can say exactly whose data it got.

use rustc_hash::FxHashMap;

use crate::addr::{PAGE_SIZE, page_chunks};

/// Identifies one write: a CPU store, a device write, or the initial content.
///
/// Every write operation on the simulator gets a fresh id; copies (write-backs, fills,
/// bounce copies) carry the ids of the bytes they move, so the bytes a read returns can be
/// traced to the write that produced them.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct WriteId(pub u64);

impl WriteId {
    /// The content memory had before any simulated write (zeros).
    pub const INITIAL: WriteId = WriteId(0);
}

/// A run of bytes produced by one write, relative to the start of an access.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ProvRun {
    /// Offset of the first byte from the start of the access.
    pub offset: u64,
    /// Number of bytes.
    pub len: u64,
    /// The write that produced them.
    pub write: WriteId,
}

/// Appends a run to `out`, merging it with the last one when they continue each other.
pub(crate) fn push_run(out: &mut Vec<ProvRun>, offset: u64, len: u64, write: WriteId) {
    if len == 0 {
        return;
    }
    if let Some(last) = out.last_mut()
        && last.write == write
        && last.offset + last.len == offset
    {
        last.len += len;
        return;
    }
    out.push(ProvRun { offset, len, write });
}

/// Per-byte write ids from runs over `n` bytes.
pub(crate) fn expand(runs: &[ProvRun], n: usize) -> Vec<WriteId> {
    let mut v = vec![WriteId::INITIAL; n];
    for r in runs {
        let s = r.offset as usize;
        let e = (r.offset + r.len) as usize;
        v[s.min(n)..e.min(n)].fill(r.write);
    }
    v
}

/// Runs from per-byte write ids.
pub(crate) fn compress(ids: &[WriteId]) -> Vec<ProvRun> {
    let mut out = Vec::new();
    for (i, &w) in ids.iter().enumerate() {
        push_run(&mut out, i as u64, 1, w);
    }
    out
}

const PAGE: usize = PAGE_SIZE as usize;

/// Provenance of one page: sorted runs `(first byte, write)`, the first at byte 0.
/// Empty means "not tracked".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProvPage {
    runs: Vec<(u16, WriteId)>,
}

impl ProvPage {
    /// A tracked page whose every byte came from `id`.
    pub(crate) fn uniform(id: WriteId) -> Self {
        ProvPage { runs: vec![(0, id)] }
    }

    pub(crate) fn is_tracked(&self) -> bool {
        !self.runs.is_empty()
    }

    /// Index of the run that holds byte `off`.
    fn run_at(&self, off: usize) -> usize {
        // The first run starts at 0, so the partition point is at least 1.
        self.runs.partition_point(|&(s, _)| s as usize <= off) - 1
    }

    /// Which write produced byte `off`.
    pub(crate) fn at(&self, off: usize) -> WriteId {
        if !self.is_tracked() {
            return WriteId::INITIAL;
        }
        self.runs[self.run_at(off)].1
    }

    /// Marks bytes `[off, off + len)` as produced by `id`.
    pub(crate) fn set(&mut self, off: usize, len: usize, id: WriteId) {
        if len == 0 || !self.is_tracked() {
            return;
        }
        let end = off + len;
        if off == 0 && end == PAGE {
            self.runs.clear();
            self.runs.push((0, id));
            return;
        }
        let after = (end < PAGE).then(|| self.at(end));
        let first = self.run_at(off);
        // Runs that start at or after `off` and before `end` disappear.
        let mut last = first;
        while last + 1 < self.runs.len() && (self.runs[last + 1].0 as usize) < end {
            last += 1;
        }
        let mut tail: Vec<(u16, WriteId)> = Vec::new();
        if let Some(after) = after {
            tail.push((end as u16, after));
        }
        tail.extend(self.runs[last + 1..].iter().copied());
        self.runs.truncate(first + 1);
        if self.runs[first].0 as usize == off {
            self.runs[first].1 = id;
        } else {
            self.runs.push((off as u16, id));
        }
        self.runs.extend(tail);
        self.coalesce();
    }

    fn coalesce(&mut self) {
        self.runs.dedup_by(|b, a| a.1 == b.1);
    }

    /// Appends the runs of bytes `[off, off + len)` to `out`, at offsets starting at `base`
    /// (none when the page is not tracked: an observer that wants no provenance).
    pub(crate) fn runs(&self, off: usize, len: usize, base: u64, out: &mut Vec<ProvRun>) {
        if len == 0 || !self.is_tracked() {
            return;
        }
        let end = off + len;
        let mut i = self.run_at(off);
        let mut pos = off;
        while pos < end {
            let run_end = self.runs.get(i + 1).map_or(PAGE, |r| r.0 as usize).min(end);
            push_run(out, base + (pos - off) as u64, (run_end - pos) as u64, self.runs[i].1);
            pos = run_end;
            i += 1;
        }
    }

    /// Copies the provenance of `src[src_off..src_off + len]` to `self[dst_off..]`.
    pub(crate) fn copy_from(&mut self, src: &ProvPage, src_off: usize, dst_off: usize, len: usize) {
        if !self.is_tracked() || !src.is_tracked() || len == 0 {
            return;
        }
        let mut tmp = Vec::new();
        src.runs(src_off, len, 0, &mut tmp);
        for r in tmp {
            self.set(dst_off + r.offset as usize, r.len as usize, r.write);
        }
    }

    /// Sets bytes from runs relative to `base_off` of an access (the inverse of `runs`).
    pub(crate) fn set_from_runs(&mut self, dst_off: usize, len: usize, src_base: u64, runs: &[ProvRun]) {
        if !self.is_tracked() {
            return;
        }
        let lo = src_base;
        let hi = src_base + len as u64;
        for r in runs {
            let s = r.offset.max(lo);
            let e = (r.offset + r.len).min(hi);
            if s < e {
                self.set(dst_off + (s - lo) as usize, (e - s) as usize, r.write);
            }
        }
    }
}

/// The bytes of one page: one byte repeated, or every byte stored.
///
/// The kernel hands out zeroed pages and scenarios fill frames with one value, so most
/// pages of a big buffer hold a single byte: stored as that byte, a gigabyte costs a few
/// megabytes, and memory follows the bytes a program wrote with distinct values, not the
/// bytes it declared. A page is stored whole on its first write that breaks the pattern.
#[derive(Clone, Debug)]
pub(crate) enum PageBytes {
    /// Every byte of the page is this one.
    Uniform(u8),
    /// The page's bytes.
    Owned(Box<[u8; PAGE]>),
}

impl Default for PageBytes {
    fn default() -> Self {
        PageBytes::Uniform(0)
    }
}

impl PageBytes {
    /// Copies bytes `[off, off + out.len())` into `out`.
    pub(crate) fn read(&self, off: usize, out: &mut [u8]) {
        match self {
            PageBytes::Uniform(v) => out.fill(*v),
            PageBytes::Owned(b) => out.copy_from_slice(&b[off..off + out.len()]),
        }
    }

    /// The page's bytes, stored one by one from now on.
    pub(crate) fn owned(&mut self) -> &mut [u8; PAGE] {
        if let PageBytes::Uniform(v) = *self {
            let b: Box<[u8; PAGE]> = vec![v; PAGE].into_boxed_slice().try_into().expect("PAGE bytes");
            *self = PageBytes::Owned(b);
        }
        match self {
            PageBytes::Owned(b) => b,
            PageBytes::Uniform(_) => unreachable!("made owned above"),
        }
    }

    /// Sets bytes `[off, off + len)` to `v`.
    pub(crate) fn fill(&mut self, off: usize, len: usize, v: u8) {
        match self {
            _ if off == 0 && len == PAGE => *self = PageBytes::Uniform(v),
            PageBytes::Uniform(u) if *u == v => {}
            _ => self.owned()[off..off + len].fill(v),
        }
    }

    /// Writes `src` at `off`.
    pub(crate) fn write(&mut self, off: usize, src: &[u8]) {
        if let PageBytes::Uniform(u) = *self
            && src.iter().all(|&b| b == u)
        {
            return;
        }
        // A whole page of one byte (a frame a device fills) is that byte again.
        if off == 0
            && src.len() == PAGE
            && let Some((&first, rest)) = src.split_first()
            && rest.iter().all(|&b| b == first)
        {
            *self = PageBytes::Uniform(first);
            return;
        }
        self.owned()[off..off + src.len()].copy_from_slice(src);
    }

    /// Copies bytes `[off, off + len)` of `from` to the same place in this page.
    pub(crate) fn copy_from(&mut self, from: &PageBytes, off: usize, len: usize) {
        match from {
            PageBytes::Uniform(v) => self.fill(off, len, *v),
            PageBytes::Owned(b) => self.write(off, &b[off..off + len]),
        }
    }

    /// Feeds bytes `[off, off + len)` to `h` exactly as hashing the slice would, whatever
    /// the representation, so equal contents hash equal.
    pub(crate) fn hash_range(&self, off: usize, len: usize, h: &mut impl std::hash::Hasher) {
        use std::hash::Hash;
        match self {
            PageBytes::Owned(b) => b[off..off + len].hash(h),
            // A line (at most 256 bytes, the platform's bound) without a page of scratch:
            // the explorer hashes its lines before every step.
            PageBytes::Uniform(v) if len <= 256 => [*v; 256][..len].hash(h),
            PageBytes::Uniform(v) => {
                let mut tmp = [0u8; PAGE];
                tmp[..len].fill(*v);
                tmp[..len].hash(h);
            }
        }
    }
}

/// One page of backing memory.
pub(crate) struct MemPage {
    pub(crate) data: PageBytes,
    pub(crate) prov: ProvPage,
}

/// Sparse physical memory: pages come into being on first write; absent pages read as zero.
#[derive(Default)]
pub(crate) struct SparseMem {
    pages: FxHashMap<u64, MemPage>,
    track: bool,
}

impl SparseMem {
    pub(crate) fn new(track: bool) -> Self {
        SparseMem { pages: FxHashMap::default(), track }
    }

    /// Number of pages that exist.
    pub(crate) fn resident_pages(&self) -> usize {
        self.pages.len()
    }

    pub(crate) fn page(&self, pfn: u64) -> Option<&MemPage> {
        self.pages.get(&pfn)
    }

    /// The page, created zeroed (provenance: initial content) on first touch.
    pub(crate) fn page_mut(&mut self, pfn: u64) -> &mut MemPage {
        let track = self.track;
        self.pages.entry(pfn).or_insert_with(|| MemPage {
            data: PageBytes::Uniform(0),
            prov: if track { ProvPage::uniform(WriteId::INITIAL) } else { ProvPage::default() },
        })
    }

    /// Reads bytes at `addr` into `buf`.
    pub(crate) fn read(&self, addr: u64, buf: &mut [u8]) {
        for (a, off, n) in page_chunks(addr, buf.len() as u64) {
            let po = (a % PAGE_SIZE) as usize;
            match self.pages.get(&(a / PAGE_SIZE)) {
                Some(p) => p.data.read(po, &mut buf[off..off + n]),
                None => buf[off..off + n].fill(0),
            }
        }
    }

    /// Appends the provenance of `[addr, addr + len)` to `out`, offsets from `base`.
    pub(crate) fn read_prov(&self, addr: u64, len: u64, base: u64, out: &mut Vec<ProvRun>) {
        for (a, off, n) in page_chunks(addr, len) {
            let po = (a % PAGE_SIZE) as usize;
            match self.pages.get(&(a / PAGE_SIZE)) {
                Some(p) if p.prov.is_tracked() => p.prov.runs(po, n, base + off as u64, out),
                _ => push_run(out, base + off as u64, n as u64, WriteId::INITIAL),
            }
        }
    }

    /// Writes `data` at `addr`, produced by `id`.
    pub(crate) fn write(&mut self, addr: u64, data: &[u8], id: WriteId) {
        for (a, off, n) in page_chunks(addr, data.len() as u64) {
            let po = (a % PAGE_SIZE) as usize;
            let p = self.page_mut(a / PAGE_SIZE);
            p.data.write(po, &data[off..off + n]);
            p.prov.set(po, n, id);
        }
    }

    /// Writes `data` at `addr` with the provenance given as runs relative to `data`.
    pub(crate) fn write_with_runs(&mut self, addr: u64, data: &[u8], runs: &[ProvRun]) {
        for (a, off, n) in page_chunks(addr, data.len() as u64) {
            let po = (a % PAGE_SIZE) as usize;
            let p = self.page_mut(a / PAGE_SIZE);
            p.data.write(po, &data[off..off + n]);
            p.prov.set_from_runs(po, n, off as u64, runs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(p: &ProvPage) -> Vec<WriteId> {
        let mut out = Vec::new();
        p.runs(0, PAGE, 0, &mut out);
        let mut v = Vec::new();
        for r in out {
            v.extend(std::iter::repeat_n(r.write, r.len as usize));
        }
        v
    }

    #[test]
    fn prov_set_splits_and_merges_runs() {
        let mut p = ProvPage::uniform(WriteId(0));
        p.set(10, 5, WriteId(1));
        p.set(12, 100, WriteId(2));
        p.set(0, 10, WriteId(1));
        let f = flat(&p);
        assert_eq!(f.len(), PAGE);
        assert!(f[..12].iter().all(|&w| w == WriteId(1)));
        assert!(f[12..112].iter().all(|&w| w == WriteId(2)));
        assert!(f[112..].iter().all(|&w| w == WriteId(0)));
        p.set(0, PAGE, WriteId(3));
        assert_eq!(p.runs, vec![(0, WriteId(3))]);
    }

    #[test]
    fn a_page_of_one_byte_stays_one_byte_until_a_write_breaks_the_pattern() {
        let mut p = PageBytes::default();
        p.fill(0, PAGE, 7);
        p.write(100, &[7; 50]);
        p.copy_from(&PageBytes::Uniform(7), 0, 64);
        assert!(matches!(p, PageBytes::Uniform(7)), "writes of the same byte keep it compact");
        p.write(10, &[1, 2]);
        let mut out = [0u8; 4];
        p.read(9, &mut out);
        assert_eq!(out, [7, 1, 2, 7]);
        p.fill(0, PAGE, 3);
        assert!(matches!(p, PageBytes::Uniform(3)), "a whole-page fill makes it compact again");
        p.write(10, &[1, 2]);
        p.write(0, &[5; PAGE]);
        assert!(matches!(p, PageBytes::Uniform(5)), "so does a whole-page write of one byte");
        p.write(0, &[[5; PAGE - 1].as_slice(), &[6]].concat());
        assert!(matches!(p, PageBytes::Owned(_)), "but not of two");
    }

    #[test]
    fn equal_contents_hash_equal_in_either_form() {
        use std::hash::{DefaultHasher, Hasher};
        let compact = PageBytes::Uniform(9);
        let mut stored = PageBytes::default();
        stored.owned().fill(9);
        let (mut a, mut b) = (DefaultHasher::new(), DefaultHasher::new());
        compact.hash_range(64, 64, &mut a);
        stored.hash_range(64, 64, &mut b);
        assert_eq!(a.finish(), b.finish());
    }

    #[test]
    fn untracked_pages_cost_nothing() {
        let mut p = ProvPage::default();
        p.set(0, 10, WriteId(5));
        assert!(!p.is_tracked());
    }

    #[test]
    fn absent_pages_read_zero_and_are_not_created() {
        let mem = SparseMem::new(false);
        let mut b = [1u8; 16];
        mem.read(1 << 40, &mut b);
        assert_eq!(b, [0; 16]);
        assert_eq!(mem.resident_pages(), 0);
    }
}
