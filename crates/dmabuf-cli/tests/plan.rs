//! `dmabuf plan` as scripts use it: exit statuses, the JSON, `--save` and a board's tree
//! with a disabled camera enabled, and bad input (exit 2, never a panic).

use std::path::PathBuf;
use std::process::{Command, Output};

use vm_fdt::FdtWriter;

fn dmabuf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dmabuf")).args(args).env("NO_COLOR", "1").output().expect("run dmabuf")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("dmabuf-plan-test").tempdir().unwrap()
}

/// A board: 2 GiB of DRAM with a CMA pool, a display that scans out through a window at
/// a bus offset, and a camera interface left disabled, with an alias.
fn board() -> Vec<u8> {
    let mut w = FdtWriter::new().unwrap();
    let root = w.begin_node("").unwrap();
    w.property_string("model", "Plan board").unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 2).unwrap();
    let aliases = w.begin_node("aliases").unwrap();
    w.property_string("cam0", "/soc/csi@7e801000").unwrap();
    w.end_node(aliases).unwrap();
    let m = w.begin_node("memory@0").unwrap();
    w.property_string("device_type", "memory").unwrap();
    w.property_array_u64("reg", &[0, 0x8000_0000]).unwrap();
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
    w.property_array_u64("alloc-ranges", &[0, 0x4000_0000]).unwrap();
    w.end_node(cma).unwrap();
    w.end_node(rm).unwrap();
    let soc = w.begin_node("soc").unwrap();
    w.property_string("compatible", "simple-bus").unwrap();
    w.property_u32("#address-cells", 1).unwrap();
    w.property_u32("#size-cells", 1).unwrap();
    w.property_null("ranges").unwrap();
    w.property_array_u32("dma-ranges", &[0xc000_0000, 0, 0, 0x4000_0000]).unwrap();
    let hvs = w.begin_node("hvs@7e400000").unwrap();
    w.property_string("compatible", "test,plan-hvs").unwrap();
    w.property_array_u32("reg", &[0x7e40_0000, 0x1000]).unwrap();
    w.end_node(hvs).unwrap();
    let csi = w.begin_node("csi@7e801000").unwrap();
    w.property_string("compatible", "brcm,bcm2835-unicam").unwrap();
    w.property_array_u32("reg", &[0x7e80_1000, 0x800]).unwrap();
    w.property_string("status", "disabled").unwrap();
    w.end_node(csi).unwrap();
    w.end_node(soc).unwrap();
    w.end_node(root).unwrap();
    w.finish().unwrap()
}

