//! The CPU's side: mappings with a memory attribute, and loads and stores through them
//! (cached, write-combined through the write-combining buffer, uncached).

use super::error::SimError;
use super::simulator::{AliasConflict, Chunk, CpuMapping, ProvSrc, Sim, Src, coalesce};
use crate::addr::{PAGE_SIZE, PhysAddr, PhysRange, page_chunks};
use crate::event::Event;
use crate::hw::{Sel, WcEntry};
use crate::stats::cycles;
use crate::store::{ProvRun, WriteId, compress, expand, push_run};
use crate::vocab::{Agent, CpuMapId, MemAttr, OpInfo, OpKind};

impl Sim {
    /// Maps physical pages into the CPU with a memory attribute. The ranges must be page
    /// aligned and inside regions. Mapping a page that already has a live mapping with a
    /// different attribute is a mismatched alias: it is allowed (hardware allows it) and
    /// reported as an event and in [`Sim::alias_conflicts`].
    pub fn cpu_map(&mut self, ranges: &[PhysRange], attr: MemAttr) -> Result<CpuMapId, SimError> {
        let mut size = 0u64;
        let mut starts = Vec::with_capacity(ranges.len());
        for r in ranges {
            if !r.start.is_aligned(PAGE_SIZE) || r.len % PAGE_SIZE != 0 {
                return Err(SimError::Unaligned { range: *r });
            }
            self.check_in_regions(*r)?;
            starts.push(size);
            size = size.checked_add(r.len).ok_or(SimError::Overflow)?;
        }
        let id = CpuMapId(self.maps.len() as u32);
        let mut conflicts = Vec::new();
        for other in self.maps.iter().flatten().filter(|m| m.attr != attr) {
            for a in &other.ranges {
                for b in ranges {
                    if let Some(range) = a.intersect(b) {
                        conflicts.push(AliasConflict {
                            page: range.start,
                            existing: other.attr,
                            new: attr,
                            map: id,
                            range,
                        });
                    }
                }
            }
        }
        if attr == MemAttr::Cached {
            for pfn in ranges.iter().flat_map(range_pages) {
                *self.hw.cached_pages.entry(pfn).or_insert(0) += 1;
            }
        }
        self.maps.push(Some(CpuMapping { ranges: ranges.to_vec(), starts, size, attr }));
        for c in conflicts {
            self.aliases.push(c);
            self.emit(Event::MismatchedAlias { page: c.page, existing: c.existing, new: c.new, map: c.map });
        }
        let ranges = ranges.to_vec();
        self.after_op(OpInfo {
            kind: OpKind::CpuMap,
            agent: Agent::Cpu,
            attr: Some(attr),
            ranges,
            writes_memory: false,
        });
        Ok(id)
    }

    /// Removes a CPU mapping. Dirty lines stay in the cache (the cache is physically
    /// tagged); pending write-combined writes stay in the buffer until a barrier.
    pub fn cpu_unmap(&mut self, id: CpuMapId) -> Result<(), SimError> {
        let m = self.maps.get_mut(id.0 as usize).and_then(Option::take).ok_or(SimError::NoSuchMapping(id))?;
        if m.attr == MemAttr::Cached {
            for pfn in m.ranges.iter().flat_map(range_pages) {
                if let Some(n) = self.hw.cached_pages.get_mut(&pfn) {
                    *n -= 1;
                    if *n == 0 {
                        self.hw.cached_pages.remove(&pfn);
                    }
                }
            }
        }
        Ok(())
    }

    /// The kernel sets the attribute of its linear map over `ranges` to `attr` (x86's
    /// `set_memory_wc` / `set_memory_wb` when an exporter allocates or frees uncached
    /// pages). Where the platform keeps a cacheable linear alias whatever the pages'
    /// attribute (arm64, RISC-V), nothing changes.
    pub fn set_linear_attr(&mut self, ranges: &[PhysRange], attr: MemAttr) {
        if self.hw.platform.cpu.cacheable_linear_alias {
            return;
        }
        for pfn in ranges.iter().flat_map(range_pages) {
            if attr == MemAttr::Cached {
                self.hw.uncached_linear.remove(&pfn);
            } else {
                self.hw.uncached_linear.insert(pfn);
            }
        }
        if attr != MemAttr::Cached {
            // Changing the attribute flushes what the cache holds of the pages (x86's
            // `cpa_flush`), so no cacheable line survives the change.
            for r in ranges {
                let _ = self.cache_clean_invalidate(*r);
            }
        }
    }

