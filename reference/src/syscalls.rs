//! The memory syscalls of a program: mmap, munmap, mprotect, madvise, and
//! user-space loads and stores ("touch").
//!
//! VMA bookkeeping mirrors `mm/vma.c` (split at range boundaries, merge
//! neighbours whose flags, file and anon_vma agree) and `mm/mprotect.c` /
//! `mm/madvise.c` (walk the VMAs of a range, `-ENOMEM` for holes). Whenever
//! a VMA boundary lands inside a PMD mapped by a leaf, that PMD is split
//! (`vma_adjust_trans_huge`).

use crate::errno::Errno;
use crate::fault::FaultKind;
use crate::mm::{AnonVma, Mapped, Pmd, ThpAdvice, Vma, pmd_index, pte_index};
use crate::model::{Model, ShmemFile};
use crate::types::{Access, Advice, HPAGE_PMD_NR, MapKind, Pid, Prot, Vpn};

/// A user-space access that would raise SIGSEGV.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segv {
    /// Index of the faulting page within the touched range.
    pub at: u64,
}

impl Model {
    /// `mmap(2)` with `MAP_FIXED_NOREPLACE` at `start`. Shmem kinds get a new
    /// file of exactly `npages` pages, mapped from offset 0.
    ///
    /// # Errors
    /// `EINVAL` for an empty mapping, `EEXIST` if the range overlaps a VMA,
    /// `ESRCH` for a dead process.
    pub fn mmap(
        &mut self,
        pid: Pid,
        start: Vpn,
        npages: u64,
        kind: MapKind,
        prot: Prot,
    ) -> Result<(), Errno> {
        self.check_alive(pid)?;
        if npages == 0 {
            return Err(Errno::EINVAL);
        }
        let end = start + npages;
        if !self.mm(pid).vmas_in(start, end).is_empty() {
            return Err(Errno::EEXIST);
        }
        let file = kind.is_shmem().then(|| {
            self.files.push(ShmemFile {
                size: npages,
                live: true,
                cache: vec![crate::model::NO_FOLIO; npages as usize],
            });
            (self.files.len() - 1) as u32
        });
        let vma = Vma {
            start,
            end,
            kind,
            file,
            pgoff: 0,
            prot,
            thp: ThpAdvice::None,
            // mm/mmap.c: accountable_mapping(): private and writable.
            account: !kind.is_shared() && prot.writable(),
            anon_vma: None,
            seq: self.next_seq(),
        };
        self.mm_mut(pid).vmas.insert(start, vma);
        self.merge_around(pid, start);
        Ok(())
    }

    /// `munmap(2)`.
    ///
    /// # Errors
    /// `EINVAL` for an empty range, `ESRCH` for a dead process.
    pub fn munmap(&mut self, pid: Pid, start: Vpn, npages: u64) -> Result<(), Errno> {
        self.check_alive(pid)?;
        if npages == 0 {
            return Err(Errno::EINVAL);
        }
        let end = start + npages;
        self.split_vma_at(pid, start, true);
        self.split_vma_at(pid, end, false);
        for vma in self.mm(pid).vmas_in(start, end) {
            self.zap_vma_range(pid, vma.start, vma.end);
            self.mm_mut(pid).vmas.remove(&vma.start);
        }
        self.free_pgtables(pid, start, end);
        self.release_files_if_unused();
        Ok(())
    }

    /// `mprotect(2)`: changes apply VMA by VMA up to the first hole.
    ///
    /// # Errors
    /// `ENOMEM` if the range starts outside a VMA or has a hole (VMAs before
    /// the hole keep their new protection), `ESRCH` for a dead process.
    pub fn mprotect(&mut self, pid: Pid, start: Vpn, npages: u64, prot: Prot) -> Result<(), Errno> {
        self.check_alive(pid)?;
        let end = start + npages;
        if npages == 0 {
            return Ok(());
        }
        if self.vma_at(pid, start).is_none() {
            return Err(Errno::ENOMEM);
        }
        let mut next = start;
        while next < end {
            let Some(vma) = self.vma_at(pid, next) else {
                return Err(Errno::ENOMEM);
            };
            let seg_end = vma.end.min(end);
            if vma.prot != prot {
                let unaccount = self.profile.mprotect_unaccounts_unfaulted_anon;
                self.modify_vma(pid, next, seg_end, |v| {
                    v.account = mprotect_account(v, prot, unaccount);
                    v.prot = prot;
                });
            }
            next = seg_end;
        }
        Ok(())
    }

