//! `dmabuf platforms import` and `dmabuf platforms check`: boards' device trees in, and
//! platform files validated.

use std::path::PathBuf;
use std::process::ExitCode;

use dmabuf_sim::Platform;

/// `dmabuf platforms import BOARD.dtb`.
#[derive(clap::Args)]
pub struct ImportArgs {
    /// The board's device tree blob (.dtb) to import.
    file: PathBuf,
}

/// `dmabuf platforms check FILE`.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// A platform TOML file or a device tree blob (`.dtb`).
    file: PathBuf,
}

/// Prints the board as a commented platform TOML; exit 2 when the blob cannot be read.
pub fn import(a: ImportArgs) -> ExitCode {
    match dmabuf_dt::import_path(&a.file) {
        Ok(i) => {
            print!("{}", i.to_commented_toml());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Validates a TOML or a DTB: 0 valid (with a one-line summary), 2 invalid (the file,
/// line and rule on stderr).
pub fn check(a: CheckArgs) -> ExitCode {
    let is_dtb = a.file.extension().is_some_and(|e| e == "dtb");
    let r = if is_dtb { dmabuf_dt::import_file(&a.file) } else { Platform::from_file(&a.file) };
    match r {
        Ok(p) => {
            println!(
                "{}: valid: platform `{}`, {} regions, {} devices, {} IOMMUs",
                a.file.display(),
                p.name,
                p.regions.len(),
                p.devices.len(),
                p.iommus.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
