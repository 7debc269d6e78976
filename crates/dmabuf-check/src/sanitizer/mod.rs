//! The coherency sanitizer (spec §7).
//!
//! It watches a simulation twice over: as the simulator's [`Observer`](dmabuf_sim::Observer) it sees the bytes
//! every access really returned (their provenance: which write produced each byte) and
//! every write-back, discard and copy the hardware made; and from the program (a scenario
//! runner, or Rust code driving the framework) it learns what each access *was*: who made
//! it, to which bytes of which buffer, on which scenario line, and the happens-before
//! edges between agents (program order, job submission, fences).
//!
//! Happens-before is kept with vector clocks: thread 0 is the CPU program, thread `d + 1`
//! the in-order job queue of device `d`. For every buffer byte range the sanitizer keeps
//! the latest write and the reads since (a shadow, as ThreadSanitizer and FastTrack do).
//! A read that returned another write than the latest one that happens before it is a
//! *stale read*, or a *lost write* when that latest write was destroyed (an older dirty
//! line written back over it, dirty lines dropped); two accesses to the same bytes, one a
//! write, with no happens-before between them are a *race*.
//!
//! Findings are deduplicated: the same bug on the same lines in a loop of 60 frames is
//! one finding with a count.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::ops::Range;

mod finding;
mod observe;

use dmabuf_sim::ProvRun;
use finding::hint_for;
pub use finding::{AccessInfo, Finding, FindingKind, Involved, Path, Severity, fmt_range};

/// A vector clock: one counter per thread.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct VClock(Vec<u32>);

impl VClock {
    /// The counter of thread `t`.
    pub fn get(&self, t: usize) -> u32 {
        self.0.get(t).copied().unwrap_or(0)
    }

    /// Advances thread `t`.
    pub fn tick(&mut self, t: usize) {
        if self.0.len() <= t {
            self.0.resize(t + 1, 0);
        }
        self.0[t] += 1;
    }

    /// Takes the pointwise maximum with `other` (what a wait on a fence does).
    pub fn join(&mut self, other: &VClock) {
        if self.0.len() < other.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a = (*a).max(*b);
        }
    }
}

/// Where a byte came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// A write the program made: index into the access table.
    Access(u32),
    /// Anything else: the initial (zeroed) contents, the exporter's own writes.
    Unknown,
    /// One of several: bytes of a copy whose place in the copy is not known.
    Ambiguous,
}

#[derive(Clone, Debug, Default)]
struct Seg {
    end: u64,
    write: Option<u32>,
    /// The latest read of each thread since the write.
    reads: Vec<u32>,
}

#[derive(Clone, Debug)]
struct Destroyed {
    line: u32,
    how: String,
    /// The line and agent of the older write that overwrote it (line 0: none or unknown).
    by: (u32, String),
}

struct Open {
    idx: u32,
    prov: Vec<ProvRun>,
    prov_len: u64,
}

/// The sanitizer. Install it (shared in an `Rc<RefCell<_>>`) as the simulator's observer,
/// then bracket every access with [`Sanitizer::begin_access`] / [`Sanitizer::end_access`].
#[derive(Default)]
pub struct Sanitizer {
    accesses: Vec<AccessInfo>,
    writes: HashMap<u64, u32>,
    /// A running digest of `writes`, in insertion order (for [`Sanitizer::digest`]).
    writes_digest: u64,
    /// Writes made by copies (a migration): each new write stands for the bytes it
    /// copied.
    aliases: HashMap<u64, Vec<ProvRun>>,
    shadow: HashMap<String, BTreeMap<u64, Seg>>,
    destroyed: HashMap<u32, Destroyed>,
    open: Option<Open>,
    copy: Option<(Vec<ProvRun>, u64, u64)>,
    line: u32,
    buffer: String,
    findings: Vec<Finding>,
    index: HashMap<(FindingKind, String, Vec<u32>), usize>,
}

impl Sanitizer {
    /// A sanitizer with no history.
    pub fn new() -> Sanitizer {
        Sanitizer::default()
    }

