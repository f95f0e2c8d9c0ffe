//! [`Engine`] and its [`Options`]: every public method of the engine is here — one-shot
//! transfers, registration guards, scoped sets, framed sends and receives, closing, the
//! handshake, counters — except the four striped calls, whose logic lives in `stripe.rs`
//! (`impl Engine` there: the stripe code drives the engine, so the engine does not depend on
//! it). [`Engine::run_set`] is the one place that picks the backend.

use std::os::fd::AsFd;
use std::time::Duration;

use bytemuck::Pod;
use socket2::SockRef;

use crate::auth::AuthKey;
use crate::buffer::{self, AlignedBuf, Prefault};
use crate::driver::{Bufs, Interrupt, Transfer};
use crate::dtype::DType;
use crate::frame::{self, Header, Order, WireFormat};
use crate::framed::{self, AnyArray, Array, ArrayView, Element, READ_AHEAD, Receiver, Wire};
use crate::planner::Direction;
use crate::scope::{Scope, ScopeOutcome};
use crate::stats::EngineStats;
use crate::uring::{self, RecvOp, RingFlags, SendOp, UringTuning, probe};
use crate::{Error, Result, auth, blocking, close, sock};

/// Which engine moves the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// io_uring when the probe says it works, else blocking; `RINGXFER_BACKEND` overrides.
    #[default]
    Auto,
    /// A `std::io` `write`/`read` loop on the socket (the baseline).
    Blocking,
    /// io_uring link chains; [`Engine::new`] fails with [`Error::UringUnavailable`] if the
    /// kernel refuses.
    Uring,
}

impl std::str::FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(Backend::Auto),
            "blocking" | "std" => Ok(Backend::Blocking),
            "uring" | "io_uring" | "io-uring" => Ok(Backend::Uring),
            other => Err(Error::InvalidInput(format!(
                "unknown backend {other:?} (expected auto, blocking or uring)"
            ))),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Auto => "auto",
            Backend::Blocking => "blocking",
            Backend::Uring => "uring",
        })
    }
}

/// Whether a one-shot [`Engine::send_from`]/[`Engine::recv_into`] registers the array as fixed
/// buffers for that one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegisterPolicy {
    /// Register only when the measured gain of fixed buffers outweighs the registration cost
    /// for the chosen ops. With the default ops (`SEND`/`RECV`, which copy either way) it does
    /// not pay: registering 400 MB of touched memory costs 12.7 ms here, about a tenth of the
    /// transfer, for no throughput gain (see README, "How the uring path works").
    #[default]
    Auto,
    /// Always register (the fixed-buffer opcodes need it).
    Always,
    /// Never register for one-shot calls.
    Never,
}

/// Options of an [`Engine`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The backend to use.
    pub backend: Backend,
    /// Fail with [`Error::TimedOut`] when no byte moves for this long; the timer restarts on
    /// every bit of progress. `None` (the default) waits forever, like a blocking socket.
    pub idle_timeout: Option<Duration>,
    /// uring backend knobs (ops, segment size, chain length).
    pub uring: UringTuning,
    /// One-shot registration policy.
    pub register: RegisterPolicy,
    /// Framed receives: largest payload accepted, in bytes, checked against the header
    /// *before* anything is allocated. Default [`DEFAULT_MAX_PAYLOAD_BYTES`](crate::DEFAULT_MAX_PAYLOAD_BYTES) (8 GiB).
    pub max_payload_bytes: u64,
    /// Framed receives: how a fresh receive array is prepared ([`Prefault`]).
    pub prefault: Prefault,
    /// Framed receives: bytes of dropped arrays' memory kept for reuse, in a pool shared by
    /// all engines of the process ([`Engine::recycled_bytes`]); default 2 GiB, 0 disables
    /// recycling for this engine.
    pub recycle_bytes: usize,
    /// Framed sends set `TCP_NODELAY` on a TCP socket before sending (default `true`), so a
    /// small message is not held back by Nagle's algorithm waiting for the peer's delayed ACK
    /// (40–200 ms per request/response round trip without it, case C17). The message itself
    /// leaves in as few sends as its size allows either way (one gathered `sendmsg` on the
    /// direct path; `MSG_MORE` between linked SQEs on the ring). `false` leaves the socket's
    /// option as the caller set it. Raw [`Engine::send_from`] never changes it.
    pub nodelay: bool,
    /// The caller's interrupt check (default `None`): polled by both backends at every wake-up
    /// of a transfer's wait loop and at least every [`INTERRUPT_POLL`](crate::INTERRUPT_POLL) (100 ms) while one
    /// runs. Once it returns `true`, every unfinished transfer of the call is canceled, its
    /// SQEs drained (no SQE points into the caller's memory when the call returns), and the
    /// call fails with [`Error::Interrupted`] with the bytes moved so far. The stream is out
    /// of step afterwards (part of the array moved): close the connection.
    pub interrupt: Option<Interrupt>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backend: Backend::Auto,
            idle_timeout: None,
            uring: UringTuning::default(),
            register: RegisterPolicy::Auto,
            max_payload_bytes: frame::DEFAULT_MAX_PAYLOAD_BYTES,
            prefault: Prefault::default(),
            recycle_bytes: 2 << 30,
            nodelay: true,
            interrupt: None,
        }
    }
}

