//! The oracle's needs on small runs, one rule at a time.

use std::cell::RefCell;
use std::rc::Rc;

use super::*;
use crate::{BusAddr, DmaAttrs, DmaDirection, Sim};

const PAGE: PhysRange = PhysRange { start: PhysAddr(0x4000_0000), len: 4096 };

fn sim(preset: &str) -> (Sim, Rc<RefCell<Oracle>>) {
    let p = Platform::preset(preset).unwrap();
    let o = Rc::new(RefCell::new(Oracle::new(&p)));
    (Sim::builder(p).observer(o.clone()).build(), o)
}

fn lines(s: &Stats) -> [u64; 5] {
    [s.clean.lines, s.invalidate.lines, s.device_flush.lines, s.device_invalidate.lines, s.bounce.bytes]
}

#[test]
fn a_device_read_needs_a_clean_of_the_dirty_lines_it_reads_once() {
    let (mut sim, o) = sim("arm64-noncoherent");
    let usb = sim.device("usb").unwrap();
    let m = sim.cpu_map(&[PAGE], MemAttr::Cached).unwrap();
    sim.cpu_fill(m, 0, 1024, 1).unwrap();
    let mut buf = [0u8; 256];
    sim.device_read(usb, BusAddr(0x4000_0000), &mut buf).unwrap();
    sim.device_read(usb, BusAddr(0x4000_0000), &mut buf).unwrap();
    let n = o.borrow().needed();
    assert_eq!(lines(&n), [4, 0, 0, 0, 0]);
    assert_eq!((n.clean.ops, n.clean.bytes), (1, 256));
    let c = Costs::default();
    assert_eq!(n.clean.cycles, c.maintenance_op + 4 * c.clean_line);
}

#[test]
fn a_cpu_read_after_a_device_write_needs_an_invalidate_of_the_lines_it_reads() {
    let (mut sim, o) = sim("arm64-noncoherent");
    let usb = sim.device("usb").unwrap();
    let m = sim.cpu_map(&[PAGE], MemAttr::Cached).unwrap();
    sim.device_fill(usb, BusAddr(0x4000_0000), 4096, 7).unwrap();
    let mut buf = [0u8; 100];
    sim.cpu_read(m, 0, &mut buf).unwrap();
    sim.cpu_read(m, 0, &mut buf).unwrap();
    assert_eq!(lines(&o.borrow().needed()), [0, 2, 0, 0, 0], "100 bytes span two lines, needed once");
    sim.device_fill(usb, BusAddr(0x4000_0000), 64, 8).unwrap();
    sim.cpu_read(m, 64, &mut buf[..64]).unwrap();
    assert_eq!(lines(&o.borrow().needed()), [0, 2, 0, 0, 0], "the line the device rewrote is not read");
    sim.cpu_read(m, 0, &mut buf).unwrap();
    assert_eq!(lines(&o.borrow().needed()), [0, 3, 0, 0, 0]);
}

#[test]
fn a_write_that_covers_the_stale_bytes_needs_no_invalidate_and_a_partial_one_does() {
    let (mut sim, o) = sim("arm64-noncoherent");
    let usb = sim.device("usb").unwrap();
    let m = sim.cpu_map(&[PAGE], MemAttr::Cached).unwrap();
    sim.device_fill(usb, BusAddr(0x4000_0000), 256, 7).unwrap();
    sim.cpu_fill(m, 0, 128, 1).unwrap(); // two whole lines
    sim.cpu_fill(m, 128, 10, 1).unwrap(); // part of the third: would merge stale bytes
    assert_eq!(lines(&o.borrow().needed()), [0, 1, 0, 0, 0]);
}

#[test]
fn pages_never_mapped_cacheable_go_stale_nowhere() {
    let (mut sim, o) = sim("arm64-noncoherent");
    let usb = sim.device("usb").unwrap();
    let m = sim.cpu_map(&[PAGE], MemAttr::WriteCombine).unwrap();
    sim.cpu_fill(m, 0, 4096, 3).unwrap();
    sim.cpu_barrier();
    let mut buf = [0u8; 4096];
    sim.device_read(usb, BusAddr(0x4000_0000), &mut buf).unwrap();
    sim.device_fill(usb, BusAddr(0x4000_0000), 4096, 9).unwrap();
    sim.cpu_read(m, 0, &mut buf).unwrap();
    assert_eq!(o.borrow().needed().maintenance_bytes(), 0);
}

