//! udmabuf on a real kernel, after tools/testing/selftests/drivers/dma-buf/udmabuf.c: the
//! buffer aliases its memfd, and what the typed checks refuse the kernel refuses too.

mod common;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use common::vgem;
use dmabuf_linux::{
    Errno, Error, Memfd, MemfdKind, Seals, SyncFlags, Udmabuf, UdmabufItem, page_size, sys, udmabuf_limits,
};

fn udmabuf() -> Udmabuf {
    Udmabuf::open().unwrap_or_else(|e| panic!("{e} ({})", common::NEEDS))
}

fn item(memfd: &Memfd, offset: u64, size: u64) -> UdmabufItem<'_> {
    UdmabufItem { memfd, offset, size }
}

fn raw_create(dev: &Udmabuf, memfd: &impl AsFd, offset: u64, size: u64) -> Result<OwnedFd, Errno> {
    let create =
        sys::UdmabufCreate { memfd: memfd.as_fd().as_raw_fd() as u32, flags: sys::UDMABUF_FLAGS_CLOEXEC, offset, size };
    sys::udmabuf_create(dev.as_fd(), &create)
}

#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn a_udmabuf_aliases_its_memfd() {
    let page = page_size();
    let dev = udmabuf();
    let memfd = Memfd::create("udmabuf-test", 4 * page).expect("memfd");
    memfd.write_at(page, b"through the memfd").expect("pwrite");
    let buf = dev.create(&memfd, 0, 4 * page).expect("UDMABUF_CREATE");
    assert_eq!(buf.size() as u64, 4 * page);
    assert_eq!(buf.fdinfo().expect("fdinfo").exp_name, "udmabuf");
    let mut map = buf.mmap().expect("mmap");
    {
        let r = map.read().expect("read");
        assert_eq!(&r[page as usize..page as usize + 17], b"through the memfd");
    }
    {
        let mut w = map.write_range(2 * page as usize..3 * page as usize).expect("write");
        w[..16].copy_from_slice(b"through the dmab");
    }
    let mut back = [0u8; 16];
    memfd.read_at(2 * page, &mut back).expect("pread");
    assert_eq!(&back, b"through the dmab");

    // A sub-range of the memfd: page 1 of the memfd is page 0 of the buffer.
    let sub = dev.create(&memfd, page, page).expect("sub-range");
    let m = sub.mmap().expect("mmap");
    assert_eq!(&m.read().expect("read")[..17], b"through the memfd");
}

#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn the_list_form_concatenates_ranges_in_order() {
    let page = page_size();
    let dev = udmabuf();
    let a = Memfd::create("a", 2 * page).expect("a");
    let b = Memfd::create("b", 2 * page).expect("b");
    a.write_at(0, &vec![b'a'; 2 * page as usize]).expect("fill a");
    b.write_at(0, &vec![b'b'; 2 * page as usize]).expect("fill b");
    let buf = dev.create_list(&[item(&b, page, page), item(&a, 0, 2 * page)]).expect("UDMABUF_CREATE_LIST");
    assert_eq!(buf.size() as u64, 3 * page);
    let map = buf.mmap().expect("mmap");
    let r = map.read().expect("read");
    let p = page as usize;
    assert!(r[..p].iter().all(|&x| x == b'b'));
    assert!(r[p..].iter().all(|&x| x == b'a'));
}

