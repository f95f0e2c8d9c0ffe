//! The io_uring backend: the only module with `unsafe`.
//!
//! # How a transfer runs
//!
//! The [planner](crate::planner) cuts the array into segments (≤ `segment_bytes`, never across
//! a registered 1 GiB slot, never over the kernel's 0x7ffff000-byte per-call cap) and hands out
//! one **link chain** at a time: `chain_sqes` send (or recv) SQEs, each with `MSG_WAITALL`,
//! joined with `IOSQE_IO_LINK`. `MSG_WAITALL` makes the kernel retry a partial transfer inside
//! the request, so a CQE shorter than its SQE only happens on error, EOF, signal or cancel —
//! and then the link fails and the rest of the chain completes with `-ECANCELED`. The planner
//! then restarts from the first byte not yet confirmed. Only one chain is in flight per call,
//! because several unlinked sends in flight on one TCP socket reorder the stream after a short
//! send (observed on this project's machine: a 400 MB array corrupted 3 runs out of 3).
//!
//! # The invariant
//!
//! `Ring::transfer` never returns — on success, error or panic unwinding — while the kernel
//! still owns an SQE that points into the caller's memory: on success every CQE (and, for
//! `SEND_ZC`, every notification CQE) has been reaped; on error the in-flight SQEs are
//! canceled with `IORING_OP_ASYNC_CANCEL` and every CQE is drained first. If even draining
//! fails, the process aborts rather than return with memory lent to the kernel.
//!
//! # Bounded waits
//!
//! With an idle timeout `T` every wait is bounded: a chain that has produced no CQE for
//! `T/10` (at most 100 ms) is canceled and re-planned,
//! which makes the bytes moved inside its `MSG_WAITALL` requests visible, so the timeout fires
//! between `T` and `T + T/10` after the last byte moved. `SEND_ZC` notification CQEs count
//! as progress; when none has come for `T` (or when the timeout fired and one probe interval
//! later the kernel still holds pages), the peer has stopped taking data and the pages sit in
//! the socket's queue: the connection is aborted (`connect(AF_UNSPEC)`, RST) so that the
//! kernel drops that data and posts the notifications, and the call returns
//! [`Error::TimedOutAborted`]. Without an idle timeout the call waits, like a blocking send.
//!
//! # Measured choice of ops
//!
//! `scripts/tune.sh 5` (400 MB f64 over loopback TCP, 2-vCPU VM, Linux 6.18.44, 2026-11-29;
//! median GB/s of 5 runs, the blocking baseline measured alternately in the same run):
//!
//! | uring configuration                          | uring | blocking | ratio |
//! |----------------------------------------------|-------|----------|-------|
//! | `SEND`/`RECV` + `MSG_WAITALL`, 4 MiB × 8 (default) | 4.85 | 3.61 | 1.34 |
//! | `WRITE_FIXED` send, one-shot (registers)     | 4.06  | 3.65     | 1.11  |
//! | `SEND_ZC` send, one-shot (registers)         | 2.31  | 3.51     | 0.66  |
//! | `READ_FIXED` recv, one-shot (registers)      | 4.46  | 3.54     | 1.26  |
//! | pre-registered, default ops                  | 5.04  | 3.85     | 1.31  |
//! | pre-registered, `WRITE_FIXED`                | 4.77  | 3.79     | 1.26  |
//! | pre-registered, `SEND_ZC`                    | 2.38  | 3.73     | 0.64  |
//! | pre-registered, `READ_FIXED`                 | 4.87  | 3.71     | 1.32  |
//! | segments 1 / 2 / 4 / 8 / 16 / 64 MiB (chain 8) | 4.48 / 5.04 / 4.97 / 4.73 / 4.77 / 4.62 | | |
//! | chains of 1 / 2 / 4 / 8 / 16 / 32 (4 MiB)    | 4.85 / 4.80 / 4.85 / 4.97 / 4.82 / 4.77 | | |
//!
//! Chosen: `SEND`/`RECV` with `MSG_WAITALL` from the array's own address, 4 MiB segments,
//! 8 per chain. Fixed buffers do not pay on loopback (both ends copy anyway; a `SEND_ZC` skb
//! delivered locally is copied again and its notification CQE adds work), so one-shot calls
//! register only for the ops that need it ([`crate::RegisterPolicy::Auto`]); registration
//! itself costs 12.7 ms per 400 MB of touched memory. `IORING_OP_SEND` with
//! `IORING_RECVSEND_FIXED_BUF` fails with `EINVAL` on 6.18 (measured), so a registered send
//! uses `SEND_ZC` or `WRITE_FIXED`. Below [`crate::Options::direct_below_bytes`] (512 KiB) a
//! transfer skips the ring altogether: `ringxfer bench --size 256KiB` gave uring/blocking 0.78.

