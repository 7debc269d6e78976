//! Fences: the kernel's `dma_fence`, and its containers.
//!
//! A [`Fence`] stands for the completion of some work: a device job, a CPU access, a step
//! of a simulation. It belongs to a *context* (a timeline on which its fences signal in
//! order) and has a sequence number on it. It signals exactly once, possibly with an
//! error that must be set before that; callbacks added before the signal run once when it
//! signals, callbacks added after it are refused; threads can wait for it with or without
//! a timeout. The framework's ordering between agents (the happens-before edges of the
//! coherency model, spec §7) is fence signal before every wait that observes it.
//!
//! Who signals a fence, and how a wait makes progress, is up to its provider, which
//! plugs in through [`FenceOps`] (the kernel's `dma_fence_ops`):
//!
//! - a plain software fence ([`Fence::new_software`]) is signalled by whoever holds it;
//! - the `sw_sync` timeline ([`crate::SyncTimeline`]) signals its fences as it advances;
//! - containers ([`FenceChain`], [`FenceArray`]) signal when the fences they hold do;
//! - a *simulated* provider completes device jobs in simulated time. Its
//!   [`FenceOps::wait`] override runs the simulation until the fence signals (or until
//!   it can prove nothing will signal it) instead of blocking the thread, so the same
//!   [`Fence::wait`] call serves real threads and simulations.
//!
//! # Concurrency
//!
//! `Fence` is a cheap handle (an `Arc`), `Send + Sync`. Its state machine is one mutex
//! and one condition variable per fence plus an atomic flag word for the lock-free fast
//! paths. Signalling sets the flag and takes the callback list under the mutex, so an
//! `add_callback` racing with `signal` either lands in the list (and runs) or sees the
//! flag (and fails): no callback is lost or run twice, and no waiter misses the wake-up.
//! Callbacks run on the signalling thread *after* the mutex is released, so a callback
//! may add callbacks to, signal, or wait for other fences. [`Fence::remove_callback`]
//! that finds its callback already taken waits until the signalling thread has finished
//! running callbacks (unless called from that thread), so once it returns the callback
//! is neither running nor going to run.
//!
//! The model-checked test of this state machine runs with
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p dmabuf --test fence_loom --release
//! ```
//!
//! (the primitives come from the private `fence::sync` module, which maps to `loom::sync`
//! under `cfg(loom)`).

#![deny(missing_docs)]

mod array;
mod chain;
mod error;
pub(crate) mod sync;
mod unwrap;

pub use array::FenceArray;
pub use chain::{ChainIter, FenceChain};
pub use error::{Errno, FenceError};
pub use unwrap::{Unwrap, dedup_array, unwrap, unwrap_merge};

use std::any::Any;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::mem;
use std::sync::Arc;
use std::sync::atomic::AtomicU64 as StdAtomicU64;
use std::time::{Duration, Instant};

use sync::{AtomicU32, AtomicU64, Condvar, Mutex, Ordering, ThreadId};

pub use crate::uapi::{FenceStatus, MonotonicTime};

