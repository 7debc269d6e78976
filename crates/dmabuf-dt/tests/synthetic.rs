//! Trees written here with `vm-fdt`, each stating one thing the importer must read as the
//! kernel does; and blobs cut and corrupted, which must be errors, never panics.

use dmabuf_sim::{BusAddr, DeviceRole, PhysAddr, RegionKind};
use vm_fdt::FdtWriter;

/// A board: 4 GiB of DRAM at 0x4000_0000, a CMA pool of 32 MiB in the low 1 GiB of it,
/// a no-map carve-out, an outer bus with a 1:1 window of 3 GiB and an inner bus that
/// shows its children physical memory at an offset; a coherent bus; an enabled and a
/// disabled IOMMU.
fn board() -> Vec<u8> {
    let mut w = FdtWriter::new().unwrap();
    let root = w.begin_node("").unwrap();
    w.property_string("model", "Test board").unwrap();
    w.property_string_list("compatible", vec!["test,board".into()]).unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 2).unwrap();
    let aliases = w.begin_node("aliases").unwrap();
    w.property_string("csi1", "/soc/legacy-bus/csi@7e801000").unwrap();
    w.end_node(aliases).unwrap();
    // `vm-fdt` refuses a node name starting with `_`: the label table is renamed to
    // `__symbols__` in the finished blob (same length).
    let symbols = w.begin_node("zzsymbolszz").unwrap();
    w.property_string("unicam1", "/soc/legacy-bus/csi@7e801000").unwrap();
    w.property_string("isi_0", "/soc/cam-bus/isi@32e00000").unwrap();
    w.end_node(symbols).unwrap();
    let m = w.begin_node("memory@40000000").unwrap();
    w.property_string("device_type", "memory").unwrap();
    w.property_array_u64("reg", &[0x4000_0000, 0x1_0000_0000]).unwrap();
    w.end_node(m).unwrap();
    let rm = w.begin_node("reserved-memory").unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 2).unwrap();
    w.property_null("ranges").unwrap();
    let cma = w.begin_node("linux,cma").unwrap();
    w.property_string("compatible", "shared-dma-pool").unwrap();
    w.property_null("reusable").unwrap();
    w.property_null("linux,cma-default").unwrap();
    w.property_array_u64("size", &[0x200_0000]).unwrap();
    w.property_array_u64("alloc-ranges", &[0x4000_0000, 0x4000_0000]).unwrap();
    w.end_node(cma).unwrap();
    let fw = w.begin_node("firmware@48000000").unwrap();
    w.property_array_u64("reg", &[0x4800_0000, 0x10_0000]).unwrap();
    w.property_null("no-map").unwrap();
    w.end_node(fw).unwrap();
    w.end_node(rm).unwrap();

    let smmu = w.begin_node("iommu@10000000").unwrap();
    w.property_string("compatible", "arm,mmu-500").unwrap();
    w.property_array_u64("reg", &[0x1000_0000, 0x1000]).unwrap();
    w.property_u32("#iommu-cells", 1).unwrap();
    w.property_u32("phandle", 1).unwrap();
    w.end_node(smmu).unwrap();
    let off = w.begin_node("iommu@11000000").unwrap();
    w.property_string("compatible", "arm,mmu-500").unwrap();
    w.property_array_u64("reg", &[0x1100_0000, 0x1000]).unwrap();
    w.property_u32("#iommu-cells", 1).unwrap();
    w.property_string("status", "disabled").unwrap();
    w.property_u32("phandle", 2).unwrap();
    w.end_node(off).unwrap();

    let outer = w.begin_node("soc").unwrap();
    w.property_string("compatible", "simple-bus").unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 2).unwrap();
    w.property_null("ranges").unwrap();
    // Children address physical 0x4000_0000.. at bus 0x4000_0000, 3 GiB.
    w.property_array_u64("dma-ranges", &[0x4000_0000, 0x4000_0000, 0xc000_0000]).unwrap();
    let inner = w.begin_node("legacy-bus").unwrap();
    w.property_string("compatible", "simple-bus").unwrap();
    w.property_u32("#address-cells", 1).unwrap();
    w.property_u32("#size-cells", 1).unwrap();
    // Its children see the outer bus's 0x4000_0000 at 0xc000_0000, 1 GiB.
    w.property_array_u32("dma-ranges", &[0xc000_0000, 0x0, 0x4000_0000, 0x4000_0000]).unwrap();
    let hvs = w.begin_node("hvs@7e400000").unwrap();
    w.property_string("compatible", "test,board-hvs").unwrap();
    w.property_array_u32("reg", &[0x7e40_0000, 0x1000]).unwrap();
    w.end_node(hvs).unwrap();
    // A camera interface the board leaves disabled until a sensor is fitted.
    let csi = w.begin_node("csi@7e801000").unwrap();
    w.property_string("compatible", "brcm,bcm2835-unicam").unwrap();
    w.property_array_u32("reg", &[0x7e80_1000, 0x800]).unwrap();
    w.property_string("status", "disabled").unwrap();
    w.end_node(csi).unwrap();
    w.end_node(inner).unwrap();
    // A whole bus left disabled, with a camera on it.
    let cam = w.begin_node("cam-bus").unwrap();
    w.property_string("compatible", "simple-bus").unwrap();
    w.property_u32("#address-cells", 1).unwrap();
    w.property_u32("#size-cells", 1).unwrap();
    w.property_string("status", "disabled").unwrap();
    let isi = w.begin_node("isi@32e00000").unwrap();
    w.property_string("compatible", "fsl,imx8mp-isi").unwrap();
    w.property_array_u32("reg", &[0x32e0_0000, 0x4000]).unwrap();
    w.end_node(isi).unwrap();
    w.end_node(cam).unwrap();
    let vop = w.begin_node("vop@ff900000").unwrap();
    w.property_string("compatible", "test,board-vop").unwrap();
    w.property_array_u64("reg", &[0xff90_0000, 0x1000]).unwrap();
    w.property_array_u32("iommus", &[1, 5]).unwrap();
    w.end_node(vop).unwrap();
    let gpu = w.begin_node("gpu@fd000000").unwrap();
    w.property_string("compatible", "arm,mali-t860").unwrap();
    w.property_array_u64("reg", &[0xfd00_0000, 0x1000]).unwrap();
    w.property_array_u32("iommus", &[2, 7]).unwrap();
    w.end_node(gpu).unwrap();
    let nav = w.begin_node("navss").unwrap();
    w.property_string("compatible", "simple-bus").unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 2).unwrap();
    w.property_null("dma-ranges").unwrap();
    w.property_null("dma-coherent").unwrap();
    let udma = w.begin_node("dma-controller@31150000").unwrap();
    w.property_string("compatible", "test,board-udmap").unwrap();
    w.property_array_u64("reg", &[0x3115_0000, 0x100]).unwrap();
    w.end_node(udma).unwrap();
    w.end_node(nav).unwrap();
    w.end_node(outer).unwrap();
    w.end_node(root).unwrap();
    let mut blob = w.finish().unwrap();
    let at = blob.windows(11).position(|x| x == b"zzsymbolszz").unwrap();
    blob[at..at + 11].copy_from_slice(b"__symbols__");
    blob
}

