//! The interposed functions: each calls libc's own and logs what it did to dma-bufs.
//!
//! Every hook forwards at once when recording is off or the fd is not one the interposer
//! follows, so a program's other files cost one table look-up. `errno` is what libc's
//! function left. Variadic C functions (`open`, `ioctl`, `fcntl`) are defined with
//! their optional argument as a fixed one: on x86_64 and arm64 Linux a variadic argument
//! travels where a fixed one of its type would, and it is only passed on.

use std::ffi::{CStr, c_char, c_int, c_long, c_uint, c_ulong, c_void};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::faults::{self, BRACKET_NONE, BRACKET_READ, BRACKET_WRITE};
use crate::fds::{self, Kind};
use crate::ioctl::*;
use crate::log::{LOG_FD, Line, now};
use crate::real;

pub(crate) fn active() -> bool {
    LOG_FD.load(Ordering::Relaxed) >= 0
}

fn errno() -> c_int {
    // SAFETY: errno is thread-local and always readable.
    unsafe { *libc::__errno_location() }
}

fn set_errno(e: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = e };
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh id for a sync file or a device, unique across the processes of a run.
pub(crate) fn new_id() -> u64 {
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() } as u64;
    pid * 1_000_000 + NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Whether `fd` is a dma-buf (its file system is the dma-buf one), or the overhead
/// benchmark's stand-in for one: a memfd named `dmabuf-record-standin`, so the cost of
/// recording can be measured natively on a machine without dma-buf heaps (its sync
/// ioctls fail with `ENOTTY`, and are recorded all the same).
fn is_dmabuf(fd: c_int) -> bool {
    // SAFETY: a zeroed statfs is valid to fill.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is valid to write.
    if unsafe { libc::fstatfs(fd, &mut st) } != 0 {
        return false;
    }
    if st.f_type == DMA_BUF_MAGIC {
        return true;
    }
    if st.f_type != libc::TMPFS_MAGIC && st.f_type != 0x0102_1994 {
        return false;
    }
    let link = format!("/proc/self/fd/{fd}\0");
    let mut target = [0u8; 64];
    // SAFETY: `link` is NUL-terminated and `target` is writable.
    let n = unsafe { libc::readlink(link.as_ptr().cast(), target.as_mut_ptr().cast(), target.len()) };
    n > 0 && target[..n as usize].starts_with(b"/memfd:dmabuf-record-standin")
}

/// Reads up to `buf.len()` bytes of a small file (`/proc`), returning the length.
fn read_small(path: &CStr, buf: &mut [u8]) -> usize {
    // SAFETY: `path` is NUL-terminated.
    let fd = unsafe { real::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC, 0) };
    if fd < 0 {
        return 0;
    }
    let mut n = 0;
    while n < buf.len() {
        // SAFETY: the range is inside `buf`.
        let r = unsafe { real::read(fd, buf[n..].as_mut_ptr().cast(), buf.len() - n) };
        if r <= 0 {
            break;
        }
        n += r as usize;
    }
    // SAFETY: `fd` is ours.
    unsafe { real::close(fd) };
    n
}

/// The dma-buf's exporter, from `/proc/self/fdinfo/FD` (`exp_name:`).
fn exporter(fd: c_int, out: &mut [u8; 64]) -> usize {
    let path = format!("/proc/self/fdinfo/{fd}\0");
    let mut buf = [0u8; 1024];
    let n = read_small(CStr::from_bytes_with_nul(path.as_bytes()).unwrap_or(c"/"), &mut buf);
    let text = &buf[..n];
    let Some(at) = text.windows(9).position(|w| w == b"exp_name:") else { return 0 };
    let rest = &text[at + 9..];
    let rest = &rest[rest.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(rest.len())..];
    let len = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len()).min(out.len());
    out[..len].copy_from_slice(&rest[..len]);
    len
}

