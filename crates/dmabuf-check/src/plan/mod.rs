//! The allocator: which heap and placement every party of a sharing can use without a
//! copy, the protocol that shares it, and the explorer's proof of that protocol.
//!
//! The 2011 thread that gave Linux DMA-buf asked for "a device-independent allocator that
//! knows the constraints"; the Unix Device Allocator negotiates constraints but knows
//! nothing of coherency. Here the constraints are the platform's and the rules are the
//! framework's own: every candidate placement is allocated by the framework (the `system`
//! heap's scattered pages, the `cma` heap's contiguous ones, a device's local memory) and
//! every party is attached to it with [`dmabuf::check_attach`], so contiguity, reach and
//! DMA windows, coherency and peer-to-peer paths are decided exactly as `attach` decides
//! them, never re-derived.
//!
//! A request ([`Request`]) names the devices that use the buffer, what each does to it per
//! frame (`read`, `write`, `rw`) and whether it keeps its mapping across frames, and what
//! the CPU does. [`plan`] then:
//!
//! 1. tries one shared buffer in every placement, in the order a kernel engineer would
//!    (the `system` heap, then `cma`, which is scarce, then device memory); the first that
//!    every party attaches to without a bounce is the answer ([`Verdict::CopyFree`]);
//! 2. when none is, says why for each (the rule, the device, what would work) and weighs
//!    the fallbacks by their cost per frame: a shared buffer some party reaches only through
//!    a swiotlb bounce ([`Verdict::Bounce`]), a copy between two buffers by a named engine
//!    or the CPU ([`Verdict::Copy`]), or, when the CPU takes part, the write-combined
//!    mapping of the `uncached` heap that vendor kernels have ([`Verdict::Uncached`]);
//! 3. writes the protocol as a scenario ([`crate::scenario`]): attachments, per-frame
//!    `map`/`unmap` for parties that do not keep their mapping, one `map` for those that
//!    do, device-side `end`/`begin` or a device-to-device `sync` where a kept mapping hands
//!    the bytes across coherency domains, the CPU's sync-ioctl brackets in the direction of
//!    its access, a fence per device job;
//! 4. measures each usable scheme's cost per frame on the simulator with the platform's
//!    cost table (the cycles of a third frame over two, under upstream Linux's maintenance
//!    and the minimal one), and proves the chosen protocol with the explorer under both
//!    ([`crate::explore`]); a scheme the explorer refutes is not the answer.
//!
//! Where a kept mapping hands over (coherency model, sections 6 and 7): the job contract
//! makes a device's writes visible at its job's fence and its private cache clean at its
//! job's start, and the CPU's brackets sync every mapped attachment; what remains is a
//! non-coherent device that keeps its mapping handing its writes to a device whose reads
//! come through the CPU's cache (a coherent one snoops it; a bounced one's slot is filled
//! by a CPU copy, `swiotlb_bounce`), where lines may be stale: the writer's `end` drops
//! them; a device whose writes land in the CPU's cache (a coherent one that stashes; a
//! bounced one, whose slot is copied back by the CPU) handing to a non-coherent reader that
//! keeps its mapping: the reader's `begin` cleans them; and a device whose private cache
//! its driver does not manage at job boundaries (both). Two parties that both keep their
//! mappings hand over with one `sync_device_to_device`. A per-frame mapping's `unmap` and
//! `map` do the same on their own.
//!
//! | module | what it holds |
//! |---|---|
//! | `board` | the platform (a preset, a TOML, or a board's DTB with nodes enabled) and the parties' devices |
//! | `schemes` | placements allocated by the framework and judged by its attach rules |
//! | `protocol` | the scenario text of a scheme |
//! | `measure` | cost per frame on the simulator, and the explorer's proof |
//! | `report` | the answer as text and as JSON |

mod board;
mod measure;
mod protocol;
mod report;
mod schemes;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use dmabuf::{AttachError, AttachPlan, HeapKind};
use dmabuf_sim::Platform;

pub use board::{Board, Source, load};
pub use measure::{Cost, Proof};
pub use report::{to_json, to_text};

use crate::explore::Verdict as ExploreVerdict;

/// What a party does to the buffer each frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// It reads what the parties before it wrote.
    Read,
    /// It writes the whole buffer.
    Write,
    /// It reads it, then writes it (in place).
    ReadWrite,
}

