//! `pinfuzz fmt` (not written yet).
use std::process::ExitCode;

/// Arguments of `pinfuzz fmt`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run the subcommand.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("pinfuzz fmt is not written yet")
}
