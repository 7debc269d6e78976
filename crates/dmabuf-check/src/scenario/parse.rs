//! The parser: source text to [`Scenario`].
//!
//! The language is line-oriented: one step a line, `repeat N {` opening a block and `}`
//! on its own line closing it. The driver ([`parse`]) walks the lines and keeps the open
//! blocks on an explicit stack, so nesting costs no recursion; each line is parsed by the
//! `winnow` parsers below, built on the tokens of [`super::lex`]. The grammar, with an
//! example of every construct, is in `docs/scenario-language.md`.
//!
//! Nothing here panics on any input: numbers are checked for overflow, slices are taken
//! with `get`, and the first error ends the parse with its place.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::source::Quoted;
use winnow::Parser;
use winnow::combinator::opt;
use winnow::error::ErrMode;
use winnow::stream::Stream;

use super::ast::*;
pub use super::error::ParseError;
use super::error::Text;
use super::lex::{
    In, Kind, PErr, PResult, at_end, blank, byte_of, choice, done, done_help, eol, expected, expected_help, fail,
    found, heap_name, ident, keyword, kw, number_token, offset, plain, punct, size, size_of, string, word,
};

/// The largest scenario, in bytes.
pub const MAX_LEN: usize = 16 << 20;

/// How deep `repeat` blocks nest.
pub const MAX_DEPTH: usize = 16;

/// The verbs of framework steps (`verb ...`), and `cpu`.
const VERBS: &[&str] = &[
    "platform", "buffer", "attach", "detach", "pin", "unpin", "migrate", "map", "unmap", "vmap", "vunmap", "mmap",
    "munmap", "sync", "set_name", "fence", "signal", "wait", "export", "import", "resv", "release", "repeat", "cpu",
];

/// The verbs of device steps (`DEV verb ...`).
const DEVICE_VERBS: &[&str] = &["read", "write", "copy", "transform", "begin", "end", "sync", "vmap", "vunmap"];

/// The verbs of CPU steps (`cpu verb ...`).
const CPU_VERBS: &[&str] = &["begin", "end", "read", "write"];

const END: &str = "the end of the line";

const DIRS: &[(&str, Dir)] = &[
    ("to_device", Dir::ToDevice),
    ("from_device", Dir::FromDevice),
    ("bidirectional", Dir::Bidirectional),
    ("write", Dir::ToDevice),
    ("read", Dir::FromDevice),
    ("rw", Dir::Bidirectional),
];
const DIR: &str = "a direction: to_device, from_device, bidirectional (or write, read, rw)";

const ACCESSES: &[(&str, Access)] = &[("read", Access::Read), ("write", Access::Write), ("rw", Access::ReadWrite)];
const ACCESS: &str = "an access: read, write or rw";

const VALUE: &str = "a value: a byte (0x5a, 90), `frame` or `seq`";

/// Buffer sizes declared so far, to end `buf[N..]`.
type Sizes = HashMap<String, u64>;

/// Parses `src`; `file_name` is used in error reports.
pub fn parse(src: &str, file_name: &str) -> Result<Scenario, ParseError> {
    if src.len() > MAX_LEN {
        return Err(ParseError::TooLarge { name: file_name.into(), size: src.len() as u64, limit: MAX_LEN as u64 });
    }
    let driver = Driver { src, name: file_name, sizes: Sizes::new() };
    if let Some(at) = src.find('\0') {
        return Err(ParseError::Binary { name: file_name.into(), src: driver.text(), span: (at, 1).into() });
    }
    driver.run()
}

/// Reads and parses a file, returning the scenario and its source text.
///
/// A file over [`MAX_LEN`] bytes is refused before it is read.
pub fn parse_file(path: &Path) -> Result<(Scenario, String), ParseError> {
    let name = path.display().to_string();
    let limit = MAX_LEN as u64;
    let bytes = dmabuf_sim::read_bounded(path, limit).map_err(|e| read_error(&name, e))?;
    parse_bytes(bytes, &name)
}

