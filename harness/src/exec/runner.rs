//! The runner: the forked process that executes one program step by step.
//!
//! Setup, in order: own process group (the caller kills it as a whole);
//! the fault handler; pinning to the current CPU (the LRU drain is
//! CPU-local); `/dev/pinfuzz` (ABI version checked); every buffer the run
//! will need, sized by `exec::plan`; THP hygiene of the runner's own memory
//! (below); the counter baseline. Then for each step: translate it into a
//! [`Cmd`] (addresses from `op::map_start_vpn`, module handle numbers,
//! pids), run it here or in the named child, observe, send one step frame.
//! At the end: every live child exits and is reaped, the device is closed
//! (so the module drops whatever the program still holds), a done frame is
//! sent, `_exit(0)`. An executor error sends an error frame and
//! `_exit(1)`; the caller kills what is left.
//!
//! THP hygiene. The counters compare `thp_*` events with the model, so the
//! executor's own memory must never produce one. The caller runs with
//! `PR_SET_THP_DISABLE` (`exec::prepare_caller`), which the runner
//! inherits while it reserves its buffers; then it marks every anonymous
//! mapping it owns `MADV_NOHUGEPAGE` and clears `PR_SET_THP_DISABLE`, so
//! only the program's arena mappings can get THPs. Buffers are never grown
//! later (no new, THP-eligible heap mappings), and children inherit the
//! marks.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::time::Instant;

use anyhow::{Context, bail};
use nix::unistd::{Pid, setpgid};
use reference::{Access, GupApi, Release};
use serde::{Deserialize, Serialize};

use super::ExecConfig;
use super::child::{self, ChildLink};
use super::fault;
use super::frame::{self, KIND_DONE, KIND_ERROR, KIND_STEP};
use super::observe::{HandleTarget, MapTarget, Observer};
use super::ops::{self, Cmd, Outcome, advice_code, kind_code, prot_code};
use super::plan::{Plan, proc_slot};
use super::vmas::Vmas;
use crate::obs::OpResult;
use crate::op::{
    ARENA_BASE_VPN, ChildId, HandleId, MAX_CHILDREN, MAX_HANDLES, MAX_MAPS, MapId, Op, PageRange,
    Proc, Program, SLOT_PAGES, map_start_vpn,
};
use crate::uapi::{
    PINFUZZ_ABI_VERSION, PINFUZZ_API_GET_USER_PAGES, PINFUZZ_API_GET_USER_PAGES_FAST,
    PINFUZZ_API_GET_USER_PAGES_REMOTE, PINFUZZ_API_PIN_USER_PAGES, PINFUZZ_API_PIN_USER_PAGES_FAST,
    PINFUZZ_API_PIN_USER_PAGES_REMOTE, PINFUZZ_RELEASE_DIRTY, PinfuzzDev,
};

const PAGE: u64 = reference::PAGE_SIZE;
/// One past the arena's last page.
const ARENA_END_VPN: u64 = ARENA_BASE_VPN + MAX_MAPS as u64 * SLOT_PAGES;

/// The times a step frame carries in front of its observation.
///
/// A [`KIND_STEP`] payload is these four `u64` (little endian, fixed
/// width), then the postcard encoding of the step's observation (a
/// [`crate::obs::delta::StepDelta`]). The times
/// come first and fixed-width so that the caller can account them and pass
/// the observation's bytes on as they are: the guest agent forwards them to
/// the host without decoding and re-encoding them (`Response::Step` is the
/// same postcard bytes behind one tag byte), which on a TCG guest is most
/// of what the agent would otherwise spend per step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepTimes {
    /// Time spent in the operation itself, in ns.
    pub op_ns: u64,
    /// Time spent in the LRU drain, in ns.
    pub drain_ns: u64,
    /// Time spent in `stat_refresh` and `/proc/vmstat`, in ns.
    pub counters_ns: u64,
    /// Time spent in the page queries, in ns.
    pub queries_ns: u64,
}

impl StepTimes {
    /// Bytes in front of the observation.
    pub const LEN: usize = 32;

