//! Model states as fuzzer feedback.
//!
//! Edge coverage of the model says which *code* ran; it does not say which
//! pinning situation the program reached (one `pin()` path serves a small
//! folio pinned once and a PMD THP pinned twice from a child alike). The
//! coverage signature of `corpus::coverage` names situations: per step,
//! the operation class with the classes of the pages it changed (folio kind
//! and order, pins, FOLL_GET references, where the page is seen,
//! PageAnonExclusive, mapcounts), its result class, and the vmstat counters
//! it moved. Each element has a stable 64-bit [`Element::feature`]; a
//! target turns every feature of an input's model run into one slot of a
//! feedback map, so an input that reaches a new combination of folio kind,
//! pin state and mapping state is new coverage to the fuzzer even when it
//! ran no new model edge:
//! - libFuzzer: a `[u8; N]` array in the `__libfuzzer_extra_counters`
//!   section (the `diff` target); libFuzzer clears it before every input
//!   and treats each non-zero byte as a feature (`FuzzerTracePC.h`).
//! - AFL++: `ijon_set!(slot)` per feature (afl.rs IJON macros), one bit of
//!   the coverage map each.
//!
//! The signature is computed from the *model's* trace: the same function
//! classifies kernel traces, and the two agree whenever the run is not a
//! finding, but the model's is there even when the guest crashed.

use std::collections::HashSet;

use crate::corpus::coverage::{Element, signature_of_trace};
use crate::obs::Trace;
use crate::op::Program;

/// Size of the libFuzzer extra-counter map. The signature of a whole
/// corpus has a few thousand elements (`pinfuzz corpus minimize` prints the
/// number), so collisions in 16 Ki slots are rare; libFuzzer clears the map
/// before every input, so its size costs a 16 KiB memset per input, nothing
/// next to a guest run.
pub const EXTRA_COUNTERS: usize = 1 << 14;

/// The features of a run of `program` that produced `trace`.
pub fn features(program: &Program, trace: &Trace) -> Vec<u64> {
    signature_of_trace(program, trace)
        .iter()
        .map(Element::feature)
        .collect()
}

/// The slot of `feature` in a map of `len` slots (`len` > 0). Features are
/// FNV-1a hashes; folding the high half in keeps every bit in play.
pub fn slot(feature: u64, len: usize) -> usize {
    ((feature ^ (feature >> 32)) % len as u64) as usize
}

/// The features a process has seen, for its statistics lines.
#[derive(Debug, Default)]
pub struct Seen {
    features: HashSet<u64>,
}

impl Seen {
    /// Add an input's features; how many were new.
    pub fn add(&mut self, features: &[u64]) -> usize {
        features
            .iter()
            .filter(|f| self.features.insert(**f))
            .count()
    }

    /// Distinct features so far.
    pub fn len(&self) -> usize {
        self.features.len()
    }

    /// Nothing seen yet.
    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::run_model;
    use reference::Profile;

    fn feats(text: &str) -> Vec<u64> {
        let p = Program::parse_strict(text, "t.ops").expect("parses");
        features(&p, &run_model(&p, Profile::LINUX_6_12).trace)
    }

    /// A pinned THP and a pinned small page are different feedback, even
    /// though the program text differs only in a header setting and a size.
    #[test]
    fn new_page_states_are_new_features() {
        let small = feats(
            "pinfuzz v1 thp=never\nm0 = mmap(anon-private, pages=1, prot=rw)\n\
             touch(m0[0..1], write)\np0 = pin_user_pages(m0[0..1], write)\n",
        );
        let large = feats(
            "pinfuzz v1 thp=always\nm0 = mmap(anon-private, pages=512, prot=rw)\n\
             touch(m0[0..512], write)\np0 = pin_user_pages(m0[0..1], write)\n",
        );
        let mut seen = Seen::default();
        assert!(seen.add(&small) > 0);
        assert_eq!(seen.add(&small), 0, "the same run adds nothing");
        assert!(seen.add(&large) > 0, "a pinned THP is new");
        assert!(seen.len() >= small.len());
        let slots: HashSet<usize> = small.iter().map(|f| slot(*f, EXTRA_COUNTERS)).collect();
        assert!(slots.iter().all(|s| *s < EXTRA_COUNTERS));
        assert!(slots.len() > 1);
    }
}
