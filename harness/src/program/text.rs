//! The canonical text form of programs (`docs/program-format.md`).
//!
//! `Display for Program` prints the one canonical text of a valid program:
//! comment lines above the header, the header with every key, then one
//! step per line, each with its comment lines above it. A result is named
//! (`m0 = `, `p3 = `, `c0 = `) only when a later step uses it; names are
//! the ordinals, so the name of a result is the id the traces print.
//! Optional arguments are printed only when they differ from their default
//! (`offset=`); everything else is always printed, in a fixed order.
//! `Display for Step` is the compact one-line form for traces: no comments,
//! results always named.
//!
//! Keywords of the format (op, kind, prot, advice, flag names) are defined
//! here once and shared with the parser.

use std::collections::BTreeSet;
use std::fmt::{self, Display, Formatter, Write as _};

use reference::{Access, Advice, Foll, MapKind, Prot, Release, ThpMode};

use crate::op::{ChildId, HandleId, MapId, Op, PageRange, Proc, Program, Step};

/// First word of the header line.
pub const MAGIC: &str = "pinfuzz";
/// Format version, second word of the header line.
pub const VERSION: &str = "v1";

/// Text names of mapping kinds.
pub const MAP_KINDS: [(MapKind, &str); 4] = [
    (MapKind::AnonPrivate, "anon-private"),
    (MapKind::AnonShared, "anon-shared"),
    (MapKind::MemfdShared, "memfd-shared"),
    (MapKind::MemfdPrivate, "memfd-private"),
];
/// Text names of protections.
pub const PROTS: [(Prot, &str); 3] = [
    (Prot::None, "none"),
    (Prot::Read, "r"),
    (Prot::ReadWrite, "rw"),
];
/// Text names of madvise advice.
pub const ADVICES: [(Advice, &str); 3] = [
    (Advice::DontNeed, "dontneed"),
    (Advice::HugePage, "hugepage"),
    (Advice::NoHugePage, "nohugepage"),
];
/// Text names of touch accesses.
pub const ACCESSES: [(Access, &str); 2] = [(Access::Read, "read"), (Access::Write, "write")];
/// Text names of THP modes (the words of `transparent_hugepage/enabled`).
pub const THP_MODES: [(ThpMode, &str); 3] = [
    (ThpMode::Always, "always"),
    (ThpMode::Madvise, "madvise"),
    (ThpMode::Never, "never"),
];
/// Text names of release calls.
pub const RELEASES: [(Release, &str); 3] = [
    (Release::Put, "put"),
    (Release::Unpin, "unpin"),
    (Release::UnpinDirty, "unpin_dirty"),
];

/// The text name of `value` in a keyword table.
pub fn word<T: PartialEq + Copy>(table: &[(T, &'static str)], value: T) -> &'static str {
    table
        .iter()
        .find(|(v, _)| *v == value)
        .map(|(_, w)| *w)
        .expect("every value has a word in its table")
}

/// The value of a text name in a keyword table.
pub fn lookup<T: Copy>(table: &[(T, &'static str)], name: &str) -> Option<T> {
    table.iter().find(|(_, w)| *w == name).map(|(v, _)| *v)
}

/// The words of a keyword table, for error messages: `a, b or c`.
pub fn choices<T>(table: &[(T, &'static str)]) -> String {
    let words: Vec<&str> = table.iter().map(|(_, w)| *w).collect();
    match words.split_last() {
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// A process as the text names it: `parent` or `c<N>`.
#[derive(Clone, Copy, Debug)]
pub struct ProcName(pub Proc);

impl Display for ProcName {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.0 {
            Proc::Parent => f.write_str("parent"),
            Proc::Child(ChildId(n)) => write!(f, "c{n}"),
        }
    }
}

/// A GUP handle as the text names it: `g<N>` (FOLL_GET) or `p<N>` (FOLL_PIN).
#[derive(Clone, Copy, Debug)]
pub struct HandleName {
    /// The handle.
    pub handle: HandleId,
    /// Taken by a `pin_user_pages*` call.
    pub pin: bool,
}

impl Display for HandleName {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let letter = if self.pin { 'p' } else { 'g' };
        write!(f, "{letter}{}", self.handle.0)
    }
}

/// `m<N>[start..end]`.
struct RangeText(MapId, PageRange);

impl Display for RangeText {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "m{}[{}..{}]", self.0.0, self.1.start, self.1.end)
    }
}

/// FOLL_* flags as `write|longterm|force` or `none`. Bits the format has no
/// name for (invalid programs only) print as a hex number so they are seen.
struct FollText(Foll);

impl Display for FollText {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let unknown = self.0.unknown_bits();
        let known = Foll(self.0.0 & !unknown);
        if unknown == 0 || known != Foll::NONE {
            write!(f, "{known}")?;
        }
        if unknown != 0 {
            if known != Foll::NONE {
                f.write_str("|")?;
            }
            write!(f, "{unknown:#x}")?;
        }
        Ok(())
    }
}

/// The call of an operation, without result name or process prefix:
/// `touch(m0[0..1], write)`.
#[derive(Debug)]
pub struct CallText<'a>(pub &'a Op);

impl Display for CallText<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match *self.0 {
            Op::Mmap {
                kind,
                pages,
                prot,
                offset,
                ..
            } => {
                write!(
                    f,
                    "mmap({}, pages={pages}, prot={}",
                    word(&MAP_KINDS, kind),
                    word(&PROTS, prot)
                )?;
                if offset != 0 {
                    write!(f, ", offset={offset}")?;
                }
                f.write_str(")")
            }
            Op::Munmap { map, range } => write!(f, "munmap({})", RangeText(map, range)),
            Op::Mprotect { map, range, prot } => write!(
                f,
                "mprotect({}, {})",
                RangeText(map, range),
                word(&PROTS, prot)
            ),
            Op::Madvise { map, range, advice } => write!(
                f,
                "madvise({}, {})",
                RangeText(map, range),
                word(&ADVICES, advice)
            ),
            Op::Touch { map, range, access } => write!(
                f,
                "touch({}, {})",
                RangeText(map, range),
                word(&ACCESSES, access)
            ),
            Op::Gup {
                api,
                target,
                map,
                range,
                foll,
                ..
            } => {
                write!(f, "{api}(")?;
                if api.is_remote() {
                    // A remote call without a target is invalid; print the
                    // caller's default so the line still parses.
                    write!(f, "{}, ", ProcName(target.unwrap_or(Proc::Parent)))?;
                }
                write!(f, "{}, {})", RangeText(map, range), FollText(foll))
            }
            Op::Release { handle, how } => {
                let name = HandleName {
                    handle,
                    pin: how != Release::Put,
                };
                write!(f, "{}({name})", word(&RELEASES, how))
            }
            Op::SplitHugePages { map, range } => {
                write!(f, "split_huge_pages({})", RangeText(map, range))
            }
            Op::Fork { .. } => f.write_str("fork()"),
            Op::Exit { child } => write!(f, "exit(c{})", child.0),
        }
    }
}

/// The name of the result an operation defines, if it defines one.
fn result_name(op: &Op) -> Option<String> {
    match *op {
        Op::Mmap { map, .. } => Some(format!("m{}", map.0)),
        Op::Gup { handle, api, .. } => Some(
            HandleName {
                handle,
                pin: api.is_pin(),
            }
            .to_string(),
        ),
        Op::Fork { child } => Some(format!("c{}", child.0)),
        _ => None,
    }
}

/// Write one step line: `[cN: ][name = ]call`.
fn write_step_line(out: &mut impl fmt::Write, step: &Step, named: bool) -> fmt::Result {
    if let Proc::Child(c) = step.proc {
        write!(out, "c{}: ", c.0)?;
    }
    if named && let Some(name) = result_name(&step.op) {
        write!(out, "{name} = ")?;
    }
    write!(out, "{}", CallText(&step.op))
}

/// The compact one-line form: no comments, results always named.
impl Display for Step {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write_step_line(f, self, true)
    }
}

