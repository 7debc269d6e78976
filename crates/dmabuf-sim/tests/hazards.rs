//! Every hazard of the coherency model, once where it happens without the right
//! maintenance and once where the right maintenance removes it. Each test asserts bytes.

use dmabuf_sim::{
    Adversarial, BusAddr, CacheId, DmaAttrs, DmaDirection, Freedom, LineState, MemAttr, Never, PhysAddr, PhysRange,
    Platform, Sim, SimError,
};

const DRAM: u64 = 0x4000_0000; // arm64-noncoherent's DRAM base
const LEN: u64 = 16 * 1024;

fn sim(preset: &str) -> Sim {
    Sim::builder(Platform::preset(preset).unwrap()).chooser(Never).build()
}

fn adversarial(preset: &str) -> Sim {
    Sim::builder(Platform::preset(preset).unwrap()).chooser(Adversarial).build()
}

fn buf(base: u64) -> PhysRange {
    PhysRange::new(PhysAddr(base), LEN).unwrap()
}

fn dev_read(sim: &mut Sim, dev: &str, bus: u64, len: u64) -> Vec<u8> {
    let d = sim.device(dev).unwrap();
    let mut v = vec![0; len as usize];
    sim.device_read(d, BusAddr(bus), &mut v).unwrap();
    v
}

fn cpu_read(sim: &mut Sim, map: dmabuf_sim::CpuMapId, len: u64) -> Vec<u8> {
    let mut v = vec![0; len as usize];
    sim.cpu_read(map, 0, &mut v).unwrap();
    v
}

fn all(v: &[u8], b: u8) -> bool {
    v.iter().all(|&x| x == b)
}

// 1. A dirty CPU line and a non-coherent device read.

#[test]
fn dirty_cpu_line_is_invisible_to_a_noncoherent_device() {
    let mut s = sim("arm64-noncoherent");
    let m = s.cpu_map(&[buf(DRAM)], MemAttr::Cached).unwrap();
    s.cpu_fill(m, 0, LEN, 0x5a).unwrap();
    assert!(all(&dev_read(&mut s, "usb", DRAM, LEN), 0), "the device must read stale DRAM");
}

#[test]
fn clean_before_the_device_read_makes_cpu_data_visible() {
    let mut s = sim("arm64-noncoherent");
    let m = s.cpu_map(&[buf(DRAM)], MemAttr::Cached).unwrap();
    s.cpu_fill(m, 0, LEN, 0x5a).unwrap();
    let usb = s.device("usb").unwrap();
    let map = s.dma_map(usb, &[buf(DRAM)], DmaDirection::ToDevice, DmaAttrs::default()).unwrap();
    assert!(all(&dev_read(&mut s, "usb", DRAM, LEN), 0x5a));
    s.dma_unmap(map, DmaAttrs::default()).unwrap();
    assert_eq!(s.stats().clean.ops, 1);
    assert_eq!(s.stats().clean.lines, LEN / 64);
    assert_eq!(s.stats().clean.effective_lines, LEN / 64);
}

// 2. A stale clean CPU line after a device write.

#[test]
fn stale_clean_line_after_a_device_write() {
    let mut s = sim("arm64-noncoherent");
    let m = s.cpu_map(&[buf(DRAM)], MemAttr::Cached).unwrap();
    assert!(all(&cpu_read(&mut s, m, LEN), 0)); // the CPU now holds clean lines
    let usb = s.device("usb").unwrap();
    s.device_fill(usb, BusAddr(DRAM), LEN, 0xd0).unwrap();
    assert!(all(&cpu_read(&mut s, m, LEN), 0), "the CPU must still see its stale lines");
}

