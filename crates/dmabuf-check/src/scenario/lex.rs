//! The tokens of the scenario language, as `winnow` parsers over the located source.
//!
//! Every token parser skips the blanks before it (never a newline) and nothing after it,
//! so a step ends at its last token and its span leaves out what follows. Failures are
//! [`PErr`]s: a backtrack carries only the place; a cut carries the rule that was broken.

use winnow::combinator::{alt, eof, opt, peek};
use winnow::error::{ErrMode, ParserError};
use winnow::stream::Location;
use winnow::token::{any, one_of, take_till, take_while};
use winnow::{LocatingSlice, ModalResult, Parser};

use super::ast::{Ident, Span, Spanned};

/// The source, with offsets.
pub(super) type In<'s> = LocatingSlice<&'s str>;

/// A parser's result.
pub(super) type PResult<T> = ModalResult<T, PErr>;

/// A parse failure: where, and which rule.
#[derive(Debug)]
pub(super) struct PErr {
    /// The culprit; empty for [`Kind::Expected`], whose token is found when reporting.
    pub span: Span,
    /// What went wrong.
    pub kind: Kind,
}

/// The rule a [`PErr`] breaks.
#[derive(Debug)]
pub(super) enum Kind {
    /// A combinator failed; nothing more is known.
    Backtrack,
    /// Another token was expected.
    Expected { what: &'static str, help: Option<&'static str> },
    /// A verb the language does not know.
    UnknownVerb { verb: String, help: String },
    /// Not a number.
    BadNumber,
    /// A unit not allowed here.
    BadUnit { unit: String, help: String },
    /// Over 64 bits.
    Overflow,
    /// A byte value over 255.
    ByteTooLarge(u64),
    /// `start >= end`.
    EmptyRange { start: u64, end: u64 },
    /// `buf[N..]` of a buffer whose size is not known.
    OpenRange { buf: String },
    /// Copy ranges of different lengths; `other` is the source range.
    LengthMismatch { src_len: u64, dst_len: u64, other: Span },
    /// No closing quote.
    UnterminatedString,
    /// `\` followed by something else than `"` or `\`.
    BadEscape,
}

impl<'s> ParserError<In<'s>> for PErr {
    type Inner = Self;

    fn from_input(input: &In<'s>) -> Self {
        let at = input.current_token_start();
        PErr { span: Span::new(at, at), kind: Kind::Backtrack }
    }

    /// winnow panics on a broken parser invariant in debug builds; a scenario must never
    /// make the checker panic, so this is an ordinary failure.
    fn assert(input: &In<'s>, _message: &'static str) -> Self
    where
        In<'s>: std::fmt::Debug,
    {
        Self::from_input(input)
    }

    fn into_inner(self) -> Result<Self, Self> {
        Ok(self)
    }
}

/// A failure that stops the parse: `kind` at `span`.
pub(super) fn fail<T>(span: Span, kind: Kind) -> PResult<T> {
    Err(ErrMode::Cut(PErr { span, kind }))
}

/// "Expected `what`", at the next token.
pub(super) fn expected<T>(i: &mut In<'_>, what: &'static str) -> PResult<T> {
    expected_help(i, what, None)
}

/// "Expected `what`" at the next token, with a hint.
pub(super) fn expected_help<T>(i: &mut In<'_>, what: &'static str, help: Option<&'static str>) -> PResult<T> {
    blank(i)?;
    let at = i.current_token_start();
    fail(Span::new(at, at), Kind::Expected { what, help })
}

/// Where the parser stands: the byte offset of the next unread byte of the source.
pub(super) fn offset(i: &In<'_>) -> usize {
    i.current_token_start()
}

/// Blanks: spaces, tabs, and the `\r` of a CRLF line end.
pub(super) fn blank(i: &mut In<'_>) -> PResult<()> {
    take_while(0.., [' ', '\t', '\r']).void().parse_next(i)
}

/// A word: `[A-Za-z_][A-Za-z0-9_-]*`. Verbs, keywords and names.
pub(super) fn word<'s>(i: &mut In<'s>) -> PResult<Spanned<&'s str>> {
    blank(i)?;
    (one_of(|c: char| c.is_ascii_alphabetic() || c == '_'), take_while(0.., is_name_char))
        .take()
        .with_span()
        .map(|(w, r)| Spanned::new(w, Span::new(r.start, r.end)))
        .parse_next(i)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// The keyword `k`, as a whole word.
pub(super) fn kw<'s>(k: &'static str) -> impl Parser<In<'s>, Span, ErrMode<PErr>> {
    move |i: &mut In<'s>| word.verify(|w: &Spanned<&str>| w.node == k).map(|w| w.span).parse_next(i)
}

/// A name, or "expected `what`".
pub(super) fn ident(i: &mut In<'_>, what: &'static str) -> PResult<Ident> {
    match opt(word).parse_next(i)? {
        Some(w) => Ok(Spanned::new(w.node.to_string(), w.span)),
        None => expected(i, what),
    }
}

