//! What the sanitizer reports: findings, their kinds and severities, and the accesses
//! they are about.

use std::ops::Range;

use super::VClock;

/// What kind of problem a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FindingKind {
    /// A read returned an older value although a newer write happens before it.
    StaleRead,
    /// A write's value can no longer be read anywhere, though nothing replaced it.
    LostWrite,
    /// Two accesses to the same bytes, one a write, with no happens-before between them.
    Race,
    /// A protocol violation (the DMA-API-debug class and the dma-buf rules).
    Misuse,
    /// Attach refused a device (under the `Strict` policy), or the importing driver
    /// refused the buffer when it mapped it.
    AttachRefused,
    /// An attach that a rule refuses, let through as upstream does: what goes wrong
    /// follows from it.
    AttachUnsafe,
    /// A dynamic exporter moved the buffer to suit an importer (reported under the strict
    /// rules: the exporting device now reaches its buffer across the bus).
    Migrated,
    /// A scenario's `expect` did not hold and no other finding explains why.
    ExpectFailed,
}

impl FindingKind {
    /// The name used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            FindingKind::StaleRead => "stale_read",
            FindingKind::LostWrite => "lost_write",
            FindingKind::Race => "race",
            FindingKind::Misuse => "misuse",
            FindingKind::AttachRefused => "attach_refused",
            FindingKind::AttachUnsafe => "attach_unsafe",
            FindingKind::Migrated => "migrated",
            FindingKind::ExpectFailed => "expect_failed",
        }
    }
}

/// A scenario line taking part in a finding, and its role.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Involved {
    /// 1-based line.
    pub line: u32,
    /// What it did in the finding: "wrote the expected bytes", "read", ...
    pub role: String,
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// What kind of problem.
    pub kind: FindingKind,
    /// The buffer (the scenario's name).
    pub buffer: String,
    /// The bytes, `[start, end)`, of the first occurrence.
    pub range: [u64; 2],
    /// The agents involved (`cpu`, device names).
    pub agents: Vec<String>,
    /// The line the finding is reported at (the read, the second access, the misuse).
    pub line: u32,
    /// Every line involved, with its role.
    pub steps: Vec<Involved>,
    /// What happened.
    pub message: String,
    /// What to do about it.
    pub hint: String,
    /// How many times it happened.
    pub count: u64,
    /// Which kernels it holds for: upstream Linux (`definite`), or only a kernel that does
    /// no more than the DMA API promises (`latent`).
    pub severity: Severity,
    /// Findings that follow from this one (a stale read of bytes written outside a
    /// bracket, a failed expect it explains), listed under it rather than beside it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub consequences: Vec<Finding>,
}

/// Which kernels a finding holds for (docs/verdicts.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Broken on this platform with upstream Linux's maintenance.
    Definite,
    /// Correct today only because upstream over-maintains: broken under the minimal
    /// conforming implementation (a kernel that does only what the DMA API promises).
    Latent,
}

impl Severity {
    /// The name in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Definite => "definite",
            Severity::Latent => "latent",
        }
    }
}

/// How an access reached the bytes, for the hints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// The CPU through the kernel mapping (vmap), `bracketed` if inside
    /// begin/end_cpu_access.
    Kernel {
        /// Inside a bracket.
        bracketed: bool,
    },
    /// The CPU through a user-space mmap, `bracketed` if inside the sync ioctl.
    User {
        /// Inside a bracket.
        bracketed: bool,
    },
    /// A device job through its mapping.
    Device {
        /// Whether the device snoops the CPU caches.
        coherent: bool,
        /// The line where the device mapped the buffer (0 when unknown).
        mapped_at: u32,
    },
}

