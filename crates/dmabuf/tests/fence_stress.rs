//! Stress tests with several threads: the kernel's `sync_stress_parallelism.c` (two
//! threads handing a counter back and forth through fences) and `sync_stress_consumer.c`
//! (many producers, one consumer merging their fences), and callbacks raced against
//! signalling and removal.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use dmabuf::SyncFile;
use dmabuf::SyncTimeline;
use dmabuf::fence::{Fence, context_alloc};
use dmabuf::uapi::WaitStatus;

/// sync_stress_parallelism.c `test_stress_two_threads_shared_timeline`, for 100,000
/// rounds: thread `t` waits for point `2i + t` of a shared timeline, checks and bumps the
/// counter, and advances the timeline, which releases the other thread. The counter is
/// read and written with relaxed accesses, like the kernel test's plain `int`: only the
/// fences order the two threads.
#[test]
fn two_threads_shared_timeline() {
    const ROUNDS: u32 = 100_000;
    let timeline = Arc::new(SyncTimeline::new("two_threads"));
    let counter = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..2u32)
        .map(|t| {
            let timeline = timeline.clone();
            let counter = counter.clone();
            thread::spawn(move || {
                for i in 0..ROUNDS {
                    let point = i * 2 + t;
                    let fence = timeline.create_fence(point);
                    fence.wait().expect("a software fence wait cannot fail");
                    let seen = counter.load(Ordering::Relaxed);
                    assert_eq!(seen, u64::from(point), "counter has an unexpected value");
                    counter.store(seen + 1, Ordering::Relaxed);
                    timeline.inc(1);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(counter.load(Ordering::Relaxed), u64::from(2 * ROUNDS));
    assert_eq!(timeline.value(), 2 * ROUNDS);
}

/// sync_stress_consumer.c `test_consumer_stress_multi_producer_single_consumer`: each
/// producer waits for the consumer's timeline, bumps a shared counter and advances its
/// own timeline; the consumer merges one fence per producer, waits for the merge, checks
/// that every producer has bumped the counter, and releases them. Every eighth round,
/// producers and consumer busy-wait (poll) instead of sleeping, varying the means of
/// waiting as the kernel test does.
#[test]
fn multi_producer_single_consumer() {
    const PRODUCERS: usize = 5;
    const ITERATIONS: u32 = 1 << 12;
    let consumer_timeline = Arc::new(SyncTimeline::new("consumer"));
    let producer_timelines: Arc<Vec<SyncTimeline>> =
        Arc::new((0..PRODUCERS).map(|i| SyncTimeline::new(&format!("producer{i}"))).collect());
    let counter = Arc::new(Mutex::new(0u64));

    let producers: Vec<_> = (0..PRODUCERS)
        .map(|id| {
            let consumer_timeline = consumer_timeline.clone();
            let producer_timelines = producer_timelines.clone();
            let counter = counter.clone();
            thread::spawn(move || {
                for i in 0..ITERATIONS {
                    let fence = consumer_timeline.create_fence(i);
                    if (i + id as u32).is_multiple_of(8) {
                        while !fence.is_signaled() {
                            thread::yield_now();
                        }
                    } else {
                        fence.wait().unwrap();
                    }
                    *counter.lock().unwrap() += 1;
                    producer_timelines[id].inc(1);
                }
            })
        })
        .collect();

    for it in 1..=ITERATIONS {
        let mut merged = producer_timelines[0].create_sync_file("name", it);
        for tl in &producer_timelines[1..] {
            merged = tl.create_sync_file("name", it).merge("name", &merged).unwrap();
        }
        // Points already reached are dropped by the merge; the rest stay, one per timeline.
        assert!(merged.info().fences.len() <= PRODUCERS);
        if it.is_multiple_of(8) {
            while !merged.poll().readable {
                thread::yield_now();
            }
        } else {
            assert_eq!(merged.wait(None).unwrap(), WaitStatus::Signaled);
        }
        assert_eq!(*counter.lock().unwrap(), PRODUCERS as u64 * u64::from(it), "counter value mismatch");
        consumer_timeline.inc(1);
    }
    for p in producers {
        p.join().unwrap();
    }
}

/// Callbacks raced against signalling: several threads add callbacks to the same fence
/// while another signals it, and some remove theirs again. Every callback whose add
/// succeeded and whose removal failed runs exactly once, before `remove_callback`
/// returns; a removed callback or a refused one never runs.
#[test]
fn callbacks_race_signal_and_removal() {
    const ROUNDS: usize = 2_000;
    const ADDERS: usize = 3;
    for _ in 0..ROUNDS {
        let fence = Fence::new_software(context_alloc(1), 1);
        let barrier = Arc::new(Barrier::new(ADDERS + 1));
        let adders: Vec<_> = (0..ADDERS)
            .map(|t| {
                let fence = fence.clone();
                let barrier = barrier.clone();
                thread::spawn(move || {
                    barrier.wait();
                    let mut outcomes = Vec::new();
                    for k in 0..8 {
                        let ran = Arc::new(AtomicUsize::new(0));
                        let r = ran.clone();
                        match fence.add_callback(move |_| {
                            r.fetch_add(1, Ordering::SeqCst);
                        }) {
                            Err(_) => outcomes.push((ran, false, false)),
                            Ok(id) => {
                                let removed = (t + k) % 2 == 0 && fence.remove_callback(id);
                                outcomes.push((ran, true, removed));
                            }
                        }
                    }
                    // Wait for the signal, then for the callbacks it is still running.
                    fence.wait().unwrap();
                    let probe = Arc::new(AtomicBool::new(false));
                    let p = probe.clone();
                    assert!(fence.add_callback(move |_| p.store(true, Ordering::SeqCst)).is_err());
                    assert!(!probe.load(Ordering::SeqCst));
                    outcomes
                })
            })
            .collect();
        barrier.wait();
        fence.signal().unwrap();
        // The signalling thread returns only after every callback it took has run.
        for a in adders {
            for (ran, added, removed) in a.join().unwrap() {
                let runs = ran.load(Ordering::SeqCst);
                let expected = usize::from(added && !removed);
                assert_eq!(runs, expected, "added {added}, removed {removed}");
            }
        }
    }
}

/// Many producers signal fences that one consumer merged into a sync file while the
/// consumer already waits for it (the merge races the signals).
#[test]
fn merge_races_signals() {
    for _ in 0..200 {
        let fences: Vec<Fence> = (0..8).map(|_| Fence::new_software(context_alloc(1), 1)).collect();
        let signallers: Vec<_> = fences
            .iter()
            .cloned()
            .map(|f| {
                thread::spawn(move || {
                    f.signal().unwrap();
                })
            })
            .collect();
        let merged = SyncFile::from_fences(&fences).unwrap();
        assert_eq!(merged.wait(None).unwrap(), WaitStatus::Signaled);
        assert!(fences.iter().all(Fence::is_signaled));
        for s in signallers {
            s.join().unwrap();
        }
    }
}
