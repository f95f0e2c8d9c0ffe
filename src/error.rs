//! The one error type of ringxfer.
//!
//! Every variant that can happen part-way through a transfer carries the number of **bytes**
//! (not elements) confirmed so far and the number expected, so a caller can log, resume or
//! report exactly how far the stream got.

use std::io;
use std::path::PathBuf;

/// Result alias used throughout ringxfer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors returned by ringxfer.
///
/// Byte counts are always bytes, never elements: a `f64` array of 10 elements has
/// `expected == 80`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer closed its side (a `recv` returned 0) before the whole array arrived.
    ///
    /// `transferred` bytes at the start of the caller's slice are valid; the rest is untouched
    /// or partially written and must not be trusted.
    #[error("peer closed the connection after {transferred} of {expected} bytes")]
    UnexpectedEof {
        /// Bytes received and confirmed in order before the EOF.
        transferred: u64,
        /// Bytes the caller asked for (the slice length in bytes).
        expected: u64,
    },

    /// An operating-system error from `send`/`recv` or from an io_uring completion
    /// (`CQE.res == -errno`), e.g. `ECONNRESET` or `EPIPE` when the peer resets.
    #[error("{op} failed after {transferred} of {expected} bytes: {source}")]
    Io {
        /// Which operation failed: `"send"`, `"recv"`, `"io_uring_enter"`, …
        op: &'static str,
        /// Bytes confirmed before the failure.
        transferred: u64,
        /// Bytes the caller asked for.
        expected: u64,
        /// The OS error; `source.raw_os_error()` is the errno.
        #[source]
        source: io::Error,
    },

    /// No byte moved for longer than the configured idle timeout
    /// ([`crate::Options::idle_timeout`]); the timer restarts on every bit of progress.
    #[error("no progress for {timeout_ms} ms after {transferred} of {expected} bytes")]
    TimedOut {
        /// Bytes confirmed before the stall.
        transferred: u64,
        /// Bytes the caller asked for.
        expected: u64,
        /// The idle timeout that elapsed, in milliseconds.
        timeout_ms: u64,
    },

    /// The idle timeout fired during a zero-copy send (`SEND_ZC`) while the kernel still held
    /// pages of the caller's array: data queued on the socket referenced them and the peer had
    /// stopped reading, so the notification CQEs that release them could not come. ringxfer
    /// never returns while the kernel can still read the caller's memory, so it aborted the
    /// connection (`connect(AF_UNSPEC)`, which sends RST and frees the socket's queued data;
    /// see connect(2)) and waited for the notifications. The socket is unusable afterwards.
    #[error(
        "no progress for {timeout_ms} ms after {transferred} of {expected} bytes; the connection \
         was aborted (RST) to make the kernel release the array's pages held by SEND_ZC"
    )]
    TimedOutAborted {
        /// Bytes confirmed before the stall.
        transferred: u64,
        /// Bytes the caller asked for.
        expected: u64,
        /// The idle timeout that elapsed, in milliseconds.
        timeout_ms: u64,
    },

    /// Another transfer of the same set ([`crate::Engine::scope`], a striped array) failed, so
    /// this one was canceled before it finished; the first `transferred` bytes moved. Its
    /// stream is out of step afterwards (some of its bytes may have moved, others not).
    #[error("canceled after {transferred} of {expected} bytes: another transfer of the set failed")]
    Canceled {
        /// Bytes confirmed before the cancellation.
        transferred: u64,
        /// Bytes the transfer was to move.
        expected: u64,
    },

    /// The caller's interrupt check ([`crate::Options::interrupt`]) fired, so the transfer
    /// was stopped: its SQEs were canceled and drained before the call returned (the kernel
    /// holds none of the caller's memory), and the first `transferred` bytes moved. The
    /// stream is out of step afterwards (part of the array moved): close the connection.
    #[error("interrupted after {transferred} of {expected} bytes")]
    Interrupted {
        /// Bytes confirmed before the interrupt.
        transferred: u64,
        /// Bytes the transfer was to move.
        expected: u64,
    },

    /// One stream of a striped transfer ([`crate::Engine::send_striped`],
    /// [`crate::Engine::recv_striped`]) failed: which stream (its index in the caller's list),
    /// its peer address, and that stream's own error with the bytes of its stripe moved so
    /// far. The other streams were canceled and drained.
    #[error("stream {stream} ({peer}): {source}")]
    Stream {
        /// Index of the stream in the caller's list of sockets.
        stream: usize,
        /// The stream's peer address (`"unix"` for a Unix socket, `"?"` when unknown).
        peer: String,
        /// The stream's own error (counts are of its stripe).
        #[source]
        source: Box<Error>,
    },

    /// This socket's receive side was shut down locally (`shutdown(SHUT_RD)` on this
    /// socket, e.g. by another thread) before the whole array arrived; the peer had not
    /// closed. Detected for TCP (the connection was still `ESTABLISHED` at the end of the
    /// stream); other families report [`Error::UnexpectedEof`].
    #[error(
        "receive side shut down locally (shutdown(SHUT_RD)) after {transferred} of {expected} \
         bytes; the peer did not close"
    )]
    ReadShutdown {
        /// Bytes received before the local shutdown.
        transferred: u64,
        /// Bytes the caller asked for.
        expected: u64,
    },

    /// The socket is not a stream socket. ringxfer moves one byte stream and needs
    /// `SOCK_STREAM` (TCP, MPTCP, Unix stream): a datagram or `SOCK_SEQPACKET` socket would
    /// silently drop what does not fit one receive call. Checked once per call with
    /// `getsockopt(SO_TYPE)`; `so_type` is what it said, `None` when the descriptor is not a
    /// socket at all (`ENOTSOCK`).
    #[error("not a stream socket ({}): ringxfer needs SOCK_STREAM", so_type_name(*so_type))]
    NotStream {
        /// The socket's `SO_TYPE` (`libc::SOCK_DGRAM`, …), or `None` for a non-socket.
        so_type: Option<i32>,
    },

    /// The `uring` backend was requested explicitly but cannot be used here. The string is the
    /// probe's reason, e.g. `io_uring_setup failed: Operation not permitted (os error 1)
    /// (seccomp filter or kernel.io_uring_disabled)`.
    #[error("io_uring backend unavailable: {0}")]
    UringUnavailable(String),

    /// The kernel completed operations of one link chain out of order with the stream (a later
    /// SQE moved bytes after an earlier one came back short without breaking the link).
    /// ringxfer only issues ops whose short results break the link, so this means a kernel
    /// contract changed; the data already moved cannot be trusted.
    #[error(
        "link chain broken: SQE at byte {offset} moved data after a short completion at byte {short_at}"
    )]
    ChainOrder {
        /// Byte offset of the SQE that completed after the short one.
        offset: u64,
        /// Byte offset where the short completion stopped.
        short_at: u64,
    },

    /// A framed message from the peer was rejected (bad header, checksum, limit, or not the
    /// dtype/length the caller expected); see `docs/PROTOCOL.md`. What it leaves of the
    /// stream is the crate's one rule ([crate docs](crate#rejected-messages)): a message
    /// rejected for the caller's expectation (`DtypeMismatch`, `ShapeMismatch`) or its
    /// checksum (`PayloadChecksum`) was consumed and the connection stays usable; after any
    /// other variant close the connection.
    #[error("framed message rejected: {0}")]
    Frame(#[from] crate::frame::FrameError),

    /// The caller's own array description is invalid — for a framed send, or for
    /// [`Engine::empty_array`](crate::Engine::empty_array): its length is not
    /// `product(shape) * itemsize` (`ShapeMismatch`), more than 32 dimensions
    /// (`TooManyDims`), or a shape whose byte count overflows (`ShapeOverflow`). Nothing was
    /// sent; the connection is untouched. (A peer's bad frame is [`Error::Frame`].)
    #[error("invalid array: {0}")]
    InvalidArray(#[source] crate::frame::FrameError),

    /// An invalid argument: an unknown backend, dtype or order name, an impossible option
    /// value, an empty list of streams, ….
    #[error("invalid argument: {0}")]
    InvalidInput(String),

    /// The shared-key authentication handshake failed, or a key could not be loaded
    /// ([`crate::auth`]; the connection must be closed).
    #[error("authentication failed: {0}")]
    Auth(#[from] AuthError),

    /// Page-aligned memory for a received array could not be had (`mmap` refused it:
    /// `ENOMEM`, an address-space or overcommit limit).
    #[error("cannot allocate {bytes} bytes for the receive array: {source}")]
    Alloc {
        /// Bytes asked for.
        bytes: u64,
        /// The OS error of `mmap`.
        #[source]
        source: io::Error,
    },

    /// A thread of a concurrent set (the blocking backend runs each transfer of
    /// [`crate::Engine::scope`] or of a striped array on its own thread) could not be started
    /// (`EAGAIN`: a thread or memory limit). This transfer never started; the set's other
    /// transfers were canceled ([`Error::Canceled`]).
    #[error("cannot start a transfer thread: {0}")]
    Spawn(#[source] io::Error),

    /// Setting up the ring, registering buffers, or drawing the random id of a striped array
    /// failed with an OS error. (Receive memory is [`Error::Alloc`], a thread
    /// [`Error::Spawn`].)
    #[error("{what}: {source}")]
    Setup {
        /// What was being set up (`"io_uring_setup"`, `"io_uring_register(BUFFERS)"`,
        /// `"getrandom (stripe array id)"`).
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// While waiting for the peer to close ([`crate::close::finish`],
    /// [`crate::close::expect_eof`]), the peer reset the connection (`ECONNRESET`) instead.
    ///
    /// After [`crate::close::finish`] this means delivery is **not confirmed**: a TCP peer
    /// that closes with bytes of ours still unread sends a reset, and its kernel discards
    /// them, so bytes the send calls reported as sent may be lost.
    #[error(
        "the peer reset the connection instead of closing it ({read} bytes read from it first)"
    )]
    PeerReset {
        /// Bytes the peer sent that were read (and discarded or handed on) before the reset.
        read: u64,
    },

    /// The peer did not close its side within the bound given to [`crate::close::finish`] or
    /// [`crate::close::expect_eof`] (default [`crate::close::DEFAULT_CLOSE_TIMEOUT`]).
    ///
    /// After [`crate::close::finish`] this means delivery is **not confirmed**: the peer has
    /// not said it is done, so whether it reads the rest is unknown.
    #[error(
        "timed out after {} s waiting for the peer to close the connection ({read} bytes read from it meanwhile)",
        *timeout_ms as f64 / 1000.0
    )]
    PeerNotClosed {
        /// Bytes the peer sent that were read (and discarded or handed on) while waiting.
        read: u64,
        /// The bound that elapsed, in milliseconds.
        timeout_ms: u64,
    },

    /// Bytes arrived after the data the caller expected ([`crate::close::expect_eof`]): the
    /// peer sent more than the receiver asked for (e.g. a longer array, or a second one).
    #[error(
        "{extra} extra bytes after the expected data{}",
        if *peer_closed { "" } else { " (counted until the wait for the peer's close ran out)" }
    )]
    ExtraBytes {
        /// Extra bytes read, all of them up to the peer's close (or up to the end of the
        /// bound when `peer_closed` is false, so then at least this many).
        extra: u64,
        /// True when the peer closed after them, so `extra` is the exact count.
        peer_closed: bool,
    },
}

