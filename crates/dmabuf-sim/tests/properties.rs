//! Invariants over random operation sequences.
//!
//! - With the full streaming-DMA protocol (map before a device touches the buffer,
//!   device-cache maintenance around its accesses, unmap before the CPU touches it again),
//!   no read ever returns stale bytes, under every chooser, on every kind of device
//!   (non-coherent, coherent, with a private cache, behind an IOMMU, bounced).
//! - The provenance a read reports names, byte for byte, the latest write.
//! - The sparse store and the CPU's view of memory behave like a flat array.

use std::cell::RefCell;
use std::rc::Rc;

use dmabuf_sim::{
    Adversarial, BusAddr, Chooser, DmaAttrs, DmaDirection, Event, Lru, MemAttr, Never, Observer, PhysAddr, PhysRange,
    Platform, ProvRun, Seeded, Sim, WriteId,
};
use proptest::prelude::*;

const LEN: u64 = 3 * 4096;

/// Keeps the provenance of the last read.
#[derive(Default)]
struct LastRead {
    prov: Vec<ProvRun>,
}

impl Observer for LastRead {
    fn event(&mut self, ev: &Event<'_>) {
        match ev {
            Event::CpuRead { prov, .. } | Event::DeviceRead { prov, .. } => self.prov = prov.to_vec(),
            _ => {}
        }
    }
}

/// The first byte where `got` differs from `want`, for readable failures.
fn first_diff<T: PartialEq + std::fmt::Debug>(got: &[T], want: &[T]) -> Option<String> {
    let i = got.iter().zip(want).position(|(a, b)| a != b)?;
    Some(format!("byte {i} of {}: got {:?}, want {:?}", got.len(), got[i], want[i]))
}

fn expand(runs: &[ProvRun], n: usize) -> Vec<WriteId> {
    let mut v = vec![WriteId(u64::MAX); n];
    for r in runs {
        v[r.offset as usize..(r.offset + r.len) as usize].fill(r.write);
    }
    v
}

#[derive(Clone, Debug)]
enum Step {
    /// Agent index (0 = CPU), write?, offset, length, byte.
    Access { agent: usize, write: bool, off: u64, len: u64, byte: u8 },
}

fn steps(agents: usize) -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (0..agents, any::<bool>(), 0..LEN, 1..LEN, any::<u8>()).prop_map(|(agent, write, off, len, byte)| {
            let len = len.min(LEN - off).max(1);
            let off = off.min(LEN - len);
            Step::Access { agent, write, off, len, byte }
        }),
        1..24,
    )
}

fn chooser(i: u8, seed: u64) -> Box<dyn Chooser> {
    match i % 4 {
        0 => Box::new(Adversarial),
        1 => Box::new(Seeded::new(seed)),
        2 => Box::new(Lru),
        _ => Box::new(Never),
    }
}

