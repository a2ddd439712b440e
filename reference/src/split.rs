//! THP splitting on request: `/sys/kernel/debug/split_huge_pages`.
//!
//! Mirrors `mm/huge_memory.c: split_huge_pages_pid()`: walk the range one
//! page at a time (stopping at the first address without a VMA), and for
//! every THP found whose mapcount equals its refcount (`can_split_folio()`:
//! no pin, no FOLL_GET reference, no other extra reference) split it to
//! order 0 (`split_folio_to_order()`). Pinned folios are skipped silently.
//! Splitting unmaps the folio everywhere (PMD mappings are split first,
//! counting `thp_split_pmd` each) and maps the new small folios back in
//! the same places with the same `PageAnonExclusive` bits.

use crate::folio::{FolioKind, ZERO_PAGE};
use crate::mm::{Mapped, Pmd, Vma, pmd_index};
use crate::model::Model;
use crate::types::{HPAGE_PMD_NR, HPAGE_PMD_ORDER, MapKind, Pid, Vpn};

impl Model {
    /// Write `"<pid>,0x<start>,0x<end>"` to `split_huge_pages`.
    ///
    /// # Errors
    /// `ESRCH` for a dead process.
    pub fn split_huge_pages(
        &mut self,
        pid: Pid,
        start: Vpn,
        npages: u64,
    ) -> Result<(), crate::Errno> {
        self.check_alive(pid)?;
        for vpn in start..start + npages {
            let Some(vma) = self.vma_at(pid, vpn) else {
                break;
            };
            if self.profile.split_skips_prot_none && !vma.prot.readable() {
                continue;
            }
            // folio_walk_start() without FW_ZEROPAGE: no folio for the zero
            // page or the huge zero folio.
            let f = match self.mm(pid).lookup(vpn) {
                Mapped::PmdThp(f, _) => f,
                Mapped::Pte(p) => self.mem.folio_of(p),
                Mapped::None | Mapped::PmdHugeZero(_) => continue,
            };
            let folio = self.mem.folio(f);
            if folio.order == 0 || folio.kind != FolioKind::Anon {
                continue;
            }
            if folio.mapcount() != folio.refcount {
                continue;
            }
            self.split_folio(f);
        }
        Ok(())
    }

    /// `split_huge_page_to_list_to_order(.., 0)` of an unpinned anon THP.
    ///
    /// `unmap_folio()` walks the folio's rmap (the anon_vma interval tree:
    /// VMAs by start page, then by insertion) and unmaps it one mapping at
    /// a time, leaving migration entries: a PMD is split with `freeze`
    /// (`__split_huge_pmd_locked`: `thp_split_pmd`, the PMD mapping
    /// removed), every PTE is removed alone (`try_to_migrate_one`), and each
    /// removal may find the folio partially mapped (deferred split
    /// accounting). Then the folio is split, and `remap_page()` restores
    /// every mapping with its `PageAnonExclusive` bit — except that 6.12
    /// maps a page nobody ever wrote to the shared zero page instead
    /// (`mm/migrate.c: try_to_map_unused_to_zeropage`, RMP_USE_SHARED_ZEROPAGE).
    /// Pages mapped nowhere afterwards are freed.
    fn split_folio(&mut self, f: u32) {
        let order = self.mem.folio(f).order;
        let pages = self.mem.pages_of(f);
        // The split's own reference keeps the folio alive while unmapped.
        self.mem.get(f, 1);
        let mut walk: Vec<(u64, u64, Pid, Vma)> = Vec::new();
        for (i, mm) in self.mms.iter().enumerate().filter(|(_, m)| m.alive) {
            for vma in mm.vmas.values().filter(|v| v.kind == MapKind::AnonPrivate) {
                walk.push((vma.start, vma.seq, Pid(i as u32), *vma));
            }
        }
        walk.sort_by_key(|(start, seq, ..)| (*start, *seq));
        let mut restore: Vec<(Pid, Vpn, u64, bool)> = Vec::new();
        for (_, _, pid, vma) in walk {
            for pmd in pmd_index(vma.start)..=pmd_index(vma.end - 1) {
                let base = pmd * HPAGE_PMD_NR;
                match self.mm(pid).pmds.get(&pmd) {
                    Some(Pmd::Thp(g))
                        if *g == f && vma.start <= base && base + HPAGE_PMD_NR <= vma.end =>
                    {
                        let first = self.mem.folio(f).first;
                        let exclusive = self.mem.page(first).anon_exclusive;
                        self.vmstat.thp_split_pmd += 1;
                        self.mm_mut(pid).pmds.insert(pmd, Pmd::empty_table());
                        self.mem.remove_pmd_map_frozen(f, &mut self.vmstat);
                        for i in 0..HPAGE_PMD_NR {
                            restore.push((pid, base + i, first + i, exclusive));
                        }
                    }
                    Some(Pmd::Table(_)) => {
                        let lo = vma.start.max(base);
                        let hi = vma.end.min(base + HPAGE_PMD_NR);
                        for vpn in lo..hi {
                            let p = match self.mm(pid).lookup(vpn) {
                                Mapped::Pte(p) if pages.contains(&p) => p,
                                _ => continue,
                            };
                            let exclusive = self.mem.page(p).anon_exclusive;
                            *self.mm_mut(pid).pte_slot(vpn) = 0;
                            self.mem.remove_pte_run(&[p], &mut self.vmstat);
                            restore.push((pid, vpn, p, exclusive));
                        }
                    }
                    _ => {}
                }
            }
        }
        let new_folios = self.mem.split_to_order0(f);
        let zero_unused = self.profile.split_maps_unused_to_zero_page;
        for (pid, vpn, p, exclusive) in restore {
            if zero_unused && !self.mem.page(p).written {
                *self.mm_mut(pid).pte_slot(vpn) = ZERO_PAGE;
                continue;
            }
            self.mem.add_pte_map(p, true);
            self.mem.page_mut(p).anon_exclusive = exclusive;
            *self.mm_mut(pid).pte_slot(vpn) = p;
        }
        for nf in new_folios {
            self.mem.free_if_unreferenced(nf);
        }
        if order == HPAGE_PMD_ORDER {
            self.vmstat.thp_split_page += 1;
        }
    }
}
