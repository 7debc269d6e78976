//! Conformance: a protocol-correct program gets no finding, under upstream's maintenance
//! and under the minimal one, on every preset, with every chooser.
//!
//! The generator writes random programs that follow the protocol of the coherency model
//! (docs/coherency-model.md, section 7): every CPU access inside a bracket of its
//! direction, every device access through a mapping (per frame: map before the job,
//! unmap after it; or kept for the whole program, with the job contract and the CPU's
//! brackets as the hand-over points), every hand-over ordered by program order or a
//! fence (a `wait`, a job's `after`, or the implicit wait of a CPU bracket), and a
//! device-to-device sync where two devices that keep their mappings do not share a
//! coherency domain. Every read expects the bytes the latest write put there. Any
//! finding is a bug of the framework (a hand-over the minimal implementation forgets,
//! one upstream's does not cover) or of the model, never of the program.
//!
//! CI runs a few dozen cases; a longer run:
//!
//! ```text
//! PROPTEST_CASES=2000 cargo test --release -p dmabuf-check --test conformance
//! ```

use std::fmt::Write as _;
use std::path::Path;

use dmabuf::{AttachPlan, AttachPolicy, ImporterCaps, MaintenancePolicy, System, SystemConfig};
use dmabuf_check::runner::{RunConfig, run};
use dmabuf_check::scenario::parse;
use dmabuf_sim::{Platform, Sim};
use proptest::prelude::*;

const PRESETS: [&str; 5] = ["arm64-noncoherent", "arm64-mixed", "arm64-dma32", "riscv-noncoherent", "x86-pcie"];
const CHOOSERS: [&str; 4] = ["adversarial", "lru", "never", "seeded:7"];

/// Where the buffer comes from.
#[derive(Clone, Copy, Debug)]
enum Heap {
    System,
    Cma,
    Uncached,
    Udmabuf,
    Vram,
}

/// Who writes one transfer, and how the CPU reaches the bytes.
#[derive(Clone, Copy, Debug)]
enum Who {
    Cpu,
    Device(usize),
}

/// One transfer: a writer puts `value` in `[start, end)`, then readers read parts of it.
#[derive(Clone, Debug)]
struct Transfer {
    writer: Who,
    start: u64,
    end: u64,
    readers: Vec<(Who, u64, u64)>,
    /// How a device writer's job is ordered before what follows: 0 synchronous, 1 a fence
    /// and a `wait`, 2 a fence that the readers wait for (`after`, or a CPU bracket's
    /// implicit wait).
    fence: u8,
}

#[derive(Clone, Debug)]
struct Program {
    preset: usize,
    heap: Heap,
    size: u64,
    /// The CPU's path: a user mmap and the sync ioctl, or the kernel's vmap and brackets.
    mmap: bool,
    /// Candidate devices (indices into the platform's devices) and whether each keeps its
    /// mapping for the whole program.
    devices: Vec<(usize, bool)>,
    transfers: Vec<Transfer>,
}

fn program() -> impl Strategy<Value = Program> {
    let heap = prop_oneof![
        3 => Just(Heap::System),
        2 => Just(Heap::Cma),
        1 => Just(Heap::Uncached),
        1 => Just(Heap::Udmabuf),
        1 => Just(Heap::Vram),
    ];
    let size = prop_oneof![Just(4096u64), Just(8192), Just(16384)];
    (0..PRESETS.len(), heap, size, any::<bool>(), prop::collection::vec((0usize..8, any::<bool>()), 1..4))
        .prop_flat_map(|(preset, heap, size, mmap, devices)| {
            let transfer =
                (0usize..5, 0u64..size, 1u64..=size, prop::collection::vec((0usize..5, any::<u64>()), 1..3), 0u8..3)
                    .prop_map(move |(w, a, len, readers, fence)| {
                        let start = a;
                        let end = (a + len).min(size).max(start + 1);
                        let pick = |i: usize| if i == 0 { Who::Cpu } else { Who::Device(i - 1) };
                        let readers = readers
                            .into_iter()
                            .map(|(r, x)| {
                                // A part of what was written: reads expect the latest value.
                                let n = end - start;
                                let s = start + x % n;
                                let e = s + 1 + (x >> 20) % (end - s);
                                (pick(r), s, e.min(end))
                            })
                            .collect();
                        Transfer { writer: pick(w), start, end, readers, fence }
                    });
            (Just((preset, heap, size, mmap, devices)), prop::collection::vec(transfer, 1..6))
        })
        .prop_map(|((preset, heap, size, mmap, devices), transfers)| Program {
            preset,
            heap,
            size,
            mmap,
            devices,
            transfers,
        })
}

