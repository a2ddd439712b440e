//! The minimizer: a pure function from a program and a predicate ("still
//! fails the same way") to a smaller program for which the predicate holds.
//!
//! Passes go coarse to fine: cut everything after the failing step; drop
//! chunks of steps (halves, quarters, … — delta debugging); drop single
//! steps from the back; then simplify arguments (shorter ranges and
//! mappings, fewer FOLL_* flags, zero offsets, a plainer header). Every
//! candidate goes through `Program::fixup`, so dropping a step drops what
//! depends on it. Candidates are memoized by canonical text: the predicate
//! (which may boot a guest) never runs twice on the same program.
//! [`Mode::Vm`] tries fewer candidates, for predicates that cost a guest
//! run each.

use std::collections::HashSet;

use crate::op::{Foll, MapKind, Op, PageRange, Program, Prot, ThpMode};

/// How hard to try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Cheap predicate: every pass, single steps and every argument.
    Fast,
    /// Each predicate call costs a guest run: coarse passes only, at most
    /// `budget` predicate calls.
    Vm {
        /// Most predicate calls.
        budget: usize,
    },
}

/// What the minimizer did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MinStats {
    /// Predicate calls, per pass name.
    pub attempts: Vec<(&'static str, usize)>,
    /// Candidates skipped because they were tried before.
    pub memo_hits: usize,
    /// Steps before and after.
    pub steps: (usize, usize),
}

struct Search<'a> {
    pred: &'a mut dyn FnMut(&Program) -> bool,
    seen: HashSet<String>,
    calls: usize,
    budget: usize,
    stats: MinStats,
}

impl Search<'_> {
    /// Try a candidate: fixup, memoize, ask the predicate.
    fn try_candidate(&mut self, pass: &'static str, mut candidate: Program) -> Option<Program> {
        candidate.fixup();
        let text = candidate.to_string();
        if !self.seen.insert(text) {
            self.stats.memo_hits += 1;
            return None;
        }
        if self.calls >= self.budget {
            return None;
        }
        self.calls += 1;
        match self.stats.attempts.iter_mut().find(|(p, _)| *p == pass) {
            Some((_, n)) => *n += 1,
            None => self.stats.attempts.push((pass, 1)),
        }
        (self.pred)(&candidate).then_some(candidate)
    }

    fn exhausted(&self) -> bool {
        self.calls >= self.budget
    }
}

/// Minimize `program`, which must satisfy `pred`; `failing_step` (if
/// known) is where it fails, so everything after it can go first.
pub fn minimize(
    program: &Program,
    failing_step: Option<usize>,
    mode: Mode,
    pred: &mut dyn FnMut(&Program) -> bool,
) -> (Program, MinStats) {
    let budget = match mode {
        Mode::Fast => usize::MAX,
        Mode::Vm { budget } => budget,
    };
    let mut s = Search {
        pred,
        seen: HashSet::new(),
        calls: 0,
        budget,
        stats: MinStats::default(),
    };
    let mut best = program.clone();
    best.fixup();
    s.seen.insert(best.to_string());
    s.stats.steps.0 = best.steps.len();

    // 1. Cut the tail after the failing step.
    if let Some(k) = failing_step {
        if k + 1 < best.steps.len() {
            let mut c = best.clone();
            c.steps.truncate(k + 1);
            if let Some(c) = s.try_candidate("tail", c) {
                best = c;
            }
        }
    }
    // 2. Delta debugging over chunks of steps, halves first.
    let mut chunk = best.steps.len().div_ceil(2).max(1);
    while chunk >= 1 && !s.exhausted() {
        let mut start = 0;
        let mut progressed = false;
        while start < best.steps.len() && !s.exhausted() {
            let mut c = best.clone();
            let end = (start + chunk).min(c.steps.len());
            c.steps.drain(start..end);
            match s.try_candidate("chunks", c) {
                Some(c) => {
                    best = c;
                    progressed = true;
                }
                None => start += chunk,
            }
        }
        if chunk == 1 {
            if !progressed {
                break;
            }
        } else {
            chunk /= 2;
        }
        if matches!(mode, Mode::Vm { .. }) && chunk < 2 && !progressed {
            break;
        }
    }
    // 3. Single steps, from the back.
    let mut i = best.steps.len();
    while i > 0 && !s.exhausted() {
        i -= 1;
        if i >= best.steps.len() {
            continue;
        }
        let mut c = best.clone();
        c.steps.remove(i);
        if let Some(c) = s.try_candidate("steps", c) {
            best = c;
        }
    }
    // 4. Simplify arguments, to a fixpoint.
    loop {
        let mut changed = false;
        for c in simplifications(&best) {
            if s.exhausted() {
                break;
            }
            if let Some(c) = s.try_candidate("arguments", c) {
                best = c;
                changed = true;
                break;
            }
        }
        if !changed || s.exhausted() {
            break;
        }
    }
    s.stats.steps.1 = best.steps.len();
    (best, s.stats)
}

