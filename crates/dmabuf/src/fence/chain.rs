//! `FenceChain`: timeline points (the kernel's `dma_fence_chain`).

use std::time::Duration;

use super::array::container_wait;
use super::sync::{self, Mutex};
use super::{Fence, FenceError, FenceOps, MonotonicTime, context_alloc, seqno_is_later};

/// One node of a fence chain: a point on a timeline (`struct dma_fence_chain`).
///
/// A node holds the fence of its point and the previous node. It signals when its fence
/// and every earlier point have signalled, so waiting for point N waits for all points up
/// to N. Nodes whose fence has signalled are unlinked as the chain is walked
/// ([`FenceChain::walk`]), so a long-running timeline does not grow without bound.
///
/// Build nodes with [`FenceChain::create`]; [`Fence::to_chain`] gets the node back.
pub struct FenceChain {
    /// The previous node (or a plain fence), replaced as signalled links collapse.
    prev: Mutex<Option<Fence>>,
    /// The sequence number of the previous node when it shares this node's context.
    prev_seqno: u64,
    /// The fence this node holds for its point (`dma_fence_chain.fence`).
    fence: Fence,
}

impl FenceChain {
    /// A new chain node for `fence` at point `seqno` after `prev` (`dma_fence_chain_init`).
    ///
    /// If `prev` is a chain node with a lower sequence number the new node continues its
    /// timeline (same context); otherwise it starts a new context, and its sequence number
    /// is raised to `prev`'s if that is higher, so that it is never below an earlier point.
    pub fn create(prev: Option<Fence>, fence: Fence, seqno: u64) -> Fence {
        let prev_chain = prev.as_ref().filter(|p| p.to_chain().is_some());
        let (context, seqno, prev_seqno) = match prev_chain {
            Some(p) if seqno_is_later(seqno, p.seqno(), true) => (p.context(), seqno, p.seqno()),
            Some(p) => (context_alloc(1), seqno.max(p.seqno()), 0),
            None => (context_alloc(1), seqno, 0),
        };
        Fence::new(context, seqno, FenceChain { prev: Mutex::new(prev), prev_seqno, fence })
    }

    /// The fence this node holds for its point (`dma_fence_chain.fence`): not the node,
    /// which also waits for every earlier point.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// The previous node (or plain fence), as last collapsed.
    pub fn prev(&self) -> Option<Fence> {
        sync::lock(&self.prev).clone()
    }

    /// The sequence number of the previous point on the same timeline, 0 if none.
    pub fn prev_seqno(&self) -> u64 {
        self.prev_seqno
    }

    /// The fence a chain node stands for, or `fence` itself if it is no chain node
    /// (`dma_fence_chain_contained`).
    pub fn contained(fence: &Fence) -> &Fence {
        match fence.to_chain() {
            Some(chain) => &chain.fence,
            None => fence,
        }
    }

    /// The next node to look at after `fence` (`dma_fence_chain_walk`): its previous
    /// node, after unlinking every previous node whose fence has signalled. `None` at the
    /// end of the chain, when everything before has signalled, or if `fence` is not a
    /// chain node.
    pub fn walk(fence: &Fence) -> Option<Fence> {
        let chain = fence.to_chain()?;
        loop {
            let prev = chain.prev()?;
            let replacement = match prev.to_chain() {
                Some(prev_chain) => {
                    if !prev_chain.fence.is_signaled() {
                        return Some(prev);
                    }
                    prev_chain.prev()
                }
                None => {
                    if !prev.is_signaled() {
                        return Some(prev);
                    }
                    None
                }
            };
            // Unlink `prev` unless someone else changed the link meanwhile (the kernel's
            // cmpxchg). What is unlinked is dropped after the lock is released.
            let unlinked = {
                let mut link = sync::lock(&chain.prev);
                if link.as_ref() == Some(&prev) { std::mem::replace(&mut *link, replacement) } else { None }
            };
            drop(unlinked);
        }
    }

