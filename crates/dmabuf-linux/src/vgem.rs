//! vgem, the virtual GEM driver (drivers/gpu/drm/vgem): a real DRM importer and a real
//! source of fences, for tests on machines without a GPU.
//!
//! vgem imports dma-bufs (`DRM_IOCTL_PRIME_FD_TO_HANDLE`), which attaches a device to the
//! buffer so that the exporter's CPU-access hooks have work to do, exports its own buffers
//! (`DRM_IOCTL_MODE_CREATE_DUMB`, `DRM_IOCTL_PRIME_HANDLE_TO_FD`), and attaches fences to
//! a buffer's reservation object on request (`DRM_IOCTL_VGEM_FENCE_ATTACH`), signaled by
//! `DRM_IOCTL_VGEM_FENCE_SIGNAL` or, at the latest, 10 seconds later by the driver. That
//! is what the kernel's own dma-buf selftests use in place of a GPU.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use dmabuf_uapi::{Error, Op, Result};
use rustix::fs::{Mode, OFlags};

use crate::buffer::DmaBuf;
use crate::sys;

/// An open vgem device.
#[derive(Debug)]
pub struct Vgem {
    fd: OwnedFd,
}

/// A GEM handle on the vgem device, closed (`DRM_IOCTL_GEM_CLOSE`) on drop.
#[derive(Debug)]
pub struct GemHandle<'v> {
    vgem: &'v Vgem,
    handle: u32,
}

/// A vgem fence attached to a buffer, signaled on [`VgemFence::signal`] or on drop.
#[derive(Debug)]
pub struct VgemFence<'v> {
    vgem: &'v Vgem,
    id: u32,
    pending: bool,
}

impl Vgem {
    /// Finds the vgem card among `/dev/dri/card0` .. `card15` (`DRM_IOCTL_VERSION` names
    /// the driver) and opens it.
    pub fn open() -> Result<Self> {
        for i in 0..16 {
            let path = format!("/dev/dri/card{i}");
            let Ok(fd) = rustix::fs::open(path.as_str(), OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()) else {
                continue;
            };
            if sys::drm_driver_name(fd.as_fd()).is_ok_and(|n| n == "vgem") {
                return Ok(Vgem { fd });
            }
        }
        Err(Error::VgemNotFound)
    }

    /// Imports a dma-buf (`DRM_IOCTL_PRIME_FD_TO_HANDLE`): vgem attaches to it and maps
    /// it, like a GPU driver would.
    pub fn import(&self, buf: &DmaBuf) -> Result<GemHandle<'_>> {
        let handle = sys::drm_prime_fd_to_handle(self.fd.as_fd(), buf.as_fd())
            .map_err(Error::os(Op::DrmIoctlPrimeFdToHandle))?;
        Ok(GemHandle { vgem: self, handle })
    }

    /// Creates a vgem buffer of `width` x `height` pixels of `bpp` bits
    /// (`DRM_IOCTL_MODE_CREATE_DUMB`); returns its handle and size in bytes.
    pub fn create_dumb(&self, width: u32, height: u32, bpp: u32) -> Result<(GemHandle<'_>, u64)> {
        let d = sys::drm_mode_create_dumb(self.fd.as_fd(), width, height, bpp)
            .map_err(Error::os(Op::DrmIoctlModeCreateDumb))?;
        Ok((GemHandle { vgem: self, handle: d.handle }, d.size))
    }

    /// Exports a vgem buffer as a read-write dma-buf (`DRM_IOCTL_PRIME_HANDLE_TO_FD`).
    pub fn export(&self, handle: &GemHandle<'_>) -> Result<DmaBuf> {
        let fd = sys::drm_prime_handle_to_fd(self.fd.as_fd(), handle.handle, sys::DRM_CLOEXEC | sys::DRM_RDWR)
            .map_err(Error::os(Op::DrmIoctlPrimeHandleToFd))?;
        DmaBuf::from_owned(fd)
    }

    /// Attaches a new unsignaled fence to the buffer (`DRM_IOCTL_VGEM_FENCE_ATTACH`): a
    /// writer's fence if `write`, else a reader's. vgem refuses (`EBUSY`) a fence that
    /// conflicts with one already pending.
    pub fn attach_fence(&self, handle: &GemHandle<'_>, write: bool) -> Result<VgemFence<'_>> {
        let flags = if write { sys::VGEM_FENCE_WRITE } else { 0 };
        let id = sys::vgem_fence_attach(self.fd.as_fd(), handle.handle, flags)
            .map_err(Error::os(Op::DrmIoctlVgemFenceAttach))?;
        Ok(VgemFence { vgem: self, id, pending: true })
    }
}

impl AsFd for Vgem {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl GemHandle<'_> {
    /// The raw GEM handle.
    pub fn handle(&self) -> u32 {
        self.handle
    }
}

impl Drop for GemHandle<'_> {
    fn drop(&mut self) {
        // Closing a handle we own cannot meaningfully fail; nothing to do if it does.
        let _ = sys::drm_gem_close(self.vgem.fd.as_fd(), self.handle);
    }
}

impl VgemFence<'_> {
    /// Signals the fence (`DRM_IOCTL_VGEM_FENCE_SIGNAL`). `ETIMEDOUT` means vgem had
    /// already signaled it on its 10-second timeout.
    pub fn signal(mut self) -> Result<()> {
        self.pending = false;
        sys::vgem_fence_signal(self.vgem.fd.as_fd(), self.id).map_err(Error::os(Op::DrmIoctlVgemFenceSignal))
    }
}

impl Drop for VgemFence<'_> {
    fn drop(&mut self) {
        if self.pending {
            // Never leave a fence for vgem's timeout to signal.
            let _ = sys::vgem_fence_signal(self.vgem.fd.as_fd(), self.id);
        }
    }
}
