//! A peer that goes away early: EOF on the receive side (`Error::UnexpectedEof` with exact
//! byte counts), resets on the send side (`Error::Io` with `ECONNRESET`/`EPIPE` and the bytes
//! so far), always within a bounded time; cases C07 and C11.

mod util;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use bytemuck::Pod;
use ringxfer::{Backend, Error, Options, RecvOp, RegisterPolicy, SendOp};
use util::*;

const MIB: usize = 1 << 20;
/// Every call here must return within this (the promise is "never a hang").
const LIMIT: Duration = Duration::from_secs(10);

/// How the peer ends its side after writing.
#[derive(Debug, Clone, Copy)]
enum End {
    /// `close` (drop the socket).
    Close,
    /// `shutdown(SHUT_WR)` and keep the socket open (C07); closed only after the receiver
    /// returned.
    ShutdownWrite,
}

/// The peer writes exactly `sent` bytes of the pattern with plain `std` `write_all` (in
/// pieces of `piece` bytes, pausing `pause` between them), then ends its side; the engine
/// expects `n` elements of `T`. Asserts `UnexpectedEof { transferred: sent, expected }`, that
/// the first `sent` bytes arrived intact, and that the call returned within [`LIMIT`].
fn eof_case<T: Pod + Send>(
    recv_opts: Options,
    n: usize,
    sent: usize,
    piece: usize,
    pause: Duration,
    end: End,
    guard: bool,
) {
    let expected = n * size_of::<T>();
    assert!(sent < expected);
    let what = format!(
        "{:?}: {sent} of {expected} bytes then {end:?}{}",
        recv_opts.backend,
        if guard { ", pre-registered" } else { "" }
    );
    let w = what.clone();
    // The arrays are prepared outside the timed part (debug builds fill them slowly).
    let data: Vec<u8> = pattern_vec(sent, 9);
    let mut got: Vec<T> = poison_vec(n, 9);
    within(LIMIT, &what, move || {
        let (tx, rx) = tcp_pair();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let writer = std::thread::spawn(move || {
            let mut s = &tx;
            for c in data.chunks(piece.max(1)) {
                s.write_all(c).expect("peer write_all");
                if !pause.is_zero() {
                    std::thread::sleep(pause);
                }
            }
            match end {
                End::Close => drop(tx),
                End::ShutdownWrite => {
                    tx.shutdown(Shutdown::Write).unwrap();
                    // The connection stays open until the receiver has returned.
                    let _ = done_rx.recv();
                    drop(tx);
                }
            }
            data
        });
        let t0 = Instant::now();
        let mut e = engine(&recv_opts);
        let r = if guard {
            let mut g = e.register_recv(&mut got);
            check_registered(
                g.is_registered() || recv_opts.backend == Backend::Blocking,
                g.fallback_reason(),
                expected as u64,
                "register_recv",
            );
            g.recv(&rx)
        } else {
            e.recv_into(&rx, &mut got)
        };
        let dt = t0.elapsed();
        let _ = done_tx.send(());
        let data = writer.join().expect("writer panicked");
        match r {
            Err(Error::UnexpectedEof {
                transferred,
                expected: exp,
            }) => {
                assert_eq!(transferred, sent as u64, "{w}: transferred");
                assert_eq!(exp, expected as u64, "{w}: expected");
            }
            other => panic!("{w}: want UnexpectedEof, got {other:?}"),
        }
        let got_bytes: &[u8] = bytemuck::cast_slice(&got);
        assert_bytes_eq(&got_bytes[..sent], &data, &format!("{w}: the valid prefix"));
        eprintln!("{w}: returned after {dt:?}");
    });
}

