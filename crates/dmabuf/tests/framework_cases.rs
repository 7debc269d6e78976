//! The cases from the mailing-list threads that started this work, on the simulated
//! hardware, with bytes asserted, under both attach policies and both maintenance
//! policies where they differ. The chooser is adversarial throughout: the hardware takes
//! every freedom that can expose a bug.

use dmabuf::{AttachPlan, AttachPolicy, raw};
use dmabuf::{
    DMA_BUF_SYNC_END, DMA_BUF_SYNC_READ, DMA_BUF_SYNC_START, DMA_BUF_SYNC_WRITE, Error, MaintenancePolicy, Report,
    System, SystemConfig,
};
use dmabuf_sim::{Adversarial, DmaDirection, Platform, Sim};

const POLICIES: [MaintenancePolicy; 2] = [MaintenancePolicy::Linux, MaintenancePolicy::Minimal];

fn system(preset: &str, attach: AttachPolicy, maintenance: MaintenancePolicy) -> System {
    let sim = Sim::builder(Platform::preset(preset).unwrap()).chooser(Adversarial).build();
    System::new(sim, SystemConfig { attach, maintenance })
}

fn all(v: &[u8], b: u8) -> bool {
    v.iter().all(|&x| x == b)
}

const FRAME: u64 = 64 * 1024;

/// UVC: the capture driver fills a cached buffer with CPU copies and hands it to a GPU
/// that does not snoop.
#[test]
fn uvc_cpu_filled_frame_reaches_a_noncoherent_gpu_only_with_the_bracket() {
    for policy in POLICIES {
        let sys = system("arm64-noncoherent", AttachPolicy::Strict, policy);
        let gpu = sys.device("gpu").unwrap();
        let frame = sys.heap("system").unwrap().allocate(FRAME).unwrap();
        let att = frame.attach(gpu).unwrap();
        {
            let mut cpu = frame.begin_cpu_access(DmaDirection::ToDevice).unwrap();
            cpu.fill(0..FRAME, 0x5a).unwrap();
            cpu.end().unwrap();
        }
        let map = att.map(DmaDirection::ToDevice).unwrap();
        assert!(all(&map.device_read(0..FRAME).unwrap(), 0x5a), "{policy:?}");
        drop(map);

        // The same copy done the way the buggy driver does it: through its own mmap with
        // no sync around it, while the GPU keeps the buffer mapped.
        let user = frame.mmap().unwrap();
        let map = att.map(DmaDirection::ToDevice).unwrap();
        raw::mmap_write(&user, 0, &[0x77; 4096]).unwrap();
        let seen = map.device_read(0..4096).unwrap();
        assert!(all(&seen, 0x5a), "{policy:?}: the GPU must read the old frame");
        assert!(sys.reports().iter().any(|r| matches!(r, Report::AccessOutsideBracket { write: true, .. })));
    }
}

/// A write-combined buffer (what vgem allocates on x86) works for every party without
/// maintenance, and CPU reads of it cost far more than cached reads.
#[test]
fn write_combined_buffer_needs_no_maintenance_but_reads_are_slow() {
    for policy in POLICIES {
        let sys = system("arm64-noncoherent", AttachPolicy::Strict, policy);
        let usb = sys.device("usb").unwrap();
        let wc = sys.heap("uncached").unwrap().allocate(FRAME).unwrap();
        let att = wc.attach(usb).unwrap();
        let before = sys.stats();
        let user = wc.mmap().unwrap();
        user.write(0, &vec![0x31; FRAME as usize]).unwrap();
        let map = att.map(DmaDirection::Bidirectional).unwrap();
        assert!(all(&map.device_read(0..FRAME).unwrap(), 0x31));
        map.device_fill(0..FRAME, 0x32).unwrap();
        drop(map);
        assert!(all(&user.read(0..FRAME).unwrap(), 0x32), "{policy:?}");
        let after = sys.stats();
        assert_eq!(after.maintenance_ops(), before.maintenance_ops(), "{policy:?}: no cache maintenance at all");
        let wc_read = after.access_cycles;

        let cached = sys.heap("system").unwrap().allocate(FRAME).unwrap();
        let m = cached.mmap().unwrap();
        m.read(0..FRAME).unwrap(); // warm
        let before = sys.stats().access_cycles;
        m.read(0..FRAME).unwrap();
        let cached_read = sys.stats().access_cycles - before;
        assert!(wc_read > 20 * cached_read, "{policy:?}: WC {wc_read} cycles vs cached {cached_read}");
    }
}

