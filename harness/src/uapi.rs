//! The Rust mirror of the helper module's user API (`kmod/pinfuzz.h`).
//!
//! This is the only place that knows the module's structure layouts and
//! ioctl numbers. Every `struct pinfuzz_*` has a `#[repr(C)]` twin here with
//! compile-time size and offset assertions; `harness/tests/exec_uapi_layout.rs`
//! additionally compiles the C header with gcc and compares every size,
//! offset, constant and ioctl number against this file. [`PinfuzzDev`] wraps
//! the ioctls in safe methods: the only `unsafe` is the `ioctl(2)` call
//! itself, each with its `// SAFETY:` argument. Errors name the ioctl, the
//! device and the request's fields.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::mem::{offset_of, size_of};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::errno::Errno;

/// `PINFUZZ_ABI_VERSION`: the ABI this mirror was written for.
pub const PINFUZZ_ABI_VERSION: u32 = 1;

/// `PINFUZZ_MAX_PAGES_PER_CALL`: most pages in one GUP or query call.
pub const PINFUZZ_MAX_PAGES_PER_CALL: u64 = 1024;
/// `PINFUZZ_MAX_PAGES_HELD`: most pages held by one open file.
pub const PINFUZZ_MAX_PAGES_HELD: u64 = 16384;
/// `PINFUZZ_MAX_HANDLES`: most live handles of one open file.
pub const PINFUZZ_MAX_HANDLES: u64 = 1024;
/// `PINFUZZ_MAX_PAGES_HELD_TOTAL`: most pages held by the whole module.
pub const PINFUZZ_MAX_PAGES_HELD_TOTAL: u64 = 65536;

/// `PINFUZZ_API_GET_USER_PAGES`: `get_user_pages()`, FOLL_GET, under `mmap_read_lock`.
pub const PINFUZZ_API_GET_USER_PAGES: u32 = 1;
/// `PINFUZZ_API_GET_USER_PAGES_FAST`: `get_user_pages_fast()`, FOLL_GET, no lock.
pub const PINFUZZ_API_GET_USER_PAGES_FAST: u32 = 2;
/// `PINFUZZ_API_PIN_USER_PAGES`: `pin_user_pages()`, FOLL_PIN, under `mmap_read_lock`.
pub const PINFUZZ_API_PIN_USER_PAGES: u32 = 3;
/// `PINFUZZ_API_PIN_USER_PAGES_FAST`: `pin_user_pages_fast()`, FOLL_PIN, no lock.
pub const PINFUZZ_API_PIN_USER_PAGES_FAST: u32 = 4;
/// `PINFUZZ_API_PIN_USER_PAGES_REMOTE`: `pin_user_pages_remote()` on pid's mm.
pub const PINFUZZ_API_PIN_USER_PAGES_REMOTE: u32 = 5;
/// `PINFUZZ_API_GET_USER_PAGES_REMOTE`: `get_user_pages_remote()` on pid's mm.
pub const PINFUZZ_API_GET_USER_PAGES_REMOTE: u32 = 6;

/// `PINFUZZ_FOLL_WRITE` (6.12's `FOLL_WRITE`).
pub const PINFUZZ_FOLL_WRITE: u32 = 1 << 0;
/// `PINFUZZ_FOLL_FORCE` (6.12's `FOLL_FORCE`).
pub const PINFUZZ_FOLL_FORCE: u32 = 1 << 3;
/// `PINFUZZ_FOLL_LONGTERM` (6.12's `FOLL_LONGTERM`).
pub const PINFUZZ_FOLL_LONGTERM: u32 = 1 << 8;

/// `PINFUZZ_RELEASE_DIRTY`: unpin with `unpin_user_pages_dirty_lock(.., true)`.
pub const PINFUZZ_RELEASE_DIRTY: u32 = 1 << 0;

