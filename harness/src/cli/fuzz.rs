//! `pinfuzz fuzz`: the main job. Provisions the kernel if needed, boots one
//! guest per job, runs seeded swarm-generated programs through the
//! differential loop, shows live progress, and writes findings.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::campaign::{CampaignConfig, CampaignStats, run_campaign};
use crate::cli::vm::GuestArgs;
use crate::kernel::{self, cache::Cache};
use crate::program::Limits;

/// Arguments of `pinfuzz fuzz`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How long to fuzz: seconds, or with a unit (`90s`, `10m`, `1h`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub time: Duration,
    /// Campaign seed (program i is generated from the seed and i).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Parallel guests, one vCPU each.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Run only shard I of N (`I/N`): the programs with index % N == I.
    #[arg(long, default_value = "0/1", value_parser = parse_shard)]
    pub shard: (u64, u64),
    /// Stop after this many programs.
    #[arg(long)]
    pub max_programs: Option<u64>,
    /// Most steps per program.
    #[arg(long, default_value_t = 32)]
    pub max_steps: usize,
    /// Where findings are written.
    #[arg(long, default_value = "findings")]
    pub findings: PathBuf,
    /// Do not minimize new findings.
    #[arg(long)]
    pub no_minimize: bool,
    /// Stop at the first finding.
    #[arg(long)]
    pub stop_on_finding: bool,
    /// Print the final statistics as JSON.
    #[arg(long)]
    pub json: bool,
    /// The guest.
    #[command(flatten)]
    pub guest: GuestArgs,
}

/// `90`, `90s`, `10m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?}: expected e.g. 90, 90s, 10m, 1h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("bad duration unit in {s:?}: use s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

/// `I/N` with I < N.
pub fn parse_shard(s: &str) -> Result<(u64, u64), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("bad shard {s:?}: expected I/N"))?;
    let i: u64 = i.parse().map_err(|_| format!("bad shard index in {s:?}"))?;
    let n: u64 = n.parse().map_err(|_| format!("bad shard count in {s:?}"))?;
    if n == 0 || i >= n {
        return Err(format!("bad shard {s:?}: need 0 <= I < N"));
    }
    Ok((i, n))
}

/// Live progress: a spinner on a terminal, a line every 15 s otherwise.
#[derive(Debug)]
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last: Mutex<Instant>,
}

impl Progress {
    /// A progress display on stderr.
    pub fn new(prefix: &str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.set_prefix(prefix.to_string());
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} {spinner} [{elapsed_precise}] {msg}",
                )
                .expect("valid template"),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Progress {
            bar,
            last: Mutex::new(Instant::now()),
        }
    }

    /// Show the current statistics.
    pub fn update(&self, st: &CampaignStats) {
        match &self.bar {
            Some(b) => b.set_message(st.line()),
            None => {
                let mut last = self.last.lock().expect("progress lock");
                if last.elapsed() >= Duration::from_secs(15) {
                    eprintln!("pinfuzz: [{:.0}s] {}", st.elapsed_s, st.line());
                    *last = Instant::now();
                }
            }
        }
    }

    /// Remove the spinner.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Run the subcommand.
pub fn run(args: Args) -> Result<ExitCode> {
    if args.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let cache = Cache::from_env()?;
    let spec = kernel::ensure(&cache, &args.guest.kernel)
        .with_context(|| format!("provision kernel {}", args.guest.kernel))?;
    let cfg = CampaignConfig {
        kernel: spec,
        guest: args.guest.options(),
        seed: args.seed,
        duration: args.time,
        max_programs: args.max_programs,
        shard: args.shard,
        jobs: args.jobs,
        findings: args.findings.clone(),
        limits: Limits {
            max_steps: args.max_steps,
            ..Limits::FULL
        },
        stop_on_finding: args.stop_on_finding,
        minimize: !args.no_minimize,
        minimize_budget: 60,
        program_timeout: Duration::from_secs(60),
        profile: None,
    };
    eprintln!(
        "pinfuzz: fuzzing {} ({}) for {:?} with {} job(s), seed {}, shard {}/{}; findings in {}",
        cfg.kernel.name,
        cfg.kernel.release,
        cfg.duration,
        cfg.jobs,
        cfg.seed,
        cfg.shard.0,
        cfg.shard.1,
        cfg.findings.display()
    );
    let progress = Progress::new("pinfuzz");
    let stats = run_campaign(&cfg, &|st| progress.update(st))?;
    progress.finish();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        println!("{}", stats.line());
        println!(
            "steps compared exactly: {}, pages compared: {}, guest boots: {}",
            stats.steps_compared, stats.pages_compared, stats.boots
        );
        for (reason, n) in &stats.poisoned {
            println!("poisoned ({reason}): {n}");
        }
        for (t, n) in &stats.tolerated {
            println!("tolerated ({t}): {n}");
        }
    }
    let findings = stats.findings.values().sum::<u64>();
    if findings > 0 {
        eprintln!(
            "pinfuzz: {findings} program(s) found something ({} new); see {}",
            stats.new_findings,
            args.findings.display()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
