// SPDX-License-Identifier: GPL-2.0
/*
 * pinfuzz helper module: /dev/pinfuzz.
 *
 * Lets a privileged test program take FOLL_GET references and FOLL_PIN pins
 * on user pages through the kernel's own entry points (get_user_pages*,
 * pin_user_pages*), hold them under numbered handles, release them with
 * put_page() / unpin_user_pages*(), and look at the resulting page state
 * (refcount, mapcount, _pincount, flags).  It is the kernel side of pinfuzz,
 * a differential tester of page pinning; the user API is pinfuzz.h.
 *
 * Every open file owns a table of handles (an xarray under a mutex); the
 * table, and every reference in it, goes away with the file (.release runs
 * on the last fput(), also when the owner is killed).  Every user field is
 * validated before any work is done, and nothing a caller passes can make
 * the kernel WARN: what mm/gup.c: is_valid_gup_args() would WARN about is
 * refused with -EINVAL first.
 *
 * Module parameters: fault=N selects a deliberate bug (PINFUZZ_FAULT_*) to
 * check that pinfuzz notices it; gup_test=1 also registers the kernel's own
 * gup_test debugfs ABI (gup_test_abi.c).
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/mmap_lock.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/overflow.h>
#include <linux/pid.h>
#include <linux/sched/mm.h>
#include <linux/sched/task.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/uaccess.h>
#include <linux/xarray.h>

#include "pinfuzz_internal.h"

unsigned int pinfuzz_fault;
module_param_named(fault, pinfuzz_fault, uint, 0444);
MODULE_PARM_DESC(fault, "deliberate bug to inject (PINFUZZ_FAULT_*), 0 = none");

static bool pinfuzz_gup_test;
module_param_named(gup_test, pinfuzz_gup_test, bool, 0444);
MODULE_PARM_DESC(gup_test, "also provide debugfs gup_test (the mm/gup_test.c ABI)");

static const char *const pinfuzz_fault_names[] = {
	[PINFUZZ_FAULT_NONE]		 = "none",
	[PINFUZZ_FAULT_PUT_FOR_UNPIN]	 = "put_for_unpin",
	[PINFUZZ_FAULT_LEAK_PIN]	 = "leak_pin",
	[PINFUZZ_FAULT_DOUBLE_UNPIN]	 = "double_unpin",
	[PINFUZZ_FAULT_GET_FOR_PIN]	 = "get_for_pin",
	[PINFUZZ_FAULT_UNPIN_WRONG_PAGE] = "unpin_wrong_page",
};

/* The references one GUP call returned. */
struct pinfuzz_handle {
	unsigned long nr_pages;
	bool pin;		/* a PIN entry point was asked for */
	bool got_for_pin;	/* PINFUZZ_FAULT_GET_FOR_PIN: holds FOLL_GET refs */
	struct page *pages[];
};

/* One open /dev/pinfuzz. */
struct pinfuzz_file {
	/* Taken after lock when both are held. */
	struct mutex query_lock;	/* guards qb */
	struct pinfuzz_query_buf *qb;	/* query scratch space, on first use */
	struct mutex lock;		/* guards everything below */
	struct xarray handles;		/* id -> struct pinfuzz_handle */
	u32 next_id;			/* xa_alloc_cyclic() cursor */
	unsigned long nr_handles;	/* live handles */
	unsigned long handles_reserved;	/* by GUP calls in flight */
	unsigned long pages_reserved;	/* by GUP calls in flight */
	unsigned long pages_got;	/* in live FOLL_GET handles */
	unsigned long pages_pinned;	/* in live pin handles */
};

/* Pages held (and reserved) by all open files, for the module-wide cap. */
static DEFINE_SPINLOCK(pinfuzz_total_lock);
static unsigned long pinfuzz_pages_held_total;
static unsigned long pinfuzz_pages_reserved_total;

static bool pinfuzz_api_is_pin(u32 api)
{
	return api == PINFUZZ_API_PIN_USER_PAGES ||
	       api == PINFUZZ_API_PIN_USER_PAGES_FAST ||
	       api == PINFUZZ_API_PIN_USER_PAGES_REMOTE;
}

