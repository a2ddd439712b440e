//! The bare C baseline: the bench programs compiled into one static C
//! binary by the reproducer generator (`creproducer::emit_baseline`), run
//! in the guest through the agent's `RunBinary`, and its own timing line
//! read back.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::creproducer::emit_baseline;
use crate::op::Program;
use crate::vm::guest::{BinaryEnd, Guest};

/// What one run of the baseline binary measured: its own figures (guest
/// clock) and the host's view of the request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BaselineRun {
    /// Programs it ran.
    pub programs: u64,
    /// Steps of the programs that ran to the end.
    pub steps: u64,
    /// Wall time of all programs, in ns.
    pub wall_ns: u64,
    /// Programs whose runner process failed.
    pub failed: u64,
    /// Where the time went, summed over programs (as the executor's
    /// `Timing`: setup, operations, drains, counters, queries, teardown).
    #[serde(default)]
    pub parts: super::report::ExecTiming,
    /// The guest's `CLOCK_MONOTONIC` when the (first chunk's) programs
    /// started, in ns.
    #[serde(default)]
    pub mono_start_ns: u64,
    /// The guest's `CLOCK_MONOTONIC` when the (last chunk's) programs
    /// ended, in ns.
    #[serde(default)]
    pub mono_end_ns: u64,
    /// Host time from just before the first chunk's request to just after
    /// the last chunk's answer: it holds the guest's span from
    /// `mono_start_ns` to `mono_end_ns`, and a little more (one binary
    /// transfer, one answer), in ns.
    #[serde(default)]
    pub host_span_ns: u64,
}

impl BaselineRun {
    /// Add another run's counts and times (chunks of one pass).
    pub fn add(&mut self, o: &BaselineRun) {
        self.programs += o.programs;
        self.steps += o.steps;
        self.wall_ns += o.wall_ns;
        self.failed += o.failed;
        self.parts.add(&o.parts);
        if self.mono_start_ns == 0 || o.mono_start_ns < self.mono_start_ns {
            self.mono_start_ns = o.mono_start_ns;
        }
        self.mono_end_ns = self.mono_end_ns.max(o.mono_end_ns);
    }

    /// Steps per second: by the baseline's own clock, corrected when the
    /// guest clock is seen to run at another rate than the host's
    /// ([`BaselineRun::guest_clock_ratio`]).
    pub fn steps_per_s(&self) -> f64 {
        self.guest_steps_per_s() * self.guest_clock_ratio()
    }

    /// Steps per second by the baseline's own (guest) clock.
    pub fn guest_steps_per_s(&self) -> f64 {
        per_s(self.steps, self.wall_ns)
    }

    /// The guest clock measured against the host's: guest seconds per host
    /// second over the baseline's span (`None`: shorter than
    /// [`MIN_CLOCK_CHECK_NS`], or not timed). The host's span is a little
    /// longer than the guest's (a request's transfer and an answer, tens of
    /// ms in seconds), so a right guest clock measures just under 1.
    pub fn measured_clock_ratio(&self) -> Option<f64> {
        let guest = self.mono_end_ns.checked_sub(self.mono_start_ns)?;
        (guest > 0 && self.host_span_ns >= MIN_CLOCK_CHECK_NS)
            .then(|| guest as f64 / self.host_span_ns as f64)
    }

    /// Guest seconds per host second, for correcting guest-clock figures:
    /// the measured ratio when it is clearly off (more than
    /// [`CLOCK_TOLERANCE`] from 1; under TCG a guest whose TSC calibration
    /// went wrong at boot, on a loaded host, keeps time many times too fast
    /// or slow), else 1.0: the request's own jitter (console scan, transfer)
    /// is a few percent, and a guest clock within that is taken as right.
    /// Not measured (1.0) when the baseline spanned less than
    /// [`MIN_CLOCK_CHECK_NS`] of host time.
    pub fn guest_clock_ratio(&self) -> f64 {
        match self.measured_clock_ratio() {
            Some(r) if (r - 1.0).abs() > CLOCK_TOLERANCE => r,
            _ => 1.0,
        }
    }

    /// Read the summary line `# pinfuzz-bench programs=P steps=S wall_ns=W failed=F`.
    pub fn parse(output: &str) -> Result<BaselineRun> {
        let line = output
            .lines()
            .find_map(|l| l.strip_prefix("# pinfuzz-bench "))
            .context("the baseline printed no `# pinfuzz-bench` summary line")?;
        let mut run = BaselineRun::default();
        for word in line.split_whitespace() {
            let (k, v) = word
                .split_once('=')
                .with_context(|| format!("bad summary word {word:?}"))?;
            let v: u64 = v
                .parse()
                .with_context(|| format!("bad number in summary word {word:?}"))?;
            match k {
                "programs" => run.programs = v,
                "steps" => run.steps = v,
                "wall_ns" => run.wall_ns = v,
                "failed" => run.failed = v,
                "setup_ns" => run.parts.setup_ns = v,
                "op_ns" => run.parts.op_ns = v,
                "drain_ns" => run.parts.drain_ns = v,
                "counters_ns" => run.parts.counters_ns = v,
                "queries_ns" => run.parts.queries_ns = v,
                "teardown_ns" => run.parts.teardown_ns = v,
                "mono_start_ns" => run.mono_start_ns = v,
                "mono_end_ns" => run.mono_end_ns = v,
                _ => {}
            }
        }
        Ok(run)
    }
}

/// Shortest host time of the baseline's programs for which the guest clock
/// is checked against the host's.
pub const MIN_CLOCK_CHECK_NS: u64 = 2_000_000_000;