impl Access {
    /// The name on the command line and in JSON: `read`, `write`, `rw`.
    pub fn name(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::ReadWrite => "rw",
        }
    }

    /// Whether the party reads the buffer.
    pub fn reads(self) -> bool {
        self != Access::Write
    }

    /// Whether the party writes the buffer.
    pub fn writes(self) -> bool {
        self != Access::Read
    }
}

impl FromStr for Access {
    type Err = PlanError;

    fn from_str(s: &str) -> Result<Access, PlanError> {
        match s {
            "read" | "r" => Ok(Access::Read),
            "write" | "w" => Ok(Access::Write),
            "rw" | "readwrite" | "read-write" => Ok(Access::ReadWrite),
            _ => Err(PlanError::BadAccess { given: s.into() }),
        }
    }
}

/// One `--user DEVICE:ACCESS[:kept]`: a device, what it does per frame, and whether it
/// keeps its mapping across frames (a display scanning out, a USB gadget, an IIO buffer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSpec {
    /// The device: its platform name, or its node path (whole, or its last component).
    pub device: String,
    /// What it does to the buffer each frame.
    pub access: Access,
    /// Whether it keeps its mapping (a device the platform says keeps it does anyway).
    pub kept: bool,
}

impl FromStr for UserSpec {
    type Err = PlanError;

    /// `DEVICE:ACCESS` or `DEVICE:ACCESS:kept`.
    fn from_str(s: &str) -> Result<UserSpec, PlanError> {
        let bad = || PlanError::BadUser { given: s.into() };
        let (device, access, kept) = match s.split(':').collect::<Vec<_>>().as_slice() {
            [d, a] => (*d, *a, false),
            [d, a, "kept"] => (*d, *a, true),
            _ => return Err(bad()),
        };
        if device.is_empty() {
            return Err(bad());
        }
        Ok(UserSpec { device: device.into(), access: access.parse().map_err(|_| bad())?, kept })
    }
}

/// What `dmabuf plan` is asked.
#[derive(Clone, Debug)]
pub struct Request {
    /// The devices that use the buffer, in the order they act within a frame among those
    /// of the same access (writers act first, then readers-and-writers, then readers).
    pub users: Vec<UserSpec>,
    /// What the CPU does, through the buffer's mmap and the sync ioctl: it writes first,
    /// reads last, and reads and writes after the device writers.
    pub cpu: Option<Access>,
    /// The buffer's size in bytes: what is allocated and attached, and what costs are
    /// measured on.
    pub size: u64,
    /// The size the protocol is proved at (at most `size`): every step of the protocol
    /// covers the whole buffer, so a larger buffer differs only in how many pages see the
    /// same operations; the explorer's time grows with the pages of a scattered buffer.
    pub prove_size: u64,
    /// The explorer's bound on distinct states, per maintenance policy.
    pub max_states: u64,
    /// The explorer's time bound, per maintenance policy.
    pub timeout: Option<Duration>,
}

impl Request {
    /// A request with the default sizes and bounds: 1 MiB, proved at 64 KiB.
    pub fn new(users: Vec<UserSpec>, cpu: Option<Access>) -> Request {
        Request { users, cpu, size: 1 << 20, prove_size: 64 << 10, max_states: 1_000_000, timeout: None }
    }
}

/// Who a party is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// The CPU, through the buffer's mmap.
    Cpu,
    /// A device, by index into the platform's devices.
    Device(usize),
}

/// A party of the plan: resolved, with what it does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Party {
    /// The CPU or a device.
    pub who: Who,
    /// `cpu` or the device's platform name (what the scenario calls it).
    pub name: String,
    /// What it does per frame.
    pub access: Access,
    /// Whether it keeps its mapping across frames.
    pub kept: bool,
    /// Whether it keeps it because the platform says the device always does (a scanout),
    /// whatever the request said.
    pub kept_by_platform: bool,
}

/// Where a buffer's memory comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// A dma-buf heap.
    Heap(HeapKind),
    /// A device's local memory (a dGPU's VRAM), exported by that device.
    DeviceMemory {
        /// The device that owns it.
        owner: String,
    },
}

impl Placement {
    /// The scenario's source attribute: `heap=cma`, `device=dgpu`.
    pub fn source(&self) -> String {
        match self {
            Placement::Heap(h) => format!("heap={}", h.name()),
            Placement::DeviceMemory { owner } => format!("device={owner}"),
        }
    }

