//! A scheme's protocol as a scenario: the brackets where they belong.
//!
//! Two frames, so that the second shows the steady state (the hand-over from the last
//! party of a frame to the first of the next). Every device job signals a fence that the
//! program waits for before anything else touches the buffer (a V4L2 `DQBUF`, a DRM
//! out-fence); a party that does not keep its mapping maps the buffer for its job and
//! unmaps it after; one that keeps it maps it once. The CPU goes through the buffer's
//! mmap and the sync ioctl, in the direction of its access. Hand-overs from or to a kept
//! mapping follow the module doc of [`super`].

use dmabuf_sim::{DeviceDesc, Platform};

use super::schemes::{FIRST, SECOND};
use super::{Access, Allocation, Party, Placement, SchemeKind, Who};

/// The number of frames a protocol runs.
pub(super) const FRAMES: u32 = 2;

/// Who acts on a buffer: one of the parties, or the copy engine.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Actor {
    Party(usize),
    Engine,
}

/// What the generator knows of an actor.
struct Info<'a> {
    name: &'a str,
    dev: Option<&'a DeviceDesc>,
    kept: bool,
    /// Its mapping is bounced through swiotlb: the copies go through the CPU's cache.
    bounced: bool,
}

impl Info<'_> {
    fn coherent(&self) -> bool {
        self.dev.is_some_and(|d| d.coherent)
    }

    /// A private cache its driver does not manage at job boundaries.
    fn unmanaged_cache(&self) -> bool {
        self.dev.is_some_and(|d| d.cache.is_some() && !d.job_contract)
    }

    /// What it reads of the pages comes through the CPU's cache: it snoops, or its bounce
    /// slot is filled by a CPU copy (`swiotlb_bounce`).
    fn reads_through_cpu_cache(&self) -> bool {
        self.coherent() || self.bounced
    }

    /// What it writes lands in the CPU's cache: it stashes, or its bounce slot is copied
    /// back by the CPU.
    fn writes_into_cpu_cache(&self) -> bool {
        self.dev.is_some_and(|d| d.coherent && d.stash) || self.bounced
    }
}

/// A buffer's state between steps: who wrote it last, whether that writer's kept mapping
/// handed the bytes over already, and the byte value in it.
struct BufState {
    last: Option<Actor>,
    ended: bool,
    value: u8,
}

struct Gen<'a> {
    p: &'a Platform,
    parties: &'a [Party],
    /// The copy's engine, for a copy scheme.
    engine: Option<&'a Party>,
    /// The parties bounced through swiotlb.
    bounced: &'a [String],
    out: String,
    fences: u32,
    bufs: [BufState; 2],
}

fn dir(a: Access) -> &'static str {
    match a {
        Access::Read => "to_device",
        Access::Write => "from_device",
        Access::ReadWrite => "bidirectional",
    }
}

/// A size as the scenario language writes it.
fn size_text(n: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}