    /// The size and attribute of a live CPU mapping.
    pub fn cpu_mapping(&self, id: CpuMapId) -> Option<(u64, MemAttr)> {
        self.maps.get(id.0 as usize)?.as_ref().map(|m| (m.size, m.attr))
    }

    /// Resolves `[offset, offset + len)` of a mapping to physical page chunks.
    fn resolve(&self, id: CpuMapId, offset: u64, len: u64) -> Result<(MemAttr, Vec<Chunk>), SimError> {
        let m = self.maps.get(id.0 as usize).and_then(|m| m.as_ref()).ok_or(SimError::NoSuchMapping(id))?;
        let size = m.size;
        if offset.checked_add(len).is_none_or(|e| e > size) {
            return Err(SimError::OutsideMapping { map: id, offset, len, size });
        }
        let chunks = page_chunks(offset, len).map(|(va, off, n)| (m.phys(va), off, n)).collect();
        Ok((m.attr, chunks))
    }

    // ----- CPU accesses -----------------------------------------------------------------

    /// The CPU reads through a mapping: cached mappings hit or fill lines; write-combined
    /// and uncached ones read memory (a write-combined read sees the CPU's own pending
    /// writes).
    pub fn cpu_read(&mut self, id: CpuMapId, offset: u64, buf: &mut [u8]) -> Result<(), SimError> {
        let (attr, chunks) = self.resolve(id, offset, buf.len() as u64)?;
        let mut prov = Vec::new();
        let want = self.observed();
        for &(pa, off, n) in &chunks {
            match attr {
                MemAttr::Cached => self.cached_read(pa, &mut buf[off..off + n], want.then_some((&mut prov, off))),
                _ => self.uncached_read(pa, &mut buf[off..off + n], attr, want.then_some((&mut prov, off))),
            }
        }
        self.stats.cpu_read_bytes = self.stats.cpu_read_bytes.saturating_add(buf.len() as u64);
        if want {
            let len = buf.len() as u64;
            self.emit(Event::CpuRead { map: id, offset, len, attr, prov: &prov });
        }
        let ranges = coalesce(chunks.iter().map(|&(pa, _, n)| (pa, n as u64)));
        self.after_op(OpInfo {
            kind: OpKind::CpuRead,
            agent: Agent::Cpu,
            attr: Some(attr),
            ranges,
            writes_memory: false,
        });
        Ok(())
    }

    /// The CPU writes `data` through a mapping. Returns the write's id.
    pub fn cpu_write(&mut self, id: CpuMapId, offset: u64, data: &[u8]) -> Result<WriteId, SimError> {
        self.cpu_store(id, offset, data.len() as u64, Src::Bytes(data))
    }

    /// The CPU fills `len` bytes with `byte` through a mapping. Returns the write's id.
    pub fn cpu_fill(&mut self, id: CpuMapId, offset: u64, len: u64, byte: u8) -> Result<WriteId, SimError> {
        self.cpu_store(id, offset, len, Src::Fill(byte))
    }