    /// Whether upstream Linux has it: every heap but `uncached` (vendor and Android
    /// kernels only) and every device's memory.
    pub fn upstream(&self) -> bool {
        *self != Placement::Heap(HeapKind::Uncached)
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Placement::Heap(h) => write!(f, "the `{}` heap", h.name()),
            Placement::DeviceMemory { owner } => write!(f, "{owner}'s local memory"),
        }
    }
}

/// A buffer as the framework allocated it for a scheme.
#[derive(Clone, Debug)]
pub struct Allocation {
    /// Where it comes from.
    pub placement: Placement,
    /// The regions its pages lie in.
    pub regions: Vec<String>,
    /// Its lowest and highest physical byte, `[first, last + 1)`.
    pub span: (u64, u64),
    /// How many discontiguous pieces its pages form.
    pub pieces: usize,
    /// The attribute of the exporter's CPU mappings (`cached`, `write-combine`).
    pub attr: &'static str,
}

/// How one party reaches one buffer of a scheme, as `check_attach` decided.
#[derive(Clone, Debug)]
pub struct AttachOutcome {
    /// The party (`cpu` never appears: the CPU maps every placement).
    pub party: String,
    /// The buffer's name in the scenario.
    pub buffer: String,
    /// How, or the rule that refuses it.
    pub result: Result<AttachPlan, AttachError>,
}

/// A way to share the frames: one buffer, or two with a copy between them.
#[derive(Clone, Debug)]
pub enum SchemeKind {
    /// One buffer every party uses.
    Shared {
        /// Where it lives.
        buffer: Allocation,
    },
    /// Two buffers: the parties before the copy use the first, the ones after it the
    /// second, and an engine copies each frame across.
    Copy {
        /// The buffer the first parties use.
        first: Allocation,
        /// The buffer the last parties use.
        second: Allocation,
        /// The CPU or the device that copies (it reads the first buffer and writes the
        /// second, mapping both per frame).
        engine: Party,
        /// The copy happens before the party at this position of the frame's order.
        at: usize,
    },
}

/// What kind of answer a scheme is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// One buffer, every party attached directly, through its IOMMU or peer-to-peer.
    CopyFree,
    /// One buffer, but the `uncached` heap, which upstream Linux does not have: a
    /// write-combined CPU mapping.
    Uncached,
    /// One buffer, some party bounced through swiotlb (a copy at every map and unmap).
    Bounce,
    /// Two buffers and a copy per frame.
    Copy,
    /// Some party cannot attach at all.
    Refused,
}

impl Verdict {
    /// The name in JSON: `copy_free`, `uncached`, `bounce`, `copy`, `refused`.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::CopyFree => "copy_free",
            Verdict::Uncached => "uncached",
            Verdict::Bounce => "bounce",
            Verdict::Copy => "copy",
            Verdict::Refused => "refused",
        }
    }
}

/// One scheme, judged: its attachments, its cost, its protocol.
#[derive(Clone, Debug)]
pub struct Scheme {
    /// What it is.
    pub kind: SchemeKind,
    /// Every party's attachment to every buffer it uses.
    pub attach: Vec<AttachOutcome>,
    /// Its cost per frame, when every party attaches.
    pub cost: Option<Cost>,
    /// The protocol's steps (the scenario without its `platform` line), when every party
    /// attaches.
    pub protocol: Option<String>,
    /// Why a scheme is unusable although no attach refused it: a buffer the placement
    /// cannot hold, the first finding of a run of its protocol, or the explorer's
    /// counterexample.
    pub unusable: Option<String>,
    /// Whether its buffers could be allocated (when not, `unusable` says why).
    pub allocated: bool,
}

impl Scheme {
    /// What kind of answer it is.
    pub fn verdict(&self) -> Verdict {
        if !self.allocated || self.attach.iter().any(|a| a.result.is_err()) {
            return Verdict::Refused;
        }
        match &self.kind {
            SchemeKind::Copy { .. } => Verdict::Copy,
            SchemeKind::Shared { .. } if self.attach.iter().any(|a| a.result == Ok(AttachPlan::Bounce)) => {
                Verdict::Bounce
            }
            SchemeKind::Shared { buffer } if !buffer.placement.upstream() => Verdict::Uncached,
            SchemeKind::Shared { .. } => Verdict::CopyFree,
        }
    }

    /// The parties that reach their buffer through a swiotlb bounce.
    pub fn bounced(&self) -> Vec<String> {
        self.attach.iter().filter(|a| a.result == Ok(AttachPlan::Bounce)).map(|a| a.party.clone()).collect()
    }

