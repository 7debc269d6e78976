//! The software timeline: the kernel's `sw_sync` (a test driver behind
//! `/sys/kernel/debug/sync/sw_sync`), for tests and scenarios.
//!
//! A [`SyncTimeline`] is a counter. [`SyncTimeline::create_fence`] makes a fence that
//! signals when the counter reaches its value (`SW_SYNC_IOC_CREATE_FENCE`),
//! [`SyncTimeline::inc`] advances the counter (`SW_SYNC_IOC_INC`), and closing the
//! timeline (dropping it) signals every fence still pending with `ENOENT`, as closing the
//! kernel's file does. Values are 32-bit and compare with wrap-around, like the kernel's.
//!
//! Every pending point lies less than 2^31 ahead of the counter (a point further ahead
//! compares as already passed and is born signalled). The counter therefore advances in
//! steps of at most `i32::MAX`, as `sw_sync_ioctl_inc` does, so that no step jumps past a
//! pending point into the half of the circle where it would look ahead again.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::fence::sync::{self, Mutex};
use crate::fence::{Errno, Fence, FenceOps, WeakFence, context_alloc, seqno_is_later};
use crate::sync_file::SyncFile;

/// The largest step the counter takes at once (`INT_MAX` in `sw_sync_ioctl_inc`).
const MAX_STEP: u32 = i32::MAX.unsigned_abs();

struct TimelineState {
    value: u32,
    /// The fences not signalled yet, one per point (the kernel's `pt_tree`). Weak: a
    /// fence nobody holds needs no signal, and its release removes its entry
    /// (`timeline_fence_release`).
    pending: BTreeMap<u32, WeakFence>,
}

impl TimelineState {
    /// The pending points from just after `from` up to and including `to`, in the order
    /// the timeline reaches them (the kernel's `pt_list` order).
    fn points_reached(&self, from: u32, to: u32) -> Vec<u32> {
        let first = from.wrapping_add(1);
        if first <= to {
            self.pending.range(first..=to).map(|(&p, _)| p).collect()
        } else {
            // The step wraps past u32::MAX.
            self.pending.range(first..).chain(self.pending.range(..=to)).map(|(&p, _)| p).collect()
        }
    }
}

struct Timeline {
    name: String,
    context: u64,
    state: Mutex<TimelineState>,
}

/// The ops of a `sw_sync` fence (`struct sync_pt`).
struct SyncPt {
    timeline: Arc<Timeline>,
    point: u32,
}

impl FenceOps for SyncPt {
    fn driver_name(&self) -> &str {
        "sw_sync"
    }

    fn timeline_name(&self) -> &str {
        &self.timeline.name
    }

    fn signaled(&self, fence: &Fence) -> bool {
        let value = sync::lock(&self.timeline.state).value;
        !seqno_is_later(fence.seqno(), u64::from(value), false)
    }

    fn use_64bit_seqno(&self) -> bool {
        false
    }
}

impl Drop for SyncPt {
    /// The fence is released: forget its point unless another fence holds it by now
    /// (`timeline_fence_release`). Nothing here may create a fence handle, since the lock
    /// is held and dropping such a handle could release a fence and come back here.
    fn drop(&mut self) {
        let mut st = sync::lock(&self.timeline.state);
        if st.pending.get(&self.point).is_some_and(WeakFence::is_gone) {
            st.pending.remove(&self.point);
        }
    }
}

/// A `sw_sync` timeline (`struct sync_timeline`). Dropping it closes it.
pub struct SyncTimeline {
    timeline: Arc<Timeline>,
}

impl std::fmt::Debug for SyncTimeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncTimeline")
            .field("name", &self.timeline.name)
            .field("context", &self.timeline.context)
            .field("value", &self.value())
            .finish()
    }
}

impl SyncTimeline {
    /// A new timeline at 0 on a new context (opening `sw_sync`).
    pub fn new(name: &str) -> SyncTimeline {
        SyncTimeline {
            timeline: Arc::new(Timeline {
                name: name.to_string(),
                context: context_alloc(1),
                state: Mutex::new(TimelineState { value: 0, pending: BTreeMap::new() }),
            }),
        }
    }

    /// The timeline's name.
    pub fn name(&self) -> &str {
        &self.timeline.name
    }

    /// The timeline's fence context.
    pub fn context(&self) -> u64 {
        self.timeline.context
    }

    /// The timeline's value (`sync_timeline.value`), which [`inc`](Self::inc) advances: its
    /// points up to this one have signalled.
    pub fn value(&self) -> u32 {
        sync::lock(&self.timeline.state).value
    }

