//! CPU accesses to dma-buf mappings, seen by page protection.
//!
//! Every mapping of a dma-buf is kept `PROT_NONE` except the pages the program has
//! touched since the buffer's last event (a sync ioctl, a queue or dequeue, a wait). The
//! first touch of a page faults; the `SIGSEGV` handler notes the page (read or write,
//! from the page-fault error code in the ucontext) and opens it, read-only for a read
//! (so a later write faults again and is seen) and read-write for a write, then returns:
//! the access is retried and goes on, and the program runs to its end with its normal
//! output. Each event of a buffer closes its pages again, so every kind of access to a
//! page between two events of its buffer is seen at least once, which is all a scenario
//! can say (its steps are ordered by those events). This is why the handler needs no
//! single-stepping: a page stays open until the next event of its buffer.
//!
//! Inside a sync bracket a touch is recorded in the mapping's page map (first toucher's
//! thread, read and write bits) and summarised at the bracket's end; outside a bracket,
//! or a write in a READ bracket, is a misuse logged at once with the faulting thread and
//! a backtrace of raw return addresses (`dmabuf record` symbolizes them afterwards).
//!
//! The handler is async-signal-safe: it reads fixed tables of atomics, calls only
//! `mprotect`, `clock_gettime`, `gettid` and `write` (system calls) and libgcc's
//! `_Unwind_Backtrace`, and keeps its line on its own stack. The unwinder takes no lock
//! that a thread faulting on a data access can hold (it is called from program code
//! touching a buffer, never from inside the loader or the unwinder), and it allocates
//! nothing for objects with an `.eh_frame_hdr`; it is called once at start so that its
//! lazy binding is done outside any handler.
//!
//! Races it accepts: two threads faulting on one page each open it (the wider
//! protection wins after at most one more fault), and a touch racing with the event that
//! closes its buffer may be counted on either side of the event.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicI32, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::log::{Line, now, tid};

/// Mappings tracked at once.
pub const SLOTS: usize = 256;
/// Pages tracked per mapping (64 MiB); a longer mapping is tracked in its first part
/// and its other pages are opened whole at first touch.
pub const SLOT_PAGES: usize = 16384;
/// The page size the protection works with.
pub const PAGE: usize = 4096;

/// No bracket is open.
pub const BRACKET_NONE: u32 = 0;
/// `DMA_BUF_SYNC_READ`.
pub const BRACKET_READ: u32 = 1;
/// `DMA_BUF_SYNC_WRITE`.
pub const BRACKET_WRITE: u32 = 2;

/// A page map entry: read seen.
pub const TOUCH_READ: u8 = 1;
/// A page map entry: write seen.
pub const TOUCH_WRITE: u8 = 2;

/// One tracked mapping. `start == 0` is a free slot.
pub struct Slot {
    /// First byte.
    pub start: AtomicUsize,
    /// Length in bytes.
    pub len: AtomicUsize,
    /// The dma-buf's inode.
    pub ino: AtomicU64,
    /// Offset of the mapping in the buffer.
    pub offset: AtomicU64,
    /// The protection the program asked for (the most a page is opened to).
    pub prot: AtomicI32,
    /// The open bracket's `BRACKET_*` bits.
    pub bracket: AtomicU32,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_SLOT: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    ino: AtomicU64::new(0),
    offset: AtomicU64::new(0),
    prot: AtomicI32::new(0),
    bracket: AtomicU32::new(0),
};
/// The tracked mappings.
pub static MAPS: [Slot; SLOTS] = [EMPTY_SLOT; SLOTS];
/// How many slots are live (0: every hook's check is one load).
static LIVE: AtomicUsize = AtomicUsize::new(0);

