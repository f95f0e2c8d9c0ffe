//! `Engine::stats()`: the SQEs and CQEs a transfer really used, exactly as the planner cuts it.
//!
//! 1 MiB with 64 KiB segments and chains of 8 is 16 segments in 2 link chains: 16 SQEs and 16
//! result CQEs on each end, whatever the socket buffers (a `SEND`/`RECV` with `MSG_WAITALL`
//! retries a partial transfer inside the request, so a small buffer adds no CQE). The blocking
//! backend uses no ring: all zero. On the uring backend every transfer, however small, goes
//! through the ring and counts.

mod util;

use std::net::TcpStream;

use ringxfer::{Backend, EngineStats, Options, RegisterPolicy, SendOp, UringTuning};
use util::{engine, fill_pattern, opts, tcp_pair, tcp_pair_small_buffers};

const MIB: usize = 1 << 20;

fn tuned(backend: Backend, send_op: SendOp) -> Options {
    Options {
        uring: UringTuning {
            send_op,
            segment_bytes: 64 << 10,
            chain_sqes: 8,
            ..UringTuning::default()
        },
        ..opts(backend)
    }
}

/// Sends `len` pattern bytes from a `send_opts` engine on `tx` while a `recv_opts` engine
/// receives them on `rx`; both engines' stats afterwards (each engine is fresh, so that is
/// the transfer's) and checks the bytes.
fn transfer(
    (tx, rx): (TcpStream, TcpStream),
    len: usize,
    send_opts: &Options,
    recv_opts: &Options,
) -> (EngineStats, EngineStats) {
    let mut data = vec![0u8; len];
    fill_pattern(&mut data, len as u64);
    let mut sender = engine(send_opts);
    let mut receiver = engine(recv_opts);
    let mut got = vec![0u8; len];
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            sender.send_from(&tx, &data).expect("send");
        });
        receiver.recv_into(&rx, &mut got).expect("recv");
        h.join().unwrap();
    });
    util::assert_bytes_eq(&got, &data, "received");
    (sender.stats(), receiver.stats())
}

fn counts(sqes: u64, cqes: u64, notifs: u64) -> EngineStats {
    // `EngineStats` is `#[non_exhaustive]`: start from zero and set the fields.
    let mut s = EngineStats::default();
    s.sqes = sqes;
    s.cqes = cqes;
    s.notifs = notifs;
    s
}

both_backends! {
    /// 1 MiB, 64 KiB segments, chains of 8: 16 SQEs and 16 CQEs per end on the ring.
    fn one_mib_in_64k_segments(backend) {
        let o = tuned(backend, SendOp::Send);
        let (tx, rx) = transfer(tcp_pair(), MIB, &o, &o);
        let want = match backend {
            Backend::Uring => counts(16, 16, 0),
            _ => EngineStats::default(),
        };
        assert_eq!((tx, rx), (want, want));
    }

    /// The same with 4 KiB socket buffers: the kernel retries the short sends and receives
    /// inside each `MSG_WAITALL` request, so no SQE or CQE is added.
    fn small_socket_buffers_add_no_completion(backend) {
        let o = tuned(backend, SendOp::Send);
        let (tx, rx) = transfer(tcp_pair_small_buffers(4096), MIB, &o, &o);
        let want = match backend {
            Backend::Uring => counts(16, 16, 0),
            _ => EngineStats::default(),
        };
        assert_eq!((tx, rx), (want, want));
    }

    /// Counters are cumulative over the engine's life; `since` gives one transfer's share.
    fn cumulative_over_transfers(backend) {
        let o = tuned(backend, SendOp::Send);
        let (a, b) = tcp_pair();
        let mut data = vec![0u8; 3 * (64 << 10)]; // 3 segments, one chain
        fill_pattern(&mut data, 7);
        let mut sender = engine(&o);
        let mut receiver = engine(&o);
        let mut got = vec![0u8; data.len()];
        let mut snapshots = vec![sender.stats()];
        for _ in 0..2 {
            std::thread::scope(|s| {
                let h = s.spawn(|| sender.send_from(&a, &data).expect("send"));
                receiver.recv_into(&b, &mut got).expect("recv");
                h.join().unwrap();
            });
            snapshots.push(sender.stats());
            assert_eq!(got, data);
        }
        let per = match backend {
            Backend::Uring => counts(3, 3, 0),
            _ => EngineStats::default(),
        };
        assert_eq!(snapshots[1].since(&snapshots[0]), per);
        assert_eq!(snapshots[2].since(&snapshots[1]), per);
        assert_eq!(receiver.stats().since(&EngineStats::default()), snapshots[2]);
    }

    /// Default options: there is no direct-syscall bypass any more, so even a 1-byte and a
    /// 64 KiB transfer are one 4 MiB-segment SQE and its CQE per end on the uring backend.
    fn small_transfers_use_the_ring(backend) {
        let o = util::opts(backend);
        let want = match backend {
            Backend::Uring => counts(1, 1, 0),
            _ => EngineStats::default(),
        };
        for len in [1, 4 << 10, 64 << 10, 512 << 10] {
            let (tx, rx) = transfer(tcp_pair(), len, &o, &o);
            assert_eq!((tx, rx), (want, want), "{len} bytes");
        }
    }
}

both_backends! {
    /// A receive that times out: the idle-timeout probes cancel the pending `RECV` and
    /// resubmit it, and those `ASYNC_CANCEL` SQEs count too; every SQE has its CQE when the
    /// call returns (`cqes == sqes`, no notification on a receive).
    fn timed_out_receive_counts_its_cancels(backend) {
        let o = Options {
            idle_timeout: Some(std::time::Duration::from_millis(200)),
            ..tuned(backend, SendOp::Send)
        };
        let (_tx, rx) = tcp_pair(); // the peer stays connected and sends nothing
        let mut e = engine(&o);
        let mut buf = vec![0u8; MIB];
        let err = e.recv_into(&rx, &mut buf).unwrap_err();
        assert!(
            matches!(err, ringxfer::Error::TimedOut { transferred: 0, expected, .. } if expected == MIB as u64),
            "{err:?}"
        );
        let st = e.stats();
        match backend {
            Backend::Uring => {
                // At least: the first chain, one probe's cancels, the resubmitted chain.
                assert!(st.sqes >= 3, "{st:?}");
                assert_eq!((st.cqes, st.notifs), (st.sqes, 0), "{st:?}");
            }
            _ => assert_eq!(st, EngineStats::default()),
        }
    }
}

/// `SEND_ZC`: each of the 16 sends posts a result CQE and, once the kernel has released its
/// pages, a notification CQE: 16 SQEs, 32 CQEs of which 16 notifications.
#[test]
fn send_zc_counts_notifications() {
    require_uring!();
    let send = Options {
        register: RegisterPolicy::Never,
        ..tuned(Backend::Uring, SendOp::SendZc)
    };
    let recv = tuned(Backend::Uring, SendOp::Send);
    let (tx, rx) = transfer(tcp_pair(), MIB, &send, &recv);
    // Every one is a forced SEND_ZC (`zc_attempted`), asked for no usage report.
    let mut want = counts(16, 32, 16);
    want.zc_attempted = 16;
    assert_eq!(tx, want);
    assert_eq!(rx, counts(16, 16, 0));
    assert_eq!(tx.cqes, tx.sqes + tx.notifs);
}

/// A new engine has used nothing.
#[test]
fn fresh_engines_are_zero() {
    for b in [Backend::Blocking, Backend::Uring] {
        if b == Backend::Uring && !util::uring_available() {
            continue;
        }
        assert_eq!(engine(&opts(b)).stats(), EngineStats::default());
    }
}
