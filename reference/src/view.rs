//! What an observer sees: the model's answer to the helper module's QUERY
//! ioctls (`kmod/pinfuzz.h`).

use crate::folio::FolioKind;
use crate::model::Model;
use crate::page::PageView;
use crate::types::{HandleId, PageId, Pid, Vpn};

impl Model {
    /// The page mapped at `vpn` of `pid` (`PINFUZZ_IOC_QUERY_RANGE`).
    pub fn page_at(&self, pid: Pid, vpn: Vpn) -> PageView {
        if !self.is_alive(pid) {
            return PageView::ABSENT;
        }
        match self.mapped_page(pid, vpn) {
            0 => PageView::ABSENT,
            p => self.view_page(p),
        }
    }

    /// The pages a live handle holds, in GUP order (`PINFUZZ_IOC_QUERY_HANDLE`).
    pub fn handle_pages(&self, handle: HandleId) -> Vec<PageView> {
        self.handle(handle)
            .map(|h| h.pages.iter().map(|&p| self.view_page(p)).collect())
            .unwrap_or_default()
    }

    /// One page's state.
    pub(crate) fn view_page(&self, p: u64) -> PageView {
        let f = self.mem.folio_of(p);
        let folio = self.mem.folio(f);
        let page = self.mem.page(p);
        PageView {
            present: true,
            page: Some(PageId(p)),
            head: Some(PageId(folio.first)),
            order: folio.order,
            refcount: folio.refcount,
            mapcount: page.pte_maps + folio.entire_maps,
            folio_mapcount: folio.mapcount(),
            pincount: if self.mem.has_pincount(f) {
                folio.pincount
            } else {
                0
            },
            anon: folio.kind == FolioKind::Anon,
            anon_exclusive: page.anon_exclusive,
            zero: folio.kind == FolioKind::Zero,
            huge_zero: folio.kind == FolioKind::HugeZero,
            maybe_dma_pinned: self.mem.maybe_dma_pinned(f),
        }
    }
}
