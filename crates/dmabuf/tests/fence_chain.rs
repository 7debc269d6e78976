//! The kernel's `drivers/dma-buf/st-dma-fence-chain.c` selftests, as tests of
//! [`FenceChain`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use dmabuf::fence::{Fence, FenceChain, FenceError, context_alloc};

const CHAIN_SZ: usize = 4 << 10;

fn mock_fence() -> Fence {
    Fence::new_software(context_alloc(1), 0)
}

/// The kernel test's `struct fence_chains`: `fences[i]` is the point of `chains[i]`.
struct FenceChains {
    fences: Vec<Fence>,
    chains: Vec<Fence>,
}

impl FenceChains {
    fn new(count: usize, seqno: impl Fn(usize) -> u64) -> FenceChains {
        let mut fences = Vec::with_capacity(count);
        let mut chains: Vec<Fence> = Vec::with_capacity(count);
        for i in 0..count {
            let f = mock_fence();
            let c = FenceChain::create(chains.last().cloned(), f.clone(), seqno(i));
            fences.push(f);
            chains.push(c);
        }
        FenceChains { fences, chains }
    }

    fn tail(&self) -> &Fence {
        self.chains.last().expect("chain is not empty")
    }
}

fn seqno_inc(i: usize) -> u64 {
    i as u64 + 1
}

fn seqno_inc2(i: usize) -> u64 {
    2 * i as u64 + 2
}

/// st-dma-fence-chain.c `sanitycheck`.
#[test]
fn sanitycheck() {
    let f = mock_fence();
    let chain = FenceChain::create(None, f.clone(), 1);
    assert_eq!(chain.seqno(), 1);
    assert!(chain.to_chain().is_some() && chain.is_container());
    assert_eq!(chain.driver_name(), "dma_fence_chain");
    f.signal().unwrap();
    assert!(chain.is_signaled());
}

/// st-dma-fence-chain.c `find_seqno`.
#[test]
fn find_seqno() {
    let fc = FenceChains::new(64, seqno_inc);
    let tail = fc.tail();
    assert_eq!(FenceChain::find_seqno(tail, 0).unwrap().as_ref(), Some(tail), "find_seqno(0) gives the head");
    for i in 0..fc.chains.len() {
        let seqno = i as u64 + 1;
        let found = FenceChain::find_seqno(tail, seqno).unwrap().expect("pending point");
        assert_eq!(found, fc.chains[i], "incorrect fence reported by find_seqno({seqno})");
        let again = FenceChain::find_seqno(&found, seqno).unwrap().expect("pending point");
        assert_eq!(again, fc.chains[i], "incorrect fence reported by find self");
        assert!(
            matches!(FenceChain::find_seqno(&found, seqno + 1), Err(FenceError::SeqnoInFuture { .. })),
            "error not reported for future fence: find_seqno({}:{})",
            seqno,
            seqno + 1
        );
        let prev = FenceChain::find_seqno(&found, seqno - 1).unwrap().expect("pending point");
        if i > 0 {
            assert_eq!(prev, fc.chains[i - 1], "incorrect fence reported for the previous point");
        }
    }
    // A fence that is no chain node cannot be searched.
    assert!(matches!(FenceChain::find_seqno(&fc.fences[0], 1), Err(FenceError::NotAChain { .. })));
}

/// st-dma-fence-chain.c `find_signaled`: looking up a signalled point gives that point or
/// nothing (it may have been collapsed away).
#[test]
fn find_signaled() {
    let fc = FenceChains::new(2, seqno_inc);
    fc.fences[0].signal().unwrap();
    let found = FenceChain::find_seqno(fc.tail(), 1).unwrap();
    if let Some(f) = &found {
        assert_eq!(f, &fc.chains[0], "incorrect chain fence reported for completed seqno 1");
    }
    // Here the walk did collapse it: the head no longer links to the signalled point.
    assert_eq!(found, None);
    assert_eq!(fc.tail().to_chain().unwrap().prev(), None);
}

/// st-dma-fence-chain.c `find_out_of_order`: with the middle of 1-2-3 signalled, point 2
/// still needs point 1, so the lookup gives node 1 (node 2 is collapsed away).
#[test]
fn find_out_of_order() {
    let fc = FenceChains::new(3, seqno_inc);
    fc.fences[1].signal().unwrap();
    let found = FenceChain::find_seqno(fc.tail(), 2).unwrap();
    assert_eq!(found.as_ref(), Some(&fc.chains[0]));
}

/// st-dma-fence-chain.c `find_gap`: points 2, 4, 6...; looking up an odd number finds the
/// next point above it.
#[test]
fn find_gap() {
    let fc = FenceChains::new(64, seqno_inc2);
    for i in 0..fc.chains.len() {
        let odd = 2 * i as u64 + 1;
        let found = FenceChain::find_seqno(fc.tail(), odd).unwrap().expect("pending point");
        assert_eq!(found, fc.chains[i], "incorrect fence.seqno {} reported by find_seqno({odd})", found.seqno());
        let own = FenceChain::find_seqno(&found, odd + 1).unwrap().expect("pending point");
        assert_eq!(own, fc.chains[i], "incorrect fence reported by find self");
    }
}

