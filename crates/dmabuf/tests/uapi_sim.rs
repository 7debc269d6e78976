//! The user API (crate `dmabuf-uapi`) on the simulated framework (`dmabuf::user`): heaps
//! under the kernel's names, guards that bracket every access with the sync ioctl, poll
//! and sync files that follow the fences of simulated device jobs, and the kernel's
//! refusals with the kernel's errnos (heap flags and lengths, mmap windows, udmabuf's
//! seals, files, items and hugetlb memfds), each test named after the kernel function or
//! selftest it mirrors. The frame_share program's runs are the tests of the
//! `frame_share_sim` example.

use std::ops::Range;
use std::time::Duration;

use dmabuf::uapi::{
    self, CpuAccess, Errno, FdFlags, FenceStatus, HUGETLB_PAGE_SIZE, HeapFlags, MemfdKind, MonotonicTime, Readiness,
    Seals, SyncFlags, WaitStatus,
};
use dmabuf::user::{CMA_HEAP_NAME, DmaBuf, Error, Heaps, Op, SyncFile, SyncIoctls, UdmabufItem};
use dmabuf::{HeapKind, MaintenancePolicy, Report, SyncTimeline, System, SystemConfig};
use dmabuf_sim::{Adversarial, Platform, Sim};

const NOW: Option<Duration> = Some(Duration::ZERO);
const PAGE: usize = 4096;

fn heaps(preset: &str) -> Heaps {
    Heaps::on(Sim::builder(Platform::preset(preset).expect("preset")).chooser(Adversarial).build())
}

fn alloc(h: &Heaps, len: usize) -> DmaBuf {
    h.open("system").expect("system heap").allocate(len).expect("allocate")
}

fn ready(readable: bool, writable: bool) -> Readiness {
    Readiness { readable, writable }
}

/// The `DMA_BUF_IOCTL_SYNC` and `_SYNC_PARTIAL` calls issued so far: (start?, flags,
/// range). A ranged guard's range is widened to 64-byte lines, as MPP widens it.
fn syncs(h: &Heaps) -> Vec<(bool, SyncFlags, Range<usize>)> {
    h.ioctls()
        .into_iter()
        .filter_map(|c| {
            let start = match c.op {
                Op::DmaBufIoctlSyncStart | Op::DmaBufIoctlSyncPartialStart => true,
                Op::DmaBufIoctlSyncEnd | Op::DmaBufIoctlSyncPartialEnd => false,
                _ => return None,
            };
            Some((start, c.flags.expect("sync flags"), c.range.expect("sync range")))
        })
        .collect()
}

fn unbracketed(h: &Heaps, write: bool) -> usize {
    h.reports().iter().filter(|r| matches!(r, Report::AccessOutsideBracket { write: w, .. } if *w == write)).count()
}

fn paint(buf: &DmaBuf, byte: u8) {
    let mut map = buf.mmap().expect("mmap");
    let mut w = map.write().expect("write guard");
    w.fill(byte);
    w.end().expect("end");
}

fn cpu_read(buf: &DmaBuf) -> Vec<u8> {
    let map = buf.mmap().expect("mmap");
    let r = map.read().expect("read guard");
    r.to_vec()
}

fn all(v: &[u8], b: u8) -> bool {
    v.iter().all(|&x| x == b)
}

