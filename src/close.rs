//! Ending a connection without losing bytes: a graceful close for the sender
//! ([`finish`]) and an end-of-stream check for the receiver ([`expect_eof`]).
//!
//! # Why a sender must not just close (case C16)
//!
//! [`crate::send_from`] returns once the kernel has *accepted* every byte; they may still sit
//! in the socket's send buffer. If the peer sent bytes this side never read (a greeting, a
//! stray line), `close()` with unread input makes Linux send a TCP **reset** instead of a FIN,
//! and the peer's kernel throws away whatever it had not yet handed to its application — the
//! tail of the array is lost although every send call succeeded. [`finish`] closes the way
//! that cannot happen:
//!
//! 1. `shutdown(SHUT_WR)`: a FIN is queued behind the last byte sent;
//! 2. read and discard (or hand to a sink, [`finish_with`]) whatever the peer sends, until its
//!    end of stream — so nothing unread is left when the socket is closed;
//! 3. return; the caller then drops the socket (a plain close, nothing unread: no reset).
//!
//! The wait in step 2 is bounded by `timeout` ([`DEFAULT_CLOSE_TIMEOUT`] when `None`), as an
//! idle timeout on the peer taking our data: the bound restarts whenever the count of bytes
//! we sent that the peer has not yet taken (`SIOCOUTQ`: TCP unacknowledged, Unix unread)
//! goes down, so a slow reader still draining the socket buffers is waited for. Once the
//! peer has taken everything it has `timeout` to close; what it sends meanwhile never
//! extends the wait ([`expect_eof`]'s bound is the whole wait).
//!
//! # What `Ok` confirms
//!
//! `Ok` means the peer closed its sending side *after* this side's FIN, with no reset seen.
//! A peer that reads until end of stream and then closes (`ringxfer recv`, `ringxfer serve`,
//! a numpy peer doing `recv_into` then `close()`) has by then received every byte: its end of
//! stream came after our last byte. A peer that closes without reading everything sends a
//! reset instead, which arrives as [`Error::PeerReset`]. What TCP cannot tell this side: a
//! peer that half-closes its own side early (`shutdown(SHUT_WR)`) and later closes without
//! reading — that reset comes after `finish` returned. Over a Unix stream socket the same
//! holds (a peer closing with unread data makes our read fail with `ECONNRESET`).
//!
//! # Bytes after the expected data
//!
//! [`crate::Engine::recv_into`] and the framed receives read exactly the bytes of the array
//! (message) and leave anything after it in the socket: a longer array or a second message is
//! not noticed. [`expect_eof`] reads on until the peer closes and fails with
//! [`Error::ExtraBytes`] when anything arrived; it is the same drain loop as [`finish`], with
//! a policy that counts instead of discarding.
//!
//! Both functions work on TCP and Unix stream sockets, blocking or non-blocking (the mode and
//! `SO_RCVTIMEO` are restored before they return), and never spin: each read blocks with a
//! receive timeout set to what is left of the bound.

use std::io::{self, Read};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use socket2::{SockRef, Socket};

use crate::{Error, Result};

/// How long [`finish`] and [`expect_eof`] wait for the peer's close when no bound is given:
/// 30 s. Long enough for a slow reader to drain a few MB of socket buffers after the last
/// send returned (the bytes still in flight when the send calls return), short enough that a
/// peer which never closes does not hang the caller.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a graceful close found ([`finish`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finished {
    /// Bytes the peer sent after this side's shutdown was issued (or before, unread until
    /// then) and that were read and discarded — or handed to the sink of [`finish_with`] —
    /// before the peer closed.
    pub peer_bytes: u64,
}

