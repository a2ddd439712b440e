//! Judging selftest runs: TAP cases, expected failures, skip reasons and
//! run-level problems, summed per test.
//!
//! A run fails when a case fails (`not ok`, `# error`, `# XPASS`) and no
//! entry of `expected` explains it, when the program ended in a way its
//! TAP does not account for (killed, timed out, a non-zero exit without a
//! failed case, fewer results than planned), when the kernel reported an
//! incident (WARNING, BUG, ...) or the guest died while it ran, or when a
//! case skipped for lack of something pinfuzz promised to provide
//! (gup_test, swap, hugetlb pages; see `skip`). Programs that print no TAP
//! (6.1's gup_test.c) are judged by their exit status as one case: 0 pass,
//! 4 (KSFT_SKIP) skip, anything else fail.

use std::collections::BTreeMap;

use serde::Serialize;

use super::expected;
use super::skip::{self, SkipCause, SkipReason};
use super::tap::{self, TapCase, Verdict};

/// kselftest's exit status for "skipped" (`KSFT_SKIP`).
pub const KSFT_SKIP: i32 = 4;

/// A kernel incident or crash seen on the console.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Incident {
    /// Stable title (`WARNING in folio_...`, `kernel panic`).
    pub title: String,
    /// Console lines around it.
    pub excerpt: String,
}

/// What came back from the guest for one invocation.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RawRun {
    /// The test (`gup_test`).
    pub test: String,
    /// The invocation (`gup_test -u`).
    pub label: String,
    /// Exit status, if it exited.
    pub exit_code: Option<i32>,
    /// Signal that ended it, if one did.
    pub signal: Option<i32>,
    /// Killed at its timeout.
    pub timed_out: bool,
    /// Output (stdout and stderr interleaved).
    pub output: String,
    /// The agent could not run it (write, spawn).
    pub agent_error: Option<String>,
    /// The guest died or hung while it ran.
    pub crash: Option<Incident>,
    /// Kernel incidents while it ran (the guest survived).
    pub incidents: Vec<Incident>,
    /// Host wall time of the request, seconds.
    pub wall_seconds: f64,
}

/// What became of a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// `ok`.
    Pass,
    /// `not ok` without an explanation.
    Fail,
    /// `not ok`, explained by an entry of `expected`.
    ExpectedFail,
    /// `# SKIP`.
    Skip,
    /// `# XFAIL` (the test itself expects it).
    Xfail,
    /// `# XPASS` (counted as a failure: the test expected a failure).
    Xpass,
    /// `# error`.
    Error,
}

impl Outcome {
    /// Whether it makes the run fail.
    pub fn is_failure(self) -> bool {
        matches!(self, Outcome::Fail | Outcome::Xpass | Outcome::Error)
    }
}

/// One judged case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CaseResult {
    /// TAP number.
    pub number: u32,
    /// Scenario and message (see [`TapCase::name`]).
    pub name: String,
    /// The outcome.
    pub outcome: Outcome,
    /// The result line.
    pub tap: String,
    /// For skips: the normalized reason and its cause.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip: Option<SkipReason>,
    /// For skips: pinfuzz was to provide what the case lacked.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub setup_failure: bool,
    /// For expected failures: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<&'static str>,
    /// For failures and expected failures: the output lines of the case.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
}

/// Counts of outcomes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Passed.
    pub pass: u32,
    /// Failed, unexplained.
    pub fail: u32,
    /// Failed, explained.
    pub expected_fail: u32,
    /// Skipped (all causes).
    pub skip: u32,
    /// Skipped for lack of something pinfuzz was to provide.
    pub setup_skip: u32,
    /// The test's own expected failures.
    pub xfail: u32,
    /// Unexpected passes.
    pub xpass: u32,
    /// Errors.
    pub error: u32,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.pass += o.pass;
        self.fail += o.fail;
        self.expected_fail += o.expected_fail;
        self.skip += o.skip;
        self.setup_skip += o.setup_skip;
        self.xfail += o.xfail;
        self.xpass += o.xpass;
        self.error += o.error;
    }

    /// Cases counted.
    pub fn total(&self) -> u32 {
        self.pass
            + self.fail
            + self.expected_fail
            + self.skip
            + self.xfail
            + self.xpass
            + self.error
    }
}

/// What pinfuzz set up in the guest; a skip for one of these is a setup failure.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Provided {
    /// A gup_test device (the kernel's or the helper module's).
    pub gup_test: bool,
    /// Swap.
    pub swap: bool,
    /// Hugetlb page sizes with pages reserved, in kB.
    pub hugetlb_kb: Vec<u64>,
}

