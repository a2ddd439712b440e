//! GUP: `get_user_pages*()` and `pin_user_pages*()`, and releasing what they
//! returned.
//!
//! Mirrors `mm/gup.c`: `__get_user_pages()` walks the range page by page
//! (a PMD leaf in one step), checks each VMA (`check_vma_flags`), follows
//! the page tables (`follow_page_pte`, `follow_huge_pmd`), faults in what is
//! missing or must be unshared (`faultin_page`, `gup_must_unshare`), and
//! grabs references (`try_grab_folio`). GUP-fast takes the same pages in the
//! end (it only pins what the slow path would, and falls back to it for the
//! rest), so the model does not distinguish the entry points beyond FOLL_GET
//! vs FOLL_PIN and local vs remote. The helper module's own argument checks
//! (`kmod/pinfuzz.h`) come first.

use crate::errno::Errno;
use crate::fault::FaultKind;
use crate::folio::{FolioKind, HUGE_ZERO_FIRST};
use crate::mm::{Mapped, Pmd, Vma, pmd_index, pte_index};
use crate::model::{Handle, Model};
use crate::types::{Foll, GupApi, HPAGE_PMD_NR, HandleId, Pid, Release, Vpn};

/// Most pages one GUP call may ask for (`PINFUZZ_MAX_PAGES_PER_CALL`).
pub const MAX_PAGES_PER_CALL: u64 = 1024;
/// Most pages one open file of the helper module may hold (`PINFUZZ_MAX_PAGES_HELD`).
pub const MAX_PAGES_HELD: u64 = 16384;
/// Most live handles per open file (`PINFUZZ_MAX_HANDLES`).
pub const MAX_HANDLES: usize = 1024;

/// What a GUP call returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gup {
    /// Pages taken (the entry point's positive return value).
    pub count: u64,
    /// The handle holding them (every successful call gets one).
    pub handle: HandleId,
}

/// The result of following one address (`follow_page_mask()`).
enum Follow {
    /// The page, and how many pages from it the same PMD leaf maps.
    Page { page: u64, leaf_pages: u64 },
    /// Nothing usable: fault (read or write, per FOLL_WRITE) and retry.
    Fault,
    /// `-EMLINK`: unshare fault and retry.
    Unshare,
}

impl Model {
    /// Call `api` from `caller` on `[start, start + nr)` of `target`'s mm
    /// (`target` must be `caller` unless `api` is a `*_remote` one).
    ///
    /// # Errors
    /// The helper module's validation (`EINVAL` for bad flags or sizes,
    /// `ESRCH` for a dead target, `ENOSPC` past its caps), then whatever GUP
    /// returns when not even the first page could be taken (`EFAULT`, …).
    pub fn gup(
        &mut self,
        caller: Pid,
        api: GupApi,
        target: Pid,
        start: Vpn,
        nr: u64,
        foll: Foll,
    ) -> Result<Gup, Errno> {
        self.check_alive(caller)?;
        if foll.unknown_bits() != 0
            || (foll.contains(Foll::LONGTERM) && !api.is_pin())
            || nr == 0
            || nr > MAX_PAGES_PER_CALL
            || (!api.is_remote() && target != caller)
        {
            return Err(Errno::EINVAL);
        }
        self.check_alive(target)?;
        if self.pages_held + nr > MAX_PAGES_HELD || self.live_handle_count >= MAX_HANDLES {
            return Err(Errno::Other(28)); // ENOSPC
        }
        let pin = api.is_pin();
        if pin {
            // mm_set_has_pinned_flag(): sticky, set before any page is looked at.
            self.mm_mut(target).has_pinned = true;
        }
        let mut pages = Vec::with_capacity(nr as usize);
        if api.is_fast() && pin && !foll.contains(Foll::WRITE) {
            self.gup_fast_ro_pin(target, start, nr, foll, &mut pages);
        }
        let done = pages.len() as u64;
        let result = self.get_user_pages(target, start + done, nr - done, foll, pin, &mut pages);
        match result {
            Err(e) if pages.is_empty() => Err(e),
            _ => {
                let handle = HandleId(self.handles.len() as u32);
                let count = pages.len() as u64;
                self.pages_held += count;
                self.live_handle_count += 1;
                self.handles.push(Some(Handle { pin, pages }));
                Ok(Gup { count, handle })
            }
        }
    }

