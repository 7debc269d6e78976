//! The kernel's `tools/testing/selftests/sync/` tests (`sync_alloc.c`, `sync_fence.c`,
//! `sync_merge.c`, `sync_wait.c`, `sync_stress_merge.c`) as tests of [`SyncTimeline`]
//! and [`SyncFile`], plus `sync_file.c`'s info, poll and deadline rules.

use std::time::Duration;

use dmabuf::fence::{Errno, Fence, FenceStatus, MonotonicTime, context_alloc};
use dmabuf::resv::{Resv, ResvUsage};
use dmabuf::sw_sync::SyncTimeline;
use dmabuf::sync_file::SyncFile;
use dmabuf::uapi::{self, WaitStatus};
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

/// sync_stress_merge.c `test_merge_stress_random_merge`: many random merges across
/// timelines keep one fence per timeline (its highest point), and the result signals
/// only when every timeline reaches it.
#[test]
fn merge_stress_random_merge() {
    const TIMELINES: usize = 32;
    const MERGES: usize = 4096;
    let timelines: Vec<SyncTimeline> = (0..TIMELINES).map(|i| SyncTimeline::new(&format!("tl{i}"))).collect();
    let mut highest: Vec<Option<u32>> = vec![None; TIMELINES];
    let mut fence = timelines[0].create_sync_file("fence", 0);
    let mut rng = 0x853c_49e6_748f_ea9b_u64;
    let mut next = || {
        rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (rng >> 33) as u32
    };
    for _ in 0..MERGES {
        let t = next() as usize % TIMELINES;
        let point = next() % 1000 + 1;
        let f = timelines[t].create_sync_file("fence", point);
        fence = fence.merge("merge", &f).unwrap();
        highest[t] = Some(highest[t].map_or(point, |h| h.max(point)));
    }
    let touched = highest.iter().flatten().count();
    assert_eq!(size(&fence), touched, "quantity of elements not matching");
    for (t, h) in highest.iter().enumerate() {
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
