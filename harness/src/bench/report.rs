//! The bench's figures: per round and their medians, the ratios the issue
//! asks for, and where the loop's time goes. Text for people, JSON for
//! scripts.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::baseline::{BaselineRun, per_s};

/// The executor's own timing, summed over the programs (guest clock, ns).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecTiming {
    /// Fork of the runner to the last reap, summed.
    pub total_ns: u64,
    /// Runner setup.
    pub setup_ns: u64,
    /// The operations.
    pub op_ns: u64,
    /// LRU drains.
    pub drain_ns: u64,
    /// `stat_refresh` and `/proc/vmstat`.
    pub counters_ns: u64,
    /// Page queries.
    pub queries_ns: u64,
    /// Runner teardown.
    pub teardown_ns: u64,
    /// Outside the runner: the agent sending observations to the host.
    #[serde(default)]
    pub sink_ns: u64,
    /// Outside the runner: end of its stream to the last reap.
    #[serde(default)]
    pub reap_ns: u64,
    /// Fork to the runner's first instruction.
    #[serde(default)]
    pub fork_ns: u64,
    /// The runner's done frame to the end of its stream (its exit).
    #[serde(default)]
    pub exit_ns: u64,
    /// Before the fork (plan, settings, counter baseline).
    #[serde(default)]
    pub before_ns: u64,
    /// After the reap (reset check).
    #[serde(default)]
    pub after_ns: u64,
    /// The agent's whole handling of the requests.
    #[serde(default)]
    pub agent_ns: u64,
}

impl ExecTiming {
    /// Add another run's times.
    pub fn add(&mut self, o: &ExecTiming) {
        self.total_ns += o.total_ns;
        self.setup_ns += o.setup_ns;
        self.op_ns += o.op_ns;
        self.drain_ns += o.drain_ns;
        self.counters_ns += o.counters_ns;
        self.queries_ns += o.queries_ns;
        self.teardown_ns += o.teardown_ns;
        self.sink_ns += o.sink_ns;
        self.reap_ns += o.reap_ns;
        self.fork_ns += o.fork_ns;
        self.exit_ns += o.exit_ns;
        self.before_ns += o.before_ns;
        self.after_ns += o.after_ns;
        self.agent_ns += o.agent_ns;
    }
}

/// One pass of the programs through the loop.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopRun {
    /// Programs run.
    pub programs: u64,
    /// Steps the kernel executed.
    pub steps: u64,
    /// Host wall time of the pass, in ns.
    pub wall_ns: u64,
    /// Of it: the guest requests (channel, agent, executor).
    pub guest_request_ns: u64,
    /// Of it: the model runs.
    pub model_ns: u64,
    /// Of it: the comparisons.
    pub compare_ns: u64,
    /// The executor's own timing.
    pub exec: ExecTiming,
    /// Programs kernel and model agreed on.
    pub matched: u64,
    /// Runs the executor stopped early.
    pub stopped: u64,
    /// Requests that failed or crashed the guest.
    pub failed: u64,
}

impl LoopRun {
    /// Add another pass's counts and times (chunks of one pass).
    pub fn add(&mut self, o: &LoopRun) {
        self.programs += o.programs;
        self.steps += o.steps;
        self.wall_ns += o.wall_ns;
        self.guest_request_ns += o.guest_request_ns;
        self.model_ns += o.model_ns;
        self.compare_ns += o.compare_ns;
        self.exec.add(&o.exec);
        self.matched += o.matched;
        self.stopped += o.stopped;
        self.failed += o.failed;
    }

    /// (a): steps per second of the whole loop, host clock.
    pub fn loop_steps_per_s(&self) -> f64 {
        per_s(self.steps, self.wall_ns)
    }

    /// (b): steps per second of the executor alone, guest clock.
    pub fn exec_steps_per_s(&self) -> f64 {
        per_s(self.steps, self.exec.total_ns)
    }

