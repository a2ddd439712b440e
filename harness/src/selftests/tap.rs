//! Parsing the TAP output of the kernel's selftests into cases.
//!
//! kselftest programs print TAP 13 (`tools/testing/selftests/kselftest.h`):
//! `TAP version 13`, a plan `1..N`, one `ok N MSG` / `not ok N MSG` per
//! case, directives after `# ` (`ok 5 # SKIP need more free huge pages`,
//! `ok 7 # XFAIL Leak from child into parent`, `not ok 3 # error MSG`),
//! diagnostics as `# TEXT`, `Bail out! MSG` when the program gives up, and
//! `# Totals: pass:P fail:F xfail:X xpass:Y skip:S error:E` at exit.
//!
//! The mm selftests do not name their cases on the result line: they print
//! `# [RUN] <scenario>` first and then a verdict message ("No leak from
//! parent into child"). A [`TapCase`] keeps both: the last `[RUN]`
//! diagnostic before the result is its `context`. It also keeps every
//! output line since the previous result, so a failure can be shown with
//! the lines that explain it.
//!
//! Lines that are not TAP (a program's stray output, a shell's "Killed")
//! are kept with the next case and otherwise ignored; a missing plan or
//! missing results are for the caller to judge (see `summary`).

use serde::{Deserialize, Serialize};

/// What a result line says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// `ok N` without a directive.
    Pass,
    /// `not ok N` without a directive.
    Fail,
    /// `# SKIP` (on `ok` or `not ok`: TAP counts both as skipped).
    Skip,
    /// `ok N # XFAIL` (or `# TODO`): a failure the test itself expects.
    Xfail,
    /// `ok N # XPASS`: a case the test expected to fail passed.
    Xpass,
    /// `not ok N # error`: the case could not be evaluated.
    Error,
}

/// One result line with its context.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapCase {
    /// The number on the result line.
    pub number: u32,
    /// The verdict.
    pub verdict: Verdict,
    /// The text between the number and the directive (often the verdict
    /// message, empty for `ok N # SKIP reason`).
    pub description: String,
    /// The text after the directive keyword: the skip reason, the XFAIL
    /// message (empty without a directive).
    pub directive_text: String,
    /// The last `# [RUN] ...` diagnostic before this result, without the
    /// `[RUN] ` prefix: the scenario the mm selftests ran.
    pub context: Option<String>,
    /// The output lines since the previous result, ending with this result line.
    pub lines: Vec<String>,
}

impl TapCase {
    /// A name for humans: the scenario and the verdict message.
    pub fn name(&self) -> String {
        let message = if self.description.is_empty() {
            self.directive_text.as_str()
        } else {
            self.description.as_str()
        };
        match (&self.context, message.is_empty()) {
            (Some(context), true) => context.clone(),
            (Some(context), false) => format!("{context}: {message}"),
            (None, false) => message.to_string(),
            (None, true) => format!("case {}", self.number),
        }
    }

    /// The result line itself.
    pub fn result_line(&self) -> &str {
        self.lines.last().map_or("", String::as_str)
    }
}

/// The plan line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// N in `1..N`.
    pub count: u32,
    /// The reason of `1..0 # SKIP reason` (the whole program skipped).
    pub skip_all: Option<String>,
}

/// The `# Totals:` line kselftest prints at exit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// `pass:`
    pub pass: u32,
    /// `fail:`
    pub fail: u32,
    /// `xfail:`
    pub xfail: u32,
    /// `xpass:`
    pub xpass: u32,
    /// `skip:`
    pub skip: u32,
    /// `error:`
    pub error: u32,
}

/// A parsed TAP stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapOutput {
    /// `TAP version N`, if printed.
    pub version: Option<u32>,
    /// The plan, if printed.
    pub plan: Option<Plan>,
    /// Result lines in order.
    pub cases: Vec<TapCase>,
    /// The message of `Bail out!`, if the program gave up.
    pub bail_out: Option<String>,
    /// The `# Totals:` line, if printed.
    pub totals: Option<Totals>,
    /// Output lines after the last result (diagnostics, totals, stray output).
    pub trailing: Vec<String>,
}

impl TapOutput {
    /// Whether the output looks like TAP at all (a version, a plan or a result).
    pub fn is_tap(&self) -> bool {
        self.version.is_some() || self.plan.is_some() || !self.cases.is_empty()
    }

    /// Number of cases with `verdict`.
    pub fn count(&self, verdict: Verdict) -> usize {
        self.cases.iter().filter(|c| c.verdict == verdict).count()
    }
}

