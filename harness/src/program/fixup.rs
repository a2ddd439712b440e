//! Repairing programs: [`fixup`] turns any program into a valid one.
//!
//! Mutated, decoded or old programs may use ids that were never defined,
//! handles already released, children already exited, numbers out of range.
//! Each step is first renumbered (old ids to the ordinals their definitions
//! get now), then its numbers are clamped to the limits of [`super::rules`]
//! and flags it may not carry are cleared, then [`check_step`] decides: a
//! step that still breaks a rule is dropped (its comments move to the next
//! kept step). The rules are asked, never restated, so a valid program comes
//! out unchanged.

use std::collections::BTreeMap;

use reference::Foll;

use super::rules::{
    FOLL_ALLOWED, MAP_OFFSETS, MAP_PAGES, Scope, check_step, clamp_range, comment_bad_char,
    kernel_ok, max_range_len, range_limit, step_range,
};
use super::{Field, Repair};
use crate::op::{ChildId, HandleId, MapId, Op, PageRange, Proc, Program, Step};

/// Old ids of a program being repaired, mapped to the ordinals they get.
#[derive(Default)]
struct Renumber {
    maps: BTreeMap<u8, MapId>,
    children: BTreeMap<u8, ChildId>,
    handles: BTreeMap<u16, HandleId>,
}

impl Renumber {
    fn proc(&self, proc: Proc) -> Result<Proc, String> {
        match proc {
            Proc::Parent => Ok(Proc::Parent),
            Proc::Child(c) => self
                .children
                .get(&c.0)
                .map(|&new| Proc::Child(new))
                .ok_or_else(|| format!("c{} was never forked", c.0)),
        }
    }

    fn map(&self, map: MapId) -> Result<MapId, String> {
        self.maps
            .get(&map.0)
            .copied()
            .ok_or_else(|| format!("m{} was never mapped", map.0))
    }

    /// `step` with every id it *uses* renumbered (definitions are renumbered
    /// when the step is kept).
    fn uses(&self, step: &Step) -> Result<Step, String> {
        let mut step = step.clone();
        step.proc = self.proc(step.proc)?;
        match &mut step.op {
            Op::Munmap { map, .. }
            | Op::Mprotect { map, .. }
            | Op::Madvise { map, .. }
            | Op::Touch { map, .. }
            | Op::SplitHugePages { map, .. } => *map = self.map(*map)?,
            Op::Gup { target, map, .. } => {
                *map = self.map(*map)?;
                if let Some(target) = target {
                    *target = self.proc(*target)?;
                }
            }
            Op::Release { handle, .. } => {
                *handle = *self
                    .handles
                    .get(&handle.0)
                    .ok_or_else(|| format!("handle {} was never taken", handle.0))?;
            }
            Op::Exit { child } => {
                *child = *self
                    .children
                    .get(&child.0)
                    .ok_or_else(|| format!("c{} was never forked", child.0))?;
            }
            Op::Mmap { .. } | Op::Fork { .. } => {}
        }
        Ok(step)
    }
}

/// Clamp the numbers of `step` (ids already renumbered) into their limits
/// and give its definition the next ordinal; say what changed.
fn normalize(scope: &Scope, step: &mut Step, mut note: impl FnMut(Field, String)) {
    for (i, comment) in step.comments.iter_mut().enumerate() {
        if comment_bad_char(comment).is_some() {
            *comment = scrub_comment(comment);
            note(
                Field::Comment(i),
                "control characters replaced by spaces".into(),
            );
        }
    }
    if let Some((map, range)) = step_range(&step.op)
        && let Some(info) = scope.map(map)
    {
        let clamped = clamp_range(range, range_limit(info.offset), max_range_len(&step.op));
        if clamped != range {
            note(
                Field::Range,
                format!(
                    "range [{}..{}] clamped to [{}..{}]",
                    range.start, range.end, clamped.start, clamped.end
                ),
            );
            set_range(&mut step.op, clamped);
        }
    }
    let caller = step.proc;
    match &mut step.op {
        Op::Mmap {
            map, pages, offset, ..
        } => {
            *map = MapId(u8::try_from(scope.maps.len()).unwrap_or(u8::MAX));
            let p = (*pages).clamp(*MAP_PAGES.start(), *MAP_PAGES.end());
            if p != *pages {
                note(Field::Pages, format!("pages={pages} clamped to {p}"));
                *pages = p;
            }
            let o = (*offset).min(*MAP_OFFSETS.end());
            if o != *offset {
                note(Field::Offset, format!("offset={offset} clamped to {o}"));
                *offset = o;
            }
        }
        Op::Gup {
            handle,
            api,
            target,
            foll,
            ..
        } => {
            *handle = HandleId(u16::try_from(scope.handles.len()).unwrap_or(u16::MAX));
            match (api.is_remote(), *target) {
                (true, None) => {
                    note(Field::Target, format!("{api} given the caller as target"));
                    *target = Some(caller);
                }
                (false, Some(_)) => {
                    note(
                        Field::Target,
                        format!("target dropped: {api} is not remote"),
                    );
                    *target = None;
                }
                _ => {}
            }
            let unknown = foll.0 & !FOLL_ALLOWED.0;
            if unknown != 0 {
                note(
                    Field::Foll,
                    format!("unknown FOLL_* bits {unknown:#x} cleared"),
                );
                foll.0 &= FOLL_ALLOWED.0;
            }
            if !api.is_pin() && foll.contains(Foll::LONGTERM) {
                note(
                    Field::Foll,
                    format!(
                        "longterm cleared: FOLL_LONGTERM is only valid with pin_user_pages*, not {api}"
                    ),
                );
                foll.0 &= !Foll::LONGTERM.0;
            }
        }
        Op::Fork { child } => {
            *child = ChildId(u8::try_from(scope.children.len()).unwrap_or(u8::MAX));
        }
        _ => {}
    }
}