/// Closes the sending side of `sock` gracefully: `shutdown(SHUT_WR)`, then reads and
/// discards what the peer sends until it closes (see the [module docs](self) for why and for
/// what `Ok` confirms). Drop the socket afterwards.
///
/// `timeout` bounds the wait for the peer's close, restarted whenever the peer takes more
/// of the bytes we sent (see the module docs); `None` means [`DEFAULT_CLOSE_TIMEOUT`]. The
/// shutdown cannot be undone: after any return the socket can
/// only receive.
///
/// # Errors
/// Each says that delivery is **not confirmed**:
/// * [`Error::PeerReset`] — the peer reset the connection instead of closing it (it closed
///   with our bytes unread: they may be lost);
/// * [`Error::PeerNotClosed`] — the peer did not close within the bound;
/// * [`Error::Io`] — `shutdown` (`op: "shutdown(SHUT_WR)"`, e.g. `ENOTCONN` when the
///   connection is already gone) or a read failed with another OS error.
///
/// # Example
///
/// ```
/// use std::io::Read;
/// use std::os::unix::net::UnixStream;
///
/// # fn main() -> ringxfer::Result<()> {
/// let (a, mut b) = UnixStream::pair().expect("socketpair");
/// let peer = std::thread::spawn(move || {
///     let mut got = Vec::new();
///     b.read_to_end(&mut got).expect("read"); // up to our end of stream
///     got.len() // then `b` closes
/// });
/// ringxfer::send_from(&a, &[1.0f64, 2.0, 3.0])?;
/// let done = ringxfer::close::finish(&a, None)?;
/// assert_eq!(done.peer_bytes, 0);
/// assert_eq!(peer.join().unwrap(), 24);
/// # Ok(()) }
/// ```
pub fn finish<S: AsFd>(sock: &S, timeout: Option<Duration>) -> Result<Finished> {
    finish_with(sock, timeout, |_| {})
}

/// [`finish`], handing every byte the peer sends before its close to `sink` instead of
/// discarding it (e.g. a reply the peer writes after our end of stream, as `ringxfer serve`
/// does for `send --get-server-output`). Errors as [`finish`]; on error `sink` has seen the
/// bytes that arrived before it.
pub fn finish_with<S: AsFd>(
    sock: &S,
    timeout: Option<Duration>,
    mut sink: impl FnMut(&[u8]),
) -> Result<Finished> {
    let s = SockRef::from(sock);
    let bound = timeout.unwrap_or(DEFAULT_CLOSE_TIMEOUT);
    if let Err(source) = s.shutdown(Shutdown::Write) {
        let shutdown_failed = Error::Io {
            op: "shutdown(SHUT_WR)",
            transferred: 0,
            expected: 0,
            source,
        };
        // A connection the peer already reset is no longer connected (`ENOTCONN`); reading
        // then reports the reset, which says more. Anything else (the error was already
        // reported by an earlier call, a read error) is the shutdown's failure.
        return Err(match drain(&s, bound, true, &mut sink) {
            Err(e @ Error::PeerReset { .. }) => e,
            _ => shutdown_failed,
        });
    }
    let d = drain(&s, bound, true, &mut sink)?;
    if d.peer_closed {
        Ok(Finished { peer_bytes: d.read })
    } else {
        Err(Error::PeerNotClosed {
            read: d.read,
            timeout_ms: millis(bound),
        })
    }
}