#[test]
fn a_device_write_over_dirty_cpu_lines_needs_them_dropped_or_cleaned() {
    let (mut sim, o) = sim("arm64-noncoherent");
    let usb = sim.device("usb").unwrap();
    let m = sim.cpu_map(&[PAGE], MemAttr::Cached).unwrap();
    sim.cpu_fill(m, 0, 256, 1).unwrap();
    // Overwrites lines 0 and 1 whole and half of line 2; line 3 is untouched.
    sim.device_fill(usb, BusAddr(0x4000_0000), 160, 2).unwrap();
    let n = o.borrow().needed();
    assert_eq!((n.invalidate.lines, n.clean.lines), (2, 1), "line 2 keeps CPU bytes: a clean");
    let mut buf = [0u8; 64];
    sim.device_read(usb, BusAddr(0x4000_0000 + 192), &mut buf).unwrap();
    assert_eq!(o.borrow().needed().clean.lines, 2, "line 3 is read: a clean");
}

#[test]
fn a_device_cache_needs_flushing_for_readers_and_invalidating_after_writers() {
    let (mut sim, o) = sim("arm64-noncoherent");
    let (gpu, usb) = (sim.device("gpu").unwrap(), sim.device("usb").unwrap());
    let m = sim.cpu_map(&[PAGE], MemAttr::Cached).unwrap();
    sim.device_fill(gpu, BusAddr(0x4000_0000), 128, 5).unwrap();
    let mut buf = [0u8; 128];
    sim.device_read(usb, BusAddr(0x4000_0000), &mut buf).unwrap();
    assert_eq!(lines(&o.borrow().needed()), [0, 0, 2, 0, 0]);
    sim.cpu_read(m, 0, &mut buf).unwrap();
    assert_eq!(lines(&o.borrow().needed()), [0, 2, 2, 0, 0], "the flush went to memory behind the CPU");
    sim.cpu_fill(m, 0, 64, 6).unwrap();
    sim.device_read(gpu, BusAddr(0x4000_0000), &mut buf).unwrap();
    assert_eq!(
        lines(&o.borrow().needed()),
        [1, 2, 2, 1, 0],
        "a clean for the CPU's line, and the GPU's old copy dropped"
    );
}

#[test]
fn coherent_devices_need_nothing() {
    let (mut sim, o) = sim("x86-pcie");
    let cap = sim.device("capture").unwrap();
    let page = PhysRange::new(PhysAddr(0x1_0000_0000), 4096).unwrap();
    let m = sim.cpu_map(&[page], MemAttr::Cached).unwrap();
    // The capture card sits behind an IOMMU: map the page where it can see it.
    let bus = sim.iommu_map_pages(cap, &[page]).unwrap();
    sim.cpu_fill(m, 0, 4096, 1).unwrap();
    let mut buf = [0u8; 4096];
    sim.device_read(cap, BusAddr(bus.raw()), &mut buf).unwrap();
    sim.device_fill(cap, BusAddr(bus.raw()), 4096, 2).unwrap();
    sim.cpu_read(m, 0, &mut buf).unwrap();
    assert_eq!(o.borrow().needed().maintenance_bytes(), 0);
}

#[test]
fn a_coherent_reader_needs_stale_cpu_lines_dropped() {
    let (mut sim, o) = sim("arm64-mixed");
    let (iio, usb) = (sim.device("iio").unwrap(), sim.device("usb").unwrap());
    let page = PhysRange::new(PhysAddr(0x10_0000), 4096).unwrap();
    sim.cpu_map(&[page], MemAttr::Cached).unwrap();
    sim.device_fill(iio, BusAddr(0x10_0000), 4096, 4).unwrap();
    let mut buf = [0u8; 1024];
    sim.device_read(usb, BusAddr(0x10_0000), &mut buf).unwrap();
    assert_eq!(lines(&o.borrow().needed()), [0, 16, 0, 0, 0], "its snoop would hit a prefetched line");
}

