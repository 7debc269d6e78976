//! Sync files and dma-buf readiness on a real kernel, after
//! tools/testing/selftests/sync (merge, wait, info) with vgem as the fence source, and the
//! sw_sync timelines of those selftests where the kernel has them.

mod common;

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use common::{system_heap, vgem};
use dmabuf_linux::{Errno, Error, FenceStatus, Readiness, SwSyncTimeline, SyncFlags, WaitStatus, monotonic_now, sys};

const NOW: Option<Duration> = Some(Duration::ZERO);
const SHORT: Option<Duration> = Some(Duration::from_millis(20));
const LONG: Option<Duration> = Some(Duration::from_secs(5));

fn ready(readable: bool, writable: bool) -> Readiness {
    Readiness { readable, writable }
}

#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn an_idle_buffer_is_ready_and_exports_a_signaled_sync_file() {
    let buf = system_heap().allocate(4096).expect("alloc");
    assert_eq!(buf.poll(SyncFlags::ReadWrite, NOW).expect("poll"), ready(true, true));
    for flags in [SyncFlags::Read, SyncFlags::Write, SyncFlags::ReadWrite] {
        let sf = buf.export_sync_file(flags).expect("export");
        assert_eq!(sf.wait(NOW).expect("wait"), WaitStatus::Signaled);
        let info = sf.info().expect("info");
        assert_eq!(info.status, FenceStatus::Signaled, "{info:?}");
        assert!(info.fences.iter().all(|f| f.status.is_signaled()), "{info:?}");
    }
}

#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn a_write_fence_holds_back_readers_and_writers() {
    let buf = system_heap().allocate(4096).expect("alloc");
    let vgem = vgem();
    let handle = vgem.import(&buf).expect("import");
    let fence = vgem.attach_fence(&handle, true).expect("attach write fence");

    assert_eq!(buf.poll(SyncFlags::ReadWrite, NOW).expect("poll"), ready(false, false));
    assert_eq!(buf.poll(SyncFlags::Read, SHORT).expect("poll"), ready(false, false));
    let sf = buf.export_sync_file(SyncFlags::Read).expect("export");
    let info = sf.info().expect("info");
    assert_eq!(info.status, FenceStatus::Active);
    assert_eq!(info.fences.len(), 1, "{info:?}");
    assert_eq!(info.fences[0].driver_name, "vgem");
    assert_eq!(info.fences[0].obj_name, "unbound");
    assert_eq!(info.fences[0].status, FenceStatus::Active);
    assert_eq!(info.fences[0].timestamp_ns, None);
    assert_eq!(sf.wait(SHORT).expect("wait"), WaitStatus::TimedOut);

    let before = monotonic_now();
    fence.signal().expect("signal");
    assert_eq!(sf.wait(LONG).expect("wait"), WaitStatus::Signaled);
    let info = sf.info().expect("info");
    assert_eq!(info.status, FenceStatus::Signaled);
    let ts = info.fences[0].timestamp_ns.expect("a signaled fence has a timestamp");
    assert!(ts >= before.as_nanos() && ts <= monotonic_now().as_nanos(), "{ts}");
    assert_eq!(buf.poll(SyncFlags::Write, LONG).expect("poll"), ready(true, true));
}

#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn a_read_fence_holds_back_writers_only() {
    let buf = system_heap().allocate(4096).expect("alloc");
    let vgem = vgem();
    let handle = vgem.import(&buf).expect("import");
    let fence = vgem.attach_fence(&handle, false).expect("attach read fence");

    assert!(buf.poll(SyncFlags::Read, NOW).expect("poll").readable);
    assert_eq!(buf.poll(SyncFlags::Write, SHORT).expect("poll"), ready(false, false));
    // A reader waits for writers only; a writer waits for everyone.
    let for_reader = buf.export_sync_file(SyncFlags::Read).expect("export READ");
    let for_writer = buf.export_sync_file(SyncFlags::Write).expect("export WRITE");
    assert_eq!(for_reader.wait(NOW).expect("wait"), WaitStatus::Signaled);
    assert_eq!(for_writer.wait(NOW).expect("wait"), WaitStatus::TimedOut);
    // A conflicting writer's fence is refused while the reader's is pending.
    assert!(matches!(vgem.attach_fence(&handle, true), Err(Error::Os { errno: Errno::EBUSY, .. })));
    fence.signal().expect("signal");
    assert_eq!(for_writer.wait(LONG).expect("wait"), WaitStatus::Signaled);
    assert_eq!(buf.poll(SyncFlags::Write, LONG).expect("poll"), ready(true, true));
}

