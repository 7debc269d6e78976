//! The choosers' behaviour, the observer's events and the cost model.

use std::cell::RefCell;
use std::rc::Rc;

use dmabuf_sim::{
    Adversarial, BusAddr, CacheGeometry, CacheId, Cause, Chooser, Costs, Event, Freedom, LineState, Lru, MemAttr,
    Never, Observer, PhysAddr, PhysRange, Platform, Seeded, Sim, Stats, chooser_from_name,
};

const BASE: u64 = 0x4000_0000;

fn small_cache() -> Platform {
    let mut p = Platform::preset("arm64-noncoherent").unwrap();
    p.cpu.cache = Some(CacheGeometry { sets: 16, ways: 2 }); // 32 lines, 2 KiB
    p
}

/// A CPU-then-device workload; returns what the device read and the stats.
fn workload(chooser: Box<dyn Chooser>) -> (Vec<u8>, Stats) {
    let mut sim = Sim::builder(small_cache()).chooser_boxed(chooser).build();
    let r = PhysRange::new(PhysAddr(BASE), 16 * 1024).unwrap();
    let m = sim.cpu_map(&[r], MemAttr::Cached).unwrap();
    for i in 0..16u64 {
        sim.cpu_fill(m, i * 1024, 1024, i as u8 + 1).unwrap();
        let mut b = [0u8; 100];
        sim.cpu_read(m, (i * 977) % (15 * 1024), &mut b).unwrap();
    }
    let usb = sim.device("usb").unwrap();
    let mut seen = vec![0u8; 16 * 1024];
    sim.device_read(usb, BusAddr(BASE), &mut seen).unwrap();
    (seen, *sim.stats())
}

#[test]
fn seeded_runs_are_deterministic() {
    let a = workload(Box::new(Seeded::new(7)));
    let b = workload(Box::new(Seeded::new(7)));
    assert_eq!(a, b);
    let differs = (0..8).any(|s| workload(Box::new(Seeded::new(100 + s))) != a);
    assert!(differs, "different seeds should take different freedoms");
    assert!(a.1.hw.freedom_write_backs + a.1.hw.freedom_drops + a.1.hw.prefetches > 0);
}

#[test]
fn lru_evicts_by_capacity_only_and_never_never_evicts() {
    let (seen, stats) = workload(Box::new(Lru));
    assert!(stats.hw.capacity_evictions > 0);
    assert_eq!(stats.hw.freedom_write_backs + stats.hw.prefetches + stats.hw.freedom_drops, 0);
    // Lines pushed out of a 2 KiB cache reached memory: the device sees most of the data
    // without any clean, but the last 2 KiB are still dirty in the cache.
    let evicted = seen.iter().filter(|&&b| b != 0).count();
    assert!((14 * 1024..16 * 1024).contains(&evicted), "{evicted}");

    let (seen, stats) = workload(Box::new(Never));
    assert_eq!(stats.hw.capacity_evictions, 0);
    assert!(seen.iter().all(|&b| b == 0), "an unbounded cache keeps every dirty line");
}

#[test]
fn adversarial_prefetches_right_after_maintenance() {
    let mut sim = Sim::builder(Platform::preset("arm64-noncoherent").unwrap()).chooser(Adversarial).build();
    let r = PhysRange::new(PhysAddr(BASE), 4096).unwrap();
    sim.cache_invalidate(r).unwrap();
    assert_eq!(sim.line_state(CacheId::Cpu, PhysAddr(BASE + 4032)), LineState::Clean, "prefetched");
    assert_eq!(sim.stats().hw.prefetches, 64);
}

#[test]
fn freedoms_that_do_not_apply_are_refused() {
    let mut sim = Sim::new(Platform::preset("arm64-noncoherent").unwrap());
    let line = PhysAddr(BASE);
    assert!(!sim.take_freedom(Freedom::WriteBack { cache: CacheId::Cpu, line }));
    assert!(!sim.take_freedom(Freedom::Drop { cache: CacheId::Cpu, line }));
    assert!(sim.take_freedom(Freedom::Prefetch { line }));
    assert!(!sim.take_freedom(Freedom::Prefetch { line }), "already present");
    assert!(sim.take_freedom(Freedom::Drop { cache: CacheId::Cpu, line }));
    // VRAM is not in the linear map: nothing may prefetch it unless mapped cached.
    let mut x86 = Sim::new(Platform::preset("x86-pcie").unwrap());
    assert!(!x86.take_freedom(Freedom::Prefetch { line: PhysAddr(0x40_0000_0000) }));
    let gpu = x86.device("dgpu").unwrap();
    assert!(!x86.take_freedom(Freedom::Drop { cache: CacheId::Device(gpu), line: PhysAddr(0x1_0000_0000) }));
}