#[test]
fn needs_whose_windows_overlap_share_an_operation() {
    let (mut sim, o) = sim("arm64-noncoherent");
    let usb = sim.device("usb").unwrap();
    let m = sim.cpu_map(&[PAGE], MemAttr::Cached).unwrap();
    sim.device_fill(usb, BusAddr(0x4000_0000), 4096, 7).unwrap();
    let mut buf = [0u8; 1024];
    for i in 0..4 {
        sim.cpu_read(m, i * 1024, &mut buf).unwrap();
    }
    let n = o.borrow().needed();
    assert_eq!((n.invalidate.ops, n.invalidate.lines), (1, 64), "one invalidate of the page before the first read");
    // Two more rounds with a hole: one operation per contiguous run, per round.
    for _ in 0..2 {
        sim.device_fill(usb, BusAddr(0x4000_0000), 4096, 8).unwrap();
        sim.cpu_read(m, 0, &mut buf[..64]).unwrap();
        sim.cpu_read(m, 1024, &mut buf[..64]).unwrap();
    }
    let n = o.borrow().needed();
    assert_eq!((n.invalidate.ops, n.invalidate.lines), (5, 68));
}

#[test]
fn bounced_bytes_are_copied_once_per_change_with_the_slot_lines_maintained() {
    let (mut sim, o) = sim("arm64-dma32");
    let dma = sim.device("legacy-dma").unwrap();
    let page = PhysRange::new(PhysAddr(0x4000_0000), 4096).unwrap(); // above 30 bits
    let m = sim.cpu_map(&[page], MemAttr::Cached).unwrap();
    sim.cpu_fill(m, 0, 4096, 1).unwrap();
    let map = sim.dma_map(dma, &[page], DmaDirection::Bidirectional, DmaAttrs::default()).unwrap();
    assert!(map.is_bounced());
    let bus = map.bus_address(0).unwrap();
    let mut buf = [0u8; 256];
    sim.device_read(dma, bus, &mut buf).unwrap();
    sim.device_read(dma, bus, &mut buf).unwrap();
    assert_eq!(lines(&o.borrow().needed()), [4, 0, 0, 0, 256], "256 bytes in, their slot lines cleaned");
    sim.cpu_fill(m, 0, 16, 2).unwrap();
    sim.dma_sync_for_device(&map, 0, 4096).unwrap();
    sim.device_read(dma, bus, &mut buf).unwrap();
    assert_eq!(lines(&o.borrow().needed()), [5, 0, 0, 0, 272], "only the 16 changed bytes");
    // The device writes a line into its slot; the CPU reads it from the original.
    sim.device_fill(dma, bus.add(1024), 64, 9).unwrap();
    sim.dma_sync_for_cpu(&map, 0, 4096).unwrap();
    let mut one = [0u8; 64];
    sim.cpu_read(m, 1024, &mut one).unwrap();
    assert_eq!(one, [9; 64]);
    assert_eq!(lines(&o.borrow().needed()), [5, 1, 0, 0, 336], "64 bytes out, the slot line invalidated");
}

/// Regression: the oracle charged `fixed + per_line * lines` unchecked, so a cost of
/// 2^63 - 1 wrapped (or panicked in a debug build).
#[test]
fn the_oracles_cycles_saturate_on_a_huge_cost_table() {
    let mut p = Platform::preset("arm64-noncoherent").unwrap();
    p.costs.clean_line = i64::MAX as u64;
    let o = Rc::new(RefCell::new(Oracle::new(&p)));
    let mut sim = Sim::builder(p).observer(o.clone()).build();
    let usb = sim.device("usb").unwrap();
    let m = sim.cpu_map(&[PAGE], MemAttr::Cached).unwrap();
    sim.cpu_fill(m, 0, 256, 1).unwrap();
    let mut buf = [0u8; 256];
    sim.device_read(usb, BusAddr(0x4000_0000), &mut buf).unwrap();
    let n = o.borrow().needed();
    assert_eq!((n.clean.lines, n.clean.cycles), (4, u64::MAX));
    assert_eq!(n.total_cycles(), u64::MAX);
}
