//! Reading the TAP a C reproducer prints, to check it from Rust (tests, the
//! bench): the plan, each test line, the totals and a bail-out.

/// One `ok` / `not ok` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapTest {
    /// The test number.
    pub number: u32,
    /// `ok` (skips included).
    pub ok: bool,
    /// `ok N # SKIP ...`.
    pub skip: bool,
    /// Everything after the number.
    pub text: String,
}

/// A whole TAP output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tap {
    /// `1..N`.
    pub plan: Option<u32>,
    /// The test lines, in order.
    pub tests: Vec<TapTest>,
    /// The `Bail out!` message, if the program gave up.
    pub bail_out: Option<String>,
    /// `# ` diagnostic lines, without the `# `.
    pub diagnostics: Vec<String>,
}

impl Tap {
    /// Parse TAP text; lines that are not TAP are ignored.
    pub fn parse(text: &str) -> Tap {
        let mut tap = Tap::default();
        for line in text.lines() {
            if let Some(n) = line.strip_prefix("1..") {
                tap.plan = n.split_whitespace().next().and_then(|n| n.parse().ok());
            } else if let Some(rest) = line.strip_prefix("not ok ") {
                tap.push(rest, false);
            } else if let Some(rest) = line.strip_prefix("ok ") {
                tap.push(rest, true);
            } else if let Some(msg) = line.strip_prefix("Bail out!") {
                tap.bail_out = Some(msg.trim().to_string());
            } else if let Some(d) = line.strip_prefix("# ") {
                tap.diagnostics.push(d.to_string());
            }
        }
        tap
    }

    fn push(&mut self, rest: &str, ok: bool) {
        let (num, text) = rest.split_once(' ').unwrap_or((rest, ""));
        let Ok(number) = num.parse() else { return };
        self.tests.push(TapTest {
            number,
            ok,
            skip: text.starts_with("# SKIP"),
            text: text.to_string(),
        });
    }

    /// Every planned test ran and passed (or was skipped), no bail-out.
    pub fn all_ok(&self) -> bool {
        self.bail_out.is_none()
            && self.plan == Some(self.tests.len() as u32)
            && self.tests.iter().all(|t| t.ok)
    }

    /// The first failing test.
    pub fn first_failure(&self) -> Option<&TapTest> {
        self.tests.iter().find(|t| !t.ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproducer_output_parses() {
        let text = "TAP version 13\n1..3\n# step 1: parent m0[0]: refcount expected 1, got 1024\n\
                    ok 1 - step 0: m0 = mmap(anon-private, pages=1, prot=rw)\n\
                    not ok 2 - step 1: unpin(p0): parent m0[0]: refcount expected 1, got 1024\n\
                    ok 3 # SKIP step 2: not comparable\n\
                    # Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:0\n";
        let tap = Tap::parse(text);
        assert_eq!(tap.plan, Some(3));
        assert_eq!(tap.tests.len(), 3);
        assert!(!tap.all_ok());
        let f = tap.first_failure().unwrap();
        assert_eq!(f.number, 2);
        assert!(f.text.contains("refcount expected 1, got 1024"));
        assert!(tap.tests[2].skip && tap.tests[2].ok);
        assert_eq!(tap.diagnostics.len(), 2);
        let bail = Tap::parse("1..2\nok 1 x\nBail out! PINFUZZ_IOC_STATUS: No such device\n");
        assert_eq!(
            bail.bail_out.as_deref(),
            Some("PINFUZZ_IOC_STATUS: No such device")
        );
        assert!(!bail.all_ok());
    }
}
