//! What the hardware did, reported to an observer, with provenance.
//!
//! A sanitizer (or a trace printer, or a test) installs an [`Observer`] when it builds the
//! simulator. It is told every memory event: accesses with the writes that produced the
//! bytes they returned, and the hardware's own moves (write-backs, fills, prefetches,
//! discards, drains, bounce copies) with the writes whose bytes they moved or destroyed.
//! Without an observer no event is built and no provenance is kept.

use crate::addr::{BusAddr, PhysAddr, PhysRange};
use crate::store::{ProvRun, WriteId};
use crate::vocab::{Agent, CacheId, Cause, CpuMapId, DeviceId, MaintOp, MemAttr, OpInfo};

/// Something the memory system did: an access of an agent, or a move of the hardware's
/// own (a line written back, filled, dropped; the write-combining buffer drained).
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The CPU read bytes through a mapping. `prov` is relative to the access.
    CpuRead {
        /// The mapping accessed through.
        map: CpuMapId,
        /// Offset of the access in the mapping.
        offset: u64,
        /// Bytes read.
        len: u64,
        /// The mapping's attribute, which decided the path (cache, write-combining buffer
        /// or memory).
        attr: MemAttr,
        /// Which write produced each byte returned.
        prov: &'a [ProvRun],
    },
    /// The CPU wrote bytes through a mapping.
    CpuWrite {
        /// The mapping accessed through.
        map: CpuMapId,
        /// Offset of the access in the mapping.
        offset: u64,
        /// Bytes written.
        len: u64,
        /// The mapping's attribute, which decided the path (cache, write-combining buffer
        /// or memory).
        attr: MemAttr,
        /// The id this write's bytes carry wherever they are copied.
        write: WriteId,
    },
    /// A device read bytes by DMA. `prov` is relative to the access.
    DeviceRead {
        /// The DMA master that accessed.
        dev: DeviceId,
        /// The first bus address of the access (an IOVA behind an IOMMU).
        bus: BusAddr,
        /// Bytes read.
        len: u64,
        /// Which write produced each byte returned.
        prov: &'a [ProvRun],
    },
    /// A device wrote bytes by DMA.
    DeviceWrite {
        /// The DMA master that accessed.
        dev: DeviceId,
        /// The first bus address of the access (an IOVA behind an IOMMU).
        bus: BusAddr,
        /// Bytes written.
        len: u64,
        /// The id this write's bytes carry wherever they are copied.
        write: WriteId,
    },
    /// Dirty cache lines were written to memory. `prov` is relative to `range`.
    WriteBack {
        /// The cache the lines left or entered.
        cache: CacheId,
        /// From the first line's start to the last line's end.
        range: PhysRange,
        /// Whether the program asked, a freedom was taken, capacity or a snoop forced it.
        cause: Cause,
        /// The writes whose bytes reached memory.
        prov: &'a [ProvRun],
        /// The writes whose bytes memory held before, now overwritten: where one of them
        /// is newer than what replaced it, that write is lost.
        replaced: &'a [ProvRun],
    },
    /// Lines were filled from memory. `prov` is relative to `range`.
    Fill {
        /// The cache the lines left or entered.
        cache: CacheId,
        /// From the first line's start to the last line's end.
        range: PhysRange,
        /// `Demand` or `Freedom` (a speculative prefetch).
        cause: Cause,
        /// The writes whose bytes the lines now hold.
        prov: &'a [ProvRun],
    },
    /// Lines were dropped. `lost` lists the dirty bytes destroyed (relative to `range`):
    /// data that never reached memory.
    Discard {
        /// The cache the lines left or entered.
        cache: CacheId,
        /// From the first line's start to the last line's end.
        range: PhysRange,
        /// Whether the program asked, a freedom was taken, capacity or a snoop forced it.
        cause: Cause,
        /// The writes whose bytes were dirty in the lines and are now gone.
        lost: &'a [ProvRun],
    },
    /// The write-combining buffer drained bytes to memory.
    Drain {
        /// The bytes that reached memory (the stored bytes of one line, contiguous).
        range: PhysRange,
        /// The writes whose bytes drained, relative to `range`.
        prov: &'a [ProvRun],
    },
    /// A cache-maintenance operation was issued.
    Maintenance {
        /// The maintenance asked for.
        op: MaintOp,
        /// Who issued it (the CPU, or the device whose cache it is).
        agent: Agent,
        /// The range, rounded out to whole lines.
        range: PhysRange,
    },
    /// Bytes were copied between original pages and the bounce pool.
    BounceCopy {
        /// The bytes read (through the CPU cache).
        from: PhysRange,
        /// Where they were written, `from.len` bytes (into the CPU cache).
        to: PhysAddr,
        /// The writes copied (relative to `from`).
        prov: &'a [ProvRun],
    },
    /// A page got a second CPU mapping with a different attribute.
    MismatchedAlias {
        /// The first page mapped with both attributes.
        page: PhysAddr,
        /// The attribute of the mapping that existed.
        existing: MemAttr,
        /// The attribute of the new mapping.
        new: MemAttr,
        /// The mapping just made, which created the alias.
        map: CpuMapId,
    },
}

/// Receives every memory event of a simulation.
pub trait Observer {
    /// Called for every event, in order.
    fn event(&mut self, ev: &Event<'_>);

    /// Whether the simulator should keep byte-precise provenance (costs time and memory).
    fn wants_provenance(&self) -> bool {
        true
    }

    /// Called once after every operation (an access, a maintenance operation, a barrier, a
    /// bounce copy, a new CPU mapping), after its events and before the chooser takes
    /// freedoms, with the physical bytes it touched. An observer that reasons about
    /// physical lines (the [`Oracle`](crate::Oracle)) uses it; the default ignores it.
    fn operation(&mut self, op: &OpInfo) {
        let _ = op;
    }
}

impl<T: Observer + ?Sized> Observer for std::rc::Rc<std::cell::RefCell<T>> {
    fn event(&mut self, ev: &Event<'_>) {
        self.borrow_mut().event(ev);
    }

    fn wants_provenance(&self) -> bool {
        self.borrow().wants_provenance()
    }

    fn operation(&mut self, op: &OpInfo) {
        self.borrow_mut().operation(op);
    }
}

impl<T: Observer + ?Sized> Observer for Box<T> {
    fn event(&mut self, ev: &Event<'_>) {
        (**self).event(ev);
    }

    fn wants_provenance(&self) -> bool {
        (**self).wants_provenance()
    }

    fn operation(&mut self, op: &OpInfo) {
        (**self).operation(op);
    }
}

/// Two observers watching one simulation (a sanitizer and an [`Oracle`](crate::Oracle)):
/// each is told everything, the first first. Provenance is kept if either wants it.
impl<A: Observer, B: Observer> Observer for (A, B) {
    fn event(&mut self, ev: &Event<'_>) {
        self.0.event(ev);
        self.1.event(ev);
    }

    fn wants_provenance(&self) -> bool {
        self.0.wants_provenance() || self.1.wants_provenance()
    }

    fn operation(&mut self, op: &OpInfo) {
        self.0.operation(op);
        self.1.operation(op);
    }
}

/// An observer that records a one-line description of every event, for tests and traces.
#[derive(Default, Debug)]
pub struct EventLog {
    /// Each event's `Debug` text, in order.
    pub lines: Vec<String>,
}

impl Observer for EventLog {
    fn event(&mut self, ev: &Event<'_>) {
        self.lines.push(format!("{ev:?}"));
    }
}
