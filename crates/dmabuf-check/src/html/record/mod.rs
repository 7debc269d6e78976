//! The recorder: what one run did, kept for the HTML report, within bounds.
//!
//! It is the simulator's [`Observer`](dmabuf_sim::Observer) and the runner's [`Tracer`]
//! at once. From the runner it learns the program's side (steps, jobs, fences and waits,
//! where each buffer's pages are); from the simulator's events, the hardware's (accesses,
//! maintenance, bounce copies, the hardware's own moves) with provenance, which write
//! produced the bytes each line holds.
//!
//! The timeline is a sequence of *moments*: a step of the program, a device job's
//! accesses, a burst of the framework's maintenance or copies, a burst of the hardware's
//! own moves. Consecutive events of one lane within one step are one moment, so the 64
//! page cleans of a whole-buffer sync are one mark, not 64.
//!
//! Line states are followed for every line the simulator touches, coalesced by range
//! (a 64 MiB buffer written whole is one range), and their history is kept only for the
//! lines of interest (the byte ranges of the findings, or of every buffer), at most
//! [`MAX_LINES`] per range: memory in proportion to what is shown, not to the run.
//!
//! Bounds: a `repeat` of more than [`FOLD_OVER`] iterations keeps its first
//! [`FOLD_KEEP`] and its last iteration; those between are one folded moment (the line
//! states still follow them). The whole recording stops adding moments at
//! [`MAX_MOMENTS`] and history at [`MAX_HISTORY`] entries, with a note saying where.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;

use dmabuf_sim::Platform;
use rangemap::RangeMap;
use serde::Serialize;

use crate::runner::trace::{FenceKey, TraceEvent, Tracer, Waiter};

/// Iterations of a `repeat` past which the middle ones are folded into one moment.
pub const FOLD_OVER: u64 = 4;
/// Iterations kept before the fold (the last one is kept too).
pub const FOLD_KEEP: u64 = 2;
/// Moments recorded at most; the run goes on unrecorded past them.
pub const MAX_MOMENTS: usize = 10_000;
/// Line-state changes recorded at most.
pub const MAX_HISTORY: usize = 200_000;
/// Lines followed per range of interest; a longer range is followed at its first and
/// last `MAX_LINES / 2` lines (where partial-line problems live).
pub const MAX_LINES: u64 = 2048;
/// Buffers a name may stand for (a `buffer` line in a loop) whose lines are followed.
const MAX_INCARNATIONS: usize = 4;

/// The lanes of the timeline, after the CPU and the devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LaneKind {
    /// The program's thread.
    Cpu,
    /// A device's jobs.
    Device,
    /// The framework's own maintenance and copies (zeroing, migration).
    Framework,
    /// swiotlb's bounce copies.
    Bounce,
    /// The hardware's own moves: prefetches, write-backs and drops it chose, evictions.
    Hardware,
    /// Iterations folded away (drawn across every lane).
    Fold,
}

/// One lane of the timeline.
#[derive(Clone, Debug, Serialize)]
pub struct Lane {
    /// What the lane shows.
    pub kind: LaneKind,
    /// Its label: `cpu`, the device's name, `framework`, `bounce`, `hardware`.
    pub name: String,
}

/// One mark on the timeline.
#[derive(Clone, Debug, Serialize)]
pub struct Moment {
    /// Index into [`Recording::lanes`].
    pub lane: usize,
    /// The scenario line being executed (the job's line for a job).
    pub line: u32,
    /// The iteration of the innermost `repeat` (1-based), inside one.
    pub it: Option<u64>,
    /// What happened, in words (empty for a step: the renderer quotes the line).
    pub label: String,
    /// The buffers it touched, by name.
    pub buffers: Vec<String>,
    /// How many events (maintenance operations, moves, steps folded) it stands for.
    pub n: u64,
}

/// A device job: queued from its submission, running from its start to its end.
#[derive(Clone, Debug, Serialize)]
pub struct JobSpan {
    /// The device's lane.
    pub lane: usize,
    /// The line that submitted it.
    pub line: u32,
    /// The moment of its submission.
    pub submit: usize,
    /// The moment its accesses started.
    pub start: usize,
    /// The last moment of the job (its accesses and the driver's maintenance).
    pub end: usize,
    /// The fence it signals, by the scenario's name.
    pub fence: Option<String>,
}

