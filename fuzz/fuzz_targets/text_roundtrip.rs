#![no_main]
//! cargo-fuzz target `text_roundtrip`: the input as codec bytes (decode →
//! canonical text → strict parse → the same program; encode → decode → the
//! same program) and as text (the lenient parser never panics and returns a
//! valid program). The checks live in `harness::program::selfcheck`. No
//! environment variables.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| harness::program::selfcheck::text_roundtrip(data));
