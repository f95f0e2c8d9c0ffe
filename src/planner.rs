//! The chain planner: plain data in, plain data out, no kernel.
//!
//! Given the transfer length, the registered-slot layout and a segment size, the planner yields
//! the SQEs of one **link chain** (`IOSQE_IO_LINK` on every SQE but the last) that walks through
//! the caller's array from the first byte not yet confirmed. Fed the CQEs of that chain, in any
//! mix of full, short, `-ECANCELED`, `-EINTR`, `-EAGAIN` and hard errors, it advances the
//! confirmed prefix and says what to do next. It never plans past `confirmed` while a chain is
//! in flight, so at most one chain per socket direction exists at any time.
//!
//! # The kernel contract it relies on
//!
//! * Every SQE it plans is issued with `MSG_WAITALL` (or is a fixed read/write, which breaks a
//!   link on any short result): a completion shorter than its SQE **fails the link**, and every
//!   later SQE of the chain completes with `-ECANCELED` without moving a byte
//!   (`io_uring_enter(2)`, "IOSQE_IO_LINK"; liburing `test/recv-msgall-stream.c`).
//! * A canceled or failed send/recv reports the bytes it already moved in `CQE.res`
//!   (kernel `io_uring/net.c`, `io_sendrecv_fail`), so progress is never lost by a cancel.
//!
//! If a kernel ever broke the first rule — a later SQE moves bytes after an earlier one came back
//! short — the stream is out of order and [`PlanError::ChainOrder`] is returned instead of
//! silently accepting reordered data.
//!
//! # Limits it enforces
//!
//! * No SQE is longer than [`MAX_IO_BYTES`] (`0x7ffff000`, the kernel's `MAX_RW_COUNT`: one
//!   `read`/`send` never moves more, see `read(2)` NOTES).
//! * No SQE crosses a registered slot boundary: a fixed-buffer SQE must lie inside one iovec
//!   of the buffer table, and one iovec is at most [`MAX_SLOT_BYTES`] (1 GiB, the kernel's
//!   `SZ_1G` check in `io_uring/rsrc.c`).

use std::collections::VecDeque;

/// The kernel's per-call byte cap, `MAX_RW_COUNT` = `INT_MAX & PAGE_MASK` = 0x7ffff000 bytes.
pub const MAX_IO_BYTES: u32 = 0x7fff_f000;

/// The largest registered buffer (one iovec of `IORING_REGISTER_BUFFERS`): 1 GiB = 2^30 bytes.
pub const MAX_SLOT_BYTES: u64 = 1 << 30;

/// Which way bytes move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the array into the socket.
    Send,
    /// From the socket into the array.
    Recv,
}

/// One SQE to push: move `len` bytes at byte `offset` of the array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqeDesc {
    /// Identifier to put in `user_data`; the matching CQE is fed back with [`Planner::complete`].
    pub id: u64,
    /// Byte offset into the array.
    pub offset: u64,
    /// Bytes to move, `1..=MAX_IO_BYTES`.
    pub len: u32,
    /// Registered slot (buffer index) that contains `[offset, offset + len)`.
    pub slot: u32,
}

/// One link chain to submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The previous chain saw `-EAGAIN` (a non-blocking socket with nothing to do): put a
    /// linked `POLL_ADD` in front so the retry waits for readiness instead of spinning.
    pub poll_first: bool,
    /// The SQEs, in stream order; all but the last carry `IOSQE_IO_LINK`.
    pub sqes: Vec<SqeDesc>,
}

/// Why a transfer cannot continue. Byte counts are bytes confirmed in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// A receive completed with 0 bytes: the peer closed its side.
    Eof {
        /// Bytes confirmed before the EOF.
        transferred: u64,
    },
    /// A send completed with 0 bytes for a non-empty SQE (the kernel accepted nothing).
    WriteZero {
        /// Bytes confirmed before.
        transferred: u64,
    },
    /// A completion failed with `-errno` (other than the retryable ones).
    Os {
        /// The positive errno.
        errno: i32,
        /// Bytes confirmed before the failure.
        transferred: u64,
    },
    /// An SQE moved bytes after an earlier SQE of the same chain came back short.
    ChainOrder {
        /// Offset of the offending SQE.
        offset: u64,
        /// Where the short completion stopped.
        short_at: u64,
    },
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    sqe: SqeDesc,
    res: Option<i32>,
}

