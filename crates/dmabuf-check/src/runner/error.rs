//! A scenario the runner cannot run: where in the file, and what would work.

use crate::scenario::Span;

/// A scenario the runner cannot run: a name that does not exist, a range out of bounds.
///
/// Boxed, so the `Result`s that carry it stay small on the success path.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error(transparent)]
#[diagnostic(transparent)]
pub struct RunError(Box<RunErrorInner>);

impl RunError {
    /// The scenario file's name, as the error report prints it.
    pub fn file(&self) -> &str {
        &self.0.file
    }
    /// 1-based line.
    pub fn line(&self) -> u32 {
        self.0.line
    }
    /// 1-based column.
    pub fn column(&self) -> u32 {
        self.0.column
    }
    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.0.message
    }
    /// What would work, when something would.
    pub fn help(&self) -> Option<&str> {
        self.0.help.as_deref()
    }
    /// Whether the run stopped at [`crate::runner::RunConfig::max_memory`] (a bound, not a fault
    /// of the scenario): `explore` ends inconclusive on it.
    pub fn over_memory(&self) -> bool {
        self.0.over_memory
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{file}:{line}:{column}: {message}")]
#[diagnostic(code(dmabuf::scenario))]
struct RunErrorInner {
    file: String,
    line: u32,
    column: u32,
    message: String,
    #[help]
    help: Option<String>,
    #[source_code]
    src: crate::scenario::source::Quoted,
    #[label("here")]
    span: miette::SourceSpan,
    over_memory: bool,
}

/// 1-based line and column of byte `offset` in `src`.
pub fn line_col(src: &str, offset: usize) -> (u32, u32) {
    let offset = offset.min(src.len());
    let before = &src.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
    let start = before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[start..]).chars().count() as u32 + 1;
    (line, column)
}

/// The scenario file and its text, to point errors at.
pub(crate) struct Ctx<'a> {
    pub(crate) file: &'a str,
    pub(crate) src: &'a str,
}

impl Ctx<'_> {
    pub(crate) fn err(&self, span: Span, message: String, help: Option<String>) -> RunError {
        let (line, column) = line_col(self.src, span.start);
        RunError(Box::new(RunErrorInner {
            file: self.file.to_string(),
            line,
            column,
            message,
            help,
            src: crate::scenario::source::Quoted::new(self.file, self.src),
            span: span.into(),
            over_memory: false,
        }))
    }

    /// A run stopped at its memory bound, at `span`'s step.
    pub(crate) fn over_memory(&self, span: Span, o: crate::memory::OverLimit) -> RunError {
        let mib = |b: u64| b.div_ceil(1 << 20);
        let message = if o.wanted == 0 {
            format!("the run holds {} MiB, over --max-memory {} MiB", mib(o.in_use), mib(o.limit))
        } else {
            format!(
                "this step needs {} MiB more and the run holds {} MiB: over --max-memory {} MiB",
                mib(o.wanted),
                mib(o.in_use),
                mib(o.limit)
            )
        };
        let mut e = self.err(
            span,
            message,
            Some("raise --max-memory if the machine has the memory, or check a smaller buffer or fewer frames".into()),
        );
        e.0.over_memory = true;
        e
    }
}

/// Names close to `name` among `known`, for "did you mean" hints: the close ones if any,
/// else all of them.
pub(crate) fn suggest(name: &str, known: &[String]) -> Option<String> {
    let close: Vec<&String> = known.iter().filter(|k| strsim::levenshtein(name, k) <= 2 || k.contains(name)).collect();
    let list = if close.is_empty() { known.iter().collect::<Vec<_>>() } else { close };
    if list.is_empty() {
        return None;
    }
    let names: Vec<String> = list.iter().map(|s| format!("`{s}`")).collect();
    Some(if names.len() == 1 { format!("did you mean {}?", names[0]) } else { format!("known: {}", names.join(", ")) })
}

/// An error of the checker itself, not of the scenario: pointed at the file's start.
pub(crate) fn internal_error(file: &str, src: &str, message: String) -> RunError {
    Ctx { file, src }.err(crate::scenario::Span::new(0, 0), message, None)
}
