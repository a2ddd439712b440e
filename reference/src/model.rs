//! The model: every process, folio, shmem file, GUP handle and counter, and
//! the operations a program performs on them.
//!
//! Operations take kernel-level arguments (a process, virtual page numbers,
//! FOLL_* flags) and return what the kernel returns, errnos included. The
//! work is split by kernel subsystem: `fault.rs` (mm/memory.c,
//! mm/huge_memory.c fault paths), `gup.rs` (mm/gup.c), `syscalls.rs`
//! (mmap/munmap/mprotect/madvise), `fork.rs` (kernel/fork.c +
//! copy_page_range), `split.rs` (debugfs split_huge_pages), `view.rs`
//! (what the helper module's QUERY reports) and `invariants.rs`.

use crate::errno::Errno;
use crate::folio::{FileId, FolioId, FolioKind, Memory, ZERO_PAGE};
use crate::mm::{AnonVma, Mm, Pmd, Vma, pmd_index, pte_index, zeroed_table};
use crate::profile::Profile;
use crate::types::{HPAGE_PMD_NR, HandleId, Pid, ThpMode, Vpn};
use crate::vmstat::VmStat;

/// Guest settings that change what the kernel does (the program header's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// `/sys/kernel/mm/transparent_hugepage/enabled`.
    pub thp: ThpMode,
    /// `/sys/kernel/mm/transparent_hugepage/use_zero_page`.
    pub use_zero_page: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            thp: ThpMode::Always,
            use_zero_page: true,
        }
    }
}

/// A point where the kernel may take another path than the model predicts,
/// recorded by the operation that reached it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Nondet {
    /// A PMD THP was allocated at fault time; the kernel may fall back to
    /// small pages instead (`mm/huge_memory.c: do_huge_pmd_anonymous_page`,
    /// `vma_alloc_folio` failing: `thp_fault_fallback`).
    ThpFault {
        /// The faulting process.
        pid: Pid,
        /// The faulting page.
        vpn: Vpn,
    },
    /// The huge zero folio was mapped at a read fault; its allocation may
    /// fail and fall back to the small zero page (`mm_get_huge_zero_folio`).
    HugeZeroFault {
        /// The faulting process.
        pid: Pid,
        /// The faulting page.
        vpn: Vpn,
    },
}

/// The empty slot of [`ShmemFile::cache`].
pub(crate) const NO_FOLIO: FolioId = u32::MAX;

/// The page-cache folio of `file` at `index`, if any.
pub(crate) fn cached(file: &ShmemFile, index: u64) -> Option<FolioId> {
    file.cache
        .get(index as usize)
        .copied()
        .filter(|&f| f != NO_FOLIO)
}

/// A shmem file: its page cache.
#[derive(Clone, Debug, Default)]
pub(crate) struct ShmemFile {
    /// Page-cache folios by file index (`u32::MAX`: no folio).
    pub cache: Vec<FolioId>,
    /// Size in pages (the executor sizes the file to the mapping).
    pub size: u64,
    /// Some VMA still references the file.
    pub live: bool,
}

/// The pages one GUP call returned.
#[derive(Clone, Debug)]
pub(crate) struct Handle {
    /// FOLL_PIN (true) or FOLL_GET.
    pub pin: bool,
    /// The pages, in the order GUP returned them.
    pub pages: Vec<u64>,
}

/// The reference model of one machine's pinning state.
#[derive(Clone, Debug)]
pub struct Model {
    pub(crate) profile: Profile,
    pub(crate) config: Config,
    pub(crate) mem: Memory,
    pub(crate) mms: Vec<Mm>,
    pub(crate) files: Vec<ShmemFile>,
    pub(crate) handles: Vec<Option<Handle>>,
    pub(crate) vmstat: VmStat,
    pub(crate) nondet: Vec<Nondet>,
    /// Pages held by live handles (the module's per-file cap counts them).
    pub(crate) pages_held: u64,
    /// Live handles.
    pub(crate) live_handle_count: usize,
    next_anon_vma: u32,
    next_vma_seq: u64,
}

