//! Standalone C reproducers (`pinfuzz repro --emit-c OUT.c`) and the bench
//! baseline, from one generator.
//!
//! A reproducer is one C file in kernel selftest style (TAP output through
//! an inlined kselftest.h subset, SPDX GPL-2.0, kernel coding style) that a
//! kernel developer builds with `gcc -static -O2 -o repro repro.c` and runs
//! as root with the pinfuzz helper module loaded. It makes the same
//! syscalls and helper-module ioctls as the executor (`harness::exec`,
//! `docs/executor.md`) for the program, and after every step observes the
//! same state the same way (LRU drain, `stat_refresh` + `/proc/vmstat`,
//! `QUERY_RANGE` / `QUERY_HANDLE`) and checks it against what the model
//! expects (`backend::run_model` at generation time), with the oracle's
//! rules and tolerances (`oracle.rs`): one TAP test per step, `ok N - step
//! K: ...` or `not ok N - step K: ...: refcount expected 1025, got 1026`,
//! plus a last test for the post-run reset check. The uapi header is copied
//! in, so the file stands alone.
//!
//! Children are command servers driven through pipes (`runtime.c`), as in
//! the executor: every step is synchronous, and nothing runs in a child
//! while the parent observes.
//!
//! The C parts live as files next to this module (`ksft.c`, `runtime.c`,
//! `check.c`) and are pasted into every output; `emit` writes the per-program
//! parts, `expect` turns the model's observations into tables. The bench
//! baseline ([`emit_baseline`]) is the same executor without the checks, many
//! programs in one binary, each run in a forked process like the executor's
//! runner.

mod emit;
mod expect;
pub mod tap;

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use reference::Profile;

use crate::backend::run_model;
use crate::op::Program;
use emit::{
    CHECK_C, INCLUDES, KSFT_C, RUNTIME_C, c_comment, common_defines, program_c, settings_c,
    uapi_section,
};
use expect::RunTables;

pub use emit::c_string;

/// The model profile a program's expectations come from: its header's
/// `kernel=` if it names one, else the default (6.12).
pub fn profile_for(program: &Program) -> Result<Profile> {
    match &program.header.kernel {
        None => Ok(Profile::default()),
        Some(k) => Profile::find(k).with_context(|| format!("no model profile for kernel={k}")),
    }
}

/// The C reproducer of a program, expectations from the profile its header
/// names (see [`profile_for`]). `origin` says where the program came from
/// (a finding directory, a file); it goes into the header comment.
///
/// # Errors
/// The program is not valid (`Program::validate`), or names a kernel the
/// model has no profile for.
pub fn emit_c(program: &Program, origin: &str) -> Result<String> {
    emit_c_with(program, profile_for(program)?, origin)
}

/// [`emit_c`] with an explicit model profile.
///
/// # Errors
/// The program is not valid.
pub fn emit_c_with(program: &Program, profile: Profile, origin: &str) -> Result<String> {
    check_valid(program)?;
    let model = run_model(program, profile);
    let mut runs = RunTables::default();
    let p = program_c(program, &model, "", true, &mut runs)?;
    let n = program.steps.len();

    let mut out = String::new();
    out.push_str("// SPDX-License-Identifier: GPL-2.0\n");
    out.push_str(&header_comment(program, profile, origin));
    out.push('\n');
    out.push_str(INCLUDES);
    out.push('\n');
    out.push_str(KSFT_C);
    out.push('\n');
    out.push_str(&uapi_section());
    out.push('\n');
    out.push_str(RUNTIME_C);
    out.push('\n');
    out.push_str(CHECK_C);
    out.push_str("\n/* The program. */\n");
    out.push_str(&common_defines());
    let _ = writeln!(out, "#define NR_STEPS\t{n}");
    let _ = writeln!(
        out,
        "#define NR_SLOTS\t{}\t/* distinct model pages */",
        p.slots
    );
    let _ = writeln!(out, "#define SPLITS\t\t{}", u8::from(p.splits));
    let _ = writeln!(out, "#define PROFILE\t\t{}", c_string(profile.name));
    out.push_str(&p.defines);
    out.push_str("\n/* What the pinfuzz model expects after each step. */\n");
    out.push_str(&runs.text);
    out.push_str(&p.tables);
    out.push('\n');
    out.push_str(&p.function);
    out.push('\n');
    let _ = write!(out, "{}", single_main(&settings_c(program)));
    Ok(out)
}

