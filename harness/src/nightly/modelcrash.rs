//! Crashes of the model-only fuzz targets: re-run in-process, titled,
//! minimized, written as findings.
//!
//! An artifact is replayed through the same function its target calls
//! (`fuzzing::check_model` for `model`, `program::selfcheck::text_roundtrip`
//! for `text_roundtrip`) under `catch_unwind`, with a panic hook that keeps
//! the message. The title is the message's first line with every number
//! replaced by `N` and parenthesized step text dropped, prefixed with the
//! target: stable across inputs that break the same invariant at different
//! steps, so the nightly deduplicates them. A `model` crash is then
//! minimized as a program (`minimize::Mode::Fast`, predicate: the same
//! title) and written with its canonical text.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::finding::write_atomic;
use crate::fuzzing::program_of;
use crate::minimize::{Mode, minimize};
use crate::op::Program;
use crate::program::encode;

/// The in-process check a target runs, if the nightly knows it.
pub fn check_of(target: &str) -> Option<fn(&[u8])> {
    match target {
        "model" => Some(crate::fuzzing::check_model),
        "text_roundtrip" => Some(crate::program::selfcheck::text_roundtrip),
        _ => None,
    }
}

/// Run `check` on `data`; the panic message if it panicked.
pub fn panic_message(check: fn(&[u8]), data: &[u8]) -> Option<String> {
    let seen: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let keep = Arc::clone(&seen);
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic with a non-string payload".into());
        let at = info
            .location()
            .map(|l| format!(" (at {}:{})", l.file(), l.line()))
            .unwrap_or_default();
        *keep.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{msg}{at}"));
    }));
    let result = panic::catch_unwind(AssertUnwindSafe(|| check(data)));
    panic::set_hook(previous);
    let msg = seen.lock().unwrap_or_else(|p| p.into_inner()).take();
    result.err().map(|_| msg.unwrap_or_else(|| "panic".into()))
}

/// The stable title of a target's panic message.
pub fn title_of(target: &str, message: &str) -> String {
    let first = message.lines().next().unwrap_or("").trim();
    // Drop "(...)" groups (step text, source locations): they name the
    // input, not the bug.
    let mut out = String::new();
    let mut depth = 0usize;
    for c in first.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    let mut numbered = String::new();
    let mut in_number = false;
    for c in out.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                numbered.push('N');
            }
            in_number = true;
        } else {
            in_number = false;
            numbered.push(c);
        }
    }
    let squeezed = numbered
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace(" :", ":");
    format!("model-fuzz {target}: {}", squeezed.trim_end_matches(':'))
}

/// One artifact, replayed.
#[derive(Clone, Debug, Serialize)]
pub struct ModelCrash {
    /// Target.
    pub target: String,
    /// The artifact.
    pub artifact: PathBuf,
    /// Title.
    pub title: String,
    /// The panic message (`None`: it did not reproduce in-process).
    pub message: Option<String>,
    /// Steps of the program before and after minimization (`model` only).
    pub steps: Option<(usize, usize)>,
}

/// Replay `artifact` of `target` and write it as a finding directory under
/// `out` (`program.ops` when the input is a program, `input.bin`,
/// `report.txt`, `report.json`); returns the crash and the directory.
///
/// # Errors
/// The artifact cannot be read or the finding cannot be written.
pub fn triage(target: &str, artifact: &Path, out: &Path) -> Result<(ModelCrash, PathBuf)> {
    let data = fs::read(artifact).with_context(|| format!("read {}", artifact.display()))?;
    let kind = artifact
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .split('-')
                .next()
                .unwrap_or("crash")
                .to_string()
        })
        .unwrap_or_else(|| "crash".into());
    let check = check_of(target);
    let message = check.and_then(|c| panic_message(c, &data));
    let title = match (&message, kind.as_str()) {
        (Some(m), _) => title_of(target, m),
        (None, "crash") => format!("model-fuzz {target}: crash that does not reproduce in-process"),
        (None, other) => format!("model-fuzz {target}: {other}"),
    };
    let mut steps = None;
    let mut program: Option<Program> = None;
    if target == "model" {
        let original = program_of(&data);
        let mut min = original.clone();
        if let (Some(check), Some(_)) = (check, &message) {
            let mut pred = |p: &Program| {
                panic_message(check, &encode(p)).is_some_and(|m| title_of(target, &m) == title)
            };
            // The original bytes may carry more than the program (the
            // codec ignores trailing bytes): the predicate needs the program
            // itself to fail, or minimization has nothing to stand on.
            if pred(&original) {
                min = minimize(&original, None, Mode::Fast, &mut pred).0;
            }
        }
        steps = Some((original.steps.len(), min.steps.len()));
        program = Some(min);
    }
    let dir = out.join(crate::finding::dir_name(&title));
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    write_atomic(&dir.join("input.bin"), &data)?;
    if let Some(p) = &program {
        write_atomic(&dir.join("program.ops"), p.to_string().as_bytes())?;
    }
    let crash = ModelCrash {
        target: target.to_string(),
        artifact: artifact.to_path_buf(),
        title: title.clone(),
        message: message.clone(),
        steps,
    };
    let mut text = format!("{title}\n{}\n", "=".repeat(title.len().min(100)));
    text += &format!("target: {target}\nartifact: {}\n\n", artifact.display());
    match &message {
        Some(m) => text += &format!("panic:\n{m}\n"),
        None => text += "the input did not panic when replayed in-process\n",
    }
    if let Some(p) = &program {
        text += &format!("\nminimized program:\n{p}");
    }
    text += &format!(
        "\nReproduce with:\n\n\tcargo +nightly fuzz run {target} {}\n",
        artifact.display()
    );
    write_atomic(&dir.join("report.txt"), text.as_bytes())?;
    write_atomic(
        &dir.join("report.json"),
        serde_json::to_string_pretty(&crash)?.as_bytes(),
    )?;
    Ok((crash, dir))
}

/// Whether the finding in `dir` (written by [`triage`]) still panics with
/// `title`: its minimized program for `model`, its input otherwise.
pub fn reproduces(target: &str, dir: &Path, title: &str) -> Result<bool> {
    let Some(check) = check_of(target) else {
        return Ok(false);
    };
    let data = match fs::read_to_string(dir.join("program.ops")) {
        Ok(text) if target == "model" => {
            let (p, _) = Program::parse_lenient(&text, "program.ops");
            encode(&p)
        }
        _ => fs::read(dir.join("input.bin"))
            .with_context(|| format!("read {}", dir.join("input.bin").display()))?,
    };
    Ok(panic_message(check, &data).is_some_and(|m| title_of(target, &m) == title))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_drop_numbers_and_step_text() {
        let a = "model 6.12 broke an invariant at step 3 (p2 = pin_user_pages(m0[0..4], write)): \
                 page 17 refcount 3 < mapcount 4\nprogram:\n...";
        let b = "model 6.12 broke an invariant at step 11 (c0: exit(c0)): page 2 refcount 1 < mapcount 2";
        assert_eq!(title_of("model", a), title_of("model", b));
        assert_eq!(
            title_of("model", a),
            "model-fuzz model: model N.N broke an invariant at step N: page N refcount N < mapcount N"
        );
    }

    #[test]
    fn panics_are_caught_with_their_message() {
        fn boom(d: &[u8]) {
            assert!(d.is_empty(), "input of {} bytes", d.len());
        }
        assert_eq!(panic_message(boom, &[]), None);
        let m = panic_message(boom, &[1, 2]).expect("panics");
        assert!(m.starts_with("input of 2 bytes"), "{m}");
    }
}
