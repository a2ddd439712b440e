//! Starting QEMU for one guest and capturing its console.
//!
//! The command line is built as data ([`QemuConfig::args`]) so tests can
//! check it. The serial console (ttyS0) is QEMU's stdout; a reader thread
//! copies it to the console file and into a shared buffer that the
//! supervisor scans ([`ConsoleLog`]). QEMU gets `PR_SET_PDEATHSIG`
//! SIGKILL, so a dying pinfuzz never leaves guests behind.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// The guest's virtual hardware and boot parameters.
#[derive(Clone, Debug)]
pub struct QemuConfig {
    /// `qemu-system-x86_64` or another path.
    pub binary: PathBuf,
    /// Use KVM (`-accel kvm -cpu host`) instead of TCG (`-accel tcg -cpu max`).
    pub kvm: bool,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// The kernel image: a bzImage, or an uncompressed vmlinux with a PVH note.
    pub kernel: PathBuf,
    /// Firmware (`-bios`), e.g. qboot; QEMU's SeaBIOS if `None`.
    pub firmware: Option<PathBuf>,
    /// The initramfs.
    pub initrd: PathBuf,
    /// The kernel command line.
    pub cmdline: String,
    /// Unix socket QEMU listens on for the virtio-serial port.
    pub channel_socket: PathBuf,
}

/// Name of the virtio-serial port (the agent finds it by this name).
pub use crate::agent::port::PORT_NAME;

impl QemuConfig {
    /// The arguments after the binary.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        // No default devices (VGA, NIC, floppy, CD-ROM, parallel port): less
        // to emulate and to probe at boot; -nographic keeps QEMU off any display.
        push(&["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"]);
        if self.kvm {
            push(&["-accel", "kvm", "-cpu", "host"]);
        } else {
            push(&["-accel", "tcg", "-cpu", "max"]);
        }
        if let Some(bios) = &self.firmware {
            a.push("-bios".to_string());
            a.push(bios.display().to_string());
        }
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        let mem = self.memory_mib.to_string();
        push(&["-smp", "1", "-m", &mem]);
        push(&["-serial", "stdio", "-monitor", "none"]);
        let kernel = self.kernel.display().to_string();
        let initrd = self.initrd.display().to_string();
        push(&[
            "-kernel",
            &kernel,
            "-initrd",
            &initrd,
            "-append",
            &self.cmdline,
        ]);
        let chardev = format!(
            "socket,id=pinfuzz0,path={},server=on,wait=off",
            self.channel_socket.display()
        );
        let port = format!("virtserialport,bus=vser0.0,chardev=pinfuzz0,name={PORT_NAME}");
        push(&["-device", "virtio-serial-pci,id=vser0"]);
        push(&["-chardev", &chardev, "-device", &port]);
        a
    }
}

/// In-memory console kept per QEMU: a guest that runs programs for days
/// prints two marker lines per program; past this size the oldest half is
/// dropped (the console file keeps everything).
const CONSOLE_MEMORY: usize = 8 << 20;

/// What the console said so far, shared with the reader thread.
#[derive(Debug, Default)]
struct ConsoleState {
    /// Console offset of `text[0]` (bytes dropped from memory before it).
    base: usize,
    text: String,
    last_output: Option<Instant>,
    closed: bool,
}

/// The captured console of a running QEMU.
#[derive(Debug, Default)]
pub struct ConsoleLog {
    state: Mutex<ConsoleState>,
    changed: Condvar,
}

