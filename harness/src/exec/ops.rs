//! One low-level command, run in the calling process: the syscalls and
//! ioctls behind every operation.
//!
//! The runner translates each program step into a [`Cmd`] with concrete
//! addresses, module handle numbers and pids, then runs it itself or sends
//! it to the child the step names (`exec::child`), which calls the same
//! [`execute`]. So a parent step and a child step take exactly the same
//! code path. A refusal is data ([`OpResult::Errno`]): the kernel's (a
//! syscall's errno, a negative GUP return) and the helper module's own
//! (its ioctl errno, as `kmod/pinfuzz.h` lists them; the model predicts
//! those too). An `Err` means the executor itself could not do what it was
//! asked (a broken reply, a mapping the kernel placed elsewhere) and stops
//! the run.
//!
//! Nothing here allocates on success: children decode commands from a
//! fixed buffer and the runner calls this once per step.

use nix::errno::Errno;
use reference::{Advice, MapKind, Prot};
use serde::{Deserialize, Serialize};

use crate::obs::OpResult;
use crate::uapi::{GupArgs, PinfuzzDev};

/// Base page size.
const PAGE: u64 = reference::PAGE_SIZE;

/// One command with every address resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cmd {
    /// `mmap(addr, pages, prot, kind | MAP_FIXED_NOREPLACE)`.
    Mmap {
        /// Start address.
        addr: u64,
        /// Length in pages.
        pages: u64,
        /// [`kind_code`] of the mapping kind.
        kind: u8,
        /// `PROT_*` bits.
        prot: i32,
    },
    /// `munmap(addr, pages)`.
    Munmap {
        /// Start address.
        addr: u64,
        /// Length in pages.
        pages: u64,
    },
    /// `mprotect(addr, pages, prot)`.
    Mprotect {
        /// Start address.
        addr: u64,
        /// Length in pages.
        pages: u64,
        /// `PROT_*` bits.
        prot: i32,
    },
    /// `madvise(addr, pages, advice)`.
    Madvise {
        /// Start address.
        addr: u64,
        /// Length in pages.
        pages: u64,
        /// `MADV_*`.
        advice: i32,
    },
    /// One volatile access per page, in order (already checked not to fault).
    Touch {
        /// First page.
        addr: u64,
        /// Pages to access.
        pages: u64,
        /// Store instead of load.
        write: bool,
    },
    /// `PINFUZZ_IOC_GUP`.
    Gup {
        /// Page-aligned start.
        addr: u64,
        /// Pages.
        pages: u64,
        /// `PINFUZZ_API_*`.
        api: u32,
        /// `PINFUZZ_FOLL_*`.
        flags: u32,
        /// Remote target pid (0 = caller).
        pid: i32,
    },
    /// `PINFUZZ_IOC_RELEASE`.
    Release {
        /// Module handle.
        handle: u32,
        /// `PINFUZZ_RELEASE_*`.
        flags: u32,
    },
    /// A child leaves (`_exit(0)`); never passed to [`execute`].
    Exit,
}

/// What a command did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The result as the program sees it.
    pub result: OpResult,
    /// The module handle of a GUP that returned pages, else 0.
    pub handle: u32,
}

impl Outcome {
    fn of(result: OpResult) -> Outcome {
        Outcome { result, handle: 0 }
    }
}

/// The wire code of a mapping kind.
pub fn kind_code(kind: MapKind) -> u8 {
    match kind {
        MapKind::AnonPrivate => 0,
        MapKind::AnonShared => 1,
        MapKind::MemfdShared => 2,
        MapKind::MemfdPrivate => 3,
    }
}

fn kind_of(code: u8) -> anyhow::Result<MapKind> {
    Ok(match code {
        0 => MapKind::AnonPrivate,
        1 => MapKind::AnonShared,
        2 => MapKind::MemfdShared,
        3 => MapKind::MemfdPrivate,
        _ => anyhow::bail!("unknown mapping kind code {code}"),
    })
}

/// `MADV_*` of an advice.
pub fn advice_code(advice: Advice) -> i32 {
    match advice {
        Advice::DontNeed => libc::MADV_DONTNEED,
        Advice::HugePage => libc::MADV_HUGEPAGE,
        Advice::NoHugePage => libc::MADV_NOHUGEPAGE,
    }
}

