//! Writing the C text: the fixed parts (kselftest subset, the uapi header,
//! the C executor, the checks) and, per program, its address defines,
//! expectation tables and straight-line step code.

use std::collections::HashMap;
use std::fmt::Write as _;

use reference::{Advice, GupApi, MapKind, Prot, Release, ThpMode};

use super::expect::{RunTables, Slots, runs, thp_fault};
use crate::backend::ModelRun;
use crate::obs::OpResult;
use crate::op::{
    ARENA_BASE_VPN, MAX_MAPS, MapId, Op, PageRange, Proc, Program, SLOT_PAGES, map_start_vpn,
};

/// The kselftest.h subset.
pub const KSFT_C: &str = include_str!("ksft.c");
/// The C executor.
pub const RUNTIME_C: &str = include_str!("runtime.c");
/// The oracle's checks in C.
pub const CHECK_C: &str = include_str!("check.c");
/// The helper module's uapi header, as this pinfuzz was built with it.
pub const PINFUZZ_H: &str = include_str!("../../../kmod/pinfuzz.h");

const PAGE: u64 = reference::PAGE_SIZE;

/// `#include`s of every generated file.
pub const INCLUDES: &str = "#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE	0x100000
#endif
";

/// The uapi header without its own SPDX line (the file has one already),
/// fenced by a comment that says where it comes from.
pub fn uapi_section() -> String {
    let body: String = PINFUZZ_H
        .lines()
        .filter(|l| !l.starts_with("/* SPDX-License-Identifier"))
        .map(|l| format!("{l}\n"))
        .collect();
    format!(
        "/*\n * kmod/pinfuzz.h (GPL-2.0 WITH Linux-syscall-note), copied when this file was\n \
         * generated: the helper module loaded must speak the same ABI.\n */\n{body}"
    )
}

/// Escape text for a C string literal.
pub fn c_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\{:03o}", c as u32);
            }
            // "??x" would be a trigraph under -trigraphs; keep text ASCII.
            '?' => out.push_str("\\?"),
            c if !c.is_ascii() => out.push('?'),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Text safe inside a C block comment.
pub fn c_comment(s: &str) -> String {
    s.replace("*/", "* /").replace("/*", "/ *")
}

/// The C name of a process.
fn proc_c(proc: Proc) -> String {
    match proc {
        Proc::Parent => "PARENT".into(),
        Proc::Child(c) => format!("C({})", c.0),
    }
}

fn prot_c(prot: Prot) -> &'static str {
    match prot {
        Prot::None => "PROT_NONE",
        Prot::Read => "PROT_READ",
        Prot::ReadWrite => "PROT_READ | PROT_WRITE",
    }
}

fn advice_c(advice: Advice) -> &'static str {
    match advice {
        Advice::DontNeed => "MADV_DONTNEED",
        Advice::HugePage => "MADV_HUGEPAGE",
        Advice::NoHugePage => "MADV_NOHUGEPAGE",
    }
}

fn kind_c(kind: MapKind) -> &'static str {
    match kind {
        MapKind::AnonPrivate => "ANON_PRIVATE",
        MapKind::AnonShared => "ANON_SHARED",
        MapKind::MemfdShared => "MEMFD_SHARED",
        MapKind::MemfdPrivate => "MEMFD_PRIVATE",
    }
}

fn api_c(api: GupApi) -> &'static str {
    match api {
        GupApi::GetUserPages => "PINFUZZ_API_GET_USER_PAGES",
        GupApi::GetUserPagesFast => "PINFUZZ_API_GET_USER_PAGES_FAST",
        GupApi::GetUserPagesRemote => "PINFUZZ_API_GET_USER_PAGES_REMOTE",
        GupApi::PinUserPages => "PINFUZZ_API_PIN_USER_PAGES",
        GupApi::PinUserPagesFast => "PINFUZZ_API_PIN_USER_PAGES_FAST",
        GupApi::PinUserPagesRemote => "PINFUZZ_API_PIN_USER_PAGES_REMOTE",
    }
}

fn foll_c(foll: reference::Foll) -> String {
    let names = [
        (reference::Foll::WRITE, "PINFUZZ_FOLL_WRITE"),
        (reference::Foll::LONGTERM, "PINFUZZ_FOLL_LONGTERM"),
        (reference::Foll::FORCE, "PINFUZZ_FOLL_FORCE"),
    ];
    let parts: Vec<&str> = names
        .iter()
        .filter(|(f, _)| foll.0 & f.0 != 0)
        .map(|(_, n)| *n)
        .collect();
    if parts.is_empty() {
        "0".into()
    } else {
        parts.join(" | ")
    }
}

