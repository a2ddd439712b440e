//! `pinfuzz gen`: write random valid programs, one canonical `.ops` file each.
//!
//! Program `i` of seed `s` is drawn from `ChaCha8Rng::seed_from_u64(s)` on
//! stream `i`, so it is the same file on every machine and does not depend
//! on `--count`: `gen --seed 7 --count 3` writes the first three files of
//! `gen --seed 7 --count 100`. Files are written atomically.

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, ensure};
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;

use super::fmt::write_atomic;
use crate::op::MAX_STEPS;
use crate::program::{Limits, generate};

/// Steps per program when `--max-steps` is not given.
pub const DEFAULT_MAX_STEPS: usize = 32;

/// Arguments of `pinfuzz gen`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seed of the generator.
    #[arg(long)]
    seed: u64,
    /// How many programs to write.
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// Directory to write `gen-<seed>-<i>.ops` into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// At most this many steps per program.
    #[arg(long, default_value_t = DEFAULT_MAX_STEPS, value_name = "K")]
    max_steps: usize,
}

/// Run the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    ensure!(
        (1..=MAX_STEPS).contains(&args.max_steps),
        "--max-steps {} is out of range 1..={MAX_STEPS}",
        args.max_steps
    );
    fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let limits = Limits {
        max_steps: args.max_steps,
        ..Limits::FULL
    };
    for i in 0..args.count {
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        rng.set_stream(i);
        let mut program = generate(&mut rng, &limits);
        program.comments.push(format!(
            " pinfuzz gen --seed {} --max-steps {}: program {i}",
            args.seed, args.max_steps
        ));
        let path = args.out.join(format!("gen-{}-{i}.ops", args.seed));
        write_atomic(&path, program.to_string().as_bytes())?;
    }
    eprintln!(
        "wrote {} program{} to {}",
        args.count,
        if args.count == 1 { "" } else { "s" },
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
