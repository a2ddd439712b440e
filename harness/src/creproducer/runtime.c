/*
 * The pinfuzz executor, in C: every operation makes the same syscalls and
 * helper-module ioctls as harness/src/exec/ (docs/executor.md), and every
 * observation reads the same state in the same order.
 *
 * Processes.  This process is the "parent" of the program.  A forked child
 * ("cN") is a synchronous command server: the parent writes one struct cmd
 * to its pipe, the child runs it with the same do_cmd() the parent uses and
 * writes back one struct res.  Nothing runs in a child while the parent
 * observes.  Children inherit the open /dev/pinfuzz: the module's handle
 * table is per open file, so handles a child takes are queried and may be
 * released by any process, and outlive the child's exit.
 *
 * Touch.  One volatile byte load, or store of 0x5a, per page, in order.  A
 * page whose access faults stops the touch; the SIGSEGV is caught and the
 * touch reports the page ("Segv at N").  The fault is raised before
 * handle_mm_fault() (no VMA, or access_error() on x86), so it changes no
 * page state: the executor instead predicts the fault from its record of
 * the mappings and never takes it, with the same effect.  Stores are
 * non-zero so that a written page is never mistaken for a zero-filled one
 * when a THP is split (6.12 maps zero-filled subpages to the zero page).
 *
 * Observation after every step: an LRU drain (MADV_DONTNEED on a private
 * page that is never faulted: zap_page_range_single() starts with
 * lru_add_drain(); the process is pinned to one CPU so the drain covers
 * every page it and its children fault), then "1" to
 * /proc/sys/vm/stat_refresh and the counters of /proc/vmstat (deltas since
 * the baseline taken before the first step), then PINFUZZ_IOC_QUERY_RANGE
 * for every mapping of every live process and PINFUZZ_IOC_QUERY_HANDLE for
 * every live handle.
 */
#define __maybe_unused		__attribute__((unused))
#define ARRAY_SIZE(a)		(sizeof(a) / sizeof((a)[0]))

#define PS			4096UL
#define MAX_PROCS		5	/* the parent and 4 children */
#define MAX_HANDLES		64
#define NR_COUNTERS		9
#define NR_DISTURB		6

enum {
	CMD_MMAP = 1, CMD_MUNMAP, CMD_MPROTECT, CMD_MADVISE, CMD_TOUCH,
	CMD_GUP, CMD_RELEASE, CMD_EXIT,
};

/* Mapping kinds, as the program language names them. */
enum {
	ANON_PRIVATE, ANON_SHARED, MEMFD_SHARED, MEMFD_PRIVATE,
};

struct cmd {
	int op;			/* CMD_* */
	int arg;		/* prot, advice, kind or "write" */
	__u64 addr;
	__u64 pages;
	__u32 api;		/* PINFUZZ_API_* */
	__u32 flags;		/* PINFUZZ_FOLL_* or PINFUZZ_RELEASE_* */
	__u32 handle;		/* module handle to release */
	__s32 pid;		/* remote GUP target, 0 = caller */
	int prot;		/* mmap protection */
};

/* An operation's result, as the program sees it. */
enum {
	RES_OK, RES_TOUCHED, RES_SEGV, RES_PAGES, RES_ERRNO,
};

struct res {
	int kind;		/* RES_* */
	__u32 handle;		/* module handle of a GUP that returned pages */
	long long val;		/* SEGV: page; PAGES: count; ERRNO: errno */
};

static const char *const counter_names[NR_COUNTERS] = {
	"nr_foll_pin_acquired", "nr_foll_pin_released", "thp_fault_alloc",
	"thp_fault_fallback", "thp_split_pmd", "thp_split_page",
	"thp_split_page_failed", "thp_deferred_split_page",
	"thp_zero_page_alloc",
};

/*
 * Counters that move only when something outside the program moved,
 * collapsed, compacted or swapped pages: a run where they moved proves
 * nothing either way.
 */
