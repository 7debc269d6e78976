//! Devices' accesses: DMA by bus address (through the device's IOMMU, within its DMA mask
//! and reach), snooping the CPU cache when the device is coherent, through its private
//! cache when it has one.

use super::error::SimError;
use super::simulator::{Chunk, ProvSrc, Sim, Src, coalesce};
use crate::addr::{BusAddr, PAGE_SIZE, PhysAddr, PhysRange, page_chunks};
use crate::cache::runs;
use crate::event::Event;
use crate::hw::Sel;
use crate::stats::cycles;
use crate::store::{ProvRun, WriteId, compress, expand, push_run};
use crate::vocab::{Agent, Cause, DeviceId, OpInfo, OpKind};

impl Sim {
    /// Translates a device's bus range to physical page chunks `(phys, offset, len)`,
    /// checking its DMA mask, its IOMMU and its reach.
    pub(super) fn translate(&self, dev: usize, bus: BusAddr, len: u64) -> Result<Vec<Chunk>, SimError> {
        let d = &self.hw.platform.devices[dev];
        let end = bus.raw().checked_add(len).ok_or(SimError::Overflow)?;
        if len > 0 && end - 1 > d.max_address() {
            let addr = if bus.raw() > d.max_address() { bus } else { BusAddr(d.max_address() + 1) };
            return Err(SimError::AboveDmaMask { dev: d.name.clone(), bits: d.dma_mask, addr });
        }
        let mut out = Vec::new();
        for (a, off, n) in page_chunks(bus.raw(), len) {
            let pa = match &self.iommus[dev] {
                Some(mmu) => {
                    let pfn = mmu
                        .table
                        .get(&(a / PAGE_SIZE))
                        .ok_or_else(|| SimError::IommuFault { dev: d.name.clone(), addr: BusAddr(a) })?;
                    pfn * PAGE_SIZE + a % PAGE_SIZE
                }
                // Without an IOMMU the bus address goes through the device's DMA windows
                // (the bus offset), and nothing outside them is addressable.
                None => {
                    let first = d.bus_to_phys(BusAddr(a));
                    let last = d.bus_to_phys(BusAddr(a + n as u64 - 1));
                    match (first, last) {
                        (Some(p), Some(q)) if q.raw() - p.raw() == n as u64 - 1 => p.raw(),
                        _ => {
                            let at = if first.is_none() { a } else { a + n as u64 - 1 };
                            return Err(SimError::OutsideDmaWindow { dev: d.name.clone(), addr: BusAddr(at) });
                        }
                    }
                }
            };
            let region = self
                .hw
                .platform
                .region_of(PhysAddr(pa))
                .ok_or(SimError::NotInRegion { range: PhysRange { start: PhysAddr(pa), len: n as u64 } })?;
            if !self.hw.platform.device_reaches(dev, region) {
                return Err(SimError::Unreachable {
                    dev: d.name.clone(),
                    addr: PhysAddr(pa),
                    region: self.hw.platform.regions[region].name.clone(),
                });
            }
            out.push((pa, off, n));
        }
        Ok(out)
    }

    /// A device reads `buf.len()` bytes by DMA from bus address `bus`. A coherent device
    /// sees the CPU's cached lines; a non-coherent one sees memory only. A device with a
    /// private cache reads through it.
    pub fn device_read(&mut self, dev: DeviceId, bus: BusAddr, buf: &mut [u8]) -> Result<(), SimError> {
        let di = self.check_device(dev)?;
        let chunks = self.translate(di, bus, buf.len() as u64)?;
        let want = self.observed();
        let mut prov = Vec::new();
        let coherent = self.hw.platform.devices[di].coherent;
        for &(pa, off, n) in &chunks {
            let out = &mut buf[off..off + n];
            if self.hw.dev_caches[di].is_some() {
                for (a, o, k) in self.hw.line_pieces(Sel::Dev(di), pa, n) {
                    let pfn = a / PAGE_SIZE;
                    let po = (a % PAGE_SIZE) as usize;
                    let (mask, _) = self.hw.chunk_masks(po, k);
                    self.make_present(Sel::Dev(di), pfn, mask, mask);
                    let cp = self.hw.dev_caches[di]
                        .as_ref()
                        .and_then(|c| c.page(pfn))
                        .expect("lines were just made present");
                    cp.data.read(po, &mut out[o..o + k]);
                    if want {
                        cp.prov.runs(po, k, (off + o) as u64, &mut prov);
                    }
                }
            } else {
                self.hw.mem.read(pa, out);
                let mut here = Vec::new();
                if want {
                    self.hw.mem.read_prov(pa, n as u64, 0, &mut here);
                }
                if self.via_slc(Sel::Dev(di)) {
                    self.slc_overlay(pa, out, want.then_some(&mut here));
                }
                if coherent {
                    self.snoop_read(pa, out, want.then_some(&mut here));
                }
                for r in here {
                    push_run(&mut prov, r.offset + off as u64, r.len, r.write);
                }
            }
        }
        let len = buf.len() as u64;
        self.stats.device_read_bytes = self.stats.device_read_bytes.saturating_add(len);
        self.stats.charge(cycles(0, self.hw.platform.costs.device_access_line, len.div_ceil(self.hw.line)));
        if want {
            self.emit(Event::DeviceRead { dev, bus, len, prov: &prov });
        }
        let ranges = coalesce(chunks.iter().map(|&(pa, _, n)| (pa, n as u64)));
        self.after_op(OpInfo {
            kind: OpKind::DeviceRead,
            agent: Agent::Device(dev),
            attr: None,
            ranges,
            writes_memory: false,
        });
        Ok(())
    }