    fn to_bytes(self) -> [u8; StepTimes::LEN] {
        let mut out = [0u8; StepTimes::LEN];
        let words = [self.op_ns, self.drain_ns, self.counters_ns, self.queries_ns];
        for (chunk, w) in out.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Split a [`KIND_STEP`] payload into the times and the observation's
    /// postcard bytes.
    pub fn split(payload: &[u8]) -> anyhow::Result<(StepTimes, &[u8])> {
        if payload.len() < StepTimes::LEN {
            bail!(
                "step frame of {} bytes, shorter than its {}-byte times",
                payload.len(),
                StepTimes::LEN
            );
        }
        let (times, obs) = payload.split_at(StepTimes::LEN);
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&times[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        Ok((
            StepTimes {
                op_ns: word(0),
                drain_ns: word(1),
                counters_ns: word(2),
                queries_ns: word(3),
            },
            obs,
        ))
    }
}

/// The runner finished every step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerDone {
    /// From the caller's `fork()` to the runner's first instruction, in ns.
    pub fork_ns: u64,
    /// The runner's start to its counter baseline, in ns.
    pub setup_ns: u64,
    /// After the last step: children reaped and device closed, in ns.
    pub teardown_ns: u64,
}

/// The runner stopped on an executor error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerError {
    /// The step that failed (`None`: setup or teardown).
    pub step: Option<u32>,
    /// The error with its causes.
    pub message: String,
}

/// Where a mapping lives (from its `Op::Mmap`, whatever the mmap returned).
#[derive(Clone, Copy, Debug)]
struct MapDef {
    offset: u16,
    pages: u16,
}

/// A program handle in this run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// Its GUP has not run.
    Unused,
    /// Its GUP returned pages, held by the module under `module`.
    Live { module: u32, pages: u32 },
    /// Its GUP returned 0 pages or an errno: it holds nothing.
    Empty,
    /// Released; the module's number, for a release again.
    Released { module: u32 },
}

#[derive(Debug, Default)]
struct ProcState {
    live: bool,
    /// The pid (the runner's own for the parent).
    pid: i32,
    vmas: Vmas,
    /// Bit n: map n is in this process's address space.
    visible: u16,
    link: Option<ChildLink>,
}

struct Runner<'a> {
    program: &'a Program,
    dev: PinfuzzDev,
    split: Option<File>,
    observer: Observer,
    /// The pipe to the caller (owned by `main`), which children close.
    out_fd: RawFd,
    frame: Vec<u8>,
    procs: Vec<ProcState>,
    maps: [Option<MapDef>; MAX_MAPS],
    handles: Vec<Slot>,
    map_targets: Vec<MapTarget>,
    handle_targets: Vec<HandleTarget>,
}

/// A failure and the step it happened in.
struct Failure {
    step: Option<u32>,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure {
            step: None,
            error: e.into(),
        }
    }
}

/// The runner process's body (`forked_at`: the caller's clock just before
/// the fork); never returns.
pub fn main(
    program: &Program,
    cfg: &ExecConfig,
    plan: &Plan,
    out: OwnedFd,
    forked_at: Instant,
) -> ! {
    let started = Instant::now();
    let fork_ns = started.duration_since(forked_at).as_nanos() as u64;
    // Owned here, not by the Runner, so an error can still be reported
    // after the Runner is gone.
    let mut out = File::from(out);
    // Panics are reported through the pipe, not the caller's stderr hook.
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(program, cfg, plan, &mut out, started, fork_ns)
    }));
    let (code, report) = match result {
        Ok(Ok(())) => (0, None),
        Ok(Err(f)) => (
            1,
            Some(RunnerError {
                step: f.step,
                message: format!("{:#}", f.error),
            }),
        ),
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string payload".into());
            (
                101,
                Some(RunnerError {
                    step: None,
                    message: format!("runner panicked: {what}"),
                }),
            )
        }
    };
    if let Some(report) = report {
        let mut buf = Vec::new();
        if frame::encode(KIND_ERROR, &report, &mut buf).is_ok() {
            // Nothing to do if the caller is gone.
            let _ = out.write_all(&buf);
        }
    }
    // SAFETY: _exit ends the runner without running the caller's atexit
    // handlers or destructors, which belong to the caller's copy.
    unsafe { libc::_exit(code) }
}

