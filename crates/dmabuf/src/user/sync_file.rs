//! [`SyncFile`]: a simulated sync file as user space holds it.

use std::time::Duration;

use dmabuf_uapi::{Error, MonotonicTime, Op, Result, SyncFileInfo, WaitStatus, traits, validate};

use crate::fence::FenceError;
use crate::sync_file;

/// A simulated sync file, as user space holds it: the framework's
/// [`sync_file::SyncFile`] with the user API's name rules and errors.
#[derive(Clone, Debug)]
pub struct SyncFile(sync_file::SyncFile);

impl From<sync_file::SyncFile> for SyncFile {
    fn from(sf: sync_file::SyncFile) -> Self {
        SyncFile(sf)
    }
}

/// The user API's error for a fence failure in `op`, with the kernel's errno.
pub(super) fn fence_error(op: Op) -> impl FnOnce(FenceError) -> Error {
    move |e| Error::Framework { op, errno: e.errno(), source: Box::new(e) }
}

impl SyncFile {
    /// The framework's sync file (its fence).
    pub fn framework(&self) -> &sync_file::SyncFile {
        &self.0
    }

    /// A new sync file signaling when both have (`SYNC_IOC_MERGE`). `name`: at most 31
    /// bytes, no NUL.
    pub fn merge(&self, name: &str, other: &SyncFile) -> Result<SyncFile> {
        validate::name(name)?;
        let merged = self.0.merge(name, &other.0).map_err(fence_error(Op::SyncIocMerge))?;
        Ok(SyncFile(merged))
    }

    /// Name, status and fences (`SYNC_IOC_FILE_INFO`).
    pub fn info(&self) -> SyncFileInfo {
        self.0.info()
    }

    /// Waits until every fence has signaled or the timeout passes; simulated fences run
    /// simulated time.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<WaitStatus> {
        self.0.wait(timeout).map_err(fence_error(Op::Poll))
    }

    /// Hints the fences' providers that they are needed by `deadline`
    /// (`SYNC_IOC_SET_DEADLINE`).
    pub fn set_deadline(&self, deadline: MonotonicTime) {
        self.0.set_deadline(deadline);
    }
}

impl traits::SyncFile for SyncFile {
    fn merge(&self, name: &str, other: &Self) -> Result<Self> {
        SyncFile::merge(self, name, other)
    }

    fn info(&self) -> Result<SyncFileInfo> {
        Ok(SyncFile::info(self))
    }

    fn wait(&self, timeout: Option<Duration>) -> Result<WaitStatus> {
        SyncFile::wait(self, timeout)
    }

    fn set_deadline(&self, deadline: MonotonicTime) -> Result<()> {
        SyncFile::set_deadline(self, deadline);
        Ok(())
    }
}
