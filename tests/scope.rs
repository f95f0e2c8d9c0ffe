//! Issue 9, section 2: `Engine::scope` — many transfers at once (several sockets, both
//! directions) with borrowed arrays, on both backends: byte-exact under forced short
//! completions, a reset on one socket cancelling the rest with exact per-transfer results, a
//! stalled stream timing out, and the checks that refuse a set before anything runs.

mod util;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ringxfer::{EngineStats, Error, Options};
use util::*;

const MIB: usize = 1 << 20;

/// `n` socket pairs; on each, both ends send and receive at once (4 × n transfers in one
/// scope), every array byte-exact afterwards. Returns what the engine's ring did
/// ([`EngineStats`], all zero on the blocking backend).
fn bidir_many(
    o: Options,
    pairs: Vec<(TcpStream, TcpStream)>,
    len: usize,
    what: &str,
) -> EngineStats {
    let n = pairs.len();
    let outs: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
        .map(|i| {
            (
                pattern_vec(len, 100 + i as u64),
                pattern_vec(len + 7, 200 + i as u64),
            )
        })
        .collect();
    let mut ins: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
        .map(|i| {
            (
                poison_vec(len, 300 + i as u64),
                poison_vec(len + 7, 400 + i as u64),
            )
        })
        .collect();
    let mut e = engine(&o);
    let before = e.stats();
    let t0 = Instant::now();
    let outcome = e.scope(|s| {
        for ((a, b), ((x, y), (gx, gy))) in pairs.iter().zip(outs.iter().zip(ins.iter_mut())) {
            s.send(a, x); // a → b: x
            s.recv(b, gx);
            s.send(b, y); // b → a: y
            s.recv(a, gy);
        }
    });
    let dt = t0.elapsed();
    let results = outcome.into_results();
    assert_eq!(results.len(), 4 * n, "{what}: one result per transfer");
    for (i, r) in results.iter().enumerate() {
        let want = if i % 4 < 2 { len } else { len + 7 } as u64;
        assert_eq!(r.as_ref().ok(), Some(&want), "{what}: transfer {i}: {r:?}");
    }
    for (i, ((x, y), (gx, gy))) in outs.iter().zip(&ins).enumerate() {
        assert_bytes_eq(gx, x, &format!("{what}: pair {i} a→b"));
        assert_bytes_eq(gy, y, &format!("{what}: pair {i} b→a"));
    }
    eprintln!("{what}: {} transfers in {dt:?}", 4 * n);
    e.stats().since(&before)
}

/// C14 (completion queue overflow): more completions due at once than the ring's CQ holds
/// (256 entries). Every CQE must arrive exactly once — each SQE one result CQE, no loss, no
/// double count — with no stall, and every array byte-exact. With `must_overflow`, the uring
/// case also asserts that the kernel's overflow path was taken at least once (so that it tests
/// what it says); where completions trickle in, it may or may not be.
fn c14(
    backend: ringxfer::Backend,
    pairs: usize,
    buf: Option<usize>,
    len: usize,
    must_overflow: bool,
) {
    let what = format!("C14: {pairs} pairs, {len} B each way, buffers {buf:?}");
    let socks = (0..pairs)
        .map(|_| buf.map_or_else(tcp_pair, tcp_pair_small_buffers))
        .collect();
    let d = bidir_many(opts(backend), socks, len, &what);
    if backend == ringxfer::Backend::Blocking {
        assert_eq!(
            d,
            EngineStats::default(),
            "{what}: the blocking backend has no ring"
        );
        return;
    }
    assert_eq!(d.cqes, d.sqes + d.notifs, "{what}: {d:?}");
    assert!(d.sqes >= 4 * pairs as u64, "{what}: {d:?}");
    if must_overflow {
        assert!(
            d.cq_overflow_flushes > 0,
            "{what}: the CQ never overflowed: {d:?}"
        );
    }
}

