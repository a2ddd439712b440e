//! A supervised guest: boot, talk to the agent, run programs, detect
//! crashes, restart.
//!
//! Contract: [`Guest::run_program`] always comes back. Either the agent
//! answered ([`RunEnd::Finished`] or [`RunEnd::Failed`]) — possibly with
//! kernel incidents (WARNING, Bad page state, …) seen on the console
//! between the program's begin and end markers, after which the guest is
//! restarted before its next use — or the guest died or hung
//! ([`RunEnd::Crashed`]: kernel panic/oops, QEMU exit or kill, program
//! timeout, no output), reported with a console excerpt; the next use
//! boots a fresh guest. `Err` is for the host's own failures only
//! (QEMU cannot start, the guest cannot boot at all, the step callback
//! failed). Each guest has its own directory (socket, console logs), so
//! any number can run at once.

use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::accel::{self, Accel, Verdict};
use super::console::{self, CrashKind, CrashReport};
use super::initramfs;
use super::qemu::{Qemu, QemuConfig};
use crate::agent::{READY_PREFIX, end_marker};
use crate::channel::{BinaryRun, Channel, HelloInfo, Request, Response};
use crate::exec::RunSummary;
use crate::kernel::{Cache, KernelSpec};
use crate::obs::StepObs;
use crate::op::Program;

/// The kernel command line every guest gets (before module parameters
/// and `GuestOptions::extra_cmdline`):
/// - `console=ttyS0`: the serial console is what the host parses.
/// - `loglevel=5` instead of `quiet`: `quiet` sets the console loglevel
///   to 4, which hides KERN_WARNING (level 4) — and `WARN()` prints its
///   "WARNING: CPU: …" report at that level (kernel/panic.c: `__warn`).
///   Level 5 shows warnings and errors but not the boot chatter.
/// - `panic=-1`: reboot at once on panic, which `-no-reboot` turns into
///   QEMU exiting: a dead guest is noticed immediately.
/// - `oops=panic`: an oops leaves the kernel in an unknown state (locks
///   held, a killed task); make it a panic so it ends the guest cleanly.
///   `WARN()` does not panic (no `panic_on_warn`): the guest stays
///   usable, the host sees the WARNING and restarts the guest after the
///   program that caused it.
/// - `printk.devkmsg=on`: the agent's begin/end markers go through
///   `/dev/kmsg`, which is rate-limited to 10 lines per 5 s by default.
pub const BASE_CMDLINE: &str = "console=ttyS0 loglevel=5 panic=-1 oops=panic printk.devkmsg=on";

/// Kernel parameters that only make the guest boot faster under TCG
/// (measured with `initcall_debug`; see docs/kernels.md). None of them
/// touches memory management:
/// - `initcall_blacklist=…`: skip the slowest initcalls a pinfuzz guest
///   never needs: the jitter-entropy RNG self-test (~200 ms), BPF
///   struct_ops BTF setup (~290 ms), trace eval maps (~90 ms), and loading
///   the built-in X.509 certificates (~220 ms; the helper module is
///   unsigned anyway).
/// - `cryptomgr.notests`: no crypto self-tests at boot.
/// - `tsc=reliable no_timer_check`: no clocksource watchdog against the
///   emulated TSC, no IO-APIC timer check.
/// - `i8042.noaux i8042.nopnp`: no mouse port, no PnP probe of the
///   keyboard controller.
pub const SPEED_CMDLINE: &str = "initcall_blacklist=jent_mod_init,bpf_tcp_ca_kfunc_init,\
bpf_dummy_struct_ops_init,trace_eval_init,load_system_certificate_list cryptomgr.notests \
tsc=reliable no_timer_check i8042.noaux i8042.nopnp";