/// The backend an [`Engine`] actually uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActiveBackend {
    /// The blocking `std::io` loop.
    Blocking,
    /// io_uring.
    Uring,
}

impl ActiveBackend {
    /// `"blocking"` or `"uring"`.
    pub fn name(self) -> &'static str {
        match self {
            ActiveBackend::Blocking => "blocking",
            ActiveBackend::Uring => "uring",
        }
    }
}

/// A transfer engine: one io_uring instance (uring backend) reused across calls.
///
/// Not shareable across threads at once (`&mut self` methods); create one per thread.
#[derive(Debug)]
pub struct Engine {
    pub(crate) ring: Option<uring::Ring>,
    pub(crate) pool: std::sync::Arc<buffer::Pool>,
    pub(crate) opts: Options,
    fallback_reason: Option<String>,
}

impl Engine {
    /// An engine with default options and the given backend.
    ///
    /// # Errors
    /// [`Error::UringUnavailable`] when `backend` is `Uring` (or `Auto` forced to uring by
    /// `RINGXFER_BACKEND=uring`) and the probe failed; [`Error::Setup`] when the ring cannot
    /// be created; [`Error::InvalidInput`] for a bad `RINGXFER_BACKEND`.
    pub fn new(backend: Backend) -> Result<Engine> {
        Engine::with_options(Options {
            backend,
            ..Options::default()
        })
    }

    /// An engine with the given options. See [`Engine::new`] for errors.
    pub fn with_options(opts: Options) -> Result<Engine> {
        let mut backend = opts.backend;
        let mut forced = false;
        if backend == Backend::Auto
            && let Ok(v) = std::env::var("RINGXFER_BACKEND")
        {
            // Name the variable: the caller passed `Auto`, not the bad name.
            backend = v.parse().map_err(|e| match e {
                Error::InvalidInput(m) => {
                    Error::InvalidInput(format!("RINGXFER_BACKEND={v:?}: {m}"))
                }
                e => e,
            })?;
            forced = backend != Backend::Auto;
        }
        let p = probe();
        let (ring, fallback_reason) = match backend {
            Backend::Blocking => (None, forced.then(|| "RINGXFER_BACKEND=blocking".to_owned())),
            Backend::Uring if !p.available => {
                return Err(Error::UringUnavailable(
                    p.reason.clone().unwrap_or_default(),
                ));
            }
            Backend::Uring => (Some(uring::Ring::new()?), None),
            Backend::Auto if !p.available => (None, p.reason.clone()),
            Backend::Auto => match uring::Ring::new() {
                Ok(r) => (Some(r), None),
                Err(e) => (None, Some(e.to_string())),
            },
        };
        let ring = ring.map(|r| r.with_interrupt(opts.interrupt.clone()));
        Ok(Engine {
            ring,
            pool: match opts.recycle_bytes {
                0 => buffer::Pool::new(0),
                cap => buffer::Pool::shared(cap),
            },
            opts,
            fallback_reason,
        })
    }

    /// The backend in use.
    pub fn backend(&self) -> ActiveBackend {
        if self.ring.is_some() {
            ActiveBackend::Uring
        } else {
            ActiveBackend::Blocking
        }
    }

    /// Why `Auto` ended up on the blocking backend (`None` when it did not).
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// How this engine's io_uring instance is set up (`None` on the blocking backend): the
    /// probe's choice for the process ([`Probe::ring_flags`](crate::Probe::ring_flags)).
    ///
    /// With `SINGLE_ISSUER` the ring belongs to one thread; the engine is still `Send`: when a
    /// call comes from another thread than the last one, the ring is rebuilt for it (one
    /// `io_uring_setup`, nothing in flight is lost — there is none between calls).
    pub fn ring_flags(&self) -> Option<RingFlags> {
        self.ring.as_ref().map(|r| r.flags())
    }

    /// Notices about paths the engine took instead of the one asked for, each said once per
    /// engine: a refused registration (e.g. `ENOMEM` under `RLIMIT_MEMLOCK` without
    /// `CAP_IPC_LOCK`: transfers then run unregistered) or a refused `SEND_ZC` (sends fall back
    /// to copying `SEND`), plus the `Auto` fallback reason. Empty on the happy path.
    pub fn notices(&self) -> Vec<String> {
        let mut v: Vec<String> = self.fallback_reason.iter().cloned().collect();
        if let Some(r) = &self.ring {
            v.extend(r.notices().map(str::to_owned));
        }
        v
    }

    /// The options this engine was built with.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Bytes of dropped framed arrays' memory held for reuse by this engine's pool: the pool
    /// shared by all engines of the process (see [`Options::recycle_bytes`]), or this
    /// engine's own empty one when `recycle_bytes` is 0. A fresh receive of at most this many
    /// bytes takes recycled memory instead of new pages.
    pub fn recycled_bytes(&self) -> usize {
        self.pool.held_bytes()
    }