static const char *const disturb_names[NR_DISTURB] = {
	"pgmigrate_success", "thp_migration_success", "thp_collapse_alloc",
	"compact_stall", "pswpout", "thp_underused_split_page",
};

static pid_t pids[MAX_PROCS];		/* 0: this program's parent */
static int dev_fd = -1;
static int split_fd = -1;
static int refresh_fd = -1;
static int vmstat_fd = -1;
static void *drain_page;
static int cmd_fd[MAX_PROCS];
static int res_fd[MAX_PROCS];
static __u32 mod_handle[MAX_HANDLES];	/* the module's number; 0: none */
static __u32 held[MAX_HANDLES];		/* pages a live handle holds */
static __u64 base[NR_COUNTERS];
static __u64 now[NR_COUNTERS];
static __u64 disturb_base[NR_DISTURB];
static struct pinfuzz_page_info info[PINFUZZ_MAX_PAGES_PER_CALL];
static char vmstat_text[32768];

static pid_t main_pid;			/* the process main() runs in */

/*
 * The executor itself failed (not the kernel under test): bail out.  A
 * forked command server only reports it and exits; the process that
 * waits for its answer then bails out.
 */
static __noreturn __printf(1, 2) void die(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (getpid() != main_pid && getpid() != pids[0]) {
		fprintf(stderr, "pinfuzz child %d: %s\n", getpid(), msg);
		_exit(1);
	}
	ksft_exit_fail_msg("%s\n", msg);
}

/* Read a sysfs/procfs file into buf (trimmed); -1 if it cannot be read. */
static int read_file(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -1;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		n--;
	buf[n] = '\0';
	return 0;
}

/* The selected word of "always [madvise] never", or the whole value. */
static const char *knob_value(char *text)
{
	char *open = strchr(text, '['), *close = strchr(text, ']');

	if (open && close && open < close) {
		*close = '\0';
		return open + 1;
	}
	return text;
}

/* Settings this program changed, restored at exit. */
static struct {
	char path[160];
	char old[256];
} saved[64];
static int nr_saved;

/*
 * Write value to path if it differs from what the file reports, and check
 * that it took.  A file this kernel does not have is skipped unless
 * required (6.1 has no per-size mTHP controls and no shrink_underused).
 */
static void set_knob(const char *path, const char *value, int required)
{
	char text[256];
	const char *cur;
	int fd, ok;

	if (read_file(path, text, sizeof(text))) {
		if (required)
			ksft_exit_skip("cannot read %s: %s\n", path, strerror(errno));
		return;
	}
	cur = knob_value(text);
	if (!strcmp(cur, value))
		return;
	if (nr_saved < (int)ARRAY_SIZE(saved)) {
		snprintf(saved[nr_saved].path, sizeof(saved[0].path), "%s", path);
		snprintf(saved[nr_saved].old, sizeof(saved[0].old), "%s", cur);
		nr_saved++;
	}
	fd = open(path, O_WRONLY);
	ok = fd >= 0 && write(fd, value, strlen(value)) == (ssize_t)strlen(value);
	if (fd >= 0)
		close(fd);
	if (!ok || read_file(path, text, sizeof(text)) ||
	    strcmp(knob_value(text), value))
		die("cannot set %s to %s (needs root)", path, value);
}

static __maybe_unused void restore_knobs(void)
{
	int fd;

	if (getpid() != main_pid)
		return;
	while (nr_saved > 0) {
		nr_saved--;
		fd = open(saved[nr_saved].path, O_WRONLY);
		if (fd < 0)
			continue;
		if (write(fd, saved[nr_saved].old, strlen(saved[nr_saved].old)) < 0)
			ksft_print_msg("could not restore %s to %s\n",
				       saved[nr_saved].path, saved[nr_saved].old);
		close(fd);
	}
}

#define THP_DIR "/sys/kernel/mm/transparent_hugepage"

/*
 * The settings pinfuzz runs every program under (harness/src/exec/settings.rs:
 * prepare_guest): nothing may move, collapse or split the program's pages
 * behind its back, and only order-0 and PMD-sized folios may appear.
 */
