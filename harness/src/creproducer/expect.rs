//! What a C reproducer checks after each step: the model's observations
//! turned into compact C tables.
//!
//! Page identities become small "slot" numbers, assigned in the order the
//! pages first appear in the model's observations (maps, then handles, step
//! by step), so the C side can bind each slot to the pfn the kernel shows
//! the first time and compare later steps against it, as the oracle binds
//! model page ids to pfns. A mapping's pages are run-length coded: a run is
//! consecutive pages with the same expected state whose slots (and folio
//! head slots) advance by a constant step, so a 512-page THP or a range of
//! freshly faulted small pages is one table row. Identical run tables are
//! emitted once.

use std::collections::HashMap;
use std::fmt::Write as _;

use reference::Nondet;

use crate::backend::ModelRun;
use crate::obs::{PageObs, page_flags};

/// One row of a `struct exp_run` table (see `runtime.c`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Run {
    /// Pages in the run.
    pub count: u16,
    /// Slot of the first page (0: not present).
    pub slot: u32,
    /// Slot increment from one page to the next.
    pub slot_step: i16,
    /// Slot of the first page's folio head.
    pub head: u32,
    /// Head slot increment from one page to the next.
    pub head_step: i16,
    /// Expected `folio_ref_count()`.
    pub refcount: i32,
    /// Expected precise mapcount.
    pub mapcount: i32,
    /// Expected `folio_mapcount()`.
    pub folio_mapcount: i32,
    /// Expected `_pincount`.
    pub pincount: i32,
    /// Expected folio order.
    pub order: u8,
    /// Expected `PINFUZZ_PAGE_*` flags.
    pub flags: u32,
}

impl Run {
    /// Same state as `p`, identities aside.
    fn same_state(&self, p: &PageObs) -> bool {
        (
            self.refcount,
            self.mapcount,
            self.folio_mapcount,
            self.pincount,
        ) == (p.refcount, p.mapcount, p.folio_mapcount, p.pincount)
            && self.order == p.order
            && self.flags == p.flags
    }
}

/// Model page ids to slot numbers (1-based; 0 means "no page").
#[derive(Debug, Default)]
pub struct Slots {
    of: HashMap<u64, u32>,
}

impl Slots {
    /// The slot of a model page id, assigned on first use.
    pub fn slot(&mut self, id: u64) -> u32 {
        let next = self.of.len() as u32 + 1;
        *self.of.entry(id).or_insert(next)
    }

    /// The slot of a page id seen before, if any.
    pub fn get(&self, id: u64) -> Option<u32> {
        self.of.get(&id).copied()
    }

    /// Slots handed out.
    pub fn len(&self) -> usize {
        self.of.len()
    }
}

/// Run-length code the pages of one mapping or handle.
pub fn runs(pages: &[PageObs], slots: &mut Slots) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for p in pages {
        let (slot, head) = if p.present() {
            (slots.slot(p.key), slots.slot(p.head))
        } else {
            (0, 0)
        };
        if let Some(last) = out.last_mut() {
            if last.same_state(p) && last.count < u16::MAX {
                let n = i64::from(last.count);
                let ds = i64::from(slot) - i64::from(last.slot);
                let dh = i64::from(head) - i64::from(last.head);
                if last.count == 1 {
                    if let (Ok(ss), Ok(hs)) = (i16::try_from(ds), i16::try_from(dh)) {
                        last.slot_step = ss;
                        last.head_step = hs;
                        last.count = 2;
                        continue;
                    }
                } else if ds == n * i64::from(last.slot_step) && dh == n * i64::from(last.head_step)
                {
                    last.count += 1;
                    continue;
                }
            }
        }
        out.push(Run {
            count: 1,
            slot,
            slot_step: 0,
            head,
            head_step: 0,
            refcount: p.refcount,
            mapcount: p.mapcount,
            folio_mapcount: p.folio_mapcount,
            pincount: p.pincount,
            order: p.order,
            flags: p.flags,
        });
    }
    out
}

/// Expand runs back into (slot, head) pairs and states (for tests).
#[cfg(test)]
pub fn expand(runs: &[Run]) -> Vec<(u32, u32, i32)> {
    let mut out = Vec::new();
    for r in runs {
        for j in 0..i64::from(r.count) {
            let s = i64::from(r.slot) + j * i64::from(r.slot_step);
            let h = i64::from(r.head) + j * i64::from(r.head_step);
            out.push((s as u32, h as u32, r.refcount));
        }
    }
    out
}

/// C flag expression of `PINFUZZ_PAGE_*` bits (short names from `runtime.c`).
pub fn flags_c(flags: u32) -> String {
    const NAMES: [(u32, &str); 7] = [
        (page_flags::PRESENT, "PRESENT"),
        (page_flags::ANON, "ANON"),
        (page_flags::ANON_EXCLUSIVE, "EXCL"),
        (page_flags::ZERO, "ZERO"),
        (page_flags::HUGE_ZERO, "HZERO"),
        (page_flags::MAYBE_DMA_PINNED, "PINNED"),
        (page_flags::LARGE, "LARGE"),
    ];
    let mut parts: Vec<String> = NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| (*n).to_string())
        .collect();
    let known: u32 = NAMES.iter().map(|(b, _)| b).sum();
    if flags & !known != 0 {
        parts.push(format!("0x{:x}", flags & !known));
    }
    if parts.is_empty() {
        "0".into()
    } else {
        parts.join(" | ")
    }
}

