//! Properties of the scenario parser: it never panics, whatever the input; every scenario
//! the grammar generates parses, with its steps; printing a parsed scenario and parsing
//! it again gives the same scenario; and mutations of valid scenarios parse or fail
//! cleanly, with an error placed inside the text.
//!
//! The case count is proptest's default; `PROPTEST_CASES=20000` runs more.

use std::fmt::Write as _;

use dmabuf_check::scenario::*;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------
// A printer: the AST back to text, one canonical way
// ---------------------------------------------------------------------------------------

fn print(s: &Scenario) -> String {
    let mut out = String::new();
    if let Some(p) = &s.platform {
        match &p.node {
            PlatformRef::Preset(n) => writeln!(out, "platform {n}").unwrap(),
            PlatformRef::File(f) => writeln!(out, "platform {}", quote(f)).unwrap(),
        }
    }
    print_steps(&s.steps, 0, &mut out);
    out
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn target(t: &Target) -> String {
    match &t.range {
        Some(r) => format!("{}[{:#x}..{}]", t.buf.node, r.node.start, r.node.end),
        None => t.buf.node.clone(),
    }
}

fn value(v: Value) -> String {
    match v {
        Value::Byte(b) => format!("{b:#04x}"),
        Value::Frame => "frame".into(),
        Value::Seq => "seq".into(),
    }
}

fn dir(d: Dir) -> &'static str {
    match d {
        Dir::ToDevice => "to_device",
        Dir::FromDevice => "from_device",
        Dir::Bidirectional => "bidirectional",
    }
}

fn access(a: Access) -> &'static str {
    match a {
        Access::Read => "read",
        Access::Write => "write",
        Access::ReadWrite => "rw",
    }
}

