//! Provisioning: fetch a Debian kernel or register a user's kernel, build
//! the helper module against it, write the manifest.
//!
//! The manifest is written last and atomically: an entry directory
//! without one is an interrupted fetch and is redone from scratch. All
//! work happens under the cache's provisioning lock, so concurrent
//! `pinfuzz` processes never build into the same directory.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::apt::{self, Flavour};
use super::cache::Cache;
use super::manifest::{MANIFEST_SCHEMA, Manifest, Origin, Package};
use super::{module, now_secs, unpack};

/// What `pinfuzz kernel fetch` was asked for.
#[derive(Clone, Debug)]
pub struct FetchRequest {
    /// Which kernel line.
    pub flavour: Flavour,
    /// Pin an exact version (see [`apt::choose`]); newest if `None`.
    pub version: Option<String>,
    /// Fetch again even if the entry exists.
    pub force: bool,
}

fn say(msg: &str) {
    eprintln!("pinfuzz: {msg}");
}

/// Fetch a Debian kernel into the cache (or reuse the cached entry) and
/// make sure its helper module is built from the current sources.
pub fn fetch_debian(cache: &Cache, req: &FetchRequest) -> Result<Manifest> {
    let _lock = cache.lock()?;
    // A pinned version already in the cache needs no apt at all: Debian
    // drops old ABIs from the mirror, the cached entry keeps working.
    if let (Some(pin), false) = (req.version.as_deref(), req.force) {
        if let Some(manifest) = cached_pin(cache, req.flavour, pin) {
            say(&format!("{} is cached", manifest.name));
            return ensure_module_locked(cache, manifest);
        }
    }
    let found = match apt::available(req.flavour) {
        Ok(found) => found,
        Err(err) if req.version.is_none() && !req.force => {
            // No usable package lists: the newest cached entry will do.
            match super::newest_cached(cache, req.flavour) {
                Some(manifest) => {
                    say(&format!("{err:#}"));
                    say(&format!("using the cached {} instead", manifest.name));
                    return ensure_module_locked(cache, manifest);
                }
                None => return Err(err),
            }
        }
        Err(err) => return Err(err),
    };
    let chosen = apt::choose(req.flavour, &found, req.version.as_deref())?;
    let name = format!("debian-{}", chosen.abi);
    let dir = cache.entry_dir(&name);
    let manifest_path = dir.join("manifest.json");
    if !req.force && manifest_path.exists() {
        let manifest = Manifest::load(&manifest_path)?;
        say(&format!("{name} is cached ({})", dir.display()));
        return ensure_module_locked(cache, manifest);
    }
    // An entry without a manifest is an interrupted fetch: redo it, but
    // keep the downloaded .debs (the slow part, and the mirror may have
    // dropped them since) unless --force.
    for sub in ["root", "kmod"] {
        let path = dir.join(sub);
        if path.exists() {
            fs::remove_dir_all(&path).with_context(|| format!("remove {}", path.display()))?;
        }
    }
    if req.force && dir.join("debs").exists() {
        fs::remove_dir_all(dir.join("debs"))
            .with_context(|| format!("remove {}", dir.join("debs").display()))?;
    }
    let pkgs = req.flavour.packages(&chosen.abi);
    let kbuild_version = pick_kbuild_version(&pkgs.kbuild, &chosen.version)?;
    let wanted = [
        (&pkgs.image, chosen.version.clone()),
        (&pkgs.headers, chosen.version.clone()),
        (&pkgs.headers_common, chosen.version.clone()),
        (&pkgs.kbuild, kbuild_version),
    ];
    let debs = dir.join("debs");
    let root = dir.join("root");
    let mut packages = Vec::new();
    for (pkg, version) in wanted {
        say(&format!("downloading {pkg} {version}"));
        let deb = apt::download(&debs, pkg, &version)?;
        say(&format!("unpacking {}", deb.display()));
        unpack::dpkg_extract(&deb, &root)?;
        packages.push(Package {
            name: pkg.clone(),
            version,
            file: rel(&dir, &deb),
        });
    }
    let release = format!("{}-amd64", chosen.abi);
    let kdir = unpack::fix_header_paths(&root, &chosen.abi, &release)?;
    let bzimage = unpack::bzimage(&root, &release)?;
    let modules_dir = root.join("lib/modules").join(&release);
    let (extra_modules, mut notes) = keep_extra_modules(&dir, &modules_dir)?;
    let vmlinux = extract_vmlinux(&dir, &bzimage, &mut notes);
    let boot_modules = Some(boot_modules(&dir, &modules_dir)?);
    let mut manifest = Manifest {
        schema: MANIFEST_SCHEMA,
        name,
        origin: Origin::Debian {
            flavour: req.flavour.name().to_string(),
            abi: chosen.abi.clone(),
        },
        release,
        packages,
        bzimage: rel(&dir, &bzimage),
        vmlinux,
        build_dir: rel(&dir, &kdir),
        modules_dir: Some(rel(&dir, &modules_dir)),
        extra_modules,
        boot_modules,
        module: None,
        fetched_at: now_secs(),
        notes,
    };
    manifest.module = Some(build_module(&dir, &kdir)?);
    manifest.save(&manifest_path)?;
    say(&format!("{} ready ({})", manifest.name, dir.display()));
    Ok(manifest)
}

