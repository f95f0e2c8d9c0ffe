//! Framed arrays: dtype, order, shape, length and checksum travel with the payload
//! (`docs/PROTOCOL.md`), so the receiver needs no prior knowledge. The receive side also takes
//! numpy's `.npy` stream (dtype, order and shape, no checksum; [`crate::npy`]), told apart by
//! the first byte of each message.
//!
//! * [`array`](mod@array): the array types ([`Element`], [`AnyArray`], [`Array`], [`ArrayView`]).
//! * [`receiver`]: the one receive state machine ([`Receiver`]); the engine's plain receive
//!   calls are a receiver with no read-ahead.
//! * this module: the send side (gathered header, payload, trailer) and the contract an engine
//!   honours for both ([`Wire`]), so this module knows nothing of [`Engine`]'s insides.
//!
//! [`Engine`]: crate::Engine
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

use std::os::fd::AsFd;

use socket2::SockRef;

use crate::buffer::AlignedBuf;
use crate::driver::Transfer;
use crate::dtype::DType;
use crate::frame::{self, FrameError, Header, Order, TRAILER_LEN, WireFormat};
use crate::progress::PayloadCrc;
use crate::{Error, Result};

pub(crate) mod array;
pub(crate) mod receiver;

pub use array::{AnyArray, Array, ArrayView, Element};
pub use receiver::{READ_AHEAD, Receiver};

