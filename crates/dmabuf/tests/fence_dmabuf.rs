//! Fences on a `DmaBuf`: `DMA_BUF_IOCTL_EXPORT_SYNC_FILE` / `IMPORT_SYNC_FILE` and `poll`
//! with the semantics of the kernel's `dma-buf.c`, and CPU brackets that wait for the
//! fences they must (`dma_buf_begin_cpu_access` → `dma_resv_wait_timeout`); igt's
//! `tests/dmabuf_sync_file.c`, with vgem's fences as software fences attached the way
//! `vgem_fence_attach_ioctl` does.

use std::thread;
use std::time::Duration;

use dmabuf::AttachPolicy;
use dmabuf::ResvUsage;
use dmabuf::SyncFile;
use dmabuf::SyncTimeline;
use dmabuf::fence::{Fence, FenceError, FenceStatus, context_alloc};
use dmabuf::sim_time::EventQueue;
use dmabuf::uapi::{Readiness, SyncFlags};
use dmabuf::{
    DMA_BUF_SYNC_READ, DMA_BUF_SYNC_RW, DMA_BUF_SYNC_WRITE, DmaBuf, Error, MaintenancePolicy, System, SystemConfig,
};
use dmabuf_sim::{DmaDirection, Platform, Sim};

fn buffer() -> DmaBuf {
    let sim = Sim::builder(Platform::preset("arm64-noncoherent").unwrap()).build();
    let sys = System::new(sim, SystemConfig { attach: AttachPolicy::Strict, maintenance: MaintenancePolicy::Minimal });
    sys.heap("system").unwrap().allocate(4096).unwrap()
}

fn pending() -> Fence {
    Fence::new_software(context_alloc(1), 1)
}

/// `dma_buf_export_sync_file`: flags must be a non-empty subset of READ | WRITE.
#[test]
fn export_and_import_refuse_bad_flags() {
    let buf = buffer();
    for bad in [0, 4, 8, DMA_BUF_SYNC_RW | 4, 1 << 40] {
        assert!(
            matches!(buf.export_sync_file(bad), Err(Error::BadSyncFileFlags { flags, .. }) if flags == bad),
            "export accepted {bad:#x}"
        );
        let sf = SyncFile::new(pending());
        assert!(
            matches!(buf.import_sync_file(bad, &sf), Err(Error::BadSyncFileFlags { .. })),
            "import accepted {bad:#x}"
        );
    }
    assert!(buf.resv().test_signaled(ResvUsage::Bookkeep), "a refused import added nothing");
}

/// No fences: the export is a signalled stub, and the buffer polls ready both ways.
#[test]
fn export_without_fences_is_a_signalled_stub() {
    let buf = buffer();
    for flags in [DMA_BUF_SYNC_READ, DMA_BUF_SYNC_WRITE, DMA_BUF_SYNC_RW] {
        let sf = buf.export_sync_file(flags).unwrap();
        assert!(sf.fence().is_signaled());
        assert_eq!(sf.fence().context(), 0);
    }
    assert_eq!(buf.poll(), Readiness { readable: true, writable: true });
}

