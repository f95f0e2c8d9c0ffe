//! The one error type of ringxfer.
//!
//! Every variant that can happen part-way through a transfer carries the number of **bytes**
//! (not elements) confirmed so far and the number expected, so a caller can log, resume or
//! report exactly how far the stream got.

use std::io;

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

    /// A framed message was rejected (bad header, checksum, limit, …); see
    /// `docs/PROTOCOL.md`. The connection is out of sync afterwards unless the variant says
    /// otherwise (a `PayloadChecksum` or `DtypeMismatch` leaves it usable: the whole message
    /// was consumed).
    #[error("framed message rejected: {0}")]
    Frame(#[from] crate::frame::FrameError),

    /// An invalid argument: an unknown backend name, an impossible option value, ….
    #[error("invalid argument: {0}")]
    InvalidInput(String),

    /// The shared-key authentication handshake failed, or a key could not be loaded
    /// ([`crate::auth`]; the connection must be closed).
    #[error("authentication failed: {0}")]
    Auth(#[from] crate::auth::AuthError),

    /// Setting up the ring or registering buffers failed with an OS error.
    #[error("{what}: {source}")]
    Setup {
        /// What was being set up (`"io_uring_setup"`, `"io_uring_register(BUFFERS)"`).
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Bytes confirmed before the error, where the error happened during a transfer.
    pub fn transferred(&self) -> Option<u64> {
        match self {
            Error::UnexpectedEof { transferred, .. }
            | Error::Io { transferred, .. }
            | Error::TimedOut { transferred, .. } => Some(*transferred),
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
            Error::Io { source, .. } if source.kind() == io::ErrorKind::ConnectionReset => {
                "connection_reset"
            }
            Error::Io { .. } => "io",
            Error::Setup { .. } => "setup",
            Error::UringUnavailable(_) => "uring_unavailable",
            Error::InvalidInput(_) => "invalid_input",
            Error::ChainOrder { .. } => "chain_order",
            Error::Frame(f) => f.kind(),
            Error::Auth(a) => a.kind(),
        }
    }

    /// The errno, where the error came from the OS.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } | Error::Setup { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}
