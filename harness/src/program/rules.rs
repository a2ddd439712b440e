//! The validity rules of programs, in one place.
//!
//! A [`Scope`] replays a program's definitions (mmap, GUP calls, fork,
//! exit, release) and answers what is live where: a mapping is visible in
//! the process that created it and, if the parent created it, in the
//! children forked after; a GUP handle is live from its GUP call until it
//! is released, by any running process (the helper module's handle table
//! belongs to the open file, which the runner opens before any fork, so
//! every process shares it and a child's handles outlive the child); only
//! the parent forks and reaps. [`check_step`] states every rule of one step against a scope, and
//! the numeric limits are the constants and `*_limit` functions here, which
//! [`super::fixup`] also clamps to. `validate`, `fixup`, the parsers and the byte
//! codec all ask this module, so a rule changed here changes everywhere.

use std::ops::RangeInclusive;

use reference::{Foll, GupApi, Profile, Release};

use super::text::{HandleName, ProcName};
use super::{Field, Problem};
use crate::op::{
    ChildId, HandleId, MAX_CHILDREN, MAX_GUP_PAGES, MAX_HANDLES, MAX_MAP_OFFSET, MAX_MAP_PAGES,
    MAX_MAPS, MAX_STEPS, MapId, Op, PageRange, Proc, Program, SLOT_PAGES, Step,
};

/// Pages of one mapping.
pub const MAP_PAGES: RangeInclusive<u16> = 1..=MAX_MAP_PAGES;
/// Offsets of a mapping from its PMD-aligned slot start, in pages.
pub const MAP_OFFSETS: RangeInclusive<u16> = 0..=MAX_MAP_OFFSET;
/// Pages of one GUP call.
pub const GUP_PAGES: RangeInclusive<u16> = 1..=MAX_GUP_PAGES;
/// FOLL_* bits a program may pass.
pub const FOLL_ALLOWED: Foll = Foll(Foll::WRITE.0 | Foll::LONGTERM.0 | Foll::FORCE.0);

/// One past the last page a range of a mapping placed `offset` pages into
/// its slot may touch: the end of the slot. Ranges may run past the end of
/// the mapping into the unmapped rest of the slot (EFAULT, partial GUP),
/// never into the next slot, which belongs to another mapping. (An offset
/// past [`MAX_MAP_OFFSET`], itself a broken rule, counts as the largest.)
pub fn range_limit(offset: u16) -> u16 {
    u16::try_from(SLOT_PAGES).expect("SLOT_PAGES fits in u16") - offset.min(MAX_MAP_OFFSET)
}

/// The longest range an operation takes: [`MAX_GUP_PAGES`] for a GUP call
/// (the helper module's per-call array), the whole slot otherwise.
pub fn max_range_len(op: &Op) -> u16 {
    max_range_len_of(matches!(op, Op::Gup { .. }))
}

/// [`max_range_len`] of a GUP call (`gup`) or of any other operation.
pub fn max_range_len_of(gup: bool) -> u16 {
    if gup { *GUP_PAGES.end() } else { u16::MAX }
}

/// `range` moved and shortened as little as possible to be non-empty, end
/// at or before `limit` and span at most `max_len` pages. The identity on
/// a range that already does.
pub fn clamp_range(range: PageRange, limit: u16, max_len: u16) -> PageRange {
    let start = range.start.min(limit - 1);
    let end_max = limit.min(start.saturating_add(max_len));
    let end = range.end.clamp(start + 1, end_max);
    PageRange { start, end }
}

/// A kernel profile name a header may carry: a token of the text format
/// (`[A-Za-z0-9._+-]+`, not `any`, which means "no requirement") that
/// names a profile this pinfuzz knows.
pub fn kernel_ok(name: &str) -> bool {
    !name.is_empty()
        && name != "any"
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
        && Profile::find(name).is_some()
}

/// The first character a comment line may not hold: control characters
/// other than tab would break the one-line-per-comment text form.
pub fn comment_bad_char(comment: &str) -> Option<char> {
    comment.chars().find(|&c| c.is_control() && c != '\t')
}

