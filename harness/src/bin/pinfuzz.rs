//! The `pinfuzz` command line: see `harness::cli`.
use std::process::ExitCode;

fn main() -> ExitCode {
    harness::cli::main()
}
