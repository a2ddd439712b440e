//! Model coverage: the set of page states a program makes the model visit.
//!
//! Edge coverage of the model's Rust code says little about which pinning
//! situations a corpus reaches (one `pin()` path serves small and large
//! folios alike), so corpora are minimized on a signature of *states*
//! instead: after every step, each page whose observation changed is
//! classified ([`PageClass`]: whether another page took its place, folio
//! kind and order, pins and FOLL_GET references, where it is seen,
//! PageAnonExclusive, mapcounts) and paired with the step's operation class
//! ([`OpClass`]); the step's result class and every vmstat counter it moved
//! are elements too. The signature is the set of these [`Element`]s, over
//! every kernel profile the program allows. It is computed from a
//! [`Trace`], so the same function classifies a kernel trace, and each
//! element has a stable 64-bit [`Element::feature`] a fuzzer can use as
//! feedback.

use std::collections::{BTreeMap, BTreeSet};

use reference::{Access, Advice, MapKind, Profile, Prot, Release};

use crate::backend::run_model;
use crate::obs::{OpResult, PageObs, StepObs, Trace, page_flags};
use crate::op::{HandleId, MapId, Op, Proc, Program};

/// A coverage signature: every element a run produced.
pub type Signature = BTreeSet<Element>;

/// How many of something: the classes a count falls into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Count {
    /// None.
    Zero,
    /// Exactly one.
    One,
    /// Two or more.
    Many,
}

impl Count {
    fn of(n: i64) -> Count {
        match n {
            i64::MIN..=0 => Count::Zero,
            1 => Count::One,
            _ => Count::Many,
        }
    }
}

/// What a page is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FolioClass {
    /// Nothing is mapped there (any more).
    Absent,
    /// Anonymous memory.
    Anon,
    /// A page-cache (shmem) page.
    File,
    /// The shared zero page.
    Zero,
    /// A page of the huge zero folio.
    HugeZero,
}

/// Where a page was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Place {
    /// In a mapping of this kind, by the process that mapped it.
    Mapped(MapKind),
    /// In a mapping of this kind, by a forked child.
    ChildMapped(MapKind),
    /// In a GUP handle.
    Held,
}

/// How the page seen at one place changed in a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Change {
    /// Nothing was there before (first fault, new mapping or handle).
    Appeared,
    /// Another page is there now (COW copy, unshare copy, refault after
    /// a zap, the zero page replaced).
    Replaced,
    /// The same page, with other counts or flags (reuse in place, a pin,
    /// a fork sharing it), or the page went away.
    Same,
}

/// The state of one page, coarse enough that a corpus covers a small set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PageClass {
    /// How it changed in the step.
    pub change: Change,
    /// What it is.
    pub folio: FolioClass,
    /// Folio order (0 or 9 in practice).
    pub order: u8,
    /// FOLL_PIN pins on the folio: `_pincount` of a large folio, multiples
    /// of `GUP_PIN_COUNTING_BIAS` above the mappings of a small one.
    pub pins: Count,
    /// FOLL_GET (and other) references beyond mappings, pins and the page
    /// cache.
    pub gets: Count,
    /// Where it was seen.
    pub place: Place,
    /// `PageAnonExclusive`.
    pub exclusive: bool,
    /// Mappings of this page.
    pub mapcount: Count,
    /// Mappings of any page of the folio (PMD-mapped: one).
    pub folio_mapcount: Count,
}

/// An operation as coverage tells operations apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// `mmap` of a kind with a protection.
    Mmap(MapKind, Prot),
    /// `munmap`.
    Munmap,
    /// `mprotect` to a protection.
    Mprotect(Prot),
    /// `madvise` with an advice.
    Madvise(Advice),
    /// A load or a store.
    Touch(Access),
    /// A GUP call: FOLL_PIN, GUP-fast, remote, and the FOLL_* bits.
    Gup {
        /// FOLL_PIN (not FOLL_GET).
        pin: bool,
        /// A `*_fast` entry point.
        fast: bool,
        /// A `*_remote` entry point.
        remote: bool,
        /// The FOLL_* bits (`reference::Foll`).
        foll: u32,
    },
    /// `put`, `unpin` or `unpin_dirty`.
    Release(Release),
    /// `split_huge_pages`.
    Split,
    /// `fork`.
    Fork,
    /// `exit`.
    Exit,
}

