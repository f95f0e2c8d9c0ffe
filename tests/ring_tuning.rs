//! Tuning knobs of the ring ([`UringTuning`]): fixed files.
//!
//! With `fixed_files` every SQE of a transfer chain addresses its socket through the ring's
//! file table (`EngineStats::fixed_file_sqes`), the set adds no SQE (the sockets are
//! installed and removed with `io_uring_register`, not SQEs), and the table lets the socket go
//! when the call returns. Every test runs on both backends (the blocking one ignores the
//! knob and counts nothing) and checks the bytes exactly; short completions are forced with
//! 4 KiB socket buffers and non-blocking sockets. A kernel that refuses the table (here:
//! `RLIMIT_NOFILE` below its 64 slots) leaves every SQE on its fd.

mod util;

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use ringxfer::{Backend, EngineStats, Options, SendOp, UringTuning};
use util::*;

/// 64 KiB segments, chains of 8, plain `SEND` (so a send's SQEs are its segments), fixed
/// files on or off.
fn tuned(backend: Backend, fixed_files: bool) -> Options {
    Options {
        uring: UringTuning {
            send_op: SendOp::Send,
            segment_bytes: 64 << 10,
            chain_sqes: 8,
            fixed_files,
            ..UringTuning::default()
        },
        ..opts(backend)
    }
}

/// What a uring engine counts for `sqes` transfer SQEs, each with its CQE, `fixed` of them
/// through the file table; nothing on the blocking backend.
fn counts(backend: Backend, sqes: u64, fixed: u64) -> EngineStats {
    match backend {
        Backend::Uring => {
            // `EngineStats` is `#[non_exhaustive]`: start from zero and set the fields.
            let mut s = EngineStats::default();
            s.sqes = sqes;
            s.cqes = sqes;
            s.fixed_file_sqes = fixed;
            s
        }
        _ => EngineStats::default(),
    }
}

/// 1 MiB + 5 bytes (17 segments of 64 KiB, in chains of 8, 8 and 1).
const LEN: usize = (1 << 20) + 5;
const SEGMENTS: u64 = 17;

/// `a` sends `LEN` pattern bytes to `b` over `pair` (the receiver starting `recv_delay` late, so
/// that the sends complete short against the small buffers), then `b` sends other bytes back
/// to `a`; both arrive byte for byte. Returns the engines' stats (send + receive each).
fn both_ways(
    o: &Options,
    (s1, s2): (TcpStream, TcpStream),
    recv_delay: Duration,
) -> (EngineStats, EngineStats) {
    let (mut a, mut b) = (engine(o), engine(o));
    for (round, seed) in [(0, 21u64), (1, 22)] {
        let data: Vec<u8> = pattern_vec(LEN, seed);
        let mut got: Vec<u8> = poison_vec(LEN, seed);
        let (tx, rx, tx_sock, rx_sock) = if round == 0 {
            (&mut a, &mut b, &s1, &s2)
        } else {
            (&mut b, &mut a, &s2, &s1)
        };
        std::thread::scope(|s| {
            let h = s.spawn(|| tx.send_from(tx_sock, &data));
            std::thread::sleep(recv_delay);
            rx.recv_into(rx_sock, &mut got).expect("recv_into");
            h.join().unwrap().expect("send_from");
        });
        assert_bytes_eq(&got, &data, &format!("round {round}"));
    }
    (a.stats(), b.stats())
}

