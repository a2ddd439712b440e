//! `pinfuzz bench`: the differential loop's speed against a bare C program
//! making the same syscalls, ioctls and state reads for the same programs,
//! side by side in one guest.
//!
//! The programs are a seeded campaign's (`campaign::campaign_program`).
//! Each round measures, in this order:
//! - **loop**: every program through the loop as `pinfuzz fuzz` runs it
//!   (`Guest::run_program`, `run_model`, `oracle::compare`), timed on the
//!   host; the executor's own `RunSummary::timing` (guest clock) comes with
//!   each run, so the same pass also gives **executor** (the executor alone
//!   in the guest) and where the rest of the time goes (channel and agent,
//!   model, comparison);
//! - **baseline**: the same programs compiled by the C reproducer generator
//!   into one static binary without the checks (`creproducer::emit_baseline`:
//!   a forked runner per program, the executor's setup, operations and
//!   observations, the reset-check reads), run in the same guest, timed by
//!   itself.
//!
//! The two alternate chunk by chunk (`chunk` programs through the loop,
//! then the same programs in the baseline), so that the host's load, which
//! drifts (the machine is shared), weighs on both alike; the report gives
//! every round and the median of each figure.

pub mod baseline;
pub mod report;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use reference::Profile;

use crate::backend::run_model;
use crate::campaign::campaign_program;
use crate::kernel::KernelSpec;
use crate::op::Program;
use crate::oracle::compare;
use crate::program::Limits;
use crate::vm::guest::{Guest, GuestOptions, RunEnd};
use baseline::BaselineRun;
pub use report::{BenchReport, LoopRun, Round};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// The kernel.
    pub kernel: KernelSpec,
    /// Guest options.
    pub guest: GuestOptions,
    /// Campaign seed of the programs.
    pub seed: u64,
    /// How many programs (program `i` of the campaign, `i` in `0..programs`).
    pub programs: u64,
    /// Program size limits.
    pub limits: Limits,
    /// Rounds (each: every program through the loop and the baseline).
    pub rounds: usize,
    /// Programs per chunk: the loop and the baseline alternate chunk by
    /// chunk.
    pub chunk: usize,
    /// Per-program timeout of the loop.
    pub program_timeout: Duration,
    /// Where the baseline's C source and binary go (a temporary directory
    /// if `None`).
    pub keep: Option<std::path::PathBuf>,
}

/// The bench programs.
pub fn programs(seed: u64, count: u64, limits: &Limits) -> Vec<Program> {
    (0..count)
        .map(|i| campaign_program(seed, i, limits))
        .collect()
}

