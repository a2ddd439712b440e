//! `check_invariants()`: recompute every counter from the model's structure
//! and compare with the tracked value.
//!
//! The identity checked is `kernel-semantics.md` §1.7: a folio's refcount
//! is the sum of its page-table mappings (one per PTE, one per PMD), its
//! page-cache reference, its FOLL_GET references, and its pins (×
//! GUP_PIN_COUNTING_BIAS without an exact `_pincount`); `_pincount` equals
//! the pinned pages; `nr_foll_pin_acquired - nr_foll_pin_released` equals
//! the pins held. A violation is a bug in the model, reported with the page
//! and the numbers.
//!
//! The fuzz targets check after every step, so the check runs in two
//! passes: a fast one over reusable buffers ([`InvariantScratch`]) that
//! only says whether everything holds, and, when it does not, the exact
//! walk that finds and names the first violation. Both check the same
//! identities; a unit test (`tests.rs`) corrupts models and compares them.

use std::fmt;

use crate::folio::{FolioKind, GUP_PIN_COUNTING_BIAS, HUGE_ZERO_FIRST, ZERO_PAGE};
use crate::mm::Mm;
use crate::mm::{Pmd, pmd_index};
use crate::model::Model;
use crate::types::HPAGE_PMD_NR;

/// A broken invariant: what, where, and the numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvariantViolation(pub String);

impl fmt::Display for InvariantViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "model invariant violated: {}", self.0)
    }
}

impl std::error::Error for InvariantViolation {}

#[derive(Clone, Debug, Default)]
struct Expected {
    pte_maps: i64,
    entire_maps: i64,
    cache: i64,
    gets: i64,
    pins: i64,
}

impl Expected {
    fn total(&self) -> i64 {
        self.pte_maps + self.entire_maps + self.cache + self.gets + self.pins
    }

    fn is_empty(&self) -> bool {
        self.pte_maps == 0
            && self.entire_maps == 0
            && self.cache == 0
            && self.gets == 0
            && self.pins == 0
    }
}