static __maybe_unused void fixed_settings(void)
{
	char path[320], text[64];
	unsigned long pmd_kb;
	struct dirent *de;
	DIR *dir;

	if (access(THP_DIR, F_OK))
		ksft_exit_skip("%s: this kernel has no transparent hugepages\n", THP_DIR);
	set_knob(THP_DIR "/defrag", "never", 1);
	set_knob(THP_DIR "/shmem_enabled", "never", 1);
	if (read_file(THP_DIR "/hpage_pmd_size", text, sizeof(text)))
		die("read %s/hpage_pmd_size: %s", THP_DIR, strerror(errno));
	pmd_kb = strtoul(text, NULL, 10) / 1024;
	dir = opendir(THP_DIR);
	if (!dir)
		die("opendir %s: %s", THP_DIR, strerror(errno));
	while ((de = readdir(dir))) {
		unsigned long kb;
		const char *v;

		if (sscanf(de->d_name, "hugepages-%lukB", &kb) != 1)
			continue;
		v = kb == pmd_kb ? "inherit" : "never";
		snprintf(path, sizeof(path), "%s/%s/enabled", THP_DIR, de->d_name);
		set_knob(path, v, 0);
		snprintf(path, sizeof(path), "%s/%s/shmem_enabled", THP_DIR, de->d_name);
		set_knob(path, v, 0);
	}
	closedir(dir);
	set_knob(THP_DIR "/shrink_underused", "0", 0);
	set_knob(THP_DIR "/khugepaged/pages_to_scan", "1", 1);
	set_knob(THP_DIR "/khugepaged/max_ptes_none", "0", 1);
	set_knob(THP_DIR "/khugepaged/max_ptes_swap", "0", 1);
	set_knob(THP_DIR "/khugepaged/max_ptes_shared", "0", 1);
	set_knob(THP_DIR "/khugepaged/defrag", "0", 1);
	set_knob(THP_DIR "/khugepaged/alloc_sleep_millisecs", "4294967295", 1);
	set_knob(THP_DIR "/khugepaged/scan_sleep_millisecs", "4294967295", 1);
	set_knob("/proc/sys/vm/compaction_proactiveness", "0", 0);
	set_knob("/proc/sys/vm/watermark_boost_factor", "0", 0);
	set_knob("/proc/sys/kernel/numa_balancing", "0", 0);
}

/* The program header's settings. */
static __maybe_unused void program_settings(const char *thp, int use_zero_page)
{
	set_knob(THP_DIR "/enabled", thp, 1);
	set_knob(THP_DIR "/use_zero_page", use_zero_page ? "1" : "0", 1);
}

/* Fold the per-CPU counter deltas, then read /proc/vmstat. */
static void read_vmstat(const char *const *names, int n, __u64 *out)
{
	size_t len = 0;
	ssize_t got;
	char *line;
	int i;

	if (pwrite(refresh_fd, "1", 1, 0) != 1)
		die("write 1 to /proc/sys/vm/stat_refresh: %s", strerror(errno));
	for (;;) {
		if (len == sizeof(vmstat_text) - 1)
			die("/proc/vmstat is larger than %zu bytes", len);
		got = pread(vmstat_fd, vmstat_text + len,
			    sizeof(vmstat_text) - 1 - len, len);
		if (got < 0)
			die("read /proc/vmstat: %s", strerror(errno));
		if (!got)
			break;
		len += got;
	}
	vmstat_text[len] = '\0';
	for (i = 0; i < n; i++)
		out[i] = 0;
	for (line = vmstat_text; line && *line; line = strchr(line, '\n')) {
		char *sp;

		if (*line == '\n')
			line++;
		sp = strchr(line, ' ');
		if (!sp)
			break;
		for (i = 0; i < n; i++) {
			size_t l = strlen(names[i]);

			if ((size_t)(sp - line) == l && !strncmp(line, names[i], l))
				out[i] = strtoull(sp + 1, NULL, 10);
		}
	}
}