static bool pinfuzz_api_is_remote(u32 api)
{
	return api == PINFUZZ_API_PIN_USER_PAGES_REMOTE ||
	       api == PINFUZZ_API_GET_USER_PAGES_REMOTE;
}

/* Range [addr, addr + nr_pages pages): aligned, sized, not wrapping. */
static int pinfuzz_check_range(u64 addr, u64 nr_pages)
{
	unsigned long len, end;

	if (!nr_pages || nr_pages > PINFUZZ_MAX_PAGES_PER_CALL)
		return -EINVAL;
	if (!PAGE_ALIGNED(addr))
		return -EINVAL;
	if (check_mul_overflow((unsigned long)nr_pages, PAGE_SIZE, &len) ||
	    check_add_overflow((unsigned long)addr, len, &end))
		return -EINVAL;
	return 0;
}

/* The mm of @nr (0 = current), with a reference (mmput() it). */
static struct mm_struct *pinfuzz_get_mm(pid_t nr)
{
	struct task_struct *task;
	struct mm_struct *mm;
	struct pid *pid;

	if (!nr) {
		if (!current->mm)
			return ERR_PTR(-ESRCH);
		mmget(current->mm);
		return current->mm;
	}
	pid = find_get_pid(nr);
	if (!pid)
		return ERR_PTR(-ESRCH);
	task = get_pid_task(pid, PIDTYPE_PID);
	put_pid(pid);
	if (!task)
		return ERR_PTR(-ESRCH);
	mm = get_task_mm(task);
	put_task_struct(task);
	return mm ?: ERR_PTR(-ESRCH);
}

/*
 * The second unpin of DOUBLE_UNPIN and UNPIN_WRONG_PAGE, in accounting only:
 * what gup_put_folio() (mm/gup.c) changes besides the refcount --
 * NR_FOLL_PIN_RELEASED, and _pincount for a large folio.  The refcount is
 * left alone because a real over-release would free a page that is still
 * mapped or held, and the guest would crash or corrupt memory before
 * pinfuzz could observe anything; no floor short of the true count is safe,
 * since transient references (LRU batches, speculative GUP-fast) may be the
 * ones that end up dropping it to zero.
 */
static void pinfuzz_phantom_unpin(struct page *page)
{
	struct folio *folio = page_folio(page);

	if (is_zero_folio(folio))
		return;		/* gup_put_folio() ignores the zero page too */
	mod_node_page_state(folio_pgdat(folio), NR_FOLL_PIN_RELEASED, 1);
	if (folio_test_large(folio))
		atomic_dec(pf_folio_pincount_ptr(folio));
}

static void pinfuzz_unpin_one(struct page *page, bool dirty)
{
	unpin_user_pages_dirty_lock(&page, 1, dirty);
}

/* Release a pin handle the wrong way, as fault mode pinfuzz_fault says. */
static void pinfuzz_release_pin_faulty(struct pinfuzz_handle *h, bool dirty)
{
	unsigned long i, n = h->nr_pages;

	switch (pinfuzz_fault) {
	case PINFUZZ_FAULT_PUT_FOR_UNPIN:
		for (i = 0; i < n; i++) {
			/* FOLL_PIN took no reference on the zero page. */
			if (!is_zero_page(h->pages[i]))
				put_page(h->pages[i]);
		}
		break;
	case PINFUZZ_FAULT_LEAK_PIN:
		break;
	case PINFUZZ_FAULT_DOUBLE_UNPIN:
		for (i = 0; i < n; i++) {
			pinfuzz_unpin_one(h->pages[i], dirty);
			pinfuzz_phantom_unpin(h->pages[i]);
		}
		break;
	case PINFUZZ_FAULT_UNPIN_WRONG_PAGE:
		/* pages[1..n-1] once each, pages[n-1] once more, pages[0] never */
		for (i = 0; i < n; i++) {
			if (i + 1 < n)
				pinfuzz_unpin_one(h->pages[i + 1], dirty);
			else if (n > 1)
				pinfuzz_phantom_unpin(h->pages[n - 1]);
			else
				pinfuzz_unpin_one(h->pages[0], dirty);
		}
		break;
	}
}

