//! The vocabulary of the model's operations: processes, pages, protections,
//! mapping kinds, GUP entry points and FOLL_* flags.
//!
//! Values are the kernel's where the kernel has one (FOLL_* bits, PROT_*),
//! so a reader can match a model call to the syscall or GUP call it mirrors.

use std::fmt;

/// Base page size (x86-64).
pub const PAGE_SIZE: u64 = 4096;
/// Pages per PMD: the order-9 THP size (`HPAGE_PMD_NR`).
pub const HPAGE_PMD_NR: u64 = 512;
/// Order of a PMD-mapped THP (`HPAGE_PMD_ORDER`).
pub const HPAGE_PMD_ORDER: u8 = 9;

/// A process of the model: 0 is the parent, forked children get the next free number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pid(pub u32);

impl Pid {
    /// The first process, the one every program starts in.
    pub const PARENT: Pid = Pid(0);
}

/// A virtual page number: a user address divided by [`PAGE_SIZE`].
pub type Vpn = u64;

/// The identity of a physical page in the model (never reused within one model).
///
/// It survives folio splits: page `p` of a THP is still page `p` after the
/// split, as its pfn is in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PageId(pub u64);

/// A GUP handle: the pages one successful GUP call returned, held until released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandleId(pub u32);

/// Protection of a mapping (`PROT_*`). x86-64 has no write-only or exec-only distinction that matters here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Prot {
    /// `PROT_NONE`
    None,
    /// `PROT_READ`
    Read,
    /// `PROT_READ | PROT_WRITE`
    ReadWrite,
}

impl Prot {
    /// `VM_READ`
    pub fn readable(self) -> bool {
        !matches!(self, Prot::None)
    }
    /// `VM_WRITE`
    pub fn writable(self) -> bool {
        matches!(self, Prot::ReadWrite)
    }
    /// The `PROT_*` bits for mmap(2)/mprotect(2).
    pub fn bits(self) -> i32 {
        match self {
            Prot::None => 0,
            Prot::Read => 1,
            Prot::ReadWrite => 3,
        }
    }
}

/// What backs a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapKind {
    /// `MAP_PRIVATE | MAP_ANONYMOUS`: anon folios, THP-eligible, COW on fork.
    AnonPrivate,
    /// `MAP_SHARED | MAP_ANONYMOUS`: a shmem object only this mapping (and its forks) see.
    AnonShared,
    /// `MAP_SHARED` of a memfd (shmem): page-cache folios, writes reach the file.
    MemfdShared,
    /// `MAP_PRIVATE` of a memfd: page-cache folios mapped read-only, writes COW to anon folios.
    MemfdPrivate,
}

impl MapKind {
    /// Backed by a shmem file (`vma_is_shmem()`).
    pub fn is_shmem(self) -> bool {
        !matches!(self, MapKind::AnonPrivate)
    }
    /// `VM_SHARED`
    pub fn is_shared(self) -> bool {
        matches!(self, MapKind::AnonShared | MapKind::MemfdShared)
    }
    /// `vma_is_anonymous()`
    pub fn is_anonymous(self) -> bool {
        matches!(self, MapKind::AnonPrivate)
    }
}

/// An madvise(2) advice the model knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Advice {
    /// `MADV_DONTNEED`: zap the range.
    DontNeed,
    /// `MADV_HUGEPAGE`: set `VM_HUGEPAGE`.
    HugePage,
    /// `MADV_NOHUGEPAGE`: set `VM_NOHUGEPAGE`.
    NoHugePage,
}

/// `/sys/kernel/mm/transparent_hugepage/enabled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ThpMode {
    /// THP for every eligible anon VMA without `VM_NOHUGEPAGE`.
    Always,
    /// THP only for VMAs with `VM_HUGEPAGE`.
    Madvise,
    /// No THP.
    Never,
}

/// How a range is touched from user space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// A load: read fault on a missing page.
    Read,
    /// A store: write fault on a missing or write-protected page.
    Write,
}

