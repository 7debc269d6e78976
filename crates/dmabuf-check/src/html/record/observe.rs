//! The simulator's events into line states and moments.

use std::collections::HashSet;

use dmabuf_sim::{Cause, Event, MaintOp, MemAttr, Observer, OpInfo, OpKind};

use super::lines::{Put, runs_of};
use super::*;

fn op_name(op: MaintOp) -> &'static str {
    match op {
        MaintOp::Clean => "clean",
        MaintOp::Invalidate => "invalidate",
        MaintOp::CleanInvalidate => "clean+invalidate",
        MaintOp::DeviceFlush => "device flush",
        MaintOp::DeviceInvalidate => "device invalidate",
    }
}

impl Observer for Recorder {
    fn event(&mut self, ev: &Event<'_>) {
        match ev {
            Event::CpuWrite { write, attr, .. } => {
                let place = match attr {
                    MemAttr::Cached => Some(1),
                    MemAttr::Uncached => Some(0),
                    MemAttr::WriteCombine => None,
                };
                self.pending = Some((write.0, place));
                self.note_write(write.0);
            }
            Event::DeviceWrite { dev, write, .. } => {
                let d = dev.index();
                let place = match (self.dev_place.get(d).copied().flatten(), self.stash.get(d).copied()) {
                    (Some(p), _) => Some(p),
                    (None, Some(true)) => Some(1),
                    _ => Some(0),
                };
                self.pending = Some((write.0, place));
                self.note_write(write.0);
            }
            Event::CpuRead { .. } | Event::DeviceRead { .. } => {}
            Event::Fill { cache, range, cause, prov } => {
                let Some(place) = self.place(*cache) else { return };
                let m = self.event_moment(*cause, range.start.raw());
                self.put(place, range.start.raw(), &runs_of(prov, range.len), Put::Clean);
                if *cause == Cause::Freedom {
                    self.tally(m, "prefetch", range.len);
                }
                let lines = self.lines_of(range.start.raw(), range.len);
                self.touched(lines, m);
            }
            Event::WriteBack { cache, range, cause, prov, .. } => {
                let Some(place) = self.place(*cache) else { return };
                let kind = match cause {
                    Cause::Freedom => Some("write back"),
                    Cause::Capacity => Some("evict"),
                    _ => None,
                };
                let m = self.event_moment(*cause, range.start.raw());
                let runs = runs_of(prov, range.len);
                self.put(0, range.start.raw(), &runs, Put::Memory);
                let lines = self.lines_of(range.start.raw(), range.len);
                self.clean_lines(place, lines.clone());
                if self.pending.is_none() {
                    // Inside an operation whose write comes later: keep what it carried.
                    for li in lines.clone() {
                        let ws = runs.iter().map(|r| r.2).collect();
                        self.written_back.insert(li, ws);
                    }
                }
                if let Some(k) = kind.filter(|k| *k == "write back") {
                    self.tally(m, k, range.len);
                }
                self.touched(lines, m);
            }
            Event::Discard { cache, range, cause, .. } => {
                let Some(place) = self.place(*cache) else { return };
                let kind = match cause {
                    Cause::Freedom => Some("drop"),
                    Cause::Capacity => Some("evict"),
                    _ => None,
                };
                let m = self.event_moment(*cause, range.start.raw());
                let lines = self.lines_of(range.start.raw(), range.len);
                self.state[place].remove(lines.clone());
                if *cause == Cause::Capacity {
                    self.evicted.extend(lines.clone());
                }
                if let Some(k) = kind {
                    self.tally(m, k, range.len);
                }
                self.touched(lines, m);
            }
            Event::Drain { range, prov } => {
                let lane =
                    if self.in_access { self.access_lane() } else { self.lane(LaneKind::Framework, "framework") };
                let b = self.owner_of(range.start.raw());
                let m = self.moment(lane, b.as_deref());
                self.put(0, range.start.raw(), &runs_of(prov, range.len), Put::Memory);
                let lines = self.lines_of(range.start.raw(), range.len);
                self.touched(lines, m);
            }
            Event::Maintenance { op, range, .. } => {
                let lane = self.lane(LaneKind::Framework, "framework");
                let b = self.owner_of(range.start.raw());
                let m = self.moment(lane, b.as_deref());
                self.tally(m, op_name(*op), range.len);
            }
            Event::BounceCopy { from, to, prov } => {
                let lane = self.lane(LaneKind::Bounce, "bounce");
                let b = self.owner_of(from.start.raw()).or_else(|| self.owner_of(to.raw()));
                let m = self.moment(lane, b.as_deref());
                self.tally(m, "copy", from.len);
                self.put(1, to.raw(), &runs_of(prov, from.len), Put::Dirty);
                let lines = self.lines_of(to.raw(), from.len);
                self.touched(lines, m);
            }
            _ => {}
        }
    }

