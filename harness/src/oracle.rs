//! The oracle: compare a program's kernel trace with its model trace, step
//! by step, and decide match, divergence or poisoned.
//!
//! Compared after every step: the op's result; the vmstat counters
//! (`nr_foll_pin_acquired`/`released` and the THP events, cumulative since
//! the program started); the set of mappings observed; and every page of
//! every mapping and every handle: presence, identity ("same page" /
//! "different page", through a binding of model page ids to kernel pfns made
//! as pages first appear and dropped when the model frees a page), folio
//! order, refcount, mapcount, folio mapcount, pincount and the flags the
//! model predicts. Only the first diverging step is reported: later
//! differences cascade from it.
//!
//! Every tolerance is listed in [`Tolerance`], documented in
//! `docs/oracle.md` with the kernel source behind it, and counted.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use reference::Nondet;
use serde::{Deserialize, Serialize};

use crate::backend::ModelRun;
use crate::obs::{PageObs, StepObs, Trace, page_flags};
use crate::op::{HandleId, MapId, MapKind, Op, Proc, Program};

/// Counters compared exactly (`reference::VmStat::NAMES` indices).
const EXACT_COUNTERS: [usize; 7] = [0, 1, 2, 4, 5, 6, 7];
/// `thp_fault_fallback`.
const THP_FAULT_FALLBACK: usize = 3;
/// `thp_zero_page_alloc`.
const THP_ZERO_PAGE_ALLOC: usize = 8;

/// Flags the model predicts (compared); the rest (`LRU`, `DIRTY`,
/// `SWAPCACHE`) are reported by the kernel but not modelled.
const COMPARED_FLAGS: [(u32, &str); 7] = [
    (page_flags::PRESENT, "present"),
    (page_flags::ANON, "anon"),
    (page_flags::ANON_EXCLUSIVE, "anon_exclusive"),
    (page_flags::ZERO, "zero"),
    (page_flags::HUGE_ZERO, "huge_zero"),
    (page_flags::MAYBE_DMA_PINNED, "maybe_dma_pinned"),
    (page_flags::LARGE, "large"),
];

/// A difference the oracle lets pass, each with its kernel reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Tolerance {
    /// Refcount and mapcounts of the shared zero page and the huge zero
    /// folio are not compared: they are shared by every process and FOLL_GET
    /// takes plain references on them (`mm/gup.c: try_grab_folio`).
    ZeroPageCounts,
    /// `folio_maybe_dma_pinned()` of the small zero page is not compared: it
    /// is `refcount >= GUP_PIN_COUNTING_BIAS` of a page everybody maps.
    ZeroPageMaybePinned,
    /// `LRU`, `DIRTY` and `SWAPCACHE` page flags are not modelled.
    UnmodelledFlags,
    /// `thp_zero_page_alloc` counts allocations of the one global huge zero
    /// folio, which outlives programs (`mm/huge_memory.c: get_huge_zero_page`).
    HugeZeroAllocCounter,
    /// A page the model freed may come back as another page's pfn: its
    /// identity binding is dropped (`mm/page_alloc.c` reuses freed pages).
    FreedPfnReuse,
}

impl Tolerance {
    /// Stable name for statistics.
    pub fn name(self) -> &'static str {
        match self {
            Tolerance::ZeroPageCounts => "zero-page-counts",
            Tolerance::ZeroPageMaybePinned => "zero-page-maybe-pinned",
            Tolerance::UnmodelledFlags => "unmodelled-flags",
            Tolerance::HugeZeroAllocCounter => "huge-zero-alloc-counter",
            Tolerance::FreedPfnReuse => "freed-pfn-reuse",
        }
    }
}

/// Why a run was not compared to the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PoisonReason {
    /// A THP fault fell back to small pages (`thp_fault_fallback` grew at a
    /// step where the model allocated a THP or mapped the huge zero folio).
    ThpFallback,
}

impl PoisonReason {
    /// Stable name for statistics.
    pub fn name(self) -> &'static str {
        match self {
            PoisonReason::ThpFallback => "thp-fallback",
        }
    }
}

