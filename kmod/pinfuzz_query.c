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
 * Both queries first drain this CPU's LRU folio batches, whose transient
 * references would otherwise be counted (kernel-lab.md, trap 2): with one
 * CPU, as in pinfuzz's guests, the refcounts reported are then exact.
 *
 * This runs after every step of every pinfuzz program, over every page of
 * every mapping, so it is kept cheap: the page tables are read first (as
 * far as a module can, see query_span()) to split the range into runs of
 * absent pages, which cost no GUP call, and runs of present pages, which
 * are looked up with one GUP call per run (at most PINFUZZ_QUERY_CHUNK
 * pages); a failing GUP call only happens when the page tables changed in
 * between.
 */

#include <linux/hash.h>
#include <linux/mm.h>
#include <linux/mmap_lock.h>
#include <linux/pgtable.h>
#include <linux/preempt.h>
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
	/* all empty between uses: only the slots used are cleared again */
	struct pinfuzz_query_slot slots[1 << PINFUZZ_QUERY_HASH_BITS];
	u16 slot_of[PINFUZZ_QUERY_CHUNK];	/* pages[i] -> slots[] index */
};

struct pinfuzz_query_buf *pinfuzz_query_buf_alloc(void)
{
	return kvzalloc(sizeof(struct pinfuzz_query_buf), GFP_KERNEL);
}

void pinfuzz_query_buf_free(struct pinfuzz_query_buf *qb)
{
	kvfree(qb);
}

/* Index of @folio's slot (open addressing, linear probing). */
static unsigned int query_slot(struct pinfuzz_query_buf *qb,
			       struct folio *folio)
{
	unsigned int i = hash_ptr(folio, PINFUZZ_QUERY_HASH_BITS);
	const unsigned int mask = (1 << PINFUZZ_QUERY_HASH_BITS) - 1;

	/* At most PINFUZZ_QUERY_CHUNK folios in 2x as many slots: ends. */
	while (qb->slots[i].folio && qb->slots[i].folio != folio)
		i = (i + 1) & mask;
	return i;
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
	struct folio *folio;
	unsigned int i, s;

	for (i = 0; i < n; i++) {
		folio = page_folio(pages[i]);
		s = query_slot(qb, folio);
		qb->slots[s].folio = folio;
		qb->slots[s].refs++;
		qb->slot_of[i] = s;
	}
	for (i = 0; i < n; i++)
		query_fill(&info[i], pages[i], qb->slots[qb->slot_of[i]].refs,
			   i ? &info[i - 1] : NULL);
	for (i = 0; i < n; i++) {
		qb->slots[qb->slot_of[i]].folio = NULL;
		qb->slots[qb->slot_of[i]].refs = 0;
		put_page(pages[i]);
	}
}

/*
 * Count the pages of the PTE table mapped by @pmd that look alike (present,
 * or not) from @addr up to @end.  This only steers the lookup -- a page that
 * looks present is still looked up with GUP, which has the last word -- so
 * it may read a PTE table that is being changed.  It must not read one that
 * is being freed: as __pte_offset_map() (mm/pgtable-generic.c, not exported)
 * does it, the table is found from one snapshot of the PMD and read under
 * rcu_read_lock(), since page tables that go away while the mmap lock is
 * only held for read (khugepaged's retract_page_tables()) are freed by RCU
 * (pte_free_defer()).
 */
static unsigned long query_pte_span(pmd_t *pmd, unsigned long addr,
				    unsigned long end, bool *present)
{
	unsigned long n, max = (end - addr) >> PAGE_SHIFT;
	pmd_t pmdval;
	pte_t *pte;

	rcu_read_lock();
	pmdval = READ_ONCE(*pmd);
	if (pmd_none(pmdval) || pmd_trans_huge(pmdval) || pmd_devmap(pmdval) ||
	    pmd_leaf(pmdval) || pmd_bad(pmdval)) {
		/* changed under us: let GUP look at one page */
		rcu_read_unlock();
		*present = true;
		return 1;
	}
	pte = pte_offset_kernel(&pmdval, addr);
	/* pte_present() returns flag bits (_PAGE_PROTNONE for PROT_NONE) */
	*present = pte_present(ptep_get(pte));
	for (n = 1; n < max; n++)
		if (!!pte_present(ptep_get(pte + n)) != *present)
			break;
	rcu_read_unlock();
	return n;
}

/*
 * Split the pages from @addr (at most @max) into runs: returns the length of
 * the run that starts at @addr, which is either certainly absent (outside
 * any VMA, under an empty page table entry, or a non-present PTE:
 * *present = false) or worth a GUP lookup (*present = true).  Caller holds
 * mmap_read_lock(mm), which keeps the VMA tree and, inside a VMA, the page
 * tables above the PTE level in place (only free_pgtables() frees them,
 * after the VMA is gone), as GUP's own walk relies on
 * (mm/gup.c: follow_page_mask()).
 */
static unsigned long query_span(struct mm_struct *mm, unsigned long addr,
				unsigned long max, bool *present)
{
	unsigned long end = addr + max * PAGE_SIZE;
	struct vm_area_struct *vma;
	unsigned long next;
	pmd_t *pmd, pmdval;
	pgd_t *pgd;
	p4d_t *p4d;
	pud_t *pud;

	*present = false;
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
	*present = true;
	if (pud_leaf(READ_ONCE(*pud)))
		return (next - addr) >> PAGE_SHIFT;
	pmd = pmd_offset(pud, addr);
	next = pmd_addr_end(addr, end);
	pmdval = READ_ONCE(*pmd);
	if (pmd_none(pmdval)) {
		*present = false;
		return (next - addr) >> PAGE_SHIFT;
	}
	/* PMD-mapped THP or hugetlb, or anything odd: GUP decides */
	if (pmd_trans_huge(pmdval) || pmd_devmap(pmdval) || pmd_leaf(pmdval) ||
	    pmd_bad(pmdval))
		return (next - addr) >> PAGE_SHIFT;
	return query_pte_span(pmd, addr, next, present);
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
	unsigned int i = 0, run;
	bool present;
	long got;

	while (i < n) {
		run = query_span(mm, addr + i * PAGE_SIZE, n - i, &present);
		if (!present) {
			memset(&qb->info[i], 0, run * sizeof(qb->info[0]));
			i += run;
			continue;
		}
		got = pf_get_user_pages_remote(mm, addr + i * PAGE_SIZE, run,
					       gup_flags, qb->pages + i);
		if (got > 0) {
			/*
			 * The lookup's FOLL_TOUCH marks the pages accessed;
			 * on the classic LRU (6.1's default) that queues a
			 * page seen twice for activation, with a reference,
			 * on this CPU's batch.  Drain it, with the fresh
			 * pages' lru_add references, so neither is reported.
			 */
			pf_lru_add_drain();
			query_fill_looked_up(qb, i, got);
			i += got;
		}
		/*
		 * GUP stopped at page i: it is not present after all, or GUP
		 * cannot reach it (VM_IO | VM_PFNMAP): report it absent and
		 * go on with the next one.
		 */
		if (got < run) {
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
		/* drain the CPU the lookups queued their side effects on */
		migrate_disable();
		query_range_locked(qb, mm, addr + done * PAGE_SIZE, n);
		migrate_enable();
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

	pf_lru_add_drain();
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