/// What framed sends and receives need from an engine (implemented by
/// [`Engine`](crate::Engine)): run one transfer, and the framed options.
pub(crate) trait Wire: std::fmt::Debug + Send {
    /// Runs one transfer to completion (never registered as fixed buffers); returns the
    /// bytes moved.
    fn run(&mut self, t: Transfer<'_>) -> Result<u64>;
    /// [`Options::max_payload_bytes`](crate::Options::max_payload_bytes).
    fn max_payload_bytes(&self) -> u64;
    /// [`Options::nodelay`](crate::Options::nodelay).
    fn nodelay(&self) -> bool;
    /// Page-aligned receive memory of `len` bytes from the engine's pool
    /// ([`Error::Alloc`] when the kernel refuses it).
    fn alloc(&self, len: usize) -> Result<AlignedBuf>;
    /// [`Options::prefault`](crate::Options::prefault) is [`crate::Prefault::Ahead`].
    fn prefault_ahead(&self) -> bool;
}

/// Payloads up to this size are copied next to their header and trailer by
/// [`Engine::send_arrays`](crate::Engine::send_arrays), so many small arrays go out in one SQE
/// / one `send`; larger ones are sent from the caller's memory.
pub const COALESCE_MAX: usize = 64 << 10;

/// The header of an array the caller asks to send: `bytes` bytes of `dtype` as `shape`.
///
/// # Errors
/// [`Error::InvalidArray`] (the caller's mistake, not a peer's frame) when
/// `product(shape) * itemsize != bytes`, above [`frame::MAX_NDIM`] dimensions, or when the
/// shape overflows.
pub(crate) fn send_header(
    dtype: DType,
    shape: &[u64],
    order: Order,
    bytes: usize,
) -> Result<Header> {
    let header = Header::new(dtype, shape, order).map_err(Error::InvalidArray)?;
    if header.payload_len != bytes as u64 {
        return Err(Error::InvalidArray(shape_mismatch(
            dtype, shape, &header, bytes,
        )));
    }
    Ok(header)
}

/// Before a framed send: the stream-socket check, and `TCP_NODELAY` unless
/// [`Options::nodelay`](crate::Options::nodelay) is off (a failure to set it — a Unix socket
/// has no such option — is ignored).
pub(crate) fn prepare_send<S: AsFd>(wire: &dyn Wire, sock: &S, len: usize) -> Result<()> {
    crate::sock::check_stream(sock, len as u64)?;
    if wire.nodelay() {
        let _ = SockRef::from(sock).set_tcp_nodelay(true);
    }
    Ok(())
}

/// Payloads from this size up are sent with their CRC-32 computed as the bytes go out (a
/// progress hook, [`crate::driver`]) and the trailer in a second transfer once it is known;
/// smaller ones are hashed first and leave with header and trailer in one transfer (one SQE or
/// `sendmsg`), which keeps a small message's latency (`ringxfer bench --pingpong`).
pub(crate) const CRC_OVERLAP_MIN: usize = 1 << 20;

/// Sends raw element bytes of any `dtype` as one framed array: header, payload, trailer in one
/// gathered transfer, or — an RGXF payload of at least [`CRC_OVERLAP_MIN`] bytes — header and
/// payload with the CRC-32 computed on the way, then the trailer.
pub(crate) fn send_view<S: AsFd>(
    wire: &mut dyn Wire,
    sock: &S,
    view: ArrayView<'_>,
    format: WireFormat,
) -> Result<()> {
    let header = send_header(view.dtype, view.shape, view.order, view.bytes.len())?;
    let overlap = format == WireFormat::Rgxf && view.bytes.len() >= CRC_OVERLAP_MIN;
    let (head, trailer) = match format {
        WireFormat::Rgxf if overlap => (header.encode(), None),
        WireFormat::Rgxf => (
            header.encode(),
            Some(frame::encode_trailer(crc32fast::hash(view.bytes))),
        ),
        WireFormat::Npy => (
            crate::npy::encode_header(view.dtype, view.shape, view.order),
            None,
        ),
    };
    let parts: Vec<&[u8]> = [
        &head[..],
        view.bytes,
        trailer.as_ref().map_or(&[], |t| &t[..]),
    ]
    .into_iter()
    .filter(|p| !p.is_empty())
    .collect();
    let first: usize = parts.iter().map(|p| p.len()).sum();
    let whole = first + if overlap { TRAILER_LEN } else { 0 };
    prepare_send(wire, sock, whole)?;
    if !overlap {
        return wire.run(Transfer::send(sock.as_fd(), parts)).map(drop);
    }
    let mut crc = PayloadCrc::new(
        crc32fast::Hasher::new(),
        head.len() as u64,
        view.bytes.len() as u64,
    );
    let t = Transfer::send(sock.as_fd(), parts).with_progress(&mut crc);
    let (first, whole) = (first as u64, whole as u64);
    wire.run(t).map_err(|e| in_message(e, 0, whole))?;
    let trailer = frame::encode_trailer(crc.finalize());
    let t = Transfer::send(sock.as_fd(), vec![&trailer[..]]);
    wire.run(t)
        .map(drop)
        .map_err(|e| in_message(e, first, whole))
}

/// Sends many framed arrays back to back (see
/// [`Engine::send_arrays`](crate::Engine::send_arrays)).
pub(crate) fn send_arrays<S: AsFd>(
    wire: &mut dyn Wire,
    sock: &S,
    arrays: &[ArrayView<'_>],
) -> Result<()> {
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
        let header = send_header(a.dtype, a.shape, a.order, a.bytes.len())?;
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
    prepare_send(wire, sock, slices.iter().map(|s| s.len()).sum())?;
    wire.run(Transfer::send(sock.as_fd(), slices)).map(drop)
}

/// [`FrameError::ShapeMismatch`]: `len` bytes of `dtype` are not the `shape` of `header`.
pub(crate) fn shape_mismatch(
    dtype: DType,
    shape: &[u64],
    header: &Header,
    len: usize,
) -> FrameError {
    FrameError::ShapeMismatch {
        shape: shape.to_vec(),
        needed: header.payload_len / dtype.itemsize() as u64,
        len: (len / dtype.itemsize()) as u64,
    }
}

/// Checks a message's trailer (end magic, and the payload CRC-32 when the header's flag says
/// the sender computed it); `actual` is the CRC-32 of the payload as received.
pub(crate) fn check_trailer(
    header: &Header,
    actual: u32,
    trailer: &[u8; TRAILER_LEN],
) -> Result<()> {
    let expected = frame::decode_trailer(trailer)?;
    if header.flags & frame::FLAG_PAYLOAD_CRC32 != 0 && actual != expected {
        return Err(FrameError::PayloadChecksum { expected, actual }.into());
    }
    Ok(())
}

/// Re-bases a transfer error of one part of a message onto the whole message's byte counts.
pub(crate) fn in_message(e: Error, before: u64, whole: u64) -> Error {
    e.rebased(before, whole)
}
