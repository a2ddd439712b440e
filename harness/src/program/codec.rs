//! Fuzzer bytes ⇄ programs: our own small, stable, versioned format.
//!
//! [`decode`] is total: any bytes give a valid program, so every fuzzer
//! input means something and can be printed as text. [`encode`] is its
//! inverse on valid programs (`decode(encode(p)) == p`), so any text
//! program can seed a libFuzzer or AFL corpus. The format is ours, not
//! `arbitrary`'s byte interpretation, so stored corpora keep their meaning
//! across crate upgrades; `docs/program-format.md` specifies it.
//!
//! Decoding walks a [`Scope`] of live handles and only ever offers choices
//! that are valid at that point (the same rules as `validate`), so a
//! random input mostly yields meaningful operations: ranges mostly inside
//! their mapping and sometimes across its end, small GUP sizes, PMD-sized
//! aligned mappings so THPs happen, rare forks and exits. The first bytes
//! are swarm masks that switch whole operation kinds off for one program;
//! disabled kinds are skipped when an operation is chosen, so no input
//! byte is wasted on them. Every biased choice has an "exact" form that
//! reaches every valid value; the encoder always writes that one.

use reference::{Access, Advice, Foll, GupApi, MapKind, Prot, Release, ThpMode};

use super::Limits;
use super::rules::{self, Scope, max_range_len_of, range_limit};
use crate::op::{
    ChildId, HandleId, Header, MAX_CHILDREN, MAX_HANDLES, MAX_MAP_OFFSET, MAX_MAP_PAGES, MAX_MAPS,
    MapId, Op, PageRange, Proc, Program, Step,
};

/// First byte written by [`encode`]: format version 1. Decoders of later
/// versions dispatch on it; this decoder reads every value as version 1
/// (the other values are reserved) so that no fuzzer input is wasted.
pub const FORMAT_V1: u8 = 1;

/// Two bytes that, in place of an operation byte, start an annotation
/// (comment or kernel requirement). Two bytes, so random inputs almost
/// never hit it (1 in 65536 operations).
pub const ANNOTATION: [u8; 2] = [0xFF, 0xA5];

/// Bytes before the first step: version, two swarm masks (2 bytes each),
/// settings.
pub const PROLOGUE_BYTES: usize = 6;

/// Most bytes one step takes (a remote GUP call with an exact range).
pub const MAX_STEP_BYTES: usize = 11;

/// Swarm bits. Bytes 1–2 and 3–4 are two masks (little endian); a kind is
/// switched off for the whole program when its bit is set in both, so each
/// kind of a random input is off with probability 1/4 (most programs still
/// pin; many leave something out). mmap is always on: without a mapping no
/// other operation has anything to work on.
pub mod swarm {
    /// `munmap`.
    pub const MUNMAP: u16 = 1 << 0;
    /// `mprotect`.
    pub const MPROTECT: u16 = 1 << 1;
    /// `madvise`.
    pub const MADVISE: u16 = 1 << 2;
    /// `touch`.
    pub const TOUCH: u16 = 1 << 3;
    /// `get_user_pages*` (FOLL_GET).
    pub const GET: u16 = 1 << 4;
    /// `pin_user_pages*` (FOLL_PIN).
    pub const PIN: u16 = 1 << 5;
    /// The `*_remote` entry points, of either kind.
    pub const REMOTE: u16 = 1 << 6;
    /// `put`, `unpin`, `unpin_dirty`.
    pub const RELEASE: u16 = 1 << 7;
    /// `split_huge_pages`.
    pub const SPLIT: u16 = 1 << 8;
    /// `fork`.
    pub const FORK: u16 = 1 << 9;
    /// `exit`.
    pub const EXIT: u16 = 1 << 10;
    /// Every bit.
    pub const ALL: u16 = (1 << 11) - 1;
}

/// Operation kinds as the codec chooses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Mmap,
    Munmap,
    Mprotect,
    Madvise,
    Touch,
    Get,
    Pin,
    Release,
    Split,
    Fork,
    Exit,
}