    fn operation(&mut self, op: &OpInfo) {
        if !matches!(op.kind, OpKind::CpuWrite | OpKind::DeviceWrite) {
            self.evicted.clear();
            self.written_back.clear();
            return;
        }
        let Some((w, place)) = self.pending.take() else { return };
        let lane = if self.in_access { self.access_lane() } else { self.lane(LaneKind::Framework, "framework") };
        let b = op.ranges.first().and_then(|r| self.owner_of(r.start.raw()));
        let m = self.moment(lane, b.as_deref());
        if !self.in_access {
            let len = op.ranges.iter().map(|r| r.len).sum();
            self.tally(m, if op.kind == OpKind::CpuWrite { "CPU write" } else { "device write" }, len);
        }
        // Lines a bounded cache evicted after this write had filled them are gone again.
        let gone: HashSet<u64> = self
            .evicted
            .iter()
            .copied()
            .filter(|li| self.written_back.get(li).is_some_and(|ws| ws.contains(&w)))
            .collect();
        for r in &op.ranges {
            let (s, n) = (r.start.raw(), r.len);
            if let Some(p) = place {
                let how = if p == 0 { Put::Memory } else { Put::Dirty };
                self.put(p, s, &[(0, n, w)], how);
                for &li in &gone {
                    if (s / self.line..(s + n).div_ceil(self.line)).contains(&li) {
                        self.state[p].remove(li..li + 1);
                    }
                }
            }
            self.set_latest(s, n, w);
            let lines = self.lines_of(s, n);
            self.touched(lines, m);
        }
        self.evicted.clear();
        self.written_back.clear();
    }
}

impl Recorder {
    pub(super) fn place(&self, cache: dmabuf_sim::CacheId) -> Option<usize> {
        match cache {
            dmabuf_sim::CacheId::Cpu => Some(1),
            dmabuf_sim::CacheId::Device(d) => self.dev_place.get(d.index()).copied().flatten(),
        }
    }

    /// The moment a line move belongs to: the hardware's lane for its own moves, the
    /// framework's for maintenance, the access's for a demand fill or a snoop.
    pub(super) fn event_moment(&mut self, cause: Cause, addr: u64) -> Option<usize> {
        let lane = match cause {
            Cause::Freedom | Cause::Capacity => self.lane(LaneKind::Hardware, "hardware"),
            Cause::Maintenance => self.lane(LaneKind::Framework, "framework"),
            Cause::Demand | Cause::Snoop if self.in_access => self.access_lane(),
            Cause::Demand | Cause::Snoop => self.lane(LaneKind::Framework, "framework"),
        };
        let b = self.owner_of(addr);
        self.moment(lane, b.as_deref())
    }

    /// Remembers who made write `w`: the program's access under way, or the framework.
    pub(super) fn note_write(&mut self, w: u64) {
        if self.capped.is_some() || self.writes.len() >= MAX_MOMENTS {
            return;
        }
        let agent = if !self.in_access {
            "framework".to_string()
        } else {
            match &self.job_ctx {
                Some((lane, ..)) => self.lanes[*lane].name.clone(),
                None => "cpu".to_string(),
            }
        };
        let (line, it) = match &self.job_ctx {
            Some((_, line, it, _)) if self.in_access => (*line, *it),
            _ => self.pos,
        };
        self.writes.insert(w, WriteInfo { agent, line, it });
    }
}