/// Import READ adds a read fence, WRITE a write fence; export READ waits for writers,
/// WRITE for everyone; poll is readable once writers are done, writable once all are.
#[test]
fn import_export_and_poll_follow_the_usages() {
    let buf = buffer();
    let (writer, reader) = (pending(), pending());
    buf.import_sync_file(DMA_BUF_SYNC_WRITE, &SyncFile::new(writer.clone())).unwrap();
    buf.import_sync_file(DMA_BUF_SYNC_READ, &SyncFile::new(reader.clone())).unwrap();
    let resv = buf.resv();
    assert_eq!(resv.get_fences(ResvUsage::Write), vec![writer.clone()]);
    assert_eq!(resv.get_fences(ResvUsage::Read), vec![writer.clone(), reader.clone()]);

    let for_readers = buf.export_sync_file(DMA_BUF_SYNC_READ).unwrap();
    assert_eq!(for_readers.fence(), &writer, "a reader waits for the writer only");
    let for_writers = buf.export_sync_file(DMA_BUF_SYNC_WRITE).unwrap();
    assert_eq!(for_writers.info().fences.len(), 2, "a writer waits for everyone");
    assert_eq!(buf.export_sync_file(DMA_BUF_SYNC_RW).unwrap().info().fences.len(), 2);

    assert_eq!(buf.poll(), Readiness { readable: false, writable: false });
    writer.signal().unwrap();
    assert_eq!(buf.poll(), Readiness { readable: true, writable: false });
    assert!(for_readers.poll().readable && !for_writers.poll().readable);
    reader.signal().unwrap();
    assert_eq!(buf.poll(), Readiness { readable: true, writable: true });
    assert_eq!(for_writers.info().status, FenceStatus::Signaled);
}

/// An imported merged sync file lands as its individual fences.
#[test]
fn import_unwraps_merged_sync_files() {
    let buf = buffer();
    let (a, b) = (SyncTimeline::new("a"), SyncTimeline::new("b"));
    let merged = a.create_sync_file("a", 1).merge("ab", &b.create_sync_file("b", 1)).unwrap();
    buf.import_sync_file(DMA_BUF_SYNC_WRITE, &merged).unwrap();
    let fences = buf.resv().get_fences(ResvUsage::Write);
    assert_eq!(fences.len(), 2);
    assert!(fences.iter().all(|f| !f.is_container()));
    a.inc(1);
    assert!(!buf.poll().readable);
    b.inc(1);
    assert!(buf.poll().readable);
}

/// `poll` with a timeout reports what is ready when time runs out, and wakes when a
/// fence signals on another thread.
#[test]
fn poll_timeout_waits() {
    let buf = buffer();
    let writer = pending();
    buf.import_sync_file(DMA_BUF_SYNC_WRITE, &SyncFile::new(writer.clone())).unwrap();
    let r = buf.poll_timeout(SyncFlags::Read, Some(Duration::from_millis(5))).unwrap();
    assert_eq!(r, Readiness { readable: false, writable: false });
    let t = {
        let w = writer.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(5));
            w.signal().unwrap();
        })
    };
    let r = buf.poll_timeout(SyncFlags::ReadWrite, None).unwrap();
    assert!(r.readable);
    t.join().unwrap();
}

/// `dma_buf_begin_cpu_access` waits for the fences: a CPU read for the writers, a CPU
/// write for everyone. Simulated fences make the bracket run the simulation.
#[test]
fn cpu_brackets_wait_for_the_fences() {
    let buf = buffer();
    let sim = EventQueue::new();
    let dma_write = sim.fence(context_alloc(1), 1, "cam", "isp");
    let dma_read = sim.fence(context_alloc(1), 1, "gpu", "ring");
    sim.signal_at(dmabuf::fence::MonotonicTime::from_nanos(1_000), &dma_write);
    sim.signal_at(dmabuf::fence::MonotonicTime::from_nanos(5_000), &dma_read);
    buf.import_sync_file(DMA_BUF_SYNC_WRITE, &SyncFile::new(dma_write.clone())).unwrap();
    buf.import_sync_file(DMA_BUF_SYNC_READ, &SyncFile::new(dma_read.clone())).unwrap();

    let cpu = buf.begin_cpu_access(DmaDirection::FromDevice).unwrap();
    assert!(dma_write.is_signaled(), "a CPU read waits for the device's write");
    assert!(!dma_read.is_signaled(), "but not for a device's read");
    drop(cpu);
    let cpu = buf.begin_cpu_access(DmaDirection::ToDevice).unwrap();
    assert!(dma_read.is_signaled(), "a CPU write waits for every reader too");
    drop(cpu);

    // A fence that nothing will signal: the simulated wait reports it instead of hanging.
    let never = sim.fence(context_alloc(1), 1, "gpu", "hung");
    buf.import_sync_file(DMA_BUF_SYNC_WRITE, &SyncFile::new(never)).unwrap();
    let r = buf.begin_cpu_access(DmaDirection::FromDevice);
    assert!(matches!(r, Err(Error::Fence(FenceError::Deadlock { .. }))));
    // The user-space sync ioctl goes through the same bracket.
    let map = buf.mmap().unwrap();
    assert!(matches!(dmabuf::raw::sync_ioctl(&map, DMA_BUF_SYNC_READ), Err(Error::Fence(FenceError::Deadlock { .. }))));
}