/// The cached entry of `flavour` that `pin` names (same rules as
/// [`apt::choose`]).
fn cached_pin(cache: &Cache, flavour: Flavour, pin: &str) -> Option<Manifest> {
    cache.list().into_iter().filter_map(Result::ok).find(|m| {
        let Origin::Debian { flavour: f, abi } = &m.origin else {
            return false;
        };
        let image_version = m.packages.first().map(|p| p.version.as_str()).unwrap_or("");
        f == flavour.name()
            && (abi == pin
                || abi.split('+').next() == Some(pin)
                || image_version.split('-').next() == Some(pin))
    })
}

/// The kbuild package's version: the image's version if apt has it (the
/// normal case), else the newest one (for 6.1, `linux-kbuild-6.1` is one
/// package across ABIs and old versions vanish; the headers only need
/// `>=`).
fn pick_kbuild_version(kbuild: &str, image_version: &str) -> Result<String> {
    let versions = apt::versions(kbuild)?;
    if versions.iter().any(|v| v == image_version) {
        return Ok(image_version.to_string());
    }
    match versions.first() {
        Some(v) => {
            say(&format!(
                "{kbuild} {image_version} is not offered; using {v} (headers require >=)"
            ));
            Ok(v.clone())
        }
        None => bail!("apt offers no version of {kbuild}"),
    }
}

/// Extract `vmlinux` for PVH boot; a failure only costs boot time, so it
/// becomes a note, not an error.
fn extract_vmlinux(dir: &Path, bzimage: &Path, notes: &mut Vec<String>) -> Option<PathBuf> {
    let out = dir.join("vmlinux");
    match unpack::extract_vmlinux(bzimage, &out) {
        Ok(()) => Some(rel(dir, &out)),
        Err(err) => {
            notes.push(format!(
                "no vmlinux for PVH boot, booting the bzImage: {err:#}"
            ));
            None
        }
    }
}

/// The image modules the guest's channel needs (virtio PCI transport,
/// virtio console), in load order; empty when they are built in.
fn boot_modules(dir: &Path, modules_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = Vec::new();
    for name in ["virtio_pci", "virtio_console"] {
        match unpack::image_module(modules_dir, name)? {
            unpack::ImageModule::Loadable(found) => {
                for f in found {
                    let f = rel(dir, &f);
                    if !files.contains(&f) {
                        files.push(f);
                    }
                }
            }
            unpack::ImageModule::BuiltIn => {}
            unpack::ImageModule::Absent => {
                bail!("the kernel has no {name}: the guest could not talk to the host")
            }
        }
    }
    Ok(files)
}

/// Image modules by name, each with its files in load order.
type ModuleFiles = BTreeMap<String, Vec<PathBuf>>;