/// How a guest is set up.
#[derive(Clone, Debug)]
pub struct GuestOptions {
    /// Guest memory in MiB, not counting hugetlb pages and zram, which
    /// [`GuestOptions::guest_memory_mib`] adds.
    pub memory_mib: u32,
    /// Helper module parameter `fault=` (`PINFUZZ_FAULT_*`, 0 = none).
    pub fault: u32,
    /// Helper module parameter `gup_test=1` (the gup_test debugfs ABI).
    pub gup_test: bool,
    /// More kernel command line words.
    pub extra_cmdline: Vec<String>,
    /// Image modules to load before the helper (names from
    /// [`KernelSpec::extra_modules`], e.g. `zram`).
    pub extra_modules: Vec<String>,
    /// Accelerator (default: probe, see [`accel`]).
    pub accel: Accel,
    /// QEMU binary.
    pub qemu: PathBuf,
    /// Longest wait from QEMU start to the agent's READY line.
    pub boot_timeout: Duration,
    /// Longest time without console output or a response while the agent
    /// works on a request.
    pub no_output_timeout: Duration,
    /// Slack on top of a program's timeout before the host gives up on it
    /// (the agent enforces the timeout itself and normally answers first).
    pub timeout_grace: Duration,
    /// Fail the boot if the helper module did not load.
    pub require_module: bool,
    /// Boot the uncompressed vmlinux through PVH with the qboot firmware
    /// when both are available (about 3 s faster under TCG than SeaBIOS
    /// and the bzImage's decompressor).
    pub fast_boot: bool,
    /// Swap of this many MiB (0 = none): a zram device the agent formats
    /// and enables at boot (`agent::swap`); the image's zram module is
    /// loaded for it. MADV_PAGEOUT needs swap.
    pub swap_mib: u32,
    /// 2 MiB hugetlb pages reserved at boot (`hugepagesz=2M hugepages=N`).
    pub hugetlb_pages: u32,
    /// 1 GiB hugetlb pages reserved at boot (`hugepagesz=1G hugepages=N`);
    /// the kernel ignores the request when the CPU has no 1 GiB pages.
    pub hugetlb_1g_pages: u32,
    /// Keep the kernel's own memory-management settings (THP defrag,
    /// khugepaged, compaction) instead of the fixed settings that make
    /// pinfuzz programs reproducible (`exec::prepare_guest`): for guests
    /// that run other test suites, such as the kernel's selftests.
    pub kernel_mm_settings: bool,
}

impl Default for GuestOptions {
    fn default() -> GuestOptions {
        GuestOptions {
            memory_mib: 1024,
            fault: 0,
            gup_test: false,
            extra_cmdline: Vec::new(),
            extra_modules: Vec::new(),
            accel: Accel::Auto,
            qemu: PathBuf::from("qemu-system-x86_64"),
            boot_timeout: Duration::from_secs(60),
            no_output_timeout: Duration::from_secs(60),
            timeout_grace: Duration::from_secs(10),
            require_module: true,
            fast_boot: true,
            swap_mib: 0,
            hugetlb_pages: 0,
            hugetlb_1g_pages: 0,
            kernel_mm_settings: false,
        }
    }
}

impl GuestOptions {
    /// The full kernel command line.
    pub fn cmdline(&self) -> String {
        let mut words: Vec<String> = BASE_CMDLINE.split(' ').map(str::to_string).collect();
        words.extend(SPEED_CMDLINE.split_whitespace().map(str::to_string));
        if self.fault != 0 {
            words.push(format!("pinfuzz.fault={}", self.fault));
        }
        if self.gup_test {
            words.push("pinfuzz.gup_test=1".to_string());
        }
        // hugepages= applies to the hugepagesz= before it.
        for (size, pages) in [("2M", self.hugetlb_pages), ("1G", self.hugetlb_1g_pages)] {
            if pages > 0 {
                words.push(format!("hugepagesz={size}"));
                words.push(format!("hugepages={pages}"));
            }
        }
        if self.swap_mib > 0 {
            words.push(format!("pinfuzz_agent.swap_mib={}", self.swap_mib));
        }
        if self.kernel_mm_settings {
            words.push("pinfuzz_agent.mm=kernel".to_string());
        }
        words.extend(self.extra_cmdline.iter().cloned());
        words.join(" ")
    }

    /// The guest's memory: `memory_mib` plus what the hugetlb pages take
    /// (reserved at boot, unusable for anything else) plus a quarter of the
    /// swap size for zram's compressed store.
    pub fn guest_memory_mib(&self) -> u32 {
        self.memory_mib
            .saturating_add(self.hugetlb_pages.saturating_mul(2))
            .saturating_add(self.hugetlb_1g_pages.saturating_mul(1024))
            .saturating_add(self.swap_mib / 4)
    }
}

/// How long booting took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BootTimes {
    /// QEMU start to the agent's READY line on the console.
    pub to_ready: Duration,
    /// QEMU start to the answer of the first Hello.
    pub to_hello: Duration,
    /// Kernel uptime when the agent printed READY (guest clock).
    pub guest_uptime_at_ready: Duration,
    /// Whether KVM was used.
    pub kvm: bool,
}

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunEnd {
    /// The program ran; the executor's summary.
    Finished(RunSummary),
    /// The agent reported an error (bad program text, executor failure).
    Failed(String),
    /// The guest died or hung.
    Crashed(CrashReport),
}

/// The result of one program on the guest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestRun {
    /// One observation per executed step.
    pub steps: Vec<StepObs>,
    /// How it ended.
    pub end: RunEnd,
    /// Kernel incidents on the console during the program while the guest
    /// survived (WARNING, Bad page state, …); the guest is restarted
    /// before its next use if there are any.
    pub incidents: Vec<CrashReport>,
    /// Host wall time of the request.
    pub wall: Duration,
}

