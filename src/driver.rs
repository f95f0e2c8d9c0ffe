//! The contract a backend honours, and the one place that picks the backend.
//!
//! A [`Transfer`] is plain data: a connected stream socket, a direction (implied by its
//! buffers: byte slices to send, or to fill), the byte spans it walks in stream order, and for
//! receives an optional `at_least` (done once that many bytes arrived, taking whatever else
//! the socket already holds). Its planner state and deadline belong to the backend that runs
//! it. A backend runs a **set** of transfers to completion and returns one result per
//! transfer, in order:
//!
//! * `Ok(n)`: the bytes moved — all of them, or (with `at_least`) at least that many.
//! * the transfer's own error, with the bytes confirmed in order before it
//!   ([`crate::Error::transferred`]): `UnexpectedEof`, `Io` (errno), `TimedOut` (no byte moved
//!   for the idle timeout `T`; fires between `T` and `T + T/10`), `TimedOutAborted`, ….
//! * [`crate::Error::Canceled`]: another transfer of the set failed first, so this one was
//!   stopped (a transfer that had already finished keeps its `Ok`).
//!
//! What every backend guarantees:
//!
//! 1. **Order.** The bytes of one transfer enter or leave its socket in span order, whatever
//!    the kernel does (short sends and receives, `EINTR`, `EAGAIN` on a non-blocking socket).
//!    At most one transfer per socket and direction in a set (two would interleave).
//! 2. **No return while the kernel holds the caller's memory** — on success, error, timeout
//!    or panic. The set's buffers are borrowed for the call; the call is the only owner.
//! 3. **Bounded waits** with an idle timeout: every wait wakes up at least every `T/10`
//!    (≤ 100 ms) to look at the clock and at the set's cancel state.
//!
//! # Progress hooks
//!
//! A transfer may carry a [`Progress`] hook: work on its bytes done by the backend while the
//! transfer runs (the framed payload's CRC-32, [`crate::progress::PayloadCrc`]). The backend
//! calls it with the transfer's stream bytes **in order, contiguous, each byte once**; when
//! the transfer succeeds the calls have covered exactly its bytes (with `at_least`: the bytes
//! received), before the backend returns. On error the calls may stop anywhere. When:
//!
//! * **Receive**: only bytes confirmed received — the result of their request reaped, so the
//!   kernel no longer writes there. Blocking: each chunk right after `recv` returns it. uring:
//!   after each CQE, the completed front of the chain (a segment, ≤ 4 MiB by default), while
//!   later requests of the chain are still in flight and the bytes are still in cache.
//! * **Send**: bytes just before, or while, the kernel reads them (a send's bytes are only
//!   read, so the order of hook and kernel does not matter for the result, only for the
//!   cache). Blocking: each send is capped at [`HOOK_CHUNK`] bytes and the hook runs on them
//!   right before the `send`. uring: ahead of the chain's completed front by at most
//!   [`SEND_LEAD`] bytes.
//! * uring, both directions: the work is done in slices of at most [`HOOK_SLICE`] bytes, and
//!   after each slice the ring is entered without waiting (`io_uring_enter` with
//!   `GETEVENTS`, `min_complete` 0): with `IORING_SETUP_DEFER_TASKRUN` the kernel's copies
//!   run only when the issuer enters, so a long slice would stall the transfer. Only when no
//!   hook has work left does the loop block in its wait.
//!
//! The backends: [`crate::blocking`] runs a set of one on the calling thread and larger sets
//! on scoped threads, one per transfer; the uring backend runs every transfer of the set on
//! the engine's one ring, all at once (see `src/uring/mod.rs`).

use std::os::fd::BorrowedFd;
use std::time::Duration;

pub(crate) use crate::progress::Progress;

/// uring: most bytes a progress hook is given between two entries into the kernel (see the
/// module docs). 512 KiB: about 50–100 µs of CRC-32, half the 1 MiB L2 of this project's
/// machine, well inside the ~1 ms a 4 MiB segment takes at 3–4 GB/s.
pub(crate) const HOOK_SLICE: u64 = 512 << 10;

/// uring: how far a send's hook may run ahead of the bytes the kernel has confirmed sent (the
/// completed front of the chain, known per segment): two default segments (8 MiB), well
/// inside the 32 MiB L3 of this project's machine, so the kernel's copy finds the bytes the
/// hook just read still in cache.
pub(crate) const SEND_LEAD: u64 = 8 << 20;

