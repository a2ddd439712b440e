//! The `/proc/vmstat` counters the model predicts.
//!
//! `nr_foll_pin_acquired` / `nr_foll_pin_released` are node stats counted in
//! pages (`mm/gup.c: try_grab_folio`, `gup_put_folio`); the `thp_*` items are
//! vm events (`include/linux/vm_event_item.h`). All are cumulative: the model
//! starts at zero and the kernel side reports deltas from a baseline.

/// Cumulative counters, in the order [`VmStat::NAMES`] lists them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VmStat {
    /// `nr_foll_pin_acquired`: pages pinned (FOLL_PIN), zero page excluded.
    pub nr_foll_pin_acquired: u64,
    /// `nr_foll_pin_released`: pages unpinned.
    pub nr_foll_pin_released: u64,
    /// `thp_fault_alloc`: PMD THPs allocated at fault time.
    pub thp_fault_alloc: u64,
    /// `thp_fault_fallback`: THP faults that fell back to small pages.
    pub thp_fault_fallback: u64,
    /// `thp_split_pmd`: PMD mappings replaced by a page table of PTEs.
    pub thp_split_pmd: u64,
    /// `thp_split_page`: PMD-order folios split into small folios.
    pub thp_split_page: u64,
    /// `thp_split_page_failed`: PMD-order folio splits that failed.
    pub thp_split_page_failed: u64,
    /// `thp_deferred_split_page`: PMD-order folios queued for deferred split because partially unmapped.
    pub thp_deferred_split_page: u64,
    /// `thp_zero_page_alloc`: huge zero folio allocations.
    pub thp_zero_page_alloc: u64,
}

impl VmStat {
    /// `/proc/vmstat` names, in field order.
    pub const NAMES: [&'static str; 9] = [
        "nr_foll_pin_acquired",
        "nr_foll_pin_released",
        "thp_fault_alloc",
        "thp_fault_fallback",
        "thp_split_pmd",
        "thp_split_page",
        "thp_split_page_failed",
        "thp_deferred_split_page",
        "thp_zero_page_alloc",
    ];

    /// The counters as an array, in [`VmStat::NAMES`] order.
    pub fn to_array(&self) -> [u64; 9] {
        [
            self.nr_foll_pin_acquired,
            self.nr_foll_pin_released,
            self.thp_fault_alloc,
            self.thp_fault_fallback,
            self.thp_split_pmd,
            self.thp_split_page,
            self.thp_split_page_failed,
            self.thp_deferred_split_page,
            self.thp_zero_page_alloc,
        ]
    }

    /// The counters from an array in [`VmStat::NAMES`] order.
    pub fn from_array(a: [u64; 9]) -> VmStat {
        VmStat {
            nr_foll_pin_acquired: a[0],
            nr_foll_pin_released: a[1],
            thp_fault_alloc: a[2],
            thp_fault_fallback: a[3],
            thp_split_pmd: a[4],
            thp_split_page: a[5],
            thp_split_page_failed: a[6],
            thp_deferred_split_page: a[7],
            thp_zero_page_alloc: a[8],
        }
    }

    /// Set one counter by its `/proc/vmstat` name; false for an unknown name.
    pub fn set_by_name(&mut self, name: &str, value: u64) -> bool {
        match VmStat::NAMES.iter().position(|n| *n == name) {
            Some(i) => {
                let mut a = self.to_array();
                a[i] = value;
                *self = VmStat::from_array(a);
                true
            }
            None => false,
        }
    }

    /// Counter-wise `self - base` (wrapping: the kernel's counters are unsigned longs).
    pub fn delta_since(&self, base: &VmStat) -> VmStat {
        let (a, b) = (self.to_array(), base.to_array());
        VmStat::from_array(std::array::from_fn(|i| a[i].wrapping_sub(b[i])))
    }

    /// Outstanding pins: acquired - released.
    pub fn outstanding_pins(&self) -> i64 {
        self.nr_foll_pin_acquired as i64 - self.nr_foll_pin_released as i64
    }
}
