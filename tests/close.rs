//! Graceful close and the end-of-stream check (issue 8, items 1 and 8; case C16):
//! `ringxfer::close::finish` / `Engine::finish` and `close::expect_eof` / `Engine::expect_eof`
//! against real peers over loopback TCP and Unix stream sockets, on both backends.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ringxfer::close;
use ringxfer::{Backend, Error};
use util::{
    GREETING, arange_u1, engine, opts, slow_greeting_reader, small_rcvbuf_listener, within,
};

/// The array: 20,000,000 `u1` bytes.
const N: usize = 20_000_000;
both_backends! {
    /// C16 / issue 8 item 1: the peer sent a greeting the sender never reads and reads slowly;
    /// after `send_from` + `Engine::finish` + drop, the peer has every byte and the sender
    /// knows it (`Ok`, with the greeting counted as discarded).
    fn c16_finish_delivers_every_byte_to_a_slow_greeting_peer(backend) {
        within(Duration::from_secs(60), "c16", move || {
            let (l, addr) = small_rcvbuf_listener();
            let peer = thread::spawn(move || slow_greeting_reader(l.accept().unwrap().0));
            let sock = TcpStream::connect(addr).unwrap();
            let data = arange_u1(N);
            let mut e = engine(&opts(backend));
            e.send_from(&sock, &data).expect("send_from");
            let done = e.finish(&sock).expect("finish");
            drop(sock);
            assert_eq!(done.peer_bytes, GREETING as u64);
            let got = peer.join().unwrap().expect("the peer's reads");
            util::assert_bytes_eq(&got, &data, "what the slow peer received");
        });
    }

    /// The same over a Unix stream socket, with the sender's socket non-blocking: `finish`
    /// works there too and gives the socket back non-blocking, with its receive timeout.
    fn finish_unix_nonblocking_restores_the_mode(backend) {
        within(Duration::from_secs(60), "unix finish", move || {
            let (a, mut b) = UnixStream::pair().unwrap();
            let peer = thread::spawn(move || {
                b.write_all(&[7u8; GREETING]).unwrap();
                let mut got = Vec::new();
                b.read_to_end(&mut got).unwrap();
                got
            });
            let data = arange_u1(3 << 20);
            a.set_nonblocking(true).unwrap();
            let mut e = engine(&opts(backend));
            e.send_from(&a, &data).expect("send_from");
            a.set_read_timeout(Some(Duration::from_secs(7))).unwrap();
            let done = close::finish(&a, Some(Duration::from_secs(20))).expect("finish");
            assert_eq!(done.peer_bytes, GREETING as u64);
            let s = socket2::SockRef::from(&a);
            assert!(s.nonblocking().unwrap(), "non-blocking mode restored");
            assert_eq!(a.read_timeout().unwrap(), Some(Duration::from_secs(7)));
            drop(a);
            util::assert_bytes_eq(&peer.join().unwrap(), &data, "unix peer");
        });
    }

    /// A peer that closes without reading what we sent resets the connection: `finish`
    /// reports `PeerReset` (delivery not confirmed) with the bytes it read first — on TCP
    /// (a real RST) and on a Unix socket (the kernel's ECONNRESET for unread data).
    fn finish_reports_a_reset_as_unconfirmed(backend) {
        within(Duration::from_secs(60), "reset", move || {
            let (tcp_a, tcp_b) = util::tcp_pair();
            let (ux_a, ux_b) = UnixStream::pair().unwrap();
            let cases: [(&str, SenderEnd, PeerClose); 2] = [
                ("tcp", Box::new(tcp_a), Box::new(move || closes_unread(tcp_b))),
                ("unix", Box::new(ux_a), Box::new(move || closes_unread(ux_b))),
            ];
            for (what, a, peer_close) in cases {
                let (tx, rx) = mpsc::channel::<()>();
                let peer = thread::spawn(move || {
                    rx.recv().unwrap();
                    thread::sleep(Duration::from_millis(100));
                    peer_close();
                });
                let mut e = engine(&opts(backend));
                e.send_from(&a, &arange_u1(1000)).expect("send_from");
                tx.send(()).unwrap();
                let got = close::finish(&a, Some(Duration::from_secs(20)));
                peer.join().unwrap();
                match got {
                    Err(Error::PeerReset { read }) => assert_eq!(read, GREETING as u64, "{what}"),
                    other => panic!("{what}: want PeerReset, got {other:?}"),
                }
            }
        });
    }

    /// A peer that never closes: `finish` gives up at its bound with the exact error, having
    /// discarded what the peer sent meanwhile.
    fn finish_times_out_at_its_bound(backend) {
        within(Duration::from_secs(60), "never closes", move || {
            let (a, mut b) = util::tcp_pair();
            b.write_all(&[1u8; 123]).unwrap();
            let mut e = engine(&ringxfer::Options {
                idle_timeout: Some(Duration::from_millis(400)),
                ..opts(backend)
            });
            e.send_from(&a, &arange_u1(1000)).expect("send_from");
            let t0 = Instant::now();
            let got = e.finish(&a);
            let took = t0.elapsed();
            match got {
                Err(Error::PeerNotClosed { read, timeout_ms }) => {
                    assert_eq!((read, timeout_ms), (123, 400))
                }
                other => panic!("want PeerNotClosed, got {other:?}"),
            }
            assert!(took >= Duration::from_millis(400), "gave up early: {took:?}");
            assert!(took < Duration::from_secs(5), "bound not kept: {took:?}");
            // The other end saw our end of stream after our 1000 bytes: its own finish is Ok.
            assert_eq!(
                close::finish(&b, Some(Duration::from_secs(5)))
                    .expect("peer's finish")
                    .peer_bytes,
                1000
            );
            assert_eq!(
                Error::PeerNotClosed { read: 123, timeout_ms: 400 }.to_string(),
                "timed out after 0.4 s waiting for the peer to close the connection \
                 (123 bytes read from it meanwhile)"
            );
        });
    }

    /// Issue 8 item 8: `recv_into` of 1000 bytes from a peer that sent 1500 leaves 500 in
    /// the socket; `expect_eof` counts them (`ExtraBytes { extra: 500 }`). Exactly 1000 is
    /// `Ok`; a silent open peer is `PeerNotClosed { read: 0 }`.
    fn expect_eof_counts_extra_bytes(backend) {
        within(Duration::from_secs(60), "extra bytes", move || {
            for (sent, want) in [(1500usize, Some(500u64)), (1000, None), (1000 + (1 << 20), Some(1 << 20))] {
                for t in ["tcp", "unix"] {
                    let (a, b): (Box<dyn std::os::fd::AsFd + Send>, Box<dyn WriteClose>) = match t {
                        "tcp" => { let (a, b) = util::tcp_pair(); (Box::new(a), Box::new(b)) }
                        _ => { let (a, b) = UnixStream::pair().unwrap(); (Box::new(a), Box::new(b)) }
                    };
                    let peer = thread::spawn(move || b.write_then_close(&arange_u1(sent)));
                    let mut e = engine(&opts(backend));
                    let mut got = vec![0u8; 1000];
                    e.recv_into(&a, &mut got).expect("recv_into");
                    assert_eq!(got, arange_u1(1000));
                    let r = e.expect_eof(&a);
                    peer.join().unwrap();
                    match (want, r) {
                        (None, Ok(())) => {}
                        (Some(n), Err(Error::ExtraBytes { extra, peer_closed: true })) => {
                            assert_eq!(extra, n, "{t}, {sent} sent")
                        }
                        (_, r) => panic!("{t}, {sent} sent: got {r:?}"),
                    }
                }
            }
            let (a, _b) = util::tcp_pair();
            let r = close::expect_eof(&a, Some(Duration::from_millis(200)));
            assert!(
                matches!(r, Err(Error::PeerNotClosed { read: 0, timeout_ms: 200 })),
                "{r:?}"
            );
            let e = Error::ExtraBytes { extra: 500, peer_closed: true };
            assert_eq!((e.kind(), e.to_string().as_str()), ("extra_bytes", "500 extra bytes after the expected data"));
        });
    }
}

