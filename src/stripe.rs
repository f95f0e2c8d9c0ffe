//! One array over several streams: each stream carries one contiguous **stripe**, which the
//! receiver writes in place into its part of the array (no reassembly copy).
//!
//! The streams may go over different paths ("rails": several addresses, as with several
//! NICs); ringxfer only sees sockets. All stripes move at once through [`Engine::scope`]: on
//! the uring backend on one ring, on the blocking backend on one thread per stream.

use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, RawFd};

use bytemuck::Pod;
use socket2::SockRef;

use crate::{Engine, Error, Result};

/// Stripe boundaries are multiples of this many bytes.
pub const STRIPE_ALIGN: u64 = 4096;

/// The byte range of each of `n` stripes of an array of `len` bytes: how
/// [`Engine::send_striped`] cuts an array.
///
/// # Geometry (raw mode: both sides compute it; framed striping carries it)
///
/// For an array of `len` bytes over `n` streams, every stripe but the last holds
/// `q = ceil(ceil(len / n) / 4096) * 4096` bytes (a multiple of 4 KiB, so stripes start on
/// page boundaries of a page-aligned array); stripe `i` is bytes
/// `[min(i·q, len), min((i+1)·q, len))`. Stripes at the end may be empty when `len` is small
/// (an empty stripe moves nothing on its stream). Both ends must use the same `n` and the same
/// order of streams: stream `i` of the sender must be connected to stream `i` of the
/// receiver.
///
///
/// # Panics
/// When `n` is 0.
pub fn stripes(len: u64, n: usize) -> Vec<Range<u64>> {
    assert!(n > 0, "at least one stream");
    (0..n as u64).map(|i| stripe(len, n as u64, i)).collect()
}

/// Stripe `i` of [`stripes`]`(len, n)`, computed alone: nothing is sized by `n` (a stripe
/// prefix's count comes from the peer).
fn stripe(len: u64, n: u64, i: u64) -> Range<u64> {
    let per = len
        .div_ceil(n)
        .div_ceil(STRIPE_ALIGN)
        .saturating_mul(STRIPE_ALIGN);
    i.saturating_mul(per).min(len)..(i + 1).saturating_mul(per).min(len)
}

/// The peer address of `sock` for messages ("127.0.0.1:5000", "unix", or "?").
fn peer_name<S: AsFd>(sock: &S) -> String {
    match SockRef::from(sock).peer_addr() {
        Ok(a) => match a.as_socket() {
            Some(sa) => sa.to_string(),
            None => "unix".to_owned(),
        },
        Err(_) => "?".to_owned(),
    }
}

/// The striped call's error: the first stream that failed on its own (others report
/// [`Error::Canceled`] after it), as [`Error::Stream`].
fn first_failure(peers: Vec<String>, results: Vec<Result<u64>>) -> Result<()> {
    let mut canceled = None;
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(_) => {}
            Err(e @ Error::Canceled { .. }) => {
                canceled.get_or_insert((i, e));
            }
            Err(e) => return Err(stream_error(&peers, i, e)),
        }
    }
    canceled.map_or(Ok(()), |(i, e)| Err(stream_error(&peers, i, e)))
}

fn stream_error(peers: &[String], i: usize, e: Error) -> Error {
    Error::Stream {
        stream: i,
        peer: peers[i].clone(),
        source: Box::new(e),
    }
}