both_backends! {
    /// Four TCP connections, both directions on each, 16 MiB + 16 MiB each way.
    fn scope_four_sockets_both_directions(backend) {
        let pairs = (0..4).map(|_| tcp_pair()).collect();
        let _ = bidir_many(opts(backend), pairs, 16 * MIB, "4 sockets bidir");
    }

    /// Forced short completions: 4 KiB socket buffers on every stream, three connections,
    /// both directions, 2 MiB each way.
    fn scope_short_completions_on_every_stream(backend) {
        let pairs = (0..3).map(|_| tcp_pair_small_buffers(4096)).collect();
        let _ = bidir_many(opts(backend), pairs, 2 * MIB, "4 KiB buffers");
    }

    /// C14: 800 small transfers in one set (200 connections, both directions): the sends and
    /// the receives behind them complete at submission, far more CQEs at once than the CQ
    /// holds.
    fn c14_cq_overflow_small_transfers(backend) {
        c14(backend, 200, None, 1000, true);
    }

    /// C14 with short completions: 4 KiB socket buffers on 100 connections, 64 KiB each way
    /// (400 transfers, each of many partial reads and writes inside its `MSG_WAITALL`
    /// request); their completions trickle in, so overflow is possible but not certain.
    fn c14_cq_overflow_short_completions(backend) {
        c14(backend, 100, Some(4096), 64 << 10, false);
    }

    /// Small arrays (below the direct-path threshold) in a set still all complete.
    fn scope_small_arrays(backend) {
        let pairs = (0..8).map(|_| tcp_pair()).collect();
        let _ = bidir_many(opts(backend), pairs, 1000, "small");
    }

    /// One socket's peer sends 1,000 of 1 MiB bytes and resets; another receive waits on a
    /// peer that stays silent. No idle timeout: the reset must end the whole set promptly —
    /// the reset transfer with its own error and counts, the other `Canceled` with its counts,
    /// a send that had already completed `Ok`.
    fn scope_reset_cancels_the_rest(backend) {
        within(Duration::from_secs(20), "reset cancels", move || {
            let o = opts(backend);
            let (a_tx, a_rx) = tcp_pair();
            let (b_tx, b_rx) = tcp_pair();
            let (c_tx, c_rx) = tcp_pair();
            let small: Vec<u8> = pattern_vec(64 << 10, 7);
            let peer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                (&a_tx).write_all(&[9u8; 1000]).unwrap();
                std::thread::sleep(Duration::from_millis(100));
                reset(a_tx);
                b_tx // stays open, silent
            });
            let mut got_a = vec![0u8; MIB];
            let mut got_b = vec![0u8; MIB];
            let mut e = engine(&o);
            let t0 = Instant::now();
            let results = e
                .scope(|s| {
                    s.recv(&a_rx, &mut got_a);
                    s.recv(&b_rx, &mut got_b);
                    s.send(&c_tx, &small);
                })
                .into_results();
            let dt = t0.elapsed();
            let _b_tx = peer.join().unwrap();
            eprintln!("{backend:?}: {results:?} in {dt:?}");
            match &results[0] {
                Err(Error::Io { transferred: 1000, expected, source, .. }) => {
                    assert_eq!(*expected, MIB as u64);
                    assert_eq!(source.raw_os_error(), Some(libc::ECONNRESET), "{source}");
                }
                Err(Error::UnexpectedEof { transferred: 1000, expected }) => {
                    assert_eq!(*expected, MIB as u64)
                }
                other => panic!("reset transfer: {other:?}"),
            }
            assert!(
                matches!(results[1], Err(Error::Canceled { transferred: 0, expected }) if expected == MIB as u64),
                "silent transfer: {:?}",
                results[1]
            );
            assert_eq!(results[2].as_ref().ok(), Some(&(64u64 << 10)), "send: {:?}", results[2]);
            assert!(dt < Duration::from_secs(3), "took {dt:?}");
            assert_eq!(&got_a[..1000], &[9u8; 1000][..]);
            // The send's bytes all arrived.
            let mut sink = vec![0u8; 64 << 10];
            std::io::Read::read_exact(&mut &c_rx, &mut sink).unwrap();
            assert_eq!(sink, small);
            // The engine is usable afterwards.
            let (x, y) = tcp_pair();
            let data: Vec<u8> = pattern_vec(MIB, 8);
            let mut back = vec![0u8; MIB];
            e.scope(|s| {
                s.send(&x, &data);
                s.recv(&y, &mut back);
            })
            .into_result()
            .unwrap();
            assert_eq!(back, data);
        });
    }

    /// A stalled stream times out (idle timeout 500 ms) while another finishes: the stalled
    /// one `TimedOut` with its counts, the finished one `Ok`.
    fn scope_stalled_stream_times_out(backend) {
        within(Duration::from_secs(20), "stalled stream", move || {
            let o = Options { idle_timeout: Some(Duration::from_millis(500)), ..opts(backend) };
            let (a_tx, a_rx) = tcp_pair();
            let (b_tx, b_rx) = tcp_pair();
            (&a_tx).write_all(&[1u8; 4096]).unwrap(); // then silence
            let data: Vec<u8> = pattern_vec(4 * MIB, 9);
            let mut got_a = vec![0u8; MIB];
            let mut got_b = vec![0u8; 4 * MIB];
            let t0 = Instant::now();
            let results = engine(&o)
                .scope(|s| {
                    s.recv(&a_rx, &mut got_a);
                    s.send(&b_tx, &data);
                    s.recv(&b_rx, &mut got_b);
                })
                .into_results();
            let dt = t0.elapsed();
            eprintln!("{backend:?}: {results:?} in {dt:?}");
            assert!(
                matches!(results[0], Err(Error::TimedOut { transferred: 4096, expected, timeout_ms: 500 }) if expected == MIB as u64),
                "{:?}",
                results[0]
            );
            assert_eq!(results[1].as_ref().ok(), Some(&(4 * MIB as u64)));
            assert_eq!(results[2].as_ref().ok(), Some(&(4 * MIB as u64)));
            assert_eq!(got_b, data);
            assert!(dt >= Duration::from_millis(500) && dt < Duration::from_secs(3), "{dt:?}");
            drop(a_tx);
        });
    }

    /// Two receives on one socket in one scope would interleave: refused before anything
    /// runs (`InvalidInput` for the second, the others `Canceled` with 0 bytes). A UDP socket
    /// is `NotStream`.
    fn scope_refuses_bad_sets(backend) {
        let o = opts(backend);
        let (a, b) = tcp_pair();
        (&a).write_all(&[5u8; 16]).unwrap();
        let mut x = [0u8; 8];
        let mut y = [0u8; 8];
        let results = engine(&o)
            .scope(|s| {
                s.recv(&b, &mut x);
                s.recv(&b, &mut y);
            })
            .into_results();
        assert!(matches!(results[0], Err(Error::Canceled { transferred: 0, expected: 8 })), "{:?}", results[0]);
        assert!(matches!(results[1], Err(Error::InvalidInput(_))), "{:?}", results[1]);
        assert_eq!((x, y), ([0u8; 8], [0u8; 8]), "nothing ran");
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let r = engine(&o).scope(|s| { s.recv(&u, &mut x); }).into_result();
        assert!(matches!(r, Err(Error::NotStream { so_type: Some(libc::SOCK_DGRAM) })), "{r:?}");
        // An empty scope is fine.
        assert!(engine(&o).scope(|_| {}).results().is_empty());
    }

    /// A panic inside the closure runs nothing (nothing was submitted) and leaves the engine
    /// usable.
    fn scope_panic_in_closure(backend) {
        let o = opts(backend);
        let mut e = engine(&o);
        let (a, b) = tcp_pair();
        let data = vec![3u8; 1000];
        let mut got = vec![0u8; 1000];
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            e.scope(|s| {
                s.send(&a, &data);
                panic!("in the closure");
            })
        }));
        assert!(r.is_err());
        e.scope(|s| {
            s.send(&a, &data);
            s.recv(&b, &mut got);
        })
        .into_result()
        .unwrap();
        assert_eq!(got, data);
    }
}

