//! [`Udmabuf`] and [`Memfd`]: udmabuf on the simulated framework.
//!
//! The framework's memfd knows one seal (`F_SEAL_SHRINK`, what udmabuf needs) and makes a
//! udmabuf of one range. What else user space sees is kept here: every other seal and what
//! the kernel does with it (a write seal refuses writes), hugetlb memfds (sized in whole
//! huge pages, without `write(2)`), files that are not memfds, and lists of ranges, whose
//! pages are put together from one framework udmabuf per item.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use dmabuf_sim::PAGE_SIZE;
use dmabuf_uapi::{Errno, Error, FdFlags, MemfdKind, Op, Result, Seals, UdmabufLimits, traits};

use super::{DmaBuf, Shared, framework};
use crate::attach::Backing;

/// One range of a simulated udmabuf.
pub type UdmabufItem<'a> = dmabuf_uapi::UdmabufItem<'a, Memfd>;

/// A simulated memfd: the framework's, with the seals, the kind and the file system that
/// user space sees. Made by [`Udmabuf::create_memfd`], or [`Udmabuf::file`] for a file
/// that is not a memfd.
pub struct Memfd {
    shared: Rc<Shared>,
    inner: RefCell<crate::Memfd>,
    seals: Cell<Seals>,
    kind: MemfdKind,
    /// Whether the file is shmem or hugetlbfs (a memfd); a file of another file system has
    /// no seals, and udmabuf refuses it.
    memfd: bool,
}

impl fmt::Debug for Memfd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memfd")
            .field("size", &self.inner.borrow().size())
            .field("seals", &self.seals.get())
            .field("kind", &self.kind)
            .field("memfd", &self.memfd)
            .finish()
    }
}

impl Memfd {
    /// The kind of memory: shmem or hugetlb.
    pub fn kind(&self) -> MemfdKind {
        self.kind
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.inner.borrow().size()
    }

    /// The seals (`F_GET_SEALS`); `None` for a file that is not a memfd.
    pub fn seals(&self) -> Option<Seals> {
        self.memfd.then(|| self.seals.get())
    }

    /// Adds seals (`F_ADD_SEALS`): `EPERM` once `F_SEAL_SEAL` is set, `EINVAL` on a file
    /// that is not a memfd (memfd_add_seals).
    pub fn add_seals(&self, seals: Seals) -> Result<()> {
        if !self.memfd {
            return Err(Error::Os { op: Op::FcntlAddSeals, errno: Errno::EINVAL });
        }
        if self.seals.get().contains(Seals::SEAL) {
            return Err(Error::Os { op: Op::FcntlAddSeals, errno: Errno::EPERM });
        }
        if seals.contains(Seals::SHRINK) {
            self.inner.borrow_mut().seal_shrink();
        }
        self.seals.set(self.seals.get() | seals);
        Ok(())
    }

    /// Reads through the file (`pread`, here the process's cached mapping of the memory);
    /// past the end there is nothing (`ENXIO`, as the Linux backend reports a short read).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if offset.checked_add(buf.len() as u64).is_none_or(|end| end > self.size()) {
            return Err(Error::Os { op: Op::Pread, errno: Errno::ENXIO });
        }
        self.inner.borrow().read(offset, buf).map_err(framework(Op::Pread))
    }

    /// Writes through the file (`pwrite`): `EPERM` under `F_SEAL_WRITE` or
    /// `F_SEAL_FUTURE_WRITE`, `EINVAL` on hugetlbfs (it has no `write(2)`). A simulated
    /// memfd cannot grow: a write past its end is refused as under `F_SEAL_GROW` (`EPERM`).
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        let refuse = |errno| Err(Error::Os { op: Op::Pwrite, errno });
        if self.kind == MemfdKind::Hugetlb {
            return refuse(Errno::EINVAL);
        }
        if self.seals.get().intersects(Seals::WRITE | Seals::FUTURE_WRITE) {
            return refuse(Errno::EPERM);
        }
        if offset.checked_add(data.len() as u64).is_none_or(|end| end > self.size()) {
            return refuse(Errno::EPERM);
        }
        self.inner.borrow().write(offset, data).map(drop).map_err(framework(Op::Pwrite))
    }
}

impl traits::Memfd for Memfd {
    fn size(&self) -> Result<u64> {
        Ok(Memfd::size(self))
    }

    fn seals(&self) -> Result<Option<Seals>> {
        Ok(Memfd::seals(self))
    }

    fn add_seals(&self, seals: Seals) -> Result<()> {
        Memfd::add_seals(self, seals)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        Memfd::read_at(self, offset, buf)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        Memfd::write_at(self, offset, data)
    }
}

