//! Unpacking Debian kernel packages into the cache and making the
//! headers usable from there.
//!
//! `dpkg -x` unpacks without installing (no root). The unpacked headers
//! refer to themselves by absolute paths that only hold once installed:
//! the `-amd64` headers' `Makefile` is one line,
//! `include /usr/src/linux-headers-<abi>-common/Makefile`, and
//! `lib/modules/<release>/{build,source}` are absolute symlinks into
//! `/usr/src`. Those are rewritten to point into the unpacked tree. The
//! `scripts` and `tools` links into `usr/lib/linux-kbuild-…` are relative
//! and resolve inside the tree as they are.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// `dpkg -x DEB ROOT`.
pub fn dpkg_extract(deb: &Path, root: &Path) -> Result<()> {
    fs::create_dir_all(root).with_context(|| format!("create {}", root.display()))?;
    let out = Command::new("dpkg")
        .arg("-x")
        .arg(deb)
        .arg(root)
        .output()
        .context("run dpkg -x (is dpkg installed?)")?;
    if !out.status.success() {
        bail!(
            "dpkg -x {} {} failed ({}): {}",
            deb.display(),
            root.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Rewrite the absolute paths of the unpacked headers for `abi` /
/// `release` under `root`; returns the build directory (`KDIR`).
pub fn fix_header_paths(root: &Path, abi: &str, release: &str) -> Result<PathBuf> {
    let src = root.join("usr/src");
    let arch_dir = src.join(format!("linux-headers-{release}"));
    let common_dir = src.join(format!("linux-headers-{abi}-common"));
    for dir in [&arch_dir, &common_dir] {
        if !dir.is_dir() {
            bail!("{} is missing after unpacking the headers", dir.display());
        }
    }
    let makefile = arch_dir.join("Makefile");
    let text =
        fs::read_to_string(&makefile).with_context(|| format!("read {}", makefile.display()))?;
    let fixed = rewrite_include(&text, &common_dir).with_context(|| {
        format!(
            "{}: expected a line `include /usr/src/…-common/Makefile`",
            makefile.display()
        )
    })?;
    if fixed != text {
        super::manifest::write_atomic(&makefile, fixed.as_bytes())?;
    }
    let modules = root.join("lib/modules").join(release);
    if modules.is_dir() {
        for (link, target) in [("build", &arch_dir), ("source", &common_dir)] {
            let path = modules.join(link);
            if path.symlink_metadata().is_ok() {
                fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
            }
            symlink(target, &path)
                .with_context(|| format!("symlink {} -> {}", path.display(), target.display()))?;
        }
    }
    Ok(arch_dir)
}

/// The Makefile with its `include /usr/src/…` line pointed at `common_dir`
/// (idempotent: a line already pointing there is kept).
fn rewrite_include(text: &str, common_dir: &Path) -> Option<String> {
    let mut found = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| match line.strip_prefix("include ") {
            Some(path) if path.trim().ends_with("-common/Makefile") => {
                found = true;
                format!("include {}/Makefile", common_dir.display())
            }
            _ => line.to_string(),
        })
        .collect();
    found.then(|| lines.join("\n") + "\n")
}

/// The bzImage of `release` in the unpacked image package.
pub fn bzimage(root: &Path, release: &str) -> Result<PathBuf> {
    let path = root.join("boot").join(format!("vmlinuz-{release}"));
    if !path.is_file() {
        bail!(
            "{} is missing after unpacking the image package",
            path.display()
        );
    }
    Ok(path)
}

/// Extract the uncompressed `vmlinux` ELF from a bzImage into `out`.
///
/// QEMU boots such an ELF through its PVH entry point (`CONFIG_PVH=y`,
/// Debian's default), which skips the bzImage's real-mode setup and its
/// in-guest decompressor — under TCG the decompressor alone costs about
/// two seconds of a boot. The payload's place comes from the boot
/// protocol header (Documentation/arch/x86/boot.rst: `setup_sects` at
/// 0x1f1, `payload_offset`/`payload_length` at 0x248/0x24c, relative to
/// the protected-mode code at `(setup_sects + 1) * 512`), its format from
/// its magic; the matching command-line tool (`zstd`, `xz`, `gzip`)
/// decompresses it.
pub fn extract_vmlinux(bzimage: &Path, out: &Path) -> Result<()> {
    let image = fs::read(bzimage).with_context(|| format!("read {}", bzimage.display()))?;
    let payload = bzimage_payload(&image)
        .with_context(|| format!("{}: not a bzImage with a payload", bzimage.display()))?;
    let tool: &[&str] = if payload.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        &["zstd", "-dcq"]
    } else if payload.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        &["xz", "-dcq"]
    } else if payload.starts_with(&[0x1f, 0x8b]) {
        &["gzip", "-dcq"]
    } else {
        bail!(
            "{}: payload compression {:02x?} not supported for extraction",
            bzimage.display(),
            &payload[..payload.len().min(6)]
        );
    };
    let tmp = out.with_extension("tmp");
    let file = fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    let mut child = Command::new(tool[0])
        .args(&tool[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(file)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("run {} (install it to boot faster)", tool[0]))?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // The payload may carry trailing bytes after the compressed
        // stream; the tools stop at the end of the stream, a broken pipe
        // after that is harmless.
        let _ = stdin.write_all(payload);
    }
    let output = child
        .wait_with_output()
        .context("wait for the decompressor")?;
    let elf = fs::read(&tmp).with_context(|| format!("read {}", tmp.display()))?;
    if !elf.starts_with(b"\x7fELF") {
        let _ = fs::remove_file(&tmp);
        bail!(
            "{} did not produce an ELF from {} ({}): {}",
            tool[0],
            bzimage.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    fs::rename(&tmp, out).with_context(|| format!("rename into {}", out.display()))?;
    Ok(())
}

/// The compressed payload of a bzImage.
fn bzimage_payload(image: &[u8]) -> Option<&[u8]> {
    let le32 = |o: usize| Some(u32::from_le_bytes(image.get(o..o + 4)?.try_into().ok()?));
    if image.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let setup_sects = match *image.get(0x1f1)? {
        0 => 4,
        n => usize::from(n),
    };
    let pm_start = (setup_sects + 1) * 512;
    let offset = pm_start + usize::try_from(le32(0x248)?).ok()?;
    let len = usize::try_from(le32(0x24c)?).ok()?;
    image.get(offset..offset + len)
}

/// What the image says about one of its modules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageModule {
    /// Files to load in order (dependencies first).
    Loadable(Vec<PathBuf>),
    /// Compiled into the kernel (`modules.builtin`).
    BuiltIn,
    /// Neither.
    Absent,
}

/// Find module `name` of the unpacked image and its dependencies.
///
/// The packages ship no `modules.dep` (depmod writes it at install time),
/// so dependencies come from each module's own `.modinfo` `depends=`
/// entry, and files from `modules.order` (`kernel/drivers/…/zram.ko`,
/// stored compressed as `.ko.xz`, which `xz -dc` reads).
pub fn image_module(modules_dir: &Path, name: &str) -> Result<ImageModule> {
    let read = |file: &str| {
        let path = modules_dir.join(file);
        fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))
    };
    let order = read("modules.order")?;
    let builtin = read("modules.builtin").unwrap_or_default();
    let normal = |s: &str| s.replace('-', "_");
    let stem = |line: &str| {
        normal(
            line.rsplit('/')
                .next()
                .unwrap_or("")
                .trim_end_matches(".ko"),
        )
    };
    if builtin.lines().any(|l| stem(l) == normal(name)) {
        return Ok(ImageModule::BuiltIn);
    }
    let mut files = Vec::new();
    let mut seen = Vec::new();
    if !visit(modules_dir, &order, &normal(name), &mut seen, &mut files)? {
        return Ok(ImageModule::Absent);
    }
    Ok(ImageModule::Loadable(files))
}

