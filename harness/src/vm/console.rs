//! Kernel console parsing: a table of regex patterns that turn a guest's
//! console output into crash reports with stable titles.
//!
//! The table is data, in the manner of syzkaller's `pkg/report/linux.go`:
//! each row is a regex for the line that starts an incident, a title
//! template (`$1`… are the regex's groups; `{rip}` is the function in the
//! next `RIP:` line, as oopses print it), and a [`CrashKind`]. Titles
//! contain no addresses, pids or times, so the same bug gets the same
//! title on every run and reports can be deduplicated by title. Golden
//! files of real consoles under `harness/testdata/console/` pin the
//! behaviour (see `tests`).

use std::fmt;
use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// What kind of incident a report is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CrashKind {
    /// `Kernel panic - not syncing`: the guest is gone.
    Panic,
    /// An oops: page fault, NULL dereference, general protection fault.
    Oops,
    /// `kernel BUG at` or another `BUG:` line.
    Bug,
    /// `WARNING: CPU: … at …` (a `WARN()` fired; the guest goes on, tainted).
    Warning,
    /// `BUG: Bad page state` / `Bad page map` / `Bad rss-counter state`.
    BadPage,
    /// `refcount_t: …` saturation or underflow.
    Refcount,
    /// A KASAN report.
    Kasan,
    /// A UBSAN report.
    Ubsan,
    /// `watchdog: BUG: soft lockup`.
    SoftLockup,
    /// `INFO: task … blocked for more than … seconds`.
    HungTask,
    /// An RCU stall.
    RcuStall,
    /// The OOM killer killed a process.
    Oom,
    /// The agent gave up (`pinfuzz-agent: FATAL`).
    AgentFatal,
    /// QEMU exited or the channel broke while nothing on the console explains it.
    Lost,
    /// Neither the console nor the channel said anything for too long.
    NoOutput,
    /// A program did not finish within its timeout (host-side deadline).
    Timeout,
}

impl CrashKind {
    /// Stable lower-case name (`bad-page`), as in golden files and JSON.
    pub fn name(self) -> &'static str {
        match self {
            CrashKind::Panic => "panic",
            CrashKind::Oops => "oops",
            CrashKind::Bug => "bug",
            CrashKind::Warning => "warning",
            CrashKind::BadPage => "bad-page",
            CrashKind::Refcount => "refcount",
            CrashKind::Kasan => "kasan",
            CrashKind::Ubsan => "ubsan",
            CrashKind::SoftLockup => "soft-lockup",
            CrashKind::HungTask => "hung-task",
            CrashKind::RcuStall => "rcu-stall",
            CrashKind::Oom => "oom",
            CrashKind::AgentFatal => "agent-fatal",
            CrashKind::Lost => "lost",
            CrashKind::NoOutput => "no-output",
            CrashKind::Timeout => "timeout",
        }
    }

    /// The kind named `name` ([`CrashKind::name`]).
    pub fn from_name(name: &str) -> Option<CrashKind> {
        ALL_KINDS.into_iter().find(|k| k.name() == name)
    }

    /// The guest cannot go on after this (it is dead or wedged); the others
    /// leave it running but tainted.
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            CrashKind::Panic
                | CrashKind::Oops
                | CrashKind::AgentFatal
                | CrashKind::Lost
                | CrashKind::NoOutput
                | CrashKind::Timeout
        )
    }
}

const ALL_KINDS: [CrashKind; 16] = [
    CrashKind::Panic,
    CrashKind::Oops,
    CrashKind::Bug,
    CrashKind::Warning,
    CrashKind::BadPage,
    CrashKind::Refcount,
    CrashKind::Kasan,
    CrashKind::Ubsan,
    CrashKind::SoftLockup,
    CrashKind::HungTask,
    CrashKind::RcuStall,
    CrashKind::Oom,
    CrashKind::AgentFatal,
    CrashKind::Lost,
    CrashKind::NoOutput,
    CrashKind::Timeout,
];

impl fmt::Display for CrashKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One row of the pattern table.
struct Pattern {
    re: &'static str,
    title: &'static str,
    kind: CrashKind,
}