/// A device of the program as it ended up: its platform name and properties.
struct Dev {
    name: String,
    kept: bool,
    /// Its writes reach the pages through dirty CPU lines (a bounce slot's copy back, or
    /// a stashing port).
    bounced: bool,
    /// It keeps its mapping whatever the program wants (a scanout).
    required: bool,
    /// Whether it reads, and writes, in the program (the direction of a kept mapping).
    reads: bool,
    writes: bool,
}

/// The scenario text of a program, or `None` when the platform cannot run it (no such
/// heap, no device that can attach).
fn scenario(p: &Program) -> Option<String> {
    let platform = Platform::preset(PRESETS[p.preset]).ok()?;
    let heap = match p.heap {
        Heap::System => "heap=system".to_string(),
        Heap::Cma => {
            platform.regions.iter().any(|r| r.kind == dmabuf_sim::RegionKind::Cma).then_some(())?;
            "heap=cma".into()
        }
        Heap::Uncached => "heap=uncached".into(),
        Heap::Udmabuf => "udmabuf".into(),
        Heap::Vram => {
            let owner = platform.regions.iter().find(|r| r.kind == dmabuf_sim::RegionKind::DeviceLocal)?;
            format!("device={}", owner.owner.clone()?)
        }
    };
    // The devices that can attach to such a buffer under the strict rules, in order.
    let sys = System::new(
        Sim::new(platform.clone()),
        SystemConfig { attach: AttachPolicy::Strict, maintenance: MaintenancePolicy::Minimal },
    );
    let probe = match p.heap {
        Heap::Vram => sys.device_exporter(heap.trim_start_matches("device=")).ok()?.allocate(p.size).ok()?,
        Heap::Udmabuf => {
            let mut m = sys.memfd(p.size).ok()?;
            m.seal_shrink();
            m.udmabuf(0, p.size).ok()?
        }
        _ => sys.heap(heap.trim_start_matches("heap=")).ok()?.allocate(p.size).ok()?,
    };
    let mut devs: Vec<Dev> = Vec::new();
    // Attachments stay, as in the program: a static importer pins a dynamic exporter's
    // buffer where it is.
    let mut held = Vec::new();
    for &(i, kept) in &p.devices {
        let d = &platform.devices[i % platform.devices.len()];
        if devs.iter().any(|x| x.name == d.name) {
            continue;
        }
        let id = sys.device(&d.name).ok()?;
        // Peer-to-peer where it exists, so that device memory stays put.
        let Ok(att) = probe.attach_with(id, ImporterCaps { allow_peer2peer: true, dynamic: false }) else {
            continue;
        };
        // A bounced mapping is copied back whole at unmap (swiotlb_tbl_unmap_single): kept
        // while others write the pages, it would put old bytes back over theirs, so a
        // bounced device maps per frame.
        // A bounced mapping's copy back, and a stashing port's writes, leave dirty CPU
        // lines over the pages.
        let bounced = att.plan() == AttachPlan::Bounce || (d.coherent && d.stash);
        let kept = (kept || d.keeps_mapping) && att.plan() != AttachPlan::Bounce;
        held.push(att);
        devs.push(Dev { name: d.name.clone(), kept, bounced, required: d.keeps_mapping, reads: false, writes: false });
    }
    // The copy back of a bounced mapping, and a stashing port's writes, sit in dirty CPU
    // lines, and upstream's `begin_cpu_access` invalidates the pages for every other
    // mapped attachment: a kept non-coherent mapping beside them loses those writes (a
    // hazard of its own, pinned by scenarios/stash-beside-kept-mapping.dmabuf, not a
    // protocol this test generates). Kept mappings go where such devices are.
    if devs.iter().any(|d| d.bounced) {
        if devs.iter().any(|d| d.required) {
            devs.retain(|d| !d.bounced);
        } else {
            devs.iter_mut().for_each(|d| d.kept = false);
        }
    }
    drop(held);
    drop(probe);
    if !devs.is_empty() {
        let n = devs.len();
        for t in &p.transfers {
            if let Who::Device(i) = t.writer {
                devs[i % n].writes = true;
            }
            for &(r, _, _) in &t.readers {
                if let Who::Device(i) = r {
                    devs[i % n].reads = true;
                }
            }
        }
    }
    let mut s = String::new();
    let b = "b";
    writeln!(s, "platform {}", PRESETS[p.preset]).ok()?;
    writeln!(s, "buffer {b} size={} {heap}", p.size).ok()?;
    for d in &devs {
        writeln!(s, "attach {} {b} p2p", d.name).ok()?;
    }
    if p.mmap {
        writeln!(s, "mmap {b}").ok()?;
    } else {
        writeln!(s, "vmap {b}").ok()?;
    }
    for d in devs.iter().filter(|d| d.kept) {
        let dir = match (d.reads, d.writes) {
            (true, true) => "bidirectional",
            (false, true) => "from_device",
            _ => "to_device",
        };
        writeln!(s, "map {} {b} {dir}", d.name).ok()?;
    }
    let dev = |w: Who| match w {
        Who::Device(i) if !devs.is_empty() => Some(&devs[i % devs.len()]),
        _ => None,
    };
    // Whether a device that keeps its mapping wrote since the CPU's last read bracket: a
    // CPU write then brackets `rw`, since upstream's write bracket (DMA_TO_DEVICE) drops
    // no stale line, and a partial-line write would merge with one.
    let mut unseen = false;
    let cpu = |s: &mut String, write: bool, rw: bool, start: u64, end: u64, what: &str| {
        let dir = if rw {
            "rw"
        } else if write {
            "write"
        } else {
            "read"
        };
        if p.mmap {
            writeln!(s, "sync {b} start {dir}").ok();
            writeln!(s, "{what}").ok();
            writeln!(s, "sync {b} end {dir}").ok();
        } else {
            writeln!(s, "cpu begin {b}[{start}..{end}] {dir}").ok();
            writeln!(s, "{what}").ok();
            writeln!(s, "cpu end {b} {dir}").ok();
        }
    };
    for (k, t) in p.transfers.iter().enumerate() {
        let v = (k % 250) + 1;
        let (ws, we) = (t.start, t.end);
        let fence = format!("f{k}");
        // The writer.
        let mut waited_by_readers = false;
        let writer = dev(t.writer);
        match writer {
            None => cpu(&mut s, true, unseen, ws, we, &format!("cpu write {b}[{ws}..{we}] = {v}")),
            Some(d) => {
                unseen |= d.kept;
                if !d.kept {
                    writeln!(s, "map {} {b} from_device", d.name).ok()?;
                }
                match (t.fence, d.kept) {
                    (0, _) => writeln!(s, "{} write {b}[{ws}..{we}] = {v}", d.name).ok()?,
                    // A per-frame mapping is unmapped after its job: wait for it first.
                    (1, _) | (_, false) => {
                        writeln!(s, "{} write {b}[{ws}..{we}] = {v} signal {fence}", d.name).ok()?;
                        writeln!(s, "wait {fence}").ok()?;
                    }
                    _ => {
                        writeln!(s, "{} write {b}[{ws}..{we}] = {v} signal {fence}", d.name).ok()?;
                        waited_by_readers = true;
                    }
                }
                if !d.kept {
                    writeln!(s, "unmap {} {b}", d.name).ok()?;
                }
            }
        }
        // The readers.
        let mut handed = false;
        for &(r, rs, re) in &t.readers {
            match dev(r) {
                None => {
                    // A CPU bracket waits for the buffer's writers itself (implicit sync).
                    cpu(&mut s, false, false, rs, re, &format!("cpu read {b}[{rs}..{re}] expect {v}"));
                    unseen = false;
                }
                Some(rd) => {
                    // A device that keeps its mapping hands its writes to another device
                    // with the device-side end of access (section 6), after its job; one
                    // that keeps its mapping takes them with the device-side begin.
                    if let Some(wd) = writer
                        && wd.kept
                        && wd.name != rd.name
                        && !handed
                    {
                        if waited_by_readers {
                            writeln!(s, "wait {fence}").ok()?;
                            waited_by_readers = false;
                        }
                        writeln!(s, "{} end {b}[{ws}..{we}]", wd.name).ok()?;
                        handed = true;
                    }
                    let other = writer.is_none_or(|wd| wd.name != rd.name);
                    if rd.kept && other {
                        writeln!(s, "{} begin {b}[{rs}..{re}]", rd.name).ok()?;
                    }
                    if !rd.kept {
                        writeln!(s, "map {} {b} to_device", rd.name).ok()?;
                    }
                    let after = if waited_by_readers { format!(" after {fence}") } else { String::new() };
                    writeln!(s, "{} read {b}[{rs}..{re}] expect {v}{after}", rd.name).ok()?;
                    if !rd.kept {
                        writeln!(s, "unmap {} {b}", rd.name).ok()?;
                    }
                }
            }
        }
        if waited_by_readers {
            // Nothing may touch the bytes before the job is done.
            writeln!(s, "wait {fence}").ok()?;
        }
    }
    for d in devs.iter().filter(|d| d.kept) {
        writeln!(s, "unmap {} {b}", d.name).ok()?;
    }
    Some(s)
}

