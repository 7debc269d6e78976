//! udmabuf: a dma-buf made of the pages of a memfd (drivers/dma-buf/udmabuf.c).
//!
//! The buffer aliases the memfd: the same pages, seen through two files. The kernel pins
//! the pages, so it insists that the memfd cannot shrink under the device (`F_SEAL_SHRINK`)
//! and can be written (`F_SEAL_WRITE` refused), that offsets and sizes are whole pages, and
//! that the total stays under the driver's `size_limit_mb` and a list under `list_limit`.
//! [`Udmabuf::create_list`] checks all of it first, so a refusal says which rule and which
//! item, instead of a bare `EINVAL`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{MemfdFlags, Mode, OFlags, SealFlags};
use rustix::io::Errno;

use crate::buffer::DmaBuf;
use crate::error::{Error, Op, Result};
use crate::sys;

/// The udmabuf device.
pub const UDMABUF_DEV: &str = "/dev/udmabuf";
/// Where the driver's limits are readable.
const PARAMS: &str = "/sys/module/udmabuf/parameters";

/// The page size the kernel aligns udmabuf ranges to.
pub fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

/// A memfd: anonymous shmem memory as a file, the backing store of a udmabuf.
#[derive(Debug)]
pub struct Memfd {
    fd: OwnedFd,
}

impl Memfd {
    /// Creates a memfd (`MFD_CLOEXEC | MFD_ALLOW_SEALING`) of `size` bytes rounded up to
    /// whole pages, sealed against shrinking: ready for [`Udmabuf::create`].
    pub fn create(name: &str, size: u64) -> Result<Self> {
        let memfd = Memfd::create_unsealed(name, size)?;
        memfd.add_seals(SealFlags::SHRINK)?;
        Ok(memfd)
    }

    /// Creates a memfd of `size` bytes rounded up to pages that still allows sealing but
    /// has no seal yet.
    pub fn create_unsealed(name: &str, size: u64) -> Result<Self> {
        let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
            .map_err(Error::os(Op::MemfdCreate))?;
        let page = page_size();
        let size = size.div_ceil(page) * page;
        rustix::fs::ftruncate(&fd, size).map_err(Error::os(Op::Ftruncate))?;
        Ok(Memfd { fd })
    }

    /// Wraps any fd without checking it; [`Udmabuf::create`] checks what the kernel will
    /// (shmem, seals, size) and refuses with the reason.
    pub fn from_owned(fd: OwnedFd) -> Self {
        Memfd { fd }
    }

    /// The file's current size.
    pub fn size(&self) -> Result<u64> {
        let st = rustix::fs::fstat(&self.fd).map_err(Error::os(Op::Fstat))?;
        Ok(u64::try_from(st.st_size).unwrap_or(0))
    }

    /// The seals set (`F_GET_SEALS`).
    pub fn seals(&self) -> Result<SealFlags> {
        rustix::fs::fcntl_get_seals(&self.fd).map_err(Error::os(Op::FcntlGetSeals))
    }

    /// Adds seals (`F_ADD_SEALS`).
    pub fn add_seals(&self, seals: SealFlags) -> Result<()> {
        rustix::fs::fcntl_add_seals(&self.fd, seals).map_err(Error::os(Op::FcntlAddSeals))
    }