#[test]
fn candidates_list_every_choice_on_the_lines() {
    let mut sim = Sim::new(Platform::preset("arm64-noncoherent").unwrap());
    let r = PhysRange::new(PhysAddr(BASE), 256).unwrap();
    let m = sim.cpu_map(&[PhysRange::new(PhysAddr(BASE), 4096).unwrap()], MemAttr::Cached).unwrap();
    sim.cpu_fill(m, 0, 64, 1).unwrap(); // line 0 dirty
    let mut b = [0u8; 1];
    sim.cpu_read(m, 64, &mut b).unwrap(); // line 1 clean
    let c = sim.candidates(&r);
    assert_eq!(
        c,
        vec![
            Freedom::WriteBack { cache: CacheId::Cpu, line: PhysAddr(BASE) },
            Freedom::Drop { cache: CacheId::Cpu, line: PhysAddr(BASE + 64) },
            Freedom::Prefetch { line: PhysAddr(BASE + 128) },
            Freedom::Prefetch { line: PhysAddr(BASE + 192) },
        ]
    );
}

#[derive(Default)]
struct Log(Vec<String>);

impl Observer for Log {
    fn event(&mut self, ev: &Event<'_>) {
        let s = match ev {
            Event::WriteBack { cause: Cause::Capacity, .. } => "capacity write-back",
            Event::Discard { lost, cause: Cause::Maintenance, .. } if !lost.is_empty() => "dirty data discarded",
            Event::Fill { cause: Cause::Freedom, .. } => "prefetch",
            Event::MismatchedAlias { .. } => "alias",
            Event::Drain { .. } => "drain",
            _ => return,
        };
        self.0.push(s.into());
    }
}

#[test]
fn the_observer_sees_the_hardware_move_lines() {
    let log = Rc::new(RefCell::new(Log::default()));
    let mut sim = Sim::builder(small_cache()).chooser(Lru).observer(log.clone()).build();
    let r = PhysRange::new(PhysAddr(BASE), 4096).unwrap();
    let m = sim.cpu_map(&[r], MemAttr::Cached).unwrap();
    sim.cpu_fill(m, 0, 4096, 9).unwrap();
    sim.cache_invalidate(r).unwrap();
    sim.take_freedom(Freedom::Prefetch { line: PhysAddr(BASE) });
    let wc = sim.cpu_map(&[r], MemAttr::WriteCombine).unwrap();
    sim.cpu_fill(wc, 0, 8, 1).unwrap();
    sim.cpu_barrier();
    let log = log.borrow();
    for want in ["capacity write-back", "dirty data discarded", "prefetch", "alias", "drain"] {
        assert!(log.0.iter().any(|s| s == want), "missing {want}: {:?}", log.0);
    }
    assert_eq!(sim.stats().hw.dirty_lines_discarded, 32);
}

#[test]
fn write_combined_reads_cost_far_more_than_cached_reads() {
    let mut sim = Sim::new(Platform::preset("arm64-noncoherent").unwrap());
    let r = PhysRange::new(PhysAddr(BASE), 64 * 1024).unwrap();
    let cached = sim.cpu_map(&[r], MemAttr::Cached).unwrap();
    let mut b = vec![0u8; 64 * 1024];
    sim.cpu_read(cached, 0, &mut b).unwrap(); // warm
    let before = sim.stats().access_cycles;
    sim.cpu_read(cached, 0, &mut b).unwrap();
    let cached_cost = sim.stats().access_cycles - before;
    let r2 = PhysRange::new(PhysAddr(BASE + 0x10_0000), 64 * 1024).unwrap();
    let wc = sim.cpu_map(&[r2], MemAttr::WriteCombine).unwrap();
    let before = sim.stats().access_cycles;
    sim.cpu_read(wc, 0, &mut b).unwrap();
    let wc_cost = sim.stats().access_cycles - before;
    assert!(wc_cost >= 50 * cached_cost, "wc {wc_cost} vs cached {cached_cost}");
}

