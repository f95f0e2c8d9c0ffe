//! Property tests of the chain planner against a simulated kernel (no ring, no socket).
//!
//! The simulated kernel processes each chain in order and completes every SQE full, short
//! (`0 < r < len`), or with a spurious `-EINTR`/`-EAGAIN`/`-ECANCELED`; once an SQE is short
//! or fails, every later SQE of the chain completes `-ECANCELED` without moving a byte (link
//! semantics of `IOSQE_IO_LINK` with `MSG_WAITALL`). For a send it appends
//! `src[offset..offset + r]` to an output stream; for a receive it writes the next `r` bytes
//! of the input stream into `buf[offset..]`. CQEs are fed back in a shuffled order.
//!
//! Properties:
//! 1. the delivered stream equals the input, in order, exactly once, and no SQE crosses a slot
//!    boundary or exceeds `MAX_IO_BYTES` / the segment size (≥ 10,000 schedules);
//! 2. a misbehaving kernel that moves bytes on a later SQE after a short or failed one yields
//!    `PlanError::ChainOrder`, never a silently wrong stream;
//! 3. a receive that meets EOF yields `PlanError::Eof { transferred }` with exactly the bytes
//!    delivered so far; a hard error yields `PlanError::Os` with its errno and the bytes so far;
//! 4. the geometry holds for totals of many GiB (positions only, no data).

use std::collections::HashSet;
use std::sync::OnceLock;

use proptest::prelude::*;
use ringxfer::MAX_IO_BYTES;
use ringxfer::planner::{Chain, PlanError, Planner, SqeDesc};
use ringxfer::planner::{Direction, MAX_SLOT_BYTES};

/// Largest transfer with real bytes.
const MAX_TOTAL: usize = 2 << 20;

