//! A structural pass over a program before anything runs.
//!
//! It checks what the executor relies on to stay safe and well-defined —
//! every mapping is created once before use, every range stays inside its
//! mapping's 8 MiB slot (so a touch can never reach another mapping or the
//! executor's own memory), children run only between their fork and exit,
//! handles are created once — and reports the first violation with its step
//! number. Full validity is `harness::program`'s job; this pass is the
//! executor's own guard.
//!
//! It also fixes which mappings every observation lists (the same rule as
//! `program::rules::Scope::visible`: a mapping is in the address space of
//! the process that created it and, when the parent created it, of every
//! child forked after) and, from that, the largest observation the run can
//! produce, so the runner reserves every buffer before the counters'
//! baseline and never allocates fresh memory while it runs.

use super::observe::Capacity;
use crate::op::{
    MAX_CHILDREN, MAX_GUP_PAGES, MAX_HANDLES, MAX_MAP_OFFSET, MAX_MAP_PAGES, MAX_MAPS, Op,
    PageRange, Proc, Program, SLOT_PAGES,
};

/// What the runner needs to know before it starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The largest observation.
    pub capacity: Capacity,
    /// An upper bound of the encoded size of one step frame, in bytes.
    pub frame_bytes: usize,
    /// The program splits THPs (needs `split_huge_pages` in debugfs).
    pub splits: bool,
}

/// Bytes of one postcard-encoded `PageObs` at most: two u64 varints (10
/// each), four zigzag i32 varints (5 each), a u8, a u32 varint (5).
const PAGE_OBS_MAX: usize = 10 + 10 + 4 * 5 + 1 + 5;

/// Check `program` and size its observations.
pub fn plan(program: &Program) -> anyhow::Result<Plan> {
    // Per mapping: created, offset, pages. Per process: live, mask of
    // visible mappings (MAX_MAPS = 16 fits a u16).
    let mut maps: [Option<(u16, u16)>; MAX_MAPS] = [None; MAX_MAPS];
    let mut live = [false; 1 + MAX_CHILDREN];
    let mut visible = [0u16; 1 + MAX_CHILDREN];
    let mut forked = [false; MAX_CHILDREN];
    let mut handles = [false; MAX_HANDLES];
    live[0] = true;
    let mut plan = Plan::default();
    let mut handle_pages_total = 0usize;

    for (index, step) in program.steps.iter().enumerate() {
        let at = |msg: String| anyhow::anyhow!("step {index} ({:?}): {msg}", step.op);
        let slot = proc_slot(step.proc);
        if !live.get(slot).copied().unwrap_or(false) {
            return Err(at(format!("{:?} is not running", step.proc)));
        }
        let range_ok = |map: crate::op::MapId, range: PageRange| -> anyhow::Result<()> {
            let Some(Some((offset, _))) = maps.get(usize::from(map.0)) else {
                return Err(at(format!("map {} is used before its mmap", map.0)));
            };
            if range.start > range.end {
                return Err(at(format!("inverted range {}..{}", range.start, range.end)));
            }
            if u64::from(*offset) + u64::from(range.end) > SLOT_PAGES {
                return Err(at(format!(
                    "pages {}..{} at offset {offset} leave the {SLOT_PAGES}-page slot",
                    range.start, range.end
                )));
            }
            Ok(())
        };
        match step.op {
            Op::Mmap {
                map, pages, offset, ..
            } => {
                let i = usize::from(map.0);
                if i >= MAX_MAPS || maps[i].is_some() {
                    return Err(at(format!("map {i} is out of range or mapped twice")));
                }
                if pages == 0 || pages > MAX_MAP_PAGES || offset > MAX_MAP_OFFSET {
                    return Err(at(format!(
                        "{pages} pages at offset {offset} is out of bounds"
                    )));
                }
                maps[i] = Some((offset, pages));
                visible[slot] |= 1 << i;
            }
            Op::Munmap { map, range }
            | Op::Mprotect { map, range, .. }
            | Op::Madvise { map, range, .. }
            | Op::Touch { map, range, .. } => range_ok(map, range)?,
            Op::SplitHugePages { map, range } => {
                range_ok(map, range)?;
                plan.splits = true;
            }
            Op::Gup {
                handle,
                api,
                target,
                map,
                range,
                ..
            } => {
                range_ok(map, range)?;
                if range.is_empty() || range.len() > MAX_GUP_PAGES {
                    return Err(at(format!("{} pages in one GUP call", range.len())));
                }
                if let Some(target) = target {
                    if !api.is_remote() {
                        return Err(at(format!("a target for {api}, which is not *_remote")));
                    }
                    if !live.get(proc_slot(target)).copied().unwrap_or(false) {
                        return Err(at(format!("remote target {target:?} is not running")));
                    }
                }
                let h = usize::from(handle.0);
                if h >= MAX_HANDLES || handles[h] {
                    return Err(at(format!("handle {h} is out of range or taken twice")));
                }
                handles[h] = true;
                handle_pages_total += usize::from(range.len());
                plan.capacity.handles += 1;
                plan.capacity.handle_pages =
                    plan.capacity.handle_pages.max(usize::from(range.len()));
            }
            Op::Release { handle, .. } => {
                if !handles.get(usize::from(handle.0)).copied().unwrap_or(false) {
                    return Err(at(format!("release of handle {} before its GUP", handle.0)));
                }
            }
            Op::Fork { child } => {
                let c = usize::from(child.0);
                if step.proc != Proc::Parent {
                    return Err(at("only the parent forks".into()));
                }
                if c >= MAX_CHILDREN || forked[c] {
                    return Err(at(format!("child {c} is out of range or forked twice")));
                }
                forked[c] = true;
                live[1 + c] = true;
                visible[1 + c] = visible[0];
            }
            Op::Exit { child } => {
                let c = 1 + usize::from(child.0);
                if !live.get(c).copied().unwrap_or(false) {
                    return Err(at(format!(
                        "exit of child {} which is not running",
                        child.0
                    )));
                }
                live[c] = false;
            }
        }
        // The observation after this step.
        let mut entries = 0;
        let mut pages = 0;
        for (slot, mask) in visible.iter().enumerate() {
            if !live[slot] {
                continue;
            }
            for (i, map) in maps.iter().enumerate() {
                if let Some((_, n)) = map.filter(|_| mask & (1 << i) != 0) {
                    entries += 1;
                    pages += usize::from(n);
                    plan.capacity.map_pages = plan.capacity.map_pages.max(usize::from(n));
                }
            }
        }
        plan.capacity.maps = plan.capacity.maps.max(entries);
        // Handles are bounded by all of them being live at once.
        let bytes = 64
            + 9 * 10
            + entries * 8
            + pages * PAGE_OBS_MAX
            + plan.capacity.handles * 8
            + handle_pages_total * PAGE_OBS_MAX;
        plan.frame_bytes = plan.frame_bytes.max(bytes);
    }
    Ok(plan)
}

