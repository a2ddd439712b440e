//! The host–guest channel: framed, versioned, checksummed messages.
//!
//! The transport is a virtio-serial port (`org.pinfuzz.0`): a unix socket
//! on the host (QEMU's `-chardev socket`), `/dev/vportNp1` in the guest.
//! Each message is one [`frame`] whose payload is the postcard encoding
//! of a [`message::Request`] or [`message::Response`]. [`Channel`] wraps
//! any byte stream; both ends use it.

pub mod frame;
pub mod message;

use std::io::{Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

pub use frame::{FrameDecoder, FrameError, MAX_PAYLOAD, PROTOCOL_VERSION};
pub use message::{BinaryRun, HelloInfo, ModuleInfo, ModuleStatus, Request, Response};

/// Why a message could not be sent or received.
#[derive(Debug, Error)]
pub enum ChannelError {
    /// The frame layer rejected the bytes, or the stream failed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A valid frame whose payload is not a message of the expected type.
    #[error("undecodable {what} message ({len} bytes): {source}")]
    Decode {
        /// `Request` or `Response`.
        what: &'static str,
        /// Payload length.
        len: usize,
        /// postcard's reason.
        source: postcard::Error,
    },
    /// A message that could not be encoded (or is too large for a frame).
    #[error("cannot encode message: {0}")]
    Encode(String),
}

impl ChannelError {
    /// The read timed out (host side, with a read timeout set); the partial
    /// frame is kept and receiving again resumes it.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ChannelError::Frame(FrameError::Io(e))
            if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
    }
}

/// Append the frame of a [`Response::Step`] whose `StepDelta` is
/// already postcard-encoded (by the executor's runner) to `out`: the
/// bytes [`Channel::send`] would write, without decoding and
/// re-encoding the observation. [`Channel::send_frames`] sends them.
pub fn push_step_frame(obs: &[u8], out: &mut Vec<u8>) -> Result<(), ChannelError> {
    if obs.len() >= MAX_PAYLOAD as usize {
        return Err(ChannelError::Encode(format!(
            "step observation of {} bytes exceeds the frame limit of {MAX_PAYLOAD} bytes",
            obs.len()
        )));
    }
    frame::push_frame_parts(out, &[&[Response::STEP_TAG], obs]);
    Ok(())
}

/// One end of the channel over a byte stream `S`.
#[derive(Debug)]
pub struct Channel<S> {
    stream: S,
    decoder: FrameDecoder,
}

impl<S: Read + Write> Channel<S> {
    /// Wrap a connected stream.
    pub fn new(stream: S) -> Channel<S> {
        Channel {
            stream,
            decoder: FrameDecoder::new(),
        }
    }

    /// The underlying stream (to set timeouts).
    pub fn stream(&self) -> &S {
        &self.stream
    }

    /// Forget a partial frame (the peer reconnected).
    pub fn reset(&mut self) {
        self.decoder.reset();
    }