/// One run as a C initializer (only the nonzero fields).
pub fn run_c(r: &Run) -> String {
    let mut s = format!("{{ .count = {}", r.count);
    let mut field = |name: &str, v: i64| {
        if v != 0 {
            let _ = write!(s, ", .{name} = {v}");
        }
    };
    field("slot", i64::from(r.slot));
    field("slot_step", i64::from(r.slot_step));
    field("head", i64::from(r.head));
    field("head_step", i64::from(r.head_step));
    field("refcount", i64::from(r.refcount));
    field("mapcount", i64::from(r.mapcount));
    field("folio_mapcount", i64::from(r.folio_mapcount));
    field("pincount", i64::from(r.pincount));
    field("order", i64::from(r.order));
    if r.flags != 0 {
        let _ = write!(s, ", .flags = {}", flags_c(r.flags));
    }
    s.push_str(" }");
    s
}

/// Run tables shared by every step (and program) of one C file.
#[derive(Debug, Default)]
pub struct RunTables {
    names: HashMap<Vec<Run>, String>,
    /// The C definitions, in order of first use.
    pub text: String,
}

impl RunTables {
    /// The name of the table holding `runs`, defining it on first use.
    pub fn name(&mut self, runs: Vec<Run>) -> String {
        if let Some(n) = self.names.get(&runs) {
            return n.clone();
        }
        let name = format!("runs_{}", self.names.len());
        let _ = writeln!(self.text, "static const struct exp_run {name}[] = {{");
        for r in &runs {
            let _ = writeln!(self.text, "\t{},", run_c(r));
        }
        self.text.push_str("};\n\n");
        self.names.insert(runs, name.clone());
        name
    }
}

/// Did step `i` of the model reach a THP allocation point (a THP fault, or
/// the huge zero folio mapped at a read fault)?
pub fn thp_fault(model: &ModelRun, i: usize) -> bool {
    model.nondet.get(i).is_some_and(|n| {
        n.iter()
            .any(|x| matches!(x, Nondet::ThpFault { .. } | Nondet::HugeZeroFault { .. }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(key: u64, head: u64, refcount: i32, order: u8) -> PageObs {
        PageObs {
            key,
            head,
            refcount,
            mapcount: 1,
            folio_mapcount: 1,
            pincount: 0,
            order,
            flags: page_flags::PRESENT | page_flags::ANON,
        }
    }

    #[test]
    fn a_thp_and_a_hole_are_two_runs() {
        let mut slots = Slots::default();
        let mut pages: Vec<PageObs> = (0..512).map(|i| page(100 + i, 100, 513, 9)).collect();
        pages.extend(std::iter::repeat_n(PageObs::default(), 100));
        let r = runs(&pages, &mut slots);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].count, r[0].slot, r[0].slot_step), (512, 1, 1));
        assert_eq!((r[0].head, r[0].head_step), (1, 0));
        assert_eq!((r[1].count, r[1].slot, r[1].flags), (100, 0, 0));
        assert_eq!(slots.len(), 512);
        let back = expand(&r);
        assert_eq!(back[511], (512, 1, 513));
        assert_eq!(back[600], (0, 0, 0));
    }

    #[test]
    fn state_changes_and_identity_jumps_start_new_runs() {
        let mut slots = Slots::default();
        // Pages 7, 8 small and consecutive, then page 8 again (same page
        // mapped twice), then a different refcount.
        let pages = [
            page(7, 7, 1, 0),
            page(8, 8, 1, 0),
            page(8, 8, 1, 0),
            page(9, 9, 1025, 0),
        ];
        let r = runs(&pages, &mut slots);
        let back = expand(&r);
        assert_eq!(
            back,
            vec![(1, 1, 1), (2, 2, 1), (2, 2, 1), (3, 3, 1025)],
            "{r:?}"
        );
        // The slot of a page is stable across calls.
        let again = runs(&pages[1..2], &mut slots);
        assert_eq!(again[0].slot, 2);
    }

    #[test]
    fn tables_are_shared_and_rows_print_only_what_is_set() {
        let mut t = RunTables::default();
        let mut slots = Slots::default();
        let a = runs(&[page(1, 1, 1, 0)], &mut slots);
        let n1 = t.name(a.clone());
        let n2 = t.name(a);
        assert_eq!(n1, n2);
        assert_eq!(t.text.matches("static const").count(), 1);
        assert!(
            t.text.contains(
                "{ .count = 1, .slot = 1, .head = 1, .refcount = 1, .mapcount = 1, \
                 .folio_mapcount = 1, .flags = PRESENT | ANON }"
            ),
            "{}",
            t.text
        );
        assert_eq!(flags_c(0), "0");
        assert_eq!(
            flags_c(page_flags::LRU | page_flags::PRESENT),
            "PRESENT | 0x20"
        );
    }
}