/// The monotonic clock now (the kernel's `ktime_get`): `CLOCK_MONOTONIC` on Unix, so that
/// fence timestamps compare with the kernel's own sync-file timestamps; elsewhere the time
/// since the first call in this process.
pub fn ktime_get() -> MonotonicTime {
    #[cfg(unix)]
    {
        let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
        let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
        MonotonicTime::from_nanos(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
    }
    #[cfg(not(unix))]
    {
        static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let elapsed = EPOCH.get_or_init(Instant::now).elapsed();
        MonotonicTime::from_nanos(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
    }
}

/// Allocates `num` new fence contexts and returns the first (the kernel's
/// `dma_fence_context_alloc`). Context 0 belongs to the stub fences.
pub fn context_alloc(num: u64) -> u64 {
    // A plain std atomic even under loom: context numbers are identities, not
    // synchronisation, and a loom atomic cannot live in a static.
    static NEXT: StdAtomicU64 = StdAtomicU64::new(1);
    NEXT.fetch_add(num.max(1), std::sync::atomic::Ordering::Relaxed)
}

/// Whether sequence number `a` is later than `b` on one timeline (the kernel's
/// `__dma_fence_is_later`). With 32-bit sequence numbers (`sw_sync`) the comparison
/// wraps: `a` is later when `a - b`, as a signed 32-bit number, is positive.
pub fn seqno_is_later(a: u64, b: u64, use_64bit_seqno: bool) -> bool {
    if use_64bit_seqno {
        a > b
    } else {
        // Truncation is the point: 32-bit timelines compare modulo 2^32.
        (a as u32).wrapping_sub(b as u32).cast_signed() > 0
    }
}

/// How a fence provider plugs in: the kernel's `struct dma_fence_ops`.
///
/// Each fence owns one ops value, which is also where a provider keeps its per-fence
/// data (the kernel embeds `dma_fence` in a bigger struct; here the fence holds the
/// provider's struct). [`Fence::ops_as`] gets it back, like `container_of`.
///
/// Ops are called without any fence lock held, so they may take their own locks and
/// use other fences. A provider must not hold a lock of its own while it signals a
/// fence if one of these methods (reached from a callback or a waiter) takes that lock.
pub trait FenceOps: Any + Send + Sync {
    /// The driver's name (`get_driver_name`), shown in sync-file info.
    fn driver_name(&self) -> &str;

    /// The timeline's name (`get_timeline_name`), shown in sync-file info.
    fn timeline_name(&self) -> &str;

    /// Called once, the first time someone needs the fence to signal by itself (a
    /// callback is added or a thread waits). Return `false` if the fence has already
    /// completed: it is then signalled at once. After returning `true` the provider must
    /// eventually signal the fence.
    fn enable_signaling(&self, fence: &Fence) -> bool {
        let _ = fence;
        true
    }

    /// Optional poll (`signaled`): `true` if the work is known to be complete even
    /// though nobody has signalled the fence yet. The fence is then signalled by the
    /// caller. The default knows nothing and returns `false`.
    fn signaled(&self, fence: &Fence) -> bool {
        let _ = fence;
        false
    }

    /// Optional wait override. `None` (the default) means: use the blocking wait
    /// ([`Fence::default_wait`]). A simulated provider returns `Some` after running its
    /// simulation until `fence` is signalled (`Some(Ok(remaining))`, the part of
    /// `timeout` left, [`Duration::MAX`] without a timeout), until the provider can prove
    /// that nothing will ever signal it (`Some(Err(FenceError::Deadlock{..}))`), or until
    /// its idea of `timeout` has passed (`Some(Err(FenceError::Timeout))`; real time or
    /// simulated time, the provider decides).
    ///
    /// `fence` is not always the provider's own: a container ([`FenceArray`],
    /// [`FenceChain`]) hands its wait to the provider of a fence it holds, passing
    /// itself. The provider then runs until *that* fence is signalled.
    fn wait(&self, fence: &Fence, timeout: Option<Duration>) -> Option<Result<Duration, FenceError>> {
        let _ = (fence, timeout);
        None
    }

    /// A deadline hint (`set_deadline`): someone would like the fence signalled by
    /// `deadline`. Called with the soonest deadline each time it moves earlier, and never
    /// after the fence signalled.
    fn set_deadline(&self, fence: &Fence, deadline: MonotonicTime) {
        let _ = (fence, deadline);
    }

    /// The timestamp to record when the fence is signalled without an explicit one.
    /// The default is the monotonic clock; a simulated provider returns simulated time.
    fn timestamp(&self, fence: &Fence) -> MonotonicTime {
        let _ = fence;
        ktime_get()
    }

    /// Whether sequence numbers are 64-bit (the default) or wrap at 32 bits like
    /// `sw_sync`'s (`use_64bit_seqno`).
    fn use_64bit_seqno(&self) -> bool {
        true
    }
}

/// The ops of a plain software fence: nothing signals it but an explicit
/// [`Fence::signal`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SoftwareOps;

impl FenceOps for SoftwareOps {
    fn driver_name(&self) -> &str {
        "software"
    }
    fn timeline_name(&self) -> &str {
        "software"
    }
}

/// The ops of the stub fences: born signalled.
#[derive(Debug)]
struct StubOps;

impl FenceOps for StubOps {
    fn driver_name(&self) -> &str {
        "stub"
    }
    fn timeline_name(&self) -> &str {
        "stub"
    }
}

/// Identifies a callback added with [`Fence::add_callback`], to remove it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallbackId(u64);

type Callback = Box<dyn FnOnce(&Fence) + Send + 'static>;

const SIGNALED: u32 = 1 << 0;
const ENABLE_SIGNAL: u32 = 1 << 1;

struct FenceState {
    callbacks: Vec<(u64, Callback)>,
    next_callback: u64,
    deadline: Option<MonotonicTime>,
    /// Threads blocked on the condition variable; signalling notifies only if non-zero.
    sleepers: u32,
    /// The thread running this fence's callbacks right now, if any.
    running: Option<ThreadId>,
}

struct FenceInner {
    context: u64,
    seqno: u64,
    flags: AtomicU32,
    /// The error, as a positive errno or 0; written before `SIGNALED` is published.
    error: AtomicU32,
    /// The signal timestamp in nanoseconds; written before `SIGNALED` is published.
    timestamp: AtomicU64,
    state: Mutex<FenceState>,
    cond: Condvar,
    ops: Box<dyn FenceOps>,
}

/// A handle to a fence (the kernel's `struct dma_fence *` with its reference).
///
/// Cloning is cheap and shares the fence; equality and hashing are by identity, like
/// comparing `dma_fence` pointers.
#[derive(Clone)]
pub struct Fence {
    inner: Arc<FenceInner>,
}

/// A weak handle to a fence, which does not keep it alive.
#[derive(Clone)]
pub struct WeakFence {
    inner: std::sync::Weak<FenceInner>,
}

impl WeakFence {
    /// The fence, if it still exists.
    pub fn upgrade(&self) -> Option<Fence> {
        self.inner.upgrade().map(|inner| Fence { inner })
    }

    /// Whether the fence is gone (or going: its last handle has been dropped). Unlike
    /// [`WeakFence::upgrade`] this never creates a handle, so a provider may ask while it
    /// holds a lock that the fence's release takes.
    pub(crate) fn is_gone(&self) -> bool {
        self.inner.strong_count() == 0
    }
}

impl fmt::Debug for WeakFence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WeakFence")
    }
}

