//! The QEMU guest: initramfs, QEMU command line, console parsing, and the
//! supervised [`Guest`] that runs programs on a real kernel.
//!
//! Contract: [`Guest::boot`] turns a provisioned kernel
//! ([`crate::kernel::KernelSpec`]) and [`GuestOptions`] into a running
//! guest whose agent answered `Hello`; [`Guest::run_program`] runs one
//! program and always reports how it ended, restarting the guest after
//! any kernel incident or crash (see `guest`).

pub mod accel;
pub mod agent_bin;
pub mod console;
pub mod cpio;
pub mod guest;
pub mod initramfs;
pub mod qemu;
pub mod smoke;

pub use accel::Accel;
pub use console::{CrashKind, CrashReport};
pub use guest::{BootTimes, Guest, GuestOptions, GuestRun, RunEnd};
