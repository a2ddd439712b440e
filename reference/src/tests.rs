//! Hand-written scenarios, each citing the kernel behaviour it checks.
//! Invariants are checked after every operation.

use crate::folio::ZERO_PAGE;
use crate::mm::{Pmd, pmd_index, pte_index};
use crate::*;

const BASE: Vpn = 0x20_0000; // PMD aligned
const P: Pid = Pid::PARENT;

fn model(thp: ThpMode) -> Model {
    Model::new(
        Profile::LINUX_6_12,
        Config {
            thp,
            use_zero_page: true,
        },
    )
}

/// Run an operation, then check the invariants.
fn ok<T: std::fmt::Debug, E: std::fmt::Debug>(m: &Model, r: Result<T, E>) -> T {
    let v = r.expect("operation failed");
    m.check_invariants().expect("invariants");
    v
}

fn pin(m: &mut Model, pid: Pid, start: Vpn, n: u64, foll: Foll) -> Gup {
    let r = m.gup(pid, GupApi::PinUserPagesFast, pid, start, n, foll);
    ok(m, r)
}

#[test]
fn pin_small_anon_page_adds_bias() {
    // mm/gup.c: try_grab_folio: small folio += GUP_PIN_COUNTING_BIAS.
    let mut m = model(ThpMode::Never);
    let r = m.mmap(P, BASE, 4, MapKind::AnonPrivate, Prot::ReadWrite);
    ok(&m, r);
    let r = m.touch(P, BASE, 1, Access::Write);
    ok(&m, r);
    let v = m.page_at(P, BASE);
    assert_eq!(
        (v.refcount, v.mapcount, v.anon, v.anon_exclusive),
        (1, 1, true, true)
    );
    let g = pin(&mut m, P, BASE, 1, Foll::WRITE);
    assert_eq!(g.count, 1);
    let v = m.page_at(P, BASE);
    assert_eq!(v.refcount, 1 + GUP_PIN_COUNTING_BIAS);
    assert!(v.maybe_dma_pinned);
    assert_eq!(m.vmstat().nr_foll_pin_acquired, 1);
    let r = m.release(g.handle, Release::Unpin);
    ok(&m, r);
    assert_eq!(m.page_at(P, BASE).refcount, 1);
    assert_eq!(m.vmstat().nr_foll_pin_released, 1);
}

#[test]
fn pin_of_pmd_thp_uses_pincount() {
    // mm/huge_memory.c: do_huge_pmd_anonymous_page maps a PMD THP;
    // try_grab_folio: large folio gets +1 ref and +1 _pincount per page.
    let mut m = model(ThpMode::Always);
    let r = m.mmap(P, BASE, 512, MapKind::AnonPrivate, Prot::ReadWrite);
    ok(&m, r);
    let r = m.touch(P, BASE, 1, Access::Write);
    ok(&m, r);
    assert_eq!(m.vmstat().thp_fault_alloc, 1);
    let v = m.page_at(P, BASE + 7);
    assert_eq!(
        (v.order, v.refcount, v.mapcount, v.folio_mapcount),
        (9, 1, 1, 1)
    );
    // Only the head page of a PMD-mapped THP carries PageAnonExclusive.
    assert!(m.page_at(P, BASE).anon_exclusive);
    assert!(!v.anon_exclusive);
    let g = pin(&mut m, P, BASE + 7, 1, Foll::WRITE);
    let v = m.page_at(P, BASE);
    assert_eq!((v.refcount, v.pincount), (2, 1));
    let g2 = pin(&mut m, P, BASE, 512, Foll::NONE);
    assert_eq!(g2.count, 512);
    assert_eq!(m.page_at(P, BASE).pincount, 513);
    assert_eq!(m.vmstat().nr_foll_pin_acquired, 513);
    let r = m.release(g.handle, Release::UnpinDirty);
    ok(&m, r);
    let r = m.release(g2.handle, Release::Unpin);
    ok(&m, r);
    assert_eq!(
        (m.page_at(P, BASE).refcount, m.page_at(P, BASE).pincount),
        (1, 0)
    );
}