fn print_steps(steps: &[Step], depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    for s in steps {
        let line = match &s.op {
            Op::Buffer(b) => {
                let source = match &b.source.node {
                    Source::Heap(h) => format!("heap={h}"),
                    Source::Device(d) => format!("device={d}"),
                    Source::Udmabuf => "udmabuf".into(),
                };
                let label = b.label.as_ref().map(|l| format!(" name={}", quote(&l.node))).unwrap_or_default();
                format!("buffer {} size={} {source}{label}", b.name.node, b.size.node)
            }
            Op::Attach { dev, buf, dynamic, p2p, expect_refused } => {
                let mut l = format!("attach {} {}", dev.node, buf.node);
                if *dynamic {
                    l.push_str(" dynamic");
                }
                if *p2p {
                    l.push_str(" p2p");
                }
                if let Some(r) = expect_refused {
                    write!(l, " expect refused {}", r.node).unwrap();
                }
                l
            }
            Op::Detach { dev, buf } => format!("detach {} {}", dev.node, buf.node),
            Op::Pin { dev, buf } => format!("pin {} {}", dev.node, buf.node),
            Op::Unpin { dev, buf } => format!("unpin {} {}", dev.node, buf.node),
            Op::Migrate { buf, to } => {
                let to = if to.node == MigrateTo::System { "system" } else { "device" };
                format!("migrate {} to {to}", buf.node)
            }
            Op::Map { dev, buf, dir: d } => format!("map {} {} {}", dev.node, buf.node, dir(d.node)),
            Op::Unmap { dev, buf } => format!("unmap {} {}", dev.node, buf.node),
            Op::DeviceBegin { dev, target: t } => format!("{} begin {}", dev.node, target(t)),
            Op::DeviceEnd { dev, target: t } => format!("{} end {}", dev.node, target(t)),
            Op::DeviceSync { from, to, target: t } => format!("{} sync {} to {}", from.node, target(t), to.node),
            Op::ImporterVmap { dev, buf } => format!("{} vmap {}", dev.node, buf.node),
            Op::ImporterVunmap { dev, buf } => format!("{} vunmap {}", dev.node, buf.node),
            Op::Job(j) => {
                let mut l = format!("{} ", j.dev.node);
                match &j.kind {
                    JobKind::Read { src, expect } => {
                        write!(l, "read {}", target(src)).unwrap();
                        if let Some(v) = expect {
                            write!(l, " expect {}", value(v.node)).unwrap();
                        }
                    }
                    JobKind::Write { dst, value: v } => write!(l, "write {} = {}", target(dst), value(v.node)).unwrap(),
                    JobKind::Copy { src, dst } => write!(l, "copy {} to {}", target(src), target(dst)).unwrap(),
                    JobKind::Transform { src, dst, xor } => {
                        write!(l, "transform {} to {} xor={}", target(src), target(dst), xor.node).unwrap()
                    }
                }
                if !j.after.is_empty() {
                    let after: Vec<&str> = j.after.iter().map(|f| f.node.as_str()).collect();
                    write!(l, " after {}", after.join(", ")).unwrap();
                }
                if let Some(f) = &j.signal {
                    write!(l, " signal {}", f.node).unwrap();
                }
                l
            }
            Op::CpuBegin { target: t, dir: d, overwrite } => {
                format!("cpu begin {} {}{}", target(t), dir(d.node), if *overwrite { " overwrite" } else { "" })
            }
            Op::CpuEnd { buf, dir: d } => format!("cpu end {} {}", buf.node, dir(d.node)),
            Op::CpuRead { target: t, expect } => match expect {
                Some(v) => format!("cpu read {} expect {}", target(t), value(v.node)),
                None => format!("cpu read {}", target(t)),
            },
            Op::CpuWrite { target: t, value: v } => format!("cpu write {} = {}", target(t), value(v.node)),
            Op::Vmap { buf } => format!("vmap {}", buf.node),
            Op::Vunmap { buf } => format!("vunmap {}", buf.node),
            Op::Mmap { buf } => format!("mmap {}", buf.node),
            Op::Munmap { buf } => format!("munmap {}", buf.node),
            Op::Sync { target: t, flags } => match flags.node {
                SyncFlags::Named { end, access: a, overwrite } => format!(
                    "sync {} {} {}{}",
                    target(t),
                    if end { "end" } else { "start" },
                    access(a),
                    if overwrite { " overwrite" } else { "" }
                ),
                SyncFlags::Raw(n) => format!("sync {} flags={n:#x}", target(t)),
            },
            Op::SetName { buf, name } => format!("set_name {} {}", buf.node, quote(&name.node)),
            Op::Fence { name } => format!("fence {}", name.node),
            Op::Signal { fence } => format!("signal {}", fence.node),
            Op::Wait { fences } => {
                let f: Vec<&str> = fences.iter().map(|f| f.node.as_str()).collect();
                format!("wait {}", f.join(", "))
            }
            Op::Export { buf, access: a, fence } => format!("export {} {} as {}", buf.node, access(a.node), fence.node),
            Op::Import { fence, buf, access: a } => {
                format!("import {} into {} {}", fence.node, buf.node, access(a.node))
            }
            Op::ResvAdd { buf, fence, usage } => {
                let u = match usage.node {
                    Usage::Kernel => "kernel",
                    Usage::Write => "write",
                    Usage::Read => "read",
                    Usage::Bookkeep => "bookkeep",
                };
                format!("resv {} add {} {u}", buf.node, fence.node)
            }
            Op::Release { buf } => format!("release {}", buf.node),
            Op::Repeat { count, body } => {
                writeln!(out, "{pad}repeat {} {{", count.node).unwrap();
                print_steps(body, depth + 1, out);
                writeln!(out, "{pad}}}").unwrap();
                continue;
            }
        };
        writeln!(out, "{pad}{line}").unwrap();
    }
}

/// Steps, counting those inside blocks.
fn count(steps: &[Step]) -> usize {
    steps
        .iter()
        .map(|s| match &s.op {
            Op::Repeat { body, .. } => 1 + count(body),
            _ => 1,
        })
        .sum()
}

// ---------------------------------------------------------------------------------------
// A generator of valid scenarios, from the grammar
// ---------------------------------------------------------------------------------------

/// Every buffer is declared first with this size, so open ranges have an end.
const SIZE: u64 = 64 << 10;
const BUFS: &[&str] = &["b", "frame", "out-2", "_x"];
const DEVS: &[&str] = &["gpu", "vdec", "legacy-dma", "display", "to"];
const FENCES: &[&str] = &["f", "done", "frame-1"];

fn buf() -> impl Strategy<Value = String> {
    prop::sample::select(BUFS).prop_map(String::from)
}

fn dev() -> impl Strategy<Value = String> {
    prop::sample::select(DEVS).prop_map(String::from)
}

fn fence() -> impl Strategy<Value = String> {
    prop::sample::select(FENCES).prop_map(String::from)
}

/// An offset written in one of the forms the language accepts.
fn offset(v: u64) -> impl Strategy<Value = String> {
    let mut forms = vec![Just(v.to_string()).boxed(), Just(format!("{v:#x}")).boxed(), Just(format!("{v:#X}")).boxed()];
    if v.is_multiple_of(1024) && v > 0 {
        forms.push(Just(format!("{}KiB", v / 1024)).boxed());
    }
    prop::strategy::Union::new(forms)
}

