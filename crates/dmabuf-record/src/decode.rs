//! What each followed ioctl means, logged around libc's call.

use std::ffi::{CStr, c_int, c_ulong, c_void};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::faults::{self, BRACKET_NONE};
use crate::fds::{self, Kind};
use crate::hooks::{adopt_fd, bracket_bits, bracket_of, name_of, new_id, set_bracket_of};
use crate::ioctl::*;
use crate::log::{Line, now};
use crate::real;

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
/// DRM device ids whose driver is vgem (its fence ioctls are driver-private numbers).
static VGEM_DEVS: [AtomicU64; 16] = [ZERO; 16];

/// The DRM driver's name into `out`, returning its length.
pub fn drm_driver(fd: c_int, out: &mut [u8; 32]) -> usize {
    let mut v = DrmVersion {
        version: [0; 3],
        pad: 0,
        name_len: out.len(),
        name: out.as_mut_ptr(),
        date_len: 0,
        date: std::ptr::null_mut(),
        desc_len: 0,
        desc: std::ptr::null_mut(),
    };
    // SAFETY: DRM_IOCTL_VERSION writes at most name_len bytes to `name`.
    if unsafe { real::ioctl(fd, DRM_IOCTL_VERSION as c_ulong, (&mut v as *mut DrmVersion).cast()) } == 0 {
        v.name_len.min(out.len())
    } else {
        0
    }
}

/// Remembers DRM device `id` (open as `fd`) if its driver is vgem.
pub fn note_drm(fd: c_int, id: u64) {
    let mut name = [0u8; 32];
    let n = drm_driver(fd, &mut name);
    if &name[..n] == b"vgem" {
        for e in &VGEM_DEVS {
            if e.compare_exchange(0, id, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                break;
            }
        }
    }
}

fn is_vgem(id: u64) -> bool {
    VGEM_DEVS.iter().any(|e| e.load(Ordering::Relaxed) == id)
}

fn errno() -> c_int {
    // SAFETY: errno is thread-local and always readable.
    unsafe { *libc::__errno_location() }
}

fn set_errno(e: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = e };
}

/// The id of the sync file `fd`, following it if the interposer had not seen it.
fn sync_id(fd: c_int) -> u64 {
    match fds::get(fd) {
        (Kind::SyncFile, id) => id,
        _ => {
            let id = new_id();
            fds::set(fd, Kind::SyncFile, id);
            id
        }
    }
}

/// The inode of dma-buf `fd`, following it if the interposer had not seen it.
fn dmabuf_ino(fd: c_int) -> u64 {
    match fds::get(fd) {
        (Kind::DmaBuf, ino) => ino,
        _ => adopt_fd(fd, "found", 0, now()),
    }
}