impl Fence {
    /// A new unsignalled fence on `context` with sequence number `seqno`, provided by
    /// `ops` (the kernel's `dma_fence_init`).
    pub fn new(context: u64, seqno: u64, ops: impl FenceOps) -> Fence {
        Fence {
            inner: Arc::new(FenceInner {
                context,
                seqno,
                flags: AtomicU32::new(0),
                error: AtomicU32::new(0),
                timestamp: AtomicU64::new(0),
                state: Mutex::new(FenceState {
                    callbacks: Vec::new(),
                    next_callback: 0,
                    deadline: None,
                    sleepers: 0,
                    running: None,
                }),
                cond: Condvar::new(),
                ops: Box::new(ops),
            }),
        }
    }

    /// A new unsignalled plain software fence ([`SoftwareOps`]).
    pub fn new_software(context: u64, seqno: u64) -> Fence {
        Fence::new(context, seqno, SoftwareOps)
    }

    /// The shared, always-signalled stub fence (`dma_fence_get_stub`): what "nothing to
    /// wait for" looks like when a fence is required.
    pub fn stub() -> Fence {
        #[cfg(not(loom))]
        {
            static STUB: std::sync::OnceLock<Fence> = std::sync::OnceLock::new();
            STUB.get_or_init(|| Fence::private_stub(ktime_get())).clone()
        }
        // A loom object cannot outlive one model execution, so no static under loom.
        #[cfg(loom)]
        {
            Fence::private_stub(ktime_get())
        }
    }

    /// A new signalled stub fence carrying `timestamp`
    /// (`dma_fence_allocate_private_stub`).
    pub fn private_stub(timestamp: MonotonicTime) -> Fence {
        let fence = Fence::new(0, 0, StubOps);
        // A fresh fence cannot already be signalled.
        let _ = fence.signal_timestamp(timestamp);
        fence
    }

    /// The fence's context (timeline).
    pub fn context(&self) -> u64 {
        self.inner.context
    }