impl Model {
    /// Check every invariant.
    ///
    /// # Errors
    /// The first violated invariant, naming the folio or page and the numbers.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        self.check_invariants_with(&mut InvariantScratch::default())
    }

    /// [`Model::check_invariants`], reusing `scratch`'s buffers: a caller
    /// that checks after every step (the fuzz targets) keeps one scratch
    /// per model. Same checks, same result, same first violation.
    ///
    /// # Errors
    /// The first violated invariant, naming the folio or page and the numbers.
    pub fn check_invariants_with(
        &self,
        scratch: &mut InvariantScratch,
    ) -> Result<(), InvariantViolation> {
        if self.invariants_hold(scratch) {
            return Ok(());
        }
        // Something is off (or the fast pass could not tell): the buffers
        // may be dirty, and the exact walk names the first violation.
        scratch.clear();
        self.check_invariants_exact()
    }

    /// The first page a FOLL_PIN handle holds that is a mapped anon page
    /// but neither PageAnonExclusive itself nor the head of an exclusive
    /// large folio (`mm/gup.c: sanity_check_pinned_pages`, DEBUG_VM only in
    /// the kernel). Both passes ask this.
    fn pinned_anon_not_exclusive(&self) -> Option<u64> {
        self.handles
            .iter()
            .flatten()
            .filter(|h| h.pin)
            .flat_map(|h| h.pages.iter().copied())
            .find(|&p| {
                let folio = self.mem.folio(self.mem.folio_of(p));
                folio.kind == FolioKind::Anon
                    && folio.mapcount() != 0
                    && !self.mem.page(p).anon_exclusive
                    && !(folio.is_large() && self.mem.page(folio.first).anon_exclusive)
            })
    }

    /// The invariants checked the straightforward way, in a fixed order,
    /// so that the first violation found is the one reported. The fast
    /// pass ([`Model::invariants_hold`]) says only whether all hold.
    pub(crate) fn check_invariants_exact(&self) -> Result<(), InvariantViolation> {
        let fail = |s: String| Err(InvariantViolation(s));
        let mut folios: Vec<Expected> = Vec::new();
        folios.resize_with(self.mem.folio_count(), Expected::default);
        let mut page_maps: Vec<i64> = vec![0; self.mem.page_count()];
        for (pid, mm) in self.mms.iter().enumerate() {
            if !mm.alive {
                if !mm.pmds.is_empty() || !mm.vmas.is_empty() {
                    return fail(format!("dead process {pid} still has mappings"));
                }
                continue;
            }
            for (&pmd, entry) in &mm.pmds {
                let start = pmd * HPAGE_PMD_NR;
                match entry {
                    Pmd::Thp(f) => {
                        let inside = mm.vma(start).is_some_and(|v| v.end >= start + HPAGE_PMD_NR);
                        if !inside {
                            return fail(format!(
                                "process {pid}: THP leaf at page {start:#x} is not inside one VMA"
                            ));
                        }
                        folios[*f as usize].entire_maps += 1;
                    }
                    Pmd::HugeZero => {}
                    Pmd::Table(t) => {
                        // The VMA parts of this PMD range, as PTE indices.
                        let covered: Vec<(u64, u64)> = mm
                            .vmas_in(start, start + HPAGE_PMD_NR)
                            .iter()
                            .map(|v| {
                                (
                                    v.start.max(start) - start,
                                    v.end.min(start + HPAGE_PMD_NR) - start,
                                )
                            })
                            .collect();
                        let mapped = t
                            .chunks(16)
                            .enumerate()
                            // Skip empty stretches 16 entries at a time.
                            .filter(|(_, c)| c.iter().fold(0, |a, &b| a | b) != 0)
                            .flat_map(|(k, c)| {
                                c.iter().enumerate().map(move |(j, &p)| (k * 16 + j, p))
                            });
                        for (i, p) in mapped {
                            if p == 0 {
                                continue;
                            }
                            let vpn = start + i as u64;
                            let i = i as u64;
                            if !covered.iter().any(|&(lo, hi)| lo <= i && i < hi) {
                                return fail(format!(
                                    "process {pid}: PTE at page {vpn:#x} outside any VMA"
                                ));
                            }
                            if p == ZERO_PAGE
                                || (HUGE_ZERO_FIRST..HUGE_ZERO_FIRST + HPAGE_PMD_NR).contains(&p)
                            {
                                continue;
                            }
                            page_maps[p as usize] += 1;
                            folios[self.mem.folio_of(p) as usize].pte_maps += 1;
                        }
                    }
                }
                debug_assert_eq!(pmd_index(start), pmd);
            }
        }
        for file in self.files.iter().filter(|f| f.live) {
            for &f in file.cache.iter().filter(|&&f| f != crate::model::NO_FOLIO) {
                folios[f as usize].cache += 1;
            }
        }
        let mut pins_held = 0i64;
        for h in self.handles.iter().flatten() {
            for &p in &h.pages {
                let f = self.mem.folio_of(p);
                let kind = self.mem.folio(f).kind;
                if h.pin {
                    if kind != FolioKind::Zero {
                        pins_held += 1;
                        folios[f as usize].pins += 1;
                    }
                } else {
                    folios[f as usize].gets += 1;
                }
            }
        }
        // Anything found referencing a folio that is not live is a bug.
        for (f, e) in folios.iter().enumerate() {
            let folio = self.mem.folio(f as u32);
            if !e.is_empty() && !folio.live && !folio.is_zero() {
                return fail(format!(
                    "folio {f} (page {:#x}) is freed but referenced: {} PTE, {} PMD, {} cache, {} FOLL_GET, {} pins",
                    folio.first, e.pte_maps, e.entire_maps, e.cache, e.gets, e.pins
                ));
            }
        }
        for &f in self.mem.live_folios() {
            let folio = self.mem.folio(f);
            let e = std::mem::take(&mut folios[f as usize]);
            if folio.is_zero() {
                continue;
            }
            let pin_refs = if self.mem.has_pincount(f) {
                e.pins
            } else {
                e.pins * GUP_PIN_COUNTING_BIAS
            };
            let expected = e.pte_maps + e.entire_maps + e.cache + e.gets + pin_refs;
            if folio.refcount != expected {
                return fail(format!(
                    "folio {f} (page {:#x}, order {}): refcount {} but mappings {} + PMD maps {} + page cache {} + FOLL_GET {} + pin refs {} = {expected}",
                    folio.first,
                    folio.order,
                    folio.refcount,
                    e.pte_maps,
                    e.entire_maps,
                    e.cache,
                    e.gets,
                    pin_refs
                ));
            }
            if folio.live != (expected > 0) {
                return fail(format!(
                    "folio {f}: live={} with refcount {expected}",
                    folio.live
                ));
            }
            if self.mem.has_pincount(f) && folio.pincount != e.pins {
                return fail(format!(
                    "folio {f}: _pincount {} but {} pinned pages held",
                    folio.pincount, e.pins
                ));
            }
            if folio.entire_maps != e.entire_maps || folio.pte_maps != e.pte_maps {
                return fail(format!(
                    "folio {f}: tracked PMD/PTE maps {}/{} but page tables hold {}/{}",
                    folio.entire_maps, folio.pte_maps, e.entire_maps, e.pte_maps
                ));
            }
            // With no PTE mapping tracked nor found, every page's tracked
            // count is 0 (they are non-negative and sum to the folio's).
            if folio.pte_maps == 0 && e.pte_maps == 0 && folio.pte_mapped_pages == 0 {
                continue;
            }
            let mut mapped_pages = 0;
            for p in self.mem.pages_of(f) {
                let maps = page_maps[p as usize];
                if self.mem.page(p).pte_maps != maps {
                    return fail(format!(
                        "page {p:#x}: tracked {} PTE mappings, page tables hold {maps}",
                        self.mem.page(p).pte_maps
                    ));
                }
                mapped_pages += i64::from(maps > 0);
            }
            if folio.pte_mapped_pages != mapped_pages {
                return fail(format!(
                    "folio {f}: {} pages PTE-mapped tracked, {mapped_pages} found",
                    folio.pte_mapped_pages
                ));
            }
        }
        if self.vmstat.outstanding_pins() != pins_held {
            return fail(format!(
                "nr_foll_pin_acquired {} - nr_foll_pin_released {} != {pins_held} pins held",
                self.vmstat.nr_foll_pin_acquired, self.vmstat.nr_foll_pin_released
            ));
        }
        // Every pinned anon page that is still mapped is exclusive
        // (mm/gup.c: sanity_check_pinned_pages, DEBUG_VM only in the kernel):
        // the page itself, or the head of a PMD-mapped THP.
        if let Some(p) = self.pinned_anon_not_exclusive() {
            return fail(format!(
                "pinned anon page {p:#x} is mapped but not PageAnonExclusive"
            ));
        }
        Ok(())
    }
}

