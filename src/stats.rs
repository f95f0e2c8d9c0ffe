//! What an [`Engine`](crate::Engine) has asked of the kernel: SQEs submitted and CQEs reaped on its ring.
//!
//! The counters are cumulative over the engine's life and are bumped where the uring backend
//! pushes and reaps (`src/uring/flight.rs`), so they count exactly what went through the ring
//! — nothing is estimated. The blocking backend has no ring and counts nothing; on the uring
//! backend every transfer, whatever its size, goes through the ring.

/// SQEs and CQEs an [`Engine`](crate::Engine) has used so far ([`Engine::stats`](crate::Engine::stats)); all zero on the blocking
/// backend.
///
/// For a transfer that has returned, each SQE has produced exactly one result CQE, so the
/// difference of two snapshots taken around completed transfers satisfies
/// `cqes == sqes + notifs`.
///
/// `#[non_exhaustive]`: counters may be added in a minor release. To build one (say, the
/// counts a test expects), start from `EngineStats::default()` (all zero) and set fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct EngineStats {
    /// SQEs pushed to the ring: the transfer ops (`SEND`, `SEND_ZC`, `WRITE_FIXED`, `RECV`,
    /// `READ_FIXED`), the `POLL_ADD` put in front of a chain after `-EAGAIN`, and the
    /// `ASYNC_CANCEL` requests of idle-timeout probes, errors and unwinding.
    pub sqes: u64,
    /// CQEs reaped from the ring: one result CQE per SQE, plus the `SEND_ZC` notification
    /// CQEs (counted in `notifs` too).
    pub cqes: u64,
    /// `SEND_ZC` notification CQEs (`IORING_CQE_F_NOTIF`: the kernel released the pages of
    /// one zero-copy send), a subset of `cqes`.
    pub notifs: u64,
    /// `SEND_ZC` requests submitted: every send of [`SendOp::SendZc`](crate::SendOp::SendZc),
    /// and the trial and kept zero-copy sends of [`SendOp::Auto`](crate::SendOp::Auto).
    pub zc_attempted: u64,
    /// Notifications of [`SendOp::Auto`](crate::SendOp::Auto) zero-copy sends that reported
    /// `IORING_NOTIF_USAGE_ZC_COPIED`: the kernel copied the bytes after all (always so on
    /// loopback and veth).
    pub zc_copied: u64,
    /// Notifications of [`SendOp::Auto`](crate::SendOp::Auto) zero-copy sends that reported
    /// a real zero-copy: the bytes left from the caller's pages.
    pub zc_kept: u64,
    /// Destinations (peer IPs) that [`SendOp::Auto`](crate::SendOp::Auto) switched to plain
    /// `SEND`: after its trial found the kernel copying, or at once, without a trial, for a
    /// local peer (loopback or the socket's own address; see `src/uring/zc_policy.rs`).
    pub zc_switched: u64,
    /// SQEs of transfer chains (ops and their linked `POLL_ADD`) that addressed their socket
    /// through the ring's file table ([`UringTuning::fixed_files`](crate::UringTuning::fixed_files))
    /// instead of by fd; a subset of `sqes`.
    pub fixed_file_sqes: u64,
    /// `io_uring_enter` calls made while the kernel flagged CQEs waiting in its overflow list
    /// (`IORING_SQ_CQ_OVERFLOW`: more completions than the CQ's 256 entries were due at once,
    /// e.g. a set of more than 128 transfers); each such call flushes them into the CQ
    /// (`GETEVENTS`). No CQE is lost on that path (`IORING_FEAT_NODROP`, Linux 5.5): this
    /// counts how often it was taken, not a loss.
    pub cq_overflow_flushes: u64,
}

impl EngineStats {
    /// `self - earlier`, field by field: what was used between two snapshots of one engine
    /// (`earlier` taken first; a field where it is larger, e.g. from another engine, gives 0).
    pub fn since(&self, earlier: &EngineStats) -> EngineStats {
        EngineStats {
            sqes: self.sqes.saturating_sub(earlier.sqes),
            cqes: self.cqes.saturating_sub(earlier.cqes),
            notifs: self.notifs.saturating_sub(earlier.notifs),
            zc_attempted: self.zc_attempted.saturating_sub(earlier.zc_attempted),
            zc_copied: self.zc_copied.saturating_sub(earlier.zc_copied),
            zc_kept: self.zc_kept.saturating_sub(earlier.zc_kept),
            zc_switched: self.zc_switched.saturating_sub(earlier.zc_switched),
            fixed_file_sqes: self.fixed_file_sqes.saturating_sub(earlier.fixed_file_sqes),
            cq_overflow_flushes: self
                .cq_overflow_flushes
                .saturating_sub(earlier.cq_overflow_flushes),
        }
    }
}
