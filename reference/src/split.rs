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

use crate::folio::FolioKind;
use crate::mm::{Mapped, Pmd};
use crate::model::Model;
use crate::types::{HPAGE_PMD_ORDER, Pid, Vpn};

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
            if self.vma_at(pid, vpn).is_none() {
                break;
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
    fn split_folio(&mut self, f: u32) {
        let order = self.mem.folio(f).order;
        // unmap_folio(): TTU_SPLIT_HUGE_PMD splits every PMD mapping it.
        let mut leaves = Vec::new();
        for (i, mm) in self.mms.iter().enumerate() {
            for (&pmd, entry) in &mm.pmds {
                if matches!(entry, Pmd::Thp(g) if *g == f) {
                    leaves.push((Pid(i as u32), pmd));
                }
            }
        }
        for (pid, pmd) in leaves {
            self.split_pmd(pid, pmd);
        }
        self.mem.split_to_order0(f);
        if order == HPAGE_PMD_ORDER {
            self.vmstat.thp_split_page += 1;
        }
    }
}
