//! Real kernel incidents, detected from the real console (ignored by
//! default: needs QEMU and a provisioned kernel; CI runs it with
//! `--ignored` after `pinfuzz kernel fetch`).
//!
//! A small module (`testdata/console/crashme`) makes the kernel WARN,
//! underflow a refcount, free a bad page, oops, BUG and soft-lock-up on
//! purpose; `/proc/sysrq-trigger` makes it panic. Each incident must be
//! detected with its expected title and kind, and be followed by a
//! working fresh guest. With `PINFUZZ_CAPTURE_GOLDEN=1` the consoles are
//! also written to `testdata/console/` as golden files.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use harness::kernel::{self, Cache, KernelSpec};
use harness::vm::{CrashKind, Guest, GuestOptions, console};

fn default_kernel() -> KernelSpec {
    let qemu = Command::new("qemu-system-x86_64").arg("--version").output();
    assert!(
        qemu.is_ok_and(|o| o.status.success()),
        "qemu-system-x86_64 is not installed: `apt-get install --no-install-recommends \
         qemu-system-x86` (this test must not pass without a guest)"
    );
    let cache = Cache::from_env().expect("cache");
    kernel::ensure(&cache, kernel::DEFAULT_KERNEL)
        .unwrap_or_else(|e| panic!("provisioning {} failed: {e:#}", kernel::DEFAULT_KERNEL))
}

