//! The differential step: one program on the kernel (in the guest) and on
//! the model, and what the comparison says.
//!
//! Besides the oracle's verdict (match, diverged, poisoned) a run can end
//! in ways only the kernel side knows: the guest crashed or hung, the
//! console showed a kernel incident (WARNING, Bad page state, …) while the
//! guest survived, the reset check after the run found pins still held or
//! counted wrongly, something outside the program moved pages (migration,
//! compaction, khugepaged: the run is then poisoned), or the agent refused
//! the program. Each has a stable title.

use std::time::Duration;

use anyhow::Result;
use reference::Profile;
use serde::{Deserialize, Serialize};

use crate::backend::{ModelRun, run_model};
use crate::exec::{Disturbance, ResetCheck};
use crate::obs::Trace;
use crate::op::Program;
use crate::oracle::{CompareStats, Divergence, PoisonReason, Verdict, compare};
use crate::vm::console::CrashReport;
use crate::vm::guest::{Guest, RunEnd};

/// How a differential run ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Kernel and model agreed on every step, and the reset was clean.
    Match,
    /// The first step where they disagree.
    Diverged(Divergence),
    /// The kernel took a path the model declares non-deterministic.
    Poisoned {
        /// The step.
        step: usize,
        /// Why.
        reason: PoisonReason,
    },
    /// Something outside the program moved pages during the run
    /// (`Disturbance`): the comparison is void.
    Disturbed(Disturbance),
    /// The guest crashed or hung.
    Crashed(CrashReport),
    /// The console showed a kernel incident; the guest survived.
    Incident(CrashReport),
    /// After the run, the module still held pages or pins did not balance.
    ResetFailed(ResetCheck),
    /// The agent or executor could not run the program.
    AgentError(String),
}

impl Outcome {
    /// A finding (not a match, not poisoned or disturbed).
    pub fn is_finding(&self) -> bool {
        !matches!(
            self,
            Outcome::Match | Outcome::Poisoned { .. } | Outcome::Disturbed(_)
        )
    }

    /// The stable title of a finding (`None` for a match).
    pub fn title(&self) -> Option<String> {
        match self {
            Outcome::Match => None,
            Outcome::Diverged(d) => Some(d.title.clone()),
            Outcome::Poisoned { reason, .. } => Some(format!("poisoned: {}", reason.name())),
            Outcome::Disturbed(_) => Some("poisoned: pages moved outside the program".into()),
            Outcome::Crashed(c) => Some(format!("crash: {}", c.title)),
            Outcome::Incident(c) => Some(format!("incident: {}", c.title)),
            Outcome::ResetFailed(r) => Some(if r.pins_acquired != r.pins_released {
                "reset: nr_foll_pin_acquired != nr_foll_pin_released after close".into()
            } else {
                "reset: module still holds pages after close".into()
            }),
            Outcome::AgentError(_) => Some("agent: program could not run".into()),
        }
    }

    /// The step the outcome is about, if any.
    pub fn step(&self) -> Option<usize> {
        match self {
            Outcome::Diverged(d) => Some(d.step),
            Outcome::Poisoned { step, .. } => Some(*step),
            _ => None,
        }
    }
}

/// Everything one differential run produced.
#[derive(Clone, Debug)]
pub struct DiffRun {
    /// The verdict.
    pub outcome: Outcome,
    /// What the comparison counted.
    pub stats: CompareStats,
    /// The kernel's trace.
    pub kernel: Trace,
    /// The model's run.
    pub model: ModelRun,
    /// Guest wall time of the program.
    pub wall: Duration,
    /// The console lines of the incident, if there was one.
    pub console: Option<String>,
}