impl GuestRun {
    /// The run as a backend trace: the steps, and why it stopped early
    /// (the executor's reason, the agent's error, or the crash title).
    pub fn trace(&self) -> crate::obs::Trace {
        let stopped = match &self.end {
            RunEnd::Finished(summary) => summary.stopped.as_ref().map(|s| s.to_string()),
            RunEnd::Failed(message) => Some(format!("agent error: {message}")),
            RunEnd::Crashed(crash) => Some(format!("guest crashed: {}", crash.title)),
        };
        crate::obs::Trace {
            steps: self.steps.clone(),
            stopped,
        }
    }
}

/// How an executable run by [`Guest::run_binary`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BinaryEnd {
    /// It ran (whatever its exit status).
    Finished(BinaryRun),
    /// The agent could not run it (write, spawn).
    Failed(String),
    /// The guest died or hung.
    Crashed(CrashReport),
}

/// The result of [`Guest::run_binary`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestBinaryRun {
    /// How it ended.
    pub end: BinaryEnd,
    /// Kernel incidents on the console while it ran.
    pub incidents: Vec<CrashReport>,
    /// Host wall time of the request.
    pub wall: Duration,
}

struct Running {
    qemu: Qemu,
    chan: Channel<UnixStream>,
    hello: HelloInfo,
    times: BootTimes,
}

/// A guest (see the module doc).
pub struct Guest {
    spec: KernelSpec,
    opts: GuestOptions,
    cache: Cache,
    initrd: PathBuf,
    dir: tempfile::TempDir,
    kvm: Option<bool>,
    vm: Option<Running>,
    boots: u32,
    seq: u64,
    restart_reason: Option<String>,
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guest")
            .field("kernel", &self.spec.name)
            .field("dir", &self.dir.path())
            .field("boots", &self.boots)
            .field("running", &self.vm.is_some())
            .finish()
    }
}

/// QEMU's minimal firmware (Debian package qemu-system-data): it jumps
/// straight to the kernel where SeaBIOS spends a few hundred milliseconds.
pub const QBOOT: &str = "/usr/share/qemu/qboot.rom";

/// Poll interval of the supervision loop.
const TICK: Duration = Duration::from_millis(50);
/// Console lines kept when nothing on the console explains an incident.
const TAIL_LINES: usize = 60;

impl Guest {
    /// Build the initramfs and boot a guest.
    pub fn boot(spec: &KernelSpec, opts: &GuestOptions) -> Result<Guest> {
        let cache = Cache::from_env()?;
        let mut extra_modules = spec.boot_modules.clone();
        let mut wanted = opts.extra_modules.clone();
        // Swap is a zram device; a kernel with zram built in records no module.
        if opts.swap_mib > 0
            && spec.extra_modules.contains_key("zram")
            && !wanted.iter().any(|m| m == "zram")
        {
            wanted.push("zram".to_string());
        }
        for name in &wanted {
            let files = spec
                .extra_modules
                .get(name)
                .with_context(|| format!("kernel {} does not ship the module {name}", spec.name))?;
            extra_modules.extend(files.iter().cloned());
        }
        let contents = initramfs::Contents {
            agent: super::agent_bin::agent_binary()?,
            module: spec.module.clone(),
            extra_modules,
        };
        let initrd = initramfs::build(&cache, &contents)?;
        let dir = tempfile::Builder::new()
            .prefix("pinfuzz-guest-")
            .tempdir()
            .context("create the guest's directory")?;
        let mut guest = Guest {
            spec: spec.clone(),
            opts: opts.clone(),
            cache,
            initrd,
            dir,
            kvm: None,
            vm: None,
            boots: 0,
            seq: 0,
            restart_reason: None,
        };
        guest.start()?;
        Ok(guest)
    }

    /// The guest's directory (console logs `console-N.log`, socket).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The kernel it boots.
    pub fn kernel(&self) -> &KernelSpec {
        &self.spec
    }

    /// How many times QEMU was started.
    pub fn boots(&self) -> u32 {
        self.boots
    }

    /// Boot times of the running guest.
    pub fn boot_times(&self) -> Option<BootTimes> {
        self.vm.as_ref().map(|r| r.times)
    }

    /// The agent's Hello from the current boot.
    pub fn boot_hello(&self) -> Option<&HelloInfo> {
        self.vm.as_ref().map(|r| &r.hello)
    }

    /// When the running QEMU was started.
    pub fn started_at(&self) -> Option<Instant> {
        self.vm.as_ref().map(|r| r.qemu.started)
    }