#[test]
fn short_term_ro_pin_of_zero_page_takes_nothing() {
    // mm/gup.c: try_grab_folio: is_zero_folio -> no ref, no vmstat.
    let mut m = model(ThpMode::Never);
    let r = m.mmap(P, BASE, 4, MapKind::AnonPrivate, Prot::ReadWrite);
    ok(&m, r);
    let g = pin(&mut m, P, BASE, 2, Foll::NONE);
    assert_eq!(g.count, 2);
    let v = m.page_at(P, BASE);
    assert!(v.zero);
    assert_eq!(m.vmstat().nr_foll_pin_acquired, 0);
}

#[test]
fn longterm_ro_pin_unshares_zero_page() {
    // mm/internal.h: gup_must_unshare: non-anon + FOLL_LONGTERM + COW mapping;
    // do_wp_page(FAULT_FLAG_UNSHARE) -> wp_page_copy -> new exclusive page.
    let mut m = model(ThpMode::Never);
    let r = m.mmap(P, BASE, 4, MapKind::AnonPrivate, Prot::ReadWrite);
    ok(&m, r);
    let r = m.touch(P, BASE, 1, Access::Read);
    ok(&m, r);
    assert!(m.page_at(P, BASE).zero);
    pin(&mut m, P, BASE, 1, Foll::LONGTERM);
    let v = m.page_at(P, BASE);
    assert!(!v.zero && v.anon && v.anon_exclusive);
    assert_eq!(v.refcount, 1 + GUP_PIN_COUNTING_BIAS);
}

#[test]
fn longterm_ro_pin_of_huge_zero_splits_pmd() {
    // Read fault maps the huge zero folio; unshare splits the PMD
    // (do_huge_pmd_wp_page: is_huge_zero_pmd -> fallback).
    let mut m = model(ThpMode::Always);
    let r = m.mmap(P, BASE, 512, MapKind::AnonPrivate, Prot::ReadWrite);
    ok(&m, r);
    let r = m.touch(P, BASE, 1, Access::Read);
    ok(&m, r);
    assert!(m.page_at(P, BASE + 3).huge_zero);
    pin(&mut m, P, BASE + 3, 1, Foll::LONGTERM);
    assert_eq!(m.vmstat().thp_split_pmd, 1);
    assert!(m.page_at(P, BASE + 3).anon);
    assert!(m.page_at(P, BASE + 4).zero);
}

#[test]
fn short_term_pin_of_huge_zero_uses_pincount() {
    let mut m = model(ThpMode::Always);
    let r = m.mmap(P, BASE, 512, MapKind::AnonPrivate, Prot::ReadWrite);
    ok(&m, r);
    let r = m.touch(P, BASE, 1, Access::Read);
    ok(&m, r);
    let g = pin(&mut m, P, BASE, 4, Foll::NONE);
    assert_eq!(g.count, 4);
    assert_eq!(m.page_at(P, BASE).pincount, 4);
    assert_eq!(m.vmstat().nr_foll_pin_acquired, 4);
}

#[test]
fn fork_copies_pinned_page_and_shares_the_rest() {
    // mm/memory.c: copy_present_ptes -> folio_try_dup_anon_rmap_pte -EBUSY
    // for a maybe-pinned exclusive page -> copy_present_page.
    let mut m = model(ThpMode::Never);
    let r = m.mmap(P, BASE, 2, MapKind::AnonPrivate, Prot::ReadWrite);
    ok(&m, r);
    let r = m.touch(P, BASE, 2, Access::Write);
    ok(&m, r);
    pin(&mut m, P, BASE, 1, Foll::WRITE);
    let c = ok(&m, m.clone().fork(P));
    let c2 = m.fork(P).expect("fork");
    m.check_invariants().expect("invariants");
    assert_eq!(c, c2);
    let pinned_parent = m.page_at(P, BASE);
    let pinned_child = m.page_at(c2, BASE);
    assert_ne!(pinned_parent.page, pinned_child.page);
    assert!(pinned_parent.anon_exclusive && pinned_child.anon_exclusive);
    let shared_parent = m.page_at(P, BASE + 1);
    let shared_child = m.page_at(c2, BASE + 1);
    assert_eq!(shared_parent.page, shared_child.page);
    assert_eq!((shared_parent.refcount, shared_parent.mapcount), (2, 2));
    assert!(!shared_parent.anon_exclusive);
    // The parent writes: not exclusive, refcount 2 -> copy (wp_page_copy).
    let r = m.touch(P, BASE + 1, 1, Access::Write);
    ok(&m, r);
    assert_ne!(m.page_at(P, BASE + 1).page, shared_child.page);
    assert_eq!(m.page_at(c2, BASE + 1).refcount, 1);
    // The child writes its now-sole page: reused (wp_can_reuse_anon_folio).
    let r = m.touch(c2, BASE + 1, 1, Access::Write);
    ok(&m, r);
    assert_eq!(m.page_at(c2, BASE + 1).page, shared_child.page);
    assert!(m.page_at(c2, BASE + 1).anon_exclusive);
}

