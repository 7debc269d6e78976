//! The oracle: after a run, the cache maintenance and bounce copying that were truly
//! needed, line by line, to compare a policy's cost with the minimum.
//!
//! `docs/maintenance-cost.md` puts the definition below next to the benchmark that uses
//! it (`dmabuf bench`) and its results.
//!
//! The oracle is an [`Observer`] that knows nothing of DMA-buf. It watches the accesses
//! of a run (through [`Observer::operation`], which gives the physical bytes of each),
//! ignores every maintenance operation, bounce copy and freedom the run performed, and
//! asks of each access: *whatever the hardware did with its freedoms, and whatever any
//! correct policy did before, which maintenance must have happened between the write
//! this access depends on and the access itself?* Each such requirement is a **need**:
//! one line of one kind of maintenance, with the window in which it had to happen.
//!
//! # The needs
//!
//! For every line the oracle keeps, per byte (per `line / 64` bytes on lines longer than
//! 64), where the newest value may be that a reader cannot see:
//!
//! - *CPU-dirty*: the CPU wrote it through a cacheable mapping, and the line may still sit
//!   dirty in the CPU cache (no eviction is ever assumed: the hardware may keep it).
//! - *CPU-stale*: a writer that does not snoop the CPU cache (a non-coherent device, a
//!   device cache of a non-coherent device, the CPU's own write-combined or uncached
//!   stores) changed memory after the CPU cache could have filled the line: its page was
//!   mapped cacheable by then (a speculative prefetch may fill any line of a cacheable
//!   mapping at any moment, section 3 of the coherency model).
//! - *device-dirty* (per device with a private cache): the device wrote it into its cache.
//! - *device-stale* (per device with a private cache): another agent wrote it after the
//!   device touched the line, so the device's cache may hold the old bytes (a device
//!   cache fills only on the device's own accesses: it never prefetches).
//!
//! and records a need when an access depends on such a byte:
//!
//! | kind | needed when |
//! |---|---|
//! | clean | a reader that does not see the CPU cache (a non-coherent device, a device cache filling from memory, the CPU through a write-combined or uncached mapping) reads CPU-dirty bytes; or a non-snooping writer writes a line whose CPU-dirty bytes it does not all overwrite (else a later write-back would bring the old line back over it) |
//! | invalidate | the CPU reads CPU-stale bytes through a cacheable mapping; a coherent device reads them (its snoop would return the stale line); the CPU writes part of a line with CPU-stale bytes it does not overwrite (write-allocate would merge them); a non-snooping writer overwrites all the CPU-dirty bytes of a line (they must be dropped before a write-back) |
//! | device flush | anyone else reads device-dirty bytes; or another agent writes a line whose device-dirty bytes it does not all overwrite |
//! | device invalidate | the device reads device-stale bytes, or writes part of a line with device-stale bytes it does not overwrite; or another agent overwrites all the device-dirty bytes of a line |
//! | bounce | a device that reaches the buffer through a bounce slot reads bytes that changed in the original since they were last needed in the slot, or anyone reads original bytes the device wrote into its slot (a copy back). Each copied line also needs a clean (copy in, for a non-coherent device) or an invalidate (copy out) of the slot line: the kernel copies through the CPU cache |
//!
//! A need clears the state it depends on (after one clean, memory is current; after one
//! invalidate, the next fill is), so each line is counted once per hand-over, and a line
//! that was written twice before anyone needed it is counted once.
//!
//! # Why it is a lower bound
//!
//! Every need is a line that *some* operation of that kind had to cover in its window,
//! or the hardware, taking its freedoms adversarially (keeping a dirty line until the
//! worst moment, prefetching a line just before memory changes), would have returned a
//! stale byte or lost a write. Needs of one kind on one line never share a window (the
//! second one's window opens after the first one's access), so no single operation can
//! satisfy two of them: the count of needed lines is a lower bound on the lines any
//! correct policy maintains, whatever it knows. The oracle assumes the program is free
//! of races (the sanitizer reports zero findings), so that the latest write in the
//! run's order is the one each read must see.
//!
//! Operations and cycles: needs of one kind whose windows overlap can share an operation.
//! The oracle groups them greedily (the classic minimum stabbing of intervals: an
//! operation at the deadline of the earliest open need serves every later need whose
//! window had opened by then), then counts one operation per physically contiguous run of
//! lines in a group, and charges each operation the platform's cost table
//! (`maintenance_op` + per line, `device_op` + per line, `bounce_line` per line). That is
//! the fewest operations covering *only* needed lines; a policy may use fewer, wider
//! operations that also cover lines no one needed, so operations and cycles are the cost
//! of the oracle's schedule, while lines and bytes are a strict lower bound.
//!
//! # Granularity
//!
//! Maintenance works on whole lines, so the oracle counts lines: a 4-byte read of a stale
//! line needs the whole line invalidated, and bytes are `lines * line_size`. Which bytes
//! of a line matter is tracked per byte (a write that covers every stale byte of a line
//! needs no invalidate; a read of the fresh half of a line needs none either), so a
//! policy that works on byte ranges rounded out to lines can match the oracle exactly.
//! Bounce copies move bytes: the oracle counts bytes there, and lines for their cost.
//!
//! # What it assumes
//!
//! - The kernel's linear map does not fill lines of a page the program never mapped
//!   cacheable (Linux removes or re-attributes the linear alias of write-combined and
//!   uncached buffers): a write to such a page makes no CPU line stale.
//! - A device cache of a bounced device is not modelled (the slot is what it caches).
//! - One bounce slot per line of the original at a time (the slot a copy last used).

