//! The observation taken after every step.
//!
//! In this order:
//! 1. **Drain** this CPU's LRU folio batches, so refcounts are exact: a
//!    freshly faulted order-0 folio holds one extra reference while it sits
//!    in a per-CPU `cpu_fbatches` batch (mm/swap.c: `folio_batch_add_and_move`
//!    takes it; kernel-lab.md trap 2). `lru_add_drain()` is not exported to
//!    modules, but `madvise(MADV_DONTNEED)` reaches it from user space:
//!    `madvise_dontneed_single_vma()` → `zap_page_range_single()`, whose
//!    first statement is `lru_add_drain()` (mm/madvise.c, mm/memory.c:1922
//!    in 6.12.117; mm/memory.c:1780 in 6.1), which also drains the mlock
//!    batch (`mlock_drain_local()`). It is aimed at a dedicated one-page
//!    mapping that is never faulted, so the zap itself changes nothing.
//!    The drain is CPU-local: the runner and its children are pinned to one
//!    CPU (every page they fault is batched there) and the guest has one
//!    vCPU anyway.
//! 2. **Counters**: `stat_refresh`, then `/proc/vmstat` (`exec::vmstat`),
//!    reported as deltas since the runner's baseline.
//! 3. **Pages**: one `PINFUZZ_IOC_QUERY_RANGE` per mapping of every live
//!    process (parent first, then children in `ChildId` order; mappings in
//!    `MapId` order; the length the mapping was created with), then one
//!    `PINFUZZ_IOC_QUERY_HANDLE` per live handle in `HandleId` order.
//!
//! The result is the step's [`StepDelta`] against the previous step's
//! observation (`obs::delta`): most pages do not change from one step to the
//! next, and on a TCG guest encoding and sending every page every step cost
//! more than querying them. Two [`StepObs`] alternate (this step's and the
//! last), updated in place: their vectors and page buffers are reused from
//! step to step (spares are kept when fewer entries are needed), so a
//! steady-state observation allocates nothing.

use std::time::Instant;

use anyhow::{Context, bail};

use super::vmstat::{MODEL_COUNTERS, VmstatReader};
use crate::obs::delta::StepDelta;
use crate::obs::{Counters, HandleObs, MapObs, OpResult, PageObs, StepObs};
use crate::op::{HandleId, MapId, Proc};
use crate::uapi::{PINFUZZ_MAX_PAGES_PER_CALL, PinfuzzDev, PinfuzzPageInfo};

/// One mapping of one process to query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapTarget {
    /// The process, as the program names it.
    pub proc: Proc,
    /// Its pid for the module (0 = the runner itself).
    pub pid: i32,
    /// The mapping.
    pub map: MapId,
    /// Address of page 0.
    pub addr: u64,
    /// Pages the mapping was created with.
    pub pages: u16,
}

/// One live handle to query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandleTarget {
    /// The handle, as the program names it.
    pub handle: HandleId,
    /// The module's handle number.
    pub module: u32,
    /// Pages it holds.
    pub pages: u32,
}

/// Where one observation's time went, in ns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ObserveTimes {
    /// The LRU drain.
    pub drain_ns: u64,
    /// `stat_refresh` and `/proc/vmstat`.
    pub counters_ns: u64,
    /// The page queries (ranges and handles).
    pub queries_ns: u64,
}

/// How many entries and pages one observation may need, for reserving.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capacity {
    /// Most `MapObs` entries at once.
    pub maps: usize,
    /// Most pages of one mapping.
    pub map_pages: usize,
    /// Most `HandleObs` entries at once.
    pub handles: usize,
    /// Most pages of one handle.
    pub handle_pages: usize,
}

/// The drain page, the counter reader and the reusable observation.
#[derive(Debug)]
pub struct Observer {
    drain_page: usize,
    vmstat: VmstatReader,
    base: Counters,
    now: Counters,
    info: Vec<PinfuzzPageInfo>,
    obs: StepObs,
    /// The previous step's observation (`None` before the first).
    prev: Option<StepObs>,
    delta: StepDelta,
    spare_maps: Vec<MapObs>,
    spare_handles: Vec<HandleObs>,
}

