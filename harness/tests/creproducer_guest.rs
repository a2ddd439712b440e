//! C reproducers in the guest (ignored by default: needs QEMU, gcc and a
//! provisioned kernel; run with `--ignored`). Fails, never skips, without
//! them.
//!
//! Each program runs twice in the same guest: through pinfuzz (kernel
//! executor + model + oracle, `diff::run_diff`) and as its C reproducer.
//! Both must agree: a program pinfuzz finds matching gives an all-ok TAP,
//! one that diverges at step K fails TAP test K + 1 first. With the helper
//! module's fault injection on, the reproducer must report `not ok`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use harness::campaign::campaign_program;
use harness::creproducer::emit_c;
use harness::creproducer::tap::Tap;
use harness::diff::{Outcome, run_diff};
use harness::kernel::{self, Cache, KernelSpec};
use harness::op::Program;
use harness::program::Limits;
use harness::vm::guest::BinaryEnd;
use harness::vm::{Guest, GuestOptions};
use reference::Profile;

fn default_kernel() -> KernelSpec {
    let qemu = Command::new("qemu-system-x86_64").arg("--version").output();
    assert!(
        qemu.is_ok_and(|o| o.status.success()),
        "qemu-system-x86_64 is not installed (this test must not pass without a guest)"
    );
    let cache = Cache::from_env().expect("cache");
    kernel::ensure(&cache, kernel::DEFAULT_KERNEL)
        .unwrap_or_else(|e| panic!("provisioning {} failed: {e:#}", kernel::DEFAULT_KERNEL))
}

/// Compile `src` statically with `gcc -Wall -Werror`; returns the binary.
fn compile(dir: &Path, name: &str, src: &str) -> Vec<u8> {
    let c = dir.join(format!("{name}.c"));
    let exe = dir.join(name);
    std::fs::write(&c, src).expect("write C source");
    let out = Command::new("gcc")
        .args(["-static", "-O2", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(&c)
        .output()
        .expect("run gcc");
    assert!(
        out.status.success(),
        "gcc -static -O2 -Wall -Werror {}: {}",
        c.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&exe).expect("read the binary")
}

fn seed(name: &str) -> Program {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus/seeds")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Program::parse_strict(&text, &path.display().to_string()).unwrap_or_else(|e| panic!("{e}"))
}

/// Run a reproducer binary in the guest; its TAP and exit status.
fn run_c(guest: &mut Guest, name: &str, bin: &[u8]) -> (Tap, Option<i32>, String) {
    let run = guest
        .run_binary(name, bin, &[], Duration::from_secs(120))
        .expect("run_binary");
    assert!(
        run.incidents.is_empty(),
        "{name}: kernel incidents {:?}",
        run.incidents
    );
    let BinaryEnd::Finished(done) = run.end else {
        panic!("{name}: the reproducer did not finish: {:?}", run.end);
    };
    let text = String::from_utf8_lossy(&done.output).into_owned();
    (Tap::parse(&text), done.exit_code, text)
}

#[test]
#[ignore = "boots a QEMU guest; run with --ignored after `pinfuzz kernel fetch`"]
fn the_agent_runs_a_binary_and_returns_its_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = compile(
        dir.path(),
        "hello",
        "#include <stdio.h>\n#include <sys/prctl.h>\n\
         int main(int argc, char **argv)\n{\n\
         \tprintf(\"hello %s thp_disable=%d\\n\", argc > 1 ? argv[1] : \"-\",\n\
         \t       prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0));\n\
         \tfflush(stdout);\n\
         \tfprintf(stderr, \"to stderr\\n\");\n\
         \treturn 7;\n}\n",
    );
    let mut guest = Guest::boot(&default_kernel(), &GuestOptions::default()).expect("boot");
    let run = guest
        .run_binary("hello", &bin, &["there".into()], Duration::from_secs(30))
        .expect("run_binary");
    let BinaryEnd::Finished(done) = run.end else {
        panic!("the binary did not finish: {:?}", run.end);
    };
    assert_eq!(done.exit_code, Some(7));
    // The agent's PR_SET_THP_DISABLE is inherited across execve: the C
    // reproducers clear it themselves.
    assert_eq!(
        String::from_utf8_lossy(&done.output),
        "hello there thp_disable=1\nto stderr\n"
    );
    assert!(run.incidents.is_empty(), "{:?}", run.incidents);
    let _ = guest.power_off();
}

/// Seeds: fork, THP, memfd, remote pins, splits, zero pages, FOLL_FORCE.
const SEEDS: [&str; 10] = [
    "child-exit-with-pins-held.ops",
    "cow-basic-after-fork-thp.ops",
    "cow-basic-memfd.ops",
    "remote-pin-into-child.ops",
    "remote-pin-from-child-into-parent.ops",
    "split-huge-pages-skips-pinned.ops",
    "pin-huge-zero-page-short-term.ops",
    "gup-longterm-rw-pin-fast-memfd-shared.ops",
    "foll-force-read-prot-none.ops",
    "fork-pinned-thp-copies-child.ops",
];

#[test]
#[ignore = "boots a QEMU guest; run with --ignored after `pinfuzz kernel fetch`"]
fn reproducers_agree_with_pinfuzz_on_the_default_kernel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut programs: Vec<(String, Program)> = SEEDS
        .iter()
        .map(|s| (s.trim_end_matches(".ops").to_string(), seed(s)))
        .collect();
    let limits = Limits {
        max_steps: 64,
        ..Limits::FULL
    };
    for i in 0..10 {
        programs.push((format!("gen-{i}"), campaign_program(3, i, &limits)));
    }
    let mut guest = Guest::boot(&default_kernel(), &GuestOptions::default()).expect("boot");
    let profile = Profile::find(&guest.hello().expect("hello").kernel_release).expect("profile");
    let mut matched = 0;
    for (name, program) in &programs {
        let diff = run_diff(&mut guest, program, profile, Duration::from_secs(60)).expect("diff");
        let c = emit_c(program, name).expect("emit_c");
        let bin = compile(dir.path(), name, &c);
        let (tap, code, text) = run_c(&mut guest, name, &bin);
        assert!(tap.bail_out.is_none(), "{name}: bailed out:\n{text}");
        assert_eq!(
            tap.plan,
            Some(program.steps.len() as u32 + 1),
            "{name}:\n{text}"
        );
        match &diff.outcome {
            Outcome::Match => {
                matched += 1;
                assert!(
                    tap.all_ok() && code == Some(0),
                    "{name}: pinfuzz matched, C:\n{text}"
                );
            }
            Outcome::Diverged(d) => {
                let first = tap.first_failure().unwrap_or_else(|| {
                    panic!(
                        "{name}: pinfuzz diverged at step {} ({}), C all ok:\n{text}",
                        d.step, d.title
                    )
                });
                assert_eq!(
                    first.number as usize,
                    d.step + 1,
                    "{name}: {}:\n{text}",
                    d.title
                );
                assert_eq!(code, Some(1), "{name}");
            }
            // A THP fallback voids the comparison on both sides.
            Outcome::Poisoned { step, .. } => {
                assert!(
                    tap.tests.iter().all(|t| t.ok),
                    "{name}: poisoned at {step}:\n{text}"
                );
            }
            other => panic!("{name}: pinfuzz outcome {other:?}; C:\n{text}"),
        }
        eprintln!("{name}: {:?} -> C exit {code:?}", diff.outcome.title());
    }
    assert!(
        matched >= SEEDS.len() / 2,
        "only {matched} programs matched"
    );
    let _ = guest.power_off();
}

