//! Framed arrays: dtype, order, shape, length and checksum travel with the payload
//! (`docs/PROTOCOL.md`), so the receiver needs no prior knowledge.
//!
//! ```
//! use std::os::unix::net::UnixStream;
//! use ringxfer::{Backend, Engine, Order};
//!
//! # fn main() -> ringxfer::Result<()> {
//! let (a, b) = UnixStream::pair().expect("socketpair");
//! let t = std::thread::spawn(move || -> ringxfer::Result<()> {
//!     let data: Vec<f64> = (0..1000).map(f64::from).collect();
//!     Engine::new(Backend::Auto)?.send_array(&a, &data, &[20, 10, 5], Order::F)
//! });
//! let arr = Engine::new(Backend::Auto)?.recv_array::<f64>(&b)?;
//! t.join().unwrap()?;
//! assert_eq!(arr.shape(), &[20, 10, 5]);
//! assert_eq!(arr.order(), Order::F);
//! assert_eq!(arr.as_slice()[999], 999.0);
//! # Ok(()) }
//! ```

use std::marker::PhantomData;
use std::os::fd::AsFd;

use bytemuck::Pod;
use socket2::SockRef;

use crate::buffer::AlignedBuf;
use crate::driver::Transfer;
use crate::dtype::{DType, Scalar};
use crate::frame::{self, FrameError, Header, Order, PREFIX_LEN, TRAILER_LEN};
use crate::{Engine, Error, Result};

/// Rust element types with a numpy dtype (native byte order).
pub trait Element: Pod {
    /// The element type.
    const SCALAR: Scalar;
}

macro_rules! element {
    ($($t:ty => $s:ident),* $(,)?) => {
        $(impl Element for $t { const SCALAR: Scalar = Scalar::$s; })*
    };
}
element!(f64 => F64, f32 => F32, i64 => I64, i32 => I32, i16 => I16, i8 => I8,
         u64 => U64, u32 => U32, u16 => U16, u8 => U8);

/// A received array of any dtype: the header's description plus page-aligned payload bytes.
#[derive(Debug)]
pub struct AnyArray {
    header: Header,
    data: AlignedBuf,
}

impl AnyArray {
    /// A receive array for `header`'s payload: checked against
    /// [`Options::max_payload_bytes`](crate::Options::max_payload_bytes) before anything is
    /// allocated, then page-aligned memory from the engine's pool, not yet filled.
    pub(crate) fn for_header(engine: &Engine, header: Header) -> Result<AnyArray> {
        let limit = engine.opts.max_payload_bytes;
        if header.payload_len > limit {
            return Err(FrameError::TooLarge {
                payload_len: header.payload_len,
                limit,
            }
            .into());
        }
        let data = AlignedBuf::for_receive(
            header.payload_len as usize,
            engine.opts.prefault,
            &engine.pool,
        )
        .map_err(|source| Error::Setup {
            what: "allocating the receive array",
            source,
        })?;
        Ok(AnyArray { header, data })
    }

    /// The payload memory, to be filled.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        self.data.as_bytes_mut()
    }

    /// The dtype on the wire (byte order included).
    pub fn dtype(&self) -> DType {
        self.header.dtype
    }

    /// Dimensions, in elements.
    pub fn shape(&self) -> &[u64] {
        &self.header.shape
    }

    /// Memory order of the payload.
    pub fn order(&self) -> Order {
        self.header.order
    }

    /// The payload bytes (`product(shape) * itemsize`).
    pub fn bytes(&self) -> &[u8] {
        self.data.as_bytes()
    }

    /// True when the sender set the payload-checksum flag, so the payload was verified
    /// against its CRC-32 (a mismatch is an error, never a returned array). False means the
    /// sender did not checksum it: nothing was verified.
    pub fn checksum_verified(&self) -> bool {
        self.header.flags & frame::FLAG_PAYLOAD_CRC32 != 0
    }

    /// The typed array. Elements in a foreign byte order are byte-swapped in place when
    /// `convert_byte_order` is true.
    ///
    /// # Errors
    /// [`FrameError::DtypeMismatch`] naming both dtypes when the element type differs, or
    /// when the byte order differs and `convert_byte_order` is false (data is never silently
    /// reinterpreted).
    pub fn into_typed<T: Element>(mut self, convert_byte_order: bool) -> Result<Array<T>> {
        let wanted = DType::native(T::SCALAR);
        let wire = self.header.dtype;
        if wire.scalar() != T::SCALAR || (!wire.is_native() && !convert_byte_order) {
            return Err(FrameError::DtypeMismatch {
                wire: wire.to_string(),
                wanted: wanted.to_string(),
            }
            .into());
        }
        if !wire.is_native() {
            // Per component: a complex element is two floats, each swapped on its own.
            crate::dtype::swap_byte_order(wire, self.data.as_bytes_mut());
            self.header.dtype = wanted;
        }
        Ok(Array {
            any: self,
            _t: PhantomData,
        })
    }
}

