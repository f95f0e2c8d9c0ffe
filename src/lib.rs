//! # ringxfer
//!
//! Moves a large contiguous array (`&[T]` with `T: bytemuck::Pod`: `f64`, `f32`, `i64`, `u8`,
//! …) through a connected stream socket (TCP or Unix) without a user-space copy — the classic
//! memoryview recipe (`send` a byte view in a loop, `recv_into` a preallocated array) as a Linux
//! io_uring engine, with a blocking `std` loop as the fallback and the baseline.
//!
//! * [`send_from`] returns when every byte of the slice has been handed to the kernel.
//! * [`recv_into`] returns when every byte of the slice has been filled.
//! * An [`Engine`] keeps one io_uring instance for many transfers; [`Engine::register_send`] /
//!   [`Engine::register_recv`] register an array as **fixed buffers** once (an RAII guard that
//!   borrows it) and reuse the registration for many transfers.
//! * [`close::finish`] ([`Engine::finish`]) ends a sender's connection gracefully: shut down
//!   the write side, drain what the peer sends until it closes, so a close never turns into a
//!   reset that loses the tail of the array (case C16). Call it before dropping the socket.
//! * [`recv_into`] reads exactly the slice's bytes and leaves whatever follows in the socket;
//!   [`close::expect_eof`] ([`Engine::expect_eof`]) checks that nothing follows (the peer
//!   closes) and reports [`Error::ExtraBytes`] with the count otherwise.
//!
//! Sizes are in **bytes** unless a name says elements. The wire carries exactly the array's
//! bytes in memory order (native endianness): what a numpy peer doing
//! `sock.send(memoryview(a).cast('B'))` sends.
//!
//! # Example
//!
//! ```
//! use std::net::{TcpListener, TcpStream};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let addr = listener.local_addr()?;
//! let sender = std::thread::spawn(move || -> ringxfer::Result<()> {
//!     let sock = TcpStream::connect(addr).expect("connect");
//!     let a: Vec<f64> = (0..1_000_000).map(|i| i as f64).collect(); // 8 MB
//!     ringxfer::send_from(&sock, &a)
//! });
//! let (sock, _) = listener.accept()?;
//! let mut b = vec![0f64; 1_000_000];
//! ringxfer::recv_into(&sock, &mut b)?;
//! sender.join().unwrap()?;
//! assert!(b.iter().enumerate().all(|(i, &x)| x == i as f64));
//! # Ok(()) }
//! ```
//!
//! # Backends
//!
//! [`Backend::Auto`] (the default) probes io_uring once per process ([`probe`]) and falls back to
//! [`Backend::Blocking`] when a ring cannot be set up (EPERM under a seccomp profile or with
//! `kernel.io_uring_disabled`, ENOSYS, a kernel older than 5.6); [`Engine::fallback_reason`]
//! says why. The environment variable `RINGXFER_BACKEND=blocking|uring|auto` overrides `Auto`.
//!
//! # The public surface, in one map
//!
//! | To …                                            | use                                                                  |
//! |-------------------------------------------------|----------------------------------------------------------------------|
//! | move one raw array, once                        | [`send_from`], [`recv_into`]                                         |
//! | move many, reusing one ring                     | [`Engine`] ([`Engine::new`], [`Engine::with_options`], [`Options`]), [`Engine::send_from`], [`Engine::recv_into`] |
//! | register an array as fixed buffers, reuse it    | [`Engine::register_send`] / [`Engine::register_recv`] → [`RegisteredSend`] / [`RegisteredRecv`] |
//! | run many transfers at once, borrowed            | [`Engine::scope`] → [`Scope`], [`ScopeOutcome`]                      |
//! | stripe one array over several streams           | [`Engine::send_striped`] / [`Engine::recv_striped`] (raw), [`Engine::send_array_striped`] / [`Engine::recv_any_striped`] (framed), geometry [`stripes`] |
//! | receive a striped framed array into your own memory | [`Engine::recv_striped_header`] → [`StripedHeader`], then [`Engine::recv_striped_payload_into`]; typed: [`Engine::recv_array_striped_into`] |
//! | send framed arrays (dtype/shape/order travel)   | [`Engine::send_array`], [`Engine::send_array_bytes`], [`Engine::send_arrays`] ([`ArrayView`]) |
//! | receive framed arrays                           | [`Engine::recv_array`], [`Engine::recv_array_into`], [`Engine::recv_any`] ([`Array`], [`AnyArray`], [`Header`]); many small ones: [`Engine::receiver`] → [`Receiver`] |
//! | read headers yourself (a server with deadlines) | [`decode_prefix`], [`Header::decode`], [`Engine::recv_any_after_header`] |
//! | receive a framed array into your own memory     | [`Engine::recv_header`], then [`Engine::recv_payload_into`] (a mapped file: [`file::MappedFileMut`]) |
//! | send from / receive into a file without a copy  | [`file`](mod@file) ([`file::MappedFile`], [`file::MappedFileMut`]) |
//! | dtypes                                          | [`dtype`] ([`dtype::DType`], the arange check pattern), [`Element`], [`Order`] |
//! | close without losing the tail, check for extra  | [`close`] ([`close::finish`], [`close::expect_eof`]), or [`Engine::finish`] / [`Engine::expect_eof`] with the engine's timeout |
//! | authenticate a connection                       | [`auth`] ([`auth::AuthKey`]), [`Engine::authenticate_client`] / [`Engine::authenticate_server`] |
//! | tune and observe the uring backend              | [`UringTuning`] ([`SendOp`], [`RecvOp`]), [`probe`] ([`Probe`]), [`RingFlags`], [`EngineStats`] |
//! | handle errors                                   | [`Error`] (each variant means one thing), [`FrameError`], [`Result`]; `?` into `std::io::Result` works ([`Error`] converts) |
//!
//! Everything else is private. The `testing` cargo feature exposes internals (`planner`,
//! `frame`, `buffer`, `stripe`, `uring`) as `#[doc(hidden)]` modules for this crate's own tests
//! and benchmarks; they are not part of the API and change without notice.
//!
//! # Rejected messages
//!
//! One rule for every framed receive call ([`Engine::recv_any`], [`Engine::recv_array`],
//! [`Engine::recv_array_into`], [`Engine::recv_any_after_header`],
//! [`Engine::recv_any_after_npy_header`], and the same calls on a [`Receiver`]), whichever
//! format the message came in — RGXF or numpy's `.npy` stream, which has no trailer, so
//! "payload and trailer" below is just the payload for it:
//!
//! * A well-formed message rejected for **the caller's expectation** — another dtype or byte
//!   order than `T` ([`FrameError::DtypeMismatch`]), another length than the caller's `out`
//!   ([`FrameError::ShapeMismatch`]) — is **consumed**: its payload and trailer are read and
//!   discarded (no allocation; bounded by the header's declared length), so the next receive
//!   starts at the next header and the connection stays usable. A payload whose checksum
//!   fails ([`FrameError::PayloadChecksum`]) was consumed whole too.
//! * A message whose payload is **over [`Options::max_payload_bytes`]**
//!   ([`FrameError::TooLarge`]) is refused as soon as its 32-byte prefix is read (a `.npy`
//!   one as soon as its header, at most 64 KiB, is parsed), with nothing further read or
//!   allocated: the limit exists so that a peer cannot make the receiver spend
//!   memory *or time* on an announced 300 GB, so its payload is not read either. The stream is
//!   then inside that message: close the connection.
//! * A **malformed** message (bad magic, version, header length or checksum, unknown dtype,
//!   flags, trailer; a `.npy` header rejected as [`FrameError::Npy`]) leaves the stream at an
//!   unknown place: close the connection.
//! * Striped arrays follow the same rule: [`Engine::recv_array_striped_into`] consumes an
//!   array that does not fit (every stripe and trailer), [`Engine::recv_any_striped`] and
//!   [`Engine::recv_striped_payload_into`] consume one whose stripe checksum fails. An `out`
//!   of the wrong length given to [`Engine::recv_striped_payload_into`] is a mistake in the
//!   call, not a rejected message ([`Error::InvalidInput`]): nothing is read, and a call with
//!   the right `out` receives the array.
//! * A transfer error inside a message ([`Error::UnexpectedEof`], [`Error::Io`],
//!   [`Error::TimedOut`]) counts the bytes of the whole message (inside a `.npy` header: of
//!   the header step being read, as the payload's length is not yet known); the stream is
//!   unusable.
//!
//! # Async callers
//!
//! Every call blocks the calling thread until its bytes have moved. Called directly inside an
//! async task it blocks the runtime's worker: on a tokio `current_thread` runtime with the
//! peer as another task of the same runtime, `recv_into` waits for bytes that the starved
//! sender task never sends — it hangs, silently, forever. Run ringxfer on a blocking thread:
//! turn the tokio socket into a std one with `into_std()` and move it into
//! `tokio::task::spawn_blocking`. `into_std()` leaves the socket in non-blocking mode, and
//! ringxfer works with it as it is — at the first `EAGAIN` the blocking backend switches the
//! socket to blocking mode for the rest of the call (and restores it), the uring backend arms
//! a `POLL_ADD` — so `set_nonblocking(false)` is optional. `examples/async_tokio.rs` is a
//! complete program (run by `tests/async_tokio.rs` on both backends, which also shows the
//! direct call starving its sender):
//!
//! ```text
//! let (sock, _) = listener.accept().await?;                 // tokio::net::TcpListener
//! let sock = sock.into_std()?;                              // std::net::TcpStream
//! let data = tokio::task::spawn_blocking(move || {
//!     let mut data = vec![0f64; N];
//!     ringxfer::recv_into(&sock, &mut data).map(|()| data)
//! })
//! .await??;
//! ```