    /// A progress line.
    pub fn line(&self) -> String {
        format!(
            "loop {} programs, {} steps in {:.2} s = {:.0} steps/s; executor alone {:.0} steps/s",
            self.programs,
            self.steps,
            self.wall_ns as f64 / 1e9,
            self.loop_steps_per_s(),
            self.exec_steps_per_s()
        )
    }
}

/// One round: the loop, then the C baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Round {
    /// The loop pass.
    pub loop_run: LoopRun,
    /// The C baseline run.
    pub baseline: BaselineRun,
}

impl Round {
    /// (a) / (c).
    pub fn loop_ratio(&self) -> f64 {
        ratio(
            self.loop_run.loop_steps_per_s(),
            self.baseline.steps_per_s(),
        )
    }

    /// (b), in host seconds: the executor's guest-clock rate corrected by
    /// the guest clock's rate measured on the baseline.
    pub fn exec_steps_per_s(&self) -> f64 {
        self.loop_run.exec_steps_per_s() * self.baseline.guest_clock_ratio()
    }

    /// (b) / (c).
    pub fn exec_ratio(&self) -> f64 {
        ratio(self.exec_steps_per_s(), self.baseline.steps_per_s())
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

/// The median of some figures (the mean of the middle two for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Where a loop pass's host time went, as shares of its wall time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Breakdown {
    /// The executor in the guest (runner fork to reap).
    pub executor: f64,
    /// Guest requests beyond the executor: channel, agent (program parsing,
    /// settings, step frames, reset check), console scan.
    pub channel_and_agent: f64,
    /// The model.
    pub model: f64,
    /// The comparison.
    pub compare: f64,
    /// The rest (program generation is outside; this is loop bookkeeping).
    pub other: f64,
}

impl Breakdown {
    /// `clock`: guest seconds per host second (the executor's figures are
    /// guest clock).
    fn of(l: &LoopRun, clock: f64) -> Breakdown {
        let w = l.wall_ns.max(1) as f64;
        let exec = l.exec.total_ns as f64 / clock;
        let request = l.guest_request_ns as f64;
        Breakdown {
            executor: exec / w,
            channel_and_agent: (request - exec).max(0.0) / w,
            model: l.model_ns as f64 / w,
            compare: l.compare_ns as f64 / w,
            other: (w - request - l.model_ns as f64 - l.compare_ns as f64).max(0.0) / w,
        }
    }
}

/// The whole bench.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// `uname -r` of the guest.
    pub kernel_release: String,
    /// Campaign seed of the programs.
    pub seed: u64,
    /// Programs per pass.
    pub programs: u64,
    /// Most steps per program.
    pub max_steps: usize,
    /// Every round.
    pub rounds: Vec<Round>,
    /// Median (a): the loop, steps/s, host clock.
    pub loop_steps_per_s: f64,
    /// Median (b): the executor alone in the guest, steps/s.
    pub exec_steps_per_s: f64,
    /// Median (c): the C baseline in the guest, steps/s (host clock).
    pub baseline_steps_per_s: f64,
    /// Median guest seconds per host second used to correct guest-clock
    /// figures (1.0: the guest keeps time within the tolerance).
    pub guest_clock_ratio: f64,
    /// Median guest seconds per host second as measured on the baseline
    /// (`None`: the baseline ran too briefly to tell).
    #[serde(default)]
    pub guest_clock_measured: Option<f64>,
    /// Median of the per-round (a)/(c).
    pub loop_ratio: f64,
    /// Median of the per-round (b)/(c).
    pub exec_ratio: f64,
    /// Where the loop's time went, in the round with the median (a)/(c).
    pub breakdown: Breakdown,
    /// Per step, in µs, in that round: loop, executor, baseline, and the
    /// executor's parts (setup and teardown are per program, spread over
    /// its steps).
    pub per_step_us: PerStep,
}

