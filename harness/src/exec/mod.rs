//! The kernel backend: runs a [`Program`] on the running kernel through the
//! helper module and reports one [`StepObs`] per step.
//!
//! [`run_program`] forks a runner process per program (`runner`), which
//! maps the program's memory at the fixed arena addresses, executes the
//! steps (forked children serve the steps that name them, `child`), and
//! after every step drains the LRU batches, reads the counters and queries
//! every page and handle (`observe`), streaming the observations back
//! through a pipe (`frame`). The caller (`supervise`) enforces the timeout
//! by killing the runner's process group, reaps everything, and checks
//! that the kernel's pin counters balance once the run's device file is
//! closed. It works the same in the pinfuzz guest and natively on any
//! Linux box with the module loaded; kernel settings are changed only when
//! [`ExecConfig::apply_settings`] asks for it (and [`prepare_guest`] once
//! per boot). See `docs/executor.md`.

mod child;
mod fault;
mod frame;
mod observe;
mod ops;
mod plan;
mod runner;
pub mod settings;
mod supervise;
mod vmas;
pub mod vmstat;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::wait::WaitStatus;
use serde::{Deserialize, Serialize};

pub use settings::{Settings, apply_program_settings, prepare_guest};

use crate::obs::StepObs;
use crate::obs::delta::{StepDecoder, StepDelta};
use crate::op::Program;
use crate::uapi::{DEVICE_PATH, PinfuzzDev};
use frame::{FaultRecord, KIND_DONE, KIND_ERROR, KIND_FAULT, KIND_STEP};
use runner::{RunnerDone, RunnerError, StepTimes};
use vmstat::{DISTURBANCE_COUNTERS, VmstatReader};

/// `/sys/kernel/debug/split_huge_pages`.
pub const SPLIT_HUGE_PAGES_PATH: &str = "/sys/kernel/debug/split_huge_pages";

/// How to run programs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecConfig {
    /// The helper module's device node.
    pub device: PathBuf,
    /// The debugfs file behind `Op::SplitHugePages`.
    pub split_huge_pages: PathBuf,
    /// Apply each program header's THP settings before running it
    /// (system-wide sysfs writes: the guest wants this, a developer's box
    /// usually not).
    pub apply_settings: bool,
    /// Pin the runner and its children to the CPU the runner starts on, so
    /// the CPU-local LRU drain covers every page they fault. Only worth
    /// turning off for experiments: refcounts may then be off by one.
    pub pin_cpu: bool,
}

impl Default for ExecConfig {
    /// Native mode: the system's settings are left alone.
    fn default() -> ExecConfig {
        ExecConfig {
            device: PathBuf::from(DEVICE_PATH),
            split_huge_pages: PathBuf::from(SPLIT_HUGE_PAGES_PATH),
            apply_settings: false,
            pin_cpu: true,
        }
    }
}

impl ExecConfig {
    /// The pinfuzz guest: program headers' settings are applied.
    pub fn guest() -> ExecConfig {
        ExecConfig {
            apply_settings: true,
            ..ExecConfig::default()
        }
    }
}

/// Why a run ended before its last step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stop {
    /// The timeout passed; the runner's process group was killed.
    Timeout {
        /// The timeout, in ms.
        after_ms: u64,
    },
    /// The executor could not carry out a step (not a kernel refusal:
    /// those are results), e.g. the module rejected an ioctl's arguments.
    StepFailed {
        /// The step's index.
        step: u32,
        /// The error with its causes.
        message: String,
    },
    /// The runner could not set up (device, files, buffers) or tear down.
    SetupFailed {
        /// The error with its causes.
        message: String,
    },
    /// The runner or a child died: an unexpected fault (kernel or executor
    /// bug), a signal, or an exit without a report.
    Crashed {
        /// What was seen.
        message: String,
    },
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Timeout { after_ms } => write!(f, "timeout after {after_ms} ms"),
            Stop::StepFailed { step, message } => write!(f, "step {step} failed: {message}"),
            Stop::SetupFailed { message } => write!(f, "runner setup failed: {message}"),
            Stop::Crashed { message } => write!(f, "runner crashed: {message}"),
        }
    }
}

/// The post-run check: once every process of the run has exited (so the
/// module has released the run's file), the pins the kernel counted
/// acquired since the run started must all be released.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetCheck {
    /// `nr_foll_pin_acquired` since the run started.
    pub pins_acquired: u64,
    /// `nr_foll_pin_released` since the run started.
    pub pins_released: u64,
    /// `pages_held_total` of `PINFUZZ_IOC_STATUS` on a fresh open file
    /// (`None`: the device could not be opened).
    pub module_pages_held: Option<u64>,
    /// Pins balanced and the module holds nothing.
    pub ok: bool,
}