    fn cpu_store(&mut self, id: CpuMapId, offset: u64, len: u64, src: Src<'_>) -> Result<WriteId, SimError> {
        let (attr, chunks) = self.resolve(id, offset, len)?;
        let w = self.new_write();
        // The access's pages, physically contiguous ones merged (page chunks come in
        // order, back to back in the access).
        let ranges = coalesce(chunks.iter().map(|&(pa, _, n)| (pa, n as u64)));
        if attr == MemAttr::WriteCombine {
            // Physically contiguous pages in one go: a store to many lines mostly drains
            // straight to memory (see `wc_write`), whatever the pages.
            let mut off = 0;
            for r in &ranges {
                self.wc_write(r.start.raw(), r.len as usize, src, off, w);
                off += r.len as usize;
            }
        }
        for &(pa, off, n) in &chunks {
            match attr {
                MemAttr::Cached => self.cached_write(pa, n, src, off, ProvSrc::Id(w)),
                MemAttr::WriteCombine => {}
                MemAttr::Uncached if self.via_slc(Sel::Cpu) => {
                    self.slc_write(pa, n, src, off, ProvSrc::Id(w));
                    self.stats.charge(cycles(0, self.hw.platform.costs.cpu_uncached_write_line, self.lines_of(pa, n)));
                }
                MemAttr::Uncached => {
                    self.mem_write(pa, n, src, off, ProvSrc::Id(w));
                    self.stats.charge(cycles(0, self.hw.platform.costs.cpu_uncached_write_line, self.lines_of(pa, n)));
                }
            }
        }
        self.stats.cpu_write_bytes = self.stats.cpu_write_bytes.saturating_add(len);
        self.emit(Event::CpuWrite { map: id, offset, len, attr, write: w });
        let writes_memory = attr != MemAttr::Cached;
        self.after_op(OpInfo { kind: OpKind::CpuWrite, agent: Agent::Cpu, attr: Some(attr), ranges, writes_memory });
        Ok(w)
    }

    fn lines_of(&self, pa: u64, n: usize) -> u64 {
        PhysRange { start: PhysAddr(pa), len: n as u64 }.units(self.hw.line)
    }

    /// Writes memory directly (one page chunk).
    pub(super) fn mem_write(&mut self, pa: u64, n: usize, src: Src<'_>, off: usize, prov: ProvSrc<'_>) {
        let po = (pa % PAGE_SIZE) as usize;
        let p = self.hw.mem.page_mut(pa / PAGE_SIZE);
        src.put(&mut p.data, po, n, off);
        prov.apply(&mut p.prov, po, n, off);
    }

    /// A cached read of one page chunk.
    pub(super) fn cached_read(&mut self, pa: u64, out: &mut [u8], mut prov: Option<(&mut Vec<ProvRun>, usize)>) {
        for (a, o, n) in self.hw.line_pieces(Sel::Cpu, pa, out.len()) {
            let p = prov.as_mut().map(|(v, base)| (&mut **v, *base + o));
            self.cached_read_piece(a, &mut out[o..o + n], p);
        }
    }

    fn cached_read_piece(&mut self, pa: u64, out: &mut [u8], prov: Option<(&mut Vec<ProvRun>, usize)>) {
        let pfn = pa / PAGE_SIZE;
        let po = (pa % PAGE_SIZE) as usize;
        let n = out.len();
        let (mask, _) = self.hw.chunk_masks(po, n);
        let misses = self.make_present(Sel::Cpu, pfn, mask, mask);
        let costs = &self.hw.platform.costs;
        let hits = mask.count_ones() as u64 - misses;
        self.stats.charge(cycles(0, costs.cpu_miss_line, misses).saturating_add(cycles(0, costs.cpu_hit_line, hits)));
        let cp = self.hw.cpu.page(pfn).expect("lines were just made present");
        cp.data.read(po, out);
        if let Some((v, base)) = prov {
            cp.prov.runs(po, n, base as u64, v);
        }
    }

    /// A cached write of one page chunk: lines become dirty; partly written lines are
    /// filled first (write-allocate).
    pub(super) fn cached_write(&mut self, pa: u64, n: usize, src: Src<'_>, off: usize, prov: ProvSrc<'_>) {
        for (a, o, k) in self.hw.line_pieces(Sel::Cpu, pa, n) {
            self.cached_write_piece(a, k, src, off + o, prov);
        }
    }

