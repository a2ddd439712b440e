//! The guest end to end on the default kernel (ignored by default: needs
//! QEMU and a provisioned kernel; CI runs `--ignored` after
//! `pinfuzz kernel fetch`, and these tests fail, never skip, without QEMU).

use std::process::Command;
use std::time::Duration;

use harness::kernel::{self, Cache, KernelSpec};
use harness::op::Program;
use harness::vm::smoke::SMOKE_PROGRAM;
use harness::vm::{CrashKind, Guest, GuestOptions, GuestRun, RunEnd};

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

/// The smoke program ran completely and plausibly.
fn assert_smoke_ok(run: &GuestRun) {
    match &run.end {
        RunEnd::Finished(summary) => {
            assert!(summary.stopped.is_none(), "stopped: {:?}", summary.stopped);
            let reset = summary.reset.as_ref().expect("reset check ran");
            assert!(reset.ok, "reset check failed: {reset:?}");
        }
        other => panic!("smoke program did not finish: {other:?}"),
    }
    assert!(
        run.incidents.is_empty(),
        "kernel incidents: {:?}",
        run.incidents
    );
    assert_eq!(run.steps.len(), 9);
    // Step 2 pins two pages, step 3 unpins them: nr_foll_pin_acquired and
    // nr_foll_pin_released (vmstat[0], [1], since the program started).
    assert_eq!(run.steps[2].vmstat[0], 2, "pins after pin_user_pages_fast");
    assert_eq!(run.steps[3].vmstat[1], 2, "unpins after unpin");
    let page = &run.steps[2].maps[0].pages[0];
    assert!(page.present(), "pinned page not present: {page:?}");
    assert!(
        page.refcount >= 1025,
        "pinned small page refcount {}",
        page.refcount
    );
}

#[test]
#[ignore = "boots a QEMU guest; run with --ignored after `pinfuzz kernel fetch`"]
fn smoke_program_runs_on_the_default_kernel() {
    let spec = default_kernel();
    let mut guest = Guest::boot(&spec, &GuestOptions::default()).expect("boot");
    let hello = guest.hello().expect("hello");
    assert_eq!(hello.kernel_release, spec.release);
    assert!(hello.module.loaded, "{:?}", hello.module);
    assert!(hello.setup_errors.is_empty(), "{:?}", hello.setup_errors);
    let program = Program::parse_strict(SMOKE_PROGRAM, "smoke").expect("smoke parses");
    let mut seen = 0;
    let run = guest
        .run_program(&program, Duration::from_secs(30), &mut |_| {
            seen += 1;
            Ok(())
        })
        .expect("run");
    assert_eq!(seen, run.steps.len());
    assert_smoke_ok(&run);
    // The same guest serves the next program.
    let run = guest
        .run_program(&program, Duration::from_secs(30), &mut |_| Ok(()))
        .expect("second run");
    assert_smoke_ok(&run);
    assert_eq!(guest.boots(), 1);
    // A failing step callback is the caller's error; the guest, which was
    // still streaming, is replaced before the next program.
    let mut n = 0;
    let err = guest
        .run_program(&program, Duration::from_secs(30), &mut |_| {
            n += 1;
            anyhow::ensure!(n < 3, "enough");
            Ok(())
        })
        .expect_err("callback error is returned");
    assert!(format!("{err:#}").contains("enough"), "{err:#}");
    let run = guest
        .run_program(&program, Duration::from_secs(30), &mut |_| Ok(()))
        .expect("run after a callback error");
    assert_smoke_ok(&run);
    assert_eq!(guest.boots(), 2);
}

/// A program long enough to be interrupted: 400 single-page touches.
fn long_program() -> String {
    let mut text = String::from("pinfuzz v1 thp=never use_zero_page=1 kernel=any\n");
    text.push_str("m0 = mmap(anon-private, pages=16, prot=rw)\n");
    for i in 0..400 {
        let p = i % 16;
        text.push_str(&format!("touch(m0[{p}..{}], write)\n", p + 1));
    }
    text
}