/// The udmabuf device of a simulated system (`/dev/udmabuf`), made by
/// [`super::Heaps::udmabuf`].
pub struct Udmabuf {
    shared: Rc<Shared>,
    limits: UdmabufLimits,
}

impl fmt::Debug for Udmabuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Udmabuf").field("limits", &self.limits).finish()
    }
}

impl Udmabuf {
    pub(super) fn new(shared: Rc<Shared>) -> Udmabuf {
        Udmabuf { shared, limits: UdmabufLimits::default() }
    }

    /// The same device with other limits (as if the module parameters were set).
    pub fn with_limits(self, limits: UdmabufLimits) -> Udmabuf {
        Udmabuf { limits, ..self }
    }

    /// The limits the checks use.
    pub fn limits(&self) -> UdmabufLimits {
        self.limits
    }

    fn make(&self, size: u64, kind: MemfdKind, memfd: bool) -> Result<Memfd> {
        let size = size
            .checked_next_multiple_of(kind.granule(PAGE_SIZE))
            .ok_or(Error::Os { op: Op::Ftruncate, errno: Errno::EINVAL })?;
        let inner = self.shared.sys.memfd(size).map_err(framework(Op::MemfdCreate))?;
        Ok(Memfd {
            shared: self.shared.clone(),
            inner: RefCell::new(inner),
            seals: Cell::new(Seals::NONE),
            kind,
            memfd,
        })
    }

    /// Makes a memfd of `kind` of `size` bytes rounded up to the kind's granule (whole
    /// huge pages for hugetlb), zeroed, with `seals` added.
    pub fn create_memfd(&self, size: u64, kind: MemfdKind, seals: Seals) -> Result<Memfd> {
        let memfd = self.make(size, kind, true)?;
        if seals != Seals::NONE {
            memfd.add_seals(seals)?;
        }
        Ok(memfd)
    }

    /// A file of `size` bytes that is not a memfd (a file of a disk file system): it has
    /// no seals, and udmabuf refuses it (`EBADFD`).
    pub fn file(&self, size: u64) -> Result<Memfd> {
        self.make(size, MemfdKind::Shmem, false)
    }

    /// A dma-buf of `size` bytes of `memfd` from `offset` (`UDMABUF_CREATE`), after the
    /// kernel's checks.
    pub fn create(&self, memfd: &Memfd, offset: u64, size: u64) -> Result<DmaBuf> {
        self.limits.check(PAGE_SIZE, &[UdmabufItem { memfd, offset, size }])?;
        self.shared.record(Op::UdmabufCreate, "udmabuf".into(), None, None);
        let inner = memfd.inner.borrow().udmabuf(offset, size).map_err(framework(Op::UdmabufCreate))?;
        Ok(self.shared.adopt(inner, FdFlags::DEFAULT))
    }

    /// A dma-buf made of the items' ranges, in order (`UDMABUF_CREATE_LIST`), after the
    /// kernel's checks.
    pub fn create_list(&self, items: &[UdmabufItem<'_>]) -> Result<DmaBuf> {
        self.limits.check(PAGE_SIZE, items)?;
        self.shared.record(Op::UdmabufCreateList, "udmabuf".into(), None, None);
        let mut backing: Option<Backing> = None;
        for item in items {
            if !Rc::ptr_eq(&item.memfd.shared, &self.shared) {
                // Another simulated system's memfd is no file of this one.
                return Err(Error::Os { op: Op::UdmabufCreateList, errno: Errno::EBADF });
            }
            let part = item.memfd.inner.borrow().udmabuf(item.offset, item.size);
            let part = part.map_err(framework(Op::UdmabufCreateList))?.backing();
            match &mut backing {
                Some(b) => b.pages.extend(part.pages),
                None => backing = Some(part),
            }
        }
        let backing = backing.ok_or(Error::UdmabufEmpty)?;
        let inner = self.shared.sys.udmabuf(backing);
        Ok(self.shared.adopt(inner, FdFlags::DEFAULT))
    }
}

impl traits::Udmabuf for Udmabuf {
    type Memfd = Memfd;
    type Buffer = DmaBuf;

    fn page_size(&self) -> u64 {
        PAGE_SIZE
    }

    fn limits(&self) -> UdmabufLimits {
        self.limits
    }

    fn create_memfd(&self, _name: &str, size: u64, kind: MemfdKind, seals: Seals) -> Result<Memfd> {
        Udmabuf::create_memfd(self, size, kind, seals)
    }

    fn create(&self, memfd: &Memfd, offset: u64, size: u64) -> Result<DmaBuf> {
        Udmabuf::create(self, memfd, offset, size)
    }

    fn create_list(&self, items: &[UdmabufItem<'_>]) -> Result<DmaBuf> {
        Udmabuf::create_list(self, items)
    }
}
