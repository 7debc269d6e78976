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
    /// 1-based line of the step's first token, which findings cite.
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
    /// The buffer variable the bytes belong to.
    pub buf: BufId,
    /// `[start, end)` in the buffer.
    pub range: Range<u64>,
}

impl Bytes {
    /// How many bytes.
    pub fn len(&self) -> u64 {
        self.range.end - self.range.start
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }
}

/// What a device job does.
#[derive(Clone, Debug)]
pub enum JobKind {
    /// Reads `src`, optionally checking the bytes.
    Read {
        /// The buffer and range the device reads.
        src: Bytes,
        /// `expect VALUE`: what every byte must be.
        expect: Option<Value>,
    },
    /// Writes `value` to `dst`.
    Write {
        /// The buffer and range the device writes.
        dst: Bytes,
        /// What it stores in every byte.
        value: Value,
    },
    /// Copies `src` to `dst` (of one length), XORing every byte with `xor`.
    Copy {
        /// The buffer and range the device reads.
        src: Bytes,
        /// The buffer and range it writes the bytes to, as long as `src`.
        dst: Bytes,
        /// 0 for a plain copy, the key of a `transform`.
        xor: u8,
    },
}

impl JobKind {
    /// The bytes the job moves: read, written, or both for a copy.
    pub fn bytes_moved(&self) -> u64 {
        match self {
            JobKind::Read { src, .. } => src.len(),
            JobKind::Write { dst, .. } => dst.len(),
            JobKind::Copy { src, dst, .. } => src.len() + dst.len(),
        }
    }

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

/// A resolved step: one variant per step of `docs/scenario-language.md`, named after it.
#[derive(Clone, Debug)]
pub enum Cmd {
    /// `buffer`: allocates from a heap (`DMA_HEAP_IOCTL_ALLOC`), a device's local memory, or
    /// `UDMABUF_CREATE` over a sealed memfd.
    Alloc {
        /// The buffer variable the new buffer is bound to (the old one is released).
        buf: BufId,
        /// Its size in bytes, not zero.
        size: u64,
        /// Where its memory comes from.
        source: Source,
        /// The `heap=`, `device=` or `udmabuf` word, for a refused allocation's caret.
        source_span: Span,
        /// `name="..."`: set with `DMA_BUF_SET_NAME` once allocated.
        label: Option<String>,
    },
    /// `attach`: `dma_buf_attach`, or `dma_buf_dynamic_attach` for a `dynamic` importer.
    Attach {
        /// The importing device.
        dev: DeviceId,
        /// The buffer it imports.
        buf: BufId,
        /// `dynamic`: the importer has `move_notify` and does not pin.
        dynamic: bool,
        /// `p2p`: the importer accepts peer-to-peer addresses.
        p2p: bool,
        /// `expect refused RULE`: the name of the attach rule that must refuse, checked
        /// against the framework's rules when lowered.
        expect_refused: Option<String>,
    },
    /// `detach`: `dma_buf_detach`.
    Detach {
        /// The importer whose attachment goes.
        dev: DeviceId,
        /// The buffer it was attached to.
        buf: BufId,
    },
    /// `pin`: `dma_buf_pin`.
    Pin {
        /// The importer whose attachment pins the buffer.
        dev: DeviceId,
        /// The buffer pinned where it is.
        buf: BufId,
    },
    /// `unpin`: `dma_buf_unpin`.
    Unpin {
        /// The importer whose pin is dropped.
        dev: DeviceId,
        /// The buffer it had pinned.
        buf: BufId,
    },
    /// `migrate`: the dynamic exporter moves the buffer, and its importers get `move_notify`.
    Migrate {
        /// The dynamic exporter's buffer.
        buf: BufId,
        /// `to device` (the exporter's local memory) rather than `to system`.
        to_device: bool,
    },
    /// `map`: `dma_buf_map_attachment`.
    Map {
        /// The importer whose attachment is mapped.
        dev: DeviceId,
        /// The buffer mapped for it.
        buf: BufId,
        /// The direction of the mapping.
        dir: DmaDirection,
    },
    /// `unmap`: `dma_buf_unmap_attachment`.
    Unmap {
        /// The importer whose mapping goes.
        dev: DeviceId,
        /// The buffer it had mapped.
        buf: BufId,
    },
    /// `DEV begin`: the device-side begin of access of an importer that keeps its mapping.
    DeviceBegin {
        /// The importer that begins access.
        dev: DeviceId,
        /// The bytes it will access.
        bytes: Bytes,
    },
    /// `DEV end`: the device-side end of access.
    DeviceEnd {
        /// The importer that has finished.
        dev: DeviceId,
        /// The bytes it accessed.
        bytes: Bytes,
    },
    /// `FROM sync ... to TO`: `sync_device_to_device`.
    DeviceSync {
        /// The device that wrote the bytes.
        from: DeviceId,
        /// The device that reads them next.
        to: DeviceId,
        /// The bytes handed over.
        bytes: Bytes,
    },
    /// `DEV read|write|copy|transform`: a job submitted to the device.
    Job(JobCmd),
    /// `cpu begin`: `dma_buf_begin_cpu_access`, or `dma_buf_begin_cpu_access_partial` for a
    /// range.
    CpuBegin {
        /// The bytes the CPU will access (the whole buffer without a range).
        bytes: Bytes,
        /// The direction of the access.
        dir: DmaDirection,
        /// Declared to overwrite its range whole (a `to_device` bracket).
        overwrite: bool,
    },
    /// `cpu end`: `dma_buf_end_cpu_access`.
    CpuEnd {
        /// The buffer whose bracket ends.
        buf: BufId,
        /// The direction passed to the call.
        dir: DmaDirection,
    },
    /// `cpu read`: loads through the user mapping if there is one, else the kernel's.
    CpuRead {
        /// The bytes the CPU reads.
        bytes: Bytes,
        /// `expect VALUE`: what every byte must be.
        expect: Option<Value>,
    },
    /// `cpu write`: stores through the user mapping if there is one, else the kernel's.
    CpuWrite {
        /// The bytes the CPU writes.
        bytes: Bytes,
        /// What it stores in every byte.
        value: Value,
    },
    /// `vmap`: `dma_buf_vmap`.
    Vmap {
        /// The buffer the exporter maps into the kernel.
        buf: BufId,
    },
    /// `vunmap`: `dma_buf_vunmap`.
    Vunmap {
        /// The buffer whose kernel mapping goes.
        buf: BufId,
    },
    /// `DEV vmap`: the importing driver's own cacheable mapping of the pages (`vm_map_ram`).
    ImporterVmap {
        /// The importer whose driver maps the pages.
        dev: DeviceId,
        /// The buffer whose pages it maps.
        buf: BufId,
    },
    /// `DEV vunmap`: `vm_unmap_ram` of that mapping.
    ImporterVunmap {
        /// The importer whose own mapping goes.
        dev: DeviceId,
        /// The buffer it had mapped.
        buf: BufId,
    },
    /// `mmap`: `mmap` of the dma-buf's file descriptor.
    Mmap {
        /// The buffer mapped into the process.
        buf: BufId,
    },
    /// `munmap`: `munmap` of that mapping.
    Munmap {
        /// The buffer whose user-space mapping goes.
        buf: BufId,
    },
    /// `sync`: `DMA_BUF_IOCTL_SYNC`, or `DMA_BUF_IOCTL_SYNC_PARTIAL` over a range.
    Sync {
        /// The buffer whose user-space access the ioctl brackets.
        buf: BufId,
        /// `dma_buf_sync.flags`, as passed, refused ones included.
        flags: u64,
        /// The bytes of `DMA_BUF_IOCTL_SYNC_PARTIAL` (`offset`, `offset + len`), which
        /// fit its 32-bit fields; `None` for `DMA_BUF_IOCTL_SYNC`.
        partial: Option<Range<u64>>,
    },
    /// `set_name`: `DMA_BUF_SET_NAME`.
    SetName {
        /// The buffer named.
        buf: BufId,
        /// The new name.
        name: String,
    },
    /// `fence`: a new software fence, standing for a `sw_sync` point
    /// (`SW_SYNC_IOC_CREATE_FENCE`).
    Fence {
        /// The fence variable it is bound to.
        fence: FenceId,
    },
    /// `signal`: the CPU signals a software fence, as `SW_SYNC_IOC_INC` does a `sw_sync` point.
    Signal {
        /// The fence variable of the fence signalled.
        fence: FenceId,
    },
    /// `wait`: the CPU waits for the fences one after another (`dma_fence_wait`).
    Wait {
        /// The fence variables waited for, in order.
        fences: Vec<FenceId>,
    },
    /// `export`: `DMA_BUF_IOCTL_EXPORT_SYNC_FILE`.
    Export {
        /// The buffer whose reservation object's fences are exported.
        buf: BufId,
        /// `write` (or `rw`): every user's fences; else only the writers'.
        write: bool,
        /// The fence variable the sync file's fence is bound to.
        fence: FenceId,
    },
    /// `import`: `DMA_BUF_IOCTL_IMPORT_SYNC_FILE`.
    Import {
        /// The fence variable of the fence imported.
        fence: FenceId,
        /// The buffer whose reservation object receives it.
        buf: BufId,
        /// `write` (or `rw`): added as a write fence; else as a read fence.
        write: bool,
    },
    /// `resv ... add`: `dma_resv_add_fence`, a container's fences one by one.
    ResvAdd {
        /// The buffer whose reservation object receives the fence.
        buf: BufId,
        /// The fence variable of the fence added.
        fence: FenceId,
        /// The usage it is added with.
        usage: ResvUsage,
    },
    /// `release`: the scenario drops its reference to the buffer (`dma_buf_put`).
    Release {
        /// The buffer let go of.
        buf: BufId,
    },
    /// `repeat N { ... }`: the body `count` times, `frame` counting the iterations.
    Repeat {
        /// How many times the body runs.
        count: u64,
        /// The steps of the block.
        body: Vec<Stmt>,
    },
}

impl Cmd {
    /// The bytes the step moves through memory the runner allocates (a read's copy, a
    /// written value; a job's, when it runs): what it needs besides what the run holds.
    pub fn bytes_moved(&self) -> u64 {
        match self {
            Cmd::CpuRead { bytes, .. } | Cmd::CpuWrite { bytes, .. } => bytes.len(),
            Cmd::Job(j) => j.kind.bytes_moved(),
            // The simulator's bookkeeping of a buffer's pages: about 1/16 of its size
            // (a page of one repeated byte costs its descriptor, not its bytes).
            Cmd::Alloc { size, .. } => size / 16,
            _ => 0,
        }
    }

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
