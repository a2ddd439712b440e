//! The invariant check after each step, looking only at what the step
//! changed: [`InvariantTracker`].
//!
//! It checks the properties of `invariants.rs` (the refcount identity,
//! `_pincount`, the tracked PMD/PTE mapcounts and PTE-mapped pages, no
//! reference to a freed folio, no PTE outside a VMA, THP leaves inside one
//! VMA, dead processes without mappings, the vmstat pin balance, pinned
//! mapped anon pages exclusive) and, when one fails, reports the violation
//! the exact walk ([`Model::check_invariants_exact`]) names: the same
//! message a full check after that step gives.
//!
//! How it avoids recomputing everything:
//! - It keeps the references the model's structures hold (per folio: PTEs,
//!   PMD leaves, page-cache slots, FOLL_GET and FOLL_PIN handle entries;
//!   per page: PTEs and FOLL_PIN entries), and a mirror of the structures
//!   they were counted from (page tables, VMA bounds, page caches,
//!   handles). Each check diffs the model against the mirror — a page
//!   table compares as one slice comparison, only differing slots are
//!   recounted — so the counts do not rely on the model's code reporting
//!   its page-table, cache or handle changes.
//! - Accounting changes (refcount, mapcounts, pincount, flags, liveness,
//!   any page field) come from `Memory::take_changes`: `Memory`'s fields
//!   are private and every mutation goes through a method that records
//!   the folio.
//! - A folio is checked when its accounting or the references to it
//!   changed; any other folio passed the previous check with the same
//!   inputs. Page-to-folio links change only in a folio split (`Page::folio`
//!   is private to `folio.rs`; a folio's `first` and `order` are set only
//!   by `Memory::alloc` and `Memory::split_to_order0`), after which
//!   everything is recounted, as it is on the first check and after a
//!   check that failed or missed changes. So a folio's pages are exactly
//!   the pages whose folio it is, which per-folio counts and per-page walks
//!   both rely on.
//! - The global properties (dead processes, vmstat) are checked every time;
//!   coverage of PTEs and THP leaves by VMAs is rechecked for the entries
//!   that changed, and for a whole address space when its VMAs changed.

use std::collections::BTreeMap;

use crate::folio::{
    FolioId, FolioKind, GUP_PIN_COUNTING_BIAS, HUGE_ZERO_FIRST, Memory, MemoryChanges,
};
use crate::invariants::InvariantViolation;
use crate::mm::{Mm, Pmd, Pte, zeroed_table};
use crate::model::{Handle, Model, NO_FOLIO};
use crate::types::{HPAGE_PMD_NR, Vpn};

/// Page ids below this are no page (0), the shared zero page and the huge
/// zero folio's pages: PTEs mapping them hold no reference and no mapcount.
const FIRST_COUNTED_PAGE: u64 = HUGE_ZERO_FIRST + HPAGE_PMD_NR;

/// PTE slots compared at once when a page table differs from its mirror.
const PTE_STRETCH: usize = 16;

/// Words of a page table's used-slot bitmap.
const TABLE_WORDS: usize = HPAGE_PMD_NR as usize / 64;

/// Why the incremental check failed (the exact walk then says where).
type Failed = &'static str;

/// The references the model's structures hold on one folio.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Refs {
    ptes: i64,
    pmds: i64,
    cache: i64,
    gets: i64,
    pins: i64,
}

/// A page-table entry as last counted.
#[derive(Clone, Debug)]
enum Entry {
    /// A page table: its PTEs and which slots are not `pte_none()`.
    Table {
        ptes: Box<[Pte; HPAGE_PMD_NR as usize]>,
        used: [u64; TABLE_WORDS],
    },
    /// A PMD leaf mapping an anon THP.
    Thp(FolioId),
    /// A PMD leaf mapping the huge zero folio.
    HugeZero,
}

/// One address space as last counted.
#[derive(Clone, Debug, Default)]
struct MmMirror {
    /// VMA bounds, in order.
    vmas: Vec<(Vpn, Vpn)>,
    /// Page-table entries by PMD index.
    pmds: BTreeMap<u64, Entry>,
}

/// The counts, and the folios whose counts changed since the last check.
#[derive(Debug, Default)]
struct Counts {
    folios: Vec<Refs>,
    page_ptes: Vec<i64>,
    /// FOLL_PIN handle entries per page, whatever its folio.
    page_pins: Vec<i64>,
    /// Pins held: FOLL_PIN entries on anything but the shared zero page.
    pins_held: i64,
    /// Folios to check, each once, and per folio id whether it is listed.
    touched: Vec<FolioId>,
    is_touched: Vec<bool>,
}

