//! dma-buf heaps and the guarded mapping on a real kernel, after
//! tools/testing/selftests/dmabuf-heaps/dmabuf-heap.c.

mod common;

use std::os::fd::AsFd;

use common::{system_heap, vgem};
use dmabuf_linux::{CMA_HEAP_NAMES, DmaBuf, Errno, Error, FdFlags, HeapFlags, Heaps, Op, SyncFlags, page_size, sys};

const ONE_MEG: usize = 1 << 20;

#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn heaps_are_discovered_and_missing_ones_named() {
    let heaps = Heaps::new();
    let names = heaps.names().expect("list /dev/dma_heap");
    assert!(names.iter().any(|n| n == "system"), "{names:?}");
    match heaps.open("no-such-heap") {
        Err(Error::HeapNotFound { available, .. }) => assert_eq!(available, names),
        other => panic!("{other:?}"),
    }
    // A CMA heap is found under whichever name this kernel uses, or the error says which
    // heaps exist instead.
    match heaps.open_any(&CMA_HEAP_NAMES) {
        Ok(h) => assert!(CMA_HEAP_NAMES.contains(&h.name())),
        Err(Error::HeapNotFound { available, .. }) => {
            assert!(!available.iter().any(|n| CMA_HEAP_NAMES.contains(&n.as_str())));
            println!("no CMA heap on this kernel; heaps: {available:?}");
        }
        Err(e) => panic!("{e}"),
    }
}

/// dmabuf-heap.c test_alloc_and_import: allocate, map, write under the bracket, import
/// into vgem, bracket again.
#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn allocation_mapping_and_import() {
    let heap = system_heap();
    let buf = heap.allocate(ONE_MEG).expect("allocate");
    assert_eq!(buf.size(), ONE_MEG);
    assert!(buf.is_writable());
    let info = buf.fdinfo().expect("fdinfo");
    assert_eq!(info.size, ONE_MEG as u64);
    assert_eq!(info.exp_name, "system");

    let mut map = buf.mmap().expect("mmap");
    assert_eq!(map.len(), ONE_MEG);
    {
        let mut w = map.write().expect("SYNC_START|WRITE");
        assert_eq!(w.flags(), SyncFlags::Write);
        w[..ONE_MEG / 2].fill(1);
        w[ONE_MEG / 2..].fill(0);
    }

    // vgem attaches and maps the buffer, so the heap's CPU-access hooks now have a device
    // to sync for.
    let vgem = vgem();
    let handle = vgem.import(&buf).expect("PRIME_FD_TO_HANDLE");
    {
        let r = map.read().expect("SYNC_START|READ");
        assert!(r[..ONE_MEG / 2].iter().all(|&b| b == 1));
        assert!(r[ONE_MEG / 2..].iter().all(|&b| b == 0));
    }
    {
        let mut rw = map.read_write().expect("SYNC_START|RW");
        assert_eq!(rw.flags(), SyncFlags::ReadWrite);
        rw.fill(0xff);
        rw.end().expect("SYNC_END|RW");
    }
    let r = map.read().expect("read");
    assert!(r.iter().all(|&b| b == 0xff));
    r.end().expect("SYNC_END|READ");
    drop(handle);
}

/// dmabuf-heap.c test_alloc_zeroed: memory handed back and allocated again is zero.
#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn memory_is_zeroed_on_reallocation() {
    let heap = system_heap();
    for size in [4096, ONE_MEG] {
        let bufs: Vec<DmaBuf> = (0..32).map(|_| heap.allocate(size).expect("alloc")).collect();
        for b in &bufs {
            let mut m = b.mmap().expect("mmap");
            m.write().expect("write").fill(0xff);
        }
        drop(bufs);
        let bufs: Vec<DmaBuf> = (0..32).map(|_| heap.allocate(size).expect("alloc")).collect();
        for b in &bufs {
            let m = b.mmap().expect("mmap");
            let r = m.read().expect("read");
            assert!(r.iter().all(|&x| x == 0), "a reallocated {size}-byte buffer is not zero");
        }
    }
}

