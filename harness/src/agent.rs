//! The guest agent: `/init` (pid 1) of the pinfuzz guest.
//!
//! Contract: mount the pseudo file systems, load the helper module with
//! the `pinfuzz.*` parameters of the kernel command line, apply the fixed
//! guest settings, open the virtio-serial port `org.pinfuzz.0`, print
//! [`READY_PREFIX`] on the console, then serve [`Request`]s until
//! [`Request::PowerOff`]. Pid 1 must never exit (the kernel would panic
//! with "Attempted to kill init"): every error is caught and reported —
//! setup errors in `Hello`, request errors as [`Response::Error`], panics
//! of a handler likewise — and only an unusable port ends the agent, with
//! [`FATAL_PREFIX`] on the console and a clean power-off.
//!
//! Kernel messages printed while a program runs are attributed to it by
//! two markers written to `/dev/kmsg` (so they are ordered with the
//! kernel's own messages on the console): [`begin_marker`] before the first
//! step and [`end_marker`] before the final response.

pub mod binary;
pub mod init;
pub mod port;
pub mod swap;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::channel::{
    Channel, ChannelError, FrameError, HelloInfo, ModuleInfo, ModuleStatus, PROTOCOL_VERSION,
    Request, Response,
};
use crate::exec::{self, ExecConfig, Settings, StepSink};
use crate::op::Program;
use crate::uapi::PinfuzzDev;
use port::Port;

/// The agent prints this, then ` version=… protocol=… uptime_ms=…`, when it serves.
pub const READY_PREFIX: &str = "pinfuzz-agent: READY";
/// The agent prints this before powering off because it cannot go on.
pub const FATAL_PREFIX: &str = "pinfuzz-agent: FATAL";
/// Prefix of the agent's own error lines on the console.
pub const ERROR_PREFIX: &str = "pinfuzz-agent: error:";

/// Print a line on the console. Unlike `println!`, never panics: pid 1
/// must survive a console write error (it would have nowhere to report it).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, $($arg)*);
        let _ = out.flush();
    }};
}

/// The console line that opens program `seq`'s kernel messages.
pub fn begin_marker(seq: u64) -> String {
    format!("pinfuzz: begin {seq}")
}

/// The console line that closes program `seq`'s kernel messages.
pub fn end_marker(seq: u64) -> String {
    format!("pinfuzz: end {seq}")
}

/// Run as pid 1; never returns.
pub fn run_as_init() -> ! {
    let outcome = panic::catch_unwind(boot_and_serve);
    let why = match outcome {
        Ok(Ok(())) => "serving loop ended".to_string(),
        Ok(Err(err)) => format!("{err:#}"),
        Err(_) => "panic outside a request handler".to_string(),
    };
    say!("{FATAL_PREFIX}: {why}");
    power_off()
}

/// Sync and power off; if even that fails, sleep forever rather than exit.
fn power_off() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

struct Agent {
    chan: Channel<Port>,
    kmsg: Option<File>,
    hello: HelloInfo,
}

