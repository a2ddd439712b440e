// SPDX-License-Identifier: GPL-2.0
/*
 * Random-ioctl robustness run against /dev/pinfuzz.
 *
 *   ioctl_storm [-s SECONDS] [-j WORKERS] [-S SEED]
 *
 * WORKERS processes (default 3) share one open /dev/pinfuzz (inherited) and
 * each also opens, closes and reopens its own.  For SECONDS (default 120)
 * they issue random ioctls with random arguments -- random and valid
 * command numbers, random flag bits and reserved fields, addresses inside
 * their own mappings (anon, shared anon, memfd, THP-aligned; some
 * PROT_NONE or read-only) or anywhere, unaligned ones, the pids of
 * siblings, of init, of nobody, live, stale and invented handles, good and
 * bad info pointers -- interleaved with mmap, munmap, mprotect, madvise,
 * touches and short-lived children that pin through the shared file and
 * exit or get killed.  When the module was loaded with gup_test=1, random
 * gup_test ioctls (kmod/gup_test_abi.h) are mixed in.  Then every file is
 * closed, stat_refresh is written
 * and the program checks that nr_foll_pin_acquired == nr_foll_pin_released
 * and that the module holds no page any more.  Exit status 0 if so.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../pinfuzz.h"
#include "../gup_test_abi.h"

#define PAGE		4096UL
#define PMD_SIZE	(2UL << 20)
#define MAX_REGIONS	8
#define MAX_HANDLES	256
#define MAX_WORKERS	16
#define DEV		"/dev/pinfuzz"

struct region {
	char *addr;
	unsigned long npages;
	int prot;
};

/* Shared with the parent: who the siblings are, and what happened. */
struct shared {
	pid_t pids[MAX_WORKERS];
	int nworkers;
	unsigned long ops[MAX_WORKERS];
	unsigned long gup_ok[MAX_WORKERS];
	unsigned long errnos[MAX_WORKERS][64];
};

static struct shared *sh;
static int me;
static uint64_t rng;
static struct region regions[MAX_REGIONS];
static int shared_fd, own_fd = -1, gup_test_fd = -1;
static uint32_t handles_shared[MAX_HANDLES], handles_own[MAX_HANDLES];
static int nh_shared, nh_own;
static struct pinfuzz_page_info *info;	/* 1024 entries */
static char *ro_page;
static sigjmp_buf segv_jmp;
static volatile sig_atomic_t segvs;

static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545F4914F6CDD1DULL;
}

static unsigned long below(unsigned long n)
{
	return n ? rnd() % n : 0;
}

static bool chance(unsigned int percent)
{
	return below(100) < percent;
}

static void on_segv(int sig)
{
	(void)sig;
	segvs++;
	siglongjmp(segv_jmp, 1);
}

static void count_errno(int e)
{
	sh->errnos[me][e < 64 ? e : 63]++;
}

static void new_region(struct region *r)
{
	unsigned long npages = 1 + below(chance(20) ? 1024 : 64);
	int kind = below(4), flags = MAP_PRIVATE | MAP_ANONYMOUS, fd = -1;
	char *p;

	if (kind == 1)
		flags = MAP_SHARED | MAP_ANONYMOUS;
	if (kind == 2) {
		fd = memfd_create("storm", 0);
		if (fd < 0 || ftruncate(fd, npages * PAGE))
			kind = 0;
		else
			flags = chance(50) ? MAP_SHARED : MAP_PRIVATE;
	}
	if (kind == 3) {
		/* PMD-aligned, THP-eligible */
		npages = 512 * (1 + below(2));
		p = mmap(NULL, npages * PAGE + PMD_SIZE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return;
		r->addr = (char *)(((unsigned long)p + PMD_SIZE - 1) &
				   ~(PMD_SIZE - 1));
		/* give back the alignment slack: it would leak with the region */
		if (r->addr > p)
			munmap(p, r->addr - p);
		munmap(r->addr + npages * PAGE,
		       p + npages * PAGE + PMD_SIZE - (r->addr + npages * PAGE));
		madvise(r->addr, npages * PAGE, MADV_HUGEPAGE);
		r->npages = npages;
		r->prot = PROT_READ | PROT_WRITE;
		return;
	}
	p = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, flags,
		 kind == 2 ? fd : -1, 0);
	if (fd >= 0)
		close(fd);
	if (p == MAP_FAILED)
		return;
	r->addr = p;
	r->npages = npages;
	r->prot = PROT_READ | PROT_WRITE;
}