#[test]
fn heaps_carry_the_kernels_names_and_a_missing_one_lists_those_that_exist() {
    let arm = heaps("arm64-noncoherent");
    assert_eq!(arm.names(), vec![CMA_HEAP_NAME, "system"]);
    // Through the trait, as a generic program sees them.
    assert_eq!(uapi::Heaps::names(&arm).expect("names"), vec![CMA_HEAP_NAME, "system"]);
    // x86-pcie has no CMA area, so no CMA heap.
    let x86 = heaps("x86-pcie");
    assert_eq!(x86.names(), vec!["system"]);

    // An older kernel's name is not this kernel's: the error says what exists.
    let e = arm.open("linux,cma").map(drop).expect_err("no such heap");
    match &e {
        Error::HeapNotFound { name, available, location } => {
            assert_eq!(name, "linux,cma");
            assert_eq!(available, &vec![CMA_HEAP_NAME.to_owned(), "system".to_owned()]);
            assert_eq!(location, "simulated platform arm64-noncoherent");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().ends_with("this system has: default_cma_region, system"), "{e}");
    assert_eq!(e.op(), None);
    assert_eq!(e.errno(), Some(Errno::ENOENT), "what opening /dev/dma_heap/linux,cma says");

    // A program that looks the CMA heap up under every name finds it on an older kernel.
    let names = [CMA_HEAP_NAME, "linux,cma", "reserved"];
    let old = heaps("arm64-noncoherent").without_heap(CMA_HEAP_NAME).with_heap("linux,cma", HeapKind::Cma);
    assert_eq!(old.names(), vec!["linux,cma", "system"]);
    let cma = old.open_any(&names).expect("CMA under its old name");
    assert_eq!(cma.name(), "linux,cma");
    let buf = cma.allocate(16 * PAGE).expect("allocate");
    assert!(buf.framework().backing().is_contiguous(), "the CMA heap's buffers are contiguous");
    match x86.open_any(&names) {
        Err(Error::HeapNotFound { name, available, .. }) => {
            assert_eq!(name, "default_cma_region|linux,cma|reserved");
            assert_eq!(available, vec!["system"]);
        }
        other => panic!("{other:?}"),
    }
    // A vendor kernel's uncached heap, when offered.
    let vendor = heaps("arm64-noncoherent").with_heap("system-uncached", HeapKind::Uncached);
    let wc = vendor.open("system-uncached").expect("open").allocate(PAGE).expect("allocate");
    assert_eq!(wc.framework().exporter_name(), "uncached");
}

#[test]
fn buffers_are_page_rounded_zeroed_on_reallocation_and_never_empty() {
    let h = heaps("arm64-noncoherent");
    let heap = h.open("system").expect("heap");
    let buf = heap.allocate(100).expect("allocate");
    assert_eq!(buf.size(), PAGE);
    assert!(all(&cpu_read(&buf), 0));
    paint(&buf, 0xff);
    drop(buf);
    // The same pages again, cleared (the dmabuf-heaps selftest's zeroed reallocation).
    let again = heap.allocate(PAGE).expect("allocate");
    assert!(all(&cpu_read(&again), 0), "a reallocated buffer must not show the old bytes");

    let e = heap.allocate(0).map(drop).expect_err("empty");
    assert_eq!(e.op(), Some(Op::DmaHeapIoctlAlloc));
    assert!(matches!(&e, Error::ZeroSize), "{e:?}");
    assert_eq!(e.errno(), Some(Errno::EINVAL));
    assert!(e.to_string().starts_with("DMA_HEAP_IOCTL_ALLOC: "), "{e}");
    let allocs = h.ioctls().iter().filter(|c| c.op == Op::DmaHeapIoctlAlloc).count();
    assert_eq!(allocs, 2, "the refused allocation is refused before the ioctl, as on the kernel backend");
}

#[test]
fn set_name_follows_the_kernel_limits() {
    let h = heaps("x86-pcie");
    let buf = alloc(&h, PAGE);
    let longest = "n".repeat(31);
    buf.set_name(&longest).expect("31 bytes fit");
    assert_eq!(buf.framework().name(), longest);
    match buf.set_name(&"n".repeat(32)) {
        Err(Error::NameTooLong { len: 32, max: 31, .. }) => {}
        other => panic!("{other:?}"),
    }
    // 16 two-byte characters: 32 bytes, too long although 16 characters.
    assert!(matches!(buf.set_name(&"é".repeat(16)), Err(Error::NameTooLong { len: 32, .. })));
    assert!(matches!(buf.set_name("a\0b"), Err(Error::NameHasNul { .. })));
    assert_eq!(buf.name(), longest, "a refused name changes nothing");
    uapi::DmaBuf::set_name(&buf, "frame").expect("through the trait");
    assert_eq!(buf.name(), "frame");
}

#[test]
fn a_buffer_has_one_mapping_at_a_time() {
    let h = heaps("x86-pcie");
    let (a, b) = (alloc(&h, PAGE), alloc(&h, PAGE));
    let map = a.mmap().expect("first");
    assert!(matches!(a.mmap(), Err(Error::AlreadyMapped { .. })));
    let other = b.mmap().expect("another buffer");
    drop(map);
    let again = a.mmap().expect("after the first is gone");
    assert_eq!(uapi::Mapping::len(&again), PAGE);
    drop((again, other));
}

#[test]
fn guards_bracket_every_access_with_their_flags_and_range() {
    let h = heaps("arm64-noncoherent");
    let buf = alloc(&h, 4 * PAGE);
    h.clear_ioctls();
    let mut map = buf.mmap().expect("mmap");
    {
        let r = map.read_range(8..16).expect("read");
        assert_eq!(r.len(), 8);
        assert_eq!(CpuAccess::flags(&r), SyncFlags::Read);
        // Ended by drop.
    }
    {
        let mut w = map.write_range(PAGE..2 * PAGE).expect("write");
        assert_eq!(CpuAccess::flags(&w), SyncFlags::Write);
        w[0] = 1;
        CpuAccess::end(w).expect("end");
    }
    {
        let mut rw = map.read_write().expect("read-modify-write");
        assert_eq!(rw[PAGE], 1, "a read-modify-write sees the earlier write");
        rw[PAGE] += 1;
    }
    assert_eq!(map.read().expect("read")[PAGE], 2);
    let all_of_it = 0..4 * PAGE;
    assert_eq!(
        syncs(&h),
        vec![
            (true, SyncFlags::Read, 0..64),
            (false, SyncFlags::Read, 0..64),
            (true, SyncFlags::Write, PAGE..2 * PAGE),
            (false, SyncFlags::Write, PAGE..2 * PAGE),
            (true, SyncFlags::ReadWrite, all_of_it.clone()),
            (false, SyncFlags::ReadWrite, all_of_it.clone()),
            (true, SyncFlags::Read, all_of_it.clone()),
            (false, SyncFlags::Read, all_of_it),
        ]
    );
    assert_eq!(unbracketed(&h, false) + unbracketed(&h, true), 0, "{:?}", h.reports());

    // A range outside the buffer issues nothing.
    h.clear_ioctls();
    #[allow(clippy::reversed_empty_ranges)] // a backwards range is one of the mistakes
    for bad in [0..4 * PAGE + 1, 10..5] {
        match map.read_range(bad.clone()) {
            Err(Error::RangeOutOfBounds { start, end, len }) => {
                assert_eq!((start, end, len), (bad.start, bad.end, 4 * PAGE));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(map.write_range(bad), Err(Error::RangeOutOfBounds { .. })));
    }
    assert!(h.ioctls().is_empty(), "{:?}", h.ioctls());
}

fn heaps_under(preset: &str, maintenance: MaintenancePolicy) -> Heaps {
    let sim = Sim::builder(Platform::preset(preset).expect("preset")).chooser(Adversarial).build();
    Heaps::new(&System::new(sim, SystemConfig { maintenance, ..SystemConfig::default() }))
}

/// The sync ioctls, by operation, in order.
fn sync_ops(h: &Heaps) -> Vec<Op> {
    h.ioctls().into_iter().map(|c| c.op).filter(|op| format!("{op:?}").starts_with("DmaBufIoctlSync")).collect()
}

/// Upstream has no `DMA_BUF_IOCTL_SYNC_PARTIAL`: the first ranged guard gets `ENOTTY` and
/// the mapping syncs the whole buffer from then on, as Rockchip's MPP does.
#[test]
fn ranged_guards_fall_back_to_the_full_sync_on_upstream() {
    use Op::*;
    let h = heaps_under("arm64-noncoherent", MaintenancePolicy::Linux);
    let buf = alloc(&h, 4 * PAGE);
    h.clear_ioctls();
    let mut map = buf.mmap().expect("mmap");
    assert_eq!(map.sync_partial_support(), None);
    drop(map.read_range(8..16).expect("read"));
    map.overwrite(PAGE, &[9; 64]).expect("overwrite");
    assert_eq!(map.sync_partial_support(), Some(false));
    assert_eq!(
        sync_ops(&h),
        vec![
            DmaBufIoctlSyncPartialStart,
            DmaBufIoctlSyncStart,
            DmaBufIoctlSyncEnd,
            DmaBufIoctlSyncStart,
            DmaBufIoctlSyncEnd
        ]
    );
    assert_eq!(map.read_range(PAGE..PAGE + 64).expect("read")[..], [9; 64][..]);
    assert!(h.reports().is_empty(), "a probe is no misuse: {:?}", h.reports());
}

/// With the sync ioctls left out, a ranged guard asks the kernel nothing, so it learns
/// nothing: the probe stays open and the first issued guard makes it.
#[test]
fn guards_that_omit_the_sync_ioctls_do_not_probe_for_the_ranged_one() {
    use Op::*;
    let h = heaps_under("arm64-noncoherent", MaintenancePolicy::Linux);
    let buf = alloc(&h, 4 * PAGE);
    h.clear_ioctls();
    let mut map = buf.mmap().expect("mmap");
    h.set_sync_ioctls(SyncIoctls::Omit);
    drop(map.read_range(8..16).expect("read"));
    map.overwrite(PAGE, &[9; 64]).expect("overwrite");
    assert_eq!((map.sync_partial_support(), map.overwrite_support()), (None, None));
    assert!(sync_ops(&h).is_empty(), "{:?}", sync_ops(&h));
    h.set_sync_ioctls(SyncIoctls::Issue);
    drop(map.read_range(8..16).expect("read"));
    assert_eq!(map.sync_partial_support(), Some(false));
    assert_eq!(sync_ops(&h), vec![DmaBufIoctlSyncPartialStart, DmaBufIoctlSyncStart, DmaBufIoctlSyncEnd]);
}

/// A vendor kernel has the ioctl but not `DMA_BUF_SYNC_OVERWRITE`: `EINVAL`, and the
/// overwrite goes out as a plain ranged write, then and after.
#[test]
fn an_overwrite_drops_the_flag_a_vendor_kernel_refuses() {
    use Op::*;
    let h = heaps_under("arm64-noncoherent", MaintenancePolicy::Vendor);
    let buf = alloc(&h, 4 * PAGE);
    h.clear_ioctls();
    let mut map = buf.mmap().expect("mmap");
    map.overwrite(64, &[5; 128]).expect("overwrite");
    map.overwrite(64, &[6; 128]).expect("overwrite");
    assert_eq!((map.sync_partial_support(), map.overwrite_support()), (Some(true), Some(false)));
    assert_eq!(
        sync_ops(&h),
        [DmaBufIoctlSyncPartialStart; 2]
            .into_iter()
            .chain([DmaBufIoctlSyncPartialEnd, DmaBufIoctlSyncPartialStart, DmaBufIoctlSyncPartialEnd])
            .collect::<Vec<_>>()
    );
    assert_eq!(map.read_range(64..192).expect("read")[..], [6; 128][..]);
    assert!(h.reports().is_empty(), "{:?}", h.reports());
}

/// Under the minimal implementation an overwrite of whole lines that a device wrote costs
/// no invalidate, and the device still reads what the CPU wrote.
#[test]
fn an_overwrite_of_whole_lines_needs_no_invalidate() {
    let h = heaps_under("arm64-noncoherent", MaintenancePolicy::Minimal);
    let buf = alloc(&h, 4 * PAGE);
    let mut dev = h.device("vdec").expect("vdec");
    dev.write(&buf, 0, &[0x11; 4 * PAGE]).expect("decode");
    dev.complete().expect("complete");
    let mut map = buf.mmap().expect("mmap");
    let before = h.system().stats();
    map.overwrite(PAGE, &[0x22; PAGE]).expect("overwrite");
    let after = h.system().stats();
    assert_eq!(after.invalidate.bytes, before.invalidate.bytes, "no invalidate of the overwritten lines");
    assert_eq!(map.overwrite_support(), Some(true));
    drop(map);
    let mut display = h.device("display").expect("display");
    let seen = display.read(&buf, 0..4 * PAGE).expect("read");
    display.complete().expect("complete");
    assert!(all(&seen[PAGE..2 * PAGE], 0x22) && all(&seen[..PAGE], 0x11), "the device sees the overwrite");
    assert!(h.reports().is_empty(), "{:?}", h.reports());
}

#[test]
fn a_write_guard_stores_only_the_bytes_the_program_changed() {
    let h = heaps("arm64-noncoherent");
    let buf = alloc(&h, 4 * PAGE);
    let mut map = buf.mmap().expect("mmap");
    let before = h.system().stats().cpu_write_bytes;
    {
        let mut w = map.write().expect("write");
        w[0] = 7;
        w[1000] = 8;
        w[1001] = 9;
    }
    assert_eq!(h.system().stats().cpu_write_bytes - before, 3, "two runs, three bytes");
    let before = h.system().stats().cpu_write_bytes;
    drop(map.write().expect("write"));
    assert_eq!(h.system().stats().cpu_write_bytes, before, "an untouched write guard stores nothing");
    let r = map.read().expect("read");
    assert_eq!((r[0], r[1000], r[1001], r[2]), (7, 8, 9, 0));
}

/// The CPU paints a frame, a device that does not snoop reads it: correct with the
/// bracket, stale without it on arm64; both correct on x86, where devices snoop.
#[test]
fn the_bracket_is_what_hands_cpu_writes_to_a_non_coherent_device() {
    for (preset, coherent) in [("arm64-noncoherent", false), ("x86-pcie", true)] {
        for mode in [SyncIoctls::Issue, SyncIoctls::Omit] {
            let h = heaps(preset).with_sync_ioctls(mode);
            let buf = alloc(&h, 16 * PAGE);
            let mut display = h.device("display").expect("display");
            display.import(&buf).expect("import");
            let clean_before = h.system().stats().clean.ops;
            paint(&buf, 0x77);
            let seen = display.read(&buf, 0..buf.size()).expect("device read");
            let stale = !all(&seen, 0x77);
            let what = format!("{preset} {mode:?}");
            assert_eq!(stale, !coherent && mode == SyncIoctls::Omit, "{what}");
            let cleans = h.system().stats().clean.ops - clean_before;
            match mode {
                SyncIoctls::Issue => {
                    assert_eq!(syncs(&h).len(), 2, "{what}");
                    assert_eq!(unbracketed(&h, true), 0, "{what}");
                    // The END cleans the CPU's lines for the non-coherent display only.
                    assert_eq!(cleans > 0, !coherent, "{what}: {cleans} cleans");
                }
                SyncIoctls::Omit => {
                    assert!(syncs(&h).is_empty(), "{what}");
                    assert_eq!(unbracketed(&h, true), 1, "{what}: {:?}", h.reports());
                    assert_eq!(cleans, 0, "{what}");
                }
            }
        }
    }
}

/// A device writes, the CPU reads: the START invalidates what the CPU cached before.
#[test]
fn the_bracket_is_what_shows_a_device_write_to_the_cpu() {
    let h = heaps("arm64-noncoherent");
    let buf = alloc(&h, 8 * PAGE);
    let mut gpu = h.device("gpu").expect("gpu");
    assert!(all(&cpu_read(&buf), 0), "the CPU caches the zeroes");
    gpu.write(&buf, 0, &[0xc4; 8 * PAGE]).expect("device write");
    assert!(all(&cpu_read(&buf), 0xc4), "the read waits for the job and invalidates first");
    assert_eq!(gpu.last_fence().map(|f| f.is_signaled()), Some(true));

    h.set_sync_ioctls(SyncIoctls::Omit);
    gpu.write(&buf, 0, &[0xd5; 8 * PAGE]).expect("device write");
    gpu.complete().expect("complete");
    let seen = cpu_read(&buf);
    assert!(all(&seen, 0xc4), "without the bracket the CPU reads its stale lines: {:x?}", &seen[..8]);
    assert!(unbracketed(&h, false) > 0);
}

#[test]
fn poll_follows_the_device_jobs_fences_in_simulated_time() {
    let h = heaps("arm64-noncoherent");
    let buf = alloc(&h, PAGE);
    let mut display = h.device("display").expect("display");
    // The kernel's poll reports only the events asked for.
    assert_eq!(buf.poll(SyncFlags::ReadWrite, NOW).expect("poll"), ready(true, true));
    assert_eq!(buf.poll(SyncFlags::Read, NOW).expect("poll"), ready(true, false));
    assert_eq!(buf.poll(SyncFlags::Write, NOW).expect("poll"), ready(true, true));

    // A reader's job holds back writers only.
    let t0 = h.now();
    display.read(&buf, 0..PAGE).expect("read job");
    assert_eq!(buf.poll(SyncFlags::ReadWrite, NOW).expect("poll"), ready(true, false));
    assert_eq!(buf.poll(SyncFlags::Read, NOW).expect("poll"), ready(true, false));
    assert_eq!(buf.poll(SyncFlags::Write, NOW).expect("poll"), ready(false, false));
    assert_eq!(h.now(), t0, "looking runs no simulated time");
    // Waiting runs simulated time up to the job's end, not beyond.
    assert_eq!(buf.poll(SyncFlags::Write, Some(Duration::from_secs(1))).expect("poll"), ready(true, true));
    assert_eq!(h.now(), t0.checked_add(dmabuf::user::DEFAULT_JOB_TIME).expect("time"));

    // A writer's job holds back everyone; a timeout shorter than the job passes in
    // simulated time.
    display.set_job_time(Duration::from_millis(4));
    let t1 = h.now();
    // The display maps the buffer both ways, so it may write it.
    display.write(&buf, 0, &[1; 16]).expect("write job");
    assert_eq!(buf.poll(SyncFlags::ReadWrite, NOW).expect("poll"), ready(false, false));
    assert_eq!(buf.poll(SyncFlags::Read, Some(Duration::from_millis(1))).expect("poll"), ready(false, false));
    assert_eq!(h.now(), t1.checked_add(Duration::from_millis(1)).expect("time"));
    assert_eq!(buf.poll(SyncFlags::Read, None).expect("poll"), ready(true, false));
    assert_eq!(h.now(), t1.checked_add(Duration::from_millis(4)).expect("time"));
}

#[test]
fn a_write_guard_waits_for_the_devices_reader_and_a_read_guard_does_not() {
    let h = heaps("arm64-noncoherent");
    let buf = alloc(&h, PAGE);
    let mut display = h.device("display").expect("display");
    display.read(&buf, 0..PAGE).expect("read job");
    let t0 = h.now();
    {
        let map = buf.mmap().expect("mmap");
        drop(map.read().expect("read guard"));
    }
    assert_eq!(h.now(), t0, "a reader does not wait for a reader");
    assert_eq!(display.last_fence().map(|f| f.is_signaled()), Some(false));
    paint(&buf, 3);
    assert!(h.now() > t0, "the writer's START ran the simulation until the job ended");
    assert_eq!(display.last_fence().map(|f| f.is_signaled()), Some(true));
}

#[test]
fn exported_sync_files_follow_the_flags_and_carry_the_devices_fence() {
    let h = heaps("arm64-noncoherent");
    let buf = alloc(&h, PAGE);
    let mut display = h.device("display").expect("display");
    display.read(&buf, 0..PAGE).expect("read job");

    let for_reader = buf.export_sync_file(SyncFlags::Read).expect("export READ");
    assert_eq!(for_reader.wait(NOW).expect("wait"), WaitStatus::Signaled, "no writer to wait for");
    let for_writer = buf.export_sync_file(SyncFlags::Write).expect("export WRITE");
    let info = for_writer.info();
    assert_eq!(info.status, FenceStatus::Active);
    assert_eq!(info.fences.len(), 1, "{info:?}");
    assert_eq!((info.fences[0].driver_name.as_str(), info.fences[0].obj_name.as_str()), ("display", "jobs"));
    assert_eq!(info.fences[0].timestamp_ns, None);
    assert_eq!(for_writer.wait(NOW).expect("wait"), WaitStatus::TimedOut);
    let rw = buf.export_sync_file(SyncFlags::ReadWrite).expect("export RW");
    assert_eq!(rw.info().status, FenceStatus::Active, "READ|WRITE exports what a writer waits for");

    display.complete().expect("complete");
    let info = uapi::SyncFile::info(&for_writer).expect("info");
    assert_eq!(info.status, FenceStatus::Signaled);
    assert_eq!(info.fences[0].timestamp_ns, Some(h.now().as_nanos()), "stamped with simulated time");
    let exports: Vec<_> = h.ioctls().into_iter().filter(|c| c.op == Op::DmaBufIoctlExportSyncFile).collect();
    assert_eq!(
        exports.iter().map(|c| c.flags).collect::<Vec<_>>(),
        vec![Some(SyncFlags::Read), Some(SyncFlags::Write), Some(SyncFlags::ReadWrite)]
    );
}

#[test]
fn imported_sync_files_hold_back_what_their_flags_say() {
    let h = heaps("x86-pcie");
    let buf = alloc(&h, PAGE);
    let tl = SyncTimeline::new("producer");

    let writer = SyncFile::from(tl.create_sync_file("w", 1));
    buf.import_sync_file(SyncFlags::Write, &writer).expect("import WRITE");
    assert_eq!(buf.poll(SyncFlags::ReadWrite, NOW).expect("poll"), ready(false, false));
    assert_eq!(buf.export_sync_file(SyncFlags::Read).expect("export").wait(NOW).expect("wait"), WaitStatus::TimedOut);
    tl.inc(1);
    assert_eq!(buf.poll(SyncFlags::ReadWrite, NOW).expect("poll"), ready(true, true));

    let reader = SyncFile::from(tl.create_sync_file("r", 2));
    buf.import_sync_file(SyncFlags::Read, &reader).expect("import READ");
    assert_eq!(buf.poll(SyncFlags::ReadWrite, NOW).expect("poll"), ready(true, false));
    assert_eq!(buf.export_sync_file(SyncFlags::Read).expect("export").wait(NOW).expect("wait"), WaitStatus::Signaled);
    assert_eq!(buf.export_sync_file(SyncFlags::Write).expect("export").wait(NOW).expect("wait"), WaitStatus::TimedOut);
    tl.inc(1);
    assert_eq!(buf.poll(SyncFlags::ReadWrite, NOW).expect("poll"), ready(true, true));
}

/// A device job waits for an imported writer's fence (implicit sync), here signalled by
/// another thread, before it touches the buffer.
#[test]
fn a_device_job_waits_for_an_imported_fence() {
    let h = heaps("arm64-noncoherent");
    let buf = alloc(&h, PAGE);
    let mut gpu = h.device("gpu").expect("gpu");
    let tl = SyncTimeline::new("camera");
    let fence = SyncFile::from(tl.create_sync_file("frame", 1));
    buf.import_sync_file(SyncFlags::Write, &fence).expect("import");
    let signaller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        tl.inc(1);
        tl
    });
    gpu.read(&buf, 0..PAGE).expect("read job");
    assert!(fence.framework().fence().is_signaled(), "the job started only after the camera's fence");
    drop(signaller.join().expect("thread"));
}

