//! A scenario after validation: every name resolved to an index, every range to bytes.
//!
//! The runner executes this, never the syntax tree: a buffer is a [`BufId`], a device the
//! platform's [`DeviceId`], a fence a [`FenceId`]. A name declared again (a `buffer` or a
//! fence inside a `repeat`) keeps its id: the id is the program's variable, and what it
//! holds at run time is the latest object bound to it.

use std::ops::Range;

use dmabuf::ResvUsage;
use dmabuf_sim::{DeviceId, DmaDirection};

use crate::scenario::{Span, Value};

/// A buffer variable of the program (an index into [`Program::buffers`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufId(pub u32);

/// A fence variable of the program (an index into [`Program::fences`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FenceId(pub u32);

impl BufId {
    /// The index into [`Program::buffers`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl FenceId {
    /// The index into [`Program::fences`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A resolved scenario.
#[derive(Clone, Debug)]
pub struct Program {
    /// The names of the buffer variables, by [`BufId`].
    pub buffers: Vec<String>,
    /// The names of the fence variables, by [`FenceId`].
    pub fences: Vec<String>,
    /// The platform's device names, by [`DeviceId`].
    pub devices: Vec<String>,
    /// The steps, in order.
    pub steps: Vec<Stmt>,
}

impl Program {
    /// The scenario's name of a buffer variable.
    pub fn buffer(&self, b: BufId) -> &str {
        &self.buffers[b.index()]
    }

    /// The scenario's name of a fence variable.
    pub fn fence(&self, f: FenceId) -> &str {
        &self.fences[f.index()]
    }

    /// The platform's name of a device.
    pub fn device(&self, d: DeviceId) -> &str {
        &self.devices[d.index()]
    }
}

/// One step and where it is in the source.
#[derive(Clone, Debug)]
pub struct Stmt {
    /// 1-based line.
    pub line: u32,
    /// The step's bytes in the source.
    pub span: Span,
    /// What it does.
    pub cmd: Cmd,
}

/// Where a buffer's memory comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A dma-buf heap, by the kernel's name.
    Heap(String),
    /// A device's local memory (a dynamic exporter).
    Device(DeviceId),
    /// A udmabuf over a sealed memfd.
    Udmabuf,
}

/// The bytes of a buffer a step touches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bytes {
    /// Whose bytes.
    pub buf: BufId,
    /// `[start, end)` in the buffer.
    pub range: Range<u64>,
}

/// What a device job does.
#[derive(Clone, Debug)]
pub enum JobKind {
    /// Reads `src`, optionally checking the bytes.
    Read {
        /// The bytes read.
        src: Bytes,
        /// What they must be.
        expect: Option<Value>,
    },
    /// Writes `value` to `dst`.
    Write {
        /// The bytes written.
        dst: Bytes,
        /// What is written.
        value: Value,
    },
    /// Copies `src` to `dst` (of one length), XORing every byte with `xor`.
    Copy {
        /// The bytes read.
        src: Bytes,
        /// The bytes written.
        dst: Bytes,
        /// 0 for a plain copy, the key of a `transform`.
        xor: u8,
    },
}

impl JobKind {
    /// The buffer the job reads, if any.
    pub fn reads(&self) -> Option<BufId> {
        match self {
            JobKind::Read { src, .. } | JobKind::Copy { src, .. } => Some(src.buf),
            JobKind::Write { .. } => None,
        }
    }

    /// The buffer the job writes, if any.
    pub fn writes(&self) -> Option<BufId> {
        match self {
            JobKind::Write { dst, .. } | JobKind::Copy { dst, .. } => Some(dst.buf),
            JobKind::Read { .. } => None,
        }
    }

    /// The first buffer the job touches (what its findings are filed under).
    pub fn buffer(&self) -> BufId {
        self.reads().or(self.writes()).unwrap_or(BufId(0))
    }
}

/// A device job.
#[derive(Clone, Debug)]
pub struct JobCmd {
    /// The device that runs it.
    pub dev: DeviceId,
    /// What it does.
    pub kind: JobKind,
    /// The fences it waits for before it starts.
    pub after: Vec<FenceId>,
    /// The fence it signals when it completes; `None`: the job is synchronous.
    pub signal: Option<FenceId>,
}

