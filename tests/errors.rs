//! Errors whose variants each mean one thing, and `From<ringxfer::Error> for std::io::Error`:
//! `?` in an `io::Result` function, the `ErrorKind` of each class (peer closed, idle timeout,
//! peer's bad frame, caller's mistake, OS errno, allocation), the ringxfer error kept as the
//! payload — both backends, real sockets.

mod util;

use std::io::{self, Write};
use std::net::UdpSocket;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use ringxfer::dtype::{DType, Scalar};
use ringxfer::{Error, FrameError, Header, Options, Order};
use util::*;

/// The ringxfer error inside an `io::Error` made by `?`.
fn inner(e: io::Error) -> Error {
    *e.into_inner()
        .expect("a custom io::Error")
        .downcast::<Error>()
        .expect("the payload is a ringxfer::Error")
}

/// A function in `io::Result` style: `?` converts a ringxfer error.
fn recv_io(o: &Options, sock: &UnixStream, out: &mut [u8]) -> io::Result<()> {
    engine(o).recv_into(sock, out)?;
    Ok(())
}

fn send_framed_io(o: &Options, sock: &UnixStream, data: &[f32], shape: &[u64]) -> io::Result<()> {
    engine(o).send_array(sock, data, shape, Order::C)?;
    Ok(())
}

fn recv_framed_io(o: &Options, sock: &UnixStream) -> io::Result<Vec<f64>> {
    Ok(engine(o).recv_array::<f64>(sock)?.to_vec())
}

both_backends! {
    /// The peer closes after 3 of 8 bytes: `UnexpectedEof`, with the counts inside.
    fn early_close_is_unexpected_eof(backend) {
        let (mut a, b) = UnixStream::pair().expect("socketpair");
        a.write_all(&[1, 2, 3]).expect("write");
        drop(a);
        let e = recv_io(&opts(backend), &b, &mut [0u8; 8]).expect_err("short stream");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(matches!(inner(e), Error::UnexpectedEof { transferred: 3, expected: 8 }));
    }

    /// No byte for longer than the idle timeout: `TimedOut`.
    fn idle_timeout_is_timed_out(backend) {
        let (_a, b) = UnixStream::pair().expect("socketpair");
        let o = Options { idle_timeout: Some(Duration::from_millis(100)), ..opts(backend) };
        let e = recv_io(&o, &b, &mut [0u8; 8]).expect_err("silent peer");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(matches!(inner(e), Error::TimedOut { transferred: 0, expected: 8, timeout_ms: 100 }));
    }

    /// A peer that is not speaking RGXF: `InvalidData`, the `FrameError` inside.
    fn bad_frame_is_invalid_data(backend) {
        let (mut a, b) = UnixStream::pair().expect("socketpair");
        a.write_all(b"GET / HTTP/1.1\r\n").expect("write");
        let e = recv_framed_io(&opts(backend), &b).expect_err("not RGXF");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(matches!(inner(e), Error::Frame(FrameError::BadMagic(ref got)) if got == b"G"));
    }

    /// The caller's own shape mistake on a send: `InvalidInput`, `Error::InvalidArray`, and
    /// nothing was sent (the peer reads EOF at once).
    fn send_shape_mistake_is_invalid_input(backend) {
        let (a, mut b) = UnixStream::pair().expect("socketpair");
        let e = send_framed_io(&opts(backend), &a, &[1.0; 10], &[3, 3]).expect_err("10 != 9");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let ringxfer_error = inner(e);
        assert_eq!(
            ringxfer_error.to_string(),
            "invalid array: shape [3, 3] needs 9 elements, the slice has 10"
        );
        assert!(matches!(
            ringxfer_error,
            Error::InvalidArray(FrameError::ShapeMismatch { needed: 9, len: 10, .. })
        ));
        drop(a);
        let mut rest = Vec::new();
        io::Read::read_to_end(&mut b, &mut rest).expect("read");
        assert_eq!(rest.len(), 0, "nothing was sent");
    }

    /// More than 32 dimensions on a send: `InvalidArray(TooManyDims)`, not "framed message
    /// rejected".
    fn send_too_many_dims_is_invalid_array(backend) {
        let (a, _b) = UnixStream::pair().expect("socketpair");
        let e = engine(&opts(backend)).send_array(&a, &[0u8], &[1; 33], Order::C).expect_err("33 dims");
        assert!(matches!(e, Error::InvalidArray(FrameError::TooManyDims(33))), "{e:?}");
        assert_eq!(e.kind(), "invalid_array");
        assert!(!e.to_string().contains("framed message rejected"), "{e}");
    }

    /// A send to a closed peer: the OS errno (`EPIPE`) survives the conversion — in the kind
    /// and in the ringxfer error inside.
    fn os_error_keeps_its_errno(backend) {
        let (a, b) = UnixStream::pair().expect("socketpair");
        drop(b);
        let r: io::Result<()> = (|| {
            engine(&opts(backend)).send_from(&a, &[7u8; 1 << 16])?;
            Ok(())
        })();
        let e = r.expect_err("peer gone");
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        let inner = inner(e);
        assert_eq!(inner.raw_os_error(), Some(libc::EPIPE), "{inner:?}");
        let source = std::error::Error::source(&inner).expect("the OS error is the source");
        let os = source.downcast_ref::<io::Error>().expect("an io::Error");
        assert_eq!(os.raw_os_error(), Some(libc::EPIPE));
    }

    /// A datagram socket is the caller's mistake: `InvalidInput`.
    fn datagram_socket_is_invalid_input(backend) {
        let u = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let e = engine(&opts(backend)).send_from(&u, &[0u8; 4]).expect_err("not a stream");
        assert!(matches!(e, Error::NotStream { so_type: Some(libc::SOCK_DGRAM) }), "{e:?}");
        assert_eq!(io::Error::from(e).kind(), io::ErrorKind::InvalidInput);
    }

    /// A header announcing 1 PiB under an unlimited `max_payload_bytes`: the receive memory
    /// cannot be mapped (more than the address space), `Error::Alloc` with the byte count —
    /// not `Setup` — and `OutOfMemory` as an `io::Error`.
    fn unmappable_payload_is_alloc(backend) {
        let (mut a, b) = UnixStream::pair().expect("socketpair");
        let h = Header::new(DType::native(Scalar::U8), &[1 << 50], Order::C).expect("header");
        a.write_all(&h.encode()).expect("write header");
        let o = Options { max_payload_bytes: u64::MAX, ..opts(backend) };
        let e = engine(&o).recv_any(&b).expect_err("1 PiB");
        assert!(matches!(e, Error::Alloc { bytes, .. } if bytes == 1 << 50), "{e:?}");
        assert_eq!(e.kind(), "alloc");
        assert_eq!(e.raw_os_error(), Some(libc::ENOMEM));
        assert_eq!(io::Error::from(e).kind(), io::ErrorKind::OutOfMemory);
    }
}