#[test]
fn nested_dma_ranges_compose_into_one_window_with_its_offset() {
    let imp = dmabuf_dt::import(&board(), "board.dtb").unwrap();
    let p = &imp.platform;
    let hvs = &p.devices[p.device_index("hvs").unwrap()];
    assert_eq!(hvs.role, Some(DeviceRole::Display));
    assert_eq!(hvs.node.as_deref(), Some("/soc/legacy-bus/hvs@7e400000"));
    assert_eq!(hvs.dma_windows.len(), 1);
    // Inner: bus 0xc000_0000 -> outer 0x4000_0000; outer: 0x4000_0000 -> physical 0x4000_0000.
    assert_eq!(hvs.phys_to_bus(PhysAddr(0x4000_1000)), Some(BusAddr(0xc000_1000)));
    assert_eq!(hvs.phys_to_bus(PhysAddr(0x8000_0000)), None, "beyond the inner window's 1 GiB");
    assert!(hvs.needs_contiguous && hvs.keeps_mapping && !hvs.iommu);
}

#[test]
fn coherency_is_inherited_from_a_bus_and_a_disabled_iommu_translates_nothing() {
    let imp = dmabuf_dt::import(&board(), "board.dtb").unwrap();
    let p = &imp.platform;
    let udma = &p.devices[p.device_index("dma-controller").unwrap()];
    assert!(udma.coherent, "dma-coherent on /soc/navss");
    assert_eq!(udma.role, Some(DeviceRole::DmaEngine));
    let vop = &p.devices[p.device_index("vop").unwrap()];
    assert!(vop.iommu && !vop.coherent);
    let unit = p.iommu_of(p.device_index("vop").unwrap()).unwrap();
    assert_eq!(unit.node.as_deref(), Some("/iommu@10000000"));
    assert_eq!(unit.input_bits, 48);
    let gpu = &p.devices[p.device_index("gpu").unwrap()];
    assert!(!gpu.iommu, "its SMMU is disabled");
    assert_eq!(gpu.role, Some(DeviceRole::Gpu));
}

