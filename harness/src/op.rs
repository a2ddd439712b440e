//! The program language: operations on handles, not raw addresses.
//!
//! A [`Program`] is a header (kernel profile, THP mode) and a list of
//! [`Step`]s; each step runs one [`Op`] in one process (the parent or a
//! forked child). Mappings, GUP handles and children are named by small
//! ordinals ([`MapId`], [`HandleId`], [`ChildId`]): the n-th `mmap` of a
//! program creates `MapId(n)`, the n-th GUP call `HandleId(n)`, the n-th
//! `fork` `ChildId(n)`. Pages are offsets from the start of a mapping, so a
//! program means the same on every machine: the address of every mapping is
//! fixed by [`map_start_vpn`].
//!
//! Validity (which handles are live in which process) is enforced by
//! `Program::fixup` in `crate::program` and by the text parser, never by the
//! backends.

use serde::{Deserialize, Serialize};

pub use reference::{Access, Advice, Foll, GupApi, MapKind, Prot, Release, ThpMode};

/// At most this many mappings per program.
pub const MAX_MAPS: usize = 16;
/// At most this many forked children per program.
pub const MAX_CHILDREN: usize = 4;
/// At most this many GUP calls per program.
pub const MAX_HANDLES: usize = 64;
/// At most this many steps per program (hand-written programs; fuzzers use fewer).
pub const MAX_STEPS: usize = 512;
/// Largest mapping, in pages (4 MiB: two PMD ranges).
pub const MAX_MAP_PAGES: u16 = 1024;
/// Largest offset of a mapping from its PMD-aligned slot start, in pages.
pub const MAX_MAP_OFFSET: u16 = 511;
/// Pages per slot: each mapping lives alone in an 8 MiB slot, so the pages
/// past its end are an unmapped gap (for EFAULT and partial-GUP cases).
pub const SLOT_PAGES: u64 = 2048;
/// Largest page count of one GUP call (`kmod/pinfuzz.h: PINFUZZ_MAX_PAGES_PER_CALL`).
pub const MAX_GUP_PAGES: u16 = 1024;
/// First page of the arena that holds every slot: 32 TiB, far from where
/// the kernel places the executor's own mappings.
pub const ARENA_BASE_VPN: u64 = 0x2000_0000_0000 / reference::PAGE_SIZE;

/// The virtual page number of page 0 of a mapping placed `offset` pages
/// past the start of its slot.
pub fn map_start_vpn(map: MapId, offset: u16) -> u64 {
    ARENA_BASE_VPN + u64::from(map.0) * SLOT_PAGES + u64::from(offset)
}

/// A mapping, the `n`-th `mmap` of the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MapId(pub u8);

/// The result of the `n`-th GUP call of the program: the pages it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HandleId(pub u16);

/// The `n`-th forked child of the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChildId(pub u8);

/// The process a step runs in, or a remote GUP call operates on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Proc {
    /// The process the program starts in.
    Parent,
    /// A process forked from the parent.
    Child(ChildId),
}

/// Pages `start..end` of a mapping (half-open, offsets from the mapping's
/// first page). A range may extend past the end of the mapping, into the
/// unmapped rest of its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PageRange {
    /// First page.
    pub start: u16,
    /// One past the last page.
    pub end: u16,
}

impl PageRange {
    /// Number of pages (0 for an empty or inverted range).
    pub fn len(self) -> u16 {
        self.end.saturating_sub(self.start)
    }
    /// No pages.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// One operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `mmap(2)` a new mapping of `pages` pages at its fixed slot address
    /// plus `offset` pages (`MAP_FIXED_NOREPLACE`); a memfd is created for
    /// the memfd kinds and closed after mapping.
    Mmap {
        /// The new mapping.
        map: MapId,
        /// What backs it.
        kind: MapKind,
        /// Length in pages, 1..=[`MAX_MAP_PAGES`].
        pages: u16,
        /// Initial protection.
        prot: Prot,
        /// Pages past the PMD-aligned slot start, 0..=[`MAX_MAP_OFFSET`]
        /// (0 makes PMD-sized THPs possible).
        offset: u16,
    },
    /// `munmap(2)` part or all of a mapping.
    Munmap {
        /// The mapping.
        map: MapId,
        /// Pages to unmap.
        range: PageRange,
    },
    /// `mprotect(2)` part or all of a mapping.
    Mprotect {
        /// The mapping.
        map: MapId,
        /// Pages to change.
        range: PageRange,
        /// New protection.
        prot: Prot,
    },
    /// `madvise(2)` part or all of a mapping.
    Madvise {
        /// The mapping.
        map: MapId,
        /// Pages to advise.
        range: PageRange,
        /// The advice.
        advice: Advice,
    },
    /// Load from or store to one byte of every page of the range, in order,
    /// from user space. Stops at the first page the access would fault on
    /// with SIGSEGV (reported, never delivered).
    Touch {
        /// The mapping.
        map: MapId,
        /// Pages to touch.
        range: PageRange,
        /// Load or store.
        access: Access,
    },
    /// Call a GUP entry point through the helper module.
    Gup {
        /// The handle the pages are held under (if any were returned).
        handle: HandleId,
        /// The entry point.
        api: GupApi,
        /// The mm whose pages are taken, for the `*_remote` entry points
        /// (`None` for the others: the calling process's own mm).
        target: Option<Proc>,
        /// The mapping.
        map: MapId,
        /// Pages to take, 1..=[`MAX_GUP_PAGES`].
        range: PageRange,
        /// FOLL_WRITE, FOLL_LONGTERM, FOLL_FORCE.
        foll: Foll,
    },
    /// Drop a handle: `put_page()` for FOLL_GET, `unpin_user_pages[_dirty_lock]()` for FOLL_PIN.
    Release {
        /// The handle.
        handle: HandleId,
        /// How.
        how: Release,
    },
    /// Ask for every THP in the range to be split, through
    /// `/sys/kernel/debug/split_huge_pages` (`"<pid>,0x<start>,0x<end>"`);
    /// pinned folios are skipped by the kernel.
    SplitHugePages {
        /// The mapping.
        map: MapId,
        /// Pages whose folios to split.
        range: PageRange,
    },
    /// `fork(2)` the parent; the child inherits every mapping the parent has.
    Fork {
        /// The new child.
        child: ChildId,
    },
    /// The child exits (`_exit(2)`) and is reaped.
    Exit {
        /// The child.
        child: ChildId,
    },
}

/// One operation in one process, with the `#` comment lines written above it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Step {
    /// The process that runs the operation.
    pub proc: Proc,
    /// The operation.
    pub op: Op,
    /// Comment lines (without the leading `#`) kept with this step.
    pub comments: Vec<String>,
}

/// Requirements and settings of a program.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// Kernel profile the program is meant for (`"6.12"`), or `None` for any.
    pub kernel: Option<String>,
    /// `/sys/kernel/mm/transparent_hugepage/enabled` while the program runs.
    pub thp: ThpMode,
    /// `/sys/kernel/mm/transparent_hugepage/use_zero_page` while the program runs.
    pub use_zero_page: bool,
}

impl Default for Header {
    fn default() -> Header {
        Header {
            kernel: None,
            thp: ThpMode::Always,
            use_zero_page: true,
        }
    }
}

/// A program: header, comment lines above the first step, steps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Program {
    /// Requirements and settings.
    pub header: Header,
    /// Comment lines (without `#`) at the top of the file, before the header.
    pub comments: Vec<String>,
    /// The steps, in order.
    pub steps: Vec<Step>,
}
