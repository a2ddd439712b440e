//! Finding (or building) the static `pinfuzz-agent` binary the initramfs
//! runs as `/init`.
//!
//! Decision, in order:
//! 1. `$PINFUZZ_AGENT`: a path to a prebuilt agent.
//! 2. The source tree this `pinfuzz` was built from, if it still exists
//!    and `cargo` is on `PATH`: build the agent there on demand
//!    (`RUSTFLAGS="-C target-feature=+crt-static" cargo build --profile
//!    agent --target x86_64-unknown-linux-gnu --bin pinfuzz-agent`) into
//!    its own target directory (`$PINFUZZ_AGENT_TARGET_DIR`, default
//!    `<workspace>/target/agent`), so the static flags never invalidate
//!    the host build. Cargo makes this a no-op when nothing changed, and
//!    the agent always matches this binary's protocol version.
//! 3. `pinfuzz-agent` next to the running executable (an installed pinfuzz
//!    shipped with a static agent).
//!
//! Whatever is chosen must be a static executable: a dynamically linked
//! `/init` finds no libc in the initramfs, and the kernel would panic
//! with "No working init found".

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};

const TARGET: &str = "x86_64-unknown-linux-gnu";

/// The agent binary to pack (built at most once per process).
pub fn agent_binary() -> Result<PathBuf> {
    static CHOSEN: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut chosen = CHOSEN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(path) = chosen.as_ref() {
        return Ok(path.clone());
    }
    let path = locate()?;
    check_static(&path)?;
    *chosen = Some(path.clone());
    Ok(path)
}

fn locate() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("PINFUZZ_AGENT").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if workspace.join("Cargo.toml").is_file() && which("cargo") {
        return build_in_tree(&workspace);
    }
    let exe = std::env::current_exe().context("find the running executable")?;
    let beside = exe.with_file_name("pinfuzz-agent");
    if beside.is_file() {
        return Ok(beside);
    }
    bail!(
        "no pinfuzz-agent: set PINFUZZ_AGENT to a static build, or run from a source tree \
         with cargo installed (looked beside {})",
        exe.display()
    )
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()))
}

fn build_in_tree(workspace: &Path) -> Result<PathBuf> {
    let target_dir = std::env::var_os("PINFUZZ_AGENT_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target/agent"));
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace)
        .args(["build", "--quiet", "--profile", "agent", "--target", TARGET])
        .args(["-p", "harness", "--bin", "pinfuzz-agent"])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        // Flags of an enclosing cargo (cargo test runs us) would override RUSTFLAGS.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    let shown = format!(
        "RUSTFLAGS=\"-C target-feature=+crt-static\" CARGO_TARGET_DIR={} cargo build \
         --profile agent --target {TARGET} -p harness --bin pinfuzz-agent (in {})",
        target_dir.display(),
        workspace.display()
    );
    let started = std::time::Instant::now();
    let out = cmd.output().with_context(|| format!("run {shown}"))?;
    if started.elapsed() > std::time::Duration::from_secs(3) {
        eprintln!(
            "pinfuzz: built the guest agent in {:.0} s ({})",
            started.elapsed().as_secs_f64(),
            target_dir.display()
        );
    }
    if !out.status.success() {
        bail!(
            "building the guest agent failed: {shown}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(target_dir.join(TARGET).join("agent/pinfuzz-agent"))
}

/// Refuse an executable with an ELF interpreter (`PT_INTERP`): it is
/// dynamically linked and cannot run as `/init`.
pub fn check_static(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    match has_interpreter(&bytes) {
        Some(false) => Ok(()),
        Some(true) => bail!(
            "{} is dynamically linked; the guest needs a static agent \
             (RUSTFLAGS=\"-C target-feature=+crt-static\")",
            path.display()
        ),
        None => bail!("{} is not an x86-64 ELF executable", path.display()),
    }
}

/// `Some(true)` if the ELF64 file has a `PT_INTERP` program header.
fn has_interpreter(elf: &[u8]) -> Option<bool> {
    if elf.get(0..4)? != b"\x7fELF" || *elf.get(4)? != 2 {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    const PT_INTERP: u32 = 3;
    let mut found = false;
    for i in 0..phnum {
        found |= u32_at(phoff + i * phentsize)? == PT_INTERP;
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_executables_are_refused() {
        // The test binary itself is dynamically linked.
        let me = std::env::current_exe().expect("current exe");
        let bytes = std::fs::read(&me).expect("read self");
        assert_eq!(has_interpreter(&bytes), Some(true));
        assert!(check_static(&me).is_err());
        assert_eq!(has_interpreter(b"#!/bin/sh\n"), None);
    }
}
