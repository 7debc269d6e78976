//! Reservation objects: the kernel's `dma_resv`, the fences attached to a buffer.
//!
//! Every fence in a [`Resv`] comes with a [`ResvUsage`] saying what it guards: kernel
//! work (memory management), a write, a read, or bookkeeping only. The usages are ordered
//! `Kernel < Write < Read < Bookkeep`, and a query for one usage also returns the fences
//! of every stricter usage: whoever reads must wait for writers and kernel work, whoever
//! writes must also wait for readers ([`ResvUsage::rw`]).
//!
//! Changes happen under the lock ([`Resv::lock`], the kernel's `dma_resv_lock`): reserve
//! slots, then add fences. A fence replaces the fence of its own context if it is later (or
//! is that very fence) and its usage is at least as strict (usage is promoted, never
//! demoted), and signalled fences give up their slots. Two distinct fences of one context
//! with an equal sequence number both stay. Readers need no lock: [`Resv::iter_unlocked`]
//! walks a snapshot and restarts, saying so, when the set changes under it (the kernel's
//! RCU walk with its sequence check).

use std::sync::Arc;
use std::time::Duration;

use crate::fence::sync::{self, AtomicU64, Mutex, MutexGuard, Ordering};
use crate::fence::{Fence, FenceArray, FenceError, MonotonicTime, context_alloc};

/// What a fence in a reservation object guards (`enum dma_resv_usage`), from the
/// strictest to the loosest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResvUsage {
    /// `DMA_RESV_USAGE_KERNEL`: kernel memory management (moves, clears); everyone waits.
    Kernel,
    /// `DMA_RESV_USAGE_WRITE`: an implicitly synchronised write.
    Write,
    /// `DMA_RESV_USAGE_READ`: an implicitly synchronised read.
    Read,
    /// `DMA_RESV_USAGE_BOOKKEEP`: known to the object, waited for by nobody implicitly.
    Bookkeep,
}

impl ResvUsage {
    /// Every usage, strictest first.
    pub const ALL: [ResvUsage; 4] = [ResvUsage::Kernel, ResvUsage::Write, ResvUsage::Read, ResvUsage::Bookkeep];

    /// The usage to wait for before an access (`dma_resv_usage_rw`): a write waits for
    /// everyone up to readers (`Read`), a read only for writers (`Write`).
    pub fn rw(write: bool) -> ResvUsage {
        if write { ResvUsage::Read } else { ResvUsage::Write }
    }
}

type Entries = Arc<Vec<(Fence, ResvUsage)>>;

/// What unlocked readers see: the current fence list and its generation.
struct Published {
    fences: Entries,
}

/// The state owned by the lock holder.
struct LockState {
    /// Slots reserved with `reserve_fences` under the current lock and not used yet.
    reserved: usize,
}

/// A reservation object (`struct dma_resv`): the fences of a buffer's users.
pub struct Resv {
    lock: Mutex<LockState>,
    published: Mutex<Published>,
    /// Bumped on every change, after it is published (the kernel's `seq`).
    seq: AtomicU64,
}

impl Default for Resv {
    fn default() -> Self {
        Resv::new()
    }
}

impl std::fmt::Debug for Resv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resv").field("fences", &self.snapshot().1).finish()
    }
}

impl Resv {
    /// An empty reservation object (`dma_resv_init`).
    pub fn new() -> Resv {
        Resv {
            lock: Mutex::new(LockState { reserved: 0 }),
            published: Mutex::new(Published { fences: Arc::new(Vec::new()) }),
            seq: AtomicU64::new(0),
        }
    }

