//! Minimizing tonight's new kernel findings, in a guest, once they are
//! known to be new (campaigns run without minimization, so no time goes
//! into shrinking bugs the state already has).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use reference::Profile;

use crate::diff::run_diff;
use crate::finding::{FindingStore, read_report};
use crate::kernel::{self, Cache};
use crate::minimize::{Mode, minimize};
use crate::op::Program;
use crate::report::{Report, ReportContext};
use crate::vm::{Guest, GuestOptions};

/// A guest for minimizing findings of one kernel and fault mode.
#[derive(Debug)]
pub struct Shrinker {
    guest: Guest,
    profile: Profile,
    timeout: Duration,
    budget: usize,
}

impl Shrinker {
    /// Boot a guest of `kernel_name` with `opts`.
    ///
    /// # Errors
    /// The kernel cannot be provisioned or the guest does not boot.
    pub fn boot(
        kernel_name: &str,
        opts: &GuestOptions,
        timeout: Duration,
        budget: usize,
    ) -> Result<Shrinker> {
        let cache = Cache::from_env()?;
        let spec = kernel::ensure(&cache, kernel_name)?;
        let mut guest = Guest::boot(&spec, opts)?;
        let hello = guest.hello()?;
        let profile = Profile::find(&hello.kernel_release)
            .with_context(|| format!("no model profile for kernel {}", hello.kernel_release))?;
        Ok(Shrinker {
            guest,
            profile,
            timeout,
            budget,
        })
    }

    /// Minimize the finding in `dir` (its `program.ops`, while the run
    /// ends with the same title) and replace its program and report;
    /// `original.ops` stays. Returns the steps before and after (equal when
    /// nothing smaller failed the same way, or the finding did not
    /// reproduce).
    ///
    /// # Errors
    /// The finding's files cannot be read or written, or the host failed.
    pub fn shrink(&mut self, dir: &Path) -> Result<(usize, usize)> {
        let old = read_report(dir)?;
        let file = dir.join("program.ops");
        let text =
            std::fs::read_to_string(&file).with_context(|| format!("read {}", file.display()))?;
        let (program, _) = Program::parse_lenient(&text, &file.display().to_string());
        let before = program.steps.len();
        let first = run_diff(&mut self.guest, &program, self.profile, self.timeout)?;
        if first.outcome.title().as_deref() != Some(old.title.as_str()) {
            return Ok((before, before));
        }
        let (guest, profile, timeout) = (&mut self.guest, self.profile, self.timeout);
        let title = old.title.clone();
        let mut pred = |c: &Program| {
            run_diff(guest, c, profile, timeout)
                .ok()
                .and_then(|r| r.outcome.title())
                .is_some_and(|t| t == title)
        };
        let (min, _) = minimize(
            &program,
            first.outcome.step(),
            Mode::Vm {
                budget: self.budget,
            },
            &mut pred,
        );
        if min.steps.len() >= before {
            return Ok((before, before));
        }
        let rerun = run_diff(&mut self.guest, &min, self.profile, self.timeout)?;
        if rerun.outcome.title().as_deref() != Some(old.title.as_str()) {
            return Ok((before, before));
        }
        let ctx = ReportContext {
            kernel_release: old.kernel_release.clone(),
            kernel_name: old.kernel_name.clone(),
            profile: old.profile.clone(),
            fault_mode: old.fault_mode,
            origin: old.origin.clone(),
            reproduce: old.reproduce.clone(),
        };
        let report = Report::new(&min, &rerun, &ctx);
        let parent = dir.parent().context("a finding directory has a parent")?;
        FindingStore::open(parent)?.update_minimized(dir, &report, &min)?;
        Ok((before, min.steps.len()))
    }

    /// Power the guest off.
    pub fn finish(mut self) {
        let _ = self.guest.power_off();
    }
}
