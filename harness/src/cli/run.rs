//! `pinfuzz run FILE…`: execute programs on one backend and print each
//! step's result, the counters that moved and the pages that changed.
//!
//! `--backend model` runs the reference model in this process;
//! `--backend kernel` boots the guest (provisioning the kernel if needed)
//! and runs the programs there; `--backend native` runs them on this
//! machine's kernel through an already loaded helper module (a kernel
//! developer's test box). The output format is the same for all three, so
//! two runs can be compared with `diff`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use reference::Profile;

use crate::backend::run_model;
use crate::cli::vm::GuestArgs;
use crate::obs::Trace;
use crate::op::Program;
use crate::trace::{PageNames, json_lines, render};

/// Which system runs the programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    /// The reference model.
    Model,
    /// The real kernel in a QEMU guest.
    Kernel,
    /// The kernel of this machine, through a loaded helper module.
    Native,
}

/// Arguments of `pinfuzz run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Program files (`.ops`).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Where to run them.
    #[arg(long, value_enum, default_value = "model")]
    pub backend: BackendArg,
    /// Model profile (6.12, 6.1); default: the program header's kernel, else 6.12.
    #[arg(long)]
    pub profile: Option<String>,
    /// One JSON object per step, then one summary object per program.
    #[arg(long)]
    pub json: bool,
    /// Print only programs that did not run clean, and a summary.
    #[arg(long, short)]
    pub quiet: bool,
    /// Per-program timeout on the kernel backends, in seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// The guest (kernel backend).
    #[command(flatten)]
    pub guest: GuestArgs,
}

/// Load and strictly parse a program file.
pub fn load_program(path: &std::path::Path) -> Result<Program> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    Program::parse_strict(&text, &path.display().to_string()).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The model profile for a program: `--profile`, else its header's kernel, else the default.
pub fn profile_for(program: &Program, flag: Option<&str>) -> Result<Profile> {
    match flag.or(program.header.kernel.as_deref()) {
        None => Ok(Profile::default()),
        Some(name) => Profile::find(name).with_context(|| {
            let known: Vec<&str> = Profile::ALL.iter().map(|p| p.name).collect();
            format!(
                "no model profile for kernel {name:?} (known: {})",
                known.join(", ")
            )
        }),
    }
}

/// Run the subcommand.
pub fn run(args: Args) -> Result<ExitCode> {
    let programs: Vec<(String, Program)> = args
        .files
        .iter()
        .map(|f| Ok((f.display().to_string(), load_program(f)?)))
        .collect::<Result<_>>()?;
    let mut failed = 0;
    let mut guest = match args.backend {
        BackendArg::Kernel => {
            let g = args.guest.boot().context("boot the guest")?;
            Some(g)
        }
        _ => None,
    };
    if let Some(g) = &mut guest {
        let hello = g.hello()?;
        if !args.json {
            println!(
                "# kernel {} (guest agent {})",
                hello.kernel_release, hello.agent_version
            );
        }
    }
    for (file, program) in &programs {
        let (trace, problem) = match args.backend {
            BackendArg::Model => {
                let profile = profile_for(program, args.profile.as_deref())?;
                let run = run_model(program, profile);
                let problem = run
                    .invariant
                    .as_ref()
                    .map(|(step, msg)| format!("model invariant broken at step {step}: {msg}"));
                (run.trace, problem)
            }
            BackendArg::Kernel => {
                let g = guest.as_mut().expect("booted above");
                let run =
                    g.run_program(program, Duration::from_secs(args.timeout), &mut |_| Ok(()))?;
                let mut trace = run.trace();
                let mut problems: Vec<String> = run
                    .incidents
                    .iter()
                    .map(|c| format!("kernel incident: {}", c.title))
                    .collect();
                if let crate::vm::guest::RunEnd::Finished(s) = &run.end {
                    if let Some(reset) = &s.reset {
                        if !reset.ok {
                            problems.push(format!("reset check failed: {reset:?}"));
                        }
                    }
                }
                if trace.stopped.is_some() {
                    problems.push(trace.stopped.clone().unwrap_or_default());
                }
                trace.stopped = trace.stopped.take();
                (trace, (!problems.is_empty()).then(|| problems.join("; ")))
            }
            BackendArg::Native => {
                let mut trace = Trace::default();
                let summary = crate::exec::run_program(
                    program,
                    &crate::exec::ExecConfig::default(),
                    Duration::from_secs(args.timeout),
                    &mut |obs| {
                        trace.steps.push(obs);
                        Ok(())
                    },
                )?;
                trace.stopped = summary.stopped.as_ref().map(|s| s.to_string());
                let problem = trace.stopped.clone();
                (trace, problem)
            }
        };
        let clean = problem.is_none() && trace.steps.len() == program.steps.len();
        if args.quiet {
            if !clean {
                println!("== {file}");
                print!("{}", render(program, &trace, &mut PageNames::default()));
                println!("!! {}", problem.as_deref().unwrap_or("stopped early"));
            }
        } else if args.json {
            for line in json_lines(file, program, &trace) {
                println!("{line}");
            }
            let summary = serde_json::json!({
                "file": file,
                "steps": program.steps.len(),
                "executed": trace.steps.len(),
                "vmstat": trace.steps.last().map(|s| s.vmstat),
                "problem": problem,
            });
            println!("{summary}");
        } else {
            println!("== {file}");
            print!("{}", render(program, &trace, &mut PageNames::default()));
            if let Some(p) = &problem {
                println!("!! {p}");
            }
        }
        if !clean {
            failed += 1;
        }
    }
    if let Some(mut g) = guest {
        let _ = g.power_off();
    }
    if failed > 0 {
        eprintln!(
            "pinfuzz run: {failed} of {} programs did not run clean",
            programs.len()
        );
        return Ok(ExitCode::from(1));
    }
    if args.quiet {
        eprintln!("pinfuzz run: all {} programs ran clean", programs.len());
    }
    Ok(ExitCode::SUCCESS)
}
