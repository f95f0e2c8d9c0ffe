//! Adaptive zero-copy send (`SendOp::Auto`, the default). On loopback the kernel copies every
//! `SEND_ZC`, so by default a local peer is decided at once, without a trial: the sender sends
//! exactly what `SendOp::Send` sends and counts one switched destination. With
//! `UringTuning::zc_trial_local` the trial runs anyway: a large send tries zero-copy on exactly
//! `ZC_TRIAL_SENDS` small requests, sees them all reported as copied and sends everything else
//! as plain `SEND` — and the engine remembers the destination, so the next transfer to it does
//! not try again.
//!
//! The figures are exact: 32 MiB with the default 4 MiB segments and chains of 8 is, on the
//! sending side, a first chain of 4 trial requests of 256 KiB and 4 segments of 4 MiB (17 MiB),
//! then a chain of 4 segments for the remaining 15 MiB: 12 send SQEs, 4 of them `SEND_ZC`, 4
//! notifications. Without a trial it is 8 `SEND`s of 4 MiB. The receiving side is 8 `RECV`s of
//! 4 MiB. No idle timeout, blocking sockets: no probe, no `POLL_ADD`, no cancel.

mod util;

use std::net::TcpStream;

use ringxfer::uring::zc_policy::ZC_TRIAL_SENDS;
use ringxfer::{Backend, Engine, EngineStats, Options, SendOp, UringTuning};
use util::{engine, pattern_vec, poison_vec, tcp_pair, unix_pair};

const MIB: usize = 1 << 20;
const LEN: usize = 32 * MIB;

/// Send SQEs of `LEN` bytes under `SendOp::Auto` on a fresh destination (see module docs).
const TRIAL_SEND_SQES: u64 = 4 + 4 + 4;
/// Send SQEs of `LEN` bytes once the destination is known to copy: 8 × 4 MiB.
const PLAIN_SEND_SQES: u64 = 8;
/// Receive SQEs of `LEN` bytes: 8 × 4 MiB.
const RECV_SQES: u64 = 8;

/// The default options: `SendOp::Auto`, no trial toward a local peer.
fn default_opts(backend: Backend) -> Options {
    let o = util::opts(backend);
    assert_eq!(
        o.uring.send_op,
        SendOp::Auto,
        "adaptive zero-copy is the default"
    );
    assert!(
        !o.uring.zc_trial_local,
        "no trial toward local peers by default"
    );
    assert_eq!(
        (o.uring.segment_bytes, o.uring.chain_sqes),
        (4 << 20, 8),
        "the figures in this file assume the default tuning"
    );
    o
}

/// `SendOp::Auto` running its trial toward loopback peers too.
fn auto_opts(backend: Backend) -> Options {
    let mut o = default_opts(backend);
    o.uring.zc_trial_local = true;
    o
}

/// One scope on each end of `(a, b)`: each end sends its array and receives the other's at
/// the same time. Returns each engine's stats for the scope and checks every byte.
fn exchange(
    (ea, eb): (&mut Engine, &mut Engine),
    (a, b): (&TcpStream, &TcpStream),
    seed: u64,
) -> (EngineStats, EngineStats) {
    let x: Vec<u8> = pattern_vec(LEN, seed);
    let y: Vec<u8> = pattern_vec(LEN, seed + 1);
    let mut x_got: Vec<u8> = poison_vec(LEN, seed);
    let mut y_got: Vec<u8> = poison_vec(LEN, seed + 1);
    let (before_a, before_b) = (ea.stats(), eb.stats());
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            eb.scope(|sc| {
                sc.send(b, &y);
                sc.recv(b, &mut x_got);
            })
            .into_result()
            .expect("b's scope");
        });
        ea.scope(|sc| {
            sc.send(a, &x);
            sc.recv(a, &mut y_got);
        })
        .into_result()
        .expect("a's scope");
        h.join().expect("b's thread");
    });
    util::assert_bytes_eq(&x_got, &x, "a -> b");
    util::assert_bytes_eq(&y_got, &y, "b -> a");
    (ea.stats().since(&before_a), eb.stats().since(&before_b))
}

fn zc(st: &EngineStats) -> (u64, u64, u64, u64) {
    (st.zc_attempted, st.zc_copied, st.zc_kept, st.zc_switched)
}

