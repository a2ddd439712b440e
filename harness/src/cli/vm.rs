//! `pinfuzz vm`: boot and check the guest.
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde::Serialize;

use crate::kernel::{self, Cache};
use crate::vm::smoke::SMOKE_PROGRAM;
use crate::vm::{Accel, Guest, GuestOptions, RunEnd};

/// Subcommands of `pinfuzz vm`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Provision the kernel if needed, boot a guest, run the built-in smoke
    /// program, and print the kernel release, boot times and steps per second.
    Check(CheckArgs),
}

/// Options shared by every command that boots a guest.
#[derive(Debug, Clone, clap::Args)]
pub struct GuestArgs {
    /// Kernel: debian-6.12 (default), debian-6.1, or a name from `pinfuzz kernel list`.
    #[arg(long, default_value = kernel::DEFAULT_KERNEL)]
    pub kernel: String,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 1024)]
    pub memory: u32,
    /// Helper module fault mode (PINFUZZ_FAULT_*; 0 = none).
    #[arg(long, default_value_t = 0)]
    pub fault: u32,
    /// Load the helper with gup_test=1.
    #[arg(long)]
    pub gup_test: bool,
    /// Accelerator: auto (probe KVM once per machine), kvm or tcg.
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: AccelArg,
    /// Extra kernel command line words.
    #[arg(long = "append", value_name = "WORD")]
    pub append: Vec<String>,
    /// Swap in the guest: a zram device of MIB MiB (`--swap` alone: 512).
    #[arg(long, value_name = "MIB", default_value_t = 0, num_args = 0..=1,
          default_missing_value = "512")]
    pub swap: u32,
    /// Reserve N hugetlb pages of 2 MiB at boot, and N of 1 GiB when the
    /// CPU has them; guest memory grows by what they take.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub hugetlb: u32,
}

/// `--accel` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum AccelArg {
    /// Probe KVM once per machine.
    Auto,
    /// KVM.
    Kvm,
    /// TCG.
    Tcg,
}

impl GuestArgs {
    /// Provision the kernel (if needed) and boot a guest.
    pub fn boot(&self) -> Result<Guest> {
        let cache = Cache::from_env()?;
        let spec = kernel::ensure(&cache, &self.kernel)?;
        Guest::boot(&spec, &self.options())
    }

    /// The guest options these arguments ask for.
    pub fn options(&self) -> GuestOptions {
        GuestOptions {
            memory_mib: self.memory,
            fault: self.fault,
            gup_test: self.gup_test,
            extra_cmdline: self.append.clone(),
            swap_mib: self.swap,
            hugetlb_pages: self.hugetlb,
            hugetlb_1g_pages: self.hugetlb,
            accel: match self.accel {
                AccelArg::Auto => Accel::Auto,
                AccelArg::Kvm => Accel::Kvm,
                AccelArg::Tcg => Accel::Tcg,
            },
            ..GuestOptions::default()
        }
    }
}

/// Arguments of `pinfuzz vm check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Which guest.
    #[command(flatten)]
    pub guest: GuestArgs,
    /// Run the smoke program this many times (for a steadier steps/s).
    #[arg(long, default_value_t = 3)]
    pub repeat: u32,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `vm check` measured.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    /// Kernel entry name.
    pub kernel: String,
    /// `uname -r` in the guest.
    pub release: String,
    /// Agent version.
    pub agent_version: String,
    /// Helper module parameters and STATUS.
    pub module: crate::channel::ModuleInfo,
    /// Setup errors the agent reported.
    pub setup_errors: Vec<String>,
    /// Provisioning check (and fetch/build if needed), seconds.
    pub provision_seconds: f64,
    /// `kvm` or `tcg`.
    pub accel: &'static str,
    /// QEMU start to the agent's READY line, seconds.
    pub boot_to_ready_seconds: f64,
    /// QEMU start to the answer of the first Hello, seconds.
    pub boot_to_hello_seconds: f64,
    /// Guest kernel uptime when the agent printed READY, seconds.
    pub guest_uptime_at_ready_seconds: f64,
    /// QEMU start to the first step observation of the first smoke run, seconds.
    pub boot_to_first_step_seconds: f64,
    /// Steps per second over the smoke runs after the first, host wall
    /// clock from request to final response (includes forking the runner
    /// and the reset check of each run).
    pub steps_per_second: f64,
    /// Steps per second inside the guest: steps / the executor's own run
    /// time (`RunSummary::timing.total_ns`), same runs.
    pub guest_steps_per_second: f64,
    /// Steps in the smoke program.
    pub steps: usize,
}