#[test]
fn fork_with_pinned_thp_splits_parent_pmd_and_copies_every_page() {
    // mm/huge_memory.c: copy_huge_pmd -> -EBUSY -> __split_huge_pmd; then
    // every exclusive page of the maybe-pinned folio is copied.
    let mut m = model(ThpMode::Always);
    let r = m.mmap(P, BASE, 512, MapKind::AnonPrivate, Prot::ReadWrite);
    ok(&m, r);
    let r = m.touch(P, BASE, 1, Access::Write);
    ok(&m, r);
    pin(&mut m, P, BASE, 1, Foll::WRITE);
    let c = m.fork(P).expect("fork");
    m.check_invariants().expect("invariants");
    assert_eq!(m.vmstat().thp_split_pmd, 1);
    let v = m.page_at(c, BASE + 100);
    assert_eq!((v.order, v.refcount), (0, 1));
    let pv = m.page_at(P, BASE + 100);
    assert_eq!((pv.order, pv.refcount, pv.mapcount), (9, 513, 1));
    assert!(pv.anon_exclusive);
}

#[test]
fn fork_without_pin_shares_thp_pmd() {
    let mut m = model(ThpMode::Always);
    let r = m.mmap(P, BASE, 512, MapKind::AnonPrivate, Prot::ReadWrite);
    ok(&m, r);
    let r = m.touch(P, BASE, 1, Access::Write);
    ok(&m, r);
    let c = m.fork(P).expect("fork");
    m.check_invariants().expect("invariants");
    assert_eq!(m.page_at(c, BASE).page, m.page_at(P, BASE).page);
    assert_eq!(m.page_at(P, BASE).refcount, 2);
    // The parent writes: do_huge_pmd_wp_page falls back, PMD split, copy.
    let r = m.touch(P, BASE + 5, 1, Access::Write);
    ok(&m, r);
    assert_eq!(m.vmstat().thp_split_pmd, 1);
    assert_eq!(m.page_at(P, BASE + 5).order, 0);
    assert_eq!(m.page_at(P, BASE + 6).order, 9);
    // The child still maps the whole folio by PMD: not partially mapped yet.
    assert_eq!(m.vmstat().thp_deferred_split_page, 0);
    let r = m.exit(c);
    ok(&m, r);
    // The PMD mapping went; one page stays unmapped: deferred split.
    assert_eq!(m.vmstat().thp_deferred_split_page, 1);
}

#[test]
fn partial_munmap_of_thp_splits_pmd_and_queues_deferred_split() {
    // vma_adjust_trans_huge -> split_huge_pmd_address; __folio_remove_rmap
    // -> deferred_split_folio(folio, true).
    let mut m = model(ThpMode::Always);
    let r = m.mmap(P, BASE, 512, MapKind::AnonPrivate, Prot::ReadWrite);
    ok(&m, r);
    let r = m.touch(P, BASE, 1, Access::Write);
    ok(&m, r);
    let r = m.munmap(P, BASE + 256, 256);
    ok(&m, r);
    assert_eq!(m.vmstat().thp_split_pmd, 1);
    assert_eq!(m.vmstat().thp_deferred_split_page, 1);
    let v = m.page_at(P, BASE);
    assert_eq!((v.order, v.refcount, v.folio_mapcount), (9, 256, 256));
    assert!(!m.page_at(P, BASE + 300).present);
}

