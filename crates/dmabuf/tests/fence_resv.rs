//! The kernel's `drivers/dma-buf/st-dma-resv.c` selftests (run for every usage, as the
//! kunit version does), plus the rules of `dma_resv_add_fence` they rely on.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use dmabuf::fence::{Fence, FenceArray, FenceChain, FenceError, MonotonicTime, context_alloc};
use dmabuf::{Resv, ResvUsage};

fn alloc_fence() -> Fence {
    let f = Fence::new_software(context_alloc(1), 1);
    f.enable_sw_signaling();
    f
}

fn add(resv: &Resv, f: &Fence, usage: ResvUsage) {
    let mut g = resv.lock();
    g.reserve_fences(1);
    g.add_fence(f, usage).expect("slot reserved");
}

/// st-dma-resv.c `sanitycheck`: lock and unlock.
#[test]
fn sanitycheck() {
    let f = alloc_fence();
    f.signal().unwrap();
    let resv = Resv::new();
    {
        let _g = resv.lock();
        assert!(resv.try_lock().is_none(), "the lock is held");
    }
    assert!(resv.try_lock().is_some());
}

/// st-dma-resv.c `test_signaling`: for every usage, a pending fence makes the object
/// unsignalled for that usage, and signalling it makes it signalled.
#[test]
fn signaling() {
    for usage in ResvUsage::ALL {
        let f = alloc_fence();
        let resv = Resv::new();
        let mut g = resv.lock();
        g.reserve_fences(1);
        g.add_fence(&f, usage).unwrap();
        assert!(!resv.test_signaled(usage), "resv unexpectedly signalled ({usage:?})");
        f.signal().unwrap();
        assert!(resv.test_signaled(usage), "resv not reporting signalled ({usage:?})");
    }
}

/// st-dma-resv.c `test_for_each`: the locked walk finds the one fence with its usage.
#[test]
fn for_each() {
    for usage in ResvUsage::ALL {
        let f = alloc_fence();
        let resv = Resv::new();
        let mut g = resv.lock();
        g.reserve_fences(1);
        g.add_fence(&f, usage).unwrap();
        let found: Vec<_> = g.iter(usage).collect();
        assert_eq!(found, vec![(f.clone(), usage)], "more than one fence, or the wrong one");
        f.signal().unwrap();
        // The locked walk also returns signalled fences.
        assert_eq!(g.iter(usage).count(), 1);
    }
}

/// st-dma-resv.c `test_for_each_unlocked`: the unlocked walk finds the fence, flags the
/// first fence as restarted, and restarts (flagged again) when the object changes.
#[test]
fn for_each_unlocked() {
    for usage in ResvUsage::ALL {
        let f = alloc_fence();
        let resv = Resv::new();
        add(&resv, &f, usage);
        let mut it = resv.iter_unlocked(usage);
        let first = it.next().expect("no fence found");
        assert_eq!(first, f, "unexpected fence");
        assert!(it.is_restarted(), "no restart flag");
        assert_eq!(it.usage(), Some(usage), "unexpected fence usage");
        // The kernel test forces a restart with `cursor.seq--`; here the object really
        // changes under the walk.
        let other = Fence::new_software(context_alloc(1), 1);
        add(&resv, &other, ResvUsage::Bookkeep);
        let again = it.next().expect("the walk restarted");
        assert!(it.is_restarted(), "no restart flag after a change");
        assert_eq!(again, f);
        if usage == ResvUsage::Bookkeep {
            assert_eq!(it.next(), Some(other.clone()));
            assert!(!it.is_restarted());
        }
        assert_eq!(it.next(), None, "more than one fence found");
        f.signal().unwrap();
        other.signal().unwrap();
    }
}

/// st-dma-resv.c `test_get_fences`.
#[test]
fn get_fences() {
    for usage in ResvUsage::ALL {
        let f = alloc_fence();
        let resv = Resv::new();
        add(&resv, &f, usage);
        assert_eq!(resv.get_fences(usage), vec![f.clone()], "get_fences returned unexpected fence");
        f.signal().unwrap();
        assert!(resv.get_fences(usage).is_empty());
    }
}

/// A query with one usage also returns every stricter usage, and none of the looser.
#[test]
fn usage_queries_include_stricter_usages() {
    let resv = Resv::new();
    let fences: Vec<Fence> = ResvUsage::ALL.iter().map(|_| alloc_fence()).collect();
    {
        let mut g = resv.lock();
        g.reserve_fences(4);
        for (f, u) in fences.iter().zip(ResvUsage::ALL) {
            g.add_fence(f, u).unwrap();
        }
    }
    for (i, usage) in ResvUsage::ALL.into_iter().enumerate() {
        assert_eq!(resv.get_fences(usage), fences[..=i].to_vec(), "{usage:?}");
    }
    assert_eq!(ResvUsage::rw(true), ResvUsage::Read);
    assert_eq!(ResvUsage::rw(false), ResvUsage::Write);
    assert!(ResvUsage::Kernel < ResvUsage::Write && ResvUsage::Read < ResvUsage::Bookkeep);
}

