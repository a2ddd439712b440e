//! Host-side glue for the kernel-differential fuzz targets (cargo-fuzz
//! `diff`, AFL++ `diff`): one guest per fuzzer process, booted once and kept
//! across inputs, and the model's states as extra fuzzer feedback.
//!
//! Why the fuzzer lives on the host and not in the guest:
//! - **Speed.** The guest runs under TCG here (no usable KVM): every guest
//!   instruction is emulated, 10–50× slower than the host. The fuzzer's own
//!   work (mutation, corpus, coverage maps) and the model and comparison run
//!   at host speed; only the program itself runs in the guest.
//! - **Coverage that means something.** Edge coverage of an in-guest fuzzer
//!   would be coverage of the executor, not of the kernel (the guest kernel
//!   has no KCOV). On the host, libFuzzer and AFL++ see the edges of the
//!   *model*, whose branches mirror the kernel's (small vs large folio, COW
//!   vs shared, pinned vs not), plus the model-state signature
//!   ([`feedback`]).
//! - **Surviving the kernel.** A kernel crash kills the guest, not the
//!   fuzzer: the host records the finding (with the console excerpt) before
//!   anything else happens and a fresh guest boots for the next input. An
//!   in-guest fuzzer would lose its corpus and its state with the kernel.
//!
//! The targets call [`init`] (libFuzzer: in the target's `init` block;
//! AFL++: nothing, the guest boots at the first input inside the forked
//! child), [`run_input`] per input, and [`shutdown`] when the fuzzer's loop
//! ends. Configuration comes from environment variables ([`config`]).

pub mod config;
pub mod feedback;
pub mod session;
pub mod sweep;

use std::sync::Mutex;

pub use config::FrontConfig;
pub use session::{InputVerdict, Session};

/// The process's session: one guest, booted at most once per process
/// unless a crash or incident needs a fresh one.
static SESSION: Mutex<Option<Session>> = Mutex::new(None);

/// Boot the guest now (libFuzzer's init block), so that the first input is
/// not charged a boot. `engine` names the front end in reports
/// (`cargo-fuzz diff`, `afl diff`). On failure it prints why and exits with
/// status 2: a guest that cannot boot is the host's problem, not a finding.
pub fn init(engine: &str) {
    let mut slot = SESSION.lock().unwrap_or_else(|p| p.into_inner());
    if slot.is_none() {
        *slot = Some(start(engine));
    }
}

/// libFuzzer ends with `exit()` (`-max_total_time`, `-runs`): C `atexit`
/// handlers run, Rust destructors of statics do not. Power the guest off
/// there, so that its directory is removed and the final statistics print.
extern "C" fn at_exit() {
    // `try_lock`: an exit from inside a run (the lock is held) must not
    // deadlock; the guest then dies with the process (PR_SET_PDEATHSIG) and
    // the next session's sweep removes its directory.
    if let Ok(mut slot) = SESSION.try_lock()
        && let Some(mut s) = slot.take()
    {
        s.finish();
    }
}

/// Run one fuzzer input differentially (booting the guest first if
/// [`init`] was not called). Returns whether to keep the input and its
/// model-state features.
///
/// # Panics
/// On a finding (divergence, guest crash or hang, kernel incident, failed
/// reset check, a program the agent could not run): the finding is first
/// recorded in the findings store, the guest powered off, and the panic
/// message holds the title, the program text and where the finding was
/// written. Poisoned and disturbed runs never panic.
pub fn run_input(engine: &str, data: &[u8]) -> InputVerdict {
    let mut slot = SESSION.lock().unwrap_or_else(|p| p.into_inner());
    let session = slot.get_or_insert_with(|| start(engine));
    match session.run(data) {
        Ok(session::Ran::Done(verdict)) => verdict,
        Ok(session::Ran::Finding(message)) => {
            // Power the guest off and remove its directory before the panic
            // aborts the process (fuzzers abort on panic: no destructors).
            if let Some(mut s) = slot.take() {
                s.finish();
            }
            drop(slot);
            panic!("{message}");
        }
        Err(e) => {
            if let Some(mut s) = slot.take() {
                s.finish();
            }
            host_failure(&format!("{e:#}"));
        }
    }
}

/// Between inputs (AFL++'s reset hook): a guest that a crash or kernel
/// incident left needing replacement is replaced now, so that the next
/// input starts on a fresh kernel like every other input.
pub fn after_input() {
    let mut slot = SESSION.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = slot.as_mut()
        && let Err(e) = s.prepare_next()
    {
        if let Some(mut s) = slot.take() {
            s.finish();
        }
        host_failure(&format!("{e:#}"));
    }
}

/// Power the guest off and print the final statistics (AFL++: after the
/// persistent loop; libFuzzer exits without calling it, and the guest dies
/// with the process through `PR_SET_PDEATHSIG`).
pub fn shutdown() {
    let mut slot = SESSION.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(mut s) = slot.take() {
        s.finish();
    }
}

fn start(engine: &str) -> Session {
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: `at_exit` is an `extern "C" fn()` that never unwinds.
        unsafe { libc::atexit(at_exit) };
    });
    sweep::remove_stale_guest_dirs();
    let cfg = match FrontConfig::from_env() {
        Ok(cfg) => cfg,
        Err(e) => host_failure(&format!("{e:#}")),
    };
    match Session::boot(cfg, engine) {
        Ok(s) => s,
        Err(e) => host_failure(&format!("{e:#}")),
    }
}

/// The host failed (QEMU will not start, the kernel cannot be provisioned,
/// the findings directory is not writable): say so and exit with status 2.
/// libFuzzer may still save the input as a crash artifact ("fuzz target
/// exited"); `pinfuzz repro` on it shows no finding.
fn host_failure(msg: &str) -> ! {
    eprintln!("pinfuzz fuzzfront: host failure (not a finding): {msg}");
    std::process::exit(2);
}
