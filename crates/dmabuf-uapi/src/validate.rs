//! The rules checked before a call, the same on every backend: what the kernel would
//! refuse (and with which errno), and this API's own rules.
//!
//! | rule | kernel |
//! |---|---|
//! | [`name`] | `DMA_BUF_SET_NAME`'s `strndup_user(.., DMA_BUF_NAME_LEN)`; `sync_merge_data.name[32]` |
//! | [`range`] | (none) a guard's slice of its mapping |
//! | [`HeapAllocation::check`] | `dma_heap_ioctl_allocate`, `dma_heap_buffer_alloc` (drivers/dma-buf/dma-heap.c) |
//! | [`mmap_window`] | `mmap`'s offset and length checks, `dma_buf_mmap_internal` (drivers/dma-buf/dma-buf.c) |
//! | [`crate::UdmabufLimits::check`] | `udmabuf_create`, `check_memfd_seals` (drivers/dma-buf/udmabuf.c) |

use std::ops::Range;

use crate::data::{DMA_BUF_NAME_LEN, FdFlags, HeapFlags};
use crate::error::{Error, Result};

/// Checks a dma-buf or sync file name and makes it the kernel's NUL-padded array: at most
/// `DMA_BUF_NAME_LEN - 1` bytes, no NUL.
pub fn name(name: &str) -> Result<[u8; DMA_BUF_NAME_LEN]> {
    let max = DMA_BUF_NAME_LEN - 1;
    if name.as_bytes().contains(&0) {
        return Err(Error::NameHasNul { name: name.into() });
    }
    if name.len() > max {
        return Err(Error::NameTooLong { name: name.into(), len: name.len(), max });
    }
    let mut out = [0u8; DMA_BUF_NAME_LEN];
    out[..name.len()].copy_from_slice(name.as_bytes());
    Ok(out)
}

/// Checks that `range` is a forward range inside `len` bytes.
#[inline]
pub fn range(range: &Range<usize>, len: usize) -> Result<()> {
    if range.start > range.end || range.end > len {
        return Err(Error::RangeOutOfBounds { start: range.start, end: range.end, len });
    }
    Ok(())
}

/// A `DMA_HEAP_IOCTL_ALLOC` request (`struct dma_heap_allocation_data` as user space
/// fills it in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapAllocation {
    /// Bytes asked for; the heap rounds up to whole pages.
    pub len: u64,
    /// The output fd field: 0 on the way in.
    pub fd: u32,
    /// Flags of the new fd.
    pub fd_flags: FdFlags,
    /// Heap-specific flags.
    pub heap_flags: HeapFlags,
}

impl HeapAllocation {
    /// A request for `len` bytes with these flags (`fd` 0, as it must be).
    pub fn new(len: u64, fd_flags: FdFlags, heap_flags: HeapFlags) -> Self {
        HeapAllocation { len, fd: 0, fd_flags, heap_flags }
    }

    /// Checks the request as `dma_heap_ioctl_allocate` then `dma_heap_buffer_alloc` do, in
    /// their order, and returns the length rounded up to whole pages (`PAGE_ALIGN`): what
    /// the heap allocates.
    pub fn check(&self, page_size: u64) -> Result<u64> {
        if self.fd != 0 {
            return Err(Error::FdNotZero { fd: self.fd });
        }
        if self.fd_flags.bits() & !FdFlags::VALID.bits() != 0 {
            return Err(Error::FdFlags { fd_flags: self.fd_flags });
        }
        if self.heap_flags.bits() & !HeapFlags::VALID.bits() != 0 {
            return Err(Error::HeapFlags { heap_flags: self.heap_flags });
        }
        if self.len == 0 {
            return Err(Error::ZeroSize);
        }
        // PAGE_ALIGN wraps to 0 for a length within a page of the top: EINVAL, as for 0
        // (not ENOMEM, which a merely huge length gets from the heap).
        match self.len.checked_next_multiple_of(page_size) {
            Some(aligned) if aligned != 0 => Ok(aligned),
            _ => Err(Error::LengthWraps { len: self.len, page_size }),
        }
    }
}