/// Run the subcommand.
pub fn run(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Check(args) => check(&args),
    }
}

fn check(args: &CheckArgs) -> Result<ExitCode> {
    let t0 = Instant::now();
    let cache = Cache::from_env()?;
    let spec = kernel::ensure(&cache, &args.guest.kernel)?;
    let provision_seconds = t0.elapsed().as_secs_f64();
    let mut guest = Guest::boot(&spec, &args.guest.options())?;
    let boot = guest.boot_times().expect("a booted guest has boot times");
    let started = guest
        .started_at()
        .expect("a booted guest has a QEMU start time");
    let hello = guest.hello()?;
    if !args.json {
        eprintln!(
            "pinfuzz: guest up: READY after {:.2} s, Hello after {:.2} s ({})",
            boot.to_ready.as_secs_f64(),
            boot.to_hello.as_secs_f64(),
            hello.kernel_release
        );
    }
    let mut first_step: Option<Instant> = None;
    let mut steps = 0usize;
    let mut timed_steps = 0usize;
    let mut timed = Duration::ZERO;
    let mut guest_ns = 0u64;
    for i in 0..args.repeat.max(1) {
        let run = guest.run_program_text(SMOKE_PROGRAM, Duration::from_secs(30), &mut |_| {
            first_step.get_or_insert_with(Instant::now);
            Ok(())
        })?;
        if let Some(incident) = run.incidents.first() {
            bail!(
                "kernel incident during the smoke program: {}\n{}",
                incident.title,
                incident.excerpt
            );
        }
        match &run.end {
            RunEnd::Finished(summary) => {
                if let Some(stop) = &summary.stopped {
                    bail!("smoke program stopped early: {stop}");
                }
            }
            RunEnd::Failed(msg) => bail!("smoke program failed in the guest: {msg}"),
            RunEnd::Crashed(c) => bail!("guest crashed: {} ({})\n{}", c.title, c.kind, c.excerpt),
        }
        steps = run.steps.len();
        if i > 0 || args.repeat <= 1 {
            timed_steps += run.steps.len();
            timed += run.wall;
            if let RunEnd::Finished(summary) = &run.end {
                guest_ns += summary.timing.total_ns;
            }
        }
    }
    let report = CheckReport {
        kernel: spec.name.clone(),
        release: hello.kernel_release.clone(),
        agent_version: hello.agent_version.clone(),
        module: hello.module.clone(),
        setup_errors: hello.setup_errors.clone(),
        provision_seconds,
        accel: if boot.kvm { "kvm" } else { "tcg" },
        boot_to_ready_seconds: boot.to_ready.as_secs_f64(),
        boot_to_hello_seconds: boot.to_hello.as_secs_f64(),
        guest_uptime_at_ready_seconds: boot.guest_uptime_at_ready.as_secs_f64(),
        boot_to_first_step_seconds: first_step
            .map_or(0.0, |t| t.duration_since(started).as_secs_f64()),
        steps_per_second: timed_steps as f64 / timed.as_secs_f64().max(1e-9),
        guest_steps_per_second: timed_steps as f64 / (guest_ns as f64 / 1e9).max(1e-9),
        steps,
    };
    guest.power_off()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &CheckReport) {
    println!("kernel            {} ({})", r.kernel, r.release);
    println!("agent             {}", r.agent_version);
    let status = r.module.status.map_or_else(
        || r.module.error.clone().unwrap_or_default(),
        |s| {
            format!(
                "abi {} fault {} pages held {}",
                s.abi_version, s.fault, s.pages_held_total
            )
        },
    );
    println!(
        "module            loaded={} params={:?} {status}",
        r.module.loaded, r.module.params
    );
    for e in &r.setup_errors {
        println!("setup error       {e}");
    }
    println!("accelerator       {}", r.accel);
    println!("provision check   {:.2} s", r.provision_seconds);
    println!(
        "boot              {:.2} s to READY ({:.2} s guest uptime), {:.2} s to Hello",
        r.boot_to_ready_seconds, r.guest_uptime_at_ready_seconds, r.boot_to_hello_seconds
    );
    println!(
        "first step        {:.2} s after QEMU start",
        r.boot_to_first_step_seconds
    );
    println!(
        "smoke program     {} steps, {:.0} steps/s end to end, {:.0} steps/s in the guest",
        r.steps, r.steps_per_second, r.guest_steps_per_second
    );
}
