//! Hostile and broken peers against `Engine::recv_any` (issue 3, item 3; cases C11, C12, C13).
//!
//! Each test feeds the receiver, over a real socket (a Unix socketpair and a loopback TCP
//! connection, every test on both), bytes built by the hand encoder of `tests/wire` that break
//! exactly one rule of `docs/PROTOCOL.md` — with a correct header CRC whenever the test is
//! about something else — and asserts the exact error variant and its fields. Every test runs
//! on both backends (`name::blocking`, `name::uring`; the uring variant is skipped with a
//! printed reason where io_uring is unavailable, or fails under
//! `RINGXFER_TEST_REQUIRE_URING=1`: `util::uring_available`). A receive that does not return within
//! [`DEADLINE`] fails the test instead of hanging it.

mod util;
mod wire;

use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use ringxfer::frame::DEFAULT_MAX_PAYLOAD_BYTES;
use ringxfer::{AnyArray, Backend, Engine, Error, FrameError, Options};
use wire::{RawHeader, Transport, message, pair, trailer, write_all};

/// A receive that has not returned after this long is a hang.
const DEADLINE: Duration = Duration::from_secs(20);
/// The receiver's limit in most tests: 1 GiB.
const LIMIT: u64 = 1 << 30;
const TRANSPORTS: [Transport; 2] = [Transport::Unix, Transport::Tcp];

/// Serializes the tests that allocate hundreds of MB (C12) with the one that checks the RSS
/// does not grow (`too_large`), since the test harness runs tests on parallel threads.
static BIG_MEMORY: Mutex<()> = Mutex::new(());

fn big_memory() -> MutexGuard<'static, ()> {
    BIG_MEMORY.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the hostile side does once it has written its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Closes the connection.
    Close,
    /// Keeps the connection open, silent, until the receiver has returned.
    Stall,
}

/// The error a test expects.
#[derive(Debug)]
enum Want {
    Frame(FrameError),
    Eof {
        transferred: u64,
        expected: u64,
    },
    TimedOut {
        transferred: u64,
        expected: u64,
        timeout_ms: u64,
    },
}

/// The library's defaults with a small `max_payload_bytes`.
fn opts(backend: Backend) -> Options {
    Options {
        backend,
        max_payload_bytes: LIMIT,
        ..Options::default()
    }
}

/// Writes `bytes` from a hostile peer over `t`, then closes or stalls, while a receiver with
/// `opts` calls `recv_any` once. Returns the receive's result and how long it took.
fn feed(
    opts: Options,
    t: Transport,
    bytes: Vec<u8>,
    after: After,
) -> (ringxfer::Result<AnyArray>, Duration) {
    let (w, r) = pair(t);
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let writer = thread::spawn(move || {
        // The receiver may give up before reading everything: a failed write is expected then.
        let _ = write_all(&w, &bytes);
        if after == After::Stall {
            let _ = done_rx.recv();
        }
        drop(w);
    });
    let (res_tx, res_rx) = mpsc::channel();
    let backend = opts.backend;
    thread::spawn(move || {
        let mut e = Engine::with_options(opts).expect("engine");
        assert_eq!(e.backend().name(), backend.to_string(), "requested backend");
        let t0 = Instant::now();
        let got = e.recv_any(&r);
        let _ = res_tx.send((got, t0.elapsed()));
    });
    let out = res_rx
        .recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("recv_any did not return within {DEADLINE:?} (hang)"));
    let _ = done_tx.send(());
    writer.join().expect("writer thread");
    out
}

#[track_caller]
fn check(got: &ringxfer::Result<AnyArray>, want: &Want, what: &str) {
    match (got, want) {
        (Err(Error::Frame(f)), Want::Frame(w)) => assert_eq!(f, w, "{what}"),
        (
            Err(Error::UnexpectedEof {
                transferred,
                expected,
            }),
            Want::Eof {
                transferred: t,
                expected: e,
            },
        ) => assert_eq!(
            (*transferred, *expected),
            (*t, *e),
            "{what}: UnexpectedEof (transferred, expected)"
        ),
        (
            Err(Error::TimedOut {
                transferred,
                expected,
                timeout_ms,
            }),
            Want::TimedOut {
                transferred: t,
                expected: e,
                timeout_ms: ms,
            },
        ) => assert_eq!(
            (*transferred, *expected, *timeout_ms),
            (*t, *e, *ms),
            "{what}: TimedOut (transferred, expected, timeout_ms)"
        ),
        (got, _) => panic!("{what}: got {got:?}, want {want:?}"),
    }
}