/// Reusable buffers of [`Model::check_invariants_with`]. They are all zero
/// between calls, so a check costs in proportion to what the model holds
/// now (page tables, live folios, handles), not to every folio and page it
/// ever allocated, and allocates nothing once they have grown.
#[derive(Debug, Default)]
pub struct InvariantScratch {
    /// Per folio id, the references found.
    folios: Vec<Expected>,
    /// Per page id, the PTEs found mapping the page.
    page_maps: Vec<i64>,
}

impl InvariantScratch {
    /// Zero every entry (after a check that stopped half-way).
    fn clear(&mut self) {
        self.folios.fill_with(Expected::default);
        self.page_maps.fill(0);
    }
}

/// Page ids below this are no page (0), the shared zero page and the huge
/// zero folio's pages: PTEs mapping them hold no reference and no mapcount.
const FIRST_COUNTED_PAGE: u64 = HUGE_ZERO_FIRST + HPAGE_PMD_NR;
const _: () = assert!(
    ZERO_PAGE + 1 == HUGE_ZERO_FIRST,
    "page ids 1.. are the zero pages"
);

/// PTE slots scanned at once: a stretch of empty slots is skipped with one
/// comparison (an OR over the stretch, which the compiler vectorizes).
const PTE_STRETCH: usize = 16;

/// Every entry of `ptes` is `pte_none()`.
fn all_none(ptes: &[u64]) -> bool {
    ptes.iter().fold(0, |a, &p| a | p) == 0
}