    /// QEMU's pid, if running.
    pub fn qemu_pid(&self) -> Option<u32> {
        self.vm.as_ref().map(|r| r.qemu.pid())
    }

    /// Why the guest will be restarted before its next use, if it will.
    pub fn restart_pending(&self) -> Option<&str> {
        self.restart_reason.as_deref()
    }

    /// Path of the console log of boot `n` (1-based).
    pub fn console_path(&self, n: u32) -> PathBuf {
        self.dir.path().join(format!("console-{n}.log"))
    }

    /// Kill QEMU and boot a fresh guest.
    pub fn restart(&mut self) -> Result<()> {
        self.vm = None; // Drop kills QEMU.
        self.restart_reason = None;
        self.start()
    }

    fn ensure_running(&mut self) -> Result<()> {
        if self.vm.is_none() || self.restart_reason.is_some() {
            self.restart()?;
        }
        Ok(())
    }

    fn start(&mut self) -> Result<()> {
        let kvm = match self.kvm {
            Some(kvm) => kvm,
            None => {
                let kvm = self.decide_kvm()?;
                self.kvm = Some(kvm);
                if self.vm.is_some() {
                    return Ok(()); // the probe's guest is the one we keep
                }
                kvm
            }
        };
        let timeout = self.opts.boot_timeout;
        let running = self.boot_once(kvm, timeout)?;
        self.vm = Some(running);
        Ok(())
    }

    /// Decide KVM vs TCG; a successful probe leaves its guest running.
    fn decide_kvm(&mut self) -> Result<bool> {
        let choice = Accel::from_env()?.unwrap_or(self.opts.accel);
        match choice {
            Accel::Kvm => return Ok(true),
            Accel::Tcg => return Ok(false),
            Accel::Auto => {}
        }
        if !accel::dev_kvm_openable() {
            return Ok(false);
        }
        let machine = accel::machine_key(&self.opts.qemu);
        if let Some(v) = accel::cached(&self.cache, &machine) {
            return Ok(v.kvm_works);
        }
        eprintln!("pinfuzz: probing whether KVM works on this machine (once)");
        let probe = self.boot_once(true, Duration::from_secs(20));
        let verdict = Verdict {
            machine,
            kvm_works: probe.is_ok(),
            detail: match &probe {
                Ok(r) => format!("agent READY after {:?}", r.times.to_ready),
                Err(e) => format!("{e:#}").chars().take(2000).collect(),
            },
        };
        accel::store(&self.cache, &verdict)?;
        eprintln!(
            "pinfuzz: KVM {} ({})",
            if verdict.kvm_works {
                "works"
            } else {
                "does not work: using TCG"
            },
            verdict.detail.lines().next().unwrap_or("")
        );
        if let Ok(running) = probe {
            self.vm = Some(running);
        }
        Ok(verdict.kvm_works)
    }