impl Error {
    /// Bytes confirmed before the error, where the error happened during a transfer.
    pub fn transferred(&self) -> Option<u64> {
        match self {
            Error::UnexpectedEof { transferred, .. }
            | Error::Io { transferred, .. }
            | Error::TimedOut { transferred, .. }
            | Error::TimedOutAborted { transferred, .. }
            | Error::ReadShutdown { transferred, .. }
            | Error::Canceled { transferred, .. }
            | Error::Interrupted { transferred, .. } => Some(*transferred),
            Error::Stream { source, .. } => source.transferred(),
            _ => None,
        }
    }

    /// A stable snake-case name for the error (`"unexpected_eof"`, `"timed_out"`,
    /// `"connection_reset"`, `"io"`, the [`FrameError::kind`](crate::FrameError::kind) of a
    /// framed-message rejection, or the [`AuthError::kind`](crate::auth::AuthError::kind) of a
    /// failed handshake, `"auth_…"`), for logs and JSON reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::UnexpectedEof { .. } => "unexpected_eof",
            Error::TimedOut { .. } => "timed_out",
            Error::TimedOutAborted { .. } => "timed_out_aborted",
            Error::ReadShutdown { .. } => "read_shutdown",
            Error::Canceled { .. } => "canceled",
            Error::Interrupted { .. } => "interrupted",
            Error::Stream { source, .. } => source.kind(),
            Error::NotStream { .. } => "not_stream",
            Error::Io { source, .. } if source.kind() == io::ErrorKind::ConnectionReset => {
                "connection_reset"
            }
            Error::Io { .. } => "io",
            Error::Setup { .. } => "setup",
            Error::Alloc { .. } => "alloc",
            Error::Spawn(_) => "spawn",
            Error::InvalidArray(_) => "invalid_array",
            Error::UringUnavailable(_) => "uring_unavailable",
            Error::InvalidInput(_) => "invalid_input",
            Error::ChainOrder { .. } => "chain_order",
            Error::Frame(f) => f.kind(),
            Error::PeerReset { .. } => "peer_reset",
            Error::PeerNotClosed { .. } => "peer_not_closed",
            Error::ExtraBytes { .. } => "extra_bytes",
            Error::Auth(a) => a.kind(),
        }
    }

    /// This error, from a transfer that was one part of a larger one: the part started after
    /// `before` bytes of the whole, which is `whole` bytes long. Adds `before` to
    /// `transferred` and sets `expected` to `whole` ([`Error::UnexpectedEof`], [`Error::Io`],
    /// [`Error::TimedOut`], [`Error::TimedOutAborted`], [`Error::ReadShutdown`],
    /// [`Error::Interrupted`]); other errors are returned unchanged. Used where one array moves
    /// in several calls (a framed message's header, payload and trailer; `ringxfer -i`'s
    /// 64 MiB chunks), so counts are always of the whole transfer.
    pub fn rebased(self, before: u64, whole: u64) -> Error {
        match self {
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
            Error::TimedOutAborted {
                transferred,
                timeout_ms,
                ..
            } => Error::TimedOutAborted {
                transferred: before + transferred,
                expected: whole,
                timeout_ms,
            },
            Error::ReadShutdown { transferred, .. } => Error::ReadShutdown {
                transferred: before + transferred,
                expected: whole,
            },
            Error::Interrupted { transferred, .. } => Error::Interrupted {
                transferred: before + transferred,
                expected: whole,
            },
            other => other,
        }
    }

    /// The errno, where the error came from the OS.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. }
            | Error::Setup { source, .. }
            | Error::Alloc { source, .. }
            | Error::Spawn(source) => source.raw_os_error(),
            Error::Stream { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// An unknown dtype or order name is the caller's invalid argument.
impl From<crate::dtype::UnknownName> for Error {
    fn from(e: crate::dtype::UnknownName) -> Error {
        Error::InvalidInput(e.0)
    }
}

impl Error {
    /// The [`io::ErrorKind`] this error converts to (see `From<Error> for io::Error`).
    pub fn io_kind(&self) -> io::ErrorKind {
        use io::ErrorKind as K;
        match self {
            Error::UnexpectedEof { .. } | Error::ReadShutdown { .. } => K::UnexpectedEof,
            Error::TimedOut { .. } | Error::TimedOutAborted { .. } => K::TimedOut,
            Error::PeerNotClosed { .. } => K::TimedOut,
            Error::PeerReset { .. } => K::ConnectionReset,
            Error::Io { source, .. }
            | Error::Setup { source, .. }
            | Error::Alloc { source, .. }
            | Error::Spawn(source) => source.kind(),
            Error::Stream { source, .. } => source.io_kind(),
            Error::Frame(_) | Error::ExtraBytes { .. } | Error::ChainOrder { .. } => K::InvalidData,
            Error::InvalidArray(_) | Error::InvalidInput(_) | Error::NotStream { .. } => {
                K::InvalidInput
            }
            Error::UringUnavailable(_) => K::Unsupported,
            Error::Auth(_) => K::PermissionDenied,
            // Not `Interrupted`: std's loops retry that kind, and these transfers must not be.
            Error::Canceled { .. } | Error::Interrupted { .. } => K::Other,
        }
    }
}

/// For `?` in a function returning `std::io::Result`: the [`io::ErrorKind`] of
/// [`Error::io_kind`] — `UnexpectedEof`, `TimedOut`, `ConnectionReset` (a peer reset, or an
/// OS `ECONNRESET`), `InvalidData` for a peer's bad frame, `InvalidInput` for the caller's
/// own mistakes, the OS error's own kind for an OS error — with the ringxfer error (byte
/// counts and all) as the payload: `io_err.get_ref()` downcasts to [`Error`], whose
/// [`Error::raw_os_error`] (and `source()`) still give the OS errno.
impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        io::Error::new(e.io_kind(), e)
    }
}