/// A mapping as the scope knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapInfo {
    /// The process that mmapped it.
    pub owner: Proc,
    /// Forks before the mmap: children numbered from here on inherit it
    /// (when the parent owns it).
    pub forks_before: usize,
    /// Its length.
    pub pages: u16,
    /// Its offset into its slot.
    pub offset: u16,
}

/// A forked child as the scope knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChildInfo {
    /// The step that exited it, if one did.
    pub exited: Option<usize>,
}

/// A GUP handle as the scope knows it. It has no owner: the helper module
/// keeps handles per open file (`kmod/pinfuzz.h`) and every process of a
/// program shares the one file the runner opened, so any running process
/// may release any live handle, and a handle outlives the process that
/// took it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandleInfo {
    /// FOLL_PIN (`pin_user_pages*`), as opposed to FOLL_GET.
    pub pin: bool,
    /// The step that released it, if one did.
    pub released: Option<usize>,
}

/// What is defined and live after a prefix of a program. Ids are ordinals,
/// so each table is indexed by id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// Every mapping, by [`MapId`].
    pub maps: Vec<MapInfo>,
    /// Every forked child, by [`ChildId`].
    pub children: Vec<ChildInfo>,
    /// Every GUP handle, by [`HandleId`].
    pub handles: Vec<HandleInfo>,
    /// Steps so far.
    pub steps: usize,
}

impl Scope {
    /// The scope before the first step.
    pub fn new() -> Scope {
        Scope::default()
    }

    /// The process runs: the parent always, a child from its fork to its exit.
    pub fn live(&self, proc: Proc) -> bool {
        match proc {
            Proc::Parent => true,
            Proc::Child(c) => self
                .children
                .get(usize::from(c.0))
                .is_some_and(|info| info.exited.is_none()),
        }
    }

    /// The processes that run, parent first, children in fork order.
    pub fn live_procs(&self) -> impl Iterator<Item = Proc> + '_ {
        let children = self.children.iter().enumerate().filter_map(|(i, info)| {
            let id = u8::try_from(i).expect("at most MAX_CHILDREN children");
            info.exited.is_none().then_some(Proc::Child(ChildId(id)))
        });
        std::iter::once(Proc::Parent).chain(children)
    }

    /// `map` is in the address space of `proc` (whether or not it still runs).
    pub fn visible(&self, map: MapId, proc: Proc) -> bool {
        let Some(info) = self.maps.get(usize::from(map.0)) else {
            return false;
        };
        info.owner == proc
            || (info.owner == Proc::Parent
                && matches!(proc, Proc::Child(c) if usize::from(c.0) >= info.forks_before))
    }

    /// The mappings in the address space of `proc`, in id order.
    pub fn visible_maps(&self, proc: Proc) -> impl Iterator<Item = MapId> + '_ {
        (0..self.maps.len()).filter_map(move |i| {
            let id = MapId(u8::try_from(i).expect("at most MAX_MAPS maps"));
            self.visible(id, proc).then_some(id)
        })
    }

    /// `handle` was taken and not yet released (whoever took it, and
    /// whether or not that process still runs).
    pub fn is_live(&self, handle: HandleId) -> bool {
        self.handles
            .get(usize::from(handle.0))
            .is_some_and(|info| info.released.is_none())
    }

    /// The live handles, in id order: what any running process may release.
    pub fn live_handles(&self) -> impl Iterator<Item = HandleId> + '_ {
        (0..self.handles.len()).filter_map(move |i| {
            let id = HandleId(u16::try_from(i).expect("at most MAX_HANDLES handles"));
            self.is_live(id).then_some(id)
        })
    }

    /// The mapping's entry, if `map` was created.
    pub fn map(&self, map: MapId) -> Option<&MapInfo> {
        self.maps.get(usize::from(map.0))
    }

    /// Record the effects of `step` (which ran as the `index`-th step). Works
    /// on invalid steps too: whatever the step defines is defined, whatever it
    /// ends that exists is ended, so validation reports one problem per
    /// mistake instead of a cascade.
    pub fn apply(&mut self, step: &Step, index: usize) {
        self.steps += 1;
        match step.op {
            Op::Mmap { pages, offset, .. } => self.maps.push(MapInfo {
                owner: step.proc,
                forks_before: self.children.len(),
                pages,
                offset,
            }),
            Op::Gup { api, .. } => self.handles.push(HandleInfo {
                pin: api.is_pin(),
                released: None,
            }),
            Op::Release { handle, .. } => {
                if let Some(info) = self.handles.get_mut(usize::from(handle.0)) {
                    info.released.get_or_insert(index);
                }
            }
            Op::Fork { .. } => self.children.push(ChildInfo { exited: None }),
            Op::Exit { child } => {
                if let Some(info) = self.children.get_mut(usize::from(child.0)) {
                    info.exited.get_or_insert(index);
                }
            }
            Op::Munmap { .. }
            | Op::Mprotect { .. }
            | Op::Madvise { .. }
            | Op::Touch { .. }
            | Op::SplitHugePages { .. } => {}
        }
    }
}