    /// Reads `buf.len()` bytes at `offset` (`pread`) through the file, not through any
    /// mapping.
    pub fn read_at(&self, mut offset: u64, mut buf: &mut [u8]) -> Result<()> {
        while !buf.is_empty() {
            match rustix::io::pread(&self.fd, &mut *buf, offset) {
                Ok(0) => {
                    return Err(Error::Os { op: Op::Pread, errno: Errno::NXIO });
                }
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(Errno::INTR) => {}
                Err(errno) => return Err(Error::Os { op: Op::Pread, errno }),
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
                Err(Errno::INTR) => {}
                Err(errno) => return Err(Error::Os { op: Op::Pwrite, errno }),
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

/// One range of a udmabuf: `size` bytes of `memfd` from `offset`.
#[derive(Debug, Clone, Copy)]
pub struct UdmabufItem<'a> {
    /// The memfd.
    pub memfd: &'a Memfd,
    /// Page-aligned offset into it.
    pub offset: u64,
    /// Page-aligned length.
    pub size: u64,
}

/// The driver's limits (module parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdmabufLimits {
    /// `size_limit_mb` in bytes: the largest buffer.
    pub max_size: u64,
    /// `list_limit`: the most items in one `UDMABUF_CREATE_LIST`.
    pub max_items: usize,
}

impl Default for UdmabufLimits {
    /// The driver's defaults: 64 MiB, 1024 items.
    fn default() -> Self {
        UdmabufLimits { max_size: 64 << 20, max_items: 1024 }
    }
}

impl UdmabufLimits {
    /// Reads the limits from `/sys/module/udmabuf/parameters`, falling back to the
    /// driver's defaults for what cannot be read.
    pub fn from_sysfs() -> Self {
        Self::from_dir(Path::new(PARAMS))
    }

    fn from_dir(dir: &Path) -> Self {
        let read = |name: &str| -> Option<u64> { std::fs::read_to_string(dir.join(name)).ok()?.trim().parse().ok() };
        let d = UdmabufLimits::default();
        UdmabufLimits {
            max_size: read("size_limit_mb").map_or(d.max_size, |mb| mb << 20),
            max_items: read("list_limit").map_or(d.max_items, |n| n as usize),
        }
    }

    /// Checks `items` against every rule the kernel applies, in the kernel's order.
    pub fn check(&self, items: &[UdmabufItem<'_>]) -> Result<()> {
        if items.len() > self.max_items {
            return Err(Error::UdmabufTooManyItems { count: items.len(), limit: self.max_items });
        }
        let page = page_size();
        let mut total = 0u64;
        for (index, item) in items.iter().enumerate() {
            if item.offset % page != 0 {
                return Err(Error::UdmabufOffsetNotAligned { index, offset: item.offset, page_size: page });
            }
            if item.size % page != 0 {
                return Err(Error::UdmabufSizeNotAligned { index, size: item.size, page_size: page });
            }
            total = total.saturating_add(item.size);
            if total > self.max_size {
                return Err(Error::UdmabufTooLarge { size: total, limit: self.max_size });
            }
        }
        if total == 0 {
            return Err(Error::UdmabufEmpty);
        }
        for (index, item) in items.iter().enumerate() {
            let seals = match rustix::fs::fcntl_get_seals(&item.memfd.fd) {
                Ok(s) => s,
                Err(Errno::INVAL) => return Err(Error::UdmabufNotMemfd { index }),
                Err(errno) => {
                    return Err(Error::Os { op: Op::FcntlGetSeals, errno });
                }
            };
            if !seals.contains(SealFlags::SHRINK) {
                return Err(Error::UdmabufMissingShrinkSeal { index });
            }
            if seals.contains(SealFlags::WRITE) {
                return Err(Error::UdmabufWriteSealed { index });
            }
            let file_size = item.memfd.size()?;
            if item.offset.saturating_add(item.size) > file_size {
                return Err(Error::UdmabufPastEnd { index, offset: item.offset, size: item.size, file_size });
            }
        }
        Ok(())
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
            .map_err(|errno| Error::Open { path, errno })?;
        Ok(Udmabuf { fd, limits: UdmabufLimits::from_sysfs() })
    }

    /// The limits the checks use.
    pub fn limits(&self) -> UdmabufLimits {
        self.limits
    }

    /// A dma-buf of `size` bytes of `memfd` from `offset` (`UDMABUF_CREATE`), after the
    /// kernel's checks.
    pub fn create(&self, memfd: &Memfd, offset: u64, size: u64) -> Result<DmaBuf> {
        self.limits.check(&[UdmabufItem { memfd, offset, size }])?;
        let create = sys::UdmabufCreate { memfd: raw(memfd), flags: sys::UDMABUF_FLAGS_CLOEXEC, offset, size };
        let fd = sys::udmabuf_create(self.fd.as_fd(), &create).map_err(Error::os(Op::UdmabufCreate))?;
        DmaBuf::from_owned(fd)
    }

    /// A dma-buf made of the items' ranges, in order (`UDMABUF_CREATE_LIST`), after the
    /// kernel's checks.
    pub fn create_list(&self, items: &[UdmabufItem<'_>]) -> Result<DmaBuf> {
        self.limits.check(items)?;
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
    use std::os::fd::AsRawFd;
    // An open fd is never negative.
    memfd.fd.as_raw_fd() as u32
}

impl AsFd for Udmabuf {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
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
        assert!(m.seals().expect("seals").contains(SealFlags::SHRINK));
        let limits = UdmabufLimits::default();
        limits.check(&[item(&m, 0, 4 * page)]).expect("whole");
        limits.check(&[item(&m, page, 2 * page), item(&m, 0, page)]).expect("list");
    }

    #[test]
    fn memfd_sizes_round_up_to_pages() {
        let m = Memfd::create("round", 1).expect("memfd");
        assert_eq!(m.size().expect("size"), page_size());
    }

    #[test]
    fn misaligned_offsets_and_sizes_are_refused_like_the_kernel_does() {
        let page = page_size();
        let m = Memfd::create("align", 4 * page).expect("memfd");
        let l = UdmabufLimits::default();
        // selftest: "should fail (offset not page aligned)"
        assert!(matches!(l.check(&[item(&m, page / 2, page)]), Err(Error::UdmabufOffsetNotAligned { index: 0, .. })));
        // selftest: "should fail (size not multiple of page)"
        assert!(matches!(l.check(&[item(&m, 0, page / 2)]), Err(Error::UdmabufSizeNotAligned { index: 0, .. })));
        assert!(matches!(
            l.check(&[item(&m, 0, page), item(&m, 0, 3)]),
            Err(Error::UdmabufSizeNotAligned { index: 1, .. })
        ));
        assert!(matches!(l.check(&[]), Err(Error::UdmabufEmpty)));
        assert!(matches!(l.check(&[item(&m, 0, 0)]), Err(Error::UdmabufEmpty)));
    }

    #[test]
    fn seals_are_checked() {
        let page = page_size();
        let l = UdmabufLimits::default();
        let unsealed = Memfd::create_unsealed("noseal", page).expect("memfd");
        assert!(matches!(l.check(&[item(&unsealed, 0, page)]), Err(Error::UdmabufMissingShrinkSeal { index: 0 })));
        let ro = Memfd::create("ro", page).expect("memfd");
        ro.add_seals(SealFlags::WRITE).expect("seal write");
        assert!(matches!(l.check(&[item(&ro, 0, page)]), Err(Error::UdmabufWriteSealed { index: 0 })));
    }

    #[test]
    fn a_file_that_is_not_a_memfd_is_refused() {
        // selftest: "should fail (not memfd)" uses stdin; /dev/null is no shmem file either.
        let null = std::fs::File::open("/dev/null").expect("open /dev/null");
        let m = Memfd::from_owned(OwnedFd::from(null));
        assert!(matches!(
            UdmabufLimits::default().check(&[item(&m, 0, page_size())]),
            Err(Error::UdmabufNotMemfd { index: 0 })
        ));
    }

    #[test]
    fn ranges_past_the_end_and_over_the_limits_are_refused() {
        let page = page_size();
        let m = Memfd::create("end", 2 * page).expect("memfd");
        let l = UdmabufLimits { max_size: 4 * page, max_items: 2 };
        assert!(matches!(l.check(&[item(&m, page, 2 * page)]), Err(Error::UdmabufPastEnd { index: 0, .. })));
        assert!(matches!(l.check(&[item(&m, 0, 8 * page)]), Err(Error::UdmabufTooLarge { .. })));
        let three = [item(&m, 0, page), item(&m, 0, page), item(&m, 0, page)];
        assert!(matches!(l.check(&three), Err(Error::UdmabufTooManyItems { count: 3, limit: 2 })));
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
        let l = UdmabufLimits::from_dir(&dir);
        assert_eq!(l.max_size, 16 << 20);
        assert_eq!(l.max_items, 1024, "default when the file is missing");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
