//! The machine: the simulated hardware with the framework on it, and where buffers come
//! from (heaps, a device's local memory, memfds through udmabuf, custom exporters).

use std::cell::RefCell;
use std::rc::Rc;

use dmabuf_sim::{CpuMapId, DeviceId, MemAttr, PhysRange, Platform, Sim, Stats, WriteId};

use crate::attach::{AttachPolicy, Backing};
use crate::dma_buf::DmaBuf;
use crate::error::Error;
use crate::heap::{DeviceBuffer, Exporter, HeapKind, PageAllocator, UdmabufBuffer};
use crate::maintenance::MaintenancePolicy;
use crate::report::Report;
use crate::state::{BufState, Inner};

/// How a [`System`] behaves: which rules attach enforces and which maintenance
/// implementation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SystemConfig {
    /// `Strict` refuses at attach what cannot work; `Linux` accepts it, as upstream does.
    pub attach: AttachPolicy,
    /// Which cache maintenance and bounce copies the framework performs.
    pub maintenance: MaintenancePolicy,
}

/// The DMA-buf framework on one simulated machine. Cheap to clone (a shared handle);
/// single-threaded, like the simulation it drives.
#[derive(Clone)]
pub struct System(pub(crate) Rc<RefCell<Inner>>);

impl System {
    /// The framework on `sim`.
    pub fn new(sim: Sim, cfg: SystemConfig) -> System {
        let pages = PageAllocator::new(sim.platform());
        let footprints = vec![crate::ranges::RangeSet::new(); sim.platform().devices.len()];
        System(Rc::new(RefCell::new(Inner { sim, cfg, pages, bufs: Vec::new(), reports: Vec::new(), footprints })))
    }

    /// The rules and maintenance this system was made with.
    pub fn config(&self) -> SystemConfig {
        self.0.borrow().cfg
    }

    /// Runs `f` on the simulated hardware (to read memory in tests, add freedoms, read stats).
    pub fn with_sim<R>(&self, f: impl FnOnce(&mut Sim) -> R) -> R {
        f(&mut self.0.borrow_mut().sim)
    }

    /// The hardware's counters: operations, lines, bytes and cycles of every kind.
    pub fn stats(&self) -> Stats {
        *self.0.borrow().sim.stats()
    }

    /// The simulated machine's description.
    pub fn platform(&self) -> Platform {
        self.0.borrow().sim.platform().clone()
    }

    /// Protocol violations and leaks seen so far, in order.
    pub fn reports(&self) -> Vec<Report> {
        self.0.borrow().reports.clone()
    }

    /// How many reports there are (read the new ones with [`System::reports_since`]).
    pub fn report_count(&self) -> usize {
        self.0.borrow().reports.len()
    }

    /// The reports after the first `n`.
    pub fn reports_since(&self, n: usize) -> Vec<Report> {
        self.0.borrow().reports.get(n..).map(<[Report]>::to_vec).unwrap_or_default()
    }

    /// A heap by name (`system`, `cma`, `uncached`, or the kernel's other names for CMA).
    pub fn heap(&self, name: &str) -> Result<Heap, Error> {
        let kind = HeapKind::from_name(name).ok_or_else(|| Error::NoSuchHeap { name: name.into() })?;
        Ok(Heap { sys: self.clone(), kind })
    }