/// User space writes an mmap of a system-heap buffer without the sync ioctl: stale on
/// arm64-noncoherent, fine on x86-pcie.
#[test]
fn forgetting_the_sync_ioctl_is_stale_on_arm_and_fine_on_x86() {
    for (preset, dev, stale) in [("arm64-noncoherent", "vdec", true), ("x86-pcie", "capture", false)] {
        for policy in POLICIES {
            let sys = system(preset, AttachPolicy::Strict, policy);
            let d = sys.device(dev).unwrap();
            let buf = sys.heap("system").unwrap().allocate(FRAME).unwrap();
            let att = buf.attach(d).unwrap();
            let user = buf.mmap().unwrap();
            raw::mmap_write(&user, 0, &vec![0x42; FRAME as usize]).unwrap();
            let map = att.map(DmaDirection::ToDevice).unwrap();
            let seen = map.device_read(0..FRAME).unwrap();
            // Under the Linux policy map cleans the whole buffer, which hides the missing
            // sync; under Minimal nothing was declared written, so nothing is cleaned.
            let want_stale = stale && policy == MaintenancePolicy::Minimal;
            assert_eq!(!all(&seen, 0x42), want_stale, "{preset} {policy:?}");
            assert!(sys.reports().iter().any(|r| matches!(r, Report::AccessOutsideBracket { .. })));

            // With the ioctl the data arrives under every policy.
            drop(map);
            raw::sync_ioctl(&user, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE).unwrap();
            raw::mmap_write(&user, 0, &vec![0x43; FRAME as usize]).unwrap();
            raw::sync_ioctl(&user, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE).unwrap();
            let map = att.map(DmaDirection::ToDevice).unwrap();
            assert!(all(&map.device_read(0..FRAME).unwrap(), 0x43), "{preset} {policy:?}");
        }
    }
}

/// A FROM_DEVICE capture on arm64 with speculative prefetch: correct only with the
/// invalidate after the transfer.
#[test]
fn capture_with_prefetch_needs_the_invalidate_after_the_transfer() {
    for policy in POLICIES {
        let sys = system("arm64-noncoherent", AttachPolicy::Strict, policy);
        let vdec = sys.device("vdec").unwrap();
        let buf = sys.heap("system").unwrap().allocate(FRAME).unwrap();
        let att = buf.attach(vdec).unwrap();
        let user = buf.mmap().unwrap();
        let map = att.map(DmaDirection::FromDevice).unwrap();
        map.device_fill(0..FRAME, 0xc4).unwrap();
        drop(map);
        // Reading without the sync: under Linux the unmap already invalidated; under
        // Minimal the invalidate waits for the bracket, so the prefetched lines are stale.
        let mut bytes = vec![0u8; FRAME as usize];
        raw::mmap_read(&user, 0, &mut bytes).unwrap();
        assert_eq!(all(&bytes, 0xc4), policy == MaintenancePolicy::Linux, "{policy:?}");
        assert!(all(&user.read(0..FRAME).unwrap(), 0xc4), "{policy:?}: with the bracket it is correct");
    }
}

