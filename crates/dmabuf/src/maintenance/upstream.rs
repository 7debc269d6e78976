//! Upstream Linux's maintenance: the system heap's `begin_cpu_access` /
//! `end_cpu_access` sync every mapped attachment over the whole buffer
//! (`dma_sync_sgtable_for_cpu` / `_for_device`), and map and unmap do the full streaming
//! DMA maintenance (`dma_map_sgtable` / `dma_unmap_sgtable`); a driver with a device
//! cache invalidates it when it maps and writes it back when it unmaps.
//!
//! Upstream has no ranged bracket: `dma_buf_ioctl` answers `ENOTTY` to
//! `DMA_BUF_IOCTL_SYNC_PARTIAL` (its `default:` case) and there is no
//! `dma_buf_begin_cpu_access_partial`, so a ranged kernel bracket is the full one here.
//!
//! [`Vendor`] is the same kernel with what Rockchip's BSP adds (drivers/dma-buf/dma-buf.c
//! under `CONFIG_DMABUF_PARTIAL`, as in armbian/linux-rockchip): `DMA_BUF_IOCTL_SYNC_PARTIAL`
//! calls `dma_buf_begin_cpu_access_partial` / `dma_buf_end_cpu_access_partial`, which call
//! the exporter's `begin_cpu_access_partial` / `end_cpu_access_partial` when it has them
//! and do nothing else (but the fence wait) when it has not. The heaps disagree on what
//! the range means:
//! - `rk_system_heap` (drivers/dma-buf/heaps/rk_system_heap.c,
//!   `system_heap_dma_buf_begin_cpu_access_partial`) syncs the range alone, with the heap's
//!   own device (`dma_heap_get_dev`), whoever is mapped: nothing at the begin of a
//!   `DMA_TO_DEVICE` bracket, nothing for an uncached buffer;
//! - `rk-cma-heap` (drivers/dma-buf/rk_heaps/rk-cma-heap.c,
//!   `rk_cma_heap_dma_buf_begin_cpu_access_partial`) syncs the whole buffer for every
//!   mapped attachment, as the full call does, and the range with the heap's device only
//!   while nothing is attached;
//! - every other exporter (udmabuf, DRM drivers' GEM objects, a device's local memory) has
//!   no hook: the ranged bracket does no maintenance at all.

use std::ops::Range;

use dmabuf_sim::{DmaAttrs, DmaDirection, SyncOp};