impl Engine {
    /// Sends `data` striped over `socks` (stream `i` carries stripe `i`, see
    /// [`stripes`]), all streams at once. Returns when every stripe is
    /// sent.
    ///
    /// # Errors
    /// [`Error::Stream`] naming the first stream that failed, its peer address and (in its
    /// `source`) that stream's own error with the bytes of its stripe moved so far; the other
    /// streams were canceled and drained — no stripe is left in flight.
    /// [`Error::InvalidInput`] for no sockets or the same socket twice.
    pub fn send_striped<T: Pod, S: AsFd>(&mut self, socks: &[S], data: &[T]) -> Result<()> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        if socks.is_empty() {
            return Err(Error::InvalidInput("send_striped: no streams".to_owned()));
        }
        let geometry = stripes(bytes.len() as u64, socks.len());
        // Taken now: after a reset the kernel no longer knows a stream's peer.
        let peers = socks.iter().map(peer_name).collect();
        let results = self
            .scope(|s| {
                for (sock, r) in socks.iter().zip(&geometry) {
                    s.send(sock, &bytes[r.start as usize..r.end as usize]);
                }
            })
            .into_results();
        first_failure(peers, results)
    }

    /// Receives an array striped over `socks` into `data`, each stripe written in place.
    /// Errors as [`Engine::send_striped`]; on error, which bytes of `data` are valid depends
    /// on each stream's count.
    pub fn recv_striped<T: Pod, S: AsFd>(&mut self, socks: &[S], data: &mut [T]) -> Result<()> {
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(data);
        if socks.is_empty() {
            return Err(Error::InvalidInput("recv_striped: no streams".to_owned()));
        }
        let geometry = stripes(bytes.len() as u64, socks.len());
        let mut parts: Vec<&mut [u8]> = Vec::with_capacity(socks.len());
        let mut rest = bytes;
        for r in &geometry {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut((r.end - r.start) as usize);
            parts.push(head);
            rest = tail;
        }
        let peers = socks.iter().map(peer_name).collect();
        let results = self
            .scope(|s| {
                for (sock, part) in socks.iter().zip(parts) {
                    s.recv(sock, part);
                }
            })
            .into_results();
        first_failure(peers, results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_covers_the_array_in_order() {
        for len in [
            0u64,
            1,
            4095,
            4096,
            4097,
            100_000,
            400_000_000,
            (5 << 30) + 3,
        ] {
            for n in 1..=9 {
                let g = stripes(len, n);
                assert_eq!(g.len(), n);
                assert_eq!(g[0].start, 0);
                assert_eq!(g[n - 1].end, len, "len {len} n {n}");
                for w in g.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                    assert!(w[0].start % STRIPE_ALIGN == 0 || w[0].start == len);
                }
            }
        }
        assert_eq!(stripes(10_000, 3), vec![0..4096, 4096..8192, 8192..10_000]);
        assert_eq!(stripes(100, 4), vec![0..100, 100..100, 100..100, 100..100]);
        // One stripe alone, for any count a prefix may say.
        assert_eq!(stripe(10_000, 3, 2), 8192..10_000);
        assert_eq!(stripe(10, u32::MAX.into(), u64::from(u32::MAX) - 1), 10..10);
        assert_eq!(stripe(u64::MAX, 2, 1).end, u64::MAX);
        assert_eq!(stripe(u64::MAX, 1, 0), 0..u64::MAX);
    }

    #[test]
    fn a_prefix_with_a_huge_count_decodes_without_sizing_anything() {
        let last = u32::MAX - 1;
        let p = StripePrefix {
            stream: last,
            streams: u32::MAX,
            array_id: 1,
            offset: 10,
            len: 0,
            payload_len: 10,
        };
        assert_eq!(StripePrefix::decode(&p.encode()), Ok(p));
        // An offset + length past u64::MAX is a geometry error, not an overflow.
        let q = StripePrefix {
            offset: u64::MAX,
            len: 2,
            ..p
        };
        assert_eq!(
            StripePrefix::decode(&q.encode()),
            Err(FrameError::BadStripe(format!(
                "stream {last} carries bytes {}..1 of 10, the geometry says 10..10",
                u64::MAX
            )))
        );
    }
}

// -------------------------------------------------------------------------------------------
// Framed striping: the stripe prefix (docs/PROTOCOL.md, "Striped arrays")
// -------------------------------------------------------------------------------------------

/// Magic of a stripe prefix.
pub const STRIPE_MAGIC: [u8; 4] = *b"RGXS";
/// Version of the stripe prefix.
pub const STRIPE_VERSION: u16 = 1;
/// Bytes of a stripe prefix.
pub const STRIPE_PREFIX_LEN: usize = 56;

/// One stream's stripe prefix: which array, which stream of how many, which bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StripePrefix {
    /// Index of this stream (its stripe is stripe `stream` of the geometry).
    pub stream: u32,
    /// Streams the array is striped over.
    pub streams: u32,
    /// Random id shared by the streams of one array (so streams of two arrays cannot mix).
    pub array_id: u64,
    /// Byte offset of this stripe in the payload.
    pub offset: u64,
    /// Bytes of this stripe.
    pub len: u64,
    /// Bytes of the whole payload.
    pub payload_len: u64,
}