impl ConsoleLog {
    fn append(&self, bytes: &[u8]) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.text
            .push_str(&String::from_utf8_lossy(bytes).replace('\r', ""));
        if st.text.len() > CONSOLE_MEMORY {
            let mut cut = st.text.len() / 2;
            while !st.text.is_char_boundary(cut) {
                cut += 1;
            }
            st.text.drain(..cut);
            st.base += cut;
        }
        st.last_output = Some(Instant::now());
        self.changed.notify_all();
    }

    fn close(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.closed = true;
        self.changed.notify_all();
    }

    /// Console bytes so far (an offset that stays valid as a mark).
    pub fn len(&self) -> usize {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.base + st.text.len()
    }

    /// Nothing printed yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The console from offset `from` on (from the oldest byte still in
    /// memory if `from` was dropped).
    pub fn since(&self, from: usize) -> String {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        tail_from(&st, from).to_string()
    }

    /// When the console last printed something.
    pub fn last_output(&self) -> Option<Instant> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_output
    }

    /// QEMU closed its stdout (it exited).
    pub fn is_closed(&self) -> bool {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).closed
    }

    /// Wait until `pred(text since from)` holds, the console closes, or
    /// `timeout` passes; returns whether `pred` held.
    pub fn wait_for(&self, from: usize, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if pred(tail_from(&st, from)) {
                return true;
            }
            let now = Instant::now();
            if st.closed || now >= deadline {
                return false;
            }
            st = self
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

fn tail_from(st: &ConsoleState, from: usize) -> &str {
    let start = from.saturating_sub(st.base);
    // `from` came from `len()`, a char boundary, unless it was dropped.
    st.text.get(start..).unwrap_or("")
}

/// A running QEMU process.
#[derive(Debug)]
pub struct Qemu {
    child: Child,
    /// Its console.
    pub console: Arc<ConsoleLog>,
    stderr: Arc<Mutex<String>>,
    /// When it was started.
    pub started: Instant,
}

impl Qemu {
    /// Start QEMU; its console goes to `console_file` and to [`Qemu::console`].
    pub fn spawn(cfg: &QemuConfig, console_file: &Path) -> Result<Qemu> {
        let mut file = File::create(console_file)
            .with_context(|| format!("create console file {}", console_file.display()))?;
        let mut cmd = Command::new(&cfg.binary);
        cmd.args(cfg.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe and touches no memory of the
        // parent; this runs in the forked child before exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child = cmd.spawn().with_context(|| {
            format!(
                "start {} (install it with `apt-get install --no-install-recommends \
                 qemu-system-x86`)",
                cfg.binary.display()
            )
        })?;
        let console = Arc::new(ConsoleLog::default());
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let log = Arc::clone(&console);
        thread::Builder::new()
            .name("qemu-console".into())
            .spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    match stdout.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let _ = file.write_all(&buf[..n]);
                            log.append(&buf[..n]);
                        }
                    }
                }
                let _ = file.flush();
                log.close();
            })
            .context("spawn console reader thread")?;
        let stderr_text = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&stderr_text);
        thread::Builder::new()
            .name("qemu-stderr".into())
            .spawn(move || {
                let mut text = String::new();
                let _ = stderr.read_to_string(&mut text);
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&text);
            })
            .context("spawn stderr reader thread")?;
        Ok(Qemu {
            child,
            console,
            stderr: stderr_text,
            started,
        })
    }

    /// QEMU's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if QEMU has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Wait up to `timeout` for QEMU to exit on its own.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// What QEMU printed on stderr.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Kill QEMU (SIGKILL) and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_memory_is_bounded_and_marks_stay_valid() {
        let log = ConsoleLog::default();
        log.append(b"boot\r\n");
        let mark = log.len();
        assert_eq!(mark, 5);
        log.append(b"pinfuzz: begin 1\n");
        assert_eq!(log.since(mark), "pinfuzz: begin 1\n");
        let line = "x".repeat(1023) + "\n";
        for _ in 0..(CONSOLE_MEMORY / 1024 + 10) {
            log.append(line.as_bytes());
        }
        let end = log.len();
        assert!(end > CONSOLE_MEMORY);
        log.append(b"pinfuzz: end 1\n");
        assert_eq!(log.since(end), "pinfuzz: end 1\n");
        // A dropped mark yields what is left, which is bounded.
        assert!(log.since(mark).len() <= CONSOLE_MEMORY);
        assert!(log.wait_for(end, Duration::from_millis(1), |t| t.contains("end 1")));
    }

    #[test]
    fn command_line_has_the_channel_and_console() {
        let cfg = QemuConfig {
            binary: "qemu-system-x86_64".into(),
            kvm: false,
            memory_mib: 1024,
            kernel: "/k/bzImage".into(),
            firmware: None,
            initrd: "/k/initrd.cpio".into(),
            cmdline: "console=ttyS0 panic=-1".into(),
            channel_socket: "/run/g0/chan.sock".into(),
        };
        let args = cfg.args().join(" ");
        for want in [
            "-accel tcg -cpu max",
            "-smp 1 -m 1024",
            "-no-reboot",
            "-serial stdio",
            "-append console=ttyS0 panic=-1",
            "-chardev socket,id=pinfuzz0,path=/run/g0/chan.sock,server=on,wait=off",
            "name=org.pinfuzz.0",
        ] {
            assert!(args.contains(want), "{want} missing in {args}");
        }
        let kvm = QemuConfig { kvm: true, ..cfg }.args().join(" ");
        assert!(kvm.contains("-accel kvm -cpu host"), "{kvm}");
    }
}