    /// A device of the platform by name.
    pub fn device(&self, name: &str) -> Result<DeviceId, Error> {
        let inner = self.0.borrow();
        inner.sim.device(name).ok_or_else(|| Error::NoSuchDevice {
            name: name.into(),
            platform: inner.sim.platform().name.clone(),
            known: inner.sim.platform().devices.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", "),
        })
    }

    /// `memfd_create` and `ftruncate(size)`: zeroed anonymous memory, mapped cached.
    pub fn memfd(&self, size: u64) -> Result<Memfd, Error> {
        if size == 0 {
            return Err(Error::ZeroSize);
        }
        let mut inner = self.0.borrow_mut();
        let backing = inner
            .pages
            .allocate(HeapKind::System, size)
            .ok_or_else(|| Error::OutOfMemory { heap: "memfd".into(), size })?;
        let map = inner.sim.cpu_map(&backing.pages, backing.attr)?;
        inner.sim.cpu_fill(map, 0, backing.size(), 0)?;
        Ok(Memfd { sys: self.clone(), backing, map, sealed_shrink: false, views: Default::default() })
    }

    /// `dma_buf_export`: makes a buffer of a custom exporter's memory (a test's stand-in
    /// for a driver's objects). The memory stays the exporter's: it is neither cleared
    /// nor freed by the framework.
    pub fn export(&self, exporter: Box<dyn Exporter>) -> DmaBuf {
        self.adopt(exporter)
    }

    /// Wraps memory that already has content (a udmabuf's pages) as a buffer, without
    /// clearing it.
    fn adopt(&self, exporter: Box<dyn Exporter>) -> DmaBuf {
        let mut inner = self.0.borrow_mut();
        let id = inner.bufs.len();
        inner.bufs.push(BufState::new(exporter, id));
        DmaBuf::from_index(self.clone(), id)
    }

    /// A udmabuf over `backing` (pages of memfds, as `UDMABUF_CREATE_LIST` gathers them).
    pub(crate) fn udmabuf(&self, backing: Backing) -> DmaBuf {
        self.adopt_written(Box::new(UdmabufBuffer { backing }))
    }

    /// Wraps a udmabuf's pages: the kernel zeroed them and the process wrote them through
    /// its own cached mapping of the memfd, so any of their lines may be dirty, and the
    /// framework hands them over as it does an allocation's (`udmabuf`'s map syncs the
    /// whole table for the device).
    fn adopt_written(&self, exporter: Box<dyn Exporter>) -> DmaBuf {
        let buf = self.adopt(exporter);
        buf.with(|inner, id| {
            if inner.bufs[id].cpu_cached() {
                let size = inner.bufs[id].exporter.backing().size();
                inner.bufs[id].cpu_dirty.insert(0..size);
            }
        });
        buf
    }

    /// The exporter of `device`'s local memory.
    pub fn device_exporter(&self, device: &str) -> Result<DeviceExporter, Error> {
        let dev = self.device(device)?.index();
        if !self.0.borrow().pages.has_local(dev) {
            return Err(Error::NoLocalMemory { device: device.into() });
        }
        Ok(DeviceExporter { sys: self.clone(), dev })
    }

    /// Makes a buffer of an exporter's freshly allocated memory: zeroes it, as every
    /// exporter must, and hands it out.
    fn register(&self, exporter: Box<dyn Exporter>) -> Result<DmaBuf, Error> {
        let mut inner = self.0.borrow_mut();
        let backing = exporter.backing().clone();
        // An uncached exporter's pages get the attribute in the linear map too, where the
        // architecture does that (x86).
        if backing.attr != MemAttr::Cached {
            inner.sim.set_linear_attr(&backing.pages, backing.attr);
        }
        // Pages come zeroed: clear them, as the heap does, through the kernel's mapping.
        let map = inner.sim.cpu_map(&backing.pages, backing.attr)?;
        inner.sim.cpu_fill(map, 0, backing.size(), 0)?;
        inner.sim.cpu_unmap(map)?;
        let id = inner.bufs.len();
        inner.bufs.push(BufState::new(exporter, id));
        inner.bufs[id].owns_pages = true;
        // The zeroing is the kernel's own write: its dirty lines are the framework's to
        // hand over before a non-coherent device sees the pages (upstream's map cleans
        // them, as `dma_map_sgtable` does on arm64; the minimal implementation cleans them
        // when a non-coherent device is about to access them, which the CPU overwriting
        // them first spares), not at allocation, where no device looks yet.
        inner.sim.cpu_barrier();
        if inner.bufs[id].cpu_cached() {
            let size = inner.bufs[id].exporter.backing().size();
            inner.bufs[id].zeroed.insert(0..size);
        }
        drop(inner);
        Ok(DmaBuf::from_index(self.clone(), id))
    }
}

/// A dma-buf heap (`/dev/dma_heap/<name>`).
pub struct Heap {
    sys: System,
    kind: HeapKind,
}

impl Heap {
    /// Allocates a buffer of `size` bytes (rounded up to pages), zeroed
    /// (`DMA_HEAP_IOCTL_ALLOC`).
    pub fn allocate(&self, size: u64) -> Result<DmaBuf, Error> {
        if size == 0 {
            return Err(Error::ZeroSize);
        }
        let backing = self
            .sys
            .0
            .borrow_mut()
            .pages
            .allocate(self.kind, size)
            .ok_or_else(|| Error::OutOfMemory { heap: self.kind.name().into(), size })?;
        self.sys.register(Box::new(PageAllocator::buffer(self.kind, backing)))
    }
}

/// A device that exports buffers from its local memory (a dGPU's VRAM driver).
pub struct DeviceExporter {
    sys: System,
    dev: usize,
}

