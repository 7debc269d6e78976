//! The allocator on the presets (and presets changed to force a fallback): the answer,
//! why the others were refused, where the brackets go, and the explorer's verdict.

use std::path::Path;

use dmabuf::{AttachPlan, HeapKind};
use dmabuf_sim::Platform;

use super::*;
use crate::explore::{ExploreConfig, explore};
use crate::runner::RunConfig;
use crate::scenario::parse;

fn user(s: &str) -> UserSpec {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// A request proved at two pages, which keeps the explorer quick on scattered buffers.
fn request(users: &[&str], cpu: Option<Access>) -> Request {
    Request { size: 64 << 10, prove_size: 8 << 10, ..Request::new(users.iter().map(|u| user(u)).collect(), cpu) }
}

fn plan_on(p: Platform, users: &[&str], cpu: Option<Access>) -> Plan {
    plan(&Board::from_platform(p), &request(users, cpu)).unwrap()
}

fn preset(name: &str) -> Platform {
    Platform::preset(name).unwrap()
}

fn placement(s: &Scheme) -> &Placement {
    match &s.kind {
        SchemeKind::Shared { buffer } => &buffer.placement,
        SchemeKind::Copy { first, .. } => &first.placement,
    }
}

fn scheme<'a>(plan: &'a Plan, place: &Placement) -> &'a Scheme {
    plan.schemes.iter().find(|s| matches!(s.kind, SchemeKind::Shared { .. }) && placement(s) == place).unwrap()
}

fn rule(s: &Scheme, party: &str) -> Option<&'static str> {
    s.attach.iter().find(|a| a.party == party).and_then(|a| a.result.as_ref().err().map(|e| e.rule()))
}

fn steps(plan: &Plan) -> Vec<String> {
    let text = plan.scenario("platform x").unwrap();
    text.lines().map(|l| l.split('#').next().unwrap_or("").trim().to_string()).filter(|l| !l.is_empty()).collect()
}

/// Explores a scenario text on a platform (both maintenance policies); true when proved.
fn proved(p: &Platform, src: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("p.toml");
    std::fs::write(&toml, p.to_toml()).unwrap();
    let s = parse(src, "t.dmabuf").unwrap();
    [dmabuf::MaintenancePolicy::Linux, dmabuf::MaintenancePolicy::Minimal].iter().all(|&maintenance| {
        let run = RunConfig { platform: Some(toml.display().to_string()), maintenance, ..RunConfig::default() };
        let cfg = ExploreConfig { run, ..ExploreConfig::default() };
        explore(&s, Path::new("t.dmabuf"), src, &cfg, &mut |_, _, _| {}).unwrap().verdict
            == crate::explore::Verdict::Proved
    })
}

#[test]
fn a_camera_that_needs_contiguous_memory_and_a_display_share_cma() {
    let plan = plan_on(preset("arm64-noncoherent"), &["isp:write", "display:read"], None);
    assert_eq!(plan.verdict(), Verdict::CopyFree);
    assert_eq!(placement(plan.chosen().unwrap()), &Placement::Heap(HeapKind::Cma));
    assert!(plan.proved(), "{:?}", plan.proofs);
    assert_eq!(plan.proofs.len(), 2);
    let sys = scheme(&plan, &Placement::Heap(HeapKind::System));
    assert_eq!(rule(sys, "isp"), Some("contiguity"));
    assert_eq!(rule(sys, "display"), None, "the display is behind an IOMMU");
    // The display keeps its mapping because the platform says so: mapped once; the ISP per
    // frame. Between two non-coherent devices nothing but the job contract is needed.
    let st = steps(&plan);
    assert_eq!(st.iter().filter(|l| *l == "map display frame to_device").count(), 1, "{st:#?}");
    assert_eq!(st.iter().filter(|l| *l == "map isp frame from_device").count(), 2, "{st:#?}");
    assert!(!st.iter().any(|l| l.contains(" begin ") || l.contains(" end ") || l.contains(" sync ")), "{st:#?}");
    assert!(plan.parties[1].kept_by_platform);
}

#[test]
fn a_display_that_cannot_bounce_refuses_the_system_heap_above_its_mask() {
    let plan = plan_on(preset("arm64-dma32"), &["pcie:write", "display:read"], None);
    assert_eq!(placement(plan.chosen().unwrap()), &Placement::Heap(HeapKind::Cma));
    let sys = scheme(&plan, &Placement::Heap(HeapKind::System));
    assert_eq!(rule(sys, "display"), Some("bounce"));
    assert!(plan.proved());
}