/// Set in the child of `scope_over_4096_transfers`: the backend to run its body on.
const MANY_CHILD_ENV: &str = "RINGXFER_TEST_MANY_TRANSFERS_CHILD";

both_backends! {
    /// 4100 transfers in one scope (1025 loopback TCP pairs, both directions on each): the
    /// uring backend, whose SQE user data holds a 12-bit transfer index, refuses the set —
    /// every transfer an `Error::InvalidInput` saying so, nothing sent (it panicked, taking a
    /// CLI with 5 rails x 1024 streams down); the blocking backend runs it, byte-exact. The
    /// body needs ~2050 descriptors: it runs in a child (this test binary again) under
    /// `ulimit -Sn 4096`.
    fn scope_over_4096_transfers(backend) {
        let name = backend.to_string();
        run_child_test(4096, "over_4096_transfers_child", (MANY_CHILD_ENV, &name));
    }
}

/// The child of `scope_over_4096_transfers`.
#[test]
#[ignore = "child of scope_over_4096_transfers"]
fn over_4096_transfers_child() {
    let Ok(backend) = std::env::var(MANY_CHILD_ENV) else {
        return;
    };
    let backend: ringxfer::Backend = backend.parse().unwrap();
    let pairs: Vec<(TcpStream, TcpStream)> = (0..1025).map(|_| tcp_pair()).collect();
    if backend == ringxfer::Backend::Blocking {
        bidir_many(opts(backend), pairs, 100, "4100 transfers");
        return;
    }
    let data = pattern_vec::<u8>(100, 1);
    let mut got: Vec<Vec<u8>> = (0..2050).map(|i| poison_vec(100, i)).collect();
    let mut e = engine(&opts(backend));
    let outcome = e.scope(|s| {
        for ((a, b), g) in pairs.iter().zip(got.chunks_mut(2)) {
            let [ga, gb] = g else {
                unreachable!("pairs of two")
            };
            s.send(a, &data);
            s.recv(b, gb);
            s.send(b, &data);
            s.recv(a, ga);
        }
    });
    let why = "4100 transfers at once: the uring backend runs at most 4096 in one set";
    for (i, r) in outcome.into_results().iter().enumerate() {
        assert!(
            matches!(r, Err(Error::InvalidInput(m)) if m == why),
            "transfer {i}: {r:?}"
        );
    }
    assert_eq!(
        e.stats(),
        ringxfer::EngineStats::default(),
        "no SQE submitted"
    );
    for (i, (a, b)) in pairs.iter().enumerate() {
        for s in [a, b] {
            s.set_nonblocking(true).unwrap();
            let e = std::io::Read::read(&mut &*s, &mut [0u8; 1]).unwrap_err();
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::WouldBlock,
                "pair {i}: nothing sent"
            );
        }
    }
}

