//! Folios and pages: reference counts, mapcounts, pincounts, and the
//! per-page `PageAnonExclusive` bit.
//!
//! [`Memory`] owns every folio and page the model ever allocated. Page ids
//! are never reused, so a page keeps its identity across a folio split
//! exactly as a pfn does. Every counter change mirrors a kernel helper, named
//! in the comment on the method. Nothing here knows about page tables or
//! processes: callers (fault, zap, fork, GUP) decide *what* happens, this
//! module applies the accounting.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::types::HPAGE_PMD_ORDER;
use crate::vmstat::VmStat;

/// `GUP_PIN_COUNTING_BIAS` (`include/linux/mm.h`): what one FOLL_PIN adds to
/// the refcount of a folio without an exact `_pincount`.
pub const GUP_PIN_COUNTING_BIAS: i64 = 1024;

/// Index of a folio in [`Memory`].
pub(crate) type FolioId = u32;

/// Index of a shmem file (memfd or shared anonymous mapping).
pub(crate) type FileId = u32;

/// The page id of the shared zero page.
pub(crate) const ZERO_PAGE: u64 = 1;
/// The page id of the first page of the huge zero folio.
pub(crate) const HUGE_ZERO_FIRST: u64 = 2;
/// The folio of the shared zero page.
pub(crate) const ZERO_FOLIO: FolioId = 0;
/// The huge zero folio.
pub(crate) const HUGE_ZERO_FOLIO: FolioId = 1;

/// The next [`Memory::take_changes`] token.
static TAKE_TOKENS: AtomicU64 = AtomicU64::new(1);

/// What a folio holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FolioKind {
    /// Anonymous memory (`folio_test_anon`).
    Anon,
    /// A page-cache folio of a shmem file, at `index`.
    Shmem { file: FileId, index: u64 },
    /// The shared zero page (`is_zero_folio`).
    Zero,
    /// The huge zero folio (`is_huge_zero_folio`).
    HugeZero,
}

/// One folio.
#[derive(Clone, Debug)]
pub(crate) struct Folio {
    /// Page id of page 0 of the folio.
    pub first: u64,
    /// `folio_order()`.
    pub order: u8,
    /// `folio_ref_count()`.
    pub refcount: i64,
    /// `folio->_pincount` (only meaningful when the folio has one).
    pub pincount: i64,
    /// PMD mappings of the whole folio (`_entire_mapcount + 1`).
    pub entire_maps: i64,
    /// Pages with at least one PTE mapping (`_nr_pages_mapped` without ENTIRELY_MAPPED).
    pub pte_mapped_pages: i64,
    /// Sum of the PTE mappings of all pages (with `entire_maps`: `folio_mapcount()`).
    pub pte_maps: i64,
    /// What it holds.
    pub kind: FolioKind,
    /// `folio_test_partially_mapped()`: queued for deferred split because partially unmapped.
    pub partially_mapped: bool,
    /// Not yet freed.
    pub live: bool,
}

impl Folio {
    /// `folio_nr_pages()`.
    pub fn nr_pages(&self) -> u64 {
        1 << self.order
    }
    /// `folio_test_large()`.
    pub fn is_large(&self) -> bool {
        self.order > 0
    }
    /// `folio_test_anon()`.
    pub fn is_anon(&self) -> bool {
        matches!(self.kind, FolioKind::Anon)
    }
    /// The shared zero page or the huge zero folio.
    pub fn is_zero(&self) -> bool {
        matches!(self.kind, FolioKind::Zero | FolioKind::HugeZero)
    }
    /// `folio_mapcount()`: every PTE and PMD mapping any page of it.
    pub fn mapcount(&self) -> i64 {
        self.pte_maps + self.entire_maps
    }
}

