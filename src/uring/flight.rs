//! What the kernel owns: the SQEs of every transfer of a set, their result CQEs, cancellation
//! and draining — the room where the invariant "no return while an SQE points into the
//! caller's memory" is kept.
//!
//! A set of [`Job`]s runs on one ring: each job (one socket, one direction, its spans) has its
//! own [planner](crate::planner) and at most one link chain in flight — the rule that keeps a
//! stream in order after a short send — while the chains of all jobs are in flight together.
//! CQEs are routed by `user_data`: `epoch (12 bits) | job (12 bits) | SQE id (40 bits)`. The
//! epoch changes with every set, so a late notification of an earlier set (a canceled
//! `SEND_ZC` posts one without having announced it) is recognised and ignored.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::{BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types};

use super::registry::Span;
use super::setup::RingIo;
use super::zc_policy::{ZcDecision, ZcPolicy, notif_copied};
use crate::driver::{Progress, SEND_LEAD};
use crate::error::{Error, Result};
use crate::planner::{Direction, Planner};

const ID_BITS: u32 = 40;
const JOB_BITS: u32 = 12;
/// Most transfers one set can hold.
pub(crate) const MAX_JOBS: usize = 1 << JOB_BITS;
const ID_MASK: u64 = (1 << ID_BITS) - 1;
/// SQE id of a job's linked `POLL_ADD` (put in front of a chain after `-EAGAIN`).
pub(super) const POLL_ID: u64 = ID_MASK;
/// SQE id of a job's `ASYNC_CANCEL` requests.
const CANCEL_ID: u64 = ID_MASK - 1;
/// `user_data` of the catch-all cancel sent on unwind.
const ANY_CANCEL_UD: u64 = u64::MAX;