/// Decodes, forwards and logs one ioctl on a followed fd.
///
/// # Safety
///
/// `arg` is what the program passed for `req` on `fd`.
pub unsafe fn ioctl(fd: c_int, kind: Kind, id: u64, req: u64, arg: *mut c_void) -> c_int {
    let t = now();
    // Every call closes the pages it may concern before it runs, so the touches before it
    // are logged before it and an access after it faults again: a dma-buf's own ioctls
    // concern it, a device's may concern any buffer (a queue, a fence, a submission).
    let mut sync_flags = 0;
    if kind == Kind::DmaBuf && req == DMA_BUF_IOCTL_SYNC && !arg.is_null() {
        // SAFETY: DMA_BUF_IOCTL_SYNC takes a struct dma_buf_sync.
        sync_flags = unsafe { *(arg as *const u64) };
        if sync_flags & SYNC_END != 0 {
            if bracket_of(id) == BRACKET_NONE {
                faults::misuse(t, "end_without_start", id, 0, false, 0);
            }
            set_bracket_of(id, BRACKET_NONE);
            faults::event(Some(id), Some(BRACKET_NONE), t);
        } else if sync_flags & !7 == 0 {
            let b = bracket_of(id) | bracket_bits(sync_flags);
            set_bracket_of(id, b);
            faults::event(Some(id), Some(b), t);
        }
    } else if kind == Kind::DmaBuf {
        faults::event(Some(id), None, t);
    } else if kind != Kind::SyncFile {
        faults::event(None, None, t);
    }
    let before_qbuf = (kind == Kind::V4l2 && req == VIDIOC_QBUF).then(|| {
        // SAFETY: VIDIOC_QBUF takes a struct v4l2_buffer.
        unsafe { v4l2_planes(arg) }
    });
    // SAFETY: forwarded as called.
    let r = unsafe { real::ioctl(fd, req as c_ulong, arg) };
    let e = errno();
    let end = now();
    let ok = r >= 0;
    // SAFETY: each arm reads the argument type its request takes; `ok` says the kernel
    // filled in the out fields.
    unsafe {
        match (kind, req) {
            (Kind::DmaBuf, DMA_BUF_IOCTL_SYNC) => {
                Line::new(t, "sync")
                    .num("ino", id)
                    .hexnum("flags", sync_flags)
                    .int("ret", ret(r, e))
                    .num("end", end)
                    .emit();
            }
            (Kind::DmaBuf, DMA_BUF_SET_NAME_A | DMA_BUF_SET_NAME_B) => {
                let name = if arg.is_null() { &b""[..] } else { CStr::from_ptr(arg as *const _).to_bytes() };
                Line::new(t, "set_name").num("ino", id).text("name", name).int("ret", ret(r, e)).emit();
            }
            (Kind::DmaBuf, DMA_BUF_IOCTL_EXPORT_SYNC_FILE) => {
                let a = &*(arg as *const SyncFileArg);
                let sync = if ok { sync_id(a.fd) } else { 0 };
                Line::new(t, "export")
                    .num("ino", id)
                    .hexnum("flags", u64::from(a.flags))
                    .num("sync", sync)
                    .int("ret", ret(r, e))
                    .num("end", end)
                    .emit();
            }
            (Kind::DmaBuf, DMA_BUF_IOCTL_IMPORT_SYNC_FILE) => {
                let a = &*(arg as *const SyncFileArg);
                let sync = sync_id(a.fd);
                Line::new(t, "import")
                    .num("ino", id)
                    .hexnum("flags", u64::from(a.flags))
                    .num("sync", sync)
                    .int("ret", ret(r, e))
                    .num("end", end)
                    .emit();
            }
            (Kind::SyncFile, SYNC_IOC_MERGE) => {
                let a = &*(arg as *const SyncMerge);
                let other = sync_id(a.fd2);
                let new = if ok { sync_id(a.fence) } else { 0 };
                Line::new(t, "merge").num("a", id).num("b", other).num("sync", new).int("ret", ret(r, e)).emit();
            }
            (Kind::SyncFile, SYNC_IOC_FILE_INFO) => {
                let a = &*(arg as *const SyncFileInfo);
                Line::new(t, "sync_info")
                    .num("sync", id)
                    .int("status", i64::from(a.status))
                    .int("ret", ret(r, e))
                    .emit();
            }
            (Kind::Heap, DMA_HEAP_IOCTL_ALLOC) if ok => {
                let a = &*(arg as *const HeapAlloc);
                adopt_fd(a.fd as c_int, "heap", id, t);
            }
            (Kind::Udmabuf, UDMABUF_CREATE | UDMABUF_CREATE_LIST) if ok => {
                adopt_fd(r, "udmabuf", id, t);
            }
            (Kind::SwSync, SW_SYNC_IOC_CREATE_FENCE) => {
                let a = &*(arg as *const SwSyncCreate);
                let sync = if ok { sync_id(a.fence) } else { 0 };
                Line::new(t, "sw_fence")
                    .num("tl", id)
                    .num("value", u64::from(a.value))
                    .num("sync", sync)
                    .int("ret", ret(r, e))
                    .emit();
            }
            (Kind::SwSync, SW_SYNC_IOC_INC) => {
                let by = if arg.is_null() { 0 } else { *(arg as *const u32) };
                Line::new(t, "sw_inc")
                    .num("tl", id)
                    .num("by", u64::from(by))
                    .int("ret", ret(r, e))
                    .num("end", end)
                    .emit();
            }
            (Kind::V4l2, VIDIOC_REQBUFS) => {
                let a = &*(arg as *const V4l2RequestBuffers);
                Line::new(t, "v4l2_reqbufs")
                    .num("dev", id)
                    .num("type", u64::from(a.ty))
                    .num("memory", u64::from(a.memory))
                    .num("count", u64::from(a.count))
                    .int("ret", ret(r, e))
                    .num("end", end)
                    .emit();
            }
            (Kind::V4l2, VIDIOC_QBUF) => {
                let b = &*(arg as *const V4l2Buffer);
                for (plane, p) in before_qbuf.iter().flat_map(|p| p.as_slice()).enumerate() {
                    let ino = if b.memory == V4L2_MEMORY_DMABUF { dmabuf_ino(p.fd) } else { 0 };
                    v4l2_line(t, "v4l2_qbuf", id, b, plane, ino, p).int("ret", ret(r, e)).num("end", end).emit();
                }
            }
            (Kind::V4l2, VIDIOC_DQBUF) if ok => {
                let b = &*(arg as *const V4l2Buffer);
                for (plane, p) in v4l2_planes(arg).as_slice().iter().enumerate() {
                    let ino = if b.memory == V4L2_MEMORY_DMABUF { dmabuf_ino(p.fd) } else { 0 };
                    v4l2_line(t, "v4l2_dqbuf", id, b, plane, ino, p).num("end", end).emit();
                }
            }
            (Kind::V4l2, VIDIOC_EXPBUF) if ok => {
                let a = &*(arg as *const V4l2ExportBuffer);
                let ino = adopt_fd(a.fd, "expbuf", id, t);
                Line::new(t, "v4l2_expbuf")
                    .num("dev", id)
                    .num("type", u64::from(a.ty))
                    .num("index", u64::from(a.index))
                    .num("plane", u64::from(a.plane))
                    .num("ino", ino)
                    .emit();
            }
            (Kind::V4l2, VIDIOC_STREAMON | VIDIOC_STREAMOFF) => {
                let ty = if arg.is_null() { 0 } else { *(arg as *const u32) };
                let verb = if req == VIDIOC_STREAMON { "v4l2_streamon" } else { "v4l2_streamoff" };
                Line::new(t, verb)
                    .num("dev", id)
                    .num("type", u64::from(ty))
                    .int("ret", ret(r, e))
                    .num("end", end)
                    .emit();
            }
            (Kind::Drm, DRM_IOCTL_PRIME_FD_TO_HANDLE) => {
                let a = &*(arg as *const DrmPrimeHandle);
                let ino = dmabuf_ino(a.fd);
                Line::new(t, "prime_import")
                    .num("dev", id)
                    .num("ino", ino)
                    .num("handle", u64::from(a.handle))
                    .int("ret", ret(r, e))
                    .num("end", end)
                    .emit();
            }
            (Kind::Drm, DRM_IOCTL_PRIME_HANDLE_TO_FD) if ok => {
                let a = &*(arg as *const DrmPrimeHandle);
                let ino = adopt_fd(a.fd, "prime", id, t);
                Line::new(t, "prime_export")
                    .num("dev", id)
                    .num("handle", u64::from(a.handle))
                    .num("ino", ino)
                    .num("end", end)
                    .emit();
            }
            (Kind::Drm, DRM_IOCTL_GEM_CLOSE) => {
                let handle = *(arg as *const u32);
                Line::new(t, "gem_close")
                    .num("dev", id)
                    .num("handle", u64::from(handle))
                    .int("ret", ret(r, e))
                    .num("end", end)
                    .emit();
            }
            (Kind::Drm, DRM_IOCTL_VGEM_FENCE_ATTACH) if is_vgem(id) => {
                let a = &*(arg as *const VgemFenceAttach);
                Line::new(t, "vgem_attach")
                    .num("dev", id)
                    .num("handle", u64::from(a.handle))
                    .num("write", u64::from(a.flags & 1))
                    .num("fence", u64::from(a.out_fence))
                    .int("ret", ret(r, e))
                    .num("end", end)
                    .emit();
            }
            (Kind::Drm, DRM_IOCTL_VGEM_FENCE_SIGNAL) if is_vgem(id) => {
                let a = &*(arg as *const VgemFenceSignal);
                Line::new(t, "vgem_signal")
                    .num("dev", id)
                    .num("fence", u64::from(a.fence))
                    .int("ret", ret(r, e))
                    .num("end", end)
                    .emit();
            }
            _ => {
                Line::new(t, "ioctl")
                    .int("fd", fd as i64)
                    .text("kind", name_of(kind))
                    .num("id", id)
                    .hexnum("nr", req)
                    .int("ret", ret(r, e))
                    .num("end", end)
                    .emit();
            }
        }
    }
    set_errno(e);
    r
}

