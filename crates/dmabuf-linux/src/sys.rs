//! The raw kernel interface: uapi structures, ioctl numbers and one thin call per ioctl.
//!
//! Everything here mirrors a kernel header, named as there (`struct dma_buf_sync` is
//! [`DmaBufSync`], `DMA_BUF_IOCTL_SYNC` keeps its name):
//! - `include/uapi/linux/dma-heap.h`: [`DMA_HEAP_IOCTL_ALLOC`];
//! - `include/uapi/linux/dma-buf.h`: [`DMA_BUF_IOCTL_SYNC`], [`DMA_BUF_SET_NAME`],
//!   [`DMA_BUF_IOCTL_SYNC_PARTIAL`] (Rockchip's; upstream answers `ENOTTY`),
//!   [`DMA_BUF_IOCTL_EXPORT_SYNC_FILE`], [`DMA_BUF_IOCTL_IMPORT_SYNC_FILE`];
//! - `include/uapi/linux/udmabuf.h`: [`UDMABUF_CREATE`], [`UDMABUF_CREATE_LIST`];
//! - `include/uapi/linux/sync_file.h`: [`SYNC_IOC_MERGE`], [`SYNC_IOC_FILE_INFO`],
//!   [`SYNC_IOC_SET_DEADLINE`];
//! - `drivers/dma-buf/sw_sync.c`: [`SW_SYNC_IOC_CREATE_FENCE`], [`SW_SYNC_IOC_INC`];
//! - `include/uapi/drm/drm.h`, `drm_mode.h`, `vgem_drm.h`: the DRM calls used to drive
//!   vgem as an importer and fence source.
//!
//! The calls return the bare errno (as [`Errno`]). They neither validate nor retry: the
//! typed layer above does that, and tests use this layer to show what the kernel itself
//! refuses. The calls
//! take `BorrowedFd`s and return `OwnedFd`s for every fd the kernel creates, so no fd can
//! leak even here.

use std::ffi::c_void;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};

use dmabuf_uapi::Errno;
use rustix::ioctl::{Ioctl, IoctlOutput, Opcode, opcode};

/// What a raw call returns: its value, or the errno the kernel answered.
pub type Result<T> = std::result::Result<T, Errno>;

/// The kernel's errno as rustix reports it, as the user API's [`Errno`].
pub fn errno(e: rustix::io::Errno) -> Errno {
    // The kernel's errnos are 1..=4095; anything else would be a rustix bug.
    Errno::new(e.raw_os_error()).unwrap_or(Errno::EIO)
}

/// `struct dma_heap_allocation_data`: argument of [`DMA_HEAP_IOCTL_ALLOC`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct DmaHeapAllocationData {
    /// Size of the allocation in bytes.
    pub len: u64,
    /// Out: the new dma-buf's fd.
    pub fd: u32,
    /// Flags of the new fd: `O_CLOEXEC` and an access mode (`DMA_HEAP_VALID_FD_FLAGS`).
    pub fd_flags: u32,
    /// Heap flags; no heap defines any (`DMA_HEAP_VALID_HEAP_FLAGS` is 0).
    pub heap_flags: u64,
}

/// `struct dma_buf_sync`: argument of [`DMA_BUF_IOCTL_SYNC`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct DmaBufSync {
    /// `DMA_BUF_SYNC_START` or `_END`, with `_READ` and/or `_WRITE`.
    pub flags: u64,
}

/// `struct dma_buf_sync_partial`: argument of [`DMA_BUF_IOCTL_SYNC_PARTIAL`] (vendor
/// kernels: Rockchip's BSP, `include/uapi/linux/dma-buf.h` under `CONFIG_DMABUF_PARTIAL`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct DmaBufSyncPartial {
    /// As for [`DmaBufSync`], and the proposed [`DMA_BUF_SYNC_OVERWRITE`].
    pub flags: u64,
    /// First byte of the range, in the buffer.
    pub offset: u32,
    /// Bytes in the range (0: the ioctl does nothing).
    pub len: u32,
}

/// `struct dma_buf_export_sync_file`: argument of [`DMA_BUF_IOCTL_EXPORT_SYNC_FILE`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct DmaBufExportSyncFile {
    /// `DMA_BUF_SYNC_READ` and/or `_WRITE`.
    pub flags: u32,
    /// Out: the sync file's fd.
    pub fd: i32,
}

/// `struct dma_buf_import_sync_file`: argument of [`DMA_BUF_IOCTL_IMPORT_SYNC_FILE`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct DmaBufImportSyncFile {
    /// `DMA_BUF_SYNC_READ` and/or `_WRITE`.
    pub flags: u32,
    /// The fd of the sync file whose fences are added to the buffer's reservation object.
    pub fd: i32,
}