impl Observer {
    /// Map the drain page and reserve buffers for `cap`.
    pub fn new(cap: Capacity) -> anyhow::Result<Observer> {
        // SAFETY: a fresh private anonymous page at an address the kernel
        // picks; it is never accessed, only zapped.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                reference::PAGE_SIZE as usize,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if page == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mmap the LRU drain page");
        }
        let mut spare_maps = Vec::with_capacity(cap.maps);
        for _ in 0..cap.maps {
            spare_maps.push(MapObs {
                proc: Proc::Parent,
                map: MapId(0),
                pages: Vec::with_capacity(cap.map_pages),
            });
        }
        let mut spare_handles = Vec::with_capacity(cap.handles);
        for _ in 0..cap.handles {
            spare_handles.push(HandleObs {
                handle: HandleId(0),
                pages: Vec::with_capacity(cap.handle_pages),
            });
        }
        Ok(Observer {
            drain_page: page as usize,
            vmstat: VmstatReader::open()?,
            base: [0; 9],
            now: [0; 9],
            info: Vec::with_capacity(PINFUZZ_MAX_PAGES_PER_CALL as usize),
            obs: StepObs {
                result: OpResult::Ok,
                vmstat: [0; 9],
                maps: Vec::with_capacity(cap.maps),
                handles: Vec::with_capacity(cap.handles),
            },
            prev: None,
            delta: StepDelta::default(),
            spare_maps,
            spare_handles,
        })
    }

    /// Drain this CPU's LRU batches (see the module comment).
    pub fn drain(&self) -> anyhow::Result<()> {
        // SAFETY: the drain page is ours, never accessed, and holds no Rust
        // object; MADV_DONTNEED on it only zaps (nothing) and drains.
        let rc = unsafe {
            libc::madvise(
                self.drain_page as *mut libc::c_void,
                reference::PAGE_SIZE as usize,
                libc::MADV_DONTNEED,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .context("madvise(MADV_DONTNEED) on the LRU drain page");
        }
        Ok(())
    }

    /// Take the counter baseline the observations are deltas from.
    pub fn baseline(&mut self) -> anyhow::Result<()> {
        self.drain()?;
        self.vmstat.read(&MODEL_COUNTERS, &mut self.base)
    }

    /// The address of the drain page (never part of the arena).
    pub fn drain_page(&self) -> usize {
        self.drain_page
    }

    /// Observe everything after a step that returned `result`; returns
    /// the observation as a delta from the previous step's.
    pub fn observe(
        &mut self,
        dev: &PinfuzzDev,
        result: OpResult,
        maps: &[MapTarget],
        handles: &[HandleTarget],
    ) -> anyhow::Result<(&StepDelta, ObserveTimes)> {
        let t0 = Instant::now();
        self.drain()?;
        let t1 = Instant::now();
        self.vmstat.read(&MODEL_COUNTERS, &mut self.now)?;
        let t2 = Instant::now();
        self.obs.result = result;
        for i in 0..9 {
            self.obs.vmstat[i] = self.now[i].wrapping_sub(self.base[i]);
        }

        resize_pool(&mut self.obs.maps, &mut self.spare_maps, maps.len(), || {
            MapObs {
                proc: Proc::Parent,
                map: MapId(0),
                pages: Vec::new(),
            }
        });
        for (target, entry) in maps.iter().zip(self.obs.maps.iter_mut()) {
            dev.query_range(
                target.pid,
                target.addr,
                usize::from(target.pages),
                &mut self.info,
            )?;
            entry.proc = target.proc;
            entry.map = target.map;
            fill_pages(&self.info, &mut entry.pages)
                .with_context(|| format!("{:?} of {:?}", target.map, target.proc))?;
        }

        resize_pool(
            &mut self.obs.handles,
            &mut self.spare_handles,
            handles.len(),
            || HandleObs {
                handle: HandleId(0),
                pages: Vec::new(),
            },
        );
        for (target, entry) in handles.iter().zip(self.obs.handles.iter_mut()) {
            dev.query_handle(target.module, target.pages as usize, &mut self.info)?;
            entry.handle = target.handle;
            fill_pages(&self.info, &mut entry.pages)
                .with_context(|| format!("handle {:?}", target.handle))?;
        }
        let times = ObserveTimes {
            drain_ns: (t1 - t0).as_nanos() as u64,
            counters_ns: (t2 - t1).as_nanos() as u64,
            queries_ns: t2.elapsed().as_nanos() as u64,
        };
        self.delta.diff(self.prev.as_ref(), &self.obs);
        // This observation becomes the next one's base; the older one is
        // overwritten by the next step.
        let empty = StepObs {
            result: OpResult::Ok,
            vmstat: [0; 9],
            maps: Vec::new(),
            handles: Vec::new(),
        };
        match self.prev.as_mut() {
            Some(prev) => std::mem::swap(prev, &mut self.obs),
            None => self.prev = Some(std::mem::replace(&mut self.obs, empty)),
        }
        Ok((&self.delta, times))
    }
}