/// A camera ISP that needs contiguous memory: `system` is refused at attach under Strict
/// with a hint to use `cma`, corrupted later under Linux; `cma` works.
#[test]
fn isp_needs_contiguous_memory() {
    let sys = system("arm64-noncoherent", AttachPolicy::Strict, MaintenancePolicy::Minimal);
    let isp = sys.device("isp").unwrap();
    let scattered = sys.heap("system").unwrap().allocate(FRAME).unwrap();
    let Err(Error::Attach(e)) = scattered.attach(isp) else { panic!("must be refused") };
    assert_eq!(e.rule(), "contiguity");
    assert!(e.to_string().contains("`cma` heap"), "{e}");
    let cma = sys.heap("cma").unwrap().allocate(FRAME).unwrap();
    let att = cma.attach(isp).unwrap();
    let map = att.map(DmaDirection::FromDevice).unwrap();
    map.device_fill(0..FRAME, 0x1c).unwrap();
    drop(map);
    let mut cpu = cma.begin_cpu_access(DmaDirection::FromDevice).unwrap();
    assert!(all(&cpu.read(0..FRAME).unwrap(), 0x1c));
    drop(cpu);

    for policy in POLICIES {
        let sys = system("arm64-noncoherent", AttachPolicy::Linux, policy);
        let isp = sys.device("isp").unwrap();
        let scattered = sys.heap("system").unwrap().allocate(FRAME).unwrap();
        let att = scattered.attach(isp).unwrap();
        assert!(
            sys.reports()
                .iter()
                .any(|r| matches!(r, Report::AttachAccepted { error, .. } if error.rule() == "contiguity"))
        );
        // The ISP's driver refuses the scattered buffer when it imports it, as upstream's
        // drm_gem_dma_prime_import_sg_table does: EINVAL at map, nothing written.
        let e = att.map(DmaDirection::FromDevice).err();
        assert!(matches!(e, Some(Error::ImportNotContiguous { .. })), "{policy:?}: {e:?}");
        assert_eq!(att.mapped_direction(), None);
    }
}

/// A 32-bit-limited DMA master: bounced, correct with syncs, stale without them, refused
/// for a scanout device.
#[test]
fn dma32_master_bounces_and_a_scanout_is_refused() {
    for policy in POLICIES {
        let sys = system("arm64-dma32", AttachPolicy::Strict, policy);
        let dma = sys.device("legacy-dma").unwrap();
        let buf = sys.heap("system").unwrap().allocate(FRAME).unwrap();
        let att = buf.attach(dma).unwrap();
        assert_eq!(att.plan(), AttachPlan::Bounce);
        // A long-lived mapping: CPU writes bracketed by the kernel API reach the slot.
        let map = att.map(DmaDirection::Bidirectional).unwrap();
        {
            let mut cpu = buf.begin_cpu_access(DmaDirection::ToDevice).unwrap();
            cpu.fill(0..FRAME, 0x61).unwrap();
        }
        let seen = map.device_read(0..FRAME).unwrap();
        // The end of the bracket syncs every mapped attachment for the device, as the
        // kernel's end_cpu_access does: a bounce copy into the slot (under Minimal, of the
        // written bytes only).
        assert!(all(&seen, 0x61), "{policy:?}");
        drop(map);
        // Map after the bracket: correct under both.
        let map = att.map(DmaDirection::Bidirectional).unwrap();
        assert!(all(&map.device_read(0..FRAME).unwrap(), 0x61), "{policy:?}");
        map.device_fill(0..FRAME, 0x62).unwrap();
        drop(map);
        let mut cpu = buf.begin_cpu_access(DmaDirection::FromDevice).unwrap();
        assert!(all(&cpu.read(0..FRAME).unwrap(), 0x62), "{policy:?}: copied back at unmap");
        drop(cpu);
        assert!(sys.stats().bounce.ops >= 2);

        let display = sys.device("display").unwrap();
        let Err(Error::Attach(e)) = buf.attach(display) else { panic!("a scanout cannot bounce") };
        assert_eq!(e.rule(), "bounce");
    }
}

#[test]
fn release_reports_leaked_attachments_and_mappings() {
    let sys = system("arm64-noncoherent", AttachPolicy::Strict, MaintenancePolicy::Minimal);
    let usb = sys.device("usb").unwrap();
    let buf = sys.heap("system").unwrap().allocate(4096).unwrap();
    let id = buf.id();
    let att = buf.attach(usb).unwrap();
    let map = att.map(DmaDirection::ToDevice).unwrap();
    std::mem::forget(map);
    std::mem::forget(att);
    drop(buf);
    let r = sys.reports();
    assert!(r.contains(&Report::LeakedAttachments { buffer: id, devices: vec![usb] }), "{r:?}");
    assert!(r.contains(&Report::LeakedMappings { buffer: id, devices: vec![usb] }), "{r:?}");
}

