//! Re-running known findings: does each still reproduce tonight?
//!
//! A kernel finding is re-run on the kernel (and module fault mode) it was
//! found with, in one guest per (kernel, fault) pair, up to
//! [`ATTEMPTS`] times; it reproduces when a run ends with the same title.
//! A model finding is replayed in-process (`modelcrash::reproduces`). An
//! open finding that does not reproduce is marked fixed; a fixed one that
//! reproduces is open again (a regression). Findings of a kernel this
//! nightly does not run (another matrix job's) are left as they are.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use reference::Profile;
use serde::Serialize;

use super::modelcrash;
use super::state::{Health, Source, State, Status};
use crate::diff::run_diff;
use crate::kernel::{self, Cache};
use crate::op::Program;
use crate::vm::{Guest, GuestOptions};

/// Runs per kernel finding before it counts as not reproducing (programs
/// are deterministic, but a run can be poisoned by a THP fallback).
pub const ATTEMPTS: usize = 2;

/// What re-running one finding said.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "result", content = "detail")]
pub enum Verdict {
    /// Same title again.
    Reproduced,
    /// Something else (the outcome's title, or "kernel and model agree").
    NotReproduced(String),
    /// Not re-run tonight, and why.
    Skipped(String),
}

/// One finding re-run.
#[derive(Clone, Debug, Serialize)]
pub struct Rechecked {
    /// Title.
    pub title: String,
    /// Its state directory.
    pub dir: PathBuf,
    /// Health before tonight.
    pub was: Health,
    /// What the re-run said.
    pub verdict: Verdict,
    /// Health after tonight.
    pub now: Health,
}

/// Re-run every finding of `state`; statuses are updated and saved.
///
/// # Errors
/// The state cannot be read or written. A guest that does not boot skips
/// its findings (said so in the verdict), it does not fail the nightly.
pub fn recheck_all(
    state: &State,
    night: &str,
    kernels: &[String],
    guest: &GuestOptions,
    timeout: Duration,
) -> Result<Vec<Rechecked>> {
    let mut out = Vec::new();
    let mut by_guest: BTreeMap<(String, u32), Vec<(PathBuf, Status)>> = BTreeMap::new();
    for (dir, status) in state.list()? {
        match &status.source {
            Source::Kernel { kernel, fault } => by_guest
                .entry((kernel.clone(), *fault))
                .or_default()
                .push((dir, status)),
            Source::Model { target } => {
                let verdict = if modelcrash::check_of(target).is_none() {
                    Verdict::Skipped(format!("no in-process check for target {target}"))
                } else if modelcrash::reproduces(target, &dir, &status.title)? {
                    Verdict::Reproduced
                } else {
                    Verdict::NotReproduced("the input no longer panics this way".into())
                };
                out.push(settle(state, night, dir, status, verdict)?);
            }
        }
    }
    for ((kernel_name, fault), findings) in by_guest {
        if !kernels.contains(&kernel_name) {
            for (dir, status) in findings {
                let v =
                    Verdict::Skipped(format!("kernel {kernel_name} is not run by this nightly"));
                out.push(settle(state, night, dir, status, v)?);
            }
            continue;
        }
        let mut opts = guest.clone();
        opts.fault = fault;
        let booted = boot(&kernel_name, &opts);
        let (mut guest, profile) = match booted {
            Ok(g) => g,
            Err(e) => {
                for (dir, status) in findings {
                    let v =
                        Verdict::Skipped(format!("guest for {kernel_name} did not boot: {e:#}"));
                    out.push(settle(state, night, dir, status, v)?);
                }
                continue;
            }
        };
        for (dir, status) in findings {
            let file = dir.join("program.ops");
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("read {}", file.display()))?;
            let (program, _) = Program::parse_lenient(&text, &file.display().to_string());
            let mut verdict = Verdict::NotReproduced("kernel and model agree".into());
            for _ in 0..ATTEMPTS {
                match run_diff(&mut guest, &program, profile, timeout) {
                    Ok(run) => match run.outcome.title() {
                        Some(t) if t == status.title => {
                            verdict = Verdict::Reproduced;
                            break;
                        }
                        Some(t) => verdict = Verdict::NotReproduced(t),
                        None => {}
                    },
                    Err(e) => {
                        verdict = Verdict::Skipped(format!("host failure: {e:#}"));
                        break;
                    }
                }
            }
            out.push(settle(state, night, dir, status, verdict)?);
        }
        let _ = guest.power_off();
    }
    Ok(out)
}

fn boot(kernel_name: &str, opts: &GuestOptions) -> Result<(Guest, Profile)> {
    let cache = Cache::from_env()?;
    let spec = kernel::ensure(&cache, kernel_name)?;
    let mut guest = Guest::boot(&spec, opts)?;
    let hello = guest.hello()?;
    let profile = Profile::find(&hello.kernel_release)
        .with_context(|| format!("no model profile for kernel {}", hello.kernel_release))?;
    Ok((guest, profile))
}

/// Apply a verdict to a status and save it.
fn settle(
    state: &State,
    night: &str,
    dir: PathBuf,
    mut status: Status,
    verdict: Verdict,
) -> Result<Rechecked> {
    let was = status.health;
    match &verdict {
        Verdict::Reproduced => {
            if status.health == Health::Fixed {
                status.health = Health::Open;
                status.fixed_on = None;
                status.regressions += 1;
            }
            status.last_checked = Some(format!("{night}: reproduced"));
        }
        Verdict::NotReproduced(got) => {
            if status.health == Health::Open {
                status.health = Health::Fixed;
                status.fixed_on = Some(night.to_string());
            }
            status.last_checked = Some(format!("{night}: did not reproduce ({got})"));
        }
        Verdict::Skipped(_) => {}
    }
    state.save(&dir, &status)?;
    Ok(Rechecked {
        title: status.title.clone(),
        dir,
        was,
        verdict,
        now: status.health,
    })
}