impl Counts {
    fn touch(&mut self, f: FolioId) {
        let flag = &mut self.is_touched[f as usize];
        if !*flag {
            *flag = true;
            self.touched.push(f);
        }
    }

    /// Count (`d = 1`) or uncount (`d = -1`) one PTE mapping `p`.
    fn pte(&mut self, mem: &Memory, p: Pte, d: i64) {
        if p < FIRST_COUNTED_PAGE {
            return;
        }
        let f = mem.folio_of(p);
        self.page_ptes[p as usize] += d;
        self.folios[f as usize].ptes += d;
        self.touch(f);
    }

    /// Count or uncount one page-cache slot holding `f`.
    fn cache(&mut self, f: FolioId, d: i64) {
        if f != NO_FOLIO {
            self.folios[f as usize].cache += d;
            self.touch(f);
        }
    }

    /// Count or uncount the entries of one handle.
    fn handle(&mut self, mem: &Memory, h: &Handle, d: i64) {
        for &p in &h.pages {
            let f = mem.folio_of(p);
            self.touch(f);
            if !h.pin {
                self.folios[f as usize].gets += d;
                continue;
            }
            self.page_pins[p as usize] += d;
            // A folio's kind is set when it is allocated and kept by a
            // split, which recounts everything: it cannot change under a
            // counted entry.
            if mem.folio(f).kind != FolioKind::Zero {
                self.folios[f as usize].pins += d;
                self.pins_held += d;
            }
        }
    }
}

/// The state of [`Model::check_invariants_tracked`] between steps: one per
/// model, kept from step to step.
#[derive(Debug, Default)]
pub struct InvariantTracker {
    /// `Memory::last_take()` after this tracker's last take; `None`
    /// before the first check and after a failed one (recount everything).
    synced: Option<u64>,
    counts: Counts,
    mms: Vec<MmMirror>,
    /// Page-cache slots of each shmem file as last counted (empty once the
    /// file is released).
    files: Vec<Vec<FolioId>>,
    handles: Vec<Option<Handle>>,
    changes: MemoryChanges,
}

impl Model {
    /// Check every invariant after a step, looking at what changed since
    /// `tracker`'s previous check of this model (everything, the first
    /// time). Same properties and same reported violation as
    /// [`Model::check_invariants`]; takes `&mut self` to take the record of
    /// accounting changes, which it leaves empty.
    ///
    /// # Errors
    /// The first violated invariant, naming the folio or page and the numbers.
    pub fn check_invariants_tracked(
        &mut self,
        tracker: &mut InvariantTracker,
    ) -> Result<(), InvariantViolation> {
        let missed = tracker.synced != Some(self.mem.last_take());
        self.mem.take_changes(&mut tracker.changes);
        if missed || tracker.changes.split {
            tracker.recount_all(self);
        }
        tracker.synced = Some(self.mem.last_take());
        match tracker.sync_and_check(self) {
            Ok(()) => Ok(()),
            Err(what) => {
                tracker.synced = None;
                match self.check_invariants_exact() {
                    Err(v) => Err(v),
                    Ok(()) => Err(InvariantViolation(format!(
                        "the incremental check found {what} but the full check found nothing (a bug of the check)"
                    ))),
                }
            }
        }
    }
}

impl InvariantTracker {
    /// Forget every count and mirror, and list every folio for checking:
    /// the next sync counts the model from scratch.
    fn recount_all(&mut self, model: &Model) {
        self.clear();
        self.grow(model);
        for f in 0..model.mem.folio_count() as FolioId {
            self.counts.touch(f);
        }
    }

    /// Forget every count and mirror (the next check recounts whatever
    /// model it is given), keeping the buffers of the counts.
    pub fn clear(&mut self) {
        // Every field, so that a new one cannot be forgotten here.
        let InvariantTracker {
            synced,
            counts,
            mms,
            files,
            handles,
            changes,
        } = self;
        *synced = None;
        changes.folios.clear();
        changes.split = false;
        let Counts {
            folios,
            page_ptes,
            page_pins,
            pins_held,
            touched,
            is_touched,
        } = counts;
        folios.clear();
        page_ptes.clear();
        page_pins.clear();
        *pins_held = 0;
        touched.clear();
        is_touched.clear();
        mms.clear();
        files.clear();
        handles.clear();
    }