/// Deterministic RNG (splitmix64) seeded from a proptest value.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..hi` (`lo < hi`).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
    /// True with probability `pct` percent.
    fn pct(&mut self, pct: u32) -> bool {
        self.next() % 100 < u64::from(pct)
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.range(0, i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// Input bytes: a fixed pseudo-random 2·MAX_TOTAL buffer (built once) and its complement,
/// which pre-fills receive buffers so an unwritten byte never matches by chance.
fn base() -> &'static (Vec<u8>, Vec<u8>) {
    static B: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    B.get_or_init(|| {
        let mut r = Rng(42);
        let v: Vec<u8> = (0..2 * MAX_TOTAL).map(|_| r.next() as u8).collect();
        let p = v.iter().map(|b| !b).collect();
        (v, p)
    })
}

/// A spurious (retryable) error code.
fn spurious(rng: &mut Rng) -> i32 {
    match rng.range(0, 3) {
        0 => -libc::EINTR,
        1 => -libc::EAGAIN,
        _ => -libc::ECANCELED,
    }
}

/// The static parameters of one transfer.
#[derive(Debug, Clone)]
struct Shape {
    dir: Direction,
    total: u64,
    segment: u32,
    slot: u64,
    max_sqes: usize,
}

/// Checks one planned chain: it starts at the first unconfirmed byte, its SQEs are contiguous,
/// non-empty, within the total, no longer than the segment size and `MAX_IO_BYTES`, each
/// inside one slot with the right slot index, with fresh ids; and nothing else can be planned
/// while it is in flight.
fn check_chain(shape: &Shape, p: &mut Planner, c: &Chain, seen_ids: &mut HashSet<u64>) {
    let seg = u64::from(shape.segment.clamp(1, MAX_IO_BYTES));
    assert!(!c.sqes.is_empty(), "empty chain");
    assert!(
        c.sqes.len() <= shape.max_sqes.max(1),
        "chain of {} SQEs, max {}",
        c.sqes.len(),
        shape.max_sqes
    );
    assert_eq!(
        c.sqes[0].offset,
        p.confirmed(),
        "chain does not start at the first unconfirmed byte"
    );
    let mut pos = p.confirmed();
    for s in &c.sqes {
        assert_eq!(s.offset, pos, "SQEs not contiguous: {:?}", c.sqes);
        assert!(s.len >= 1, "empty SQE {s:?}");
        assert!(s.len <= MAX_IO_BYTES, "SQE over MAX_IO_BYTES: {s:?}");
        assert!(
            u64::from(s.len) <= seg,
            "SQE over the segment size {seg}: {s:?}"
        );
        let end = s.offset + u64::from(s.len);
        assert!(end <= shape.total, "SQE past the end: {s:?}");
        if shape.slot != u64::MAX {
            assert_eq!(
                u64::from(s.slot),
                s.offset / shape.slot,
                "wrong slot index: {s:?}"
            );
            assert_eq!(
                (end - 1) / shape.slot,
                s.offset / shape.slot,
                "SQE crosses a slot boundary (slot {} bytes): {s:?}",
                shape.slot
            );
        } else {
            assert_eq!(
                s.slot, 0,
                "unregistered transfer uses slot {}: {s:?}",
                s.slot
            );
        }
        assert!(seen_ids.insert(s.id), "user_data {} reused", s.id);
        pos = end;
    }
    assert_eq!(p.pending(), c.sqes.len());
    assert!(
        p.next_chain(shape.max_sqes).is_none(),
        "a second chain was planned while one is in flight"
    );
}

/// Feeds `results[i]` for `sqes[i]` in a shuffled order, checking `pending`/`pending_ids`
/// along the way and that a duplicate CQE is refused.
fn feed(p: &mut Planner, sqes: &[SqeDesc], results: &[i32], rng: &mut Rng) {
    let mut order: Vec<usize> = (0..sqes.len()).collect();
    rng.shuffle(&mut order);
    for (k, &i) in order.iter().enumerate() {
        assert!(p.complete(sqes[i].id, results[i]), "CQE refused");
        assert_eq!(p.pending(), sqes.len() - k - 1);
    }
    let mut left: Vec<u64> = p.pending_ids().collect();
    left.sort_unstable();
    assert!(left.is_empty(), "pending ids after every CQE: {left:?}");
    if let Some(s) = sqes.first() {
        assert!(!p.complete(s.id, results[0]), "duplicate CQE accepted");
    }
}

/// Kernel behaviour knobs (percentages per SQE).
#[derive(Debug, Clone, Copy)]
struct Faults {
    short_pct: u32,
    spurious_pct: u32,
}

/// The well-behaved simulated kernel. Returns the per-SQE results of one chain and applies
/// their data movement to the streams.
struct Kernel<'a> {
    dir: Direction,
    src: &'a [u8],
    /// Send: bytes that went out on the wire.
    out: Vec<u8>,
    /// Recv: the caller's buffer, and how far the input stream has been consumed.
    buf: Vec<u8>,
    in_cursor: usize,
    /// Recv: the input stream ends here (EOF after it); `src.len()` for no early EOF.
    eof_at: usize,
    rng: Rng,
    faults: Faults,
}

impl Kernel<'_> {
    /// Bytes the kernel has moved so far.
    fn delivered(&self) -> usize {
        match self.dir {
            Direction::Send => self.out.len(),
            Direction::Recv => self.in_cursor,
        }
    }

    /// Moves `r` bytes for SQE `s`.
    fn move_bytes(&mut self, s: &SqeDesc, r: usize) {
        let off = s.offset as usize;
        match self.dir {
            Direction::Send => self.out.extend_from_slice(&self.src[off..off + r]),
            Direction::Recv => {
                let c = self.in_cursor;
                self.buf[off..off + r].copy_from_slice(&self.src[c..c + r]);
                self.in_cursor += r;
            }
        }
    }

    /// Completes one chain with link semantics. Returns the results and the index of the
    /// SQE that broke the chain (if any), with its result.
    fn run_chain(&mut self, sqes: &[SqeDesc]) -> (Vec<i32>, Option<(usize, i32)>) {
        let mut results = Vec::with_capacity(sqes.len());
        let mut broke = None;
        for (i, s) in sqes.iter().enumerate() {
            if broke.is_some() {
                results.push(-libc::ECANCELED);
                continue;
            }
            let len = s.len as usize;
            let res = if self.rng.pct(self.faults.spurious_pct) {
                spurious(&mut self.rng)
            } else {
                let mut r = if len > 1 && self.rng.pct(self.faults.short_pct) {
                    self.rng.range(1, len as u64) as usize
                } else {
                    len
                };
                if self.dir == Direction::Recv {
                    r = r.min(self.eof_at - self.in_cursor);
                }
                self.move_bytes(s, r);
                r as i32
            };
            if res < 0 || (res as usize) < len {
                broke = Some((i, res));
            }
            results.push(res);
        }
        (results, broke)
    }
}

