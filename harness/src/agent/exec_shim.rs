//! The agent's binding to the in-guest executor and the program parser.
//!
//! TEMPORARY for the executor: `harness::exec` is written by another
//! engineer in parallel; the program text functions are final. Until they land,
//! this file stands in for them with the agreed interface, and every
//! function fails loudly instead of pretending to run anything. When they
//! land this file shrinks to re-exports, and then goes away.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::obs::StepObs;
use crate::op::Program;

/// What a program run ended with (stand-in for `harness::exec::RunSummary`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Why the run stopped before the last step, if it did.
    pub stopped: Option<String>,
    /// The post-run reset check.
    pub reset: ResetCheck,
}

/// The post-run reset check (stand-in for `harness::exec::ResetCheck`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetCheck {
    /// All handles released and pins balanced.
    pub ok: bool,
}

/// Executor configuration (stand-in for `harness::exec::ExecConfig`).
#[derive(Clone, Debug, Default)]
pub struct ExecConfig {}

/// Run a program (stand-in for `harness::exec::run_program`): fails.
pub fn run_program(
    _program: &Program,
    _cfg: &ExecConfig,
    _timeout: Duration,
    _sink: &mut dyn FnMut(StepObs) -> anyhow::Result<()>,
) -> anyhow::Result<RunSummary> {
    anyhow::bail!("this agent was built without the in-guest executor (harness::exec)")
}

/// Apply the guest's fixed settings (stand-in for `harness::exec::prepare_guest`): fails.
pub fn prepare_guest() -> anyhow::Result<()> {
    anyhow::bail!("this agent was built without the in-guest executor (harness::exec)")
}

/// Parse canonical program text with the strict parser (the one source
/// of truth for what a program means); errors carry line and column.
pub fn parse_program(text: &str) -> anyhow::Result<Program> {
    Program::parse_strict(text, "<channel>").map_err(|e| anyhow::anyhow!("{e}"))
}

/// Canonical text of a program.
pub fn program_text(program: &Program) -> anyhow::Result<String> {
    Ok(program.to_string())
}

/// `PINFUZZ_IOC_STATUS` on a fresh open of `dev` (stand-in for
/// `harness::uapi::PinfuzzDev::status`): fails.
pub fn module_status(_dev: &std::path::Path) -> anyhow::Result<crate::channel::ModuleStatus> {
    anyhow::bail!("this build has no module uapi mirror (harness::uapi)")
}