/// `PROT_*` of a protection.
pub fn prot_code(prot: Prot) -> i32 {
    match prot {
        Prot::None => libc::PROT_NONE,
        Prot::Read => libc::PROT_READ,
        Prot::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
    }
}

fn errno_result(rc: libc::c_int) -> OpResult {
    if rc == 0 {
        OpResult::Ok
    } else {
        OpResult::Errno(Errno::last_raw())
    }
}

/// Run `cmd` in this process. `dev` is the open module (shared by the
/// runner and its children).
pub fn execute(cmd: &Cmd, dev: &PinfuzzDev) -> anyhow::Result<Outcome> {
    match *cmd {
        Cmd::Mmap {
            addr,
            pages,
            kind,
            prot,
        } => Ok(Outcome::of(mmap(addr, pages * PAGE, kind_of(kind)?, prot)?)),
        Cmd::Munmap { addr, pages } => {
            // SAFETY: the range lies in the executor's arena, which holds
            // only mappings the program made; no Rust object lives there.
            let rc = unsafe { libc::munmap(addr as *mut libc::c_void, (pages * PAGE) as usize) };
            Ok(Outcome::of(errno_result(rc)))
        }
        Cmd::Mprotect { addr, pages, prot } => {
            // SAFETY: as for munmap: arena memory, no Rust object in it.
            let rc =
                unsafe { libc::mprotect(addr as *mut libc::c_void, (pages * PAGE) as usize, prot) };
            Ok(Outcome::of(errno_result(rc)))
        }
        Cmd::Madvise {
            addr,
            pages,
            advice,
        } => {
            // SAFETY: as for munmap: arena memory, no Rust object in it.
            let rc = unsafe {
                libc::madvise(addr as *mut libc::c_void, (pages * PAGE) as usize, advice)
            };
            Ok(Outcome::of(errno_result(rc)))
        }
        Cmd::Touch { addr, pages, write } => {
            touch(addr, pages, write);
            Ok(Outcome::of(OpResult::Touched))
        }
        Cmd::Gup {
            addr,
            pages,
            api,
            flags,
            pid,
        } => {
            let args = GupArgs {
                addr,
                nr_pages: pages,
                api,
                gup_flags: flags,
                pid,
            };
            let reply = match dev.gup(&args) {
                Ok(reply) => reply,
                // The module's own refusal (EINVAL, ESRCH, ENOSPC, ...;
                // kmod/pinfuzz.h) is part of what the program observes.
                Err(e) => return Ok(Outcome::of(OpResult::Errno(e.errno as i32))),
            };
            if reply.ret > 0 {
                if reply.ret as u64 > pages || reply.handle == 0 {
                    anyhow::bail!(
                        "PINFUZZ_IOC_GUP ({args}) returned ret={} handle={}: \
                         more pages than asked or no handle",
                        reply.ret,
                        reply.handle
                    );
                }
                Ok(Outcome {
                    result: OpResult::Pages(reply.ret as u64),
                    handle: reply.handle,
                })
            } else if reply.ret == 0 {
                Ok(Outcome::of(OpResult::Pages(0)))
            } else {
                let errno = i32::try_from(-reply.ret).map_err(|_| {
                    anyhow::anyhow!("PINFUZZ_IOC_GUP ({args}) returned ret={}", reply.ret)
                })?;
                Ok(Outcome::of(OpResult::Errno(errno)))
            }
        }
        Cmd::Release { handle, flags } => Ok(Outcome::of(match dev.release(handle, flags) {
            Ok(()) => OpResult::Ok,
            // ENOENT for a handle that holds nothing or was released,
            // EINVAL for a dirty release of FOLL_GET references.
            Err(e) => OpResult::Errno(e.errno as i32),
        })),
        Cmd::Exit => anyhow::bail!("Cmd::Exit is handled by the child server, not executed"),
    }
}