/// A received array of `T`: owned page-aligned data, shape and order.
#[derive(Debug)]
pub struct Array<T> {
    any: AnyArray,
    _t: PhantomData<T>,
}

impl<T: Element> Array<T> {
    /// The elements, in memory order ([`Array::order`]).
    pub fn as_slice(&self) -> &[T] {
        bytemuck::cast_slice(self.any.bytes())
    }

    /// The elements, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        bytemuck::cast_slice_mut(self.any.data.as_bytes_mut())
    }

    /// Dimensions, in elements.
    pub fn shape(&self) -> &[u64] {
        self.any.shape()
    }

    /// Memory order.
    pub fn order(&self) -> Order {
        self.any.order()
    }

    /// Number of elements (`product(shape)`; 1 for a 0-d array).
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// True when the array has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The untyped view (dtype, bytes).
    pub fn as_any(&self) -> &AnyArray {
        &self.any
    }
}

impl<T: Element> std::ops::Deref for Array<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl Engine {
    /// Before a framed send: the stream-socket check, and `TCP_NODELAY` unless
    /// [`Options::nodelay`](crate::Options::nodelay) is off (a failure to set it — a Unix
    /// socket has no such option — is ignored).
    pub(crate) fn prepare_framed_send<S: AsFd>(&self, sock: &S, len: usize) -> Result<()> {
        crate::sock::check_stream(sock, len as u64)?;
        if self.opts.nodelay {
            let _ = SockRef::from(sock).set_tcp_nodelay(true);
        }
        Ok(())
    }

    fn send_parts<S: AsFd>(&mut self, sock: &S, parts: &[&[u8]]) -> Result<()> {
        self.run(Transfer::send(sock.as_fd(), parts.to_vec()), false)
            .map(drop)
    }

    fn recv_parts<S: AsFd>(&mut self, sock: &S, parts: &mut [&mut [u8]]) -> Result<()> {
        let parts: Vec<&mut [u8]> = parts.iter_mut().map(|p| &mut **p).collect();
        self.run(Transfer::recv(sock.as_fd(), parts), false)
            .map(drop)
    }

    /// Receives into `buf` until at least `min` bytes arrived, taking what else the socket
    /// holds up to `buf.len()`; returns the bytes received.
    pub(crate) fn recv_at_least<S: AsFd>(
        &mut self,
        sock: &S,
        buf: &mut [u8],
        min: usize,
    ) -> Result<usize> {
        let t = Transfer {
            at_least: Some(min.min(buf.len()) as u64),
            ..Transfer::recv(sock.as_fd(), vec![buf])
        };
        self.run(t, false).map(|n| n as usize)
    }

    /// Sends `data` as one framed array of `shape` (elements) in `order`.
    ///
    /// `data` holds the elements in memory order: for `Order::F` the first index varies
    /// fastest (numpy `a.tobytes(order='F')`).
    ///
    /// # Errors
    /// [`FrameError::ShapeMismatch`] when `product(shape) != data.len()`,
    /// [`FrameError::TooManyDims`] above 32 dimensions; then as [`Engine::send_from`].
    pub fn send_array<T: Element>(
        &mut self,
        sock: &impl AsFd,
        data: &[T],
        shape: &[u64],
        order: Order,
    ) -> Result<()> {
        self.send_array_bytes(
            sock,
            DType::native(T::SCALAR),
            bytemuck::cast_slice(data),
            shape,
            order,
        )
    }