/// Feeds `bytes` (then closes) on every transport and checks the error.
#[track_caller]
fn expect(backend: Backend, bytes: &[u8], want: Want, what: &str) {
    for t in TRANSPORTS {
        let (got, _) = feed(opts(backend), t, bytes.to_vec(), After::Close);
        check(&got, &want, &format!("{what} ({backend}, {t:?})"));
    }
}

/// A correct `<f8` 4x4 header (64 bytes, 128-byte payload).
fn f8_4x4() -> RawHeader {
    RawHeader::valid("<f8", &[4, 4], b'C')
}

/// 128 payload bytes for [`f8_4x4`].
fn payload_128() -> Vec<u8> {
    (0..16u64).flat_map(|i| (i as f64).to_le_bytes()).collect()
}

/// Expands `name` into `mod name { fn blocking(); fn uring() }`, calling `fn name(Backend)`.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn blocking() {
                    super::$name(::ringxfer::Backend::Blocking);
                }

                #[test]
                fn uring() {
                    crate::require_uring!();
                    super::$name(::ringxfer::Backend::Uring);
                }
            }
        )*
    };
}

both_backends!(
    bad_magic,
    bad_magic_short_and_open,
    unknown_version,
    header_len_mismatch,
    ndim_33,
    ndim_255,
    unknown_dtype,
    bad_order,
    unknown_flag_bits,
    nonzero_reserved,
    nonzero_pad,
    header_crc_mismatch,
    shape_product_overflow,
    payload_len_mismatch,
    too_large,
    clean_close_between_messages,
    truncated_header,
    truncated_payload,
    bad_trailer_magic,
    payload_crc_mismatch,
    c12_announce_and_stall,
    c12_stall_mid_payload,
    c12_stall_mid_header,
    c12_timer_restarts_on_progress,
    c13_zero_length_then_next,
);

fn bad_magic(b: Backend) {
    // The error carries the bytes up to the first wrong one.
    for (magic, shown) in [
        (*b"XGXF", &b"X"[..]),
        (*b"rgxf", b"r"),
        ([0; 4], b"\0"),
        (*b"RGXE", b"RGXE"),
    ] {
        let h = RawHeader { magic, ..f8_4x4() };
        expect(
            b,
            &h.encode(),
            Want::Frame(FrameError::BadMagic(shown.to_vec())),
            "bad magic",
        );
    }
}

/// Issue 8, item 10: a stranger that sends fewer than 32 bytes and stays open is rejected
/// with `BadMagic` at its first wrong byte — not after a timeout (there is none here: the
/// receive would wait forever for the 32-byte prefix) — by `recv_any` and by a `Receiver`.
fn bad_magic_short_and_open(b: Backend) {
    for (sent, shown) in [
        (&b"GET / HTTP/1.1\r\n"[..], &b"G"[..]),
        (b"X", b"X"),
        (b"RGXE", b"RGXE"),
    ] {
        for t in TRANSPORTS {
            let what = format!("{sent:?} then silence ({b}, {t:?})");
            let (got, took) = feed(opts(b), t, sent.to_vec(), After::Stall);
            check(
                &got,
                &Want::Frame(FrameError::BadMagic(shown.to_vec())),
                &what,
            );
            assert!(took < Duration::from_secs(5), "{what}: took {took:?}");
            // The same through the read-ahead receiver.
            let (w, r) = pair(t);
            write_all(&w, sent).unwrap();
            let got = std::thread::scope(|s| {
                s.spawn(|| {
                    let mut e = Engine::with_options(opts(b)).expect("engine");
                    e.receiver(&r).recv_any().map(drop)
                })
                .join()
                .unwrap()
            });
            drop(w);
            match got {
                Err(Error::Frame(FrameError::BadMagic(m))) => {
                    assert_eq!(m, shown, "{what}: Receiver")
                }
                other => panic!("{what}: Receiver got {other:?}"),
            }
        }
    }
    // A right start that stops short is no error yet: with an idle timeout it times out
    // after the 2 bytes (RG).
    for t in TRANSPORTS {
        let o = Options {
            idle_timeout: Some(Duration::from_millis(300)),
            ..opts(b)
        };
        let (got, _) = feed(o, t, b"RG".to_vec(), After::Stall);
        let want = Want::TimedOut {
            transferred: 2,
            expected: 32,
            timeout_ms: 300,
        };
        check(&got, &want, &format!("RG then silence ({b}, {t:?})"));
    }
}

