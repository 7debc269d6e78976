//! The memory a run may use, and how much it uses.
//!
//! A run's memory follows the bytes its scenario touches (the simulator stores a page of
//! one repeated byte as that byte), but a scenario can touch more than the machine has. A
//! program that runs out of memory in Rust aborts; so the checker watches instead: a
//! binary installs [`CountingAlloc`] as its global allocator, and the runner compares
//! [`in_use`], plus what the step's access will allocate, with
//! [`crate::runner::RunConfig::max_memory`] before every step, and stops with an error
//! (`check`: exit 2) or a bound (`explore`: inconclusive) well before the allocator would
//! fail.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes held; 0 until [`CountingAlloc`], installed, serves its first allocation (a run
/// always holds some, so 0 means "not installed").
static IN_USE: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting the bytes it holds. Install it with
/// `#[global_allocator] static A: CountingAlloc = CountingAlloc;` to bound runs.
pub struct CountingAlloc;

// SAFETY: every call forwards to the system allocator with the caller's arguments; the
// counter is bookkeeping beside it and never changes what is returned.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is the system allocator's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator with `layout`, as the caller promises.
        unsafe { System.dealloc(ptr, layout) };
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc` and `alloc`: the caller's contract is forwarded.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            IN_USE.fetch_add(new_size, Ordering::Relaxed);
            IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

/// Bytes the process holds from the allocator, when [`CountingAlloc`] is installed.
pub fn in_use() -> Option<u64> {
    let n = IN_USE.load(Ordering::Relaxed);
    (n != 0).then_some(n as u64)
}

/// Why a run stopped for memory: what it held, what it was about to take, the bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverLimit {
    /// Bytes held.
    pub in_use: u64,
    /// Bytes the next access would allocate (0 between steps).
    pub wanted: u64,
    /// The bound.
    pub limit: u64,
}

/// Whether `wanted` more bytes fit under `limit` (always, without a limit or without the
/// counting allocator).
pub(crate) fn room_for(limit: Option<u64>, wanted: u64) -> Result<(), OverLimit> {
    match (limit, in_use()) {
        (Some(limit), Some(in_use)) if in_use.saturating_add(wanted) > limit => {
            Err(OverLimit { in_use, wanted, limit })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_limit_or_no_counter_always_has_room() {
        assert_eq!(room_for(None, u64::MAX), Ok(()));
        // The test binary does not install the counting allocator.
        assert_eq!(in_use(), None);
        assert_eq!(room_for(Some(1), u64::MAX), Ok(()));
    }
}
