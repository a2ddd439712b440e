//! Address spaces: VMAs and page tables of one process.
//!
//! An [`Mm`] is what `struct mm_struct` is to the model: a set of
//! non-overlapping VMAs keyed by start page, a sparse page table with one
//! entry per PMD range (none, a table of 512 PTEs, or a PMD leaf mapping a
//! THP or the huge zero folio), and the `MMF_HAS_PINNED` flag. It holds no
//! folio accounting: the callers that change entries also call
//! [`crate::folio::Memory`].

use std::collections::BTreeMap;

use crate::folio::{FileId, FolioId};
use crate::types::{HPAGE_PMD_NR, MapKind, Prot, Vpn};

/// `VM_HUGEPAGE` / `VM_NOHUGEPAGE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ThpAdvice {
    /// Neither flag.
    None,
    /// `VM_HUGEPAGE` (MADV_HUGEPAGE).
    Huge,
    /// `VM_NOHUGEPAGE` (MADV_NOHUGEPAGE).
    NoHuge,
}

/// A VMA's `anon_vma`: its identity (reuse decides VMA merges) and whether
/// its chain is singular (`list_is_singular(&vma->anon_vma_chain)`, false in
/// a forked child, where the chain also links the parent's anon_vma).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AnonVma {
    /// Identity.
    pub id: u32,
    /// Chain of length one.
    pub singular: bool,
}

/// One VMA, `[start, end)` in pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Vma {
    /// First page.
    pub start: Vpn,
    /// One past the last page.
    pub end: Vpn,
    /// What backs it.
    pub kind: MapKind,
    /// The shmem file (all kinds but private anonymous).
    pub file: Option<FileId>,
    /// File page of `start` (`vm_pgoff`).
    pub pgoff: u64,
    /// `VM_READ`/`VM_WRITE`.
    pub prot: Prot,
    /// `VM_HUGEPAGE`/`VM_NOHUGEPAGE`.
    pub thp: ThpAdvice,
    /// `VM_ACCOUNT`: the private writable memory was charged to the commit
    /// limit. Not an access flag, so VMAs that differ in it never merge.
    pub account: bool,
    /// `vma->anon_vma`.
    pub anon_vma: Option<AnonVma>,
    /// When the VMA's anon_vma_chain entries were last inserted into the
    /// anon_vma interval tree (creation, fork, split, merge): among VMAs
    /// that start at the same page, the rmap walk visits earlier ones first.
    pub seq: u64,
}

impl Vma {
    /// `is_cow_mapping()`: private and may be written (every private mapping here).
    pub fn is_cow(&self) -> bool {
        !self.kind.is_shared()
    }
    /// File page index of `vpn`.
    pub fn file_index(&self, vpn: Vpn) -> u64 {
        self.pgoff + (vpn - self.start)
    }
    /// Same flags, file and contiguous file offset: the VMA-level part of
    /// `mm/vma.c: is_mergeable_vma()` + `can_vma_merge_after()` for `next`
    /// starting where `self` ends (anon_vma compatibility is checked apart).
    pub fn mergeable_with_next(&self, next: &Vma) -> bool {
        self.end == next.start
            && self.kind == next.kind
            && self.file == next.file
            && self.prot == next.prot
            && self.thp == next.thp
            && self.account == next.account
            && (self.file.is_none() || self.pgoff + (self.end - self.start) == next.pgoff)
    }
    /// `mm/vma.c: anon_vma_compatible()`: flags equal except access flags.
    pub fn anon_vma_compatible(&self, other: &Vma) -> bool {
        self.kind == other.kind
            && self.file == other.file
            && self.thp == other.thp
            && self.account == other.account
            && (self.end == other.start || other.end == self.start)
    }
}

/// A page-table entry: 0 for none, else the page id mapped.
pub(crate) type Pte = u64;

/// The entry for one PMD range.
#[derive(Clone, Debug)]
pub(crate) enum Pmd {
    /// A page table of PTEs.
    Table(Box<[Pte; HPAGE_PMD_NR as usize]>),
    /// A PMD mapping a PMD-order anon THP.
    Thp(FolioId),
    /// A PMD mapping the huge zero folio.
    HugeZero,
}

impl Pmd {
    /// An empty page table.
    pub fn empty_table() -> Pmd {
        Pmd::Table(zeroed_table())
    }
}

/// A page table of `pte_none()` entries, allocated zeroed on the heap
/// (`Box::new([0; N])` builds the 4 KiB array on the stack first, which
/// costs a copy, and a fake stack frame under AddressSanitizer).
pub(crate) fn zeroed_table() -> Box<[Pte; HPAGE_PMD_NR as usize]> {
    vec![0; HPAGE_PMD_NR as usize]
        .into_boxed_slice()
        .try_into()
        .expect("HPAGE_PMD_NR entries")
}

