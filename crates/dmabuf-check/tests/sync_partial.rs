//! The ranged sync and the overwrite bracket in scenarios, under each kernel: the
//! fallbacks a program takes (upstream's `ENOTTY`, a vendor kernel's `EINVAL` for the
//! overwrite flag), what each maintains, and the misuse of a bracket's promise.

use std::path::Path;

use dmabuf::MaintenancePolicy;
use dmabuf_check::sanitizer::FindingKind;
use dmabuf_check::scenario::parse;
use dmabuf_check::verdict::{CheckConfig, Checked, check};

fn run(src: &str, maintenance: MaintenancePolicy) -> Checked {
    let s = parse(src, "t.dmabuf").expect("parse");
    let cfg = CheckConfig { maintenance: Some(maintenance), ..CheckConfig::default() };
    check(&s, Path::new("t.dmabuf"), src, &cfg, &mut |_| {}).expect("run")
}

const PEEK: &str = "platform arm64-noncoherent
buffer b size=64KiB heap=system
attach vdec b
mmap b
map vdec b from_device
vdec write b = 0xc4
unmap vdec b
sync b[0..128] start read
cpu read b[0..128] expect 0xc4
sync b[0..128] end read
";

#[test]
fn a_ranged_sync_falls_back_to_the_full_one_where_the_kernel_has_none() {
    // Without the fallback the ENOTTY would be a finding, and the read one outside a bracket.
    let up = run(PEEK, MaintenancePolicy::Linux);
    assert!(up.result.findings.is_empty(), "{:?}", up.result.findings);
    let min = run(PEEK, MaintenancePolicy::Minimal);
    assert!(min.result.findings.is_empty(), "{:?}", min.result.findings);
    // Upstream answers ENOTTY and the program syncs the whole buffer (its unmap
    // invalidates it all anyway); the minimal kernel invalidates the two lines read alone.
    let invalidated = |c: &Checked| c.result.stats.invalidate.bytes + c.result.stats.clean_invalidate.bytes;
    assert!(invalidated(&up) >= 64 * 1024, "upstream invalidated {} bytes", invalidated(&up));
    assert_eq!(invalidated(&min), 128, "the minimal kernel keeps to the range");
}

#[test]
fn an_overwrite_a_vendor_kernel_refuses_is_synced_without_the_flag() {
    let src = "platform arm64-noncoherent
buffer b size=4KiB heap=system
attach vdec b
attach display b
mmap b
map vdec b from_device
vdec write b = 0x11
unmap vdec b
sync b[0..128] start write overwrite
cpu write b[0..128] = 0x22
sync b[0..128] end write
map display b to_device
display read b[0..128] expect 0x22
display read b[128..4KiB] expect 0x11
unmap display b
";
    for m in [MaintenancePolicy::Linux, MaintenancePolicy::Vendor, MaintenancePolicy::Minimal] {
        let c = run(src, m);
        assert!(c.result.findings.is_empty(), "{m:?}: {:?}", c.result.findings);
    }
}

#[test]
fn breaking_a_brackets_promise_is_misuse() {
    let kinds = |src: &str| {
        run(src, MaintenancePolicy::Minimal)
            .result
            .findings
            .iter()
            .map(|f| (f.kind, f.line, f.range))
            .collect::<Vec<_>>()
    };
    let head = "platform arm64-noncoherent\nbuffer b size=4KiB heap=system\nmmap b\n";
    // An end over less than the bracket wrote.
    let end_short = format!("{head}sync b[0..256] start write\ncpu write b[0..256] = 1\nsync b[0..64] end write\n");
    assert_eq!(kinds(&end_short), vec![(FindingKind::Misuse, 6, [64, 256])]);
    // A write outside the declared range.
    let outside = format!("{head}sync b[0..64] start write\ncpu write b[0..128] = 1\nsync b[0..64] end write\n");
    assert!(kinds(&outside).contains(&(FindingKind::Misuse, 5, [64, 128])), "{:?}", kinds(&outside));
    // A read inside an overwrite bracket, before the bytes are written.
    let read = format!(
        "{head}sync b[0..128] start write overwrite\ncpu read b[0..64]\ncpu write b[0..128] = 1\nsync b[0..128] end write\n"
    );
    assert_eq!(kinds(&read), vec![(FindingKind::Misuse, 5, [0, 64])]);
    // An overwrite that leaves bytes unwritten.
    let partial = format!("{head}cpu begin b[0..128] write overwrite\ncpu write b[0..64] = 1\ncpu end b write\n");
    let vmapped = partial.replace("mmap b", "vmap b");
    assert_eq!(kinds(&vmapped), vec![(FindingKind::Misuse, 6, [64, 128])]);
}

#[test]
fn a_ranged_sync_past_4_gib_is_refused_at_lowering() {
    let src = "platform arm64-noncoherent
buffer b size=5GiB heap=system
mmap b
sync b[4GiB..5GiB] start read
";
    let s = parse(src, "t.dmabuf").expect("parse");
    let cfg = CheckConfig { maintenance: Some(MaintenancePolicy::Minimal), ..CheckConfig::default() };
    let e = check(&s, Path::new("t.dmabuf"), src, &cfg, &mut |_| {}).expect_err("refused");
    assert!(e.to_string().contains("32-bit"), "{e}");
}

/// An overwrite goes through `DMA_BUF_IOCTL_SYNC_PARTIAL` even without a range: on a
/// buffer past 4 GiB its length did not fit the ioctl's 32 bits, and was cut silently.
#[test]
fn an_overwrite_of_a_buffer_past_4_gib_is_refused_at_lowering() {
    let src = "platform arm64-noncoherent
buffer b size=5GiB heap=system
mmap b
sync b start write overwrite
";
    let s = parse(src, "t.dmabuf").expect("parse");
    let cfg = CheckConfig { maintenance: Some(MaintenancePolicy::Minimal), ..CheckConfig::default() };
    let e = check(&s, Path::new("t.dmabuf"), src, &cfg, &mut |_| {}).expect_err("refused");
    assert!(e.to_string().contains("an overwrite of the whole buffer") && e.to_string().contains("32-bit"), "{e}");
}

/// Rockchip's system heap syncs a ranged bracket with the heap's own device
/// (`system_heap_dma_buf_begin_cpu_access_partial`, `dma_heap_get_dev`), not with each
/// attachment's mapping: a bounced attachment's slot is never copied back, and the CPU
/// reads the buffer's old bytes. The per-attachment semantics of the proposal (the minimal
/// kernel) and upstream's full bracket read the device's.
#[test]
fn a_heap_device_partial_sync_misses_a_bounced_attachment() {
    let src = "platform arm64-dma32
buffer blk size=64KiB heap=system
attach legacy-dma blk
vmap blk
map legacy-dma blk bidirectional
legacy-dma write blk[0..512] = 0x5a
cpu begin blk[0..512] read
cpu read blk[0..512] expect 0x5a
cpu end blk read
unmap legacy-dma blk
vunmap blk
";
    let kinds = |m| run(src, m).result.findings.iter().map(|f| (f.kind, f.line)).collect::<Vec<_>>();
    assert_eq!(kinds(MaintenancePolicy::Vendor), vec![(FindingKind::StaleRead, 8)]);
    assert_eq!(kinds(MaintenancePolicy::Linux), vec![]);
    assert_eq!(kinds(MaintenancePolicy::Minimal), vec![]);
}
