//! A fuzzing campaign: seeded generation of programs, the differential loop
//! in one or more guests, statistics, and findings.
//!
//! Program `i` of a campaign is generated from its own ChaCha8 stream,
//! seeded from the campaign seed and `i`, so any program can be
//! regenerated alone (`pinfuzz gen`-style) and shards (`--shard I/N`: the
//! programs with `i % N == I`) cover disjoint programs. Workers (one guest
//! each) take the next program index from a shared counter and share one
//! findings store. A finding is recorded as found before anything else
//! runs; a new one is then minimized in the guest (each try is a guest run)
//! and its files replaced by the minimized program and report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use reference::Profile;
use serde::{Deserialize, Serialize};

use crate::diff::{DiffRun, Outcome, run_diff};
use crate::finding::FindingStore;
use crate::kernel::KernelSpec;
use crate::minimize::{Mode, minimize};
use crate::op::Program;
use crate::program::{Limits, generate};
use crate::report::{Report, ReportContext};
use crate::vm::guest::{Guest, GuestOptions};

/// What a campaign does.
#[derive(Clone, Debug)]
pub struct CampaignConfig {
    /// The kernel.
    pub kernel: KernelSpec,
    /// Guest options (memory, module fault mode, …).
    pub guest: GuestOptions,
    /// Campaign seed.
    pub seed: u64,
    /// Stop after this much fuzzing time (from the first guest being ready).
    pub duration: Duration,
    /// Stop after this many programs (all workers together).
    pub max_programs: Option<u64>,
    /// Shard `index` of `count`.
    pub shard: (u64, u64),
    /// Parallel guests.
    pub jobs: usize,
    /// Where findings go.
    pub findings: PathBuf,
    /// Program size limits.
    pub limits: Limits,
    /// Stop at the first finding.
    pub stop_on_finding: bool,
    /// Minimize new findings (guest runs; capped by `minimize_budget`).
    pub minimize: bool,
    /// Most guest runs spent minimizing one finding.
    pub minimize_budget: usize,
    /// Per-program timeout.
    pub program_timeout: Duration,
    /// Model profile (`None`: from the guest's kernel release).
    pub profile: Option<Profile>,
}

/// What a campaign counted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CampaignStats {
    /// Programs run.
    pub programs: u64,
    /// Steps the kernel executed.
    pub steps: u64,
    /// Steps compared exactly.
    pub steps_compared: u64,
    /// Pages compared.
    pub pages_compared: u64,
    /// Programs that matched.
    pub matched: u64,
    /// Programs poisoned, by reason.
    pub poisoned: BTreeMap<String, u64>,
    /// Finding outcomes (new and known), by kind.
    pub findings: BTreeMap<String, u64>,
    /// Distinct new findings recorded.
    pub new_findings: u64,
    /// Tolerances used, by name.
    pub tolerated: BTreeMap<String, u64>,
    /// Guest boots (including restarts after crashes).
    pub boots: u64,
    /// Wall time, in seconds.
    pub elapsed_s: f64,
    /// Time from the first guest being ready to the first finding, in seconds.
    pub first_finding_s: Option<f64>,
    /// Steps of the first finding's minimized program.
    pub first_finding_steps: Option<usize>,
    /// Title of the first finding.
    pub first_finding_title: Option<String>,
}

impl CampaignStats {
    /// Steps per second.
    pub fn steps_per_s(&self) -> f64 {
        if self.elapsed_s > 0.0 {
            self.steps as f64 / self.elapsed_s
        } else {
            0.0
        }
    }

    /// Share of programs poisoned.
    pub fn poisoned_share(&self) -> f64 {
        let p: u64 = self.poisoned.values().sum();
        if self.programs > 0 {
            p as f64 / self.programs as f64
        } else {
            0.0
        }
    }

    /// One status line.
    pub fn line(&self) -> String {
        format!(
            "{} programs, {} steps ({:.0}/s), {:.1}% matched, {:.1}% poisoned, {} findings ({} new)",
            self.programs,
            self.steps,
            self.steps_per_s(),
            if self.programs > 0 {
                100.0 * self.matched as f64 / self.programs as f64
            } else {
                0.0
            },
            100.0 * self.poisoned_share(),
            self.findings.values().sum::<u64>(),
            self.new_findings
        )
    }
}

