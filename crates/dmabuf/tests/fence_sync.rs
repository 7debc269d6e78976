//! The kernel's `tools/testing/selftests/sync/` tests (`sync_alloc.c`, `sync_fence.c`,
//! `sync_merge.c`, `sync_wait.c`, `sync_stress_merge.c`) and igt's `tests/sw_sync.c` as
//! tests of [`SyncTimeline`] and [`SyncFile`], plus the rules of `sw_sync.c` and
//! `sync_file.c` they rely on (increments, points, info, poll and deadlines).

use std::time::Duration;

use dmabuf::SyncFile;
use dmabuf::SyncTimeline;
use dmabuf::fence::{Errno, Fence, FenceStatus, MonotonicTime, context_alloc};
use dmabuf::uapi::{self, WaitStatus};
use dmabuf::{Resv, ResvUsage};
use proptest::prelude::*;

/// The selftests' `sync_fence_count_with_status`.
fn count_with_status(f: &SyncFile, status: FenceStatus) -> usize {
    f.info().count_with_status(status)
}

/// The selftests' `sync_fence_size`.
fn size(f: &SyncFile) -> usize {
    f.info().fences.len()
}

/// The selftests' `sync_wait(fd, timeout)` > 0.
fn signalled_within(f: &SyncFile, ms: u64) -> bool {
    f.wait(Some(Duration::from_millis(ms))).unwrap() == WaitStatus::Signaled
}

/// sync_alloc.c `test_alloc_timeline`.
#[test]
fn alloc_timeline() {
    let timeline = SyncTimeline::new("test_alloc_timeline");
    assert_eq!(timeline.value(), 0);
    assert_ne!(timeline.context(), 0);
    timeline.close();
}

/// sync_alloc.c `test_alloc_fence`.
#[test]
fn alloc_fence() {
    let timeline = SyncTimeline::new("test_alloc_fence");
    let fence = timeline.create_sync_file("allocFence", 1);
    assert_eq!(fence.name(), "allocFence");
    assert_eq!(fence.fence().driver_name(), "sw_sync");
    assert_eq!(fence.fence().timeline_name(), "test_alloc_fence");
    assert_eq!(size(&fence), 1);
}

/// sync_alloc.c `test_alloc_fence_negative`: no fence from a closed timeline; here a
/// closed timeline cannot be used at all, and its pending fences end with `ENOENT`.
#[test]
fn alloc_fence_negative() {
    let timeline = SyncTimeline::new("negative");
    let fence = timeline.create_sync_file("allocFence", 1);
    timeline.close();
    assert!(signalled_within(&fence, 0));
    assert_eq!(fence.status(), FenceStatus::Error(-Errno::ENOENT.get()));
    assert_eq!(count_with_status(&fence, FenceStatus::Error(-2)), 1);
}

/// sync_fence.c `test_fence_one_timeline_wait`.
#[test]
fn fence_one_timeline_wait() {
    let timeline = SyncTimeline::new("one_timeline_wait");
    let fence = timeline.create_sync_file("allocFence", 5);
    assert!(!signalled_within(&fence, 0), "failure waiting on fence until timeout");
    timeline.inc(1);
    assert!(!signalled_within(&fence, 0));
    timeline.inc(1);
    assert!(!signalled_within(&fence, 0));
    timeline.inc(2);
    assert!(!signalled_within(&fence, 0));
    timeline.inc(1);
    assert!(signalled_within(&fence, 0), "failure signaling the fence");
    timeline.inc(10);
    assert_eq!(timeline.value(), 15);
    assert!(signalled_within(&fence, 0));
}

