//! Line states: what each place (memory, the CPU cache, device caches) holds of every
//! line, by range, with the writes its bytes come from.

use std::ops::Range;

use dmabuf_sim::{PhysRange, ProvRun};

use super::*;

/// The bytes of one line by the write that produced them: `(first byte, write)` runs,
/// sorted, the first at 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Content(pub(super) Vec<(u16, u64)>);

impl Content {
    fn uniform(w: u64) -> Content {
        Content(vec![(0, w)])
    }

    fn at(&self, off: u16) -> u64 {
        let i = self.0.partition_point(|&(s, _)| s <= off);
        self.0[i.saturating_sub(1)].1
    }

    /// Bytes `[a, b)` of the line now come from `w`.
    fn set(&mut self, a: u16, b: u16, w: u64, line: u16) {
        let after = (b < line).then(|| self.at(b));
        self.0.retain(|&(s, _)| s < a || s >= b);
        let i = self.0.partition_point(|&(s, _)| s < a);
        self.0.insert(i, (a, w));
        if let Some(after) = after
            && !self.0.iter().any(|&(s, _)| s == b)
        {
            let j = self.0.partition_point(|&(s, _)| s < b);
            self.0.insert(j, (b, after));
        }
        self.0.dedup_by(|x, y| x.1 == y.1);
    }

    fn writes(&self) -> Vec<u64> {
        let mut v: Vec<u64> = Vec::new();
        for &(_, w) in &self.0 {
            if !v.contains(&w) {
                v.push(w);
            }
        }
        v.truncate(4);
        v
    }
}

/// A line in a cache (`dirty`) or in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Held {
    dirty: bool,
    content: Content,
}

/// Where an event's bytes go.
#[derive(Clone, Copy)]
pub(super) enum Put {
    /// Whole lines, clean (a fill).
    Clean,
    /// Bytes, the lines dirty (a write into a cache).
    Dirty,
    /// Bytes into memory.
    Memory,
}

/// A buffer's pages, to turn physical lines into buffer offsets and back.
#[derive(Clone, Debug)]
pub(super) struct Pages(pub(super) Vec<PhysRange>);

impl Pages {
    /// The physical address of buffer offset `off`.
    fn phys(&self, off: u64) -> Option<u64> {
        let mut base = 0;
        for r in &self.0 {
            if off < base + r.len {
                return Some(r.start.raw() + off - base);
            }
            base += r.len;
        }
        None
    }
}

pub(super) fn runs_of(prov: &[ProvRun], len: u64) -> Vec<(u64, u64, u64)> {
    // Runs covering [0, len), gaps as the initial contents.
    let mut out = Vec::new();
    let mut at = 0;
    for r in prov {
        if r.offset > at {
            out.push((at, r.offset - at, 0));
        }
        out.push((r.offset, r.len, r.write.0));
        at = r.offset + r.len;
    }
    if at < len {
        out.push((at, len - at, 0));
    }
    out
}

impl Recorder {
    // ----- line states --------------------------------------------------------------

    pub(super) fn put(&mut self, place: usize, start: u64, runs: &[(u64, u64, u64)], how: Put) {
        let l = self.line;
        for &(off, n, w) in runs {
            let (a, b) = (start + off, start + off + n);
            if a >= b {
                continue;
            }
            let (first_full, end_full) = (a.div_ceil(l), b / l);
            // Partial lines at either end merge with what the line holds.
            let mut partial = Vec::new();
            if first_full > end_full {
                partial.push((a, b));
            } else {
                if !a.is_multiple_of(l) {
                    partial.push((a, first_full * l));
                }
                if !b.is_multiple_of(l) {
                    partial.push((end_full * l, b));
                }
                if first_full < end_full {
                    let held = Held { dirty: matches!(how, Put::Dirty), content: Content::uniform(w) };
                    self.state[place].insert(first_full..end_full, held);
                }
            }
            for (x, y) in partial {
                let li = x / l;
                let mut held =
                    self.state[place].get(&li).cloned().unwrap_or(Held { dirty: false, content: Content::uniform(0) });
                held.content.set((x - li * l) as u16, (y - li * l) as u16, w, l as u16);
                match how {
                    Put::Dirty => held.dirty = true,
                    Put::Clean => held.dirty = false,
                    Put::Memory => {}
                }
                self.state[place].insert(li..li + 1, held);
            }
        }
    }

    pub(super) fn set_latest(&mut self, start: u64, len: u64, w: u64) {
        let l = self.line;
        let (a, b) = (start, start + len);
        let (first_full, end_full) = (a.div_ceil(l), b / l);
        if first_full < end_full {
            self.latest.insert(first_full..end_full, Content::uniform(w));
        }
        let mut partial = Vec::new();
        if first_full > end_full {
            partial.push((a, b));
        } else {
            if !a.is_multiple_of(l) {
                partial.push((a, first_full * l));
            }
            if !b.is_multiple_of(l) {
                partial.push((end_full * l, b));
            }
        }
        for (x, y) in partial {
            let li = x / l;
            let mut c = self.latest.get(&li).cloned().unwrap_or(Content::uniform(0));
            c.set((x - li * l) as u16, (y - li * l) as u16, w, l as u16);
            self.latest.insert(li..li + 1, c);
        }
    }

    pub(super) fn clean_lines(&mut self, place: usize, lines: Range<u64>) {
        let parts: Vec<(Range<u64>, Held)> =
            self.state[place].overlapping(&lines).map(|(r, h)| (r.clone(), h.clone())).collect();
        for (r, mut h) in parts {
            if h.dirty {
                h.dirty = false;
                let r = r.start.max(lines.start)..r.end.min(lines.end);
                self.state[place].insert(r, h);
            }
        }
    }

