//! The executor's end-to-end check on a real kernel: `/init` of a scratch
//! guest (or run as root on a box with the pinfuzz module loaded).
//!
//! It runs a handful of programs built in code through
//! `harness::exec::run_program` and checks the observations against what
//! the kernel documents (kernel-semantics.md): an anon page after a write
//! fault, a FOLL_PIN pin of it (+1024), a PMD THP pin (`_pincount`), fork
//! and a child's COW, remote GUP, the SIGSEGV precheck, memfd, THP split,
//! the executor's own THP hygiene, the reset check, and the timeout. Then
//! it measures steps per second. Every check prints `ok` or `FAIL` with
//! the numbers seen; the last line is `exec_guest: PASS` or
//! `exec_guest: FAIL (n)`. As pid 1 it mounts the pseudo file systems,
//! loads `/lib/modules/pinfuzz.ko` and powers the guest off at the end.
//! Kernel command line words (environment variables of /init):
//! `exec_guest_only=a,b` runs only those checks, `exec_guest_bench=1`
//! first times the counter reads alone.
//!
//! `harness/tests/exec_guest.rs` builds it statically and boots it; see
//! `docs/executor.md`.

use std::path::Path;
use std::time::{Duration, Instant};

use harness::exec::{self, ExecConfig, RunSummary, Settings};
use harness::obs::{OpResult, PageObs, StepObs, page_flags as pf};
use harness::op::{ChildId, HandleId, Header, MapId, Op, PageRange, Proc, Program, Step};
use reference::{Access, Advice, Foll, GupApi, MapKind, Prot, Release, ThpMode};

/// Indexes into `StepObs::vmstat` (`reference::VmStat::NAMES`).
const PIN_ACQ: usize = 0;
const PIN_REL: usize = 1;
const THP_FAULT_ALLOC: usize = 2;
const THP_SPLIT_PMD: usize = 4;
const THP_SPLIT_PAGE: usize = 5;

/// One group of checks.
type Check = fn(&mut Checker) -> anyhow::Result<()>;

struct Checker {
    failures: usize,
}

impl Checker {
    fn check(&mut self, what: &str, ok: bool, seen: impl std::fmt::Display) {
        if ok {
            println!("  ok   {what}: {seen}");
        } else {
            println!("  FAIL {what}: {seen}");
            self.failures += 1;
        }
    }
}

fn s(proc: Proc, op: Op) -> Step {
    Step {
        proc,
        op,
        comments: vec![],
    }
}

fn p(op: Op) -> Step {
    s(Proc::Parent, op)
}

fn c0(op: Op) -> Step {
    s(Proc::Child(ChildId(0)), op)
}

fn r(start: u16, end: u16) -> PageRange {
    PageRange { start, end }
}

fn mmap(map: u8, kind: MapKind, pages: u16, prot: Prot, offset: u16) -> Op {
    Op::Mmap {
        map: MapId(map),
        kind,
        pages,
        prot,
        offset,
    }
}

fn touch(map: u8, range: PageRange, access: Access) -> Op {
    Op::Touch {
        map: MapId(map),
        range,
        access,
    }
}

fn gup(handle: u16, api: GupApi, map: u8, range: PageRange, foll: Foll) -> Op {
    Op::Gup {
        handle: HandleId(handle),
        api,
        target: None,
        map: MapId(map),
        range,
        foll,
    }
}

fn release(handle: u16, how: Release) -> Op {
    Op::Release {
        handle: HandleId(handle),
        how,
    }
}

fn program(thp: ThpMode, steps: Vec<Step>) -> Program {
    Program {
        header: Header {
            thp,
            ..Header::default()
        },
        comments: vec![],
        steps,
    }
}

fn run(name: &str, prog: &Program) -> anyhow::Result<(Vec<StepObs>, RunSummary)> {
    run_with(name, prog, Duration::from_secs(60))
}

fn run_with(
    name: &str,
    prog: &Program,
    timeout: Duration,
) -> anyhow::Result<(Vec<StepObs>, RunSummary)> {
    let mut steps = Vec::new();
    let summary = exec::run_program(prog, &ExecConfig::guest(), timeout, &mut |o| {
        steps.push(o);
        Ok(())
    })?;
    println!(
        "{name}: {}/{} steps, stopped {:?}, reset {:?}, {} us total, observe mean {} us",
        summary.steps_run,
        summary.steps_total,
        summary.stopped,
        summary.reset,
        summary.timing.total_ns / 1000,
        summary.timing.observe_ns / 1000 / u64::from(summary.steps_run.max(1)),
    );
    if !summary.disturbance.is_quiet() {
        println!("  disturbance: {:?}", summary.disturbance);
    }
    Ok((steps, summary))
}