/// One page.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Page {
    /// The folio the page belongs to now. Private to this module: only
    /// [`Memory::alloc`] and [`Memory::split_to_order0`] set it, which the
    /// incremental invariant check relies on (`crate::tracker`).
    folio: FolioId,
    /// PTE mappings of this page (`page->_mapcount + 1` for a page of a large folio).
    pub pte_maps: i64,
    /// `PageAnonExclusive(page)`.
    pub anon_exclusive: bool,
    /// The page holds non-zero bytes (a user store wrote to it, or it was
    /// copied from such a page). Kernels since 6.12 map never-written
    /// subpages of a split anon THP to the shared zero page.
    pub written: bool,
}

/// Every folio and page.
#[derive(Clone, Debug)]
pub(crate) struct Memory {
    folios: Vec<Folio>,
    /// Indexed by page id; entry 0 is unused.
    pages: Vec<Page>,
    /// Folios of this order and larger have an exact `_pincount`.
    pincount_min_order: u8,
    /// 6.1's deferred-split rule (see [`Memory::remove_pte_run`]).
    deferred_split_on_any_unmap: bool,
    /// Pages freed since the last [`Memory::take_freed`].
    freed: Vec<u64>,
    /// The live folios (unordered), and each folio's index in it
    /// (`u32::MAX` when not live): the invariant check walks only these.
    live_list: Vec<FolioId>,
    live_pos: Vec<u32>,
    /// Folios changed since the last [`Memory::take_changes`] (each once),
    /// and per folio id whether it is in that list: every mutation of a
    /// folio or of one of its pages goes through a method here that
    /// records it, so the incremental invariant check looks at these alone.
    changed: Vec<FolioId>,
    is_changed: Vec<bool>,
    /// A folio was split since the last [`Memory::take_changes`]: pages
    /// changed folio, and counts kept per folio id are stale.
    split_since_taken: bool,
    /// Set by each [`Memory::take_changes`] to a value unique in the
    /// process: a taker that remembers it knows whether it took the last
    /// changes of this memory (or of the one it was cloned from), or
    /// whether another took some in between.
    take_token: u64,
}

/// What changed in [`Memory`] between two [`Memory::take_changes`] calls.
#[derive(Debug, Default)]
pub(crate) struct MemoryChanges {
    /// The folios changed (refcount, mapcounts, pincount, flags, liveness,
    /// or any field of one of their pages), each once.
    pub folios: Vec<FolioId>,
    /// A folio was split: page-to-folio associations changed.
    pub split: bool,
}

impl Memory {
    /// Memory holding only the zero page and the huge zero folio.
    pub fn new(pincount_min_order: u8, deferred_split_on_any_unmap: bool) -> Memory {
        let mut mem = Memory {
            folios: Vec::new(),
            pages: Vec::new(),
            pincount_min_order,
            deferred_split_on_any_unmap,
            freed: Vec::new(),
            live_list: Vec::new(),
            live_pos: Vec::new(),
            changed: Vec::new(),
            is_changed: Vec::new(),
            split_since_taken: false,
            take_token: 0,
        };
        mem.reset(pincount_min_order, deferred_split_on_any_unmap);
        mem
    }

    /// Back to what [`Memory::new`] returns, keeping the buffers (a fuzzer
    /// runs one model per input: reusing them spares the allocator).
    pub fn reset(&mut self, pincount_min_order: u8, deferred_split_on_any_unmap: bool) {
        // Every field, so that a new one cannot be forgotten here.
        let Memory {
            folios,
            pages,
            pincount_min_order: min_order,
            deferred_split_on_any_unmap: any_unmap,
            freed,
            live_list,
            live_pos,
            changed,
            is_changed,
            split_since_taken,
            take_token,
        } = self;
        folios.clear();
        pages.clear();
        *min_order = pincount_min_order;
        *any_unmap = deferred_split_on_any_unmap;
        freed.clear();
        live_list.clear();
        live_pos.clear();
        changed.clear();
        is_changed.clear();
        *split_since_taken = false;
        *take_token = 0;
        pages.push(Page {
            folio: u32::MAX,
            pte_maps: 0,
            anon_exclusive: false,
            written: false,
        });
        let zero = self.alloc(0, FolioKind::Zero);
        let huge_zero = self.alloc(HPAGE_PMD_ORDER, FolioKind::HugeZero);
        debug_assert_eq!((zero, huge_zero), (ZERO_FOLIO, HUGE_ZERO_FOLIO));
        debug_assert_eq!(self.folios[HUGE_ZERO_FOLIO as usize].first, HUGE_ZERO_FIRST);
    }

