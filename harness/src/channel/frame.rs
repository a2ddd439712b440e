//! Frames: the byte layer of the host–guest channel.
//!
//! A frame is a 16-byte header followed by the payload:
//!
//! | bytes  | field                                                   |
//! |--------|---------------------------------------------------------|
//! | 0..4   | magic `PNFZ`                                            |
//! | 4..6   | protocol version, little endian ([`PROTOCOL_VERSION`])  |
//! | 6..8   | reserved, must be 0                                     |
//! | 8..12  | payload length, little endian, at most [`MAX_PAYLOAD`]  |
//! | 12..16 | crc32 (IEEE) of header bytes 0..12 and the payload      |
//!
//! The checksum covers the header too, so a corrupted length is caught
//! as surely as a corrupted payload. [`FrameDecoder`] is incremental: it
//! accepts bytes as they arrive (a read may time out in the middle of a
//! frame on the host side) and never loses a partial frame.

use std::io::{self, Read, Write};

use thiserror::Error;

/// Version of the frame layout and of the messages in `channel::message`.
/// Bump it whenever either changes incompatibly.
pub const PROTOCOL_VERSION: u16 = 3;
/// First four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"PNFZ";
/// Bytes in a frame header.
pub const HEADER_LEN: usize = 16;
/// Largest payload accepted: a step observation of 16 mappings × 1024
/// pages × 5 processes is about 2 MiB, so 64 MiB leaves room without
/// letting a corrupt length make the reader allocate gigabytes.
pub const MAX_PAYLOAD: u32 = 64 << 20;

/// Why a frame was rejected.
#[derive(Debug, Error)]
pub enum FrameError {
    /// The peer closed the stream at a frame boundary.
    #[error("channel closed by the peer")]
    Closed,
    /// The stream ended inside a frame.
    #[error("short frame: stream ended after {got} of {expected} bytes")]
    Truncated {
        /// Bytes the frame needed (header, or header + payload).
        expected: usize,
        /// Bytes that arrived.
        got: usize,
    },
    /// The first four bytes are not [`MAGIC`].
    #[error("bad frame magic {0:02x?} (expected \"PNFZ\"): not a pinfuzz channel, or out of sync")]
    BadMagic([u8; 4]),
    /// The peer speaks another protocol version.
    #[error(
        "protocol version mismatch: peer sent {got}, this side speaks {expected} \
         (rebuild the agent and the host binary from the same source)"
    )]
    Version {
        /// Version in the frame.
        got: u16,
        /// [`PROTOCOL_VERSION`].
        expected: u16,
    },
    /// The reserved header field is not zero.
    #[error("reserved frame header field is {0:#06x}, must be 0")]
    Reserved(u16),
    /// The payload length exceeds [`MAX_PAYLOAD`].
    #[error("oversized frame: payload length {len} exceeds the limit of {max} bytes")]
    TooLarge {
        /// Length in the header.
        len: u32,
        /// [`MAX_PAYLOAD`].
        max: u32,
    },
    /// The checksum does not match.
    #[error("frame checksum mismatch: header says {expected:#010x}, computed {computed:#010x}")]
    Checksum {
        /// crc32 in the header.
        expected: u32,
        /// crc32 of what arrived.
        computed: u32,
    },
    /// Reading or writing the stream failed.
    #[error("channel i/o: {0}")]
    Io(#[from] io::Error),
}

/// The header and checksum of a frame carrying `payload`.
///
/// # Panics
/// If `payload` is longer than [`MAX_PAYLOAD`] (a bug in the sender:
/// messages are bounded by construction).
pub fn encode_header(payload: &[u8]) -> [u8; HEADER_LEN] {
    header_of(&[payload])
}

/// The header of a frame whose payload is `parts` joined.
fn header_of(parts: &[&[u8]]) -> [u8; HEADER_LEN] {
    let len = u32::try_from(parts.iter().map(|p| p.len()).sum::<usize>())
        .ok()
        .filter(|len| *len <= MAX_PAYLOAD)
        .expect("message payloads are bounded far below MAX_PAYLOAD");
    let mut header = [0u8; HEADER_LEN];
    header[0..4].copy_from_slice(&MAGIC);
    header[4..6].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    header[8..12].copy_from_slice(&len.to_le_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[..12]);
    for part in parts {
        hasher.update(part);
    }
    header[12..16].copy_from_slice(&hasher.finalize().to_le_bytes());
    header
}

fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header);
    hasher.update(payload);
    hasher.finalize()
}

/// Write one frame with a single `write_all` (header and payload in one
/// buffer, so a frame is never interleaved with another writer's bytes at
/// the syscall level).
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> Result<(), FrameError> {
    let mut buf = Vec::new();
    push_frame_parts(&mut buf, &[payload]);
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

/// Append the whole frame of the payload `parts` joined to `out` (frames
/// are self-delimiting: several can go out in one write).
///
/// # Panics
/// As [`encode_header`].
pub fn push_frame_parts(out: &mut Vec<u8>, parts: &[&[u8]]) {
    let header = header_of(parts);
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.reserve(HEADER_LEN + len);
    out.extend_from_slice(&header);
    for part in parts {
        out.extend_from_slice(part);
    }
}

/// Check a complete header; returns the payload length.
fn check_header(header: &[u8]) -> Result<u32, FrameError> {
    let magic: [u8; 4] = header[0..4].try_into().expect("4-byte slice");
    if magic != MAGIC {
        return Err(FrameError::BadMagic(magic));
    }
    let version = u16::from_le_bytes(header[4..6].try_into().expect("2-byte slice"));
    if version != PROTOCOL_VERSION {
        return Err(FrameError::Version {
            got: version,
            expected: PROTOCOL_VERSION,
        });
    }
    let reserved = u16::from_le_bytes(header[6..8].try_into().expect("2-byte slice"));
    if reserved != 0 {
        return Err(FrameError::Reserved(reserved));
    }
    let len = u32::from_le_bytes(header[8..12].try_into().expect("4-byte slice"));
    if len > MAX_PAYLOAD {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_PAYLOAD,
        });
    }
    Ok(len)
}

