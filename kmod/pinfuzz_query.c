// SPDX-License-Identifier: GPL-2.0
/*
 * pinfuzz helper module: page state queries.
 *
 * Fills struct pinfuzz_page_info for the pages of a user range of any mm
 * (PINFUZZ_IOC_QUERY_RANGE) or for the pages a handle holds
 * (PINFUZZ_IOC_QUERY_HANDLE).  A module cannot walk page tables down to the
 * PTEs on 6.12 (walk_page_range(), folio_walk_start() and __pte_offset_map()
 * are not exported), so a range is looked up the way the kernel's own
 * debugging interfaces do it: get_user_pages_remote(FOLL_GET | FOLL_FORCE |
 * FOLL_NOFAULT) under mmap_read_lock, which returns the leading present pages
 * of a range and never faults anything in.  The lookup references are then
 * subtracted from the reported refcounts.
 *
 * This runs after every step of every pinfuzz program, over every page of
 * every mapping, so the common shapes are kept cheap: present pages are
 * looked up PINFUZZ_QUERY_CHUNK at a time; addresses outside any VMA and
 * whole unpopulated PMDs (or PUDs, P4Ds, PGDs) are skipped without a GUP
 * call; only a non-present page inside a populated page table costs a
 * failing one-page GUP call.
 */

#include <linux/hash.h>
#include <linux/mm.h>
#include <linux/mmap_lock.h>
#include <linux/pgtable.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "pinfuzz_internal.h"

/* Pages looked up per GUP call and copied out per copy_to_user(). */
#define PINFUZZ_QUERY_CHUNK	128
/* Folio -> lookup references; 256 slots keep the load at most 1/2. */
#define PINFUZZ_QUERY_HASH_BITS	8

struct pinfuzz_query_slot {
	struct folio *folio;
	unsigned int refs;
};

struct pinfuzz_query_buf {
	struct page *pages[PINFUZZ_QUERY_CHUNK];
	struct pinfuzz_page_info info[PINFUZZ_QUERY_CHUNK];
	struct pinfuzz_query_slot slots[1 << PINFUZZ_QUERY_HASH_BITS];
};

struct pinfuzz_query_buf *pinfuzz_query_buf_alloc(void)
{
	return kvmalloc(sizeof(struct pinfuzz_query_buf), GFP_KERNEL);
}

void pinfuzz_query_buf_free(struct pinfuzz_query_buf *qb)
{
	kvfree(qb);
}

static struct pinfuzz_query_slot *query_slot(struct pinfuzz_query_buf *qb,
					     struct folio *folio)
{
	unsigned int i = hash_ptr(folio, PINFUZZ_QUERY_HASH_BITS);
	const unsigned int mask = (1 << PINFUZZ_QUERY_HASH_BITS) - 1;

	/* At most PINFUZZ_QUERY_CHUNK folios in 2x as many slots: ends. */
	while (qb->slots[i].folio && qb->slots[i].folio != folio)
		i = (i + 1) & mask;
	return &qb->slots[i];
}

/*
 * Describe @page.  @lookup_refs references on its folio are the caller's own
 * and are not reported.  The folio-wide fields (refcount, folio_mapcount,
 * pincount, order, most flags) are the same for every page of a folio: they
 * are taken from @prev when it describes the same folio, which matters on 6.1
 * where folio_mapcount() visits every page of a large folio.
 */