/// `PINFUZZ_PAGE_PRESENT`: a page is mapped at the address / held by the handle.
pub const PINFUZZ_PAGE_PRESENT: u32 = 1 << 0;
/// `PINFUZZ_PAGE_ANON`: `folio_test_anon()`.
pub const PINFUZZ_PAGE_ANON: u32 = 1 << 1;
/// `PINFUZZ_PAGE_ANON_EXCLUSIVE`: `PageAnonExclusive(page)`.
pub const PINFUZZ_PAGE_ANON_EXCLUSIVE: u32 = 1 << 2;
/// `PINFUZZ_PAGE_ZERO`: the shared zero page.
pub const PINFUZZ_PAGE_ZERO: u32 = 1 << 3;
/// `PINFUZZ_PAGE_HUGE_ZERO`: a page of the huge zero folio.
pub const PINFUZZ_PAGE_HUGE_ZERO: u32 = 1 << 4;
/// `PINFUZZ_PAGE_LRU`: `folio_test_lru()`.
pub const PINFUZZ_PAGE_LRU: u32 = 1 << 5;
/// `PINFUZZ_PAGE_DIRTY`: `folio_test_dirty()`.
pub const PINFUZZ_PAGE_DIRTY: u32 = 1 << 6;
/// `PINFUZZ_PAGE_MAYBE_DMA_PINNED`: `folio_maybe_dma_pinned()`.
pub const PINFUZZ_PAGE_MAYBE_DMA_PINNED: u32 = 1 << 7;
/// `PINFUZZ_PAGE_LARGE`: `folio_test_large()`.
pub const PINFUZZ_PAGE_LARGE: u32 = 1 << 8;
/// `PINFUZZ_PAGE_SWAPCACHE`: `folio_test_swapcache()`.
pub const PINFUZZ_PAGE_SWAPCACHE: u32 = 1 << 9;

/// `PINFUZZ_FAULT_NONE`: the module behaves.
pub const PINFUZZ_FAULT_NONE: u32 = 0;
/// `PINFUZZ_FAULT_PUT_FOR_UNPIN`: pins are released with `put_page()`.
pub const PINFUZZ_FAULT_PUT_FOR_UNPIN: u32 = 1;
/// `PINFUZZ_FAULT_LEAK_PIN`: pins are never released.
pub const PINFUZZ_FAULT_LEAK_PIN: u32 = 2;
/// `PINFUZZ_FAULT_DOUBLE_UNPIN`: every page is unpinned twice.
pub const PINFUZZ_FAULT_DOUBLE_UNPIN: u32 = 3;
/// `PINFUZZ_FAULT_GET_FOR_PIN`: FOLL_GET is taken when FOLL_PIN was asked.
pub const PINFUZZ_FAULT_GET_FOR_PIN: u32 = 4;
/// `PINFUZZ_FAULT_UNPIN_WRONG_PAGE`: page `min(i+1, n-1)` is unpinned for page `i`.
pub const PINFUZZ_FAULT_UNPIN_WRONG_PAGE: u32 = 5;
/// `PINFUZZ_FAULT_MAX`: the highest fault mode.
pub const PINFUZZ_FAULT_MAX: u32 = 5;

/// `PINFUZZ_IOC_MAGIC`: the ioctl type byte.
pub const PINFUZZ_IOC_MAGIC: u8 = 0xb7;

/// `struct pinfuzz_gup`: argument of [`PINFUZZ_IOC_GUP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PinfuzzGup {
    /// In: page-aligned user address.
    pub addr: u64,
    /// In: 1..=[`PINFUZZ_MAX_PAGES_PER_CALL`].
    pub nr_pages: u64,
    /// In: `PINFUZZ_API_*`.
    pub api: u32,
    /// In: `PINFUZZ_FOLL_*`.
    pub gup_flags: u32,
    /// In: target pid for the `*_REMOTE` entry points (0 = caller), else 0.
    pub pid: i32,
    /// In: must be 0.
    pub reserved0: u32,
    /// Out: the entry point's return value (pages, or a negative errno).
    pub ret: i64,
    /// Out: the handle (> 0) if `ret > 0`, else 0.
    pub handle: u32,
    /// Out: 0.
    pub reserved1: u32,
}

/// `struct pinfuzz_release`: argument of [`PINFUZZ_IOC_RELEASE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PinfuzzRelease {
    /// In: the handle.
    pub handle: u32,
    /// In: `PINFUZZ_RELEASE_*`.
    pub flags: u32,
}

/// `struct pinfuzz_page_info`: one page as the kernel sees it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PinfuzzPageInfo {
    /// Page frame number.
    pub pfn: u64,
    /// Pfn of the folio's first page.
    pub head_pfn: u64,
    /// `folio_ref_count()` (without the module's own lookup references).
    pub refcount: i32,
    /// Precise mapcount of the page.
    pub mapcount: i32,
    /// `folio_mapcount()`.
    pub folio_mapcount: i32,
    /// `_pincount` of a large folio, 0 for a small one.
    pub pincount: i32,
    /// Folio order.
    pub order: u32,
    /// `PINFUZZ_PAGE_*`.
    pub flags: u32,
}