/// Drives a whole transfer with a well-behaved kernel. Returns the planner's final error (if
/// any) and the kernel.
fn drive<'a>(
    shape: &Shape,
    src: &'a [u8],
    poison: &[u8],
    eof_at: usize,
    faults: Faults,
    seed: u64,
) -> (Option<PlanError>, Kernel<'a>) {
    let mut k = Kernel {
        dir: shape.dir,
        src,
        out: Vec::with_capacity(src.len()),
        buf: if shape.dir == Direction::Recv {
            poison.to_vec()
        } else {
            Vec::new()
        },
        in_cursor: 0,
        eof_at,
        rng: Rng(seed),
        faults,
    };
    let mut p = Planner::new(shape.dir, shape.total, shape.segment, shape.slot);
    assert_eq!(p.total(), shape.total);
    let mut seen_ids = HashSet::new();
    let mut want_poll = false;
    let mut chains = 0u64;
    while let Some(c) = p.next_chain(shape.max_sqes) {
        chains += 1;
        assert!(chains < 10_000_000, "no progress: {shape:?}");
        check_chain(shape, &mut p, &c, &mut seen_ids);
        assert_eq!(
            c.poll_first, want_poll,
            "poll_first must follow (only) an -EAGAIN in the previous chain"
        );
        let before = k.delivered();
        let (results, broke) = k.run_chain(&c.sqes);
        want_poll = matches!(broke, Some((_, r)) if r == -libc::EAGAIN);
        let mut rng = Rng(seed ^ chains);
        feed(&mut p, &c.sqes, &results, &mut rng);
        match p.settle() {
            Ok(n) => {
                assert_eq!(n as usize, k.delivered() - before, "newly confirmed bytes");
                assert_eq!(p.confirmed() as usize, k.delivered(), "confirmed prefix");
            }
            Err(e) => return (Some(e), k),
        }
    }
    assert!(p.is_done(), "next_chain gave None before the end");
    assert_eq!(p.confirmed(), shape.total);
    (None, k)
}

fn shape_strategy() -> impl Strategy<Value = Shape> {
    let total = prop_oneof![0u64..=64, 0u64..=8192, 0u64..=MAX_TOTAL as u64];
    let segment = prop_oneof![1u32..=16, 1u32..=70_000, 1u32..=(3 << 20), Just(u32::MAX)];
    let slot = prop_oneof![
        Just(u64::MAX),
        1u64..=64,
        1u64..=(4 << 20),
        Just(MAX_SLOT_BYTES)
    ];
    let max_sqes = prop_oneof![
        Just(0usize),
        1usize..=4,
        1usize..=16,
        Just(64usize),
        Just(256usize)
    ];
    let dir = prop_oneof![Just(Direction::Send), Just(Direction::Recv)];
    (dir, total, segment, slot, max_sqes).prop_map(|(dir, total, segment, slot, max_sqes)| {
        // Keep the SQE count per pass at most ~256 so 10,000 cases stay fast in debug builds.
        let floor = total.div_ceil(256).max(1);
        Shape {
            dir,
            total,
            segment: segment.max(floor.min(u64::from(u32::MAX)) as u32),
            slot: if slot == u64::MAX {
                slot
            } else {
                slot.max(total.div_ceil(512))
            },
            max_sqes,
        }
    })
}

fn faults_strategy() -> impl Strategy<Value = Faults> {
    (0u32..=100, 0u32..=50).prop_map(|(short_pct, spurious_pct)| Faults {
        short_pct,
        spurious_pct,
    })
}

