//! fork() and exit(): copying an address space, and tearing one down.
//!
//! Mirrors `kernel/fork.c: dup_mmap` and `mm/memory.c: copy_page_range`
//! (`vma_needs_copy`, `copy_present_ptes`, `copy_present_page`) and
//! `mm/huge_memory.c: copy_huge_pmd`: VMAs without an anon_vma get no page
//! tables in the child (faults fill them later); anon pages are shared
//! copy-on-write (PageAnonExclusive cleared) unless the folio may be pinned
//! (`folio_needs_cow_for_dma`: `MMF_HAS_PINNED` and
//! `folio_maybe_dma_pinned`), in which case every exclusive page is copied
//! for the child right away and a PMD leaf is split first.

use crate::errno::Errno;
use crate::folio::{FolioKind, HUGE_ZERO_FIRST, ZERO_PAGE};
use crate::mm::{Mm, Pmd, Vma, pmd_index, pte_index};
use crate::model::Model;
use crate::types::{HPAGE_PMD_NR, Pid};

impl Model {
    /// `fork(2)` of `parent`; returns the child.
    ///
    /// # Errors
    /// `ESRCH` for a dead parent.
    pub fn fork(&mut self, parent: Pid) -> Result<Pid, Errno> {
        self.check_alive(parent)?;
        let child = Pid(self.mms.len() as u32);
        // MMF_HAS_PINNED is not in MMF_INIT_MASK: the child starts without it.
        self.mms.push(Mm::new());
        let vmas: Vec<Vma> = self.mm(parent).vmas.values().copied().collect();
        for vma in vmas {
            let mut copy = vma;
            copy.seq = self.next_seq();
            // anon_vma_fork(): the child's VMA links its own anon_vma and
            // the parent's, so its chain is not singular.
            copy.anon_vma = vma.anon_vma.map(|_| {
                let mut a = self.new_anon_vma();
                a.singular = false;
                a
            });
            self.mm_mut(child).vmas.insert(copy.start, copy);
            // vma_needs_copy(): only VMAs with an anon_vma.
            if vma.anon_vma.is_some() {
                self.copy_page_range(parent, child, &vma);
            }
        }
        Ok(child)
    }

    /// `copy_page_range()` for one VMA.
    fn copy_page_range(&mut self, parent: Pid, child: Pid, vma: &Vma) {
        let first = pmd_index(vma.start);
        let last = pmd_index(vma.end - 1);
        for pmd in first..=last {
            let entry = self.mm(parent).pmds.get(&pmd).cloned();
            match entry {
                None => continue,
                Some(Pmd::HugeZero) => {
                    self.mm_mut(child).pmds.insert(pmd, Pmd::HugeZero);
                    continue;
                }
                Some(Pmd::Thp(f)) => {
                    // copy_huge_pmd() → folio_try_dup_anon_rmap_pmd().
                    let head = self.mem.folio(f).first;
                    let maybe_pinned = self.mm(parent).has_pinned && self.mem.maybe_dma_pinned(f);
                    if self.mem.page(head).anon_exclusive && maybe_pinned {
                        // -EBUSY: split the parent's PMD, copy at PTE level.
                        self.split_pmd(parent, pmd);
                    } else {
                        self.mem.page_mut(head).anon_exclusive = false;
                        self.mem.add_pmd_map(f, true);
                        self.mm_mut(child).pmds.insert(pmd, Pmd::Thp(f));
                        continue;
                    }
                }
                Some(Pmd::Table(_)) => {}
            }
            self.copy_pte_range(parent, child, vma, pmd);
        }
    }

    /// `copy_pte_range()` for the part of `vma` inside PMD range `pmd`.
    fn copy_pte_range(&mut self, parent: Pid, child: Pid, vma: &Vma, pmd: u64) {
        let start = vma.start.max(pmd * HPAGE_PMD_NR);
        let end = vma.end.min((pmd + 1) * HPAGE_PMD_NR);
        // The child's page table is allocated even if nothing gets copied.
        self.mm_mut(child)
            .pmds
            .entry(pmd)
            .or_insert_with(Pmd::empty_table);
        let parent_has_pinned = self.mm(parent).has_pinned;
        for vpn in start..end {
            let p = match self.mm(parent).pmds.get(&pmd) {
                Some(Pmd::Table(t)) => t[pte_index(vpn)],
                _ => unreachable!("split above"),
            };
            if p == 0 {
                continue;
            }
            let child_pte = if p == ZERO_PAGE
                || (HUGE_ZERO_FIRST..HUGE_ZERO_FIRST + HPAGE_PMD_NR).contains(&p)
            {
                p
            } else {
                let f = self.mem.folio_of(p);
                if self.mem.folio(f).kind == FolioKind::Anon {
                    // folio_try_dup_anon_rmap_pte(s)(): a maybe-pinned folio's
                    // exclusive pages are copied (copy_present_page), other
                    // pages become COW-shared.
                    let maybe_pinned = parent_has_pinned && self.mem.maybe_dma_pinned(f);
                    if maybe_pinned && self.mem.page(p).anon_exclusive {
                        let nf = self.mem.alloc(0, FolioKind::Anon);
                        let np = self.mem.folio(nf).first;
                        self.mem.add_pte_map(np, false);
                        let written = self.mem.page(p).written;
                        let page = self.mem.page_mut(np);
                        page.anon_exclusive = true;
                        page.written = written;
                        np
                    } else {
                        self.mem.page_mut(p).anon_exclusive = false;
                        self.mem.add_pte_map(p, true);
                        p
                    }
                } else {
                    // folio_dup_file_rmap_pte()
                    self.mem.add_pte_map(p, true);
                    p
                }
            };
            *self.mm_mut(child).pte_slot(vpn) = child_pte;
        }
    }

    /// The process exits: every VMA is zapped (`exit_mmap`), its page tables
    /// freed, and shmem files nothing maps any more are released.
    ///
    /// # Errors
    /// `ESRCH` for a dead process, `EINVAL` for the parent (programs only
    /// end children).
    pub fn exit(&mut self, pid: Pid) -> Result<(), Errno> {
        self.check_alive(pid)?;
        if pid == Pid::PARENT {
            return Err(Errno::EINVAL);
        }
        let vmas: Vec<Vma> = self.mm(pid).vmas.values().copied().collect();
        for vma in vmas {
            self.zap_vma_range(pid, vma.start, vma.end);
        }
        let mm = self.mm_mut(pid);
        mm.vmas.clear();
        mm.pmds.clear();
        mm.alive = false;
        self.release_files_if_unused();
        Ok(())
    }
}