impl DeviceExporter {
    /// Allocates a buffer of `size` bytes in the device's local memory, zeroed. The
    /// exporter is dynamic: it can move the buffer to system memory and back.
    pub fn allocate(&self, size: u64) -> Result<DmaBuf, Error> {
        if size == 0 {
            return Err(Error::ZeroSize);
        }
        let mut inner = self.sys.0.borrow_mut();
        let name = format!("{}-vram", inner.sim.platform().devices[self.dev].name);
        let backing = inner
            .pages
            .allocate_local(self.dev, size)
            .ok_or_else(|| Error::OutOfMemory { heap: name.clone(), size })?;
        drop(inner);
        self.sys.register(Box::new(DeviceBuffer { name, owner: self.dev, backing, in_local: true }))
    }
}

/// A memfd: anonymous user memory (cached system pages) that udmabuf can export.
pub struct Memfd {
    sys: System,
    backing: Backing,
    map: CpuMapId,
    sealed_shrink: bool,
    /// The udmabufs made over this memfd: (buffer index, offset in the memfd, size).
    views: std::cell::RefCell<Vec<(usize, u64, u64)>>,
}

impl Memfd {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.backing.size()
    }

    /// `fcntl(F_ADD_SEALS, F_SEAL_SHRINK)`: udmabuf refuses memory that could shrink
    /// under the device.
    pub fn seal_shrink(&mut self) {
        self.sealed_shrink = true;
    }

    /// Writes through the process's own (cached) mapping of the memory. For a udmabuf
    /// made over these pages it is a CPU write outside its brackets: what was handed over
    /// of those bytes no longer is.
    pub fn write(&self, at: u64, data: &[u8]) -> Result<WriteId, Error> {
        let mut inner = self.sys.0.borrow_mut();
        let w = inner.sim.cpu_write(self.map, at, data)?;
        let end = at.saturating_add(data.len() as u64);
        for &(id, off, size) in self.views.borrow().iter() {
            let (s, e) = (at.max(off), end.min(off + size));
            if s < e {
                inner.bufs[id].cpu_written(s - off..e - off);
            }
        }
        Ok(w)
    }

    /// Reads through the process's own mapping.
    pub fn read(&self, at: u64, out: &mut [u8]) -> Result<(), Error> {
        Ok(self.sys.0.borrow_mut().sim.cpu_read(self.map, at, out)?)
    }

    /// `UDMABUF_CREATE`: a dma-buf over `[offset, offset + size)` of the memfd. The kernel's
    /// rules: the memfd is sealed against shrinking, offset and size are page aligned and
    /// non-zero, and the range lies inside the memfd. The buffer aliases the memfd's pages
    /// (the same cached attribute, so no mismatched alias).
    pub fn udmabuf(&self, offset: u64, size: u64) -> Result<DmaBuf, Error> {
        let bad = |reason: &str| Err(Error::Udmabuf { reason: reason.into() });
        if !self.sealed_shrink {
            return bad("the memfd is not sealed with F_SEAL_SHRINK");
        }
        if size == 0 {
            return bad("size is zero");
        }
        if !offset.is_multiple_of(dmabuf_sim::PAGE_SIZE) || !size.is_multiple_of(dmabuf_sim::PAGE_SIZE) {
            return bad("offset and size must be multiples of the page size");
        }
        if offset.checked_add(size).is_none_or(|e| e > self.size()) {
            return bad("the range runs past the end of the memfd");
        }
        let (first, count) = ((offset / dmabuf_sim::PAGE_SIZE) as usize, (size / dmabuf_sim::PAGE_SIZE) as usize);
        let mut pages = Vec::new();
        for r in &self.backing.pages {
            for i in 0..r.len / dmabuf_sim::PAGE_SIZE {
                pages.push(PhysRange { start: r.start.add(i * dmabuf_sim::PAGE_SIZE), len: dmabuf_sim::PAGE_SIZE });
            }
        }
        let backing = Backing { pages: pages[first..first + count].to_vec(), attr: self.backing.attr };
        let buf = self.sys.adopt_written(Box::new(UdmabufBuffer { backing }));
        self.views.borrow_mut().push((buf.id().index(), offset, size));
        Ok(buf)
    }
}

impl Drop for Memfd {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.sys.0.try_borrow_mut() {
            let _ = inner.sim.cpu_unmap(self.map);
            // A real memfd lives while a udmabuf holds its pages; the model keeps the
            // pages allocated for the rest of the simulation instead of tracking that.
        }
    }
}
