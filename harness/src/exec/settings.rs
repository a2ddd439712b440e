//! Kernel settings that make a run reproducible, and the program header's
//! THP settings.
//!
//! [`prepare_guest`] is called once when the guest boots: it stops every
//! kernel activity that would move, collapse or split the program's pages
//! behind its back, or create folio sizes the model does not know, then
//! applies the first program's settings. [`apply_program_settings`] applies
//! a program header's settings before each program and writes only what
//! differs from what the kernel reports (two small sysfs reads in the common
//! case). Nothing here runs unless asked: in native mode on a developer's
//! box the executor leaves the system's settings alone.
//!
//! Each setting is read back after writing, and an error names the file and
//! the value. Files a kernel does not have (6.1 has no per-size mTHP
//! controls, no `shrink_underused`) are skipped: the feature they control
//! does not exist there either.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use reference::ThpMode;

use crate::op::Header;

/// `/sys/kernel/mm/transparent_hugepage`.
pub const THP_DIR: &str = "/sys/kernel/mm/transparent_hugepage";

/// The settings a program header asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `transparent_hugepage/enabled`.
    pub thp: ThpMode,
    /// `transparent_hugepage/use_zero_page`.
    pub use_zero_page: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings::from(&Header::default())
    }
}

impl From<&Header> for Settings {
    fn from(header: &Header) -> Settings {
        Settings {
            thp: header.thp,
            use_zero_page: header.use_zero_page,
        }
    }
}

fn thp_word(mode: ThpMode) -> &'static str {
    match mode {
        ThpMode::Always => "always",
        ThpMode::Madvise => "madvise",
        ThpMode::Never => "never",
    }
}

/// The selected word of a sysfs choice file (`always [madvise] never`), or
/// the trimmed contents of a plain value file.
pub fn current_value(text: &str) -> &str {
    match (text.find('['), text.find(']')) {
        (Some(open), Some(close)) if open < close => &text[open + 1..close],
        _ => text.trim(),
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    fs::read_to_string(path).with_context(|| format!("read {}", path.display()))
}

/// Write `value` to `path` if it differs from what the file reports, then
/// check that it took. Returns whether it wrote.
fn set(path: &Path, value: &str) -> anyhow::Result<bool> {
    if current_value(&read(path)?) == value {
        return Ok(false);
    }
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .with_context(|| format!("write {value:?} to {} (needs root)", path.display()))?;
    let now = read(path)?;
    if current_value(&now) != value {
        bail!(
            "wrote {value:?} to {} but it reads back as {:?}",
            path.display(),
            now.trim()
        );
    }
    Ok(true)
}

/// Like [`set`], but a file this kernel does not have is skipped.
fn set_if_present(path: &Path, value: &str) -> anyhow::Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    set(path, value)
}

/// Apply a program header's settings, writing only what differs. Returns
/// the number of files written.
pub fn apply_program_settings(settings: &Settings) -> anyhow::Result<usize> {
    let dir = Path::new(THP_DIR);
    let mut written = 0;
    written += usize::from(set(&dir.join("enabled"), thp_word(settings.thp))?);
    let zero = if settings.use_zero_page { "1" } else { "0" };
    written += usize::from(set(&dir.join("use_zero_page"), zero)?);
    Ok(written)
}