/// Index of a process: 0 for the parent, 1 + n for child n.
pub fn proc_slot(proc: Proc) -> usize {
    match proc {
        Proc::Parent => 0,
        Proc::Child(c) => 1 + usize::from(c.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{ChildId, HandleId, MapId, Step};
    use reference::{Access, Foll, GupApi, MapKind, Prot};

    fn step(proc: Proc, op: Op) -> Step {
        Step {
            proc,
            op,
            comments: vec![],
        }
    }

    fn mmap(map: u8, pages: u16, offset: u16) -> Op {
        Op::Mmap {
            map: MapId(map),
            kind: MapKind::AnonPrivate,
            pages,
            prot: Prot::ReadWrite,
            offset,
        }
    }

    fn program(steps: Vec<Step>) -> Program {
        Program {
            steps,
            ..Program::default()
        }
    }

    #[test]
    fn children_see_the_parents_earlier_maps() {
        let p = program(vec![
            step(Proc::Parent, mmap(0, 512, 0)),
            step(Proc::Parent, Op::Fork { child: ChildId(0) }),
            step(Proc::Parent, mmap(1, 4, 0)),
            step(Proc::Child(ChildId(0)), mmap(2, 8, 0)),
            step(
                Proc::Parent,
                Op::Gup {
                    handle: HandleId(0),
                    api: GupApi::PinUserPagesRemote,
                    target: Some(Proc::Child(ChildId(0))),
                    map: MapId(2),
                    range: PageRange { start: 0, end: 8 },
                    foll: Foll::WRITE,
                },
            ),
            step(Proc::Parent, Op::Exit { child: ChildId(0) }),
        ]);
        let plan = plan(&p).unwrap();
        // After step 3: parent {0, 1}, child {0, 2} = 4 entries.
        assert_eq!(plan.capacity.maps, 4);
        assert_eq!(plan.capacity.map_pages, 512);
        assert_eq!(plan.capacity.handles, 1);
        assert_eq!(plan.capacity.handle_pages, 8);
        assert!(plan.frame_bytes >= (512 + 4 + 512 + 8 + 8) * PAGE_OBS_MAX);
        assert!(!plan.splits);
    }

    #[test]
    fn structural_errors_name_the_step() {
        let touch = |map, end| Op::Touch {
            map: MapId(map),
            range: PageRange { start: 0, end },
            access: Access::Read,
        };
        let cases = [
            (
                vec![step(Proc::Parent, touch(0, 1))],
                "step 0",
                "before its mmap",
            ),
            (
                vec![
                    step(Proc::Parent, mmap(0, 4, 100)),
                    step(Proc::Parent, touch(0, 1949)),
                ],
                "step 1",
                "leave the 2048-page slot",
            ),
            (
                vec![step(Proc::Child(ChildId(0)), mmap(0, 4, 0))],
                "step 0",
                "is not running",
            ),
            (
                vec![
                    step(Proc::Parent, mmap(0, 4, 0)),
                    step(Proc::Parent, mmap(0, 4, 0)),
                ],
                "step 1",
                "mapped twice",
            ),
        ];
        for (steps, at, what) in cases {
            let err = plan(&program(steps)).unwrap_err().to_string();
            assert!(err.starts_with(at) && err.contains(what), "{err}");
        }
        // A range may run to the very end of the slot.
        let ok = program(vec![
            step(Proc::Parent, mmap(0, 4, 100)),
            step(Proc::Parent, touch(0, 1948)),
        ]);
        assert!(plan(&ok).is_ok());
    }
}
