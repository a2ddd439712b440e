//! The caller's side of a run: fork the runner, read its frames, enforce
//! the timeout, and make sure every process of the run is gone.
//!
//! The runner is forked (not exec'd) into its own process group; its
//! children inherit the group. The caller reads the runner's pipe with
//! `poll` until the stream ends or the deadline passes; on timeout it sends
//! SIGKILL to the whole group. Either way it then waits (through a pidfd,
//! with a bound) for the runner to exit, SIGKILLs the group again — while
//! the runner's zombie still pins the group id, so the signal cannot reach
//! a recycled group — and reaps every member with `waitpid(-pgid)`. Members
//! orphaned by the runner's death are the caller's to reap because
//! `exec::prepare_caller` made it a child subreaper (pid 1 is one anyway).
//! When this returns, every process that held the run's `/dev/pinfuzz`
//! file has exited, so the module has released the file's pages.

use std::fs::File;
use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe2, setpgid};

use super::frame::FrameReader;

/// How long a SIGKILLed process group may take to disappear.
pub const KILL_GRACE: Duration = Duration::from_secs(10);

/// How a supervised run ended.
#[derive(Debug)]
pub struct Supervised {
    /// The deadline passed and the group was killed.
    pub timed_out: bool,
    /// The runner's wait status, if it was reaped.
    pub status: Option<WaitStatus>,
    /// Other members of the group reaped after the runner (its orphans).
    pub orphans_reaped: usize,
    /// The group still had members after [`KILL_GRACE`] (stuck in the kernel).
    pub unreaped: bool,
    /// Bytes of an incomplete frame left when the stream ended.
    pub truncated: usize,
    /// Fork to last reap.
    pub elapsed: Duration,
    /// When the stream ended (or the group was killed).
    pub stream_end: Instant,
    /// Of `elapsed`: from the end of the stream (or the kill) to the last
    /// reap.
    pub reaping: Duration,
}

/// Fork `body` as the runner (it gets the write end of its pipe and the
/// caller's clock before the fork, and should end with `_exit`; if it
/// returns, the runner exits with 127) and feed every frame it writes to
/// `on_frame`, until the stream ends or `timeout` passes. `on_drained` is
/// called whenever every byte the pipe had has been read and its frames
/// handed over (before waiting for more, and at the end of the stream), so
/// that frames passed on elsewhere can be passed on in batches. An error
/// from either callback kills the group, waits for it, and is returned.
pub fn supervise(
    timeout: Duration,
    body: impl FnOnce(OwnedFd, Instant),
    on_frame: &mut dyn FnMut(u8, &[u8]) -> anyhow::Result<()>,
    on_drained: &mut dyn FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Supervised> {
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC).context("pipe2 for the runner")?;
    let start = Instant::now();
    // SAFETY: the child only runs `body`, which the executor writes to be
    // safe after fork: it allocates through glibc's malloc (fork-safe: the
    // arenas are reset in the child) and takes no lock another caller
    // thread could hold, and it leaves with _exit.
    let runner = match unsafe { fork() }.context("fork the runner")? {
        ForkResult::Child => {
            drop(read_end);
            // Own process group, so one killpg reaches the runner and all
            // its children.
            let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
            body(write_end, start);
            // SAFETY: leaves the forked copy without running the caller's
            // destructors or atexit handlers.
            unsafe { libc::_exit(127) }
        }
        ForkResult::Parent { child } => child,
    };
    // Both sides set the group, whichever runs first (the classic race).
    let _ = setpgid(runner, runner);
    drop(write_end);
    let pidfd = pidfd_open(runner)?;
    let mut pipe = File::from(read_end);
    nix::fcntl::fcntl(&pipe, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
        .context("make the runner pipe non-blocking")?;

    let deadline = start + timeout;
    let mut reader = FrameReader::default();
    let mut timed_out = false;
    let mut failure: Option<anyhow::Error> = None;
    'stream: loop {
        let now = Instant::now();
        if now >= deadline {
            timed_out = true;
            break;
        }
        let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, poll_timeout(deadline - now)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                failure = Some(anyhow::Error::new(e).context("poll the runner pipe"));
                break;
            }
        }
        loop {
            match reader.fill_from(&mut pipe) {
                Ok(0) => {
                    if let Err(e) = on_drained() {
                        failure = Some(e);
                    }
                    break 'stream;
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if let Err(e) = on_drained() {
                        failure = Some(e);
                        break 'stream;
                    }
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    failure = Some(anyhow::Error::new(e).context("read the runner pipe"));
                    break 'stream;
                }
            }
            loop {
                let frame = match reader.next_frame() {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(e) => {
                        failure = Some(e);
                        break 'stream;
                    }
                };
                if let Err(e) = on_frame(frame.0, frame.1) {
                    failure = Some(e);
                    break 'stream;
                }
            }
            // A runner that writes as fast as it is read must not keep the
            // caller from its deadline (seen with the runner at a higher
            // priority than the caller).
            if Instant::now() >= deadline {
                timed_out = true;
                break 'stream;
            }
        }
    }
    let stream_end = Instant::now();
    if timed_out || failure.is_some() {
        let _ = killpg(runner, Signal::SIGKILL);
    }
    // Wait for the runner until the deadline, then kill and grant a grace.
    let mut exited = wait_readable(&pidfd, deadline.max(Instant::now()))?;
    if !exited {
        timed_out = true;
        let _ = killpg(runner, Signal::SIGKILL);
        exited = wait_readable(&pidfd, Instant::now() + KILL_GRACE)?;
    }
    // Leftover children: killed while the runner's zombie pins the group.
    let _ = killpg(runner, Signal::SIGKILL);
    let (status, orphans_reaped, unreaped) = if exited {
        reap_group(runner, Instant::now() + KILL_GRACE)
    } else {
        (None, 0, true)
    };
    let supervised = Supervised {
        timed_out,
        status,
        orphans_reaped,
        unreaped,
        truncated: reader.pending(),
        elapsed: start.elapsed(),
        reaping: stream_end.elapsed(),
        stream_end,
    };
    match failure {
        Some(e) => Err(e),
        None => Ok(supervised),
    }
}