#[test]
fn invalidate_after_a_device_write_shows_the_new_data() {
    let mut s = sim("arm64-noncoherent");
    let m = s.cpu_map(&[buf(DRAM)], MemAttr::Cached).unwrap();
    cpu_read(&mut s, m, LEN);
    let usb = s.device("usb").unwrap();
    let map = s.dma_map(usb, &[buf(DRAM)], DmaDirection::FromDevice, DmaAttrs::default()).unwrap();
    s.device_fill(usb, BusAddr(DRAM), LEN, 0xd0).unwrap();
    s.dma_unmap(map, DmaAttrs::default()).unwrap();
    assert!(all(&cpu_read(&mut s, m, LEN), 0xd0));
}

// 3. A speculative prefetch during a FROM_DEVICE transfer.

#[test]
fn prefetch_during_from_device_transfer_needs_the_invalidate_after() {
    for profile_preset in ["arm64-noncoherent", "riscv-noncoherent"] {
        let base = Platform::preset(profile_preset).unwrap().regions[0].base.0;
        let mut s = adversarial(profile_preset);
        let usb = s.device("usb").unwrap();
        let m = s.cpu_map(&[buf(base)], MemAttr::Cached).unwrap();
        // The CPU never touched the buffer; map cleans it, and the adversary prefetches
        // the lines right after: they hold the old (zero) bytes.
        let map = s.dma_map(usb, &[buf(base)], DmaDirection::FromDevice, DmaAttrs::default()).unwrap();
        assert_eq!(s.line_state(CacheId::Cpu, PhysAddr(base)), LineState::Clean, "{profile_preset}");
        s.device_fill(usb, BusAddr(base), LEN, 0xca).unwrap();
        // Forgetting the unmap's invalidate (skip the CPU sync): stale.
        s.dma_unmap(map.clone(), DmaAttrs { skip_cpu_sync: true }).unwrap();
        assert!(all(&cpu_read(&mut s, m, LEN), 0), "{profile_preset}: the prefetched lines must be stale");
    }
}

#[test]
fn prefetch_during_from_device_transfer_is_harmless_with_unmap() {
    let mut s = adversarial("arm64-noncoherent");
    let usb = s.device("usb").unwrap();
    let m = s.cpu_map(&[buf(DRAM)], MemAttr::Cached).unwrap();
    let map = s.dma_map(usb, &[buf(DRAM)], DmaDirection::FromDevice, DmaAttrs::default()).unwrap();
    s.device_fill(usb, BusAddr(DRAM), LEN, 0xca).unwrap();
    s.dma_unmap(map, DmaAttrs::default()).unwrap();
    assert!(all(&cpu_read(&mut s, m, LEN), 0xca));
}

#[test]
fn invalidate_before_alone_does_not_survive_a_prefetch() {
    // The older profile invalidates at map for FROM_DEVICE; a prefetch after that still
    // refills stale lines, so the invalidate at unmap is needed as well.
    let mut p = Platform::preset("arm64-noncoherent").unwrap();
    p.dma_profile = dmabuf_sim::DmaProfile::InvalidateBeforeFromDevice;
    let mut s = Sim::builder(p).chooser(Never).build();
    let usb = s.device("usb").unwrap();
    let m = s.cpu_map(&[buf(DRAM)], MemAttr::Cached).unwrap();
    let map = s.dma_map(usb, &[buf(DRAM)], DmaDirection::FromDevice, DmaAttrs::default()).unwrap();
    assert_eq!(s.stats().invalidate.ops, 1);
    assert!(s.take_freedom(Freedom::Prefetch { line: PhysAddr(DRAM) }));
    s.device_fill(usb, BusAddr(DRAM), LEN, 0xca).unwrap();
    let mut first = [0u8; 64];
    s.cpu_read(m, 0, &mut first).unwrap();
    assert_eq!(first, [0; 64], "stale prefetched line");
    s.dma_unmap(map, DmaAttrs::default()).unwrap();
    s.cpu_read(m, 0, &mut first).unwrap();
    assert_eq!(first, [0xca; 64]);
}

// 4. A write-back of an old dirty line over device data: a lost write.