impl Provided {
    /// Whether a skip for `cause` in `scenario` means the setup failed.
    /// Hugetlb scenarios name their page size (`... with hugetlb (2048
    /// kB)`); only sizes pinfuzz reserved pages of count.
    pub fn covers(&self, cause: SkipCause, scenario: &str) -> bool {
        match cause {
            SkipCause::NoGupTest => self.gup_test,
            SkipCause::NoSwap => self.swap,
            SkipCause::NoHugetlbPages => match hugetlb_size_kb(scenario) {
                Some(kb) => self.hugetlb_kb.contains(&kb),
                None => !self.hugetlb_kb.is_empty(),
            },
            SkipCause::Other => false,
        }
    }
}

/// The page size in `... hugetlb (2048 kB)`.
fn hugetlb_size_kb(scenario: &str) -> Option<u64> {
    let at = scenario.find("hugetlb (")? + "hugetlb (".len();
    let rest = &scenario[at..];
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    rest[digits..]
        .starts_with(" kB)")
        .then(|| rest[..digits].parse().ok())
        .flatten()
}

/// One judged invocation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunResult {
    /// The test.
    pub test: String,
    /// The invocation.
    pub label: String,
    /// How the program ended (`exit 0`, `signal 9`, ...).
    pub ended: String,
    /// Host wall time, seconds.
    pub wall_seconds: f64,
    /// TAP plan, if printed.
    pub planned: Option<u32>,
    /// Outcome counts.
    pub counts: Counts,
    /// Every case.
    pub cases: Vec<CaseResult>,
    /// Run-level failures (see the module doc).
    pub problems: Vec<String>,
    /// Kernel incidents while it ran.
    pub incidents: Vec<Incident>,
    /// The program's whole output (its TAP, with stderr interleaved).
    pub output: String,
}

impl RunResult {
    /// Whether this run makes the whole run fail.
    pub fn failed(&self) -> bool {
        self.counts.fail + self.counts.xpass + self.counts.error + self.counts.setup_skip > 0
            || !self.problems.is_empty()
    }
}

/// Judge one invocation on a kernel of upstream `version`.
pub fn judge(raw: &RawRun, version: (u32, u32), provided: &Provided) -> RunResult {
    let parsed = tap::parse(&raw.output);
    let mut problems = Vec::new();
    let ended = describe_end(raw);
    let tap_cases = if parsed.is_tap() {
        parsed.cases.clone()
    } else {
        // A plain program (6.1's gup_test.c): one case from its exit status.
        synthesize(raw, &parsed)
    };
    let mut counts = Counts::default();
    let mut cases = Vec::with_capacity(tap_cases.len());
    for case in &tap_cases {
        let mut result = judge_case(&raw.test, version, case);
        if let Some(reason) = &result.skip {
            result.setup_failure =
                provided.covers(reason.cause, case.context.as_deref().unwrap_or(""));
        }
        match result.outcome {
            Outcome::Pass => counts.pass += 1,
            Outcome::Fail => counts.fail += 1,
            Outcome::ExpectedFail => counts.expected_fail += 1,
            Outcome::Skip => {
                counts.skip += 1;
                if result.setup_failure {
                    counts.setup_skip += 1;
                }
            }
            Outcome::Xfail => counts.xfail += 1,
            Outcome::Xpass => counts.xpass += 1,
            Outcome::Error => counts.error += 1,
        }
        cases.push(result);
    }
    let any_failed_case = counts.fail + counts.expected_fail + counts.error > 0;

    if let Some(err) = &raw.agent_error {
        problems.push(format!("the agent could not run it: {err}"));
    }
    if let Some(crash) = &raw.crash {
        problems.push(format!("the guest died: {}", crash.title));
    }
    for incident in &raw.incidents {
        problems.push(format!("kernel incident: {}", incident.title));
    }
    if raw.timed_out {
        problems.push("killed at its timeout".to_string());
    } else if let Some(sig) = raw.signal {
        problems.push(format!("killed by signal {sig}"));
    }
    if parsed.is_tap() {
        if let Some(plan) = &parsed.plan {
            let seen = parsed.cases.len() as u32;
            if plan.skip_all.is_none() && seen != plan.count {
                problems.push(format!("{seen} results for a plan of {}", plan.count));
            }
        } else if raw.crash.is_none() && !raw.timed_out {
            problems.push("no TAP plan".to_string());
        }
        if let Some(msg) = &parsed.bail_out {
            // cow.c and gup_longterm.c bail out with "N out of M tests
            // failed" after failures; that is accounted for by the cases.
            if !any_failed_case {
                problems.push(format!("Bail out! {msg}"));
            }
        }
        match raw.exit_code {
            Some(0) | Some(KSFT_SKIP) | None => {}
            Some(code) if !any_failed_case => {
                problems.push(format!("exit status {code} without a failed case"));
            }
            Some(_) => {}
        }
    }
    RunResult {
        test: raw.test.clone(),
        label: raw.label.clone(),
        ended,
        wall_seconds: raw.wall_seconds,
        planned: parsed.plan.as_ref().map(|p| p.count),
        counts,
        cases,
        problems,
        incidents: raw
            .incidents
            .iter()
            .chain(raw.crash.as_ref())
            .cloned()
            .collect(),
        output: raw.output.clone(),
    }
}