#[test]
fn bad_sync_flags_and_double_end_are_refused_and_reported() {
    let sys = system("arm64-noncoherent", AttachPolicy::Strict, MaintenancePolicy::Minimal);
    let buf = sys.heap("system").unwrap().allocate(4096).unwrap();
    let user = buf.mmap().unwrap();
    assert_eq!(raw::sync_ioctl(&user, DMA_BUF_SYNC_END), Err(Error::BadSyncFlags { flags: DMA_BUF_SYNC_END }));
    assert!(raw::sync_ioctl(&user, 0x10 | DMA_BUF_SYNC_READ).is_err());
    raw::sync_ioctl(&user, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ).unwrap();
    let r = sys.reports();
    assert_eq!(r.iter().filter(|x| matches!(x, Report::BadSyncFlags { .. })).count(), 2);
    assert!(r.iter().any(|x| matches!(x, Report::DoubleEnd { .. })));
    assert!(buf.set_name(&"n".repeat(32)).is_err());
    assert!(matches!(sys.heap("carveout"), Err(Error::NoSuchHeap { .. })));
    assert!(sys.device("npu").unwrap_err().to_string().contains("gpu, vdec"));
}

/// On a coherent platform Minimal does no maintenance at all; Linux still walks the
/// caches (on x86 the arch's sync is a no-op, so both are zero).
#[test]
fn minimal_does_nothing_on_a_coherent_platform() {
    let sys = system("x86-pcie", AttachPolicy::Strict, MaintenancePolicy::Minimal);
    let cap = sys.device("capture").unwrap();
    let buf = sys.heap("system").unwrap().allocate(FRAME).unwrap();
    let att = buf.attach(cap).unwrap();
    for i in 0..4u8 {
        let user = buf.mmap().unwrap();
        user.write(0, &[i; 4096]).unwrap();
        let map = att.map(DmaDirection::Bidirectional).unwrap();
        assert!(all(&map.device_read(0..4096).unwrap(), i));
        map.device_fill(0..4096, i + 100).unwrap();
        drop(map);
        assert!(all(&user.read(0..4096).unwrap(), i + 100));
    }
    assert_eq!(sys.stats().maintenance_ops(), 0);
}

#[test]
fn minimal_maintains_only_what_was_written() {
    let mut costs = Vec::new();
    for policy in POLICIES {
        let sys = system("arm64-noncoherent", AttachPolicy::Strict, policy);
        let vdec = sys.device("vdec").unwrap();
        let display = sys.device("display").unwrap();
        let buf = sys.heap("system").unwrap().allocate(1 << 20).unwrap();
        let dec = buf.attach(vdec).unwrap();
        let disp = buf.attach(display).unwrap();
        let user = buf.mmap().unwrap();
        let before = sys.stats().maintenance_bytes();
        for frame in 0..4u8 {
            let m = dec.map(DmaDirection::FromDevice).unwrap();
            m.device_fill(0..1 << 20, frame).unwrap();
            drop(m);
            assert!(all(&user.read(0..4096).unwrap(), frame)); // peek at the header
            user.write(0, &[0xee; 256]).unwrap(); // a small overlay
            let d = disp.map(DmaDirection::ToDevice).unwrap();
            let seen = d.device_read(0..1 << 20).unwrap();
            assert!(all(&seen[..256], 0xee) && all(&seen[256..], frame), "{policy:?}");
        }
        costs.push(sys.stats().maintenance_bytes() - before);
    }
    let (linux, minimal) = (costs[0], costs[1]);
    assert!(linux >= 10 * minimal, "Linux {linux} bytes vs Minimal {minimal}");
}

