//! sw_sync: software timelines in debugfs (drivers/dma-buf/sw_sync.c), the fence source of
//! the kernel's sync selftests. Present only with `CONFIG_SW_SYNC` and debugfs mounted.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use dmabuf_uapi::{Error, Op, Result, validate};
use rustix::fs::{Mode, OFlags};

use crate::sync_file::SyncFile;
use crate::sys::{self, errno};

/// The debugfs file that creates a timeline when opened.
pub const SW_SYNC_PATH: &str = "/sys/kernel/debug/sync/sw_sync";

/// A software timeline: a counter, and fences that signal when it reaches their value.
/// Closing it signals every fence still pending, with an error.
#[derive(Debug)]
pub struct SwSyncTimeline {
    fd: OwnedFd,
}

impl SwSyncTimeline {
    /// Creates a timeline at [`SW_SYNC_PATH`], starting at 0.
    pub fn open() -> Result<Self> {
        SwSyncTimeline::open_at(SW_SYNC_PATH)
    }

    /// Creates a timeline through the sw_sync file at `path`.
    pub fn open_at(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let fd = rustix::fs::open(&path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| Error::SwSyncUnavailable { path, errno: errno(e) })?;
        Ok(SwSyncTimeline { fd })
    }

    /// A sync file with one fence that signals when the timeline reaches `value`
    /// (`SW_SYNC_IOC_CREATE_FENCE`).
    pub fn create_fence(&self, name: &str, value: u32) -> Result<SyncFile> {
        let name = validate::name(name)?;
        let fd =
            sys::sw_sync_create_fence(self.fd.as_fd(), value, name).map_err(Error::os(Op::SwSyncIocCreateFence))?;
        Ok(SyncFile::from_kernel(fd))
    }

    /// Advances the timeline by `count` (`SW_SYNC_IOC_INC`), signaling the fences it
    /// passes.
    pub fn inc(&self, count: u32) -> Result<()> {
        sys::sw_sync_inc(self.fd.as_fd(), count).map_err(Error::os(Op::SwSyncIocInc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_sw_sync_file_says_what_is_needed() {
        let e = SwSyncTimeline::open_at("/nonexistent/sw_sync").expect_err("missing");
        assert!(matches!(&e, Error::SwSyncUnavailable { errno, .. } if *errno == dmabuf_uapi::Errno::ENOENT));
        assert!(e.to_string().contains("CONFIG_SW_SYNC"), "{e}");
    }
}