#[test]
#[ignore = "boots QEMU guests; run with --ignored after `pinfuzz kernel fetch`"]
fn kill_panic_and_power_off_are_detected_and_followed_by_a_fresh_guest() {
    let spec = default_kernel();
    let smoke = Program::parse_strict(SMOKE_PROGRAM, "smoke").expect("smoke parses");
    let long = Program::parse_strict(&long_program(), "long").expect("long program parses");
    let mut guest = Guest::boot(&spec, &GuestOptions::default()).expect("boot");

    // kill -9 of QEMU in the middle of a run.
    let pid = guest.qemu_pid().expect("running");
    let mut steps = 0;
    let run = guest
        .run_program(&long, Duration::from_secs(60), &mut |_| {
            steps += 1;
            if steps == 20 {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .expect("kill -9 QEMU");
            }
            Ok(())
        })
        .expect("run returns a crash, not an error");
    let RunEnd::Crashed(crash) = &run.end else {
        panic!("kill -9 not detected: {:?}", run.end);
    };
    assert_eq!(crash.kind, CrashKind::Lost, "{crash:?}");
    assert_eq!(crash.title, "lost connection: QEMU killed by SIGKILL");
    assert!(
        crash.excerpt.contains("pinfuzz: begin"),
        "excerpt lacks the program's console: {}",
        crash.excerpt
    );
    assert!(
        run.steps.len() >= 20 && run.steps.len() < 401,
        "{} steps",
        run.steps.len()
    );
    let run = guest
        .run_program(&smoke, Duration::from_secs(30), &mut |_| Ok(()))
        .expect("run after kill");
    assert_smoke_ok(&run);
    assert_eq!(guest.boots(), 2);

    // A kernel panic on purpose.
    let crash = guest
        .write_file("/proc/sysrq-trigger", b"c")
        .expect("write_file")
        .expect("the panic is reported");
    assert_eq!(crash.kind, CrashKind::Panic, "{crash:?}");
    assert_eq!(crash.title, "kernel panic: sysrq triggered crash");
    assert!(
        crash.excerpt.contains("Kernel panic - not syncing"),
        "{}",
        crash.excerpt
    );
    let run = guest
        .run_program(&smoke, Duration::from_secs(30), &mut |_| Ok(()))
        .expect("run after panic");
    assert_smoke_ok(&run);
    assert_eq!(guest.boots(), 3);

    // An unexpected power-off (sysrq o): QEMU exits cleanly, nothing on
    // the console explains it.
    let mark = guest.console_len();
    let crash = match guest
        .write_file("/proc/sysrq-trigger", b"o")
        .expect("write_file")
    {
        Some(crash) => crash,
        None => {
            // sysrq o powers off from a workqueue: the write may be answered
            // first. Then the next program finds the guest gone.
            assert!(
                guest.wait_console(mark, Duration::from_secs(10), "reboot: Power down"),
                "no power-off on the console:\n{}",
                guest.console_since(mark)
            );
            let run = guest
                .run_program(&smoke, Duration::from_secs(30), &mut |_| Ok(()))
                .expect("run on a powered-off guest");
            let RunEnd::Crashed(crash) = run.end else {
                panic!("power-off not detected: {:?}", run.end);
            };
            crash
        }
    };
    assert_eq!(crash.kind, CrashKind::Lost, "{crash:?}");
    assert_eq!(crash.title, "lost connection: QEMU exited with status 0");
    let run = guest
        .run_program(&smoke, Duration::from_secs(30), &mut |_| Ok(()))
        .expect("run after power-off");
    assert_smoke_ok(&run);
    assert_eq!(guest.boots(), 4);
}

#[test]
#[ignore = "boots QEMU guests; run with --ignored after `pinfuzz kernel fetch`"]
fn two_guests_run_at_once_with_their_own_module_parameters() {
    let spec = default_kernel();
    let smoke = Program::parse_strict(SMOKE_PROGRAM, "smoke").expect("smoke parses");
    // Guest 1 is healthy; guest 2's helper leaks every pin
    // (PINFUZZ_FAULT_LEAK_PIN = 2), which the reset check must notice.
    let runs: Vec<(u32, GuestRun)> = std::thread::scope(|s| {
        let handles: Vec<_> = [0u32, 2]
            .into_iter()
            .map(|fault| {
                let (spec, smoke) = (&spec, &smoke);
                s.spawn(move || {
                    let opts = GuestOptions {
                        fault,
                        ..GuestOptions::default()
                    };
                    let mut guest = Guest::boot(spec, &opts).expect("boot");
                    let hello = guest.hello().expect("hello");
                    let status = hello.module.status.expect("module STATUS");
                    assert_eq!(status.fault, fault, "{:?}", hello.module);
                    let run = guest
                        .run_program(smoke, Duration::from_secs(60), &mut |_| Ok(()))
                        .expect("run");
                    (guest.dir().to_path_buf(), fault, run)
                })
            })
            .collect();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("guest thread"))
            .collect();
        assert_ne!(results[0].0, results[1].0, "guests share a directory");
        results.into_iter().map(|(_, f, run)| (f, run)).collect()
    });
    assert_smoke_ok(&runs[0].1);
    let RunEnd::Finished(summary) = &runs[1].1.end else {
        panic!("fault=2 run did not finish: {:?}", runs[1].1.end);
    };
    let reset = summary.reset.as_ref().expect("reset check ran");
    assert!(!reset.ok, "a leaked pin went unnoticed: {reset:?}");
    assert_eq!(reset.pins_acquired, 2);
    assert_eq!(reset.pins_released, 0);
}