/// dmabuf-heap.c test_alloc_errors, plus the flag checks of the other dma-buf ioctls:
/// what the typed API cannot express, the kernel refuses.
#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn bad_flags_are_refused() {
    let heap = system_heap();
    let rdwr_cloexec = (rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC).bits();
    // Invalid heap flags (no heap defines any).
    assert_eq!(sys::dma_heap_alloc(heap.as_fd(), ONE_MEG as u64, rdwr_cloexec, 0x111111).map(drop), Err(Errno::EINVAL));
    // Invalid fd flags.
    assert_eq!(sys::dma_heap_alloc(heap.as_fd(), ONE_MEG as u64, !rdwr_cloexec, 0).map(drop), Err(Errno::EINVAL));
    // Zero length: the kernel says EINVAL, the API says why first, with the same errno.
    assert_eq!(sys::dma_heap_alloc(heap.as_fd(), 0, rdwr_cloexec, 0).map(drop), Err(Errno::EINVAL));
    let e = heap.allocate(0).map(drop).expect_err("empty");
    assert!(matches!(e, Error::ZeroSize));
    assert_eq!(e.errno(), Some(Errno::EINVAL));
    // An fd that is not a heap does not know the ioctl.
    let memfd = rustix::fs::memfd_create("x", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd");
    assert_eq!(sys::dma_heap_alloc(memfd.as_fd(), 4096, rdwr_cloexec, 0).map(drop), Err(Errno::ENOTTY));

    let buf = heap.allocate(4096).expect("alloc");
    // DMA_BUF_IOCTL_SYNC: no direction, or unknown bits.
    for flags in [sys::DMA_BUF_SYNC_START, sys::DMA_BUF_SYNC_END, 1 << 3, 1 << 63] {
        assert_eq!(sys::dma_buf_sync(buf.as_fd(), flags), Err(Errno::EINVAL), "flags {flags:#x}");
    }
    // Export/import of sync files: the flags must be READ and/or WRITE.
    for flags in [0, 4, 0x100] {
        assert_eq!(sys::dma_buf_export_sync_file(buf.as_fd(), flags).map(drop), Err(Errno::EINVAL));
    }
    let sf = buf.export_sync_file(SyncFlags::Write).expect("export");
    assert_eq!(sys::dma_buf_import_sync_file(buf.as_fd(), 0, sf.as_fd()), Err(Errno::EINVAL));
    // Import of something that is not a sync file.
    assert_eq!(sys::dma_buf_import_sync_file(buf.as_fd(), 2, memfd.as_fd()), Err(Errno::EINVAL));
}

#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn read_only_buffers_map_read_only() {
    let heap = system_heap();
    let buf = heap.allocate_with(8192, FdFlags::RDONLY | FdFlags::CLOEXEC, HeapFlags::NONE).expect("alloc O_RDONLY");
    assert!(!buf.is_writable());
    let mut map = buf.mmap().expect("mmap PROT_READ");
    assert!(map.read().expect("read").iter().all(|&b| b == 0));
    assert!(matches!(map.write(), Err(Error::NotWritable)));
    assert!(matches!(map.read_write_range(0..1), Err(Error::NotWritable)));
}

#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn a_buffer_has_one_mapping_per_process() {
    let heap = system_heap();
    let buf = heap.allocate(4096).expect("alloc");
    let dup = DmaBuf::import(buf.as_fd()).expect("import a dup");
    assert_eq!(dup.inode(), buf.inode());
    assert_eq!(dup.size(), buf.size());
    let map = buf.mmap().expect("first mapping");
    assert!(matches!(buf.mmap(), Err(Error::AlreadyMapped { .. })));
    // Another fd of the same buffer is the same bytes.
    assert!(matches!(dup.mmap(), Err(Error::AlreadyMapped { .. })));
    drop(map);
    let mut map = dup.mmap().expect("after the first is gone");
    map.write().expect("write")[0] = 7;
    drop(map);
    let map = buf.mmap().expect("map again");
    assert_eq!(map.read().expect("read")[0], 7, "both fds are one buffer");
}

