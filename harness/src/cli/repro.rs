//! `pinfuzz repro` and `pinfuzz minimize`: replay a finding, a program file
//! or a raw fuzzer input on both sides, print the side-by-side report, and
//! (minimize) shrink it while it still fails the same way.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use reference::Profile;

use crate::cli::vm::GuestArgs;
use crate::diff::run_diff;
use crate::finding::write_atomic;
use crate::minimize::{Mode, minimize};
use crate::op::Program;
use crate::report::{Report, ReportContext};

/// Arguments of `pinfuzz repro`.
#[derive(Debug, clap::Args)]
pub struct ReproArgs {
    /// A finding directory, a program file (`.ops`), or a raw fuzzer input.
    pub path: PathBuf,
    /// Write a standalone C reproducer (kselftest style) to this file.
    #[arg(long, value_name = "OUT.c")]
    pub emit_c: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Per-program timeout, seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// The guest.
    #[command(flatten)]
    pub guest: GuestArgs,
}

/// Arguments of `pinfuzz minimize`.
#[derive(Debug, clap::Args)]
pub struct MinimizeArgs {
    /// A finding directory, a program file (`.ops`), or a raw fuzzer input.
    pub path: PathBuf,
    /// Where to write the minimized program (default: standard output).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Most guest runs to spend.
    #[arg(long, default_value_t = 200)]
    pub budget: usize,
    /// Per-program timeout, seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// The guest.
    #[command(flatten)]
    pub guest: GuestArgs,
}

/// A program from a finding directory, a text file, or raw fuzzer bytes,
/// with the raw bytes when there were any.
pub fn load_any(path: &Path) -> Result<(Program, Option<Vec<u8>>)> {
    let file = if path.is_dir() {
        path.join("program.ops")
    } else {
        path.to_path_buf()
    };
    let bytes = std::fs::read(&file).with_context(|| format!("read {}", file.display()))?;
    match std::str::from_utf8(&bytes) {
        Ok(text) if looks_like_text(text) => {
            let (program, warnings) = Program::parse_lenient(text, &file.display().to_string());
            for w in warnings {
                eprintln!("{w}");
            }
            Ok((program, None))
        }
        _ => Ok((crate::fuzzing::program_of(&bytes), Some(bytes))),
    }
}

/// Program text starts (after comments and blank lines) with the header.
fn looks_like_text(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| l.starts_with("pinfuzz "))
}

/// `pinfuzz repro`.
pub fn repro(args: ReproArgs) -> Result<ExitCode> {
    let (program, raw) = load_any(&args.path)?;
    if let Some(out) = &args.emit_c {
        let c = crate::creproducer::emit_c(&program, &args.path.display().to_string())?;
        write_atomic(out, c.as_bytes())?;
        eprintln!("pinfuzz: wrote {}", out.display());
    }
    let mut guest = args.guest.boot()?;
    let hello = guest.hello()?;
    let profile = Profile::find(&hello.kernel_release)
        .with_context(|| format!("no model profile for kernel {}", hello.kernel_release))?;
    let run = run_diff(
        &mut guest,
        &program,
        profile,
        Duration::from_secs(args.timeout),
    )?;
    let ctx = ReportContext {
        kernel_release: hello.kernel_release.clone(),
        kernel_name: args.guest.kernel.clone(),
        profile: profile.name.into(),
        fault_mode: args.guest.fault,
        origin: format!(
            "{}{}",
            args.path.display(),
            if raw.is_some() {
                " (raw fuzzer input)"
            } else {
                ""
            }
        ),
        reproduce: format!(
            "pinfuzz repro {} --kernel {}",
            args.path.display(),
            args.guest.kernel
        ),
    };
    let report = Report::new(&program, &run, &ctx);
    let _ = guest.power_off();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if run.outcome.is_finding() {
        print!("{}", report.to_text());
    } else {
        println!("{}", report.model_trace);
        match run.outcome.title() {
            Some(t) => println!("no finding: {t}"),
            None => println!(
                "kernel and model agree on all {} steps",
                program.steps.len()
            ),
        }
    }
    Ok(if run.outcome.is_finding() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `pinfuzz minimize`.
pub fn minimize_cmd(args: MinimizeArgs) -> Result<ExitCode> {
    let (program, _) = load_any(&args.path)?;
    let mut guest = args.guest.boot()?;
    let hello = guest.hello()?;
    let profile = Profile::find(&hello.kernel_release)
        .with_context(|| format!("no model profile for kernel {}", hello.kernel_release))?;
    let timeout = Duration::from_secs(args.timeout);
    let first = run_diff(&mut guest, &program, profile, timeout)?;
    if !first.outcome.is_finding() {
        bail!(
            "{} does not fail on {}: nothing to minimize ({})",
            args.path.display(),
            hello.kernel_release,
            first
                .outcome
                .title()
                .unwrap_or_else(|| "kernel and model agree".into())
        );
    }
    let title = first.outcome.title().expect("a finding has a title");
    eprintln!(
        "pinfuzz: minimizing \"{title}\" ({} steps)",
        program.steps.len()
    );
    let mut pred = |c: &Program| {
        run_diff(&mut guest, c, profile, timeout)
            .ok()
            .and_then(|r| r.outcome.title())
            .is_some_and(|t| t == title)
    };
    let (min, stats) = minimize(
        &program,
        first.outcome.step(),
        Mode::Vm {
            budget: args.budget,
        },
        &mut pred,
    );
    let _ = guest.power_off();
    let tries: usize = stats.attempts.iter().map(|(_, n)| n).sum();
    eprintln!(
        "pinfuzz: {} -> {} steps in {tries} guest runs ({} memoized)",
        stats.steps.0, stats.steps.1, stats.memo_hits
    );
    match &args.out {
        Some(out) => write_atomic(out, min.to_string().as_bytes())?,
        None => print!("{min}"),
    }
    Ok(ExitCode::SUCCESS)
}
