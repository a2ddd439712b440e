//! AFL++ target `diff`: the input bytes become a program
//! (`harness::fuzzing::program_of`, the same stable codec as the
//! cargo-fuzz target `diff`), which runs on the model and on the real
//! kernel in a QEMU guest; a divergence, guest crash or hang, kernel
//! incident or failed reset check is recorded in the findings store and
//! then panics (afl.rs turns the panic into an abort: an AFL++ crash).
//! Poisoned runs never panic.
//!
//! Persistent mode with one guest per AFL++ instance: the forkserver forks
//! this process before `main`'s loop, the child boots its guest at the
//! first input and keeps it for every later input (`AFL_FUZZER_LOOPCOUNT`
//! unset: the child never leaves the loop on its own). State per input:
//! the agent forks a fresh runner per program and checks after it that
//! every process is gone, the module holds nothing and pins balance (a
//! failed check is a finding); the reset hook replaces a guest that a crash
//! or kernel incident left behind before the next input. When the child
//! dies (crash, AFL++ timeout) its QEMU dies with it (`PR_SET_PDEATHSIG`)
//! and the next child boots a new guest.
//!
//! Feedback: besides AFL++'s edge coverage of the model, every model-state
//! feature of the run (`harness::fuzzfront::feedback`) sets one IJON bit.
//! `AFL_NO_IJON=1` or `PINFUZZ_FEEDBACK=0` turns that off.
//!
//! Environment: the `PINFUZZ_*` variables of the cargo-fuzz target
//! (`fuzz/fuzz_targets/diff.rs`, `harness::fuzzfront::config`); AFL++'s own
//! in docs/fuzzing.md (run with `-t 120000`: the first input of every child
//! includes the guest boot).

use harness::fuzzfront::{self, feedback};

/// AFL++ enables its IJON map only when the binary defines
/// `__afl_ijon_enabled = 1` (afl-compiler-rt.o.c has a weak 0). AFL++'s
/// IJON LLVM pass emits exactly this global in modules that call `ijon_*`;
/// cargo-afl only runs that pass when it was built with LLVM plugins
/// (nightly), so the definition is made here. `AFL_NO_IJON=1` still
/// switches IJON off at run time.
#[unsafe(no_mangle)]
#[used]
pub static __afl_ijon_enabled: u32 = 1;

/// IJON's map has `MAP_SIZE_IJON_MAP` (65536) slots (AFL++ config.h).
const IJON_SLOTS: usize = 1 << 16;

const ENGINE: &str = "afl diff";

fn main() {
    afl::fuzz_with_reset(
        true,
        |data: &[u8]| {
            let verdict = fuzzfront::run_input(ENGINE, data);
            for f in &verdict.features {
                afl::ijon_set!(feedback::slot(*f, IJON_SLOTS) as u32);
            }
        },
        fuzzfront::after_input,
    );
    fuzzfront::shutdown();
}
