//! One guest kept across fuzzer inputs: boot, run an input differentially,
//! record findings, count.
//!
//! A session boots its guest once. Between inputs nothing carries over
//! that could change the next result: the agent forks a fresh runner
//! process per program, and every run ends with the reset check (every
//! process of the program reaped, the helper module's file closed, pins
//! acquired == released, no page held); a failed check is itself a
//! finding. After a crash or a kernel incident the guest is replaced before
//! its next use (`Guest`), so a session survives anything a program does
//! to the kernel.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use reference::Profile;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::config::FrontConfig;
use super::feedback::{self, Seen};
use crate::diff::{DiffRun, Outcome, run_diff};
use crate::finding::FindingStore;
use crate::fuzzing::program_of;
use crate::kernel::{self, Cache};
use crate::op::Program;
use crate::report::{Report, ReportContext};
use crate::vm::Guest;

/// What the fuzzer should do with an input that was not a finding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputVerdict {
    /// Keep it in the corpus if it is new coverage (libFuzzer
    /// `Corpus::Keep`); poisoned runs and empty programs are rejected,
    /// their coverage says nothing reliable.
    pub keep: bool,
    /// Model-state features to report (empty with `PINFUZZ_FEEDBACK=0`).
    pub features: Vec<u64>,
}

/// How one input went.
#[derive(Debug)]
pub enum Ran {
    /// Not a finding (or a known one with `PINFUZZ_IGNORE_KNOWN=1`).
    Done(InputVerdict),
    /// A finding, recorded; the message to panic with.
    Finding(String),
}

/// What a session counted.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FrontStats {
    /// Inputs given to the session.
    pub inputs: u64,
    /// Inputs that decoded to a program without steps (not run).
    pub empty: u64,
    /// Programs run in the guest.
    pub programs: u64,
    /// Steps the kernel executed.
    pub steps: u64,
    /// Programs where kernel and model agreed.
    pub matched: u64,
    /// Poisoned or disturbed programs.
    pub poisoned: u64,
    /// Findings whose title the store had already (counted, not crashes,
    /// with `PINFUZZ_IGNORE_KNOWN=1`).
    pub known: u64,
    /// Findings reported to the fuzzer.
    pub findings: u64,
    /// Distinct model-state features seen.
    pub features: u64,
    /// Guest boots.
    pub boots: u64,
}

/// A fuzzer process's guest and bookkeeping.
pub struct Session {
    cfg: FrontConfig,
    engine: String,
    guest: Guest,
    profile: Profile,
    ctx: ReportContext,
    store: FindingStore,
    stats: FrontStats,
    seen: Seen,
    ready: Instant,
    last_line: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("engine", &self.engine)
            .field("guest", &self.guest)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Provision the kernel if needed, boot the guest, open the findings
    /// store.
    ///
    /// # Errors
    /// The kernel cannot be provisioned, the guest does not boot, the
    /// kernel has no model profile, the store cannot be created.
    pub fn boot(cfg: FrontConfig, engine: &str) -> Result<Session> {
        let t0 = Instant::now();
        let store = FindingStore::open(&cfg.findings)?;
        let cache = Cache::from_env()?;
        let spec = kernel::ensure(&cache, &cfg.kernel)
            .with_context(|| format!("provision kernel {} (PINFUZZ_KERNEL)", cfg.kernel))?;
        let mut guest = Guest::boot(&spec, &cfg.guest)
            .with_context(|| format!("boot a guest with kernel {}", spec.name))?;
        super::sweep::mark_guest_dir(guest.dir());
        let hello = guest.hello()?;
        let profile = Profile::find(&hello.kernel_release)
            .with_context(|| format!("no model profile for kernel {}", hello.kernel_release))?;
        eprintln!(
            "pinfuzz fuzzfront: {engine}: guest {} ready after {:.1}s (model profile {}, \
             module fault mode {}, feedback {}); findings in {}",
            hello.kernel_release,
            t0.elapsed().as_secs_f64(),
            profile.name,
            cfg.guest.fault,
            if cfg.feedback {
                "model states + edges"
            } else {
                "edges only"
            },
            store.dir().display()
        );
        let ctx = ReportContext {
            kernel_release: hello.kernel_release.clone(),
            kernel_name: cfg.kernel.clone(),
            profile: profile.name.to_string(),
            fault_mode: cfg.guest.fault,
            origin: String::new(),
            reproduce: String::new(),
        };
        Ok(Session {
            cfg,
            engine: engine.to_string(),
            guest,
            profile,
            ctx,
            store,
            stats: FrontStats::default(),
            seen: Seen::default(),
            ready: Instant::now(),
            last_line: Instant::now(),
        })
    }

    /// The counts so far.
    pub fn stats(&self) -> FrontStats {
        let mut st = self.stats.clone();
        st.features = self.seen.len() as u64;
        st.boots = u64::from(self.guest.boots());
        st
    }