/// Reads a scenario from `r` (standard input, for `-`), at most [`MAX_LEN`] bytes, and
/// parses it; `name` is what errors call it.
pub fn parse_reader(r: impl std::io::Read, name: &str) -> Result<(Scenario, String), ParseError> {
    let limit = MAX_LEN as u64;
    let mut bytes = Vec::new();
    // One byte past the limit says the input is over it, without reading all of it.
    std::io::Read::read_to_end(&mut std::io::Read::take(r, limit + 1), &mut bytes).map_err(|e| read_error(name, e))?;
    if bytes.len() as u64 > limit {
        return Err(ParseError::TooLarge { name: name.to_string(), size: limit + 1, limit });
    }
    parse_bytes(bytes, name)
}

fn read_error(name: &str, e: std::io::Error) -> ParseError {
    let limit = MAX_LEN as u64;
    if e.kind() == std::io::ErrorKind::FileTooLarge {
        ParseError::TooLarge { name: name.to_string(), size: limit + 1, limit }
    } else {
        ParseError::Io { path: name.to_string(), error: e }
    }
}

/// Parses a scenario's bytes: UTF-8 without NUL bytes.
fn parse_bytes(bytes: Vec<u8>, name: &str) -> Result<(Scenario, String), ParseError> {
    let name = name.to_string();
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        let before = bytes.get(..at).map_or(0, |b| String::from_utf8_lossy(b).len());
        let src = Arc::new(Quoted::new(&name, &String::from_utf8_lossy(&bytes)));
        return Err(ParseError::Binary { name, src, span: (before, 1).into() });
    }
    let src = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
        let src = Arc::new(Quoted::new(&name, &lossy));
        // U+FFFD, which replaced the first invalid sequence, is 3 bytes.
        ParseError::NotUtf8 { name: name.clone(), src, span: (at, 3).into() }
    })?;
    let scenario = parse(&src, &name)?;
    Ok((scenario, src))
}

/// What one line holds.
enum Line {
    /// Nothing: blank, or a comment.
    Blank,
    /// `platform ...`, and the whole step.
    Platform(Spanned<PlatformRef>, Span),
    /// A step, and its span.
    Step(Box<Op>, Span),
    /// `repeat N {`: the count, the `repeat` keyword and the span up to `{`.
    Open(Spanned<u64>, Span, Span),
    /// `}`.
    Close(Span),
}

/// An open `repeat` block.
struct Block {
    count: Spanned<u64>,
    line: u32,
    /// `repeat N {`.
    head: Span,
    body: Vec<Step>,
}

/// What the parser carries from line to line: the source, and the size of every buffer
/// declared so far (for ranges with an open end).
struct Driver<'a> {
    src: &'a str,
    /// The file's name, for reports.
    name: &'a str,
    sizes: Sizes,
}