/// `struct udmabuf_create`: argument of [`UDMABUF_CREATE`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct UdmabufCreate {
    /// The fd of the memfd holding the pages (which must be sealed against shrinking).
    pub memfd: u32,
    /// `UDMABUF_FLAGS_CLOEXEC`.
    pub flags: u32,
    /// Page-aligned offset into the memfd.
    pub offset: u64,
    /// Page-aligned size.
    pub size: u64,
}

/// `struct udmabuf_create_item`: one range of [`UDMABUF_CREATE_LIST`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct UdmabufCreateItem {
    /// The fd of the memfd holding this range's pages (which must be sealed against
    /// shrinking).
    pub memfd: u32,
    /// Must be zero.
    pub pad: u32,
    /// Page-aligned offset into the memfd.
    pub offset: u64,
    /// Page-aligned size.
    pub size: u64,
}

/// `struct udmabuf_create_list` without its flexible array of items.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct UdmabufCreateList {
    /// `UDMABUF_FLAGS_CLOEXEC`.
    pub flags: u32,
    /// Number of items that follow.
    pub count: u32,
}

/// `struct sync_merge_data`: argument of [`SYNC_IOC_MERGE`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncMergeData {
    /// Name of the new sync file, NUL-terminated.
    pub name: [u8; 32],
    /// The fd of the sync file merged with the one the ioctl is issued on.
    pub fd2: i32,
    /// Out: the merged sync file's fd.
    pub fence: i32,
    /// Must be zero.
    pub flags: u32,
    /// Must be zero.
    pub pad: u32,
}

/// `struct sync_fence_info`: one fence as [`SYNC_IOC_FILE_INFO`] reports it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncFenceInfo {
    /// Timeline name, NUL-terminated.
    pub obj_name: [u8; 32],
    /// Driver name, NUL-terminated.
    pub driver_name: [u8; 32],
    /// 0 active, 1 signaled, negative errno.
    pub status: i32,
    /// Unused.
    pub flags: u32,
    /// When it signaled (CLOCK_MONOTONIC ns), 0 while active.
    pub timestamp_ns: u64,
}

/// `struct sync_file_info`: argument of [`SYNC_IOC_FILE_INFO`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncFileInfo {
    /// Out: the sync file's name.
    pub name: [u8; 32],
    /// Out: 0 active, 1 signaled, negative errno.
    pub status: i32,
    /// Must be zero.
    pub flags: u32,
    /// In: capacity of the array at `sync_fence_info` (0 to ask for the count);
    /// out: number of fences.
    pub num_fences: u32,
    /// Must be zero.
    pub pad: u32,
    /// User pointer to `num_fences` [`SyncFenceInfo`]s.
    pub sync_fence_info: u64,
}

/// `struct sync_set_deadline`: argument of [`SYNC_IOC_SET_DEADLINE`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncSetDeadline {
    /// Absolute CLOCK_MONOTONIC time in ns.
    pub deadline_ns: u64,
    /// Must be zero.
    pub pad: u64,
}

/// `struct sw_sync_create_fence_data` (drivers/dma-buf/sw_sync.c).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SwSyncCreateFenceData {
    /// The timeline value at which the fence signals.
    pub value: u32,
    /// Fence name, NUL-terminated.
    pub name: [u8; 32],
    /// Out: the sync file's fd.
    pub fence: i32,
}

/// `struct drm_version` (drm.h), used to recognise the vgem device.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DrmVersion {
    /// Out: major version.
    pub version_major: i32,
    /// Out: minor version.
    pub version_minor: i32,
    /// Out: patch level.
    pub version_patchlevel: i32,
    /// In: capacity of `name`; out: length of the name.
    pub name_len: usize,
    /// User pointer to the name buffer.
    pub name: *mut u8,
    /// In/out: capacity/length of `date`.
    pub date_len: usize,
    /// User pointer to the date buffer.
    pub date: *mut u8,
    /// In/out: capacity/length of `desc`.
    pub desc_len: usize,
    /// User pointer to the description buffer.
    pub desc: *mut u8,
}

/// `struct drm_gem_close` (drm.h).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct DrmGemClose {
    /// The GEM handle to release.
    pub handle: u32,
    /// Must be zero.
    pub pad: u32,
}

/// `struct drm_prime_handle` (drm.h).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct DrmPrimeHandle {
    /// GEM handle (in for HANDLE_TO_FD, out for FD_TO_HANDLE).
    pub handle: u32,
    /// `DRM_CLOEXEC | DRM_RDWR` for HANDLE_TO_FD.
    pub flags: u32,
    /// dma-buf fd (out for HANDLE_TO_FD, in for FD_TO_HANDLE).
    pub fd: i32,
}

/// `struct drm_mode_create_dumb` (drm_mode.h).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct DrmModeCreateDumb {
    /// Rows.
    pub height: u32,
    /// Pixels per row.
    pub width: u32,
    /// Bits per pixel.
    pub bpp: u32,
    /// Must be zero.
    pub flags: u32,
    /// Out: GEM handle.
    pub handle: u32,
    /// Out: bytes per row.
    pub pitch: u32,
    /// Out: size in bytes.
    pub size: u64,
}