/// The bench baseline: `programs` in one C program, each run in its own
/// forked process with the executor's setup, operations and observations
/// (no expectations, no checks), the header settings applied before each as
/// the executor's caller does, and the reset-check reads after each. It
/// prints one line per program (`# prog I steps N ns T status S`) and a
/// summary line `# pinfuzz-bench programs=P steps=S wall_ns=W failed=F
/// setup_ns=.. op_ns=.. drain_ns=.. counters_ns=.. queries_ns=..
/// teardown_ns=.. mono_start_ns=.. mono_end_ns=..` (the parts summed over
/// programs, timed as the executor times its own; the guest's
/// `CLOCK_MONOTONIC` when the programs started and ended, which the bench
/// sets against the host's clock).
///
/// # Errors
/// A program is not valid.
pub fn emit_baseline(programs: &[Program], origin: &str) -> Result<String> {
    let mut runs = RunTables::default();
    let mut out = String::new();
    out.push_str("// SPDX-License-Identifier: GPL-2.0\n");
    let _ = write!(
        out,
        "/*\n * pinfuzz bench baseline: {} programs ({}), run by the C executor\n \
         * with pinfuzz's observations and without its checks.\n *\n \
         * Build: gcc -static -O2 -o baseline baseline.c\n \
         * Run:   ./baseline (root, pinfuzz helper module loaded)\n */\n\n",
        programs.len(),
        c_comment(origin)
    );
    out.push_str(INCLUDES);
    out.push('\n');
    out.push_str(KSFT_C);
    out.push('\n');
    out.push_str(&uapi_section());
    out.push('\n');
    out.push_str(RUNTIME_C);
    out.push_str("\n/* The programs. */\n");
    out.push_str(&common_defines());
    let mut table = String::from(
        "static const struct {\n\tconst char *thp;\n\tint use_zero_page;\n\tint splits;\n\t\
         int steps;\n\tvoid (*run)(void);\n} programs[] = {\n",
    );
    for (i, program) in programs.iter().enumerate() {
        check_valid(program).with_context(|| format!("program {i}"))?;
        let model = run_model(program, Profile::default());
        let prefix = format!("p{i}_");
        let p = program_c(program, &model, &prefix, false, &mut runs)?;
        let _ = writeln!(out, "\n/* program {i} */");
        for line in program.to_string().lines() {
            let _ = writeln!(out, "/*   {} */", c_comment(line));
        }
        out.push_str(&p.defines);
        out.push_str(&p.tables);
        out.push_str(&p.function);
        let _ = writeln!(
            table,
            "\t{{ {}, {}, {}, {prefix}program }},",
            settings_c(program),
            u8::from(p.splits),
            program.steps.len()
        );
    }
    table.push_str("};\n");
    out.push('\n');
    out.push_str(&table);
    out.push_str(BATCH_MAIN);
    Ok(out)
}

fn check_valid(program: &Program) -> Result<()> {
    if let Err(problems) = program.validate() {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        bail!(
            "the program is not valid, no C reproducer: {}",
            list.join("; ")
        );
    }
    Ok(())
}