mod flight;
mod probe;
mod registry;
mod setup;
mod sigpipe;
mod zerocopy;

pub use probe::{Probe, probe};
pub(crate) use registry::Registration;
pub use setup::MAX_CHAIN_SQES;
pub(crate) use setup::build_ring;

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::{IoUring, opcode, squeue, types};

use crate::error::{Error, Result};
use crate::planner::{Direction, PlanError, Planner};
use flight::{Flight, POLL_TAG, borrowed};
use registry::{Span, spans_of};
use sigpipe::SigpipeBlocked;

/// `msg_flags` of a `SEND`/`SEND_ZC`: `MSG_WAITALL` (retry a partial send inside the
/// request), `MSG_NOSIGNAL` (`EPIPE`, not `SIGPIPE`), and `MSG_MORE` on every SQE that does
/// not end the transfer, so the stream is corked between them (a framed message's header,
/// payload and trailer leave as full segments; the last SQE pushes: case C17).
fn send_flags(more_follows: bool) -> i32 {
    let more = if more_follows { libc::MSG_MORE } else { 0 };
    libc::MSG_WAITALL | libc::MSG_NOSIGNAL | more
}

/// The opcode used for sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum SendOp {
    /// `IORING_OP_SEND` with `MSG_WAITALL` (Linux 5.6), from the array's address (a
    /// registration is not used: on Linux 6.18 `IORING_OP_SEND` rejects
    /// `IORING_RECVSEND_FIXED_BUF` with `EINVAL`, measured with `examples`-style runs in this
    /// project; only `SEND_ZC` takes a fixed buffer).
    Send,
    /// `IORING_OP_SEND_ZC` (Linux 6.0) from the registered buffer: no copy on the sending
    /// side; each SQE yields a result CQE and later a notification CQE once the kernel has
    /// released the pages. ringxfer returns only after every notification.
    SendZc,
    /// `IORING_OP_WRITE_FIXED` (Linux 5.1) on the socket: any short write breaks the link.
    WriteFixed,
}

/// The opcode used for receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RecvOp {
    /// `IORING_OP_RECV` with `MSG_WAITALL` (Linux 5.6): each SQE completes only when full
    /// (or on EOF/error).
    Recv,
    /// `IORING_OP_READ_FIXED` (Linux 5.1) into the registered buffer; returns what the socket
    /// holds, so short results (and broken links) are the norm.
    ReadFixed,
}

/// Knobs of the uring backend. The defaults are the measured best on loopback TCP.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UringTuning {
    /// Send opcode.
    pub send_op: SendOp,
    /// Receive opcode.
    pub recv_op: RecvOp,
    /// Bytes per SQE (clamped to 1..=0x7ffff000).
    pub segment_bytes: u32,
    /// SQEs per link chain (clamped to 1..=[`MAX_CHAIN_SQES`]).
    pub chain_sqes: u32,
}

impl Default for UringTuning {
    fn default() -> Self {
        UringTuning {
            send_op: SendOp::Send,
            recv_op: RecvOp::Recv,
            segment_bytes: 4 << 20,
            chain_sqes: 8,
        }
    }
}