#[test]
fn both_behind_iommus_take_the_system_heap_and_cma_is_left_for_who_needs_it() {
    let plan = plan_on(preset("arm64-noncoherent"), &["vdec:write", "display:read"], None);
    assert_eq!(placement(plan.chosen().unwrap()), &Placement::Heap(HeapKind::System));
    let cma = scheme(&plan, &Placement::Heap(HeapKind::Cma));
    assert_eq!(cma.verdict(), Verdict::CopyFree, "CMA works too, and is listed with its cost");
    assert!(cma.cost.is_some());
    assert!(plan.chosen().unwrap().attach.iter().all(|a| a.result == Ok(AttachPlan::Iommu)));
}

#[test]
fn a_cpu_filled_buffer_brackets_the_cpu_write_and_lists_the_uncached_heap_as_an_alternative() {
    let plan = plan_on(preset("riscv-noncoherent"), &["gpu:read"], Some(Access::Write));
    assert_eq!(plan.verdict(), Verdict::CopyFree);
    assert_eq!(placement(plan.chosen().unwrap()), &Placement::Heap(HeapKind::System));
    let st = steps(&plan);
    let at = st.iter().position(|l| l == "sync frame start write").expect("the CPU's write bracket");
    assert_eq!(st[at + 2], "sync frame end write");
    assert!(st.iter().position(|l| l == "map gpu frame to_device").unwrap() > at);
    // The write-combined alternative is measured, never chosen: upstream has no such heap.
    let wc = scheme(&plan, &Placement::Heap(HeapKind::Uncached));
    assert_eq!(wc.verdict(), Verdict::Uncached);
    let (sys, wc) = (plan.chosen().unwrap().cost.unwrap(), wc.cost.unwrap());
    assert!(wc.linux.maintenance == 0 && sys.linux.maintenance > 0, "{wc:?} {sys:?}");
    assert!(plan.proved());
    // Without the CPU there is no uncached candidate at all.
    let plan = plan_on(preset("riscv-noncoherent"), &["vdec:write", "gpu:read"], None);
    assert!(!plan.schemes.iter().any(|s| placement(s) == &Placement::Heap(HeapKind::Uncached)));
}

#[test]
fn a_cpu_reader_brackets_a_read_after_the_device_writes() {
    let plan = plan_on(preset("arm64-noncoherent"), &["vdec:write"], Some(Access::Read));
    let st = steps(&plan);
    let unmap = st.iter().position(|l| l == "unmap vdec frame").unwrap();
    assert_eq!(st[unmap + 1], "sync frame start read", "{st:#?}");
    assert!(st[unmap + 2].starts_with("cpu read frame expect 0x11"), "{st:#?}");
    assert!(plan.proved());
}

/// A non-coherent device that keeps its mapping hands its writes to a coherent one that
/// keeps its own: the coherent reader snoops CPU lines (the kernel's zeroing) the writer
/// never touched. The planner puts a device-to-device sync there, and without it the
/// explorer finds the stale read.
#[test]
fn a_kept_non_coherent_writer_syncs_to_a_kept_coherent_reader_and_the_sync_is_needed() {
    let p = preset("arm64-mixed");
    let plan = plan_on(p.clone(), &["fpga-hp:write:kept", "fpga-acp:read:kept"], None);
    assert_eq!(plan.verdict(), Verdict::CopyFree);
    assert!(plan.proved(), "{:?}", plan.proofs);
    let st = steps(&plan);
    assert_eq!(st.iter().filter(|l| *l == "fpga-hp sync frame to fpga-acp").count(), 2, "{st:#?}");
    let line = plan.scenario(&format!("platform {}", p.name)).unwrap();
    let small = line.replace("size=64KiB", "size=8KiB");
    assert!(proved(&p, &small));
    let without: String = small.lines().filter(|l| !l.contains(" sync frame to ")).map(|l| format!("{l}\n")).collect();
    assert!(!proved(&p, &without), "the sync is what hands the bytes over:\n{without}");
}

/// The reverse direction needs nothing: a coherent writer that does not stash its writes
/// in the CPU cache leaves its bytes in memory.
#[test]
fn a_coherent_writer_hands_to_a_kept_non_coherent_reader_without_brackets() {
    let mut p = preset("arm64-mixed");
    let acp = p.device_index("fpga-acp").unwrap();
    p.devices[acp].stash = false;
    let plan = plan_on(p, &["fpga-acp:write", "iio:read"], None);
    assert!(plan.proved());
    let st = steps(&plan);
    assert!(!st.iter().any(|l| l.contains(" begin ") || l.contains(" sync ")), "{st:#?}");
    // Per frame: mapped around its job; the IIO buffer keeps its mapping.
    assert!(st.contains(&"map fpga-acp frame from_device".to_string()));
    assert_eq!(st.iter().filter(|l| l.starts_with("map iio")).count(), 1);
}