/// The sending end of a connection, TCP or Unix.
type SenderEnd = Box<dyn std::os::fd::AsFd + Send>;
/// What the peer does to close its end.
type PeerClose = Box<dyn FnOnce() + Send>;

/// A peer end that writes bytes and closes normally.
trait WriteClose: Send {
    fn write_then_close(self: Box<Self>, bytes: &[u8]);
}

impl WriteClose for TcpStream {
    fn write_then_close(self: Box<Self>, bytes: &[u8]) {
        (&*self).write_all(bytes).unwrap();
    }
}

impl WriteClose for UnixStream {
    fn write_then_close(self: Box<Self>, bytes: &[u8]) {
        (&*self).write_all(bytes).unwrap();
    }
}

/// Sends the greeting, then closes without reading anything of what arrived.
fn closes_unread<S: Write>(mut s: S) {
    s.write_all(&[9u8; GREETING]).unwrap();
    drop(s);
}

both_backends! {
    /// Found by the hostile review of issue 8: `finish` with a 1 s bound on a healthy peer
    /// that reads steadily but slowly (64 KiB every 40 ms, ~1.6 MB/s) while several MB of the
    /// array still sit in the socket buffers when `send_from` returns. The bound is an idle
    /// bound on the peer taking our data, so `finish` waits for it (it used to give up after
    /// 1 s with `PeerNotClosed` although the peer received every byte and closed).
    fn finish_waits_for_a_slow_but_steady_reader(backend) {
        within(Duration::from_secs(60), "slow steady reader", move || {
            let (a, mut b) = util::tcp_pair();
            let peer = thread::spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                let mut got = 0usize;
                loop {
                    match b.read(&mut buf) {
                        Ok(0) => return got,
                        Ok(n) => got += n,
                        Err(e) => panic!("peer: {e} after {got}"),
                    }
                    thread::sleep(Duration::from_millis(40));
                }
            });
            let data = arange_u1(8 << 20);
            let mut e = engine(&ringxfer::Options {
                idle_timeout: Some(Duration::from_secs(1)),
                ..opts(backend)
            });
            e.send_from(&a, &data).expect("send_from");
            let done = e.finish(&a);
            drop(a);
            assert_eq!(peer.join().unwrap(), data.len(), "the peer read every byte");
            assert_eq!(done.expect("finish on a steady reader").peer_bytes, 0);
        });
    }

    /// A peer that sends forever and never closes: what it sends never extends `finish`'s
    /// wait, so `finish` still gives up at its bound.
    fn finish_ends_at_its_bound_when_the_peer_sends_forever(backend) {
        within(Duration::from_secs(60), "peer sends forever", move || {
            let (a, mut b) = util::tcp_pair();
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let stop2 = stop.clone();
            let peer = thread::spawn(move || {
                let chunk = [9u8; 4096];
                while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                    if b.write_all(&chunk).is_err() {
                        break;
                    }
                }
            });
            let mut e = engine(&ringxfer::Options {
                idle_timeout: Some(Duration::from_millis(500)),
                ..opts(backend)
            });
            e.send_from(&a, &arange_u1(1000)).expect("send_from");
            let t0 = Instant::now();
            let got = e.finish(&a);
            let took = t0.elapsed();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            drop(a);
            peer.join().unwrap();
            match got {
                Err(Error::PeerNotClosed { read, timeout_ms: 500 }) => assert!(read > 0),
                other => panic!("want PeerNotClosed, got {other:?}"),
            }
            assert!(took >= Duration::from_millis(500), "gave up early: {took:?}");
            assert!(took < Duration::from_secs(3), "bound not kept: {took:?}");
        });
    }
}

/// The control for the C16 test: the same peer and sender with a plain close instead of
/// `finish` — the kernel resets the connection (the greeting is unread) and the peer loses
/// bytes that `send_from` reported as sent. Shows the test's setup does expose the fault.
#[test]
fn c16_plain_close_loses_bytes() {
    within(Duration::from_secs(60), "plain close", || {
        let (l, addr) = small_rcvbuf_listener();
        let peer = thread::spawn(move || slow_greeting_reader(l.accept().unwrap().0));
        let sock = TcpStream::connect(addr).unwrap();
        let mut e = engine(&opts(Backend::Blocking));
        e.send_from(&sock, &arange_u1(N)).expect("send_from");
        drop(sock);
        match peer.join().unwrap() {
            Err((n, err)) => {
                assert!(n < N, "{n}");
                assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
            }
            Ok(got) => panic!(
                "no loss without finish ({} bytes): the setup is not C16",
                got.len()
            ),
        }
    });
}