    /// Every node from `head` back, collapsing signalled ones on the way
    /// (`dma_fence_chain_for_each`). The first item is `head` itself.
    pub fn iter(head: &Fence) -> ChainIter {
        ChainIter { next: Some(head.clone()) }
    }

    /// The node to wait for to reach point `seqno` of the chain headed by `head`
    /// (`dma_fence_chain_find_seqno`): the first node at or after `seqno` whose previous
    /// point is below it. `Ok(None)` means every point up to `seqno` has signalled;
    /// `seqno` 0 gives `head` back. Fails if `head` is no chain node, or if `seqno` is
    /// beyond the head (a point in the future).
    pub fn find_seqno(head: &Fence, seqno: u64) -> Result<Option<Fence>, FenceError> {
        if seqno == 0 {
            return Ok(Some(head.clone()));
        }
        if head.to_chain().is_none() {
            return Err(FenceError::NotAChain { context: head.context(), seqno: head.seqno() });
        }
        if head.seqno() < seqno {
            return Err(FenceError::SeqnoInFuture { seqno, head: head.seqno() });
        }
        for node in FenceChain::iter(head) {
            let below = node.to_chain().is_none_or(|c| c.prev_seqno < seqno);
            if node.context() != head.context() || below {
                return Ok(Some(node));
            }
        }
        Ok(None)
    }

    /// Arms the head: adds a callback to the first unsignalled fence in the chain, which
    /// re-arms when it runs. Returns `false` when everything has signalled.
    fn arm(head: &Fence) -> bool {
        for node in FenceChain::iter(head) {
            let weak = head.downgrade();
            let added = FenceChain::contained(&node).add_callback(move |_| {
                if let Some(head) = weak.upgrade()
                    && !FenceChain::arm(&head)
                {
                    let _ = head.signal();
                }
            });
            if added.is_ok() {
                return true;
            }
        }
        false
    }
}

impl FenceOps for FenceChain {
    fn driver_name(&self) -> &str {
        "dma_fence_chain"
    }

    fn timeline_name(&self) -> &str {
        "unbound"
    }

    fn enable_signaling(&self, fence: &Fence) -> bool {
        FenceChain::arm(fence)
    }

    fn signaled(&self, fence: &Fence) -> bool {
        FenceChain::iter(fence).all(|node| FenceChain::contained(&node).is_signaled())
    }

    fn wait(&self, fence: &Fence, timeout: Option<Duration>) -> Option<Result<Duration, FenceError>> {
        let leaves: Vec<Fence> = FenceChain::iter(fence).map(|n| FenceChain::contained(&n).clone()).collect();
        container_wait(leaves.iter(), fence, timeout)
    }

    fn set_deadline(&self, fence: &Fence, deadline: MonotonicTime) {
        // dma_fence_chain_set_deadline: every unsignalled point gets it.
        for node in FenceChain::iter(fence) {
            FenceChain::contained(&node).set_deadline(deadline);
        }
    }
}

impl Drop for FenceChain {
    /// Drops a long chain link by link instead of recursively
    /// (`dma_fence_chain_release`), so that dropping the head of a million-point timeline
    /// cannot overflow the stack.
    fn drop(&mut self) {
        let mut next = self.prev.get_mut().map(Option::take).unwrap_or_else(|e| e.into_inner().take());
        while let Some(prev) = next {
            let Some(ops) = prev.into_unique_ops() else { break };
            let ops: Box<dyn std::any::Any> = ops;
            match ops.downcast::<FenceChain>() {
                Ok(mut chain) => {
                    next = chain.prev.get_mut().map(Option::take).unwrap_or_else(|e| e.into_inner().take());
                }
                Err(_) => break,
            }
        }
    }
}

/// The nodes of a chain from its head back (see [`FenceChain::iter`]).
pub struct ChainIter {
    next: Option<Fence>,
}

impl Iterator for ChainIter {
    type Item = Fence;

    fn next(&mut self) -> Option<Fence> {
        let current = self.next.take()?;
        self.next = FenceChain::walk(&current);
        Some(current)
    }
}