/// A fence signalled at one moment and waited for at another.
#[derive(Clone, Debug, Serialize)]
pub struct Arrow {
    /// The moment of the signal (a job's end, the CPU's `signal`).
    pub from: usize,
    /// The moment of the wait (a step, or the start of a job that waited with `after`).
    pub to: usize,
    /// The scenario's name of the fence.
    pub fence: String,
    /// Whether the framework waited on its own (a reservation object), not a `wait` step.
    pub implicit: bool,
}

/// A line's state in one place, as drawn.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct View {
    /// `absent`, `clean`, `dirty` (caches) or `held` (memory).
    pub state: &'static str,
    /// The writes whose bytes it holds, in byte order, at most four.
    pub writes: Vec<u64>,
    /// It holds bytes older than the newest write to them.
    pub stale: bool,
}

/// One row of the line-state panel: lines that share one history.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Index into [`Recording::ranges`].
    pub range: usize,
    /// The lines' byte ranges in their buffer, `[start, end)`, in order.
    pub spans: Vec<[u64; 2]>,
    /// How many lines the row stands for.
    pub lines: u64,
    /// The first line's physical address.
    pub phys: u64,
    /// Per place (memory, the CPU cache, each device cache): changes as
    /// `(moment, view)`, the first at the moment the lines were first followed.
    pub places: Vec<Vec<(usize, View)>>,
}

/// A range of interest as followed: a buffer's byte range, in one of the buffers its
/// name stood for.
#[derive(Clone, Debug, Serialize)]
pub struct Followed {
    /// The buffer's name.
    pub buffer: String,
    /// The bytes, `[start, end)`.
    pub range: [u64; 2],
    /// Which buffer the name stood for (1 for the first allocation).
    pub incarnation: usize,
    /// Lines in the range, and of those followed.
    pub lines: u64,
    /// Lines followed (fewer than `lines` when the range is longer than [`MAX_LINES`]).
    pub followed: u64,
    /// The index of the range of interest it is (as given to [`Recorder::new`]).
    pub interest: usize,
}

/// Who made a write whose bytes a line holds.
#[derive(Clone, Debug, Serialize)]
pub struct WriteInfo {
    /// `cpu`, a device's name, or `framework` (zeroing, a migration's copy).
    pub agent: String,
    /// The scenario line.
    pub line: u32,
    /// The iteration, inside a `repeat`.
    pub it: Option<u64>,
}

/// What one run did, as the report draws it.
#[derive(Clone, Debug, Serialize)]
pub struct Recording {
    /// The cache line size, in bytes.
    pub line_size: u64,
    /// Lanes, the CPU first, then the devices that did something, then the framework's,
    /// the bounce copies' and the hardware's.
    pub lanes: Vec<Lane>,
    /// Places a line can be in: `memory`, `CPU cache`, each device cache.
    pub places: Vec<String>,
    /// The marks, in order.
    pub moments: Vec<Moment>,
    /// Device jobs.
    pub jobs: Vec<JobSpan>,
    /// Fences, from signal to wait.
    pub arrows: Vec<Arrow>,
    /// The ranges of interest as followed.
    pub ranges: Vec<Followed>,
    /// The line-state rows.
    pub rows: Vec<Row>,
    /// The writes the rows name, by id (0 is the buffer's initial contents).
    pub writes: BTreeMap<u64, WriteInfo>,
    /// What was not recorded, and why.
    pub notes: Vec<String>,
}

mod lines;
mod observe;

use lines::{Content, Held, Pages};

/// A followed line's changes: `(moment, place, view)`, in order.
type History = Vec<(usize, u8, View)>;

