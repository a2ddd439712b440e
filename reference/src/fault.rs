//! Page faults: what `handle_mm_fault()` does to page tables and folios.
//!
//! Mirrors `mm/memory.c` (`__handle_mm_fault`, `do_anonymous_page`,
//! `do_read_fault` with fault-around, `do_shared_fault`, `do_cow_fault`,
//! `do_wp_page`, `wp_page_copy`) and `mm/huge_memory.c`
//! (`do_huge_pmd_anonymous_page`, `do_huge_pmd_wp_page`) for the mappings the
//! model knows. A fault never fails here: allocation failures are the
//! kernel's non-deterministic paths, recorded as [`Nondet`] points instead.

use crate::folio::{FolioKind, HUGE_ZERO_FIRST, ZERO_PAGE};
use crate::mm::{Mapped, Pmd, Vma, pmd_index, pte_index};
use crate::model::{Model, Nondet};
use crate::types::{HPAGE_PMD_NR, HPAGE_PMD_ORDER, MapKind, Pid, ThpMode, Vpn};

/// `fault_around_bytes` default (64 KiB) in pages (`mm/memory.c: fault_around_pages`).
const FAULT_AROUND_PAGES: u64 = 16;

/// Why a fault is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultKind {
    /// A load, or a GUP without FOLL_WRITE finding nothing mapped.
    Read,
    /// A store, or a GUP with FOLL_WRITE that cannot write through the mapping.
    Write,
    /// `FAULT_FLAG_UNSHARE`: a R/O FOLL_PIN that needs an exclusive anon page.
    Unshare,
}

impl Model {
    /// `mm/memory.c: handle_mm_fault()` at `vpn` of `pid`, inside `vma`
    /// (the caller's copy, as the kernel's callers pass the VMA they
    /// found). Its `anon_vma` may be out of date (an earlier fault prepared
    /// one): the fault paths then call `anon_vma_prepare()`, which finds the
    /// VMA's own and keeps it.
    pub(crate) fn handle_mm_fault(&mut self, pid: Pid, vma: &Vma, vpn: Vpn, kind: FaultKind) {
        debug_assert!(vma.start <= vpn && vpn < vma.end);
        let vma = *vma;
        let pmd = pmd_index(vpn);
        match self.mm(pid).pmds.get(&pmd) {
            None => {
                if self.thp_allowed(&vma) && self.do_huge_pmd_anonymous_page(pid, &vma, vpn, kind) {
                    return;
                }
            }
            Some(Pmd::Thp(_) | Pmd::HugeZero) => {
                if kind == FaultKind::Read || self.wp_huge_pmd(pid, vpn) {
                    return;
                }
            }
            Some(Pmd::Table(_)) => {}
        }
        self.handle_pte_fault(pid, &vma, vpn, kind);
    }

    /// `thp_vma_allowable_order(vma, .., TVA_IN_PF | TVA_ENFORCE_SYSFS, PMD_ORDER)`
    /// (`include/linux/huge_mm.h`): private anonymous VMAs only (shmem THP is
    /// off in the guest: `shmem_enabled=never`), per the global mode and the
    /// VMA's `VM_HUGEPAGE`/`VM_NOHUGEPAGE`.
    fn thp_allowed(&self, vma: &Vma) -> bool {
        use crate::mm::ThpAdvice;
        if vma.kind != MapKind::AnonPrivate || vma.thp == ThpAdvice::NoHuge {
            return false;
        }
        match self.config.thp {
            ThpMode::Always => true,
            ThpMode::Madvise => vma.thp == ThpAdvice::Huge,
            ThpMode::Never => false,
        }
    }