/// The keyword `k`, or "expected `what`".
pub(super) fn keyword(i: &mut In<'_>, k: &'static str, what: &'static str) -> PResult<Span> {
    match opt(kw(k)).parse_next(i)? {
        Some(s) => Ok(s),
        None => expected(i, what),
    }
}

/// A heap name: a word that may also hold `,` (`linux,cma`).
pub(super) fn heap_name(i: &mut In<'_>) -> PResult<Spanned<String>> {
    blank(i)?;
    let w = opt((
        one_of(|c: char| c.is_ascii_alphabetic() || c == '_'),
        take_while(0.., |c: char| is_name_char(c) || c == ','),
    )
        .take()
        .with_span())
    .parse_next(i)?;
    match w {
        Some((w, r)) => Ok(Spanned::new(w.to_string(), Span::new(r.start, r.end))),
        None => expected(i, "a heap name (system, cma, uncached, ...)"),
    }
}

/// One of the words of `table`, or "expected `what`".
pub(super) fn choice<T: Copy>(i: &mut In<'_>, what: &'static str, table: &[(&str, T)]) -> PResult<Spanned<T>> {
    let Some(w) = opt(word).parse_next(i)? else {
        return expected(i, what);
    };
    match table.iter().find(|(k, _)| *k == w.node) {
        Some(&(_, v)) => Ok(Spanned::new(v, w.span)),
        None => fail(Span::new(w.span.start, w.span.start), Kind::Expected { what, help: None }),
    }
}

/// The punctuation `p`, or "expected `what`".
pub(super) fn punct(i: &mut In<'_>, p: &'static str, what: &'static str) -> PResult<Span> {
    blank(i)?;
    match opt(p.span()).parse_next(i)? {
        Some(r) => Ok(Span::new(r.start, r.end)),
        None => expected(i, what),
    }
}

/// Whether the line ends here: blanks, then a comment, a newline or the end of the file.
/// Consumes nothing.
pub(super) fn at_end(i: &mut In<'_>) -> bool {
    let r: PResult<()> = peek((blank, alt(('#'.void(), '\n'.void(), eof.void())))).void().parse_next(i);
    r.is_ok()
}

/// The end of the step, or "expected `what`". Consumes nothing.
pub(super) fn done(i: &mut In<'_>, what: &'static str) -> PResult<()> {
    done_help(i, what, None)
}

/// The end of the step, or "expected `what`" with a hint. Consumes nothing.
pub(super) fn done_help(i: &mut In<'_>, what: &'static str, help: Option<&'static str>) -> PResult<()> {
    if at_end(i) { Ok(()) } else { expected_help(i, what, help) }
}

/// The end of a line: blanks, a comment, and the newline (or the end of the file).
pub(super) fn eol(i: &mut In<'_>) -> PResult<()> {
    blank(i)?;
    opt(('#', take_till(0.., '\n'))).parse_next(i)?;
    if opt(alt(("\n".void(), eof.void()))).parse_next(i)?.is_some() {
        Ok(())
    } else {
        expected(i, "the end of the line")
    }
}

/// A number token as written: a digit, then letters, digits and `_` (`4096`, `0x1000`,
/// `64KiB`). Its value is read by [`size`] or [`plain`].
pub(super) fn number_token<'s>(i: &mut In<'s>) -> PResult<Spanned<&'s str>> {
    blank(i)?;
    (one_of(|c: char| c.is_ascii_digit()), take_while(0.., |c: char| c.is_ascii_alphanumeric() || c == '_'))
        .take()
        .with_span()
        .map(|(w, r)| Spanned::new(w, Span::new(r.start, r.end)))
        .parse_next(i)
}

/// Splits a number token into its value and its unit (letters after the digits).
fn split(t: &Spanned<&str>) -> PResult<(u64, String)> {
    let bad = || fail(t.span, Kind::BadNumber);
    let (radix, body) = match t.node.strip_prefix("0x").or_else(|| t.node.strip_prefix("0X")) {
        Some(h) => (16, h),
        None => (10, t.node),
    };
    let n = body.find(|c: char| !c.is_digit(radix)).unwrap_or(body.len());
    let (Some(digits), Some(unit)) = (body.get(..n), body.get(n..)) else {
        return bad();
    };
    if digits.is_empty() || !unit.chars().all(|c| c.is_ascii_alphabetic()) {
        return bad();
    }
    let value = digits
        .chars()
        .try_fold(0u64, |v, c| v.checked_mul(u64::from(radix))?.checked_add(u64::from(c.to_digit(radix)?)));
    match value {
        Some(v) => Ok((v, unit.to_string())),
        None => fail(t.span, Kind::Overflow),
    }
}

/// A size or an offset: `4096`, `0x1000`, `64KiB`, `1MiB`, `2GiB`. `what` names it in
/// "expected" errors.
pub(super) fn size(i: &mut In<'_>, what: &'static str) -> PResult<Spanned<u64>> {
    let Some(t) = opt(number_token).parse_next(i)? else {
        return expected(i, what);
    };
    size_of(&t)
}