/// The mapping for the variants no socket test above produces.
#[test]
fn io_kind_of_the_other_variants() {
    use io::ErrorKind as K;
    let cases = [
        (Error::PeerReset { read: 0 }, K::ConnectionReset),
        (
            Error::PeerNotClosed {
                read: 0,
                timeout_ms: 1,
            },
            K::TimedOut,
        ),
        (
            Error::ExtraBytes {
                extra: 1,
                peer_closed: true,
            },
            K::InvalidData,
        ),
        (Error::InvalidInput("x".into()), K::InvalidInput),
        (Error::UringUnavailable("x".into()), K::Unsupported),
        (
            Error::Spawn(io::Error::from_raw_os_error(libc::EAGAIN)),
            K::WouldBlock,
        ),
        (
            Error::Canceled {
                transferred: 0,
                expected: 1,
            },
            K::Other,
        ),
        (
            Error::ReadShutdown {
                transferred: 0,
                expected: 1,
            },
            K::UnexpectedEof,
        ),
    ];
    for (e, kind) in cases {
        let what = format!("{e:?}");
        assert_eq!(io::Error::from(e).kind(), kind, "{what}");
    }
    let stream = Error::Stream {
        stream: 1,
        peer: "unix".into(),
        source: Box::new(Error::Io {
            op: "send",
            transferred: 0,
            expected: 1,
            source: io::Error::from_raw_os_error(libc::ECONNRESET),
        }),
    };
    assert_eq!(stream.raw_os_error(), Some(libc::ECONNRESET));
    assert_eq!(io::Error::from(stream).kind(), K::ConnectionReset);
}