#[test]
fn sync_files_merge_wait_and_name_like_the_kernel_backend() {
    let (t1, t2) = (SyncTimeline::new("a"), SyncTimeline::new("b"));
    let a = SyncFile::from(t1.create_sync_file("a1", 1));
    let b = SyncFile::from(t2.create_sync_file("b1", 1));
    let both = uapi::SyncFile::merge(&a, "both", &b).expect("merge");
    let info = both.info();
    assert_eq!(info.name, "both");
    assert_eq!(info.count_with_status(FenceStatus::Active), 2);
    assert_eq!(both.wait(NOW).expect("wait"), WaitStatus::TimedOut);
    t1.inc(1);
    assert_eq!(both.wait(Some(Duration::from_millis(5))).expect("wait"), WaitStatus::TimedOut);
    assert_eq!(both.info().count_with_status(FenceStatus::Signaled), 1);
    t2.inc(1);
    assert_eq!(both.wait(NOW).expect("wait"), WaitStatus::Signaled);
    uapi::SyncFile::set_deadline(&both, MonotonicTime::from_nanos(1)).expect("deadline");

    // Points of one timeline collapse to the later one.
    let p2 = SyncFile::from(t1.create_sync_file("a2", 2));
    let p3 = SyncFile::from(t1.create_sync_file("a3", 3));
    assert_eq!(p2.merge("same", &p3).expect("merge").info().fences.len(), 1);

    // The kernel backend's name rules.
    match a.merge(&"m".repeat(32), &b) {
        Err(Error::NameTooLong { len: 32, max: 31, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(a.merge("x\0y", &b), Err(Error::NameHasNul { .. })));
}

#[test]
fn devices_are_found_by_name_and_refuse_what_is_not_theirs() {
    let h = heaps("arm64-noncoherent");
    match h.device("npu") {
        Err(e @ Error::Device { action: "lookup", .. }) => {
            let text = e.to_string();
            assert!(text.contains("gpu") && text.contains("display"), "lists the devices: {text}");
        }
        other => panic!("{other:?}"),
    }
    let buf = alloc(&h, PAGE);
    let mut gpu = h.device("gpu").expect("gpu");
    assert!(matches!(gpu.read(&buf, 0..PAGE + 1), Err(Error::RangeOutOfBounds { start: 0, end: 4097, len: 4096 })));
    assert!(!gpu.has_imported(&buf), "a refused job imports nothing");
    let elsewhere = alloc(&heaps("arm64-noncoherent"), PAGE);
    assert!(matches!(gpu.read(&elsewhere, 0..PAGE), Err(Error::ForeignBuffer { .. })));
    assert_eq!(gpu.jobs(), 0);
    // The ISP needs contiguous memory: the system heap's scattered pages are refused at
    // attach, naming the rule.
    let mut isp = h.device("isp").expect("isp");
    let big = alloc(&h, 64 * PAGE);
    match isp.read(&big, 0..PAGE) {
        Err(e @ Error::Device { action: "attach", .. }) => assert!(e.to_string().contains("isp"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_device_holds_its_buffers_and_lets_them_go_cleanly() {
    let h = heaps("arm64-noncoherent");
    let buf = alloc(&h, PAGE);
    let framework = buf.framework().clone();
    let mut gpu = h.device("gpu").expect("gpu");
    gpu.read(&buf, 0..PAGE).expect("read job");
    assert!(gpu.has_imported(&buf));
    // The program lets go of its buffer: the importer still holds it.
    drop(buf);
    assert!(!framework.resv().test_signaled(dmabuf::ResvUsage::Read), "the job is still running");
    // The device goes: it finishes its job, unmaps and detaches.
    drop(gpu);
    assert!(framework.resv().test_signaled(dmabuf::ResvUsage::Bookkeep));
    drop(framework);
    let leaks: Vec<_> = h
        .reports()
        .into_iter()
        .filter(|r| matches!(r, Report::LeakedAttachments { .. } | Report::LeakedMappings { .. }))
        .collect();
    assert!(leaks.is_empty(), "{leaks:?}");
}

/// dma_heap_buffer_alloc: a length that wraps to 0 when rounded up to pages is EINVAL, not
/// ENOMEM, while a length the heap cannot provide is the framework's ENOMEM; one program
/// checks both the same way on either backend.
#[test]
fn dma_heap_buffer_alloc_refuses_a_length_that_wraps_to_zero() {
    let h = heaps("arm64-noncoherent");
    let heap = h.open("system").expect("heap");
    for len in [usize::MAX, usize::MAX - 1, usize::MAX - PAGE + 2] {
        let e = heap.allocate(len).map(drop).expect_err("wraps");
        assert!(matches!(e, Error::LengthWraps { .. }), "{len}: {e:?}");
        assert_eq!((e.errno(), e.op()), (Some(Errno::EINVAL), Some(Op::DmaHeapIoctlAlloc)));
    }
    let e = heap.allocate(1 << 48).map(drop).expect_err("more than the platform has");
    assert!(matches!(e, Error::Framework { op: Op::DmaHeapIoctlAlloc, .. }), "{e:?}");
    assert_eq!(e.errno(), Some(Errno::ENOMEM));
    assert!(e.to_string().starts_with("DMA_HEAP_IOCTL_ALLOC failed: ENOMEM (Cannot allocate memory): "), "{e}");
}

/// dma_heap_ioctl_allocate and dmabuf-heap.c test_alloc_errors: fd flags outside
/// O_ACCMODE | O_CLOEXEC and any heap flag are EINVAL; the access mode is the fd's (a
/// read-only buffer maps read-only, a write-only one not at all: EACCES).
#[test]
fn dma_heap_ioctl_allocate_refuses_invalid_flags() {
    let h = heaps("x86-pcie");
    let heap = h.open("system").expect("heap");
    for (fd_flags, heap_flags) in [
        (FdFlags::from_bits_retain(!FdFlags::DEFAULT.bits()), HeapFlags::NONE),
        (FdFlags::DEFAULT | FdFlags::from_bits_retain(0o4000), HeapFlags::NONE),
        (FdFlags::DEFAULT, HeapFlags::from_bits_retain(0x111111)),
    ] {
        let e = heap.allocate_with(PAGE, fd_flags, heap_flags).map(drop).expect_err("refused");
        assert!(matches!(e, Error::FdFlags { .. } | Error::HeapFlags { .. }), "{e:?}");
        assert_eq!(e.errno(), Some(Errno::EINVAL));
    }
    assert!(h.ioctls().is_empty(), "refused before the ioctl: {:?}", h.ioctls());
    let ro = heap.allocate_with(PAGE, FdFlags::RDONLY | FdFlags::CLOEXEC, HeapFlags::NONE).expect("O_RDONLY");
    assert!(!ro.is_writable());
    let mut map = ro.mmap().expect("a read-only mapping");
    assert!(map.read().expect("read").iter().all(|&b| b == 0));
    assert!(matches!(map.write(), Err(Error::NotWritable)));
    let wo = heap.allocate_with(PAGE, FdFlags::WRONLY | FdFlags::CLOEXEC, HeapFlags::NONE).expect("O_WRONLY");
    let e = wo.mmap().map(drop).expect_err("write-only");
    assert!(matches!(e, Error::NotReadable));
    assert_eq!(e.errno(), Some(Errno::EACCES));
}

/// dma_buf_mmap_internal: a mapping at an offset sees the buffer from there (its guards'
/// ranges are its own; the bracket declares the buffer's), and one whose pages reach past
/// the end is EINVAL.
#[test]
fn dma_buf_mmap_internal_refuses_mappings_past_the_end() {
    let h = heaps("arm64-noncoherent");
    let buf = alloc(&h, 4 * PAGE);
    {
        let mut map = buf.mmap().expect("mmap");
        let mut w = map.write().expect("write");
        for p in 0..4 {
            w[p * PAGE] = p as u8 + 1;
        }
    }
    h.clear_ioctls();
    {
        let map = buf.mmap_range(2 * PAGE, 2 * PAGE).expect("the last two pages");
        assert_eq!(map.len(), 2 * PAGE);
        let r = map.read_range(0..PAGE + 1).expect("read");
        assert_eq!((r[0], r[PAGE]), (3, 4));
        drop(r);
        assert!(matches!(map.read_range(0..2 * PAGE + 1), Err(Error::RangeOutOfBounds { .. })));
    }
    let range = 2 * PAGE..3 * PAGE + 64;
    assert_eq!(syncs(&h), vec![(true, SyncFlags::Read, range.clone()), (false, SyncFlags::Read, range)]);
    for (offset, len) in [(0, 4 * PAGE + 1), (PAGE, 4 * PAGE), (4 * PAGE, 1)] {
        let e = buf.mmap_range(offset, len).map(drop).expect_err("past the end");
        assert!(matches!(e, Error::MmapPastEnd { .. }), "{offset}+{len}: {e:?}");
        assert_eq!(e.errno(), Some(Errno::EINVAL));
    }
    assert!(matches!(buf.mmap_range(1, PAGE), Err(Error::MmapOffsetNotAligned { .. })));
    assert!(matches!(buf.mmap_range(0, 0), Err(Error::MmapEmpty)));
    // A window counts as the buffer's one mapping.
    let part = buf.mmap_range(PAGE, PAGE).expect("window");
    assert!(matches!(buf.mmap(), Err(Error::AlreadyMapped { .. })));
    drop(part);
}

/// check_memfd_seals: F_SEAL_SHRINK wanted, F_SEAL_WRITE and F_SEAL_FUTURE_WRITE denied
/// (EINVAL); the seals hold on the memfd itself too (a write-sealed memfd refuses writes).
#[test]
fn check_memfd_seals_wants_shrink_and_denies_the_write_seals() {
    let h = heaps("arm64-noncoherent");
    let dev = h.udmabuf();
    for (seals, refused) in [
        (Seals::NONE, true),
        (Seals::SHRINK, false),
        (Seals::SHRINK | Seals::GROW, false),
        (Seals::SHRINK | Seals::WRITE, true),
        (Seals::SHRINK | Seals::FUTURE_WRITE, true),
    ] {
        let memfd = dev.create_memfd(PAGE as u64, MemfdKind::Shmem, seals).expect("memfd");
        assert_eq!(memfd.seals(), Some(seals));
        let made = dev.create(&memfd, 0, PAGE as u64).map(drop);
        assert_eq!(made.is_err(), refused, "{seals:?}: {made:?}");
        if let Err(e) = made {
            assert_eq!(e.errno(), Some(Errno::EINVAL), "{seals:?}: {e}");
        }
        let write = memfd.write_at(0, b"x");
        assert_eq!(write.is_err(), seals.intersects(Seals::WRITE | Seals::FUTURE_WRITE), "{seals:?}");
    }
    let sealed = dev.create_memfd(PAGE as u64, MemfdKind::Shmem, Seals::SHRINK | Seals::SEAL).expect("memfd");
    let e = sealed.add_seals(Seals::WRITE).expect_err("F_SEAL_SEAL");
    assert_eq!(e.errno(), Some(Errno::EPERM));
}

/// udmabuf selftest test-3 and check_memfd_seals: a file that is neither shmem nor
/// hugetlbfs is EBADFD.
#[test]
fn udmabuf_create_refuses_a_file_that_is_not_a_memfd() {
    let h = heaps("arm64-noncoherent");
    let dev = h.udmabuf();
    let file = dev.file(PAGE as u64).expect("file");
    assert_eq!(file.seals(), None);
    let e = dev.create(&file, 0, PAGE as u64).map(drop).expect_err("not a memfd");
    assert!(matches!(e, Error::UdmabufNotMemfd { index: 0 }));
    assert_eq!(e.errno(), Some(Errno::EBADFD));
    assert_eq!(file.add_seals(Seals::SHRINK).map_err(|e| e.errno()), Err(Some(Errno::EINVAL)));
}

/// udmabuf selftest test-1, test-2 and udmabuf_create's limits: unaligned, empty,
/// out-of-range and oversized items are EINVAL, each naming its item.
#[test]
fn udmabuf_create_refuses_unaligned_items() {
    let h = heaps("arm64-noncoherent");
    let dev = h.udmabuf();
    let page = PAGE as u64;
    let memfd = dev.create_memfd(4 * page, MemfdKind::Shmem, Seals::SHRINK).expect("memfd");
    for (offset, size) in [(page / 2, page), (0, page / 2), (0, 0), (2 * page, 4 * page)] {
        let e = dev.create(&memfd, offset, size).map(drop).expect_err("refused");
        assert_eq!(e.errno(), Some(Errno::EINVAL), "{offset}+{size}: {e}");
    }
    let small = h.udmabuf().with_limits(dmabuf::uapi::UdmabufLimits { max_size: 2 * page, max_items: 2 });
    let item = |offset| UdmabufItem { memfd: &memfd, offset, size: page };
    assert!(matches!(
        small.create_list(&[item(0), item(page), item(2 * page)]),
        Err(Error::UdmabufTooManyItems { .. })
    ));
    assert!(matches!(small.create(&memfd, 0, 3 * page), Err(Error::UdmabufTooLarge { .. })));
    assert!(matches!(dev.create_list(&[item(0), item(1)]), Err(Error::UdmabufOffsetNotAligned { index: 1, .. })));
}

/// The udmabuf selftest's list test (test-5): four items spread over one memfd make one
/// buffer of the memfd's pages in the items' order, shared with the memfd both ways and
/// readable by a device.
#[test]
fn udmabuf_create_list_of_one_memfd() {
    let h = heaps("arm64-noncoherent");
    let dev = h.udmabuf();
    let page = PAGE as u64;
    let size = 64 * page;
    let memfd = dev.create_memfd(size, MemfdKind::Shmem, Seals::SHRINK).expect("memfd");
    for i in 0..size / page {
        memfd.write_at(i * page, &[i as u8]).expect("pwrite");
    }
    let items: Vec<UdmabufItem<'_>> =
        (0..4).map(|i| UdmabufItem { memfd: &memfd, offset: i * (size / 4), size: 4 * page }).collect();
    let buf = dev.create_list(&items).expect("UDMABUF_CREATE_LIST");
    assert_eq!(buf.size(), 16 * PAGE);
    assert_eq!(buf.framework().exporter_name(), "udmabuf");
    let want = |k: u64| ((k / 4) * (size / 4 / page) + k % 4) as u8;
    {
        let map = buf.mmap().expect("mmap");
        let r = map.read().expect("read");
        for k in 0..16 {
            assert_eq!(r[(k * page) as usize], want(k), "page {k} of the buffer");
        }
    }
    // Writes through the buffer, bracketed, reach a device and the memfd.
    {
        let mut map = buf.mmap().expect("mmap");
        map.write_range(PAGE..PAGE + 1).expect("write")[0] = 0xee;
    }
    let mut gpu = h.device("gpu").expect("gpu");
    let seen = gpu.read(&buf, 0..buf.size()).expect("device read");
    assert_eq!(seen[PAGE], 0xee);
    gpu.complete().expect("complete");
    let mut b = [0u8; 1];
    memfd.read_at(page, &mut b).expect("pread");
    assert_eq!(b[0], 0xee);
}

/// The udmabuf selftest's hugetlb test (test-6): a hugetlb memfd is sized in whole 2 MiB
/// pages (hugetlbfs_setattr), has no write(2) (EINVAL), and its small pages make a list.
#[test]
fn udmabuf_create_list_of_a_hugetlb_memfd() {
    let h = heaps("arm64-noncoherent");
    let dev = h.udmabuf();
    let page = PAGE as u64;
    let memfd = dev.create_memfd(HUGETLB_PAGE_SIZE + 1, MemfdKind::Hugetlb, Seals::SHRINK).expect("hugetlb memfd");
    assert_eq!(memfd.size(), 2 * HUGETLB_PAGE_SIZE);
    assert_eq!(memfd.write_at(0, b"x").map_err(|e| e.errno()), Err(Some(Errno::EINVAL)));
    let items: Vec<UdmabufItem<'_>> =
        (0..2).map(|i| UdmabufItem { memfd: &memfd, offset: i * HUGETLB_PAGE_SIZE + page, size: 4 * page }).collect();
    let buf = dev.create_list(&items).expect("UDMABUF_CREATE_LIST of hugetlb pages");
    assert_eq!(buf.size(), 8 * PAGE);
    {
        let mut map = buf.mmap().expect("mmap");
        let mut w = map.write().expect("write");
        for k in 0..8 {
            w[k * PAGE] = 0xa0 + k as u8;
        }
    }
    for k in 0..8u64 {
        let mut b = [0u8; 1];
        memfd.read_at((k / 4) * HUGETLB_PAGE_SIZE + page + (k % 4) * page, &mut b).expect("pread");
        assert_eq!(b[0], 0xa0 + k as u8, "page {k}");
    }
}

/// The kernel's refusals as the generic program of `dmabuf_uapi::conformance` checks them,
/// the same functions the Linux backend's kernel tests run.
#[test]
fn the_kernels_refusals_are_the_simulated_backends() {
    for preset in ["arm64-noncoherent", "x86-pcie"] {
        let h = heaps(preset);
        let heap = h.open("system").expect("heap");
        assert_eq!(dmabuf::uapi::conformance::heap_refusals(&heap, PAGE), Ok(()), "{preset}");
        assert_eq!(dmabuf::uapi::conformance::udmabuf_refusals(&h.udmabuf()), Ok(()), "{preset}");
    }
}
