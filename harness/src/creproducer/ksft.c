/*
 * A subset of tools/testing/selftests/kselftest.h, inlined so that this file
 * builds on its own.  Same output: TAP 13, "ok N - ...", "not ok N - ...",
 * "ok N # SKIP ...", "# " diagnostics, a totals line, exit codes 0 (pass),
 * 1 (fail) and 4 (skip).
 */
#define __printf(a, b)	__attribute__((format(printf, a, b)))
#define __noreturn	__attribute__((noreturn))

#define KSFT_PASS	0
#define KSFT_FAIL	1
#define KSFT_SKIP	4

static unsigned int ksft_plan;
static unsigned int ksft_pass, ksft_fail, ksft_xskip;

static inline unsigned int ksft_test_num(void)
{
	return ksft_pass + ksft_fail + ksft_xskip;
}

static inline void ksft_print_header(void)
{
	/*
	 * Line buffered: the children this program forks never print, but a
	 * full buffer copied into them would be flushed twice.
	 */
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("TAP version 13\n");
}

static inline void ksft_set_plan(unsigned int plan)
{
	ksft_plan = plan;
	printf("1..%u\n", plan);
}

static inline __printf(1, 2) void ksft_print_msg(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("# ");
	vprintf(fmt, ap);
	va_end(ap);
}

static inline void ksft_print_cnts(void)
{
	if (ksft_plan != ksft_test_num())
		printf("# Planned tests != run tests (%u != %u)\n",
		       ksft_plan, ksft_test_num());
	printf("# Totals: pass:%u fail:%u xfail:0 xpass:0 skip:%u error:0\n",
	       ksft_pass, ksft_fail, ksft_xskip);
}

static inline __printf(1, 2) void ksft_test_result_pass(const char *fmt, ...)
{
	va_list ap;

	ksft_pass++;
	va_start(ap, fmt);
	printf("ok %u ", ksft_test_num());
	vprintf(fmt, ap);
	va_end(ap);
}

static inline __printf(1, 2) void ksft_test_result_fail(const char *fmt, ...)
{
	va_list ap;

	ksft_fail++;
	va_start(ap, fmt);
	printf("not ok %u ", ksft_test_num());
	vprintf(fmt, ap);
	va_end(ap);
}

static inline __printf(1, 2) void ksft_test_result_skip(const char *fmt, ...)
{
	va_list ap;

	ksft_xskip++;
	va_start(ap, fmt);
	printf("ok %u # SKIP ", ksft_test_num());
	vprintf(fmt, ap);
	va_end(ap);
}

static inline __noreturn __printf(1, 2) void ksft_exit_fail_msg(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("Bail out! ");
	vprintf(fmt, ap);
	va_end(ap);
	ksft_print_cnts();
	exit(KSFT_FAIL);
}

static inline __noreturn __printf(1, 2) void ksft_exit_skip(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (ksft_plan || ksft_test_num()) {
		ksft_xskip++;
		printf("ok %u # SKIP ", ksft_test_num());
	} else {
		printf("1..0 # SKIP ");
	}
	vprintf(fmt, ap);
	va_end(ap);
	if (ksft_test_num())
		ksft_print_cnts();
	exit(KSFT_SKIP);
}

static inline __noreturn void ksft_finished(void)
{
	ksft_print_cnts();
	exit(ksft_fail ? KSFT_FAIL : KSFT_PASS);
}