/*
 * Drop every reference @h holds, then free it.  @inject: release it as the
 * fault mode says (a RELEASE or a close); false when the module undoes a
 * handle the caller never learnt about.
 */
static void pinfuzz_handle_free(struct pinfuzz_handle *h, bool dirty,
				bool inject)
{
	unsigned long i;

	if (!h->pin || h->got_for_pin) {
		for (i = 0; i < h->nr_pages; i++) {
			if (dirty)
				set_page_dirty_lock(h->pages[i]);
			put_page(h->pages[i]);
		}
	} else if (inject && pinfuzz_fault != PINFUZZ_FAULT_NONE &&
		   pinfuzz_fault != PINFUZZ_FAULT_GET_FOR_PIN) {
		pinfuzz_release_pin_faulty(h, dirty);
	} else if (dirty) {
		unpin_user_pages_dirty_lock(h->pages, h->nr_pages, true);
	} else {
		unpin_user_pages(h->pages, h->nr_pages);
	}
	kvfree(h);
}

static void pinfuzz_total_sub(unsigned long held, unsigned long reserved)
{
	spin_lock(&pinfuzz_total_lock);
	pinfuzz_pages_held_total -= held;
	pinfuzz_pages_reserved_total -= reserved;
	spin_unlock(&pinfuzz_total_lock);
}

/*
 * Reserve room for a handle of up to @nr pages before calling GUP, so that
 * the table mutex is not held across GUP (which may fault, migrate and
 * sleep) and the caps hold even with GUP calls in flight.
 */
static int pinfuzz_reserve(struct pinfuzz_file *pf, unsigned long nr)
{
	int ret = 0;

	if (mutex_lock_killable(&pf->lock))
		return -EINTR;
	if (pf->nr_handles + pf->handles_reserved >= PINFUZZ_MAX_HANDLES ||
	    pf->pages_got + pf->pages_pinned + pf->pages_reserved + nr >
	    PINFUZZ_MAX_PAGES_HELD) {
		ret = -ENOSPC;
		goto unlock;
	}
	spin_lock(&pinfuzz_total_lock);
	if (pinfuzz_pages_held_total + pinfuzz_pages_reserved_total + nr >
	    PINFUZZ_MAX_PAGES_HELD_TOTAL)
		ret = -ENOSPC;
	else
		pinfuzz_pages_reserved_total += nr;
	spin_unlock(&pinfuzz_total_lock);
	if (ret)
		goto unlock;
	pf->handles_reserved++;
	pf->pages_reserved += nr;
unlock:
	mutex_unlock(&pf->lock);
	return ret;
}

/* Give back a reservation that did not become a handle. */
static void pinfuzz_unreserve(struct pinfuzz_file *pf, unsigned long nr)
{
	mutex_lock(&pf->lock);
	pf->handles_reserved--;
	pf->pages_reserved -= nr;
	mutex_unlock(&pf->lock);
	pinfuzz_total_sub(0, nr);
}

/*
 * Turn a reservation of @reserved pages into handle @h, numbered *@id.
 * Returns 0 or a negative errno (then the reservation is gone, @h is not).
 */
static int pinfuzz_commit(struct pinfuzz_file *pf, struct pinfuzz_handle *h,
			  unsigned long reserved, u32 *id)
{
	int ret;

	mutex_lock(&pf->lock);
	ret = xa_alloc_cyclic(&pf->handles, id, h, xa_limit_32b,
			      &pf->next_id, GFP_KERNEL);
	pf->handles_reserved--;
	pf->pages_reserved -= reserved;
	if (ret >= 0) {
		pf->nr_handles++;
		if (h->pin)
			pf->pages_pinned += h->nr_pages;
		else
			pf->pages_got += h->nr_pages;
	}
	mutex_unlock(&pf->lock);

	spin_lock(&pinfuzz_total_lock);
	pinfuzz_pages_reserved_total -= reserved;
	if (ret >= 0)
		pinfuzz_pages_held_total += h->nr_pages;
	spin_unlock(&pinfuzz_total_lock);

	return ret < 0 ? ret : 0;
}

