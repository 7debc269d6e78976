//! The framework's state behind the handles: one [`Inner`] per [`System`](crate::System),
//! a [`BufState`] per buffer, an [`AttState`] per attachment.
//!
//! Handles (`DmaBuf`, `Attachment`, guards) are indices into this state, shared through
//! the system's `Rc<RefCell<Inner>>`. A borrow is never held across a fence wait: a wait
//! may run device jobs of the program that drives the framework, and those call back in.

use std::sync::Arc;

use dmabuf_sim::{CpuMapId, DeviceId, DmaMapping, PhysRange, Sim};

use crate::SystemConfig;
use crate::attach::{AttachPlan, ImporterCaps};
use crate::bracket::CpuBracket;
use crate::heap::{Exporter, PageAllocator};
use crate::ranges::RangeSet;
use crate::report::Report;
use crate::resv::Resv;

/// A buffer's identity in its [`System`](crate::System): what reports carry, so that a
/// program maps them back to its own objects without parsing names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufferId(pub(crate) u32);

impl BufferId {
    /// The buffer's position in allocation order (0 for the first buffer made).
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One attachment: the device, how it reaches the pages, its mapping, and what the
/// framework was told about the bytes it wrote.
pub(crate) struct AttState {
    pub(crate) dev: usize,
    pub(crate) plan: AttachPlan,
    pub(crate) caps: ImporterCaps,
    /// Pins held: a static importer of a dynamic exporter holds one from attach.
    pub(crate) pins: u32,
    /// A dynamic importer's `move_notify`.
    pub(crate) move_notify: Option<Box<dyn FnMut()>>,
    pub(crate) mapping: Option<DmaMapping>,
    /// Bytes this device wrote since it mapped or last handed them over.
    pub(crate) written: RangeSet,
    /// Bytes others changed since this device's cache (or bounce slot) last looked.
    pub(crate) stale: RangeSet,
    /// Bytes this device wrote into its private cache and has not flushed yet.
    pub(crate) cache_dirty: RangeSet,
    /// The buffer moved while this (dynamic) importer had it mapped: the mapping still
    /// addresses the old pages until it maps again.
    pub(crate) moved: bool,
}

impl AttState {
    pub(crate) fn device(&self) -> DeviceId {
        DeviceId(self.dev as u16)
    }
}

/// One buffer (`struct dma_buf`).
pub(crate) struct BufState {
    pub(crate) name: String,
    pub(crate) exporter: Box<dyn Exporter>,
    pub(crate) refs: usize,
    pub(crate) attachments: Vec<Option<AttState>>,
    /// The exporter's kernel mapping (vmap), made on first CPU access.
    pub(crate) kmap: Option<CpuMapId>,
    /// Bytes written through the CPU cache and declared, not yet handed over to a device:
    /// the kernel's own writes (bounce copies back, a udmabuf's memfd) and what CPU
    /// brackets that ended wrote (Minimal).
    pub(crate) cpu_dirty: RangeSet,
    /// Bytes the exporter zeroed through the CPU cache at allocation that no device has
    /// been about to access since, nor the CPU overwritten (Minimal hands them over
    /// lazily: a device's first job or access bracket on them, never its map).
    pub(crate) zeroed: RangeSet,
    /// Bytes non-coherent devices wrote since the CPU last looked (Minimal).
    pub(crate) dev_dirty: RangeSet,
    /// The user-space sync bracket in progress, with the bytes written in it.
    pub(crate) user_bracket: Option<(CpuBracket, RangeSet)>,
    /// Live user-space mappings.
    pub(crate) mmaps: usize,
    /// Kernel CPU brackets in progress, and what vmap writes declared inside them.
    pub(crate) kernel_brackets: u32,
    pub(crate) kernel_written: RangeSet,
    /// Brackets opened without a guard (`raw::begin_cpu_access`), innermost last.
    pub(crate) raw_brackets: Vec<CpuBracket>,
    /// Live kernel mappings (vmap).
    pub(crate) vmaps: u32,
    /// Whether the framework frees the backing at release (heap and device memory), or
    /// the memory belongs to someone else (a udmabuf's memfd, a custom exporter).
    pub(crate) owns_pages: bool,
    pub(crate) released: bool,
    /// The reservation object: the fences of the buffer's users (`dma_buf->resv`).
    pub(crate) resv: Arc<Resv>,
}

impl BufState {
    pub(crate) fn new(exporter: Box<dyn Exporter>, id: usize) -> Self {
        BufState {
            name: format!("buf{id}"),
            exporter,
            refs: 1,
            attachments: Vec::new(),
            kmap: None,
            cpu_dirty: RangeSet::new(),
            dev_dirty: RangeSet::new(),
            zeroed: RangeSet::new(),
            user_bracket: None,
            mmaps: 0,
            kernel_brackets: 0,
            kernel_written: RangeSet::new(),
            raw_brackets: Vec::new(),
            vmaps: 0,
            owns_pages: false,
            released: false,
            resv: Arc::new(Resv::new()),
        }
    }

    /// The CPU writes `r` and has not declared it yet (the bracket it is in, if any, has
    /// not ended): whatever was declared of those bytes before is superseded, and is no
    /// longer the framework's to hand over until the bracket ends.
    pub(crate) fn cpu_written(&mut self, r: std::ops::Range<u64>) {
        self.cpu_dirty.remove(r.clone());
        self.zeroed.remove(r);
    }

    /// Pins held by all attachments together.
    pub(crate) fn total_pins(&self) -> u32 {
        self.attachments.iter().flatten().map(|a| a.pins).sum()
    }

    /// Whether CPU access needs cache maintenance (cached memory), as the exporter says.
    pub(crate) fn cpu_cached(&self) -> bool {
        self.exporter.needs_cpu_sync()
    }

    /// The physical pieces of buffer range `r`.
    pub(crate) fn phys(&self, r: std::ops::Range<u64>) -> Vec<PhysRange> {
        let mut out = Vec::new();
        let mut base = 0u64;
        for p in &self.exporter.backing().pages {
            let (s, e) = (r.start.max(base), r.end.min(base + p.len));
            if s < e {
                out.push(PhysRange { start: p.start.add(s - base), len: e - s });
            }
            base += p.len;
        }
        out
    }

    pub(crate) fn att(&self, idx: usize) -> Option<&AttState> {
        self.attachments.get(idx).and_then(Option::as_ref)
    }

    pub(crate) fn att_mut(&mut self, idx: usize) -> Option<&mut AttState> {
        self.attachments.get_mut(idx).and_then(Option::as_mut)
    }

    /// Adds `set` to the stale bytes of every attachment but `except`.
    pub(crate) fn mark_stale_for_others(&mut self, except: Option<usize>, set: &RangeSet) {
        for (i, a) in self.attachments.iter_mut().enumerate() {
            if let Some(a) = a
                && Some(i) != except
            {
                a.stale.union(set);
            }
        }
    }
}

/// The machine and the framework's state.
pub(crate) struct Inner {
    pub(crate) sim: Sim,
    pub(crate) cfg: SystemConfig,
    pub(crate) pages: PageAllocator,
    pub(crate) bufs: Vec<BufState>,
    pub(crate) reports: Vec<Report>,
    /// Per device with a private cache, the physical addresses it has had mapped: what
    /// its cache may hold lines of. Pages outside it (fresh from a heap) need no
    /// invalidate before the device's first look.
    pub(crate) footprints: Vec<RangeSet>,
}

impl Inner {
    pub(crate) fn noncoherent(&self, dev: usize) -> bool {
        !self.sim.platform().devices[dev].coherent
    }
}
