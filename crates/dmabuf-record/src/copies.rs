//! The system calls that copy between a dma-buf mapping and a file or socket: `read`,
//! `write`, their positioned and vector forms, `send`, `recv` (and `sendmsg`/`recvmsg`
//! in [`crate::hooks`]), `fread` and `fwrite`.
//!
//! The kernel's `copy_from_user` on a closed page fails the call with `EFAULT` instead of
//! raising a signal, so each hook opens the pages it is given first, seeing them as the
//! CPU access they are (a `write(2)` from a mapping is a CPU read of it), then calls
//! libc's function.

use std::ffi::{c_int, c_void};

use crate::faults;
use crate::hooks::active;
use crate::real;

/// The kernel will access the iovecs' bytes (`write`: it writes them, a read(2)).
pub(crate) fn iovecs(iov: *const libc::iovec, cnt: c_int, write: bool) {
    if iov.is_null() || cnt <= 0 || !active() {
        return;
    }
    // SAFETY: the program passed `cnt` iovecs.
    for v in unsafe { std::slice::from_raw_parts(iov, cnt as usize) } {
        faults::kernel_access(v.iov_base as usize, v.iov_len, write);
    }
}

macro_rules! io_hook {
    ($name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty, $buf:ident, $len:expr, $kernel_writes:expr) => {
        /// Interposed: the pages of a dma-buf mapping the kernel will copy to or from are
        /// opened first (seen as the CPU access they are), as a closed page would fail
        /// the call with `EFAULT`.
        ///
        /// # Safety
        ///
        /// As libc's.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            if active() {
                faults::kernel_access($buf as usize, $len, $kernel_writes);
            }
            // SAFETY: forwarded as called.
            unsafe { real::$name($($arg),*) }
        }
    };
}
io_hook!(read(fd: c_int, buf: *mut c_void, n: usize) -> isize, buf, n, true);
io_hook!(write(fd: c_int, buf: *const c_void, n: usize) -> isize, buf, n, false);
io_hook!(pread(fd: c_int, buf: *mut c_void, n: usize, off: i64) -> isize, buf, n, true);
io_hook!(pread64(fd: c_int, buf: *mut c_void, n: usize, off: i64) -> isize, buf, n, true);
io_hook!(pwrite(fd: c_int, buf: *const c_void, n: usize, off: i64) -> isize, buf, n, false);
io_hook!(pwrite64(fd: c_int, buf: *const c_void, n: usize, off: i64) -> isize, buf, n, false);
io_hook!(recv(fd: c_int, buf: *mut c_void, n: usize, flags: c_int) -> isize, buf, n, true);
io_hook!(send(fd: c_int, buf: *const c_void, n: usize, flags: c_int) -> isize, buf, n, false);
io_hook!(recvfrom(fd: c_int, buf: *mut c_void, n: usize, flags: c_int, addr: *mut libc::sockaddr, alen: *mut libc::socklen_t) -> isize, buf, n, true);
io_hook!(sendto(fd: c_int, buf: *const c_void, n: usize, flags: c_int, addr: *const libc::sockaddr, alen: libc::socklen_t) -> isize, buf, n, false);
io_hook!(fread(buf: *mut c_void, size: usize, n: usize, f: *mut libc::FILE) -> usize, buf, size.saturating_mul(n), true);
io_hook!(fwrite(buf: *const c_void, size: usize, n: usize, f: *mut libc::FILE) -> usize, buf, size.saturating_mul(n), false);

macro_rules! iov_hook {
    ($name:ident ( $($arg:ident : $ty:ty),* ), $iov:ident, $cnt:ident, $kernel_writes:expr) => {
        /// Interposed: as [`read`], for each iovec.
        ///
        /// # Safety
        ///
        /// As libc's.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> isize {
            iovecs($iov, $cnt, $kernel_writes);
            // SAFETY: forwarded as called.
            unsafe { real::$name($($arg),*) }
        }
    };
}
iov_hook!(readv(fd: c_int, iov: *const libc::iovec, cnt: c_int), iov, cnt, true);
iov_hook!(writev(fd: c_int, iov: *const libc::iovec, cnt: c_int), iov, cnt, false);
iov_hook!(preadv(fd: c_int, iov: *const libc::iovec, cnt: c_int, off: i64), iov, cnt, true);
iov_hook!(pwritev(fd: c_int, iov: *const libc::iovec, cnt: c_int, off: i64), iov, cnt, false);