/// IIO DMA capture (non-coherent) streaming into a USB gadget (coherent) with no CPU
/// access: both keep their mapping; broken without the device-side brackets (the USB
/// controller's snoop hits CPU lines left stale behind the IIO's writes), correct with
/// them.
#[test]
fn iio_to_usb_streaming_needs_device_side_brackets() {
    const BLOCK: u64 = 16 * 1024;
    for policy in POLICIES {
        for bracketed in [false, true] {
            let sys = system("arm64-mixed", AttachPolicy::Strict, policy);
            let (iio, usb) = (sys.device("iio").unwrap(), sys.device("usb").unwrap());
            let buf = sys.heap("system").unwrap().allocate(4 * BLOCK).unwrap();
            let (a_iio, a_usb) = (buf.attach(iio).unwrap(), buf.attach(usb).unwrap());
            let (m_iio, m_usb) =
                (a_iio.map(DmaDirection::FromDevice).unwrap(), a_usb.map(DmaDirection::ToDevice).unwrap());
            let mut good = 0;
            for n in 0..8u64 {
                let r = (n % 4) * BLOCK..(n % 4 + 1) * BLOCK;
                let sample = 0x10 + n as u8;
                if bracketed {
                    let w = m_iio.begin_access(r.clone()).unwrap();
                    m_iio.device_fill(r.clone(), sample).unwrap();
                    w.end().unwrap();
                    let rd = m_usb.begin_access(r.clone()).unwrap();
                    good += all(&m_usb.device_read(r.clone()).unwrap(), sample) as u32;
                    rd.end().unwrap();
                } else {
                    m_iio.device_fill(r.clone(), sample).unwrap();
                    good += all(&m_usb.device_read(r.clone()).unwrap(), sample) as u32;
                }
            }
            assert_eq!(good == 8, bracketed, "{policy:?}, bracketed: {bracketed}: {good}/8 blocks arrived");
        }
    }
}

/// `sync_device_to_device` does only what the pair needs: between two coherent devices
/// without caches, nothing.
#[test]
fn device_to_device_sync_costs_nothing_between_coherent_devices() {
    let sys = system("x86-pcie", AttachPolicy::Strict, MaintenancePolicy::Minimal);
    let (cap, nic) = (sys.device("capture").unwrap(), sys.device("nic").unwrap());
    let buf = sys.heap("system").unwrap().allocate(FRAME).unwrap();
    let (a, b) = (buf.attach(cap).unwrap(), buf.attach(nic).unwrap());
    let (w, r) = (a.map(DmaDirection::FromDevice).unwrap(), b.map(DmaDirection::ToDevice).unwrap());
    let before = sys.stats();
    w.device_fill(0..FRAME, 0x9e).unwrap();
    w.sync_to(&r, 0..FRAME).unwrap();
    assert!(all(&r.device_read(0..FRAME).unwrap(), 0x9e));
    assert_eq!(sys.stats().maintenance_ops(), before.maintenance_ops());

    // A GPU with a private cache hands over to the display: its cache is written back.
    let sys = system("arm64-noncoherent", AttachPolicy::Strict, MaintenancePolicy::Minimal);
    let (gpu, display) = (sys.device("gpu").unwrap(), sys.device("display").unwrap());
    let buf = sys.heap("cma").unwrap().allocate(FRAME).unwrap();
    let (a, b) = (buf.attach(gpu).unwrap(), buf.attach(display).unwrap());
    let (w, r) = (a.map(DmaDirection::FromDevice).unwrap(), b.map(DmaDirection::ToDevice).unwrap());
    w.device_fill(0..FRAME, 0x3d).unwrap();
    assert!(!all(&r.device_read(0..FRAME).unwrap(), 0x3d), "still in the GPU's L2");
    w.sync_to(&r, 0..FRAME).unwrap();
    assert!(all(&r.device_read(0..FRAME).unwrap(), 0x3d));
    assert_eq!(sys.stats().device_flush.ops, 1);
    assert_eq!(sys.stats().clean.ops + sys.stats().invalidate.ops, 1, "one clean of the zeroed pages at allocation");
}