    /// `mm/huge_memory.c: do_huge_pmd_anonymous_page()`: false means
    /// VM_FAULT_FALLBACK (the PMD range is not inside the VMA).
    fn do_huge_pmd_anonymous_page(
        &mut self,
        pid: Pid,
        vma: &Vma,
        vpn: Vpn,
        kind: FaultKind,
    ) -> bool {
        let haddr = vpn - vpn % HPAGE_PMD_NR;
        // thp_vma_suitable_order()
        if haddr < vma.start || haddr + HPAGE_PMD_NR > vma.end {
            return false;
        }
        // vmf_anon_prepare(), even for the read fault below.
        if vma.anon_vma.is_none() {
            self.anon_vma_prepare(pid, vpn);
        }
        let pmd = pmd_index(vpn);
        if kind == FaultKind::Read && self.config.use_zero_page {
            // set_huge_zero_folio(): no rmap, no refcount on the folio.
            self.mm_mut(pid).pmds.insert(pmd, Pmd::HugeZero);
            self.nondet.push(Nondet::HugeZeroFault { pid, vpn });
            return true;
        }
        let f = self.mem.alloc(HPAGE_PMD_ORDER, FolioKind::Anon);
        // folio_add_new_anon_rmap(.., RMAP_EXCLUSIVE) on a PMD-mappable
        // folio marks only the head page exclusive.
        self.mem.add_pmd_map(f, false);
        let head = self.mem.folio(f).first;
        self.mem.page_mut(head).anon_exclusive = true;
        self.mm_mut(pid).pmds.insert(pmd, Pmd::Thp(f));
        self.vmstat.thp_fault_alloc += 1;
        self.nondet.push(Nondet::ThpFault { pid, vpn });
        true
    }

    /// `mm/memory.c: wp_huge_pmd()` → `do_huge_pmd_wp_page()` for a write or
    /// unshare fault on a PMD leaf. True if handled at PMD level; false after
    /// splitting the PMD (VM_FAULT_FALLBACK: retry at PTE level).
    fn wp_huge_pmd(&mut self, pid: Pid, vpn: Vpn) -> bool {
        let pmd = pmd_index(vpn);
        match self.mm(pid).pmds.get(&pmd) {
            Some(Pmd::Thp(f)) => {
                let f = *f;
                let head = self.mem.folio(f).first;
                if self.mem.page(head).anon_exclusive {
                    return true;
                }
                // Reuse only with no reference but the mapping's.
                if self.mem.folio(f).refcount == 1 {
                    self.mem.page_mut(head).anon_exclusive = true;
                    return true;
                }
                self.split_pmd(pid, pmd);
                false
            }
            Some(Pmd::HugeZero) => {
                self.split_pmd(pid, pmd);
                false
            }
            _ => false,
        }
    }

    /// `mm/memory.c: handle_pte_fault()` with a page table present or allocated.
    fn handle_pte_fault(&mut self, pid: Pid, vma: &Vma, vpn: Vpn, kind: FaultKind) {
        let pte = *self.mm_mut(pid).pte_slot(vpn);
        if pte == 0 {
            match (vma.kind, kind) {
                (MapKind::AnonPrivate, FaultKind::Read) => {
                    // do_anonymous_page(): the zero page for reads; special
                    // PTE, no reference, no anon_vma.
                    *self.mm_mut(pid).pte_slot(vpn) = ZERO_PAGE;
                }
                (MapKind::AnonPrivate, _) => {
                    if vma.anon_vma.is_none() {
                        self.anon_vma_prepare(pid, vpn);
                    }
                    self.map_new_anon_page(pid, vpn, None);
                }
                (_, FaultKind::Read) => self.do_read_fault(pid, vma, vpn),
                (MapKind::AnonShared | MapKind::MemfdShared, _) => {
                    // do_shared_fault()
                    let file = vma.file.expect("shmem VMA has a file");
                    let f = self.shmem_get_folio(file, vma.file_index(vpn));
                    let p = self.mem.folio(f).first;
                    self.mem.add_pte_map(p, true);
                    *self.mm_mut(pid).pte_slot(vpn) = p;
                }
                (MapKind::MemfdPrivate, _) => {
                    // do_cow_fault(): the page-cache folio is read (and
                    // allocated) but only the anon copy is mapped.
                    let file = vma.file.expect("memfd VMA has a file");
                    let f = self.shmem_get_folio(file, vma.file_index(vpn));
                    let source = self.mem.folio(f).first;
                    if vma.anon_vma.is_none() {
                        self.anon_vma_prepare(pid, vpn);
                    }
                    self.map_new_anon_page(pid, vpn, Some(source));
                }
            }
            return;
        }
        if kind == FaultKind::Read {
            return;
        }
        self.do_wp_page(pid, vma, vpn, pte);
    }