/// A coherent writer that stashes its writes in the CPU cache (ACP) leaves them in lines a
/// non-coherent reader does not snoop: the kept reader must clean them before each job.
#[test]
fn a_stashing_writer_hands_to_a_kept_non_coherent_reader_through_its_begin() {
    let plan = plan_on(preset("arm64-mixed"), &["fpga-acp:write", "iio:read"], None);
    assert!(plan.proved(), "{:?}", plan.proofs);
    let st = steps(&plan);
    assert_eq!(st.iter().filter(|l| *l == "iio begin frame").count(), 2, "{st:#?}");
}

/// No placement serves both: the ISP needs CMA, the USB gadget keeps its mapping and
/// reaches DRAM only. The answer is a copy, by an engine that reaches both, with its cost.
#[test]
fn when_no_placement_serves_everyone_a_named_engine_copies() {
    let mut p = preset("arm64-noncoherent");
    let usb = p.device_index("usb").unwrap();
    p.devices[usb].reaches = Some(vec!["dram".into()]);
    let plan = plan_on(p, &["isp:write", "usb:read:kept"], None);
    assert_eq!(plan.verdict(), Verdict::Copy);
    let chosen = plan.chosen().unwrap();
    let SchemeKind::Copy { first, second, engine, at } = &chosen.kind else { panic!("{chosen:?}") };
    assert_eq!(
        (&first.placement, &second.placement),
        (&Placement::Heap(HeapKind::Cma), &Placement::Heap(HeapKind::System))
    );
    assert_eq!(*at, 1);
    assert_ne!(engine.name, "isp", "the ISP cannot reach scattered pages");
    assert!(plan.proved());
    assert_eq!(rule(scheme(&plan, &Placement::Heap(HeapKind::Cma)), "usb"), Some("reachability"));
    assert_eq!(rule(scheme(&plan, &Placement::Heap(HeapKind::System)), "isp"), Some("contiguity"));
    // The cheapest of the copies was chosen, and the CPU is among them.
    let copies: Vec<&Scheme> = plan.schemes.iter().filter(|s| s.verdict() == Verdict::Copy).collect();
    assert!(copies.iter().any(|s| matches!(&s.kind, SchemeKind::Copy { engine, .. } if engine.who == Who::Cpu)));
    let best = chosen.cost.unwrap().linux.cycles;
    assert!(copies.iter().all(|s| s.cost.is_none_or(|c| c.linux.cycles >= best)));
    let st = steps(&plan);
    assert!(st.iter().any(|l| l.starts_with(&format!("{} copy frame to frame-copy", engine.name))), "{st:#?}");
}

/// Without CMA, a 30-bit engine reaches no page the system heap hands out: a bounce is
/// the only way, and its cost says how many bytes it copies.
#[test]
fn without_low_memory_a_bounce_is_the_fallback_with_its_cost() {
    let mut p = preset("arm64-dma32");
    p.regions.retain(|r| r.kind != dmabuf_sim::RegionKind::Cma);
    let plan = plan_on(p, &["legacy-dma:write", "gpu:read"], None);
    assert_eq!(plan.verdict(), Verdict::Bounce);
    let c = plan.chosen().unwrap().cost.unwrap();
    assert!(c.minimal.bounce_bytes >= 64 << 10 && c.linux.bounce_bytes >= 64 << 10, "{c:?}");
    assert!(plan.proved(), "{:?}", plan.proofs);
}

/// A bounced writer's bytes come back through the CPU's cache (swiotlb copies them at
/// unmap): a non-coherent reader that keeps its mapping must take them with its `begin`,
/// and without it the explorer finds the stale read.
#[test]
fn a_bounced_writer_hands_to_a_kept_non_coherent_reader_with_its_begin() {
    let mut p = preset("arm64-dma32");
    p.regions.retain(|r| r.kind != dmabuf_sim::RegionKind::Cma);
    let plan = plan_on(p.clone(), &["legacy-dma:write", "gpu:read:kept"], None);
    assert_eq!(plan.verdict(), Verdict::Bounce);
    assert!(plan.proved(), "{:?}", plan.proofs);
    let st = steps(&plan);
    assert_eq!(st.iter().filter(|l| *l == "gpu begin frame").count(), 2, "{st:#?}");
    let src = plan.scenario("platform x").unwrap().replace("size=64KiB", "size=8KiB");
    let without: String = src.lines().filter(|l| !l.contains("gpu begin")).map(|l| format!("{l}\n")).collect();
    assert!(!proved(&p, &without), "the begin is what takes the bytes:\n{without}");
}