/// sync_fence.c `test_fence_one_timeline_merge`: merging points of one timeline keeps
/// the latest, which signals with the last.
#[test]
fn fence_one_timeline_merge() {
    let timeline = SyncTimeline::new("one_timeline_merge");
    let a = timeline.create_sync_file("allocFence", 1);
    let b = timeline.create_sync_file("allocFence", 2);
    let c = timeline.create_sync_file("allocFence", 3);
    let d = b.merge("mergeFence", &a).unwrap();
    let d = c.merge("mergeFence", &d).unwrap();
    assert_eq!(d.name(), "mergeFence");
    for f in [&a, &b, &c, &d] {
        assert_eq!(count_with_status(f, FenceStatus::Active), 1, "has too many active fences");
    }
    timeline.inc(1);
    assert_eq!(count_with_status(&a, FenceStatus::Signaled), 1, "a did not signal");
    assert_eq!(count_with_status(&d, FenceStatus::Active), 1, "d signalled too early");
    timeline.inc(1);
    assert_eq!(count_with_status(&b, FenceStatus::Signaled), 1, "b did not signal");
    assert_eq!(count_with_status(&d, FenceStatus::Active), 1, "d signalled too early");
    timeline.inc(1);
    assert_eq!(count_with_status(&c, FenceStatus::Signaled), 1, "c did not signal");
    assert_eq!(count_with_status(&d, FenceStatus::Active), 0);
    assert_eq!(count_with_status(&d, FenceStatus::Signaled), 1, "d did not signal");
}

/// sync_merge.c `test_fence_merge_same_fence`.
#[test]
fn fence_merge_same_fence() {
    let timeline = SyncTimeline::new("merge_same");
    let fence = timeline.create_sync_file("allocFence", 5);
    let merged = fence.merge("mergeFence", &fence).unwrap();
    assert_eq!(size(&merged), 1, "incorrect size of merged fence");
    timeline.inc(5);
    assert_eq!(count_with_status(&merged, FenceStatus::Signaled), 1, "failure signaling merged fence");
}

/// sync_wait.c `test_fence_multi_timeline_wait`.
#[test]
fn fence_multi_timeline_wait() {
    let (ta, tb, tc) = (SyncTimeline::new("A"), SyncTimeline::new("B"), SyncTimeline::new("C"));
    let a = ta.create_sync_file("allocFence", 5);
    let b = tb.create_sync_file("allocFence", 5);
    let c = tc.create_sync_file("allocFence", 5);
    let merged = b.merge("mergeFence", &a).unwrap();
    let merged = c.merge("mergeFence", &merged).unwrap();
    assert_eq!(count_with_status(&merged, FenceStatus::Active), 3, "fence signalled too early");
    assert!(!signalled_within(&merged, 0));
    ta.inc(5);
    assert_eq!(count_with_status(&merged, FenceStatus::Active), 2);
    assert_eq!(count_with_status(&merged, FenceStatus::Signaled), 1);
    tb.inc(5);
    assert_eq!(count_with_status(&merged, FenceStatus::Active), 1);
    tc.inc(5);
    assert_eq!(count_with_status(&merged, FenceStatus::Active), 0);
    assert_eq!(count_with_status(&merged, FenceStatus::Signaled), 3);
    assert!(signalled_within(&merged, 100), "failure waiting on signalled fence");
}

/// sync_stress_merge.c `test_merge_stress_random_merge`: 32768 random merges of points
/// anywhere in `rand()`'s range (up to `INT_MAX`) on 32 timelines keep one fence per
/// timeline (its highest point), and the result signals only when every timeline reaches
/// it. The first fence, point 0 of timeline 0, is born signalled and merged away.
#[test]
fn merge_stress_random_merge() {
    const TIMELINES: usize = 32;
    const MERGES: usize = 1024 * 32;
    let timelines: Vec<SyncTimeline> = (0..TIMELINES).map(|i| SyncTimeline::new(&format!("tl{i}"))).collect();
    let mut fence_map: Vec<Option<u32>> = vec![None; TIMELINES];
    let mut fence = timelines[0].create_sync_file("fence", 0);
    fence_map[0] = Some(0);
    let mut rng = 0x853c_49e6_748f_ea9b_u64;
    // `rand()`: 31 random bits, 0..=RAND_MAX (INT_MAX with glibc).
    let mut rand = || {
        rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (rng >> 33) as u32
    };
    for _ in 0..MERGES {
        let t = rand() as usize % TIMELINES;
        let point = rand();
        fence_map[t] = Some(fence_map[t].map_or(point, |h| h.max(point)));
        let f = timelines[t].create_sync_file("fence", point);
        fence = f.merge("merge", &fence).unwrap();
    }
    let expected = fence_map.iter().flatten().count();
    assert_eq!(size(&fence), expected, "quantity of elements not matching");
    for (t, h) in fence_map.iter().enumerate() {
        if let Some(h) = h {
            assert!(!signalled_within(&fence, 0), "failure waiting on fence until timeout");
            timelines[t].inc(*h);
        }
    }
    assert!(signalled_within(&fence, 0), "failure triggering fence");
}

