//! Simulated time: fences whose waits run a simulation instead of blocking.
//!
//! In a simulation, device jobs complete in simulated time and signal their fences from
//! the simulation's event loop. A thread that waits for such a fence must not block (no
//! other thread would ever run the loop): [`SimFenceOps::wait`](FenceOps::wait) runs
//! the simulation, one event at a time, until the fence signals, the simulated timeout
//! passes ([`FenceError::Timeout`]), or nothing is left that could signal it
//! ([`FenceError::Deadlock`]). The fence type is the same [`Fence`] as everywhere else, so
//! reservation objects, sync files, arrays and chains work unchanged; a container hands
//! its wait to the simulation of a fence inside it.
//!
//! The simulation is anything implementing [`Simulation`]. [`EventQueue`] is a small one
//! (a clock and timed actions) for tests and simple scenarios; a bigger simulator
//! implements the trait over its own event loop.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use crate::fence::sync::{self, Mutex};
use crate::fence::{Fence, FenceError, FenceOps, MonotonicTime};

/// What one [`Simulation::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// One event ran (it may have signalled fences).
    Ran,
    /// The next event is later than the limit: the clock moved to the limit instead.
    ReachedLimit,
    /// No event is pending at all: nothing will happen any more.
    Idle,
}

/// A simulation that fence waits can drive.
///
/// It must be `Send + Sync` because fences are; a single-threaded simulator wraps its
/// state in a mutex and is only ever stepped by the thread that waits.
pub trait Simulation: Send + Sync {
    /// The simulation's current time.
    fn now(&self) -> MonotonicTime;

    /// Runs the next event, unless it is later than `limit` (then moves the clock to
    /// `limit` and returns [`Step::ReachedLimit`]), or reports [`Step::Idle`].
    fn step(&self, limit: Option<MonotonicTime>) -> Step;

    /// Runs the next event on the way to `target` signalling: a simulation whose events
    /// are independent (device queues) runs the one `target` waits for, and reports
    /// [`Step::Idle`] when none of its events leads there. The default is [`step`](Self::step).
    fn step_toward(&self, target: &Fence, limit: Option<MonotonicTime>) -> Step {
        let _ = target;
        self.step(limit)
    }
}

/// Runs `sim` until `target` signals, `timeout` of simulated time has passed, or the
/// simulation runs dry. A zero timeout only looks. Returns the simulated time left of
/// `timeout` ([`Duration::MAX`] without one).
pub fn sim_wait(sim: &dyn Simulation, target: &Fence, timeout: Option<Duration>) -> Result<Duration, FenceError> {
    if target.is_signaled() {
        return Ok(timeout.unwrap_or(Duration::MAX));
    }
    if timeout.is_some_and(|t| t.is_zero()) {
        return Err(FenceError::Timeout);
    }
    let limit = timeout.map(|t| sim.now().checked_add(t).unwrap_or(MonotonicTime::from_nanos(u64::MAX)));
    loop {
        if target.is_signaled() {
            return Ok(match limit {
                Some(limit) => Duration::from_nanos(limit.as_nanos().saturating_sub(sim.now().as_nanos())),
                None => Duration::MAX,
            });
        }
        match sim.step_toward(target, limit) {
            Step::Ran => {}
            Step::ReachedLimit => return Err(FenceError::Timeout),
            Step::Idle => return Err(FenceError::Deadlock { context: target.context(), seqno: target.seqno() }),
        }
    }
}

/// The ops of a fence completed in simulated time: waits run the simulation, the signal
/// timestamp is simulated time.
pub struct SimFenceOps {
    sim: Arc<dyn Simulation>,
    driver: String,
    timeline: String,
}

impl SimFenceOps {
    /// Ops for a fence of `sim`, with the names sync-file info shows.
    pub fn new(sim: Arc<dyn Simulation>, driver: &str, timeline: &str) -> SimFenceOps {
        SimFenceOps { sim, driver: driver.to_string(), timeline: timeline.to_string() }
    }

    /// The simulation whose events this provider's fence waits run.
    pub fn sim(&self) -> &Arc<dyn Simulation> {
        &self.sim
    }
}

impl FenceOps for SimFenceOps {
    fn driver_name(&self) -> &str {
        &self.driver
    }

    fn timeline_name(&self) -> &str {
        &self.timeline
    }

    fn wait(&self, fence: &Fence, timeout: Option<Duration>) -> Option<Result<Duration, FenceError>> {
        Some(sim_wait(&*self.sim, fence, timeout))
    }

    fn timestamp(&self, _fence: &Fence) -> MonotonicTime {
        self.sim.now()
    }
}

type Action = Box<dyn FnOnce() + Send>;

struct Event {
    at: MonotonicTime,
    seq: u64,
    action: Action,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Event {}

impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Event {
    /// Reversed, so that the max-heap pops the earliest event (first scheduled first).
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

struct QueueState {
    now: MonotonicTime,
    next_seq: u64,
    events: BinaryHeap<Event>,
}

/// A minimal discrete-event simulation: a clock and actions scheduled at times.
pub struct EventQueue {
    state: Mutex<QueueState>,
}

impl std::fmt::Debug for EventQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventQueue").field("now", &self.now()).field("pending", &self.pending()).finish()
    }
}

impl EventQueue {
    /// An empty queue at time 0.
    pub fn new() -> Arc<EventQueue> {
        Arc::new(EventQueue {
            state: Mutex::new(QueueState { now: MonotonicTime::from_nanos(0), next_seq: 0, events: BinaryHeap::new() }),
        })
    }

    /// Runs `action` when the clock reaches `at` (at once, on the next step, if `at` is
    /// past). Actions at the same time run in the order scheduled.
    pub fn schedule(&self, at: MonotonicTime, action: impl FnOnce() + Send + 'static) {
        let mut st = sync::lock(&self.state);
        let seq = st.next_seq;
        st.next_seq += 1;
        st.events.push(Event { at, seq, action: Box::new(action) });
    }

    /// Signals `fence` at `at` (a device job completing).
    pub fn signal_at(&self, at: MonotonicTime, fence: &Fence) {
        let fence = fence.clone();
        self.schedule(at, move || {
            let _ = fence.signal();
        });
    }

    /// A new unsignalled fence of this simulation.
    pub fn fence(self: &Arc<Self>, context: u64, seqno: u64, driver: &str, timeline: &str) -> Fence {
        let sim: Arc<dyn Simulation> = self.clone();
        Fence::new(context, seqno, SimFenceOps::new(sim, driver, timeline))
    }

    /// How many events are pending.
    pub fn pending(&self) -> usize {
        sync::lock(&self.state).events.len()
    }

    /// Runs every event; returns how many ran.
    pub fn run_until_idle(&self) -> usize {
        let mut n = 0;
        while self.step(None) == Step::Ran {
            n += 1;
        }
        n
    }
}

impl Simulation for EventQueue {
    fn now(&self) -> MonotonicTime {
        sync::lock(&self.state).now
    }

    fn step(&self, limit: Option<MonotonicTime>) -> Step {
        let event = {
            let mut st = sync::lock(&self.state);
            let Some(next) = st.events.peek() else { return Step::Idle };
            if let Some(limit) = limit
                && next.at > limit
            {
                st.now = st.now.max(limit);
                return Step::ReachedLimit;
            }
            let event = st.events.pop().expect("peeked");
            st.now = st.now.max(event.at);
            event
        };
        // Run without the lock: actions signal fences, whose callbacks may schedule more.
        (event.action)();
        Step::Ran
    }
}
