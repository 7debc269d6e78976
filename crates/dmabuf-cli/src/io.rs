//! What every subcommand shares on its way in and out: scenarios from a file or from
//! standard input (`-`), colour, and files written whole or not at all.

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use dmabuf_check::scenario::{ParseError, Scenario, parse_file, parse_reader};

/// `--color`: when the text reports and errors are coloured.
#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum ColorArg {
    /// On a terminal, unless `NO_COLOR` is set (or `CLICOLOR_FORCE` forces it).
    #[default]
    Auto,
    /// Always, even into a pipe or a file.
    Always,
    /// Never.
    Never,
}

impl ColorArg {
    /// Makes the choice for every stream written through `anstream` and for miette's
    /// error reports.
    pub fn apply(self) {
        let choice = match self {
            ColorArg::Auto => anstream::ColorChoice::Auto,
            ColorArg::Always => anstream::ColorChoice::Always,
            ColorArg::Never => anstream::ColorChoice::Never,
        };
        choice.write_global();
        let color = match self {
            ColorArg::Auto => return,
            ColorArg::Always => true,
            ColorArg::Never => false,
        };
        let _ = miette::set_hook(Box::new(move |_| Box::new(miette::MietteHandlerOpts::new().color(color).build())));
    }
}

/// The name a scenario read from standard input goes by in reports and errors.
pub const STDIN_NAME: &str = "<stdin>";

/// Whether a path argument means standard input.
pub fn is_stdin(p: &Path) -> bool {
    p.as_os_str() == "-"
}

/// A scenario from a file, or from standard input for `-`; with the path its platform
/// file is relative to (the current directory for standard input).
pub fn read_scenario(p: &Path) -> Result<(PathBuf, Scenario, String), ParseError> {
    if is_stdin(p) {
        let (s, src) = parse_reader(std::io::stdin().lock(), STDIN_NAME)?;
        Ok((PathBuf::from(STDIN_NAME), s, src))
    } else {
        let (s, src) = parse_file(p)?;
        Ok((p.to_path_buf(), s, src))
    }
}

/// Writes `text` to `path` whole or not at all: into a temporary file beside it, then
/// renamed over it. The error names the file and the OS error once.
pub fn write_whole(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let fail = |e: std::io::Error| format!("{}: cannot write: {e}", path.display());
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    // A temporary file is private to its owner; the report is an ordinary file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(fail)?;
    }
    tmp.write_all(text.as_bytes()).map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}
