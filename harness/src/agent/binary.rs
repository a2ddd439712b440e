//! `Request::RunBinary`: run an executable the host sent, with a deadline.
//!
//! The executable is written to `/tmp/pinfuzz-bin/<name>` (mode 0700;
//! `/tmp` is the agent's tmpfs, mounted without `noexec`) and run in its own
//! process group, so a timeout kills it and everything it forked at once.
//! Standard output and error share one pipe, so their lines interleave as
//! the program wrote them. The agent is a child subreaper: grandchildren
//! that outlive the executable are reaped between requests.
//!
//! The process inherits the agent's `PR_SET_THP_DISABLE` (it survives
//! `execve`); a program that needs THPs must clear it itself, as the C
//! reproducers do.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Pid, pipe2};

use crate::channel::BinaryRun;

/// Where executables are written.
pub const BIN_DIR: &str = "/tmp/pinfuzz-bin";

/// Write `binary` as `name`, run it with `args` within `timeout`.
pub fn run(name: &str, binary: &[u8], args: &[String], timeout: Duration) -> Result<BinaryRun> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        bail!("bad executable name {name:?}: a plain file name is needed");
    }
    fs::create_dir_all(BIN_DIR).with_context(|| format!("mkdir {BIN_DIR}"))?;
    let path = PathBuf::from(BIN_DIR).join(name);
    // A fresh file each time: an executable still running elsewhere would
    // make writing over it fail with ETXTBSY.
    let _ = fs::remove_file(&path);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .open(&path)
        .and_then(|mut f| f.write_all(binary))
        .with_context(|| format!("write {}", path.display()))?;

    let (read_end, write_end) =
        pipe2(OFlag::O_CLOEXEC).context("pipe for the executable's output")?;
    let stderr = write_end
        .try_clone()
        .context("dup the output pipe for stderr")?;
    let started = Instant::now();
    let mut command = Command::new(&path);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(write_end)
        .stderr(stderr)
        .process_group(0);
    let mut child =
        spawn_written(&mut command).with_context(|| format!("spawn {}", path.display()))?;
    // The command holds this process's copies of the pipe's write end:
    // without dropping it the reader below never sees end-of-file.
    drop(command);
    let pgid = Pid::from_raw(child.id() as i32);

    let mut out = BinaryRun::default();
    let mut reader = std::fs::File::from(read_end);
    let mut buf = vec![0u8; 64 << 10];
    let deadline = started + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            out.timed_out = true;
            break;
        }
        let ms = u16::try_from(left.as_millis().min(1000)).unwrap_or(1000);
        let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("poll the executable's output"),
        }
        let n = match reader.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("read the executable's output"),
        };
        if n == 0 {
            break; // every writer is gone: the executable and its children
        }
        let room = BinaryRun::MAX_OUTPUT - out.output.len();
        out.output.extend_from_slice(&buf[..n.min(room)]);
        out.truncated |= n > room;
    }
    if out.timed_out {
        // The whole group: the executable and whatever it forked.
        let _ = killpg(pgid, Signal::SIGKILL);
    }
    let status = child
        .wait()
        .with_context(|| format!("wait for {}", path.display()))?;
    out.wall_ns = started.elapsed().as_nanos() as u64;
    out.exit_code = status.code();
    out.signal = status.signal();
    let _ = fs::remove_file(&path);
    Ok(out)
}

/// Spawn an executable this process has just written. Another thread's
/// fork may still hold the file's (close-on-exec) write descriptor until
/// its child execs, and exec of a file open for writing fails with
/// `ETXTBSY`: retry for a short while (rust-lang/rust#114554).
fn spawn_written(command: &mut Command) -> std::io::Result<std::process::Child> {
    let mut tries = 0;
    loop {
        match command.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_tool(name: &str) -> Vec<u8> {
        fs::read(format!("/bin/{name}")).unwrap_or_else(|e| panic!("read /bin/{name}: {e}"))
    }

    #[test]
    fn output_and_status_come_back() {
        let args = [
            "-c".to_string(),
            "echo out; echo err >&2; exit 3".to_string(),
        ];
        let run = run("t-sh", &host_tool("sh"), &args, Duration::from_secs(20)).unwrap();
        assert_eq!(run.exit_code, Some(3));
        assert_eq!(run.signal, None);
        assert!(!run.timed_out && !run.truncated);
        assert_eq!(String::from_utf8_lossy(&run.output), "out\nerr\n");
    }

    #[test]
    fn a_timeout_kills_the_whole_group() {
        // The shell forks a sleep that holds the pipe: both must go.
        let args = [
            "-c".to_string(),
            "sleep 30 & sleep 30; echo never".to_string(),
        ];
        let t0 = Instant::now();
        let run = run("t-sh2", &host_tool("sh"), &args, Duration::from_millis(300)).unwrap();
        assert!(run.timed_out);
        assert_eq!(run.signal, Some(libc::SIGKILL));
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
        assert!(run.output.is_empty());
    }

    #[test]
    fn names_with_paths_are_refused() {
        for bad in ["", "a/b", "..", "."] {
            let err = run(bad, b"", &[], Duration::from_secs(1)).unwrap_err();
            assert!(err.to_string().contains("bad executable name"), "{err}");
        }
    }
}
