//! Framing of the executor's pipes (runner → caller, runner ⇄ child).
//!
//! A frame is `[len: u32 LE][kind: u8][payload: len - 1 bytes]`. The
//! payload is postcard for every kind except [`KIND_FAULT`], whose fixed
//! 20-byte layout ([`FaultRecord`]) is written by a signal handler that may
//! not allocate or serialize. A pipe is reliable and ordered, so there is no
//! checksum; the length is bounded ([`MAX_FRAME`]) so a corrupt stream is
//! reported instead of allocating gigabytes. Encoding appends to a caller's
//! buffer (reused across steps, no allocation once it is large enough);
//! decoding works on a growing byte buffer fed by non-blocking reads
//! ([`FrameReader`]) or on a blocking descriptor ([`read_frame`]).

use std::io::{self, Read};

use anyhow::{Context, bail};
use serde::Serialize;

/// One step's observation (runner → caller, `StepTimes` then postcard
/// `StepObs`).
pub const KIND_STEP: u8 = 1;
/// The runner stopped on an error (runner → caller, postcard `RunnerError`).
pub const KIND_ERROR: u8 = 2;
/// The runner finished every step (runner → caller, postcard `RunnerDone`).
pub const KIND_DONE: u8 = 3;
/// A command for a child (runner → child, postcard `Cmd`).
pub const KIND_CMD: u8 = 4;
/// A child's answer (child → runner, postcard `Reply`).
pub const KIND_REPLY: u8 = 5;
/// An unexpected SIGSEGV/SIGBUS (raw [`FaultRecord`]), from the signal handler.
pub const KIND_FAULT: u8 = 0xff;

/// Largest accepted frame (kind byte and payload).
pub const MAX_FRAME: usize = 256 << 20;

/// Bytes in front of the payload: length and kind.
pub const HEADER: usize = 5;

/// Append one frame of `kind` holding `value` (postcard) to `buf`.
pub fn encode<T: Serialize + ?Sized>(kind: u8, value: &T, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    encode_after(kind, &[], value, buf)
}

/// Append one frame of `kind` holding the raw bytes `head`, then `value`
/// (postcard), to `buf`.
pub fn encode_after<T: Serialize + ?Sized>(
    kind: u8,
    head: &[u8],
    value: &T,
    buf: &mut Vec<u8>,
) -> anyhow::Result<()> {
    let start = buf.len();
    buf.extend_from_slice(&[0, 0, 0, 0, kind]);
    buf.extend_from_slice(head);
    let taken = std::mem::take(buf);
    *buf = postcard::to_extend(value, taken).context("postcard-encode a frame")?;
    let len = buf.len() - start - 4;
    if len > MAX_FRAME {
        bail!("frame of {len} bytes exceeds the {MAX_FRAME}-byte limit");
    }
    buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// An unexpected fault signal, as the handler saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultRecord {
    /// `SIGSEGV` or `SIGBUS`.
    pub signo: i32,
    /// `si_code` (`SEGV_MAPERR`, `SEGV_ACCERR`, `BUS_ADRERR`, ...).
    pub code: i32,
    /// `si_addr`: the faulting address.
    pub addr: u64,
    /// The process that faulted.
    pub pid: i32,
}

/// Size of a whole fault frame (header included).
pub const FAULT_FRAME_LEN: usize = HEADER + 20;

impl FaultRecord {
    /// The whole frame; `const` and allocation-free for the signal handler.
    pub const fn into_frame(self) -> [u8; FAULT_FRAME_LEN] {
        let mut out = [0u8; FAULT_FRAME_LEN];
        let len = (1 + 20u32).to_le_bytes();
        let signo = self.signo.to_le_bytes();
        let code = self.code.to_le_bytes();
        let addr = self.addr.to_le_bytes();
        let pid = self.pid.to_le_bytes();
        let mut i = 0;
        while i < 4 {
            out[i] = len[i];
            out[HEADER + i] = signo[i];
            out[HEADER + 4 + i] = code[i];
            out[HEADER + 16 + i] = pid[i];
            i += 1;
        }
        out[4] = KIND_FAULT;
        let mut j = 0;
        while j < 8 {
            out[HEADER + 8 + j] = addr[j];
            j += 1;
        }
        out
    }

    /// Decode the payload of a [`KIND_FAULT`] frame.
    pub fn from_payload(payload: &[u8]) -> anyhow::Result<FaultRecord> {
        let Ok(p) = <&[u8; 20]>::try_from(payload) else {
            bail!(
                "fault frame payload of {} bytes, expected 20",
                payload.len()
            );
        };
        let word = |i: usize| i32::from_le_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
        let mut addr = [0u8; 8];
        addr.copy_from_slice(&p[8..16]);
        Ok(FaultRecord {
            signo: word(0),
            code: word(4),
            addr: u64::from_le_bytes(addr),
            pid: word(16),
        })
    }
}

impl std::fmt::Display for FaultRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.signo {
            libc::SIGSEGV => "SIGSEGV",
            libc::SIGBUS => "SIGBUS",
            _ => "signal",
        };
        write!(
            f,
            "unexpected {name} (signo {}, si_code {}) at 0x{:x} in pid {}",
            self.signo, self.code, self.addr, self.pid
        )
    }
}

/// Splits a byte stream into frames.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
}

