//! Exporters: where buffers come from.
//!
//! An exporter owns the memory behind a buffer and describes it with a [`Backing`]; the
//! framework does the rest (attach rules, mapping, maintenance), so the rules live in one
//! layer and exporters stay thin. The [`Exporter`] trait mirrors `struct dma_buf_ops`:
//! for each callback the framework first does the generic part (the attach rules, the
//! streaming-DMA map and the policy's maintenance, the way every heap in
//! `drivers/dma-buf/heaps/` does it with the same few DMA-API calls), then calls the
//! exporter's hook for what only the exporter knows. A hook may refuse where the kernel's
//! may fail (`attach`, `mmap`); the others observe. [`crate::System::export`]
//! takes any exporter, so a test can stand in for a DRM driver's GEM objects.

use dmabuf_sim::{DeviceDesc, DmaDirection, MemAttr, PAGE_SIZE, PhysAddr, PhysRange, Platform, RangeAlloc, RegionKind};

use crate::attach::Backing;

/// `struct dma_buf_ops`: what an exporter provides and the hooks it gets.
pub trait Exporter {
    /// The exporter's name (`exp_name`: `system`, `cma`, `uncached`).
    fn name(&self) -> &str;

    /// The memory behind the buffer.
    fn backing(&self) -> &Backing;

    /// The heap the buffer came from, for a heap's buffer: what a kernel's heap-specific
    /// callbacks (a vendor's `begin_cpu_access_partial`) depend on.
    fn heap_kind(&self) -> Option<HeapKind> {
        None
    }

    /// Whether CPU brackets and maps need cache maintenance at all. The uncached heap's
    /// write-combined memory needs none (only a barrier); cached memory does.
    fn needs_cpu_sync(&self) -> bool {
        self.backing().attr == MemAttr::Cached
    }

    /// Whether the exporter can move the buffer's memory (it implements `pin`/`unpin`
    /// and calls `move_notify`): a dynamic exporter.
    fn is_dynamic(&self) -> bool {
        false
    }

    /// Replaces the memory after a migration (only called on dynamic exporters).
    fn set_backing(&mut self, backing: Backing) {
        let _ = backing;
    }

    /// The device whose local memory the buffer lives in now, if any.
    fn owner(&self) -> Option<usize> {
        None
    }

    /// The device that exports the buffer (and copies it when it migrates), if any.
    fn exporting_device(&self) -> Option<usize> {
        None
    }

    /// `attach`: called after the framework's rules accepted `device`; an `Err` refuses
    /// the attachment with the exporter's reason.
    fn attach(&mut self, device: &DeviceDesc) -> Result<(), String> {
        let _ = device;
        Ok(())
    }

    /// `detach`.
    fn detach(&mut self, device: &DeviceDesc) {
        let _ = device;
    }

    /// `pin`: the buffer must stay where it is (first pin).
    fn pin(&mut self) {}

    /// `unpin`: the last pin is gone.
    fn unpin(&mut self) {}

    /// `map_dma_buf`: called after the framework mapped the pages for `device`.
    fn map(&mut self, device: &DeviceDesc, dir: DmaDirection) {
        let _ = (device, dir);
    }

    /// `unmap_dma_buf`: called after the framework unmapped.
    fn unmap(&mut self, device: &DeviceDesc, dir: DmaDirection) {
        let _ = (device, dir);
    }

    /// `begin_cpu_access`: called after the framework's maintenance for the bracket.
    fn begin_cpu_access(&mut self, dir: DmaDirection) {
        let _ = dir;
    }

    /// `end_cpu_access`: called after the framework's maintenance for the bracket.
    fn end_cpu_access(&mut self, dir: DmaDirection) {
        let _ = dir;
    }

    /// `mmap`: an `Err` refuses the user mapping.
    fn mmap(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// `vmap`: the kernel mapped the buffer.
    fn vmap(&mut self) {}

    /// `vunmap`.
    fn vunmap(&mut self) {}

    /// `release`: the last reference went; the framework frees the backing afterwards.
    fn release(&mut self) {}
}

/// A buffer exported by a device from its local memory (a dGPU's VRAM), which it can
/// migrate to system memory and back: a dynamic exporter.
pub struct DeviceBuffer {
    pub(crate) name: String,
    pub(crate) owner: usize,
    pub(crate) backing: Backing,
    pub(crate) in_local: bool,
}

impl Exporter for DeviceBuffer {
    fn name(&self) -> &str {
        &self.name
    }