/// Shape and faults together: long chains (64 or 256 SQEs) get low fault rates, so a case
/// plans a few hundred chains at most (each fault re-plans the whole chain, and feeding a
/// chain of n CQEs costs O(n²) in the planner).
fn shape_and_faults() -> impl Strategy<Value = (Shape, Faults)> {
    (shape_strategy(), faults_strategy()).prop_map(|(shape, f)| {
        let f = if shape.max_sqes > 16 {
            Faults {
                short_pct: f.short_pct % 6,
                spurious_pct: f.spurious_pct % 6,
            }
        } else {
            f
        };
        (shape, f)
    })
}

/// The input for `total` bytes (and the poison for a receive buffer), from `start`.
fn input(total: u64, start: usize) -> (&'static [u8], &'static [u8]) {
    let (v, p) = base();
    let s = start % MAX_TOTAL;
    let t = total as usize;
    (&v[s..s + t], &p[s..s + t])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    /// Property 1: in order, exactly once, within the geometry limits.
    #[test]
    fn delivered_stream_equals_input(
        (shape, faults) in shape_and_faults(),
        seed in any::<u64>(),
        start in any::<usize>(),
    ) {
        let (src, poison) = input(shape.total, start);
        let (err, k) = drive(&shape, src, poison, src.len(), faults, seed);
        prop_assert_eq!(err, None);
        match shape.dir {
            Direction::Send => {
                prop_assert!(k.out == src, "sent stream differs from the input");
            }
            Direction::Recv => {
                prop_assert_eq!(k.in_cursor, src.len(), "input consumed");
                prop_assert!(k.buf == src, "received array differs from the input");
            }
        }
    }
}

/// How the misbehaving kernel breaks a chain before moving bytes on a later SQE.
#[derive(Debug, Clone, Copy)]
enum Break {
    Short,
    Zero,
    Spurious,
    Hard,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// Property 2: a kernel that does not cancel after a short or failed completion (a later
    /// SQE of the chain moves bytes) is caught as `ChainOrder`, never accepted.
    #[test]
    fn misbehaving_kernel_yields_chain_order(
        dir in prop_oneof![Just(Direction::Send), Just(Direction::Recv)],
        total in 2u64..=(256 << 10),
        seg_div in 2u64..=64,
        max_sqes in 2usize..=64,
        good_chains in 0usize..=5,
        brk in prop_oneof![Just(Break::Short), Just(Break::Zero), Just(Break::Spurious), Just(Break::Hard)],
        faults in faults_strategy(),
        seed in any::<u64>(),
    ) {
        let segment = total.div_ceil(seg_div).max(1) as u32;
        let shape = Shape { dir, total, segment, slot: u64::MAX, max_sqes };
        let (src, poison) = input(total, seed as usize);
        let mut k = Kernel {
            dir, src, out: Vec::new(), buf: poison.to_vec(), in_cursor: 0, eof_at: src.len(),
            rng: Rng(seed), faults,
        };
        let mut p = Planner::new(dir, total, segment, u64::MAX);
        let mut seen = HashSet::new();
        let mut chains = 0usize;
        let mut caught = false;
        while let Some(c) = p.next_chain(max_sqes) {
            check_chain(&shape, &mut p, &c, &mut seen);
            chains += 1;
            let n = c.sqes.len();
            // A good chain only while it cannot finish the transfer: afterwards at least two
            // segments remain, so the misbehaving chain always has two SQEs or more.
            let chain_end = c.sqes[n - 1].offset + u64::from(c.sqes[n - 1].len);
            if chains <= good_chains && chain_end + 2 * u64::from(segment) <= total {
                let (results, _) = k.run_chain(&c.sqes);
                feed(&mut p, &c.sqes, &results, &mut Rng(seed ^ chains as u64));
                prop_assert!(p.settle().is_ok());
                continue;
            }
            // Misbehave: SQE `b` breaks the chain, yet later SQEs move bytes.
            prop_assert!(n >= 2, "misbehaving chain of {} SQE", n);
            let mut rng = Rng(seed.rotate_left(17) ^ chains as u64);
            let b = rng.range(0, n as u64 - 1) as usize;
            let mut results = Vec::with_capacity(n);
            let mut pos = c.sqes[0].offset;
            for s in &c.sqes[..b] {
                k.move_bytes(s, s.len as usize);
                results.push(s.len as i32);
                pos += u64::from(s.len);
            }
            let sb = &c.sqes[b];
            let res_b = match brk {
                Break::Short if sb.len > 1 => {
                    let r = rng.range(1, u64::from(sb.len)) as usize;
                    k.move_bytes(sb, r);
                    r as i32
                }
                Break::Short | Break::Zero => 0,
                Break::Spurious => spurious(&mut rng),
                Break::Hard => -libc::ECONNRESET,
            };
            if res_b > 0 {
                pos += res_b as u64;
            }
            results.push(res_b);
            // Later SQEs: at least one moves bytes (the first offender is `j`).
            let j = rng.range(b as u64 + 1, n as u64) as usize;
            for (i, s) in c.sqes.iter().enumerate().skip(b + 1) {
                let moved = i == j || (i > j && rng.pct(50));
                results.push(if moved {
                    rng.range(1, u64::from(s.len) + 1) as i32
                } else {
                    -libc::ECANCELED
                });
            }
            feed(&mut p, &c.sqes, &results, &mut rng);
            let r = p.settle();
            prop_assert_eq!(
                r,
                Err(PlanError::ChainOrder { offset: c.sqes[j].offset, short_at: pos }),
                "break {:?} at SQE {} of {}, first offender {}", brk, b, n, j
            );
            caught = true;
            break;
        }
        prop_assert!(caught, "the misbehaving chain never came");
    }

