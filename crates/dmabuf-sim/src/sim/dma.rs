//! The streaming DMA layer: what the kernel's `dma_map_sg`, `dma_sync_*` and
//! `dma_unmap_sg` do on this hardware.
//!
//! For a non-coherent device the arch's profile says which cache maintenance each call
//! performs (section 5 of the coherency model):
//!
//! | call | TO_DEVICE | FROM_DEVICE | BIDIRECTIONAL |
//! |---|---|---|---|
//! | map / sync_for_device (`arm64`) | clean | clean | clean |
//! | map / sync_for_device (`invalidate-before-from-device`) | clean | invalidate | clean |
//! | unmap / sync_for_cpu (both) | nothing | invalidate | invalidate |
//!
//! A coherent device needs none of it. A device that cannot reach a page (its DMA mask,
//! without an IOMMU) gets a bounce slot: map fills it from the original for every
//! direction (as swiotlb does since Linux 5.17), sync_for_device copies the data to it
//! for TO_DEVICE and BIDIRECTIONAL, sync_for_cpu copies it back for FROM_DEVICE and
//! BIDIRECTIONAL, and maintenance applies to the slot. Behind an IOMMU the pages are
//! mapped at a contiguous IOVA range below the mask.

use super::error::SimError;
use super::simulator::{ProvSrc, Sim, Src};
use crate::addr::{BusAddr, Iova, PAGE_SIZE, PhysAddr, PhysRange, page_chunks};
use crate::event::Event;
use crate::stats::cycles;
use crate::store::WriteId;
use crate::vocab::{Agent, DeviceId, DmaDirection, MemAttr, OpInfo, OpKind, SyncOp};

/// Attributes of a map or unmap (the kernel's `DMA_ATTR_*`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct DmaAttrs {
    /// `DMA_ATTR_SKIP_CPU_SYNC`: map and unmap do no maintenance and no bounce copy; the
    /// caller syncs the ranges it needs.
    pub skip_cpu_sync: bool,
}

/// One segment of a DMA mapping: where the device sees a piece of the buffer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DmaSegment {
    /// The address the device drives.
    pub bus: BusAddr,
    /// Where the segment's bytes live: in the original pages, not in a bounce slot.
    pub phys: PhysAddr,
    /// Length in bytes.
    pub len: u64,
    /// The bounce slot the device really uses, when bounced.
    pub bounce: Option<PhysAddr>,
}

/// A streaming DMA mapping: a scatter-gather table as one device sees it. Unmap it with
/// [`Sim::dma_unmap`]; the simulator does not own it, so a leaked mapping is the caller's
/// to report.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DmaMapping {
    /// The device the mapping is for: only it may use the bus addresses.
    pub dev: DeviceId,
    /// The direction it was mapped for.
    pub dir: DmaDirection,
    /// The segments, in buffer order.
    pub segments: Vec<DmaSegment>,
    /// The IOVA range, when behind an IOMMU.
    pub iova: Option<(Iova, u64)>,
}

