//! The manifest of one provisioned kernel: what was fetched, where it
//! is, and which helper module was built against it.
//!
//! Stored as `manifest.json` in the entry's directory and always written
//! atomically (temporary file in the same directory, then rename), so a
//! crash mid-write leaves the old manifest or the new one, never half.
//! Paths are relative to the entry directory, so a cache can be moved.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Version of the manifest layout.
pub const MANIFEST_SCHEMA: u32 = 1;

/// Where a kernel came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Origin {
    /// Debian packages fetched with apt.
    Debian {
        /// `debian-6.12` or `debian-6.1`.
        flavour: String,
        /// The ABI part of the package names (`6.12.117+deb12`, `6.1.0-56`).
        abi: String,
    },
    /// A user's own kernel, registered with `--kernel PATH --build-dir DIR`.
    User {
        /// The bzImage as given (a copy is kept in the entry).
        bzimage_source: PathBuf,
        /// The kernel build tree the module is built against.
        build_dir: PathBuf,
    },
}

/// One Debian package of an entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Package name.
    pub name: String,
    /// Exact package version.
    pub version: String,
    /// The .deb file, relative to the entry directory.
    pub file: PathBuf,
}

/// The helper module as built for this kernel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModuleBuild {
    /// The `kmod/` directory it was built from.
    pub source_dir: PathBuf,
    /// sha256 over the module's source files (see `kernel::module`).
    pub source_sha256: String,
    /// The built `pinfuzz.ko`, relative to the entry directory.
    pub ko: PathBuf,
    /// sha256 of `pinfuzz.ko`.
    pub ko_sha256: String,
    /// When it was built (seconds since the epoch).
    pub built_at: u64,
    /// How long the build took, in seconds.
    pub build_seconds: f64,
}

/// The manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_SCHEMA`].
    pub schema: u32,
    /// Entry name (directory name under `kernels/`).
    pub name: String,
    /// Where the kernel came from.
    pub origin: Origin,
    /// `uname -r` of the kernel.
    pub release: String,
    /// Packages (empty for a user kernel).
    pub packages: Vec<Package>,
    /// The bootable image, relative to the entry directory.
    pub bzimage: PathBuf,
    /// The uncompressed kernel extracted from the bzImage, booted through
    /// its PVH entry point (faster under TCG), relative to the entry
    /// directory; `None` if it could not be extracted.
    #[serde(default)]
    pub vmlinux: Option<PathBuf>,
    /// The build tree modules are compiled against (`KDIR`), relative to
    /// the entry directory for Debian kernels, absolute for user kernels.
    pub build_dir: PathBuf,
    /// The kernel's own modules (`lib/modules/<release>`), if shipped.
    pub modules_dir: Option<PathBuf>,
    /// Modules of the image kept for later use, by name, each as the list
    /// of files to load in order (dependencies first), relative to the
    /// entry directory. `zram` is recorded for swap in the guest.
    pub extra_modules: BTreeMap<String, Vec<PathBuf>>,
    /// Image modules the guest must load before it can talk to the host
    /// (the virtio PCI transport and virtio console, when the kernel has
    /// them as modules, as Debian 6.1 does), in load order, relative to
    /// the entry directory; `None` if not determined yet.
    #[serde(default)]
    pub boot_modules: Option<Vec<PathBuf>>,
    /// The helper module, once built.
    pub module: Option<ModuleBuild>,
    /// When the kernel was fetched or registered (seconds since the epoch).
    pub fetched_at: u64,
    /// Remarks for humans (e.g. "zsmalloc is built in").
    pub notes: Vec<String>,
}

impl Manifest {
    /// Read and check a manifest. Errors name the file, and for JSON
    /// errors the line and column.
    pub fn load(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read manifest {}", path.display()))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}:{}:{}: invalid manifest: {e}",
                path.display(),
                e.line(),
                e.column()
            )
        })?;
        if manifest.schema != MANIFEST_SCHEMA {
            bail!(
                "{}: manifest schema {} is not the supported {MANIFEST_SCHEMA}; \
                 re-fetch with `pinfuzz kernel fetch --force`",
                path.display(),
                manifest.schema
            );
        }
        Ok(manifest)
    }

    /// Write atomically to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).context("serialize manifest")?;
        write_atomic(path, json.as_bytes())
    }
}

/// Write `data` to `path` through a temporary file in the same directory
/// and a rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("create temporary file in {}", dir.display()))?;
    tmp.write_all(data)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("write {}", tmp.path().display()))?;
    tmp.persist(path)
        .with_context(|| format!("rename into {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            schema: MANIFEST_SCHEMA,
            name: "debian-6.12.117+deb12".into(),
            origin: Origin::Debian {
                flavour: "debian-6.12".into(),
                abi: "6.12.117+deb12".into(),
            },
            release: "6.12.117+deb12-amd64".into(),
            packages: vec![Package {
                name: "linux-image-6.12.117+deb12-amd64-unsigned".into(),
                version: "6.12.117-1~deb12u1".into(),
                file: "debs/linux-image.deb".into(),
            }],
            bzimage: "root/boot/vmlinuz-6.12.117+deb12-amd64".into(),
            vmlinux: Some("vmlinux".into()),
            build_dir: "root/usr/src/linux-headers-6.12.117+deb12-amd64".into(),
            modules_dir: Some("root/lib/modules/6.12.117+deb12-amd64".into()),
            extra_modules: BTreeMap::from([(
                "zram".to_string(),
                vec![PathBuf::from("root/lib/modules/x/zram.ko.xz")],
            )]),
            boot_modules: Some(Vec::new()),
            module: Some(ModuleBuild {
                source_dir: "/src/kmod".into(),
                source_sha256: "ab".repeat(32),
                ko: "kmod/abcd/pinfuzz.ko".into(),
                ko_sha256: "cd".repeat(32),
                built_at: 1_700_000_000,
                build_seconds: 1.5,
            }),
            fetched_at: 1_700_000_000,
            notes: vec!["zsmalloc is built in".into()],
        }
    }

    #[test]
    fn manifest_round_trips_through_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("manifest.json");
        let m = sample();
        m.save(&path).expect("save");
        assert_eq!(Manifest::load(&path).expect("load"), m);
        // Overwriting leaves exactly one file behind (no stray temporaries).
        m.save(&path).expect("save again");
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    #[test]
    fn bad_manifest_errors_name_file_line_and_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("manifest.json");
        std::fs::write(&path, "{\n  \"schema\": 1,\n  \"name\": 5\n}\n").expect("write");
        let err = format!("{:#}", Manifest::load(&path).expect_err("bad"));
        assert!(err.contains("manifest.json:3:"), "{err}");
        let mut m = sample();
        m.schema = 99;
        m.save(&path).expect("save");
        let err = format!("{:#}", Manifest::load(&path).expect_err("schema"));
        assert!(err.contains("schema 99"), "{err}");
    }
}
