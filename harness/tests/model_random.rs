//! Random programs from a seeded generator run clean on the model: no broken
//! invariant, no panic, and the oracle finds each model trace equal to itself.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `count` seeded random fuzzer inputs of 0..512 bytes.
fn random_inputs(seed: u64, count: usize) -> impl Iterator<Item = Vec<u8>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count).map(move |_| {
        let mut input = vec![0u8; rng.random_range(0..512)];
        rng.fill(&mut input[..]);
        input
    })
}

#[test]
fn random_inputs_keep_model_invariants() {
    for (i, input) in random_inputs(0x5eed, 2000).enumerate() {
        harness::fuzzing::check_model(&input);
        if i % 10 == 0 {
            harness::fuzzing::check_model_observed(&input);
        }
    }
}

#[test]
fn incremental_invariant_check_agrees_with_the_full_one() {
    // ModelExec checks after each step only what the step changed; on the
    // same random programs, the full check must agree at every step.
    use harness::backend::ModelExec;
    use harness::fuzzing::{profile_of, program_of};
    for input in random_inputs(0x1c4, 1000) {
        let program = program_of(&input);
        let mut exec = ModelExec::new(&program, profile_of(&input));
        for step in &program.steps {
            exec.step(step);
            let full = exec.model().check_invariants();
            assert_eq!(exec.check_invariants(), full, "{program}");
        }
    }
}