/// The seed of program `index` of a campaign (SplitMix64 of both).
pub fn program_seed(campaign: u64, index: u64) -> u64 {
    let mut z = campaign ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The campaign index of the `n`-th program a shard runs: shard `(I, N)`
/// runs the indices `i` with `i % N == I`, in order, so shards of one seed
/// are disjoint and together run exactly what the unsharded campaign runs.
pub fn shard_index(n: u64, shard: (u64, u64)) -> u64 {
    n * shard.1 + shard.0
}

/// Program `index` of a campaign.
pub fn campaign_program(seed: u64, index: u64, limits: &Limits) -> Program {
    let mut rng = ChaCha8Rng::seed_from_u64(program_seed(seed, index));
    generate(&mut rng, limits)
}

struct Shared {
    next: AtomicU64,
    stop: AtomicBool,
    stats: Mutex<CampaignStats>,
    store: FindingStore,
    started: Instant,
    /// When the first guest was ready: fuzzing time is measured from here.
    fuzzing_since: Mutex<Option<Instant>>,
}

/// Run a campaign; `progress` is called with the current statistics after
/// every program (from worker threads, serialized).
pub fn run_campaign(
    cfg: &CampaignConfig,
    progress: &(dyn Fn(&CampaignStats) + Sync),
) -> Result<CampaignStats> {
    let shared = Arc::new(Shared {
        next: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        stats: Mutex::new(CampaignStats::default()),
        store: FindingStore::open(&cfg.findings)?,
        started: Instant::now(),
        fuzzing_since: Mutex::new(None),
    });
    let errors: Mutex<Vec<anyhow::Error>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for worker in 0..cfg.jobs.max(1) {
            let shared = Arc::clone(&shared);
            let errors = &errors;
            scope.spawn(move || {
                if let Err(e) = worker_loop(cfg, &shared, worker, progress) {
                    shared.stop.store(true, Ordering::SeqCst);
                    errors
                        .lock()
                        .expect("errors lock")
                        .push(e.context(format!("worker {worker}")));
                }
            });
        }
    });
    let mut stats = shared.stats.lock().expect("stats lock").clone();
    stats.elapsed_s = shared.started.elapsed().as_secs_f64();
    let errors = errors.into_inner().expect("errors lock");
    if let Some(e) = errors.into_iter().next() {
        return Err(e);
    }
    Ok(stats)
}

fn worker_loop(
    cfg: &CampaignConfig,
    shared: &Shared,
    worker: usize,
    progress: &(dyn Fn(&CampaignStats) + Sync),
) -> Result<()> {
    let mut guest =
        Guest::boot(&cfg.kernel, &cfg.guest).with_context(|| format!("boot guest {worker}"))?;
    let hello = guest.hello()?;
    shared
        .fuzzing_since
        .lock()
        .expect("fuzzing_since lock")
        .get_or_insert_with(Instant::now);
    let profile = match cfg.profile {
        Some(p) => p,
        None => Profile::find(&hello.kernel_release)
            .with_context(|| format!("no model profile for kernel {}", hello.kernel_release))?,
    };
    let ctx = ReportContext {
        kernel_release: hello.kernel_release.clone(),
        kernel_name: cfg.kernel.name.clone(),
        profile: profile.name.to_string(),
        fault_mode: cfg.guest.fault,
        origin: String::new(),
        reproduce: String::new(),
    };
    loop {
        // The budget is fuzzing time: it starts when the first guest is
        // ready, not while the agent builds or the kernel boots.
        let since = shared
            .fuzzing_since
            .lock()
            .expect("fuzzing_since lock")
            .unwrap_or(shared.started);
        if shared.stop.load(Ordering::SeqCst) || since.elapsed() >= cfg.duration {
            break;
        }
        let n = shared.next.fetch_add(1, Ordering::SeqCst);
        if cfg.max_programs.is_some_and(|m| n >= m) {
            break;
        }
        let index = shard_index(n, cfg.shard);
        let program = campaign_program(cfg.seed, index, &cfg.limits);
        let run = run_diff(&mut guest, &program, profile, cfg.program_timeout)?;
        let finding = run.outcome.is_finding();
        {
            let mut st = shared.stats.lock().expect("stats lock");
            account(&mut st, &run);
            st.elapsed_s = shared.started.elapsed().as_secs_f64();
        }
        if finding {
            let origin = format!("pinfuzz fuzz --seed {} program {index}", cfg.seed);
            handle_finding(cfg, shared, &mut guest, profile, &ctx, program, run, origin)?;
            if cfg.stop_on_finding {
                shared.stop.store(true, Ordering::SeqCst);
            }
        }
        let st = shared.stats.lock().expect("stats lock").clone();
        progress(&st);
    }
    shared.stats.lock().expect("stats lock").boots += u64::from(guest.boots());
    let _ = guest.power_off();
    Ok(())
}