fn unknown_version(b: Backend) {
    for version in [0u16, 2, 0x0100, u16::MAX] {
        let h = RawHeader {
            version,
            ..f8_4x4()
        };
        let want = Want::Frame(FrameError::UnsupportedVersion(version));
        expect(b, &h.encode(), want, "version");
    }
}

fn header_len_mismatch(b: Backend) {
    // The right value is 40 + 8 * 2 = 56.
    for header_len in [0u16, 32, 48, 64, u16::MAX] {
        let h = RawHeader {
            header_len: Some(header_len),
            ..f8_4x4()
        };
        let want = Want::Frame(FrameError::BadHeaderLen {
            header_len,
            ndim: 2,
        });
        expect(b, &h.encode(), want, "header_len");
    }
}

fn ndim_33(b: Backend) {
    let h = RawHeader::valid("<f8", &[1; 33], b'C');
    expect(
        b,
        &h.encode(),
        Want::Frame(FrameError::TooManyDims(33)),
        "ndim 33",
    );
}

fn ndim_255(b: Backend) {
    let h = RawHeader::valid("|u1", &[1; 255], b'C');
    expect(
        b,
        &h.encode(),
        Want::Frame(FrameError::TooManyDims(255)),
        "ndim 255",
    );
    // The ndim byte alone says 255; header_len and shape are those of a 2-d header.
    let h = RawHeader {
        ndim: Some(255),
        ..f8_4x4()
    };
    expect(
        b,
        &h.encode(),
        Want::Frame(FrameError::TooManyDims(255)),
        "ndim byte 255",
    );
}

fn unknown_dtype(b: Backend) {
    let field = |s: &[u8]| {
        let mut f = [0u8; 8];
        f[..s.len()].copy_from_slice(s);
        f
    };
    for (raw, text) in [
        (field(b"<x9"), "<x9"),
        (field(b""), ""),
        (field(b"<f16"), "<f16"),
        (field(b"<f8\0abc"), "<f8\\x00abc"), // bytes after the NUL are shown, escaped
        (field(b"\xff\xfe"), "\\xff\\xfe"),
        (*b"<f8<f8<f", "<f8<f8<f"),
    ] {
        // Announce 16 bytes so the length rule, checked later, would pass anyway.
        let h = RawHeader {
            dtype: raw,
            payload_len: Some(128),
            ..f8_4x4()
        };
        let want = Want::Frame(FrameError::UnknownDtype(text.to_owned()));
        expect(b, &h.encode(), want, &format!("dtype {raw:02x?}"));
    }
}

fn bad_order(b: Backend) {
    for order in [b'Z', b'c', b'f', 0, 0xff] {
        let h = RawHeader { order, ..f8_4x4() };
        expect(
            b,
            &h.encode(),
            Want::Frame(FrameError::BadOrder(order)),
            "order",
        );
    }
}

fn unknown_flag_bits(b: Backend) {
    for flags in [0b10u16, 0b11, 0x8001, u16::MAX] {
        let h = RawHeader { flags, ..f8_4x4() };
        let want = Want::Frame(FrameError::UnsupportedFlags {
            flags,
            reserved: 0,
            pad: 0,
        });
        expect(b, &h.encode(), want, "flags");
    }
}

fn nonzero_reserved(b: Backend) {
    for reserved in [1u32, 0x8000_0000, u32::MAX] {
        let h = RawHeader {
            reserved,
            ..f8_4x4()
        };
        let want = Want::Frame(FrameError::UnsupportedFlags {
            flags: 1,
            reserved,
            pad: 0,
        });
        expect(b, &h.encode(), want, "reserved");
    }
}

fn nonzero_pad(b: Backend) {
    // The 4 bytes after the header CRC must be 0 too; the error names the pad (issue 8,
    // item 10: it used to read "unsupported flags 0x0001 / reserved 0x0").
    for pad in [1u32, 0x8000_0000] {
        let h = RawHeader { pad, ..f8_4x4() };
        let want = FrameError::UnsupportedFlags {
            flags: 1,
            reserved: 0,
            pad,
        };
        assert_eq!(
            want.to_string(),
            format!("non-zero pad {pad:#010x} after the header CRC")
        );
        expect(b, &h.encode(), Want::Frame(want), "pad");
    }
}

