//! `pinfuzz bench`: the loop's steps per second against a bare C baseline
//! making the same syscalls, ioctls and state reads for the same programs
//! in the same guest (`harness::bench`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::bench::{BenchConfig, run_bench};
use crate::cli::vm::GuestArgs;
use crate::kernel::{self, cache::Cache};
use crate::program::Limits;

/// Arguments of `pinfuzz bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Programs per pass (program i of the campaign, i in 0..N).
    #[arg(long, default_value_t = 200)]
    pub programs: u64,
    /// Campaign seed of the programs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Most steps per program (as `pinfuzz fuzz --max-steps`).
    #[arg(long, default_value_t = 32)]
    pub max_steps: usize,
    /// Rounds; each runs every program through the loop and the C baseline.
    /// Medians are reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Programs per chunk: the loop and the baseline alternate chunk by chunk.
    #[arg(long, default_value_t = 10)]
    pub chunk: usize,
    /// Per-program timeout of the loop, seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Keep the baseline's C source and binary in this directory.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// Exit with status 1 if the median (a)/(c) is below this ratio.
    #[arg(long, value_name = "RATIO")]
    pub require_ratio: Option<f64>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The guest.
    #[command(flatten)]
    pub guest: GuestArgs,
}

/// `pinfuzz bench`.
pub fn run(args: Args) -> Result<ExitCode> {
    let cache = Cache::from_env()?;
    let spec = kernel::ensure(&cache, &args.guest.kernel)
        .with_context(|| format!("provision kernel {}", args.guest.kernel))?;
    let mut guest = args.guest.options();
    // The baseline runs for many seconds without console output.
    guest.no_output_timeout = guest.no_output_timeout.max(Duration::from_secs(1800));
    let cfg = BenchConfig {
        kernel: spec,
        guest,
        seed: args.seed,
        programs: args.programs,
        limits: Limits {
            max_steps: args.max_steps,
            ..Limits::FULL
        }
        .capped(),
        rounds: args.rounds.max(1),
        chunk: args.chunk.max(1),
        program_timeout: Duration::from_secs(args.timeout),
        keep: args.keep.clone(),
    };
    let report = run_bench(&cfg, &mut |line| eprintln!("pinfuzz bench: {line}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(match args.require_ratio {
        Some(min) if report.loop_ratio < min => {
            eprintln!(
                "pinfuzz bench: (a)/(c) = {:.2} is below the required {min}",
                report.loop_ratio
            );
            ExitCode::from(1)
        }
        _ => ExitCode::SUCCESS,
    })
}
