//! The scenario parser: every construct to its syntax tree, every error to its variant
//! and place, the spec's examples, and every example of `docs/scenario-language.md`.

use std::path::{Path, PathBuf};

use dmabuf_check::scenario::*;
use miette::Diagnostic;

/// A 64 KiB buffer `b`, declared before the line under test.
const B: &str = "buffer b size=64KiB heap=system\n";

fn ok(src: &str) -> Scenario {
    parse(src, "test.dmabuf").unwrap_or_else(|e| panic!("{src:?}: {:?}", miette::Report::new(e)))
}

fn err(src: &str) -> ParseError {
    match parse(src, "test.dmabuf") {
        Ok(s) => panic!("{src:?} parsed: {s:#?}"),
        Err(e) => e,
    }
}

/// The op of `line`, parsed after [`B`], a 64 KiB buffer `b`.
fn op(line: &str) -> Op {
    let s = ok(&format!("{B}{line}\n"));
    assert_eq!(s.steps.len(), 2, "{line:?}");
    s.steps.into_iter().nth(1).unwrap().op
}

/// The name at byte `start` of `src`, checked against the text.
fn id(src: &str, name: &str) -> Ident {
    let start = src.find(name).unwrap_or_else(|| panic!("{name} not in {src:?}"));
    Spanned::new(name.to_string(), Span::new(start, start + name.len()))
}

/// The name `name` (trimmed) where it first occurs in `line`, a line parsed after [`B`].
fn id2(line: &str, name: &str) -> Ident {
    let start = B.len() + line.find(name).unwrap() + (name.len() - name.trim_start().len());
    let name = name.trim_start();
    Spanned::new(name.to_string(), Span::new(start, start + name.len()))
}

/// The text of a name, for comparisons that leave its span out.
fn name_of(i: &Ident) -> &str {
    &i.node
}

fn range(t: &Target) -> Option<(u64, u64)> {
    t.range.as_ref().map(|r| (r.node.start, r.node.end))
}

/// `(line, column)` of an error.
fn at(e: &ParseError) -> (Option<u32>, Option<u32>) {
    (e.line(), e.column())
}