/// A target: a whole buffer or a range in one of its forms.
fn tgt() -> impl Strategy<Value = String> {
    let range = (0..SIZE / 2, 1..SIZE / 2, 0..5u8).prop_flat_map(|(s, len, form)| {
        let e = s + len;
        (offset(s), offset(e), Just(form), Just(s)).prop_map(|(s, e, form, start)| match form {
            0 | 1 => format!("[{s}..{e}]"),
            2 => format!("[ {s} .. ]"),
            3 => format!("[..{e}]"),
            _ if start == 0 => "[..]".to_string(),
            _ => format!("[{s}..]"),
        })
    });
    (buf(), prop::option::of(range)).prop_map(|(b, r)| format!("{b}{}", r.unwrap_or_default()))
}

fn val() -> impl Strategy<Value = String> {
    prop_oneof![
        (0..=255u8).prop_map(|b| b.to_string()),
        (0..=255u8).prop_map(|b| format!("{b:#x}")),
        Just("frame".to_string()),
        Just("seq".to_string()),
    ]
}

fn dir_word() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&["to_device", "from_device", "bidirectional", "write", "read", "rw"][..])
}

fn access_word() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&["read", "write", "rw"][..])
}

fn job_tail() -> impl Strategy<Value = String> {
    (prop::collection::vec(fence(), 0..3), prop::option::of(fence())).prop_map(|(after, signal)| {
        let mut t = String::new();
        if !after.is_empty() {
            write!(t, " after {}", after.join(", ")).unwrap();
        }
        if let Some(f) = signal {
            write!(t, " signal {f}").unwrap();
        }
        t
    })
}