/// The table, most specific first: a line is matched against the rows in
/// order and the first match wins.
const PATTERNS: &[Pattern] = &[
    Pattern {
        re: r"BUG: KASAN: ([a-z\-]+) in ([A-Za-z0-9_.]+)",
        title: "KASAN: $1 in $2",
        kind: CrashKind::Kasan,
    },
    Pattern {
        re: r"UBSAN: ([a-z\-]+(?: [a-z\-]+)*) in (\S+?)(?::\d+)*$",
        title: "UBSAN: $1 in $2",
        kind: CrashKind::Ubsan,
    },
    Pattern {
        re: r"BUG: Bad page state in process",
        title: "BUG: Bad page state",
        kind: CrashKind::BadPage,
    },
    Pattern {
        re: r"BUG: Bad page map in process",
        title: "BUG: Bad page map",
        kind: CrashKind::BadPage,
    },
    Pattern {
        re: r"BUG: Bad rss-counter state",
        title: "BUG: Bad rss-counter state",
        kind: CrashKind::BadPage,
    },
    Pattern {
        re: r"refcount_t: ([a-z0-9 ;\-]+?)\.?$",
        title: "refcount bug: $1",
        kind: CrashKind::Refcount,
    },
    Pattern {
        re: r"watchdog: BUG: soft lockup - CPU#\d+ stuck for",
        title: "BUG: soft lockup in {rip}",
        kind: CrashKind::SoftLockup,
    },
    Pattern {
        re: r"INFO: task \S+ blocked for more than \d+ seconds",
        title: "INFO: task hung",
        kind: CrashKind::HungTask,
    },
    Pattern {
        re: r"rcu: INFO: rcu_\w+ (?:self-)?detected stall",
        title: "INFO: rcu detected stall",
        kind: CrashKind::RcuStall,
    },
    Pattern {
        re: r"BUG: kernel NULL pointer dereference",
        title: "BUG: kernel NULL pointer dereference in {rip}",
        kind: CrashKind::Oops,
    },
    Pattern {
        re: r"BUG: unable to handle page fault",
        title: "BUG: unable to handle page fault in {rip}",
        kind: CrashKind::Oops,
    },
    Pattern {
        re: r"general protection fault",
        title: "general protection fault in {rip}",
        kind: CrashKind::Oops,
    },
    Pattern {
        re: r"kernel BUG at ([^\s!]+?)(?::\d+)?!",
        title: "kernel BUG at $1",
        kind: CrashKind::Bug,
    },
    Pattern {
        re: r"WARNING: CPU: \d+ PID: \d+ at \S+ ([A-Za-z0-9_.]+)\+0x",
        title: "WARNING in $1",
        kind: CrashKind::Warning,
    },
    Pattern {
        re: r"WARNING: at \S+ ([A-Za-z0-9_.]+)\+0x",
        title: "WARNING in $1",
        kind: CrashKind::Warning,
    },
    Pattern {
        re: r"^Oops: ",
        title: "Oops in {rip}",
        kind: CrashKind::Oops,
    },
    Pattern {
        re: r"^BUG: ([^:\[]+?)(?: at | in |:|$)",
        title: "BUG: $1",
        kind: CrashKind::Bug,
    },
    Pattern {
        re: r"Kernel panic - not syncing: (.+?)(?: exitcode=.*)?$",
        title: "kernel panic: $1",
        kind: CrashKind::Panic,
    },
    Pattern {
        re: r"Out of memory: Killed process \d+ \((\S+)\)",
        title: "out of memory: killed $1",
        kind: CrashKind::Oom,
    },
    Pattern {
        re: r"pinfuzz-agent: FATAL: (.+)$",
        title: "agent fatal: $1",
        kind: CrashKind::AgentFatal,
    },
];

/// Lines after an incident's first line searched for its `RIP:` line.
const RIP_LOOKAHEAD: usize = 40;
/// Lines of context kept before an incident in its excerpt.
const EXCERPT_BEFORE: usize = 5;
/// Lines kept from an incident's first line on.
const EXCERPT_AFTER: usize = 120;

fn compiled() -> &'static [(Regex, &'static Pattern)] {
    static TABLE: OnceLock<Vec<(Regex, &'static Pattern)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        PATTERNS
            .iter()
            .map(|p| (Regex::new(p.re).expect("console pattern table compiles"), p))
            .collect()
    })
}

fn rip_re() -> &'static Regex {
    static RIP: OnceLock<Regex> = OnceLock::new();
    RIP.get_or_init(|| {
        Regex::new(r"RIP: [0-9a-f]{4}:([A-Za-z0-9_.]+)\+0x").expect("RIP pattern compiles")
    })
}

fn timestamp_re() -> &'static Regex {
    static TS: OnceLock<Regex> = OnceLock::new();
    TS.get_or_init(|| Regex::new(r"^\[\s*\d+\.\d+\]\s?").expect("timestamp pattern compiles"))
}

/// A line without its printk timestamp and trailing `\r`.
fn strip(line: &str) -> &str {
    let line = line.trim_end_matches(['\r', '\n']);
    match timestamp_re().find(line) {
        Some(m) => &line[m.end()..],
        None => line,
    }
}

/// One incident found in a console.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable title.
    pub title: String,
    /// Kind.
    pub kind: CrashKind,
    /// Index of the incident's first line in the scanned text.
    pub line: usize,
}

/// A crash report: the first incident of a console, with its excerpt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrashReport {
    /// Stable title (used to deduplicate).
    pub title: String,
    /// Kind.
    pub kind: CrashKind,
    /// The console lines around the incident (raw, timestamps kept).
    pub excerpt: String,
    /// Titles of later incidents in the same console.
    pub also: Vec<String>,
}

