//! The blocking backend: the memoryview recipe in Rust, and the baseline every figure is
//! compared with.
//!
//! `send` loops `write` over a byte view and slices off what was sent; `recv` loops `read`
//! into the rest of the slice. Each call is capped at [`MAX_IO_BYTES`] (the kernel would cap
//! it anyway, case C01), `EINTR` is retried, a 0-byte read is EOF.
//!
//! A non-blocking socket is switched to blocking mode at its first `EAGAIN` for the rest of
//! the call and restored afterwards, and an idle timeout is applied with `SO_SNDTIMEO`/`SO_RCVTIMEO`
//! (restored too), so the loop never spins on `EAGAIN`. Both are `fcntl`/`setsockopt` on the
//! caller's socket: another thread using the same socket concurrently would see them.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

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
    /// Applies the idle timeout (`SO_SNDTIMEO`/`SO_RCVTIMEO`), if any. The non-blocking mode
    /// is only queried and changed once `EAGAIN` shows up ([`ModeGuard::make_blocking`]), so
    /// the common case costs no extra syscall.
    fn new(sock: &'a Socket, dir: Direction, timeout: Option<Duration>) -> io::Result<Self> {
        let mut g = ModeGuard {
            sock,
            dir,
            was_nonblocking: false,
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

    /// Sets the socket's `SO_*TIMEO` to `t` (at least 1 ms: 0 would mean "forever").
    fn set_timeout(&self, t: Duration) -> io::Result<()> {
        let t = Some(t.max(Duration::from_millis(1)));
        match self.dir {
            Direction::Send => self.sock.set_write_timeout(t),
            Direction::Recv => self.sock.set_read_timeout(t),
        }
    }

    /// After `EAGAIN`: if the socket is non-blocking, makes it blocking for the rest of the
    /// call and returns true (retry); false means `EAGAIN` was the idle timeout.
    fn make_blocking(&mut self) -> io::Result<bool> {
        if self.was_nonblocking || !self.sock.nonblocking()? {
            return Ok(false);
        }
        self.sock.set_nonblocking(false)?;
        self.was_nonblocking = true;
        Ok(true)
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

/// Moves `lens.iter().sum()` bytes, piece by piece in order; `step(piece, at, end)` moves
/// bytes `at..end` of piece `piece` and returns how many it moved. With `at_least`, stops
/// once that many bytes moved. Returns the bytes moved.
fn run(
    sock: &Socket,
    dir: Direction,
    lens: &[usize],
    (timeout, at_least): (Option<Duration>, Option<u64>),
    mut step: impl FnMut(usize, usize, usize) -> io::Result<usize>,
) -> Result<u64> {
    let expected: u64 = lens.iter().map(|&l| l as u64).sum();
    let op = match dir {
        Direction::Send => "send",
        Direction::Recv => "recv",
    };
    let io_err = |transferred: u64, source: io::Error| Error::Io {
        op,
        transferred,
        expected,
        source,
    };
    let mut guard = ModeGuard::new(sock, dir, timeout).map_err(|e| io_err(0, e))?;
    let mut done = 0u64;
    // The idle timeout counts from the last progress. SO_*TIMEO restarts at every syscall, so
    // after an EINTR the socket's timeout is cut to what is left (and restored on progress):
    // a signal storm must not keep a stalled transfer alive.
    let mut last_progress = Instant::now();
    let mut shortened = false;
    for (piece, &total) in lens.iter().enumerate() {
        let mut pos = 0usize;
        while pos < total {
            let end = total.min(pos + MAX_IO_BYTES as usize);
            match step(piece, pos, end) {
                Ok(0) => {
                    return Err(match dir {
                        Direction::Recv => Error::UnexpectedEof {
                            transferred: done,
                            expected,
                        },
                        Direction::Send => io_err(done, io::ErrorKind::WriteZero.into()),
                    });
                }
                Ok(n) => {
                    pos += n;
                    done += n as u64;
                    last_progress = Instant::now();
                    if let (true, Some(t)) = (shortened, timeout) {
                        guard.set_timeout(t).map_err(|e| io_err(done, e))?;
                        shortened = false;
                    }
                    if at_least.is_some_and(|min| done >= min) {
                        return Ok(done);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    if let Some(t) = timeout {
                        let left = t.saturating_sub(last_progress.elapsed());
                        if left.is_zero() {
                            return Err(Error::TimedOut {
                                transferred: done,
                                expected,
                                timeout_ms: t.as_millis() as u64,
                            });
                        }
                        guard.set_timeout(left).map_err(|e| io_err(done, e))?;
                        shortened = true;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if !guard.make_blocking().map_err(|e| io_err(done, e))? {
                        // Blocking socket: EAGAIN means SO_*TIMEO elapsed with no byte moved.
                        return Err(Error::TimedOut {
                            transferred: done,
                            expected,
                            timeout_ms: timeout.unwrap_or_default().as_millis() as u64,
                        });
                    }
                }
                Err(e) => return Err(io_err(done, e)),
            }
        }
    }
    Ok(done)
}

/// Sends every byte of `parts`, in order (the baseline: one `send` loop per part).
pub(crate) fn send_parts(sock: &Socket, parts: &[&[u8]], timeout: Option<Duration>) -> Result<()> {
    // `Write for &Socket` is `send(2)` with MSG_NOSIGNAL: a closed peer is EPIPE, not SIGPIPE.
    let mut w = sock;
    let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
    run(sock, Direction::Send, &lens, (timeout, None), |i, a, b| {
        w.write(&parts[i][a..b])
    })
    .map(drop)
}

/// Fills every byte of `parts`, in order.
pub(crate) fn recv_parts(
    sock: &Socket,
    parts: &mut [&mut [u8]],
    timeout: Option<Duration>,
) -> Result<()> {
    let mut r = sock;
    let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
    run(sock, Direction::Recv, &lens, (timeout, None), |i, a, b| {
        r.read(&mut parts[i][a..b])
    })
    .map(drop)
}

/// Reads into `buf` until at least `min` bytes arrived; returns the bytes read (≤ `buf.len()`).
pub(crate) fn recv_at_least(
    sock: &Socket,
    buf: &mut [u8],
    min: usize,
    timeout: Option<Duration>,
) -> Result<usize> {
    let mut r = sock;
    let min = min.min(buf.len()) as u64;
    run(
        sock,
        Direction::Recv,
        &[buf.len()],
        (timeout, Some(min)),
        |_, a, b| r.read(&mut buf[a..b]),
    )
    .map(|n| n as usize)
}

/// Sends every byte of `bytes`.
pub(crate) fn send_all(sock: &Socket, bytes: &[u8], timeout: Option<Duration>) -> Result<()> {
    send_parts(sock, &[bytes], timeout)
}

/// Fills every byte of `bytes`.
pub(crate) fn recv_all(sock: &Socket, bytes: &mut [u8], timeout: Option<Duration>) -> Result<()> {
    recv_parts(sock, &mut [bytes], timeout)
}