    /// Send one message.
    pub fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), ChannelError> {
        let payload =
            postcard::to_allocvec(msg).map_err(|e| ChannelError::Encode(e.to_string()))?;
        if payload.len() > MAX_PAYLOAD as usize {
            return Err(ChannelError::Encode(format!(
                "message of {} bytes exceeds the frame limit of {MAX_PAYLOAD} bytes",
                payload.len()
            )));
        }
        frame::write_frame(&mut self.stream, &payload)?;
        Ok(())
    }

    /// Send whole frames built by [`push_step_frame`], in one write.
    pub fn send_frames(&mut self, frames: &[u8]) -> Result<(), ChannelError> {
        self.stream.write_all(frames).map_err(FrameError::Io)?;
        self.stream.flush().map_err(FrameError::Io)?;
        Ok(())
    }

    /// Receive one message of type `T` (`what` names it in errors).
    pub fn recv<T: DeserializeOwned>(&mut self, what: &'static str) -> Result<T, ChannelError> {
        let payload = self.decoder.read_frame(&mut self.stream)?;
        postcard::from_bytes(&payload).map_err(|source| ChannelError::Decode {
            what,
            len: payload.len(),
            source,
        })
    }

    /// Receive a request (guest side).
    pub fn recv_request(&mut self) -> Result<Request, ChannelError> {
        self.recv("Request")
    }

    /// Receive a response (host side).
    pub fn recv_response(&mut self) -> Result<Response, ChannelError> {
        self.recv("Response")
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use super::*;
    use crate::obs::delta::StepDelta;
    use crate::obs::{MapObs, OpResult, PageObs, StepObs};
    use crate::op::{MapId, Proc};

    fn pair() -> (Channel<UnixStream>, UnixStream) {
        let (a, b) = UnixStream::pair().expect("socketpair");
        (Channel::new(a), b)
    }

    #[test]
    fn encoded_steps_sent_in_one_write_arrive_as_the_steps_they_encode() {
        let (a, b) = UnixStream::pair().expect("socketpair");
        let (mut host, mut guest) = (Channel::new(a), Channel::new(b));
        let obs = StepObs {
            result: OpResult::Pages(7),
            vmstat: [9, 8, 7, 6, 5, 4, 3, 2, 1],
            maps: vec![MapObs {
                proc: Proc::Parent,
                map: MapId(2),
                pages: vec![PageObs::default(); 3],
            }],
            handles: Vec::new(),
        };
        let mut delta = StepDelta::default();
        delta.diff(None, &obs);
        let bytes = postcard::to_allocvec(&delta).expect("encode");
        let mut frames = Vec::new();
        push_step_frame(&bytes, &mut frames).expect("frame");
        push_step_frame(&bytes, &mut frames).expect("frame");
        guest.send_frames(&frames).expect("send");
        for _ in 0..2 {
            assert_eq!(
                host.recv_response().expect("recv"),
                Response::Step(Box::new(delta.clone()))
            );
        }
    }

    #[test]
    fn requests_and_responses_cross_a_socketpair() {
        let (a, b) = UnixStream::pair().expect("socketpair");
        let (mut host, mut guest) = (Channel::new(a), Channel::new(b));
        let req = Request::RunProgram {
            seq: 7,
            text: "pinfuzz v1\n".into(),
            timeout: Duration::from_secs(5),
        };
        host.send(&req).expect("send");
        assert_eq!(guest.recv_request().expect("recv"), req);
        let step = Response::Step(Box::new(StepDelta {
            result: OpResult::Pages(3),
            vmstat: [1, 2, 3, 4, 5, 6, 7, 8, 9],
            entries: Vec::new(),
            changes: Vec::new(),
        }));
        guest.send(&step).expect("send");
        guest.send(&Response::Pong { nonce: 9 }).expect("send");
        assert_eq!(host.recv_response().expect("recv"), step);
        assert_eq!(
            host.recv_response().expect("recv"),
            Response::Pong { nonce: 9 }
        );
    }

    #[test]
    fn corrupt_frame_is_rejected() {
        let (mut chan, mut raw) = pair();
        let payload = postcard::to_allocvec(&Request::Hello).expect("encode");
        let mut bytes = frame::encode_header(&payload).to_vec();
        bytes.extend_from_slice(&payload);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        raw.write_all(&bytes).expect("write");
        let err = chan.recv_request().expect_err("corrupt");
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
    }

    #[test]
    fn short_frame_then_close_is_truncated() {
        let (mut chan, mut raw) = pair();
        let payload = postcard::to_allocvec(&Request::Ping { nonce: 1 }).expect("encode");
        let header = frame::encode_header(&payload);
        raw.write_all(&header).expect("write");
        drop(raw);
        let err = chan.recv_request().expect_err("short");
        assert!(err.to_string().contains("short frame"), "{err}");
    }

    #[test]
    fn oversized_frame_is_rejected_before_reading_the_payload() {
        let (mut chan, mut raw) = pair();
        let mut header = [0u8; frame::HEADER_LEN];
        header[0..4].copy_from_slice(&frame::MAGIC);
        header[4..6].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        header[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        raw.write_all(&header).expect("write");
        // raw stays open: the error must come from the header alone.
        let err = chan.recv_request().expect_err("oversized");
        assert!(err.to_string().contains("oversized frame"), "{err}");
    }

    #[test]
    fn valid_frame_with_garbage_payload_is_a_decode_error() {
        let (mut chan, mut raw) = pair();
        frame::write_frame(&mut raw, &[0xff, 0xff, 0xff]).expect("write");
        let err = chan.recv_request().expect_err("garbage");
        assert!(err.to_string().contains("undecodable Request"), "{err}");
    }

    #[test]
    fn timeout_keeps_the_partial_frame() {
        let (a, mut raw) = UnixStream::pair().expect("socketpair");
        a.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let mut chan = Channel::new(a);
        let payload = postcard::to_allocvec(&Response::Pong { nonce: 42 }).expect("encode");
        let mut bytes = frame::encode_header(&payload).to_vec();
        bytes.extend_from_slice(&payload);
        raw.write_all(&bytes[..5]).expect("write");
        let err = chan.recv_response().expect_err("times out");
        assert!(err.is_timeout(), "{err}");
        raw.write_all(&bytes[5..]).expect("write");
        assert_eq!(
            chan.recv_response().expect("resumes"),
            Response::Pong { nonce: 42 }
        );
    }
}