/// `fd` as a borrowed descriptor, for the safe socket helpers.
pub(super) fn borrowed(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: only used within a transfer on `fd`, which the caller's `BorrowedFd` keeps open
    // for the whole call; the returned value never outlives that call.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// One transfer of a set: a socket, a direction, the spans it walks in stream order, its
/// planner and its clock.
pub(super) struct Job {
    pub(super) fd: RawFd,
    pub(super) dir: Direction,
    /// Non-empty spans, in stream order.
    pub(super) spans: Vec<Span>,
    /// Stream offset of each span's first byte.
    pub(super) starts: Vec<u64>,
    /// Bytes in all spans.
    pub(super) len: u64,
    /// Receives only: done once this many bytes arrived (one `RECV` without `MSG_WAITALL`
    /// at a time, so the socket's backlog comes in the same completion).
    pub(super) at_least: Option<u64>,
    pub(super) plan: Planner,
    /// A chain of this job is in flight (pushed, not yet settled).
    pub(super) chain_open: bool,
    /// The open chain was canceled (a probe, or the set stopping).
    pub(super) canceled: bool,
    /// When the open chain was last canceled: a chain still open [`RECANCEL`] later is
    /// canceled again (see there).
    pub(super) canceled_at: Instant,
    /// CQEs still due: one per pushed SQE (ops, poll, cancels).
    pub(super) outstanding: usize,
    /// `user_data` of `SEND_ZC` requests whose result CQE carried `IORING_CQE_F_MORE`: their
    /// notification CQE (the kernel has released the pages) is still to come.
    ///
    /// Measured on Linux 6.18: a linked `SEND_ZC` canceled before it started comes back with
    /// `-ECANCELED` *without* `F_MORE` and still posts a notification later. Such a request
    /// never touched the caller's memory, so it is not waited for, and its late notification
    /// — like any notification not listed here — is ignored. One canceled while it waited
    /// for socket space comes back with `-ECANCELED` *and* `F_MORE`: waited for.
    /// Each entry also says whether that send moved bytes (only then is its notification
    /// progress).
    pub(super) notifs: Vec<(u64, bool)>,
    /// [`super::SendOp::Auto`]: the destination whose zero-copy policy this send follows
    /// (`None`: plain `SEND` throughout).
    pub(super) zc_dest: Option<IpAddr>,
    /// `user_data` of this job's `SEND_ZC` requests issued with usage reports, and whether
    /// each is a trial of the destination's policy: its notification (if it moved bytes) is
    /// counted and, for a trial, votes.
    pub(super) zc_reports: Vec<(u64, bool)>,
    /// Last CQE of this job's chain (probe clock).
    pub(super) quiet_since: Instant,
    /// Last byte moved, or last notification (idle clock).
    pub(super) last_progress: Instant,
    /// Another job of the set failed: this one is to be settled as [`Error::Canceled`].
    pub(super) stop: bool,
    /// The caller's interrupt check fired: a stopped job settles as [`Error::Interrupted`].
    pub(super) interrupted: bool,
    /// The job's outcome, once known (it may still wait for notifications).
    pub(super) result: Option<Result<u64>>,
    /// While the job has its result but the kernel still holds pages: when to give up on
    /// the peer and abort the connection.
    pub(super) pages_deadline: Option<Instant>,
    /// The connection was aborted to make the kernel release the pages.
    pub(super) aborted: bool,
    /// Stream bytes handed to the job's progress hook so far ([`Flight::hook_work`]).
    pub(super) hooked: u64,
    /// [`crate::Prefault::Ahead`] (receives): fault the spans in ahead of the receive point
    /// while the job's requests are in flight ([`Flight::prefault_work`]); cleared when the
    /// kernel refuses `MADV_POPULATE_WRITE`.
    pub(super) prefault_ahead: bool,
    /// Stream offset up to which the spans have been populated.
    pub(super) prefaulted: u64,
}

impl Job {
    /// A job moving the bytes of `spans` in `dir` on `fd`, in segments of at most
    /// `segment_bytes`.
    pub(super) fn new(
        fd: RawFd,
        dir: Direction,
        spans: &[Span],
        segment_bytes: u32,
        at_least: Option<u64>,
    ) -> Job {
        let spans: Vec<Span> = spans.iter().copied().filter(|s| s.len > 0).collect();
        let (mut starts, mut ends, mut len) = (Vec::new(), Vec::new(), 0u64);
        for s in &spans {
            starts.push(len);
            len += s.len as u64;
            ends.push(len);
        }
        let now = Instant::now();
        Job {
            fd,
            dir,
            spans,
            starts,
            len,
            at_least: at_least.map(|m| m.min(len)),
            plan: Planner::with_pieces(dir, ends, segment_bytes),
            chain_open: false,
            canceled: false,
            canceled_at: now,
            outstanding: 0,
            notifs: Vec::new(),
            zc_dest: None,
            zc_reports: Vec::new(),
            quiet_since: now,
            last_progress: now,
            stop: false,
            interrupted: false,
            result: None,
            pages_deadline: None,
            aborted: false,
            hooked: 0,
            prefault_ahead: false,
            prefaulted: 0,
        }
    }

    /// True while the kernel may still own an SQE or pages of this job.
    pub(super) fn busy(&self) -> bool {
        self.outstanding > 0 || !self.notifs.is_empty()
    }

    /// True once the job has its result and the kernel holds nothing of it.
    pub(super) fn settled(&self) -> bool {
        self.result.is_some() && !self.busy()
    }

    /// What [`Error::Canceled`] (or [`Error::Interrupted`], when the caller's interrupt
    /// check stopped the set) says about this job now.
    pub(super) fn canceled_error(&self) -> Error {
        let (transferred, expected) = (self.plan.confirmed(), self.len);
        if self.interrupted {
            Error::Interrupted {
                transferred,
                expected,
            }
        } else {
            Error::Canceled {
                transferred,
                expected,
            }
        }
    }
}

/// The jobs of a set and the ring they run on. Dropping it (also on unwind) cancels and
/// drains whatever is still in flight.
pub(super) struct Flight<'r> {
    pub(super) ring: &'r mut RingIo,
    pub(super) epoch: u64,
    pub(super) jobs: Vec<Job>,
    /// The ring's cumulative counters ([`crate::Engine::stats`]): bumped for every SQE pushed
    /// and every CQE reaped.
    pub(super) stats: &'r mut crate::stats::EngineStats,
    /// The ring's zero-copy policies, by destination ([`super::zc_policy`]).
    pub(super) zc_dests: &'r mut HashMap<IpAddr, ZcPolicy>,
}

