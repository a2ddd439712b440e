//! The nightly's persistent findings: one directory per title, across
//! nights, with a status that later nights update.
//!
//! `<state>/findings/<slug>-<hash>/` (the name `finding::dir_name` gives the
//! title, so the same bug found by two kernels, shards or nights lands in
//! one place) holds the finding's files as it was first recorded
//! (`program.ops`, `report.txt`, `report.json`, `input.bin` when there was
//! one) and `status.json` ([`Status`]): first and last night it was seen,
//! how often, where, and whether it still reproduces. Every write is atomic
//! (`finding::write_atomic`; a new directory is built aside and renamed).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::finding::{dir_name, write_atomic};

/// Whether a finding still reproduces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    /// It reproduced when last checked (or was just found).
    Open,
    /// It did not reproduce when re-run: fixed (or it was flaky).
    Fixed,
}

/// Where a finding comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Source {
    /// A differential run against a kernel (`pinfuzz fuzz`).
    Kernel {
        /// Kernel name (`debian-6.12`).
        kernel: String,
        /// Helper module fault mode the guest ran with.
        fault: u32,
    },
    /// A model-only fuzz target (libFuzzer).
    Model {
        /// Target name (`model`, `text_roundtrip`).
        target: String,
    },
}

/// `status.json` of a finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The title (what deduplicates).
    pub title: String,
    /// Where it was first found (re-runs use this).
    pub source: Source,
    /// Every place it was found (kernel names or target names).
    pub seen_in: BTreeSet<String>,
    /// Night (run id) it was first found.
    pub first_seen: String,
    /// Night it was last found by fuzzing.
    pub last_seen: String,
    /// Nights that found it.
    pub nights_seen: u64,
    /// Programs or inputs that hit it, summed over nights.
    pub hits: u64,
    /// Open or fixed.
    pub health: Health,
    /// Night it was last re-run, and what happened.
    pub last_checked: Option<String>,
    /// Night it was marked fixed.
    pub fixed_on: Option<String>,
    /// Times it was fixed and came back.
    pub regressions: u64,
}

/// A finding found tonight, to merge into the state.
#[derive(Clone, Debug)]
pub struct Found {
    /// Title.
    pub title: String,
    /// Where.
    pub source: Source,
    /// A directory holding the finding's files (copied for a new title).
    pub files: PathBuf,
    /// Hits tonight.
    pub hits: u64,
}

/// What merging one found finding did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merged {
    /// First time this title was seen.
    New,
    /// Seen before and open.
    Known,
    /// Seen before, marked fixed, found again.
    Regressed,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct State {
    dir: PathBuf,
}

