//! Random valid programs from a seeded RNG.
//!
//! The generator fills random bytes and decodes them with the byte codec,
//! so generated programs and fuzzer inputs share one distribution (swarm
//! bits included: each program has a random subset of operation kinds
//! switched off) and any generated program can be turned back into a
//! fuzzer seed with `encode`. The only difference: generated programs carry
//! no comments and no kernel requirement (random annotation bytes would
//! only give noise text).
//!
//! Output depends only on the RNG's bytes: with
//! `rand_chacha::ChaCha8Rng::seed_from_u64(seed)` the same seed gives the
//! same program on every machine (the RNG is drawn only through
//! `next_u32` and `fill_bytes`, never through platform-sized integers).

use rand::Rng;

use super::Limits;
use super::codec::{FORMAT_V1, MAX_STEP_BYTES, PROLOGUE_BYTES, decode_with};
use crate::op::Program;

/// A random valid program of 1..=`limits.max_steps` steps (fewer when the
/// drawn operations run out of things they may do), within `limits`.
pub fn generate(rng: &mut impl Rng, limits: &Limits) -> Program {
    let limits = limits.capped();
    let max_steps = u32::try_from(limits.max_steps.max(1)).expect("MAX_STEPS fits in u32");
    let steps = 1 + rng.next_u32() % max_steps;
    let steps = usize::try_from(steps).expect("u32 fits in usize");
    let mut bytes = vec![0; PROLOGUE_BYTES + steps * MAX_STEP_BYTES];
    rng.fill_bytes(&mut bytes);
    bytes[0] = FORMAT_V1;
    let mut program = decode_with(
        &bytes,
        &Limits {
            max_steps: steps,
            ..limits
        },
    );
    program.comments.clear();
    program.header.kernel = None;
    for step in &mut program.steps {
        step.comments.clear();
    }
    program
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn same_seed_same_program_and_programs_are_valid() {
        let limits = Limits {
            max_steps: 40,
            ..Limits::FULL
        };
        for seed in 0..50 {
            let a = generate(&mut ChaCha8Rng::seed_from_u64(seed), &limits);
            let b = generate(&mut ChaCha8Rng::seed_from_u64(seed), &limits);
            assert_eq!(a, b);
            assert_eq!(a.validate(), Ok(()), "seed {seed}:\n{a}");
            assert!(
                !a.steps.is_empty() && a.steps.len() <= 40,
                "seed {seed}:\n{a}"
            );
        }
    }
}
