//! Guest setup done once by the agent as pid 1: file systems, kernel
//! command line, modules.
//!
//! Every step returns an error instead of panicking; the caller collects
//! the errors, reports them in `Hello`, and keeps serving, so the host can
//! always learn why a guest is unusable.

use std::ffi::CString;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::kmod::{ModuleInitFlags, finit_module};
use nix::mount::{MsFlags, mount};

/// Where the initramfs puts the helper module.
pub const MODULE_PATH: &str = "/lib/modules/pinfuzz.ko";
/// Extra modules (e.g. zram), loaded in file-name order before the helper.
pub const EXTRA_MODULES_DIR: &str = "/lib/modules/extra";
/// The helper's device node (`kmod/pinfuzz.h`).
pub const DEVICE_PATH: &str = "/dev/pinfuzz";
/// Prefix of the helper's parameters on the kernel command line.
const PARAM_PREFIX: &str = "pinfuzz.";

/// Mount the pseudo file systems the executor and the module need.
/// `/dev` first: the kernel opened `/dev/console` from the initramfs
/// already, and the module's misc device appears in devtmpfs.
pub fn mount_filesystems() -> Vec<anyhow::Error> {
    let mounts: [(&str, &str, &str, MsFlags); 5] = [
        ("devtmpfs", "/dev", "devtmpfs", MsFlags::MS_NOSUID),
        (
            "proc",
            "/proc",
            "proc",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        ),
        (
            "sysfs",
            "/sys",
            "sysfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        ),
        (
            "tmpfs",
            "/tmp",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        ),
        (
            "debugfs",
            "/sys/kernel/debug",
            "debugfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        ),
    ];
    let mut errors = Vec::new();
    for (source, target, fstype, flags) in mounts {
        let result = fs::create_dir_all(target)
            .with_context(|| format!("mkdir {target}"))
            .and_then(|()| {
                mount(Some(source), target, Some(fstype), flags, None::<&str>)
                    .with_context(|| format!("mount -t {fstype} {source} {target}"))
            });
        if let Err(err) = result {
            errors.push(err);
        }
    }
    errors
}

/// The helper module's parameters from the kernel command line: every
/// `pinfuzz.NAME=VALUE` becomes `NAME=VALUE` (the kernel applies such
/// parameters only to built-in code; for a module loaded with
/// `finit_module` that is the loader's job, as modprobe does it).
pub fn module_params(cmdline: &str) -> String {
    cmdline
        .split_ascii_whitespace()
        .filter_map(|word| word.strip_prefix(PARAM_PREFIX))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prefix of the agent's own settings on the kernel command line
/// (`pinfuzz_agent.swap_mib=512`). A dotted word is taken by the kernel for
/// a module parameter, so it is neither applied to anything built in nor
/// passed to init as an environment variable; the agent reads it from
/// `/proc/cmdline`.
pub const AGENT_PARAM_PREFIX: &str = "pinfuzz_agent.";

/// The value of `pinfuzz_agent.NAME=VALUE` on the command line (the last
/// one wins, as for kernel parameters).
pub fn agent_param<'a>(cmdline: &'a str, name: &str) -> Option<&'a str> {
    cmdline
        .split_ascii_whitespace()
        .filter_map(|word| word.strip_prefix(AGENT_PARAM_PREFIX))
        .filter_map(|word| word.split_once('='))
        .filter(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .next_back()
}

/// Load one module file with `finit_module`; `.ko.xz` / `.ko.zst` files
/// are decompressed by the kernel (`MODULE_INIT_COMPRESSED_FILE`, Debian
/// has `CONFIG_MODULE_DECOMPRESS=y`).
pub fn load_module(path: &Path, params: &str) -> Result<()> {
    let file = File::open(path).with_context(|| format!("open module {}", path.display()))?;
    let params = CString::new(params).context("module parameters contain a NUL byte")?;
    let compressed = path
        .extension()
        .is_some_and(|ext| ext == "xz" || ext == "zst" || ext == "gz");
    let flags = if compressed {
        ModuleInitFlags::from_bits_retain(4) // MODULE_INIT_COMPRESSED_FILE
    } else {
        ModuleInitFlags::empty()
    };
    finit_module(&file, &params, flags)
        .with_context(|| format!("finit_module {} ({params:?})", path.display()))
}

/// Extra modules shipped in the initramfs, in load order.
pub fn extra_modules() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(EXTRA_MODULES_DIR)
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths.sort();
    paths
}

/// Seconds since the kernel started, from `/proc/uptime`, in milliseconds.
pub fn uptime_ms() -> Result<u64> {
    let text = fs::read_to_string("/proc/uptime").context("read /proc/uptime")?;
    parse_uptime_ms(&text).with_context(|| format!("parse /proc/uptime {text:?}"))
}

fn parse_uptime_ms(text: &str) -> Option<u64> {
    let first = text.split_ascii_whitespace().next()?;
    let (secs, frac) = first.split_once('.').unwrap_or((first, "0"));
    let secs: u64 = secs.parse().ok()?;
    let centis: u64 = format!("{frac:0<2}")[..2].parse().ok()?;
    Some(secs * 1000 + centis * 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_params_come_from_prefixed_words() {
        assert_eq!(
            module_params("console=ttyS0 pinfuzz.fault=2 quiet pinfuzz.gup_test=1 pinfuzzx=3"),
            "fault=2 gup_test=1"
        );
        assert_eq!(module_params("console=ttyS0"), "");
    }

    #[test]
    fn agent_params_are_separate_from_module_params() {
        let line = "console=ttyS0 pinfuzz.gup_test=1 pinfuzz_agent.swap_mib=256 \
                    pinfuzz_agent.mm=kernel pinfuzz_agent.swap_mib=512";
        assert_eq!(agent_param(line, "swap_mib"), Some("512"));
        assert_eq!(agent_param(line, "mm"), Some("kernel"));
        assert_eq!(agent_param(line, "gup_test"), None);
        assert_eq!(module_params(line), "gup_test=1");
    }

    #[test]
    fn uptime_parses_to_milliseconds() {
        assert_eq!(parse_uptime_ms("1.52 0.80\n"), Some(1520));
        assert_eq!(parse_uptime_ms("12.5 3.00\n"), Some(12500));
        assert_eq!(parse_uptime_ms("7 1\n"), Some(7000));
        assert_eq!(parse_uptime_ms(""), None);
    }
}