/// The bytes a size token stands for, its unit applied (`64KiB` is 65536); a product over
/// 64 bits is an overflow error.
pub(super) fn size_of(t: &Spanned<&str>) -> PResult<Spanned<u64>> {
    let (v, unit) = split(t)?;
    if unit.is_empty() {
        return Ok(Spanned::new(v, t.span));
    }
    // The platform format's units: one table for both.
    let Some(shift) = dmabuf_sim::ByteSize::unit_shift(&unit) else {
        let help = format!("sizes and offsets take {}", dmabuf_sim::ByteSize::UNITS_HELP);
        return fail(t.span, Kind::BadUnit { unit, help });
    };
    match v.checked_mul(1u64 << shift) {
        Some(v) => Ok(Spanned::new(v, t.span)),
        None => fail(t.span, Kind::Overflow),
    }
}

/// A number without a unit: a count, raw flags. `what` names it.
pub(super) fn plain(i: &mut In<'_>, what: &'static str) -> PResult<Spanned<u64>> {
    let Some(t) = opt(number_token).parse_next(i)? else {
        return expected(i, what);
    };
    plain_of(&t, what)
}

/// The value of a number token that takes no unit; a unit is an error that names `what`.
fn plain_of(t: &Spanned<&str>, what: &'static str) -> PResult<Spanned<u64>> {
    let (v, unit) = split(t)?;
    if !unit.is_empty() {
        return fail(t.span, Kind::BadUnit { unit, help: format!("{what} takes no unit") });
    }
    Ok(Spanned::new(v, t.span))
}

/// A byte: a number without a unit, at most 255.
pub(super) fn byte_of(t: &Spanned<&str>) -> PResult<Spanned<u8>> {
    let v = plain_of(t, "a byte value")?;
    match u8::try_from(v.node) {
        Ok(b) => Ok(Spanned::new(b, v.span)),
        Err(_) => fail(v.span, Kind::ByteTooLarge(v.node)),
    }
}

/// A string in double quotes, with the escapes `\"` and `\\`. Backtracks when the next
/// token is not a string.
pub(super) fn string(i: &mut In<'_>) -> PResult<Spanned<String>> {
    blank(i)?;
    let start = offset(i);
    '"'.parse_next(i)?;
    let mut out = String::new();
    loop {
        let chunk: &str = take_till(0.., ['"', '\\', '\n']).parse_next(i)?;
        out.push_str(chunk);
        let at = offset(i);
        let unterminated = || {
            let end = if at > start && chunk.ends_with('\r') { at - 1 } else { at };
            fail(Span::new(start, end), Kind::UnterminatedString)
        };
        match opt(any).parse_next(i)? {
            Some('"') => return Ok(Spanned::new(out, Span::new(start, offset(i)))),
            Some('\\') => match opt(any).parse_next(i)? {
                Some(c @ ('"' | '\\')) => out.push(c),
                None | Some('\n') => return unterminated(),
                Some(_) => return fail(Span::new(at, offset(i)), Kind::BadEscape),
            },
            _ => return unterminated(),
        }
    }
}

/// The token at byte `at` of `src` as a report names it, and its span.
pub(super) fn found(src: &str, at: usize) -> (String, Span) {
    let rest = src.get(at..).unwrap_or_default();
    let here = Span::new(at, at);
    let Some(c) = rest.chars().next() else {
        return ("the end of the file".into(), here);
    };
    if matches!(c, '\n' | '\r' | '#') {
        return ("the end of the line".into(), here);
    }
    if c.is_control() && c != '\t' {
        // Named, never printed: a raw control byte would act on the terminal.
        return (control_name(c), Span::new(at, at + c.len_utf8()));
    }
    if c == '"' {
        let len = rest.find('\n').unwrap_or(rest.len());
        let len = rest.get(1..len).and_then(|s| s.find('"')).map_or(len, |q| q + 2);
        return ("a string".into(), Span::new(at, at + len));
    }
    let mut len = rest.find(|c: char| c.is_whitespace() || "[]=,{}#\".".contains(c)).unwrap_or(rest.len());
    if rest.starts_with("..") {
        len = 2;
    } else if len == 0 {
        len = c.len_utf8();
    }
    // A token is named by its first 40 characters, and pointed at by as many.
    let tok: String = rest.get(..len).unwrap_or_default().chars().take(40).collect();
    let shown = tok.len();
    let tok: String = tok.chars().map(|c| if c.is_control() { '?' } else { c }).collect();
    let more = if shown < len { "…" } else { "" };
    (format!("`{tok}`{more}"), Span::new(at, at + shown))
}

/// A control character as a report names it: `U+000C (form feed)`.
pub(super) fn control_name(c: char) -> String {
    let what = match c {
        '\0' => " (NUL)",
        '\x0b' => " (vertical tab)",
        '\x0c' => " (form feed)",
        '\x1b' => " (escape)",
        '\x7f' => " (delete)",
        _ => "",
    };
    format!("the control character U+{:04X}{what}", c as u32)
}
