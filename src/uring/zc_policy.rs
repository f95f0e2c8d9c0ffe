//! Adaptive zero-copy send ([`SendOp::Auto`](super::SendOp::Auto)): when `SEND_ZC` is worth
//! it, decided from what the kernel reports — pure bookkeeping, no kernel, no `unsafe`.
//!
//! A `SEND_ZC` issued with `IORING_SEND_ZC_REPORT_USAGE` gets a notification CQE whose `res`
//! has `IORING_NOTIF_USAGE_ZC_COPIED` (bit 31) set when the kernel copied the pages after all
//! (or used none of them). Loopback and veth always copy (the skb is delivered locally and its
//! user frags are copied), and so does a NIC without scatter-gather; then `SEND_ZC` only adds
//! page pinning and a notification CQE per request — measured here at about half the plain
//! `SEND` throughput (see the table in `src/uring/mod.rs`). On a NIC that really sends from the
//! user pages it saves the copy.
//!
//! # The rule
//!
//! Only TCP sockets (IPv4/IPv6) with a send buffer of at least [`ZC_MIN_SNDBUF`] take part,
//! and only when no idle timeout is set (see [`SendOp::Auto`](super::SendOp::Auto)). A local
//! peer ([`is_local_peer`]: loopback, or the socket's own address) is decided
//! [`ZcDecision::Switch`] without a trial ([`ZcPolicy::decided`]): the kernel always copies
//! there, and the trial's `SEND_ZC`s held the connection's receive window back for hundreds
//! of MB (measured: `src/uring/mod.rs`, "Adaptive zero-copy").
//! Per destination (the peer's IP address: whether the kernel copies depends on the route and
//! its device, not on the port), a [`ZcPolicy`] starts in a **trial**: at most
//! [`ZC_TRIAL_SENDS`] (K = 4) `SEND_ZC` requests of at most [`ZC_TRIAL_BYTES`] (256 KiB) each
//! are in flight or counted; every other segment meanwhile goes out as a plain `SEND`, so the
//! stream never waits for a notification and the cost of trying is bounded by K × 256 KiB of
//! zero-copy sends (1 MiB). Only a transfer of at least one segment runs trial requests
//! (a smaller one would be nothing but trial). When K notifications of trial sends that moved bytes are in:
//!
//! * more than half reported a copy (3 or 4 of 4) → [`ZcDecision::Switch`]: plain `SEND` for
//!   the rest of the transfer and every later one to that destination;
//! * otherwise (0, 1 or 2 of 4 copied: a tie goes to zero-copy, whose gain on a real NIC is
//!   larger than its loss on a copying path) → [`ZcDecision::Keep`]: `SEND_ZC` (with usage
//!   reports, still counted) for every segment of at least [`ZC_MIN_BYTES`] from then on.
//!
//! A trial send whose notification will not vote (it was canceled before it moved a byte, or
//! came back without a notification) gives its place back, so a canceled chain cannot leave
//! the trial undecided for good. The decision is final for the engine's life (a new engine
//! tries again).

use std::net::IpAddr;

/// Trial `SEND_ZC` requests per destination (K): the decision falls after K notifications.
pub const ZC_TRIAL_SENDS: u32 = 4;
/// Largest trial `SEND_ZC` request, in bytes (the planner caps trial segments to it).
pub const ZC_TRIAL_BYTES: u32 = 256 << 10;
/// Smallest request that goes out as `SEND_ZC` under [`SendOp::Auto`](super::SendOp::Auto),
/// in bytes: below it (a framed header, a trailer, a tail) pinning and the notification cost
/// more than the copy they save.
pub const ZC_MIN_BYTES: u32 = 64 << 10;

/// Smallest send buffer (`SO_SNDBUF` as the kernel reports it, bytes) of a socket that tries
/// zero-copy at all. With a send buffer of a few KiB (`setsockopt(SO_SNDBUF, 4096)`), trial
/// `SEND_ZC`s over loopback collapsed the receiver's window and the connection crawled at
/// ~9 KB/s for minutes (measured here with `tests/framed.rs` `mixed_batch_tiny_socket_buffers`);
/// a connection whose buffer is that small gains nothing from zero-copy anyway. Fresh TCP
/// sockets report 16 KiB before connecting and far more after (4 MiB on loopback here).
pub const ZC_MIN_SNDBUF: usize = 64 << 10;