/// Runs `steps` with the full protocol and checks every read against a reference.
fn run_protocol(preset: &str, base: u64, devices: &[&str], steps: &[Step], ch: Box<dyn Chooser>, shrink_cache: bool) {
    let mut p = Platform::preset(preset).unwrap();
    if shrink_cache {
        // A tiny cache makes capacity evictions happen inside the buffer.
        p.cpu.cache = Some(dmabuf_sim::CacheGeometry { sets: 4, ways: 2 });
        for d in &mut p.devices {
            if d.cache.is_some() {
                d.cache = Some(dmabuf_sim::CacheGeometry { sets: 2, ways: 2 });
            }
        }
    }
    let obs = Rc::new(RefCell::new(LastRead::default()));
    let mut sim = Sim::builder(p).chooser_boxed(ch).observer(obs.clone()).build();
    let buf = PhysRange::new(PhysAddr(base), LEN).unwrap();
    let cpu = sim.cpu_map(&[buf], MemAttr::Cached).unwrap();
    let mut data = vec![0u8; LEN as usize];
    let mut ids = vec![WriteId::INITIAL; LEN as usize];
    for (i, step) in steps.iter().enumerate() {
        let Step::Access { agent, write, off, len, byte } = *step;
        let (o, n) = (off as usize, len as usize);
        if agent == 0 {
            if write {
                let w = sim.cpu_fill(cpu, off, len, byte).unwrap();
                data[o..o + n].fill(byte);
                ids[o..o + n].fill(w);
            } else {
                let mut v = vec![0; n];
                sim.cpu_read(cpu, off, &mut v).unwrap();
                if let Some(d) = first_diff(&v, &data[o..o + n]) {
                    panic!("step {i}: stale CPU read ({step:?}): {d}");
                }
                if let Some(d) = first_diff(&expand(&obs.borrow().prov, n), &ids[o..o + n]) {
                    panic!("step {i}: provenance of CPU read ({step:?}): {d}");
                }
            }
            continue;
        }
        let dev = sim.device(devices[agent - 1]).unwrap();
        let dir = if write { DmaDirection::FromDevice } else { DmaDirection::ToDevice };
        let map = sim.dma_map(dev, &[buf], dir, DmaAttrs::default()).unwrap();
        let bus = map.bus_address(off).unwrap();
        let range = PhysRange::new(PhysAddr(base + off), len).unwrap();
        // A device cache is coherent with nothing: drop what it holds before the device
        // touches the bytes (a partial-line write would merge into a stale line), flush
        // what it wrote afterwards. A bounced device's cache is tagged by the slot.
        let seen = map.segments[0].bounce.map_or(range, |b| PhysRange::new(b.add(off), len).unwrap());
        sim.device_cache_invalidate(dev, seen).unwrap();
        if write {
            let w = sim.device_fill(dev, bus, len, byte).unwrap();
            sim.device_cache_flush(dev, seen).unwrap();
            data[o..o + n].fill(byte);
            ids[o..o + n].fill(w);
        } else {
            let mut v = vec![0; n];
            sim.device_read(dev, bus, &mut v).unwrap();
            if let Some(d) = first_diff(&v, &data[o..o + n]) {
                panic!("step {i}: stale read by {} ({step:?}): {d}", devices[agent - 1]);
            }
            if let Some(d) = first_diff(&expand(&obs.borrow().prov, n), &ids[o..o + n]) {
                panic!("step {i}: provenance of read by {} ({step:?}): {d}", devices[agent - 1]);
            }
        }
        sim.dma_unmap(map, DmaAttrs::default()).unwrap();
    }
    assert_eq!(sim.bounce_in_use(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn full_maintenance_is_never_stale_on_arm64_noncoherent(
        s in steps(4), c in any::<u8>(), seed in any::<u64>(), small in any::<bool>()
    ) {
        run_protocol("arm64-noncoherent", 0x4000_0000, &["usb", "gpu", "vdec"], &s, chooser(c, seed), small);
    }

    #[test]
    fn full_maintenance_is_never_stale_on_arm64_mixed(
        s in steps(5), c in any::<u8>(), seed in any::<u64>(), small in any::<bool>()
    ) {
        run_protocol("arm64-mixed", 0x10_0000, &["fpga-acp", "fpga-hp", "gpu", "display"], &s, chooser(c, seed), small);
    }

    #[test]
    fn full_maintenance_is_never_stale_when_bounced(
        s in steps(3), c in any::<u8>(), seed in any::<u64>(), small in any::<bool>()
    ) {
        run_protocol("arm64-dma32", 0x1_0000_0000, &["legacy-dma", "gpu"], &s, chooser(c, seed), small);
    }

    #[test]
    fn full_maintenance_is_never_stale_on_x86(s in steps(3), c in any::<u8>(), seed in any::<u64>()) {
        run_protocol("x86-pcie", 0x1_0000_0000, &["dgpu", "capture"], &s, chooser(c, seed), false);
    }

    /// CPU-only traffic through any mix of cached, write-combined and uncached mappings of
    /// separate pages, with any chooser and capacity, always reads back what was written.
    #[test]
    fn cpu_view_behaves_like_a_flat_array(
        ops in prop::collection::vec((0..3usize, any::<bool>(), 0..3 * 4096u64, 1..600u64, any::<u8>()), 1..64),
        c in any::<u8>(), seed in any::<u64>(), maintenance in prop::collection::vec(0..4u8, 64),
    ) {
        let mut p = Platform::preset("arm64-noncoherent").unwrap();
        p.cpu.cache = Some(dmabuf_sim::CacheGeometry { sets: 2, ways: 2 });
        let mut sim = Sim::builder(p).chooser_boxed(chooser(c, seed)).build();
        let attrs = [MemAttr::Cached, MemAttr::WriteCombine, MemAttr::Uncached];
        let maps: Vec<_> = attrs.iter().enumerate().map(|(i, a)| {
            let r = PhysRange::new(PhysAddr(0x4000_0000 + i as u64 * 0x10_0000), 3 * 4096).unwrap();
            sim.cpu_map(&[r], *a).unwrap()
        }).collect();
        let mut flat = vec![vec![0u8; 3 * 4096]; 3];
        for (k, (m, write, off, len, byte)) in ops.into_iter().enumerate() {
            let len = len.min(3 * 4096 - off);
            let (o, n) = (off as usize, len as usize);
            if write {
                sim.cpu_fill(maps[m], off, len, byte).unwrap();
                flat[m][o..o + n].fill(byte);
            } else {
                let mut v = vec![0; n];
                sim.cpu_read(maps[m], off, &mut v).unwrap();
                prop_assert!(first_diff(&v, &flat[m][o..o + n]).is_none(), "op {}: {:?}", k, first_diff(&v, &flat[m][o..o + n]));
            }
            // Cleaning (never invalidating) and barriers change nothing the CPU sees.
            let r = PhysRange::new(PhysAddr(0x4000_0000), 3 * 4096).unwrap();
            match maintenance[k] {
                0 => sim.cache_clean(r).unwrap(),
                1 => sim.cpu_barrier(),
                _ => {}
            }
        }
    }

    /// The sparse store, seen through an uncached mapping and raw peeks, is a flat array.
    #[test]
    fn sparse_store_behaves_like_a_flat_array(
        ops in prop::collection::vec((0..64 * 1024u64, prop::collection::vec(any::<u8>(), 1..9000)), 1..32)
    ) {
        let mut sim = Sim::new(Platform::preset("arm64-noncoherent").unwrap());
        let r = PhysRange::new(PhysAddr(0x4000_0000), 80 * 1024).unwrap();
        let m = sim.cpu_map(&[r], MemAttr::Uncached).unwrap();
        let mut flat = vec![0u8; 80 * 1024];
        for (off, bytes) in ops {
            sim.cpu_write(m, off, &bytes).unwrap();
            flat[off as usize..off as usize + bytes.len()].copy_from_slice(&bytes);
        }
        let mut all = vec![0u8; 80 * 1024];
        sim.peek_memory(PhysAddr(0x4000_0000), &mut all);
        prop_assert!(first_diff(&all, &flat).is_none(), "{:?}", first_diff(&all, &flat));
        let mut via = vec![0u8; 80 * 1024];
        sim.cpu_read(m, 0, &mut via).unwrap();
        prop_assert!(first_diff(&via, &flat).is_none(), "{:?}", first_diff(&via, &flat));
        prop_assert!(sim.resident_pages() <= 20);
    }
}

#[test]
fn device_read_provenance_names_each_writer() {
    let obs = Rc::new(RefCell::new(LastRead::default()));
    let mut sim = Sim::builder(Platform::preset("arm64-noncoherent").unwrap()).observer(obs.clone()).build();
    let buf = PhysRange::new(PhysAddr(0x4000_0000), 4096).unwrap();
    let m = sim.cpu_map(&[buf], MemAttr::Cached).unwrap();
    let usb = sim.device("usb").unwrap();
    let a = sim.cpu_fill(m, 0, 100, 1).unwrap();
    let b = sim.device_fill(usb, BusAddr(0x4000_0000 + 100), 50, 2).unwrap();
    sim.cache_clean(PhysRange::new(PhysAddr(0x4000_0000), 64).unwrap()).unwrap();
    let mut v = vec![0u8; 200];
    sim.device_read(usb, BusAddr(0x4000_0000), &mut v).unwrap();
    let p = obs.borrow().prov.clone();
    // Line 0 was cleaned (a's bytes), line 1 is still dirty in the CPU (the device sees
    // memory: zeros), then b's bytes, then zeros.
    assert_eq!(
        p,
        vec![
            ProvRun { offset: 0, len: 64, write: a },
            ProvRun { offset: 64, len: 36, write: WriteId::INITIAL },
            ProvRun { offset: 100, len: 50, write: b },
            ProvRun { offset: 150, len: 50, write: WriteId::INITIAL },
        ]
    );
}