static void open_counters(void)
{
	if (refresh_fd >= 0)
		return;
	refresh_fd = open("/proc/sys/vm/stat_refresh", O_WRONLY);
	if (refresh_fd < 0)
		ksft_exit_skip("open /proc/sys/vm/stat_refresh: %s (needs root)\n",
			       strerror(errno));
	vmstat_fd = open("/proc/vmstat", O_RDONLY);
	if (vmstat_fd < 0)
		die("open /proc/vmstat: %s", strerror(errno));
}

/* Drain this CPU's LRU folio batches (see the top of this section). */
static void drain(void)
{
	if (madvise(drain_page, PS, MADV_DONTNEED))
		die("madvise(MADV_DONTNEED) on the LRU drain page: %s", strerror(errno));
}

/*
 * Keep this process's own memory free of THPs, whose faults and splits
 * would count in the program's thp_* counters: mark every anonymous
 * mapping MADV_NOHUGEPAGE, then clear PR_SET_THP_DISABLE (inherited from
 * the pinfuzz guest agent, which sets it on itself; it survives execve) so
 * that the program's own mappings may get THPs.
 */
static void thp_hygiene(__u64 arena_lo, __u64 arena_hi)
{
	char line[512];
	FILE *maps;

	maps = fopen("/proc/self/maps", "r");
	if (!maps)
		die("open /proc/self/maps: %s", strerror(errno));
	while (fgets(line, sizeof(line), maps)) {
		unsigned long s, e;
		char path[256] = "";

		if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %255s", &s, &e, path) < 2)
			continue;
		if (s < arena_hi && e > arena_lo)
			die("this program's own mapping %lx-%lx lies in the arena", s, e);
		if (path[0] && strcmp(path, "[heap]") && strncmp(path, "[stack", 6) &&
		    strncmp(path, "[anon", 5))
			continue;
		if ((void *)s == drain_page)
			continue;
		if (madvise((void *)s, e - s, MADV_NOHUGEPAGE))
			die("madvise(MADV_NOHUGEPAGE) on %lx-%lx: %s", s, e, strerror(errno));
	}
	fclose(maps);
	if (prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0))
		die("prctl(PR_SET_THP_DISABLE, 0): %s", strerror(errno));
}

static void pin_to_this_cpu(void)
{
	cpu_set_t set;
	int cpu = sched_getcpu();

	if (cpu < 0)
		die("sched_getcpu: %s", strerror(errno));
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		die("sched_setaffinity to CPU %d: %s", cpu, strerror(errno));
}

static sigjmp_buf touch_env;
static volatile sig_atomic_t touching;

static void on_fault(int sig)
{
	static const char msg[] = "pinfuzz: unexpected fault outside a touch\n";

	if (touching)
		siglongjmp(touch_env, sig);
	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(86);
	_exit(86);
}

static void do_touch(__u64 addr, __u64 pages, int write_, struct res *r)
{
	volatile __u64 i = 0;
	int sig;

	sig = sigsetjmp(touch_env, 1);
	if (sig) {
		touching = 0;
		if (sig != SIGSEGV)
			die("touch of page %llu at 0x%llx: signal %d (memfds are sized to "
			    "their mappings: SIGBUS should be impossible)",
			    (unsigned long long)i, (unsigned long long)(addr + i * PS), sig);
		r->kind = RES_SEGV;
		r->val = i;
		return;
	}
	touching = 1;
	for (; i < pages; i++) {
		volatile char *p = (volatile char *)(unsigned long)(addr + i * PS);

		if (write_)
			*p = 0x5a;
		else
			(void)*p;
	}
	touching = 0;
	r->kind = RES_TOUCHED;
}