fn code(e: &ParseError) -> String {
    e.code().map(|c| c.to_string()).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Constructs
// ---------------------------------------------------------------------------------------

#[test]
fn platform_by_preset_and_by_path() {
    let src = "platform arm64-noncoherent\nvmap b\n";
    let s = ok(src);
    let p = s.platform.unwrap();
    assert_eq!(p.node, PlatformRef::Preset("arm64-noncoherent".into()));
    assert_eq!(p.span, Span::new(9, 26));
    assert_eq!(s.steps.len(), 1);
    assert_eq!(s.steps[0].line, 2);

    let s = ok("# a comment first\n\nplatform \"boards/soc \\\"x\\\".toml\"\nvmap b\n");
    assert_eq!(s.platform.unwrap().node, PlatformRef::File("boards/soc \"x\".toml".into()));
    assert_eq!(ok("vmap b\n").platform, None);
}

#[test]
fn buffer_declarations() {
    let src = "buffer frame size=64KiB heap=system\n";
    let s = ok(src);
    assert_eq!(s.steps[0].line, 1);
    assert_eq!(s.steps[0].span, Span::new(0, src.len() - 1));
    let Op::Buffer(b) = &s.steps[0].op else { panic!("{:?}", s.steps[0].op) };
    assert_eq!(b.name, id(src, "frame"));
    assert_eq!(b.size, Spanned::new(64 << 10, Span::new(18, 23)));
    assert_eq!(b.source, Spanned::new(Source::Heap("system".into()), Span::new(29, 35)));
    assert_eq!(b.label, None);

    let cases: &[(&str, u64, Source, Option<&str>)] = &[
        ("buffer a size=4096 heap=cma", 4096, Source::Heap("cma".into()), None),
        ("buffer a size=0x1000 heap=linux,cma", 0x1000, Source::Heap("linux,cma".into()), None),
        ("buffer a size=1MiB heap=default_cma_region", 1 << 20, Source::Heap("default_cma_region".into()), None),
        ("buffer a size=2GiB device=dgpu", 2 << 30, Source::Device("dgpu".into()), None),
        ("buffer a size=0x10KiB udmabuf", 16 << 10, Source::Udmabuf, None),
        ("buffer a size = 8KiB heap = system name = \"cam0\"", 8 << 10, Source::Heap("system".into()), Some("cam0")),
        ("buffer a size=1 udmabuf name=\"a \\\"b\\\" \\\\ # c\"", 1, Source::Udmabuf, Some("a \"b\" \\ # c")),
    ];
    for (src, size, source, label) in cases {
        let Op::Buffer(b) = &ok(src).steps[0].op else { panic!("{src}") };
        assert_eq!(b.size.node, *size, "{src}");
        assert_eq!(&b.source.node, source, "{src}");
        assert_eq!(b.label.as_ref().map(|l| l.node.as_str()), *label, "{src}");
    }
}

#[test]
fn attach_and_its_flags() {
    let src = "attach gpu frame\n";
    let s = ok(src);
    assert_eq!(
        s.steps[0].op,
        Op::Attach { dev: id(src, "gpu"), buf: id(src, "frame"), dynamic: false, p2p: false, expect_refused: None }
    );
    for (line, dynamic, p2p, rule) in [
        ("attach nic tex p2p", false, true, None),
        ("attach capture tex dynamic", true, false, None),
        ("attach nic tex p2p dynamic", true, true, None),
        ("attach nic tex dynamic p2p", true, true, None),
        ("attach isp b expect refused contiguity", false, false, Some("contiguity")),
        ("attach nic tex dynamic expect refused p2p-not-allowed", true, false, Some("p2p-not-allowed")),
    ] {
        let Op::Attach { dynamic: d, p2p: p, expect_refused: r, .. } = op(line) else { panic!("{line}") };
        assert_eq!((d, p, r.as_ref().map(name_of)), (dynamic, p2p, rule), "{line}");
    }
}

#[test]
fn attachment_steps() {
    let two = |o: Op| match o {
        Op::Detach { dev, buf } | Op::Pin { dev, buf } | Op::Unpin { dev, buf } | Op::Unmap { dev, buf } => {
            (dev.node, buf.node)
        }
        o => panic!("{o:?}"),
    };
    assert!(matches!(op("detach gpu b"), Op::Detach { .. }));
    assert!(matches!(op("pin gpu b"), Op::Pin { .. }));
    assert!(matches!(op("unpin gpu b"), Op::Unpin { .. }));
    assert!(matches!(op("unmap gpu b"), Op::Unmap { .. }));
    assert_eq!(two(op("unmap legacy-dma b")), ("legacy-dma".into(), "b".into()));

    for (w, to) in [("system", MigrateTo::System), ("device", MigrateTo::Device)] {
        let Op::Migrate { buf, to: t } = op(&format!("migrate b to {w}")) else { panic!() };
        assert_eq!((buf.node.as_str(), t.node), ("b", to));
    }
    for (w, dir) in [
        ("to_device", Dir::ToDevice),
        ("write", Dir::ToDevice),
        ("from_device", Dir::FromDevice),
        ("read", Dir::FromDevice),
        ("bidirectional", Dir::Bidirectional),
        ("rw", Dir::Bidirectional),
    ] {
        let src = format!("map gpu b {w}");
        let Op::Map { dev, buf, dir: d } = ok(&src).steps.remove(0).op else { panic!() };
        assert_eq!((dev.node.as_str(), buf.node.as_str(), d.node), ("gpu", "b", dir));
        assert_eq!(d.span, Span::new(10, 10 + w.len()), "{w}");
    }
}

#[test]
fn device_access_and_sync() {
    let Op::DeviceBegin { dev, target } = op("iio begin b[0..16KiB]") else { panic!() };
    assert_eq!((dev.node.as_str(), range(&target)), ("iio", Some((0, 16 << 10))));
    let Op::DeviceEnd { dev, target } = op("usb end b") else { panic!() };
    assert_eq!((dev.node.as_str(), target.buf.node.as_str(), range(&target)), ("usb", "b", None));
    let Op::DeviceSync { from, to, target } = op("gpu sync b[4KiB..8KiB] to display") else { panic!() };
    assert_eq!((from.node.as_str(), to.node.as_str()), ("gpu", "display"));
    assert_eq!(range(&target), Some((4 << 10, 8 << 10)));
    assert_eq!(op("gpu vmap b"), Op::ImporterVmap { dev: id2("gpu vmap b", "gpu"), buf: id2("gpu vmap b", " b") });
    assert!(matches!(op("gpu vunmap b"), Op::ImporterVunmap { .. }));
}

#[test]
fn device_jobs() {
    let src = "vdec write out[0..1MiB] = frame signal decoded   # a job\n";
    let s = ok(src);
    let step = &s.steps[0];
    assert_eq!(step.span, Span::new(0, src.find("   #").unwrap()));
    let Op::Job(j) = &step.op else { panic!() };
    assert_eq!(j.dev, id(src, "vdec"));
    assert_eq!(j.signal, Some(id(src, "decoded")));
    assert!(j.after.is_empty());
    let JobKind::Write { dst, value } = &j.kind else { panic!() };
    assert_eq!(dst.buf, id(src, "out"));
    let r = dst.range.as_ref().unwrap();
    assert_eq!((r.node, r.span), (ByteRange { start: 0, end: 1 << 20 }, Span::new(14, 23)));
    assert_eq!(*value, Spanned::new(Value::Frame, Span::new(26, 31)));

    let Op::Job(j) = op("display read b[0..4KiB] expect 0x5a after f, g ,h signal done") else { panic!() };
    assert_eq!(j.after.iter().map(name_of).collect::<Vec<_>>(), ["f", "g", "h"]);
    assert_eq!(j.signal.as_ref().map(name_of), Some("done"));
    let JobKind::Read { src, expect } = j.kind else { panic!() };
    assert_eq!((range(&src), expect.map(|e| e.node)), (Some((0, 4096)), Some(Value::Byte(0x5a))));

    let Op::Job(j) = op("gpu read b") else { panic!() };
    assert_eq!(j.kind, JobKind::Read { src: Target { buf: id2("gpu read b", "b"), range: None }, expect: None });
    assert_eq!((j.dev, j.after, j.signal), (id2("gpu read b", "gpu"), vec![], None));

    let Op::Job(j) = op("gpu copy b[0..4KiB] to b[8KiB..12KiB] after a") else { panic!() };
    let JobKind::Copy { src, dst } = &j.kind else { panic!() };
    assert_eq!((range(src), range(dst)), (Some((0, 4096)), Some((8192, 12288))));
    assert_eq!(j.after.len(), 1);

    let Op::Job(j) = op("gpu transform b[0..32KiB] to b[32KiB..] xor=0xff signal t") else { panic!() };
    let JobKind::Transform { src, dst, xor } = &j.kind else { panic!() };
    assert_eq!((range(src), range(dst), xor.node), (Some((0, 32 << 10)), Some((32 << 10, 64 << 10)), 0xff));

    let Op::Job(j) = op("gpu copy b to b") else { panic!() };
    assert!(matches!(j.kind, JobKind::Copy { .. }));
}

#[test]
fn cpu_steps() {
    let Op::CpuBegin { target, dir, overwrite } = op("cpu begin b write") else { panic!() };
    assert_eq!((target.buf.node.as_str(), range(&target), dir.node, overwrite), ("b", None, Dir::ToDevice, false));
    let Op::CpuBegin { target, dir, .. } = op("cpu begin b[0..4KiB] read") else { panic!() };
    assert_eq!((range(&target), dir.node), (Some((0, 4096)), Dir::FromDevice));
    let Op::CpuBegin { target, overwrite, .. } = op("cpu begin b[64..4KiB] write overwrite") else { panic!() };
    assert_eq!((range(&target), overwrite), (Some((64, 4096)), true));
    let Op::CpuEnd { buf, dir } = op("cpu end b bidirectional") else { panic!() };
    assert_eq!((buf.node.as_str(), dir.node), ("b", Dir::Bidirectional));
    let Op::CpuRead { target, expect } = op("cpu read b[0..4KiB] expect seq") else { panic!() };
    assert_eq!((range(&target), expect.map(|v| v.node)), (Some((0, 4096)), Some(Value::Seq)));
    let Op::CpuRead { expect, .. } = op("cpu read b") else { panic!() };
    assert_eq!(expect, None);
    for (v, want) in [("0", 0), ("90", 90), ("255", 255), ("0x5a", 0x5a), ("0XFF", 0xff), ("0x00", 0)] {
        let Op::CpuWrite { value, .. } = op(&format!("cpu write b = {v}")) else { panic!() };
        assert_eq!(value.node, Value::Byte(want), "{v}");
    }
}

#[test]
fn framework_steps() {
    assert!(matches!(op("vmap b"), Op::Vmap { .. }));
    assert!(matches!(op("vunmap b"), Op::Vunmap { .. }));
    assert!(matches!(op("mmap b"), Op::Mmap { .. }));
    assert!(matches!(op("munmap b"), Op::Munmap { .. }));
    assert!(matches!(op("release b"), Op::Release { .. }));
    for (line, flags) in [
        ("sync b start read", SyncFlags::Named { end: false, access: Access::Read, overwrite: false }),
        ("sync b start write", SyncFlags::Named { end: false, access: Access::Write, overwrite: false }),
        (
            "sync b[0..4KiB] start write overwrite",
            SyncFlags::Named { end: false, access: Access::Write, overwrite: true },
        ),
        ("sync b end rw", SyncFlags::Named { end: true, access: Access::ReadWrite, overwrite: false }),
        ("sync b flags=0x4", SyncFlags::Raw(4)),
        ("sync b flags = 12", SyncFlags::Raw(12)),
        ("sync b flags=0xffffffffffffffff", SyncFlags::Raw(u64::MAX)),
    ] {
        let Op::Sync { flags: f, .. } = op(line) else { panic!("{line}") };
        assert_eq!(f.node, flags, "{line}");
    }
    let src = "set_name b \"cam # 0\"  # not part of the name\n";
    let Op::SetName { buf, name } = ok(src).steps.remove(0).op else { panic!() };
    assert_eq!(buf, id(src, "b"));
    assert_eq!(name, Spanned::new("cam # 0".into(), Span::new(11, 20)));

    assert_eq!(op("fence f"), Op::Fence { name: id2("fence f", " f") });
    assert!(matches!(op("signal f"), Op::Signal { .. }));
    let Op::Wait { fences } = op("wait top, bottom") else { panic!() };
    assert_eq!(fences.iter().map(name_of).collect::<Vec<_>>(), ["top", "bottom"]);
    let Op::Export { buf, access, fence } = op("export b write as w") else { panic!() };
    assert_eq!((buf.node.as_str(), access.node, fence.node.as_str()), ("b", Access::Write, "w"));
    let Op::Import { fence, buf, access } = op("import w into b rw") else { panic!() };
    assert_eq!((fence.node.as_str(), buf.node.as_str(), access.node), ("w", "b", Access::ReadWrite));
    for (w, usage) in
        [("kernel", Usage::Kernel), ("write", Usage::Write), ("read", Usage::Read), ("bookkeep", Usage::Bookkeep)]
    {
        let Op::ResvAdd { usage: u, .. } = op(&format!("resv b add f {w}")) else { panic!() };
        assert_eq!(u.node, usage);
    }
}

#[test]
fn repeat_blocks_nest_with_lines_and_spans() {
    let src =
        "vmap b\nrepeat 3 {\n  repeat 0x2 {\n    cpu write b = frame\n  }\n  # c\n\n  vunmap b\n}  # end\nmunmap b";
    let s = ok(src);
    assert_eq!(s.steps.len(), 3);
    let outer = &s.steps[1];
    assert_eq!(outer.line, 2);
    let start = src.find("repeat 3").unwrap();
    let end = src.find("}  # end").unwrap() + 1;
    assert_eq!(outer.span, Span::new(start, end));
    let Op::Repeat { count, body } = &outer.op else { panic!() };
    assert_eq!(count.node, 3);
    assert_eq!(body.len(), 2);
    assert_eq!(body[0].line, 3);
    assert_eq!(body[1].line, 8);
    let Op::Repeat { count, body: inner } = &body[0].op else { panic!() };
    assert_eq!(count.node, 2);
    assert_eq!(inner[0].line, 4);
    assert_eq!(&src[inner[0].span.start..inner[0].span.end], "cpu write b = frame");
    assert_eq!(s.steps[2].line, 10);

    // An empty block is allowed, and so is a depth of exactly MAX_DEPTH.
    assert!(matches!(&ok("repeat 2 {\n}\n").steps[0].op, Op::Repeat { body, .. } if body.is_empty()));
    let mut deep = String::new();
    for _ in 0..MAX_DEPTH {
        deep.push_str("repeat 2 {\n");
    }
    deep.push_str("vmap b\n");
    for _ in 0..MAX_DEPTH {
        deep.push_str("}\n");
    }
    assert_eq!(ok(&deep).steps.len(), 1);
}

#[test]
fn ranges_open_ended_resolve_from_the_declaration() {
    let r = |line: &str| match op(line) {
        Op::CpuRead { target, .. } => range(&target),
        o => panic!("{o:?}"),
    };
    assert_eq!(r("cpu read b[4KiB..]"), Some((4096, 64 << 10)));
    assert_eq!(r("cpu read b[..4KiB]"), Some((0, 4096)));
    assert_eq!(r("cpu read b[..]"), Some((0, 64 << 10)));
    assert_eq!(r("cpu read b [ 0x10 .. 0x20 ]"), Some((0x10, 0x20)));
    assert_eq!(r("cpu read b[1..2]"), Some((1, 2)));
    // The latest declaration counts.
    let s = ok("buffer a size=4KiB heap=system\nbuffer a size=8KiB heap=system\ncpu read a[1KiB..]\n");
    let Op::CpuRead { target, .. } = &s.steps[2].op else { panic!() };
    assert_eq!(range(target), Some((1024, 8192)));
    // A buffer declared inside a block counts after it.
    let s = ok("repeat 2 {\nbuffer a size=4KiB heap=system\n}\ncpu read a[1KiB..]\n");
    let Op::CpuRead { target, .. } = &s.steps[1].op else { panic!() };
    assert_eq!(range(target), Some((1024, 4096)));
}

#[test]
fn layout_comments_crlf_bom_tabs_and_no_final_newline() {
    let src =
        "\u{feff}platform x86-pcie\r\n\r\n# comment\r\n\tbuffer b size=4KiB heap=system\t# why\r\ncpu write b = 1";
    let s = ok(src);
    assert_eq!(s.steps.len(), 2);
    assert_eq!(s.steps[0].line, 4);
    assert_eq!(&src[s.steps[0].span.start..s.steps[0].span.end], "buffer b size=4KiB heap=system");
    assert_eq!(s.steps[1].line, 5);
    assert_eq!(&src[s.steps[1].span.start..s.steps[1].span.end], "cpu write b = 1");
    let Op::CpuWrite { value, .. } = &s.steps[1].op else { panic!() };
    assert_eq!(value.node, Value::Byte(1));
}

#[test]
fn device_names_and_keywords() {
    // A device may be named like a keyword that is not a verb.
    let Op::Job(j) = op("to read b") else { panic!() };
    assert_eq!(j.dev.node, "to");
    let Op::Job(j) = op("_dev-2 write b = seq") else { panic!() };
    assert_eq!(j.dev.node, "_dev-2");
}

// ---------------------------------------------------------------------------------------
// The spec's examples and the scenarios shipped with the project
// ---------------------------------------------------------------------------------------

const SPEC_UVC: &str = r#"# The UVC case: the capture driver fills the frame with CPU copies (cached), the GPU
# does not snoop.
platform arm64-noncoherent
buffer frame size=64KiB heap=system

attach gpu frame
cpu begin frame write               # begin_cpu_access(DMA_TO_DEVICE)
cpu write frame[0..64KiB] = 0x5a
cpu end frame write                 # without this line: stale read below
map gpu frame to_device
gpu read frame[0..64KiB] expect 0x5a
unmap gpu frame
"#;

const SPEC_LOOP: &str = r#"# User space through the mmap and the sync ioctl, frames in a loop, a fence per frame.
platform arm64-noncoherent
buffer out size=1MiB heap=system
attach vdec out
attach display out
repeat 60 {
  map vdec out from_device
  vdec write out[0..1MiB] = frame signal decoded     # a device job; completes later
  wait decoded
  unmap vdec out
  mmap out
  sync out start read
  cpu read out[0..4KiB] expect frame                 # peek at the header
  sync out end read
  map display out to_device
  display read out[0..1MiB] expect frame
  unmap display out
}
"#;

#[test]
fn the_spec_examples_parse() {
    let s = ok(SPEC_UVC);
    assert_eq!(s.platform.unwrap().node, PlatformRef::Preset("arm64-noncoherent".into()));
    assert_eq!(s.steps.len(), 8);
    assert_eq!(s.steps.iter().map(|s| s.line).collect::<Vec<_>>(), [4, 6, 7, 8, 9, 10, 11, 12]);
    let Op::CpuEnd { buf, dir } = &s.steps[4].op else { panic!() };
    assert_eq!((buf.node.as_str(), dir.node), ("frame", Dir::ToDevice));

    let s = ok(SPEC_LOOP);
    assert_eq!(s.steps.len(), 4);
    let Op::Repeat { count, body } = &s.steps[3].op else { panic!() };
    assert_eq!((count.node, body.len(), s.steps[3].line), (60, 11, 6));
    let Op::Job(j) = &body[1].op else { panic!() };
    assert_eq!(j.signal.as_ref().map(name_of), Some("decoded"));
}

// ---------------------------------------------------------------------------------------
// The documentation
// ---------------------------------------------------------------------------------------

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/scenario-language.md")
}