/// Why a handshake (or loading a key) failed. In [`Error::Auth`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The key file could not be read (missing, a directory, no permission, an I/O error).
    #[error("cannot read the key file {}: {source}", path.display())]
    KeyUnreadable {
        /// The key file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The key (file) holds no bytes, or only whitespace.
    #[error("{} is empty", key_name(path))]
    KeyEmpty {
        /// The key file, when the key came from one.
        path: Option<PathBuf>,
    },
    /// The key is shorter than [`MIN_KEY_BYTES`](crate::auth::MIN_KEY_BYTES).
    #[error(
        "{} holds {len} bytes, fewer than {min} (make one with `head -c 32 /dev/urandom > FILE`)",
        key_name(path)
    )]
    KeyTooShort {
        /// The key file, when the key came from one.
        path: Option<PathBuf>,
        /// Key bytes found (after trimming trailing whitespace).
        len: usize,
        /// [`MIN_KEY_BYTES`](crate::auth::MIN_KEY_BYTES).
        min: usize,
    },
    /// The key is longer than [`MAX_KEY_BYTES`](crate::auth::MAX_KEY_BYTES) (not a key file?).
    #[error("{} is over {max} bytes: not a key", key_name(path))]
    KeyTooLong {
        /// The key file, when the key came from one.
        path: Option<PathBuf>,
        /// [`MAX_KEY_BYTES`](crate::auth::MAX_KEY_BYTES).
        max: usize,
    },
    /// Server side: the peer sent a framed array (`RGXF`) without the handshake, e.g. a
    /// client run without `--auth-key`.
    #[error(
        "the client sent a framed array without authenticating (is it run without --auth-key?)"
    )]
    Unauthenticated,
    /// The peer's first bytes are not a handshake message (another protocol, garbage, or a
    /// server that does not authenticate).
    #[error("the peer does not speak the authentication handshake: first bytes {got:02x?}")]
    NotRingxfer {
        /// The 4 bytes received where `RGXA` was expected.
        got: [u8; 4],
    },
    /// Client side: the server turned the connection away before the handshake, with this
    /// reason (e.g. every connection slot taken).
    #[error("the server refused the connection: {reason}")]
    Refused {
        /// The server's one-line reason.
        reason: String,
    },
    /// The peer speaks another handshake version.
    #[error(
        "the peer speaks authentication handshake version {peer_version}, this build speaks {}",
        AUTH_VERSION
    )]
    UnsupportedVersion {
        /// The version the peer announced.
        peer_version: u16,
    },
    /// A handshake message broke a rule of `docs/PROTOCOL.md` (a non-zero flags field, an
    /// unknown status, a changed version).
    #[error("malformed handshake message: {what}")]
    Malformed {
        /// Which rule.
        what: &'static str,
    },
    /// The peer's proof does not match our key: it holds another key, or replayed, reflected
    /// or forged a proof. On the client this also means the server is not the one meant.
    #[error(
        "the peer's proof does not match our key (a different key, or a replayed or forged response)"
    )]
    WrongKey,
    /// Client side: the server says our proof does not match its key.
    #[error("the server rejected our key (its key is different)")]
    KeyRejected,
    /// The peer closed the connection in the middle of the handshake.
    #[error(
        "the peer closed the connection during the handshake ({during}: {received} of {expected} bytes)"
    )]
    PeerClosed {
        /// The message being read.
        during: &'static str,
        /// Bytes of it received.
        received: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// The handshake did not complete within its deadline.
    #[error("the handshake did not complete within {timeout_ms} ms (waiting for {during})")]
    TimedOut {
        /// The message being waited for.
        during: &'static str,
        /// The deadline, in milliseconds from the start of the handshake.
        timeout_ms: u64,
    },
    /// An OS error during the handshake (a reset, no random numbers, …).
    #[error("{during}: {source}")]
    Io {
        /// What was being done.
        during: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

fn key_name(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!("the key file {}", p.display()),
        None => "the key".to_owned(),
    }
}

impl AuthError {
    /// A stable snake-case name: `auth_wrong_key`, `auth_key_rejected`, `auth_timed_out`, ….
    pub fn kind(&self) -> &'static str {
        match self {
            AuthError::KeyUnreadable { .. } => "auth_key_unreadable",
            AuthError::KeyEmpty { .. } => "auth_key_empty",
            AuthError::KeyTooShort { .. } => "auth_key_too_short",
            AuthError::KeyTooLong { .. } => "auth_key_too_long",
            AuthError::Unauthenticated => "auth_unauthenticated",
            AuthError::NotRingxfer { .. } => "auth_not_ringxfer",
            AuthError::Refused { .. } => "auth_refused",
            AuthError::UnsupportedVersion { .. } => "auth_unsupported_version",
            AuthError::Malformed { .. } => "auth_malformed",
            AuthError::WrongKey => "auth_wrong_key",
            AuthError::KeyRejected => "auth_key_rejected",
            AuthError::PeerClosed { .. } => "auth_peer_closed",
            AuthError::TimedOut { .. } => "auth_timed_out",
            AuthError::Io { .. } => "auth_io",
        }
    }
}

/// The authentication handshake version this build speaks ([`crate::auth::VERSION`]; here so
/// that [`AuthError`]'s message can name it without this module depending on `auth`).
pub(crate) const AUTH_VERSION: u16 = 1;

/// `SOCK_DGRAM` etc. for an `SO_TYPE` value.
fn so_type_name(t: Option<i32>) -> String {
    match t {
        None => "not a socket".to_owned(),
        Some(libc::SOCK_DGRAM) => "SOCK_DGRAM".to_owned(),
        Some(libc::SOCK_SEQPACKET) => "SOCK_SEQPACKET".to_owned(),
        Some(libc::SOCK_RAW) => "SOCK_RAW".to_owned(),
        Some(libc::SOCK_RDM) => "SOCK_RDM".to_owned(),
        Some(t) => format!("SO_TYPE {t}"),
    }
}