/// One step of any kind but `repeat`, as a line.
fn step() -> impl Strategy<Value = String> {
    let copy = || {
        (0..SIZE / 2, 0..SIZE / 2, 1..SIZE / 2, buf(), buf())
            .prop_map(|(s, d, len, a, b)| format!("{a}[{s}..{}] to {b}[{d}..{}]", s + len, d + len))
    };
    prop_oneof![
        (buf(), 1..SIZE, prop::sample::select(&["heap=system", "heap=linux,cma", "device=dgpu", "udmabuf"][..]))
            .prop_map(|(b, s, src)| format!("buffer {b}-new size={s} {src}")),
        (buf(), "[a-z \"\\\\#]{0,12}").prop_map(|(b, l)| format!(
            "buffer {b}-l size=4KiB heap=cma name=\"{}\"",
            l.replace('\\', "\\\\").replace('"', "\\\"")
        )),
        (dev(), buf(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(d, b, dy, p, r)| {
            let mut l = format!("attach {d} {b}");
            if dy {
                l.push_str(" dynamic");
            }
            if p {
                l.push_str(" p2p");
            }
            if r {
                l.push_str(" expect refused contiguity");
            }
            l
        }),
        (prop::sample::select(&["detach", "pin", "unpin", "unmap"][..]), dev(), buf())
            .prop_map(|(v, d, b)| format!("{v} {d} {b}")),
        (buf(), any::<bool>()).prop_map(|(b, s)| format!("migrate {b} to {}", if s { "system" } else { "device" })),
        (dev(), buf(), dir_word()).prop_map(|(d, b, w)| format!("map {d} {b} {w}")),
        (dev(), prop::sample::select(&["begin", "end"][..]), tgt()).prop_map(|(d, v, t)| format!("{d} {v} {t}")),
        (dev(), tgt(), dev()).prop_map(|(d, t, to)| format!("{d} sync {t} to {to}")),
        (dev(), prop::sample::select(&["vmap", "vunmap"][..]), buf()).prop_map(|(d, v, b)| format!("{d} {v} {b}")),
        (dev(), tgt(), prop::option::of(val()), job_tail()).prop_map(|(d, t, e, tail)| {
            let e = e.map(|v| format!(" expect {v}")).unwrap_or_default();
            format!("{d} read {t}{e}{tail}")
        }),
        (dev(), tgt(), val(), job_tail()).prop_map(|(d, t, v, tail)| format!("{d} write {t} = {v}{tail}")),
        (dev(), copy(), job_tail()).prop_map(|(d, c, tail)| format!("{d} copy {c}{tail}")),
        (dev(), copy(), 0..=255u8, job_tail())
            .prop_map(|(d, c, x, tail)| format!("{d} transform {c} xor={x:#04x}{tail}")),
        (tgt(), dir_word()).prop_map(|(t, w)| format!("cpu begin {t} {w}")),
        (buf(), dir_word()).prop_map(|(b, w)| format!("cpu end {b} {w}")),
        (tgt(), prop::option::of(val())).prop_map(|(t, v)| match v {
            Some(v) => format!("cpu read {t} expect {v}"),
            None => format!("cpu read {t}"),
        }),
        (tgt(), val()).prop_map(|(t, v)| format!("cpu write {t}={v}")),
        (prop::sample::select(&["vmap", "vunmap", "mmap", "munmap", "release"][..]), buf())
            .prop_map(|(v, b)| format!("{v} {b}")),
        (buf(), any::<bool>(), access_word())
            .prop_map(|(b, e, a)| format!("sync {b} {} {a}", if e { "end" } else { "start" })),
        (buf(), 0u64..4096, 1u64..4096).prop_map(|(b, s, l)| format!("sync {b}[{s}..{}] start write overwrite", s + l)),
        (buf(), any::<u64>()).prop_map(|(b, n)| format!("sync {b} flags={n}")),
        (buf(), "[a-z ]{0,8}").prop_map(|(b, n)| format!("set_name {b} \"{n}\"")),
        (prop::sample::select(&["fence", "signal"][..]), fence()).prop_map(|(v, f)| format!("{v} {f}")),
        prop::collection::vec(fence(), 1..4).prop_map(|f| format!("wait {}", f.join(" , "))),
        (buf(), access_word(), fence()).prop_map(|(b, a, f)| format!("export {b} {a} as {f}")),
        (fence(), buf(), access_word()).prop_map(|(f, b, a)| format!("import {f} into {b} {a}")),
        (buf(), fence(), prop::sample::select(&["kernel", "write", "read", "bookkeep"][..]))
            .prop_map(|(b, f, u)| format!("resv {b} add {f} {u}")),
    ]
}

/// A step or a block of steps.
#[derive(Clone, Debug)]
enum Item {
    Step(String),
    Repeat(u64, Vec<Item>),
}

fn items() -> impl Strategy<Value = Vec<Item>> {
    let leaf = step().prop_map(Item::Step);
    let item = leaf.prop_recursive(3, 32, 5, |inner| {
        (0..100u64, prop::collection::vec(inner, 0..6)).prop_map(|(n, body)| Item::Repeat(n, body))
    });
    prop::collection::vec(item, 1..12)
}

fn items_count(items: &[Item]) -> usize {
    items
        .iter()
        .map(|i| match i {
            Item::Step(_) => 1,
            Item::Repeat(_, body) => 1 + items_count(body),
        })
        .sum()
}

/// Layout around a line: indentation, and a trailing comment or none.
#[derive(Clone, Debug)]
struct Dress {
    indent: String,
    comment: Option<String>,
    blank_after: bool,
}

fn dress() -> impl Strategy<Value = Dress> {
    (
        prop::sample::select(&["", "  ", "\t", " \t "][..]),
        prop::option::of(prop::sample::select(&["", "why", "# \"x\" [..] {", "é"][..])),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(indent, comment, blank_after)| Dress {
            indent: indent.into(),
            comment: comment.map(Into::into),
            blank_after,
        })
}

/// A whole scenario: an optional platform, every buffer of [`BUFS`] declared, the items.
fn scenario() -> impl Strategy<Value = (String, usize)> {
    (
        prop::option::of(prop::sample::select(&["arm64-noncoherent", "x86-pcie", "\"my soc.toml\""][..])),
        items(),
        prop::collection::vec(dress(), 16),
        any::<bool>(),
    )
        .prop_map(|(platform, items, dresses, crlf)| {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut out = String::new();
            if let Some(p) = platform {
                write!(out, "platform {p}{nl}").unwrap();
            }
            for b in BUFS {
                write!(out, "buffer {b} size={SIZE} heap=system{nl}").unwrap();
            }
            let mut n = 0;
            render(&items, &dresses, &mut n, nl, &mut out);
            (out, BUFS.len() + items_count(&items))
        })
}

fn render(items: &[Item], dresses: &[Dress], n: &mut usize, nl: &str, out: &mut String) {
    for item in items {
        let d = &dresses[*n % dresses.len()];
        *n += 1;
        let comment = d.comment.as_ref().map(|c| format!("  # {c}")).unwrap_or_default();
        match item {
            Item::Step(l) => write!(out, "{}{l}{comment}{nl}", d.indent).unwrap(),
            Item::Repeat(count, body) => {
                write!(out, "{}repeat {count} {{{comment}{nl}", d.indent).unwrap();
                render(body, dresses, n, nl, out);
                write!(out, "{}}}{nl}", d.indent).unwrap();
            }
        }
        if d.blank_after {
            out.push_str(nl);
        }
    }
}

/// An error's place, when it has one, is inside the text.
fn placed_inside(e: &ParseError, src: &str) -> Result<(), TestCaseError> {
    if let Some(line) = e.line() {
        let lines = src.split('\n').count();
        prop_assert!(line >= 1 && line as usize <= lines, "line {line} of {lines}: {e}");
        prop_assert!(e.column().is_some_and(|c| c >= 1));
    }
    Ok(())
}

/// A character to insert: mostly the language's own, some hostile.
fn noise() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(&[
            ' ', '\n', '\r', '\t', '#', '"', '\\', '[', ']', '.', '=', ',', '{', '}', '0', '9', 'x', 'K', 'i', 'B',
            '_', '-', 'a', 'z',
        ][..]),
        1 => prop::sample::select(&['\0', 'é', '\u{feff}', '\u{1F600}', '\u{2028}'][..]),
        1 => any::<char>(),
    ]
}