/// `struct drm_vgem_fence_attach` (vgem_drm.h).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct DrmVgemFenceAttach {
    /// GEM handle of the buffer.
    pub handle: u32,
    /// `VGEM_FENCE_WRITE` for a writer's fence.
    pub flags: u32,
    /// Out: the fence's id for [`DRM_IOCTL_VGEM_FENCE_SIGNAL`].
    pub out_fence: u32,
    /// Must be zero.
    pub pad: u32,
}

/// `struct drm_vgem_fence_signal` (vgem_drm.h).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct DrmVgemFenceSignal {
    /// The fence id from [`DRM_IOCTL_VGEM_FENCE_ATTACH`].
    pub fence: u32,
    /// Must be zero.
    pub flags: u32,
}

/// `DMA_BUF_SYNC_START`.
pub const DMA_BUF_SYNC_START: u64 = 0;
/// `DMA_BUF_SYNC_END`.
pub const DMA_BUF_SYNC_END: u64 = 1 << 2;
/// `DMA_BUF_SYNC_READ`.
pub const DMA_BUF_SYNC_READ: u64 = 1 << 0;
/// `DMA_BUF_SYNC_WRITE`.
pub const DMA_BUF_SYNC_WRITE: u64 = 1 << 1;
/// `DMA_BUF_SYNC_RW`.
pub const DMA_BUF_SYNC_RW: u64 = DMA_BUF_SYNC_READ | DMA_BUF_SYNC_WRITE;
/// `DMA_BUF_SYNC_OVERWRITE`: proposed (docs/proposals/sync-partial.md), in no kernel yet;
/// with `START | WRITE` on [`DMA_BUF_IOCTL_SYNC_PARTIAL`], the range is overwritten whole.
pub const DMA_BUF_SYNC_OVERWRITE: u64 = dmabuf_uapi::DMA_BUF_SYNC_OVERWRITE;
/// `UDMABUF_FLAGS_CLOEXEC`.
pub const UDMABUF_FLAGS_CLOEXEC: u32 = 0x01;
/// `VGEM_FENCE_WRITE`.
pub const VGEM_FENCE_WRITE: u32 = 0x1;
/// `DRM_CLOEXEC` (= `O_CLOEXEC`).
pub const DRM_CLOEXEC: u32 = 0o2000000;
/// `DRM_RDWR` (= `O_RDWR`).
pub const DRM_RDWR: u32 = 0o2;
/// `DMA_BUF_MAGIC`: the `f_type` that `fstatfs` reports for a dma-buf fd
/// (include/uapi/linux/magic.h).
pub const DMA_BUF_MAGIC: u64 = 0x444d_4142;