/// igt lib/igt_vgem.c `vgem_fence_attach` on the kernel's `vgem_fence_attach_ioctl`: a new
/// fence on a context of its own, refused (`EBUSY`, here `None`) while a conflicting fence
/// is pending, else added as a write or a read fence.
fn vgem_fence_attach(buf: &DmaBuf, write: bool) -> Option<Fence> {
    let resv = buf.resv();
    if !resv.test_signaled(ResvUsage::rw(write)) {
        return None;
    }
    let fence = Fence::new_software(context_alloc(1), 1);
    let mut g = resv.lock();
    g.reserve_fences(1);
    g.add_fence(&fence, if write { ResvUsage::Write } else { ResvUsage::Read }).ok()?;
    Some(fence)
}

/// igt lib/dmabuf_sync_file.c `dmabuf_busy`: `poll` for `POLLOUT` if `flags` has WRITE,
/// else for `POLLIN`, finds it not ready.
fn dmabuf_busy(buf: &DmaBuf, flags: u64) -> bool {
    let ready = buf.poll();
    if flags & DMA_BUF_SYNC_WRITE != 0 { !ready.writable } else { !ready.readable }
}

/// igt lib/dmabuf_sync_file.c `sync_file_busy`.
fn sync_file_busy(sf: &SyncFile) -> bool {
    !sf.poll().readable
}

/// igt lib/dmabuf_sync_file.c `dmabuf_sync_file_busy`.
fn dmabuf_sync_file_busy(buf: &DmaBuf, flags: u64) -> bool {
    sync_file_busy(&buf.export_sync_file(flags).unwrap())
}

/// igt lib/dmabuf_sync_file.c `dmabuf_import_timeline_fence`: the sync file is closed
/// after the import; the buffer keeps the fence.
fn dmabuf_import_timeline_fence(buf: &DmaBuf, flags: u64, timeline: &SyncTimeline, seqno: u32) {
    buf.import_sync_file(flags, &timeline.create_sync_file("import", seqno)).unwrap();
}

/// Asserts `dmabuf_busy` and `dmabuf_sync_file_busy` for READ, WRITE and RW.
fn assert_busy(buf: &DmaBuf, read: bool, write: bool) {
    for (flags, busy) in [(DMA_BUF_SYNC_READ, read), (DMA_BUF_SYNC_WRITE, write), (DMA_BUF_SYNC_RW, write)] {
        assert_eq!(dmabuf_busy(buf, flags), busy, "dmabuf_busy({flags:#x})");
        assert_eq!(dmabuf_sync_file_busy(buf, flags), busy, "dmabuf_sync_file_busy({flags:#x})");
    }
}

/// igt dmabuf_sync_file.c `test_export_basic`.
#[test]
fn igt_dmabuf_sync_file_export_basic() {
    let buf = buffer();
    assert_busy(&buf, false, false);
    let fence = vgem_fence_attach(&buf, false).expect("no conflicting fence");
    assert_busy(&buf, false, true);
    fence.signal().unwrap();
    assert_busy(&buf, false, false);
    let fence = vgem_fence_attach(&buf, true).expect("no conflicting fence");
    assert_busy(&buf, true, true);
    fence.signal().unwrap();
    assert_busy(&buf, false, false);
}