#[test]
#[ignore = "boots a QEMU guest; run with --ignored after `pinfuzz kernel fetch`"]
fn a_fault_injected_module_fails_the_reproducer() {
    // PINFUZZ_FAULT_PUT_FOR_UNPIN: unpin drops plain references, so the page
    // keeps 1023 of its 1024 bias references and no pin is counted released.
    let program = Program::parse_strict(
        "pinfuzz v1 thp=never use_zero_page=1 kernel=any\n\
         m0 = mmap(anon-private, pages=1, prot=rw)\n\
         touch(m0[0..1], write)\n\
         p0 = pin_user_pages_fast(m0[0..1], write|longterm)\n\
         unpin(p0)\n",
        "put-for-unpin",
    )
    .expect("parses");
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = compile(
        dir.path(),
        "fault1",
        &emit_c(&program, "fault test").expect("emit_c"),
    );
    let opts = GuestOptions {
        fault: 1,
        ..GuestOptions::default()
    };
    let mut guest = Guest::boot(&default_kernel(), &opts).expect("boot");
    let (tap, code, text) = run_c(&mut guest, "fault1", &bin);
    let _ = guest.power_off();
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(tap.plan, Some(5));
    // Steps 0..2 are fine; the unpin (step 3, test 4) and the reset fail.
    assert!(tap.tests[..3].iter().all(|t| t.ok), "{text}");
    let unpin = &tap.tests[3];
    assert!(!unpin.ok, "{text}");
    assert!(unpin.text.contains("step 3: unpin(p0)"), "{text}");
    assert!(
        text.contains("vmstat nr_foll_pin_released expected +1, got +0"),
        "{text}"
    );
    assert!(text.contains("refcount expected 1, got 1024"), "{text}");
    assert!(
        !tap.tests[4].ok && tap.tests[4].text.contains("reset"),
        "{text}"
    );
}