    /// Overlays the CPU's lines on bytes read from memory (a coherent read). A snoop that
    /// hits a line is served by the cache, clean or dirty: on a coherent system the two
    /// agree, but a clean line left stale by a non-coherent writer reaches coherent readers
    /// too (the mixed-coherency hazard).
    fn snoop_read(&mut self, pa: u64, out: &mut [u8], prov: Option<&mut Vec<ProvRun>>) {
        let pfn = pa / PAGE_SIZE;
        let po = (pa % PAGE_SIZE) as usize;
        let n = out.len();
        let Some(cp) = self.hw.cpu.page(pfn) else { return };
        let (mask, _) = self.hw.chunk_masks(po, n);
        let dirty = cp.valid & mask;
        if dirty == 0 {
            return;
        }
        let line = self.hw.line as usize;
        let mut per_byte = prov.as_ref().map(|p| expand(p, n));
        for (l0, cnt) in runs(dirty) {
            let s = (l0 as usize * line).max(po);
            let e = ((l0 + cnt) as usize * line).min(po + n);
            cp.data.read(s, &mut out[s - po..e - po]);
            if let Some(pb) = &mut per_byte {
                for i in s..e {
                    pb[i - po] = cp.prov.at(i);
                }
            }
        }
        self.stats.hw.snoops += dirty.count_ones() as u64;
        if let (Some(p), Some(pb)) = (prov, per_byte) {
            *p = compress(&pb);
        }
    }

    /// A device writes `data` by DMA at bus address `bus`. Returns the write's id.
    pub fn device_write(&mut self, dev: DeviceId, bus: BusAddr, data: &[u8]) -> Result<WriteId, SimError> {
        self.device_store(dev, bus, data.len() as u64, Src::Bytes(data))
    }

    /// A device fills `len` bytes with `byte` by DMA. Returns the write's id.
    pub fn device_fill(&mut self, dev: DeviceId, bus: BusAddr, len: u64, byte: u8) -> Result<WriteId, SimError> {
        self.device_store(dev, bus, len, Src::Fill(byte))
    }

    fn device_store(&mut self, dev: DeviceId, bus: BusAddr, len: u64, src: Src<'_>) -> Result<WriteId, SimError> {
        let di = self.check_device(dev)?;
        let chunks = self.translate(di, bus, len)?;
        let w = self.new_write();
        let coherent = self.hw.platform.devices[di].coherent;
        // A coherent port that stashes allocates the written lines in the CPU's cache.
        let stash = coherent && self.hw.platform.devices[di].stash;
        let cached = self.hw.dev_caches[di].is_some() || stash;
        let sel = if stash { Sel::Cpu } else { Sel::Dev(di) };
        for &(pa, off, n) in &chunks {
            if coherent && !stash {
                self.snoop_invalidate(pa, n);
            }
            if cached {
                for (a, o, k) in self.hw.line_pieces(sel, pa, n) {
                    let pfn = a / PAGE_SIZE;
                    let po = (a % PAGE_SIZE) as usize;
                    let (mask, partial) = self.hw.chunk_masks(po, k);
                    self.make_present(sel, pfn, mask, partial);
                    let cp = self.hw.cache_mut(sel).page_or_insert(pfn);
                    src.put(&mut cp.data, po, k, off + o);
                    cp.prov.set(po, k, w);
                    cp.dirty |= mask;
                }
            } else if self.via_slc(Sel::Dev(di)) {
                self.slc_write(pa, n, src, off, ProvSrc::Id(w));
            } else {
                self.mem_write(pa, n, src, off, ProvSrc::Id(w));
            }
        }
        self.stats.device_write_bytes = self.stats.device_write_bytes.saturating_add(len);
        self.stats.charge(cycles(0, self.hw.platform.costs.device_access_line, len.div_ceil(self.hw.line)));
        self.emit(Event::DeviceWrite { dev, bus, len, write: w });
        let ranges = coalesce(chunks.iter().map(|&(pa, _, n)| (pa, n as u64)));
        let writes_memory = !cached;
        self.after_op(OpInfo {
            kind: OpKind::DeviceWrite,
            agent: Agent::Device(dev),
            attr: None,
            ranges,
            writes_memory,
        });
        Ok(w)
    }

    /// A coherent write takes ownership of the CPU's lines: partly overwritten dirty lines
    /// are written back first so their other bytes survive, then every line is dropped.
    pub(super) fn snoop_invalidate(&mut self, pa: u64, n: usize) {
        let pfn = pa / PAGE_SIZE;
        let po = (pa % PAGE_SIZE) as usize;
        let (mask, partial) = self.hw.chunk_masks(po, n);
        let (valid, dirty) = self.hw.cpu.state(pfn);
        if valid & mask == 0 {
            return;
        }
        self.stats.hw.snoops += (dirty & mask).count_ones() as u64;
        self.write_back(Sel::Cpu, pfn, partial & dirty, Cause::Snoop);
        // Dirty lines the write covers whole are superseded, not lost: every byte of them
        // is replaced by the device's.
        if let Some(cp) = self.hw.cpu.page_mut(pfn) {
            cp.dirty &= !(mask & !partial);
        }
        self.discard(Sel::Cpu, pfn, mask, Cause::Snoop);
    }

    /// Whether the device has a private cache.
    pub fn device_has_cache(&self, dev: DeviceId) -> bool {
        self.hw.dev_caches.get(dev.index()).is_some_and(|c| c.is_some())
    }
}
