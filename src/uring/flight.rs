//! What the kernel owns: the SQEs of the current chain, their result CQEs, cancellation and
//! draining — the room where the invariant "no return while an SQE points into the caller's
//! memory" is kept.

use std::os::fd::{BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use crate::planner::Planner;
use crate::stats::EngineStats;

use super::Ring;

/// `user_data` of the linked `POLL_ADD` put in front of a chain after `-EAGAIN`.
pub(super) const POLL_TAG: u64 = u64::MAX;
/// `user_data` of `ASYNC_CANCEL` requests.
pub(super) const CANCEL_TAG: u64 = u64::MAX - 1;

/// `fd` as a borrowed descriptor, for the safe socket helpers.
pub(super) fn borrowed(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: only used within a transfer on `fd`, which the caller's `BorrowedFd` keeps open
    // for the whole call; the returned value never outlives that call.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// The SQEs the kernel owns. Dropping it (also on unwind) cancels and drains them.
pub(super) struct Flight<'r> {
    pub(super) ring: &'r mut IoUring,
    /// Result CQEs still to come: one per pushed SQE (ops, poll, cancels).
    pub(super) outstanding: usize,
    /// `user_data` of `SEND_ZC` requests whose result CQE carried `IORING_CQE_F_MORE`: their
    /// notification CQE (the kernel has released the pages) is still to come.
    ///
    /// Measured on Linux 6.18: a linked `SEND_ZC` canceled with `-ECANCELED` comes back
    /// *without* `F_MORE` and still posts a notification later. Such a request never touched
    /// the caller's memory, so it is not waited for, and its late notification — like any
    /// notification not listed here — is ignored; ids are unique per ring, so it cannot be
    /// mistaken for one that is waited for.
    pub(super) notifs: Vec<u64>,
    /// `user_data` of planner id 0.
    pub(super) base: u64,
    /// The ring's cumulative counters ([`crate::Engine::stats`]): bumped for every SQE pushed
    /// and every CQE reaped through this flight.
    pub(super) stats: &'r mut EngineStats,
}

impl Flight<'_> {
    /// Pushes `entries` and submits them.
    ///
    /// # Safety
    ///
    /// Every buffer the entries point to must stay valid until their CQEs are reaped.
    pub(super) unsafe fn push_all(&mut self, entries: &[squeue::Entry]) {
        let mut sq = self.ring.submission();
        for e in entries {
            // SAFETY: forwarded from this function's contract. The SQ has SQ_ENTRIES (64) slots,
            // a chain is at most MAX_CHAIN_SQES + 1 (33), and the SQ is empty between chains.
            let pushed = unsafe { sq.push(e) };
            assert!(pushed.is_ok(), "SQ has room for one chain");
        }
        drop(sq);
        self.outstanding += entries.len();
        self.stats.sqes += entries.len() as u64;
    }

    /// True while the kernel may still own an SQE or pages of this transfer.
    pub(super) fn busy(&self) -> bool {
        self.outstanding > 0 || !self.notifs.is_empty()
    }

    /// Reaps ready CQEs, feeding results to the planner. Returns the number of CQEs seen and
    /// whether a send/recv result moved bytes (progress; notifications are not counted).
    pub(super) fn reap(&mut self, mut plan: Option<&mut Planner>) -> (usize, bool) {
        let (mut seen, mut moved) = (0, false);
        for cqe in self.ring.completion() {
            seen += 1;
            self.stats.cqes += 1;
            let (ud, flags) = (cqe.user_data(), cqe.flags());
            if cqueue::notif(flags) {
                self.stats.notifs += 1;
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
    pub(super) fn wait_until(&mut self, deadline: Option<Instant>) -> std::io::Result<bool> {
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
    pub(super) fn wait_chain(
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
    pub(super) fn cancel(&mut self, plan: &Planner) {
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
        self.stats.sqes += pushed as u64;
    }

    /// Cancels what is in flight and reaps every result CQE; then settles the notifications
    /// ([`Flight::settle_notifs`]).
    pub(super) fn cancel_and_drain(
        &mut self,
        plan: &mut Planner,
        fd: RawFd,
        idle: Option<Duration>,
    ) {
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

    /// Waits for every outstanding CQE (notifications included); no cancel.
    pub(super) fn drain(&mut self) {
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
                self.stats.sqes += 1;
            }
            self.drain();
        }
    }
}

impl Ring {
    /// The ring's cumulative SQE/CQE counters ([`crate::Engine::stats`]).
    pub(crate) fn stats(&self) -> EngineStats {
        self.stats
    }
}