#[test]
fn old_dirty_line_written_back_over_device_data_loses_the_write() {
    let mut s = adversarial("arm64-noncoherent");
    let usb = s.device("usb").unwrap();
    let m = s.cpu_map(&[buf(DRAM)], MemAttr::Cached).unwrap();
    s.cpu_fill(m, 0, LEN, 0x11).unwrap(); // dirty, never cleaned
    s.device_fill(usb, BusAddr(DRAM), LEN, 0x22).unwrap();
    // The adversary wrote the old dirty lines back right after the device's write.
    let mut mem = vec![0; LEN as usize];
    s.peek_memory(PhysAddr(DRAM), &mut mem);
    assert!(all(&mem, 0x11), "the device's bytes were destroyed in memory");
    assert!(s.stats().hw.freedom_write_backs >= LEN / 64);
}

#[test]
fn clean_before_the_device_write_keeps_the_device_data() {
    let mut s = adversarial("arm64-noncoherent");
    let usb = s.device("usb").unwrap();
    let m = s.cpu_map(&[buf(DRAM)], MemAttr::Cached).unwrap();
    s.cpu_fill(m, 0, LEN, 0x11).unwrap();
    let map = s.dma_map(usb, &[buf(DRAM)], DmaDirection::FromDevice, DmaAttrs::default()).unwrap();
    s.device_fill(usb, BusAddr(DRAM), LEN, 0x22).unwrap();
    s.dma_unmap(map, DmaAttrs::default()).unwrap();
    let mut mem = vec![0; LEN as usize];
    s.peek_memory(PhysAddr(DRAM), &mut mem);
    assert!(all(&mem, 0x22));
    assert!(all(&cpu_read(&mut s, m, LEN), 0x22));
}

// 5. A coherent device sees the dirty line.

#[test]
fn coherent_device_snoops_dirty_lines_and_invalidates_on_write() {
    let mut s = adversarial("x86-pcie");
    let dram = 0x1_0000_0000;
    let m = s.cpu_map(&[buf(dram)], MemAttr::Cached).unwrap();
    s.cpu_fill(m, 0, LEN, 0x77).unwrap();
    let cap = s.device("capture").unwrap();
    let map = s.dma_map(cap, &[buf(dram)], DmaDirection::Bidirectional, DmaAttrs::default()).unwrap();
    assert_eq!(s.stats().maintenance_ops(), 0, "no maintenance for a coherent device");
    let mut v = vec![0; LEN as usize];
    let bus = map.bus_address(0).unwrap();
    s.device_read(cap, bus, &mut v).unwrap();
    assert!(all(&v, 0x77), "the coherent device sees the dirty lines");
    s.device_fill(cap, bus, LEN, 0x78).unwrap();
    assert!(all(&cpu_read(&mut s, m, LEN), 0x78), "its write invalidated the CPU's lines");
    s.dma_unmap(map, DmaAttrs::default()).unwrap();
    assert_eq!(s.stats().maintenance_ops(), 0);
}

#[test]
fn coherent_write_of_part_of_a_dirty_line_keeps_the_rest() {
    let mut s = sim("x86-pcie");
    let dram = 0x1_0000_0000;
    let m = s.cpu_map(&[buf(dram)], MemAttr::Cached).unwrap();
    s.cpu_fill(m, 0, 64, 0x33).unwrap();
    let cap = s.device("capture").unwrap();
    let map = s.dma_map(cap, &[buf(dram)], DmaDirection::FromDevice, DmaAttrs::default()).unwrap();
    s.device_fill(cap, map.bus_address(16).unwrap(), 16, 0x44).unwrap();
    let mut v = [0u8; 64];
    s.cpu_read(m, 0, &mut v).unwrap();
    assert!(all(&v[..16], 0x33) && all(&v[16..32], 0x44) && all(&v[32..], 0x33), "{v:?}");
}

