//! The selftests pinfuzz knows how to build and run: the GUP tests of
//! `tools/testing/selftests/mm` (`vm` before 6.3), with the invocations
//! the kernel's own `run_vmtests.sh` uses.

use std::time::Duration;

use anyhow::{Result, bail};

/// One selftest program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestDef {
    /// The name on the command line and in reports.
    pub name: &'static str,
    /// The source file's stem in the selftests directory.
    pub source: &'static str,
    /// Argument lists, one run each (from `run_vmtests.sh`).
    pub invocations: &'static [&'static [&'static str]],
    /// Longest run of one invocation in a TCG guest.
    pub timeout: Duration,
    /// What it covers.
    pub about: &'static str,
}

impl TestDef {
    /// One label per invocation: the name, then the arguments.
    pub fn labels(&self) -> Vec<String> {
        self.invocations
            .iter()
            .map(|args| {
                std::iter::once(self.name)
                    .chain(args.iter().copied())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }
}

/// Every known test, in the order they run.
pub const TESTS: &[TestDef] = &[
    TestDef {
        name: "cow",
        source: "cow",
        invocations: &[&[]],
        timeout: Duration::from_secs(1800),
        about: "COW after fork() with and without GUP pins (vmsplice, R/O longterm pins, \
                io_uring when built with liburing) on base pages, swapped-out pages, every THP \
                size, hugetlb sizes, zero pages, memfd and tmpfile",
    },
    TestDef {
        name: "gup_longterm",
        source: "gup_longterm",
        invocations: &[&[]],
        timeout: Duration::from_secs(1200),
        about: "FOLL_LONGTERM R/W and R/O pins (GUP and GUP-fast) of memfd, tmpfile, cwd-fs and \
                hugetlb memfd pages in MAP_SHARED and MAP_PRIVATE mappings",
    },
    TestDef {
        name: "gup_test",
        source: "gup_test",
        invocations: &[&["-u"], &["-a"], &["-ct", "-F", "0x1", "0", "19", "0x1000"]],
        timeout: Duration::from_secs(600),
        about: "get_user_pages_fast (-u) and pin_user_pages_fast (-a) of 128 MiB of written \
                anonymous pages, and DUMP_USER_PAGES_TEST (-ct -F 0x1: get_user_pages with \
                FOLL_WRITE over a MADV_HUGEPAGE range, dump_page() of pages 0, 19 and 0x1000)",
    },
];

/// The default selection: every test.
pub fn default_names() -> Vec<String> {
    TESTS.iter().map(|t| t.name.to_string()).collect()
}

/// The tests called `names` (comma lists allowed), in catalogue order,
/// each once.
pub fn select(names: &[String]) -> Result<Vec<&'static TestDef>> {
    let wanted: Vec<&str> = names
        .iter()
        .flat_map(|n| n.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    for name in &wanted {
        if !TESTS.iter().any(|t| t.name == *name) {
            bail!(
                "unknown selftest {name:?}; known: {}",
                TESTS.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
            );
        }
    }
    if wanted.is_empty() {
        bail!("no selftest selected");
    }
    Ok(TESTS.iter().filter(|t| wanted.contains(&t.name)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_keeps_catalogue_order_and_rejects_unknown_names() {
        let picked = select(&["gup_test,cow".into(), "cow".into()]).unwrap();
        let names: Vec<&str> = picked.iter().map(|t| t.name).collect();
        assert_eq!(names, ["cow", "gup_test"]);
        let err = select(&["cow,nope".into()]).unwrap_err().to_string();
        assert!(
            err.contains("nope") && err.contains("gup_longterm"),
            "{err}"
        );
        assert!(select(&[",".into()]).is_err());
        assert_eq!(select(&default_names()).unwrap().len(), TESTS.len());
    }

    #[test]
    fn labels_name_each_invocation() {
        let gup = TESTS.iter().find(|t| t.name == "gup_test").unwrap();
        assert_eq!(
            gup.labels(),
            [
                "gup_test -u",
                "gup_test -a",
                "gup_test -ct -F 0x1 0 19 0x1000"
            ]
        );
        assert_eq!(TESTS[0].labels(), ["cow"]);
    }
}
