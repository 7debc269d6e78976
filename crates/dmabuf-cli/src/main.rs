//! `dmabuf`: check DMA-buf sharing scenarios on modelled platforms.
//!
//! A thin front end over `dmabuf-check`: it parses flags, reads files, prints reports.
//! Its flags, exit statuses and JSON are a contract scripts depend on:
//!
//! - `dmabuf check FILE...`: 0 no findings, 1 findings, 2 bad input or usage;
//! - `dmabuf platforms`, `dmabuf platforms show NAME`, `import BOARD.dtb`, `check FILE`;
//! - `dmabuf bench [--format text|json] [--svg FILE]`: 0 no findings, 1 findings, 2 usage;
//! - `dmabuf plan --platform BOARD --user DEVICE:ACCESS[:kept]... [--cpu ACCESS]`: 0 a
//!   copy-free plan, 1 only a fallback, 2 bad input, 3 no proved protocol;
//! - `dmabuf completions SHELL`, `dmabuf man`: the shell completions and the man page,
//!   generated from these definitions.
#![deny(missing_docs)]

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

mod bench;
mod check;
mod explore;
mod io;
mod plan;
mod platforms;
mod record;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use dmabuf::AttachPolicy;
use dmabuf::MaintenancePolicy;
use dmabuf_check::report::{FileReport, Styles, to_json, to_text};
use dmabuf_check::runner::RunConfig;
use dmabuf_check::scenario::parse_file;
use dmabuf_check::verdict::CheckConfig;
use dmabuf_sim::{ByteSize, Platform};

// Counts what the process holds, so that runs stop at --max-memory instead of aborting
// when the allocator fails.
#[global_allocator]
static ALLOC: dmabuf_check::memory::CountingAlloc = dmabuf_check::memory::CountingAlloc;