fn header_comment(program: &Program, profile: Profile, origin: &str) -> String {
    let mut s = String::from("/*\n");
    let title = program
        .comments
        .iter()
        .find(|c| !c.trim().is_empty())
        .map(|c| c.trim().to_string());
    let _ = writeln!(
        s,
        " * pinfuzz reproducer{}",
        title
            .map(|t| format!(": {}", c_comment(&t)))
            .unwrap_or_default()
    );
    let _ = writeln!(s, " *");
    let _ = writeln!(
        s,
        " * Generated by pinfuzz {} from {}.",
        env!("CARGO_PKG_VERSION"),
        c_comment(origin)
    );
    let _ = writeln!(
        s,
        " * Expected values: the pinfuzz reference model, Linux {} profile.",
        profile.name
    );
    s.push_str(
        " *\n * Build:  gcc -static -O2 -o repro repro.c\n \
         * Run:    ./repro   as root, with the pinfuzz helper module loaded\n \
         *         (kmod/: make && insmod pinfuzz.ko; /dev/pinfuzz must exist) and\n \
         *         debugfs mounted if the program splits THPs.\n *\n \
         * Output: kselftest TAP, one test per program step: the step runs, then\n \
         * its result, the vmstat counter deltas (after an LRU drain and\n \
         * stat_refresh) and the state of every page of every mapping and handle\n \
         * (PINFUZZ_IOC_QUERY_RANGE / QUERY_HANDLE: refcount, mapcount, pincount,\n \
         * order, flags, and page identity by pfn across steps) are compared with\n \
         * the model's; the last test checks that every pin is released once\n \
         * /dev/pinfuzz is closed. Exit status 0 if every test passed, 1 if one\n \
         * failed, 4 if the program could not run here (not root, no module).\n *\n \
         * System settings (restored at exit): THP enabled and use_zero_page as\n \
         * the program's header says; THP defrag=never, shmem_enabled=never,\n \
         * every mTHP size but the PMD size off, shrink_underused=0, khugepaged\n \
         * limited to one fully populated PMD per wake-up and put to sleep,\n \
         * compaction_proactiveness=0, watermark_boost_factor=0, numa_balancing=0:\n \
         * nothing may move, collapse or split the program's pages behind its back.\n *\n \
         * The program (pinfuzz text format, docs/program-format.md):\n *\n",
    );
    for line in program.to_string().lines() {
        let _ = writeln!(s, " *   {}", c_comment(line));
    }
    s.push_str(" */\n");
    s
}

fn single_main(settings: &str) -> String {
    format!(
        "/* A kernel of another version may differ from the model's profile. */\n\
         static void check_kernel(void)\n{{\n\
         \tstruct utsname u;\n\
         \tsize_t n = strlen(PROFILE);\n\n\
         \tif (uname(&u))\n\
         \t\treturn;\n\
         \tif (strncmp(u.release, PROFILE, n) || (u.release[n] >= '0' && u.release[n] <= '9'))\n\
         \t\tksft_print_msg(\"warning: the expected values are for Linux %s, this is %s\\n\",\n\
         \t\t\t       PROFILE, u.release);\n\
         }}\n\n\
         int main(void)\n{{\n\
         \t__u64 pins_before[2];\n\n\
         \tmain_pid = getpid();\n\
         \tksft_print_header();\n\
         \tksft_set_plan(NR_STEPS + 1);\n\
         \tif (geteuid())\n\
         \t\tksft_exit_skip(\"needs root\\n\");\n\
         \tcheck_kernel();\n\
         \tatexit(restore_knobs);\n\
         \tfixed_settings();\n\
         \tprogram_settings({settings});\n\
         \topen_counters();\n\
         \tread_vmstat(counter_names, 2, pins_before);\n\
         \tidentity_init(NR_SLOTS);\n\
         \tsetup(SPLITS, ARENA_LO, ARENA_HI);\n\
         \tprogram();\n\
         \tteardown();\n\
         \tcheck_reset(pins_before);\n\
         \tksft_finished();\n\
         }}\n"
    )
}

/// `main` of the bench baseline (see [`emit_baseline`]).
const BATCH_MAIN: &str = r##"
/*
 * argv[1]: run at most N programs (0: setup only, to time the overhead);
 * argv[2]: starting with this one.
 */
