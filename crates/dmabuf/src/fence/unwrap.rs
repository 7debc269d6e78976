//! Unwrapping containers and merging fences (the kernel's `dma-fence-unwrap.c`).

use std::cmp::Ordering;

use super::chain::ChainIter;
use super::{Fence, FenceArray, FenceChain, FenceError, MonotonicTime, context_alloc};

/// The plain fences inside a fence: every point of a chain (walking it, so signalled
/// links collapse away) and every fence of an array (`dma_fence_unwrap_for_each`). A fence
/// that is no container yields itself.
pub fn unwrap(head: &Fence) -> Unwrap {
    Unwrap { chain: FenceChain::iter(head), array: None, index: 0 }
}

/// The iterator of [`unwrap`] (`struct dma_fence_unwrap`).
pub struct Unwrap {
    chain: ChainIter,
    /// The array fence being walked, if the current chain point holds one.
    array: Option<Fence>,
    index: usize,
}

impl Iterator for Unwrap {
    type Item = Fence;

    fn next(&mut self) -> Option<Fence> {
        loop {
            if let Some(array) = &self.array {
                let fences = array.to_array().map(FenceArray::fences).unwrap_or_default();
                if let Some(f) = fences.get(self.index) {
                    self.index += 1;
                    return Some(f.clone());
                }
                self.array = None;
            }
            let node = self.chain.next()?;
            let contained = FenceChain::contained(&node).clone();
            if contained.to_array().is_some() {
                self.array = Some(contained);
                self.index = 0;
            } else {
                return Some(contained);
            }
        }
    }
}

/// Sorts `fences` by context and keeps only the latest fence of each context
/// (`dma_fence_dedup_array`). Returns how many are left.
pub fn dedup_array(fences: &mut Vec<Fence>) -> usize {
    fences.sort_by(|a, b| {
        a.context().cmp(&b.context()).then_with(|| {
            // Later first within a context, so the dedup keeps the latest.
            if b.is_later(a) {
                Ordering::Greater
            } else if a.is_later(b) {
                Ordering::Less
            } else {
                Ordering::Equal
            }
        })
    });
    fences.dedup_by(|later, earlier| later.context() == earlier.context());
    fences.len()
}

/// Merges fences into one that signals when all of them have (`dma_fence_unwrap_merge`).
///
/// Every input is unwrapped; signalled fences are dropped; of each context only the latest
/// fence stays; the rest are ordered by context. Nothing left gives a signalled stub
/// carrying the latest timestamp of the dropped fences; one left gives that fence itself;
/// more give a new [`FenceArray`] on a new context.
pub fn unwrap_merge(fences: &[Fence]) -> Result<Fence, FenceError> {
    let mut timestamp = MonotonicTime::from_nanos(0);
    let mut pending = Vec::new();
    for f in fences.iter().flat_map(unwrap) {
        if f.is_signaled() {
            if let Some(t) = f.timestamp() {
                timestamp = timestamp.max(t);
            }
        } else {
            pending.push(f);
        }
    }
    dedup_array(&mut pending);
    match pending.len() {
        0 => Ok(Fence::private_stub(timestamp)),
        1 => Ok(pending.swap_remove(0)),
        _ => FenceArray::create(pending, context_alloc(1), 1, false),
    }
}