/// `sync_file_ioctl_fence_info`: names, statuses and timestamps per fence; the status
/// of the whole carries the first error.
#[test]
fn info_reports_each_fence() {
    let tl = SyncTimeline::new("info");
    let a = tl.create_sync_file("a", 1);
    let other = SyncTimeline::new("other");
    let b = other.create_sync_file("b", 1);
    let m = a.merge("ab", &b).unwrap();
    let info = m.info();
    assert_eq!(info.name, "ab");
    assert_eq!(info.status, FenceStatus::Active);
    assert_eq!(info.fences.len(), 2);
    assert!(info.fences.iter().all(|f| f.driver_name == "sw_sync" && f.timestamp_ns.is_none()));
    assert_eq!(info.fences.iter().map(|f| f.obj_name.as_str()).collect::<Vec<_>>(), vec!["info", "other"]);
    tl.inc(1);
    drop(other); // closes: b signals with ENOENT
    let info = m.info();
    assert_eq!(info.status, FenceStatus::Error(-2));
    assert_eq!(info.fences[0].status, FenceStatus::Signaled);
    assert_eq!(info.fences[1].status, FenceStatus::Error(-2));
    assert!(info.fences.iter().all(|f| f.timestamp_ns.is_some()));
    // The name made up for an unnamed sync file, cut to 31 bytes.
    let plain = SyncFile::new(Fence::new_software(context_alloc(1), 9));
    assert!(plain.name().starts_with("software-software"));
    let long = plain.clone().with_name(&"x".repeat(40));
    assert_eq!(long.name().len(), uapi::DMA_BUF_NAME_LEN - 1);
}

/// `sync_file_poll`: readable once signalled; `SYNC_IOC_SET_DEADLINE` reaches the fences;
/// a sync file of no fences is a signalled stub.
#[test]
fn poll_deadline_and_empty() {
    let tl = SyncTimeline::new("poll");
    let f = tl.create_sync_file("p", 2);
    assert!(!f.poll().readable);
    f.set_deadline(MonotonicTime::from_nanos(1000));
    assert_eq!(f.fence().deadline(), Some(MonotonicTime::from_nanos(1000)));
    tl.inc(2);
    assert!(f.poll().readable);
    assert!(!f.poll().writable);
    let empty = SyncFile::from_fences(&[]).unwrap();
    assert!(empty.poll().readable);
    assert_eq!(empty.fence().context(), 0);
    // The uapi trait is implemented by the same type.
    let via_trait = <SyncFile as uapi::SyncFile>::wait(&f, Some(Duration::ZERO)).unwrap();
    assert_eq!(via_trait, WaitStatus::Signaled);
}

/// sw_sync points compare with 32-bit wrap-around, like the kernel's.
#[test]
fn sw_sync_wraps_at_32_bits() {
    let tl = SyncTimeline::new("wrap");
    tl.inc(u32::MAX - 1);
    let near = tl.create_fence(u32::MAX);
    let past_wrap = tl.create_fence(1);
    assert!(!near.is_signaled() && !past_wrap.is_signaled());
    tl.inc(1);
    assert!(near.is_signaled() && !past_wrap.is_signaled());
    tl.inc(2);
    assert!(past_wrap.is_signaled());
    assert!(past_wrap.is_later(&near));
    // A point already reached is born signalled.
    assert!(tl.create_fence(0).is_signaled());
}

