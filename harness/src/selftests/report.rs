//! The text report of a selftests run: setup, a table per invocation,
//! skip reasons per test, expected failures with their explanation,
//! failures with their TAP lines, run-level problems, the verdict.

use std::fmt::Write;

use super::Report;
use super::summary::Outcome;

/// Render `report` for a terminal.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let g = &report.guest;
    let _ = writeln!(
        out,
        "kernel    {} ({}), {}",
        report.kernel, report.release, g.accel
    );
    let mut setup = vec![format!("{} MiB", g.memory_mib)];
    if g.swap_mib > 0 {
        setup.push(format!("swap {} MiB (zram)", g.swap_mib));
    }
    if g.hugetlb_pages + g.hugetlb_1g_pages > 0 {
        setup.push(format!(
            "hugetlb {} x 2 MiB + {} x 1 GiB",
            g.hugetlb_pages, g.hugetlb_1g_pages
        ));
    }
    setup.push("the kernel's own mm settings, THP always".to_string());
    let _ = writeln!(out, "guest     {}", setup.join(", "));
    let _ = writeln!(out, "gup_test  {}", g.gup_test_note);
    for e in &g.setup_errors {
        let _ = writeln!(out, "setup     error: {e}");
    }
    for n in &g.notes {
        let _ = writeln!(out, "setup     note: {n}");
    }
    for s in &report.sources {
        let cached = if s.binary.built_now {
            "built"
        } else {
            "cached"
        };
        let _ = writeln!(
            out,
            "source    {}: {} ({}), {cached} {}",
            s.test,
            s.binary.source.label,
            s.binary.source_file,
            s.binary.path.display()
        );
        if let Some(note) = &s.substitute_note {
            let _ = writeln!(out, "          note: {note}");
        }
    }

    let _ = writeln!(
        out,
        "\n{:<34} {:>5} {:>5} {:>9} {:>5} {:>5} {:>5} {:>9}  ended",
        "run", "pass", "fail", "expected", "skip", "xfail", "error", "time"
    );
    for r in &report.runs {
        let c = &r.counts;
        let _ = writeln!(
            out,
            "{:<34} {:>5} {:>5} {:>9} {:>5} {:>5} {:>5} {:>8.1}s  {}",
            r.label,
            c.pass,
            c.fail + c.xpass,
            c.expected_fail,
            c.skip,
            c.xfail,
            c.error,
            r.wall_seconds,
            r.ended
        );
    }

    let mut wrote_header = false;
    for t in &report.tests {
        for s in &t.skip_reasons {
            if !wrote_header {
                let _ = writeln!(out, "\nskip reasons");
                wrote_header = true;
            }
            let setup = if s.setup_failures > 0 {
                format!("  SETUP FAILURE x{}", s.setup_failures)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  {:<14} {:>4}  {} [{}]{setup}",
                t.test,
                s.count,
                s.reason.message,
                s.reason.cause.label()
            );
            // Name the cases of rare reasons: those are the ones to look into.
            if s.count as usize <= s.examples.len() {
                for e in &s.examples {
                    let _ = writeln!(out, "  {:<14}       {e}", "");
                }
            }
        }
    }

    expected_section(&mut out, report);
    failure_section(&mut out, report);

    let problems: Vec<(&str, &str)> = report
        .runs
        .iter()
        .flat_map(|r| {
            r.problems
                .iter()
                .map(move |p| (r.label.as_str(), p.as_str()))
        })
        .collect();
    if !problems.is_empty() {
        let _ = writeln!(out, "\nPROBLEMS");
        for (label, p) in problems {
            let _ = writeln!(out, "  {label}: {p}");
        }
        for r in &report.runs {
            for i in &r.incidents {
                let _ = writeln!(out, "  {}: console around {}:", r.label, i.title);
                for line in i.excerpt.lines() {
                    let _ = writeln!(out, "      {line}");
                }
            }
        }
    }

    let v = &report.verdict;
    let t = &report.timings;
    let _ = writeln!(
        out,
        "\n{}: {} failures, {} expected failures, {} setup skips, {} problems",
        if v.passed { "PASS" } else { "FAIL" },
        v.failures,
        v.expected_failures,
        v.setup_skips,
        v.problems
    );
    let _ = writeln!(
        out,
        "time      {:.1} s total: kernel {:.1} s, sources {:.1} s, build {:.1} s, agent {:.1} s, \
         guest {:.1} s (first boot {:.1} s, {} boot{})",
        t.total_seconds,
        t.kernel_seconds,
        t.source_seconds,
        t.build_seconds,
        t.agent_seconds,
        t.guest_seconds,
        g.boot_seconds,
        g.boots,
        if g.boots == 1 { "" } else { "s" }
    );
    out
}

/// Expected failures, grouped by their explanation (printed once).
fn expected_section(out: &mut String, report: &Report) {
    let mut groups: Vec<(&str, Vec<String>)> = Vec::new();
    for r in &report.runs {
        for c in r
            .cases
            .iter()
            .filter(|c| c.outcome == Outcome::ExpectedFail)
        {
            let why = c.explanation.unwrap_or("");
            let line = format!("{} #{}: {}", r.label, c.number, c.name);
            match groups.iter_mut().find(|(w, _)| *w == why) {
                Some((_, cases)) => cases.push(line),
                None => groups.push((why, vec![line])),
            }
        }
    }
    if groups.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nexpected failures (explained, not counted as failures)"
    );
    for (why, cases) in groups {
        for case in cases {
            let _ = writeln!(out, "  {case}");
        }
        let _ = writeln!(out, "    why: {why}");
    }
}

/// Unexplained failures with the output lines of each case.
fn failure_section(out: &mut String, report: &Report) {
    let mut first = true;
    for r in &report.runs {
        for c in r.cases.iter().filter(|c| c.outcome.is_failure()) {
            if first {
                let _ = writeln!(out, "\nFAILURES");
                first = false;
            }
            let _ = writeln!(out, "  {} #{}: {}", r.label, c.number, c.name);
            for line in &c.lines {
                let _ = writeln!(out, "      | {line}");
            }
        }
    }
}