    /// Sends raw element bytes of any `dtype` (e.g. big-endian `>i4`) as one framed array.
    /// Errors as [`Engine::send_array`] (`bytes.len()` must be `product(shape) * itemsize`).
    pub fn send_array_bytes<S: AsFd>(
        &mut self,
        sock: &S,
        dtype: DType,
        bytes: &[u8],
        shape: &[u64],
        order: Order,
    ) -> Result<()> {
        let header = Header::new(dtype, shape, order)?;
        if header.payload_len != bytes.len() as u64 {
            return Err(shape_mismatch(dtype, shape, &header, bytes.len()));
        }
        let head = header.encode();
        let trailer = frame::encode_trailer(crc32fast::hash(bytes));
        self.prepare_framed_send(sock, head.len() + bytes.len() + TRAILER_LEN)?;
        self.send_parts(sock, &[&head, bytes, &trailer])
    }

    /// Receives one framed array of `T` in native byte order.
    ///
    /// # Errors
    /// [`FrameError::DtypeMismatch`] when the message carries another dtype (the message is
    /// consumed; the connection stays usable); other [`FrameError`]s for a bad header,
    /// checksum or limit ([`crate::Options::max_payload_bytes`]); [`Error::UnexpectedEof`]
    /// when the stream ends inside a message (`transferred: 0` with `expected: 32` means the
    /// peer closed cleanly between messages).
    pub fn recv_array<T: Element>(&mut self, sock: &impl AsFd) -> Result<Array<T>> {
        self.recv_any(sock)?.into_typed(false)
    }

    /// Receives one framed array of `T` into the caller's preallocated `out` (no allocation:
    /// the memoryview recipe's `recv_into`, with the header checked first). Returns the
    /// header (shape and order).
    ///
    /// # Errors
    /// [`FrameError::DtypeMismatch`] or [`FrameError::ShapeMismatch`] when the message does not
    /// fit `out` — the payload is then *not* consumed and the connection is out of sync;
    /// otherwise as [`Engine::recv_array`].
    pub fn recv_array_into<T: Element>(
        &mut self,
        sock: &impl AsFd,
        out: &mut [T],
    ) -> Result<Header> {
        let header = self.recv_header(sock)?;
        let wanted = DType::native(T::SCALAR);
        if header.dtype != wanted {
            return Err(FrameError::DtypeMismatch {
                wire: header.dtype.to_string(),
                wanted: wanted.to_string(),
            }
            .into());
        }
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(out);
        if header.payload_len != bytes.len() as u64 {
            return Err(shape_mismatch(wanted, &header.shape, &header, bytes.len()));
        }
        self.recv_payload(sock, &header, bytes)?;
        Ok(header)
    }

    /// Reads the fixed 32-byte prefix of a message, checking the magic as bytes arrive: a
    /// peer whose first bytes are not `RGXF` is rejected at once ([`FrameError::BadMagic`]),
    /// not after it sent 32 bytes or timed out. Reads never go past the prefix.
    fn recv_prefix<S: AsFd>(&mut self, sock: &S) -> Result<[u8; PREFIX_LEN]> {
        let mut prefix = [0u8; PREFIX_LEN];
        let mut got = 0;
        while got < PREFIX_LEN {
            let n = self.recv_at_least(sock, &mut prefix[got..], 1);
            got += n.map_err(|e| in_message(e, got as u64, PREFIX_LEN as u64))?;
            frame::check_magic(&prefix[..got])?;
        }
        Ok(prefix)
    }