impl DmaMapping {
    /// Bytes the mapping covers, every segment together.
    pub fn len(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// Whether the mapping holds no byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether any segment is bounced.
    pub fn is_bounced(&self) -> bool {
        self.segments.iter().any(|s| s.bounce.is_some())
    }

    /// Whether the device sees the buffer as one contiguous bus range.
    pub fn is_contiguous(&self) -> bool {
        self.segments.windows(2).all(|w| w[0].bus.checked_add(w[0].len) == Some(w[1].bus))
    }

    /// The bus address of byte `offset` of the buffer, or `None` past the end.
    pub fn bus_address(&self, offset: u64) -> Option<BusAddr> {
        let mut o = offset;
        for s in &self.segments {
            if o < s.len {
                return Some(s.bus.add(o));
            }
            o -= s.len;
        }
        None
    }

    /// The pieces of buffer range `[offset, offset + len)` as `(bus address, length)`.
    pub fn bus_ranges(&self, offset: u64, len: u64) -> Vec<(BusAddr, u64)> {
        self.pieces(offset, len).map(|(s, o, n)| (s.bus.add(o), n)).collect()
    }

    /// Segments overlapping `[offset, offset + len)`: `(segment, offset in it, length)`.
    fn pieces(&self, offset: u64, len: u64) -> impl Iterator<Item = (&DmaSegment, u64, u64)> {
        let end = offset.saturating_add(len);
        let mut base = 0u64;
        self.segments.iter().filter_map(move |s| {
            let (s0, s1) = (base, base + s.len);
            base = s1;
            let (a, b) = (offset.max(s0), end.min(s1));
            (a < b).then(|| (s, a - s0, b - a))
        })
    }
}

impl Sim {
    /// Maps physical pages (`dma_map_sg`) for a device: through its IOMMU, directly, or
    /// through bounce slots for pages above its DMA mask; then syncs for the device unless
    /// `attrs.skip_cpu_sync`.
    pub fn dma_map(
        &mut self,
        dev: DeviceId,
        sg: &[PhysRange],
        dir: DmaDirection,
        attrs: DmaAttrs,
    ) -> Result<DmaMapping, SimError> {
        let di = dev.index();
        if di >= self.platform().devices.len() {
            return Err(SimError::NoSuchDevice(dev));
        }
        for r in sg {
            self.check_in_regions(*r)?;
            for region in self.platform().regions.iter().enumerate().filter(|(_, g)| g.range().overlaps(r)) {
                if !self.platform().device_reaches(di, region.0) {
                    return Err(SimError::Unreachable {
                        dev: self.platform().devices[di].name.clone(),
                        addr: r.start,
                        region: region.1.name.clone(),
                    });
                }
            }
        }
        let mut segments = Vec::new();
        let mut iova = None;
        if self.platform().devices[di].iommu {
            let total: u64 = sg.iter().map(|r| r.align_out(PAGE_SIZE).len).sum();
            let base = self.iommu_map_pages(dev, sg)?;
            iova = Some((base, total));
            let mut off = 0;
            for r in sg {
                let lead = r.start.raw() % PAGE_SIZE;
                segments.push(DmaSegment {
                    bus: BusAddr(base.raw() + off + lead),
                    phys: r.start,
                    len: r.len,
                    bounce: None,
                });
                off += r.align_out(PAGE_SIZE).len;
            }
        } else {
            // Without an IOMMU the device sees each page at its bus address through its
            // DMA windows (`phys_to_dma()`); a page it cannot address (outside the windows
            // or above the mask: `dma_capable()` fails) is bounced through a slot it can.
            for r in sg {
                let d = &self.platform().devices[di];
                if d.dma_capable(*r) {
                    let bus = d.phys_to_bus(r.start).unwrap_or(BusAddr(r.start.raw()));
                    segments.push(DmaSegment { bus, phys: r.start, len: r.len, bounce: None });
                    continue;
                }
                match self.bounce_alloc_for(di, r.len) {
                    Ok((slot, bus)) => segments.push(DmaSegment { bus, phys: r.start, len: r.len, bounce: Some(slot) }),
                    Err(e) => {
                        // Nothing is left half-done: free what this call took.
                        for s in segments.iter().filter_map(|s| s.bounce.map(|b| (b, s.len))) {
                            let _ = self.bounce_free(s.0, s.1);
                        }
                        return Err(e);
                    }
                }
            }
        }
        let m = DmaMapping { dev, dir, segments, iova };
        if !attrs.skip_cpu_sync {
            // Since Linux 5.17 swiotlb fills the slot from the original at map for every
            // direction, so a device that writes only part of a FROM_DEVICE buffer does
            // not copy stale slot bytes back over the rest at unmap.
            if dir == DmaDirection::FromDevice {
                for s in &m.segments {
                    if let Some(b) = s.bounce {
                        self.bounce_copy(s.phys, b, s.len)?;
                    }
                }
            }
            self.dma_sync_for_device(&m, 0, m.len())?;
        }
        Ok(m)
    }

    /// Unmaps (`dma_unmap_sg`): syncs for the CPU unless `attrs.skip_cpu_sync`, then frees
    /// bounce slots and IOVA space.
    pub fn dma_unmap(&mut self, m: DmaMapping, attrs: DmaAttrs) -> Result<(), SimError> {
        if !attrs.skip_cpu_sync {
            self.dma_sync_for_cpu(&m, 0, m.len())?;
        }
        for s in &m.segments {
            if let Some(b) = s.bounce {
                self.bounce_free(b, s.len)?;
            }
        }
        if let Some((iova, len)) = m.iova {
            self.iommu_unmap(m.dev, iova, len)?;
        }
        Ok(())
    }

