//! The text format by example: canonical output, canonicalization of
//! hand-written input, strict-mode diagnostics and lenient-mode repairs,
//! each checked against the exact expected text.

use harness::op::{ChildId, HandleId, MapId, Op, PageRange, Proc, Program};
use reference::{Foll, GupApi, ThpMode};

fn strict(src: &str) -> Program {
    Program::parse_strict(src, "test.ops").unwrap_or_else(|e| panic!("{e}"))
}

fn strict_error(src: &str) -> String {
    match Program::parse_strict(src, "test.ops") {
        Ok(p) => panic!("expected an error, parsed:\n{p}"),
        Err(e) => e.to_string(),
    }
}

/// The example of cow.c in its canonical form.
const COW: &str = "\
# cow.c: \"R/O GUP pin on R/O-mapped exclusive page\" - the pin must see later writes
pinfuzz v1 thp=never use_zero_page=1 kernel=any
m0 = mmap(anon-private, pages=1, prot=rw)
touch(m0[0..1], write)
mprotect(m0[0..1], r)
p0 = pin_user_pages_fast(m0[0..1], longterm)
c0 = fork()
c0: touch(m0[0..1], read)
# the child pins the parent's page through its mm
c0: pin_user_pages_remote(parent, m0[0..1], none)
unpin(p0)
exit(c0)
";

#[test]
fn canonical_example_reads_and_prints_unchanged() {
    let program = strict(COW);
    assert_eq!(program.header.thp, ThpMode::Never);
    assert_eq!(program.steps.len(), 9);
    assert_eq!(
        program.steps[6].op,
        Op::Gup {
            handle: HandleId(1),
            api: GupApi::PinUserPagesRemote,
            target: Some(Proc::Parent),
            map: MapId(0),
            range: PageRange { start: 0, end: 1 },
            foll: Foll::NONE,
        }
    );
    assert_eq!(program.steps[6].proc, Proc::Child(ChildId(0)));
    assert_eq!(
        program.steps[6].comments,
        [" the child pins the parent's page through its mm"]
    );
    assert_eq!(program.to_string(), COW);
}

#[test]
fn hand_written_forms_canonicalize() {
    let cases: &[(&str, &str)] = &[
        // Defaults omitted, keys in any order, spaces, blank lines, a
        // trailing comment moved above its op, `parent:` prefix dropped.
        (
            "pinfuzz v1\n\n  m0 = mmap(anon-shared,prot=r,pages=4)  # four pages\n\
             parent: touch( m0[2] , read )\n",
            "pinfuzz v1 thp=always use_zero_page=1 kernel=any\n# four pages\n\
             m0 = mmap(anon-shared, pages=4, prot=r)\ntouch(m0[2..3], read)\n",
        ),
        // Labels are renamed to ordinals; unused names are dropped; flags
        // are printed in canonical order; GUP flags default to none.
        (
            "pinfuzz v1 kernel=6.12 use_zero_page=0 thp=madvise\n\
             m7 = mmap(memfd-private, pages=512, offset=3)\n\
             m2 = mmap(anon-private, pages=1)\n\
             g5 = get_user_pages(m7[0..2])\n\
             p9 = pin_user_pages(m2[0..1], force|longterm|write)\n\
             p4 = pin_user_pages_fast(m7[0..512], none)\n\
             put(g5)\nunpin_dirty(p4)\n",
            "pinfuzz v1 thp=madvise use_zero_page=0 kernel=6.12\n\
             m0 = mmap(memfd-private, pages=512, prot=rw, offset=3)\n\
             m1 = mmap(anon-private, pages=1, prot=rw)\n\
             g0 = get_user_pages(m0[0..2], none)\n\
             pin_user_pages(m1[0..1], write|longterm|force)\n\
             p2 = pin_user_pages_fast(m0[0..512], none)\n\
             put(g0)\nunpin_dirty(p2)\n",
        ),
        // Comment lines keep their text verbatim, empty ones included.
        (
            "#\n#  spaced  \npinfuzz v1\n#\tabove\nc0 = fork()\nexit(c0)\n",
            "#\n#  spaced  \npinfuzz v1 thp=always use_zero_page=1 kernel=any\n#\tabove\n\
             c0 = fork()\nexit(c0)\n",
        ),
    ];
    for (input, expected) in cases {
        let program = strict(input);
        assert_eq!(program.to_string(), *expected, "input:\n{input}");
        assert_eq!(strict(expected), program, "canonical form reads back");
    }
}

