//! Exact, cheap reads of `/proc/vmstat`.
//!
//! `nr_foll_pin_acquired` / `nr_foll_pin_released` are node counters kept as
//! per-CPU deltas that `/proc/vmstat` shows only once folded, so every read
//! first writes `1` to `/proc/sys/vm/stat_refresh`, whose handler
//! (`vmstat_refresh()`, mm/vmstat.c) folds every CPU's deltas synchronously
//! (kernel-lab.md trap 1). The `thp_*` items are event counters summed over
//! CPUs at read time and need no refresh. Both files stay open and are
//! accessed with `pwrite`/`pread` at offset 0 (a seq_file read at position 0
//! restarts the file), the text lands in a buffer allocated once, and parsing
//! does not allocate: this runs after every step.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;

use anyhow::{Context, bail};

/// `/proc/vmstat`.
pub const VMSTAT_PATH: &str = "/proc/vmstat";
/// `/proc/sys/vm/stat_refresh` (mode 0600: root only).
pub const STAT_REFRESH_PATH: &str = "/proc/sys/vm/stat_refresh";

/// The counters the model predicts, in `obs::Counters` order.
pub const MODEL_COUNTERS: [&str; 9] = reference::VmStat::NAMES;

/// Counters that move only when something outside the program moved,
/// collapsed, compacted or swapped pages: reported per run so a surprising
/// trace can be told apart from a disturbed one. Missing ones (older
/// kernels) read as 0.
pub const DISTURBANCE_COUNTERS: [&str; 6] = [
    "pgmigrate_success",
    "thp_migration_success",
    "thp_collapse_alloc",
    "compact_stall",
    "pswpout",
    "thp_underused_split_page",
];

/// A `/proc/vmstat` text that cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A line of a wanted counter is not `<name> <decimal>`.
    #[error("{path} line {line}: counter {name}: value is not a decimal u64")]
    BadValue {
        /// The file.
        path: &'static str,
        /// 1-based line number.
        line: usize,
        /// The counter.
        name: &'static str,
    },
}

