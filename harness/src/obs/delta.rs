//! Step observations on the wire, as differences from the step before.
//!
//! A [`StepObs`] lists every page of every mapping of every live process
//! and of every live handle: thousands of pages, of which a step changes a
//! few. The executor's runner sends each step as a [`StepDelta`] against the
//! previous step's observation (against nothing for the first step), and
//! the receiver rebuilds the whole observation with [`StepDelta::apply`].
//! On a TCG guest, encoding, piping, checksumming and sending whole
//! observations cost more than the page queries that produced them
//! (`pinfuzz bench`).
//!
//! The contract: `StepDelta::diff(prev, next).apply(prev) == next` for any
//! two observations, and `apply` rejects (never panics on) a delta that does
//! not fit its base. [`StepDecoder`] keeps the base for a stream of deltas.
//!
//! Shape: [`StepDelta::entries`] lists the new observation's mappings, then
//! its handles, each with its length and its base: the index of the same
//! (process, mapping) or handle in the previous observation (its mappings,
//! then its handles), or none for a list that starts with every page absent
//! (`PageObs::default()`). [`StepDelta::changes`] lists the pages that differ
//! from their base, in entry and page order.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{Counters, HandleObs, MapObs, OpResult, PageObs, StepObs};
use crate::op::{HandleId, MapId, Proc};

/// Whose pages an entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Owner {
    /// A mapping of a process.
    Map {
        /// The process.
        proc: Proc,
        /// The mapping.
        map: MapId,
    },
    /// A live handle.
    Handle(HandleId),
}

/// One mapping or handle of the new observation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Whose pages.
    pub owner: Owner,
    /// How many pages.
    pub len: u32,
    /// The same owner's index in the previous observation (mappings, then
    /// handles), or `None`: every page starts absent.
    pub base: Option<u32>,
}

/// A page that differs from its base.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Index into [`StepDelta::entries`].
    pub entry: u32,
    /// The page's index in the entry.
    pub page: u32,
    /// Its new state.
    pub obs: PageObs,
}

/// One step's observation as a difference from the step before.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDelta {
    /// What the operation returned.
    pub result: OpResult,
    /// The counters (whole: nine numbers).
    pub vmstat: Counters,
    /// Every mapping, then every handle, of the new observation.
    pub entries: Vec<Entry>,
    /// The pages that differ from their base.
    pub changes: Vec<Change>,
}

/// A delta that does not fit its base: a corrupt stream or a lost step.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DeltaError {
    /// An entry names a base the previous observation does not have.
    #[error("step delta entry {entry} has base {base}, the previous observation has {have} lists")]
    NoBase {
        /// The entry.
        entry: usize,
        /// Its base.
        base: u32,
        /// Mappings and handles in the previous observation.
        have: usize,
    },
    /// A change names an entry or page that does not exist.
    #[error("step delta change of entry {entry} page {page} is out of range")]
    BadChange {
        /// The entry.
        entry: u32,
        /// The page.
        page: u32,
    },
}

impl Default for StepDelta {
    fn default() -> StepDelta {
        StepDelta {
            result: OpResult::Ok,
            vmstat: [0; 9],
            entries: Vec::new(),
            changes: Vec::new(),
        }
    }
}

impl StepDelta {
    /// Make `self` the difference of `next` from `prev` (reusing its
    /// buffers: a steady stream of steps does not allocate).
    pub fn diff(&mut self, prev: Option<&StepObs>, next: &StepObs) {
        self.result = next.result;
        self.vmstat = next.vmstat;
        self.entries.clear();
        self.changes.clear();
        let prev_maps = prev.map_or(&[][..], |p| &p.maps);
        let prev_handles = prev.map_or(&[][..], |p| &p.handles);
        for m in &next.maps {
            let base = prev_maps
                .iter()
                .position(|b| b.proc == m.proc && b.map == m.map);
            let owner = Owner::Map {
                proc: m.proc,
                map: m.map,
            };
            let base_pages = base.map_or(&[][..], |j| &prev_maps[j].pages);
            self.push(owner, base, base_pages, &m.pages);
        }
        for h in &next.handles {
            let found = prev_handles.iter().position(|b| b.handle == h.handle);
            let base_pages = found.map_or(&[][..], |j| &prev_handles[j].pages);
            let base = found.map(|j| prev_maps.len() + j);
            self.push(Owner::Handle(h.handle), base, base_pages, &h.pages);
        }
    }

    fn push(&mut self, owner: Owner, base: Option<usize>, from: &[PageObs], to: &[PageObs]) {
        let entry = self.entries.len() as u32;
        self.entries.push(Entry {
            owner,
            len: to.len() as u32,
            base: base.map(|b| b as u32),
        });
        for (page, obs) in to.iter().enumerate() {
            if from.get(page).copied().unwrap_or_default() != *obs {
                self.changes.push(Change {
                    entry,
                    page: page as u32,
                    obs: *obs,
                });
            }
        }
    }