/// `struct pinfuzz_query`: argument of [`PINFUZZ_IOC_QUERY_RANGE`] and
/// [`PINFUZZ_IOC_QUERY_HANDLE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PinfuzzQuery {
    /// In: range start, page aligned (0 for a handle query).
    pub addr: u64,
    /// In: 1..=[`PINFUZZ_MAX_PAGES_PER_CALL`].
    pub nr_pages: u64,
    /// In: user pointer to `nr_pages` [`PinfuzzPageInfo`].
    pub info_ptr: u64,
    /// In: pid of a range query (0 = caller), 0 for a handle query.
    pub pid: i32,
    /// In: handle of a handle query, 0 for a range query.
    pub handle: u32,
    /// In: must be 0.
    pub flags: u32,
    /// In: must be 0.
    pub reserved: u32,
}

/// `struct pinfuzz_status`: result of [`PINFUZZ_IOC_STATUS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PinfuzzStatus {
    /// `PINFUZZ_ABI_VERSION` of the loaded module.
    pub abi_version: u32,
    /// `PINFUZZ_FAULT_*` the module was loaded with.
    pub fault: u32,
    /// Live handles of this file.
    pub handles: u64,
    /// FOLL_GET references held by this file.
    pub pages_got: u64,
    /// FOLL_PIN pins held by this file.
    pub pages_pinned: u64,
    /// References held by all open files.
    pub pages_held_total: u64,
}

// Layouts, checked at compile time. The C side is checked by
// harness/tests/exec_uapi_layout.rs, which compiles kmod/pinfuzz.h.
const _: () = {
    assert!(size_of::<PinfuzzGup>() == 48);
    assert!(offset_of!(PinfuzzGup, addr) == 0);
    assert!(offset_of!(PinfuzzGup, nr_pages) == 8);
    assert!(offset_of!(PinfuzzGup, api) == 16);
    assert!(offset_of!(PinfuzzGup, gup_flags) == 20);
    assert!(offset_of!(PinfuzzGup, pid) == 24);
    assert!(offset_of!(PinfuzzGup, reserved0) == 28);
    assert!(offset_of!(PinfuzzGup, ret) == 32);
    assert!(offset_of!(PinfuzzGup, handle) == 40);
    assert!(offset_of!(PinfuzzGup, reserved1) == 44);

    assert!(size_of::<PinfuzzRelease>() == 8);
    assert!(offset_of!(PinfuzzRelease, handle) == 0);
    assert!(offset_of!(PinfuzzRelease, flags) == 4);

    assert!(size_of::<PinfuzzPageInfo>() == 40);
    assert!(offset_of!(PinfuzzPageInfo, pfn) == 0);
    assert!(offset_of!(PinfuzzPageInfo, head_pfn) == 8);
    assert!(offset_of!(PinfuzzPageInfo, refcount) == 16);
    assert!(offset_of!(PinfuzzPageInfo, mapcount) == 20);
    assert!(offset_of!(PinfuzzPageInfo, folio_mapcount) == 24);
    assert!(offset_of!(PinfuzzPageInfo, pincount) == 28);
    assert!(offset_of!(PinfuzzPageInfo, order) == 32);
    assert!(offset_of!(PinfuzzPageInfo, flags) == 36);

    assert!(size_of::<PinfuzzQuery>() == 40);
    assert!(offset_of!(PinfuzzQuery, addr) == 0);
    assert!(offset_of!(PinfuzzQuery, nr_pages) == 8);
    assert!(offset_of!(PinfuzzQuery, info_ptr) == 16);
    assert!(offset_of!(PinfuzzQuery, pid) == 24);
    assert!(offset_of!(PinfuzzQuery, handle) == 28);
    assert!(offset_of!(PinfuzzQuery, flags) == 32);
    assert!(offset_of!(PinfuzzQuery, reserved) == 36);

    assert!(size_of::<PinfuzzStatus>() == 40);
    assert!(offset_of!(PinfuzzStatus, abi_version) == 0);
    assert!(offset_of!(PinfuzzStatus, fault) == 4);
    assert!(offset_of!(PinfuzzStatus, handles) == 8);
    assert!(offset_of!(PinfuzzStatus, pages_got) == 16);
    assert!(offset_of!(PinfuzzStatus, pages_pinned) == 24);
    assert!(offset_of!(PinfuzzStatus, pages_held_total) == 32);
};

