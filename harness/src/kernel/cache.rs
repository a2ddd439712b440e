//! Where provisioned kernels live: the per-user pinfuzz cache.
//!
//! `$PINFUZZ_CACHE`, else `$XDG_CACHE_HOME/pinfuzz`, else
//! `~/.cache/pinfuzz`. Layout:
//!
//! ```text
//! <cache>/kernels/<name>/manifest.json   one entry per kernel (see manifest.rs)
//! <cache>/kernels/<name>/debs/           the downloaded .deb files (Debian)
//! <cache>/kernels/<name>/root/           dpkg -x of those packages
//! <cache>/kernels/<name>/kmod/<hash>/    the helper module built from source <hash>
//! <cache>/kernels/.lock                  flock held while provisioning
//! <cache>/initramfs/<hash>.cpio          initramfs images (see vm::initramfs)
//! <cache>/accel.json                     whether KVM works on this machine (see vm::accel)
//! ```

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::fcntl::{Flock, FlockArg};

use super::manifest::Manifest;

/// The cache root and its sub-directories.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// The cache named by the environment (see the module doc).
    pub fn from_env() -> Result<Cache> {
        if let Some(dir) = std::env::var_os("PINFUZZ_CACHE").filter(|d| !d.is_empty()) {
            return Ok(Cache::at(PathBuf::from(dir)));
        }
        if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
            return Ok(Cache::at(PathBuf::from(dir).join("pinfuzz")));
        }
        match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
            Some(home) => Ok(Cache::at(PathBuf::from(home).join(".cache/pinfuzz"))),
            None => {
                bail!("cannot place the pinfuzz cache: set PINFUZZ_CACHE, XDG_CACHE_HOME or HOME")
            }
        }
    }

    /// A cache rooted at `root`.
    pub fn at(root: PathBuf) -> Cache {
        Cache { root }
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of all kernel entries.
    pub fn kernels_dir(&self) -> PathBuf {
        self.root.join("kernels")
    }

    /// Directory of one kernel entry.
    pub fn entry_dir(&self, name: &str) -> PathBuf {
        self.kernels_dir().join(name)
    }

    /// Directory of cached initramfs images.
    pub fn initramfs_dir(&self) -> PathBuf {
        self.root.join("initramfs")
    }

    /// Take the provisioning lock (blocks while another pinfuzz provisions).
    pub fn lock(&self) -> Result<Flock<File>> {
        lock_dir(&self.kernels_dir())
    }

    /// Every entry with a readable manifest, sorted by name; entries whose
    /// manifest cannot be read come back as errors naming the file.
    pub fn list(&self) -> Vec<Result<Manifest>> {
        let Ok(dir) = fs::read_dir(self.kernels_dir()) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = dir
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.path().join("manifest.json"))
            .filter(|p| p.exists())
            .collect();
        paths.sort();
        paths.into_iter().map(|p| Manifest::load(&p)).collect()
    }
}

/// Take an exclusive `flock` on `<dir>/.lock`, creating both as needed:
/// serializes the provisioning work of concurrent pinfuzz runs on `dir`
/// (blocks while another holds it).
pub fn lock_dir(dir: &Path) -> Result<Flock<File>> {
    fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("open lock file {}", path.display()))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| errno)
        .with_context(|| format!("flock {}", path.display()))
}