/// One io_uring instance.
pub(crate) struct Ring {
    ring: IoUring,
    registered: bool,
    /// Set once `SEND_ZC` was refused for lack of pinnable memory: the reason; sends then use
    /// `IORING_OP_SEND`.
    zc_refused: Option<String>,
    /// Registrations refused so far (one-shot calls fall back silently otherwise).
    register_refused: Option<String>,
    /// First `user_data` the next transfer may use: ids are unique over the ring's life, so
    /// a late CQE of an earlier transfer can never be taken for one of the current transfer.
    next_ud: u64,
    /// SQEs pushed and CQEs reaped over the ring's life ([`crate::Engine::stats`]).
    stats: crate::stats::EngineStats,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("registered", &self.registered)
            .finish_non_exhaustive()
    }
}

impl Ring {
    /// Creates a ring of [`SQ_ENTRIES`] SQEs and [`CQ_ENTRIES`] CQEs.
    pub(crate) fn new() -> Result<Ring> {
        let ring = build_ring().map_err(|source| Error::Setup {
            what: "io_uring_setup",
            source,
        })?;
        Ok(Ring {
            ring,
            registered: false,
            zc_refused: None,
            register_refused: None,
            next_ud: 0,
            stats: Default::default(),
        })
    }

    /// Moves the bytes of `spans`, in order, as one stream through socket `fd`.
    ///
    /// # Safety
    ///
    /// Every span's `[ptr, ptr + len)` must be valid for reads (send) or writes (recv) for the
    /// duration of the call and not accessed by anyone else meanwhile (the safe wrappers hold
    /// `&[u8]` / `&mut [u8]`). A span's `buf_index`, when `Some`, must be the index of a
    /// registered buffer of this ring that contains the whole span.
    ///
    /// With `at_least: Some(min)` (receives only) the call returns as soon as `min` bytes
    /// have arrived, issuing one `RECV` without `MSG_WAITALL` at a time so that whatever the
    /// socket holds beyond `min` (up to the spans' length) comes in the same completion; it
    /// returns the bytes received. Otherwise every byte is moved and the total is returned.
    unsafe fn transfer(
        &mut self,
        fd: RawFd,
        dir: Direction,
        spans: &[Span],
        settings: (&UringTuning, Option<Duration>),
        at_least: Option<u64>,
    ) -> Result<u64> {
        let base = self.next_ud;
        let mut used = 0;
        // SAFETY: forwarded from this function's contract.
        let r = unsafe { self.transfer_ids(fd, dir, spans, settings, at_least, base, &mut used) };
        self.next_ud = base + used;
        r
    }

