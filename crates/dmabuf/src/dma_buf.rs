//! The shared buffer (`struct dma_buf`): references, name, the reservation object and
//! its sync-file ioctls, `poll`, attach, and the CPU access bracket's hand-over points.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use dmabuf_sim::{DeviceId, DmaDirection, SimError};

use crate::attach::{AttachError, AttachPlan, AttachPolicy, Backing, ImporterCaps, check_attach};
use crate::attachment::Attachment;
use crate::bracket::CpuBracket;
use crate::error::Error;
use crate::fence::{Fence, FenceError, unwrap};
use crate::migrate::Placement;
use crate::ranges::RangeSet;
use crate::report::Report;
use crate::resv::{Resv, ResvUsage};
use crate::state::{AttState, BufferId, Inner};
use crate::sync_file::SyncFile;
use crate::system::System;
use crate::uapi::{Readiness, SyncFlags};

/// A shared buffer (`struct dma_buf`). Cloning takes a reference (`get_dma_buf`); dropping
/// the last one releases the buffer (`dma_buf_put`), reporting attachments or mappings
/// still alive.
pub struct DmaBuf {
    pub(crate) sys: System,
    pub(crate) id: usize,
    /// Whether this handle holds one of the buffer's references. An attachment's view of
    /// its buffer does not (in the kernel it is `attach->dmabuf`, no `get_dma_buf`), but it
    /// still holds the system: dropping it must let the system go.
    counted: bool,
}

impl Clone for DmaBuf {
    fn clone(&self) -> Self {
        self.sys.0.borrow_mut().bufs[self.id].refs += 1;
        DmaBuf { sys: self.sys.clone(), id: self.id, counted: true }
    }
}

impl Drop for DmaBuf {
    fn drop(&mut self) {
        if !self.counted {
            return;
        }
        let Ok(mut inner) = self.sys.0.try_borrow_mut() else { return };
        let inner = &mut *inner;
        let buffer = BufferId(self.id as u32);
        let b = &mut inner.bufs[self.id];
        b.refs -= 1;
        if b.refs > 0 {
            return;
        }
        b.released = true;
        let attached: Vec<DeviceId> = b.attachments.iter().flatten().map(AttState::device).collect();
        let mapped: Vec<DeviceId> =
            b.attachments.iter().flatten().filter(|a| a.mapping.is_some()).map(AttState::device).collect();
        let vmapped = b.vmaps > 0;
        if let Some(m) = b.kmap.take() {
            let _ = inner.sim.cpu_unmap(m);
        }
        b.exporter.release();
        // Pages of a leaked attachment stay with the device; only a clean release frees them.
        if attached.is_empty() && b.owns_pages {
            let backing = b.exporter.backing().clone();
            if backing.attr != dmabuf_sim::MemAttr::Cached {
                inner.sim.set_linear_attr(&backing.pages, dmabuf_sim::MemAttr::Cached);
            }
            inner.pages.free(&backing);
        }
        if !attached.is_empty() {
            inner.reports.push(Report::LeakedAttachments { buffer, devices: attached });
        }
        if !mapped.is_empty() {
            inner.reports.push(Report::LeakedMappings { buffer, devices: mapped });
        }
        if vmapped {
            inner.reports.push(Report::VmapAtRelease { buffer });
        }
    }
}

impl DmaBuf {
    /// A new handle on buffer `id`, which holds the reference the caller gives it.
    pub(crate) fn from_index(sys: System, id: usize) -> DmaBuf {
        DmaBuf { sys, id, counted: true }
    }