/// The PMD index of a page.
pub(crate) fn pmd_index(vpn: Vpn) -> u64 {
    vpn / HPAGE_PMD_NR
}

/// The index of a page within its PMD range.
pub(crate) fn pte_index(vpn: Vpn) -> usize {
    (vpn % HPAGE_PMD_NR) as usize
}

/// What maps a page, as a page-table walk finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mapped {
    /// `pmd_none()` or `pte_none()`.
    None,
    /// A PTE mapping this page.
    Pte(u64),
    /// A PMD leaf; the page is the folio's page at the address.
    PmdThp(FolioId, u64),
    /// A PMD mapping the huge zero folio; the page at the address.
    PmdHugeZero(u64),
}

/// One process's address space.
#[derive(Clone, Debug, Default)]
pub(crate) struct Mm {
    /// The process has not exited.
    pub alive: bool,
    /// `MMF_HAS_PINNED`: some FOLL_PIN GUP was attempted on this mm (sticky).
    pub has_pinned: bool,
    /// VMAs by start page.
    pub vmas: BTreeMap<Vpn, Vma>,
    /// Page-table entries by PMD index; absent = `pmd_none()`.
    pub pmds: BTreeMap<u64, Pmd>,
}

impl Mm {
    /// The slots of the page table at `start` (PMD-aligned) that each VMA
    /// covers, in address order, as `[lo, hi)` indices into the table.
    pub(crate) fn vma_slots(&self, start: Vpn) -> impl Iterator<Item = (usize, usize)> + '_ {
        let end = start + HPAGE_PMD_NR;
        self.overlapping(start, end).map(move |v| {
            (
                (v.start.max(start) - start) as usize,
                (v.end.min(end) - start) as usize,
            )
        })
    }

    /// A live, empty address space.
    pub fn new() -> Mm {
        Mm {
            alive: true,
            ..Mm::default()
        }
    }

    /// `vma_lookup()`: the VMA containing `vpn`.
    pub fn vma(&self, vpn: Vpn) -> Option<&Vma> {
        self.vmas
            .range(..=vpn)
            .next_back()
            .map(|(_, v)| v)
            .filter(|v| vpn < v.end)
    }

    /// The VMAs overlapping `[start, end)`, in order.
    fn overlapping(&self, start: Vpn, end: Vpn) -> impl Iterator<Item = &Vma> {
        // The one VMA that may start below `start` and still overlap it.
        let first = self
            .vmas
            .range(..=start)
            .next_back()
            .map_or(start, |(&s, _)| s);
        self.vmas
            .range(first..end)
            .map(|(_, v)| v)
            .filter(move |v| v.end > start)
    }

    /// The VMAs overlapping `[start, end)`, in order, as copies.
    pub fn vmas_in(&self, start: Vpn, end: Vpn) -> Vec<Vma> {
        self.overlapping(start, end).copied().collect()
    }

    /// What maps `vpn`.
    pub fn lookup(&self, vpn: Vpn) -> Mapped {
        match self.pmds.get(&pmd_index(vpn)) {
            None => Mapped::None,
            Some(Pmd::Table(t)) => match t[pte_index(vpn)] {
                0 => Mapped::None,
                p => Mapped::Pte(p),
            },
            Some(Pmd::Thp(f)) => Mapped::PmdThp(*f, pte_index(vpn) as u64),
            Some(Pmd::HugeZero) => Mapped::PmdHugeZero(pte_index(vpn) as u64),
        }
    }

    /// The PTE slot for `vpn`, allocating an empty table if the PMD is none
    /// (`pte_alloc()`). Panics on a PMD leaf: callers split leaves first.
    pub fn pte_slot(&mut self, vpn: Vpn) -> &mut Pte {
        let pmd = self
            .pmds
            .entry(pmd_index(vpn))
            .or_insert_with(Pmd::empty_table);
        match pmd {
            Pmd::Table(t) => &mut t[pte_index(vpn)],
            _ => panic!("pte_slot on a PMD leaf at page {vpn:#x}: split it first"),
        }
    }

    /// True if a VMA overlaps the PMD range with index `pmd`.
    pub fn pmd_range_in_use(&self, pmd: u64) -> bool {
        let start = pmd * HPAGE_PMD_NR;
        !self.vmas_in(start, start + HPAGE_PMD_NR).is_empty()
    }

    /// The VMA containing the whole PMD range `pmd`, if one does.
    pub fn vma_covering_pmd(&self, pmd: u64) -> Option<&Vma> {
        let start = pmd * HPAGE_PMD_NR;
        self.vma(start).filter(|v| v.end >= start + HPAGE_PMD_NR)
    }
}
