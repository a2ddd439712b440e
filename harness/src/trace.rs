//! Printing traces: what each step returned, which pages changed, and how
//! the counters moved, in one format for every backend.
//!
//! Pages are named by first appearance in the trace (`P0`, `P1`, …), not by
//! pfn or model page id, so the model's and the kernel's traces of the same
//! program print identically when they agree, and `diff` shows where they
//! do not. `--json` prints one object per step and a summary instead.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::obs::{OpResult, PageObs, StepObs, Trace, page_flags};
use crate::op::{Proc, Program};

/// Names pages by first appearance.
#[derive(Debug, Default)]
pub struct PageNames {
    names: HashMap<u64, usize>,
}

impl PageNames {
    /// The name of a page identity (pfn or model page id).
    pub fn name(&mut self, key: u64) -> String {
        let next = self.names.len();
        format!("P{}", self.names.entry(key).or_insert(next))
    }
}

/// The result column of a step.
pub fn result_text(r: &OpResult) -> String {
    match r {
        OpResult::Ok => "ok".into(),
        OpResult::Touched => "touched".into(),
        OpResult::Segv { at } => format!("SIGSEGV at page {at} of the range"),
        OpResult::Pages(n) => format!("{n} page{}", if *n == 1 { "" } else { "s" }),
        OpResult::Errno(e) => format!("-{}", reference::Errno::from_number(*e)),
    }
}

/// One page's state in one short line.
pub fn page_text(p: &PageObs, names: &mut PageNames) -> String {
    if !p.present() {
        return "-".into();
    }
    let mut s = String::new();
    if p.flags & page_flags::ZERO != 0 {
        let _ = write!(s, "zero-page {}", names.name(p.key));
        return s;
    }
    let head = if p.head != p.key {
        format!(" of {}", names.name(p.head))
    } else {
        String::new()
    };
    let _ = write!(
        s,
        "{}{head} order {} ref {} map {} fmap {}",
        names.name(p.key),
        p.order,
        p.refcount,
        p.mapcount,
        p.folio_mapcount
    );
    if p.flags & page_flags::LARGE != 0 {
        let _ = write!(s, " pin {}", p.pincount);
    }
    for (bit, name) in [
        (page_flags::ANON, "anon"),
        (page_flags::ANON_EXCLUSIVE, "excl"),
        (page_flags::HUGE_ZERO, "huge-zero"),
        (page_flags::MAYBE_DMA_PINNED, "dma-pinned"),
    ] {
        if p.flags & bit != 0 {
            s.push(' ');
            s.push_str(name);
        }
    }
    s
}

fn proc_name(p: Proc) -> String {
    match p {
        Proc::Parent => "parent".into(),
        Proc::Child(c) => format!("c{}", c.0),
    }
}

/// Print a program's trace: per step the op, its result, the counters that
/// moved, and the pages whose state changed since the previous step.
pub fn render(program: &Program, trace: &Trace, names: &mut PageNames) -> String {
    let mut out = String::new();
    let mut prev_pages: HashMap<String, String> = HashMap::new();
    let mut prev_counters = [0u64; 9];
    for (i, (step, obs)) in program.steps.iter().zip(&trace.steps).enumerate() {
        let _ = writeln!(out, "[{i}] {step}  => {}", result_text(&obs.result));
        let moved: Vec<String> = reference::VmStat::NAMES
            .iter()
            .enumerate()
            .filter(|(j, _)| obs.vmstat[*j] != prev_counters[*j])
            .map(|(j, n)| format!("{n} {:+}", obs.vmstat[j] as i64 - prev_counters[j] as i64))
            .collect();
        if !moved.is_empty() {
            let _ = writeln!(out, "      vmstat: {}", moved.join(", "));
        }
        prev_counters = obs.vmstat;
        let mut now: HashMap<String, String> = HashMap::new();
        let mut changed: Vec<Change> = Vec::new();
        let places = obs
            .maps
            .iter()
            .flat_map(|m| {
                let prefix = format!("{} m{}", proc_name(m.proc), m.map.0);
                m.pages
                    .iter()
                    .enumerate()
                    .map(move |(j, p)| (prefix.clone(), j, p))
            })
            .chain(obs.handles.iter().flat_map(|h| {
                let prefix = format!("handle {}", h.handle.0);
                h.pages
                    .iter()
                    .enumerate()
                    .map(move |(j, p)| (prefix.clone(), j, p))
            }));
        for (prefix, j, page) in places {
            let place = format!("{prefix}[{j}]");
            let text = page_text(page, names);
            if prev_pages.get(&place).map_or("-", String::as_str) != text {
                changed.push(Change {
                    prefix,
                    index: j,
                    text: text.clone(),
                });
            }
            now.insert(place, text);
        }
        for l in fold(&changed) {
            let _ = writeln!(out, "      {l}");
        }
        let mut gone: Vec<&String> = prev_pages
            .keys()
            .filter(|k| !now.contains_key(*k))
            .collect();
        gone.sort();
        if !gone.is_empty() {
            let _ = writeln!(out, "      no longer observed: {} pages", gone.len());
        }
        prev_pages = now;
    }
    if let Some(why) = &trace.stopped {
        let _ = writeln!(out, "stopped after {} steps: {why}", trace.steps.len());
    }
    out
}

/// A page whose description changed.
struct Change {
    prefix: String,
    index: usize,
    text: String,
}

/// The description without the page's own name: equal for every page of a
/// folio in the same state.
fn shape(text: &str) -> &str {
    text.split_once(' ').map_or("", |(_, rest)| rest)
}

/// Fold runs of consecutive pages of one mapping or handle that changed to
/// the same state (but for their names) into one `m0[3..512]` line, so a
/// THP fault prints one line, not 512.
fn fold(changes: &[Change]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < changes.len() {
        let c = &changes[i];
        let mut j = i;
        while j + 1 < changes.len()
            && changes[j + 1].prefix == c.prefix
            && changes[j + 1].index == changes[j].index + 1
            && shape(&changes[j + 1].text) == shape(&c.text)
        {
            j += 1;
        }
        if j == i {
            out.push(format!("{}[{}]: {}", c.prefix, c.index, c.text));
        } else {
            out.push(format!(
                "{}[{}..{}]: {} .. {}",
                c.prefix,
                c.index,
                changes[j].index + 1,
                c.text,
                changes[j].text.split(' ').next().unwrap_or("")
            ));
        }
        i = j + 1;
    }
    out
}

/// One step as JSON (`pinfuzz run --json`).
#[derive(Debug, Serialize)]
pub struct StepJson<'a> {
    /// Program file.
    pub file: &'a str,
    /// Step index.
    pub step: usize,
    /// The step in program text.
    pub op: String,
    /// What it returned.
    pub result: String,
    /// Counters since the program started (`reference::VmStat::NAMES`).
    pub vmstat: std::collections::BTreeMap<&'static str, u64>,
    /// The full observation.
    pub obs: &'a StepObs,
}

/// The JSON lines of a trace.
pub fn json_lines(file: &str, program: &Program, trace: &Trace) -> Vec<String> {
    program
        .steps
        .iter()
        .zip(&trace.steps)
        .enumerate()
        .map(|(i, (step, obs))| {
            let vmstat = reference::VmStat::NAMES
                .iter()
                .zip(obs.vmstat)
                .map(|(n, v)| (*n, v))
                .collect();
            serde_json::to_string(&StepJson {
                file,
                step: i,
                op: step.to_string(),
                result: result_text(&obs.result),
                vmstat,
                obs,
            })
            .expect("a trace serializes")
        })
        .collect()
}