#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn names_show_in_fdinfo() {
    let heap = system_heap();
    let buf = heap.allocate(4096).expect("alloc");
    assert_eq!(buf.fdinfo().expect("fdinfo").name, None);
    buf.set_name("frame-0").expect("DMA_BUF_SET_NAME");
    assert_eq!(buf.fdinfo().expect("fdinfo").name.as_deref(), Some("frame-0"));
    buf.set_name(&"n".repeat(31)).expect("31 bytes fit");
    assert_eq!(buf.fdinfo().expect("fdinfo").name, Some("n".repeat(31)));
    assert!(matches!(buf.set_name(&"n".repeat(32)), Err(Error::NameTooLong { len: 32, max: 31, .. })));
}

#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn range_guards_see_their_part_only() {
    let heap = system_heap();
    let buf = heap.allocate(3 * 4096).expect("alloc");
    let mut map = buf.mmap().expect("mmap");
    {
        let mut w = map.write_range(4096..8192).expect("write page 1");
        assert_eq!(w.len(), 4096);
        w.fill(0x5a);
    }
    {
        // Two read guards at once are fine.
        let a = map.read_range(0..4096).expect("page 0");
        let b = map.read_range(4096..8192).expect("page 1");
        assert!(a.iter().all(|&x| x == 0));
        assert!(b.iter().all(|&x| x == 0x5a));
    }
    assert!(matches!(map.read_range(8192..12289), Err(Error::RangeOutOfBounds { len: 12288, .. })));
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = 10..5;
    assert!(matches!(map.write_range(reversed), Err(Error::RangeOutOfBounds { .. })));
    assert_eq!(map.read_range(12288..12288).expect("empty range").len(), 0);
}

#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn foreign_fds_are_checked_before_use() {
    let heap = system_heap();
    match DmaBuf::import(heap.as_fd()) {
        Err(Error::NotDmaBuf { magic }) => assert_ne!(magic, sys::DMA_BUF_MAGIC),
        other => panic!("a heap device is no dma-buf: {other:?}"),
    }
    let buf = heap.allocate(4096).expect("alloc");
    let fd: std::os::fd::OwnedFd = buf.into();
    let back = DmaBuf::from_owned(fd).expect("a dma-buf fd");
    assert_eq!(back.size(), 4096);
}

#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn a_vgem_export_is_a_dma_buf_too() {
    let vgem = vgem();
    let (handle, size) = vgem.create_dumb(64, 64, 32).expect("CREATE_DUMB");
    assert!(size >= 64 * 64 * 4);
    let buf = vgem.export(&handle).expect("PRIME_HANDLE_TO_FD");
    assert_eq!(buf.size() as u64, size);
    let mut map = buf.mmap().expect("mmap");
    map.write().expect("write")[..4].copy_from_slice(&[1, 2, 3, 4]);
    assert_eq!(&map.read().expect("read")[..4], &[1, 2, 3, 4]);
    // Importing our own export gives back the same GEM object.
    let again = vgem.import(&buf).expect("import own export");
    assert_eq!(again.handle(), handle.handle());
    std::mem::forget(again); // the same handle: close it once, through `handle`
}

#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn errors_name_the_ioctl() {
    let buf = system_heap().allocate(4096).expect("alloc");
    let vgem = vgem();
    let handle = vgem.import(&buf).expect("import");
    let _reader = vgem.attach_fence(&handle, false).expect("a reader's fence");
    // vgem refuses a writer's fence while a reader's is pending: the kernel's EBUSY,
    // named with the ioctl.
    let e = vgem.attach_fence(&handle, true).map(drop).expect_err("conflicting fence");
    assert!(matches!(&e, Error::Os { op: Op::DrmIoctlVgemFenceAttach, errno } if *errno == Errno::EBUSY), "{e:?}");
    assert_eq!(e.to_string(), "DRM_IOCTL_VGEM_FENCE_ATTACH failed: EBUSY (Device or resource busy)");
}