fn page(o: &StepObs, proc: Proc, map: u8, i: usize) -> PageObs {
    o.maps
        .iter()
        .find(|m| m.proc == proc && m.map == MapId(map))
        .map(|m| m.pages[i])
        .unwrap_or_default()
}

fn fmt_page(pg: &PageObs) -> String {
    format!(
        "pfn {:#x} head {:#x} ref {} map {} fmap {} pin {} order {} flags {:#x}",
        pg.key,
        pg.head,
        pg.refcount,
        pg.mapcount,
        pg.folio_mapcount,
        pg.pincount,
        pg.order,
        pg.flags
    )
}

/// The running kernel is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

fn clean(c: &mut Checker, summary: &RunSummary) {
    c.check(
        "run completed, reset check ok",
        summary.stopped.is_none() && summary.reset.as_ref().is_some_and(|r| r.ok),
        format!("stopped {:?} reset {:?}", summary.stopped, summary.reset),
    );
}

/// Write fault, pin, unpin of one small anon page.
fn small_pin(c: &mut Checker) -> anyhow::Result<()> {
    let prog = program(
        ThpMode::Never,
        vec![
            p(mmap(0, MapKind::AnonPrivate, 1, Prot::ReadWrite, 0)),
            p(touch(0, r(0, 1), Access::Write)),
            p(gup(0, GupApi::PinUserPagesFast, 0, r(0, 1), Foll::WRITE)),
            p(release(0, Release::Unpin)),
            p(gup(1, GupApi::GetUserPages, 0, r(0, 1), Foll::NONE)),
            p(release(1, Release::Put)),
            p(Op::Munmap {
                map: MapId(0),
                range: r(0, 1),
            }),
        ],
    );
    let (t, summary) = run("small_pin", &prog)?;
    clean(c, &summary);
    let pg = page(&t[1], Proc::Parent, 0, 0);
    println!("  after touch(write): {}", fmt_page(&pg));
    let want = pf::PRESENT | pf::ANON | pf::ANON_EXCLUSIVE;
    c.check(
        "touch(write): present anon exclusive, refcount 1, mapcount 1",
        pg.flags & want == want && pg.refcount == 1 && pg.mapcount == 1 && pg.order == 0,
        fmt_page(&pg),
    );
    let pg2 = page(&t[2], Proc::Parent, 0, 0);
    c.check(
        "pin_user_pages_fast: refcount 1025, maybe_dma_pinned, pin acquired +1",
        pg2.refcount == 1025 && pg2.flags & pf::MAYBE_DMA_PINNED != 0 && t[2].vmstat[PIN_ACQ] == 1,
        format!("{} acquired {}", fmt_page(&pg2), t[2].vmstat[PIN_ACQ]),
    );
    let h = &t[2].handles;
    c.check(
        "the handle holds the same page",
        h.len() == 1 && h[0].pages[0].key == pg.key && h[0].pages[0].refcount == 1025,
        format!("{h:?}"),
    );
    let pg3 = page(&t[3], Proc::Parent, 0, 0);
    c.check(
        "unpin: refcount 1, released +1, no handle",
        pg3.refcount == 1 && t[3].vmstat[PIN_REL] == 1 && t[3].handles.is_empty(),
        format!("{} released {}", fmt_page(&pg3), t[3].vmstat[PIN_REL]),
    );
    let pg4 = page(&t[4], Proc::Parent, 0, 0);
    c.check(
        "get_user_pages: refcount 2, no pin counted",
        pg4.refcount == 2 && t[4].vmstat[PIN_ACQ] == 1,
        fmt_page(&pg4),
    );
    let gone = page(&t[6], Proc::Parent, 0, 0);
    c.check("munmap: not present", gone.flags == 0, fmt_page(&gone));
    Ok(())
}