/// `mmap` one arena mapping; memfd kinds create, size and close a memfd.
fn mmap(addr: u64, len: u64, kind: MapKind, prot: i32) -> anyhow::Result<OpResult> {
    let share = if kind.is_shared() {
        libc::MAP_SHARED
    } else {
        libc::MAP_PRIVATE
    };
    let mut flags = share | libc::MAP_FIXED_NOREPLACE;
    let mut fd = -1;
    match kind {
        MapKind::AnonPrivate | MapKind::AnonShared => flags |= libc::MAP_ANONYMOUS,
        MapKind::MemfdShared | MapKind::MemfdPrivate => {
            // SAFETY: the name is a NUL-terminated static string.
            fd = unsafe { libc::memfd_create(c"pinfuzz".as_ptr(), libc::MFD_CLOEXEC) };
            if fd < 0 {
                return Ok(OpResult::Errno(Errno::last_raw()));
            }
            // The file is as long as the mapping, so no page of the mapping
            // lies past EOF and a touch never raises SIGBUS.
            // SAFETY: fd is the memfd just created.
            if unsafe { libc::ftruncate(fd, len as libc::off_t) } != 0 {
                let errno = Errno::last_raw();
                // SAFETY: fd is ours and closed once.
                unsafe { libc::close(fd) };
                return Ok(OpResult::Errno(errno));
            }
        }
    }
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping, so
    // no memory Rust knows about can be affected; the arena is reserved
    // for program mappings.
    let got = unsafe { libc::mmap(addr as *mut libc::c_void, len as usize, prot, flags, fd, 0) };
    let errno = Errno::last_raw();
    if fd >= 0 {
        // The mapping keeps the file alive; the descriptor is not needed.
        // SAFETY: fd is ours and closed once.
        unsafe { libc::close(fd) };
    }
    if got == libc::MAP_FAILED {
        return Ok(OpResult::Errno(errno));
    }
    if got as u64 != addr {
        // Kernels before 4.17 take MAP_FIXED_NOREPLACE as a mere hint.
        // SAFETY: `got` is the mapping just created, unknown to anyone else.
        unsafe { libc::munmap(got, len as usize) };
        anyhow::bail!(
            "mmap(0x{addr:x}, MAP_FIXED_NOREPLACE) returned 0x{:x}: this kernel ignores \
             MAP_FIXED_NOREPLACE",
            got as u64
        );
    }
    Ok(OpResult::Ok)
}

/// Access one byte of each of `pages` pages from `addr`, in order.
fn touch(addr: u64, pages: u64, write: bool) {
    for i in 0..pages {
        let p = (addr + i * PAGE) as *mut u8;
        if write {
            // SAFETY: the caller checked against its record of this
            // process's mappings that the page is mapped writable; arena
            // memory holds no Rust object, and a volatile access cannot be
            // elided or merged by the compiler.
            unsafe { p.write_volatile(0x5a) };
        } else {
            // SAFETY: as above, the page is mapped readable.
            unsafe { p.read_volatile() };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_codes_round_trip() {
        for kind in [
            MapKind::AnonPrivate,
            MapKind::AnonShared,
            MapKind::MemfdShared,
            MapKind::MemfdPrivate,
        ] {
            assert_eq!(kind_of(kind_code(kind)).unwrap(), kind);
        }
        assert!(kind_of(9).is_err());
        assert_eq!(prot_code(Prot::ReadWrite), 3);
        assert_eq!(advice_code(Advice::HugePage), 14);
    }

    #[test]
    fn mmap_touch_munmap_in_this_process() {
        // No module needed: these are plain syscalls. A high, unused address.
        let addr = 0x3f00_0000_0000u64;
        for kind in [
            MapKind::AnonPrivate,
            MapKind::AnonShared,
            MapKind::MemfdShared,
            MapKind::MemfdPrivate,
        ] {
            let r = mmap(addr, 4 * PAGE, kind, prot_code(Prot::ReadWrite)).unwrap();
            assert_eq!(r, OpResult::Ok, "{kind:?}");
            // A second mapping at the same place is refused, not replaced.
            let again = mmap(addr, PAGE, kind, prot_code(Prot::Read)).unwrap();
            assert_eq!(again, OpResult::Errno(libc::EEXIST));
            touch(addr, 4, true);
            touch(addr, 4, false);
            // SAFETY: the mapping was just created by this test.
            let rc = unsafe { libc::munmap(addr as *mut _, (4 * PAGE) as usize) };
            assert_eq!(rc, 0);
        }
    }
}
