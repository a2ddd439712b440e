//! `pinfuzz bench` end to end on a few programs (ignored by default: boots
//! a QEMU guest and needs gcc; run with `--ignored`). Fails, never skips,
//! without them.

use std::process::Command;
use std::time::Duration;

use harness::bench::{BenchConfig, run_bench};
use harness::kernel::{self, Cache};
use harness::program::Limits;
use harness::vm::GuestOptions;

#[test]
#[ignore = "boots a QEMU guest; run with --ignored after `pinfuzz kernel fetch`"]
fn the_bench_measures_the_loop_and_the_c_baseline_on_the_same_programs() {
    let qemu = Command::new("qemu-system-x86_64").arg("--version").output();
    assert!(
        qemu.is_ok_and(|o| o.status.success()),
        "qemu-system-x86_64 is not installed"
    );
    let cache = Cache::from_env().expect("cache");
    let spec = kernel::ensure(&cache, kernel::DEFAULT_KERNEL).expect("provision the kernel");
    let cfg = BenchConfig {
        kernel: spec,
        guest: GuestOptions {
            no_output_timeout: Duration::from_secs(600),
            ..GuestOptions::default()
        },
        seed: 5,
        programs: 12,
        limits: Limits {
            max_steps: 16,
            ..Limits::FULL
        },
        rounds: 2,
        chunk: 5,
        program_timeout: Duration::from_secs(60),
        keep: None,
    };
    let mut lines = Vec::new();
    let report = run_bench(&cfg, &mut |l| lines.push(l.to_string())).expect("bench");
    eprintln!("{}", report.to_text());
    assert_eq!(report.rounds.len(), 2);
    for r in &report.rounds {
        // Both sides ran every step of every program.
        assert_eq!(r.loop_run.programs, 12);
        assert_eq!(r.loop_run.failed, 0);
        assert_eq!(r.baseline.failed, 0);
        assert_eq!(r.baseline.steps, r.loop_run.steps, "{r:?}");
        // Both clocks timed the baseline.
        assert!(r.baseline.mono_end_ns > r.baseline.mono_start_ns, "{r:?}");
        assert!(r.baseline.host_span_ns > 0, "{r:?}");
        // The executor's own time lies within the loop's.
        assert!(r.loop_run.exec.total_ns > 0);
        assert!(r.loop_run.guest_request_ns <= r.loop_run.wall_ns);
    }
    assert!(report.loop_steps_per_s > 0.0 && report.baseline_steps_per_s > 0.0);
    assert!(report.loop_ratio > 0.0);
    assert!(report.to_text().contains("(a)/(c) ="));
    assert_eq!(lines.len(), 1 + 2 * 2, "{lines:?}");
    // Chunks add up: 12 programs in chunks of 5 are three baseline requests.
    assert_eq!(report.rounds[0].baseline.programs, 12);
}