impl Model {
    /// True when every invariant [`Model::check_invariants_exact`] checks
    /// holds; false when one does not, or when the buffers of `s` turn out
    /// inconsistent with the model (the exact check then decides).
    ///
    /// It checks the same identities with far fewer comparisons, which
    /// matters because under the fuzzers' compare tracing each comparison
    /// is a call: page tables are read a stretch at a time, PTEs outside
    /// every VMA are found by OR-ing the uncovered stretches, and "a freed
    /// folio is referenced" is found by comparing the references recorded
    /// in total with those recorded on live folios (counts are never
    /// negative), instead of visiting every folio ever allocated. The
    /// entries it fills are zeroed again as the live folios are checked.
    fn invariants_hold(&self, s: &mut InvariantScratch) -> bool {
        let nf = self.mem.folio_count();
        if s.folios.len() < nf {
            s.folios.resize_with(nf, Expected::default);
        }
        let np = self.mem.page_count();
        if s.page_maps.len() < np {
            s.page_maps.resize(np, 0);
        }
        let (folios, page_maps) = (&mut s.folios[..], &mut s.page_maps[..]);
        // Everything recorded in `folios`, and the PTEs recorded in `page_maps`.
        let mut refs = 0i64;
        let mut ptes = 0i64;
        for mm in &self.mms {
            if !mm.alive {
                if !mm.pmds.is_empty() || !mm.vmas.is_empty() {
                    return false;
                }
                continue;
            }
            for (&pmd, entry) in &mm.pmds {
                let start = pmd * HPAGE_PMD_NR;
                match entry {
                    Pmd::Thp(f) => {
                        if mm.vma(start).is_none_or(|v| v.end < start + HPAGE_PMD_NR) {
                            return false;
                        }
                        folios[*f as usize].entire_maps += 1;
                        refs += 1;
                    }
                    Pmd::HugeZero => {}
                    Pmd::Table(t) => {
                        let Some(n) = self.count_table(mm, start, &t[..], folios, page_maps) else {
                            return false;
                        };
                        refs += n;
                        ptes += n;
                    }
                }
            }
        }
        for file in self.files.iter().filter(|f| f.live) {
            for &f in file.cache.iter().filter(|&&f| f != crate::model::NO_FOLIO) {
                folios[f as usize].cache += 1;
                refs += 1;
            }
        }
        let mut pins_held = 0i64;
        for h in self.handles.iter().flatten() {
            if h.pin {
                for &p in &h.pages {
                    let f = self.mem.folio_of(p);
                    if self.mem.folio(f).kind != FolioKind::Zero {
                        pins_held += 1;
                        folios[f as usize].pins += 1;
                    }
                }
            } else {
                for &p in &h.pages {
                    folios[self.mem.folio_of(p) as usize].gets += 1;
                }
                refs += h.pages.len() as i64;
            }
        }
        refs += pins_held;
        // Per live folio, the same identities as the exact check.
        let mut live_refs = 0i64;
        let mut ptes_reset = 0i64;
        for &f in self.mem.live_folios() {
            let folio = self.mem.folio(f);
            let e = std::mem::take(&mut folios[f as usize]);
            live_refs += e.total();
            if folio.is_zero() {
                continue;
            }
            let has_pincount = self.mem.has_pincount(f);
            let (pin_refs, pincount_differs) = if has_pincount {
                (e.pins, folio.pincount ^ e.pins)
            } else {
                (e.pins * GUP_PIN_COUNTING_BIAS, 0)
            };
            let expected = e.pte_maps + e.entire_maps + e.cache + e.gets + pin_refs;
            // Several equalities at once: x ^ y is zero exactly when x == y.
            let differ = (folio.refcount ^ expected)
                | pincount_differs
                | (folio.entire_maps ^ e.entire_maps)
                | (folio.pte_maps ^ e.pte_maps);
            if differ != 0 || folio.live != (expected > 0) {
                return false;
            }
            if (folio.pte_maps | e.pte_maps | folio.pte_mapped_pages) == 0 {
                continue;
            }
            let pages = self.mem.pages_of(f);
            let found = &mut page_maps[pages.start as usize..pages.end as usize];
            let (mut differ, mut mapped_pages) = (0i64, 0i64);
            for (page, maps) in self.mem.folio_pages(f).iter().zip(found) {
                differ |= page.pte_maps ^ *maps;
                mapped_pages += i64::from(*maps > 0);
                ptes_reset += *maps;
                *maps = 0;
            }
            if differ != 0 || folio.pte_mapped_pages != mapped_pages {
                return false;
            }
        }
        // Counts are never negative: equal totals mean that no folio off
        // the live list (a freed one) was found referenced, and that every
        // entry filled above was zeroed again.
        if live_refs != refs || ptes_reset != ptes {
            return false;
        }
        if self.vmstat.outstanding_pins() != pins_held {
            return false;
        }
        self.pinned_anon_not_exclusive().is_none()
    }

    /// Record the PTEs of the page table of the PMD range at `start` in
    /// `folios` and `page_maps`; their number, or `None` if a PTE lies
    /// outside every VMA.
    fn count_table(
        &self,
        mm: &Mm,
        start: u64,
        table: &[u64],
        folios: &mut [Expected],
        page_maps: &mut [i64],
    ) -> Option<i64> {
        let mut counted = 0i64;
        // The VMA parts of this range come in start order; `done` is the
        // table index up to which slots are checked or counted.
        let mut done = 0usize;
        for (lo, hi) in mm.vma_slots(start) {
            if lo > done {
                if !all_none(&table[done..lo]) {
                    return None;
                }
                done = lo;
            }
            if hi <= done {
                continue;
            }
            for stretch in table[done..hi].chunks(PTE_STRETCH) {
                if all_none(stretch) {
                    continue;
                }
                for &p in stretch {
                    if p < FIRST_COUNTED_PAGE {
                        continue;
                    }
                    page_maps[p as usize] += 1;
                    folios[self.mem.folio_of(p) as usize].pte_maps += 1;
                    counted += 1;
                }
            }
            done = hi;
        }
        all_none(&table[done..]).then_some(counted)
    }
}
