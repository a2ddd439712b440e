//! Finding and downloading Debian kernel packages with apt.
//!
//! Only read-only apt operations are used (`apt-cache search`,
//! `apt-cache show`, `apt-get download`), so no root is needed unless the
//! package lists are missing or stale (`apt-get update`). Versions are
//! resolved at run time: Debian adds new kernel ABIs and drops old ones
//! from the mirror, so nothing here names a fixed version.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use regex::Regex;

/// A kernel flavour pinfuzz knows how to fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// `linux-image-6.12.N+deb12-amd64-unsigned` (bookworm-security / backports).
    Debian612,
    /// `linux-image-6.1.0-N-amd64-unsigned` (bookworm).
    Debian61,
}

impl Flavour {
    /// Every flavour; the first is the default.
    pub const ALL: [Flavour; 2] = [Flavour::Debian612, Flavour::Debian61];

    /// The name used on the command line and in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Flavour::Debian612 => "debian-6.12",
            Flavour::Debian61 => "debian-6.1",
        }
    }

    /// The flavour called `name`.
    pub fn from_name(name: &str) -> Option<Flavour> {
        Flavour::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The `apt-cache search --names-only` pattern for image packages.
    /// It also matches the `-cloud-amd64` and `-rt-amd64` variants, which
    /// [`Flavour::abi_of_image`] filters out.
    pub fn search_pattern(self) -> &'static str {
        match self {
            Flavour::Debian612 => r"^linux-image-6\.12\..*-amd64-unsigned$",
            Flavour::Debian61 => r"^linux-image-6\.1\.0-.*-amd64-unsigned$",
        }
    }

    /// The ABI of an image package name (`6.12.117+deb12`), if it is the
    /// plain amd64 flavour.
    pub fn abi_of_image(self, package: &str) -> Option<String> {
        let re = match self {
            Flavour::Debian612 => r"^linux-image-(6\.12\.\d+\+deb\d+)-amd64-unsigned$",
            Flavour::Debian61 => r"^linux-image-(6\.1\.0-\d+)-amd64-unsigned$",
        };
        let re = Regex::new(re).expect("flavour regex compiles");
        re.captures(package).map(|c| c[1].to_string())
    }

    /// The number that orders ABIs of this flavour (N in 6.12.N / 6.1.0-N).
    pub fn abi_number(self, abi: &str) -> u32 {
        let digits = match self {
            Flavour::Debian612 => abi.strip_prefix("6.12.").and_then(|r| r.split('+').next()),
            Flavour::Debian61 => abi.strip_prefix("6.1.0-"),
        };
        digits.and_then(|d| d.parse().ok()).unwrap_or(0)
    }

    /// The four packages of a kernel with this ABI: image, `-amd64`
    /// headers, `-common` headers, kbuild.
    pub fn packages(self, abi: &str) -> KernelPackages {
        KernelPackages {
            image: format!("linux-image-{abi}-amd64-unsigned"),
            headers: format!("linux-headers-{abi}-amd64"),
            headers_common: format!("linux-headers-{abi}-common"),
            kbuild: match self {
                Flavour::Debian612 => format!("linux-kbuild-{abi}"),
                Flavour::Debian61 => "linux-kbuild-6.1".to_string(),
            },
        }
    }
}

/// Package names of one kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelPackages {
    /// The image (bzImage and modules).
    pub image: String,
    /// Arch-specific headers (`.config`, `Module.symvers`).
    pub headers: String,
    /// Arch-independent headers (the Makefile the arch one includes).
    pub headers_common: String,
    /// Host tools (`scripts/`, `tools/`).
    pub kbuild: String,
}

/// An available kernel: ABI and the image package's version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Available {
    /// `6.12.117+deb12` / `6.1.0-56`.
    pub abi: String,
    /// Version of the image package (`6.12.117-1~deb12u1`).
    pub version: String,
}

fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("run {shown} (is apt installed? this needs Debian or Ubuntu)"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Kernels of `flavour` in the apt lists, newest first.
pub fn available(flavour: Flavour) -> Result<Vec<Available>> {
    let listing =
        run(Command::new("apt-cache").args(["search", "--names-only", flavour.search_pattern()]))?;
    let images: Vec<String> = listing
        .lines()
        .filter_map(|l| l.split(" - ").next())
        .filter(|p| flavour.abi_of_image(p).is_some())
        .map(str::to_string)
        .collect();
    if images.is_empty() {
        bail!(
            "apt knows no {} kernel packages (pattern {}): the package lists are missing or \
             stale — run `apt-get update` as root, with bookworm and bookworm-security in \
             the sources",
            flavour.name(),
            flavour.search_pattern()
        );
    }
    let shown = run(Command::new("apt-cache")
        .args(["show", "--no-all-versions"])
        .args(&images))?;
    let mut found: Vec<Available> = parse_show(&shown)
        .into_iter()
        .filter_map(|(pkg, version)| {
            flavour
                .abi_of_image(&pkg)
                .map(|abi| Available { abi, version })
        })
        .collect();
    found.sort_by_key(|a| std::cmp::Reverse(flavour.abi_number(&a.abi)));
    found.dedup_by(|a, b| a.abi == b.abi);
    Ok(found)
}

/// `(Package, Version)` of every stanza of `apt-cache show` output.
pub fn parse_show(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        };
        if let (Some(p), Some(v)) = (field("Package:"), field("Version:")) {
            out.push((p, v));
        }
    }
    out
}