impl<'a> Gen<'a> {
    fn info(&self, a: Actor) -> Info<'a> {
        match a {
            Actor::Party(k) => {
                let party = &self.parties[k];
                let dev = match party.who {
                    Who::Device(i) => Some(&self.p.devices[i]),
                    Who::Cpu => None,
                };
                Info { name: &party.name, dev, kept: party.kept, bounced: self.bounced.contains(&party.name) }
            }
            Actor::Engine => {
                let (name, who) = self.engine.map_or(("cpu", Who::Cpu), |e| (e.name.as_str(), e.who));
                let dev = match who {
                    Who::Device(i) => Some(&self.p.devices[i]),
                    Who::Cpu => None,
                };
                Info { name, dev, kept: false, bounced: false }
            }
        }
    }

    fn line(&mut self, s: &str) {
        self.out.push_str(s);
        self.out.push('\n');
    }

    fn fence(&mut self) -> String {
        self.fences += 1;
        format!("done{}", self.fences)
    }

    /// The steps that hand buffer `b` from its last writer to `to`, which reads it when
    /// `reads` (else only writes it).
    fn hand_over(&mut self, b: usize, to: Actor, reads: bool) {
        let name = [FIRST, SECOND][b];
        let Some(from) = self.bufs[b].last.filter(|&l| l != to) else { return };
        let (w, r) = (self.info(from), self.info(to));
        if w.dev.is_none() || (r.dev.is_none() && !w.unmanaged_cache()) {
            // The CPU's brackets sync every mapped attachment both ways.
            return;
        }
        let need_end = w.kept
            && !self.bufs[b].ended
            && (w.unmanaged_cache() || (reads && !w.coherent() && r.dev.is_some() && r.reads_through_cpu_cache()));
        let need_begin =
            r.kept && reads && r.dev.is_some() && (r.unmanaged_cache() || (w.writes_into_cpu_cache() && !r.coherent()));
        let why = if w.unmanaged_cache() || r.unmanaged_cache() {
            "a private cache its driver does not manage at job boundaries"
        } else if need_end {
            "the reader's view comes through CPU lines the non-coherent writer left stale"
        } else {
            "the writer's bytes sit in CPU lines the non-coherent reader does not see"
        };
        let (wn, rn) = (w.name.to_string(), r.name.to_string());
        if (need_end || need_begin) && w.kept && r.kept && r.dev.is_some() {
            self.line(&format!("{wn} sync {name} to {rn}    # both keep their mappings: {why}"));
            self.bufs[b].ended = true;
        } else if need_end {
            self.line(&format!("{wn} end {name}    # {wn} keeps its mapping: {why}"));
            self.bufs[b].ended = true;
        } else if need_begin {
            self.line(&format!("{rn} begin {name}    # {rn} keeps its mapping: {why}"));
        }
    }

    /// The CPU reads and/or writes buffer `b` inside one sync-ioctl bracket.
    fn cpu(&mut self, b: usize, access: Access, value: u8, comment: &str) {
        let name = [FIRST, SECOND][b];
        let d = access.name();
        self.line(&format!("sync {name} start {d}{comment}"));
        if access.reads() {
            let v = self.bufs[b].value;
            self.line(&format!("cpu read {name} expect {v:#04x}"));
        }
        if access.writes() {
            self.line(&format!("cpu write {name} = {value:#04x}"));
        }
        self.line(&format!("sync {name} end {d}"));
    }

    /// A device job on buffer `b` and the wait for its fence.
    fn job(&mut self, dev: &str, what: &str) {
        let f = self.fence();
        self.line(&format!("{dev} {what} signal {f}"));
        self.line(&format!("wait {f}"));
    }

    /// One party's turn in a frame; `value` is what it writes.
    fn party(&mut self, k: usize, b: usize, value: u8) {
        let party = &self.parties[k];
        let (access, name) = (party.access, [FIRST, SECOND][b]);
        self.hand_over(b, Actor::Party(k), access.reads());
        match party.who {
            Who::Cpu => self.cpu(b, access, value, ""),
            Who::Device(_) => {
                let dev = party.name.clone();
                if !party.kept {
                    self.line(&format!("map {dev} {name} {}", dir(access)));
                }
                if access.reads() {
                    let v = self.bufs[b].value;
                    self.job(&dev, &format!("read {name} expect {v:#04x}"));
                }
                if access.writes() {
                    self.job(&dev, &format!("write {name} = {value:#04x}"));
                }
                if !party.kept {
                    self.line(&format!("unmap {dev} {name}"));
                }
            }
        }
        if access.writes() {
            self.bufs[b] = BufState { last: Some(Actor::Party(k)), ended: false, value };
        }
    }

    /// The engine copies the first buffer into the second.
    fn copy(&mut self) {
        self.hand_over(0, Actor::Engine, true);
        self.hand_over(1, Actor::Engine, false);
        let v = self.bufs[0].value;
        match self.engine.filter(|e| e.who != Who::Cpu).map(|e| e.name.as_str()) {
            None => {
                self.cpu(0, Access::Read, 0, "    # the CPU copies the frame across");
                self.cpu(1, Access::Write, v, "");
            }
            Some(e) => {
                self.line(&format!("map {e} {FIRST} to_device    # {e} copies the frame across"));
                self.line(&format!("map {e} {SECOND} from_device"));
                self.job(e, &format!("copy {FIRST} to {SECOND}"));
                self.line(&format!("unmap {e} {FIRST}"));
                self.line(&format!("unmap {e} {SECOND}"));
            }
        }
        self.bufs[1] = BufState { last: Some(Actor::Engine), ended: false, value: v };
    }
}

/// The scheme's buffers: `(name, allocation)`.
fn buffers(kind: &SchemeKind) -> Vec<(&'static str, &Allocation)> {
    match kind {
        SchemeKind::Shared { buffer } => vec![(FIRST, buffer)],
        SchemeKind::Copy { first, second, .. } => vec![(FIRST, first), (SECOND, second)],
    }
}

