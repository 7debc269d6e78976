//! udmabuf: a dma-buf made of the pages of a memfd (drivers/dma-buf/udmabuf.c).
//!
//! The buffer aliases the memfd: the same pages, seen through two files. The kernel pins
//! the pages, so it insists that the memfd cannot shrink under the device (`F_SEAL_SHRINK`)
//! and can be written (`F_SEAL_WRITE` and `F_SEAL_FUTURE_WRITE` refused), that offsets and
//! sizes are whole pages, and that the total stays under the driver's `size_limit_mb` and a
//! list under `list_limit`. [`UdmabufLimits::check`] (the user API's) checks all of it
//! first, so a refusal says which rule and which item, instead of a bare `EINVAL`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use dmabuf_uapi::{Errno, Error, MemfdKind, Op, Result, Seals, UdmabufLimits, traits};
use rustix::fs::{MemfdFlags, Mode, OFlags, SealFlags};

use crate::buffer::{DmaBuf, page_size};
use crate::sys::{self, errno};

/// The udmabuf misc device's node, opened to issue `UDMABUF_CREATE` on.
pub const UDMABUF_DEV: &str = "/dev/udmabuf";
/// Where the driver's limits are readable.
const PARAMS: &str = "/sys/module/udmabuf/parameters";

/// One range of a udmabuf made of this crate's [`Memfd`]s.
pub type UdmabufItem<'a> = dmabuf_uapi::UdmabufItem<'a, Memfd>;

/// A memfd (anonymous shmem or hugetlbfs memory as a file), the backing store of a
/// udmabuf; or any fd given to [`Memfd::from_owned`], which udmabuf's checks then judge.
#[derive(Debug)]
pub struct Memfd {
    fd: OwnedFd,
}

fn os(op: Op) -> impl FnOnce(rustix::io::Errno) -> Error {
    move |e| Error::Os { op, errno: errno(e) }
}

impl Memfd {
    /// Creates a memfd (`MFD_CLOEXEC | MFD_ALLOW_SEALING`) of `size` bytes rounded up to
    /// whole pages, sealed against shrinking: ready for [`Udmabuf::create`].
    pub fn create(name: &str, size: u64) -> Result<Self> {
        Memfd::create_with(name, size, MemfdKind::Shmem, Seals::SHRINK)
    }

    /// Creates a memfd of `size` bytes rounded up to pages that still allows sealing but
    /// has no seal yet.
    pub fn create_unsealed(name: &str, size: u64) -> Result<Self> {
        Memfd::create_with(name, size, MemfdKind::Shmem, Seals::NONE)
    }

    /// Creates a memfd of `kind` (`MFD_HUGETLB` for hugetlb) of `size` bytes rounded up to
    /// the kind's granule (hugetlbfs sizes files in whole huge pages), with `seals` added.
    pub fn create_with(name: &str, size: u64, kind: MemfdKind, seals: Seals) -> Result<Self> {
        let mut flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
        if kind == MemfdKind::Hugetlb {
            flags |= MemfdFlags::HUGETLB;
        }
        let fd = rustix::fs::memfd_create(name, flags).map_err(os(Op::MemfdCreate))?;
        let granule = kind.granule(page_size());
        let size =
            size.checked_next_multiple_of(granule).ok_or(Error::Os { op: Op::Ftruncate, errno: Errno::EINVAL })?;
        rustix::fs::ftruncate(&fd, size).map_err(os(Op::Ftruncate))?;
        let memfd = Memfd { fd };
        if seals != Seals::NONE {
            memfd.add_seals(seals)?;
        }
        Ok(memfd)
    }

    /// Wraps any fd without checking it; [`Udmabuf::create`] checks what the kernel will
    /// (shmem, seals, size) and refuses with the reason.
    pub fn from_owned(fd: OwnedFd) -> Self {
        Memfd { fd }
    }

    /// The file's current size.
    pub fn size(&self) -> Result<u64> {
        let st = rustix::fs::fstat(&self.fd).map_err(os(Op::Fstat))?;
        Ok(u64::try_from(st.st_size).unwrap_or(0))
    }

    /// The seals set (`F_GET_SEALS`); `None` when the file is no memfd (the kernel says
    /// `EINVAL`: neither shmem nor hugetlbfs).
    pub fn seals(&self) -> Result<Option<Seals>> {
        match rustix::fs::fcntl_get_seals(&self.fd) {
            Ok(s) => Ok(Some(Seals::from_bits_retain(s.bits()))),
            Err(rustix::io::Errno::INVAL) => Ok(None),
            Err(e) => Err(os(Op::FcntlGetSeals)(e)),
        }
    }