/// Records that `fd` is a dma-buf (logging it with how it came: `from` a heap, udmabuf,
/// a V4L2 or DRM export, ..., through device `dev`, in a call that began at `t`),
/// returning its inode.
pub(crate) fn adopt_fd(fd: c_int, from: &str, dev: u64, t: u64) -> u64 {
    // SAFETY: a zeroed stat is valid to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is valid to write.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return 0;
    }
    let mut exp = [0u8; 64];
    let n = exporter(fd, &mut exp);
    fds::set(fd, Kind::DmaBuf, st.st_ino);
    Line::new(t, "dmabuf")
        .int("fd", fd as i64)
        .num("ino", st.st_ino)
        .num("size", st.st_size as u64)
        .text("exp", &exp[..n])
        .text("from", from.as_bytes())
        .num("dev", dev)
        .num("end", now())
        .emit();
    st.st_ino
}

// --- brackets, per buffer, whether mapped or not ------------------------------------------

const BRACKETS: usize = 256;
#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
/// (inode << 8 | bracket bits) per entry; 0 is free.
static BRACKET_TABLE: [AtomicU64; BRACKETS] = [ZERO; BRACKETS];

pub(crate) fn bracket_of(ino: u64) -> u32 {
    BRACKET_TABLE
        .iter()
        .map(|e| e.load(Ordering::Relaxed))
        .find(|w| *w != 0 && w >> 8 == ino)
        .map_or(BRACKET_NONE, |w| (w & 0xff) as u32)
}

pub(crate) fn set_bracket_of(ino: u64, b: u32) {
    let w = (ino << 8) | u64::from(b);
    for e in &BRACKET_TABLE {
        let cur = e.load(Ordering::Relaxed);
        if cur != 0 && cur >> 8 == ino {
            e.store(if b == BRACKET_NONE { 0 } else { w }, Ordering::Relaxed);
            return;
        }
    }
    if b != BRACKET_NONE {
        for e in &BRACKET_TABLE {
            if e.compare_exchange(0, w, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                return;
            }
        }
    }
}

// --- open and close -----------------------------------------------------------------------

fn classify(fd: c_int, path: *const c_char) {
    if fd < 0 || !active() || path.is_null() {
        return;
    }
    // SAFETY: the program passed a NUL-terminated path that open accepted.
    let p = unsafe { CStr::from_ptr(path) }.to_bytes();
    if !(p.starts_with(b"/dev/") || p.starts_with(b"/sys/kernel/debug/") || !p.starts_with(b"/")) {
        return;
    }
    let link = format!("/proc/self/fd/{fd}\0");
    let mut real_path = [0u8; 256];
    // SAFETY: `link` is NUL-terminated and `real_path` is writable.
    let n = unsafe { libc::readlink(link.as_ptr().cast(), real_path.as_mut_ptr().cast(), real_path.len()) };
    if n <= 0 {
        return;
    }
    let rp = &real_path[..n as usize];
    let kind = if rp.starts_with(b"/dev/dma_heap/") {
        Kind::Heap
    } else if rp == b"/dev/udmabuf" {
        Kind::Udmabuf
    } else if rp.starts_with(b"/dev/video") {
        Kind::V4l2
    } else if rp.starts_with(b"/dev/dri/") {
        Kind::Drm
    } else if rp.ends_with(b"/sync/sw_sync") {
        Kind::SwSync
    } else {
        return;
    };
    let id = new_id();
    fds::set(fd, kind, id);
    if kind == Kind::Drm && rp.starts_with(b"/dev/dri/") {
        crate::decode::note_drm(fd, id);
    }
    let mut driver = [0u8; 32];
    let dlen = if kind == Kind::Drm { crate::decode::drm_driver(fd, &mut driver) } else { 0 };
    let name = match kind {
        Kind::Heap => "heap",
        Kind::Udmabuf => "udmabuf",
        Kind::V4l2 => "v4l2",
        Kind::Drm => "drm",
        _ => "sw_sync",
    };
    Line::new(now(), "open")
        .int("fd", fd as i64)
        .text("kind", name.as_bytes())
        .num("dev", id)
        .text("path", rp)
        .text("driver", &driver[..dlen])
        .emit();
}