both_backends! {
    /// 4 KiB socket buffers and a late receiver, both directions over one connection: every
    /// SQE of both ends went through the file table, and the knob added none (17 segments
    /// sent and 17 received per end; `MSG_WAITALL` retries the short transfers inside each
    /// request).
    fn fixed_files_small_buffers_both_directions(backend) {
        let o = tuned(backend, true);
        let pair = tcp_pair_small_buffers(4096);
        let (a, b) = both_ways(&o, pair, Duration::from_millis(50));
        let want = counts(backend, 2 * SEGMENTS, 2 * SEGMENTS);
        assert_eq!((a, b), (want, want));
    }

    /// The same transfers without the knob: the same SQEs, none through the table.
    fn without_fixed_files_no_table(backend) {
        let o = tuned(backend, false);
        let pair = tcp_pair_small_buffers(4096);
        let (a, b) = both_ways(&o, pair, Duration::ZERO);
        let want = counts(backend, 2 * SEGMENTS, 0);
        assert_eq!((a, b), (want, want));
    }

    /// Both directions at once in one set on each end (a scope of a send and a receive on the
    /// same socket): two slots per set; each end's 5 + 5 SQEs (300,000 bytes each way in
    /// 64 KiB segments) all through the table.
    fn fixed_files_bidirectional_set(backend) {
        let o = tuned(backend, true);
        let (s1, s2) = tcp_pair_small_buffers(4096);
        let (x, y): (Vec<u8>, Vec<u8>) = (pattern_vec(300_000, 1), pattern_vec(300_000, 2));
        let (mut gx, mut gy): (Vec<u8>, Vec<u8>) = (poison_vec(300_000, 3), poison_vec(300_000, 4));
        let (mut a, mut b) = (engine(&o), engine(&o));
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                b.scope(|sc| {
                    sc.recv(&s2, &mut gx);
                    sc.send(&s2, &y);
                })
                .into_result()
                .expect("b's set")
            });
            a.scope(|sc| {
                sc.send(&s1, &x);
                sc.recv(&s1, &mut gy);
            })
            .into_result()
            .expect("a's set");
            h.join().unwrap();
        });
        assert_bytes_eq(&gx, &x, "a to b");
        assert_bytes_eq(&gy, &y, "b to a");
        let want = counts(backend, 10, 10);
        assert_eq!((a.stats(), b.stats()), (want, want));
    }

    /// C06 with fixed files: a non-blocking receiving socket and a slow writer make
    /// `READ_FIXED`s (which honour `O_NONBLOCK`; a `RECV` waits by poll on Linux 6.18) fail
    /// with `-EAGAIN`, so chains start with a linked `POLL_ADD`: it addresses the socket
    /// through the table too (every SQE of the receive is counted), and there are more SQEs
    /// than the 256 segments.
    fn fixed_files_nonblocking_receiver_polls_through_the_table(backend) {
        let o = Options {
            register: ringxfer::RegisterPolicy::Always,
            uring: UringTuning {
                recv_op: ringxfer::RecvOp::ReadFixed,
                ..tuned(backend, true).uring
            },
            ..tuned(backend, true)
        };
        let (tx, rx) = tcp_pair_small_buffers(4096);
        rx.set_nonblocking(true).unwrap();
        let data: Vec<u8> = pattern_vec(16 << 20, 400);
        let mut got: Vec<u8> = poison_vec(16 << 20, 400);
        let writer = std::thread::spawn(move || {
            slow_write_all(&tx, &data, 5000, 1024, Duration::from_millis(2));
            (data, tx)
        });
        let mut e = engine(&o);
        e.recv_into(&rx, &mut got).expect("recv_into");
        let (data, _tx) = writer.join().unwrap();
        assert_bytes_eq(&got, &data, "non-blocking receive");
        let st = e.stats();
        match backend {
            Backend::Uring => {
                assert!(st.sqes > 256, "POLL_ADDs were issued: {st:?}");
                assert_eq!(
                    (st.cqes, st.fixed_file_sqes),
                    (st.sqes, st.sqes),
                    "{st:?}"
                );
            }
            _ => assert_eq!(st, EngineStats::default()),
        }
    }

    /// The table does not keep a socket alive: once the sending call has returned and the
    /// caller drops its socket, the peer reads the data and then end-of-file (a slot left
    /// filled would hold the socket's file open: no FIN, and this read would time out).
    fn fixed_files_release_the_socket(backend) {
        let o = tuned(backend, true);
        let (tx, mut rx) = tcp_pair();
        let data: Vec<u8> = pattern_vec(200_000, 9);
        let mut e = engine(&o);
        e.send_from(&tx, &data).expect("send_from");
        drop(tx);
        rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = Vec::new();
        rx.read_to_end(&mut got).expect("the peer sees end-of-file");
        assert_bytes_eq(&got, &data, "sent before close");
        assert_eq!(e.stats(), counts(backend, 4, 4));
    }

    /// A set of 65 sends (and one of 65 receives) on 65 connections, 3 bytes each: the
    /// table's 64 slots go to the first 64 transfers, the 65th uses its fd — 65 SQEs, 64 of
    /// them through the table, on each end.
    fn fixed_files_more_transfers_than_slots(backend) {
        let o = tuned(backend, true);
        let pairs: Vec<(TcpStream, TcpStream)> = (0..65).map(|_| tcp_pair()).collect();
        let data: Vec<[u8; 3]> = (0..65u8).map(|i| [i, i ^ 0x5a, 255 - i]).collect();
        let mut got = vec![[0u8; 3]; 65];
        let (mut a, mut b) = (engine(&o), engine(&o));
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                b.scope(|sc| {
                    for (p, g) in pairs.iter().zip(got.iter_mut()) {
                        sc.recv(&p.1, g);
                    }
                })
                .into_result()
                .expect("receives")
            });
            a.scope(|sc| {
                for (p, d) in pairs.iter().zip(&data) {
                    sc.send(&p.0, d);
                }
            })
            .into_result()
            .expect("sends");
            h.join().unwrap();
        });
        assert_eq!(got, data);
        let want = counts(backend, 65, 64);
        assert_eq!((a.stats(), b.stats()), (want, want));
    }

    /// An engine with fixed files moved to another thread (a `SINGLE_ISSUER` ring is rebuilt
    /// there, without the old file table): transfers before and after the move all go
    /// through a table.
    fn fixed_files_engine_moved_to_another_thread(backend) {
        let o = tuned(backend, true);
        let (s1, s2) = tcp_pair();
        let mut rx = engine(&o);
        let mut tx = engine(&o);
        let data: Vec<u8> = pattern_vec(100_000, 5);
        let mut got: Vec<u8> = poison_vec(100_000, 5);
        for round in 0..2 {
            // Round 0: the sender on a scoped thread; round 1: on this one.
            std::thread::scope(|s| {
                if round == 0 {
                    let h = s.spawn(|| tx.send_from(&s1, &data));
                    rx.recv_into(&s2, &mut got).expect("recv");
                    h.join().unwrap().expect("send");
                } else {
                    let h = s.spawn(|| rx.recv_into(&s2, &mut got));
                    tx.send_from(&s1, &data).expect("send");
                    h.join().unwrap().expect("recv");
                }
            });
            assert_bytes_eq(&got, &data, &format!("round {round}"));
            got.fill(0);
        }
        let want = counts(backend, 4, 4);
        assert_eq!((tx.stats(), rx.stats()), (want, want));
    }
}

