//! A device attached to a buffer (`struct dma_buf_attachment`): pins, the mapping
//! (`dma_buf_map_attachment`), device accesses through it, and the device-side access
//! bracket of importers that keep their mapping.

use std::ops::Range;

use dmabuf_sim::{BusAddr, DeviceId, DmaDirection, DmaMapping, WriteId};

use crate::attach::AttachPlan;
use crate::dma_buf::DmaBuf;
use crate::error::Error;
use crate::maintenance::bus_phys;
use crate::report::Report;
use crate::resv::ResvUsage;
use crate::state::{AttState, Inner};

/// A device attached to a buffer (`struct dma_buf_attachment`). Dropping it detaches
/// (`dma_buf_detach`).
pub struct Attachment {
    pub(crate) buf: DmaBuf,
    pub(crate) idx: usize,
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.buf.sys.0.try_borrow_mut() {
            let inner = &mut *inner;
            let b = &mut inner.bufs[self.buf.id];
            if let Some(a) = b.attachments[self.idx].take() {
                let desc = &inner.sim.platform().devices[a.dev];
                if a.pins > 0 && b.total_pins() == 0 {
                    b.exporter.unpin();
                }
                b.exporter.detach(desc);
            }
        }
    }
}

impl Attachment {
    pub(crate) fn new(buf: DmaBuf, idx: usize) -> Attachment {
        Attachment { buf, idx }
    }

    /// The buffer this attachment is to.
    pub fn buffer(&self) -> &DmaBuf {
        &self.buf
    }

    /// The importing device.
    pub fn device(&self) -> DeviceId {
        DeviceId(self.state(|a| a.dev) as u16)
    }

    /// How the device reaches the buffer: directly, through its IOMMU, or bounced.
    pub fn plan(&self) -> AttachPlan {
        self.state(|a| a.plan)
    }

    /// `dma_buf_pin`: the buffer may not move until [`Attachment::unpin`].
    pub fn pin(&self) {
        let mut inner = self.buf.sys.0.borrow_mut();
        let b = &mut inner.bufs[self.buf.id];
        if b.total_pins() == 0 {
            b.exporter.pin();
        }
        if let Some(a) = b.att_mut(self.idx) {
            a.pins += 1;
        }
    }

    /// `dma_buf_unpin`. An unpin without a pin is reported and changes nothing.
    pub fn unpin(&self) {
        let mut inner = self.buf.sys.0.borrow_mut();
        let inner = &mut *inner;
        let buffer = self.buf.id();
        let b = &mut inner.bufs[self.buf.id];
        let Some(a) = b.att_mut(self.idx) else { return };
        if a.pins == 0 {
            let device = a.device();
            inner.reports.push(Report::UnpinNotPinned { buffer, device });
            return;
        }
        a.pins -= 1;
        if b.total_pins() == 0 {
            b.exporter.unpin();
        }
    }

    fn state<R>(&self, f: impl FnOnce(&AttState) -> R) -> R {
        let inner = self.buf.sys.0.borrow();
        f(inner.bufs[self.buf.id].att(self.idx).expect("a live handle's attachment exists"))
    }

