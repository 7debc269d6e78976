//! The minimal conforming maintenance: only the bytes declared written since the last
//! hand-over, only for the non-coherent parties involved.
//!
//! What it knows is what was declared to it (coherency model, section 8): the ranges the
//! CPU wrote inside brackets (`cpu_dirty` until handed to a device), the bytes the heap
//! zeroed through the cache (`zeroed` until a device is about to look), the ranges
//! non-coherent devices wrote (`dev_dirty` until the CPU looks), what each device wrote
//! through its mapping (`written`) and what others changed behind a device's cache or
//! bounce slot (`stale`). It never looks at the simulator's cache state.
//!
//! It uses what a bracket declares: a ranged bracket is maintained over its range only,
//! and an overwrite bracket (`DMA_BUF_SYNC_OVERWRITE`) skips the invalidate of the lines
//! its range covers whole, since the CPU replaces every byte of them (a line it covers in
//! part still merges the line's other bytes, which must be current).
//!
//! The heap's zeroing is handed over lazily: not at a device's map (a device that keeps
//! its mapping may never read the zeros, the CPU overwriting them first) but when a
//! non-coherent device is about to access the bytes (a job's start, a device-side begin
//! of access), which is before its first read of them and before a write of its own that
//! a later write-back of a dirty zero line would undo.

use std::ops::Range;

use dmabuf_sim::{DmaAttrs, DmaDirection};

use super::{Maintenance, bus_phys, fully_bounced, job_contract_cache, split_bounced};
use crate::bracket::{CpuBracket, whole_lines};
use crate::error::Error;
use crate::ranges::RangeSet;
use crate::state::Inner;

/// Only what the DMA API promises, on only the declared bytes.
pub(crate) struct Minimal;

impl Maintenance for Minimal {
    fn begin_job(&self, inner: &mut Inner, buf: usize, att: usize, range: Range<u64>) -> Result<(), Error> {
        let Some(dev) = inner.bufs[buf].att(att).map(|a| a.dev) else { return Ok(()) };
        clean_zeroed(inner, buf, att, range.clone())?;
        if !inner.noncoherent(dev) && inner.bufs[buf].cpu_cached() {
            // A coherent device's reads hit the CPU's lines: those over what non-coherent
            // devices wrote since the CPU last looked are stale (upstream dropped them at
            // the writer's unmap).
            invalidate_dev_dirty(inner, buf, range.clone())?;
        }
        if !job_contract_cache(inner, buf, att) {
            return Ok(());
        }
        // Only what others changed since the device's cache last looked, in whole lines:
        // a write to part of a line merges with the rest of the cached line.
        let range = lines_of(inner, range);
        let Some(a) = inner.bufs[buf].att_mut(att) else { return Ok(()) };
        let Some(m) = a.mapping.clone() else { return Ok(()) };
        let dev = a.device();
        let stale = a.stale.within(range.clone());
        a.stale.remove(range);
        for r in stale.iter() {
            for p in bus_phys(&m, r) {
                inner.sim.device_cache_invalidate(dev, p)?;
            }
        }
        Ok(())
    }

    fn device_access(&self, inner: &mut Inner, buf: usize, att: usize, range: Range<u64>) -> Result<(), Error> {
        clean_zeroed(inner, buf, att, range)
    }

    fn begin_cpu_access(&self, inner: &mut Inner, buf: usize, bracket: &CpuBracket) -> Result<(), Error> {
        // Whole lines: the CPU meets the whole line of every byte it touches.
        let range = lines_of(inner, bracket.range.clone());
        // A device that keeps its mapping hands over what it wrote in the range now, as the
        // kernel's begin_cpu_access syncs every mapped attachment for the CPU.
        let keeping: Vec<usize> = inner.bufs[buf]
            .attachments
            .iter()
            .enumerate()
            .filter(|(_, a)| {
                a.as_ref().is_some_and(|a| a.mapping.is_some() && !a.written.within(range.clone()).is_empty())
            })
            .map(|(i, _)| i)
            .collect();
        for att in keeping {
            device_end(inner, buf, att, range.clone())?;
        }
        if bracket.overwrite {
            // The lines the CPU overwrites whole need no invalidate: a stale copy in the
            // cache has every byte replaced before anything is written back or read.
            let whole = whole_lines(&bracket.range, inner.sim.line_size());
            inner.bufs[buf].dev_dirty.remove(whole);
        }
        // Only what non-coherent devices wrote since the CPU last looked, inside the
        // bracket's range. For every direction: a partial-line CPU write into a stale line
        // would merge with stale bytes.
        invalidate_dev_dirty(inner, buf, range)
    }

