//! Cache maintenance and bounce copies: what the framework does at each hand-over point,
//! behind one trait with an implementation per policy.
//!
//! The hand-over points are the CPU access bracket (begin and end), `map` and `unmap` of
//! an attachment, and the device-side access bracket of importers that keep their
//! mapping. At each one an implementation decides which lines to clean or invalidate,
//! which device caches to flush or drop and which bounce slots to fill or copy back:
//!
//! - [`upstream`]: what upstream Linux does: the whole buffer, for every mapped
//!   attachment, at every CPU bracket (the system heap's `begin_cpu_access`), full
//!   maintenance at map and unmap (`dma_map_sgtable` / `dma_unmap_sgtable`); and what a
//!   vendor kernel adds to it, the ranged brackets of Rockchip's BSP
//!   (`DMA_BUF_IOCTL_SYNC_PARTIAL` and its heaps' `begin_cpu_access_partial`);
//! - [`minimal`]: only what was declared written since the last hand-over, only for
//!   non-coherent parties, and nothing at all on a coherent platform. It knows what was
//!   declared to it and never looks at the simulator's caches (coherency model, section 8).
//!
//! The benchmark runs `Linux` and `Minimal` and compares them with the oracle.

mod minimal;
mod upstream;

use std::ops::Range;

use dmabuf_sim::{DmaDirection, DmaMapping, PhysRange};

use crate::bracket::CpuBracket;
use crate::error::Error;
use crate::ranges::RangeSet;
use crate::state::Inner;

/// Which kernel the framework stands for: its maintenance, and the ranged brackets it
/// offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MaintenancePolicy {
    /// What upstream Linux does: whole buffers, every mapped attachment. It has no ranged
    /// bracket: `DMA_BUF_IOCTL_SYNC_PARTIAL` is `ENOTTY` (`dma_buf_ioctl`'s default case),
    /// and a kernel-side ranged begin is the full one.
    Linux,
    /// Only the ranges declared written since the last hand-over, only for non-coherent
    /// parties. It has `DMA_BUF_IOCTL_SYNC_PARTIAL` and honours `DMA_BUF_SYNC_OVERWRITE`
    /// (docs/proposals/sync-partial.md).
    #[default]
    Minimal,
    /// Upstream's maintenance with what Rockchip's BSP kernel adds: `DMA_BUF_IOCTL_SYNC_PARTIAL`
    /// and the heaps' `begin_cpu_access_partial` / `end_cpu_access_partial`, each heap with
    /// its own idea of the range (`rk_system_heap` syncs it alone, `rk-cma-heap` the whole
    /// buffer; an exporter without the hooks does nothing). It does not know
    /// `DMA_BUF_SYNC_OVERWRITE` (`EINVAL`).
    Vendor,
}

impl MaintenancePolicy {
    /// The code that carries out this policy's maintenance.
    pub(crate) fn implementation(self) -> &'static dyn Maintenance {
        match self {
            MaintenancePolicy::Linux => &upstream::Upstream,
            MaintenancePolicy::Minimal => &minimal::Minimal,
            MaintenancePolicy::Vendor => &upstream::Vendor,
        }
    }

    /// Whether the kernel has `DMA_BUF_IOCTL_SYNC_PARTIAL` (upstream answers `ENOTTY`).
    pub fn has_sync_partial(self) -> bool {
        !matches!(self, MaintenancePolicy::Linux)
    }

    /// Whether the kernel honours an overwrite bracket (`DMA_BUF_SYNC_OVERWRITE`, or the
    /// in-kernel overwrite begin): elsewhere it is a plain write bracket.
    pub fn honours_overwrite(self) -> bool {
        matches!(self, MaintenancePolicy::Minimal)
    }

    /// The name `--maintenance` takes: `linux`, `minimal`, `vendor`.
    pub fn name(self) -> &'static str {
        match self {
            MaintenancePolicy::Linux => "linux",
            MaintenancePolicy::Minimal => "minimal",
            MaintenancePolicy::Vendor => "vendor",
        }
    }
}

/// One maintenance implementation: a method per hand-over point. Each gets the
/// framework's state, the buffer (an index into `inner.bufs`) and, for attachment points,
/// the attachment (an index into the buffer's attachments).
pub(crate) trait Maintenance {
    /// After the implicit fence wait of a CPU bracket, on cached memory.
    fn begin_cpu_access(&self, inner: &mut Inner, buf: usize, bracket: &CpuBracket) -> Result<(), Error>;

    /// At the end of a CPU bracket on cached memory (`end` as the end call declares it);
    /// `written` are the bytes the CPU declared written in it.
    fn end_cpu_access(&self, inner: &mut Inner, buf: usize, end: &CpuBracket, written: &RangeSet) -> Result<(), Error>;

    /// Maps the attachment for `dir` (the streaming DMA mapping and whatever makes the
    /// handed-over bytes visible to the device) and stores the mapping.
    fn map(&self, inner: &mut Inner, buf: usize, att: usize, dir: DmaDirection) -> Result<(), Error>;

    /// Hands what the device wrote over and removes the attachment's mapping.
    fn unmap(&self, inner: &mut Inner, buf: usize, att: usize) -> Result<(), Error>;

    /// A device that keeps its mapping is about to access `range` through it.
    fn begin_device_access(&self, inner: &mut Inner, buf: usize, att: usize, range: Range<u64>) -> Result<(), Error>;

