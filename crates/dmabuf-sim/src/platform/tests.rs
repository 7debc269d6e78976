//! The description's rules and its TOML, one test each.

use super::*;

#[test]
fn every_preset_parses_and_round_trips() {
    for name in Platform::preset_names() {
        let p = Platform::preset(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(p.name, name);
        let again = Platform::from_toml(&p.to_toml(), "round-trip").unwrap();
        assert_eq!(again, p, "{name} does not survive a TOML round trip");
    }
}

#[test]
fn sizes_take_units() {
    assert_eq!(ByteSize::parse("64KiB"), Ok(ByteSize(65536)));
    assert_eq!(ByteSize::parse("4 GiB"), Ok(ByteSize(4 << 30)));
    assert_eq!(ByteSize::parse("0x1000"), Ok(ByteSize(4096)));
    assert!(ByteSize::parse("16EiB").is_err());
    assert!(ByteSize::parse("99999999999TiB").unwrap_err().contains("overflows"));
    assert_eq!(ByteSize(3 << 20).to_string(), "3MiB");
}

#[test]
fn unknown_preset_lists_the_known_ones() {
    let e = Platform::preset("arm64-coherent").unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("arm64-noncoherent") && msg.contains("x86-pcie"), "{msg}");
}

const BASE: &str = r#"
name = "t"
dma_profile = "arm64"
[cpu]
[[region]]
name = "dram"
kind = "dram"
base = 0x8000_0000
size = "1GiB"
"#;

fn err(extra: &str) -> String {
    Platform::from_toml(&format!("{BASE}{extra}"), "t.toml").unwrap_err().to_string()
}

#[test]
fn overlapping_regions_are_refused() {
    let e = err("[[region]]\nname = \"cma\"\nkind = \"cma\"\nbase = 0xb000_0000\nsize = \"512MiB\"\n");
    assert!(e.starts_with("t.toml:10:1: `region[1] (cma)`: overlaps region[0] (dram)"), "{e}");
}

#[test]
fn a_mask_over_64_bits_is_refused() {
    let e = err("[[device]]\nname = \"gpu\"\ndma_mask = 65\n");
    assert!(e.contains("`device[0] (gpu).dma_mask`") && e.contains("between 1 and 64"), "{e}");
}

#[test]
fn a_device_that_reaches_nothing_is_refused() {
    let e = err("[[device]]\nname = \"gpu\"\ndma_mask = 32\nreaches = []\n");
    assert!(e.contains("reaches no memory region"), "{e}");
    let e = err("[[device]]\nname = \"gpu\"\ndma_mask = 32\nreaches = [\"sram\"]\n");
    assert!(e.contains("no region is named `sram`"), "{e}");
}

/// Regression: a cost of 2^63 - 1 cycles was accepted and wrapped the counters
/// (`total_cycles` 18446744073709551584).
#[test]
fn a_cost_above_a_billion_cycles_is_refused_with_its_field_named() {
    let e = err("[costs]\ncpu_miss_line = 9223372036854775807\n");
    assert!(e.starts_with("t.toml:11:1: `costs.cpu_miss_line`: must be at most 1000000000 cycles"), "{e}");
    assert!(e.contains("not 9223372036854775807"), "{e}");
    let e = err("[costs]\nmaintenance_op = 1_000_000_001\n");
    assert!(e.contains("`costs.maintenance_op`"), "{e}");
    let at_bound = format!("{BASE}[costs]\nclean_line = 1_000_000_000\ndevice_op = 1_000_000_000\n");
    assert!(Platform::from_toml(&at_bound, "t.toml").is_ok(), "the bound itself is a cost");
}

#[test]
fn syntax_errors_name_the_file_and_line() {
    let e = Platform::from_toml("name = \"x\"\nline_size = \"big\"\n", "bad.toml").unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("bad.toml:2:13: "), "{msg}");
    assert_eq!(e.location().map(|l| (l.line, l.column)), Some((2, 13)));
    let e = err("[[device]]\nname = \"gpu\"\ndma_mask = 32\nsnoops = true\n").to_string();
    assert!(e.contains("unknown field `snoops`"), "{e}");
}

fn ok(extra: &str) -> Platform {
    Platform::from_toml(&format!("{BASE}{extra}"), "t.toml").unwrap_or_else(|e| panic!("{e}"))
}

/// Regression: a rule broken in a platform file was reported without a line, so a
/// `--platform` file's error put its caret on line 1 of the scenario.
#[test]
fn a_broken_rule_names_the_line_and_column_of_its_key() {
    let e = Platform::from_toml(&format!("{BASE}[[device]]\nname = \"gpu\"\n  dma_mask = 65\n"), "t.toml").unwrap_err();
    let l = e.location().expect("located");
    assert_eq!((l.line, l.column), (12, 3), "{e}");
    assert!(e.to_string().starts_with("t.toml:12:3: `device[0] (gpu).dma_mask`"), "{e}");
}