#[derive(Clone, Debug)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, char),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1..4usize).prop_map(|(at, n)| Edit::Delete(at, n)),
        (any::<usize>(), noise()).prop_map(|(at, c)| Edit::Insert(at, c)),
    ]
}

/// Applies `edits` at character positions (taken modulo the length).
fn mutate(src: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = src.chars().collect();
    for e in edits {
        match *e {
            Edit::Delete(at, n) if !chars.is_empty() => {
                let at = at % chars.len();
                let end = (at + n).min(chars.len());
                chars.drain(at..end);
            }
            Edit::Delete(..) => {}
            Edit::Insert(at, c) => {
                let at = at % (chars.len() + 1);
                chars.insert(at, c);
            }
        }
    }
    chars.into_iter().collect()
}

proptest! {
    /// Any string: a scenario or an error, never a panic.
    #[test]
    fn arbitrary_strings_never_panic(src in any::<String>()) {
        if let Err(e) = parse(&src, "fuzz") {
            placed_inside(&e, &src)?;
        }
    }

    /// Strings over the language's own characters, which reach deeper into the grammar.
    #[test]
    fn strings_of_the_alphabet_never_panic(
        src in "([a-z_]{1,9}|[0-9]{1,4}|0x[0-9a-f]{1,3}|KiB|[ \t]|\n|\\[|\\]|\\.\\.|=|,|\\{|\\}|#|\"|\\\\|cpu|gpu|read|write|buffer|repeat 2 \\{){0,60}"
    ) {
        if let Err(e) = parse(&src, "fuzz") {
            placed_inside(&e, &src)?;
        }
    }

    /// Every generated scenario parses, with every step; printing it and parsing the
    /// print gives the same scenario.
    #[test]
    fn generated_scenarios_parse_and_roundtrip((src, steps) in scenario()) {
        let s = match parse(&src, "gen") {
            Ok(s) => s,
            Err(e) => return Err(TestCaseError::fail(format!("{:?}\n{src}", miette::Report::new(e)))),
        };
        prop_assert_eq!(count(&s.steps), steps);
        let printed = print(&s);
        let again = match parse(&printed, "printed") {
            Ok(s) => s,
            Err(e) => return Err(TestCaseError::fail(format!("{:?}\n{printed}", miette::Report::new(e)))),
        };
        prop_assert_eq!(count(&again.steps), steps);
        prop_assert_eq!(&print(&again), &printed);
        // Every step's span is text of its own line, without its comment.
        check_spans(&src, &s.steps)?;
    }

    /// Mutations of valid scenarios parse or fail with a placed error, never panic.
    #[test]
    fn mutated_scenarios_never_panic((src, _) in scenario(), edits in prop::collection::vec(edit(), 1..8)) {
        let m = mutate(&src, &edits);
        if let Err(e) = parse(&m, "mutant") {
            placed_inside(&e, &m)?;
        }
    }
}

fn check_spans(src: &str, steps: &[Step]) -> Result<(), TestCaseError> {
    for s in steps {
        let text = src.get(s.span.start..s.span.end);
        prop_assert!(text.is_some(), "span {:?} out of the text", s.span);
        let text = text.unwrap_or_default();
        prop_assert!(!text.starts_with(char::is_whitespace) && !text.ends_with(char::is_whitespace), "{text:?}");
        let line = src[..s.span.start].matches('\n').count() + 1;
        prop_assert_eq!(line, s.line as usize);
        match &s.op {
            Op::Repeat { body, .. } => {
                prop_assert!(text.starts_with("repeat") && text.ends_with('}'), "{text:?}");
                check_spans(src, body)?;
            }
            _ => prop_assert!(!text.contains('\n') && !text.contains('#') || text.contains('"'), "{text:?}"),
        }
    }
    Ok(())
}