/// Each kind with its swarm bit (0: always on) and its weight when the
/// operation byte picks among the kinds possible at that point. Weights
/// make touches and pins common, fork and exit rare; mmap's weight also
/// falls as mappings accumulate (see `Choices::weight`).
const KINDS: [(Kind, u16, u32); 11] = [
    (Kind::Mmap, 0, 3),
    (Kind::Munmap, swarm::MUNMAP, 1),
    (Kind::Mprotect, swarm::MPROTECT, 2),
    (Kind::Madvise, swarm::MADVISE, 2),
    (Kind::Touch, swarm::TOUCH, 5),
    (Kind::Get, swarm::GET, 3),
    (Kind::Pin, swarm::PIN, 5),
    (Kind::Release, swarm::RELEASE, 3),
    (Kind::Split, swarm::SPLIT, 2),
    (Kind::Fork, swarm::FORK, 1),
    (Kind::Exit, swarm::EXIT, 1),
];

/// Mapping kinds by `byte & 7`: mostly private anonymous memory.
const MAP_KIND_TABLE: [MapKind; 8] = [
    MapKind::AnonPrivate,
    MapKind::AnonPrivate,
    MapKind::AnonPrivate,
    MapKind::AnonPrivate,
    MapKind::AnonShared,
    MapKind::MemfdShared,
    MapKind::MemfdPrivate,
    MapKind::AnonPrivate,
];
/// mmap protections by `byte & 7`: mostly read-write.
const MMAP_PROT_TABLE: [Prot; 8] = [
    Prot::ReadWrite,
    Prot::ReadWrite,
    Prot::ReadWrite,
    Prot::ReadWrite,
    Prot::ReadWrite,
    Prot::ReadWrite,
    Prot::Read,
    Prot::None,
];
/// mprotect protections by `byte & 3`: mostly read-only (the COW cases).
const MPROTECT_PROT_TABLE: [Prot; 4] = [Prot::Read, Prot::Read, Prot::ReadWrite, Prot::None];
/// madvise advice by `byte & 3`.
const ADVICE_TABLE: [Advice; 4] = [
    Advice::DontNeed,
    Advice::HugePage,
    Advice::NoHugePage,
    Advice::DontNeed,
];
/// Touch accesses by `byte & 1`.
const ACCESS_TABLE: [Access; 2] = [Access::Write, Access::Read];
/// THP modes by `settings & 3`.
const THP_TABLE: [ThpMode; 4] = [
    ThpMode::Always,
    ThpMode::Madvise,
    ThpMode::Never,
    ThpMode::Always,
];

/// Settings bits that, both set, switch `use_zero_page` off (1 in 4
/// random inputs: the kernel's default is on).
const ZERO_PAGE_OFF: u8 = 0x0C;

/// Pages of a PMD (2 MiB): the size that makes a THP possible.
const PMD_PAGES: u16 = 512;

/// Range selector bytes: which form the next bytes take. Whole-mapping and
/// whole-PMD ranges are the rarer forms: every page they cover costs the
/// model (and the kernel's observation) a fault and a check, and a THP is
/// made or taken by touching any one of its pages.
mod range_form {
    /// `..0x18` (9%): the whole mapping.
    pub const WHOLE: u8 = 0x18;
    /// `..0xB8` (63%): a few pages inside the mapping (sometimes across its end).
    pub const INSIDE: u8 = 0xB8;
    /// `..0xD0` (9%): one PMD-aligned PMD.
    pub const PMD: u8 = 0xD0;
    /// `..0xF0` (12%): a few pages around the end of the mapping.
    pub const END: u8 = 0xF0;
    /// `0xF0..` (6%): exact start and length, anywhere in the slot.
    pub const EXACT: u8 = 0xF0;
}

/// Mmap page-count selector bytes.
mod pages_form {
    /// `..0x60`: one PMD.
    pub const PMD: u8 = 0x60;
    /// `..0x80`: two PMDs.
    pub const TWO_PMDS: u8 = 0x80;
    /// `..0xE0`: `1 + (byte & 31)` pages.
    pub const SMALL: u8 = 0xE0;
    /// `0xE0..`: exact count.
    pub const EXACT: u8 = 0xE0;
}

