//! Properties of the program formats, over random inputs:
//!
//! - any bytes decode to a valid program, on which fixup is the identity;
//! - program → text → program and text → program → text are identities
//!   (on canonical text), through the strict parser;
//! - bytes are a faithful encoding: `decode(encode(p)) == p`;
//! - fixup turns any structured program, however broken, into a valid
//!   one, is idempotent, and leaves valid programs alone;
//! - the lenient parser survives damaged text and returns valid programs.

use harness::op::{ChildId, HandleId, Header, MapId, Op, PageRange, Proc, Program, Step};
use harness::program::{decode, encode};
use proptest::prelude::*;
use reference::{Access, Advice, Foll, GupApi, MapKind, Prot, Release, ThpMode};

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..1200)
}

fn parse_back(program: &Program) -> Result<Program, TestCaseError> {
    let text = program.to_string();
    Program::parse_strict(&text, "roundtrip.ops")
        .map_err(|e| TestCaseError::fail(format!("{e}\n--- text:\n{text}")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn decoded_programs_are_valid_and_fixed_points_of_fixup(bytes in bytes()) {
        let program = decode(&bytes);
        prop_assert_eq!(program.validate(), Ok(()));
        let mut fixed = program.clone();
        let repairs = fixed.fixup_report();
        prop_assert!(repairs.is_empty(), "{:?}", repairs);
        prop_assert_eq!(fixed, program);
    }

    #[test]
    fn program_to_text_to_program_is_identity(bytes in bytes()) {
        let program = decode(&bytes);
        prop_assert_eq!(parse_back(&program)?, program);
    }

    #[test]
    fn canonical_text_to_program_to_text_is_identity(bytes in bytes()) {
        let text = decode(&bytes).to_string();
        let again = Program::parse_strict(&text, "canonical.ops")
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .to_string();
        prop_assert_eq!(again, text);
    }

    #[test]
    fn bytes_encode_every_valid_program(bytes in bytes()) {
        let program = decode(&bytes);
        let encoded = encode(&program);
        prop_assert_eq!(decode(&encoded), program.clone());
        // Encoding is canonical too: the bytes of the same program agree.
        prop_assert_eq!(encode(&decode(&encoded)), encoded);
    }

    #[test]
    fn step_display_is_one_line_and_names_results(bytes in bytes()) {
        for step in &decode(&bytes).steps {
            let line = step.to_string();
            prop_assert!(!line.contains('\n'), "{}", line);
            let named = matches!(step.op, Op::Mmap { .. } | Op::Gup { .. } | Op::Fork { .. });
            prop_assert_eq!(line.contains(" = "), named, "{}", line);
        }
    }
}

/// Any string, control characters and newlines included.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[ a-z#:=()]{0,12}",
        1 => any::<String>(),
    ]
}

fn proc() -> impl Strategy<Value = Proc> {
    prop_oneof![
        3 => Just(Proc::Parent),
        1 => (0u8..6).prop_map(|c| Proc::Child(ChildId(c))),
    ]
}

