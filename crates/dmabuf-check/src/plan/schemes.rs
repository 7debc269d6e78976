//! Candidate schemes: buffers allocated by the framework in each placement, and every
//! party attached to them with the framework's own rules ([`dmabuf::check_attach`]).

use dmabuf::{AttachPlan, Backing, HeapKind, ImporterCaps, System, SystemConfig, check_attach};
use dmabuf_sim::{DeviceRole, Platform, RegionKind, Sim};

use super::{Allocation, AttachOutcome, Party, Placement, Scheme, SchemeKind, Who};

/// The scenario's name of a scheme's first buffer.
pub(super) const FIRST: &str = "frame";
/// The scenario's name of a copy's second buffer.
pub(super) const SECOND: &str = "frame-copy";

/// The placements a platform offers, in the order a shared buffer is tried: the `system`
/// heap (plentiful), `cma` (a reserved pool, for who needs it), each device's local
/// memory, and, when the CPU takes part, the `uncached` heap (vendor kernels only).
fn placements(p: &Platform, cpu: bool) -> Vec<Placement> {
    let mut v = vec![Placement::Heap(HeapKind::System)];
    if p.regions.iter().any(|r| r.kind == RegionKind::Cma) {
        v.push(Placement::Heap(HeapKind::Cma));
    }
    let mut owners: Vec<String> =
        p.regions.iter().filter(|r| r.kind == RegionKind::DeviceLocal).filter_map(|r| r.owner.clone()).collect();
    owners.sort();
    owners.dedup();
    v.extend(owners.into_iter().map(|owner| Placement::DeviceMemory { owner }));
    if cpu {
        v.push(Placement::Heap(HeapKind::Uncached));
    }
    v
}

/// Allocates buffers in `places`, in order, on a fresh machine (as the runner allocates a
/// scenario's buffers, so the pages are the ones the protocol will get).
fn allocate(p: &Platform, places: &[&Placement], size: u64) -> Result<Vec<(Allocation, Backing)>, String> {
    let sys = System::new(Sim::new(p.clone()), SystemConfig::default());
    let mut out = Vec::new();
    let mut held = Vec::new();
    for place in places {
        let buf = match place {
            Placement::Heap(h) => sys.heap(h.name()).and_then(|heap| heap.allocate(size)),
            Placement::DeviceMemory { owner } => sys.device_exporter(owner).and_then(|e| e.allocate(size)),
        }
        .map_err(|e| format!("{place} cannot hold {size} bytes: {e}"))?;
        let backing = buf.backing();
        let mut regions: Vec<String> = Vec::new();
        for r in &backing.pages {
            if let Some(name) = p.region_of(r.start).map(|i| p.regions[i].name.clone())
                && !regions.contains(&name)
            {
                regions.push(name);
            }
        }
        let first = backing.pages.iter().map(|r| r.start.raw()).min().unwrap_or(0);
        let end = backing.pages.iter().map(|r| r.end().raw()).max().unwrap_or(0);
        let pieces = 1 + backing.pages.windows(2).filter(|w| w[0].end() != w[1].start).count();
        out.push((
            Allocation { placement: (*place).clone(), regions, span: (first, end), pieces, attr: backing.attr.name() },
            backing,
        ));
        held.push(buf);
    }
    Ok(out)
}

/// The platform as attach sees it for this plan: a party that keeps its mapping cannot
/// be bounced (nobody copies between its accesses), whatever the device does elsewhere.
fn with_kept(p: &Platform, parties: &[Party]) -> Platform {
    let mut k = p.clone();
    for party in parties {
        if let Who::Device(i) = party.who
            && party.kept
        {
            k.devices[i].keeps_mapping = true;
        }
    }
    k
}

/// Every party that uses the buffer attached to it.
fn attach_all(k: &Platform, parties: &[&Party], buffer: &str, backing: &Backing) -> Vec<AttachOutcome> {
    parties
        .iter()
        .filter_map(|party| match party.who {
            Who::Cpu => None,
            Who::Device(i) => Some(AttachOutcome {
                party: party.name.clone(),
                buffer: buffer.into(),
                result: check_attach(k, buffer, backing, i, CAPS),
            }),
        })
        .collect()
}

/// The importers here accept device memory: the plan asks whether a path exists.
const CAPS: ImporterCaps = ImporterCaps { allow_peer2peer: true, dynamic: false };

fn refused(kind: SchemeKind, why: String) -> Scheme {
    Scheme { kind, attach: Vec::new(), cost: None, protocol: None, unusable: Some(why), allocated: false }
}