impl State {
    /// Open (create) `<dir>/findings`.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn open(dir: &Path) -> Result<State> {
        let findings = dir.join("findings");
        fs::create_dir_all(&findings).with_context(|| {
            format!("create the nightly state directory {}", findings.display())
        })?;
        Ok(State {
            dir: dir.to_path_buf(),
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of a title.
    pub fn path_for(&self, title: &str) -> PathBuf {
        self.dir.join("findings").join(dir_name(title))
    }

    /// Every finding, sorted by directory name.
    ///
    /// # Errors
    /// A `status.json` that cannot be read or parsed (named).
    pub fn list(&self) -> Result<Vec<(PathBuf, Status)>> {
        let root = self.dir.join("findings");
        let mut out = Vec::new();
        for entry in fs::read_dir(&root).with_context(|| format!("read {}", root.display()))? {
            let path = entry?.path();
            let file = path.join("status.json");
            if !file.is_file() {
                continue;
            }
            let text =
                fs::read_to_string(&file).with_context(|| format!("read {}", file.display()))?;
            let status: Status =
                serde_json::from_str(&text).with_context(|| format!("parse {}", file.display()))?;
            out.push((path, status));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Write a finding's status.
    ///
    /// # Errors
    /// The write fails.
    pub fn save(&self, dir: &Path, status: &Status) -> Result<()> {
        write_atomic(
            &dir.join("status.json"),
            serde_json::to_string_pretty(status)?.as_bytes(),
        )
    }

    /// Merge a finding found on night `night`.
    ///
    /// # Errors
    /// Files cannot be copied or written.
    pub fn merge(&self, found: &Found, night: &str) -> Result<(Merged, PathBuf)> {
        let path = self.path_for(&found.title);
        let place = place(&found.source);
        if let Ok(text) = fs::read_to_string(path.join("status.json")) {
            let mut status: Status = serde_json::from_str(&text)
                .with_context(|| format!("parse {}", path.join("status.json").display()))?;
            let merged = if status.health == Health::Fixed {
                status.health = Health::Open;
                status.fixed_on = None;
                status.regressions += 1;
                Merged::Regressed
            } else {
                Merged::Known
            };
            if status.last_seen != night {
                status.nights_seen += 1;
            }
            status.last_seen = night.to_string();
            status.hits += found.hits;
            status.seen_in.insert(place);
            self.save(&path, &status)?;
            return Ok((merged, path));
        }
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-finding-")
            .tempdir_in(self.dir.join("findings"))
            .context("create a temporary finding directory")?;
        for entry in
            fs::read_dir(&found.files).with_context(|| format!("read {}", found.files.display()))?
        {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                fs::copy(entry.path(), tmp.path().join(entry.file_name()))
                    .with_context(|| format!("copy {} into the state", entry.path().display()))?;
            }
        }
        let status = Status {
            title: found.title.clone(),
            source: found.source.clone(),
            seen_in: BTreeSet::from([place]),
            first_seen: night.to_string(),
            last_seen: night.to_string(),
            nights_seen: 1,
            hits: found.hits,
            health: Health::Open,
            last_checked: None,
            fixed_on: None,
            regressions: 0,
        };
        fs::write(
            tmp.path().join("status.json"),
            serde_json::to_string_pretty(&status)?,
        )?;
        let kept = tmp.keep();
        fs::rename(&kept, &path)
            .with_context(|| format!("rename the finding into {}", path.display()))?;
        Ok((Merged::New, path))
    }
}

/// The name of where a finding was found.
pub fn place(source: &Source) -> String {
    match source {
        Source::Kernel { kernel, fault: 0 } => kernel.clone(),
        Source::Kernel { kernel, fault } => format!("{kernel} fault={fault}"),
        Source::Model { target } => format!("fuzz target {target}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(dir: &Path, title: &str, kernel: &str) -> Found {
        let files = dir.join(format!("files-{kernel}"));
        fs::create_dir_all(&files).expect("mkdir");
        fs::write(files.join("program.ops"), "pinfuzz v1\n").expect("write");
        Found {
            title: title.into(),
            source: Source::Kernel {
                kernel: kernel.into(),
                fault: 0,
            },
            files,
            hits: 2,
        }
    }

    #[test]
    fn titles_deduplicate_across_kernels_and_nights_and_fixed_ones_regress() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state = State::open(&tmp.path().join("state")).expect("open");
        let t = "diverge: pin_user_pages(write) on anon-private: refcount";
        let (m, path) = state
            .merge(&found(tmp.path(), t, "debian-6.12"), "n1")
            .expect("merge");
        assert_eq!(m, Merged::New);
        assert!(path.join("program.ops").is_file());
        let (m, _) = state
            .merge(&found(tmp.path(), t, "debian-6.1"), "n1")
            .expect("merge");
        assert_eq!(m, Merged::Known);
        let (m, _) = state
            .merge(&found(tmp.path(), t, "debian-6.12"), "n2")
            .expect("merge");
        assert_eq!(m, Merged::Known);
        let list = state.list().expect("list");
        assert_eq!(list.len(), 1, "one directory per title");
        let mut status = list[0].1.clone();
        assert_eq!(status.hits, 6);
        assert_eq!(status.nights_seen, 2);
        assert_eq!(status.seen_in.len(), 2);
        status.health = Health::Fixed;
        status.fixed_on = Some("n2".into());
        state.save(&list[0].0, &status).expect("save");
        let (m, _) = state
            .merge(&found(tmp.path(), t, "debian-6.12"), "n3")
            .expect("merge");
        assert_eq!(m, Merged::Regressed);
        let status = &state.list().expect("list")[0].1;
        assert_eq!((status.health, status.regressions), (Health::Open, 1));
    }
}
