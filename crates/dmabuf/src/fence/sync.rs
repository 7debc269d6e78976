//! The locking primitives the fence code uses, in one place so that `loom` can replace
//! them.
//!
//! In a normal build these are `std::sync`'s; built with `RUSTFLAGS="--cfg loom"` they are
//! `loom::sync`'s, and the model-checked test (`tests/fence_loom.rs`) explores every
//! interleaving of the fence state machine. `Arc` stays `std`'s in both builds: loom only
//! needs to see the operations that order memory, and `Arc<dyn Trait>` needs std's
//! unsized coercion.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicIsize, AtomicU32, AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(loom)]
pub(crate) use loom::thread::ThreadId;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicIsize, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::thread::ThreadId;

use std::time::Duration;

/// Locks `mutex`, ignoring poisoning: fence state stays consistent even if a thread
/// panicked while holding the lock, because every critical section writes its state
/// before anything that can panic (user callbacks never run under these locks).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Blocks on `cond` until notified (or spuriously woken).
pub(crate) fn wait<'a, T>(cond: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cond.wait(guard).unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Blocks on `cond` until notified, spuriously woken or `dur` has passed.
pub(crate) fn wait_timeout<'a, T>(cond: &Condvar, guard: MutexGuard<'a, T>, dur: Duration) -> MutexGuard<'a, T> {
    match cond.wait_timeout(guard, dur) {
        Ok((guard, _)) => guard,
        Err(poisoned) => poisoned.into_inner().0,
    }
}

/// The id of the calling thread.
pub(crate) fn current_thread_id() -> ThreadId {
    #[cfg(loom)]
    {
        loom::thread::current().id()
    }
    #[cfg(not(loom))]
    {
        std::thread::current().id()
    }
}
