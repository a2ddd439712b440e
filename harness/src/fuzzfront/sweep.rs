//! Guest directories left behind by fuzzer processes that were killed.
//!
//! A guest lives in a temporary directory (`/tmp/pinfuzz-guest-*`: its
//! socket and console logs) that its `Guest` removes when dropped. Fuzzers
//! end their processes without destructors: AFL++ SIGKILLs a child at a
//! timeout or at `-V`, libFuzzer aborts on a crash and `_exit`s on a
//! timeout. QEMU dies with the process (`PR_SET_PDEATHSIG`), the directory
//! stays. So every session marks its guest's directory with its pid, and a
//! new session removes the marked directories whose process is gone.
//! Directories without the mark (other pinfuzz commands' guests) are never
//! touched.

use std::fs;
use std::path::Path;

/// The marker file: the pid of the fuzzer process that owns the guest.
const MARK: &str = "fuzzfront.pid";

/// Mark `dir` as owned by this process.
pub fn mark_guest_dir(dir: &Path) {
    // Best effort: an unmarked directory is only never swept.
    let _ = fs::write(dir.join(MARK), format!("{}\n", std::process::id()));
}

/// Remove marked guest directories in the temporary directory whose owner
/// no longer runs; how many were removed.
pub fn remove_stale_guest_dirs() -> usize {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with("pinfuzz-guest-") {
            continue;
        }
        let dir = entry.path();
        let Some(pid) = fs::read_to_string(dir.join(MARK))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        else {
            continue;
        };
        if !alive(pid) && fs::remove_dir_all(&dir).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Whether process `pid` exists (signal 0 checks without sending).
fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for the process's existence.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_marked_directories_of_dead_processes_go() {
        let tmp = std::env::temp_dir();
        let make = |tag: &str| {
            tempfile::Builder::new()
                .prefix(&format!("pinfuzz-guest-sweeptest-{tag}-"))
                .tempdir_in(&tmp)
                .expect("temp dir")
                .keep()
        };
        let dead = make("dead");
        let live = make("live");
        let unmarked = make("unmarked");
        // A pid that cannot exist (above the kernel's pid_max limit).
        fs::write(dead.join(MARK), "4194305\n").expect("mark");
        mark_guest_dir(&live);
        remove_stale_guest_dirs();
        assert!(!dead.exists(), "a dead owner's directory is removed");
        assert!(live.exists(), "a running owner's directory stays");
        assert!(unmarked.exists(), "an unmarked directory is never touched");
        fs::remove_dir_all(&live).ok();
        fs::remove_dir_all(&unmarked).ok();
    }
}