/// Counters that move only when something outside the program moved,
/// collapsed, compacted or swapped pages (deltas over the whole run).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disturbance {
    /// `pgmigrate_success`.
    pub pgmigrate_success: u64,
    /// `thp_migration_success`.
    pub thp_migration_success: u64,
    /// `thp_collapse_alloc` (khugepaged or MADV_COLLAPSE).
    pub thp_collapse_alloc: u64,
    /// `compact_stall` (direct compaction).
    pub compact_stall: u64,
    /// `pswpout`.
    pub pswpout: u64,
    /// `thp_underused_split_page` (6.12).
    pub thp_underused_split_page: u64,
}

impl Disturbance {
    fn from_array(a: [u64; 6]) -> Disturbance {
        Disturbance {
            pgmigrate_success: a[0],
            thp_migration_success: a[1],
            thp_collapse_alloc: a[2],
            compact_stall: a[3],
            pswpout: a[4],
            thp_underused_split_page: a[5],
        }
    }

    /// Nothing moved.
    pub fn is_quiet(&self) -> bool {
        *self == Disturbance::default()
    }

    /// The counters that moved, e.g. `thp_collapse_alloc +1`.
    pub fn describe(&self) -> String {
        let moved: Vec<String> = [
            ("pgmigrate_success", self.pgmigrate_success),
            ("thp_migration_success", self.thp_migration_success),
            ("thp_collapse_alloc", self.thp_collapse_alloc),
            ("compact_stall", self.compact_stall),
            ("pswpout", self.pswpout),
            ("thp_underused_split_page", self.thp_underused_split_page),
        ]
        .iter()
        .filter(|(_, n)| *n != 0)
        .map(|(name, n)| format!("{name} +{n}"))
        .collect();
        moved.join(", ")
    }
}

/// Where a run's time went, in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// Fork of the runner to the last reap.
    pub total_ns: u64,
    /// Fork to the runner's first instruction.
    pub fork_ns: u64,
    /// The runner's start to its counter baseline.
    pub setup_ns: u64,
    /// The operations themselves, summed.
    pub op_ns: u64,
    /// The observations (drain, counters, page queries), summed.
    pub observe_ns: u64,
    /// The slowest observation.
    pub observe_max_ns: u64,
    /// Of `observe_ns`: the LRU drains.
    pub drain_ns: u64,
    /// Of `observe_ns`: `stat_refresh` and `/proc/vmstat`.
    pub counters_ns: u64,
    /// Of `observe_ns`: the page queries.
    pub queries_ns: u64,
    /// The runner's teardown (children reaped, device closed).
    pub teardown_ns: u64,
    /// Outside the runner: the caller's sink (in the guest agent: sending
    /// the observations to the host), summed.
    pub sink_ns: u64,
    /// Outside the runner: from its done frame to the end of its stream
    /// (its exit: the address space torn down, the pipe closed).
    pub exit_ns: u64,
    /// Outside the runner: from the end of its stream to the last reap.
    pub reap_ns: u64,
    /// Before the fork: the plan, the header's settings, the counter
    /// baseline of the reset check.
    pub before_ns: u64,
    /// After the last reap: the reset check.
    pub after_ns: u64,
    /// The guest agent's whole handling of the request (parsing the
    /// program, console markers, all of the above); 0 outside the agent.
    pub agent_ns: u64,
}

/// What a run ended with; crosses the host–guest channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Steps whose observation reached the sink.
    pub steps_run: u32,
    /// Steps in the program.
    pub steps_total: u32,
    /// Why the run ended early (`None`: every step ran).
    pub stopped: Option<Stop>,
    /// The reset check (`None`: some process of the run could not be
    /// reaped, so the module may still hold its pages).
    pub reset: Option<ResetCheck>,
    /// Counters that should stay still during a run.
    pub disturbance: Disturbance,
    /// Where the time went.
    pub timing: Timing,
}

static CALLER_READY: AtomicBool = AtomicBool::new(false);