    /// A new folio of `order` with refcount 1 (the allocation's reference,
    /// which the caller hands to a mapping or to the page cache).
    pub fn alloc(&mut self, order: u8, kind: FolioKind) -> FolioId {
        let id = u32::try_from(self.folios.len()).expect("fewer than 2^32 folios per program");
        let first = self.pages.len() as u64;
        self.pages.extend((0..1u64 << order).map(|_| Page {
            folio: id,
            pte_maps: 0,
            anon_exclusive: false,
            written: false,
        }));
        self.folios.push(Folio {
            first,
            order,
            refcount: 1,
            pincount: 0,
            entire_maps: 0,
            pte_mapped_pages: 0,
            pte_maps: 0,
            kind,
            partially_mapped: false,
            live: true,
        });
        self.live_pos.push(u32::MAX);
        self.is_changed.push(false);
        // Also records the change.
        self.mark_live(id);
        id
    }

    /// Record that folio `f` (or one of its pages) changed.
    fn mark_changed(&mut self, f: FolioId) {
        let flag = &mut self.is_changed[f as usize];
        if !*flag {
            *flag = true;
            self.changed.push(f);
        }
    }

    /// The changes since the last call, into `out` (whose previous
    /// contents are dropped; its buffer is reused).
    pub fn take_changes(&mut self, out: &mut MemoryChanges) {
        out.folios.clear();
        std::mem::swap(&mut out.folios, &mut self.changed);
        for &f in &out.folios {
            self.is_changed[f as usize] = false;
        }
        out.split = std::mem::take(&mut self.split_since_taken);
        self.take_token = TAKE_TOKENS.fetch_add(1, Ordering::Relaxed);
    }

    /// The token of the last [`Memory::take_changes`] (0: none yet).
    pub fn last_take(&self) -> u64 {
        self.take_token
    }