    /// Adds seals (`F_ADD_SEALS`).
    pub fn add_seals(&self, seals: Seals) -> Result<()> {
        rustix::fs::fcntl_add_seals(&self.fd, SealFlags::from_bits_retain(seals.bits())).map_err(os(Op::FcntlAddSeals))
    }

    /// Reads `buf.len()` bytes at `offset` (`pread`) through the file, not through any
    /// mapping.
    pub fn read_at(&self, mut offset: u64, mut buf: &mut [u8]) -> Result<()> {
        while !buf.is_empty() {
            match rustix::io::pread(&self.fd, &mut *buf, offset) {
                Ok(0) => return Err(Error::Os { op: Op::Pread, errno: Errno::ENXIO }),
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(os(Op::Pread)(e)),
            }
        }
        Ok(())
    }

    /// Writes `data` at `offset` (`pwrite`) through the file.
    pub fn write_at(&self, mut offset: u64, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            match rustix::io::pwrite(&self.fd, data, offset) {
                Ok(n) => {
                    data = &data[n..];
                    offset += n as u64;
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(os(Op::Pwrite)(e)),
            }
        }
        Ok(())
    }
}

impl AsFd for Memfd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl traits::Memfd for Memfd {
    fn size(&self) -> Result<u64> {
        Memfd::size(self)
    }