    /// Size the per-folio and per-page counts to the model's ids.
    fn grow(&mut self, model: &Model) {
        let c = &mut self.counts;
        let nf = model.mem.folio_count();
        if c.folios.len() < nf {
            c.folios.resize(nf, Refs::default());
            c.is_touched.resize(nf, false);
        }
        let np = model.mem.page_count();
        if c.page_ptes.len() < np {
            c.page_ptes.resize(np, 0);
            c.page_pins.resize(np, 0);
        }
    }

    /// Bring the counts up to date with the model, then check the touched
    /// folios and the global properties.
    fn sync_and_check(&mut self, model: &Model) -> Result<(), Failed> {
        self.grow(model);
        for i in 0..self.changes.folios.len() {
            self.counts.touch(self.changes.folios[i]);
        }
        if self.mms.len() < model.mms.len() {
            self.mms.resize_with(model.mms.len(), MmMirror::default);
        }
        for (mm, mirror) in model.mms.iter().zip(&mut self.mms) {
            if !mm.alive && (!mm.pmds.is_empty() || !mm.vmas.is_empty()) {
                return Err("a dead process with mappings");
            }
            sync_mm(mm, mirror, &mut self.counts, &model.mem)?;
        }
        self.sync_files(model);
        self.sync_handles(model);
        let result = self.check_touched(model);
        for &f in &self.counts.touched {
            self.counts.is_touched[f as usize] = false;
        }
        self.counts.touched.clear();
        result?;
        if model.vmstat.outstanding_pins() != self.counts.pins_held {
            return Err("a vmstat pin imbalance");
        }
        Ok(())
    }

    /// Recount the page-cache slots that changed (a released file holds none).
    fn sync_files(&mut self, model: &Model) {
        if self.files.len() < model.files.len() {
            self.files.resize_with(model.files.len(), Vec::new);
        }
        for (file, mirror) in model.files.iter().zip(&mut self.files) {
            let now: &[FolioId] = if file.live { &file.cache } else { &[] };
            if mirror[..] == *now {
                continue;
            }
            if mirror.len() != now.len() {
                // Created or released: recount the whole cache.
                for &f in mirror.iter() {
                    self.counts.cache(f, -1);
                }
                for &f in now {
                    self.counts.cache(f, 1);
                }
                mirror.clear();
                mirror.extend_from_slice(now);
                continue;
            }
            let stretches = mirror.chunks_mut(PTE_STRETCH).zip(now.chunks(PTE_STRETCH));
            for (old, new) in stretches.filter(|(old, new)| old != new) {
                for (o, &n) in old.iter_mut().zip(new).filter(|(o, n)| **o != **n) {
                    self.counts.cache(*o, -1);
                    self.counts.cache(n, 1);
                    *o = n;
                }
            }
        }
    }

    /// Recount the handles that changed (created or released).
    fn sync_handles(&mut self, model: &Model) {
        if self.handles.len() < model.handles.len() {
            self.handles.resize(model.handles.len(), None);
        }
        for (now, mirror) in model.handles.iter().zip(&mut self.handles) {
            let same = match (now, &*mirror) {
                (None, None) => true,
                (Some(a), Some(b)) => a.pin == b.pin && a.pages == b.pages,
                _ => false,
            };
            if same {
                continue;
            }
            if let Some(old) = mirror.take() {
                self.counts.handle(&model.mem, &old, -1);
            }
            if let Some(new) = now {
                self.counts.handle(&model.mem, new, 1);
            }
            mirror.clone_from(now);
        }
    }

    /// The per-folio properties of every touched folio.
    fn check_touched(&self, model: &Model) -> Result<(), Failed> {
        for &f in &self.counts.touched {
            check_folio(model, &self.counts, f)?;
        }
        Ok(())
    }
}