/// Offset selector: below this, offset 0 (PMD-aligned, so THPs can
/// happen); else exact.
const OFFSET_EXACT: u8 = 0xE0;
/// Release selector: below this `unpin`, else `unpin_dirty`.
const UNPIN_DIRTY: u8 = 0xC0;
/// FOLL byte bits.
const FOLL_WRITE_BIT: u8 = 0x01;
const FOLL_LONGTERM_BIT: u8 = 0x02;
const FOLL_FORCE_BITS: u8 = 0x0C;
/// Annotation types (`type % 3`).
const NOTE_PROGRAM_COMMENT: u8 = 0;
const NOTE_STEP_COMMENT: u8 = 1;
const NOTE_KERNEL: u8 = 2;

/// A list on the stack, for the per-step choices (no allocation per step).
#[derive(Clone, Copy)]
struct Small<T: Copy, const N: usize> {
    items: [T; N],
    len: usize,
}

impl<T: Copy + PartialEq, const N: usize> Small<T, N> {
    fn new(fill: T) -> Self {
        Small {
            items: [fill; N],
            len: 0,
        }
    }

    fn collect(fill: T, iter: impl Iterator<Item = T>) -> Self {
        let mut list = Small::new(fill);
        for item in iter {
            list.items[list.len] = item;
            list.len += 1;
        }
        list
    }

    fn as_slice(&self) -> &[T] {
        &self.items[..self.len]
    }

    fn index_of(&self, item: T) -> Option<usize> {
        self.as_slice().iter().position(|&x| x == item)
    }
}

type Procs = Small<Proc, { MAX_CHILDREN + 1 }>;
type Maps = Small<MapId, MAX_MAPS>;
type Handles = Small<HandleId, MAX_HANDLES>;
type Kinds = Small<Kind, 11>;

/// What the scope allows at one point: the choices both directions share.
struct Choices<'s> {
    scope: &'s Scope,
    /// The kinds switched on (a [`swarm`] mask).
    swarm: u16,
    limits: Limits,
}

impl Choices<'_> {
    fn procs_with_maps(&self) -> Procs {
        Procs::collect(
            Proc::Parent,
            self.scope
                .live_procs()
                .filter(|&p| self.scope.visible_maps(p).next().is_some()),
        )
    }

    fn live_procs(&self) -> Procs {
        Procs::collect(Proc::Parent, self.scope.live_procs())
    }

    fn live_children(&self) -> Small<ChildId, MAX_CHILDREN> {
        Small::collect(
            ChildId(0),
            self.scope.live_procs().filter_map(|p| match p {
                Proc::Child(c) => Some(c),
                Proc::Parent => None,
            }),
        )
    }

    fn maps(&self, proc: Proc) -> Maps {
        Maps::collect(MapId(0), self.scope.visible_maps(proc))
    }

    /// The live handles: any running process may release any of them
    /// (the helper module's handle table is shared by every process).
    fn handles(&self) -> Handles {
        Handles::collect(HandleId(0), self.scope.live_handles())
    }

    /// The kinds enabled and possible here, in [`KINDS`] order.
    fn kinds(&self) -> Kinds {
        let scope = self.scope;
        let has_maps = self.procs_with_maps().len > 0;
        let possible = |kind: Kind| match kind {
            Kind::Mmap => scope.maps.len() < self.limits.max_maps,
            Kind::Munmap | Kind::Mprotect | Kind::Madvise | Kind::Touch | Kind::Split => has_maps,
            Kind::Get | Kind::Pin => has_maps && scope.handles.len() < self.limits.max_handles,
            Kind::Release => self.scope.live_handles().next().is_some(),
            Kind::Fork => scope.children.len() < self.limits.max_children,
            Kind::Exit => self.live_children().len > 0,
        };
        Kinds::collect(
            Kind::Mmap,
            KINDS
                .iter()
                .filter(|&&(kind, bit, _)| (bit == 0 || self.swarm & bit != 0) && possible(kind))
                .map(|&(kind, _, _)| kind),
        )
    }

    /// The GUP entry points of one kind (FOLL_GET or FOLL_PIN) enabled here.
    fn apis(&self, pin: bool) -> Small<GupApi, 3> {
        let remote = self.swarm & swarm::REMOTE != 0;
        Small::collect(
            GupApi::GetUserPages,
            GupApi::ALL
                .into_iter()
                .filter(|api| api.is_pin() == pin && (remote || !api.is_remote())),
        )
    }
}