    /// [`Ring::transfer`] with SQE `user_data` starting at `base`; `used` receives how many
    /// ids the transfer consumed.
    ///
    /// # Safety
    ///
    /// As [`Ring::transfer`].
    #[allow(clippy::too_many_arguments)]
    unsafe fn transfer_ids(
        &mut self,
        fd: RawFd,
        dir: Direction,
        spans: &[Span],
        (tuning, idle_timeout): (&UringTuning, Option<Duration>),
        at_least: Option<u64>,
        base: u64,
        used: &mut u64,
    ) -> Result<u64> {
        let spans: Vec<Span> = spans.iter().copied().filter(|s| s.len > 0).collect();
        let mut starts = Vec::with_capacity(spans.len());
        let mut ends = Vec::with_capacity(spans.len());
        let mut len = 0u64;
        for s in &spans {
            starts.push(len);
            len += s.len as u64;
            ends.push(len);
        }
        let mut plan = Planner::with_pieces(dir, ends, tuning.segment_bytes);
        // WRITE_FIXED on a socket goes through `sock_write_iter`, which has no MSG_NOSIGNAL: a
        // closed peer would raise SIGPIPE in this thread and kill a host process that has
        // not ignored it (C and Python hosts; Rust binaries ignore it). Block it meanwhile.
        let _sigpipe = (dir == Direction::Send && tuning.send_op == SendOp::WriteFixed)
            .then(SigpipeBlocked::new);
        let mut flight = Flight {
            ring: &mut self.ring,
            outstanding: 0,
            notifs: Vec::new(),
            base,
            stats: &mut self.stats,
        };
        let mut last_progress = Instant::now();
        let op_name = match dir {
            Direction::Send => "send",
            Direction::Recv => "recv",
        };
        let fail = |e: PlanError| -> Error {
            let expected = len;
            match e {
                PlanError::Eof { transferred } => {
                    crate::sock::eof(&borrowed(fd), transferred, expected)
                }
                PlanError::WriteZero { transferred } => Error::Io {
                    op: op_name,
                    transferred,
                    expected,
                    source: std::io::ErrorKind::WriteZero.into(),
                },
                PlanError::Os { errno, transferred } => Error::Io {
                    op: op_name,
                    transferred,
                    expected,
                    source: std::io::Error::from_raw_os_error(errno),
                },
                PlanError::ChainOrder { offset, short_at } => {
                    Error::ChainOrder { offset, short_at }
                }
            }
        };

        let (max_sqes, recv_flags) = match at_least {
            Some(_) => (1, 0),
            None => (
                tuning.chain_sqes.clamp(1, MAX_CHAIN_SQES) as usize,
                libc::MSG_WAITALL,
            ),
        };
        while let Some(chain) = plan.next_chain(max_sqes) {
            let n = chain.sqes.len();
            let mut entries = Vec::with_capacity(n + 1);
            if chain.poll_first {
                let events = match dir {
                    Direction::Send => libc::POLLOUT,
                    Direction::Recv => libc::POLLIN,
                } as u32;
                entries.push(
                    opcode::PollAdd::new(types::Fd(fd), events)
                        .build()
                        .flags(squeue::Flags::IO_LINK)
                        .user_data(POLL_TAG),
                );
            }
            for (i, s) in chain.sqes.iter().enumerate() {
                let span = spans[s.slot as usize];
                let p = span
                    .ptr
                    .wrapping_add((s.offset - starts[s.slot as usize]) as usize);
                let send_op = match tuning.send_op {
                    SendOp::SendZc if self.zc_refused.is_some() => SendOp::Send,
                    op => op,
                };
                let e = match (dir, span.buf_index) {
                    (Direction::Send, idx) => match (send_op, idx) {
                        (SendOp::SendZc, idx) => opcode::SendZc::new(types::Fd(fd), p, s.len)
                            .buf_index(idx)
                            .flags(send_flags(s.offset + u64::from(s.len) < len))
                            .build(),
                        (SendOp::WriteFixed, Some(idx)) => {
                            opcode::WriteFixed::new(types::Fd(fd), p, s.len, idx)
                                .offset(u64::MAX)
                                .build()
                        }
                        _ => opcode::Send::new(types::Fd(fd), p, s.len)
                            .flags(send_flags(s.offset + u64::from(s.len) < len))
                            .build(),
                    },
                    (Direction::Recv, Some(idx)) if tuning.recv_op == RecvOp::ReadFixed => {
                        opcode::ReadFixed::new(types::Fd(fd), p, s.len, idx)
                            .offset(u64::MAX)
                            .build()
                    }
                    (Direction::Recv, _) => opcode::Recv::new(types::Fd(fd), p, s.len)
                        .flags(recv_flags)
                        .build(),
                };
                let e = e.user_data(base + s.id);
                *used = s.id + 1;
                entries.push(if i + 1 < n {
                    e.flags(squeue::Flags::IO_LINK)
                } else {
                    e
                });
            }
            // SAFETY: each entry points inside one span (the planner never crosses a piece
            // boundary nor plans past the end), which the caller keeps valid and unaliased for
            // this whole call; a fixed entry uses the `buf_index` of the registered slot that
            // contains its span (this function's contract). Every path out of this function
            // reaps every CQE first (`drain`/`cancel_and_drain`, or `Flight`'s Drop on unwind).
            unsafe { flight.push_all(&entries) };
            let canceled = match flight.wait_chain(&mut plan, idle_timeout, &mut last_progress) {
                Ok(c) => c,
                Err(source) => {
                    let transferred = plan.confirmed();
                    flight.cancel_and_drain(&mut plan, fd, idle_timeout);
                    return Err(Error::Io {
                        op: "io_uring_enter",
                        transferred,
                        expected: len,
                        source,
                    });
                }
            };
            match plan.settle() {
                Ok(0) if canceled => {
                    // A probe found no byte moved since the chain was (re)submitted.
                    if let Some(t) = idle_timeout.filter(|&t| last_progress.elapsed() >= t) {
                        let (transferred, timeout_ms) = (plan.confirmed(), t.as_millis() as u64);
                        // Notifications still due: give late ones one probe interval, then
                        // make the kernel let go (the peer stopped reading).
                        let grace = Instant::now() + crate::blocking::probe_interval(t);
                        if !flight.wait_notifs(Some(grace)) && flight.holds_pages() {
                            flight.abort(fd);
                            return Err(Error::TimedOutAborted {
                                transferred,
                                expected: len,
                                timeout_ms,
                            });
                        }
                        flight.drain(); // only cancel CQEs can be left: they come at once
                        return Err(Error::TimedOut {
                            transferred,
                            expected: len,
                            timeout_ms,
                        });
                    }
                }
                Ok(0) => {}
                Ok(_) => last_progress = Instant::now(),
                // SEND_ZC refused: C08 (zero-copy sends pin the pages they send, which
                // RLIMIT_MEMLOCK without CAP_IPC_LOCK refuses: ENOMEM, or ENOBUFS from the
                // socket's optmem), or a socket family without zero-copy (EOPNOTSUPP, e.g.
                // AF_UNIX). Nothing of the failed SQE was sent (the planner confirmed what was):
                // fall back to copying SENDs for the rest of this ring's life, and say so once.
                Err(PlanError::Os { errno, .. })
                    if matches!(errno, libc::ENOMEM | libc::ENOBUFS | libc::EOPNOTSUPP)
                        && tuning.send_op == SendOp::SendZc
                        && self.zc_refused.is_none() =>
                {
                    let why = std::io::Error::from_raw_os_error(errno);
                    let hint = match crate::sock::explain_pinning(&why) {
                        _ if errno == libc::EOPNOTSUPP => {
                            "this socket type has no zero-copy send (e.g. AF_UNIX)".to_owned()
                        }
                        Some(pinning) => pinning,
                        None => "the socket's optmem (net.core.optmem_max) is exhausted".to_owned(),
                    };
                    self.zc_refused = Some(format!(
                        "SEND_ZC refused ({why}): {hint}; falling back to copying IORING_OP_SEND"
                    ));
                }
                Err(e) => {
                    flight.settle_notifs(fd, idle_timeout);
                    return Err(fail(e));
                }
            }
            if at_least.is_some_and(|min| plan.confirmed() >= min) {
                break;
            }
        }
        // Every byte is queued; SEND_ZC's pages may still be held until the peer takes them.
        if flight.settle_notifs(fd, idle_timeout) {
            return Err(Error::TimedOutAborted {
                transferred: plan.confirmed(),
                expected: len,
                timeout_ms: idle_timeout.unwrap_or_default().as_millis() as u64,
            });
        }
        Ok(plan.confirmed())
    }
}

