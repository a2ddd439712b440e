/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pinfuzz helper module: declarations shared by its source files, and the
 * shims that hide the differences between the two kernel lines it is built
 * for (Debian 6.1.y and 6.12.y).  Everything version-dependent lives here so
 * the rest of the module reads like 6.12 code.
 */
#ifndef _PINFUZZ_INTERNAL_H
#define _PINFUZZ_INTERNAL_H

#include <linux/version.h>
#include <linux/mm.h>
#include <linux/huge_mm.h>
#include <linux/page-flags.h>
#include <linux/pagevec.h>

#include "pinfuzz.h"

/*
 * The only kernel version test of the module: it is built out of tree for
 * two kernel lines, and PINFUZZ_LINUX_6_1 selects the 6.1 spelling of the
 * few interfaces that changed in between (checkpatch's advice against
 * LINUX_VERSION_CODE is for in-tree code).
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 12, 0)
#define PINFUZZ_LINUX_6_1 0
#elif (LINUX_VERSION_CODE >> 8) == (KERNEL_VERSION(6, 1, 0) >> 8)
#define PINFUZZ_LINUX_6_1 1
#else
#error "pinfuzz supports Linux 6.1.y and 6.12.y or later; other lines are untested"
#endif

/* 6.5 removed the vmas argument of the slow GUP entry points. */
#define PINFUZZ_GUP_HAS_VMAS PINFUZZ_LINUX_6_1

static inline long pf_get_user_pages(unsigned long start, unsigned long nr,
				     unsigned int flags, struct page **pages)
{
#if PINFUZZ_GUP_HAS_VMAS
	return get_user_pages(start, nr, flags, pages, NULL);
#else
	return get_user_pages(start, nr, flags, pages);
#endif
}

static inline long pf_pin_user_pages(unsigned long start, unsigned long nr,
				     unsigned int flags, struct page **pages)
{
#if PINFUZZ_GUP_HAS_VMAS
	return pin_user_pages(start, nr, flags, pages, NULL);
#else
	return pin_user_pages(start, nr, flags, pages);
#endif
}

/* Callers hold mmap_read_lock(mm); locked == NULL: GUP never drops it. */
static inline long pf_get_user_pages_remote(struct mm_struct *mm,
					    unsigned long start,
					    unsigned long nr,
					    unsigned int flags,
					    struct page **pages)
{
#if PINFUZZ_GUP_HAS_VMAS
	return get_user_pages_remote(mm, start, nr, flags, pages, NULL, NULL);
#else
	return get_user_pages_remote(mm, start, nr, flags, pages, NULL);
#endif
}

static inline long pf_pin_user_pages_remote(struct mm_struct *mm,
					    unsigned long start,
					    unsigned long nr,
					    unsigned int flags,
					    struct page **pages)
{
#if PINFUZZ_GUP_HAS_VMAS
	return pin_user_pages_remote(mm, start, nr, flags, pages, NULL, NULL);
#else
	return pin_user_pages_remote(mm, start, nr, flags, pages, NULL);
#endif
}

/* _pincount of a large folio (6.1: first tail page's compound_pincount). */
static inline atomic_t *pf_folio_pincount_ptr(struct folio *folio)
{
#if !PINFUZZ_LINUX_6_1
	return &folio->_pincount;
#else
	return folio_pincount_ptr(folio);
#endif
}

static inline int pf_folio_pincount(struct folio *folio)
{
	if (!folio_test_large(folio))
		return 0;
	return atomic_read(pf_folio_pincount_ptr(folio));
}

/*
 * lru_add_drain() for this CPU: move the folios queued in the per-CPU LRU
 * batches (mm/swap.c), dropping the reference each holds.  lru_add_drain()
 * is not exported, but releasing an empty batch calls it first:
 * __folio_batch_release() (6.12) / __pagevec_release() (6.1), both
 * EXPORT_SYMBOL.
 */
static inline void pf_lru_add_drain(void)
{
#if !PINFUZZ_LINUX_6_1
	struct folio_batch fbatch;

	folio_batch_init(&fbatch);
	__folio_batch_release(&fbatch);
#else
	struct pagevec pvec;

	pagevec_init(&pvec);
	__pagevec_release(&pvec);
#endif
}