/* Remove handle @id from the table; NULL if there is none. */
static struct pinfuzz_handle *pinfuzz_take(struct pinfuzz_file *pf, u32 id)
{
	struct pinfuzz_handle *h;

	h = xa_erase(&pf->handles, id);
	if (!h)
		return NULL;
	pf->nr_handles--;
	if (h->pin)
		pf->pages_pinned -= h->nr_pages;
	else
		pf->pages_got -= h->nr_pages;
	return h;
}

/*
 * Call the GUP entry point @api.  Returns what it returned, or -EINTR when
 * a fatal signal interrupted the wait for the mmap lock (then the entry
 * point was not called; *called tells which).
 */
static long pinfuzz_call_gup(u32 api, struct mm_struct *mm, unsigned long addr,
			     unsigned long nr, unsigned int flags,
			     struct page **pages, bool *called)
{
	long ret;

	*called = false;
	switch (api) {
	case PINFUZZ_API_GET_USER_PAGES_FAST:
		*called = true;
		return get_user_pages_fast(addr, nr, flags, pages);
	case PINFUZZ_API_PIN_USER_PAGES_FAST:
		*called = true;
		return pin_user_pages_fast(addr, nr, flags, pages);
	}

	/*
	 * The slow and remote entry points must be called with mm's
	 * mmap_lock held for read (mm/gup.c); for the non-remote ones mm is
	 * current->mm.
	 */
	if (mmap_read_lock_killable(mm))
		return -EINTR;
	*called = true;
	switch (api) {
	case PINFUZZ_API_GET_USER_PAGES:
		ret = pf_get_user_pages(addr, nr, flags, pages);
		break;
	case PINFUZZ_API_PIN_USER_PAGES:
		ret = pf_pin_user_pages(addr, nr, flags, pages);
		break;
	case PINFUZZ_API_PIN_USER_PAGES_REMOTE:
		ret = pf_pin_user_pages_remote(mm, addr, nr, flags, pages);
		break;
	case PINFUZZ_API_GET_USER_PAGES_REMOTE:
		ret = pf_get_user_pages_remote(mm, addr, nr, flags, pages);
		break;
	default:
		ret = -EINVAL;	/* unreachable: api validated */
		break;
	}
	mmap_read_unlock(mm);
	return ret;
}

/* PINFUZZ_FAULT_GET_FOR_PIN: the FOLL_GET entry point matching @api. */
static u32 pinfuzz_get_api_for(u32 api)
{
	switch (api) {
	case PINFUZZ_API_PIN_USER_PAGES:
		return PINFUZZ_API_GET_USER_PAGES;
	case PINFUZZ_API_PIN_USER_PAGES_FAST:
		return PINFUZZ_API_GET_USER_PAGES_FAST;
	case PINFUZZ_API_PIN_USER_PAGES_REMOTE:
		return PINFUZZ_API_GET_USER_PAGES_REMOTE;
	}
	return api;
}

static unsigned int pinfuzz_foll_flags(u32 flags)
{
	unsigned int foll = 0;

	if (flags & PINFUZZ_FOLL_WRITE)
		foll |= FOLL_WRITE;
	if (flags & PINFUZZ_FOLL_FORCE)
		foll |= FOLL_FORCE;
	if (flags & PINFUZZ_FOLL_LONGTERM)
		foll |= FOLL_LONGTERM;
	return foll;
}

static long pinfuzz_ioctl_gup(struct pinfuzz_file *pf,
			      struct pinfuzz_gup __user *uarg)
{
	struct pinfuzz_handle *h;
	struct pinfuzz_gup args;
	struct mm_struct *mm;
	unsigned int foll;
	bool called;
	long ret;
	u32 api;
	u32 id;