    fn boot_once(&mut self, kvm: bool, timeout: Duration) -> Result<Running> {
        self.boots += 1;
        let n = self.boots;
        let socket = self.dir.path().join(format!("chan-{n}.sock"));
        let cfg = QemuConfig {
            binary: self.opts.qemu.clone(),
            kvm,
            memory_mib: self.opts.guest_memory_mib(),
            kernel: match (&self.spec.vmlinux, self.opts.fast_boot) {
                (Some(vmlinux), true) => vmlinux.clone(),
                _ => self.spec.bzimage.clone(),
            },
            firmware: Some(PathBuf::from(QBOOT)).filter(|p| self.opts.fast_boot && p.is_file()),
            initrd: self.initrd.clone(),
            cmdline: self.opts.cmdline(),
            channel_socket: socket.clone(),
        };
        let console_path = self.console_path(n);
        let mut qemu = Qemu::spawn(&cfg, &console_path)?;
        let fail = |qemu: &mut Qemu, what: String| -> anyhow::Error {
            qemu.kill();
            anyhow::anyhow!(
                "{what}\n--- QEMU stderr ---\n{}--- console tail ({}) ---\n{}",
                qemu.stderr(),
                console_path.display(),
                console::tail(&qemu.console.since(0), 30)
            )
        };
        // The socket appears once QEMU has parsed its options.
        let stream = loop {
            if let Some(status) = qemu.try_wait() {
                thread::sleep(Duration::from_millis(50)); // let stderr drain
                return Err(fail(&mut qemu, format!("QEMU exited at start ({status})")));
            }
            match UnixStream::connect(&socket) {
                Ok(stream) => break stream,
                Err(_) if qemu.started.elapsed() < Duration::from_secs(10) => {
                    thread::sleep(Duration::from_millis(5))
                }
                Err(e) => {
                    return Err(fail(
                        &mut qemu,
                        format!("cannot connect to {}: {e}", socket.display()),
                    ));
                }
            }
        };
        let ready = qemu
            .console
            .wait_for(0, timeout, |text| text.contains(READY_PREFIX));
        if !ready {
            thread::sleep(Duration::from_millis(100));
            let why = match qemu.try_wait() {
                Some(status) => format!("QEMU exited before the agent was ready ({status})"),
                None => format!("no agent READY line within {timeout:?}"),
            };
            let accel = if kvm { "kvm" } else { "tcg" };
            return Err(fail(
                &mut qemu,
                format!("booting {} ({accel}) failed: {why}", self.spec.name),
            ));
        }
        let to_ready = qemu.started.elapsed();
        stream
            .set_read_timeout(Some(TICK))
            .context("set channel read timeout")?;
        let mut chan = Channel::new(stream);
        chan.send(&Request::Hello).context("send Hello")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let hello = loop {
            match chan.recv_response() {
                Ok(Response::Hello(h)) => break h,
                Ok(other) => {
                    return Err(fail(
                        &mut qemu,
                        format!("agent answered Hello with {other:?}"),
                    ));
                }
                Err(e) if e.is_timeout() && Instant::now() < deadline => {}
                Err(e) => return Err(fail(&mut qemu, format!("no Hello from the agent: {e}"))),
            }
        };
        let to_hello = qemu.started.elapsed();
        if self.opts.require_module && !hello.module.loaded {
            let why = hello.module.error.clone().unwrap_or_default();
            return Err(fail(
                &mut qemu,
                format!("the helper module did not load in the guest: {why}"),
            ));
        }
        Ok(Running {
            qemu,
            chan,
            times: BootTimes {
                to_ready,
                to_hello,
                guest_uptime_at_ready: Duration::from_millis(hello.ready_uptime_ms),
                kvm,
            },
            hello,
        })
    }

    /// Ask the agent who it is (boots a guest first if needed).
    pub fn hello(&mut self) -> Result<HelloInfo> {
        self.ensure_running()?;
        let (_, end) = self.converse(&Request::Hello, Duration::from_secs(30), &mut |_| Ok(()))?;
        match end {
            Answer::Response(Response::Hello(h)) => Ok(h),
            Answer::Response(other) => bail!("agent answered Hello with {other:?}"),
            Answer::Crashed(c) => bail!("guest died during Hello: {}\n{}", c.title, c.excerpt),
            Answer::CallbackFailed(err) => Err(err),
        }
    }

    /// Run a program (see the module doc).
    pub fn run_program(
        &mut self,
        program: &Program,
        timeout: Duration,
        on_step: &mut dyn FnMut(&StepObs) -> Result<()>,
    ) -> Result<GuestRun> {
        self.run_program_text(&program.to_string(), timeout, on_step)
    }

    /// Run a program given as canonical text.
    pub fn run_program_text(
        &mut self,
        text: &str,
        timeout: Duration,
        on_step: &mut dyn FnMut(&StepObs) -> Result<()>,
    ) -> Result<GuestRun> {
        self.ensure_running()?;
        self.seq += 1;
        let request = Request::RunProgram {
            seq: self.seq,
            text: text.to_string(),
            timeout,
        };
        let started = Instant::now();
        let mark = self.console_len();
        let (steps, answer) =
            self.converse(&request, timeout + self.opts.timeout_grace, on_step)?;
        let end = match answer {
            Answer::Response(Response::RunDone(summary)) => RunEnd::Finished(summary),
            Answer::Response(Response::Error { message, .. }) => RunEnd::Failed(message),
            Answer::Response(other) => {
                self.restart_reason = Some("protocol confusion".into());
                RunEnd::Failed(format!("agent answered RunProgram with {other:?}"))
            }
            Answer::Crashed(c) => RunEnd::Crashed(c),
            Answer::CallbackFailed(err) => return Err(err),
        };
        let incidents = match end {
            RunEnd::Crashed(_) => Vec::new(),
            _ => self.incidents_since(mark, self.seq),
        };
        if let Some(first) = incidents.first() {
            self.restart_reason = Some(format!("kernel incident: {}", first.title));
        }
        Ok(GuestRun {
            steps,
            end,
            incidents,
            wall: started.elapsed(),
        })
    }

    /// Write `data` to `path` in the guest (e.g. `c` to
    /// `/proc/sysrq-trigger`); a crash it causes is returned, not an error.
    pub fn write_file(&mut self, path: &str, data: &[u8]) -> Result<Option<CrashReport>> {
        self.write_file_within(path, data, Duration::from_secs(30))
    }