/// Fill `out[i]` with the value of counter `names[i]` found in `text` (the
/// contents of `/proc/vmstat`); returns a bit mask of the names found (bit
/// `i` for `names[i]`). Lines of other counters are skipped without being
/// parsed. Allocation-free.
pub fn parse_counters(
    text: &[u8],
    names: &[&'static str],
    out: &mut [u64],
) -> Result<u64, ParseError> {
    debug_assert!(names.len() <= 64 && out.len() >= names.len());
    let mut found = 0u64;
    for (index, line) in text.split(|&b| b == b'\n').enumerate() {
        let Some(space) = line.iter().position(|&b| b == b' ') else {
            continue;
        };
        let (name, value) = (&line[..space], &line[space + 1..]);
        let Some(i) = names.iter().position(|n| n.as_bytes() == name) else {
            continue;
        };
        let bad = || ParseError::BadValue {
            path: VMSTAT_PATH,
            line: index + 1,
            name: names[i],
        };
        if value.is_empty() {
            return Err(bad());
        }
        let mut v: u64 = 0;
        for &d in value {
            if !d.is_ascii_digit() {
                return Err(bad());
            }
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
                .ok_or_else(bad)?;
        }
        out[i] = v;
        found |= 1 << i;
    }
    Ok(found)
}

/// Both files open, one buffer: an exact counter read costs one `pwrite`
/// and one or two `pread`s.
#[derive(Debug)]
pub struct VmstatReader {
    refresh: File,
    vmstat: File,
    buf: Vec<u8>,
}

impl VmstatReader {
    /// Open `/proc/sys/vm/stat_refresh` for writing (needs root) and `/proc/vmstat`.
    pub fn open() -> anyhow::Result<VmstatReader> {
        let refresh = OpenOptions::new()
            .write(true)
            .open(STAT_REFRESH_PATH)
            .with_context(|| format!("open {STAT_REFRESH_PATH} for writing (needs root)"))?;
        let vmstat = File::open(VMSTAT_PATH).with_context(|| format!("open {VMSTAT_PATH}"))?;
        Ok(VmstatReader {
            refresh,
            vmstat,
            buf: vec![0; 32 << 10],
        })
    }

    /// Fold the per-CPU deltas, then read the whole of `/proc/vmstat` into
    /// the buffer; returns its length.
    fn refresh_and_read(&mut self) -> anyhow::Result<usize> {
        self.refresh
            .write_at(b"1", 0)
            .with_context(|| format!("write 1 to {STAT_REFRESH_PATH}"))?;
        let mut len = 0;
        loop {
            if len == self.buf.len() {
                // /proc/vmstat is ~6 KiB; a 32 KiB buffer that fills up
                // means something is badly wrong, not that it should grow.
                bail!("{VMSTAT_PATH} is larger than {} bytes", self.buf.len());
            }
            let n = self
                .vmstat
                .read_at(&mut self.buf[len..], len as u64)
                .with_context(|| format!("read {VMSTAT_PATH}"))?;
            if n == 0 {
                return Ok(len);
            }
            len += n;
        }
    }

    /// Exact values of `names` (every one must exist) into `out`.
    pub fn read(&mut self, names: &[&'static str], out: &mut [u64]) -> anyhow::Result<()> {
        let found = self.read_found(names, out)?;
        let all = if names.len() == 64 {
            u64::MAX
        } else {
            (1 << names.len()) - 1
        };
        if found != all {
            let missing = names[(!found & all).trailing_zeros() as usize];
            bail!("{VMSTAT_PATH} has no counter {missing} (kernel too old or built without it)");
        }
        Ok(())
    }

    /// Exact values of `names` into `out` (0 for a missing one); returns
    /// the mask of the names found (bit `i` for `names[i]`).
    pub fn read_found(&mut self, names: &[&'static str], out: &mut [u64]) -> anyhow::Result<u64> {
        out.iter_mut().for_each(|v| *v = 0);
        let len = self.refresh_and_read()?;
        Ok(parse_counters(&self.buf[..len], names, out)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "nr_free_pages 1502401\n\
        nr_foll_pin_acquired 1025\n\
        nr_foll_pin_released 1024\n\
        thp_fault_alloc 3\n\
        thp_fault_fallback 0\n\
        thp_fault_fallback_charge 7\n\
        thp_split_page 1\n\
        thp_split_page_failed 0\n\
        thp_deferred_split_page 2\n\
        thp_split_pmd 18446744073709551615\n\
        thp_zero_page_alloc 1\n";

    #[test]
    fn parses_the_model_counters_in_order() {
        let mut out = [0u64; 9];
        let found = parse_counters(SAMPLE.as_bytes(), &MODEL_COUNTERS, &mut out).unwrap();
        assert_eq!(found, 0x1ff);
        assert_eq!(out, [1025, 1024, 3, 0, u64::MAX, 1, 0, 2, 1]);
    }

    #[test]
    fn prefixes_of_other_counters_do_not_match() {
        // thp_fault_fallback_charge must not be taken for thp_fault_fallback.
        let text = b"thp_fault_fallback_charge 7\nthp_fault_fallback 5\n";
        let mut out = [0u64; 1];
        let found = parse_counters(text, &["thp_fault_fallback"], &mut out).unwrap();
        assert_eq!((found, out[0]), (1, 5));
    }

    #[test]
    fn missing_counters_are_not_found() {
        let mut out = [9u64; 2];
        let found = parse_counters(
            b"pswpout 4\n",
            &["thp_underused_split_page", "pswpout"],
            &mut out,
        )
        .unwrap();
        assert_eq!(found, 0b10);
        assert_eq!(out, [9, 4]);
    }

    #[test]
    fn bad_values_name_the_line_and_counter() {
        let text = b"nr_free_pages 1\nthp_split_pmd 12x\n";
        let err = parse_counters(text, &["thp_split_pmd"], &mut [0]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/proc/vmstat line 2: counter thp_split_pmd: value is not a decimal u64"
        );
        let overflow = b"thp_split_pmd 18446744073709551616\n";
        assert!(parse_counters(overflow, &["thp_split_pmd"], &mut [0]).is_err());
        // Unwanted counters are never parsed, so junk in them is ignored.
        assert!(parse_counters(b"other zz\n", &["thp_split_pmd"], &mut [0]).is_ok());
    }

    #[test]
    fn this_hosts_vmstat_parses() {
        // Every Linux since 5.7 has all nine counters.
        let text = std::fs::read(VMSTAT_PATH).unwrap();
        let mut out = [0u64; 9];
        let found = parse_counters(&text, &MODEL_COUNTERS, &mut out).unwrap();
        assert_eq!(
            found, 0x1ff,
            "missing counters in this host's {VMSTAT_PATH}"
        );
    }
}
