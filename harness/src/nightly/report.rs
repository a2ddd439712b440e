//! The nightly's report: one struct, written as JSON (for machines and the
//! CI summary) and as Markdown (for people).

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use super::libfuzzer::TargetRun;
use super::recheck::{Rechecked, Verdict};
use super::state::Health;
use crate::campaign::CampaignStats;

/// One kernel's campaign.
#[derive(Clone, Debug, Serialize)]
pub struct KernelRun {
    /// Kernel name.
    pub kernel: String,
    /// `uname -r`.
    pub release: String,
    /// Budget given, seconds.
    pub budget_s: u64,
    /// Seconds until the first program finished (kernel provisioning,
    /// guest agent build, boot).
    pub warmup_s: f64,
    /// What the campaign counted.
    pub stats: CampaignStats,
    /// Steps per second after the first program (boots excluded).
    pub steps_per_s: f64,
    /// Model-coverage elements of the programs it ran.
    pub coverage_elements: usize,
    /// Of its programs, those added to the text corpus (new elements).
    pub corpus_added: usize,
    /// The campaign failed to run (the message), if it did.
    pub error: Option<String>,
}

/// A finding as the report lists it.
#[derive(Clone, Debug, Serialize)]
pub struct Listed {
    /// Title.
    pub title: String,
    /// Where it was found tonight.
    pub place: String,
    /// Its directory in the state.
    pub dir: PathBuf,
    /// Hits tonight.
    pub hits: u64,
    /// Steps of its program before and after minimization, if minimized.
    pub steps: Option<(usize, usize)>,
}

/// The text corpus before and after tonight's merge and prune.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CorpusSummary {
    /// Directory.
    pub dir: PathBuf,
    /// Programs before.
    pub programs_before: usize,
    /// Model-coverage elements before.
    pub elements_before: usize,
    /// Programs imported from fuzzer corpora and campaigns (new texts).
    pub imported: usize,
    /// Programs after pruning.
    pub programs_after: usize,
    /// Elements after pruning (= before pruning: pruning keeps them all).
    pub elements_after: usize,
    /// Programs the prune dropped.
    pub dropped: usize,
}

/// The whole night.
#[derive(Clone, Debug, Serialize)]
pub struct NightlyReport {
    /// Run id (UTC date and time).
    pub night: String,
    /// Started, finished (UTC, RFC 3339).
    pub started: String,
    /// Finished.
    pub finished: String,
    /// Fuzzing budget, seconds.
    pub budget_s: u64,
    /// Wall time of the whole nightly after the build, seconds.
    pub wall_s: f64,
    /// Build time, seconds, when `ci/nightly` passed it.
    pub build_s: Option<f64>,
    /// Campaign seed.
    pub seed: u64,
    /// Shard `I/N`.
    pub shard: String,
    /// Guests per kernel campaign.
    pub jobs: usize,
    /// Kernel and model lanes ran at the same time.
    pub parallel: bool,
    /// Machine cores.
    pub cores: usize,
    /// Kernel campaigns.
    pub kernels: Vec<KernelRun>,
    /// Model fuzz targets.
    pub targets: Vec<TargetRun>,
    /// The text corpus.
    pub corpus: CorpusSummary,
    /// Findings first seen tonight.
    pub new: Vec<Listed>,
    /// Findings seen before and found again tonight.
    pub known: Vec<Listed>,
    /// Fixed findings found again tonight.
    pub regressed: Vec<Listed>,
    /// Known findings re-run tonight.
    pub rechecked: Vec<Rechecked>,
    /// Findings in the state still open after tonight.
    pub open_total: usize,
    /// Findings in the state marked fixed.
    pub fixed_total: usize,
    /// Problems that did not stop the night (a target that failed, …).
    pub problems: Vec<String>,
    /// The exit status: 1 when something new (or regressed) was found.
    pub exit: u8,
}

