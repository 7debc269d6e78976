//! `FenceArray`: one fence standing for several (the kernel's `dma_fence_array`).

use std::time::Duration;

use super::sync::{AtomicIsize, AtomicU32, Ordering};
use super::{Errno, Fence, FenceError, FenceOps, MonotonicTime, WeakFence};

/// A fence that signals when all of its fences have signalled, or, built with
/// `signal_on_any`, when the first one has (`struct dma_fence_array`).
///
/// It is the ops of its own [`Fence`]: build one with [`FenceArray::create`] and get it
/// back with [`Fence::to_array`]. An array signals with the first error among its fences
/// (`dma_fence_array_set_pending_error`). It holds plain fences only: a chain or an
/// array inside it is refused, so flatten with [`unwrap`](super::unwrap) first.
pub struct FenceArray {
    fences: Vec<Fence>,
    signal_on_any: bool,
    /// Fences still to signal before the array does; may go negative with
    /// `signal_on_any`, where it starts at 1.
    num_pending: AtomicIsize,
    /// The first error seen among the fences, as a positive errno, or 0.
    pending_error: AtomicU32,
}

impl FenceArray {
    /// A new array fence on `context` with `seqno` over `fences`
    /// (`dma_fence_array_create`). Fails if one of `fences` is itself a container.
    pub fn create(fences: Vec<Fence>, context: u64, seqno: u64, signal_on_any: bool) -> Result<Fence, FenceError> {
        if let Some(c) = fences.iter().find(|f| f.is_container()) {
            return Err(FenceError::ContainerInArray { context: c.context(), seqno: c.seqno() });
        }
        let pending = if signal_on_any { 1 } else { fences.len() };
        let array = FenceArray {
            num_pending: AtomicIsize::new(isize::try_from(pending).unwrap_or(isize::MAX)),
            fences,
            signal_on_any,
            pending_error: AtomicU32::new(0),
        };
        let empty = array.fences.is_empty();
        let fence = Fence::new(context, seqno, array);
        if empty {
            // Nothing to wait for: an empty array is born signalled.
            let _ = fence.signal();
        }
        Ok(fence)
    }

    /// The fences in the array, in the order given.
    pub fn fences(&self) -> &[Fence] {
        &self.fences
    }

    /// Whether the array signals on the first of its fences rather than on all.
    pub fn signal_on_any(&self) -> bool {
        self.signal_on_any
    }

    /// The first fence (`dma_fence_array_first`), `None` for an empty array.
    pub fn first(&self) -> Option<&Fence> {
        self.fences.first()
    }

    fn record_error(&self, error: Option<Errno>) {
        if let Some(e) = error {
            let code = e.get().unsigned_abs();
            let _ = self.pending_error.compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    fn error(&self) -> Option<Errno> {
        let code = self.pending_error.load(Ordering::Acquire);
        i32::try_from(code).ok().and_then(Errno::new)
    }

    /// One fence is done; returns whether that completes the array.
    fn fence_done(&self, fence: &Fence) -> bool {
        self.record_error(fence.error());
        self.num_pending.fetch_sub(1, Ordering::AcqRel) == 1
    }

    fn signal(&self, array: &Fence) {
        // Losing a race with a poll that signalled first is fine.
        let _ = match self.error() {
            Some(e) => array.signal_with_error(e),
            None => array.signal(),
        };
    }
}

impl FenceOps for FenceArray {
    fn driver_name(&self) -> &str {
        "dma_fence_array"
    }

    fn timeline_name(&self) -> &str {
        "unbound"
    }

    fn enable_signaling(&self, fence: &Fence) -> bool {
        let me: WeakFence = fence.downgrade();
        for f in &self.fences {
            let me = me.clone();
            let added = f.add_callback(move |done| {
                let Some(array) = me.upgrade() else { return };
                let Some(ops) = array.to_array() else { return };
                if ops.fence_done(done) {
                    ops.signal(&array);
                }
            });
            if added.is_err() && self.fence_done(f) {
                // Already complete: the caller signals, with the error if any.
                if let Some(e) = self.error() {
                    let _ = fence.set_error(e);
                }
                return false;
            }
        }
        true
    }

    fn signaled(&self, fence: &Fence) -> bool {
        let done = if self.signal_on_any {
            match self.fences.iter().find(|f| f.is_signaled()) {
                Some(f) => {
                    self.record_error(f.error());
                    true
                }
                None => false,
            }
        } else {
            self.fences.iter().all(|f| {
                let s = f.is_signaled();
                if s {
                    self.record_error(f.error());
                }
                s
            })
        };
        if done && let Some(e) = self.error() {
            let _ = fence.set_error(e);
        }
        done
    }

    fn wait(&self, fence: &Fence, timeout: Option<Duration>) -> Option<Result<Duration, FenceError>> {
        container_wait(self.fences.iter(), fence, timeout)
    }

    fn set_deadline(&self, _fence: &Fence, deadline: MonotonicTime) {
        // dma_fence_array_set_deadline: every fence gets the deadline.
        for f in &self.fences {
            f.set_deadline(deadline);
        }
    }
}

/// A container's wait: hand it to the provider of the first unsignalled fence inside that
/// overrides waiting (a simulation), which then runs until `target` signals. `None` if
/// no fence inside does: the blocking wait serves.
pub(super) fn container_wait<'a>(
    inner: impl Iterator<Item = &'a Fence>,
    target: &Fence,
    timeout: Option<Duration>,
) -> Option<Result<Duration, FenceError>> {
    for f in inner {
        if f.test_signaled_flag() {
            continue;
        }
        if let Some(result) = f.provider_wait(target, timeout) {
            return Some(result);
        }
    }
    None
}
