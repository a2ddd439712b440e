/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * pinfuzz helper module: user API.
 *
 * The module exposes /dev/pinfuzz (misc device, mode 0600).  Each open file
 * is an independent table of handles; a handle is the set of page references
 * one GUP call returned (FOLL_GET references or FOLL_PIN pins).  Closing the
 * file (also when the owner is killed) releases every reference it holds.
 * Processes that inherit the file descriptor share its table.
 *
 * All structures use fixed-width fields only and are mirrored exactly once in
 * Rust (harness/src/uapi.rs) with compile-time layout checks.
 * Every reserved field must be zero and every unknown flag bit must be clear,
 * otherwise the ioctl fails with -EINVAL before doing any work.
 *
 * Return convention.  An ioctl returns 0 when it did its work and -1 with
 * errno set when the module refused the request before doing any work:
 *   ENOTTY  unknown ioctl command
 *   EINVAL  unknown flag bit, nonzero reserved field, unknown
 *           api, pid given to a non-remote api or negative, FOLL_LONGTERM
 *           with a FOLL_GET api, unaligned addr, nr_pages 0 or above
 *           PINFUZZ_MAX_PAGES_PER_CALL, range wrapping around the address
 *           space, handle query whose nr_pages differs from the handle's,
 *           PINFUZZ_RELEASE_DIRTY on a FOLL_GET handle, handle query with
 *           addr or pid set, range query with handle set
 *   ENOENT  unknown handle (never allocated, or already released)
 *   ENOSPC  the call could exceed PINFUZZ_MAX_HANDLES or
 *           PINFUZZ_MAX_PAGES_HELD for this file, or
 *           PINFUZZ_MAX_PAGES_HELD_TOTAL for the module (nr_pages is counted
 *           before GUP runs, as if every page were returned)
 *   ESRCH   the pid of a remote call or range query names no process, or
 *           one without an mm (kernel thread, exiting)
 *   EFAULT  the argument or info_ptr cannot be read or written
 *   EINTR   a fatal signal arrived while waiting for the mmap lock
 *   ENOMEM  the module could not allocate its own bookkeeping
 * A GUP call that the kernel itself refused is not an ioctl error: the ioctl
 * returns 0 and pinfuzz_gup.ret holds the kernel's -errno.
 */
#ifndef _UAPI_PINFUZZ_H
#define _UAPI_PINFUZZ_H

#include <linux/types.h>
#include <linux/ioctl.h>

#define PINFUZZ_ABI_VERSION		1

/* Caps enforced by the module (per call, per open file, per module). */
#define PINFUZZ_MAX_PAGES_PER_CALL	1024
#define PINFUZZ_MAX_PAGES_HELD		16384
#define PINFUZZ_MAX_HANDLES		1024
#define PINFUZZ_MAX_PAGES_HELD_TOTAL	65536

/* pinfuzz_gup.api: which kernel entry point to call. */
#define PINFUZZ_API_GET_USER_PAGES		1	/* FOLL_GET, mmap_read_lock */
#define PINFUZZ_API_GET_USER_PAGES_FAST		2	/* FOLL_GET, no lock */
#define PINFUZZ_API_PIN_USER_PAGES		3	/* FOLL_PIN, mmap_read_lock */
#define PINFUZZ_API_PIN_USER_PAGES_FAST		4	/* FOLL_PIN, no lock */
#define PINFUZZ_API_PIN_USER_PAGES_REMOTE	5	/* FOLL_PIN, on pid's mm */
#define PINFUZZ_API_GET_USER_PAGES_REMOTE	6	/* FOLL_GET, on pid's mm */

/*
 * pinfuzz_gup.gup_flags: the subset of FOLL_* a caller may ask for.  The
 * values are those of Linux 6.12 (include/linux/mm_types.h); the module
 * translates them to the running kernel's own FOLL_* values, which differ on
 * older kernels (6.1: FOLL_FORCE 0x10, FOLL_LONGTERM 0x10000).
 * FOLL_LONGTERM is only accepted with a PIN entry point (mm/gup.c:
 * is_valid_gup_args() would WARN otherwise).
 */
#define PINFUZZ_FOLL_WRITE		(1U << 0)
#define PINFUZZ_FOLL_FORCE		(1U << 3)
#define PINFUZZ_FOLL_LONGTERM		(1U << 8)

/*
 * PINFUZZ_IOC_GUP: take references on [addr, addr + nr_pages * PAGE_SIZE).
 * The *_REMOTE entry points act on the mm of pid (0 = the caller); the
 * other ones always act on the caller's mm and need pid == 0.  On return,
 * ret is exactly what the entry point returned: the number of pages (which
 * may be less than nr_pages) or a negative errno; the module keeps the pages
 * under a new handle if ret > 0.
 */
