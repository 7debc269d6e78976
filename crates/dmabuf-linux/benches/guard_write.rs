//! The cost of the guarded mapping: a `write()` guard around a fill of 4 KiB and of 4 MiB
//! (SYNC_START|WRITE, memset, SYNC_END|WRITE) against the same ioctl sequence written with
//! raw `libc::ioctl` calls on a raw `mmap`, in the same run. Target: within 1.05x.
//!
//! Needs a system heap (and vgem, for a device attached to the buffers so that the sync
//! ioctls do their real work); `ci/kernel-tests.sh --bench` runs it in a booted kernel.
//! Counts: `GUARD_WRITE_ROUNDS` (default 21) rounds of alternating batches.

use std::hint::black_box;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use dmabuf_linux::vgem::Vgem;
use dmabuf_linux::{DmaBuf, Heaps};

/// `DMA_BUF_IOCTL_SYNC` as the C header spells it: `_IOW('b', 0, struct dma_buf_sync)`.
const DMA_BUF_IOCTL_SYNC: libc::c_ulong = 0x4008_6200;
const DMA_BUF_SYNC_WRITE: u64 = 2;
const DMA_BUF_SYNC_END: u64 = 4;

/// The raw sequence: what a C program would write.
struct Raw {
    fd: libc::c_int,
    ptr: *mut u8,
    len: usize,
}

impl Raw {
    fn new(buf: &DmaBuf) -> Raw {
        let fd = buf.as_fd().as_raw_fd();
        let len = buf.size();
        // SAFETY: a fresh shared mapping of a dma-buf of `len` bytes, chosen by the kernel.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        assert_ne!(ptr, libc::MAP_FAILED, "mmap");
        Raw { fd, ptr: ptr.cast(), len }
    }

    fn sync(&self, flags: u64) {
        let arg = flags;
        loop {
            // SAFETY: DMA_BUF_IOCTL_SYNC reads one u64 of flags from the pointer.
            let r = unsafe { libc::ioctl(self.fd, DMA_BUF_IOCTL_SYNC, &arg as *const u64) };
            if r == 0 {
                return;
            }
            let e = std::io::Error::last_os_error().raw_os_error();
            assert!(matches!(e, Some(libc::EINTR | libc::EAGAIN)), "sync: {e:?}");
        }
    }

    fn write(&self, value: u8) {
        self.sync(DMA_BUF_SYNC_WRITE);
        // SAFETY: `ptr` maps `len` writable bytes that nothing else references.
        unsafe { std::ptr::write_bytes(self.ptr, value, self.len) };
        self.sync(DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE);
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer used.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn per_iter(d: Duration, n: u32) -> f64 {
    d.as_secs_f64() * 1e6 / f64::from(n)
}

fn main() {
    let heap = match Heaps::new().open("system") {
        Ok(h) => h,
        Err(e) => {
            eprintln!("guard_write: {e}\nguard_write: needs a system heap: run ci/kernel-tests.sh --bench");
            std::process::exit(1);
        }
    };
    let rounds: usize = std::env::var("GUARD_WRITE_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(21);
    let vgem = Vgem::open().ok();
    if vgem.is_none() {
        println!("guard_write: no vgem: buffers have no attached device");
    }
    let mut worst: f64 = 0.0;
    for (label, size, iters) in [("4 KiB", 4096usize, 2000u32), ("4 MiB", 4 << 20, 20)] {
        // One buffer for both paths, so they write the same pages: the API's mapping and
        // a raw mapping of the same dma-buf (never used while a guard is alive).
        let buf = heap.allocate(size).expect("allocate");
        let _attached = vgem.as_ref().map(|v| v.import(&buf).expect("import"));
        let mut map = buf.mmap().expect("mmap");
        let raw = Raw::new(&buf);
        let mut api_batch = || {
            let t = Instant::now();
            for i in 0..iters {
                let mut g = map.write().expect("write guard");
                g.fill(black_box(i as u8));
                drop(g);
            }
            t.elapsed()
        };
        let raw_batch = || {
            let t = Instant::now();
            for i in 0..iters {
                raw.write(black_box(i as u8));
            }
            t.elapsed()
        };
        let (mut api_t, mut raw_t) = (Vec::new(), Vec::new());
        for round in 0..rounds + 1 {
            // Alternate which path goes first, so neither always follows the other.
            let (api, raw_d) = if round % 2 == 0 {
                let a = api_batch();
                (a, raw_batch())
            } else {
                let r = raw_batch();
                (api_batch(), r)
            };
            if round > 0 {
                // Round 0 warms caches and page tables.
                api_t.push(per_iter(api, iters));
                raw_t.push(per_iter(raw_d, iters));
            }
        }
        let (api, rawm) = (median(&mut api_t), median(&mut raw_t));
        let ratio = api / rawm;
        worst = worst.max(ratio);
        println!(
            "guard_write {label}: api {api:.2} us/write, raw {rawm:.2} us/write, ratio {ratio:.3} (median of {rounds} rounds x {iters})"
        );
    }
    println!(
        "guard_write: worst ratio {worst:.3} (target <= 1.05): {}",
        if worst <= 1.05 { "within target" } else { "OVER target" }
    );
}