/// The planner's state for one transfer. See the [module docs](self).
#[derive(Debug)]
pub struct Planner {
    dir: Direction,
    total: u64,
    segment: u32,
    /// End offset of each slot (piece), ascending; the last is `total`.
    ends: Vec<u64>,
    confirmed: u64,
    next_id: u64,
    poll_first: bool,
    chain: VecDeque<InFlight>,
    pending: usize,
}

impl Planner {
    /// A planner for `total` bytes, segments of at most `segment_bytes` (clamped to
    /// `1..=MAX_IO_BYTES`), and registered slots of `slot_bytes` each (the array is split at
    /// multiples of `slot_bytes` from its first byte; pass `u64::MAX` when nothing is
    /// registered).
    pub fn new(dir: Direction, total: u64, segment_bytes: u32, slot_bytes: u64) -> Self {
        let slot_bytes = slot_bytes.max(1);
        let ends = (1..=total.div_ceil(slot_bytes))
            .map(|i| i.saturating_mul(slot_bytes).min(total))
            .collect();
        Planner::with_pieces(dir, ends, segment_bytes)
    }

    /// A planner over a stream made of consecutive pieces (e.g. header, payload slots,
    /// trailer of a framed message): `ends[i]` is the end offset of piece `i`, strictly
    /// ascending; the transfer length is the last end (0 for no pieces). No SQE crosses a
    /// piece boundary, and [`SqeDesc::slot`] is the piece index. Empty pieces are not
    /// representable (drop them).
    pub fn with_pieces(dir: Direction, ends: Vec<u64>, segment_bytes: u32) -> Self {
        assert!(
            ends.windows(2).all(|w| w[0] < w[1]) && ends.first().is_none_or(|&e| e > 0),
            "piece ends must be strictly ascending and non-zero"
        );
        Planner {
            dir,
            total: ends.last().copied().unwrap_or(0),
            segment: segment_bytes.clamp(1, MAX_IO_BYTES),
            ends,
            confirmed: 0,
            next_id: 0,
            poll_first: false,
            chain: VecDeque::new(),
            pending: 0,
        }
    }

    /// Bytes confirmed in order from the start of the array.
    pub fn confirmed(&self) -> u64 {
        self.confirmed
    }

    /// Bytes known final from the start of the array: [`Planner::confirmed`] plus the front
    /// of the chain in flight whose CQEs are in, in stream order — every full completion, and
    /// a short one (the link breaks there; [`Planner::settle`] will confirm exactly these
    /// bytes). A receive's bytes below this offset are written and no SQE will touch them
    /// again; the chain's later SQEs may still be in flight.
    pub fn completed_prefix(&self) -> u64 {
        let mut pos = self.confirmed;
        for f in &self.chain {
            match f.res {
                Some(res) if res > 0 => {
                    let moved = (res as u32).min(f.sqe.len);
                    pos += u64::from(moved);
                    if moved < f.sqe.len {
                        break;
                    }
                }
                _ => break,
            }
        }
        pos
    }

    /// Total bytes of the transfer.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// True once every byte is confirmed.
    pub fn is_done(&self) -> bool {
        self.confirmed == self.total
    }