    /// `dma_buf_map_attachment`: maps the buffer for the device; the returned mapping
    /// unmaps on drop. Map is the barrier after which the device sees every CPU write
    /// that was handed over (ended brackets).
    pub fn map(&self, dir: DmaDirection) -> Result<Mapping<'_>, Error> {
        self.map_raw(dir)?;
        Ok(Mapping { att: self, dir })
    }

    /// The direction the attachment is mapped for, if it is mapped.
    pub fn mapped_direction(&self) -> Option<DmaDirection> {
        self.state(|a| a.mapping.as_ref().map(|m| m.dir))
    }

    fn device_name(&self) -> String {
        self.buf.system().platform().devices[self.device().index()].name.clone()
    }

    /// `dma_buf_map_attachment` without a guard: the mapping stays until
    /// [`raw::unmap_attachment`](crate::raw::unmap_attachment).
    pub(crate) fn map_raw(&self, dir: DmaDirection) -> Result<(), Error> {
        if self.mapped_direction().is_some() {
            return Err(Error::AlreadyMapped { buffer: self.buf.name(), device: self.device_name() });
        }
        // An importer that needs contiguous memory and has no IOMMU refuses a scattered
        // buffer when it maps it, as `drm_gem_dma_prime_import_sg_table` does; under the
        // strict rules its attach was refused already.
        let refused = self.buf.with(|inner, id| {
            let b = &inner.bufs[id];
            let a = b.att(self.idx)?;
            let d = &inner.sim.platform().devices[a.dev];
            let backing = b.exporter.backing();
            (d.needs_contiguous && !d.iommu && !backing.is_contiguous()).then(|| {
                let segments = 1 + backing.pages.windows(2).filter(|w| w[0].end() != w[1].start).count();
                Error::ImportNotContiguous { buffer: b.name.clone(), device: d.name.clone(), segments }
            })
        });
        if let Some(e) = refused {
            return Err(e);
        }
        // A static importer's map waits for the kernel's own work on the buffer (a move, a
        // clear) first, as `dma_buf_map_attachment` does; a dynamic importer synchronises
        // itself. No borrow is held: the wait may run device jobs.
        if !self.state(|a| a.caps.dynamic) {
            self.buf.resv().wait_timeout(ResvUsage::Kernel, None)?;
        }
        self.buf.with(|inner, id| {
            inner.cfg.maintenance.implementation().map(inner, id, self.idx, dir)?;
            let dev = inner.bufs[id].att(self.idx).map_or(0, |a| a.dev);
            if let Some(m) = inner.bufs[id].att(self.idx).and_then(|a| a.mapping.clone()) {
                crate::maintenance::note_footprint(inner, dev, &m);
            }
            let desc = &inner.sim.platform().devices[dev];
            inner.bufs[id].exporter.map(desc, dir);
            Ok(())
        })
    }

    /// `dma_buf_unmap_attachment` without a guard. An unmap of what is not mapped is
    /// reported and refused.
    pub(crate) fn unmap_raw(&self) -> Result<(), Error> {
        if self.mapped_direction().is_none() {
            let (buffer, device) = (self.buf.id(), self.device());
            self.buf.with(|i, _| i.reports.push(Report::UnmapNotMapped { buffer, device }));
            return Err(Error::NotMapped { buffer: self.buf.name(), device: self.device_name() });
        }
        self.unmap()
    }

    pub(crate) fn unmap(&self) -> Result<(), Error> {
        self.buf.with(|inner, id| {
            let Some(a) = inner.bufs[id].att(self.idx) else { return Ok(()) };
            let Some(dir) = a.mapping.as_ref().map(|m| m.dir) else { return Ok(()) };
            let dev = a.dev;
            inner.cfg.maintenance.implementation().unmap(inner, id, self.idx)?;
            if let Some(a) = inner.bufs[id].att_mut(self.idx) {
                a.moved = false;
            }
            let desc = &inner.sim.platform().devices[dev];
            inner.bufs[id].exporter.unmap(desc, dir);
            Ok(())
        })
    }

    /// The mapping a device access goes through: a missing one, or one of the wrong
    /// direction, is reported and refused.
    fn mapping_for(&self, access: &'static str) -> Result<DmaDirection, Error> {
        let (buffer, device) = (self.buf.id(), self.device());
        let Some(mapped) = self.mapped_direction() else {
            self.buf.with(|i, _| i.reports.push(Report::DeviceAccessUnmapped { buffer, device }));
            return Err(Error::NotMapped { buffer: self.buf.name(), device: self.device_name() });
        };
        if self.state(|a| a.moved) && access != "access" {
            self.buf.with(|i, _| i.reports.push(Report::MappingAfterMove { buffer, device }));
        }
        let ok = match access {
            "read" => mapped.device_reads(),
            "write" => mapped.device_writes(),
            _ => true,
        };
        if !ok {
            self.buf.with(|i, _| i.reports.push(Report::DeviceDirection { buffer, device, mapped, access }));
            return Err(Error::WrongDirection { buffer: self.buf.name(), device: self.device_name(), mapped, access });
        }
        Ok(mapped)
    }

    /// How the device addresses buffer range `r`: through the sg table, or, for a device
    /// that needs contiguous memory and has no IOMMU, linearly from the first address
    /// (what such hardware does with whatever it is given).
    fn pieces(&self, inner: &Inner, r: &Range<u64>) -> Vec<(BusAddr, u64)> {
        let Some(a) = inner.bufs[self.buf.id].att(self.idx) else { return Vec::new() };
        let Some(m) = a.mapping.as_ref() else { return Vec::new() };
        let d = &inner.sim.platform().devices[a.dev];
        if d.needs_contiguous && !d.iommu {
            return m.bus_address(0).map(|b| vec![(b.add(r.start), r.end - r.start)]).unwrap_or_default();
        }
        m.bus_ranges(r.start, r.end - r.start)
    }

    /// A device job that reads buffer range `r` through the attachment's current
    /// mapping; returns the bytes the device saw. No mapping, or a FROM_DEVICE one, is
    /// reported and refused.
    pub(crate) fn device_read_raw(&self, r: Range<u64>) -> Result<Vec<u8>, Error> {
        self.buf.check_range(&r)?;
        self.mapping_for("read")?;
        self.bare_access(r.clone())?;
        let dev = self.device();
        let mut inner = self.buf.sys.0.borrow_mut();
        let mut out = vec![0u8; (r.end - r.start) as usize];
        let mut off = 0usize;
        for (bus, len) in self.pieces(&inner, &r) {
            inner.sim.device_read(dev, bus, &mut out[off..off + len as usize])?;
            off += len as usize;
        }
        Ok(out)
    }

    /// A device job that writes `data` at buffer offset `at` through the current
    /// mapping. No mapping, or a TO_DEVICE one, is reported and refused.
    pub(crate) fn device_write_raw(&self, at: u64, data: &[u8]) -> Result<Vec<WriteId>, Error> {
        let r = at..at.saturating_add(data.len() as u64);
        self.buf.check_range(&r)?;
        self.mapping_for("write")?;
        self.bare_access(r.clone())?;
        let dev = self.device();
        let mut inner = self.buf.sys.0.borrow_mut();
        let mut ids = Vec::new();
        let mut off = 0usize;
        for (bus, len) in self.pieces(&inner, &r) {
            ids.push(inner.sim.device_write(dev, bus, &data[off..off + len as usize])?);
            off += len as usize;
        }
        let cached = inner.sim.device_has_cache(dev);
        let b = &mut inner.bufs[self.buf.id];
        if let Some(a) = b.att_mut(self.idx) {
            if cached {
                a.cache_dirty.insert(r.clone());
            }
            a.written.insert(r.clone());
        }
        // Whatever other devices' caches hold of these bytes is stale from now on.
        b.mark_stale_for_others(Some(self.idx), &std::iter::once(r).collect());
        Ok(ids)
    }

    /// What must reach the device before it touches `r` and was left for its job or
    /// access bracket to hand over (the heap's zeros, under `Minimal`), for a caller that
    /// accesses without either.
    fn bare_access(&self, r: Range<u64>) -> Result<(), Error> {
        self.buf.with(|inner, id| inner.cfg.maintenance.implementation().device_access(inner, id, self.idx, r))
    }

    /// Device-side `begin_access` on the current mapping, without a guard.
    pub(crate) fn begin_access_raw(&self, range: Range<u64>) -> Result<(), Error> {
        self.buf.check_range(&range)?;
        self.mapping_for("access")?;
        self.buf
            .with(|inner, id| inner.cfg.maintenance.implementation().begin_device_access(inner, id, self.idx, range))
    }

    /// The driver drops the device's own cache over `range` of the current mapping, as a
    /// GPU driver does at the start of every job whatever it knows of who wrote the
    /// buffer. Nothing happens for a device without a cache or an unmapped attachment.
    pub fn invalidate_device_cache(&self, range: Range<u64>) -> Result<(), Error> {
        self.buf.check_range(&range)?;
        let mut inner = self.buf.sys.0.borrow_mut();
        let inner = &mut *inner;
        let devid = self.device_in(inner);
        let Some(m) = self.current_mapping(inner) else { return Ok(()) };
        if inner.sim.device_has_cache(devid) {
            for p in bus_phys(&m, range) {
                inner.sim.device_cache_invalidate(devid, p)?;
            }
        }
        Ok(())
    }

    /// The start of a device job through the current mapping, as the device's driver
    /// runs it under the job contract (coherency model, section 7): what the device's
    /// private cache holds of `range` is dropped, so the job sees what others made
    /// visible. Nothing for a device without a cache, or one described as lacking the
    /// contract.
    pub(crate) fn begin_job(&self, range: Range<u64>) -> Result<(), Error> {
        self.job_cache(range, false)
    }

    /// The end of a device job: what the job wrote in `range` leaves the device's private
    /// cache, so that the job's fence, signalled next, stands for visible bytes.
    pub(crate) fn end_job(&self, range: Range<u64>) -> Result<(), Error> {
        self.job_cache(range, true)
    }

    fn job_cache(&self, range: Range<u64>, end: bool) -> Result<(), Error> {
        self.buf.check_range(&range)?;
        self.buf.with(|inner, id| {
            let m = inner.cfg.maintenance.implementation();
            if end { m.end_job(inner, id, self.idx, range) } else { m.begin_job(inner, id, self.idx, range) }
        })
    }

    /// Device-side `end_access` on the current mapping, without a guard: what the
    /// device wrote in `range` is handed to the CPU and the other devices.
    pub(crate) fn end_access_raw(&self, range: Range<u64>) -> Result<(), Error> {
        self.buf.check_range(&range)?;
        self.mapping_for("access")?;
        self.buf.with(|inner, id| inner.cfg.maintenance.implementation().end_device_access(inner, id, self.idx, range))
    }

    /// `sync_device_to_device` between two attachments' current mappings, without
    /// guards: this device (which wrote `range`) hands it to `to`'s device.
    pub(crate) fn sync_to_raw(&self, to: &Attachment, range: Range<u64>) -> Result<(), Error> {
        self.end_access_raw(range.clone())?;
        to.begin_access_raw(range)
    }

    fn current_mapping(&self, inner: &Inner) -> Option<DmaMapping> {
        inner.bufs[self.buf.id].att(self.idx).and_then(|a| a.mapping.clone())
    }

    fn device_in(&self, inner: &Inner) -> DeviceId {
        inner.bufs[self.buf.id].att(self.idx).map_or(DeviceId(0), AttState::device)
    }
}

