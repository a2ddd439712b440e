//! The model backend: a program run on `reference::Model`.
//!
//! Translates the program language (maps, handles and children by ordinal,
//! page offsets) into the model's kernel-level calls (pids, virtual page
//! numbers), and the model's answers into [`StepObs`], exactly as the kernel
//! executor reports the real kernel. Also collects what only the model
//! knows: the non-deterministic points each step reached, the pages each
//! step freed, and the first broken model invariant.

use reference::{
    Config, Errno, HandleId as ModelHandle, InvariantTracker, InvariantViolation, Model, Nondet,
    PageId, PageView, Pid, Profile,
};

use crate::obs::{HandleObs, MapObs, OpResult, PageObs, StepObs, Trace, page_flags};
use crate::op::{ChildId, HandleId, MapId, Op, PageRange, Proc, Program, map_start_vpn};

/// A program's run on the model.
#[derive(Clone, Debug, Default)]
pub struct ModelRun {
    /// One observation per step.
    pub trace: Trace,
    /// Per step, the non-deterministic points it reached.
    pub nondet: Vec<Vec<Nondet>>,
    /// Per step, the pages it freed (their pfns may be reused afterwards).
    pub freed: Vec<Vec<PageId>>,
    /// The first broken model invariant: step index and message.
    pub invariant: Option<(usize, String)>,
}

/// What a map handle stands for.
#[derive(Clone, Copy, Debug)]
struct MapInfo {
    start: u64,
    pages: u16,
}

/// The translation state between program ordinals and model objects.
struct Scope {
    maps: Vec<Option<MapInfo>>,
    /// Per process (index 0 = parent, c + 1 = child c): the maps it has.
    has_map: Vec<Vec<bool>>,
    children: Vec<Option<Pid>>,
    handles: Vec<Option<ModelHandle>>,
}

impl Scope {
    fn new() -> Scope {
        Scope {
            maps: Vec::new(),
            has_map: vec![Vec::new()],
            children: Vec::new(),
            handles: Vec::new(),
        }
    }

    fn slot(proc: Proc) -> usize {
        match proc {
            Proc::Parent => 0,
            Proc::Child(c) => usize::from(c.0) + 1,
        }
    }

    fn pid(&self, proc: Proc) -> Option<Pid> {
        match proc {
            Proc::Parent => Some(Pid::PARENT),
            Proc::Child(c) => self.children.get(usize::from(c.0)).copied().flatten(),
        }
    }

    fn set_map(&mut self, proc: Proc, map: MapId, value: bool) {
        let row = Scope::slot(proc);
        if self.has_map.len() <= row {
            self.has_map.resize(row + 1, Vec::new());
        }
        let cols = &mut self.has_map[row];
        let i = usize::from(map.0);
        if cols.len() <= i {
            cols.resize(i + 1, false);
        }
        cols[i] = value;
    }

    fn has_map(&self, proc: Proc, map: MapId) -> bool {
        self.has_map
            .get(Scope::slot(proc))
            .and_then(|r| r.get(usize::from(map.0)))
            .copied()
            .unwrap_or(false)
    }

    /// The page range of a map, as virtual page numbers.
    fn vpns(&self, map: MapId, range: PageRange) -> Option<(u64, u64)> {
        let info = self.maps.get(usize::from(map.0)).copied().flatten()?;
        Some((info.start + u64::from(range.start), u64::from(range.len())))
    }

    /// Live processes in observation order.
    fn procs(&self) -> Vec<(Proc, Pid)> {
        let mut out = vec![(Proc::Parent, Pid::PARENT)];
        for (c, pid) in self.children.iter().enumerate() {
            if let Some(pid) = pid {
                out.push((Proc::Child(ChildId(c as u8)), *pid));
            }
        }
        out
    }
}

fn errno(e: Errno) -> OpResult {
    OpResult::Errno(e.number())
}

fn unit(r: Result<(), Errno>) -> OpResult {
    match r {
        Ok(()) => OpResult::Ok,
        Err(e) => errno(e),
    }
}

/// A program being executed on the model, step by step.
pub struct ModelExec {
    model: Model,
    scope: Scope,
    /// What the invariant check counted at the previous step: each check
    /// looks only at what the step changed.
    tracker: InvariantTracker,
}