#[derive(Parser)]
#[command(name = "dmabuf", version, about = "Check DMA-buf sharing for cache coherency on modelled platforms")]
struct Cli {
    /// When to colour reports and errors: `auto` (on a terminal, unless NO_COLOR is set),
    /// `always`, `never`.
    #[arg(long, value_enum, global = true, default_value = "auto")]
    color: io::ColorArg,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run scenarios with the sanitizer and report stale reads, lost writes, races and
    /// misuse. Exit status: 0 no findings, 1 findings, 2 bad input.
    Check(check::CheckArgs),
    /// Explore every choice the hardware may make and every order of unordered jobs:
    /// proved, or a counterexample saved as a replay file. Exit status: 0 proved,
    /// 1 counterexample, 2 bad input, 3 inconclusive (a bound was reached).
    Explore {
        #[command(flatten)]
        args: explore::ExploreArgs,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// The maintenance benchmark: a suite of pipelines under the Linux and Minimal
    /// policies against the oracle's minimum (bytes, operations, cycles, ratios,
    /// findings). Exit status: 0 no findings, 1 findings, 2 bad usage.
    Bench(bench::BenchArgs),
    /// Run a program under the interposer and write what it did with dma-bufs as a
    /// scenario. Exit status: the program's; 125 if recording failed.
    Record(record::RecordArgs),
    /// Choose where a buffer shared by devices and the CPU lives, print the protocol that
    /// shares it and prove it. Exit status: 0 copy-free and proved, 1 only a fallback
    /// (a bounce, a copy), proved, 2 bad input, 3 no proved protocol.
    Plan(plan::PlanArgs),
    /// List the platform presets, or print one as TOML.
    Platforms {
        #[command(subcommand)]
        cmd: Option<PlatformsCmd>,
    },
    /// Print a completion script for a shell (bash, zsh, fish, elvish, powershell), from
    /// the command's own definitions.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the command's man page (roff), from its own definitions: `dmabuf man >
    /// dmabuf.1`, then `man ./dmabuf.1`.
    Man,
}

#[derive(Subcommand)]
enum PlatformsCmd {
    /// Print a preset as TOML (a starting point for a platform file of your own).
    Show {
        /// The preset's name, as `dmabuf platforms` lists it.
        name: String,
    },
    /// Print a board's device tree (a .dtb) as a platform TOML, each fact with its node.
    Import(platforms::ImportArgs),
    /// Validate a platform file (TOML or .dtb). Exit status: 0 valid, 2 invalid.
    Check(platforms::CheckArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum AttachArg {
    /// Refuse at attach what cannot work.
    Strict,
    /// Accept everything, as upstream does.
    Linux,
}

#[derive(Clone, Copy, ValueEnum)]
enum MaintArg {
    /// Only the ranges declared written, only for non-coherent parties.
    Minimal,
    /// Whole-buffer syncs for every mapped attachment, as the system heap does.
    Linux,
    /// Linux with Rockchip's ranged brackets (DMA_BUF_IOCTL_SYNC_PARTIAL, the heaps'
    /// begin_cpu_access_partial), as its BSP kernel has them.
    Vendor,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum Format {
    /// For people.
    Text,
    /// For scripts.
    Json,
}

#[derive(clap::Args)]
pub(crate) struct PolicyArgs {
    /// Attach policy. `check` defaults to upstream's (accept, and report what a rule
    /// refuses); `explore` to strict.
    #[arg(long, value_enum)]
    attach_policy: Option<AttachArg>,
    /// One maintenance implementation. `check` defaults to both, each finding classified
    /// definite (upstream Linux) or latent (only the minimal implementation); `explore` to
    /// minimal.
    #[arg(long, value_enum)]
    maintenance: Option<MaintArg>,
    /// Platform preset name, TOML file or device tree (.dtb), overriding the scenario's.
    #[arg(long)]
    platform: Option<String>,
    /// The most memory a run may hold (`512MiB`, `4GiB`); past it `check` stops with exit
    /// 2 and `explore` ends inconclusive (exit 3). Default: three quarters of the
    /// process's address-space limit (`ulimit -v`) or of the machine's memory, whichever
    /// is smaller.
    #[arg(long, value_parser = parse_size)]
    max_memory: Option<u64>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    ByteSize::parse(s).map(|b| b.0)
}

/// Three quarters of what the process may map or the machine has, whichever is less;
/// none if neither is known.
fn default_max_memory() -> Option<u64> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::As).current;
    let info = rustix::system::sysinfo();
    let ram = (info.totalram as u64).checked_mul(u64::from(info.mem_unit)).filter(|&r| r > 0);
    let least = match (limit, ram) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    Some(least / 4 * 3)
}

impl PolicyArgs {
    fn attach(&self) -> Option<AttachPolicy> {
        self.attach_policy.map(|a| match a {
            AttachArg::Strict => AttachPolicy::Strict,
            AttachArg::Linux => AttachPolicy::Linux,
        })
    }

    fn maintenance(&self) -> Option<MaintenancePolicy> {
        self.maintenance.map(|m| match m {
            MaintArg::Minimal => MaintenancePolicy::Minimal,
            MaintArg::Linux => MaintenancePolicy::Linux,
            MaintArg::Vendor => MaintenancePolicy::Vendor,
        })
    }

    /// One run's configuration (the explorer's and a replay's): strict attach and the
    /// minimal implementation unless told otherwise.
    fn config(&self, chooser: &str) -> RunConfig {
        RunConfig {
            chooser: chooser.to_string(),
            attach: self.attach().unwrap_or(AttachPolicy::Strict),
            maintenance: self.maintenance().unwrap_or(MaintenancePolicy::Minimal),
            platform: self.platform.clone(),
            max_memory: self.max_memory(),
        }
    }

    fn max_memory(&self) -> Option<u64> {
        self.max_memory.or_else(default_max_memory)
    }

