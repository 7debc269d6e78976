//! The kernel's `drivers/dma-buf/st-dma-fence-unwrap.c` selftests, as tests of
//! [`unwrap`], [`unwrap_merge`], [`dedup_array`] and [`FenceArray`].

use dmabuf::fence::{
    Errno, Fence, FenceArray, FenceChain, FenceError, FenceStatus, MonotonicTime, context_alloc, dedup_array, unwrap,
    unwrap_merge,
};

fn mock_fence_at(context: u64, seqno: u64) -> Fence {
    let f = Fence::new_software(context, seqno);
    f.enable_sw_signaling();
    f
}

fn mock_fence() -> Fence {
    mock_fence_at(context_alloc(1), 1)
}

fn mock_array(fences: Vec<Fence>) -> Fence {
    FenceArray::create(fences, context_alloc(1), 1, false).expect("plain fences")
}

fn mock_chain(prev: Option<Fence>, fence: Fence) -> Fence {
    FenceChain::create(prev, fence, 1)
}

/// Checks that `head` unwraps to exactly `expected`, in that order.
fn assert_unwraps_to(head: &Fence, expected: &[&Fence]) {
    let got: Vec<Fence> = unwrap(head).collect();
    let want: Vec<Fence> = expected.iter().map(|f| (*f).clone()).collect();
    assert_eq!(got, want);
}

/// st-dma-fence-unwrap.c `sanitycheck`.
#[test]
fn sanitycheck() {
    let f = mock_fence();
    let array = mock_array(vec![f.clone()]);
    let chain = mock_chain(None, array.clone());
    assert_unwraps_to(&chain, &[&f]);
    f.signal().unwrap();
    assert!(array.is_signaled() && chain.is_signaled());
}

/// st-dma-fence-unwrap.c `unwrap_array`.
#[test]
fn unwrap_array() {
    let (f1, f2) = (mock_fence(), mock_fence());
    let array = mock_array(vec![f1.clone(), f2.clone()]);
    assert_unwraps_to(&array, &[&f1, &f2]);
}

/// st-dma-fence-unwrap.c `unwrap_chain`.
#[test]
fn unwrap_chain() {
    let (f1, f2) = (mock_fence(), mock_fence());
    let chain = mock_chain(Some(f1.clone()), f2.clone());
    // The head's point first, then what it follows.
    assert_unwraps_to(&chain, &[&f2, &f1]);
}

/// st-dma-fence-unwrap.c `unwrap_chain_array`.
#[test]
fn unwrap_chain_array() {
    let (f1, f2) = (mock_fence(), mock_fence());
    let array = mock_array(vec![f1.clone(), f2.clone()]);
    let chain = mock_chain(None, array);
    assert_unwraps_to(&chain, &[&f1, &f2]);
}

/// st-dma-fence-unwrap.c `unwrap_merge`.
#[test]
fn merge() {
    let (f1, f2) = (mock_fence(), mock_fence());
    let f3 = unwrap_merge(&[f1.clone(), f2.clone()]).unwrap();
    assert!(f3.to_array().is_some());
    assert_unwraps_to(&f3, &[&f1, &f2]);
}

/// st-dma-fence-unwrap.c `unwrap_merge_duplicate`: merging a fence with itself gives it.
#[test]
fn merge_duplicate() {
    let f1 = mock_fence();
    let f2 = unwrap_merge(&[f1.clone(), f1.clone()]).unwrap();
    assert_unwraps_to(&f2, &[&f1]);
    assert_eq!(f2, f1, "one fence left: the fence itself, no array");
}

/// st-dma-fence-unwrap.c `unwrap_merge_seqno`: of one context only the latest stays, and
/// the result is ordered by context.
#[test]
fn merge_seqno() {
    let ctx0 = context_alloc(1);
    let ctx1 = context_alloc(1);
    let f1 = mock_fence_at(ctx1, 1);
    let f2 = mock_fence_at(ctx1, 2);
    let f3 = mock_fence_at(ctx0, 1);
    let f4 = unwrap_merge(&[f1, f2.clone(), f3.clone()]).unwrap();
    assert_unwraps_to(&f4, &[&f3, &f2]);
}

/// st-dma-fence-unwrap.c `unwrap_merge_order`: the same fences in an array and, reversed,
/// in a chain merge to one ordered set.
#[test]
fn merge_order() {
    let (f1, f2) = (mock_fence(), mock_fence());
    let a1 = mock_array(vec![f1.clone(), f2.clone()]);
    let c1 = mock_chain(None, f1.clone());
    let c2 = mock_chain(Some(c1), f2.clone());
    let a2 = unwrap_merge(&[a1, c2]).unwrap();
    assert_unwraps_to(&a2, &[&f1, &f2]);
}