/// The operation of a step and whether a child runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OpClass {
    /// The operation.
    pub kind: OpKind,
    /// It runs in a forked child.
    pub in_child: bool,
}

impl OpClass {
    /// The class of one step.
    pub fn of(proc: Proc, op: &Op) -> OpClass {
        let kind = match *op {
            Op::Mmap { kind, prot, .. } => OpKind::Mmap(kind, prot),
            Op::Munmap { .. } => OpKind::Munmap,
            Op::Mprotect { prot, .. } => OpKind::Mprotect(prot),
            Op::Madvise { advice, .. } => OpKind::Madvise(advice),
            Op::Touch { access, .. } => OpKind::Touch(access),
            Op::Gup { api, foll, .. } => OpKind::Gup {
                pin: api.is_pin(),
                fast: api.is_fast(),
                remote: api.is_remote(),
                foll: foll.0,
            },
            Op::Release { how, .. } => OpKind::Release(how),
            Op::SplitHugePages { .. } => OpKind::Split,
            Op::Fork { .. } => OpKind::Fork,
            Op::Exit { .. } => OpKind::Exit,
        };
        OpClass {
            kind,
            in_child: proc != Proc::Parent,
        }
    }
}

/// What an operation returned, coarsely.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResultClass {
    /// Success without a count.
    Ok,
    /// A touch went through.
    Touched,
    /// A touch stopped with SIGSEGV.
    Segv,
    /// A GUP call took every page asked for.
    AllPages,
    /// A GUP call took some pages but not all (partial GUP).
    SomePages,
    /// An errno.
    Errno(i32),
}

/// One element of a signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Element {
    /// A step of this class returned this.
    Step {
        /// The step.
        op: OpClass,
        /// Its result.
        result: ResultClass,
    },
    /// A step of this class left a page it changed in this state.
    Page {
        /// The step.
        op: OpClass,
        /// The page's state after it.
        page: PageClass,
    },
    /// A step of this class moved a vmstat counter (index into
    /// `reference::VmStat::NAMES`).
    Counter {
        /// The step.
        op: OpClass,
        /// The counter.
        counter: u8,
    },
}

/// Elements are ordered by their byte encoding: stable, and independent of
/// whether the `reference` types they hold are ordered.
impl Ord for Element {
    fn cmp(&self, other: &Element) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl PartialOrd for Element {
    fn partial_cmp(&self, other: &Element) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Element {
    /// The fixed byte encoding [`Element::feature`] hashes.
    fn key(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(16);
        self.encode(&mut bytes);
        bytes
    }

    /// A stable 64-bit name of the element (FNV-1a of a fixed byte
    /// encoding), the same on every machine and Rust version, for fuzzer
    /// feedback maps and stored statistics.
    pub fn feature(&self) -> u64 {
        self.key().iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Element::Step { op, result } => {
                out.push(0);
                encode_op(op, out);
                match *result {
                    ResultClass::Ok => out.push(0),
                    ResultClass::Touched => out.push(1),
                    ResultClass::Segv => out.push(2),
                    ResultClass::AllPages => out.push(3),
                    ResultClass::SomePages => out.push(4),
                    ResultClass::Errno(e) => {
                        out.push(5);
                        out.extend_from_slice(&e.to_le_bytes());
                    }
                }
            }
            Element::Page { op, page } => {
                out.push(1);
                encode_op(op, out);
                out.push(page.change as u8);
                out.push(page.folio as u8);
                out.push(page.order);
                out.push(page.pins as u8);
                out.push(page.gets as u8);
                match page.place {
                    Place::Mapped(kind) => out.extend_from_slice(&[0, map_kind_code(kind)]),
                    Place::ChildMapped(kind) => out.extend_from_slice(&[1, map_kind_code(kind)]),
                    Place::Held => out.push(2),
                }
                out.push(u8::from(page.exclusive));
                out.push(page.mapcount as u8);
                out.push(page.folio_mapcount as u8);
            }
            Element::Counter { op, counter } => {
                out.push(2);
                encode_op(op, out);
                out.push(*counter);
            }
        }
    }
}

fn map_kind_code(kind: MapKind) -> u8 {
    match kind {
        MapKind::AnonPrivate => 0,
        MapKind::AnonShared => 1,
        MapKind::MemfdShared => 2,
        MapKind::MemfdPrivate => 3,
    }
}

fn prot_code(prot: Prot) -> u8 {
    match prot {
        Prot::None => 0,
        Prot::Read => 1,
        Prot::ReadWrite => 2,
    }
}

fn encode_op(op: &OpClass, out: &mut Vec<u8>) {
    out.push(u8::from(op.in_child));
    match op.kind {
        OpKind::Mmap(kind, prot) => {
            out.extend_from_slice(&[0, map_kind_code(kind), prot_code(prot)])
        }
        OpKind::Munmap => out.push(1),
        OpKind::Mprotect(prot) => out.extend_from_slice(&[2, prot_code(prot)]),
        OpKind::Madvise(advice) => out.extend_from_slice(&[
            3,
            match advice {
                Advice::DontNeed => 0,
                Advice::HugePage => 1,
                Advice::NoHugePage => 2,
            },
        ]),
        OpKind::Touch(access) => out.extend_from_slice(&[4, u8::from(access == Access::Write)]),
        OpKind::Gup {
            pin,
            fast,
            remote,
            foll,
        } => {
            out.extend_from_slice(&[5, u8::from(pin), u8::from(fast), u8::from(remote)]);
            out.extend_from_slice(&foll.to_le_bytes());
        }
        OpKind::Release(how) => out.extend_from_slice(&[
            6,
            match how {
                Release::Put => 0,
                Release::Unpin => 1,
                Release::UnpinDirty => 2,
            },
        ]),
        OpKind::Split => out.push(7),
        OpKind::Fork => out.push(8),
        OpKind::Exit => out.push(9),
    }
}

/// Where an observed page sits, to find it again after the next step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    Map(Proc, MapId, usize),
    Handle(HandleId, usize),
}