#[allow(clippy::declare_interior_mutable_const)]
const ZERO8: AtomicU8 = AtomicU8::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const ZERO32: AtomicU32 = AtomicU32::new(0);
/// Per slot, per page: `TOUCH_*` bits since the last event.
static TOUCH: [AtomicU8; SLOTS * SLOT_PAGES] = [ZERO8; SLOTS * SLOT_PAGES];
/// Per slot, per page: the first thread that touched it since the last event.
static TOUCHER: [AtomicU32; SLOTS * SLOT_PAGES] = [ZERO32; SLOTS * SLOT_PAGES];

/// The program's own `SIGSEGV` action, run for faults that are not ours.
// SAFETY: an all-zero sigaction is SIG_DFL with no flags and an empty mask.
pub static mut PROGRAM_ACTION: libc::sigaction = unsafe { std::mem::zeroed() };
/// Whether [`PROGRAM_ACTION`] is set (1) or default (0).
pub static PROGRAM_ACTION_SET: AtomicU32 = AtomicU32::new(0);

/// `mprotect` as a raw system call (the interposer's own symbol table is never involved).
fn protect(addr: usize, len: usize, prot: c_int) {
    // SAFETY: `addr..addr+len` lies in a mapping the interposer tracks; changing its
    // protection changes no memory.
    unsafe { libc::syscall(libc::SYS_mprotect, addr, len, prot) };
}

/// Starts tracking a new mapping (its pages closed). Returns the slot, or None if full.
pub fn add(start: usize, len: usize, ino: u64, offset: u64, prot: c_int, bracket: u32) -> Option<usize> {
    for (i, s) in MAPS.iter().enumerate() {
        if s.start.compare_exchange(0, usize::MAX, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            s.len.store(len, Ordering::Relaxed);
            s.ino.store(ino, Ordering::Relaxed);
            s.offset.store(offset, Ordering::Relaxed);
            s.prot.store(prot, Ordering::Relaxed);
            s.bracket.store(bracket, Ordering::Relaxed);
            clear_touches(i);
            s.start.store(start, Ordering::Release);
            LIVE.fetch_add(1, Ordering::Relaxed);
            protect(start, len, libc::PROT_NONE);
            return Some(i);
        }
    }
    None
}

fn live(s: &Slot) -> bool {
    let st = s.start.load(Ordering::Acquire);
    st != 0 && st != usize::MAX
}

fn clear_touches(i: usize) {
    for p in 0..SLOT_PAGES {
        if TOUCH[i * SLOT_PAGES + p].load(Ordering::Relaxed) != 0 {
            TOUCH[i * SLOT_PAGES + p].store(0, Ordering::Relaxed);
            TOUCHER[i * SLOT_PAGES + p].store(0, Ordering::Relaxed);
        }
    }
}

/// Stops tracking the mappings overlapping `[addr, addr+len)`; returns their slots'
/// (inode, offset, length) after summarising their touches.
pub fn remove(addr: usize, len: usize, out: &mut [(u64, u64, usize)]) -> usize {
    let mut n = 0;
    for (i, s) in MAPS.iter().enumerate() {
        if !live(s) {
            continue;
        }
        let st = s.start.load(Ordering::Acquire);
        let l = s.len.load(Ordering::Relaxed);
        if st < addr + len && addr < st + l {
            summarise(i, now());
            if n < out.len() {
                out[n] = (s.ino.load(Ordering::Relaxed), s.offset.load(Ordering::Relaxed), l);
                n += 1;
            }
            s.start.store(0, Ordering::Release);
            LIVE.fetch_sub(1, Ordering::Relaxed);
        }
    }
    n
}

