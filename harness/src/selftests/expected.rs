//! Failures that are known and explained for a kernel.
//!
//! A selftest built from a newer tree than the kernel it runs on (6.1's tree
//! has no cow.c or gup_longterm.c, see `source`) checks behaviour the older
//! kernel does not have. Such failures are listed here, each with the kernel
//! source that explains it. A failing case that matches an entry is
//! reported as "expected failure" with the entry's reason — never as a pass
//! — and does not make the run fail; every other failure does.
//!
//! Keep entries narrow: one behaviour, the exact cases it breaks, the
//! versions it applies to.

use regex::Regex;
use serde::Serialize;

use super::tap::{TapCase, Verdict};

/// One known failure.
#[derive(Clone, Copy, Debug)]
pub struct ExpectedFailure {
    /// The test program (`cow`, `gup_longterm`, ...).
    pub test: &'static str,
    /// Applies to kernels older than this upstream version (major, minor).
    pub before: (u32, u32),
    /// Regex over the case's scenario (`[RUN] ...` text, see `tap`).
    pub scenario: &'static str,
    /// Regex over the result line's message.
    pub message: &'static str,
    /// Why it fails, with the kernel source behind it.
    pub reason: &'static str,
}

/// The table.
pub const EXPECTED_FAILURES: &[ExpectedFailure] = &[ExpectedFailure {
    test: "cow",
    before: (6, 2),
    scenario: r"^R/O longterm GUP(-fast)? pin \.\.\. with (shared zeropage|memfd|tmpfile|huge zeropage|memfd hugetlb \(\d+ kB\))$",
    message: r"^Longterm R/O pin is reliable$",
    reason: "before 6.2 a R/O FOLL_LONGTERM pin does not unshare a non-anonymous page in a \
             private (COW) mapping: 6.1's gup_must_unshare() returns false for !PageAnon pages \
             (include/linux/mm.h: `if (!PageAnon(page)) return false;`), so the pin holds the \
             shared zeropage, huge zeropage or page-cache page, and the test's later write \
             through the page table COWs the mapping away from the pinned page. 6.2 added the \
             unshare (series \"mm/gup: reliable R/O long-term pinning in COW mappings\"; 6.12: \
             mm/internal.h gup_must_unshare() returns is_cow_mapping() for !PageAnon with \
             FOLL_LONGTERM, and FAULT_FLAG_UNSHARE breaks COW on anything in a COW mapping)",
}];

/// A failure matched to its explanation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explained {
    /// The entry's reason.
    pub reason: &'static str,
}

/// The upstream (major, minor) of a release string (`6.1.0-56-amd64`,
/// `6.12.117+deb12-amd64`, `6.13.0-rc1`).
pub fn major_minor(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The entry that explains `case` of `test` on a kernel of `version`, if
/// the case failed and one does.
pub fn explain(test: &str, version: (u32, u32), case: &TapCase) -> Option<Explained> {
    if !matches!(case.verdict, Verdict::Fail) {
        return None;
    }
    let scenario = case.context.as_deref().unwrap_or("");
    EXPECTED_FAILURES
        .iter()
        .find(|e| {
            e.test == test
                && version < e.before
                && regex_matches(e.scenario, scenario)
                && regex_matches(e.message, &case.description)
        })
        .map(|e| Explained { reason: e.reason })
}

fn regex_matches(pattern: &str, text: &str) -> bool {
    // The table is constant: a bad pattern is a programming error, caught by
    // the unit test that compiles every entry.
    Regex::new(pattern).is_ok_and(|re| re.is_match(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selftests::tap;

    #[test]
    fn every_pattern_compiles() {
        for e in EXPECTED_FAILURES {
            Regex::new(e.scenario).expect(e.scenario);
            Regex::new(e.message).expect(e.message);
            assert!(e.reason.len() > 80, "explain {} properly", e.scenario);
        }
    }

    #[test]
    fn releases_give_upstream_versions() {
        assert_eq!(major_minor("6.1.0-56-amd64"), Some((6, 1)));
        assert_eq!(major_minor("6.12.117+deb12-amd64"), Some((6, 12)));
        assert_eq!(major_minor("6.13.0-rc1"), Some((6, 13)));
        assert_eq!(major_minor("garbage"), None);
    }

    #[test]
    fn the_6_1_unshare_cases_are_explained_only_on_6_1() {
        let out = tap::parse(
            "# [RUN] R/O longterm GUP pin ... with shared zeropage\n\
             not ok 1 Longterm R/O pin is reliable\n\
             # [RUN] R/O longterm GUP-fast pin ... with memfd hugetlb (2048 kB)\n\
             not ok 2 Longterm R/O pin is reliable\n\
             # [RUN] R/O GUP pin on R/O-mapped shared page ... with base page\n\
             not ok 3 Longterm R/O pin is reliable\n\
             # [RUN] R/O longterm GUP pin ... with tmpfile\n\
             ok 4 Longterm R/O pin is reliable\n",
        );
        let on = |v, i: usize| explain("cow", v, &out.cases[i]).is_some();
        assert!(on((6, 1), 0));
        assert!(on((6, 1), 1));
        // An anon case is not covered: 6.1 unshares anon pages.
        assert!(!on((6, 1), 2));
        // A pass needs no explanation.
        assert!(!on((6, 1), 3));
        // 6.12 must pass them.
        assert!(!on((6, 12), 0));
        assert!(explain("gup_longterm", (6, 1), &out.cases[0]).is_none());
    }
}