/// Where a difference is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Place {
    /// The op's return value.
    Result,
    /// A `/proc/vmstat` counter.
    Counter(String),
    /// Which mappings or handles are observed.
    Shape,
    /// Page `index` of a mapping in a process.
    MapPage {
        /// The process.
        proc: Proc,
        /// The mapping.
        map: MapId,
        /// The page's offset in the mapping.
        index: usize,
    },
    /// Page `index` of a handle.
    HandlePage {
        /// The handle.
        handle: HandleId,
        /// The page's position in the handle.
        index: usize,
    },
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Result => write!(f, "result"),
            Place::Counter(c) => write!(f, "vmstat {c}"),
            Place::Shape => write!(f, "observed set"),
            Place::MapPage { proc, map, index } => {
                let p = match proc {
                    Proc::Parent => "parent".to_string(),
                    Proc::Child(c) => format!("c{}", c.0),
                };
                write!(f, "{p} m{}[{index}]", map.0)
            }
            Place::HandlePage { handle, index } => write!(f, "handle {} page {index}", handle.0),
        }
    }
}

/// One field that differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// Where.
    pub place: Place,
    /// Which field (`refcount`, `identity`, `nr_foll_pin_acquired`, …).
    pub field: String,
    /// The model's value.
    pub model: String,
    /// The kernel's value.
    pub kernel: String,
}

/// The first step where kernel and model disagree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Divergence {
    /// Index of the step in the program.
    pub step: usize,
    /// Stable title: the same bug found twice gets the same title.
    pub title: String,
    /// Every difference at that step (first ones first).
    pub differences: Vec<Difference>,
}

/// The verdict on one program.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Every compared step agreed.
    Match,
    /// A step disagreed.
    Diverged(Divergence),
    /// The kernel took a path the model declares non-deterministic at this step.
    Poisoned {
        /// The step.
        step: usize,
        /// Why.
        reason: PoisonReason,
    },
}

/// What one comparison counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompareStats {
    /// Steps compared (up to and including a diverging one).
    pub steps: u64,
    /// Pages compared.
    pub pages: u64,
    /// How often each tolerance let a difference pass (or skipped a field
    /// whose values did differ).
    pub tolerated: BTreeMap<String, u64>,
}

impl CompareStats {
    fn tolerate(&mut self, t: Tolerance) {
        *self.tolerated.entry(t.name().to_string()).or_default() += 1;
    }

    /// Add another comparison's counts.
    pub fn add(&mut self, other: &CompareStats) {
        self.steps += other.steps;
        self.pages += other.pages;
        for (k, v) in &other.tolerated {
            *self.tolerated.entry(k.clone()).or_default() += v;
        }
    }
}

/// Model page id ⇄ kernel pfn.
#[derive(Debug, Default)]
struct Identity {
    model_to_kernel: HashMap<u64, u64>,
    kernel_to_model: HashMap<u64, u64>,
}

impl Identity {
    /// Bind or check; `Err` describes the conflict.
    fn check(&mut self, model: u64, kernel: u64) -> Result<(), (String, String)> {
        match (
            self.model_to_kernel.get(&model),
            self.kernel_to_model.get(&kernel),
        ) {
            (Some(&k), _) if k != kernel => Err((
                format!("same page as before (pfn {k:#x})"),
                format!("a different page (pfn {kernel:#x})"),
            )),
            (_, Some(&m)) if m != model => Err((
                format!("a different page (model page {model}, not {m})"),
                format!("the same page as model page {m} (pfn {kernel:#x})"),
            )),
            _ => {
                self.model_to_kernel.insert(model, kernel);
                self.kernel_to_model.insert(kernel, model);
                Ok(())
            }
        }
    }

    fn forget(&mut self, model: u64) -> bool {
        match self.model_to_kernel.remove(&model) {
            Some(k) => {
                self.kernel_to_model.remove(&k);
                true
            }
            None => false,
        }
    }
}

/// Compare a program's kernel trace with its model run.
///
/// Steps the kernel did not report (a run stopped early) are not compared;
/// the caller handles `kernel.stopped`.
pub fn compare(program: &Program, model: &ModelRun, kernel: &Trace) -> (Verdict, CompareStats) {
    let mut stats = CompareStats::default();
    let mut identity = Identity::default();
    for (i, (k, m)) in kernel.steps.iter().zip(&model.trace.steps).enumerate() {
        stats.steps += 1;
        let nondet = model.nondet.get(i).map(Vec::as_slice).unwrap_or(&[]);
        if let Some(reason) = poisoned(k, m, nondet) {
            return (Verdict::Poisoned { step: i, reason }, stats);
        }
        let diffs = compare_step(k, m, &mut identity, &mut stats);
        if !diffs.is_empty() {
            let title = title(program, i, &diffs);
            return (
                Verdict::Diverged(Divergence {
                    step: i,
                    title,
                    differences: diffs,
                }),
                stats,
            );
        }
        for p in model.freed.get(i).into_iter().flatten() {
            if identity.forget(p.0) {
                stats.tolerate(Tolerance::FreedPfnReuse);
            }
        }
    }
    (Verdict::Match, stats)
}