/// A NIC importing dGPU VRAM: allowed with a peer-to-peer path; without one, refused
/// while the buffer is pinned, migrated (with move_notify delivered) when it can move;
/// under the Linux attach policy the attach passes and the map fails on the hardware.
#[test]
fn nic_imports_vram_over_p2p_and_a_device_without_a_path_migrates_it() {
    use std::cell::Cell;
    use std::rc::Rc;

    use dmabuf::AttachPlan;
    use dmabuf::Placement;

    let sys = system("x86-pcie", AttachPolicy::Strict, MaintenancePolicy::Minimal);
    let (dgpu, nic, cap) = (sys.device("dgpu").unwrap(), sys.device("nic").unwrap(), sys.device("capture").unwrap());
    let vram = sys.device_exporter("dgpu").unwrap().allocate(FRAME).unwrap();
    vram.set_name("tensor").unwrap();
    let own = vram.attach(dgpu).unwrap();
    {
        let m = own.map(DmaDirection::FromDevice).unwrap();
        m.device_fill(0..FRAME, 0x7a).unwrap();
    }
    drop(own);

    // The NIC has a path and accepts peer-to-peer buffers.
    let moved = Rc::new(Cell::new(0));
    let seen = moved.clone();
    let a_nic = vram.attach_dynamic(nic, true, move || seen.set(seen.get() + 1)).unwrap();
    assert_eq!(a_nic.plan(), AttachPlan::PeerToPeer);
    {
        let m = a_nic.map(DmaDirection::ToDevice).unwrap();
        assert!(all(&m.device_read(0..FRAME).unwrap(), 0x7a));
    }
    // A static importer without p2p support is refused while the NIC pins the buffer.
    a_nic.pin();
    let Err(Error::Attach(e)) = vram.attach(cap) else { panic!("pinned in VRAM: must be refused") };
    assert_eq!(e.rule(), "p2p");
    a_nic.unpin();
    // Unpinned, the exporter migrates to system memory and tells the NIC.
    let a_cap = vram.attach(cap).unwrap();
    assert_eq!(moved.get(), 1, "move_notify delivered");
    assert_eq!(a_cap.plan(), AttachPlan::Iommu);
    assert_eq!(a_nic.plan(), AttachPlan::Iommu, "the NIC now reaches it in system memory");
    {
        let m = a_cap.map(DmaDirection::ToDevice).unwrap();
        assert!(all(&m.device_read(0..FRAME).unwrap(), 0x7a), "the bytes moved with the buffer");
    }
    // The capture card pins it now: it cannot go back to VRAM.
    assert!(matches!(vram.migrate(Placement::Device), Err(Error::Pinned { .. })));
    drop(a_cap);
    vram.migrate(Placement::Device).unwrap();
    assert_eq!(moved.get(), 2);
    let m = a_nic.map(DmaDirection::ToDevice).unwrap();
    assert!(all(&m.device_read(0..FRAME).unwrap(), 0x7a));
    drop(m);
    drop(a_nic);

    // Under the Linux attach policy the attach passes and the hardware refuses later.
    let sys = system("x86-pcie", AttachPolicy::Linux, MaintenancePolicy::Minimal);
    let (dgpu, cap) = (sys.device("dgpu").unwrap(), sys.device("capture").unwrap());
    let vram = sys.device_exporter("dgpu").unwrap().allocate(FRAME).unwrap();
    let pin = vram.attach(dgpu).unwrap(); // a static importer: pins it in VRAM
    let a_cap = vram.attach(cap).unwrap();
    assert!(matches!(a_cap.map(DmaDirection::ToDevice), Err(Error::Hardware(_))));
    drop((pin, a_cap));
}

/// udmabuf: a dma-buf over a memfd's pages, with the kernel's rules; the pages alias the
/// memfd, and CPU writes through the memfd still need a bracket before a non-coherent
/// device reads them.
#[test]
fn udmabuf_follows_the_kernels_rules_and_aliases_the_memfd() {
    for policy in POLICIES {
        let sys = system("arm64-noncoherent", AttachPolicy::Strict, policy);
        let mut memfd = sys.memfd(8 * 4096).unwrap();
        let refused = |r: Result<dmabuf::DmaBuf, Error>| match r {
            Err(Error::Udmabuf { reason }) => reason,
            _ => panic!("must be refused"),
        };
        assert!(refused(memfd.udmabuf(0, 4096)).contains("F_SEAL_SHRINK"));
        memfd.seal_shrink();
        assert!(refused(memfd.udmabuf(100, 4096)).contains("page size"));
        assert!(refused(memfd.udmabuf(0, 4000)).contains("page size"));
        assert!(refused(memfd.udmabuf(4096, 8 * 4096)).contains("past the end"));
        assert!(refused(memfd.udmabuf(0, 0)).contains("zero"));
        let buf = memfd.udmabuf(2 * 4096, 4 * 4096).unwrap();
        assert_eq!(buf.size(), 4 * 4096);
        assert_eq!(buf.exporter_name(), "udmabuf");

        memfd.write(2 * 4096, &[0x55; 4096]).unwrap();
        let user = buf.mmap().unwrap();
        assert!(all(&user.read(0..4096).unwrap(), 0x55), "the same pages, seen through the dma-buf");
        assert!(sys.with_sim(|s| s.alias_conflicts().is_empty()));

        // The memfd write was never handed over: the Minimal policy, which only knows what
        // was declared, leaves it in the CPU cache; Linux's whole-buffer clean at map hides it.
        let vdec = sys.device("vdec").unwrap();
        let att = buf.attach(vdec).unwrap();
        memfd.write(3 * 4096, &[0x66; 4096]).unwrap();
        let m = att.map(DmaDirection::ToDevice).unwrap();
        let seen = m.device_read(4096..2 * 4096).unwrap();
        assert_eq!(all(&seen, 0x66), policy == MaintenancePolicy::Linux, "{policy:?}");
        drop(m);
        user.write(4096, &[0x67; 4096]).unwrap(); // bracketed through the dma-buf
        let m = att.map(DmaDirection::ToDevice).unwrap();
        assert!(all(&m.device_read(4096..2 * 4096).unwrap(), 0x67), "{policy:?}");
    }
}

