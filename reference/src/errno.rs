//! Errors as the kernel returns them.
//!
//! The model returns kernel errnos as data (`Result<T, Errno>`), never panics
//! for a failing operation: a failing syscall or GUP call is an outcome to be
//! compared with the kernel, not a bug.

use std::fmt;

/// A kernel errno, named and numbered as in `include/uapi/asm-generic/errno-base.h`.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Errno {
    /// Operation not permitted.
    EPERM,
    /// No such file or directory: an unknown GUP handle.
    ENOENT,
    /// No such process.
    ESRCH,
    /// Try again.
    EAGAIN,
    /// Out of memory.
    ENOMEM,
    /// Bad address: the GUP family's answer to unmapped or forbidden ranges.
    EFAULT,
    /// Device or resource busy.
    EBUSY,
    /// File exists: `MAP_FIXED_NOREPLACE` over an existing mapping.
    EEXIST,
    /// Invalid argument.
    EINVAL,
    /// Too many links: GUP's internal "must unshare" signal (never returned to callers).
    EMLINK,
    /// Operation not supported.
    EOPNOTSUPP,
    /// Any other errno, by number.
    Other(i32),
}

impl Errno {
    /// The errno's number.
    pub fn number(self) -> i32 {
        match self {
            Errno::EPERM => 1,
            Errno::ENOENT => 2,
            Errno::ESRCH => 3,
            Errno::EAGAIN => 11,
            Errno::ENOMEM => 12,
            Errno::EFAULT => 14,
            Errno::EBUSY => 16,
            Errno::EEXIST => 17,
            Errno::EINVAL => 22,
            Errno::EMLINK => 31,
            Errno::EOPNOTSUPP => 95,
            Errno::Other(n) => n,
        }
    }

    /// The errno for a number (positive, as in `errno`, or negative, as the kernel returns it).
    pub fn from_number(n: i32) -> Errno {
        match n.unsigned_abs() {
            1 => Errno::EPERM,
            2 => Errno::ENOENT,
            3 => Errno::ESRCH,
            11 => Errno::EAGAIN,
            12 => Errno::ENOMEM,
            14 => Errno::EFAULT,
            16 => Errno::EBUSY,
            17 => Errno::EEXIST,
            22 => Errno::EINVAL,
            31 => Errno::EMLINK,
            95 => Errno::EOPNOTSUPP,
            _ => Errno::Other(n.abs()),
        }
    }

    /// The kernel's name for it (`"EFAULT"`), or `"E<number>"`.
    pub fn name(self) -> String {
        match self {
            Errno::EPERM => "EPERM".into(),
            Errno::ENOENT => "ENOENT".into(),
            Errno::ESRCH => "ESRCH".into(),
            Errno::EAGAIN => "EAGAIN".into(),
            Errno::ENOMEM => "ENOMEM".into(),
            Errno::EFAULT => "EFAULT".into(),
            Errno::EBUSY => "EBUSY".into(),
            Errno::EEXIST => "EEXIST".into(),
            Errno::EINVAL => "EINVAL".into(),
            Errno::EMLINK => "EMLINK".into(),
            Errno::EOPNOTSUPP => "EOPNOTSUPP".into(),
            Errno::Other(n) => format!("E{n}"),
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl std::error::Error for Errno {}