/// The properties of one folio, as `Model::check_invariants_exact` checks
/// them, from the counted references.
fn check_folio(model: &Model, c: &Counts, f: FolioId) -> Result<(), Failed> {
    let mem = &model.mem;
    let folio = mem.folio(f);
    let e = c.folios[f as usize];
    if folio.is_zero() {
        return Ok(());
    }
    if !folio.live && e != Refs::default() {
        return Err("a freed folio referenced");
    }
    if mem.is_listed_live(f) {
        let has_pincount = mem.has_pincount(f);
        let pin_refs = if has_pincount {
            e.pins
        } else {
            e.pins * GUP_PIN_COUNTING_BIAS
        };
        let expected = e.ptes + e.pmds + e.cache + e.gets + pin_refs;
        if folio.refcount != expected || folio.live != (expected > 0) {
            return Err("a refcount mismatch");
        }
        if (has_pincount && folio.pincount != e.pins)
            || folio.entire_maps != e.pmds
            || folio.pte_maps != e.ptes
        {
            return Err("a pincount or mapcount mismatch");
        }
        if (folio.pte_maps | e.ptes | folio.pte_mapped_pages) != 0 {
            check_pages(mem, c, f)?;
        }
    }
    // mm/gup.c: sanity_check_pinned_pages(), for the pinned pages of this
    // folio (an anon folio's pin entries are all counted in `pins`).
    if folio.kind == FolioKind::Anon && folio.mapcount() != 0 && e.pins > 0 {
        let head_exclusive = folio.is_large() && mem.page(folio.first).anon_exclusive;
        let pinned = &c.page_pins[mem.pages_of(f).start as usize..];
        for (page, &pins) in mem.folio_pages(f).iter().zip(pinned) {
            if pins > 0 && !page.anon_exclusive && !head_exclusive {
                return Err("a pinned anon page not exclusive");
            }
        }
    }
    Ok(())
}

/// Per page of a live folio: the tracked PTE mapcount is the counted one,
/// and the folio's PTE-mapped pages are those with a PTE.
fn check_pages(mem: &Memory, c: &Counts, f: FolioId) -> Result<(), Failed> {
    let found = &c.page_ptes[mem.pages_of(f).start as usize..];
    let (mut differ, mut mapped) = (0i64, 0i64);
    for (page, &maps) in mem.folio_pages(f).iter().zip(found) {
        differ |= page.pte_maps ^ maps;
        mapped += i64::from(maps > 0);
    }
    if differ != 0 || mem.folio(f).pte_mapped_pages != mapped {
        return Err("a page mapcount mismatch");
    }
    Ok(())
}

/// Bring one address space's mirror and counts up to date, checking the
/// VMA coverage of what changed (of everything, if its VMAs changed).
fn sync_mm(mm: &Mm, mirror: &mut MmMirror, c: &mut Counts, mem: &Memory) -> Result<(), Failed> {
    let vmas_changed = !mirror
        .vmas
        .iter()
        .copied()
        .eq(mm.vmas.values().map(|v| (v.start, v.end)));
    if vmas_changed {
        mirror.vmas.clear();
        mirror
            .vmas
            .extend(mm.vmas.values().map(|v| (v.start, v.end)));
    }
    for (&pmd, entry) in &mm.pmds {
        match mirror.pmds.get_mut(&pmd) {
            Some(old) => sync_entry(mm, pmd, old, entry, c, mem)?,
            None => {
                let mut new = Entry::HugeZero;
                adopt(mm, pmd, &mut new, entry, c, mem)?;
                mirror.pmds.insert(pmd, new);
            }
        }
    }
    if mirror.pmds.len() != mm.pmds.len() {
        mirror.pmds.retain(|pmd, old| {
            let kept = mm.pmds.contains_key(pmd);
            if !kept {
                retire(old, c, mem);
            }
            kept
        });
    }
    if vmas_changed {
        for (&pmd, entry) in &mirror.pmds {
            entry_covered(mm, pmd, entry)?;
        }
    }
    Ok(())
}

/// Update one mirrored entry to the model's `now`.
fn sync_entry(
    mm: &Mm,
    pmd: u64,
    old: &mut Entry,
    now: &Pmd,
    c: &mut Counts,
    mem: &Memory,
) -> Result<(), Failed> {
    match (&mut *old, now) {
        (Entry::Table { ptes, used }, Pmd::Table(t)) => diff_table(mm, pmd, ptes, used, t, c, mem),
        (Entry::Thp(a), Pmd::Thp(b)) if a == b => Ok(()),
        (Entry::HugeZero, Pmd::HugeZero) => Ok(()),
        _ => {
            retire(old, c, mem);
            adopt(mm, pmd, old, now, c, mem)
        }
    }
}