struct pinfuzz_gup {
	__u64 addr;		/* in: page aligned user address */
	__u64 nr_pages;		/* in: 1..PINFUZZ_MAX_PAGES_PER_CALL */
	__u32 api;		/* in: PINFUZZ_API_* */
	__u32 gup_flags;	/* in: PINFUZZ_FOLL_* */
	__s32 pid;		/* in: target pid for *_REMOTE, 0 = caller; else 0 */
	__u32 reserved0;	/* in: must be 0 */
	__s64 ret;		/* out: the entry point's return value (pages or -errno) */
	__u32 handle;		/* out: handle (> 0) if ret > 0, else 0 */
	__u32 reserved1;	/* out: 0 (ignored on input) */
};

/* pinfuzz_release.flags */
#define PINFUZZ_RELEASE_DIRTY		(1U << 0)	/* unpin_user_pages_dirty_lock(.., true) */

/*
 * PINFUZZ_IOC_RELEASE: drop a handle.  A FOLL_GET handle is released with
 * put_page() on every page, a FOLL_PIN handle with unpin_user_pages() or,
 * with PINFUZZ_RELEASE_DIRTY, unpin_user_pages_dirty_lock(pages, n, true).
 * PINFUZZ_RELEASE_DIRTY on a FOLL_GET handle is -EINVAL.  Handles are
 * allocated cyclically, so a released handle number is not reused soon.
 */
struct pinfuzz_release {
	__u32 handle;		/* in */
	__u32 flags;		/* in: PINFUZZ_RELEASE_* */
};

/* pinfuzz_page_info.flags */
#define PINFUZZ_PAGE_PRESENT		(1U << 0)	/* a page is mapped / held */
#define PINFUZZ_PAGE_ANON		(1U << 1)	/* folio_test_anon() */
#define PINFUZZ_PAGE_ANON_EXCLUSIVE	(1U << 2)	/* PageAnonExclusive(page) */
#define PINFUZZ_PAGE_ZERO		(1U << 3)	/* is_zero_pfn(): shared zero page */
#define PINFUZZ_PAGE_HUGE_ZERO		(1U << 4)	/* is_huge_zero_folio() */
#define PINFUZZ_PAGE_LRU		(1U << 5)	/* folio_test_lru() */
#define PINFUZZ_PAGE_DIRTY		(1U << 6)	/* folio_test_dirty() */
#define PINFUZZ_PAGE_MAYBE_DMA_PINNED	(1U << 7)	/* folio_maybe_dma_pinned() */
#define PINFUZZ_PAGE_LARGE		(1U << 8)	/* folio_test_large() */
#define PINFUZZ_PAGE_SWAPCACHE		(1U << 9)	/* folio_test_swapcache() */

/*
 * One page as the kernel sees it.  refcount is folio_ref_count() of the
 * page's folio.  Both queries first drain the calling CPU's per-CPU LRU
 * folio batches (lru_add_drain()), whose transient references on small
 * folios would otherwise show (also the activation a range query's own
 * FOLL_TOUCH lookup queues on a classic-LRU kernel such as Debian 6.1);
 * with one CPU the refcounts are then exact, with several, other CPUs'
 * batches may still hold references.  For a range query the module looks the pages up with
 * get_user_pages_remote(FOLL_GET | FOLL_FORCE | FOLL_NOFAULT) and reports
 * folio_ref_count() minus every lookup reference it holds on that folio at
 * that moment (one per page of the folio found in the same lookup batch,
 * also for the zero page and the huge zero folio), so its own lookup
 * references are never visible; PINFUZZ_PAGE_MAYBE_DMA_PINNED is computed
 * like folio_maybe_dma_pinned() from that corrected refcount.  For a handle
 * query the handle's references are part of the state and reported as they
 * are.  mapcount is the page's precise mapcount (page->_mapcount + 1, plus
 * folio_entire_mapcount() for a large folio; 6.1: page_mapcount());
 * folio_mapcount is folio_mapcount().  pincount is the folio's _pincount for
 * a large folio and 0 for a small one.  ANON_EXCLUSIVE is only set for anon
 * pages.  HUGE_ZERO: huge_zero_folio is not exported to modules, so the
 * module recognises it as a PMD-order folio that is neither anon nor in a
 * page cache (no mapping), not swap-backed and not on the LRU -- which on the
 * kernels pinfuzz targets only the huge zero folio is.
 */
struct pinfuzz_page_info {
	__u64 pfn;
	__u64 head_pfn;
	__s32 refcount;
	__s32 mapcount;
	__s32 folio_mapcount;
	__s32 pincount;
	__u32 order;
	__u32 flags;		/* PINFUZZ_PAGE_* */
};

/*
 * PINFUZZ_IOC_QUERY_RANGE: fill info_ptr[0..nr_pages) for the user range
 * [addr, addr + nr_pages * PAGE_SIZE) of pid (0 = caller); a page that is not
 * mapped (or not present) gets flags == 0 and all other fields 0.
 * PINFUZZ_IOC_QUERY_HANDLE: fill info_ptr[0..nr_pages) with the pages the
 * handle holds, in the order GUP returned them; nr_pages must equal the
 * handle's page count.  addr and pid must be 0 for a handle query, handle
 * must be 0 for a range query.
 */