/// Every ```dmabuf block of the language's documentation parses; every
/// ```dmabuf,error=CODE block fails with that diagnostic code.
#[test]
fn every_example_of_the_documentation() {
    let text = std::fs::read_to_string(docs()).unwrap();
    let mut good = 0;
    let mut bad = 0;
    let mut seen = std::collections::BTreeSet::new();
    let mut cur: Option<(usize, String, String)> = None;
    for (n, l) in text.lines().enumerate() {
        match &mut cur {
            None => {
                if let Some(tag) = l.strip_prefix("```dmabuf") {
                    cur = Some((n + 1, tag.to_string(), String::new()));
                }
            }
            Some(_) if l == "```" => {
                let (line, tag, src) = cur.take().unwrap();
                let name = format!("docs/scenario-language.md:{line}");
                if tag.is_empty() {
                    match parse(&src, &name) {
                        Ok(s) => {
                            if s.platform.is_some() {
                                seen.insert("platform");
                            }
                            constructs(&s.steps, &mut seen)
                        }
                        Err(e) => panic!("{:?}", miette::Report::new(e)),
                    }
                    good += 1;
                } else {
                    let want = tag.strip_prefix(",error=").unwrap_or_else(|| panic!("{name}: bad tag {tag:?}"));
                    match parse(&src, &name) {
                        Ok(_) => panic!("{name}: parsed, but is marked as an error"),
                        Err(e) => assert_eq!(code(&e), format!("dmabuf::scenario::{want}"), "{name}"),
                    }
                    bad += 1;
                }
            }
            Some((_, _, src)) => {
                src.push_str(l);
                src.push('\n');
            }
        }
    }
    assert!(cur.is_none(), "an unclosed block");
    assert!(good >= 12, "only {good} examples");
    assert!(bad >= 15, "only {bad} error examples");
    let missing: Vec<&str> = CONSTRUCTS.iter().filter(|c| !seen.contains(*c)).copied().collect();
    assert!(missing.is_empty(), "the documentation has no example of {missing:?}");
}