    /// A device that keeps its mapping finished with `range`.
    fn end_device_access(&self, inner: &mut Inner, buf: usize, att: usize, range: Range<u64>) -> Result<(), Error>;

    /// A device job starts on `range` of a mapping the device may keep: what was handed
    /// over must be what it sees. Under the job contract its private cache must not serve
    /// what others changed there.
    fn begin_job(&self, inner: &mut Inner, buf: usize, att: usize, range: Range<u64>) -> Result<(), Error>;

    /// The device accesses `range` through its mapping outside a job or an access
    /// bracket (a framework caller's bare access): whatever must reach it before its first
    /// look and was left for its job to hand over is handed over now.
    fn device_access(&self, inner: &mut Inner, buf: usize, att: usize, range: Range<u64>) -> Result<(), Error> {
        let _ = (inner, buf, att, range);
        Ok(())
    }

    /// The job ends: under the job contract, what it wrote in `range` leaves the device's
    /// cache before its fence signals.
    fn end_job(&self, inner: &mut Inner, buf: usize, att: usize, range: Range<u64>) -> Result<(), Error> {
        if job_contract_cache(inner, buf, att) {
            flush_cache_dirty(inner, buf, att, range)?;
        }
        Ok(())
    }
}

/// Whether the attachment's device has a private cache its driver manages at job
/// boundaries (the job contract).
pub(crate) fn job_contract_cache(inner: &Inner, buf: usize, att: usize) -> bool {
    let Some(a) = inner.bufs[buf].att(att) else { return false };
    let d = &inner.sim.platform().devices[a.dev];
    d.job_contract && inner.sim.device_has_cache(a.device())
}

/// Writes back what the device wrote into its private cache in `range` and has not
/// flushed yet.
pub(crate) fn flush_cache_dirty(inner: &mut Inner, buf: usize, att: usize, range: Range<u64>) -> Result<(), Error> {
    let Some(a) = inner.bufs[buf].att_mut(att) else { return Ok(()) };
    let Some(m) = a.mapping.clone() else { return Ok(()) };
    let dev = a.device();
    let dirty = a.cache_dirty.within(range.clone());
    a.cache_dirty.remove(range);
    for r in dirty.iter() {
        for p in bus_phys(&m, r) {
            inner.sim.device_cache_flush(dev, p)?;
        }
    }
    Ok(())
}

/// Whether every segment of a mapping is bounced (the device never reads the pages).
pub(crate) fn fully_bounced(m: &DmaMapping) -> bool {
    m.segments.iter().all(|s| s.bounce.is_some())
}

/// Splits buffer ranges into the parts a mapping bounces and the parts it maps directly.
pub(crate) fn split_bounced(m: &DmaMapping, set: &RangeSet) -> (RangeSet, RangeSet) {
    let (mut bounced, mut direct) = (RangeSet::new(), RangeSet::new());
    let mut base = 0u64;
    for s in &m.segments {
        for r in set.within(base..base + s.len).iter() {
            if s.bounce.is_some() { bounced.insert(r) } else { direct.insert(r) }
        }
        base += s.len;
    }
    (bounced, direct)
}

/// The physical addresses a device's cache tags for buffer range `r` of a mapping: the
/// bounce slot when bounced, the pages otherwise.
pub(crate) fn bus_phys(m: &DmaMapping, r: Range<u64>) -> Vec<PhysRange> {
    let mut out = Vec::new();
    let mut base = 0u64;
    for s in &m.segments {
        let (a, b) = (r.start.max(base), r.end.min(base + s.len));
        if a < b {
            let start = s.bounce.unwrap_or(s.phys).add(a - base);
            out.push(PhysRange { start, len: b - a });
        }
        base += s.len;
    }
    out
}

/// The buffer ranges of an attachment's pages that its device's cache may hold lines of
/// from the pages' earlier lives (what the device had mapped before): all of them for a
/// device whose footprint is unknown.
pub(crate) fn footprint_stale(inner: &Inner, buf: usize, dev: usize) -> RangeSet {
    let b = &inner.bufs[buf];
    let mut out = RangeSet::new();
    let Some(fp) = inner.footprints.get(dev) else {
        out.insert(0..b.exporter.backing().size());
        return out;
    };
    let mut base = 0u64;
    for p in &b.exporter.backing().pages {
        let start = p.start.raw();
        for r in fp.within(start..start + p.len).iter() {
            out.insert(base + (r.start - start)..base + (r.end - start));
        }
        base += p.len;
    }
    out
}

/// Records that `dev` has `m` mapped: its cache may hold lines of those addresses from now
/// on (the pages, or the bounce slots).
pub(crate) fn note_footprint(inner: &mut Inner, dev: usize, m: &DmaMapping) {
    if !inner.sim.device_has_cache(dmabuf_sim::DeviceId(dev as u16)) {
        return;
    }
    if let Some(fp) = inner.footprints.get_mut(dev) {
        for p in bus_phys(m, 0..m.len()) {
            fp.insert(p.start.raw()..p.start.raw() + p.len);
        }
    }
}

/// Every mapped attachment's mapping, with its direction replaced by `dir` (what the
/// kernel's `begin_cpu_access` and `end_cpu_access` sync each attachment with).
pub(crate) fn mappings_for(inner: &Inner, buf: usize, dir: DmaDirection) -> Vec<DmaMapping> {
    inner.bufs[buf]
        .attachments
        .iter()
        .flatten()
        .filter_map(|a| a.mapping.clone())
        .map(|mut m| {
            m.dir = dir;
            m
        })
        .collect()
}