static void touch_region(struct region *r)
{
	volatile unsigned long n;
	unsigned long first, i;
	bool write = chance(60);
	volatile char *volatile c;

	if (!r->addr || !(r->prot & PROT_READ) ||
	    (write && !(r->prot & PROT_WRITE)))
		return;
	first = below(r->npages);
	n = 1 + below(r->npages - first);
	c = (volatile char *)r->addr + first * PAGE;
	if (sigsetjmp(segv_jmp, 1))
		return;
	for (i = 0; i < n; i++) {
		if (write)
			c[i * PAGE] = (char)i;
		else
			(void)c[i * PAGE];
	}
}

static void mm_op(void)
{
	struct region *r = &regions[below(MAX_REGIONS)];
	unsigned long first, n;
	static const int advice[] = {
		MADV_DONTNEED, MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_COLD,
		MADV_PAGEOUT, MADV_WILLNEED,
	};
	static const int prots[] = {
		PROT_NONE, PROT_READ, PROT_READ | PROT_WRITE,
	};

	if (!r->addr) {
		new_region(r);
		return;
	}
	first = below(r->npages);
	n = 1 + below(r->npages - first);
	switch (below(6)) {
	case 0:
		munmap(r->addr, r->npages * PAGE);
		r->addr = NULL;
		break;
	case 1:
		/* one protection for the whole region keeps touches safe */
		r->prot = prots[below(3)];
		mprotect(r->addr, r->npages * PAGE, r->prot);
		break;
	case 2:
		madvise(r->addr + first * PAGE, n * PAGE, advice[below(6)]);
		break;
	default:
		touch_region(r);
		break;
	}
}

static uint64_t random_addr(void)
{
	struct region *r = &regions[below(MAX_REGIONS)];
	uint64_t a;

	switch (below(10)) {
	case 0:
		return rnd();
	case 1:
		return rnd() & 0x00007ffffffff000ULL;
	case 2:
		return 0;
	case 3:
		return 0xffff888000000000ULL + (below(1 << 20) << 12);
	default:
		if (!r->addr)
			return (uint64_t)(uintptr_t)ro_page;
		a = (uint64_t)(uintptr_t)r->addr + below(r->npages + 4) * PAGE;
		if (chance(3))
			a += 1 + below(PAGE - 1);
		if (chance(5))
			a -= PAGE * below(8);
		return a;
	}
}

static uint64_t random_nr(void)
{
	switch (below(10)) {
	case 0:
		return rnd();
	case 1:
		return 0;
	case 2:
		return PINFUZZ_MAX_PAGES_PER_CALL - 2 + below(4);
	case 3:
		return 1 + below(PINFUZZ_MAX_PAGES_PER_CALL);
	default:
		return 1 + below(16);
	}
}

static int32_t random_pid(bool remote)
{
	if (!remote && chance(95))
		return 0;
	switch (below(8)) {
	case 0:
		return 1;
	case 1:
		return -(int32_t)below(5);
	case 2:
		return (int32_t)rnd();
	case 3:
		return getpid();
	default:
		return chance(30) ? 0 : sh->pids[below(sh->nworkers)];
	}
}

static uint32_t random_handle(int fd)
{
	uint32_t *h = fd == shared_fd ? handles_shared : handles_own;
	int n = fd == shared_fd ? nh_shared : nh_own;

	if (n && chance(80))
		return h[below(n)];
	return chance(50) ? (uint32_t)below(2000) : (uint32_t)rnd();
}

static void remember(int fd, uint32_t handle)
{
	uint32_t *h = fd == shared_fd ? handles_shared : handles_own;
	int *n = fd == shared_fd ? &nh_shared : &nh_own;

	if (*n < MAX_HANDLES)
		h[(*n)++] = handle;
	else
		h[below(MAX_HANDLES)] = handle;
}