/// Make `live` exactly `n` long, moving entries to and from `spare` so
/// their buffers survive; `fresh` is only called when both run dry.
fn resize_pool<T>(live: &mut Vec<T>, spare: &mut Vec<T>, n: usize, fresh: impl Fn() -> T) {
    while live.len() > n {
        spare.push(live.pop().expect("non-empty"));
    }
    while live.len() < n {
        live.push(spare.pop().unwrap_or_else(&fresh));
    }
}

/// Convert the module's page records into observations, in place.
fn fill_pages(info: &[PinfuzzPageInfo], out: &mut Vec<PageObs>) -> anyhow::Result<()> {
    out.clear();
    for (i, p) in info.iter().enumerate() {
        let Ok(order) = u8::try_from(p.order) else {
            bail!("page {i}: folio order {} does not fit a u8", p.order);
        };
        out.push(PageObs {
            key: p.pfn,
            head: p.head_pfn,
            refcount: p.refcount,
            mapcount: p.mapcount,
            folio_mapcount: p.folio_mapcount,
            pincount: p.pincount,
            order,
            flags: p.flags,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_keeps_page_buffers_across_steps() {
        let mut live: Vec<Vec<u8>> = Vec::new();
        let mut spare = vec![Vec::with_capacity(100), Vec::with_capacity(100)];
        resize_pool(&mut live, &mut spare, 2, Vec::new);
        assert!(live.iter().all(|v| v.capacity() == 100));
        resize_pool(&mut live, &mut spare, 0, Vec::new);
        assert_eq!(spare.len(), 2);
        resize_pool(&mut live, &mut spare, 3, Vec::new);
        assert_eq!(live.iter().filter(|v| v.capacity() == 100).count(), 2);
    }

    #[test]
    fn page_records_convert_field_by_field() {
        let info = [PinfuzzPageInfo {
            pfn: 0x1234,
            head_pfn: 0x1200,
            refcount: 513,
            mapcount: 1,
            folio_mapcount: 1,
            pincount: 1,
            order: 9,
            flags: 0x187,
        }];
        let mut out = Vec::new();
        fill_pages(&info, &mut out).unwrap();
        assert_eq!(
            out,
            vec![PageObs {
                key: 0x1234,
                head: 0x1200,
                refcount: 513,
                mapcount: 1,
                folio_mapcount: 1,
                pincount: 1,
                order: 9,
                flags: 0x187,
            }]
        );
        let bad = [PinfuzzPageInfo {
            order: 300,
            ..info[0]
        }];
        assert!(fill_pages(&bad, &mut out).is_err());
    }
}
