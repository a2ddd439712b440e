//! C reproducers compile cleanly (`gcc -Wall -Werror`) for seed programs
//! and generated ones; no guest needed (the guest runs are in
//! `creproducer_guest.rs`). Set `CREPRODUCER_KEEP=DIR` to keep the files.

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::campaign::campaign_program;
use harness::creproducer::{emit_baseline, emit_c};
use harness::op::Program;
use harness::program::Limits;

fn seed(name: &str) -> Program {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus/seeds")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Program::parse_strict(&text, &path.display().to_string()).unwrap_or_else(|e| panic!("{e}"))
}

/// Seeds covering fork, THP, memfd, remote pins, splits and zero pages.
pub const SEEDS: [&str; 8] = [
    "child-exit-with-pins-held.ops",
    "cow-basic-after-fork-thp.ops",
    "cow-basic-memfd.ops",
    "remote-pin-into-child.ops",
    "split-huge-pages-skips-pinned.ops",
    "pin-huge-zero-page-short-term.ops",
    "gup-longterm-rw-pin-fast-memfd-shared.ops",
    "foll-force-read-prot-none.ops",
];

fn out_dir() -> (Option<tempfile::TempDir>, PathBuf) {
    match std::env::var_os("CREPRODUCER_KEEP") {
        Some(d) => {
            std::fs::create_dir_all(&d).expect("create CREPRODUCER_KEEP");
            (None, PathBuf::from(d))
        }
        None => {
            let t = tempfile::tempdir().expect("tempdir");
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    }
}

fn gcc(c: &Path, extra: &[&str]) {
    let exe = c.with_extension("");
    let out = Command::new("gcc")
        .args(["-O2", "-Wall", "-Werror"])
        .args(extra)
        .arg("-o")
        .arg(&exe)
        .arg(c)
        .output()
        .expect("run gcc");
    assert!(
        out.status.success(),
        "gcc -O2 -Wall -Werror {} {}:\n{}",
        extra.join(" "),
        c.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn reproducers_of_seeds_and_generated_programs_compile_without_warnings() {
    let (_keep, dir) = out_dir();
    let mut programs: Vec<(String, Program)> = SEEDS
        .iter()
        .map(|s| (s.trim_end_matches(".ops").to_string(), seed(s)))
        .collect();
    let limits = Limits {
        max_steps: 64,
        ..Limits::FULL
    };
    for i in 0..6 {
        programs.push((format!("gen-{i}"), campaign_program(7, i, &limits)));
    }
    for (i, (name, program)) in programs.iter().enumerate() {
        let c = emit_c(program, name).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let path = dir.join(format!("{name}.c"));
        std::fs::write(&path, &c).expect("write C");
        // One static build as the header comment says; the rest dynamic
        // (the same compiler diagnostics, a fraction of the link time).
        gcc(&path, if i == 0 { &["-static"] } else { &[] });
    }
}

#[test]
fn the_bench_baseline_compiles_without_warnings() {
    let (_keep, dir) = out_dir();
    let limits = Limits {
        max_steps: 64,
        ..Limits::FULL
    };
    let programs: Vec<Program> = (0..20).map(|i| campaign_program(1, i, &limits)).collect();
    let c = emit_baseline(&programs, "campaign seed 1, programs 0..20").expect("baseline");
    let path = dir.join("baseline.c");
    std::fs::write(&path, c).expect("write C");
    gcc(&path, &[]);
}
