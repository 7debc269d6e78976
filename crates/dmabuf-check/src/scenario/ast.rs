//! The syntax tree of a scenario.
//!
//! Every name and value keeps its [`Span`] (byte offsets into the source), so the runner
//! can point at the culprit of a semantic error (an unknown device, a range out of bounds)
//! with the same caret as the parser does for syntax errors. Names are not resolved here:
//! whether `gpu` is a device of the platform is the runner's business.

use std::fmt;

/// Byte offsets `[start, end)` into the scenario's source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// The span `[start, end)`.
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the span is empty.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

impl From<Span> for miette::SourceSpan {
    fn from(s: Span) -> Self {
        (s.start, s.len()).into()
    }
}

/// A value with the place it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spanned<T> {
    /// What was written there, parsed: a name, a number, a keyword's meaning.
    pub node: T,
    /// Where it is in the source.
    pub span: Span,
}

impl<T> Spanned<T> {
    /// `node` at `span`.
    pub fn new(node: T, span: Span) -> Self {
        Spanned { node, span }
    }
}

/// A name: of a buffer, a device, a fence, a heap, a rule.
pub type Ident = Spanned<String>;

/// A whole scenario file.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Scenario {
    /// `platform NAME` or `platform "path.toml"`; at most one, before any other step.
    pub platform: Option<Spanned<PlatformRef>>,
    /// Every step after the `platform` line, in program order; a `repeat` holds its body.
    pub steps: Vec<Step>,
}

/// Which platform a scenario runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlatformRef {
    /// A preset by name: `platform arm64-noncoherent`.
    Preset(String),
    /// A TOML description by path, relative to the scenario file: `platform "soc.toml"`.
    File(String),
}

/// One step: a line of the scenario (a `repeat` block spans several).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// 1-based line of the step's first token.
    pub line: u32,
    /// The whole step, without its comment.
    pub span: Span,
    /// What it does.
    pub op: Op,
}

/// A DMA direction as written: `to_device` (or `write` for a CPU bracket), `from_device`
/// (or `read`), `bidirectional` (or `rw`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// `DMA_TO_DEVICE`: `to_device`, `write`.
    ToDevice,
    /// `DMA_FROM_DEVICE`: `from_device`, `read`.
    FromDevice,
    /// `DMA_BIDIRECTIONAL`: `bidirectional`, `rw`.
    Bidirectional,
}

/// What a sync-file export or import, or a sync ioctl, is about: `read`, `write`, `rw`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `read`.
    Read,
    /// `write`.
    Write,
    /// `rw`.
    ReadWrite,
}

/// A reservation-object usage, strictest first: `kernel`, `write`, `read`, `bookkeep`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Usage {
    /// `DMA_RESV_USAGE_KERNEL`.
    Kernel,
    /// `DMA_RESV_USAGE_WRITE`.
    Write,
    /// `DMA_RESV_USAGE_READ`.
    Read,
    /// `DMA_RESV_USAGE_BOOKKEEP`.
    Bookkeep,
}

/// The flags of a `sync` step (`DMA_BUF_IOCTL_SYNC`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncFlags {
    /// `sync BUF start read`, `sync BUF end rw`, `sync BUF[RANGE] start write overwrite`, ...
    Named {
        /// `end` rather than `start`.
        end: bool,
        /// `read`, `write` or `rw`: which of `DMA_BUF_SYNC_READ` and `DMA_BUF_SYNC_WRITE`
        /// are set.
        access: Access,
        /// `overwrite` (only after `start write`): `DMA_BUF_SYNC_OVERWRITE`, the CPU
        /// writes every byte of the range before the end.
        overwrite: bool,
    },
    /// `sync BUF flags=0x8`: raw flags, to write the mistakes the kernel refuses.
    Raw(u64),
}

/// Bytes `[start, end)` of a buffer: `frame[0..64KiB]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}..{:#x})", self.start, self.end)
    }
}

/// A buffer, or some bytes of it: `frame` (the whole buffer) or `frame[4KiB..8KiB]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The buffer's scenario name (`frame` in `frame[4KiB..8KiB]`), as a `buffer` step
    /// declared it.
    pub buf: Ident,
    /// The bracketed bytes, an open end already taken from the buffer's size; `None`
    /// without brackets, meaning the whole buffer.
    pub range: Option<Spanned<ByteRange>>,
}