int main(int argc, char **argv)
{
	unsigned int i, first = 0, n = ARRAY_SIZE(programs), failed = 0;
	__u64 t0, t, steps = 0, pins[2];
	struct pinfuzz_status st;
	struct bench_times *bt;
	int status, fd;
	pid_t pid;

	main_pid = getpid();
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 2)
		first = strtoul(argv[2], NULL, 10);
	if (first > n)
		first = n;
	n -= first;
	if (argc > 1 && strtoul(argv[1], NULL, 10) < n)
		n = strtoul(argv[1], NULL, 10);
	if (geteuid())
		ksft_exit_skip("needs root\n");
	bt = mmap(NULL, sizeof(*bt), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (bt == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	fixed_settings();
	open_counters();
	t0 = ns_now();
	for (i = first; i < first + n; i++) {
		t = ns_now();
		/* As the executor's caller: settings, the pin baseline, a runner. */
		program_settings(programs[i].thp, programs[i].use_zero_page);
		read_vmstat(counter_names, 2, pins);
		pid = fork();
		if (pid < 0)
			die("fork: %s", strerror(errno));
		if (!pid) {
			__u64 start = ns_now();

			bench_times = bt;
			setup(programs[i].splits, ARENA_LO, ARENA_HI);
			bt->setup += ns_now() - start;
			programs[i].run();
			start = ns_now();
			teardown();
			bt->teardown += ns_now() - start;
			_exit(0);
		}
		if (waitpid(pid, &status, 0) != pid)
			die("waitpid: %s", strerror(errno));
		/* The reset check's reads. */
		read_vmstat(counter_names, 2, pins);
		fd = open("/dev/pinfuzz", O_RDWR | O_CLOEXEC);
		if (fd < 0 || ioctl(fd, PINFUZZ_IOC_STATUS, &st))
			die("PINFUZZ_IOC_STATUS: %s", strerror(errno));
		close(fd);
		if (status)
			failed++;
		else
			steps += programs[i].steps;
		printf("# prog %u steps %d ns %llu status %d\n", i, programs[i].steps,
		       (unsigned long long)(ns_now() - t), status);
	}
	t = ns_now();
	printf("# pinfuzz-bench programs=%u steps=%llu wall_ns=%llu failed=%u setup_ns=%llu "
	       "op_ns=%llu drain_ns=%llu counters_ns=%llu queries_ns=%llu teardown_ns=%llu "
	       "mono_start_ns=%llu mono_end_ns=%llu\n",
	       n, (unsigned long long)steps, (unsigned long long)(t - t0), failed,
	       (unsigned long long)bt->setup, (unsigned long long)bt->op,
	       (unsigned long long)bt->drain, (unsigned long long)bt->counters,
	       (unsigned long long)bt->queries, (unsigned long long)bt->teardown,
	       (unsigned long long)t0, (unsigned long long)t);
	return failed ? 1 : 0;
}
"##;

#[cfg(test)]
mod tests {
    use super::*;

    const PIN_FORK: &str = "\
# cow.c: R/O pin on an R/O-mapped exclusive page
pinfuzz v1 thp=never use_zero_page=1 kernel=any
m0 = mmap(anon-private, pages=1, prot=rw)
touch(m0[0..1], write)
mprotect(m0[0..1], r)
p0 = pin_user_pages_fast(m0[0..1], longterm)
c0 = fork()
c0: touch(m0[0..1], read)
c0: p1 = pin_user_pages_remote(parent, m0[0..1], none)
unpin(p0)
exit(c0)
";

    #[test]
    fn a_reproducer_has_every_part_and_one_check_per_step() {
        let program = Program::parse_strict(PIN_FORK, "t").unwrap();
        let c = emit_c(&program, "test").unwrap();
        assert!(c.starts_with("// SPDX-License-Identifier: GPL-2.0\n/*\n"));
        assert!(c.contains("gcc -static -O2 -o repro repro.c"));
        assert!(c.contains("pinfuzz reproducer: cow.c: R/O pin"));
        assert!(c.contains("struct pinfuzz_gup {"));
        assert!(c.contains("#define NR_STEPS\t9"));
        assert_eq!(c.matches("\tcheck_step(").count(), 9);
        assert!(c.contains(
            "op_gup(C(0), 1, PINFUZZ_API_PIN_USER_PAGES_REMOTE,\n\t\t   M0, 1, 0, PARENT)"
        ));
        assert!(c.contains("r = op_fork(0);"));
        assert!(c.contains("program_settings(\"never\", 1);"));
        // The pin's expectation: a pinned small page, refcount 1 + 1024.
        assert!(c.contains(".refcount = 1025"), "{c}");
    }

    #[test]
    fn invalid_programs_and_unknown_kernels_are_refused() {
        let mut program = Program::parse_strict(PIN_FORK, "t").unwrap();
        program.steps.remove(0);
        let err = emit_c(&program, "t").unwrap_err();
        assert!(format!("{err:#}").contains("not valid"), "{err:#}");
        let mut program = Program::parse_strict(PIN_FORK, "t").unwrap();
        program.header.kernel = Some("2.6".into());
        assert!(emit_c(&program, "t").is_err());
    }

    #[test]
    fn the_baseline_observes_without_checking() {
        let program = Program::parse_strict(PIN_FORK, "t").unwrap();
        let c = emit_baseline(&[program.clone(), program], "test").unwrap();
        assert!(!c.contains("check_step"));
        assert_eq!(c.matches("\tobserve(&p1_expect[").count(), 9);
        assert!(c.contains("\tBENCH_OP(op_fork(0));"));
        assert!(c.contains("{ \"never\", 1, 0, 9, p0_program },"));
    }
}
