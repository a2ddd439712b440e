//! The executor's record of one process's arena mappings, for the touch precheck.
//!
//! A `Touch` must stop *before* a page whose access would raise SIGSEGV and
//! report `OpResult::Segv` instead of taking the signal. The executor
//! therefore records, per process, which arena pages are mapped and with
//! which protection, from the syscalls it made and their results: a
//! successful `mmap`/`munmap`/`mprotect` is applied to the record; after a
//! failed `munmap`/`mprotect` the record is re-read from `/proc/<pid>/maps`,
//! because the kernel may have changed a prefix of the range before failing
//! (`do_mprotect_pkey()` returns ENOMEM at the first hole after updating the
//! VMAs before it). A fork copies the parent's record.
//!
//! SIGBUS is not modelled: the executor sizes every memfd to its mapping, and
//! anonymous shared mappings are sized by the kernel, so no page of a mapping
//! lies beyond the end of its file. Any fault the record did not predict is
//! reported as a crash by the signal handler (`exec::fault`).

use anyhow::{Context, bail};
use reference::{Access, Prot};

/// Mapped page ranges `[start, end)` (virtual page numbers) with their
/// protection, sorted and disjoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vmas {
    ranges: Vec<(u64, u64, Prot)>,
}

impl Vmas {
    /// The recorded ranges, in address order.
    #[cfg(test)]
    pub fn ranges(&self) -> &[(u64, u64, Prot)] {
        &self.ranges
    }

    /// Record a successful `mmap` of `[start, end)`.
    pub fn map(&mut self, start: u64, end: u64, prot: Prot) {
        self.unmap(start, end);
        let at = self.ranges.partition_point(|r| r.0 < start);
        self.ranges.insert(at, (start, end, prot));
    }

    /// Record a successful `munmap` of `[start, end)` (holes allowed).
    pub fn unmap(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        for &(s, e, p) in &self.ranges {
            if e <= start || s >= end {
                out.push((s, e, p));
                continue;
            }
            if s < start {
                out.push((s, start, p));
            }
            if e > end {
                out.push((end, e, p));
            }
        }
        self.ranges = out;
    }

    /// Record a successful `mprotect` of `[start, end)`: the mapped parts
    /// take `prot` (a successful mprotect has no holes, but the record does
    /// not rely on it).
    pub fn protect(&mut self, start: u64, end: u64, prot: Prot) {
        if start >= end {
            return;
        }
        let mut out = Vec::with_capacity(self.ranges.len() + 2);
        for &(s, e, p) in &self.ranges {
            if e <= start || s >= end {
                out.push((s, e, p));
                continue;
            }
            if s < start {
                out.push((s, start, p));
            }
            out.push((s.max(start), e.min(end), prot));
            if e > end {
                out.push((end, e, p));
            }
        }
        self.ranges = out;
    }

    /// The protection of page `vpn`, or `None` if it is not mapped.
    pub fn prot_at(&self, vpn: u64) -> Option<Prot> {
        let at = self.ranges.partition_point(|r| r.1 <= vpn);
        self.ranges.get(at).filter(|r| r.0 <= vpn).map(|r| r.2)
    }

    /// The first page of `[start, end)` whose `access` would raise SIGSEGV
    /// (unmapped, `PROT_NONE`, or a store to a read-only page), if any.
    pub fn first_fault(&self, start: u64, end: u64, access: Access) -> Option<u64> {
        (start..end).find(|&vpn| match self.prot_at(vpn) {
            None => true,
            Some(prot) => match access {
                Access::Read => !prot.readable(),
                Access::Write => !prot.writable(),
            },
        })
    }