use rustc_hash::FxHashMap;

use crate::addr::{PAGE_SIZE, PhysAddr, PhysRange};
use crate::event::{Event, Observer};
use crate::platform::{Costs, Platform, RegionKind};
use crate::stats::{Stats, cycles};
use crate::vocab::{Agent, MemAttr, OpInfo, OpKind};

mod rules;
#[cfg(test)]
mod tests;

/// One kind of need; device kinds name the device.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    Clean,
    Invalidate,
    DeviceFlush(usize),
    DeviceInvalidate(usize),
    Bounce,
}

/// What may be wrong with one line as the CPU sees it.
#[derive(Clone, Copy, Default)]
struct CpuLine {
    /// Bytes (mask bits) whose newest value may sit dirty in the CPU cache.
    dirty: u64,
    /// Bytes memory changed behind a CPU line that may be cached.
    stale: u64,
    /// When `dirty` was last added to.
    dirty_at: u64,
    /// When `stale` was last added to.
    stale_at: u64,
    /// When any agent last wrote the line.
    write_at: u64,
}

/// What may be wrong with one line in one device's private cache.
#[derive(Clone, Copy, Default)]
struct DevLine {
    dirty: u64,
    stale: u64,
    /// Whether the device touched the line since the cache last lost it (it may hold it).
    present: bool,
    dirty_at: u64,
    access_at: u64,
}

struct Page {
    /// A cacheable mapping covered the page (the CPU may hold its lines).
    cacheable: bool,
    cpu: Vec<CpuLine>,
    /// Per device with a private cache (by cache slot).
    dev: Vec<Vec<DevLine>>,
}

/// A device's data still in its bounce slot: what a reader of the original needs copied.
#[derive(Clone, Copy)]
struct Out {
    mask: u64,
    /// The slot line holding it.
    slot_line: u64,
    noncoherent: bool,
    at: u64,
}

/// Needs whose windows overlap, to be served by one operation of a kind.
struct Batch {
    /// The deadline of the first need: where the operation goes.
    point: u64,
    /// `(address, bytes)` pieces.
    items: Vec<(u64, u64)>,
}

/// Who performs an access, as the oracle distinguishes agents.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    /// The CPU through a cacheable mapping.
    CpuCached,
    /// The CPU through a write-combined or uncached mapping.
    CpuUncached,
    /// A device by DMA.
    Device(usize),
}