/// An access as the program declares it to the sanitizer.
#[derive(Clone, Debug)]
pub struct AccessInfo {
    /// `cpu` or the device's name.
    pub agent: String,
    /// The happens-before thread: 0 for the CPU, `d + 1` for device `d`'s queue.
    pub thread: usize,
    /// The clock of the access (the thread's, or the job's).
    pub clock: VClock,
    /// The scenario's name of the buffer accessed, as findings print it.
    pub buffer: String,
    /// The bytes accessed, `[start, end)` in the buffer.
    pub range: Range<u64>,
    /// A write (else a read).
    pub write: bool,
    /// The scenario line (or any step number a Rust program uses).
    pub line: u32,
    /// How it reached the bytes.
    pub path: Path,
    /// The iteration of the innermost loop it ran in (1-based), if it ran in one.
    pub iteration: Option<u64>,
}

impl AccessInfo {
    /// Where it is in the program, for messages: `line 15`, or `line 15 (iteration 3)`
    /// inside a loop, so that two iterations of one line read apart.
    pub fn at(&self) -> String {
        match self.iteration {
            Some(i) => format!("line {} (iteration {i})", self.line),
            None => format!("line {}", self.line),
        }
    }

    fn epoch(&self) -> u32 {
        self.clock.get(self.thread)
    }

    pub(super) fn hb(&self, later: &AccessInfo) -> bool {
        self.epoch() <= later.clock.get(self.thread)
    }
}

/// `[0x0..0x1000)`.
pub fn fmt_range(r: &Range<u64>) -> String {
    format!("[{:#x}..{:#x})", r.start, r.end)
}

/// The step that was missing between a write and a stale read of it.
pub(super) fn hint_for(w: &AccessInfo, r: &AccessInfo) -> String {
    let b = &w.buffer;
    match (w.path, r.path) {
        (Path::User { bracketed: false }, _) => format!(
            "the write at line {} is outside a sync bracket: put `sync {b} start write` before it and `sync {b} end write` after it, before line {}",
            w.line, r.line
        ),
        (Path::Kernel { bracketed: false }, _) => format!(
            "the write at line {} is outside a CPU bracket: put `cpu begin {b} write` before it and `cpu end {b} write` after it, before line {}",
            w.line, r.line
        ),
        (Path::Kernel { .. } | Path::User { .. }, Path::Device { mapped_at, .. }) if mapped_at > w.line => format!(
            "end the CPU's write bracket before {} maps {b}: `cpu end {b} write` (or `sync {b} end write`) before line {mapped_at}",
            r.agent
        ),
        (Path::Kernel { .. } | Path::User { .. }, Path::Device { .. }) => format!(
            "{} keeps {b} mapped while the CPU writes it: end the CPU's write bracket (`cpu end {b} write` / `sync {b} end write`) before line {}, and bracket the device's use with `{} begin {b}` / `{} end {b}`",
            r.agent, r.line, r.agent, r.agent
        ),
        (Path::Device { .. }, Path::User { bracketed: false }) => format!(
            "the read at line {} is outside a sync bracket: put `sync {b} start read` before it (after {} unmapped or ended its access)",
            r.line, w.agent
        ),
        (Path::Device { .. }, Path::Kernel { bracketed: false }) => format!(
            "the read at line {} is outside a CPU bracket: put `cpu begin {b} read` before it (after {} unmapped or ended its access)",
            r.line, w.agent
        ),
        (Path::Device { .. }, Path::Kernel { .. } | Path::User { .. }) => format!(
            "{} must hand the bytes over before the CPU looks: `unmap {} {b}` (or `{} end {b}` for a kept mapping) before the bracket that contains line {}",
            w.agent, w.agent, w.agent, r.line
        ),
        (Path::Kernel { .. } | Path::User { .. }, Path::Kernel { .. } | Path::User { .. }) => format!(
            "the CPU wrote {b} through one mapping and read it through another: end the write bracket (`cpu end {b} write` / `sync {b} end write`) before line {}, so write-combined stores drain and cached lines reach memory",
            r.line
        ),
        (Path::Device { .. }, Path::Device { .. }) => format!(
            "hand the bytes from {} to {}: `{} sync {b} to {}` before line {}, or unmap and map again",
            w.agent, r.agent, w.agent, r.agent, r.line
        ),
    }
}