    /// Takes the lock (`dma_resv_lock`); dropping the guard unlocks.
    pub fn lock(&self) -> ResvGuard<'_> {
        ResvGuard { resv: self, state: sync::lock(&self.lock) }
    }

    /// Takes the lock if it is free (`dma_resv_trylock`).
    pub fn try_lock(&self) -> Option<ResvGuard<'_>> {
        let state = match self.lock.try_lock() {
            Ok(state) => state,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(ResvGuard { resv: self, state })
    }

    fn snapshot(&self) -> (u64, Entries) {
        let p = sync::lock(&self.published);
        (self.seq.load(Ordering::Acquire), p.fences.clone())
    }

    fn changed_since(&self, seq: u64) -> bool {
        self.seq.load(Ordering::Acquire) != seq
    }

    /// Walks the unsignalled fences of `usage` and stricter without the lock
    /// (`dma_resv_iter_begin` + `dma_resv_for_each_fence_unlocked`).
    pub fn iter_unlocked(&self, usage: ResvUsage) -> ResvIterUnlocked<'_> {
        ResvIterUnlocked {
            resv: self,
            usage,
            seq: 0,
            fences: Arc::new(Vec::new()),
            index: 0,
            started: false,
            restarted: false,
            current_usage: None,
        }
    }

    /// The unsignalled fences of `usage` and stricter (`dma_resv_get_fences`).
    pub fn get_fences(&self, usage: ResvUsage) -> Vec<Fence> {
        let mut out = Vec::new();
        let mut it = self.iter_unlocked(usage);
        while let Some(f) = it.next() {
            if it.is_restarted() {
                out.clear();
            }
            out.push(f);
        }
        out
    }

    /// One fence for everything of `usage` and stricter (`dma_resv_get_singleton`):
    /// `None` when there is nothing to wait for, the fence itself when there is one, else
    /// a new [`FenceArray`].
    pub fn get_singleton(&self, usage: ResvUsage) -> Result<Option<Fence>, FenceError> {
        let mut fences = self.get_fences(usage);
        match fences.len() {
            0 => Ok(None),
            1 => Ok(fences.pop()),
            _ => FenceArray::create(fences, context_alloc(1), 1, false).map(Some),
        }
    }

    /// Whether every fence of `usage` and stricter has signalled (`dma_resv_test_signaled`).
    pub fn test_signaled(&self, usage: ResvUsage) -> bool {
        self.iter_unlocked(usage).next().is_none()
    }

    /// Waits for every fence of `usage` and stricter, at most `timeout` in all (`None`:
    /// no limit) (`dma_resv_wait_timeout`).
    pub fn wait_timeout(&self, usage: ResvUsage, timeout: Option<Duration>) -> Result<(), FenceError> {
        let mut left = timeout;
        for f in self.iter_unlocked(usage) {
            let rest = f.wait_remaining(left)?;
            // Each fence gets what the ones before left, on its provider's clock.
            left = left.map(|_| rest);
        }
        Ok(())
    }

    /// Passes a deadline to every unsignalled fence of `usage` and stricter
    /// (`dma_resv_set_deadline`).
    pub fn set_deadline(&self, usage: ResvUsage, deadline: MonotonicTime) {
        for f in self.iter_unlocked(usage) {
            f.set_deadline(deadline);
        }
    }
}

/// The unlocked walk of [`Resv::iter_unlocked`] (`struct dma_resv_iter`).
///
/// It yields the unsignalled fences of the usage asked for and stricter. If the object
/// changes while it walks, it starts over from the new set, and
/// [`ResvIterUnlocked::is_restarted`] is true for the first fence after that (and for the
/// very first fence): a caller collecting fences throws away what it has.
pub struct ResvIterUnlocked<'a> {
    resv: &'a Resv,
    usage: ResvUsage,
    seq: u64,
    fences: Entries,
    index: usize,
    started: bool,
    restarted: bool,
    current_usage: Option<ResvUsage>,
}

impl ResvIterUnlocked<'_> {
    /// Whether the walk (re)started at the fence just returned
    /// (`dma_resv_iter_is_restarted`).
    pub fn is_restarted(&self) -> bool {
        self.restarted
    }

    /// The usage of the fence just returned (`dma_resv_iter_usage`).
    pub fn usage(&self) -> Option<ResvUsage> {
        self.current_usage
    }

    fn restart(&mut self) {
        let (seq, fences) = self.resv.snapshot();
        self.seq = seq;
        self.fences = fences;
        self.index = 0;
        self.restarted = true;
    }

    fn walk(&mut self) -> Option<(Fence, ResvUsage)> {
        while let Some((f, u)) = self.fences.get(self.index) {
            self.index += 1;
            if *u <= self.usage && !f.is_signaled() {
                return Some((f.clone(), *u));
            }
        }
        None
    }
}

impl Iterator for ResvIterUnlocked<'_> {
    type Item = Fence;

    fn next(&mut self) -> Option<Fence> {
        self.restarted = false;
        let mut restart = !self.started || self.resv.changed_since(self.seq);
        self.started = true;
        loop {
            if restart {
                self.restart();
            }
            let found = self.walk();
            if self.resv.changed_since(self.seq) {
                restart = true;
                continue;
            }
            self.current_usage = found.as_ref().map(|(_, u)| *u);
            return found.map(|(f, _)| f);
        }
    }
}