/// sw_sync.c `sw_sync_ioctl_inc`: an increment above `INT_MAX` is applied in steps of at
/// most `INT_MAX` (each a `sync_timeline_signal`). In one step of `u32::MAX` the counter
/// would land one short of a full turn, where point 1 compares as two ahead of it and
/// would never signal.
#[test]
fn sw_sync_inc_above_int_max_in_steps() {
    const INT_MAX: u32 = i32::MAX.unsigned_abs();
    let tl = std::sync::Arc::new(SyncTimeline::new("inc_above_int_max"));
    let first = tl.create_fence(1);
    let last = tl.create_fence(INT_MAX);
    // Point 1 signals in the first step, and its callback sees the counter where that
    // step left it, as a callback run by the kernel's first `sync_timeline_signal` does.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    {
        let (tl, seen) = (tl.clone(), seen.clone());
        first.add_callback(move |_| *seen.lock().unwrap() = Some(tl.value())).unwrap();
    }
    tl.inc(u32::MAX);
    assert!(first.is_signaled(), "point 1 left pending by an increment of u32::MAX");
    assert!(last.is_signaled());
    assert_eq!(tl.value(), u32::MAX);
    assert_eq!(*seen.lock().unwrap(), Some(INT_MAX), "the first step is INT_MAX");

    // The smallest single step that would jump past point 1: 2^31 + 2.
    let tl = SyncTimeline::new("inc_2_31_plus_2");
    let first = tl.create_fence(1);
    tl.inc((1 << 31) + 2);
    assert!(first.is_signaled(), "point 1 left pending by an increment of 2^31 + 2");
    assert_eq!(tl.value(), (1 << 31) + 2);
    // From there, a point half a turn ahead signals after a second large increment.
    let ahead = tl.create_fence(tl.value().wrapping_add(INT_MAX));
    assert!(!ahead.is_signaled());
    tl.inc(u32::MAX);
    assert!(ahead.is_signaled());
}

proptest! {
    /// sw_sync.c `sw_sync_ioctl_inc`: whatever the counter and the increment, a point `d`
    /// ahead of the counter (`1..=INT_MAX`, the only points that can be pending) signals
    /// exactly when the increment reaches it.
    #[test]
    fn sw_sync_inc_signals_a_point_once_the_counter_reaches_it(
        base in any::<u32>(),
        d in 1..=i32::MAX.unsigned_abs(),
        inc in any::<u32>(),
    ) {
        let tl = SyncTimeline::new("prop");
        tl.inc(base);
        let point = tl.create_fence(base.wrapping_add(d));
        prop_assert!(!point.is_signaled());
        tl.inc(inc);
        prop_assert_eq!(point.test_signaled_flag(), inc >= d, "point {} ahead, increment {}", d, inc);
        prop_assert_eq!(tl.value(), base.wrapping_add(inc));
    }
}

/// sw_sync.c `sync_pt_create`: a point still pending has one fence, and asking for it
/// again gives that fence (found in the timeline's tree). A point already reached gets a
/// new, signalled fence each time, and so does a pending point whose fence was released.
#[test]
fn sw_sync_pt_create_hands_out_the_pending_point() {
    let tl = SyncTimeline::new("pt_create");
    let a = tl.create_fence(5);
    let b = tl.create_fence(5);
    assert!(Fence::ptr_eq(&a, &b), "two fences for one pending point");
    assert!(!Fence::ptr_eq(&a, &tl.create_fence(6)));
    // The file-level view: two sync files of one point merge to that one fence.
    let m = tl.create_sync_file("x", 5).merge("m", &tl.create_sync_file("y", 5)).unwrap();
    assert_eq!(m.fence(), &a);
    drop((a, b, m));
    let c = tl.create_fence(5);
    tl.inc(5);
    assert!(c.is_signaled());
    let (d, e) = (tl.create_fence(5), tl.create_fence(5));
    assert!(d.is_signaled() && e.is_signaled());
    assert!(!Fence::ptr_eq(&d, &e), "a reached point is not in the tree");
}

