//! `pinfuzz run` (not written yet).
use std::process::ExitCode;

/// Arguments of `pinfuzz run`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run the subcommand.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("pinfuzz run is not written yet")
}
