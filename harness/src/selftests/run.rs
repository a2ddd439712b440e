//! Running built selftests in a pinfuzz guest.
//!
//! One guest runs every invocation in turn, each as a `RunBinary` request
//! (the binary travels over the channel, runs in `/` — the initramfs, a
//! tmpfs — with stdout and stderr in one pipe). The guest is booted with
//! the kernel's own memory-management settings (`kernel_mm_settings`: THP
//! defrag, khugepaged and compaction as the kernel ships them, not
//! pinfuzz's reproducibility settings), swap and hugetlb pages as asked,
//! and the helper module's gup_test ABI unless the kernel has its own.
//! Before each invocation THP is set to `always`, the mode the selftests
//! were measured with (kernel-lab.md); it is set again each time because a
//! kernel incident restarts the guest. A crash or incident during one
//! invocation is recorded with it and the next invocation gets a fresh
//! guest (see `vm::guest`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::build::Binary;
use super::catalog::TestDef;
use super::summary::{Incident, RawRun};
use crate::kernel::KernelSpec;
use crate::vm::guest::{BinaryEnd, GuestBinaryRun};
use crate::vm::{CrashReport, Guest, GuestOptions};

/// Global THP switch the selftests read.
pub const THP_ENABLED: &str = "/sys/kernel/mm/transparent_hugepage/enabled";

/// One program run to do.
#[derive(Clone, Debug)]
pub struct Job {
    /// The test.
    pub test: &'static TestDef,
    /// `gup_test -u`.
    pub label: String,
    /// Arguments after argv\[0\].
    pub args: Vec<String>,
    /// The binary.
    pub binary: Binary,
}

/// Who provides `/sys/kernel/debug/gup_test`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GupTestProvider {
    /// The kernel (CONFIG_GUP_TEST=y).
    Kernel,
    /// The pinfuzz helper module, loaded with `gup_test=1`.
    HelperModule,
}

/// Decide from the kernel's build configuration; a kernel whose
/// configuration cannot be read gets the helper module, which creates
/// nothing when the kernel has its own device (kmod/gup_test_abi.c).
pub fn gup_test_provider(build_dir: &Path) -> (GupTestProvider, String) {
    let config = build_dir.join(".config");
    match std::fs::read_to_string(&config) {
        Ok(text) if text.lines().any(|l| l.trim() == "CONFIG_GUP_TEST=y") => (
            GupTestProvider::Kernel,
            format!(
                "the kernel's own (CONFIG_GUP_TEST=y in {})",
                config.display()
            ),
        ),
        Ok(_) => (
            GupTestProvider::HelperModule,
            format!(
                "the pinfuzz helper module's (gup_test=1): CONFIG_GUP_TEST is not set in {}",
                config.display()
            ),
        ),
        Err(_) => (
            GupTestProvider::HelperModule,
            format!(
                "the pinfuzz helper module's (gup_test=1; it defers to the kernel's own if \
                 there is one): {} is not readable",
                config.display()
            ),
        ),
    }
}

/// What the guest side produced.
#[derive(Clone, Debug, Serialize)]
pub struct GuestOutcome {
    /// `uname -r` in the guest.
    pub release: String,
    /// `kvm` or `tcg`.
    pub accel: &'static str,
    /// Guest memory, MiB.
    pub memory_mib: u32,
    /// First boot: QEMU start to the agent's Hello, seconds.
    pub boot_seconds: f64,
    /// QEMU starts (more than one after a crash or incident).
    pub boots: u32,
    /// Errors the agent reported while setting up the guest.
    pub setup_errors: Vec<String>,
    /// Notes about the setup (a THP write that failed, ...).
    pub notes: Vec<String>,
    /// One per job, in order.
    pub runs: Vec<RawRun>,
}

