//! The one framed receive state machine: [`Receiver`]. Every framed receive call runs it —
//! [`Engine::receiver`](crate::Engine::receiver) with read-ahead, and the plain calls
//! ([`Engine::recv_any`](crate::Engine::recv_any), `recv_array`, `recv_array_into`,
//! `recv_any_after_header`, the header of a striped array) as a receiver with no read-ahead,
//! which never reads past the message it is in. What a rejected message does to the stream
//! is decided here, once (see the [crate docs](crate#rejected-messages)).
//!
//! Each message is RGXF or numpy's `.npy` stream, told apart by its first byte
//! ([`WireFormat::of_first_byte`]); a [`Message`] remembers which, so the payload step knows
//! whether a trailer follows (RGXF: 8 bytes, CRC-32 checked) or not (`.npy`: no checksum).

use std::os::fd::AsFd;

use crate::Result;
use crate::buffer::AlignedBuf;
use crate::driver::Transfer;
use crate::dtype::DType;
use crate::frame::{self, FrameError, Header, PREFIX_LEN, TRAILER_LEN, WireFormat};
use crate::npy::{self, NpyHeader};
use crate::progress::PayloadCrc;

use super::array::{AnyArray, Array, Element};
use super::{Wire, check_trailer, in_message, shape_mismatch};

/// Read-ahead size of a [`Receiver`]: one completion (or `read`) may bring this many bytes of
/// consecutive small messages.
pub const READ_AHEAD: usize = 256 << 10;

/// Largest piece read at once while discarding a rejected message's payload (per stream for
/// a striped array).
pub(crate) const DISCARD_CHUNK: usize = 1 << 20;