fn range() -> impl Strategy<Value = PageRange> {
    prop_oneof![
        3 => (0u16..40, 1u16..40).prop_map(|(start, len)| PageRange { start, end: start + len }),
        1 => (any::<u16>(), any::<u16>()).prop_map(|(start, end)| PageRange { start, end }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let map = (0u8..20).prop_map(MapId);
    let small = prop_oneof![3 => 0u16..600, 1 => any::<u16>()];
    let kind = prop::sample::select(vec![
        MapKind::AnonPrivate,
        MapKind::AnonShared,
        MapKind::MemfdShared,
        MapKind::MemfdPrivate,
    ]);
    let prot = prop::sample::select(vec![Prot::None, Prot::Read, Prot::ReadWrite]);
    let advice = prop::sample::select(vec![Advice::DontNeed, Advice::HugePage, Advice::NoHugePage]);
    let access = prop::sample::select(vec![Access::Read, Access::Write]);
    let api = prop::sample::select(GupApi::ALL.to_vec());
    let how = prop::sample::select(vec![Release::Put, Release::Unpin, Release::UnpinDirty]);
    let foll = prop_oneof![3 => 0u32..16, 1 => any::<u32>()].prop_map(|bits| {
        // Spread the low bits over the real flag positions most of the time.
        let spread = (bits & 1) | ((bits & 2) << 7) | ((bits & 4) << 1);
        if bits < 16 { Foll(spread) } else { Foll(bits) }
    });
    prop_oneof![
        3 => (map.clone(), kind, small.clone(), prot.clone(), small.clone())
            .prop_map(|(map, kind, pages, prot, offset)| Op::Mmap { map, kind, pages, prot, offset }),
        1 => (map.clone(), range()).prop_map(|(map, range)| Op::Munmap { map, range }),
        1 => (map.clone(), range(), prot).prop_map(|(map, range, prot)| Op::Mprotect { map, range, prot }),
        1 => (map.clone(), range(), advice).prop_map(|(map, range, advice)| Op::Madvise { map, range, advice }),
        3 => (map.clone(), range(), access).prop_map(|(map, range, access)| Op::Touch { map, range, access }),
        4 => (0u16..70, api, prop::option::of(proc()), map.clone(), range(), foll)
            .prop_map(|(h, api, target, map, range, foll)| Op::Gup {
                handle: HandleId(h), api, target, map, range, foll,
            }),
        3 => (0u16..70, how).prop_map(|(h, how)| Op::Release { handle: HandleId(h), how }),
        1 => (map, range()).prop_map(|(map, range)| Op::SplitHugePages { map, range }),
        1 => (0u8..6).prop_map(|c| Op::Fork { child: ChildId(c) }),
        1 => (0u8..6).prop_map(|c| Op::Exit { child: ChildId(c) }),
    ]
}

/// Structured programs with no regard for validity: dangling and duplicate
/// ids, numbers out of range, forbidden flags, control characters.
fn raw_program() -> impl Strategy<Value = Program> {
    let step = (proc(), op(), prop::collection::vec(text(), 0..2))
        .prop_map(|(proc, op, comments)| Step { proc, op, comments });
    let kernel = prop_oneof![
        3 => Just(None),
        1 => Just(Some("6.12".to_string())),
        1 => text().prop_map(Some),
    ];
    let thp = prop::sample::select(vec![ThpMode::Always, ThpMode::Madvise, ThpMode::Never]);
    (
        kernel,
        thp,
        any::<bool>(),
        prop::collection::vec(text(), 0..2),
        prop::collection::vec(step, 0..60),
    )
        .prop_map(|(kernel, thp, use_zero_page, comments, steps)| Program {
            header: Header {
                kernel,
                thp,
                use_zero_page,
            },
            comments,
            steps,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn fixup_makes_any_program_valid_and_is_idempotent(program in raw_program()) {
        let mut fixed = program.clone();
        let repairs = fixed.fixup_report();
        prop_assert_eq!(fixed.validate(), Ok(()));
        let mut again = fixed.clone();
        prop_assert!(again.fixup_report().is_empty());
        prop_assert_eq!(&again, &fixed);
        if program.validate().is_ok() {
            prop_assert!(repairs.is_empty());
            prop_assert_eq!(&fixed, &program);
        } else {
            prop_assert!(!repairs.is_empty() || fixed != program);
        }
        // What fixup returns prints and reads back like any valid program.
        prop_assert_eq!(parse_back(&fixed)?, fixed.clone());
        prop_assert_eq!(decode(&encode(&fixed)), fixed);
    }

    #[test]
    fn validate_and_fixup_agree(program in raw_program()) {
        // A program is valid exactly when fixup has nothing to do.
        let mut fixed = program.clone();
        let repairs = fixed.fixup_report();
        prop_assert_eq!(program.validate().is_ok(), repairs.is_empty() && fixed == program);
    }

    #[test]
    fn lenient_parser_survives_damaged_text(
        bytes in bytes(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<char>(), 0u8..3), 0..10),
    ) {
        let mut chars: Vec<char> = decode(&bytes).to_string().chars().collect();
        for (at, c, how) in edits {
            if chars.is_empty() {
                chars.push(c);
                continue;
            }
            let i = at.index(chars.len());
            match how {
                0 => chars[i] = c,
                1 => chars.insert(i, c),
                _ => {
                    chars.remove(i);
                }
            }
        }
        let damaged: String = chars.into_iter().collect();
        let (program, warnings) = Program::parse_lenient(&damaged, "damaged.ops");
        prop_assert_eq!(program.validate(), Ok(()));
        for w in &warnings {
            prop_assert!(w.line >= 1 && w.col >= 1, "{}", w);
        }
        prop_assert_eq!(parse_back(&program)?, program.clone());
        // Strict mode either agrees or reports a position inside the file.
        match Program::parse_strict(&damaged, "damaged.ops") {
            Ok(strict) => prop_assert_eq!(strict.to_string(), program.to_string()),
            Err(e) => prop_assert!(e.0.line <= damaged.lines().count() + 1, "{}", e),
        }
    }

    #[test]
    fn lenient_parser_survives_any_string(src in any::<String>()) {
        let (program, _) = Program::parse_lenient(&src, "any.ops");
        prop_assert_eq!(program.validate(), Ok(()));
        let _ = Program::parse_strict(&src, "any.ops");
    }

    #[test]
    fn lenient_equals_strict_on_canonical_text(bytes in bytes()) {
        let program = decode(&bytes);
        let (lenient, warnings) = Program::parse_lenient(&program.to_string(), "c.ops");
        prop_assert!(warnings.is_empty(), "{:?}", warnings);
        prop_assert_eq!(lenient, program);
    }
}
