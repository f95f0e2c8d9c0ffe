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

mod probe;

pub use probe::{Probe, probe};

use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use crate::error::{Error, Result};
use crate::planner::{Direction, MAX_SLOT_BYTES, PlanError, Planner};

/// SQ size: one chain of at most [`MAX_CHAIN_SQES`] plus its `POLL_ADD`, or the cancels of one
/// chain. Small on purpose: before Linux 5.12 ring memory counts against `RLIMIT_MEMLOCK`
/// (and without `CAP_IPC_LOCK` a 64 KiB limit refused a 512/4096-entry ring with ENOMEM here
/// even on 6.18); 64 SQEs + 256 CQEs is 8 KiB.
pub(crate) const SQ_ENTRIES: u32 = 64;
/// CQ size: a chain's CQEs plus the `SEND_ZC` notifications still to come.
pub(crate) const CQ_ENTRIES: u32 = 256;
/// Longest link chain ([`UringTuning::chain_sqes`] is clamped to it).
pub const MAX_CHAIN_SQES: u32 = 32;

/// Builds a ring of the size every engine uses (the probe uses it too, so "available" means
/// "an engine's ring can be set up").
pub(crate) fn build_ring() -> std::io::Result<IoUring> {
    IoUring::builder()
        .setup_cqsize(CQ_ENTRIES)
        .build(SQ_ENTRIES)
}

/// `msg_flags` of a `SEND`/`SEND_ZC`: `MSG_WAITALL` (retry a partial send inside the
/// request), `MSG_NOSIGNAL` (`EPIPE`, not `SIGPIPE`), and `MSG_MORE` on every SQE that does
/// not end the transfer, so the stream is corked between them (a framed message's header,
/// payload and trailer leave as full segments; the last SQE pushes: case C17).
fn send_flags(more_follows: bool) -> i32 {
    let more = if more_follows { libc::MSG_MORE } else { 0 };
    libc::MSG_WAITALL | libc::MSG_NOSIGNAL | more
}

/// Why a registration was refused, naming `RLIMIT_MEMLOCK` and its value for `ENOMEM`.
fn refusal(e: &Error) -> String {
    match e.raw_os_error().and(match e {
        Error::Setup { source, .. } => crate::sock::explain_pinning(source),
        _ => None,
    }) {
        Some(why) => format!("{e} ({why})"),
        None => e.to_string(),
    }
}