/// igt dmabuf_sync_file.c `test_export_before_signal`: sync files exported before the
/// signal see it.
#[test]
fn igt_dmabuf_sync_file_export_before_signal() {
    let buf = buffer();
    assert!(!dmabuf_sync_file_busy(&buf, DMA_BUF_SYNC_READ));
    assert!(!dmabuf_sync_file_busy(&buf, DMA_BUF_SYNC_WRITE));
    let fence = vgem_fence_attach(&buf, false).expect("no conflicting fence");
    let read_fd = buf.export_sync_file(DMA_BUF_SYNC_READ).unwrap();
    let write_fd = buf.export_sync_file(DMA_BUF_SYNC_WRITE).unwrap();
    assert!(!sync_file_busy(&read_fd) && sync_file_busy(&write_fd));
    fence.signal().unwrap();
    assert!(!sync_file_busy(&read_fd) && !sync_file_busy(&write_fd));

    let fence = vgem_fence_attach(&buf, true).expect("no conflicting fence");
    let read_fd = buf.export_sync_file(DMA_BUF_SYNC_READ).unwrap();
    let write_fd = buf.export_sync_file(DMA_BUF_SYNC_WRITE).unwrap();
    assert!(sync_file_busy(&read_fd) && sync_file_busy(&write_fd));
    fence.signal().unwrap();
    assert!(!sync_file_busy(&read_fd) && !sync_file_busy(&write_fd));
}

/// igt dmabuf_sync_file.c `test_export_multiwait`: the export waits for both fences it
/// saw and not for one attached after it.
#[test]
fn igt_dmabuf_sync_file_export_multiwait() {
    let buf = buffer();
    let fence1 = vgem_fence_attach(&buf, false).expect("no conflicting fence");
    let fence2 = vgem_fence_attach(&buf, false).expect("readers do not conflict");
    let sync_file = buf.export_sync_file(DMA_BUF_SYNC_WRITE).unwrap();
    let fence3 = vgem_fence_attach(&buf, false).expect("readers do not conflict");
    assert!(sync_file_busy(&sync_file));
    fence1.signal().unwrap();
    assert!(sync_file_busy(&sync_file));
    fence2.signal().unwrap();
    assert!(!sync_file_busy(&sync_file));
    fence3.signal().unwrap();
}

/// igt dmabuf_sync_file.c `test_export_wait_after_attach`: a sync file is a snapshot of
/// the fences at export, and does not wait for fences attached after it.
#[test]
fn igt_dmabuf_sync_file_export_wait_after_attach() {
    let buf = buffer();
    let read_sync_file = buf.export_sync_file(DMA_BUF_SYNC_READ).unwrap();
    let write_sync_file = buf.export_sync_file(DMA_BUF_SYNC_WRITE).unwrap();
    let fence1 = vgem_fence_attach(&buf, true).expect("no conflicting fence");
    assert!(!sync_file_busy(&read_sync_file) && !sync_file_busy(&write_sync_file));
    // These wait on fence1.
    let read_sync_file = buf.export_sync_file(DMA_BUF_SYNC_READ).unwrap();
    let write_sync_file = buf.export_sync_file(DMA_BUF_SYNC_WRITE).unwrap();
    assert!(sync_file_busy(&read_sync_file) && sync_file_busy(&write_sync_file));
    assert!(vgem_fence_attach(&buf, true).is_none(), "vgem refuses a writer while fence1 is pending");
    fence1.signal().unwrap();
    let fence2 = vgem_fence_attach(&buf, true).expect("fence1 has signalled");
    // fence1 has signalled.
    assert!(!sync_file_busy(&read_sync_file) && !sync_file_busy(&write_sync_file));
    // fence2 has not.
    assert!(dmabuf_sync_file_busy(&buf, DMA_BUF_SYNC_READ));
    assert!(dmabuf_sync_file_busy(&buf, DMA_BUF_SYNC_WRITE));
    fence2.signal().unwrap();
}