/*
 * Precise mapcount of one page: how many page table entries map it, as
 * /proc/kpagecount reports it (6.12: fs/proc/internal.h,
 * folio_precise_page_mapcount(), not reachable from a module; 6.1:
 * page_mapcount(), whose slow path __page_mapcount() is exported).
 */
static inline int pf_page_mapcount(struct folio *folio, struct page *page)
{
#if !PINFUZZ_LINUX_6_1
	int mapcount = atomic_read(&page->_mapcount) + 1;

	if (page_mapcount_is_type(mapcount))
		mapcount = 0;
	if (folio_test_large(folio))
		mapcount += folio_entire_mapcount(folio);
	return mapcount;
#else
	return page_mapcount(page);
#endif
}

/*
 * folio_mapcount().  Inline on 6.12; on 6.1 it lives in mm/util.c and is
 * not exported, so this is a copy of it (it visits every page of a large
 * folio: callers cache the result per folio).
 */
static inline int pf_folio_mapcount(struct folio *folio)
{
#if !PINFUZZ_LINUX_6_1
	return folio_mapcount(folio);
#else
	int i, compound, nr, ret;

	if (likely(!folio_test_large(folio)))
		return atomic_read(&folio->_mapcount) + 1;

	compound = folio_entire_mapcount(folio);
	if (folio_test_hugetlb(folio))
		return compound;
	ret = compound;
	nr = folio_nr_pages(folio);
	for (i = 0; i < nr; i++)
		ret += atomic_read(&folio_page(folio, i)->_mapcount) + 1;
	/* File pages have compound_mapcount included in _mapcount */
	if (!folio_test_anon(folio))
		return ret - compound * nr;
	if (folio_test_double_map(folio))
		ret -= nr;
	return ret;
#endif
}

/* PageAnonExclusive() of an anon page (6.1 keeps hugetlb's on the head). */
static inline bool pf_page_anon_exclusive(struct folio *folio,
					  struct page *page)
{
#if PINFUZZ_LINUX_6_1
	if (folio_test_hugetlb(folio))
		page = &folio->page;
#endif
	return PageAnonExclusive(page);
}

/*
 * The huge zero folio.  huge_zero_folio (6.12) / huge_zero_page (6.1) and
 * huge_zero_pfn are not exported (Module.symvers), so is_huge_zero_folio()
 * cannot be linked.  The huge zero folio is allocated by
 * get_huge_zero_page() (mm/huge_memory.c) as a PMD-order folio that is never
 * anon, never in a page cache, never swap-backed and never put on an LRU;
 * every other PMD-order folio a user mapping can reach is anon (mapping has
 * PAGE_MAPPING_ANON), or a page cache folio (mapping set, on the LRU, and
 * for shmem swap-backed), or a hugetlb folio (anon or mapping set).
 */
static inline bool pf_is_huge_zero_folio(struct folio *folio)
{
#ifdef CONFIG_TRANSPARENT_HUGEPAGE
	return folio_test_large(folio) &&
	       folio_order(folio) == HPAGE_PMD_ORDER &&
	       !folio_test_hugetlb(folio) &&
	       !folio->mapping &&
	       !folio_test_swapbacked(folio) &&
	       !folio_test_lru(folio);
#else
	return false;
#endif
}

/* Fault mode the module was loaded with (PINFUZZ_FAULT_*). */
extern unsigned int pinfuzz_fault;

/* pinfuzz_query.c */
struct pinfuzz_query_buf;
struct pinfuzz_query_buf *pinfuzz_query_buf_alloc(void);
void pinfuzz_query_buf_free(struct pinfuzz_query_buf *qb);
int pinfuzz_query_range(struct pinfuzz_query_buf *qb, struct mm_struct *mm,
			unsigned long addr, unsigned long nr_pages,
			struct pinfuzz_page_info __user *uinfo);
int pinfuzz_query_pages(struct pinfuzz_query_buf *qb, struct page **pages,
			unsigned long nr_pages,
			struct pinfuzz_page_info __user *uinfo);

/* gup_test_abi.c: the kernel's own gup_test debugfs ABI (gup_test=1) */
int gup_test_abi_init(void);
void gup_test_abi_exit(void);

#endif /* _PINFUZZ_INTERNAL_H */