#[test]
fn strict_errors_point_at_file_line_and_column() {
    let cases: &[(&str, &str)] = &[
        (
            "pinfuzz v1\nm0 = mmap(anon-private, pages=1)\np0 = pin_user_pages(m0[0..1], write)\n\
             unpin(p0)\nunpin(p0)\n",
            "test.ops:5:7: p0 was already released (line 4)\n    unpin(p0)\n          ^^",
        ),
        // Handles are shared by every process: the parent may release a
        // child's pin, but only once.
        (
            "pinfuzz v1\nm0 = mmap(anon-private, pages=1)\nc0 = fork()\n\
             c0: p0 = pin_user_pages(m0[0..1], write)\nexit(c0)\nunpin(p0)\nunpin(p0)\n",
            "test.ops:7:7: p0 was already released (line 6)\n    unpin(p0)\n          ^^",
        ),
        (
            "pinfuzz v1\nm0 = mmap(anon-private, pages=1)\ng0 = get_user_pages(m0[0..1], longterm)\n",
            "test.ops:3:31: FOLL_LONGTERM is only valid with pin_user_pages*: get_user_pages \
             WARNs and fails with it\n    g0 = get_user_pages(m0[0..1], longterm)\n\
             \x20                                 ^^^^^^^^",
        ),
        (
            "pinfuzz v1\nc0 = fork()\nm0 = mmap(anon-private, pages=1)\nc0: touch(m0[0..1], write)\n",
            "test.ops:4:11: c0 does not have m0: m0 was mapped by the parent after c0 was forked\n\
             \x20   c0: touch(m0[0..1], write)\n              ^^",
        ),
        (
            "pinfuzz v1\nc0 = fork()\nc0: m0 = mmap(anon-private, pages=1)\n\
             pin_user_pages_remote(parent, m0[0..1], write)\n",
            "test.ops:4:31: parent does not have m0: m0 was mapped by c0\n\
             \x20   pin_user_pages_remote(parent, m0[0..1], write)\n\
             \x20                                 ^^",
        ),
        (
            "pinfuzz v1\nc0 = fork()\nexit(c0)\nc0: touch(m0[0..1], read)\n",
            "test.ops:4:11: m0 is not defined: name the result of a mmap `m0 = ...` above\n\
             \x20   c0: touch(m0[0..1], read)\n              ^^",
        ),
        (
            "pinfuzz v1\nc0 = fork()\nexit(c0)\nc0: m0 = mmap(anon-private, pages=1)\n",
            "test.ops:4:1: c0 runs this step but has already exited (line 3)\n\
             \x20   c0: m0 = mmap(anon-private, pages=1)\n    ^^",
        ),
        (
            "pinfuzz v1\nc0 = fork()\nc0: c1 = fork()\n",
            "test.ops:3:1: fork() runs in the parent: children do not fork\n\
             \x20   c0: c1 = fork()\n    ^^",
        ),
        (
            "pinfuzz v1\nm0 = mmap(anon-private, pages=1, offset=512)\n",
            "test.ops:2:34: offset=512 is out of range 0..=511\n\
             \x20   m0 = mmap(anon-private, pages=1, offset=512)\n\
             \x20                                    ^^^^^^^^^^",
        ),
        (
            "pinfuzz v1\nm0 = mmap(anon-private, pages=4, offset=10)\ntouch(m0[0..2039], write)\n",
            "test.ops:3:7: m0[0..2039] runs past the end of m0's slot: ranges end at or before \
             page 2038 (2048 pages per slot, minus offset=10)\n\
             \x20   touch(m0[0..2039], write)\n          ^^^^^^^^^^^",
        ),
        (
            "pinfuzz v1\nm0 = mmap(anon-private, pages=1024)\np0 = pin_user_pages(m0[0..1025])\n",
            "test.ops:3:21: m0[0..1025] is 1025 pages: one GUP call takes at most 1024 pages\n\
             \x20   p0 = pin_user_pages(m0[0..1025])\n                        ^^^^^^^^^^^",
        ),
        (
            "pinfuzz v1\nm0 = mmap(anon-private, pages=1)\ntouch(m0[1..1], write)\n",
            "test.ops:3:7: m0[1..1] is empty: a range needs at least one page\n\
             \x20   touch(m0[1..1], write)\n          ^^^^^^^^",
        ),
        (
            "pinfuzz v1\nm0 = mmap(anon-private, pages=1)\ng0 = get_user_pages(m0[0..1])\nunpin(g0)\n",
            "test.ops:4:1: unpin() releases FOLL_PIN pins, g0 holds FOLL_GET references: use \
             put(g0)\n    unpin(g0)\n    ^^^^^^^^^",
        ),
        (
            "pinfuzz v1\nm0 = mmap(anon-privat, pages=1)\n",
            "test.ops:2:11: unknown mapping kind `anon-privat`: expected anon-private, \
             anon-shared, memfd-shared or memfd-private\n\
             \x20   m0 = mmap(anon-privat, pages=1)\n              ^^^^^^^^^^^",
        ),
        (
            "pinfuzz v1\nm0 = mmap(anon-private, pages=1\n",
            "test.ops:2:32: expected `)` at end of line\n\
             \x20   m0 = mmap(anon-private, pages=1\n                                   ^",
        ),
        (
            "pinfuzz v1\nm0 = mmap(anon-private, pages=1, huge=yes)\n",
            "test.ops:2:34: unknown key `huge` for mmap\n\
             \x20   m0 = mmap(anon-private, pages=1, huge=yes)\n\
             \x20                                    ^^^^^^^^",
        ),
        (
            "pinfuzz v1\nm0 = mmap(anon-private, pages=1)\ng0 = pin_user_pages(m0[0..1])\n",
            "test.ops:3:1: the result of pin_user_pages is named p<N> (like p0), not `g0`\n\
             \x20   g0 = pin_user_pages(m0[0..1])\n    ^^",
        ),
        (
            "pinfuzz v1\nm0 = mmap(anon-private, pages=1)\nm0 = mmap(anon-private, pages=1)\n",
            "test.ops:3:1: m0 is already defined on line 2\n\
             \x20   m0 = mmap(anon-private, pages=1)\n    ^^",
        ),
        (
            "pinfuzz v1\nm0 = mmap(anon-private, pages=1)\ntouch(m0[0..1], write) touch\n",
            "test.ops:3:24: unexpected `touch` after `)`: one operation per line\n\
             \x20   touch(m0[0..1], write) touch\n                           ^^^^^",
        ),
        (
            "pinfuzz v1 thp=sometimes\n",
            "test.ops:1:12: thp=sometimes: expected always, madvise or never\n\
             \x20   pinfuzz v1 thp=sometimes\n               ^^^^^^^^^^^^^",
        ),
        (
            "pinfuzz v1 kernel=5.10\n",
            "test.ops:1:12: kernel=5.10 names no kernel profile (known: 6.12, 6.1, or any)\n\
             \x20   pinfuzz v1 kernel=5.10\n               ^^^^^^^^^^^",
        ),
        (
            "pinfuzz v2\n",
            "test.ops:1:9: format version `v2` is not supported: this pinfuzz reads v1\n\
             \x20   pinfuzz v2\n            ^^",
        ),
        (
            "m0 = mmap(anon-private, pages=1)\n",
            "test.ops:1:1: expected the header line `pinfuzz v1 ...` before the first step\n\
             \x20   m0 = mmap(anon-private, pages=1)\n    ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
        ),
        (
            "# only a comment\n",
            "test.ops:2:1: missing the header line `pinfuzz v1 ...`\n    \n    ^",
        ),
        (
            "pinfuzz v1\nc0 = fork()\n# dangling\n",
            "test.ops:3:1: comment at the end of the file belongs to no step: comments go above \
             the step they describe\n    # dangling\n    ^^^^^^^^^^",
        ),
        (
            "pinfuzz v1\n# a\u{1}b\nc0 = fork()\n",
            "test.ops:2:1: comment holds control character U+0001\n    # a\u{1}b\n    ^^^^^",
        ),
    ];
    let mismatches: Vec<String> = cases
        .iter()
        .filter_map(|(input, expected)| {
            let got = strict_error(input);
            (got != *expected)
                .then(|| format!("input:\n{input}got:\n{got}\nexpected:\n{expected}\n"))
        })
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn lenient_mode_keeps_what_it_can_and_says_what_it_changed() {
    let input = "\
# an old corpus file
pinfuzz v1 thp=madvise colour=blue kernel=6.1
m3 = mmap(anon-private, pages=2000, huge=yes)
m5 = mmap(memfd-shared, pages=4)
# pins the first pages
p9 = pin_user_pages(m3[0..4], write|sticky)
bogus(m3)
touch(m9[0..1], write)
g1 = get_user_pages(m5[0..2], longterm)
unpin(p9)
# second unpin
unpin(p9)
c0 = fork()
exit(c0)
c0: touch(m3[0..1], read)
";
    let (program, warnings) = Program::parse_lenient(input, "old.ops");
    assert_eq!(
        program.to_string(),
        "\
# an old corpus file
pinfuzz v1 thp=madvise use_zero_page=1 kernel=6.1
m0 = mmap(anon-private, pages=1024, prot=rw)
m1 = mmap(memfd-shared, pages=4, prot=rw)
# pins the first pages
p0 = pin_user_pages(m0[0..4], write)
get_user_pages(m1[0..2], none)
unpin(p0)
# second unpin
c0 = fork()
exit(c0)
"
    );
    let summary: Vec<String> = warnings
        .iter()
        .map(|w| format!("{}:{} {}", w.line, w.col, w.message))
        .collect();
    assert_eq!(
        summary,
        [
            "2:24 unknown header key `colour` (expected thp, use_zero_page, kernel) (ignored)",
            "3:25 pages=2000 clamped to 1024",
            "3:37 unknown key `huge` for mmap (ignored)",
            "6:37 unknown FOLL flag `sticky` (expected write, longterm, force or none) (ignored)",
            "7:1 unknown operation `bogus` (expected mmap, munmap, mprotect, madvise, touch, \
             get_user_pages[_fast|_remote], pin_user_pages[_fast|_remote], put, unpin, \
             unpin_dirty, split_huge_pages, fork or exit) (line dropped)",
            "8:7 m9 is not defined: name the result of a mmap `m9 = ...` above (line dropped)",
            "9:31 longterm cleared: FOLL_LONGTERM is only valid with pin_user_pages*, not \
             get_user_pages",
            "12:1 dropped: p0 was already released",
            "15:1 dropped: c0 runs this step but has already exited",
        ]
    );
    assert!(
        warnings[0]
            .to_string()
            .starts_with("old.ops:2:24: warning: ")
    );
}

#[test]
fn lenient_mode_reads_files_without_header_or_with_trailing_comments() {
    let (program, warnings) =
        Program::parse_lenient("m0 = mmap(anon-private, pages=2)\n# the end\n", "x.ops");
    assert_eq!(
        program.to_string(),
        "pinfuzz v1 thp=always use_zero_page=1 kernel=any\nmmap(anon-private, pages=2, prot=rw)\n"
    );
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].message.starts_with("expected the header line"));
    assert!(
        warnings[1]
            .message
            .starts_with("comment at the end of the file")
    );
}

#[test]
fn step_display_is_the_compact_trace_form() {
    let program = strict(COW);
    let lines: Vec<String> = program.steps.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "m0 = mmap(anon-private, pages=1, prot=rw)",
            "touch(m0[0..1], write)",
            "mprotect(m0[0..1], r)",
            "p0 = pin_user_pages_fast(m0[0..1], longterm)",
            "c0 = fork()",
            "c0: touch(m0[0..1], read)",
            "c0: p1 = pin_user_pages_remote(parent, m0[0..1], none)",
            "unpin(p0)",
            "exit(c0)",
        ]
    );
}