    /// `dma_sync_sg_for_device` on buffer range `[offset, offset + len)`: hands the bytes
    /// to the device (bounce copy in, then the profile's maintenance).
    pub fn dma_sync_for_device(&mut self, m: &DmaMapping, offset: u64, len: u64) -> Result<(), SimError> {
        let coherent = self.platform().devices[m.dev.index()].coherent;
        let op = self.platform().dma_profile.for_device(m.dir);
        let pieces: Vec<_> = m.pieces(offset, len).map(|(s, o, n)| (*s, o, n)).collect();
        for (s, o, n) in pieces {
            let target = match s.bounce {
                Some(b) => {
                    if m.dir.device_reads() {
                        self.bounce_copy(s.phys.add(o), b.add(o), n)?;
                    }
                    b.add(o)
                }
                None => s.phys.add(o),
            };
            if !coherent {
                let r = PhysRange { start: target, len: n };
                match op {
                    SyncOp::Clean => self.cache_clean(r)?,
                    SyncOp::Invalidate => self.cache_invalidate(r)?,
                    SyncOp::Nothing => {}
                }
            }
        }
        Ok(())
    }

    /// `dma_sync_sg_for_cpu` on buffer range `[offset, offset + len)`: hands the bytes back
    /// to the CPU (the profile's maintenance, then bounce copy out).
    pub fn dma_sync_for_cpu(&mut self, m: &DmaMapping, offset: u64, len: u64) -> Result<(), SimError> {
        let coherent = self.platform().devices[m.dev.index()].coherent;
        let op = self.platform().dma_profile.for_cpu(m.dir);
        let pieces: Vec<_> = m.pieces(offset, len).map(|(s, o, n)| (*s, o, n)).collect();
        for (s, o, n) in pieces {
            let target = s.bounce.unwrap_or(s.phys).add(o);
            if !coherent && op == SyncOp::Invalidate {
                self.cache_invalidate(PhysRange { start: target, len: n })?;
            }
            if let Some(b) = s.bounce
                && m.dir.device_writes()
            {
                self.bounce_copy(b.add(o), s.phys.add(o), n)?;
            }
        }
        Ok(())
    }

    /// Maps pages into a device's IOMMU at a fresh IOVA range below its DMA mask; ranges
    /// are rounded out to whole pages. Returns the IOVA of the first page.
    pub fn iommu_map_pages(&mut self, dev: DeviceId, sg: &[PhysRange]) -> Result<Iova, SimError> {
        let di = dev.index();
        let name = self.platform().devices.get(di).map(|d| d.name.clone()).ok_or(SimError::NoSuchDevice(dev))?;
        let total: u64 = sg.iter().map(|r| r.align_out(PAGE_SIZE).len).sum();
        let mmu = self.iommus[di].as_mut().ok_or_else(|| SimError::NoIommu { dev: name.clone() })?;
        let base = mmu
            .space
            .alloc(total.max(PAGE_SIZE), PAGE_SIZE)
            .ok_or(SimError::IovaExhausted { dev: name, len: total })?;
        let mut at = base / PAGE_SIZE;
        for r in sg {
            let a = r.align_out(PAGE_SIZE);
            for i in 0..a.len / PAGE_SIZE {
                mmu.table.insert(at, a.start.raw() / PAGE_SIZE + i);
                at += 1;
            }
        }
        Ok(Iova(base))
    }

    /// Removes an IOMMU mapping made by [`Sim::iommu_map_pages`].
    pub fn iommu_unmap(&mut self, dev: DeviceId, iova: Iova, len: u64) -> Result<(), SimError> {
        let di = dev.index();
        let name = self.platform().devices.get(di).map(|d| d.name.clone()).ok_or(SimError::NoSuchDevice(dev))?;
        let mmu = self.iommus[di].as_mut().ok_or_else(|| SimError::NoIommu { dev: name.clone() })?;
        let bad = || SimError::BadIommuUnmap { dev: name.clone(), addr: BusAddr(iova.raw()), len };
        let pages = len.max(PAGE_SIZE).div_ceil(PAGE_SIZE);
        let first = iova.raw() / PAGE_SIZE;
        if !(first..first + pages).all(|p| mmu.table.contains_key(&p)) {
            return Err(bad());
        }
        if !mmu.space.free(first * PAGE_SIZE, pages * PAGE_SIZE) {
            return Err(bad());
        }
        for p in first..first + pages {
            mmu.table.remove(&p);
        }
        Ok(())
    }

    /// Allocates a bounce slot of `len` bytes at or below physical `limit`, line aligned.
    pub fn bounce_alloc(&mut self, len: u64, limit: u64) -> Result<PhysAddr, SimError> {
        let within = [PhysRange { start: PhysAddr(0), len: limit.saturating_add(1).max(1) }];
        self.bounce_alloc_within(len, &within, limit)
    }