    /// [`Guest::write_file`] with a deadline: a write still running after
    /// `timeout` is reported as a [`CrashKind::Timeout`] crash.
    pub fn write_file_within(
        &mut self,
        path: &str,
        data: &[u8],
        timeout: Duration,
    ) -> Result<Option<CrashReport>> {
        self.ensure_running()?;
        let request = Request::WriteFile {
            path: path.to_string(),
            data: data.to_vec(),
        };
        let (_, answer) = self.converse(&request, timeout, &mut |_| Ok(()))?;
        match answer {
            Answer::Response(Response::Done) => Ok(None),
            Answer::Response(Response::Error { message, .. }) => bail!("write {path}: {message}"),
            Answer::Response(other) => bail!("agent answered WriteFile with {other:?}"),
            Answer::Crashed(c) => Ok(Some(c)),
            Answer::CallbackFailed(err) => Err(err),
        }
    }

    /// Run an executable in the guest (`Request::RunBinary`): a static C
    /// reproducer or benchmark. Kernel incidents between its console
    /// markers are collected as for a program (and restart the guest
    /// before its next use).
    pub fn run_binary(
        &mut self,
        name: &str,
        binary: &[u8],
        args: &[String],
        timeout: Duration,
    ) -> Result<GuestBinaryRun> {
        self.ensure_running()?;
        self.seq += 1;
        let request = Request::RunBinary {
            seq: self.seq,
            name: name.to_string(),
            binary: binary.to_vec(),
            args: args.to_vec(),
            timeout,
        };
        let started = Instant::now();
        let mark = self.console_len();
        let (_, answer) =
            self.converse(&request, timeout + self.opts.timeout_grace, &mut |_| Ok(()))?;
        let end = match answer {
            Answer::Response(Response::BinaryDone(run)) => BinaryEnd::Finished(run),
            Answer::Response(Response::Error { message, .. }) => BinaryEnd::Failed(message),
            Answer::Response(other) => {
                self.restart_reason = Some("protocol confusion".into());
                BinaryEnd::Failed(format!("agent answered RunBinary with {other:?}"))
            }
            Answer::Crashed(c) => BinaryEnd::Crashed(c),
            Answer::CallbackFailed(err) => return Err(err),
        };
        let incidents = match end {
            BinaryEnd::Crashed(_) => Vec::new(),
            _ => self.incidents_since(mark, self.seq),
        };
        if let Some(first) = incidents.first() {
            self.restart_reason = Some(format!("kernel incident: {}", first.title));
        }
        Ok(GuestBinaryRun {
            end,
            incidents,
            wall: started.elapsed(),
        })
    }

    /// Power the guest off cleanly (the next use boots a new one).
    pub fn power_off(&mut self) -> Result<()> {
        if let Some(mut vm) = self.vm.take() {
            let _ = vm.chan.send(&Request::PowerOff);
            if vm.qemu.wait_timeout(Duration::from_secs(10)).is_none() {
                vm.qemu.kill();
            }
        }
        Ok(())
    }

    /// Bytes of console output of the running guest so far (a mark for
    /// [`Guest::console_since`]).
    pub fn console_len(&self) -> usize {
        self.vm.as_ref().map_or(0, |r| r.qemu.console.len())
    }

    /// Console output of the running guest from byte `mark` on.
    pub fn console_since(&self, mark: usize) -> String {
        self.vm
            .as_ref()
            .map_or_else(String::new, |r| r.qemu.console.since(mark))
    }

    /// Wait up to `timeout` for `needle` in the console after `mark`.
    pub fn wait_console(&self, mark: usize, timeout: Duration, needle: &str) -> bool {
        self.vm.as_ref().is_some_and(|r| {
            r.qemu
                .console
                .wait_for(mark, timeout, |t| t.contains(needle))
        })
    }

    /// Kernel incidents between `mark` and program `seq`'s end marker.
    fn incidents_since(&mut self, mark: usize, seq: u64) -> Vec<CrashReport> {
        let Some(vm) = self.vm.as_ref() else {
            return Vec::new();
        };
        // With its line end: "pinfuzz: end 1" is a prefix of "pinfuzz: end 12".
        let marker = format!("{}\n", end_marker(seq));
        // The agent printed the marker before its last response; the serial
        // line may still be on its way.
        let seen = vm
            .qemu
            .console
            .wait_for(mark, Duration::from_secs(3), |t| t.contains(&marker));
        let text = vm.qemu.console.since(mark);
        let upto = if seen {
            text.find(&marker).map_or(text.len(), |i| i + marker.len())
        } else {
            text.len()
        };
        let segment = &text[..upto];
        let mut reports = Vec::new();
        for f in console::scan(segment) {
            if reports.iter().any(|r: &CrashReport| r.title == f.title) {
                continue;
            }
            reports.push(CrashReport {
                title: f.title,
                kind: f.kind,
                excerpt: console::excerpt(segment, f.line),
                also: Vec::new(),
            });
        }
        reports
    }