#[test]
fn split_huge_pages_skips_pinned_folio() {
    let mut m = model(ThpMode::Always);
    let r = m.mmap(P, BASE, 1024, MapKind::AnonPrivate, Prot::ReadWrite);
    ok(&m, r);
    let r = m.touch(P, BASE, 1024, Access::Write);
    ok(&m, r);
    assert_eq!(m.vmstat().thp_fault_alloc, 2);
    pin(&mut m, P, BASE, 1, Foll::NONE);
    let r = m.split_huge_pages(P, BASE, 1024);
    ok(&m, r);
    assert_eq!(m.vmstat().thp_split_page, 1);
    assert_eq!(m.vmstat().thp_split_pmd, 1);
    assert_eq!(m.page_at(P, BASE).order, 9);
    let v = m.page_at(P, BASE + 600);
    assert_eq!((v.order, v.refcount, v.mapcount), (0, 1, 1));
    assert!(v.anon_exclusive);
}

#[test]
fn write_gup_on_read_only_mapping_needs_force() {
    // mm/gup.c: check_vma_flags.
    let mut m = model(ThpMode::Never);
    let r = m.mmap(P, BASE, 4, MapKind::AnonPrivate, Prot::Read);
    ok(&m, r);
    assert_eq!(
        m.gup(P, GupApi::PinUserPages, P, BASE, 1, Foll::WRITE),
        Err(Errno::EFAULT)
    );
    assert!(m.has_pinned(P));
    let g = pin(&mut m, P, BASE, 1, Foll::WRITE | Foll::FORCE);
    assert_eq!(g.count, 1);
    assert!(m.page_at(P, BASE).anon_exclusive);
    let r = m.mmap(P, BASE + 4096, 4, MapKind::MemfdShared, Prot::Read);
    ok(&m, r);
    assert_eq!(
        m.gup(
            P,
            GupApi::PinUserPages,
            P,
            BASE + 4096,
            1,
            Foll::WRITE | Foll::FORCE
        ),
        Err(Errno::EFAULT)
    );
}

#[test]
fn gup_stops_at_the_end_of_the_mapping() {
    let mut m = model(ThpMode::Never);
    let r = m.mmap(P, BASE, 4, MapKind::AnonPrivate, Prot::ReadWrite);
    ok(&m, r);
    let g = pin(&mut m, P, BASE + 2, 8, Foll::WRITE);
    assert_eq!(g.count, 2);
    assert_eq!(
        m.gup(P, GupApi::GetUserPages, P, BASE + 4, 1, Foll::NONE),
        Err(Errno::EFAULT)
    );
}

#[test]
fn memfd_shared_page_cache_reference() {
    let mut m = model(ThpMode::Always);
    let r = m.mmap(P, BASE, 4, MapKind::MemfdShared, Prot::ReadWrite);
    ok(&m, r);
    let r = m.touch(P, BASE, 1, Access::Write);
    ok(&m, r);
    let v = m.page_at(P, BASE);
    assert_eq!((v.refcount, v.mapcount, v.anon, v.order), (2, 1, false, 0));
    pin(&mut m, P, BASE, 1, Foll::WRITE | Foll::LONGTERM);
    assert_eq!(m.page_at(P, BASE).refcount, 2 + GUP_PIN_COUNTING_BIAS);
    // MADV_DONTNEED zaps the PTE; the page cache keeps the page.
    let r = m.madvise(P, BASE, 4, Advice::DontNeed);
    ok(&m, r);
    assert!(!m.page_at(P, BASE).present);
    // Read fault-around maps it back (the same page).
    let before = m.handle_pages(HandleId(0))[0].page;
    let r = m.touch(P, BASE + 1, 1, Access::Read);
    ok(&m, r);
    assert_eq!(m.page_at(P, BASE).page, before);
}

