//! The one framed receive state machine: [`Receiver`]. Every framed receive call runs it —
//! [`Engine::receiver`](crate::Engine::receiver) with read-ahead, and the plain calls
//! ([`Engine::recv_any`](crate::Engine::recv_any), `recv_array`, `recv_array_into`,
//! `recv_any_after_header`, the header of a striped array) as a receiver with no read-ahead,
//! which never reads past the message it is in. What a rejected message does to the stream
//! is decided here, once (see the [crate docs](crate#rejected-messages)).

use std::os::fd::AsFd;

use crate::Result;
use crate::buffer::AlignedBuf;
use crate::driver::Transfer;
use crate::dtype::DType;
use crate::frame::{self, FrameError, Header, PREFIX_LEN, TRAILER_LEN};

use super::array::{AnyArray, Array, Element};
use super::{Wire, check_trailer, in_message, shape_mismatch};

/// Read-ahead size of a [`Receiver`]: one completion (or `read`) may bring this many bytes of
/// consecutive small messages.
pub const READ_AHEAD: usize = 256 << 10;

/// Largest piece read at once while discarding a rejected message's payload.
const DISCARD_CHUNK: usize = 1 << 20;

/// Receives framed arrays from one connection, reading ahead: one completion (uring) or
/// `read` (blocking) of up to [`READ_AHEAD`] bytes may hold many small messages, which are
/// then decoded from memory. A large payload is copied from the read-ahead only for the part
/// already buffered; the rest is received straight into the new array.
///
/// Bytes read ahead belong to this receiver: use one `Receiver` per connection for its whole
/// life, not mixed with [`Engine::recv_any`](crate::Engine::recv_any) on the same socket — or
/// take them back with [`Receiver::take_buffered`] before switching.
///
/// A message rejected for the caller's expectation (dtype, byte order, length) is consumed;
/// see the [crate docs](crate#rejected-messages) for the rule every receive call follows.
#[derive(Debug)]
pub struct Receiver<'e, S> {
    wire: &'e mut dyn Wire,
    sock: S,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes one read may bring beyond what the message needs; 0: never read past it.
    read_ahead: usize,
    /// The socket passed the stream-socket check (done once, at the first receive).
    checked: bool,
}

impl<'e, S: AsFd> Receiver<'e, S> {
    /// A receiver on `sock` reading up to `read_ahead` bytes at once (0: exactly what the
    /// current message still needs, so nothing of the next message is taken).
    pub(crate) fn new(wire: &'e mut dyn Wire, sock: S, read_ahead: usize) -> Self {
        Receiver {
            wire,
            sock,
            buf: vec![0u8; read_ahead],
            start: 0,
            end: 0,
            read_ahead,
            checked: false,
        }
    }