    /// Allocates a bounce slot that device `di` addresses directly (within one of its DMA
    /// windows and below its mask); returns the slot and the bus address it sees it at.
    fn bounce_alloc_for(&mut self, di: usize, len: u64) -> Result<(PhysAddr, BusAddr), SimError> {
        let d = &self.platform().devices[di];
        let reach = d.direct_reach();
        let limit = reach.last().map_or(0, |r| r.end().raw().saturating_sub(1));
        let slot = self.bounce_alloc_within(len, &reach, limit)?;
        let bus = self.platform().devices[di].phys_to_bus(slot).unwrap_or(BusAddr(slot.raw()));
        Ok((slot, bus))
    }

    /// Allocates a line-aligned slot of `len` bytes lying wholly inside one of `within`;
    /// `limit` names the highest address in the error.
    fn bounce_alloc_within(&mut self, len: u64, within: &[PhysRange], limit: u64) -> Result<PhysAddr, SimError> {
        let line = self.line_size();
        let pool = self.bounce.as_mut().ok_or(SimError::NoBouncePool)?;
        let size = len.max(1).div_ceil(line) * line;
        for w in within {
            let Some(r) = w.intersect(&pool.range) else { continue };
            if let Some(at) = pool.alloc.alloc_within(size, line, r.start.raw(), r.end().raw()) {
                pool.slots.insert(at, size);
                return Ok(PhysAddr(at));
            }
        }
        Err(SimError::BounceExhausted { len, limit })
    }

    /// Frees a slot that [`Sim::bounce_alloc`] handed out; `len` is the length asked for
    /// then.
    pub fn bounce_free(&mut self, addr: PhysAddr, len: u64) -> Result<(), SimError> {
        let line = self.line_size();
        let pool = self.bounce.as_mut().ok_or(SimError::NoBouncePool)?;
        let size = len.max(1).div_ceil(line) * line;
        if pool.slots.get(&addr.raw()) != Some(&size) {
            return Err(SimError::BadBounceFree { addr, len });
        }
        pool.slots.remove(&addr.raw());
        pool.alloc.free(addr.raw(), size);
        Ok(())
    }

    /// Bytes currently held in bounce slots.
    pub fn bounce_in_use(&self) -> u64 {
        self.bounce.as_ref().map_or(0, |p| p.slots.values().sum())
    }

    // ----- the copy the kernel does for swiotlb ----------------------------------------

    /// Copies `len` bytes from `from` to `to` the way swiotlb does: a CPU memcpy through
    /// the kernel's cacheable linear map (the source is read as the CPU sees it, the
    /// destination lines become dirty in the CPU cache). Counted as bounce traffic.
    pub fn bounce_copy(&mut self, from: PhysAddr, to: PhysAddr, len: u64) -> Result<(), SimError> {
        let src = PhysRange::new(from, len).ok_or(SimError::Overflow)?;
        let dst = PhysRange::new(to, len).ok_or(SimError::Overflow)?;
        self.check_in_regions(src)?;
        self.check_in_regions(dst)?;
        if len == 0 {
            return Ok(());
        }
        let mut buf = vec![0u8; len as usize];
        let mut prov = Vec::new();
        let track = self.track;
        let before = self.stats.access_cycles;
        for (pa, off, n) in page_chunks(from.raw(), len) {
            self.cached_read(pa, &mut buf[off..off + n], track.then_some((&mut prov, off)));
        }
        for (pa, off, n) in page_chunks(to.raw(), len) {
            let p = if track { ProvSrc::Runs(&prov) } else { ProvSrc::Id(WriteId::INITIAL) };
            self.cached_write(pa, n, Src::Bytes(&buf), off, p);
        }
        // The copy's cost is the bounce cost, not an access of the program.
        self.stats.access_cycles = before;
        let lines = src.units(self.hw.line);
        let cost = cycles(0, self.hw.platform.costs.bounce_line, lines);
        self.stats.bounce.add(lines, len, lines, cost);
        if self.observed() {
            self.emit(Event::BounceCopy { from: src, to, prov: &prov });
        }
        self.after_op(OpInfo {
            kind: OpKind::BounceCopy,
            agent: Agent::Cpu,
            attr: Some(MemAttr::Cached),
            ranges: vec![src, dst],
            writes_memory: false,
        });
        Ok(())
    }
}