/// Pick the kernel to fetch: the newest, or the one matching `pin`.
///
/// A pin matches an ABI exactly (`6.12.115+deb12`, `6.1.0-56`), an ABI
/// without its `+debN` suffix (`6.12.115`), or the upstream part of the
/// package version (`6.1.192` matches `6.1.192-2`).
pub fn choose(flavour: Flavour, found: &[Available], pin: Option<&str>) -> Result<Available> {
    let chosen = match pin {
        None => found.first(),
        Some(pin) => found.iter().find(|a| {
            a.abi == pin
                || a.abi.split('+').next() == Some(pin)
                || a.version.split('-').next() == Some(pin)
        }),
    };
    match chosen {
        Some(a) => Ok(a.clone()),
        None => bail!(
            "no {} kernel matches version {:?}; apt offers: {} (older versions vanish from \
             the mirror: pin one that is listed, or keep the cached entry)",
            flavour.name(),
            pin.unwrap_or("(any)"),
            found
                .iter()
                .map(|a| format!("{} ({})", a.abi, a.version))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The candidate versions of a package, newest first (`apt-cache show` order).
pub fn versions(package: &str) -> Result<Vec<String>> {
    let shown = run(Command::new("apt-cache").args(["show", package]))?;
    Ok(parse_show(&shown).into_iter().map(|(_, v)| v).collect())
}

/// `apt-get download NAME=VERSION` into `dir`; returns the .deb's path.
pub fn download(dir: &Path, name: &str, version: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let spec = format!("{name}={version}");
    // apt names the file NAME_VERSION_ARCH.deb with ':' in the version escaped as %3a.
    let prefix = format!("{name}_{}_", version.replace(':', "%3a"));
    let find = || -> Result<Option<PathBuf>> {
        let mut hits: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("list {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
            })
            .collect();
        hits.sort();
        Ok(hits.pop())
    };
    if let Some(deb) = find()? {
        return Ok(deb); // kept from an interrupted fetch
    }
    run(Command::new("apt-get")
        .args(["download", "-q", &spec])
        .current_dir(dir))
    .with_context(|| {
        format!(
            "download {spec} into {} (if apt reports 404, the lists are stale: run \
             `apt-get update` as root)",
            dir.display()
        )
    })?;
    find()?.with_context(|| {
        format!(
            "apt-get download {spec} left no {prefix}*.deb in {}",
            dir.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_filter_out_cloud_and_rt() {
        let f = Flavour::Debian612;
        assert_eq!(
            f.abi_of_image("linux-image-6.12.117+deb12-amd64-unsigned")
                .as_deref(),
            Some("6.12.117+deb12")
        );
        assert_eq!(
            f.abi_of_image("linux-image-6.12.117+deb12-cloud-amd64-unsigned"),
            None
        );
        assert_eq!(
            f.abi_of_image("linux-image-6.12.117+deb12-rt-amd64-unsigned"),
            None
        );
        let f = Flavour::Debian61;
        assert_eq!(
            f.abi_of_image("linux-image-6.1.0-56-amd64-unsigned")
                .as_deref(),
            Some("6.1.0-56")
        );
        assert_eq!(f.abi_number("6.1.0-56"), 56);
        assert_eq!(Flavour::Debian612.abi_number("6.12.117+deb12"), 117);
    }

    #[test]
    fn package_names_per_flavour() {
        let p = Flavour::Debian612.packages("6.12.117+deb12");
        assert_eq!(p.headers_common, "linux-headers-6.12.117+deb12-common");
        assert_eq!(p.kbuild, "linux-kbuild-6.12.117+deb12");
        assert_eq!(
            Flavour::Debian61.packages("6.1.0-56").kbuild,
            "linux-kbuild-6.1"
        );
    }

    #[test]
    fn pins_match_abi_short_abi_or_upstream_version() {
        let found = vec![
            Available {
                abi: "6.12.117+deb12".into(),
                version: "6.12.117-1~deb12u1".into(),
            },
            Available {
                abi: "6.12.115+deb12".into(),
                version: "6.12.115-1~deb12u1".into(),
            },
        ];
        let f = Flavour::Debian612;
        assert_eq!(
            choose(f, &found, None).expect("newest").abi,
            "6.12.117+deb12"
        );
        assert_eq!(
            choose(f, &found, Some("6.12.115")).expect("pin").abi,
            "6.12.115+deb12"
        );
        assert_eq!(
            choose(f, &found, Some("6.12.115+deb12")).expect("pin").abi,
            "6.12.115+deb12"
        );
        let err = choose(f, &found, Some("6.12.1")).expect_err("absent");
        assert!(
            err.to_string().contains("apt offers: 6.12.117+deb12"),
            "{err}"
        );
    }

    #[test]
    fn apt_cache_show_stanzas_parse() {
        let text = "Package: a\nVersion: 1-2\nDepends: x\n\nPackage: b\nSource: s\nVersion: 3\n";
        assert_eq!(
            parse_show(text),
            vec![("a".into(), "1-2".into()), ("b".into(), "3".into())]
        );
    }
}