/// igt dmabuf_sync_file.c `test_import_basic`: points of one `sw_sync` timeline imported
/// as a read, a write and a read-write fence, each busy until the timeline reaches it.
#[test]
fn igt_dmabuf_sync_file_import_basic() {
    let buf = buffer();
    assert!(!dmabuf_busy(&buf, DMA_BUF_SYNC_READ) && !dmabuf_busy(&buf, DMA_BUF_SYNC_WRITE));
    let timeline = SyncTimeline::new("import_basic");
    dmabuf_import_timeline_fence(&buf, DMA_BUF_SYNC_READ, &timeline, 1);
    assert_busy(&buf, false, true);
    timeline.inc(1);
    assert_busy(&buf, false, false);
    dmabuf_import_timeline_fence(&buf, DMA_BUF_SYNC_WRITE, &timeline, 2);
    assert_busy(&buf, true, true);
    timeline.inc(1);
    assert_busy(&buf, false, false);
    dmabuf_import_timeline_fence(&buf, DMA_BUF_SYNC_RW, &timeline, 3);
    assert_busy(&buf, true, true);
    timeline.inc(1);
    assert_busy(&buf, false, false);
}

/// igt dmabuf_sync_file.c `test_import_multiple`: 32 read fences (and a write fence with
/// `write`) from as many timelines; they block writers, and readers only if there is a
/// writer; signalled one by one from the last.
fn import_multiple(write: bool) {
    let buf = buffer();
    assert!(!dmabuf_busy(&buf, DMA_BUF_SYNC_READ) && !dmabuf_busy(&buf, DMA_BUF_SYNC_WRITE));
    let read_timelines: Vec<SyncTimeline> = (0..32).map(|i| SyncTimeline::new(&format!("read{i}"))).collect();
    for tl in &read_timelines {
        dmabuf_import_timeline_fence(&buf, DMA_BUF_SYNC_READ, tl, 1);
    }
    let write_timeline = SyncTimeline::new("write");
    if write {
        dmabuf_import_timeline_fence(&buf, DMA_BUF_SYNC_WRITE, &write_timeline, 1);
    }
    let read_sync_file = buf.export_sync_file(DMA_BUF_SYNC_READ).unwrap();
    let write_sync_file = buf.export_sync_file(DMA_BUF_SYNC_WRITE).unwrap();
    for tl in read_timelines.iter().rev() {
        assert_eq!(dmabuf_busy(&buf, DMA_BUF_SYNC_READ), write);
        assert_eq!(sync_file_busy(&read_sync_file), write);
        assert!(dmabuf_busy(&buf, DMA_BUF_SYNC_WRITE));
        assert!(sync_file_busy(&write_sync_file));
        tl.inc(1);
    }
    assert_eq!(dmabuf_busy(&buf, DMA_BUF_SYNC_READ), write);
    assert_eq!(sync_file_busy(&read_sync_file), write);
    assert_eq!(dmabuf_busy(&buf, DMA_BUF_SYNC_WRITE), write);
    assert_eq!(sync_file_busy(&write_sync_file), write);
    if write {
        write_timeline.inc(1);
    }
    assert!(!dmabuf_busy(&buf, DMA_BUF_SYNC_READ) && !sync_file_busy(&read_sync_file));
    assert!(!dmabuf_busy(&buf, DMA_BUF_SYNC_WRITE) && !sync_file_busy(&write_sync_file));
}

/// igt dmabuf_sync_file.c subtest `import-multiple-read-only`.
#[test]
fn igt_dmabuf_sync_file_import_multiple_read_only() {
    import_multiple(false);
}

/// igt dmabuf_sync_file.c subtest `import-multiple-read-write`.
#[test]
fn igt_dmabuf_sync_file_import_multiple_read_write() {
    import_multiple(true);
}