fn run(
    program: &Program,
    cfg: &ExecConfig,
    plan: &Plan,
    out: &mut File,
    started: Instant,
    fork_ns: u64,
) -> Result<(), Failure> {
    let mut runner = Runner::setup(program, cfg, plan, out.as_raw_fd())?;
    let setup_ns = started.elapsed().as_nanos() as u64;
    for (index, _) in program.steps.iter().enumerate() {
        runner.step(index, out).map_err(|error| Failure {
            step: Some(index as u32),
            error,
        })?;
    }
    let teardown = Instant::now();
    runner.teardown()?;
    let done = RunnerDone {
        fork_ns,
        setup_ns,
        teardown_ns: teardown.elapsed().as_nanos() as u64,
    };
    let mut buf = Vec::new();
    frame::encode(KIND_DONE, &done, &mut buf)?;
    out.write_all(&buf).context("send the done frame")?;
    Ok(())
}

impl<'a> Runner<'a> {
    fn setup(
        program: &'a Program,
        cfg: &ExecConfig,
        plan: &Plan,
        out_fd: RawFd,
    ) -> anyhow::Result<Runner<'a>> {
        let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
        fault::install(out_fd)?;
        if cfg.pin_cpu {
            pin_to_this_cpu()?;
        }
        let dev = PinfuzzDev::open(&cfg.device)?;
        let status = dev.status()?;
        if status.abi_version != PINFUZZ_ABI_VERSION {
            bail!(
                "{} speaks ABI {}, this executor ABI {PINFUZZ_ABI_VERSION}: rebuild one of them",
                cfg.device.display(),
                status.abi_version
            );
        }
        let split = if plan.splits {
            Some(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&cfg.split_huge_pages)
                    .with_context(|| {
                        format!(
                            "open {} (the program splits THPs; is debugfs mounted?)",
                            cfg.split_huge_pages.display()
                        )
                    })?,
            )
        } else {
            None
        };
        let observer = Observer::new(plan.capacity)?;
        let mut procs = Vec::with_capacity(1 + MAX_CHILDREN);
        procs.resize_with(1 + MAX_CHILDREN, ProcState::default);
        procs[0].live = true;
        procs[0].pid = std::process::id() as i32;
        let mut runner = Runner {
            program,
            dev,
            split,
            observer,
            out_fd,
            frame: Vec::with_capacity(plan.frame_bytes + 64),
            procs,
            maps: [None; MAX_MAPS],
            handles: vec![Slot::Unused; MAX_HANDLES],
            map_targets: Vec::with_capacity(plan.capacity.maps),
            handle_targets: Vec::with_capacity(plan.capacity.handles),
        };
        thp_hygiene(runner.observer.drain_page())?;
        runner.observer.baseline()?;
        Ok(runner)
    }

    /// Address of page `page` of `map` (which the plan saw created).
    fn vpn(&self, map: MapId, page: u16) -> anyhow::Result<u64> {
        let def = self.maps[usize::from(map.0)]
            .with_context(|| format!("map {} is used before its mmap", map.0))?;
        Ok(map_start_vpn(map, def.offset) + u64::from(page))
    }

    fn range_vpns(&self, map: MapId, range: PageRange) -> anyhow::Result<(u64, u64)> {
        Ok((self.vpn(map, range.start)?, self.vpn(map, range.end)?))
    }

    fn live_slot(&self, proc: Proc) -> anyhow::Result<usize> {
        let slot = proc_slot(proc);
        if !self.procs[slot].live {
            bail!("{proc:?} is not running (its fork failed, or it exited)");
        }
        Ok(slot)
    }

    fn exec_in(&mut self, slot: usize, cmd: &Cmd) -> anyhow::Result<Outcome> {
        if slot == 0 {
            ops::execute(cmd, &self.dev)
        } else {
            self.procs[slot]
                .link
                .as_mut()
                .context("a live child without a link")?
                .call(cmd)
        }
    }

    /// Re-read a process's arena mappings after a syscall that failed
    /// part-way (see `exec::vmas`).
    fn resync(&mut self, slot: usize) -> anyhow::Result<()> {
        let path = format!("/proc/{}/maps", self.procs[slot].pid);
        let mut text = String::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_string(&mut text))
            .with_context(|| format!("read {path}"))?;
        self.procs[slot].vmas = Vmas::from_proc_maps(&text, ARENA_BASE_VPN, ARENA_END_VPN)
            .with_context(|| format!("parse {path}"))?;
        Ok(())
    }

    fn step(&mut self, index: usize, out: &mut File) -> anyhow::Result<()> {
        let program = self.program;
        let step = &program.steps[index];
        let t0 = Instant::now();
        let result = self.operate(step.proc, &step.op)?;
        let op_ns = t0.elapsed().as_nanos() as u64;
        self.targets();
        let (obs, times) =
            self.observer
                .observe(&self.dev, result, &self.map_targets, &self.handle_targets)?;
        self.frame.clear();
        let times = StepTimes {
            op_ns,
            drain_ns: times.drain_ns,
            counters_ns: times.counters_ns,
            queries_ns: times.queries_ns,
        };
        frame::encode_after(KIND_STEP, &times.to_bytes(), obs, &mut self.frame)?;
        out.write_all(&self.frame)
            .context("send a step frame to the caller")?;
        Ok(())
    }

    /// Everything to query after a step: every mapping visible in every
    /// live process, every live handle.
    fn targets(&mut self) {
        self.map_targets.clear();
        for (slot, p) in self.procs.iter().enumerate() {
            if !p.live {
                continue;
            }
            let proc = if slot == 0 {
                Proc::Parent
            } else {
                Proc::Child(ChildId((slot - 1) as u8))
            };
            for (i, def) in self.maps.iter().enumerate() {
                let Some(def) = def.filter(|_| p.visible & (1 << i) != 0) else {
                    continue;
                };
                let map = MapId(i as u8);
                self.map_targets.push(MapTarget {
                    proc,
                    pid: if slot == 0 { 0 } else { p.pid },
                    map,
                    addr: map_start_vpn(map, def.offset) * PAGE,
                    pages: def.pages,
                });
            }
        }
        self.handle_targets.clear();
        for (h, slot) in self.handles.iter().enumerate() {
            if let Slot::Live { module, pages } = *slot {
                self.handle_targets.push(HandleTarget {
                    handle: HandleId(h as u16),
                    module,
                    pages,
                });
            }
        }
    }

    fn operate(&mut self, proc: Proc, op: &Op) -> anyhow::Result<OpResult> {
        match *op {
            Op::Mmap {
                map,
                kind,
                pages,
                prot,
                offset,
            } => {
                let slot = self.live_slot(proc)?;
                let i = usize::from(map.0);
                if self.maps[i].is_some() {
                    bail!("map {i} is mapped twice");
                }
                self.maps[i] = Some(MapDef { offset, pages });
                self.procs[slot].visible |= 1 << i;
                let start = map_start_vpn(map, offset);
                let outcome = self.exec_in(
                    slot,
                    &Cmd::Mmap {
                        addr: start * PAGE,
                        pages: u64::from(pages),
                        kind: kind_code(kind),
                        prot: prot_code(prot),
                    },
                )?;
                if outcome.result == OpResult::Ok {
                    self.procs[slot]
                        .vmas
                        .map(start, start + u64::from(pages), prot);
                }
                Ok(outcome.result)
            }
            Op::Munmap { map, range } => {
                let slot = self.live_slot(proc)?;
                let (s, e) = self.range_vpns(map, range)?;
                let cmd = Cmd::Munmap {
                    addr: s * PAGE,
                    pages: e - s,
                };
                let outcome = self.exec_in(slot, &cmd)?;
                if outcome.result == OpResult::Ok {
                    self.procs[slot].vmas.unmap(s, e);
                } else {
                    self.resync(slot)?;
                }
                Ok(outcome.result)
            }
            Op::Mprotect { map, range, prot } => {
                let slot = self.live_slot(proc)?;
                let (s, e) = self.range_vpns(map, range)?;
                let cmd = Cmd::Mprotect {
                    addr: s * PAGE,
                    pages: e - s,
                    prot: prot_code(prot),
                };
                let outcome = self.exec_in(slot, &cmd)?;
                if outcome.result == OpResult::Ok {
                    self.procs[slot].vmas.protect(s, e, prot);
                } else {
                    self.resync(slot)?;
                }
                Ok(outcome.result)
            }
            Op::Madvise { map, range, advice } => {
                let slot = self.live_slot(proc)?;
                let (s, e) = self.range_vpns(map, range)?;
                let cmd = Cmd::Madvise {
                    addr: s * PAGE,
                    pages: e - s,
                    advice: advice_code(advice),
                };
                Ok(self.exec_in(slot, &cmd)?.result)
            }
            Op::Touch { map, range, access } => {
                let slot = self.live_slot(proc)?;
                let (s, e) = self.range_vpns(map, range)?;
                let fault = self.procs[slot].vmas.first_fault(s, e, access);
                let safe = fault.unwrap_or(e) - s;
                if safe > 0 {
                    let cmd = Cmd::Touch {
                        addr: s * PAGE,
                        pages: safe,
                        write: access == Access::Write,
                    };
                    self.exec_in(slot, &cmd)?;
                }
                Ok(match fault {
                    Some(_) => OpResult::Segv { at: safe as u16 },
                    None => OpResult::Touched,
                })
            }
            Op::Gup {
                handle,
                api,
                target,
                map,
                range,
                foll,
            } => {
                let slot = self.live_slot(proc)?;
                let h = usize::from(handle.0);
                if self.handles[h] != Slot::Unused {
                    bail!("handle {h} is taken twice");
                }
                let pid = match target {
                    None => 0,
                    Some(t) => self.procs[self.live_slot(t)?].pid,
                };
                let (s, e) = self.range_vpns(map, range)?;
                let cmd = Cmd::Gup {
                    addr: s * PAGE,
                    pages: e - s,
                    api: api_code(api),
                    flags: foll.0,
                    pid,
                };
                let outcome = self.exec_in(slot, &cmd)?;
                self.handles[h] = match outcome.result {
                    OpResult::Pages(n) if n > 0 => Slot::Live {
                        module: outcome.handle,
                        pages: n as u32,
                    },
                    _ => Slot::Empty,
                };
                Ok(outcome.result)
            }
            Op::Release { handle, how } => {
                let slot = self.live_slot(proc)?;
                let h = usize::from(handle.0);
                // The module picks put_page() or unpin by the handle's
                // kind; only "dirty" is a choice.
                let flags = match how {
                    Release::UnpinDirty => PINFUZZ_RELEASE_DIRTY,
                    Release::Put | Release::Unpin => 0,
                };
                // A handle that holds nothing (its GUP returned no pages)
                // goes to the module as handle 0, which it never hands
                // out, and a released one under its old number (handles
                // are not reused soon): the module answers ENOENT, as for
                // any unknown handle.
                let module = match self.handles[h] {
                    Slot::Live { module, .. } | Slot::Released { module } => module,
                    Slot::Empty => 0,
                    Slot::Unused => bail!("release of handle {h} before its GUP"),
                };
                let outcome = self.exec_in(
                    slot,
                    &Cmd::Release {
                        handle: module,
                        flags,
                    },
                )?;
                if outcome.result == OpResult::Ok {
                    self.handles[h] = Slot::Released { module };
                }
                Ok(outcome.result)
            }
            Op::SplitHugePages { map, range } => {
                let slot = self.live_slot(proc)?;
                let (s, e) = self.range_vpns(map, range)?;
                let pid = self.procs[slot].pid;
                let mut line = [0u8; 64];
                let len = {
                    let mut w = &mut line[..];
                    write!(w, "{pid},0x{:x},0x{:x}", s * PAGE, e * PAGE)
                        .context("format the split_huge_pages line")?;
                    64 - w.len()
                };
                let file = self
                    .split
                    .as_ref()
                    .context("split_huge_pages is not open")?;
                // split_huge_pages_write() parses the whole line from one
                // write and ignores the file position.
                Ok(match file.write_at(&line[..len], 0) {
                    Ok(_) => OpResult::Ok,
                    Err(e) => OpResult::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
                })
            }
            Op::Fork { child } => {
                if proc != Proc::Parent {
                    bail!("only the parent forks");
                }
                let c = 1 + usize::from(child.0);
                if self.procs[c].live || self.procs[c].pid != 0 {
                    bail!("child {} is forked twice", child.0);
                }
                let mut close: Vec<RawFd> = vec![self.out_fd];
                for p in &self.procs {
                    if let Some(link) = &p.link {
                        close.extend(link.fds());
                    }
                }
                match child::spawn(&self.dev, &close)? {
                    Ok(link) => {
                        let parent = &self.procs[0];
                        let state = ProcState {
                            live: true,
                            pid: link.pid().as_raw(),
                            vmas: parent.vmas.clone(),
                            visible: parent.visible,
                            link: Some(link),
                        };
                        self.procs[c] = state;
                        Ok(OpResult::Ok)
                    }
                    Err(errno) => {
                        self.procs[c].pid = -1;
                        Ok(OpResult::Errno(errno as i32))
                    }
                }
            }
            Op::Exit { child } => {
                let c = self.live_slot(Proc::Child(child))?;
                let link = self.procs[c]
                    .link
                    .take()
                    .context("a live child without a link")?;
                self.procs[c].live = false;
                link.exit()?;
                Ok(OpResult::Ok)
            }
        }
    }

    /// Reap the children still running and close the device.
    fn teardown(mut self) -> anyhow::Result<()> {
        for p in self.procs.iter_mut().skip(1) {
            if let Some(link) = p.link.take() {
                p.live = false;
                link.exit()?;
            }
        }
        // Closing the last descriptor of the file releases every page the
        // program still holds; the caller's reset check depends on it.
        drop(self.dev);
        Ok(())
    }
}