	if (copy_from_user(&args, uarg, sizeof(args)))
		return -EFAULT;
	if (args.api < PINFUZZ_API_GET_USER_PAGES ||
	    args.api > PINFUZZ_API_GET_USER_PAGES_REMOTE)
		return -EINVAL;
	if (args.gup_flags & ~(PINFUZZ_FOLL_WRITE | PINFUZZ_FOLL_FORCE |
			       PINFUZZ_FOLL_LONGTERM))
		return -EINVAL;
	/* is_valid_gup_args(): "LONGTERM can only be specified when pinning" */
	if ((args.gup_flags & PINFUZZ_FOLL_LONGTERM) &&
	    !pinfuzz_api_is_pin(args.api))
		return -EINVAL;
	if (args.pid < 0 || (args.pid && !pinfuzz_api_is_remote(args.api)))
		return -EINVAL;
	if (args.reserved0)
		return -EINVAL;
	ret = pinfuzz_check_range(args.addr, args.nr_pages);
	if (ret)
		return ret;

	api = args.api;
	foll = pinfuzz_foll_flags(args.gup_flags);
	if (pinfuzz_fault == PINFUZZ_FAULT_GET_FOR_PIN && pinfuzz_api_is_pin(api)) {
		api = pinfuzz_get_api_for(api);
		foll &= ~FOLL_LONGTERM;
	}

	mm = pinfuzz_get_mm(args.pid);
	if (IS_ERR(mm))
		return PTR_ERR(mm);
	ret = pinfuzz_reserve(pf, args.nr_pages);
	if (ret)
		goto put_mm;
	h = kvmalloc(struct_size(h, pages, args.nr_pages), GFP_KERNEL);
	if (!h) {
		ret = -ENOMEM;
		goto unreserve;
	}
	h->pin = pinfuzz_api_is_pin(args.api);
	h->got_for_pin = h->pin && !pinfuzz_api_is_pin(api);

	ret = pinfuzz_call_gup(api, mm, args.addr, args.nr_pages, foll,
			       h->pages, &called);
	if (!called)
		goto free_handle;
	args.ret = ret;
	args.handle = 0;
	args.reserved1 = 0;
	if (ret > 0) {
		h->nr_pages = ret;
		ret = pinfuzz_commit(pf, h, args.nr_pages, &id);
		if (ret) {
			pinfuzz_handle_free(h, false, false);
			goto put_mm;
		}
		args.handle = id;
	} else {
		pinfuzz_unreserve(pf, args.nr_pages);
		kvfree(h);
	}
	mmput(mm);

	if (copy_to_user(uarg, &args, sizeof(args))) {
		/* Nobody could ever release it: undo. */
		if (args.handle) {
			mutex_lock(&pf->lock);
			h = pinfuzz_take(pf, args.handle);
			mutex_unlock(&pf->lock);
			if (h) {
				pinfuzz_total_sub(h->nr_pages, 0);
				pinfuzz_handle_free(h, false, false);
			}
		}
		return -EFAULT;
	}
	return 0;

free_handle:
	kvfree(h);
unreserve:
	pinfuzz_unreserve(pf, args.nr_pages);
put_mm:
	mmput(mm);
	return ret;
}

static long pinfuzz_ioctl_release(struct pinfuzz_file *pf,
				  struct pinfuzz_release __user *uarg)
{
	struct pinfuzz_release args;
	struct pinfuzz_handle *h;

	if (copy_from_user(&args, uarg, sizeof(args)))
		return -EFAULT;
	if (args.flags & ~PINFUZZ_RELEASE_DIRTY)
		return -EINVAL;
	if (mutex_lock_killable(&pf->lock))
		return -EINTR;
	h = xa_load(&pf->handles, args.handle);
	if (!h) {
		mutex_unlock(&pf->lock);
		return -ENOENT;
	}
	if ((args.flags & PINFUZZ_RELEASE_DIRTY) && !h->pin) {
		mutex_unlock(&pf->lock);
		return -EINVAL;
	}
	pinfuzz_take(pf, args.handle);
	mutex_unlock(&pf->lock);

