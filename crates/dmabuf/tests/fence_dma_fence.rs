//! The kernel's `drivers/dma-buf/st-dma-fence.c` selftests, as tests of [`Fence`], plus the
//! rules of `dma-fence.c` they rely on (signal once, error before signal, deadlines, names).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use dmabuf::fence::{Errno, Fence, FenceError, FenceOps, FenceStatus, MonotonicTime, context_alloc, ktime_get};

fn mock_fence() -> Fence {
    Fence::new_software(context_alloc(1), 0)
}

fn seen_flag(f: &Fence) -> (Arc<AtomicBool>, dmabuf::fence::CallbackId) {
    let seen = Arc::new(AtomicBool::new(false));
    let s = seen.clone();
    let id = f.add_callback(move |_| s.store(true, Ordering::SeqCst)).expect("fence is pending");
    (seen, id)
}

/// st-dma-fence.c `test_sanitycheck`.
#[test]
fn sanitycheck() {
    let f = mock_fence();
    f.enable_sw_signaling();
    assert!(f.signal().is_ok());
    assert!(f.is_signaled());
}

/// st-dma-fence.c `test_signaling` (with `dma_fence_check_and_signal`).
#[test]
fn signaling() {
    let f = mock_fence();
    f.enable_sw_signaling();
    assert!(!f.is_signaled(), "fence unexpectedly signalled on creation");
    assert!(!f.check_and_signal(), "fence reported being already signalled");
    assert!(f.is_signaled(), "fence not reporting signalled");
    assert!(f.test_signaled_flag());
    // Signals exactly once: a second signal is refused.
    assert!(f.check_and_signal());
    assert!(matches!(f.signal(), Err(FenceError::AlreadySignaled { .. })));
    assert_eq!(f.signal().unwrap_err().errno(), Errno::EINVAL);
}

/// st-dma-fence.c `test_add_callback`.
#[test]
fn add_callback() {
    let f = mock_fence();
    let (seen, _) = seen_flag(&f);
    assert!(!seen.load(Ordering::SeqCst));
    f.signal().unwrap();
    assert!(seen.load(Ordering::SeqCst), "callback failed");
}

/// st-dma-fence.c `test_late_add_callback`: a callback added to a signalled fence is
/// refused and never runs.
#[test]
fn late_add_callback() {
    let f = mock_fence();
    f.enable_sw_signaling();
    f.signal().unwrap();
    let seen = Arc::new(AtomicBool::new(false));
    let s = seen.clone();
    let r = f.add_callback(move |_| s.store(true, Ordering::SeqCst));
    assert!(matches!(r, Err(FenceError::AlreadySignaled { .. })), "added callback to a signalled fence");
    let _ = f.signal();
    assert!(!seen.load(Ordering::SeqCst), "callback called after failed attachment");
    // The refused closure was dropped, not leaked: its Arc is gone.
    assert_eq!(Arc::strong_count(&seen), 1);
}

/// st-dma-fence.c `test_rm_callback`.
#[test]
fn rm_callback() {
    let f = mock_fence();
    let (seen, id) = seen_flag(&f);
    assert!(f.remove_callback(id), "failed to remove callback");
    f.signal().unwrap();
    assert!(!seen.load(Ordering::SeqCst), "callback still signalled after removal");
}

/// st-dma-fence.c `test_late_rm_callback`.
#[test]
fn late_rm_callback() {
    let f = mock_fence();
    let (seen, id) = seen_flag(&f);
    f.signal().unwrap();
    assert!(seen.load(Ordering::SeqCst), "callback failed");
    assert!(!f.remove_callback(id), "callback removal succeeded after being executed");
}

/// st-dma-fence.c `test_status`.
#[test]
fn status() {
    let f = mock_fence();
    f.enable_sw_signaling();
    assert_eq!(f.status(), FenceStatus::Active);
    f.signal().unwrap();
    assert_eq!(f.status(), FenceStatus::Signaled);
}

/// st-dma-fence.c `test_error`: the error shows only once the fence signals, and can be
/// set only before.
#[test]
fn error() {
    let f = mock_fence();
    f.enable_sw_signaling();
    f.set_error(Errno::EIO).unwrap();
    assert_eq!(f.status(), FenceStatus::Active, "error status before signal");
    f.signal().unwrap();
    assert_eq!(f.status(), FenceStatus::Error(-5));
    assert_eq!(f.error(), Some(Errno::EIO));
    assert!(matches!(f.set_error(Errno::ENODEV), Err(FenceError::AlreadySignaled { .. })));
    assert_eq!(f.error(), Some(Errno::EIO));
    // The kernel's negative-errno form, and what it refuses.
    let g = mock_fence();
    assert_eq!(g.set_error_code(0), Err(FenceError::InvalidErrno(0)));
    assert_eq!(g.set_error_code(-4096), Err(FenceError::InvalidErrno(-4096)));
    g.set_error_code(-110).unwrap();
    g.signal().unwrap();
    assert_eq!(g.status(), FenceStatus::Error(-110));
}