/// sw_sync.c `sync_pt_create` with `dma_resv_add_fence`: the same pending point asked for
/// twice is one fence, so the reservation object replaces it in its slot instead of
/// needing a second one.
#[test]
fn sw_sync_same_point_takes_one_resv_slot() {
    let tl = SyncTimeline::new("resv");
    let resv = Resv::new();
    {
        let mut g = resv.lock();
        g.reserve_fences(1);
        g.add_fence(&tl.create_fence(3), ResvUsage::Read).unwrap();
        g.add_fence(&tl.create_fence(3), ResvUsage::Read).expect("the same fence needs no new slot");
        assert_eq!(g.num_fences(), 1);
    }
    tl.inc(3);
    assert!(resv.test_signaled(ResvUsage::Bookkeep));
}

/// sync_file.c `sync_file_ioctl_fence_info`: with the fences asked for, the status of the
/// whole is the first active or failed status in order (`info.status = info.status <= 0 ?
/// info.status : status`), so a failure shows while a later fence is active, and of two
/// failures the first in order shows, whichever happened first. The status of the fence
/// itself (`dma_fence_get_status`, what the call without fences reports) is the array's:
/// pending while any fence is, then the first error reported to it once a `poll` has
/// enabled its signalling (`dma_fence_array_set_pending_error`).
#[test]
fn sync_file_info_status_is_the_first_active_or_failed_fence() {
    // Contexts are allocated in order, so a merge puts `first` before `second`.
    let (first, second) = (Fence::new_software(context_alloc(1), 1), Fence::new_software(context_alloc(1), 1));
    let m = SyncFile::from_fences(&[second.clone(), first.clone()]).unwrap();
    assert!(!m.poll().readable);
    assert_eq!(m.info().status, FenceStatus::Active);
    first.signal_with_error(Errno::EIO).unwrap();
    assert_eq!(m.info().status, FenceStatus::Error(-5), "a failure before an active fence shows");
    assert_eq!(m.status(), FenceStatus::Active, "the array itself is still pending");
    second.signal().unwrap();
    assert_eq!(m.info().status, FenceStatus::Error(-5));
    assert_eq!(m.status(), FenceStatus::Error(-5));

    // A failure after an active fence does not show.
    let (first, second) = (Fence::new_software(context_alloc(1), 1), Fence::new_software(context_alloc(1), 1));
    let m = SyncFile::from_fences(&[first.clone(), second.clone()]).unwrap();
    assert!(!m.poll().readable);
    second.signal_with_error(Errno::EIO).unwrap();
    assert_eq!(m.info().status, FenceStatus::Active);
    // Two failures: info shows the first in order, the array the first to happen.
    first.signal_with_error(Errno::ETIMEDOUT).unwrap();
    assert_eq!(m.info().status, FenceStatus::Error(-110));
    assert_eq!(m.status(), FenceStatus::Error(-5));
}

/// The selftests' and igt's `sync_fence_status`: the status of a sync file's one fence.
fn fence_status(f: &SyncFile) -> FenceStatus {
    let info = f.info();
    assert_eq!(info.fences.len(), 1);
    info.fences[0].status
}

/// igt sw_sync.c `test_timeline_closed`: closing the timeline signals its pending fence
/// with `-ENOENT`.
#[test]
fn igt_sw_sync_timeline_closed() {
    let timeline = SyncTimeline::new("closed");
    let fence = timeline.create_sync_file("fence", 1);
    timeline.close();
    assert!(signalled_within(&fence, 0), "failure waiting on unsignaled fence on closed timeline");
    assert_eq!(fence_status(&fence), FenceStatus::Error(-Errno::ENOENT.get()));
}