/// Every construct of the language, as [`construct`] names it.
const CONSTRUCTS: &[&str] = &[
    "platform",
    "buffer",
    "buffer heap",
    "buffer device",
    "buffer udmabuf",
    "buffer name",
    "attach",
    "attach dynamic",
    "attach p2p",
    "attach expect refused",
    "detach",
    "pin",
    "unpin",
    "migrate",
    "map",
    "unmap",
    "DEV begin",
    "DEV end",
    "DEV sync",
    "DEV vmap",
    "DEV vunmap",
    "DEV read",
    "DEV write",
    "DEV copy",
    "DEV transform",
    "after",
    "signal",
    "cpu begin",
    "cpu end",
    "cpu read",
    "cpu write",
    "vmap",
    "vunmap",
    "mmap",
    "munmap",
    "sync",
    "sync flags",
    "set_name",
    "fence",
    "signal F",
    "wait",
    "export",
    "import",
    "resv",
    "release",
    "repeat",
    "range",
    "value byte",
    "value frame",
    "value seq",
    "expect",
];

/// Adds to `seen` the constructs `steps` use.
fn constructs(steps: &[Step], seen: &mut std::collections::BTreeSet<&'static str>) {
    let target = |t: &Target, seen: &mut std::collections::BTreeSet<&'static str>| {
        if t.range.is_some() {
            seen.insert("range");
        }
    };
    let value = |v: &Spanned<Value>, seen: &mut std::collections::BTreeSet<&'static str>| {
        seen.insert(match v.node {
            Value::Byte(_) => "value byte",
            Value::Frame => "value frame",
            Value::Seq => "value seq",
        });
    };
    for s in steps {
        let name = match &s.op {
            Op::Buffer(b) => {
                seen.insert(match b.source.node {
                    Source::Heap(_) => "buffer heap",
                    Source::Device(_) => "buffer device",
                    Source::Udmabuf => "buffer udmabuf",
                });
                if b.label.is_some() {
                    seen.insert("buffer name");
                }
                "buffer"
            }
            Op::Attach { dynamic, p2p, expect_refused, .. } => {
                if *dynamic {
                    seen.insert("attach dynamic");
                }
                if *p2p {
                    seen.insert("attach p2p");
                }
                if expect_refused.is_some() {
                    seen.insert("attach expect refused");
                }
                "attach"
            }
            Op::Detach { .. } => "detach",
            Op::Pin { .. } => "pin",
            Op::Unpin { .. } => "unpin",
            Op::Migrate { .. } => "migrate",
            Op::Map { .. } => "map",
            Op::Unmap { .. } => "unmap",
            Op::DeviceBegin { target: t, .. } => {
                target(t, seen);
                "DEV begin"
            }
            Op::DeviceEnd { target: t, .. } => {
                target(t, seen);
                "DEV end"
            }
            Op::DeviceSync { target: t, .. } => {
                target(t, seen);
                "DEV sync"
            }
            Op::ImporterVmap { .. } => "DEV vmap",
            Op::ImporterVunmap { .. } => "DEV vunmap",
            Op::Job(j) => {
                if !j.after.is_empty() {
                    seen.insert("after");
                }
                if j.signal.is_some() {
                    seen.insert("signal");
                }
                match &j.kind {
                    JobKind::Read { src, expect } => {
                        target(src, seen);
                        if let Some(v) = expect {
                            value(v, seen);
                            seen.insert("expect");
                        }
                        "DEV read"
                    }
                    JobKind::Write { dst, value: v } => {
                        target(dst, seen);
                        value(v, seen);
                        "DEV write"
                    }
                    JobKind::Copy { src, dst } => {
                        target(src, seen);
                        target(dst, seen);
                        "DEV copy"
                    }
                    JobKind::Transform { src, dst, .. } => {
                        target(src, seen);
                        target(dst, seen);
                        "DEV transform"
                    }
                }
            }
            Op::CpuBegin { target: t, .. } => {
                target(t, seen);
                "cpu begin"
            }
            Op::CpuEnd { .. } => "cpu end",
            Op::CpuRead { target: t, expect } => {
                target(t, seen);
                if let Some(v) = expect {
                    value(v, seen);
                }
                "cpu read"
            }
            Op::CpuWrite { target: t, value: v } => {
                target(t, seen);
                value(v, seen);
                "cpu write"
            }
            Op::Vmap { .. } => "vmap",
            Op::Vunmap { .. } => "vunmap",
            Op::Mmap { .. } => "mmap",
            Op::Munmap { .. } => "munmap",
            Op::Sync { flags, .. } => match flags.node {
                SyncFlags::Named { .. } => "sync",
                SyncFlags::Raw(_) => "sync flags",
            },
            Op::SetName { .. } => "set_name",
            Op::Fence { .. } => "fence",
            Op::Signal { .. } => "signal F",
            Op::Wait { .. } => "wait",
            Op::Export { .. } => "export",
            Op::Import { .. } => "import",
            Op::ResvAdd { .. } => "resv",
            Op::Release { .. } => "release",
            Op::Repeat { body, .. } => {
                constructs(body, seen);
                "repeat"
            }
        };
        seen.insert(name);
    }
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// Parses `B` then `line`; the error is on line 2.
fn err2(line: &str) -> ParseError {
    err(&format!("{B}{line}\n"))
}