/// st-dma-fence.c `test_wait`: a zero timeout only looks.
#[test]
fn wait() {
    let f = mock_fence();
    f.enable_sw_signaling();
    assert_eq!(f.wait_timeout(Duration::ZERO), Err(FenceError::Timeout));
    f.signal().unwrap();
    assert_eq!(f.wait_timeout(Duration::ZERO), Ok(()));
}

/// st-dma-fence.c `test_wait_timeout`: a wait times out, then a wait that the signal
/// (from another thread, the kernel's timer) ends in time succeeds.
#[test]
fn wait_timeout() {
    let f = mock_fence();
    f.enable_sw_signaling();
    let start = Instant::now();
    assert_eq!(f.wait_timeout(Duration::from_millis(10)), Err(FenceError::Timeout));
    assert!(start.elapsed() >= Duration::from_millis(10));
    let g = f.clone();
    let timer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(5));
        g.signal().unwrap();
    });
    assert_eq!(f.wait_timeout(Duration::from_secs(10)), Ok(()));
    timer.join().unwrap();
}

/// st-dma-fence.c `test_stub`: every stub is signalled.
#[test]
fn stub() {
    let stubs: Vec<Fence> = (0..64).map(|_| Fence::stub()).collect();
    for s in &stubs {
        assert!(s.is_signaled(), "obtained unsignalled stub fence");
        assert_eq!(s.context(), 0);
        assert_eq!(s.driver_name(), "stub");
    }
    // dma_fence_get_stub shares one fence; private stubs carry their own timestamp.
    assert_eq!(stubs[0], stubs[63]);
    let p = Fence::private_stub(MonotonicTime::from_nanos(1234));
    assert!(p.is_signaled());
    assert_eq!(p.timestamp(), Some(MonotonicTime::from_nanos(1234)));
    assert_ne!(p, stubs[0]);
}

/// st-dma-fence.c `test_race_signal_callback`: two threads each create a fence, signal
/// it before or after adding a callback to the other thread's fence, and check that the
/// callback was seen whenever it was added. Run for a fixed number of passes.
#[test]
fn race_signal_callback() {
    for before in [false, true] {
        let slots: Arc<[std::sync::Mutex<Option<Fence>>; 2]> = Arc::new(Default::default());
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let threads: Vec<_> = (0..2)
            .map(|id| {
                let slots = slots.clone();
                let barrier = barrier.clone();
                thread::spawn(move || {
                    let mut misses = 0;
                    for _ in 0..2000 {
                        let f1 = mock_fence();
                        f1.enable_sw_signaling();
                        *slots[id].lock().unwrap() = Some(f1.clone());
                        barrier.wait();
                        let f2 = slots[1 - id].lock().unwrap().clone().expect("peer published its fence");
                        if before {
                            f1.signal().unwrap();
                        }
                        let seen = Arc::new(AtomicBool::new(false));
                        let s = seen.clone();
                        let added = f2.add_callback(move |_| s.store(true, Ordering::SeqCst)).ok();
                        if added.is_none() {
                            misses += 1;
                            assert!(f2.is_signaled(), "add_callback refused on a pending fence");
                        }
                        if !before {
                            f1.signal().unwrap();
                        }
                        if let Some(cb) = added {
                            f2.wait().unwrap();
                            // The kernel test's `__wait_for_callbacks`: removing a callback
                            // that was taken waits until the signaller has run it.
                            assert!(!f2.remove_callback(cb), "callback still pending after signal");
                            assert!(seen.load(Ordering::SeqCst), "callback not seen on thread {id}");
                        }
                        barrier.wait();
                    }
                    misses
                })
            })
            .collect();
        for t in threads {
            let misses = t.join().unwrap();
            assert!(misses <= 2000);
        }
    }
}

/// Callbacks run exactly once, in the order added, on the signalling thread, and may use
/// other fences (no lock is held while they run).
#[test]
fn callbacks_run_once_in_order_without_locks() {
    let f = mock_fence();
    let other = mock_fence();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    for i in 0..5 {
        let order = order.clone();
        let other = other.clone();
        f.add_callback(move |me| {
            order.lock().unwrap().push(i);
            // Re-entering the fence itself and another fence from a callback is allowed.
            assert!(me.is_signaled());
            assert!(me.add_callback(|_| {}).is_err());
            if i == 4 {
                other.signal().unwrap();
            }
        })
        .unwrap();
    }
    f.signal().unwrap();
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    assert!(other.is_signaled());
    let _ = f.signal();
    assert_eq!(order.lock().unwrap().len(), 5);
}