/// Build crashme.ko against the kernel's headers.
fn build_crashme(spec: &KernelSpec, dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/console/crashme");
    for f in ["crashme.c", "Kbuild"] {
        std::fs::copy(src.join(f), dir.join(f)).expect("copy crashme sources");
    }
    let out = Command::new("make")
        .arg("-C")
        .arg(&spec.build_dir)
        .arg(format!("M={}", dir.display()))
        .arg("modules")
        .output()
        .expect("run make");
    assert!(
        out.status.success(),
        "building crashme failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("crashme.ko")
}

fn golden(name: &str, title: &str, kind: &str, text: &str) {
    if std::env::var_os("PINFUZZ_CAPTURE_GOLDEN").is_none() {
        return;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/console")
        .join(format!("{name}.txt"));
    std::fs::write(&path, format!("TITLE: {title}\nKIND: {kind}\n\n{text}"))
        .expect("write golden file");
}

#[test]
#[ignore = "boots QEMU guests; run with --ignored after `pinfuzz kernel fetch`"]
fn kernel_incidents_are_detected_and_followed_by_a_fresh_guest() {
    let spec = default_kernel();
    let build = tempfile::tempdir().expect("tempdir");
    let crashme = build_crashme(&spec, build.path());
    let mut spec = spec.clone();
    spec.extra_modules.insert("crashme".into(), vec![crashme]);
    let opts = GuestOptions {
        extra_modules: vec!["crashme".into()],
        // Soft lockups are reported after 2 * watchdog_thresh seconds.
        extra_cmdline: vec!["watchdog_thresh=1".into()],
        ..GuestOptions::default()
    };
    let mut guest = Guest::boot(&spec, &opts).expect("boot");
    let boot_console = guest.console_since(0);
    assert!(
        console::report(&boot_console).is_none(),
        "boot console shows an incident"
    );
    golden("01-clean-boot", "", "none", &boot_console);

    // (trigger, expected title, expected kind, golden file name)
    let cases: [(&str, &str, &[u8], &str, CrashKind); 7] = [
        (
            "02-warn",
            "/sys/kernel/debug/crashme",
            b"warn",
            "WARNING in crashme_warn",
            CrashKind::Warning,
        ),
        (
            "03-refcount",
            "/sys/kernel/debug/crashme",
            b"refcount",
            "refcount bug: decrement hit 0; leaking memory",
            CrashKind::Refcount,
        ),
        (
            "04-bad-page",
            "/sys/kernel/debug/crashme",
            b"badpage",
            "BUG: Bad page state",
            CrashKind::BadPage,
        ),
        (
            "05-soft-lockup",
            "/sys/kernel/debug/crashme",
            b"lockup",
            "BUG: soft lockup in",
            CrashKind::SoftLockup,
        ),
        (
            "06-null-deref",
            "/sys/kernel/debug/crashme",
            b"oops",
            "BUG: kernel NULL pointer dereference in crashme_oops",
            CrashKind::Oops,
        ),
        (
            "07-bug",
            "/sys/kernel/debug/crashme",
            b"bug",
            "kernel BUG at crashme.c",
            CrashKind::Bug,
        ),
        (
            "08-sysrq-panic",
            "/proc/sysrq-trigger",
            b"c",
            "kernel panic: sysrq triggered crash",
            CrashKind::Panic,
        ),
    ];
    for (name, path, what, title, kind) in cases {
        let boots = guest.boots();
        let mark = guest.console_len();
        let crash = guest.write_file(path, what).expect("write_file");
        let (got, text) = match crash {
            Some(report) => (report.clone(), report.excerpt.clone()),
            None => {
                // The guest survived: the incident is on the console.
                // Every report ends with its stack trace.
                assert!(
                    guest.wait_console(mark, Duration::from_secs(15), "</TASK>"),
                    "{name}: no end of report on the console:\n{}",
                    guest.console_since(mark)
                );
                std::thread::sleep(Duration::from_millis(500));
                let text = guest.console_since(mark);
                let report = console::report(&text)
                    .unwrap_or_else(|| panic!("{name}: nothing detected in:\n{text}"));
                (report, text)
            }
        };
        assert!(
            got.title.starts_with(title),
            "{name}: title {:?}, want {title:?}\n{text}",
            got.title
        );
        assert_eq!(got.kind, kind, "{name}: {text}");
        golden(name, &got.title, got.kind.name(), &text);
        // Whatever happened, the next guest works.
        guest.restart().expect("restart");
        assert!(guest.boots() > boots);
        let hello = guest.hello().expect("hello after restart");
        assert!(
            hello.module.loaded,
            "{name}: module not loaded after restart"
        );
    }
}

#[test]
#[ignore = "boots QEMU guests; run with --ignored after `pinfuzz kernel fetch`"]
fn hung_guest_is_detected_by_timeout_and_by_silence() {
    let spec = default_kernel();
    let build = tempfile::tempdir().expect("tempdir");
    let crashme = build_crashme(&spec, build.path());
    let mut spec = spec.clone();
    spec.extra_modules.insert("crashme".into(), vec![crashme]);
    // The default watchdog (soft lockup after 20 s) stays silent during
    // crashme's 8 s spin with preemption off: the guest just stops.
    let opts = GuestOptions {
        extra_modules: vec!["crashme".into()],
        no_output_timeout: Duration::from_secs(3),
        ..GuestOptions::default()
    };
    let mut guest = Guest::boot(&spec, &opts).expect("boot");

    // The request's deadline passes first.
    let crash = guest
        .write_file_within(
            "/sys/kernel/debug/crashme",
            b"lockup",
            Duration::from_secs(1),
        )
        .expect("write_file")
        .expect("the hang is reported");
    assert_eq!(crash.kind, CrashKind::Timeout, "{crash:?}");
    assert_eq!(crash.title, "program timeout");
    assert!(guest.hello().expect("fresh guest").module.loaded);

    // No deadline in sight, but nothing moves for no_output_timeout.
    let crash = guest
        .write_file_within(
            "/sys/kernel/debug/crashme",
            b"lockup",
            Duration::from_secs(60),
        )
        .expect("write_file")
        .expect("the silence is reported");
    assert_eq!(crash.kind, CrashKind::NoOutput, "{crash:?}");
    assert_eq!(crash.title, "no output from the guest");
    assert!(guest.hello().expect("fresh guest").module.loaded);
    assert_eq!(guest.boots(), 3);
}