    /// The fence's sequence number on its context.
    pub fn seqno(&self) -> u64 {
        self.inner.seqno
    }

    /// The provider's driver name.
    pub fn driver_name(&self) -> &str {
        self.inner.ops.driver_name()
    }

    /// The provider's timeline name.
    pub fn timeline_name(&self) -> &str {
        self.inner.ops.timeline_name()
    }

    /// The provider's callbacks (`struct dma_fence_ops`), which name its driver and
    /// timeline and may signal or wait in its own way.
    pub fn ops(&self) -> &dyn FenceOps {
        &*self.inner.ops
    }

    /// The provider's ops as the concrete type `T`, if they are one (the kernel's
    /// `container_of` after an ops check, e.g. `to_dma_fence_chain`).
    pub fn ops_as<T: FenceOps>(&self) -> Option<&T> {
        let ops: &dyn Any = &*self.inner.ops;
        ops.downcast_ref::<T>()
    }

    /// Whether the two handles are the same fence.
    pub fn ptr_eq(a: &Fence, b: &Fence) -> bool {
        Arc::ptr_eq(&a.inner, &b.inner)
    }

    /// A weak handle.
    pub fn downgrade(&self) -> WeakFence {
        WeakFence { inner: Arc::downgrade(&self.inner) }
    }

    /// Whether this fence is later than `other` on the same context
    /// (`dma_fence_is_later`). Fences of different contexts are never ordered.
    pub fn is_later(&self, other: &Fence) -> bool {
        self.context() == other.context()
            && seqno_is_later(self.seqno(), other.seqno(), self.inner.ops.use_64bit_seqno())
    }

    /// Whether this fence is `other` itself or later on the same context
    /// (`dma_fence_is_later_or_same` in `include/linux/dma-fence.h`: `f1 == f2 ||
    /// dma_fence_is_later(f1, f2)`). Two distinct fences with an equal sequence number are
    /// not "the same": neither is later, so a reservation object keeps both.
    pub fn is_later_or_same(&self, other: &Fence) -> bool {
        Fence::ptr_eq(self, other) || self.is_later(other)
    }

    fn flags(&self) -> u32 {
        self.inner.flags.load(Ordering::Acquire)
    }

    /// Whether the signalled flag is set, without polling the provider
    /// (`dma_fence_test_signaled_flag`).
    pub fn test_signaled_flag(&self) -> bool {
        self.flags() & SIGNALED != 0
    }

    /// Whether the fence has signalled (`dma_fence_is_signaled`). If the flag is not set
    /// yet, the provider's [`FenceOps::signaled`] poll is asked, and a positive answer
    /// signals the fence.
    pub fn is_signaled(&self) -> bool {
        if self.test_signaled_flag() {
            return true;
        }
        if self.inner.ops.signaled(self) {
            // Losing a race with another signaller is fine: it is signalled either way.
            let _ = self.signal();
            return true;
        }
        false
    }

    /// The status (`dma_fence_get_status`): pending, signalled, or signalled with an
    /// error. Polls the provider like [`Fence::is_signaled`].
    pub fn status(&self) -> FenceStatus {
        if !self.is_signaled() {
            return FenceStatus::Active;
        }
        self.status_flag()
    }

    /// The status from the signalled flag alone, without polling the provider.
    fn status_flag(&self) -> FenceStatus {
        if !self.test_signaled_flag() {
            FenceStatus::Active
        } else {
            match self.error() {
                Some(e) => FenceStatus::Error(e.to_negative()),
                None => FenceStatus::Signaled,
            }
        }
    }

    /// The error set on the fence, if any (it may be set before the fence signals).
    pub fn error(&self) -> Option<Errno> {
        // Read after the SIGNALED flag (or under no ordering at all, for a pending fence
        // whose error is only a hint until it signals).
        let raw = self.inner.error.load(Ordering::Acquire);
        i32::try_from(raw).ok().and_then(Errno::new)
    }

    /// When the fence signalled, `None` while it has not (`dma_fence_timestamp`).
    pub fn timestamp(&self) -> Option<MonotonicTime> {
        if self.test_signaled_flag() {
            Some(MonotonicTime::from_nanos(self.inner.timestamp.load(Ordering::Relaxed)))
        } else {
            None
        }
    }