    /// Feeds into `h` everything that decides the sanitizer's future verdicts: the
    /// shadow (the latest write and reads of every byte range, with those accesses' clocks
    /// and lines), which writes were destroyed, which write ids stand for which accesses,
    /// and the findings so far. An explorer visits a state once by this digest.
    pub fn digest(&self, h: &mut impl Hasher) {
        let access = |i: u32, h: &mut _| {
            let a = &self.accesses[i as usize];
            (i, a.thread, &a.clock, a.write, a.line, a.range.start, a.range.end).hash(h);
        };
        let mut bufs: Vec<_> = self.shadow.iter().collect();
        bufs.sort_by(|a, b| a.0.cmp(b.0));
        for (name, map) in bufs {
            name.hash(h);
            for (start, seg) in map {
                (start, seg.end).hash(h);
                if let Some(w) = seg.write {
                    access(w, h);
                }
                for &r in &seg.reads {
                    access(r, h);
                }
            }
        }
        let mut destroyed: Vec<_> = self.destroyed.keys().collect();
        destroyed.sort();
        destroyed.hash(h);
        self.writes_digest.hash(h);
        (self.accesses.len(), self.findings.len()).hash(h);
        for f in &self.findings {
            (f.kind, &f.buffer, f.line, f.count).hash(h);
        }
    }

    /// The step being executed (for events that happen outside any access, such as a
    /// write-back during maintenance), and the buffer it is about.
    pub fn set_step(&mut self, line: u32, buffer: &str) {
        self.line = line;
        if self.buffer != buffer {
            self.buffer = buffer.to_string();
        }
    }

    /// A buffer name now stands for a new buffer (a scenario declared it again): what was
    /// known of the old one's bytes no longer applies.
    pub fn forget_buffer(&mut self, buffer: &str) {
        self.shadow.remove(buffer);
    }

    /// An access starts: the simulator events until [`Sanitizer::end_access`] are its.
    pub fn begin_access(&mut self, info: AccessInfo) {
        let idx = self.accesses.len() as u32;
        self.accesses.push(info);
        self.open = Some(Open { idx, prov: Vec::new(), prov_len: 0 });
    }

    /// The access ends: it is checked against the shadow. Returns whether a stale read,
    /// lost write or race was found in it.
    pub fn end_access(&mut self) -> bool {
        let Some(open) = self.open.take() else { return false };
        let before = self.findings.iter().map(|f| f.count).sum::<u64>();
        let a = self.accesses[open.idx as usize].clone();
        if a.write {
            self.check_write(open.idx, &a);
        } else {
            self.check_read(open.idx, &a, &open.prov);
        }
        self.findings.iter().map(|f| f.count).sum::<u64>() != before
    }

    /// A copy the framework makes on its own (a migration) starts: the bytes it writes
    /// stand for the bytes it read.
    pub fn begin_copy(&mut self) {
        self.copy = Some((Vec::new(), 0, 0));
    }

    /// The framework's copy ends: later writes are the program's own again.
    pub fn end_copy(&mut self) {
        self.copy = None;
    }

    /// Records a finding the program found (misuse, a refused attach, a failed expect).
    #[allow(clippy::too_many_arguments)]
    pub fn report(
        &mut self,
        kind: FindingKind,
        buffer: &str,
        range: Range<u64>,
        agents: Vec<String>,
        steps: Vec<Involved>,
        message: String,
        hint: String,
    ) {
        let line = steps.first().map(|s| s.line).unwrap_or(self.line);
        self.add(Finding {
            kind,
            buffer: buffer.to_string(),
            range: [range.start, range.end],
            agents,
            line,
            steps,
            message,
            hint,
            count: 1,
            severity: Severity::Definite,
            consequences: Vec::new(),
        });
    }

    /// Ends the run: writes destroyed and never replaced are lost even if nobody read
    /// them again.
    pub fn finish(&mut self) {
        let mut lost: Vec<(u32, Destroyed)> = self.destroyed.drain().collect();
        lost.sort_by_key(|(i, _)| *i);
        for (w, d) in lost {
            let a = self.accesses[w as usize].clone();
            if let Some(r) = self.current_range(w, &a) {
                self.lost_write(&a, r, &d, None);
            }
        }
    }

    /// The findings so far, in the order first seen.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Takes the findings.
    pub fn into_findings(self) -> Vec<Finding> {
        self.findings
    }

    fn add(&mut self, f: Finding) {
        let mut lines: Vec<u32> = f.steps.iter().map(|s| s.line).collect();
        lines.push(f.line);
        let key = (f.kind, f.buffer.clone(), lines);
        if let Some(&i) = self.index.get(&key) {
            self.findings[i].count += 1;
            return;
        }
        self.index.insert(key, self.findings.len());
        self.findings.push(f);
    }

    // ----- provenance ---------------------------------------------------------------

