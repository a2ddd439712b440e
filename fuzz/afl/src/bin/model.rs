//! AFL++ target `model`: an arbitrary program (raw bytes through the stable
//! codec, `harness::fuzzing::program_of`) on the reference model of every
//! kernel profile, invariants checked after every step
//! (`harness::fuzzing::check_model`, the same oracle as the cargo-fuzz
//! target `model`). A broken invariant panics; afl.rs turns the panic into
//! an abort, which AFL++ records as a crash.
//!
//! Persistent mode: `afl::fuzz!` runs many inputs in one process. Nothing
//! survives from one input to the next: `check_model` builds its program,
//! its `ModelExec` and its `Model` afresh for every call, and neither
//! `harness::program`, `harness::backend` nor `reference` keeps any static
//! or thread-local state, so no reset hook (`fuzz_with_reset`) is needed and
//! AFL++'s stability stays at 100%.
//!
//! No environment variables of our own; AFL++'s are in fuzz/README.md.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        harness::fuzzing::check_model(data);
    });
}