fn judge_case(test: &str, version: (u32, u32), case: &TapCase) -> CaseResult {
    let mut result = CaseResult {
        number: case.number,
        name: case.name(),
        outcome: Outcome::Pass,
        tap: case.result_line().to_string(),
        skip: None,
        setup_failure: false,
        explanation: None,
        lines: Vec::new(),
    };
    result.outcome = match case.verdict {
        Verdict::Pass => Outcome::Pass,
        Verdict::Skip => {
            result.skip = Some(skip::classify(&case.directive_text, &case.lines));
            Outcome::Skip
        }
        Verdict::Xfail => Outcome::Xfail,
        Verdict::Xpass => Outcome::Xpass,
        Verdict::Error => Outcome::Error,
        Verdict::Fail => match expected::explain(test, version, case) {
            Some(e) => {
                result.explanation = Some(e.reason);
                Outcome::ExpectedFail
            }
            None => Outcome::Fail,
        },
    };
    if result.outcome.is_failure() || result.outcome == Outcome::ExpectedFail {
        result.lines = case.lines.clone();
    }
    result
}

/// The single case of a program that prints no TAP.
fn synthesize(raw: &RawRun, parsed: &tap::TapOutput) -> Vec<TapCase> {
    let lines: Vec<String> = parsed
        .trailing
        .iter()
        .rev()
        .take(20)
        .rev()
        .cloned()
        .collect();
    let last = lines
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .cloned()
        .unwrap_or_default();
    let (verdict, description, directive_text) = match raw.exit_code {
        Some(0) => (Verdict::Pass, "exit status 0".to_string(), String::new()),
        Some(KSFT_SKIP) => (Verdict::Skip, String::new(), last),
        Some(code) => (Verdict::Fail, format!("exit status {code}"), String::new()),
        None if raw.crash.is_some() || raw.agent_error.is_some() => return Vec::new(),
        None => (Verdict::Fail, describe_end(raw), String::new()),
    };
    let mut lines = lines;
    // Stands in for the result line the program did not print.
    lines.push(match verdict {
        Verdict::Skip => format!("exit status {KSFT_SKIP} (KSFT_SKIP): {directive_text}"),
        _ => description.clone(),
    });
    vec![TapCase {
        number: 1,
        verdict,
        description,
        directive_text,
        context: Some(raw.label.clone()),
        lines,
    }]
}

fn describe_end(raw: &RawRun) -> String {
    if raw.crash.is_some() {
        "guest died".to_string()
    } else if raw.agent_error.is_some() {
        "not run".to_string()
    } else if raw.timed_out {
        "timed out".to_string()
    } else if let Some(sig) = raw.signal {
        format!("signal {sig}")
    } else if let Some(code) = raw.exit_code {
        format!("exit {code}")
    } else {
        "unknown".to_string()
    }
}

/// One test's runs summed up.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TestSummary {
    /// The test.
    pub test: String,
    /// Summed counts.
    pub counts: Counts,
    /// Skips per reason, most frequent first.
    pub skip_reasons: Vec<SkipCount>,
    /// Host wall time of its runs, seconds.
    pub wall_seconds: f64,
    /// Whether it makes the whole run fail.
    pub failed: bool,
}

/// A skip reason and how often it occurred.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SkipCount {
    /// The reason.
    #[serde(flatten)]
    pub reason: SkipReason,
    /// Cases.
    pub count: u32,
    /// How many of them are setup failures (pinfuzz was to provide the thing).
    pub setup_failures: u32,
    /// The first few cases (`label #N: scenario`).
    pub examples: Vec<String>,
}

