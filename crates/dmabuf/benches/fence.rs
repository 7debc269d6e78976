//! Fence speed against `std::sync::Condvar`, measured in the same run.
//!
//! ```text
//! cargo bench -p dmabuf --bench fence
//! ```
//!
//! Prints a table:
//! - signal-to-wake: two threads hand a token back and forth, each hand-off a fence
//!   signal on one thread and a blocking wait on the other, against the same ping-pong
//!   over a `Mutex` + `Condvar`. Reported per hand-off (half a round trip).
//! - uncontended add-callback + signal on one thread, against an uncontended
//!   lock / set / `notify_one` of a `Condvar` with nobody waiting.
//!
//! Each figure is the median of several runs, alternating the two sides so that drift
//! of the machine hits both. The target is the fence within 1.5x of the Condvar.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use dmabuf::fence::{Fence, context_alloc};

const RUNS: usize = 7;
const ROUND_TRIPS: usize = 20_000;
const UNCONTENDED: usize = 200_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Nanoseconds per hand-off of a fence ping-pong.
fn fence_ping_pong() -> f64 {
    let ctx = context_alloc(2);
    let ping: Arc<Vec<Fence>> = Arc::new((0..ROUND_TRIPS as u64).map(|i| Fence::new_software(ctx, i + 1)).collect());
    let pong: Arc<Vec<Fence>> =
        Arc::new((0..ROUND_TRIPS as u64).map(|i| Fence::new_software(ctx + 1, i + 1)).collect());
    let peer = {
        let (ping, pong) = (ping.clone(), pong.clone());
        thread::spawn(move || {
            for i in 0..ROUND_TRIPS {
                ping[i].wait().unwrap();
                pong[i].signal().unwrap();
            }
        })
    };
    let start = Instant::now();
    for i in 0..ROUND_TRIPS {
        ping[i].signal().unwrap();
        pong[i].wait().unwrap();
    }
    let elapsed = start.elapsed();
    peer.join().unwrap();
    elapsed.as_nanos() as f64 / (2 * ROUND_TRIPS) as f64
}

/// Nanoseconds per hand-off of the same ping-pong over a Mutex + Condvar.
fn condvar_ping_pong() -> f64 {
    let shared = Arc::new((Mutex::new(0u64), Condvar::new()));
    let peer = {
        let shared = shared.clone();
        thread::spawn(move || {
            let (m, c) = &*shared;
            for i in 0..ROUND_TRIPS as u64 {
                let mut v = m.lock().unwrap();
                while *v != 2 * i + 1 {
                    v = c.wait(v).unwrap();
                }
                *v = 2 * i + 2;
                drop(v);
                c.notify_all();
            }
        })
    };
    let (m, c) = &*shared;
    let start = Instant::now();
    for i in 0..ROUND_TRIPS as u64 {
        {
            let mut v = m.lock().unwrap();
            *v = 2 * i + 1;
        }
        c.notify_all();
        let mut v = m.lock().unwrap();
        while *v != 2 * i + 2 {
            v = c.wait(v).unwrap();
        }
    }
    let elapsed = start.elapsed();
    peer.join().unwrap();
    elapsed.as_nanos() as f64 / (2 * ROUND_TRIPS) as f64
}

/// Nanoseconds per add-callback + signal (callback run included) on one thread, fences
/// made beforehand.
fn fence_add_callback_signal() -> f64 {
    let ctx = context_alloc(1);
    let fences: Vec<Fence> = (0..UNCONTENDED as u64).map(|i| Fence::new_software(ctx, i + 1)).collect();
    let hits = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    for f in &fences {
        let h = hits.clone();
        f.add_callback(move |_| {
            h.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
        f.signal().unwrap();
    }
    let elapsed = start.elapsed();
    assert_eq!(hits.load(Ordering::Relaxed), UNCONTENDED as u64);
    elapsed.as_nanos() as f64 / UNCONTENDED as f64
}

/// Nanoseconds per uncontended signal of a Condvar: lock, set, unlock, notify with
/// nobody waiting.
fn condvar_uncontended() -> f64 {
    let (m, c) = (Mutex::new(0u64), Condvar::new());
    let start = Instant::now();
    for i in 0..UNCONTENDED as u64 {
        *m.lock().unwrap() = black_box(i);
        c.notify_all();
    }
    let elapsed = start.elapsed();
    black_box(*m.lock().unwrap());
    elapsed.as_nanos() as f64 / UNCONTENDED as f64
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs the binary without
    // it, and a timing run has no place in the test suite.
    if !std::env::args().any(|a| a == "--bench") {
        println!("fence bench: run it with `cargo bench -p dmabuf --bench fence`");
        return;
    }
    // Warm up threads, allocator and clocks.
    fence_ping_pong();
    condvar_ping_pong();
    thread::sleep(Duration::from_millis(10));

    let (mut fp, mut cp, mut fu, mut cu) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..RUNS {
        if run % 2 == 0 {
            fp.push(fence_ping_pong());
            cp.push(condvar_ping_pong());
            fu.push(fence_add_callback_signal());
            cu.push(condvar_uncontended());
        } else {
            cp.push(condvar_ping_pong());
            fp.push(fence_ping_pong());
            cu.push(condvar_uncontended());
            fu.push(fence_add_callback_signal());
        }
    }
    let (fp, cp, fu, cu) = (median(fp), median(cp), median(fu), median(cu));
    println!(
        "fence vs std::sync::Condvar, median of {RUNS} runs ({} cores)",
        thread::available_parallelism().map_or(0, usize::from)
    );
    println!("{:<44} {:>12} {:>12} {:>8}", "", "fence ns", "condvar ns", "ratio");
    println!("{:<44} {:>12.0} {:>12.0} {:>7.2}x", "signal-to-wake, two threads (per hand-off)", fp, cp, fp / cp);
    println!("{:<44} {:>12.1} {:>12.1} {:>7.2}x", "uncontended add-callback+signal / notify", fu, cu, fu / cu);
    let ok = fp / cp <= 1.5;
    println!("target: signal-to-wake within 1.5x of the Condvar hand-off: {}", if ok { "met" } else { "NOT met" });
}
