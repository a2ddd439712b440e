//! Reports: a finding as a struct first, then as text and JSON.
//!
//! A report names the bug (a stable title), where it was found (kernel
//! release, model profile), the first diverging step with the model's and
//! the kernel's values side by side, the trace up to that step from both
//! sides, the console excerpt if the kernel complained, the program, and
//! ends with the exact command that reproduces it.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::diff::{DiffRun, Outcome};
use crate::op::Program;
use crate::oracle::Difference;
use crate::trace::{PageNames, render};

/// A finding's report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Stable title.
    pub title: String,
    /// What kind of finding (`diverged`, `crash`, `incident`, `reset`, `agent`).
    pub kind: String,
    /// `uname -r` of the kernel.
    pub kernel_release: String,
    /// Name of the kernel in pinfuzz's cache (`debian-6.12`).
    pub kernel_name: String,
    /// Model profile used.
    pub profile: String,
    /// Helper module fault mode the guest ran with (0 = none).
    pub fault_mode: u32,
    /// The first diverging step, if the finding is a divergence.
    pub step: Option<usize>,
    /// That step, in program text.
    pub step_text: Option<String>,
    /// Every field that differs at that step.
    pub differences: Vec<Difference>,
    /// The model's trace up to and including the step.
    pub model_trace: String,
    /// The kernel's trace up to and including the step.
    pub kernel_trace: String,
    /// Console lines of a crash or incident.
    pub console: Option<String>,
    /// The program (canonical text).
    pub program: String,
    /// How the program was found (`fuzz seed 7 program 123`, a file, …).
    pub origin: String,
    /// The command that reproduces it.
    pub reproduce: String,
}

impl Report {
    /// A report for a differential run of `program`.
    pub fn new(program: &Program, run: &DiffRun, ctx: &ReportContext) -> Report {
        let outcome = &run.outcome;
        let title = outcome.title().unwrap_or_else(|| "match".into());
        let kind = match outcome {
            Outcome::Match => "match",
            Outcome::Diverged(_) => "diverged",
            Outcome::Poisoned { .. } | Outcome::Disturbed(_) => "poisoned",
            Outcome::Crashed(_) => "crash",
            Outcome::Incident(_) => "incident",
            Outcome::ResetFailed(_) => "reset",
            Outcome::AgentError(_) => "agent",
        }
        .to_string();
        let step = outcome.step();
        let upto = step.map_or(program.steps.len(), |s| s + 1);
        let mut cut = program.clone();
        cut.steps.truncate(upto);
        let mut model = run.model.trace.clone();
        model.steps.truncate(upto);
        let mut kernel = run.kernel.clone();
        kernel.steps.truncate(upto);
        let differences = match outcome {
            Outcome::Diverged(d) => d.differences.clone(),
            Outcome::ResetFailed(r) => vec![Difference {
                place: crate::oracle::Place::Counter("after close".into()),
                field: "pins".into(),
                model: "acquired == released, nothing held".into(),
                kernel: format!(
                    "acquired {} released {} module pages held {:?}",
                    r.pins_acquired, r.pins_released, r.module_pages_held
                ),
            }],
            _ => Vec::new(),
        };
        let console = run.console.clone().or_else(|| match outcome {
            Outcome::AgentError(m) => Some(m.clone()),
            _ => None,
        });
        Report {
            title,
            kind,
            kernel_release: ctx.kernel_release.clone(),
            kernel_name: ctx.kernel_name.clone(),
            profile: ctx.profile.clone(),
            fault_mode: ctx.fault_mode,
            step,
            step_text: step.map(|s| program.steps[s].to_string()),
            differences,
            model_trace: render(&cut, &model, &mut PageNames::default()),
            kernel_trace: render(&cut, &kernel, &mut PageNames::default()),
            console,
            program: program.to_string(),
            origin: ctx.origin.clone(),
            reproduce: ctx.reproduce.clone(),
        }
    }

    /// The report as text.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{}", self.title);
        let _ = writeln!(s, "{}", "=".repeat(self.title.len().min(100)));
        let _ = writeln!(
            s,
            "kernel: {} ({})   model profile: {}   module fault mode: {}",
            self.kernel_release, self.kernel_name, self.profile, self.fault_mode
        );
        let _ = writeln!(s, "origin: {}", self.origin);
        if let (Some(step), Some(text)) = (self.step, &self.step_text) {
            let _ = writeln!(s, "\nfirst diverging step: [{step}] {text}");
        }
        if !self.differences.is_empty() {
            let w = self
                .differences
                .iter()
                .map(|d| d.place.to_string().len() + d.field.len() + 1)
                .max()
                .unwrap_or(10)
                .min(40);
            let _ = writeln!(s, "\n{:<w$}  {:<28}  kernel", "where", "model");
            for d in self.differences.iter().take(40) {
                let place = format!("{} {}", d.place, d.field);
                let _ = writeln!(s, "{place:<w$}  {:<28}  {}", d.model, d.kernel);
            }
            if self.differences.len() > 40 {
                let _ = writeln!(
                    s,
                    "… {} more differences (see report.json)",
                    self.differences.len() - 40
                );
            }
        }
        if let Some(c) = &self.console {
            let _ = writeln!(s, "\nconsole:\n{}", c.trim_end());
        }
        let _ = writeln!(s, "\nprogram:\n{}", self.program.trim_end());
        let _ = writeln!(s, "\nmodel trace:\n{}", self.model_trace.trim_end());
        let _ = writeln!(s, "\nkernel trace:\n{}", self.kernel_trace.trim_end());
        let _ = writeln!(s, "\nReproduce with:\n\n\t{}", self.reproduce);
        s
    }
}

/// Where a report comes from.
#[derive(Clone, Debug, Default)]
pub struct ReportContext {
    /// `uname -r`.
    pub kernel_release: String,
    /// Cache name of the kernel.
    pub kernel_name: String,
    /// Model profile name.
    pub profile: String,
    /// Module fault mode.
    pub fault_mode: u32,
    /// How the program was found.
    pub origin: String,
    /// The reproduce command.
    pub reproduce: String,
}