/// Make the calling process fit to run programs; [`run_program`] calls it,
/// but a long-running caller (the guest agent) should call it first thing
/// in `main`, before its heap grows. It
/// - sets `PR_SET_THP_DISABLE`, so the caller's memory (and the runner's,
///   until it is marked `MADV_NOHUGEPAGE`) never gets THPs: a COW write to
///   a THP shared with the runner would split its PMD and count
///   `thp_split_pmd`, and the caller's own THP faults would count
///   `thp_fault_alloc`, both in the middle of a run;
/// - makes it a child subreaper, so the runner's children are its to reap
///   if the runner dies first;
/// - checks that SIGCHLD is not ignored;
/// - fails if the process already has THP-backed memory
///   (`AnonHugePages` in `/proc/self/smaps_rollup`).
pub fn prepare_caller() -> anyhow::Result<()> {
    if CALLER_READY.load(Ordering::Relaxed) {
        return Ok(());
    }
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("prctl(PR_SET_THP_DISABLE, 1)");
    }
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("prctl(PR_SET_CHILD_SUBREAPER, 1)");
    }
    supervise::check_sigchld()?;
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup")
        .context("read /proc/self/smaps_rollup")?;
    let thp_kb = rollup
        .lines()
        .find_map(|l| l.strip_prefix("AnonHugePages:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    if thp_kb > 0 {
        bail!(
            "this process has {thp_kb} kB of THP-backed memory; runs would see its PMD splits \
             in thp_split_pmd: call harness::exec::prepare_caller() at the start of main"
        );
    }
    CALLER_READY.store(true, Ordering::Relaxed);
    Ok(())
}

/// Run `program` on the running kernel, feeding one [`StepObs`] per
/// executed step to `sink` as it arrives, within `timeout` (wall clock,
/// fork to last step). A run that stops early is `Ok` with
/// [`RunSummary::stopped`] set and a partial trace in the sink; `Err` means
/// the run could not be attempted (a structurally invalid program, no
/// root, no fork), the caller's side failed, or `sink` failed (the run is
/// then killed, and its processes reaped, before the error is returned).
pub fn run_program(
    program: &Program,
    cfg: &ExecConfig,
    timeout: Duration,
    sink: &mut dyn FnMut(StepObs) -> anyhow::Result<()>,
) -> anyhow::Result<RunSummary> {
    let mut decoder = StepDecoder::default();
    run_program_encoded(
        program,
        cfg,
        timeout,
        &mut |bytes: &[u8]| -> anyhow::Result<()> {
            let delta: StepDelta =
                postcard::from_bytes(bytes).context("decode a step observation")?;
            sink(decoder.next(&delta)?.clone())
        },
    )
}

/// Where [`run_program_encoded`] delivers the steps.
pub trait StepSink {
    /// One step's observation, as the runner encoded it: the postcard
    /// encoding of a [`StepDelta`] from the previous step's observation.
    fn step(&mut self, obs: &[u8]) -> anyhow::Result<()>;