/// A PMD THP: fault, pin one page, split (skipped), unpin, split.
fn thp_pin_and_split(c: &mut Checker) -> anyhow::Result<()> {
    let prog = program(
        ThpMode::Always,
        vec![
            p(mmap(0, MapKind::AnonPrivate, 512, Prot::ReadWrite, 0)),
            p(touch(0, r(0, 1), Access::Write)),
            p(gup(0, GupApi::PinUserPages, 0, r(0, 1), Foll::WRITE)),
            p(Op::SplitHugePages {
                map: MapId(0),
                range: r(0, 512),
            }),
            p(release(0, Release::Unpin)),
            p(Op::SplitHugePages {
                map: MapId(0),
                range: r(0, 512),
            }),
        ],
    );
    let (t, summary) = run("thp_pin_and_split", &prog)?;
    clean(c, &summary);
    let pg = page(&t[1], Proc::Parent, 0, 0);
    let last = page(&t[1], Proc::Parent, 0, 511);
    println!("  after touch: page 0 {}", fmt_page(&pg));
    c.check(
        "touch of an aligned 2 MiB mapping: one order-9 folio, thp_fault_alloc +1",
        pg.order == 9
            && last.head == pg.key
            && pg.refcount == 1
            && pg.folio_mapcount == 1
            && t[1].vmstat[THP_FAULT_ALLOC] == 1,
        format!(
            "order {} last.head {:#x} ref {} thp_fault_alloc {}",
            pg.order, last.head, pg.refcount, t[1].vmstat[THP_FAULT_ALLOC]
        ),
    );
    let pinned = page(&t[2], Proc::Parent, 0, 0);
    c.check(
        "pin of one THP page: pincount 1, refcount 2, acquired +1",
        pinned.pincount == 1 && pinned.refcount == 2 && t[2].vmstat[PIN_ACQ] == 1,
        fmt_page(&pinned),
    );
    let after_split = page(&t[3], Proc::Parent, 0, 0);
    c.check(
        "split_huge_pages skips the pinned THP",
        t[3].result == OpResult::Ok && after_split.order == 9 && t[3].vmstat[THP_SPLIT_PAGE] == 0,
        fmt_page(&after_split),
    );
    let split = page(&t[5], Proc::Parent, 0, 0);
    let split1 = page(&t[5], Proc::Parent, 0, 1);
    c.check(
        "unpinned THP splits: order 0, thp_split_page +1, thp_split_pmd +1",
        split.order == 0
            && split.refcount == 1
            && t[5].vmstat[THP_SPLIT_PAGE] == 1
            && t[5].vmstat[THP_SPLIT_PMD] == 1,
        format!(
            "{} split_page {} split_pmd {}",
            fmt_page(&split),
            t[5].vmstat[THP_SPLIT_PAGE],
            t[5].vmstat[THP_SPLIT_PMD]
        ),
    );
    // 6.12 maps zero-filled subpages of a split anon THP to the shared zero
    // page (mm/huge_memory.c: remap_page(.., RMP_USE_SHARED_ZEROPAGE)); only
    // page 0 was written. 6.1 keeps them as small anon pages.
    if kernel_at_least(6, 12) {
        c.check(
            "split (6.12): never-written subpages become the shared zero page",
            split1.flags & pf::ZERO != 0,
            fmt_page(&split1),
        );
    } else {
        c.check(
            "split (before 6.12): every subpage stays a small anon page",
            split1.flags & pf::ANON != 0 && split1.key == split.key + 1 && split1.order == 0,
            fmt_page(&split1),
        );
    }
    Ok(())
}

