//! Kernel profiles: the differences between kernel versions the model knows,
//! as data.
//!
//! One model serves every kernel; a [`Profile`] switches the rules that
//! changed between releases. Add a kernel by adding a constant here, not by
//! copying code.

/// The rules of one kernel version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Profile {
    /// Short name used in program headers and reports (`"6.12"`).
    pub name: &'static str,
    /// Major and minor version.
    pub version: (u32, u32),
    /// Smallest folio order with an exact `_pincount`; smaller folios use
    /// GUP_PIN_COUNTING_BIAS. 1 since 5.18 (`include/linux/mm.h:
    /// folio_has_pincount`), 2 before.
    pub pincount_min_order: u8,
    /// R/O FOLL_LONGTERM pins of non-anon pages in COW mappings unshare
    /// (`mm/internal.h: gup_must_unshare`, non-anon branch; not in 6.1).
    pub unshare_non_anon_longterm: bool,
    /// Splitting an anon THP maps its never-written pages to the shared zero
    /// page (`mm/migrate.c: try_to_map_unused_to_zeropage`, 6.12).
    pub split_maps_unused_to_zero_page: bool,
    /// A THP is queued for deferred split (`thp_deferred_split_page`) as
    /// soon as any of its pages loses its last mapping, one PTE at a time
    /// (6.1: `page_remove_rmap` → `deferred_split_huge_page`), instead of
    /// only when a removal leaves it partially mapped (6.12).
    pub deferred_split_on_any_unmap: bool,
    /// `split_huge_pages` finds folios with `follow_page()`, which does not
    /// follow PROT_NONE entries without FOLL_FORCE (6.1), instead of
    /// `folio_walk_start()` (6.12).
    pub split_skips_prot_none: bool,
    /// A write or unshare fault may reuse a non-exclusive page of a large
    /// anon folio when the folio's refcount is 1 (6.1: `do_wp_page`);
    /// 6.12's `wp_can_reuse_anon_folio` never reuses a large folio.
    pub wp_reuses_large_anon: bool,
    /// mprotect() dropping write from a private anonymous VMA that has no
    /// anon_vma yet also drops `VM_ACCOUNT` (`mm/mprotect.c:
    /// mprotect_fixup`, since 6.7), so it can merge again with a neighbour
    /// that was never writable; 6.1 keeps the flag.
    pub mprotect_unaccounts_unfaulted_anon: bool,
}

impl Profile {
    /// Linux 6.12 as shipped by Debian (linux-image-6.12.*+deb12).
    pub const LINUX_6_12: Profile = Profile {
        name: "6.12",
        version: (6, 12),
        pincount_min_order: 1,
        unshare_non_anon_longterm: true,
        split_maps_unused_to_zero_page: true,
        deferred_split_on_any_unmap: false,
        split_skips_prot_none: false,
        wp_reuses_large_anon: false,
        mprotect_unaccounts_unfaulted_anon: true,
    };

    /// Linux 6.1 as shipped by Debian (linux-image-6.1.0-*).
    pub const LINUX_6_1: Profile = Profile {
        name: "6.1",
        version: (6, 1),
        pincount_min_order: 1,
        unshare_non_anon_longterm: false,
        split_maps_unused_to_zero_page: false,
        deferred_split_on_any_unmap: true,
        split_skips_prot_none: true,
        wp_reuses_large_anon: true,
        mprotect_unaccounts_unfaulted_anon: false,
    };

    /// Every profile, newest first.
    pub const ALL: [Profile; 2] = [Profile::LINUX_6_12, Profile::LINUX_6_1];

    /// The profile for a short name (`"6.12"`) or a full kernel release
    /// (`"6.12.117+deb12-amd64"`): the first profile whose major.minor matches.
    pub fn find(name: &str) -> Option<Profile> {
        let mut parts = name.split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse::<u32>().ok()?;
        let minor = parts.next()?.parse::<u32>().ok()?;
        Profile::ALL
            .into_iter()
            .find(|p| p.version == (major, minor))
    }
}

impl Default for Profile {
    fn default() -> Profile {
        Profile::LINUX_6_12
    }
}