fn poll_timeout(left: Duration) -> PollTimeout {
    // Round up so the loop does not spin on a sub-millisecond remainder.
    let ms = left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}

fn pidfd_open(pid: Pid) -> anyhow::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("pidfd_open({pid}) (Linux 5.3 or later is needed)"));
    }
    // SAFETY: the syscall returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Wait until the pidfd reports the process exited or `until` passes.
fn wait_readable(pidfd: &OwnedFd, until: Instant) -> anyhow::Result<bool> {
    loop {
        let now = Instant::now();
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        let left = until.saturating_duration_since(now);
        match poll(&mut fds, poll_timeout(left)) {
            Ok(n) if n > 0 => return Ok(true),
            Ok(_) if now >= until => return Ok(false),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                return Err(e).with_context(|| format!("poll pidfd {}", pidfd.as_raw_fd()));
            }
        }
    }
}

/// Reap the runner and every other member of its group.
fn reap_group(runner: Pid, until: Instant) -> (Option<WaitStatus>, usize, bool) {
    let mut status = None;
    let mut orphans = 0;
    let group = Pid::from_raw(-runner.as_raw());
    let mut nap = Duration::from_micros(100);
    loop {
        match waitpid(group, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                if Instant::now() >= until {
                    return (status, orphans, true);
                }
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(50));
            }
            Ok(s) => {
                if s.pid() == Some(runner) {
                    status = Some(s);
                } else {
                    orphans += 1;
                }
            }
            Err(Errno::EINTR) => {}
            // ECHILD: nobody left in the group that is ours to reap.
            Err(_) => return (status, orphans, false),
        }
    }
}

