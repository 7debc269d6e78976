//! Simulated time: waits on simulated fences run the simulation instead of blocking, and
//! the same fence works in containers, reservation objects and sync files.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dmabuf::SyncFile;
use dmabuf::fence::{Fence, FenceArray, FenceChain, FenceError, MonotonicTime, context_alloc};
use dmabuf::sim_time::{EventQueue, SimFenceOps, Simulation, Step};
use dmabuf::uapi::WaitStatus;
use dmabuf::{Resv, ResvUsage};

fn ns(n: u64) -> MonotonicTime {
    MonotonicTime::from_nanos(n)
}

#[test]
fn wait_runs_the_simulation_to_the_signal() {
    let sim = EventQueue::new();
    let job = sim.fence(context_alloc(1), 1, "gpu", "ring0");
    sim.signal_at(ns(100), &job);
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    sim.schedule(ns(500), move || {
        r.fetch_add(1, Ordering::SeqCst);
    });
    assert!(!job.is_signaled());
    job.wait().unwrap();
    assert!(job.is_signaled());
    // Stamped with simulated time, and the wait ran only as far as it needed.
    assert_eq!(job.timestamp(), Some(ns(100)));
    assert_eq!(sim.now(), ns(100));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert_eq!(sim.pending(), 1);
}

#[test]
fn timeout_is_simulated_time() {
    let sim = EventQueue::new();
    let job = sim.fence(context_alloc(1), 1, "gpu", "ring0");
    sim.signal_at(ns(10_000), &job);
    // A zero timeout only looks; 5 µs of simulated time passes at once.
    assert_eq!(job.wait_timeout(Duration::ZERO), Err(FenceError::Timeout));
    assert_eq!(sim.now(), ns(0));
    assert_eq!(job.wait_timeout(Duration::from_micros(5)), Err(FenceError::Timeout));
    assert_eq!(sim.now(), ns(5_000));
    assert_eq!(job.wait_timeout(Duration::from_micros(5)), Ok(()));
    assert_eq!(sim.now(), ns(10_000));
}

#[test]
fn nothing_left_to_signal_is_a_deadlock() {
    let sim = EventQueue::new();
    let job = sim.fence(context_alloc(1), 3, "gpu", "ring0");
    let err = job.wait().unwrap_err();
    assert_eq!(err, FenceError::Deadlock { context: job.context(), seqno: 3 });
    assert_eq!(err.errno(), dmabuf::fence::Errno::EDEADLK);
}

#[test]
fn events_chain_through_callbacks() {
    // Job 2 starts when job 1 completes (a callback schedules it): the wait for job 2
    // runs both.
    let sim = EventQueue::new();
    let ctx = context_alloc(1);
    let j1 = sim.fence(ctx, 1, "gpu", "ring0");
    let j2 = sim.fence(ctx, 2, "gpu", "ring0");
    sim.signal_at(ns(50), &j1);
    {
        let (sim2, j2) = (sim.clone(), j2.clone());
        j1.add_callback(move |_| sim2.signal_at(ns(80), &j2)).unwrap();
    }
    j2.wait().unwrap();
    assert_eq!(j2.timestamp(), Some(ns(80)));
}

#[test]
fn containers_resv_and_sync_files_drive_the_simulation() {
    let sim = EventQueue::new();
    let (a, b) = (sim.fence(context_alloc(1), 1, "cam", "isp"), sim.fence(context_alloc(1), 1, "gpu", "ring"));
    sim.signal_at(ns(30), &a);
    sim.signal_at(ns(70), &b);
    let array = FenceArray::create(vec![a.clone(), b.clone()], context_alloc(1), 1, false).unwrap();
    array.wait().unwrap();
    assert_eq!(sim.now(), ns(70));

    let (c, d) = (sim.fence(context_alloc(1), 1, "cam", "isp"), sim.fence(context_alloc(1), 1, "gpu", "ring"));
    sim.signal_at(ns(100), &c);
    sim.signal_at(ns(200), &d);
    let head = FenceChain::create(Some(FenceChain::create(None, c.clone(), 1)), d.clone(), 2);
    let point1 = FenceChain::find_seqno(&head, 1).unwrap().unwrap();
    point1.wait().unwrap();
    assert_eq!(sim.now(), ns(100));
    assert!(!d.is_signaled());

    let resv = Resv::new();
    {
        let mut g = resv.lock();
        g.reserve_fences(1);
        g.add_fence(&d, ResvUsage::Write).unwrap();
    }
    assert!(!resv.test_signaled(ResvUsage::Read));
    assert_eq!(resv.wait_timeout(ResvUsage::Read, Some(Duration::from_nanos(50))), Err(FenceError::Timeout));
    assert_eq!(sim.now(), ns(150));
    resv.wait_timeout(ResvUsage::Read, None).unwrap();
    assert_eq!(sim.now(), ns(200));

    let e = sim.fence(context_alloc(1), 1, "vpu", "dec");
    sim.signal_at(ns(300), &e);
    let sf = SyncFile::new(e.clone()).merge("m", &SyncFile::new(head.clone())).unwrap();
    assert_eq!(sf.wait(None).unwrap(), WaitStatus::Signaled);
    assert_eq!(sf.info().fences[0].timestamp_ns, Some(300));
}

/// A simulation of one's own plugs in through the trait (here: a counter that signals
/// the fence after three steps).
#[test]
fn any_simulation_plugs_in() {
    struct Countdown {
        left: std::sync::Mutex<u32>,
        fence: std::sync::Mutex<Option<Fence>>,
    }
    impl Simulation for Countdown {
        fn now(&self) -> MonotonicTime {
            ns(u64::from(3 - *self.left.lock().unwrap()))
        }
        fn step(&self, _limit: Option<MonotonicTime>) -> Step {
            let mut left = self.left.lock().unwrap();
            if *left == 0 {
                return Step::Idle;
            }
            *left -= 1;
            if *left == 0 {
                drop(left);
                if let Some(f) = self.fence.lock().unwrap().take() {
                    f.signal().unwrap();
                }
            }
            Step::Ran
        }
    }
    let sim = Arc::new(Countdown { left: std::sync::Mutex::new(3), fence: std::sync::Mutex::new(None) });
    let f = Fence::new(context_alloc(1), 1, SimFenceOps::new(sim.clone(), "count", "down"));
    *sim.fence.lock().unwrap() = Some(f.clone());
    f.wait().unwrap();
    assert_eq!(f.timestamp(), Some(ns(3)));
    assert!(f.ops_as::<SimFenceOps>().is_some());
}
