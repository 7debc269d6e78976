//! [`SyncFile`]: a set of fences as an fd (drivers/dma-buf/sync_file.c), and the clock its
//! timestamps and deadlines use.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use dmabuf_uapi::{
    Errno, Error, FenceInfo, FenceStatus, MonotonicTime, Op, Result, SyncFileInfo, WaitStatus, traits, validate,
};
use rustix::event::PollFlags;

use crate::buffer::poll_one;
use crate::sys::{self, errno};

/// A sync file, owning its fd (closed on drop).
///
/// Made by [`crate::DmaBuf::export_sync_file`], [`SyncFile::merge`], a sw_sync timeline
/// ([`crate::SwSyncTimeline`]), or from a foreign fd with [`SyncFile::from_owned`].
#[derive(Debug)]
pub struct SyncFile {
    fd: OwnedFd,
}

/// The current time on `CLOCK_MONOTONIC`, the clock of fence timestamps and deadlines.
pub fn monotonic_now() -> MonotonicTime {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let ns = u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0);
    MonotonicTime::from_nanos(ns)
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

impl SyncFile {
    /// Wraps an fd that a sync_file ioctl just returned.
    pub(crate) fn from_kernel(fd: OwnedFd) -> Self {
        SyncFile { fd }
    }

    /// Takes ownership of `fd` after checking that it is a sync file (its
    /// `/proc/self/fd` link is `anon_inode:sync_file`). On error the fd is closed.
    pub fn from_owned(fd: OwnedFd) -> Result<Self> {
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let link = rustix::fs::readlink(path.as_str(), Vec::new())
            .map_err(|e| Error::Open { path: path.clone().into(), errno: errno(e) })?;
        let what = link.to_string_lossy().into_owned();
        if what != "anon_inode:sync_file" {
            return Err(Error::NotSyncFile { what });
        }
        Ok(SyncFile { fd })
    }

    /// A new sync file signaling when both have (`SYNC_IOC_MERGE`). `name`: at most 31
    /// bytes.
    pub fn merge(&self, name: &str, other: &SyncFile) -> Result<SyncFile> {
        let name = validate::name(name)?;
        let fd = sys::sync_merge(self.fd.as_fd(), other.fd.as_fd(), name).map_err(Error::os(Op::SyncIocMerge))?;
        Ok(SyncFile { fd })
    }

    /// Name, status and fences (`SYNC_IOC_FILE_INFO`, twice: count, then fences).
    pub fn info(&self) -> Result<SyncFileInfo> {
        let (info, fences) = sys::sync_file_info(self.fd.as_fd()).map_err(Error::os(Op::SyncIocFileInfo))?;
        // With num_fences > 0 the kernel reports status 1 unless a fence is active or
        // failed; with no fences it reports the fence's own status.
        Ok(SyncFileInfo {
            name: c_string(&info.name),
            status: FenceStatus::from_raw(info.status),
            fences: fences
                .iter()
                .map(|f| FenceInfo {
                    obj_name: c_string(&f.obj_name),
                    driver_name: c_string(&f.driver_name),
                    status: FenceStatus::from_raw(f.status),
                    timestamp_ns: (f.timestamp_ns != 0).then_some(f.timestamp_ns),
                })
                .collect(),
        })
    }

    /// Waits until every fence has signaled (`poll` for `POLLIN`) or the timeout passes
    /// (`None`: forever, `Some(ZERO)`: just look).
    pub fn wait(&self, timeout: Option<Duration>) -> Result<WaitStatus> {
        let revents = poll_one(self.fd.as_fd(), PollFlags::IN, timeout)?;
        if revents.contains(PollFlags::IN) {
            Ok(WaitStatus::Signaled)
        } else if revents.intersects(PollFlags::ERR | PollFlags::NVAL) {
            Err(Error::Os { op: Op::Poll, errno: Errno::EINVAL })
        } else {
            Ok(WaitStatus::TimedOut)
        }
    }

    /// Hints the drivers that the fences are needed by `deadline` (`SYNC_IOC_SET_DEADLINE`,
    /// `CLOCK_MONOTONIC`; see [`monotonic_now`]).
    pub fn set_deadline(&self, deadline: MonotonicTime) -> Result<()> {
        sys::sync_set_deadline(self.fd.as_fd(), deadline.as_nanos()).map_err(Error::os(Op::SyncIocSetDeadline))
    }
}

impl AsFd for SyncFile {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl From<SyncFile> for OwnedFd {
    fn from(f: SyncFile) -> OwnedFd {
        f.fd
    }
}

impl traits::SyncFile for SyncFile {
    fn merge(&self, name: &str, other: &Self) -> Result<Self> {
        SyncFile::merge(self, name, other)
    }

    fn info(&self) -> Result<SyncFileInfo> {
        SyncFile::info(self)
    }

    fn wait(&self, timeout: Option<Duration>) -> Result<WaitStatus> {
        SyncFile::wait(self, timeout)
    }

    fn set_deadline(&self, deadline: MonotonicTime) -> Result<()> {
        SyncFile::set_deadline(self, deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memfd_is_not_taken_for_a_sync_file() {
        let fd = rustix::fs::memfd_create("x", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd_create");
        match SyncFile::from_owned(fd) {
            Err(Error::NotSyncFile { what }) => assert!(what.starts_with("/memfd:x"), "{what}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_monotonic_clock_moves_forward() {
        let a = monotonic_now();
        std::thread::sleep(Duration::from_millis(2));
        let b = monotonic_now();
        assert!(b.as_nanos() >= a.as_nanos() + 1_000_000, "{a:?} {b:?}");
    }

    #[test]
    fn c_strings_stop_at_the_first_nul() {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(b"vgem");
        assert_eq!(c_string(&b), "vgem");
        assert_eq!(c_string(b"full"), "full");
    }
}