    /// Sends every byte of `data` (`size_of_val(data)` bytes) on the connected stream socket
    /// `sock`. Returns once the kernel has accepted them all (for `SEND_ZC`, once it has also
    /// released the pages).
    ///
    /// # Errors
    /// [`Error::Io`] with the errno and bytes sent so far (`EPIPE`/`ECONNRESET` when the peer
    /// went away), [`Error::TimedOut`] with an idle timeout.
    pub fn send_from<T: Pod, S: AsFd>(&mut self, sock: &S, data: &[T]) -> Result<()> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        sock::check_stream(sock, bytes.len() as u64)?;
        let register = register_pays(&self.opts, Direction::Send);
        self.run(Transfer::send(sock.as_fd(), vec![bytes]), register)
            .map(drop)
    }

    /// Fills every byte of `data` from the connected stream socket `sock`.
    ///
    /// With [`Options::prefault`] [`Prefault::Huge`] (the default), `data` of at least 4 MiB
    /// first gets `MADV_HUGEPAGE` on its 2 MiB-aligned part, as every receive buffer does
    /// (see [`Prefault::Huge`]).
    ///
    /// # Errors
    /// [`Error::UnexpectedEof`] when the peer closes early (with bytes received and
    /// expected); [`Error::Io`] with the errno and bytes so far; [`Error::TimedOut`].
    /// On error the first `transferred` bytes of `data` are valid.
    pub fn recv_into<T: Pod, S: AsFd>(&mut self, sock: &S, data: &mut [T]) -> Result<()> {
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(data);
        sock::check_stream(sock, bytes.len() as u64)?;
        let register = register_pays(&self.opts, Direction::Recv);
        self.run(Transfer::recv(sock.as_fd(), vec![bytes]), register)
            .map(drop)
    }

    /// Registers `data` as fixed buffers for sending, for as long as the guard lives.
    ///
    /// Registration pins the pages (and faults in untouched ones: ~500 ms for 400 MB of fresh
    /// memory here, 12.7 ms when already touched). It counts against `RLIMIT_MEMLOCK` unless
    /// the process has `CAP_IPC_LOCK`; when the kernel refuses (ENOMEM, EFAULT for read-only
    /// memory) the guard still works, unregistered, and [`RegisteredSend::fallback_reason`]
    /// says why. On the blocking backend it is a plain borrow.
    pub fn register_send<'a, T: Pod>(&'a mut self, data: &'a [T]) -> RegisteredSend<'a> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let (tuning, waits) = (self.opts.uring.clone(), self.waits());
        let inner = match self.ring.as_mut() {
            Some(ring) => Guard::Uring(ring.register_send(bytes)),
            None => Guard::Blocking(bytes),
        };
        RegisteredSend(Registered {
            inner,
            tuning,
            waits,
        })
    }

    /// Registers `data` as fixed buffers for receiving; see [`Engine::register_send`].
    pub fn register_recv<'a, T: Pod>(&'a mut self, data: &'a mut [T]) -> RegisteredRecv<'a> {
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(data);
        let (tuning, waits) = (self.opts.uring.clone(), self.waits());
        let inner = match self.ring.as_mut() {
            Some(ring) => Guard::Uring(ring.register_recv(bytes)),
            None => Guard::Blocking(bytes),
        };
        RegisteredRecv(Registered {
            inner,
            tuning,
            waits,
        })
    }
}