/// The `ioctl(2)` request type of this libc (`c_ulong` on glibc, `c_int` on musl).
pub type IoctlRequest = nix::sys::ioctl::ioctl_num_type;

/// `PINFUZZ_IOC_GUP = _IOWR(0xb7, 1, struct pinfuzz_gup)`.
pub const PINFUZZ_IOC_GUP: IoctlRequest =
    nix::request_code_readwrite!(PINFUZZ_IOC_MAGIC, 1, size_of::<PinfuzzGup>());
/// `PINFUZZ_IOC_RELEASE = _IOW(0xb7, 2, struct pinfuzz_release)`.
pub const PINFUZZ_IOC_RELEASE: IoctlRequest =
    nix::request_code_write!(PINFUZZ_IOC_MAGIC, 2, size_of::<PinfuzzRelease>());
/// `PINFUZZ_IOC_QUERY_RANGE = _IOW(0xb7, 3, struct pinfuzz_query)`.
pub const PINFUZZ_IOC_QUERY_RANGE: IoctlRequest =
    nix::request_code_write!(PINFUZZ_IOC_MAGIC, 3, size_of::<PinfuzzQuery>());
/// `PINFUZZ_IOC_QUERY_HANDLE = _IOW(0xb7, 4, struct pinfuzz_query)`.
pub const PINFUZZ_IOC_QUERY_HANDLE: IoctlRequest =
    nix::request_code_write!(PINFUZZ_IOC_MAGIC, 4, size_of::<PinfuzzQuery>());
/// `PINFUZZ_IOC_STATUS = _IOR(0xb7, 5, struct pinfuzz_status)`.
pub const PINFUZZ_IOC_STATUS: IoctlRequest =
    nix::request_code_read!(PINFUZZ_IOC_MAGIC, 5, size_of::<PinfuzzStatus>());

/// An ioctl request number as a u64, whatever the libc's request type.
#[allow(clippy::unnecessary_cast, reason = "c_ulong on glibc, c_int on musl")]
const fn request_value(request: IoctlRequest) -> u64 {
    request as u64
}

