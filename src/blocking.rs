//! The blocking backend: the memoryview recipe in Rust, and the baseline every figure is
//! compared with.
//!
//! `send` loops `write` over a byte view and slices off what was sent; `recv` loops `read`
//! into the rest of the slice. Each call is capped at [`MAX_IO_BYTES`] (the kernel would cap
//! it anyway, case C01), `EINTR` is retried, a 0-byte read is EOF.
//!
//! A non-blocking socket is switched to blocking mode at its first `EAGAIN` for the rest of
//! the call and restored afterwards, so the loop never spins on `EAGAIN`. An idle timeout is
//! kept by the loop's own clock: the socket's `SO_SNDTIMEO`/`SO_RCVTIMEO` (restored
//! afterwards) is only the probe interval (`T/10`, at most 100 ms) at which a blocked call comes back to look at
//! it, so the timeout fires between `T` and `T + probe_interval(T)` after the last byte moved
//! (a `send` that queued part of its buffer and then blocked returns the partial count at the
//! next wake-up, which counts as progress). Both are `fcntl`/`setsockopt` on the
//! caller's socket: another thread using the same socket concurrently would see them.

use std::io::{self, IoSlice, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use socket2::{SockRef, Socket};

use crate::driver::{Bufs, HOOK_CHUNK, Progress, Transfer};

use crate::error::{Error, Result};
use crate::planner::{Direction, MAX_IO_BYTES};
use crate::{INTERRUPT_POLL, Interrupt};

/// What bounds a transfer's waits: the idle timeout ([`crate::Options::idle_timeout`]) and the
/// caller's interrupt check ([`crate::Options::interrupt`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct Waits {
    /// No byte moved for this long: [`Error::TimedOut`].
    pub(crate) idle: Option<Duration>,
    /// Polled at every wake-up, at least every [`INTERRUPT_POLL`]: [`Error::Interrupted`].
    pub(crate) interrupt: Option<Interrupt>,
}

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

/// How often a waiting transfer with an idle timeout `t` wakes up to check the clock: the
/// socket timeout (`SO_SNDTIMEO`/`SO_RCVTIMEO`) is at most this long, so progress made inside
/// a long `send` (which returns only when its whole buffer is queued or its socket timeout
/// expires) is seen within this interval, and the idle timeout fires between `t` and
/// `t + probe_interval(t)` (plus scheduling) after the last byte moved.
pub(crate) fn probe_interval(t: Duration) -> Duration {
    (t / 10).clamp(Duration::from_millis(1), Duration::from_millis(100))
}