/// dma_heap_buffer_alloc: a length that wraps to 0 when rounded up to pages is EINVAL
/// (refused at once; a merely huge length would be allocated page by page until the OOM
/// killer came). The checks refuse it first with the same errno.
#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn dma_heap_buffer_alloc_refuses_a_length_that_wraps_to_zero() {
    let heap = system_heap();
    let flags = FdFlags::DEFAULT.bits();
    for len in [u64::MAX, u64::MAX - 1, u64::MAX - page_size() + 2] {
        assert_eq!(sys::dma_heap_alloc(heap.as_fd(), len, flags, 0).map(drop), Err(Errno::EINVAL), "{len}");
    }
    let e = heap.allocate(usize::MAX - 1).map(drop).expect_err("wraps");
    assert!(matches!(e, Error::LengthWraps { .. }), "{e:?}");
    assert_eq!((e.errno(), e.op()), (Some(Errno::EINVAL), Some(Op::DmaHeapIoctlAlloc)));
}

/// dma_heap_ioctl_allocate (and dmabuf-heap.c test_alloc_errors): the fd field must be 0,
/// fd_flags within O_ACCMODE | O_CLOEXEC, heap_flags empty; each EINVAL from the kernel,
/// and from the checks before the call.
#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn dma_heap_ioctl_allocate_refuses_invalid_flags() {
    let heap = system_heap();
    let len = ONE_MEG as u64;
    let data = sys::DmaHeapAllocationData { len, fd: 0, fd_flags: FdFlags::DEFAULT.bits(), heap_flags: 0 };
    drop(sys::dma_heap_alloc_data(heap.as_fd(), data).expect("the valid request"));
    assert_eq!(
        sys::dma_heap_alloc_data(heap.as_fd(), sys::DmaHeapAllocationData { fd: 7, ..data }).map(drop),
        Err(Errno::EINVAL)
    );
    for (fd_flags, heap_flags) in [
        (FdFlags::from_bits_retain(!FdFlags::DEFAULT.bits()), HeapFlags::NONE),
        (FdFlags::DEFAULT | FdFlags::from_bits_retain(0o4000), HeapFlags::NONE),
        (FdFlags::DEFAULT, HeapFlags::from_bits_retain(0x111111)),
        (FdFlags::DEFAULT, HeapFlags::from_bits_retain(1)),
    ] {
        let raw = sys::dma_heap_alloc(heap.as_fd(), len, fd_flags.bits(), heap_flags.bits()).map(drop);
        assert_eq!(raw, Err(Errno::EINVAL), "{fd_flags:?} {heap_flags:?}");
        let e = heap.allocate_with(ONE_MEG, fd_flags, heap_flags).map(drop).expect_err("refused");
        assert!(matches!(e, Error::FdFlags { .. } | Error::HeapFlags { .. }), "{e:?}");
        assert_eq!(e.errno(), Some(Errno::EINVAL));
    }
    // Every access mode is valid; a write-only buffer cannot be mapped (EACCES).
    let wronly = heap.allocate_with(4096, FdFlags::WRONLY | FdFlags::CLOEXEC, HeapFlags::NONE).expect("O_WRONLY");
    let e = wronly.mmap().map(drop).expect_err("a write-only fd cannot be mapped");
    assert!(matches!(e, Error::NotReadable));
    let raw = unsafe_free_mmap_answer(&wronly);
    assert_eq!(Some(raw), e.errno());
}

/// What the kernel answers to a shared mapping of the whole of `buf`, read-only.
fn unsafe_free_mmap_answer(buf: &DmaBuf) -> Errno {
    // A mapping that is refused creates nothing; one that succeeds is unmapped at once.
    // SAFETY: a fresh shared mapping chosen by the kernel overlaps nothing of ours.
    match unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            buf.size(),
            rustix::mm::ProtFlags::READ,
            rustix::mm::MapFlags::SHARED,
            buf,
            0,
        )
    } {
        Ok(p) => {
            // SAFETY: the mapping just made, unused.
            let _ = unsafe { rustix::mm::munmap(p, buf.size()) };
            panic!("the kernel mapped a write-only dma-buf")
        }
        Err(e) => sys::errno(e),
    }
}

