//! The executor on a real kernel: boots a scratch QEMU guest whose `/init`
//! is the static `exec_guest` example (see `harness/examples/exec_guest.rs`
//! for what it checks) with the helper module, and requires its verdict
//! `exec_guest: PASS`.
//!
//! Ignored by default: it provisions a Debian kernel through
//! `harness::kernel::ensure` (apt, first time only), builds the example
//! statically (a separate target directory, minutes the first time) and
//! boots a TCG guest. Run it with
//!
//! ```text
//! cargo test -p harness --test exec_guest -- --ignored --nocapture
//! ```
//!
//! `EXEC_GUEST_KERNEL` picks the kernel (`debian-6.12`, `debian-6.1`, ...;
//! default `debian-6.12`), `PINFUZZ_ACCEL=kvm` uses KVM instead of TCG.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use harness::kernel::{self, Cache};
use harness::vm::cpio::CpioWriter;

fn static_example() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("exec-guest-static");
    let status = Command::new(env!("CARGO"))
        .current_dir(&root)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "build",
            "--release",
            "--target",
            "x86_64-unknown-linux-gnu",
            "-p",
            "harness",
            "--example",
            "exec_guest",
        ])
        .status()
        .expect("run cargo build for the static exec_guest example");
    assert!(
        status.success(),
        "building the static exec_guest example failed"
    );
    target.join("x86_64-unknown-linux-gnu/release/examples/exec_guest")
}

#[test]
#[ignore = "boots a QEMU guest (minutes); run with --ignored"]
fn executor_passes_its_checks_on_a_real_kernel() {
    let name = std::env::var("EXEC_GUEST_KERNEL").unwrap_or_else(|_| "debian-6.12".into());
    let cache = Cache::from_env().expect("pinfuzz cache");
    let spec = kernel::ensure(&cache, &name).expect("provision the kernel and build the module");
    let init = std::fs::read(static_example()).expect("read the exec_guest binary");
    let module = std::fs::read(&spec.module).expect("read the helper module");

    let mut w = CpioWriter::new(Vec::new());
    for dir in ["dev", "proc", "sys", "tmp", "lib", "lib/modules"] {
        w.dir(dir, 0o755).unwrap();
    }
    w.char_dev("dev/console", 0o600, 5, 1).unwrap();
    w.file("init", 0o755, &init).unwrap();
    w.file("lib/modules/pinfuzz.ko", 0o644, &module).unwrap();
    let dir = tempfile::tempdir().expect("tempdir");
    let initrd = dir.path().join("initrd.cpio");
    std::fs::write(&initrd, w.finish().unwrap()).expect("write the initramfs");

    let kvm = std::env::var("PINFUZZ_ACCEL").is_ok_and(|a| a == "kvm");
    let (accel, cpu) = if kvm { ("kvm", "host") } else { ("tcg", "max") };
    let start = Instant::now();
    let out = Command::new("timeout")
        .arg("900")
        .arg("qemu-system-x86_64")
        .args(["-accel", accel, "-cpu", cpu, "-smp", "1", "-m", "1024"])
        .args(["-nographic", "-no-reboot", "-kernel"])
        .arg(&spec.bzimage)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 quiet panic=-1"])
        .output()
        .expect("run qemu-system-x86_64 (apt-get install qemu-system-x86)");
    let console = String::from_utf8_lossy(&out.stdout);
    println!("{console}");
    println!(
        "kernel {} ({}), guest ran {:.1} s",
        spec.name,
        spec.release,
        start.elapsed().as_secs_f64()
    );
    assert!(
        console.lines().any(|l| l.trim_end() == "exec_guest: PASS"),
        "no `exec_guest: PASS` on the console (timeout {:?}?)",
        Duration::from_secs(900)
    );
}