fn header_crc_mismatch(b: Backend) {
    let good = f8_4x4();
    let actual = good.correct_crc();
    for flip in [1u32, 0x8000_0000, u32::MAX] {
        let h = RawHeader {
            crc: Some(actual ^ flip),
            ..good.clone()
        };
        let want = Want::Frame(FrameError::HeaderChecksum {
            expected: actual ^ flip,
            actual,
        });
        expect(b, &h.encode(), want, "header crc");
    }
    // A changed shape byte under the old CRC.
    let mut bytes = good.encode();
    bytes[33] ^= 1;
    let changed = u32::from_le_bytes(bytes[48..52].try_into().unwrap());
    let want = Want::Frame(FrameError::HeaderChecksum {
        expected: changed,
        actual: crc32fast::hash(&bytes[..48]),
    });
    expect(b, &bytes, want, "shape byte flipped");
}

fn shape_product_overflow(b: Backend) {
    for (dtype, shape) in [
        ("<f8", vec![1u64 << 32, 1 << 32]),
        ("<f8", vec![1u64 << 61]), // 2^61 elements x 8 bytes = 2^64
        ("|u1", vec![u64::MAX, 2]),
        ("<f4", vec![3, 5, 7, u64::MAX / 3]),
    ] {
        // Announce a small payload (valid CRC) so only the product is wrong.
        let h = RawHeader {
            payload_len: Some(16),
            ..RawHeader::valid(dtype, &shape, b'C')
        };
        let want = Want::Frame(FrameError::ShapeOverflow {
            itemsize: wire::itemsize_of(dtype) as usize,
            shape,
        });
        expect(b, &h.encode(), want, "shape overflow");
    }
}

fn payload_len_mismatch(b: Backend) {
    for (dtype, shape, payload_len, computed) in [
        ("<f8", vec![10u64], 81u64, 80u64),
        ("<f8", vec![10], 0, 80),
        ("<i4", vec![2, 3], 25, 24),
        ("|u1", vec![0], 1, 0),
        ("<f8", vec![], 0, 8), // a 0-d array has one element
    ] {
        let h = RawHeader {
            payload_len: Some(payload_len),
            ..RawHeader::valid(dtype, &shape, b'F')
        };
        let want = Want::Frame(FrameError::LengthMismatch {
            payload_len,
            computed,
        });
        expect(b, &h.encode(), want, "payload_len");
    }
}

/// A header announcing 300 GB (a consistent shape, valid CRC) against a 1 MiB limit and the
/// default 8 GiB one: `TooLarge` at once, though the peer stays connected and silent — so
/// the receiver neither waited for payload nor allocated it (RSS checked too).
fn too_large(b: Backend) {
    let _big = big_memory();
    let h = RawHeader::valid("<f8", &[37_500_000_000], b'C');
    assert_eq!(h.announced(), 300_000_000_000);
    for (limit, t) in [
        (1u64 << 20, Transport::Unix),
        (1 << 20, Transport::Tcp),
        (DEFAULT_MAX_PAYLOAD_BYTES, Transport::Tcp),
    ] {
        let rss0 = wire::rss_bytes();
        let o = Options {
            max_payload_bytes: limit,
            ..opts(b)
        };
        let (got, took) = feed(o, t, h.encode(), After::Stall);
        let rss1 = wire::rss_bytes();
        let want = Want::Frame(FrameError::TooLarge {
            payload_len: 300_000_000_000,
            limit,
        });
        check(&got, &want, &format!("300 GB, limit {limit} ({b}, {t:?})"));
        assert!(
            took < Duration::from_secs(1),
            "TooLarge took {took:?}: the receiver waited for the payload"
        );
        assert!(
            rss1 < rss0 + (64 << 20),
            "RSS grew from {rss0} to {rss1} bytes on a rejected 300 GB header"
        );
    }
}