#[test]
fn nothing_works_when_a_party_reaches_no_memory_at_all() {
    let mut p = preset("arm64-noncoherent");
    let usb = p.device_index("usb").unwrap();
    p.devices[usb].reaches = Some(Vec::new());
    let plan = plan_on(p, &["vdec:write", "usb:read"], None);
    assert_eq!((plan.verdict(), plan.answer), (Verdict::Refused, None));
    assert!(!plan.proved());
    assert!(plan.schemes.iter().all(|s| s.verdict() == Verdict::Refused));
    let text = to_text(&plan, "platform x");
    assert!(text.contains("answer: none") && text.contains("usb (reachability)"), "{text}");
}

#[test]
fn device_memory_is_chosen_when_it_is_the_only_memory_a_party_reaches_peer_to_peer() {
    let mut p = preset("x86-pcie");
    let d = p.device_index("display").unwrap();
    p.devices[d].reaches = Some(Vec::new());
    let plan = plan_on(p, &["dgpu:write", "display:read"], None);
    let chosen = plan.chosen().unwrap();
    assert_eq!(placement(chosen), &Placement::DeviceMemory { owner: "dgpu".into() });
    let display = chosen.attach.iter().find(|a| a.party == "display").unwrap();
    assert_eq!(display.result, Ok(AttachPlan::PeerToPeer));
    assert!(steps(&plan).contains(&"attach display frame p2p".to_string()));
    assert!(plan.proved());
}

#[test]
fn bad_requests_are_errors_that_say_what_to_do() {
    let b = Board::from_platform(preset("arm64-noncoherent"));
    let e = plan(&b, &request(&["gpo:read", "vdec:write"], None)).unwrap_err();
    assert!(e.to_string().contains("did you mean `gpu`"), "{e}");
    let e = plan(&b, &request(&["gpu:read"], None)).unwrap_err();
    assert!(matches!(e, PlanError::NoWriter), "{e}");
    let e = plan(&b, &request(&["gpu:read", "gpu:write"], None)).unwrap_err();
    assert!(matches!(e, PlanError::Twice { .. }), "{e}");
    let e = plan(&b, &Request::new(Vec::new(), Some(Access::Write))).unwrap_err();
    assert!(matches!(e, PlanError::NoUsers), "{e}");
    for bad in ["gpu", "gpu:sideways", "gpu:read:kept:too", ":read", "gpu:read:kpt"] {
        assert!(bad.parse::<UserSpec>().is_err(), "{bad}");
    }
    assert_eq!(user("display:rw:kept"), UserSpec { device: "display".into(), access: Access::ReadWrite, kept: true });
    let e = load("arm64-noncoherent", &["csi1".into()]).unwrap_err();
    assert!(e.to_string().contains("only a board's device tree"), "{e}");
    // A node path names a device as well as its name does.
    let mut p = preset("arm64-noncoherent");
    p.devices[0].node = Some("/soc/gpu@fd000000".into());
    let plan = plan_on(p, &["gpu@fd000000:read"], Some(Access::Write));
    assert_eq!(plan.parties[1].name, "gpu");
}

#[test]
fn the_json_names_the_answer_its_cost_and_the_proof() {
    let plan = plan_on(preset("arm64-noncoherent"), &["isp:write", "display:read"], None);
    let v = to_json(&plan, "platform arm64-noncoherent");
    assert_eq!(v["verdict"], "copy_free");
    assert_eq!(v["answer"]["buffers"][0]["placement"], "heap=cma");
    assert_eq!(v["answer"]["attach"][1]["plan"], "iommu");
    assert!(v["answer"]["cost"]["linux"]["cycles"].as_u64().unwrap() > 0);
    assert_eq!(v["proof"][0]["verdict"], "proved");
    assert_eq!(v["proved"], true);
    assert!(v["scenario"].as_str().unwrap().contains("buffer frame size=64KiB heap=cma"));
    let refused = v["schemes"].as_array().unwrap().iter().find(|s| s["verdict"] == "refused").unwrap();
    assert_eq!(refused["attach"][0]["rule"], "contiguity");
}