impl Driver<'_> {
    /// The text for a report; made only when there is one to make.
    fn text(&self) -> Text {
        Arc::new(Quoted::new(self.name, self.src))
    }

    fn run(mut self) -> Result<Scenario, ParseError> {
        let mut i = In::new(self.src);
        let _: PResult<Option<char>> = opt('\u{feff}').parse_next(&mut i);
        let mut scenario = Scenario::default();
        let mut open: Vec<Block> = Vec::new();
        let mut first: Option<Span> = None;
        let mut line: u32 = 1;
        while i.eof_offset() > 0 {
            let before = i.eof_offset();
            let parsed = line_of(&mut i, &self.sizes).map_err(|e| self.error(e))?;
            match parsed {
                Line::Blank => {}
                Line::Platform(p, span) => {
                    if let Some(prev) = &scenario.platform {
                        return Err(ParseError::PlatformTwice {
                            src: self.text(),
                            span: span.into(),
                            first: prev.span.into(),
                        });
                    }
                    if let Some(first) = first {
                        return Err(ParseError::PlatformNotFirst {
                            src: self.text(),
                            span: span.into(),
                            first: first.into(),
                        });
                    }
                    scenario.platform = Some(p);
                }
                Line::Step(op, span) => {
                    if let Op::Buffer(b) = &*op {
                        self.sizes.insert(b.name.node.clone(), b.size.node);
                    }
                    first.get_or_insert(span);
                    let body = open.last_mut().map_or(&mut scenario.steps, |b| &mut b.body);
                    body.push(Step { line, span, op: *op });
                }
                Line::Open(count, kw, head) => {
                    if open.len() >= MAX_DEPTH {
                        return Err(ParseError::RepeatTooDeep { limit: MAX_DEPTH, src: self.text(), span: kw.into() });
                    }
                    first.get_or_insert(head);
                    open.push(Block { count, line, head, body: Vec::new() });
                }
                Line::Close(span) => {
                    let Some(b) = open.pop() else {
                        return Err(ParseError::StrayBrace { src: self.text(), span: span.into() });
                    };
                    let step = Step {
                        line: b.line,
                        span: Span::new(b.head.start, span.end),
                        op: Op::Repeat { count: b.count, body: b.body },
                    };
                    open.last_mut().map_or(&mut scenario.steps, |b| &mut b.body).push(step);
                }
            }
            if i.eof_offset() >= before {
                // Every line consumes at least its newline; this cannot happen, but a
                // parser that stops moving must not loop for ever.
                return Err(self.error(ErrMode::Cut(PErr {
                    span: Span::new(offset(&i), offset(&i)),
                    kind: Kind::Expected { what: "a step", help: None },
                })));
            }
            line = line.saturating_add(1);
        }
        if let Some(b) = open.last() {
            return Err(ParseError::UnclosedRepeat { src: self.text(), span: b.head.into() });
        }
        if scenario.steps.is_empty() {
            return Err(ParseError::Empty { name: self.name.into() });
        }
        Ok(scenario)
    }

    /// The [`ParseError`] for a failure inside a line: the rule's variant, with the source
    /// and the culprit's span.
    fn error(&self, e: ErrMode<PErr>) -> ParseError {
        let e = match e {
            ErrMode::Backtrack(e) | ErrMode::Cut(e) => e,
            ErrMode::Incomplete(_) => PErr { span: Span::new(self.src.len(), self.src.len()), kind: Kind::Backtrack },
        };
        let src = self.text();
        let span = e.span.into();
        let text = || self.src.get(e.span.start..e.span.end).unwrap_or_default().to_string();
        match e.kind {
            Kind::Backtrack => self.unexpected("a step", None, e.span.start),
            Kind::Expected { what, help } => self.unexpected(what, help, e.span.start),
            Kind::UnknownVerb { verb, help } => ParseError::UnknownVerb { verb, help, src, span },
            Kind::BadNumber => ParseError::BadNumber { text: text(), src, span },
            Kind::BadUnit { unit, help } => ParseError::BadUnit { unit, help, src, span },
            Kind::Overflow => ParseError::Overflow { text: text(), src, span },
            Kind::ByteTooLarge(value) => ParseError::ByteTooLarge { value, src, span },
            Kind::EmptyRange { start, end } => ParseError::EmptyRange { start, end, src, span },
            Kind::OpenRange { buf } => ParseError::OpenRange { buf, src, span },
            Kind::LengthMismatch { src_len, dst_len, other } => {
                ParseError::LengthMismatch { src_len, dst_len, src, span, other: other.into() }
            }
            Kind::UnterminatedString => ParseError::UnterminatedString { src, span },
            Kind::BadEscape => ParseError::BadEscape { src, span },
        }
    }

    fn unexpected(&self, what: &str, help: Option<&str>, at: usize) -> ParseError {
        let (found, span) = found(self.src, at);
        ParseError::Unexpected {
            expected: what.into(),
            found,
            help: help.map(Into::into),
            src: self.text(),
            span: span.into(),
        }
    }
}

/// One line, through its newline.
fn line_of(i: &mut In<'_>, sizes: &Sizes) -> PResult<Line> {
    blank(i)?;
    if at_end(i) {
        eol(i)?;
        return Ok(Line::Blank);
    }
    let start = offset(i);
    if let Some(r) = opt('}'.span()).parse_next(i)? {
        done_help(i, END, Some("`}` stands on a line of its own"))?;
        eol(i)?;
        return Ok(Line::Close(Span::new(r.start, r.end)));
    }
    let parsed = step(i, sizes)?;
    let span = Span::new(start, offset(i));
    eol(i)?;
    Ok(match parsed {
        Parsed::Platform(p) => Line::Platform(p, span),
        Parsed::Op(op) => Line::Step(op, span),
        Parsed::Open(count, kw) => Line::Open(count, kw, span),
    })
}

/// What a step parser returns.
enum Parsed {
    Platform(Spanned<PlatformRef>),
    Op(Box<Op>),
    /// `repeat N {`, and the `repeat` keyword.
    Open(Spanned<u64>, Span),
}