fn boot_and_serve() -> Result<()> {
    let mut setup_errors: Vec<String> = init::mount_filesystems()
        .into_iter()
        .map(|e| format!("{e:#}"))
        .collect();
    // Right after /proc exists, before the heap grows: no THPs in the
    // agent, which would show up in a program's THP counters (see
    // exec::prepare_caller).
    if let Err(err) = exec::prepare_caller() {
        setup_errors.push(format!("prepare_caller: {err:#}"));
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let mut module = ModuleInfo {
        params: init::module_params(&cmdline),
        ..ModuleInfo::default()
    };
    for extra in init::extra_modules() {
        if let Err(err) = init::load_module(&extra, "") {
            setup_errors.push(format!("{err:#}"));
        }
    }
    match init::load_module(Path::new(init::MODULE_PATH), &module.params) {
        Ok(()) => module.loaded = Path::new(init::DEVICE_PATH).exists(),
        Err(err) => module.error = Some(format!("{err:#}")),
    }
    if module.loaded {
        match module_status(Path::new(init::DEVICE_PATH)) {
            Ok(status) => module.status = Some(status),
            Err(err) => module.error = Some(format!("{err:#}")),
        }
    }
    // Swap, when asked for (GuestOptions::swap_mib): after the extra
    // modules, which include zram.
    if let Some(mib) = init::agent_param(&cmdline, "swap_mib") {
        let result = mib
            .parse::<u32>()
            .with_context(|| format!("pinfuzz_agent.swap_mib={mib} is not a number"))
            .and_then(swap::setup_zram);
        if let Err(err) = result {
            setup_errors.push(format!("swap: {err:#}"));
        }
    }
    // `pinfuzz_agent.mm=kernel` (GuestOptions::kernel_mm_settings) keeps
    // the kernel's own memory-management settings, for guests that run
    // other test suites (the kernel's selftests) instead of programs.
    if init::agent_param(&cmdline, "mm") != Some("kernel") {
        if let Err(err) = exec::prepare_guest(&Settings::default()) {
            setup_errors.push(format!("prepare_guest: {err:#}"));
        }
    }
    for err in &setup_errors {
        say!("{ERROR_PREFIX} {err}");
    }
    let node = port::find_port(port::PORT_NAME, Duration::from_secs(10))?;
    let port = Port::open(&node)?;
    let kmsg = OpenOptions::new().write(true).open("/dev/kmsg").ok();
    let ready_uptime_ms = init::uptime_ms().unwrap_or(0);
    let version = env!("CARGO_PKG_VERSION");
    say!(
        "{READY_PREFIX} version={version} protocol={PROTOCOL_VERSION} uptime_ms={ready_uptime_ms}"
    );
    let hello = HelloInfo {
        agent_version: version.to_string(),
        protocol_version: PROTOCOL_VERSION,
        kernel_release: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        module,
        ready_uptime_ms,
        uptime_ms: 0,
        setup_errors,
    };
    let mut agent = Agent {
        chan: Channel::new(port),
        kmsg,
        hello,
    };
    agent.serve()
}

impl Agent {
    /// Serve requests until power-off; returns only if the port is unusable.
    fn serve(&mut self) -> Result<()> {
        let mut consecutive_errors = 0u32;
        loop {
            reap_orphans();
            let request = match self.chan.recv_request() {
                Ok(request) => request,
                Err(err) => {
                    consecutive_errors += 1;
                    if let ChannelError::Frame(FrameError::Io(io)) = &err {
                        if consecutive_errors > 3 {
                            return Err(anyhow::anyhow!("virtio port read failed: {io}"));
                        }
                    }
                    say!("{ERROR_PREFIX} bad request: {err}");
                    // The stream is out of sync: drop what is buffered and
                    // tell the host, which restarts the guest.
                    self.chan.reset();
                    let _ = self.chan.send(&Response::Error {
                        request: "?".into(),
                        message: err.to_string(),
                    });
                    if consecutive_errors > 100 {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    continue;
                }
            };
            consecutive_errors = 0;
            let name = request.name();
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| self.handle(request)));
            let failure = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(err)) => Some(format!("{err:#}")),
                Err(payload) => Some(format!("handler panicked: {}", panic_message(&*payload))),
            };
            if let Some(message) = failure {
                say!("{ERROR_PREFIX} {name}: {message}");
                self.chan
                    .send(&Response::Error {
                        request: name.to_string(),
                        message,
                    })
                    .context("send error response")?;
            }
        }
    }

    fn handle(&mut self, request: Request) -> Result<()> {
        match request {
            Request::Hello => {
                let mut hello = self.hello.clone();
                hello.uptime_ms = init::uptime_ms().unwrap_or(0);
                self.chan.send(&Response::Hello(hello))?;
            }
            Request::Ping { nonce } => self.chan.send(&Response::Pong { nonce })?,
            Request::RunProgram { seq, text, timeout } => self.run_program(seq, &text, timeout)?,
            Request::WriteFile { path, data } => {
                std::fs::write(&path, &data).with_context(|| format!("write {path}"))?;
                self.chan.send(&Response::Done)?;
            }
            Request::PowerOff => {
                self.chan.send(&Response::Done)?;
                power_off();
            }
            Request::RunBinary {
                seq,
                name,
                binary,
                args,
                timeout,
            } => {
                self.kmsg_line(&begin_marker(seq));
                let result = binary::run(&name, &binary, &args, timeout);
                self.kmsg_line(&end_marker(seq));
                self.chan.send(&Response::BinaryDone(result?))?;
            }
        }
        Ok(())
    }

    fn run_program(&mut self, seq: u64, text: &str, timeout: Duration) -> Result<()> {
        let started = std::time::Instant::now();
        self.kmsg_line(&begin_marker(seq));
        let result = parse_program(text).and_then(|program| {
            let chan = &mut self.chan;
            let mut sink = StepBatcher {
                chan,
                frames: Vec::new(),
            };
            exec::run_program_encoded(&program, &ExecConfig::guest(), timeout, &mut sink)
        });
        // The end marker goes out before the final response, so when the
        // host has the response it only has to wait for console lines
        // already printed.
        self.kmsg_line(&end_marker(seq));
        let mut summary = result?;
        summary.timing.agent_ns = started.elapsed().as_nanos() as u64;
        self.chan.send(&Response::RunDone(summary))?;
        Ok(())
    }

    /// Write one line into the kernel log at KERN_ERR, so it reaches the
    /// console at any loglevel above 3 and sorts among kernel messages.
    fn kmsg_line(&mut self, line: &str) {
        let written = self
            .kmsg
            .as_mut()
            .map(|kmsg| kmsg.write_all(format!("<3>{line}\n").as_bytes()));
        if !matches!(written, Some(Ok(()))) {
            say!("{line}");
        }
    }
}

