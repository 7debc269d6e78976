//! `dmabuf plan`: where a shared buffer lives, the protocol that shares it, proved.
//! Exit status: 0 a copy-free plan, proved; 1 no copy-free plan, a fallback proved;
//! 2 bad input; 3 no proved protocol.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use dmabuf_check::plan::{self, Access, Board, Request, Source, UserSpec, Verdict};
use dmabuf_sim::ByteSize;

use crate::Format;

/// Flags of `dmabuf plan`.
#[derive(clap::Args)]
pub struct PlanArgs {
    /// The board: a preset name, a platform TOML or a device tree blob (.dtb).
    #[arg(long)]
    platform: String,
    /// A device using the buffer, `DEVICE:ACCESS[:kept]`: ACCESS is read, write or rw;
    /// `kept` when it keeps its mapping across frames. Repeat for each device.
    #[arg(long = "user", value_name = "DEVICE:ACCESS[:kept]")]
    users: Vec<String>,
    /// What the CPU does through the buffer's mmap: read, write or rw.
    #[arg(long, value_name = "ACCESS")]
    cpu: Option<String>,
    /// Enable a node the board's tree disables, as an overlay would (a node path, an
    /// alias or a label). Repeatable; .dtb platforms only.
    #[arg(long, value_name = "NODE")]
    enable: Vec<String>,
    /// The buffer's size (`4096`, `64KiB`, `8MiB`).
    #[arg(long, default_value = "1MiB")]
    size: String,
    /// The size the explorer proves the protocol at (at most --size).
    #[arg(long, default_value = "64KiB")]
    prove_size: String,
    /// The explorer's bound on distinct states, per maintenance policy.
    #[arg(long, default_value_t = 1_000_000)]
    max_states: u64,
    /// The explorer's time bound in seconds, per maintenance policy.
    #[arg(long)]
    timeout: Option<f64>,
    /// Write the protocol to FILE (and, for a tree with nodes enabled, its platform to
    /// FILE with the extension .toml).
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

fn bad(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

fn size(flag: &str, s: &str) -> Result<u64, String> {
    ByteSize::parse(s).map(|b| b.0).map_err(|e| format!("{flag} {s}: {e}"))
}

/// Runs `dmabuf plan`.
pub fn run(a: PlanArgs) -> ExitCode {
    let users: Result<Vec<UserSpec>, _> = a.users.iter().map(|u| u.parse()).collect();
    let users = match users {
        Ok(u) => u,
        Err(e) => return bad(e),
    };
    let cpu = match a.cpu.as_deref().map(str::parse::<Access>).transpose() {
        Ok(c) => c,
        Err(e) => return bad(format!("--cpu: {e}")),
    };
    let (size, prove_size) = match (size("--size", &a.size), size("--prove-size", &a.prove_size)) {
        (Ok(s), Ok(p)) => (s, p),
        (Err(e), _) | (_, Err(e)) => return bad(e),
    };
    if let Some(t) = a.timeout
        && !(t.is_finite() && t > 0.0)
    {
        return bad("--timeout must be a positive number of seconds");
    }
    let toml_out = a.save.as_ref().map(|f| f.with_extension("toml"));
    if let (Some(f), Some(t)) = (&a.save, &toml_out)
        && f == t
    {
        return bad(format!("--save {}: name the protocol's file something other than .toml", f.display()));
    }
    let board = match plan::load(&a.platform, &a.enable) {
        Ok(b) => b,
        Err(e) => return bad(e),
    };
    let req = Request {
        users,
        cpu,
        size,
        prove_size,
        max_states: a.max_states,
        timeout: a.timeout.map(Duration::from_secs_f64),
    };
    let p = match plan::plan(&board, &req) {
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    let line = match (&a.save, &toml_out) {
        (Some(f), Some(t)) => match save(&board, &p, f, t) {
            Ok(line) => line,
            Err(e) => return bad(e),
        },
        _ => board.platform_line(None, false),
    };
    let mut out = anstream::stdout();
    let _ = match a.format {
        Format::Json => {
            writeln!(out, "{}", serde_json::to_string_pretty(&plan::to_json(&p, &line)).unwrap_or_default())
        }
        Format::Text => write!(out, "{}", plan::to_text(&p, &line)),
    };
    ExitCode::from(match (p.verdict(), p.proved()) {
        (Verdict::CopyFree, true) => 0,
        (Verdict::Refused, _) | (_, false) => 3,
        _ => 1,
    })
}

/// Writes the protocol to `file` (and the platform beside it when no file holds it);
/// returns the platform line the protocol names.
fn save(board: &Board, p: &plan::Plan, file: &Path, toml: &Path) -> Result<String, String> {
    let enabled = matches!(board.source, Source::Enabled { .. });
    let line = if enabled {
        let name = toml.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        std::fs::write(toml, &board.toml).map_err(|e| format!("--save: {}: {e}", toml.display()))?;
        board.platform_line(Some(&name), true)
    } else {
        board.platform_line(None, true)
    };
    if let Some(s) = p.scenario(&line) {
        std::fs::write(file, s).map_err(|e| format!("--save: {}: {e}", file.display()))?;
    }
    Ok(line)
}
