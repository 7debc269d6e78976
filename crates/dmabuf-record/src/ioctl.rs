//! The ioctls the interposer understands: numbers and argument layouts of the kernel's
//! uapi headers (`linux/dma-heap.h`, `linux/udmabuf.h`, `linux/dma-buf.h`,
//! `linux/sync_file.h`, sw_sync's private ABI in `drivers/dma-buf/sw_sync.c`,
//! `linux/videodev2.h`, `drm/drm.h`, `drm/vgem_drm.h`), for x86_64 and arm64 (LP64).

/// `_IOC(dir, type, nr, size)`.
const fn ioc(dir: u64, ty: u8, nr: u8, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | ((ty as u64) << 8) | nr as u64
}
const W: u64 = 1;
const R: u64 = 2;

/// The ioctl's type byte.
pub fn ty(req: u64) -> u8 {
    (req >> 8) as u8
}

/// `struct dma_heap_allocation_data`.
#[repr(C)]
pub struct HeapAlloc {
    /// Bytes.
    pub len: u64,
    /// The new dma-buf's fd (out).
    pub fd: u32,
    /// Flags of the new fd.
    pub fd_flags: u32,
    /// Heap flags.
    pub heap_flags: u64,
}
/// `DMA_HEAP_IOCTL_ALLOC`.
pub const DMA_HEAP_IOCTL_ALLOC: u64 = ioc(R | W, b'H', 0, 24);

/// `struct udmabuf_create`.
#[repr(C)]
pub struct UdmabufCreate {
    /// The sealed memfd.
    pub memfd: u32,
    /// Flags.
    pub flags: u32,
    /// Offset in the memfd.
    pub offset: u64,
    /// Bytes.
    pub size: u64,
}
/// `struct udmabuf_create_list` (head; `count` items follow).
#[repr(C)]
pub struct UdmabufCreateList {
    /// Flags.
    pub flags: u32,
    /// Items that follow.
    pub count: u32,
}
/// `struct udmabuf_create_item`.
#[repr(C)]
pub struct UdmabufItem {
    /// The sealed memfd.
    pub memfd: u32,
    /// Padding.
    pub pad: u32,
    /// Offset in the memfd.
    pub offset: u64,
    /// Bytes.
    pub size: u64,
}
/// `UDMABUF_CREATE`.
pub const UDMABUF_CREATE: u64 = ioc(W, b'u', 0x42, 24);
/// `UDMABUF_CREATE_LIST`.
pub const UDMABUF_CREATE_LIST: u64 = ioc(W, b'u', 0x43, 8);

/// `DMA_BUF_IOCTL_SYNC` (`struct dma_buf_sync { __u64 flags; }`).
pub const DMA_BUF_IOCTL_SYNC: u64 = ioc(W, b'b', 0, 8);
/// `DMA_BUF_SYNC_READ`.
pub const SYNC_READ: u64 = 1;
/// `DMA_BUF_SYNC_WRITE`.
pub const SYNC_WRITE: u64 = 2;
/// `DMA_BUF_SYNC_END`.
pub const SYNC_END: u64 = 4;
/// `DMA_BUF_SET_NAME_A` (a `u32` in the size field, by mistake upstream).
pub const DMA_BUF_SET_NAME_A: u64 = ioc(W, b'b', 1, 4);
/// `DMA_BUF_SET_NAME_B`.
pub const DMA_BUF_SET_NAME_B: u64 = ioc(W, b'b', 1, 8);
/// `struct dma_buf_export_sync_file` and `dma_buf_import_sync_file`.
#[repr(C)]
pub struct SyncFileArg {
    /// `DMA_BUF_SYNC_READ`/`WRITE`.
    pub flags: u32,
    /// The sync file.
    pub fd: i32,
}
/// `DMA_BUF_IOCTL_EXPORT_SYNC_FILE`.
pub const DMA_BUF_IOCTL_EXPORT_SYNC_FILE: u64 = ioc(R | W, b'b', 2, 8);
/// `DMA_BUF_IOCTL_IMPORT_SYNC_FILE`.
pub const DMA_BUF_IOCTL_IMPORT_SYNC_FILE: u64 = ioc(W, b'b', 3, 8);

