//! The blocking backend: the memoryview recipe in Rust, and the baseline every figure is
//! compared with.
//!
//! `send` loops `write` over a byte view and slices off what was sent; `recv` loops `read`
//! into the rest of the slice. Each call is capped at [`MAX_IO_BYTES`] (the kernel would cap
//! it anyway, case C01), `EINTR` is retried, a 0-byte read is EOF.
//!
//! A non-blocking socket is switched to blocking mode for the duration of the call and
//! restored afterwards, and an idle timeout is applied with `SO_SNDTIMEO`/`SO_RCVTIMEO`
//! (restored too), so the loop never spins on `EAGAIN`. Both are `fcntl`/`setsockopt` on the
//! caller's socket: another thread using the same socket concurrently would see them.

use std::io::{self, Read, Write};
use std::time::Duration;

use socket2::Socket;

use crate::error::{Error, Result};
use crate::planner::{Direction, MAX_IO_BYTES};

/// Restores the socket's blocking mode and timeout when dropped.
struct ModeGuard<'a> {
    sock: &'a Socket,
    dir: Direction,
    was_nonblocking: bool,
    old_timeout: Option<Option<Duration>>,
}

impl<'a> ModeGuard<'a> {
    fn new(sock: &'a Socket, dir: Direction, timeout: Option<Duration>) -> io::Result<Self> {
        let was_nonblocking = sock.nonblocking()?;
        if was_nonblocking {
            sock.set_nonblocking(false)?;
        }
        let mut g = ModeGuard {
            sock,
            dir,
            was_nonblocking,
            old_timeout: None,
        };
        if let Some(t) = timeout {
            let t = t.max(Duration::from_millis(1));
            match dir {
                Direction::Send => {
                    g.old_timeout = Some(sock.write_timeout()?);
                    sock.set_write_timeout(Some(t))?;
                }
                Direction::Recv => {
                    g.old_timeout = Some(sock.read_timeout()?);
                    sock.set_read_timeout(Some(t))?;
                }
            }
        }
        Ok(g)
    }
}

impl Drop for ModeGuard<'_> {
    fn drop(&mut self) {
        // Best effort: the transfer's own result is what the caller needs to see.
        if let Some(old) = self.old_timeout {
            let _ = match self.dir {
                Direction::Send => self.sock.set_write_timeout(old),
                Direction::Recv => self.sock.set_read_timeout(old),
            };
        }
        if self.was_nonblocking {
            let _ = self.sock.set_nonblocking(true);
        }
    }
}

/// Runs `step(pos, end)` until `total` bytes are done; `step` returns bytes moved.
fn run(
    sock: &Socket,
    dir: Direction,
    total: usize,
    timeout: Option<Duration>,
    mut step: impl FnMut(usize, usize) -> io::Result<usize>,
) -> Result<()> {
    let expected = total as u64;
    let op = match dir {
        Direction::Send => "send",
        Direction::Recv => "recv",
    };
    let _guard = ModeGuard::new(sock, dir, timeout).map_err(|source| Error::Io {
        op: "fcntl/setsockopt",
        transferred: 0,
        expected,
        source,
    })?;
    let mut pos = 0usize;
    while pos < total {
        let end = total.min(pos + MAX_IO_BYTES as usize);
        match step(pos, end) {
            Ok(0) => {
                return Err(match dir {
                    Direction::Recv => Error::UnexpectedEof {
                        transferred: pos as u64,
                        expected,
                    },
                    Direction::Send => Error::Io {
                        op,
                        transferred: pos as u64,
                        expected,
                        source: io::ErrorKind::WriteZero.into(),
                    },
                });
            }
            Ok(n) => pos += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                // The socket is blocking for this call, so EAGAIN means SO_*TIMEO elapsed
                // with no byte moved.
                return Err(Error::TimedOut {
                    transferred: pos as u64,
                    expected,
                    timeout_ms: timeout.unwrap_or_default().as_millis() as u64,
                });
            }
            Err(source) => {
                return Err(Error::Io {
                    op,
                    transferred: pos as u64,
                    expected,
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Sends every byte of `bytes`.
pub(crate) fn send_all(sock: &Socket, bytes: &[u8], timeout: Option<Duration>) -> Result<()> {
    // `Write for &Socket` is `send(2)` with MSG_NOSIGNAL: a closed peer is EPIPE, not SIGPIPE.
    let mut w = sock;
    run(sock, Direction::Send, bytes.len(), timeout, |a, b| {
        w.write(&bytes[a..b])
    })
}

/// Fills every byte of `bytes`.
pub(crate) fn recv_all(sock: &Socket, bytes: &mut [u8], timeout: Option<Duration>) -> Result<()> {
    let mut r = sock;
    run(sock, Direction::Recv, bytes.len(), timeout, |a, b| {
        r.read(&mut bytes[a..b])
    })
}