    fn cached_write_piece(&mut self, pa: u64, n: usize, src: Src<'_>, off: usize, prov: ProvSrc<'_>) {
        let pfn = pa / PAGE_SIZE;
        let po = (pa % PAGE_SIZE) as usize;
        let (mask, partial) = self.hw.chunk_masks(po, n);
        let misses = self.make_present(Sel::Cpu, pfn, mask, partial);
        let costs = &self.hw.platform.costs;
        let lines = mask.count_ones() as u64;
        self.stats.charge(cycles(0, costs.cpu_miss_line, misses).saturating_add(cycles(0, costs.cpu_hit_line, lines)));
        let cp = self.hw.cpu.page_or_insert(pfn);
        src.put(&mut cp.data, po, n, off);
        prov.apply(&mut cp.prov, po, n, off);
        cp.dirty |= mask;
    }

    /// A write-combined or uncached read of one page chunk.
    fn uncached_read(&mut self, pa: u64, out: &mut [u8], attr: MemAttr, prov: Option<(&mut Vec<ProvRun>, usize)>) {
        self.hw.mem.read(pa, out);
        let mut runs_here = Vec::new();
        let track = prov.is_some();
        if track {
            self.hw.mem.read_prov(pa, out.len() as u64, 0, &mut runs_here);
        }
        if self.via_slc(Sel::Cpu) {
            self.slc_overlay(pa, out, track.then_some(&mut runs_here));
        }
        if attr == MemAttr::WriteCombine && !self.hw.wc.is_empty() {
            // The CPU sees its own pending write-combined stores.
            let mut per_byte: Option<Vec<WriteId>> = track.then(|| expand(&runs_here, out.len()));
            let line = self.hw.line;
            for e in &self.hw.wc {
                let (ls, le) = (e.line * line, e.line * line + line);
                let (s, t) = (pa.max(ls), (pa + out.len() as u64).min(le));
                for a in s..t {
                    let i = (a - ls) as usize;
                    if e.mask[i] {
                        out[(a - pa) as usize] = e.data[i];
                        if let Some(pb) = &mut per_byte {
                            pb[(a - pa) as usize] = e.prov[i];
                        }
                    }
                }
            }
            if let Some(pb) = per_byte {
                runs_here = compress(&pb);
            }
        }
        if let Some((v, base)) = prov {
            for r in runs_here {
                push_run(v, r.offset + base as u64, r.len, r.write);
            }
        }
        self.stats.charge(cycles(0, self.hw.platform.costs.cpu_uncached_read_line, self.lines_of(pa, out.len())));
    }

    /// A write-combined write of physically contiguous bytes: bytes join the write-combining buffer;
    /// when it holds more lines than it has, the oldest drains to memory.
    fn wc_write(&mut self, pa: u64, n: usize, src: Src<'_>, off: usize, w: WriteId) {
        let line = self.hw.line;
        let end = pa + n as u64;
        // Lines the chunk stores whole, but for the last `wc_cap` of them, would each join
        // the buffer and drain before the chunk ends: everything waiting in the buffer
        // drains first (oldest first), then they reach memory in address order. Do that
        // at once. An entry on one of those lines is overwritten whole before it drains,
        // so it is dropped instead: memory ends with the same bytes and provenance, and
        // the buffer with the same lines, as line by line.
        let first_full = pa.div_ceil(line) * line;
        let bulk_end = (end / line * line).saturating_sub(self.hw.wc_cap as u64 * line);
        if bulk_end > first_full {
            self.wc_write_lines(pa, (first_full - pa) as usize, src, off, w);
            self.hw.wc.retain(|e| !(first_full / line..bulk_end / line).contains(&e.line));
            while !self.hw.wc.is_empty() {
                self.drain_wc_entry(0);
            }
            let (bn, boff) = ((bulk_end - first_full) as usize, off + (first_full - pa) as usize);
            let slc = self.via_slc(Sel::Cpu);
            for (a, o, k) in page_chunks(first_full, bn as u64) {
                if slc {
                    self.slc_write(a, k, src, boff + o, ProvSrc::Id(w));
                } else {
                    self.mem_write(a, k, src, boff + o, ProvSrc::Id(w));
                }
            }
            if self.observed() {
                let range = PhysRange { start: PhysAddr(first_full), len: bn as u64 };
                self.emit(Event::Drain { range, prov: &[ProvRun { offset: 0, len: bn as u64, write: w }] });
            }
            self.stats.hw.wc_drains += (bulk_end - first_full) / line;
            self.stats.charge(cycles(0, self.hw.platform.costs.cpu_wc_write_line, self.lines_of(first_full, bn)));
            self.wc_write_lines(bulk_end, (end - bulk_end) as usize, src, off + (bulk_end - pa) as usize, w);
        } else {
            self.wc_write_lines(pa, n, src, off, w);
        }
    }

