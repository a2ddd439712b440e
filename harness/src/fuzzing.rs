//! What the fuzz targets run, so that `fuzz/` stays thin glue.
//!
//! Each function takes the raw fuzzer input, turns it into a valid program
//! through the stable byte codec (`crate::program::codec`), runs it, and
//! panics with a readable report (the program text and what broke) when the
//! property fails: libFuzzer and AFL record a panic as a crash.

use std::cell::RefCell;

use reference::Profile;

use crate::backend::{ModelExec, run_model};
use crate::op::Program;
use crate::oracle::{Verdict, compare};
use crate::program::{Limits, codec};

/// Programs the model fuzzers build: at most this many steps.
pub const MODEL_MAX_STEPS: usize = 32;

/// The limits of programs built from fuzzer inputs.
pub const FUZZ_LIMITS: Limits = Limits {
    max_steps: MODEL_MAX_STEPS,
    ..Limits::FULL
};

/// The program a fuzzer input stands for.
pub fn program_of(data: &[u8]) -> Program {
    codec::decode_with(data, &FUZZ_LIMITS)
}

/// The kernel profile a fuzzer input runs on: inputs of even length on
/// the newest profile, odd on the next (so mutations exercise both, each
/// input deterministically one).
pub fn profile_of(data: &[u8]) -> Profile {
    Profile::ALL[data.len() % Profile::ALL.len()]
}

/// Run a fuzzer input on the model ([`profile_of`]), checking the model's
/// invariants after every step.
///
/// # Panics
/// On a broken invariant (or a panic inside the model): both are model
/// bugs, and the panic message holds the program.
pub fn check_model(data: &[u8]) {
    thread_local! {
        /// The previous input's executor: its buffers are reused.
        static EXEC: RefCell<Option<ModelExec>> = const { RefCell::new(None) };
    }
    let program = program_of(data);
    let profile = profile_of(data);
    EXEC.with_borrow_mut(|slot| {
        let exec = match slot {
            Some(exec) => {
                exec.reset(&program, profile);
                exec
            }
            None => slot.insert(ModelExec::new(&program, profile)),
        };
        run_checked(exec, &program, profile);
        // Free what this input allocated beyond the reused buffers before
        // returning: libFuzzer suspects a leak (and reruns the input under
        // LeakSanitizer) when an input mallocs more than it frees.
        exec.reset(&program, profile);
    });
}

/// Run `program` on `exec` (fresh), checking invariants after every step.
fn run_checked(exec: &mut ModelExec, program: &Program, profile: Profile) {
    for (i, step) in program.steps.iter().enumerate() {
        exec.step(step);
        if let Err(e) = exec.check_invariants() {
            panic!(
                "model {} broke an invariant at step {i} ({step}): {e}\nprogram:\n{program}",
                profile.name
            );
        }
    }
}

/// Run a fuzzer input on the model with full observation, and check that
/// the oracle finds the model's trace equal to itself (a check of the
/// observation and identity code, slower than [`check_model`]).
///
/// # Panics
/// When it does not, or on a broken invariant.
pub fn check_model_observed(data: &[u8]) {
    let program = program_of(data);
    let run = run_model(&program, Profile::LINUX_6_12);
    if let Some((step, msg)) = &run.invariant {
        panic!("model broke an invariant at step {step}: {msg}\nprogram:\n{program}");
    }
    let (verdict, _) = compare(&program, &run, &run.trace);
    if verdict != Verdict::Match {
        panic!("model trace does not match itself: {verdict:?}\nprogram:\n{program}");
    }
}
