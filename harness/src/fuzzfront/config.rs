//! The diff targets' configuration, from environment variables (fuzz
//! targets take no command line of their own: libFuzzer and AFL++ own it).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `PINFUZZ_KERNEL` | `debian-6.12` | kernel (a name from `pinfuzz kernel list`; fetched and built on first use) |
//! | `PINFUZZ_FINDINGS` | `findings` | findings store (relative to the working directory) |
//! | `PINFUZZ_FAULT` | `0` | helper module fault-injection mode (`kmod/pinfuzz.h`) |
//! | `PINFUZZ_MEMORY` | `1024` | guest memory, MiB |
//! | `PINFUZZ_ACCEL` | `auto` | `auto`, `kvm` or `tcg` |
//! | `PINFUZZ_TIMEOUT` | `60` | per-program timeout in the guest, seconds (a hang is a finding) |
//! | `PINFUZZ_FEEDBACK` | `1` | model-state features as fuzzer feedback (`0`: edges only) |
//! | `PINFUZZ_IGNORE_KNOWN` | `0` | `1`: a finding whose title the store already has is counted, not a crash |
//! | `PINFUZZ_STATS_EVERY` | `60` | seconds between statistics lines on stderr (`0`: only at exit) |
//!
//! Besides these, the guest machinery reads `PINFUZZ_CACHE` (kernel cache),
//! `PINFUZZ_AGENT` and `PINFUZZ_AGENT_TARGET_DIR` (the guest agent build).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::kernel::DEFAULT_KERNEL;
use crate::vm::{Accel, GuestOptions};

/// What a diff target runs against and where it writes.
#[derive(Clone, Debug)]
pub struct FrontConfig {
    /// Kernel name (`debian-6.12`, `debian-6.1`, …).
    pub kernel: String,
    /// Findings directory.
    pub findings: PathBuf,
    /// Guest options (memory, fault mode, accelerator).
    pub guest: GuestOptions,
    /// Per-program timeout.
    pub timeout: Duration,
    /// Report model-state features to the fuzzer.
    pub feedback: bool,
    /// Known titles are not crashes.
    pub ignore_known: bool,
    /// Interval of statistics lines (`None`: only at exit).
    pub stats_every: Option<Duration>,
}

impl FrontConfig {
    /// Read the configuration from the environment.
    ///
    /// # Errors
    /// A variable that is set but does not parse; the message names it.
    pub fn from_env() -> Result<FrontConfig> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Read the configuration through `get` (the environment, or a map in tests).
    ///
    /// # Errors
    /// As [`FrontConfig::from_env`].
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<FrontConfig> {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let num = |name: &str, default: u64| -> Result<u64> {
            match var(name) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse()
                    .with_context(|| format!("{name}={v:?} is not a number")),
            }
        };
        let flag = |name: &str, default: bool| -> Result<bool> {
            match var(name).as_deref().map(str::trim) {
                None => Ok(default),
                Some("1" | "yes" | "true") => Ok(true),
                Some("0" | "no" | "false") => Ok(false),
                Some(v) => bail!("{name}={v:?}: expected 0 or 1"),
            }
        };
        let accel = match var("PINFUZZ_ACCEL").as_deref().map(str::trim) {
            None | Some("auto") => Accel::Auto,
            Some("kvm") => Accel::Kvm,
            Some("tcg") => Accel::Tcg,
            Some(v) => bail!("PINFUZZ_ACCEL={v:?}: expected auto, kvm or tcg"),
        };
        let guest = GuestOptions {
            memory_mib: u32::try_from(num("PINFUZZ_MEMORY", 1024)?)
                .context("PINFUZZ_MEMORY is too large")?,
            fault: u32::try_from(num("PINFUZZ_FAULT", 0)?).context("PINFUZZ_FAULT is too large")?,
            accel,
            ..GuestOptions::default()
        };
        let stats = num("PINFUZZ_STATS_EVERY", 60)?;
        Ok(FrontConfig {
            kernel: var("PINFUZZ_KERNEL").unwrap_or_else(|| DEFAULT_KERNEL.to_string()),
            findings: PathBuf::from(var("PINFUZZ_FINDINGS").unwrap_or_else(|| "findings".into())),
            guest,
            timeout: Duration::from_secs(num("PINFUZZ_TIMEOUT", 60)?.max(1)),
            feedback: flag("PINFUZZ_FEEDBACK", true)?,
            ignore_known: flag("PINFUZZ_IGNORE_KNOWN", false)?,
            stats_every: (stats > 0).then(|| Duration::from_secs(stats)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Result<FrontConfig> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        FrontConfig::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_match_pinfuzz_fuzz() {
        let c = cfg(&[]).expect("defaults parse");
        assert_eq!(c.kernel, DEFAULT_KERNEL);
        assert_eq!(c.findings, PathBuf::from("findings"));
        assert_eq!(c.guest.fault, 0);
        assert_eq!(c.guest.memory_mib, 1024);
        assert_eq!(c.timeout, Duration::from_secs(60));
        assert!(c.feedback && !c.ignore_known);
        assert_eq!(c.stats_every, Some(Duration::from_secs(60)));
    }

    #[test]
    fn variables_are_read_and_bad_values_named() {
        let c = cfg(&[
            ("PINFUZZ_KERNEL", "debian-6.1"),
            ("PINFUZZ_FAULT", "3"),
            ("PINFUZZ_FEEDBACK", "0"),
            ("PINFUZZ_IGNORE_KNOWN", "1"),
            ("PINFUZZ_STATS_EVERY", "0"),
            ("PINFUZZ_ACCEL", "tcg"),
        ])
        .expect("parses");
        assert_eq!(c.kernel, "debian-6.1");
        assert_eq!(c.guest.fault, 3);
        assert!(!c.feedback && c.ignore_known);
        assert_eq!(c.stats_every, None);
        assert_eq!(c.guest.accel, Accel::Tcg);
        let err = cfg(&[("PINFUZZ_TIMEOUT", "soon")]).expect_err("not a number");
        assert!(format!("{err:#}").contains("PINFUZZ_TIMEOUT"), "{err:#}");
        let err = cfg(&[("PINFUZZ_FEEDBACK", "maybe")]).expect_err("not a flag");
        assert!(format!("{err:#}").contains("PINFUZZ_FEEDBACK"), "{err:#}");
    }
}
