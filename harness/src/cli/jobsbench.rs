//! `pinfuzz jobsbench`: `pinfuzz fuzz --jobs 1` against `--jobs 2` (or any
//! list of job counts) side by side, on the same programs, in one run, with
//! where the CPU time went.
//!
//! Each pass is a real campaign (`campaign::run_campaign`, as `pinfuzz
//! fuzz` runs it: one guest per job, shared program counter, findings
//! store) over programs `0..N` of one seed, so every pass runs exactly the
//! same programs. A pass reports:
//! - **steps/s overall**: steps over the pass's wall time, guest boots
//!   included;
//! - **steps/s steady**: from the moment the pass had finished as many
//!   programs as it has jobs (every guest is up by then, in practice) to
//!   its end — the rate a long campaign sees;
//! - **CPU**: the pinfuzz process (`getrusage(RUSAGE_SELF)`: model,
//!   comparison, channel decoding, console reading), its QEMU children
//!   (`RUSAGE_CHILDREN`, counted when the campaign reaps them at its end),
//!   and every other process on the machine (`/proc/stat` busy time minus
//!   both): the machine is shared, and a second guest can only go as fast
//!   as a free core lets it.
//!
//! From the CPU per program it also gives the best ratio the machine could
//! have reached in that pass (cores left by the other processes over CPU
//! per program, against the one-job rate), so a missed target says whether
//! pinfuzz or the machine was the limit. Passes alternate order between
//! rounds so that a drift in the machine's load hits every job count.

use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::campaign::{CampaignConfig, CampaignStats, run_campaign};
use crate::cli::vm::GuestArgs;
use crate::kernel::{self, cache::Cache};
use crate::program::Limits;

/// Arguments of `pinfuzz jobsbench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Programs per pass (programs 0..N of the seed: every pass runs the same ones).
    #[arg(long, default_value_t = 300)]
    pub programs: u64,
    /// Campaign seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Job counts to compare, in order (the first is the reference).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub jobs: Vec<usize>,
    /// Rounds (each runs every job count; the order alternates).
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Most steps per program (as `pinfuzz fuzz --max-steps`).
    #[arg(long, default_value_t = 32)]
    pub max_steps: usize,
    /// Exit with status 1 if the steady ratio of the last job count to the
    /// first is below this.
    #[arg(long, value_name = "RATIO")]
    pub require_ratio: Option<f64>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The guest.
    #[command(flatten)]
    pub guest: GuestArgs,
}

/// CPU seconds, split by who used them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Cpu {
    /// The pinfuzz process (all its threads).
    pub pinfuzz_s: f64,
    /// Its reaped children: the QEMU guests.
    pub qemu_s: f64,
    /// Everything else on the machine.
    pub others_s: f64,
}

/// One pass.
#[derive(Clone, Debug, Serialize)]
pub struct Pass {
    /// Round.
    pub round: usize,
    /// Jobs (guests).
    pub jobs: usize,
    /// Programs run.
    pub programs: u64,
    /// Steps the kernel executed.
    pub steps: u64,
    /// Wall time of the pass, seconds.
    pub wall_s: f64,
    /// Steps per second over the whole pass.
    pub steps_per_s: f64,
    /// Wall time of the steady window, seconds.
    pub steady_s: f64,
    /// Steps per second in the steady window.
    pub steady_steps_per_s: f64,
    /// Seconds until the pass had finished `jobs` programs (boots and the
    /// first programs).
    pub warmup_s: f64,
    /// CPU used during the pass.
    pub cpu: Cpu,
    /// pinfuzz CPU per program, milliseconds.
    pub pinfuzz_ms_per_program: f64,
    /// QEMU CPU per program, milliseconds (boots included).
    pub qemu_ms_per_program: f64,
    /// Cores the machine has.
    pub cores: usize,
    /// Cores other processes used on average during the pass.
    pub others_cores: f64,
    /// Programs that were findings (should be 0 on a healthy kernel).
    pub findings: u64,
}

/// The whole benchmark.
#[derive(Clone, Debug, Serialize)]
pub struct JobsBench {
    /// Kernel release.
    pub kernel: String,
    /// Programs per pass.
    pub programs: u64,
    /// Seed.
    pub seed: u64,
    /// The reference job count (the first of `--jobs`).
    pub base_jobs: usize,
    /// Every pass.
    pub passes: Vec<Pass>,
    /// Per job count (after the first): median steady steps/s over the
    /// first job count's.
    pub steady_ratio: Vec<(usize, f64)>,
    /// Same, overall steps/s (boots included).
    pub overall_ratio: Vec<(usize, f64)>,
    /// Per job count: the steady ratio the CPU left by other processes
    /// allowed at most (machine cores minus others' use, over CPU per
    /// program), median over rounds.
    pub cpu_bound_ratio: Vec<(usize, f64)>,
}

