//! A program for `dmabuf record`'s own tests on a machine without dma-buf heaps: memfds
//! named `dmabuf-record-standin` (which the interposer treats as dma-bufs; their sync
//! ioctls fail with `ENOTTY` and are recorded all the same) mapped and touched the ways
//! a real program touches a dma-buf, through libc:
//!
//! 1. a WRITE bracket around a fill of the first buffer's 4 pages;
//! 2. a read of its page 1 outside any bracket (a misuse, in `peek`);
//! 3. a `write(2)` of its page 2 to /dev/null outside any bracket (the kernel's read);
//! 4. a second thread writing the second buffer's page 0 inside a READ bracket;
//! 5. a forked child writing the second buffer's page 1 outside any bracket, which the
//!    parent then reads outside any bracket.
//!
//! It prints what it read, so a test can compare a recorded run with a plain one.

use std::ffi::c_void;

const PAGE: usize = 4096;
const LEN: usize = 4 * PAGE;

fn standin() -> (i32, *mut u8) {
    // SAFETY: plain libc calls on a fresh memfd; the mapping is LEN bytes, shared.
    unsafe {
        let fd = libc::memfd_create(c"dmabuf-record-standin".as_ptr(), libc::MFD_CLOEXEC);
        assert!(fd >= 0 && libc::ftruncate(fd, LEN as i64) == 0);
        let p = libc::mmap(std::ptr::null_mut(), LEN, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0);
        assert_ne!(p, libc::MAP_FAILED);
        (fd, p.cast())
    }
}

/// `DMA_BUF_IOCTL_SYNC` (fails on a memfd; the interposer records it before the call).
fn sync(fd: i32, flags: u64) {
    let s = flags;
    // SAFETY: the ioctl reads one u64.
    unsafe { libc::ioctl(fd, 0x4008_6200, &s) };
}

#[inline(never)]
fn peek(p: *const u8) -> u8 {
    // SAFETY: `p` is inside the mapping.
    unsafe { std::ptr::read_volatile(p) }
}

fn main() {
    let (a, pa) = standin();
    let (b, pb) = standin();
    sync(a, 2); // START | WRITE
    // SAFETY: the mapping is LEN bytes.
    unsafe { std::ptr::write_bytes(pa, 7, LEN) };
    sync(a, 6); // END | WRITE
    let v = peek(pa.wrapping_add(PAGE));
    // SAFETY: /dev/null takes the mapping's third page.
    let n = unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        libc::write(null, pa.wrapping_add(2 * PAGE) as *const c_void, PAGE)
    };
    let pb_addr = pb as usize;
    std::thread::spawn(move || {
        sync(b, 1); // START | READ
        // SAFETY: the mapping is LEN bytes.
        unsafe { std::ptr::write_volatile(pb_addr as *mut u8, 9) };
        sync(b, 5); // END | READ
    })
    .join()
    .unwrap();
    // SAFETY: fork in a program whose other thread has ended; the child only writes
    // its mapping and exits.
    unsafe {
        let child = libc::fork();
        if child == 0 {
            std::ptr::write_volatile(pb.wrapping_add(PAGE), 3);
            libc::_exit(0);
        }
        let mut status = 0;
        libc::waitpid(child, &mut status, 0);
    }
    println!("standin: read {v}, wrote {n} bytes to /dev/null, the child wrote {}", peek(pb.wrapping_add(PAGE)));
}
