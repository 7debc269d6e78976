//! Fences on a `DmaBuf`: `DMA_BUF_IOCTL_EXPORT_SYNC_FILE` / `IMPORT_SYNC_FILE` and `poll`
//! with the semantics of the kernel's `dma-buf.c`, and CPU brackets that wait for the
//! fences they must (`dma_buf_begin_cpu_access` → `dma_resv_wait_timeout`).

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
