//! A stale read on a non-coherent platform, and the same run made correct.
//!
//! Two hand-overs on `arm64-noncoherent`, each run twice under the adversarial chooser:
//! once the way a buggy driver does it, once with the maintenance the streaming DMA API
//! performs. The bytes each reader sees, and what the fix costs, are printed.
//!
//! Run: `cargo run -p dmabuf-sim --example stale_read [PLATFORM]`

use dmabuf_sim::{Adversarial, BusAddr, DmaAttrs, DmaDirection, MemAttr, PhysAddr, PhysRange, Platform, Sim, Stats};

const FRAME: u64 = 64 * 1024;

fn summary(seen: &[u8], want: u8) -> String {
    let good = seen.iter().filter(|&&b| b == want).count();
    if good == seen.len() {
        format!("all {} bytes are {want:#04x}: correct", seen.len())
    } else {
        format!(
            "{} of {} bytes are stale (first byte {:#04x}, expected {want:#04x})",
            seen.len() - good,
            seen.len(),
            seen[0]
        )
    }
}

fn cost(s: &Stats) -> String {
    format!(
        "maintenance: {} ops, {} clean + {} invalidate lines, {} cycles",
        s.maintenance_ops(),
        s.clean.lines,
        s.invalidate.lines,
        s.maintenance_cycles()
    )
}

/// The UVC case: the CPU fills a frame in a cached buffer, a device that does not snoop
/// reads it.
fn cpu_to_device(platform: &Platform, dev: &str, base: u64, correct: bool) -> Result<(String, Stats), String> {
    let mut sim = Sim::builder(platform.clone()).chooser(Adversarial).build();
    let d = sim.device(dev).ok_or(format!("platform has no device `{dev}`"))?;
    let frame = PhysRange::new(PhysAddr(base), FRAME).ok_or("bad range")?;
    let cpu = sim.cpu_map(&[frame], MemAttr::Cached).map_err(|e| e.to_string())?;
    sim.cpu_fill(cpu, 0, FRAME, 0x5a).map_err(|e| e.to_string())?;
    let attrs = DmaAttrs { skip_cpu_sync: !correct };
    let map = sim.dma_map(d, &[frame], DmaDirection::ToDevice, attrs).map_err(|e| e.to_string())?;
    let mut seen = vec![0u8; FRAME as usize];
    for (bus, len) in map.bus_ranges(0, FRAME) {
        let off = (bus.raw() - map.bus_address(0).map_or(0, BusAddr::raw)) as usize;
        sim.device_read(d, bus, &mut seen[off..off + len as usize]).map_err(|e| e.to_string())?;
    }
    sim.dma_unmap(map, attrs).map_err(|e| e.to_string())?;
    Ok((summary(&seen, 0x5a), *sim.stats()))
}

/// A capture: the device writes a frame (FROM_DEVICE) while the CPU's prefetcher is free
/// to pull lines of the buffer in; the CPU then reads it.
fn device_to_cpu(platform: &Platform, dev: &str, base: u64, correct: bool) -> Result<(String, Stats), String> {
    let mut sim = Sim::builder(platform.clone()).chooser(Adversarial).build();
    let d = sim.device(dev).ok_or(format!("platform has no device `{dev}`"))?;
    let frame = PhysRange::new(PhysAddr(base), FRAME).ok_or("bad range")?;
    let cpu = sim.cpu_map(&[frame], MemAttr::Cached).map_err(|e| e.to_string())?;
    let map = sim.dma_map(d, &[frame], DmaDirection::FromDevice, DmaAttrs::default()).map_err(|e| e.to_string())?;
    let bus = map.bus_address(0).ok_or("empty mapping")?;
    sim.device_fill(d, bus, FRAME, 0xc4).map_err(|e| e.to_string())?;
    // The bug: unmapping without the CPU sync (no invalidate after the transfer).
    sim.dma_unmap(map, DmaAttrs { skip_cpu_sync: !correct }).map_err(|e| e.to_string())?;
    let mut seen = vec![0u8; FRAME as usize];
    sim.cpu_read(cpu, 0, &mut seen).map_err(|e| e.to_string())?;
    Ok((summary(&seen, 0xc4), *sim.stats()))
}

fn main() {
    let name = std::env::args().nth(1).unwrap_or_else(|| "arm64-noncoherent".into());
    let platform = match Platform::load(&name) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    // A device without a private cache (which would need device-side maintenance too),
    // preferably one that does not snoop.
    let cacheless = || platform.devices.iter().filter(|d| d.cache.is_none());
    let Some(dev) = cacheless().find(|d| !d.coherent).or_else(|| cacheless().next()).map(|d| d.name.clone()) else {
        eprintln!("error: {name} has no device without a private cache to demonstrate with");
        std::process::exit(2);
    };
    let base = platform.regions.iter().find(|r| r.kind == dmabuf_sim::RegionKind::Dram).map_or(0, |r| r.base.0);
    let coherent = platform.devices.iter().any(|d| d.name == dev && d.coherent);
    let kind = if coherent { "coherent" } else { "non-coherent" };
    println!("platform {}, {kind} device `{dev}`, chooser: adversarial\n", platform.name);
    type Case = fn(&Platform, &str, u64, bool) -> Result<(String, Stats), String>;
    let cases: [(&str, Case, &str, &str); 2] = [
        (
            "CPU fills a 64 KiB frame, the device reads it (DMA_TO_DEVICE)",
            cpu_to_device,
            "no clean before the device reads (map with DMA_ATTR_SKIP_CPU_SYNC)",
            "dma_map cleans the CPU's dirty lines to memory",
        ),
        (
            "the device captures a 64 KiB frame, the CPU reads it (DMA_FROM_DEVICE)",
            device_to_cpu,
            "no invalidate after the transfer (unmap with DMA_ATTR_SKIP_CPU_SYNC)",
            "dma_unmap invalidates the lines the prefetcher pulled in during the transfer",
        ),
    ];
    let mut failed = false;
    for (title, run, bug, fix) in cases {
        println!("== {title}");
        for (label, correct, what) in [("broken", false, bug), ("fixed ", true, fix)] {
            match run(&platform, &dev, base, correct) {
                Ok((result, stats)) => {
                    println!("  {label}: {what}");
                    println!("          reader sees {result}");
                    println!("          {}", cost(&stats));
                }
                Err(e) => {
                    println!("  {label}: error: {e}");
                    failed = true;
                }
            }
        }
        println!();
    }
    if failed {
        std::process::exit(2);
    }
}