/// st-dma-fence-unwrap.c `unwrap_merge_complex`: signalled fences (the stub) are
/// filtered and the two arrays merged.
#[test]
fn merge_complex() {
    let (f1, f2) = (mock_fence(), mock_fence());
    let f3 = unwrap_merge(&[f1.clone(), f2.clone()]).unwrap();
    let f4 = mock_array(vec![f2.clone(), f1.clone()]);
    let f5 = unwrap_merge(&[f3, f4, Fence::stub()]).unwrap();
    assert_unwraps_to(&f5, &[&f1, &f2]);
}

/// st-dma-fence-unwrap.c `unwrap_merge_complex_seqno`.
#[test]
fn merge_complex_seqno() {
    let ctx0 = context_alloc(1);
    let ctx1 = context_alloc(1);
    let f1 = mock_fence_at(ctx0, 2);
    let f2 = mock_fence_at(ctx1, 1);
    let f3 = mock_fence_at(ctx0, 1);
    let f4 = mock_fence_at(ctx1, 2);
    let f5 = mock_array(vec![f1.clone(), f2]);
    let f6 = mock_array(vec![f3, f4.clone()]);
    let f7 = unwrap_merge(&[f5, f6]).unwrap();
    assert_unwraps_to(&f7, &[&f1, &f4]);
}

/// st-dma-fence-unwrap.c `test_dedup_empty` (`dma_fence_dedup_array` on nothing).
#[test]
fn dedup_empty() {
    let mut none: Vec<Fence> = Vec::new();
    assert_eq!(dedup_array(&mut none), 0);
    let ctx = context_alloc(1);
    let mut some = vec![mock_fence_at(ctx, 3), mock_fence_at(ctx, 9), mock_fence_at(ctx, 1)];
    assert_eq!(dedup_array(&mut some), 1);
    assert_eq!(some[0].seqno(), 9);
}

/// `__dma_fence_unwrap_merge`: everything signalled gives a signalled stub carrying the
/// latest timestamp.
#[test]
fn merge_of_signalled_is_a_stub_with_the_latest_timestamp() {
    let (f1, f2) = (mock_fence(), mock_fence());
    f1.signal_timestamp(MonotonicTime::from_nanos(100)).unwrap();
    f2.signal_timestamp(MonotonicTime::from_nanos(300)).unwrap();
    let m = unwrap_merge(&[f1, f2]).unwrap();
    assert!(m.is_signaled());
    assert_eq!(m.context(), 0);
    assert_eq!(m.timestamp(), Some(MonotonicTime::from_nanos(300)));
}

/// `dma_fence_array`: signals when all have (or the first, with `signal_on_any`), with the
/// first error; refuses containers inside.
#[test]
fn array_signalling_and_errors() {
    let (f1, f2) = (mock_fence(), mock_fence());
    let all = FenceArray::create(vec![f1.clone(), f2.clone()], context_alloc(1), 1, false).unwrap();
    let any = FenceArray::create(vec![f1.clone(), f2.clone()], context_alloc(1), 1, true).unwrap();
    all.enable_sw_signaling();
    any.enable_sw_signaling();
    f2.signal_with_error(Errno::EIO).unwrap();
    assert!(any.test_signaled_flag(), "signal_on_any signals on the first fence");
    assert_eq!(any.status(), FenceStatus::Error(-5));
    assert!(!all.test_signaled_flag());
    f1.signal().unwrap();
    assert!(all.test_signaled_flag());
    assert_eq!(all.status(), FenceStatus::Error(-5));

    // Without callbacks enabled, polling finds the same answer.
    let (g1, g2) = (mock_fence(), mock_fence());
    let polled = FenceArray::create(vec![g1.clone(), g2.clone()], context_alloc(1), 1, false).unwrap();
    g1.signal().unwrap();
    assert!(!polled.is_signaled());
    g2.signal().unwrap();
    assert!(polled.is_signaled());

    let nested = FenceArray::create(vec![all.clone()], context_alloc(1), 1, false);
    assert!(matches!(nested, Err(FenceError::ContainerInArray { .. })));
    let empty = FenceArray::create(Vec::new(), context_alloc(1), 1, false).unwrap();
    assert!(empty.is_signaled());
}