// 6. A write-combined write not drained before a device read.

#[test]
fn write_combined_bytes_wait_in_the_buffer_until_a_barrier() {
    let mut s = sim("arm64-noncoherent");
    let m = s.cpu_map(&[buf(DRAM)], MemAttr::WriteCombine).unwrap();
    s.cpu_fill(m, 0, 128, 0x9c).unwrap(); // two lines: fit in the 4-line buffer
    assert_eq!(s.wc_pending_lines(), 2);
    assert!(all(&dev_read(&mut s, "usb", DRAM, 128), 0), "not drained yet");
    assert!(all(&cpu_read(&mut s, m, 128), 0x9c), "the CPU sees its own pending writes");
    s.cpu_barrier();
    assert_eq!(s.wc_pending_lines(), 0);
    assert!(all(&dev_read(&mut s, "usb", DRAM, 128), 0x9c));
}

/// A store to many lines at once drains most of them straight to memory: it must leave
/// memory and the buffer exactly as storing the same bytes line by line does, including
/// lines already waiting in the buffer (one inside the store, one outside it).
#[test]
fn a_long_write_combined_store_ends_as_line_by_line_stores_do() {
    let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    let run = |piecewise: bool| {
        let mut s = sim("arm64-noncoherent");
        let m = s.cpu_map(&[buf(DRAM)], MemAttr::WriteCombine).unwrap();
        s.cpu_fill(m, 2 * 64, 64, 0x11).unwrap();
        s.cpu_fill(m, LEN - 64, 32, 0x22).unwrap();
        let (from, to) = (100, LEN - 300);
        if piecewise {
            let mut at = from;
            while at < to {
                let n = (64 - at % 64).min(to - at);
                s.cpu_write(m, at, &data[at as usize..(at + n) as usize]).unwrap();
                at += n;
            }
        } else {
            s.cpu_write(m, from, &data[from as usize..to as usize]).unwrap();
        }
        let mut mem = vec![0; LEN as usize];
        s.peek_memory(PhysAddr(DRAM), &mut mem);
        let seen = cpu_read(&mut s, m, LEN);
        (mem, s.wc_pending_lines(), seen)
    };
    let (bulk, lines) = (run(false), run(true));
    assert_eq!(bulk.1, 4, "the buffer holds its four lines");
    assert_eq!(bulk.1, lines.1);
    assert!(bulk.0 == lines.0, "memory differs");
    assert!(bulk.2 == lines.2, "what the CPU sees differs");
}

#[test]
fn write_combined_buffer_drains_oldest_when_full() {
    let mut s = sim("arm64-noncoherent");
    let m = s.cpu_map(&[buf(DRAM)], MemAttr::WriteCombine).unwrap();
    s.cpu_fill(m, 0, LEN, 0x9c).unwrap();
    let v = dev_read(&mut s, "usb", DRAM, LEN);
    assert!(all(&v[..(LEN - 4 * 64) as usize], 0x9c));
    assert!(all(&v[(LEN - 4 * 64) as usize..], 0), "the last four lines are still buffered");
    // No cache maintenance is ever needed for write-combined memory.
    s.cpu_barrier();
    assert!(all(&dev_read(&mut s, "usb", DRAM, LEN), 0x9c));
    assert_eq!(s.stats().maintenance_ops(), 0);
}

// 7. A bounced mapping without sync.

const HIGH: u64 = 0x1_0000_0000; // arm64-dma32: above the 30-bit reach

