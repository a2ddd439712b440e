//! A pure model of the Linux kernel's page-pinning contract.
//!
//! The model mirrors what `mm/gup.c`, `mm/memory.c`, `mm/huge_memory.c` and
//! `mm/rmap.c` do to folios, page tables and `/proc/vmstat` when processes
//! map memory, touch it, take FOLL_GET references or FOLL_PIN pins on it,
//! release them, fork, exit, and split THPs. It knows nothing of the harness
//! or of any real kernel: operations take kernel-level arguments (processes,
//! virtual page numbers, FOLL_* flags) and return what the kernel returns,
//! errnos included, as data.
//!
//! What is modelled: private and shared anonymous memory and memfd (shmem)
//! mappings, order-0 folios and PMD-order THPs (mTHP and shmem THP are
//! switched off in the guest), the shared zero page and the huge zero folio,
//! refcount / mapcount / `_pincount` / PageAnonExclusive, page-cache
//! references, `MMF_HAS_PINNED`, COW and unsharing, fork with pinned pages,
//! PMD and folio splits, deferred-split accounting, and the vmstat counters
//! in [`VmStat`]. What is not: swap, reclaim, migration and compaction
//! (nothing moves a page; FOLL_LONGTERM never migrates because the guest has
//! no ZONE_MOVABLE), khugepaged, hugetlb, file systems with dirty tracking,
//! NUMA. Where the kernel may legitimately take another path (a THP
//! allocation falling back), the operation records a [`Nondet`] point.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod errno;
mod fault;
mod folio;
mod fork;
mod gup;
mod invariants;
mod mm;
mod model;
mod page;
mod profile;
mod split;
mod syscalls;
mod tracker;
mod types;
mod view;
mod vmstat;

pub use errno::Errno;
pub use folio::GUP_PIN_COUNTING_BIAS;
pub use gup::{Gup, MAX_HANDLES, MAX_PAGES_HELD, MAX_PAGES_PER_CALL};
pub use invariants::{InvariantScratch, InvariantViolation};
pub use model::{Config, Model, Nondet};
pub use page::PageView;
pub use profile::Profile;
pub use syscalls::Segv;
pub use tracker::InvariantTracker;
pub use types::*;
pub use vmstat::VmStat;

#[cfg(test)]
mod tests;
