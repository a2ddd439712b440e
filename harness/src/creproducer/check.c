/*
 * Checking what the kernel shows against what the pinfuzz model expects,
 * with the rules of pinfuzz's oracle (harness/src/oracle.rs, docs/oracle.md):
 *
 * - the op's result and the counters nr_foll_pin_acquired/released,
 *   thp_fault_alloc, thp_fault_fallback, thp_split_pmd, thp_split_page,
 *   thp_split_page_failed and thp_deferred_split_page (since the program
 *   started) are compared exactly; thp_zero_page_alloc is not (it counts
 *   allocations of the one global huge zero folio, which outlives programs);
 * - every page of every mapping and every held page of every handle:
 *   presence, identity ("same page" / "different page" by pfn), its folio's
 *   first page, the flags present, anon, anon_exclusive, zero, huge_zero,
 *   maybe_dma_pinned and large (LRU, dirty and swapcache are not modelled),
 *   folio order, pincount, refcount, mapcount and folio mapcount;
 * - refcount and mapcounts of the shared zero page and the huge zero folio
 *   are not compared (every process maps them, FOLL_GET takes plain
 *   references on them), nor maybe_dma_pinned of the small zero page;
 * - a page the model frees loses its identity: the kernel may hand its pfn
 *   to another page later;
 * - when a step makes the model allocate a THP (or map the huge zero folio)
 *   and the kernel's thp_fault_fallback grew more than the model's, the
 *   kernel fell back to small pages for lack of a free huge page: that is
 *   allowed, but nothing after it can be compared, and the remaining steps
 *   are skipped.
 */
#define MAX_DIFFS_SHOWN		20

static __u64 *slot_pfn;			/* identity slot -> pfn, 0: unbound */
static unsigned int nr_slots;
static struct {
	__u64 pfn;
	unsigned int slot;		/* 0: unbound (the entry stays for probing) */
} *pfn_slot;				/* open addressing, linear probing */
static unsigned int pfn_slot_mask;

static int step_diffs;
static char first_diff[256];
static int poisoned = -1;		/* the step that voided the rest, or -1 */

static void identity_init(unsigned int slots)
{
	unsigned int size = 64;

	nr_slots = slots;
	slot_pfn = calloc(slots + 1, sizeof(*slot_pfn));
	while (size < 2 * (slots + 1))
		size *= 2;
	pfn_slot = calloc(size, sizeof(*pfn_slot));
	if (!slot_pfn || !pfn_slot)
		die("out of memory for %u page identities", slots);
	pfn_slot_mask = size - 1;
}

static unsigned int *pfn_entry(__u64 pfn)
{
	unsigned int i = (unsigned int)(pfn * 0x9E3779B97F4A7C15ULL >> 40) & pfn_slot_mask;

	while (pfn_slot[i].pfn && pfn_slot[i].pfn != pfn)
		i = (i + 1) & pfn_slot_mask;
	pfn_slot[i].pfn = pfn;
	return &pfn_slot[i].slot;
}

static __printf(2, 3) void diff(int step, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!step_diffs++)
		snprintf(first_diff, sizeof(first_diff), "%s", msg);
	if (step_diffs <= MAX_DIFFS_SHOWN)
		ksft_print_msg("step %d: %s\n", step, msg);
	else if (step_diffs == MAX_DIFFS_SHOWN + 1)
		ksft_print_msg("step %d: more differences not shown\n", step);
}

/* "Same page as before" / "a different page": bind or check. */
static void check_identity(int step, const char *where, const char *what,
			   unsigned int slot, __u64 pfn)
{
	unsigned int *owner = pfn_entry(pfn);

	if (slot_pfn[slot] && slot_pfn[slot] != pfn) {
		diff(step, "%s: %s expected the same page as before (pfn 0x%llx), got pfn 0x%llx",
		     where, what, (unsigned long long)slot_pfn[slot], (unsigned long long)pfn);
		return;
	}
	if (*owner && *owner != slot) {
		diff(step, "%s: %s expected a new page (model page %u), got pfn 0x%llx, "
		     "which is model page %u", where, what, slot, (unsigned long long)pfn, *owner);
		return;
	}
	slot_pfn[slot] = pfn;
	*owner = slot;
}

static void forget(unsigned int slot)
{
	if (slot_pfn[slot]) {
		*pfn_entry(slot_pfn[slot]) = 0;
		slot_pfn[slot] = 0;
	}
}