    /// `madvise(2)` with MADV_DONTNEED, MADV_HUGEPAGE or MADV_NOHUGEPAGE:
    /// applied to every VMA part of the range; holes give `ENOMEM` at the end.
    ///
    /// # Errors
    /// `ENOMEM` if part of the range is not mapped, `ESRCH` for a dead process.
    pub fn madvise(
        &mut self,
        pid: Pid,
        start: Vpn,
        npages: u64,
        advice: Advice,
    ) -> Result<(), Errno> {
        self.check_alive(pid)?;
        if npages == 0 {
            return Ok(());
        }
        let end = start + npages;
        let vmas = self.mm(pid).vmas_in(start, end);
        let mut covered = 0;
        for vma in &vmas {
            let (s, e) = (vma.start.max(start), vma.end.min(end));
            covered += e - s;
            match advice {
                Advice::DontNeed => self.zap_vma_range(pid, s, e),
                Advice::HugePage | Advice::NoHugePage => {
                    let thp = if advice == Advice::HugePage {
                        ThpAdvice::Huge
                    } else {
                        ThpAdvice::NoHuge
                    };
                    // The VMA may have been split or merged by the previous
                    // part: look it up again.
                    let current = self.vma_at(pid, s).expect("still mapped");
                    if current.thp != thp {
                        self.modify_vma(pid, s, e, |v| v.thp = thp);
                    }
                }
            }
        }
        if covered < npages {
            Err(Errno::ENOMEM)
        } else {
            Ok(())
        }
    }

    /// Load from or store to every page of `[start, start + npages)` in
    /// order, faulting as the CPU would.
    ///
    /// # Errors
    /// [`Segv`] at the first page with no VMA, a `PROT_NONE` VMA, or (for a
    /// store) a read-only VMA; the pages before it were touched.
    pub fn touch(&mut self, pid: Pid, start: Vpn, npages: u64, access: Access) -> Result<(), Segv> {
        assert!(self.is_alive(pid), "touch in a dead process {pid:?}");
        let mut i = 0;
        while i < npages {
            let vpn = start + i;
            let Some(mut vma) = self.vma_at(pid, vpn) else {
                return Err(Segv { at: i });
            };
            let allowed = match access {
                Access::Read => vma.prot.readable(),
                Access::Write => vma.prot.writable(),
            };
            if !allowed {
                return Err(Segv { at: i });
            }
            // Pages up to the end of this VMA and this PMD range share the
            // VMA and the page-table entry kind: walk them without lookups.
            let chunk_end = (start + npages)
                .min(vma.end)
                .min((vpn | (HPAGE_PMD_NR - 1)) + 1);
            let mut v = vpn;
            while v < chunk_end {
                v = self.touch_present_ptes(pid, &vma, v, chunk_end, access);
                if v == chunk_end {
                    break;
                }
                // A PMD leaf that needs no fault covers the rest of the chunk.
                if self.leaf_needs_no_fault(pid, &vma, v, access) {
                    if access == Access::Write {
                        let first = self.mapped_page(pid, v);
                        for p in first..first + (chunk_end - v) {
                            // The executor stores a non-zero byte.
                            self.mem.set_written(p);
                        }
                    }
                    break;
                }
                if !self.access_needs_no_fault(pid, &vma, v, access) {
                    let kind = match access {
                        Access::Read => FaultKind::Read,
                        Access::Write => FaultKind::Write,
                    };
                    self.handle_mm_fault(pid, &vma, v, kind);
                    if vma.anon_vma.is_none() {
                        // The fault may have prepared one: keep the copy current.
                        vma = self.vma_at(pid, v).expect("a fault keeps the VMA");
                    }
                }
                if access == Access::Write {
                    // The executor stores a non-zero byte.
                    let p = self.mapped_page(pid, v);
                    self.mem.set_written(p);
                }
                v += 1;
            }
            i += chunk_end - vpn;
        }
        Ok(())
    }