/// A custom exporter (a test's stand-in for a driver's GEM objects) sees every
/// `dma_buf_ops` hook at the right moment and may refuse an attach or an mmap.
#[test]
fn custom_exporter_gets_every_hook() {
    use std::cell::RefCell;
    use std::rc::Rc;

    use dmabuf::Backing;
    use dmabuf::Exporter;
    use dmabuf_sim::DeviceDesc;

    struct Gem {
        backing: Backing,
        log: Rc<RefCell<Vec<String>>>,
    }
    impl Exporter for Gem {
        fn name(&self) -> &str {
            "gem"
        }
        fn backing(&self) -> &Backing {
            &self.backing
        }
        fn attach(&mut self, d: &DeviceDesc) -> Result<(), String> {
            self.log.borrow_mut().push(format!("attach {}", d.name));
            if d.name == "usb" { Err("no USB on this object".into()) } else { Ok(()) }
        }
        fn detach(&mut self, d: &DeviceDesc) {
            self.log.borrow_mut().push(format!("detach {}", d.name));
        }
        fn map(&mut self, d: &DeviceDesc, dir: DmaDirection) {
            self.log.borrow_mut().push(format!("map {} {dir:?}", d.name));
        }
        fn unmap(&mut self, d: &DeviceDesc, _: DmaDirection) {
            self.log.borrow_mut().push(format!("unmap {}", d.name));
        }
        fn begin_cpu_access(&mut self, dir: DmaDirection) {
            self.log.borrow_mut().push(format!("begin_cpu_access {dir:?}"));
        }
        fn end_cpu_access(&mut self, _: DmaDirection) {
            self.log.borrow_mut().push("end_cpu_access".into());
        }
        fn mmap(&mut self) -> Result<(), String> {
            Err("not mappable".into())
        }
        fn vmap(&mut self) {
            self.log.borrow_mut().push("vmap".into());
        }
        fn vunmap(&mut self) {
            self.log.borrow_mut().push("vunmap".into());
        }
        fn release(&mut self) {
            self.log.borrow_mut().push("release".into());
        }
    }

    let sys = system("arm64-noncoherent", AttachPolicy::Strict, MaintenancePolicy::Minimal);
    // The object's memory: pages held by a CMA buffer for the whole test.
    let memory = sys.heap("cma").unwrap().allocate(2 * 4096).unwrap();
    let pages = memory.backing();
    let log = Rc::new(RefCell::new(Vec::new()));
    let buf = sys.export(Box::new(Gem { backing: pages, log: log.clone() }));
    let Err(Error::Attach(e)) = buf.attach(sys.device("usb").unwrap()) else { panic!("the exporter refuses") };
    assert_eq!(e.rule(), "exporter");
    assert!(matches!(buf.mmap(), Err(Error::MmapRefused { .. })));
    {
        let att = buf.attach(sys.device("gpu").unwrap()).unwrap();
        let m = att.map(DmaDirection::ToDevice).unwrap();
        drop(m);
    }
    {
        let v = buf.vmap().unwrap();
        v.write(0, &[1; 16]).unwrap(); // outside a bracket: reported
        let cpu = buf.begin_cpu_access(DmaDirection::ToDevice).unwrap();
        v.write(16, &[2; 16]).unwrap(); // inside: declared written
        cpu.end().unwrap();
    }
    drop(buf);
    let outside = sys.reports().iter().filter(|r| matches!(r, Report::AccessOutsideBracket { .. })).count();
    assert_eq!(outside, 1);
    assert_eq!(
        *log.borrow(),
        [
            "attach usb",
            "attach gpu",
            "map gpu ToDevice",
            "unmap gpu",
            "detach gpu",
            "vmap",
            "begin_cpu_access ToDevice",
            "end_cpu_access",
            "vunmap",
            "release"
        ]
    );
}