/// `dma_fence_set_deadline`: the soonest deadline is kept, the provider hears each new
/// soonest one, and nothing after the signal.
#[test]
fn deadlines_keep_the_soonest() {
    struct Recorder(Arc<std::sync::Mutex<Vec<u64>>>);
    impl FenceOps for Recorder {
        fn driver_name(&self) -> &str {
            "recorder"
        }
        fn timeline_name(&self) -> &str {
            "rec-timeline"
        }
        fn set_deadline(&self, _fence: &Fence, deadline: MonotonicTime) {
            self.0.lock().unwrap().push(deadline.as_nanos());
        }
    }
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let f = Fence::new(context_alloc(1), 7, Recorder(log.clone()));
    assert_eq!(f.driver_name(), "recorder");
    assert_eq!(f.timeline_name(), "rec-timeline");
    assert_eq!(f.deadline(), None);
    f.set_deadline(MonotonicTime::from_nanos(500));
    f.set_deadline(MonotonicTime::from_nanos(900));
    f.set_deadline(MonotonicTime::from_nanos(300));
    assert_eq!(f.deadline(), Some(MonotonicTime::from_nanos(300)));
    f.signal().unwrap();
    f.set_deadline(MonotonicTime::from_nanos(100));
    assert_eq!(*log.lock().unwrap(), vec![500, 300]);
}

/// `dma_fence_is_later`: ordered within a context only; 32-bit providers wrap.
#[test]
fn is_later_within_a_context() {
    let ctx = context_alloc(2);
    let a = Fence::new_software(ctx, 1);
    let b = Fence::new_software(ctx, 2);
    let c = Fence::new_software(ctx + 1, 5);
    assert!(b.is_later(&a) && !a.is_later(&b));
    assert!(!c.is_later(&a) && !a.is_later(&c));
    assert!(a.is_later_or_same(&a) && b.is_later_or_same(&a));
    assert!(dmabuf::fence::seqno_is_later(1, u64::from(u32::MAX), false));
    assert!(!dmabuf::fence::seqno_is_later(1, u64::from(u32::MAX), true));
}

/// The signal timestamp is taken from the monotonic clock and is absent before.
#[test]
fn timestamp_on_signal() {
    let f = mock_fence();
    assert_eq!(f.timestamp(), None);
    let before = ktime_get();
    f.signal().unwrap();
    let t = f.timestamp().expect("signalled");
    assert!(t >= before && t <= ktime_get());
}

/// Many waiters on one fence all wake on one signal (no lost wake-up).
#[test]
fn many_waiters_all_wake() {
    let f = mock_fence();
    let woke = Arc::new(AtomicUsize::new(0));
    let waiters: Vec<_> = (0..8)
        .map(|_| {
            let f = f.clone();
            let woke = woke.clone();
            thread::spawn(move || {
                f.wait().unwrap();
                woke.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(10));
    assert_eq!(woke.load(Ordering::SeqCst), 0);
    f.signal().unwrap();
    for w in waiters {
        w.join().unwrap();
    }
    assert_eq!(woke.load(Ordering::SeqCst), 8);
}

/// include/linux/dma-fence.h `dma_fence_is_later_or_same`: `f1 == f2 ||
/// dma_fence_is_later(f1, f2)`. The same fence, or a later one of its context; two
/// distinct fences with an equal sequence number are not the same, and neither is later.
/// 32-bit providers (`sw_sync`) order across the wrap (`__dma_fence_is_later`).
#[test]
fn is_later_or_same_is_the_fence_itself_or_later() {
    let ctx = context_alloc(2);
    let a = Fence::new_software(ctx, 1);
    let twin = Fence::new_software(ctx, 1);
    let later = Fence::new_software(ctx, 2);
    assert!(a.is_later_or_same(&a) && twin.is_later_or_same(&twin));
    assert!(!a.is_later_or_same(&twin) && !twin.is_later_or_same(&a), "distinct fences of one seqno are not the same");
    assert!(later.is_later_or_same(&a) && !a.is_later_or_same(&later));
    let elsewhere = Fence::new_software(ctx + 1, 1);
    assert!(!elsewhere.is_later_or_same(&a) && !a.is_later_or_same(&elsewhere));

    let tl = dmabuf::SyncTimeline::new("wrap");
    tl.inc(u32::MAX - 1);
    let before_wrap = tl.create_fence(u32::MAX);
    let after_wrap = tl.create_fence(1);
    assert!(after_wrap.is_later_or_same(&before_wrap) && !before_wrap.is_later_or_same(&after_wrap));
}
