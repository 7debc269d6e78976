//! [`Errno`]: the error numbers the kernel answers with, named as in the kernel.

use std::fmt;
use std::num::NonZeroU16;

/// An error number as the kernel returns it (positive, in `1..=4095`, the kernel's
/// `MAX_ERRNO`): what a failed syscall leaves in `errno`, and what a fence is signalled
/// with (`dma_fence.error`, stored negated).
///
/// Both backends report it: the Linux backend passes the kernel's answer through, the
/// simulated one gives the number the kernel returns for the same refusal, so a program
/// checks `EINVAL` or `ENOMEM` the same way on both.
///
/// The named constants are the generic numbering of `include/uapi/asm-generic/errno-base.h`
/// and `errno.h`, which every architecture but alpha, mips, parisc and sparc uses; the
/// numbers up to 34 (`ERANGE`) are the same everywhere.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Errno(NonZeroU16);

/// The errnos with names: (number, name, what libc's `strerror` says).
const NAMES: &[(u16, &str, &str)] = &[
    (1, "EPERM", "Operation not permitted"),
    (2, "ENOENT", "No such file or directory"),
    (4, "EINTR", "Interrupted system call"),
    (5, "EIO", "Input/output error"),
    (6, "ENXIO", "No such device or address"),
    (7, "E2BIG", "Argument list too long"),
    (9, "EBADF", "Bad file descriptor"),
    (11, "EAGAIN", "Resource temporarily unavailable"),
    (12, "ENOMEM", "Cannot allocate memory"),
    (13, "EACCES", "Permission denied"),
    (14, "EFAULT", "Bad address"),
    (16, "EBUSY", "Device or resource busy"),
    (17, "EEXIST", "File exists"),
    (19, "ENODEV", "No such device"),
    (20, "ENOTDIR", "Not a directory"),
    (22, "EINVAL", "Invalid argument"),
    (23, "ENFILE", "Too many open files in system"),
    (24, "EMFILE", "Too many open files"),
    (25, "ENOTTY", "Inappropriate ioctl for device"),
    (27, "EFBIG", "File too large"),
    (28, "ENOSPC", "No space left on device"),
    (29, "ESPIPE", "Illegal seek"),
    (34, "ERANGE", "Numerical result out of range"),
    (35, "EDEADLK", "Resource deadlock avoided"),
    (38, "ENOSYS", "Function not implemented"),
    (62, "ETIME", "Timer expired"),
    (75, "EOVERFLOW", "Value too large for defined data type"),
    (77, "EBADFD", "File descriptor in bad state"),
    (95, "EOPNOTSUPP", "Operation not supported"),
    (110, "ETIMEDOUT", "Connection timed out"),
    (125, "ECANCELED", "Operation canceled"),
];

impl Errno {
    /// `EPERM`: a seal forbids the change (`F_ADD_SEALS` after `F_SEAL_SEAL`, a write
    /// through a write-sealed memfd).
    pub const EPERM: Errno = Errno::known(1);
    /// `ENOENT`: no such file (a heap that does not exist); also what `sw_sync` signals
    /// pending fences with when their timeline closes.
    pub const ENOENT: Errno = Errno::known(2);
    /// `EINTR`: a signal interrupted a blocking call.
    pub const EINTR: Errno = Errno::known(4);
    /// `EIO`: the generic device failure.
    pub const EIO: Errno = Errno::known(5);
    /// `ENXIO`: no such device or address (a read past the end of a file).
    pub const ENXIO: Errno = Errno::known(6);
    /// `EBADF`: not an open file descriptor.
    pub const EBADF: Errno = Errno::known(9);
    /// `EAGAIN`: try again.
    pub const EAGAIN: Errno = Errno::known(11);
    /// `ENOMEM`: the allocation could not be satisfied.
    pub const ENOMEM: Errno = Errno::known(12);
    /// `EACCES`: the file's access mode forbids it (mapping a write-only fd).
    pub const EACCES: Errno = Errno::known(13);
    /// `EFAULT`: a bad address.
    pub const EFAULT: Errno = Errno::known(14);
    /// `EBUSY`: in use (a conflicting fence, a pinned buffer).
    pub const EBUSY: Errno = Errno::known(16);
    /// `ENODEV`: the device went away, or has no such capability.
    pub const ENODEV: Errno = Errno::known(19);
    /// `EINVAL`: an argument the kernel refuses.
    pub const EINVAL: Errno = Errno::known(22);
    /// `ENOTTY`: the file does not know the ioctl.
    pub const ENOTTY: Errno = Errno::known(25);
    /// `ENOSPC`: no room left.
    pub const ENOSPC: Errno = Errno::known(28);
    /// `EDEADLK`: a wait that can be proven never to complete.
    pub const EDEADLK: Errno = Errno::known(35);
    /// `ETIME`: a fence wait timed out.
    pub const ETIME: Errno = Errno::known(62);
    /// `EBADFD`: the fd is of the wrong kind (udmabuf given a file that is not a memfd).
    pub const EBADFD: Errno = Errno::known(77);
    /// `ETIMEDOUT`: a job hung and was killed (what GPU schedulers set on a fence).
    pub const ETIMEDOUT: Errno = Errno::known(110);
    /// `ECANCELED`: the work was cancelled before it ran.
    pub const ECANCELED: Errno = Errno::known(125);