both_backends! {
    /// The case: the peer closes after exactly half the bytes.
    fn half_then_close_f64_8mib(backend) {
        eof_case::<f64>(opts(backend), MIB, 4 * MIB, 1 << 30, Duration::ZERO, End::Close, false)
    }

    fn half_then_close_u8_64mib(backend) {
        eof_case::<u8>(opts(backend), 64 * MIB, 32 * MIB, 1 << 30, Duration::ZERO, End::Close, false)
    }

    /// Counts are bytes, not elements: a cut in the middle of an element.
    fn cut_inside_an_element(backend) {
        eof_case::<f64>(opts(backend), 1000, 4001, 1 << 30, Duration::ZERO, End::Close, false)
    }

    /// Nothing at all, then close.
    fn nothing_then_close(backend) {
        eof_case::<i64>(opts(backend), 1000, 0, 1, Duration::ZERO, End::Close, false)
    }

    /// All but the last byte.
    fn all_but_one_byte_then_close(backend) {
        eof_case::<f32>(opts(backend), 262_145, 262_145 * 4 - 1, 1 << 30, Duration::ZERO, End::Close, false)
    }

    /// Through a pre-registered guard.
    fn half_then_close_guard(backend) {
        eof_case::<f64>(opts(backend), MIB, 4 * MIB, 1 << 30, Duration::ZERO, End::Close, true)
    }

    /// C07: the peer shuts its write side down mid-transfer and keeps the connection open.
    fn c07_peer_shutdown_write_mid_transfer(backend) {
        eof_case::<f64>(opts(backend), MIB, 4 * MIB, 1 << 30, Duration::ZERO, End::ShutdownWrite, false)
    }

    /// C07 with the half written in dribbles, so receives complete in pieces before the end.
    fn c07_dribble_then_shutdown_write(backend) {
        eof_case::<u8>(opts(backend), 4 * MIB, 2 * MIB, 100_000, Duration::from_millis(1), End::ShutdownWrite, false)
    }
}