/// Record the image modules a later task needs (zram for swap in the
/// guest); returns them and notes on the ones that are not modules.
fn keep_extra_modules(dir: &Path, modules_dir: &Path) -> Result<(ModuleFiles, Vec<String>)> {
    let mut extra = BTreeMap::new();
    let mut notes = Vec::new();
    for name in ["zram", "zsmalloc"] {
        match unpack::image_module(modules_dir, name)? {
            unpack::ImageModule::Loadable(files) => {
                extra.insert(
                    name.to_string(),
                    files.iter().map(|f| rel(dir, f)).collect(),
                );
            }
            unpack::ImageModule::BuiltIn => notes.push(format!("{name} is built into this kernel")),
            unpack::ImageModule::Absent => {
                notes.push(format!("{name} is not configured in this kernel"))
            }
        }
    }
    Ok((extra, notes))
}

fn build_module(dir: &Path, kdir: &Path) -> Result<super::manifest::ModuleBuild> {
    let source = module::source_dir()?;
    say(&format!(
        "building {} against {}",
        source.display(),
        kdir.display()
    ));
    let built = module::build(&source, kdir, dir)?;
    say(&format!(
        "built {} in {:.1} s (sha256 {})",
        built.ko.display(),
        built.build_seconds,
        &built.ko_sha256[..16]
    ));
    Ok(built)
}

/// Rebuild the helper module if its sources changed since the manifest's
/// build (or it was never built); a no-op if they did not, or if the
/// sources are not available (an installed pinfuzz without its tree).
pub fn ensure_module(cache: &Cache, manifest: Manifest) -> Result<Manifest> {
    let current = module::source_dir().and_then(|d| module::source_hash(&d));
    let fresh = match (&manifest.module, &current) {
        (Some(built), Ok(hash)) => &built.source_sha256 == hash,
        (Some(_), Err(_)) => true,
        (None, _) => false,
    };
    let wants_vmlinux = manifest.vmlinux.is_none()
        && matches!(manifest.origin, Origin::Debian { .. })
        && !manifest.notes.iter().any(|n| n.starts_with("no vmlinux"));
    if fresh && !wants_vmlinux && manifest.boot_modules.is_some() {
        return Ok(manifest);
    }
    let _lock = cache.lock()?;
    // Another process may have rebuilt it while we waited for the lock.
    let dir = cache.entry_dir(&manifest.name);
    let manifest = Manifest::load(&dir.join("manifest.json"))?;
    ensure_module_locked(cache, manifest)
}

fn ensure_module_locked(cache: &Cache, mut manifest: Manifest) -> Result<Manifest> {
    let dir = cache.entry_dir(&manifest.name);
    if manifest.vmlinux.is_none()
        && matches!(manifest.origin, Origin::Debian { .. })
        && !manifest.notes.iter().any(|n| n.starts_with("no vmlinux"))
    {
        let bzimage = dir.join(&manifest.bzimage);
        manifest.vmlinux = extract_vmlinux(&dir, &bzimage, &mut manifest.notes);
        manifest.save(&dir.join("manifest.json"))?;
    }
    if manifest.boot_modules.is_none() {
        let modules = match &manifest.modules_dir {
            Some(modules_dir) => boot_modules(&dir, &dir.join(modules_dir))?,
            None => Vec::new(),
        };
        manifest.boot_modules = Some(modules);
        manifest.save(&dir.join("manifest.json"))?;
    }
    let source = match module::source_dir() {
        Ok(source) => source,
        Err(err) if manifest.module.is_some() => {
            say(&format!("keeping the built module: {err:#}"));
            return Ok(manifest);
        }
        Err(err) => return Err(err),
    };
    let hash = module::source_hash(&source)?;
    if manifest
        .module
        .as_ref()
        .is_some_and(|m| m.source_sha256 == hash && dir.join(&m.ko).is_file())
    {
        return Ok(manifest);
    }
    let kdir = match &manifest.origin {
        Origin::Debian { abi, .. } => {
            // Re-point the headers in case the cache directory moved.
            unpack::fix_header_paths(&dir.join("root"), abi, &manifest.release)?
        }
        Origin::User { .. } => dir.join(&manifest.build_dir),
    };
    say("helper module sources changed: rebuilding");
    manifest.module = Some(build_module(&dir, &kdir)?);
    manifest.save(&dir.join("manifest.json"))?;
    Ok(manifest)
}