#[test]
fn unexpected_tokens_name_what_was_expected_and_found() {
    let e = err2("map gpu b sideways");
    let ParseError::Unexpected { expected, found, .. } = &e else { panic!("{e:?}") };
    assert!(expected.starts_with("a direction"), "{expected}");
    assert_eq!(found, "`sideways`");
    assert_eq!(at(&e), (Some(2), Some(11)));
    assert!(e.to_string().contains("expected a direction"), "{e}");

    let cases: &[(&str, u32, &str)] = &[
        ("map gpu b", 10, "the end of the line"),
        ("attach gpu b extra", 14, "`extra`"),
        ("attach gpu b dynamic dynamic", 22, "`dynamic`"),
        ("attach gpu b expect contiguity", 21, "`contiguity`"),
        ("cpu write b 1", 13, "`1`"),
        ("cpu write b[0..1] = banana", 21, "`banana`"),
        ("cpu end b[0..4] read", 10, "`[`"),
        ("cpu begin b", 12, "the end of the line"),
        ("gpu read b expect 1 after", 26, "the end of the line"),
        ("gpu read b expect 1 signal f g", 30, "`g`"),
        ("gpu copy b[0..1] b[1..2]", 18, "`b`"),
        ("gpu transform b to b xor 1", 26, "`1`"),
        ("cpu read b[1 2]", 14, "`2`"),
        ("cpu read b[0..1", 16, "the end of the line"),
        ("cpu read b[x..1]", 12, "`x`"),
        ("wait", 5, "the end of the line"),
        ("wait a,", 8, "the end of the line"),
        ("sync b middle read", 8, "`middle`"),
        ("set_name b cam", 12, "`cam`"),
        ("repeat 3", 9, "the end of the line"),
        ("repeat 3 { vmap b", 12, "`vmap`"),
        ("buffer c heap=system", 10, "`heap`"),
        ("buffer c size=4KiB heap=", 25, "the end of the line"),
        ("buffer c size=4KiB somewhere", 20, "`somewhere`"),
        ("buffer c size=4KiB heap=system label", 32, "`label`"),
        ("migrate b to moon", 14, "`moon`"),
        ("export b read w", 15, "`w`"),
        ("import f b read", 10, "`b`"),
        ("resv b add f often", 14, "`often`"),
        ("platform 42", 10, "`42`"),
        ("vmap", 5, "the end of the line"),
        ("vmap b c", 8, "`c`"),
        ("[", 1, "`[`"),
        ("gpu", 4, "the end of the line"),
        ("gpu 12 b", 5, "`12`"),
        ("cpu", 4, "the end of the line"),
        ("}", 1, "`}`"),
    ];
    for &(line, col, want) in cases {
        if line == "}" {
            continue; // a stray brace: its own variant, below
        }
        let e = err2(line);
        let ParseError::Unexpected { found, .. } = &e else { panic!("{line:?}: {e:?}") };
        assert_eq!((found.as_str(), at(&e)), (want, (Some(2), Some(col))), "{line:?}: {e}");
    }
    // The end of the file is named as such.
    let e = err(&format!("{B}map gpu b"));
    let ParseError::Unexpected { found, .. } = &e else { panic!("{e:?}") };
    assert_eq!(found, "the end of the file");
}

