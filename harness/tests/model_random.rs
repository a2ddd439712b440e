//! Random programs from a seeded generator run clean on the model: no broken
//! invariant, no panic, and the oracle finds each model trace equal to itself.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[test]
fn random_inputs_keep_model_invariants() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    let mut buf = vec![0u8; 512];
    for _ in 0..2000 {
        let len = rng.random_range(0..buf.len());
        rng.fill(&mut buf[..len]);
        harness::fuzzing::check_model(&buf[..len]);
        if rng.random_range(0..10) == 0 {
            harness::fuzzing::check_model_observed(&buf[..len]);
        }
    }
}

#[test]
fn incremental_invariant_check_agrees_with_the_full_one() {
    // ModelExec checks after each step only what the step changed; on the
    // same random programs, the full check must agree at every step.
    use harness::backend::ModelExec;
    use harness::fuzzing::{profile_of, program_of};
    let mut rng = ChaCha8Rng::seed_from_u64(0x1c4);
    let mut buf = vec![0u8; 512];
    for _ in 0..1000 {
        let len = rng.random_range(0..buf.len());
        rng.fill(&mut buf[..len]);
        let program = program_of(&buf[..len]);
        let mut exec = ModelExec::new(&program, profile_of(&buf[..len]));
        for step in &program.steps {
            exec.step(step);
            let full = exec.model().check_invariants();
            assert_eq!(exec.check_invariants(), full, "{program}");
        }
    }
}