/// The kernel fell back from a THP where the model allocated one.
fn poisoned(k: &StepObs, m: &StepObs, nondet: &[Nondet]) -> Option<PoisonReason> {
    let thp_point = nondet
        .iter()
        .any(|n| matches!(n, Nondet::ThpFault { .. } | Nondet::HugeZeroFault { .. }));
    (thp_point && k.vmstat[THP_FAULT_FALLBACK] > m.vmstat[THP_FAULT_FALLBACK])
        .then_some(PoisonReason::ThpFallback)
}

fn compare_step(
    k: &StepObs,
    m: &StepObs,
    identity: &mut Identity,
    stats: &mut CompareStats,
) -> Vec<Difference> {
    let mut diffs = Vec::new();
    if k.result != m.result {
        diffs.push(Difference {
            place: Place::Result,
            field: "result".into(),
            model: format!("{:?}", m.result),
            kernel: format!("{:?}", k.result),
        });
    }
    for i in EXACT_COUNTERS.into_iter().chain([THP_FAULT_FALLBACK]) {
        if k.vmstat[i] != m.vmstat[i] {
            let name = reference::VmStat::NAMES[i];
            diffs.push(Difference {
                place: Place::Counter(name.into()),
                field: name.into(),
                model: m.vmstat[i].to_string(),
                kernel: k.vmstat[i].to_string(),
            });
        }
    }
    if k.vmstat[THP_ZERO_PAGE_ALLOC] != m.vmstat[THP_ZERO_PAGE_ALLOC] {
        stats.tolerate(Tolerance::HugeZeroAllocCounter);
    }
    let shape = |s: &StepObs| -> Vec<(Proc, MapId, usize)> {
        s.maps
            .iter()
            .map(|x| (x.proc, x.map, x.pages.len()))
            .collect()
    };
    let hshape = |s: &StepObs| -> Vec<(HandleId, usize)> {
        s.handles
            .iter()
            .map(|x| (x.handle, x.pages.len()))
            .collect()
    };
    if shape(k) != shape(m) || hshape(k) != hshape(m) {
        diffs.push(Difference {
            place: Place::Shape,
            field: "shape".into(),
            model: format!("maps {:?} handles {:?}", shape(m), hshape(m)),
            kernel: format!("maps {:?} handles {:?}", shape(k), hshape(k)),
        });
        return diffs;
    }
    for (km, mm) in k.maps.iter().zip(&m.maps) {
        for (index, (kp, mp)) in km.pages.iter().zip(&mm.pages).enumerate() {
            let place = Place::MapPage {
                proc: km.proc,
                map: km.map,
                index,
            };
            compare_page(place, kp, mp, identity, stats, &mut diffs);
        }
    }
    for (kh, mh) in k.handles.iter().zip(&m.handles) {
        for (index, (kp, mp)) in kh.pages.iter().zip(&mh.pages).enumerate() {
            let place = Place::HandlePage {
                handle: kh.handle,
                index,
            };
            compare_page(place, kp, mp, identity, stats, &mut diffs);
        }
    }
    diffs
}

fn compare_page(
    place: Place,
    k: &PageObs,
    m: &PageObs,
    identity: &mut Identity,
    stats: &mut CompareStats,
    diffs: &mut Vec<Difference>,
) {
    stats.pages += 1;
    let mut push = |field: &str, model: String, kernel: String| {
        diffs.push(Difference {
            place: place.clone(),
            field: field.into(),
            model,
            kernel,
        })
    };
    if k.present() != m.present() {
        push("present", m.present().to_string(), k.present().to_string());
        return;
    }
    if !m.present() {
        return;
    }
    if let Err((model, kernel)) = identity.check(m.key, k.key) {
        push("identity", model, kernel);
    }
    if let Err((model, kernel)) = identity.check(m.head, k.head) {
        push("folio", model, kernel);
    }
    let zero = m.flags & (page_flags::ZERO | page_flags::HUGE_ZERO) != 0;
    let small_zero = m.flags & page_flags::ZERO != 0;
    for (bit, name) in COMPARED_FLAGS {
        let (kb, mb) = (k.flags & bit != 0, m.flags & bit != 0);
        if kb == mb {
            continue;
        }
        if bit == page_flags::MAYBE_DMA_PINNED && small_zero {
            stats.tolerate(Tolerance::ZeroPageMaybePinned);
            continue;
        }
        push(name, mb.to_string(), kb.to_string());
    }
    let unmodelled = page_flags::LRU | page_flags::DIRTY | page_flags::SWAPCACHE;
    if k.flags & unmodelled != 0 {
        stats.tolerate(Tolerance::UnmodelledFlags);
    }
    if k.order != m.order {
        push("order", m.order.to_string(), k.order.to_string());
    }
    if k.pincount != m.pincount {
        push("pincount", m.pincount.to_string(), k.pincount.to_string());
    }
    for (name, kv, mv) in [
        ("refcount", k.refcount, m.refcount),
        ("mapcount", k.mapcount, m.mapcount),
        ("folio_mapcount", k.folio_mapcount, m.folio_mapcount),
    ] {
        if kv == mv {
            continue;
        }
        if zero {
            stats.tolerate(Tolerance::ZeroPageCounts);
            continue;
        }
        push(name, mv.to_string(), kv.to_string());
    }
}

