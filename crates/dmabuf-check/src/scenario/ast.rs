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
    /// The value.
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
    /// The steps in program order.
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
    /// `sync BUF start read`, `sync BUF end rw`, ...
    Named {
        /// `end` rather than `start`.
        end: bool,
        /// The direction bits.
        access: Access,
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
    /// The buffer.
    pub buf: Ident,
    /// The bytes; `None` is the whole buffer.
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
    /// The scenario's name for the buffer.
    pub name: Ident,
    /// Its size in bytes (`64KiB`, `1MiB`, `0x1000`, `4096`).
    pub size: Spanned<u64>,
    /// Its exporter.
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
        /// The bytes read.
        src: Target,
        /// What they must be.
        expect: Option<Spanned<Value>>,
    },
    /// `DEV write TARGET = VALUE`.
    Write {
        /// The bytes written.
        dst: Target,
        /// Their value.
        value: Spanned<Value>,
    },
    /// `DEV copy SRC to DST`: reads `src`, writes the same bytes to `dst`. The two have
    /// one length: the parser checks it when both ranges are written, the runner
    /// otherwise. Like every range, `out[4KiB..]` runs to the end of the buffer.
    Copy {
        /// Read from.
        src: Target,
        /// Written to.
        dst: Target,
    },
    /// `DEV transform SRC to DST xor=0x0f`: like `copy`, every byte XORed with a key.
    Transform {
        /// Read from.
        src: Target,
        /// Written to.
        dst: Target,
        /// The key.
        xor: Spanned<u8>,
    },
}

/// A device job: `DEV KIND ... [after F, G] [signal F]`. Without `signal` the job is
/// synchronous (the step waits for it); with `signal F` it is submitted and completes
/// later, signalling `F`, and the program goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The device running it.
    pub dev: Ident,
    /// What it does.
    pub kind: JobKind,
    /// Fences the job waits for before it starts.
    pub after: Vec<Ident>,
    /// The fence its completion signals.
    pub signal: Option<Ident>,
}