/// Framed arrays (`docs/PROTOCOL.md`): dtype, shape and order travel with the payload.
/// Every receive call runs the one receive state machine ([`Receiver`]; the plain calls are a
/// receiver without read-ahead) and follows one rule for a rejected message (see the
/// [crate docs](crate#rejected-messages)).
impl Engine {
    /// Sends `data` as one framed array of `shape` (elements) in `order`.
    ///
    /// `data` holds the elements in memory order: for `Order::F` the first index varies
    /// fastest (numpy `a.tobytes(order='F')`).
    ///
    /// # Errors
    /// [`Error::InvalidArray`] (the caller's mistake; nothing is sent) when
    /// `product(shape) != data.len()` or above 32 dimensions; then as [`Engine::send_from`].
    pub fn send_array<T: Element>(
        &mut self,
        sock: &impl AsFd,
        data: &[T],
        shape: &[u64],
        order: Order,
    ) -> Result<()> {
        framed::send_view(
            self,
            sock,
            ArrayView::new(data, shape, order),
            WireFormat::Rgxf,
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
        let view = ArrayView {
            dtype,
            bytes,
            shape,
            order,
        };
        self.send_view(sock, view, WireFormat::Rgxf)
    }

    /// Sends one array in `format`: an RGXF message (header, payload, trailer with the
    /// payload's CRC-32; [`Engine::send_array_bytes`]) or a `.npy` stream (numpy's header from
    /// [`crate::npy::encode_header`], then the payload; **no checksum travels**). Either way
    /// one gathered send, the payload straight from `view.bytes` (no copy).
    ///
    /// A `.npy` stream ends with its data: a peer reading it knows where the array ends from
    /// the header, so several may follow each other on one connection. (numpy ≥ 2 cannot
    /// `numpy.load` from a buffered `sock.makefile('rb')`, which is not seekable; use
    /// `numpy.lib.format.read_array(sock.makefile('rb', buffering=0))`.)
    ///
    /// # Errors
    /// As [`Engine::send_array`]: [`Error::InvalidArray`] when `view.bytes.len()` is not
    /// `product(shape) * itemsize`, above 32 dimensions, or when the shape overflows; then as
    /// [`Engine::send_from`].
    pub fn send_view<S: AsFd>(
        &mut self,
        sock: &S,
        view: ArrayView<'_>,
        format: WireFormat,
    ) -> Result<()> {
        framed::send_view(self, sock, view, format)
    }

    /// Sends many framed arrays back to back, in order, with as few SQEs (uring) or `send`
    /// calls (blocking) as possible: headers, trailers and payloads of up to
    /// [`COALESCE_MAX`](crate::COALESCE_MAX) bytes are packed into one staging buffer; larger
    /// payloads go out from the caller's memory between them. Errors as
    /// [`Engine::send_array`] (every array is checked before anything is sent); on a transfer
    /// error, an unknown number of whole or partial messages has been sent.
    pub fn send_arrays<S: AsFd>(&mut self, sock: &S, arrays: &[ArrayView<'_>]) -> Result<()> {
        framed::send_arrays(self, sock, arrays)
    }

    /// Receives one framed array of `T` in native byte order.
    ///
    /// Every framed receive (this, [`Engine::recv_array_into`], [`Engine::recv_any`], a
    /// [`Receiver`]) takes either stream format, told apart by the first byte: an RGXF
    /// message (`docs/PROTOCOL.md`, payload CRC-32 checked) or numpy's `.npy` stream
    /// ([`crate::npy`]: what `numpy.save` writes, header then payload, **no checksum**; its
    /// header is read in bounded steps, at most [`npy::MAX_HEADER_LEN`](crate::npy::MAX_HEADER_LEN)
    /// bytes, and checked against [`Options::max_payload_bytes`] before anything is
    /// allocated). Consecutive messages on one connection may mix the two formats.
    ///
    /// # Errors
    /// [`FrameError::DtypeMismatch`](crate::FrameError::DtypeMismatch) when the message
    /// carries another dtype or byte order (the message is consumed; the connection stays
    /// usable); other [`FrameError`](crate::FrameError)s for a bad header, checksum or limit
    /// ([`Options::max_payload_bytes`]); [`Error::UnexpectedEof`] when the stream ends inside
    /// a message (`transferred: 0` with `expected: 32` means the peer closed cleanly between
    /// messages); [`Error::Alloc`] when the receive memory cannot be had. A `.npy` stream's
    /// header rejections are [`FrameError::Npy`](crate::FrameError::Npy) (its
    /// [`NpyError`](crate::npy::NpyError) says which), except a payload over the limit, which
    /// is `FrameError::TooLarge` in both formats; while a `.npy` header is read, a transfer
    /// error's `expected` counts the header's bytes only (the payload's length is in the
    /// dict).
    pub fn recv_array<T: Element>(&mut self, sock: &impl AsFd) -> Result<Array<T>> {
        Receiver::new(self, sock, 0).recv_array()
    }

    /// Receives one framed array of `T` into the caller's preallocated `out` (no allocation:
    /// the memoryview recipe's `recv_into`, with the header checked first). Returns the
    /// header (shape and order).
    ///
    /// # Errors
    /// [`FrameError::DtypeMismatch`](crate::FrameError::DtypeMismatch) or
    /// [`FrameError::ShapeMismatch`](crate::FrameError::ShapeMismatch) when the message does
    /// not fit `out` — the message is consumed (read and discarded) and the connection stays
    /// usable; otherwise as [`Engine::recv_array`].
    pub fn recv_array_into<T: Element>(
        &mut self,
        sock: &impl AsFd,
        out: &mut [T],
    ) -> Result<Header> {
        Receiver::new(self, sock, 0).recv_array_into(out)
    }

    /// Receives one framed array of whatever dtype it carries. Errors as
    /// [`Engine::recv_array`], without the dtype check.
    pub fn recv_any<S: AsFd>(&mut self, sock: &S) -> Result<AnyArray> {
        Receiver::new(self, sock, 0).recv_any()
    }

    /// Receives the payload and trailer of a message whose header the caller has already
    /// read from `sock` and decoded ([`decode_prefix`](crate::decode_prefix),
    /// [`Header::decode`]) — e.g. a server that reads headers under a deadline of its own.
    /// The header's `payload_len` is checked against [`Options::max_payload_bytes`] again
    /// before anything is allocated. Errors as [`Engine::recv_any`]; their byte counts include
    /// the header.
    pub fn recv_any_after_header<S: AsFd>(&mut self, sock: &S, header: Header) -> Result<AnyArray> {
        Receiver::new(self, sock, 0).recv_after_header(header)
    }

    /// Receives the payload of a `.npy` stream whose header the caller has already read from
    /// `sock` and parsed ([`npy::header_len_from_prefix`](crate::npy::header_len_from_prefix),
    /// [`npy::parse_header`](crate::npy::parse_header)) — the `.npy` twin of
    /// [`Engine::recv_any_after_header`]: `header.payload_len` is checked against
    /// [`Options::max_payload_bytes`] again before anything is allocated, then exactly that
    /// many bytes are received (a `.npy` stream has no trailer and no checksum). Errors as
    /// [`Engine::recv_any`]; their byte counts include the header.
    pub fn recv_any_after_npy_header<S: AsFd>(
        &mut self,
        sock: &S,
        header: &crate::npy::NpyHeader,
    ) -> Result<AnyArray> {
        Receiver::new(self, sock, 0).recv_after_npy_header(header)
    }

    /// A new array of `dtype`, `shape` (elements per dimension) and `order` in the engine's
    /// receive memory: a mapping of a dropped array from the recycling pool when one fits
    /// ([`Options::recycle_bytes`]), else a fresh page-aligned one — what a framed receive
    /// allocates for itself, handed to the caller to fill, e.g. with [`Engine::recv_into`]
    /// through [`AnyArray::bytes_mut`]. Receiving into recycled pages costs no page fault,
    /// where a new `vec![0; n]` (or `numpy.zeros`) pays one per page during the receive.
    ///
    /// The contents are **unspecified** (bytes of an earlier array of this process, or
    /// zeros), like `numpy.empty`. [`AnyArray::format`] is [`WireFormat::Rgxf`] and
    /// [`AnyArray::checksum_verified`] false: nothing was received.
    ///
    /// # Errors
    /// [`Error::InvalidArray`] when `shape` does not describe an array the frame format
    /// carries (its byte length overflows), [`Error::Alloc`] when the memory cannot be
    /// mapped. The payload is not checked against [`Options::max_payload_bytes`], which
    /// bounds what a peer may make the engine allocate.
    pub fn empty_array(&self, dtype: DType, shape: &[u64], order: Order) -> Result<AnyArray> {
        let header = Header::new(dtype, shape, order).map_err(Error::InvalidArray)?;
        let len = usize::try_from(header.payload_len).map_err(|_| Error::Alloc {
            bytes: header.payload_len,
            source: std::io::Error::from(std::io::ErrorKind::OutOfMemory),
        })?;
        let data = self.alloc(len)?;
        Ok(AnyArray::new(
            Header { flags: 0, ..header },
            data,
            WireFormat::Rgxf,
        ))
    }

    /// A read-ahead receiver of framed arrays on `sock` (see [`Receiver`]).
    pub fn receiver<S: AsFd>(&mut self, sock: S) -> Receiver<'_, S> {
        Receiver::new(self, sock, READ_AHEAD)
    }

    /// Reads and checks one framed header from `sock` and nothing after it: the magic as its
    /// bytes arrive, the 32-byte prefix (a payload over [`Options::max_payload_bytes`] is
    /// refused here), then the rest. The payload and trailer stay in the socket for
    /// [`Engine::recv_payload_into`] or [`Engine::recv_any_after_header`] — e.g. to create
    /// and size an output file from the header before receiving into it.
    ///
    /// # Errors
    /// As [`Engine::recv_any`] for the header's part (a rejected header leaves the stream
    /// at an unknown place: close the connection).
    pub fn recv_header<S: AsFd>(&mut self, sock: &S) -> Result<Header> {
        Receiver::new(self, sock, 0).recv_header()
    }

    /// Receives the payload and trailer of a message whose header was just read from `sock`
    /// ([`Engine::recv_header`], or decoded by the caller) into the caller's `out`, which
    /// must be exactly `header.payload_len` bytes — memory of any kind, e.g. a mapped output
    /// file ([`crate::file::MappedFileMut`]): no allocation, no intermediate buffer. The
    /// trailer's CRC-32 is checked against `out` when the header's flag says one was sent.
    ///
    /// # Errors
    /// [`FrameError::ShapeMismatch`](crate::FrameError::ShapeMismatch) when `out` has another
    /// length (the message is consumed, the connection stays usable, `out` is untouched);
    /// [`FrameError::PayloadChecksum`](crate::FrameError::PayloadChecksum) (the payload was
    /// received whole into `out` and is wrong); [`Error::UnexpectedEof`], [`Error::Io`],
    /// [`Error::TimedOut`] with the whole message's byte counts (`out` holds a partial
    /// payload).
    pub fn recv_payload_into<S: AsFd>(
        &mut self,
        sock: &S,
        header: &Header,
        out: &mut [u8],
    ) -> Result<()> {
        Receiver::new(self, sock, 0).recv_payload_into(header, out)
    }

    /// [`Engine::recv_payload_into`] for numpy's own `.npy` stream: the payload of an array
    /// whose `.npy` header was just read from `sock` (by the caller, e.g. with
    /// [`crate::npy::parse_header`]) into the caller's `out`, exactly `header`'s payload
    /// length in bytes. `.npy` carries no checksum, so nothing is verified beyond the length.
    ///
    /// # Errors
    /// [`FrameError::ShapeMismatch`](crate::FrameError::ShapeMismatch) when `out` has another
    /// length (the payload is consumed, the connection stays usable, `out` is untouched);
    /// [`Error::UnexpectedEof`], [`Error::Io`], [`Error::TimedOut`] with the whole message's
    /// byte counts, header included (`header.header_len` + payload bytes), as
    /// [`Engine::recv_any_after_npy_header`] counts them (`out` holds a partial payload).
    pub fn recv_npy_payload_into<S: AsFd>(
        &mut self,
        sock: &S,
        header: &crate::npy::NpyHeader,
        out: &mut [u8],
    ) -> Result<()> {
        Receiver::new(self, sock, 0).recv_npy_payload_into(header, out)
    }
}

/// Concurrency, closing, authentication, counters.
impl Engine {
    /// Runs many transfers at once — several sockets, both directions — with borrowed arrays,
    /// the way [`std::thread::scope`] works: the closure records transfers on the [`Scope`];
    /// they all run when it returns, and `scope` returns only when every one of them has
    /// completed (see the [`Scope`] docs for why no SQE can outlive a borrow).
    ///
    /// The uring backend keeps every transfer in flight on the engine's one ring (one link
    /// chain per transfer, all transfers together); the blocking backend runs them on scoped
    /// threads. When a transfer fails, the others still running are canceled and settled as
    /// [`Error::Canceled`] with their own byte counts; each transfer's result is reported.
    ///
    /// At most one transfer per socket and direction (two sends on one socket would
    /// interleave their bytes): a second one is an [`Error::InvalidInput`] result for it, and
    /// nothing runs. Every socket must be a stream socket ([`Error::NotStream`]). The uring
    /// backend runs at most 4096 transfers in one scope (a transfer's index travels in its
    /// SQEs' user data, 12 bits): more are an [`Error::InvalidInput`] result for every one,
    /// and nothing runs; the blocking backend has no such limit (one thread per transfer).
    /// The striped calls are one scope: at most 4096 streams on the uring backend.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::os::unix::net::UnixStream;
    /// let (a1, a2) = UnixStream::pair()?;
    /// let (b1, b2) = UnixStream::pair()?;
    /// let x = vec![1.5f64; 100_000];
    /// let mut y = vec![0f64; 100_000];
    /// let z = vec![7u32; 50_000];
    /// let mut w = vec![0u32; 50_000];
    /// let mut engine = ringxfer::Engine::new(ringxfer::Backend::Auto)?;
    /// engine
    ///     .scope(|s| {
    ///         s.send(&a1, &x);
    ///         s.recv(&a2, &mut y);
    ///         s.send(&b2, &z);
    ///         s.recv(&b1, &mut w);
    ///     })
    ///     .into_result()?;
    /// assert_eq!((x, z), (y, w));
    /// # Ok(()) }
    /// ```
    pub fn scope<'env, F>(&mut self, f: F) -> ScopeOutcome
    where
        F: FnOnce(&mut Scope<'env>),
    {
        let mut scope = Scope::default();
        f(&mut scope);
        self.run_scope(scope)
    }

    /// Checks and runs the transfers a [`Scope`] recorded.
    pub(crate) fn run_scope(&mut self, scope: Scope<'_>) -> ScopeOutcome {
        let mut transfers = scope.into_transfers();
        let checks: Vec<Result<()>> = transfers
            .iter()
            .enumerate()
            .map(|(i, t)| {
                sock::check_stream(&t.fd, t.bufs.len())?;
                let fd = std::os::fd::AsRawFd::as_raw_fd(&t.fd);
                let twice = transfers[..i].iter().any(|u| {
                    std::os::fd::AsRawFd::as_raw_fd(&u.fd) == fd && u.bufs.dir() == t.bufs.dir()
                });
                if twice {
                    return Err(Error::InvalidInput(format!(
                        "transfer {i}: a second {} on the same socket in one scope",
                        match t.bufs {
                            Bufs::Send(_) => "send",
                            Bufs::Recv(_) => "receive",
                        }
                    )));
                }
                Ok(())
            })
            .collect();
        if checks.iter().any(Result::is_err) {
            let results = checks
                .into_iter()
                .zip(&transfers)
                .map(|(c, t)| {
                    c.and(Err(Error::Canceled {
                        transferred: 0,
                        expected: t.bufs.len(),
                    }))
                })
                .collect();
            return ScopeOutcome::new(results);
        }
        if transfers.is_empty() {
            return ScopeOutcome::new(Vec::new());
        }
        ScopeOutcome::new(self.run_set(&mut transfers, false))
    }
}

impl Engine {
    /// [`close::finish`] with this engine's [`crate::Options::idle_timeout`] as the bound
    /// ([`close::DEFAULT_CLOSE_TIMEOUT`] without one).
    pub fn finish<S: AsFd>(&self, sock: &S) -> Result<close::Finished> {
        close::finish(sock, self.opts.idle_timeout)
    }