/// Depth-first: dependencies of `name`, then `name`; false if not shipped.
fn visit(
    dir: &Path,
    order: &str,
    name: &str,
    seen: &mut Vec<String>,
    out: &mut Vec<PathBuf>,
) -> Result<bool> {
    if seen.iter().any(|s| s == name) {
        return Ok(true);
    }
    seen.push(name.to_string());
    let Some(line) = order.lines().find(|l| {
        l.rsplit('/')
            .next()
            .map(|f| f.trim_end_matches(".ko").replace('-', "_"))
            == Some(name.to_string())
    }) else {
        return Ok(false);
    };
    let plain = dir.join(line);
    let compressed = dir.join(format!("{line}.xz"));
    let (path, bytes) = if compressed.is_file() {
        let out = Command::new("xz")
            .arg("-dc")
            .arg(&compressed)
            .output()
            .context("run xz -dc (is xz-utils installed?)")?;
        if !out.status.success() {
            bail!("xz -dc {} failed ({})", compressed.display(), out.status);
        }
        (compressed, out.stdout)
    } else {
        let bytes = fs::read(&plain).with_context(|| format!("read {}", plain.display()))?;
        (plain, bytes)
    };
    for dep in modinfo_depends(&bytes) {
        if !visit(dir, order, &dep.replace('-', "_"), seen, out)? {
            bail!(
                "{} depends on {dep}, which the image does not ship",
                path.display()
            );
        }
    }
    out.push(path);
    Ok(true)
}

