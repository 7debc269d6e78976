//! The software timeline: the kernel's `sw_sync` (a test driver behind
//! `/sys/kernel/debug/sync/sw_sync`), for tests and scenarios.
//!
//! A [`SyncTimeline`] is a counter. [`SyncTimeline::create_fence`] makes a fence that
//! signals when the counter reaches its value (`SW_SYNC_IOC_CREATE_FENCE`),
//! [`SyncTimeline::inc`] advances the counter (`SW_SYNC_IOC_INC`), and closing the
//! timeline (dropping it) signals every fence still pending with `ENOENT`, as closing the
//! kernel's file does. Values are 32-bit and compare with wrap-around, like the kernel's.

use std::sync::Arc;

use crate::fence::sync::{self, Mutex};
use crate::fence::{Errno, Fence, FenceOps, WeakFence, context_alloc, seqno_is_later};
use crate::sync_file::SyncFile;

struct TimelineState {
    value: u64,
    /// Fences not signalled yet. Weak: a fence nobody holds needs no signal.
    pending: Vec<WeakFence>,
}

struct Timeline {
    name: String,
    context: u64,
    state: Mutex<TimelineState>,
}

/// The ops of a `sw_sync` fence (`struct sync_pt`).
struct SyncPt {
    timeline: Arc<Timeline>,
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
        !seqno_is_later(fence.seqno(), value, false)
    }

    fn use_64bit_seqno(&self) -> bool {
        false
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
                state: Mutex::new(TimelineState { value: 0, pending: Vec::new() }),
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

    /// The counter.
    pub fn value(&self) -> u32 {
        // Truncation is the point: the timeline counts modulo 2^32.
        sync::lock(&self.timeline.state).value as u32
    }

    /// A fence that signals when the counter reaches `value`; already signalled if it has
    /// (`SW_SYNC_IOC_CREATE_FENCE`, `sync_pt_create`).
    pub fn create_fence(&self, value: u32) -> Fence {
        let fence = Fence::new(self.timeline.context, u64::from(value), SyncPt { timeline: self.timeline.clone() });
        let done = {
            let mut st = sync::lock(&self.timeline.state);
            let done = !seqno_is_later(u64::from(value), st.value, false);
            if !done {
                st.pending.push(fence.downgrade());
            }
            done
        };
        if done {
            let _ = fence.signal();
        }
        fence
    }

    /// [`SyncTimeline::create_fence`] as the ioctl returns it: a sync file named `name`.
    pub fn create_sync_file(&self, name: &str, value: u32) -> SyncFile {
        SyncFile::new(self.create_fence(value)).with_name(name)
    }

    /// Advances the counter by `inc` and signals every fence it reaches, in order
    /// (`SW_SYNC_IOC_INC`, `sync_timeline_signal`).
    pub fn inc(&self, inc: u32) {
        let mut due: Vec<Fence> = {
            let mut st = sync::lock(&self.timeline.state);
            st.value = st.value.wrapping_add(u64::from(inc));
            let value = st.value;
            let mut due = Vec::new();
            st.pending.retain(|w| match w.upgrade() {
                Some(f) if !seqno_is_later(f.seqno(), value, false) => {
                    due.push(f);
                    false
                }
                Some(_) => true,
                None => false,
            });
            due
        };
        // Signalled outside the lock, so callbacks may use the timeline.
        let base = self.value();
        due.sort_by_key(|f| (f.seqno() as u32).wrapping_sub(base).cast_signed());
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
        let pending = std::mem::take(&mut sync::lock(&self.timeline.state).pending);
        for f in pending.iter().filter_map(WeakFence::upgrade) {
            let _ = f.signal_with_error(Errno::ENOENT);
        }
    }
}
