//! The model-only fuzz targets in the nightly: libFuzzer binaries built by
//! `cargo fuzz build`, run for a budget without stopping at a crash, their
//! raw corpora seeded from text and merged afterwards.
//!
//! A crash does not end a target's run: libFuzzer saves it under the
//! artifact prefix (`crash-*`, `timeout-*`, `oom-*`) and is started again
//! on the same corpus with the time that is left ([`run_target`]) — what
//! OSS-Fuzz's long runs do, and what a nightly needs to see more than its
//! first bug.

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
    /// Executions, summed over the runs.
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
    /// libFuzzer runs (one more after each crash).
    pub runs: u32,
    /// The last libFuzzer run's exit status (`None`: killed at the deadline).
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

/// Most restarts after crashes in one run: past this the target crashes
/// on its own corpus and fuzzing it further is pointless.
const MAX_RESTARTS: u32 = 50;

/// Run `bin` (target `target`) for `budget` seconds on `corpus`, writing
/// artifacts under `artifacts` and its output to `log`. libFuzzer runs in
/// its normal mode and is started again after each crash with the time
/// that is left: fork mode (`-fork=1 -ignore_crashes=1`) would also go on
/// past crashes, but replays the whole corpus at every job, which costs
/// most of a short budget once the corpus has a few thousand inputs.
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
    fs::File::create(log).with_context(|| format!("create the log {}", log.display()))?;
    let t0 = Instant::now();
    let mut totals = RunStats::default();
    let mut exit = None;
    let mut part = 0u32;
    loop {
        let left = Duration::from_secs(budget).saturating_sub(t0.elapsed());
        if left < Duration::from_secs(2) || part > MAX_RESTARTS {
            break;
        }
        let offset = fs::metadata(log).map_or(0, |m| m.len());
        let log_file = fs::OpenOptions::new()
            .append(true)
            .open(log)
            .with_context(|| format!("open the log {}", log.display()))?;
        let mut child = Command::new(bin)
            .arg(format!("-max_total_time={}", left.as_secs()))
            // A single model input takes milliseconds; 25 s is a hang.
            .arg("-timeout=25")
            .arg("-rss_limit_mb=2560")
            .arg(format!(
                "-seed={}",
                (seed.wrapping_add(u64::from(part)) & 0x7fff_ffff).max(1)
            ))
            .arg("-print_final_stats=1")
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg(corpus)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        // libFuzzer stops itself at -max_total_time; the deadline only
        // guards against one that does not.
        let deadline = Instant::now() + left + Duration::from_secs(120);
        exit = loop {
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
        let mut text = String::new();
        let mut f = fs::File::open(log).with_context(|| format!("read {}", log.display()))?;
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(offset))?;
        f.read_to_string(&mut text)
            .with_context(|| format!("read {}", log.display()))?;
        let stats = part_stats(&text);
        totals.execs += stats.execs;
        // Coverage only grows within a corpus: the last part's is the run's.
        if stats.cov > 0 {
            totals.cov = stats.cov;
            totals.ft = stats.ft;
        }
        part += 1;
        if exit == Some(0) || exit.is_none() {
            break;
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    let artifacts_now = list_artifacts(artifacts)
        .into_iter()
        .filter(|a| !before_artifacts.contains(a))
        .collect();
    Ok(TargetRun {
        target: target.to_string(),
        budget_s: budget,
        seconds,
        execs: totals.execs,
        execs_per_s: totals.execs as f64 / seconds.max(1e-9),
        cov: totals.cov,
        features: totals.ft,
        corpus_before,
        corpus_after: count_files(corpus),
        artifacts: artifacts_now,
        runs: part,
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
struct RunStats {
    execs: u64,
    cov: u64,
    ft: u64,
}

/// What one libFuzzer run printed: executions from `-print_final_stats`
/// (`stat::number_of_executed_units: N`, also printed after a crash), or the
/// last `#N` status line; coverage from the last status line
/// (`#25419\tDONE   cov: 2896 ft: 12784 corp: 914/63Kb ...`).
fn part_stats(log: &str) -> RunStats {
    let status = log
        .lines()
        .rev()
        .find(|l| l.starts_with('#') && l.contains(" cov: "));
    let field = |line: &str, name: &str| -> u64 {
        line.split_whitespace()
            .skip_while(|w| *w != name)
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let execs = log
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|v| v.trim().parse().ok())
        .or_else(|| {
            status.and_then(|l| {
                l[1..]
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0);
    RunStats {
        execs,
        cov: status.map_or(0, |l| field(l, "cov:")),
        ft: status.map_or(0, |l| field(l, "ft:")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_statistics_parse() {
        let log = "INFO: Seed: 1\n\
                   #1024\tpulse  cov: 100 ft: 200 corp: 10/1Kb exec/s: 512 rss: 50Mb\n\
                   #25419\tDONE   cov: 2896 ft: 12784 corp: 914/63Kb lim: 4096 exec/s: 160 rss: 80Mb\n\
                   Done 25419 runs in 151 second(s)\n\
                   stat::number_of_executed_units: 25420\n\
                   stat::average_exec_per_sec:     168\n";
        assert_eq!(
            part_stats(log),
            RunStats {
                execs: 25420,
                cov: 2896,
                ft: 12784
            }
        );
        // A crash before the final statistics: the last status line counts.
        let crashed = "#77\tNEW    cov: 50 ft: 60 corp: 3/9b lim: 4 exec/s: 0 rss: 40Mb L: 3/3\n==1== ERROR: libFuzzer: deadly signal\n";
        assert_eq!(
            part_stats(crashed),
            RunStats {
                execs: 77,
                cov: 50,
                ft: 60
            }
        );
        assert_eq!(part_stats("nothing\n"), RunStats::default());
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