    /// A check's configuration.
    pub(crate) fn check_config(&self, chooser: &str) -> CheckConfig {
        CheckConfig {
            chooser: chooser.to_string(),
            platform: self.platform.clone(),
            attach: self.attach(),
            maintenance: self.maintenance(),
            max_memory: self.max_memory(),
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    cli.color.apply();
    match cli.cmd {
        Cmd::Check(a) => check::run(a),
        Cmd::Explore { args, policy } => explore::run(args, policy.config("explore")),
        Cmd::Platforms { cmd } => platforms(cmd),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Record(a) => record::run(a),
        Cmd::Plan(a) => plan::run(a),
        Cmd::Completions { shell } => {
            // Into memory first: clap_complete panics on a failed write (a closed pipe).
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "dmabuf", &mut out);
            let _ = std::io::stdout().write_all(&out);
            ExitCode::SUCCESS
        }
        Cmd::Man => {
            let mut out = Vec::new();
            match clap_mangen::Man::new(Cli::command()).render(&mut out) {
                Ok(()) => {
                    let _ = std::io::stdout().write_all(&out);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: cannot render the man page: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn platforms(cmd: Option<PlatformsCmd>) -> ExitCode {
    match cmd {
        None => {
            for name in Platform::preset_names() {
                let desc = Platform::preset(name).map(|p| p.description).unwrap_or_default();
                println!("{name:<20} {desc}");
            }
            ExitCode::SUCCESS
        }
        Some(PlatformsCmd::Import(a)) => platforms::import(a),
        Some(PlatformsCmd::Check(a)) => platforms::check(a),
        Some(PlatformsCmd::Show { name }) => match Platform::preset(&name) {
            Ok(p) => {
                print!("{}", p.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// `dmabuf check --replay FILE`: one path of `dmabuf explore`, deterministically.
pub(crate) fn check_replay(path: &Path, format: Format) -> ExitCode {
    use dmabuf_check::explore::{ReplayMismatch, replay};
    use dmabuf_check::replay::Replay;
    let bad = |line: usize, message: &dyn std::fmt::Display| {
        // Line 0: the file as a whole (it cannot be read).
        match line {
            0 => eprintln!("error: {}: {message}", path.display()),
            _ => eprintln!("error: {}:{line}: {message}", path.display()),
        }
        ExitCode::from(2)
    };
    let r = match Replay::load(path) {
        Ok(r) => r,
        Err(e) => return bad(e.line, &e.message),
    };
    let file = r.scenario_path(path);
    let cfg = RunConfig { max_memory: default_max_memory(), ..r.run_config(path) };
    let (s, src) = match parse_file(&file) {
        Ok(x) => x,
        Err(e) => {
            report_error(e);
            return ExitCode::from(2);
        }
    };
    let (result, moves) = match replay(&s, &file, &src, &cfg, r.line, &r.choices) {
        Ok(x) => x,
        Err(ReplayMismatch::Run(e)) => {
            report_error(e);
            return ExitCode::from(2);
        }
        Err(e @ ReplayMismatch::Line { .. }) => {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            return bad(Replay::line_of(&text, "line"), &e);
        }
        Err(e) => {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            return bad(Replay::line_of(&text, "choices"), &e);
        }
    };
    let name = file.display().to_string();
    let report = FileReport { file: &name, src: &src, result: &result };
    let mut out = anstream::stdout();
    match format {
        Format::Json => {
            let mut v = to_json(&[report]);
            v["moves"] = serde_json::json!(moves);
            let _ = writeln!(out, "{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        Format::Text => {
            for m in &moves {
                let _ = writeln!(out, "hardware, at line {}: {}", m.line, m.what);
            }
            // anstream drops the colours where --color and the terminal say so.
            let _ = write!(out, "{}", to_text(&report, Styles::colored()));
        }
    }
    ExitCode::from(u8::from(!result.findings.is_empty()))
}

pub(crate) fn report_error(e: impl miette::Diagnostic + Send + Sync + 'static) {
    eprintln!("{:?}", miette::Report::new(e));
}