    /// The observation this delta describes, on top of `prev`.
    pub fn apply(&self, prev: Option<&StepObs>) -> Result<StepObs, DeltaError> {
        let prev_maps = prev.map_or(&[][..], |p| &p.maps);
        let prev_handles = prev.map_or(&[][..], |p| &p.handles);
        let have = prev_maps.len() + prev_handles.len();
        let mut lists = Vec::with_capacity(self.entries.len());
        for (entry, e) in self.entries.iter().enumerate() {
            let mut pages = match e.base.map(|b| b as usize) {
                None => Vec::new(),
                Some(b) if b < prev_maps.len() => prev_maps[b].pages.clone(),
                Some(b) if b < have => prev_handles[b - prev_maps.len()].pages.clone(),
                Some(base) => {
                    return Err(DeltaError::NoBase {
                        entry,
                        base: base as u32,
                        have,
                    });
                }
            };
            pages.resize(e.len as usize, PageObs::default());
            lists.push(pages);
        }
        for c in &self.changes {
            let slot = lists
                .get_mut(c.entry as usize)
                .and_then(|pages| pages.get_mut(c.page as usize))
                .ok_or(DeltaError::BadChange {
                    entry: c.entry,
                    page: c.page,
                })?;
            *slot = c.obs;
        }
        let mut obs = StepObs {
            result: self.result,
            vmstat: self.vmstat,
            maps: Vec::new(),
            handles: Vec::new(),
        };
        for (e, pages) in self.entries.iter().zip(lists) {
            match e.owner {
                Owner::Map { proc, map } => obs.maps.push(MapObs { proc, map, pages }),
                Owner::Handle(handle) => obs.handles.push(HandleObs { handle, pages }),
            }
        }
        Ok(obs)
    }
}

/// The receiving end of a stream of deltas: each one applies to the
/// observation rebuilt before it.
#[derive(Debug, Default)]
pub struct StepDecoder {
    prev: Option<StepObs>,
}

impl StepDecoder {
    /// The next step's whole observation.
    pub fn next(&mut self, delta: &StepDelta) -> Result<&StepObs, DeltaError> {
        let obs = delta.apply(self.prev.as_ref())?;
        Ok(self.prev.insert(obs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::obs::page_flags;
    use crate::op::ChildId;

    fn page(key: u64, refcount: i32) -> PageObs {
        PageObs {
            key,
            head: key,
            refcount,
            mapcount: 1,
            folio_mapcount: 1,
            pincount: 0,
            order: 0,
            flags: page_flags::PRESENT | page_flags::ANON,
        }
    }

    fn map(proc: Proc, id: u8, pages: Vec<PageObs>) -> MapObs {
        MapObs {
            proc,
            map: MapId(id),
            pages,
        }
    }

    fn step(maps: Vec<MapObs>, handles: Vec<HandleObs>) -> StepObs {
        StepObs {
            result: OpResult::Pages(2),
            vmstat: [1, 2, 3, 4, 5, 6, 7, 8, 9],
            maps,
            handles,
        }
    }

    #[test]
    fn a_delta_rebuilds_the_step_and_carries_only_changed_pages() {
        let absent = PageObs::default();
        let first = step(
            vec![map(Proc::Parent, 0, vec![page(10, 1), absent])],
            vec![],
        );
        let second = step(
            vec![
                map(Proc::Parent, 0, vec![page(10, 1025), page(11, 1)]),
                map(Proc::Child(ChildId(0)), 0, vec![page(10, 1025), absent]),
            ],
            vec![HandleObs {
                handle: HandleId(3),
                pages: vec![page(10, 1025)],
            }],
        );
        let third = step(
            vec![map(
                Proc::Child(ChildId(0)),
                0,
                vec![page(10, 2), absent, absent],
            )],
            vec![HandleObs {
                handle: HandleId(3),
                pages: vec![page(10, 2)],
            }],
        );
        let mut delta = StepDelta::default();
        let mut decoder = StepDecoder::default();
        delta.diff(None, &first);
        assert_eq!(delta.changes.len(), 1);
        assert_eq!(decoder.next(&delta).unwrap(), &first);
        delta.diff(Some(&first), &second);
        // Parent: both pages changed; child: one new present page; handle: one.
        assert_eq!(delta.changes.len(), 4);
        assert_eq!(decoder.next(&delta).unwrap(), &second);
        delta.diff(Some(&second), &third);
        // The child's map (base: index 1) grew and changed page 0; the
        // handle (base: index 2, after the two maps) changed page 0.
        assert_eq!(delta.entries[0].base, Some(1));
        assert_eq!(delta.entries[1].base, Some(2));
        assert_eq!(delta.changes.len(), 2);
        assert_eq!(decoder.next(&delta).unwrap(), &third);
        // Unchanged: no page travels.
        delta.diff(Some(&third), &third);
        assert!(delta.changes.is_empty());
        assert_eq!(delta.apply(Some(&third)).unwrap(), third);
    }

    #[test]
    fn a_delta_that_does_not_fit_its_base_is_rejected() {
        let two = step(
            vec![map(Proc::Parent, 0, vec![page(1, 1), page(2, 1)])],
            vec![],
        );
        let mut delta = StepDelta::default();
        delta.diff(Some(&two), &two);
        assert_eq!(
            delta.apply(None).unwrap_err(),
            DeltaError::NoBase {
                entry: 0,
                base: 0,
                have: 0
            }
        );
        delta.changes.push(Change {
            entry: 0,
            page: 2,
            obs: page(3, 1),
        });
        assert_eq!(
            delta.apply(Some(&two)).unwrap_err(),
            DeltaError::BadChange { entry: 0, page: 2 }
        );
    }

    #[test]
    fn model_traces_cross_as_deltas_unchanged() {
        // Real shapes: forks, exits, unmaps, handles coming and going.
        let limits = crate::program::Limits::default();
        for i in 0..12 {
            let program = crate::campaign::campaign_program(3, i, &limits);
            let run = crate::backend::run_model(&program, reference::Profile::LINUX_6_12);
            let (mut delta, mut decoder) = (StepDelta::default(), StepDecoder::default());
            let mut prev: Option<&StepObs> = None;
            for obs in &run.trace.steps {
                delta.diff(prev, obs);
                let bytes = postcard::to_allocvec(&delta).expect("encode");
                let back: StepDelta = postcard::from_bytes(&bytes).expect("decode");
                assert_eq!(decoder.next(&back).expect("apply"), obs, "program {i}");
                prev = Some(obs);
            }
        }
    }
}