/// The class of one observed page seen at `place`, `before` being what was
/// seen there after the previous step (`None`: the place is new).
pub fn classify(page: &PageObs, before: Option<&PageObs>, place: Place) -> PageClass {
    let flags = page.flags;
    let folio = if !page.present() {
        FolioClass::Absent
    } else if flags & page_flags::HUGE_ZERO != 0 {
        FolioClass::HugeZero
    } else if flags & page_flags::ZERO != 0 {
        FolioClass::Zero
    } else if flags & page_flags::ANON != 0 {
        FolioClass::Anon
    } else {
        FolioClass::File
    };
    let (pins, gets) = match folio {
        // Counts of the zero pages are shared by the machine: meaningless.
        FolioClass::Absent | FolioClass::Zero | FolioClass::HugeZero => (0, 0),
        _ => {
            let page_cache = i64::from(folio == FolioClass::File) << page.order;
            let refs = i64::from(page.refcount) - page_cache;
            if page.order > 0 {
                let pins = i64::from(page.pincount);
                (pins, refs - i64::from(page.folio_mapcount) - pins)
            } else {
                let extra = refs - i64::from(page.mapcount);
                let bias = reference::GUP_PIN_COUNTING_BIAS;
                (extra.max(0) / bias, extra.max(0) % bias)
            }
        }
    };
    let change = match before {
        Some(was) if was.present() && page.present() && was.key != page.key => Change::Replaced,
        Some(was) if was.present() => Change::Same,
        _ if page.present() => Change::Appeared,
        _ => Change::Same,
    };
    PageClass {
        change,
        folio,
        order: page.order,
        pins: Count::of(pins),
        gets: Count::of(gets),
        place,
        exclusive: flags & page_flags::ANON_EXCLUSIVE != 0,
        mapcount: Count::of(i64::from(page.mapcount)),
        folio_mapcount: Count::of(i64::from(page.folio_mapcount)),
    }
}

fn result_class(step: &Op, result: OpResult) -> ResultClass {
    match result {
        OpResult::Ok => ResultClass::Ok,
        OpResult::Touched => ResultClass::Touched,
        OpResult::Segv { .. } => ResultClass::Segv,
        OpResult::Pages(n) => match step {
            Op::Gup { range, .. } if n >= u64::from(range.len()) => ResultClass::AllPages,
            _ => ResultClass::SomePages,
        },
        OpResult::Errno(e) => ResultClass::Errno(e),
    }
}