    fn end_cpu_access(&self, inner: &mut Inner, buf: usize, end: &CpuBracket, written: &RangeSet) -> Result<(), Error> {
        let dir = end.dir;
        inner.bufs[buf].cpu_dirty.union(written);
        // Hand the bytes over now if a non-coherent device holds a long-lived mapping;
        // otherwise its map will.
        let mapped_noncoherent = inner.bufs[buf]
            .attachments
            .iter()
            .flatten()
            .any(|a| a.mapping.as_ref().is_some_and(|m| !fully_bounced(m)) && inner.noncoherent(a.dev));
        if mapped_noncoherent {
            clean_cpu_dirty(inner, buf)?;
        }
        // A bounced long-lived mapping reads its own copy: copy what the CPU wrote into
        // the bounce slots now (the kernel's end_cpu_access syncs every mapped attachment
        // for the device), only the written ranges.
        if dir != DmaDirection::FromDevice {
            let bounced: Vec<_> = inner.bufs[buf]
                .attachments
                .iter()
                .flatten()
                .filter_map(|a| a.mapping.clone())
                .filter(|m| m.is_bounced())
                .map(|mut m| {
                    m.dir = DmaDirection::ToDevice;
                    m
                })
                .collect();
            for m in bounced {
                for r in written.iter() {
                    inner.sim.dma_sync_for_device(&m, r.start, r.end - r.start)?;
                }
            }
        }
        Ok(())
    }

    fn map(&self, inner: &mut Inner, buf: usize, att: usize, dir: DmaDirection) -> Result<(), Error> {
        let b = &inner.bufs[buf];
        let Some(a) = b.att(att) else { return Ok(()) };
        let dev = a.device();
        let pages = b.exporter.backing().pages.clone();
        let m = inner.sim.dma_map(dev, &pages, dir, DmaAttrs { skip_cpu_sync: true })?;
        let len = m.len();
        let bounced = m.is_bounced();
        if let Some(a) = inner.bufs[buf].att_mut(att) {
            a.mapping = Some(m);
            a.written.clear();
            if bounced {
                // The device's cache tags the slots, which other mappings used before: what
                // it holds of them is unknown.
                a.stale.insert(0..len);
            }
        }
        // A bounce slot starts empty: fill all of it (what swiotlb's map does).
        device_begin(inner, buf, att, 0..len, true)
    }

    fn unmap(&self, inner: &mut Inner, buf: usize, att: usize) -> Result<(), Error> {
        let Some(len) = inner.bufs[buf].att(att).and_then(|a| a.mapping.as_ref()).map(|m| m.len()) else {
            return Ok(());
        };
        device_end(inner, buf, att, 0..len)?;
        if let Some(m) = inner.bufs[buf].att_mut(att).and_then(|a| a.mapping.take()) {
            inner.sim.dma_unmap(m, DmaAttrs { skip_cpu_sync: true })?;
        }
        Ok(())
    }

    fn begin_device_access(&self, inner: &mut Inner, buf: usize, att: usize, range: Range<u64>) -> Result<(), Error> {
        clean_zeroed(inner, buf, att, range.clone())?;
        device_begin(inner, buf, att, range, false)
    }

    fn end_device_access(&self, inner: &mut Inner, buf: usize, att: usize, range: Range<u64>) -> Result<(), Error> {
        device_end(inner, buf, att, range)
    }
}

/// The smallest range holding every byte of `set` (empty for an empty set).
fn range_of(set: &RangeSet) -> Range<u64> {
    let mut it = set.iter();
    let first = it.next().map_or(0..0, |r| r);
    let last = set.iter().last().map_or(0, |r| r.end);
    first.start..last.max(first.end)
}

/// `range` rounded out to whole cache lines: an access to part of a line meets the whole
/// line in the cache.
fn lines_of(inner: &Inner, range: Range<u64>) -> Range<u64> {
    let line = inner.sim.line_size();
    range.start / line * line..range.end.div_ceil(line).saturating_mul(line)
}

/// Cleans what the CPU wrote since the last hand-over.
fn clean_cpu_dirty(inner: &mut Inner, buf: usize) -> Result<(), Error> {
    let b = &inner.bufs[buf];
    let pieces: Vec<_> = b.cpu_dirty.iter().flat_map(|r| b.phys(r)).collect();
    for p in pieces {
        inner.sim.cache_clean(p)?;
    }
    inner.bufs[buf].cpu_dirty.clear();
    Ok(())
}

/// A non-coherent device reaching the pages directly is about to access `range`: the
/// heap's zeros still dirty in the CPU cache there reach memory first (the device must
/// read zeros, and a later write-back of a zero line must not undo what it writes).
fn clean_zeroed(inner: &mut Inner, buf: usize, att: usize, range: Range<u64>) -> Result<(), Error> {
    let b = &inner.bufs[buf];
    if b.zeroed.is_empty() || !b.cpu_cached() {
        return Ok(());
    }
    let Some(a) = b.att(att) else { return Ok(()) };
    let Some(m) = a.mapping.as_ref() else { return Ok(()) };
    if !inner.noncoherent(a.dev) || fully_bounced(m) {
        return Ok(());
    }
    let range = lines_of(inner, range);
    let pieces: Vec<_> = b.zeroed.within(range.clone()).iter().flat_map(|r| b.phys(r)).collect();
    for p in pieces {
        inner.sim.cache_clean(p)?;
    }
    inner.bufs[buf].zeroed.remove(range);
    Ok(())
}

