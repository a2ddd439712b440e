//! Choosing the accelerator: KVM when it really works, else TCG.
//!
//! `/dev/kvm` existing is not enough: on some hosts (this project's CI
//! machines) it is a paravirtual KVM that a stock kernel cannot boot on
//! (QEMU aborts setting MSRs with `-cpu host`, or the guest dies in the
//! bzImage decompressor). So the first guest on a machine probes: it
//! boots with KVM and a short timeout, and the verdict is cached in
//! `<cache>/accel.json`, keyed by host name, host kernel release and QEMU
//! binary, so later guests do not pay for the probe. `PINFUZZ_ACCEL=kvm`
//! or `=tcg` overrides everything.

use std::path::Path;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::kernel::Cache;
use crate::kernel::manifest::write_atomic;

/// Which accelerator to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Decide by probing (see the module doc).
    #[default]
    Auto,
    /// Hardware virtualization.
    Kvm,
    /// QEMU's emulator (`-accel tcg -cpu max`).
    Tcg,
}

impl Accel {
    /// From `$PINFUZZ_ACCEL` (`kvm`, `tcg`, `auto`), if set.
    pub fn from_env() -> Result<Option<Accel>> {
        match std::env::var("PINFUZZ_ACCEL").ok().as_deref() {
            None | Some("") => Ok(None),
            Some("auto") => Ok(Some(Accel::Auto)),
            Some("kvm") => Ok(Some(Accel::Kvm)),
            Some("tcg") => Ok(Some(Accel::Tcg)),
            Some(other) => bail!("PINFUZZ_ACCEL={other:?}: expected kvm, tcg or auto"),
        }
    }
}

/// The cached verdict of a probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Which machine it was measured on.
    pub machine: String,
    /// A KVM guest reached the agent's READY line.
    pub kvm_works: bool,
    /// What the probe saw.
    pub detail: String,
}

/// `/dev/kvm` can be opened read-write by this user.
pub fn dev_kvm_openable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// The key verdicts are cached under.
pub fn machine_key(qemu: &Path) -> String {
    let uts = nix::sys::utsname::uname().ok();
    let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uts.as_ref()
            .map(|u| f(u).to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    format!(
        "{} {} {}",
        field(nix::sys::utsname::UtsName::nodename),
        field(nix::sys::utsname::UtsName::release),
        qemu.display()
    )
}

fn verdict_path(cache: &Cache) -> std::path::PathBuf {
    cache.root().join("accel.json")
}

/// The cached verdict for this machine, if any.
pub fn cached(cache: &Cache, machine: &str) -> Option<Verdict> {
    let text = std::fs::read_to_string(verdict_path(cache)).ok()?;
    let v: Verdict = serde_json::from_str(&text).ok()?;
    (v.machine == machine).then_some(v)
}

/// Remember a verdict.
pub fn store(cache: &Cache, verdict: &Verdict) -> Result<()> {
    write_atomic(
        &verdict_path(cache),
        serde_json::to_string_pretty(verdict)?.as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_per_machine() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::at(dir.path().to_path_buf());
        let v = Verdict {
            machine: "host 6.18 /usr/bin/qemu".into(),
            kvm_works: false,
            detail: "QEMU aborted".into(),
        };
        assert_eq!(cached(&cache, &v.machine), None);
        store(&cache, &v).expect("store");
        assert_eq!(cached(&cache, &v.machine), Some(v.clone()));
        assert_eq!(cached(&cache, "other machine"), None);
    }
}
