//! `pinfuzz selfcheck`: does pinfuzz notice the driver bugs FOLL_PIN tracking
//! exists to expose? For each fault-injection mode of the helper module
//! (`kmod/pinfuzz.h: PINFUZZ_FAULT_*`), boot a guest with the module loaded
//! in that mode, fuzz until the first finding, minimize it, and report the
//! time to detection and the minimized length. A mode not caught within
//! its budget fails the check.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::campaign::{CampaignConfig, run_campaign};
use crate::cli::fuzz::{Progress, parse_duration};
use crate::cli::vm::GuestArgs;
use crate::kernel::{self, cache::Cache};
use crate::program::Limits;

/// The fault modes and what they do (`kmod/pinfuzz.h`).
pub const FAULT_MODES: [(u32, &str); 5] = [
    (1, "put-for-unpin: a pin released with put_page()"),
    (2, "leak-pin: release forgets the pins"),
    (3, "double-unpin: every page unpinned twice"),
    (4, "get-for-pin: FOLL_GET taken where FOLL_PIN was asked"),
    (5, "unpin-wrong-page: page i+1 unpinned for page i"),
];

/// Arguments of `pinfuzz selfcheck`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Fuzzing budget per mode (`60s`, `2m`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub time_per_mode: Duration,
    /// Only these modes (comma separated numbers).
    #[arg(long, value_delimiter = ',')]
    pub modes: Vec<u32>,
    /// Campaign seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where each mode's findings go (a subdirectory per mode).
    #[arg(long, default_value = "findings/selfcheck")]
    pub findings: PathBuf,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
    /// The guest (its `--fault` is ignored: every mode is tried).
    #[command(flatten)]
    pub guest: GuestArgs,
}

/// One mode's result.
#[derive(Debug, Serialize)]
pub struct ModeResult {
    /// `PINFUZZ_FAULT_*` value.
    pub mode: u32,
    /// What it breaks.
    pub what: &'static str,
    /// Caught within the budget.
    pub caught: bool,
    /// Seconds of fuzzing (guest ready to first finding).
    pub seconds: Option<f64>,
    /// Programs run until then.
    pub programs: u64,
    /// Steps of the minimized program.
    pub minimized_steps: Option<usize>,
    /// The finding's title.
    pub title: Option<String>,
    /// The finding's directory.
    pub finding: Option<PathBuf>,
}

/// Run the subcommand.
pub fn run(args: Args) -> Result<ExitCode> {
    let cache = Cache::from_env()?;
    let spec = kernel::ensure(&cache, &args.guest.kernel)
        .with_context(|| format!("provision kernel {}", args.guest.kernel))?;
    let modes: Vec<(u32, &str)> = FAULT_MODES
        .iter()
        .copied()
        .filter(|(m, _)| args.modes.is_empty() || args.modes.contains(m))
        .collect();
    let mut results = Vec::new();
    for (mode, what) in modes {
        let dir = args.findings.join(format!("fault-{mode}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clear {}", dir.display()))?;
        }
        let mut guest = args.guest.options();
        guest.fault = mode;
        let cfg = CampaignConfig {
            kernel: spec.clone(),
            guest,
            seed: args.seed,
            duration: args.time_per_mode,
            max_programs: None,
            shard: (0, 1),
            jobs: 1,
            findings: dir.clone(),
            limits: Limits {
                max_steps: 16,
                ..Limits::FULL
            },
            stop_on_finding: true,
            minimize: true,
            minimize_budget: 80,
            program_timeout: Duration::from_secs(30),
            profile: None,
        };
        eprintln!("pinfuzz: selfcheck mode {mode} ({what})");
        let progress = Progress::new(&format!("fault {mode}"));
        let stats = run_campaign(&cfg, &|st| progress.update(st))?;
        progress.finish();
        let finding = stats
            .first_finding_title
            .as_ref()
            .map(|t| crate::finding::FindingStore::open(&dir).map(|s| s.path_for(t)))
            .transpose()?;
        let r = ModeResult {
            mode,
            what,
            caught: stats.first_finding_s.is_some(),
            seconds: stats.first_finding_s,
            programs: stats.programs,
            minimized_steps: stats.first_finding_steps,
            title: stats.first_finding_title.clone(),
            finding,
        };
        if !args.json {
            match (&r.title, r.seconds, r.minimized_steps) {
                (Some(t), Some(s), Some(n)) => println!(
                    "fault {mode} {what}\n    caught after {s:.1} s ({} programs), minimized to {n} steps: {t}",
                    r.programs
                ),
                _ => println!(
                    "fault {mode} {what}\n    NOT CAUGHT in {:?} ({} programs)",
                    args.time_per_mode, r.programs
                ),
            }
        }
        results.push(r);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    let missed = results.iter().filter(|r| !r.caught).count();
    if missed > 0 {
        eprintln!("pinfuzz: selfcheck: {missed} fault mode(s) not caught");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