/// A close before any byte of a message: `UnexpectedEof { transferred: 0, expected: 32 }`,
/// the documented "clean close between messages".
fn clean_close_between_messages(b: Backend) {
    expect(
        b,
        &[],
        Want::Eof {
            transferred: 0,
            expected: 32,
        },
        "close before a message",
    );
    // And after one whole message: that one arrives, then the same clean-close error.
    for t in TRANSPORTS {
        let (w, r) = pair(t);
        let msg = message(&f8_4x4(), &payload_128());
        write_all(&w, &msg).unwrap();
        drop(w);
        let mut e = Engine::with_options(opts(b)).unwrap();
        let a = e.recv_any(&r).expect("the whole message");
        assert_eq!(a.bytes(), &payload_128()[..]);
        check(
            &e.recv_any(&r),
            &Want::Eof {
                transferred: 0,
                expected: 32,
            },
            &format!("close after a message ({b}, {t:?})"),
        );
    }
}

/// The peer closes inside the header: inside the fixed 32-byte prefix, the counts are of the
/// prefix; after it, of the whole message (header + payload + trailer).
fn truncated_header(b: Backend) {
    let msg = message(&f8_4x4(), &payload_128());
    for k in [1usize, 4, 20, 31] {
        let want = Want::Eof {
            transferred: k as u64,
            expected: 32,
        };
        expect(b, &msg[..k], want, &format!("{k} header bytes"));
    }
    let whole = msg.len() as u64; // 56 + 128 + 8
    assert_eq!(whole, 192);
    for k in [32usize, 33, 40, 55] {
        let want = Want::Eof {
            transferred: k as u64,
            expected: whole,
        };
        expect(b, &msg[..k], want, &format!("{k} header bytes"));
    }
}

/// The peer closes inside the payload or the trailer: the counts are of the whole message.
fn truncated_payload(b: Backend) {
    let msg = message(&f8_4x4(), &payload_128());
    let whole = msg.len() as u64;
    for k in [56usize, 57, 100, 183, 184, 190, 191] {
        let want = Want::Eof {
            transferred: k as u64,
            expected: whole,
        };
        expect(b, &msg[..k], want, &format!("{k} of {whole} message bytes"));
    }
}

fn bad_trailer_magic(b: Backend) {
    let p = payload_128();
    for end in [*b"RGXX", *b"RGXF", [0; 4]] {
        let mut msg = f8_4x4().encode();
        msg.extend_from_slice(&p);
        msg.extend_from_slice(&trailer(crc32fast::hash(&p), &end));
        expect(
            b,
            &msg,
            Want::Frame(FrameError::BadTrailer(end)),
            "trailer magic",
        );
    }
}

/// A payload CRC mismatch is reported with both CRCs, and (as documented) leaves the
/// connection usable: the next message arrives.
fn payload_crc_mismatch(b: Backend) {
    let p = payload_128();
    let actual = crc32fast::hash(&p);
    for t in TRANSPORTS {
        let mut bytes = f8_4x4().encode();
        bytes.extend_from_slice(&p);
        bytes.extend_from_slice(&trailer(actual ^ 0x10, b"RGXE"));
        let next = RawHeader::valid("<i4", &[3], b'C');
        bytes.extend_from_slice(&message(&next, &[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]));
        let (w, r) = pair(t);
        write_all(&w, &bytes).unwrap();
        drop(w);
        let mut e = Engine::with_options(opts(b)).unwrap();
        let want = Want::Frame(FrameError::PayloadChecksum {
            expected: actual ^ 0x10,
            actual,
        });
        check(&e.recv_any(&r), &want, &format!("payload crc ({b}, {t:?})"));
        let a = e
            .recv_any(&r)
            .expect("the message after a checksum mismatch");
        assert_eq!(a.shape(), &[3]);
        assert_eq!(a.bytes(), &[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]);
    }
}

/// C12: a header announcing 300 MB, then nothing, the connection left open. With a 500 ms
/// idle timeout: `TimedOut` naming the header bytes received, within ~2 s.
fn c12_announce_and_stall(b: Backend) {
    let _big = big_memory();
    let h = RawHeader::valid("<f8", &[37_500_000], b'C');
    let head = h.encode();
    let whole = head.len() as u64 + 300_000_000 + 8;
    for t in TRANSPORTS {
        let o = Options {
            idle_timeout: Some(Duration::from_millis(500)),
            ..opts(b)
        };
        let (got, took) = feed(o, t, head.clone(), After::Stall);
        let want = Want::TimedOut {
            transferred: head.len() as u64,
            expected: whole,
            timeout_ms: 500,
        };
        check(&got, &want, &format!("C12 ({b}, {t:?})"));
        assert!(
            took >= Duration::from_millis(450) && took < Duration::from_secs(2),
            "C12 ({b}, {t:?}): TimedOut after {took:?}, want ~500 ms"
        );
    }
}