/// Run the subcommand.
pub fn run(args: Args) -> Result<ExitCode> {
    if args.jobs.is_empty() || args.jobs.contains(&0) {
        bail!("--jobs needs job counts of at least 1, e.g. --jobs 1,2");
    }
    let cache = Cache::from_env()?;
    let spec = kernel::ensure(&cache, &args.guest.kernel)
        .with_context(|| format!("provision kernel {}", args.guest.kernel))?;
    // Build (or check) the guest agent before any pass is timed.
    crate::vm::agent_bin::agent_binary()?;
    let findings = tempfile::Builder::new()
        .prefix("pinfuzz-jobsbench-")
        .tempdir()
        .context("create a findings directory for the benchmark")?;
    let mut passes = Vec::new();
    for round in 0..args.rounds.max(1) {
        let mut order = args.jobs.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        for &jobs in &order {
            let cfg = CampaignConfig {
                kernel: spec.clone(),
                guest: args.guest.options(),
                seed: args.seed,
                duration: Duration::from_secs(24 * 3600),
                max_programs: Some(args.programs),
                shard: (0, 1),
                jobs,
                findings: findings.path().join(format!("r{round}-j{jobs}")),
                limits: Limits {
                    max_steps: args.max_steps,
                    ..Limits::FULL
                },
                stop_on_finding: false,
                minimize: false,
                minimize_budget: 0,
                program_timeout: Duration::from_secs(60),
                profile: None,
            };
            eprintln!(
                "pinfuzz jobsbench: round {round}, {jobs} job(s), {} programs",
                args.programs
            );
            let pass = one_pass(&cfg, round)?;
            eprintln!(
                "pinfuzz jobsbench:   {:.1} steps/s steady, {:.1} overall, pinfuzz {:.1} ms + qemu {:.1} ms CPU per program, others {:.2} cores",
                pass.steady_steps_per_s,
                pass.steps_per_s,
                pass.pinfuzz_ms_per_program,
                pass.qemu_ms_per_program,
                pass.others_cores
            );
            passes.push(pass);
        }
    }
    let release = spec.release.clone();
    let report = summarize(release, &args, passes);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    if let (Some(min), Some((_, got))) = (args.require_ratio, report.steady_ratio.last())
        && *got < min
    {
        eprintln!("pinfuzz jobsbench: steady ratio {got:.2} is below the required {min:.2}");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Run one campaign and measure it.
fn one_pass(cfg: &CampaignConfig, round: usize) -> Result<Pass> {
    // The steady window opens when `jobs` programs have finished.
    let window: Mutex<Option<(Instant, u64)>> = Mutex::new(None);
    let self0 = rusage(libc::RUSAGE_SELF);
    let children0 = rusage(libc::RUSAGE_CHILDREN);
    let machine0 = machine_busy_s()?;
    let t0 = Instant::now();
    let stats: CampaignStats = run_campaign(cfg, &|st| {
        let mut w = window.lock().expect("window lock");
        if w.is_none() && st.programs >= cfg.jobs as u64 {
            *w = Some((Instant::now(), st.steps));
        }
    })?;
    let t_end = Instant::now();
    let wall = t_end.duration_since(t0).as_secs_f64();
    let cpu_self = rusage(libc::RUSAGE_SELF) - self0;
    let cpu_children = rusage(libc::RUSAGE_CHILDREN) - children0;
    let machine = machine_busy_s()? - machine0;
    let (opened, steps_at) = window.into_inner().expect("window lock").unwrap_or((t0, 0));
    let steady_s = t_end.duration_since(opened).as_secs_f64();
    let programs = stats.programs.max(1) as f64;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let others = (machine - cpu_self - cpu_children).max(0.0);
    Ok(Pass {
        round,
        jobs: cfg.jobs,
        programs: stats.programs,
        steps: stats.steps,
        wall_s: wall,
        steps_per_s: stats.steps as f64 / wall.max(1e-9),
        steady_s,
        steady_steps_per_s: (stats.steps - steps_at) as f64 / steady_s.max(1e-9),
        warmup_s: opened.duration_since(t0).as_secs_f64(),
        cpu: Cpu {
            pinfuzz_s: cpu_self,
            qemu_s: cpu_children,
            others_s: others,
        },
        pinfuzz_ms_per_program: 1000.0 * cpu_self / programs,
        qemu_ms_per_program: 1000.0 * cpu_children / programs,
        cores,
        others_cores: others / wall.max(1e-9),
        findings: stats.findings.values().sum(),
    })
}

/// User + system CPU seconds of `who`.
fn rusage(who: libc::c_int) -> f64 {
    // SAFETY: getrusage fills the struct it is given; zeroed is a valid start.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(who, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Busy CPU seconds of the whole machine so far (`/proc/stat` line `cpu`:
/// everything but idle and iowait).
fn machine_busy_s() -> Result<f64> {
    let text = std::fs::read_to_string("/proc/stat").context("read /proc/stat")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("/proc/stat has no cpu line")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest* are in user).
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(busy as f64 / hz)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn summarize(kernel: String, args: &Args, passes: Vec<Pass>) -> JobsBench {
    let of = |jobs: usize, f: &dyn Fn(&Pass) -> f64| -> f64 {
        median(passes.iter().filter(|p| p.jobs == jobs).map(f).collect())
    };
    let base = args.jobs[0];
    let base_steady = of(base, &|p| p.steady_steps_per_s).max(1e-9);
    let base_overall = of(base, &|p| p.steps_per_s).max(1e-9);
    let mut steady_ratio = Vec::new();
    let mut overall_ratio = Vec::new();
    let mut cpu_bound_ratio = Vec::new();
    for &jobs in args.jobs.iter().skip(1) {
        steady_ratio.push((jobs, of(jobs, &|p| p.steady_steps_per_s) / base_steady));
        overall_ratio.push((jobs, of(jobs, &|p| p.steps_per_s) / base_overall));
        // Programs/s the free cores allow: (cores - others) / CPU per
        // program, capped by the jobs (a guest uses one core at most),
        // against the one-job pass's program rate.
        let bound = of(jobs, &|p| {
            let free = (p.cores as f64 - p.others_cores).clamp(0.0, p.jobs as f64);
            let per_program = (p.pinfuzz_ms_per_program + p.qemu_ms_per_program) / 1000.0;
            let steps_per_program = p.steps as f64 / p.programs.max(1) as f64;
            free / per_program.max(1e-9) * steps_per_program
        });
        cpu_bound_ratio.push((jobs, bound / base_steady));
    }
    JobsBench {
        kernel,
        programs: args.programs,
        seed: args.seed,
        base_jobs: base,
        passes,
        steady_ratio,
        overall_ratio,
        cpu_bound_ratio,
    }
}

fn render(r: &JobsBench) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "pinfuzz jobsbench: {} programs of seed {} per pass on {}",
        r.programs, r.seed, r.kernel
    );
    let _ = writeln!(
        s,
        "{:>5} {:>4} {:>6} {:>7} {:>8} {:>9} {:>8} {:>9} {:>10} {:>9} {:>8}",
        "round",
        "jobs",
        "progs",
        "steps",
        "wall s",
        "steps/s",
        "warmup",
        "steady/s",
        "pinfuzz ms",
        "qemu ms",
        "others"
    );
    for p in &r.passes {
        let _ = writeln!(
            s,
            "{:>5} {:>4} {:>6} {:>7} {:>8.1} {:>9.1} {:>8.1} {:>9.1} {:>10.1} {:>9.1} {:>8.2}",
            p.round,
            p.jobs,
            p.programs,
            p.steps,
            p.wall_s,
            p.steps_per_s,
            p.warmup_s,
            p.steady_steps_per_s,
            p.pinfuzz_ms_per_program,
            p.qemu_ms_per_program,
            p.others_cores
        );
    }
    let _ = writeln!(
        s,
        "(pinfuzz/qemu ms: CPU per program; others: cores other processes used)"
    );
    for ((jobs, steady), ((_, overall), (_, bound))) in r
        .steady_ratio
        .iter()
        .zip(r.overall_ratio.iter().zip(&r.cpu_bound_ratio))
    {
        let _ = writeln!(
            s,
            "jobs {jobs} / jobs {}: steady {steady:.2}x, overall {overall:.2}x; \
             the CPU the other processes left allowed {bound:.2}x",
            r.base_jobs,
        );
    }
    s
}