/// A stable title: the step's operation, the kind of mapping it works on,
/// and the first field that differs, e.g.
/// `diverge: pin_user_pages_fast(longterm|write) on memfd-shared: refcount`.
pub fn title(program: &Program, step: usize, diffs: &[Difference]) -> String {
    let op = &program.steps[step].op;
    let field = diffs.first().map_or("unknown", |d| d.field.as_str());
    let name = op_title(op);
    match map_of(program, step).and_then(|m| map_kind(program, m)) {
        Some(kind) => format!("diverge: {name} on {}: {field}", kind_name(kind)),
        None => format!("diverge: {name}: {field}"),
    }
}

/// The op's name with the arguments that select kernel paths (no numbers).
pub fn op_title(op: &Op) -> String {
    match op {
        Op::Mmap { kind, .. } => format!("mmap({})", kind_name(*kind)),
        Op::Munmap { .. } => "munmap".into(),
        Op::Mprotect { prot, .. } => format!("mprotect({})", prot_name(*prot)),
        Op::Madvise { advice, .. } => format!("madvise({})", advice_name(*advice)),
        Op::Touch { access, .. } => match access {
            crate::op::Access::Read => "touch(read)".into(),
            crate::op::Access::Write => "touch(write)".into(),
        },
        Op::Gup { api, foll, .. } => format!("{}({})", api.name(), foll),
        Op::Release { how, .. } => match how {
            crate::op::Release::Put => "put".into(),
            crate::op::Release::Unpin => "unpin".into(),
            crate::op::Release::UnpinDirty => "unpin_dirty".into(),
        },
        Op::SplitHugePages { .. } => "split_huge_pages".into(),
        Op::Fork { .. } => "fork".into(),
        Op::Exit { .. } => "exit".into(),
    }
}

/// The map a step works on (for a release: the map its handle was taken from).
fn map_of(program: &Program, step: usize) -> Option<MapId> {
    match &program.steps[step].op {
        Op::Mmap { map, .. }
        | Op::Munmap { map, .. }
        | Op::Mprotect { map, .. }
        | Op::Madvise { map, .. }
        | Op::Touch { map, .. }
        | Op::Gup { map, .. }
        | Op::SplitHugePages { map, .. } => Some(*map),
        Op::Release { handle, .. } => program.steps[..step].iter().find_map(|s| match &s.op {
            Op::Gup { handle: h, map, .. } if h == handle => Some(*map),
            _ => None,
        }),
        Op::Fork { .. } | Op::Exit { .. } => None,
    }
}

fn map_kind(program: &Program, map: MapId) -> Option<MapKind> {
    program.steps.iter().find_map(|s| match &s.op {
        Op::Mmap { map: m, kind, .. } if *m == map => Some(*kind),
        _ => None,
    })
}

/// The text-format name of a mapping kind.
pub fn kind_name(kind: MapKind) -> &'static str {
    match kind {
        MapKind::AnonPrivate => "anon-private",
        MapKind::AnonShared => "anon-shared",
        MapKind::MemfdShared => "memfd-shared",
        MapKind::MemfdPrivate => "memfd-private",
    }
}

fn prot_name(prot: crate::op::Prot) -> &'static str {
    match prot {
        crate::op::Prot::None => "none",
        crate::op::Prot::Read => "r",
        crate::op::Prot::ReadWrite => "rw",
    }
}

fn advice_name(advice: crate::op::Advice) -> &'static str {
    match advice {
        crate::op::Advice::DontNeed => "dontneed",
        crate::op::Advice::HugePage => "hugepage",
        crate::op::Advice::NoHugePage => "nohugepage",
    }
}
