/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * The kernel's gup_test user API (debugfs file "gup_test"), declared again
 * for the pinfuzz module, which provides it on kernels built without
 * CONFIG_GUP_TEST.  Numbers, names and layouts are those of mm/gup_test.h
 * of Linux 6.12, so the unmodified selftests
 * tools/testing/selftests/mm/{gup_test,gup_longterm,cow}.c run against it;
 * the module offers this same ABI on 6.1 too (6.1's own mm/gup_test.h lacks
 * the PIN_LONGTERM_TEST_* commands).  kmod/tests/abi_check.c compares this
 * header with the kernel's.
 */
#ifndef _UAPI_PINFUZZ_GUP_TEST_ABI_H
#define _UAPI_PINFUZZ_GUP_TEST_ABI_H

#include <linux/types.h>
#include <linux/ioctl.h>

#define GUP_FAST_BENCHMARK	_IOWR('g', 1, struct gup_test)
#define PIN_FAST_BENCHMARK	_IOWR('g', 2, struct gup_test)
#define PIN_LONGTERM_BENCHMARK	_IOWR('g', 3, struct gup_test)
#define GUP_BASIC_TEST		_IOWR('g', 4, struct gup_test)
#define PIN_BASIC_TEST		_IOWR('g', 5, struct gup_test)
#define DUMP_USER_PAGES_TEST	_IOWR('g', 6, struct gup_test)
#define PIN_LONGTERM_TEST_START	_IOW('g', 7, struct pin_longterm_test)
#define PIN_LONGTERM_TEST_STOP	_IO('g', 8)
#define PIN_LONGTERM_TEST_READ	_IOW('g', 9, __u64)

#define GUP_TEST_MAX_PAGES_TO_DUMP		8

#define GUP_TEST_FLAG_DUMP_PAGES_USE_PIN	0x1

struct gup_test {
	__u64 get_delta_usec;
	__u64 put_delta_usec;
	__u64 addr;
	__u64 size;
	__u32 nr_pages_per_call;
	__u32 gup_flags;	/* raw FOLL_* of the running kernel */
	__u32 test_flags;
	/*
	 * Each non-zero entry is the number of the page (1-based: first page is
	 * page 1, so that zero entries mean "do nothing") from the .addr base.
	 */
	__u32 which_pages[GUP_TEST_MAX_PAGES_TO_DUMP];
};

#define PIN_LONGTERM_TEST_FLAG_USE_WRITE	1
#define PIN_LONGTERM_TEST_FLAG_USE_FAST		2

struct pin_longterm_test {
	__u64 addr;
	__u64 size;
	__u32 flags;
};

#endif /* _UAPI_PINFUZZ_GUP_TEST_ABI_H */