    /// Makes at least `min` bytes available at `buf[start..]`, reading up to
    /// `upto.max(read_ahead)` buffered bytes; `consumed` is the message bytes already taken
    /// and `whole` the message's length, for error counts.
    fn fill(&mut self, min: usize, upto: usize, consumed: u64, whole: u64) -> Result<()> {
        if self.buffered() >= min {
            return Ok(());
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let cap = upto.max(min).max(self.read_ahead);
        if self.buf.len() < cap {
            self.buf.resize(cap, 0);
        }
        while self.end < min {
            let t = Transfer {
                at_least: Some((min - self.end) as u64),
                ..Transfer::recv(self.sock.as_fd(), vec![&mut self.buf[self.end..cap]])
            };
            match self.wire.run(t) {
                Ok(k) => self.end += k as usize,
                Err(e) => return Err(in_message(e, consumed + self.buffered() as u64, whole)),
            }
        }
        Ok(())
    }

    /// Reads and checks the next message's header: the magic as its bytes arrive (a peer
    /// whose first bytes are not `RGXF` is rejected at once, [`FrameError::BadMagic`]), then
    /// the 32-byte prefix — a payload over
    /// [`Options::max_payload_bytes`](crate::Options::max_payload_bytes) is refused here,
    /// before the rest is read — then the rest of the header.
    pub(crate) fn recv_header(&mut self) -> Result<Header> {
        if !self.checked {
            crate::sock::check_stream(&self.sock, PREFIX_LEN as u64)?;
            self.checked = true;
        }
        let limit = self.wire.max_payload_bytes();
        while self.buffered() < frame::MAGIC.len() {
            self.fill(self.buffered() + 1, PREFIX_LEN, 0, PREFIX_LEN as u64)?;
            let n = self.buffered().min(frame::MAGIC.len());
            frame::check_magic(&self.buf[self.start..self.start + n])?;
        }
        self.fill(PREFIX_LEN, PREFIX_LEN, 0, PREFIX_LEN as u64)?;
        let prefix: &[u8; PREFIX_LEN] = self.buf[self.start..self.start + PREFIX_LEN]
            .try_into()
            .expect("32 bytes");
        // A rejected prefix or header is consumed as far as it was read, so a receiver with
        // and without read-ahead leave the stream at the same place.
        let p = frame::decode_prefix(prefix, limit).inspect_err(|_| self.start += PREFIX_LEN)?;
        let whole = (p.header_len + TRAILER_LEN) as u64 + p.payload_len;
        self.fill(p.header_len, p.header_len, 0, whole)?;
        let header = Header::decode(&self.buf[self.start..self.start + p.header_len], limit);
        self.start += p.header_len;
        Ok(header?)
    }

    /// Receives the payload of `header` (whose header bytes were just consumed) into `out`
    /// (`header.payload_len` bytes) and checks the trailer.
    fn recv_payload(&mut self, header: &Header, out: &mut [u8]) -> Result<()> {
        let (hl, len) = (header.encoded_len(), out.len());
        let whole = (hl + len + TRAILER_LEN) as u64;
        let have = self.buffered().min(len);
        out[..have].copy_from_slice(&self.buf[self.start..self.start + have]);
        self.start += have;
        let mut trailer = [0u8; TRAILER_LEN];
        if have < len {
            // The rest of a large payload and its trailer go straight to their places.
            let t = Transfer::recv(self.sock.as_fd(), vec![&mut out[have..], &mut trailer]);
            let r = self.wire.run(t);
            r.map_err(|e| in_message(e, (hl + have) as u64, whole))?;
        } else {
            self.fill(TRAILER_LEN, TRAILER_LEN, (hl + len) as u64, whole)?;
            trailer.copy_from_slice(&self.buf[self.start..self.start + TRAILER_LEN]);
            self.start += TRAILER_LEN;
        }
        check_trailer(header, out, &trailer)
    }

    /// Reads and throws away the payload and trailer of `header` (whose header bytes were
    /// just consumed), at most [`DISCARD_CHUNK`] bytes at a time, then returns `rejection`:
    /// the next receive starts at the next header. A transfer error while discarding, or a
    /// trailer without its end magic (the stream is not where the header said), is returned
    /// instead.
    fn discard(&mut self, header: &Header, rejection: crate::Error) -> crate::Error {
        let hl = header.encoded_len() as u64;
        let whole = hl + header.payload_len + TRAILER_LEN as u64;
        let mut left = header.payload_len;
        let have = (self.buffered() as u64).min(left);
        self.start += have as usize;
        left -= have;
        let mut scratch = vec![0u8; left.min(DISCARD_CHUNK as u64) as usize];
        while left > 0 {
            let n = left.min(scratch.len() as u64) as usize;
            let t = Transfer::recv(self.sock.as_fd(), vec![&mut scratch[..n]]);
            if let Err(e) = self.wire.run(t) {
                return in_message(e, whole - TRAILER_LEN as u64 - left, whole);
            }
            left -= n as u64;
        }
        let before = hl + header.payload_len;
        if let Err(e) = self.fill(TRAILER_LEN, TRAILER_LEN, before, whole) {
            return e;
        }
        let trailer: &[u8; TRAILER_LEN] = self.buf[self.start..self.start + TRAILER_LEN]
            .try_into()
            .expect("8 bytes");
        if let Err(e) = frame::decode_trailer(trailer) {
            return e.into();
        }
        self.start += TRAILER_LEN;
        rejection
    }

    /// The payload and trailer of `header` (just read) into a new array: the limit checked
    /// again (for a header the caller decoded), then memory from the engine's pool.
    pub(crate) fn recv_after_header(&mut self, header: Header) -> Result<AnyArray> {
        let limit = self.wire.max_payload_bytes();
        if header.payload_len > limit {
            return Err(FrameError::TooLarge {
                payload_len: header.payload_len,
                limit,
            }
            .into());
        }
        let mut data: AlignedBuf = self.wire.alloc(header.payload_len as usize)?;
        self.recv_payload(&header, data.as_bytes_mut())?;
        Ok(AnyArray::new(header, data))
    }

    /// The payload and trailer of `header` (just read) into the caller's `out`; errors as
    /// [`Engine::recv_payload_into`](crate::Engine::recv_payload_into). An `out` of another
    /// length than the payload is a rejection: the message is consumed.
    pub(crate) fn recv_payload_into(&mut self, header: &Header, out: &mut [u8]) -> Result<()> {
        if header.payload_len != out.len() as u64 {
            let e = shape_mismatch(header.dtype, &header.shape, header, out.len());
            return Err(self.discard(header, e.into()));
        }
        self.recv_payload(header, out)
    }

    /// Receives the next framed array of any dtype. Errors as
    /// [`Engine::recv_any`](crate::Engine::recv_any) (`UnexpectedEof { transferred: 0, .. }`:
    /// the peer closed cleanly between messages).
    pub fn recv_any(&mut self) -> Result<AnyArray> {
        let header = self.recv_header()?;
        self.recv_after_header(header)
    }

    /// Receives the next framed array of `T` in native byte order; errors as
    /// [`Engine::recv_array`](crate::Engine::recv_array). A message of another dtype is
    /// consumed without allocating for it.
    pub fn recv_array<T: Element>(&mut self) -> Result<Array<T>> {
        let header = self.recv_header()?;
        if let Err(e) = dtype_fits::<T>(&header) {
            return Err(self.discard(&header, e));
        }
        self.recv_after_header(header)?.into_typed(false)
    }

    /// Receives the next framed array of `T` into the caller's `out`; errors as
    /// [`Engine::recv_array_into`](crate::Engine::recv_array_into). A message that does not
    /// fit `out` is consumed.
    pub fn recv_array_into<T: Element>(&mut self, out: &mut [T]) -> Result<Header> {
        let header = self.recv_header()?;
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(out);
        let fits = dtype_fits::<T>(&header).and_then(|()| {
            if header.payload_len == bytes.len() as u64 {
                Ok(())
            } else {
                Err(shape_mismatch(header.dtype, &header.shape, &header, bytes.len()).into())
            }
        });
        if let Err(e) = fits {
            return Err(self.discard(&header, e));
        }
        self.recv_payload(&header, bytes)?;
        Ok(header)
    }

    /// Bytes read ahead and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Hands back the bytes read ahead and not yet consumed (the start of the next message,
    /// if any), emptying the read-ahead: to switch to
    /// [`Engine::recv_any`](crate::Engine::recv_any) or raw receives on the same socket, put
    /// these bytes first.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        let v = self.buf[self.start..self.end].to_vec();
        (self.start, self.end) = (0, 0);
        v
    }
}

/// `Ok` when `header` carries `T` in native byte order, else [`FrameError::DtypeMismatch`].
fn dtype_fits<T: Element>(header: &Header) -> Result<()> {
    let wanted = DType::native(T::SCALAR);
    if header.dtype == wanted {
        return Ok(());
    }
    Err(FrameError::DtypeMismatch {
        wire: header.dtype.to_string(),
        wanted: wanted.to_string(),
    }
    .into())
}
