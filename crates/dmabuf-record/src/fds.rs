//! What the interposer knows of each file descriptor: a dma-buf (by inode), a sync file,
//! or a device the program opened (a dma-heap, udmabuf, V4L2, DRM, sw_sync).
//!
//! One atomic word per fd (kind in the top byte, an id below), so the table is read
//! without a lock; fds past [`MAX_FDS`] are not tracked (and said so in the log once).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Fds below this are tracked.
pub const MAX_FDS: usize = 1 << 16;

/// What an fd is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// Not something the interposer follows.
    Other,
    /// A dma-buf; the id is its inode number (unique per buffer: `dma_buf_getfile`
    /// gives every buffer its own inode).
    DmaBuf,
    /// A sync file; the id is the interposer's own (sync files share one anonymous inode).
    SyncFile,
    /// `/dev/dma_heap/NAME`; the id is the interposer's own, logged with its path at open.
    Heap,
    /// `/dev/udmabuf`.
    Udmabuf,
    /// A V4L2 video device; the id as for a heap.
    V4l2,
    /// A DRM device; the id as for a heap.
    Drm,
    /// A sw_sync timeline; the id is the interposer's own.
    SwSync,
    /// The log itself, which the program may not close.
    Log,
}

impl Kind {
    fn code(self) -> u64 {
        match self {
            Kind::Other => 0,
            Kind::DmaBuf => 1,
            Kind::SyncFile => 2,
            Kind::Heap => 3,
            Kind::Udmabuf => 4,
            Kind::V4l2 => 5,
            Kind::Drm => 6,
            Kind::SwSync => 7,
            Kind::Log => 8,
        }
    }

    fn from_code(c: u64) -> Kind {
        match c {
            1 => Kind::DmaBuf,
            2 => Kind::SyncFile,
            3 => Kind::Heap,
            4 => Kind::Udmabuf,
            5 => Kind::V4l2,
            6 => Kind::Drm,
            7 => Kind::SwSync,
            8 => Kind::Log,
            _ => Kind::Other,
        }
    }
}

const ID_MASK: u64 = (1 << 56) - 1;

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: AtomicU64 = AtomicU64::new(0);
static TABLE: [AtomicU64; MAX_FDS] = [EMPTY; MAX_FDS];
static OVERFLOW_SAID: AtomicBool = AtomicBool::new(false);

/// What `fd` is, with its id.
pub fn get(fd: i32) -> (Kind, u64) {
    if fd < 0 || fd as usize >= MAX_FDS {
        return (Kind::Other, 0);
    }
    let w = TABLE[fd as usize].load(Ordering::Acquire);
    (Kind::from_code(w >> 56), w & ID_MASK)
}

/// Records what `fd` now is.
pub fn set(fd: i32, kind: Kind, id: u64) {
    if fd < 0 {
        return;
    }
    if fd as usize >= MAX_FDS {
        if kind != Kind::Other && !OVERFLOW_SAID.swap(true, Ordering::Relaxed) {
            crate::log::Line::new(crate::log::now(), "untracked").int("fd", fd as i64).emit();
        }
        return;
    }
    TABLE[fd as usize].store((kind.code() << 56) | (id & ID_MASK), Ordering::Release);
}

/// Forgets `fd` (closed).
pub fn clear(fd: i32) {
    set(fd, Kind::Other, 0);
}
