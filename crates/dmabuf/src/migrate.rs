//! Migration: a dynamic exporter moves a buffer between its device's local memory and
//! system memory (`move_notify` for dynamic importers, refused while pinned or mapped).

use dmabuf_sim::{DeviceId, DmaAttrs, DmaDirection};

use crate::attach::check_attach;
use crate::dma_buf::DmaBuf;
use crate::error::Error;
use crate::heap::HeapKind;

/// Where a dynamic exporter's buffer lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// System memory (scattered cached pages).
    System,
    /// The exporting device's local memory.
    Device,
}

impl DmaBuf {
    /// Whether the buffer may move now: a dynamic exporter, nobody pinning, nothing
    /// mapped.
    pub fn can_migrate(&self) -> Result<(), Error> {
        self.with(|inner, id| {
            let b = &inner.bufs[id];
            let devices = &inner.sim.platform().devices;
            if !b.exporter.is_dynamic() {
                return Err(Error::NotDynamic { buffer: b.name.clone(), exporter: b.exporter.name().into() });
            }
            if let Some(a) = b.attachments.iter().flatten().find(|a| a.pins > 0) {
                return Err(Error::Pinned { buffer: b.name.clone(), device: devices[a.dev].name.clone() });
            }
            // A dynamic importer's mapping does not pin: it hears `move_notify` and maps
            // again. Any other mapping holds the pages where they are.
            if let Some(a) = b.attachments.iter().flatten().find(|a| a.mapping.is_some() && !a.caps.dynamic) {
                return Err(Error::Busy {
                    buffer: b.name.clone(),
                    what: format!("mapped by `{}`", devices[a.dev].name),
                });
            }
            if b.vmaps > 0 {
                return Err(Error::Busy { buffer: b.name.clone(), what: "vmapped by the kernel".into() });
            }
            if b.mmaps > 0 {
                return Err(Error::Busy { buffer: b.name.clone(), what: "mmapped by user space".into() });
            }
            if b.user_bracket.is_some() {
                return Err(Error::Busy {
                    buffer: b.name.clone(),
                    what: "inside a sync ioctl bracket of user space (SYNC_START without its END)".into(),
                });
            }
            Ok(())
        })
    }

    /// Moves a dynamic exporter's buffer to system memory or back to its device's local
    /// memory. The owner device copies the bytes by DMA; every dynamic importer gets
    /// `move_notify`, and one that keeps using its old mapping reaches the old pages (a
    /// [`Report::MappingAfterMove`](crate::Report::MappingAfterMove)). Refused while pinned
    /// or mapped by another importer, or when an attached importer could not reach the
    /// new place.
    pub fn migrate(&self, to: Placement) -> Result<(), Error> {
        self.can_migrate()?;
        let notify = {
            let mut inner = self.sys.0.borrow_mut();
            let inner = &mut *inner;
            let id = self.id;
            let Some(owner) = inner.bufs[id].exporter.exporting_device() else {
                let b = &inner.bufs[id];
                return Err(Error::NotDynamic { buffer: b.name.clone(), exporter: b.exporter.name().into() });
            };
            let old = inner.bufs[id].exporter.backing().clone();
            if inner.bufs[id].exporter.owner().is_some() == (to == Placement::Device) {
                return Ok(());
            }
            let size = old.size();
            let new = match to {
                Placement::System => inner.pages.allocate(HeapKind::System, size),
                Placement::Device => inner.pages.allocate_local(owner, size),
            }
            .ok_or_else(|| Error::OutOfMemory { heap: format!("{to:?}"), size })?;
            // Every importer must reach the new place.
            let name = inner.bufs[id].name.clone();
            for a in inner.bufs[id].attachments.iter().flatten() {
                if let Err(e) = check_attach(inner.sim.platform(), &name, &new, a.dev, a.caps) {
                    inner.pages.free(&new);
                    return Err(e.into());
                }
            }
            // The owner's copy engine moves the bytes, through the streaming DMA API.
            let o = DeviceId(owner as u16);
            let src = inner.sim.dma_map(o, &old.pages, DmaDirection::ToDevice, DmaAttrs::default())?;
            let dst = inner.sim.dma_map(o, &new.pages, DmaDirection::FromDevice, DmaAttrs::default())?;
            // The copy engine's cache may hold lines others have since overwritten, and
            // its writes land in that cache: drop it before, write it back after.
            for p in &old.pages {
                inner.sim.device_cache_invalidate(o, *p)?;
            }
            let mut bytes = vec![0u8; size as usize];
            let mut off = 0usize;
            for (bus, n) in src.bus_ranges(0, size) {
                inner.sim.device_read(o, bus, &mut bytes[off..off + n as usize])?;
                off += n as usize;
            }
            off = 0;
            for (bus, n) in dst.bus_ranges(0, size) {
                inner.sim.device_write(o, bus, &bytes[off..off + n as usize])?;
                off += n as usize;
            }
            for p in &new.pages {
                inner.sim.device_cache_flush(o, *p)?;
            }
            inner.sim.dma_unmap(src, DmaAttrs::default())?;
            inner.sim.dma_unmap(dst, DmaAttrs::default())?;
            if let Some(m) = inner.bufs[id].kmap.take() {
                inner.sim.cpu_unmap(m)?;
            }
            // A dynamic importer still mapped keeps addressing the old pages until it maps
            // again: they stay allocated (and are not the buffer any more) until it does.
            let mut moved_mapping = false;
            for a in inner.bufs[id].attachments.iter_mut().flatten() {
                if a.mapping.is_some() {
                    a.moved = true;
                    moved_mapping = true;
                }
            }
            if !moved_mapping {
                inner.pages.free(&old);
            }
            inner.bufs[id].exporter.set_backing(new.clone());
            for a in inner.bufs[id].attachments.iter_mut().flatten() {
                if let Ok(plan) = check_attach(inner.sim.platform(), &name, &new, a.dev, a.caps) {
                    a.plan = plan;
                }
            }
            // Ranges tracked against the old pages mean nothing now; the device caches may
            // hold lines of the new pages from their earlier lives.
            inner.bufs[id].cpu_dirty.clear();
            inner.bufs[id].dev_dirty.clear();
            inner.bufs[id].zeroed.clear();
            for a in inner.bufs[id].attachments.iter_mut().flatten() {
                a.stale.insert(0..size);
            }
            let mut notify = Vec::new();
            for (i, a) in inner.bufs[id].attachments.iter_mut().enumerate() {
                if let Some(a) = a
                    && let Some(f) = a.move_notify.take()
                {
                    notify.push((i, f));
                }
            }
            notify
        };
        // Called without the framework borrowed: an importer may map again from it.
        let mut back = Vec::new();
        for (i, mut f) in notify {
            f();
            back.push((i, f));
        }
        self.with(|inner, id| {
            for (i, f) in back {
                if let Some(a) = inner.bufs[id].attachments[i].as_mut() {
                    a.move_notify = Some(f);
                }
            }
        });
        Ok(())
    }
}