/// Which buffer party `k` uses.
fn side(kind: &SchemeKind, k: usize) -> usize {
    match kind {
        SchemeKind::Copy { at, .. } if k >= *at => 1,
        _ => 0,
    }
}

/// The protocol of a scheme, without its `platform` line: `size`-byte buffers, two frames;
/// `bounced` names the parties that reach their buffer through swiotlb.
pub(super) fn body(p: &Platform, parties: &[Party], kind: &SchemeKind, bounced: &[String], size: u64) -> String {
    body_frames(p, parties, kind, bounced, size, FRAMES)
}

/// [`body`] with `frames` frames (the cost of one is the difference of two runs).
pub(super) fn body_frames(
    p: &Platform,
    parties: &[Party],
    kind: &SchemeKind,
    bounced: &[String],
    size: u64,
    frames: u32,
) -> String {
    let engine = match kind {
        SchemeKind::Copy { engine, .. } => Some(engine),
        SchemeKind::Shared { .. } => None,
    };
    let engine_dev = engine.filter(|e| e.who != Who::Cpu).map(|e| e.name.as_str());
    let fresh = || BufState { last: None, ended: true, value: 0 };
    let mut g = Gen { p, parties, engine, bounced, out: String::new(), fences: 0, bufs: [fresh(), fresh()] };
    let bufs = buffers(kind);
    for (name, a) in &bufs {
        g.line(&format!("buffer {name} size={} {}", size_text(size), a.placement.source()));
    }
    // Attachments, once per device and buffer.
    let mut attached: Vec<(String, usize)> = Vec::new();
    let mut users: Vec<(String, usize)> = parties
        .iter()
        .enumerate()
        .filter(|(_, x)| x.who != Who::Cpu)
        .map(|(k, x)| (x.name.clone(), side(kind, k)))
        .collect();
    if let Some(e) = engine_dev {
        users.push((e.to_string(), 0));
        users.push((e.to_string(), 1));
    }
    for (dev, b) in users {
        if attached.contains(&(dev.clone(), b)) {
            continue;
        }
        let (name, a) = bufs[b];
        let p2p = matches!(&a.placement, Placement::DeviceMemory { owner } if *owner != dev);
        g.line(&format!("attach {dev} {name}{}", if p2p { " p2p" } else { "" }));
        attached.push((dev, b));
    }
    // The CPU's mappings.
    let mut mmaps: Vec<usize> =
        parties.iter().enumerate().filter(|(_, x)| x.who == Who::Cpu).map(|(k, _)| side(kind, k)).collect();
    if engine.is_some_and(|e| e.who == Who::Cpu) {
        mmaps.extend([0, 1]);
    }
    mmaps.sort();
    mmaps.dedup();
    for &b in &mmaps {
        g.line(&format!("mmap {}", bufs[b].0));
    }
    // Kept mappings, once.
    for (k, x) in parties.iter().enumerate() {
        if x.kept && x.who != Who::Cpu {
            let why = if x.kept_by_platform { "the platform says it always keeps it" } else { "as asked" };
            g.line(&format!(
                "map {} {} {}    # keeps its mapping: {why}",
                x.name,
                bufs[side(kind, k)].0,
                dir(x.access)
            ));
        }
    }
    let at = match kind {
        SchemeKind::Copy { at, .. } => Some(*at),
        SchemeKind::Shared { .. } => None,
    };
    for f in 1..=frames {
        g.line(&format!("# frame {f}"));
        let mut next = 0u8;
        let mut value = || {
            next += 1;
            (0x10 * f as u8).wrapping_add(next)
        };
        for (k, x) in parties.iter().enumerate() {
            if at == Some(k) {
                g.copy();
            }
            let v = if x.access.writes() { value() } else { 0 };
            g.party(k, side(kind, k), v);
        }
    }
    for (k, x) in parties.iter().enumerate() {
        if x.kept && x.who != Who::Cpu {
            g.line(&format!("unmap {} {}", x.name, bufs[side(kind, k)].0));
        }
    }
    for &b in &mmaps {
        g.line(&format!("munmap {}", bufs[b].0));
    }
    g.out
}

/// A protocol body with its `platform` line first.
pub(super) fn with_platform(body: &str, platform: &str) -> String {
    format!("{platform}\n{body}")
}
