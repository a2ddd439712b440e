#![no_main]
//! cargo-fuzz target `diff`: the input bytes become a program
//! (`harness::fuzzing::program_of`, the stable codec), which runs on the
//! model and on the real kernel in a QEMU guest; the oracle compares them
//! after every step. libFuzzer stays on the host; the guest is booted once,
//! in this target's `init`, and kept across inputs (why: the module doc of
//! `harness::fuzzfront`; how: docs/fuzzing.md).
//!
//! A divergence, a guest crash or hang, a kernel incident or a failed reset
//! check is recorded in the findings store first, then the target panics
//! with the title and the program text. Poisoned runs (the kernel took a
//! path the model declares non-deterministic, or pages moved outside the
//! program) never panic; they are rejected from the corpus.
//!
//! Environment variables (all optional; `harness::fuzzfront::config`):
//! - `PINFUZZ_KERNEL`       kernel, default `debian-6.12` (also `debian-6.1`)
//! - `PINFUZZ_FINDINGS`     findings store, default `findings`
//! - `PINFUZZ_FAULT`        helper module fault-injection mode, default 0
//! - `PINFUZZ_MEMORY`       guest memory in MiB, default 1024
//! - `PINFUZZ_ACCEL`        `auto` (default), `kvm` or `tcg`
//! - `PINFUZZ_TIMEOUT`      per-program timeout in seconds, default 60
//! - `PINFUZZ_FEEDBACK`     `1` (default): model states as extra counters; `0`: edges only
//! - `PINFUZZ_IGNORE_KNOWN` `1`: findings already in the store do not crash
//! - `PINFUZZ_STATS_EVERY`  seconds between statistics lines, default 60
//! - `PINFUZZ_CACHE`, `PINFUZZ_AGENT`, `PINFUZZ_AGENT_TARGET_DIR`: kernel
//!   cache and guest agent build, as for every pinfuzz command.

use std::sync::atomic::{AtomicU8, Ordering};

use harness::fuzzfront::{self, feedback};
use libfuzzer_sys::{Corpus, fuzz_target};

/// libFuzzer's extra counters: every byte of the `__libfuzzer_extra_counters`
/// section is a feature (FuzzerExtraCounters.cpp finds the section through
/// the linker's `__start_`/`__stop_` symbols, clears it before each input
/// and collects the non-zero bytes after it). Atomics make the static
/// writable without `static mut`; the alignment keeps libFuzzer's
/// word-at-a-time clearing inside the array.
#[repr(C, align(64))]
struct Counters([AtomicU8; feedback::EXTRA_COUNTERS]);

#[used]
#[unsafe(link_section = "__libfuzzer_extra_counters")]
static COUNTERS: Counters = Counters([const { AtomicU8::new(0) }; feedback::EXTRA_COUNTERS]);

const ENGINE: &str = "cargo-fuzz diff";

fuzz_target!(
    init: {
        fuzzfront::init(ENGINE);
    },
    |data: &[u8]| -> Corpus {
        let verdict = fuzzfront::run_input(ENGINE, data);
        for f in &verdict.features {
            COUNTERS.0[feedback::slot(*f, feedback::EXTRA_COUNTERS)].store(1, Ordering::Relaxed);
        }
        if verdict.keep { Corpus::Keep } else { Corpus::Reject }
    }
);
