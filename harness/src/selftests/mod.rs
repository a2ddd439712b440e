//! The kernel's own GUP selftests (`tools/testing/selftests/mm`: cow.c,
//! gup_longterm.c, gup_test.c), built from the kernel's source and run in
//! pinfuzz's guest on any provisioned kernel.
//!
//! Contract: [`run`] resolves the kernel (provisioning it if needed), finds
//! the source that matches it (Debian's `linux-source-X` at the image's
//! exact version, or the user's tree), builds each selected test as a
//! static binary (cached per source), boots one guest with swap, hugetlb
//! pages and a gup_test device, runs every invocation, and returns a
//! [`Report`]: per-case outcomes, per-test summaries with normalized skip
//! reasons, known failures explained, and whether the run passed. It fails
//! (`Err`) only when it cannot run the tests at all.
//!
//! A test missing from the matching source (6.1's tree predates cow.c and
//! gup_longterm.c) is built from the newest Debian 6.12 source instead, and
//! the report says so for that test; the failures this causes on older
//! kernels are what `expected` lists.
//!
//! | module | job |
//! |---|---|
//! | `catalog` | the tests and their invocations |
//! | `source` | Debian source packages and user trees, reduced and cached |
//! | `build` | static binaries, cached per source and recipe |
//! | `run` | the guest side: boot, THP, one RunBinary per invocation |
//! | `tap` | kselftest TAP parsing |
//! | `skip` | normalized skip reasons and their causes |
//! | `expected` | the table of known, explained failures |
//! | `summary` | judging runs, summing per test |
//! | `report` | the text report |

pub mod build;
pub mod catalog;
pub mod expected;
pub mod report;
pub mod run;
pub mod skip;
pub mod source;
pub mod summary;
pub mod tap;

use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::fcntl::Flock;
use serde::Serialize;

use self::build::Binary;
use self::catalog::TestDef;
use self::run::{GupTestProvider, Job};
use self::source::{SourceSpec, SourceTree};
use self::summary::{Provided, RunResult, TestSummary};
use crate::kernel::{self, Cache, Manifest, Origin};
use crate::vm::{Accel, GuestOptions};

/// The Debian source package whose tests stand in for missing ones.
pub const FALLBACK_SOURCE_PACKAGE: &str = "linux-source-6.12";

/// What to run and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// Kernel name (`debian-6.12`, `debian-6.1`, an entry name).
    pub kernel: String,
    /// Test names (see `catalog`).
    pub tests: Vec<String>,
    /// A kernel tree to build the tests from instead of the matching one.
    pub source: Option<PathBuf>,
    /// Guest memory besides hugetlb pages and zram, MiB.
    pub memory_mib: u32,
    /// zram swap, MiB (0 = none).
    pub swap_mib: u32,
    /// 2 MiB hugetlb pages.
    pub hugetlb_pages: u32,
    /// 1 GiB hugetlb pages.
    pub hugetlb_1g_pages: u32,
    /// Accelerator.
    pub accel: Accel,
    /// More kernel command line words.
    pub append: Vec<String>,
}

/// Where one test's binary came from.
#[derive(Clone, Debug, Serialize)]
pub struct TestSource {
    /// The test.
    pub test: String,
    /// The binary and its source.
    pub binary: Binary,
    /// Set when the matching source lacks the test and another was used.
    pub substitute_note: Option<String>,
}

/// The guest's setup, as reported.
#[derive(Clone, Debug, Serialize)]
pub struct GuestSetup {
    /// `kvm` or `tcg`.
    pub accel: &'static str,
    /// Guest memory in total, MiB.
    pub memory_mib: u32,
    /// zram swap, MiB.
    pub swap_mib: u32,
    /// 2 MiB hugetlb pages reserved.
    pub hugetlb_pages: u32,
    /// 1 GiB hugetlb pages reserved.
    pub hugetlb_1g_pages: u32,
    /// Who provides gup_test.
    pub gup_test: GupTestProvider,
    /// Why.
    pub gup_test_note: String,
    /// First boot, QEMU start to Hello, seconds.
    pub boot_seconds: f64,
    /// QEMU starts.
    pub boots: u32,
    /// Setup errors the agent reported.
    pub setup_errors: Vec<String>,
    /// Other notes.
    pub notes: Vec<String>,
}

/// Time spent per phase, seconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Timings {
    /// Resolving (and if needed fetching) the kernel.
    pub kernel_seconds: f64,
    /// Sources: download, extraction (cached after the first time).
    pub source_seconds: f64,
    /// Compiling (cached after the first time).
    pub build_seconds: f64,
    /// Finding or building the static guest agent (a no-op when fresh).
    pub agent_seconds: f64,
    /// The guest: boot, every run, power-off.
    pub guest_seconds: f64,
    /// All of it.
    pub total_seconds: f64,
}