/// `SYNC_START` is implicit synchronisation: a guard is handed out only once the fences
/// it must wait for have signaled.
#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn cpu_access_waits_for_the_device() {
    let buf = system_heap().allocate(4096).expect("alloc");
    let vgem = vgem();
    let handle = vgem.import(&buf).expect("import");
    let map = buf.mmap().expect("mmap");
    let fence = vgem.attach_fence(&handle, true).expect("attach");
    let delay = Duration::from_millis(300);
    let waited = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(delay);
            fence.signal().expect("signal");
        });
        let t = Instant::now();
        let guard = map.read().expect("read guard");
        let waited = t.elapsed();
        drop(guard);
        waited
    });
    assert!(
        waited >= delay - Duration::from_millis(50),
        "the read guard began after {waited:?}, before the writer's fence signaled"
    );
}

/// sync_fence.c test_fence_one_timeline_merge / sync_merge.c, with a vgem fence per
/// buffer: the merge signals when the last of its fences does.
#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn merged_sync_files_signal_when_all_fences_have() {
    let heap = system_heap();
    let (a, b) = (heap.allocate(4096).expect("a"), heap.allocate(4096).expect("b"));
    let vgem = vgem();
    let (ha, hb) = (vgem.import(&a).expect("import a"), vgem.import(&b).expect("import b"));
    let fa = vgem.attach_fence(&ha, true).expect("fence a");
    let fb = vgem.attach_fence(&hb, true).expect("fence b");
    let sa = a.export_sync_file(SyncFlags::Write).expect("export a");
    let sb = b.export_sync_file(SyncFlags::Write).expect("export b");

    let m = sa.merge("mergeFence", &sb).expect("merge");
    let info = m.info().expect("info");
    assert_eq!(info.name, "mergeFence");
    assert_eq!(info.fences.len(), 2, "{info:?}");
    assert_eq!(info.count_with_status(FenceStatus::Active), 2);
    assert_eq!(info.status, FenceStatus::Active);

    // A fence merged with itself, or again with what the merge holds, stays one fence
    // per context.
    assert_eq!(sa.merge("self", &sa).expect("merge self").info().expect("info").fences.len(), 1);
    assert_eq!(m.merge("again", &sa).expect("merge").info().expect("info").fences.len(), 2);

    fa.signal().expect("signal a");
    let info = m.info().expect("info");
    assert_eq!(info.count_with_status(FenceStatus::Signaled), 1, "{info:?}");
    assert_eq!(info.count_with_status(FenceStatus::Active), 1, "{info:?}");
    assert_eq!(info.status, FenceStatus::Active);
    assert_eq!(m.wait(SHORT).expect("wait"), WaitStatus::TimedOut);
    // A merge taken now waits for the unsignaled fence only.
    let late = sa.merge("late", &sb).expect("merge");
    assert_eq!(late.info().expect("info").count_with_status(FenceStatus::Active), 1);

    fb.signal().expect("signal b");
    assert_eq!(m.wait(LONG).expect("wait"), WaitStatus::Signaled);
    assert_eq!(late.wait(LONG).expect("wait"), WaitStatus::Signaled);
    let info = m.info().expect("info");
    assert_eq!(info.status, FenceStatus::Signaled);
    assert_eq!(info.count_with_status(FenceStatus::Signaled), 2);

    // Names are checked; a second fd that is no sync file is refused by the kernel.
    assert!(matches!(sa.merge(&"x".repeat(32), &sb), Err(Error::NameTooLong { .. })));
    let memfd = rustix::fs::memfd_create("x", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd");
    assert_eq!(sys::sync_merge(sa.as_fd(), memfd.as_fd(), [0; 32]).map(drop), Err(Errno::ENOENT));
}