/// Incremental frame decoder: feed it bytes, take out whole payloads.
///
/// After an error the decoder is poisoned in the sense that its buffer
/// may hold garbage; the channel's users treat any frame error as fatal
/// for the connection (a guest is restarted, the agent drops the host
/// connection's state), so no resynchronisation is attempted.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    /// Append bytes that arrived.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Forget any partial frame (after the peer reconnected).
    pub fn reset(&mut self) {
        self.buf.clear();
    }

    /// How many more bytes the next frame needs (0 if one is complete).
    /// Checks the header as soon as it is complete, so a bad header is
    /// reported without waiting for a payload that may never come.
    pub fn missing(&self) -> Result<usize, FrameError> {
        if self.buf.len() < HEADER_LEN {
            return Ok(HEADER_LEN - self.buf.len());
        }
        let len = check_header(&self.buf[..HEADER_LEN])? as usize;
        Ok((HEADER_LEN + len).saturating_sub(self.buf.len()))
    }

    /// The next complete payload, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if self.missing()? > 0 {
            return Ok(None);
        }
        let len = check_header(&self.buf[..HEADER_LEN])? as usize;
        let expected = u32::from_le_bytes(self.buf[12..16].try_into().expect("4-byte slice"));
        let payload = &self.buf[HEADER_LEN..HEADER_LEN + len];
        let computed = checksum(&self.buf[..12], payload);
        if computed != expected {
            return Err(FrameError::Checksum { expected, computed });
        }
        let payload = payload.to_vec();
        self.buf.drain(..HEADER_LEN + len);
        Ok(Some(payload))
    }

    /// Read from `r` until a whole frame is buffered and return its payload.
    ///
    /// A read that times out (`WouldBlock` / `TimedOut`) is returned as
    /// `FrameError::Io` with the partial frame kept: calling again resumes.
    pub fn read_frame(&mut self, r: &mut impl Read) -> Result<Vec<u8>, FrameError> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            if let Some(payload) = self.next_frame()? {
                return Ok(payload);
            }
            let want = self.missing()?.min(chunk.len());
            let n = match r.read(&mut chunk[..want]) {
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err.into()),
            };
            if n == 0 {
                if self.buf.is_empty() {
                    return Err(FrameError::Closed);
                }
                let got = self.buf.len();
                let expected = got + self.missing()?;
                return Err(FrameError::Truncated { expected, got });
            }
            self.push(&chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut v = encode_header(payload).to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn frames_round_trip_byte_by_byte() {
        let mut bytes = frame(b"hello");
        bytes.extend(frame(b""));
        bytes.extend(frame(&[7u8; 1000]));
        let mut dec = FrameDecoder::new();
        let mut out = Vec::new();
        for b in bytes {
            dec.push(&[b]);
            while let Some(p) = dec.next_frame().expect("valid frames") {
                out.push(p);
            }
        }
        assert_eq!(out, vec![b"hello".to_vec(), Vec::new(), vec![7u8; 1000]]);
        assert_eq!(dec.pending(), 0);
    }

    #[test]
    fn corrupt_payload_is_a_checksum_error() {
        let mut bytes = frame(b"payload");
        bytes[HEADER_LEN + 2] ^= 0x40;
        let mut dec = FrameDecoder::new();
        dec.push(&bytes);
        let err = dec.next_frame().expect_err("corrupt payload");
        assert!(matches!(err, FrameError::Checksum { .. }), "{err}");
    }

    #[test]
    fn corrupt_length_is_caught() {
        let mut bytes = frame(b"payload");
        bytes[8] = 3; // claims 3 bytes: checksum over header+3 bytes fails
        let mut dec = FrameDecoder::new();
        dec.push(&bytes);
        let err = dec.next_frame().expect_err("corrupt length");
        assert!(matches!(err, FrameError::Checksum { .. }), "{err}");
    }

    #[test]
    fn header_errors_are_named() {
        let good = frame(b"x");
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        let mut bad_version = good.clone();
        bad_version[4] = 99;
        let mut bad_reserved = good.clone();
        bad_reserved[6] = 1;
        let mut too_large = good.clone();
        too_large[8..12].copy_from_slice(&(MAX_PAYLOAD + 1).to_le_bytes());
        for (bytes, want) in [
            (bad_magic, "bad frame magic"),
            (bad_version, "protocol version mismatch: peer sent 99"),
            (bad_reserved, "reserved frame header field"),
            (too_large, "oversized frame"),
        ] {
            let mut dec = FrameDecoder::new();
            dec.push(&bytes[..HEADER_LEN]);
            let err = dec.next_frame().expect_err("bad header");
            assert!(err.to_string().contains(want), "{err} !~ {want}");
        }
    }

    #[test]
    fn short_stream_is_truncated_and_empty_stream_is_closed() {
        let bytes = frame(b"0123456789");
        let mut dec = FrameDecoder::new();
        let err = dec
            .read_frame(&mut &bytes[..20])
            .expect_err("stream ends mid-frame");
        assert!(
            matches!(
                err,
                FrameError::Truncated {
                    expected: 26,
                    got: 20
                }
            ),
            "{err}"
        );
        let mut dec = FrameDecoder::new();
        let err = dec.read_frame(&mut &[][..]).expect_err("empty stream");
        assert!(matches!(err, FrameError::Closed), "{err}");
    }
}