/// Fork, COW in the child, remote pin of the child's pages, exit with the
/// handle live.
fn fork_and_remote(c: &mut Checker) -> anyhow::Result<()> {
    let prog = program(
        ThpMode::Always,
        vec![
            p(mmap(0, MapKind::AnonPrivate, 4, Prot::ReadWrite, 0)),
            p(touch(0, r(0, 4), Access::Write)),
            p(Op::Fork { child: ChildId(0) }),
            c0(touch(0, r(0, 1), Access::Write)),
            p(Op::Gup {
                handle: HandleId(0),
                api: GupApi::PinUserPagesRemote,
                target: Some(Proc::Child(ChildId(0))),
                map: MapId(0),
                range: r(0, 2),
                foll: Foll::NONE,
            }),
            c0(mmap(1, MapKind::MemfdShared, 2, Prot::ReadWrite, 0)),
            c0(touch(1, r(0, 2), Access::Write)),
            p(Op::Exit { child: ChildId(0) }),
            p(release(0, Release::Unpin)),
        ],
    );
    let (t, summary) = run("fork_and_remote", &prog)?;
    clean(c, &summary);
    let parent = page(&t[2], Proc::Parent, 0, 0);
    let child = page(&t[2], Proc::Child(ChildId(0)), 0, 0);
    c.check(
        "after fork: the page is shared (mapcount 2, refcount 2, not exclusive)",
        parent.key == child.key
            && parent.mapcount == 2
            && parent.refcount == 2
            && parent.flags & pf::ANON_EXCLUSIVE == 0,
        format!("parent {} / child {}", fmt_page(&parent), fmt_page(&child)),
    );
    let parent = page(&t[3], Proc::Parent, 0, 0);
    let child = page(&t[3], Proc::Child(ChildId(0)), 0, 0);
    c.check(
        "child write: COW copy in the child, parent page back to one mapping",
        parent.key != child.key
            && child.refcount == 1
            && child.flags & pf::ANON_EXCLUSIVE != 0
            && parent.mapcount == 1,
        format!("parent {} / child {}", fmt_page(&parent), fmt_page(&child)),
    );
    let child_pg1 = page(&t[4], Proc::Child(ChildId(0)), 0, 1);
    let parent_pg1 = page(&t[4], Proc::Parent, 0, 1);
    c.check(
        "R/O remote pin of a shared page unshares it in the child (new exclusive page, +1024)",
        t[4].result == OpResult::Pages(2)
            && child_pg1.key != parent_pg1.key
            && child_pg1.refcount == 1025
            && child_pg1.flags & pf::ANON_EXCLUSIVE != 0
            && t[4].vmstat[PIN_ACQ] == 2,
        format!(
            "result {:?} child {} parent {}",
            t[4].result,
            fmt_page(&child_pg1),
            fmt_page(&parent_pg1)
        ),
    );
    let memfd = page(&t[6], Proc::Child(ChildId(0)), 1, 0);
    c.check(
        "memfd page in the child: present, not anon, refcount 2 (page cache + mapping)",
        memfd.flags & pf::PRESENT != 0 && memfd.flags & pf::ANON == 0 && memfd.refcount == 2,
        fmt_page(&memfd),
    );
    let listed: Vec<_> = t[6].maps.iter().map(|m| (m.proc, m.map)).collect();
    c.check(
        "observed maps: parent m0, child m0 and m1",
        listed
            == vec![
                (Proc::Parent, MapId(0)),
                (Proc::Child(ChildId(0)), MapId(0)),
                (Proc::Child(ChildId(0)), MapId(1)),
            ],
        format!("{listed:?}"),
    );
    let h = &t[7].handles;
    c.check(
        "after the child exits its pinned pages survive in the handle (unmapped)",
        t[7].maps.len() == 1
            && h.len() == 1
            && h[0].pages[0].mapcount == 0
            && h[0].pages[0].refcount == 1024,
        format!(
            "{:?}",
            h.first()
                .map(|h| h.pages.iter().map(fmt_page).collect::<Vec<_>>())
        ),
    );
    c.check(
        "no THP event from a fork-heavy run without THP-sized mappings",
        t.iter().all(|o| o.vmstat[2..].iter().all(|&v| v == 0)),
        format!("{:?}", t.last().map(|o| o.vmstat)),
    );
    Ok(())
}

/// The SIGSEGV precheck and protections.
fn segv_precheck(c: &mut Checker) -> anyhow::Result<()> {
    let prog = program(
        ThpMode::Never,
        vec![
            p(mmap(0, MapKind::AnonPrivate, 4, Prot::Read, 3)),
            p(touch(0, r(0, 4), Access::Write)),
            p(touch(0, r(0, 6), Access::Read)),
            p(Op::Mprotect {
                map: MapId(0),
                range: r(2, 4),
                prot: Prot::ReadWrite,
            }),
            p(touch(0, r(2, 4), Access::Write)),
            p(Op::Mprotect {
                map: MapId(0),
                range: r(0, 1),
                prot: Prot::None,
            }),
            p(touch(0, r(0, 4), Access::Read)),
            // mprotect across the end of the mapping: ENOMEM, and the
            // kernel changed the mapped prefix (resync from /proc).
            p(Op::Mprotect {
                map: MapId(0),
                range: r(0, 8),
                prot: Prot::ReadWrite,
            }),
            p(touch(0, r(0, 8), Access::Write)),
            p(Op::Madvise {
                map: MapId(0),
                range: r(0, 4),
                advice: Advice::DontNeed,
            }),
        ],
    );
    let (t, summary) = run("segv_precheck", &prog)?;
    clean(c, &summary);
    let results: Vec<_> = t.iter().map(|o| o.result).collect();
    let want = vec![
        OpResult::Ok,
        OpResult::Segv { at: 0 },
        OpResult::Segv { at: 4 },
        OpResult::Ok,
        OpResult::Touched,
        OpResult::Ok,
        OpResult::Segv { at: 0 },
        OpResult::Errno(libc::ENOMEM),
        OpResult::Segv { at: 4 },
        OpResult::Ok,
    ];
    c.check("results", results == want, format!("{results:?}"));
    let zero = page(&t[2], Proc::Parent, 0, 0);
    c.check(
        "read fault of a never-written private page maps the zero page",
        zero.flags & pf::ZERO != 0,
        fmt_page(&zero),
    );
    Ok(())
}