    /// Every step the runner has sent so far has been delivered to
    /// [`StepSink::step`]: a sink that batches should pass them on now.
    /// Called before waiting for the runner, and once at the end.
    fn flush(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

impl<F: FnMut(&[u8]) -> anyhow::Result<()>> StepSink for F {
    fn step(&mut self, obs: &[u8]) -> anyhow::Result<()> {
        self(obs)
    }
}

/// [`run_program`], with each step's observation handed to `sink` as the
/// runner encoded it, undecoded (see [`StepSink::step`]). The guest agent
/// passes the bytes on to the host as they are (see `runner::StepTimes`),
/// in batches ([`StepSink::flush`]).
pub fn run_program_encoded(
    program: &Program,
    cfg: &ExecConfig,
    timeout: Duration,
    sink: &mut dyn StepSink,
) -> anyhow::Result<RunSummary> {
    let entered = std::time::Instant::now();
    prepare_caller()?;
    let plan = plan::plan(program).context("the program cannot run")?;
    if cfg.apply_settings {
        apply_program_settings(&Settings::from(&program.header))
            .context("apply the program header's settings")?;
    }
    // Caller-side counters: the pins for the reset check, the disturbances.
    const PIN_NAMES: [&str; 2] = ["nr_foll_pin_acquired", "nr_foll_pin_released"];
    let mut names = [""; 8];
    names[..2].copy_from_slice(&PIN_NAMES);
    names[2..].copy_from_slice(&DISTURBANCE_COUNTERS);
    let mut vmstat = VmstatReader::open()?;
    let mut before = [0u64; 8];
    if vmstat.read_found(&names, &mut before)? & 0b11 != 0b11 {
        bail!("/proc/vmstat has no nr_foll_pin_acquired/released (Linux 5.7 or later is needed)");
    }

    let mut steps_run = 0u32;
    let mut timing = Timing {
        before_ns: entered.elapsed().as_nanos() as u64,
        ..Timing::default()
    };
    let mut error: Option<RunnerError> = None;
    let mut fault: Option<FaultRecord> = None;
    let mut done: Option<RunnerDone> = None;
    let mut done_at = None;
    // Both callbacks deliver to the sink.
    let sink = std::cell::RefCell::new(sink);
    let flush_ns = std::cell::Cell::new(0u64);
    let supervised = supervise::supervise(
        timeout,
        |out, forked_at| runner::main(program, cfg, &plan, out, forked_at),
        &mut |kind, payload| {
            match kind {
                KIND_STEP => {
                    let (f, obs) = StepTimes::split(payload)?;
                    let observe_ns = f.drain_ns + f.counters_ns + f.queries_ns;
                    timing.op_ns += f.op_ns;
                    timing.observe_ns += observe_ns;
                    timing.observe_max_ns = timing.observe_max_ns.max(observe_ns);
                    timing.drain_ns += f.drain_ns;
                    timing.counters_ns += f.counters_ns;
                    timing.queries_ns += f.queries_ns;
                    steps_run += 1;
                    let t = std::time::Instant::now();
                    sink.borrow_mut().step(obs)?;
                    timing.sink_ns += t.elapsed().as_nanos() as u64;
                }
                KIND_ERROR => {
                    error = Some(
                        postcard::from_bytes(payload)
                            .context("decode an error frame from the runner")?,
                    );
                }
                KIND_DONE => {
                    done_at = Some(std::time::Instant::now());
                    done = Some(
                        postcard::from_bytes(payload)
                            .context("decode the done frame from the runner")?,
                    );
                }
                KIND_FAULT => fault = Some(FaultRecord::from_payload(payload)?),
                other => bail!("the runner sent a frame of unknown kind {other}"),
            }
            Ok(())
        },
        &mut || {
            let t = std::time::Instant::now();
            sink.borrow_mut().flush()?;
            flush_ns.set(flush_ns.get() + t.elapsed().as_nanos() as u64);
            Ok(())
        },
    )?;
    // What a stream cut short (timeout) left batched.
    let t = std::time::Instant::now();
    sink.borrow_mut().flush()?;
    timing.sink_ns += flush_ns.get() + t.elapsed().as_nanos() as u64;
    timing.total_ns = supervised.elapsed.as_nanos() as u64;
    timing.reap_ns = supervised.reaping.as_nanos() as u64;
    if let Some(at) = done_at {
        timing.exit_ns = supervised
            .stream_end
            .saturating_duration_since(at)
            .as_nanos() as u64;
    }
    if let Some(d) = done {
        timing.fork_ns = d.fork_ns;
        timing.setup_ns = d.setup_ns;
        timing.teardown_ns = d.teardown_ns;
    }

    let stopped = if supervised.timed_out {
        Some(Stop::Timeout {
            after_ms: timeout.as_millis() as u64,
        })
    } else if let Some(f) = fault {
        Some(Stop::Crashed {
            message: f.to_string(),
        })
    } else if let Some(e) = error {
        Some(match e.step {
            Some(step) => Stop::StepFailed {
                step,
                message: e.message,
            },
            None => Stop::SetupFailed { message: e.message },
        })
    } else if done.is_none() || !matches!(supervised.status, Some(WaitStatus::Exited(_, 0))) {
        Some(Stop::Crashed {
            message: format!(
                "the runner ended with {:?} after {steps_run} steps ({} orphaned children \
                 reaped){}",
                supervised.status,
                supervised.orphans_reaped,
                if supervised.truncated > 0 {
                    format!(" inside a frame ({} bytes pending)", supervised.truncated)
                } else {
                    String::new()
                }
            ),
        })
    } else {
        None
    };

    let stopped = if supervised.unreaped {
        let before = stopped.map(|s| format!("{s}; ")).unwrap_or_default();
        Some(Stop::Crashed {
            message: format!(
                "{before}processes of the run were still alive {} s after SIGKILL (stuck in the \
                 kernel?): the module may still hold their pages",
                supervise::KILL_GRACE.as_secs()
            ),
        })
    } else {
        stopped
    };
    let reaped = std::time::Instant::now();
    let mut after = [0u64; 8];
    vmstat.read_found(&names, &mut after)?;
    let delta: [u64; 8] = std::array::from_fn(|i| after[i].wrapping_sub(before[i]));
    let reset = if supervised.unreaped {
        None
    } else {
        let held = PinfuzzDev::open(&cfg.device)
            .ok()
            .and_then(|dev| dev.status().ok())
            .map(|s| s.pages_held_total);
        Some(ResetCheck {
            pins_acquired: delta[0],
            pins_released: delta[1],
            module_pages_held: held,
            ok: delta[0] == delta[1] && held == Some(0),
        })
    };
    timing.after_ns = reaped.elapsed().as_nanos() as u64;
    Ok(RunSummary {
        steps_run,
        steps_total: program.steps.len() as u32,
        stopped,
        reset,
        disturbance: Disturbance::from_array(std::array::from_fn(|i| delta[2 + i])),
        timing,
    })
}