/// Two exchanges ([`exchange`]) on one pair of engines built from `o`, on one connection:
/// each end's stats for the first and for the second. On the blocking backend it checks that
/// nothing was counted and returns nothing to check further.
fn exchange_twice(o: &Options, seed: u64) -> Vec<(&'static str, EngineStats, EngineStats)> {
    let (mut ea, mut eb) = (engine(o), engine(o));
    let (a, b) = tcp_pair();
    let first = exchange((&mut ea, &mut eb), (&a, &b), seed);
    let second = exchange((&mut ea, &mut eb), (&a, &b), seed + 2);
    let ends = vec![("a", first.0, second.0), ("b", first.1, second.1)];
    if o.backend == Backend::Uring {
        return ends;
    }
    for (end, st1, st2) in ends {
        let zero = EngineStats::default();
        assert_eq!((st1, st2), (zero, zero), "{end}");
    }
    Vec::new()
}

both_backends! {
    /// The default toward a loopback peer: no trial. Both directions of a scope at once, twice
    /// on the same engines: each end decides its (local) destination at once — one switched
    /// destination, no SEND_ZC, no notification, the SQEs of plain SEND — and the second
    /// exchange has nothing left to decide.
    fn local_peer_is_decided_without_a_trial_both_directions(backend) {
        for (end, st1, st2) in exchange_twice(&default_opts(backend), 5) {
            assert_eq!(zc(&st1), (0, 0, 0, 1), "{end}, first: {st1:?}");
            assert_eq!(zc(&st2), (0, 0, 0, 0), "{end}, second: {st2:?}");
            for st in [st1, st2] {
                assert_eq!(
                    (st.sqes, st.cqes, st.notifs),
                    (PLAIN_SEND_SQES + RECV_SQES, PLAIN_SEND_SQES + RECV_SQES, 0),
                    "{end}: {st:?}"
                );
            }
        }
    }

    /// Both directions of a scope at once, the trial asked for toward loopback
    /// (`zc_trial_local`): each end tries 4 trial SEND_ZCs, gets 4 "copied"
    /// reports, switches, and sends the rest as plain SEND; the second exchange on the same
    /// engines tries nothing (the destination is remembered).
    fn adaptive_send_switches_on_loopback_both_directions(backend) {
        for (end, st1, st2) in exchange_twice(&auto_opts(backend), 1) {
            let trial = u64::from(ZC_TRIAL_SENDS);
            assert_eq!(zc(&st1), (trial, trial, 0, 1), "{end}, first: {st1:?}");
            assert_eq!(st1.notifs, trial, "{end}, first: {st1:?}");
            assert_eq!(st1.sqes, TRIAL_SEND_SQES + RECV_SQES, "{end}, first: {st1:?}");
            assert_eq!(st1.cqes, st1.sqes + st1.notifs, "{end}, first: {st1:?}");
            assert_eq!(zc(&st2), (0, 0, 0, 0), "{end}, second: {st2:?}");
            assert_eq!(
                (st2.sqes, st2.notifs),
                (PLAIN_SEND_SQES + RECV_SQES, 0),
                "{end}, second: {st2:?}"
            );
        }
    }
}

/// Sends `LEN` bytes from an engine with `o` on `tx` (received with a default engine on
/// `rx`, bytes checked); the sender's stats.
fn send_with<S>(o: &Options, tx: S, rx: S, registered: bool) -> EngineStats
where
    S: std::os::fd::AsFd + Send + Sync,
{
    send_len_with(o, (tx, rx), LEN, registered)
}

/// [`send_with`] of `len` bytes.
fn send_len_with<S>(o: &Options, (tx, rx): (S, S), len: usize, registered: bool) -> EngineStats
where
    S: std::os::fd::AsFd + Send + Sync,
{
    let data: Vec<u8> = pattern_vec(len, 7);
    let mut got: Vec<u8> = poison_vec(len, 7);
    let mut sender = engine(o);
    let mut receiver = engine(&util::opts(o.backend));
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            if registered {
                let mut reg = sender.register_send(&data);
                util::check_registered(
                    reg.is_registered(),
                    reg.fallback_reason(),
                    len as u64,
                    "register_send",
                );
                reg.send(&tx).expect("registered send");
            } else {
                sender.send_from(&tx, &data).expect("send");
            }
        });
        receiver.recv_into(&rx, &mut got).expect("recv");
        h.join().expect("sender");
    });
    util::assert_bytes_eq(&got, &data, "received");
    sender.stats()
}