/// Candidate programs, each one argument simpler than `p`.
fn simplifications(p: &Program) -> Vec<Program> {
    let mut out = Vec::new();
    if p.header.thp != ThpMode::Never {
        let mut c = p.clone();
        c.header.thp = ThpMode::Never;
        out.push(c);
    }
    if p.header.use_zero_page {
        let mut c = p.clone();
        c.header.use_zero_page = false;
        out.push(c);
    }
    for (i, step) in p.steps.iter().enumerate() {
        let mut variants: Vec<Op> = Vec::new();
        match step.op {
            Op::Mmap {
                map,
                kind,
                pages,
                prot,
                offset,
            } => {
                for smaller in [1, 2, 512] {
                    if smaller < pages {
                        variants.push(Op::Mmap {
                            map,
                            kind,
                            pages: smaller,
                            prot,
                            offset,
                        });
                    }
                }
                if offset != 0 {
                    variants.push(Op::Mmap {
                        map,
                        kind,
                        pages,
                        prot,
                        offset: 0,
                    });
                }
                if prot != Prot::ReadWrite {
                    variants.push(Op::Mmap {
                        map,
                        kind,
                        pages,
                        prot: Prot::ReadWrite,
                        offset,
                    });
                }
                if kind != MapKind::AnonPrivate {
                    variants.push(Op::Mmap {
                        map,
                        kind: MapKind::AnonPrivate,
                        pages,
                        prot,
                        offset,
                    });
                }
            }
            Op::Gup {
                handle,
                api,
                target,
                map,
                range,
                foll,
            } => {
                for r in shorter(range) {
                    variants.push(Op::Gup {
                        handle,
                        api,
                        target,
                        map,
                        range: r,
                        foll,
                    });
                }
                for (flag, _) in Foll::KNOWN {
                    if foll.contains(flag) {
                        variants.push(Op::Gup {
                            handle,
                            api,
                            target,
                            map,
                            range,
                            foll: Foll(foll.0 & !flag.0),
                        });
                    }
                }
            }
            Op::Touch { map, range, access } => {
                for r in shorter(range) {
                    variants.push(Op::Touch {
                        map,
                        range: r,
                        access,
                    });
                }
            }
            Op::Munmap { map, range } => {
                for r in shorter(range) {
                    variants.push(Op::Munmap { map, range: r });
                }
            }
            Op::Madvise { map, range, advice } => {
                for r in shorter(range) {
                    variants.push(Op::Madvise {
                        map,
                        range: r,
                        advice,
                    });
                }
            }
            Op::Mprotect { map, range, prot } => {
                for r in shorter(range) {
                    variants.push(Op::Mprotect {
                        map,
                        range: r,
                        prot,
                    });
                }
            }
            Op::SplitHugePages { map, range } => {
                for r in shorter(range) {
                    variants.push(Op::SplitHugePages { map, range: r });
                }
            }
            _ => {}
        }
        for op in variants {
            let mut c = p.clone();
            c.steps[i].op = op;
            out.push(c);
        }
    }
    out
}

/// Shorter versions of a range: one page at its start, the first half.
fn shorter(r: PageRange) -> Vec<PageRange> {
    let mut out = Vec::new();
    if r.len() > 1 {
        out.push(PageRange {
            start: r.start,
            end: r.start + 1,
        });
        out.push(PageRange {
            start: r.start,
            end: r.start + r.len() / 2,
        });
    }
    if r.start > 0 {
        out.push(PageRange {
            start: 0,
            end: r.len().max(1),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(text: &str) -> Program {
        Program::parse_strict(text, "test.ops").expect("valid test program")
    }

    #[test]
    fn keeps_only_what_the_predicate_needs() {
        let p = program(
            "pinfuzz v1 thp=always kernel=any\n\
             m0 = mmap(anon-private, pages=512, prot=rw)\n\
             m1 = mmap(anon-shared, pages=4, prot=rw)\n\
             touch(m1[0..4], write)\n\
             touch(m0[0..512], write)\n\
             p3 = pin_user_pages_fast(m0[0..8], write|longterm)\n\
             c0 = fork()\n\
             unpin(p3)\n\
             exit(c0)\n",
        );
        // "Fails" whenever some pin_user_pages_fast with FOLL_LONGTERM remains.
        let mut pred = |p: &Program| {
            p.steps
                .iter()
                .any(|s| matches!(s.op, Op::Gup { foll, .. } if foll.contains(Foll::LONGTERM)))
        };
        let (min, stats) = minimize(&p, Some(4), Mode::Fast, &mut pred);
        assert_eq!(
            min.to_string(),
            "pinfuzz v1 thp=never use_zero_page=0 kernel=any\n\
             m0 = mmap(anon-private, pages=1, prot=rw)\n\
             pin_user_pages_fast(m0[0..1], longterm)\n"
        );
        assert_eq!(stats.steps, (8, 2));
        assert!(stats.memo_hits > 0 || stats.attempts.iter().map(|a| a.1).sum::<usize>() > 0);
    }

    #[test]
    fn vm_mode_respects_its_budget() {
        let p = program(
            "pinfuzz v1 thp=never kernel=any\n\
             m0 = mmap(anon-private, pages=4, prot=rw)\n\
             touch(m0[0..4], write)\n\
             touch(m0[0..4], read)\n\
             touch(m0[0..2], write)\n",
        );
        let mut calls = 0;
        let mut pred = |_: &Program| {
            calls += 1;
            false
        };
        let (min, _) = minimize(&p, None, Mode::Vm { budget: 3 }, &mut pred);
        assert_eq!(calls, 3);
        assert_eq!(min.steps.len(), 4);
    }
}