impl StripePrefix {
    /// The 56 little-endian bytes (layout in docs/PROTOCOL.md), CRC-32 of bytes 0..48 at 48.
    pub fn encode(&self) -> [u8; STRIPE_PREFIX_LEN] {
        let mut b = [0u8; STRIPE_PREFIX_LEN];
        b[0..4].copy_from_slice(&STRIPE_MAGIC);
        b[4..6].copy_from_slice(&STRIPE_VERSION.to_le_bytes());
        b[8..12].copy_from_slice(&self.stream.to_le_bytes());
        b[12..16].copy_from_slice(&self.streams.to_le_bytes());
        b[16..24].copy_from_slice(&self.array_id.to_le_bytes());
        b[24..32].copy_from_slice(&self.offset.to_le_bytes());
        b[32..40].copy_from_slice(&self.len.to_le_bytes());
        b[40..48].copy_from_slice(&self.payload_len.to_le_bytes());
        let crc = crc32fast::hash(&b[..48]);
        b[48..52].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks one prefix on its own (magic, version, flags, checksum, geometry
    /// of its own stripe).
    pub fn decode(b: &[u8; STRIPE_PREFIX_LEN]) -> std::result::Result<Self, FrameError> {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let bad = |s: String| Err(FrameError::BadStripe(s));
        if b[0..4] != STRIPE_MAGIC {
            return bad(format!(
                "magic b\"{}\" (expected b\"RGXS\")",
                b[0..4].escape_ascii()
            ));
        }
        if u16_at(4) != STRIPE_VERSION {
            return bad(format!(
                "version {} (this build speaks {STRIPE_VERSION})",
                u16_at(4)
            ));
        }
        if u16_at(6) != 0 || u32_at(52) != 0 {
            return bad("non-zero flags or reserved field".to_owned());
        }
        let (stored, actual) = (u32_at(48), crc32fast::hash(&b[..48]));
        if stored != actual {
            return bad(format!(
                "prefix CRC-32 {stored:#010x}, computed {actual:#010x}"
            ));
        }
        let p = StripePrefix {
            stream: u32_at(8),
            streams: u32_at(12),
            array_id: u64_at(16),
            offset: u64_at(24),
            len: u64_at(32),
            payload_len: u64_at(40),
        };
        if p.streams == 0 || p.stream >= p.streams {
            return bad(format!("stream {} of {}", p.stream, p.streams));
        }
        // Computed alone: a hostile count (up to 2^32 - 1) must not size anything.
        let want = stripe(p.payload_len, p.streams.into(), p.stream.into());
        if (p.offset, p.offset.checked_add(p.len)) != (want.start, Some(want.end)) {
            return bad(format!(
                "stream {} carries bytes {}..{} of {}, the geometry says {}..{}",
                p.stream,
                p.offset,
                p.offset.wrapping_add(p.len),
                p.payload_len,
                want.start,
                want.end
            ));
        }
        Ok(p)
    }
}

use crate::dtype::DType;
use crate::frame::{self, FrameError, Header, Order, TRAILER_LEN};
use crate::framed::receiver::{DISCARD_CHUNK, dtype_fits};
use crate::framed::{AnyArray, Element, shape_mismatch};
use crate::progress::PayloadCrc;

/// What step 1 of a striped framed receive ([`Engine::recv_striped_header`]) learned: the
/// array (stream 0's header: dtype, shape, order, payload length in bytes) and which of the
/// caller's sockets carries which stripe. Hand it to step 2,
/// [`Engine::recv_striped_payload_into`], with the same sockets in the same order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripedHeader {
    /// Stream 0's array header (its `payload_len` equals every stripe prefix's).
    header: Header,
    /// For each stripe index, the index in the caller's sockets of the stream that carries it.
    by_index: Vec<usize>,
    /// Each socket's peer address as step 1 saw it (named in errors).
    peers: Vec<String>,
    /// Each socket's file descriptor as step 1 had them: step 2 refuses other sockets, or
    /// these in another order (stripes of equal length swapped would pass their CRC-32s).
    fds: Vec<RawFd>,
}

impl StripedHeader {
    /// The array's header, as [`Engine::recv_header`] returns one.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The element type and byte order.
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

