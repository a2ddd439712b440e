//! The OSS-Fuzz-style nightly (`ci/nightly` builds, then runs `pinfuzz
//! nightly`): every fuzzer for a budget, findings deduplicated against a
//! persistent state, known ones re-run, new ones minimized, the corpus
//! merged and pruned, a report in Markdown and JSON.
//!
//! Order of a night:
//! 1. **Re-run known findings** of the state ([`recheck`]): still
//!    reproducing, or fixed (a fixed one that reproduces is a regression).
//! 2. **Fuzz** for the budget, in two lanes: the kernel lane runs `pinfuzz
//!    fuzz` campaigns (`campaign::run_campaign`, without stopping at
//!    findings) on each kernel in turn; the model lane runs each model-only
//!    libFuzzer target in turn ([`libfuzzer`], restarted after crashes).
//!    With two or more cores the lanes run side by side and each gets the
//!    whole budget; otherwise one after the other, two thirds of the budget
//!    to the kernels.
//! 3. **Triage**: the campaigns' findings and the targets' artifacts
//!    (replayed in-process and titled, [`modelcrash`]) are merged into the
//!    state by title ([`state`]): new, known, or regressed.
//! 4. **Minimize** the new ones (kernel: in a guest, [`shrink`]; model:
//!    in-process, during triage).
//! 5. **Corpus**: libFuzzer corpora merged (`-merge=1`); the `model`
//!    target's corpus and the campaigns' programs that add model coverage
//!    imported into the text corpus `<state>/corpus`, which is then pruned
//!    to the smallest programs keeping every coverage element
//!    (`corpus::import`, `corpus::minimize`: what `pinfuzz corpus import`
//!    and `pinfuzz corpus minimize` run). Tomorrow's targets start from it.
//! 6. **Report** ([`report`]) to `<out>/report.{md,json}`; the exit status
//!    is 1 when something new or regressed was found.

pub mod libfuzzer;
pub mod modelcrash;
pub mod recheck;
pub mod report;
pub mod shrink;
pub mod state;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};

use crate::campaign::{CampaignConfig, campaign_program, run_campaign};
use crate::corpus::coverage::{Element, signature};
use crate::corpus::store::{Added, TextCorpus};
use crate::finding::{FindingStore, read_report, write_atomic};
use crate::kernel::{self, Cache};
use crate::program::Limits;
use crate::vm::GuestOptions;
use report::{CorpusSummary, KernelRun, Listed, NightlyReport};
use state::{Found, Health, Merged, Source, State};

/// What a night runs.
#[derive(Clone, Debug)]
pub struct NightlyConfig {
    /// Fuzzing budget (wall clock of the fuzzing phase).
    pub budget: Duration,
    /// Persistent state: findings, corpora.
    pub state: PathBuf,
    /// Tonight's output: logs, raw findings, artifacts, the report.
    pub out: PathBuf,
    /// Kernels for `pinfuzz fuzz` campaigns.
    pub kernels: Vec<String>,
    /// Model-only libFuzzer targets.
    pub targets: Vec<String>,
    /// Where `cargo fuzz build` put the target binaries.
    pub fuzz_bin_dir: PathBuf,
    /// Text programs that seed the targets' raw corpora.
    pub seeds: Vec<PathBuf>,
    /// Guests per campaign.
    pub jobs: usize,
    /// Shard of the campaigns' seed space.
    pub shard: (u64, u64),
    /// Campaign seed (also libFuzzer's `-seed`).
    pub seed: u64,
    /// Run the lanes side by side.
    pub parallel: bool,
    /// Guest options (memory, accelerator) for campaigns and re-runs.
    pub guest: GuestOptions,
    /// Most guest runs to minimize one new kernel finding.
    pub minimize_budget: usize,
    /// Build time `ci/nightly` measured, for the report.
    pub build_s: Option<f64>,
}

