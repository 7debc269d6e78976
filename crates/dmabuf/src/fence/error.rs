//! Errors of the fence, reservation and sync-file layer, and the errno a fence carries.

/// The error a fence was signalled with (the kernel's `dma_fence.error`), as a positive
/// errno value in `1..=4095`: the user API's [`Errno`](dmabuf_uapi::Errno).
///
/// Reported, negated, through [`FenceStatus::Error`](crate::uapi::FenceStatus::Error) by
/// [`Fence::status`](super::Fence::status) and in sync-file info.
pub use dmabuf_uapi::Errno;

/// Why a fence, reservation-object or sync-file operation failed.
///
/// One variant per rule. [`FenceError::errno`] gives the errno the kernel returns for the
/// same mistake, so that the user-space API can report it unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FenceError {
    /// The fence was already signalled: it signals exactly once, takes an error only
    /// before that, and accepts no callback after it. The kernel returns `EINVAL` from
    /// `dma_fence_signal` and `ENOENT` from `dma_fence_add_callback`.
    #[error("fence {context}:{seqno} is already signalled")]
    AlreadySignaled {
        /// Context of the fence.
        context: u64,
        /// Sequence number of the fence.
        seqno: u64,
    },
    /// The wait ended before the fence signalled (`ETIME`; the kernel's
    /// `dma_fence_wait_timeout` returns 0).
    #[error("timed out waiting for the fence to signal")]
    Timeout,
    /// The fence's provider proved that nothing will ever signal the fence (a simulation
    /// whose event queue ran dry), so waiting would hang forever (`EDEADLK`).
    #[error("deadlock: nothing left that could signal fence {context}:{seqno}")]
    Deadlock {
        /// Context of the fence that can never signal.
        context: u64,
        /// Sequence number of that fence.
        seqno: u64,
    },
    /// An errno outside `1..=4095` was given as a fence error (`EINVAL`; the kernel
    /// `WARN`s on it).
    #[error("{0} is not a valid fence error: use a negative errno in -4095..=-1")]
    InvalidErrno(i32),
    /// A fence-chain lookup asked for a point the timeline has not reached
    /// (`dma_fence_chain_find_seqno` returns `EINVAL`).
    #[error("sequence number {seqno} is in the future of the chain (head is {head})")]
    SeqnoInFuture {
        /// The point asked for.
        seqno: u64,
        /// The sequence number of the chain head that was searched.
        head: u64,
    },
    /// A chain operation was given a fence that is not a chain node (`EINVAL`).
    #[error("fence {context}:{seqno} is not a fence-chain node")]
    NotAChain {
        /// Context of the fence.
        context: u64,
        /// Sequence number of the fence.
        seqno: u64,
    },
    /// A container fence (chain or array) was added to a reservation object: add the
    /// fences it contains one by one, as `dma_resv_add_fence` demands (`EINVAL`).
    #[error("container fence {context}:{seqno} added to a reservation object; add its fences one by one")]
    ContainerInResv {
        /// Context of the container.
        context: u64,
        /// Sequence number of the container.
        seqno: u64,
    },
    /// A container fence was put into a fence array: arrays hold plain fences only, so that
    /// nothing recurses through nested containers (`dma_fence_array_init` `WARN`s);
    /// flatten it first with [`unwrap`](super::unwrap).
    #[error("container fence {context}:{seqno} put into a fence array; add its fences one by one")]
    ContainerInArray {
        /// Context of the container.
        context: u64,
        /// Sequence number of the container.
        seqno: u64,
    },
    /// `dma_resv_add_fence` needed a new slot but none was reserved with
    /// `dma_resv_reserve_fences` under this lock (the kernel `BUG`s).
    #[error("no fence slot reserved in the reservation object: call reserve_fences first")]
    NoFenceSlot,
}

impl FenceError {
    /// The errno the kernel returns for the same failure.
    pub fn errno(&self) -> Errno {
        match self {
            FenceError::AlreadySignaled { .. } => Errno::EINVAL,
            FenceError::Timeout => Errno::ETIME,
            FenceError::Deadlock { .. } => Errno::EDEADLK,
            FenceError::InvalidErrno(_)
            | FenceError::SeqnoInFuture { .. }
            | FenceError::NotAChain { .. }
            | FenceError::ContainerInResv { .. }
            | FenceError::ContainerInArray { .. } => Errno::EINVAL,
            FenceError::NoFenceSlot => Errno::ENOSPC,
        }
    }
}