static void *random_argp(void *good)
{
	switch (below(40)) {
	case 0:
		return NULL;
	case 1:
		return (void *)(uintptr_t)rnd();
	case 2:
		return ro_page;
	default:
		return good;
	}
}

static void do_ioctl(int fd)
{
	static const unsigned int cmds[] = {
		PINFUZZ_IOC_GUP, PINFUZZ_IOC_GUP, PINFUZZ_IOC_GUP,
		PINFUZZ_IOC_GUP, PINFUZZ_IOC_RELEASE, PINFUZZ_IOC_RELEASE,
		PINFUZZ_IOC_RELEASE, PINFUZZ_IOC_QUERY_RANGE,
		PINFUZZ_IOC_QUERY_RANGE, PINFUZZ_IOC_QUERY_HANDLE,
		PINFUZZ_IOC_STATUS,
	};
	union {
		struct pinfuzz_gup g;
		struct pinfuzz_release r;
		struct pinfuzz_query q;
		struct pinfuzz_status s;
		unsigned char raw[128];
	} a;
	unsigned int cmd;
	unsigned long i;
	int ret;

	memset(&a, 0, sizeof(a));
	if (chance(5)) {
		/* random command numbers, also of other drivers' shapes */
		cmd = chance(50) ? (unsigned int)rnd() :
		      _IOC(below(4), PINFUZZ_IOC_MAGIC, below(16), below(128));
		for (i = 0; i < sizeof(a.raw); i++)
			a.raw[i] = rnd();
	} else {
		cmd = cmds[below(sizeof(cmds) / sizeof(cmds[0]))];
	}

	switch (cmd) {
	case PINFUZZ_IOC_GUP:
		a.g.api = chance(90) ? 1 + below(6) : (uint32_t)below(10);
		a.g.addr = random_addr();
		a.g.nr_pages = random_nr();
		a.g.gup_flags = chance(90) ?
			(uint32_t)(below(2) * PINFUZZ_FOLL_WRITE |
				   below(2) * PINFUZZ_FOLL_FORCE |
				   below(2) * PINFUZZ_FOLL_LONGTERM) :
			(uint32_t)rnd();
		a.g.pid = random_pid(a.g.api == 5 || a.g.api == 6);
		a.g.reserved0 = chance(3) ? (uint32_t)rnd() : 0;
		a.g.ret = rnd();
		a.g.handle = rnd();
		break;
	case PINFUZZ_IOC_RELEASE:
		a.r.handle = random_handle(fd);
		a.r.flags = chance(90) ? (uint32_t)below(2) : (uint32_t)rnd();
		break;
	case PINFUZZ_IOC_QUERY_RANGE:
	case PINFUZZ_IOC_QUERY_HANDLE:
		a.q.nr_pages = random_nr();
		if (cmd == PINFUZZ_IOC_QUERY_RANGE) {
			a.q.addr = random_addr();
			a.q.pid = random_pid(true);
			a.q.handle = chance(3) ? (uint32_t)rnd() : 0;
		} else {
			a.q.handle = random_handle(fd);
			a.q.addr = chance(3) ? rnd() : 0;
			a.q.pid = chance(3) ? (int32_t)rnd() : 0;
		}
		a.q.info_ptr = chance(90) ? (uint64_t)(uintptr_t)info :
			       chance(50) ? (uint64_t)(uintptr_t)ro_page : rnd();
		a.q.flags = chance(3) ? (uint32_t)rnd() : 0;
		a.q.reserved = chance(3) ? (uint32_t)rnd() : 0;
		break;
	}

	ret = ioctl(fd, cmd, random_argp(&a));
	count_errno(ret ? errno : 0);
	if (!ret && cmd == PINFUZZ_IOC_GUP && a.g.handle) {
		sh->gup_ok[me]++;
		remember(fd, a.g.handle);
	}
}