/// One step, up to its last token.
fn step(i: &mut In<'_>, sizes: &Sizes) -> PResult<Parsed> {
    let Some(w) = opt(word).parse_next(i)? else {
        return expected_help(
            i,
            "a step",
            Some("a step starts with a verb (`buffer`, `attach`, `map`, ...), `cpu`, or a device name"),
        );
    };
    let op = match w.node {
        "platform" => return platform(i).map(Parsed::Platform),
        "repeat" => {
            let count = plain(i, "a repeat count")?;
            punct(i, "{", "`{` at the end of the line")?;
            done_help(i, END, Some("the block's steps go on the lines after `{`, and `}` on a line of its own"))?;
            return Ok(Parsed::Open(count, w.span));
        }
        "buffer" => buffer(i)?,
        "attach" => attach(i)?,
        "detach" | "pin" | "unpin" | "unmap" => {
            let (dev, buf) = dev_buf(i)?;
            done(i, END)?;
            match w.node {
                "detach" => Op::Detach { dev, buf },
                "pin" => Op::Pin { dev, buf },
                "unpin" => Op::Unpin { dev, buf },
                _ => Op::Unmap { dev, buf },
            }
        }
        "map" => {
            let (dev, buf) = dev_buf(i)?;
            let dir = choice(i, DIR, DIRS)?;
            done(i, END)?;
            Op::Map { dev, buf, dir }
        }
        "migrate" => {
            let buf = ident(i, "a buffer")?;
            keyword(i, "to", "`to`")?;
            let to =
                choice(i, "`system` or `device`", &[("system", MigrateTo::System), ("device", MigrateTo::Device)])?;
            done(i, END)?;
            Op::Migrate { buf, to }
        }
        "vmap" | "vunmap" | "mmap" | "munmap" | "release" => {
            let buf = ident(i, "a buffer")?;
            done(i, END)?;
            match w.node {
                "vmap" => Op::Vmap { buf },
                "vunmap" => Op::Vunmap { buf },
                "mmap" => Op::Mmap { buf },
                "munmap" => Op::Munmap { buf },
                _ => Op::Release { buf },
            }
        }
        "sync" => sync(i, sizes)?,
        "set_name" => {
            let buf = ident(i, "a buffer")?;
            let Some(name) = opt(string).parse_next(i)? else {
                return expected(i, "the name in double quotes");
            };
            done(i, END)?;
            Op::SetName { buf, name }
        }
        "fence" | "signal" => {
            let f = ident(i, "a fence name")?;
            done(i, END)?;
            if w.node == "fence" { Op::Fence { name: f } } else { Op::Signal { fence: f } }
        }
        "wait" => {
            let fences = fence_list(i)?;
            done(i, "`,` and another fence, or the end of the line")?;
            Op::Wait { fences }
        }
        "export" => {
            let buf = ident(i, "a buffer")?;
            let access = choice(i, ACCESS, ACCESSES)?;
            keyword(i, "as", "`as` and the new fence's name")?;
            let fence = ident(i, "the new fence's name")?;
            done(i, END)?;
            Op::Export { buf, access, fence }
        }
        "import" => {
            let fence = ident(i, "a fence")?;
            keyword(i, "into", "`into`")?;
            let buf = ident(i, "a buffer")?;
            let access = choice(i, ACCESS, ACCESSES)?;
            done(i, END)?;
            Op::Import { fence, buf, access }
        }
        "resv" => {
            let buf = ident(i, "a buffer")?;
            keyword(i, "add", "`add`")?;
            let fence = ident(i, "a fence")?;
            let usage = choice(
                i,
                "a usage: kernel, write, read or bookkeep",
                &[
                    ("kernel", Usage::Kernel),
                    ("write", Usage::Write),
                    ("read", Usage::Read),
                    ("bookkeep", Usage::Bookkeep),
                ],
            )?;
            done(i, END)?;
            Op::ResvAdd { buf, fence, usage }
        }
        "cpu" => cpu(i, sizes)?,
        _ => device(i, w, sizes)?,
    };
    Ok(Parsed::Op(Box::new(op)))
}

/// `platform NAME` or `platform "path.toml"`, after the verb.
fn platform(i: &mut In<'_>) -> PResult<Spanned<PlatformRef>> {
    let p = if let Some(s) = opt(string).parse_next(i)? {
        Spanned::new(PlatformRef::File(s.node), s.span)
    } else if let Some(w) = opt(word).parse_next(i)? {
        Spanned::new(PlatformRef::Preset(w.node.to_string()), w.span)
    } else {
        return expected(i, "a platform: a preset name (arm64-noncoherent) or a TOML file's path in quotes");
    };
    done(i, END)?;
    Ok(p)
}