    /// [`close::expect_eof`] with this engine's [`crate::Options::idle_timeout`] as the bound
    /// ([`close::DEFAULT_CLOSE_TIMEOUT`] without one).
    pub fn expect_eof<S: AsFd>(&self, sock: &S) -> Result<()> {
        close::expect_eof(sock, self.opts.idle_timeout)
    }
}

impl Engine {
    /// [`auth::authenticate_client`] on `sock` with this engine's deadline: its
    /// [`Options::idle_timeout`], or [`auth::DEFAULT_TIMEOUT`]
    /// (10 s) without one. Call it once, right after `connect`, before sending or receiving
    /// arrays.
    ///
    /// # Errors
    /// As [`auth::authenticate_client`].
    pub fn authenticate_client<S: AsFd>(&self, sock: &S, key: &AuthKey) -> Result<()> {
        auth::authenticate_client(sock, key, self.handshake_timeout())
    }

    /// [`auth::authenticate_server`] on `sock` with this engine's deadline (see
    /// [`Engine::authenticate_client`](crate::Engine::authenticate_client)). Call it once,
    /// right after `accept`; on an error, close the connection.
    ///
    /// # Errors
    /// As [`auth::authenticate_server`].
    pub fn authenticate_server<S: AsFd>(&self, sock: &S, key: &AuthKey) -> Result<()> {
        auth::authenticate_server(sock, key, self.handshake_timeout())
    }

