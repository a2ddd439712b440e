//! C reproducers in the guest (ignored by default: needs QEMU, gcc and a
//! provisioned kernel; run with `--ignored`). Fails, never skips, without
//! them.

use std::process::Command;
use std::time::Duration;

use harness::kernel::{self, Cache, KernelSpec};
use harness::vm::guest::BinaryEnd;
use harness::vm::{Guest, GuestOptions};

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
fn compile(dir: &std::path::Path, name: &str, src: &str) -> Vec<u8> {
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
