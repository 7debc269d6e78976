//! What a run tells a [`Tracer`] as it goes: the program's side of a timeline.
//!
//! The simulator's [`Observer`](dmabuf_sim::Observer) sees the hardware (accesses,
//! maintenance, the hardware's own moves) but not the program: which step runs, which
//! device job starts and ends, which fence a job signals and who waited for it. A tracer
//! hears that from the runner, in order, interleaved with the observer's events (both
//! are told synchronously, one run on one thread). The HTML report's recorder is both;
//! a run without a tracer builds none of these events.

use std::cell::RefCell;
use std::rc::Rc;

use dmabuf_sim::{DeviceId, PhysRange};

/// A fence of the run, by the sequence number the run gave it (unique within a run).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FenceKey(pub u64);

/// Who waited for a fence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiter {
    /// The CPU program: a `wait` step (`implicit: false`), or the framework's own wait
    /// on a buffer's reservation object (a CPU bracket, a map, an export).
    Cpu {
        /// Whether the wait was the framework's, on a reservation object.
        implicit: bool,
    },
    /// A device job, before it ran (`after F`), by its id.
    Job(u64),
}

/// One thing the program did.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum TraceEvent<'a> {
    /// A step of the program starts (a `repeat` line is not a step; its iterations are).
    Step {
        /// The step's 1-based line.
        line: u32,
        /// The buffer the step names, or `""`.
        buffer: &'a str,
        /// The iteration of the innermost `repeat` (1-based), inside one.
        iteration: Option<u64>,
    },
    /// An iteration of a `repeat` starts.
    Iteration {
        /// The line of the `repeat`.
        line: u32,
        /// Which iteration, from 0.
        index: u64,
        /// How many the block runs.
        count: u64,
    },
    /// A `repeat` block is done (all its iterations, or the run was stopped in it).
    LoopEnd {
        /// The line of the `repeat`.
        line: u32,
    },
    /// A buffer variable now holds memory at these pages (an allocation, or a dynamic
    /// exporter's migration): its scenario name, and its physical pages in offset order.
    Buffer {
        /// The scenario's name of the buffer.
        name: &'a str,
        /// The pages, in the order of the buffer's offsets.
        pages: &'a [PhysRange],
    },
    /// A device job was submitted; it runs now (no fence) or later.
    JobSubmitted {
        /// The job's id, unique within the run.
        id: u64,
        /// The device that runs it.
        dev: DeviceId,
        /// The line of the step that submitted it.
        line: u32,
    },
    /// A device job starts its accesses (its waits are done).
    JobStart {
        /// The job's id.
        id: u64,
        /// The device that runs it.
        dev: DeviceId,
        /// The line of the step that submitted it.
        line: u32,
        /// The iteration it was submitted in (1-based), inside a `repeat`.
        iteration: Option<u64>,
        /// The buffer it accesses (the one it writes, for a copy).
        buffer: &'a str,
    },
    /// A device job is done; it signalled `fence` if it has one.
    JobEnd {
        /// The job's id.
        id: u64,
        /// The device that ran it.
        dev: DeviceId,
        /// The fence it signalled, with the scenario's name for it.
        fence: Option<(FenceKey, &'a str)>,
    },
    /// The CPU signalled a software fence (`signal F`).
    CpuSignal {
        /// The fence.
        fence: FenceKey,
        /// The scenario's name for it.
        name: &'a str,
    },
    /// A wait for a fence that has signalled is over.
    Waited {
        /// The fence.
        fence: FenceKey,
        /// The scenario's name for it.
        name: &'a str,
        /// Who waited.
        by: Waiter,
    },
    /// One of the scenario's accesses starts (`true`) or ends (`false`): the simulator's
    /// accesses in between are the program's, the rest the framework's own.
    Access(bool),
}

/// Hears what a run's program does.
pub trait Tracer {
    /// Called for every event, in order.
    fn trace(&mut self, ev: &TraceEvent<'_>);
}

/// A tracer shared by the runner and whoever reads it afterwards.
pub type TracerRef = Rc<RefCell<dyn Tracer>>;