/// `dma_resv_add_fence`: a later fence of the same context replaces the older one at the
/// same or a stricter usage (promotion), but not at a looser one (no demotion).
#[test]
fn same_context_replaces_and_promotes_never_demotes() {
    let ctx = context_alloc(1);
    let resv = Resv::new();
    let read1 = Fence::new_software(ctx, 1);
    add(&resv, &read1, ResvUsage::Read);
    // Same context, later, stricter usage: replaces (the slot is promoted to Write).
    let write2 = Fence::new_software(ctx, 2);
    {
        let mut g = resv.lock();
        g.add_fence(&write2, ResvUsage::Write).expect("replacement needs no reserved slot");
        assert_eq!(g.iter(ResvUsage::Bookkeep).collect::<Vec<_>>(), vec![(write2.clone(), ResvUsage::Write)]);
    }
    // Same context, later, looser usage: no demotion, both kept.
    let read3 = Fence::new_software(ctx, 3);
    {
        let mut g = resv.lock();
        assert_eq!(g.add_fence(&read3, ResvUsage::Read), Err(FenceError::NoFenceSlot));
        g.reserve_fences(1);
        g.add_fence(&read3, ResvUsage::Read).unwrap();
        assert_eq!(g.num_fences(), 2);
    }
    assert_eq!(resv.get_fences(ResvUsage::Write), vec![write2.clone()]);
    assert_eq!(resv.get_fences(ResvUsage::Read), vec![write2.clone(), read3.clone()]);
    // An older fence of the context does not replace a newer one.
    let old = Fence::new_software(ctx, 0);
    {
        let mut g = resv.lock();
        g.reserve_fences(1);
        g.add_fence(&old, ResvUsage::Kernel).unwrap();
        assert_eq!(g.num_fences(), 3);
    }
    // A signalled fence gives up its slot to anyone.
    old.signal().unwrap();
    let stranger = alloc_fence();
    {
        let mut g = resv.lock();
        g.add_fence(&stranger, ResvUsage::Bookkeep).expect("reuses the signalled slot");
        assert_eq!(g.num_fences(), 3);
    }
}

/// Reserved slots last until unlock, and containers are refused.
#[test]
fn reservations_and_containers() {
    let resv = Resv::new();
    {
        let mut g = resv.lock();
        g.reserve_fences(2);
        g.add_fence(&alloc_fence(), ResvUsage::Read).unwrap();
        g.add_fence(&alloc_fence(), ResvUsage::Read).unwrap();
        assert_eq!(g.add_fence(&alloc_fence(), ResvUsage::Read), Err(FenceError::NoFenceSlot));
        g.reserve_fences(1);
    }
    let mut g = resv.lock();
    assert_eq!(
        g.add_fence(&alloc_fence(), ResvUsage::Read),
        Err(FenceError::NoFenceSlot),
        "reservation survived unlock"
    );
    let array = FenceArray::create(vec![alloc_fence()], context_alloc(1), 1, false).unwrap();
    let chain = FenceChain::create(None, alloc_fence(), 1);
    g.reserve_fences(2);
    assert!(matches!(g.add_fence(&array, ResvUsage::Read), Err(FenceError::ContainerInResv { .. })));
    assert!(matches!(g.add_fence(&chain, ResvUsage::Read), Err(FenceError::ContainerInResv { .. })));
}

/// `dma_resv_replace_fences`.
#[test]
fn replace_fences() {
    let ctx = context_alloc(1);
    let resv = Resv::new();
    add(&resv, &Fence::new_software(ctx, 1), ResvUsage::Bookkeep);
    let end = alloc_fence();
    resv.lock().replace_fences(ctx, &end, ResvUsage::Write);
    assert_eq!(resv.get_fences(ResvUsage::Write), vec![end]);
}