impl NightlyReport {
    /// Findings re-run tonight that are now fixed (were open).
    pub fn fixed_tonight(&self) -> Vec<&Rechecked> {
        self.rechecked
            .iter()
            .filter(|r| r.was == Health::Open && r.now == Health::Fixed)
            .collect()
    }

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# pinfuzz nightly {}\n", self.night);
        let verdict = if self.exit != 0 {
            format!(
                "**{} new, {} regressed** finding(s)",
                self.new.len(),
                self.regressed.len()
            )
        } else {
            "nothing new".to_string()
        };
        let _ = writeln!(
            s,
            "{verdict}; {} known found again, {} fixed tonight; {} open, {} fixed in the state.\n",
            self.known.len(),
            self.fixed_tonight().len(),
            self.open_total,
            self.fixed_total
        );
        let _ = writeln!(
            s,
            "Budget {} s ({}), wall {:.0} s after the build{}; seed {}, shard {}, {} job(s) per kernel, {} cores; {} → {}.\n",
            self.budget_s,
            if self.parallel {
                "kernel and model lanes side by side"
            } else {
                "lanes one after the other"
            },
            self.wall_s,
            self.build_s
                .map(|b| format!(", build {b:.0} s"))
                .unwrap_or_default(),
            self.seed,
            self.shard,
            self.jobs,
            self.cores,
            self.started,
            self.finished
        );
        if !self.kernels.is_empty() {
            let _ = writeln!(s, "## Kernels (`pinfuzz fuzz`)\n");
            let _ = writeln!(
                s,
                "| kernel | release | budget s | warm-up s | programs | steps | steps/s | matched | poisoned | findings | boots | model coverage | to corpus |"
            );
            let _ = writeln!(
                s,
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            );
            for k in &self.kernels {
                let st = &k.stats;
                let pct = |n: u64| {
                    if st.programs > 0 {
                        100.0 * n as f64 / st.programs as f64
                    } else {
                        0.0
                    }
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {:.0} | {} | {} | {:.1} | {:.1}% | {:.1}% | {} | {} | {} | {} |",
                    k.kernel,
                    k.release,
                    k.budget_s,
                    k.warmup_s,
                    st.programs,
                    st.steps,
                    k.steps_per_s,
                    pct(st.matched),
                    100.0 * st.poisoned_share(),
                    st.findings.values().sum::<u64>(),
                    st.boots,
                    k.coverage_elements,
                    k.corpus_added
                );
                if let Some(e) = &k.error {
                    let _ = writeln!(s, "\n{}: **failed**: {e}\n", k.kernel);
                }
            }
            let _ = writeln!(
                s,
                "\nWarm-up: kernel provisioning, guest agent build and boot, until the first \
                 program; steps/s counts after it. Model coverage: distinct elements of the \
                 coverage signature of the programs run; to corpus: those of them that added \
                 elements to the text corpus."
            );
            s.push('\n');
        }
        if !self.targets.is_empty() {
            let _ = writeln!(
                s,
                "## Model fuzz targets (libFuzzer, restarted after crashes)\n"
            );
            let _ = writeln!(
                s,
                "| target | budget s | execs | execs/s | cov | ft | corpus before → after | runs | artifacts |"
            );
            let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---|---:|---:|");
            for t in &self.targets {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {:.0} | {} | {} | {} → {} | {} | {} |",
                    t.target,
                    t.budget_s,
                    t.execs,
                    t.execs_per_s,
                    t.cov,
                    t.features,
                    t.corpus_before,
                    t.corpus_after,
                    t.runs,
                    t.artifacts.len()
                );
            }
            s.push('\n');
        }
        let c = &self.corpus;
        let _ = writeln!(s, "## Corpus\n");
        let _ = writeln!(
            s,
            "`{}`: {} programs ({} model-coverage elements) before; {} imported; {} dropped by the prune; {} programs ({} elements) after.\n",
            c.dir.display(),
            c.programs_before,
            c.elements_before,
            c.imported,
            c.dropped,
            c.programs_after,
            c.elements_after
        );
        list(&mut s, "New findings", &self.new);
        list(
            &mut s,
            "Regressions (fixed before, found again)",
            &self.regressed,
        );
        list(&mut s, "Known findings found again", &self.known);
        if !self.rechecked.is_empty() {
            let _ = writeln!(s, "## Known findings re-run\n");
            let _ = writeln!(s, "| title | before | result | after |");
            let _ = writeln!(s, "|---|---|---|---|");
            for r in &self.rechecked {
                let result = match &r.verdict {
                    Verdict::Reproduced => "reproduced".to_string(),
                    Verdict::NotReproduced(got) => format!("did not reproduce ({got})"),
                    Verdict::Skipped(why) => format!("skipped: {why}"),
                };
                let _ = writeln!(
                    s,
                    "| {} | {:?} | {} | {:?} |",
                    r.title.replace('|', "\\|"),
                    r.was,
                    result.replace('|', "\\|"),
                    r.now
                );
            }
            s.push('\n');
        }
        if !self.problems.is_empty() {
            let _ = writeln!(s, "## Problems\n");
            for p in &self.problems {
                let _ = writeln!(s, "- {p}");
            }
            s.push('\n');
        }
        s
    }
}

fn list(s: &mut String, heading: &str, items: &[Listed]) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(s, "## {heading}\n");
    for f in items {
        let steps = f
            .steps
            .map(|(a, b)| format!(", {a} → {b} steps"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "- `{}` ({}, {} hit(s){steps}): `{}`",
            f.title,
            f.place,
            f.hits,
            f.dir.display()
        );
    }
    s.push('\n');
}