/// `DMA_HEAP_IOCTL_ALLOC` = `_IOWR('H', 0, struct dma_heap_allocation_data)`.
pub const DMA_HEAP_IOCTL_ALLOC: Opcode = opcode::read_write::<DmaHeapAllocationData>(b'H', 0);
/// `DMA_BUF_IOCTL_SYNC` = `_IOW('b', 0, struct dma_buf_sync)`.
pub const DMA_BUF_IOCTL_SYNC: Opcode = opcode::write::<DmaBufSync>(b'b', 0);
/// `DMA_BUF_SET_NAME` = `_IOW('b', 1, const char *)`; on 64-bit this is
/// `DMA_BUF_SET_NAME_B`. The argument is the string pointer itself.
pub const DMA_BUF_SET_NAME: Opcode = opcode::write::<*const u8>(b'b', 1);
/// `DMA_BUF_IOCTL_SYNC_PARTIAL` = `_IOW('b', 2, struct dma_buf_sync_partial)`: vendor
/// kernels only. Its number differs from [`DMA_BUF_IOCTL_EXPORT_SYNC_FILE`]'s (same `nr`,
/// another direction and size), so upstream's `dma_buf_ioctl` reaches its `default:` case
/// and answers `ENOTTY`.
pub const DMA_BUF_IOCTL_SYNC_PARTIAL: Opcode = opcode::write::<DmaBufSyncPartial>(b'b', 2);
/// `DMA_BUF_IOCTL_EXPORT_SYNC_FILE` = `_IOWR('b', 2, struct dma_buf_export_sync_file)`.
pub const DMA_BUF_IOCTL_EXPORT_SYNC_FILE: Opcode = opcode::read_write::<DmaBufExportSyncFile>(b'b', 2);
/// `DMA_BUF_IOCTL_IMPORT_SYNC_FILE` = `_IOW('b', 3, struct dma_buf_import_sync_file)`.
pub const DMA_BUF_IOCTL_IMPORT_SYNC_FILE: Opcode = opcode::write::<DmaBufImportSyncFile>(b'b', 3);
/// `UDMABUF_CREATE` = `_IOW('u', 0x42, struct udmabuf_create)`.
pub const UDMABUF_CREATE: Opcode = opcode::write::<UdmabufCreate>(b'u', 0x42);
/// `UDMABUF_CREATE_LIST` = `_IOW('u', 0x43, struct udmabuf_create_list)`.
pub const UDMABUF_CREATE_LIST: Opcode = opcode::write::<UdmabufCreateList>(b'u', 0x43);
/// `SYNC_IOC_MERGE` = `_IOWR('>', 3, struct sync_merge_data)`.
pub const SYNC_IOC_MERGE: Opcode = opcode::read_write::<SyncMergeData>(b'>', 3);
/// `SYNC_IOC_FILE_INFO` = `_IOWR('>', 4, struct sync_file_info)`.
pub const SYNC_IOC_FILE_INFO: Opcode = opcode::read_write::<SyncFileInfo>(b'>', 4);
/// `SYNC_IOC_SET_DEADLINE` = `_IOW('>', 5, struct sync_set_deadline)`.
pub const SYNC_IOC_SET_DEADLINE: Opcode = opcode::write::<SyncSetDeadline>(b'>', 5);
/// `SW_SYNC_IOC_CREATE_FENCE` = `_IOWR('W', 0, struct sw_sync_create_fence_data)`.
pub const SW_SYNC_IOC_CREATE_FENCE: Opcode = opcode::read_write::<SwSyncCreateFenceData>(b'W', 0);
/// `SW_SYNC_IOC_INC` = `_IOW('W', 1, __u32)`.
pub const SW_SYNC_IOC_INC: Opcode = opcode::write::<u32>(b'W', 1);
/// `DRM_IOCTL_VERSION` = `DRM_IOWR(0x00, struct drm_version)`.
pub const DRM_IOCTL_VERSION: Opcode = opcode::read_write::<DrmVersion>(b'd', 0x00);
/// `DRM_IOCTL_GEM_CLOSE` = `DRM_IOW(0x09, struct drm_gem_close)`.
pub const DRM_IOCTL_GEM_CLOSE: Opcode = opcode::write::<DrmGemClose>(b'd', 0x09);
/// `DRM_IOCTL_PRIME_HANDLE_TO_FD` = `DRM_IOWR(0x2d, struct drm_prime_handle)`.
pub const DRM_IOCTL_PRIME_HANDLE_TO_FD: Opcode = opcode::read_write::<DrmPrimeHandle>(b'd', 0x2d);
/// `DRM_IOCTL_PRIME_FD_TO_HANDLE` = `DRM_IOWR(0x2e, struct drm_prime_handle)`.
pub const DRM_IOCTL_PRIME_FD_TO_HANDLE: Opcode = opcode::read_write::<DrmPrimeHandle>(b'd', 0x2e);
/// `DRM_IOCTL_MODE_CREATE_DUMB` = `DRM_IOWR(0xB2, struct drm_mode_create_dumb)`.
pub const DRM_IOCTL_MODE_CREATE_DUMB: Opcode = opcode::read_write::<DrmModeCreateDumb>(b'd', 0xb2);
/// `DRM_IOCTL_VGEM_FENCE_ATTACH` = `DRM_IOWR(DRM_COMMAND_BASE + 1, ...)`.
pub const DRM_IOCTL_VGEM_FENCE_ATTACH: Opcode = opcode::read_write::<DrmVgemFenceAttach>(b'd', 0x40 + 0x1);
/// `DRM_IOCTL_VGEM_FENCE_SIGNAL` = `DRM_IOW(DRM_COMMAND_BASE + 2, ...)`.
pub const DRM_IOCTL_VGEM_FENCE_SIGNAL: Opcode = opcode::write::<DrmVgemFenceSignal>(b'd', 0x40 + 0x2);

/// One ioctl call whose argument is a pointer (or a pointer-sized value) and whose result
/// is the call's return value (some ioctls, like `UDMABUF_CREATE`, return an fd there).
struct Call {
    opcode: Opcode,
    arg: *mut c_void,
}

// SAFETY: `Call` passes `arg` unchanged and reports the return value; the obligations of
// the `Ioctl` trait (that the opcode matches the argument) are carried by `raw_ioctl`'s
// callers, each of which states them. `IS_MUTATING` is true, so rustix assumes the kernel
// may write through the pointer.
unsafe impl Ioctl for Call {
    type Output = IoctlOutput;
    const IS_MUTATING: bool = true;

    #[inline]
    fn opcode(&self) -> Opcode {
        self.opcode
    }

    #[inline]
    fn as_ptr(&mut self) -> *mut c_void {
        self.arg
    }

    #[inline]
    unsafe fn output_from_ptr(out: IoctlOutput, _: *mut c_void) -> rustix::io::Result<IoctlOutput> {
        Ok(out)
    }
}