#[test]
fn bounced_mapping_without_sync_loses_data_both_ways() {
    let mut s = sim("arm64-dma32");
    let dma = s.device("legacy-dma").unwrap();
    let m = s.cpu_map(&[buf(HIGH)], MemAttr::Cached).unwrap();
    s.cpu_fill(m, 0, LEN, 0x61).unwrap();
    s.cache_clean(buf(HIGH)).unwrap();
    let skip = DmaAttrs { skip_cpu_sync: true };
    let map = s.dma_map(dma, &[buf(HIGH)], DmaDirection::Bidirectional, skip).unwrap();
    assert!(map.is_bounced());
    let bus = map.bus_address(0).unwrap();
    assert!(bus.raw() < 1 << 30);
    let mut v = vec![0; LEN as usize];
    s.device_read(dma, bus, &mut v).unwrap();
    assert!(all(&v, 0), "the device reads an unsynced bounce slot");
    s.device_fill(dma, bus, LEN, 0x62).unwrap();
    s.dma_unmap(map, skip).unwrap();
    assert!(all(&cpu_read(&mut s, m, LEN), 0x61), "the device's write never reached the buffer");
    assert_eq!(s.bounce_in_use(), 0);
}

#[test]
fn bounced_mapping_with_syncs_is_correct() {
    let mut s = adversarial("arm64-dma32");
    let dma = s.device("legacy-dma").unwrap();
    let m = s.cpu_map(&[buf(HIGH)], MemAttr::Cached).unwrap();
    s.cpu_fill(m, 0, LEN, 0x61).unwrap();
    let map = s.dma_map(dma, &[buf(HIGH)], DmaDirection::Bidirectional, DmaAttrs::default()).unwrap();
    let bus = map.bus_address(0).unwrap();
    let mut v = vec![0; LEN as usize];
    s.device_read(dma, bus, &mut v).unwrap();
    assert!(all(&v, 0x61));
    s.device_fill(dma, bus, LEN, 0x62).unwrap();
    s.dma_unmap(map, DmaAttrs::default()).unwrap();
    assert!(all(&cpu_read(&mut s, m, LEN), 0x62));
    assert_eq!(s.stats().bounce.ops, 2);
    assert_eq!(s.stats().bounce.bytes, 2 * LEN);
}

#[test]
fn bouncing_is_needed_even_on_a_coherent_machine() {
    // x86's devices all snoop, but a 32-bit mask still bounces; forgetting the sync loses
    // the data there too.
    let mut p = Platform::preset("x86-pcie").unwrap();
    let cap = p.device_index("capture").unwrap();
    p.devices[cap].dma_mask = 32;
    p.devices[cap].iommu = false;
    let mut s = Sim::new(p);
    let dev = s.device("capture").unwrap();
    let dram = 0x1_0000_0000;
    let map = s.dma_map(dev, &[buf(dram)], DmaDirection::FromDevice, DmaAttrs::default()).unwrap();
    assert!(map.is_bounced());
    s.device_fill(dev, map.bus_address(0).unwrap(), LEN, 0x5e).unwrap();
    let m = s.cpu_map(&[buf(dram)], MemAttr::Cached).unwrap();
    assert!(all(&cpu_read(&mut s, m, LEN), 0), "before sync_for_cpu the data sits in the slot");
    s.dma_sync_for_cpu(&map, 0, LEN).unwrap();
    assert!(all(&cpu_read(&mut s, m, LEN), 0x5e));
    s.dma_unmap(map, DmaAttrs { skip_cpu_sync: true }).unwrap();
}

// 8. A device-cache write not flushed (and a stale device-cache line).

#[test]
fn device_cache_write_is_invisible_until_flushed() {
    let mut s = sim("arm64-noncoherent");
    let gpu = s.device("gpu").unwrap();
    let m = s.cpu_map(&[buf(DRAM)], MemAttr::Cached).unwrap();
    s.device_fill(gpu, BusAddr(DRAM), LEN, 0xe1).unwrap();
    s.cache_invalidate(buf(DRAM)).unwrap();
    assert!(all(&cpu_read(&mut s, m, LEN), 0), "the GPU's bytes are still in its L2");
    s.device_cache_flush(gpu, buf(DRAM)).unwrap();
    s.cache_invalidate(buf(DRAM)).unwrap();
    assert!(all(&cpu_read(&mut s, m, LEN), 0xe1));
    assert_eq!(s.stats().device_flush.effective_lines, LEN / 64);
}