/// Follows one run for the report. Share it (`Rc<RefCell<_>>`) as the run's observer and
/// tracer, then take its [`Recording`] with [`Recorder::finish`].
pub struct Recorder {
    line: u64,
    devices: Vec<String>,
    /// Per device, the place of its private cache, if it has one.
    dev_place: Vec<Option<usize>>,
    /// Per device, whether its coherent port stashes writes into the CPU cache.
    stash: Vec<bool>,
    places: Vec<String>,
    /// Per place, its lines by index (address / line size).
    state: Vec<RangeMap<u64, Held>>,
    /// The newest write of every byte, by line.
    latest: RangeMap<u64, Content>,
    /// The ranges of interest: buffer name and bytes.
    interest: Vec<(String, Range<u64>)>,
    /// No range was given: every buffer is followed whole.
    follow_all: bool,
    /// Buffers by name: the pages of each buffer the name stood for.
    buffers: HashMap<String, Vec<Pages>>,
    /// Physical pages to buffer names (for a moment's buffers).
    owner: RangeMap<u64, String>,
    /// Lines followed, with their history: `(moment, place, view)`.
    lines: BTreeMap<u64, History>,
    /// The last view of each followed line in each place: `(line, place)`.
    shown: HashMap<(u64, u8), View>,
    followed: Vec<(Followed, Vec<(u64, u64)>)>,
    history: usize,
    // The timeline.
    lanes: Vec<Lane>,
    lane_of_dev: Vec<Option<usize>>,
    moments: Vec<Moment>,
    /// The lane and epoch of the last moment: events of the same lane in the same epoch
    /// join it.
    last: Option<(usize, u64)>,
    epoch: u64,
    /// Per moment, the framework operations it stands for, by kind: (ops, bytes).
    tallies: HashMap<usize, BTreeMap<&'static str, (u64, u64)>>,
    jobs: Vec<JobSpan>,
    /// Jobs submitted and not started: their submission moment.
    submitted: HashMap<u64, usize>,
    /// The job running, if one is: (id, its span's index when recorded).
    running: Option<(u64, Option<usize>)>,
    /// Fences signalled: the moment, and the name.
    signals: HashMap<FenceKey, usize>,
    /// Waits of jobs not started yet: job id to (fence, name).
    job_waits: HashMap<u64, Vec<FenceKey>>,
    fence_names: HashMap<FenceKey, String>,
    drawn: HashSet<(FenceKey, Option<u64>)>,
    arrows: Vec<Arrow>,
    writes: BTreeMap<u64, WriteInfo>,
    // The program's position.
    pos: (u32, Option<u64>),
    step_buffer: String,
    job_ctx: Option<(usize, u32, Option<u64>, String)>,
    in_access: bool,
    /// The write of the operation under way and where it lands, until its `operation`.
    pending: Option<(u64, Option<usize>)>,
    /// Lines evicted in the operation under way after it wrote them (their write-back
    /// carried the pending write).
    evicted: Vec<u64>,
    /// Write-backs of the operation under way: line to the writes they carried.
    written_back: HashMap<u64, Vec<u64>>,
    /// Open `repeat`s: (line, count); and the fold: (depth, its moment).
    loops: Vec<(u32, u64)>,
    fold: Option<(usize, usize)>,
    /// Why recording stopped, once it did.
    capped: Option<String>,
    notes: Vec<String>,
}

/// Bytes for a label: `64 B`, `4 KiB`, `1.5 MiB`.
pub fn bytes(b: u64) -> String {
    if b >= 1 << 20 && b.is_multiple_of(1 << 20) {
        format!("{} MiB", b >> 20)
    } else if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    } else if b >= 1024 && b.is_multiple_of(1024) {
        format!("{} KiB", b >> 10)
    } else if b >= 1024 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}

