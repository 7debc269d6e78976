//! Why a scenario could not be read, and where.
//!
//! One variant per rule of the language, each with the source text and a span, so a
//! report puts a caret under the culprit: `miette::Report::new(e)` prints it.

use std::sync::Arc;

use miette::SourceSpan;

/// The text of the scenario an error points into, with the file's name.
pub type Text = Arc<super::source::Quoted>;

/// Why a scenario could not be read.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum ParseError {
    /// The grammar does not allow this token here.
    #[error("expected {expected}, found {found}")]
    #[diagnostic(code(dmabuf::scenario::unexpected))]
    Unexpected {
        /// What the grammar allows at this place, in words ("a CPU verb: begin, end, read
        /// or write").
        expected: String,
        /// The token found instead, as the report names it (`` `sideways` ``, "the end of
        /// the line").
        found: String,
        /// How to fix it, when the mistake is a common one.
        #[help]
        help: Option<String>,
        /// The scenario's text and file name, which the report quotes around the caret.
        #[source_code]
        src: Text,
        /// The token found, or the place where the missing one should be.
        #[label("here")]
        span: SourceSpan,
    },

    /// A step whose verb the language does not know.
    #[error("unknown verb `{verb}`")]
    #[diagnostic(code(dmabuf::scenario::unknown_verb))]
    UnknownVerb {
        /// The word that should have been a verb (a step's first, or the second after a
        /// device), as written.
        verb: String,
        /// The verbs it may have meant.
        #[help]
        help: String,
        /// The scenario's text and file name, which the report quotes around the caret.
        #[source_code]
        src: Text,
        /// That word.
        #[label("not a verb")]
        span: SourceSpan,
    },

    /// Something that starts like a number and is not one.
    #[error("`{text}` is not a number")]
    #[diagnostic(
        code(dmabuf::scenario::bad_number),
        help("numbers are decimal (4096) or hex (0x1000), with a unit where a size is expected")
    )]
    BadNumber {
        /// The token as written (`0xZZ`, `4_096`).
        text: String,
        /// The scenario's text and file name, which the report quotes around the caret.
        #[source_code]
        src: Text,
        /// That token.
        #[label("not a number")]
        span: SourceSpan,
    },

    /// A unit the language does not know, or a unit where none is allowed.
    #[error("unit `{unit}` is not allowed here")]
    #[diagnostic(code(dmabuf::scenario::bad_unit))]
    BadUnit {
        /// The unit as written.
        unit: String,
        /// The units allowed here.
        #[help]
        help: String,
        /// The scenario's text and file name, which the report quotes around the caret.
        #[source_code]
        src: Text,
        /// The number and its unit.
        #[label("this unit")]
        span: SourceSpan,
    },

    /// A number, or a size after its unit, that does not fit in 64 bits.
    #[error("`{text}` does not fit in 64 bits")]
    #[diagnostic(code(dmabuf::scenario::overflow))]
    Overflow {
        /// The number as written, its unit included.
        text: String,
        /// The scenario's text and file name, which the report quotes around the caret.
        #[source_code]
        src: Text,
        /// That number and its unit.
        #[label("too large")]
        span: SourceSpan,
    },

    /// A byte value (a written or expected value, a XOR key) over 255.
    #[error("byte value {value} is over 255")]
    #[diagnostic(
        code(dmabuf::scenario::byte_too_large),
        help("a value fills every byte of the range: 0 to 255 (0xff), `frame` or `seq`")
    )]
    ByteTooLarge {
        /// The value as written, over 255.
        value: u64,
        /// The scenario's text and file name, which the report quotes around the caret.
        #[source_code]
        src: Text,
        /// That number.
        #[label("not a byte")]
        span: SourceSpan,
    },

    /// A range whose start is not below its end.
    #[error("empty range {start:#x}..{end:#x}")]
    #[diagnostic(
        code(dmabuf::scenario::empty_range),
        help("a range is START..END with START below END; END is one past the last byte")
    )]
    EmptyRange {
        /// The range's start, in bytes.
        start: u64,
        /// The range's end, in bytes: at or below `start`.
        end: u64,
        /// The scenario's text and file name, which the report quotes around the caret.
        #[source_code]
        src: Text,
        /// The range, brackets included.
        #[label("no bytes")]
        span: SourceSpan,
    },

    /// A range without an end (`buf[4KiB..]`) on a buffer not declared above it.
    #[error("cannot tell where the range ends: no `buffer {buf}` is declared above")]
    #[diagnostic(
        code(dmabuf::scenario::open_range),
        help("`START..` runs to the end of the buffer, which needs its `buffer` line first; or write the end")
    )]
    OpenRange {
        /// The scenario's name of the buffer whose size would give the end.
        buf: String,
        /// The scenario's text and file name, which the report quotes around the caret.
        #[source_code]
        src: Text,
        /// The range, brackets included, whose end is missing.
        #[label("open range")]
        span: SourceSpan,
    },

    /// A copy or transform between ranges of different lengths.
    #[error("a copy needs ranges of one length: {src_len} bytes to {dst_len} bytes")]
    #[diagnostic(code(dmabuf::scenario::length_mismatch))]
    LengthMismatch {
        /// The length of the range read, in bytes.
        src_len: u64,
        /// The length of the range written, in bytes.
        dst_len: u64,
        /// The scenario's text and file name, which the report quotes around the caret.
        #[source_code]
        src: Text,
        /// The destination range.
        #[label("{dst_len} bytes")]
        span: SourceSpan,
        /// The source range.
        #[label("{src_len} bytes")]
        other: SourceSpan,
    },

    /// A string with no closing quote on its line.
    #[error("unterminated string")]
    #[diagnostic(
        code(dmabuf::scenario::unterminated_string),
        help("close it with `\"` on the same line; write a quote inside as `\\\"`")
    )]
    UnterminatedString {
        /// The scenario's text and file name, which the report quotes around the caret.
        #[source_code]
        src: Text,
        /// From the opening quote to the end of the line.
        #[label("opened here")]
        span: SourceSpan,
    },

    /// A backslash in a string followed by something else than `"` or `\`.
    #[error("unknown escape in a string")]
    #[diagnostic(code(dmabuf::scenario::bad_escape), help("strings know two escapes: `\\\"` and `\\\\`"))]
    BadEscape {
        /// The scenario's text and file name, which the report quotes around the caret.
        #[source_code]
        src: Text,
        /// The backslash and the character after it.
        #[label("here")]
        span: SourceSpan,
    },

    /// A `repeat` block with no `}`.
    #[error("`repeat` block is never closed")]
    #[diagnostic(
        code(dmabuf::scenario::unclosed_repeat),
        help("put `}}` on a line of its own after the block's last step")
    )]
    UnclosedRepeat {
        /// The scenario's text and file name, which the report quotes around the caret.
        #[source_code]
        src: Text,
        /// The `repeat N {` line.
        #[label("opened here")]
        span: SourceSpan,
    },

    /// A `}` with no `repeat` to close.
    #[error("`}}` closes no `repeat`")]
    #[diagnostic(code(dmabuf::scenario::stray_brace))]
    StrayBrace {
        /// The scenario's text and file name, which the report quotes around the caret.
        #[source_code]
        src: Text,
        /// The `}`.
        #[label("nothing to close")]
        span: SourceSpan,
    },

    /// `repeat` blocks nested deeper than the language allows.
    #[error("`repeat` blocks nest at most {limit} deep")]
    #[diagnostic(code(dmabuf::scenario::repeat_too_deep))]
    RepeatTooDeep {
        /// The deepest nesting allowed ([`MAX_DEPTH`](super::MAX_DEPTH)).
        limit: usize,
        /// The scenario's text and file name, which the report quotes around the caret.
        #[source_code]
        src: Text,
        /// The `repeat` that opens one block too many.
        #[label("one too deep")]
        span: SourceSpan,
    },

    /// `platform` after another step.
    #[error("`platform` must come before every other step")]
    #[diagnostic(code(dmabuf::scenario::platform_not_first), help("move the `platform` line to the top"))]
    PlatformNotFirst {
        /// The scenario's text and file name, which the report quotes around the caret.
        #[source_code]
        src: Text,
        /// The late `platform` step.
        #[label("too late")]
        span: SourceSpan,
        /// The first step of the scenario, which `platform` should precede.
        #[label("the first step")]
        first: SourceSpan,
    },

    /// A second `platform`.
    #[error("a scenario names one platform")]
    #[diagnostic(
        code(dmabuf::scenario::platform_twice),
        help("to run one scenario on several platforms, pass --platform to `dmabuf check`")
    )]
    PlatformTwice {
        /// The scenario's text and file name, which the report quotes around the caret.
        #[source_code]
        src: Text,
        /// The second `platform`.
        #[label("again")]
        span: SourceSpan,
        /// The first `platform` step.
        #[label("first named here")]
        first: SourceSpan,
    },

    /// A file with no step: empty, or only comments and perhaps a `platform`.
    #[error("{name}: the scenario has no steps")]
    #[diagnostic(code(dmabuf::scenario::empty), help("a scenario is one step a line: `buffer`, `attach`, ..."))]
    Empty {
        /// The scenario's file name, as given to the parser.
        name: String,
    },

    /// A file that is not UTF-8 text.
    #[error("{name}: not UTF-8 text")]
    #[diagnostic(code(dmabuf::scenario::not_utf8))]
    NotUtf8 {
        /// The file's name, as given.
        name: String,
        /// The text, invalid bytes replaced.
        #[source_code]
        src: Text,
        /// The first invalid byte.
        #[label("first invalid byte")]
        span: SourceSpan,
    },

    /// A file with a NUL byte: binary, not a scenario.
    #[error("{name}: a NUL byte; this looks like a binary file")]
    #[diagnostic(code(dmabuf::scenario::binary))]
    Binary {
        /// The file's name, as given.
        name: String,
        /// The text, invalid bytes replaced.
        #[source_code]
        src: Text,
        /// The first NUL byte.
        #[label("NUL")]
        span: SourceSpan,
    },

    /// A file over the size limit; it is not read.
    #[error("{name}: {size} bytes or more; a scenario is at most {limit} bytes")]
    #[diagnostic(code(dmabuf::scenario::too_large))]
    TooLarge {
        /// The file's name, as given.
        name: String,
        /// Its size in bytes, as the file system reported it or as read.
        size: u64,
        /// The most a scenario may hold, in bytes ([`MAX_LEN`](super::MAX_LEN)).
        limit: u64,
    },

    /// The file could not be read.
    #[error("cannot read {path}: {error}")]
    #[diagnostic(code(dmabuf::scenario::io))]
    Io {
        /// The path that could not be opened or read, as given.
        path: String,
        /// The operating system's error, named once: in the message, not again as the
        /// error's source (a report would print it twice).
        error: std::io::Error,
    },
}

