//! The corpus of record (`corpus/**/*.ops`) on every `cargo test`, and the
//! `pinfuzz corpus` commands as a user runs them.
//!
//! Every program file must read strictly, be in canonical form (what
//! `pinfuzz fmt --check` demands), and run on the model of every kernel
//! profile its header allows without breaking a model invariant. Seeds must
//! say what they check; regression files must be named and headed as
//! `corpus/regressions/README.md` says. The kernel side of the same files
//! runs in the VM job (`pinfuzz run --backend kernel corpus/seeds/*.ops`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use harness::backend::run_model;
use harness::op::Program;
use reference::Profile;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus")
}

/// Every `*.ops` file under `dir`, sorted.
fn ops_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "ops") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The profiles a program's header allows: the one it names, or all.
fn profiles(program: &Program) -> Vec<Profile> {
    match &program.header.kernel {
        Some(name) => vec![Profile::find(name).expect("a valid header names a known profile")],
        None => Profile::ALL.to_vec(),
    }
}

/// Everything wrong with one corpus file, as messages naming it.
fn check_file(path: &Path) -> Vec<String> {
    let name = path.display().to_string();
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return vec![format!("{name}: {e}")],
    };
    let program = match Program::parse_strict(&text, &name) {
        Ok(program) => program,
        Err(e) => return vec![e.to_string()],
    };
    let mut problems = Vec::new();
    let canonical = program.to_string();
    if canonical != text {
        problems.push(format!(
            "{name}: not canonical (run `pinfuzz fmt {name}`); canonical text:\n{canonical}"
        ));
    }
    for profile in profiles(&program) {
        let run = run_model(&program, profile);
        if let Some((step, message)) = run.invariant {
            problems.push(format!(
                "{name}: model {} breaks an invariant at step {step} ({}): {message}",
                profile.name, program.steps[step]
            ));
        }
        if run.trace.steps.len() != program.steps.len() {
            problems.push(format!(
                "{name}: model {} stopped after {} of {} steps",
                profile.name,
                run.trace.steps.len(),
                program.steps.len()
            ));
        }
    }
    problems
}

#[test]
fn every_corpus_program_is_strict_canonical_and_keeps_model_invariants() {
    let files = ops_files(&corpus_dir());
    let problems: Vec<String> = files.iter().flat_map(|f| check_file(f)).collect();
    assert!(
        problems.is_empty(),
        "{} of {} corpus files have problems:\n{}",
        problems.len(),
        files.len(),
        problems.join("\n")
    );
}