    /// Send one request and collect responses until the final one, or
    /// until the guest is found dead or hung.
    fn converse(
        &mut self,
        request: &Request,
        deadline_after: Duration,
        on_step: &mut dyn FnMut(&StepObs) -> Result<()>,
    ) -> Result<(Vec<StepObs>, Answer)> {
        let no_output = self.opts.no_output_timeout;
        let vm = self.vm.as_mut().context("guest is not running")?;
        let mark = vm.qemu.console.len();
        let started = Instant::now();
        let deadline = started + deadline_after;
        let mut last_response = started;
        let mut steps = Vec::new();
        if let Err(e) = vm.chan.send(request) {
            let crash = lost(vm, mark, &format!("cannot send {}: {e}", request.name()));
            self.vm = None;
            return Ok((steps, Answer::Crashed(crash)));
        }
        let answer = loop {
            match vm.chan.recv_response() {
                Ok(Response::Step(delta)) => {
                    last_response = Instant::now();
                    let obs = match delta.apply(steps.last()) {
                        Ok(obs) => obs,
                        Err(e) => break Answer::Crashed(lost(vm, mark, &format!("channel: {e}"))),
                    };
                    if let Err(err) = on_step(&obs) {
                        break Answer::CallbackFailed(err);
                    }
                    steps.push(obs);
                }
                Ok(response) => break Answer::Response(response),
                Err(e) if e.is_timeout() => {
                    if let Some(crash) = check_health(vm, mark, deadline, last_response, no_output)
                    {
                        break Answer::Crashed(crash);
                    }
                }
                Err(e) => {
                    break Answer::Crashed(lost(vm, mark, &format!("channel: {e}")));
                }
            }
        };
        if let Answer::CallbackFailed(err) = answer {
            // The agent is still streaming this run: its later responses
            // would answer the next request. Start over with a new guest.
            self.vm = None;
            return Err(err.context("step callback"));
        }
        if matches!(answer, Answer::Crashed(_)) {
            self.vm = None; // Drop kills QEMU; the next use boots a new guest.
        }
        Ok((steps, answer))
    }
}

enum Answer {
    Response(Response),
    Crashed(CrashReport),
    CallbackFailed(anyhow::Error),
}

/// `None` while the guest looks alive and within its deadlines.
fn check_health(
    vm: &mut Running,
    mark: usize,
    deadline: Instant,
    last_response: Instant,
    no_output: Duration,
) -> Option<CrashReport> {
    if vm.qemu.try_wait().is_some() {
        return Some(lost(vm, mark, "QEMU exited"));
    }
    let text = vm.qemu.console.since(mark);
    if let Some(report) = console::report(&text).filter(|r| r.kind.is_fatal()) {
        // A panic is followed by QEMU exiting (panic=-1, -no-reboot); give
        // the console a moment to carry the whole report.
        vm.qemu.wait_timeout(Duration::from_secs(3));
        let text = vm.qemu.console.since(mark);
        return Some(console::report(&text).unwrap_or(report));
    }
    let now = Instant::now();
    if now >= deadline {
        // Titles stay free of numbers so they deduplicate.
        return Some(synthetic(
            CrashKind::Timeout,
            "program timeout".to_string(),
            &text,
        ));
    }
    let quiet_since = vm
        .qemu
        .console
        .last_output()
        .map_or(last_response, |t| t.max(last_response));
    if now.duration_since(quiet_since) >= no_output {
        return Some(synthetic(
            CrashKind::NoOutput,
            "no output from the guest".to_string(),
            &text,
        ));
    }
    None
}

/// The report for a guest that went away: the console's own explanation
/// if it has one, else "lost connection" with how QEMU ended.
fn lost(vm: &mut Running, mark: usize, what: &str) -> CrashReport {
    let status = vm.qemu.wait_timeout(Duration::from_secs(3));
    // Let the reader thread drain what QEMU printed last.
    vm.qemu
        .console
        .wait_for(0, Duration::from_millis(500), |_| false);
    let text = vm.qemu.console.since(mark);
    if let Some(report) = console::report(&text)
        .filter(|r| !(r.kind == CrashKind::AgentFatal && agent_fatal_after_shutdown(&text)))
    {
        return report;
    }
    let how = match status {
        Some(s) if s.signal() == Some(9) => "QEMU killed by SIGKILL".to_string(),
        Some(s) if s.signal().is_some() => {
            format!("QEMU killed by signal {}", s.signal().unwrap_or(0))
        }
        Some(s) => format!("QEMU exited with status {}", s.code().unwrap_or(-1)),
        None => format!("{what} while QEMU still runs"),
    };
    synthetic(CrashKind::Lost, format!("lost connection: {how}"), &text)
}