fn set_range(op: &mut Op, new: PageRange) {
    match op {
        Op::Munmap { range, .. }
        | Op::Mprotect { range, .. }
        | Op::Madvise { range, .. }
        | Op::Touch { range, .. }
        | Op::Gup { range, .. }
        | Op::SplitHugePages { range, .. } => *range = new,
        Op::Mmap { .. } | Op::Release { .. } | Op::Fork { .. } | Op::Exit { .. } => {}
    }
}

/// `comment` with every character [`comment_bad_char`] objects to replaced
/// by a space.
pub fn scrub_comment(comment: &str) -> String {
    comment
        .chars()
        .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
        .collect()
}

/// Repair `program` in place (see [`Program::fixup`]); what changed.
pub fn fixup(program: &mut Program) -> Vec<Repair> {
    let mut repairs = Vec::new();
    for (i, comment) in program.comments.iter_mut().enumerate() {
        if comment_bad_char(comment).is_some() {
            *comment = scrub_comment(comment);
            repairs.push(Repair {
                step: None,
                field: Field::ProgramComment(i),
                message: "control characters replaced by spaces".into(),
            });
        }
    }
    if let Some(kernel) = &program.header.kernel
        && !kernel_ok(kernel)
    {
        repairs.push(Repair {
            step: None,
            field: Field::Kernel,
            message: format!("kernel={kernel} names no kernel profile: set to any"),
        });
        program.header.kernel = None;
    }

    let mut scope = Scope::new();
    let mut renumber = Renumber::default();
    let mut kept = Vec::with_capacity(program.steps.len());
    let mut problems = Vec::new();
    // Comments of dropped steps move to the next kept step: nothing the
    // author wrote is lost.
    let mut orphans: Vec<String> = Vec::new();
    for (old_index, old) in std::mem::take(&mut program.steps).into_iter().enumerate() {
        let drop = |repairs: &mut Vec<Repair>, orphans: &mut Vec<String>, why: String| {
            orphans.extend(old.comments.iter().cloned());
            repairs.push(Repair {
                step: Some(old_index),
                field: Field::Op,
                message: format!("dropped: {why}"),
            });
        };
        let mut step = match renumber.uses(&old) {
            Ok(step) => step,
            Err(why) => {
                drop(&mut repairs, &mut orphans, why);
                continue;
            }
        };
        if !orphans.is_empty() {
            orphans.append(&mut step.comments);
            step.comments = std::mem::take(&mut orphans);
        }
        let mut notes = Vec::new();
        normalize(&scope, &mut step, |field, message| {
            notes.push(Repair {
                step: Some(old_index),
                field,
                message,
            });
        });
        problems.clear();
        check_step(&scope, &step, kept.len(), &mut problems);
        if let Some(problem) = problems.first() {
            let why = problem.message.clone();
            // The comments were moved into `step`: hand them on again.
            orphans.append(&mut step.comments);
            repairs.push(Repair {
                step: Some(old_index),
                field: Field::Op,
                message: format!("dropped: {why}"),
            });
            continue;
        }
        repairs.append(&mut notes);
        match (&old.op, &step.op) {
            (Op::Mmap { map: from, .. }, Op::Mmap { map: to, .. }) => {
                renumber.maps.insert(from.0, *to);
            }
            (Op::Gup { handle: from, .. }, Op::Gup { handle: to, .. }) => {
                renumber.handles.insert(from.0, *to);
            }
            (Op::Fork { child: from }, Op::Fork { child: to }) => {
                renumber.children.insert(from.0, *to);
            }
            _ => {}
        }
        scope.apply(&step, kept.len());
        kept.push(step);
    }
    program.steps = kept;
    repairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::MAX_MAP_PAGES;
    use crate::program::test_ops::{mmap, step};
    use reference::Access;

    #[test]
    fn fixup_renumbers_and_drops_dangling_uses() {
        let mut program = Program {
            steps: vec![
                step(Proc::Parent, mmap(7, 5000)),
                step(
                    Proc::Parent,
                    Op::Touch {
                        map: MapId(7),
                        range: PageRange { start: 0, end: 1 },
                        access: Access::Write,
                    },
                ),
                step(
                    Proc::Parent,
                    Op::Touch {
                        map: MapId(3),
                        range: PageRange { start: 0, end: 1 },
                        access: Access::Write,
                    },
                ),
            ],
            ..Program::default()
        };
        let repairs = fixup(&mut program);
        assert_eq!(program.steps.len(), 2);
        assert_eq!(program.steps[0].op, mmap(0, MAX_MAP_PAGES));
        assert!(matches!(
            program.steps[1].op,
            Op::Touch { map: MapId(0), .. }
        ));
        assert_eq!(repairs.len(), 2, "{repairs:?}");
        assert!(repairs[1].message.contains("m3 was never mapped"));
        assert_eq!(program.validate(), Ok(()));
    }
}