/// Set in the child of `c14_send_zc_many_transfers`: the backend to run its body on.
const ZC_CHILD_ENV: &str = "RINGXFER_TEST_ZC_MANY_CHILD";

both_backends! {
    /// C14 with `SEND_ZC` forced (`SendOp::SendZc`, every send's notification one CQE more)
    /// at 1,200 transfers in one set (300 connections, both directions): in a child under
    /// `ulimit -Sn 4096`, once with 16 KiB socket buffers and 64 KiB each way (short
    /// completions; not 4 KiB: with a receive buffer that small, loopback drops zero-copy
    /// segments and TCP retransmits them after its growing timeout, seconds per array — the
    /// kernel's behaviour, `MSG_ZEROCOPY` from plain `send(2)` does the same), once with the kernel's buffers and 1,000 bytes (everything completes at
    /// submission: the CQ overflows), and once as the first with 8 KiB segments, 4 per chain
    /// and a 10 s idle timeout (timed waits, probe cancels). Every CQE arrives once (`cqes == sqes + notifs`), every
    /// send a `SEND_ZC` with one notification, no stall, byte-exact.
    fn c14_send_zc_many_transfers(backend) {
        let name = backend.to_string();
        run_child_test(4096, "send_zc_many_transfers_child", (ZC_CHILD_ENV, &name));
    }
}

/// The child of `c14_send_zc_many_transfers`.
#[test]
#[ignore = "child of c14_send_zc_many_transfers"]
fn send_zc_many_transfers_child() {
    let Ok(backend) = std::env::var(ZC_CHILD_ENV) else {
        return;
    };
    let backend: ringxfer::Backend = backend.parse().unwrap();
    let zc = |mut o: Options| {
        o.uring.send_op = ringxfer::SendOp::SendZc;
        o
    };
    // The third: 8 KiB segments, 4 per chain, and an idle timeout (every wait a timed one,
    // probe cancels making requests complete short): many more SQEs and CQEs per transfer.
    let mut probing = small_chains(backend, Some(Duration::from_secs(10)));
    probing.uring.segment_bytes = 8 << 10;
    let runs = [
        (opts(backend), Some(16 << 10), 64 << 10),
        (opts(backend), None, 1000),
        (probing, Some(16 << 10), 64 << 10),
    ];
    for (k, (o, buf, len)) in runs.into_iter().enumerate() {
        let what = format!("SEND_ZC run {k}, 300 pairs, {len} B each way, buffers {buf:?}");
        let pairs = (0..300)
            .map(|_| buf.map_or_else(tcp_pair, tcp_pair_small_buffers))
            .collect();
        let d = bidir_many(zc(o), pairs, len, &what);
        if backend == ringxfer::Backend::Blocking {
            assert_eq!(d, EngineStats::default(), "{what}");
            continue;
        }
        assert_eq!(d.cqes, d.sqes + d.notifs, "{what}: {d:?}");
        // Every send went out as SEND_ZC, each with its one notification.
        assert_eq!(d.notifs, d.zc_attempted, "{what}: {d:?}");
        assert!(d.zc_attempted >= 600, "{what}: {d:?}");
        assert!(d.sqes >= 1200, "{what}: {d:?}");
        if buf.is_none() {
            // One SQE per transfer, and the overflow path taken (as in `c14` above).
            assert_eq!((d.sqes, d.zc_attempted), (1200, 600), "{what}: {d:?}");
            assert!(
                d.cq_overflow_flushes > 0,
                "{what}: the CQ never overflowed: {d:?}"
            );
        }
    }
}