impl std::fmt::Debug for ModelExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelExec").finish_non_exhaustive()
    }
}

impl ModelExec {
    /// A fresh model of `profile` with the program header's settings.
    pub fn new(program: &Program, profile: Profile) -> ModelExec {
        let config = Config {
            thp: program.header.thp,
            use_zero_page: program.header.use_zero_page,
        };
        ModelExec {
            model: Model::new(profile, config),
            scope: Scope::new(),
            tracker: InvariantTracker::default(),
        }
    }

    /// Start `program` afresh on a model of `profile`, as
    /// [`ModelExec::new`] would, reusing this one's buffers (the fuzz
    /// targets run one program per input).
    pub fn reset(&mut self, program: &Program, profile: Profile) {
        let config = Config {
            thp: program.header.thp,
            use_zero_page: program.header.use_zero_page,
        };
        self.model.reset(profile, config);
        self.scope = Scope::new();
        self.tracker.clear();
    }

    /// Execute one step; returns what the kernel would return.
    pub fn step(&mut self, step: &crate::op::Step) -> OpResult {
        apply(&mut self.model, &mut self.scope, step.proc, &step.op)
    }

    /// What the kernel executor would observe now.
    pub fn observe(&self, result: OpResult) -> StepObs {
        observe(&self.model, &self.scope, result)
    }

    /// `Model::check_invariants` after a step, incrementally
    /// (`Model::check_invariants_tracked`): the same properties and the
    /// same reported violation.
    ///
    /// # Errors
    /// The first broken invariant.
    pub fn check_invariants(&mut self) -> Result<(), InvariantViolation> {
        self.model.check_invariants_tracked(&mut self.tracker)
    }

    /// The model itself.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The model, mutably (to drain non-deterministic points and freed pages).
    pub fn model_mut(&mut self) -> &mut Model {
        &mut self.model
    }
}

/// Run `program` on a fresh model of `profile`, observing after every step.
pub fn run_model(program: &Program, profile: Profile) -> ModelRun {
    let mut exec = ModelExec::new(program, profile);
    let mut run = ModelRun::default();
    for (i, step) in program.steps.iter().enumerate() {
        let result = exec.step(step);
        run.trace.steps.push(exec.observe(result));
        run.nondet.push(exec.model.take_nondet());
        run.freed.push(exec.model.take_freed());
        if run.invariant.is_none() {
            if let Err(e) = exec.check_invariants() {
                run.invariant = Some((i, e.to_string()));
            }
        }
    }
    run
}