/// The maintenance a run truly needed (see the [module documentation](self)).
///
/// Install it next to other observers (a pair of observers is an observer) and read
/// [`Oracle::needed`] after the run:
///
/// ```
/// use std::{cell::RefCell, rc::Rc};
/// use dmabuf_sim::{BusAddr, MemAttr, Oracle, PhysAddr, PhysRange, Platform, Sim};
///
/// let p = Platform::preset("arm64-noncoherent").unwrap();
/// let oracle = Rc::new(RefCell::new(Oracle::new(&p)));
/// let mut sim = Sim::builder(p).observer(oracle.clone()).build();
/// let usb = sim.device("usb").unwrap();
/// let page = PhysRange::new(PhysAddr(0x4000_0000), 4096).unwrap();
/// let map = sim.cpu_map(&[page], MemAttr::Cached).unwrap();
/// sim.cpu_fill(map, 0, 256, 0x5a).unwrap(); // four dirty lines
/// sim.cache_clean(page).unwrap(); // a whole-page clean: 64 lines
/// let mut seen = [0u8; 128];
/// sim.device_read(usb, BusAddr(0x4000_0000), &mut seen).unwrap();
///
/// let needed = oracle.borrow().needed();
/// assert_eq!(needed.clean.lines, 2, "the device read two of the four dirty lines");
/// assert_eq!(sim.stats().clean.lines, 64);
/// ```
pub struct Oracle {
    line: u64,
    /// Bytes per mask bit.
    grain: u64,
    lpp: usize,
    costs: Costs,
    /// Per device: coherent, and its cache slot.
    devs: Vec<(bool, Option<usize>)>,
    caches: usize,
    bounce_pools: Vec<PhysRange>,
    seq: u64,
    pages: Vec<Page>,
    /// Page frame number to index in `pages`.
    index: FxHashMap<u64, usize>,
    /// The page of the last lookup: `(pfn, index)`.
    last: (u64, usize),
    /// Slot line index to `original - slot` (wrapping).
    slot_delta: FxHashMap<u64, u64>,
    /// Original line index to the bytes its slot holds up to date.
    slot_fresh: FxHashMap<u64, u64>,
    /// Original line index to a device's bytes still in its slot.
    out: FxHashMap<u64, Out>,
    batches: FxHashMap<Kind, Batch>,
    done: Stats,
}

impl Oracle {
    /// An oracle for runs on `platform` (its line size, devices and cost table).
    pub fn new(platform: &Platform) -> Oracle {
        let line = platform.line_size.max(1);
        let mut caches = 0;
        let devs = platform
            .devices
            .iter()
            .map(|d| {
                let slot = d.cache.map(|_| {
                    caches += 1;
                    caches - 1
                });
                (d.coherent, slot)
            })
            .collect();
        Oracle {
            line,
            grain: line.div_ceil(64),
            lpp: (PAGE_SIZE / line).max(1) as usize,
            costs: platform.costs.clone(),
            devs,
            caches,
            bounce_pools: platform.regions.iter().filter(|r| r.kind == RegionKind::Bounce).map(|r| r.range()).collect(),
            seq: 0,
            pages: Vec::new(),
            index: FxHashMap::default(),
            last: (u64::MAX, 0),
            slot_delta: FxHashMap::default(),
            slot_fresh: FxHashMap::default(),
            out: FxHashMap::default(),
            batches: FxHashMap::default(),
            done: Stats::default(),
        }
    }

    /// What the run needed so far: `clean`, `invalidate`, `device_flush`,
    /// `device_invalidate` and `bounce` are filled (`clean_invalidate` and the access
    /// counters stay zero), each with operations, lines, bytes and cycles as described in
    /// the [module documentation](self). Compare with [`Stats`] of the run through
    /// [`Stats::maintenance_bytes`] and friends.
    pub fn needed(&self) -> Stats {
        let mut s = self.done;
        for (k, b) in &self.batches {
            self.close(&mut s, *k, b);
        }
        s
    }