    /// Touch the pages of `[vpn, end)` (one page table's, one VMA's) whose
    /// PTEs let the access through without a fault, up to the first that
    /// does not, in one walk over the table instead of a page-table lookup
    /// per page; returns that first page (`vpn` without a page table).
    /// Per page, the same rule as [`Model::access_needs_no_fault`].
    fn touch_present_ptes(
        &mut self,
        pid: Pid,
        vma: &Vma,
        vpn: Vpn,
        end: Vpn,
        access: Access,
    ) -> Vpn {
        let Some(Pmd::Table(table)) = self.mms[pid.0 as usize].pmds.get(&pmd_index(vpn)) else {
            return vpn;
        };
        let first = pte_index(vpn);
        let ptes = &table[first..first + (end - vpn) as usize];
        // A load, or a store through a shared mapping, needs only a PTE; a
        // store through a private one an exclusive anon page.
        let any_present = access == Access::Read || vma.kind.is_shared();
        let through = ptes
            .iter()
            .take_while(|&&p| p != 0 && (any_present || self.mem.is_exclusive_anon(p)))
            .count();
        if access == Access::Write {
            for &p in &ptes[..through] {
                // The executor stores a non-zero byte.
                self.mem.set_written(p);
            }
        }
        vpn + through as u64
    }

    /// `vpn` is mapped by a PMD leaf through which the access needs no
    /// fault: a load from a THP or the huge zero folio, a store to a THP
    /// whose head page is exclusive.
    fn leaf_needs_no_fault(&self, pid: Pid, vma: &Vma, vpn: Vpn, access: Access) -> bool {
        match self.mm(pid).lookup(vpn) {
            Mapped::PmdThp(f, _) => {
                access == Access::Read
                    || vma.kind.is_shared()
                    || self.mem.page(self.mem.folio(f).first).anon_exclusive
            }
            Mapped::PmdHugeZero(_) => access == Access::Read,
            _ => false,
        }
    }

    /// The access goes through without a fault that could change any page:
    /// a load from anything present; a store to an exclusive anon page or
    /// through a shared mapping (a write fault there changes no page). A
    /// store that may fault anyway takes `handle_mm_fault()`, which leaves
    /// writable mappings as they are.
    fn access_needs_no_fault(&self, pid: Pid, vma: &Vma, vpn: Vpn, access: Access) -> bool {
        let page = self.mapped_page(pid, vpn);
        if page == 0 {
            return false;
        }
        match access {
            Access::Read => true,
            Access::Write if vma.kind.is_shared() => true,
            Access::Write => self.gup_exclusive(pid, vpn, page),
        }
    }

    /// Split the VMA containing `vpn` so that a VMA starts at `vpn`
    /// (`mm/vma.c: __split_vma`; both parts share the anon_vma), then split
    /// a PMD leaf the new boundary cuts. `new_below`: the new VMA is the
    /// lower part (its anon_vma_chain is inserted first, then the old VMA's
    /// is reinserted with its new bounds).
    pub(crate) fn split_vma_at(&mut self, pid: Pid, vpn: Vpn, new_below: bool) {
        let Some(vma) = self.vma_at(pid, vpn) else {
            return;
        };
        if vma.start == vpn {
            return;
        }
        let mut low = vma;
        let mut high = vma;
        low.end = vpn;
        high.start = vpn;
        if high.file.is_some() {
            high.pgoff = vma.pgoff + (vpn - vma.start);
        }
        let (first, second) = (self.next_seq(), self.next_seq());
        if new_below {
            (low.seq, high.seq) = (first, second);
        } else {
            (high.seq, low.seq) = (first, second);
        }
        let mm = self.mm_mut(pid);
        mm.vmas.insert(low.start, low);
        mm.vmas.insert(high.start, high);
        self.split_straddling_pmds(pid, vpn, vpn + 1);
    }