static const struct {
	__u32 bit;
	const char *name;
} compared_flags[] = {
	{ PINFUZZ_PAGE_PRESENT, "present" },
	{ PINFUZZ_PAGE_ANON, "anon" },
	{ PINFUZZ_PAGE_ANON_EXCLUSIVE, "anon_exclusive" },
	{ PINFUZZ_PAGE_ZERO, "zero" },
	{ PINFUZZ_PAGE_HUGE_ZERO, "huge_zero" },
	{ PINFUZZ_PAGE_MAYBE_DMA_PINNED, "maybe_dma_pinned" },
	{ PINFUZZ_PAGE_LARGE, "large" },
};

/* Page j of run e against what the kernel reported (k). */
static void check_page(int step, const char *where, const struct exp_run *e,
		       unsigned int j, const struct pinfuzz_page_info *k)
{
	int present = e->flags & PINFUZZ_PAGE_PRESENT;
	int zero = e->flags & (PINFUZZ_PAGE_ZERO | PINFUZZ_PAGE_HUGE_ZERO);
	int kpresent = k->flags & PINFUZZ_PAGE_PRESENT;
	unsigned int i;

	if (!present != !kpresent) {
		diff(step, "%s: expected %s, got %s", where,
		     present ? "a page" : "no page", kpresent ? "a page" : "no page");
		return;
	}
	if (!present)
		return;
	check_identity(step, where, "page", e->slot + j * e->slot_step, k->pfn);
	check_identity(step, where, "folio", e->head + j * e->head_step, k->head_pfn);
	for (i = 0; i < ARRAY_SIZE(compared_flags); i++) {
		__u32 bit = compared_flags[i].bit;

		if (!(e->flags & bit) == !(k->flags & bit))
			continue;
		if (bit == PINFUZZ_PAGE_MAYBE_DMA_PINNED && (e->flags & PINFUZZ_PAGE_ZERO))
			continue;
		diff(step, "%s: %s expected %s, got %s", where, compared_flags[i].name,
		     e->flags & bit ? "true" : "false", k->flags & bit ? "true" : "false");
	}
	if (e->order != k->order)
		diff(step, "%s: order expected %u, got %u", where, e->order, k->order);
	if (e->pincount != k->pincount)
		diff(step, "%s: pincount expected %d, got %d", where, e->pincount, k->pincount);
	if (zero)
		return;
	if (e->refcount != k->refcount)
		diff(step, "%s: refcount expected %d, got %d", where, e->refcount, k->refcount);
	if (e->mapcount != k->mapcount)
		diff(step, "%s: mapcount expected %d, got %d", where, e->mapcount, k->mapcount);
	if (e->folio_mapcount != k->folio_mapcount)
		diff(step, "%s: folio_mapcount expected %d, got %d", where,
		     e->folio_mapcount, k->folio_mapcount);
}

static void check_pages(int step, const char *name, const struct exp_run *runs,
			int nruns)
{
	char where[64];
	unsigned int p = 0, j;
	int r;

	for (r = 0; r < nruns; r++) {
		for (j = 0; j < runs[r].count; j++, p++) {
			snprintf(where, sizeof(where), "%s[%u]", name, p);
			check_page(step, where, &runs[r], j, &info[p]);
		}
	}
}

static const char *proc_name(int proc, char *buf, size_t len)
{
	if (!proc)
		return "parent";
	snprintf(buf, len, "c%d", proc - 1);
	return buf;
}

static const char *errno_name(int e)
{
	static char buf[32];

	switch (e) {
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case ESRCH: return "ESRCH";
	case EINTR: return "EINTR";
	case EIO: return "EIO";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case EINVAL: return "EINVAL";
	case ENOSPC: return "ENOSPC";
	case ENOTTY: return "ENOTTY";
	case EHWPOISON: return "EHWPOISON";
	}
	snprintf(buf, sizeof(buf), "errno %d", e);
	return buf;
}

static const char *res_text(const struct res *r, char *buf, size_t len)
{
	switch (r->kind) {
	case RES_OK:
		return "0";
	case RES_TOUCHED:
		return "every page touched";
	case RES_SEGV:
		snprintf(buf, len, "SIGSEGV at page %lld of the range", r->val);
		return buf;
	case RES_PAGES:
		snprintf(buf, len, "%lld pages", r->val);
		return buf;
	default:
		snprintf(buf, len, "-%s", errno_name(r->val));
		return buf;
	}
}

