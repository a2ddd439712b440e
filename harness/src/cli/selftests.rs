//! `pinfuzz selftests`: the kernel's own GUP selftests, built from the
//! kernel's source and run in pinfuzz's guest (see `harness::selftests`).
//!
//! Exit status: 0 when every case passed, skipped for a reason pinfuzz does
//! not provide, or failed in a known and explained way; 1 when anything
//! else failed; 2 when the tests could not be run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use super::vm::AccelArg;
use crate::kernel;
use crate::selftests::{self, Options, catalog, report};
use crate::vm::Accel;

/// Arguments of `pinfuzz selftests`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kernel: debian-6.12 (default), debian-6.1, or a name from `pinfuzz kernel list`.
    #[arg(long, default_value = kernel::DEFAULT_KERNEL)]
    pub kernel: String,
    /// Tests to run, comma-separated: cow, gup_longterm, gup_test (default: all).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub tests: Vec<String>,
    /// Build the tests from this kernel source tree instead of the kernel's
    /// own source (Debian's linux-source package, or the tree a user kernel
    /// was built in).
    #[arg(long, value_name = "DIR")]
    pub source: Option<PathBuf>,
    /// Print the report as JSON (progress still goes to stderr); it holds
    /// every case and each program's whole output.
    #[arg(long)]
    pub json: bool,
    /// Print each program's TAP output before the report.
    #[arg(long, conflicts_with = "json")]
    pub tap: bool,
    /// Swap in the guest, MiB of zram (0: none; the swapped-out cases then skip).
    #[arg(long, value_name = "MIB", default_value_t = 512)]
    pub swap: u32,
    /// 2 MiB hugetlb pages to reserve at boot (0: none).
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub hugetlb: u32,
    /// 1 GiB hugetlb pages to reserve at boot, if the CPU has them (each
    /// adds 1 GiB of guest memory; 0: none, and the 1 GiB cases skip).
    #[arg(long = "hugetlb-1g", value_name = "N", default_value_t = 2)]
    pub hugetlb_1g: u32,
    /// Guest memory besides hugetlb pages and zram, MiB.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    pub memory: u32,
    /// Accelerator: auto (probe KVM once per machine), kvm or tcg.
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: AccelArg,
    /// Extra kernel command line words.
    #[arg(long = "append", value_name = "WORD")]
    pub append: Vec<String>,
}

/// Run the subcommand.
pub fn run(args: Args) -> Result<ExitCode> {
    let opts = Options {
        kernel: args.kernel,
        tests: if args.tests.is_empty() {
            catalog::default_names()
        } else {
            args.tests
        },
        source: args.source,
        memory_mib: args.memory,
        swap_mib: args.swap,
        hugetlb_pages: args.hugetlb,
        hugetlb_1g_pages: args.hugetlb_1g,
        accel: match args.accel {
            AccelArg::Auto => Accel::Auto,
            AccelArg::Kvm => Accel::Kvm,
            AccelArg::Tcg => Accel::Tcg,
        },
        append: args.append,
    };
    let report = selftests::run(&opts, &mut |line| eprintln!("pinfuzz: {line}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        if args.tap {
            for run in &report.runs {
                println!("### {} ({})", run.label, run.ended);
                print!("{}", run.output);
                if !run.output.is_empty() && !run.output.ends_with('\n') {
                    println!();
                }
            }
            println!();
        }
        print!("{}", report::render(&report));
    }
    Ok(if report.verdict.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
