//! Real boards: the DTBs of Debian's arm64 kernel package, fetched by `ci/board-dtbs.sh`
//! (which prints their directory), imported and held to what their trees say. They need
//! that directory, so they are ignored in a plain `cargo test`; CI runs them with
//! `DMABUF_DTB_DIR=$(bash ci/board-dtbs.sh) cargo test -p dmabuf-dt --test boards --
//! --include-ignored`, and there a missing directory fails them.

use std::path::PathBuf;

use dmabuf_dt::Import;
use dmabuf_sim::{DeviceRole, Platform, RegionKind};

fn board(rel: &str) -> Import {
    let dir = std::env::var_os("DMABUF_DTB_DIR").expect("DMABUF_DTB_DIR names the DTB directory (ci/board-dtbs.sh)");
    let path = PathBuf::from(dir).join(rel);
    dmabuf_dt::import_path(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn dev<'a>(p: &'a Platform, node_suffix: &str) -> &'a dmabuf_sim::DeviceDesc {
    p.devices.iter().find(|d| d.node.as_deref().is_some_and(|n| n.ends_with(node_suffix))).unwrap_or_else(|| {
        panic!("no master at {node_suffix}: {:?}", p.devices.iter().map(|d| &d.node).collect::<Vec<_>>())
    })
}

fn unit<'a>(p: &'a Platform, d: &dmabuf_sim::DeviceDesc) -> Option<&'a str> {
    let i = p.device_index(&d.name)?;
    p.iommu_of(i).and_then(|m| m.node.as_deref())
}

#[test]
#[ignore = "needs the DTBs ci/board-dtbs.sh fetches (DMABUF_DTB_DIR)"]
fn rock_pi_4b_nothing_coherent_media_behind_their_own_iommus_the_rest_without() {
    let imp = board("rockchip/rk3399-rock-pi-4b.dtb");
    let p = &imp.platform;
    assert!(p.devices.iter().all(|d| !d.coherent), "nothing coherent");
    for (m, mmu) in [
        ("/vop@ff900000", "/iommu@ff903f00"),
        ("/vop@ff8f0000", "/iommu@ff8f3f00"),
        ("/video-codec@ff650000", "/iommu@ff650800"),
        ("/video-codec@ff660000", "/iommu@ff660480"),
    ] {
        assert_eq!(unit(p, dev(p, m)), Some(mmu), "{m} behind its own IOMMU");
    }
    assert_eq!(dev(p, "/video-codec@ff650000").name, "vpu");
    assert_eq!(dev(p, "/video-codec@ff660000").name, "vdec");
    // The ISPs are disabled on this board (no camera); the tree still puts each behind
    // its own IOMMU.
    for (isp, mmu) in [("/isp0@ff910000", "/iommu@ff914000"), ("/isp1@ff920000", "/iommu@ff924000")] {
        let d = imp.disabled.iter().find(|d| d.node == isp).expect("the ISP node");
        assert_eq!((d.role, d.iommu.as_deref()), (DeviceRole::Camera, Some(mmu)));
    }
    for m in ["/rga@ff680000", "/gpu@ff9a0000", "/usb@fe800000/usb@fe800000", "/pcie@f8000000"] {
        assert!(!dev(p, m).iommu, "{m} has no IOMMU");
    }
    assert_eq!(dev(p, "/gpu@ff9a0000").role, Some(DeviceRole::Gpu));
    assert_eq!(dev(p, "/rga@ff680000").role, Some(DeviceRole::Graphics2d));
    assert!(p.iommus.iter().all(|m| m.input_bits == 32), "Rockchip IOMMUs translate 32 bits");
}

#[test]
#[ignore = "needs the DTBs ci/board-dtbs.sh fetches (DMABUF_DTB_DIR)"]
fn rpi4_legacy_masters_at_bus_offset_pcie_3gib_no_iommu_nothing_coherent_cma_low() {
    let imp = board("broadcom/bcm2711-rpi-4-b.dtb");
    let p = &imp.platform;
    for m in ["/soc/hvs@7e400000", "/soc/dma-controller@7e007000", "/soc/mmc@7e300000", "/soc/usb@7e980000"] {
        let d = dev(p, m);
        assert_eq!(d.dma_windows.len(), 1, "{m}");
        let w = d.dma_windows[0];
        assert_eq!((w.cpu.0, w.bus.0, w.size.0), (0, 0xc000_0000, 1 << 30), "{m}: the low 1 GiB at bus 0xc000_0000");
    }
    assert_eq!(dev(p, "/soc/usb@7e980000").description, "brcm,bcm2835-usb (usb)", "the DWC2");
    let pcie = dev(p, "/scb/pcie@7d500000");
    assert_eq!((pcie.dma_windows[0].cpu.0, pcie.dma_windows[0].size.0), (0, 3 << 30), "PCIe reaches 3 GiB");
    assert!(p.iommus.is_empty() && p.devices.iter().all(|d| !d.iommu && !d.coherent));
    let cma = p.regions.iter().find(|r| r.kind == RegionKind::Cma).unwrap();
    assert_eq!(cma.size.0, 64 << 20);
    assert!(cma.base.0 + cma.size.0 <= 1 << 30, "CMA in the low 1 GiB: {cma:?}");
}