/// The mapping and range a step works on, if it works on one.
pub fn step_range(op: &Op) -> Option<(MapId, PageRange)> {
    match *op {
        Op::Munmap { map, range }
        | Op::Mprotect { map, range, .. }
        | Op::Madvise { map, range, .. }
        | Op::Touch { map, range, .. }
        | Op::Gup { map, range, .. }
        | Op::SplitHugePages { map, range } => Some((map, range)),
        Op::Mmap { .. } | Op::Release { .. } | Op::Fork { .. } | Op::Exit { .. } => None,
    }
}

/// Collects the problems of one step.
struct Checker<'a> {
    scope: &'a Scope,
    index: usize,
    problems: &'a mut Vec<Problem>,
}

impl Checker<'_> {
    fn report(&mut self, field: Field, message: String) {
        self.report_related(field, message, None);
    }

    fn report_related(&mut self, field: Field, message: String, related: Option<usize>) {
        self.problems.push(Problem {
            step: Some(self.index),
            field,
            message,
            related,
        });
    }

    /// `proc` runs; `role` says what it is to the step ("runs the step",
    /// "is the target").
    fn check_live(&mut self, proc: Proc, field: Field, role: &str) -> bool {
        let Proc::Child(c) = proc else { return true };
        match self.scope.children.get(usize::from(c.0)) {
            None => {
                let forks = self.scope.children.len();
                self.report(
                    field,
                    format!(
                        "{} {role} but was never forked ({forks} fork{} so far)",
                        ProcName(proc),
                        plural(forks)
                    ),
                );
                false
            }
            Some(ChildInfo {
                exited: Some(exit), ..
            }) => {
                self.report_related(
                    field,
                    format!("{} {role} but has already exited", ProcName(proc)),
                    Some(*exit),
                );
                false
            }
            Some(_) => true,
        }
    }

    /// `map` exists and is in the address space of `proc`.
    fn check_visible(&mut self, map: MapId, proc: Proc) -> bool {
        let Some(info) = self.scope.map(map) else {
            let maps = self.scope.maps.len();
            self.report(
                Field::Map,
                format!(
                    "m{} does not exist ({maps} mmap{} so far)",
                    map.0,
                    plural(maps)
                ),
            );
            return false;
        };
        if self.scope.visible(map, proc) {
            return true;
        }
        let why = match (info.owner, proc) {
            (Proc::Parent, Proc::Child(_)) => format!(
                "m{} was mapped by the parent after {} was forked",
                map.0,
                ProcName(proc)
            ),
            (owner, _) => format!("m{} was mapped by {}", map.0, ProcName(owner)),
        };
        self.report(
            Field::Map,
            format!("{} does not have m{}: {why}", ProcName(proc), map.0),
        );
        false
    }

    fn check_range(&mut self, op: &Op, map: MapId, range: PageRange) {
        let Some(info) = self.scope.map(map) else {
            return;
        };
        let limit = range_limit(info.offset);
        let ok = !range.is_empty() && range.end <= limit && range.len() <= max_range_len(op);
        if ok {
            return;
        }
        let name = format!("m{}[{}..{}]", map.0, range.start, range.end);
        if range.is_empty() {
            self.report(
                Field::Range,
                format!("{name} is empty: a range needs at least one page"),
            );
        } else if range.end > limit {
            self.report(
                Field::Range,
                format!(
                    "{name} runs past the end of m{}'s slot: ranges end at or before page {limit} \
                     ({SLOT_PAGES} pages per slot, minus offset={})",
                    map.0, info.offset
                ),
            );
        } else if range.len() > max_range_len(op) {
            self.report(
                Field::Range,
                format!(
                    "{name} is {} pages: one GUP call takes at most {} pages",
                    range.len(),
                    GUP_PAGES.end()
                ),
            );
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Every problem of `step`, run as the `index`-th step after the steps that
/// built `scope`, appended to `problems`.
pub fn check_step(scope: &Scope, step: &Step, index: usize, problems: &mut Vec<Problem>) {
    let mut c = Checker {
        scope,
        index,
        problems,
    };
    for (i, comment) in step.comments.iter().enumerate() {
        if let Some(bad) = comment_bad_char(comment) {
            c.report(
                Field::Comment(i),
                format!("comment holds control character U+{:04X}", u32::from(bad)),
            );
        }
    }
    if scope.steps >= MAX_STEPS {
        c.report(
            Field::Op,
            format!("too many steps: a program has at most {MAX_STEPS}"),
        );
    }
    if !c.check_live(step.proc, Field::Proc, "runs this step") {
        return;
    }
    match step.op {
        Op::Mmap {
            map, pages, offset, ..
        } => {
            if scope.maps.len() >= MAX_MAPS {
                c.report(
                    Field::Op,
                    format!("too many mappings: a program has at most {MAX_MAPS} mmaps"),
                );
            } else if usize::from(map.0) != scope.maps.len() {
                c.report(
                    Field::Op,
                    format!(
                        "this mmap creates m{}, not m{} (mappings are numbered in mmap order)",
                        scope.maps.len(),
                        map.0
                    ),
                );
            }
            if !MAP_PAGES.contains(&pages) {
                c.report(
                    Field::Pages,
                    format!(
                        "pages={pages} is out of range {}..={}",
                        MAP_PAGES.start(),
                        MAP_PAGES.end()
                    ),
                );
            }
            if !MAP_OFFSETS.contains(&offset) {
                c.report(
                    Field::Offset,
                    format!(
                        "offset={offset} is out of range {}..={}",
                        MAP_OFFSETS.start(),
                        MAP_OFFSETS.end()
                    ),
                );
            }
        }
        Op::Munmap { map, range }
        | Op::Mprotect { map, range, .. }
        | Op::Madvise { map, range, .. }
        | Op::Touch { map, range, .. }
        | Op::SplitHugePages { map, range } => {
            if c.check_visible(map, step.proc) {
                c.check_range(&step.op, map, range);
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
            if scope.handles.len() >= MAX_HANDLES {
                c.report(
                    Field::Op,
                    format!("too many GUP calls: a program has at most {MAX_HANDLES}"),
                );
            } else if usize::from(handle.0) != scope.handles.len() {
                c.report(
                    Field::Op,
                    format!(
                        "this GUP call creates handle {}, not {} (GUP calls are numbered in \
                         call order)",
                        scope.handles.len(),
                        handle.0
                    ),
                );
            }
            let space = match (api.is_remote(), target) {
                (true, Some(target)) => {
                    if !c.check_live(target, Field::Target, "is the target") {
                        return;
                    }
                    target
                }
                (true, None) => {
                    c.report(Field::Target, format!("{api} needs a target process"));
                    return;
                }
                (false, Some(_)) => {
                    c.report(
                        Field::Target,
                        format!("{api} works on the caller's mm: only *_remote take a target"),
                    );
                    step.proc
                }
                (false, None) => step.proc,
            };
            if c.check_visible(map, space) {
                c.check_range(&step.op, map, range);
            }
            check_foll(&mut c, api, foll);
        }
        Op::Release { handle, how } => {
            let Some(info) = scope.handles.get(usize::from(handle.0)) else {
                let calls = scope.handles.len();
                c.report(
                    Field::Handle,
                    format!(
                        "handle {} does not exist ({calls} GUP call{} so far)",
                        handle.0,
                        plural(calls)
                    ),
                );
                return;
            };
            let name = HandleName {
                handle,
                pin: info.pin,
            };
            if let Some(at) = info.released {
                c.report_related(
                    Field::Handle,
                    format!("{name} was already released"),
                    Some(at),
                );
            } else if info.pin && how == Release::Put {
                c.report(
                    Field::Op,
                    format!(
                        "put() drops FOLL_GET references, {name} holds FOLL_PIN pins: use \
                         unpin({name}) or unpin_dirty({name})"
                    ),
                );
            } else if !info.pin && how != Release::Put {
                c.report(
                    Field::Op,
                    format!(
                        "unpin() releases FOLL_PIN pins, {name} holds FOLL_GET references: use \
                         put({name})"
                    ),
                );
            }
        }
        Op::Fork { child } => {
            if step.proc != Proc::Parent {
                c.report(
                    Field::Proc,
                    "fork() runs in the parent: children do not fork".to_string(),
                );
            }
            if scope.children.len() >= MAX_CHILDREN {
                c.report(
                    Field::Op,
                    format!("too many forks: a program has at most {MAX_CHILDREN} children"),
                );
            } else if usize::from(child.0) != scope.children.len() {
                c.report(
                    Field::Op,
                    format!(
                        "this fork creates c{}, not c{} (children are numbered in fork order)",
                        scope.children.len(),
                        child.0
                    ),
                );
            }
        }
        Op::Exit { child } => {
            if step.proc != Proc::Parent {
                c.report(
                    Field::Proc,
                    "exit(cN) runs in the parent, which makes the child exit and reaps it"
                        .to_string(),
                );
            }
            c.check_live(Proc::Child(child), Field::Child, "exits");
        }
    }
}

fn check_foll(c: &mut Checker<'_>, api: GupApi, foll: Foll) {
    let unknown = foll.0 & !FOLL_ALLOWED.0;
    if unknown != 0 {
        c.report(
            Field::Foll,
            format!("FOLL_* bits {unknown:#x} are not allowed (write, longterm, force are)"),
        );
    }
    if foll.contains(Foll::LONGTERM) && !api.is_pin() {
        c.report(
            Field::Foll,
            format!(
                "FOLL_LONGTERM is only valid with pin_user_pages*: {api} WARNs and fails with it"
            ),
        );
    }
}

/// Every problem of `program`, header first, then steps in order.
pub fn validate(program: &Program) -> Vec<Problem> {
    let mut problems = Vec::new();
    check_header(program, &mut problems);
    let mut scope = Scope::new();
    for (index, step) in program.steps.iter().enumerate() {
        check_step(&scope, step, index, &mut problems);
        scope.apply(step, index);
    }
    problems
}

fn check_header(program: &Program, problems: &mut Vec<Problem>) {
    for (i, comment) in program.comments.iter().enumerate() {
        if let Some(bad) = comment_bad_char(comment) {
            problems.push(Problem {
                step: None,
                field: Field::ProgramComment(i),
                message: format!("comment holds control character U+{:04X}", u32::from(bad)),
                related: None,
            });
        }
    }
    if let Some(kernel) = &program.header.kernel
        && !kernel_ok(kernel)
    {
        let known: Vec<&str> = Profile::ALL.iter().map(|p| p.name).collect();
        problems.push(Problem {
            step: None,
            field: Field::Kernel,
            message: format!(
                "kernel={kernel} names no kernel profile (known: {}, or any)",
                known.join(", ")
            ),
            related: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::test_ops::{mmap, step};

    #[test]
    fn clamp_range_is_identity_on_valid_ranges_and_lands_inside_otherwise() {
        let ok = PageRange { start: 3, end: 9 };
        assert_eq!(clamp_range(ok, 2048, 1024), ok);
        let empty = PageRange { start: 7, end: 7 };
        assert_eq!(
            clamp_range(empty, 2048, 1024),
            PageRange { start: 7, end: 8 }
        );
        let past = PageRange {
            start: 5000,
            end: 9000,
        };
        assert_eq!(
            clamp_range(past, 1537, u16::MAX),
            PageRange {
                start: 1536,
                end: 1537
            }
        );
        let long = PageRange {
            start: 0,
            end: 2000,
        };
        assert_eq!(
            clamp_range(long, 2048, 1024),
            PageRange {
                start: 0,
                end: 1024
            }
        );
    }

    fn pin(handle: u16, map: u8) -> Op {
        Op::Gup {
            handle: HandleId(handle),
            api: GupApi::PinUserPages,
            target: None,
            map: MapId(map),
            range: PageRange { start: 0, end: 1 },
            foll: Foll::WRITE,
        }
    }

    fn unpin(handle: u16) -> Op {
        Op::Release {
            handle: HandleId(handle),
            how: Release::Unpin,
        }
    }

    fn program(steps: Vec<Step>) -> Program {
        Program {
            steps,
            ..Program::default()
        }
    }

    /// The helper module's handle table is per open file and every process
    /// shares the runner's file: a child's pin outlives the child, and any
    /// running process may release any live handle.
    #[test]
    fn handles_are_shared_by_every_process_and_outlive_their_taker() {
        let (c0, c1) = (Proc::Child(ChildId(0)), Proc::Child(ChildId(1)));
        let fork = |c| step(Proc::Parent, Op::Fork { child: ChildId(c) });
        let exit = |c| step(Proc::Parent, Op::Exit { child: ChildId(c) });
        let valid = program(vec![
            step(Proc::Parent, mmap(0, 1)),
            fork(0),
            fork(1),
            // Taken by c0, released by the parent after c0 exited.
            step(c0, pin(0, 0)),
            exit(0),
            step(Proc::Parent, unpin(0)),
            // Taken by the parent, released by c1.
            step(Proc::Parent, pin(1, 0)),
            step(c1, unpin(1)),
        ]);
        assert_eq!(validate(&valid), []);

        let mut scope = Scope::new();
        for (i, s) in valid.steps.iter().enumerate().take(5) {
            scope.apply(s, i);
        }
        assert!(scope.is_live(HandleId(0)), "c0 exited, its pin lives on");
        assert_eq!(scope.live_handles().collect::<Vec<_>>(), [HandleId(0)]);

        // Released once only, whoever releases it.
        let twice = program(vec![
            step(Proc::Parent, mmap(0, 1)),
            fork(0),
            step(c0, pin(0, 0)),
            step(Proc::Parent, unpin(0)),
            step(c0, unpin(0)),
        ]);
        let problems = validate(&twice);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].step, Some(4));
        assert_eq!(problems[0].related, Some(3));
        assert!(problems[0].message.contains("already released"));

        // The releasing process must run.
        let dead = program(vec![
            step(Proc::Parent, mmap(0, 1)),
            fork(0),
            step(Proc::Parent, pin(0, 0)),
            exit(0),
            step(c0, unpin(0)),
        ]);
        let problems = validate(&dead);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, Field::Proc);
    }

    #[test]
    fn child_sees_parent_maps_from_before_its_fork_only() {
        let mut scope = Scope::new();
        scope.apply(&step(Proc::Parent, mmap(0, 1)), 0);
        scope.apply(&step(Proc::Parent, Op::Fork { child: ChildId(0) }), 1);
        scope.apply(&step(Proc::Parent, mmap(1, 1)), 2);
        let c0 = Proc::Child(ChildId(0));
        scope.apply(&step(c0, mmap(2, 1)), 3);
        assert!(scope.visible(MapId(0), c0));
        assert!(!scope.visible(MapId(1), c0));
        assert!(scope.visible(MapId(2), c0));
        assert!(!scope.visible(MapId(2), Proc::Parent));
        assert_eq!(
            scope.visible_maps(c0).collect::<Vec<_>>(),
            [MapId(0), MapId(2)]
        );
    }
}