    /// SQEs of the current chain whose CQE has not been fed back yet.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// `user_data` of every SQE still owned by the kernel (for cancellation).
    pub fn pending_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.chain
            .iter()
            .filter(|f| f.res.is_none())
            .map(|f| f.sqe.id)
    }

    /// Plans the next chain of at most `max_sqes` SQEs, starting at the first unconfirmed
    /// byte. Returns `None` when the transfer is complete or a chain is still in flight
    /// (call [`Planner::settle`] first).
    pub fn next_chain(&mut self, max_sqes: usize) -> Option<Chain> {
        self.next_chain_capped(max_sqes, &[])
    }

    /// [`Planner::next_chain`], with SQE `k` of the chain (for `k < caps.len()`) also at most
    /// `caps[k]` bytes (a cap of 0 counts as 1). The uring backend uses it to keep trial
    /// `SEND_ZC` requests small ([`crate::uring::zc_policy`]).
    pub fn next_chain_capped(&mut self, max_sqes: usize, caps: &[u32]) -> Option<Chain> {
        if self.is_done() || !self.chain.is_empty() {
            return None;
        }
        let mut pos = self.confirmed;
        let mut sqes = Vec::new();
        while pos < self.total && sqes.len() < max_sqes.max(1) {
            let slot = self.ends.partition_point(|&e| e <= pos);
            let slot_end = self.ends[slot];
            let cap = caps
                .get(sqes.len())
                .map_or(self.segment, |&c| c.clamp(1, self.segment));
            let len = (slot_end - pos).min(u64::from(cap)) as u32;
            let sqe = SqeDesc {
                id: self.next_id,
                offset: pos,
                len,
                slot: slot as u32,
            };
            self.next_id += 1;
            sqes.push(sqe);
            self.chain.push_back(InFlight { sqe, res: None });
            pos += u64::from(len);
        }
        self.pending = sqes.len();
        let poll_first = std::mem::take(&mut self.poll_first);
        Some(Chain { poll_first, sqes })
    }

    /// Feeds the CQE of SQE `id` (`res` is `CQE.res`: bytes moved, or `-errno`).
    /// Returns false for an id that is not pending (a duplicate or foreign CQE), which the
    /// caller should treat as a bug.
    pub fn complete(&mut self, id: u64, res: i32) -> bool {
        match self
            .chain
            .iter_mut()
            .find(|f| f.sqe.id == id && f.res.is_none())
        {
            Some(f) => {
                f.res = Some(res);
                self.pending -= 1;
                true
            }
            None => false,
        }
    }

    /// Once every CQE of the chain is in ([`Planner::pending`] is 0), advances the confirmed
    /// prefix. `Ok(n)` is the number of bytes newly confirmed (0 is possible: an
    /// interrupted or canceled chain is simply planned again). Must not be called while CQEs
    /// are pending.
    pub fn settle(&mut self) -> Result<u64, PlanError> {
        assert_eq!(self.pending, 0, "settle() with CQEs still pending");
        let start = self.confirmed;
        let mut pos = self.confirmed;
        let mut short_at: Option<u64> = None;
        let mut failure: Option<PlanError> = None;
        for f in self.chain.drain(..) {
            let res = f.res.expect("no pending CQEs");
            if let Some(at) = short_at {
                // A reorder outranks any other failure of the chain: the data is bad.
                if res > 0 && !matches!(failure, Some(PlanError::ChainOrder { .. })) {
                    failure = Some(PlanError::ChainOrder {
                        offset: f.sqe.offset,
                        short_at: at,
                    });
                }
                continue;
            }
            if res >= 0 {
                let moved = (res as u32).min(f.sqe.len);
                pos += u64::from(moved);
                if moved < f.sqe.len {
                    short_at = Some(pos);
                    if moved == 0 {
                        failure = Some(match self.dir {
                            Direction::Recv => PlanError::Eof { transferred: pos },
                            Direction::Send => PlanError::WriteZero { transferred: pos },
                        });
                    }
                }
                continue;
            }
            short_at = Some(pos);
            match -res {
                libc::ECANCELED | libc::EINTR => {}
                libc::EAGAIN => self.poll_first = true,
                errno => {
                    failure = Some(PlanError::Os {
                        errno,
                        transferred: pos,
                    })
                }
            }
        }
        self.confirmed = pos;
        match failure {
            Some(e) => Err(e),
            None => Ok(pos - start),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_prefix_follows_the_front_of_the_chain() {
        let mut p = Planner::new(Direction::Recv, 20, 4, u64::MAX);
        let c = p.next_chain(4).unwrap();
        let ids: Vec<u64> = c.sqes.iter().map(|s| s.id).collect();
        assert_eq!(p.completed_prefix(), 0);
        // A later SQE's CQE before the first one's: nothing is final yet.
        assert!(p.complete(ids[1], 4));
        assert_eq!(p.completed_prefix(), 0);
        assert!(p.complete(ids[0], 4));
        assert_eq!(p.completed_prefix(), 8);
        // A short completion ends the prefix; the canceled rest adds nothing.
        assert!(p.complete(ids[2], 3));
        assert_eq!(p.completed_prefix(), 11);
        assert!(p.complete(ids[3], -libc::ECANCELED));
        assert_eq!(p.completed_prefix(), 11);
        assert_eq!(p.settle(), Ok(11));
        assert_eq!((p.confirmed(), p.completed_prefix()), (11, 11));
        // The next chain starts there.
        let c = p.next_chain(4).unwrap();
        assert!(p.complete(c.sqes[0].id, -libc::EINTR));
        assert_eq!(p.completed_prefix(), 11);
    }

    #[test]
    fn segments_respect_slots_and_cap() {
        let mut p = Planner::new(Direction::Send, 10, 4, 6);
        let c = p.next_chain(16).unwrap();
        let v: Vec<_> = c.sqes.iter().map(|s| (s.offset, s.len, s.slot)).collect();
        assert_eq!(v, vec![(0, 4, 0), (4, 2, 0), (6, 4, 1)]);
        assert!(p.next_chain(16).is_none(), "chain in flight");
    }

    #[test]
    fn capped_sqes_come_first_then_full_segments() {
        let mut p = Planner::new(Direction::Send, 20, 8, u64::MAX);
        // Caps above the segment size are the segment size; a cap of 0 is 1.
        let c = p.next_chain_capped(5, &[3, 0, 99]).unwrap();
        let v: Vec<_> = c.sqes.iter().map(|s| (s.offset, s.len)).collect();
        assert_eq!(v, vec![(0, 3), (3, 1), (4, 8), (12, 8)]);
    }

    #[test]
    fn pieces_split_segments() {
        let mut p = Planner::with_pieces(Direction::Send, vec![3, 13, 14], 8);
        let c = p.next_chain(16).unwrap();
        let v: Vec<_> = c.sqes.iter().map(|s| (s.offset, s.len, s.slot)).collect();
        assert_eq!(v, vec![(0, 3, 0), (3, 8, 1), (11, 2, 1), (13, 1, 2)]);
    }

    #[test]
    fn short_then_canceled_resumes_at_first_unconfirmed_byte() {
        let mut p = Planner::new(Direction::Recv, 12, 4, u64::MAX);
        let c = p.next_chain(8).unwrap();
        assert!(p.complete(c.sqes[0].id, 4));
        assert!(p.complete(c.sqes[1].id, 1));
        assert!(p.complete(c.sqes[2].id, -libc::ECANCELED));
        assert_eq!(p.settle(), Ok(5));
        let c = p.next_chain(8).unwrap();
        assert_eq!(c.sqes[0].offset, 5);
        assert_eq!(c.sqes[0].len, 4);
    }

    #[test]
    fn eof_names_bytes() {
        let mut p = Planner::new(Direction::Recv, 8, 8, u64::MAX);
        let c = p.next_chain(8).unwrap();
        p.complete(c.sqes[0].id, 3);
        assert_eq!(p.settle(), Ok(3));
        let c = p.next_chain(8).unwrap();
        p.complete(c.sqes[0].id, 0);
        assert_eq!(p.settle(), Err(PlanError::Eof { transferred: 3 }));
    }

    #[test]
    fn reorder_is_detected() {
        let mut p = Planner::new(Direction::Send, 8, 4, u64::MAX);
        let c = p.next_chain(8).unwrap();
        p.complete(c.sqes[0].id, 2);
        p.complete(c.sqes[1].id, 4);
        assert_eq!(
            p.settle(),
            Err(PlanError::ChainOrder {
                offset: 4,
                short_at: 2
            })
        );
    }

    #[test]
    fn eagain_asks_for_poll_and_errors_carry_errno() {
        let mut p = Planner::new(Direction::Send, 8, 8, u64::MAX);
        let c = p.next_chain(8).unwrap();
        assert!(!c.poll_first);
        p.complete(c.sqes[0].id, -libc::EAGAIN);
        assert_eq!(p.settle(), Ok(0));
        let c = p.next_chain(8).unwrap();
        assert!(c.poll_first);
        p.complete(c.sqes[0].id, -libc::ECONNRESET);
        assert_eq!(
            p.settle(),
            Err(PlanError::Os {
                errno: libc::ECONNRESET,
                transferred: 0
            })
        );
    }

    #[test]
    fn foreign_cqe_is_rejected() {
        let mut p = Planner::new(Direction::Send, 8, 8, u64::MAX);
        let c = p.next_chain(8).unwrap();
        assert!(!p.complete(c.sqes[0].id + 100, 1));
        assert!(p.complete(c.sqes[0].id, 8));
        assert!(!p.complete(c.sqes[0].id, 8), "duplicate CQE");
        assert_eq!(p.settle(), Ok(8));
        assert!(p.is_done());
        assert!(p.next_chain(8).is_none());
    }
}