/// How far the measured guest clock rate may be from the host's before
/// guest-clock figures are corrected.
pub const CLOCK_TOLERANCE: f64 = 0.1;

/// Events per second from a count and nanoseconds (0 for no time).
pub fn per_s(count: u64, ns: u64) -> f64 {
    if ns == 0 {
        0.0
    } else {
        count as f64 * 1e9 / ns as f64
    }
}

/// Generate the baseline's C for `programs` into `dir/baseline.c` and build
/// it (`gcc -static -O2`); returns the binary.
pub fn build(programs: &[Program], origin: &str, dir: &Path) -> Result<Vec<u8>> {
    let c = emit_baseline(programs, origin)?;
    let src = dir.join("baseline.c");
    let exe = dir.join("baseline");
    crate::finding::write_atomic(&src, c.as_bytes())?;
    let out = Command::new("gcc")
        .args(["-static", "-O2", "-Wall", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .context("run gcc (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "gcc -static -O2 -Wall -o {} {} failed:\n{}",
            exe.display(),
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::read(&exe).with_context(|| format!("read {}", exe.display()))
}

/// Run programs `first..first + count` of the baseline binary in the guest.
pub fn run_chunk(
    guest: &mut Guest,
    binary: &[u8],
    first: u64,
    count: u64,
    timeout: Duration,
) -> Result<BaselineRun> {
    run_once(guest, binary, &[count, first], timeout)
}

/// One run of the binary with `args`.
fn run_once(
    guest: &mut Guest,
    binary: &[u8],
    args: &[u64],
    timeout: Duration,
) -> Result<BaselineRun> {
    let args: Vec<String> = args.iter().map(u64::to_string).collect();
    let run = guest.run_binary("pinfuzz-baseline", binary, &args, timeout)?;
    let done = match run.end {
        BinaryEnd::Finished(done) => done,
        BinaryEnd::Failed(msg) => bail!("the agent could not run the baseline: {msg}"),
        BinaryEnd::Crashed(c) => bail!(
            "the guest crashed in the baseline: {}\n{}",
            c.title,
            c.excerpt
        ),
    };
    let text = String::from_utf8_lossy(&done.output);
    if done.timed_out {
        bail!("the baseline did not finish within {timeout:?}");
    }
    let parsed = BaselineRun::parse(&text).with_context(|| {
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        format!(
            "baseline exit {:?} signal {:?}; last lines:\n{}",
            done.exit_code,
            done.signal,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    })?;
    if !run.incidents.is_empty() {
        bail!("kernel incidents during the baseline: {:?}", run.incidents);
    }
    if parsed.failed > 0 {
        bail!(
            "{} programs of the baseline failed; its output:\n{}",
            parsed.failed,
            text.lines()
                .filter(|l| !l.starts_with("# prog ") || !l.ends_with("status 0"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_parses() {
        let out = "# prog 0 steps 3 ns 100 status 0\n\
                   # pinfuzz-bench programs=2 steps=7 wall_ns=1000000 failed=0 setup_ns=5 \
                   op_ns=6 drain_ns=7 counters_ns=8 queries_ns=9 teardown_ns=10 \
                   mono_start_ns=11 mono_end_ns=12\n";
        let r = BaselineRun::parse(out).unwrap();
        assert_eq!(
            (r.programs, r.steps, r.wall_ns, r.failed),
            (2, 7, 1_000_000, 0)
        );
        assert!((r.steps_per_s() - 7000.0).abs() < 1e-6);
        assert_eq!(
            (r.parts.setup_ns, r.parts.queries_ns, r.parts.teardown_ns),
            (5, 9, 10)
        );
        assert_eq!((r.mono_start_ns, r.mono_end_ns), (11, 12));
        assert!(BaselineRun::parse("Bail out! x\n").is_err());
        // The guest's clock said 1 ms passed while the host's said 3 s: it
        // runs 3000 times too slow, and the guest-clock rate is corrected.
        let h = BaselineRun {
            mono_start_ns: 5_000_000_000,
            mono_end_ns: 5_001_000_000,
            host_span_ns: 3_000_000_000,
            ..r.clone()
        };
        assert!((h.guest_clock_ratio() - 1.0 / 3000.0).abs() < 1e-12);
        assert!((h.steps_per_s() - 7.0 / 3.0).abs() < 1e-9);
        assert_eq!(r.guest_clock_ratio(), 1.0);
        // Within the tolerance the guest clock is taken as right.
        let close = BaselineRun {
            mono_end_ns: 5_000_000_000 + 2_900_000_000,
            ..h.clone()
        };
        assert!((close.measured_clock_ratio().unwrap() - 2.9 / 3.0).abs() < 1e-9);
        assert_eq!(close.guest_clock_ratio(), 1.0);
        // Too short a span to judge the clock by.
        let short = BaselineRun {
            host_span_ns: 1_500_000_000,
            ..h.clone()
        };
        assert_eq!(short.guest_clock_ratio(), 1.0);
        // Chunks of one pass: the span runs from the first start to the
        // last end.
        let mut pass = BaselineRun::default();
        pass.add(&BaselineRun {
            mono_start_ns: 10,
            mono_end_ns: 20,
            ..BaselineRun::default()
        });
        pass.add(&BaselineRun {
            mono_start_ns: 30,
            mono_end_ns: 40,
            ..BaselineRun::default()
        });
        assert_eq!((pass.mono_start_ns, pass.mono_end_ns), (10, 40));
        assert_eq!(per_s(5, 0), 0.0);
    }
}