impl ParseError {
    /// The text and the byte offset of the culprit, when there is one.
    fn place(&self) -> Option<(&str, usize)> {
        use ParseError::*;
        let (src, span) = match self {
            Unexpected { src, span, .. }
            | UnknownVerb { src, span, .. }
            | BadNumber { src, span, .. }
            | BadUnit { src, span, .. }
            | Overflow { src, span, .. }
            | ByteTooLarge { src, span, .. }
            | EmptyRange { src, span, .. }
            | OpenRange { src, span, .. }
            | LengthMismatch { src, span, .. }
            | UnterminatedString { src, span }
            | BadEscape { src, span }
            | UnclosedRepeat { src, span }
            | StrayBrace { src, span }
            | RepeatTooDeep { src, span, .. }
            | PlatformNotFirst { src, span, .. }
            | PlatformTwice { src, span, .. }
            | NotUtf8 { src, span, .. }
            | Binary { src, span, .. } => (src, span),
            Empty { .. } | TooLarge { .. } | Io { .. } => return None,
        };
        Some((src.text(), span.offset()))
    }

    /// 1-based line of the culprit, when there is one.
    pub fn line(&self) -> Option<u32> {
        self.place().map(|(src, at)| line_col(src, at).0)
    }

    /// 1-based column (in characters) of the culprit, when there is one.
    pub fn column(&self) -> Option<u32> {
        self.place().map(|(src, at)| line_col(src, at).1)
    }
}

/// 1-based line and column (in characters) of byte `at` of `src`.
pub(super) fn line_col(src: &str, at: usize) -> (u32, u32) {
    let before = src.as_bytes().get(..at).unwrap_or(src.as_bytes());
    let line = before.iter().filter(|&&b| b == b'\n').count();
    let start = before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(before.get(start..).unwrap_or_default()).chars().count();
    let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).saturating_add(1);
    (clamp(line), clamp(column))
}
