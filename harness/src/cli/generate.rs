//! `pinfuzz gen` (not written yet).
use std::process::ExitCode;

/// Arguments of `pinfuzz gen`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run the subcommand.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("pinfuzz gen is not written yet")
}