/// Per-step costs in µs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PerStep {
    /// The loop, host clock.
    pub loop_us: f64,
    /// The executor.
    pub exec_us: f64,
    /// The C baseline.
    pub baseline_us: f64,
    /// Executor: runner setup + teardown.
    pub exec_setup_teardown_us: f64,
    /// Executor: operations.
    pub exec_op_us: f64,
    /// Executor: LRU drains.
    pub exec_drain_us: f64,
    /// Executor: counters.
    pub exec_counters_us: f64,
    /// Executor: page queries.
    pub exec_queries_us: f64,
    /// Executor: the rest (frames to the caller, process handling).
    pub exec_other_us: f64,
    /// Of `exec_other_us`: the agent sending observations to the host.
    #[serde(default)]
    pub exec_sink_us: f64,
    /// Of `exec_other_us`: end of the runner's stream to the last reap.
    #[serde(default)]
    pub exec_reap_us: f64,
    /// Of `exec_other_us`: fork to the runner's first instruction.
    #[serde(default)]
    pub exec_fork_us: f64,
    /// Of `exec_other_us`: the runner's exit.
    #[serde(default)]
    pub exec_exit_us: f64,
    /// Channel and agent.
    pub channel_agent_us: f64,
    /// Of `channel_agent_us`: in the agent, before the runner's fork.
    #[serde(default)]
    pub agent_before_us: f64,
    /// Of `channel_agent_us`: in the agent, after the last reap.
    #[serde(default)]
    pub agent_after_us: f64,
    /// Of `channel_agent_us`: the rest of the agent's handling (program
    /// parsing, console markers).
    #[serde(default)]
    pub agent_rest_us: f64,
    /// Model.
    pub model_us: f64,
    /// Comparison.
    pub compare_us: f64,
    /// C baseline: runner setup + teardown.
    pub baseline_setup_teardown_us: f64,
    /// C baseline: operations.
    pub baseline_op_us: f64,
    /// C baseline: LRU drains.
    pub baseline_drain_us: f64,
    /// C baseline: counters.
    pub baseline_counters_us: f64,
    /// C baseline: page queries.
    pub baseline_queries_us: f64,
    /// C baseline: the rest (fork and reap of the runner, settings, reset reads).
    pub baseline_other_us: f64,
}