/// igt sw_sync.c `test_timeline_closed_signaled`: a fence signalled before the close
/// keeps its success.
#[test]
fn igt_sw_sync_timeline_closed_signaled() {
    let timeline = SyncTimeline::new("closed_signaled");
    let fence = timeline.create_sync_file("fence", 1);
    timeline.inc(1);
    timeline.close();
    assert!(signalled_within(&fence, 0), "failure waiting on signaled fence for closed timeline");
    assert_eq!(fence_status(&fence), FenceStatus::Signaled);
}

/// igt sw_sync.c `test_sync_busy`: a point signals exactly when the timeline reaches it,
/// also for points placed a prime ahead and reached by that prime.
#[test]
fn igt_sw_sync_sync_busy() {
    let timeline = SyncTimeline::new("busy");
    let fence = timeline.create_sync_file("fence", 5);
    assert!(!signalled_within(&fence, 0), "fence signaled early (timeline value 0, fence seqno 5)");
    timeline.inc(1);
    assert!(!signalled_within(&fence, 0), "fence signaled early (timeline value 1, fence seqno 5)");
    timeline.inc(4);
    assert!(signalled_within(&fence, 0), "fence not signaled (timeline value 5, fence seqno 5)");
    timeline.inc(5);
    assert!(signalled_within(&fence, 0), "fence not signaled (timeline value 10, fence seqno 5)");
    let mut seqno = 10;
    for prime in (2..100u32).filter(|n| (2..*n).all(|d| n % d != 0)) {
        seqno += prime;
        let fence_prime = timeline.create_sync_file("prime", seqno);
        timeline.inc(prime);
        assert!(signalled_within(&fence_prime, 0), "fence not signaled during test of prime timeline increments");
    }
    assert_eq!(timeline.value(), 10 + 1060, "the primes below 100 add up to 1060");
}

/// igt sw_sync.c `test_sync_busy_fork`: another process (here a thread) advances the
/// timeline while this one waits.
#[test]
fn igt_sw_sync_sync_busy_fork() {
    let timeline = std::sync::Arc::new(SyncTimeline::new("busy_fork"));
    let fence = timeline.create_sync_file("fence", 1);
    assert!(!signalled_within(&fence, 0), "fence signaled (it should not have been signalled yet)");
    let child = {
        let timeline = timeline.clone();
        std::thread::spawn(move || timeline.inc(1))
    };
    assert!(signalled_within(&fence, 2000), "fence not signaled (timeline value 1 fence seqno 1)");
    child.join().unwrap();
}

/// igt sw_sync.c `test_sync_expired_merge`: merging a fence the timeline has passed with
/// itself gives a signalled fence, every time (igt loops for a second; here 1000 times).
#[test]
fn igt_sw_sync_sync_expired_merge() {
    let timeline = SyncTimeline::new("expired_merge");
    timeline.inc(100);
    let expired = timeline.create_sync_file("expired", 1);
    assert!(signalled_within(&expired, 0), "failure waiting for expired fence");
    for _ in 0..1000 {
        let fence = expired.merge("merge", &expired).unwrap();
        assert_eq!(fence.wait(None).unwrap(), WaitStatus::Signaled, "failure waiting on fence");
    }
}

