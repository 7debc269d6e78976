//! Upstream Linux's maintenance: the system heap's `begin_cpu_access` /
//! `end_cpu_access` sync every mapped attachment over the whole buffer
//! (`dma_sync_sgtable_for_cpu` / `_for_device`), and map and unmap do the full streaming
//! DMA maintenance (`dma_map_sgtable` / `dma_unmap_sgtable`); a driver with a device
//! cache invalidates it when it maps and writes it back when it unmaps.

use std::ops::Range;

use dmabuf_sim::{DmaAttrs, DmaDirection};

use super::{Maintenance, bus_phys, job_contract_cache, mappings_for};
use crate::error::Error;
use crate::ranges::RangeSet;
use crate::state::Inner;

/// What upstream Linux does.
pub(crate) struct Upstream;

impl Maintenance for Upstream {
    fn begin_job(&self, inner: &mut Inner, buf: usize, att: usize, range: Range<u64>) -> Result<(), Error> {
        if !job_contract_cache(inner, buf, att) {
            return Ok(());
        }
        // A GPU driver drops its cache's view of the job's buffers, whatever it knows.
        let Some(a) = inner.bufs[buf].att(att) else { return Ok(()) };
        let Some(m) = a.mapping.clone() else { return Ok(()) };
        let dev = a.device();
        for p in bus_phys(&m, range) {
            inner.sim.device_cache_invalidate(dev, p)?;
        }
        Ok(())
    }

    fn begin_cpu_access(
        &self,
        inner: &mut Inner,
        buf: usize,
        dir: DmaDirection,
        _range: Range<u64>,
    ) -> Result<(), Error> {
        for m in mappings_for(inner, buf, dir) {
            inner.sim.dma_sync_for_cpu(&m, 0, m.len())?;
        }
        Ok(())
    }

    fn end_cpu_access(
        &self,
        inner: &mut Inner,
        buf: usize,
        dir: DmaDirection,
        _written: &RangeSet,
    ) -> Result<(), Error> {
        for m in mappings_for(inner, buf, dir) {
            inner.sim.dma_sync_for_device(&m, 0, m.len())?;
        }
        Ok(())
    }

    fn map(&self, inner: &mut Inner, buf: usize, att: usize, dir: DmaDirection) -> Result<(), Error> {
        let b = &inner.bufs[buf];
        let Some(a) = b.att(att) else { return Ok(()) };
        let dev = a.device();
        let pages = b.exporter.backing().pages.clone();
        let skip_cpu_sync = !b.cpu_cached();
        let m = inner.sim.dma_map(dev, &pages, dir, DmaAttrs { skip_cpu_sync })?;
        if inner.sim.device_has_cache(dev) {
            // The driver starts a job with a clean view: its whole cache goes.
            for p in &pages {
                inner.sim.device_cache_invalidate(dev, *p)?;
            }
        }
        if let Some(a) = inner.bufs[buf].att_mut(att) {
            a.mapping = Some(m);
            a.written.clear();
            a.stale.clear();
        }
        Ok(())
    }

    fn unmap(&self, inner: &mut Inner, buf: usize, att: usize) -> Result<(), Error> {
        let skip_cpu_sync = !inner.bufs[buf].cpu_cached();
        let pages = inner.bufs[buf].exporter.backing().pages.clone();
        let Some(a) = inner.bufs[buf].att_mut(att) else { return Ok(()) };
        let dev = a.device();
        let written = std::mem::take(&mut a.written);
        if inner.sim.device_has_cache(dev) {
            // The driver ends its job by writing its cache back.
            for p in &pages {
                inner.sim.device_cache_flush(dev, *p)?;
            }
        }
        if let Some(a) = inner.bufs[buf].att_mut(att) {
            a.cache_dirty.clear();
        }
        if let Some(m) = inner.bufs[buf].att_mut(att).and_then(|a| a.mapping.take()) {
            inner.sim.dma_unmap(m, DmaAttrs { skip_cpu_sync })?;
        }
        inner.bufs[buf].mark_stale_for_others(Some(att), &written);
        Ok(())
    }

    fn begin_device_access(&self, inner: &mut Inner, buf: usize, att: usize, range: Range<u64>) -> Result<(), Error> {
        let b = &inner.bufs[buf];
        let Some(a) = b.att(att) else { return Ok(()) };
        let Some(m) = a.mapping.clone() else { return Ok(()) };
        let dev = a.device();
        // Like its map (DMA_ATTR_SKIP_CPU_SYNC), no CPU sync for uncached memory.
        if b.cpu_cached() {
            inner.sim.dma_sync_for_device(&m, range.start, range.end - range.start)?;
        }
        if inner.sim.device_has_cache(dev) {
            for p in bus_phys(&m, range) {
                inner.sim.device_cache_invalidate(dev, p)?;
            }
        }
        Ok(())
    }

    fn end_device_access(&self, inner: &mut Inner, buf: usize, att: usize, range: Range<u64>) -> Result<(), Error> {
        let b = &inner.bufs[buf];
        let Some(a) = b.att(att) else { return Ok(()) };
        let Some(m) = a.mapping.clone() else { return Ok(()) };
        let dev = a.device();
        let cached = b.cpu_cached();
        if inner.sim.device_has_cache(dev) {
            for p in bus_phys(&m, range.clone()) {
                inner.sim.device_cache_flush(dev, p)?;
            }
        }
        if let Some(a) = inner.bufs[buf].att_mut(att) {
            a.cache_dirty.remove(range.clone());
        }
        if cached {
            inner.sim.dma_sync_for_cpu(&m, range.start, range.end - range.start)?;
        }
        let written = inner.bufs[buf]
            .att_mut(att)
            .map(|a| {
                let w = a.written.within(range.clone());
                a.written.remove(range);
                w
            })
            .unwrap_or_default();
        inner.bufs[buf].mark_stale_for_others(Some(att), &written);
        Ok(())
    }
}
