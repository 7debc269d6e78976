//! The functions the interposer wraps, as the next library (libc) defines them.

use std::ffi::{c_char, c_int, c_long, c_uint, c_ulong, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Resolves `name` (NUL-terminated) with `dlsym(RTLD_NEXT)`, once.
fn next(cache: &AtomicUsize, name: &[u8]) -> usize {
    let p = cache.load(Ordering::Acquire);
    if p != 0 {
        return p;
    }
    // SAFETY: `name` is NUL-terminated; RTLD_NEXT looks the symbol up after this library.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr().cast()) } as usize;
    if p == 0 {
        // Without libc's own function the program cannot go on as it would have.
        let msg = b"dmabuf-record: a libc function is missing\n";
        // SAFETY: writes a static message to stderr, then exits.
        unsafe {
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::_exit(127);
        }
    }
    cache.store(p, Ordering::Release);
    p
}

macro_rules! real {
    ($( $name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty; )*) => {
        $(
            #[doc = concat!("libc's `", stringify!($name), "`.")]
            ///
            /// # Safety
            ///
            /// As the libc function's.
            pub unsafe fn $name($($arg: $ty),*) -> $ret {
                static CACHE: AtomicUsize = AtomicUsize::new(0);
                let p = next(&CACHE, concat!(stringify!($name), "\0").as_bytes());
                // SAFETY: `p` is libc's definition of this very function, whose C
                // signature is the one declared here.
                let f: unsafe extern "C" fn($($ty),*) -> $ret = unsafe { std::mem::transmute(p) };
                // SAFETY: the caller upholds the function's contract.
                unsafe { f($($arg),*) }
            }
        )*
    };
}

real! {
    open(path: *const c_char, flags: c_int, mode: c_uint) -> c_int;
    open64(path: *const c_char, flags: c_int, mode: c_uint) -> c_int;
    openat(dirfd: c_int, path: *const c_char, flags: c_int, mode: c_uint) -> c_int;
    openat64(dirfd: c_int, path: *const c_char, flags: c_int, mode: c_uint) -> c_int;
    __open_2(path: *const c_char, flags: c_int) -> c_int;
    __open64_2(path: *const c_char, flags: c_int) -> c_int;
    close(fd: c_int) -> c_int;
    dup(fd: c_int) -> c_int;
    dup2(fd: c_int, new: c_int) -> c_int;
    dup3(fd: c_int, new: c_int, flags: c_int) -> c_int;
    fcntl(fd: c_int, cmd: c_int, arg: c_long) -> c_int;
    fcntl64(fd: c_int, cmd: c_int, arg: c_long) -> c_int;
    ioctl(fd: c_int, req: c_ulong, arg: *mut c_void) -> c_int;
    mmap(addr: *mut c_void, len: usize, prot: c_int, flags: c_int, fd: c_int, off: i64) -> *mut c_void;
    mmap64(addr: *mut c_void, len: usize, prot: c_int, flags: c_int, fd: c_int, off: i64) -> *mut c_void;
    munmap(addr: *mut c_void, len: usize) -> c_int;
    poll(fds: *mut libc::pollfd, n: libc::nfds_t, timeout: c_int) -> c_int;
    ppoll(fds: *mut libc::pollfd, n: libc::nfds_t, ts: *const libc::timespec, mask: *const libc::sigset_t) -> c_int;
    sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> isize;
    recvmsg(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> isize;
    execve(path: *const c_char, argv: *const *const c_char, envp: *const *const c_char) -> c_int;
    sigaction(sig: c_int, act: *const libc::sigaction, old: *mut libc::sigaction) -> c_int;
    signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t;
    dlopen(path: *const c_char, flags: c_int) -> *mut c_void;
    read(fd: c_int, buf: *mut c_void, n: usize) -> isize;
    write(fd: c_int, buf: *const c_void, n: usize) -> isize;
    pread(fd: c_int, buf: *mut c_void, n: usize, off: i64) -> isize;
    pread64(fd: c_int, buf: *mut c_void, n: usize, off: i64) -> isize;
    pwrite(fd: c_int, buf: *const c_void, n: usize, off: i64) -> isize;
    pwrite64(fd: c_int, buf: *const c_void, n: usize, off: i64) -> isize;
    readv(fd: c_int, iov: *const libc::iovec, cnt: c_int) -> isize;
    writev(fd: c_int, iov: *const libc::iovec, cnt: c_int) -> isize;
    preadv(fd: c_int, iov: *const libc::iovec, cnt: c_int, off: i64) -> isize;
    pwritev(fd: c_int, iov: *const libc::iovec, cnt: c_int, off: i64) -> isize;
    recv(fd: c_int, buf: *mut c_void, n: usize, flags: c_int) -> isize;
    send(fd: c_int, buf: *const c_void, n: usize, flags: c_int) -> isize;
    recvfrom(fd: c_int, buf: *mut c_void, n: usize, flags: c_int, addr: *mut libc::sockaddr, alen: *mut libc::socklen_t) -> isize;
    sendto(fd: c_int, buf: *const c_void, n: usize, flags: c_int, addr: *const libc::sockaddr, alen: libc::socklen_t) -> isize;
    fread(buf: *mut c_void, size: usize, n: usize, f: *mut libc::FILE) -> usize;
    fwrite(buf: *const c_void, size: usize, n: usize, f: *mut libc::FILE) -> usize;
}