/// The bytes a write stores, or a read expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    /// Every byte is this value: `0x5a`, `90`.
    Byte(u8),
    /// Every byte is the frame number of the innermost `repeat` plus one, modulo 256
    /// (1 outside any `repeat`): `frame`. Lets a loop tell this frame from the last.
    Frame,
    /// The byte at buffer offset `X` is `(X + frame) mod 256`: `seq`. Catches misplaced
    /// bytes.
    Seq,
}

/// Where a buffer comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `heap=system`, `heap=cma`, `heap=uncached` (kernel names such as
    /// `heap=linux,cma` or `heap=default_cma_region` are accepted by the runner).
    Heap(String),
    /// `device=dgpu`: exported by a device from its local memory (VRAM).
    Device(String),
    /// `udmabuf`: a udmabuf over a sealed memfd of the same size.
    Udmabuf,
}

/// `buffer NAME size=SIZE (heap=H | device=D | udmabuf) [name="label"]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferDecl {
    /// NAME: how later steps refer to the buffer (not its `DMA_BUF_SET_NAME` label).
    pub name: Ident,
    /// Its size in bytes (`64KiB`, `1MiB`, `0x1000`, `4096`).
    pub size: Spanned<u64>,
    /// `heap=H`, `device=D` or `udmabuf`: who allocates the memory and exports it.
    pub source: Spanned<Source>,
    /// `name="..."`: set with `DMA_BUF_SET_NAME` at allocation.
    pub label: Option<Spanned<String>>,
}

/// Where a dynamic exporter's buffer moves: `migrate BUF to system|device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrateTo {
    /// System memory.
    System,
    /// Back to the exporting device's local memory.
    Device,
}

/// What a device job does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobKind {
    /// `DEV read TARGET [expect VALUE]`.
    Read {
        /// TARGET: the buffer and bytes the device reads.
        src: Target,
        /// `expect VALUE`: what every byte read must be; without it only the sanitizer
        /// judges the read.
        expect: Option<Spanned<Value>>,
    },
    /// `DEV write TARGET = VALUE`.
    Write {
        /// TARGET: the buffer and bytes the device writes.
        dst: Target,
        /// `= VALUE`: what the device stores in every byte of `dst`.
        value: Spanned<Value>,
    },
    /// `DEV copy SRC to DST`: reads `src`, writes the same bytes to `dst`. The two have
    /// one length: the parser checks it when both ranges are written, the runner
    /// otherwise. Like every range, `out[4KiB..]` runs to the end of the buffer.
    Copy {
        /// SRC: the buffer and bytes the device reads.
        src: Target,
        /// DST: the buffer and bytes it writes them to.
        dst: Target,
    },
    /// `DEV transform SRC to DST xor=0x0f`: like `copy`, every byte XORed with a key.
    Transform {
        /// SRC: the buffer and bytes the device reads.
        src: Target,
        /// DST: the buffer and bytes it writes the transformed bytes to.
        dst: Target,
        /// `xor=K`: the byte every byte of `src` is XORed with on its way to `dst`.
        xor: Spanned<u8>,
    },
}

/// A device job: `DEV KIND ... [after F, G] [signal F]`. Without `signal` the job is
/// synchronous (the step waits for it); with `signal F` it is submitted and completes
/// later, signalling `F`, and the program goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// DEV: the platform's name of the device that runs the job.
    pub dev: Ident,
    /// `read`, `write`, `copy` or `transform`, with its operands.
    pub kind: JobKind,
    /// `after F, G`: fence names; the job starts once the fences they are bound to at
    /// submission have signalled.
    pub after: Vec<Ident>,
    /// `signal F`: the fence name the job's completion signals; `None` makes the job
    /// synchronous.
    pub signal: Option<Ident>,
}

