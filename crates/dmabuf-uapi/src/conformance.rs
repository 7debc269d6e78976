//! The kernel's refusals as one generic program: every backend's tests run these same
//! functions, so a refusal is checked the same way (the same errno, the same rule) on the
//! simulated framework and on a real kernel.
//!
//! Each function returns what differs from the kernel, or `Ok(())`.

use crate::data::{FdFlags, HeapFlags, MemfdKind, Seals};
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::traits::{DmaBuf, Heap, Udmabuf};

/// Checks that `what` was refused with `errno`.
fn refused<T>(what: &str, got: Result<T>, errno: Errno) -> std::result::Result<(), String> {
    match got {
        Ok(_) => Err(format!("{what}: accepted; the kernel refuses it with {errno:?}")),
        Err(e) if e.errno() == Some(errno) => Ok(()),
        Err(e) => Err(format!("{what}: refused with {:?} ({e}); the kernel says {errno:?}", e.errno())),
    }
}

/// `dma_heap_ioctl_allocate`, `dma_heap_buffer_alloc` and `dma_buf_mmap_internal` on a
/// heap whose pages are `page_size` bytes: empty and wrapping lengths, invalid fd and heap
/// flags (`EINVAL`), a write-only buffer's mapping (`EACCES`), a mapping past the end
/// (`EINVAL`).
pub fn heap_refusals<H: Heap>(heap: &H, page_size: usize) -> std::result::Result<(), String> {
    refused("a zero-length allocation", heap.allocate(0), Errno::EINVAL)?;
    refused("a length that wraps to 0", heap.allocate(usize::MAX - 1), Errno::EINVAL)?;
    let nonblock = FdFlags::from_bits_retain(0o4000);
    refused(
        "O_NONBLOCK in fd_flags",
        heap.allocate_with(page_size, FdFlags::DEFAULT | nonblock, HeapFlags::NONE),
        Errno::EINVAL,
    )?;
    let flags = HeapFlags::from_bits_retain(1);
    refused("a heap flag", heap.allocate_with(page_size, FdFlags::DEFAULT, flags), Errno::EINVAL)?;
    let wronly = heap
        .allocate_with(page_size, FdFlags::WRONLY | FdFlags::CLOEXEC, HeapFlags::NONE)
        .map_err(|e| format!("an O_WRONLY allocation: {e}"))?;
    refused("a mapping of a write-only fd", wronly.mmap().map(drop), Errno::EACCES)?;
    let buf = heap.allocate(2 * page_size).map_err(|e| format!("an allocation: {e}"))?;
    refused("a mapping past the end", buf.mmap_range(page_size, 2 * page_size).map(drop), Errno::EINVAL)?;
    buf.mmap_range(page_size, page_size).map(drop).map_err(|e| format!("a mapping of the last page: {e}"))?;
    Ok(())
}

/// `udmabuf_create` and `check_memfd_seals`: the seals wanted and denied, unaligned and
/// empty items (`EINVAL`).
pub fn udmabuf_refusals<U: Udmabuf>(dev: &U) -> std::result::Result<(), String> {
    let page = dev.page_size();
    let memfd =
        |seals| dev.create_memfd("conformance", 4 * page, MemfdKind::Shmem, seals).map_err(|e: Error| e.to_string());
    let good = memfd(Seals::SHRINK)?;
    dev.create(&good, 0, 4 * page).map(drop).map_err(|e| format!("a valid udmabuf: {e}"))?;
    refused("an unaligned offset", dev.create(&good, page / 2, page), Errno::EINVAL)?;
    refused("an unaligned size", dev.create(&good, 0, page / 2), Errno::EINVAL)?;
    refused("an empty udmabuf", dev.create(&good, 0, 0), Errno::EINVAL)?;
    for (seals, what) in [
        (Seals::NONE, "a memfd without F_SEAL_SHRINK"),
        (Seals::SHRINK | Seals::WRITE, "a memfd with F_SEAL_WRITE"),
        (Seals::SHRINK | Seals::FUTURE_WRITE, "a memfd with F_SEAL_FUTURE_WRITE"),
    ] {
        refused(what, dev.create(&memfd(seals)?, 0, page), Errno::EINVAL)?;
    }
    Ok(())
}