impl Recorder {
    /// A recorder for a run on `platform`, following the lines of `interest` (buffer
    /// name and byte range, clipped to the buffer), or of every buffer when it is empty.
    pub fn new(platform: &Platform, interest: Vec<(String, Range<u64>)>) -> Recorder {
        let mut places = vec!["memory".to_string(), "CPU cache".to_string()];
        let mut dev_place = Vec::new();
        for d in &platform.devices {
            if d.cache.is_some() {
                dev_place.push(Some(places.len()));
                places.push(format!("{} cache", d.name));
            } else {
                dev_place.push(None);
            }
        }
        let mut notes = Vec::new();
        if platform.system_cache_before_poc() {
            notes.push(
                "the platform's system-level cache is not drawn: `memory` is what lies beyond the CPU's and the devices' caches"
                    .to_string(),
            );
        }
        Recorder {
            line: platform.line_size,
            devices: platform.devices.iter().map(|d| d.name.clone()).collect(),
            stash: platform.devices.iter().map(|d| d.coherent && d.stash).collect(),
            dev_place,
            state: places.iter().map(|_| RangeMap::new()).collect(),
            places,
            latest: RangeMap::new(),
            follow_all: interest.is_empty(),
            interest,
            buffers: HashMap::new(),
            owner: RangeMap::new(),
            lines: BTreeMap::new(),
            shown: HashMap::new(),
            followed: Vec::new(),
            history: 0,
            lanes: vec![Lane { kind: LaneKind::Cpu, name: "cpu".into() }],
            lane_of_dev: vec![None; platform.devices.len()],
            moments: Vec::new(),
            last: None,
            epoch: 0,
            tallies: HashMap::new(),
            jobs: Vec::new(),
            submitted: HashMap::new(),
            running: None,
            signals: HashMap::new(),
            job_waits: HashMap::new(),
            fence_names: HashMap::new(),
            drawn: HashSet::new(),
            arrows: Vec::new(),
            writes: BTreeMap::new(),
            pos: (0, None),
            step_buffer: String::new(),
            job_ctx: None,
            in_access: false,
            pending: None,
            evicted: Vec::new(),
            written_back: HashMap::new(),
            loops: Vec::new(),
            fold: None,
            capped: None,
            notes,
        }
    }

    // ----- the timeline -------------------------------------------------------------

    pub(super) fn lane(&mut self, kind: LaneKind, name: &str) -> usize {
        if let Some(i) = self.lanes.iter().position(|l| l.kind == kind && l.name == name) {
            return i;
        }
        self.lanes.push(Lane { kind, name: name.to_string() });
        self.lanes.len() - 1
    }

    pub(super) fn device_lane(&mut self, dev: usize) -> usize {
        if let Some(l) = self.lane_of_dev.get(dev).copied().flatten() {
            return l;
        }
        let name = self.devices.get(dev).cloned().unwrap_or_else(|| format!("device {dev}"));
        let l = self.lane(LaneKind::Device, &name);
        if let Some(x) = self.lane_of_dev.get_mut(dev) {
            *x = Some(l);
        }
        l
    }

    /// The moment events of `lane` belong to now: the last one if it is the same lane
    /// in the same epoch, else a new one. `None` once recording stopped.
    pub(super) fn moment(&mut self, lane: usize, buffer: Option<&str>) -> Option<usize> {
        if self.capped.is_some() {
            return None;
        }
        if let Some((_, m)) = self.fold {
            return Some(m);
        }
        let id = match self.last {
            Some((l, e)) if l == lane && e == self.epoch && !self.moments.is_empty() => self.moments.len() - 1,
            _ => {
                if self.moments.len() >= MAX_MOMENTS {
                    self.cap(format!("{MAX_MOMENTS} moments"));
                    return None;
                }
                let (line, it) = self.pos;
                self.moments.push(Moment { lane, line, it, label: String::new(), buffers: Vec::new(), n: 0 });
                self.last = Some((lane, self.epoch));
                self.moments.len() - 1
            }
        };
        if let Some(b) = buffer.filter(|b| !b.is_empty())
            && !self.moments[id].buffers.iter().any(|x| x == b)
        {
            self.moments[id].buffers.push(b.to_string());
        }
        Some(id)
    }

    pub(super) fn cap(&mut self, what: String) {
        if self.capped.is_none() {
            let (line, it) = self.pos;
            let at = match it {
                Some(i) => format!("line {line} (iteration {i})"),
                None => format!("line {line}"),
            };
            self.capped = Some(format!("recording stopped at {at} after {what}: the rest of the run is not drawn"));
        }
    }

    /// The lane of the program's own access under way: the job's device or the CPU.
    pub(super) fn access_lane(&self) -> usize {
        self.job_ctx.as_ref().map_or(0, |j| j.0)
    }

    /// The buffer whose pages hold `addr`, if any.
    pub(super) fn owner_of(&self, addr: u64) -> Option<String> {
        self.owner.get(&(addr / dmabuf_sim::PAGE_SIZE)).cloned()
    }