    /// A handle that does not own a reference (an attachment's view of its buffer).
    pub(crate) fn borrowed(&self) -> DmaBuf {
        DmaBuf { sys: self.sys.clone(), id: self.id, counted: false }
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Inner, usize) -> R) -> R {
        f(&mut self.sys.0.borrow_mut(), self.id)
    }

    /// The buffer's identity in its system, as reports name it.
    pub fn id(&self) -> BufferId {
        BufferId(self.id as u32)
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.with(|i, id| i.bufs[id].exporter.backing().size())
    }

    /// The name (`DMA_BUF_SET_NAME`; `buf<N>` until set).
    pub fn name(&self) -> String {
        self.with(|i, id| i.bufs[id].name.clone())
    }

    /// The exporter's name (`exp_name`).
    pub fn exporter_name(&self) -> String {
        self.with(|i, id| i.bufs[id].exporter.name().to_string())
    }

    /// The physical pages (what an exporter would put in its sg table).
    pub fn backing(&self) -> Backing {
        self.with(|i, id| i.bufs[id].exporter.backing().clone())
    }

    /// `DMA_BUF_SET_NAME`: at most 31 bytes.
    pub fn set_name(&self, name: &str) -> Result<(), Error> {
        if name.len() > 31 {
            return Err(Error::NameTooLong { name: name.into() });
        }
        self.with(|i, id| i.bufs[id].name = name.to_string());
        Ok(())
    }

    /// The system the buffer lives in.
    pub fn system(&self) -> &System {
        &self.sys
    }

    /// The buffer's reservation object (`dma_buf->resv`): add fences to it under its lock,
    /// wait for them, or walk them.
    pub fn resv(&self) -> Arc<Resv> {
        self.with(|i, id| i.bufs[id].resv.clone())
    }

    /// `DMA_BUF_IOCTL_EXPORT_SYNC_FILE`: a sync file of what an access with `flags` must
    /// wait for: with `DMA_BUF_SYNC_WRITE` every user's fence (usage READ and stricter),
    /// with only `DMA_BUF_SYNC_READ` the writers' (WRITE and stricter). Nothing to wait
    /// for gives a signalled stub. `flags` must be a non-empty subset of READ | WRITE.
    pub fn export_sync_file(&self, flags: u64) -> Result<SyncFile, Error> {
        let flags = Self::sync_file_flags("DMA_BUF_IOCTL_EXPORT_SYNC_FILE", flags)?;
        let fence = self.resv().get_singleton(ResvUsage::rw(flags.writes()))?;
        Ok(SyncFile::new(fence.unwrap_or_else(Fence::stub)))
    }

    /// `DMA_BUF_IOCTL_IMPORT_SYNC_FILE`: adds the fences of `sync_file` (unwrapped) to the
    /// buffer, as writers' fences (usage WRITE) if `flags` has `DMA_BUF_SYNC_WRITE`, else
    /// as readers' (READ). Implicitly synchronised users then wait for them.
    pub fn import_sync_file(&self, flags: u64, sync_file: &SyncFile) -> Result<(), Error> {
        let flags = Self::sync_file_flags("DMA_BUF_IOCTL_IMPORT_SYNC_FILE", flags)?;
        let usage = if flags.writes() { ResvUsage::Write } else { ResvUsage::Read };
        let fences: Vec<_> = unwrap(sync_file.fence()).collect();
        if fences.is_empty() {
            return Ok(());
        }
        let resv = self.resv();
        let mut guard = resv.lock();
        guard.reserve_fences(fences.len());
        for f in &fences {
            guard.add_fence(f, usage)?;
        }
        Ok(())
    }

    fn sync_file_flags(ioctl: &'static str, flags: u64) -> Result<SyncFlags, Error> {
        u32::try_from(flags).ok().and_then(SyncFlags::from_bits).ok_or(Error::BadSyncFileFlags { ioctl, flags })
    }

    /// What `poll` on the buffer reports now (`dma_buf_poll`): readable (`POLLIN`) when
    /// every writer's fence has signalled, writable (`POLLOUT`) when every reader's and
    /// writer's has.
    pub fn poll(&self) -> Readiness {
        let resv = self.resv();
        Readiness {
            readable: resv.test_signaled(ResvUsage::rw(false)),
            writable: resv.test_signaled(ResvUsage::rw(true)),
        }
    }

    /// `poll` with a timeout: waits until the buffer is ready for `interest` (readable
    /// for `Read`, writable for `Write`, either for `ReadWrite`) or `timeout` passes
    /// (`None`: no limit), then reports what is ready. A timeout is not an error: the
    /// readiness says what is not ready.
    pub fn poll_timeout(&self, interest: SyncFlags, timeout: Option<Duration>) -> Result<Readiness, Error> {
        // Readable comes no later than writable, so "either" waits for readable.
        let usage = ResvUsage::rw(interest == SyncFlags::Write);
        match self.resv().wait_timeout(usage, timeout) {
            Ok(()) | Err(FenceError::Timeout) => Ok(self.poll()),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn check_range(&self, r: &Range<u64>) -> Result<(), Error> {
        let size = self.size();
        if r.start > r.end || r.end > size {
            return Err(Error::OutOfBounds { buffer: self.name(), start: r.start, end: r.end, size });
        }
        Ok(())
    }

    /// `dma_buf_attach`: checks the device against the buffer. Under `Strict` a
    /// combination that cannot work is refused here; under `Linux` it is accepted and
    /// recorded as a [`Report::AttachAccepted`].
    pub fn attach(&self, dev: DeviceId) -> Result<Attachment, Error> {
        self.attach_with(dev, ImporterCaps::default())
    }

    /// `dma_buf_dynamic_attach` with the importer's capabilities.
    pub fn attach_with(&self, dev: DeviceId, caps: ImporterCaps) -> Result<Attachment, Error> {
        let idx = self.attach_state(dev, caps)?;
        // An attachment does not hold a reference on the buffer (as in the kernel, the
        // importer holds the file): releasing the buffer with attachments left is a leak.
        Ok(Attachment::new(self.borrowed(), idx))
    }

    /// `dma_buf_dynamic_attach` with `move_notify`: the importer does not pin the buffer;
    /// when the exporter moves it, `move_notify` is called and the importer must map
    /// again.
    pub fn attach_dynamic(
        &self,
        dev: DeviceId,
        allow_peer2peer: bool,
        move_notify: impl FnMut() + 'static,
    ) -> Result<Attachment, Error> {
        let caps = ImporterCaps { allow_peer2peer, dynamic: true };
        let idx = self.attach_state(dev, caps)?;
        self.with(|i, id| {
            if let Some(a) = i.bufs[id].att_mut(idx) {
                a.move_notify = Some(Box::new(move_notify));
            }
        });
        Ok(Attachment::new(self.borrowed(), idx))
    }

    fn attach_state(&self, dev: DeviceId, caps: ImporterCaps) -> Result<usize, Error> {
        if dev.index() >= self.sys.platform().devices.len() {
            return Err(SimError::NoSuchDevice(dev).into());
        }
        // A dynamic exporter moves the buffer where the new importer can reach it (to
        // system memory), unless someone pins it where it is.
        let (refused, dynamic) = self.with(|inner, id| {
            let b = &inner.bufs[id];
            let r = check_attach(inner.sim.platform(), &b.name, b.exporter.backing(), dev.index(), caps);
            (r.err(), b.exporter.is_dynamic())
        });
        if let Some(e) = refused
            && dynamic
            && matches!(e, AttachError::NoPeerToPeer { .. } | AttachError::PeerToPeerNotAllowed { .. })
            && self.can_migrate().is_ok()
        {
            self.migrate(Placement::System)?;
            self.with(|inner, id| {
                if inner.cfg.attach == AttachPolicy::Strict {
                    inner.reports.push(Report::MigratedForImporter { buffer: BufferId(id as u32), device: dev });
                }
            });
        }
        let mut inner = self.sys.0.borrow_mut();
        let inner = &mut *inner;
        let platform = inner.sim.platform();
        let b = &inner.bufs[self.id];
        let plan = match check_attach(platform, &b.name, b.exporter.backing(), dev.index(), caps) {
            Ok(plan) => plan,
            Err(e) if inner.cfg.attach == AttachPolicy::Strict => return Err(e.into()),
            Err(e) => {
                inner.reports.push(Report::AttachAccepted { buffer: BufferId(self.id as u32), device: dev, error: e });
                if platform.devices[dev.index()].iommu { AttachPlan::Iommu } else { AttachPlan::Direct }
            }
        };
        let desc = inner.sim.platform().devices[dev.index()].clone();
        let stale = crate::maintenance::footprint_stale(inner, self.id, dev.index());
        let b = &mut inner.bufs[self.id];
        if let Err(reason) = b.exporter.attach(&desc) {
            return Err(AttachError::RefusedByExporter {
                buffer: b.name.clone(),
                device: desc.name,
                exporter: b.exporter.name().into(),
                reason,
            }
            .into());
        }
        let idx = b.attachments.len();
        // A static importer of a dynamic exporter pins the buffer for as long as it is
        // attached.
        let pins = u32::from(b.exporter.is_dynamic() && !caps.dynamic);
        if pins > 0 && b.total_pins() == 0 {
            b.exporter.pin();
        }
        b.attachments.push(Some(AttState {
            dev: dev.index(),
            plan,
            caps,
            pins,
            move_notify: None,
            mapping: None,
            written: RangeSet::new(),
            // What the device's cache may hold of these pages from their earlier lives
            // (the pages it had mapped before) is stale until it first looks.
            stale,
            cache_dirty: RangeSet::new(),
            moved: false,
        }));
        Ok(idx)
    }

    /// The start of a CPU bracket (kernel or user space): the implicit wait, the
    /// maintenance, then the exporter's hook.
    pub(crate) fn begin_cpu_bracket(&self, bracket: &CpuBracket) -> Result<(), Error> {
        // Implicit synchronisation first (`__dma_buf_begin_cpu_access`): a write waits for
        // every reader and writer, a read for the writers. The kernel lets the exporter's
        // hook run before this wait; here the wait comes first, so the maintenance sees
        // what the devices finished. No borrow is held: the wait may run device jobs.
        let write = matches!(bracket.dir, DmaDirection::ToDevice | DmaDirection::Bidirectional);
        self.resv().wait_timeout(ResvUsage::rw(write), None)?;
        self.with(|inner, id| {
            if inner.bufs[id].cpu_cached() {
                inner.cfg.maintenance.implementation().begin_cpu_access(inner, id, bracket)?;
            }
            inner.bufs[id].exporter.begin_cpu_access(bracket.dir);
            Ok(())
        })
    }

    /// The end of a CPU bracket, as the end call declares it: `written` are the bytes the
    /// CPU declared written in the bracket.
    pub(crate) fn end_cpu_bracket(&self, end: &CpuBracket, written: &RangeSet) -> Result<(), Error> {
        self.with(|inner, id| {
            // The end of a bracket is a barrier: write-combined stores reach memory.
            inner.sim.cpu_barrier();
            inner.bufs[id].mark_stale_for_others(None, written);
            let r = if inner.bufs[id].cpu_cached() {
                inner.cfg.maintenance.implementation().end_cpu_access(inner, id, end, written)
            } else {
                Ok(())
            };
            inner.bufs[id].exporter.end_cpu_access(end.dir);
            r
        })
    }

    /// The bracket as this kernel takes it: an overwrite only where the kernel honours one.
    pub(crate) fn honoured(&self, mut bracket: CpuBracket) -> CpuBracket {
        bracket.overwrite &=
            bracket.dir == DmaDirection::ToDevice && self.with(|inner, _| inner.cfg.maintenance.honours_overwrite());
        bracket
    }

    /// Reports what the end of `bracket` finds: an overwrite bracket that left bytes of its
    /// range unwritten.
    pub(crate) fn check_overwrite(&self, bracket: &CpuBracket, written: &RangeSet) {
        if let Some(missed) = bracket.unwritten(written) {
            let buffer = self.id();
            self.with(|i, _| {
                i.reports.push(Report::OverwriteNotWhole { buffer, declared: bracket.range.clone(), missed })
            });
        }
    }
}