/// `buffer NAME size=SIZE (heap=H | device=D | udmabuf) [name="label"]`, after the verb.
fn buffer(i: &mut In<'_>) -> PResult<Op> {
    let name = ident(i, "the buffer's name")?;
    keyword(i, "size", "`size=SIZE`")?;
    punct(i, "=", "`=`")?;
    let size = size(i, "a size (4096, 0x1000, 64KiB)")?;
    const SOURCE: &str = "the buffer's source: `heap=NAME`, `device=DEV` or `udmabuf`";
    let Some(w) = opt(word).parse_next(i)? else {
        return expected(i, SOURCE);
    };
    let source = match w.node {
        "heap" => {
            punct(i, "=", "`=`")?;
            let h = heap_name(i)?;
            Spanned::new(Source::Heap(h.node), h.span)
        }
        "device" => {
            punct(i, "=", "`=`")?;
            let d = ident(i, "the exporting device")?;
            Spanned::new(Source::Device(d.node), d.span)
        }
        "udmabuf" => Spanned::new(Source::Udmabuf, w.span),
        _ => return fail(Span::new(w.span.start, w.span.start), Kind::Expected { what: SOURCE, help: None }),
    };
    let label = match opt(kw("name")).parse_next(i)? {
        Some(_) => {
            punct(i, "=", "`=`")?;
            match opt(string).parse_next(i)? {
                Some(s) => Some(s),
                None => return expected(i, "the name in double quotes"),
            }
        }
        None => None,
    };
    done(i, if label.is_some() { END } else { "`name=\"...\"` or the end of the line" })?;
    Ok(Op::Buffer(BufferDecl { name, size, source, label }))
}

/// `attach DEV BUF [dynamic] [p2p] [expect refused RULE]`, after the verb. The flags
/// come in any order, each once.
fn attach(i: &mut In<'_>) -> PResult<Op> {
    let (dev, buf) = dev_buf(i)?;
    let (mut dynamic, mut p2p, mut expect_refused) = (false, false, None);
    loop {
        let cp = i.checkpoint();
        match opt(word).parse_next(i)?.map(|w| w.node) {
            Some("dynamic") if !dynamic => dynamic = true,
            Some("p2p") if !p2p => p2p = true,
            Some("expect") => {
                keyword(i, "refused", "`refused` and the rule attach must refuse with")?;
                expect_refused = Some(ident(i, "the rule attach must refuse with (contiguity, reachability, ...)")?);
                done(i, END)?;
                break;
            }
            _ => {
                i.reset(&cp);
                done(i, "`dynamic`, `p2p`, `expect refused RULE` or the end of the line")?;
                break;
            }
        }
    }
    Ok(Op::Attach { dev, buf, dynamic, p2p, expect_refused })
}

/// `sync TARGET start|end read|write|rw [overwrite]` or `sync TARGET flags=N`, after the
/// verb (a range makes it `DMA_BUF_IOCTL_SYNC_PARTIAL`).
fn sync(i: &mut In<'_>, sizes: &Sizes) -> PResult<Op> {
    let target = target(i, sizes, "a buffer")?;
    const WHAT: &str = "`start`, `end` or `flags=N`";
    let Some(w) = opt(word).parse_next(i)? else {
        return expected(i, WHAT);
    };
    let flags = match w.node {
        "start" | "end" => {
            let access = choice(i, ACCESS, ACCESSES)?;
            let end = w.node == "end";
            let mut span_end = access.span.end;
            let overwrite = if access.node == Access::Write && !end {
                match opt(kw("overwrite")).parse_next(i)? {
                    Some(o) => {
                        span_end = o.end;
                        true
                    }
                    None => false,
                }
            } else {
                false
            };
            let flags = SyncFlags::Named { end, access: access.node, overwrite };
            Spanned::new(flags, Span::new(w.span.start, span_end))
        }
        "flags" => {
            punct(i, "=", "`=`")?;
            let n = plain(i, "the raw flags (0x4)")?;
            Spanned::new(SyncFlags::Raw(n.node), Span::new(w.span.start, n.span.end))
        }
        _ => return fail(Span::new(w.span.start, w.span.start), Kind::Expected { what: WHAT, help: None }),
    };
    let overwrite_help = "`overwrite` follows `start write` only: a bracket that reads, or its end, gives no bytes up";
    let what = match flags.node {
        SyncFlags::Named { end: false, access: Access::Write, overwrite: false } => {
            "`overwrite` or the end of the line"
        }
        _ => END,
    };
    let cp = i.checkpoint();
    blank(i)?;
    if let Some(o) = opt(kw("overwrite")).parse_next(i)? {
        return fail(Span::new(o.start, o.start), Kind::Expected { what: END, help: Some(overwrite_help) });
    }
    i.reset(&cp);
    done(i, what)?;
    Ok(Op::Sync { target, flags })
}

