//! `pinfuzz corpus import|merge|minimize`: keep text corpora canonical and
//! free of duplicates, over libFuzzer corpus directories, AFL++ queues and
//! text programs.
//!
//! Every file written holds canonical text and is written atomically; each
//! command prints one line per file it touches and a summary, and changes
//! nothing it does not report.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::corpus::import::{Imported, import};
use crate::corpus::merge::merge;
use crate::corpus::minimize;
use crate::corpus::store::{Added, TextCorpus};

/// The corpus subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Turn raw fuzzer inputs (libFuzzer corpus directories, AFL++ output
    /// or instance directories, crash artifacts, files) into canonical
    /// `.ops` files named by content hash, skipping programs DIR holds.
    Import {
        /// Raw inputs: files, or directories to search.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// The text corpus to add to (created if missing).
        #[arg(long, value_name = "DIR")]
        into: PathBuf,
    },
    /// Union text corpora (directories of `.ops`, or files) into DIR
    /// without duplicates, in canonical form; the sources are not changed.
    Merge {
        /// Text corpora.
        #[arg(required = true)]
        sources: Vec<PathBuf>,
        /// The text corpus to add to (created if missing).
        #[arg(long, value_name = "DIR")]
        into: PathBuf,
    },
    /// Delete the programs of DIR that add no model coverage: for every
    /// coverage element the smallest program holding it is kept.
    Minimize {
        /// A text corpus.
        dir: PathBuf,
        /// Print the decision, delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Run the subcommand.
pub fn run(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Import { inputs, into } => {
            let mut corpus = TextCorpus::open(&into)?;
            let stats = import(&mut corpus, &inputs, &mut |input, outcome| match outcome {
                Imported::New(path) => println!("new {} <- {}", path.display(), input.display()),
                Imported::Duplicate(path) => {
                    println!("dup {} = {}", input.display(), path.display());
                }
                Imported::Empty => println!("empty {}", input.display()),
            })?;
            println!(
                "pinfuzz corpus import: {} inputs, {} new, {} duplicates, {} empty; {} programs in {}",
                stats.inputs,
                stats.new,
                stats.duplicates,
                stats.empty,
                corpus.len(),
                corpus.dir().display()
            );
        }
        Command::Merge { sources, into } => {
            let mut corpus = TextCorpus::open(&into)?;
            let stats = merge(&mut corpus, &sources, &mut |file, added, warnings| {
                for warning in warnings {
                    eprintln!("{warning}");
                }
                match added {
                    Added::New(path) => println!("new {} <- {}", path.display(), file.display()),
                    Added::Duplicate(path) => {
                        println!("dup {} = {}", file.display(), path.display());
                    }
                }
            })?;
            println!(
                "pinfuzz corpus merge: {} programs read ({} repaired), {} new, {} duplicates; {} programs in {}",
                stats.read,
                stats.repaired,
                stats.new,
                stats.duplicates,
                corpus.len(),
                corpus.dir().display()
            );
        }
        Command::Minimize { dir, dry_run } => {
            let plan = minimize::plan(&dir)?;
            for (entry, owned) in &plan.keep {
                println!(
                    "keep {} ({} steps, smallest holder of {owned} of its {} elements)",
                    entry.path.display(),
                    entry.steps,
                    entry.elements
                );
            }
            for entry in &plan.drop {
                println!("drop {} ({} steps)", entry.path.display(), entry.steps);
            }
            if !dry_run {
                minimize::apply(&plan)?;
            }
            println!(
                "pinfuzz corpus minimize: {} elements; {} kept, {} {}",
                plan.elements,
                plan.keep.len(),
                plan.drop.len(),
                if dry_run {
                    "would be dropped"
                } else {
                    "dropped"
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