/// `ioctl(fd, opcode, arg)`.
///
/// # Safety
/// `arg` must be what `opcode` expects on `fd`'s file: a pointer valid for reads (and, for
/// `_IOR`/`_IOWR`, writes) of the size the opcode encodes, or the integer the ioctl takes.
#[inline]
unsafe fn raw_ioctl(fd: BorrowedFd<'_>, opcode: Opcode, arg: *mut c_void) -> Result<IoctlOutput> {
    // SAFETY: forwarded to the caller, see above.
    unsafe { rustix::ioctl::ioctl(fd, Call { opcode, arg }) }.map_err(errno)
}

/// `ioctl(fd, opcode, &mut value)` for an ioctl whose argument is exactly a `T`.
///
/// # Safety
/// `opcode` must be an ioctl that reads (and possibly writes back) one `T` at its argument
/// pointer on `fd`'s kind of file. Every opcode in this module encodes `size_of::<T>()`
/// of its argument, and a driver that does not know the opcode fails with `ENOTTY`.
#[inline]
unsafe fn ioctl_with<T>(fd: BorrowedFd<'_>, opcode: Opcode, value: &mut T) -> Result<IoctlOutput> {
    // SAFETY: `value` is a valid, exclusive `T` for the duration of the call; the rest is
    // the caller's obligation.
    unsafe { raw_ioctl(fd, opcode, (value as *mut T).cast()) }
}

/// Takes ownership of an fd the kernel just created for us.
fn owned(fd: RawFd) -> Result<OwnedFd> {
    if fd < 0 {
        // A successful ioctl never reports a negative fd; refuse rather than wrap it.
        return Err(Errno::EBADF);
    }
    // SAFETY: the kernel installed `fd` in our table during the ioctl that just succeeded
    // and nothing else knows about it, so we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `DMA_HEAP_IOCTL_ALLOC` on a heap device, with raw fd and heap flags.
pub fn dma_heap_alloc(heap: BorrowedFd<'_>, len: u64, fd_flags: u32, heap_flags: u64) -> Result<OwnedFd> {
    dma_heap_alloc_data(heap, DmaHeapAllocationData { len, fd: 0, fd_flags, heap_flags })
}

/// `DMA_HEAP_IOCTL_ALLOC` with the whole structure as given, the `fd` field included
/// (which the kernel wants 0 on the way in).
pub fn dma_heap_alloc_data(heap: BorrowedFd<'_>, data: DmaHeapAllocationData) -> Result<OwnedFd> {
    let mut data = data;
    // SAFETY: DMA_HEAP_IOCTL_ALLOC reads and writes one dma_heap_allocation_data.
    unsafe { ioctl_with(heap, DMA_HEAP_IOCTL_ALLOC, &mut data)? };
    owned(data.fd as RawFd)
}

/// `DMA_BUF_IOCTL_SYNC` with raw flags, one attempt.
#[inline]
pub fn dma_buf_sync(buf: BorrowedFd<'_>, flags: u64) -> Result<()> {
    let mut sync = DmaBufSync { flags };
    // SAFETY: DMA_BUF_IOCTL_SYNC reads one dma_buf_sync.
    unsafe { ioctl_with(buf, DMA_BUF_IOCTL_SYNC, &mut sync) }.map(drop)
}

/// `DMA_BUF_IOCTL_SYNC_PARTIAL` with raw flags over `len` bytes from `offset`, one attempt.
/// Upstream answers `ENOTTY`.
#[inline]
pub fn dma_buf_sync_partial(buf: BorrowedFd<'_>, flags: u64, offset: u32, len: u32) -> Result<()> {
    let mut sync = DmaBufSyncPartial { flags, offset, len };
    // SAFETY: DMA_BUF_IOCTL_SYNC_PARTIAL reads one dma_buf_sync_partial (and a kernel
    // without it reads nothing).
    unsafe { ioctl_with(buf, DMA_BUF_IOCTL_SYNC_PARTIAL, &mut sync) }.map(drop)
}

/// `DMA_BUF_SET_NAME` with a NUL-terminated name.
pub fn dma_buf_set_name(buf: BorrowedFd<'_>, name: &std::ffi::CStr) -> Result<()> {
    // SAFETY: DMA_BUF_SET_NAME takes the user pointer of a NUL-terminated string as its
    // argument and only reads it (strndup_user); `name` outlives the call.
    unsafe { raw_ioctl(buf, DMA_BUF_SET_NAME, name.as_ptr().cast_mut().cast()) }.map(drop)
}

/// `DMA_BUF_IOCTL_EXPORT_SYNC_FILE` with raw flags.
pub fn dma_buf_export_sync_file(buf: BorrowedFd<'_>, flags: u32) -> Result<OwnedFd> {
    let mut data = DmaBufExportSyncFile { flags, fd: -1 };
    // SAFETY: the ioctl reads and writes one dma_buf_export_sync_file.
    unsafe { ioctl_with(buf, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, &mut data)? };
    owned(data.fd)
}

/// `DMA_BUF_IOCTL_IMPORT_SYNC_FILE` with raw flags.
pub fn dma_buf_import_sync_file(buf: BorrowedFd<'_>, flags: u32, sync_file: BorrowedFd<'_>) -> Result<()> {
    use std::os::fd::AsRawFd;
    let mut data = DmaBufImportSyncFile { flags, fd: sync_file.as_raw_fd() };
    // SAFETY: the ioctl reads one dma_buf_import_sync_file.
    unsafe { ioctl_with(buf, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, &mut data) }.map(drop)
}

/// `UDMABUF_CREATE`, unchecked.
pub fn udmabuf_create(dev: BorrowedFd<'_>, create: &UdmabufCreate) -> Result<OwnedFd> {
    let mut create = *create;
    // SAFETY: UDMABUF_CREATE reads one udmabuf_create and returns the new fd.
    let fd = unsafe { ioctl_with(dev, UDMABUF_CREATE, &mut create)? };
    owned(fd)
}

/// `UDMABUF_CREATE_LIST`, unchecked; `flags` and `items.len()` fill the header.
pub fn udmabuf_create_list(dev: BorrowedFd<'_>, flags: u32, items: &[UdmabufCreateItem]) -> Result<OwnedFd> {
    // The header and the items must be contiguous: lay them out in one u64 buffer (the
    // header is 8 bytes, an item 24, both 8-aligned).
    const HEAD: usize = std::mem::size_of::<UdmabufCreateList>();
    const ITEM: usize = std::mem::size_of::<UdmabufCreateItem>();
    let count = u32::try_from(items.len()).map_err(|_| Errno::EINVAL)?;
    let mut buf = vec![0u64; (HEAD + ITEM * items.len()) / 8];
    let head = UdmabufCreateList { flags, count };
    // SAFETY: `buf` holds HEAD + ITEM * len bytes, 8-aligned; the header goes at offset 0
    // and item i at HEAD + i * ITEM, each within the buffer and suitably aligned (both
    // types have alignment <= 8 and HEAD, ITEM are multiples of 8).
    unsafe {
        let base = buf.as_mut_ptr().cast::<u8>();
        base.cast::<UdmabufCreateList>().write(head);
        for (i, item) in items.iter().enumerate() {
            base.add(HEAD + i * ITEM).cast::<UdmabufCreateItem>().write(*item);
        }
    }
    // SAFETY: UDMABUF_CREATE_LIST reads a udmabuf_create_list header followed by `count`
    // udmabuf_create_items, exactly what `buf` holds; it returns the new fd.
    let fd = unsafe { raw_ioctl(dev, UDMABUF_CREATE_LIST, buf.as_mut_ptr().cast())? };
    owned(fd)
}

/// `SYNC_IOC_MERGE`.
pub fn sync_merge(a: BorrowedFd<'_>, b: BorrowedFd<'_>, name: [u8; 32]) -> Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let mut data = SyncMergeData { name, fd2: b.as_raw_fd(), ..Default::default() };
    // SAFETY: SYNC_IOC_MERGE reads and writes one sync_merge_data.
    unsafe { ioctl_with(a, SYNC_IOC_MERGE, &mut data)? };
    owned(data.fence)
}