#[test]
fn device_cache_serves_stale_lines_until_invalidated() {
    let mut s = sim("arm64-noncoherent");
    let gpu = s.device("gpu").unwrap();
    let m = s.cpu_map(&[buf(DRAM)], MemAttr::Cached).unwrap();
    assert!(all(&dev_read(&mut s, "gpu", DRAM, LEN), 0));
    s.cpu_fill(m, 0, LEN, 0x3f).unwrap();
    s.cache_clean(buf(DRAM)).unwrap();
    assert!(all(&dev_read(&mut s, "gpu", DRAM, LEN), 0), "stale hits in the GPU's L2");
    s.device_cache_invalidate(gpu, buf(DRAM)).unwrap();
    assert!(all(&dev_read(&mut s, "gpu", DRAM, LEN), 0x3f));
}

// 9. A mismatched alias.

#[test]
fn mismatched_alias_is_detected_and_serves_stale_data() {
    let mut s = sim("arm64-noncoherent");
    let page = PhysRange::new(PhysAddr(DRAM), 4096).unwrap();
    let wc = s.cpu_map(&[page], MemAttr::WriteCombine).unwrap();
    let cached = s.cpu_map(&[page], MemAttr::Cached).unwrap();
    assert_eq!(s.alias_conflicts().len(), 1);
    assert_eq!(s.alias_conflicts()[0].existing, MemAttr::WriteCombine);
    assert_eq!(s.alias_conflicts()[0].new, MemAttr::Cached);
    let mut v = [0u8; 64];
    s.cpu_read(cached, 0, &mut v).unwrap(); // a line of zeros in the cache
    s.cpu_fill(wc, 0, 64, 0x80).unwrap();
    s.cpu_barrier();
    s.cpu_read(cached, 0, &mut v).unwrap();
    assert_eq!(v, [0; 64], "the cached alias never sees the write-combined store");
}

#[test]
fn same_attribute_mappings_are_not_an_alias_conflict() {
    let mut s = sim("arm64-noncoherent");
    let page = PhysRange::new(PhysAddr(DRAM), 4096).unwrap();
    let a = s.cpu_map(&[page], MemAttr::Cached).unwrap();
    s.cpu_map(&[page], MemAttr::Cached).unwrap();
    s.cpu_unmap(a).unwrap();
    s.cpu_map(&[page], MemAttr::Cached).unwrap();
    assert!(s.alias_conflicts().is_empty());
}

// Rules the hardware enforces.

#[test]
fn device_access_above_its_mask_or_out_of_reach_is_refused() {
    let mut s = sim("arm64-dma32");
    let dma = s.device("legacy-dma").unwrap();
    let mut v = [0u8; 16];
    let e = s.device_read(dma, BusAddr(HIGH), &mut v).unwrap_err();
    assert!(matches!(e, SimError::AboveDmaMask { bits: 30, .. }), "{e}");
    let mut s = sim("x86-pcie");
    let cap = s.device("capture").unwrap();
    let vram = PhysRange::new(PhysAddr(0x40_0000_0000), 4096).unwrap();
    let e = s.dma_map(cap, &[vram], DmaDirection::ToDevice, DmaAttrs::default()).unwrap_err();
    assert!(e.to_string().contains("no path to") && e.to_string().contains("vram"), "{e}");
    let nic = s.device("nic").unwrap();
    let map = s.dma_map(nic, &[vram], DmaDirection::ToDevice, DmaAttrs::default()).unwrap();
    s.device_read(nic, map.bus_address(0).unwrap(), &mut v).unwrap();
}