/// Each refusal of the typed checks, next to the kernel's answer to the same request made
/// raw: both refuse.
#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn the_kernel_refuses_what_the_checks_refuse() {
    let page = page_size();
    let dev = udmabuf();
    let good = Memfd::create("good", 4 * page).expect("memfd");

    // selftest test-1: offset not page aligned.
    assert!(matches!(dev.create(&good, page / 2, page), Err(Error::UdmabufOffsetNotAligned { .. })));
    assert_eq!(raw_create(&dev, &good, page / 2, page).map(drop), Err(Errno::EINVAL));
    // selftest test-2: size not a multiple of the page size.
    assert!(matches!(dev.create(&good, 0, page / 2), Err(Error::UdmabufSizeNotAligned { .. })));
    assert_eq!(raw_create(&dev, &good, 0, page / 2).map(drop), Err(Errno::EINVAL));
    // Empty.
    assert!(matches!(dev.create(&good, 0, 0), Err(Error::UdmabufEmpty)));
    assert_eq!(raw_create(&dev, &good, 0, 0).map(drop), Err(Errno::EINVAL));
    // selftest test-3: not a memfd (check_memfd_seals: EBADFD).
    let null = Memfd::from_owned(OwnedFd::from(std::fs::File::open("/dev/null").expect("null")));
    let e = dev.create(&null, 0, page).map(drop).expect_err("not a memfd");
    assert!(matches!(e, Error::UdmabufNotMemfd { index: 0 }));
    assert_eq!(raw_create(&dev, &null, 0, page).map(drop).map_err(Some), Err(e.errno()));
    // No F_SEAL_SHRINK.
    let unsealed = Memfd::create_unsealed("unsealed", page).expect("memfd");
    assert!(matches!(dev.create(&unsealed, 0, page), Err(Error::UdmabufMissingShrinkSeal { index: 0 })));
    assert_eq!(raw_create(&dev, &unsealed, 0, page).map(drop), Err(Errno::EINVAL));
    // F_SEAL_WRITE.
    let sealed = Memfd::create("write-sealed", page).expect("memfd");
    sealed.add_seals(Seals::WRITE).expect("seal");
    assert!(matches!(dev.create(&sealed, 0, page), Err(Error::UdmabufWriteSealed { index: 0, .. })));
    assert_eq!(raw_create(&dev, &sealed, 0, page).map(drop), Err(Errno::EINVAL));
    // Past the end of the memfd.
    assert!(matches!(dev.create(&good, 2 * page, 4 * page), Err(Error::UdmabufPastEnd { .. })));
    let raw = raw_create(&dev, &good, 2 * page, 4 * page).map(drop);
    println!("kernel answer for a range past the end: {raw:?}");
    assert!(raw.is_err());
    // Over size_limit_mb.
    let limits = dev.limits();
    let huge = Memfd::create("huge", limits.max_size + page).expect("sparse memfd");
    assert!(matches!(dev.create(&huge, 0, limits.max_size + page), Err(Error::UdmabufTooLarge { .. })));
    assert_eq!(raw_create(&dev, &huge, 0, limits.max_size + page).map(drop), Err(Errno::EINVAL));
    // Over list_limit.
    let many: Vec<UdmabufItem<'_>> = (0..=limits.max_items).map(|_| item(&good, 0, page)).collect();
    assert!(matches!(dev.create_list(&many), Err(Error::UdmabufTooManyItems { .. })));
    let raw_items: Vec<sys::UdmabufCreateItem> = many
        .iter()
        .map(|_| sys::UdmabufCreateItem { memfd: good.as_fd().as_raw_fd() as u32, pad: 0, offset: 0, size: page })
        .collect();
    assert_eq!(
        sys::udmabuf_create_list(dev.as_fd(), sys::UDMABUF_FLAGS_CLOEXEC, &raw_items).map(drop),
        Err(Errno::EINVAL)
    );
    // And the valid request (selftest test-4) works both ways.
    drop(raw_create(&dev, &good, 0, 4 * page).expect("raw valid"));
    drop(dev.create(&good, 0, 4 * page).expect("typed valid"));
    assert_eq!(limits, udmabuf_limits());
}

#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn a_udmabuf_is_imported_and_fenced_like_any_dma_buf() {
    let page = page_size();
    let dev = udmabuf();
    let memfd = Memfd::create("fenced", page).expect("memfd");
    let buf = dev.create(&memfd, 0, page).expect("create");
    let vgem = vgem();
    let h = vgem.import(&buf).expect("import");
    let fence = vgem.attach_fence(&h, true).expect("fence");
    assert!(!buf.poll(SyncFlags::Read, Some(std::time::Duration::ZERO)).expect("poll").readable);
    fence.signal().expect("signal");
    let mut map = buf.mmap().expect("mmap");
    map.write().expect("write")[0] = 9;
    let mut b = [0u8; 1];
    memfd.read_at(0, &mut b).expect("pread");
    assert_eq!(b[0], 9);
}

/// check_memfd_seals: F_SEAL_SHRINK wanted, F_SEAL_WRITE and F_SEAL_FUTURE_WRITE denied,
/// each refused by the checks with EINVAL exactly as the kernel refuses the raw request.
#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn check_memfd_seals_wants_shrink_and_denies_the_write_seals() {
    let page = page_size();
    let dev = udmabuf();
    for (seals, refused) in [
        (Seals::NONE, true),
        (Seals::SHRINK, false),
        (Seals::SHRINK | Seals::GROW, false),
        (Seals::SHRINK | Seals::WRITE, true),
        (Seals::SHRINK | Seals::FUTURE_WRITE, true),
    ] {
        let memfd = Memfd::create_unsealed("seals", page).expect("memfd");
        memfd.add_seals(seals).expect("seal");
        let typed = dev.create(&memfd, 0, page).map(drop);
        let raw = raw_create(&dev, &memfd, 0, page).map(drop);
        assert_eq!(typed.is_err(), refused, "{seals:?}: {typed:?}");
        assert_eq!(raw.is_err(), refused, "{seals:?}: the kernel says {raw:?}");
        if let Err(e) = typed {
            assert_eq!(Err(e.errno().expect("an errno")), raw, "{seals:?}: {e}");
        }
    }
}

