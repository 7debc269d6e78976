//! No fd is left open: every path, successful or failing, through every part of the API,
//! ends with the same `/proc/self/fd` count it started with. A test binary of its own, so
//! that no other test opens fds meanwhile.

mod common;

use std::os::fd::OwnedFd;
use std::time::Duration;

use common::{open_fds, system_heap, vgem};
use dmabuf_linux::{
    CMA_HEAP_NAMES, DmaBuf, Error, FdFlags, HeapFlags, Heaps, Memfd, Seals, SwSyncTimeline, SyncFile, SyncFlags,
    Udmabuf, UdmabufItem, page_size,
};

fn everything_once() {
    let page = page_size();
    // Heaps: listing, a missing heap, a heap, allocation, an allocation refused.
    let heaps = Heaps::new();
    heaps.names().expect("names");
    assert!(matches!(heaps.open("nope"), Err(Error::HeapNotFound { .. })));
    let _ = heaps.open_any(&CMA_HEAP_NAMES);
    let heap = system_heap();
    assert!(heap.allocate(0).is_err());
    assert!(heap.allocate(usize::MAX - 1).is_err());
    let buf = heap.allocate(2 * page as usize).expect("alloc");
    assert!(heap.allocate_with(page as usize, FdFlags::from_bits_retain(!0), HeapFlags::NONE).is_err());
    let ro = heap.allocate_with(page as usize, FdFlags::RDONLY | FdFlags::CLOEXEC, HeapFlags::NONE).expect("ro");

    // Mapping and guards, with refusals.
    {
        let mut map = buf.mmap().expect("mmap");
        assert!(buf.mmap().is_err());
        map.write().expect("write").fill(1);
        map.read_range(0..10).expect("read").end().expect("end");
        assert!(map.read_range(0..usize::MAX).is_err());
        let rmap = ro.mmap().expect("ro mmap");
        drop((rmap, map));
        let part = buf.mmap_range(page as usize, page as usize).expect("mmap of the second page");
        assert!(buf.mmap_range(page as usize, 2 * page as usize).is_err());
        drop(part);
    }
    buf.set_name("leak-check").expect("name");
    assert!(buf.set_name(&"x".repeat(40)).is_err());
    buf.fdinfo().expect("fdinfo");

    // Foreign fds: a dup, and fds that are not what they claim.
    let dup = DmaBuf::import(std::os::fd::AsFd::as_fd(&buf)).expect("import");
    drop(dup);
    let memfd = rustix::fs::memfd_create("x", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd");
    let memfd2 = rustix::io::fcntl_dupfd_cloexec(&memfd, 0).expect("dup");
    assert!(DmaBuf::from_owned(memfd).is_err());
    assert!(SyncFile::from_owned(memfd2).is_err());

    // Sync files: export, merge, info, wait, deadline, import; with vgem fences.
    let vgem = vgem();
    let h = vgem.import(&buf).expect("vgem import");
    let fence = vgem.attach_fence(&h, true).expect("fence");
    let a = buf.export_sync_file(SyncFlags::Write).expect("export");
    let b = ro.export_sync_file(SyncFlags::Read).expect("export");
    let m = a.merge("m", &b).expect("merge");
    assert!(a.merge(&"y".repeat(40), &b).is_err());
    m.info().expect("info");
    m.wait(Some(Duration::ZERO)).expect("wait");
    m.set_deadline(dmabuf_linux::monotonic_now()).expect("deadline");
    ro.import_sync_file(SyncFlags::Read, &m).expect("import");
    buf.poll(SyncFlags::ReadWrite, Some(Duration::ZERO)).expect("poll");
    let fd: OwnedFd = m.into();
    let m = SyncFile::from_owned(fd).expect("a sync file");
    fence.signal().expect("signal");
    m.wait(Some(Duration::from_secs(5))).expect("wait");
    assert!(vgem.attach_fence(&h, true).is_ok()); // signaled again on drop
    let (dumb, _) = vgem.create_dumb(16, 16, 32).expect("dumb");
    let exported = vgem.export(&dumb).expect("export");
    drop((exported, dumb, h));
    let _ = SwSyncTimeline::open().map(|t| t.create_fence("f", 1).map(drop));

    // udmabuf: success and every refusal.
    let dev = Udmabuf::open().expect("udmabuf");
    let good = Memfd::create("good", 2 * page).expect("memfd");
    let unsealed = Memfd::create_unsealed("unsealed", page).expect("memfd");
    let sealed = Memfd::create("sealed", page).expect("memfd");
    sealed.add_seals(Seals::WRITE).expect("seal");
    let null = Memfd::from_owned(OwnedFd::from(std::fs::File::open("/dev/null").expect("null")));
    drop(dev.create(&good, 0, 2 * page).expect("udmabuf"));
    drop(
        dev.create_list(&[
            UdmabufItem { memfd: &good, offset: 0, size: page },
            UdmabufItem { memfd: &good, offset: page, size: page },
        ])
        .expect("list"),
    );
    assert!(dev.create(&good, 1, page).is_err());
    assert!(dev.create(&good, 0, 3 * page).is_err());
    assert!(dev.create(&unsealed, 0, page).is_err());
    assert!(dev.create(&sealed, 0, page).is_err());
    assert!(dev.create(&null, 0, page).is_err());
    // Refusals that only the kernel makes: through the raw layer.
    let raw = dmabuf_linux::sys::UdmabufCreate {
        memfd: u32::MAX,
        flags: dmabuf_linux::sys::UDMABUF_FLAGS_CLOEXEC,
        offset: 0,
        size: page,
    };
    assert!(dmabuf_linux::sys::udmabuf_create(std::os::fd::AsFd::as_fd(&dev), &raw).is_err());
}

#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn no_fd_is_left_open() {
    let before = open_fds();
    for _ in 0..3 {
        everything_once();
    }
    let after = open_fds();
    assert_eq!(before, after, "fds leaked: {before} open before, {after} after");
}