/// What a run says, from the oracle's verdict and how the kernel side
/// ended; also the console lines of a crash or incident.
///
/// A disturbed run (pages moved by something outside the program:
/// khugepaged, compaction, migration, reclaim; `docs/oracle.md`) is poisoned
/// whatever the comparison found: its divergence is explained by the
/// disturbance (khugepaged collapsing a range the program had made all
/// present and exclusive gives every page a new pfn and folio), so it is
/// counted, not reported. Otherwise a divergence at a step the kernel
/// reported is the first thing that went wrong, even if the kernel crashed
/// later.
pub fn outcome_of(
    verdict: Verdict,
    end: &RunEnd,
    incidents: &[CrashReport],
) -> (Outcome, Option<String>) {
    match (verdict, end) {
        (_, RunEnd::Finished(summary)) if !summary.disturbance.is_quiet() => {
            (Outcome::Disturbed(summary.disturbance.clone()), None)
        }
        (Verdict::Diverged(d), _) => (Outcome::Diverged(d), None),
        (_, RunEnd::Crashed(c)) => (Outcome::Crashed(c.clone()), Some(c.excerpt.clone())),
        (_, RunEnd::Failed(msg)) => (Outcome::AgentError(msg.clone()), None),
        (verdict, RunEnd::Finished(summary)) => {
            if let Some(first) = incidents.first() {
                (
                    Outcome::Incident(first.clone()),
                    Some(first.excerpt.clone()),
                )
            } else if let Verdict::Poisoned { step, reason } = verdict {
                (Outcome::Poisoned { step, reason }, None)
            } else if let Some(stop) = &summary.stopped {
                (Outcome::AgentError(stop.to_string()), None)
            } else {
                let outcome = match &summary.reset {
                    Some(r) if !r.ok => Outcome::ResetFailed(r.clone()),
                    None => Outcome::AgentError("run processes could not be reaped".into()),
                    _ => Outcome::Match,
                };
                (outcome, None)
            }
        }
    }
}

/// Run `program` on the guest and on the model of `profile`, and compare.
pub fn run_diff(
    guest: &mut Guest,
    program: &Program,
    profile: Profile,
    timeout: Duration,
) -> Result<DiffRun> {
    let run = guest.run_program(program, timeout, &mut |_| Ok(()))?;
    let kernel = run.trace();
    let model = run_model(program, profile);
    let (verdict, stats) = compare(program, &model, &kernel);
    let (outcome, console) = outcome_of(verdict, &run.end, &run.incidents);
    Ok(DiffRun {
        outcome,
        stats,
        kernel,
        model,
        wall: run.wall,
        console,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{RunSummary, Timing};

    fn finished(disturbance: Disturbance) -> RunEnd {
        RunEnd::Finished(RunSummary {
            steps_run: 15,
            steps_total: 15,
            stopped: None,
            reset: Some(ResetCheck {
                pins_acquired: 0,
                pins_released: 0,
                module_pages_held: Some(0),
                ok: true,
            }),
            disturbance,
            timing: Timing::default(),
        })
    }

    fn diverged() -> Verdict {
        Verdict::Diverged(Divergence {
            step: 14,
            title: "diverge: madvise(nohugepage) on anon-private: identity".into(),
            differences: Vec::new(),
        })
    }

    #[test]
    fn a_divergence_in_a_disturbed_run_is_poisoned_not_a_finding() {
        // corpus/regressions/0010: khugepaged collapsed the parent's range
        // between two steps; every page got a new pfn and folio.
        let moved = Disturbance {
            thp_collapse_alloc: 1,
            ..Disturbance::default()
        };
        assert_eq!(moved.describe(), "thp_collapse_alloc +1");
        let (outcome, _) = outcome_of(diverged(), &finished(moved.clone()), &[]);
        assert_eq!(outcome, Outcome::Disturbed(moved));
        assert!(!outcome.is_finding());
        // Undisturbed, the same divergence is a finding.
        let (outcome, _) = outcome_of(diverged(), &finished(Disturbance::default()), &[]);
        assert!(matches!(outcome, Outcome::Diverged(_)) && outcome.is_finding());
        let (outcome, _) = outcome_of(Verdict::Match, &finished(Disturbance::default()), &[]);
        assert_eq!(outcome, Outcome::Match);
    }
}
