//! What an observer sees of one page: the model's answer to the helper
//! module's QUERY ioctls (`kmod/pinfuzz.h: struct pinfuzz_page_info`).

use crate::types::PageId;

/// One page as the model predicts the kernel reports it.
///
/// `refcount` and `pincount` are the folio's; `mapcount` is the page's
/// precise mapcount (PTE mappings of this page plus PMD mappings of its
/// folio), `folio_mapcount` is `folio_mapcount()` (every PTE and PMD mapping
/// any page of the folio).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PageView {
    /// A page is mapped at the address (range query) or held (handle query).
    pub present: bool,
    /// The page's identity; meaningless when not present.
    pub page: Option<PageId>,
    /// The identity of the folio's first page.
    pub head: Option<PageId>,
    /// Folio order: 0 for a small folio, 9 for a PMD THP.
    pub order: u8,
    /// `folio_ref_count()`.
    pub refcount: i64,
    /// Precise mapcount of this page.
    pub mapcount: i64,
    /// `folio_mapcount()`.
    pub folio_mapcount: i64,
    /// `folio->_pincount` for a large folio, 0 for a small one.
    pub pincount: i64,
    /// `folio_test_anon()`.
    pub anon: bool,
    /// `PageAnonExclusive(page)`.
    pub anon_exclusive: bool,
    /// The shared zero page (`is_zero_pfn()`).
    pub zero: bool,
    /// A page of the huge zero folio.
    pub huge_zero: bool,
    /// `folio_maybe_dma_pinned()`.
    pub maybe_dma_pinned: bool,
}

impl PageView {
    /// The view of an address with nothing mapped.
    pub const ABSENT: PageView = PageView {
        present: false,
        page: None,
        head: None,
        order: 0,
        refcount: 0,
        mapcount: 0,
        folio_mapcount: 0,
        pincount: 0,
        anon: false,
        anon_exclusive: false,
        zero: false,
        huge_zero: false,
        maybe_dma_pinned: false,
    };
}
