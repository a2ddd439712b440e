//! Observations: what a backend reports after every step.
//!
//! Both backends speak this one format. The kernel backend fills it from the
//! helper module's QUERY ioctls and `/proc/vmstat`; the model backend from
//! `reference::Model`. Page identities ([`PageObs::key`]) are pfns on the
//! kernel side and model page ids on the model side: the oracle binds one to
//! the other as pages first appear, so only "same page" / "different page"
//! is ever compared.

pub mod delta;

use serde::{Deserialize, Serialize};

use crate::op::{HandleId, MapId, Proc};

/// The outcome of one operation, as the kernel returned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OpResult {
    /// The syscall succeeded (mmap, munmap, mprotect, madvise, fork, exit, release, split).
    Ok,
    /// Every page of a touch was accessed.
    Touched,
    /// A touch stopped before the page at this offset of the range: the
    /// access would have raised SIGSEGV.
    Segv {
        /// Offset of the faulting page within the touched range.
        at: u16,
    },
    /// A GUP call returned this many pages (possibly fewer than asked, possibly 0).
    Pages(u64),
    /// The call failed with this errno (positive number, as in `errno`).
    Errno(i32),
}

/// Flag bits of [`PageObs::flags`] (the values of `kmod/pinfuzz.h: PINFUZZ_PAGE_*`).
pub mod page_flags {
    /// A page is mapped at the address or held by the handle.
    pub const PRESENT: u32 = 1 << 0;
    /// `folio_test_anon()`.
    pub const ANON: u32 = 1 << 1;
    /// `PageAnonExclusive(page)`.
    pub const ANON_EXCLUSIVE: u32 = 1 << 2;
    /// The shared zero page.
    pub const ZERO: u32 = 1 << 3;
    /// A page of the huge zero folio.
    pub const HUGE_ZERO: u32 = 1 << 4;
    /// `folio_test_lru()` (reported, not compared).
    pub const LRU: u32 = 1 << 5;
    /// `folio_test_dirty()` (reported, not compared).
    pub const DIRTY: u32 = 1 << 6;
    /// `folio_maybe_dma_pinned()`.
    pub const MAYBE_DMA_PINNED: u32 = 1 << 7;
    /// `folio_test_large()`.
    pub const LARGE: u32 = 1 << 8;
    /// `folio_test_swapcache()` (reported, not compared).
    pub const SWAPCACHE: u32 = 1 << 9;
}

/// One page. All fields are 0 when [`page_flags::PRESENT`] is clear.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PageObs {
    /// Identity of the page: pfn (kernel) or page id (model).
    pub key: u64,
    /// Identity of the folio's first page.
    pub head: u64,
    /// `folio_ref_count()`, without the observer's own lookup reference.
    pub refcount: i32,
    /// Precise mapcount of this page.
    pub mapcount: i32,
    /// `folio_mapcount()`.
    pub folio_mapcount: i32,
    /// `folio->_pincount` of a large folio, 0 for a small one.
    pub pincount: i32,
    /// Folio order.
    pub order: u8,
    /// [`page_flags`] bits.
    pub flags: u32,
}

impl PageObs {
    /// A page is mapped or held.
    pub fn present(&self) -> bool {
        self.flags & page_flags::PRESENT != 0
    }
}

/// The pages of one mapping in one process, page 0 of the mapping first,
/// covering the length it was created with.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MapObs {
    /// The process.
    pub proc: Proc,
    /// The mapping.
    pub map: MapId,
    /// One entry per page.
    pub pages: Vec<PageObs>,
}

/// The pages a live GUP handle holds, in the order GUP returned them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HandleObs {
    /// The handle.
    pub handle: HandleId,
    /// One entry per page.
    pub pages: Vec<PageObs>,
}

/// Counters from `/proc/vmstat`, cumulative since the program started
/// (names and order: `reference::VmStat::NAMES`).
pub type Counters = [u64; 9];

/// Everything observed after one step.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StepObs {
    /// What the operation returned.
    pub result: OpResult,
    /// Counters since the start of the program (after `stat_refresh`).
    pub vmstat: Counters,
    /// Every mapping of every live process: processes in order (the parent,
    /// then live children by [`crate::op::ChildId`]), and for each process
    /// every [`MapId`] it has, in id order — the maps it created and the
    /// maps its parent had when it was forked, whether or not they are still
    /// mapped (an unmapped page is simply not present). A map whose `mmap`
    /// failed is not listed. After a step, the step's own effects count (a
    /// map created by this step is listed, a child that exited is not).
    pub maps: Vec<MapObs>,
    /// Every live handle, in order.
    pub handles: Vec<HandleObs>,
}

/// A whole run of one program on one backend.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    /// One entry per executed step; shorter than the program if the run
    /// stopped early (see `stopped`).
    pub steps: Vec<StepObs>,
    /// Why the run stopped before the last step, if it did.
    pub stopped: Option<String>,
}
