//! The scenario text an error quotes: printable, and cut to a window around the culprit
//! on a very long line.
//!
//! An error quotes the lines around its span. Two things must never reach the terminal:
//! control bytes (a form feed, an escape sequence act on it instead of showing), and a
//! line of megabytes (printing it takes seconds and says nothing). So the quoted text has
//! every control character but tab and line ends replaced by `?` (one byte for one byte,
//! so spans stay where they are; the message names the character), and a line longer than
//! [`MAX_LINE`] bytes is quoted as a window of it around the span.

use miette::{MietteError, MietteSpanContents, NamedSource, SourceCode, SourceSpan, SpanContents};

/// The longest line quoted whole, in bytes.
pub const MAX_LINE: usize = 1024;

/// How much of a long line is quoted on each side of the span, in bytes.
const WINDOW: usize = 120;

/// A scenario's text as errors quote it.
#[derive(Debug)]
pub struct Quoted(NamedSource<String>);

impl Quoted {
    /// The text of file `name`, made printable.
    pub fn new(name: &str, text: &str) -> Quoted {
        let printable: String =
            text.chars().map(|c| if c.is_control() && !matches!(c, '\n' | '\r' | '\t') { '?' } else { c }).collect();
        Quoted(NamedSource::new(name, printable))
    }

    /// The (printable) text.
    pub fn text(&self) -> &str {
        self.0.inner()
    }

    /// The file's name.
    pub fn name(&self) -> &str {
        self.0.name()
    }
}

impl SourceCode for Quoted {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let text = self.text();
        let at = span.offset().min(text.len());
        let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
        if end - start <= MAX_LINE {
            return self.0.read_span(span, context_lines_before, context_lines_after);
        }
        // The window of the long line: whole characters around the span.
        let mut from = at.saturating_sub(WINDOW).max(start);
        while !text.is_char_boundary(from) {
            from -= 1;
        }
        let mut to = (at + span.len() + WINDOW).min(end);
        while !text.is_char_boundary(to) {
            to += 1;
        }
        let line = text[..start].matches('\n').count();
        let column = text[start..from].chars().count();
        Ok(Box::new(MietteSpanContents::new_named(
            self.0.name().to_string(),
            &text.as_bytes()[from..to],
            SourceSpan::new(from.into(), to - from),
            line,
            column,
            1,
        )))
    }
}