/// `SYNC_IOC_FILE_INFO`, first asking for the count, then for the fences.
pub fn sync_file_info(file: BorrowedFd<'_>) -> Result<(SyncFileInfo, Vec<SyncFenceInfo>)> {
    let mut info = SyncFileInfo::default();
    // SAFETY: SYNC_IOC_FILE_INFO reads and writes one sync_file_info; with num_fences 0 it
    // does not touch sync_fence_info.
    unsafe { ioctl_with(file, SYNC_IOC_FILE_INFO, &mut info)? };
    if info.num_fences == 0 {
        return Ok((info, Vec::new()));
    }
    // A sync file's fence never changes, so the count cannot grow between the two calls.
    let mut fences = vec![SyncFenceInfo::default(); info.num_fences as usize];
    let mut query =
        SyncFileInfo { num_fences: info.num_fences, sync_fence_info: fences.as_mut_ptr() as u64, ..Default::default() };
    // SAFETY: as above; the kernel writes at most `num_fences` sync_fence_info records to
    // `sync_fence_info`, which points at exactly that many.
    unsafe { ioctl_with(file, SYNC_IOC_FILE_INFO, &mut query)? };
    fences.truncate(query.num_fences as usize);
    Ok((query, fences))
}

/// `SYNC_IOC_SET_DEADLINE`.
pub fn sync_set_deadline(file: BorrowedFd<'_>, deadline_ns: u64) -> Result<()> {
    let mut data = SyncSetDeadline { deadline_ns, pad: 0 };
    // SAFETY: SYNC_IOC_SET_DEADLINE reads one sync_set_deadline.
    unsafe { ioctl_with(file, SYNC_IOC_SET_DEADLINE, &mut data) }.map(drop)
}