/// Logs the pages of slot `i` touched since the last event, as runs of pages with one
/// toucher and one kind of access, and forgets them.
fn summarise(i: usize, t: u64) {
    let s = &MAPS[i];
    let len = s.len.load(Ordering::Relaxed);
    let pages = len.div_ceil(PAGE).min(SLOT_PAGES);
    let ino = s.ino.load(Ordering::Relaxed);
    let base = s.offset.load(Ordering::Relaxed);
    let mut p = 0;
    while p < pages {
        let bits = TOUCH[i * SLOT_PAGES + p].load(Ordering::Relaxed);
        if bits == 0 {
            p += 1;
            continue;
        }
        let who = TOUCHER[i * SLOT_PAGES + p].load(Ordering::Relaxed);
        let first = p;
        while p < pages
            && TOUCH[i * SLOT_PAGES + p].load(Ordering::Relaxed) == bits
            && TOUCHER[i * SLOT_PAGES + p].load(Ordering::Relaxed) == who
        {
            TOUCH[i * SLOT_PAGES + p].store(0, Ordering::Relaxed);
            TOUCHER[i * SLOT_PAGES + p].store(0, Ordering::Relaxed);
            p += 1;
        }
        let end = (p * PAGE).min(len);
        Line::new(t.saturating_sub(1), "touch")
            .num("ino", ino)
            .num("off", base + (first * PAGE) as u64)
            .num("len", (end - first * PAGE) as u64)
            .num("r", u64::from(bits & TOUCH_READ != 0))
            .num("w", u64::from(bits & TOUCH_WRITE != 0))
            .num("thread", u64::from(who))
            .emit();
    }
}

/// An event of buffer `ino` (or of every buffer, for `None`) at time `t`: log what was
/// touched since the last one (stamped just before `t`), set the bracket (`Some(bits)`)
/// or leave it, and close the pages.
pub fn event(ino: Option<u64>, bracket: Option<u32>, t: u64) {
    for (i, s) in MAPS.iter().enumerate() {
        if !live(s) || ino.is_some_and(|b| b != s.ino.load(Ordering::Relaxed)) {
            continue;
        }
        summarise(i, t);
        if let Some(b) = bracket {
            s.bracket.store(b, Ordering::Release);
        }
        protect(s.start.load(Ordering::Relaxed), s.len.load(Ordering::Relaxed), libc::PROT_NONE);
    }
}

const FRAMES: usize = 32;

struct Trace {
    ips: [usize; FRAMES],
    n: usize,
}

#[repr(C)]
struct UnwindContext {
    _private: [u8; 0],
}

type UnwindTraceFn = extern "C" fn(ctx: *mut UnwindContext, arg: *mut c_void) -> c_int;

unsafe extern "C" {
    fn _Unwind_Backtrace(trace: UnwindTraceFn, arg: *mut c_void) -> c_int;
    fn _Unwind_GetIP(ctx: *mut UnwindContext) -> usize;
}

