//! The guest's initramfs: the agent as `/init`, the helper module, and
//! any extra modules, as an uncompressed cpio newc archive.
//!
//! Uncompressed because it boots faster here: the kernel unpacks a gzip
//! initramfs in the guest, which under TCG costs more than QEMU reading a
//! few more megabytes on the host (measured; see `docs/kernels.md`).
//! Images are cached by content hash under `<cache>/initramfs/`, written
//! atomically, so concurrent guests share one file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use super::cpio::CpioWriter;
use crate::agent::init::{EXTRA_MODULES_DIR, MODULE_PATH};
use crate::kernel::Cache;
use crate::kernel::manifest::write_atomic;

/// What goes into an initramfs.
#[derive(Clone, Debug)]
pub struct Contents {
    /// The static agent binary (`/init`).
    pub agent: PathBuf,
    /// The helper module (`/lib/modules/pinfuzz.ko`).
    pub module: PathBuf,
    /// Modules loaded before the helper, in order.
    pub extra_modules: Vec<PathBuf>,
}

/// The archive bytes for `contents`.
pub fn archive(contents: &Contents) -> Result<Vec<u8>> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("read {}", p.display()));
    let mut w = CpioWriter::new(Vec::new());
    for dir in ["dev", "proc", "sys", "tmp", "root", "lib", "lib/modules"] {
        w.dir(dir, 0o755)?;
    }
    // The kernel opens /dev/console for init's stdio before init runs,
    // so the node must be in the archive (devtmpfs is mounted later).
    w.char_dev("dev/console", 0o600, 5, 1)?;
    w.file("init", 0o755, &read(&contents.agent)?)?;
    let module_name = MODULE_PATH.trim_start_matches('/');
    w.file(module_name, 0o644, &read(&contents.module)?)?;
    let extra_dir = EXTRA_MODULES_DIR.trim_start_matches('/');
    w.dir(extra_dir, 0o755)?;
    for (i, module) in contents.extra_modules.iter().enumerate() {
        let file = module
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no file name", module.display()))?;
        // The numeric prefix fixes the load order (the agent sorts by name).
        w.file(&format!("{extra_dir}/{i:02}-{file}"), 0o644, &read(module)?)?;
    }
    Ok(w.finish()?)
}

/// Build (or reuse) the cached image for `contents`; returns its path.
pub fn build(cache: &Cache, contents: &Contents) -> Result<PathBuf> {
    let bytes = archive(contents)?;
    let hash: String = Sha256::digest(&bytes)
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = cache.initramfs_dir().join(format!("{hash}.cpio"));
    if path.is_file() {
        // Mark it used, so pruning keeps it.
        let _ = std::fs::File::options()
            .append(true)
            .open(&path)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
    } else {
        write_atomic(&path, &bytes)?;
        prune(&cache.initramfs_dir(), &path);
    }
    Ok(path)
}

/// Images unused for this long are deleted when a new one is written
/// (every agent or module change makes a new one). Long enough that no
/// guest still booting from one can lose it.
const PRUNE_AFTER: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

fn prune(dir: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > PRUNE_AFTER);
        if old && path != keep && path.extension().is_some_and(|e| e == "cpio") {
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_cached_by_content_and_old_ones_pruned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::at(dir.path().to_path_buf());
        let agent = dir.path().join("agent");
        let module = dir.path().join("pinfuzz.ko");
        std::fs::write(&agent, b"\x7fELF agent").expect("write");
        std::fs::write(&module, b"module").expect("write");
        let contents = Contents {
            agent: agent.clone(),
            module: module.clone(),
            extra_modules: vec![module.clone()],
        };
        let first = build(&cache, &contents).expect("build");
        assert_eq!(build(&cache, &contents).expect("rebuild"), first);
        let bytes = std::fs::read(&first).expect("read");
        for name in [
            "init",
            "lib/modules/pinfuzz.ko",
            "lib/modules/extra/00-pinfuzz.ko",
        ] {
            let needle = format!("{name}\0");
            assert!(
                bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{name}"
            );
        }
        // An image unused for long goes when a new one is written.
        let stale = std::fs::File::options()
            .append(true)
            .open(&first)
            .expect("open");
        stale
            .set_modified(std::time::SystemTime::now() - PRUNE_AFTER * 2)
            .expect("age it");
        std::fs::write(&agent, b"\x7fELF agent v2").expect("write");
        let second = build(&cache, &contents).expect("build v2");
        assert_ne!(second, first);
        assert!(!first.exists(), "stale image kept");
        assert!(second.exists());
    }
}