/// igt sw_sync.c `test_sync_random_merge`: 1024 merges of random points (up to
/// `INT_MAX`) on 32 timelines, starting from a random point of timeline 0; the merge is
/// pending until the last timeline reaches its highest point.
#[test]
fn igt_sw_sync_sync_random_merge() {
    const TIMELINES: usize = 32;
    const MERGES: usize = 1024;
    let timelines: Vec<SyncTimeline> = (0..TIMELINES).map(|i| SyncTimeline::new(&format!("igt{i}"))).collect();
    let mut fence_map: Vec<Option<u32>> = vec![None; TIMELINES];
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut rand = || {
        rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (rng >> 33) as u32
    };
    let sync_pt = rand();
    let mut fence = timelines[0].create_sync_file("fence", sync_pt);
    fence_map[0] = Some(sync_pt);
    for _ in 0..MERGES {
        let t = rand() as usize % TIMELINES;
        let sync_pt = rand();
        fence_map[t] = Some(fence_map[t].map_or(sync_pt, |h| h.max(sync_pt)));
        let tmp = timelines[t].create_sync_file("fence", sync_pt);
        fence = tmp.merge("merge", &fence).unwrap();
    }
    for (t, h) in fence_map.iter().enumerate() {
        if let Some(h) = h {
            assert!(!signalled_within(&fence, 0), "failure waiting on fence until timeout");
            timelines[t].inc(*h);
        }
    }
    assert!(signalled_within(&fence, 1), "failure triggering fence");
}

/// How many consumer threads the igt multi-consumer tests run: its eight, but no more
/// than there are processors (`min(8, sysconf(_SC_NPROCESSORS_ONLN))`), and at least two.
fn multi_consumer_threads() -> u32 {
    let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    u32::try_from(cpus.clamp(2, 8)).unwrap_or(8)
}