	pinfuzz_total_sub(h->nr_pages, 0);
	pinfuzz_handle_free(h, args.flags & PINFUZZ_RELEASE_DIRTY, true);
	return 0;
}

/*
 * The file's query scratch space, allocated on first use, with
 * pf->query_lock held (the caller unlocks it).  Kept for the file's lifetime:
 * queries run after every pinfuzz step, and allocating (and clearing) it
 * each time was a measurable part of a small query's cost.
 */
static struct pinfuzz_query_buf *pinfuzz_get_query_buf(struct pinfuzz_file *pf)
{
	if (mutex_lock_killable(&pf->query_lock))
		return ERR_PTR(-EINTR);
	if (!pf->qb)
		pf->qb = pinfuzz_query_buf_alloc();
	if (!pf->qb) {
		mutex_unlock(&pf->query_lock);
		return ERR_PTR(-ENOMEM);
	}
	return pf->qb;
}

static long pinfuzz_ioctl_query(struct pinfuzz_file *pf, unsigned int cmd,
				struct pinfuzz_query __user *uarg)
{
	struct pinfuzz_page_info __user *uinfo;
	struct pinfuzz_query_buf *qb;
	struct pinfuzz_query args;
	struct pinfuzz_handle *h;
	struct mm_struct *mm;
	long ret;

	if (copy_from_user(&args, uarg, sizeof(args)))
		return -EFAULT;
	if (args.flags || args.reserved)
		return -EINVAL;
	if (!args.nr_pages || args.nr_pages > PINFUZZ_MAX_PAGES_PER_CALL)
		return -EINVAL;
	if (cmd == PINFUZZ_IOC_QUERY_RANGE) {
		if (args.handle || args.pid < 0)
			return -EINVAL;
		ret = pinfuzz_check_range(args.addr, args.nr_pages);
		if (ret)
			return ret;
	} else if (args.addr || args.pid) {
		return -EINVAL;
	}
	uinfo = u64_to_user_ptr(args.info_ptr);
	if (!access_ok(uinfo, args.nr_pages * sizeof(*uinfo)))
		return -EFAULT;

	if (cmd == PINFUZZ_IOC_QUERY_RANGE) {
		mm = pinfuzz_get_mm(args.pid);
		if (IS_ERR(mm))
			return PTR_ERR(mm);
		qb = pinfuzz_get_query_buf(pf);
		if (IS_ERR(qb)) {
			mmput(mm);
			return PTR_ERR(qb);
		}
		ret = pinfuzz_query_range(qb, mm, args.addr, args.nr_pages,
					  uinfo);
		mutex_unlock(&pf->query_lock);
		mmput(mm);
		return ret;
	}

	/* The table lock keeps the handle, and so its references, alive. */
	if (mutex_lock_killable(&pf->lock))
		return -EINTR;
	h = xa_load(&pf->handles, args.handle);
	if (!h) {
		ret = -ENOENT;
	} else if (h->nr_pages != args.nr_pages) {
		ret = -EINVAL;
	} else {
		qb = pinfuzz_get_query_buf(pf);
		if (IS_ERR(qb)) {
			ret = PTR_ERR(qb);
		} else {
			ret = pinfuzz_query_pages(qb, h->pages, h->nr_pages,
						  uinfo);
			mutex_unlock(&pf->query_lock);
		}
	}
	mutex_unlock(&pf->lock);
	return ret;
}

static long pinfuzz_ioctl_status(struct pinfuzz_file *pf,
				 struct pinfuzz_status __user *uarg)
{
	struct pinfuzz_status st = {
		.abi_version = PINFUZZ_ABI_VERSION,
		.fault = pinfuzz_fault,
	};

