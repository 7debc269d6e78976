//! The maintenance benchmark in its short form: both policies are correct everywhere,
//! Minimal never costs more than Linux, the oracle does not depend on the policy, a
//! coherent platform needs no CPU-cache maintenance, and Minimal meets the oracle except
//! where the API lacks the information (the notes say which).

use std::path::Path;

use dmabuf::MaintenancePolicy;
use dmabuf_check::bench::{MINIMAL_OVER_ORACLE_MAX, Suite, WorkloadResult, run_suite, targets, to_json, to_svg};
use dmabuf_check::runner::{RunConfig, run};
use dmabuf_check::scenario::parse;

fn results() -> Vec<WorkloadResult> {
    run_suite(&Suite::short()).expect("the suite's scenarios run")
}

#[test]
fn the_short_suite_meets_its_targets_where_the_api_allows() {
    let rs = results();
    assert!(rs.len() >= 13, "every pipeline on every platform it applies to");
    for r in &rs {
        let id = format!("{}@{}", r.name, r.platform);
        assert_eq!((r.findings.linux, r.findings.minimal), (0, 0), "{id}: both policies are correct");
        assert!(r.minimal.bytes <= r.linux.bytes, "{id}: minimal {} > linux {}", r.minimal.bytes, r.linux.bytes);
        assert!(r.minimal.ops <= r.linux.ops, "{id}: ops");
        assert!(r.minimal.cycles <= r.linux.cycles, "{id}: cycles");
        assert!(r.oracle.bytes <= r.minimal.bytes, "{id}: the oracle is a lower bound");
        assert_eq!(r.oracle.bytes, r.oracle_bytes_linux_run, "{id}: the oracle does not depend on the policy");
        if r.platform == "x86-pcie" {
            for (who, c) in [("linux", r.linux), ("minimal", r.minimal), ("oracle", r.oracle)] {
                assert_eq!(
                    c.cpu_bytes + c.bounce_bytes,
                    0,
                    "{id}: {who} maintains the CPU cache on a coherent platform"
                );
            }
            assert_eq!(r.minimal.device_bytes, r.oracle.device_bytes, "{id}: only the GPU's own cache");
        }
        if r.note.is_empty() {
            assert!(r.minimal_over_oracle <= MINIMAL_OVER_ORACLE_MAX, "{id}: minimal/oracle {}", r.minimal_over_oracle);
        } else {
            assert!(
                r.minimal_over_oracle <= MINIMAL_OVER_ORACLE_MAX || r.note.contains("would"),
                "{id}: a miss names the missing API"
            );
        }
    }
    let t = targets(&rs);
    assert!(t.iter().any(|t| t.target.contains("findings") && t.met));
    assert!(t.iter().any(|t| t.target.contains("coherent") && t.met));
}

#[test]
fn the_json_keeps_its_contract_and_the_chart_has_a_group_per_workload() {
    let suite = Suite::short();
    let rs = results();
    let v = to_json(&suite, &rs);
    let ws = v["workloads"].as_array().expect("workloads is a list");
    assert_eq!(ws.len(), rs.len());
    for w in ws {
        assert!(w["name"].is_string() && w["platform"].is_string());
        for who in ["linux", "minimal", "oracle"] {
            for f in ["ops", "bytes", "cycles"] {
                assert!(w[who][f].is_u64(), "{who}.{f} in {w}");
            }
        }
        assert!(w["findings"]["linux"].is_u64() && w["findings"]["minimal"].is_u64());
        for ratio in ["linux_over_minimal", "minimal_over_oracle"] {
            // A number, or null when only the denominator is zero (infinite).
            assert!(w[ratio].is_f64() || w[ratio].is_null(), "{ratio} in {w}");
        }
        if w["linux"]["bytes"] == 0 && w["minimal"]["bytes"] == 0 {
            assert_eq!(w["linux_over_minimal"], 1.0, "both zero is a ratio of 1");
        }
    }
    let svg = to_svg(&suite, &rs);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<title>").count(), 3 * rs.len(), "three bars per workload");
}

/// Found while building the benchmark: a bounce copy back goes through the CPU cache, and
/// Minimal did not record the lines it dirtied, so a non-coherent device mapping the
/// pages afterwards read stale memory.
#[test]
fn a_direct_reader_after_a_bounced_writer_sees_its_bytes() {
    let src = "platform arm64-dma32
buffer blk size=16KiB heap=system
attach legacy-dma blk
attach gpu blk
map legacy-dma blk from_device
legacy-dma write blk = 0x42
unmap legacy-dma blk
map gpu blk to_device
gpu read blk expect 0x42
unmap gpu blk
";
    let s = parse(src, "bounce-then-direct.dmabuf").expect("parses");
    for maintenance in [MaintenancePolicy::Minimal, MaintenancePolicy::Linux] {
        let cfg = RunConfig { maintenance, ..RunConfig::default() };
        let r = run(&s, Path::new("bounce-then-direct.dmabuf"), src, &cfg).expect("runs");
        assert!(r.findings.is_empty(), "{maintenance:?}: {:?}", r.findings);
    }
}

/// The oracle is a lower bound: on every example and litmus scenario that a policy runs
/// without a finding, that policy maintained at least the lines the oracle needed, kind by
/// kind (CPU cleans and invalidates together: a clean serves where the oracle needs a
/// dirty line dropped before a device overwrites it, as the heap's clean of zeroed pages
/// does).
#[test]
fn no_correct_run_maintains_less_than_the_oracle() {
    use std::cell::RefCell;
    use std::rc::Rc;

    use dmabuf_check::runner::run_observed;
    use dmabuf_sim::Oracle;

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let mut files: Vec<_> = ["", "litmus"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root.join(d)).into_iter().flatten())
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "dmabuf"))
        .collect();
    files.sort();
    assert!(files.len() > 20);
    let mut checked = 0;
    for f in &files {
        let src = std::fs::read_to_string(f).expect("readable");
        let Ok(s) = parse(&src, &f.display().to_string()) else { continue };
        for maintenance in [MaintenancePolicy::Minimal, MaintenancePolicy::Linux] {
            let cfg = RunConfig { maintenance, ..RunConfig::default() };
            let Ok(platform) = dmabuf_check::runner::load_platform(&s, f, &src, None) else { continue };
            let oracle = Rc::new(RefCell::new(Oracle::new(&platform)));
            let Ok(r) = run_observed(&s, f, &src, &cfg, Box::new(oracle.clone())) else { continue };
            if !r.findings.is_empty() {
                continue;
            }
            let (n, st) = (oracle.borrow().needed(), r.stats);
            let cpu = |c: &dmabuf_sim::Stats| c.clean.lines + c.invalidate.lines + c.clean_invalidate.lines;
            let at = format!("{} under {maintenance:?}", f.display());
            assert!(cpu(&n) <= cpu(&st), "{at}: CPU lines {} needed, {} done", cpu(&n), cpu(&st));
            assert!(n.device_flush.lines <= st.device_flush.lines, "{at}: device flush");
            assert!(n.device_invalidate.lines <= st.device_invalidate.lines, "{at}: device invalidate");
            assert!(n.bounce.bytes <= st.bounce.bytes, "{at}: bounce");
            assert!(n.maintenance_bytes() <= st.maintenance_bytes(), "{at}: bytes");
            checked += 1;
        }
    }
    assert!(checked > 20, "{checked} runs checked");
}