    /// Property 3a: EOF on a receive, after any mix of full, short and spurious completions,
    /// yields `Eof { transferred }` with exactly the bytes delivered, and those bytes are the
    /// input's prefix.
    #[test]
    fn recv_eof_names_bytes_delivered(
        (shape, faults) in shape_and_faults(),
        eof_frac in 0u64..=1000,
        seed in any::<u64>(),
    ) {
        let shape = Shape { dir: Direction::Recv, ..shape };
        prop_assume!(shape.total > 0);
        let eof_at = (shape.total * eof_frac / 1001) as usize; // < total
        let (src, poison) = input(shape.total, seed as usize);
        let (err, k) = drive(&shape, src, poison, eof_at, faults, seed);
        prop_assert_eq!(err, Some(PlanError::Eof { transferred: eof_at as u64 }));
        prop_assert_eq!(k.in_cursor, eof_at);
        prop_assert!(k.buf[..eof_at] == src[..eof_at], "prefix before EOF differs");
    }

    /// Property 3b: a hard error (`ECONNRESET`, `EPIPE`, …) at a random SQE yields
    /// `Os { errno, transferred }` with the bytes delivered so far; a 0-byte send yields
    /// `WriteZero`.
    #[test]
    fn hard_error_names_errno_and_bytes(
        (shape, faults) in shape_and_faults(),
        errno in prop_oneof![Just(libc::ECONNRESET), Just(libc::EPIPE), Just(libc::EBADF), Just(libc::ENOTCONN)],
        zero in any::<bool>(),
        fail_after in 0u64..=1000,
        seed in any::<u64>(),
    ) {
        prop_assume!(shape.total > 0);
        let (src, poison) = input(shape.total, seed as usize);
        let mut k = Kernel {
            dir: shape.dir, src, out: Vec::new(), buf: poison.to_vec(), in_cursor: 0,
            eof_at: src.len(), rng: Rng(seed), faults,
        };
        // Fail at the first SQE starting at or after this byte.
        let fail_at = shape.total * fail_after / 1001;
        let mut p = Planner::new(shape.dir, shape.total, shape.segment, shape.slot);
        let mut seen = HashSet::new();
        let mut n = 0u64;
        let err = loop {
            let Some(c) = p.next_chain(shape.max_sqes) else { break None };
            n += 1;
            check_chain(&shape, &mut p, &c, &mut seen);
            let mut results = Vec::new();
            let mut broke = false;
            for s in &c.sqes {
                if broke {
                    results.push(-libc::ECANCELED);
                } else if s.offset + u64::from(s.len) > fail_at {
                    // This SQE fails; a 0-byte send is reported as a 0 result.
                    results.push(if zero && shape.dir == Direction::Send { 0 } else { -errno });
                    broke = true;
                } else {
                    k.move_bytes(s, s.len as usize);
                    results.push(s.len as i32);
                }
            }
            feed(&mut p, &c.sqes, &results, &mut Rng(seed ^ n));
            if let Err(e) = p.settle() {
                break Some(e);
            }
        };
        let delivered = k.delivered() as u64;
        let want = if zero && shape.dir == Direction::Send {
            PlanError::WriteZero { transferred: delivered }
        } else {
            PlanError::Os { errno, transferred: delivered }
        };
        prop_assert_eq!(err, Some(want));
        prop_assert_eq!(p.confirmed(), delivered);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// Property 4: the geometry for totals of many GiB (1 GiB slots and odd slot sizes,
    /// segments up to `u32::MAX`, clamped to `MAX_IO_BYTES`), with short completions; positions
    /// only.
    #[test]
    fn geometry_for_huge_totals(
        total in 0u64..=(20u64 << 30),
        segment in prop_oneof![Just(u32::MAX), Just(MAX_IO_BYTES), (1u32 << 20)..=u32::MAX],
        slot in prop_oneof![Just(MAX_SLOT_BYTES), Just(u64::MAX), (1u64 << 20)..=(3u64 << 30)],
        max_sqes in 1usize..=16,
        short_pct in 0u32..=30,
        seed in any::<u64>(),
    ) {
        let seg_floor = total.div_ceil(4096).min(u64::from(u32::MAX)) as u32;
        let slot = if slot == u64::MAX { slot } else { slot.max(total.div_ceil(4096)) };
        let shape = Shape {
            dir: Direction::Send,
            total,
            segment: segment.max(seg_floor),
            slot,
            max_sqes,
        };
        let mut p = Planner::new(shape.dir, total, shape.segment, slot);
        let mut rng = Rng(seed);
        let mut seen = HashSet::new();
        let mut moved = 0u64;
        while let Some(c) = p.next_chain(max_sqes) {
            check_chain(&shape, &mut p, &c, &mut seen);
            let mut results = Vec::new();
            let mut broke = false;
            for s in &c.sqes {
                if broke {
                    results.push(-libc::ECANCELED);
                } else if s.len > 1 && rng.pct(short_pct) {
                    let r = rng.range(1, u64::from(s.len));
                    moved += r;
                    results.push(r as i32);
                    broke = true;
                } else {
                    moved += u64::from(s.len);
                    results.push(s.len as i32);
                }
            }
            feed(&mut p, &c.sqes, &results, &mut rng);
            prop_assert!(p.settle().is_ok());
            prop_assert_eq!(p.confirmed(), moved);
        }
        prop_assert!(p.is_done());
        prop_assert_eq!(moved, total);
    }
}

/// The 2 GiB+ corner by hand: one SQE can never carry more than `MAX_IO_BYTES`, and a
/// 2,560,000,000-byte transfer (case C01) in 1 GiB slots splits at both slot boundaries.
#[test]
fn c01_geometry_by_hand() {
    let total = 2_560_000_000u64;
    let mut p = Planner::new(Direction::Send, total, u32::MAX, MAX_SLOT_BYTES);
    let c = p.next_chain(16).unwrap();
    let v: Vec<(u64, u32, u32)> = c.sqes.iter().map(|s| (s.offset, s.len, s.slot)).collect();
    let g = 1u64 << 30;
    assert_eq!(
        v,
        vec![
            (0, g as u32, 0),
            (g, g as u32, 1),
            (2 * g, (total - 2 * g) as u32, 2)
        ]
    );
    // Unregistered: only the per-call cap splits it.
    let mut p = Planner::new(Direction::Recv, total, u32::MAX, u64::MAX);
    let c = p.next_chain(16).unwrap();
    let v: Vec<(u64, u32)> = c.sqes.iter().map(|s| (s.offset, s.len)).collect();
    let m = u64::from(MAX_IO_BYTES);
    assert_eq!(
        v,
        vec![(0, MAX_IO_BYTES), (m, (total - m) as u32)],
        "SQEs capped at MAX_IO_BYTES"
    );
}