#[test]
fn memfd_private_longterm_ro_pin_unshares_on_6_12_only() {
    for (profile, unshared) in [(Profile::LINUX_6_12, true), (Profile::LINUX_6_1, false)] {
        let mut m = Model::new(profile, Config::default());
        let r = m.mmap(P, BASE, 4, MapKind::MemfdPrivate, Prot::ReadWrite);
        ok(&m, r);
        let r = m.touch(P, BASE, 1, Access::Read);
        ok(&m, r);
        assert!(!m.page_at(P, BASE).anon);
        pin(&mut m, P, BASE, 1, Foll::LONGTERM);
        assert_eq!(m.page_at(P, BASE).anon, unshared, "{}", profile.name);
    }
}

#[test]
fn shared_mapping_is_not_copied_at_fork() {
    // mm/memory.c: vma_needs_copy: no anon_vma -> the child faults later.
    let mut m = model(ThpMode::Never);
    let r = m.mmap(P, BASE, 4, MapKind::MemfdShared, Prot::ReadWrite);
    ok(&m, r);
    let r = m.touch(P, BASE, 4, Access::Write);
    ok(&m, r);
    let c = m.fork(P).expect("fork");
    assert!(!m.page_at(c, BASE).present);
    let r = m.touch(c, BASE, 1, Access::Read);
    ok(&m, r);
    // Fault-around mapped the whole cached window.
    assert!(m.page_at(c, BASE + 3).present);
    assert_eq!(m.page_at(c, BASE + 3).page, m.page_at(P, BASE + 3).page);
    // The file outlives the parent's mapping while the child maps it.
    let r = m.munmap(P, BASE, 4);
    ok(&m, r);
    assert_eq!(m.page_at(c, BASE).refcount, 2);
    let r = m.exit(c);
    ok(&m, r);
}

#[test]
fn mprotect_splits_and_merges_vmas() {
    let mut m = model(ThpMode::Always);
    let r = m.mmap(P, BASE, 512, MapKind::AnonPrivate, Prot::ReadWrite);
    ok(&m, r);
    let r = m.touch(P, BASE, 1, Access::Write);
    ok(&m, r);
    let r = m.mprotect(P, BASE + 100, 10, Prot::Read);
    ok(&m, r);
    assert_eq!(m.vmstat().thp_split_pmd, 1);
    let r = m.mprotect(P, BASE + 100, 10, Prot::ReadWrite);
    ok(&m, r);
    assert_eq!(m.mms[0].vmas.len(), 1);
    assert_eq!(
        m.mprotect(P, BASE + 500, 100, Prot::Read),
        Err(Errno::ENOMEM)
    );
    assert_eq!(m.mms[0].vmas.len(), 2);
}

#[test]
fn touch_reports_segv() {
    let mut m = model(ThpMode::Never);
    let r = m.mmap(P, BASE, 2, MapKind::AnonPrivate, Prot::Read);
    ok(&m, r);
    assert_eq!(m.touch(P, BASE, 2, Access::Write), Err(Segv { at: 0 }));
    assert_eq!(m.touch(P, BASE, 3, Access::Read), Err(Segv { at: 2 }));
}

#[test]
fn get_blocks_split_and_survives_munmap() {
    let mut m = model(ThpMode::Always);
    let r = m.mmap(P, BASE, 512, MapKind::AnonPrivate, Prot::ReadWrite);
    ok(&m, r);
    let r = m.touch(P, BASE, 1, Access::Write);
    ok(&m, r);
    let r = m.gup(P, GupApi::GetUserPages, P, BASE, 1, Foll::NONE);
    let g = ok(&m, r);
    let r = m.split_huge_pages(P, BASE, 512);
    ok(&m, r);
    assert_eq!(m.vmstat().thp_split_page, 0);
    let r = m.munmap(P, BASE, 512);
    ok(&m, r);
    let held = m.handle_pages(g.handle);
    assert_eq!(
        (held[0].refcount, held[0].mapcount, held[0].order),
        (1, 0, 9)
    );
    let r = m.release(g.handle, Release::Put);
    ok(&m, r);
    assert_eq!(m.release(g.handle, Release::Put), Err(Errno::ENOENT));
}