impl Ring {
    /// One-time notices about paths taken instead of the requested one (registration refused,
    /// `SEND_ZC` refused), oldest first.
    pub(crate) fn notices(&self) -> impl Iterator<Item = &str> {
        self.register_refused
            .iter()
            .chain(self.zc_refused.iter())
            .map(String::as_str)
    }

    /// One-shot transfer of `[ptr, ptr + len)`; registers it for this call when `register` is
    /// true (and the kernel agrees), then unregisters.
    ///
    /// # Safety
    ///
    /// The memory must be valid for reads (send) or writes (recv) and not otherwise accessed
    /// for the duration of the call.
    unsafe fn one_shot(
        &mut self,
        fd: BorrowedFd<'_>,
        dir: Direction,
        (ptr, len): (*mut u8, usize),
        register: bool,
        settings: (&UringTuning, Option<Duration>),
    ) -> Result<()> {
        let reg = if register {
            // SAFETY: the memory outlives this call (contract); we unregister below, after
            // `transfer` has drained every SQE.
            let r = unsafe { self.register(ptr, len) };
            self.note_refusal(r)
        } else {
            None
        };
        // SAFETY: forwarded from this function's contract; `reg` registers exactly this memory.
        let r = unsafe { self.transfer_all(fd, dir, &spans_of(ptr, len, reg.as_ref()), settings) };
        self.unregister();
        r
    }