    /// In words: `the cma heap`, `a copy by pdma from the system heap to the cma heap`.
    pub fn describe(&self) -> String {
        match &self.kind {
            SchemeKind::Shared { buffer } => buffer.placement.to_string(),
            SchemeKind::Copy { first, second, engine, .. } => {
                let by = if engine.who == Who::Cpu { "the CPU".to_string() } else { format!("`{}`", engine.name) };
                format!("a copy by {by} from {} to {}", first.placement, second.placement)
            }
        }
    }
}

/// The answer to a request.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The platform planned on.
    pub platform: Platform,
    /// The buffer's size.
    pub size: u64,
    /// The size the protocol was proved at.
    pub prove_size: u64,
    /// The parties, in the order they act within a frame.
    pub parties: Vec<Party>,
    /// Every scheme considered: the shared placements in preference order, then (when
    /// none is copy-free) the copies.
    pub schemes: Vec<Scheme>,
    /// The chosen scheme (an index into `schemes`), if any works.
    pub answer: Option<usize>,
    /// The explorer's runs on the chosen scheme's protocol, one per maintenance policy.
    pub proofs: Vec<Proof>,
}

impl Plan {
    /// The chosen scheme.
    pub fn chosen(&self) -> Option<&Scheme> {
        self.answer.map(|i| &self.schemes[i])
    }

    /// The chosen scheme's verdict, `Refused` when nothing works.
    pub fn verdict(&self) -> Verdict {
        self.chosen().map_or(Verdict::Refused, Scheme::verdict)
    }

    /// Whether the chosen protocol was proved under every maintenance policy.
    pub fn proved(&self) -> bool {
        !self.proofs.is_empty() && self.proofs.iter().all(|p| p.verdict == ExploreVerdict::Proved)
    }

    /// The chosen protocol as a scenario, with `platform` as its platform line.
    pub fn scenario(&self, platform: &str) -> Option<String> {
        let s = self.chosen()?;
        let p = s.protocol.as_ref()?;
        let who: Vec<String> = self
            .parties
            .iter()
            .map(|x| {
                let kept = if x.kept { " (keeps its mapping)" } else { "" };
                format!("{} {}{kept}", x.name, x.access.name())
            })
            .collect();
        let head = format!(
            "# dmabuf plan on {}: {}; {}\n# each frame: {}\n",
            self.platform.name,
            s.describe(),
            s.verdict().name().replace('_', "-"),
            who.join(", then ")
        );
        Some(head + &protocol::with_platform(p, platform))
    }
}