/// The fixed settings of a pinfuzz guest, then `settings`. Needs root;
/// meant for the guest (it changes system-wide memory-management knobs).
pub fn prepare_guest(settings: &Settings) -> anyhow::Result<()> {
    let dir = PathBuf::from(THP_DIR);
    if !dir.exists() {
        bail!("{THP_DIR} does not exist: this kernel has no transparent hugepages");
    }
    // THP faults must never enter direct reclaim or compaction: both
    // migrate pages, which changes the pfns (page identities) the oracle
    // follows. With `never` a THP fault that finds no free 2 MiB block
    // falls back to small pages (thp_fault_fallback) instead.
    set(&dir.join("defrag"), "never")?;
    // memfd and MAP_SHARED|MAP_ANONYMOUS mappings are shmem: the model
    // backs them with small folios only.
    set(&dir.join("shmem_enabled"), "never")?;
    // The model knows order-0 folios and PMD-sized THPs only: every other
    // anon mTHP size off, the PMD size follows the global `enabled` (which
    // each program sets). Same for the per-size shmem controls.
    let pmd_kb = read(&dir.join("hpage_pmd_size"))?
        .trim()
        .parse::<u64>()
        .context("parse hpage_pmd_size")?
        / 1024;
    let pmd_dir = format!("hugepages-{pmd_kb}kB");
    let mut sizes: Vec<_> = match fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("hugepages-"))
            .collect(),
        Err(err) => return Err(err).with_context(|| format!("list {THP_DIR}")),
    };
    sizes.sort();
    for size in &sizes {
        let value = if *size == pmd_dir { "inherit" } else { "never" };
        set_if_present(&dir.join(size).join("enabled"), value)?;
        set_if_present(&dir.join(size).join("shmem_enabled"), value)?;
    }
    // The underused-THP shrinker (6.12) splits mostly-zero THPs under
    // memory pressure; off, and new THPs are not even queued for it
    // (mm/huge_memory.c: deferred_split_folio()).
    set_if_present(&dir.join("shrink_underused"), "0")?;

    // khugepaged would collapse small pages into THPs behind the program's
    // back (new pfns, thp_collapse_alloc). It cannot be stopped while THP is
    // enabled: the thread runs whenever a PMD size is enabled
    // (mm/khugepaged.c: hugepage_pmd_enabled(), start_stop_khugepaged()),
    // and an mm entering an *empty* scan list wakes it at once whatever the
    // sleep setting (__khugepaged_enter() → wake_up_interruptible; its
    // untimed wait in khugepaged_wait_work()). What bounds it:
    // - pages_to_scan = 1: each wake-up scans at most one PMD range
    //   (khugepaged_scan_mm_slot() stops once progress >= pages);
    // - scan_sleep_millisecs = alloc_sleep_millisecs = u32::MAX (~49 days):
    //   after that pass it sleeps "forever" while it has mms to scan (the
    //   timed wait only ends when jiffies pass khugepaged_sleep_expire), and
    //   the list stays non-empty because the mm its cursor is on is freed
    //   only by a later scan (__khugepaged_exit());
    // - max_ptes_none = max_ptes_swap = max_ptes_shared = 0: the one range
    //   it may scan is collapsed only if all 512 PTEs are present,
    //   exclusive and not swapped (hpage_collapse_scan_pmd()); with
    //   shrink_underused off, max_ptes_none no longer matters elsewhere;
    // - khugepaged/defrag = 0: its allocations do not compact.
    // Per-run counters (pgmigrate_success, thp_collapse_alloc) in the
    // RunSummary show whether anything still happened.
    let k = dir.join("khugepaged");
    set(&k.join("pages_to_scan"), "1")?;
    set(&k.join("max_ptes_none"), "0")?;
    set(&k.join("max_ptes_swap"), "0")?;
    set(&k.join("max_ptes_shared"), "0")?;
    set(&k.join("defrag"), "0")?;
    // The sleep settings last: writing them wakes the thread once
    // (scan_sleep_millisecs_store()), with the limits above in force.
    set(&k.join("alloc_sleep_millisecs"), "4294967295")?;
    set(&k.join("scan_sleep_millisecs"), "4294967295")?;

    // Proactive compaction (kcompactd) migrates movable pages in the
    // background: new pfns under the program's feet.
    set_if_present(Path::new("/proc/sys/vm/compaction_proactiveness"), "0")?;
    // Watermark boosting wakes kswapd and kcompactd after fragmenting
    // allocations (mm/page_alloc.c: boost_watermark()): same reason.
    set_if_present(Path::new("/proc/sys/vm/watermark_boost_factor"), "0")?;
    // NUMA balancing unmaps pages to sample accesses (protnone PTEs) and
    // migrates them; a one-node guest never enables it, a box might.
    set_if_present(Path::new("/proc/sys/kernel/numa_balancing"), "0")?;

    apply_program_settings(settings)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_files_and_value_files_parse() {
        assert_eq!(current_value("always [madvise] never\n"), "madvise");
        assert_eq!(
            current_value("always defer defer+madvise madvise [never]\n"),
            "never"
        );
        assert_eq!(current_value("4294967295\n"), "4294967295");
        assert_eq!(current_value("1\n"), "1");
    }

    #[test]
    fn header_settings_carry_over() {
        let header = Header {
            thp: ThpMode::Never,
            use_zero_page: false,
            ..Header::default()
        };
        assert_eq!(
            Settings::from(&header),
            Settings {
                thp: ThpMode::Never,
                use_zero_page: false
            }
        );
        assert_eq!(thp_word(ThpMode::Madvise), "madvise");
    }

    #[test]
    fn setting_an_unchanged_value_writes_nothing() {
        // Read-only on this host: the current value is "already set".
        let path = Path::new(THP_DIR).join("enabled");
        if let Ok(text) = fs::read_to_string(&path) {
            let now = current_value(&text).to_string();
            assert!(!set(&path, &now).unwrap());
        }
        let err = set(Path::new("/nonexistent/knob"), "1").unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/knob"));
    }
}