/// Drops the CPU's lines over what non-coherent devices wrote in `range` since the CPU
/// last looked.
fn invalidate_dev_dirty(inner: &mut Inner, buf: usize, range: Range<u64>) -> Result<(), Error> {
    let range = lines_of(inner, range);
    let b = &inner.bufs[buf];
    let pieces: Vec<_> = b.dev_dirty.within(range.clone()).iter().flat_map(|r| b.phys(r)).collect();
    for p in pieces {
        inner.sim.cache_invalidate(p)?;
    }
    inner.bufs[buf].dev_dirty.remove(range);
    Ok(())
}

/// The device is about to access `range` through its mapping: make what others wrote
/// visible to it. `fill_slot`: copy the whole range into a bounce slot.
fn device_begin(inner: &mut Inner, buf: usize, att: usize, range: Range<u64>, fill_slot: bool) -> Result<(), Error> {
    let b = &inner.bufs[buf];
    let cached = b.cpu_cached();
    let Some(a) = b.att(att) else { return Ok(()) };
    let Some(m) = a.mapping.clone() else { return Ok(()) };
    let (dev, devid) = (a.dev, a.device());
    if cached && inner.noncoherent(dev) && !fully_bounced(&m) {
        // Only the CPU's bytes that were not handed over yet, wherever they are: a clean
        // is cheap to keep exact and leaves nothing dirty for a later eviction. A mapping
        // bounced everywhere reads its slots, which the copy fills through the CPU cache:
        // the pages need no clean for it.
        clean_cpu_dirty(inner, buf)?;
    }
    if cached && !inner.noncoherent(dev) {
        // A coherent device's reads hit the CPU's lines: drop the ones that went stale
        // when a non-coherent device wrote memory behind them.
        invalidate_dev_dirty(inner, buf, range.clone())?;
    }
    let stale: Vec<Range<u64>> =
        inner.bufs[buf].att(att).map(|a| a.stale.within(range.clone()).iter().collect()).unwrap_or_default();
    if m.is_bounced() {
        // The copy into the slot is a CPU read of the pages (swiotlb's memcpy): lines the
        // CPU holds over what a non-coherent device wrote are stale, and must go first.
        let copies: Vec<Range<u64>> = if fill_slot { vec![range.clone()] } else { stale.clone() };
        let (bounced, _) = split_bounced(&m, &copies.iter().cloned().collect());
        if cached {
            for r in bounced.iter() {
                invalidate_dev_dirty(inner, buf, r)?;
            }
        }
        for r in bounced.iter() {
            inner.sim.dma_sync_for_device(&m, r.start, r.end - r.start)?;
        }
    }
    if inner.sim.device_has_cache(devid) {
        let lines = lines_of(inner, range.clone());
        let mut stale = inner.bufs[buf].att(att).map(|a| a.stale.within(lines)).unwrap_or_default();
        if !m.is_bounced() {
            // The device's cache holds lines only of addresses it has had mapped: what
            // others changed of pages it never mapped (fresh from the heap) is not in it.
            let mut kept = RangeSet::new();
            for r in super::footprint_stale(inner, buf, dev).iter() {
                kept.union(&stale.within(r));
            }
            stale = kept;
        }
        for r in stale.iter() {
            for p in bus_phys(&m, r) {
                inner.sim.device_cache_invalidate(devid, p)?;
            }
        }
    }
    if let Some(a) = inner.bufs[buf].att_mut(att) {
        a.stale.remove(range);
    }
    Ok(())
}

/// The device finished accessing `range`: hand what it wrote there over to everyone
/// else (the CPU and the other devices).
fn device_end(inner: &mut Inner, buf: usize, att: usize, range: Range<u64>) -> Result<(), Error> {
    let cached = inner.bufs[buf].cpu_cached();
    let Some(a) = inner.bufs[buf].att_mut(att) else { return Ok(()) };
    let Some(m) = a.mapping.clone() else { return Ok(()) };
    let dev = a.dev;
    let written = a.written.within(range.clone());
    a.written.remove(range);
    if written.is_empty() {
        return Ok(());
    }
    super::flush_cache_dirty(inner, buf, att, range_of(&written))?;
    let (bounced, direct) = split_bounced(&m, &written);
    for r in bounced.iter() {
        inner.sim.dma_sync_for_cpu(&m, r.start, r.end - r.start)?;
    }
    if cached {
        // The copy back went through the CPU cache: those lines are dirty now, and a
        // non-coherent reader of the pages needs them cleaned.
        inner.bufs[buf].cpu_dirty.union(&bounced);
        if inner.noncoherent(dev) {
            inner.bufs[buf].dev_dirty.union(&direct);
        } else if inner.sim.platform().devices[dev].stash {
            // A stashing port's writes sit in dirty CPU lines, as the CPU's own would.
            inner.bufs[buf].cpu_dirty.union(&direct);
        }
    }
    // Every other device may hold (in its cache or its bounce slot) what this one
    // overwrote.
    inner.bufs[buf].mark_stale_for_others(Some(att), &written);
    Ok(())
}