/// C07 on uring with short segments and long chains, so the short completion lands in the
/// middle of a chain whose later SQEs are canceled; `RECV` and `READ_FIXED`, one-shot and
/// pre-registered.
#[test]
fn uring_c07_short_mid_chain() {
    require_uring!();
    for recv_op in [RecvOp::Recv, RecvOp::ReadFixed] {
        for guard in [false, true] {
            for end in [End::Close, End::ShutdownWrite] {
                let o = tuned(SendOp::Send, recv_op, 65536, 8);
                eof_case::<u8>(
                    o.clone(),
                    4 * MIB,
                    2 * MIB + 12345,
                    1 << 30,
                    Duration::ZERO,
                    end,
                    guard,
                );
                eof_case::<u8>(
                    o,
                    4 * MIB,
                    1_000_001,
                    65536,
                    Duration::from_millis(1),
                    end,
                    guard,
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// C11: EOF read as "no data yet" — the receiver must not spin while it waits
// ---------------------------------------------------------------------------------------------

/// C11: the sender sends fewer bytes than expected, holds the connection open for a while,
/// then closes. The receiver gets `UnexpectedEof` naming bytes received and expected, and
/// burns (almost) no CPU while it waits — no busy loop on a 0-byte receive or on EAGAIN.
fn c11(recv_opts: Options, nonblocking: bool) {
    let hold = Duration::from_millis(800);
    let what = format!("C11 {:?} nonblocking={nonblocking}", recv_opts.backend);
    let w = what.clone();
    within(LIMIT, &what, move || {
        let (tx, rx) = tcp_pair();
        if nonblocking {
            rx.set_nonblocking(true).unwrap();
        }
        let writer = std::thread::spawn(move || {
            (&tx).write_all(&[7u8; 1000]).unwrap();
            std::thread::sleep(hold);
            drop(tx);
        });
        let mut got = vec![0u8; 4096];
        let mut e = engine(&recv_opts);
        let (cpu0, t0) = (thread_cpu_time(), Instant::now());
        let r = e.recv_into(&rx, &mut got);
        let (cpu, wall) = (thread_cpu_time() - cpu0, t0.elapsed());
        writer.join().unwrap();
        match r {
            Err(Error::UnexpectedEof {
                transferred: 1000,
                expected: 4096,
            }) => {}
            other => panic!("{w}: want UnexpectedEof {{ 1000, 4096 }}, got {other:?}"),
        }
        assert!(got[..1000].iter().all(|&b| b == 7), "{w}: prefix");
        assert!(
            wall >= hold / 2,
            "{w}: returned after {wall:?}, before the peer closed"
        );
        assert!(
            cpu < Duration::from_millis(200),
            "{w}: receiver used {cpu:?} of CPU in {wall:?} of waiting (busy loop)"
        );
        eprintln!("{w}: waited {wall:?} using {cpu:?} CPU");
    });
}

both_backends! {
    fn c11_fewer_bytes_then_close_no_busy_loop(backend) { c11(opts(backend), false) }
    fn c11_nonblocking_socket_no_busy_loop(backend) { c11(opts(backend), true) }
}

#[test]
fn uring_c11_read_fixed_no_busy_loop() {
    require_uring!();
    c11(tuned(SendOp::Send, RecvOp::ReadFixed, 65536, 4), false);
    c11(tuned(SendOp::Send, RecvOp::ReadFixed, 65536, 4), true);
}

// ---------------------------------------------------------------------------------------------
// The sending side: the peer resets (or closes without reading) while we send
// ---------------------------------------------------------------------------------------------

/// How the peer goes away while the engine sends.
#[derive(Debug, Clone, Copy)]
enum Gone {
    /// Reads this many bytes, then `SO_LINGER` 0 and close: a TCP reset.
    ResetAfter(usize),
    /// Reads, then `shutdown(SHUT_RDWR)`, waits, closes with unread data (C07, send side).
    ShutdownBothAfter(usize),
}

/// The engine sends 64 MiB; the peer reads some, then goes away. Expects `Error::Io` from
/// `send` with `ECONNRESET` or `EPIPE`, `transferred` at least what the peer read and less
/// than expected, within [`LIMIT`].
fn peer_gone_while_sending(send_opts: Options, gone: Gone) {
    let total = 64 * MIB;
    let what = format!("{:?} {:?} sending {total} bytes", send_opts.backend, gone);
    let w = what.clone();
    let data: Vec<u8> = pattern_vec(total, 11);
    within(LIMIT, &what, move || {
        let (tx, rx) = tcp_pair();
        let t0 = Instant::now();
        let sender = spawn_send(send_opts, tx, data);
        let read_first = match gone {
            Gone::ResetAfter(n) | Gone::ShutdownBothAfter(n) => n,
        };
        let mut buf = vec![0u8; read_first];
        (&rx).read_exact(&mut buf).expect("peer read");
        match gone {
            Gone::ResetAfter(_) => reset(rx),
            Gone::ShutdownBothAfter(_) => {
                rx.shutdown(Shutdown::Both).unwrap();
                std::thread::sleep(Duration::from_millis(100));
                drop(rx);
            }
        }
        let (data, r, _tx) = sender.join().expect("sender panicked");
        let dt = t0.elapsed();
        assert_bytes_eq(
            &buf,
            &data[..read_first],
            &format!("{w}: what the peer read"),
        );
        match &r {
            Err(e @ Error::Io { op, .. }) => {
                let errno = e.raw_os_error();
                assert!(
                    errno == Some(libc::ECONNRESET) || errno == Some(libc::EPIPE),
                    "{w}: want ECONNRESET or EPIPE, got {e} ({e:?})"
                );
                assert_eq!(*op, "send", "{w}: op");
                let t = e.transferred().unwrap();
                assert!(
                    t >= read_first as u64 && t < total as u64,
                    "{w}: transferred {t} not in [{read_first}, {total})"
                );
            }
            other => panic!("{w}: want Error::Io(ECONNRESET|EPIPE), got {other:?}"),
        }
        eprintln!("{w}: {:?} after {dt:?}", r.unwrap_err());
    });
}

both_backends! {
    /// The receiving side: the peer sends 100,000 bytes, waits, then resets (`SO_LINGER` 0).
    /// The receive fails with `Error::Io` `ECONNRESET` after exactly those bytes, not with
    /// `UnexpectedEof` (uring reported a reset as a clean close before: a `MSG_WAITALL`
    /// receive returns its partial count and the next one reads 0 on a reset socket).
    fn reset_while_receiving_is_econnreset(backend) {
        let (tx, rx) = tcp_pair();
        let part: Vec<u8> = pattern_vec(100_000, 7);
        let p = part.clone();
        let peer = std::thread::spawn(move || {
            (&tx).write_all(&p).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            reset(tx);
        });
        let mut got: Vec<u8> = poison_vec(1_000_000, 7);
        let r = engine(&opts(backend)).recv_into(&rx, &mut got);
        peer.join().unwrap();
        match r {
            Err(Error::Io { op: "recv", transferred, expected, source }) => {
                assert_eq!((transferred, expected), (100_000, 1_000_000), "{backend}");
                assert_eq!(source.raw_os_error(), Some(libc::ECONNRESET), "{backend}: {source}");
            }
            other => panic!("{backend}: want Io(recv, ECONNRESET), got {other:?}"),
        }
        assert_eq!(&got[..100_000], &part[..], "{backend}: the bytes before the reset");
    }

    fn reset_while_sending_64mib(backend) {
        peer_gone_while_sending(opts(backend), Gone::ResetAfter(MIB))
    }

    fn reset_before_reading_anything(backend) {
        peer_gone_while_sending(opts(backend), Gone::ResetAfter(0))
    }

    /// C07, send side: the peer shuts both directions down mid-transfer, then closes.
    fn c07_peer_shutdown_both_while_sending(backend) {
        peer_gone_while_sending(opts(backend), Gone::ShutdownBothAfter(3 * MIB + 1))
    }
}

/// The send-side reset with every uring send op and chain shapes where the failure lands
/// mid-chain.
fn uring_reset_variant(send_op: SendOp, register: RegisterPolicy) {
    for (segment, chain) in [(65536, 8), (MIB as u32, 1), (16 * MIB as u32, 8)] {
        let o = Options {
            register,
            ..tuned(send_op, RecvOp::Recv, segment, chain)
        };
        peer_gone_while_sending(o.clone(), Gone::ResetAfter(MIB));
        peer_gone_while_sending(o, Gone::ShutdownBothAfter(2 * MIB));
    }
}

#[test]
fn uring_reset_while_sending_send_registered() {
    require_uring!();
    uring_reset_variant(SendOp::Send, RegisterPolicy::Always);
}

#[test]
fn uring_reset_while_sending_write_fixed() {
    require_uring!();
    uring_reset_variant(SendOp::WriteFixed, RegisterPolicy::Always);
}

#[test]
fn uring_reset_while_sending_send_zc() {
    require_uring!();
    if !ringxfer::probe().send_zc {
        eprintln!("skipped: SEND_ZC unsupported");
        return;
    }
    uring_reset_variant(SendOp::SendZc, RegisterPolicy::Always);
}

#[test]
fn uring_reset_while_sending_send_zc_unregistered() {
    require_uring!();
    if !ringxfer::probe().send_zc {
        eprintln!("skipped: SEND_ZC unsupported");
        return;
    }
    uring_reset_variant(SendOp::SendZc, RegisterPolicy::Never);
}

/// After a failed transfer the engine (and its ring) is still usable for the next one.
fn engine_reusable_after_errors(backend: Backend) {
    within(LIMIT, "engine reuse after errors", move || {
        let mut e = engine(&opts(backend));
        // 1. EOF on receive.
        let (tx, rx) = tcp_pair();
        (&tx).write_all(&[1u8; 100]).unwrap();
        drop(tx);
        let mut buf = vec![0u8; 1000];
        assert!(matches!(
            e.recv_into(&rx, &mut buf),
            Err(Error::UnexpectedEof {
                transferred: 100,
                expected: 1000
            })
        ));
        // 2. Reset on send.
        let (tx, rx) = tcp_pair();
        reset(rx);
        let big: Vec<u8> = pattern_vec(8 * MIB, 1);
        let r = e.send_from(&tx, &big);
        assert!(
            matches!(r, Err(Error::Io { .. })),
            "send to a reset peer: {r:?}"
        );
        // 3. A clean round trip on the same engine, both directions.
        let (a, b) = tcp_pair();
        let data: Vec<u8> = pattern_vec(4 * MIB + 3, 2);
        let peer = std::thread::spawn(move || {
            let mut got = vec![0u8; 4 * MIB + 3];
            (&b).read_exact(&mut got).unwrap();
            (&b).write_all(&got).unwrap();
            b
        });
        e.send_from(&a, &data).expect("send after errors");
        let mut back: Vec<u8> = poison_vec(4 * MIB + 3, 2);
        e.recv_into(&a, &mut back).expect("recv after errors");
        peer.join().unwrap();
        assert_bytes_eq(&back, &data, "round trip after errors");
    });
}

both_backends! {
    fn engine_reusable_after_eof_and_reset(backend) { engine_reusable_after_errors(backend) }
}