/// Why a request cannot be planned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The platform could not be read.
    #[error("{0}")]
    Platform(#[from] dmabuf_sim::PlatformError),
    /// `--enable` on a platform that is not a device tree.
    #[error("--enable {node}: only a board's device tree (.dtb) has nodes to enable; `{platform}` is not one")]
    EnableWithoutTree {
        /// The node asked for.
        node: String,
        /// The platform given.
        platform: String,
    },
    /// A `--user` that is not `DEVICE:ACCESS[:kept]`.
    #[error("--user {given}: expected DEVICE:ACCESS or DEVICE:ACCESS:kept, ACCESS one of read, write, rw")]
    BadUser {
        /// What was given.
        given: String,
    },
    /// An access that is not `read`, `write` or `rw`.
    #[error("`{given}` is no access: read, write or rw")]
    BadAccess {
        /// What was given.
        given: String,
    },
    /// No device of that name or node.
    #[error("--user {name}: no device `{name}` on {platform}{hint}")]
    UnknownDevice {
        /// The name given.
        name: String,
        /// The platform.
        platform: String,
        /// A suggestion: the closest name, the list, or the `--enable` that would add it.
        hint: String,
    },
    /// One device named twice.
    #[error("--user {name}: `{device}` is named twice; give each device once, with the access it has (rw for both)")]
    Twice {
        /// The second name given.
        name: String,
        /// The device.
        device: String,
    },
    /// Nothing to share.
    #[error("no --user: name at least one device that uses the buffer")]
    NoUsers,
    /// Nobody writes.
    #[error("nobody writes the buffer: give a device or the CPU the access write or rw")]
    NoWriter,
    /// More parties than a protocol here describes.
    #[error("{count} parties: at most {max} devices and the CPU")]
    TooMany {
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A size of zero, or a proof size above the size.
    #[error("{0}")]
    BadSize(String),
    /// Running or exploring a generated protocol failed as bad input: a bug of the planner.
    #[error("the generated protocol did not run: {0}")]
    Protocol(String),
    /// The platform could not be written for the runner.
    #[error("cannot write the platform for the runner: {0}")]
    Io(String),
}

/// The most devices a plan takes (each frame's values stay distinct bytes).
pub const MAX_USERS: usize = 8;

/// The largest buffer a plan takes: the simulator holds every byte of every candidate
/// (an 8K frame of 32-bit pixels is 127 MiB).
pub const MAX_SIZE: u64 = 256 << 20;

/// The largest size a protocol is proved at: the explorer's memory grows faster than the
/// pages of a scattered buffer (about 1 GB at 128 KiB, 4 GB at 256 KiB: each of its runs
/// keeps memory in proportion to the buffer, and the runs grow with the pages).
pub const MAX_PROVE_SIZE: u64 = 256 << 10;

/// Plans a request on a board: every scheme judged, the best chosen and its protocol
/// proved.
pub fn plan(board: &Board, req: &Request) -> Result<Plan, PlanError> {
    if req.size == 0 {
        return Err(PlanError::BadSize("--size 0: a buffer has at least one byte".into()));
    }
    if req.size > MAX_SIZE {
        return Err(PlanError::BadSize(format!(
            "--size {}: at most {} (the simulator holds every byte)",
            dmabuf_sim::ByteSize(req.size),
            dmabuf_sim::ByteSize(MAX_SIZE)
        )));
    }
    if req.prove_size == 0 || req.prove_size > MAX_PROVE_SIZE {
        return Err(PlanError::BadSize(format!(
            "--prove-size {}: from one byte to {} (the explorer's memory grows faster than a scattered buffer's pages)",
            dmabuf_sim::ByteSize(req.prove_size),
            dmabuf_sim::ByteSize(MAX_PROVE_SIZE)
        )));
    }
    let parties = board::parties(board, req)?;
    let prove_size = req.prove_size.min(req.size);
    let runner = measure::Runner::new(&board.platform)?;
    let mut schemes = schemes::shared(&board.platform, &parties, req.size, req.cpu.is_some());
    for s in &mut schemes {
        runner.judge(s, &board.platform, &parties, req.size)?;
    }
    let copy_free = |s: &Scheme| s.verdict() == Verdict::CopyFree && s.unusable.is_none();
    if !schemes.iter().any(copy_free) {
        let mut copies = schemes::copies(&board.platform, &parties, req.size);
        for s in &mut copies {
            runner.judge(s, &board.platform, &parties, req.size)?;
        }
        schemes.extend(copies);
    }
    // The answer: the first copy-free scheme in preference order; else the cheapest
    // fallback. A scheme the explorer refutes gives way to the next.
    let mut order: Vec<usize> = (0..schemes.len()).filter(|&i| copy_free(&schemes[i])).collect();
    if order.is_empty() {
        order = (0..schemes.len())
            .filter(|&i| schemes[i].verdict() != Verdict::Refused && schemes[i].unusable.is_none())
            .collect();
        order.sort_by_key(|&i| schemes[i].cost.as_ref().map_or(u64::MAX, |c| c.linux.cycles));
    }
    let mut answer = None;
    let mut proofs = Vec::new();
    for i in order {
        let body = protocol::body(&board.platform, &parties, &schemes[i].kind, &schemes[i].bounced(), prove_size);
        let p = runner.prove(&body, req)?;
        if let Some(refuted) = p.iter().find(|p| p.verdict == ExploreVerdict::Counterexample) {
            schemes[i].unusable = Some(format!(
                "the explorer refutes its protocol under {} maintenance: {}",
                refuted.maintenance,
                refuted.counterexample.as_deref().unwrap_or("a counterexample")
            ));
            continue;
        }
        answer = Some(i);
        proofs = p;
        break;
    }
    Ok(Plan { platform: board.platform.clone(), size: req.size, prove_size, parties, schemes, answer, proofs })
}

/// A platform's device, for messages: `hvs` (display, no IOMMU, ...).
fn device_words(p: &Platform, dev: usize) -> String {
    let d = &p.devices[dev];
    let mut w = Vec::new();
    if let Some(r) = d.role {
        w.push(r.to_string());
    }
    w.push(if d.coherent { "coherent".into() } else { "not coherent".into() });
    w.push(if d.iommu { "behind an IOMMU".into() } else { d.reach_words() });
    if d.needs_contiguous && !d.iommu {
        w.push("needs contiguous memory".into());
    }
    w.join(", ")
}