#[test]
fn a_window_translates_with_its_offset_and_bounds_the_device() {
    // bcm2711's legacy masters: physical 0..1 GiB at bus 0xc000_0000.
    let p = ok("[[device]]\nname = \"dma\"\ndma_mask = 32\n\
                dma_windows = [{ cpu = 0x8000_0000, bus = 0xc000_0000, size = \"256MiB\" }]\n");
    let d = &p.devices[0];
    assert_eq!(d.phys_to_bus(PhysAddr(0x8000_1000)), Some(BusAddr(0xc000_1000)));
    assert_eq!(d.bus_to_phys(BusAddr(0xc000_1000)), Some(PhysAddr(0x8000_1000)));
    assert_eq!(d.phys_to_bus(PhysAddr(0x9000_0000)), None, "past the window's end");
    assert!(d.dma_capable(PhysRange::new(PhysAddr(0x8000_0000), 0x1000_0000).unwrap()));
    assert!(!d.dma_capable(PhysRange::new(PhysAddr(0x8fff_f000), 0x2000).unwrap()), "straddles the end");
    assert_eq!(d.direct_reach(), vec![PhysRange::new(PhysAddr(0x8000_0000), 0x1000_0000).unwrap()]);
    // The mask clips the window: bus 0xc000_0000 + 256 MiB stays below 2^32 here, but
    // a 31-bit mask leaves nothing.
    let p = ok("[[region]]\nname = \"swiotlb\"\nkind = \"bounce\"\nbase = 0x1_0000_0000\nsize = \"64MiB\"\n\
                [[device]]\nname = \"dma\"\ndma_mask = 31\n\
                dma_windows = [{ cpu = 0x8000_0000, bus = 0xc000_0000, size = \"256MiB\" }]\n");
    assert!(p.devices[0].direct_reach().is_empty());
}

#[test]
fn windows_that_hold_no_memory_are_refused_without_a_bounce_pool() {
    let e =
        err("[[device]]\nname = \"usb\"\ndma_mask = 32\ndma_windows = [{ cpu = 0x0, bus = 0x0, size = \"1GiB\" }]\n");
    assert!(e.contains("no memory region lies in the device's DMA windows"), "{e}");
    let e =
        err("[[device]]\nname = \"usb\"\ndma_mask = 32\ndma_windows = [{ cpu = 0x8000_0000, bus = 0x0, size = 0 }]\n");
    assert!(e.contains("size is not zero"), "{e}");
}

#[test]
fn a_port_gives_its_devices_their_coherency() {
    let p = ok(
        "[[port]]\nname = \"cci-s3\"\nsnoop = true\n[[device]]\nname = \"sata\"\ndma_mask = 32\nport = \"cci-s3\"\n",
    );
    assert!(p.devices[0].coherent, "the port snoops");
    let e = err(
        "[[port]]\nname = \"cci-s3\"\nsnoop = false\n[[device]]\nname = \"sata\"\ndma_mask = 32\nport = \"cci-s3\"\ncoherent = true\n",
    );
    assert!(e.contains("`device[0] (sata).coherent`") && e.contains("does not snoop"), "{e}");
    let e = err("[[device]]\nname = \"sata\"\ndma_mask = 32\nport = \"cci-s9\"\n");
    assert!(e.contains("no [[port]] is named `cci-s9`"), "{e}");
    // Round trip: the resolved coherency agrees with the port.
    assert_eq!(Platform::from_toml(&p.to_toml(), "again").unwrap(), p);
}

#[test]
fn an_iommu_unit_bounds_the_iova_space_by_its_input_width() {
    let p = ok(
        "[[iommu]]\nname = \"vop-mmu\"\ninput_bits = 32\n[[device]]\nname = \"vop\"\ndma_mask = 40\niommu_unit = \"vop-mmu\"\n",
    );
    assert!(p.devices[0].iommu, "a unit implies an IOMMU");
    assert_eq!(p.iova_space(0), (PAGE_SIZE, (1 << 32) - 1));
    let e = err("[[iommu]]\nname = \"m\"\ninput_bits = 8\n");
    assert!(e.contains("`iommu[0] (m).input_bits`"), "{e}");
    let e = err(
        "[[iommu]]\nname = \"m\"\ninput_bits = 32\n[[device]]\nname = \"v\"\ndma_mask = 32\niommu_unit = \"m\"\niommu = false\n",
    );
    assert!(e.contains("drop `iommu = false`"), "{e}");
}

#[test]
fn a_system_cache_is_before_the_point_of_coherency_only_when_someone_bypasses_it() {
    let all = ok(
        "[[device]]\nname = \"gpu\"\ndma_mask = 32\n[[system_cache]]\nname = \"llcc\"\nmasters = [\"cpu\", \"gpu\"]\n",
    );
    assert!(!all.system_cache_before_poc());
    let some = ok("[[device]]\nname = \"gpu\"\ndma_mask = 32\n[[system_cache]]\nname = \"l3\"\nmasters = [\"cpu\"]\n");
    assert!(some.system_cache_before_poc());
    let e = err("[[system_cache]]\nname = \"l3\"\nmasters = [\"cpu\", \"npu\"]\n");
    assert!(e.contains("`npu` is neither `cpu` nor a device"), "{e}");
}