    fn backing(&self) -> &Backing {
        &self.backing
    }

    fn is_dynamic(&self) -> bool {
        true
    }

    fn set_backing(&mut self, backing: Backing) {
        self.in_local = backing.attr == MemAttr::WriteCombine;
        self.backing = backing;
    }

    fn owner(&self) -> Option<usize> {
        self.in_local.then_some(self.owner)
    }

    fn exporting_device(&self) -> Option<usize> {
        Some(self.owner)
    }
}

/// The heaps that ship (the kernel's `/dev/dma_heap/*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeapKind {
    /// `system`: scattered cached pages of system DRAM.
    System,
    /// `cma` (`default_cma_region`, older `linux,cma`): physically contiguous cached pages
    /// from the CMA area.
    Cma,
    /// `uncached`: system pages mapped write-combined for the CPU. Upstream has this only
    /// in vendor and Android kernels.
    Uncached,
}

impl HeapKind {
    /// The heap's name as `/dev/dma_heap` shows it.
    pub fn name(self) -> &'static str {
        match self {
            HeapKind::System => "system",
            HeapKind::Cma => "cma",
            HeapKind::Uncached => "uncached",
        }
    }

    /// Every heap, for listings and suggestions.
    pub const ALL: [HeapKind; 3] = [HeapKind::System, HeapKind::Cma, HeapKind::Uncached];

    /// The heap with that name (also the kernel's other names for the CMA heap).
    pub fn from_name(name: &str) -> Option<HeapKind> {
        match name {
            "system" => Some(HeapKind::System),
            "cma" | "default_cma_region" | "linux,cma" | "reserved" => Some(HeapKind::Cma),
            "uncached" | "system-uncached" => Some(HeapKind::Uncached),
            _ => None,
        }
    }
}

/// A buffer from a heap.
pub struct HeapBuffer {
    kind: HeapKind,
    backing: Backing,
}

impl HeapBuffer {
    /// Which heap it came from.
    pub fn kind(&self) -> HeapKind {
        self.kind
    }
}

impl Exporter for HeapBuffer {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn backing(&self) -> &Backing {
        &self.backing
    }

    fn heap_kind(&self) -> Option<HeapKind> {
        Some(self.kind)
    }
}

/// A dma-buf made by udmabuf over a memfd's pages.
pub struct UdmabufBuffer {
    pub(crate) backing: Backing,
}

impl Exporter for UdmabufBuffer {
    fn name(&self) -> &str {
        "udmabuf"
    }

    fn backing(&self) -> &Backing {
        &self.backing
    }
}

/// Hands out physical pages from the platform's regions: scattered for the system heap
/// (no two consecutive pages of a buffer are adjacent, like a fragmented buddy
/// allocator), contiguous for CMA.
pub(crate) struct PageAllocator {
    /// DRAM regions, lowest first: `(region range, allocator)`.
    dram: Vec<(PhysRange, RangeAlloc)>,
    cma: Option<(PhysRange, RangeAlloc)>,
    /// Device-local regions: `(owner device, range, allocator)`.
    local: Vec<(usize, PhysRange, RangeAlloc)>,
}

impl PageAllocator {
    pub(crate) fn new(p: &Platform) -> Self {
        let mut dram: Vec<_> = p
            .regions
            .iter()
            .filter(|r| r.kind == RegionKind::Dram)
            .map(|r| (r.range(), RangeAlloc::new(r.base.0, r.size.0)))
            .collect();
        // The system heap prefers high memory, as the buddy allocator's zones do on
        // machines where low memory is precious (it is what a DMA32 device lacks).
        dram.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
        let cma = p
            .regions
            .iter()
            .find(|r| r.kind == RegionKind::Cma)
            .map(|r| (r.range(), RangeAlloc::new(r.base.0, r.size.0)));
        let local = p
            .regions
            .iter()
            .filter(|r| r.kind == RegionKind::DeviceLocal)
            .filter_map(|r| {
                let owner = p.device_index(r.owner.as_deref()?)?;
                Some((owner, r.range(), RangeAlloc::new(r.base.0, r.size.0)))
            })
            .collect();
        PageAllocator { dram, cma, local }
    }

