//! Loud handling of faults the touch precheck did not predict.
//!
//! The runner and its children never take a SIGSEGV on purpose: a `Touch`
//! stops before a page the record (`exec::vmas`) says would fault. A
//! SIGSEGV or SIGBUS that still arrives is a kernel bug or an executor bug,
//! so the handler reports it as a crash: it writes one [`FaultRecord`] frame
//! to the process's upstream pipe (the caller's pipe for the runner, the
//! reply pipe for a child) and `_exit`s with [`FAULT_EXIT_CODE`]. It uses
//! only async-signal-safe calls (`getpid`, `write`, `_exit`) and runs on the
//! alternate signal stack that Rust's runtime installs, so a stack overflow
//! is reported too.

use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::Context;

use super::frame::FaultRecord;

/// Exit status of a process that took an unexpected fault.
pub const FAULT_EXIT_CODE: i32 = 86;

/// Where the handler writes its record (-1: nowhere, just exit).
static FAULT_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_fault(signo: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler;
    // si_addr is defined for SIGSEGV and SIGBUS, the only signals routed here.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as u64) };
    let record = FaultRecord {
        signo,
        code,
        addr,
        // SAFETY: getpid is async-signal-safe and has no preconditions.
        pid: unsafe { libc::getpid() },
    };
    let frame = record.into_frame();
    let fd = FAULT_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write is async-signal-safe; `frame` is a live stack array
        // of the given length. A frame of 25 bytes is below PIPE_BUF, so it
        // reaches the pipe whole or not at all; nothing can be done about
        // an error here.
        unsafe { libc::write(fd, frame.as_ptr().cast(), frame.len()) };
    }
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(FAULT_EXIT_CODE) };
}

/// Route SIGSEGV and SIGBUS of this process to the reporting handler.
/// Forked children inherit the disposition.
pub fn install(report_fd: i32) -> anyhow::Result<()> {
    set_report_fd(report_fd);
    for signo in [libc::SIGSEGV, libc::SIGBUS] {
        // SAFETY: an all-zero sigaction is a valid starting point; the
        // handler is an `extern "C"` function with the SA_SIGINFO signature
        // and only async-signal-safe calls.
        let rc = unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_fault as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(signo, &act, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("sigaction({signo}) for the fault handler"));
        }
    }
    Ok(())
}

/// Change where the handler writes (a child reports to the runner).
pub fn set_report_fd(fd: i32) {
    FAULT_FD.store(fd, Ordering::Relaxed);
}