/// The `depends=` list of a module's `.modinfo` (NUL-separated strings).
fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    ko.split(|b| *b == 0)
        .find_map(|s| s.strip_prefix(b"depends="))
        .map(|d| {
            String::from_utf8_lossy(d)
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bzimage_payload_is_found_through_the_boot_header() {
        let mut image = vec![0u8; 4096];
        image[0x1f1] = 3; // setup_sects: protected-mode code at 4 * 512
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x248..0x24c].copy_from_slice(&100u32.to_le_bytes());
        image[0x24c..0x250].copy_from_slice(&6u32.to_le_bytes());
        image[2048 + 100..2048 + 106].copy_from_slice(&[0x28, 0xb5, 0x2f, 0xfd, 1, 2]);
        assert_eq!(
            bzimage_payload(&image),
            Some(&[0x28, 0xb5, 0x2f, 0xfd, 1, 2][..])
        );
        image[0x24c..0x250].copy_from_slice(&100_000u32.to_le_bytes());
        assert_eq!(bzimage_payload(&image), None, "payload past the end");
        image[0x202] = b'X';
        assert_eq!(bzimage_payload(&image), None, "no HdrS");
    }

    #[test]
    fn include_line_is_rewritten_idempotently() {
        let common = Path::new("/cache/root/usr/src/linux-headers-6.12.117+deb12-common");
        let text = "include /usr/src/linux-headers-6.12.117+deb12-common/Makefile\n";
        let once = rewrite_include(text, common).expect("rewritten");
        assert_eq!(
            once,
            "include /cache/root/usr/src/linux-headers-6.12.117+deb12-common/Makefile\n"
        );
        assert_eq!(rewrite_include(&once, common).expect("again"), once);
        assert_eq!(rewrite_include("all:\n", common), None);
    }

    #[test]
    fn modinfo_depends_are_read_and_resolved_in_load_order() {
        assert_eq!(
            modinfo_depends(
                b"\x7fELF\0junk\0license=GPL\0depends=lz4hc_compress,lz4_compress\0name=zram\0"
            ),
            vec!["lz4hc_compress", "lz4_compress"]
        );
        assert!(modinfo_depends(b"depends=\0").is_empty());
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        fs::create_dir_all(d.join("kernel/a")).expect("mkdir");
        fs::write(
            d.join("modules.order"),
            "kernel/a/top.ko\nkernel/a/dep-one.ko\nkernel/a/leaf.ko\n",
        )
        .expect("write");
        fs::write(d.join("modules.builtin"), "kernel/mm/zsmalloc.ko\n").expect("write");
        fs::write(d.join("kernel/a/top.ko"), b"\0depends=dep_one,leaf\0").expect("write");
        fs::write(d.join("kernel/a/dep-one.ko"), b"\0depends=leaf\0").expect("write");
        fs::write(d.join("kernel/a/leaf.ko"), b"\0depends=\0").expect("write");
        assert_eq!(
            image_module(d, "top").expect("top"),
            ImageModule::Loadable(vec![
                d.join("kernel/a/leaf.ko"),
                d.join("kernel/a/dep-one.ko"),
                d.join("kernel/a/top.ko"),
            ])
        );
        assert_eq!(
            image_module(d, "zsmalloc").expect("builtin"),
            ImageModule::BuiltIn
        );
        assert_eq!(
            image_module(d, "nope").expect("absent"),
            ImageModule::Absent
        );
    }
}