    /// Reads and checks one header (prefix first, so an oversized one is refused before the
    /// rest is read).
    pub(crate) fn recv_header<S: AsFd>(&mut self, sock: &S) -> Result<Header> {
        crate::sock::check_stream(sock, PREFIX_LEN as u64)?;
        let limit = self.opts.max_payload_bytes;
        let prefix = self.recv_prefix(sock)?;
        let p = frame::decode_prefix(&prefix, limit)?;
        let mut head = vec![0u8; p.header_len];
        head[..PREFIX_LEN].copy_from_slice(&prefix);
        self.recv_parts(sock, &mut [&mut head[PREFIX_LEN..]])
            .map_err(|e| {
                in_message(
                    e,
                    PREFIX_LEN as u64,
                    (p.header_len + TRAILER_LEN) as u64 + p.payload_len,
                )
            })?;
        Ok(Header::decode(&head, limit)?)
    }

    /// Receives the payload of `header` into `out` and checks the trailer.
    fn recv_payload<S: AsFd>(&mut self, sock: &S, header: &Header, out: &mut [u8]) -> Result<()> {
        let hl = header.encoded_len() as u64;
        let mut trailer = [0u8; TRAILER_LEN];
        self.recv_parts(sock, &mut [&mut *out, &mut trailer])
            .map_err(|e| in_message(e, hl, hl + header.payload_len + TRAILER_LEN as u64))?;
        check_trailer(header, out, &trailer)
    }

    /// Receives one framed array of whatever dtype it carries. Errors as
    /// [`Engine::recv_array`], without the dtype check.
    pub fn recv_any<S: AsFd>(&mut self, sock: &S) -> Result<AnyArray> {
        let header = self.recv_header(sock)?;
        self.recv_any_after_header(sock, header)
    }

    /// Receives the payload and trailer of a message whose header the caller has already
    /// read from `sock` and decoded ([`frame::decode_prefix`], [`Header::decode`]) — e.g. a
    /// server that reads headers under a deadline of its own. The header's `payload_len` is
    /// checked against [`Options::max_payload_bytes`](crate::Options::max_payload_bytes)
    /// again before anything is allocated. Errors as [`Engine::recv_any`]; their byte counts
    /// include the header.
    pub fn recv_any_after_header<S: AsFd>(&mut self, sock: &S, header: Header) -> Result<AnyArray> {
        let mut a = AnyArray::for_header(self, header)?;
        self.recv_payload(sock, &a.header, a.data.as_bytes_mut())?;
        Ok(a)
    }
}

/// Payloads up to this size are copied next to their header and trailer by
/// [`Engine::send_arrays`], so many small arrays go out in one SQE / one `send`; larger ones are
/// sent from the caller's memory.
pub const COALESCE_MAX: usize = 64 << 10;

/// Read-ahead size of a [`Receiver`]: one completion (or `read`) may bring this many bytes of
/// consecutive small messages.
pub const READ_AHEAD: usize = 256 << 10;

/// An array to send with [`Engine::send_arrays`]: element bytes of `dtype`, `shape`, `order`.
#[derive(Debug, Clone, Copy)]
pub struct ArrayView<'a> {
    /// Element type and byte order of `bytes`.
    pub dtype: DType,
    /// The elements in memory order; `product(shape) * itemsize` bytes.
    pub bytes: &'a [u8],
    /// Dimensions, in elements.
    pub shape: &'a [u64],
    /// Memory order.
    pub order: Order,
}

impl<'a> ArrayView<'a> {
    /// A view of native-order elements.
    pub fn new<T: Element>(data: &'a [T], shape: &'a [u64], order: Order) -> Self {
        ArrayView {
            dtype: DType::native(T::SCALAR),
            bytes: bytemuck::cast_slice(data),
            shape,
            order,
        }
    }
}