/// Every `#define` of `kmod/pinfuzz.h` with a numeric value, by its C name
/// (the include guard aside), for the layout test that compares them with
/// the C compiler's values.
pub const HEADER_CONSTANTS: &[(&str, u64)] = &[
    ("PINFUZZ_ABI_VERSION", PINFUZZ_ABI_VERSION as u64),
    ("PINFUZZ_MAX_PAGES_PER_CALL", PINFUZZ_MAX_PAGES_PER_CALL),
    ("PINFUZZ_MAX_PAGES_HELD", PINFUZZ_MAX_PAGES_HELD),
    ("PINFUZZ_MAX_HANDLES", PINFUZZ_MAX_HANDLES),
    ("PINFUZZ_MAX_PAGES_HELD_TOTAL", PINFUZZ_MAX_PAGES_HELD_TOTAL),
    (
        "PINFUZZ_API_GET_USER_PAGES",
        PINFUZZ_API_GET_USER_PAGES as u64,
    ),
    (
        "PINFUZZ_API_GET_USER_PAGES_FAST",
        PINFUZZ_API_GET_USER_PAGES_FAST as u64,
    ),
    (
        "PINFUZZ_API_PIN_USER_PAGES",
        PINFUZZ_API_PIN_USER_PAGES as u64,
    ),
    (
        "PINFUZZ_API_PIN_USER_PAGES_FAST",
        PINFUZZ_API_PIN_USER_PAGES_FAST as u64,
    ),
    (
        "PINFUZZ_API_PIN_USER_PAGES_REMOTE",
        PINFUZZ_API_PIN_USER_PAGES_REMOTE as u64,
    ),
    (
        "PINFUZZ_API_GET_USER_PAGES_REMOTE",
        PINFUZZ_API_GET_USER_PAGES_REMOTE as u64,
    ),
    ("PINFUZZ_FOLL_WRITE", PINFUZZ_FOLL_WRITE as u64),
    ("PINFUZZ_FOLL_FORCE", PINFUZZ_FOLL_FORCE as u64),
    ("PINFUZZ_FOLL_LONGTERM", PINFUZZ_FOLL_LONGTERM as u64),
    ("PINFUZZ_RELEASE_DIRTY", PINFUZZ_RELEASE_DIRTY as u64),
    ("PINFUZZ_PAGE_PRESENT", PINFUZZ_PAGE_PRESENT as u64),
    ("PINFUZZ_PAGE_ANON", PINFUZZ_PAGE_ANON as u64),
    (
        "PINFUZZ_PAGE_ANON_EXCLUSIVE",
        PINFUZZ_PAGE_ANON_EXCLUSIVE as u64,
    ),
    ("PINFUZZ_PAGE_ZERO", PINFUZZ_PAGE_ZERO as u64),
    ("PINFUZZ_PAGE_HUGE_ZERO", PINFUZZ_PAGE_HUGE_ZERO as u64),
    ("PINFUZZ_PAGE_LRU", PINFUZZ_PAGE_LRU as u64),
    ("PINFUZZ_PAGE_DIRTY", PINFUZZ_PAGE_DIRTY as u64),
    (
        "PINFUZZ_PAGE_MAYBE_DMA_PINNED",
        PINFUZZ_PAGE_MAYBE_DMA_PINNED as u64,
    ),
    ("PINFUZZ_PAGE_LARGE", PINFUZZ_PAGE_LARGE as u64),
    ("PINFUZZ_PAGE_SWAPCACHE", PINFUZZ_PAGE_SWAPCACHE as u64),
    ("PINFUZZ_FAULT_NONE", PINFUZZ_FAULT_NONE as u64),
    (
        "PINFUZZ_FAULT_PUT_FOR_UNPIN",
        PINFUZZ_FAULT_PUT_FOR_UNPIN as u64,
    ),
    ("PINFUZZ_FAULT_LEAK_PIN", PINFUZZ_FAULT_LEAK_PIN as u64),
    (
        "PINFUZZ_FAULT_DOUBLE_UNPIN",
        PINFUZZ_FAULT_DOUBLE_UNPIN as u64,
    ),
    (
        "PINFUZZ_FAULT_GET_FOR_PIN",
        PINFUZZ_FAULT_GET_FOR_PIN as u64,
    ),
    (
        "PINFUZZ_FAULT_UNPIN_WRONG_PAGE",
        PINFUZZ_FAULT_UNPIN_WRONG_PAGE as u64,
    ),
    ("PINFUZZ_FAULT_MAX", PINFUZZ_FAULT_MAX as u64),
    ("PINFUZZ_IOC_MAGIC", PINFUZZ_IOC_MAGIC as u64),
    ("PINFUZZ_IOC_GUP", request_value(PINFUZZ_IOC_GUP)),
    ("PINFUZZ_IOC_RELEASE", request_value(PINFUZZ_IOC_RELEASE)),
    (
        "PINFUZZ_IOC_QUERY_RANGE",
        request_value(PINFUZZ_IOC_QUERY_RANGE),
    ),
    (
        "PINFUZZ_IOC_QUERY_HANDLE",
        request_value(PINFUZZ_IOC_QUERY_HANDLE),
    ),
    ("PINFUZZ_IOC_STATUS", request_value(PINFUZZ_IOC_STATUS)),
];

/// The inputs of one GUP call ([`PinfuzzDev::gup`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GupArgs {
    /// Page-aligned user address.
    pub addr: u64,
    /// Pages to take.
    pub nr_pages: u64,
    /// `PINFUZZ_API_*`.
    pub api: u32,
    /// `PINFUZZ_FOLL_*`.
    pub gup_flags: u32,
    /// Target pid of a `*_REMOTE` call (0 = the caller), else 0.
    pub pid: i32,
}

impl fmt::Display for GupArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "addr=0x{:x} nr_pages={} api={} gup_flags=0x{:x} pid={}",
            self.addr, self.nr_pages, self.api, self.gup_flags, self.pid
        )
    }
}

/// What one GUP call returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GupReply {
    /// The entry point's return value: pages (possibly fewer than asked) or `-errno`.
    pub ret: i64,
    /// The handle holding the pages if `ret > 0`, else 0.
    pub handle: u32,
}

/// An ioctl the module refused (the `ioctl(2)` call returned -1).
#[derive(Debug, thiserror::Error)]
#[error("{ioctl} on {path}: {errno} ({args})", path = path.display())]
pub struct IoctlError {
    /// The ioctl's name (`PINFUZZ_IOC_GUP`, ...).
    pub ioctl: &'static str,
    /// The device file.
    pub path: PathBuf,
    /// The request's fields, for the message.
    pub args: String,
    /// What the module answered (see the errno table in `kmod/pinfuzz.h`).
    pub errno: Errno,
}