/// A pin left held at the end is dropped when the device closes.
fn leftover_pin(c: &mut Checker) -> anyhow::Result<()> {
    let prog = program(
        ThpMode::Never,
        vec![
            p(mmap(0, MapKind::MemfdPrivate, 8, Prot::ReadWrite, 0)),
            p(gup(
                0,
                GupApi::PinUserPages,
                0,
                r(0, 8),
                Foll::WRITE | Foll::LONGTERM,
            )),
        ],
    );
    let (t, summary) = run("leftover_pin", &prog)?;
    let reset = summary.reset.clone();
    c.check(
        "8 pins held at exit are released by the close: reset ok",
        t.len() == 2
            && t[1].vmstat[PIN_ACQ] == 8
            && reset.as_ref().is_some_and(|r| r.ok && r.pins_released == 8),
        format!("{reset:?}"),
    );
    let pg = t
        .get(1)
        .map(|o| page(o, Proc::Parent, 0, 0))
        .unwrap_or_default();
    c.check(
        "longterm write pin of a memfd-private page: COW to an anon page, +1024",
        pg.flags & pf::ANON != 0 && pg.refcount == 1025,
        fmt_page(&pg),
    );
    Ok(())
}

/// The timeout kills the run and the rest is reported.
fn timeout(c: &mut Checker) -> anyhow::Result<()> {
    let mut steps = vec![p(mmap(0, MapKind::AnonPrivate, 1024, Prot::ReadWrite, 0))];
    for _ in 0..2000 {
        steps.push(p(touch(0, r(0, 1024), Access::Write)));
    }
    let prog = program(ThpMode::Never, steps);
    let (t, summary) = run_with("timeout", &prog, Duration::from_millis(500))?;
    c.check(
        "a 500 ms timeout stops a long run with a partial trace and a clean reset",
        matches!(summary.stopped, Some(exec::Stop::Timeout { .. }))
            && t.len() < 2001
            && summary.reset.as_ref().is_some_and(|r| r.ok),
        format!("{} steps, {:?}", t.len(), summary.stopped),
    );
    Ok(())
}