/// Checks a shared mapping of `len` bytes at `offset` of a buffer of `size` bytes opened
/// with `access`, as `mmap` then `dma_buf_mmap_internal` do, in their order: the offset is
/// whole pages, the length is not 0, the fd can be read, and the pages the mapping covers
/// (rounded up) lie inside the buffer's.
pub fn mmap_window(offset: u64, len: u64, size: u64, page_size: u64, access: FdFlags) -> Result<()> {
    if !offset.is_multiple_of(page_size) {
        return Err(Error::MmapOffsetNotAligned { offset, page_size });
    }
    if len == 0 {
        return Err(Error::MmapEmpty);
    }
    if !access.readable() {
        return Err(Error::NotReadable);
    }
    let past_end = Error::MmapPastEnd { offset, len, size };
    // vm_pgoff + vma_pages(vma) > dmabuf->size >> PAGE_SHIFT
    let pages = len.div_ceil(page_size);
    match (offset / page_size).checked_add(pages) {
        Some(end) if end <= size / page_size => Ok(()),
        _ => Err(past_end),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errno::Errno;

    const PAGE: u64 = 4096;

    #[test]
    fn names_longer_than_the_kernel_keeps_are_refused() {
        assert!(name("frame-0").is_ok());
        assert!(name(&"x".repeat(31)).is_ok());
        match name(&"x".repeat(32)) {
            Err(Error::NameTooLong { len: 32, max: 31, .. }) => {}
            other => panic!("{other:?}"),
        }
        // 16 two-byte characters: 32 bytes.
        assert!(matches!(name(&"é".repeat(16)), Err(Error::NameTooLong { len: 32, .. })));
        assert!(matches!(name("a\0b"), Err(Error::NameHasNul { .. })));
        let b = name("ab").unwrap_or_default();
        assert_eq!(&b[..3], b"ab\0");
    }

    #[test]
    #[allow(clippy::reversed_empty_ranges)] // a backwards range is one of the mistakes
    fn ranges_must_lie_inside() {
        assert!(range(&(0..10), 10).is_ok());
        assert!(range(&(10..10), 10).is_ok());
        assert!(matches!(range(&(0..11), 10), Err(Error::RangeOutOfBounds { start: 0, end: 11, len: 10 })));
        assert!(range(&(5..4), 10).is_err());
    }

    /// dmabuf-heap.c test_alloc_errors and dma_heap_ioctl_allocate: invalid heap flags,
    /// invalid fd flags, and the fd field, each EINVAL.
    #[test]
    fn dma_heap_ioctl_allocate_refuses_invalid_flags() {
        let ok = HeapAllocation::new(PAGE, FdFlags::DEFAULT, HeapFlags::NONE);
        assert_eq!(ok.check(PAGE).ok(), Some(PAGE));
        // Every access mode is valid, with or without O_CLOEXEC.
        for mode in [FdFlags::RDONLY, FdFlags::WRONLY, FdFlags::RDWR] {
            for flags in [mode, mode | FdFlags::CLOEXEC] {
                assert!(HeapAllocation::new(PAGE, flags, HeapFlags::NONE).check(PAGE).is_ok(), "{flags:?}");
            }
        }
        // The selftest's ~(O_RDWR | O_CLOEXEC), and O_NONBLOCK.
        for bits in [!(FdFlags::DEFAULT.bits()), 0o4000 | FdFlags::RDWR.bits()] {
            let e = HeapAllocation::new(PAGE, FdFlags::from_bits_retain(bits), HeapFlags::NONE).check(PAGE);
            assert!(matches!(e, Err(Error::FdFlags { .. })), "{bits:#o}: {e:?}");
        }
        // The selftest's 0x111111, and any single bit.
        for bits in [0x111111, 1, 1 << 63] {
            let e = HeapAllocation::new(PAGE, FdFlags::DEFAULT, HeapFlags::from_bits_retain(bits)).check(PAGE);
            let e = e.expect_err("heap flags");
            assert!(matches!(e, Error::HeapFlags { .. }));
            assert_eq!(e.errno(), Some(Errno::EINVAL));
        }
        let with_fd = HeapAllocation { fd: 3, ..ok };
        let e = with_fd.check(PAGE).expect_err("fd set");
        assert!(matches!(e, Error::FdNotZero { fd: 3 }));
        assert_eq!((e.errno(), e.op()), (Some(Errno::EINVAL), Some(crate::Op::DmaHeapIoctlAlloc)));
    }

    /// dma_heap_buffer_alloc: the length is rounded up to pages, and 0 (given, or reached
    /// by wrapping) is EINVAL, never ENOMEM.
    #[test]
    fn dma_heap_buffer_alloc_refuses_a_length_that_wraps_to_zero() {
        let alloc = |len| HeapAllocation::new(len, FdFlags::DEFAULT, HeapFlags::NONE).check(PAGE);
        assert_eq!(alloc(1).ok(), Some(PAGE));
        assert_eq!(alloc(PAGE + 1).ok(), Some(2 * PAGE));
        assert_eq!(alloc(u64::MAX - PAGE + 1).ok(), Some(u64::MAX - PAGE + 1), "the last whole page fits");
        assert!(matches!(alloc(0), Err(Error::ZeroSize)));
        for len in [u64::MAX, u64::MAX - 1, u64::MAX - PAGE + 2] {
            let e = alloc(len).expect_err("wraps");
            assert!(matches!(e, Error::LengthWraps { .. }), "{len}: {e:?}");
            assert_eq!(e.errno(), Some(Errno::EINVAL));
        }
    }

    /// dma_buf_mmap_internal: the mapping's pages must lie inside the buffer's.
    #[test]
    fn dma_buf_mmap_internal_refuses_mappings_past_the_end() {
        let size = 4 * PAGE;
        let mmap_window = |offset, len, size, page| mmap_window(offset, len, size, page, FdFlags::DEFAULT);
        assert!(mmap_window(0, size, size, PAGE).is_ok());
        assert!(mmap_window(PAGE, 3 * PAGE, size, PAGE).is_ok());
        // A length that is not whole pages covers its last page partly: still inside.
        assert!(mmap_window(3 * PAGE, 10, size, PAGE).is_ok());
        for (offset, len) in [(0, size + 1), (PAGE, size), (4 * PAGE, 1), (u64::MAX - PAGE + 1, PAGE)] {
            let e = mmap_window(offset, len, size, PAGE).expect_err("past the end");
            assert!(matches!(e, Error::MmapPastEnd { .. }), "{offset}+{len}: {e:?}");
            assert_eq!(e.errno(), Some(Errno::EINVAL));
        }
        assert!(matches!(mmap_window(100, PAGE, size, PAGE), Err(Error::MmapOffsetNotAligned { .. })));
        assert!(matches!(mmap_window(0, 0, size, PAGE), Err(Error::MmapEmpty)));
        assert!(matches!(mmap_window(0, u64::MAX, size, PAGE), Err(Error::MmapPastEnd { .. })));
    }

    /// do_mmap: a shared mapping needs a readable fd (EACCES), checked after the offset
    /// and the length and before the buffer's end.
    #[test]
    fn a_write_only_fd_cannot_be_mapped() {
        let wronly = FdFlags::WRONLY | FdFlags::CLOEXEC;
        let e = mmap_window(0, PAGE, PAGE, PAGE, wronly).expect_err("write-only");
        assert!(matches!(e, Error::NotReadable));
        assert_eq!((e.errno(), e.op()), (Some(Errno::EACCES), Some(crate::Op::Mmap)));
        assert!(matches!(mmap_window(1, PAGE, PAGE, PAGE, wronly), Err(Error::MmapOffsetNotAligned { .. })));
        assert!(matches!(mmap_window(0, 2 * PAGE, PAGE, PAGE, wronly), Err(Error::NotReadable)));
        assert!(mmap_window(0, PAGE, PAGE, PAGE, FdFlags::RDONLY).is_ok());
    }
}