impl Flight<'_> {
    /// `user_data` of SQE `id` of job `job`.
    pub(super) fn ud(&self, job: usize, id: u64) -> u64 {
        (self.epoch << (ID_BITS + JOB_BITS)) | ((job as u64) << ID_BITS) | id
    }

    /// Pushes `entries` (one whole link chain, or cancels) for job `job`, submitting first
    /// when the SQ lacks room: a chain must not be split across two submissions (the kernel
    /// ends a link chain at the end of a submission).
    ///
    /// # Safety
    ///
    /// Every buffer the entries point to must stay valid until their CQEs are reaped.
    pub(super) unsafe fn push(&mut self, job: usize, entries: &[squeue::Entry]) {
        // The SQ is emptied by a submission (the kernel consumes every SQE at submit time;
        // those it cannot start yet it queues itself) — unless the kernel refuses it with
        // `EBUSY` while completions wait in its overflow list (io_uring_enter(2); C14 in
        // `../shared/cases`): then make room in the CQ by reaping, let the kernel flush its
        // overflow list (`GETEVENTS`), and submit again. Every turn reaps what the CQ holds,
        // so each frees CQ space for the overflow list to drain into.
        let mut turns = 0u32;
        while self.sq_room() < entries.len() {
            if turns > 0 {
                self.reap();
                let _ = self.ring.submit_and_flush();
            }
            if self.sq_room() < entries.len() {
                let _ = self.ring.submit();
            }
            turns += 1;
            assert!(turns < 1 << 16, "the kernel never took the SQ's entries");
        }
        let mut sq = self.ring.submission();
        for e in entries {
            // SAFETY: forwarded from this function's contract; the SQ has room for the whole
            // chain (checked above; a chain is at most MAX_CHAIN_SQES + 1 < SQ_ENTRIES).
            let pushed = unsafe { sq.push(e) };
            assert!(pushed.is_ok(), "SQ has room for one chain");
        }
        drop(sq);
        self.jobs[job].outstanding += entries.len();
        self.stats.sqes += entries.len() as u64;
    }

    /// Free SQ entries.
    fn sq_room(&mut self) -> usize {
        let sq = self.ring.submission();
        sq.capacity() - sq.len()
    }

    /// Reaps ready CQEs, routing each to its job: results to the planner (a positive one is
    /// progress), `F_MORE` announces a notification, a listed notification releases pages
    /// (progress too). CQEs of another epoch or the unwind cancel are ignored.
    pub(super) fn reap(&mut self) {
        let now = Instant::now();
        for cqe in self.ring.completion() {
            let (ud, flags, res) = (cqe.user_data(), cqe.flags(), cqe.result());
            self.stats.cqes += 1;
            self.stats.notifs += u64::from(cqueue::notif(flags));
            if ud == ANY_CANCEL_UD {
                continue;
            }
            let epoch = ud >> (ID_BITS + JOB_BITS);
            let job = ((ud >> ID_BITS) as usize) & (MAX_JOBS - 1);
            let id = ud & ID_MASK;
            if epoch != self.epoch || job >= self.jobs.len() {
                continue; // a late notification of an earlier set
            }
            let j = &mut self.jobs[job];
            if cqueue::notif(flags) {
                if let Some(i) = j.notifs.iter().position(|&(u, _)| u == ud) {
                    // The pages of a send that moved bytes are free: the peer took them.
                    if j.notifs.swap_remove(i).1 {
                        j.last_progress = now;
                    }
                }
                // A usage report of a send that moved bytes (only those stay listed).
                if let Some(i) = j.zc_reports.iter().position(|&(u, _)| u == ud) {
                    let (_, trial) = j.zc_reports.swap_remove(i);
                    if notif_copied(res) {
                        self.stats.zc_copied += 1;
                    } else {
                        self.stats.zc_kept += 1;
                    }
                    let policy = j.zc_dest.and_then(|ip| self.zc_dests.get_mut(&ip));
                    if let (true, Some(p)) = (trial, policy)
                        && p.vote(res) == Some(ZcDecision::Switch)
                    {
                        self.stats.zc_switched += 1;
                    }
                }
                continue;
            }
            j.outstanding -= 1;
            if cqueue::more(flags) {
                // A canceled SEND_ZC may announce a notification too (with `-ECANCELED`):
                // waited for, but its arrival is no progress.
                j.notifs.push((ud, res > 0));
            }
            if !(cqueue::more(flags) && res > 0)
                && let Some(i) = j.zc_reports.iter().position(|&(u, _)| u == ud)
            {
                // A reported SEND_ZC that moved nothing: its notification (if any) says
                // nothing about copying, and a trial gives its place back.
                let (_, trial) = j.zc_reports.swap_remove(i);
                let policy = j.zc_dest.and_then(|ip| self.zc_dests.get_mut(&ip));
                if let (true, Some(p)) = (trial, policy) {
                    p.void_trial();
                }
            }
            if id == POLL_ID || id == CANCEL_ID {
                continue;
            }
            if res > 0 {
                j.last_progress = now;
                j.quiet_since = now;
            }
            let known = j.plan.complete(id, res);
            debug_assert!(known, "CQE for unknown SQE id {id} of job {job}");
        }
    }

    /// Submits pending SQEs and waits for at least one CQE, until `deadline` if given.
    /// `Ok(false)` when the deadline passed first; `EINTR`/`EBUSY` count as a wake-up.
    pub(super) fn wait_until(&mut self, deadline: Option<Instant>) -> std::io::Result<bool> {
        let r = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    // Still submit what is queued and run the kernel's pending completion
                    // work (DEFER_TASKRUN), without waiting.
                    return self.ring.submit_and_flush().map(|_| false);
                }
                self.ring.submit_and_wait_timeout(1, left)
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

    /// The stream bytes job `i`'s progress hook may be given now (see [`crate::driver`],
    /// "Progress hooks"): a receive's completed front ([`crate::planner::Planner::completed_prefix`]);
    /// a send's, plus [`SEND_LEAD`] (all of it once the job succeeded). Nothing more once the
    /// job failed.
    fn hook_limit(&self, i: usize) -> u64 {
        let j = &self.jobs[i];
        let front = j.plan.completed_prefix();
        match (&j.result, j.dir) {
            (Some(Err(_)), _) => j.hooked,
            (_, Direction::Recv) => front,
            (Some(Ok(_)), Direction::Send) => j.len,
            (None, Direction::Send) => (front + SEND_LEAD).min(j.len),
        }
    }

    /// Hands each job's progress hook (`hooks[i]` is job `i`'s) the bytes it may be given now
    /// ([`Flight::hook_limit`]), at most `budget` bytes in all, in stream order; true when
    /// any hook was called.
    pub(super) fn hook_work(
        &mut self,
        hooks: &mut [Option<&mut dyn Progress>],
        mut budget: u64,
    ) -> bool {
        let mut worked = false;
        for (i, hook) in hooks.iter_mut().enumerate() {
            let Some(hook) = hook else { continue };
            let limit = self.hook_limit(i);
            let j = &mut self.jobs[i];
            while j.hooked < limit && budget > 0 {
                // The span holding stream byte `hooked`, and how much of it to hand over.
                let k = j.starts.partition_point(|&s| s <= j.hooked) - 1;
                let off = j.hooked - j.starts[k];
                let n = (j.spans[k].len as u64 - off)
                    .min(limit - j.hooked)
                    .min(budget);
                // SAFETY: `[off, off + n)` lies inside span `k` of job `i`, valid for reads
                // for the whole set (`Ring::run_set`'s contract). For a receive these bytes
                // are below the completed front: the CQEs of the requests that wrote them are
                // reaped and the planner never plans confirmed bytes again, so the kernel no
                // longer writes there while this shared slice lives (other requests of the
                // job write only past the front). A send's bytes are only ever read.
                let bytes = unsafe {
                    std::slice::from_raw_parts(j.spans[k].ptr.add(off as usize), n as usize)
                };
                hook.bytes(j.hooked, bytes);
                j.hooked += n;
                budget -= n;
                worked = true;
            }
        }
        worked
    }

    /// [`crate::Prefault::Ahead`]: for the first receive job in flight that asks for it and is
    /// less than [`PREFAULT_AHEAD`] populated past its completed front, populates the next
    /// [`PREFAULT_SLICE`] (`MADV_POPULATE_WRITE`, Linux 5.14) from the later of the front and
    /// where it stopped; true when it did. One slice per call: the caller enters the kernel
    /// between slices, so the receive's own copies keep running.
    pub(super) fn prefault_work(&mut self) -> bool {
        for j in &mut self.jobs {
            if !(j.prefault_ahead && j.result.is_none() && j.dir == Direction::Recv) {
                continue;
            }
            let front = j.plan.completed_prefix();
            let from = j.prefaulted.max(front);
            let to = (front + PREFAULT_AHEAD).min(j.len);
            if from >= to {
                continue;
            }
            let k = j.starts.partition_point(|&s| s <= from) - 1;
            let off = (from - j.starts[k]) as usize;
            let n = (j.spans[k].len - off).min(PREFAULT_SLICE as usize);
            // Page-aligned start (madvise needs it); the length may end anywhere.
            let addr = j.spans[k].ptr.wrapping_add(off) as usize;
            let page = addr & !(4095);
            // SAFETY: `[page, addr + n)` is the page-rounded part of span `k`, memory the
            // caller lends this set for writing (`Ring::run_set`'s contract);
            // MADV_POPULATE_WRITE only faults pages in (a present page is left as it is, its
            // bytes unchanged), so it races with nothing the kernel writes there, and it
            // creates no Rust reference to the memory.
            let rc = unsafe {
                libc::madvise(
                    page as *mut libc::c_void,
                    addr + n - page,
                    libc::MADV_POPULATE_WRITE,
                )
            };
            if rc != 0 {
                // EINVAL before Linux 5.14, or memory that cannot be populated: stop trying.
                j.prefault_ahead = false;
                continue;
            }
            j.prefaulted = from + n as u64;
            return true;
        }
        false
    }

    /// Asks the kernel to cancel every SQE of job `job`'s open chain.
    pub(super) fn cancel(&mut self, job: usize) {
        let j = &self.jobs[job];
        if !j.chain_open || j.canceled {
            return;
        }
        let ids: Vec<u64> = j.plan.pending_ids().chain([POLL_ID]).collect();
        let cancel_ud = self.ud(job, CANCEL_ID);
        let entries: Vec<squeue::Entry> = ids
            .into_iter()
            .map(|id| {
                opcode::AsyncCancel::new(self.ud(job, id))
                    .build()
                    .user_data(cancel_ud)
            })
            .collect();
        // SAFETY: a cancel request points to no memory.
        unsafe { self.push(job, &entries) };
        let j = &mut self.jobs[job];
        j.canceled = true;
        j.canceled_at = Instant::now();
    }

    /// Cancels job `job`'s open chain again when the last cancel is [`RECANCEL`] old and the
    /// chain is still open (see there); true when it did.
    pub(super) fn recancel_if_due(&mut self, job: usize, now: Instant) -> bool {
        let j = &mut self.jobs[job];
        if !(j.chain_open && j.canceled && now >= j.canceled_at + RECANCEL) {
            return false;
        }
        j.canceled = false;
        self.cancel(job);
        true
    }

    /// The caller's interrupt check fired: every job without a result stops (it settles as
    /// [`Error::Interrupted`] once its open chain's CQEs are in).
    pub(super) fn interrupt(&mut self) {
        for i in 0..self.jobs.len() {
            let j = &mut self.jobs[i];
            if j.result.is_none() {
                j.stop = true;
                j.interrupted = true;
                self.cancel(i);
            }
        }
    }

    /// Waits for every outstanding CQE and notification of every job, with no deadline.
    /// Aborts the process if the ring itself fails: returning would leave the kernel with
    /// memory it may still read or write.
    pub(super) fn drain(&mut self) {
        while self.jobs.iter().any(Job::busy) {
            match self.wait_until(Some(Instant::now() + RECANCEL)) {
                Ok(true) => {}
                // Nothing came within RECANCEL: a cancel may have missed (see there).
                Ok(false) => {
                    let now = Instant::now();
                    for i in 0..self.jobs.len() {
                        self.recancel_if_due(i, now);
                    }
                }
                Err(_) => std::process::abort(),
            }
            self.reap();
        }
    }

    /// The earliest time the set must wake up without a CQE: a probe or idle deadline of an
    /// open chain, a job's pages deadline, or the next poll of the caller's interrupt check
    /// (`poll_interrupt`: within [`crate::INTERRUPT_POLL`]). `None`: wait for a CQE, however
    /// long.
    pub(super) fn deadline(&self, idle: Option<Duration>, poll_interrupt: bool) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut earliest = |t: Instant| d = Some(d.map_or(t, |x| x.min(t)));
        if poll_interrupt {
            earliest(Instant::now() + crate::INTERRUPT_POLL);
        }
        for j in &self.jobs {
            if let (Some(t), true, false) = (idle, j.chain_open, j.canceled) {
                earliest(
                    (j.quiet_since + crate::blocking::probe_interval(t)).min(j.last_progress + t),
                );
            }
            if j.chain_open && j.canceled {
                earliest(j.canceled_at + RECANCEL);
            }
            if let (Some(p), false) = (j.pages_deadline, j.aborted) {
                earliest(p);
            }
        }
        d
    }
}