/* A random command of the kernel's gup_test ABI (module gup_test=1). */
static void gup_test_ioctl(void)
{
	static const unsigned int cmds[] = {
		GUP_FAST_BENCHMARK, PIN_FAST_BENCHMARK, PIN_LONGTERM_BENCHMARK,
		GUP_BASIC_TEST, PIN_BASIC_TEST, DUMP_USER_PAGES_TEST,
		PIN_LONGTERM_TEST_START, PIN_LONGTERM_TEST_STOP,
		PIN_LONGTERM_TEST_READ,
	};
	union {
		struct gup_test g;
		struct pin_longterm_test l;
		uint64_t u;
	} a;
	unsigned int cmd = cmds[below(sizeof(cmds) / sizeof(cmds[0]))];
	unsigned int i;
	int ret;

	if (gup_test_fd < 0)
		return;
	/* dump_page() output is slow on a serial console: rarely */
	if (cmd == DUMP_USER_PAGES_TEST && !chance(5))
		cmd = GUP_BASIC_TEST;
	memset(&a, 0, sizeof(a));
	if (cmd == PIN_LONGTERM_TEST_START) {
		a.l.addr = random_addr();
		a.l.size = chance(90) ? (1 + below(64)) * PAGE : rnd();
		a.l.flags = chance(90) ? below(4) : (uint32_t)rnd();
	} else if (cmd == PIN_LONGTERM_TEST_READ) {
		a.u = chance(80) ? (uint64_t)(uintptr_t)info : rnd();
	} else {
		a.g.addr = random_addr();
		a.g.size = chance(90) ? (1 + below(256)) * PAGE : rnd();
		a.g.nr_pages_per_call = chance(90) ? 1 + below(64) : (uint32_t)rnd();
		a.g.gup_flags = chance(80) ? (uint32_t)below(2) : (uint32_t)rnd();
		a.g.test_flags = below(2);
		for (i = 0; i < GUP_TEST_MAX_PAGES_TO_DUMP; i++)
			a.g.which_pages[i] = chance(50) ? below(300) : 0;
	}
	ret = ioctl(gup_test_fd, cmd, random_argp(&a));
	count_errno(ret ? errno : 0);
}

/* A child that pins through the shared file, then exits or is killed. */
static void short_child(void)
{
	bool killed = chance(50);
	pid_t pid = fork();
	int i;

	if (pid < 0)
		return;
	if (!pid) {
		for (i = 0; i < 8; i++)
			do_ioctl(shared_fd);
		if (killed)
			pause();
		_exit(0);
	}
	if (killed) {
		usleep(below(2000));
		kill(pid, SIGKILL);
	}
	waitpid(pid, NULL, 0);
}

static void worker(int idx, uint64_t seed, double seconds)
{
	struct timespec t0, t;
	struct sigaction sa;
	unsigned long ops = 0;

	me = idx;
	rng = seed * 0x9E3779B97F4A7C15ULL + idx + 1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_segv;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	info = mmap(NULL, 1024 * sizeof(*info), PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	own_fd = open(DEV, O_RDWR);
	gup_test_fd = open("/sys/kernel/debug/gup_test", O_RDWR);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		if ((ops & 63) == 0) {
			clock_gettime(CLOCK_MONOTONIC, &t);
			if (t.tv_sec - t0.tv_sec +
			    (t.tv_nsec - t0.tv_nsec) / 1e9 > seconds)
				break;
			sh->ops[me] = ops;
		}
		ops++;
		switch (below(100)) {
		case 0 ... 19:
			mm_op();
			break;
		case 20:
			/* close (dropping its handles) and reopen */
			if (own_fd >= 0)
				close(own_fd);
			own_fd = open(DEV, O_RDWR);
			nh_own = 0;
			break;
		case 21:
			short_child();
			break;
		case 22 ... 25:
			if (gup_test_fd >= 0) {
				gup_test_ioctl();
				break;
			}
			do_ioctl(shared_fd);
			break;
		case 26 ... 59:
			do_ioctl(shared_fd);
			break;
		default:
			do_ioctl(own_fd >= 0 ? own_fd : shared_fd);
			break;
		}
	}
	sh->ops[me] = ops;
	_exit(0);
}

static void stat_refresh(void)
{
	int fd = open("/proc/sys/vm/stat_refresh", O_WRONLY);

	if (fd < 0 || write(fd, "1", 1) != 1)
		perror("stat_refresh");
	if (fd >= 0)
		close(fd);
}

static long vmstat_item(const char *name)
{
	size_t len = strlen(name);
	char line[256];
	long val = -1;
	FILE *f = fopen("/proc/vmstat", "r");

	while (f && fgets(line, sizeof(line), f)) {
		if (!strncmp(line, name, len) && line[len] == ' ')
			val = atol(line + len + 1);
	}
	if (f)
		fclose(f);
	return val;
}