/// Two GPUs write the two halves of one buffer at the same time; each job's fence goes on
/// the buffer's reservation object as a write while it runs, and the jobs signal them when
/// they complete. The CPU's read bracket (which waits for the writers' fences, as
/// `dma_buf_begin_cpu_access` does) then sees both halves: correct.
#[test]
fn two_gpus_write_halves_ordered_by_fences() {
    use dmabuf::ResvUsage;
    use dmabuf::fence::{Fence, context_alloc};

    for policy in POLICIES {
        let mut platform = Platform::preset("arm64-noncoherent").unwrap();
        let mut gpu2 = platform.devices.iter().find(|d| d.name == "gpu").unwrap().clone();
        gpu2.name = "gpu2".into();
        platform.devices.push(gpu2);
        let sim = Sim::builder(platform).chooser(Adversarial).build();
        let sys = System::new(sim, SystemConfig { attach: AttachPolicy::Strict, maintenance: policy });
        let buf = sys.heap("system").unwrap().allocate(2 * FRAME).unwrap();
        let a1 = buf.attach(sys.device("gpu").unwrap()).unwrap();
        let a2 = buf.attach(sys.device("gpu2").unwrap()).unwrap();
        let (m1, m2) = (a1.map(DmaDirection::FromDevice).unwrap(), a2.map(DmaDirection::FromDevice).unwrap());

        // Both jobs are submitted before either completes: their fences are on the
        // reservation object while they run.
        let ctx = context_alloc(2);
        let (f1, f2) = (Fence::new_software(ctx, 1), Fence::new_software(ctx + 1, 1));
        {
            let resv = buf.resv();
            let mut r = resv.lock();
            r.reserve_fences(2);
            r.add_fence(&f1, ResvUsage::Write).unwrap();
            r.add_fence(&f2, ResvUsage::Write).unwrap();
        }
        assert!(!buf.resv().test_signaled(ResvUsage::Write), "writers still running");
        m1.device_fill(0..FRAME, 0xa1).unwrap();
        m2.device_fill(FRAME..2 * FRAME, 0xa2).unwrap();
        f2.signal().unwrap();
        f1.signal().unwrap();
        drop((m1, m2));

        assert!(buf.resv().test_signaled(ResvUsage::Write));
        let mut cpu = buf.begin_cpu_access(DmaDirection::FromDevice).unwrap();
        let bytes = cpu.read(0..2 * FRAME).unwrap();
        drop(cpu);
        assert!(all(&bytes[..FRAME as usize], 0xa1), "{policy:?}: first half");
        assert!(all(&bytes[FRAME as usize..], 0xa2), "{policy:?}: second half");
    }
}

/// A migration refused because user space is inside a sync ioctl bracket says that, not
/// that the buffer is mmapped (the mapping may be gone while the bracket stays open).
#[test]
fn a_migration_refused_for_an_open_sync_bracket_names_the_bracket() {
    let sys = system("x86-pcie", AttachPolicy::Strict, MaintenancePolicy::Minimal);
    let vram = sys.device_exporter("dgpu").unwrap().allocate(FRAME).unwrap();
    let m = vram.mmap().unwrap();
    raw::sync_ioctl(&m, dmabuf::DMA_BUF_SYNC_START | dmabuf::DMA_BUF_SYNC_READ).unwrap();
    let Err(Error::Busy { what, .. }) = vram.migrate(dmabuf::Placement::System) else { panic!("mmapped: busy") };
    assert!(what.contains("mmapped"), "{what}");
    drop(m);
    let Err(Error::Busy { what, .. }) = vram.migrate(dmabuf::Placement::System) else { panic!("in a bracket: busy") };
    assert!(what.contains("sync ioctl bracket") && !what.contains("mmapped"), "{what}");
}