impl Choices<'_> {
    /// The weight of `kind` here: [`KINDS`], except that mmap is likely
    /// while there are few mappings and unlikely once there are several,
    /// so that programs work on their mappings rather than pile them up.
    fn weight(&self, kind: Kind) -> u32 {
        if kind == Kind::Mmap {
            return match self.scope.maps.len() {
                0 => 4,
                1 | 2 => 2,
                _ => 1,
            };
        }
        KINDS
            .iter()
            .find(|(k, _, _)| *k == kind)
            .map(|&(_, _, w)| w)
            .expect("every kind has a weight")
    }
}

/// The kind an operation byte picks among `kinds`, by weight.
fn pick_kind(byte: u8, choices: &Choices<'_>, kinds: &Kinds) -> Kind {
    let total: u32 = kinds.as_slice().iter().map(|&k| choices.weight(k)).sum();
    let mut x = u32::from(byte) % total;
    for &kind in kinds.as_slice() {
        let w = choices.weight(kind);
        if x < w {
            return kind;
        }
        x -= w;
    }
    unreachable!("x < total")
}

/// Reads bytes, giving zeros past the end (so every input decodes).
struct Reader<'b> {
    bytes: &'b [u8],
    pos: usize,
}

impl Reader<'_> {
    fn is_empty(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn u8(&mut self) -> u8 {
        let b = self.bytes.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn peek_is(&self, bytes: &[u8]) -> bool {
        self.bytes
            .get(self.pos..)
            .is_some_and(|rest| rest.starts_with(bytes))
    }

    /// An index below `n`; no byte is read when there is one choice.
    fn choose(&mut self, n: usize) -> usize {
        if n <= 1 {
            0
        } else {
            usize::from(self.u8()) % n
        }
    }

    /// LEB128, at most 5 bytes; capped at the bytes left.
    fn len(&mut self) -> usize {
        let mut value: u64 = 0;
        for shift in 0..5 {
            let b = self.u8();
            value |= u64::from(b & 0x7F) << (7 * shift);
            if b & 0x80 == 0 {
                break;
            }
        }
        let left = self.bytes.len().saturating_sub(self.pos);
        usize::try_from(value).map_or(left, |v| v.min(left))
    }

    fn text(&mut self) -> String {
        let len = self.len();
        let start = self.pos.min(self.bytes.len());
        let end = (start + len).min(self.bytes.len());
        self.pos = end;
        String::from_utf8_lossy(&self.bytes[start..end]).into_owned()
    }
}

/// The program of any bytes, within the hard limits of `op.rs`.
pub fn decode(bytes: &[u8]) -> Program {
    decode_with(bytes, &Limits::FULL)
}

/// The program of any bytes, within `limits` (capped at the hard limits).
pub fn decode_with(bytes: &[u8], limits: &Limits) -> Program {
    let limits = limits.capped();
    let mut r = Reader { bytes, pos: 0 };
    let _version = r.u8();
    let swarm = !(r.u16() & r.u16()) & swarm::ALL;
    let settings = r.u8();
    let mut program = Program {
        header: Header {
            kernel: None,
            thp: THP_TABLE[usize::from(settings & 3)],
            use_zero_page: settings & ZERO_PAGE_OFF != ZERO_PAGE_OFF,
        },
        comments: Vec::new(),
        steps: Vec::new(),
    };
    let mut scope = Scope::new();
    let mut comments = Vec::new();
    let mut problems = Vec::new();
    while !r.is_empty() && program.steps.len() < limits.max_steps {
        if r.peek_is(&ANNOTATION) {
            r.pos += ANNOTATION.len();
            let note = r.u8() % 3;
            let text = r.text();
            match note {
                NOTE_PROGRAM_COMMENT => program.comments.push(text),
                NOTE_STEP_COMMENT => comments.push(text),
                _ => program.header.kernel = Some(text),
            }
            continue;
        }
        let choices = Choices {
            scope: &scope,
            swarm,
            limits,
        };
        let kinds = choices.kinds();
        if kinds.len == 0 {
            break;
        }
        let kind = pick_kind(r.u8(), &choices, &kinds);
        let (proc, op) = decode_op(&mut r, &choices, kind);
        let step = Step {
            proc,
            op,
            comments: std::mem::take(&mut comments),
        };
        // The choices above only offer what the rules allow, so this check
        // finds nothing but bad comment characters, unless the decoder has a
        // bug; either way fixup below makes the program valid.
        rules::check_step(&scope, &step, program.steps.len(), &mut problems);
        scope.apply(&step, program.steps.len());
        program.steps.push(step);
    }
    let kernel_ok = program
        .header
        .kernel
        .as_deref()
        .is_none_or(rules::kernel_ok);
    let comments_ok = program
        .comments
        .iter()
        .all(|c| rules::comment_bad_char(c).is_none());
    if !problems.is_empty() || !kernel_ok || !comments_ok {
        program.fixup();
    }
    program
}

fn decode_op(r: &mut Reader<'_>, choices: &Choices<'_>, kind: Kind) -> (Proc, Op) {
    let scope = choices.scope;
    match kind {
        Kind::Mmap => {
            let procs = choices.live_procs();
            let proc = procs.as_slice()[r.choose(procs.len)];
            let kind = MAP_KIND_TABLE[usize::from(r.u8() & 7)];
            let pages = decode_pages(r);
            let prot = MMAP_PROT_TABLE[usize::from(r.u8() & 7)];
            let offset = decode_offset(r);
            let map = MapId(u8::try_from(scope.maps.len()).expect("below MAX_MAPS"));
            (
                proc,
                Op::Mmap {
                    map,
                    kind,
                    pages,
                    prot,
                    offset,
                },
            )
        }
        Kind::Munmap | Kind::Mprotect | Kind::Madvise | Kind::Touch | Kind::Split => {
            let procs = choices.procs_with_maps();
            let proc = procs.as_slice()[r.choose(procs.len)];
            let maps = choices.maps(proc);
            let map = maps.as_slice()[r.choose(maps.len)];
            let range = decode_range(r, scope, map, max_range_len_of(false));
            let op = match kind {
                Kind::Munmap => Op::Munmap { map, range },
                Kind::Mprotect => Op::Mprotect {
                    map,
                    range,
                    prot: MPROTECT_PROT_TABLE[usize::from(r.u8() & 3)],
                },
                Kind::Madvise => Op::Madvise {
                    map,
                    range,
                    advice: ADVICE_TABLE[usize::from(r.u8() & 3)],
                },
                Kind::Touch => Op::Touch {
                    map,
                    range,
                    access: ACCESS_TABLE[usize::from(r.u8() & 1)],
                },
                _ => Op::SplitHugePages { map, range },
            };
            (proc, op)
        }
        Kind::Get | Kind::Pin => {
            let pin = kind == Kind::Pin;
            let apis = choices.apis(pin);
            let api = apis.as_slice()[r.choose(apis.len)];
            let (proc, target, space) = if api.is_remote() {
                let callers = choices.live_procs();
                let proc = callers.as_slice()[r.choose(callers.len)];
                let targets = choices.procs_with_maps();
                let target = targets.as_slice()[r.choose(targets.len)];
                (proc, Some(target), target)
            } else {
                let procs = choices.procs_with_maps();
                let proc = procs.as_slice()[r.choose(procs.len)];
                (proc, None, proc)
            };
            let maps = choices.maps(space);
            let map = maps.as_slice()[r.choose(maps.len)];
            let range = decode_range(r, scope, map, max_range_len_of(true));
            let b = r.u8();
            let mut foll = Foll::NONE;
            if b & FOLL_WRITE_BIT != 0 {
                foll = foll | Foll::WRITE;
            }
            if pin && b & FOLL_LONGTERM_BIT != 0 {
                foll = foll | Foll::LONGTERM;
            }
            if b & FOLL_FORCE_BITS == FOLL_FORCE_BITS {
                foll = foll | Foll::FORCE;
            }
            let handle = HandleId(u16::try_from(scope.handles.len()).expect("below MAX_HANDLES"));
            (
                proc,
                Op::Gup {
                    handle,
                    api,
                    target,
                    map,
                    range,
                    foll,
                },
            )
        }
        Kind::Release => {
            let procs = choices.live_procs();
            let proc = procs.as_slice()[r.choose(procs.len)];
            let handles = choices.handles();
            let handle = handles.as_slice()[r.choose(handles.len)];
            let pin = scope.handles[usize::from(handle.0)].pin;
            let how = if !pin {
                Release::Put
            } else if r.u8() < UNPIN_DIRTY {
                Release::Unpin
            } else {
                Release::UnpinDirty
            };
            (proc, Op::Release { handle, how })
        }
        Kind::Fork => {
            let child = ChildId(u8::try_from(scope.children.len()).expect("below MAX_CHILDREN"));
            (Proc::Parent, Op::Fork { child })
        }
        Kind::Exit => {
            let children = choices.live_children();
            let child = children.as_slice()[r.choose(children.len)];
            (Proc::Parent, Op::Exit { child })
        }
    }
}

fn decode_pages(r: &mut Reader<'_>) -> u16 {
    let sel = r.u8();
    if sel < pages_form::PMD {
        PMD_PAGES
    } else if sel < pages_form::TWO_PMDS {
        2 * PMD_PAGES
    } else if sel < pages_form::SMALL {
        1 + u16::from(sel & 31)
    } else {
        1 + r.u16() % MAX_MAP_PAGES
    }
}

fn decode_offset(r: &mut Reader<'_>) -> u16 {
    if r.u8() < OFFSET_EXACT {
        0
    } else {
        r.u16() % (MAX_MAP_OFFSET + 1)
    }
}

fn decode_range(r: &mut Reader<'_>, scope: &Scope, map: MapId, max_len: u16) -> PageRange {
    let info = scope.map(map).expect("chosen among visible maps");
    let pages = info.pages;
    let limit = range_limit(info.offset);
    let sel = r.u8();
    let (start, end) = if sel < range_form::WHOLE {
        (0, pages)
    } else if sel < range_form::INSIDE {
        let start =
            u16::try_from((u32::from(r.u8()) * u32::from(pages)) >> 8).expect("below pages");
        let room = pages - start;
        let b = r.u8();
        let len = if b < 0xC0 {
            1 + u16::from(b) % room.min(16)
        } else {
            1 + u16::from(b & 15)
        };
        (start, start + len)
    } else if sel < range_form::PMD {
        let start = if r.u8() & 1 == 1 && pages > PMD_PAGES {
            PMD_PAGES
        } else {
            0
        };
        (start, start + PMD_PAGES)
    } else if sel < range_form::END {
        let back = u16::from(r.u8() & 7).min(pages - 1);
        let start = pages - 1 - back;
        (start, start + 1 + u16::from(r.u8() & 15))
    } else {
        let start = r.u16() % limit;
        let span = (u32::from(limit).min(u32::from(start) + u32::from(max_len))) - u32::from(start);
        let len = 1 + u32::from(r.u16()) % span;
        (
            start,
            u16::try_from(u32::from(start) + len).expect("within limit"),
        )
    };
    rules::clamp_range(PageRange { start, end }, limit, max_len)
}

/// The bytes of a program: `decode(&encode(p)) == *p` for every valid `p`.
/// An invalid program is encoded as its [`Program::fixup`].
pub fn encode(program: &Program) -> Vec<u8> {
    if !rules::validate(program).is_empty() {
        let mut fixed = program.clone();
        fixed.fixup();
        return encode(&fixed);
    }
    let swarm = swarm_of(program);
    let mut out = Vec::with_capacity(PROLOGUE_BYTES + program.steps.len() * MAX_STEP_BYTES);
    out.push(FORMAT_V1);
    // Off in both masks = off; everything used is on.
    let off = !swarm & swarm::ALL;
    out.extend_from_slice(&off.to_le_bytes());
    out.extend_from_slice(&off.to_le_bytes());
    let thp = THP_TABLE
        .iter()
        .position(|&m| m == program.header.thp)
        .expect("every THP mode is in the table");
    let zero_page_off = if program.header.use_zero_page {
        0
    } else {
        ZERO_PAGE_OFF
    };
    out.push(u8::try_from(thp).expect("small") | zero_page_off);
    if let Some(kernel) = &program.header.kernel {
        put_note(&mut out, NOTE_KERNEL, kernel);
    }
    for comment in &program.comments {
        put_note(&mut out, NOTE_PROGRAM_COMMENT, comment);
    }
    let mut scope = Scope::new();
    for (index, step) in program.steps.iter().enumerate() {
        for comment in &step.comments {
            put_note(&mut out, NOTE_STEP_COMMENT, comment);
        }
        let choices = Choices {
            scope: &scope,
            swarm,
            limits: Limits::FULL,
        };
        encode_step(&mut out, &choices, step);
        scope.apply(step, index);
    }
    out
}

fn swarm_of(program: &Program) -> u16 {
    let mut bits = 0;
    for step in &program.steps {
        bits |= match step.op {
            Op::Mmap { .. } => 0,
            Op::Munmap { .. } => swarm::MUNMAP,
            Op::Mprotect { .. } => swarm::MPROTECT,
            Op::Madvise { .. } => swarm::MADVISE,
            Op::Touch { .. } => swarm::TOUCH,
            Op::Gup { api, .. } => {
                let kind = if api.is_pin() { swarm::PIN } else { swarm::GET };
                kind | if api.is_remote() { swarm::REMOTE } else { 0 }
            }
            Op::Release { .. } => swarm::RELEASE,
            Op::SplitHugePages { .. } => swarm::SPLIT,
            Op::Fork { .. } => swarm::FORK,
            Op::Exit { .. } => swarm::EXIT,
        };
    }
    bits
}

fn put_note(out: &mut Vec<u8>, note: u8, text: &str) {
    out.extend_from_slice(&ANNOTATION);
    out.push(note);
    let mut len = text.len();
    loop {
        let low = u8::try_from(len & 0x7F).expect("7 bits");
        len >>= 7;
        if len == 0 {
            out.push(low);
            break;
        }
        out.push(low | 0x80);
    }
    out.extend_from_slice(text.as_bytes());
}

/// Write the index of `item` among `list` (nothing when there is one choice).
fn put_choice<T: Copy + PartialEq, const N: usize>(out: &mut Vec<u8>, list: &Small<T, N>, item: T) {
    let index = list
        .index_of(item)
        .expect("a valid step only makes choices the rules offer");
    if list.len > 1 {
        out.push(u8::try_from(index).expect("fewer than 256 choices"));
    }
}

fn put_table<T: Copy + PartialEq>(out: &mut Vec<u8>, table: &[T], value: T) {
    let index = table
        .iter()
        .position(|&v| v == value)
        .expect("every value is in its table");
    out.push(u8::try_from(index).expect("small table"));
}

fn kind_of(op: &Op) -> Kind {
    match op {
        Op::Mmap { .. } => Kind::Mmap,
        Op::Munmap { .. } => Kind::Munmap,
        Op::Mprotect { .. } => Kind::Mprotect,
        Op::Madvise { .. } => Kind::Madvise,
        Op::Touch { .. } => Kind::Touch,
        Op::Gup { api, .. } if api.is_pin() => Kind::Pin,
        Op::Gup { .. } => Kind::Get,
        Op::Release { .. } => Kind::Release,
        Op::SplitHugePages { .. } => Kind::Split,
        Op::Fork { .. } => Kind::Fork,
        Op::Exit { .. } => Kind::Exit,
    }
}

fn encode_step(out: &mut Vec<u8>, choices: &Choices<'_>, step: &Step) {
    let kinds = choices.kinds();
    let kind = kind_of(&step.op);
    let byte = (0..=u8::MAX - 1)
        .find(|&b| pick_kind(b, choices, &kinds) == kind)
        .expect("a valid step's kind is possible and enabled");
    out.push(byte);
    match step.op {
        Op::Mmap {
            kind,
            pages,
            prot,
            offset,
            ..
        } => {
            put_choice(out, &choices.live_procs(), step.proc);
            put_table(out, &MAP_KIND_TABLE, kind);
            match pages {
                PMD_PAGES => out.push(0),
                p if p == 2 * PMD_PAGES => out.push(pages_form::PMD),
                p @ 1..=32 => out.push(pages_form::TWO_PMDS + u8::try_from(p - 1).expect("small")),
                p => {
                    out.push(pages_form::EXACT);
                    out.extend_from_slice(&(p - 1).to_le_bytes());
                }
            }
            put_table(out, &MMAP_PROT_TABLE, prot);
            if offset == 0 {
                out.push(0);
            } else {
                out.push(OFFSET_EXACT);
                out.extend_from_slice(&offset.to_le_bytes());
            }
        }
        Op::Munmap { map, range }
        | Op::Mprotect { map, range, .. }
        | Op::Madvise { map, range, .. }
        | Op::Touch { map, range, .. }
        | Op::SplitHugePages { map, range } => {
            put_choice(out, &choices.procs_with_maps(), step.proc);
            put_choice(out, &choices.maps(step.proc), map);
            put_range(out, range);
            match step.op {
                Op::Mprotect { prot, .. } => put_table(out, &MPROTECT_PROT_TABLE, prot),
                Op::Madvise { advice, .. } => put_table(out, &ADVICE_TABLE, advice),
                Op::Touch { access, .. } => put_table(out, &ACCESS_TABLE, access),
                _ => {}
            }
        }
        Op::Gup {
            api,
            target,
            map,
            range,
            foll,
            ..
        } => {
            put_choice(out, &choices.apis(api.is_pin()), api);
            let space = if let Some(target) = target {
                put_choice(out, &choices.live_procs(), step.proc);
                put_choice(out, &choices.procs_with_maps(), target);
                target
            } else {
                put_choice(out, &choices.procs_with_maps(), step.proc);
                step.proc
            };
            put_choice(out, &choices.maps(space), map);
            put_range(out, range);
            let mut b = 0;
            if foll.contains(Foll::WRITE) {
                b |= FOLL_WRITE_BIT;
            }
            if foll.contains(Foll::LONGTERM) {
                b |= FOLL_LONGTERM_BIT;
            }
            if foll.contains(Foll::FORCE) {
                b |= FOLL_FORCE_BITS;
            }
            out.push(b);
        }
        Op::Release { handle, how } => {
            put_choice(out, &choices.live_procs(), step.proc);
            put_choice(out, &choices.handles(), handle);
            match how {
                Release::Put => {}
                Release::Unpin => out.push(0),
                Release::UnpinDirty => out.push(UNPIN_DIRTY),
            }
        }
        Op::Fork { .. } => {}
        Op::Exit { child } => put_choice(out, &choices.live_children(), child),
    }
}

/// The exact range form: selector, start, length − 1 (see `decode_range`).
fn put_range(out: &mut Vec<u8>, range: PageRange) {
    out.push(range_form::EXACT);
    out.extend_from_slice(&range.start.to_le_bytes());
    out.extend_from_slice(&(range.end - range.start - 1).to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_short_inputs_decode_to_valid_programs() {
        for bytes in [&[][..], &[1], &[1, 0xFF, 0xFF, 0, 0, 0], &[0xFF; 5]] {
            let program = decode(bytes);
            assert!(program.steps.is_empty(), "{bytes:?} → {program:?}");
            assert_eq!(program.validate(), Ok(()));
        }
    }

    #[test]
    fn first_operation_byte_zero_is_an_mmap_of_one_pmd() {
        // version, swarm masks (all on), settings = THP always + zero
        // page, then op 0 (mmap), kind 0, pages 0 (PMD), prot 0, offset 0.
        let program = decode(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(program.steps.len(), 1);
        assert_eq!(
            program.steps[0].op,
            Op::Mmap {
                map: MapId(0),
                kind: MapKind::AnonPrivate,
                pages: 512,
                prot: Prot::ReadWrite,
                offset: 0,
            }
        );
    }

    #[test]
    fn disabled_kinds_are_never_chosen() {
        // Only mmap and touch enabled: every byte picks one of the two.
        let off = swarm::ALL & !swarm::TOUCH;
        let mut bytes = vec![1];
        bytes.extend_from_slice(&off.to_le_bytes());
        bytes.extend_from_slice(&off.to_le_bytes());
        bytes.push(0);
        bytes.extend((0..400u32).map(|i| u8::try_from(i * 37 % 251).expect("below 256")));
        let program = decode(&bytes);
        assert!(!program.steps.is_empty());
        assert!(
            program
                .steps
                .iter()
                .all(|s| matches!(s.op, Op::Mmap { .. } | Op::Touch { .. })),
            "{program}"
        );
    }

    #[test]
    fn annotations_roundtrip_and_are_rare_in_random_bytes() {
        let mut program = decode(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        program.comments.push(" about this".into());
        program.steps[0].comments.push(" why".into());
        program.header.kernel = Some("6.12".into());
        assert_eq!(decode(&encode(&program)), program);
    }
}
