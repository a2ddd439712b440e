//! Kernels for the guest: fetching Debian kernels through apt, registering
//! a user's own kernel, building the helper module against them, and
//! resolving a kernel name to the files a guest boots.
//!
//! Contract: [`ensure`] turns a name (`debian-6.12`, `debian-6.1`, or an
//! entry name from `pinfuzz kernel list`) into a [`KernelSpec`] whose
//! files exist and whose helper module was built from the current
//! `kmod/` sources, fetching the kernel (flavour names only) or
//! rebuilding the module if needed. Nothing is downloaded when the cache
//! already has a matching entry.

pub mod apt;
pub mod cache;
pub mod manifest;
pub mod module;
pub mod provision;
pub mod unpack;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

pub use apt::Flavour;
pub use cache::Cache;
pub use manifest::{Manifest, Origin};
pub use provision::FetchRequest;

/// The default kernel.
pub const DEFAULT_KERNEL: &str = "debian-6.12";

/// Everything a guest needs from a provisioned kernel, as absolute paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelSpec {
    /// Entry name.
    pub name: String,
    /// `uname -r`.
    pub release: String,
    /// The compressed image (`-kernel` if there is no `vmlinux`).
    pub bzimage: PathBuf,
    /// The uncompressed kernel, booted through PVH when present (faster).
    pub vmlinux: Option<PathBuf>,
    /// The build tree modules are compiled against (`KDIR`).
    pub build_dir: PathBuf,
    /// The helper module built for it.
    pub module: PathBuf,
    /// sha256 of the module (part of the initramfs cache key).
    pub module_sha256: String,
    /// Image modules the guest loads first (virtio, when modular).
    pub boot_modules: Vec<PathBuf>,
    /// Image modules kept for later use (see [`Manifest::extra_modules`]).
    pub extra_modules: BTreeMap<String, Vec<PathBuf>>,
}

impl KernelSpec {
    /// The spec of a cached entry.
    pub fn from_manifest(cache: &Cache, manifest: &Manifest) -> Result<KernelSpec> {
        let dir = cache.entry_dir(&manifest.name);
        let built = manifest.module.as_ref().with_context(|| {
            format!(
                "kernel {} has no built helper module; run `pinfuzz kernel fetch`",
                manifest.name
            )
        })?;
        let spec = KernelSpec {
            name: manifest.name.clone(),
            release: manifest.release.clone(),
            bzimage: dir.join(&manifest.bzimage),
            vmlinux: manifest
                .vmlinux
                .as_ref()
                .map(|v| dir.join(v))
                .filter(|v| v.is_file()),
            build_dir: dir.join(&manifest.build_dir),
            module: dir.join(&built.ko),
            module_sha256: built.ko_sha256.clone(),
            boot_modules: manifest
                .boot_modules
                .iter()
                .flatten()
                .map(|p| dir.join(p))
                .collect(),
            extra_modules: manifest
                .extra_modules
                .iter()
                .map(|(k, v)| (k.clone(), v.iter().map(|p| dir.join(p)).collect()))
                .collect(),
        };
        for path in [&spec.bzimage, &spec.module] {
            if !path.is_file() {
                bail!(
                    "{} of kernel {} is missing; re-fetch with `pinfuzz kernel fetch --force`",
                    path.display(),
                    spec.name
                );
            }
        }
        Ok(spec)
    }
}

/// The newest cached entry of a flavour.
pub fn newest_cached(cache: &Cache, flavour: Flavour) -> Option<Manifest> {
    cache
        .list()
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|m| match &m.origin {
            Origin::Debian { flavour: f, abi } if f == flavour.name() => {
                Some((flavour.abi_number(abi), m))
            }
            _ => None,
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, m)| m)
}

/// Resolve `name` to a bootable kernel, provisioning what is missing (see
/// the module doc).
pub fn ensure(cache: &Cache, name: &str) -> Result<KernelSpec> {
    let manifest = if let Some(flavour) = Flavour::from_name(name) {
        match newest_cached(cache, flavour) {
            Some(m) => provision::ensure_module(cache, m)?,
            None => provision::fetch_debian(
                cache,
                &FetchRequest {
                    flavour,
                    version: None,
                    force: false,
                },
            )?,
        }
    } else {
        let path = cache.entry_dir(name).join("manifest.json");
        if !path.exists() {
            bail!(
                "no kernel named {name:?} in {} (known: {}); fetch one with \
                 `pinfuzz kernel fetch debian-6.12`",
                cache.kernels_dir().display(),
                cache
                    .list()
                    .into_iter()
                    .filter_map(Result::ok)
                    .map(|m| m.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        provision::ensure_module(cache, Manifest::load(&path)?)?
    };
    KernelSpec::from_manifest(cache, &manifest)
}

/// Seconds since the epoch.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