/// st-dma-fence-chain.c `find_race`: threads look points up while others signal random
/// points; every lookup succeeds and a found point can find itself.
#[test]
fn find_race() {
    let fc = Arc::new(FenceChains::new(CHAIN_SZ, seqno_inc));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let fc = fc.clone();
            let stop = stop.clone();
            thread::spawn(move || {
                let mut rng = 0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(t + 1);
                let mut next = move || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                let len = fc.chains.len() as u64;
                let mut rounds = 0;
                while !stop.load(Ordering::Relaxed) && rounds < 20_000 {
                    let seqno = next() % len + 1;
                    let found = FenceChain::find_seqno(fc.tail(), seqno).expect("lookup of a past point succeeds");
                    if let Some(f) = found
                        && f.seqno() == seqno
                    {
                        FenceChain::find_seqno(&f, seqno).expect("a found point finds itself");
                    }
                    let _ = fc.fences[(next() % (len - 1)) as usize].signal();
                    rounds += 1;
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let signalled = fc.fences.iter().filter(|f| f.is_signaled()).count();
    assert!(signalled > 0);
    // The last point was never signalled, so the head stays pending.
    assert!(!fc.tail().is_signaled());
}

/// st-dma-fence-chain.c `signal_forward`: signalling in order completes each point and
/// not the next.
#[test]
fn signal_forward() {
    let fc = FenceChains::new(64, seqno_inc);
    for i in 0..fc.chains.len() {
        fc.fences[i].signal().unwrap();
        assert!(fc.chains[i].is_signaled(), "chain[{i}] not signalled");
        if i + 1 < fc.chains.len() {
            assert!(!fc.chains[i + 1].is_signaled(), "chain[{}] is signalled", i + 1);
        }
    }
}

/// st-dma-fence-chain.c `signal_backward`: signalling from the end completes nothing
/// until the first point signals, then everything.
#[test]
fn signal_backward() {
    let fc = FenceChains::new(64, seqno_inc);
    for i in (0..fc.chains.len()).rev() {
        fc.fences[i].signal().unwrap();
        if i > 0 {
            assert!(!fc.chains[i].is_signaled(), "chain[{i}] is signalled");
        }
    }
    for (i, c) in fc.chains.iter().enumerate() {
        assert!(c.is_signaled(), "chain[{i}] was not signalled");
    }
}

fn wait_while_signalling(fc: FenceChains, order: impl Iterator<Item = usize>) {
    let tail = fc.tail().clone();
    let waiter = thread::spawn(move || tail.wait_timeout(Duration::from_secs(30)));
    thread::sleep(Duration::from_millis(5));
    for i in order {
        fc.fences[i].signal().unwrap();
    }
    assert_eq!(waiter.join().unwrap(), Ok(()));
    assert!(fc.chains.iter().all(Fence::is_signaled));
}

/// st-dma-fence-chain.c `wait_forward`.
#[test]
fn wait_forward() {
    wait_while_signalling(FenceChains::new(CHAIN_SZ, seqno_inc), 0..CHAIN_SZ);
}

/// st-dma-fence-chain.c `wait_backward`.
#[test]
fn wait_backward() {
    wait_while_signalling(FenceChains::new(CHAIN_SZ, seqno_inc), (0..CHAIN_SZ).rev());
}

/// st-dma-fence-chain.c `wait_random`: the points signal in a shuffled order.
#[test]
fn wait_random() {
    let mut order: Vec<usize> = (0..CHAIN_SZ).collect();
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    for i in (1..order.len()).rev() {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        order.swap(i, (rng % (i as u64 + 1)) as usize);
    }
    wait_while_signalling(FenceChains::new(CHAIN_SZ, seqno_inc), order.into_iter());
}

/// `dma_fence_chain_init`: a point not above the previous one starts a new context, with
/// its seqno raised to the previous point's.
#[test]
fn init_rules() {
    let a = FenceChain::create(None, mock_fence(), 5);
    let b = FenceChain::create(Some(a.clone()), mock_fence(), 7);
    assert_eq!(b.context(), a.context());
    assert_eq!(b.to_chain().unwrap().prev_seqno(), 5);
    let c = FenceChain::create(Some(b.clone()), mock_fence(), 3);
    assert_ne!(c.context(), b.context());
    assert_eq!(c.seqno(), 7);
    assert_eq!(c.to_chain().unwrap().prev_seqno(), 0);
}

/// Dropping the head of a very long chain does not recurse (no stack overflow), and
/// neither does a wait across it.
#[test]
fn long_chain_drops_iteratively() {
    let mut head: Option<Fence> = None;
    for i in 0..200_000u64 {
        head = Some(FenceChain::create(head.take(), mock_fence(), i + 1));
    }
    let head = head.unwrap();
    assert!(!head.is_signaled());
    drop(head);
}