/// igt sw_sync.c `test_sync_multi_consumer`: consumer thread `t` waits for point
/// `i * n + t`, checks that the producer's counter has reached it and posts a semaphore;
/// the producer takes the semaphore, bumps the counter and advances the timeline.
#[test]
fn igt_sw_sync_sync_multi_consumer() {
    const ITERATIONS: u32 = 1 << 12;
    let n = multi_consumer_threads();
    let timeline = std::sync::Arc::new(SyncTimeline::new("multi_consumer"));
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let (sem_post, sem_wait) = std::sync::mpsc::channel::<()>();
    let threads: Vec<_> = (0..n)
        .map(|thread_id| {
            let (timeline, counter, sem_post) = (timeline.clone(), counter.clone(), sem_post.clone());
            std::thread::spawn(move || {
                for i in 0..ITERATIONS {
                    let next_point = i * n + thread_id;
                    let fence = timeline.create_sync_file("fence", next_point);
                    assert_eq!(fence.wait(Some(std::time::Duration::from_secs(10))).unwrap(), WaitStatus::Signaled);
                    assert_eq!(counter.load(std::sync::atomic::Ordering::Relaxed), next_point);
                    sem_post.send(()).unwrap();
                }
            })
        })
        .collect();
    for _ in 0..n * ITERATIONS {
        sem_wait.recv().unwrap();
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        timeline.inc(1);
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(counter.load(std::sync::atomic::Ordering::Relaxed), n * ITERATIONS);
}

/// igt sw_sync.c `test_sync_multi_consumer_producer`: thread `t` waits for point
/// `i * n + t`, bumps the shared counter (which must be at that point) and advances the
/// timeline, which releases the next thread.
#[test]
fn igt_sw_sync_sync_multi_consumer_producer() {
    const ITERATIONS: u32 = 1 << 12;
    let n = multi_consumer_threads();
    let timeline = std::sync::Arc::new(SyncTimeline::new("multi_consumer_producer"));
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let threads: Vec<_> = (0..n)
        .map(|thread_id| {
            let (timeline, counter) = (timeline.clone(), counter.clone());
            std::thread::spawn(move || {
                for i in 0..ITERATIONS {
                    let next_point = i * n + thread_id;
                    let fence = timeline.create_sync_file("fence", next_point);
                    assert_eq!(fence.wait(Some(std::time::Duration::from_secs(10))).unwrap(), WaitStatus::Signaled);
                    assert_eq!(counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed), next_point);
                    timeline.inc(1);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(counter.load(std::sync::atomic::Ordering::Relaxed), n * ITERATIONS);
    assert_eq!(timeline.value(), n * ITERATIONS);
}

/// igt sw_sync.c `test_sync_multi_producer_single_consumer`: five producers each wait
/// for the next point of the consumer's timeline (producer 0 by polling the fence info,
/// the others by waiting), bump a counter and advance their own timeline; the consumer
/// merges one point of every producer's timeline, waits, checks the counter and releases
/// them. Then it closes its timeline: creating a fence on it fails from then on (here:
/// the timeline is gone), which ends the producers. A producer that was already waiting
/// for a point past the last one released sees it signal with `-ENOENT`, and (as in igt)
/// counts it too. igt runs the consumer for a second; here for 1000 rounds.
#[test]
fn igt_sw_sync_sync_multi_producer_single_consumer() {
    const PRODUCERS: usize = 5;
    const ROUNDS: u32 = 1000;
    type Closable = std::sync::Arc<std::sync::RwLock<Option<SyncTimeline>>>;
    let cons_timeline: Closable = std::sync::Arc::new(std::sync::RwLock::new(Some(SyncTimeline::new("cons"))));
    let prod_timeline: std::sync::Arc<Vec<SyncTimeline>> =
        std::sync::Arc::new((0..PRODUCERS).map(|i| SyncTimeline::new(&format!("prod{i}"))).collect());
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|id| {
            let (cons_timeline, prod_timeline, counter) =
                (cons_timeline.clone(), prod_timeline.clone(), counter.clone());
            std::thread::spawn(move || {
                let (mut seqno, mut statuses) = (0, Vec::new());
                loop {
                    let Some(fence) = cons_timeline.read().unwrap().as_ref().map(|t| t.create_sync_file("f", seqno))
                    else {
                        break;
                    };
                    seqno += 1;
                    if id % 8 != 0 {
                        assert_eq!(fence.wait(None).unwrap(), WaitStatus::Signaled, "failure waiting on fence");
                    } else {
                        while count_with_status(&fence, FenceStatus::Active) != 0 {
                            std::thread::yield_now();
                        }
                    }
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    prod_timeline[id].inc(1);
                    statuses.push(fence_status(&fence));
                }
                statuses
            })
        })
        .collect();
    for seqno in 1..=ROUNDS {
        let mut fence = prod_timeline[0].create_sync_file("name", seqno);
        for tl in &prod_timeline[1..] {
            fence = tl.create_sync_file("name", seqno).merge("name", &fence).unwrap();
        }
        assert_eq!(fence.wait(None).unwrap(), WaitStatus::Signaled, "producers did not increment as expected");
        let expected = PRODUCERS as u32 * seqno;
        assert_eq!(counter.load(std::sync::atomic::Ordering::Relaxed), expected, "counter value mismatch");
        cons_timeline.read().unwrap().as_ref().expect("open until the rounds are done").inc(1);
    }
    // Close the consumer's timeline.
    let closed = cons_timeline.write().unwrap().take();
    drop(closed);
    let mut passed = 0;
    for p in producers {
        let statuses = p.join().unwrap();
        // Every producer passed points 0..ROUNDS, which the consumer waited for. Point
        // ROUNDS was released too, but the close may have come before the producer asked
        // for it; and a producer that got to ask for point ROUNDS + 1 before the close saw
        // it cut off.
        let (released, rest) = statuses.split_at(ROUNDS as usize);
        assert!(released.iter().all(|s| *s == FenceStatus::Signaled));
        let enoent = FenceStatus::Error(-Errno::ENOENT.get());
        match rest {
            [] | [FenceStatus::Signaled] => {}
            [FenceStatus::Signaled, s] => assert_eq!(*s, enoent, "the point cut off by the close"),
            _ => panic!("a producer passed a point the consumer never released: {rest:?}"),
        }
        passed += statuses.len() as u32;
    }
    assert_eq!(counter.load(std::sync::atomic::Ordering::Relaxed), passed);
}