/// Check that nothing would auto-reap the runner: with SIGCHLD ignored
/// the kernel discards exit statuses and `waitpid` cannot see the runner end.
pub fn check_sigchld() -> anyhow::Result<()> {
    // SAFETY: querying (not changing) a disposition with a null new action.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a sigaction to fill; no new action.
    let rc = unsafe { libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut old) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("sigaction(SIGCHLD) query");
    }
    if old.sa_sigaction == libc::SIG_IGN || old.sa_flags & libc::SA_NOCLDWAIT != 0 {
        bail!(
            "SIGCHLD is ignored (or SA_NOCLDWAIT is set) in this process: the executor could \
             not reap its runner; restore the default disposition"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::exec::frame::{self, FaultRecord, KIND_DONE, KIND_FAULT, KIND_STEP};

    fn exit_now(code: i32) -> ! {
        // SAFETY: ends the forked test runner without running the test
        // harness's destructors.
        unsafe { libc::_exit(code) }
    }

    fn setup() {
        crate::exec::prepare_caller().unwrap();
    }

    #[test]
    fn frames_arrive_and_the_runner_is_reaped() {
        setup();
        let seen = std::cell::RefCell::new(Vec::new());
        let mut drained_after = Vec::new();
        let sup = supervise(
            Duration::from_secs(20),
            |fd, _| {
                let mut out = File::from(fd);
                let mut buf = Vec::new();
                for i in 0..3u32 {
                    frame::encode(KIND_STEP, &i, &mut buf).unwrap();
                }
                frame::encode(KIND_DONE, &(), &mut buf).unwrap();
                out.write_all(&buf).unwrap();
                exit_now(0)
            },
            &mut |kind, payload| {
                seen.borrow_mut().push((kind, payload.to_vec()));
                Ok(())
            },
            &mut || {
                drained_after.push(seen.borrow().len());
                Ok(())
            },
        )
        .unwrap();
        assert!(!sup.timed_out && !sup.unreaped);
        assert!(
            matches!(sup.status, Some(WaitStatus::Exited(_, 0))),
            "{:?}",
            sup.status
        );
        let seen = seen.into_inner();
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[2], (KIND_STEP, vec![2]));
        assert_eq!(seen[3].0, KIND_DONE);
        // Told when the pipe ran dry, the last time at the end of the
        // stream with every frame handed over.
        assert_eq!(drained_after.last(), Some(&4));
    }

    #[test]
    fn a_hung_runner_and_its_children_are_killed_at_the_deadline() {
        setup();
        let start = Instant::now();
        let sup = supervise(
            Duration::from_millis(300),
            |_fd, _| {
                // A grandchild that would outlive the runner, as a forked
                // program child would.
                // SAFETY: single-threaded forked test process.
                if let Ok(ForkResult::Child) = unsafe { fork() } {
                    loop {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            },
            &mut |_, _| Ok(()),
            &mut || Ok(()),
        )
        .unwrap();
        assert!(sup.timed_out);
        assert!(!sup.unreaped);
        assert!(matches!(
            sup.status,
            Some(WaitStatus::Signaled(_, Signal::SIGKILL, _))
        ));
        assert_eq!(sup.orphans_reaped, 1, "the grandchild is reaped too");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_runner_that_never_stops_writing_is_killed_at_the_deadline() {
        setup();
        let start = Instant::now();
        let mut frames = 0u64;
        let sup = supervise(
            Duration::from_millis(300),
            |fd, _| {
                let mut out = File::from(fd);
                let mut buf = Vec::new();
                frame::encode(KIND_STEP, &[7u8; 64][..], &mut buf).unwrap();
                loop {
                    let _ = out.write_all(&buf);
                }
            },
            &mut |_, _| {
                frames += 1;
                Ok(())
            },
            &mut || Ok(()),
        )
        .unwrap();
        assert!(sup.timed_out);
        assert!(frames > 0);
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn an_unexpected_segv_is_reported_by_the_handler() {
        setup();
        let mut fault = None;
        let sup = supervise(
            Duration::from_secs(20),
            |fd, _| {
                crate::exec::fault::install(fd.as_raw_fd()).unwrap();
                std::mem::forget(fd);
                // SAFETY: deliberately invalid: this test checks that an
                // unexpected SIGSEGV is caught and reported.
                unsafe { (16 as *mut u8).write_volatile(1) };
                exit_now(0)
            },
            &mut |kind, payload| {
                assert_eq!(kind, KIND_FAULT);
                fault = Some(FaultRecord::from_payload(payload)?);
                Ok(())
            },
            &mut || Ok(()),
        )
        .unwrap();
        let fault = fault.expect("a fault frame");
        assert_eq!((fault.signo, fault.addr), (libc::SIGSEGV, 16));
        assert!(matches!(
            sup.status,
            Some(WaitStatus::Exited(_, crate::exec::fault::FAULT_EXIT_CODE))
        ));
    }

    #[test]
    fn a_failing_frame_handler_stops_the_run() {
        setup();
        let err = supervise(
            Duration::from_secs(20),
            |fd, _| {
                let mut out = File::from(fd);
                let mut buf = Vec::new();
                frame::encode(KIND_STEP, &1u8, &mut buf).unwrap();
                out.write_all(&buf).unwrap();
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            },
            &mut |_, _| anyhow::bail!("sink is full"),
            &mut || Ok(()),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "sink is full");
    }
}
