//! Why a platform description was refused, and where.

/// Where in a TOML description a problem lies: 1-based line and column, and the byte span.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Location {
    /// 1-based line.
    pub line: u32,
    /// 1-based column (in characters).
    pub column: u32,
    /// The bytes of the offending key or value, `[start, end)`.
    pub span: std::ops::Range<usize>,
}

impl Location {
    /// The location of byte span `span` of `text`.
    pub fn of(text: &str, span: std::ops::Range<usize>) -> Location {
        let start = span.start.min(text.len());
        let before = &text.as_bytes()[..start];
        let line = before.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
        let from = before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        let column = String::from_utf8_lossy(&before[from..]).chars().count() as u32 + 1;
        Location { line, column, span: start..span.end.clamp(start, text.len()) }
    }
}

/// `file:line:column` when the location is known, `file` otherwise.
fn located(file: &str, loc: &Option<Location>) -> String {
    match loc {
        Some(l) => format!("{file}:{}:{}", l.line, l.column),
        None => file.to_string(),
    }
}

/// Why a platform description was refused. Each variant is one rule.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum PlatformError {
    /// The file could not be read.
    #[error("{file}: cannot read: {reason}")]
    Io {
        /// The path as given.
        file: String,
        /// What the OS said.
        reason: String,
    },
    /// The TOML is malformed or a key has the wrong type or is unknown.
    #[error("{}: {message}", located(file, at))]
    Syntax {
        /// The description's name: its path, or `<preset NAME>`.
        file: String,
        /// The parser's message.
        message: String,
        /// Where in the text, when the parser says.
        at: Option<Location>,
    },
    /// No preset has that name.
    #[error("unknown platform preset `{name}`; known presets: {}", known.join(", "))]
    UnknownPreset {
        /// The name asked for.
        name: String,
        /// The presets that exist.
        known: Vec<String>,
    },
    /// A rule about the description's contents is broken.
    #[error("{}: `{key}`: {rule}", located(file, at))]
    Invalid {
        /// The description's name: its path, or `<preset NAME>`.
        file: String,
        /// The key, as a path (`device[2] (gpu).dma_mask`, `region[1] (cma)`).
        key: String,
        /// The rule broken, in words.
        rule: String,
        /// Where the key is in the TOML text, when the description came from one.
        at: Option<Location>,
    },
    /// A description that is not TOML (a device tree) could not be turned into one.
    #[error("{file}: {node}: {rule}")]
    Import {
        /// The name the importer was given for the file (a device tree blob's path).
        file: String,
        /// Where in it (a device-tree node path, or `header`).
        node: String,
        /// The rule broken, in words.
        rule: String,
    },
}

impl PlatformError {
    /// Where in the TOML text the error lies, when known.
    pub fn location(&self) -> Option<&Location> {
        match self {
            PlatformError::Syntax { at, .. } | PlatformError::Invalid { at, .. } => at.as_ref(),
            _ => None,
        }
    }

    /// The file the error is about, when it is about one.
    pub fn file(&self) -> Option<&str> {
        match self {
            PlatformError::Io { file, .. }
            | PlatformError::Syntax { file, .. }
            | PlatformError::Invalid { file, .. }
            | PlatformError::Import { file, .. } => Some(file),
            PlatformError::UnknownPreset { .. } => None,
        }
    }

    /// The message without the file and location prefix (for a report that shows them
    /// itself, with a caret).
    pub fn rule(&self) -> String {
        match self {
            PlatformError::Syntax { message, .. } => message.clone(),
            PlatformError::Invalid { key, rule, .. } => format!("`{key}`: {rule}"),
            PlatformError::Import { node, rule, .. } => format!("{node}: {rule}"),
            other => other.to_string(),
        }
    }
}