/// Register a user's kernel: copy the bzImage into the cache, read the
/// release from the build tree, build the module against the tree.
pub fn register_user(
    cache: &Cache,
    name: &str,
    bzimage: &Path,
    build_dir: &Path,
    force: bool,
) -> Result<Manifest> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        bail!("kernel name {name:?} must be a plain directory name");
    }
    if Flavour::from_name(name).is_some() || name.starts_with("debian-") {
        bail!("kernel name {name:?} is reserved for Debian kernels; pick another with --name");
    }
    let build_dir = build_dir
        .canonicalize()
        .with_context(|| format!("build directory {}", build_dir.display()))?;
    let release_file = build_dir.join("include/config/kernel.release");
    let release = fs::read_to_string(&release_file)
        .with_context(|| {
            format!(
                "read {} (is {} a configured and built kernel tree?)",
                release_file.display(),
                build_dir.display()
            )
        })?
        .trim()
        .to_string();
    if !build_dir.join("Module.symvers").is_file() {
        bail!(
            "{} has no Module.symvers: build the kernel (make bzImage modules_prepare) first",
            build_dir.display()
        );
    }
    let _lock = cache.lock()?;
    let dir = cache.entry_dir(name);
    let manifest_path = dir.join("manifest.json");
    if manifest_path.exists() && !force {
        bail!(
            "a kernel named {name} is already registered ({}); use --force to replace it",
            dir.display()
        );
    }
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let image = dir.join("bzImage");
    fs::copy(bzimage, &image)
        .with_context(|| format!("copy {} to {}", bzimage.display(), image.display()))?;
    let mut manifest = Manifest {
        schema: MANIFEST_SCHEMA,
        name: name.to_string(),
        origin: Origin::User {
            bzimage_source: bzimage.to_path_buf(),
            build_dir: build_dir.clone(),
        },
        release,
        packages: Vec::new(),
        bzimage: PathBuf::from("bzImage"),
        vmlinux: None,
        build_dir: build_dir.clone(),
        modules_dir: None,
        extra_modules: BTreeMap::new(),
        // A user's kernel is expected to have virtio built in.
        boot_modules: Some(Vec::new()),
        module: None,
        fetched_at: now_secs(),
        notes: vec![format!("bzImage sha256 {}", module::file_sha256(&image)?)],
    };
    manifest.module = Some(build_module(&dir, &build_dir)?);
    manifest.save(&manifest_path)?;
    say(&format!("registered {name} ({})", manifest.release));
    Ok(manifest)
}

/// `path` relative to `base` if it is under it.
fn rel(base: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(base).unwrap_or(path).to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_kernel_registration_checks_the_build_tree_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::at(dir.path().join("cache"));
        let image = dir.path().join("bzImage");
        fs::write(&image, b"not a kernel").expect("write");
        let tree = dir.path().join("linux");
        fs::create_dir_all(tree.join("include/config")).expect("mkdir");
        let err = format!(
            "{:#}",
            register_user(&cache, "mine", &image, &tree, false).expect_err("no release")
        );
        assert!(err.contains("include/config/kernel.release"), "{err}");
        fs::write(tree.join("include/config/kernel.release"), "6.13.0-rc1\n").expect("write");
        let err = format!(
            "{:#}",
            register_user(&cache, "mine", &image, &tree, false).expect_err("no symvers")
        );
        assert!(err.contains("Module.symvers"), "{err}");
        for bad in ["", "a/b", ".hidden", "debian-6.12", "debian-x"] {
            assert!(
                register_user(&cache, bad, &image, &tree, false).is_err(),
                "{bad:?}"
            );
        }
        // Nothing was created for the failed registrations.
        assert!(cache.list().is_empty());
    }
}
