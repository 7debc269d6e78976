//! `dmabuf plan` on real boards: the DTBs of Debian's arm64 kernel package, fetched by
//! `ci/board-dtbs.sh` (which prints their directory). Each test states what the board's
//! tree implies (the heap, where it lies, how each party reaches it) and that the
//! explorer proves the emitted protocol. Ignored in a plain `cargo test`; CI runs them
//! with `DMABUF_DTB_DIR=$(bash ci/board-dtbs.sh) cargo test -p dmabuf-check --test
//! plan_boards -- --include-ignored`, and there a missing directory fails them.

use std::path::PathBuf;

use dmabuf::{AttachPlan, HeapKind};
use dmabuf_check::plan::{Access, Placement, Plan, Request, SchemeKind, Verdict, load, plan};

fn board_plan(dtb: &str, enable: &[&str], users: &[&str], cpu: Option<Access>) -> Plan {
    let dir = std::env::var_os("DMABUF_DTB_DIR").expect("DMABUF_DTB_DIR names the DTB directory (ci/board-dtbs.sh)");
    let path = PathBuf::from(dir).join(dtb);
    let enable: Vec<String> = enable.iter().map(|s| s.to_string()).collect();
    let board = load(&path.display().to_string(), &enable).unwrap_or_else(|e| panic!("{e}"));
    let users = users.iter().map(|u| u.parse().unwrap()).collect();
    // Proved at four pages: the explorer's time grows with a scattered buffer's pages.
    let req = Request { size: 1 << 20, prove_size: 16 << 10, ..Request::new(users, cpu) };
    let p = plan(&board, &req).unwrap_or_else(|e| panic!("{e}"));
    assert!(p.proved(), "{dtb}: the protocol is proved: {:?}", p.proofs);
    p
}

/// The chosen scheme's one buffer: its placement and its physical span.
fn shared(p: &Plan) -> (&Placement, (u64, u64)) {
    match &p.chosen().expect("an answer").kind {
        SchemeKind::Shared { buffer } => (&buffer.placement, buffer.span),
        k => panic!("a shared buffer, not {k:?}"),
    }
}

fn reach(p: &Plan, party: &str) -> AttachPlan {
    let a = p.chosen().unwrap().attach.iter().find(|a| a.party == party).unwrap();
    a.result.clone().unwrap_or_else(|e| panic!("{party}: {e}"))
}

/// The rule that refused `party` on the shared `heap`.
fn refused(p: &Plan, heap: HeapKind, party: &str) -> &'static str {
    let s = p
        .schemes
        .iter()
        .find(|s| matches!(&s.kind, SchemeKind::Shared { buffer } if buffer.placement == Placement::Heap(heap)))
        .unwrap();
    s.attach.iter().find(|a| a.party == party).unwrap().result.as_ref().unwrap_err().rule()
}

fn has_step(p: &Plan, what: &str) -> bool {
    p.scenario("platform x").unwrap().lines().any(|l| l.contains(what))
}

#[test]
#[ignore = "needs the DTBs ci/board-dtbs.sh fetches (DMABUF_DTB_DIR)"]
fn rpi4_unicam_to_hvs_shares_cma_in_the_low_gib() {
    let p = board_plan("broadcom/bcm2711-rpi-4-b.dtb", &["csi1"], &["csi1:write", "hvs:read"], None);
    assert_eq!(p.verdict(), Verdict::CopyFree);
    let (place, span) = shared(&p);
    assert_eq!(place, &Placement::Heap(HeapKind::Cma));
    assert!(span.1 <= 1 << 30, "inside the legacy masters' window: {span:x?}");
    assert_eq!((reach(&p, "csi"), reach(&p, "hvs")), (AttachPlan::Direct, AttachPlan::Direct));
    assert_eq!(refused(&p, HeapKind::System, "csi"), "contiguity");
    assert!(p.parties.iter().any(|x| x.name == "hvs" && x.kept_by_platform), "the HVS scans out");
}

#[test]
#[ignore = "needs the DTBs ci/board-dtbs.sh fetches (DMABUF_DTB_DIR)"]
fn imx8mp_isi_to_lcdif_shares_cma_without_an_iommu() {
    let p = board_plan("freescale/imx8mp-evk.dtb", &["isi_0"], &["isi_0:write", "lcdif1:read"], None);
    assert_eq!(p.verdict(), Verdict::CopyFree);
    assert_eq!(shared(&p).0, &Placement::Heap(HeapKind::Cma));
    let lcdif = &p.parties[1].name;
    assert_eq!((reach(&p, "isi"), reach(&p, lcdif)), (AttachPlan::Direct, AttachPlan::Direct), "no IOMMU");
    assert_eq!(refused(&p, HeapKind::System, "isi"), "contiguity");
}