#[test]
fn iommu_faults_on_unmapped_iova_and_maps_scattered_pages_contiguously() {
    let mut s = sim("arm64-noncoherent");
    let vdec = s.device("vdec").unwrap();
    let mut v = [0u8; 16];
    assert!(matches!(s.device_read(vdec, BusAddr(0x10_0000), &mut v), Err(SimError::IommuFault { .. })));
    let a = PhysRange::new(PhysAddr(DRAM + 0x10_0000), 4096).unwrap();
    let b = PhysRange::new(PhysAddr(DRAM + 0x30_0000), 4096).unwrap();
    let map = s.dma_map(vdec, &[a, b], DmaDirection::FromDevice, DmaAttrs::default()).unwrap();
    assert!(map.is_contiguous());
    s.device_fill(vdec, map.bus_address(0).unwrap(), 8192, 0x42).unwrap();
    let mut mem = vec![0u8; 4096];
    s.peek_memory(PhysAddr(DRAM + 0x30_0000), &mut mem);
    assert!(all(&mem, 0x42));
    let bus = map.bus_address(0).unwrap();
    s.dma_unmap(map, DmaAttrs::default()).unwrap();
    assert!(matches!(s.device_read(vdec, bus, &mut v), Err(SimError::IommuFault { .. })));
}

#[test]
fn unmapped_cpu_mapping_and_out_of_bounds_access_are_errors() {
    let mut s = sim("arm64-noncoherent");
    let m = s.cpu_map(&[buf(DRAM)], MemAttr::Cached).unwrap();
    let mut v = [0u8; 16];
    assert!(matches!(s.cpu_read(m, LEN - 8, &mut v), Err(SimError::OutsideMapping { .. })));
    assert!(matches!(s.cpu_read(m, u64::MAX, &mut v), Err(SimError::OutsideMapping { .. })));
    s.cpu_unmap(m).unwrap();
    assert_eq!(s.cpu_read(m, 0, &mut v), Err(SimError::NoSuchMapping(m)));
    let bad = PhysRange::new(PhysAddr(0x10), 4096).unwrap();
    assert!(matches!(s.cpu_map(&[bad], MemAttr::Cached), Err(SimError::Unaligned { .. })));
    let outside = PhysRange::new(PhysAddr(0x1000), 4096).unwrap();
    assert!(matches!(s.cpu_map(&[outside], MemAttr::Cached), Err(SimError::NotInRegion { .. })));
}

#[test]
fn eight_gib_of_dram_costs_only_the_pages_touched() {
    let mut s = sim("riscv-noncoherent");
    let dram = PhysRange::new(PhysAddr(0x8000_0000), 8 << 30).unwrap();
    let m = s.cpu_map(&[dram], MemAttr::Uncached).unwrap();
    s.cpu_fill(m, (8 << 30) - 4096, 4096, 1).unwrap();
    s.cpu_fill(m, 0, 10, 2).unwrap();
    assert_eq!(s.resident_pages(), 2);
}

// 10. Mixed coherency: a stale clean CPU line reaches a coherent reader.

#[test]
fn coherent_reader_hits_a_line_left_stale_by_a_noncoherent_writer() {
    for invalidate in [false, true] {
        let mut s = sim("arm64-mixed");
        let (hp, acp) = (s.device("fpga-hp").unwrap(), s.device("fpga-acp").unwrap());
        let r = PhysRange::new(PhysAddr(0x10_0000), 4096).unwrap();
        let m = s.cpu_map(&[r], MemAttr::Cached).unwrap();
        let mut v = [0u8; 64];
        s.cpu_read(m, 0, &mut v).unwrap(); // a clean line of zeros
        s.device_fill(hp, BusAddr(0x10_0000), 4096, 0xab).unwrap(); // straight to DRAM
        if invalidate {
            s.cache_invalidate(r).unwrap();
        }
        s.device_read(acp, BusAddr(0x10_0000), &mut v).unwrap();
        assert_eq!(all(&v, 0xab), invalidate, "the snoop hits the stale line unless it was invalidated");
    }
}