/// An open `/dev/pinfuzz`: one handle table of the module.
///
/// Processes that inherit the file descriptor (fork) share the table.
#[derive(Debug)]
pub struct PinfuzzDev {
    file: File,
    path: PathBuf,
}

/// The device node the module creates.
pub const DEVICE_PATH: &str = "/dev/pinfuzz";

impl PinfuzzDev {
    /// Open the device read-write with `O_CLOEXEC` (a program run forks but
    /// never execs, so children keep the descriptor).
    pub fn open(path: &Path) -> anyhow::Result<PinfuzzDev> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .with_context(|| format!("open {} (is the pinfuzz module loaded?)", path.display()))?;
        Ok(PinfuzzDev {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The device file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fail(&self, ioctl: &'static str, args: String, errno: Errno) -> IoctlError {
        IoctlError {
            ioctl,
            path: self.path.clone(),
            args,
            errno,
        }
    }

    /// `PINFUZZ_IOC_GUP`: call a GUP entry point. A refusal by the kernel
    /// is `Ok` with a negative `ret`; `Err` means the module refused the
    /// request before calling anything.
    pub fn gup(&self, args: &GupArgs) -> Result<GupReply, IoctlError> {
        let mut arg = PinfuzzGup {
            addr: args.addr,
            nr_pages: args.nr_pages,
            api: args.api,
            gup_flags: args.gup_flags,
            pid: args.pid,
            ..PinfuzzGup::default()
        };
        // SAFETY: PINFUZZ_IOC_GUP reads and writes exactly one struct
        // pinfuzz_gup, which `arg` is (layout asserted above); the pointer
        // is valid and exclusive for the duration of the call.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), PINFUZZ_IOC_GUP, &raw mut arg) };
        if rc < 0 {
            return Err(self.fail("PINFUZZ_IOC_GUP", args.to_string(), Errno::last()));
        }
        Ok(GupReply {
            ret: arg.ret,
            handle: arg.handle,
        })
    }

    /// `PINFUZZ_IOC_RELEASE`: drop a handle (`flags`: `PINFUZZ_RELEASE_*`).
    pub fn release(&self, handle: u32, flags: u32) -> Result<(), IoctlError> {
        let arg = PinfuzzRelease { handle, flags };
        // SAFETY: PINFUZZ_IOC_RELEASE reads one struct pinfuzz_release from
        // the valid pointer; nothing is written back.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), PINFUZZ_IOC_RELEASE, &raw const arg) };
        if rc < 0 {
            let args = format!("handle={handle} flags=0x{flags:x}");
            return Err(self.fail("PINFUZZ_IOC_RELEASE", args, Errno::last()));
        }
        Ok(())
    }

    /// `PINFUZZ_IOC_QUERY_RANGE`: the `nr_pages` pages at `addr` in `pid`'s
    /// mm (0 = the caller) into `out` (resized to `nr_pages`, its capacity
    /// reused).
    pub fn query_range(
        &self,
        pid: i32,
        addr: u64,
        nr_pages: usize,
        out: &mut Vec<PinfuzzPageInfo>,
    ) -> Result<(), IoctlError> {
        self.query(
            PINFUZZ_IOC_QUERY_RANGE,
            "PINFUZZ_IOC_QUERY_RANGE",
            pid,
            addr,
            0,
            nr_pages,
            out,
        )
    }

    /// `PINFUZZ_IOC_QUERY_HANDLE`: the `nr_pages` pages `handle` holds, in
    /// the order GUP returned them, into `out` (resized to `nr_pages`).
    pub fn query_handle(
        &self,
        handle: u32,
        nr_pages: usize,
        out: &mut Vec<PinfuzzPageInfo>,
    ) -> Result<(), IoctlError> {
        self.query(
            PINFUZZ_IOC_QUERY_HANDLE,
            "PINFUZZ_IOC_QUERY_HANDLE",
            0,
            0,
            handle,
            nr_pages,
            out,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn query(
        &self,
        request: IoctlRequest,
        name: &'static str,
        pid: i32,
        addr: u64,
        handle: u32,
        nr_pages: usize,
        out: &mut Vec<PinfuzzPageInfo>,
    ) -> Result<(), IoctlError> {
        out.clear();
        out.resize(nr_pages, PinfuzzPageInfo::default());
        let arg = PinfuzzQuery {
            addr,
            nr_pages: nr_pages as u64,
            info_ptr: out.as_mut_ptr() as u64,
            pid,
            handle,
            flags: 0,
            reserved: 0,
        };
        // SAFETY: the query ioctls read one struct pinfuzz_query and write
        // at most `nr_pages` struct pinfuzz_page_info through info_ptr,
        // which points at `out`'s buffer of exactly `nr_pages` initialised
        // elements (resized above; layout asserted above). `out` is
        // borrowed mutably, so nothing else aliases it during the call.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), request, &raw const arg) };
        if rc < 0 {
            let args = format!("pid={pid} addr=0x{addr:x} handle={handle} nr_pages={nr_pages}");
            return Err(self.fail(name, args, Errno::last()));
        }
        Ok(())
    }

    /// `PINFUZZ_IOC_STATUS`: module-wide and per-file state.
    pub fn status(&self) -> Result<PinfuzzStatus, IoctlError> {
        let mut arg = PinfuzzStatus::default();
        // SAFETY: PINFUZZ_IOC_STATUS writes exactly one struct
        // pinfuzz_status into the valid, exclusive pointer.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), PINFUZZ_IOC_STATUS, &raw mut arg) };
        if rc < 0 {
            return Err(self.fail("PINFUZZ_IOC_STATUS", String::new(), Errno::last()));
        }
        Ok(arg)
    }
}

impl AsFd for PinfuzzDev {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl AsRawFd for PinfuzzDev {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_follow_the_linux_encoding() {
        // _IOC(dir, type, nr, size) = dir << 30 | size << 16 | type << 8 | nr
        // (include/uapi/asm-generic/ioctl.h), dir: write 1, read 2.
        assert_eq!(
            request_value(PINFUZZ_IOC_GUP),
            (3 << 30) | (48 << 16) | (0xb7 << 8) | 1
        );
        assert_eq!(
            request_value(PINFUZZ_IOC_RELEASE),
            (1 << 30) | (8 << 16) | (0xb7 << 8) | 2
        );
        assert_eq!(
            request_value(PINFUZZ_IOC_QUERY_RANGE),
            (1 << 30) | (40 << 16) | (0xb7 << 8) | 3
        );
        assert_eq!(
            request_value(PINFUZZ_IOC_QUERY_HANDLE),
            (1 << 30) | (40 << 16) | (0xb7 << 8) | 4
        );
        assert_eq!(
            request_value(PINFUZZ_IOC_STATUS),
            (2 << 30) | (40 << 16) | (0xb7 << 8) | 5
        );
    }

    #[test]
    fn page_flags_match_the_observation_flags() {
        use crate::obs::page_flags as f;
        assert_eq!(PINFUZZ_PAGE_PRESENT, f::PRESENT);
        assert_eq!(PINFUZZ_PAGE_ANON, f::ANON);
        assert_eq!(PINFUZZ_PAGE_ANON_EXCLUSIVE, f::ANON_EXCLUSIVE);
        assert_eq!(PINFUZZ_PAGE_ZERO, f::ZERO);
        assert_eq!(PINFUZZ_PAGE_HUGE_ZERO, f::HUGE_ZERO);
        assert_eq!(PINFUZZ_PAGE_LRU, f::LRU);
        assert_eq!(PINFUZZ_PAGE_DIRTY, f::DIRTY);
        assert_eq!(PINFUZZ_PAGE_MAYBE_DMA_PINNED, f::MAYBE_DMA_PINNED);
        assert_eq!(PINFUZZ_PAGE_LARGE, f::LARGE);
        assert_eq!(PINFUZZ_PAGE_SWAPCACHE, f::SWAPCACHE);
    }

    #[test]
    fn foll_flags_match_the_model() {
        assert_eq!(PINFUZZ_FOLL_WRITE, reference::Foll::WRITE.0);
        assert_eq!(PINFUZZ_FOLL_FORCE, reference::Foll::FORCE.0);
        assert_eq!(PINFUZZ_FOLL_LONGTERM, reference::Foll::LONGTERM.0);
    }

    #[test]
    fn opening_a_missing_device_names_the_path() {
        let err = PinfuzzDev::open(Path::new("/nonexistent/pinfuzz")).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("/nonexistent/pinfuzz"), "{msg}");
    }
}