/// Run the bench; `progress` gets a line after each measurement.
pub fn run_bench(cfg: &BenchConfig, progress: &mut dyn FnMut(&str)) -> Result<BenchReport> {
    let programs = programs(cfg.seed, cfg.programs, &cfg.limits);
    let origin = format!(
        "pinfuzz bench: campaign seed {}, programs 0..{}, max {} steps",
        cfg.seed, cfg.programs, cfg.limits.max_steps
    );
    let tmp = tempfile::Builder::new()
        .prefix("pinfuzz-bench-")
        .tempdir()
        .context("create a temporary directory for the baseline")?;
    let dir = match &cfg.keep {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
            d.clone()
        }
        None => tmp.path().to_path_buf(),
    };
    let t = Instant::now();
    let binary = baseline::build(&programs, &origin, &dir)?;
    progress(&format!(
        "built the C baseline ({} programs, {} KiB) in {:.1} s",
        programs.len(),
        binary.len() / 1024,
        t.elapsed().as_secs_f64()
    ));

    let mut guest = Guest::boot(&cfg.kernel, &cfg.guest).context("boot the guest")?;
    let hello = guest.hello()?;
    let profile = Profile::find(&hello.kernel_release)
        .with_context(|| format!("no model profile for kernel {}", hello.kernel_release))?;
    // The C baseline's timeout: generous, it is only a hang guard.
    let timeout = cfg.program_timeout * (cfg.chunk.max(1) as u32);
    let chunk = cfg.chunk.max(1);
    let mut rounds = Vec::new();
    for r in 0..cfg.rounds {
        // Chunk by chunk, the loop then the baseline on the same programs,
        // so that the host's load, which drifts, weighs on both alike.
        let mut lp = LoopRun::default();
        let mut base = BaselineRun::default();
        // The host's clock around the baseline's requests, against the
        // guest's clock in them (`BaselineRun::measured_clock_ratio`).
        let mut host_span: Option<(Instant, Instant)> = None;
        for (k, part) in programs.chunks(chunk).enumerate() {
            lp.add(&loop_pass(&mut guest, part, profile, cfg.program_timeout)?);
            let first = (k * chunk) as u64;
            let before = Instant::now();
            let b = baseline::run_chunk(&mut guest, &binary, first, part.len() as u64, timeout)?;
            let after = Instant::now();
            host_span = Some((host_span.map_or(before, |s| s.0), after));
            base.add(&b);
        }
        base.host_span_ns = host_span.map_or(0, |(a, b)| (b - a).as_nanos() as u64);
        progress(&format!("round {}: {}", r + 1, lp.line()));
        progress(&format!(
            "round {}: C baseline {} steps in {:.2} s = {:.0} steps/s",
            r + 1,
            base.steps,
            base.wall_ns as f64 / 1e9,
            base.steps_per_s(),
        ));
        rounds.push(Round {
            loop_run: lp,
            baseline: base,
        });
    }
    let _ = guest.power_off();
    Ok(BenchReport::new(
        &hello.kernel_release,
        cfg.seed,
        programs.len() as u64,
        cfg.limits.max_steps,
        rounds,
    ))
}

/// Every program once through the loop, as `pinfuzz fuzz` runs it.
fn loop_pass(
    guest: &mut Guest,
    programs: &[Program],
    profile: Profile,
    timeout: Duration,
) -> Result<LoopRun> {
    let mut lp = LoopRun::default();
    let started = Instant::now();
    for program in programs {
        let t0 = Instant::now();
        let run = guest.run_program(program, timeout, &mut |_| Ok(()))?;
        let t1 = Instant::now();
        let kernel = run.trace();
        let model = run_model(program, profile);
        let t2 = Instant::now();
        let (verdict, _) = compare(program, &model, &kernel);
        let t3 = Instant::now();
        lp.programs += 1;
        lp.steps += run.steps.len() as u64;
        lp.guest_request_ns += (t1 - t0).as_nanos() as u64;
        lp.model_ns += (t2 - t1).as_nanos() as u64;
        lp.compare_ns += (t3 - t2).as_nanos() as u64;
        match &run.end {
            RunEnd::Finished(summary) => {
                let t = &summary.timing;
                lp.exec.total_ns += t.total_ns;
                lp.exec.setup_ns += t.setup_ns;
                lp.exec.op_ns += t.op_ns;
                lp.exec.drain_ns += t.drain_ns;
                lp.exec.counters_ns += t.counters_ns;
                lp.exec.queries_ns += t.queries_ns;
                lp.exec.teardown_ns += t.teardown_ns;
                lp.exec.sink_ns += t.sink_ns;
                lp.exec.reap_ns += t.reap_ns;
                lp.exec.fork_ns += t.fork_ns;
                lp.exec.exit_ns += t.exit_ns;
                lp.exec.before_ns += t.before_ns;
                lp.exec.after_ns += t.after_ns;
                lp.exec.agent_ns += t.agent_ns;
                if summary.stopped.is_some() {
                    lp.stopped += 1;
                }
            }
            RunEnd::Failed(_) | RunEnd::Crashed(_) => lp.failed += 1,
        }
        if matches!(verdict, crate::oracle::Verdict::Match) {
            lp.matched += 1;
        }
    }
    lp.wall_ns = started.elapsed().as_nanos() as u64;
    Ok(lp)
}
