//! `pinfuzz kernel` (not written yet).
use std::process::ExitCode;

/// Subcommands of `pinfuzz kernel`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {}

/// Run the subcommand.
pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {}
}