/// What a step does. Steps whose subject is a device are written `DEV verb ...`; steps
/// of the CPU `cpu verb ...`; framework calls `verb ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `buffer NAME size=SIZE heap=H [name="label"]`.
    Buffer(BufferDecl),
    /// `attach DEV BUF [dynamic] [p2p] [expect refused RULE]`. `dynamic`: the importer
    /// has `move_notify` and does not pin; `p2p`: it accepts peer-to-peer addresses.
    /// `expect refused RULE` (e.g. `contiguity`) states that attach must refuse.
    Attach {
        /// The importing device.
        dev: Ident,
        /// The buffer.
        buf: Ident,
        /// A dynamic importer.
        dynamic: bool,
        /// Peer-to-peer allowed.
        p2p: bool,
        /// The rule attach must refuse with.
        expect_refused: Option<Ident>,
    },
    /// `detach DEV BUF`.
    Detach {
        /// The device.
        dev: Ident,
        /// The buffer.
        buf: Ident,
    },
    /// `pin DEV BUF`.
    Pin {
        /// The device.
        dev: Ident,
        /// The buffer.
        buf: Ident,
    },
    /// `unpin DEV BUF`.
    Unpin {
        /// The device.
        dev: Ident,
        /// The buffer.
        buf: Ident,
    },
    /// `migrate BUF to system|device`.
    Migrate {
        /// The buffer.
        buf: Ident,
        /// Where to.
        to: Spanned<MigrateTo>,
    },
    /// `map DEV BUF DIR` (`dma_buf_map_attachment`).
    Map {
        /// The device.
        dev: Ident,
        /// The buffer.
        buf: Ident,
        /// The direction.
        dir: Spanned<Dir>,
    },
    /// `unmap DEV BUF` (`dma_buf_unmap_attachment`).
    Unmap {
        /// The device.
        dev: Ident,
        /// The buffer.
        buf: Ident,
    },
    /// `DEV begin BUF[RANGE]`: device-side begin of access, for an importer that keeps
    /// its mapping and synchronises with fences.
    DeviceBegin {
        /// The device.
        dev: Ident,
        /// The buffer, and the bytes (whole buffer when no range).
        target: Target,
    },
    /// `DEV end BUF[RANGE]`: device-side end of access.
    DeviceEnd {
        /// The device.
        dev: Ident,
        /// The buffer and bytes.
        target: Target,
    },
    /// `FROM sync BUF[RANGE] to TO`: `sync_device_to_device`.
    DeviceSync {
        /// The device that wrote.
        from: Ident,
        /// The device that reads next.
        to: Ident,
        /// The buffer and bytes.
        target: Target,
    },
    /// A device job.
    Job(Job),
    /// `cpu begin BUF DIR [RANGE]`: `dma_buf_begin_cpu_access` (with a range:
    /// `dma_buf_begin_cpu_access_partial`). Written `cpu begin frame write` or
    /// `cpu begin frame[0..4KiB] read`.
    CpuBegin {
        /// The buffer and bytes.
        target: Target,
        /// The direction.
        dir: Spanned<Dir>,
    },
    /// `cpu end BUF DIR`: `dma_buf_end_cpu_access`.
    CpuEnd {
        /// The buffer.
        buf: Ident,
        /// The direction.
        dir: Spanned<Dir>,
    },
    /// `cpu read TARGET [expect VALUE]`: through the user mapping when the buffer is
    /// mmapped, else through the kernel's (vmap) mapping.
    CpuRead {
        /// The bytes.
        target: Target,
        /// What they must be.
        expect: Option<Spanned<Value>>,
    },
    /// `cpu write TARGET = VALUE`.
    CpuWrite {
        /// The bytes.
        target: Target,
        /// Their value.
        value: Spanned<Value>,
    },
    /// `vmap BUF`.
    Vmap {
        /// The buffer.
        buf: Ident,
    },
    /// `vunmap BUF`.
    Vunmap {
        /// The buffer.
        buf: Ident,
    },
    /// `DEV vmap BUF`: the importing driver maps the pages of its attachment into the
    /// kernel itself (as videobuf2-dma-sg does with `vm_map_ram`) instead of asking the
    /// exporter with `dma_buf_vmap`: a cacheable mapping, whatever the exporter's
    /// attribute. With a write-combined exporter this is a mismatched alias.
    ImporterVmap {
        /// The importing device (whose driver maps the pages).
        dev: Ident,
        /// The buffer.
        buf: Ident,
    },
    /// `DEV vunmap BUF`: removes the importer's own mapping.
    ImporterVunmap {
        /// The importing device.
        dev: Ident,
        /// The buffer.
        buf: Ident,
    },
    /// `mmap BUF`: the user-space mapping.
    Mmap {
        /// The buffer.
        buf: Ident,
    },
    /// `munmap BUF`.
    Munmap {
        /// The buffer.
        buf: Ident,
    },
    /// `sync BUF start|end read|write|rw` or `sync BUF flags=N`: `DMA_BUF_IOCTL_SYNC`.
    Sync {
        /// The buffer.
        buf: Ident,
        /// The flags.
        flags: Spanned<SyncFlags>,
    },
    /// `set_name BUF "label"`: `DMA_BUF_SET_NAME`.
    SetName {
        /// The buffer.
        buf: Ident,
        /// The name.
        name: Spanned<String>,
    },
    /// `fence F`: a software fence (a `sw_sync` point), signalled by a later `signal F`.
    Fence {
        /// The fence.
        name: Ident,
    },
    /// `signal F`: the CPU signals a software fence.
    Signal {
        /// The fence.
        fence: Ident,
    },
    /// `wait F [, G ...]`: the CPU waits for fences.
    Wait {
        /// The fences.
        fences: Vec<Ident>,
    },
    /// `export BUF read|write as F`: `DMA_BUF_IOCTL_EXPORT_SYNC_FILE`; `read` waits for the
    /// writers, `write` for every user.
    Export {
        /// The buffer.
        buf: Ident,
        /// READ or WRITE.
        access: Spanned<Access>,
        /// The new fence's name.
        fence: Ident,
    },
    /// `import F into BUF read|write`: `DMA_BUF_IOCTL_IMPORT_SYNC_FILE`.
    Import {
        /// The fence.
        fence: Ident,
        /// The buffer.
        buf: Ident,
        /// READ adds a read fence, WRITE a write fence.
        access: Spanned<Access>,
    },
    /// `resv BUF add F USAGE`: `dma_resv_add_fence`.
    ResvAdd {
        /// The buffer.
        buf: Ident,
        /// The fence.
        fence: Ident,
        /// Its usage.
        usage: Spanned<Usage>,
    },
    /// `release BUF`: drops the scenario's reference; the buffer is released, and what
    /// is still attached or mapped is reported as leaked.
    Release {
        /// The buffer.
        buf: Ident,
    },
    /// `repeat N { ... }`: the body N times; `frame` counts the iterations.
    Repeat {
        /// How many times.
        count: Spanned<u64>,
        /// The steps.
        body: Vec<Step>,
    },
}