/// Regression: with a cost of 2^63 - 1 cycles (the largest TOML integer) the counters
/// wrapped (`total_cycles` 18446744073709551584 after 32 lines) or, in a debug build, the
/// addition panicked. A platform built in code is not validated, so the counters saturate.
#[test]
fn cycle_counters_saturate_instead_of_wrapping_on_a_huge_cost_table() {
    let huge = i64::MAX as u64;
    let mut p = Platform::preset("arm64-noncoherent").unwrap();
    p.costs = Costs {
        maintenance_op: huge,
        clean_line: huge,
        cpu_hit_line: huge,
        cpu_miss_line: huge,
        cpu_uncached_read_line: huge,
        device_access_line: huge,
        bounce_line: huge,
        ..Costs::default()
    };
    let mut sim = Sim::new(p);
    let usb = sim.device("usb").unwrap();
    let page = PhysRange::new(PhysAddr(BASE), 4096).unwrap();
    let m = sim.cpu_map(&[page], MemAttr::Cached).unwrap();
    sim.cpu_fill(m, 0, 32 * 64, 1).unwrap();
    sim.cache_clean(page).unwrap();
    let mut seen = vec![0u8; 4096];
    sim.device_read(usb, BusAddr(BASE), &mut seen).unwrap();
    sim.bounce_copy(PhysAddr(BASE), PhysAddr(BASE + 4096), 4096).unwrap();
    let s = sim.stats();
    assert_eq!(s.access_cycles, u64::MAX);
    assert_eq!((s.clean.cycles, s.bounce.cycles), (u64::MAX, u64::MAX));
    assert_eq!((s.maintenance_cycles(), s.total_cycles()), (u64::MAX, u64::MAX));
    assert_eq!(s.clean.lines, 64, "what is counted besides cycles stays exact");
}

#[test]
fn chooser_names_build_the_right_chooser() {
    assert_eq!(chooser_from_name("seeded:9").unwrap().name(), "seeded:9");
    assert!(!chooser_from_name("adversarial").unwrap().bounded());
    assert!(chooser_from_name("lru").unwrap().bounded());
    let e = chooser_from_name("sometimes").err().unwrap();
    assert!(e.to_string().contains("adversarial, seeded:N"));
}

/// Counts the lines the observer was told are present, by following fills and discards:
/// what a report drawing the cache sees.
#[derive(Default)]
struct Present(std::collections::BTreeSet<u64>);

impl Observer for Present {
    fn event(&mut self, ev: &Event<'_>) {
        match ev {
            Event::Fill { cache: CacheId::Cpu, range, .. } => {
                (range.start.raw()..range.end().raw()).step_by(64).for_each(|l| {
                    self.0.insert(l);
                });
            }
            Event::Discard { cache: CacheId::Cpu, range, .. } => {
                (range.start.raw()..range.end().raw()).step_by(64).for_each(|l| {
                    self.0.remove(&l);
                });
            }
            _ => {}
        }
    }
}

#[test]
fn a_clean_line_evicted_by_capacity_is_a_discard_event() {
    let seen = Rc::new(RefCell::new(Present::default()));
    let mut sim = Sim::builder(small_cache()).chooser(Lru).observer(seen.clone()).build();
    let r = PhysRange::new(PhysAddr(BASE), 16 * 1024).unwrap();
    let m = sim.cpu_map(&[r], MemAttr::Cached).unwrap();
    // Reads fill clean lines; 16 KiB of them through a 2 KiB cache evict clean lines only.
    let mut b = vec![0u8; 16 * 1024];
    sim.cpu_read(m, 0, &mut b).unwrap();
    assert!(sim.stats().hw.capacity_evictions > 0);
    let seen = seen.borrow();
    assert_eq!(seen.0.len(), 32, "the observer follows the cache: 32 lines of 2 KiB stay");
    for &l in &seen.0 {
        assert_ne!(sim.line_state(CacheId::Cpu, PhysAddr(l)), LineState::Invalid, "{l:#x}");
    }
}
