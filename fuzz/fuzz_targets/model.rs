#![no_main]
//! Placeholder until the model target lands.
libfuzzer_sys::fuzz_target!(|_data: &[u8]| {});
