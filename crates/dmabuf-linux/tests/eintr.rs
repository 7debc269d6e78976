//! `DMA_BUF_IOCTL_SYNC` interrupted by a signal: the raw ioctl fails with `EINTR`, the
//! guard retries until it gets its bracket. A test binary of its own because it installs
//! a signal handler for the whole process.

mod common;

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{system_heap, vgem};
use dmabuf_linux::{Errno, SyncFlags, sys};

static SIGNALS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn count_signal(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::Relaxed);
}

/// Installs a SIGUSR1 handler without `SA_RESTART`, so an interrupted ioctl returns
/// `EINTR` instead of being restarted by the kernel.
fn install_handler() {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handler only
    // touches an atomic, which is async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = count_signal as *const () as usize;
        sa.sa_flags = 0;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
}

#[test]
#[ignore = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh"]
fn sync_start_is_retried_when_a_signal_interrupts_it() {
    install_handler();
    let buf = system_heap().allocate(4096).expect("alloc");
    let vgem = vgem();
    let handle = vgem.import(&buf).expect("import");
    let map = buf.mmap().expect("mmap");
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() };

    // The raw ioctl, blocked on a writer's fence and hit by a signal, reports EINTR.
    let fence = vgem.attach_fence(&handle, true).expect("attach");
    let done = AtomicBool::new(false);
    let raw = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                // SAFETY: `me` is the test thread, alive until `done` is set.
                unsafe { libc::pthread_kill(me, libc::SIGUSR1) };
            }
        });
        let r = sys::dma_buf_sync(buf.as_fd(), sys::DMA_BUF_SYNC_START | sys::DMA_BUF_SYNC_READ);
        done.store(true, Ordering::Relaxed);
        r
    });
    assert_eq!(raw, Err(Errno::EINTR), "the raw ioctl should see the signal");
    fence.signal().expect("signal");

    // The guard, hit by the same signals, keeps retrying until the fence signals.
    let fence = vgem.attach_fence(&handle, true).expect("attach");
    let before = SIGNALS.load(Ordering::Relaxed);
    let delay = Duration::from_millis(500);
    let (waited, flags) = std::thread::scope(|s| {
        s.spawn(|| {
            let t = Instant::now();
            while t.elapsed() < delay {
                std::thread::sleep(Duration::from_millis(50));
                // SAFETY: as above; the test thread waits in the guard meanwhile.
                unsafe { libc::pthread_kill(me, libc::SIGUSR1) };
            }
            fence.signal().expect("signal");
        });
        let t = Instant::now();
        let guard = map.read().expect("the guard retries EINTR");
        let flags = dmabuf_linux::CpuAccess::flags(&guard);
        guard.end().expect("end");
        (t.elapsed(), flags)
    });
    assert_eq!(flags, SyncFlags::Read);
    assert!(SIGNALS.load(Ordering::Relaxed) > before + 3, "signals were delivered");
    assert!(waited >= delay - Duration::from_millis(60), "guard returned after {waited:?}");
}