#![deny(missing_docs)]

pub mod auth;
mod blocking;
pub mod close;
mod driver;
pub mod dtype;
mod engine;
/// Files mapped into memory, to send an array from a file and receive one into a file with
/// no copy through a user-space buffer: [`MappedFile`](file::MappedFile) (read-only, to send
/// a file) and [`MappedFileMut`](file::MappedFileMut) (a new file, created, sized and mapped
/// read-write, to receive into). The code is in `src/uring/mapping.rs`: mapping a file is
/// `unsafe` in `memmap2`, and `src/uring/` is the crate's one place for `unsafe`.
///
/// # The invariant a mapping needs
///
/// A mapping shows the file's pages as they are *now*, not a snapshot: while a file is mapped,
/// **no other process (and no other handle in this one) may truncate or modify it**.
/// * Truncated below the mapped length, every access to a page past the new end raises
///   `SIGBUS`, which kills the process (a send or a CRC over the mapping dies in the middle;
///   a kernel `send` from such pages fails with `EFAULT` instead).
/// * Modified, the bytes change under a `&[u8]` that Rust assumes immutable: a send carries a
///   mix of old and new bytes, and the CRC-32 of a framed send may not match them.
///
/// Neither can be prevented from here (Linux has no mandatory lock an ordinary file honours).
/// [`MappedFile::open`](file::MappedFile::open) therefore states it as the caller's promise: map only a file nobody
/// changes while it is sent. [`MappedFileMut::create_new`](file::MappedFileMut::create_new) makes the file itself (`O_EXCL`, so
/// never a file someone else already holds, mode 0600 before the umask, so only the owner can
/// open it): the program that creates it owns it for as long as it is mapped.
pub mod file {
    #[doc(inline)]
    pub use crate::uring::mapping::{MappedFile, MappedFileMut};
}
mod error;
mod framed;
pub mod npy;
mod progress;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod progress_testing;
mod scope;
mod sock;
mod stats;
// Internal modules: private, or `#[doc(hidden)] pub` with the `testing` feature (for this
// crate's tests and benchmarks only; not part of the API). Written out, not by a macro, so
// that rustfmt finds the files.
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod buffer;
#[cfg(not(feature = "testing"))]
#[allow(dead_code)]
mod buffer;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod frame;
#[cfg(not(feature = "testing"))]
#[allow(dead_code)]
mod frame;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod planner;
#[cfg(not(feature = "testing"))]
#[allow(dead_code)]
mod planner;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod stripe;
#[cfg(not(feature = "testing"))]
#[allow(dead_code)]
mod stripe;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod uring;
#[cfg(not(feature = "testing"))]
#[allow(dead_code)]
mod uring;

pub use buffer::Prefault;
pub use driver::{INTERRUPT_POLL, Interrupt};
pub use engine::{
    ActiveBackend, Backend, Engine, Options, RegisterPolicy, RegisteredRecv, RegisteredSend,
    recv_into, send_from,
};
pub use error::{Error, Result};
pub use frame::{
    DEFAULT_MAX_PAYLOAD_BYTES, FrameError, Header, MAGIC, MAX_NDIM, Order, PREFIX_LEN, Prefix,
    TRAILER_LEN, WireFormat, decode_prefix,
};
pub use framed::{AnyArray, Array, ArrayView, COALESCE_MAX, Element, READ_AHEAD, Receiver};
pub use planner::MAX_IO_BYTES;
pub use scope::{Scope, ScopeOutcome};
pub use stats::EngineStats;
pub use stripe::{STRIPE_MAGIC, STRIPE_PREFIX_LEN, StripePrefix, StripedHeader, stripes};
pub use uring::{
    MAX_CHAIN_SQES, Probe, RING_FLAGS_ENV, RecvOp, RingFlags, RingSetup, SendOp, UringTuning, probe,
};