struct pinfuzz_query {
	__u64 addr;		/* in: range start, page aligned */
	__u64 nr_pages;		/* in: 1..PINFUZZ_MAX_PAGES_PER_CALL */
	__u64 info_ptr;		/* in: user pointer to struct pinfuzz_page_info[nr_pages] */
	__s32 pid;		/* in */
	__u32 handle;		/* in */
	__u32 flags;		/* in: must be 0 */
	__u32 reserved;		/* in: must be 0 */
};

/*
 * PINFUZZ_IOC_STATUS: module-wide and per-file state.  Page counts are pages
 * as GUP returned them (a pinned shared zero page counts, although the
 * kernel takes no reference on it).
 */
struct pinfuzz_status {
	__u32 abi_version;	/* out: PINFUZZ_ABI_VERSION */
	__u32 fault;		/* out: PINFUZZ_FAULT_* the module was loaded with */
	__u64 handles;		/* out: live handles of this file */
	__u64 pages_got;	/* out: FOLL_GET references held by this file */
	__u64 pages_pinned;	/* out: FOLL_PIN pins held by this file */
	__u64 pages_held_total;	/* out: references held by all open files */
};

/*
 * Fault injection (module parameter "fault", default 0, read once at load
 * time): deliberate driver bugs, to check that pinfuzz notices them.  Some
 * corrupt refcounts on purpose; each is built so that the guest survives
 * long enough for the accounting difference to be observed.
 *
 * PUT_FOR_UNPIN: a pin handle is released with put_page() on every page
 *   (skipping the shared zero page, on which the pin took no reference).  An
 *   order-0 page keeps 1023 of its 1024 bias references (so it is never
 *   freed), a large folio keeps its _pincount (when it is eventually freed,
 *   the kernel reports "BUG: Bad page state ... nonzero pincount" and leaks
 *   it); nr_foll_pin_released does not move.
 * LEAK_PIN: releasing (or closing the file with) a pin handle does nothing
 *   to the pages: the handle disappears and its pins stay forever.
 * DOUBLE_UNPIN: a pin handle is released by unpinning every page twice,
 *   the second time in accounting only (see below): nr_foll_pin_released
 *   grows by twice the pages and a large folio's _pincount goes negative.
 * GET_FOR_PIN: a PIN entry point takes FOLL_GET instead, through the
 *   matching get_user_pages*() (FOLL_LONGTERM dropped, as FOLL_GET forbids
 *   it); the handle is still reported as a pin handle, but it is released
 *   with put_page() (after set_page_dirty_lock() with PINFUZZ_RELEASE_DIRTY),
 *   never "unpinned", so refcounts stay balanced: the visible effect is the
 *   missing pin while the handle lives (refcount +1 instead of +1024, no
 *   _pincount, no nr_foll_pin_acquired, no unsharing or migration).
 * UNPIN_WRONG_PAGE: for page i of a pin handle of n pages the module unpins
 *   pages[min(i + 1, n - 1)]: the first page is never unpinned and the last
 *   one twice, the second time in accounting only.  The vmstat counters
 *   balance, only per-page state shows the bug (the first page stays
 *   pinned); a one-page handle or one whose pages share a folio shows nothing
 *   (the kernel accounts large folio pins per folio).  (A rule of
 *   pages[(i + 1) % n] would be a permutation of the pages and could not be
 *   observed at all.)
 * "In accounting only": a real second unpin would drop references the page
 * still needs, free it while it is mapped or held and crash (or silently
 * corrupt) the guest before anything could be observed, so the module only
 * applies what gup_put_folio() changes besides the refcount:
 * nr_foll_pin_released, and _pincount for a large folio.  No fault mode
 * makes a refcount smaller than the references that remain.
 */
#define PINFUZZ_FAULT_NONE		0
#define PINFUZZ_FAULT_PUT_FOR_UNPIN	1	/* release a pin with put_page() */
#define PINFUZZ_FAULT_LEAK_PIN		2	/* forget to unpin */
#define PINFUZZ_FAULT_DOUBLE_UNPIN	3	/* unpin every page twice */
#define PINFUZZ_FAULT_GET_FOR_PIN	4	/* take FOLL_GET when FOLL_PIN was asked */
#define PINFUZZ_FAULT_UNPIN_WRONG_PAGE	5	/* unpin page min(i+1, n-1) for page i */
#define PINFUZZ_FAULT_MAX		5

#define PINFUZZ_IOC_MAGIC	0xb7

#define PINFUZZ_IOC_GUP			_IOWR(PINFUZZ_IOC_MAGIC, 1, struct pinfuzz_gup)
#define PINFUZZ_IOC_RELEASE		_IOW(PINFUZZ_IOC_MAGIC, 2, struct pinfuzz_release)
#define PINFUZZ_IOC_QUERY_RANGE		_IOW(PINFUZZ_IOC_MAGIC, 3, struct pinfuzz_query)
#define PINFUZZ_IOC_QUERY_HANDLE	_IOW(PINFUZZ_IOC_MAGIC, 4, struct pinfuzz_query)
#define PINFUZZ_IOC_STATUS		_IOR(PINFUZZ_IOC_MAGIC, 5, struct pinfuzz_status)

#endif /* _UAPI_PINFUZZ_H */