static void do_mmap(const struct cmd *c, struct res *r)
{
	size_t len = c->pages * PS;
	int flags = MAP_FIXED_NOREPLACE, fd = -1, err;
	void *got;

	flags |= (c->arg == ANON_SHARED || c->arg == MEMFD_SHARED) ?
		 MAP_SHARED : MAP_PRIVATE;
	if (c->arg == ANON_PRIVATE || c->arg == ANON_SHARED) {
		flags |= MAP_ANONYMOUS;
	} else {
		fd = memfd_create("pinfuzz", MFD_CLOEXEC);
		if (fd < 0)
			goto fail;
		/* No page of the mapping lies past EOF: no SIGBUS. */
		if (ftruncate(fd, len)) {
			err = errno;
			close(fd);
			errno = err;
			goto fail;
		}
	}
	got = mmap((void *)(unsigned long)c->addr, len, c->prot, flags, fd, 0);
	err = errno;
	if (fd >= 0)
		close(fd);
	errno = err;
	if (got == MAP_FAILED)
		goto fail;
	if ((unsigned long)got != c->addr)
		die("mmap(0x%llx, MAP_FIXED_NOREPLACE) returned %p: this kernel "
		    "ignores MAP_FIXED_NOREPLACE", (unsigned long long)c->addr, got);
	r->kind = RES_OK;
	return;
fail:
	r->kind = RES_ERRNO;
	r->val = errno;
}

static void do_gup(const struct cmd *c, struct res *r)
{
	struct pinfuzz_gup g = {
		.addr = c->addr,
		.nr_pages = c->pages,
		.api = c->api,
		.gup_flags = c->flags,
		.pid = c->pid,
	};

	if (ioctl(dev_fd, PINFUZZ_IOC_GUP, &g)) {
		/* The module's own refusal (kmod/pinfuzz.h) is a result too. */
		r->kind = RES_ERRNO;
		r->val = errno;
		return;
	}
	if (g.ret > 0 && ((__u64)g.ret > c->pages || !g.handle))
		die("PINFUZZ_IOC_GUP returned ret=%lld handle=%u for %llu pages",
		    (long long)g.ret, g.handle, (unsigned long long)c->pages);
	if (g.ret >= 0) {
		r->kind = RES_PAGES;
		r->val = g.ret;
		r->handle = g.ret > 0 ? g.handle : 0;
	} else {
		r->kind = RES_ERRNO;
		r->val = -g.ret;
	}
}

/* Run one command in this process. */
static void do_cmd(const struct cmd *c, struct res *r)
{
	struct pinfuzz_release rel;
	void *addr = (void *)(unsigned long)c->addr;
	size_t len = c->pages * PS;
	int rc = 0;

	memset(r, 0, sizeof(*r));
	switch (c->op) {
	case CMD_MMAP:
		do_mmap(c, r);
		return;
	case CMD_MUNMAP:
		rc = munmap(addr, len);
		break;
	case CMD_MPROTECT:
		rc = mprotect(addr, len, c->arg);
		break;
	case CMD_MADVISE:
		rc = madvise(addr, len, c->arg);
		break;
	case CMD_TOUCH:
		do_touch(c->addr, c->pages, c->arg, r);
		return;
	case CMD_GUP:
		do_gup(c, r);
		return;
	case CMD_RELEASE:
		rel.handle = c->handle;
		rel.flags = c->flags;
		rc = ioctl(dev_fd, PINFUZZ_IOC_RELEASE, &rel);
		break;
	default:
		die("unknown command %d", c->op);
	}
	r->kind = rc ? RES_ERRNO : RES_OK;
	r->val = rc ? errno : 0;
}

static int full_read(int fd, void *buf, size_t len)
{
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = read(fd, (char *)buf + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		done += n;
	}
	return 0;
}

/* A child's life: serve commands until CMD_EXIT. */
static __noreturn void serve(int cmds, int results)
{
	struct cmd c;
	struct res r;

	for (;;) {
		if (full_read(cmds, &c, sizeof(c)))
			_exit(1);	/* the parent is gone */
		if (c.op == CMD_EXIT)
			_exit(0);
		do_cmd(&c, &r);
		if (write(results, &r, sizeof(r)) != sizeof(r))
			_exit(1);
	}
}

