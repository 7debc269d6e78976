//! Model-checked tests of the fence state machine with `loom`: every interleaving of
//! signal against add-callback, remove-callback and wait.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p dmabuf --test fence_loom --release`.
//! Under `cfg(loom)` the fence's mutex, condition variable and atomics are loom's
//! (`crates/dmabuf/src/fence/sync.rs`), so loom sees every operation that orders memory.
//! In a normal build this file is empty.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

use dmabuf::fence::{Fence, FenceError};

fn fence() -> Fence {
    Fence::new_software(1, 1)
}

/// Signal races add_callback: the callback runs exactly once if the add succeeded, never
/// if it was refused, and by the time both threads are done.
#[test]
fn signal_races_add_callback() {
    loom::model(|| {
        let f = fence();
        let ran = Arc::new(AtomicUsize::new(0));
        let signaller = {
            let f = f.clone();
            thread::spawn(move || f.signal())
        };
        let r = ran.clone();
        let added = f.add_callback(move |_| {
            r.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(signaller.join().unwrap(), Ok(()));
        match added {
            Ok(_) => assert_eq!(ran.load(Ordering::SeqCst), 1, "callback lost"),
            Err(FenceError::AlreadySignaled { .. }) => assert_eq!(ran.load(Ordering::SeqCst), 0),
            Err(e) => panic!("unexpected {e}"),
        }
    });
}

/// Signal races remove_callback: a removal that returns true means the callback never
/// runs; one that returns false means it has run by the time remove_callback returns.
#[test]
fn signal_races_remove_callback() {
    loom::model(|| {
        let f = fence();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let id = f
            .add_callback(move |_| {
                r.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        let signaller = {
            let f = f.clone();
            thread::spawn(move || f.signal())
        };
        let removed = f.remove_callback(id);
        let seen_at_return = ran.load(Ordering::SeqCst);
        signaller.join().unwrap().unwrap();
        if removed {
            assert_eq!(ran.load(Ordering::SeqCst), 0, "a removed callback ran");
        } else {
            assert_eq!(seen_at_return, 1, "remove_callback returned before the callback ran");
        }
    });
}

/// Two signallers race: exactly one succeeds and the callback runs once.
#[test]
fn two_signallers_run_callbacks_once() {
    loom::model(|| {
        let f = fence();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        f.add_callback(move |_| {
            r.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        let other = {
            let f = f.clone();
            thread::spawn(move || f.signal().is_ok())
        };
        let mine = f.signal().is_ok();
        let theirs = other.join().unwrap();
        assert!(mine ^ theirs, "exactly one signal succeeds");
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    });
}

/// A waiter never misses the wake-up, and sees what the signaller wrote before.
#[test]
fn wait_sees_the_signal() {
    loom::model(|| {
        let f = fence();
        let data = Arc::new(AtomicUsize::new(0));
        let signaller = {
            let (f, data) = (f.clone(), data.clone());
            thread::spawn(move || {
                data.store(42, Ordering::Relaxed);
                f.signal().unwrap();
            })
        };
        f.wait().unwrap();
        assert_eq!(data.load(Ordering::Relaxed), 42, "the signal orders what came before it");
        signaller.join().unwrap();
    });
}
