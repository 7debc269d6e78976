//! Bulk traffic through the model, against memcpy of the same bytes in the same run.
//!
//! Over a 64 MiB buffer on `arm64-noncoherent`: CPU writes, clean, a non-coherent device
//! reads, the device writes, invalidate, CPU reads. Six passes over the buffer; the
//! baseline is six memcpys of 64 MiB. Printed: simulated bytes per second and the ratio to
//! memcpy, without an observer and with the provenance observer, with an unbounded cache
//! (`never`) and with the platform's 2 MiB cache (`lru`).
//!
//! Run: `cargo bench -p dmabuf-sim --bench bulk` (add `-- --mib 16` for a quicker run).

use std::hint::black_box;
use std::time::{Duration, Instant};

use dmabuf_sim::{BusAddr, Chooser, Event, Lru, MemAttr, Never, Observer, PhysAddr, PhysRange, Platform, Sim};

/// Keeps provenance and counts events, as a sanitizer would.
struct Counting(u64);

impl Observer for Counting {
    fn event(&mut self, _: &Event<'_>) {
        self.0 += 1;
    }
}

const BASE: u64 = 0x4000_0000;

fn pass(sim: &mut Sim, src: &[u8], dst: &mut [u8]) {
    let len = src.len() as u64;
    let range = PhysRange::new(PhysAddr(BASE), len).unwrap();
    let usb = sim.device("usb").unwrap();
    let m = sim.cpu_map(&[range], MemAttr::Cached).unwrap();
    sim.cpu_write(m, 0, src).unwrap();
    sim.cache_clean(range).unwrap();
    sim.device_read(usb, BusAddr(BASE), dst).unwrap();
    sim.device_write(usb, BusAddr(BASE), src).unwrap();
    sim.cache_invalidate(range).unwrap();
    sim.cpu_read(m, 0, dst).unwrap();
    sim.cpu_unmap(m).unwrap();
}

fn best_of(n: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..n).map(|_| f()).min().unwrap_or_default()
}

fn main() {
    let mib: usize = std::env::args().skip_while(|a| a != "--mib").nth(1).and_then(|v| v.parse().ok()).unwrap_or(64);
    let len = mib << 20;
    let src: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
    let mut dst = vec![0u8; len];
    let platform = Platform::preset("arm64-noncoherent").unwrap();
    let traffic = 6 * len as u64;

    let memcpy = best_of(5, || {
        let t = Instant::now();
        for _ in 0..6 {
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
        }
        t.elapsed()
    });
    let gbps = |d: Duration| traffic as f64 / d.as_secs_f64() / 1e9;
    println!("bulk traffic over {mib} MiB: CPU write, clean, device read, device write, invalidate, CPU read");
    println!("{:<46} {:>10} {:>12} {:>10}", "run", "time", "GB/s", "vs memcpy");
    println!(
        "{:<46} {:>8.1}ms {:>12.2} {:>10}",
        "memcpy (6 x buffer)",
        memcpy.as_secs_f64() * 1e3,
        gbps(memcpy),
        "1.00x"
    );

    type Make = fn() -> Box<dyn Chooser>;
    let choosers: [(&str, Make); 2] = [("never", || Box::new(Never)), ("lru (2 MiB, 16-way)", || Box::new(Lru))];
    for (cname, make) in choosers {
        for observed in [false, true] {
            let mut events = 0;
            let t = best_of(5, || {
                let mut b = Sim::builder(platform.clone()).chooser_boxed(make());
                if observed {
                    b = b.observer(Counting(0));
                }
                let mut sim = b.build();
                let t = Instant::now();
                pass(&mut sim, &src, &mut dst);
                let d = t.elapsed();
                assert_eq!(dst, src, "the device's bytes must come back");
                events = sim.stats().hw.demand_fills;
                d
            });
            let name = format!("sim, {cname}, {}", if observed { "provenance observer" } else { "no observer" });
            println!(
                "{:<46} {:>8.1}ms {:>12.2} {:>9.2}x",
                name,
                t.as_secs_f64() * 1e3,
                gbps(t),
                memcpy.as_secs_f64() / t.as_secs_f64()
            );
            black_box(events);
        }
    }
    println!("targets: >= 0.25x memcpy without observer, >= 0.10x with the provenance observer");
}