impl Model {
    /// A machine running `profile` with one process ([`Pid::PARENT`]) and no mappings.
    pub fn new(profile: Profile, config: Config) -> Model {
        Model {
            profile,
            config,
            mem: Memory::new(
                profile.pincount_min_order,
                profile.deferred_split_on_any_unmap,
            ),
            mms: vec![Mm::new()],
            files: Vec::new(),
            handles: Vec::new(),
            vmstat: VmStat::default(),
            nondet: Vec::new(),
            pages_held: 0,
            live_handle_count: 0,
            next_anon_vma: 0,
            next_vma_seq: 0,
        }
    }

    /// Back to what [`Model::new`] returns for `profile` and `config`,
    /// keeping the buffers of the folio and page arrays (a fuzzer runs one
    /// model per input: reusing them spares the allocator).
    pub fn reset(&mut self, profile: Profile, config: Config) {
        // Every field, so that a new one cannot be forgotten here.
        let Model {
            profile: p,
            config: c,
            mem,
            mms,
            files,
            handles,
            vmstat,
            nondet,
            pages_held,
            live_handle_count,
            next_anon_vma,
            next_vma_seq,
        } = self;
        *p = profile;
        *c = config;
        mem.reset(
            profile.pincount_min_order,
            profile.deferred_split_on_any_unmap,
        );
        mms.clear();
        mms.push(Mm::new());
        files.clear();
        handles.clear();
        *vmstat = VmStat::default();
        nondet.clear();
        *pages_held = 0;
        *live_handle_count = 0;
        *next_anon_vma = 0;
        *next_vma_seq = 0;
    }

    /// The kernel profile.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The guest settings.
    pub fn config(&self) -> Config {
        self.config
    }

    /// The counters, cumulative since [`Model::new`].
    pub fn vmstat(&self) -> VmStat {
        self.vmstat
    }

    /// The non-deterministic points the operations since the last call reached.
    pub fn take_nondet(&mut self) -> Vec<Nondet> {
        std::mem::take(&mut self.nondet)
    }

    /// The pages freed (refcount reached zero) since the last call: an
    /// observer may see their pfns reused for other pages afterwards.
    pub fn take_freed(&mut self) -> Vec<crate::PageId> {
        self.mem
            .take_freed()
            .into_iter()
            .map(crate::PageId)
            .collect()
    }

    /// The process exists and has not exited.
    pub fn is_alive(&self, pid: Pid) -> bool {
        self.mms.get(pid.0 as usize).is_some_and(|m| m.alive)
    }

    /// `MMF_HAS_PINNED` of the process.
    pub fn has_pinned(&self, pid: Pid) -> bool {
        self.mms.get(pid.0 as usize).is_some_and(|m| m.has_pinned)
    }

