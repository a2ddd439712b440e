//! A writer for cpio "newc" archives, the format the kernel unpacks as an
//! initramfs (`Documentation/driver-api/early-userspace/buffer-format.rst`,
//! `init/initramfs.c`).
//!
//! Each entry is a 110-byte ASCII header (`070701` and 13 eight-digit hex
//! fields), the NUL-terminated name padded to 4 bytes, and the data padded
//! to 4 bytes; the archive ends with an entry named `TRAILER!!!`. Output
//! is deterministic: mtimes, uids and gids are 0 and inode numbers count
//! up, so the same inputs give the same bytes (the initramfs cache keys
//! on them). Written here rather than taken from a crate because it is
//! forty lines and the crates found write only regular files or need a
//! reader too.

use std::io::{self, Write};

/// File type bits of `st_mode`.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// Streams entries into a newc archive.
#[derive(Debug)]
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
    written: u64,
}

impl<W: Write> CpioWriter<W> {
    /// Start an archive.
    pub fn new(out: W) -> CpioWriter<W> {
        CpioWriter {
            out,
            next_ino: 1,
            written: 0,
        }
    }

    /// A directory (`name` without a leading `/`).
    pub fn dir(&mut self, name: &str, perm: u32) -> io::Result<()> {
        self.entry(name, S_IFDIR | perm, 2, (0, 0), &[])
    }

    /// A regular file.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, S_IFREG | perm, 1, (0, 0), data)
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        self.entry(name, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// A character device node (e.g. `dev/console`, 5:1).
    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(name, S_IFCHR | perm, 1, (major, minor), &[])
    }

    /// Write the trailer and return the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> io::Result<()> {
        if name.is_empty() || name.starts_with('/') || name.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cpio entry name {name:?} must be relative and non-empty"),
            ));
        }
        let size = u32::try_from(data.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cpio entry {name} is larger than 4 GiB"),
            )
        })?;
        let ino = if name == "TRAILER!!!" {
            0
        } else {
            self.next_ino
        };
        self.next_ino += 1;
        let namesize = name.len() + 1;
        let header = format!(
            "070701{ino:08x}{mode:08x}{uid:08x}{gid:08x}{nlink:08x}{mtime:08x}{size:08x}\
             {devmajor:08x}{devminor:08x}{rdevmajor:08x}{rdevminor:08x}{namesize:08x}{check:08x}",
            uid = 0,
            gid = 0,
            mtime = 0,
            devmajor = 0,
            devminor = 0,
            rdevmajor = rdev.0,
            rdevminor = rdev.1,
            check = 0,
        );
        debug_assert_eq!(header.len(), 110);
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let pad = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..pad])
    }
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("dev", 0o755).expect("dir");
        w.char_dev("dev/console", 0o600, 5, 1).expect("dev");
        w.file("init", 0o755, b"#!/bin/true\n").expect("file");
        w.file("lib/odd", 0o644, b"12345").expect("file");
        w.symlink("sbin", "bin").expect("link");
        w.finish().expect("finish")
    }

    #[test]
    fn layout_is_aligned_and_headers_are_exact() {
        let bytes = sample();
        assert_eq!(bytes.len() % 4, 0);
        // First entry: "dev", a directory, inode 1.
        let head = std::str::from_utf8(&bytes[..110]).expect("ascii header");
        assert_eq!(&head[..6], "070701");
        assert_eq!(&head[6..14], "00000001");
        assert_eq!(&head[14..22], format!("{:08x}", 0o040755));
        assert_eq!(&head[94..102], "00000004"); // namesize "dev\0"
        assert_eq!(&bytes[110..114], b"dev\0");
        // Output is deterministic.
        assert_eq!(bytes, sample());
        let tail = b"TRAILER!!!\0";
        assert!(bytes.windows(tail.len()).any(|w| w == tail));
    }

    #[test]
    fn bad_names_are_refused() {
        let mut w = CpioWriter::new(Vec::new());
        assert!(w.file("/init", 0o755, b"").is_err());
        assert!(w.file("", 0o755, b"").is_err());
    }

    /// The system's `cpio` reads what we write (skipped with a message if
    /// the tool is not installed: it is only a second opinion).
    #[test]
    fn gnu_cpio_lists_the_archive() {
        let Ok(mut child) = Command::new("cpio")
            .args(["-t", "-v", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        else {
            eprintln!("cpio(1) not installed; layout checked by the other tests only");
            return;
        };
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&sample())
            .expect("write");
        let out = child.wait_with_output().expect("cpio runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8_lossy(&out.stdout);
        for needle in ["dev/console", "init", "lib/odd", "sbin -> bin"] {
            assert!(listing.contains(needle), "{needle} missing in:\n{listing}");
        }
        assert!(
            listing.contains("5,"),
            "char device numbers missing:\n{listing}"
        );
    }
}
