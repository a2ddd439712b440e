//! Building the helper module (`kmod/`) against a provisioned kernel.
//!
//! The sources are copied into `<entry>/kmod/<hash>/` and built there with
//! `make -C KDIR M=<that dir> modules`, so the source tree never sees
//! build products and each kernel keeps the module built from each source
//! version. `<hash>` is the sha256 over the module's sources (top-level
//! `*.c`, `*.h`, `Kbuild`, `Makefile` of `kmod/`, names and contents):
//! when it changes, the module is rebuilt; the kernel is not re-fetched.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use super::manifest::ModuleBuild;

/// The module file kbuild produces.
pub const MODULE_FILE: &str = "pinfuzz.ko";

/// The `kmod/` source directory: `$PINFUZZ_KMOD_DIR`, else the one in the
/// source tree this binary was built from.
pub fn source_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PINFUZZ_KMOD_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kmod");
    if dir.join("Kbuild").is_file() || dir.join("Makefile").is_file() {
        return Ok(dir.canonicalize().unwrap_or(dir));
    }
    bail!(
        "cannot find the helper module's sources ({} has no Kbuild): set PINFUZZ_KMOD_DIR",
        dir.display()
    )
}

/// The module's source files, sorted by name.
fn source_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name == "Kbuild"
                || name == "Makefile"
                || name.ends_with(".c") && !name.ends_with(".mod.c")
                || name.ends_with(".h")
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!(
            "{} holds no module sources (*.c, *.h, Kbuild)",
            dir.display()
        );
    }
    Ok(files)
}

/// sha256 (hex) over the sources' names and contents.
pub fn source_hash(dir: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    for file in source_files(dir)? {
        let name = file.file_name().expect("listed files have names");
        let data = fs::read(&file).with_context(|| format!("read {}", file.display()))?;
        hasher.update(name.as_encoded_bytes());
        hasher.update([0]);
        hasher.update((data.len() as u64).to_le_bytes());
        hasher.update(&data);
    }
    Ok(hex(&hasher.finalize()))
}

/// sha256 (hex) of a file.
pub fn file_sha256(path: &Path) -> Result<String> {
    let data = fs::read(path).with_context(|| format!("read {}", path.display()))?;
    Ok(hex(&Sha256::digest(&data)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Build the module from `source` against `kdir` inside `entry_dir`;
/// returns the build record (paths relative to `entry_dir`).
pub fn build(source: &Path, kdir: &Path, entry_dir: &Path) -> Result<ModuleBuild> {
    let hash = source_hash(source)?;
    let rel_dir = PathBuf::from("kmod").join(&hash[..16]);
    let build_dir = entry_dir.join(&rel_dir);
    if build_dir.exists() {
        fs::remove_dir_all(&build_dir)
            .with_context(|| format!("remove stale {}", build_dir.display()))?;
    }
    fs::create_dir_all(&build_dir).with_context(|| format!("create {}", build_dir.display()))?;
    for file in source_files(source)? {
        let to = build_dir.join(file.file_name().expect("listed files have names"));
        fs::copy(&file, &to)
            .with_context(|| format!("copy {} to {}", file.display(), to.display()))?;
    }
    let start = Instant::now();
    let out = Command::new("make")
        .arg("-C")
        .arg(kdir)
        .arg(format!("M={}", build_dir.display()))
        .arg("modules")
        .output()
        .context("run make (are make and gcc installed?)")?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        bail!(
            "building the helper module failed: make -C {} M={} modules ({}):\n{}",
            kdir.display(),
            build_dir.display(),
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let ko = build_dir.join(MODULE_FILE);
    if !ko.is_file() {
        bail!("make succeeded but {} does not exist", ko.display());
    }
    Ok(ModuleBuild {
        source_dir: source.to_path_buf(),
        source_sha256: hash,
        ko_sha256: file_sha256(&ko)?,
        ko: rel_dir.join(MODULE_FILE),
        built_at: super::now_secs(),
        build_seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_covers_sources_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path();
        fs::write(p.join("Kbuild"), "obj-m := pinfuzz.o\n").expect("write");
        fs::write(p.join("pinfuzz.c"), "int x;\n").expect("write");
        let h1 = source_hash(p).expect("hash");
        // Build products do not change the hash.
        fs::write(p.join("pinfuzz.o"), "junk").expect("write");
        fs::write(p.join("pinfuzz.mod.c"), "junk").expect("write");
        assert_eq!(source_hash(p).expect("hash"), h1);
        // A source change does.
        fs::write(p.join("pinfuzz.c"), "int y;\n").expect("write");
        assert_ne!(source_hash(p).expect("hash"), h1);
        assert_eq!(h1.len(), 64);
    }
}