/// Moves `lens.iter().sum()` bytes in order; `step(pos, end)` moves bytes from stream
/// position `pos` (at most up to `end`, the end of a `MAX_IO_BYTES` window) and returns how
/// many it moved. With `at_least`, stops once that many bytes moved. Returns the bytes moved.
/// The interrupt check of `waits` is polled after every `step`; a blocked step comes back at
/// least every [`INTERRUPT_POLL`] to poll it.
// About 115 lines: the backend's one loop; the idle deadline, the probe interval, the set's
// cancel flag, the interrupt check and the socket mode it restores share its state, and every
// way out (done, EOF, error, timeout, cancel, interrupt) is visible in one place.
fn run(
    sock: &Socket,
    dir: Direction,
    lens: &[usize],
    (waits, at_least, cancel): (&Waits, Option<u64>, Option<&AtomicBool>),
    mut step: impl FnMut(u64, u64) -> io::Result<usize>,
) -> Result<u64> {
    let (timeout, interrupt) = (waits.idle, waits.interrupt.as_ref());
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
    let timed_out = |transferred: u64| Error::TimedOut {
        transferred,
        expected,
        timeout_ms: timeout.unwrap_or_default().as_millis() as u64,
    };
    // In a set, a blocked call also wakes up every probe interval to see whether another
    // transfer failed (the set's cancel flag); with an interrupt check, to poll it.
    let probe = timeout
        .map(probe_interval)
        .or((cancel.is_some() || interrupt.is_some()).then_some(INTERRUPT_POLL));
    let interrupted = |transferred: u64| {
        interrupt
            .is_some_and(Interrupt::fired)
            .then_some(Error::Interrupted {
                transferred,
                expected,
            })
    };
    let canceled = |done: u64| {
        cancel
            .is_some_and(|c| c.load(Ordering::Relaxed))
            .then_some(done)
    };
    let mut guard = ModeGuard::new(sock, dir, probe).map_err(|e| io_err(0, e))?;
    let mut done = 0u64;
    // The idle timeout counts from the last progress. The socket timeout is only the probe
    // interval: every wake-up without progress (socket timeout, EINTR) checks the clock and
    // re-arms the socket timeout with what is left, so neither a signal storm nor a `send`
    // that queued bytes early and then blocked can stretch the idle timeout.
    let mut last_progress = Instant::now();
    let mut armed = probe;
    while done < expected {
        let end = expected.min(done + MAX_IO_BYTES as u64);
        let r = step(done, end);
        if let Some(e) = interrupted(done + r.as_ref().map_or(0, |&n| n as u64)) {
            return Err(e);
        }
        match r {
            Ok(0) => {
                return Err(match dir {
                    Direction::Recv => crate::sock::eof(sock, done, expected),
                    Direction::Send => io_err(done, io::ErrorKind::WriteZero.into()),
                });
            }
            Ok(n) => {
                done += n as u64;
                last_progress = Instant::now();
                if at_least.is_some_and(|min| done >= min) {
                    return Ok(done);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                ) =>
            {
                if e.kind() != io::ErrorKind::Interrupted
                    && guard.make_blocking().map_err(|e| io_err(done, e))?
                {
                    continue; // a non-blocking socket's EAGAIN: now blocking, retry
                }
                if let Some(transferred) = canceled(done) {
                    return Err(Error::Canceled {
                        transferred,
                        expected,
                    });
                }
                let (Some(t), Some(p)) = (timeout, probe) else {
                    if e.kind() == io::ErrorKind::Interrupted
                        || cancel.is_some()
                        || interrupt.is_some()
                    {
                        continue; // EINTR, or our own probe timeout (set, interrupt check)
                    }
                    // No idle timeout of ours, yet a blocking socket timed out: the caller's
                    // own SO_SNDTIMEO/SO_RCVTIMEO elapsed with no byte moved.
                    return Err(timed_out(done));
                };
                let left = t.saturating_sub(last_progress.elapsed());
                if left.is_zero() {
                    return Err(timed_out(done));
                }
                let next = left.min(p);
                if armed != Some(next) {
                    guard.set_timeout(next).map_err(|e| io_err(done, e))?;
                    armed = Some(next);
                }
            }
            Err(e) => return Err(io_err(done, e)),
        }
    }
    Ok(done)
}

/// The piece containing stream position `pos` and the offset in it (`pos < total`).
fn locate(lens: &[usize], mut pos: u64) -> (usize, usize) {
    for (i, &l) in lens.iter().enumerate() {
        if pos < l as u64 {
            return (i, pos as usize);
        }
        pos -= l as u64;
    }
    unreachable!("position past the end of the pieces")
}

/// Most parts gathered into one `sendmsg` (Linux's `UIO_MAXIOV` is 1024).
const GATHER_MAX: usize = 64;

/// Sends every byte of `parts`, in order: one `sendmsg` gathers as many parts as fit (a
/// framed message's header, payload and trailer leave in one call when the socket buffer
/// takes them), with `MSG_NOSIGNAL` (a closed peer is `EPIPE`, not `SIGPIPE`). With a
/// progress `hook`, each `sendmsg` moves at most [`HOOK_CHUNK`] bytes and the hook runs on
/// them right before it (see [`crate::driver`], "Progress hooks").
fn send_gathered(
    sock: &Socket,
    parts: &[&[u8]],
    (waits, mut hook): (&Waits, Option<&mut dyn Progress>),
    cancel: Option<&AtomicBool>,
) -> Result<u64> {
    let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
    let mut hooked = 0u64;
    run(
        sock,
        Direction::Send,
        &lens,
        (waits, None, cancel),
        |pos, end| {
            let end = match hook.as_deref_mut() {
                Some(h) => {
                    let end = end.min(pos + HOOK_CHUNK as u64);
                    while hooked < end {
                        let (i, off) = locate(&lens, hooked);
                        let n = (lens[i] - off).min((end - hooked) as usize);
                        h.bytes(hooked, &parts[i][off..off + n]);
                        hooked += n as u64;
                    }
                    end
                }
                None => end,
            };
            let (first, off) = locate(&lens, pos);
            let mut budget = (end - pos) as usize;
            // On the stack: no allocation per syscall.
            let mut bufs = [IoSlice::new(&[]); GATHER_MAX];
            let mut used = 0;
            for (i, p) in parts[first..].iter().enumerate().take(GATHER_MAX) {
                let p = if i == 0 { &p[off..] } else { p };
                let take = p.len().min(budget);
                if take == 0 {
                    continue;
                }
                bufs[used] = IoSlice::new(&p[..take]);
                used += 1;
                budget -= take;
                if budget == 0 {
                    break;
                }
            }
            sock.send_vectored_with_flags(&bufs[..used], libc::MSG_NOSIGNAL)
        },
    )
}

/// Fills `parts` in order: every byte, or with `at_least` until that many arrived (taking
/// what else the socket holds, up to the parts' length). A progress `hook` runs on each
/// chunk right after `read` returns it.
fn recv_scattered(
    sock: &Socket,
    parts: &mut [&mut [u8]],
    (waits, at_least, mut hook): (&Waits, Option<u64>, Option<&mut dyn Progress>),
    cancel: Option<&AtomicBool>,
) -> Result<u64> {
    let mut r = sock;
    let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
    run(
        sock,
        Direction::Recv,
        &lens,
        (waits, at_least, cancel),
        |pos, end| {
            let (i, off) = locate(&lens, pos);
            let stop = (off as u64 + (end - pos)).min(lens[i] as u64) as usize;
            let n = r.read(&mut parts[i][off..stop])?;
            if let Some(h) = hook.as_deref_mut() {
                h.bytes(pos, &parts[i][off..off + n]);
            }
            Ok(n)
        },
    )
}

/// Runs one transfer on the calling thread; `cancel` is the set's flag, if any.
fn run_transfer(t: &mut Transfer<'_>, waits: &Waits, cancel: Option<&AtomicBool>) -> Result<u64> {
    let sock = SockRef::from(&t.fd);
    let hook = t.progress.as_mut().map(|h| &mut **h as &mut dyn Progress);
    match &mut t.bufs {
        Bufs::Send(parts) => send_gathered(&sock, parts, (waits, hook), cancel),
        Bufs::Recv(parts) => recv_scattered(&sock, parts, (waits, t.at_least, hook), cancel),
    }
}

/// Runs a set of transfers (see [`crate::driver`]): a set of one on the calling thread, a
/// larger set on scoped threads, one per transfer. The first transfer to fail raises the
/// set's cancel flag; the others see it within 100 ms (their socket timeout is at most that
/// while in a set) and return [`Error::Canceled`] — or [`Error::Interrupted`] when the set
/// stopped because the caller's interrupt check fired. A thread that cannot be started is
/// [`Error::Spawn`] for its transfer and cancels the set the same way.
pub(crate) fn run_set(transfers: &mut [Transfer<'_>], waits: &Waits) -> Vec<Result<u64>> {
    if let [one] = transfers {
        return vec![run_transfer(one, waits, None)];
    }
    let cancel = AtomicBool::new(false);
    let mut results: Vec<Result<u64>> = std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(transfers.len());
        let mut unstarted = Vec::new();
        for t in transfers.iter_mut() {
            if cancel.load(Ordering::Relaxed) {
                unstarted.push(Err(Error::Canceled {
                    transferred: 0,
                    expected: t.bufs.len(),
                }));
                continue;
            }
            let cancel = &cancel;
            let spawned = std::thread::Builder::new().spawn_scoped(s, move || {
                let r = run_transfer(t, waits, Some(cancel));
                if r.is_err() {
                    cancel.store(true, Ordering::Relaxed);
                }
                r
            });
            match spawned {
                Ok(h) => handles.push(Ok(h)),
                Err(e) => {
                    cancel.store(true, Ordering::Relaxed);
                    handles.push(Err(Error::Spawn(e)));
                }
            }
        }
        // Once the cancel flag is up no transfer starts, so the unstarted ones come last:
        // the results stay in the transfers' order.
        let joined = handles.into_iter().map(|h| {
            h.map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .unwrap_or_else(Err)
        });
        joined.chain(unstarted).collect()
    });
    // The transfers stopped because of the interrupt are interrupted, not canceled.
    if results
        .iter()
        .any(|r| matches!(r, Err(Error::Interrupted { .. })))
    {
        for r in &mut results {
            if let Err(Error::Canceled {
                transferred,
                expected,
            }) = *r
            {
                *r = Err(Error::Interrupted {
                    transferred,
                    expected,
                });
            }
        }
    }
    results
}

/// Sends every byte of `parts`, in order (see [`send_gathered`]).
pub(crate) fn send_parts(sock: &Socket, parts: &[&[u8]], waits: &Waits) -> Result<()> {
    send_gathered(sock, parts, (waits, None), None).map(drop)
}

/// Fills every byte of `parts`, in order.
pub(crate) fn recv_parts(sock: &Socket, parts: &mut [&mut [u8]], waits: &Waits) -> Result<()> {
    recv_scattered(sock, parts, (waits, None, None), None).map(drop)
}

/// Sends every byte of `bytes`.
pub(crate) fn send_all(sock: &Socket, bytes: &[u8], waits: &Waits) -> Result<()> {
    send_parts(sock, &[bytes], waits)
}

/// Fills every byte of `bytes`.
pub(crate) fn recv_all(sock: &Socket, bytes: &mut [u8], waits: &Waits) -> Result<()> {
    recv_parts(sock, &mut [bytes], waits)
}
