//! The model-only fuzz targets in the nightly: libFuzzer binaries built by
//! `cargo fuzz build`, run for a budget without stopping at a crash, their
//! raw corpora seeded from text and merged afterwards.
//!
//! A target runs in libFuzzer's fork mode (`-fork=1 -ignore_crashes=1
//! -ignore_timeouts=1 -ignore_ooms=1`): a crash ends a child, not the run,
//! and is saved under the artifact prefix (`crash-*`, `timeout-*`,
//! `oom-*`) while fuzzing goes on — what OSS-Fuzz's long runs do, and what
//! a nightly needs to see more than its first bug.

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::corpus::store::{content_name, walk};
use crate::finding::write_atomic;
use crate::op::Program;
use crate::program::encode;

/// What a target's run did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TargetRun {
    /// Target name.
    pub target: String,
    /// Budget given, seconds.
    pub budget_s: u64,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Executions (libFuzzer's last `#N` in fork mode).
    pub execs: u64,
    /// Executions per second over the run.
    pub execs_per_s: f64,
    /// Edge coverage (`cov:`).
    pub cov: u64,
    /// Features (`ft:`).
    pub features: u64,
    /// Raw corpus inputs before the run.
    pub corpus_before: usize,
    /// Raw corpus inputs after the run and the merge.
    pub corpus_after: usize,
    /// Artifacts written tonight (crash-, timeout-, oom-).
    pub artifacts: Vec<PathBuf>,
    /// libFuzzer's exit status (`None`: killed at the deadline).
    pub exit: Option<i32>,
    /// The run's log.
    pub log: PathBuf,
}

/// Files directly in `dir` (0 if it does not exist).
pub fn count_files(dir: &Path) -> usize {
    fs::read_dir(dir).map_or(0, |d| {
        d.flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .count()
    })
}

/// Write every text program under `sources` into the raw corpus `dir` as
/// codec bytes named by content hash (comments dropped: the codec would
/// carry them as bytes mutations waste time on); how many were new.
///
/// # Errors
/// A source that cannot be walked, a file that cannot be written.
pub fn seed_from_text(dir: &Path, sources: &[PathBuf]) -> Result<usize> {
    fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut files = Vec::new();
    for source in sources.iter().filter(|s| s.exists()) {
        walk(source, &mut |p| {
            if p.extension().is_some_and(|e| e == "ops") {
                files.push(p.to_path_buf());
            }
        })?;
    }
    let mut new = 0;
    for file in files {
        let text = fs::read_to_string(&file).with_context(|| format!("read {}", file.display()))?;
        let (mut program, _warnings) = Program::parse_lenient(&text, &file.display().to_string());
        program.comments.clear();
        for step in &mut program.steps {
            step.comments.clear();
        }
        if program.steps.is_empty() {
            continue;
        }
        // The text's content name without `.ops`: these files are bytes.
        let name = content_name(&program.to_string());
        let out = dir.join(name.trim_end_matches(".ops"));
        if !out.exists() {
            write_atomic(&out, &encode(&program))?;
            new += 1;
        }
    }
    Ok(new)
}