    /// [`Self::wc_write`] line by line.
    fn wc_write_lines(&mut self, pa: u64, n: usize, src: Src<'_>, off: usize, w: WriteId) {
        let line = self.hw.line;
        let mut a = pa;
        let end = pa + n as u64;
        while a < end {
            let li = a / line;
            let le = ((li + 1) * line).min(end);
            let idx = match self.hw.wc.iter().position(|e| e.line == li) {
                Some(i) => i,
                None => {
                    self.hw.wc.push(WcEntry {
                        line: li,
                        data: vec![0; line as usize],
                        mask: vec![false; line as usize],
                        prov: if self.track { vec![WriteId::INITIAL; line as usize] } else { Vec::new() },
                    });
                    self.hw.wc.len() - 1
                }
            };
            let e = &mut self.hw.wc[idx];
            let s = (a - li * line) as usize;
            let t = (le - li * line) as usize;
            src.put_slice(&mut e.data[s..t], off + (a - pa) as usize);
            e.mask[s..t].fill(true);
            if !e.prov.is_empty() {
                e.prov[s..t].fill(w);
            }
            a = le;
            if self.hw.wc.len() > self.hw.wc_cap {
                self.drain_wc_entry(0);
            }
        }
        self.stats.charge(cycles(0, self.hw.platform.costs.cpu_wc_write_line, self.lines_of(pa, n)));
    }

    fn drain_wc_entry(&mut self, i: usize) {
        let e = self.hw.wc.remove(i);
        let base = e.line * self.hw.line;
        let mut start = None;
        for j in 0..=e.mask.len() {
            let set = j < e.mask.len() && e.mask[j];
            match (set, start) {
                (true, None) => start = Some(j),
                (false, Some(s)) => {
                    let runs_v = if e.prov.is_empty() { vec![] } else { compress(&e.prov[s..j]) };
                    let pa = base + s as u64;
                    let data = &e.data[s..j];
                    if self.via_slc(Sel::Cpu) {
                        let prov =
                            if runs_v.is_empty() { ProvSrc::Id(WriteId::INITIAL) } else { ProvSrc::Runs(&runs_v) };
                        self.slc_write(pa, j - s, Src::Bytes(data), 0, prov);
                    } else if runs_v.is_empty() {
                        self.hw.mem.write(pa, data, WriteId::INITIAL);
                    } else {
                        self.hw.mem.write_with_runs(pa, data, &runs_v);
                    }
                    if self.observed() {
                        let range = PhysRange { start: PhysAddr(pa), len: (j - s) as u64 };
                        self.emit(Event::Drain { range, prov: &runs_v });
                    }
                    start = None;
                }
                _ => {}
            }
        }
        self.stats.hw.wc_drains += 1;
    }

    /// A CPU barrier: drains the write-combining buffer to memory. The end of a CPU access
    /// bracket is one.
    pub fn cpu_barrier(&mut self) {
        let ranges = coalesce(self.hw.wc.iter().map(|e| (e.line * self.hw.line, self.hw.line)));
        while !self.hw.wc.is_empty() {
            self.drain_wc_entry(0);
        }
        if !ranges.is_empty() {
            self.after_op(OpInfo { kind: OpKind::Barrier, agent: Agent::Cpu, attr: None, ranges, writes_memory: true });
        }
    }

    /// Lines pending in the write-combining buffer.
    pub fn wc_pending_lines(&self) -> usize {
        self.hw.wc.len()
    }
}

/// The page frame numbers a range touches.
fn range_pages(r: &PhysRange) -> std::ops::Range<u64> {
    let first = r.start.raw() / PAGE_SIZE;
    let end = if r.len == 0 { first } else { (r.start.raw() + r.len - 1) / PAGE_SIZE + 1 };
    first..end
}