#[test]
fn seeds_are_many_and_each_says_what_it_checks() {
    let seeds = ops_files(&corpus_dir().join("seeds"));
    assert!(seeds.len() >= 30, "only {} seeds", seeds.len());
    let mut problems = Vec::new();
    for path in &seeds {
        let text = fs::read_to_string(path).expect("seed readable");
        let program = Program::parse_strict(&text, &path.display().to_string());
        let Ok(program) = program else { continue }; // reported by the test above
        let words: usize = program
            .comments
            .iter()
            .map(|c| c.split_whitespace().count())
            .sum();
        if words < 12 {
            problems.push(format!(
                "{}: the comment header ({words} words) must say what the seed checks \
                 and the kernel function behind it",
                path.display()
            ));
        }
        let stem = path.file_stem().expect("file name").to_string_lossy();
        if !stem
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            problems.push(format!(
                "{}: seed names are lowercase-with-dashes, named for the scenario",
                path.display()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `corpus/regressions/NNNN-slug.ops`, headed by `# title:`, `# found-by:`,
/// `# kernel:` and `# postmortem:` comment lines.
#[test]
fn regression_files_follow_their_naming_and_header_rules() {
    let dir = corpus_dir().join("regressions");
    assert!(
        dir.join("README.md").is_file(),
        "corpus/regressions/README.md says how regression files are written"
    );
    let mut problems = Vec::new();
    let mut numbers = Vec::new();
    for path in ops_files(&dir) {
        let stem = path
            .file_stem()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        let (number, slug) = stem.split_at(stem.len().min(4));
        let named = number.len() == 4
            && number.chars().all(|c| c.is_ascii_digit())
            && slug.starts_with('-')
            && slug.len() > 1
            && slug[1..]
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'));
        if !named {
            problems.push(format!("{}: not named NNNN-slug.ops", path.display()));
        }
        numbers.push(number.to_string());
        let text = fs::read_to_string(&path).expect("readable");
        let Ok(program) = Program::parse_strict(&text, &path.display().to_string()) else {
            continue;
        };
        for key in ["title:", "found-by:", "kernel:", "postmortem:"] {
            if !program
                .comments
                .iter()
                .any(|c| c.trim_start().starts_with(key))
            {
                problems.push(format!("{}: no `# {key}` header line", path.display()));
            }
        }
    }
    numbers.sort();
    if let Some(w) = numbers.windows(2).find(|w| w[0] == w[1]) {
        problems.push(format!("two regression files are numbered {}", w[0]));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn pinfuzz(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pinfuzz"))
        .args(args)
        .output()
        .expect("run pinfuzz")
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// The fuzzers' seed path and back: seeds become raw inputs with
/// `pinfuzz fmt --to-bytes`, `pinfuzz corpus import` turns raw inputs into
/// canonical text named by content hash, `merge` unions, `minimize` keeps
/// what adds coverage. Importing the seeds' bytes gives the seeds back.
#[test]
fn seeds_to_bytes_and_back_through_the_corpus_commands() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let raw = tmp.path().join("libfuzzer");
    fs::create_dir_all(&raw).expect("mkdir");
    let seeds: Vec<PathBuf> = ops_files(&corpus_dir().join("seeds"))
        .into_iter()
        .take(6)
        .collect();
    assert_eq!(seeds.len(), 6);
    for (i, seed) in seeds.iter().enumerate() {
        let out = pinfuzz(&[
            "fmt",
            "--to-bytes",
            path(&raw.join(format!("seed-{i}"))),
            path(seed),
        ]);
        assert!(out.status.success(), "{}", text(&out));
    }
    // A duplicate input, as fuzzers keep them.
    fs::copy(raw.join("seed-0"), raw.join("copy-of-0")).expect("copy");

    let imported = tmp.path().join("imported");
    let out = pinfuzz(&["corpus", "import", path(&raw), "--into", path(&imported)]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("7 inputs, 6 new, 1 duplicates, 0 empty"),
        "{}",
        text(&out)
    );
    let mut got: Vec<String> = ops_files(&imported)
        .iter()
        .map(|p| fs::read_to_string(p).expect("imported file"))
        .collect();
    let mut want: Vec<String> = seeds
        .iter()
        .map(|p| fs::read_to_string(p).expect("seed"))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(
        got, want,
        "bytes → text gives the seeds back, comments included"
    );

    // Merging the seeds into the imported corpus adds nothing (same texts).
    let seed_dir = tmp.path().join("seeds");
    fs::create_dir_all(&seed_dir).expect("mkdir");
    for seed in &seeds {
        fs::copy(seed, seed_dir.join(seed.file_name().expect("name"))).expect("copy");
    }
    let out = pinfuzz(&[
        "corpus",
        "merge",
        path(&seed_dir),
        "--into",
        path(&imported),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("6 programs read (0 repaired), 0 new, 6 duplicates"),
        "{}",
        text(&out)
    );

    // Minimize without deleting: every file is either kept or dropped.
    let out = pinfuzz(&["corpus", "minimize", path(&imported), "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let decided = stdout
        .lines()
        .filter(|l| l.starts_with("keep ") || l.starts_with("drop "))
        .count();
    assert_eq!(decided, 6, "{}", text(&out));
    assert_eq!(ops_files(&imported).len(), 6, "--dry-run deletes nothing");
}