/// A mapped attachment (`struct sg_table` as the device sees it). Dropping it unmaps.
/// Device jobs run through it.
pub struct Mapping<'a> {
    att: &'a Attachment,
    dir: DmaDirection,
}

impl Drop for Mapping<'_> {
    fn drop(&mut self) {
        // An unmap the hardware refuses leaves nothing half-done: the mapping is gone
        // either way; the error is the framework's to report through the next call.
        let _ = self.att.unmap();
    }
}

impl Mapping<'_> {
    /// The direction it was mapped for.
    pub fn direction(&self) -> DmaDirection {
        self.dir
    }

    /// The bus addresses the device uses, as `(address, length)` pieces.
    pub fn sg_table(&self) -> Vec<(BusAddr, u64)> {
        let inner = self.att.buf.sys.0.borrow();
        self.att.current_mapping(&inner).map(|m| m.bus_ranges(0, m.len())).unwrap_or_default()
    }

    /// A device job that reads buffer range `r`; returns the bytes the device saw.
    pub fn device_read(&self, r: Range<u64>) -> Result<Vec<u8>, Error> {
        self.att.device_read_raw(r)
    }

    /// A device job that writes `data` at buffer offset `at`.
    pub fn device_write(&self, at: u64, data: &[u8]) -> Result<Vec<WriteId>, Error> {
        self.att.device_write_raw(at, data)
    }

    /// A device job that fills buffer range `r` with `byte`.
    pub fn device_fill(&self, r: Range<u64>, byte: u8) -> Result<(), Error> {
        let data = vec![byte; (r.end.saturating_sub(r.start)) as usize];
        self.device_write(r.start, &data).map(|_| ())
    }

    /// Device-side `begin_access`: the device is about to access `range` through this
    /// long-lived mapping (IIO and USB gadget streaming keep their mapping and synchronise
    /// with fences). Makes what others wrote there visible to it. End it with
    /// [`Mapping::end_access`] (the [`DeviceAccess`] guard does it on drop).
    pub fn begin_access(&self, range: Range<u64>) -> Result<DeviceAccess<'_, '_>, Error> {
        self.att.begin_access_raw(range.clone())?;
        Ok(DeviceAccess { map: self, range, ended: false })
    }

    /// Device-side `end_access`: the device finished with `range`; what it wrote there is
    /// handed to the CPU and the other devices.
    pub fn end_access(&self, range: Range<u64>) -> Result<(), Error> {
        self.att.end_access_raw(range)
    }

    /// `sync_device_to_device`: hands `range` from this mapping's device (which wrote it)
    /// to `to`'s device, doing only what the pair needs: the writer's cache is written
    /// back, the reader's cache and any CPU line it would snoop are dropped, bounce slots
    /// are copied; nothing at all between two coherent devices without caches.
    pub fn sync_to(&self, to: &Mapping<'_>, range: Range<u64>) -> Result<(), Error> {
        self.att.sync_to_raw(to.att, range)
    }
}

/// A device-side access bracket on a long-lived mapping; ends on drop.
pub struct DeviceAccess<'m, 'a> {
    map: &'m Mapping<'a>,
    range: Range<u64>,
    ended: bool,
}

impl DeviceAccess<'_, '_> {
    /// Ends the bracket now, returning any error the maintenance hit.
    pub fn end(mut self) -> Result<(), Error> {
        self.ended = true;
        self.map.end_access(self.range.clone())
    }
}

impl Drop for DeviceAccess<'_, '_> {
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.map.end_access(self.range.clone());
        }
    }
}