int main(int argc, char **argv)
{
	long acq0, rel0, acq1, rel1;
	double seconds = 120;
	uint64_t seed = time(NULL);
	struct pinfuzz_status st;
	unsigned long total = 0, ok = 0;
	int workers = 3, opt, i, e, fd, go[2];
	int bad = 0;

	while ((opt = getopt(argc, argv, "s:j:S:")) != -1) {
		switch (opt) {
		case 's':
			seconds = atof(optarg);
			break;
		case 'j':
			workers = atoi(optarg);
			break;
		case 'S':
			seed = strtoull(optarg, NULL, 0);
			break;
		default:
			fprintf(stderr, "usage: %s [-s SECONDS] [-j WORKERS] [-S SEED]\n",
				argv[0]);
			return 2;
		}
	}
	if (workers < 1 || workers > MAX_WORKERS)
		workers = 3;
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ioctl_storm: %d workers, %.0f s, seed %llu\n", workers, seconds,
	       (unsigned long long)seed);

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ro_page = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	shared_fd = open(DEV, O_RDWR);
	if (sh == MAP_FAILED || ro_page == MAP_FAILED || shared_fd < 0) {
		perror("ioctl_storm: setup");
		return 2;
	}
	stat_refresh();
	acq0 = vmstat_item("nr_foll_pin_acquired");
	rel0 = vmstat_item("nr_foll_pin_released");

	if (pipe(go)) {
		perror("ioctl_storm: pipe");
		return 2;
	}
	sh->nworkers = workers;
	for (i = 0; i < workers; i++) {
		pid_t pid = fork();

		if (!pid) {
			char c;

			/* wait until the parent has published every pid */
			close(go[1]);
			if (read(go[0], &c, 1) != 1)
				_exit(1);
			close(go[0]);
			worker(i, seed, seconds);
		}
		sh->pids[i] = pid;
	}
	close(go[0]);
	for (i = 0; i < workers; i++)
		if (write(go[1], "g", 1) != 1)
			perror("ioctl_storm: go");
	close(go[1]);
	for (i = 0; i < workers; i++)
		waitpid(sh->pids[i], NULL, 0);
	close(shared_fd);

	stat_refresh();
	acq1 = vmstat_item("nr_foll_pin_acquired");
	rel1 = vmstat_item("nr_foll_pin_released");
	fd = open(DEV, O_RDWR);
	memset(&st, 0xff, sizeof(st));
	e = fd >= 0 && !ioctl(fd, PINFUZZ_IOC_STATUS, &st) ? 0 : errno;
	if (fd >= 0)
		close(fd);

	for (i = 0; i < workers; i++) {
		total += sh->ops[i];
		ok += sh->gup_ok[i];
	}
	printf("ioctl_storm: %lu operations (", total);
	for (i = 0; i < workers; i++)
		printf("%s%lu", i ? " + " : "", sh->ops[i]);
	printf("), %lu GUP calls made a handle\n", ok);
	printf("ioctl_storm: ioctl results:");
	for (e = 0; e < 64; e++) {
		unsigned long n = 0;

		for (i = 0; i < workers; i++)
			n += sh->errnos[i][e];
		if (n)
			printf(" %s=%lu", e ? strerrorname_np(e) : "ok", n);
	}
	printf("\n");
	printf("ioctl_storm: nr_foll_pin_acquired %ld -> %ld (+%ld), nr_foll_pin_released %ld -> %ld (+%ld)\n",
	       acq0, acq1, acq1 - acq0, rel0, rel1, rel1 - rel0);
	if (acq1 != rel1 || acq1 - acq0 != rel1 - rel0) {
		printf("ioctl_storm: FAIL: pins not balanced\n");
		bad = 1;
	}
	if (st.pages_held_total != 0) {
		printf("ioctl_storm: FAIL: module still holds %llu pages\n",
		       (unsigned long long)st.pages_held_total);
		bad = 1;
	}
	printf("ioctl_storm: %s\n", bad ? "FAIL" : "PASS");
	return bad;
}
