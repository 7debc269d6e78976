//! What a board states and the simulator must do: DMA windows (a bus offset, a lower
//! bound, any size) in device accesses and the streaming DMA layer, an IOMMU's input
//! width, and a system-level cache that some agents bypass, with maintenance to the point
//! of coherency reaching it. Each test asserts bytes or addresses.

use dmabuf_sim::{
    BusAddr, CacheId, DmaAttrs, DmaDirection, Freedom, MemAttr, Never, PhysAddr, PhysRange, Platform, Sim, SimError,
};

/// A board like bcm2711: DRAM at 0, a legacy master that sees physical 0..1 GiB at bus
/// 0xc000_0000, a PCIe root complex reaching 3 GiB, a USB3 controller that reaches 1 GiB to
/// 4 GiB only (imx8mp), and a bounce pool in the low 1 GiB.
const BOARD: &str = r#"
name = "board"
dma_profile = "arm64"
[cpu]
[[region]]
name = "dram"
kind = "dram"
base = 0x0
size = "8GiB"
[[region]]
name = "swiotlb"
kind = "bounce"
base = "0x2_0000_0000"
size = "64MiB"
[[device]]
name = "legacy"
dma_mask = 32
dma_windows = [{ cpu = 0x0, bus = 0xc000_0000, size = "1GiB" }]
[[device]]
name = "usb3"
dma_mask = 32
dma_windows = [{ cpu = 0x4000_0000, bus = 0x4000_0000, size = "3GiB" }]
"#;

fn board() -> Sim {
    Sim::builder(Platform::from_toml(BOARD, "board.toml").unwrap()).chooser(Never).build()
}

fn page(a: u64) -> PhysRange {
    PhysRange::new(PhysAddr(a), 4096).unwrap()
}

#[test]
fn a_legacy_master_reads_physical_memory_at_its_bus_offset() {
    let mut s = board();
    let legacy = s.device("legacy").unwrap();
    let m = s.cpu_map(&[page(0x1000)], MemAttr::Uncached).unwrap();
    s.cpu_fill(m, 0, 4096, 0x5a).unwrap();
    let mut seen = [0u8; 64];
    s.device_read(legacy, BusAddr(0xc000_1000), &mut seen).unwrap();
    assert_eq!(seen, [0x5a; 64], "bus 0xc000_1000 is physical 0x1000");
    let e = s.device_read(legacy, BusAddr(0x1000), &mut seen).unwrap_err();
    assert!(matches!(e, SimError::OutsideDmaWindow { .. }), "{e}");
    // The streaming DMA layer hands out the bus address, not the physical one.
    let mapping = s.dma_map(legacy, &[page(0x1000)], DmaDirection::ToDevice, DmaAttrs::default()).unwrap();
    assert_eq!(mapping.segments[0].bus, BusAddr(0xc000_1000));
    assert!(!mapping.is_bounced());
    s.dma_unmap(mapping, DmaAttrs::default()).unwrap();
}

#[test]
fn a_page_outside_the_window_is_bounced_through_a_slot_inside_it() {
    let mut s = board();
    let usb3 = s.device("usb3").unwrap();
    // Below the window's lower bound: the pool at 8 GiB is above the 32-bit mask, so
    // nothing can be bounced and the map fails, leaving nothing behind.
    let e = s.dma_map(usb3, &[page(0x1000)], DmaDirection::ToDevice, DmaAttrs::default()).unwrap_err();
    assert!(matches!(e, SimError::BounceExhausted { .. }), "{e}");
    assert_eq!(s.bounce_in_use(), 0);
    // Inside the window: direct, at its own address (no offset).
    let m = s.dma_map(usb3, &[page(0x4000_0000)], DmaDirection::ToDevice, DmaAttrs::default()).unwrap();
    assert_eq!(m.segments[0].bus, BusAddr(0x4000_0000));
}

#[test]
fn a_bounce_slot_is_taken_where_the_device_can_address_it() {
    let text = BOARD
        .replace("base = 0x0\nsize = \"8GiB\"", "base = 0x0\nsize = \"768MiB\"")
        .replace("base = \"0x2_0000_0000\"", "base = \"0x3000_0000\"")
        .replace("[[device]]\nname = \"legacy\"", "[[region]]\nname = \"high\"\nkind = \"dram\"\nbase = \"0x1_0000_0000\"\nsize = \"1GiB\"\n[[device]]\nname = \"legacy\"");
    let mut s = Sim::builder(Platform::from_toml(&text, "b.toml").unwrap()).chooser(Never).build();
    let legacy = s.device("legacy").unwrap();
    let high = page(0x1_0000_0000);
    let m = s.cpu_map(&[high], MemAttr::Cached).unwrap();
    s.cpu_fill(m, 0, 4096, 0x33).unwrap();
    let mapping = s.dma_map(legacy, &[high], DmaDirection::ToDevice, DmaAttrs::default()).unwrap();
    let seg = mapping.segments[0];
    let slot = seg.bounce.expect("bounced");
    assert!(slot.raw() >= 0x3000_0000 && slot.raw() < 0x3400_0000, "in the pool, inside the window");
    assert_eq!(seg.bus, BusAddr(slot.raw() + 0xc000_0000), "seen through the window's offset");
    let mut seen = [0u8; 64];
    s.device_read(legacy, seg.bus, &mut seen).unwrap();
    assert_eq!(seen, [0x33; 64], "the bounce copy and the clean put the bytes where the device looks");
}