/// Parse a program's output (stdout and stderr interleaved).
pub fn parse(text: &str) -> TapOutput {
    let mut out = TapOutput::default();
    let mut context: Option<String> = None;
    let mut pending: Vec<String> = Vec::new();
    for raw in text.lines() {
        // The serial console and some programs end lines with \r.
        let line = raw.trim_end_matches('\r');
        pending.push(line.to_string());
        if let Some(v) = line.strip_prefix("TAP version ") {
            out.version = v.trim().parse().ok();
        } else if let Some(plan) = parse_plan(line) {
            out.plan = Some(plan);
        } else if let Some(msg) = line.strip_prefix("Bail out!") {
            out.bail_out = Some(msg.trim().to_string());
        } else if let Some(diag) = line.strip_prefix('#') {
            let diag = diag.trim();
            if let Some(run) = diag.strip_prefix("[RUN]") {
                context = Some(run.trim().to_string());
            } else if let Some(totals) = diag.strip_prefix("Totals:") {
                out.totals = parse_totals(totals);
            }
        } else if let Some(mut case) = parse_result(line) {
            case.context = context.clone();
            case.lines = std::mem::take(&mut pending);
            out.cases.push(case);
        }
    }
    out.trailing = pending;
    out
}

/// `1..N` or `1..0 # SKIP reason`.
fn parse_plan(line: &str) -> Option<Plan> {
    let rest = line.strip_prefix("1..")?;
    let (count, tail) = match rest.split_once(char::is_whitespace) {
        Some((count, tail)) => (count, tail.trim()),
        None => (rest, ""),
    };
    let count = count.parse().ok()?;
    let skip_all = tail
        .strip_prefix('#')
        .map(str::trim)
        .and_then(|t| strip_keyword(t, "SKIP"))
        .map(|r| r.trim().to_string());
    Some(Plan { count, skip_all })
}