/// `IORING_NOTIF_USAGE_ZC_COPIED`: bit 31 of a notification CQE's `res` (Linux 6.2).
pub(crate) const NOTIF_USAGE_ZC_COPIED: u32 = 1 << 31;
/// `IORING_SEND_ZC_REPORT_USAGE`: `SEND_ZC` flag (in `ioprio`) asking for that bit (Linux 6.2;
/// 6.0 and 6.1 refuse it with `EINVAL`). io-uring 0.7 keeps its `sys` constants private.
pub(crate) const SEND_ZC_REPORT_USAGE: u16 = 1 << 3;

/// What the trial decided for a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZcDecision {
    /// The kernel really sends from the user pages: keep `SEND_ZC`.
    Keep,
    /// The kernel copies anyway: plain `SEND` from now on.
    Switch,
}

/// The decision state of one destination. See the [module docs](self).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZcPolicy {
    /// Trial sends issued whose vote is not in yet.
    in_flight: u32,
    /// Votes in: notifications of trial sends that moved bytes.
    votes: u32,
    /// Of those, the ones that reported a copy.
    copied: u32,
    decision: Option<ZcDecision>,
}

/// True when a connection to `peer` from the local address `local` is delivered on this host
/// (the peer is a loopback address, or the socket's own address): the kernel copies every
/// zero-copy send such a connection makes ("all packets generated with MSG_ZEROCOPY that are
/// looped to a local socket will incur a deferred copy", the kernel's
/// `Documentation/networking/msg_zerocopy.rst`, section *Loopback*), so its destination is
/// decided [`ZcDecision::Switch`] without a trial. Addresses are compared as given (the
/// caller canonicalizes IPv4-mapped IPv6 addresses).
pub fn is_local_peer(peer: IpAddr, local: IpAddr) -> bool {
    peer.is_loopback() || peer == local
}

/// How the next send request of a destination goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZcChoice {
    /// A trial `SEND_ZC` (at most [`ZC_TRIAL_BYTES`]); call [`ZcPolicy::begin_trial`] when
    /// it is issued.
    Trial,
    /// `SEND_ZC` (decided: keep).
    ZeroCopy,
    /// Plain `SEND`.
    Copy,
}

impl ZcPolicy {
    /// A destination decided from the start, without a trial (a local peer:
    /// [`is_local_peer`]); every later notification is ignored, as after a trial.
    pub fn decided(decision: ZcDecision) -> ZcPolicy {
        ZcPolicy {
            decision: Some(decision),
            ..ZcPolicy::default()
        }
    }

    /// The decision, once the trial is over.
    pub fn decision(&self) -> Option<ZcDecision> {
        self.decision
    }

    /// How many more trial sends may be issued now (0 once decided).
    pub fn trial_slots(&self) -> u32 {
        match self.decision {
            Some(_) => 0,
            None => ZC_TRIAL_SENDS.saturating_sub(self.in_flight + self.votes),
        }
    }

    /// How a request of `len` bytes goes out now: a trial while slots are free, `SEND_ZC`
    /// once kept, else a plain `SEND` (decided to switch, or waiting for the trial's
    /// notifications, or shorter than [`ZC_MIN_BYTES`]).
    pub fn choose(&self, len: u32) -> ZcChoice {
        if len < ZC_MIN_BYTES {
            return ZcChoice::Copy;
        }
        match self.decision {
            Some(ZcDecision::Keep) => ZcChoice::ZeroCopy,
            Some(ZcDecision::Switch) => ZcChoice::Copy,
            None if self.trial_slots() > 0 => ZcChoice::Trial,
            None => ZcChoice::Copy,
        }
    }

    /// A trial `SEND_ZC` was issued.
    pub fn begin_trial(&mut self) {
        self.in_flight += 1;
    }