/// `SW_SYNC_IOC_CREATE_FENCE`.
pub fn sw_sync_create_fence(timeline: BorrowedFd<'_>, value: u32, name: [u8; 32]) -> Result<OwnedFd> {
    let mut data = SwSyncCreateFenceData { value, name, fence: -1 };
    // SAFETY: SW_SYNC_IOC_CREATE_FENCE reads and writes one sw_sync_create_fence_data.
    unsafe { ioctl_with(timeline, SW_SYNC_IOC_CREATE_FENCE, &mut data)? };
    owned(data.fence)
}

/// `SW_SYNC_IOC_INC`.
pub fn sw_sync_inc(timeline: BorrowedFd<'_>, count: u32) -> Result<()> {
    let mut count = count;
    // SAFETY: SW_SYNC_IOC_INC reads one u32.
    unsafe { ioctl_with(timeline, SW_SYNC_IOC_INC, &mut count) }.map(drop)
}

/// `DRM_IOCTL_VERSION`, returning the driver's name.
pub fn drm_driver_name(drm: BorrowedFd<'_>) -> Result<String> {
    let mut name = [0u8; 64];
    let mut v = DrmVersion {
        version_major: 0,
        version_minor: 0,
        version_patchlevel: 0,
        name_len: name.len(),
        name: name.as_mut_ptr(),
        date_len: 0,
        date: std::ptr::null_mut(),
        desc_len: 0,
        desc: std::ptr::null_mut(),
    };
    // SAFETY: DRM_IOCTL_VERSION reads and writes one drm_version and copies at most
    // `name_len` bytes to `name` (valid for 64 bytes); date and desc have length 0.
    unsafe { ioctl_with(drm, DRM_IOCTL_VERSION, &mut v)? };
    let len = v.name_len.min(name.len());
    Ok(String::from_utf8_lossy(&name[..len]).into_owned())
}

/// `DRM_IOCTL_GEM_CLOSE`.
pub fn drm_gem_close(drm: BorrowedFd<'_>, handle: u32) -> Result<()> {
    let mut data = DrmGemClose { handle, pad: 0 };
    // SAFETY: DRM_IOCTL_GEM_CLOSE reads one drm_gem_close.
    unsafe { ioctl_with(drm, DRM_IOCTL_GEM_CLOSE, &mut data) }.map(drop)
}

/// `DRM_IOCTL_PRIME_FD_TO_HANDLE`: imports a dma-buf into the DRM device.
pub fn drm_prime_fd_to_handle(drm: BorrowedFd<'_>, buf: BorrowedFd<'_>) -> Result<u32> {
    use std::os::fd::AsRawFd;
    let mut data = DrmPrimeHandle { handle: 0, flags: 0, fd: buf.as_raw_fd() };
    // SAFETY: the ioctl reads and writes one drm_prime_handle.
    unsafe { ioctl_with(drm, DRM_IOCTL_PRIME_FD_TO_HANDLE, &mut data)? };
    Ok(data.handle)
}

/// `DRM_IOCTL_PRIME_HANDLE_TO_FD`: exports a GEM object as a dma-buf.
pub fn drm_prime_handle_to_fd(drm: BorrowedFd<'_>, handle: u32, flags: u32) -> Result<OwnedFd> {
    let mut data = DrmPrimeHandle { handle, flags, fd: -1 };
    // SAFETY: the ioctl reads and writes one drm_prime_handle.
    unsafe { ioctl_with(drm, DRM_IOCTL_PRIME_HANDLE_TO_FD, &mut data)? };
    owned(data.fd)
}

/// `DRM_IOCTL_MODE_CREATE_DUMB`.
pub fn drm_mode_create_dumb(drm: BorrowedFd<'_>, width: u32, height: u32, bpp: u32) -> Result<DrmModeCreateDumb> {
    let mut data = DrmModeCreateDumb { width, height, bpp, ..Default::default() };
    // SAFETY: the ioctl reads and writes one drm_mode_create_dumb.
    unsafe { ioctl_with(drm, DRM_IOCTL_MODE_CREATE_DUMB, &mut data)? };
    Ok(data)
}

/// `DRM_IOCTL_VGEM_FENCE_ATTACH`: returns the fence id.
pub fn vgem_fence_attach(drm: BorrowedFd<'_>, handle: u32, flags: u32) -> Result<u32> {
    let mut data = DrmVgemFenceAttach { handle, flags, out_fence: 0, pad: 0 };
    // SAFETY: the ioctl reads and writes one drm_vgem_fence_attach.
    unsafe { ioctl_with(drm, DRM_IOCTL_VGEM_FENCE_ATTACH, &mut data)? };
    Ok(data.out_fence)
}

