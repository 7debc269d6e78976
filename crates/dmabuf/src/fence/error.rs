//! Errors of the fence, reservation and sync-file layer, and the errno a fence carries.

use std::fmt;
use std::num::NonZeroU16;

/// The error a fence was signalled with (the kernel's `dma_fence.error`), as a positive
/// errno value in `1..=4095` (the kernel stores it negated and checks `MAX_ERRNO`).
///
/// Reported, negated, through [`FenceStatus::Error`](crate::uapi::FenceStatus::Error) by
/// [`Fence::status`](super::Fence::status) and in sync-file info.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Errno(NonZeroU16);

impl Errno {
    /// `ENOENT`: what `sw_sync` signals pending fences with when their timeline closes.
    pub const ENOENT: Errno = Errno::known(2);
    /// `EIO`: the generic device failure.
    pub const EIO: Errno = Errno::known(5);
    /// `ENODEV`: the device went away.
    pub const ENODEV: Errno = Errno::known(19);
    /// `EINVAL`.
    pub const EINVAL: Errno = Errno::known(22);
    /// `ENOSPC`: no room left.
    pub const ENOSPC: Errno = Errno::known(28);
    /// `EDEADLK`: a wait that can be proven never to complete.
    pub const EDEADLK: Errno = Errno::known(35);
    /// `ETIME`: a fence wait timed out.
    pub const ETIME: Errno = Errno::known(62);
    /// `ETIMEDOUT`: a job hung and was killed (what GPU schedulers set on a fence).
    pub const ETIMEDOUT: Errno = Errno::known(110);
    /// `ECANCELED`: the work was cancelled before it ran.
    pub const ECANCELED: Errno = Errno::known(125);

    /// The largest errno the kernel accepts (`MAX_ERRNO`).
    pub const MAX: i32 = 4095;

    const fn known(code: u16) -> Errno {
        match NonZeroU16::new(code) {
            Some(code) => Errno(code),
            None => panic!("errno constants are non-zero"),
        }
    }

    /// An errno from its positive value; `None` outside `1..=4095`.
    pub fn new(code: i32) -> Option<Errno> {
        if (1..=Self::MAX).contains(&code) {
            u16::try_from(code).ok().and_then(NonZeroU16::new).map(Errno)
        } else {
            None
        }
    }

    /// An errno from the kernel's negative form (`-EIO`); `None` unless in `-4095..=-1`.
    pub fn from_negative(code: i32) -> Option<Errno> {
        code.checked_neg().and_then(Errno::new)
    }

    /// The positive errno value.
    pub fn get(self) -> i32 {
        i32::from(self.0.get())
    }

    /// The kernel's negative form, as `dma_fence_get_status` reports it.
    pub fn to_negative(self) -> i32 {
        -self.get()
    }

    fn name(self) -> Option<&'static str> {
        Some(match self.get() {
            2 => "ENOENT",
            5 => "EIO",
            19 => "ENODEV",
            22 => "EINVAL",
            28 => "ENOSPC",
            35 => "EDEADLK",
            62 => "ETIME",
            110 => "ETIMEDOUT",
            125 => "ECANCELED",
            _ => return None,
        })
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "Errno({})", self.get()),
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.get()),
            None => write!(f, "errno {}", self.get()),
        }
    }
}

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