/// `fd` as a borrowed descriptor, for the safe socket helpers.
fn borrowed(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: only used within a transfer on `fd`, which the caller's `BorrowedFd` keeps open
    // for the whole call; the returned value never outlives that call.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// `user_data` of the linked `POLL_ADD` put in front of a chain after `-EAGAIN`.
const POLL_TAG: u64 = u64::MAX;
/// `user_data` of `ASYNC_CANCEL` requests.
const CANCEL_TAG: u64 = u64::MAX - 1;

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

/// The registered-buffer table of one ring: the caller's array split into slots of ≤ 1 GiB.
#[derive(Debug)]
struct Slots {
    base: usize,
    len: usize,
    slot_bytes: u64,
}

impl Slots {
    /// The registered memory as spans, one per slot, each with its buffer index.
    fn spans(&self) -> Vec<Span> {
        let step = self.slot_bytes as usize;
        (0..self.len.div_ceil(step))
            .map(|i| Span {
                ptr: (self.base + i * step) as *mut u8,
                len: (self.len - i * step).min(step),
                buf_index: Some(i as u16),
            })
            .collect()
    }
}

/// A piece of the stream: `len` bytes at `ptr`, in registered buffer `buf_index` if any.
#[derive(Debug, Clone, Copy)]
struct Span {
    ptr: *mut u8,
    len: usize,
    buf_index: Option<u16>,
}

impl Span {
    fn plain(ptr: *const u8, len: usize) -> Span {
        Span {
            ptr: ptr as *mut u8,
            len,
            buf_index: None,
        }
    }
}

/// The spans of `[ptr, ptr+len)`: the registration's slots when `slots` registers exactly
/// that memory, else one unregistered span.
fn spans_of(ptr: *const u8, len: usize, slots: Option<&Slots>) -> Vec<Span> {
    match slots {
        Some(s) if s.base == ptr as usize && s.len == len => s.spans(),
        _ => vec![Span::plain(ptr, len)],
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
        })
    }

    /// Registers `[ptr, ptr + len)` as fixed buffers, one iovec per ≤ 1 GiB slot.
    ///
    /// # Safety
    ///
    /// The memory must stay valid (not freed, not unmapped) until [`Ring::unregister`] is
    /// called; the caller (a guard that borrows the array) guarantees it.
    unsafe fn register(&mut self, ptr: *const u8, len: usize) -> Result<Slots> {
        if self.registered {
            self.unregister();
        }
        let slot_bytes = MAX_SLOT_BYTES;
        let iovecs: Vec<libc::iovec> = (0..len.div_ceil(slot_bytes as usize))
            .map(|i| {
                let off = i * slot_bytes as usize;
                libc::iovec {
                    iov_base: ptr.wrapping_add(off) as *mut libc::c_void,
                    iov_len: (len - off).min(slot_bytes as usize),
                }
            })
            .collect();
        if !iovecs.is_empty() {
            // SAFETY: every iovec lies inside the caller's array, which (by this function's
            // contract) outlives the registration; the table is dropped in `unregister`.
            unsafe { self.ring.submitter().register_buffers(&iovecs) }.map_err(|source| {
                Error::Setup {
                    what: "io_uring_register(IORING_REGISTER_BUFFERS)",
                    source,
                }
            })?;
            self.registered = true;
        }
        Ok(Slots {
            base: ptr as usize,
            len,
            slot_bytes,
        })
    }

    /// Drops the buffer table. Only called when no SQE is in flight (every transfer drains
    /// before returning), so the kernel holds no reference into it.
    fn unregister(&mut self) {
        if std::mem::take(&mut self.registered) {
            // An error here means nothing was registered; nothing to undo.
            let _ = self.ring.submitter().unregister_buffers();
        }
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
    /// Keeps the first registration refusal as a notice; returns the registration if any.
    fn note_refusal(&mut self, r: Result<Slots>) -> Option<Slots> {
        match r {
            Ok(s) => Some(s),
            Err(e) => {
                self.register_refused.get_or_insert_with(|| {
                    format!(
                        "{}: transfers run unregistered (plain SEND/RECV)",
                        refusal(&e)
                    )
                });
                None
            }
        }
    }

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

    /// Registers `bytes` (read-only use: sends) for the life of the returned guard.
    pub(crate) fn register_send<'a>(&'a mut self, bytes: &'a [u8]) -> Registration<'a> {
        // SAFETY: the guard borrows `bytes` for 'a and unregisters in Drop.
        let slots = unsafe { self.register(bytes.as_ptr(), bytes.len()) };
        Registration::new(self, bytes.as_ptr() as *mut u8, bytes.len(), false, slots)
    }

    /// Registers `bytes` (sends and receives) for the life of the returned guard.
    pub(crate) fn register_recv<'a>(&'a mut self, bytes: &'a mut [u8]) -> Registration<'a> {
        // SAFETY: the guard borrows `bytes` exclusively for 'a and unregisters in Drop.
        let slots = unsafe { self.register(bytes.as_ptr(), bytes.len()) };
        Registration::new(self, bytes.as_mut_ptr(), bytes.len(), true, slots)
    }
}

/// An array registered as fixed buffers on a ring, borrowed for `'a`: the borrow checker
/// proves the array outlives the registration, and Drop unregisters.
pub(crate) struct Registration<'a> {
    ring: &'a mut Ring,
    ptr: *mut u8,
    len: usize,
    writable: bool,
    slots: Option<Slots>,
    reason: Option<String>,
    _borrow: PhantomData<&'a mut [u8]>,
}