/// `struct sync_merge_data`.
#[repr(C)]
pub struct SyncMerge {
    /// Name of the new fence.
    pub name: [u8; 32],
    /// The other sync file.
    pub fd2: i32,
    /// The new sync file (out).
    pub fence: i32,
    /// Flags.
    pub flags: u32,
    /// Padding.
    pub pad: u32,
}
/// `SYNC_IOC_MERGE`.
pub const SYNC_IOC_MERGE: u64 = ioc(R | W, b'>', 3, 48);
/// `struct sync_file_info` (head).
#[repr(C)]
pub struct SyncFileInfo {
    /// Name.
    pub name: [u8; 32],
    /// 1 signalled, 0 active, negative an error.
    pub status: i32,
    /// Flags.
    pub flags: u32,
    /// Fences in the file.
    pub num_fences: u32,
    /// Padding.
    pub pad: u32,
    /// User pointer to the fence infos.
    pub sync_fence_info: u64,
}
/// `SYNC_IOC_FILE_INFO`.
pub const SYNC_IOC_FILE_INFO: u64 = ioc(R | W, b'>', 4, 56);

/// sw_sync's `struct sw_sync_create_fence_data`.
#[repr(C)]
pub struct SwSyncCreate {
    /// The timeline point.
    pub value: u32,
    /// Name.
    pub name: [u8; 32],
    /// The new sync file (out).
    pub fence: i32,
}
/// `SW_SYNC_IOC_CREATE_FENCE`.
pub const SW_SYNC_IOC_CREATE_FENCE: u64 = ioc(R | W, b'W', 0, 40);
/// `SW_SYNC_IOC_INC` (a `__u32` step).
pub const SW_SYNC_IOC_INC: u64 = ioc(W, b'W', 1, 4);

/// `struct v4l2_requestbuffers`.
#[repr(C)]
pub struct V4l2RequestBuffers {
    /// Buffers.
    pub count: u32,
    /// `enum v4l2_buf_type`.
    pub ty: u32,
    /// `enum v4l2_memory`.
    pub memory: u32,
    /// Capabilities (out).
    pub capabilities: u32,
    /// Flags and reserved bytes.
    pub flags: [u8; 4],
}
/// `VIDIOC_REQBUFS`.
pub const VIDIOC_REQBUFS: u64 = ioc(R | W, b'V', 8, 20);

/// `struct v4l2_buffer` (LP64 layout, 88 bytes).
#[repr(C)]
pub struct V4l2Buffer {
    /// Index in the queue.
    pub index: u32,
    /// `enum v4l2_buf_type`.
    pub ty: u32,
    /// Bytes of data.
    pub bytesused: u32,
    /// `V4L2_BUF_FLAG_*`.
    pub flags: u32,
    /// Field order.
    pub field: u32,
    /// Padding before the timeval.
    pub pad: u32,
    /// `struct timeval`.
    pub timestamp: [u64; 2],
    /// `struct v4l2_timecode`.
    pub timecode: [u32; 4],
    /// Frame sequence.
    pub sequence: u32,
    /// `enum v4l2_memory`.
    pub memory: u32,
    /// `m`: offset, userptr, planes or fd.
    pub m: u64,
    /// Bytes of the buffer (planes for the multi-planar API).
    pub length: u32,
    /// Reserved.
    pub reserved2: u32,
    /// Request fd.
    pub request_fd: u32,
    /// Tail padding.
    pub pad2: u32,
}
/// `struct v4l2_plane` (64 bytes).
#[repr(C)]
pub struct V4l2Plane {
    /// Bytes of data.
    pub bytesused: u32,
    /// Bytes of the plane.
    pub length: u32,
    /// `m`: mem_offset, userptr or fd.
    pub m: u64,
    /// Offset of the data in the plane.
    pub data_offset: u32,
    /// Reserved.
    pub reserved: [u32; 11],
}
/// `VIDIOC_QBUF`.
pub const VIDIOC_QBUF: u64 = ioc(R | W, b'V', 15, 88);
/// `VIDIOC_DQBUF`.
pub const VIDIOC_DQBUF: u64 = ioc(R | W, b'V', 17, 88);
/// `struct v4l2_exportbuffer`.
#[repr(C)]
pub struct V4l2ExportBuffer {
    /// `enum v4l2_buf_type`.
    pub ty: u32,
    /// Index in the queue.
    pub index: u32,
    /// Plane.
    pub plane: u32,
    /// Flags of the new fd.
    pub flags: u32,
    /// The new dma-buf (out).
    pub fd: i32,
    /// Reserved.
    pub reserved: [u32; 11],
}
/// `VIDIOC_EXPBUF`.
pub const VIDIOC_EXPBUF: u64 = ioc(R | W, b'V', 16, 64);
/// `VIDIOC_STREAMON`.
pub const VIDIOC_STREAMON: u64 = ioc(W, b'V', 18, 4);
/// `VIDIOC_STREAMOFF`.
pub const VIDIOC_STREAMOFF: u64 = ioc(W, b'V', 19, 4);
/// `V4L2_MEMORY_DMABUF`.
pub const V4L2_MEMORY_DMABUF: u32 = 4;
/// Multi-planar buffer types (`V4L2_TYPE_IS_MULTIPLANAR`).
pub fn v4l2_multiplanar(ty: u32) -> bool {
    ty == 9 || ty == 10
}

