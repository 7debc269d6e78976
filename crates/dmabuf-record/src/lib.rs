//! The interposer of `dmabuf record`: a library loaded into an unmodified, dynamically
//! linked program with `LD_PRELOAD` that logs what the program does with dma-bufs, for
//! `dmabuf record` to turn into a scenario that `dmabuf check` runs on a modelled board.
//!
//! It wraps libc's `open`, `close`, `dup*`, `fcntl`, `ioctl`, `mmap`, `munmap`, `poll`,
//! `sendmsg`, `recvmsg`, `execve`, `sigaction` and `dlopen` (module [`hooks`]), the calls
//! that copy between a mapping and a file (module [`copies`]), and
//! decodes the ioctls of dma-heaps, udmabuf, dma-bufs, sync files, sw_sync, V4L2
//! streaming and DRM PRIME with vgem's fences (modules [`ioctl`], [`decode`]); any other
//! ioctl on a followed fd is logged as opaque with its number. CPU accesses to dma-buf
//! mappings are seen by page protection (module [`faults`]). Every line goes to the log
//! fd that `dmabuf record` passes in `DMABUF_RECORD_FD` (module [`log`]); without it the
//! library only forwards calls. Forked children log to the same fd, and programs they
//! execute are recorded as long as their environment keeps `LD_PRELOAD`.
//!
//! What it cannot see: system calls made without libc (a statically linked program,
//! Go, Rust programs using rustix's raw Linux backend: build those with
//! `--cfg rustix_use_libc`), and `vfork` children before they exec. At exit it says
//! how many dma-buf mappings it found that it had not seen made.

#![deny(missing_docs)]

use std::ffi::{CStr, c_int, c_void};
use std::sync::atomic::Ordering;

pub mod copies;
pub mod decode;
pub mod faults;
pub mod fds;
pub mod hooks;
pub mod ioctl;
pub mod log;
pub mod real;

use log::{LOG_FD, Line, now};

/// Runs when the library is loaded: reads `DMABUF_RECORD_FD`, installs the fault
/// handler, logs the process, its modules and the dma-bufs it inherited.
extern "C" fn init() {
    // SAFETY: getenv in a constructor, before the program's threads exist.
    let v = unsafe { libc::getenv(c"DMABUF_RECORD_FD".as_ptr()) };
    if v.is_null() {
        return;
    }
    // SAFETY: getenv returned a NUL-terminated string.
    let Some(fd) = unsafe { CStr::from_ptr(v) }.to_str().ok().and_then(|s| s.parse::<c_int>().ok()) else {
        return;
    };
    // SAFETY: F_GETFD only asks whether `fd` is open.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return;
    }
    fds::set(fd, fds::Kind::Log, 0);
    LOG_FD.store(fd, Ordering::Relaxed);
    resolve_all();
    faults::install();
    // SAFETY: registers a plain function for the child side of fork.
    unsafe { libc::pthread_atfork(None, None, Some(after_fork)) };
    hello();
    log_modules();
    inherited();
}

#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = init;

/// Runs at exit: what was touched in brackets never ended is logged, and mappings the
/// interposer never saw made are counted.
extern "C" fn fini() {
    if LOG_FD.load(Ordering::Relaxed) < 0 {
        return;
    }
    let t = now();
    faults::event(None, None, t);
    Line::new(t, "exit").num("unseen_maps", unseen_maps()).emit();
}

#[used]
#[unsafe(link_section = ".fini_array")]
static FINI: extern "C" fn() = fini;

extern "C" fn after_fork() {
    log::forget_tid();
    hello();
}

/// Resolves every libc function now, so no handler ever runs `dlsym`.
fn resolve_all() {
    // SAFETY: each call is made with arguments that make it fail harmlessly (a bad fd,
    // a null pointer, an invalid signal) only to resolve the symbol.
    unsafe {
        real::close(-1);
        real::dup(-1);
        real::dup2(-1, -1);
        real::dup3(-1, -1, 0);
        real::fcntl(-1, libc::F_GETFD, 0);
        real::fcntl64(-1, libc::F_GETFD, 0);
        real::ioctl(-1, 0, std::ptr::null_mut());
        real::mmap(std::ptr::null_mut(), 0, 0, 0, -1, 0);
        real::mmap64(std::ptr::null_mut(), 0, 0, 0, -1, 0);
        real::munmap(std::ptr::null_mut(), 0);
        real::poll(std::ptr::null_mut(), 0, 0);
        real::sigaction(-1, std::ptr::null(), std::ptr::null_mut());
        real::sendmsg(-1, std::ptr::null(), 0);
        real::recvmsg(-1, std::ptr::null_mut(), 0);
    }
}

fn hello() {
    let mut exe = [0u8; 512];
    // SAFETY: the path is NUL-terminated and `exe` is writable.
    let n = unsafe { libc::readlink(c"/proc/self/exe".as_ptr(), exe.as_mut_ptr().cast(), exe.len()) };
    // SAFETY: getppid cannot fail.
    let ppid = unsafe { libc::getppid() };
    Line::new(now(), "hello").num("ppid", ppid as u64).text("exe", &exe[..n.max(0) as usize]).emit();
}

/// Logs every loaded object's name and load bias, for symbolizing backtraces.
pub fn log_modules() {
    extern "C" fn one(info: *mut libc::dl_phdr_info, _size: usize, _data: *mut c_void) -> c_int {
        // SAFETY: dl_iterate_phdr passes a valid info whose name is NUL-terminated.
        let (name, base) = unsafe {
            let i = &*info;
            let name = if i.dlpi_name.is_null() { &b""[..] } else { CStr::from_ptr(i.dlpi_name).to_bytes() };
            (name, i.dlpi_addr)
        };
        if name.is_empty() {
            let mut exe = [0u8; 512];
            // SAFETY: as in `hello`.
            let n = unsafe { libc::readlink(c"/proc/self/exe".as_ptr(), exe.as_mut_ptr().cast(), exe.len()) };
            Line::new(now(), "module").hexnum("base", base).text("path", &exe[..n.max(0) as usize]).emit();
        } else {
            Line::new(now(), "module").hexnum("base", base).text("path", name).emit();
        }
        0
    }
    // SAFETY: `one` only reads what it is given.
    unsafe { libc::dl_iterate_phdr(Some(one), std::ptr::null_mut()) };
}

/// Dma-bufs open at start (inherited across exec, or from the parent).
fn inherited() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return };
    let fds: Vec<c_int> = dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    for fd in fds {
        if fds::get(fd).0 == fds::Kind::Other {
            // SAFETY: a zeroed statfs is valid to fill.
            let mut st: libc::statfs = unsafe { std::mem::zeroed() };
            // SAFETY: `st` is valid to write.
            if unsafe { libc::fstatfs(fd, &mut st) } == 0 && st.f_type == ioctl::DMA_BUF_MAGIC {
                hooks::adopt_fd(fd, "inherit", 0, now());
            }
        }
    }
}

/// Dma-buf mappings in `/proc/self/maps` the interposer does not track.
fn unseen_maps() -> u64 {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else { return 0 };
    maps.lines()
        .filter(|l| l.contains("/dmabuf:") || l.ends_with("dmabuf:"))
        .filter(|l| {
            // Opened pages split a tracked mapping into several lines.
            let start = l.split('-').next().and_then(|s| usize::from_str_radix(s, 16).ok()).unwrap_or(0);
            !faults::MAPS.iter().any(|s| {
                let st = s.start.load(Ordering::Relaxed);
                st != 0 && start >= st && start < st + s.len.load(Ordering::Relaxed)
            })
        })
        .count() as u64
}