fn check(src: &str) -> Result<(), TestCaseError> {
    let file = Path::new("generated.dmabuf");
    let s = parse(src, "generated.dmabuf").map_err(|e| TestCaseError::fail(format!("{e}\n{src}")))?;
    for maintenance in [MaintenancePolicy::Linux, MaintenancePolicy::Minimal] {
        for chooser in CHOOSERS {
            let cfg = RunConfig {
                chooser: chooser.into(),
                attach: AttachPolicy::Linux,
                maintenance,
                platform: None,
                max_memory: None,
            };
            let r = run(&s, file, src, &cfg).map_err(|e| TestCaseError::fail(format!("{e}\n{src}")))?;
            if let Some(f) = r.findings.first() {
                return Err(TestCaseError::fail(format!(
                    "{maintenance:?}, {chooser}: {} at line {}: {}\n{}",
                    f.kind.name(),
                    f.line,
                    f.message,
                    numbered(src)
                )));
            }
        }
    }
    Ok(())
}

fn numbered(src: &str) -> String {
    src.lines().enumerate().map(|(i, l)| format!("{:3} | {l}\n", i + 1)).collect()
}

proptest! {
    // PROPTEST_CASES sets the number of cases; 48 without it.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
        ..ProptestConfig::default()
    })]

    #[test]
    fn protocol_correct_programs_get_no_finding(p in program()) {
        if let Some(src) = scenario(&p) {
            if std::env::var_os("CONFORMANCE_SHOW").is_some() {
                eprintln!("----\n{src}");
            }
            check(&src)?;
        }
    }
}