    /// `mm/gup.c: __get_user_pages()`: fills `pages`; an error after some
    /// pages were taken ends the walk early (the caller returns the count).
    fn get_user_pages(
        &mut self,
        pid: Pid,
        start: Vpn,
        nr: u64,
        foll: Foll,
        pin: bool,
        pages: &mut Vec<u64>,
    ) -> Result<(), Errno> {
        let end = start + nr;
        let mut vpn = start;
        let mut vma: Option<Vma> = None;
        while vpn < end {
            if vma.is_none_or(|v| vpn >= v.end) {
                let v = self.vma_at(pid, vpn).ok_or(Errno::EFAULT)?;
                check_vma_flags(&v, foll)?;
                vma = Some(v);
            }
            let v = vma.expect("set above");
            vpn = self.take_present_ptes(pid, &v, vpn..end.min(v.end), foll, pin, pages);
            if vpn >= v.end || vpn == end {
                continue;
            }
            let mut tries = 0;
            let (page, leaf_pages) = loop {
                tries += 1;
                assert!(tries < 8, "GUP retry loop at page {vpn:#x}: model bug");
                match self.follow_page(pid, &v, vpn, foll, pin) {
                    Follow::Page { page, leaf_pages } => break (page, leaf_pages),
                    Follow::Fault => {
                        let kind = if foll.contains(Foll::WRITE) {
                            FaultKind::Write
                        } else {
                            FaultKind::Read
                        };
                        self.handle_mm_fault(pid, &v, vpn, kind);
                    }
                    Follow::Unshare => self.handle_mm_fault(pid, &v, vpn, FaultKind::Unshare),
                }
            };
            if tries > 1 && v.anon_vma.is_none() {
                // The fault may have prepared one: look the VMA up again.
                vma = None;
            }
            // A PMD leaf is taken in one step: this page and the rest of the
            // leaf that the range covers (`page_increm`).
            let take = leaf_pages.min(end - vpn);
            let f = self.mem.folio_of(page);
            if pin {
                self.mem.pin(f, take as i64, &mut self.vmstat);
            } else {
                self.mem.get(f, take as i64);
            }
            pages.extend(page..page + take);
            vpn += take;
        }
        Ok(())
    }

    /// The lockless GUP-fast walk (`mm/gup.c: gup_fast_pte_range`,
    /// `gup_fast_pmd_leaf`) of a read-only FOLL_PIN, up to the first page it
    /// cannot take; the slow path takes the rest. It matters to the model
    /// only where it differs visibly from the slow path: GUP-fast pins a
    /// page first (`try_grab_folio_fast`: `nr_foll_pin_acquired` grows) and
    /// only then checks `gup_must_unshare(NULL, ..)`, which, without a VMA,
    /// says yes for every non-exclusive anon page and for every non-anon
    /// page under FOLL_LONGTERM whose PTE is not writable; it then unpins
    /// (`gup_put_folio`: `nr_foll_pin_released` grows) and stops. A write
    /// pin never gets that far without a writable PTE, so it is left to the
    /// slow path entirely. Zero-page PTEs are special and PROT_NONE entries
    /// are protnone: the walk stops before taking them.
    fn gup_fast_ro_pin(&mut self, pid: Pid, start: Vpn, nr: u64, foll: Foll, pages: &mut Vec<u64>) {
        let end = start + nr;
        let mut vpn = start;
        while vpn < end {
            let Some(vma) = self.vma_at(pid, vpn) else {
                return;
            };
            if !vma.prot.readable() {
                return;
            }
            let (page, leaf_pages, checked) = match self.mm(pid).lookup(vpn) {
                Mapped::None => return,
                Mapped::Pte(p) if p == crate::folio::ZERO_PAGE => return,
                Mapped::Pte(p) => (p, 1, p),
                Mapped::PmdThp(f, i) => {
                    let head = self.mem.folio(f).first;
                    (head + i, HPAGE_PMD_NR - i, head)
                }
                Mapped::PmdHugeZero(i) => (HUGE_ZERO_FIRST + i, HPAGE_PMD_NR - i, HUGE_ZERO_FIRST),
            };
            let take = leaf_pages.min(end - vpn);
            let f = self.mem.folio_of(page);
            let anon = self.mem.folio(f).kind == FolioKind::Anon;
            // A shared mapping's PTEs are writable exactly while the VMA is
            // (no write-notify for shmem); a private mapping's non-anon PTEs
            // never are.
            let pte_write = vma.kind.is_shared() && vma.prot.writable();
            let unshare = if anon {
                !self.mem.page(checked).anon_exclusive
            } else {
                self.profile.unshare_non_anon_longterm
                    && foll.contains(Foll::LONGTERM)
                    && !pte_write
            };
            self.mem.pin(f, take as i64, &mut self.vmstat);
            if unshare {
                self.mem.unpin(f, take as i64, &mut self.vmstat);
                return;
            }
            pages.extend(page..page + take);
            vpn += take;
        }
    }