    /// Apply `change` to `[start, end)`, which lies inside one VMA: split it
    /// at the range's ends, change the middle, then merge with neighbours.
    fn modify_vma(&mut self, pid: Pid, start: Vpn, end: Vpn, change: impl Fn(&mut Vma)) {
        self.split_vma_at(pid, start, true);
        self.split_vma_at(pid, end, false);
        let vma = self
            .mm_mut(pid)
            .vmas
            .get_mut(&start)
            .expect("split above made a VMA start here");
        change(vma);
        self.merge_around(pid, start);
    }

    /// Merge the VMA starting at `start` with its previous and/or next
    /// neighbour as `mm/vma.c: vma_merge_existing_range()` would:
    /// `can_vma_merge_left` / `can_vma_merge_right` with the VMA's own
    /// anon_vma against each neighbour's (`is_mergeable_anon_vma`), and,
    /// to merge both, prev's and next's anon_vmas compatible with each
    /// other (`are_anon_vmas_compatible`).
    fn merge_around(&mut self, pid: Pid, start: Vpn) {
        let mm = self.mm(pid);
        let cur = mm.vmas[&start];
        let prev = mm
            .vmas
            .range(..start)
            .next_back()
            .map(|(_, v)| *v)
            .filter(|p| p.end == cur.start);
        let next = mm.vmas.get(&cur.end).copied();
        let left = prev.filter(|p| p.mergeable_with_next(&cur) && mergeable_anon(cur.anon_vma, p));
        let right = next.filter(|n| {
            cur.mergeable_with_next(n)
                && mergeable_anon(cur.anon_vma, n)
                && left.is_none_or(|p| anon_vmas_compatible(p.anon_vma, n.anon_vma))
        });
        let (lo, hi) = match (left, right) {
            (None, None) => return,
            (Some(p), None) => (p, cur),
            (None, Some(n)) => (cur, n),
            (Some(p), Some(n)) => (p, n),
        };
        // dup_anon_vma(): the merged VMA takes whichever anon_vma exists.
        let anon_vma = left
            .and_then(|p| p.anon_vma)
            .or(right.and_then(|n| n.anon_vma))
            .or(cur.anon_vma);
        let merged = Vma {
            end: hi.end,
            anon_vma,
            seq: self.next_seq(),
            ..lo
        };
        let mm = self.mm_mut(pid);
        for v in [left, Some(cur), right].into_iter().flatten() {
            mm.vmas.remove(&v.start);
        }
        mm.vmas.insert(merged.start, merged);
    }
}

/// `mm/mprotect.c: mprotect_fixup()`: the `VM_ACCOUNT` a VMA has after its
/// protection changes to `prot`. Becoming writable charges a private
/// mapping that was never charged; losing write uncharges a private
/// anonymous one that has not faulted yet (no anon_vma), where the profile
/// says so.
fn mprotect_account(vma: &Vma, prot: Prot, unaccount_unfaulted: bool) -> bool {
    if prot.writable() {
        vma.account || !vma.kind.is_shared()
    } else {
        vma.account
            && !(unaccount_unfaulted && vma.kind == MapKind::AnonPrivate && vma.anon_vma.is_none())
    }
}

/// `mm/vma.c: is_mergeable_anon_vma(anon_vma, neighbour->anon_vma,
/// neighbour)`: equal anon_vmas, or one of them absent while the
/// neighbour's anon_vma_chain is singular (so never a neighbour without one
/// next to a VMA with one, nor a VMA cloned from a parent).
fn mergeable_anon(anon_vma: Option<AnonVma>, neighbour: &Vma) -> bool {
    let singular = neighbour.anon_vma.is_some_and(|a| a.singular);
    if (anon_vma.is_none() || neighbour.anon_vma.is_none()) && singular {
        return true;
    }
    anon_vma.map(|a| a.id) == neighbour.anon_vma.map(|a| a.id)
}

/// `mm/vma.c: are_anon_vmas_compatible()`: one absent, or equal.
fn anon_vmas_compatible(a: Option<AnonVma>, b: Option<AnonVma>) -> bool {
    a.is_none() || b.is_none() || a.map(|x| x.id) == b.map(|x| x.id)
}