    /// The origins of `runs`, whose offsets are relative to buffer offset `base`
    /// (`None` when the bytes are not known by buffer offset: then a copy stands for all
    /// it copied), looking through copies.
    fn resolve(&self, runs: &[ProvRun], base: Option<u64>, out: &mut Vec<(u64, u64, Origin)>, depth: u32) {
        for r in runs {
            if let Some(src) = self.aliases.get(&r.write.0)
                && depth < 8
            {
                let Some(base) = base else {
                    // Not known by buffer offset: the run stands for whatever the copy
                    // copied, which is one origin only if the copy had one.
                    let mut origins = Vec::new();
                    self.resolve(src, None, &mut origins, depth + 1);
                    let first = origins.first().map(|o| o.2);
                    let one = first.filter(|f| origins.iter().all(|o| o.2 == *f));
                    out.push((r.offset, r.len, one.unwrap_or(Origin::Ambiguous)));
                    continue;
                };
                // A copy keeps offsets: the byte at buffer offset X came from X.
                for p in src {
                    let (a, b) = ((base + r.offset).max(p.offset), (base + r.offset + r.len).min(p.offset + p.len));
                    if a < b {
                        let one = [ProvRun { offset: a - base, len: b - a, write: p.write }];
                        self.resolve(&one, Some(base), out, depth + 1);
                    }
                }
                continue;
            }
            let origin = self.writes.get(&r.write.0).map_or(Origin::Unknown, |&i| Origin::Access(i));
            out.push((r.offset, r.len, origin));
        }
    }

    // ----- the shadow ---------------------------------------------------------------

    fn split(map: &mut BTreeMap<u64, Seg>, at: u64) {
        let Some((&start, seg)) = map.range_mut(..=at).next_back() else { return };
        if start < at && seg.end > at {
            let mut right = seg.clone();
            seg.end = at;
            right.end = right.end.max(at);
            map.insert(at, right);
        }
    }

    /// Segments overlapping `r`, split at its ends; gaps become empty segments.
    fn segments(&mut self, buffer: &str, r: &Range<u64>) -> &mut BTreeMap<u64, Seg> {
        let map = self.shadow.entry(buffer.to_string()).or_default();
        Self::split(map, r.start);
        Self::split(map, r.end);
        // Fill the gaps so every byte of `r` is in a segment.
        let mut gaps = Vec::new();
        let mut pos = r.start;
        for (&s, seg) in map.range(r.start..r.end) {
            if s > pos {
                gaps.push((pos, s));
            }
            pos = pos.max(seg.end);
        }
        if pos < r.end {
            gaps.push((pos, r.end));
        }
        for (s, e) in gaps {
            map.insert(s, Seg { end: e, write: None, reads: Vec::new() });
        }
        map
    }

    fn check_write(&mut self, idx: u32, a: &AccessInfo) {
        let r = a.range.clone();
        let segs: Vec<(u64, Seg)> =
            self.segments(&a.buffer, &r).range(r.start..r.end).map(|(s, g)| (*s, g.clone())).collect();
        for (s, seg) in &segs {
            if let Some(w) = seg.write {
                let wa = &self.accesses[w as usize];
                if !wa.hb(a) {
                    let (wa, sr) = (wa.clone(), *s..seg.end);
                    self.race(&wa, a, sr);
                }
            }
            for &rd in &seg.reads {
                let ra = &self.accesses[rd as usize];
                if ra.thread != a.thread && !ra.hb(a) {
                    let (ra, sr) = (ra.clone(), *s..seg.end);
                    self.race(&ra, a, sr);
                }
            }
        }
        let map = self.shadow.entry(a.buffer.clone()).or_default();
        for (s, _) in segs {
            map.remove(&s);
        }
        map.insert(r.start, Seg { end: r.end, write: Some(idx), reads: Vec::new() });
    }