    /// `follow_page_mask()` for one address: the page if it can be taken as
    /// asked, else which fault is needed.
    fn follow_page(&self, pid: Pid, vma: &Vma, vpn: Vpn, foll: Foll, pin: bool) -> Follow {
        // For a PMD leaf, `PageAnonExclusive()` of the head page is the one
        // GUP checks (follow_huge_pmd); for a PTE, the page's own.
        let (page, leaf_pages, checked) = match self.mm(pid).lookup(vpn) {
            Mapped::None => return Follow::Fault,
            Mapped::Pte(p) => (p, 1, p),
            Mapped::PmdThp(f, i) => {
                let head = self.mem.folio(f).first;
                (head + i, HPAGE_PMD_NR - i, head)
            }
            Mapped::PmdHugeZero(i) => (HUGE_ZERO_FIRST + i, HPAGE_PMD_NR - i, HUGE_ZERO_FIRST),
        };
        if self.can_follow(vma, page, checked, foll, pin) {
            Follow::Page { page, leaf_pages }
        } else if foll.contains(Foll::WRITE) && !vma.kind.is_shared() {
            Follow::Fault
        } else {
            Follow::Unshare
        }
    }

    /// `page`, mapped in `vma` with `checked` the page whose
    /// `PageAnonExclusive()` counts, can be taken as asked without a fault:
    /// false means a write fault for a FOLL_WRITE in a private mapping, an
    /// unshare fault otherwise.
    fn can_follow(&self, vma: &Vma, page: u64, checked: u64, foll: Foll, pin: bool) -> bool {
        let anon = self.mem.folio(self.mem.folio_of(page)).kind == FolioKind::Anon;
        let exclusive = anon && self.mem.page(checked).anon_exclusive;
        // can_follow_write_pte/pmd(): a private mapping's PTE is writable
        // only for an exclusive anon page; writing through anything else
        // (zero page, page cache, a COW-shared page) needs a write fault.
        // In a shared mapping a write fault changes no page, so following
        // or faulting first makes no difference the model can see.
        if foll.contains(Foll::WRITE) && !vma.kind.is_shared() && !exclusive {
            return false;
        }
        !(pin && !foll.contains(Foll::WRITE) && self.must_unshare(vma, anon, exclusive, foll))
    }

