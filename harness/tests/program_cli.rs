//! `pinfuzz fmt` and `pinfuzz gen` as a user runs them: exit codes, what
//! they print, what they leave on disk.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use harness::op::Program;

fn pinfuzz(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pinfuzz"))
        .args(args)
        .output()
        .expect("pinfuzz runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

const MESSY: &str =
    "pinfuzz v1 thp=never\n\nm4 = mmap(anon-private,pages=1)\ntouch(m4[0], write) # fault it in\n";
const CANONICAL: &str = "pinfuzz v1 thp=never use_zero_page=1 kernel=any\n\
m0 = mmap(anon-private, pages=1, prot=rw)\n# fault it in\ntouch(m0[0..1], write)\n";

#[test]
fn fmt_check_reports_rewrites_in_place_then_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("messy.ops");
    fs::write(&file, MESSY).expect("write");

    let check = pinfuzz(&["fmt", "--check", path(&file)]);
    assert_eq!(check.status.code(), Some(1), "{}", stderr(&check));
    assert!(
        stderr(&check).contains("messy.ops: not canonical: line 1:"),
        "{}",
        stderr(&check)
    );
    assert_eq!(
        fs::read_to_string(&file).expect("read"),
        MESSY,
        "--check changes nothing"
    );

    let stdout = pinfuzz(&["fmt", "--stdout", path(&file)]);
    assert!(stdout.status.success());
    assert_eq!(String::from_utf8_lossy(&stdout.stdout), CANONICAL);

    let format = pinfuzz(&["fmt", path(&file)]);
    assert!(format.status.success(), "{}", stderr(&format));
    assert_eq!(fs::read_to_string(&file).expect("read"), CANONICAL);
    let leftovers: Vec<_> = fs::read_dir(dir.path()).expect("ls").collect();
    assert_eq!(leftovers.len(), 1, "no temporary file is left behind");

    let again = pinfuzz(&["fmt", "--check", path(&file)]);
    assert!(again.status.success(), "{}", stderr(&again));
}

#[test]
fn fmt_errors_name_file_line_and_column_and_leave_the_file_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.ops");
    let bad = dir.path().join("bad.ops");
    fs::write(&good, MESSY).expect("write");
    let src =
        "pinfuzz v1\nm0 = mmap(anon-private, pages=1)\np0 = pin_user_pages(m0[0..1])\nput(p0)\n";
    fs::write(&bad, src).expect("write");

    let out = pinfuzz(&["fmt", path(&bad), path(&good)]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{}:4:1: put() drops FOLL_GET references, p0 holds FOLL_PIN pins",
            path(&bad)
        )),
        "{err}"
    );
    assert!(err.contains("    put(p0)\n    ^^^^^^^"), "{err}");
    assert_eq!(fs::read_to_string(&bad).expect("read"), src);
    // The other file is still formatted.
    assert_eq!(fs::read_to_string(&good).expect("read"), CANONICAL);

    let lenient = pinfuzz(&["fmt", "--lenient", "--stdout", path(&bad)]);
    assert!(lenient.status.success());
    assert!(stderr(&lenient).contains(":4:1: warning: dropped: put() drops"));
    assert!(!String::from_utf8_lossy(&lenient.stdout).contains("put("));
}

#[test]
fn bytes_and_text_convert_both_ways() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = dir.path().join("p.ops");
    let raw = dir.path().join("p.bin");
    fs::write(&text, CANONICAL).expect("write");

    let to = pinfuzz(&["fmt", "--to-bytes", path(&raw), path(&text)]);
    assert!(to.status.success(), "{}", stderr(&to));
    let bytes = fs::read(&raw).expect("read bytes");
    assert_eq!(bytes[0], 1, "format version byte");

    let from = pinfuzz(&["fmt", "--from-bytes", path(&raw)]);
    assert!(from.status.success(), "{}", stderr(&from));
    assert_eq!(String::from_utf8_lossy(&from.stdout), CANONICAL);

    // Any bytes at all print as a valid program.
    let junk = dir.path().join("junk.bin");
    fs::write(&junk, (0..=255u8).rev().collect::<Vec<_>>()).expect("write");
    let out = pinfuzz(&["fmt", "--from-bytes", path(&junk)]);
    assert!(out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout);
    Program::parse_strict(&printed, "junk.ops").unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn gen_writes_valid_canonical_reproducible_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let out = pinfuzz(&["gen", "--seed", "42", "--count", "5", "--out", path(&a)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = pinfuzz(&[
        "gen",
        "--seed",
        "42",
        "--count",
        "2",
        "--out",
        path(&b),
        "--max-steps",
        "32",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    for i in 0..5 {
        let name = format!("gen-42-{i}.ops");
        let text = fs::read_to_string(a.join(&name)).expect("generated file");
        let program = Program::parse_strict(&text, &name).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(program.to_string(), text, "{name} is canonical");
        if i < 2 {
            let again = fs::read_to_string(b.join(&name)).expect("generated file");
            assert_eq!(again, text, "{name} does not depend on --count");
        }
    }
    let check = pinfuzz(&["fmt", "--check", path(&a.join("gen-42-0.ops"))]);
    assert!(check.status.success());

    let bad = pinfuzz(&["gen", "--seed", "1", "--out", path(&a), "--max-steps", "0"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("--max-steps 0 is out of range 1..=512"));
}

/// The generator's output for one seed, byte for byte: the same on every
/// machine (ChaCha8 bytes, our own codec, no platform-sized integers). A
/// change here changes every generated corpus: it must be deliberate.
#[test]
fn gen_output_is_stable_across_machines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = pinfuzz(&[
        "gen",
        "--seed",
        "1",
        "--count",
        "2",
        "--max-steps",
        "10",
        "--out",
        path(dir.path()),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let first = fs::read_to_string(dir.path().join("gen-1-0.ops")).expect("generated");
    let second = fs::read_to_string(dir.path().join("gen-1-1.ops")).expect("generated");
    assert_eq!(first, GOLDEN_SEED_1_0);
    assert_eq!(second, GOLDEN_SEED_1_1);
}

const GOLDEN_SEED_1_0: &str = "\
# pinfuzz gen --seed 1 --max-steps 10: program 0\n\
pinfuzz v1 thp=never use_zero_page=0 kernel=any\n\
c0 = fork()\n\
m0 = mmap(memfd-private, pages=21, prot=rw)\n\
touch(m0[0..21], write)\n\
mprotect(m0[15..18], rw)\n\
p0 = pin_user_pages(m0[18..21], write)\n\
get_user_pages_fast(m0[0..512], write)\n\
pin_user_pages(m0[5..14], none)\n\
c0: unpin(p0)\n\
mprotect(m0[1..12], none)\n\
get_user_pages(m0[19..26], force)\n\
";
const GOLDEN_SEED_1_1: &str = "\
# pinfuzz gen --seed 1 --max-steps 10: program 1\n\
pinfuzz v1 thp=always use_zero_page=0 kernel=any\n\
m0 = mmap(anon-private, pages=10, prot=rw)\n\
split_huge_pages(m0[2..5])\n\
";