    fn handshake_timeout(&self) -> Duration {
        self.opts.idle_timeout.unwrap_or(auth::DEFAULT_TIMEOUT)
    }
}

impl Engine {
    /// How many SQEs this engine has submitted and how many CQEs it has reaped since it was
    /// created ([`EngineStats`]); all zero on the blocking backend. Take a snapshot before and after a transfer and subtract
    /// ([`EngineStats::since`]) to get one transfer's figures.
    pub fn stats(&self) -> EngineStats {
        self.ring
            .as_ref()
            .map_or_else(EngineStats::default, |r| r.stats())
    }
}

impl Wire for Engine {
    fn run(&mut self, t: Transfer<'_>) -> Result<u64> {
        Engine::run(self, t, false)
    }

    fn max_payload_bytes(&self) -> u64 {
        self.opts.max_payload_bytes
    }

    fn nodelay(&self) -> bool {
        self.opts.nodelay
    }

    fn prefault_ahead(&self) -> bool {
        self.opts.prefault == Prefault::Ahead
    }

    fn alloc(&self, len: usize) -> Result<AlignedBuf> {
        AlignedBuf::for_receive(len, self.opts.prefault, &self.pool).map_err(|source| {
            Error::Alloc {
                bytes: len as u64,
                source,
            }
        })
    }
}

impl Engine {
    /// Runs a set of transfers to completion (the contract: [`driver`](crate::driver)) — the one place that
    /// picks the backend. With [`Prefault::Huge`] every receive buffer of at least 4 MiB first
    /// gets `MADV_HUGEPAGE` on its 2 MiB-aligned part, whichever call it came from. The uring backend runs the whole set (at most 4096 transfers; more
    /// fail, see [`Engine::scope`]) on the engine's ring; the blocking backend on the calling thread (a set of one) or scoped
    /// threads. `register`: a set of one single-buffer transfer is
    /// registered as fixed buffers for the call (see [`RegisterPolicy`]).
    pub(crate) fn run_set(
        &mut self,
        transfers: &mut [Transfer<'_>],
        register: bool,
    ) -> Vec<Result<u64>> {
        if self.opts.prefault == Prefault::Huge {
            for t in transfers.iter_mut() {
                if let Bufs::Recv(parts) = &mut t.bufs {
                    parts
                        .iter_mut()
                        .for_each(|p| crate::uring::mapping::advise_huge_pages(p));
                }
            }
        }
        match self.ring.as_mut() {
            None => blocking::run_set(transfers, &self.waits()),
            Some(r) => r.run_transfers(
                transfers,
                &self.opts.uring,
                self.opts.idle_timeout,
                register,
            ),
        }
    }

    /// What bounds the blocking backend's waits: the idle timeout and the interrupt check.
    fn waits(&self) -> blocking::Waits {
        blocking::Waits {
            idle: self.opts.idle_timeout,
            interrupt: self.opts.interrupt.clone(),
        }
    }

    /// [`Engine::run_set`] of one transfer.
    pub(crate) fn run(&mut self, t: Transfer<'_>, register: bool) -> Result<u64> {
        let mut set = [t];
        let mut r = self.run_set(&mut set, register);
        r.pop().expect("one result per transfer")
    }
}

/// Whether a one-shot call registers the array (see [`RegisterPolicy::Auto`]).
fn register_pays(opts: &Options, dir: Direction) -> bool {
    match opts.register {
        RegisterPolicy::Always => true,
        RegisterPolicy::Never => false,
        // Only the ops that cannot run unregistered make registration worth its cost.
        RegisterPolicy::Auto => match dir {
            Direction::Send => matches!(opts.uring.send_op, SendOp::WriteFixed | SendOp::SendZc),
            Direction::Recv => matches!(opts.uring.recv_op, RecvOp::ReadFixed),
        },
    }
}

enum Guard<'a, B> {
    Uring(uring::Registration<'a>),
    Blocking(B),
}

impl<B> std::fmt::Debug for Guard<'_, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Guard::Uring(r) => f
                .debug_struct("Uring")
                .field("registered", &r.is_registered())
                .finish(),
            Guard::Blocking(_) => f.write_str("Blocking"),
        }
    }
}