/// `cpu begin TARGET DIR`, `cpu end BUF DIR`, `cpu read TARGET [expect VALUE]`,
/// `cpu write TARGET = VALUE`, after `cpu`.
fn cpu(i: &mut In<'_>, sizes: &Sizes) -> PResult<Op> {
    let Some(v) = opt(word).parse_next(i)? else {
        return expected(i, "a CPU verb: begin, end, read or write");
    };
    let op = match v.node {
        "begin" => {
            let target = target(i, sizes, "a buffer")?;
            let dir = choice(i, DIR, DIRS)?;
            let overwrite = opt(kw("overwrite")).parse_next(i)?;
            if let Some(o) = &overwrite
                && dir.node != Dir::ToDevice
            {
                let help = "`overwrite` follows `write` (`to_device`) only: a bracket that reads gives no bytes up";
                return fail(Span::new(o.start, o.start), Kind::Expected { what: END, help: Some(help) });
            }
            Op::CpuBegin { target, dir, overwrite: overwrite.is_some() }
        }
        "end" => {
            let buf = ident(i, "a buffer")?;
            let help = "`cpu end` closes the bracket of the whole buffer: `cpu end BUF DIR`";
            blank(i)?;
            if opt('[').parse_next(i)?.is_some() {
                return fail(Span::new(offset(i) - 1, offset(i) - 1), Kind::Expected { what: DIR, help: Some(help) });
            }
            let dir = choice(i, DIR, DIRS)?;
            Op::CpuEnd { buf, dir }
        }
        "read" => {
            let target = target(i, sizes, "a buffer")?;
            let expect = match opt(kw("expect")).parse_next(i)? {
                Some(_) => Some(value(i)?),
                None => None,
            };
            done(i, if expect.is_some() { END } else { "`expect VALUE` or the end of the line" })?;
            Op::CpuRead { target, expect }
        }
        "write" => {
            let target = target(i, sizes, "a buffer")?;
            punct(i, "=", "`=` and the value to write")?;
            let value = value(i)?;
            Op::CpuWrite { target, value }
        }
        _ => return unknown_verb(v, CPU_VERBS, "a CPU step is `cpu begin|end|read|write ...`"),
    };
    done(i, END)?;
    Ok(op)
}