/// [`Flight::prefault_work`]: bytes populated per slice (one huge page's worth: 2 MiB).
pub(super) const PREFAULT_SLICE: u64 = 2 << 20;

/// [`Flight::prefault_work`]: how far past a receive's completed front the backend populates
/// (16 MiB: half of a default chain's 32 MiB in flight).
pub(super) const PREFAULT_AHEAD: u64 = 16 << 20;

/// How long a canceled chain may stay open before its cancel is sent again. An
/// `IORING_OP_ASYNC_CANCEL` can miss: it completes with `-EALREADY` when the request is
/// already executing (io_uring_prep_cancel(3): it "should normally" complete shortly — a
/// `MSG_WAITALL` receive caught in its retry after a partial read instead re-arms its poll and
/// waits for bytes that may never come) or `-ENOENT` in the window where it is between
/// states. Without this, a set whose probe cancel missed waited for a CQE with no deadline:
/// `tests/timeouts.rs` `item3_recv_stall_fires_on_time::uring` hung, rarely, on a loaded
/// machine. Canceling again is harmless (a request that is gone is simply not found).
pub(super) const RECANCEL: Duration = Duration::from_millis(100);

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        if self.jobs.iter().any(Job::busy) {
            // Only reached on unwind (every return path drains first). Cancel everything
            // on the ring and wait.
            let e = opcode::AsyncCancel2::new(types::CancelBuilder::any())
                .build()
                .user_data(ANY_CANCEL_UD);
            // SAFETY: a cancel request points to no memory.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                self.stats.sqes += 1;
            }
            self.drain();
        }
    }
}