impl<B: AsRef<[u8]>> Guard<'_, B> {
    fn len(&self) -> u64 {
        match self {
            Guard::Uring(r) => r.as_bytes().len() as u64,
            Guard::Blocking(b) => b.as_ref().len() as u64,
        }
    }
}

impl<B> Guard<'_, B> {
    fn is_registered(&self) -> bool {
        matches!(self, Guard::Uring(r) if r.is_registered())
    }

    fn fallback_reason(&self) -> Option<&str> {
        match self {
            Guard::Uring(r) => r.fallback_reason(),
            Guard::Blocking(_) => Some("blocking backend"),
        }
    }
}

/// An array registered as fixed buffers for sending (from [`Engine::register_send`]).
/// Borrows the array and the engine; unregisters when dropped.
///
/// Neither `Send` nor `Sync`: every transfer of a registration comes from the thread that
/// made it, which is what lets a `SINGLE_ISSUER` ring keep its registered buffers (the
/// engine can only change threads once the guard is gone):
///
/// ```compile_fail
/// fn is_send<T: Send>() {}
/// is_send::<ringxfer::RegisteredSend<'static>>();
/// ```
///
/// ```compile_fail
/// fn is_sync<T: Sync>() {}
/// is_sync::<ringxfer::RegisteredRecv<'static>>();
/// ```
#[derive(Debug)]
pub struct RegisteredSend<'a>(Registered<'a, &'a [u8]>);