#[test]
fn split_maps_never_written_subpages_to_the_zero_page_on_6_12() {
    // mm/migrate.c: try_to_map_unused_to_zeropage (RMP_USE_SHARED_ZEROPAGE).
    for (profile, zero) in [(Profile::LINUX_6_12, true), (Profile::LINUX_6_1, false)] {
        let mut m = Model::new(profile, Config::default());
        let r = m.mmap(P, BASE, 512, MapKind::AnonPrivate, Prot::ReadWrite);
        ok(&m, r);
        let r = m.touch(P, BASE, 1, Access::Write);
        ok(&m, r);
        let c = m.fork(P).expect("fork");
        let r = m.split_huge_pages(c, BASE, 1);
        ok(&m, r);
        assert_eq!(m.vmstat().thp_split_page, 1);
        assert_eq!(m.vmstat().thp_split_pmd, 2, "both PMD mappings split");
        let written = m.page_at(P, BASE);
        assert_eq!(
            (written.order, written.refcount, written.mapcount),
            (0, 2, 2)
        );
        assert_eq!(m.page_at(P, BASE + 1).zero, zero, "{}", profile.name);
        assert_eq!(m.page_at(c, BASE + 1).zero, zero, "{}", profile.name);
    }
}

#[test]
fn split_of_pte_mapped_thp_counts_deferred_split_once() {
    // try_to_migrate_one removes PTE mappings one at a time: the first
    // removal leaves the folio partially mapped.
    let mut m = Model::new(
        Profile::LINUX_6_12,
        Config {
            thp: ThpMode::Always,
            use_zero_page: false,
        },
    );
    let r = m.mmap(P, BASE, 512, MapKind::AnonPrivate, Prot::ReadWrite);
    ok(&m, r);
    let r = m.touch(P, BASE, 1, Access::Read);
    ok(&m, r);
    let c = m.fork(P).expect("fork");
    let r = m.mprotect(c, BASE, 1, Prot::None);
    ok(&m, r);
    assert_eq!(m.vmstat().thp_split_pmd, 1);
    let r = m.split_huge_pages(c, BASE, 1);
    ok(&m, r);
    assert_eq!(m.vmstat().thp_split_pmd, 2);
    assert_eq!(m.vmstat().thp_deferred_split_page, 1);
    assert!(m.page_at(P, BASE).zero);
}

/// A model with a bit of everything: a PMD THP, a PTE-mapped THP, small
/// pages, a shmem mapping, pins and FOLL_GET references, a child.
fn busy_model() -> Model {
    let mut m = model(ThpMode::Always);
    let r = m.mmap(P, BASE, 1024, MapKind::AnonPrivate, Prot::ReadWrite);
    ok(&m, r);
    let r = m.touch(P, BASE, 1, Access::Write);
    ok(&m, r);
    let r = m.touch(P, BASE + 512, 1, Access::Write);
    ok(&m, r);
    pin(&mut m, P, BASE + 3, 4, Foll::NONE);
    let r = m.mprotect(P, BASE + 600, 8, Prot::Read);
    ok(&m, r);
    let r = m.mmap(P, 4 * BASE, 8, MapKind::MemfdShared, Prot::ReadWrite);
    ok(&m, r);
    let r = m.touch(P, 4 * BASE, 3, Access::Read);
    ok(&m, r);
    let r = m.gup(P, GupApi::GetUserPages, P, 4 * BASE, 2, Foll::WRITE);
    ok(&m, r);
    let r = m.fork(P);
    ok(&m, r);
    pin(&mut m, P, BASE + 700, 2, Foll::WRITE);
    m
}

/// A change that breaks one invariant.
type Corruption = Box<dyn Fn(&mut Model)>;