    fn check_read(&mut self, idx: u32, a: &AccessInfo, prov: &[ProvRun]) {
        let r = a.range.clone();
        let mut origins = Vec::new();
        self.resolve(prov, Some(r.start), &mut origins, 0);
        let segs: Vec<(u64, Seg)> =
            self.segments(&a.buffer, &r).range(r.start..r.end).map(|(s, g)| (*s, g.clone())).collect();
        // (expected write, what was seen instead) -> the bytes, as a hull.
        let mut stale: Vec<(u32, Origin, Range<u64>)> = Vec::new();
        for (s, seg) in &segs {
            let sr = *s..seg.end;
            let expected = seg.write;
            if let Some(w) = expected {
                let wa = self.accesses[w as usize].clone();
                if !wa.hb(a) {
                    self.race(&wa, a, sr.clone());
                    continue;
                }
            }
            let Some(w) = expected else { continue };
            let wa = self.accesses[w as usize].clone();
            for &(o, l, origin) in &origins {
                let (bs, be) = ((r.start + o).max(sr.start), (r.start + o + l).min(sr.end));
                if bs >= be || origin == Origin::Access(w) {
                    continue;
                }
                if let Origin::Access(x) = origin {
                    let xa = self.accesses[x as usize].clone();
                    if !xa.hb(a) {
                        self.race(&xa, a, bs..be);
                        continue;
                    }
                    if !xa.hb(&wa) {
                        // Newer than the expected write and ordered before the read: the
                        // shadow lost track (another buffer's write to shared pages).
                        continue;
                    }
                }
                match stale.iter_mut().find(|(e, s, _)| *e == w && *s == origin) {
                    Some((_, _, hull)) => {
                        hull.start = hull.start.min(bs);
                        hull.end = hull.end.max(be);
                    }
                    None => stale.push((w, origin, bs..be)),
                }
            }
        }
        for (w, seen, range) in stale {
            let wa = self.accesses[w as usize].clone();
            match self.destroyed.get(&w).cloned() {
                Some(d) => {
                    self.destroyed.remove(&w);
                    self.lost_write(&wa, range, &d, Some(a));
                }
                None => self.stale_read(&wa, seen, a, range),
            }
        }
        // Record the read: the latest per thread.
        let map = self.shadow.entry(a.buffer.clone()).or_default();
        for (s, _) in segs {
            if let Some(seg) = map.get_mut(&s) {
                let accesses = &self.accesses;
                seg.reads.retain(|&x| accesses[x as usize].thread != a.thread);
                seg.reads.push(idx);
            }
        }
    }

    /// Whether write `w` is still the latest write of some of its bytes; the bytes.
    fn current_range(&self, w: u32, a: &AccessInfo) -> Option<Range<u64>> {
        let map = self.shadow.get(&a.buffer)?;
        let mut hull: Option<Range<u64>> = None;
        for (&s, seg) in map.range(..a.range.end) {
            if seg.end > a.range.start && seg.write == Some(w) {
                let h = hull.get_or_insert(s..seg.end);
                h.start = h.start.min(s);
                h.end = h.end.max(seg.end);
            }
        }
        hull
    }

    fn destroy(&mut self, w: u32, how: String, by: (u32, String)) {
        if self.destroyed.contains_key(&w) {
            return;
        }
        let a = &self.accesses[w as usize];
        // The access still open is not in the shadow yet (it is recorded when it ends),
        // but a write-back in the middle of it destroys it all the same.
        let open = self.open.as_ref().is_some_and(|o| o.idx == w);
        if open || self.current_range(w, a).is_some() {
            self.destroyed.insert(w, Destroyed { line: self.line, how, by });
        }
    }

    // ----- findings -----------------------------------------------------------------

    fn race(&mut self, first: &AccessInfo, second: &AccessInfo, range: Range<u64>) {
        let verb = |a: &AccessInfo| if a.write { "writes" } else { "reads" };
        let message = format!(
            "{} {} {}{} at {} and {} {} it at {} with nothing ordering them",
            first.agent,
            verb(first),
            second.buffer,
            fmt_range(&range),
            first.at(),
            second.agent,
            verb(second),
            second.at(),
        );
        // The access later in the program is the one to order after the other, whichever
        // the hardware ran first.
        let (early, late) = if (first.line, first.iteration) <= (second.line, second.iteration) {
            (first, second)
        } else {
            (second, first)
        };
        let hint = if early.thread != 0 && late.thread == 0 {
            format!(
                "wait for {}'s job (a fence it signals) before {}, or give the job a fence and `wait` on it",
                early.agent,
                late.at()
            )
        } else if early.thread == 0 && late.thread != 0 {
            format!(
                "the job at {} runs while the CPU still touches the bytes at {}: submit it after the CPU is done, or make it wait (`after F`) for a fence the CPU signals",
                late.at(),
                early.at()
            )
        } else {
            format!(
                "order the two jobs with a fence: make the job at {} wait (`after F`) for a fence the job at {} signals",
                late.at(),
                early.at()
            )
        };
        self.add(Finding {
            kind: FindingKind::Race,
            buffer: second.buffer.clone(),
            range: [range.start, range.end],
            agents: vec![first.agent.clone(), second.agent.clone()],
            line: second.line,
            steps: vec![
                Involved { line: first.line, role: format!("{} {}", first.agent, verb(first)) },
                Involved { line: second.line, role: format!("{} {}", second.agent, verb(second)) },
            ],
            message,
            hint,
            count: 1,
            severity: Severity::Definite,
            consequences: Vec::new(),
        });
    }