/// Boot a guest with `opts` and run `jobs`; `progress` sees each
/// invocation before (`None`) and after (`Some`) it runs.
pub fn run_jobs(
    spec: &KernelSpec,
    opts: &GuestOptions,
    jobs: &[Job],
    progress: &mut dyn FnMut(&Job, Option<&RawRun>),
) -> Result<GuestOutcome> {
    let mut guest =
        Guest::boot(spec, opts).with_context(|| format!("boot a guest of kernel {}", spec.name))?;
    let times = guest
        .boot_times()
        .context("a booted guest has boot times")?;
    let hello = guest
        .boot_hello()
        .cloned()
        .context("a booted guest has a Hello")?;
    if opts.swap_mib > 0 {
        if let Some(err) = hello.setup_errors.iter().find(|e| e.starts_with("swap:")) {
            bail!(
                "the guest could not set up {} MiB of swap: {err}",
                opts.swap_mib
            );
        }
    }
    let mut outcome = GuestOutcome {
        release: hello.kernel_release.clone(),
        accel: if times.kvm { "kvm" } else { "tcg" },
        memory_mib: opts.guest_memory_mib(),
        boot_seconds: times.to_hello.as_secs_f64(),
        boots: 0,
        setup_errors: hello.setup_errors.clone(),
        notes: Vec::new(),
        runs: Vec::new(),
    };
    for job in jobs {
        progress(job, None);
        let raw = run_one(&mut guest, job, &mut outcome.notes)?;
        progress(job, Some(&raw));
        outcome.runs.push(raw);
    }
    outcome.boots = guest.boots();
    guest.power_off()?;
    Ok(outcome)
}

fn run_one(guest: &mut Guest, job: &Job, notes: &mut Vec<String>) -> Result<RawRun> {
    let started = Instant::now();
    let mut raw = RawRun {
        test: job.test.name.to_string(),
        label: job.label.clone(),
        ..RawRun::default()
    };
    match guest.write_file(THP_ENABLED, b"always") {
        Ok(None) => {}
        Ok(Some(crash)) => {
            raw.crash = Some(incident(&crash));
            raw.wall_seconds = started.elapsed().as_secs_f64();
            return Ok(raw);
        }
        Err(err) => {
            let note = format!("could not set THP to always: {err:#}");
            if !notes.contains(&note) {
                notes.push(note);
            }
        }
    }
    let bytes = std::fs::read(&job.binary.path)
        .with_context(|| format!("read {}", job.binary.path.display()))?;
    let GuestBinaryRun {
        end,
        incidents,
        wall,
    } = guest.run_binary(&job.binary.stem, &bytes, &job.args, job.test.timeout)?;
    match end {
        BinaryEnd::Finished(run) => {
            raw.exit_code = run.exit_code;
            raw.signal = run.signal;
            raw.timed_out = run.timed_out;
            raw.output = String::from_utf8_lossy(&run.output).into_owned();
            if run.truncated {
                raw.output
                    .push_str("\n# pinfuzz: output truncated by the agent\n");
            }
        }
        BinaryEnd::Failed(message) => raw.agent_error = Some(message),
        BinaryEnd::Crashed(crash) => raw.crash = Some(incident(&crash)),
    }
    raw.incidents = incidents.iter().map(incident).collect();
    raw.wall_seconds = wall.as_secs_f64();
    Ok(raw)
}

fn incident(c: &CrashReport) -> Incident {
    Incident {
        title: c.title.clone(),
        excerpt: c.excerpt.clone(),
    }
}

/// The longest invocation timeout of `jobs`: the guest's no-output limit
/// must not be shorter (a selftest may run for minutes without a console
/// line or a response; the agent enforces each timeout itself).
pub fn longest_timeout(jobs: &[Job]) -> Duration {
    jobs.iter()
        .map(|j| j.test.timeout)
        .max()
        .unwrap_or(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_config_decides_who_provides_gup_test() {
        let dir = tempfile::tempdir().unwrap();
        let (who, why) = gup_test_provider(dir.path());
        assert_eq!(who, GupTestProvider::HelperModule);
        assert!(why.contains("not readable"), "{why}");
        std::fs::write(dir.path().join(".config"), "# CONFIG_GUP_TEST is not set\n").unwrap();
        let (who, why) = gup_test_provider(dir.path());
        assert_eq!(who, GupTestProvider::HelperModule);
        assert!(why.contains("is not set"), "{why}");
        std::fs::write(
            dir.path().join(".config"),
            "CONFIG_DEBUG_FS=y\nCONFIG_GUP_TEST=y\n",
        )
        .unwrap();
        assert_eq!(gup_test_provider(dir.path()).0, GupTestProvider::Kernel);
    }
}