/// Checks that nothing follows the expected data: reads from `sock` until the peer closes,
/// counting what arrives. Use it after the last receive when the peer was meant to send
/// exactly that much; it does not shut anything down, and the socket can still send.
///
/// `timeout` bounds the whole wait for the peer's close; `None` means
/// [`DEFAULT_CLOSE_TIMEOUT`].
///
/// # Errors
/// * [`Error::ExtraBytes`] — bytes arrived (`extra`: how many, every one up to the peer's
///   close, or up to the end of the bound when `peer_closed` is false);
/// * [`Error::PeerNotClosed`] (with `read: 0`) — nothing arrived, but the peer did not close
///   within the bound, so whether more follows is unknown;
/// * [`Error::PeerReset`] — the peer reset the connection (with no extra byte first);
/// * [`Error::Io`] — a read failed with another OS error.
pub fn expect_eof<S: AsFd>(sock: &S, timeout: Option<Duration>) -> Result<()> {
    let s = SockRef::from(sock);
    let bound = timeout.unwrap_or(DEFAULT_CLOSE_TIMEOUT);
    let d = match drain(&s, bound, false, &mut |_| {}) {
        // Extra bytes are the finding; a reset after them does not change it.
        Err(Error::PeerReset { read }) if read > 0 => Drained {
            read,
            peer_closed: true,
        },
        other => other?,
    };
    match d {
        Drained {
            read: 0,
            peer_closed: true,
        } => Ok(()),
        Drained {
            read: 0,
            peer_closed: false,
        } => Err(Error::PeerNotClosed {
            read: 0,
            timeout_ms: millis(bound),
        }),
        Drained { read, peer_closed } => Err(Error::ExtraBytes {
            extra: read,
            peer_closed,
        }),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What [`drain`] read.
#[derive(Debug, Clone, Copy)]
struct Drained {
    /// Bytes read from the peer.
    read: u64,
    /// True when the peer's end of stream arrived within the bound.
    peer_closed: bool,
}

/// Restores the socket's blocking mode and `SO_RCVTIMEO` when dropped.
struct Restore<'a> {
    sock: &'a Socket,
    nonblocking: bool,
    read_timeout: Option<Duration>,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        // Best effort: the drain's own result is what the caller needs to see.
        let _ = self.sock.set_read_timeout(self.read_timeout);
        if self.nonblocking {
            let _ = self.sock.set_nonblocking(true);
        }
    }
}

/// The one drain loop: reads until end of stream or until `bound` has passed, handing each
/// piece to `sink`. Blocking reads with `SO_RCVTIMEO` set to what is left of the bound, so it
/// never spins.
///
/// With `watch_unsent` ([`finish`]) the bound is an *idle* bound on the peer taking our
/// data: while bytes we sent are still unacknowledged / unread by the peer (`SIOCOUTQ`), the
/// loop wakes every [`crate::blocking::probe_interval`] and restarts the bound whenever that
/// count went down — a slow but steady reader still draining the socket buffers is not a
/// peer that fails to close. Bytes the peer sends us never restart it (a peer that sends
/// forever still ends the wait).
fn drain(
    s: &Socket,
    bound: Duration,
    watch_unsent: bool,
    sink: &mut dyn FnMut(&[u8]),
) -> Result<Drained> {
    let io_err = |read: u64, source: io::Error| Error::Io {
        op: "recv (waiting for the peer's close)",
        transferred: read,
        expected: read,
        source,
    };
    let mut deadline = Instant::now() + bound;
    let unsent_now = || {
        watch_unsent
            .then(|| crate::uring::unsent_bytes(s.as_fd()))
            .flatten()
    };
    let mut unsent = unsent_now();
    let nonblocking = s.nonblocking().map_err(|e| io_err(0, e))?;
    let _restore = Restore {
        sock: s,
        nonblocking,
        read_timeout: s.read_timeout().map_err(|e| io_err(0, e))?,
    };
    if nonblocking {
        s.set_nonblocking(false).map_err(|e| io_err(0, e))?;
    }
    let mut buf = vec![0u8; 64 << 10];
    let mut read = 0u64;
    let mut r: &Socket = s;
    loop {
        if let Some(before) = unsent {
            let now = unsent_now();
            if now.is_some_and(|n| n < before) {
                deadline = Instant::now() + bound; // the peer took some of our bytes
            }
            unsent = now;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Drained {
                read,
                peer_closed: false,
            });
        }
        let wait = match unsent {
            Some(n) if n > 0 => left.min(crate::blocking::probe_interval(bound)),
            _ => left,
        };
        // At least 1 ms: a zero SO_RCVTIMEO would mean "forever".
        s.set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .map_err(|e| io_err(read, e))?;
        match r.read(&mut buf) {
            Ok(0) => {
                return Ok(Drained {
                    read,
                    peer_closed: true,
                });
            }
            Ok(n) => {
                read += n as u64;
                sink(&buf[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(Error::PeerReset { read });
            }
            Err(e) => return Err(io_err(read, e)),
        }
    }
}