impl BenchReport {
    /// Medians and ratios of `rounds`.
    pub fn new(
        kernel_release: &str,
        seed: u64,
        programs: u64,
        max_steps: usize,
        rounds: Vec<Round>,
    ) -> BenchReport {
        let col = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f).collect());
        let loop_ratio = col(&Round::loop_ratio);
        // The round closest to the median ratio explains it.
        let typical = rounds.iter().min_by(|a, b| {
            (a.loop_ratio() - loop_ratio)
                .abs()
                .total_cmp(&(b.loop_ratio() - loop_ratio).abs())
        });
        let (breakdown, per_step_us) = typical.map_or_else(Default::default, |r| {
            (
                Breakdown::of(&r.loop_run, r.baseline.guest_clock_ratio()),
                per_step(r),
            )
        });
        BenchReport {
            kernel_release: kernel_release.to_string(),
            seed,
            programs,
            max_steps,
            loop_steps_per_s: col(&|r| r.loop_run.loop_steps_per_s()),
            exec_steps_per_s: col(&Round::exec_steps_per_s),
            baseline_steps_per_s: col(&|r| r.baseline.steps_per_s()),
            guest_clock_ratio: col(&|r| r.baseline.guest_clock_ratio()),
            guest_clock_measured: {
                let m: Vec<f64> = rounds
                    .iter()
                    .filter_map(|r| r.baseline.measured_clock_ratio())
                    .collect();
                (!m.is_empty()).then(|| median(m))
            },
            loop_ratio,
            exec_ratio: col(&Round::exec_ratio),
            breakdown,
            per_step_us,
            rounds,
        }
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "pinfuzz bench: {} programs (campaign seed {}, at most {} steps), kernel {}, {} round(s)",
            self.programs,
            self.seed,
            self.max_steps,
            self.kernel_release,
            self.rounds.len()
        );
        for (i, r) in self.rounds.iter().enumerate() {
            let _ = writeln!(
                s,
                "  round {}: (a) loop {:.0}  (b) executor {:.0}  (c) C baseline {:.0} steps/s  \
                 (a)/(c) {:.2}  (b)/(c) {:.2}",
                i + 1,
                r.loop_run.loop_steps_per_s(),
                r.exec_steps_per_s(),
                r.baseline.steps_per_s(),
                r.loop_ratio(),
                r.exec_ratio()
            );
        }
        let _ = writeln!(
            s,
            "median: (a) loop {:.0} steps/s (host clock: guest run + model + compare)\n        \
             (b) executor alone {:.0} steps/s (RunSummary timing, guest clock corrected)\n        \
             (c) C baseline {:.0} steps/s (its own clock, same programs, same guest)\n        \
             (a)/(c) = {:.2}   (b)/(c) = {:.2}   (goal: (a)/(c) >= 0.5: {})",
            self.loop_steps_per_s,
            self.exec_steps_per_s,
            self.baseline_steps_per_s,
            self.loop_ratio,
            self.exec_ratio,
            if self.loop_ratio >= 0.5 {
                "met"
            } else {
                "NOT met"
            }
        );
        match self.guest_clock_measured {
            Some(m) if self.guest_clock_ratio != 1.0 => {
                let _ = writeln!(
                    s,
                    "warning: the guest clock ran at {m:.2}x the host's (TSC calibration at \
                     boot under load?): guest-clock figures are corrected by that factor"
                );
            }
            Some(m) => {
                let _ = writeln!(
                    s,
                    "guest clock: {m:.2}x the host's over the baseline (within +-{:.0}%: taken \
                     as right)",
                    super::baseline::CLOCK_TOLERANCE * 100.0
                );
            }
            None => {}
        }
        let b = &self.breakdown;
        let _ = writeln!(
            s,
            "loop time: executor {:.0}%, channel+agent {:.0}%, model {:.0}%, compare {:.0}%, \
             other {:.0}%",
            b.executor * 100.0,
            b.channel_and_agent * 100.0,
            b.model * 100.0,
            b.compare * 100.0,
            b.other * 100.0
        );
        let p = &self.per_step_us;
        let _ = writeln!(
            s,
            "per step (µs): loop {:.0} = executor {:.0} [setup+teardown {:.0}, op {:.0}, \
             drain {:.0}, counters {:.0}, queries {:.0}, other {:.0} (fork {:.0}, sink {:.0}, \
             exit {:.0}, reap {:.0})] + channel/agent {:.0} (agent: before {:.0}, after {:.0}, \
             rest {:.0}) + model {:.0} + compare {:.0}\n               C baseline {:.0} \
             [setup+teardown {:.0}, op {:.0}, drain {:.0}, counters {:.0}, queries {:.0}, \
             other {:.0}]",
            p.loop_us,
            p.exec_us,
            p.exec_setup_teardown_us,
            p.exec_op_us,
            p.exec_drain_us,
            p.exec_counters_us,
            p.exec_queries_us,
            p.exec_other_us,
            p.exec_fork_us,
            p.exec_sink_us,
            p.exec_exit_us,
            p.exec_reap_us,
            p.channel_agent_us,
            p.agent_before_us,
            p.agent_after_us,
            p.agent_rest_us,
            p.model_us,
            p.compare_us,
            p.baseline_us,
            p.baseline_setup_teardown_us,
            p.baseline_op_us,
            p.baseline_drain_us,
            p.baseline_counters_us,
            p.baseline_queries_us,
            p.baseline_other_us
        );
        s
    }
}