#[test]
#[ignore = "needs the DTBs ci/board-dtbs.sh fetches (DMABUF_DTB_DIR)"]
fn imx8mp_evk_no_iommu_usb3_in_the_1_to_4_gib_window() {
    let p = board("freescale/imx8mp-evk.dtb").platform;
    assert!(p.iommus.is_empty() && p.devices.iter().all(|d| !d.iommu));
    let usb = dev(&p, "/usb@38200000");
    assert_eq!(usb.role, Some(DeviceRole::Usb));
    let w = usb.dma_windows[0];
    assert_eq!((w.cpu.0, w.bus.0, w.cpu.0 + w.size.0), (1 << 30, 1 << 30, 4 << 30));
    assert!(!usb.dma_capable(dmabuf_sim::PhysRange::new(dmabuf_sim::PhysAddr(0x3000_0000), 4096).unwrap()));
    let lcdif = dev(&p, "/display-controller@32e80000");
    assert!(lcdif.needs_contiguous && lcdif.keeps_mapping && lcdif.role == Some(DeviceRole::Display));
}

#[test]
#[ignore = "needs the DTBs ci/board-dtbs.sh fetches (DMABUF_DTB_DIR)"]
fn j721e_sk_navss_pcie_usb_sdhci_ufs_coherent_dss_not() {
    let imp = board("ti/k3-j721e-sk.dtb");
    let p = &imp.platform;
    for m in ["/bus@30000000/dma-controller@31150000", "/pcie@2900000", "/cdns-usb@4104000/usb@6000000", "/mmc@4fb0000"]
    {
        assert!(dev(p, m).coherent, "{m} coherent");
    }
    assert_eq!(dev(p, "/bus@30000000/dma-controller@31150000").role, Some(DeviceRole::DmaEngine));
    // The SK's UFS is disabled; its node is coherent all the same.
    let ufs = imp.disabled.iter().find(|d| d.node.ends_with("/ufs@4e84000")).expect("the UFS node");
    assert!(ufs.coherent);
    let dss = dev(p, "/dss@4a00000");
    assert!(!dss.coherent && dss.role == Some(DeviceRole::Display));
    assert_eq!(p.system_cache().and_then(|s| s.node.as_deref()), Some("/l3-cache0"), "the MSMC's L3");
}

#[test]
#[ignore = "needs the DTBs ci/board-dtbs.sh fetches (DMABUF_DTB_DIR)"]
fn am625_sk_nothing_coherent_no_iommu() {
    let p = board("ti/k3-am625-sk.dtb").platform;
    assert!(!p.devices.is_empty());
    assert!(p.devices.iter().all(|d| !d.coherent && !d.iommu) && p.iommus.is_empty());
    assert_eq!(dev(&p, "/dss@30200000").role, Some(DeviceRole::Display));
}

#[test]
#[ignore = "needs the DTBs ci/board-dtbs.sh fetches (DMABUF_DTB_DIR)"]
fn zcu102_smmu_disabled_cci_present_nothing_coherent() {
    let imp = board("xilinx/zynqmp-zcu102-rev1.0.dtb");
    let p = &imp.platform;
    assert!(p.iommus.is_empty() && p.devices.iter().all(|d| !d.iommu), "the SMMU is disabled");
    assert!(p.devices.iter().all(|d| !d.coherent), "nothing coherent by default");
    assert!(imp.interconnects.iter().any(|(n, _)| n == "/axi/cci@fd6e0000"), "{:?}", imp.interconnects);
    assert_eq!(dev(p, "/axi/gpu@fd4b0000").role, Some(DeviceRole::Gpu));
}

#[test]
#[ignore = "needs the DTBs ci/board-dtbs.sh fetches (DMABUF_DTB_DIR)"]
fn db845c_adreno_behind_its_own_smmu_venus_display_usb_behind_the_apps_smmu() {
    let p = board("qcom/sdm845-db845c.dtb").platform;
    assert_eq!(unit(&p, dev(&p, "/gpu@5000000")), Some("/soc@0/iommu@5040000"));
    for m in ["/video-codec@aa00000", "/display-subsystem@ae00000", "/usb@a6f8800/usb@a600000"] {
        assert_eq!(unit(&p, dev(&p, m)), Some("/soc@0/iommu@15000000"), "{m}");
    }
    let llcc = p.system_cache().expect("the LLCC");
    assert_eq!(llcc.name, "llcc");
    assert!(!p.system_cache_before_poc(), "every master goes through the LLCC");
}