    pub(super) fn tally(&mut self, m: Option<usize>, kind: &'static str, bytes: u64) {
        let Some(m) = m else { return };
        let e = self.tallies.entry(m).or_default().entry(kind).or_default();
        e.0 += 1;
        e.1 += bytes;
        self.moments[m].n += 1;
    }

    pub(super) fn new_epoch(&mut self) {
        self.epoch += 1;
    }
}

impl Recorder {
    // ----- the result ---------------------------------------------------------------

    /// What was recorded (the recorder is left empty).
    pub fn finish(&mut self) -> Recording {
        for (m, t) in std::mem::take(&mut self.tallies) {
            let parts: Vec<String> = t
                .iter()
                .map(
                    |(k, (n, b))| {
                        if *n > 1 { format!("{k} {} ({n})", bytes(*b)) } else { format!("{k} {}", bytes(*b)) }
                    },
                )
                .collect();
            let label = &mut self.moments[m].label;
            if label.is_empty() {
                *label = parts.join(", ");
            }
        }
        let mut rows = Vec::new();
        for (ri, (_, lines)) in self.followed.iter().enumerate() {
            // Lines with one history share a row; rows in the order of their first line.
            let mut by_hist: Vec<(History, Vec<(u64, u64)>)> = Vec::new();
            let mut index: HashMap<History, usize> = HashMap::new();
            for &(pl, off) in lines {
                let h = self.lines.get(&pl).cloned().unwrap_or_default();
                match index.get(&h) {
                    Some(&i) => by_hist[i].1.push((pl, off)),
                    None => {
                        index.insert(h.clone(), by_hist.len());
                        by_hist.push((h, vec![(pl, off)]));
                    }
                }
            }
            for (h, members) in by_hist {
                let mut spans: Vec<[u64; 2]> = Vec::new();
                for &(_, off) in &members {
                    match spans.last_mut() {
                        Some(s) if s[1] == off => s[1] = off + self.line,
                        _ => spans.push([off, off + self.line]),
                    }
                }
                let mut places = vec![Vec::new(); self.places.len()];
                for (m, p, v) in h {
                    places[p as usize].push((m, v));
                }
                rows.push(Row {
                    range: ri,
                    spans,
                    lines: members.len() as u64,
                    phys: members[0].0 * self.line,
                    places,
                });
            }
        }
        let mut notes = std::mem::take(&mut self.notes);
        if let Some(c) = self.capped.take() {
            notes.push(c);
        }
        for (f, _) in &self.followed {
            if f.followed < f.lines {
                notes.push(format!(
                    "{}[{:#x}..{:#x}): {} lines, of which the first and last {} are followed",
                    f.buffer,
                    f.range[0],
                    f.range[1],
                    f.lines,
                    f.followed / 2
                ));
            }
        }
        // Only the writes a row names: the rest (a folded loop's, say) would be kept for
        // nothing.
        let named: HashSet<u64> =
            rows.iter().flat_map(|r| &r.places).flatten().flat_map(|(_, v)| &v.writes).copied().collect();
        let mut writes = std::mem::take(&mut self.writes);
        writes.retain(|w, _| named.contains(w));
        Recording {
            line_size: self.line,
            lanes: std::mem::take(&mut self.lanes),
            places: self.places.clone(),
            moments: std::mem::take(&mut self.moments),
            jobs: std::mem::take(&mut self.jobs),
            arrows: std::mem::take(&mut self.arrows),
            ranges: std::mem::take(&mut self.followed).into_iter().map(|(f, _)| f).collect(),
            rows,
            writes,
            notes,
        }
    }

    pub(super) fn arrow(&mut self, fence: FenceKey, to: usize, implicit: bool, waiter: Option<u64>) {
        let Some(&from) = self.signals.get(&fence) else { return };
        if from == to || !self.drawn.insert((fence, waiter)) {
            return;
        }
        let name = self.fence_names.get(&fence).cloned().unwrap_or_default();
        self.arrows.push(Arrow { from, to, fence: name, implicit });
    }
}

