//! The event log: one line per event, written with one `write(2)` from a buffer on the
//! stack, so the signal handler can log too (no allocation, no lock).
//!
//! A line is `T PID TID VERB key=value...`: `T` is `CLOCK_MONOTONIC` in nanoseconds (the
//! clock of the kernel's trace with `trace_clock` set to `mono`, so the two can be
//! joined), values are decimal, `0x` hexadecimal, or text with bytes outside `!`..`~`
//! and `%` written as `%XX`. The log fd is a pipe to `dmabuf record` (writes of up to
//! `PIPE_BUF` bytes are atomic, so lines of threads and processes never interleave) or a
//! file opened with `O_APPEND`. The reader is `dmabuf_trace::log`.

use std::sync::atomic::{AtomicI32, Ordering};

/// The log's fd, or -1 when recording is off (the interposer then only forwards calls).
pub static LOG_FD: AtomicI32 = AtomicI32::new(-1);

/// Longest line: under `PIPE_BUF` (4096), so a line is written atomically.
const LINE_MAX: usize = 4000;

/// Nanoseconds of `CLOCK_MONOTONIC` (async-signal-safe: `clock_gettime` is on the list).
pub fn now() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

thread_local! {
    /// The thread's id, once asked. The interposer is loaded at start, so its
    /// thread-local block is in the static TLS area: reading it in a signal handler
    /// allocates nothing.
    static TID: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

/// The calling thread's id (a system call the first time in a thread, then cached).
pub fn tid() -> i32 {
    TID.with(|t| {
        if t.get() == 0 {
            // SAFETY: gettid takes no argument and cannot fail.
            t.set(unsafe { libc::syscall(libc::SYS_gettid) as i32 });
        }
        t.get()
    })
}

/// Forgets the cached thread id (a forked child's thread has a new one).
pub fn forget_tid() {
    TID.with(|t| t.set(0));
}

/// One line being built on the stack.
pub struct Line {
    buf: [u8; LINE_MAX],
    len: usize,
}

impl Line {
    /// A line for `verb` stamped `t`.
    pub fn new(t: u64, verb: &str) -> Line {
        let mut l = Line { buf: [0; LINE_MAX], len: 0 };
        l.dec(t);
        l.byte(b' ');
        // SAFETY: getpid cannot fail.
        l.dec(unsafe { libc::getpid() } as u64);
        l.byte(b' ');
        l.dec(tid() as u64);
        l.byte(b' ');
        l.raw(verb.as_bytes());
        l
    }

    fn byte(&mut self, b: u8) {
        if self.len < LINE_MAX - 1 {
            self.buf[self.len] = b;
            self.len += 1;
        }
    }

    fn raw(&mut self, s: &[u8]) {
        for &b in s {
            self.byte(b);
        }
    }

    fn dec(&mut self, mut v: u64) {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.raw(&tmp[i..]);
    }

    fn hex(&mut self, mut v: u64) {
        let mut tmp = [0u8; 16];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b"0123456789abcdef"[(v & 15) as usize];
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        self.raw(b"0x");
        self.raw(&tmp[i..]);
    }

    fn key(&mut self, k: &str) {
        self.byte(b' ');
        self.raw(k.as_bytes());
        self.byte(b'=');
    }

    /// ` k=DECIMAL`.
    pub fn num(mut self, k: &str, v: u64) -> Line {
        self.key(k);
        self.dec(v);
        self
    }

    /// ` k=-N` or ` k=N`.
    pub fn int(mut self, k: &str, v: i64) -> Line {
        self.key(k);
        if v < 0 {
            self.byte(b'-');
        }
        self.dec(v.unsigned_abs());
        self
    }

    /// ` k=0xHEX`.
    pub fn hexnum(mut self, k: &str, v: u64) -> Line {
        self.key(k);
        self.hex(v);
        self
    }

    /// ` k=TEXT`, escaped.
    pub fn text(mut self, k: &str, s: &[u8]) -> Line {
        self.key(k);
        if s.is_empty() {
            self.raw(b"%");
        }
        for &b in s {
            if (b'!'..=b'~').contains(&b) && b != b'%' {
                self.byte(b);
            } else {
                self.byte(b'%');
                self.byte(b"0123456789ABCDEF"[(b >> 4) as usize]);
                self.byte(b"0123456789ABCDEF"[(b & 15) as usize]);
            }
        }
        self
    }

    /// ` k=0xA,0xB,...`.
    pub fn list(mut self, k: &str, vs: &[usize]) -> Line {
        self.key(k);
        for (i, v) in vs.iter().enumerate() {
            if i > 0 {
                self.byte(b',');
            }
            self.hex(*v as u64);
        }
        self
    }

    /// Ends the line and writes it with one `write(2)`.
    pub fn emit(mut self) {
        let fd = LOG_FD.load(Ordering::Relaxed);
        if fd < 0 {
            return;
        }
        self.buf[self.len] = b'\n';
        self.len += 1;
        let mut off = 0;
        while off < self.len {
            // SAFETY: the range is inside `buf`; write(2) is async-signal-safe. A raw
            // system call: `write` itself is interposed.
            let n = unsafe { libc::syscall(libc::SYS_write, fd, self.buf[off..].as_ptr(), self.len - off) };
            if n < 0 {
                // SAFETY: reading errno is async-signal-safe.
                if unsafe { *libc::__errno_location() } == libc::EINTR {
                    continue;
                }
                return;
            }
            off += n as usize;
        }
    }
}