// ---------------------------------------------------------------------------------------------
// The kernel refusing the file table: a child process with RLIMIT_NOFILE below the table
// ---------------------------------------------------------------------------------------------

/// Set in the child: run [`refused_table_child`]'s body.
const CHILD_ENV: &str = "RINGXFER_TEST_FIXED_FILES_CHILD";

/// The sparse table's 64 slots exceed an `RLIMIT_NOFILE` of 32, so the kernel refuses it
/// (`EMFILE`): transfers still arrive byte for byte, every SQE addressing its socket by fd —
/// the same SQEs, none through the table. Runs this test binary again as a child under
/// `ulimit -Sn 32`.
#[test]
fn fixed_files_refused_table_falls_back_to_fds() {
    require_uring!();
    run_child_test(32, "refused_table_child", (CHILD_ENV, "1"));
}

/// The child of [`fixed_files_refused_table_falls_back_to_fds`].
#[test]
#[ignore = "child of fixed_files_refused_table_falls_back_to_fds"]
fn refused_table_child() {
    if std::env::var(CHILD_ENV).is_err() {
        return;
    }
    let o = tuned(Backend::Uring, true);
    let (a, b) = both_ways(&o, tcp_pair_small_buffers(4096), Duration::from_millis(20));
    let want = counts(Backend::Uring, 2 * SEGMENTS, 0);
    assert_eq!((a, b), (want, want));
}