/// dma_buf_mmap_internal: a mapping at an offset sees the buffer from there; one whose
/// pages reach past the buffer's end is EINVAL from the kernel, and from the checks first.
#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn dma_buf_mmap_internal_refuses_mappings_past_the_end() {
    let page = page_size() as usize;
    let buf = system_heap().allocate(4 * page).expect("alloc");
    {
        let mut map = buf.mmap().expect("mmap");
        let mut w = map.write().expect("write");
        for p in 0..4 {
            w[p * page] = p as u8 + 1;
        }
    }
    {
        let map = buf.mmap_range(2 * page, 2 * page).expect("the last two pages");
        assert_eq!(map.len(), 2 * page);
        let r = map.read().expect("read");
        assert_eq!((r[0], r[page]), (3, 4));
        assert!(matches!(map.read_range(0..2 * page + 1), Err(Error::RangeOutOfBounds { .. })));
    }
    for (offset, len) in [(0, 4 * page + 1), (page, 4 * page), (4 * page, 1)] {
        let e = buf.mmap_range(offset, len).map(drop).expect_err("past the end");
        assert!(matches!(e, Error::MmapPastEnd { .. }), "{offset}+{len}: {e:?}");
        // SAFETY: a fresh shared mapping chosen by the kernel overlaps nothing of ours; it
        // is unmapped at once if the kernel makes it.
        let raw = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ,
                rustix::mm::MapFlags::SHARED,
                &buf,
                offset as u64,
            )
        };
        if let Ok(p) = raw {
            // SAFETY: the mapping just made, unused.
            let _ = unsafe { rustix::mm::munmap(p, len) };
            panic!("the kernel mapped {len} bytes at {offset} of a {}-byte buffer", 4 * page);
        }
        assert_eq!(raw.map(drop).map_err(sys::errno), Err(Errno::EINVAL), "{offset}+{len}");
        assert_eq!(e.errno(), Some(Errno::EINVAL));
    }
    assert!(matches!(buf.mmap_range(1, page), Err(Error::MmapOffsetNotAligned { .. })));
}

/// The kernel's refusals as the generic program of `dmabuf_uapi::conformance` checks them,
/// the same functions the simulated backend's tests run: what the checks refuse, the
/// kernel refuses with the same errno (the raw answers are in the tests above).
#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn the_kernels_refusals_are_the_linux_backends() {
    let heap = system_heap();
    assert_eq!(dmabuf_uapi::conformance::heap_refusals(&heap, page_size() as usize), Ok(()));
}

/// Upstream has no `DMA_BUF_IOCTL_SYNC_PARTIAL` (`dma_buf_ioctl`'s `default:` case answers
/// `ENOTTY`): a ranged guard probes once, falls back to `DMA_BUF_IOCTL_SYNC` on the whole
/// buffer as Rockchip's MPP does (`mpp_dmabuf_sync_partial_begin`), and its bytes arrive;
/// an overwrite does the same.
#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn a_ranged_guard_falls_back_from_enotty_to_the_full_sync() {
    let heap = system_heap();
    let buf = heap.allocate(ONE_MEG).expect("allocate");
    // The ioctl itself, with valid flags and range: no such ioctl here.
    let flags = sys::DMA_BUF_SYNC_START | sys::DMA_BUF_SYNC_READ;
    assert_eq!(sys::dma_buf_sync_partial(buf.as_fd(), flags, 0, 4096), Err(Errno::ENOTTY));

    let mut map = buf.mmap().expect("mmap");
    assert_eq!(map.sync_partial_support(), None, "nothing asked yet");
    {
        let mut w = map.write_range(4096..8192).expect("ranged SYNC_START|WRITE, falling back");
        w.fill(0x5a);
    }
    assert_eq!(map.sync_partial_support(), Some(false), "the first ranged guard found ENOTTY");
    map.overwrite(8192, &[0xa5; 4096]).expect("overwrite, falling back");
    let r = map.read_range(0..12288).expect("ranged SYNC_START|READ");
    assert!(r[..4096].iter().all(|&b| b == 0), "the heap's zeros");
    assert!(r[4096..8192].iter().all(|&b| b == 0x5a));
    assert!(r[8192..].iter().all(|&b| b == 0xa5));
    drop(r);
    assert_eq!(map.overwrite_support(), None, "the flag never reached a kernel with the ioctl");
}