impl RegisteredSend<'_> {
    /// Sends the whole registered array on `sock`; errors as [`Engine::send_from`].
    pub fn send<S: AsFd>(&mut self, sock: &S) -> Result<()> {
        self.0.send(sock)
    }

    /// True when the array is registered with the kernel.
    pub fn is_registered(&self) -> bool {
        self.0.inner.is_registered()
    }

    /// Why the array is not registered (`None` when it is).
    pub fn fallback_reason(&self) -> Option<&str> {
        self.0.inner.fallback_reason()
    }
}

/// An array registered as fixed buffers for receiving (from [`Engine::register_recv`]).
/// Borrows the array and the engine; unregisters when dropped.
#[derive(Debug)]
pub struct RegisteredRecv<'a>(Registered<'a, &'a mut [u8]>);

impl RegisteredRecv<'_> {
    /// Fills the whole registered array from `sock`; errors as [`Engine::recv_into`].
    pub fn recv<S: AsFd>(&mut self, sock: &S) -> Result<()> {
        let r = &mut self.0;
        sock::check_stream(sock, r.inner.len())?;
        match &mut r.inner {
            Guard::Uring(g) => g.transfer(sock.as_fd(), Direction::Recv, &r.tuning, r.waits.idle),
            Guard::Blocking(b) => blocking::recv_all(&SockRef::from(sock), b, &r.waits),
        }
    }

    /// Sends the whole registered array on `sock` (e.g. to echo it back).
    pub fn send<S: AsFd>(&mut self, sock: &S) -> Result<()> {
        self.0.send(sock)
    }

    /// The array's bytes (as last received).
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0.inner {
            Guard::Uring(r) => r.as_bytes(),
            Guard::Blocking(b) => b,
        }
    }

    /// True when the array is registered with the kernel.
    pub fn is_registered(&self) -> bool {
        self.0.inner.is_registered()
    }

    /// Why the array is not registered (`None` when it is).
    pub fn fallback_reason(&self) -> Option<&str> {
        self.0.inner.fallback_reason()
    }
}

/// What both registration guards hold: the registration (or, on the blocking backend, the
/// borrowed array) and the engine's tuning, idle timeout and interrupt check at
/// registration time.
#[derive(Debug)]
struct Registered<'a, B> {
    inner: Guard<'a, B>,
    tuning: UringTuning,
    waits: blocking::Waits,
}

impl<B: AsRef<[u8]>> Registered<'_, B> {
    /// Sends the whole array on `sock`.
    fn send<S: AsFd>(&mut self, sock: &S) -> Result<()> {
        sock::check_stream(sock, self.inner.len())?;
        match &mut self.inner {
            Guard::Uring(r) => {
                r.transfer(sock.as_fd(), Direction::Send, &self.tuning, self.waits.idle)
            }
            Guard::Blocking(b) => blocking::send_all(&SockRef::from(sock), b.as_ref(), &self.waits),
        }
    }
}

/// Sends every byte of `data` on `sock` with a fresh [`Engine`] (`Backend::Auto`).
/// For many transfers keep an [`Engine`]; errors as [`Engine::send_from`].
pub fn send_from<T: Pod, S: AsFd>(sock: &S, data: &[T]) -> Result<()> {
    Engine::new(Backend::Auto)?.send_from(sock, data)
}

/// Fills every byte of `data` from `sock` with a fresh [`Engine`] (`Backend::Auto`).
/// Errors as [`Engine::recv_into`].
pub fn recv_into<T: Pod, S: AsFd>(sock: &S, data: &mut [T]) -> Result<()> {
    Engine::new(Backend::Auto)?.recv_into(sock, data)
}
