//! Sync files: the kernel's `sync_file`, a fence handed to user space.
//!
//! A [`SyncFile`] holds one fence (an array when made from several) and a name. User
//! space merges sync files, asks for their info, polls them and waits for them; the
//! framework's buffers export and import them ([`crate::DmaBuf::export_sync_file`]).
//! The info and wait results are the user-space API's types ([`crate::uapi`]), and
//! [`SyncFile`] implements [`uapi::SyncFile`].

use std::time::Duration;

use crate::fence::{Fence, FenceError, FenceStatus, MonotonicTime, unwrap, unwrap_merge};
use crate::uapi::{self, DMA_BUF_NAME_LEN, FenceInfo, Op, Readiness, SyncFileInfo, WaitStatus};

/// A sync file (`struct sync_file`): a fence and a name.
#[derive(Clone, Debug)]
pub struct SyncFile {
    fence: Fence,
    /// The name given at merge (`user_name`), empty if none.
    name: String,
}

/// Cuts `name` to what fits the kernel's 32-byte buffer with its NUL (`strscpy`).
fn truncate_name(name: &str) -> String {
    let mut end = name.len().min(DMA_BUF_NAME_LEN - 1);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

impl SyncFile {
    /// A sync file for `fence` (`sync_file_create`).
    pub fn new(fence: Fence) -> SyncFile {
        SyncFile { fence, name: String::new() }
    }

    /// A sync file for several fences: merged as [`unwrap_merge`] does (one per context,
    /// signalled ones dropped; none left gives a signalled stub).
    pub fn from_fences(fences: &[Fence]) -> Result<SyncFile, FenceError> {
        Ok(SyncFile::new(unwrap_merge(fences)?))
    }

    /// The sync file's fence (`sync_file_get_fence`).
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// The name (`sync_file_get_name`): the one given at merge, else one made from the
    /// fence (`<driver>-<timeline><context>-<seqno>`).
    pub fn name(&self) -> String {
        if self.name.is_empty() {
            let f = &self.fence;
            truncate_name(&format!("{}-{}{}-{}", f.driver_name(), f.timeline_name(), f.context(), f.seqno()))
        } else {
            self.name.clone()
        }
    }

    /// Names the sync file; cut to 31 bytes as the kernel does.
    pub fn with_name(mut self, name: &str) -> SyncFile {
        self.name = truncate_name(name);
        self
    }

    /// A new sync file that signals when both have (`SYNC_IOC_MERGE`, `sync_file_merge`).
    pub fn merge(&self, name: &str, other: &SyncFile) -> Result<SyncFile, FenceError> {
        let fence = unwrap_merge(&[self.fence.clone(), other.fence.clone()])?;
        Ok(SyncFile::new(fence).with_name(name))
    }

    /// The status of the whole (`dma_fence_get_status` of its fence).
    pub fn status(&self) -> FenceStatus {
        self.fence.status()
    }

    /// Name, status and the individual fences, containers unwrapped
    /// (`SYNC_IOC_FILE_INFO` asked for the fences, as user space asks the second time).
    ///
    /// The status of the whole is the kernel's fold over the fences in order
    /// (`sync_file_ioctl_fence_info`: `info.status = info.status <= 0 ? info.status :
    /// status`): the status of the first fence that is active or failed, or signalled if
    /// every fence is. So an early failure shows while a later fence is still active, and
    /// of two failures the first in order shows, not the first to happen.
    pub fn info(&self) -> SyncFileInfo {
        let fences: Vec<FenceInfo> = unwrap(&self.fence)
            .map(|f| {
                let status = f.status();
                FenceInfo {
                    obj_name: f.timeline_name().to_string(),
                    driver_name: f.driver_name().to_string(),
                    status,
                    timestamp_ns: if status.is_signaled() { f.timestamp().map(MonotonicTime::as_nanos) } else { None },
                }
            })
            .collect();
        let status =
            fences.iter().map(|f| f.status).find(|s| *s != FenceStatus::Signaled).unwrap_or(FenceStatus::Signaled);
        SyncFileInfo { name: self.name(), status, fences }
    }

    /// What `poll` reports (`sync_file_poll`): readable (`POLLIN`) once the fence has
    /// signalled; a sync file is never writable.
    pub fn poll(&self) -> Readiness {
        self.fence.enable_sw_signaling();
        Readiness { readable: self.fence.is_signaled(), writable: false }
    }

    /// Waits until the fence signals, or `timeout` passes (`None`: no limit; zero: just
    /// look). A signalled fence may carry an error: see [`SyncFile::status`].
    pub fn wait(&self, timeout: Option<Duration>) -> Result<WaitStatus, FenceError> {
        match self.fence.wait_opt(timeout) {
            Ok(()) => Ok(WaitStatus::Signaled),
            Err(FenceError::Timeout) => Ok(WaitStatus::TimedOut),
            Err(e) => Err(e),
        }
    }

    /// Asks for the fence by `deadline` (`SYNC_IOC_SET_DEADLINE`).
    pub fn set_deadline(&self, deadline: MonotonicTime) {
        self.fence.set_deadline(deadline);
    }
}

/// The user API's error for a fence failure in `op`, with the errno the kernel returns.
fn uapi_error(op: Op) -> impl FnOnce(FenceError) -> uapi::Error {
    move |e| uapi::Error::Framework { op, errno: e.errno(), source: Box::new(e) }
}

impl uapi::SyncFile for SyncFile {
    fn merge(&self, name: &str, other: &Self) -> uapi::Result<Self> {
        SyncFile::merge(self, name, other).map_err(uapi_error(Op::SyncIocMerge))
    }

    fn info(&self) -> uapi::Result<SyncFileInfo> {
        Ok(SyncFile::info(self))
    }

    fn wait(&self, timeout: Option<Duration>) -> uapi::Result<WaitStatus> {
        SyncFile::wait(self, timeout).map_err(uapi_error(Op::Poll))
    }

    fn set_deadline(&self, deadline: MonotonicTime) -> uapi::Result<()> {
        SyncFile::set_deadline(self, deadline);
        Ok(())
    }
}