#[test]
fn unknown_verbs_suggest_the_closest() {
    let cases: &[(&str, &str, u32, &str)] = &[
        ("atach gpu b", "atach", 1, "did you mean `attach`?"),
        ("gpu reed b", "reed", 5, "did you mean `read`?"),
        ("cpu wrte b = 1", "wrte", 5, "did you mean `write`?"),
        ("read b", "read", 1, "`cpu read ...` or `DEV read ...`"),
        ("frobnicate gpu b", "gpu", 12, "a step is `VERB ...`"),
        ("Attach gpu b", "Attach", 1, "did you mean `attach`?"),
    ];
    for &(line, verb, col, help) in cases {
        let e = err2(line);
        let ParseError::UnknownVerb { verb: v, help: h, .. } = &e else { panic!("{line:?}: {e:?}") };
        assert_eq!((v.as_str(), at(&e)), (verb, (Some(2), Some(col))), "{line:?}");
        assert!(h.contains(help), "{line:?}: {h}");
    }
}

#[test]
fn numbers_units_and_bytes() {
    for (line, col) in [("cpu read b[0xZZ..1]", 12), ("cpu read b[0b1..1]", 12), ("cpu read b[4_096..]", 12)] {
        let e = err2(line);
        assert!(matches!(e, ParseError::BadNumber { .. }), "{line}: {e:?}");
        assert_eq!(at(&e), (Some(2), Some(col)), "{line}");
    }
    // The platform format's units, one table for both (binary, K/KB/KiB alike).
    for (line, size) in [
        ("buffer c size=4K heap=system", 4096u64),
        ("buffer c size=4KB heap=system", 4096),
        ("buffer c size=2T heap=system", 2u64 << 40),
        ("buffer c size=3B heap=system", 3),
    ] {
        let src = format!("platform arm64-noncoherent\n{line}\n");
        let s = dmabuf_check::scenario::parse(&src, "t.dmabuf").unwrap_or_else(|e| panic!("{line}: {e:?}"));
        assert!(format!("{:?}", s).contains(&format!("node: {size}")), "{line}: {s:?}");
    }
    for (line, unit) in [
        ("buffer c size=4kib heap=system", "kib"),
        ("buffer c size=4Q heap=system", "Q"),
        ("cpu write b = 1KiB", "KiB"),
        ("repeat 3x {", "x"),
        ("sync b flags=4KiB", "KiB"),
    ] {
        let e = err2(line);
        let ParseError::BadUnit { unit: u, help, .. } = &e else { panic!("{line}: {e:?}") };
        assert_eq!(u, unit, "{line}");
        assert!(help.contains("KiB") || help.contains("no unit"), "{help}");
    }
    let e = err2("buffer c size=4kib heap=system");
    let ParseError::BadUnit { help, .. } = &e else { panic!() };
    assert!(help.contains("KiB, MiB, GiB, TiB"), "{help}");

    for line in [
        "buffer c size=18446744073709551616 heap=system",
        "buffer c size=0x10000000000000000 heap=system",
        "buffer c size=17179869184GiB heap=system",
        "repeat 99999999999999999999 {",
        "sync b flags=0x1ffffffffffffffff",
    ] {
        let e = err2(line);
        assert!(matches!(e, ParseError::Overflow { .. }), "{line}: {e:?}");
    }
    // The largest that fits.
    let Op::Buffer(b) = op("buffer c size=18446744073709551615 heap=system") else { panic!() };
    assert_eq!(b.size.node, u64::MAX);
    let Op::Buffer(b) = op("buffer c size=17179869183GiB heap=system") else { panic!() };
    assert_eq!(b.size.node, 17179869183 << 30);

    for (line, value) in
        [("cpu write b = 256", 256), ("gpu read b expect 0x100", 0x100), ("gpu transform b to b xor=300", 300)]
    {
        let e = err2(line);
        let ParseError::ByteTooLarge { value: v, .. } = &e else { panic!("{line}: {e:?}") };
        assert_eq!(*v, value);
    }
}