/// The verdict.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Verdict {
    /// No unexplained failure, no problem, no setup skip.
    pub passed: bool,
    /// Unexplained failures (fail, error, xpass).
    pub failures: u32,
    /// Explained failures.
    pub expected_failures: u32,
    /// Skips for something pinfuzz was to provide.
    pub setup_skips: u32,
    /// Run-level problems.
    pub problems: u32,
}

/// Everything a run found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Kernel entry name.
    pub kernel: String,
    /// `uname -r` in the guest.
    pub release: String,
    /// Upstream (major, minor) the expected-failure table was applied with.
    pub upstream: (u32, u32),
    /// The guest.
    pub guest: GuestSetup,
    /// Per test: binary and source.
    pub sources: Vec<TestSource>,
    /// Per test: summed counts and skip reasons.
    pub tests: Vec<TestSummary>,
    /// Per invocation: every case.
    pub runs: Vec<RunResult>,
    /// Time per phase.
    pub timings: Timings,
    /// The verdict.
    pub verdict: Verdict,
}

/// Progress lines on stderr.
pub type Progress<'a> = &'a mut dyn FnMut(&str);

/// Run the selftests (see the module doc).
pub fn run(opts: &Options, progress: Progress<'_>) -> Result<Report> {
    let t0 = Instant::now();
    let tests = catalog::select(&opts.tests)?;
    let cache = Cache::from_env()?;
    let spec = kernel::ensure(&cache, &opts.kernel)?;
    let manifest_path = cache.entry_dir(&spec.name).join("manifest.json");
    let manifest = Manifest::load(&manifest_path)?;
    let mut timings = Timings {
        kernel_seconds: t0.elapsed().as_secs_f64(),
        ..Timings::default()
    };

    let (sources, source_s, build_s) = {
        let _lock = lock(&cache)?;
        let t = Instant::now();
        let primary = source::prepare(&cache, &primary_source(&manifest, opts.source.as_ref())?)?;
        let mut fallback: Option<SourceTree> = None;
        let mut chosen: Vec<(&'static TestDef, SourceTree, Option<String>)> = Vec::new();
        for test in &tests {
            if primary.has_test(test.source) {
                chosen.push((test, primary.clone(), None));
                continue;
            }
            if fallback.is_none() {
                let spec = fallback_source(&cache)?;
                progress(&format!(
                    "{} has no {}.c; using the newest Debian 6.12 source for it",
                    primary.label, test.source
                ));
                fallback = Some(source::prepare(&cache, &spec)?);
            }
            let other = fallback.clone().context("fallback source prepared above")?;
            if !other.has_test(test.source) {
                bail!(
                    "neither {} nor {} has tools/testing/selftests/mm/{}.c",
                    primary.label,
                    other.label,
                    test.source
                );
            }
            let note = format!(
                "{}.c is not in {} (kernel {}); built from {} (kernel {})",
                test.source,
                primary.label,
                primary.kernel_version,
                other.label,
                other.kernel_version
            );
            chosen.push((test, other, Some(note)));
        }
        let source_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut sources = Vec::new();
        for (test, tree, note) in chosen {
            let binary = build::build(&cache, &tree, test.source)?;
            if binary.built_now {
                progress(&format!("built {} from {}", test.name, tree.label));
            }
            sources.push(TestSource {
                test: test.name.to_string(),
                binary,
                substitute_note: note,
            });
        }
        (sources, source_s, t.elapsed().as_secs_f64())
    };
    timings.source_seconds = source_s;
    timings.build_seconds = build_s;

    let mut jobs = Vec::new();
    for (test, src) in tests.iter().zip(&sources) {
        for (args, label) in test.invocations.iter().zip(test.labels()) {
            jobs.push(Job {
                test,
                label,
                args: args.iter().map(|a| a.to_string()).collect(),
                binary: src.binary.clone(),
            });
        }
    }
    let (gup_test, gup_test_note) = run::gup_test_provider(&spec.build_dir);
    let guest_opts = GuestOptions {
        memory_mib: opts.memory_mib,
        gup_test: gup_test == GupTestProvider::HelperModule,
        swap_mib: opts.swap_mib,
        hugetlb_pages: opts.hugetlb_pages,
        hugetlb_1g_pages: opts.hugetlb_1g_pages,
        kernel_mm_settings: true,
        accel: opts.accel,
        extra_cmdline: opts.append.clone(),
        no_output_timeout: run::longest_timeout(&jobs) + Duration::from_secs(60),
        ..GuestOptions::default()
    };
    progress(&format!(
        "booting {} ({} MiB; gup_test: {gup_test_note})",
        spec.name,
        guest_opts.guest_memory_mib()
    ));
    // Outside the guest's time: a changed source tree rebuilds the agent.
    let t = Instant::now();
    crate::vm::agent_bin::agent_binary()?;
    timings.agent_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let outcome = run::run_jobs(&spec, &guest_opts, &jobs, &mut |job, done| match done {
        None => progress(&format!("running {}", job.label)),
        Some(raw) => progress(&format!(
            "{}: {} after {:.1} s",
            job.label,
            raw.exit_code
                .map_or_else(|| "no exit status".to_string(), |c| format!("exit {c}")),
            raw.wall_seconds
        )),
    })?;
    timings.guest_seconds = t.elapsed().as_secs_f64();

    let upstream = expected::major_minor(&outcome.release)
        .with_context(|| format!("cannot read a version from release {:?}", outcome.release))?;
    let provided = Provided {
        gup_test: true,
        swap: opts.swap_mib > 0,
        hugetlb_kb: [
            (2048, opts.hugetlb_pages),
            (1_048_576, opts.hugetlb_1g_pages),
        ]
        .into_iter()
        .filter(|(_, pages)| *pages > 0)
        .map(|(kb, _)| kb)
        .collect(),
    };
    let runs: Vec<RunResult> = outcome
        .runs
        .iter()
        .map(|raw| summary::judge(raw, upstream, &provided))
        .collect();
    let tests = summary::summarize(&runs);
    let verdict = Verdict {
        failures: runs
            .iter()
            .map(|r| r.counts.fail + r.counts.xpass + r.counts.error)
            .sum(),
        expected_failures: runs.iter().map(|r| r.counts.expected_fail).sum(),
        setup_skips: runs.iter().map(|r| r.counts.setup_skip).sum(),
        problems: runs.iter().map(|r| r.problems.len() as u32).sum(),
        passed: !runs.iter().any(RunResult::failed),
    };
    timings.total_seconds = t0.elapsed().as_secs_f64();
    Ok(Report {
        kernel: spec.name.clone(),
        release: outcome.release.clone(),
        upstream,
        guest: GuestSetup {
            accel: outcome.accel,
            memory_mib: outcome.memory_mib,
            swap_mib: opts.swap_mib,
            hugetlb_pages: opts.hugetlb_pages,
            hugetlb_1g_pages: opts.hugetlb_1g_pages,
            gup_test,
            gup_test_note,
            boot_seconds: outcome.boot_seconds,
            boots: outcome.boots,
            setup_errors: outcome.setup_errors,
            notes: outcome.notes,
        },
        sources,
        tests,
        runs,
        timings,
        verdict,
    })
}

/// The source matching the kernel: `--source`, else Debian's source
/// package at the image's exact version, else the user kernel's tree.
fn primary_source(manifest: &Manifest, user: Option<&PathBuf>) -> Result<SourceSpec> {
    if let Some(dir) = user {
        return Ok(SourceSpec::Tree(dir.clone()));
    }
    match &manifest.origin {
        Origin::Debian { flavour, .. } => {
            let package = source_package(flavour)?;
            let image = manifest
                .packages
                .iter()
                .find(|p| p.name.starts_with("linux-image-"))
                .with_context(|| {
                    format!("the manifest of {} lists no image package", manifest.name)
                })?;
            Ok(SourceSpec::Debian {
                package,
                version: image.version.clone(),
            })
        }
        Origin::User { build_dir, .. } => {
            if build_dir.join("tools/testing/selftests").is_dir() {
                Ok(SourceSpec::Tree(build_dir.clone()))
            } else {
                bail!(
                    "kernel {} was built in {} (an out-of-tree build directory without \
                     tools/testing/selftests): pass its source tree with --source DIR",
                    manifest.name,
                    build_dir.display()
                )
            }
        }
    }
}

/// `debian-6.12` → `linux-source-6.12`.
fn source_package(flavour: &str) -> Result<String> {
    let series = flavour
        .strip_prefix("debian-")
        .with_context(|| format!("unknown Debian flavour {flavour:?}"))?;
    Ok(format!("linux-source-{series}"))
}

/// The newest Debian 6.12 source: the version of the newest cached 6.12
/// kernel (no download of anything else), else apt's candidate.
fn fallback_source(cache: &Cache) -> Result<SourceSpec> {
    let cached = kernel::newest_cached(cache, kernel::Flavour::Debian612).and_then(|m| {
        m.packages
            .iter()
            .find(|p| p.name.starts_with("linux-image-"))
            .map(|p| p.version.clone())
    });
    let version = match cached {
        Some(v) => v,
        None => kernel::apt::versions(FALLBACK_SOURCE_PACKAGE)?
            .into_iter()
            .next()
            .with_context(|| format!("apt knows no version of {FALLBACK_SOURCE_PACKAGE}"))?,
    };
    Ok(SourceSpec::Debian {
        package: FALLBACK_SOURCE_PACKAGE.to_string(),
        version,
    })
}

/// Serialize source downloads and builds between concurrent pinfuzz runs.
fn lock(cache: &Cache) -> Result<Flock<File>> {
    crate::kernel::cache::lock_dir(&source::selftests_cache(cache))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_flavours_map_to_their_source_packages() {
        assert_eq!(source_package("debian-6.12").unwrap(), "linux-source-6.12");
        assert_eq!(source_package("debian-6.1").unwrap(), "linux-source-6.1");
        assert!(source_package("fedora-6.1").is_err());
    }
}