    /// Bytes of the whole payload (`product(shape) * itemsize`): the length step 2's `out`
    /// must have.
    pub fn payload_len(&self) -> u64 {
        self.header.payload_len
    }

    /// Streams the array is striped over (the number of sockets step 1 was given).
    pub fn streams(&self) -> usize {
        self.by_index.len()
    }

    /// The index in the caller's sockets of the stream that carries stripe `stripe` (its
    /// bytes are [`stripes`]`(payload_len, streams)[stripe]`); `None` past the last stripe.
    pub fn socket_of(&self, stripe: usize) -> Option<usize> {
        self.by_index.get(stripe).copied()
    }
}

/// One stripe's receive: its place in the array, its trailer, its CRC-32 hook.
type Slot<'a> = (&'a mut [u8], &'a mut [u8; TRAILER_LEN], &'a mut PayloadCrc);

impl Engine {
    /// Sends one framed array striped over `socks` (docs/PROTOCOL.md, "Striped arrays"):
    /// every stream carries a stripe prefix (array id, its index, the stream count, its
    /// stripe's offset and length), stream 0 also the array's ordinary header (dtype, shape,
    /// order), then the stripe and its CRC-32 trailer. The receiver
    /// ([`Engine::recv_any_striped`]) needs no prior knowledge — not even the order of the
    /// streams. Errors as [`Engine::send_striped`], plus the header errors of
    /// [`Engine::send_array_bytes`].
    pub fn send_array_striped<S: AsFd>(
        &mut self,
        socks: &[S],
        dtype: DType,
        bytes: &[u8],
        shape: &[u64],
        order: Order,
    ) -> Result<()> {
        if socks.is_empty() || socks.len() > u32::MAX as usize {
            return Err(Error::InvalidInput(
                "send_array_striped: no streams".to_owned(),
            ));
        }
        let header = crate::framed::send_header(dtype, shape, order, bytes.len())?;
        let head = header.encode();
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|e| Error::Setup {
            what: "getrandom (stripe array id)",
            source: std::io::Error::other(e.to_string()),
        })?;
        let array_id = u64::from_le_bytes(id);
        let n = socks.len();
        let geometry = stripes(bytes.len() as u64, n);
        let prefixes: Vec<[u8; STRIPE_PREFIX_LEN]> = geometry
            .iter()
            .enumerate()
            .map(|(i, r)| {
                StripePrefix {
                    stream: i as u32,
                    streams: n as u32,
                    array_id,
                    offset: r.start,
                    len: r.end - r.start,
                    payload_len: bytes.len() as u64,
                }
                .encode()
            })
            .collect();
        let peers: Vec<String> = socks.iter().map(peer_name).collect();
        for (i, (s, r)) in socks.iter().zip(&geometry).enumerate() {
            // The stream-socket check and TCP_NODELAY, as for any framed send.
            crate::framed::prepare_send(self, s, (r.end - r.start) as usize)
                .map_err(|e| stream_error(&peers, i, e))?;
        }
        let stripe = |i: usize| &bytes[geometry[i].start as usize..geometry[i].end as usize];
        // A large array's stripes are hashed as they go out (a progress hook per stream) and
        // the trailers follow in a second set; a small one's are hashed first and leave with
        // their stripes (as `send_view`).
        let overlap = bytes.len() >= crate::framed::CRC_OVERLAP_MIN;
        let mut crcs: Vec<PayloadCrc> = (0..n)
            .map(|i| {
                let skip = STRIPE_PREFIX_LEN + if i == 0 { head.len() } else { 0 };
                PayloadCrc::new(
                    crc32fast::Hasher::new(),
                    skip as u64,
                    stripe(i).len() as u64,
                )
            })
            .collect();
        let mut trailers: Vec<[u8; TRAILER_LEN]> = match overlap {
            true => Vec::new(),
            false => (0..n)
                .map(|i| frame::encode_trailer(crc32fast::hash(stripe(i))))
                .collect(),
        };
        let results = self
            .scope(|s| {
                for ((i, sock), crc) in socks.iter().enumerate().zip(crcs.iter_mut()) {
                    let mut parts: Vec<&[u8]> = vec![&prefixes[i]];
                    if i == 0 {
                        parts.push(&head);
                    }
                    parts.push(stripe(i));
                    match trailers.get(i) {
                        Some(t) => {
                            parts.push(&t[..]);
                            s.send_parts(sock.as_fd(), parts, None);
                        }
                        None => s.send_parts(sock.as_fd(), parts, Some(crc)),
                    }
                }
            })
            .into_results();
        first_failure(peers.clone(), results)?;
        if !overlap {
            return Ok(());
        }
        trailers = crcs
            .into_iter()
            .map(|c| frame::encode_trailer(c.finalize()))
            .collect();
        // Each stream's trailer, after its prefix, header and stripe.
        let sent = |i: usize| {
            (STRIPE_PREFIX_LEN + stripe(i).len()) as u64
                + if i == 0 { head.len() as u64 } else { 0 }
        };
        let results = self
            .scope(|s| {
                for (sock, t) in socks.iter().zip(&trailers) {
                    s.send_parts(sock.as_fd(), vec![&t[..]], None);
                }
            })
            .into_results()
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.map_err(|e| e.rebased(sent(i), sent(i) + TRAILER_LEN as u64)))
            .collect();
        first_failure(peers, results)
    }

    /// Receives one array sent by [`Engine::send_array_striped`] over `socks`, in any order
    /// of the streams (each stream's prefix says which stripe it carries), into memory of the
    /// engine's own (recycled pages when [`Options::recycle_bytes`](crate::Options::recycle_bytes)
    /// kept some, as [`Engine::recv_any`]): [`Engine::recv_striped_header`], then the
    /// allocation, then [`Engine::recv_striped_payload_into`] — so the checks, the CRC-32 of
    /// each stripe and the errors are theirs. Nothing is allocated before every prefix and
    /// the header have been checked.
    ///
    /// # Errors
    /// Those of the two steps; [`Error::Alloc`] when the memory cannot be had (the stripes
    /// are then still in the sockets).
    pub fn recv_any_striped<S: AsFd>(&mut self, socks: &[S]) -> Result<AnyArray> {
        let head = self.recv_striped_header(socks)?;
        // (`recv_header` refused a payload over `max_payload_bytes` before anything was allocated.)
        let data = crate::framed::Wire::alloc(self, head.header.payload_len as usize)?;
        let mut array = AnyArray::new(head.header.clone(), data, frame::WireFormat::Rgxf);
        self.recv_striped_payload_into(socks, &head, array.bytes_mut())?;
        Ok(array)
    }

    /// Step 1 of a striped receive into the caller's memory: reads every stream's stripe
    /// prefix (56 bytes, all streams at once) and stream 0's array header, and nothing after
    /// them. Checks before anything is sized by the peer's numbers: every prefix well-formed,
    /// the same array id and payload length on every stream, each stream index once, the
    /// stream count equal to `socks.len()`, the geometry of each stripe, the header's
    /// payload length equal to the prefixes' and within
    /// [`Options::max_payload_bytes`](crate::Options::max_payload_bytes). The streams may be
    /// given in any order. The returned [`StripedHeader`] says what to make room for
    /// (dtype, shape, order, [`StripedHeader::payload_len`] bytes); step 2,
    /// [`Engine::recv_striped_payload_into`], receives every stripe into it.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for no sockets (nothing read). [`Error::Stream`] naming the
    /// stream (its index in `socks`) and its peer, for a transfer error
    /// ([`Error::UnexpectedEof`], [`Error::Io`], [`Error::TimedOut`]: counts of its prefix,
    /// or of stream 0's header) or a rejected prefix or header
    /// ([`FrameError::BadStripe`](crate::FrameError::BadStripe), the header's
    /// [`FrameError`](crate::FrameError)s, `TooLarge`); the other streams' prefix reads were
    /// canceled. After an error the streams are at unknown places inside the array: close
    /// them.
    pub fn recv_striped_header<S: AsFd>(&mut self, socks: &[S]) -> Result<StripedHeader> {
        if socks.is_empty() {
            return Err(Error::InvalidInput(
                "recv_striped_header: no streams".to_owned(),
            ));
        }
        let peers: Vec<String> = socks.iter().map(peer_name).collect();
        let on = |i: usize, e: Error| stream_error(&peers, i, e);
        // Every stream's prefix, all at once: which socket carries which stripe.
        let (by_index, first) = self.recv_stripe_prefixes(socks, &peers)?;
        // The array header, on stream 0.
        let s0 = by_index[0];
        let header = self.recv_header(&socks[s0]).map_err(|e| on(s0, e))?;
        if header.payload_len != first.payload_len {
            return Err(on(
                s0,
                FrameError::BadStripe(format!(
                    "the header says {} payload bytes, the stripe prefixes {}",
                    header.payload_len, first.payload_len
                ))
                .into(),
            ));
        }
        Ok(StripedHeader {
            header,
            by_index,
            peers,
            fds: socks.iter().map(|s| s.as_fd().as_raw_fd()).collect(),
        })
    }

    /// Step 2 of a striped receive into the caller's memory: receives every stripe of the
    /// array whose [`StripedHeader`] step 1 ([`Engine::recv_striped_header`]) returned on the
    /// same `socks` (in the same order) in place into `out` — stripe `i` into
    /// `out[stripes(L, N)[i]]`, see [`stripes`] — all streams at once, each stripe's CRC-32
    /// computed as its bytes arrive and checked against its trailer. `out` is memory of any
    /// kind (e.g. a mapped output file, [`crate::file::MappedFileMut`]): no allocation, no
    /// intermediate buffer, no copy.
    ///
    /// # Errors
    /// * [`Error::InvalidInput`] when `out` is not exactly
    ///   [`StripedHeader::payload_len`] bytes, or `socks` is not
    ///   [`StripedHeader::streams`] sockets; the message says both numbers. Also when `socks`
    ///   are not step 1's sockets in step 1's order (compared by file descriptor: a
    ///   reordered list would put stripes of equal length at each other's places, each
    ///   passing its own CRC-32). Nothing is read and `out` is untouched: the streams are
    ///   still at the start of their stripes, and a call with the right `out` and sockets
    ///   receives the array. (A `head` of an earlier array on the same sockets is not told
    ///   apart: use each `StripedHeader` once.)
    /// * [`Error::Stream`] naming the stream (its index in `socks`), its peer address, and
    ///   that stream's own error: a transfer error ([`Error::UnexpectedEof`], [`Error::Io`],
    ///   [`Error::TimedOut`]) counting the bytes of its stripe and trailer (`expected`: the
    ///   stripe's length + 8), after which the other streams were canceled and drained (no
    ///   stripe is left in flight; `out` holds partial stripes); or a stripe received whole
    ///   whose trailer is rejected ([`FrameError::BadTrailer`](crate::FrameError::BadTrailer))
    ///   or whose CRC-32 does not match
    ///   ([`FrameError::PayloadChecksum`](crate::FrameError::PayloadChecksum)): every stripe
    ///   and trailer was consumed, `out` holds the wrong bytes. After a transfer error the
    ///   streams are unusable; after a checksum error they are at the end of the array.
    pub fn recv_striped_payload_into<S: AsFd>(
        &mut self,
        socks: &[S],
        head: &StripedHeader,
        out: &mut [u8],
    ) -> Result<()> {
        let n = head.streams();
        let len = head.payload_len();
        if socks.len() != n || out.len() as u64 != len {
            return Err(Error::InvalidInput(format!(
                "recv_striped_payload_into: {} socket(s) and {} bytes of out for an array of \
                 {len} payload bytes striped over {n} streams (nothing was read)",
                socks.len(),
                out.len()
            )));
        }
        if !socks
            .iter()
            .map(|s| s.as_fd().as_raw_fd())
            .eq(head.fds.iter().copied())
        {
            return Err(Error::InvalidInput(
                "recv_striped_payload_into: the sockets are not those of step 1 in the same \
                 order (nothing was read)"
                    .to_owned(),
            ));
        }
        let (by_index, peers) = (&head.by_index, &head.peers);
        let geometry = stripes(len, n);
        let mut trailers = vec![[0u8; TRAILER_LEN]; n];
        let mut crcs: Vec<PayloadCrc> = geometry
            .iter()
            .map(|r| PayloadCrc::new(crc32fast::Hasher::new(), 0, r.end - r.start))
            .collect();
        {
            let mut parts: Vec<&mut [u8]> = Vec::with_capacity(n);
            let mut rest = out;
            for r in &geometry {
                let (head, tail) =
                    std::mem::take(&mut rest).split_at_mut((r.end - r.start) as usize);
                parts.push(head);
                rest = tail;
            }
            let mut slots: Vec<Option<Slot<'_>>> = parts
                .into_iter()
                .zip(trailers.iter_mut())
                .zip(crcs.iter_mut())
                .map(|((p, t), c)| Some((p, t, c)))
                .collect();
            let results = self
                .scope(|s| {
                    for k in 0..n {
                        let i = by_index[k];
                        let (stripe, trailer, crc) = slots[k].take().expect("once");
                        // The stripe's CRC-32 is computed as its bytes arrive.
                        s.recv_parts(socks[i].as_fd(), vec![stripe, &mut trailer[..]], Some(crc));
                    }
                })
                .into_results();
            // Results are in stripe order; report the socket's index.
            let mut by_socket: Vec<Result<u64>> = (0..n).map(|_| Ok(0)).collect();
            for (k, r) in results.into_iter().enumerate() {
                by_socket[by_index[k]] = r;
            }
            first_failure(peers.clone(), by_socket)?;
        }
        for (k, crc) in crcs.into_iter().enumerate() {
            let i = by_index[k];
            let on = |e: Error| stream_error(peers, i, e);
            let expected = frame::decode_trailer(&trailers[k]).map_err(|e| on(e.into()))?;
            let actual = crc.finalize();
            if actual != expected {
                return Err(on(FrameError::PayloadChecksum { expected, actual }.into()));
            }
        }
        Ok(())
    }
    /// Receives one striped framed array of `T` in native byte order into the caller's
    /// `out` — the striped twin of [`Engine::recv_array_into`]: step 1
    /// ([`Engine::recv_striped_header`]), the dtype and length checks of `recv_array_into`,
    /// then step 2 ([`Engine::recv_striped_payload_into`]) into `out`'s bytes. Returns the
    /// array's header (shape and order).
    ///
    /// # Errors
    /// [`FrameError::DtypeMismatch`](crate::FrameError::DtypeMismatch) (another dtype or byte
    /// order than `T`) or [`FrameError::ShapeMismatch`](crate::FrameError::ShapeMismatch)
    /// (`out` has another number of elements) when the array does not fit `out`: as for
    /// `recv_array_into`, the array is **consumed** — every stripe and trailer read and
    /// discarded, at most 1 MiB at a time per stream, nothing allocated for the payload — so
    /// the streams are at the start of the next array; `out` is untouched. A transfer error or
    /// a trailer without its end magic while discarding is returned instead, as
    /// [`Error::Stream`] naming the stream. Otherwise as the two steps.
    pub fn recv_array_striped_into<T: Element, S: AsFd>(
        &mut self,
        socks: &[S],
        out: &mut [T],
    ) -> Result<Header> {
        let head = self.recv_striped_header(socks)?;
        let h = &head.header;
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(out);
        let fits = dtype_fits::<T>(h).and_then(|()| match h.payload_len == bytes.len() as u64 {
            true => Ok(()),
            false => Err(shape_mismatch(h.dtype, &h.shape, h, bytes.len()).into()),
        });
        if let Err(e) = fits {
            self.discard_stripes(socks, &head)?;
            return Err(e);
        }
        self.recv_striped_payload_into(socks, &head, bytes)?;
        Ok(head.header)
    }

    /// Reads and throws away every stripe and trailer of the array of `head` (step 1 done on
    /// `socks`), all streams at once, at most [`DISCARD_CHUNK`] bytes per stream per round;
    /// checks each trailer's end magic (not the CRC-32: the bytes are dropped).
    fn discard_stripes<S: AsFd>(&mut self, socks: &[S], head: &StripedHeader) -> Result<()> {
        let n = head.streams();
        // Bytes of stripe and trailer each socket still carries.
        let mut whole = vec![0u64; n];
        for (k, r) in stripes(head.payload_len(), n).iter().enumerate() {
            whole[head.by_index[k]] = r.end - r.start + TRAILER_LEN as u64;
        }
        let mut left = whole.clone();
        let chunk = DISCARD_CHUNK as u64;
        let mut scratch: Vec<Vec<u8>> = left
            .iter()
            .map(|&l| vec![0u8; l.min(chunk) as usize])
            .collect();
        let mut trailers = vec![[0u8; TRAILER_LEN]; n];
        while left.iter().any(|&l| l > 0) {
            // This round: a chunk of each stripe, or the rest of it and its trailer (a stream
            // with bytes left always has at least its 8 trailer bytes left).
            let take: Vec<u64> = left
                .iter()
                .map(|&l| match l - l.min(TRAILER_LEN as u64) > chunk {
                    true => chunk,
                    false => l,
                })
                .collect();
            let results = self
                .scope(|s| {
                    let streams = scratch.iter_mut().zip(trailers.iter_mut());
                    for (i, (b, t)) in streams.enumerate() {
                        let parts: Vec<&mut [u8]> = match (left[i], take[i]) {
                            (0, _) => continue,
                            (l, k) if k == l => {
                                vec![&mut b[..l as usize - TRAILER_LEN], &mut t[..]]
                            }
                            (_, k) => vec![&mut b[..k as usize]],
                        };
                        s.recv_parts(socks[i].as_fd(), parts, None);
                    }
                })
                .into_results();
            let mut results = results.into_iter();
            let by_socket: Vec<Result<u64>> = (0..n)
                .map(|i| match left[i] {
                    0 => Ok(0),
                    l => results
                        .next()
                        .expect("one result per stream with bytes left")
                        .map_err(|e| e.rebased(whole[i] - l, whole[i])),
                })
                .collect();
            first_failure(head.peers.clone(), by_socket)?;
            for (l, k) in left.iter_mut().zip(&take) {
                *l -= k;
            }
        }
        for (i, t) in trailers.iter().enumerate() {
            frame::decode_trailer(t).map_err(|e| stream_error(&head.peers, i, e.into()))?;
        }
        Ok(())
    }

    /// The first part of [`Engine::recv_striped_header`]: reads every stream's stripe prefix
    /// at once and checks them against each other; returns, for each stripe index, the index in `socks`
    /// of the socket that carries it, and the first prefix.
    fn recv_stripe_prefixes<S: AsFd>(
        &mut self,
        socks: &[S],
        peers: &[String],
    ) -> Result<(Vec<usize>, StripePrefix)> {
        let n = socks.len();
        let on = |i: usize, e: Error| stream_error(peers, i, e);
        let mut raw = vec![[0u8; STRIPE_PREFIX_LEN]; n];
        let results = self
            .scope(|s| {
                for (sock, b) in socks.iter().zip(raw.iter_mut()) {
                    s.recv_parts(sock.as_fd(), vec![&mut b[..]], None);
                }
            })
            .into_results();
        first_failure(peers.to_vec(), results)?;
        let mut by_index: Vec<Option<usize>> = vec![None; n];
        let mut first: Option<StripePrefix> = None;
        for (i, b) in raw.iter().enumerate() {
            let p = StripePrefix::decode(b).map_err(|e| on(i, e.into()))?;
            let f = *first.get_or_insert(p);
            let mismatch = |what: String| on(i, FrameError::BadStripe(what).into());
            if p.array_id != f.array_id || p.payload_len != f.payload_len {
                return Err(mismatch(format!(
                    "array id {:#x} / {} bytes, stream {} of the first socket says {:#x} / {}",
                    p.array_id, p.payload_len, f.stream, f.array_id, f.payload_len
                )));
            }
            if p.streams as usize != n {
                return Err(mismatch(format!(
                    "the array is striped over {} streams, {n} sockets were given",
                    p.streams
                )));
            }
            if by_index[p.stream as usize].replace(i).is_some() {
                return Err(mismatch(format!("stream index {} twice", p.stream)));
            }
        }
        let by_index = by_index.into_iter().map(|i| i.expect("every index once"));
        Ok((by_index.collect(), first.expect("n > 0")))
    }
}
