//! Self-checks of the program formats on one fuzzer input, for the
//! `text_roundtrip` fuzz target (which stays thin glue).
//!
//! [`text_roundtrip`] reads the input twice: as codec bytes (any bytes are
//! a valid program, whose canonical text parses strictly back to it and
//! whose encoding decodes back to it) and as text (the lenient parser never
//! panics and returns a valid program that prints canonically). It panics,
//! with the program text, when a property breaks: libFuzzer and AFL record
//! the panic as a crash.

use super::{Limits, decode_with, encode};
use crate::op::Program;

/// Steps of the programs checked. Longer programs exercise no more of the
/// formats (every line is printed and parsed alike) and only slow the
/// fuzzer down.
pub const SELFCHECK_MAX_STEPS: usize = 64;

/// Check every format property on `data`.
///
/// # Panics
///
/// When a property breaks; the message holds the program and what broke.
pub fn text_roundtrip(data: &[u8]) {
    let limits = Limits {
        max_steps: SELFCHECK_MAX_STEPS,
        ..Limits::FULL
    };
    let program = decode_with(data, &limits);
    if let Err(problems) = program.validate() {
        panic!("decode gave an invalid program: {problems:?}\n{program}");
    }
    let text = program.to_string();
    let parsed = Program::parse_strict(&text, "<decoded>")
        .unwrap_or_else(|e| panic!("canonical text does not parse:\n{e}\n--- text:\n{text}"));
    assert_eq!(parsed, program, "text → program differs\n--- text:\n{text}");
    assert_eq!(parsed.to_string(), text, "text → program → text differs");
    let bytes = encode(&program);
    assert_eq!(
        super::decode(&bytes),
        program,
        "decode(encode(p)) differs\n{text}"
    );

    let src = String::from_utf8_lossy(data);
    let (lenient, _warnings) = Program::parse_lenient(&src, "<input>");
    if let Err(problems) = lenient.validate() {
        panic!("parse_lenient gave an invalid program: {problems:?}\n{lenient}");
    }
    let text = lenient.to_string();
    let reparsed = Program::parse_strict(&text, "<lenient>")
        .unwrap_or_else(|e| panic!("lenient result does not print canonically:\n{e}\n{text}"));
    assert_eq!(
        reparsed, lenient,
        "lenient result does not read back\n{text}"
    );
    if let Ok(strict) = Program::parse_strict(&src, "<input>") {
        assert_eq!(
            strict, lenient,
            "strict and lenient disagree on a valid file"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_on_bytes_and_on_program_text() {
        text_roundtrip(&[]);
        text_roundtrip(&(0..=255u8).collect::<Vec<_>>());
        text_roundtrip(b"pinfuzz v1\nm0 = mmap(anon-private, pages=1)\ntouch(m0[0..1], write)\n");
    }
}
