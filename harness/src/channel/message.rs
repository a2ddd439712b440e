//! Messages: what the host asks the guest agent and what it answers.
//!
//! Every request gets one or more responses, in order, on the same
//! channel: [`Request::RunProgram`] is answered by one [`Response::Step`]
//! per executed step (each a delta from the step before) and then exactly one [`Response::RunDone`] (or a
//! [`Response::Error`]); every other request by exactly one response.
//! Programs travel as canonical program text, so the parser in
//! `harness::program` is the one place that decides what a program means.
//!
//! Extension point: a new request is a new variant at the end of
//! [`Request`] (plus its answer in [`Response`] if none fits) and a handler
//! module under `harness::agent`; bump
//! [`PROTOCOL_VERSION`](super::frame::PROTOCOL_VERSION) so an old agent
//! and a new host refuse each other with a clear error instead of
//! misreading postcard's variant indices.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::exec::RunSummary;
use crate::obs::delta::StepDelta;

/// What the host asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Identify yourself: answered by [`Response::Hello`].
    Hello,
    /// Liveness check: answered by [`Response::Pong`] with the same nonce.
    Ping {
        /// Echoed back.
        nonce: u64,
    },
    /// Run one program: answered by a stream of [`Response::Step`] and one
    /// [`Response::RunDone`].
    RunProgram {
        /// Host-chosen sequence number, echoed in the console markers
        /// (`pinfuzz: begin <seq>` / `pinfuzz: end <seq>`) so the host can
        /// attribute kernel messages to this program.
        seq: u64,
        /// Canonical program text.
        text: String,
        /// Wall-clock budget for the program inside the guest.
        timeout: Duration,
    },
    /// Write bytes to a file in the guest, e.g. `c` to
    /// `/proc/sysrq-trigger` to make the kernel panic on purpose (tests of
    /// crash detection). Answered by [`Response::Done`].
    WriteFile {
        /// Absolute path in the guest.
        path: String,
        /// Bytes to write.
        data: Vec<u8>,
    },
    /// Sync the console and power the guest off (`reboot(RB_POWER_OFF)`).
    /// Answered by [`Response::Done`] just before the power-off.
    PowerOff,
    /// Run an executable the host sends (a C reproducer, the bench
    /// baseline): written to `/tmp/pinfuzz-bin/<name>` (mode 0700), run in
    /// its own process group with `args`, stdin `/dev/null`, stdout and
    /// stderr into one pipe. Answered by [`Response::BinaryDone`]. The
    /// console markers of [`Request::RunProgram`] surround it (with `seq`).
    RunBinary {
        /// Host-chosen sequence number for the console markers.
        seq: u64,
        /// File name in the guest (no `/`).
        name: String,
        /// The executable; static, as the initramfs holds no libc.
        binary: Vec<u8>,
        /// Arguments after `argv[0]`.
        args: Vec<String>,
        /// Wall-clock budget; the process group is killed (SIGKILL) after it.
        timeout: Duration,
    },
}

impl Request {
    /// Short name for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Hello => "Hello",
            Request::Ping { .. } => "Ping",
            Request::RunProgram { .. } => "RunProgram",
            Request::WriteFile { .. } => "WriteFile",
            Request::PowerOff => "PowerOff",
            Request::RunBinary { .. } => "RunBinary",
        }
    }
}

/// What the agent answers.
///
/// The order of the variants is the wire format (postcard encodes a
/// variant as its index): [`Response::STEP_TAG`] depends on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Answer to [`Request::Hello`].
    Hello(HelloInfo),
    /// Answer to [`Request::Ping`].
    Pong {
        /// The request's nonce.
        nonce: u64,
    },
    /// One executed step of a [`Request::RunProgram`]: its observation
    /// as a delta from the previous step's (`obs::delta::StepDecoder`
    /// rebuilds the whole observations).
    Step(Box<StepDelta>),
    /// End of a [`Request::RunProgram`]: the executor's summary.
    RunDone(RunSummary),
    /// A request without a payload in its answer succeeded.
    Done,
    /// The request failed; the agent goes on serving.
    Error {
        /// [`Request::name`] of the failed request.
        request: String,
        /// The error with its causes (`{:#}` of an `anyhow::Error`).
        message: String,
    },
    /// Answer to [`Request::RunBinary`]: how the executable ended.
    BinaryDone(BinaryRun),
}

impl Response {
    /// The postcard tag of [`Response::Step`] (its variant index, one
    /// varint byte): a step's payload is this byte, then the postcard
    /// encoding of its `StepDelta` (`Channel::send_step_encoded`).
    pub const STEP_TAG: u8 = 2;
}

/// How an executable run by [`Request::RunBinary`] ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryRun {
    /// Exit status, if it exited.
    pub exit_code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// It was still running at the timeout and was killed.
    pub timed_out: bool,
    /// Standard output and error as they interleaved, at most
    /// [`BinaryRun::MAX_OUTPUT`] bytes.
    pub output: Vec<u8>,
    /// Output past [`BinaryRun::MAX_OUTPUT`] was dropped.
    pub truncated: bool,
    /// Spawn to exit, in ns (guest clock).
    pub wall_ns: u64,
}

impl BinaryRun {
    /// Most output bytes kept.
    pub const MAX_OUTPUT: usize = 16 << 20;

    /// Exited with status 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// The agent's identity and the state of the guest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloInfo {
    /// `CARGO_PKG_VERSION` of the agent.
    pub agent_version: String,
    /// The agent's [`PROTOCOL_VERSION`](super::frame::PROTOCOL_VERSION).
    pub protocol_version: u16,
    /// `uname -r` of the guest kernel.
    pub kernel_release: String,
    /// The helper module.
    pub module: ModuleInfo,
    /// Time since the kernel started when the agent printed READY
    /// (`/proc/uptime`), in milliseconds.
    pub ready_uptime_ms: u64,
    /// Time since the kernel started when this Hello was answered, in milliseconds.
    pub uptime_ms: u64,
    /// Errors the agent met while setting up the guest (it keeps serving
    /// so the host can read them).
    pub setup_errors: Vec<String>,
}

/// The helper module as the agent loaded it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleInfo {
    /// Parameters passed to `finit_module` (from `pinfuzz.*=` on the kernel command line).
    pub params: String,
    /// `finit_module` succeeded and the device node exists.
    pub loaded: bool,
    /// `PINFUZZ_IOC_STATUS` of a fresh open file, if the module answered.
    pub status: Option<ModuleStatus>,
    /// Why there is no status (load failure, open or ioctl error).
    pub error: Option<String>,
}

/// `struct pinfuzz_status` (`kmod/pinfuzz.h`), as the module reported it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleStatus {
    /// `PINFUZZ_ABI_VERSION` of the loaded module.
    pub abi_version: u32,
    /// `PINFUZZ_FAULT_*` mode the module was loaded with.
    pub fault: u32,
    /// References held by all open files (should be 0 between programs).
    pub pages_held_total: u64,
}