/// `ok N ...` / `not ok N ...`.
fn parse_result(line: &str) -> Option<TapCase> {
    let (ok, rest) = if let Some(rest) = line.strip_prefix("ok ") {
        (true, rest)
    } else if let Some(rest) = line.strip_prefix("not ok ") {
        (false, rest)
    } else {
        return None;
    };
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let number = rest[..digits].parse().ok()?;
    let rest = &rest[digits..];
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    let (description, directive, directive_text) = split_directive(rest.trim_start());
    let verdict = match (ok, directive) {
        (_, Some(Directive::Skip)) => Verdict::Skip,
        (true, Some(Directive::Xfail | Directive::Todo)) => Verdict::Xfail,
        (false, Some(Directive::Todo)) => Verdict::Xfail,
        (true, Some(Directive::Xpass)) => Verdict::Xpass,
        (false, Some(Directive::Error)) => Verdict::Error,
        (true, None | Some(Directive::Error)) => Verdict::Pass,
        (false, _) => Verdict::Fail,
    };
    Some(TapCase {
        number,
        verdict,
        description,
        directive_text,
        context: None,
        lines: Vec::new(),
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Directive {
    Skip,
    Todo,
    Xfail,
    Xpass,
    Error,
}

/// Split `DESCRIPTION # DIRECTIVE TEXT`. A `#` only starts a directive at
/// the start or after a space, and only when a directive keyword follows;
/// kselftest's `name #  message` (two spaces, no keyword) keeps the
/// message as the directive text without a directive.
fn split_directive(rest: &str) -> (String, Option<Directive>, String) {
    let mut search = 0;
    while let Some(found) = rest[search..].find('#') {
        let at = search + found;
        search = at + 1;
        if at > 0 && !rest[..at].ends_with(' ') {
            continue;
        }
        let after = rest[at + 1..].trim_start();
        for (word, directive) in [
            ("SKIP", Directive::Skip),
            ("TODO", Directive::Todo),
            ("XFAIL", Directive::Xfail),
            ("XPASS", Directive::Xpass),
            ("error", Directive::Error),
        ] {
            if let Some(text) = strip_keyword(after, word) {
                return (
                    rest[..at].trim().to_string(),
                    Some(directive),
                    text.trim().to_string(),
                );
            }
        }
        if rest[at + 1..].starts_with("  ") {
            return (
                rest[..at].trim().to_string(),
                None,
                after.trim().to_string(),
            );
        }
    }
    (rest.trim().to_string(), None, String::new())
}

/// `text` without a leading `word` (any case), if the word ends there.
fn strip_keyword<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let head = text.get(..word.len())?;
    let tail = &text[word.len()..];
    (head.eq_ignore_ascii_case(word) && (tail.is_empty() || tail.starts_with(char::is_whitespace)))
        .then_some(tail)
}

/// ` pass:1 fail:0 xfail:0 xpass:0 skip:2 error:0`.
fn parse_totals(text: &str) -> Option<Totals> {
    let mut totals = Totals::default();
    for field in text.split_whitespace() {
        let (key, value) = field.split_once(':')?;
        let value: u32 = value.parse().ok()?;
        match key {
            "pass" => totals.pass = value,
            "fail" => totals.fail = value,
            "xfail" => totals.xfail = value,
            "xpass" => totals.xpass = value,
            "skip" => totals.skip = value,
            "error" => totals.error = value,
            _ => {}
        }
    }
    Some(totals)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of cow.c's output on 6.12 (abridged from a real run).
    const COW: &str = "TAP version 13
# [INFO] detected PMD size: 2048 KiB
# [INFO] detected THP size: 16 KiB
1..5
# [INFO] Anonymous memory tests in private mappings
# [RUN] Basic COW after fork() ... with base page
ok 1 No leak from parent into child
# [RUN] Basic COW after fork() ... with swapped out base page
ok 2 # SKIP MADV_PAGEOUT did not work, is swap enabled?
# [RUN] vmsplice() + unmap in child ... with hugetlb (2048 kB)
ok 3 # XFAIL Leak from child into parent
# [RUN] R/O longterm GUP pin ... with shared zeropage
not ok 4 Longterm R/O pin is reliable
# [RUN] R/O longterm GUP-fast pin ... with memfd
# [INFO] PIN_LONGTERM_TEST_STOP failed
not ok 5 # error something odd
Bail out! 1 out of 5 tests failed
# Totals: pass:1 fail:1 xfail:1 xpass:0 skip:1 error:1
";

    #[test]
    fn cow_output_parses_into_cases_with_their_scenarios() {
        let tap = parse(COW);
        assert_eq!(tap.version, Some(13));
        assert_eq!(
            tap.plan,
            Some(Plan {
                count: 5,
                skip_all: None
            })
        );
        let verdicts: Vec<Verdict> = tap.cases.iter().map(|c| c.verdict).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Pass,
                Verdict::Skip,
                Verdict::Xfail,
                Verdict::Fail,
                Verdict::Error
            ]
        );
        let skip = &tap.cases[1];
        assert_eq!(skip.description, "");
        assert_eq!(
            skip.directive_text,
            "MADV_PAGEOUT did not work, is swap enabled?"
        );
        assert_eq!(
            skip.context.as_deref(),
            Some("Basic COW after fork() ... with swapped out base page")
        );
        let fail = &tap.cases[3];
        assert_eq!(
            fail.name(),
            "R/O longterm GUP pin ... with shared zeropage: Longterm R/O pin is reliable"
        );
        assert_eq!(fail.result_line(), "not ok 4 Longterm R/O pin is reliable");
        assert_eq!(
            fail.lines,
            [
                "# [RUN] R/O longterm GUP pin ... with shared zeropage",
                "not ok 4 Longterm R/O pin is reliable"
            ]
        );
        // The [INFO] line belongs to the case it precedes.
        assert_eq!(tap.cases[4].lines.len(), 3);
        assert_eq!(tap.bail_out.as_deref(), Some("1 out of 5 tests failed"));
        assert_eq!(
            tap.totals,
            Some(Totals {
                pass: 1,
                fail: 1,
                xfail: 1,
                xpass: 0,
                skip: 1,
                error: 1
            })
        );
        assert_eq!(tap.trailing.len(), 2);
        assert_eq!(tap.count(Verdict::Skip), 1);
    }

    #[test]
    fn directives_need_a_keyword_and_a_word_boundary() {
        let tap = parse(
            "ok 1 value #3 is fine\n\
             ok 2 name #  with a message\n\
             ok 3 # skip lower case\n\
             not ok 4 # TODO not yet\n\
             ok 5 # SKIPPED is not a directive\n\
             not ok 6 # SKIP on a not ok\n\
             ok 7 # XPASS surprise\n\
             ok 8\n",
        );
        let got: Vec<(Verdict, &str, &str)> = tap
            .cases
            .iter()
            .map(|c| (c.verdict, c.description.as_str(), c.directive_text.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (Verdict::Pass, "value #3 is fine", ""),
                (Verdict::Pass, "name", "with a message"),
                (Verdict::Skip, "", "lower case"),
                (Verdict::Xfail, "", "not yet"),
                (Verdict::Pass, "# SKIPPED is not a directive", ""),
                (Verdict::Skip, "", "on a not ok"),
                (Verdict::Xpass, "", "surprise"),
                (Verdict::Pass, "", ""),
            ]
        );
        assert_eq!(tap.cases[7].name(), "case 8");
    }

    #[test]
    fn skip_all_plans_crlf_and_non_tap_output() {
        let tap = parse("TAP version 13\r\n1..0 # SKIP no hugetlb support\r\n");
        assert_eq!(
            tap.plan,
            Some(Plan {
                count: 0,
                skip_all: Some("no hugetlb support".into())
            })
        );
        assert!(tap.is_tap());
        // 6.1's gup_test prints plain text.
        let plain = parse("GUP_FAST_BENCHMARK: Time: get:1234 put:56 us\n");
        assert!(!plain.is_tap());
        assert_eq!(plain.trailing.len(), 1);
        // Not results: a number must follow, then a space or the end.
        let odd = parse("ok\nok x\nok 3x\nnot ok\n  ok 1 nested\n");
        assert!(odd.cases.is_empty());
    }
}