/// Apply one step to the model.
fn apply(model: &mut Model, scope: &mut Scope, proc: Proc, op: &Op) -> OpResult {
    let Some(pid) = scope.pid(proc) else {
        return errno(Errno::ESRCH);
    };
    match *op {
        Op::Mmap {
            map,
            kind,
            pages,
            prot,
            offset,
        } => {
            let start = map_start_vpn(map, offset);
            let r = model.mmap(pid, start, u64::from(pages), kind, prot);
            if r.is_ok() {
                let i = usize::from(map.0);
                if scope.maps.len() <= i {
                    scope.maps.resize(i + 1, None);
                }
                scope.maps[i] = Some(MapInfo { start, pages });
                scope.set_map(proc, map, true);
            }
            unit(r)
        }
        Op::Munmap { map, range } => with_range(scope, map, range, |s, n| model.munmap(pid, s, n)),
        Op::Mprotect { map, range, prot } => {
            with_range(scope, map, range, |s, n| model.mprotect(pid, s, n, prot))
        }
        Op::Madvise { map, range, advice } => {
            with_range(scope, map, range, |s, n| model.madvise(pid, s, n, advice))
        }
        Op::Touch { map, range, access } => match scope.vpns(map, range) {
            Some((s, n)) => match model.touch(pid, s, n, access) {
                Ok(()) => OpResult::Touched,
                Err(segv) => OpResult::Segv { at: segv.at as u16 },
            },
            None => errno(Errno::EINVAL),
        },
        Op::Gup {
            handle,
            api,
            target,
            map,
            range,
            foll,
        } => {
            let target_pid = match target {
                Some(t) => scope.pid(t),
                None => Some(pid),
            };
            let (Some((s, n)), Some(target_pid)) = (scope.vpns(map, range), target_pid) else {
                return errno(Errno::EINVAL);
            };
            match model.gup(pid, api, target_pid, s, n, foll) {
                Ok(g) => {
                    let i = usize::from(handle.0);
                    if scope.handles.len() <= i {
                        scope.handles.resize(i + 1, None);
                    }
                    scope.handles[i] = Some(g.handle);
                    OpResult::Pages(g.count)
                }
                Err(e) => errno(e),
            }
        }
        Op::Release { handle, how } => {
            match scope.handles.get(usize::from(handle.0)).copied().flatten() {
                Some(h) => {
                    let r = model.release(h, how);
                    if r.is_ok() {
                        scope.handles[usize::from(handle.0)] = None;
                    }
                    unit(r)
                }
                None => errno(Errno::ENOENT),
            }
        }
        Op::SplitHugePages { map, range } => {
            with_range(scope, map, range, |s, n| model.split_huge_pages(pid, s, n))
        }
        Op::Fork { child } => match model.fork(pid) {
            Ok(c) => {
                let i = usize::from(child.0);
                if scope.children.len() <= i {
                    scope.children.resize(i + 1, None);
                }
                scope.children[i] = Some(c);
                let inherited: Vec<bool> = scope
                    .has_map
                    .get(Scope::slot(proc))
                    .cloned()
                    .unwrap_or_default();
                let row = Scope::slot(Proc::Child(child));
                if scope.has_map.len() <= row {
                    scope.has_map.resize(row + 1, Vec::new());
                }
                scope.has_map[row] = inherited;
                OpResult::Ok
            }
            Err(e) => errno(e),
        },
        Op::Exit { child } => match scope.pid(Proc::Child(child)) {
            Some(c) => {
                let r = model.exit(c);
                if r.is_ok() {
                    scope.children[usize::from(child.0)] = None;
                }
                unit(r)
            }
            None => errno(Errno::ESRCH),
        },
    }
}

fn with_range(
    scope: &Scope,
    map: MapId,
    range: PageRange,
    f: impl FnOnce(u64, u64) -> Result<(), Errno>,
) -> OpResult {
    match scope.vpns(map, range) {
        Some((s, n)) => unit(f(s, n)),
        None => errno(Errno::EINVAL),
    }
}

/// The observation after a step.
fn observe(model: &Model, scope: &Scope, result: OpResult) -> StepObs {
    let mut maps = Vec::new();
    for (proc, pid) in scope.procs() {
        for (m, info) in scope.maps.iter().enumerate() {
            let map = MapId(m as u8);
            let Some(info) = info else { continue };
            if !scope.has_map(proc, map) {
                continue;
            }
            let pages = (0..u64::from(info.pages))
                .map(|i| page_obs(&model.page_at(pid, info.start + i)))
                .collect();
            maps.push(MapObs { proc, map, pages });
        }
    }
    let handles = scope
        .handles
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            h.map(|h| HandleObs {
                handle: HandleId(i as u16),
                pages: model.handle_pages(h).iter().map(page_obs).collect(),
            })
        })
        .collect();
    StepObs {
        result,
        vmstat: model.vmstat().to_array(),
        maps,
        handles,
    }
}

/// A model page as the kernel executor reports one.
pub fn page_obs(v: &PageView) -> PageObs {
    if !v.present {
        return PageObs::default();
    }
    let mut flags = page_flags::PRESENT;
    for (on, bit) in [
        (v.anon, page_flags::ANON),
        (v.anon_exclusive, page_flags::ANON_EXCLUSIVE),
        (v.zero, page_flags::ZERO),
        (v.huge_zero, page_flags::HUGE_ZERO),
        (v.maybe_dma_pinned, page_flags::MAYBE_DMA_PINNED),
        (v.order > 0, page_flags::LARGE),
    ] {
        if on {
            flags |= bit;
        }
    }
    PageObs {
        key: v.page.map_or(0, |p| p.0),
        head: v.head.map_or(0, |p| p.0),
        refcount: clamp(v.refcount),
        mapcount: clamp(v.mapcount),
        folio_mapcount: clamp(v.folio_mapcount),
        pincount: clamp(v.pincount),
        order: v.order,
        flags,
    }
}

fn clamp(v: i64) -> i32 {
    v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}