    /// One-shot send of `bytes`; see [`Ring::one_shot`].
    pub(crate) fn send(
        &mut self,
        fd: BorrowedFd<'_>,
        bytes: &[u8],
        register: bool,
        tuning: &UringTuning,
        idle_timeout: Option<Duration>,
    ) -> Result<()> {
        let span = (bytes.as_ptr() as *mut u8, bytes.len());
        // SAFETY: `bytes` is borrowed for the whole call and a send only reads it.
        unsafe { self.one_shot(fd, Direction::Send, span, register, (tuning, idle_timeout)) }
    }

    /// One-shot receive into `bytes`; see [`Ring::one_shot`].
    pub(crate) fn recv(
        &mut self,
        fd: BorrowedFd<'_>,
        bytes: &mut [u8],
        register: bool,
        tuning: &UringTuning,
        idle_timeout: Option<Duration>,
    ) -> Result<()> {
        let span = (bytes.as_mut_ptr(), bytes.len());
        // SAFETY: `bytes` is exclusively borrowed for the whole call.
        unsafe { self.one_shot(fd, Direction::Recv, span, register, (tuning, idle_timeout)) }
    }

    /// Sends `parts` back to back as one stream (one link chain when they fit in one), e.g.
    /// header, payload and trailer of a framed message. Nothing is registered.
    pub(crate) fn send_parts(
        &mut self,
        fd: BorrowedFd<'_>,
        parts: &[&[u8]],
        tuning: &UringTuning,
        idle_timeout: Option<Duration>,
    ) -> Result<()> {
        let spans: Vec<Span> = parts
            .iter()
            .map(|p| Span::plain(p.as_ptr(), p.len()))
            .collect();
        // SAFETY: every part is borrowed for the whole call and a send only reads it.
        unsafe { self.transfer_all(fd, Direction::Send, &spans, (tuning, idle_timeout)) }
    }

    /// Fills `parts` back to back from one stream; see [`Ring::send_parts`].
    pub(crate) fn recv_parts(
        &mut self,
        fd: BorrowedFd<'_>,
        parts: &mut [&mut [u8]],
        tuning: &UringTuning,
        idle_timeout: Option<Duration>,
    ) -> Result<()> {
        let spans: Vec<Span> = parts
            .iter_mut()
            .map(|p| Span::plain(p.as_mut_ptr(), p.len()))
            .collect();
        // SAFETY: every part is exclusively borrowed for the whole call.
        unsafe { self.transfer_all(fd, Direction::Recv, &spans, (tuning, idle_timeout)) }
    }

    /// [`Ring::transfer`] of every byte of `spans`.
    ///
    /// # Safety
    ///
    /// As [`Ring::transfer`].
    unsafe fn transfer_all(
        &mut self,
        fd: BorrowedFd<'_>,
        dir: Direction,
        spans: &[Span],
        settings: (&UringTuning, Option<Duration>),
    ) -> Result<()> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.transfer(fd.as_raw_fd(), dir, spans, settings, None) }.map(drop)
    }

    /// Receives into `buf` until at least `min` bytes arrived (`min <= buf.len()`), taking
    /// whatever else the socket already holds, up to `buf.len()`. Returns the bytes received.
    /// Used to read many small framed messages per completion.
    pub(crate) fn recv_at_least(
        &mut self,
        fd: BorrowedFd<'_>,
        buf: &mut [u8],
        min: usize,
        tuning: &UringTuning,
        idle_timeout: Option<Duration>,
    ) -> Result<usize> {
        let spans = [Span::plain(buf.as_mut_ptr(), buf.len())];
        // SAFETY: `buf` is exclusively borrowed for the whole call.
        unsafe {
            self.transfer(
                fd.as_raw_fd(),
                Direction::Recv,
                &spans,
                (tuning, idle_timeout),
                Some(min.min(buf.len()) as u64),
            )
        }
        .map(|n| n as usize)
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.unregister();
    }
}