/// Run a night. `Ok` holds the report (already written); its `exit` is
/// the status to exit with.
///
/// # Errors
/// The state or output cannot be written, a target binary is missing;
/// a campaign or target that fails is a problem in the report instead.
pub fn run(cfg: &NightlyConfig) -> Result<NightlyReport> {
    let t0 = Instant::now();
    let started = utc(SystemTime::now());
    let night = started.replace(['-', ':'], "");
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("create {}", cfg.out.display()))?;
    let state = State::open(&cfg.state)?;
    for t in &cfg.targets {
        let bin = cfg.fuzz_bin_dir.join(t);
        if !bin.is_file() {
            bail!(
                "fuzz target binary {} is missing (build it with `cargo +nightly fuzz build {t}`)",
                bin.display()
            );
        }
    }
    let mut problems = Vec::new();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    eprintln!("pinfuzz nightly {night}: re-running known findings");
    let rechecked = recheck::recheck_all(
        &state,
        &night,
        &cfg.kernels,
        &cfg.guest,
        Duration::from_secs(60),
    )?;

    let (kernel_budget, model_budget) = split_budget(cfg);
    eprintln!(
        "pinfuzz nightly {night}: fuzzing for {} s ({}): kernels {:?} {} s each, targets {:?} {} s each",
        cfg.budget.as_secs(),
        if cfg.parallel {
            "lanes side by side"
        } else {
            "lanes in turn"
        },
        cfg.kernels,
        kernel_budget,
        cfg.targets,
        model_budget
    );
    let (kernels, targets) = if cfg.parallel {
        std::thread::scope(|s| {
            let model = s.spawn(|| model_lane(cfg, model_budget));
            let kernels = kernel_lane(cfg, kernel_budget);
            let targets = model
                .join()
                .unwrap_or_else(|_| (Vec::new(), vec!["the model lane panicked".to_string()]));
            (kernels, targets)
        })
    } else {
        let kernels = kernel_lane(cfg, kernel_budget);
        (kernels, model_lane(cfg, model_budget))
    };
    let (mut kernel_runs, kernel_problems) = kernels;
    let (target_runs, target_problems) = targets;
    problems.extend(kernel_problems);
    problems.extend(target_problems);

    eprintln!("pinfuzz nightly {night}: triage");
    let mut found = Vec::new();
    for k in &kernel_runs {
        let store = FindingStore::open(&cfg.out.join("findings").join(&k.kernel))?;
        for dir in store.list()? {
            let report = read_report(&dir)?;
            let hits = std::fs::read_to_string(dir.join("hits"))
                .ok()
                .and_then(|h| h.trim().parse().ok())
                .unwrap_or(1);
            found.push((
                Found {
                    title: report.title,
                    source: Source::Kernel {
                        kernel: k.kernel.clone(),
                        fault: cfg.guest.fault,
                    },
                    files: dir,
                    hits,
                },
                None,
            ));
        }
    }
    let triage_dir = cfg.out.join("findings").join("model");
    for t in &target_runs {
        for artifact in &t.artifacts {
            match modelcrash::triage(&t.target, artifact, &triage_dir) {
                Ok((crash, dir)) => found.push((
                    Found {
                        title: crash.title,
                        source: Source::Model {
                            target: t.target.clone(),
                        },
                        files: dir,
                        hits: 1,
                    },
                    crash.steps,
                )),
                Err(e) => problems.push(format!("triage of {}: {e:#}", artifact.display())),
            }
        }
    }
    // Several artifacts of one title tonight: one entry, hits summed.
    let mut merged_found: Vec<(Found, Option<(usize, usize)>)> = Vec::new();
    for (f, steps) in found {
        match merged_found.iter_mut().find(|(g, _)| g.title == f.title) {
            Some((g, _)) => g.hits += f.hits,
            None => merged_found.push((f, steps)),
        }
    }
    let (mut new, mut known, mut regressed) = (Vec::new(), Vec::new(), Vec::new());
    for (f, steps) in merged_found {
        let (how, dir) = state.merge(&f, &night)?;
        let listed = Listed {
            title: f.title.clone(),
            place: state::place(&f.source),
            dir,
            hits: f.hits,
            steps,
        };
        match how {
            Merged::New => new.push((listed, f.source)),
            Merged::Known => known.push(listed),
            Merged::Regressed => regressed.push(listed),
        }
    }

    eprintln!(
        "pinfuzz nightly {night}: minimizing {} new finding(s)",
        new.len()
    );
    minimize_new(cfg, &mut new, &mut problems);
    let new: Vec<Listed> = new.into_iter().map(|(l, _)| l).collect();

    eprintln!("pinfuzz nightly {night}: corpus");
    let corpus = match corpus_phase(cfg, &target_runs, &mut kernel_runs) {
        Ok(c) => c,
        Err(e) => {
            problems.push(format!("corpus merge: {e:#}"));
            CorpusSummary::default()
        }
    };

    let all = state.list()?;
    let open_total = all.iter().filter(|(_, s)| s.health == Health::Open).count();
    let exit = u8::from(!new.is_empty() || !regressed.is_empty());
    let report = NightlyReport {
        night,
        started,
        finished: utc(SystemTime::now()),
        budget_s: cfg.budget.as_secs(),
        wall_s: t0.elapsed().as_secs_f64(),
        build_s: cfg.build_s,
        seed: cfg.seed,
        shard: format!("{}/{}", cfg.shard.0, cfg.shard.1),
        jobs: cfg.jobs,
        parallel: cfg.parallel,
        cores,
        kernels: kernel_runs,
        targets: target_runs,
        corpus,
        new,
        known,
        regressed,
        rechecked,
        open_total,
        fixed_total: all.len() - open_total,
        problems,
        exit,
    };
    write_atomic(
        &cfg.out.join("report.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    write_atomic(&cfg.out.join("report.md"), report.markdown().as_bytes())?;
    Ok(report)
}

/// Seconds per kernel and per target.
fn split_budget(cfg: &NightlyConfig) -> (u64, u64) {
    let b = cfg.budget.as_secs().max(1);
    let nk = cfg.kernels.len() as u64;
    let nt = cfg.targets.len() as u64;
    let (kb, tb) = match (nk, nt, cfg.parallel) {
        (0, _, _) => (0, b),
        (_, 0, _) => (b, 0),
        (_, _, true) => (b, b),
        (_, _, false) => (b * 2 / 3, b - b * 2 / 3),
    };
    (kb / nk.max(1), tb / nt.max(1))
}

/// The kernel lane: one campaign per kernel, in turn.
fn kernel_lane(cfg: &NightlyConfig, budget: u64) -> (Vec<KernelRun>, Vec<String>) {
    let mut runs = Vec::new();
    let mut problems = Vec::new();
    for k in &cfg.kernels {
        match kernel_campaign(cfg, k, budget) {
            Ok(run) => runs.push(run),
            Err(e) => {
                problems.push(format!("kernel {k}: {e:#}"));
                runs.push(KernelRun {
                    kernel: k.clone(),
                    release: String::new(),
                    budget_s: budget,
                    warmup_s: 0.0,
                    stats: Default::default(),
                    steps_per_s: 0.0,
                    coverage_elements: 0,
                    corpus_added: 0,
                    error: Some(format!("{e:#}")),
                });
            }
        }
    }
    (runs, problems)
}

fn kernel_campaign(cfg: &NightlyConfig, name: &str, budget: u64) -> Result<KernelRun> {
    let cache = Cache::from_env()?;
    let spec = kernel::ensure(&cache, name).with_context(|| format!("provision kernel {name}"))?;
    let campaign = CampaignConfig {
        kernel: spec.clone(),
        guest: cfg.guest.clone(),
        seed: cfg.seed,
        duration: Duration::from_secs(budget),
        max_programs: None,
        shard: cfg.shard,
        jobs: cfg.jobs,
        findings: cfg.out.join("findings").join(name),
        limits: Limits {
            max_steps: crate::fuzzing::MODEL_MAX_STEPS,
            ..Limits::FULL
        },
        stop_on_finding: false,
        // Only new findings are minimized, after triage.
        minimize: false,
        minimize_budget: 0,
        program_timeout: Duration::from_secs(60),
        profile: None,
    };
    let last = AtomicU64::new(0);
    // (elapsed, steps) when the first program finished: the guest boot (and
    // on a fresh tree the agent build) comes before it.
    let first: Mutex<Option<(f64, u64)>> = Mutex::new(None);
    let stats = run_campaign(&campaign, &|st| {
        first
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert((st.elapsed_s, st.steps));
        let now = st.elapsed_s as u64;
        if now >= last.load(Ordering::Relaxed) + 30 {
            last.store(now, Ordering::Relaxed);
            eprintln!("pinfuzz nightly: {name} [{now}s] {}", st.line());
        }
    })?;
    eprintln!("pinfuzz nightly: {name} done: {}", stats.line());
    let (warmup_s, steps_then) = first
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .unwrap_or((stats.elapsed_s, stats.steps));
    let window = stats.elapsed_s - warmup_s;
    Ok(KernelRun {
        kernel: name.to_string(),
        release: spec.release.clone(),
        budget_s: budget,
        warmup_s,
        steps_per_s: if window > 0.0 {
            (stats.steps - steps_then) as f64 / window
        } else {
            0.0
        },
        stats,
        coverage_elements: 0,
        corpus_added: 0,
        error: None,
    })
}

/// The model lane: each target in turn.
fn model_lane(cfg: &NightlyConfig, budget: u64) -> (Vec<libfuzzer::TargetRun>, Vec<String>) {
    let mut runs = Vec::new();
    let mut problems = Vec::new();
    let logs = cfg.out.join("logs");
    let _ = std::fs::create_dir_all(&logs);
    for (i, t) in cfg.targets.iter().enumerate() {
        let bin = cfg.fuzz_bin_dir.join(t);
        let corpus = cfg.state.join("libfuzzer").join(t);
        let mut seeds = cfg.seeds.clone();
        seeds.push(cfg.state.join("corpus"));
        if let Err(e) = libfuzzer::seed_from_text(&corpus, &seeds) {
            problems.push(format!("seeding {t}: {e:#}"));
        }
        let artifacts = cfg.out.join("artifacts").join(t);
        let seed = cfg.seed.wrapping_add(cfg.shard.0).wrapping_add(i as u64);
        match libfuzzer::run_target(
            &bin,
            t,
            &corpus,
            &artifacts,
            budget,
            seed,
            &logs.join(format!("{t}.log")),
        ) {
            Ok(mut run) => {
                match libfuzzer::merge_corpus(&bin, &corpus, &logs.join(format!("{t}-merge.log"))) {
                    Ok(n) => run.corpus_after = n,
                    Err(e) => problems.push(format!("merging the {t} corpus: {e:#}")),
                }
                eprintln!(
                    "pinfuzz nightly: target {t} done: {} execs ({:.0}/s), cov {}, ft {}, corpus {} -> {}, {} artifact(s)",
                    run.execs,
                    run.execs_per_s,
                    run.cov,
                    run.features,
                    run.corpus_before,
                    run.corpus_after,
                    run.artifacts.len()
                );
                runs.push(run);
            }
            Err(e) => problems.push(format!("target {t}: {e:#}")),
        }
    }
    (runs, problems)
}

/// Minimize tonight's new kernel findings, one guest per kernel.
fn minimize_new(cfg: &NightlyConfig, new: &mut [(Listed, Source)], problems: &mut Vec<String>) {
    let mut kernels: Vec<String> = new
        .iter()
        .filter_map(|(_, s)| match s {
            Source::Kernel { kernel, .. } => Some(kernel.clone()),
            Source::Model { .. } => None,
        })
        .collect();
    kernels.sort();
    kernels.dedup();
    for k in kernels {
        let mut shrinker = match shrink::Shrinker::boot(
            &k,
            &cfg.guest,
            Duration::from_secs(60),
            cfg.minimize_budget,
        ) {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("minimizing findings of {k}: {e:#}"));
                continue;
            }
        };
        for (listed, source) in new.iter_mut() {
            if !matches!(source, Source::Kernel { kernel, .. } if *kernel == k) {
                continue;
            }
            if let Err(e) = point_reproduce_at_state(&listed.dir, &k, cfg.guest.fault) {
                problems.push(format!("{}: {e:#}", listed.dir.display()));
            }
            match shrinker.shrink(&listed.dir) {
                Ok(steps) => listed.steps = Some(steps),
                Err(e) => problems.push(format!("minimizing {}: {e:#}", listed.title)),
            }
        }
        shrinker.finish();
    }
}