/// The kernel was already shutting down (`kernel_power_off()` and friends
/// print `reboot: …`; SysRq-o prints `sysrq: Power Off` before it queues
/// `poweroff_work`, and the devices, our virtio console among them, are shut
/// down before `reboot: Power down` is printed) when the agent gave up: its
/// channel went away under it, so its FATAL is a consequence of the
/// shutdown, not an explanation.
fn agent_fatal_after_shutdown(text: &str) -> bool {
    let shutdown = [
        "sysrq: Power Off",
        "reboot: Power down",
        "reboot: Restarting system",
        "reboot: System halted",
    ]
    .iter()
    .filter_map(|m| text.find(m))
    .min();
    match (shutdown, text.find("pinfuzz-agent: FATAL")) {
        (Some(down), Some(fatal)) => down < fatal,
        _ => false,
    }
}

fn synthetic(kind: CrashKind, title: String, console_text: &str) -> CrashReport {
    CrashReport {
        title,
        kind,
        excerpt: console::tail(console_text, TAIL_LINES),
        also: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_fatal_after_the_kernel_powered_off_does_not_explain_the_loss() {
        // Seen in CI: sysrq o, then the agent's last write fails.
        let after = "[    2.012826] sysrq: Power Off\n[    2.016834] reboot: Power down\n\
                     pinfuzz-agent: FATAL: send error response: channel i/o: failed to write whole buffer\n";
        assert!(agent_fatal_after_shutdown(after));
        // Also seen in CI: the FATAL lands between SysRq's line and the
        // kernel's, while device_shutdown() runs.
        let between = "[    1.958571] sysrq: Power Off\n\
                       pinfuzz-agent: FATAL: send error response: channel i/o: failed to write whole buffer\n\
                       [    1.966090] reboot: Power down\n";
        assert!(agent_fatal_after_shutdown(between));
        let before =
            "pinfuzz-agent: FATAL: cannot open /dev/pinfuzz\n[    3.1] reboot: Power down\n";
        assert!(!agent_fatal_after_shutdown(before));
        assert!(!agent_fatal_after_shutdown("pinfuzz-agent: FATAL: x\n"));
        assert!(!agent_fatal_after_shutdown(
            "[    2.0] reboot: Power down\n"
        ));
    }

    #[test]
    fn cmdline_keeps_warnings_visible_and_passes_module_parameters() {
        let opts = GuestOptions {
            fault: 2,
            gup_test: true,
            extra_cmdline: vec!["watchdog_thresh=1".into()],
            ..GuestOptions::default()
        };
        let line = opts.cmdline();
        let words: Vec<&str> = line.split(' ').collect();
        for want in [
            "console=ttyS0",
            "loglevel=5",
            "panic=-1",
            "oops=panic",
            "pinfuzz.fault=2",
            "pinfuzz.gup_test=1",
            "watchdog_thresh=1",
            "cryptomgr.notests",
        ] {
            assert!(words.contains(&want), "{want} missing in {line}");
        }
        // `quiet` would hide KERN_WARNING, i.e. WARN() reports.
        assert!(!words.contains(&"quiet"), "{line}");
        assert!(line.contains("initcall_blacklist=jent_mod_init,bpf_tcp_ca_kfunc_init,"));
        assert_eq!(opts.guest_memory_mib(), 1024);
        assert!(!line.contains("hugepages") && !line.contains("pinfuzz_agent."));
        assert_eq!(
            crate::agent::init::module_params(&line),
            "fault=2 gup_test=1"
        );
    }

    #[test]
    fn swap_and_hugetlb_reach_the_command_line_and_the_memory_size() {
        let opts = GuestOptions {
            swap_mib: 512,
            hugetlb_pages: 4,
            hugetlb_1g_pages: 2,
            kernel_mm_settings: true,
            ..GuestOptions::default()
        };
        let line = opts.cmdline();
        assert!(
            line.contains("hugepagesz=2M hugepages=4 hugepagesz=1G hugepages=2"),
            "{line}"
        );
        assert_eq!(
            crate::agent::init::agent_param(&line, "swap_mib"),
            Some("512")
        );
        assert_eq!(crate::agent::init::agent_param(&line, "mm"), Some("kernel"));
        // Agent settings are not module parameters.
        assert_eq!(crate::agent::init::module_params(&line), "");
        assert_eq!(opts.guest_memory_mib(), 1024 + 8 + 2048 + 128);
    }
}