impl Engine {
    /// Sends many framed arrays back to back, in order, with as few SQEs (uring) or `send`
    /// calls (blocking) as possible: headers, trailers and payloads of up to [`COALESCE_MAX`]
    /// bytes are packed into one staging buffer; larger payloads go out from the caller's
    /// memory between them. Errors as [`Engine::send_array`]; on error, an unknown number of
    /// whole or partial messages has been sent.
    pub fn send_arrays<S: AsFd>(&mut self, sock: &S, arrays: &[ArrayView<'_>]) -> Result<()> {
        // Sized once: headers, trailers and the coalesced payloads (no regrowth copies).
        let staged: usize = arrays
            .iter()
            .map(|a| {
                let payload = if a.bytes.len() <= COALESCE_MAX {
                    a.bytes.len()
                } else {
                    0
                };
                frame::header_len(a.shape.len()) + TRAILER_LEN + payload
            })
            .sum();
        let mut staging: Vec<u8> = Vec::with_capacity(staged);
        // (start, end) of staged ranges, or a caller payload, in stream order.
        enum Part<'p> {
            Staged(usize, usize),
            Caller(&'p [u8]),
        }
        let mut parts: Vec<Part<'_>> = Vec::new();
        let mut staged_from = 0;
        for a in arrays {
            let header = Header::new(a.dtype, a.shape, a.order)?;
            if header.payload_len != a.bytes.len() as u64 {
                return Err(shape_mismatch(a.dtype, a.shape, &header, a.bytes.len()));
            }
            header.encode_into(&mut staging);
            if a.bytes.len() <= COALESCE_MAX {
                staging.extend_from_slice(a.bytes);
            } else {
                parts.push(Part::Staged(staged_from, staging.len()));
                parts.push(Part::Caller(a.bytes));
                staged_from = staging.len();
            }
            staging.extend_from_slice(&frame::encode_trailer(crc32fast::hash(a.bytes)));
        }
        parts.push(Part::Staged(staged_from, staging.len()));
        let slices: Vec<&[u8]> = parts
            .iter()
            .map(|p| match *p {
                Part::Staged(a, b) => &staging[a..b],
                Part::Caller(c) => c,
            })
            .filter(|s| !s.is_empty())
            .collect();
        self.prepare_framed_send(sock, slices.iter().map(|s| s.len()).sum())?;
        self.send_parts(sock, &slices)
    }

    /// A read-ahead receiver of framed arrays on `sock` (see [`Receiver`]).
    pub fn receiver<S: AsFd>(&mut self, sock: S) -> Receiver<'_, S> {
        Receiver {
            engine: self,
            sock,
            buf: vec![0u8; READ_AHEAD],
            start: 0,
            end: 0,
            checked: false,
        }
    }
}

pub(crate) fn shape_mismatch(dtype: DType, shape: &[u64], header: &Header, len: usize) -> Error {
    FrameError::ShapeMismatch {
        shape: shape.to_vec(),
        needed: header.payload_len / dtype.itemsize() as u64,
        len: (len / dtype.itemsize()) as u64,
    }
    .into()
}

/// Receives framed arrays from one connection, reading ahead: one completion (uring) or
/// `read` (blocking) of up to [`READ_AHEAD`] bytes may hold many small messages, which are
/// then decoded from memory. A large payload is copied from the read-ahead only for the part
/// already buffered; the rest is received straight into the new array.
///
/// Bytes read ahead belong to this receiver: use one `Receiver` per connection for its whole
/// life, not mixed with [`Engine::recv_any`] on the same socket — or take them back with
/// [`Receiver::take_buffered`] before switching.
#[derive(Debug)]
pub struct Receiver<'e, S> {
    engine: &'e mut Engine,
    sock: S,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The socket passed the stream-socket check (done once, at the first receive).
    checked: bool,
}