/// The GUP entry point a caller uses (`mm/gup.c`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GupApi {
    /// `get_user_pages()`: FOLL_GET|FOLL_TOUCH, slow path, caller holds mmap_lock.
    GetUserPages,
    /// `get_user_pages_fast()`: FOLL_GET, lockless walk, slow-path fallback.
    GetUserPagesFast,
    /// `get_user_pages_remote()`: FOLL_GET on another mm.
    GetUserPagesRemote,
    /// `pin_user_pages()`: FOLL_PIN, slow path.
    PinUserPages,
    /// `pin_user_pages_fast()`: FOLL_PIN, lockless walk, slow-path fallback.
    PinUserPagesFast,
    /// `pin_user_pages_remote()`: FOLL_PIN on another mm.
    PinUserPagesRemote,
}

impl GupApi {
    /// Every entry point, in a stable order.
    pub const ALL: [GupApi; 6] = [
        GupApi::GetUserPages,
        GupApi::GetUserPagesFast,
        GupApi::GetUserPagesRemote,
        GupApi::PinUserPages,
        GupApi::PinUserPagesFast,
        GupApi::PinUserPagesRemote,
    ];

    /// FOLL_PIN (as opposed to FOLL_GET).
    pub fn is_pin(self) -> bool {
        matches!(
            self,
            GupApi::PinUserPages | GupApi::PinUserPagesFast | GupApi::PinUserPagesRemote
        )
    }
    /// Operates on another process's mm (`*_remote`).
    pub fn is_remote(self) -> bool {
        matches!(
            self,
            GupApi::GetUserPagesRemote | GupApi::PinUserPagesRemote
        )
    }
    /// Tries the lockless GUP-fast walk first (`*_fast`).
    pub fn is_fast(self) -> bool {
        matches!(self, GupApi::GetUserPagesFast | GupApi::PinUserPagesFast)
    }
    /// The kernel function's name.
    pub fn name(self) -> &'static str {
        match self {
            GupApi::GetUserPages => "get_user_pages",
            GupApi::GetUserPagesFast => "get_user_pages_fast",
            GupApi::GetUserPagesRemote => "get_user_pages_remote",
            GupApi::PinUserPages => "pin_user_pages",
            GupApi::PinUserPagesFast => "pin_user_pages_fast",
            GupApi::PinUserPagesRemote => "pin_user_pages_remote",
        }
    }
    /// The entry point with this kernel name.
    pub fn from_name(name: &str) -> Option<GupApi> {
        GupApi::ALL.into_iter().find(|a| a.name() == name)
    }
}

impl fmt::Display for GupApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The FOLL_* flags a GUP caller may pass, with the kernel's bit values
/// (`include/linux/mm_types.h`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Foll(pub u32);

impl Foll {
    /// No flags: a read-only reference.
    pub const NONE: Foll = Foll(0);
    /// `FOLL_WRITE`: the caller will write to the pages.
    pub const WRITE: Foll = Foll(1 << 0);
    /// `FOLL_FORCE`: override VMA permissions like ptrace does.
    pub const FORCE: Foll = Foll(1 << 3);
    /// `FOLL_LONGTERM`: the pin may be held indefinitely (RDMA, vfio, io_uring buffers).
    pub const LONGTERM: Foll = Foll(1 << 8);
    /// Every flag the model knows, in printing order.
    pub const KNOWN: [(Foll, &'static str); 3] = [
        (Foll::WRITE, "write"),
        (Foll::LONGTERM, "longterm"),
        (Foll::FORCE, "force"),
    ];

    /// All bits of `other` are set.
    pub fn contains(self, other: Foll) -> bool {
        self.0 & other.0 == other.0
    }
    /// Union.
    pub fn union(self, other: Foll) -> Foll {
        Foll(self.0 | other.0)
    }
    /// Bits the model does not know.
    pub fn unknown_bits(self) -> u32 {
        self.0 & !(Foll::WRITE.0 | Foll::FORCE.0 | Foll::LONGTERM.0)
    }
}

impl std::ops::BitOr for Foll {
    type Output = Foll;
    fn bitor(self, rhs: Foll) -> Foll {
        self.union(rhs)
    }
}

impl fmt::Display for Foll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (flag, name) in Foll::KNOWN {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// How a GUP handle is released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Release {
    /// `put_page()` on every page of a FOLL_GET handle.
    Put,
    /// `unpin_user_pages()` on a FOLL_PIN handle.
    Unpin,
    /// `unpin_user_pages_dirty_lock(pages, n, true)` on a FOLL_PIN handle.
    UnpinDirty,
}