    /// Allocates `size` bytes of `owner`'s local memory, contiguous; the CPU maps it
    /// write-combined through the device's BAR.
    pub(crate) fn allocate_local(&mut self, owner: usize, size: u64) -> Option<Backing> {
        let size = size.checked_add(PAGE_SIZE - 1)? / PAGE_SIZE * PAGE_SIZE;
        let (_, _, a) = self.local.iter_mut().find(|(o, _, _)| *o == owner)?;
        let at = a.alloc(size, PAGE_SIZE)?;
        Some(Backing { pages: vec![PhysRange { start: PhysAddr(at), len: size }], attr: MemAttr::WriteCombine })
    }

    /// Whether `owner` has local memory.
    pub(crate) fn has_local(&self, owner: usize) -> bool {
        self.local.iter().any(|(o, _, _)| *o == owner)
    }

    /// Allocates `size` bytes (rounded up to pages) for a heap.
    pub(crate) fn allocate(&mut self, kind: HeapKind, size: u64) -> Option<Backing> {
        let size = size.checked_add(PAGE_SIZE - 1)? / PAGE_SIZE * PAGE_SIZE;
        match kind {
            HeapKind::Cma => {
                let (_, a) = self.cma.as_mut()?;
                let at = a.alloc(size, PAGE_SIZE)?;
                Some(Backing { pages: vec![PhysRange { start: PhysAddr(at), len: size }], attr: MemAttr::Cached })
            }
            HeapKind::System | HeapKind::Uncached => {
                let attr = if kind == HeapKind::System { MemAttr::Cached } else { MemAttr::WriteCombine };
                let mut pages: Vec<PhysRange> = Vec::new();
                let mut holes: Vec<PhysRange> = Vec::new();
                // One page at a time, holding a one-page hole after each until the buffer
                // is complete, so its pages are scattered.
                let mut ok = true;
                'pages: for _ in 0..size / PAGE_SIZE {
                    for (_, a) in &mut self.dram {
                        if let Some(at) = a.alloc(2 * PAGE_SIZE, PAGE_SIZE) {
                            pages.push(PhysRange { start: PhysAddr(at), len: PAGE_SIZE });
                            holes.push(PhysRange { start: PhysAddr(at + PAGE_SIZE), len: PAGE_SIZE });
                            continue 'pages;
                        }
                    }
                    ok = false;
                    break;
                }
                self.free(&Backing { pages: holes, attr });
                if !ok {
                    self.free(&Backing { pages, attr });
                    return None;
                }
                Some(Backing { pages, attr })
            }
        }
    }

    /// Returns a backing's pages.
    pub(crate) fn free(&mut self, b: &Backing) {
        for r in &b.pages {
            let owner = self
                .dram
                .iter_mut()
                .map(|(g, a)| (*g, a))
                .chain(self.cma.iter_mut().map(|(g, a)| (*g, a)))
                .chain(self.local.iter_mut().map(|(_, g, a)| (*g, a)));
            for (g, a) in owner {
                if g.covers(r) {
                    a.free(r.start.raw(), r.len);
                    break;
                }
            }
        }
    }

    /// Builds the exporter for a freshly allocated backing.
    pub(crate) fn buffer(kind: HeapKind, backing: Backing) -> HeapBuffer {
        HeapBuffer { kind, backing }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_pages_are_scattered_and_cma_pages_contiguous() {
        let p = Platform::preset("arm64-noncoherent").unwrap();
        let mut a = PageAllocator::new(&p);
        let sys = a.allocate(HeapKind::System, 16 * 1024).unwrap();
        assert_eq!(sys.pages.len(), 4);
        assert!(!sys.is_contiguous());
        let cma = a.allocate(HeapKind::Cma, 16 * 1024 + 1).unwrap();
        assert!(cma.is_contiguous());
        assert_eq!(cma.size(), 20 * 1024);
        assert_eq!(p.regions[p.region_of(cma.pages[0].start).unwrap()].name, "cma");
        let wc = a.allocate(HeapKind::Uncached, 4096).unwrap();
        assert_eq!(wc.attr, MemAttr::WriteCombine);
        a.free(&sys);
        let again = a.allocate(HeapKind::System, 16 * 1024).unwrap();
        assert_eq!(again.pages[0], sys.pages[0], "freed pages are reused");
    }

    #[test]
    fn heap_names_include_the_kernels_aliases() {
        assert_eq!(HeapKind::from_name("linux,cma"), Some(HeapKind::Cma));
        assert_eq!(HeapKind::from_name("default_cma_region"), Some(HeapKind::Cma));
        assert_eq!(HeapKind::from_name("carveout"), None);
    }
}