extern "C" fn one_frame(ctx: *mut UnwindContext, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Trace` that `backtrace` passed in.
    let t = unsafe { &mut *(arg as *mut Trace) };
    if t.n >= FRAMES {
        return 5; // _URC_END_OF_STACK
    }
    // SAFETY: `ctx` is the unwinder's context for this frame.
    t.ips[t.n] = unsafe { _Unwind_GetIP(ctx) };
    t.n += 1;
    0 // _URC_NO_REASON
}

/// The return addresses of the calling thread, innermost first.
pub fn backtrace(out: &mut [usize; FRAMES]) -> usize {
    let mut t = Trace { ips: [0; FRAMES], n: 0 };
    // SAFETY: `one_frame` only writes into `t`, which outlives the call.
    unsafe { _Unwind_Backtrace(one_frame, (&mut t as *mut Trace).cast()) };
    *out = t.ips;
    t.n
}

/// Logs a misuse with the calling thread's backtrace: `what` happened at time `t` and
/// instruction `ip` (0: the caller) on buffer `ino` at offset `off`.
pub fn misuse(t: u64, what: &str, ino: u64, off: u64, write: bool, ip: usize) {
    let mut ips = [0usize; FRAMES];
    let n = backtrace(&mut ips);
    // Drop the interposer's own frames (and the signal trampoline) before the program's.
    let skip = ips[..n].iter().position(|&a| a == ip || a == ip + 1).unwrap_or(0);
    let mut bt = [0usize; FRAMES];
    bt[0] = ip;
    let mut k = 1;
    for &a in &ips[(skip + 1).min(n)..n] {
        if k < FRAMES {
            bt[k] = a;
            k += 1;
        }
    }
    let bt = if ip == 0 { &ips[..n] } else { &bt[..k] };
    Line::new(t, "misuse")
        .text("what", what.as_bytes())
        .num("ino", ino)
        .num("off", off)
        .num("w", u64::from(write))
        .list("bt", bt)
        .emit();
}

/// Installs the handler. Called once, at start.
pub fn install() {
    let mut ips = [0usize; FRAMES];
    backtrace(&mut ips); // binds the unwinder now, outside any handler
    // SAFETY: a zeroed sigaction is valid; we fill in the handler and flags.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = on_segv as *const () as usize;
    sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
    // SAFETY: `sa` is a valid action; the old one is kept for faults not ours.
    unsafe {
        libc::sigemptyset(&mut sa.sa_mask);
        let old = &raw mut PROGRAM_ACTION;
        crate::real::sigaction(libc::SIGSEGV, &sa, old);
        if (*old).sa_sigaction != libc::SIG_DFL {
            PROGRAM_ACTION_SET.store(1, Ordering::Release);
        }
    }
}

/// The x86_64 page-fault error code's write bit (`X86_PF_WRITE`).
#[cfg(target_arch = "x86_64")]
fn is_write(uc: *mut c_void) -> (bool, usize) {
    // SAFETY: the kernel passes a ucontext_t to an SA_SIGINFO handler.
    let uc = unsafe { &*(uc as *const libc::ucontext_t) };
    let err = uc.uc_mcontext.gregs[libc::REG_ERR as usize] as u64;
    (err & 2 != 0, uc.uc_mcontext.gregs[libc::REG_RIP as usize] as usize)
}

/// arm64: the ESR's WnR bit, from the `esr_context` record in `__reserved`.
#[cfg(target_arch = "aarch64")]
fn is_write(uc: *mut c_void) -> (bool, usize) {
    // SAFETY: the kernel passes a ucontext_t to an SA_SIGINFO handler; its reserved area
    // is a list of (magic, size) records ending with a zero magic.
    unsafe {
        let uc = &*(uc as *const libc::ucontext_t);
        let pc = uc.uc_mcontext.pc as usize;
        let base = uc.uc_mcontext.__reserved.as_ptr() as *const u8;
        let mut off = 0usize;
        while off + 8 <= uc.uc_mcontext.__reserved.len() * 16 {
            let magic = (base.add(off) as *const u32).read_unaligned();
            let size = (base.add(off + 4) as *const u32).read_unaligned() as usize;
            if magic == 0 || size == 0 {
                break;
            }
            if magic == 0x4553_5201 {
                let esr = (base.add(off + 8) as *const u64).read_unaligned();
                return (esr & (1 << 6) != 0, pc);
            }
            off += size;
        }
        (false, pc)
    }
}

extern "C" fn on_segv(sig: c_int, info: *mut libc::siginfo_t, uc: *mut c_void) {
    // SAFETY: reading and restoring errno is async-signal-safe.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: the kernel passes a valid siginfo for SIGSEGV.
    let addr = unsafe { (*info).si_addr() } as usize;
    let handled = handle(addr, uc);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
    if !handled {
        not_ours(sig, info, uc);
    }
}

/// The slot of the tracked mapping holding `addr`.
fn slot_of(addr: usize) -> Option<usize> {
    MAPS.iter().position(|s| {
        let st = s.start.load(Ordering::Acquire);
        st != 0 && st != usize::MAX && addr >= st && addr < st + s.len.load(Ordering::Relaxed)
    })
}

/// The kernel is about to read (`write` false: a `write(2)` from the buffer) or write
/// (`write` true: a `read(2)` into it) `[addr, addr+len)` for the program. A
/// `copy_from_user` on a closed page fails the call with `EFAULT` instead of raising a
/// signal, so the pages are opened here, each seen as the CPU access it is, at the
/// caller's instruction (`ip` 0).
pub fn kernel_access(addr: usize, len: usize, write: bool) {
    if len == 0 || LIVE.load(Ordering::Relaxed) == 0 {
        return;
    }
    let t = now();
    let mut a = addr & !(PAGE - 1);
    while a < addr + len {
        if let Some(i) = slot_of(a) {
            touch(i, a, write, 0, t);
        }
        a += PAGE;
    }
}

fn handle(addr: usize, uc: *mut c_void) -> bool {
    // When it happened, before the unwinder's time is spent.
    let t = now();
    let Some(i) = slot_of(addr) else {
        return false;
    };
    let (write, ip) = is_write(uc);
    touch(i, addr, write, ip, t)
}

/// An access to `addr` in slot `i`: noted, logged if a misuse, and its page opened.
/// False if the program's own protection forbids it.
fn touch(i: usize, addr: usize, write: bool, ip: usize, t: u64) -> bool {
    let s = &MAPS[i];
    let prot = s.prot.load(Ordering::Relaxed);
    if (write && prot & libc::PROT_WRITE == 0) || prot & libc::PROT_READ == 0 {
        return false; // the program's own protection forbids it: its fault, not ours
    }
    let start = s.start.load(Ordering::Relaxed);
    let page = (addr - start) / PAGE;
    let off = s.offset.load(Ordering::Relaxed) + (page * PAGE) as u64;
    let ino = s.ino.load(Ordering::Relaxed);
    let bracket = s.bracket.load(Ordering::Acquire);
    if bracket == BRACKET_NONE {
        misuse(t, "outside", ino, off, write, ip);
    } else if write && bracket & BRACKET_WRITE == 0 {
        misuse(t, "write_in_read", ino, off, write, ip);
    }
    if bracket != BRACKET_NONE && page < SLOT_PAGES {
        let k = i * SLOT_PAGES + page;
        let _ = TOUCHER[k].compare_exchange(0, tid() as u32, Ordering::Relaxed, Ordering::Relaxed);
        TOUCH[k].fetch_or(if write { TOUCH_WRITE } else { TOUCH_READ }, Ordering::Relaxed);
    }
    let (from, len) = if page < SLOT_PAGES {
        (start + page * PAGE, PAGE)
    } else {
        (start + SLOT_PAGES * PAGE, s.len.load(Ordering::Relaxed) - SLOT_PAGES * PAGE)
    };
    let open = if write { libc::PROT_READ | libc::PROT_WRITE } else { libc::PROT_READ };
    protect(from, len, open & prot);
    true
}

/// A fault not on a tracked page: the program's handler runs, or the default action.
fn not_ours(sig: c_int, info: *mut libc::siginfo_t, uc: *mut c_void) {
    if PROGRAM_ACTION_SET.load(Ordering::Acquire) == 1 {
        // SAFETY: PROGRAM_ACTION is only written before PROGRAM_ACTION_SET is set.
        let act = unsafe { (&raw const PROGRAM_ACTION).read() };
        let h = act.sa_sigaction;
        if h != libc::SIG_DFL && h != libc::SIG_IGN {
            if act.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the program installed this SA_SIGINFO handler for SIGSEGV.
                let f: extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) = unsafe { std::mem::transmute(h) };
                f(sig, info, uc);
            } else {
                // SAFETY: the program installed this plain handler for SIGSEGV.
                let f: extern "C" fn(c_int) = unsafe { std::mem::transmute(h) };
                f(sig);
            }
            return;
        }
    }
    // Default action: restore it and return; the access faults again and kills.
    // SAFETY: a zeroed sigaction is SIG_DFL with no flags.
    let dfl: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: sigaction is async-signal-safe; resolved at start by `install`.
    unsafe { crate::real::sigaction(libc::SIGSEGV, &dfl, std::ptr::null_mut()) };
}