macro_rules! open_hook {
    ($name:ident ( $($arg:ident : $ty:ty),* ) path=$path:ident) => {
        /// Interposed: classifies the device or dma-buf the program opens.
        ///
        /// # Safety
        ///
        /// As libc's.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> c_int {
            // SAFETY: forwarded as called.
            let fd = unsafe { real::$name($($arg),*) };
            let e = errno();
            classify(fd, $path);
            set_errno(e);
            fd
        }
    };
}
open_hook!(open(path: *const c_char, flags: c_int, mode: c_uint) path = path);
open_hook!(open64(path: *const c_char, flags: c_int, mode: c_uint) path = path);
open_hook!(openat(dirfd: c_int, path: *const c_char, flags: c_int, mode: c_uint) path = path);
open_hook!(openat64(dirfd: c_int, path: *const c_char, flags: c_int, mode: c_uint) path = path);
open_hook!(__open_2(path: *const c_char, flags: c_int) path = path);
open_hook!(__open64_2(path: *const c_char, flags: c_int) path = path);

/// Interposed: logs the close of a followed fd; the log itself is never closed.
///
/// # Safety
///
/// As libc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    let (kind, id) = fds::get(fd);
    if kind == Kind::Log {
        return 0;
    }
    let t = now();
    // SAFETY: forwarded as called.
    let r = unsafe { real::close(fd) };
    let e = errno();
    if kind != Kind::Other && r == 0 {
        fds::clear(fd);
        Line::new(t, "close").int("fd", fd as i64).text("kind", name_of(kind)).num("id", id).num("end", now()).emit();
    }
    set_errno(e);
    r
}

pub(crate) fn name_of(k: Kind) -> &'static [u8] {
    match k {
        Kind::DmaBuf => b"dmabuf",
        Kind::SyncFile => b"sync_file",
        Kind::Heap => b"heap",
        Kind::Udmabuf => b"udmabuf",
        Kind::V4l2 => b"v4l2",
        Kind::Drm => b"drm",
        Kind::SwSync => b"sw_sync",
        Kind::Log => b"log",
        Kind::Other => b"other",
    }
}

fn copied(old: c_int, new: c_int) {
    if new < 0 {
        return;
    }
    let (kind, id) = fds::get(old);
    let kind = if kind == Kind::Log { Kind::Other } else { kind };
    fds::set(new, kind, id);
    if kind != Kind::Other {
        Line::new(now(), "dup").int("fd", old as i64).int("new", new as i64).text("kind", name_of(kind)).emit();
    }
}

/// Before `dup2`/`dup3` over the log: move the log out of the way.
fn spare_log(new: c_int) {
    if fds::get(new).0 == Kind::Log {
        // SAFETY: duplicating our own log fd to a free fd at or above 900.
        let moved = unsafe { real::fcntl(new, libc::F_DUPFD, 900) };
        if moved >= 0 {
            fds::set(moved, Kind::Log, 0);
            LOG_FD.store(moved, Ordering::Relaxed);
            fds::clear(new);
        }
    }
}

/// Interposed: a copy of a followed fd is followed too.
///
/// # Safety
///
/// As libc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    // SAFETY: forwarded as called.
    let r = unsafe { real::dup(fd) };
    let e = errno();
    copied(fd, r);
    set_errno(e);
    r
}

/// Interposed: as [`dup`]; the log is moved away from `new` first.
///
/// # Safety
///
/// As libc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup2(fd: c_int, new: c_int) -> c_int {
    spare_log(new);
    // SAFETY: forwarded as called.
    let r = unsafe { real::dup2(fd, new) };
    let e = errno();
    if r >= 0 && fd != new {
        copied(fd, r);
    }
    set_errno(e);
    r
}

/// Interposed: as [`dup2`].
///
/// # Safety
///
/// As libc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup3(fd: c_int, new: c_int, flags: c_int) -> c_int {
    spare_log(new);
    // SAFETY: forwarded as called.
    let r = unsafe { real::dup3(fd, new, flags) };
    let e = errno();
    copied(fd, r);
    set_errno(e);
    r
}

