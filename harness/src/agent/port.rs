//! The guest end of the virtio-serial port named `org.pinfuzz.0`.
//!
//! The port's node is `/dev/vportNpM`; which N and M depends on device
//! probe order, so it is found by name through
//! `/sys/class/virtio-ports/*/name`. While no host is connected to the
//! chardev socket, a read returns 0 (drivers/char/virtio_console.c:
//! `port_fops_read`, "If nothing's connected on the host just return 0")
//! and poll reports POLLHUP at once; [`Port`] turns that into waiting, so
//! the serving loop sees one endless byte stream.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Name of the port (`-device virtserialport,name=…` on the host).
pub const PORT_NAME: &str = "org.pinfuzz.0";

/// Find the device node of the port called `name`, waiting up to `wait`
/// for the virtio driver to register it.
pub fn find_port(name: &str, wait: Duration) -> Result<PathBuf> {
    let deadline = Instant::now() + wait;
    loop {
        if let Ok(dir) = fs::read_dir("/sys/class/virtio-ports") {
            for entry in dir.flatten() {
                let port_name = fs::read_to_string(entry.path().join("name")).unwrap_or_default();
                if port_name.trim_end() == name {
                    let node = PathBuf::from("/dev").join(entry.file_name());
                    if node.exists() {
                        return Ok(node);
                    }
                }
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "no virtio-serial port named {name} under /sys/class/virtio-ports after {wait:?} \
                 (is QEMU started with -device virtserialport,name={name}?)"
            );
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The open port.
#[derive(Debug)]
pub struct Port {
    file: File,
}

impl Port {
    /// Open the port's node read-write.
    pub fn open(path: &std::path::Path) -> Result<Port> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("open virtio port {}", path.display()))?;
        Ok(Port { file })
    }
}

impl Read for Port {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.file.read(buf) {
                // No host connected: wait for one instead of reporting EOF.
                Ok(0) if !buf.is_empty() => thread::sleep(Duration::from_millis(10)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
}

impl Write for Port {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
