//! A text corpus: a directory of canonical `.ops` programs, without
//! duplicates.
//!
//! Two files are duplicates when their programs have the same canonical
//! text (`Display for Program`: comments included, names renumbered,
//! spacing normalized), so a reformatted copy of a program is a duplicate
//! and a copy with a different comment is not. [`TextCorpus`] indexes a
//! directory by canonical text and adds programs to it: every file it
//! writes holds canonical text and is written atomically. Programs without
//! a name of their own (imported fuzzer inputs) are named by content hash.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use sha2::{Digest, Sha256};

use crate::cli::fmt::write_atomic;
use crate::op::Program;

/// The extension of text programs.
pub const EXTENSION: &str = "ops";

/// The file name of a program named by its content: the first 16 hex
/// digits of the SHA-256 of its canonical text, `.ops`.
pub fn content_name(canonical: &str) -> String {
    let digest = Sha256::digest(canonical.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}.{EXTENSION}")
}

/// Every `*.ops` file under `dir` (recursively, hidden entries skipped),
/// sorted by path, so every command visits a corpus in the same order.
///
/// # Errors
///
/// A directory that cannot be read, naming it.
pub fn ops_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    walk(dir, &mut |path| {
        if path.extension().is_some_and(|e| e == EXTENSION) {
            out.push(path.to_path_buf());
        }
    })?;
    out.sort();
    Ok(out)
}

/// Call `visit` on every regular file under `dir`, recursively, skipping
/// entries whose name starts with `.` (editor files, AFL's `.state`).
///
/// # Errors
///
/// A directory that cannot be read, naming it.
pub fn walk(dir: &Path, visit: &mut dyn FnMut(&Path)) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("reading directory {}", dir.display()))?
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("reading directory {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let kind = entry
            .file_type()
            .with_context(|| format!("reading the type of {}", path.display()))?;
        if kind.is_dir() {
            walk(&path, visit)?;
        } else if kind.is_file() {
            visit(&path);
        }
    }
    Ok(())
}

/// A text program as read from a file, with what reading it changed.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The program (valid).
    pub program: Program,
    /// Its canonical text.
    pub canonical: String,
    /// Warnings of the lenient reader (`file:line:col: warning: ...`), empty
    /// when the file read strictly.
    pub warnings: Vec<String>,
}

/// Read a text program: strictly when it is well formed, else leniently
/// (old corpus files still load; every change is a warning).
///
/// # Errors
///
/// A file that cannot be read, naming it.
pub fn load(path: &Path) -> Result<Loaded> {
    let name = path.display().to_string();
    let bytes = fs::read(path).with_context(|| format!("reading {name}"))?;
    let src = String::from_utf8_lossy(&bytes);
    let (program, warnings) = match Program::parse_strict(&src, &name) {
        Ok(program) => (program, Vec::new()),
        Err(_) => {
            let (program, warnings) = Program::parse_lenient(&src, &name);
            (program, warnings.iter().map(ToString::to_string).collect())
        }
    };
    let canonical = program.to_string();
    Ok(Loaded {
        program,
        canonical,
        warnings,
    })
}

/// What [`TextCorpus::add`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Added {
    /// Written to this new file.
    New(PathBuf),
    /// The corpus already holds the same canonical text in this file.
    Duplicate(PathBuf),
}

/// A directory of canonical text programs, indexed by canonical text.
#[derive(Debug)]
pub struct TextCorpus {
    dir: PathBuf,
    /// Canonical text → the file holding it.
    by_text: BTreeMap<String, PathBuf>,
}

impl TextCorpus {
    /// Open `dir` (created if missing) and index the `*.ops` files in it.
    /// Files that are not canonical are indexed by their canonical text and
    /// left as they are.
    ///
    /// # Errors
    ///
    /// The directory cannot be created or read, or a file in it cannot be
    /// read.
    pub fn open(dir: &Path) -> Result<TextCorpus> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut by_text = BTreeMap::new();
        for path in ops_files(dir)? {
            let loaded = load(&path)?;
            by_text.entry(loaded.canonical).or_insert(path);
        }
        Ok(TextCorpus {
            dir: dir.to_path_buf(),
            by_text,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Distinct programs in the corpus.
    pub fn len(&self) -> usize {
        self.by_text.len()
    }

    /// The corpus holds no program.
    pub fn is_empty(&self) -> bool {
        self.by_text.is_empty()
    }

    /// The file holding this canonical text, if any.
    pub fn find(&self, canonical: &str) -> Option<&Path> {
        self.by_text.get(canonical).map(PathBuf::as_path)
    }

    /// Add `program` unless the corpus holds its canonical text already.
    /// The file is named `name` (a file name, `.ops` appended when missing)
    /// when that name is free, `<stem>-<hash>.ops` when another program has
    /// it, and by content hash when `name` is `None`.
    ///
    /// # Errors
    ///
    /// The file cannot be written.
    pub fn add(&mut self, program: &Program, name: Option<&str>) -> Result<Added> {
        let canonical = program.to_string();
        if let Some(existing) = self.by_text.get(&canonical) {
            return Ok(Added::Duplicate(existing.clone()));
        }
        let hashed = content_name(&canonical);
        let file_name = match name {
            None => hashed,
            Some(name) => {
                let stem = name.strip_suffix(".ops").unwrap_or(name);
                let plain = format!("{stem}.{EXTENSION}");
                if self.dir.join(&plain).exists() {
                    format!("{stem}-{hashed}")
                } else {
                    plain
                }
            }
        };
        let path = self.dir.join(file_name);
        write_atomic(&path, canonical.as_bytes())?;
        self.by_text.insert(canonical, path.clone());
        Ok(Added::New(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROGRAM: &str = "pinfuzz v1\nm0 = mmap(anon-private, pages=1)\ntouch(m0[0..1], write)\n";
    const GOLDEN_NAME: &str = "7262a844c686d576.ops";

    #[test]
    fn content_names_are_stable_hex_of_the_canonical_text() {
        let p = Program::parse_strict(PROGRAM, "t.ops").expect("parses");
        let name = content_name(&p.to_string());
        assert_eq!(name.len(), 16 + 4);
        assert!(name[..16].chars().all(|c| c.is_ascii_hexdigit()));
        // SHA-256 of the canonical text (`printf '%s' TEXT | sha256sum`): a
        // change here renames every imported corpus file.
        assert_eq!(name, GOLDEN_NAME);
        assert_ne!(name, content_name(PROGRAM), "the canonical text is hashed");
    }

    #[test]
    fn add_skips_duplicates_and_never_overwrites_a_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut corpus = TextCorpus::open(dir.path()).expect("open");
        let p = Program::parse_strict(PROGRAM, "t.ops").expect("parses");
        let Added::New(first) = corpus.add(&p, Some("seed")).expect("add") else {
            panic!("first add is new")
        };
        assert_eq!(first, dir.path().join("seed.ops"));
        assert_eq!(fs::read_to_string(&first).expect("written"), p.to_string());
        assert_eq!(
            corpus.add(&p, Some("other")).expect("add"),
            Added::Duplicate(first.clone())
        );
        let mut q = p.clone();
        q.comments.push(" another program".into());
        let Added::New(second) = corpus.add(&q, Some("seed.ops")).expect("add") else {
            panic!("a different program is new")
        };
        let name = second
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with("seed-") && name.ends_with(".ops"),
            "{name}"
        );
        // Reopening indexes what was written.
        let again = TextCorpus::open(dir.path()).expect("reopen");
        assert_eq!(again.len(), 2);
        assert_eq!(again.find(&q.to_string()), Some(second.as_path()));
    }
}