/// The udmabuf selftest's list test (test-5): four items of four pages each, spread over
/// one memfd, make one buffer whose pages are the memfd's, in the items' order.
#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn udmabuf_create_list_of_one_memfd() {
    let page = page_size();
    let dev = udmabuf();
    let size = 64 * page;
    let memfd = Memfd::create("list", size).expect("memfd");
    for i in 0..size / page {
        memfd.write_at(i * page, &[i as u8]).expect("pwrite");
    }
    let items: Vec<UdmabufItem<'_>> = (0..4).map(|i| item(&memfd, i * (size / 4), 4 * page)).collect();
    let buf = dev.create_list(&items).expect("UDMABUF_CREATE_LIST");
    assert_eq!(buf.size() as u64, 16 * page);
    let map = buf.mmap().expect("mmap");
    let r = map.read().expect("read");
    for k in 0..16u64 {
        let want = ((k / 4) * (size / 4 / page) + k % 4) as u8;
        assert_eq!(r[(k * page) as usize], want, "page {k} of the buffer");
    }
}

/// The udmabuf selftest's hugetlb test (test-6): a list over a hugetlb memfd, whose size
/// is whole 2 MiB pages as hugetlbfs requires (a size of part of a huge page is EINVAL,
/// hugetlbfs_setattr), while the items need only be whole small pages.
#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn udmabuf_create_list_of_a_hugetlb_memfd() {
    let page = page_size();
    let huge = dmabuf_linux::HUGETLB_PAGE_SIZE;
    reserve_huge_pages(8);
    // The kernel's rule, raw: a hugetlb file is sized in whole huge pages.
    let raw = rustix::fs::memfd_create("raw", rustix::fs::MemfdFlags::HUGETLB | rustix::fs::MemfdFlags::CLOEXEC)
        .expect("memfd_create(MFD_HUGETLB)");
    assert_eq!(rustix::fs::ftruncate(&raw, page), Err(rustix::io::Errno::INVAL), "hugetlbfs_setattr");
    // The API rounds up to whole huge pages.
    let dev = udmabuf();
    let memfd = Memfd::create_with("hugetlb", huge + 1, MemfdKind::Hugetlb, Seals::SHRINK).expect("hugetlb memfd");
    assert_eq!(memfd.size().expect("size"), 2 * huge);
    let memfd = Memfd::create_with("hugetlb", 4 * huge, MemfdKind::Hugetlb, Seals::SHRINK).expect("hugetlb memfd");
    // hugetlbfs has no write(2): the bytes go in through a mapping.
    assert!(matches!(memfd.write_at(0, b"x"), Err(Error::Os { errno: Errno::EINVAL, .. })));
    let items: Vec<UdmabufItem<'_>> = (0..4).map(|i| item(&memfd, i * huge + page, 4 * page)).collect();
    let buf = dev.create_list(&items).expect("UDMABUF_CREATE_LIST of hugetlb pages");
    assert_eq!(buf.size() as u64, 16 * page);
    {
        let mut map = buf.mmap().expect("mmap");
        let mut w = map.write().expect("write");
        for k in 0..16 {
            w[k * page as usize] = 0xa0 + k as u8;
        }
    }
    for k in 0..16u64 {
        let mut b = [0u8; 1];
        memfd.read_at((k / 4) * huge + page + (k % 4) * page, &mut b).expect("pread");
        assert_eq!(b[0], 0xa0 + k as u8, "page {k}");
    }
}

/// Makes sure the hugetlb pool holds at least `n` huge pages (the guest runs as root).
fn reserve_huge_pages(n: u64) {
    const POOL: &str = "/proc/sys/vm/nr_hugepages";
    let have: u64 = std::fs::read_to_string(POOL).expect(POOL).trim().parse().expect("a number");
    if have < n {
        std::fs::write(POOL, format!("{n}\n")).unwrap_or_else(|e| panic!("{POOL}: {e} ({})", common::NEEDS));
    }
}

/// udmabuf's refusals as the generic program of `dmabuf_uapi::conformance` checks them,
/// the same functions the simulated backend's tests run.
#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn the_kernels_udmabuf_refusals_are_the_linux_backends() {
    assert_eq!(dmabuf_uapi::conformance::udmabuf_refusals(&udmabuf()), Ok(()));
}

/// udmabuf selftest test-3 and check_memfd_seals: a file that is neither shmem nor
/// hugetlbfs (here /dev/zero) is EBADFD, from the kernel and from the checks.
#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn udmabuf_create_refuses_a_file_that_is_not_a_memfd() {
    let page = page_size();
    let dev = udmabuf();
    let zero = Memfd::from_owned(OwnedFd::from(std::fs::File::open("/dev/zero").expect("/dev/zero")));
    assert_eq!(zero.seals().expect("F_GET_SEALS"), None);
    let e = dev.create_list(&[item(&zero, 0, page)]).map(drop).expect_err("not a memfd");
    assert!(matches!(e, Error::UdmabufNotMemfd { index: 0 }), "{e:?}");
    assert_eq!(e.errno(), Some(Errno::EBADFD));
    assert_eq!(raw_create(&dev, &zero, 0, page).map(drop), Err(Errno::EBADFD));
}
