//! A pure model of the Linux kernel's page-pinning contract.
//!
//! The model mirrors what `mm/gup.c`, `mm/memory.c`, `mm/huge_memory.c` and
//! `mm/rmap.c` do to folios, page tables and `/proc/vmstat` when a process
//! maps memory, touches it, takes FOLL_GET references or FOLL_PIN pins on
//! it, releases them, forks, and splits THPs. It knows nothing of the
//! harness or of any real kernel: operations take kernel-level arguments
//! (processes, virtual page numbers, FOLL_* flags) and return what the
//! kernel returns, errnos included, as data.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod errno;
mod page;
mod profile;
mod types;
mod vmstat;

pub use errno::Errno;
pub use page::PageView;
pub use profile::Profile;
pub use types::*;
pub use vmstat::VmStat;
