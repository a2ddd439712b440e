//! Importing fuzzer inputs: raw bytes become canonical text programs.
//!
//! libFuzzer keeps a corpus as a flat directory of inputs, AFL++ as
//! `queue/`, `crashes/` and `hangs/` directories inside one directory per
//! fuzzer instance (next to bookkeeping files such as `fuzzer_stats`), and
//! cargo-fuzz writes crash artifacts (`crash-<sha1>`) to
//! `fuzz/artifacts/<target>/`. [`inputs`] finds the inputs in any of these
//! (or takes a file as it is); [`program_of_input`] turns one into the
//! program the fuzz targets ran (`fuzzing::program_of`, the stable codec
//! with the fuzzers' step limit), or reads it as text when it is a text
//! program already. [`import`] adds the programs to a [`TextCorpus`] under
//! their content hash, skipping programs it holds already and programs
//! without a step (inputs too short to decode to anything).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use super::store::{Added, TextCorpus, walk};
use crate::fuzzing::program_of;
use crate::op::Program;

/// Files in an AFL++ instance directory that are not inputs.
const AFL_SUBDIRS: [&str; 3] = ["queue", "crashes", "hangs"];

/// The input files under `path`: the file itself; for an AFL++ instance
/// directory (one with a `queue/`) the files of `queue/`, `crashes/` and
/// `hangs/` (not `README.txt`); for an AFL++ output directory (`-o`) every
/// instance in it; for any other directory (libFuzzer corpus, cargo-fuzz
/// artifacts) every file under it. Hidden entries are skipped; the list is
/// sorted.
///
/// # Errors
///
/// A path that does not exist or a directory that cannot be read.
pub fn inputs(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let instances: Vec<PathBuf> = if path.join("queue").is_dir() {
        vec![path.to_path_buf()]
    } else {
        let mut dirs: Vec<PathBuf> = fs::read_dir(path)
            .with_context(|| format!("reading directory {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("queue").is_dir())
            .collect();
        dirs.sort();
        dirs
    };
    if instances.is_empty() {
        walk(path, &mut |p| out.push(p.to_path_buf()))?;
    } else {
        for instance in instances {
            for sub in AFL_SUBDIRS {
                let dir = instance.join(sub);
                if dir.is_dir() {
                    walk(&dir, &mut |p| {
                        if p.file_name().is_none_or(|n| n != "README.txt") {
                            out.push(p.to_path_buf());
                        }
                    })?;
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// How an input was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// Raw fuzzer bytes, through the codec.
    Bytes,
    /// A text program (`pinfuzz v1` header after comments), read leniently.
    Text,
}

/// The program an input stands for, and how it was read. Text programs are
/// recognized like `pinfuzz repro` does: valid UTF-8 whose first line that
/// is not blank or a comment starts with `pinfuzz `.
pub fn program_of_input(bytes: &[u8]) -> (Program, Form) {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let header = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'));
        if header.is_some_and(|l| l.starts_with("pinfuzz ")) {
            let (program, _warnings) = Program::parse_lenient(text, "input");
            return (program, Form::Text);
        }
    }
    (program_of(bytes), Form::Bytes)
}

/// What happened to one input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Imported {
    /// A new program, written to this file.
    New(PathBuf),
    /// The corpus holds the same program in this file.
    Duplicate(PathBuf),
    /// The input decodes to a program without steps.
    Empty,
}

/// Counts of an import.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportStats {
    /// Inputs read.
    pub inputs: usize,
    /// New programs written.
    pub new: usize,
    /// Inputs whose program the corpus held already.
    pub duplicates: usize,
    /// Inputs without a step.
    pub empty: usize,
}

/// Import every input under `sources` into `corpus`, calling `report` for
/// each (input path, outcome).
///
/// # Errors
///
/// A source or input that cannot be read, or a file that cannot be
/// written.
pub fn import(
    corpus: &mut TextCorpus,
    sources: &[PathBuf],
    report: &mut dyn FnMut(&Path, &Imported),
) -> Result<ImportStats> {
    let mut stats = ImportStats::default();
    for source in sources {
        for input in inputs(source)? {
            let bytes = fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            stats.inputs += 1;
            let (program, _) = program_of_input(&bytes);
            let outcome = if program.steps.is_empty() {
                stats.empty += 1;
                Imported::Empty
            } else {
                match corpus.add(&program, None)? {
                    Added::New(path) => {
                        stats.new += 1;
                        Imported::New(path)
                    }
                    Added::Duplicate(path) => {
                        stats.duplicates += 1;
                        Imported::Duplicate(path)
                    }
                }
            };
            report(&input, &outcome);
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::encode;

    fn program(text: &str) -> Program {
        Program::parse_strict(text, "t.ops").expect("test program parses")
    }

    const A: &str = "pinfuzz v1\nm0 = mmap(anon-private, pages=2, prot=rw)\n\
                     touch(m0[0..2], write)\np0 = pin_user_pages(m0[0..1], write)\n";
    const B: &str = "pinfuzz v1 thp=never\nm0 = mmap(memfd-shared, pages=1, prot=rw)\n\
                     touch(m0[0..1], read)\n";

    #[test]
    fn libfuzzer_dirs_afl_queues_and_artifacts_become_canonical_text() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        let (a, b) = (program(A), program(B));
        // A libFuzzer corpus: two inputs, one a duplicate, plus a text seed.
        let libfuzzer = root.join("libfuzzer");
        fs::create_dir_all(&libfuzzer).expect("mkdir");
        fs::write(libfuzzer.join("1"), encode(&a)).expect("write");
        fs::write(libfuzzer.join("2"), encode(&a)).expect("write");
        fs::write(libfuzzer.join("3.ops"), B).expect("write");
        fs::write(libfuzzer.join("empty"), b"").expect("write");
        // An AFL++ output directory: bookkeeping files must be ignored.
        let afl = root.join("afl-out");
        for dir in [
            "main/queue",
            "main/crashes",
            "main/.synced",
            "secondary/queue",
        ] {
            fs::create_dir_all(afl.join(dir)).expect("mkdir");
        }
        fs::write(afl.join("main/fuzzer_stats"), "execs_done : 1\n").expect("write");
        fs::write(afl.join("main/crashes/README.txt"), "notes").expect("write");
        fs::write(afl.join("main/.synced/x"), encode(&a)).expect("write");
        fs::write(afl.join("main/queue/id:000000,orig:seed"), encode(&b)).expect("write");
        fs::write(afl.join("secondary/queue/id:000001"), encode(&a)).expect("write");

        let found = inputs(&afl).expect("inputs");
        assert_eq!(found.len(), 2, "{found:?}");

        let out = root.join("corpus");
        let mut corpus = TextCorpus::open(&out).expect("open");
        let mut seen = Vec::new();
        let stats = import(
            &mut corpus,
            &[libfuzzer.clone(), afl.clone()],
            &mut |p, o| {
                seen.push((p.to_path_buf(), o.clone()));
            },
        )
        .expect("import");
        assert_eq!(
            stats,
            ImportStats {
                inputs: 6,
                new: 2,
                duplicates: 3,
                empty: 1
            }
        );
        assert_eq!(seen.len(), 6);
        let files = super::super::store::ops_files(&out).expect("list");
        assert_eq!(files.len(), 2);
        for file in &files {
            let text = fs::read_to_string(file).expect("read");
            let p = program(&text);
            assert_eq!(p.to_string(), text, "canonical");
            let name = file
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            assert_eq!(name, super::super::store::content_name(&text));
        }
        // Importing again changes nothing.
        let again = import(&mut corpus, &[libfuzzer, afl], &mut |_, _| {}).expect("import");
        assert_eq!(again.new, 0);
        assert_eq!(again.duplicates, 5);
    }

    #[test]
    fn a_crash_artifact_file_is_its_own_input() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let artifact = tmp.path().join("crash-0123");
        let a = program(A);
        fs::write(&artifact, encode(&a)).expect("write");
        assert_eq!(inputs(&artifact).expect("inputs"), vec![artifact.clone()]);
        let (p, form) = program_of_input(&fs::read(&artifact).expect("read"));
        assert_eq!((p, form), (a, Form::Bytes));
        let (t, form) = program_of_input(B.as_bytes());
        assert_eq!((t, form), (program(B), Form::Text));
    }
}