	if (mutex_lock_killable(&pf->lock))
		return -EINTR;
	st.handles = pf->nr_handles;
	st.pages_got = pf->pages_got;
	st.pages_pinned = pf->pages_pinned;
	mutex_unlock(&pf->lock);
	spin_lock(&pinfuzz_total_lock);
	st.pages_held_total = pinfuzz_pages_held_total;
	spin_unlock(&pinfuzz_total_lock);

	if (copy_to_user(uarg, &st, sizeof(st)))
		return -EFAULT;
	return 0;
}

static long pinfuzz_ioctl(struct file *file, unsigned int cmd,
			  unsigned long arg)
{
	struct pinfuzz_file *pf = file->private_data;
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case PINFUZZ_IOC_GUP:
		return pinfuzz_ioctl_gup(pf, uarg);
	case PINFUZZ_IOC_RELEASE:
		return pinfuzz_ioctl_release(pf, uarg);
	case PINFUZZ_IOC_QUERY_RANGE:
	case PINFUZZ_IOC_QUERY_HANDLE:
		return pinfuzz_ioctl_query(pf, cmd, uarg);
	case PINFUZZ_IOC_STATUS:
		return pinfuzz_ioctl_status(pf, uarg);
	}
	return -ENOTTY;
}

static int pinfuzz_open(struct inode *inode, struct file *file)
{
	struct pinfuzz_file *pf;

	pf = kzalloc(sizeof(*pf), GFP_KERNEL);
	if (!pf)
		return -ENOMEM;
	mutex_init(&pf->lock);
	mutex_init(&pf->query_lock);
	xa_init_flags(&pf->handles, XA_FLAGS_ALLOC1);
	file->private_data = pf;
	return nonseekable_open(inode, file);
}

/* Last reference to the file is gone: drop everything it holds. */
static int pinfuzz_release(struct inode *inode, struct file *file)
{
	struct pinfuzz_file *pf = file->private_data;
	struct pinfuzz_handle *h;
	unsigned long id;

	xa_for_each(&pf->handles, id, h) {
		xa_erase(&pf->handles, id);
		pinfuzz_total_sub(h->nr_pages, 0);
		pinfuzz_handle_free(h, false, true);
	}
	xa_destroy(&pf->handles);
	pinfuzz_query_buf_free(pf->qb);
	mutex_destroy(&pf->query_lock);
	mutex_destroy(&pf->lock);
	kfree(pf);
	return 0;
}

static const struct file_operations pinfuzz_fops = {
	.owner		= THIS_MODULE,
	.open		= pinfuzz_open,
	.release	= pinfuzz_release,
	.unlocked_ioctl	= pinfuzz_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
};

static struct miscdevice pinfuzz_misc = {
	.minor	= MISC_DYNAMIC_MINOR,
	.name	= "pinfuzz",
	.fops	= &pinfuzz_fops,
	.mode	= 0600,
};

static int __init pinfuzz_init(void)
{
	int ret;

	if (pinfuzz_fault > PINFUZZ_FAULT_MAX) {
		pr_err("fault=%u: no such fault mode (0..%u)\n", pinfuzz_fault,
		       PINFUZZ_FAULT_MAX);
		return -EINVAL;
	}
	ret = misc_register(&pinfuzz_misc);
	if (ret)
		return ret;
	if (pinfuzz_gup_test) {
		ret = gup_test_abi_init();
		if (ret) {
			misc_deregister(&pinfuzz_misc);
			return ret;
		}
	}
	pr_info("/dev/pinfuzz ready: abi %u, fault=%u (%s), gup_test=%d\n",
		PINFUZZ_ABI_VERSION, pinfuzz_fault,
		pinfuzz_fault_names[pinfuzz_fault], pinfuzz_gup_test);
	return 0;
}

static void __exit pinfuzz_exit(void)
{
	if (pinfuzz_gup_test)
		gup_test_abi_exit();
	misc_deregister(&pinfuzz_misc);
}

module_init(pinfuzz_init);
module_exit(pinfuzz_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("pinfuzz: drive and observe get_user_pages/pin_user_pages from user space");