/// Cases named per skip reason in [`SkipCount::examples`].
pub const SKIP_EXAMPLES: usize = 3;

/// Sum runs per test, in the order tests first appear.
pub fn summarize(runs: &[RunResult]) -> Vec<TestSummary> {
    let mut order: Vec<String> = Vec::new();
    for r in runs {
        if !order.contains(&r.test) {
            order.push(r.test.clone());
        }
    }
    order
        .into_iter()
        .map(|test| {
            let mine: Vec<&RunResult> = runs.iter().filter(|r| r.test == test).collect();
            let mut counts = Counts::default();
            // Per reason: cases, setup failures among them, examples.
            let mut reasons: BTreeMap<SkipReason, (u32, u32, Vec<String>)> = BTreeMap::new();
            for r in &mine {
                counts.add(&r.counts);
                for c in &r.cases {
                    if let Some(s) = &c.skip {
                        let entry = reasons.entry(s.clone()).or_default();
                        entry.0 += 1;
                        entry.1 += u32::from(c.setup_failure);
                        if entry.2.len() < SKIP_EXAMPLES {
                            entry
                                .2
                                .push(format!("{} #{}: {}", r.label, c.number, c.name));
                        }
                    }
                }
            }
            let mut skip_reasons: Vec<SkipCount> = reasons
                .into_iter()
                .map(|(reason, (count, setup, examples))| SkipCount {
                    reason,
                    count,
                    setup_failures: setup,
                    examples,
                })
                .collect();
            skip_reasons.sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(&b.reason)));
            TestSummary {
                test,
                counts,
                skip_reasons,
                wall_seconds: mine.iter().map(|r| r.wall_seconds).sum(),
                failed: mine.iter().any(|r| r.failed()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(test: &str, output: &str, exit: i32) -> RawRun {
        RawRun {
            test: test.into(),
            label: test.into(),
            exit_code: Some(exit),
            output: output.into(),
            wall_seconds: 1.5,
            ..RawRun::default()
        }
    }

    fn all() -> Provided {
        Provided {
            gup_test: true,
            swap: true,
            hugetlb_kb: vec![2048, 1_048_576],
        }
    }

    /// 6.12's cow.c on 6.1: the unshare failures are expected there, and
    /// only there; the exit status 1 they cause is accounted for.
    #[test]
    fn expected_failures_are_reported_and_do_not_fail_the_run() {
        let out = "TAP version 13\n1..3\n\
                   # [RUN] Basic COW after fork() ... with base page\n\
                   ok 1 No leak from parent into child\n\
                   # [RUN] R/O longterm GUP pin ... with shared zeropage\n\
                   not ok 2 Longterm R/O pin is reliable\n\
                   # [RUN] Basic COW after fork() ... with hugetlb (1048576 kB)\n\
                   ok 3 # SKIP need more free huge pages\n\
                   Bail out! 1 out of 3 tests failed\n\
                   # Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:0\n";
        let none = Provided::default();
        let on61 = judge(&raw("cow", out, 1), (6, 1), &none);
        assert_eq!(on61.counts.pass, 1);
        assert_eq!(on61.counts.expected_fail, 1);
        assert_eq!(on61.counts.skip, 1);
        assert_eq!(on61.counts.setup_skip, 0);
        assert!(on61.problems.is_empty(), "{:?}", on61.problems);
        assert!(!on61.failed());
        let case = &on61.cases[1];
        assert_eq!(case.outcome, Outcome::ExpectedFail);
        assert!(case.explanation.unwrap().contains("gup_must_unshare"));
        assert_eq!(case.lines.len(), 2);
        // The same output on 6.12 is a failure.
        let on612 = judge(&raw("cow", out, 1), (6, 12), &none);
        assert_eq!(on612.counts.fail, 1);
        assert!(on612.failed());
        // With hugetlb pages promised, the skip is a setup failure.
        let promised = judge(&raw("cow", out, 1), (6, 1), &all());
        assert_eq!(promised.counts.setup_skip, 1);
        assert!(promised.cases[2].setup_failure);
        assert!(promised.failed());
        // Not when only 2 MiB pages were reserved.
        let small = Provided {
            hugetlb_kb: vec![2048],
            ..all()
        };
        let r = judge(&raw("cow", out, 1), (6, 1), &small);
        assert_eq!(r.counts.setup_skip, 0);
        assert_eq!(
            hugetlb_size_kb("x ... with memfd hugetlb (2048 kB)"),
            Some(2048)
        );
        assert_eq!(hugetlb_size_kb("x ... with hugetlb"), None);
    }

    #[test]
    fn runs_that_end_badly_are_problems() {
        let two = "TAP version 13\n1..2\nok 1 fine\n";
        let mut killed = raw("gup_longterm", two, 0);
        killed.exit_code = None;
        killed.signal = Some(11);
        let r = judge(&killed, (6, 12), &all());
        assert_eq!(r.ended, "signal 11");
        assert!(r.problems.iter().any(|p| p.contains("signal 11")));
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("1 results for a plan of 2"))
        );
        assert!(r.failed());

        let ok = "TAP version 13\n1..1\nok 1 fine\n";
        let r = judge(&raw("gup_longterm", ok, 3), (6, 12), &all());
        assert_eq!(r.problems, ["exit status 3 without a failed case"]);

        let mut warned = raw("gup_longterm", ok, 0);
        warned.incidents.push(Incident {
            title: "WARNING in gup_test_ioctl".into(),
            excerpt: "WARNING: CPU: 0 PID: 1 at ...".into(),
        });
        let r = judge(&warned, (6, 12), &all());
        assert_eq!(r.problems, ["kernel incident: WARNING in gup_test_ioctl"]);
        assert_eq!(r.incidents.len(), 1);

        let clean = judge(&raw("gup_longterm", ok, 0), (6, 12), &all());
        assert!(!clean.failed());
        assert_eq!(clean.planned, Some(1));
    }

    /// 6.1's gup_test.c prints no TAP: its exit status is the verdict.
    #[test]
    fn plain_programs_are_judged_by_exit_status() {
        let pass = judge(
            &raw(
                "gup_test",
                "PIN_FAST_BENCHMARK: Time: get:100 put:20 us\n",
                0,
            ),
            (6, 1),
            &all(),
        );
        assert_eq!(pass.counts.pass, 1);
        assert_eq!(pass.cases[0].name, "gup_test: exit status 0");
        let skip = judge(
            &raw(
                "gup_test",
                "check if CONFIG_GUP_TEST is enabled in kernel config\n",
                KSFT_SKIP,
            ),
            (6, 1),
            &all(),
        );
        assert_eq!(skip.counts.skip, 1);
        assert_eq!(skip.counts.setup_skip, 1);
        assert_eq!(
            skip.cases[0].skip.as_ref().unwrap().cause,
            SkipCause::NoGupTest
        );
        let fail = judge(&raw("gup_test", "ioctl: Bad address\n", 1), (6, 1), &all());
        assert_eq!(fail.counts.fail, 1);
        assert!(
            fail.cases[0]
                .lines
                .iter()
                .any(|l| l.contains("Bad address"))
        );
    }

    #[test]
    fn summaries_sum_invocations_and_rank_skip_reasons() {
        let a = "TAP version 13\n1..3\nok 1 # SKIP Did not get a THP populated\n\
                 ok 2 # SKIP need more free huge pages\nok 3 # SKIP Did not get a THP populated\n";
        let b = "TAP version 13\n1..1\nok 1 fine\n";
        let none = Provided::default();
        let mut runs = vec![judge(&raw("cow", a, 0), (6, 12), &none)];
        let mut second = raw("gup_test", b, 0);
        second.label = "gup_test -u".into();
        runs.push(judge(&second, (6, 12), &none));
        let mut third = raw("gup_test", b, 0);
        third.label = "gup_test -a".into();
        runs.push(judge(&third, (6, 12), &none));
        let s = summarize(&runs);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].test, "cow");
        assert_eq!(s[0].counts.skip, 3);
        assert_eq!(s[0].skip_reasons[0].count, 2);
        assert_eq!(
            s[0].skip_reasons[0].reason.message,
            "Did not get a THP populated"
        );
        assert_eq!(s[0].skip_reasons[1].reason.cause, SkipCause::NoHugetlbPages);
        assert_eq!(s[0].skip_reasons[1].setup_failures, 0);
        assert_eq!(
            s[0].skip_reasons[0].examples,
            [
                "cow #1: Did not get a THP populated",
                "cow #3: Did not get a THP populated"
            ]
        );
        assert_eq!(s[1].counts.pass, 2);
        assert!((s[1].wall_seconds - 3.0).abs() < 1e-9);
        assert!(!s.iter().any(|t| t.failed));
        assert_eq!(s[0].counts.total(), 3);
    }
}
