//! udmabuf on a real kernel, after tools/testing/selftests/drivers/dma-buf/udmabuf.c: the
//! buffer aliases its memfd, and what the typed checks refuse the kernel refuses too.

mod common;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use common::vgem;
use dmabuf_linux::{Errno, Error, Memfd, SyncFlags, Udmabuf, UdmabufItem, UdmabufLimits, page_size, sys};
use rustix::fs::SealFlags;

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
    assert_eq!(raw_create(&dev, &good, page / 2, page).map(drop), Err(Errno::INVAL));
    // selftest test-2: size not a multiple of the page size.
    assert!(matches!(dev.create(&good, 0, page / 2), Err(Error::UdmabufSizeNotAligned { .. })));
    assert_eq!(raw_create(&dev, &good, 0, page / 2).map(drop), Err(Errno::INVAL));
    // Empty.
    assert!(matches!(dev.create(&good, 0, 0), Err(Error::UdmabufEmpty)));
    assert_eq!(raw_create(&dev, &good, 0, 0).map(drop), Err(Errno::INVAL));
    // selftest test-3: not a memfd.
    let null = Memfd::from_owned(OwnedFd::from(std::fs::File::open("/dev/null").expect("null")));
    assert!(matches!(dev.create(&null, 0, page), Err(Error::UdmabufNotMemfd { index: 0 })));
    let raw = raw_create(&dev, &null, 0, page).map(drop);
    println!("kernel answer for a non-memfd: {raw:?}");
    assert!(raw.is_err());
    // No F_SEAL_SHRINK.
    let unsealed = Memfd::create_unsealed("unsealed", page).expect("memfd");
    assert!(matches!(dev.create(&unsealed, 0, page), Err(Error::UdmabufMissingShrinkSeal { index: 0 })));
    assert_eq!(raw_create(&dev, &unsealed, 0, page).map(drop), Err(Errno::INVAL));
    // F_SEAL_WRITE.
    let sealed = Memfd::create("write-sealed", page).expect("memfd");
    sealed.add_seals(SealFlags::WRITE).expect("seal");
    assert!(matches!(dev.create(&sealed, 0, page), Err(Error::UdmabufWriteSealed { index: 0 })));
    assert_eq!(raw_create(&dev, &sealed, 0, page).map(drop), Err(Errno::INVAL));
    // Past the end of the memfd.
    assert!(matches!(dev.create(&good, 2 * page, 4 * page), Err(Error::UdmabufPastEnd { .. })));
    let raw = raw_create(&dev, &good, 2 * page, 4 * page).map(drop);
    println!("kernel answer for a range past the end: {raw:?}");
    assert!(raw.is_err());
    // Over size_limit_mb.
    let limits = dev.limits();
    let huge = Memfd::create("huge", limits.max_size + page).expect("sparse memfd");
    assert!(matches!(dev.create(&huge, 0, limits.max_size + page), Err(Error::UdmabufTooLarge { .. })));
    assert_eq!(raw_create(&dev, &huge, 0, limits.max_size + page).map(drop), Err(Errno::INVAL));
    // Over list_limit.
    let many: Vec<UdmabufItem<'_>> = (0..=limits.max_items).map(|_| item(&good, 0, page)).collect();
    assert!(matches!(dev.create_list(&many), Err(Error::UdmabufTooManyItems { .. })));
    let raw_items: Vec<sys::UdmabufCreateItem> = many
        .iter()
        .map(|_| sys::UdmabufCreateItem { memfd: good.as_fd().as_raw_fd() as u32, pad: 0, offset: 0, size: page })
        .collect();
    assert_eq!(
        sys::udmabuf_create_list(dev.as_fd(), sys::UDMABUF_FLAGS_CLOEXEC, &raw_items).map(drop),
        Err(Errno::INVAL)
    );
    // And the valid request (selftest test-4) works both ways.
    drop(raw_create(&dev, &good, 0, 4 * page).expect("raw valid"));
    drop(dev.create(&good, 0, 4 * page).expect("typed valid"));
    assert_eq!(limits, UdmabufLimits::from_sysfs());
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