/// Interposed: `F_DUPFD` and `F_DUPFD_CLOEXEC` copy a followed fd.
///
/// # Safety
///
/// As libc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: c_long) -> c_int {
    // SAFETY: forwarded as called.
    let r = unsafe { real::fcntl(fd, cmd, arg) };
    if cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC {
        let e = errno();
        copied(fd, r);
        set_errno(e);
    }
    r
}

/// Interposed: as [`fcntl`].
///
/// # Safety
///
/// As libc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: c_long) -> c_int {
    // SAFETY: forwarded as called.
    let r = unsafe { real::fcntl64(fd, cmd, arg) };
    if cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC {
        let e = errno();
        copied(fd, r);
        set_errno(e);
    }
    r
}

// --- mmap -------------------------------------------------------------------------------

fn mapped(p: *mut c_void, len: usize, prot: c_int, flags: c_int, fd: c_int, off: i64, t: u64) {
    if p == libc::MAP_FAILED || fd < 0 || flags & libc::MAP_SHARED == 0 || !active() {
        return;
    }
    let (kind, mut ino) = fds::get(fd);
    if kind != Kind::DmaBuf {
        if kind != Kind::Other || !is_dmabuf(fd) {
            return;
        }
        ino = adopt_fd(fd, "found", 0, now());
    }
    let slot = faults::add(p as usize, len, ino, off as u64, prot, bracket_of(ino));
    Line::new(t, "mmap")
        .int("fd", fd as i64)
        .num("ino", ino)
        .hexnum("addr", p as u64)
        .num("len", len as u64)
        .num("off", off as u64)
        .num("prot", prot as u64)
        .num("tracked", u64::from(slot.is_some()))
        .num("end", now())
        .emit();
}

/// Interposed: a shared mapping of a dma-buf is tracked, its pages closed.
///
/// # Safety
///
/// As libc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mmap(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> *mut c_void {
    let t = now();
    // SAFETY: forwarded as called.
    let p = unsafe { real::mmap(addr, len, prot, flags, fd, off) };
    if fd >= 0 {
        let e = errno();
        mapped(p, len, prot, flags, fd, off, t);
        set_errno(e);
    }
    p
}

/// Interposed: as [`mmap`].
///
/// # Safety
///
/// As libc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mmap64(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> *mut c_void {
    let t = now();
    // SAFETY: forwarded as called.
    let p = unsafe { real::mmap64(addr, len, prot, flags, fd, off) };
    if fd >= 0 {
        let e = errno();
        mapped(p, len, prot, flags, fd, off, t);
        set_errno(e);
    }
    p
}

/// Interposed: unmapping a tracked mapping logs what was touched and the unmap.
///
/// # Safety
///
/// As libc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: usize) -> c_int {
    let mut gone = [(0u64, 0u64, 0usize); 4];
    let n = if active() { faults::remove(addr as usize, len, &mut gone) } else { 0 };
    let t = now();
    // SAFETY: forwarded as called.
    let r = unsafe { real::munmap(addr, len) };
    let e = errno();
    for (ino, off, l) in &gone[..n] {
        Line::new(t, "munmap")
            .num("ino", *ino)
            .hexnum("addr", addr as u64)
            .num("off", *off)
            .num("len", *l as u64)
            .num("end", now())
            .emit();
    }
    set_errno(e);
    r
}

// --- ioctl ------------------------------------------------------------------------------

/// Interposed: decodes the ioctls of dma-bufs, sync files and the devices followed.
///
/// # Safety
///
/// As libc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioctl(fd: c_int, req: c_ulong, arg: *mut c_void) -> c_int {
    let (mut kind, mut id) = fds::get(fd);
    if kind == Kind::Other && active() && ty(req) == b'b' && is_dmabuf(fd) {
        id = adopt_fd(fd, "found", 0, now());
        kind = Kind::DmaBuf;
    }
    if kind == Kind::Other || kind == Kind::Log || !active() {
        // SAFETY: forwarded as called.
        return unsafe { real::ioctl(fd, req, arg) };
    }
    // SAFETY: the argument is the one the program passed for this request.
    unsafe { crate::decode::ioctl(fd, kind, id, req, arg) }
}