/// Blocking backend: most bytes one `send` moves when the transfer has a hook, which runs on
/// them right before the `send` (1 MiB: the L2 of this project's machine).
pub(crate) const HOOK_CHUNK: usize = 1 << 20;

/// The buffers of one transfer, in stream order: their direction is the transfer's.
#[derive(Debug)]
pub(crate) enum Bufs<'a> {
    /// Bytes to send.
    Send(Vec<&'a [u8]>),
    /// Bytes to fill from the socket.
    Recv(Vec<&'a mut [u8]>),
}

impl Bufs<'_> {
    /// Bytes in all buffers.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Bufs::Send(p) => p.iter().map(|b| b.len() as u64).sum(),
            Bufs::Recv(p) => p.iter().map(|b| b.len() as u64).sum(),
        }
    }

    /// The direction.
    pub(crate) fn dir(&self) -> crate::planner::Direction {
        match self {
            Bufs::Send(_) => crate::planner::Direction::Send,
            Bufs::Recv(_) => crate::planner::Direction::Recv,
        }
    }
}

/// One transfer of a set (see the module docs).
#[derive(Debug)]
pub(crate) struct Transfer<'a> {
    /// The connected stream socket.
    pub(crate) fd: BorrowedFd<'a>,
    /// What to move, in stream order.
    pub(crate) bufs: Bufs<'a>,
    /// Receives only: done once this many bytes arrived.
    pub(crate) at_least: Option<u64>,
    /// Work on the transfer's bytes while it runs (see the module docs, "Progress hooks").
    pub(crate) progress: Option<&'a mut dyn Progress>,
    /// Receives into memory never touched ([`crate::Prefault::Ahead`]): the uring backend
    /// faults it in ahead of the receive point while its requests are in flight; the blocking
    /// backend ignores it.
    pub(crate) prefault_ahead: bool,
}

impl<'a> Transfer<'a> {
    /// Sends `parts` back to back.
    pub(crate) fn send(fd: BorrowedFd<'a>, parts: Vec<&'a [u8]>) -> Self {
        Transfer {
            fd,
            bufs: Bufs::Send(parts),
            at_least: None,
            progress: None,
            prefault_ahead: false,
        }
    }

    /// Fills `parts` back to back.
    pub(crate) fn recv(fd: BorrowedFd<'a>, parts: Vec<&'a mut [u8]>) -> Self {
        Transfer {
            fd,
            bufs: Bufs::Recv(parts),
            at_least: None,
            progress: None,
            prefault_ahead: false,
        }
    }

    /// This transfer, calling `hook` with its bytes as they move.
    pub(crate) fn with_progress(self, hook: &'a mut dyn Progress) -> Self {
        Transfer {
            progress: Some(hook),
            ..self
        }
    }
}

/// The longest a running transfer goes without polling [`Options::interrupt`](crate::Options::interrupt): 100 ms.
pub const INTERRUPT_POLL: Duration = Duration::from_millis(100);

/// A caller's interrupt check ([`Options::interrupt`](crate::Options::interrupt)), e.g. "did the user press Ctrl-C?".
///
/// The function is called from the thread running the transfer (and, for a set on the
/// blocking backend, from each of its threads) at every wake-up of the wait loop — after
/// every completion batch or `send`/`recv` return, and at least every [`INTERRUPT_POLL`] —
/// so it must be cheap (an atomic load). Once it has returned `true` it should keep doing
/// so until the call returns. Two `Interrupt`s are equal when they share the same function.
#[derive(Clone)]
pub struct Interrupt(std::sync::Arc<dyn Fn() -> bool + Send + Sync>);

impl Interrupt {
    /// An interrupt check calling `f`.
    pub fn new(f: impl Fn() -> bool + Send + Sync + 'static) -> Interrupt {
        Interrupt(std::sync::Arc::new(f))
    }

    /// True when the caller asks the transfer to stop.
    pub(crate) fn fired(&self) -> bool {
        (self.0)()
    }
}

impl std::fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Interrupt(..)")
    }
}

impl PartialEq for Interrupt {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Interrupt {}
