//! Issue 8, item 9: non-stream sockets are refused with a typed error instead of losing data
//! (a UDP `recv_into` of three 8-byte datagrams into a 10-byte buffer returned `Ok` with 6
//! bytes dropped), on every entry point and both backends. Item 10: an end of stream caused
//! by our own `shutdown(SHUT_RD)` is not reported as the peer closing.

mod util;

use std::io::Write;
use std::net::{Shutdown, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use ringxfer::{Error, Options, Order};
use socket2::{Domain, Socket, Type};
use util::*;

fn udp_pair() -> (UdpSocket, UdpSocket) {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    a.connect(b.local_addr().unwrap()).unwrap();
    b.connect(a.local_addr().unwrap()).unwrap();
    (a, b)
}

#[track_caller]
fn assert_not_stream<T: std::fmt::Debug>(r: ringxfer::Result<T>, so_type: Option<i32>, what: &str) {
    match r {
        Err(Error::NotStream { so_type: got }) => assert_eq!(got, so_type, "{what}: so_type"),
        other => panic!("{what}: want NotStream({so_type:?}), got {other:?}"),
    }
}

fn udp_refused(o: Options) {
    let w = format!("{:?}", o.backend);
    let (a, b) = udp_pair();
    for _ in 0..3 {
        a.send(&[7u8; 8]).unwrap();
    }
    let mut eng = engine(&o);
    let mut buf = [0u8; 10];
    assert_not_stream(eng.recv_into(&b, &mut buf), Some(libc::SOCK_DGRAM), &w);
    assert_eq!(buf, [0u8; 10], "{w}: nothing was read");
    // The three datagrams are still queued: the check consumed nothing.
    b.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    for _ in 0..3 {
        assert_eq!(b.recv(&mut buf).unwrap(), 8, "{w}: datagram still there");
    }
    assert_not_stream(eng.send_from(&a, &[1u8; 16]), Some(libc::SOCK_DGRAM), &w);
    assert_not_stream(
        eng.send_array(&a, &[1.0f64; 4], &[4], Order::C),
        Some(libc::SOCK_DGRAM),
        &w,
    );
    assert_not_stream(eng.recv_any(&b), Some(libc::SOCK_DGRAM), &w);
    assert_not_stream(eng.recv_array::<f64>(&b), Some(libc::SOCK_DGRAM), &w);
    {
        let mut rx = eng.receiver(&b);
        assert_not_stream(rx.recv_any(), Some(libc::SOCK_DGRAM), &w);
    }
    let data = [3u8; 64];
    assert_not_stream(
        eng.register_send(&data).send(&a),
        Some(libc::SOCK_DGRAM),
        &w,
    );
    let mut into = [0u8; 64];
    assert_not_stream(
        eng.register_recv(&mut into).recv(&b),
        Some(libc::SOCK_DGRAM),
        &w,
    );
    let e = eng.recv_into(&b, &mut buf).unwrap_err();
    assert_eq!(e.kind(), "not_stream");
    assert!(
        e.to_string().contains("SOCK_DGRAM"),
        "{w}: message names the type: {e}"
    );
}

fn seqpacket_and_unix_dgram_refused(o: Options) {
    let w = format!("{:?}", o.backend);
    let mut eng = engine(&o);
    let (s1, s2) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None).unwrap();
    (&s1).write_all(&[9u8; 24]).unwrap();
    let mut buf = [0u8; 10];
    assert_not_stream(eng.recv_into(&s2, &mut buf), Some(libc::SOCK_SEQPACKET), &w);
    let (d1, _d2) = UnixDatagram::pair().unwrap();
    assert_not_stream(eng.send_from(&d1, &[0u8; 4]), Some(libc::SOCK_DGRAM), &w);
}

fn non_socket_refused(o: Options) {
    let w = format!("{:?}", o.backend);
    let mut eng = engine(&o);
    let f = std::fs::File::open("/proc/self/status").unwrap();
    let mut buf = [0u8; 10];
    assert_not_stream(eng.recv_into(&f, &mut buf), None, &w);
}

/// Item 10: our own `shutdown(SHUT_RD)` ends the stream; the error says so (the peer is
/// still connected), with the exact byte counts.
fn local_shutdown(o: Options) {
    let w = format!("{:?}", o.backend);
    let (tx, rx) = tcp_pair();
    (&tx).write_all(&[5u8; 100]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    rx.shutdown(Shutdown::Read).unwrap();
    let mut got = vec![0u8; 1000];
    match engine(&o).recv_into(&rx, &mut got) {
        Err(Error::ReadShutdown {
            transferred,
            expected,
        }) => {
            assert_eq!(expected, 1000, "{w}");
            assert!(
                transferred == 100 || transferred == 0,
                "{w}: transferred {transferred}"
            );
            let e = Error::ReadShutdown {
                transferred,
                expected,
            };
            assert!(e.to_string().contains("shut down locally"), "{e}");
            assert!(!e.to_string().contains("peer closed"), "{e}");
        }
        other => panic!("{w}: want ReadShutdown, got {other:?}"),
    }
    // A real close by the peer is still UnexpectedEof.
    let (tx, rx) = tcp_pair();
    (&tx).write_all(&[5u8; 100]).unwrap();
    drop(tx);
    match engine(&o).recv_into(&rx, &mut got) {
        Err(Error::UnexpectedEof {
            transferred: 100,
            expected: 1000,
        }) => {}
        other => panic!("{w}: want UnexpectedEof(100 of 1000), got {other:?}"),
    }
}

both_backends! {
    fn item9_udp_refused_everywhere(backend) { udp_refused(opts(backend)) }
    fn item9_udp_refused_on_the_direct_path(backend) { udp_refused(opts(backend)) }
    fn item9_seqpacket_and_unix_dgram_refused(backend) {
        seqpacket_and_unix_dgram_refused(opts(backend))
    }
    fn item9_non_socket_refused(backend) { non_socket_refused(opts(backend)) }
    fn item10_local_shutdown_is_not_peer_closed(backend) { local_shutdown(opts(backend)) }
}