    /// Sets the error the fence will signal with (`dma_fence_set_error`). Only allowed
    /// before the fence signals.
    pub fn set_error(&self, error: Errno) -> Result<(), FenceError> {
        let _st = sync::lock(&self.inner.state);
        if self.inner.flags.load(Ordering::Relaxed) & SIGNALED != 0 {
            return Err(self.already_signaled());
        }
        self.inner.error.store(error.get().unsigned_abs(), Ordering::Relaxed);
        Ok(())
    }

    /// [`Fence::set_error`] with the kernel's negative errno (`-EIO`), as drivers call
    /// `dma_fence_set_error`. Anything outside `-4095..=-1` is refused (the kernel `WARN`s).
    pub fn set_error_code(&self, code: i32) -> Result<(), FenceError> {
        let error = Errno::from_negative(code).ok_or(FenceError::InvalidErrno(code))?;
        self.set_error(error)
    }

    fn already_signaled(&self) -> FenceError {
        FenceError::AlreadySignaled { context: self.context(), seqno: self.seqno() }
    }

    /// Signals the fence (`dma_fence_signal`), stamped with the provider's
    /// [`FenceOps::timestamp`]. Wakes every waiter and runs every callback, on this
    /// thread, before returning. Fails if the fence was already signalled.
    pub fn signal(&self) -> Result<(), FenceError> {
        self.signal_inner(None, None)
    }

    /// Signals the fence unless it already was, and says whether it already was
    /// (`dma_fence_check_and_signal`).
    pub fn check_and_signal(&self) -> bool {
        self.signal().is_err()
    }

    /// Signals the fence with an explicit timestamp (`dma_fence_signal_timestamp`).
    pub fn signal_timestamp(&self, timestamp: MonotonicTime) -> Result<(), FenceError> {
        self.signal_inner(Some(timestamp), None)
    }

    /// Sets `error` and signals, as one step (no other signaller can slip in between,
    /// unlike [`Fence::set_error`] followed by [`Fence::signal`]).
    pub fn signal_with_error(&self, error: Errno) -> Result<(), FenceError> {
        self.signal_inner(None, Some(error))
    }

    fn signal_inner(&self, timestamp: Option<MonotonicTime>, error: Option<Errno>) -> Result<(), FenceError> {
        if self.test_signaled_flag() {
            return Err(self.already_signaled());
        }
        // Ask the provider for the time before taking the lock: it may take its own.
        let timestamp = timestamp.unwrap_or_else(|| self.inner.ops.timestamp(self));
        let (callbacks, wake) = {
            let mut st = sync::lock(&self.inner.state);
            if self.inner.flags.load(Ordering::Relaxed) & SIGNALED != 0 {
                return Err(self.already_signaled());
            }
            if let Some(error) = error {
                self.inner.error.store(error.get().unsigned_abs(), Ordering::Relaxed);
            }
            self.inner.timestamp.store(timestamp.as_nanos(), Ordering::Relaxed);
            self.inner.flags.fetch_or(SIGNALED, Ordering::Release);
            let callbacks = mem::take(&mut st.callbacks);
            if !callbacks.is_empty() {
                st.running = Some(sync::current_thread_id());
            }
            (callbacks, st.sleepers > 0)
        };
        if wake {
            self.inner.cond.notify_all();
        }
        if !callbacks.is_empty() {
            self.run_callbacks(callbacks);
        }
        Ok(())
    }