fn api_code(api: GupApi) -> u32 {
    match api {
        GupApi::GetUserPages => PINFUZZ_API_GET_USER_PAGES,
        GupApi::GetUserPagesFast => PINFUZZ_API_GET_USER_PAGES_FAST,
        GupApi::GetUserPagesRemote => PINFUZZ_API_GET_USER_PAGES_REMOTE,
        GupApi::PinUserPages => PINFUZZ_API_PIN_USER_PAGES,
        GupApi::PinUserPagesFast => PINFUZZ_API_PIN_USER_PAGES_FAST,
        GupApi::PinUserPagesRemote => PINFUZZ_API_PIN_USER_PAGES_REMOTE,
    }
}

/// Keep this process (and its children, which inherit the mask) on the
/// CPU it runs on now, so every page it faults is batched on the CPU whose
/// batches the drain empties.
fn pin_to_this_cpu() -> anyhow::Result<()> {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    if cpu < 0 {
        return Err(std::io::Error::last_os_error()).context("sched_getcpu");
    }
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu as usize)
        .context("CPU number out of CpuSet range")?;
    nix::sched::sched_setaffinity(Pid::from_raw(0), &set)
        .with_context(|| format!("sched_setaffinity to CPU {cpu}"))
}

/// Mark every anonymous mapping of this process `MADV_NOHUGEPAGE`, then
/// clear `PR_SET_THP_DISABLE` (see the module comment). Also checks that
/// none of the runner's own memory lies in the program arena, where a
/// program's `mmap` would meet it (EEXIST the model cannot predict).
fn thp_hygiene(drain_page: usize) -> anyhow::Result<()> {
    let text = std::fs::read_to_string("/proc/self/maps").context("read /proc/self/maps")?;
    let arena = ARENA_BASE_VPN * PAGE..ARENA_END_VPN * PAGE;
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let span = fields.next().unwrap_or("");
        let path = fields.nth(4).unwrap_or("");
        let Some((s, e)) = span.split_once('-') else {
            bail!("/proc/self/maps line {line:?}: no address range");
        };
        let (s, e) = (
            usize::from_str_radix(s, 16).context("maps start")?,
            usize::from_str_radix(e, 16).context("maps end")?,
        );
        if (s as u64) < arena.end && (e as u64) > arena.start {
            bail!(
                "the runner's own mapping {line:?} lies in the program arena \
                 0x{:x}..0x{:x}",
                arena.start,
                arena.end
            );
        }
        let anonymous = path.is_empty()
            || path == "[heap]"
            || path.starts_with("[stack")
            || path.starts_with("[anon");
        if !anonymous {
            continue;
        }
        if s == drain_page {
            continue;
        }
        // SAFETY: MADV_NOHUGEPAGE only changes VMA flags; it neither maps
        // nor unmaps memory, so no Rust object is affected.
        let rc = unsafe { libc::madvise(s as *mut libc::c_void, e - s, libc::MADV_NOHUGEPAGE) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("madvise(MADV_NOHUGEPAGE) on {span}"));
        }
    }
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("prctl(PR_SET_THP_DISABLE, 0)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_times_lead_the_frame_and_the_observation_follows_untouched() {
        let times = StepTimes {
            op_ns: 1,
            drain_ns: u64::MAX,
            counters_ns: 3 << 40,
            queries_ns: 4,
        };
        let mut payload = times.to_bytes().to_vec();
        payload.extend_from_slice(b"obs");
        assert_eq!(StepTimes::split(&payload).unwrap(), (times, &b"obs"[..]));
        let err = StepTimes::split(&payload[..31]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "step frame of 31 bytes, shorter than its 32-byte times"
        );
    }
}