#[test]
fn range_errors() {
    for (line, col) in
        [("cpu read b[4..4]", 11), ("cpu read b[8..4]", 11), ("cpu read b[64KiB..]", 11), ("cpu read b[..0]", 11)]
    {
        let e = err2(line);
        assert!(matches!(e, ParseError::EmptyRange { .. }), "{line}: {e:?}");
        assert_eq!(at(&e), (Some(2), Some(col)), "{line}");
    }
    let e = err2("cpu read c[1..]");
    let ParseError::OpenRange { buf, .. } = &e else { panic!("{e:?}") };
    assert_eq!((buf.as_str(), at(&e)), ("c", (Some(2), Some(11))));
    assert!(matches!(err2("gpu copy b[..] to c[..]"), ParseError::OpenRange { .. }));

    let e = err2("gpu copy b[0..4KiB] to b[4KiB..]");
    let ParseError::LengthMismatch { src_len, dst_len, .. } = &e else { panic!("{e:?}") };
    assert_eq!((*src_len, *dst_len, at(&e)), (4096, 60 << 10, (Some(2), Some(25))));
    assert!(matches!(err2("gpu transform b[0..2] to b[2..5] xor=1"), ParseError::LengthMismatch { .. }));
}

#[test]
fn string_errors() {
    let e = err2("set_name b \"abc");
    assert!(matches!(e, ParseError::UnterminatedString { .. }), "{e:?}");
    assert_eq!(at(&e), (Some(2), Some(12)));
    let e = err2("set_name b \"abc\\");
    assert!(matches!(e, ParseError::UnterminatedString { .. }), "{e:?}");
    let e = err(&format!("{B}set_name b \"abc\r\nvmap b\n"));
    assert!(matches!(e, ParseError::UnterminatedString { .. }), "{e:?}");
    let e = err2("set_name b \"a\\nb\"");
    assert!(matches!(e, ParseError::BadEscape { .. }), "{e:?}");
    assert_eq!(at(&e), (Some(2), Some(14)));
    let e = err2("platform \"a\\é\"");
    assert!(matches!(e, ParseError::BadEscape { .. }), "{e:?}");
}

#[test]
fn block_errors() {
    let e = err(&format!("{B}repeat 2 {{\n  vmap b\n  repeat 3 {{\n  }}\n"));
    assert!(matches!(e, ParseError::UnclosedRepeat { .. }), "{e:?}");
    assert_eq!(at(&e), (Some(2), Some(1)));

    let e = err(&format!("{B}repeat 2 {{\n}}\n  }}\n"));
    assert!(matches!(e, ParseError::StrayBrace { .. }), "{e:?}");
    assert_eq!(at(&e), (Some(4), Some(3)));

    let e = err(&format!("{B}repeat 2 {{\n}} vmap b\n"));
    assert!(matches!(e, ParseError::Unexpected { .. }), "{e:?}");

    let mut deep = String::from(B);
    for d in 0..=MAX_DEPTH {
        deep.push_str(&" ".repeat(d));
        deep.push_str("repeat 2 {\n");
    }
    let e = err(&deep);
    let ParseError::RepeatTooDeep { limit, .. } = &e else { panic!("{e:?}") };
    assert_eq!((*limit, at(&e)), (MAX_DEPTH, (Some(MAX_DEPTH as u32 + 2), Some(MAX_DEPTH as u32 + 1))));

    // Far past the limit: an error, not a stack overflow.
    let e = err(&"repeat 1 {\n".repeat(100_000));
    assert!(matches!(e, ParseError::RepeatTooDeep { .. }));
    let e = err(&"}\n".repeat(100_000));
    assert!(matches!(e, ParseError::StrayBrace { .. }));
}