#[test]
fn the_cma_pool_is_placed_in_its_alloc_ranges_and_carve_outs_leave_the_heaps() {
    let imp = dmabuf_dt::import(&board(), "board.dtb").unwrap();
    let p = &imp.platform;
    let cma = p.regions.iter().find(|r| r.kind == RegionKind::Cma).unwrap();
    assert_eq!(cma.size.0, 32 << 20);
    assert!(cma.base.0 >= 0x4000_0000 && cma.base.0 + cma.size.0 <= 0x8000_0000, "{cma:?}");
    assert!(p.region_of(PhysAddr(0x4800_0000)).is_none(), "the no-map carve-out is in no region");
    // The commented TOML reads back to the same platform.
    let text = imp.to_commented_toml();
    assert!(text.contains("# /soc/legacy-bus/hvs@7e400000"), "{text}");
    assert_eq!(dmabuf_sim::Platform::from_toml(&text, "again.toml").unwrap(), *p);
}

/// A disabled master is no device (`of_device_is_available`) until enabled, as an overlay
/// would enable it: by path, by alias or by label; it then takes its bus's windows.
#[test]
fn a_disabled_master_is_enabled_by_path_alias_or_label() {
    let imp = dmabuf_dt::import(&board(), "board.dtb").unwrap();
    assert!(imp.platform.device_index("csi").is_none());
    assert!(imp.disabled.iter().any(|d| d.node == "/soc/legacy-bus/csi@7e801000"
        && d.role == DeviceRole::Camera
        && d.compatible == "brcm,bcm2835-unicam"));
    // The tree's own names for it, which an overlay or a user would use.
    for label in ["csi1", "unicam1"] {
        assert!(imp.labels.contains(&(label.into(), "/soc/legacy-bus/csi@7e801000".into())), "{:?}", imp.labels);
    }
    for spec in ["/soc/legacy-bus/csi@7e801000", "csi1", "unicam1"] {
        let imp = dmabuf_dt::import_enabling(&board(), "board.dtb", &[spec.to_string()]).unwrap();
        let p = &imp.platform;
        let csi = &p.devices[p.device_index("csi").unwrap_or_else(|| panic!("{spec}: no csi"))];
        assert_eq!(csi.role, Some(DeviceRole::Camera), "{spec}");
        assert_eq!(csi.phys_to_bus(PhysAddr(0x4000_1000)), Some(BusAddr(0xc000_1000)), "{spec}: the bus's window");
        assert_eq!(imp.enabled, ["/soc/legacy-bus/csi@7e801000"]);
        assert!(imp.disabled.iter().all(|d| !d.node.ends_with("csi@7e801000")), "{spec}");
        assert!(imp.notes.iter().any(|n| n.contains("enabled on request")), "{spec}");
    }
    let e = dmabuf_dt::import_enabling(&board(), "board.dtb", &["csi9".into()]).unwrap_err();
    assert!(e.to_string().contains("csi9") && e.to_string().contains("no such node"), "{e}");
    let e = dmabuf_dt::import_enabling(&board(), "board.dtb", &["isi_0".into()]).unwrap_err();
    assert!(e.to_string().contains("/soc/cam-bus, which is disabled"), "{e}");
    let both = ["/soc/cam-bus".to_string(), "isi_0".to_string()];
    let p = dmabuf_dt::import_enabling(&board(), "board.dtb", &both).unwrap().platform;
    assert!(p.device_index("isi").is_some());
}

#[test]
fn cut_and_corrupted_blobs_are_errors_not_panics() {
    let good = board();
    for cut in [0, 3, 8, 40, good.len() / 2, good.len() - 1] {
        assert!(dmabuf_dt::import(&good[..cut], "cut.dtb").is_err(), "cut at {cut}");
    }
    // Every byte of the header and a stride through the rest, each set to 0xff: an
    // error or a platform, never a panic.
    let mut seed = 0x1234_5678u32;
    for i in (0..good.len()).step_by(7) {
        let mut b = good.clone();
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        b[i] = (seed >> 24) as u8;
        let _ = dmabuf_dt::import(&b, "bad.dtb");
    }
    let e = dmabuf_dt::import(b"not a tree at all, just text", "x.dtb").unwrap_err();
    assert!(e.to_string().contains("bad magic"), "{e}");
}
