//! What one fuzzer execution of the model costs, without the fuzzer.
//!
//! `cargo bench -p harness --bench fuzz_targets` reports programs per second
//! of `harness::fuzzing::check_model` (byte decoding, the model, invariants
//! after every step) over fixed seeded inputs: short ones like the inputs
//! libFuzzer starts with (8..64 bytes, 1-12 steps) and longer ones (up to
//! 32 steps). `cargo fuzz run model` adds instrumentation and libFuzzer's
//! own work on top; its `exec/s` is the number to quote for the target.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn inputs(seed: u64, count: usize, max_len: usize) -> Vec<Vec<u8>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let len = rng.random_range(8..max_len);
            let mut b = vec![0u8; len];
            rng.fill(&mut b[..]);
            b
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("check_model");
    for (name, max_len) in [("short-inputs", 64), ("32-step-inputs", 512)] {
        let set = inputs(1, 256, max_len);
        group.throughput(Throughput::Elements(set.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                for input in &set {
                    harness::fuzzing::check_model(black_box(input));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