    /// A fence that signals when the counter reaches `value`; already signalled if it has
    /// (`SW_SYNC_IOC_CREATE_FENCE`, `sync_pt_create`). A point that is still pending has
    /// one fence: asking for it again gives that same fence, as `sync_pt_create` hands out
    /// the `sync_pt` it finds in the timeline's tree.
    pub fn create_fence(&self, value: u32) -> Fence {
        let new_pt = || {
            let ops = SyncPt { timeline: self.timeline.clone(), point: value };
            Fence::new(self.timeline.context, u64::from(value), ops)
        };
        let (fence, reached) = {
            let mut st = sync::lock(&self.timeline.state);
            if !seqno_is_later(u64::from(value), u64::from(st.value), false) {
                (new_pt(), true)
            } else if let Some(pending) = st.pending.get(&value).and_then(WeakFence::upgrade) {
                (pending, false)
            } else {
                // Any entry left here belongs to a fence being released: replace it.
                let fence = new_pt();
                st.pending.insert(value, fence.downgrade());
                (fence, false)
            }
        };
        if reached {
            let _ = fence.signal();
        }
        fence
    }

    /// [`SyncTimeline::create_fence`] as the ioctl returns it: a sync file named `name`.
    pub fn create_sync_file(&self, name: &str, value: u32) -> SyncFile {
        SyncFile::new(self.create_fence(value)).with_name(name)
    }

    /// Advances the counter by `inc` and signals every fence it reaches, in order
    /// (`SW_SYNC_IOC_INC`). An increment above `i32::MAX` is applied in steps of at most
    /// `i32::MAX` (`sw_sync_ioctl_inc`): one step of 2^31 or more would carry the counter
    /// past a pending point into the half of the circle where the point looks ahead of
    /// it again, and the point would never signal.
    pub fn inc(&self, inc: u32) {
        let mut left = inc;
        while left > MAX_STEP {
            self.signal(MAX_STEP);
            left -= MAX_STEP;
        }
        self.signal(left);
    }

    /// One step of at most `i32::MAX` (`sync_timeline_signal`).
    fn signal(&self, inc: u32) {
        debug_assert!(inc <= MAX_STEP);
        if inc == 0 {
            return;
        }
        let due: Vec<Fence> = {
            let mut st = sync::lock(&self.timeline.state);
            let from = st.value;
            st.value = from.wrapping_add(inc);
            let reached = st.points_reached(from, st.value);
            // A handle made here is only moved out, never dropped under the lock.
            reached.into_iter().filter_map(|p| st.pending.remove(&p)).filter_map(|w| w.upgrade()).collect()
        };
        // Signalled outside the lock, so callbacks may use the timeline.
        for f in due {
            let _ = f.signal();
        }
    }

    /// Closes the timeline (`sw_sync_debugfs_release`): every fence still pending is
    /// signalled with `ENOENT`. Dropping the timeline does the same.
    pub fn close(self) {}
}

impl Drop for SyncTimeline {
    fn drop(&mut self) {
        let pending: Vec<WeakFence> = {
            let mut st = sync::lock(&self.timeline.state);
            let (value, pending) = (st.value, std::mem::take(&mut st.pending));
            // In the order the timeline would have reached them.
            let (ahead, wrapped): (Vec<_>, Vec<_>) = pending.into_iter().partition(|&(p, _)| p > value);
            ahead.into_iter().chain(wrapped).map(|(_, w)| w).collect()
        };
        for f in pending.iter().filter_map(WeakFence::upgrade) {
            let _ = f.signal_with_error(Errno::ENOENT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending_points(tl: &SyncTimeline) -> Vec<u32> {
        sync::lock(&tl.timeline.state).pending.keys().copied().collect()
    }

    /// `timeline_fence_release`: a released fence takes its point out of the tree, so
    /// fences created and dropped without the timeline reaching them leave nothing behind.
    #[test]
    fn released_points_leave_the_tree() {
        let tl = SyncTimeline::new("release");
        for point in 1..=1000 {
            drop(tl.create_fence(point));
        }
        assert!(pending_points(&tl).is_empty());
        let kept = tl.create_fence(7);
        drop(tl.create_fence(8));
        assert_eq!(pending_points(&tl), vec![7]);
        tl.inc(7);
        assert!(kept.is_signaled());
        assert!(pending_points(&tl).is_empty());
    }
}
