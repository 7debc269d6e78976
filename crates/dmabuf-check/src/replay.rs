//! Replay files: the path `dmabuf explore` found, saved so that `dmabuf check --replay`
//! runs it again, deterministically, with the full report.
//!
//! A replay file is TOML:
//!
//! ```toml
//! # dmabuf replay: run it with `dmabuf check --replay FILE`
//! scenario = "stray-dirty-line.dmabuf"
//! attach_policy = "strict"
//! maintenance = "minimal"
//! line = 0
//! choices = [0, 0, 1, 0]
//! ```
//!
//! Paths (`scenario`, and `platform` when it names a file) are relative to the replay
//! file's directory, so a replay file and its scenario move together and run from any
//! directory. Every field is checked against the scenario when the path runs again: a
//! `line` past the explored lines, or a choice the path has no option for, is an error
//! naming the line of the file, never a different path run silently.

use std::path::{Path, PathBuf};

use dmabuf::{AttachPolicy, MaintenancePolicy};
use serde::{Deserialize, Serialize};

use crate::runner::RunConfig;

/// The most a replay file may be, in bytes (a path of a million choices).
pub const MAX_REPLAY: u64 = 8 << 20;

/// Which attach policy the exploration ran with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachArg {
    /// `--attach-policy strict`.
    Strict,
    /// `--attach-policy linux`.
    Linux,
}

/// Which maintenance implementation the exploration ran with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaintenanceArg {
    /// `--maintenance minimal`.
    Minimal,
    /// `--maintenance linux`.
    Linux,
    /// `--maintenance vendor`.
    Vendor,
}

/// A replay file's contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replay {
    /// The scenario file, relative to the replay file's directory (or absolute).
    pub scenario: String,
    /// The attach policy of the exploration.
    pub attach_policy: AttachArg,
    /// The maintenance implementation of the exploration.
    pub maintenance: MaintenanceArg,
    /// The platform the exploration was told to use instead of the scenario's: a preset
    /// name, or a file relative to the replay file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// The explored line: an index into the lines the scenario's accesses touch, in
    /// address order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The option taken at every choice point of the path, in order.
    pub choices: Vec<u8>,
}

/// Why a replay file cannot be used: its line (0 for the file as a whole) and what is
/// wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct ReplayError {
    /// 1-based line of the replay file.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// `to` relative to directory `dir` (with `..` where it lies elsewhere).
fn relative(to: &Path, dir: &Path) -> String {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (to, dir) = (abs(to), abs(dir));
    pathdiff::diff_paths(&to, &dir).unwrap_or(to).display().to_string()
}

impl Replay {
    /// The replay of a path of `scenario` explored with `cfg`, to be saved at `path`.
    pub fn new(path: &Path, scenario: &Path, cfg: &RunConfig, line: Option<usize>, choices: &[u8]) -> Replay {
        let dir = path.parent().unwrap_or(Path::new("."));
        // A platform given as a file is stored relative to the replay file, as the
        // scenario is; a preset name stays a name.
        let platform = cfg.platform.as_ref().map(|p| {
            let f = Path::new(p);
            if f.is_file() { relative(f, dir) } else { p.clone() }
        });
        Replay {
            scenario: relative(scenario, dir),
            attach_policy: match cfg.attach {
                AttachPolicy::Strict => AttachArg::Strict,
                AttachPolicy::Linux => AttachArg::Linux,
            },
            maintenance: match cfg.maintenance {
                MaintenancePolicy::Minimal => MaintenanceArg::Minimal,
                MaintenancePolicy::Linux => MaintenanceArg::Linux,
                MaintenancePolicy::Vendor => MaintenanceArg::Vendor,
            },
            platform,
            line,
            choices: choices.to_vec(),
        }
    }

    /// The file's text.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).unwrap_or_default();
        format!("# dmabuf replay: run it with `dmabuf check --replay FILE`\n{body}")
    }

    /// Reads the text of a replay file.
    pub fn parse(text: &str) -> Result<Replay, ReplayError> {
        toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            ReplayError { line, message: e.message().to_string() }
        })
    }

    /// Reads a replay file (at most [`MAX_REPLAY`] bytes).
    pub fn load(path: &Path) -> Result<Replay, ReplayError> {
        let bytes = dmabuf_sim::read_bounded(path, MAX_REPLAY)
            .map_err(|e| ReplayError { line: 0, message: format!("cannot read: {e}") })?;
        let text = String::from_utf8(bytes).map_err(|_| ReplayError { line: 0, message: "not UTF-8 text".into() })?;
        Replay::parse(&text)
    }

    /// The scenario file, for a replay file at `path`.
    pub fn scenario_path(&self, path: &Path) -> PathBuf {
        path.parent().unwrap_or(Path::new("")).join(&self.scenario)
    }

    /// The run configuration the path was explored with, for a replay file at `path`.
    pub fn run_config(&self, path: &Path) -> RunConfig {
        let platform = self.platform.as_ref().map(|p| {
            let f = path.parent().unwrap_or(Path::new("")).join(p);
            if f.is_file() { f.display().to_string() } else { p.clone() }
        });
        RunConfig {
            chooser: "explore".into(),
            attach: match self.attach_policy {
                AttachArg::Strict => AttachPolicy::Strict,
                AttachArg::Linux => AttachPolicy::Linux,
            },
            maintenance: match self.maintenance {
                MaintenanceArg::Minimal => MaintenancePolicy::Minimal,
                MaintenanceArg::Linux => MaintenancePolicy::Linux,
                MaintenanceArg::Vendor => MaintenancePolicy::Vendor,
            },
            platform,
            max_memory: None,
        }
    }

    /// The line of the file where `key` is set (for errors about its value).
    pub fn line_of(text: &str, key: &str) -> usize {
        text.lines().position(|l| l.trim_start().starts_with(key)).map_or(0, |i| i + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_files_round_trip_and_refuse_garbage() {
        let cfg = RunConfig::default();
        let r = Replay::new(Path::new("litmus/x.replay"), Path::new("litmus/x.dmabuf"), &cfg, Some(3), &[0, 2, 1]);
        assert_eq!(r.scenario, "x.dmabuf", "relative to the replay file's directory");
        let back = Replay::parse(&r.to_toml()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.choices, vec![0, 2, 1]);
        assert_eq!(back.maintenance, MaintenanceArg::Minimal);
        assert_eq!(Replay::parse("scenario = \"a\"\nchoices = [1, \"x\"]\n").unwrap_err().line, 2);
        let missing = Replay::parse("choices = [1]\n").unwrap_err();
        assert!(missing.message.contains("scenario"), "{missing}");
        let extra =
            "scenario = \"a\"\nattach_policy = \"strict\"\nmaintenance = \"minimal\"\nchoices = []\nfrobnicate = 1\n";
        assert_eq!(Replay::parse(extra).unwrap_err().line, 5);
        assert!(Replay::parse("scenario = \"a\"\nattach_policy = \"lenient\"\n").is_err());
        assert!(Replay::parse("choices = [256]\n").is_err(), "a choice is a byte");
    }
}