impl<'a> Registration<'a> {
    fn new(
        ring: &'a mut Ring,
        ptr: *mut u8,
        len: usize,
        writable: bool,
        slots: Result<Slots>,
    ) -> Self {
        let (slots, reason) = match slots {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(refusal(&e))),
        };
        Registration {
            ring,
            ptr,
            len,
            writable,
            slots,
            reason,
            _borrow: PhantomData,
        }
    }

    /// True when the kernel accepted the registration (and the array is not empty).
    pub(crate) fn is_registered(&self) -> bool {
        self.slots.is_some() && self.len > 0
    }

    /// Why the registration was refused.
    pub(crate) fn fallback_reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// The registered bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        // SAFETY: `[ptr, ptr+len)` is the slice borrowed for 'a (from a `&[u8]` or
        // `&mut [u8]`), and no SQE is in flight outside `transfer`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// Moves the whole array in direction `dir` on `fd`.
    pub(crate) fn transfer(
        &mut self,
        fd: BorrowedFd<'_>,
        dir: Direction,
        tuning: &UringTuning,
        idle_timeout: Option<Duration>,
    ) -> Result<()> {
        assert!(
            self.writable || dir == Direction::Send,
            "receive into a send-only registration"
        );
        // SAFETY: the memory is borrowed for 'a (exclusively when `writable`, which a receive
        // requires); `slots` describes the registration of exactly this memory on this ring.
        unsafe {
            self.ring.transfer(
                fd.as_raw_fd(),
                dir,
                &spans_of(self.ptr, self.len, self.slots.as_ref()),
                (tuning, idle_timeout),
                None,
            )
        }
        .map(drop)
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.ring.unregister();
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// SIGPIPE blocked for the calling thread while it lives; a SIGPIPE raised meanwhile (by a
/// WRITE_FIXED to a closed socket: the error itself arrives as `-EPIPE` in the CQE) is
/// consumed before the old mask is restored. A SIGPIPE sent to this thread for another reason
/// in that window is swallowed too.
struct SigpipeBlocked {
    old: libc::sigset_t,
    was_blocked: bool,
}

impl SigpipeBlocked {
    fn pipe_set() -> libc::sigset_t {
        // SAFETY: sigemptyset/sigaddset initialise the set they are given; a zeroed sigset_t
        // is valid storage for them.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            set
        }
    }

    fn new() -> SigpipeBlocked {
        let set = SigpipeBlocked::pipe_set();
        // SAFETY: both pointers are valid sigset_t; pthread_sigmask only touches this
        // thread's mask. `old` is fully written by the call (it cannot fail with valid args).
        unsafe {
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            let was_blocked = libc::sigismember(&old, libc::SIGPIPE) == 1;
            SigpipeBlocked { old, was_blocked }
        }
    }
}

impl Drop for SigpipeBlocked {
    fn drop(&mut self) {
        if self.was_blocked {
            return; // the caller keeps it blocked; leave any pending one to the caller
        }
        let set = SigpipeBlocked::pipe_set();
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid set and timespec; sigtimedwait with a zero timeout only dequeues a
        // pending SIGPIPE of this thread (or returns EAGAIN); then the saved mask is restored.
        unsafe {
            while libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) == libc::SIGPIPE {}
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut());
        }
    }
}

/// The SQEs the kernel owns. Dropping it (also on unwind) cancels and drains them.
struct Flight<'r> {
    ring: &'r mut IoUring,
    /// Result CQEs still to come: one per pushed SQE (ops, poll, cancels).
    outstanding: usize,
    /// `user_data` of `SEND_ZC` requests whose result CQE carried `IORING_CQE_F_MORE`: their
    /// notification CQE (the kernel has released the pages) is still to come.
    ///
    /// Measured on Linux 6.18: a linked `SEND_ZC` canceled with `-ECANCELED` comes back
    /// *without* `F_MORE` and still posts a notification later. Such a request never touched
    /// the caller's memory, so it is not waited for, and its late notification — like any
    /// notification not listed here — is ignored; ids are unique per ring, so it cannot be
    /// mistaken for one that is waited for.
    notifs: Vec<u64>,
    /// `user_data` of planner id 0.
    base: u64,
}

