//! `pinfuzz fmt`: check and canonicalize program files; convert between
//! text programs and raw fuzzer inputs.
//!
//! Files are read strictly (every error is `FILE:LINE:COL: message` with
//! the line and a caret) unless `--lenient` is given for old corpus files.
//! Rewritten files are replaced atomically (temporary file in the same
//! directory, fsync, rename), so an interrupted run never leaves half a
//! file. Exit status: 0 when everything was (or now is) canonical, 1 when
//! a file has an error or, with `--check`, is not canonical.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use crate::op::Program;
use crate::program::{decode, encode};

/// Arguments of `pinfuzz fmt`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Program files (`.ops`) to check and rewrite in canonical form.
    #[arg(value_name = "FILE", required_unless_present = "from_bytes")]
    files: Vec<PathBuf>,
    /// Change nothing: exit 1 if a file has an error or is not canonical.
    #[arg(long, conflicts_with = "stdout")]
    check: bool,
    /// Print the canonical text instead of rewriting the files.
    #[arg(long)]
    stdout: bool,
    /// Read old corpus files leniently: ignore unknown keys, drop invalid
    /// steps (each change is printed as a warning) instead of failing.
    #[arg(long)]
    lenient: bool,
    /// Print the program of a raw fuzzer input (libFuzzer/AFL bytes).
    #[arg(long, value_name = "RAW", conflicts_with_all = ["files", "check", "to_bytes"])]
    from_bytes: Option<PathBuf>,
    /// Write the fuzzer bytes of the one text program FILE to OUT, to seed
    /// a libFuzzer or AFL corpus.
    #[arg(long, value_name = "OUT", conflicts_with = "check")]
    to_bytes: Option<PathBuf>,
}

/// Run the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(raw) = &args.from_bytes {
        let bytes = fs::read(raw).with_context(|| format!("reading {}", raw.display()))?;
        print!("{}", decode(&bytes));
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(out) = &args.to_bytes {
        let [file] = args.files.as_slice() else {
            bail!(
                "--to-bytes takes exactly one program FILE ({} given)",
                args.files.len()
            );
        };
        let Some(program) = load(file, args.lenient)? else {
            return Ok(ExitCode::FAILURE);
        };
        write_atomic(out, &encode(&program))?;
        eprintln!("{}: wrote {}", file.display(), out.display());
        return Ok(ExitCode::SUCCESS);
    }
    let mut ok = true;
    for file in &args.files {
        ok &= format_file(file, &args)?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Read and parse one file; diagnostics go to stderr. `None` when the file
/// does not parse (strict mode).
fn load(file: &Path, lenient: bool) -> anyhow::Result<Option<Program>> {
    let name = file.display().to_string();
    let bytes = fs::read(file).with_context(|| format!("reading {name}"))?;
    let src = match String::from_utf8(bytes) {
        Ok(src) => src,
        Err(e) if lenient => {
            eprintln!(
                "{name}: warning: not UTF-8 at byte {}: invalid bytes replaced",
                e.utf8_error().valid_up_to()
            );
            String::from_utf8_lossy(e.as_bytes()).into_owned()
        }
        Err(e) => {
            eprintln!(
                "{name}: error: not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            );
            return Ok(None);
        }
    };
    if lenient {
        let (program, warnings) = Program::parse_lenient(&src, &name);
        for warning in warnings {
            eprintln!("{warning}");
        }
        return Ok(Some(program));
    }
    match Program::parse_strict(&src, &name) {
        Ok(program) => Ok(Some(program)),
        Err(e) => {
            eprintln!("{e}");
            Ok(None)
        }
    }
}

/// Check or rewrite one file; whether it is (now) fine.
fn format_file(file: &Path, args: &Args) -> anyhow::Result<bool> {
    let Some(program) = load(file, args.lenient)? else {
        return Ok(false);
    };
    let canonical = program.to_string();
    if args.stdout {
        print!("{canonical}");
        return Ok(true);
    }
    let current = fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    if current == canonical.as_bytes() {
        return Ok(true);
    }
    if args.check {
        let current = String::from_utf8_lossy(&current);
        eprintln!(
            "{}: not canonical: {}",
            file.display(),
            first_difference(&current, &canonical)
        );
        return Ok(false);
    }
    write_atomic(file, canonical.as_bytes())?;
    eprintln!("{}: formatted", file.display());
    Ok(true)
}

/// Where two texts first differ, as `line N: `old` should be `new``.
fn first_difference(current: &str, canonical: &str) -> String {
    let mut old = current.lines();
    let mut new = canonical.lines();
    for line in 1.. {
        match (old.next(), new.next()) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => return format!("line {line}: `{a}` should be `{b}`"),
            (Some(a), None) => return format!("line {line}: `{a}` should not be there"),
            (None, Some(b)) => return format!("line {line}: missing `{b}`"),
            (None, None) => break,
        }
    }
    "line endings or the final newline differ".into()
}

/// Replace `path` with `bytes` atomically: write a temporary file in the
/// same directory, fsync it, give it the permissions of the file it
/// replaces, rename it over `path`.
///
/// # Errors
///
/// Any I/O error, naming the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    let permissions = match fs::metadata(path) {
        Ok(meta) => meta.permissions(),
        // A new file gets the usual permissions, not the 0600 of a temp file.
        Err(_) => {
            use std::os::unix::fs::PermissionsExt as _;
            fs::Permissions::from_mode(0o644)
        }
    };
    fs::set_permissions(tmp.path(), permissions)
        .with_context(|| format!("setting permissions of {}", tmp.path().display()))?;
    tmp.persist(path)
        .with_context(|| format!("renaming the temporary file to {}", path.display()))?;
    Ok(())
}