    /// Run one input.
    ///
    /// # Errors
    /// Host failures only (the guest cannot be restarted, the findings
    /// store cannot be written).
    pub fn run(&mut self, data: &[u8]) -> Result<Ran> {
        self.stats.inputs += 1;
        let program = program_of(data);
        if program.steps.is_empty() {
            self.stats.empty += 1;
            return Ok(Ran::Done(InputVerdict::default()));
        }
        let run = run_diff(&mut self.guest, &program, self.profile, self.cfg.timeout)?;
        self.stats.programs += 1;
        self.stats.steps += run.kernel.steps.len() as u64;
        let poisoned = matches!(
            run.outcome,
            Outcome::Poisoned { .. } | Outcome::Disturbed(_)
        );
        // Features of a poisoned run describe a path the kernel did not
        // take: they must not steer the fuzzer.
        let features = if poisoned {
            Vec::new()
        } else {
            feedback::features(&program, &run.model.trace)
        };
        self.seen.add(&features);
        let verdict = InputVerdict {
            keep: !poisoned,
            features: if self.cfg.feedback {
                features
            } else {
                Vec::new()
            },
        };
        let ran = match run.outcome {
            Outcome::Match => {
                self.stats.matched += 1;
                Ran::Done(verdict)
            }
            Outcome::Poisoned { .. } | Outcome::Disturbed(_) => {
                self.stats.poisoned += 1;
                Ran::Done(verdict)
            }
            _ => self.finding(data, &program, &run, verdict)?,
        };
        if let Some(every) = self.cfg.stats_every
            && self.last_line.elapsed() >= every
        {
            eprintln!("{}", self.line());
            self.last_line = Instant::now();
        }
        Ok(ran)
    }

    /// Record a finding; the panic message, or (a known title with
    /// `ignore_known`) the verdict.
    fn finding(
        &mut self,
        data: &[u8],
        program: &Program,
        run: &DiffRun,
        verdict: InputVerdict,
    ) -> Result<Ran> {
        let title = run.outcome.title().context("a finding has a title")?;
        let path = self.store.path_for(&title);
        let digest: String = Sha256::digest(data)
            .iter()
            .take(10)
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut ctx = self.ctx.clone();
        ctx.origin = format!(
            "{} input sha256:{digest}… ({} bytes)",
            self.engine,
            data.len()
        );
        let fault = if self.cfg.guest.fault != 0 {
            format!(" --fault {}", self.cfg.guest.fault)
        } else {
            String::new()
        };
        ctx.reproduce = format!(
            "pinfuzz repro {} --kernel {}{fault}",
            path.display(),
            self.cfg.kernel
        );
        let report = Report::new(program, run, &ctx);
        let recorded = self
            .store
            .record(&report, program, Some(data))
            .with_context(|| format!("record the finding in {}", self.store.dir().display()))?;
        if !recorded.new && self.cfg.ignore_known {
            self.stats.known += 1;
            // A known bug is not coverage worth keeping.
            return Ok(Ran::Done(InputVerdict {
                keep: false,
                ..verdict
            }));
        }
        self.stats.findings += 1;
        eprintln!("{}", report.to_text());
        let mut msg = String::new();
        let _ = writeln!(msg, "pinfuzz finding: {title}");
        let _ = writeln!(
            msg,
            "{} finding, recorded in {} (program.ops, input.bin, report.txt)",
            if recorded.new { "new" } else { "known" },
            recorded.path.display()
        );
        if let Some(step) = &report.step_text {
            let _ = writeln!(msg, "first diverging step: {step}");
        }
        let _ = writeln!(msg, "\nprogram:\n{}", report.program.trim_end());
        let _ = writeln!(msg, "\nreproduce with:\n\t{}", report.reproduce);
        let _ = write!(
            msg,
            "minimize with:\n\tpinfuzz minimize {} --kernel {}{fault}",
            recorded.path.display(),
            self.cfg.kernel
        );
        Ok(Ran::Finding(msg))
    }

    /// One statistics line.
    pub fn line(&self) -> String {
        let st = self.stats();
        let secs = self.ready.elapsed().as_secs_f64().max(1e-9);
        let pct = |n: u64| {
            if st.programs > 0 {
                100.0 * n as f64 / st.programs as f64
            } else {
                0.0
            }
        };
        format!(
            "pinfuzz fuzzfront: [{:.0}s] {} inputs ({:.1}/s), {} programs, {} steps ({:.0}/s), \
             {:.1}% matched, {:.1}% poisoned, {} findings ({} known ignored), {} model features, \
             {} boot(s)",
            secs,
            st.inputs,
            st.inputs as f64 / secs,
            st.programs,
            st.steps,
            st.steps as f64 / secs,
            pct(st.matched),
            pct(st.poisoned),
            st.findings,
            st.known,
            st.features,
            st.boots
        )
    }

    /// Replace the guest now if a crash or kernel incident left it needing
    /// it (otherwise the next run would do it, inside its own timing).
    ///
    /// # Errors
    /// The new guest does not boot.
    pub fn prepare_next(&mut self) -> Result<()> {
        if let Some(why) = self.guest.restart_pending() {
            let why = why.to_string();
            self.guest
                .restart()
                .with_context(|| format!("restart the guest after {why}"))?;
        }
        Ok(())
    }

    /// Print the final line and power the guest off.
    pub fn finish(&mut self) {
        eprintln!("{}", self.line());
        let _ = self.guest.power_off();
    }

    /// Time since the guest was first ready.
    pub fn uptime(&self) -> Duration {
        self.ready.elapsed()
    }
}
