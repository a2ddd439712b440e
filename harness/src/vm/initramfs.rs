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
    if !path.is_file() {
        write_atomic(&path, &bytes)?;
    }
    Ok(path)
}