    /// The record for `[lo, hi)` (page numbers) from the text of
    /// `/proc/<pid>/maps`; mappings outside it are ignored and ranges are
    /// clipped to it.
    pub fn from_proc_maps(text: &str, lo: u64, hi: u64) -> anyhow::Result<Vmas> {
        let mut ranges = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let parse = || -> anyhow::Result<Option<(u64, u64, Prot)>> {
                let mut fields = line.split_ascii_whitespace();
                let (Some(span), Some(perms)) = (fields.next(), fields.next()) else {
                    bail!("expected `start-end perms ...`");
                };
                let (s, e) = span.split_once('-').context("address range without '-'")?;
                let s = u64::from_str_radix(s, 16).context("start address")? / reference::PAGE_SIZE;
                let e = u64::from_str_radix(e, 16).context("end address")? / reference::PAGE_SIZE;
                let (s, e) = (s.max(lo), e.min(hi));
                if s >= e {
                    return Ok(None);
                }
                let prot = match perms.as_bytes() {
                    [b'r', b'w', ..] => Prot::ReadWrite,
                    [b'r', b'-', ..] => Prot::Read,
                    [b'-', b'-', ..] => Prot::None,
                    _ => bail!("permissions {perms:?} are none of ---, r--, rw-"),
                };
                Ok(Some((s, e, prot)))
            };
            match parse().with_context(|| format!("maps line {}: {line:?}", i + 1))? {
                Some(r) => ranges.push(r),
                None => continue,
            }
        }
        ranges.sort_by_key(|r| r.0);
        Ok(Vmas { ranges })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(vmas: &Vmas) -> Vec<(u64, u64, Prot)> {
        vmas.ranges().to_vec()
    }

    #[test]
    fn touch_stops_at_the_first_unmapped_or_forbidden_page() {
        let mut v = Vmas::default();
        v.map(100, 110, Prot::ReadWrite);
        assert_eq!(v.first_fault(100, 110, Access::Write), None);
        // Past the end of the mapping, into the slot's gap.
        assert_eq!(v.first_fault(105, 115, Access::Read), Some(110));
        v.protect(103, 105, Prot::Read);
        assert_eq!(v.first_fault(100, 110, Access::Read), None);
        assert_eq!(v.first_fault(100, 110, Access::Write), Some(103));
        v.protect(108, 109, Prot::None);
        assert_eq!(v.first_fault(105, 110, Access::Read), Some(108));
        v.unmap(101, 102);
        assert_eq!(v.first_fault(100, 110, Access::Read), Some(101));
        assert_eq!(v.first_fault(100, 101, Access::Write), None);
        // An empty range never faults.
        assert_eq!(v.first_fault(101, 101, Access::Read), None);
    }

    #[test]
    fn ranges_split_and_stay_sorted() {
        let mut v = Vmas::default();
        v.map(200, 300, Prot::ReadWrite);
        v.map(10, 20, Prot::Read);
        v.protect(250, 260, Prot::None);
        v.unmap(0, 15);
        assert_eq!(
            rw(&v),
            vec![
                (15, 20, Prot::Read),
                (200, 250, Prot::ReadWrite),
                (250, 260, Prot::None),
                (260, 300, Prot::ReadWrite),
            ]
        );
        // mprotect across a hole changes only mapped pages.
        v.protect(18, 210, Prot::Read);
        assert_eq!(v.prot_at(17), Some(Prot::Read));
        assert_eq!(v.prot_at(100), None);
        assert_eq!(v.prot_at(205), Some(Prot::Read));
        assert_eq!(v.prot_at(215), Some(Prot::ReadWrite));
        v.unmap(0, 1000);
        assert!(v.ranges().is_empty());
    }

    #[test]
    fn a_fork_copy_is_independent() {
        let mut parent = Vmas::default();
        parent.map(0, 4, Prot::ReadWrite);
        let mut child = parent.clone();
        child.unmap(0, 4);
        assert_eq!(parent.prot_at(2), Some(Prot::ReadWrite));
        assert_eq!(child.prot_at(2), None);
    }

    #[test]
    fn proc_maps_resync_clips_to_the_arena() {
        let text = "\
1ffffffff000-200000002000 rw-p 00000000 00:00 0
200000003000-200000004000 ---p 00000000 00:00 0
200000004000-200000006000 r--s 00000000 00:01 1234 /memfd:pinfuzz (deleted)
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
";
        let lo = 0x2000_0000_0000 / 4096;
        let hi = lo + 16 * 2048;
        let v = Vmas::from_proc_maps(text, lo, hi).unwrap();
        assert_eq!(
            rw(&v),
            vec![
                (lo, lo + 2, Prot::ReadWrite),
                (lo + 3, lo + 4, Prot::None),
                (lo + 4, lo + 6, Prot::Read),
            ]
        );
        let err =
            Vmas::from_proc_maps("200000003000-200000004000 -w-p 0 0:0 0\n", lo, hi).unwrap_err();
        assert!(format!("{err:#}").contains("maps line 1"), "{err:#}");
    }
}