use super::{Maintenance, bus_phys, job_contract_cache, mappings_for};
use crate::bracket::CpuBracket;
use crate::error::Error;
use crate::heap::HeapKind;
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

    fn begin_cpu_access(&self, inner: &mut Inner, buf: usize, bracket: &CpuBracket) -> Result<(), Error> {
        for m in mappings_for(inner, buf, bracket.dir) {
            inner.sim.dma_sync_for_cpu(&m, 0, m.len())?;
        }
        Ok(())
    }

    fn end_cpu_access(
        &self,
        inner: &mut Inner,
        buf: usize,
        end: &CpuBracket,
        _written: &RangeSet,
    ) -> Result<(), Error> {
        for m in mappings_for(inner, buf, end.dir) {
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

/// Upstream's maintenance with Rockchip's ranged brackets (see the module's doc).
pub(crate) struct Vendor;

/// What a vendor heap's `begin_cpu_access_partial` / `end_cpu_access_partial` does with
/// the range.
enum PartialHook {
    /// `rk_system_heap`: the range alone, with the heap's device.
    Range,
    /// `rk-cma-heap`: the full call's sync of every mapped attachment; the range with the
    /// heap's device while nothing is attached.
    WholeBuffer,
    /// No hook: nothing.
    None,
}

fn partial_hook(inner: &Inner, buf: usize) -> PartialHook {
    match inner.bufs[buf].exporter.heap_kind() {
        Some(HeapKind::System) => PartialHook::Range,
        Some(HeapKind::Cma) => PartialHook::WholeBuffer,
        // The uncached heap returns early (`buffer->uncached`); the rest have no hook.
        _ => PartialHook::None,
    }
}

/// `dma_sync_single_range_for_cpu` / `_for_device` over `range` with the heap's own device
/// (`dma_heap_get_dev`): a platform device that snoops nothing, except where every DMA
/// master of the platform is coherent (x86), where the sync is a no-op.
fn heap_device_sync(inner: &mut Inner, buf: usize, range: Range<u64>, op: SyncOp) -> Result<(), Error> {
    if inner.sim.platform().devices.iter().all(|d| d.coherent) || !inner.bufs[buf].cpu_cached() {
        return Ok(());
    }
    let pieces = inner.bufs[buf].phys(range);
    for p in pieces {
        match op {
            SyncOp::Nothing => {}
            SyncOp::Clean => inner.sim.cache_clean(p)?,
            SyncOp::Invalidate => inner.sim.cache_invalidate(p)?,
        }
    }
    Ok(())
}

/// A ranged bracket's begin or end on a vendor kernel: `op` is what the heap's device
/// does over the range (`for_cpu` at a begin: nothing for `DMA_TO_DEVICE`, the hook's
/// `if (direction == DMA_TO_DEVICE) return 0;`; `for_device` at an end), `full` the full
/// call's maintenance that `rk-cma-heap` does besides.
fn vendor_partial(
    inner: &mut Inner,
    buf: usize,
    bracket: &CpuBracket,
    op: SyncOp,
    full: impl FnOnce(&mut Inner) -> Result<(), Error>,
) -> Result<(), Error> {
    match partial_hook(inner, buf) {
        PartialHook::Range => heap_device_sync(inner, buf, bracket.range.clone(), op),
        PartialHook::WholeBuffer => {
            if inner.bufs[buf].attachments.iter().flatten().next().is_none() {
                heap_device_sync(inner, buf, bracket.range.clone(), op)?;
            }
            full(inner)
        }
        PartialHook::None => Ok(()),
    }
}

impl Maintenance for Vendor {
    fn begin_cpu_access(&self, inner: &mut Inner, buf: usize, bracket: &CpuBracket) -> Result<(), Error> {
        if !bracket.partial {
            return Upstream.begin_cpu_access(inner, buf, bracket);
        }
        let op = inner.sim.platform().dma_profile.for_cpu(bracket.dir);
        vendor_partial(inner, buf, bracket, op, |inner| Upstream.begin_cpu_access(inner, buf, bracket))
    }

    fn end_cpu_access(&self, inner: &mut Inner, buf: usize, end: &CpuBracket, written: &RangeSet) -> Result<(), Error> {
        if !end.partial {
            return Upstream.end_cpu_access(inner, buf, end, written);
        }
        let op = inner.sim.platform().dma_profile.for_device(end.dir);
        vendor_partial(inner, buf, end, op, |inner| Upstream.end_cpu_access(inner, buf, end, written))
    }

    // The rest is upstream's (every method, the defaulted ones too, so that a change to
    // upstream's reaches the vendor kernel).
    fn map(&self, inner: &mut Inner, buf: usize, att: usize, dir: DmaDirection) -> Result<(), Error> {
        Upstream.map(inner, buf, att, dir)
    }

    fn unmap(&self, inner: &mut Inner, buf: usize, att: usize) -> Result<(), Error> {
        Upstream.unmap(inner, buf, att)
    }

    fn begin_device_access(&self, inner: &mut Inner, buf: usize, att: usize, range: Range<u64>) -> Result<(), Error> {
        Upstream.begin_device_access(inner, buf, att, range)
    }

    fn end_device_access(&self, inner: &mut Inner, buf: usize, att: usize, range: Range<u64>) -> Result<(), Error> {
        Upstream.end_device_access(inner, buf, att, range)
    }

    fn begin_job(&self, inner: &mut Inner, buf: usize, att: usize, range: Range<u64>) -> Result<(), Error> {
        Upstream.begin_job(inner, buf, att, range)
    }

    fn device_access(&self, inner: &mut Inner, buf: usize, att: usize, range: Range<u64>) -> Result<(), Error> {
        Upstream.device_access(inner, buf, att, range)
    }

    fn end_job(&self, inner: &mut Inner, buf: usize, att: usize, range: Range<u64>) -> Result<(), Error> {
        Upstream.end_job(inner, buf, att, range)
    }
}