    /// Charges one batch to `s`.
    fn close(&self, s: &mut Stats, kind: Kind, b: &Batch) {
        let mut items = b.items.clone();
        items.sort_unstable();
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for (a, n) in items {
            match runs.last_mut() {
                Some((s0, len)) if *s0 + *len >= a => *len = (*len).max(a + n - *s0),
                _ => runs.push((a, n)),
            }
        }
        let c = &self.costs;
        for (a, n) in runs {
            let lines = PhysRange { start: PhysAddr(a), len: n }.units(self.line);
            let (count, fixed, per_line) = match kind {
                Kind::Clean => (&mut s.clean, c.maintenance_op, c.clean_line),
                Kind::Invalidate => (&mut s.invalidate, c.maintenance_op, c.invalidate_line),
                Kind::DeviceFlush(_) => (&mut s.device_flush, c.device_op, c.device_flush_line),
                Kind::DeviceInvalidate(_) => (&mut s.device_invalidate, c.device_op, c.device_invalidate_line),
                Kind::Bounce => (&mut s.bounce, 0, c.bounce_line),
            };
            count.add(lines, n, lines, cycles(fixed, per_line, lines));
        }
    }

    /// Records a need of `kind` for `(addr, len)` whose window opened at `start`.
    fn need(&mut self, kind: Kind, addr: u64, len: u64, start: u64) {
        let now = self.seq;
        match self.batches.get_mut(&kind) {
            Some(b) if start < b.point => b.items.push((addr, len)),
            _ => {
                let fresh = Batch { point: now, items: vec![(addr, len)] };
                if let Some(old) = self.batches.insert(kind, fresh) {
                    let mut s = self.done;
                    self.close(&mut s, kind, &old);
                    self.done = s;
                }
            }
        }
    }

    fn need_line(&mut self, kind: Kind, line: u64, start: u64) {
        self.need(kind, line * self.line, self.line, start);
    }

    /// Bytes of the mask bits `m` of line `line`, as `(address, len)` runs.
    fn need_bytes(&mut self, line: u64, m: u64, start: u64) {
        let base = line * self.line;
        let mut m = m;
        while m != 0 {
            let lo = m.trailing_zeros() as u64;
            let run = (m >> lo).trailing_ones() as u64;
            let a = base + lo * self.grain;
            let e = (base + (lo + run) * self.grain).min(base + self.line);
            self.need(Kind::Bounce, a, e - a, start);
            m &= !(mask_bits(lo, lo + run));
        }
    }

    /// The mask bits a byte range `[off, off + len)` of a line touches, and those it
    /// covers entirely.
    fn masks(&self, off: u64, len: u64) -> (u64, u64) {
        let g = self.grain;
        let touched = mask_bits(off / g, (off + len).div_ceil(g));
        let covered = mask_bits(off.div_ceil(g), (off + len) / g);
        (touched, covered)
    }

    fn page(&mut self, pfn: u64) -> &mut Page {
        // Accesses walk lines in order: most lookups hit the page of the last one.
        if self.last.0 != pfn {
            let (lpp, caches) = (self.lpp, self.caches);
            let pages = &mut self.pages;
            let i = *self.index.entry(pfn).or_insert_with(|| {
                pages.push(Page {
                    cacheable: false,
                    cpu: vec![CpuLine::default(); lpp],
                    dev: vec![vec![DevLine::default(); lpp]; caches],
                });
                pages.len() - 1
            });
            self.last = (pfn, i);
        }
        &mut self.pages[self.last.1]
    }

    fn line_pos(&self, line: u64) -> (u64, usize) {
        let lpp = self.lpp as u64;
        (line / lpp, (line % lpp) as usize)
    }

    fn cpu(&mut self, line: u64) -> &mut CpuLine {
        let (pfn, i) = self.line_pos(line);
        &mut self.page(pfn).cpu[i]
    }

    fn dev(&mut self, line: u64, slot: usize) -> &mut DevLine {
        let (pfn, i) = self.line_pos(line);
        &mut self.page(pfn).dev[slot][i]
    }

    fn cacheable(&mut self, line: u64) -> bool {
        let (pfn, _) = self.line_pos(line);
        self.page(pfn).cacheable
    }

    fn in_pool(&self, r: &PhysRange) -> bool {
        self.bounce_pools.iter().any(|p| p.overlaps(r))
    }

    // ----- operations (the rules, one line at a time, are in rules.rs) ------------------

    /// The line piece of `[a, end)` that starts at `a`: `(line, offset in line, len)`.
    fn piece(&self, a: u64, end: u64) -> (u64, u64, u64) {
        let line = a / self.line;
        let e = ((line + 1) * self.line).min(end);
        (line, a - line * self.line, e - a)
    }