#[test]
fn a_copy_free_plan_is_exit_0_with_the_heap_and_the_protocol() {
    let o = dmabuf(&["plan", "--platform", "arm64-noncoherent", "--user", "isp:write", "--user", "display:read"]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert!(out.contains("answer: the `cma` heap: every party uses it without a copy"), "{out}");
    assert!(out.contains("refused: isp (contiguity)"), "{out}");
    assert!(out.contains("proved by the explorer"), "{out}");
    assert!(out.contains("  map display frame to_device"), "{out}");
}

#[test]
fn json_has_the_documented_fields() {
    let o = dmabuf(&[
        "plan",
        "--platform",
        "arm64-noncoherent",
        "--user",
        "vdec:write",
        "--cpu",
        "read",
        "--size",
        "64KiB",
        "--prove-size",
        "8KiB",
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    assert_eq!(v["platform"], "arm64-noncoherent");
    assert_eq!((v["size"].as_u64(), v["prove_size"].as_u64()), (Some(65536), Some(8192)));
    assert_eq!(v["verdict"], "copy_free");
    assert_eq!(v["parties"][0]["name"], "vdec");
    assert_eq!(v["parties"][1]["name"], "cpu");
    assert_eq!(v["parties"][1]["access"], "read");
    let a = &v["answer"];
    for k in ["kind", "verdict", "description", "buffers", "engine", "copy_before", "attach", "cost", "unusable"] {
        assert!(a.get(k).is_some(), "answer lacks {k}: {a}");
    }
    assert_eq!(a["buffers"][0]["placement"], "heap=system");
    assert_eq!(a["attach"][0]["plan"], "iommu");
    for k in ["cycles", "maintenance_cycles", "maintenance_bytes", "bounce_bytes"] {
        assert!(a["cost"]["linux"][k].is_u64() && a["cost"]["minimal"][k].is_u64(), "cost lacks {k}");
    }
    assert!(v["scenario"].as_str().unwrap().starts_with("# dmabuf plan on arm64-noncoherent"));
    assert_eq!(v["proof"].as_array().unwrap().len(), 2);
    assert_eq!(v["proof"][0]["verdict"], "proved");
    assert_eq!(v["proved"], true);
}

#[test]
fn a_fallback_is_exit_1_and_names_the_engine() {
    let d = dir();
    let toml = d.path().join("conflict.toml");
    let preset = dmabuf(&["platforms", "show", "arm64-noncoherent"]).stdout;
    let mut t = text(&preset).replacen("name = \"arm64-noncoherent\"", "name = \"conflict\"", 1);
    let usb = t.find("name = \"usb\"").unwrap();
    t.insert_str(usb, "reaches = [\"dram\"]\n");
    std::fs::write(&toml, t).unwrap();
    let o = dmabuf(&[
        "plan",
        "--platform",
        toml.to_str().unwrap(),
        "--user",
        "isp:write",
        "--user",
        "usb:read:kept",
        "--size",
        "16KiB",
        "--prove-size",
        "8KiB",
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}{}", text(&o.stdout), text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "copy");
    assert!(v["answer"]["engine"].is_string());
    assert_eq!(v["answer"]["copy_before"], "usb");
    assert_eq!(v["proved"], true);
}

/// `--enable` adds the camera the tree disables; `--save` writes the protocol and, since
/// no file holds that platform, the platform beside it; `dmabuf explore` proves the saved
/// protocol again.
#[test]
fn a_saved_protocol_on_a_tree_with_a_node_enabled_is_proved_by_explore() {
    let d = dir();
    let dtb = d.path().join("board.dtb");
    std::fs::write(&dtb, board()).unwrap();
    let saved: PathBuf = d.path().join("out").join("unicam.dmabuf");
    std::fs::create_dir_all(saved.parent().unwrap()).unwrap();
    let o = dmabuf(&[
        "plan",
        "--platform",
        dtb.to_str().unwrap(),
        "--enable",
        "cam0",
        "--user",
        "cam0:write",
        "--user",
        "hvs:read",
        "--size",
        "64KiB",
        "--save",
        saved.to_str().unwrap(),
    ]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert!(out.contains("answer: the `cma` heap"), "{out}");
    let scenario = std::fs::read_to_string(&saved).unwrap();
    assert!(scenario.contains("platform \"unicam.toml\""), "{scenario}");
    let platform = std::fs::read_to_string(saved.with_extension("toml")).unwrap();
    assert!(platform.contains("/soc/csi@7e801000: enabled on request"), "{platform}");
    let e = dmabuf(&["explore", saved.to_str().unwrap()]);
    assert_eq!(e.status.code(), Some(0), "{}{}", text(&e.stdout), text(&e.stderr));
    assert!(text(&e.stdout).contains("proved"));
    // Without --enable the camera is no device, and the error says how to add it.
    let o = dmabuf(&["plan", "--platform", dtb.to_str().unwrap(), "--user", "cam0:write", "--user", "hvs:read"]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.contains("/soc/csi@7e801000") && err.contains("--enable"), "{err}");
}

#[test]
fn bad_input_is_exit_2_with_what_to_do() {
    let cases: &[(&[&str], &str)] = &[
        (&["--user", "gpu"], "DEVICE:ACCESS"),
        (&["--user", "gpu:sideways"], "read, write, rw"),
        (&["--user", "gpx:read", "--cpu", "write"], "did you mean `gpu`"),
        (&["--user", "gpu:read"], "nobody writes"),
        (&["--user", "gpu:read", "--cpu", "peek"], "--cpu"),
        (&["--user", "gpu:write", "--size", "0"], "--size 0"),
        (&["--user", "gpu:write", "--size", "4K8"], "--size"),
        (&["--user", "gpu:write", "--size", "64GiB"], "at most 256MiB"),
        (&["--user", "gpu:write", "--prove-size", "1MiB"], "to 256KiB"),
        (&["--user", "gpu:write", "--enable", "csi1"], "only a board's device tree"),
        (&["--user", "gpu:write", "--save", "x.toml"], "other than .toml"),
        (&["--user", "gpu:write", "--timeout=0"], "--timeout"),
    ];
    for (args, needle) in cases {
        let mut all = vec!["plan", "--platform", "arm64-noncoherent"];
        all.extend_from_slice(args);
        let o = dmabuf(&all);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}{}", text(&o.stdout));
        assert!(err.contains(needle), "{args:?}: {needle:?} not in {err}");
        assert!(!err.contains("panicked") && o.stdout.is_empty(), "{args:?}: {err}");
    }
    let o = dmabuf(&["plan", "--platform", "no-such-board.dtb", "--user", "gpu:write"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("no-such-board.dtb"));
}