#[test]
fn platform_errors() {
    let e = err(&format!("{B}platform x86-pcie\n"));
    assert!(matches!(e, ParseError::PlatformNotFirst { .. }), "{e:?}");
    assert_eq!(at(&e), (Some(2), Some(1)));
    let e = err("repeat 2 {\nplatform x86-pcie\n}\n");
    assert!(matches!(e, ParseError::PlatformNotFirst { .. }), "{e:?}");
    let e = err("platform x86-pcie\n# again\nplatform \"a.toml\"\nvmap b\n");
    assert!(matches!(e, ParseError::PlatformTwice { .. }), "{e:?}");
    assert_eq!(at(&e), (Some(3), Some(1)));
}

#[test]
fn empty_files() {
    for src in ["", "\n\n", "# only a comment\n", "platform x86-pcie\n", "\u{feff}", "  \t\r\n"] {
        let e = err(src);
        assert!(matches!(e, ParseError::Empty { .. }), "{src:?}: {e:?}");
        assert_eq!(at(&e), (None, None));
        assert!(e.to_string().contains("test.dmabuf"), "{e}");
    }
}

#[test]
fn binary_text_and_size_limits() {
    let e = err("vmap b\nvmap\0b\n");
    assert!(matches!(e, ParseError::Binary { .. }), "{e:?}");
    assert_eq!(at(&e), (Some(2), Some(5)));

    let big = format!("vmap b\n{}", "#".repeat(MAX_LEN));
    let e = err(&big);
    let ParseError::TooLarge { size, limit, .. } = &e else { panic!("{e:?}") };
    assert_eq!((*size, *limit), (big.len() as u64, MAX_LEN as u64));
    assert_eq!(at(&e), (None, None));
    // Just under the limit is fine.
    let fits = format!("vmap b\n{}", "#".repeat(MAX_LEN - 7));
    assert_eq!(ok(&fits).steps.len(), 1);
}

/// A scratch file, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str, bytes: &[u8]) -> Scratch {
        let p = std::env::temp_dir().join(format!("dmabuf-parse-{}-{name}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn files() {
    let f = Scratch::new("ok.dmabuf", SPEC_UVC.as_bytes());
    let (s, src) = parse_file(&f.0).unwrap();
    assert_eq!((s.steps.len(), src.as_str()), (8, SPEC_UVC));

    let f = Scratch::new("bad.dmabuf", b"vmap b\nmap gpu b sideways\n");
    let e = parse_file(&f.0).unwrap_err();
    assert_eq!(at(&e), (Some(2), Some(11)));
    let ParseError::Unexpected { src, .. } = &e else { panic!("{e:?}") };
    assert_eq!(src.name(), f.0.display().to_string());

    let missing = std::env::temp_dir().join("dmabuf-parse-no-such-file.dmabuf");
    let e = parse_file(&missing).unwrap_err();
    assert!(matches!(e, ParseError::Io { .. }), "{e:?}");
    assert!(e.to_string().contains("dmabuf-parse-no-such-file.dmabuf"), "{e}");
    assert_eq!(at(&e), (None, None));

    let f = Scratch::new("latin1.dmabuf", b"vmap b\n# caf\xe9\n");
    let e = parse_file(&f.0).unwrap_err();
    assert!(matches!(e, ParseError::NotUtf8 { .. }), "{e:?}");
    assert_eq!(at(&e), (Some(2), Some(6)));

    let f = Scratch::new("binary.dmabuf", b"\x7fELF\x02\x01\x01\0\0\0");
    let e = parse_file(&f.0).unwrap_err();
    assert!(matches!(e, ParseError::Binary { .. }), "{e:?}");
    assert_eq!(at(&e), (Some(1), Some(8)));

    // Over the limit: refused from the metadata (a sparse file, never read).
    let f = Scratch::new("huge.dmabuf", b"");
    std::fs::OpenOptions::new().write(true).open(&f.0).unwrap().set_len(MAX_LEN as u64 + 1).unwrap();
    let e = parse_file(&f.0).unwrap_err();
    let ParseError::TooLarge { size, .. } = &e else { panic!("{e:?}") };
    assert_eq!(*size, MAX_LEN as u64 + 1);
    assert!(e.diagnostic_source().is_none() && e.source_code().is_none());
}

#[test]
fn every_positioned_error_has_a_source_and_a_label() {
    let e = err2("map gpu b sideways");
    assert!(e.source_code().is_some());
    assert_eq!(e.labels().map(|l| l.count()), Some(1));
    assert_eq!(code(&e), "dmabuf::scenario::unexpected");
    let e = err2("gpu copy b[0..1] to b[1..3]");
    assert_eq!(e.labels().map(|l| l.count()), Some(2));
    // Columns count characters, not bytes.
    let e = err(&format!("{B}# é\nvmap b c\n"));
    assert_eq!(at(&e), (Some(3), Some(8)));
    let e = err(&format!("{B}set_name b \"é\" x\n"));
    assert_eq!(at(&e), (Some(2), Some(16)));
}