/// `dma_resv_get_singleton`, `dma_resv_wait_timeout` and `dma_resv_set_deadline`.
#[test]
fn singleton_wait_and_deadline() {
    let resv = Resv::new();
    assert_eq!(resv.get_singleton(ResvUsage::Bookkeep).unwrap(), None);
    let (a, b) = (alloc_fence(), alloc_fence());
    add(&resv, &a, ResvUsage::Write);
    assert_eq!(resv.get_singleton(ResvUsage::Read).unwrap(), Some(a.clone()));
    add(&resv, &b, ResvUsage::Read);
    let s = resv.get_singleton(ResvUsage::Read).unwrap().expect("two fences");
    assert_eq!(s.to_array().map(|x| x.fences().to_vec()), Some(vec![a.clone(), b.clone()]));

    resv.set_deadline(ResvUsage::Write, MonotonicTime::from_nanos(42));
    assert_eq!(a.deadline(), Some(MonotonicTime::from_nanos(42)));
    assert_eq!(b.deadline(), None, "a read fence is not in a Write query");

    assert_eq!(resv.wait_timeout(ResvUsage::Read, Some(Duration::ZERO)), Err(FenceError::Timeout));
    assert_eq!(resv.wait_timeout(ResvUsage::Read, Some(Duration::from_millis(5))), Err(FenceError::Timeout));
    let signaller = {
        let (a, b) = (a.clone(), b.clone());
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(5));
            a.signal().unwrap();
            b.signal().unwrap();
        })
    };
    assert_eq!(resv.wait_timeout(ResvUsage::Read, None), Ok(()));
    signaller.join().unwrap();
    assert!(resv.test_signaled(ResvUsage::Bookkeep));
    assert!(s.is_signaled());
}

/// Unlocked readers on other threads see a consistent set while a writer keeps changing
/// it: every fence they return was added, and collecting with restarts never duplicates.
#[test]
fn unlocked_readers_race_a_writer() {
    let resv = Arc::new(Resv::new());
    let ctx = context_alloc(1);
    let writer = {
        let resv = resv.clone();
        thread::spawn(move || {
            let mut kept = Vec::new();
            for i in 1..=2000u64 {
                let f = Fence::new_software(ctx + (i % 7), i);
                let mut g = resv.lock();
                g.reserve_fences(1);
                g.add_fence(&f, if i % 2 == 0 { ResvUsage::Write } else { ResvUsage::Read }).unwrap();
                kept.push(f);
            }
            kept
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let resv = resv.clone();
            thread::spawn(move || {
                for _ in 0..2000 {
                    let got = resv.get_fences(ResvUsage::Read);
                    let mut seqnos: Vec<u64> = got.iter().map(Fence::seqno).collect();
                    seqnos.sort_unstable();
                    seqnos.dedup();
                    assert_eq!(seqnos.len(), got.len(), "a fence was returned twice");
                    assert!(got.len() <= 14, "at most one fence per context and usage: {}", got.len());
                }
            })
        })
        .collect();
    let kept = writer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    assert_eq!(resv.get_fences(ResvUsage::Read).len(), 14);
    drop(kept);
}

/// dma-resv.c `dma_resv_add_fence` with `dma_fence_is_later_or_same`: a fence of the same
/// context replaces the old one only if it is later or is that very fence. A distinct fence
/// with an equal sequence number takes a slot of its own, and both are waited for.
#[test]
fn resv_keeps_distinct_fences_of_equal_seqno() {
    let ctx = context_alloc(1);
    let (a, twin) = (Fence::new_software(ctx, 1), Fence::new_software(ctx, 1));
    let resv = Resv::new();
    add(&resv, &a, ResvUsage::Read);
    {
        let mut g = resv.lock();
        assert_eq!(g.add_fence(&twin, ResvUsage::Read), Err(FenceError::NoFenceSlot), "the twin replaced the fence");
        g.reserve_fences(1);
        g.add_fence(&twin, ResvUsage::Read).unwrap();
        assert_eq!(g.num_fences(), 2);
    }
    assert_eq!(resv.get_fences(ResvUsage::Read), vec![a.clone(), twin.clone()]);
    a.signal().unwrap();
    assert!(!resv.test_signaled(ResvUsage::Read), "the twin is still pending");
    twin.signal().unwrap();
    assert!(resv.test_signaled(ResvUsage::Read));
}

/// dma-resv.c `dma_resv_add_fence`, as the commit that brought in
/// `dma_fence_is_later_or_same` puts it: "It's valid to add the same fence multiple times
/// to a dma-resv object and we shouldn't need one extra slot for each." At a looser usage
/// it is not replaced (no demotion), so it then needs a slot.
#[test]
fn resv_adds_the_same_fence_again_without_a_slot() {
    let f = alloc_fence();
    let resv = Resv::new();
    add(&resv, &f, ResvUsage::Write);
    let mut g = resv.lock();
    for usage in [ResvUsage::Write, ResvUsage::Kernel] {
        g.add_fence(&f, usage).expect("the same fence needs no new slot");
        assert_eq!(g.num_fences(), 1);
    }
    assert_eq!(g.iter(ResvUsage::Bookkeep).collect::<Vec<_>>(), vec![(f.clone(), ResvUsage::Kernel)]);
    assert_eq!(g.add_fence(&f, ResvUsage::Read), Err(FenceError::NoFenceSlot));
    drop(g);
    f.signal().unwrap();
}