static void query_fill(struct pinfuzz_page_info *info, struct page *page,
		       unsigned int lookup_refs,
		       const struct pinfuzz_page_info *prev)
{
	struct folio *folio = page_folio(page);
	unsigned long head_pfn = folio_pfn(folio);
	int refcount;
	u32 flags;

	info->pfn = page_to_pfn(page);
	if (prev && prev->head_pfn == head_pfn && (prev->flags & PINFUZZ_PAGE_PRESENT)) {
		info->head_pfn = head_pfn;
		info->refcount = prev->refcount;
		info->folio_mapcount = prev->folio_mapcount;
		info->pincount = prev->pincount;
		info->order = prev->order;
		flags = prev->flags & ~(PINFUZZ_PAGE_ANON_EXCLUSIVE | PINFUZZ_PAGE_ZERO);
	} else {
		refcount = folio_ref_count(folio) - lookup_refs;
		info->head_pfn = head_pfn;
		info->refcount = refcount;
		info->folio_mapcount = pf_folio_mapcount(folio);
		info->pincount = pf_folio_pincount(folio);
		info->order = folio_order(folio);

		flags = PINFUZZ_PAGE_PRESENT;
		if (folio_test_anon(folio))
			flags |= PINFUZZ_PAGE_ANON;
		if (folio_test_large(folio)) {
			flags |= PINFUZZ_PAGE_LARGE;
			if (pf_is_huge_zero_folio(folio))
				flags |= PINFUZZ_PAGE_HUGE_ZERO;
		}
		if (folio_test_lru(folio))
			flags |= PINFUZZ_PAGE_LRU;
		if (folio_test_dirty(folio))
			flags |= PINFUZZ_PAGE_DIRTY;
		if (folio_test_swapcache(folio))
			flags |= PINFUZZ_PAGE_SWAPCACHE;
		/*
		 * folio_maybe_dma_pinned() (include/linux/mm.h) evaluated on
		 * the corrected refcount: a lookup reference must not push a
		 * small folio over GUP_PIN_COUNTING_BIAS.
		 */
		if (folio_test_large(folio) ? info->pincount > 0 :
		    (unsigned int)refcount >= GUP_PIN_COUNTING_BIAS)
			flags |= PINFUZZ_PAGE_MAYBE_DMA_PINNED;
	}

	info->mapcount = pf_page_mapcount(folio, page);
	/* The bit aliases PG_mappedtodisk on file pages: anon only. */
	if ((flags & PINFUZZ_PAGE_ANON) && pf_page_anon_exclusive(folio, page))
		flags |= PINFUZZ_PAGE_ANON_EXCLUSIVE;
	if (is_zero_pfn(info->pfn))
		flags |= PINFUZZ_PAGE_ZERO;
	info->flags = flags;
}

/*
 * Fill qb->info[0..n) for qb->pages[0..n), which hold one lookup reference
 * each, and drop those references.  A folio found at several addresses (the
 * zero page at every read-faulted address, a large folio over consecutive
 * ones) holds one reference per page, all of which are subtracted.
 */
static void query_fill_looked_up(struct pinfuzz_query_buf *qb,
				 unsigned int first, unsigned int n)
{
	struct page **pages = qb->pages + first;
	struct pinfuzz_page_info *info = qb->info + first;
	struct pinfuzz_query_slot *slot;
	unsigned int i;

	memset(qb->slots, 0, sizeof(qb->slots));
	for (i = 0; i < n; i++) {
		slot = query_slot(qb, page_folio(pages[i]));
		slot->folio = page_folio(pages[i]);
		slot->refs++;
	}
	for (i = 0; i < n; i++) {
		slot = query_slot(qb, page_folio(pages[i]));
		query_fill(&info[i], pages[i], slot->refs,
			   i ? &info[i - 1] : NULL);
	}
	for (i = 0; i < n; i++)
		put_page(pages[i]);
}

/*
 * Number of pages from @addr (at most @max) that certainly have nothing
 * mapped: outside any VMA, or under an empty page table entry above the PTE
 * level.  0 means a page may be present at @addr.  Caller holds
 * mmap_read_lock(mm), which keeps the VMA tree and, inside a VMA, the page
 * table pages above the PTE level in place (they are only freed by
 * free_pgtables() after the VMA is gone), as for GUP's own walk
 * (mm/gup.c: follow_page_mask()).
 */