/// Corruptions of [`busy_model`], each breaking one invariant.
fn corruptions(sound: &Model) -> Vec<(&'static str, Corruption)> {
    let thp = sound.mem.folio_of(sound.mapped_page(P, BASE));
    let pte_mapped = sound.mapped_page(P, BASE + 600);
    let small = sound.mapped_page(P, BASE + 700);
    vec![
        (
            "refcount",
            Box::new(move |m| m.mem.folio_mut(thp).refcount += 1),
        ),
        (
            "pincount",
            Box::new(move |m| m.mem.folio_mut(thp).pincount -= 1),
        ),
        (
            "page pte_maps",
            Box::new(move |m| m.mem.page_mut(pte_mapped).pte_maps += 1),
        ),
        (
            "pte_mapped_pages",
            Box::new(move |m| {
                let f = m.mem.folio_of(pte_mapped);
                m.mem.folio_mut(f).pte_mapped_pages -= 1;
            }),
        ),
        (
            "freed but mapped",
            Box::new(move |m| {
                let f = m.mem.folio_of(small);
                m.mem.folio_mut(f).live = false;
            }),
        ),
        (
            "PTE outside a VMA",
            Box::new(|m| {
                let r = m.munmap(P, BASE + 1020, 4);
                assert_eq!(r, Ok(()));
                if let Some(Pmd::Table(t)) = m.mm_mut(P).pmds.get_mut(&pmd_index(BASE + 512)) {
                    t[pte_index(BASE + 1021)] = ZERO_PAGE;
                }
            }),
        ),
        ("vmstat", Box::new(|m| m.vmstat.nr_foll_pin_released += 1)),
        (
            "pinned page not exclusive",
            Box::new(move |m| m.mem.page_mut(small).anon_exclusive = false),
        ),
        (
            "PMD leaf dropped",
            Box::new(|m| {
                m.mm_mut(P).pmds.remove(&pmd_index(BASE));
            }),
        ),
        (
            "page-cache slot dropped",
            Box::new(|m| m.files[0].cache[1] = crate::model::NO_FOLIO),
        ),
        (
            "handle page dropped",
            Box::new(|m| {
                if let Some(h) = m.handles[0].as_mut() {
                    h.pages.pop();
                }
            }),
        ),
        (
            "dead process with a VMA",
            Box::new(|m| {
                let c = m.fork(P).expect("fork");
                m.exit(c).expect("exit");
                let vma = *m.mm(P).vmas.values().next().expect("a VMA");
                m.mm_mut(c).vmas.insert(vma.start, vma);
            }),
        ),
    ]
}

#[test]
fn fast_invariant_check_reports_what_the_exact_one_does() {
    // check_invariants_with answers from a fast pass and falls back to the
    // exact walk only when something is off: both must agree, on a sound
    // model and on every kind of corruption, with a scratch reused
    // across them (a failed pass must not leave it dirty).
    let mut scratch = InvariantScratch::default();
    let sound = busy_model();
    assert_eq!(sound.check_invariants_with(&mut scratch), Ok(()));
    let corruptions = corruptions(&sound);
    for (what, corrupt) in corruptions {
        let mut m = sound.clone();
        corrupt(&mut m);
        let exact = m.check_invariants_exact();
        assert!(exact.is_err(), "{what}: not a violation");
        assert_eq!(m.check_invariants_with(&mut scratch), exact, "{what}");
        assert_eq!(sound.check_invariants_with(&mut scratch), Ok(()), "{what}");
    }
}

#[test]
fn tracked_invariant_check_reports_what_the_exact_one_does() {
    // check_invariants_tracked looks only at what changed since its last
    // check: a corruption made after a clean check must be found, and
    // reported as the exact walk reports it; a tracker that checked another
    // model recounts everything.
    let sound = busy_model();
    let mut other = InvariantTracker::default();
    for (what, corrupt) in corruptions(&sound) {
        let mut m = sound.clone();
        let mut tracker = InvariantTracker::default();
        assert_eq!(m.check_invariants_tracked(&mut tracker), Ok(()), "{what}");
        corrupt(&mut m);
        let exact = m.check_invariants_exact();
        assert!(exact.is_err(), "{what}: not a violation");
        assert_eq!(m.check_invariants_tracked(&mut tracker), exact, "{what}");
        assert_eq!(m.check_invariants_tracked(&mut other), exact, "{what}");
        let mut sound = sound.clone();
        assert_eq!(sound.check_invariants_tracked(&mut other), Ok(()), "{what}");
    }
}

#[test]
fn reset_model_is_a_new_one() {
    let mut m = busy_model();
    let config = Config {
        thp: ThpMode::Madvise,
        use_zero_page: false,
    };
    m.reset(Profile::LINUX_6_1, config);
    let new = Model::new(Profile::LINUX_6_1, config);
    assert_eq!(format!("{m:?}"), format!("{new:?}"));
}