impl Tracer for Recorder {
    fn trace(&mut self, ev: &TraceEvent<'_>) {
        match *ev {
            TraceEvent::Step { line, buffer, iteration } => {
                self.pos = (line, iteration);
                self.step_buffer = buffer.to_string();
                self.new_epoch();
                let m = self.moment(0, Some(buffer));
                if let (Some(m), Some((_, f))) = (m, self.fold)
                    && m == f
                {
                    self.moments[m].n += 1;
                }
            }
            TraceEvent::Iteration { line, index, count } => {
                if index == 0 {
                    self.loops.push((line, count));
                }
                let depth = self.loops.len();
                if self.fold.is_none() && count > FOLD_OVER && index == FOLD_KEEP && self.capped.is_none() {
                    self.new_epoch();
                    let lane = self.lane(LaneKind::Fold, "folded");
                    if let Some(m) = self.moment(lane, None) {
                        self.moments[m].label = format!(
                            "iterations {} to {} of the repeat at line {line} folded",
                            FOLD_KEEP + 1,
                            count - 1
                        );
                        self.moments[m].line = line;
                        self.fold = Some((depth, m));
                    }
                } else if let Some((d, _)) = self.fold
                    && d == depth
                    && index + 1 == count
                {
                    self.fold = None;
                    self.new_epoch();
                }
            }
            TraceEvent::LoopEnd { .. } => {
                let depth = self.loops.len();
                self.loops.pop();
                if self.fold.is_some_and(|(d, _)| d == depth) {
                    self.fold = None;
                }
                self.new_epoch();
            }
            TraceEvent::Buffer { name, pages } => self.buffer(name, pages),
            TraceEvent::JobSubmitted { id, .. } => {
                if let Some(m) = self.moment(0, None) {
                    self.submitted.insert(id, m);
                }
            }
            TraceEvent::JobStart { id, dev, line, iteration, buffer } => {
                let lane = self.device_lane(dev.index());
                let saved = self.pos;
                self.pos = (line, iteration);
                self.new_epoch();
                let m = self.moment(lane, Some(buffer));
                self.pos = saved;
                self.job_ctx = Some((lane, line, iteration, buffer.to_string()));
                let submit = self.submitted.remove(&id);
                let span = match (m, submit) {
                    (Some(m), Some(s)) if self.fold.is_none() => {
                        self.jobs.push(JobSpan { lane, line, submit: s, start: m, end: m, fence: None });
                        Some(self.jobs.len() - 1)
                    }
                    _ => None,
                };
                self.running = Some((id, span));
                if let (Some(m), Some(waits)) = (m, self.job_waits.remove(&id)) {
                    for f in waits {
                        self.arrow(f, m, false, Some(id));
                    }
                }
            }
            TraceEvent::JobEnd { id, fence, .. } => {
                let end = if self.moments.is_empty() { None } else { Some(self.moments.len() - 1) };
                if let Some((rid, Some(span))) = self.running
                    && rid == id
                {
                    if let Some(e) = end {
                        self.jobs[span].end = e;
                    }
                    self.jobs[span].fence = fence.map(|(_, n)| n.to_string());
                }
                if let (Some((key, name)), Some(e)) = (fence, end) {
                    self.fence_names.insert(key, name.to_string());
                    if self.fold.is_none() {
                        self.signals.insert(key, e);
                    }
                }
                self.running = None;
                self.job_ctx = None;
                self.new_epoch();
            }
            TraceEvent::CpuSignal { fence, name } => {
                self.fence_names.insert(fence, name.to_string());
                if self.fold.is_none()
                    && let Some(m) = self.moment(0, None)
                {
                    self.signals.insert(fence, m);
                }
            }
            TraceEvent::Waited { fence, name, by } => {
                self.fence_names.entry(fence).or_insert_with(|| name.to_string());
                if self.fold.is_some() {
                    return;
                }
                match by {
                    Waiter::Job(id) => self.job_waits.entry(id).or_default().push(fence),
                    Waiter::Cpu { implicit } => {
                        // A wait inside a job's run is the framework's on the job's behalf.
                        if self.job_ctx.is_none()
                            && let Some(m) = self.moment(0, None)
                        {
                            self.arrow(fence, m, implicit, None);
                        }
                    }
                }
            }
            TraceEvent::Access(on) => self.in_access = on,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(bytes(64), "64 B");
        assert_eq!(bytes(4096), "4 KiB");
        assert_eq!(bytes(256 * 1024), "256 KiB");
        assert_eq!(bytes(3 << 20), "3 MiB");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}