/// Passes a run's steps to the host as the runner encoded them, batched.
///
/// Decoding and re-encoding each observation here was a large part of a
/// step's cost on a TCG guest, and so is each write to the virtio port
/// (some 200–600 µs, whatever its size: `pinfuzz bench`). The steps that
/// are waiting in the runner's pipe when the agent gets to read go out in
/// one write, once the executor has read them all ([`StepSink::flush`]).
/// Running the runner at nice −10 made such batches larger (`pinfuzz
/// bench` 0.59 instead of 0.56), but khugepaged collapsed programs' ranges
/// more often with it (docs/executor.md, "Step frames"), so the runner
/// keeps the agent's priority.
struct StepBatcher<'a> {
    chan: &'a mut Channel<Port>,
    frames: Vec<u8>,
}

impl StepSink for StepBatcher<'_> {
    fn step(&mut self, obs: &[u8]) -> Result<()> {
        crate::channel::push_step_frame(obs, &mut self.frames)
            .context("frame a step observation")?;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.frames.is_empty() {
            self.chan
                .send_frames(&self.frames)
                .context("send step observations")?;
            self.frames.clear();
        }
        Ok(())
    }
}

/// Parse program text with the strict parser (the one source of truth for
/// what a program means); errors carry line and column.
fn parse_program(text: &str) -> Result<Program> {
    Program::parse_strict(text, "<channel>").map_err(|e| anyhow::anyhow!("{e}"))
}

/// `PINFUZZ_IOC_STATUS` on a fresh open of the helper's device.
fn module_status(dev: &Path) -> Result<ModuleStatus> {
    let status = PinfuzzDev::open(dev)?
        .status()
        .map_err(|e| anyhow::anyhow!("PINFUZZ_IOC_STATUS on {}: {e}", dev.display()))?;
    Ok(ModuleStatus {
        abi_version: status.abi_version,
        fault: status.fault,
        pages_held_total: status.pages_held_total,
    })
}

/// Reap children that ended up with pid 1 (orphans of the executor's
/// runner processes), so zombies never pile up. Runs only between
/// requests: during a program the executor waits for its own children.
fn reap_orphans() {
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if matches!(status, WaitStatus::StillAlive) {
            break;
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}