// --- poll -------------------------------------------------------------------------------

fn polled(fds_: *const libc::pollfd, n: libc::nfds_t, r: c_int, t: u64) {
    if fds_.is_null() || !active() {
        return;
    }
    // SAFETY: the program passed `n` pollfds.
    let set = unsafe { std::slice::from_raw_parts(fds_, n as usize) };
    let mut any = false;
    for p in set {
        let (kind, id) = fds::get(p.fd);
        if kind != Kind::DmaBuf && kind != Kind::SyncFile {
            continue;
        }
        any = true;
        Line::new(t, "poll")
            .int("fd", p.fd as i64)
            .text("kind", name_of(kind))
            .num("id", id)
            .hexnum("events", p.events as u16 as u64)
            .hexnum("revents", if r > 0 { p.revents as u16 as u64 } else { 0 })
            .int("ret", r as i64)
            .num("end", now())
            .emit();
    }
    if any {
        faults::event(None, None, t);
    }
}

/// Interposed: a wait on a dma-buf or a sync file is logged with what it returned.
///
/// # Safety
///
/// As libc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn poll(fds_: *mut libc::pollfd, n: libc::nfds_t, timeout: c_int) -> c_int {
    let t = now();
    // SAFETY: forwarded as called.
    let r = unsafe { real::poll(fds_, n, timeout) };
    let e = errno();
    polled(fds_, n, r, t);
    set_errno(e);
    r
}

/// Interposed: as [`poll`].
///
/// # Safety
///
/// As libc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ppoll(
    fds_: *mut libc::pollfd,
    n: libc::nfds_t,
    ts: *const libc::timespec,
    mask: *const libc::sigset_t,
) -> c_int {
    let t = now();
    // SAFETY: forwarded as called.
    let r = unsafe { real::ppoll(fds_, n, ts, mask) };
    let e = errno();
    polled(fds_, n, r, t);
    set_errno(e);
    r
}

// --- fds over Unix sockets ----------------------------------------------------------------

/// The fds of the `SCM_RIGHTS` messages of `msg`.
fn rights(msg: *const libc::msghdr, f: &mut dyn FnMut(c_int)) {
    if msg.is_null() {
        return;
    }
    // SAFETY: `msg` is a valid msghdr whose control buffer the kernel or the program
    // filled; the CMSG macros stay inside it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c) as *const c_int;
                let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<c_int>();
                for i in 0..count {
                    f(data.add(i).read_unaligned());
                }
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
}

/// Interposed: dma-bufs and sync files sent over a Unix socket are noted.
///
/// # Safety
///
/// As libc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> isize {
    if !msg.is_null() {
        // SAFETY: the program passed a valid msghdr.
        let (iov, n) = unsafe { ((*msg).msg_iov, (*msg).msg_iovlen as c_int) };
        crate::copies::iovecs(iov, n, false);
    }
    // SAFETY: forwarded as called.
    let r = unsafe { real::sendmsg(fd, msg, flags) };
    if r >= 0 && active() {
        let e = errno();
        rights(msg, &mut |f| {
            let (kind, id) = fds::get(f);
            if kind == Kind::DmaBuf || kind == Kind::SyncFile {
                Line::new(now(), "scm_rights")
                    .text("dir", b"send")
                    .int("fd", f as i64)
                    .text("kind", name_of(kind))
                    .num("id", id)
                    .emit();
            }
        });
        set_errno(e);
    }
    r
}