    fn access(&mut self, who: Who, write: bool, r: &PhysRange) {
        let bounced = matches!(who, Who::Device(_)) && !self.slot_delta.is_empty() && self.in_pool(r);
        let (mut a, end) = (r.start.raw(), r.end().raw());
        while a < end {
            let (line, off, len) = self.piece(a, end);
            a += len;
            if bounced
                && let Who::Device(dev) = who
                && let Some(&delta) = self.slot_delta.get(&line)
            {
                let mut o = (line * self.line + off).wrapping_add(delta);
                let oend = o + len;
                while o < oend {
                    let (l, lo, n) = self.piece(o, oend);
                    o += n;
                    let (t, c) = self.masks(lo, n);
                    if write {
                        self.bounced_write(dev, l, t, c, line);
                    } else {
                        self.bounced_read(dev, l, t, line);
                    }
                }
                continue;
            }
            let (t, c) = self.masks(off, len);
            match (who, write) {
                (Who::CpuCached, false) => self.cpu_cached_read(line, t),
                (Who::CpuCached, true) => self.cpu_cached_write(line, t, c),
                (Who::CpuUncached, false) => self.cpu_uncached_read(line, t),
                (Who::CpuUncached, true) => self.cpu_uncached_write(line, t, c),
                (Who::Device(d), false) => self.device_read(d, line, t),
                (Who::Device(d), true) => self.device_write(d, line, t, c),
            }
        }
    }

    /// A bounce copy: learns which slot stands for which original bytes. The copy itself
    /// is transport, not an access the program asked for.
    fn learn_slot(&mut self, from: &PhysRange, to: &PhysRange) {
        let (slot, orig) = match (self.in_pool(from), self.in_pool(to)) {
            (false, true) => (to, from),
            (true, false) => (from, to),
            _ => return,
        };
        let delta = orig.start.raw().wrapping_sub(slot.start.raw());
        let (first, end) = (slot.start.raw() / self.line, slot.end().raw().div_ceil(self.line));
        for line in first..end {
            if self.slot_delta.insert(line, delta).is_some_and(|d| d != delta) {
                // The slot now stands for other bytes: what it held is not theirs.
                let o = (line * self.line).wrapping_add(delta) / self.line;
                self.slot_fresh.remove(&o);
                self.slot_fresh.remove(&(o + 1));
            }
        }
    }
}

/// Bits `lo..hi` of a mask (at most 64).
fn mask_bits(lo: u64, hi: u64) -> u64 {
    let hi = hi.min(64);
    if lo >= hi {
        return 0;
    }
    let width = hi - lo;
    let ones = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
    ones << lo
}

impl Observer for Oracle {
    fn event(&mut self, _: &Event<'_>) {}

    fn wants_provenance(&self) -> bool {
        false
    }

    fn operation(&mut self, op: &OpInfo) {
        self.seq += 1;
        let cached = op.attr == Some(MemAttr::Cached);
        match (op.kind, op.agent) {
            (OpKind::CpuMap, _) if cached => {
                for r in &op.ranges {
                    let first = r.start.raw() / PAGE_SIZE;
                    let end = r.end().raw().div_ceil(PAGE_SIZE);
                    for pfn in first..end {
                        self.page(pfn).cacheable = true;
                    }
                }
            }
            (OpKind::CpuRead | OpKind::CpuWrite, Agent::Cpu) => {
                let who = if cached { Who::CpuCached } else { Who::CpuUncached };
                for r in &op.ranges {
                    self.access(who, op.kind == OpKind::CpuWrite, r);
                }
            }
            (OpKind::DeviceRead | OpKind::DeviceWrite, Agent::Device(d)) if d.index() < self.devs.len() => {
                for r in &op.ranges {
                    self.access(Who::Device(d.index()), op.kind == OpKind::DeviceWrite, r);
                }
            }
            (OpKind::BounceCopy, _) => {
                if let [from, to] = op.ranges.as_slice() {
                    self.learn_slot(from, to);
                }
            }
            _ => {}
        }
    }
}