/// `struct drm_prime_handle`.
#[repr(C)]
pub struct DrmPrimeHandle {
    /// GEM handle.
    pub handle: u32,
    /// Flags.
    pub flags: u32,
    /// The dma-buf.
    pub fd: i32,
}
/// `DRM_IOCTL_PRIME_HANDLE_TO_FD`.
pub const DRM_IOCTL_PRIME_HANDLE_TO_FD: u64 = ioc(R | W, b'd', 0x2d, 12);
/// `DRM_IOCTL_PRIME_FD_TO_HANDLE`.
pub const DRM_IOCTL_PRIME_FD_TO_HANDLE: u64 = ioc(R | W, b'd', 0x2e, 12);
/// `DRM_IOCTL_GEM_CLOSE` (`struct drm_gem_close { u32 handle, pad; }`).
pub const DRM_IOCTL_GEM_CLOSE: u64 = ioc(W, b'd', 0x09, 8);
/// `struct drm_version`.
#[repr(C)]
pub struct DrmVersion {
    /// Major, minor, patch level.
    pub version: [i32; 3],
    /// Padding.
    pub pad: i32,
    /// Length of `name`.
    pub name_len: usize,
    /// The driver's name (out).
    pub name: *mut u8,
    /// Length of `date`.
    pub date_len: usize,
    /// Date.
    pub date: *mut u8,
    /// Length of `desc`.
    pub desc_len: usize,
    /// Description.
    pub desc: *mut u8,
}
/// `DRM_IOCTL_VERSION`.
pub const DRM_IOCTL_VERSION: u64 = ioc(R | W, b'd', 0x00, 64);
/// `struct drm_vgem_fence_attach`.
#[repr(C)]
pub struct VgemFenceAttach {
    /// GEM handle.
    pub handle: u32,
    /// `VGEM_FENCE_WRITE`.
    pub flags: u32,
    /// The fence's id (out).
    pub out_fence: u32,
    /// Padding.
    pub pad: u32,
}
/// `DRM_IOCTL_VGEM_FENCE_ATTACH`.
pub const DRM_IOCTL_VGEM_FENCE_ATTACH: u64 = ioc(R | W, b'd', 0x41, 16);
/// `struct drm_vgem_fence_signal`.
#[repr(C)]
pub struct VgemFenceSignal {
    /// The fence's id.
    pub fence: u32,
    /// Flags.
    pub flags: u32,
}
/// `DRM_IOCTL_VGEM_FENCE_SIGNAL`.
pub const DRM_IOCTL_VGEM_FENCE_SIGNAL: u64 = ioc(W, b'd', 0x42, 8);

/// The dma-buf file system's magic (`DMA_BUF_MAGIC`).
pub const DMA_BUF_MAGIC: i64 = 0x444d_4142;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_the_kernels() {
        // Values as the uapi headers expand them on LP64.
        assert_eq!(DMA_HEAP_IOCTL_ALLOC, 0xc018_4800);
        assert_eq!(DMA_BUF_IOCTL_SYNC, 0x4008_6200);
        assert_eq!(DMA_BUF_IOCTL_EXPORT_SYNC_FILE, 0xc008_6202);
        assert_eq!(SYNC_IOC_MERGE, 0xc030_3e03);
        assert_eq!(VIDIOC_QBUF, 0xc058_560f);
        assert_eq!(VIDIOC_EXPBUF, 0xc040_5610);
        assert_eq!(DRM_IOCTL_PRIME_FD_TO_HANDLE, 0xc00c_642e);
        assert_eq!(DRM_IOCTL_VGEM_FENCE_ATTACH, 0xc010_6441);
        assert_eq!(std::mem::size_of::<V4l2Buffer>(), 88);
        assert_eq!(std::mem::size_of::<V4l2Plane>(), 64);
        assert_eq!(std::mem::size_of::<DrmVersion>(), 64);
        assert_eq!(std::mem::size_of::<SwSyncCreate>(), 40);
        assert_eq!(std::mem::size_of::<SyncFileInfo>(), 56);
    }
}
