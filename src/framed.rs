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
//! let arr = Engine::new(Backend::Auto)?.recv_array::<f64, _>(&b)?;
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
use crate::dtype::{DType, Scalar};
use crate::frame::{self, FrameError, Header, Order, PREFIX_LEN, TRAILER_LEN};
use crate::{Engine, Error, Result, blocking};

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
            let n = wire.itemsize();
            self.data
                .as_bytes_mut()
                .chunks_exact_mut(n)
                .for_each(|c| c.reverse());
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
    fn send_parts<S: AsFd>(&mut self, sock: &S, parts: &[&[u8]]) -> Result<()> {
        let timeout = self.opts.idle_timeout;
        match self.ring.as_mut() {
            None => blocking::send_parts(&SockRef::from(sock), parts, timeout),
            Some(r) => r.send_parts(sock.as_fd(), parts, &self.opts.uring, timeout),
        }
    }

    fn recv_parts<S: AsFd>(&mut self, sock: &S, parts: &mut [&mut [u8]]) -> Result<()> {
        let timeout = self.opts.idle_timeout;
        match self.ring.as_mut() {
            None => blocking::recv_parts(&SockRef::from(sock), parts, timeout),
            Some(r) => r.recv_parts(sock.as_fd(), parts, &self.opts.uring, timeout),
        }
    }

    /// Sends `data` as one framed array of `shape` (elements) in `order`.
    ///
    /// `data` holds the elements in memory order: for `Order::F` the first index varies
    /// fastest (numpy `a.tobytes(order='F')`).
    ///
    /// # Errors
    /// [`FrameError::ShapeMismatch`] when `product(shape) != data.len()`,
    /// [`FrameError::TooManyDims`] above 32 dimensions; then as [`Engine::send_from`].
    pub fn send_array<T: Element, S: AsFd>(
        &mut self,
        sock: &S,
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
            return Err(FrameError::ShapeMismatch {
                shape: shape.to_vec(),
                needed: header.payload_len / dtype.itemsize() as u64,
                len: (bytes.len() / dtype.itemsize()) as u64,
            }
            .into());
        }
        let head = header.encode();
        let trailer = frame::encode_trailer(crc32fast::hash(bytes));
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
    pub fn recv_array<T: Element, S: AsFd>(&mut self, sock: &S) -> Result<Array<T>> {
        self.recv_any(sock)?.into_typed(false)
    }

    /// Receives one framed array of whatever dtype it carries. Errors as
    /// [`Engine::recv_array`], without the dtype check.
    pub fn recv_any<S: AsFd>(&mut self, sock: &S) -> Result<AnyArray> {
        let limit = self.opts.max_payload_bytes;
        let mut prefix = [0u8; PREFIX_LEN];
        self.recv_parts(sock, &mut [&mut prefix])?;
        let p = frame::decode_prefix(&prefix, limit)?;
        let mut head = vec![0u8; p.header_len];
        head[..PREFIX_LEN].copy_from_slice(&prefix);
        self.recv_parts(sock, &mut [&mut head[PREFIX_LEN..]])
            .map_err(|e| in_message(e, PREFIX_LEN as u64, p.header_len as u64 + p.payload_len))?;
        let header = Header::decode(&head, limit)?;
        let mut data =
            AlignedBuf::new(header.payload_len as usize, self.opts.prefault).map_err(|source| {
                Error::Setup {
                    what: "allocating the receive array",
                    source,
                }
            })?;
        let mut trailer = [0u8; TRAILER_LEN];
        self.recv_parts(sock, &mut [data.as_bytes_mut(), &mut trailer])
            .map_err(|e| {
                in_message(
                    e,
                    p.header_len as u64,
                    p.header_len as u64 + header.payload_len + TRAILER_LEN as u64,
                )
            })?;
        let expected = frame::decode_trailer(&trailer)?;
        if header.flags & frame::FLAG_PAYLOAD_CRC32 != 0 {
            let actual = crc32fast::hash(data.as_bytes());
            if actual != expected {
                return Err(FrameError::PayloadChecksum { expected, actual }.into());
            }
        }
        Ok(AnyArray { header, data })
    }
}

/// Re-bases a transfer error of one part of a message onto the whole message's byte counts.
fn in_message(e: Error, before: u64, whole: u64) -> Error {
    match e {
        Error::UnexpectedEof { transferred, .. } => Error::UnexpectedEof {
            transferred: before + transferred,
            expected: whole,
        },
        Error::TimedOut {
            transferred,
            timeout_ms,
            ..
        } => Error::TimedOut {
            transferred: before + transferred,
            expected: whole,
            timeout_ms,
        },
        Error::Io {
            op,
            transferred,
            source,
            ..
        } => Error::Io {
            op,
            transferred: before + transferred,
            expected: whole,
            source,
        },
        other => other,
    }
}