/// Receives framed arrays (RGXF or `.npy`, mixed freely) from one connection, reading ahead:
/// one completion (uring) or
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

    /// Reads and checks the next message's header, in either format: the first byte says
    /// which (`R`: RGXF, `\x93`: `.npy`, [`WireFormat::of_first_byte`]); any other first byte
    /// is [`FrameError::BadMagic`] at once. `accept_npy: false` (the striped receive, which
    /// is RGXF only) treats `\x93` as any other wrong byte.
    pub(crate) fn recv_message(&mut self, accept_npy: bool) -> Result<Message> {
        if !self.checked {
            crate::sock::check_stream(&self.sock, PREFIX_LEN as u64)?;
            self.checked = true;
        }
        // Up to 32 bytes may come with the first byte even without read-ahead: an RGXF header
        // has at least 40 and a `.npy` one that parses at least 64 (the dict's three keys
        // alone are over 40 bytes, and the header is padded to a multiple of 16), so that
        // read never takes bytes of the next message.
        self.fill(1, PREFIX_LEN, 0, PREFIX_LEN as u64)?;
        let first = self.buf[self.start];
        match WireFormat::of_first_byte(first) {
            Some(WireFormat::Rgxf) => self.recv_rgxf_header().map(Message::rgxf),
            Some(WireFormat::Npy) if accept_npy => self.recv_npy_header(),
            _ => Err(FrameError::BadMagic(vec![first]).into()),
        }
    }

    /// Reads and checks an RGXF header: the magic as its bytes arrive (a peer whose first
    /// bytes are not `RGXF` is rejected at once, [`FrameError::BadMagic`]), then the 32-byte
    /// prefix — a payload over
    /// [`Options::max_payload_bytes`](crate::Options::max_payload_bytes) is refused here,
    /// before the rest is read — then the rest of the header.
    fn recv_rgxf_header(&mut self) -> Result<Header> {
        let limit = self.wire.max_payload_bytes();
        loop {
            let n = self.buffered().min(frame::MAGIC.len());
            frame::check_magic(&self.buf[self.start..self.start + n])?;
            if n == frame::MAGIC.len() {
                break;
            }
            self.fill(n + 1, PREFIX_LEN, 0, PREFIX_LEN as u64)?;
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

    /// Reads and checks a `.npy` header ([`crate::npy`]) in bounded steps: the magic as its
    /// bytes arrive, magic and version (8 bytes), the prefix (10 or 12 bytes) whose
    /// `HEADER_LEN` gives the whole header's length (at most [`npy::MAX_HEADER_LEN`]), then
    /// exactly that header, parsed with the payload limit before anything is allocated. A
    /// rejected step consumes the bytes it read (as for RGXF). Inside the header, a transfer
    /// error's `expected` is the bytes of the step (8, the prefix, then the whole header):
    /// the payload's length is not known before the dict is parsed.
    fn recv_npy_header(&mut self) -> Result<Message> {
        let limit = self.wire.max_payload_bytes();
        let start_len = npy::START_LEN;
        loop {
            let n = self.buffered().min(npy::MAGIC.len());
            npy::check_magic(&self.buf[self.start..self.start + n]).map_err(FrameError::of_npy)?;
            if n == npy::MAGIC.len() {
                break;
            }
            self.fill(n + 1, start_len, 0, start_len as u64)?;
        }
        self.fill(start_len, start_len, 0, start_len as u64)?;
        let version = npy::version_from_start(&self.buf[self.start..self.start + start_len])
            .map_err(|e| self.reject(start_len, e))?;
        let p = version.prefix_len();
        self.fill(p, p, 0, p as u64)?;
        let header_len = npy::header_len_from_prefix(&self.buf[self.start..self.start + p])
            .map_err(|e| self.reject(p, e))?;
        self.fill(header_len, header_len, 0, header_len as u64)?;
        let parsed = npy::parse_header(&self.buf[self.start..self.start + header_len], limit)
            .map_err(|e| self.reject(header_len, e))?;
        self.start += header_len;
        Ok(Message::npy(&parsed))
    }

    /// A rejected `.npy` header step: its `read` bytes are consumed.
    fn reject(&mut self, read: usize, e: npy::NpyError) -> crate::Error {
        self.start += read;
        FrameError::of_npy(e).into()
    }

    /// Reads and checks the next message's RGXF header (the striped receive's array header).
    pub(crate) fn recv_header(&mut self) -> Result<Header> {
        self.recv_message(false).map(|m| m.header)
    }

    /// Receives the payload of `msg` (whose header bytes were just consumed) into `out`
    /// (`payload_len` bytes), then, for RGXF, reads and checks the trailer (`.npy` has none).
    /// An RGXF payload's CRC-32 is computed as its bytes arrive (a progress hook on the
    /// receive, [`crate::driver`]), not in a second pass over `out`.
    /// `fresh`: `out` is a new mapping never touched ([`crate::Prefault::Ahead`]).
    fn recv_payload(&mut self, msg: &Message, out: &mut [u8], fresh: bool) -> Result<()> {
        let (hl, len, tl) = (msg.header_len, out.len(), msg.trailer_len());
        let whole = msg.whole();
        let have = self.buffered().min(len);
        out[..have].copy_from_slice(&self.buf[self.start..self.start + have]);
        self.start += have;
        let checked =
            msg.format == WireFormat::Rgxf && msg.header.flags & frame::FLAG_PAYLOAD_CRC32 != 0;
        let mut hasher = crc32fast::Hasher::new();
        if checked {
            hasher.update(&out[..have]);
        }
        let mut trailer = [0u8; TRAILER_LEN];
        if have < len {
            // The rest of a large payload and its trailer go straight to their places.
            let mut crc = PayloadCrc::new(hasher, 0, (len - have) as u64);
            let mut parts: Vec<&mut [u8]> = vec![&mut out[have..]];
            if tl > 0 {
                parts.push(&mut trailer);
            }
            let mut t = Transfer {
                prefault_ahead: fresh && self.wire.prefault_ahead(),
                ..Transfer::recv(self.sock.as_fd(), parts)
            };
            if checked {
                t = t.with_progress(&mut crc);
            }
            let r = self.wire.run(t);
            r.map_err(|e| in_message(e, (hl + have) as u64, whole))?;
            hasher = crc.into_hasher();
        } else if tl > 0 {
            self.fill(tl, tl, (hl + len) as u64, whole)?;
            trailer.copy_from_slice(&self.buf[self.start..self.start + tl]);
            self.start += tl;
        }
        match msg.format {
            WireFormat::Rgxf => check_trailer(&msg.header, hasher.finalize(), &trailer),
            WireFormat::Npy => Ok(()),
        }
    }

    /// Reads and throws away the payload (and, for RGXF, the trailer) of `msg` (whose header
    /// bytes were just consumed), at most [`DISCARD_CHUNK`] bytes at a time, then returns
    /// `rejection`: the next receive starts at the next header. A transfer error while
    /// discarding, or a trailer without its end magic (the stream is not where the header
    /// said), is returned instead.
    fn discard(&mut self, msg: &Message, rejection: crate::Error) -> crate::Error {
        let tl = msg.trailer_len() as u64;
        let whole = msg.whole();
        let mut left = msg.header.payload_len;
        let have = (self.buffered() as u64).min(left);
        self.start += have as usize;
        left -= have;
        let mut scratch = vec![0u8; left.min(DISCARD_CHUNK as u64) as usize];
        while left > 0 {
            let n = left.min(scratch.len() as u64) as usize;
            let t = Transfer::recv(self.sock.as_fd(), vec![&mut scratch[..n]]);
            if let Err(e) = self.wire.run(t) {
                return in_message(e, whole - tl - left, whole);
            }
            left -= n as u64;
        }
        if tl == 0 {
            return rejection;
        }
        if let Err(e) = self.fill(TRAILER_LEN, TRAILER_LEN, whole - tl, whole) {
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

    /// The payload and trailer of an RGXF `header` the caller read and decoded, into a new
    /// array (see [`Receiver::recv_after_message`]).
    pub(crate) fn recv_after_header(&mut self, header: Header) -> Result<AnyArray> {
        self.recv_after_message(Message::rgxf(header))
    }

    /// The payload of a `.npy` header the caller read and parsed, into a new array.
    pub(crate) fn recv_after_npy_header(&mut self, header: &NpyHeader) -> Result<AnyArray> {
        self.recv_after_message(Message::npy(header))
    }

    /// The payload (and trailer) of `msg` (just read) into a new array: the limit checked
    /// again (for a header the caller decoded), then memory from the engine's pool.
    fn recv_after_message(&mut self, msg: Message) -> Result<AnyArray> {
        let limit = self.wire.max_payload_bytes();
        if msg.header.payload_len > limit {
            return Err(FrameError::TooLarge {
                payload_len: msg.header.payload_len,
                limit,
            }
            .into());
        }
        let mut data: AlignedBuf = self.wire.alloc(msg.header.payload_len as usize)?;
        let fresh = data.is_fresh_mapping();
        self.recv_payload(&msg, data.as_bytes_mut(), fresh)?;
        Ok(AnyArray::new(msg.header, data, msg.format))
    }

    /// The payload and trailer of `header` (just read) into the caller's `out`; errors as
    /// [`Engine::recv_payload_into`](crate::Engine::recv_payload_into). An `out` of another
    /// length than the payload is a rejection: the message is consumed.
    pub(crate) fn recv_payload_into(&mut self, header: &Header, out: &mut [u8]) -> Result<()> {
        self.recv_message_into(Message::rgxf(header.clone()), out)
    }

    /// The payload of a `.npy` stream whose `header` was just read into the caller's `out`;
    /// errors as [`Engine::recv_npy_payload_into`](crate::Engine::recv_npy_payload_into).
    pub(crate) fn recv_npy_payload_into(
        &mut self,
        header: &NpyHeader,
        out: &mut [u8],
    ) -> Result<()> {
        self.recv_message_into(Message::npy(header), out)
    }

    /// The rest of `msg` into `out`: another length than the payload's is a rejection (the
    /// message consumed); the byte counts of an error are the whole message's.
    fn recv_message_into(&mut self, msg: Message, out: &mut [u8]) -> Result<()> {
        let h = &msg.header;
        if h.payload_len != out.len() as u64 {
            let e = shape_mismatch(h.dtype, &h.shape, h, out.len());
            return Err(self.discard(&msg, e.into()));
        }
        self.recv_payload(&msg, out, false)
    }

    /// Receives the next framed array of any dtype. Errors as
    /// [`Engine::recv_any`](crate::Engine::recv_any) (`UnexpectedEof { transferred: 0, .. }`:
    /// the peer closed cleanly between messages).
    pub fn recv_any(&mut self) -> Result<AnyArray> {
        let msg = self.recv_message(true)?;
        self.recv_after_message(msg)
    }

    /// Receives the next framed array of `T` in native byte order; errors as
    /// [`Engine::recv_array`](crate::Engine::recv_array). A message of another dtype is
    /// consumed without allocating for it.
    pub fn recv_array<T: Element>(&mut self) -> Result<Array<T>> {
        let msg = self.recv_message(true)?;
        if let Err(e) = dtype_fits::<T>(&msg.header) {
            return Err(self.discard(&msg, e));
        }
        self.recv_after_message(msg)?.into_typed(false)
    }

    /// Receives the next framed array of `T` into the caller's `out`; errors as
    /// [`Engine::recv_array_into`](crate::Engine::recv_array_into). A message that does not
    /// fit `out` is consumed.
    pub fn recv_array_into<T: Element>(&mut self, out: &mut [T]) -> Result<Header> {
        let msg = self.recv_message(true)?;
        let header = &msg.header;
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(out);
        let fits = dtype_fits::<T>(header).and_then(|()| {
            if header.payload_len == bytes.len() as u64 {
                Ok(())
            } else {
                Err(shape_mismatch(header.dtype, &header.shape, header, bytes.len()).into())
            }
        });
        if let Err(e) = fits {
            return Err(self.discard(&msg, e));
        }
        self.recv_payload(&msg, bytes, false)?;
        Ok(msg.header)
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
pub(crate) fn dtype_fits<T: Element>(header: &Header) -> Result<()> {
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

/// One message's header as the receiver read it: the array it describes, the format it came
/// in, and the bytes the header took on the wire.
#[derive(Debug)]
pub(crate) struct Message {
    /// The array (a `.npy` header as [`NpyHeader::frame_header`] describes it: no flag).
    header: Header,
    /// RGXF or `.npy`.
    format: WireFormat,
    /// Bytes of the header on the wire.
    header_len: usize,
}

impl Message {
    fn rgxf(header: Header) -> Message {
        let header_len = header.encoded_len();
        Message {
            header,
            format: WireFormat::Rgxf,
            header_len,
        }
    }

    fn npy(h: &NpyHeader) -> Message {
        Message {
            header: h.frame_header(),
            format: WireFormat::Npy,
            header_len: h.header_len,
        }
    }

    /// Bytes after the payload: the RGXF trailer, nothing for `.npy`.
    fn trailer_len(&self) -> usize {
        match self.format {
            WireFormat::Rgxf => TRAILER_LEN,
            WireFormat::Npy => 0,
        }
    }

    /// Bytes of the whole message: header, payload, trailer.
    fn whole(&self) -> u64 {
        (self.header_len + self.trailer_len()) as u64 + self.header.payload_len
    }
}