#[test]
#[ignore = "needs the DTBs ci/board-dtbs.sh fetches (DMABUF_DTB_DIR)"]
fn rk3399_vpu_to_vop_takes_the_system_heap_through_both_iommus() {
    let p = board_plan("rockchip/rk3399-rock-pi-4b.dtb", &[], &["vpu:write", "vop-big:read"], None);
    assert_eq!(p.verdict(), Verdict::CopyFree);
    let (place, _) = shared(&p);
    assert_eq!(place, &Placement::Heap(HeapKind::System));
    assert_eq!((reach(&p, "vpu"), reach(&p, "vop-big")), (AttachPlan::Iommu, AttachPlan::Iommu));
}

#[test]
#[ignore = "needs the DTBs ci/board-dtbs.sh fetches (DMABUF_DTB_DIR)"]
fn j721e_udma_to_dss_shares_cma_and_the_coherent_writer_needs_no_bracket() {
    let p = board_plan("ti/k3-j721e-sk.dtb", &[], &["main_udmap:write", "dss:read"], None);
    assert_eq!(p.verdict(), Verdict::CopyFree);
    let (place, span) = shared(&p);
    assert_eq!(place, &Placement::Heap(HeapKind::Cma));
    assert!(span.1 <= 1 << 32, "below the DSS's 32-bit mask: {span:x?}");
    assert_eq!(refused(&p, HeapKind::System, "dss"), "contiguity");
    assert!(p.platform.devices[p.platform.device_index("navss-main-udmap").unwrap()].coherent);
    assert!(!has_step(&p, " begin ") && !has_step(&p, " sync frame to "), "a coherent writer's bytes are in memory");
    // Nothing to maintain per frame: the writer snoops, the display keeps its mapping.
    assert_eq!(p.chosen().unwrap().cost.unwrap().linux.maintenance, 0);
}

#[test]
#[ignore = "needs the DTBs ci/board-dtbs.sh fetches (DMABUF_DTB_DIR)"]
fn a_cpu_filled_buffer_read_by_the_gpu_on_each_board() {
    // RPi4's V3D and RK3399's Mali address all of DRAM: the system heap.
    for (dtb, gpu) in [("broadcom/bcm2711-rpi-4-b.dtb", "v3d"), ("rockchip/rk3399-rock-pi-4b.dtb", "gpu")] {
        let p = board_plan(dtb, &[], &[&format!("{gpu}:read")], Some(Access::Write));
        assert_eq!(p.verdict(), Verdict::CopyFree, "{dtb}");
        assert_eq!(shared(&p).0, &Placement::Heap(HeapKind::System), "{dtb}");
        assert!(has_step(&p, "sync frame end write"), "{dtb}");
        // Upstream has no write-combined heap; it is measured as the alternative.
        let wc = p.schemes.iter().find(|s| s.verdict() == Verdict::Uncached).expect("the uncached alternative");
        assert!(wc.cost.unwrap().linux.cycles < p.chosen().unwrap().cost.unwrap().linux.cycles, "{dtb}");
    }
    // The i.MX 8M Plus GPU drives 32 address bits without an IOMMU and the system heap's
    // pages lie above 4 GiB: they would bounce. (etnaviv asks for DMA32 pages for this
    // reason when `dma_addressing_limited()`, in etnaviv_bind(), drivers/gpu/drm/etnaviv/
    // etnaviv_drv.c: "to hopefully avoid performance killing SWIOTLB bounce buffering".)
    // CMA is below 4 GiB.
    let p = board_plan("freescale/imx8mp-evk.dtb", &[], &["gpu3d:read"], Some(Access::Write));
    assert_eq!(shared(&p).0, &Placement::Heap(HeapKind::Cma));
    let sys = p
        .schemes
        .iter()
        .find(|s| matches!(&s.kind, SchemeKind::Shared { buffer } if buffer.placement == Placement::Heap(HeapKind::System)))
        .unwrap();
    assert_eq!(sys.verdict(), Verdict::Bounce);
    // The J721E's tree (6.12) has no GPU node: its CPU-filled buffer is scanned out by the
    // DSS, from CMA.
    let p = board_plan("ti/k3-j721e-sk.dtb", &[], &["dss:read"], Some(Access::Write));
    assert_eq!(shared(&p).0, &Placement::Heap(HeapKind::Cma));
    // The AM625's GPU, no IOMMU, 32 bits: the system heap's pages are within reach.
    let p = board_plan("ti/k3-am625-sk.dtb", &[], &["gpu:read"], Some(Access::Write));
    assert_eq!(p.verdict(), Verdict::CopyFree);
}

#[test]
#[ignore = "needs the DTBs ci/board-dtbs.sh fetches (DMABUF_DTB_DIR)"]
fn a_disabled_master_is_named_with_the_enable_that_adds_it() {
    let dir = std::env::var_os("DMABUF_DTB_DIR").expect("DMABUF_DTB_DIR");
    let path = PathBuf::from(dir).join("broadcom/bcm2711-rpi-4-b.dtb").display().to_string();
    let board = load(&path, &[]).unwrap();
    let req = Request::new(vec!["unicam:write".parse().unwrap(), "hvs:read".parse().unwrap()], None);
    let e = plan(&board, &req).unwrap_err().to_string();
    assert!(e.contains("/soc/csi@7e801000") && e.contains("csi1") && e.contains("--enable"), "{e}");
}