/// One shared buffer in each placement, every party attached.
pub(super) fn shared(p: &Platform, parties: &[Party], size: u64, cpu: bool) -> Vec<Scheme> {
    let k = with_kept(p, parties);
    let all: Vec<&Party> = parties.iter().collect();
    placements(p, cpu)
        .into_iter()
        .map(|place| match allocate(p, &[&place], size) {
            Ok(mut v) => {
                let (buffer, backing) = v.remove(0);
                let attach = attach_all(&k, &all, FIRST, &backing);
                Scheme {
                    kind: SchemeKind::Shared { buffer },
                    attach,
                    cost: None,
                    protocol: None,
                    unusable: None,
                    allocated: true,
                }
            }
            Err(why) => {
                let buffer = Allocation { placement: place, regions: Vec::new(), span: (0, 0), pieces: 0, attr: "" };
                refused(SchemeKind::Shared { buffer }, why)
            }
        })
        .collect()
}

/// How much a role is wanted as a copy engine: DMA engines first, then 2D engines, GPUs,
/// codecs, then anything else.
fn engine_rank(role: Option<DeviceRole>) -> u8 {
    match role {
        Some(DeviceRole::DmaEngine) => 0,
        Some(DeviceRole::Graphics2d) => 1,
        Some(DeviceRole::Gpu) => 2,
        Some(DeviceRole::VideoCodec) => 3,
        _ => 4,
    }
}

/// Two buffers with a copy between them: for every point in the frame where the parties
/// before it share one upstream placement without a bounce and the ones after it another,
/// each engine that reaches both (one of each kind of engine, the CPU among them).
pub(super) fn copies(p: &Platform, parties: &[Party], size: u64) -> Vec<Scheme> {
    let k = with_kept(p, parties);
    let places: Vec<Placement> = placements(p, false).into_iter().filter(Placement::upstream).collect();
    let clean = |v: &[AttachOutcome]| {
        v.iter().all(|a| matches!(a.result, Ok(AttachPlan::Direct | AttachPlan::Iommu | AttachPlan::PeerToPeer)))
    };
    let mut out = Vec::new();
    for at in 1..parties.len() {
        let (before, after): (Vec<&Party>, Vec<&Party>) =
            (parties[..at].iter().collect(), parties[at..].iter().collect());
        for a in &places {
            for b in places.iter().filter(|b| *b != a) {
                let Ok(mut v) = allocate(p, &[a, b], size) else { continue };
                let (second, second_b) = v.remove(1);
                let (first, first_b) = v.remove(0);
                let mut attach = attach_all(&k, &before, FIRST, &first_b);
                attach.extend(attach_all(&k, &after, SECOND, &second_b));
                if !clean(&attach) {
                    continue;
                }
                // Engines: one of each kind (coherency, private cache, how it reaches each
                // buffer), the most wanted role first; the CPU always can.
                let mut kinds: Vec<(Party, Vec<AttachOutcome>)> = Vec::new();
                let mut seen = Vec::new();
                let mut devs: Vec<usize> = (0..p.devices.len()).collect();
                devs.sort_by_key(|&i| (engine_rank(p.devices[i].role), p.devices[i].name.clone()));
                // A party that keeps its mapping cannot map the buffer again to copy.
                let kept = |i: usize| parties.iter().any(|x| x.who == Who::Device(i) && x.kept);
                for i in devs.into_iter().filter(|&i| !kept(i)) {
                    let d = &p.devices[i];
                    let engine = Party {
                        who: Who::Device(i),
                        name: d.name.clone(),
                        access: super::Access::ReadWrite,
                        kept: false,
                        kept_by_platform: false,
                    };
                    let mut e = attach_all(p, &[&engine], FIRST, &first_b);
                    e.extend(attach_all(p, &[&engine], SECOND, &second_b));
                    if !clean(&e) {
                        continue;
                    }
                    let class = (
                        d.coherent,
                        d.cache.is_some() && !d.job_contract,
                        d.stash,
                        e.iter().map(|x| format!("{:?}", x.result)).collect::<Vec<_>>(),
                    );
                    if seen.contains(&class) {
                        continue;
                    }
                    seen.push(class);
                    kinds.push((engine, e));
                }
                let cpu = Party {
                    who: Who::Cpu,
                    name: "cpu".into(),
                    access: super::Access::ReadWrite,
                    kept: false,
                    kept_by_platform: false,
                };
                kinds.push((cpu, Vec::new()));
                for (engine, e) in kinds {
                    let mut attach = attach.clone();
                    attach.extend(e);
                    out.push(Scheme {
                        kind: SchemeKind::Copy { first: first.clone(), second: second.clone(), engine, at },
                        attach,
                        cost: None,
                        protocol: None,
                        unusable: None,
                        allocated: true,
                    });
                }
            }
        }
    }
    out
}