    /// A new exclusive order-0 anon folio mapped at `vpn`, the allocation's
    /// reference handed to the PTE; its content copied from `source` (zeroed
    /// without one).
    fn map_new_anon_page(&mut self, pid: Pid, vpn: Vpn, source: Option<u64>) {
        let f = self.mem.alloc(0, FolioKind::Anon);
        let p = self.mem.folio(f).first;
        self.mem.add_pte_map(p, false);
        let written = source.is_some_and(|s| self.mem.page(s).written);
        let page = self.mem.page_mut(p);
        page.anon_exclusive = true;
        page.written = written;
        *self.mm_mut(pid).pte_slot(vpn) = p;
    }

    /// `mm/memory.c: do_read_fault()` on a shmem VMA: fault-around maps the
    /// already cached pages of the 16-page window (`do_fault_around`,
    /// `filemap_map_pages`), then `shmem_fault()` allocates the faulting page
    /// if it is still not mapped.
    fn do_read_fault(&mut self, pid: Pid, vma: &Vma, vpn: Vpn) {
        let file = vma.file.expect("shmem VMA has a file");
        let pte_off = pte_index(vpn) as u64;
        let vma_off = vpn - vma.start;
        let from = (pte_off - pte_off % FAULT_AROUND_PAGES).max(pte_off - pte_off.min(vma_off));
        let to = (from + FAULT_AROUND_PAGES)
            .min(HPAGE_PMD_NR)
            .min(pte_off + (vma.end - vma.start) - vma_off);
        let base = vpn - pte_off;
        let file_size = self.files[file as usize].size;
        for off in from..to {
            let v = base + off;
            let index = vma.file_index(v);
            if index >= file_size || *self.mm_mut(pid).pte_slot(v) != 0 {
                continue;
            }
            if let Some(f) = crate::model::cached(&self.files[file as usize], index) {
                let p = self.mem.folio(f).first;
                self.mem.add_pte_map(p, true);
                *self.mm_mut(pid).pte_slot(v) = p;
            }
        }
        if *self.mm_mut(pid).pte_slot(vpn) == 0 {
            let f = self.shmem_get_folio(file, vma.file_index(vpn));
            let p = self.mem.folio(f).first;
            self.mem.add_pte_map(p, true);
            *self.mm_mut(pid).pte_slot(vpn) = p;
        }
    }

    /// `mm/memory.c: do_wp_page()` for a write or unshare fault on the
    /// present PTE mapping `page`.
    fn do_wp_page(&mut self, pid: Pid, vma: &Vma, vpn: Vpn, page: u64) {
        if vma.kind.is_shared() {
            // wp_page_shared(): the page stays, only the PTE changes.
            return;
        }
        if page != ZERO_PAGE {
            let f = self.mem.folio_of(page);
            let folio = self.mem.folio(f);
            if folio.is_anon() {
                // wp_can_reuse_anon_folio(): never a large folio (6.12; 6.1
                // reuses one too); a small one only with no reference but
                // this mapping's.
                let reusable =
                    (!folio.is_large() || self.profile.wp_reuses_large_anon) && folio.refcount == 1;
                if self.mem.page(page).anon_exclusive || reusable {
                    self.mem.page_mut(page).anon_exclusive = true;
                    return;
                }
            }
        }
        self.wp_page_copy(pid, vma, vpn, page);
    }

    /// `mm/memory.c: wp_page_copy()`: map a new exclusive order-0 anon copy
    /// at `vpn` instead of `old` (zeroed if `old` is the zero page) and drop
    /// the old mapping.
    fn wp_page_copy(&mut self, pid: Pid, vma: &Vma, vpn: Vpn, old: u64) {
        if vma.anon_vma.is_none() {
            self.anon_vma_prepare(pid, vpn);
        }
        self.map_new_anon_page(pid, vpn, (old != ZERO_PAGE).then_some(old));
        if old != ZERO_PAGE {
            self.mem.remove_pte_run(&[old], &mut self.vmstat);
        }
    }

    /// What `vpn` maps to in `pid`, as a page id (0 if nothing).
    pub(crate) fn mapped_page(&self, pid: Pid, vpn: Vpn) -> u64 {
        match self.mm(pid).lookup(vpn) {
            Mapped::None => 0,
            Mapped::Pte(p) => p,
            Mapped::PmdThp(f, i) => self.mem.folio(f).first + i,
            Mapped::PmdHugeZero(i) => HUGE_ZERO_FIRST + i,
        }
    }
}
