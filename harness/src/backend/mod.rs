//! Backends: the two systems a program runs on.
//!
//! The model backend ([`model`]) runs a program on `reference::Model` in
//! this process; the kernel backends run it on a real kernel, in a QEMU
//! guest (`crate::vm`) or natively (`crate::exec`). Both produce a
//! [`crate::obs::Trace`] in the same format; the oracle compares them.

pub mod model;

pub use model::{ModelExec, ModelRun, run_model};