/// Per-step costs of a round; guest-clock figures are converted to host
/// time with the round's measured clock ratio.
fn per_step(r: &Round) -> PerStep {
    let l = &r.loop_run;
    let n = l.steps.max(1) as f64;
    let us = |ns: u64| ns as f64 / 1e3 / n;
    let clock = r.baseline.guest_clock_ratio();
    let gus = |ns: u64| us(ns) / clock;
    let e = &l.exec;
    let sum = |t: &ExecTiming| {
        t.setup_ns + t.teardown_ns + t.op_ns + t.drain_ns + t.counters_ns + t.queries_ns
    };
    let parts = sum(e);
    let b = &r.baseline.parts;
    let bn = r.baseline.steps.max(1) as f64;
    let bus = |ns: u64| ns as f64 / 1e3 / bn / clock;
    PerStep {
        loop_us: us(l.wall_ns),
        exec_us: gus(e.total_ns),
        baseline_us: if r.baseline.steps == 0 {
            0.0
        } else {
            1e6 / r.baseline.steps_per_s()
        },
        exec_setup_teardown_us: gus(e.setup_ns + e.teardown_ns),
        exec_op_us: gus(e.op_ns),
        exec_drain_us: gus(e.drain_ns),
        exec_counters_us: gus(e.counters_ns),
        exec_queries_us: gus(e.queries_ns),
        exec_other_us: gus(e.total_ns.saturating_sub(parts)),
        exec_sink_us: gus(e.sink_ns),
        exec_reap_us: gus(e.reap_ns),
        exec_fork_us: gus(e.fork_ns),
        exec_exit_us: gus(e.exit_ns),
        channel_agent_us: (us(l.guest_request_ns) - gus(e.total_ns)).max(0.0),
        agent_before_us: gus(e.before_ns),
        agent_after_us: gus(e.after_ns),
        agent_rest_us: gus(e
            .agent_ns
            .saturating_sub(e.total_ns + e.before_ns + e.after_ns)),
        model_us: us(l.model_ns),
        compare_us: us(l.compare_ns),
        baseline_setup_teardown_us: bus(b.setup_ns + b.teardown_ns),
        baseline_op_us: bus(b.op_ns),
        baseline_drain_us: bus(b.drain_ns),
        baseline_counters_us: bus(b.counters_ns),
        baseline_queries_us: bus(b.queries_ns),
        baseline_other_us: bus(r.baseline.wall_ns.saturating_sub(sum(b))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(loop_ns: u64, exec_ns: u64, base_ns: u64) -> Round {
        Round {
            loop_run: LoopRun {
                programs: 2,
                steps: 100,
                wall_ns: loop_ns,
                guest_request_ns: loop_ns / 2,
                model_ns: loop_ns / 4,
                compare_ns: loop_ns / 8,
                exec: ExecTiming {
                    total_ns: exec_ns,
                    op_ns: exec_ns / 2,
                    ..ExecTiming::default()
                },
                ..LoopRun::default()
            },
            baseline: BaselineRun {
                programs: 2,
                steps: 100,
                wall_ns: base_ns,
                ..BaselineRun::default()
            },
        }
    }

    #[test]
    fn medians_ratios_and_breakdown() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
        // 100 steps: loop 1 s (100/s), executor 0.25 s (400/s), C 0.1 s (1000/s).
        let r = BenchReport::new(
            "6.12",
            1,
            2,
            32,
            vec![
                round(1_000_000_000, 250_000_000, 100_000_000),
                round(2_000_000_000, 250_000_000, 100_000_000),
                round(1_000_000_000, 250_000_000, 200_000_000),
            ],
        );
        assert!((r.loop_steps_per_s - 100.0).abs() < 1e-9);
        assert!((r.exec_steps_per_s - 400.0).abs() < 1e-9);
        assert!((r.baseline_steps_per_s - 1000.0).abs() < 1e-9);
        // Per-round (a)/(c): 0.1, 0.05, 0.2 -> median 0.1 (round 1).
        assert!((r.loop_ratio - 0.1).abs() < 1e-9);
        assert!((r.breakdown.executor - 0.25).abs() < 1e-9);
        assert!((r.breakdown.channel_and_agent - 0.25).abs() < 1e-9);
        assert!((r.per_step_us.loop_us - 10_000.0).abs() < 1e-6);
        assert!((r.per_step_us.exec_op_us - 1250.0).abs() < 1e-6);
        let text = r.to_text();
        assert!(text.contains("(a)/(c) = 0.10"), "{text}");
        assert!(text.contains("NOT met"), "{text}");
        let json = serde_json::to_string(&r).unwrap();
        let back: BenchReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }
}
