//! The `pinfuzz` command line: one module per subcommand.
//!
//! Every subcommand module exposes `Args` (clap derive) and
//! `run(Args) -> anyhow::Result<ExitCode>`; this file only dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod bench;
pub mod check;
pub mod corpus;
pub mod fmt;
pub mod fuzz;
pub mod generate;
pub mod jobsbench;
pub mod kernel;
pub mod nightly;
pub mod repro;
pub mod run;
pub mod selfcheck;
pub mod selftests;
pub mod vm;

/// Differential fuzzing of Linux page pinning against a reference model.
#[derive(Debug, Parser)]
#[command(name = "pinfuzz", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run program files differentially in the guest; fail on any finding.
    Check(check::Args),
    /// Import, merge and minimize text corpora of programs.
    #[command(subcommand)]
    Corpus(corpus::Command),
    /// Fuzz: seeded programs through the differential loop in the guest.
    Fuzz(fuzz::Args),
    /// Execute programs on a backend and print the per-step trace.
    Run(run::Args),
    /// Replay a finding, program or fuzzer input on kernel and model, side by side.
    Repro(repro::ReproArgs),
    /// Shrink a failing program while it fails the same way.
    Minimize(repro::MinimizeArgs),
    /// Check that pinfuzz catches each fault-injection mode of the helper module.
    Selfcheck(selfcheck::Args),
    /// Build the kernel's own GUP selftests from its source and run them in the guest.
    Selftests(selftests::Args),
    /// Check and canonicalize program files; convert raw fuzzer inputs.
    Fmt(fmt::Args),
    /// The loop's steps/s against a bare C baseline of the same programs in the same guest.
    Bench(bench::Args),
    /// Benchmark `pinfuzz fuzz --jobs 1` against `--jobs 2` on the same programs.
    Jobsbench(jobsbench::Args),
    /// Generate valid programs from a seeded generator.
    Gen(generate::Args),
    /// The nightly: every fuzzer for a budget, findings against a persistent state, a report.
    Nightly(nightly::Args),
    /// Fetch, build and list kernels for the guest.
    #[command(subcommand)]
    Kernel(kernel::Command),
    /// Boot and check the guest.
    #[command(subcommand)]
    Vm(vm::Command),
}

/// Parse the command line, run the subcommand, print any error with its causes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => check::run(args),
        Command::Corpus(cmd) => corpus::run(cmd),
        Command::Fuzz(args) => fuzz::run(args),
        Command::Run(args) => run::run(args),
        Command::Repro(args) => repro::repro(args),
        Command::Minimize(args) => repro::minimize_cmd(args),
        Command::Selfcheck(args) => selfcheck::run(args),
        Command::Selftests(args) => selftests::run(args),
        Command::Fmt(args) => fmt::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Jobsbench(args) => jobsbench::run(args),
        Command::Gen(args) => generate::run(args),
        Command::Nightly(args) => nightly::run(args),
        Command::Kernel(cmd) => kernel::run(cmd),
        Command::Vm(cmd) => vm::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("pinfuzz: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
