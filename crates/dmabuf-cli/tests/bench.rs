//! `dmabuf bench`: its JSON contract, the chart and the exit statuses.

use std::process::Command;

fn dmabuf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dmabuf"))
}

#[test]
fn bench_prints_json_with_its_fields_and_writes_a_chart() {
    let svg = std::env::temp_dir().join(format!("dmabuf-bench-{}.svg", std::process::id()));
    let out = dmabuf()
        .args(["bench", "--small", "--frames", "1", "--format", "json", "--svg"])
        .arg(&svg)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let ws = v["workloads"].as_array().expect("a list of workloads");
    assert!(!ws.is_empty());
    for w in ws {
        for key in
            ["name", "platform", "linux", "minimal", "oracle", "linux_over_minimal", "minimal_over_oracle", "findings"]
        {
            assert!(w.get(key).is_some(), "{key} missing in {w}");
        }
        for who in ["linux", "minimal", "oracle"] {
            for f in ["ops", "bytes", "cycles"] {
                assert!(w[who][f].is_u64(), "{who}.{f}");
            }
        }
        assert_eq!(w["findings"]["linux"], 0);
        assert_eq!(w["findings"]["minimal"], 0);
    }
    let chart = std::fs::read_to_string(&svg).expect("the chart was written");
    let _ = std::fs::remove_file(&svg);
    assert!(chart.starts_with("<svg"));
}

#[test]
fn bench_prints_a_table_and_refuses_bad_usage() {
    let out = dmabuf().args(["bench", "--small", "--frames", "1"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("camera-encoder-peek") && text.contains("targets:"), "{text}");
    let bad = dmabuf().args(["bench", "--frames", "0"]).output().expect("runs");
    assert_eq!(bad.status.code(), Some(2));
    let unwritable = dmabuf().args(["bench", "--small", "--frames", "1", "--svg", "/nonexistent/dir/x.svg"]).output();
    assert_eq!(unwritable.expect("runs").status.code(), Some(2));
}