impl FrameReader {
    /// Append bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Read once from `r` (which may be non-blocking) into the buffer;
    /// `Ok(0)` at end of stream.
    pub fn fill_from(&mut self, r: &mut impl Read) -> io::Result<usize> {
        let mut chunk = [0u8; 65536];
        let n = r.read(&mut chunk)?;
        self.push(&chunk[..n]);
        Ok(n)
    }

    /// The next complete frame as (kind, payload), if one is buffered.
    pub fn next_frame(&mut self) -> anyhow::Result<Option<(u8, &[u8])>> {
        let avail = &self.buf[self.start..];
        if avail.len() < HEADER {
            return Ok(None);
        }
        let len = u32::from_le_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
        if len == 0 || len > MAX_FRAME {
            bail!("corrupt frame stream: frame length {len} (limit {MAX_FRAME})");
        }
        if avail.len() < 4 + len {
            return Ok(None);
        }
        let begin = self.start;
        self.start += 4 + len;
        Ok(Some((
            self.buf[begin + 4],
            &self.buf[begin + HEADER..begin + 4 + len],
        )))
    }

    /// Bytes of an incomplete frame still buffered (a stream that ends with
    /// some is truncated).
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }
}

/// Read one whole frame from a blocking reader into `buf` (replacing its
/// contents); `Ok(None)` on end of stream before the first byte. Used on the
/// synchronous child pipes, where one frame is in flight at a time.
pub fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> anyhow::Result<Option<u8>> {
    let mut head = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => bail!("stream ended inside a frame header"),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("read frame header"),
        }
    }
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len == 0 || len > MAX_FRAME {
        bail!("corrupt frame stream: frame length {len} (limit {MAX_FRAME})");
    }
    buf.clear();
    buf.resize(len - 1, 0);
    r.read_exact(buf).context("read frame payload")?;
    Ok(Some(head[4]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Probe {
        a: u64,
        b: String,
    }

    #[test]
    fn frames_round_trip_through_arbitrary_chunking() {
        let mut wire = Vec::new();
        for i in 0..50u64 {
            let probe = Probe {
                a: i * 1_000_003,
                b: "x".repeat(i as usize * 37),
            };
            encode(KIND_STEP, &probe, &mut wire).unwrap();
        }
        wire.extend_from_slice(
            &FaultRecord {
                signo: libc::SIGSEGV,
                code: 2,
                addr: 0x2000_0000_1000,
                pid: 42,
            }
            .into_frame(),
        );
        // Feed in chunks of varying size, as a pipe may deliver them.
        let mut reader = FrameReader::default();
        let mut decoded = Vec::new();
        let mut fault = None;
        let mut pos = 0;
        let mut step = 1;
        while pos < wire.len() {
            let end = (pos + step).min(wire.len());
            reader.push(&wire[pos..end]);
            pos = end;
            step = step * 3 % 1021 + 1;
            while let Some((kind, payload)) = reader.next_frame().unwrap() {
                match kind {
                    KIND_STEP => decoded.push(postcard::from_bytes::<Probe>(payload).unwrap()),
                    KIND_FAULT => fault = Some(FaultRecord::from_payload(payload).unwrap()),
                    k => panic!("unexpected kind {k}"),
                }
            }
        }
        assert_eq!(reader.pending(), 0);
        assert_eq!(decoded.len(), 50);
        assert_eq!(decoded[7].a, 7_000_021);
        assert_eq!(decoded[49].b.len(), 49 * 37);
        let fault = fault.unwrap();
        assert_eq!(
            (fault.signo, fault.code, fault.addr, fault.pid),
            (11, 2, 0x2000_0000_1000, 42)
        );
    }

    #[test]
    fn blocking_reads_see_frames_and_end_of_stream() {
        let mut wire = Vec::new();
        encode(KIND_CMD, &(1u32, 2u64), &mut wire).unwrap();
        encode(KIND_REPLY, &"done", &mut wire).unwrap();
        let mut r = &wire[..];
        let mut buf = Vec::new();
        assert_eq!(read_frame(&mut r, &mut buf).unwrap(), Some(KIND_CMD));
        assert_eq!(postcard::from_bytes::<(u32, u64)>(&buf).unwrap(), (1, 2));
        assert_eq!(read_frame(&mut r, &mut buf).unwrap(), Some(KIND_REPLY));
        assert_eq!(postcard::from_bytes::<&str>(&buf).unwrap(), "done");
        assert_eq!(read_frame(&mut r, &mut buf).unwrap(), None);
    }

    #[test]
    fn corrupt_and_truncated_streams_are_errors() {
        let mut reader = FrameReader::default();
        reader.push(&[0xff, 0xff, 0xff, 0x7f, 1]);
        let err = reader.next_frame().unwrap_err().to_string();
        assert!(err.contains("corrupt frame stream"), "{err}");

        let mut wire = Vec::new();
        encode(KIND_STEP, &12345u64, &mut wire).unwrap();
        wire.truncate(wire.len() - 1);
        let mut r = &wire[..];
        assert!(read_frame(&mut r, &mut Vec::new()).is_err());
        let mut reader = FrameReader::default();
        reader.push(&wire);
        assert!(reader.next_frame().unwrap().is_none());
        assert!(reader.pending() > 0);
    }

    #[test]
    fn encoding_reuses_the_buffer() {
        let mut buf = Vec::with_capacity(4096);
        let cap = buf.capacity();
        for _ in 0..100 {
            buf.clear();
            encode(KIND_STEP, &[7u64; 64][..], &mut buf).unwrap();
        }
        assert_eq!(buf.capacity(), cap);
    }
}