/// A positive errno as its C name where the reproducer may meet it.
fn errno_c(e: i32) -> String {
    const NAMES: [(i32, &str); 15] = [
        (libc::EPERM, "EPERM"),
        (libc::ENOENT, "ENOENT"),
        (libc::ESRCH, "ESRCH"),
        (libc::EINTR, "EINTR"),
        (libc::EIO, "EIO"),
        (libc::EAGAIN, "EAGAIN"),
        (libc::ENOMEM, "ENOMEM"),
        (libc::EACCES, "EACCES"),
        (libc::EFAULT, "EFAULT"),
        (libc::EBUSY, "EBUSY"),
        (libc::EEXIST, "EEXIST"),
        (libc::EINVAL, "EINVAL"),
        (libc::ENOSPC, "ENOSPC"),
        (libc::ENOTTY, "ENOTTY"),
        (libc::EHWPOISON, "EHWPOISON"),
    ];
    NAMES
        .iter()
        .find(|(n, _)| *n == e)
        .map_or_else(|| e.to_string(), |(_, name)| (*name).to_string())
}

/// An op result as a `struct res` initializer.
fn result_c(r: &OpResult) -> String {
    match *r {
        OpResult::Ok => "{ .kind = RES_OK }".into(),
        OpResult::Touched => "{ .kind = RES_TOUCHED }".into(),
        OpResult::Segv { at } => format!("{{ .kind = RES_SEGV, .val = {at} }}"),
        OpResult::Pages(n) => format!("{{ .kind = RES_PAGES, .val = {n} }}"),
        OpResult::Errno(e) => format!("{{ .kind = RES_ERRNO, .val = {} }}", errno_c(e)),
    }
}

fn thp_word(mode: ThpMode) -> &'static str {
    match mode {
        ThpMode::Always => "always",
        ThpMode::Madvise => "madvise",
        ThpMode::Never => "never",
    }
}

/// One program's C: its defines, tables and step function.
#[derive(Debug, Default)]
pub struct ProgramC {
    /// `#define`s of the mapping addresses.
    pub defines: String,
    /// The per-step tables (after the shared run tables).
    pub tables: String,
    /// `static void <name>(void) { ... }`.
    pub function: String,
    /// Identity slots the checks need.
    pub slots: usize,
    /// The program writes to split_huge_pages.
    pub splits: bool,
}