    fn seals(&self) -> Result<Option<Seals>> {
        Memfd::seals(self)
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

/// The driver's limits as `/sys/module/udmabuf/parameters` says, with the driver's
/// defaults for what cannot be read.
pub fn udmabuf_limits() -> UdmabufLimits {
    limits_in(Path::new(PARAMS))
}

fn limits_in(dir: &Path) -> UdmabufLimits {
    let read = |name: &str| -> Option<u64> { std::fs::read_to_string(dir.join(name)).ok()?.trim().parse().ok() };
    let d = UdmabufLimits::default();
    UdmabufLimits {
        max_size: read("size_limit_mb").map_or(d.max_size, |mb| mb << 20),
        max_items: read("list_limit").map_or(d.max_items, |n| n as usize),
    }
}

/// The udmabuf device (`/dev/udmabuf`).
#[derive(Debug)]
pub struct Udmabuf {
    fd: OwnedFd,
    limits: UdmabufLimits,
}

impl Udmabuf {
    /// Opens `/dev/udmabuf` and reads the driver's limits.
    pub fn open() -> Result<Self> {
        Udmabuf::open_at(UDMABUF_DEV)
    }

    /// Opens the udmabuf device at `path`.
    pub fn open_at(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let fd = rustix::fs::open(&path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| Error::Open { path, errno: errno(e) })?;
        Ok(Udmabuf { fd, limits: udmabuf_limits() })
    }

    /// The limits the checks use.
    pub fn limits(&self) -> UdmabufLimits {
        self.limits
    }

    /// A dma-buf of `size` bytes of `memfd` from `offset` (`UDMABUF_CREATE`), after the
    /// kernel's checks.
    pub fn create(&self, memfd: &Memfd, offset: u64, size: u64) -> Result<DmaBuf> {
        self.limits.check(page_size(), &[UdmabufItem { memfd, offset, size }])?;
        let create = sys::UdmabufCreate { memfd: raw(memfd), flags: sys::UDMABUF_FLAGS_CLOEXEC, offset, size };
        let fd = sys::udmabuf_create(self.fd.as_fd(), &create).map_err(Error::os(Op::UdmabufCreate))?;
        DmaBuf::from_owned(fd)
    }

    /// A dma-buf made of the items' ranges, in order (`UDMABUF_CREATE_LIST`), after the
    /// kernel's checks.
    pub fn create_list(&self, items: &[UdmabufItem<'_>]) -> Result<DmaBuf> {
        self.limits.check(page_size(), items)?;
        let raw_items: Vec<sys::UdmabufCreateItem> = items
            .iter()
            .map(|i| sys::UdmabufCreateItem { memfd: raw(i.memfd), pad: 0, offset: i.offset, size: i.size })
            .collect();
        let fd = sys::udmabuf_create_list(self.fd.as_fd(), sys::UDMABUF_FLAGS_CLOEXEC, &raw_items)
            .map_err(Error::os(Op::UdmabufCreateList))?;
        DmaBuf::from_owned(fd)
    }
}

fn raw(memfd: &Memfd) -> u32 {
    // An open fd is never negative.
    memfd.fd.as_raw_fd() as u32
}

impl AsFd for Udmabuf {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl traits::Udmabuf for Udmabuf {
    type Memfd = Memfd;
    type Buffer = DmaBuf;

    fn page_size(&self) -> u64 {
        page_size()
    }

    fn limits(&self) -> UdmabufLimits {
        self.limits
    }

    fn create_memfd(&self, name: &str, size: u64, kind: MemfdKind, seals: Seals) -> Result<Memfd> {
        Memfd::create_with(name, size, kind, seals)
    }

    fn create(&self, memfd: &Memfd, offset: u64, size: u64) -> Result<DmaBuf> {
        Udmabuf::create(self, memfd, offset, size)
    }

    fn create_list(&self, items: &[UdmabufItem<'_>]) -> Result<DmaBuf> {
        Udmabuf::create_list(self, items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(memfd: &Memfd, offset: u64, size: u64) -> UdmabufItem<'_> {
        UdmabufItem { memfd, offset, size }
    }

    // These run on any Linux host: the checks need memfds, not /dev/udmabuf.

    #[test]
    fn a_sealed_page_aligned_range_passes() {
        let page = page_size();
        let m = Memfd::create("ok", 4 * page).expect("memfd");
        assert_eq!(m.size().expect("size"), 4 * page);
        assert!(m.seals().expect("seals").is_some_and(|s| s.contains(Seals::SHRINK)));
        let limits = UdmabufLimits::default();
        limits.check(page, &[item(&m, 0, 4 * page)]).expect("whole");
        limits.check(page, &[item(&m, page, 2 * page), item(&m, 0, page)]).expect("list");
    }

    #[test]
    fn memfd_sizes_round_up_to_pages() {
        let m = Memfd::create("round", 1).expect("memfd");
        assert_eq!(m.size().expect("size"), page_size());
    }

    #[test]
    fn seals_are_read_from_the_kernel() {
        let page = page_size();
        let l = UdmabufLimits::default();
        let unsealed = Memfd::create_unsealed("noseal", page).expect("memfd");
        assert_eq!(unsealed.seals().expect("seals"), Some(Seals::NONE));
        assert!(matches!(
            l.check(page, &[item(&unsealed, 0, page)]),
            Err(Error::UdmabufMissingShrinkSeal { index: 0 })
        ));
        for (seal, name) in [(Seals::WRITE, "F_SEAL_WRITE"), (Seals::FUTURE_WRITE, "F_SEAL_FUTURE_WRITE")] {
            let m = Memfd::create("sealed", page).expect("memfd");
            m.add_seals(seal).expect("seal");
            let e = l.check(page, &[item(&m, 0, page)]).expect_err("write-sealed");
            assert!(matches!(e, Error::UdmabufWriteSealed { index: 0, seal } if seal == name), "{e:?}");
            // The kernel enforces the seal on the file itself too.
            assert!(matches!(m.write_at(0, b"x"), Err(Error::Os { op: Op::Pwrite, errno: Errno::EPERM })));
        }
    }

    #[test]
    fn a_file_that_is_not_a_memfd_is_refused() {
        // selftest: "should fail (not memfd)" uses stdin; /dev/null is no shmem file either.
        let null = std::fs::File::open("/dev/null").expect("open /dev/null");
        let m = Memfd::from_owned(OwnedFd::from(null));
        assert_eq!(m.seals().expect("seals"), None);
        let e = UdmabufLimits::default().check(page_size(), &[item(&m, 0, page_size())]).expect_err("not a memfd");
        assert!(matches!(e, Error::UdmabufNotMemfd { index: 0 }));
        assert_eq!(e.errno(), Some(Errno::EBADFD));
    }

    #[test]
    fn memfd_reads_and_writes_go_through_the_file() {
        let m = Memfd::create("rw", 8192).expect("memfd");
        m.write_at(4000, b"hello").expect("write");
        let mut buf = [0u8; 5];
        m.read_at(4000, &mut buf).expect("read");
        assert_eq!(&buf, b"hello");
        // Past the end there is nothing to read.
        let mut far = [0u8; 1];
        assert!(matches!(m.read_at(1 << 20, &mut far), Err(Error::Os { op: Op::Pread, .. })));
    }

    #[test]
    fn limits_come_from_the_module_parameters() {
        let dir = std::env::temp_dir().join(format!("udmabuf-params-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("size_limit_mb"), "16\n").expect("write");
        let l = limits_in(&dir);
        assert_eq!(l.max_size, 16 << 20);
        assert_eq!(l.max_items, 1024, "default when the file is missing");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
