//! Forked children: a small synchronous command server, and the runner's
//! link to it.
//!
//! `Op::Fork` forks the runner. The child inherits every mapping, the open
//! `/dev/pinfuzz` (the handle table is per open file, so the child's GUP
//! calls land in the same table the runner queries) and the fault handler.
//! It closes every descriptor it does not own, then serves [`Cmd`]s read
//! from its command pipe, one at a time, answering each on its reply pipe
//! before reading the next: nothing runs in a child while the runner
//! observes. `Cmd::Exit` makes it `_exit(0)`; the runner then reaps it with
//! `waitpid`, which returns only after the child's mm is torn down, so the
//! next observation sees the pages the child unmapped by exiting.
//!
//! The runner is single-threaded (it is itself a forked copy of one thread
//! of the caller), so forking it is safe, and a child never returns into
//! runner code: every path out of [`serve`] is `_exit`.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use anyhow::{Context, bail};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe2};
use serde::{Deserialize, Serialize};

use super::fault;
use super::frame::{self, FaultRecord, KIND_CMD, KIND_FAULT, KIND_REPLY};
use super::ops::{self, Cmd, Outcome};
use crate::uapi::PinfuzzDev;

/// A child's answer to one command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The child finished its setup and waits for commands.
    Ready,
    /// The command ran.
    Done(Outcome),
    /// The command could not be run (an executor error, with its causes).
    Failed(String),
}

/// The runner's end of one child.
#[derive(Debug)]
pub struct ChildLink {
    pid: Pid,
    to_child: File,
    from_child: File,
    buf: Vec<u8>,
}

impl ChildLink {
    /// The child's pid.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The descriptors a later child must close.
    pub fn fds(&self) -> [RawFd; 2] {
        [self.to_child.as_raw_fd(), self.from_child.as_raw_fd()]
    }

    fn send(&mut self, cmd: &Cmd) -> anyhow::Result<()> {
        self.buf.clear();
        frame::encode(KIND_CMD, cmd, &mut self.buf)?;
        self.to_child
            .write_all(&self.buf)
            .with_context(|| format!("send {cmd:?} to child pid {}", self.pid))
    }

    fn receive(&mut self) -> anyhow::Result<Reply> {
        let pid = self.pid;
        match frame::read_frame(&mut self.from_child, &mut self.buf)
            .with_context(|| format!("read the reply of child pid {pid}"))?
        {
            Some(KIND_REPLY) => postcard::from_bytes(&self.buf)
                .with_context(|| format!("decode the reply of child pid {pid}")),
            Some(KIND_FAULT) => bail!("child: {}", FaultRecord::from_payload(&self.buf)?),
            Some(kind) => bail!("child pid {pid} sent a frame of kind {kind}"),
            None => {
                let status = waitpid(pid, None);
                bail!("child pid {pid} closed its reply pipe without answering ({status:?})")
            }
        }
    }

    /// Run `cmd` in the child and wait for its outcome.
    pub fn call(&mut self, cmd: &Cmd) -> anyhow::Result<Outcome> {
        self.send(cmd)?;
        match self.receive()? {
            Reply::Done(outcome) => Ok(outcome),
            Reply::Failed(message) => Err(anyhow::anyhow!(message))
                .with_context(|| format!("child pid {}: {cmd:?}", self.pid)),
            Reply::Ready => bail!("child pid {} answered Ready to {cmd:?}", self.pid),
        }
    }

    /// Make the child `_exit(0)` and reap it; returns once its mm is gone.
    pub fn exit(mut self) -> anyhow::Result<()> {
        self.send(&Cmd::Exit)?;
        let status = waitpid(self.pid, None)
            .with_context(|| format!("waitpid for child pid {}", self.pid))?;
        match status {
            WaitStatus::Exited(_, 0) => Ok(()),
            other => bail!(
                "child pid {} ended with {other:?} instead of exit status 0",
                self.pid
            ),
        }
    }
}

/// Fork a child that serves commands. `Ok(Err(errno))` if `fork` itself
/// failed (a result of the program's `Op::Fork`); `close_in_child` lists
/// the runner's descriptors the child must not keep (the caller's pipe,
/// other children's links).
pub fn spawn(
    dev: &PinfuzzDev,
    close_in_child: &[RawFd],
) -> anyhow::Result<Result<ChildLink, Errno>> {
    let (cmd_r, cmd_w) = pipe2(OFlag::O_CLOEXEC).context("pipe2 for a child's commands")?;
    let (reply_r, reply_w) = pipe2(OFlag::O_CLOEXEC).context("pipe2 for a child's replies")?;
    // SAFETY: the runner is single-threaded (see the module comment), so
    // the child starts with consistent locks and allocator state.
    match unsafe { fork() } {
        Err(errno) => Ok(Err(errno)),
        Ok(ForkResult::Child) => {
            drop(cmd_w);
            drop(reply_r);
            serve(dev, close_in_child, cmd_r, reply_w)
        }
        Ok(ForkResult::Parent { child }) => {
            drop(cmd_r);
            drop(reply_w);
            let mut link = ChildLink {
                pid: child,
                to_child: File::from(cmd_w),
                from_child: File::from(reply_r),
                buf: Vec::with_capacity(256),
            };
            match link.receive()? {
                Reply::Ready => Ok(Ok(link)),
                other => bail!("child pid {child} started with {other:?} instead of Ready"),
            }
        }
    }
}

/// The child's main loop; never returns.
fn serve(dev: &PinfuzzDev, close_in_child: &[RawFd], cmds: OwnedFd, replies: OwnedFd) -> ! {
    for &fd in close_in_child {
        // SAFETY: these descriptors belong to the runner; this copy of them
        // is closed once and never used again in the child.
        unsafe { libc::close(fd) };
    }
    fault::set_report_fd(replies.as_raw_fd());
    let mut cmds = File::from(cmds);
    let mut replies = File::from(replies);
    let mut buf = Vec::with_capacity(256);
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> anyhow::Result<()> {
            reply(&mut replies, &mut buf, &Reply::Ready)?;
            loop {
                let Some(kind) = frame::read_frame(&mut cmds, &mut buf)? else {
                    // The runner is gone: nothing left to serve.
                    bail!("command pipe closed");
                };
                if kind != KIND_CMD {
                    bail!("frame of kind {kind} on the command pipe");
                }
                let cmd: Cmd = postcard::from_bytes(&buf).context("decode a command")?;
                if cmd == Cmd::Exit {
                    return Ok(());
                }
                let answer = match ops::execute(&cmd, dev) {
                    Ok(outcome) => Reply::Done(outcome),
                    Err(err) => Reply::Failed(format!("{err:#}")),
                };
                reply(&mut replies, &mut buf, &answer)?;
            }
        }));
    let code = match result {
        Ok(Ok(())) => 0,
        Ok(Err(err)) => {
            let _ = reply(&mut replies, &mut buf, &Reply::Failed(format!("{err:#}")));
            1
        }
        Err(_) => {
            let _ = reply(
                &mut replies,
                &mut buf,
                &Reply::Failed("child panicked".into()),
            );
            101
        }
    };
    // SAFETY: _exit ends this process without running the runner's (or the
    // caller's) atexit handlers or destructors, which belong to them.
    unsafe { libc::_exit(code) }
}

fn reply(out: &mut File, buf: &mut Vec<u8>, reply: &Reply) -> anyhow::Result<()> {
    buf.clear();
    frame::encode(KIND_REPLY, reply, buf)?;
    out.write_all(buf).context("write a reply to the runner")
}
