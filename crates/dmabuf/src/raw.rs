//! The kernel-style calls without guards, for programs that hold brackets and mappings
//! across calls and for writing down the mistakes real programs make.
//!
//! The guarded API ([`DmaBuf::begin_cpu_access`], [`Attachment::map`],
//! [`UserMapping::read`], ...) cannot forget an end or an unmap. These calls can: each
//! does exactly what it is asked, as the kernel does, and the framework records what is
//! wrong (an end without a begin, an unmap of what is not mapped, a CPU access outside a
//! bracket, a device access without a mapping) as a [`Report`](crate::Report) instead of
//! refusing it where the kernel would not refuse it.

use std::ops::Range;

use dmabuf_sim::{DmaDirection, WriteId};

use crate::{Attachment, CpuBracket, DmaBuf, Error, UserMapping};

/// `dma_buf_map_attachment`: the mapping stays until [`unmap_attachment`].
pub fn map_attachment(att: &Attachment, dir: DmaDirection) -> Result<(), Error> {
    att.map_raw(dir)
}

/// `dma_buf_unmap_attachment`. An unmap of what is not mapped is reported and refused.
pub fn unmap_attachment(att: &Attachment) -> Result<(), Error> {
    att.unmap_raw()
}

/// `dma_buf_begin_cpu_access`, or `dma_buf_begin_cpu_access_partial` when `range` is not
/// the whole buffer: the bracket stays open until [`end_cpu_access`]. Accesses in between
/// go through [`kernel_read`] / [`kernel_write`].
pub fn begin_cpu_access(buf: &DmaBuf, dir: DmaDirection, range: Range<u64>) -> Result<(), Error> {
    let bracket =
        if range == (0..buf.size()) { CpuBracket::full(dir, buf.size()) } else { CpuBracket::partial(dir, range) };
    buf.begin_cpu_access_raw(bracket)
}

/// The kernel bracket `bracket` declares (full, partial, or overwrite), without a guard:
/// it stays open until [`end_cpu_access`].
pub fn begin_cpu_bracket(buf: &DmaBuf, bracket: CpuBracket) -> Result<(), Error> {
    buf.begin_cpu_access_raw(bracket)
}

/// `dma_buf_end_cpu_access`. An end with no bracket open, or with another direction than
/// its begin, is reported; the exporter's end runs anyway, as in the kernel.
pub fn end_cpu_access(buf: &DmaBuf, dir: DmaDirection) -> Result<(), Error> {
    buf.end_cpu_access_raw(dir)
}

/// `dma_buf_vmap`: the kernel mapping stays until [`vunmap`].
pub fn vmap(buf: &DmaBuf) -> Result<(), Error> {
    buf.vmap_raw()
}

/// `dma_buf_vunmap`; a vunmap of what is not vmapped is reported.
pub fn vunmap(buf: &DmaBuf) -> Result<(), Error> {
    buf.vunmap_raw()
}

/// A CPU read through the kernel mapping at `at`: inside a bracket, or reported.
pub fn kernel_read(buf: &DmaBuf, at: u64, out: &mut [u8]) -> Result<(), Error> {
    buf.kernel_read(at, out)
}

/// A CPU write through the kernel mapping at `at`: inside a bracket, or reported.
pub fn kernel_write(buf: &DmaBuf, at: u64, data: &[u8]) -> Result<WriteId, Error> {
    buf.kernel_write(at, data)
}

/// `DMA_BUF_IOCTL_SYNC` with raw flags, as a program issues it. Invalid flags are refused
/// with EINVAL (and reported); an END without a START is reported.
pub fn sync_ioctl(map: &UserMapping, flags: u64) -> Result<(), Error> {
    map.sync(flags)
}

/// `DMA_BUF_IOCTL_SYNC_PARTIAL` (`struct dma_buf_sync_partial { flags, offset, len }`) as
/// a program issues it: upstream answers [`Error::NoSyncPartial`] (`ENOTTY`), and a
/// program falls back to [`sync_ioctl`]; a kernel that has the ioctl but not
/// `DMA_BUF_SYNC_OVERWRITE` answers [`Error::NoOverwrite`] (`EINVAL`).
pub fn sync_ioctl_partial(map: &UserMapping, flags: u64, offset: u32, len: u32) -> Result<(), Error> {
    map.sync_partial(flags, offset, len)
}

/// A CPU read through a user mapping, with no bracket check beyond a report.
pub fn mmap_read(map: &UserMapping, at: u64, out: &mut [u8]) -> Result<(), Error> {
    map.read_unsynced(at, out)
}

/// A CPU write through a user mapping, with no bracket check beyond a report.
pub fn mmap_write(map: &UserMapping, at: u64, data: &[u8]) -> Result<WriteId, Error> {
    map.write_unsynced(at, data)
}

/// A device read of `range` through the attachment's current mapping, outside any job
/// guard. No mapping, or a FROM_DEVICE one, is reported and refused.
pub fn device_read(att: &Attachment, range: Range<u64>) -> Result<Vec<u8>, Error> {
    att.device_read_raw(range)
}

/// A device write at `at` through the attachment's current mapping. No mapping, or a
/// TO_DEVICE one, is reported and refused.
pub fn device_write(att: &Attachment, at: u64, data: &[u8]) -> Result<Vec<WriteId>, Error> {
    att.device_write_raw(at, data)
}

/// The start of a device job over `range` of the attachment's current mapping (the job
/// contract: the device's private cache forgets what it held of the range).
pub fn begin_job(att: &Attachment, range: Range<u64>) -> Result<(), Error> {
    att.begin_job(range)
}

/// The end of a device job over `range`: what it wrote leaves the device's private cache
/// before its fence signals.
pub fn end_job(att: &Attachment, range: Range<u64>) -> Result<(), Error> {
    att.end_job(range)
}

/// Device-side `begin_access` over `range` of the attachment's current mapping.
pub fn begin_device_access(att: &Attachment, range: Range<u64>) -> Result<(), Error> {
    att.begin_access_raw(range)
}

/// Device-side `end_access` over `range` of the attachment's current mapping.
pub fn end_device_access(att: &Attachment, range: Range<u64>) -> Result<(), Error> {
    att.end_access_raw(range)
}

/// `sync_device_to_device`: `from`'s device (which wrote `range`) hands it to `to`'s.
pub fn sync_device_to_device(from: &Attachment, to: &Attachment, range: Range<u64>) -> Result<(), Error> {
    from.sync_to_raw(to, range)
}
