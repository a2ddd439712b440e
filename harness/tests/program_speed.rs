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

/// What random inputs decode to: the mix the fuzzers see. Printed, not
/// asserted (the biases are tuning, documented in docs/program-format.md).
#[test]
#[ignore = "measurement; run with --release --ignored --nocapture"]
fn decoded_distribution() {
    use harness::op::{Op, Proc};
    use std::collections::BTreeMap;

    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let programs = 10_000;
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ranges = [0usize; 3]; // inside, crossing the end, past the end
    let mut gup_pages: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut maps, mut thp_able, mut steps) = (0, 0, 0);
    let (mut forking, mut pinning, mut in_child) = (0, 0, 0);
    for _ in 0..programs {
        let mut bytes = vec![0; 256];
        rng.fill_bytes(&mut bytes);
        let program = decode(&bytes);
        steps += program.steps.len();
        forking += usize::from(
            program
                .steps
                .iter()
                .any(|s| matches!(s.op, Op::Fork { .. })),
        );
        pinning += usize::from(
            program
                .steps
                .iter()
                .any(|s| matches!(s.op, Op::Gup { api, .. } if api.is_pin())),
        );
        in_child += usize::from(program.steps.iter().any(|s| s.proc != Proc::Parent));
        let mut map_pages = Vec::new();
        for step in &program.steps {
            let name = match &step.op {
                Op::Mmap { .. } => "mmap",
                Op::Munmap { .. } => "munmap",
                Op::Mprotect { .. } => "mprotect",
                Op::Madvise { .. } => "madvise",
                Op::Touch { .. } => "touch",
                Op::Gup { api, .. } => api.name(),
                Op::Release { .. } => "release",
                Op::SplitHugePages { .. } => "split_huge_pages",
                Op::Fork { .. } => "fork",
                Op::Exit { .. } => "exit",
            };
            *kinds.entry(name).or_default() += 1;
            match step.op {
                Op::Mmap { pages, offset, .. } => {
                    maps += 1;
                    map_pages.push(pages);
                    thp_able += usize::from(offset == 0 && pages % 512 == 0);
                }
                Op::Munmap { map, range }
                | Op::Mprotect { map, range, .. }
                | Op::Madvise { map, range, .. }
                | Op::Touch { map, range, .. }
                | Op::Gup { map, range, .. }
                | Op::SplitHugePages { map, range } => {
                    let pages = map_pages[usize::from(map.0)];
                    let where_ = if range.end <= pages {
                        0
                    } else if range.start < pages {
                        1
                    } else {
                        2
                    };
                    ranges[where_] += 1;
                    if let Op::Gup { .. } = step.op {
                        let bucket = match range.len() {
                            1 => "1",
                            2..=16 => "2-16",
                            17..=511 => "17-511",
                            _ => "512+",
                        };
                        *gup_pages.entry(bucket).or_default() += 1;
                    }
                }
                Op::Release { .. } | Op::Fork { .. } | Op::Exit { .. } => {}
            }
        }
    }
    println!("{programs} inputs of 256 random bytes:");
    println!("  steps per program: {:.1}", steps as f64 / programs as f64);
    println!("  operations: {kinds:?}");
    println!(
        "  ranges: {} inside the mapping, {} crossing its end, {} past its end",
        ranges[0], ranges[1], ranges[2]
    );
    println!("  GUP sizes (pages): {gup_pages:?}");
    println!("  mappings: {maps}, of which PMD-aligned whole PMDs: {thp_able}");
    println!("  programs that fork: {forking}, that pin: {pinning}, with child steps: {in_child}");
}

/// CPU time of the `text_roundtrip` fuzz target's checks per input.
#[test]
#[ignore = "measurement; run with --release --ignored --nocapture"]
fn selfcheck_cost() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for len in [256usize, 4096] {
        let inputs: Vec<Vec<u8>> = (0..200)
            .map(|_| {
                let mut bytes = vec![0; len];
                rng.fill_bytes(&mut bytes);
                bytes
            })
            .collect();
        let start = Instant::now();
        for input in &inputs {
            harness::program::selfcheck::text_roundtrip(input);
        }
        println!(
            "text_roundtrip {len:>4} bytes: {:.1} µs/input",
            start.elapsed().as_secs_f64() * 1e6 / inputs.len() as f64
        );
    }
}