/// The lock on a [`Resv`] (a held `dma_resv_lock`). Dropping it unlocks, and forgets
/// any reserved slot that was not used (as the kernel's debug build does).
pub struct ResvGuard<'a> {
    resv: &'a Resv,
    state: MutexGuard<'a, LockState>,
}

impl Drop for ResvGuard<'_> {
    fn drop(&mut self) {
        self.state.reserved = 0;
    }
}

impl ResvGuard<'_> {
    /// Makes room for `num` more fences (`dma_resv_reserve_fences`). Every
    /// [`ResvGuard::add_fence`] that needs a new slot uses one; the reservation lasts
    /// until unlock.
    pub fn reserve_fences(&mut self, num: usize) {
        self.state.reserved = self.state.reserved.max(num);
        let mut p = sync::lock(&self.resv.published);
        Arc::make_mut(&mut p.fences).reserve(num);
    }

    /// Changes the published list in place (or in a copy, if an unlocked reader holds
    /// the current one) and bumps the sequence so walkers restart. Whatever `f` takes out
    /// of the list it returns, to be dropped after the list lock is released.
    fn modify<R>(&mut self, f: impl FnOnce(&mut Vec<(Fence, ResvUsage)>) -> R) -> R {
        let mut p = sync::lock(&self.resv.published);
        let r = f(Arc::make_mut(&mut p.fences));
        self.resv.seq.fetch_add(1, Ordering::AcqRel);
        r
    }

    /// Adds `fence` with `usage` (`dma_resv_add_fence`).
    ///
    /// It takes the slot of a fence of its own context that it is later than, or that is
    /// `fence` itself, whose usage is the same or looser (so usage is promoted, never
    /// demoted), or of any signalled fence; otherwise it needs a reserved slot. A distinct
    /// fence with an equal sequence number is not replaced ([`Fence::is_later_or_same`]).
    /// Containers are refused: add the fences they hold.
    pub fn add_fence(&mut self, fence: &Fence, usage: ResvUsage) -> Result<(), FenceError> {
        if fence.is_container() {
            return Err(FenceError::ContainerInResv { context: fence.context(), seqno: fence.seqno() });
        }
        let reserved = self.state.reserved;
        let replaced = self.modify(|list| {
            let slot = list.iter().position(|(old, old_usage)| {
                (old.context() == fence.context() && *old_usage >= usage && fence.is_later_or_same(old))
                    || old.is_signaled()
            });
            match slot {
                Some(i) => Ok(Some(std::mem::replace(&mut list[i], (fence.clone(), usage)))),
                None if reserved > 0 => {
                    list.push((fence.clone(), usage));
                    Ok(None)
                }
                None => Err(FenceError::NoFenceSlot),
            }
        })?;
        if replaced.is_none() {
            self.state.reserved -= 1;
        }
        Ok(())
    }

    /// Replaces every fence of `context` with `replacement` at `usage`
    /// (`dma_resv_replace_fences`), e.g. a preemption fence by the job's end.
    pub fn replace_fences(&mut self, context: u64, replacement: &Fence, usage: ResvUsage) {
        let old = self.modify(|list| {
            let mut old = Vec::new();
            for entry in list.iter_mut().filter(|(f, _)| f.context() == context) {
                old.push(std::mem::replace(entry, (replacement.clone(), usage)));
            }
            old
        });
        drop(old);
    }

    /// Every fence of `usage` and stricter, signalled or not, with its usage, as the lock
    /// holder sees them (`dma_resv_for_each_fence`).
    pub fn iter(&self, usage: ResvUsage) -> impl Iterator<Item = (Fence, ResvUsage)> + use<> {
        let (_, fences) = self.resv.snapshot();
        (0..fences.len()).filter_map(move |i| {
            let (f, u) = &fences[i];
            (*u <= usage).then(|| (f.clone(), *u))
        })
    }

    /// How many slots the object holds (`num_fences`), signalled fences included.
    pub fn num_fences(&self) -> usize {
        self.resv.snapshot().1.len()
    }

    /// The reservation object this guard holds locked.
    pub fn resv(&self) -> &Resv {
        self.resv
    }
}
