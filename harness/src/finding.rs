//! The findings store: one directory per distinct finding, written
//! atomically before anything that could crash runs.
//!
//! A finding lives in `<findings>/<slug>-<hash>/`, the name derived from its
//! stable title, so the same bug found twice lands in the same place (the
//! second time only `hits` grows). The directory holds `program.ops` (the
//! program, minimized once minimization finished), `original.ops` (as
//! found), `input.bin` (the raw fuzzer input, if there was one),
//! `report.txt`, `report.json` and `hits`. Every file is first written into
//! a temporary directory next to it and renamed into place, so a crash of
//! pinfuzz (or of the machine) never leaves a half-written finding.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::op::Program;
use crate::report::Report;

/// A directory of findings.
#[derive(Debug, Clone)]
pub struct FindingStore {
    dir: PathBuf,
}

/// What recording a finding did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The finding's directory.
    pub path: PathBuf,
    /// First time this title was seen.
    pub new: bool,
}

/// The directory name for a title: a readable slug and a hash of the full title.
pub fn dir_name(title: &str) -> String {
    let mut slug: String = title
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while slug.contains("--") {
        slug = slug.replace("--", "-");
    }
    let slug: String = slug.trim_matches('-').chars().take(80).collect();
    format!(
        "{}-{:08x}",
        slug.trim_end_matches('-'),
        crc32fast::hash(title.as_bytes())
    )
}

/// Write `data` to `path` atomically (temporary file in the same directory, then rename).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().context("a file path has a parent")?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("create a temporary file in {}", dir.display()))?;
    tmp.write_all(data)
        .with_context(|| format!("write {}", path.display()))?;
    tmp.as_file().sync_all().ok();
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("rename into {}", path.display()))?;
    Ok(())
}

impl FindingStore {
    /// Open (create) a findings directory.
    pub fn open(dir: &Path) -> Result<FindingStore> {
        fs::create_dir_all(dir)
            .with_context(|| format!("create findings directory {}", dir.display()))?;
        Ok(FindingStore {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory a finding with this title has (or would have).
    pub fn path_for(&self, title: &str) -> PathBuf {
        self.dir.join(dir_name(title))
    }

    /// Record a finding. New: its directory is built in a temporary
    /// directory and renamed into place. Known: only `hits` grows.
    pub fn record(
        &self,
        report: &Report,
        program: &Program,
        raw: Option<&[u8]>,
    ) -> Result<Recorded> {
        let path = self.path_for(&report.title);
        if path.exists() {
            let hits = fs::read_to_string(path.join("hits"))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .unwrap_or(1);
            write_atomic(&path.join("hits"), format!("{}\n", hits + 1).as_bytes())?;
            return Ok(Recorded { path, new: false });
        }
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-finding-")
            .tempdir_in(&self.dir)
            .with_context(|| format!("create a temporary directory in {}", self.dir.display()))?;
        let text = program.to_string();
        fs::write(tmp.path().join("program.ops"), &text)?;
        fs::write(tmp.path().join("original.ops"), &text)?;
        if let Some(raw) = raw {
            fs::write(tmp.path().join("input.bin"), raw)?;
        }
        fs::write(tmp.path().join("report.txt"), report.to_text())?;
        fs::write(
            tmp.path().join("report.json"),
            serde_json::to_string_pretty(report)?,
        )?;
        fs::write(tmp.path().join("hits"), "1\n")?;
        let kept = tmp.keep();
        match fs::rename(&kept, &path) {
            Ok(()) => Ok(Recorded { path, new: true }),
            Err(_) if path.exists() => {
                // Another job recorded the same title first.
                fs::remove_dir_all(&kept).ok();
                Ok(Recorded { path, new: false })
            }
            Err(e) => Err(e).with_context(|| format!("rename finding into {}", path.display())),
        }
    }

    /// Replace a finding's program and report with minimized ones (atomic
    /// per file; `original.ops` stays as found).
    pub fn update_minimized(&self, path: &Path, report: &Report, program: &Program) -> Result<()> {
        write_atomic(&path.join("program.ops"), program.to_string().as_bytes())?;
        write_atomic(&path.join("report.txt"), report.to_text().as_bytes())?;
        write_atomic(
            &path.join("report.json"),
            serde_json::to_string_pretty(report)?.as_bytes(),
        )?;
        Ok(())
    }

    /// Every finding directory, sorted.
    pub fn list(&self) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in
            fs::read_dir(&self.dir).with_context(|| format!("read {}", self.dir.display()))?
        {
            let entry = entry?;
            let name = entry.file_name();
            if entry.path().join("report.json").exists() && !name.to_string_lossy().starts_with('.')
            {
                out.push(entry.path());
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Read a finding's report.
pub fn read_report(dir: &Path) -> Result<Report> {
    let path = dir.join("report.json");
    let text = fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names_are_stable_and_readable() {
        let t = "diverge: pin_user_pages_fast(longterm|write) on memfd-shared: refcount";
        assert_eq!(dir_name(t), dir_name(t));
        assert!(
            dir_name(t).starts_with(
                "diverge-pin-user-pages-fast-longterm-write-on-memfd-shared-refcount-"
            )
        );
        assert_ne!(dir_name(t), dir_name("diverge: fork: refcount"));
    }
}