/// A finding copied into the state says how to reproduce it from there.
fn point_reproduce_at_state(dir: &Path, kernel: &str, fault: u32) -> Result<()> {
    let mut report = read_report(dir)?;
    report.reproduce = format!(
        "pinfuzz repro {} --kernel {kernel}{}",
        dir.display(),
        if fault != 0 {
            format!(" --fault {fault}")
        } else {
            String::new()
        }
    );
    write_atomic(&dir.join("report.txt"), report.to_text().as_bytes())?;
    write_atomic(
        &dir.join("report.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )
}

/// Import the `model` target's corpus and the campaigns' programs that add
/// coverage into the text corpus, then prune it.
fn corpus_phase(
    cfg: &NightlyConfig,
    targets: &[libfuzzer::TargetRun],
    kernels: &mut [KernelRun],
) -> Result<CorpusSummary> {
    let dir = cfg.state.join("corpus");
    let mut corpus = TextCorpus::open(&dir)?;
    let before = crate::corpus::minimize::plan(&dir)?;
    let programs_before = corpus.len();
    let mut covered: BTreeSet<Element> = BTreeSet::new();
    for entry in before.keep.iter().map(|(e, _)| e).chain(&before.drop) {
        if let Ok(text) = std::fs::read_to_string(&entry.path) {
            let (p, _) = crate::op::Program::parse_lenient(&text, "corpus");
            covered.extend(signature(&p));
        }
    }
    let mut imported = 0;
    for t in targets.iter().filter(|t| t.target == "model") {
        let raw = cfg.state.join("libfuzzer").join(&t.target);
        let stats = crate::corpus::import::import(&mut corpus, &[raw], &mut |_, _| {})?;
        imported += stats.new;
    }
    let limits = Limits {
        max_steps: crate::fuzzing::MODEL_MAX_STEPS,
        ..Limits::FULL
    };
    for k in kernels.iter_mut() {
        let mut elements: BTreeSet<Element> = BTreeSet::new();
        for n in 0..k.stats.programs {
            let index = crate::campaign::shard_index(n, cfg.shard);
            let mut program = campaign_program(cfg.seed, index, &limits);
            let sig = signature(&program);
            elements.extend(sig.iter().copied());
            if !sig.is_subset(&covered) {
                covered.extend(sig);
                program.comments.push(format!(
                    " pinfuzz fuzz --seed {} program {index} ({} nightly)",
                    cfg.seed, k.kernel
                ));
                if let Added::New(_) = corpus.add(&program, None)? {
                    k.corpus_added += 1;
                    imported += 1;
                }
            }
        }
        k.coverage_elements = elements.len();
    }
    let plan = crate::corpus::minimize::plan(&dir)?;
    crate::corpus::minimize::apply(&plan)?;
    Ok(CorpusSummary {
        dir,
        programs_before,
        elements_before: before.elements,
        imported,
        programs_after: plan.keep.len(),
        elements_after: plan.elements,
        dropped: plan.drop.len(),
    })
}

/// `t` as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            utc(UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661)),
            "2000-02-29T01:01:01Z"
        );
        assert_eq!(
            utc(UNIX_EPOCH + Duration::from_secs(1_779_321_600)),
            "2026-05-21T00:00:00Z"
        );
    }

    fn cfg(kernels: usize, targets: usize, parallel: bool) -> NightlyConfig {
        NightlyConfig {
            budget: Duration::from_secs(300),
            state: PathBuf::new(),
            out: PathBuf::new(),
            kernels: vec!["k".into(); kernels],
            targets: vec!["t".into(); targets],
            fuzz_bin_dir: PathBuf::new(),
            seeds: Vec::new(),
            jobs: 1,
            shard: (0, 1),
            seed: 0,
            parallel,
            guest: GuestOptions::default(),
            minimize_budget: 0,
            build_s: None,
        }
    }

    #[test]
    fn budget_splits() {
        assert_eq!(split_budget(&cfg(2, 2, true)), (150, 150));
        assert_eq!(split_budget(&cfg(2, 2, false)), (100, 50));
        assert_eq!(split_budget(&cfg(1, 0, true)), (300, 0));
        assert_eq!(split_budget(&cfg(0, 2, false)), (0, 150));
    }
}