/// Uncount everything a mirrored entry counted.
fn retire(old: &Entry, c: &mut Counts, mem: &Memory) {
    match old {
        Entry::Table { ptes, .. } => {
            for &p in ptes.iter().filter(|&&p| p != 0) {
                c.pte(mem, p, -1);
            }
        }
        Entry::Thp(f) => {
            c.folios[*f as usize].pmds -= 1;
            c.touch(*f);
        }
        Entry::HugeZero => {}
    }
}

/// Make `slot` mirror the model's `now`, counting it from nothing.
fn adopt(
    mm: &Mm,
    pmd: u64,
    slot: &mut Entry,
    now: &Pmd,
    c: &mut Counts,
    mem: &Memory,
) -> Result<(), Failed> {
    *slot = match now {
        Pmd::Table(t) => {
            let mut ptes = zeroed_table();
            let mut used = [0; TABLE_WORDS];
            diff_table(mm, pmd, &mut ptes, &mut used, t, c, mem)?;
            Entry::Table { ptes, used }
        }
        Pmd::Thp(f) => {
            c.folios[*f as usize].pmds += 1;
            c.touch(*f);
            Entry::Thp(*f)
        }
        Pmd::HugeZero => Entry::HugeZero,
    };
    entry_covered(mm, pmd, slot)
}

/// Update a mirrored page table to the model's, recounting the slots that
/// differ; if a slot became used, every used slot must lie inside a VMA.
fn diff_table(
    mm: &Mm,
    pmd: u64,
    ptes: &mut [Pte; HPAGE_PMD_NR as usize],
    used: &mut [u64; TABLE_WORDS],
    now: &[Pte; HPAGE_PMD_NR as usize],
    c: &mut Counts,
    mem: &Memory,
) -> Result<(), Failed> {
    if ptes[..] == now[..] {
        return Ok(());
    }
    let mut became_used = false;
    let stretches = ptes.chunks_mut(PTE_STRETCH).zip(now.chunks(PTE_STRETCH));
    for (k, (old, new)) in stretches.enumerate() {
        if old == new {
            continue;
        }
        for (j, (o, &n)) in old.iter_mut().zip(new).enumerate() {
            if *o == n {
                continue;
            }
            let i = k * PTE_STRETCH + j;
            if *o != 0 {
                c.pte(mem, *o, -1);
            }
            if n != 0 {
                c.pte(mem, n, 1);
                used[i / 64] |= 1 << (i % 64);
                became_used = true;
            } else {
                used[i / 64] &= !(1 << (i % 64));
            }
            *o = n;
        }
    }
    if became_used {
        table_covered(mm, pmd, used)?;
    }
    Ok(())
}

/// A mirrored entry lies where the exact check wants it: a THP leaf inside
/// one VMA, every used PTE slot inside some VMA (the huge zero leaf is not
/// checked, as there).
fn entry_covered(mm: &Mm, pmd: u64, entry: &Entry) -> Result<(), Failed> {
    let start = pmd * HPAGE_PMD_NR;
    match entry {
        Entry::Thp(_) => {
            if mm.vma(start).is_none_or(|v| v.end < start + HPAGE_PMD_NR) {
                return Err("a THP leaf not inside one VMA");
            }
        }
        Entry::Table { used, .. } => table_covered(mm, pmd, used)?,
        Entry::HugeZero => {}
    }
    Ok(())
}

/// Every used slot of the page table of PMD range `pmd` lies inside a VMA.
fn table_covered(mm: &Mm, pmd: u64, used: &[u64; TABLE_WORDS]) -> Result<(), Failed> {
    let covered = covered_slots(mm, pmd * HPAGE_PMD_NR);
    if used.iter().zip(&covered).any(|(u, c)| u & !c != 0) {
        return Err("a PTE outside any VMA");
    }
    Ok(())
}

/// The slots of the page table at `start` that some VMA covers, as a bitmap.
fn covered_slots(mm: &Mm, start: Vpn) -> [u64; TABLE_WORDS] {
    let mut bits = [0u64; TABLE_WORDS];
    for (lo, hi) in mm.vma_slots(start) {
        for (w, word) in bits.iter_mut().enumerate() {
            // The part of [lo, hi) in bits [64w, 64w + 64) of the table.
            let (a, b) = (lo.clamp(64 * w, 64 * w + 64), hi.clamp(64 * w, 64 * w + 64));
            if a < b {
                *word |= (u64::MAX >> (64 - (b - a))) << (a - 64 * w);
            }
        }
    }
    bits
}