    /// A trial send will not vote (canceled, failed, moved nothing): its slot is free again.
    pub fn void_trial(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// The notification of a trial send that moved bytes: `res` is the notification CQE's
    /// result. Returns the decision when this vote made it.
    pub fn vote(&mut self, res: i32) -> Option<ZcDecision> {
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.decision.is_some() {
            return None;
        }
        self.votes += 1;
        self.copied += u32::from(notif_copied(res));
        if self.votes < ZC_TRIAL_SENDS {
            return None;
        }
        let d = if self.copied * 2 > self.votes {
            ZcDecision::Switch
        } else {
            ZcDecision::Keep
        };
        self.decision = Some(d);
        self.decision
    }
}

/// True when a `SEND_ZC` notification CQE's `res` reports that the kernel copied the data
/// (`IORING_NOTIF_USAGE_ZC_COPIED`).
pub fn notif_copied(res: i32) -> bool {
    (res as u32) & NOTIF_USAGE_ZC_COPIED != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const COPIED: i32 = NOTIF_USAGE_ZC_COPIED as i32;
    const ZEROCOPY: i32 = 0;

    /// Runs a trial where every notification comes back in issue order with the given
    /// results; returns the policy and the number of trial sends issued.
    fn trial(results: &[i32]) -> (ZcPolicy, u32) {
        let mut p = ZcPolicy::default();
        let mut issued = 0;
        for &res in results {
            assert_eq!(p.choose(4 << 20), ZcChoice::Trial);
            p.begin_trial();
            issued += 1;
            p.vote(res);
        }
        (p, issued)
    }

    #[test]
    fn all_copied_switches_after_k() {
        let mut p = ZcPolicy::default();
        for k in 0..ZC_TRIAL_SENDS {
            assert_eq!(p.decision(), None, "undecided before vote {k}");
            assert_eq!(p.choose(ZC_TRIAL_BYTES), ZcChoice::Trial);
            p.begin_trial();
            let d = p.vote(COPIED);
            assert_eq!(d, (k + 1 == ZC_TRIAL_SENDS).then_some(ZcDecision::Switch));
        }
        assert_eq!(p.decision(), Some(ZcDecision::Switch));
        assert_eq!(p.choose(4 << 20), ZcChoice::Copy);
        assert_eq!(p.trial_slots(), 0);
    }

    #[test]
    fn all_zero_copy_keeps() {
        let (p, issued) = trial(&[ZEROCOPY; ZC_TRIAL_SENDS as usize]);
        assert_eq!(issued, 4);
        assert_eq!(p.decision(), Some(ZcDecision::Keep));
        assert_eq!(p.choose(4 << 20), ZcChoice::ZeroCopy);
        assert_eq!(p.choose(ZC_MIN_BYTES), ZcChoice::ZeroCopy);
        // Small requests are copied whatever the decision.
        assert_eq!(p.choose(ZC_MIN_BYTES - 1), ZcChoice::Copy);
    }

    #[test]
    fn mixed_follows_the_majority_and_a_tie_keeps() {
        for (results, want) in [
            ([COPIED, COPIED, COPIED, ZEROCOPY], ZcDecision::Switch),
            ([ZEROCOPY, COPIED, COPIED, COPIED], ZcDecision::Switch),
            ([COPIED, ZEROCOPY, COPIED, ZEROCOPY], ZcDecision::Keep),
            ([ZEROCOPY, ZEROCOPY, COPIED, COPIED], ZcDecision::Keep),
            ([COPIED, ZEROCOPY, ZEROCOPY, ZEROCOPY], ZcDecision::Keep),
        ] {
            let (p, _) = trial(&results);
            assert_eq!(p.decision(), Some(want), "{results:x?}");
        }
    }

    #[test]
    fn trial_never_has_more_than_k_sends_and_nothing_waits() {
        let mut p = ZcPolicy::default();
        // One chain of 8 segments: the first K are trials, the rest plain SEND.
        let mut chain = Vec::new();
        for _ in 0..8 {
            let c = p.choose(4 << 20);
            if c == ZcChoice::Trial {
                p.begin_trial();
            }
            chain.push(c);
        }
        assert_eq!(chain[..4], [ZcChoice::Trial; 4]);
        assert_eq!(chain[4..], [ZcChoice::Copy; 4]);
        // Three votes in: still undecided, no slot (the fourth is in flight).
        for _ in 0..3 {
            assert_eq!(p.vote(COPIED), None);
        }
        assert_eq!((p.decision(), p.trial_slots()), (None, 0));
        assert_eq!(p.choose(4 << 20), ZcChoice::Copy);
        assert_eq!(p.vote(COPIED), Some(ZcDecision::Switch));
    }

    #[test]
    fn a_voided_trial_gives_its_slot_back() {
        let mut p = ZcPolicy::default();
        for _ in 0..4 {
            p.begin_trial();
        }
        assert_eq!(p.trial_slots(), 0);
        p.void_trial();
        assert_eq!(p.trial_slots(), 1);
        for _ in 0..3 {
            p.vote(ZEROCOPY);
        }
        assert_eq!(p.decision(), None);
        p.begin_trial();
        assert_eq!(p.vote(ZEROCOPY), Some(ZcDecision::Keep));
    }

    #[test]
    fn the_decision_is_final() {
        let (mut p, _) = trial(&[COPIED; 4]);
        // Late notifications of sends issued after the decision change nothing.
        for _ in 0..10 {
            assert_eq!(p.vote(ZEROCOPY), None);
        }
        assert_eq!(p.decision(), Some(ZcDecision::Switch));
    }

    #[test]
    fn a_local_destination_is_decided_without_a_trial() {
        let mut p = ZcPolicy::decided(ZcDecision::Switch);
        assert_eq!(p.decision(), Some(ZcDecision::Switch));
        assert_eq!(p.trial_slots(), 0);
        for len in [
            ZC_MIN_BYTES - 1,
            ZC_MIN_BYTES,
            ZC_TRIAL_BYTES,
            4 << 20,
            u32::MAX,
        ] {
            assert_eq!(p.choose(len), ZcChoice::Copy, "{len}");
        }
        // A notification (none is due, but a late one of an earlier set) changes nothing,
        // whatever it reports.
        for res in [ZEROCOPY, ZEROCOPY, ZEROCOPY, ZEROCOPY, COPIED] {
            assert_eq!(p.vote(res), None);
        }
        p.void_trial();
        assert_eq!(
            (p.decision(), p.trial_slots(), p.choose(4 << 20)),
            (Some(ZcDecision::Switch), 0, ZcChoice::Copy)
        );
        // Decided Keep (not used by the engine today) sends every large request zero-copy.
        let k = ZcPolicy::decided(ZcDecision::Keep);
        assert_eq!(
            (
                k.trial_slots(),
                k.choose(ZC_MIN_BYTES),
                k.choose(ZC_MIN_BYTES - 1)
            ),
            (0, ZcChoice::ZeroCopy, ZcChoice::Copy)
        );
    }

    #[test]
    fn local_peers_are_loopback_or_the_socket_own_address() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let eth = ip("192.0.2.7");
        for (peer, local, want) in [
            ("127.0.0.1", "127.0.0.1", true),
            ("127.1.2.3", "127.0.0.1", true),
            ("::1", "::1", true),
            ("192.0.2.7", "192.0.2.7", true),
            ("2001:db8::5", "2001:db8::5", true),
            ("192.0.2.8", "192.0.2.7", false),
            ("10.0.0.2", "10.0.0.1", false),
            ("2001:db8::6", "2001:db8::5", false),
            // Not canonicalized: the engine canonicalizes before asking.
            ("::ffff:192.0.2.8", "192.0.2.7", false),
        ] {
            assert_eq!(
                is_local_peer(ip(peer), ip(local)),
                want,
                "{peer} from {local}"
            );
        }
        let mapped = ip("::ffff:127.0.0.1").to_canonical();
        assert!(is_local_peer(mapped, eth));
    }

    #[test]
    fn usage_bit_is_bit_31() {
        assert!(notif_copied(i32::MIN));
        assert!(notif_copied(i32::MIN | 1));
        assert!(!notif_copied(0));
        assert!(!notif_copied(1));
        assert!(!notif_copied(i32::MAX));
    }
}
