//! `pinfuzz nightly`: the OSS-Fuzz-style night (`harness::nightly`) —
//! every fuzzer for a budget, findings against a persistent state, a
//! report in Markdown and JSON. `ci/nightly` builds everything first and
//! then calls this. Exit status: 0 nothing new, 1 new or regressed
//! findings, 2 the nightly itself failed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};

use crate::cli::fuzz::parse_shard;
use crate::cli::vm::GuestArgs;
use crate::nightly::{NightlyConfig, run as run_nightly};

/// Arguments of `pinfuzz nightly`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Fuzzing budget in seconds (wall clock of the fuzzing phase).
    #[arg(long, default_value_t = 3600)]
    pub budget: u64,
    /// Persistent state: findings and corpora across nights.
    #[arg(long, default_value = "target/nightly/state")]
    pub state: PathBuf,
    /// Tonight's output directory (report.md, report.json, logs, raw findings).
    #[arg(long, default_value = "target/nightly/out")]
    pub out: PathBuf,
    /// Kernels for `pinfuzz fuzz` campaigns (comma separated; `none` for none).
    #[arg(long, value_delimiter = ',', default_value = "debian-6.12,debian-6.1")]
    pub kernels: Vec<String>,
    /// Model-only libFuzzer targets (comma separated; `none` for none).
    #[arg(long, value_delimiter = ',', default_value = "model,text_roundtrip")]
    pub targets: Vec<String>,
    /// Directory of the `cargo fuzz build` binaries.
    #[arg(long, default_value = "target/x86_64-unknown-linux-gnu/release")]
    pub fuzz_bin_dir: PathBuf,
    /// Text corpora that seed the targets (besides the state's corpus).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "corpus/seeds,corpus/regressions"
    )]
    pub seeds: Vec<PathBuf>,
    /// Guests per kernel campaign.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Shard I/N of the campaigns' seed space.
    #[arg(long, default_value = "0/1", value_parser = parse_shard)]
    pub shard: (u64, u64),
    /// Campaign seed (default: days since 1970, a new seed every night).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run the kernel and model lanes one after the other (default: side
    /// by side when the machine has two cores or more).
    #[arg(long)]
    pub sequential: bool,
    /// Most guest runs to minimize one new kernel finding.
    #[arg(long, default_value_t = 100)]
    pub minimize_budget: usize,
    /// Build time in seconds, for the report (`ci/nightly` passes it).
    #[arg(long, hide = true)]
    pub build_seconds: Option<f64>,
    /// The guests (kernel is per campaign: `--kernels`).
    #[command(flatten)]
    pub guest: GuestArgs,
}

/// Run the subcommand.
pub fn run(args: Args) -> Result<ExitCode> {
    if args.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let none = |v: Vec<String>| -> Vec<String> {
        v.into_iter()
            .filter(|s| !s.is_empty() && s != "none")
            .collect()
    };
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 86_400)
    });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cfg = NightlyConfig {
        budget: Duration::from_secs(args.budget.max(1)),
        state: args.state,
        out: args.out,
        kernels: none(args.kernels),
        targets: none(args.targets),
        fuzz_bin_dir: args.fuzz_bin_dir,
        seeds: args.seeds,
        jobs: args.jobs,
        shard: args.shard,
        seed,
        parallel: !args.sequential && cores >= 2,
        guest: args.guest.options(),
        minimize_budget: args.minimize_budget,
        build_s: args.build_seconds,
    };
    let report = run_nightly(&cfg)?;
    print!("{}", report.markdown());
    eprintln!(
        "pinfuzz nightly: report in {} and {}",
        cfg.out.join("report.md").display(),
        cfg.out.join("report.json").display()
    );
    Ok(ExitCode::from(report.exit))
}