/* Run a command in process proc (0: this one). */
static void run(int proc, const struct cmd *c, struct res *r)
{
	if (!proc) {
		do_cmd(c, r);
		return;
	}
	if (write(cmd_fd[proc], c, sizeof(*c)) != sizeof(*c) ||
	    full_read(res_fd[proc], r, sizeof(*r)))
		die("child c%d (pid %d) did not answer", proc - 1, pids[proc]);
}

static void fork_child(int proc)
{
	int to[2], from[2], i;
	char ready;
	pid_t pid;

	if (pipe2(to, O_CLOEXEC) || pipe2(from, O_CLOEXEC))
		die("pipe2: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (!pid) {
		/* Only for die(): this process is not the program's parent. */
		pids[0] = 0;
		for (i = 1; i < MAX_PROCS; i++) {
			if (pids[i]) {
				close(cmd_fd[i]);
				close(res_fd[i]);
			}
		}
		close(to[1]);
		close(from[0]);
		if (write(from[1], "r", 1) != 1)
			_exit(1);
		serve(to[0], from[1]);
	}
	close(to[0]);
	close(from[1]);
	pids[proc] = pid;
	cmd_fd[proc] = to[1];
	res_fd[proc] = from[0];
	if (full_read(from[0], &ready, 1))
		die("child c%d (pid %d) did not start", proc - 1, pid);
}