static unsigned long query_absent_span(struct mm_struct *mm,
				       unsigned long addr, unsigned long max)
{
	unsigned long end = addr + max * PAGE_SIZE;
	struct vm_area_struct *vma;
	unsigned long next;
	pgd_t *pgd;
	p4d_t *p4d;
	pud_t *pud;
	pmd_t *pmd;

	vma = find_vma(mm, addr);
	if (!vma || vma->vm_start >= end)
		return max;
	if (addr < vma->vm_start)
		return (vma->vm_start - addr) >> PAGE_SHIFT;
	end = min(end, vma->vm_end);

	pgd = pgd_offset(mm, addr);
	next = pgd_addr_end(addr, end);
	if (pgd_none(READ_ONCE(*pgd)))
		return (next - addr) >> PAGE_SHIFT;
	p4d = p4d_offset(pgd, addr);
	next = p4d_addr_end(addr, end);
	if (p4d_none(READ_ONCE(*p4d)))
		return (next - addr) >> PAGE_SHIFT;
	pud = pud_offset(p4d, addr);
	next = pud_addr_end(addr, end);
	if (pud_none(READ_ONCE(*pud)))
		return (next - addr) >> PAGE_SHIFT;
	if (pud_leaf(READ_ONCE(*pud)))
		return 0;
	pmd = pmd_offset(pud, addr);
	next = pmd_addr_end(addr, end);
	if (pmd_none(READ_ONCE(*pmd)))
		return (next - addr) >> PAGE_SHIFT;
	return 0;
}

/*
 * Fill qb->info[0..n) for the n pages from @addr, under mmap_read_lock(mm).
 */
static void query_range_locked(struct pinfuzz_query_buf *qb,
			       struct mm_struct *mm, unsigned long addr,
			       unsigned int n)
{
	/*
	 * FOLL_FORCE reads PROT_NONE and write-only mappings too; FOLL_NOFAULT
	 * stops at the first page that is not present instead of faulting it
	 * in (mm/gup.c: faultin_page() returns -EFAULT).
	 */
	const unsigned int gup_flags = FOLL_GET | FOLL_FORCE | FOLL_NOFAULT;
	unsigned int i = 0, absent, want;
	long got;

	while (i < n) {
		absent = query_absent_span(mm, addr + i * PAGE_SIZE, n - i);
		if (absent) {
			memset(&qb->info[i], 0, absent * sizeof(qb->info[0]));
			i += absent;
			continue;
		}
		want = n - i;
		got = pf_get_user_pages_remote(mm, addr + i * PAGE_SIZE, want,
					       gup_flags, qb->pages + i);
		if (got > 0) {
			query_fill_looked_up(qb, i, got);
			i += got;
		}
		/*
		 * GUP stopped at page i: it is not present, or GUP cannot
		 * reach it at all (VM_IO | VM_PFNMAP): report it absent and
		 * go on with the next one.
		 */
		if (got < want) {
			memset(&qb->info[i], 0, sizeof(qb->info[0]));
			i++;
		}
	}
}

int pinfuzz_query_range(struct pinfuzz_query_buf *qb, struct mm_struct *mm,
			unsigned long addr, unsigned long nr_pages,
			struct pinfuzz_page_info __user *uinfo)
{
	unsigned long done = 0;
	unsigned int n;

	while (done < nr_pages) {
		n = min_t(unsigned long, nr_pages - done, PINFUZZ_QUERY_CHUNK);
		if (mmap_read_lock_killable(mm))
			return -EINTR;
		query_range_locked(qb, mm, addr + done * PAGE_SIZE, n);
		mmap_read_unlock(mm);
		/*
		 * Copy out without the mmap lock: a fault on uinfo takes the
		 * caller's mmap lock, which may be mm's.
		 */
		if (copy_to_user(uinfo + done, qb->info, n * sizeof(qb->info[0])))
			return -EFAULT;
		done += n;
	}
	return 0;
}

int pinfuzz_query_pages(struct pinfuzz_query_buf *qb, struct page **pages,
			unsigned long nr_pages,
			struct pinfuzz_page_info __user *uinfo)
{
	unsigned long done = 0;
	unsigned int i, n;

	while (done < nr_pages) {
		n = min_t(unsigned long, nr_pages - done, PINFUZZ_QUERY_CHUNK);
		for (i = 0; i < n; i++)
			query_fill(&qb->info[i], pages[done + i], 0,
				   i ? &qb->info[i - 1] : NULL);
		if (copy_to_user(uinfo + done, qb->info, n * sizeof(qb->info[0])))
			return -EFAULT;
		done += n;
	}
	return 0;
}
