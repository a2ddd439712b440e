//! `pinfuzz kernel`: fetch, register and list kernels for the guest.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::kernel::{self, Cache, FetchRequest, Flavour, Origin};

/// Subcommands of `pinfuzz kernel`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Fetch a Debian kernel (image, headers, kbuild) through apt into the
    /// cache and build the helper module against it; or, with --kernel,
    /// register your own kernel.
    Fetch(FetchArgs),
    /// List the kernels in the cache.
    List(ListArgs),
}

/// Arguments of `pinfuzz kernel fetch`.
#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// debian-6.12 (default) or debian-6.1.
    #[arg(default_value = kernel::DEFAULT_KERNEL, conflicts_with = "kernel")]
    pub flavour: String,
    /// Pin a version: 6.12.115, 6.12.115+deb12, 6.1.0-56 or 6.1.192.
    #[arg(long)]
    pub version: Option<String>,
    /// Fetch (or register) again even if the cache has it.
    #[arg(long)]
    pub force: bool,
    /// Register your own bzImage instead of fetching (needs --build-dir).
    #[arg(long, value_name = "BZIMAGE", requires = "build_dir")]
    pub kernel: Option<PathBuf>,
    /// The kernel build tree of --kernel (with Module.symvers).
    #[arg(long, value_name = "DIR", requires = "kernel")]
    pub build_dir: Option<PathBuf>,
    /// Name to register --kernel under.
    #[arg(long, default_value = "user", requires = "kernel")]
    pub name: String,
}

/// Arguments of `pinfuzz kernel list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print the manifests as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Run the subcommand.
pub fn run(cmd: Command) -> Result<ExitCode> {
    let cache = Cache::from_env()?;
    match cmd {
        Command::Fetch(args) => fetch(&cache, args),
        Command::List(args) => list(&cache, &args),
    }
}

fn fetch(cache: &Cache, args: FetchArgs) -> Result<ExitCode> {
    let manifest = match (&args.kernel, &args.build_dir) {
        (Some(image), Some(build_dir)) => {
            kernel::provision::register_user(cache, &args.name, image, build_dir, args.force)?
        }
        _ => {
            let Some(flavour) = Flavour::from_name(&args.flavour) else {
                bail!(
                    "unknown kernel flavour {:?}; known: {}",
                    args.flavour,
                    Flavour::ALL.map(|f| f.name()).join(", ")
                );
            };
            kernel::provision::fetch_debian(
                cache,
                &FetchRequest {
                    flavour,
                    version: args.version,
                    force: args.force,
                },
            )?
        }
    };
    println!(
        "{} {} {}",
        manifest.name,
        manifest.release,
        cache.entry_dir(&manifest.name).display()
    );
    Ok(ExitCode::SUCCESS)
}

fn list(cache: &Cache, args: &ListArgs) -> Result<ExitCode> {
    let entries = cache.list();
    if args.json {
        let ok: Vec<_> = entries.iter().filter_map(|e| e.as_ref().ok()).collect();
        println!("{}", serde_json::to_string_pretty(&ok)?);
    } else {
        if entries.is_empty() {
            println!(
                "no kernels in {} (fetch one with `pinfuzz kernel fetch`)",
                cache.kernels_dir().display()
            );
        }
        for entry in &entries {
            match entry {
                Ok(m) => {
                    let origin = match &m.origin {
                        Origin::Debian { flavour, .. } => flavour.clone(),
                        Origin::User { build_dir, .. } => format!("user:{}", build_dir.display()),
                    };
                    let module = m
                        .module
                        .as_ref()
                        .map_or("module not built".to_string(), |b| {
                            format!("module {}", &b.source_sha256[..12])
                        });
                    println!("{:<28} {:<26} {:<14} {module}", m.name, m.release, origin);
                }
                Err(err) => println!("(unreadable) {err:#}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
