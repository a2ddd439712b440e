//! Swap in the guest: a zram device formatted and enabled by the agent at
//! boot, when the kernel command line asks for it
//! (`pinfuzz_agent.swap_mib=N`, from `GuestOptions::swap_mib`).
//!
//! zram is a compressed RAM block device; its module comes from the
//! kernel image package (recorded at provisioning, loaded by the agent
//! with the other extra modules before this runs). The guest has no
//! `mkswap` or `swapon` binaries, so the agent writes the swap header
//! itself (the layout of `union swap_header`, include/linux/swap.h: version
//! 1, last page, no bad pages, `SWAPSPACE2` at the end of the first page)
//! and calls swapon(2).

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The zram device the module creates at load (`num_devices` defaults to 1).
pub const ZRAM_SYSFS: &str = "/sys/block/zram0";
/// Its device node (devtmpfs).
pub const ZRAM_DEV: &str = "/dev/zram0";

/// The first page of a swap area of `size` bytes, as mkswap writes it.
pub fn swap_header(size: u64, page_size: usize) -> Result<Vec<u8>> {
    let pages = size / page_size as u64;
    if pages < 10 {
        bail!("a swap area of {size} bytes is too small");
    }
    let last_page =
        u32::try_from(pages - 1).with_context(|| format!("{pages} pages do not fit a u32"))?;
    let mut page = vec![0u8; page_size];
    // struct { char bootbits[1024]; __u32 version, last_page, nr_badpages; ... } info;
    page[1024..1028].copy_from_slice(&1u32.to_ne_bytes());
    page[1028..1032].copy_from_slice(&last_page.to_ne_bytes());
    page[page_size - 10..].copy_from_slice(b"SWAPSPACE2");
    Ok(page)
}

/// Size zram0 to `mib` MiB, write a swap header on it and enable it.
pub fn setup_zram(mib: u32) -> Result<()> {
    let sysfs = Path::new(ZRAM_SYSFS);
    if !sysfs.exists() {
        bail!(
            "{ZRAM_SYSFS} does not exist: the zram module did not load (is it in the kernel's \
             extra_modules?)"
        );
    }
    let disksize = sysfs.join("disksize");
    fs::write(&disksize, format!("{mib}M"))
        .with_context(|| format!("write {mib}M to {}", disksize.display()))?;
    // The node appears in devtmpfs when the disk is added; do not race it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !Path::new(ZRAM_DEV).exists() {
        if Instant::now() > deadline {
            bail!("{ZRAM_DEV} did not appear");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: sysconf has no memory-safety preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page_size = usize::try_from(page_size).context("sysconf(_SC_PAGESIZE)")?;
    let header = swap_header(u64::from(mib) << 20, page_size)?;
    let mut dev = fs::OpenOptions::new()
        .write(true)
        .open(ZRAM_DEV)
        .with_context(|| format!("open {ZRAM_DEV}"))?;
    dev.write_all(&header)
        .and_then(|()| dev.sync_all())
        .with_context(|| format!("write the swap header to {ZRAM_DEV}"))?;
    drop(dev);
    let path = std::ffi::CString::new(ZRAM_DEV).expect("no NUL in a constant");
    // SAFETY: `path` is a valid NUL-terminated string for the call's duration.
    if unsafe { libc::swapon(path.as_ptr(), 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context(format!("swapon {ZRAM_DEV}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_has_mkswaps_layout() {
        let page = swap_header(512 << 20, 4096).unwrap();
        assert_eq!(page.len(), 4096);
        assert_eq!(&page[4086..], b"SWAPSPACE2");
        assert_eq!(u32::from_ne_bytes(page[1024..1028].try_into().unwrap()), 1);
        // 512 MiB = 131072 pages; the header page counts, the last index is 131071.
        assert_eq!(
            u32::from_ne_bytes(page[1028..1032].try_into().unwrap()),
            131_071
        );
        assert!(page[1032..4086].iter().all(|&b| b == 0));
        assert!(swap_header(4096, 4096).is_err());
    }
}