/// `DRM_IOCTL_VGEM_FENCE_SIGNAL`.
pub fn vgem_fence_signal(drm: BorrowedFd<'_>, fence: u32) -> Result<()> {
    let mut data = DrmVgemFenceSignal { fence, flags: 0 };
    // SAFETY: the ioctl reads one drm_vgem_fence_signal.
    unsafe { ioctl_with(drm, DRM_IOCTL_VGEM_FENCE_SIGNAL, &mut data) }.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    /// The numbers as the kernel headers compute them on x86-64 (and every other
    /// architecture with the generic _IOC layout), written out independently of the
    /// `opcode` helpers so a wrong struct size shows up.
    #[test]
    fn ioctl_numbers_match_the_kernel_headers() {
        let expected: &[(&str, Opcode, u64)] = &[
            ("DMA_HEAP_IOCTL_ALLOC", DMA_HEAP_IOCTL_ALLOC, 0xc018_4800),
            ("DMA_BUF_IOCTL_SYNC", DMA_BUF_IOCTL_SYNC, 0x4008_6200),
            ("DMA_BUF_SET_NAME_B", DMA_BUF_SET_NAME, 0x4008_6201),
            ("DMA_BUF_IOCTL_EXPORT_SYNC_FILE", DMA_BUF_IOCTL_EXPORT_SYNC_FILE, 0xc008_6202),
            ("DMA_BUF_IOCTL_IMPORT_SYNC_FILE", DMA_BUF_IOCTL_IMPORT_SYNC_FILE, 0x4008_6203),
            ("UDMABUF_CREATE", UDMABUF_CREATE, 0x4018_7542),
            ("UDMABUF_CREATE_LIST", UDMABUF_CREATE_LIST, 0x4008_7543),
            ("SYNC_IOC_MERGE", SYNC_IOC_MERGE, 0xc030_3e03),
            ("SYNC_IOC_FILE_INFO", SYNC_IOC_FILE_INFO, 0xc038_3e04),
            ("SYNC_IOC_SET_DEADLINE", SYNC_IOC_SET_DEADLINE, 0x4010_3e05),
            ("SW_SYNC_IOC_CREATE_FENCE", SW_SYNC_IOC_CREATE_FENCE, 0xc028_5700),
            ("SW_SYNC_IOC_INC", SW_SYNC_IOC_INC, 0x4004_5701),
            ("DRM_IOCTL_VERSION", DRM_IOCTL_VERSION, 0xc040_6400),
            ("DRM_IOCTL_GEM_CLOSE", DRM_IOCTL_GEM_CLOSE, 0x4008_6409),
            ("DRM_IOCTL_PRIME_HANDLE_TO_FD", DRM_IOCTL_PRIME_HANDLE_TO_FD, 0xc00c_642d),
            ("DRM_IOCTL_PRIME_FD_TO_HANDLE", DRM_IOCTL_PRIME_FD_TO_HANDLE, 0xc00c_642e),
            ("DRM_IOCTL_MODE_CREATE_DUMB", DRM_IOCTL_MODE_CREATE_DUMB, 0xc020_64b2),
            ("DRM_IOCTL_VGEM_FENCE_ATTACH", DRM_IOCTL_VGEM_FENCE_ATTACH, 0xc010_6441),
            ("DRM_IOCTL_VGEM_FENCE_SIGNAL", DRM_IOCTL_VGEM_FENCE_SIGNAL, 0x4008_6442),
        ];
        for &(name, got, want) in expected {
            assert_eq!(u64::from(got), want, "{name}: {got:#x} != {want:#x}");
        }
    }

    #[test]
    fn struct_layouts_match_the_kernel() {
        assert_eq!(size_of::<DmaHeapAllocationData>(), 24);
        assert_eq!(size_of::<DmaBufSync>(), 8);
        assert_eq!(size_of::<DmaBufExportSyncFile>(), 8);
        assert_eq!(size_of::<UdmabufCreate>(), 24);
        assert_eq!(size_of::<UdmabufCreateItem>(), 24);
        assert_eq!(size_of::<UdmabufCreateList>(), 8);
        assert_eq!(size_of::<SyncMergeData>(), 48);
        assert_eq!(size_of::<SyncFenceInfo>(), 80);
        assert_eq!(size_of::<SyncFileInfo>(), 56);
        assert_eq!(size_of::<SyncSetDeadline>(), 16);
        assert_eq!(size_of::<SwSyncCreateFenceData>(), 40);
        assert_eq!(size_of::<DrmVersion>(), 64);
        assert_eq!(size_of::<DrmModeCreateDumb>(), 32);
    }

    #[test]
    fn dma_buf_ioctls_on_a_memfd_are_refused_by_the_kernel() {
        // A memfd knows none of these ioctls: the kernel answers ENOTTY, and the raw layer
        // passes that through without creating any fd.
        let fd = rustix::fs::memfd_create("not-a-dmabuf", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd_create");
        use std::os::fd::AsFd;
        assert_eq!(dma_buf_sync(fd.as_fd(), DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW), Err(Errno::ENOTTY));
        assert_eq!(dma_buf_export_sync_file(fd.as_fd(), 1).map(drop), Err(Errno::ENOTTY));
        assert_eq!(sync_merge(fd.as_fd(), fd.as_fd(), [0; 32]).map(drop), Err(Errno::ENOTTY));
    }
}