    pub(super) fn lines_of(&self, start: u64, len: u64) -> Range<u64> {
        start / self.line..(start + len).div_ceil(self.line)
    }

    pub(super) fn view(&self, place: usize, line: u64) -> View {
        let latest = self.latest.get(&line);
        match self.state[place].get(&line) {
            None if place == 0 => {
                let stale = latest.is_some_and(|c| c.0.iter().any(|&(_, w)| w != 0));
                View { state: "held", writes: vec![0], stale }
            }
            None => View { state: "absent", writes: Vec::new(), stale: false },
            Some(h) => {
                let stale = latest.is_some_and(|c| *c != h.content)
                    || (latest.is_none() && h.content.0.iter().any(|&(_, w)| w != 0));
                let state = if place == 0 {
                    "held"
                } else if h.dirty {
                    "dirty"
                } else {
                    "clean"
                };
                View { state, writes: h.content.writes(), stale: stale && !h.dirty }
            }
        }
    }

    /// Records the views of the followed lines among `lines` that changed, at moment
    /// `m` (the current one).
    pub(super) fn touched(&mut self, lines: Range<u64>, m: Option<usize>) {
        let Some(m) = m else { return };
        if self.history >= MAX_HISTORY {
            self.cap(format!("{MAX_HISTORY} line-state changes"));
            return;
        }
        let ids: Vec<u64> = self.lines.range(lines).map(|(&l, _)| l).collect();
        for l in ids {
            for p in 0..self.places.len() {
                let v = self.view(p, l);
                // The last view of each place is kept beside the history: looking it up
                // there made a long run's recording quadratic.
                if self.shown.get(&(l, p as u8)) == Some(&v) {
                    continue;
                }
                self.shown.insert((l, p as u8), v.clone());
                let hist = self.lines.get_mut(&l).expect("followed");
                // One entry per moment and place: a folded loop is one moment, however
                // many times its lines change in it (the entries of moment `m` are the
                // last ones, at most one per place).
                match hist.iter_mut().rev().take_while(|e| e.0 == m).find(|e| e.1 as usize == p) {
                    Some(e) => e.2 = v,
                    None => {
                        hist.push((m, p as u8, v));
                        self.history += 1;
                    }
                }
            }
        }
    }

    /// A buffer name now stands for memory at `pages`: follow its ranges of interest.
    pub(super) fn buffer(&mut self, name: &str, pages: &[PhysRange]) {
        for r in pages {
            let (a, b) = (r.start.raw() / dmabuf_sim::PAGE_SIZE, r.end().raw().div_ceil(dmabuf_sim::PAGE_SIZE));
            if a < b {
                self.owner.insert(a..b, name.to_string());
            }
        }
        let list = self.buffers.entry(name.to_string()).or_default();
        if list.last().is_some_and(|p| p.0 == pages) {
            return;
        }
        list.push(Pages(pages.to_vec()));
        let incarnation = list.len();
        if incarnation > MAX_INCARNATIONS {
            if incarnation == MAX_INCARNATIONS + 1 {
                self.notes.push(format!(
                    "`{name}` stood for more than {MAX_INCARNATIONS} buffers: the lines of the first {MAX_INCARNATIONS} are followed"
                ));
            }
            return;
        }
        let size: u64 = pages.iter().map(|r| r.len).sum();
        if self.follow_all && !self.interest.iter().any(|(b, _)| b == name) {
            self.interest.push((name.to_string(), 0..size));
        }
        let pages = Pages(pages.to_vec());
        let m = if self.moments.is_empty() { None } else { Some(self.moments.len() - 1) };
        for (i, (b, range)) in self.interest.clone().into_iter().enumerate() {
            if b != name {
                continue;
            }
            let l = self.line;
            let range = range.start.min(size)..range.end.min(size);
            let first = range.start / l;
            let end = range.end.div_ceil(l);
            let total = end.saturating_sub(first);
            let offsets: Vec<u64> = if total <= MAX_LINES {
                (first..end).collect()
            } else {
                (first..first + MAX_LINES / 2).chain(end - MAX_LINES / 2..end).collect()
            };
            let mut lines = Vec::new();
            for o in offsets {
                if let Some(p) = pages.phys(o * l) {
                    lines.push((p / l, o * l));
                }
            }
            let followed = lines.len() as u64;
            for &(pl, _) in &lines {
                self.lines.entry(pl).or_default();
            }
            let f = Followed {
                buffer: name.to_string(),
                range: [range.start, range.end],
                incarnation,
                lines: total,
                followed,
                interest: i,
            };
            self.followed.push((f, lines.clone()));
            // The state the lines are in when they start to be followed.
            let m = m.or_else(|| self.moment(0, None));
            for (pl, _) in lines {
                self.touched(pl..pl + 1, m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_s_content_merges_partial_writes() {
        let mut c = Content::uniform(0);
        c.set(8, 16, 5, 64);
        assert_eq!(c.0, vec![(0, 0), (8, 5), (16, 0)]);
        c.set(0, 64, 7, 64);
        assert_eq!(c.0, vec![(0, 7)]);
        c.set(60, 64, 9, 64);
        assert_eq!(c.0, vec![(0, 7), (60, 9)]);
        assert_eq!(c.writes(), vec![7, 9]);
        assert_eq!(c.at(61), 9);
        assert_eq!(c.at(59), 7);
    }
}
