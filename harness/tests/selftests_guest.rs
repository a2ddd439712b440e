//! `pinfuzz selftests --tests gup_longterm` on the default kernel, end to
//! end (ignored by default: needs QEMU, apt and gcc, and takes minutes
//! under TCG; CI runs it with `--ignored`). It fails, never skips, when
//! something is missing.
//!
//! What it pins down: the matching Debian source is found and built, the
//! guest provides gup_test, swap and hugetlb pages of both sizes (no skip
//! for any of them), every planned case reports, and all pass on 6.12.

use std::process::Command;

use serde_json::Value;

#[test]
#[ignore = "boots a QEMU guest and builds the kernel's selftests; run with --ignored"]
fn gup_longterm_passes_on_the_default_kernel_without_setup_skips() {
    let out = Command::new(env!("CARGO_BIN_EXE_pinfuzz"))
        .args(["selftests", "--tests", "gup_longterm", "--json"])
        .output()
        .expect("run pinfuzz selftests");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pinfuzz selftests failed ({}):\n{stderr}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("the report is not JSON: {e}\n{stderr}"));

    assert_eq!(report["verdict"]["passed"], true);
    assert_eq!(report["verdict"]["setup_skips"], 0);
    assert_eq!(
        report["guest"]["gup_test"], "helper-module",
        "Debian 6.12 has no CONFIG_GUP_TEST"
    );
    let source = &report["sources"][0];
    assert_eq!(source["test"], "gup_longterm");
    assert!(
        source["binary"]["source"]["label"]
            .as_str()
            .is_some_and(|l| l.starts_with("Debian linux-source-6.12 ")),
        "{source}"
    );
    assert!(source["substitute_note"].is_null(), "{source}");

    let run = &report["runs"][0];
    let cases = run["cases"].as_array().expect("cases");
    assert_eq!(run["planned"].as_u64(), Some(cases.len() as u64));
    // 8 scenarios x (memfd, tmpfile, local tmpfile, hugetlb 2 MiB, hugetlb 1 GiB).
    assert_eq!(cases.len(), 40, "{run}");
    let outcomes: Vec<&str> = cases
        .iter()
        .map(|c| c["outcome"].as_str().unwrap_or("?"))
        .collect();
    assert!(
        outcomes.iter().all(|o| *o == "pass"),
        "not all passed: {outcomes:?}"
    );
    for size in ["(2048 kB)", "(1048576 kB)"] {
        let n = cases
            .iter()
            .filter(|c| c["name"].as_str().is_some_and(|n| n.contains(size)))
            .count();
        assert_eq!(n, 8, "hugetlb {size} cases");
    }
    assert!(
        run["problems"].as_array().is_some_and(Vec::is_empty),
        "{run}"
    );
    let summary = &report["tests"][0];
    assert_eq!(summary["counts"]["pass"], 40);
    assert!(report["timings"]["guest_seconds"].as_f64().unwrap_or(0.0) > 0.0);
}
