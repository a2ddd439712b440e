//! Skip reasons: normalized text and what caused them.
//!
//! The selftests skip a case when the machine lacks something. Three of
//! those things pinfuzz provides in its guest — a gup_test device, swap,
//! free hugetlb pages — so a skip for one of them while pinfuzz was asked
//! to provide it means the guest setup failed, and the run says so
//! ([`SkipCause::is_setup`]). Every other skip is a property of the kernel
//! or the test program (no THP of some size, a failed MADV_COLLAPSE,
//! io_uring not built in), reported but not judged.

use serde::{Deserialize, Serialize};

/// Why a case was skipped, as far as pinfuzz can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipCause {
    /// `/sys/kernel/debug/gup_test` missing (no CONFIG_GUP_TEST and no helper module).
    NoGupTest,
    /// MADV_PAGEOUT could not swap the page out (no swap).
    NoSwap,
    /// Not enough free hugetlb pages of the size the case needs.
    NoHugetlbPages,
    /// Anything else.
    Other,
}

impl SkipCause {
    /// A short label for reports.
    pub fn label(self) -> &'static str {
        match self {
            SkipCause::NoGupTest => "no gup_test",
            SkipCause::NoSwap => "no swap",
            SkipCause::NoHugetlbPages => "no free hugetlb pages",
            SkipCause::Other => "other",
        }
    }
}

/// A skip reason with its cause.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SkipReason {
    /// The cause.
    pub cause: SkipCause,
    /// The program's message, normalized ([`normalize`]).
    pub message: String,
}

/// The message in a comparable form: whitespace collapsed, a trailing
/// period dropped, numbers (sizes, counts, addresses) replaced by `N` so
/// that "need 2 pages" and "need 4 pages" count as one reason.
pub fn normalize(message: &str) -> String {
    let words: Vec<String> = message.split_whitespace().map(mask_numbers).collect();
    let mut out = words.join(" ");
    while out.ends_with('.') {
        out.pop();
    }
    out
}

/// `word` with each decimal or `0x` hex number replaced by `N`.
fn mask_numbers(word: &str) -> String {
    let chars: Vec<char> = word.chars().collect();
    let mut out = String::with_capacity(word.len());
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let hex = chars[i] == '0'
            && chars.get(i + 1).is_some_and(|c| *c == 'x' || *c == 'X')
            && chars.get(i + 2).is_some_and(char::is_ascii_hexdigit);
        i += if hex { 2 } else { 0 };
        while chars.get(i).is_some_and(|c| {
            if hex {
                c.is_ascii_hexdigit()
            } else {
                c.is_ascii_digit()
            }
        }) {
            i += 1;
        }
        out.push('N');
    }
    out
}

/// Classify a skip from its message and the output lines of its case
/// (gup_test.c prints the real reason, "check if CONFIG_GUP_TEST is
/// enabled", on a diagnostic line and then skips with "Please run this test
/// as root").
pub fn classify(message: &str, case_lines: &[String]) -> SkipReason {
    let message = normalize(message);
    let lower = message.to_ascii_lowercase();
    let lines_say = |needle: &str| case_lines.iter().any(|l| l.contains(needle));
    let cause = if lower.contains("gup_test not available")
        || lines_say("CONFIG_GUP_TEST")
        || lines_say("/sys/kernel/debug/gup_test")
    {
        SkipCause::NoGupTest
    } else if lower.contains("madv_pageout did not work") || lower.contains("swap enabled") {
        SkipCause::NoSwap
    } else if lower.contains("free huge pages") || lower.contains("hugetlb pages") {
        SkipCause::NoHugetlbPages
    } else {
        SkipCause::Other
    };
    SkipReason { cause, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_normalize_to_one_form() {
        assert_eq!(
            normalize("  need more free huge pages \n"),
            "need more free huge pages"
        );
        assert_eq!(
            normalize("MADV_COLLAPSE failed: Invalid argument."),
            "MADV_COLLAPSE failed: Invalid argument"
        );
        assert_eq!(normalize("need 512 pages at 0x7f00,"), "need N pages at N,");
        assert_eq!(normalize("THP (2048 kB) x86_64"), "THP (N kB) xN_N");
        assert_eq!(normalize("a\tb  c"), "a b c");
    }

    #[test]
    fn the_three_provided_things_are_recognized() {
        let none: &[String] = &[];
        let cases = [
            ("gup_test not available", SkipCause::NoGupTest),
            (
                "MADV_PAGEOUT did not work, is swap enabled?",
                SkipCause::NoSwap,
            ),
            ("need more free huge pages", SkipCause::NoHugetlbPages),
            ("Did not get a THP populated", SkipCause::Other),
            ("MADV_COLLAPSE failed: Invalid argument", SkipCause::Other),
        ];
        for (message, cause) in cases {
            assert_eq!(classify(message, none).cause, cause, "{message}");
        }
        // gup_test.c's misleading skip message, explained by its diagnostic.
        let lines = vec![
            "# check if CONFIG_GUP_TEST is enabled in kernel config".to_string(),
            "ok 1 # SKIP Please run this test as root".to_string(),
        ];
        let reason = classify("Please run this test as root", &lines);
        assert_eq!(reason.cause, SkipCause::NoGupTest);
        assert_eq!(reason.message, "Please run this test as root");
        assert!(SkipCause::NoSwap.label().contains("swap"));
    }
}
