//! dma-buf heaps: discovery under `/dev/dma_heap` and allocation
//! (`DMA_HEAP_IOCTL_ALLOC`, drivers/dma-buf/dma-heap.c).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use dmabuf_uapi::validate::HeapAllocation;
use dmabuf_uapi::{Errno, Error, FdFlags, HeapFlags, Op, Result, traits};
use rustix::fs::{Mode, OFlags};

use crate::buffer::{DmaBuf, page_size};
use crate::sys::{self, errno};

/// Where the kernel puts heap devices.
pub const DEFAULT_HEAP_DIR: &str = "/dev/dma_heap";

/// The names a CMA heap has had across kernels, newest first: `default_cma_region`
/// (6.17+), then the device-tree region name of older kernels (`linux,cma`, `reserved`).
pub const CMA_HEAP_NAMES: [&str; 3] = ["default_cma_region", "linux,cma", "reserved"];

/// The set of heaps in a directory (normally [`DEFAULT_HEAP_DIR`]).
#[derive(Debug, Clone)]
pub struct Heaps {
    dir: PathBuf,
}

impl Default for Heaps {
    fn default() -> Self {
        Heaps::new()
    }
}

impl Heaps {
    /// The heaps in `/dev/dma_heap`.
    pub fn new() -> Self {
        Heaps::at(DEFAULT_HEAP_DIR)
    }

    /// The heaps in another directory (a container's /dev, a test).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Heaps { dir: dir.into() }
    }

    /// The directory the heaps are listed and opened from ([`DEFAULT_HEAP_DIR`] unless
    /// [`Heaps::at`] named another).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The names of the heaps, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        let no_heaps = |e: std::io::Error| Error::NoHeaps {
            path: self.dir.clone(),
            errno: e.raw_os_error().and_then(Errno::new).unwrap_or(Errno::EIO),
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(no_heaps)? {
            let entry = entry.map_err(no_heaps)?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn not_found(&self, name: &str) -> Error {
        Error::HeapNotFound {
            name: name.into(),
            location: self.dir.display().to_string(),
            available: self.names().unwrap_or_default(),
        }
    }

    /// Opens the heap `name`. A missing heap gives [`Error::HeapNotFound`] listing the
    /// heaps that exist.
    pub fn open(&self, name: &str) -> Result<Heap> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(self.not_found(name));
        }
        let path = self.dir.join(name);
        match rustix::fs::open(&path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) {
            Ok(fd) => Ok(Heap { fd, name: name.into() }),
            Err(rustix::io::Errno::NOENT) => Err(self.not_found(name)),
            Err(e) => Err(Error::Open { path, errno: errno(e) }),
        }
    }

    /// Opens the first heap of `names` that exists (for names that changed between
    /// kernels, e.g. [`CMA_HEAP_NAMES`]); the error names the one asked for first and
    /// lists what exists.
    pub fn open_any(&self, names: &[&str]) -> Result<Heap> {
        for name in names {
            match self.open(name) {
                Err(Error::HeapNotFound { .. }) => continue,
                other => return other,
            }
        }
        Err(self.not_found(&names.join("|")))
    }
}

impl traits::Heaps for Heaps {
    type Heap = Heap;

    fn names(&self) -> Result<Vec<String>> {
        Heaps::names(self)
    }

    fn open(&self, name: &str) -> Result<Heap> {
        Heaps::open(self, name)
    }
}

/// An open heap device.
#[derive(Debug)]
pub struct Heap {
    fd: OwnedFd,
    name: String,
}

impl Heap {
    /// The name it was opened by: its device node's under the heap directory.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Allocates a zeroed, read-write buffer of `len` bytes (rounded up to pages by the
    /// heap), `O_RDWR | O_CLOEXEC`.
    pub fn allocate(&self, len: usize) -> Result<DmaBuf> {
        self.allocate_with(len, FdFlags::DEFAULT, HeapFlags::NONE)
    }

    /// Allocates with the kernel's fd and heap flags (`DMA_HEAP_IOCTL_ALLOC`), after the
    /// kernel's checks, so that a refusal says which rule.
    pub fn allocate_with(&self, len: usize, fd_flags: FdFlags, heap_flags: HeapFlags) -> Result<DmaBuf> {
        let request = HeapAllocation::new(len as u64, fd_flags, heap_flags);
        request.check(page_size())?;
        let fd = sys::dma_heap_alloc(self.fd.as_fd(), request.len, fd_flags.bits(), heap_flags.bits())
            .map_err(Error::os(Op::DmaHeapIoctlAlloc))?;
        DmaBuf::from_owned(fd)
    }
}

impl AsFd for Heap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl traits::Heap for Heap {
    type Buffer = DmaBuf;

    fn name(&self) -> &str {
        &self.name
    }

    fn allocate_with(&self, len: usize, fd_flags: FdFlags, heap_flags: HeapFlags) -> Result<DmaBuf> {
        Heap::allocate_with(self, len, fd_flags, heap_flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dmabuf-linux-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    #[test]
    fn a_missing_heap_directory_is_reported_as_no_heaps() {
        let heaps = Heaps::at("/nonexistent/dma_heap");
        match heaps.names() {
            Err(Error::NoHeaps { errno, .. }) => assert_eq!(errno, Errno::ENOENT),
            other => panic!("{other:?}"),
        }
        let e = heaps.open("system").map(drop).expect_err("no heap");
        assert!(matches!(&e, Error::HeapNotFound { available, .. } if available.is_empty()));
    }

    #[test]
    fn a_missing_heap_is_reported_with_the_heaps_that_exist() {
        let dir = scratch_dir("names");
        for n in ["system", "linux,cma"] {
            std::fs::write(dir.join(n), b"").expect("touch");
        }
        let heaps = Heaps::at(&dir);
        assert_eq!(heaps.names().expect("names"), vec!["linux,cma", "system"]);
        match heaps.open("default_cma_region") {
            Err(Error::HeapNotFound { name, available, .. }) => {
                assert_eq!(name, "default_cma_region");
                assert_eq!(available, vec!["linux,cma", "system"]);
            }
            other => panic!("{other:?}"),
        }
        // Names that would leave the directory are not heaps.
        assert!(matches!(heaps.open("../x"), Err(Error::HeapNotFound { .. })));
        // The CMA heap under its older name is found.
        let cma = heaps.open_any(&CMA_HEAP_NAMES).expect("open_any");
        assert_eq!(cma.name(), "linux,cma");
        // A regular file is no heap device: the kernel refuses the ioctl.
        match cma.allocate(4096) {
            Err(Error::Os { op: Op::DmaHeapIoctlAlloc, errno }) => assert_eq!(errno, Errno::ENOTTY),
            other => panic!("{other:?}"),
        }
        // What the kernel would refuse is refused first, naming the rule.
        assert!(matches!(cma.allocate(0), Err(Error::ZeroSize)));
        assert!(matches!(cma.allocate(usize::MAX - 1), Err(Error::LengthWraps { .. })));
        let bad_fd_flags = FdFlags::DEFAULT | FdFlags::from_bits_retain(0o4000);
        assert!(matches!(cma.allocate_with(4096, bad_fd_flags, HeapFlags::NONE), Err(Error::FdFlags { .. })));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