#[test]
fn a_send_below_one_segment_does_not_look_at_its_destination() {
    // 1 MiB (< the 4 MiB segment) can neither run a trial nor go zero-copy (no destination
    // kept it): one plain SEND, and the destination is not even looked up, so not decided
    // either (zc_switched 0). 32 MiB from another engine decides it: zc_switched 1.
    require_uring!();
    let o = default_opts(Backend::Uring);
    let (tx, rx) = tcp_pair();
    let st = send_len_with(&o, (&tx, &rx), 1 << 20, false);
    assert_eq!(zc(&st), (0, 0, 0, 0), "{st:?}");
    assert_eq!((st.sqes, st.cqes, st.notifs), (1, 1, 0), "{st:?}");
    let st = send_len_with(&o, (&tx, &rx), LEN, false);
    assert_eq!(zc(&st), (0, 0, 0, 1), "{st:?}");
    assert_eq!((st.sqes, st.notifs), (PLAIN_SEND_SQES, 0), "{st:?}");
}

#[test]
fn adaptive_trial_from_registered_buffers_switches() {
    require_uring!();
    let o = auto_opts(Backend::Uring);
    let (tx, rx) = tcp_pair();
    let st = send_with(&o, tx, rx, true);
    let trial = u64::from(ZC_TRIAL_SENDS);
    assert_eq!(zc(&st), (trial, trial, 0, 1), "{st:?}");
    assert_eq!((st.sqes, st.notifs), (TRIAL_SEND_SQES, trial), "{st:?}");
}

#[test]
fn forced_ops_keep_their_meaning() {
    require_uring!();
    let with = |send_op| Options {
        uring: UringTuning {
            send_op,
            ..UringTuning::default()
        },
        ..util::opts(Backend::Uring)
    };
    // Plain SEND: never a SEND_ZC.
    let (tx, rx) = tcp_pair();
    let st = send_with(&with(SendOp::Send), tx, rx, false);
    assert_eq!(zc(&st), (0, 0, 0, 0), "{st:?}");
    assert_eq!((st.sqes, st.notifs), (PLAIN_SEND_SQES, 0), "{st:?}");
    // Forced SEND_ZC: every request, no usage report asked, so nothing counted as copied or
    // kept and nothing switched.
    let (tx, rx) = tcp_pair();
    let st = send_with(&with(SendOp::SendZc), tx, rx, false);
    assert_eq!(zc(&st), (PLAIN_SEND_SQES, 0, 0, 0), "{st:?}");
    assert_eq!(
        (st.sqes, st.notifs),
        (PLAIN_SEND_SQES, PLAIN_SEND_SQES),
        "{st:?}"
    );
}

#[test]
fn adaptive_on_a_unix_socket_is_plain_send() {
    require_uring!();
    let o = auto_opts(Backend::Uring);
    let (tx, rx) = unix_pair();
    let st = send_with(&o, tx, rx, false);
    assert_eq!(zc(&st), (0, 0, 0, 0), "{st:?}");
    assert_eq!((st.sqes, st.notifs), (PLAIN_SEND_SQES, 0), "{st:?}");
}

#[test]
fn adaptive_with_a_tiny_send_buffer_is_plain_send() {
    // SO_SNDBUF 4096: trial SEND_ZCs collapsed the loopback receiver's window (the connection
    // crawled at ~9 KB/s), so such sockets never try (`zc_policy::ZC_MIN_SNDBUF`).
    require_uring!();
    let o = auto_opts(Backend::Uring);
    let (tx, rx) = util::tcp_pair_small_buffers(4096);
    let st = send_with(&o, tx, rx, false);
    assert_eq!(zc(&st), (0, 0, 0, 0), "{st:?}");
    assert_eq!((st.sqes, st.notifs), (PLAIN_SEND_SQES, 0), "{st:?}");
}

#[test]
fn adaptive_with_an_idle_timeout_is_plain_send() {
    // A SEND_ZC queued to a peer that stops reading holds the pages until the connection is
    // aborted; with an idle timeout the default op must still time out with `TimedOut`
    // (tests/regressions.rs C12), so it does not try zero-copy.
    require_uring!();
    let o = Options {
        idle_timeout: Some(std::time::Duration::from_secs(30)),
        ..auto_opts(Backend::Uring)
    };
    let (tx, rx) = tcp_pair();
    let st = send_with(&o, tx, rx, false);
    assert_eq!(zc(&st), (0, 0, 0, 0), "{st:?}");
    assert_eq!(st.notifs, 0, "{st:?}");
}
