#![no_main]
//! cargo-fuzz target `model`: an arbitrary program (raw bytes through the
//! stable codec) on the reference model of every kernel profile, invariants
//! checked after every step. No environment variables.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| harness::fuzzing::check_model(data));