/// What a step does. Steps whose subject is a device are written `DEV verb ...`; steps
/// of the CPU `cpu verb ...`; framework calls `verb ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `buffer NAME size=SIZE (heap=H | device=D | udmabuf) [name="label"]`.
    Buffer(BufferDecl),
    /// `attach DEV BUF [dynamic] [p2p] [expect refused RULE]`. `dynamic`: the importer
    /// has `move_notify` and does not pin; `p2p`: it accepts peer-to-peer addresses.
    /// `expect refused RULE` (e.g. `contiguity`) states that attach must refuse.
    Attach {
        /// DEV: the platform's name of the importing device.
        dev: Ident,
        /// BUF: the scenario's name of the buffer it imports.
        buf: Ident,
        /// `dynamic`: the importer has `move_notify` and does not pin the buffer.
        dynamic: bool,
        /// `p2p`: the importer accepts peer-to-peer addresses (another device's memory).
        p2p: bool,
        /// `expect refused RULE`: the name of the rule (`contiguity`, `dma-mask`, ...) that
        /// must refuse the attach.
        expect_refused: Option<Ident>,
    },
    /// `detach DEV BUF`.
    Detach {
        /// DEV: the importer whose attachment goes.
        dev: Ident,
        /// BUF: the buffer it was attached to.
        buf: Ident,
    },
    /// `pin DEV BUF`.
    Pin {
        /// DEV: the importer whose attachment pins the buffer where it is.
        dev: Ident,
        /// BUF: the buffer pinned.
        buf: Ident,
    },
    /// `unpin DEV BUF`.
    Unpin {
        /// DEV: the importer whose pin is dropped.
        dev: Ident,
        /// BUF: the buffer it had pinned.
        buf: Ident,
    },
    /// `migrate BUF to system|device`.
    Migrate {
        /// BUF: the dynamic exporter's buffer that moves.
        buf: Ident,
        /// `to system` or `to device`: where the buffer's memory goes.
        to: Spanned<MigrateTo>,
    },
    /// `map DEV BUF DIR` (`dma_buf_map_attachment`).
    Map {
        /// DEV: the importer whose attachment is mapped.
        dev: Ident,
        /// BUF: the buffer mapped for it.
        buf: Ident,
        /// DIR: the DMA direction of the mapping, which decides the cache maintenance at
        /// map and unmap.
        dir: Spanned<Dir>,
    },
    /// `unmap DEV BUF` (`dma_buf_unmap_attachment`).
    Unmap {
        /// DEV: the importer whose mapping goes.
        dev: Ident,
        /// BUF: the buffer it had mapped.
        buf: Ident,
    },
    /// `DEV begin BUF[RANGE]`: device-side begin of access, for an importer that keeps
    /// its mapping and synchronises with fences.
    DeviceBegin {
        /// DEV: the importer that begins access through the mapping it keeps.
        dev: Ident,
        /// TARGET: the buffer and the bytes the device will access (the whole buffer when
        /// no range).
        target: Target,
    },
    /// `DEV end BUF[RANGE]`: device-side end of access.
    DeviceEnd {
        /// DEV: the importer that has finished accessing.
        dev: Ident,
        /// TARGET: the buffer and the bytes it accessed.
        target: Target,
    },
    /// `FROM sync BUF[RANGE] to TO`: `sync_device_to_device`.
    DeviceSync {
        /// The device that wrote.
        from: Ident,
        /// The device that reads next.
        to: Ident,
        /// TARGET: the buffer and the bytes handed from `from` to `to`.
        target: Target,
    },
    /// A device job.
    Job(Job),
    /// `cpu begin TARGET DIR`: `dma_buf_begin_cpu_access` (with a range:
    /// `dma_buf_begin_cpu_access_partial`). Written `cpu begin frame write` or `cpu begin
    /// frame[0..4KiB] read`.
    CpuBegin {
        /// TARGET: the buffer and the bytes the CPU will access; a range makes the call the
        /// partial one.
        target: Target,
        /// DIR: the DMA direction of the access (`write` is `to_device`, `read` is
        /// `from_device`).
        dir: Spanned<Dir>,
        /// `overwrite` after a `write` (`to_device`): the CPU writes every byte of the
        /// range before the end, so its previous contents need not be made visible.
        overwrite: bool,
    },
    /// `cpu end BUF DIR`: `dma_buf_end_cpu_access`.
    CpuEnd {
        /// BUF: the buffer whose bracket ends (always all of it: the call takes no range).
        buf: Ident,
        /// DIR: the direction passed to `dma_buf_end_cpu_access`, as at the begin.
        dir: Spanned<Dir>,
    },
    /// `cpu read TARGET [expect VALUE]`: through the user mapping when the buffer is
    /// mmapped, else through the kernel's (vmap) mapping.
    CpuRead {
        /// TARGET: the buffer and bytes the CPU reads.
        target: Target,
        /// `expect VALUE`: what every byte read must be; without it only the sanitizer
        /// judges the read.
        expect: Option<Spanned<Value>>,
    },
    /// `cpu write TARGET = VALUE`.
    CpuWrite {
        /// TARGET: the buffer and bytes the CPU writes.
        target: Target,
        /// `= VALUE`: what the CPU stores in every byte.
        value: Spanned<Value>,
    },
    /// `vmap BUF`.
    Vmap {
        /// BUF: the buffer the exporter maps into the kernel (`dma_buf_vmap`).
        buf: Ident,
    },
    /// `vunmap BUF`.
    Vunmap {
        /// BUF: the buffer whose kernel mapping goes (`dma_buf_vunmap`).
        buf: Ident,
    },
    /// `DEV vmap BUF`: the importing driver maps the pages of its attachment into the
    /// kernel itself (as videobuf2-dma-sg does with `vm_map_ram`) instead of asking the
    /// exporter with `dma_buf_vmap`: a cacheable mapping, whatever the exporter's
    /// attribute. With a write-combined exporter this is a mismatched alias.
    ImporterVmap {
        /// The importing device (whose driver maps the pages).
        dev: Ident,
        /// BUF: the buffer whose attachment's pages the driver maps.
        buf: Ident,
    },
    /// `DEV vunmap BUF`: removes the importer's own mapping.
    ImporterVunmap {
        /// DEV: the importing device whose own kernel mapping goes.
        dev: Ident,
        /// BUF: the buffer it had mapped.
        buf: Ident,
    },
    /// `mmap BUF`: the user-space mapping.
    Mmap {
        /// BUF: the buffer mapped into the process.
        buf: Ident,
    },
    /// `munmap BUF`.
    Munmap {
        /// BUF: the buffer whose user-space mapping goes.
        buf: Ident,
    },
    /// `sync BUF start|end read|write|rw [overwrite]` or `sync BUF flags=N`:
    /// `DMA_BUF_IOCTL_SYNC`; with a range (or `overwrite`), `DMA_BUF_IOCTL_SYNC_PARTIAL`.
    Sync {
        /// BUF and, for the ranged ioctl, the bytes the bracket covers.
        target: Target,
        /// `start|end ACCESS` or `flags=N`: what the ioctl passes in `dma_buf_sync.flags`.
        flags: Spanned<SyncFlags>,
    },
    /// `set_name BUF "label"`: `DMA_BUF_SET_NAME`.
    SetName {
        /// BUF: the buffer named.
        buf: Ident,
        /// STRING: the new name, its escapes undone, as `DMA_BUF_SET_NAME` receives it.
        name: Spanned<String>,
    },
    /// `fence F`: a software fence (a `sw_sync` point), signalled by a later `signal F`.
    Fence {
        /// F: the name the new fence is bound to.
        name: Ident,
    },
    /// `signal F`: the CPU signals a software fence.
    Signal {
        /// F: the name of the software fence the CPU signals.
        fence: Ident,
    },
    /// `wait F [, G ...]`: the CPU waits for fences.
    Wait {
        /// `F, G, ...`: the names of the fences waited for.
        fences: Vec<Ident>,
    },
    /// `export BUF read|write as F`: `DMA_BUF_IOCTL_EXPORT_SYNC_FILE`; `read` waits for the
    /// writers, `write` for every user.
    Export {
        /// BUF: the buffer whose reservation object's fences go into the sync file.
        buf: Ident,
        /// ACCESS: `read` takes the writers' fences, `write` (or `rw`) every user's.
        access: Spanned<Access>,
        /// F: the name the sync file's fence is bound to.
        fence: Ident,
    },
    /// `import F into BUF read|write`: `DMA_BUF_IOCTL_IMPORT_SYNC_FILE`.
    Import {
        /// F: the name of the fence whose sync file is imported.
        fence: Ident,
        /// BUF: the buffer whose reservation object receives the fence.
        buf: Ident,
        /// ACCESS: `read` adds it as a read fence, `write` (or `rw`) as a write fence.
        access: Spanned<Access>,
    },
    /// `resv BUF add F USAGE`: `dma_resv_add_fence`.
    ResvAdd {
        /// BUF: the buffer whose reservation object receives the fence.
        buf: Ident,
        /// F: the name of the fence added.
        fence: Ident,
        /// USAGE: `kernel`, `write`, `read` or `bookkeep`, which decides who waits for the
        /// fence.
        usage: Spanned<Usage>,
    },
    /// `release BUF`: drops the scenario's reference; the buffer is released, and what
    /// is still attached or mapped is reported as leaked.
    Release {
        /// BUF: the buffer the scenario lets go of.
        buf: Ident,
    },
    /// `repeat N { ... }`: the body N times; `frame` counts the iterations.
    Repeat {
        /// N: how many times the body runs (a count, without a unit).
        count: Spanned<u64>,
        /// The steps between the `repeat` line and its closing `}`, one a line.
        body: Vec<Step>,
    },
}