    /// The largest errno the kernel accepts (`MAX_ERRNO`).
    pub const MAX: i32 = 4095;

    const fn known(code: u16) -> Errno {
        match NonZeroU16::new(code) {
            Some(code) => Errno(code),
            None => panic!("errno constants are non-zero"),
        }
    }

    /// An errno from its positive value; `None` outside `1..=4095`.
    pub fn new(code: i32) -> Option<Errno> {
        if (1..=Self::MAX).contains(&code) {
            u16::try_from(code).ok().and_then(NonZeroU16::new).map(Errno)
        } else {
            None
        }
    }

    /// An errno from the kernel's negative form (`-EIO`); `None` unless in `-4095..=-1`.
    pub fn from_negative(code: i32) -> Option<Errno> {
        code.checked_neg().and_then(Errno::new)
    }

    /// The positive errno value.
    pub fn get(self) -> i32 {
        i32::from(self.0.get())
    }

    /// The kernel's negative form, as `dma_fence_get_status` reports it.
    pub fn to_negative(self) -> i32 {
        -self.get()
    }

    fn entry(self) -> Option<(&'static str, &'static str)> {
        NAMES.iter().find(|(n, _, _)| *n == self.0.get()).map(|&(_, name, text)| (name, text))
    }

    /// The kernel's name (`EINVAL`), when it is one of the named errnos.
    pub fn name(self) -> Option<&'static str> {
        self.entry().map(|(name, _)| name)
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "Errno({})", self.get()),
        }
    }
}

/// `EINVAL (Invalid argument)`: the kernel's name, then what libc says; `errno 133` for a
/// number without a name here.
impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.entry() {
            Some((name, text)) => write!(f, "{name} ({text})"),
            None => write!(f, "errno {}", self.get()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_keep_the_kernels_range() {
        assert_eq!(Errno::new(22), Some(Errno::EINVAL));
        assert_eq!(Errno::new(0), None);
        assert_eq!(Errno::new(4096), None);
        assert_eq!(Errno::new(-5), None);
        assert_eq!(Errno::from_negative(-5), Some(Errno::EIO));
        assert_eq!(Errno::from_negative(i32::MIN), None);
        assert_eq!(Errno::ENOMEM.to_negative(), -12);
    }

    #[test]
    fn errnos_show_the_kernels_name_and_libcs_words() {
        assert_eq!(Errno::EINVAL.to_string(), "EINVAL (Invalid argument)");
        assert_eq!(format!("{:?}", Errno::EBADFD), "EBADFD");
        assert_eq!(Errno::EBADFD.get(), 77);
        assert_eq!(Errno::new(133).map(|e| e.to_string()).as_deref(), Some("errno 133"));
        assert_eq!(Errno::new(133).map(|e| format!("{e:?}")).as_deref(), Some("Errno(133)"));
    }

    #[test]
    fn every_named_errno_is_listed_once() {
        for (i, (n, name, _)) in NAMES.iter().enumerate() {
            assert!(NAMES[i + 1..].iter().all(|(m, other, _)| m != n && other != name), "{name}");
            assert!(name.starts_with('E'));
        }
        for e in [Errno::EPERM, Errno::EAGAIN, Errno::ENOTTY, Errno::ETIMEDOUT, Errno::ECANCELED] {
            assert!(e.name().is_some(), "{e:?}");
        }
    }
}