/// Observation tables of one program, each distinct one defined once.
#[derive(Debug, Default)]
struct Tables {
    names: HashMap<(&'static str, String), String>,
}

impl Tables {
    /// The name of the `struct ty` array with these rows, defined into
    /// `out` on first use as `<base>_<n>`.
    fn name(&mut self, ty: &'static str, base: &str, rows: String, out: &mut String) -> String {
        let n = self.names.len();
        self.names
            .entry((ty, rows))
            .or_insert_with_key(|(ty, rows)| {
                let name = format!("{base}_{n}");
                let _ = write!(out, "static const struct {ty} {name}[] = {{\n{rows}}};\n\n");
                name
            })
            .clone()
    }
}

/// Where each mapping starts (page 0), from its `mmap` step.
fn map_offsets(program: &Program) -> [Option<u16>; MAX_MAPS] {
    let mut out = [None; MAX_MAPS];
    for step in &program.steps {
        if let Op::Mmap { map, offset, .. } = step.op {
            if let Some(slot) = out.get_mut(usize::from(map.0)) {
                *slot = Some(offset);
            }
        }
    }
    out
}

/// The C of one program. `prefix` names its symbols (`""` for a lone
/// reproducer, `p12_` in a batch); with `checks`, the step function checks
/// every observation against `model`, else it only observes (the bench
/// baseline).
pub fn program_c(
    program: &Program,
    model: &ModelRun,
    prefix: &str,
    checks: bool,
    shared: &mut RunTables,
) -> anyhow::Result<ProgramC> {
    let offsets = map_offsets(program);
    let upper = prefix.to_uppercase();
    let mut out = ProgramC::default();
    for (i, off) in offsets.iter().enumerate() {
        if let Some(off) = off {
            let addr = map_start_vpn(MapId(i as u8), *off) * PAGE;
            let _ = writeln!(
                out.defines,
                "#define {upper}M{i}\t0x{addr:x}ULL\t/* m{i}: slot {i} of the arena + {off} pages */"
            );
        }
    }
    let addr = |map: MapId, page: u16| -> anyhow::Result<String> {
        let i = usize::from(map.0);
        if offsets.get(i).copied().flatten().is_none() {
            anyhow::bail!("m{i} is used but never mapped");
        }
        Ok(if page == 0 {
            format!("{upper}M{i}")
        } else {
            format!("{upper}M{i} + {page} * PS")
        })
    };
    let range = |map: MapId, r: PageRange| -> anyhow::Result<(String, u16)> {
        Ok((addr(map, r.start)?, r.len()))
    };

    let mut slots = Slots::default();
    let mut tables = Tables::default();
    let mut body = String::new();
    let mut expect = String::new();
    let _ = writeln!(
        expect,
        "static const struct exp_step {prefix}expect[{}] = {{",
        program.steps.len().max(1)
    );
    for (i, step) in program.steps.iter().enumerate() {
        let obs = model
            .trace
            .steps
            .get(i)
            .ok_or_else(|| anyhow::anyhow!("the model has no observation for step {i}"))?;
        // The observation tables of this step.
        let mut maps = String::new();
        for m in &obs.maps {
            let slot = match m.proc {
                Proc::Parent => 0,
                Proc::Child(c) => 1 + usize::from(c.0),
            };
            let (nruns, runs_name) = if checks {
                let r = runs(&m.pages, &mut slots);
                (r.len(), shared.name(r))
            } else {
                (0, "NULL".to_string())
            };
            let _ = writeln!(
                maps,
                "\t{{ {slot}, {}, {}, {}, {nruns}, {runs_name} }},",
                m.map.0,
                m.pages.len(),
                addr(m.map, 0)?
            );
        }
        let mut handles = String::new();
        if checks {
            for h in &obs.handles {
                let r = runs(&h.pages, &mut slots);
                let _ = writeln!(
                    handles,
                    "\t{{ {}, {}, {}, {} }},",
                    h.handle.0,
                    h.pages.len(),
                    r.len(),
                    shared.name(r)
                );
            }
        }
        let freed: Vec<String> = if checks {
            model.freed.get(i).map_or_else(Vec::new, |f| {
                f.iter()
                    .filter_map(|p| slots.get(p.0))
                    .map(|s| s.to_string())
                    .collect()
            })
        } else {
            Vec::new()
        };
        let mut entry = format!(
            "\t[{i}] = {{\n\t\t.text = {},\n",
            c_string(&step.to_string())
        );
        if checks {
            let _ = writeln!(entry, "\t\t.result = {},", result_c(&obs.result));
            let v: Vec<String> = obs.vmstat.iter().map(u64::to_string).collect();
            let _ = writeln!(entry, "\t\t.vmstat = {{ {} }},", v.join(", "));
        }
        if !maps.is_empty() {
            let name = tables.name("obs_map", &format!("{prefix}maps"), maps, &mut out.tables);
            let _ = writeln!(entry, "\t\t.nmaps = {}, .maps = {name},", obs.maps.len());
        }
        if !handles.is_empty() {
            let name = tables.name(
                "obs_handle",
                &format!("{prefix}handles"),
                handles,
                &mut out.tables,
            );
            let _ = writeln!(
                entry,
                "\t\t.nhandles = {}, .handles = {name},",
                obs.handles.len()
            );
        }
        if checks && thp_fault(model, i) {
            entry.push_str("\t\t.thp_fault = 1,\n");
        }
        if !freed.is_empty() {
            let _ = writeln!(
                out.tables,
                "static const unsigned int {prefix}freed_{i}[] = {{ {} }};\n",
                freed.join(", ")
            );
            let _ = writeln!(
                entry,
                "\t\t.nfreed = {}, .freed = {prefix}freed_{i},",
                freed.len()
            );
        }
        entry.push_str("\t},\n");
        expect.push_str(&entry);

        // The step's code.
        for c in &step.comments {
            let _ = writeln!(body, "\t/* {} */", c_comment(c));
        }
        let p = proc_c(step.proc);
        let call = match step.op {
            Op::Mmap {
                map,
                kind,
                pages,
                prot,
                ..
            } => format!(
                "op_mmap({p}, {}, {pages}, {}, {})",
                addr(map, 0)?,
                kind_c(kind),
                prot_c(prot)
            ),
            Op::Munmap { map, range: r } => {
                let (a, n) = range(map, r)?;
                format!("op_munmap({p}, {a}, {n})")
            }
            Op::Mprotect {
                map,
                range: r,
                prot,
            } => {
                let (a, n) = range(map, r)?;
                format!("op_mprotect({p}, {a}, {n}, {})", prot_c(prot))
            }
            Op::Madvise {
                map,
                range: r,
                advice,
            } => {
                let (a, n) = range(map, r)?;
                format!("op_madvise({p}, {a}, {n}, {})", advice_c(advice))
            }
            Op::Touch {
                map,
                range: r,
                access,
            } => {
                let (a, n) = range(map, r)?;
                let w = u8::from(access == reference::Access::Write);
                format!("op_touch({p}, {a}, {n}, {w})")
            }
            Op::Gup {
                handle,
                api,
                target,
                map,
                range: r,
                foll,
            } => {
                let (a, n) = range(map, r)?;
                let t = target.map_or_else(|| "NO_TARGET".to_string(), proc_c);
                format!(
                    "op_gup({p}, {}, {},\n\t\t   {a}, {n}, {}, {t})",
                    handle.0,
                    api_c(api),
                    foll_c(foll)
                )
            }
            Op::Release { handle, how } => {
                let flags = match how {
                    Release::UnpinDirty => "PINFUZZ_RELEASE_DIRTY",
                    Release::Put | Release::Unpin => "0",
                };
                format!("op_release({p}, {}, {flags})", handle.0)
            }
            Op::SplitHugePages { map, range: r } => {
                out.splits = true;
                let (a, n) = range(map, r)?;
                format!("op_split({p}, {a}, {n})")
            }
            Op::Fork { child } => format!("op_fork({})", child.0),
            Op::Exit { child } => format!("op_exit({})", child.0),
        };
        let _ = writeln!(body, "\t/* {i}: {} */", c_comment(&step.to_string()));
        if checks {
            let _ = writeln!(body, "\tr = {call};");
            let _ = writeln!(body, "\tcheck_step({i}, &r, &{prefix}expect[{i}]);\n");
        } else {
            let _ = writeln!(body, "\tBENCH_OP({call});");
            let _ = writeln!(body, "\tobserve(&{prefix}expect[{i}]);\n");
        }
    }
    if program.steps.is_empty() {
        expect.push_str("\t[0] = { .text = \"(no steps)\" },\n");
    }
    expect.push_str("};\n");
    out.tables.push_str(&expect);
    let decl = if checks && !program.steps.is_empty() {
        "\tstruct res r;\n\n"
    } else {
        ""
    };
    let body = body.trim_end_matches('\n');
    let _ = write!(
        out.function,
        "static void {prefix}program(void)\n{{\n{decl}{body}\n}}\n"
    );
    out.slots = slots.len();
    Ok(out)
}

/// `#define`s shared by every generated file.
pub fn common_defines() -> String {
    let lo = ARENA_BASE_VPN * PAGE;
    let hi = (ARENA_BASE_VPN + MAX_MAPS as u64 * SLOT_PAGES) * PAGE;
    format!(
        "#define PARENT\t\t0\n\
         #define C(n)\t\t(1 + (n))\t/* child cN */\n\
         #define NO_TARGET\t(-1)\t\t/* GUP on the caller's own mm */\n\
         /* Every mapping lives alone in an 8 MiB slot of this arena. */\n\
         #define ARENA_LO\t0x{lo:x}ULL\n\
         #define ARENA_HI\t0x{hi:x}ULL\n"
    )
}

/// The header's THP settings as C arguments: `"always", 1`.
pub fn settings_c(program: &Program) -> String {
    format!(
        "\"{}\", {}",
        thp_word(program.header.thp),
        u8::from(program.header.use_zero_page)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_comments_are_escaped() {
        assert_eq!(
            c_string("a \"b\" \\ ??= é"),
            "\"a \\\"b\\\" \\\\ \\?\\?= ?\""
        );
        assert_eq!(c_string("x\u{1}"), "\"x\\001\"");
        assert_eq!(c_comment("a */ b /* c"), "a * / b / * c");
    }

    #[test]
    fn results_and_flags_use_c_names() {
        assert_eq!(
            result_c(&OpResult::Errno(libc::EFAULT)),
            "{ .kind = RES_ERRNO, .val = EFAULT }"
        );
        assert_eq!(
            result_c(&OpResult::Errno(99)),
            "{ .kind = RES_ERRNO, .val = 99 }"
        );
        assert_eq!(
            result_c(&OpResult::Segv { at: 3 }),
            "{ .kind = RES_SEGV, .val = 3 }"
        );
        assert_eq!(
            foll_c(reference::Foll(
                reference::Foll::WRITE.0 | reference::Foll::LONGTERM.0
            )),
            "PINFUZZ_FOLL_WRITE | PINFUZZ_FOLL_LONGTERM"
        );
        assert_eq!(foll_c(reference::Foll::NONE), "0");
    }

    #[test]
    fn the_uapi_copy_has_one_spdx_line_less() {
        let s = uapi_section();
        assert!(!s.contains("SPDX"));
        assert!(s.contains("struct pinfuzz_gup {"));
        assert!(s.contains("#define PINFUZZ_IOC_GUP"));
    }
}