/// A resolved step.
#[derive(Clone, Debug)]
#[allow(missing_docs)] // each variant is the step of the same name in docs/scenario-language.md
pub enum Cmd {
    Alloc { buf: BufId, size: u64, source: Source, source_span: Span, label: Option<String> },
    Attach { dev: DeviceId, buf: BufId, dynamic: bool, p2p: bool, expect_refused: Option<String> },
    Detach { dev: DeviceId, buf: BufId },
    Pin { dev: DeviceId, buf: BufId },
    Unpin { dev: DeviceId, buf: BufId },
    Migrate { buf: BufId, to_device: bool },
    Map { dev: DeviceId, buf: BufId, dir: DmaDirection },
    Unmap { dev: DeviceId, buf: BufId },
    DeviceBegin { dev: DeviceId, bytes: Bytes },
    DeviceEnd { dev: DeviceId, bytes: Bytes },
    DeviceSync { from: DeviceId, to: DeviceId, bytes: Bytes },
    Job(JobCmd),
    CpuBegin { bytes: Bytes, dir: DmaDirection },
    CpuEnd { buf: BufId, dir: DmaDirection },
    CpuRead { bytes: Bytes, expect: Option<Value> },
    CpuWrite { bytes: Bytes, value: Value },
    Vmap { buf: BufId },
    Vunmap { buf: BufId },
    ImporterVmap { dev: DeviceId, buf: BufId },
    ImporterVunmap { dev: DeviceId, buf: BufId },
    Mmap { buf: BufId },
    Munmap { buf: BufId },
    Sync { buf: BufId, flags: u64 },
    SetName { buf: BufId, name: String },
    Fence { fence: FenceId },
    Signal { fence: FenceId },
    Wait { fences: Vec<FenceId> },
    Export { buf: BufId, write: bool, fence: FenceId },
    Import { fence: FenceId, buf: BufId, write: bool },
    ResvAdd { buf: BufId, fence: FenceId, usage: ResvUsage },
    Release { buf: BufId },
    Repeat { count: u64, body: Vec<Stmt> },
}

impl Cmd {
    /// The buffer the step is about, for the sanitizer's bookkeeping and its findings.
    pub fn buffer(&self) -> Option<BufId> {
        Some(match self {
            Cmd::Alloc { buf, .. }
            | Cmd::Attach { buf, .. }
            | Cmd::Detach { buf, .. }
            | Cmd::Pin { buf, .. }
            | Cmd::Unpin { buf, .. }
            | Cmd::Migrate { buf, .. }
            | Cmd::Map { buf, .. }
            | Cmd::Unmap { buf, .. }
            | Cmd::CpuEnd { buf, .. }
            | Cmd::Vmap { buf }
            | Cmd::Vunmap { buf }
            | Cmd::ImporterVmap { buf, .. }
            | Cmd::ImporterVunmap { buf, .. }
            | Cmd::Mmap { buf }
            | Cmd::Munmap { buf }
            | Cmd::Sync { buf, .. }
            | Cmd::SetName { buf, .. }
            | Cmd::Export { buf, .. }
            | Cmd::Import { buf, .. }
            | Cmd::ResvAdd { buf, .. }
            | Cmd::Release { buf } => *buf,
            Cmd::DeviceBegin { bytes, .. }
            | Cmd::DeviceEnd { bytes, .. }
            | Cmd::DeviceSync { bytes, .. }
            | Cmd::CpuBegin { bytes, .. }
            | Cmd::CpuRead { bytes, .. }
            | Cmd::CpuWrite { bytes, .. } => bytes.buf,
            Cmd::Job(j) => j.kind.buffer(),
            Cmd::Fence { .. } | Cmd::Signal { .. } | Cmd::Wait { .. } | Cmd::Repeat { .. } => return None,
        })
    }
}

/// The DMA direction of a scenario direction word.
pub(crate) fn dma_dir(d: crate::scenario::Dir) -> DmaDirection {
    match d {
        crate::scenario::Dir::ToDevice => DmaDirection::ToDevice,
        crate::scenario::Dir::FromDevice => DmaDirection::FromDevice,
        crate::scenario::Dir::Bidirectional => DmaDirection::Bidirectional,
    }
}