/* The child _exit()s; returns once it is reaped (its mm is gone). */
static void exit_child(int proc)
{
	struct cmd c = { .op = CMD_EXIT };
	int status;

	if (write(cmd_fd[proc], &c, sizeof(c)) != sizeof(c))
		die("child c%d (pid %d) is gone", proc - 1, pids[proc]);
	if (waitpid(pids[proc], &status, 0) != pids[proc])
		die("waitpid for child c%d: %s", proc - 1, strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		die("child c%d ended with status 0x%x", proc - 1, status);
	close(cmd_fd[proc]);
	close(res_fd[proc]);
	pids[proc] = 0;
}

/* The operations, as the program language names them. */
static __maybe_unused struct res op_mmap(int proc, __u64 addr, __u64 pages, int kind, int prot)
{
	struct cmd c = { .op = CMD_MMAP, .addr = addr, .pages = pages,
			 .arg = kind, .prot = prot };
	struct res r;

	run(proc, &c, &r);
	return r;
}

static __maybe_unused struct res op_range(int proc, int op, __u64 addr, __u64 pages, int arg)
{
	struct cmd c = { .op = op, .addr = addr, .pages = pages, .arg = arg };
	struct res r;

	run(proc, &c, &r);
	return r;
}

#define op_munmap(proc, addr, pages) op_range(proc, CMD_MUNMAP, addr, pages, 0)
#define op_mprotect(proc, addr, pages, prot) \
	op_range(proc, CMD_MPROTECT, addr, pages, prot)
#define op_madvise(proc, addr, pages, advice) \
	op_range(proc, CMD_MADVISE, addr, pages, advice)
#define op_touch(proc, addr, pages, write_) \
	op_range(proc, CMD_TOUCH, addr, pages, write_)

/* GUP from proc; target: the process whose mm a *_remote call works on. */
static __maybe_unused struct res op_gup(int proc, int handle, __u32 api,
					__u64 addr, __u64 pages, __u32 foll,
					int target)
{
	struct cmd c = { .op = CMD_GUP, .addr = addr, .pages = pages,
			 .api = api, .flags = foll };
	struct res r;

	if (target >= 0)
		c.pid = pids[target];
	run(proc, &c, &r);
	mod_handle[handle] = r.handle;
	held[handle] = r.kind == RES_PAGES ? r.val : 0;
	return r;
}

/*
 * A handle whose GUP returned no pages goes to the module as handle 0,
 * which it never hands out, and a released one under its old number
 * (handles are not reused soon): both get ENOENT, as the model predicts.
 */
static __maybe_unused struct res op_release(int proc, int handle, __u32 flags)
{
	struct cmd c = { .op = CMD_RELEASE, .handle = mod_handle[handle],
			 .flags = flags };
	struct res r;

	run(proc, &c, &r);
	if (r.kind == RES_OK)
		held[handle] = 0;
	return r;
}

/* "<pid>,0x<start>,0x<end>" to split_huge_pages, from this process. */
static __maybe_unused struct res op_split(int proc, __u64 addr, __u64 pages)
{
	struct res r = { .kind = RES_OK };
	char line[96];
	int len;

	if (split_fd < 0)
		die("split_huge_pages is not open");
	len = snprintf(line, sizeof(line), "%d,0x%llx,0x%llx", pids[proc],
		       (unsigned long long)addr,
		       (unsigned long long)(addr + pages * PS));
	if (pwrite(split_fd, line, len, 0) < 0) {
		r.kind = RES_ERRNO;
		r.val = errno;
	}
	return r;
}

static __maybe_unused struct res op_fork(int child)
{
	struct res r = { .kind = RES_OK };

	fork_child(1 + child);
	return r;
}

static __maybe_unused struct res op_exit(int child)
{
	struct res r = { .kind = RES_OK };

	exit_child(1 + child);
	return r;
}

/* One mapping of one process, as observed after a step. */
struct obs_map {
	unsigned char proc;		/* 0: parent, 1 + N: child cN */
	unsigned char map;		/* mN */
	unsigned short pages;		/* its length when created */
	__u64 addr;
	unsigned short nruns;		/* expected pages, run-length coded */
	const struct exp_run *runs;
};

/* A live handle, as the model expects it after a step. */
struct obs_handle {
	unsigned short handle;		/* gN / pN */
	unsigned short pages;
	unsigned short nruns;
	const struct exp_run *runs;
};

/* Short names of the page flags the model predicts, for the tables. */
#define PRESENT		PINFUZZ_PAGE_PRESENT
#define ANON		PINFUZZ_PAGE_ANON
#define EXCL		PINFUZZ_PAGE_ANON_EXCLUSIVE
#define ZERO		PINFUZZ_PAGE_ZERO
#define HZERO		PINFUZZ_PAGE_HUGE_ZERO
#define PINNED		PINFUZZ_PAGE_MAYBE_DMA_PINNED
#define LARGE		PINFUZZ_PAGE_LARGE

/*
 * Consecutive pages with the same expected state.  Page j of a run has the
 * identity slot + j * slot_step, and its folio's first page head + j *
 * head_step.  Identities are small numbers ("page 3") for the model's
 * pages: the pfn a page gets the first time it is seen is remembered, and
 * later steps expect the same pfn ("same page") or one no other page has
 * ("different page").  0: not present.
 */
struct exp_run {
	unsigned short count;
	short slot_step, head_step;
	unsigned int slot, head;
	int refcount, mapcount, folio_mapcount, pincount;
	unsigned int order, flags;
};

/* What to observe after a step, and what the model expects to see. */
struct exp_step {
	const char *text;		/* the step, as pinfuzz prints it */
	struct res result;
	__u64 vmstat[NR_COUNTERS];	/* since the program started */
	unsigned char nmaps;
	const struct obs_map *maps;
	unsigned char nhandles;
	const struct obs_handle *handles;
	/* The model allocated a THP or mapped the huge zero folio here. */
	unsigned char thp_fault;
	unsigned short nfreed;		/* pages the model freed (pfns may be reused) */
	const unsigned int *freed;
};

static void query_range(const struct obs_map *m)
{
	struct pinfuzz_query q = {
		.addr = m->addr,
		.nr_pages = m->pages,
		.info_ptr = (unsigned long)info,
		.pid = m->proc ? pids[m->proc] : 0,
	};

	if (ioctl(dev_fd, PINFUZZ_IOC_QUERY_RANGE, &q))
		die("PINFUZZ_IOC_QUERY_RANGE m%d of %s%d: %s", m->map,
		    m->proc ? "c" : "parent", m->proc ? m->proc - 1 : 0,
		    strerror(errno));
}

static void query_handle(int h)
{
	struct pinfuzz_query q = {
		.nr_pages = held[h],
		.info_ptr = (unsigned long)info,
		.handle = mod_handle[h],
	};

	if (ioctl(dev_fd, PINFUZZ_IOC_QUERY_HANDLE, &q))
		die("PINFUZZ_IOC_QUERY_HANDLE of handle %d (module handle %u, %u pages): %s",
		    h, mod_handle[h], held[h], strerror(errno));
}

/*
 * Setup of the process that runs a program, as the executor's runner does
 * it: pinned to one CPU, the device open (ABI checked), split_huge_pages
 * open if the program splits, the drain page, THP hygiene, the counter
 * baseline.
 */
static __maybe_unused void setup(int splits, __u64 arena_lo, __u64 arena_hi)
{
	struct pinfuzz_status st;
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_fault;
	if (sigaction(SIGSEGV, &sa, NULL) || sigaction(SIGBUS, &sa, NULL))
		die("sigaction: %s", strerror(errno));
	pin_to_this_cpu();
	dev_fd = open("/dev/pinfuzz", O_RDWR | O_CLOEXEC);
	if (dev_fd < 0)
		ksft_exit_skip("open /dev/pinfuzz: %s (load the pinfuzz helper module: "
			       "insmod pinfuzz.ko)\n", strerror(errno));
	if (ioctl(dev_fd, PINFUZZ_IOC_STATUS, &st))
		die("PINFUZZ_IOC_STATUS: %s", strerror(errno));
	if (st.abi_version != PINFUZZ_ABI_VERSION)
		die("/dev/pinfuzz speaks ABI %u, this program ABI %d",
		    st.abi_version, PINFUZZ_ABI_VERSION);
	if (splits) {
		split_fd = open("/sys/kernel/debug/split_huge_pages", O_WRONLY | O_CLOEXEC);
		if (split_fd < 0)
			ksft_exit_skip("open /sys/kernel/debug/split_huge_pages: %s "
				       "(is debugfs mounted?)\n", strerror(errno));
	}
	drain_page = mmap(NULL, PS, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (drain_page == MAP_FAILED)
		die("mmap the LRU drain page: %s", strerror(errno));
	open_counters();
	thp_hygiene(arena_lo, arena_hi);
	pids[0] = getpid();
	drain();
	read_vmstat(disturb_names, NR_DISTURB, disturb_base);
	read_vmstat(counter_names, NR_COUNTERS, base);
}

/* Children that still run exit, then the device is closed. */
static __maybe_unused void teardown(void)
{
	int i;

	for (i = 1; i < MAX_PROCS; i++)
		if (pids[i])
			exit_child(i);
	/* The last close releases every page the program still holds. */
	close(dev_fd);
	dev_fd = -1;
}

static __maybe_unused __u64 ns_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/*
 * Where the bench baseline's time goes, in ns, summed over programs (the
 * executor's RunSummary timing, for comparison).  Shared with the process
 * that forks the runners; NULL outside the bench.
 */
struct bench_times {
	__u64 setup, op, drain, counters, queries, teardown;
};

static struct bench_times *bench_times;

/* Observe after a step (drain, counters, pages); no expectations checked. */
static __maybe_unused void observe(const struct exp_step *e)
{
	__u64 t0 = ns_now(), t1, t2;
	int i;

	drain();
	t1 = ns_now();
	read_vmstat(counter_names, NR_COUNTERS, now);
	t2 = ns_now();
	for (i = 0; i < e->nmaps; i++)
		query_range(&e->maps[i]);
	for (i = 0; i < MAX_HANDLES; i++)
		if (held[i])
			query_handle(i);
	if (bench_times) {
		bench_times->drain += t1 - t0;
		bench_times->counters += t2 - t1;
		bench_times->queries += ns_now() - t2;
	}
}

/* An operation of the bench baseline, timed. */
#define BENCH_OP(call) do {					\
	__u64 t_ = ns_now();					\
	(void)(call);						\
	if (bench_times)					\
		bench_times->op += ns_now() - t_;		\
} while (0)