/* Observe after step n, compare with e, print the step's TAP line. */
static __maybe_unused void check_step(int n, const struct res *r, const struct exp_step *e)
{
	char a[64], b[64], name[48], pb[8];
	int i, h;

	step_diffs = 0;
	drain();
	read_vmstat(counter_names, NR_COUNTERS, now);
	if (poisoned < 0 && e->thp_fault &&
	    now[3] - base[3] > e->vmstat[3])
		poisoned = n;
	if (poisoned >= 0) {
		/* Keep observing: it is part of what the program does. */
		for (i = 0; i < e->nmaps; i++)
			query_range(&e->maps[i]);
		for (h = 0; h < MAX_HANDLES; h++)
			if (held[h])
				query_handle(h);
		ksft_test_result_skip("step %d: %s: the kernel fell back to small pages at "
				      "step %d (thp_fault_fallback): not comparable\n",
				      n, e->text, poisoned);
		return;
	}
	if (r->kind != e->result.kind || r->val != e->result.val)
		diff(n, "result expected %s, got %s", res_text(&e->result, a, sizeof(a)),
		     res_text(r, b, sizeof(b)));
	for (i = 0; i < NR_COUNTERS - 1; i++)
		if (now[i] - base[i] != e->vmstat[i])
			diff(n, "vmstat %s expected +%llu, got +%llu", counter_names[i],
			     (unsigned long long)e->vmstat[i],
			     (unsigned long long)(now[i] - base[i]));
	for (i = 0; i < e->nmaps; i++) {
		const struct obs_map *m = &e->maps[i];

		query_range(m);
		snprintf(name, sizeof(name), "%s m%d", proc_name(m->proc, pb, sizeof(pb)), m->map);
		check_pages(n, name, m->runs, m->nruns);
	}
	/* Handles by number: the kernel's live ones against the model's. */
	for (h = 0, i = 0; h < MAX_HANDLES; h++) {
		const struct obs_handle *x = NULL;

		if (i < e->nhandles && e->handles[i].handle == h)
			x = &e->handles[i++];
		if (!x && !held[h])
			continue;
		snprintf(name, sizeof(name), "handle %d", h);
		if (!x) {
			query_handle(h);
			diff(n, "%s: the kernel holds %u pages, the model expects none", name,
			     held[h]);
			continue;
		}
		if (held[h] != x->pages) {
			diff(n, "%s: expected %u pages held, the kernel holds %u", name,
			     x->pages, held[h]);
			if (held[h])
				query_handle(h);
			continue;
		}
		query_handle(h);
		check_pages(n, name, x->runs, x->nruns);
	}
	if (step_diffs)
		ksft_test_result_fail("- step %d: %s: %s\n", n, e->text, first_diff);
	else
		ksft_test_result_pass("- step %d: %s\n", n, e->text);
	for (i = 0; i < e->nfreed; i++)
		forget(e->freed[i]);
}

/*
 * After the device is closed and every process of the program is gone:
 * every pin the kernel counted must have been released, and the module
 * must hold nothing.
 */
static void check_reset(const __u64 *pins_before)
{
	struct pinfuzz_status st;
	__u64 pins[2], d[NR_DISTURB];
	int fd, i;

	read_vmstat(counter_names, 2, pins);
	read_vmstat(disturb_names, NR_DISTURB, d);
	for (i = 0; i < NR_DISTURB; i++)
		if (d[i] != disturb_base[i])
			ksft_print_msg("warning: %s moved by %llu during the program: pages "
				       "moved behind its back, results may be void\n",
				       disturb_names[i],
				       (unsigned long long)(d[i] - disturb_base[i]));
	fd = open("/dev/pinfuzz", O_RDWR | O_CLOEXEC);
	if (fd < 0 || ioctl(fd, PINFUZZ_IOC_STATUS, &st))
		die("PINFUZZ_IOC_STATUS on a fresh /dev/pinfuzz: %s", strerror(errno));
	close(fd);
	if (pins[0] - pins_before[0] != pins[1] - pins_before[1] || st.pages_held_total)
		ksft_test_result_fail("- reset: after close, nr_foll_pin_acquired +%llu, "
				      "nr_foll_pin_released +%llu, module holds %llu pages\n",
				      (unsigned long long)(pins[0] - pins_before[0]),
				      (unsigned long long)(pins[1] - pins_before[1]),
				      (unsigned long long)st.pages_held_total);
	else
		ksft_test_result_pass("- reset: every pin released after close "
				      "(nr_foll_pin_acquired = released = +%llu)\n",
				      (unsigned long long)(pins[0] - pins_before[0]));
}