/// Every incident in `text`, in order.
pub fn scan(text: &str) -> Vec<Finding> {
    let lines: Vec<&str> = text.lines().collect();
    let mut findings: Vec<Finding> = Vec::new();
    for (i, raw) in lines.iter().enumerate() {
        let line = strip(raw);
        let Some((caps, pattern)) = compiled()
            .iter()
            .find_map(|(re, p)| re.captures(line).map(|c| (c, *p)))
        else {
            continue;
        };
        // An oops prints "BUG: unable to handle…" and then "Oops: …": the
        // second line belongs to the first incident.
        if pattern.re == r"^Oops: "
            && findings
                .last()
                .is_some_and(|f| f.kind == CrashKind::Oops && i - f.line <= 4)
        {
            continue;
        }
        let mut title = String::new();
        caps.expand(pattern.title, &mut title);
        // Out-of-tree code prints absolute source paths (`kernel BUG at
        // /tmp/build-1234/x.c`): keep the file name only, so the title
        // does not depend on where the module was built.
        if let Some(abs) = title.find(" /") {
            let (head, path) = title.split_at(abs + 1);
            let base = path.rsplit('/').next().unwrap_or(path);
            title = format!("{head}{base}");
        }
        if title.contains("{rip}") {
            let rip = lines[i..lines.len().min(i + RIP_LOOKAHEAD)]
                .iter()
                .find_map(|l| rip_re().captures(l).map(|c| c[1].to_string()))
                .unwrap_or_else(|| "?".to_string());
            title = title.replace("{rip}", &rip);
        }
        findings.push(Finding {
            title,
            kind: pattern.kind,
            line: i,
        });
    }
    findings
}

/// The crash report of `text`: its first incident, or `None` if clean.
pub fn report(text: &str) -> Option<CrashReport> {
    let findings = scan(text);
    let first = findings.first()?;
    Some(CrashReport {
        title: first.title.clone(),
        kind: first.kind,
        excerpt: excerpt(text, first.line),
        also: dedup_titles(findings[1..].iter().map(|f| f.title.clone())),
    })
}

fn dedup_titles(titles: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in titles {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// Lines `line - EXCERPT_BEFORE .. line + EXCERPT_AFTER` of `text`.
pub fn excerpt(text: &str, line: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = line.saturating_sub(EXCERPT_BEFORE);
    let end = lines.len().min(line + EXCERPT_AFTER);
    let mut out = lines[start..end].join("\n");
    out.push('\n');
    out
}

/// The last `n` lines of `text` (the excerpt of an incident the console
/// does not explain, such as QEMU being killed).
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = lines[lines.len().saturating_sub(n)..].join("\n");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn every_pattern_compiles_and_kinds_round_trip() {
        assert_eq!(compiled().len(), PATTERNS.len());
        for kind in ALL_KINDS {
            assert_eq!(CrashKind::from_name(kind.name()), Some(kind));
        }
    }

    #[test]
    fn timestamps_do_not_change_titles() {
        let a =
            "[    3.141592] WARNING: CPU: 0 PID: 57 at mm/gup.c:123 try_grab_folio+0x1a/0x2b0\n";
        let b =
            "[ 1234.000001] WARNING: CPU: 0 PID: 99 at mm/gup.c:123 try_grab_folio+0x1a/0x2b0\n";
        assert_eq!(scan(a)[0].title, "WARNING in try_grab_folio");
        assert_eq!(scan(a)[0].title, scan(b)[0].title);
        assert!(scan("[    0.000000] Linux version 6.12\n").is_empty());
        let bug = "[ 1.0] kernel BUG at /tmp/build-77/crashme.c:85!\n";
        assert_eq!(scan(bug)[0].title, "kernel BUG at crashme.c");
    }

    /// Golden files: `TITLE: …` and `KIND: …` header lines (empty title and
    /// kind `none` for a clean console), a blank line, the raw console.
    /// `PINFUZZ_UPDATE_GOLDEN=1` rewrites the headers from the parser.
    #[test]
    fn golden_consoles() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/console");
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .expect("testdata/console exists")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no golden files in {}", dir.display());
        let update = std::env::var_os("PINFUZZ_UPDATE_GOLDEN").is_some();
        let mut failures = Vec::new();
        for path in files {
            let text = fs::read_to_string(&path).expect("golden file is UTF-8");
            let (title, kind, console) = parse_golden(&text)
                .unwrap_or_else(|| panic!("{}: missing TITLE:/KIND: header", path.display()));
            let got = report(console);
            let (got_title, got_kind) = match &got {
                Some(r) => (r.title.clone(), r.kind.name().to_string()),
                None => (String::new(), "none".to_string()),
            };
            if update {
                fs::write(
                    &path,
                    format!("TITLE: {got_title}\nKIND: {got_kind}\n\n{console}"),
                )
                .expect("rewrite golden file");
            } else if (title.as_str(), kind.as_str()) != (got_title.as_str(), got_kind.as_str()) {
                failures.push(format!(
                    "{}: want {title:?}/{kind}, got {got_title:?}/{got_kind}",
                    path.display()
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    fn parse_golden(text: &str) -> Option<(String, String, &str)> {
        let rest = text.strip_prefix("TITLE:")?;
        let (title, rest) = rest.split_once('\n')?;
        let rest = rest.strip_prefix("KIND:")?;
        let (kind, rest) = rest.split_once('\n')?;
        let console = rest.strip_prefix('\n')?;
        Some((title.trim().to_string(), kind.trim().to_string(), console))
    }
}
