//! `pinfuzz check FILE|DIR…`: run program files differentially in one
//! guest (the seed corpus and regression files in CI) and fail on any
//! finding. A file whose header names another kernel profile is skipped
//! (and said so); a poisoned run is reported, not failed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use reference::Profile;

use crate::cli::run::load_program;
use crate::cli::vm::GuestArgs;
use crate::diff::{Outcome, run_diff};
use crate::report::{Report, ReportContext};

/// Arguments of `pinfuzz check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Program files, or directories searched recursively for `*.ops`.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Per-program timeout, seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// The guest.
    #[command(flatten)]
    pub guest: GuestArgs,
}

/// Every `*.ops` file under the paths, sorted.
pub fn ops_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        if p.is_dir() {
            for e in std::fs::read_dir(p).with_context(|| format!("read {}", p.display()))? {
                walk(&e?.path(), out)?;
            }
        } else if p.extension().is_some_and(|e| e == "ops") {
            out.push(p.to_path_buf());
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_file() {
            out.push(p.clone());
        } else {
            walk(p, &mut out)?;
        }
    }
    out.sort();
    Ok(out)
}

/// Run the subcommand.
pub fn run(args: Args) -> Result<ExitCode> {
    let files = ops_files(&args.paths)?;
    let programs: Vec<_> = files
        .iter()
        .map(|f| load_program(f).map(|p| (f, p)))
        .collect::<Result<_>>()?;
    let mut guest = args.guest.boot()?;
    let hello = guest.hello()?;
    let profile = Profile::find(&hello.kernel_release)
        .with_context(|| format!("no model profile for kernel {}", hello.kernel_release))?;
    println!(
        "# {} programs on {} (model profile {})",
        programs.len(),
        hello.kernel_release,
        profile.name
    );
    let (mut ok, mut skipped, mut poisoned, mut failed) = (0, 0, 0, 0);
    for (file, program) in &programs {
        if let Some(k) = &program.header.kernel {
            if Profile::find(k) != Some(profile) {
                println!("skip {}: for kernel {k}", file.display());
                skipped += 1;
                continue;
            }
        }
        let run = run_diff(
            &mut guest,
            program,
            profile,
            Duration::from_secs(args.timeout),
        )?;
        match &run.outcome {
            Outcome::Match => {
                println!("ok   {} ({} steps)", file.display(), program.steps.len());
                ok += 1;
            }
            Outcome::Poisoned { .. } | Outcome::Disturbed(_) => {
                let moved = match &run.outcome {
                    Outcome::Disturbed(d) => format!(" ({})", d.describe()),
                    _ => String::new(),
                };
                println!(
                    "poisoned {}: {}{moved}",
                    file.display(),
                    run.outcome.title().unwrap_or_default()
                );
                poisoned += 1;
            }
            _ => {
                failed += 1;
                let ctx = ReportContext {
                    kernel_release: hello.kernel_release.clone(),
                    kernel_name: args.guest.kernel.clone(),
                    profile: profile.name.into(),
                    fault_mode: args.guest.fault,
                    origin: file.display().to_string(),
                    reproduce: format!(
                        "pinfuzz repro {} --kernel {}",
                        file.display(),
                        args.guest.kernel
                    ),
                };
                println!(
                    "FAIL {}: {}",
                    file.display(),
                    run.outcome.title().unwrap_or_default()
                );
                println!("{}", Report::new(program, &run, &ctx).to_text());
            }
        }
    }
    let _ = guest.power_off();
    println!("# {ok} ok, {failed} failed, {poisoned} poisoned, {skipped} skipped");
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