/// The signature of `program`'s run that produced `trace` (either backend).
/// Steps past the end of a short trace add nothing.
pub fn signature_of_trace(program: &Program, trace: &Trace) -> Signature {
    let kinds: Vec<MapKind> = program
        .steps
        .iter()
        .filter_map(|s| match s.op {
            Op::Mmap { kind, .. } => Some(kind),
            _ => None,
        })
        .collect();
    let mut signature = Signature::new();
    let mut before: BTreeMap<Slot, PageObs> = BTreeMap::new();
    let mut counters_before = [0u64; 9];
    for (step, obs) in program.steps.iter().zip(&trace.steps) {
        let op = OpClass::of(step.proc, &step.op);
        signature.insert(Element::Step {
            op,
            result: result_class(&step.op, obs.result),
        });
        for (i, (now, was)) in obs.vmstat.iter().zip(counters_before).enumerate() {
            if *now != was {
                let counter = u8::try_from(i).expect("nine counters");
                signature.insert(Element::Counter { op, counter });
            }
        }
        counters_before = obs.vmstat;
        let after = slots(obs);
        for (slot, page) in &after {
            if before.get(slot) == Some(page) {
                continue;
            }
            let place = match *slot {
                Slot::Handle(..) => Place::Held,
                Slot::Map(proc, map, _) => {
                    let kind = kinds
                        .get(usize::from(map.0))
                        .copied()
                        .unwrap_or(MapKind::AnonPrivate);
                    if proc == Proc::Parent {
                        Place::Mapped(kind)
                    } else {
                        Place::ChildMapped(kind)
                    }
                }
            };
            signature.insert(Element::Page {
                op,
                page: classify(page, before.get(slot), place),
            });
        }
        before = after;
    }
    signature
}

fn slots(obs: &StepObs) -> BTreeMap<Slot, PageObs> {
    let mut out = BTreeMap::new();
    for map in &obs.maps {
        for (i, page) in map.pages.iter().enumerate() {
            out.insert(Slot::Map(map.proc, map.map, i), *page);
        }
    }
    for handle in &obs.handles {
        for (i, page) in handle.pages.iter().enumerate() {
            out.insert(Slot::Handle(handle.handle, i), *page);
        }
    }
    out
}