    /// The live handles, in creation order.
    pub fn live_handles(&self) -> impl Iterator<Item = HandleId> + '_ {
        self.handles
            .iter()
            .enumerate()
            .filter(|(_, h)| h.is_some())
            .map(|(i, _)| HandleId(i as u32))
    }

    pub(crate) fn mm(&self, pid: Pid) -> &Mm {
        &self.mms[pid.0 as usize]
    }

    pub(crate) fn mm_mut(&mut self, pid: Pid) -> &mut Mm {
        &mut self.mms[pid.0 as usize]
    }

    /// `Err(ESRCH)` unless the process is alive.
    pub(crate) fn check_alive(&self, pid: Pid) -> Result<(), Errno> {
        if self.is_alive(pid) {
            Ok(())
        } else {
            Err(Errno::ESRCH)
        }
    }

    /// The next VMA insertion sequence number (see `Vma::seq`).
    pub(crate) fn next_seq(&mut self) -> u64 {
        self.next_vma_seq += 1;
        self.next_vma_seq
    }

    /// A new, singular anon_vma.
    pub(crate) fn new_anon_vma(&mut self) -> AnonVma {
        self.next_anon_vma += 1;
        AnonVma {
            id: self.next_anon_vma,
            singular: true,
        }
    }

    /// `mm/rmap.c: __anon_vma_prepare()` for the VMA containing `vpn`: give it
    /// an anon_vma, reusing a compatible neighbour's (`find_mergeable_anon_vma`,
    /// which only reuses one with a singular chain).
    pub(crate) fn anon_vma_prepare(&mut self, pid: Pid, vpn: Vpn) {
        let mm = self.mm(pid);
        let vma = *mm.vma(vpn).expect("anon_vma_prepare inside a VMA");
        if vma.anon_vma.is_some() {
            return;
        }
        let next = mm.vmas.get(&vma.end).copied();
        let prev = mm.vmas.range(..vma.start).next_back().map(|(_, v)| *v);
        let reuse = [next, prev]
            .into_iter()
            .flatten()
            .filter(|n| vma.anon_vma_compatible(n) && contiguous_pgoff(&vma, n))
            .filter_map(|n| n.anon_vma)
            .find(|a| a.singular);
        let anon_vma = match reuse {
            Some(a) => a,
            None => self.new_anon_vma(),
        };
        self.mm_mut(pid)
            .vmas
            .get_mut(&vma.start)
            .expect("VMA still there")
            .anon_vma = Some(anon_vma);
    }

    /// `__split_huge_pmd()`: replace a PMD leaf by a page table of PTEs
    /// mapping the same pages (`mm/huge_memory.c: __split_huge_pmd_locked`):
    /// the THP's refcount +511, its pages each one PTE mapping, every page's
    /// `PageAnonExclusive` copied from the head's; a huge zero PMD becomes
    /// 512 PTEs of the small zero page. Counts `thp_split_pmd`.
    pub(crate) fn split_pmd(&mut self, pid: Pid, pmd: u64) {
        let entry = self.mm(pid).pmds.get(&pmd).cloned();
        let mut table = zeroed_table();
        match entry {
            Some(Pmd::Thp(f)) => {
                let first = self.mem.folio(f).first;
                let exclusive = self.mem.page(first).anon_exclusive;
                for (i, slot) in table.iter_mut().enumerate() {
                    let p = first + i as u64;
                    *slot = p;
                    self.mem.add_pte_map(p, false);
                    self.mem.page_mut(p).anon_exclusive = exclusive;
                }
                self.mem.get(f, HPAGE_PMD_NR as i64 - 1);
                // The PTE mappings were added first, so removing the PMD
                // mapping never finds the folio partially mapped.
                let folio = self.mem.folio_mut(f);
                folio.entire_maps -= 1;
            }
            Some(Pmd::HugeZero) => table.fill(ZERO_PAGE),
            _ => return,
        }
        self.vmstat.thp_split_pmd += 1;
        self.mm_mut(pid).pmds.insert(pmd, Pmd::Table(table));
    }

    /// Split every PMD leaf that no longer lies inside a single VMA
    /// (`mm/huge_memory.c: vma_adjust_trans_huge`, called whenever a VMA
    /// boundary moves to an address that is not PMD aligned).
    pub(crate) fn split_straddling_pmds(&mut self, pid: Pid, start: Vpn, end: Vpn) {
        let first = pmd_index(start);
        let last = pmd_index(end.saturating_sub(1).max(start));
        let leaves: Vec<u64> = self
            .mm(pid)
            .pmds
            .range(first..=last)
            .filter(|(_, p)| !matches!(p, Pmd::Table(_)))
            .map(|(&i, _)| i)
            .collect();
        for pmd in leaves {
            let covered = self.mm(pid).vma_covering_pmd(pmd).is_some()
                && self
                    .mm(pid)
                    .vmas_in(pmd * HPAGE_PMD_NR, (pmd + 1) * HPAGE_PMD_NR)
                    .len()
                    == 1;
            if !covered {
                self.split_pmd(pid, pmd);
            }
        }
    }

    /// Zap `[start, end)` of one VMA (`mm/memory.c: zap_pte_range`,
    /// `zap_huge_pmd`): PMD leaves fully inside go whole, partially covered
    /// ones are split first; PTEs are removed in runs of consecutive pages
    /// of one folio, as `folio_pte_batch()` batches them.
    pub(crate) fn zap_vma_range(&mut self, pid: Pid, start: Vpn, end: Vpn) {
        let mut vpn = start;
        while vpn < end {
            let pmd = pmd_index(vpn);
            let pmd_start = pmd * HPAGE_PMD_NR;
            let pmd_end = pmd_start + HPAGE_PMD_NR;
            let seg_end = end.min(pmd_end);
            match self.mm(pid).pmds.get(&pmd) {
                None => {}
                Some(Pmd::Thp(_)) | Some(Pmd::HugeZero)
                    if vpn == pmd_start && seg_end == pmd_end =>
                {
                    if let Some(Pmd::Thp(f)) = self.mm_mut(pid).pmds.remove(&pmd) {
                        self.mem.remove_pmd_map(f, &mut self.vmstat);
                    }
                }
                Some(Pmd::Thp(_)) | Some(Pmd::HugeZero) => {
                    self.split_pmd(pid, pmd);
                    self.zap_ptes(pid, vpn, seg_end);
                }
                Some(Pmd::Table(_)) => self.zap_ptes(pid, vpn, seg_end),
            }
            vpn = seg_end;
        }
    }

    /// Zap the PTEs of `[start, end)`, all within one page table.
    fn zap_ptes(&mut self, pid: Pid, start: Vpn, end: Vpn) {
        let pmd = pmd_index(start);
        let Some(Pmd::Table(table)) = self.mm_mut(pid).pmds.get_mut(&pmd) else {
            return;
        };
        let mut cleared: Vec<u64> = Vec::new();
        for vpn in start..end {
            let slot = &mut table[pte_index(vpn)];
            cleared.push(*slot);
            *slot = 0;
        }
        let mut run: Vec<u64> = Vec::new();
        for p in cleared {
            let continues = run
                .last()
                .is_some_and(|&q| p == q + 1 && self.mem.folio_of(p) == self.mem.folio_of(q));
            if !continues && !run.is_empty() {
                self.mem.remove_pte_run(&run, &mut self.vmstat);
                run.clear();
            }
            if p != 0 && p != ZERO_PAGE {
                run.push(p);
            }
        }
        self.mem.remove_pte_run(&run, &mut self.vmstat);
    }

    /// `free_pgtables()` after an munmap of `[start, end)`: page tables whose
    /// whole PMD range no VMA overlaps any more are freed.
    pub(crate) fn free_pgtables(&mut self, pid: Pid, start: Vpn, end: Vpn) {
        let first = pmd_index(start);
        let last = pmd_index(end - 1);
        for pmd in first..=last {
            if !self.mm(pid).pmd_range_in_use(pmd) {
                let removed = self.mm_mut(pid).pmds.remove(&pmd);
                debug_assert!(
                    !matches!(removed, Some(Pmd::Thp(_))),
                    "a THP leaf outlived its VMA"
                );
            }
        }
    }

    /// Drop a shmem file's page cache once no VMA references it any more
    /// (last `fput` → `shmem_evict_inode` → truncate: one reference per
    /// cached folio).
    pub(crate) fn release_files_if_unused(&mut self) {
        for file in 0..self.files.len() {
            if !self.files[file].live {
                continue;
            }
            let used = self
                .mms
                .iter()
                .filter(|m| m.alive)
                .any(|m| m.vmas.values().any(|v| v.file == Some(file as FileId)));
            if !used {
                let cache = std::mem::take(&mut self.files[file].cache);
                self.files[file].live = false;
                for f in cache.into_iter().filter(|&f| f != NO_FOLIO) {
                    self.mem.put(f, 1);
                }
            }
        }
    }

    /// The page-cache folio at `index` of a file, allocating a zeroed small
    /// folio if there is none (`mm/shmem.c: shmem_get_folio_gfp(SGP_CACHE)`;
    /// the cache holds the allocation's reference).
    pub(crate) fn shmem_get_folio(&mut self, file: FileId, index: u64) -> FolioId {
        let slot = self.files[file as usize].cache[index as usize];
        if slot != NO_FOLIO {
            return slot;
        }
        let f = self.mem.alloc(0, FolioKind::Shmem { file, index });
        self.files[file as usize].cache[index as usize] = f;
        f
    }

    /// The VMA containing `vpn` in `pid`, copied.
    pub(crate) fn vma_at(&self, pid: Pid, vpn: Vpn) -> Option<Vma> {
        self.mm(pid).vma(vpn).copied()
    }

    pub(crate) fn handle(&self, h: HandleId) -> Option<&Handle> {
        self.handles.get(h.0 as usize).and_then(|h| h.as_ref())
    }
}

/// Two adjacent VMAs of one file map contiguous file offsets (always true
/// for anonymous VMAs).
fn contiguous_pgoff(a: &Vma, b: &Vma) -> bool {
    if a.file.is_none() {
        return true;
    }
    let (lo, hi) = if a.end == b.start { (a, b) } else { (b, a) };
    lo.pgoff + (lo.end - lo.start) == hi.pgoff
}