/// The call's result: its return value, or `-errno`.
fn ret(r: c_int, e: c_int) -> i64 {
    if r < 0 { -i64::from(e) } else { i64::from(r) }
}

/// One plane of a V4L2 buffer: its dma-buf fd (for `V4L2_MEMORY_DMABUF`), used and
/// total bytes.
#[derive(Clone, Copy)]
struct Plane {
    fd: c_int,
    bytesused: u32,
    length: u32,
}

/// The planes of a V4L2 buffer (`VIDEO_MAX_PLANES` at most).
struct Planes {
    p: [Plane; 8],
    n: usize,
}

impl Planes {
    fn as_slice(&self) -> &[Plane] {
        &self.p[..self.n]
    }
}

/// The planes of a `struct v4l2_buffer` (one for the single-planar API).
///
/// # Safety
///
/// `arg` is null or a `struct v4l2_buffer` whose `m.planes` (multi-planar) points at
/// `length` planes.
unsafe fn v4l2_planes(arg: *mut c_void) -> Planes {
    let mut out = Planes { p: [Plane { fd: -1, bytesused: 0, length: 0 }; 8], n: 0 };
    if arg.is_null() {
        return out;
    }
    // SAFETY: the caller's contract.
    let b = unsafe { &*(arg as *const V4l2Buffer) };
    if v4l2_multiplanar(b.ty) {
        if b.m == 0 {
            return out;
        }
        let n = (b.length as usize).min(8);
        for i in 0..n {
            // SAFETY: `m.planes` points at `length` planes.
            let p = unsafe { &*(b.m as *const V4l2Plane).add(i) };
            out.p[i] = Plane { fd: p.m as u32 as i32, bytesused: p.bytesused, length: p.length };
        }
        out.n = n;
    } else {
        out.p[0] = Plane { fd: b.m as u32 as i32, bytesused: b.bytesused, length: b.length };
        out.n = 1;
    }
    out
}

fn v4l2_line(t: u64, verb: &str, dev: u64, b: &V4l2Buffer, plane: usize, ino: u64, p: &Plane) -> Line {
    let (used, len) = (p.bytesused, p.length);
    Line::new(t, verb)
        .num("dev", dev)
        .num("type", u64::from(b.ty))
        .num("memory", u64::from(b.memory))
        .num("index", u64::from(b.index))
        .num("plane", plane as u64)
        .num("ino", ino)
        .num("bytesused", u64::from(used))
        .num("length", u64::from(len))
}