    fn stale_read(&mut self, expected: &AccessInfo, seen: Origin, reader: &AccessInfo, range: Range<u64>) {
        let seen_desc = match seen {
            Origin::Access(x) => {
                let xa = &self.accesses[x as usize];
                format!("the older bytes {} wrote at {}", xa.agent, xa.at())
            }
            Origin::Unknown => "the buffer's initial contents".to_string(),
            Origin::Ambiguous => "bytes of an earlier copy".to_string(),
        };
        let mut steps = vec![Involved { line: expected.line, role: format!("{} wrote the bytes", expected.agent) }];
        if let Origin::Access(x) = seen {
            let xa = &self.accesses[x as usize];
            steps.push(Involved { line: xa.line, role: format!("{} wrote what was seen", xa.agent) });
        }
        if let Path::Device { mapped_at, .. } = reader.path
            && mapped_at > expected.line
            && mapped_at < reader.line
        {
            let role = format!("{} maps {}: the missing step belongs before this line", reader.agent, reader.buffer);
            steps.push(Involved { line: mapped_at, role });
        }
        steps.push(Involved { line: reader.line, role: format!("{} read", reader.agent) });
        let message = format!(
            "{} read {}{} at {} and got {} instead of what {} wrote at {}",
            reader.agent,
            reader.buffer,
            fmt_range(&range),
            reader.at(),
            seen_desc,
            expected.agent,
            expected.at()
        );
        let hint = hint_for(expected, reader);
        self.add(Finding {
            kind: FindingKind::StaleRead,
            buffer: reader.buffer.clone(),
            range: [range.start, range.end],
            agents: vec![expected.agent.clone(), reader.agent.clone()],
            line: reader.line,
            steps,
            message,
            hint,
            count: 1,
            severity: Severity::Definite,
            consequences: Vec::new(),
        });
    }

    fn lost_write(&mut self, w: &AccessInfo, range: Range<u64>, d: &Destroyed, reader: Option<&AccessInfo>) {
        let mut steps = vec![
            Involved { line: w.line, role: format!("{} wrote the bytes", w.agent) },
            Involved { line: d.line, role: d.how.clone() },
        ];
        if d.by.0 != 0 {
            steps.push(Involved { line: d.by.0, role: format!("{} wrote the older bytes that came back", d.by.1) });
        }
        let mut agents = vec![w.agent.clone()];
        if let Some(r) = reader {
            steps.push(Involved { line: r.line, role: format!("{} read older bytes", r.agent) });
            agents.push(r.agent.clone());
        }
        let message = format!(
            "what {} wrote to {}{} at {} was lost at line {}: {}",
            w.agent,
            w.buffer,
            fmt_range(&range),
            w.at(),
            d.line,
            d.how
        );
        let hint = match w.path {
            Path::Device { .. } if d.how.contains("invalidate") => format!(
                "what {} wrote sat in dirty CPU lines (a port that stashes into the CPU cache, or a bounce copy back) and an invalidate for another mapped device dropped them before they reached memory: unmap the device that keeps its mapping of {} before the CPU's bracket, or give the writer a buffer of its own",
                w.agent, w.buffer
            ),
            Path::Device { .. } => format!(
                "the CPU held dirty lines of {b} while {} wrote it: end the CPU's write bracket (`cpu end {b} write` or `sync {b} end write`) before line {}, and begin CPU access again only after the job",
                w.agent,
                w.line,
                b = w.buffer
            ),
            _ => format!(
                "the dirty lines were dropped before they reached memory: end the CPU's bracket (`cpu end {} write`) before handing {} to a device",
                w.buffer, w.buffer
            ),
        };
        self.add(Finding {
            kind: FindingKind::LostWrite,
            buffer: w.buffer.clone(),
            range: [range.start, range.end],
            agents,
            line: d.line,
            steps,
            message,
            hint,
            count: 1,
            severity: Severity::Definite,
            consequences: Vec::new(),
        });
    }
}

/// Folds a (write id, access) pair into a running digest.
fn mix(d: u64, id: u64, idx: u32) -> u64 {
    let x = (id ^ (u64::from(idx) << 40)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    d.rotate_left(7) ^ x ^ (x >> 29)
}