impl Flight<'_> {
    /// Pushes `entries` and submits them.
    ///
    /// # Safety
    ///
    /// Every buffer the entries point to must stay valid until their CQEs are reaped.
    unsafe fn push_all(&mut self, entries: &[squeue::Entry]) {
        let mut sq = self.ring.submission();
        for e in entries {
            // SAFETY: forwarded from this function's contract. The SQ has SQ_ENTRIES (64) slots,
            // a chain is at most MAX_CHAIN_SQES + 1 (33), and the SQ is empty between chains.
            let pushed = unsafe { sq.push(e) };
            assert!(pushed.is_ok(), "SQ has room for one chain");
        }
        drop(sq);
        self.outstanding += entries.len();
    }

    /// True while the kernel may still own an SQE or pages of this transfer.
    fn busy(&self) -> bool {
        self.outstanding > 0 || !self.notifs.is_empty()
    }

    /// Reaps ready CQEs, feeding results to the planner. Returns the number of CQEs seen and
    /// whether a send/recv result moved bytes (progress; notifications are not counted).
    fn reap(&mut self, mut plan: Option<&mut Planner>) -> (usize, bool) {
        let (mut seen, mut moved) = (0, false);
        for cqe in self.ring.completion() {
            seen += 1;
            let (ud, flags) = (cqe.user_data(), cqe.flags());
            if cqueue::notif(flags) {
                if let Some(i) = self.notifs.iter().position(|&u| u == ud) {
                    self.notifs.swap_remove(i);
                }
                continue;
            }
            self.outstanding -= 1;
            if cqueue::more(flags) {
                self.notifs.push(ud);
            }
            if ud == POLL_TAG || ud == CANCEL_TAG || ud < self.base {
                continue;
            }
            moved |= cqe.result() > 0;
            if let Some(plan) = plan.as_deref_mut() {
                let known = plan.complete(ud - self.base, cqe.result());
                debug_assert!(known, "CQE for unknown user_data {ud}");
            }
        }
        (seen, moved)
    }

    /// Submits pending SQEs and waits for at least one CQE, until `deadline` if given.
    /// `Ok(false)` when the deadline passed first; `EINTR`/`EBUSY` count as a wake-up.
    fn wait_until(&mut self, deadline: Option<Instant>) -> std::io::Result<bool> {
        let r = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(false);
                }
                let ts = types::Timespec::from(left);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submit_and_wait(1),
        };
        match r {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EBUSY)) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Submits and waits until every SQE of the current chain has its result CQE.
    ///
    /// With an idle timeout `t`, a chain that has produced no CQE for
    /// [`probe_interval(t)`](crate::blocking::probe_interval) is canceled: `MSG_WAITALL`
    /// requests complete only when full, so the bytes they moved meanwhile are invisible until
    /// a cancel makes them report their partial count. The caller re-plans from the first
    /// unconfirmed byte, so a probe costs one cancel and one resubmission and only happens on
    /// a transfer that is slow or stalled; it bounds how stale `last_progress` can be. Returns
    /// `Ok(true)` when the chain was canceled (by a probe).
    fn wait_chain(
        &mut self,
        plan: &mut Planner,
        idle_timeout: Option<Duration>,
        last_progress: &mut Instant,
    ) -> std::result::Result<bool, std::io::Error> {
        let mut canceled = false;
        let mut quiet_since = Instant::now();
        loop {
            if self.reap(Some(plan)).1 {
                *last_progress = Instant::now();
                quiet_since = *last_progress;
            }
            if plan.pending() == 0 {
                return Ok(canceled);
            }
            let deadline = match idle_timeout {
                // Canceled SQEs complete at once (they are parked on a poll or a wait queue).
                Some(_) if canceled => None,
                Some(t) => {
                    Some((quiet_since + crate::blocking::probe_interval(t)).min(*last_progress + t))
                }
                None => None,
            };
            if !self.wait_until(deadline)? {
                self.cancel(plan);
                canceled = true;
            }
        }
    }

    /// Asks the kernel to cancel every SQE of the current chain.
    fn cancel(&mut self, plan: &Planner) {
        let ids: Vec<u64> = plan.pending_ids().chain([POLL_TAG]).collect();
        let mut sq = self.ring.submission();
        let mut pushed = 0;
        for id in ids {
            let target = if id == POLL_TAG { id } else { self.base + id };
            let e = opcode::AsyncCancel::new(target)
                .build()
                .user_data(CANCEL_TAG);
            // SAFETY: a cancel request points to no memory.
            if unsafe { sq.push(&e) }.is_ok() {
                pushed += 1;
            }
        }
        drop(sq);
        self.outstanding += pushed;
    }

    /// Cancels what is in flight and reaps every result CQE; then settles the notifications
    /// ([`Flight::settle_notifs`]).
    fn cancel_and_drain(&mut self, plan: &mut Planner, fd: RawFd, idle: Option<Duration>) {
        if plan.pending() > 0 {
            self.cancel(plan);
        }
        while self.outstanding > 0 {
            if self.wait_until(None).is_err() {
                // The kernel may still write into (or read from) the caller's memory and we
                // cannot learn when it stops: returning would break the invariant.
                std::process::abort();
            }
            self.reap(Some(plan));
        }
        self.settle_notifs(fd, idle);
    }

    /// Waits for outstanding `SEND_ZC` notifications until `deadline` (`None`: for as long
    /// as it takes). True once there are none left (every result CQE must be in already).
    fn wait_notifs(&mut self, deadline: Option<Instant>) -> bool {
        while self.busy() {
            match self.wait_until(deadline) {
                Ok(true) => {}
                Ok(false) => return false,
                Err(_) => std::process::abort(), // see cancel_and_drain
            }
            self.reap(None);
        }
        true
    }

    /// Waits until the kernel has released every page a `SEND_ZC` of this transfer sent
    /// from. Each notification counts as progress; with an idle timeout, when none comes for
    /// `idle` the peer has stopped taking data and the pages sit in the socket's queue for
    /// good, so the connection is aborted ([`Flight::abort`]) and the notifications then
    /// come. Returns true when it had to abort.
    fn settle_notifs(&mut self, fd: RawFd, idle: Option<Duration>) -> bool {
        let Some(t) = idle else {
            self.wait_notifs(None);
            return false;
        };
        loop {
            let before = self.notifs.len();
            if self.wait_notifs(Some(Instant::now() + t)) {
                return false;
            }
            if !self.holds_pages() {
                self.drain(); // only cancel CQEs are left: they come at once
                return false;
            }
            if self.notifs.len() == before {
                self.abort(fd);
                return true;
            }
        }
    }

    /// True while a `SEND_ZC` notification is due: the kernel may still read the caller's
    /// pages.
    fn holds_pages(&self) -> bool {
        !self.notifs.is_empty()
    }

    /// Aborts the connection on `fd` so that the kernel drops the data queued on it — and
    /// with it every reference to the caller's pages — then waits for every notification.
    ///
    /// `connect(fd, AF_UNSPEC)` dissolves a TCP association without closing the caller's
    /// descriptor (connect(2); the kernel runs `tcp_disconnect`, which sends RST and purges
    /// the write queue); `shutdown(SHUT_RDWR)` follows for other families.
    fn abort(&mut self, fd: RawFd) {
        // SAFETY: `addr` is a valid, fully initialised `sockaddr` of family AF_UNSPEC and
        // `len` is its size; connect only reads it. `fd` is the caller's open socket.
        unsafe {
            let mut addr: libc::sockaddr = std::mem::zeroed();
            addr.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
            let len = std::mem::size_of::<libc::sockaddr>() as libc::socklen_t;
            libc::connect(fd, &addr, len);
        }
        let _ = socket2::SockRef::from(&borrowed(fd)).shutdown(std::net::Shutdown::Both);
        self.wait_notifs(None);
    }

    /// Waits for every outstanding CQE (notifications included); no cancel.
    fn drain(&mut self) {
        if !self.wait_notifs(None) {
            unreachable!("waiting without a deadline");
        }
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        if self.busy() {
            // Only reached on unwind (every return path drains first). We cannot reach the
            // planner here, so cancel everything on the ring and wait.
            let e = opcode::AsyncCancel2::new(types::CancelBuilder::any())
                .build()
                .user_data(CANCEL_TAG);
            // SAFETY: a cancel request points to no memory.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                self.outstanding += 1;
            }
            self.drain();
        }
    }
}
