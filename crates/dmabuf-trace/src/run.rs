//! Running a program under the interposer: a pipe for the log at fd [`LOG_FD`] in the
//! child, `LD_PRELOAD` and `DMABUF_RECORD_FD` in its environment, its records read as
//! they come until every process that holds the pipe has exited.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::log::{LogError, Record};

/// The log's fd in the recorded program (high, out of the way of the program's own).
pub const LOG_FD: i32 = 1000;

/// Why a recording could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The interposer library was not found.
    #[error(
        "the interposer libdmabuf_record.so was not found (looked in {0}); build it with `cargo build -p dmabuf-record`, or set DMABUF_RECORD_LIB"
    )]
    NoInterposer(String),
    /// The program was not found or is not executable.
    #[error("{0}: no such program")]
    NoProgram(String),
    /// The program is statically linked: `LD_PRELOAD` cannot reach it.
    #[error("{0} is statically linked: an LD_PRELOAD interposer cannot see its system calls")]
    Static(String),
    /// The program could not be started.
    #[error("cannot run {0}: {1}")]
    Spawn(String, std::io::Error),
    /// The log could not be read.
    #[error("reading the log: {0}")]
    Io(#[from] std::io::Error),
    /// A log line was malformed.
    #[error("the interposer's log, {0}")]
    Log(#[from] LogError),
}

/// The interposer: `DMABUF_RECORD_LIB`, or `libdmabuf_record.so` beside the running
/// executable (where cargo builds both).
pub fn find_interposer() -> Result<PathBuf, RunError> {
    if let Some(p) = std::env::var_os("DMABUF_RECORD_LIB") {
        let p = PathBuf::from(p);
        return if p.is_file() { Ok(p) } else { Err(RunError::NoInterposer(p.display().to_string())) };
    }
    let exe = std::env::current_exe()?;
    let mut looked = Vec::new();
    for dir in exe.ancestors().skip(1).take(2) {
        let p = dir.join("libdmabuf_record.so");
        if p.is_file() {
            return Ok(p);
        }
        looked.push(dir.display().to_string());
    }
    Err(RunError::NoInterposer(looked.join(", ")))
}

/// The program's path, looked up in `PATH` like a shell would.
fn resolve(prog: &Path) -> Option<PathBuf> {
    if prog.components().count() > 1 {
        return prog.is_file().then(|| prog.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(prog)).find(|p| p.is_file())
}

/// Whether an ELF file has no program interpreter (statically linked). Not an ELF (a
/// script): false, its interpreter is what runs.
fn is_static(path: &Path) -> bool {
    let Ok(b) = std::fs::read(path) else { return false };
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().unwrap_or([0; 8])) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).all(|i| {
        let o = phoff + i * size;
        o + 4 > b.len() || u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4])) != 3 // PT_INTERP
    })
}

/// How a recorded program ended.
pub struct Outcome {
    /// Its records, in time order.
    pub records: Vec<Record>,
    /// Its exit status as a shell reports it (128 + N for signal N).
    pub status: i32,
    /// The raw log, as written.
    pub raw: String,
}

/// Runs `command` under the interposer at `lib`; `each` sees every record as it arrives.
pub fn record(lib: &Path, command: &[OsString], each: &mut dyn FnMut(&Record)) -> Result<Outcome, RunError> {
    let prog = Path::new(&command[0]);
    let path = resolve(prog).ok_or_else(|| RunError::NoProgram(prog.display().to_string()))?;
    if is_static(&path) {
        return Err(RunError::Static(path.display().to_string()));
    }
    let (reader, writer) = std::io::pipe()?;
    let mut preload = OsString::from(lib.canonicalize()?);
    if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|o| !o.is_empty()) {
        preload.push(" ");
        preload.push(old);
    }
    let wfd = std::os::fd::AsRawFd::as_raw_fd(&writer);
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]).env("LD_PRELOAD", preload).env("DMABUF_RECORD_FD", LOG_FD.to_string());
    // SAFETY: between fork and exec, dup2 is async-signal-safe; it puts the log's write
    // end at LOG_FD without FD_CLOEXEC, so the program (and its children) inherit it.
    unsafe {
        cmd.pre_exec(move || if libc::dup2(wfd, LOG_FD) < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) });
    }
    let mut child = cmd.spawn().map_err(|e| RunError::Spawn(prog.display().to_string(), e))?;
    drop(writer);
    let (tx, rx) = mpsc::channel::<std::io::Result<String>>();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut raw = String::new();
    let mut records = Vec::new();
    let mut status = None;
    // When the program exited or the last line came, whichever is later.
    let mut quiet_since: Option<Instant> = None;
    let mut n = 0;
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => {
                if quiet_since.is_some() {
                    quiet_since = Some(Instant::now());
                }
                let line = line?;
                n += 1;
                let r = Record::parse(&line, n)?;
                each(&r);
                raw.push_str(&line);
                raw.push('\n');
                records.push(r);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            // A descendant that outlives the program and keeps the pipe: stop once the
            // program has exited and nothing has come for 2 s. Never while lines are
            // still coming: handling one (symbolizing a backtrace) can take seconds on a
            // slow machine, and the lines behind it were lost when the clock ran from
            // the exit.
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if quiet_since.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
                    break;
                }
            }
        }
        if status.is_none()
            && let Some(s) = child.try_wait()?
        {
            status = Some(s);
            quiet_since = Some(Instant::now());
        }
    }
    let status = match status {
        Some(s) => s,
        None => child.wait()?,
    };
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    records.sort_by_key(|r| (r.t, r.line));
    Ok(Outcome { records, status: code, raw })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_program_is_not_static() {
        assert!(!is_static(Path::new("/bin/sh")));
        assert!(!is_static(Path::new("/nonexistent")));
    }

    #[test]
    fn a_missing_program_is_named() {
        let e = record(Path::new("/bin/true"), &[OsString::from("/no/such/prog")], &mut |_| {});
        assert!(matches!(e, Err(RunError::NoProgram(p)) if p == "/no/such/prog"));
    }
}