/// C12 variant: 1 MiB of the payload arrives, then the peer stalls.
fn c12_stall_mid_payload(b: Backend) {
    let _big = big_memory();
    let h = RawHeader::valid("<f8", &[37_500_000], b'C');
    let mut bytes = h.encode();
    let head = bytes.len() as u64;
    bytes.extend(std::iter::repeat_n(0x5a, 1 << 20));
    for t in TRANSPORTS {
        let o = Options {
            idle_timeout: Some(Duration::from_millis(500)),
            ..opts(b)
        };
        let (got, took) = feed(o, t, bytes.clone(), After::Stall);
        let want = Want::TimedOut {
            transferred: head + (1 << 20),
            expected: head + 300_000_000 + 8,
            timeout_ms: 500,
        };
        check(&got, &want, &format!("C12 mid-payload ({b}, {t:?})"));
        assert!(took < Duration::from_secs(3), "took {took:?}");
    }
}

/// C12 variant: 10 bytes of the header, then the peer stalls.
fn c12_stall_mid_header(b: Backend) {
    let bytes = f8_4x4().encode()[..10].to_vec();
    for t in TRANSPORTS {
        let o = Options {
            idle_timeout: Some(Duration::from_millis(300)),
            ..opts(b)
        };
        let (got, took) = feed(o, t, bytes.clone(), After::Stall);
        let want = Want::TimedOut {
            transferred: 10,
            expected: 32,
            timeout_ms: 300,
        };
        check(&got, &want, &format!("C12 mid-header ({b}, {t:?})"));
        assert!(took < Duration::from_secs(2), "took {took:?}");
    }
}

/// The idle timer restarts on progress: a message dribbled in 8 pieces 200 ms apart
/// (1.6 s in all) arrives whole under an 800 ms idle timeout (the gaps leave 600 ms for a
/// writer thread scheduled late on a loaded machine; 150 ms under 400 ms left 250 ms).
fn c12_timer_restarts_on_progress(b: Backend) {
    let msg = message(&f8_4x4(), &payload_128());
    let gap = Duration::from_millis(200);
    let idle = Duration::from_millis(800);
    let pieces = msg.chunks(msg.len().div_ceil(8)).count() as u32;
    assert_eq!(pieces, 8, "{} bytes", msg.len());
    for t in TRANSPORTS {
        let (w, r) = pair(t);
        let m = msg.clone();
        let mut e = Engine::with_options(Options {
            idle_timeout: Some(idle),
            ..opts(b)
        })
        .unwrap();
        let t0 = Instant::now();
        let writer = thread::spawn(move || {
            for piece in m.chunks(m.len().div_ceil(8)) {
                thread::sleep(gap);
                write_all(&w, piece).unwrap();
            }
            w
        });
        let a = e
            .recv_any(&r)
            .unwrap_or_else(|e| panic!("slow but steady peer ({b}, {t:?}): {e}"));
        // The whole message took longer than one idle timeout: the timer did restart.
        let took = t0.elapsed();
        assert!(took >= pieces * gap && took > idle, "{took:?}");
        assert_eq!(a.bytes(), &payload_128()[..]);
        drop(writer.join().unwrap());
    }
}

/// C13: a zero-length array on a connection that stays open is delivered, and so is the next
/// one (also a 0-d array: one element, not zero bytes).
fn c13_zero_length_then_next(b: Backend) {
    for t in TRANSPORTS {
        let (w, r) = pair(t);
        let empty = RawHeader::valid("<f8", &[3, 0, 2], b'F');
        let scalar = RawHeader::valid("<i4", &[], b'C');
        let mut bytes = message(&empty, &[]);
        bytes.extend_from_slice(&message(&scalar, &7i32.to_le_bytes()));
        write_all(&w, &bytes).unwrap();
        let mut e = Engine::with_options(Options {
            idle_timeout: Some(Duration::from_secs(5)),
            ..opts(b)
        })
        .unwrap();
        let a = e.recv_any(&r).expect("zero-length array");
        assert_eq!((a.shape(), a.bytes().len()), (&[3, 0, 2][..], 0));
        let s = e.recv_any(&r).expect("the 0-d array after it");
        assert_eq!((s.shape(), s.bytes()), (&[][..], &7i32.to_le_bytes()[..]));
        drop(w);
    }
}