impl<S: AsFd> Receiver<'_, S> {
    /// Makes at least `n` bytes (`n <= READ_AHEAD`) available at `buf[start..]`; `consumed`
    /// is the message bytes already taken, for error counts.
    fn fill(&mut self, n: usize, consumed: u64, whole: u64) -> Result<()> {
        if self.end - self.start >= n {
            return Ok(());
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.end < n {
            let want = n - self.end;
            let got = self
                .engine
                .recv_at_least(&self.sock, &mut self.buf[self.end..], want);
            match got {
                Ok(k) => self.end += k,
                Err(e) => {
                    let buffered = (self.end - self.start) as u64;
                    return Err(in_message(e, consumed + buffered, whole));
                }
            }
        }
        Ok(())
    }

    /// Receives the next framed array of any dtype. Errors as [`Engine::recv_any`]
    /// (`UnexpectedEof { transferred: 0, .. }`: the peer closed cleanly between messages).
    pub fn recv_any(&mut self) -> Result<AnyArray> {
        if !self.checked {
            crate::sock::check_stream(&self.sock, PREFIX_LEN as u64)?;
            self.checked = true;
        }
        let limit = self.engine.opts.max_payload_bytes;
        // Byte by byte as they arrive until the magic is complete: a stranger is rejected at
        // its first wrong byte (see `Engine::recv_prefix`).
        while self.buffered() < frame::MAGIC.len() {
            self.fill(self.buffered() + 1, 0, PREFIX_LEN as u64)?;
            let n = self.buffered().min(frame::MAGIC.len());
            frame::check_magic(&self.buf[self.start..self.start + n])?;
        }
        self.fill(PREFIX_LEN, 0, PREFIX_LEN as u64)?;
        let prefix: &[u8; PREFIX_LEN] = self.buf[self.start..self.start + PREFIX_LEN]
            .try_into()
            .expect("32 bytes");
        let p = frame::decode_prefix(prefix, limit)?;
        let whole = (p.header_len + TRAILER_LEN) as u64 + p.payload_len;
        self.fill(p.header_len, 0, whole)?;
        let header = Header::decode(&self.buf[self.start..self.start + p.header_len], limit)?;
        self.start += p.header_len;
        let len = header.payload_len as usize;
        let mut data = AlignedBuf::for_receive(len, self.engine.opts.prefault, &self.engine.pool)
            .map_err(|source| Error::Setup {
            what: "allocating the receive array",
            source,
        })?;
        let have = (self.end - self.start).min(len);
        data.as_bytes_mut()[..have].copy_from_slice(&self.buf[self.start..self.start + have]);
        self.start += have;
        let mut trailer = [0u8; TRAILER_LEN];
        if have < len {
            // The rest of a large payload and its trailer go straight to their places.
            let done = (p.header_len + have) as u64;
            let parts: &mut [&mut [u8]] = &mut [&mut data.as_bytes_mut()[have..], &mut trailer];
            let r = self.engine.recv_parts(&self.sock, parts);
            r.map_err(|e| in_message(e, done, whole))?;
        } else {
            self.fill(TRAILER_LEN, (p.header_len + len) as u64, whole)?;
            trailer.copy_from_slice(&self.buf[self.start..self.start + TRAILER_LEN]);
            self.start += TRAILER_LEN;
        }
        check_trailer(&header, data.as_bytes(), &trailer)?;
        Ok(AnyArray { header, data })
    }

    /// Receives the next framed array of `T`; errors as [`Engine::recv_array`].
    pub fn recv_array<T: Element>(&mut self) -> Result<Array<T>> {
        self.recv_any()?.into_typed(false)
    }

    /// Bytes read ahead and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Hands back the bytes read ahead and not yet consumed (the start of the next message,
    /// if any), emptying the read-ahead: to switch to [`Engine::recv_any`] or raw receives on
    /// the same socket, put these bytes first.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        let v = self.buf[self.start..self.end].to_vec();
        (self.start, self.end) = (0, 0);
        v
    }
}

fn check_trailer(header: &Header, payload: &[u8], trailer: &[u8; TRAILER_LEN]) -> Result<()> {
    let expected = frame::decode_trailer(trailer)?;
    if header.flags & frame::FLAG_PAYLOAD_CRC32 != 0 {
        let actual = crc32fast::hash(payload);
        if actual != expected {
            return Err(FrameError::PayloadChecksum { expected, actual }.into());
        }
    }
    Ok(())
}

/// Re-bases a transfer error of one part of a message onto the whole message's byte counts.
fn in_message(e: Error, before: u64, whole: u64) -> Error {
    e.rebased(before, whole)
}