/// A step whose subject is a device: `DEV verb ...`, after the device's name.
fn device(i: &mut In<'_>, dev: Spanned<&str>, sizes: &Sizes) -> PResult<Op> {
    let verb = opt(word).parse_next(i)?;
    let dev_id = || Spanned::new(dev.node.to_string(), dev.span);
    let job = |kind, (after, signal)| Op::Job(Job { dev: dev_id(), kind, after, signal });
    let op = match verb.as_ref().map(|v| v.node) {
        Some("begin") => {
            let target = target(i, sizes, "a buffer")?;
            done(i, END)?;
            Op::DeviceBegin { dev: dev_id(), target }
        }
        Some("end") => {
            let target = target(i, sizes, "a buffer")?;
            done(i, END)?;
            Op::DeviceEnd { dev: dev_id(), target }
        }
        Some("sync") => {
            let target = target(i, sizes, "a buffer")?;
            keyword(i, "to", "`to` and the device that reads next")?;
            let to = ident(i, "the device that reads next")?;
            done(i, END)?;
            Op::DeviceSync { from: dev_id(), to, target }
        }
        Some("vmap") | Some("vunmap") => {
            let buf = ident(i, "a buffer")?;
            done(i, END)?;
            if verb.as_ref().is_some_and(|v| v.node == "vmap") {
                Op::ImporterVmap { dev: dev_id(), buf }
            } else {
                Op::ImporterVunmap { dev: dev_id(), buf }
            }
        }
        Some("read") => {
            let src = target(i, sizes, "a buffer")?;
            let expect = match opt(kw("expect")).parse_next(i)? {
                Some(_) => Some(value(i)?),
                None => None,
            };
            let what = if expect.is_some() {
                "`after`, `signal` or the end of the line"
            } else {
                "`expect VALUE`, `after`, `signal` or the end of the line"
            };
            job(JobKind::Read { src, expect }, job_tail(i, what)?)
        }
        Some("write") => {
            let dst = target(i, sizes, "a buffer")?;
            punct(i, "=", "`=` and the value to write")?;
            let value = value(i)?;
            job(JobKind::Write { dst, value }, job_tail(i, "`after`, `signal` or the end of the line")?)
        }
        Some("copy") => {
            let (src, dst) = copy_ranges(i, sizes)?;
            job(JobKind::Copy { src, dst }, job_tail(i, "`after`, `signal` or the end of the line")?)
        }
        Some("transform") => {
            let (src, dst) = copy_ranges(i, sizes)?;
            keyword(i, "xor", "`xor=KEY`")?;
            punct(i, "=", "`=`")?;
            let Some(t) = opt(number_token).parse_next(i)? else {
                return expected(i, "the XOR key, a byte (0x0f)");
            };
            let xor = byte_of(&t)?;
            job(JobKind::Transform { src, dst, xor }, job_tail(i, "`after`, `signal` or the end of the line")?)
        }
        _ => return unknown_device_verb(i, dev, verb),
    };
    Ok(op)
}

/// `SRC to DST` of a copy or a transform, with lengths checked when both ranges are known.
fn copy_ranges(i: &mut In<'_>, sizes: &Sizes) -> PResult<(Target, Target)> {
    let src = target(i, sizes, "the buffer to read")?;
    keyword(i, "to", "`to` and the buffer to write")?;
    let dst = target(i, sizes, "the buffer to write")?;
    if let (Some(s), Some(d)) = (&src.range, &dst.range) {
        let (src_len, dst_len) = (s.node.end - s.node.start, d.node.end - d.node.start);
        if src_len != dst_len {
            return fail(d.span, Kind::LengthMismatch { src_len, dst_len, other: s.span });
        }
    }
    Ok((src, dst))
}

/// `[after F, G] [signal F]` and the end of a job; `what` is what may come first.
fn job_tail(i: &mut In<'_>, what: &'static str) -> PResult<(Vec<Ident>, Option<Ident>)> {
    let after = match opt(kw("after")).parse_next(i)? {
        Some(_) => fence_list(i)?,
        None => Vec::new(),
    };
    let signal = match opt(kw("signal")).parse_next(i)? {
        Some(_) => Some(ident(i, "the fence the job signals")?),
        None => None,
    };
    let what = match (after.is_empty(), signal.is_some()) {
        (_, true) => END,
        (false, false) => "`,` and another fence, `signal` or the end of the line",
        (true, false) => what,
    };
    done(i, what)?;
    Ok((after, signal))
}

/// `F [, G ...]`.
fn fence_list(i: &mut In<'_>) -> PResult<Vec<Ident>> {
    let mut fences = vec![ident(i, "a fence")?];
    while opt((blank, ',')).parse_next(i)?.is_some() {
        fences.push(ident(i, "a fence after `,`")?);
    }
    Ok(fences)
}

/// `DEV BUF`.
fn dev_buf(i: &mut In<'_>) -> PResult<(Ident, Ident)> {
    let dev = ident(i, "a device")?;
    let buf = ident(i, "a buffer")?;
    Ok((dev, buf))
}

/// A value: `0x5a`, `90`, `frame`, `seq`.
fn value(i: &mut In<'_>) -> PResult<Spanned<Value>> {
    if let Some(w) = opt(word).parse_next(i)? {
        return match w.node {
            "frame" => Ok(Spanned::new(Value::Frame, w.span)),
            "seq" => Ok(Spanned::new(Value::Seq, w.span)),
            _ => fail(Span::new(w.span.start, w.span.start), Kind::Expected { what: VALUE, help: None }),
        };
    }
    match opt(number_token).parse_next(i)? {
        Some(t) => byte_of(&t).map(|b| Spanned::new(Value::Byte(b.node), b.span)),
        None => expected(i, VALUE),
    }
}

