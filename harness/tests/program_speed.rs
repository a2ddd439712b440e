//! Throughput of the byte codec, the fuzzers' hot path (they call `decode`
//! on every input, ~50k times a second). Timing depends on the machine, so
//! this is a measurement, run on demand. Times are CPU time of the test
//! thread, so other load on the machine does not inflate them:
//!
//! ```text
//! cargo test --release -p harness --test program_speed -- --ignored --nocapture
//! ```

use std::hint::black_box;
use std::time::Duration;

use harness::program::{decode, encode};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

/// CPU time this thread has used.
fn cpu_time() -> Duration {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .expect("CLOCK_THREAD_CPUTIME_ID is supported on Linux");
    Duration::from(t)
}

/// Measures CPU time from its creation.
struct Instant(Duration);

impl Instant {
    fn now() -> Instant {
        Instant(cpu_time())
    }

    fn elapsed(&self) -> Duration {
        cpu_time() - self.0
    }
}

#[test]
#[ignore = "measurement; run with --release --ignored --nocapture"]
fn decode_throughput() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    // libFuzzer's default -max_len is 4096; most corpus inputs are smaller.
    for len in [64usize, 512, 4096] {
        let inputs: Vec<Vec<u8>> = (0..1000)
            .map(|_| {
                let mut bytes = vec![0; len];
                rng.fill_bytes(&mut bytes);
                bytes
            })
            .collect();
        let rounds = 20;
        let start = Instant::now();
        let mut steps = 0;
        for _ in 0..rounds {
            for input in &inputs {
                steps += black_box(decode(black_box(input))).steps.len();
            }
        }
        let elapsed = start.elapsed();
        let decodes = (rounds * inputs.len()) as f64;
        println!(
            "decode {len:>4} bytes: {:>8.0} programs/s, {:>5.1} steps/program, {:.2} µs/program",
            decodes / elapsed.as_secs_f64(),
            steps as f64 / decodes,
            elapsed.as_secs_f64() * 1e6 / decodes
        );
        let programs: Vec<_> = inputs.iter().map(|i| decode(i)).collect();
        let start = Instant::now();
        for p in &programs {
            black_box(encode(black_box(p)));
        }
        println!(
            "encode {len:>4} bytes: {:>8.0} programs/s",
            programs.len() as f64 / start.elapsed().as_secs_f64()
        );
    }
}

#[test]
#[ignore = "measurement; run with --release --ignored --nocapture"]
fn validate_share() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let programs: Vec<_> = (0..1000)
        .map(|_| {
            let mut bytes = vec![0; 512];
            rng.fill_bytes(&mut bytes);
            decode(&bytes)
        })
        .collect();
    let start = Instant::now();
    for _ in 0..20 {
        for p in &programs {
            black_box(black_box(p).validate().is_ok());
        }
    }
    println!(
        "validate: {:.2} µs/program",
        start.elapsed().as_secs_f64() * 1e6 / 20_000.0
    );
}