    /// Take the pages of `range` (inside `vma`) that present PTEs of its
    /// first page's table map and [`Model::can_follow`] allows, up to the
    /// first that needs more, in one walk over the table; returns that
    /// first page. What `get_user_pages` does page by page, without a
    /// page-table lookup per page.
    fn take_present_ptes(
        &mut self,
        pid: Pid,
        vma: &Vma,
        range: std::ops::Range<Vpn>,
        foll: Foll,
        pin: bool,
        pages: &mut Vec<u64>,
    ) -> Vpn {
        let vpn = range.start;
        let Some(Pmd::Table(table)) = self.mms[pid.0 as usize].pmds.get(&pmd_index(vpn)) else {
            return vpn;
        };
        let first = pte_index(vpn);
        let last = range.end.min((vpn | (HPAGE_PMD_NR - 1)) + 1);
        let mut v = vpn;
        for &p in &table[first..first + (last - vpn) as usize] {
            if p == 0 || !self.can_follow(vma, p, p, foll, pin) {
                break;
            }
            let f = self.mem.folio_of(p);
            if pin {
                self.mem.pin(f, 1, &mut self.vmstat);
            } else {
                self.mem.get(f, 1);
            }
            pages.push(p);
            v += 1;
        }
        v
    }

    /// `PageAnonExclusive()` of the page mapped at `vpn`, as the fault and
    /// GUP paths check it: the head page's bit for a PMD leaf.
    pub(crate) fn gup_exclusive(&self, pid: Pid, vpn: Vpn, page: u64) -> bool {
        match self.mm(pid).lookup(vpn) {
            Mapped::PmdThp(f, _) => self.mem.is_exclusive_anon(self.mem.folio(f).first),
            _ => self.mem.is_exclusive_anon(page),
        }
    }

    /// `mm/internal.h: gup_must_unshare()` for a R/O FOLL_PIN: an anon page
    /// must be exclusive; a non-anon page (zero page, page cache) is unshared
    /// only by a FOLL_LONGTERM pin in a COW mapping (6.2+; profile).
    fn must_unshare(&self, vma: &Vma, anon: bool, exclusive: bool, foll: Foll) -> bool {
        if anon {
            return !exclusive;
        }
        self.profile.unshare_non_anon_longterm && foll.contains(Foll::LONGTERM) && vma.is_cow()
    }

    /// Release a handle: `put_page()` for FOLL_GET, `unpin_user_pages[_dirty_lock]()`
    /// for FOLL_PIN (`mm/gup.c: gup_put_folio`).
    ///
    /// # Errors
    /// `ENOENT` for an unknown or released handle, `EINVAL` if `how` does
    /// not match how the pages were taken (the helper module's checks).
    pub fn release(&mut self, handle: HandleId, how: Release) -> Result<(), Errno> {
        let h = self.handle(handle).ok_or(Errno::ENOENT)?;
        if h.pin != matches!(how, Release::Unpin | Release::UnpinDirty) {
            return Err(Errno::EINVAL);
        }
        let h = self.handles[handle.0 as usize]
            .take()
            .expect("checked above");
        self.pages_held -= h.pages.len() as u64;
        self.live_handle_count -= 1;
        for p in h.pages {
            let f = self.mem.folio_of(p);
            if h.pin {
                self.mem.unpin(f, 1, &mut self.vmstat);
            } else {
                self.mem.put(f, 1);
            }
        }
        Ok(())
    }

    /// The pages a live handle holds.
    pub fn handle_len(&self, handle: HandleId) -> Option<usize> {
        self.handle(handle).map(|h| h.pages.len())
    }

    /// The handle holds FOLL_PIN pins (true) or FOLL_GET references.
    pub fn handle_is_pin(&self, handle: HandleId) -> Option<bool> {
        self.handle(handle).map(|h| h.pin)
    }
}

/// `mm/gup.c: check_vma_flags()` for the VMAs the model knows.
fn check_vma_flags(vma: &Vma, foll: Foll) -> Result<(), Errno> {
    if foll.contains(Foll::WRITE) {
        // writable_file_mapping_allowed(): shmem needs no dirty tracking, so
        // a FOLL_LONGTERM|FOLL_WRITE pin of a shared memfd is allowed.
        if !vma.prot.writable() {
            if !foll.contains(Foll::FORCE) {
                return Err(Errno::EFAULT);
            }
            // FOLL_FORCE writes only through COW mappings.
            if !vma.is_cow() {
                return Err(Errno::EFAULT);
            }
        }
    } else if !vma.prot.readable() && !foll.contains(Foll::FORCE) {
        return Err(Errno::EFAULT);
    }
    Ok(())
}