#[test]
fn an_iommu_hands_out_iovas_below_its_input_width() {
    let text = r#"
name = "m"
dma_profile = "arm64"
[cpu]
[[region]]
name = "dram"
kind = "dram"
base = "0x1_0000_0000"
size = "1GiB"
[[iommu]]
name = "mmu"
input_bits = 32
[[device]]
name = "vop"
dma_mask = 40
iommu_unit = "mmu"
"#;
    let mut s = Sim::new(Platform::from_toml(text, "m.toml").unwrap());
    let vop = s.device("vop").unwrap();
    let m = s.dma_map(vop, &[page(0x1_0000_0000)], DmaDirection::ToDevice, DmaAttrs::default()).unwrap();
    assert!(m.segments[0].bus.raw() < 1 << 32, "{:?}", m.segments[0].bus);
    // 4 GiB of IOVA space: a 5 GiB mapping cannot fit although the mask would allow it.
    let big = PhysRange::new(PhysAddr(0x1_0000_0000), 1 << 30).unwrap();
    let many: Vec<_> = (0..5).map(|_| big).collect();
    assert!(matches!(s.iommu_map_pages(vop, &many), Err(SimError::IovaExhausted { .. })));
}

/// The CPU and a GPU go through a system cache; the display bypasses it.
const SLC: &str = r#"
name = "slc"
dma_profile = "arm64"
[cpu]
[[region]]
name = "dram"
kind = "dram"
base = 0x4000_0000
size = "1GiB"
[[device]]
name = "gpu"
dma_mask = 40
[[device]]
name = "display"
dma_mask = 40
[[system_cache]]
name = "llcc"
masters = ["cpu", "gpu"]
"#;

fn slc() -> Sim {
    Sim::builder(Platform::from_toml(SLC, "slc.toml").unwrap()).chooser(Never).build()
}

fn read(s: &mut Sim, dev: &str, at: u64) -> [u8; 64] {
    let d = s.device(dev).unwrap();
    let mut v = [0u8; 64];
    s.device_read(d, BusAddr(at), &mut v).unwrap();
    v
}

#[test]
fn a_cpu_line_written_back_lands_in_the_system_cache_not_in_dram() {
    let mut s = slc();
    let m = s.cpu_map(&[page(0x4000_0000)], MemAttr::Cached).unwrap();
    s.cpu_fill(m, 0, 64, 0x77).unwrap();
    // The CPU cache writes the line back on its own: it goes to the system cache.
    assert!(s.take_freedom(Freedom::WriteBack { cache: CacheId::Cpu, line: PhysAddr(0x4000_0000) }));
    assert_eq!(read(&mut s, "gpu", 0x4000_0000), [0x77; 64], "the GPU goes through the system cache");
    assert_eq!(read(&mut s, "display", 0x4000_0000), [0; 64], "the display reads DRAM");
    let mut dram = [0u8; 64];
    s.peek_memory(PhysAddr(0x4000_0000), &mut dram);
    assert_eq!(dram, [0; 64]);
}

#[test]
fn a_clean_to_the_point_of_coherency_reaches_dram_through_the_system_cache() {
    let mut s = slc();
    let m = s.cpu_map(&[page(0x4000_0000)], MemAttr::Cached).unwrap();
    s.cpu_fill(m, 0, 4096, 0x5a).unwrap();
    s.cache_clean(page(0x4000_0000)).unwrap();
    assert_eq!(read(&mut s, "display", 0x4000_0000), [0x5a; 64], "dcache_clean_poc: visible to every observer");
}

#[test]
fn an_invalidate_to_the_point_of_coherency_keeps_what_a_master_wrote_into_the_system_cache() {
    let mut s = slc();
    let gpu = s.device("gpu").unwrap();
    let m = s.cpu_map(&[page(0x4000_0000)], MemAttr::Cached).unwrap();
    s.device_fill(gpu, BusAddr(0x4000_0000), 4096, 0x42).unwrap();
    assert_eq!(read(&mut s, "display", 0x4000_0000), [0; 64], "the GPU's write sits in the system cache");
    // dma_sync_for_cpu: the CPU invalidates to the point of coherency; the GPU's bytes
    // are not lost, they reach DRAM, and the CPU reads them.
    s.cache_invalidate(page(0x4000_0000)).unwrap();
    let mut v = [0u8; 64];
    s.cpu_read(m, 0, &mut v).unwrap();
    assert_eq!(v, [0x42; 64]);
    assert_eq!(read(&mut s, "display", 0x4000_0000), [0x42; 64]);
}

#[test]
fn a_system_cache_every_agent_goes_through_changes_nothing_anyone_reads() {
    let text = SLC.replace("masters = [\"cpu\", \"gpu\"]", "masters = [\"cpu\", \"gpu\", \"display\"]");
    let mut s = Sim::builder(Platform::from_toml(&text, "all.toml").unwrap()).chooser(Never).build();
    let gpu = s.device("gpu").unwrap();
    s.device_fill(gpu, BusAddr(0x4000_0000), 64, 0x42).unwrap();
    assert_eq!(read(&mut s, "display", 0x4000_0000), [0x42; 64], "beyond the point of coherency");
}