/// A buffer, or some bytes of it: `frame`, `frame[0..4KiB]`, `frame[4KiB..]` (to the end
/// of the buffer, whose `buffer` line must come first), `frame[..4KiB]`, `frame[..]`.
fn target(i: &mut In<'_>, sizes: &Sizes, what: &'static str) -> PResult<Target> {
    let buf = ident(i, what)?;
    let cp = i.checkpoint();
    blank(i)?;
    let open = offset(i);
    if opt('[').parse_next(i)?.is_none() {
        i.reset(&cp);
        return Ok(Target { buf, range: None });
    }
    const RANGE: &str = "a range: START..END, START.. or ..END";
    let start = match opt(number_token).parse_next(i)? {
        Some(t) => Some(size_of(&t)?),
        None => None,
    };
    punct(i, "..", if start.is_some() { "`..` after the start" } else { RANGE })?;
    let end = match opt(number_token).parse_next(i)? {
        Some(t) => Some(size_of(&t)?),
        None => None,
    };
    punct(i, "]", if end.is_some() { "`]`" } else { "the end of the range, or `]`" })?;
    let span = Span::new(open, offset(i));
    let start = start.map_or(0, |s| s.node);
    let end = match end {
        Some(e) => e.node,
        None => match sizes.get(&buf.node) {
            Some(&size) => size,
            None => return fail(span, Kind::OpenRange { buf: buf.node }),
        },
    };
    if start >= end {
        return fail(span, Kind::EmptyRange { start, end });
    }
    Ok(Target { buf, range: Some(Spanned::new(ByteRange { start, end }, span)) })
}

/// The error for `DEV ???`: the verb is unknown, or the first word was a misspelt verb.
fn unknown_device_verb<T>(i: &mut In<'_>, dev: Spanned<&str>, verb: Option<Spanned<&str>>) -> PResult<T> {
    if let Some(v) = &verb
        && let Some(best) = closest(v.node, DEVICE_VERBS)
    {
        return fail(v.span, Kind::UnknownVerb { verb: v.node.into(), help: format!("did you mean `{best}`?") });
    }
    if DEVICE_VERBS.contains(&dev.node) {
        let help = format!("`{0}` needs its subject first: `cpu {0} ...` or `DEV {0} ...`", dev.node);
        return fail(dev.span, Kind::UnknownVerb { verb: dev.node.into(), help });
    }
    // A misspelt framework verb, as in `atach gpu buf`. Not `cpu`: device names such as
    // `gpu` or `npu` are one letter from it.
    if verb.is_some()
        && let Some(best) = closest(dev.node, VERBS).filter(|&b| b != "cpu")
    {
        return fail(dev.span, Kind::UnknownVerb { verb: dev.node.into(), help: format!("did you mean `{best}`?") });
    }
    let help = format!(
        "a step is `VERB ...` with a verb among {}, or `DEV VERB ...` with a device verb among {}",
        VERBS.join(", "),
        DEVICE_VERBS.join(", ")
    );
    match verb {
        Some(v) => fail(v.span, Kind::UnknownVerb { verb: v.node.into(), help }),
        None => expected_help(
            i,
            "a device verb after the device's name: read, write, copy, transform, begin, end, sync, vmap, vunmap",
            Some("or a step's verb: buffer, attach, map, cpu, ... (is the first word misspelt?)"),
        ),
    }
}

/// The error for an unknown verb among `known`.
fn unknown_verb<T>(v: Spanned<&str>, known: &[&str], what: &str) -> PResult<T> {
    let help = match closest(v.node, known) {
        Some(best) => format!("did you mean `{best}`?"),
        None => format!("{what}; verbs: {}", known.join(", ")),
    };
    fail(v.span, Kind::UnknownVerb { verb: v.node.into(), help })
}

/// The word of `known` closest to `w`, if it is close enough to be a misspelling: one
/// edit in a word of up to four letters, two in a longer one.
fn closest<'k>(w: &str, known: &[&'k str]) -> Option<&'k str> {
    let most = if w.chars().count() <= 4 { 1 } else { 2 };
    known
        .iter()
        .map(|k| (strsim::levenshtein(&w.to_ascii_lowercase(), &k.to_ascii_lowercase()), *k))
        .filter(|&(d, _)| d <= most)
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k)
}