    /// The pages freed since the last call, in the order they were freed.
    pub fn take_freed(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.freed)
    }

    /// Number of folios ever allocated (folio ids are below it).
    pub fn folio_count(&self) -> usize {
        self.folios.len()
    }

    /// Number of page ids ever handed out, plus one (page ids are below it).
    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    /// The folio.
    pub fn folio(&self, f: FolioId) -> &Folio {
        &self.folios[f as usize]
    }
    /// The folio, mutably (recorded as changed).
    pub fn folio_mut(&mut self, f: FolioId) -> &mut Folio {
        self.mark_changed(f);
        &mut self.folios[f as usize]
    }
    /// The page.
    pub fn page(&self, p: u64) -> &Page {
        &self.pages[p as usize]
    }
    /// The page, mutably (its folio recorded as changed).
    pub fn page_mut(&mut self, p: u64) -> &mut Page {
        self.mark_changed(self.pages[p as usize].folio);
        &mut self.pages[p as usize]
    }
    /// A user store reached page `p` ([`Page::written`]). Not recorded as
    /// a change: no invariant reads the bit, and a store to every page of a
    /// THP would otherwise make the next check walk all 512.
    pub fn set_written(&mut self, p: u64) {
        self.pages[p as usize].written = true;
    }

    /// `PageAnonExclusive(page)` of a page of an anon folio (false for
    /// any other page: the bit means nothing there).
    pub fn is_exclusive_anon(&self, p: u64) -> bool {
        self.folio(self.folio_of(p)).is_anon() && self.page(p).anon_exclusive
    }

    /// `page_folio()`.
    pub fn folio_of(&self, p: u64) -> FolioId {
        self.pages[p as usize].folio
    }
    /// The page ids of a folio.
    pub fn pages_of(&self, f: FolioId) -> std::ops::Range<u64> {
        let folio = self.folio(f);
        folio.first..folio.first + folio.nr_pages()
    }

    /// The pages of a folio, in page-id order (see [`Memory::pages_of`]).
    pub fn folio_pages(&self, f: FolioId) -> &[Page] {
        let pages = self.pages_of(f);
        &self.pages[pages.start as usize..pages.end as usize]
    }

    /// The folio has an exact `_pincount` (`folio_has_pincount()`).
    pub fn has_pincount(&self, f: FolioId) -> bool {
        let folio = self.folio(f);
        folio.order >= self.pincount_min_order && folio.order > 0
    }

    /// `folio_maybe_dma_pinned()` (`include/linux/mm.h`): exact for folios
    /// with a `_pincount`, refcount >= GUP_PIN_COUNTING_BIAS otherwise.
    pub fn maybe_dma_pinned(&self, f: FolioId) -> bool {
        let folio = self.folio(f);
        if self.has_pincount(f) {
            folio.pincount > 0
        } else {
            folio.refcount >= GUP_PIN_COUNTING_BIAS
        }
    }

    /// `folio_ref_add()`.
    pub fn get(&mut self, f: FolioId, refs: i64) {
        self.folio_mut(f).refcount += refs;
    }

    /// `folio_put_refs()`: drop references, freeing the folio at zero.
    pub fn put(&mut self, f: FolioId, refs: i64) {
        let folio = self.folio_mut(f);
        folio.refcount -= refs;
        debug_assert!(folio.refcount >= 0, "refcount underflow on folio {f}");
        if folio.refcount == 0 && !folio.is_zero() {
            folio.live = false;
            folio.partially_mapped = false;
            let pages = self.pages_of(f);
            self.freed.extend(pages);
            self.mark_dead(f);
        }
    }

    /// Add a folio to the live list.
    fn mark_live(&mut self, f: FolioId) {
        self.mark_changed(f);
        if self.live_pos[f as usize] == u32::MAX {
            self.live_pos[f as usize] = self.live_list.len() as u32;
            self.live_list.push(f);
        }
    }

    /// Remove a folio from the live list.
    fn mark_dead(&mut self, f: FolioId) {
        self.mark_changed(f);
        let pos = self.live_pos[f as usize];
        if pos == u32::MAX {
            return;
        }
        self.live_list.swap_remove(pos as usize);
        if let Some(&moved) = self.live_list.get(pos as usize) {
            self.live_pos[moved as usize] = pos;
        }
        self.live_pos[f as usize] = u32::MAX;
    }

    /// The folio is on the live list ([`Memory::live_folios`]).
    pub fn is_listed_live(&self, f: FolioId) -> bool {
        self.live_pos[f as usize] != u32::MAX
    }

    /// The live folios, in no particular order.
    pub fn live_folios(&self) -> &[FolioId] {
        &self.live_list
    }

    /// `mm/gup.c: try_grab_folio(folio, refs, FOLL_PIN)`: pin `refs` pages of
    /// a folio. The shared zero page is never pinned (no reference, no vmstat);
    /// a folio with a `_pincount` gets `refs` references and `refs` pins, any
    /// other folio `refs * GUP_PIN_COUNTING_BIAS` references.
    pub fn pin(&mut self, f: FolioId, refs: i64, vmstat: &mut VmStat) {
        if self.folio(f).kind == FolioKind::Zero {
            return;
        }
        if self.has_pincount(f) {
            let folio = self.folio_mut(f);
            folio.refcount += refs;
            folio.pincount += refs;
        } else {
            self.folio_mut(f).refcount += refs * GUP_PIN_COUNTING_BIAS;
        }
        vmstat.nr_foll_pin_acquired += refs as u64;
    }

    /// `mm/gup.c: gup_put_folio(folio, refs, FOLL_PIN)`: the inverse of [`Memory::pin`].
    pub fn unpin(&mut self, f: FolioId, refs: i64, vmstat: &mut VmStat) {
        if self.folio(f).kind == FolioKind::Zero {
            return;
        }
        vmstat.nr_foll_pin_released += refs as u64;
        if self.has_pincount(f) {
            self.folio_mut(f).pincount -= refs;
            self.put(f, refs);
        } else {
            self.put(f, refs * GUP_PIN_COUNTING_BIAS);
        }
    }

    /// Map one page by a PTE (`folio_add_*_rmap_pte()` + the mapping's
    /// reference): the caller passes whether the mapping's reference is new
    /// (`take_ref`) or the allocation's reference is handed over.
    pub fn add_pte_map(&mut self, p: u64, take_ref: bool) {
        let f = self.folio_of(p);
        let page = self.page_mut(p);
        page.pte_maps += 1;
        let first_map = page.pte_maps == 1;
        let folio = self.folio_mut(f);
        folio.pte_maps += 1;
        if first_map {
            folio.pte_mapped_pages += 1;
        }
        if take_ref {
            folio.refcount += 1;
        }
    }

    /// Map a whole PMD-sized folio by a PMD (`folio_add_*_rmap_pmd()`).
    pub fn add_pmd_map(&mut self, f: FolioId, take_ref: bool) {
        let folio = self.folio_mut(f);
        folio.entire_maps += 1;
        if take_ref {
            folio.refcount += 1;
        }
    }

    /// Remove the PTE mappings of a run of consecutive pages of one folio
    /// (the zap and COW paths), then drop one reference per page, with the
    /// deferred-split accounting of the profile's kernel:
    /// - 6.12 (`mm/rmap.c: __folio_remove_rmap(.., RMAP_LEVEL_PTE)`): the
    ///   run is removed as one batch; the folio is queued (and
    ///   `thp_deferred_split_page` counted, once per folio) if the batch
    ///   unmapped pages while others stay mapped and no PMD maps it;
    /// - 6.1 (`mm/rmap.c: page_remove_rmap` → `deferred_split_huge_page`):
    ///   pages are removed one at a time, and any page of a THP losing its
    ///   last mapping (no PTE left, no PMD mapping the folio) queues it —
    ///   counted when it was not queued yet, even if every page goes.
    pub fn remove_pte_run(&mut self, pages: &[u64], vmstat: &mut VmStat) {
        let Some(&p0) = pages.first() else { return };
        let f = self.folio_of(p0);
        debug_assert!(pages.iter().all(|&p| self.folio_of(p) == f));
        let mut last = 0;
        for &p in pages {
            let page = self.page_mut(p);
            page.pte_maps -= 1;
            debug_assert!(page.pte_maps >= 0, "pte mapcount underflow on page {p}");
            if page.pte_maps == 0 {
                last += 1;
            }
        }
        let nr = pages.len() as i64;
        let any_unmap_rule = self.deferred_split_on_any_unmap;
        let folio = self.folio_mut(f);
        folio.pte_maps -= nr;
        folio.pte_mapped_pages -= last;
        if folio.is_large() {
            let queue = if any_unmap_rule {
                last > 0 && folio.entire_maps == 0
            } else {
                // `nr = last` only counts when no PMD maps the folio
                // (`_nr_pages_mapped` stays >= ENTIRELY_MAPPED while one does).
                let unmapped = if folio.entire_maps == 0 { last } else { 0 };
                unmapped > 0 && folio.pte_mapped_pages > 0
            };
            self.maybe_deferred_split(f, queue, vmstat);
        }
        self.put(f, nr);
    }

    /// Remove a PMD mapping of a folio and drop its reference
    /// (`__folio_remove_rmap(.., RMAP_LEVEL_PMD)`; 6.1:
    /// `page_remove_anon_compound_rmap`, the same rule through
    /// PageDoubleMap): when the last PMD mapping goes while some pages stay
    /// PTE-mapped and some do not, the folio is queued for deferred split.
    pub fn remove_pmd_map(&mut self, f: FolioId, vmstat: &mut VmStat) {
        let folio = self.folio_mut(f);
        folio.entire_maps -= 1;
        debug_assert!(folio.entire_maps >= 0);
        if folio.entire_maps == 0 && !folio.is_zero() {
            let nr = folio.nr_pages() as i64 - folio.pte_mapped_pages;
            let partially_mapped = nr > 0 && nr < folio.nr_pages() as i64;
            self.maybe_deferred_split(f, partially_mapped, vmstat);
        }
        self.put(f, 1);
    }

    /// The PMD step of a folio split's unmap (`__split_huge_pmd_locked`
    /// with `freeze`): the PMD mapping becomes migration entries. 6.12
    /// removes it as a PMD mapping ([`Memory::remove_pmd_map`]); 6.1 first
    /// turns it into 512 PTE mappings and then removes each
    /// (`page_remove_rmap(page + i, vma, false)`), so a page left with no
    /// mapping at all queues the folio.
    pub fn remove_pmd_map_frozen(&mut self, f: FolioId, vmstat: &mut VmStat) {
        if !self.deferred_split_on_any_unmap {
            self.remove_pmd_map(f, vmstat);
            return;
        }
        let folio = self.folio_mut(f);
        folio.entire_maps -= 1;
        let unmapped = folio.entire_maps == 0 && folio.pte_mapped_pages < folio.nr_pages() as i64;
        self.maybe_deferred_split(f, unmapped, vmstat);
        self.put(f, 1);
    }

    /// `mm/huge_memory.c: deferred_split_folio(folio, true)` (6.1:
    /// `deferred_split_huge_page`): queue an anon large folio once, counting
    /// `thp_deferred_split_page` for a PMD-order one. `partially_mapped`
    /// doubles as "on the deferred list" for 6.1. Order-1 folios have no
    /// deferred list.
    fn maybe_deferred_split(&mut self, f: FolioId, partially_mapped: bool, vmstat: &mut VmStat) {
        let folio = self.folio_mut(f);
        if !partially_mapped || !folio.is_anon() || folio.partially_mapped || folio.order <= 1 {
            return;
        }
        folio.partially_mapped = true;
        if folio.order == HPAGE_PMD_ORDER {
            vmstat.thp_deferred_split_page += 1;
        }
    }

    /// `mm/huge_memory.c: __split_huge_page()` of an unmapped large folio:
    /// one small folio per page, in place. Each page keeps its id, its
    /// `PageAnonExclusive` and content bits; the new folios hold no
    /// reference yet (the caller maps them back, then frees the unused ones
    /// with [`Memory::free_if_unreferenced`]). Returns the new folios, page
    /// order; the first keeps the old folio's id.
    pub fn split_to_order0(&mut self, f: FolioId) -> Vec<FolioId> {
        let old = self.folio(f).clone();
        debug_assert!(old.is_large() && old.mapcount() == 0);
        self.split_since_taken = true;
        let mut out = Vec::with_capacity(old.nr_pages() as usize);
        for (i, p) in (old.first..old.first + old.nr_pages()).enumerate() {
            let kind = match old.kind {
                FolioKind::Shmem { file, index } => FolioKind::Shmem {
                    file,
                    index: index + i as u64,
                },
                k => k,
            };
            let folio = Folio {
                first: p,
                order: 0,
                refcount: 0,
                pincount: 0,
                entire_maps: 0,
                pte_mapped_pages: 0,
                pte_maps: 0,
                kind,
                partially_mapped: false,
                live: true,
            };
            let nf = if i == 0 {
                self.folios[f as usize] = folio;
                self.mark_changed(f);
                f
            } else {
                self.folios.push(folio);
                self.live_pos.push(u32::MAX);
                self.is_changed.push(false);
                let nf = u32::try_from(self.folios.len() - 1).expect("fewer than 2^32 folios");
                self.mark_live(nf);
                nf
            };
            self.pages[p as usize].folio = nf;
            out.push(nf);
        }
        out
    }

    /// Free a folio nothing references (the end of a split for pages that
    /// were not mapped back).
    pub fn free_if_unreferenced(&mut self, f: FolioId) {
        let folio = self.folio_mut(f);
        if folio.refcount == 0 && folio.live {
            folio.live = false;
            let pages = self.pages_of(f);
            self.freed.extend(pages);
            self.mark_dead(f);
        }
    }
}