fn account(st: &mut CampaignStats, run: &DiffRun) {
    st.programs += 1;
    st.steps += run.kernel.steps.len() as u64;
    st.steps_compared += run.stats.steps;
    st.pages_compared += run.stats.pages;
    for (k, v) in &run.stats.tolerated {
        *st.tolerated.entry(k.clone()).or_default() += v;
    }
    match &run.outcome {
        Outcome::Match => st.matched += 1,
        Outcome::Poisoned { reason, .. } => {
            *st.poisoned.entry(reason.name().into()).or_default() += 1
        }
        Outcome::Disturbed(_) => *st.poisoned.entry("disturbed".into()).or_default() += 1,
        other => {
            let kind = match other {
                Outcome::Diverged(_) => "diverged",
                Outcome::Crashed(_) => "crash",
                Outcome::Incident(_) => "incident",
                Outcome::ResetFailed(_) => "reset",
                _ => "agent",
            };
            *st.findings.entry(kind.into()).or_default() += 1;
        }
    }
}

/// Record a finding at once, then (if new) minimize it and replace its files.
#[allow(clippy::too_many_arguments)]
fn handle_finding(
    cfg: &CampaignConfig,
    shared: &Shared,
    guest: &mut Guest,
    profile: Profile,
    ctx: &ReportContext,
    program: Program,
    run: DiffRun,
    origin: String,
) -> Result<()> {
    let found_at = Instant::now();
    let title = run.outcome.title().expect("a finding has a title");
    let path = shared.store.path_for(&title);
    let mut ctx = ctx.clone();
    ctx.origin = origin;
    ctx.reproduce = format!(
        "pinfuzz repro {} --kernel {}{}",
        path.display(),
        cfg.kernel.name,
        if cfg.guest.fault != 0 {
            format!(" --fault {}", cfg.guest.fault)
        } else {
            String::new()
        }
    );
    let report = Report::new(&program, &run, &ctx);
    let recorded = shared.store.record(&report, &program, None)?;
    if !recorded.new {
        return Ok(());
    }
    let mut final_steps = program.steps.len();
    if cfg.minimize {
        let mut pred = |candidate: &Program| -> bool {
            run_diff(guest, candidate, profile, cfg.program_timeout)
                .ok()
                .and_then(|r| r.outcome.title())
                .is_some_and(|t| t == title)
        };
        let (min, _stats) = minimize(
            &program,
            run.outcome.step(),
            Mode::Vm {
                budget: cfg.minimize_budget,
            },
            &mut pred,
        );
        if min != program {
            let rerun = run_diff(guest, &min, profile, cfg.program_timeout)?;
            if rerun.outcome.title().as_deref() == Some(title.as_str()) {
                let report = Report::new(&min, &rerun, &ctx);
                shared
                    .store
                    .update_minimized(&recorded.path, &report, &min)?;
                final_steps = min.steps.len();
            }
        }
    }
    let mut st = shared.stats.lock().expect("stats lock");
    st.new_findings += 1;
    if st.first_finding_s.is_none() {
        let since = shared
            .fuzzing_since
            .lock()
            .expect("fuzzing_since lock")
            .unwrap_or(shared.started);
        st.first_finding_s = Some(found_at.duration_since(since).as_secs_f64());
        st.first_finding_steps = Some(final_steps);
        st.first_finding_title = Some(title);
    }
    Ok(())
}