/// Steps per second on a realistic mix, and programs per second.
fn throughput(c: &mut Checker) -> anyhow::Result<()> {
    let mut steps = vec![
        p(mmap(0, MapKind::AnonPrivate, 64, Prot::ReadWrite, 0)),
        p(mmap(1, MapKind::MemfdShared, 16, Prot::ReadWrite, 0)),
    ];
    for h in 0..60 {
        steps.push(p(touch(0, r(0, 64), Access::Write)));
        steps.push(p(gup(
            h,
            GupApi::PinUserPagesFast,
            0,
            r(0, 16),
            Foll::WRITE,
        )));
        steps.push(p(release(h, Release::Unpin)));
        steps.push(p(Op::Madvise {
            map: MapId(0),
            range: r(0, 64),
            advice: Advice::DontNeed,
        }));
    }
    let prog = program(ThpMode::Never, steps);
    let start = Instant::now();
    let (t, summary) = run("throughput", &prog)?;
    let secs = start.elapsed().as_secs_f64();
    clean(c, &summary);
    let n = t.len().max(1) as u64;
    let pages = t
        .last()
        .map(|o| o.maps.iter().map(|m| m.pages.len()).sum::<usize>());
    println!(
        "  THROUGHPUT: {} steps in {:.3} s = {:.0} steps/s ({:?} pages observed per step); \
         op {} us/step, observe {} us/step (max {} us; drain {} us, counters {} us, \
         queries {} us), setup {} us, teardown {} us",
        t.len(),
        secs,
        t.len() as f64 / secs,
        pages,
        summary.timing.op_ns / 1000 / n,
        summary.timing.observe_ns / 1000 / n,
        summary.timing.observe_max_ns / 1000,
        summary.timing.drain_ns / 1000 / n,
        summary.timing.counters_ns / 1000 / n,
        summary.timing.queries_ns / 1000 / n,
        summary.timing.setup_ns / 1000,
        summary.timing.teardown_ns / 1000,
    );
    // Programs per second for a tiny program (the runner's fork and exit
    // dominate).
    let tiny = program(
        ThpMode::Never,
        vec![
            p(mmap(0, MapKind::AnonPrivate, 1, Prot::ReadWrite, 0)),
            p(touch(0, r(0, 1), Access::Write)),
        ],
    );
    let start = Instant::now();
    let mut clean_runs = 0;
    for _ in 0..20 {
        let summary = exec::run_program(
            &tiny,
            &ExecConfig::guest(),
            Duration::from_secs(10),
            &mut |_| Ok(()),
        )?;
        clean_runs += usize::from(summary.stopped.is_none() && summary.reset.is_some_and(|r| r.ok));
    }
    c.check(
        "20 tiny runs complete cleanly",
        clean_runs == 20,
        clean_runs,
    );
    println!(
        "  PROGRAMS: 20 two-step programs in {:.3} s = {:.1} programs/s",
        start.elapsed().as_secs_f64(),
        20.0 / start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The cost of the counter reads, alone (`exec_guest_bench=1`).
fn bench_counters() {
    use std::os::unix::fs::FileExt;
    let refresh = std::fs::OpenOptions::new()
        .write(true)
        .open(exec::vmstat::STAT_REFRESH_PATH)
        .expect("open stat_refresh");
    let vmstat = std::fs::File::open(exec::vmstat::VMSTAT_PATH).expect("open /proc/vmstat");
    let mut buf = vec![0u8; 32768];
    let t = Instant::now();
    for _ in 0..200 {
        refresh.write_at(b"1", 0).expect("write stat_refresh");
    }
    println!("BENCH stat_refresh {} us", t.elapsed().as_micros() / 200);
    let t = Instant::now();
    let mut len = 0;
    for _ in 0..200 {
        len = 0;
        loop {
            let n = vmstat
                .read_at(&mut buf[len..], len as u64)
                .expect("read /proc/vmstat");
            if n == 0 {
                break;
            }
            len += n;
        }
    }
    println!(
        "BENCH /proc/vmstat pread {} us ({len} bytes)",
        t.elapsed().as_micros() / 200
    );
    let t = Instant::now();
    for _ in 0..200 {
        std::fs::read(exec::vmstat::VMSTAT_PATH).expect("read /proc/vmstat");
    }
    println!(
        "BENCH /proc/vmstat open+read+close {} us",
        t.elapsed().as_micros() / 200
    );
}

fn main() {
    let pid1 = std::process::id() == 1;
    if pid1 {
        for err in harness::agent::init::mount_filesystems() {
            println!("exec_guest: mount: {err:#}");
        }
    }
    if let Err(err) = exec::prepare_caller() {
        println!("exec_guest: prepare_caller: {err:#}");
    }
    if pid1 {
        if let Err(err) =
            harness::agent::init::load_module(Path::new(harness::agent::init::MODULE_PATH), "")
        {
            println!("exec_guest: load module: {err:#}");
        }
        if let Err(err) = exec::prepare_guest(&Settings::default()) {
            println!("exec_guest: prepare_guest: {err:#}");
        }
    }
    println!(
        "exec_guest: kernel {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    if std::env::var("exec_guest_bench").is_ok() {
        bench_counters();
    }
    let mut c = Checker { failures: 0 };
    let tests: [(&str, Check); 7] = [
        ("small_pin", small_pin),
        ("thp_pin_and_split", thp_pin_and_split),
        ("fork_and_remote", fork_and_remote),
        ("segv_precheck", segv_precheck),
        ("leftover_pin", leftover_pin),
        ("timeout", timeout),
        ("throughput", throughput),
    ];
    // As /init, `exec_guest_only=a,b` on the kernel command line arrives
    // in the environment.
    let only = std::env::var("exec_guest_only").unwrap_or_default();
    for (name, test) in tests {
        if !only.is_empty() && !only.split(',').any(|o| o == name) {
            continue;
        }
        if let Err(err) = test(&mut c) {
            println!("  FAIL {name}: {err:#}");
            c.failures += 1;
        }
    }
    if c.failures == 0 {
        println!("exec_guest: PASS");
    } else {
        println!("exec_guest: FAIL ({})", c.failures);
    }
    if pid1 {
        // SAFETY: sync has no preconditions.
        unsafe { libc::sync() };
        let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    }
    std::process::exit(i32::from(c.failures > 0));
}
