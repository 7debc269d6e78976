//! Random sequences of framework calls, right and wrong, on every preset and policy:
//! nothing panics, misuse comes back as errors or reports, and after every buffer is
//! released nothing is left mapped, attached or bounced.

use dmabuf::AttachPolicy;
use dmabuf::{DmaBuf, MaintenancePolicy, Report, System, SystemConfig, raw};
use dmabuf_sim::{Adversarial, DmaDirection, Platform, Seeded, Sim};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        heap: u8,
        pages: u8,
    },
    Release {
        buf: u8,
    },
    /// Attach a device, map it, run jobs, maybe sync to another mapping, unmap, detach.
    DeviceEpisode {
        buf: u8,
        dev: u8,
        dir: u8,
        jobs: Vec<(bool, u32, u32, u8)>,
    },
    /// A kernel CPU bracket with accesses (ranges may be out of bounds).
    CpuEpisode {
        buf: u8,
        dir: u8,
        start: u32,
        len: u32,
        writes: Vec<(u32, u32, u8)>,
    },
    /// User space: mmap, raw sync flags, raw accesses.
    UserEpisode {
        buf: u8,
        flags: Vec<u8>,
        accesses: Vec<(bool, u32, u32)>,
    },
    Migrate {
        buf: u8,
        to_device: bool,
    },
    SetName {
        buf: u8,
        len: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..4u8, 0..6u8).prop_map(|(heap, pages)| Op::Alloc { heap, pages }),
        any::<u8>().prop_map(|buf| Op::Release { buf }),
        (
            any::<u8>(),
            any::<u8>(),
            0..3u8,
            prop::collection::vec((any::<bool>(), 0..30000u32, 0..9000u32, any::<u8>()), 0..4)
        )
            .prop_map(|(buf, dev, dir, jobs)| Op::DeviceEpisode { buf, dev, dir, jobs }),
        (
            any::<u8>(),
            0..3u8,
            0..20000u32,
            0..20000u32,
            prop::collection::vec((0..25000u32, 0..5000u32, any::<u8>()), 0..3)
        )
            .prop_map(|(buf, dir, start, len, writes)| Op::CpuEpisode { buf, dir, start, len, writes }),
        (
            any::<u8>(),
            prop::collection::vec(0..16u8, 0..4),
            prop::collection::vec((any::<bool>(), 0..25000u32, 0..5000u32), 0..3)
        )
            .prop_map(|(buf, flags, accesses)| Op::UserEpisode { buf, flags, accesses }),
        (any::<u8>(), any::<bool>()).prop_map(|(buf, to_device)| Op::Migrate { buf, to_device }),
        (any::<u8>(), 0..40u8).prop_map(|(buf, len)| Op::SetName { buf, len }),
    ]
}

const DIRS: [DmaDirection; 3] = [DmaDirection::ToDevice, DmaDirection::FromDevice, DmaDirection::Bidirectional];

fn pick(bufs: &[DmaBuf], i: u8) -> Option<&DmaBuf> {
    (!bufs.is_empty()).then(|| &bufs[i as usize % bufs.len()])
}

fn run(preset: &str, cfg: SystemConfig, seed: u64, ops: &[Op]) {
    let platform = Platform::preset(preset).unwrap();
    let chooser: Box<dyn dmabuf_sim::Chooser> =
        if seed.is_multiple_of(2) { Box::new(Adversarial) } else { Box::new(Seeded::new(seed)) };
    let sys = System::new(Sim::builder(platform.clone()).chooser_boxed(chooser).build(), cfg);
    let vram_exporter = platform.devices.iter().find_map(|d| sys.device_exporter(&d.name).ok());
    let mut bufs: Vec<DmaBuf> = Vec::new();
    for op in ops {
        match op {
            Op::Alloc { heap, pages } => {
                let size = *pages as u64 * 4096 + 100;
                let b = match heap {
                    0 => sys.heap("system").and_then(|h| h.allocate(size)),
                    1 => sys.heap("cma").and_then(|h| h.allocate(size)),
                    2 => sys.heap("uncached").and_then(|h| h.allocate(size)),
                    _ => match &vram_exporter {
                        Some(e) => e.allocate(size),
                        None => continue,
                    },
                };
                if let Ok(b) = b {
                    bufs.push(b);
                }
            }
            Op::Release { buf } => {
                if !bufs.is_empty() {
                    let i = *buf as usize % bufs.len();
                    bufs.swap_remove(i);
                }
            }
            Op::DeviceEpisode { buf, dev, dir, jobs } => {
                let Some(b) = pick(&bufs, *buf) else { continue };
                let d = dmabuf_sim::DeviceId(*dev as u16 % platform.devices.len() as u16);
                let Ok(att) = b.attach(d) else { continue };
                let Ok(m) = att.map(DIRS[*dir as usize]) else { continue };
                for &(write, start, len, byte) in jobs {
                    let r = start as u64..start as u64 + len as u64;
                    let _ = if write { m.device_fill(r, byte) } else { m.device_read(r).map(|_| ()) };
                    let _ = m.begin_access(start as u64..start as u64 + 64).map(|g| g.end());
                }
            }
            Op::CpuEpisode { buf, dir, start, len, writes } => {
                let Some(b) = pick(&bufs, *buf) else { continue };
                let r = *start as u64..*start as u64 + *len as u64;
                let Ok(mut cpu) = b.begin_cpu_access_partial(DIRS[*dir as usize], r) else { continue };
                for &(at, n, byte) in writes {
                    let _ = cpu.fill(at as u64..at as u64 + n as u64, byte);
                    let _ = cpu.read(at as u64..at as u64 + n as u64);
                }
                let _ = cpu.end();
            }
            Op::UserEpisode { buf, flags, accesses } => {
                let Some(b) = pick(&bufs, *buf) else { continue };
                let Ok(user) = b.mmap() else { continue };
                for f in flags {
                    let _ = raw::sync_ioctl(&user, *f as u64);
                }
                for &(write, at, n) in accesses {
                    let _ = if write {
                        raw::mmap_write(&user, at as u64, &vec![1; n as usize]).map(|_| ())
                    } else {
                        raw::mmap_read(&user, at as u64, &mut vec![0; n as usize])
                    };
                    let _ = user.read(at as u64..at as u64 + n as u64);
                }
            }
            Op::Migrate { buf, to_device } => {
                let Some(b) = pick(&bufs, *buf) else { continue };
                let to = if *to_device { dmabuf::Placement::Device } else { dmabuf::Placement::System };
                let _ = b.migrate(to);
            }
            Op::SetName { buf, len } => {
                let Some(b) = pick(&bufs, *buf) else { continue };
                assert_eq!(b.set_name(&"x".repeat(*len as usize)).is_ok(), *len <= 31);
            }
        }
    }
    drop(bufs);
    for r in sys.reports() {
        assert!(
            !matches!(r, Report::LeakedAttachments { .. } | Report::LeakedMappings { .. }),
            "RAII handles cannot leak: {r:?}"
        );
    }
    assert_eq!(sys.with_sim(|s| s.bounce_in_use()), 0, "every bounce slot was freed");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_api_sequences_never_panic_and_stay_balanced(
        ops in prop::collection::vec(op(), 1..24),
        preset in 0..5usize,
        strict in any::<bool>(),
        minimal in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let preset = Platform::preset_names()[preset];
        let cfg = SystemConfig {
            attach: if strict { AttachPolicy::Strict } else { AttachPolicy::Linux },
            maintenance: if minimal { MaintenancePolicy::Minimal } else { MaintenancePolicy::Linux },
        };
        run(preset, cfg, seed, &ops);
    }
}
