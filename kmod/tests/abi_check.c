// SPDX-License-Identifier: GPL-2.0
/*
 * Host-side check that kmod/gup_test_abi.h declares the same ABI as the
 * kernel's mm/gup_test.h: every ioctl number, flag, size and field offset.
 * Compiled twice from this one file and linked:
 *
 *   gcc -DUPSTREAM -I KSRC/mm -c abi_check.c -o upstream.o
 *   gcc -o abi_check abi_check.c upstream.o && ./abi_check
 */
#include <stddef.h>
#include <stdio.h>
#include <sys/ioctl.h>

#ifdef UPSTREAM
#include "gup_test.h"		/* KSRC/mm/gup_test.h */
#define ABI_VALUES abi_values_upstream
#else
#include "../gup_test_abi.h"
#define ABI_VALUES abi_values_ours
#endif

#define ABI_ITEMS(X)							\
	X(GUP_FAST_BENCHMARK) X(PIN_FAST_BENCHMARK)			\
	X(PIN_LONGTERM_BENCHMARK) X(GUP_BASIC_TEST) X(PIN_BASIC_TEST)	\
	X(DUMP_USER_PAGES_TEST) X(PIN_LONGTERM_TEST_START)		\
	X(PIN_LONGTERM_TEST_STOP) X(PIN_LONGTERM_TEST_READ)		\
	X(GUP_TEST_MAX_PAGES_TO_DUMP) X(GUP_TEST_FLAG_DUMP_PAGES_USE_PIN) \
	X(PIN_LONGTERM_TEST_FLAG_USE_WRITE)				\
	X(PIN_LONGTERM_TEST_FLAG_USE_FAST)				\
	X(sizeof(struct gup_test))					\
	X(offsetof(struct gup_test, get_delta_usec))			\
	X(offsetof(struct gup_test, put_delta_usec))			\
	X(offsetof(struct gup_test, addr))				\
	X(offsetof(struct gup_test, size))				\
	X(offsetof(struct gup_test, nr_pages_per_call))			\
	X(offsetof(struct gup_test, gup_flags))				\
	X(offsetof(struct gup_test, test_flags))			\
	X(offsetof(struct gup_test, which_pages))			\
	X(sizeof(struct pin_longterm_test))				\
	X(offsetof(struct pin_longterm_test, addr))			\
	X(offsetof(struct pin_longterm_test, size))			\
	X(offsetof(struct pin_longterm_test, flags))

#define VALUE(x) (unsigned long)(x),
#define NAME(x) #x,

const unsigned long ABI_VALUES[] = { ABI_ITEMS(VALUE) };

#ifndef UPSTREAM
extern const unsigned long abi_values_upstream[];

int main(void)
{
	static const char *const names[] = { ABI_ITEMS(NAME) };
	unsigned int i, n = sizeof(names) / sizeof(names[0]), bad = 0;

	for (i = 0; i < n; i++) {
		if (abi_values_ours[i] != abi_values_upstream[i]) {
			printf("MISMATCH %s: ours %#lx, mm/gup_test.h %#lx\n",
			       names[i], abi_values_ours[i],
			       abi_values_upstream[i]);
			bad++;
		}
	}
	printf("gup_test ABI: %u items compared, %u mismatches\n", n, bad);
	return !!bad;
}
#endif