#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn imported_sync_files_gate_other_buffers() {
    let heap = system_heap();
    let src = heap.allocate(4096).expect("src");
    let vgem = vgem();
    let h = vgem.import(&src).expect("import");
    let fence = vgem.attach_fence(&h, true).expect("attach");
    let sf = src.export_sync_file(SyncFlags::Write).expect("export");

    let as_writer = heap.allocate(4096).expect("dst w");
    let as_reader = heap.allocate(4096).expect("dst r");
    as_writer.import_sync_file(SyncFlags::Write, &sf).expect("import WRITE");
    as_reader.import_sync_file(SyncFlags::Read, &sf).expect("import READ");
    assert_eq!(as_writer.poll(SyncFlags::ReadWrite, NOW).expect("poll"), ready(false, false));
    assert!(as_reader.poll(SyncFlags::Read, NOW).expect("poll").readable);
    assert!(!as_reader.poll(SyncFlags::Write, NOW).expect("poll").writable);
    // What the destination exports now carries the imported fence.
    let derived = as_writer.export_sync_file(SyncFlags::Read).expect("export");
    assert_eq!(derived.info().expect("info").fences[0].driver_name, "vgem");

    fence.signal().expect("signal");
    assert_eq!(as_writer.poll(SyncFlags::Write, LONG).expect("poll"), ready(true, true));
    assert_eq!(as_reader.poll(SyncFlags::Write, LONG).expect("poll"), ready(true, true));
    assert_eq!(derived.wait(NOW).expect("wait"), WaitStatus::Signaled);
}

#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn deadlines_are_accepted() {
    let buf = system_heap().allocate(4096).expect("alloc");
    let vgem = vgem();
    let h = vgem.import(&buf).expect("import");
    let fence = vgem.attach_fence(&h, true).expect("attach");
    let sf = buf.export_sync_file(SyncFlags::Read).expect("export");
    let deadline = monotonic_now().checked_add(Duration::from_millis(16)).expect("no overflow");
    sf.set_deadline(deadline).expect("SYNC_IOC_SET_DEADLINE on an active fence");
    fence.signal().expect("signal");
    sf.set_deadline(deadline).expect("SYNC_IOC_SET_DEADLINE on a signaled fence");
}

/// sync_fence.c test_fence_one_timeline_wait and _merge, on sw_sync. The kernel test
/// script tells from the kernel's config whether sw_sync must exist
/// (`DMABUF_EXPECT_SW_SYNC=1|0`); without it, either answer is checked for what it is.
#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn sw_sync_timelines() {
    let expect = std::env::var("DMABUF_EXPECT_SW_SYNC").ok();
    let timeline = match (SwSyncTimeline::open(), expect.as_deref()) {
        (Ok(t), None | Some("1")) => t,
        (Err(Error::SwSyncUnavailable { errno, .. }), None | Some("0")) => {
            assert_eq!(errno, Errno::ENOENT);
            println!("sw_sync is not in this kernel (CONFIG_SW_SYNC off): checked its absence");
            return;
        }
        (got, expect) => panic!("sw_sync expected={expect:?}, got {got:?}"),
    };
    let fence = timeline.create_fence("allocFence", 5).expect("create");
    assert_eq!(fence.wait(NOW).expect("wait"), WaitStatus::TimedOut);
    timeline.inc(1).expect("inc");
    assert_eq!(fence.wait(NOW).expect("wait"), WaitStatus::TimedOut);
    timeline.inc(4).expect("inc");
    assert_eq!(fence.wait(NOW).expect("wait"), WaitStatus::Signaled);
    timeline.inc(10).expect("inc");
    assert_eq!(fence.wait(NOW).expect("wait"), WaitStatus::Signaled);

    let t = SwSyncTimeline::open().expect("timeline");
    let a = t.create_fence("a", 1).expect("a");
    let b = t.create_fence("b", 2).expect("b");
    let c = t.create_fence("c", 3).expect("c");
    let d = c.merge("d", &b.merge("d", &a).expect("merge")).expect("merge");
    // One timeline: the merge keeps the latest point only.
    assert_eq!(d.info().expect("info").fences.len(), 1);
    for step in 1..=3 {
        t.inc(1).expect("inc");
        let want = if step < 3 { FenceStatus::Active } else { FenceStatus::Signaled };
        assert_eq!(d.info().expect("info").status, want, "after {step} steps");
    }
}