/// The signature of `program` on the model: the union of its signatures on
/// every kernel profile its header allows (all of them for `kernel=any`),
/// as the model fuzz targets check every profile. A state only one kernel
/// reaches (6.1 reusing a large folio on a write fault) counts.
pub fn signature(program: &Program) -> Signature {
    let profiles = match program.header.kernel.as_deref().and_then(Profile::find) {
        Some(profile) => vec![profile],
        None => Profile::ALL.to_vec(),
    };
    profiles
        .into_iter()
        .flat_map(|profile| signature_of_trace(program, &run_model(program, profile).trace))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reference::Foll;

    fn program(text: &str) -> Program {
        Program::parse_strict(text, "test.ops").expect("test program parses")
    }

    fn pinned_pages(sig: &Signature) -> Vec<PageClass> {
        sig.iter()
            .filter_map(|e| match e {
                Element::Page { page, .. } if page.pins != Count::Zero => Some(*page),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn small_and_large_pins_are_told_apart() {
        let small = signature(&program(
            "pinfuzz v1 thp=never\nm0 = mmap(anon-private, pages=1, prot=rw)\n\
             touch(m0[0..1], write)\np0 = pin_user_pages(m0[0..1], write)\nunpin(p0)\n",
        ));
        let pinned = pinned_pages(&small);
        assert!(!pinned.is_empty());
        assert!(
            pinned
                .iter()
                .all(|p| p.order == 0 && p.folio == FolioClass::Anon)
        );
        assert!(
            pinned
                .iter()
                .any(|p| p.place == Place::Mapped(MapKind::AnonPrivate))
        );
        assert!(pinned.iter().any(|p| p.place == Place::Held));

        let large = signature(&program(
            "pinfuzz v1 thp=always\nm0 = mmap(anon-private, pages=512, prot=rw)\n\
             touch(m0[0..512], write)\np0 = pin_user_pages(m0[0..1], write)\nunpin(p0)\n",
        ));
        let pinned = pinned_pages(&large);
        assert!(!pinned.is_empty());
        assert!(pinned.iter().all(|p| p.order == 9 && p.pins == Count::One));
        // PMD-mapped: one mapping of the whole folio.
        assert!(pinned.iter().any(|p| p.folio_mapcount == Count::One));
        assert!(!large.is_subset(&small) && !small.is_subset(&large));
    }

    /// A COW copy puts another page in place; a reuse keeps the page.
    #[test]
    fn copies_and_reuses_are_told_apart() {
        let changes = |text: &str| -> BTreeSet<(Change, bool)> {
            signature(&program(text))
                .into_iter()
                .filter_map(|e| match e {
                    Element::Page { op, page } if op.kind == OpKind::Touch(Access::Write) => {
                        Some((page.change, page.exclusive))
                    }
                    _ => None,
                })
                .collect()
        };
        let copy = changes(
            "pinfuzz v1 thp=never\nm0 = mmap(anon-private, pages=1, prot=rw)\n\
             touch(m0[0..1], write)\nc0 = fork()\ntouch(m0[0..1], write)\nexit(c0)\n",
        );
        assert!(copy.contains(&(Change::Replaced, true)), "{copy:?}");
        let reuse = changes(
            "pinfuzz v1 thp=never\nm0 = mmap(anon-private, pages=1, prot=rw)\n\
             touch(m0[0..1], write)\nc0 = fork()\nexit(c0)\ntouch(m0[0..1], write)\n",
        );
        assert!(reuse.contains(&(Change::Same, true)), "{reuse:?}");
        assert!(!reuse.contains(&(Change::Replaced, true)), "{reuse:?}");
        assert!(
            copy.contains(&(Change::Appeared, true)),
            "the first write faults"
        );
    }

    #[test]
    fn foll_get_references_are_not_pins() {
        let sig = signature(&program(
            "pinfuzz v1\nm0 = mmap(anon-private, pages=1, prot=rw)\n\
             touch(m0[0..1], write)\ng0 = get_user_pages(m0[0..1], none)\nput(g0)\n",
        ));
        let held: Vec<_> = sig
            .iter()
            .filter_map(|e| match e {
                Element::Page { page, .. } if page.place == Place::Held => Some(*page),
                _ => None,
            })
            .collect();
        assert_eq!(held.len(), 1, "{held:?}");
        assert_eq!((held[0].pins, held[0].gets), (Count::Zero, Count::One));
    }

    #[test]
    fn signature_is_deterministic_and_counts_counters_and_results() {
        let p = program(
            "pinfuzz v1 thp=never\nm0 = mmap(anon-private, pages=2, prot=rw)\n\
             touch(m0[0..2], write)\np0 = pin_user_pages(m0[1..5], write)\nunpin(p0)\n\
             pin_user_pages(m0[7..9], write)\n",
        );
        let a = signature(&p);
        assert_eq!(a, signature(&p));
        let results: BTreeSet<ResultClass> = a
            .iter()
            .filter_map(|e| match e {
                Element::Step { result, .. } => Some(*result),
                _ => None,
            })
            .collect();
        assert!(results.contains(&ResultClass::SomePages), "{results:?}");
        assert!(
            results.contains(&ResultClass::Errno(14)),
            "EFAULT: {results:?}"
        );
        let counters: BTreeSet<u8> = a
            .iter()
            .filter_map(|e| match e {
                Element::Counter { counter, .. } => Some(*counter),
                _ => None,
            })
            .collect();
        assert_eq!(
            counters,
            BTreeSet::from([0, 1]),
            "pin acquired and released"
        );
    }

    /// The feature values are part of stored statistics and fuzzer maps:
    /// a change to the encoding must be deliberate. (The goldens are FNV-1a
    /// of the documented encodings, computed independently.)
    #[test]
    fn features_are_stable() {
        let op = OpClass {
            kind: OpKind::Gup {
                pin: true,
                fast: false,
                remote: false,
                foll: Foll::WRITE.0,
            },
            in_child: false,
        };
        let step = Element::Step {
            op,
            result: ResultClass::AllPages,
        };
        let counter = Element::Counter { op, counter: 0 };
        assert_eq!(step.feature(), 0xf9be_04e6_aa32_1c43);
        assert_eq!(counter.feature(), 0x5b30_c9d6_ec86_a20c);
        assert_ne!(step.feature(), counter.feature());
        // A parent's COW copy: bytes 1, [0, 4, 1], 1, 1, 0, 0, 0, [0, 0], 1, 1, 1.
        let copy = Element::Page {
            op: OpClass {
                kind: OpKind::Touch(Access::Write),
                in_child: false,
            },
            page: PageClass {
                change: Change::Replaced,
                folio: FolioClass::Anon,
                order: 0,
                pins: Count::Zero,
                gets: Count::Zero,
                place: Place::Mapped(MapKind::AnonPrivate),
                exclusive: true,
                mapcount: Count::One,
                folio_mapcount: Count::One,
            },
        };
        assert_eq!(copy.feature(), 0x5a4c_43d5_e3a3_4960);
    }
}