/// Run `bin` (target `target`) for `budget` seconds on `corpus`, writing
/// artifacts under `artifacts` and its output to `log`.
///
/// # Errors
/// The binary cannot be started, the log cannot be written.
pub fn run_target(
    bin: &Path,
    target: &str,
    corpus: &Path,
    artifacts: &Path,
    budget: u64,
    seed: u64,
    log: &Path,
) -> Result<TargetRun> {
    fs::create_dir_all(corpus).with_context(|| format!("create {}", corpus.display()))?;
    fs::create_dir_all(artifacts).with_context(|| format!("create {}", artifacts.display()))?;
    let before_artifacts: Vec<PathBuf> = list_artifacts(artifacts);
    let corpus_before = count_files(corpus);
    let log_file =
        fs::File::create(log).with_context(|| format!("create the log {}", log.display()))?;
    let t0 = Instant::now();
    let mut child = Command::new(bin)
        .arg("-fork=1")
        .arg("-ignore_crashes=1")
        .arg("-ignore_timeouts=1")
        .arg("-ignore_ooms=1")
        .arg(format!("-max_total_time={budget}"))
        // A single model input takes milliseconds; 25 s is a hang.
        .arg("-timeout=25")
        .arg("-rss_limit_mb=2560")
        .arg(format!("-seed={}", seed.max(1) & 0x7fff_ffff))
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg(corpus)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    // libFuzzer stops itself at -max_total_time; the deadline only guards
    // against a fork-mode parent that does not.
    let deadline = t0 + Duration::from_secs(budget + 120);
    let exit = loop {
        if let Some(status) = child.try_wait()? {
            break status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let seconds = t0.elapsed().as_secs_f64();
    let mut text = String::new();
    fs::File::open(log)
        .and_then(|mut f| f.read_to_string(&mut text))
        .with_context(|| format!("read {}", log.display()))?;
    let stats = last_fork_stats(&text).unwrap_or_default();
    let artifacts_now = list_artifacts(artifacts)
        .into_iter()
        .filter(|a| !before_artifacts.contains(a))
        .collect();
    Ok(TargetRun {
        target: target.to_string(),
        budget_s: budget,
        seconds,
        execs: stats.execs,
        execs_per_s: stats.execs as f64 / seconds.max(1e-9),
        cov: stats.cov,
        features: stats.ft,
        corpus_before,
        corpus_after: count_files(corpus),
        artifacts: artifacts_now,
        exit,
        log: log.to_path_buf(),
    })
}

/// Merge `corpus` into a fresh directory with `-merge=1` (keeps the inputs
/// that add edge coverage or features) and put it in place; inputs after.
///
/// # Errors
/// libFuzzer fails or the directories cannot be swapped.
pub fn merge_corpus(bin: &Path, corpus: &Path, log: &Path) -> Result<usize> {
    let merged = corpus.with_extension("merging");
    let old = corpus.with_extension("old");
    let _ = fs::remove_dir_all(&merged);
    let _ = fs::remove_dir_all(&old);
    fs::create_dir_all(&merged)?;
    let log_file = fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    let status = Command::new(bin)
        .arg("-merge=1")
        .arg("-rss_limit_mb=2560")
        .arg("-timeout=25")
        .arg(&merged)
        .arg(corpus)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .status()
        .with_context(|| format!("run {} -merge=1", bin.display()))?;
    if !status.success() || count_files(&merged) == 0 {
        let _ = fs::remove_dir_all(&merged);
        anyhow::bail!(
            "{} -merge=1 {} failed ({status}); the corpus is left as it was (log: {})",
            bin.display(),
            corpus.display(),
            log.display()
        );
    }
    fs::rename(corpus, &old)?;
    fs::rename(&merged, corpus)?;
    let _ = fs::remove_dir_all(&old);
    Ok(count_files(corpus))
}

/// Crash, timeout and OOM artifacts in `dir`, sorted.
pub fn list_artifacts(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name().is_some_and(|n| {
                        let n = n.to_string_lossy();
                        ["crash-", "timeout-", "oom-", "leak-"]
                            .iter()
                            .any(|k| n.starts_with(k))
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[derive(Debug, Default, PartialEq)]
struct ForkStats {
    execs: u64,
    cov: u64,
    ft: u64,
}

/// The last status line of a fork-mode run:
/// `#12345: cov: 678 ft: 901 corp: 23 exec/s: 45 oom/timeout/crash: 0/0/1 time: 60s job: 3 dft_time: 0`.
fn last_fork_stats(log: &str) -> Option<ForkStats> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.starts_with('#') && l.contains(": cov: "))?;
    let execs = line[1..].split(':').next()?.trim().parse().ok()?;
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .skip_while(|w| *w != name)
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some(ForkStats {
        execs,
        cov: field("cov:"),
        ft: field("ft:"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_mode_status_lines_parse() {
        let log = "INFO: Seed: 1\n\
                   #1024: cov: 100 ft: 200 corp: 10 exec/s: 50 oom/timeout/crash: 0/0/0 time: 2s job: 1 dft_time: 0\n\
                   #99811: cov: 5714 ft: 21533 corp: 2210 exec/s: 612 oom/timeout/crash: 0/0/1 time: 150s job: 14 dft_time: 0\n\
                   INFO: exiting: 0 time: 151s\n";
        assert_eq!(
            last_fork_stats(log),
            Some(ForkStats {
                execs: 99811,
                cov: 5714,
                ft: 21533
            })
        );
        assert_eq!(last_fork_stats("INFO: nothing\n"), None);
    }

    #[test]
    fn text_seeds_become_comment_free_codec_inputs_once() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let text = tmp.path().join("text");
        fs::create_dir_all(&text).expect("mkdir");
        fs::write(
            text.join("a.ops"),
            "# a comment\npinfuzz v1 thp=never\n# step comment\nm0 = mmap(anon-private, pages=1, prot=rw)\ntouch(m0[0..1], write)\n",
        )
        .expect("write");
        let raw = tmp.path().join("raw");
        assert_eq!(
            seed_from_text(&raw, std::slice::from_ref(&text)).expect("seed"),
            1
        );
        assert_eq!(
            seed_from_text(&raw, &[text]).expect("seed"),
            0,
            "idempotent"
        );
        let file = fs::read_dir(&raw)
            .expect("read")
            .next()
            .expect("one file")
            .expect("entry")
            .path();
        let program = crate::fuzzing::program_of(&fs::read(file).expect("read"));
        assert_eq!(program.steps.len(), 2);
        assert!(program.comments.is_empty() && program.steps[0].comments.is_empty());
    }
}