/// Interposed: dma-bufs received over a Unix socket are followed from then on.
///
/// # Safety
///
/// As libc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> isize {
    if !msg.is_null() {
        // SAFETY: the program passed a valid msghdr.
        let (iov, n) = unsafe { ((*msg).msg_iov, (*msg).msg_iovlen as c_int) };
        crate::copies::iovecs(iov, n, true);
    }
    // SAFETY: forwarded as called.
    let r = unsafe { real::recvmsg(fd, msg, flags) };
    if r >= 0 && active() {
        let e = errno();
        rights(msg, &mut |f| {
            if is_dmabuf(f) {
                let ino = adopt_fd(f, "recv", 0, now());
                Line::new(now(), "scm_rights")
                    .text("dir", b"recv")
                    .int("fd", f as i64)
                    .text("kind", b"dmabuf")
                    .num("id", ino)
                    .emit();
            }
        });
        set_errno(e);
    }
    r
}

// --- processes, signals, libraries -------------------------------------------------------

/// Interposed: notes whether the new program will be recorded (its environment still
/// preloads the interposer).
///
/// # Safety
///
/// As libc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execve(path: *const c_char, argv: *const *const c_char, envp: *const *const c_char) -> c_int {
    if active() && !path.is_null() {
        let mut recorded = false;
        let mut e = envp;
        // SAFETY: `envp` is a NULL-terminated array of C strings.
        unsafe {
            while !e.is_null() && !(*e).is_null() {
                let s = CStr::from_ptr(*e).to_bytes();
                if s.starts_with(b"LD_PRELOAD=") && s.windows(13).any(|w| w == b"dmabuf_record") {
                    recorded = true;
                }
                e = e.add(1);
            }
        }
        // SAFETY: `path` is NUL-terminated.
        let p = unsafe { CStr::from_ptr(path) }.to_bytes();
        Line::new(now(), "exec").text("path", p).num("recorded", u64::from(recorded)).emit();
    }
    // SAFETY: forwarded as called.
    unsafe { real::execve(path, argv, envp) }
}

/// Interposed: the program's own `SIGSEGV` handler is kept for faults that are not the
/// interposer's, instead of replacing the interposer's.
///
/// # Safety
///
/// As libc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigaction(sig: c_int, act: *const libc::sigaction, old: *mut libc::sigaction) -> c_int {
    if sig != libc::SIGSEGV || !active() {
        // SAFETY: forwarded as called.
        return unsafe { real::sigaction(sig, act, old) };
    }
    // SAFETY: PROGRAM_ACTION is the program's action, read and written here and in the
    // handler (which only reads it once PROGRAM_ACTION_SET says it is whole).
    unsafe {
        let cur = &raw mut faults::PROGRAM_ACTION;
        if !old.is_null() {
            *old = *cur;
        }
        if !act.is_null() {
            faults::PROGRAM_ACTION_SET.store(0, Ordering::Release);
            *cur = *act;
            faults::PROGRAM_ACTION_SET.store(1, Ordering::Release);
        }
    }
    0
}

/// Interposed: as [`sigaction`], for `signal(SIGSEGV, ...)`.
///
/// # Safety
///
/// As libc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    if sig != libc::SIGSEGV || !active() {
        // SAFETY: forwarded as called.
        return unsafe { real::signal(sig, handler) };
    }
    // SAFETY: a zeroed sigaction is valid; as in `sigaction`.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = handler;
        act.sa_flags = libc::SA_RESTART;
        let mut old: libc::sigaction = std::mem::zeroed();
        sigaction(sig, &act, &mut old);
        old.sa_sigaction
    }
}

/// Interposed: a library loaded later is logged, so its addresses can be symbolized.
///
/// # Safety
///
/// As libc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlopen(path: *const c_char, flags: c_int) -> *mut c_void {
    // SAFETY: forwarded as called.
    let h = unsafe { real::dlopen(path, flags) };
    if !h.is_null() && active() {
        let e = errno();
        crate::log_modules();
        set_errno(e);
    }
    h
}

/// The `SYNC` flags' bracket bits.
pub fn bracket_bits(flags: u64) -> u32 {
    (if flags & SYNC_READ != 0 { BRACKET_READ } else { 0 }) | (if flags & SYNC_WRITE != 0 { BRACKET_WRITE } else { 0 })
}