    fn run_callbacks(&self, callbacks: Vec<(u64, Callback)>) {
        /// Clears `running` and wakes `remove_callback` waiters, also if a callback
        /// panics (the remaining callbacks are then dropped unrun).
        struct Done<'a>(&'a Fence);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                let wake = {
                    let mut st = sync::lock(&self.0.inner.state);
                    st.running = None;
                    st.sleepers > 0
                };
                if wake {
                    self.0.inner.cond.notify_all();
                }
            }
        }
        let _done = Done(self);
        for (_, callback) in callbacks {
            callback(self);
        }
    }

    /// Makes sure the provider will signal the fence by itself
    /// (`dma_fence_enable_sw_signaling`): calls [`FenceOps::enable_signaling`] once.
    pub fn enable_sw_signaling(&self) {
        self.enable_signaling();
    }

    /// Enables signalling; returns whether the fence is still pending.
    fn enable_signaling(&self) -> bool {
        let prev = self.inner.flags.fetch_or(ENABLE_SIGNAL, Ordering::AcqRel);
        if prev & SIGNALED != 0 {
            return false;
        }
        if prev & ENABLE_SIGNAL == 0 && !self.inner.ops.enable_signaling(self) {
            // The provider says the work is done already.
            let _ = self.signal();
            return false;
        }
        !self.test_signaled_flag()
    }

    /// Adds a callback to run once when the fence signals (`dma_fence_add_callback`).
    /// It runs on the signalling thread, with no lock held, and gets the fence.
    ///
    /// Fails with [`FenceError::AlreadySignaled`] if the fence has signalled; the
    /// callback is then dropped without running.
    pub fn add_callback<F>(&self, callback: F) -> Result<CallbackId, FenceError>
    where
        F: FnOnce(&Fence) + Send + 'static,
    {
        if !self.enable_signaling() {
            return Err(self.already_signaled());
        }
        let callback: Callback = Box::new(callback);
        let mut st = sync::lock(&self.inner.state);
        if self.inner.flags.load(Ordering::Relaxed) & SIGNALED != 0 {
            drop(st);
            drop(callback);
            return Err(self.already_signaled());
        }
        let id = st.next_callback;
        st.next_callback += 1;
        st.callbacks.push((id, callback));
        Ok(CallbackId(id))
    }

    /// Removes a callback (`dma_fence_remove_callback`). Returns `true` if it was still
    /// pending (it will now never run), `false` if the fence has signalled and the
    /// callback has run.
    ///
    /// If another thread is running this fence's callbacks at that moment, this waits
    /// until it is done, so that on return the callback is not running. (Called from a
    /// callback of this very fence, it cannot wait for itself and returns at once.)
    pub fn remove_callback(&self, id: CallbackId) -> bool {
        let mut st = sync::lock(&self.inner.state);
        if let Some(pos) = st.callbacks.iter().position(|(i, _)| *i == id.0) {
            let (_, callback) = st.callbacks.remove(pos);
            drop(st);
            // Dropped outside the lock: the closure may own fences.
            drop(callback);
            return true;
        }
        let me = sync::current_thread_id();
        while st.running.is_some_and(|t| t != me) {
            st.sleepers += 1;
            st = sync::wait(&self.inner.cond, st);
            st.sleepers -= 1;
        }
        false
    }

    /// Waits until the fence signals (`dma_fence_wait`, not interruptible). Returns
    /// `Ok` once it has signalled, with or without an error (see [`Fence::status`]).
    ///
    /// A provider with a [`FenceOps::wait`] override decides how the wait makes
    /// progress (a simulation runs itself) and may fail it with
    /// [`FenceError::Deadlock`] instead of blocking forever.
    pub fn wait(&self) -> Result<(), FenceError> {
        self.wait_remaining(None).map(drop)
    }

    /// Waits at most `timeout` (`dma_fence_wait_timeout`). Fails with
    /// [`FenceError::Timeout`] if the fence has not signalled by then; a zero timeout
    /// only checks.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), FenceError> {
        self.wait_remaining(Some(timeout)).map(drop)
    }

    /// Waits with an optional timeout (`None` waits forever).
    pub fn wait_opt(&self, timeout: Option<Duration>) -> Result<(), FenceError> {
        self.wait_remaining(timeout).map(drop)
    }

    /// Waits with an optional timeout and returns how much of it is left, on the
    /// provider's clock ([`Duration::MAX`] without a timeout), as the kernel's
    /// `dma_fence_wait_timeout` returns the jiffies left. Waiting for several fences
    /// passes each the remainder of the one before.
    pub fn wait_remaining(&self, timeout: Option<Duration>) -> Result<Duration, FenceError> {
        let whole = timeout.unwrap_or(Duration::MAX);
        if self.test_signaled_flag() {
            return Ok(whole);
        }
        if let Some(result) = self.inner.ops.wait(self, timeout) {
            return result;
        }
        self.default_wait(timeout)
    }

    /// Calls this fence's provider's [`FenceOps::wait`] override with `target` as the
    /// fence to run until signalled. Containers use it to hand a wait to the provider
    /// of a fence they hold; `None` if the provider has no override.
    pub fn provider_wait(&self, target: &Fence, timeout: Option<Duration>) -> Option<Result<Duration, FenceError>> {
        self.inner.ops.wait(target, timeout)
    }

    /// The blocking wait on the fence's condition variable
    /// (`dma_fence_default_wait`), bypassing the provider's override. Returns the part
    /// of `timeout` left ([`Duration::MAX`] without one).
    pub fn default_wait(&self, timeout: Option<Duration>) -> Result<Duration, FenceError> {
        let whole = timeout.unwrap_or(Duration::MAX);
        if self.is_signaled() || !self.enable_signaling() {
            return Ok(whole);
        }
        // A timeout too large to represent is no timeout.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let left =
            |deadline: Option<Instant>| deadline.map_or(Duration::MAX, |d| d.saturating_duration_since(Instant::now()));
        if timeout.is_some_and(|t| t.is_zero()) {
            return Err(FenceError::Timeout);
        }
        let mut st = sync::lock(&self.inner.state);
        loop {
            if self.inner.flags.load(Ordering::Acquire) & SIGNALED != 0 {
                return Ok(left(deadline));
            }
            st.sleepers += 1;
            match deadline {
                None => st = sync::wait(&self.inner.cond, st),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        st.sleepers -= 1;
                        return Err(FenceError::Timeout);
                    }
                    st = sync::wait_timeout(&self.inner.cond, st, deadline - now);
                }
            }
            st.sleepers -= 1;
        }
    }

    /// Asks for the fence to be signalled by `deadline` (`dma_fence_set_deadline`). The
    /// soonest deadline is kept, and the provider hears about each new soonest one.
    /// Ignored once the fence has signalled.
    pub fn set_deadline(&self, deadline: MonotonicTime) {
        if self.test_signaled_flag() {
            return;
        }
        let sooner = {
            let mut st = sync::lock(&self.inner.state);
            if self.inner.flags.load(Ordering::Relaxed) & SIGNALED != 0 {
                return;
            }
            match st.deadline {
                Some(current) if current <= deadline => false,
                _ => {
                    st.deadline = Some(deadline);
                    true
                }
            }
        };
        if sooner {
            self.inner.ops.set_deadline(self, deadline);
        }
    }

    /// The soonest deadline asked for so far, if any.
    pub fn deadline(&self) -> Option<MonotonicTime> {
        sync::lock(&self.inner.state).deadline
    }

    /// Whether this fence is a container ([`FenceChain`] or [`FenceArray`]), which
    /// reservation objects refuse (`dma_fence_is_container`).
    pub fn is_container(&self) -> bool {
        self.to_chain().is_some() || self.to_array().is_some()
    }

    /// The chain node, if this fence is one (`to_dma_fence_chain`).
    pub fn to_chain(&self) -> Option<&FenceChain> {
        self.ops_as::<FenceChain>()
    }

    /// The array, if this fence is one (`to_dma_fence_array`).
    pub fn to_array(&self) -> Option<&FenceArray> {
        self.ops_as::<FenceArray>()
    }

    /// Takes the inner `Arc` if this is the last handle, so that containers can drop
    /// long chains iteratively instead of recursively.
    fn into_unique_ops(self) -> Option<Box<dyn FenceOps>> {
        Arc::try_unwrap(self.inner).ok().map(|inner| inner.ops)
    }
}

impl PartialEq for Fence {
    fn eq(&self, other: &Fence) -> bool {
        Fence::ptr_eq(self, other)
    }
}

impl Eq for Fence {}

impl Hash for Fence {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.inner).hash(state);
    }
}

impl fmt::Debug for Fence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.status_flag();
        f.debug_struct("Fence")
            .field("context", &self.context())
            .field("seqno", &self.seqno())
            .field("driver", &self.driver_name())
            .field("timeline", &self.timeline_name())
            .field("status", &status)
            .finish()
    }
}