/// Which results some step uses.
#[derive(Default)]
struct Uses {
    maps: BTreeSet<u8>,
    children: BTreeSet<u8>,
    handles: BTreeSet<u16>,
}

impl Uses {
    fn of(program: &Program) -> Uses {
        let mut uses = Uses::default();
        for step in &program.steps {
            if let Proc::Child(c) = step.proc {
                uses.children.insert(c.0);
            }
            match step.op {
                Op::Munmap { map, .. }
                | Op::Mprotect { map, .. }
                | Op::Madvise { map, .. }
                | Op::Touch { map, .. }
                | Op::SplitHugePages { map, .. } => {
                    uses.maps.insert(map.0);
                }
                Op::Gup { map, target, .. } => {
                    uses.maps.insert(map.0);
                    if let Some(Proc::Child(c)) = target {
                        uses.children.insert(c.0);
                    }
                }
                Op::Release { handle, .. } => {
                    uses.handles.insert(handle.0);
                }
                Op::Exit { child } => {
                    uses.children.insert(child.0);
                }
                Op::Mmap { .. } | Op::Fork { .. } => {}
            }
        }
        uses
    }

    fn used(&self, op: &Op) -> bool {
        match *op {
            Op::Mmap { map, .. } => self.maps.contains(&map.0),
            Op::Gup { handle, .. } => self.handles.contains(&handle.0),
            Op::Fork { child } => self.children.contains(&child.0),
            _ => false,
        }
    }
}

/// The header line, every key in canonical order.
fn write_header(out: &mut impl fmt::Write, program: &Program) -> fmt::Result {
    let header = &program.header;
    write!(
        out,
        "{MAGIC} {VERSION} thp={} use_zero_page={} kernel={}",
        word(&THP_MODES, header.thp),
        u8::from(header.use_zero_page),
        header.kernel.as_deref().unwrap_or("any")
    )
}

/// The canonical text; see the module documentation. Every line ends in
/// a newline.
impl Display for Program {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let uses = Uses::of(self);
        let mut out = String::new();
        for comment in &self.comments {
            writeln!(out, "#{comment}")?;
        }
        write_header(&mut out, self)?;
        out.push('\n');
        for step in &self.steps {
            for comment in &step.comments {
                writeln!(out, "#{comment}")?;
            }
            write_step_line(&mut out, step, uses.used(&step.op))?;
            out.push('\n');
        }
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reference::GupApi;

    #[test]
    fn step_line_names_result_and_prefixes_child() {
        let step = Step {
            proc: Proc::Child(ChildId(1)),
            op: Op::Gup {
                handle: HandleId(4),
                api: GupApi::PinUserPagesRemote,
                target: Some(Proc::Parent),
                map: MapId(2),
                range: PageRange { start: 0, end: 512 },
                foll: Foll::WRITE | Foll::LONGTERM,
            },
            comments: vec!["not printed".into()],
        };
        assert_eq!(
            step.to_string(),
            "c1: p4 = pin_user_pages_remote(parent, m2[0..512], write|longterm)"
        );
    }

    #[test]
    fn unknown_foll_bits_are_visible() {
        assert_eq!(FollText(Foll(0x41)).to_string(), "write|0x40");
        assert_eq!(FollText(Foll(0x40)).to_string(), "0x40");
        assert_eq!(FollText(Foll::NONE).to_string(), "none");
    }
}
