//! numpy's `.npy` stream on the receive side: every framed receive call
//! (`Engine::recv_any`, `recv_array`, `recv_array_into`, `Receiver::*`) takes a `.npy` stream
//! as well as an RGXF message, told apart by the first byte.
//!
//! * streams written by python3's own `numpy.save` (every supported dtype, C and F order, 0-d,
//!   empty, format versions 1.0–3.0) are received with the dtype, shape, order and bytes numpy
//!   wrote, flagged as not checksummed;
//! * `.npy`, RGXF and `.npy` again on one connection, through a read-ahead `Receiver` and
//!   through the plain calls;
//! * hostile `.npy` headers sent over a socket get the exact `FrameError`, the receiver
//!   allocates nothing in proportion to what the header claims, and the stream is left where
//!   the rejected-message rule (crate docs) says;
//! * a stream cut short inside the header or the payload is `UnexpectedEof` with exact counts.
//!
//! Every behaviour test runs on both backends. The numpy tests skip (printed) when python3 or
//! numpy is missing, unless `RINGXFER_TEST_REQUIRE_NUMPY=1` (`tests/util/py.rs`).

use std::cell::Cell;
use std::io::Read;
use std::net::{Shutdown, TcpListener, TcpStream};

use ringxfer::dtype::{DType, Scalar, fill_arange};
use ringxfer::npy::{self, NpyError};
use ringxfer::{
    AnyArray, ArrayView, Backend, Error, FrameError, Options, Order, READ_AHEAD, WireFormat,
};

mod util;
use util::npy::{ALL_DTYPES, CHILD_LIMIT, cases_json, dt, wrap};
use util::py::{Python, numpy_available};

// ---------------------------------------------------------------------------------------------
// The largest single heap allocation made on this thread (see `largest_alloc_during`).
// ---------------------------------------------------------------------------------------------

/// The system allocator, recording on each thread the largest single allocation it asked for
/// while that thread's watch is on: the proof that a hostile header's claims are not
/// allocated (payloads below `buffer::MAP_THRESHOLD`, 1 MiB, live on the heap).
struct Watching;

thread_local! {
    static WATCH: Cell<Option<usize>> = const { Cell::new(None) };
}

// SAFETY: every call is forwarded unchanged to `System`; the only addition is a thread-local
// `Cell` update that neither allocates nor unwinds (`try_with` ignores a destroyed slot).
unsafe impl std::alloc::GlobalAlloc for Watching {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's layout, as `GlobalAlloc::alloc` requires.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as above.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        note(new);
        // SAFETY: `ptr` was allocated by `System` (every allocation here is) with `layout`.
        unsafe { std::alloc::System.realloc(ptr, layout, new) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Watching = Watching;

fn note(size: usize) {
    let _ = WATCH.try_with(|w| {
        if let Some(m) = w.get() {
            w.set(Some(m.max(size)));
        }
    });
}

/// Runs `f` and returns its result with the largest single allocation it made on this thread.
fn largest_alloc_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    WATCH.with(|w| w.set(Some(0)));
    let r = f();
    let largest = WATCH.with(|w| w.replace(None)).unwrap_or(0);
    (r, largest)
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The arange pattern of `dtype` for `shape` (element `i` of memory order is `i`), as numpy's
/// `arange(n).astype(dtype).reshape(shape, order=order)` lays it out.
fn arange_bytes(dtype: DType, shape: &[u64]) -> Vec<u8> {
    let n: u64 = shape.iter().product();
    let mut b = vec![0u8; n as usize * dtype.itemsize()];
    fill_arange(dtype, &mut b);
    b
}

/// The cases python3 writes with `numpy.save`: every dtype as a 2-D array in C order and in F
/// order, then 0-d, empty (C and F), 1-D F (numpy writes `fortran_order: False`), and one of
/// 300 000 elements (larger than the read-ahead).
fn numpy_cases() -> Vec<(String, Vec<u64>, Order)> {
    let mut cases = Vec::new();
    for d in ALL_DTYPES {
        cases.push((d.to_owned(), vec![3, 4], Order::C));
        cases.push((d.to_owned(), vec![2, 3, 5], Order::F));
    }
    cases.push(("<f8".into(), vec![], Order::C));
    cases.push((">c16".into(), vec![], Order::C));
    cases.push(("|b1".into(), vec![], Order::C));
    cases.push(("<f4".into(), vec![3, 0, 2], Order::F));
    cases.push((">i2".into(), vec![0], Order::C));
    cases.push(("<f2".into(), vec![7], Order::F));
    cases.push(("<f8".into(), vec![600, 500], Order::F));
    cases
}

/// Writes `numpy.save` streams to a TCP connection (argv: port, cases as JSON, format
/// versions as JSON: `null` for `numpy.save` itself, `[major, minor]` for
/// `numpy.lib.format.write_array(..., version=...)`, one per case in turn). `numpy.save` on
/// `sock.makefile('wb')` fails on a socket (numpy 2.4: not seekable), so the file is a small
/// object whose `write` is `sock.sendall`.
const SAVE_TO_SOCKET: &str = r#"
import json, socket, sys
import numpy as np
import numpy.lib.format as fmt
port, cases, versions = int(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
sock = socket.create_connection(("127.0.0.1", port))
class W:
    def write(self, b):
        sock.sendall(b)
w = W()
for i, (dtype, shape, order) in enumerate(cases):
    n = 1
    for d in shape:
        n *= d
    a = np.arange(n).astype(np.dtype(dtype)).reshape(tuple(shape), order=order)
    v = versions[i % len(versions)]
    if v is None:
        np.save(w, a)
    else:
        fmt.write_array(w, a, version=tuple(v))
sock.shutdown(socket.SHUT_WR)
sock.recv(1)
"#;

/// Starts python3 writing `cases` (see [`SAVE_TO_SOCKET`]) and returns the accepted
/// connection with the child.
fn numpy_sender(cases: &[(String, Vec<u64>, Order)], versions: &str) -> (TcpStream, Python) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let json = cases_json(cases);
    let py = Python::start(SAVE_TO_SOCKET, &[&port, &json, versions]);
    let (sock, _) = listener.accept().unwrap();
    sock.set_read_timeout(Some(CHILD_LIMIT)).unwrap();
    (sock, py)
}

/// Checks a received array against the case numpy wrote: dtype, shape, the order numpy's
/// header says (`npy::writes_fortran_order`), the arange bytes, no checksum, `.npy` format.
#[track_caller]
fn check_npy(a: &AnyArray, (d, shape, order): &(String, Vec<u64>, Order), what: &str) {
    let dtype = dt(d);
    let want_order = if npy::writes_fortran_order(shape, *order) {
        Order::F
    } else {
        Order::C
    };
    assert_eq!(
        (
            a.dtype(),
            a.shape(),
            a.order(),
            a.format(),
            a.checksum_verified()
        ),
        (dtype, &shape[..], want_order, WireFormat::Npy, false),
        "{what}"
    );
    util::assert_bytes_eq(a.bytes(), &arange_bytes(dtype, shape), what);
}

/// Which receive call a test drives.
#[derive(Debug, Clone, Copy)]
enum Call {
    /// `Engine::recv_any` (no read-ahead).
    EngineAny,
    /// `Receiver::recv_any` (read-ahead).
    ReceiverAny,
}

// ---------------------------------------------------------------------------------------------
// Streams numpy writes
// ---------------------------------------------------------------------------------------------

fn receive_numpy_stream(backend: Backend, call: Call, versions: &str) {
    if !numpy_available() {
        return;
    }
    let cases = numpy_cases();
    let (sock, py) = numpy_sender(&cases, versions);
    let mut e = util::engine(&util::opts(backend));
    match call {
        Call::EngineAny => {
            for (i, c) in cases.iter().enumerate() {
                let a = e
                    .recv_any(&sock)
                    .unwrap_or_else(|err| panic!("case {i} {c:?}: {err}"));
                check_npy(&a, c, &format!("{call:?} case {i} {c:?}"));
            }
            // The clean end of the stream between messages.
            match e.recv_any(&sock) {
                Err(Error::UnexpectedEof {
                    transferred: 0,
                    expected: 32,
                }) => {}
                other => panic!("after the last array: {other:?}"),
            }
        }
        Call::ReceiverAny => {
            let mut r = e.receiver(&sock);
            for (i, c) in cases.iter().enumerate() {
                let a = r
                    .recv_any()
                    .unwrap_or_else(|err| panic!("case {i} {c:?}: {err}"));
                check_npy(&a, c, &format!("{call:?} case {i} {c:?}"));
            }
            match r.recv_any() {
                Err(Error::UnexpectedEof {
                    transferred: 0,
                    expected: 32,
                }) => {}
                other => panic!("after the last array: {other:?}"),
            }
            assert_eq!(r.buffered(), 0);
        }
    }
    drop(sock);
    py.success(CHILD_LIMIT);
}

/// Receives the next array as `T` with `recv_array`, as a typed call must: a native dtype of
/// `T` gives the array, anything else `DtypeMismatch`, the message consumed.
fn recv_typed<T: ringxfer::Element>(
    e: &mut ringxfer::Engine,
    sock: &TcpStream,
    want: DType,
) -> Result<Vec<u8>, Error> {
    let a = e.recv_array::<T>(sock)?;
    assert_eq!(a.as_any().dtype(), want);
    assert!(!a.as_any().checksum_verified());
    Ok(bytemuck::cast_slice(a.as_slice()).to_vec())
}

/// `recv_array::<T>` for the element type of `dtype` (u8 for complex and bool, which have
/// no Rust element type: always a mismatch).
fn recv_typed_for(
    e: &mut ringxfer::Engine,
    sock: &TcpStream,
    dtype: DType,
) -> Result<Vec<u8>, Error> {
    let native = DType::native(dtype.scalar());
    match dtype.scalar() {
        Scalar::F64 => recv_typed::<f64>(e, sock, native),
        Scalar::F32 => recv_typed::<f32>(e, sock, native),
        Scalar::F16 => recv_typed::<half::f16>(e, sock, native),
        Scalar::I64 => recv_typed::<i64>(e, sock, native),
        Scalar::I32 => recv_typed::<i32>(e, sock, native),
        Scalar::I16 => recv_typed::<i16>(e, sock, native),
        Scalar::I8 => recv_typed::<i8>(e, sock, native),
        Scalar::U64 => recv_typed::<u64>(e, sock, native),
        Scalar::U32 => recv_typed::<u32>(e, sock, native),
        Scalar::U16 => recv_typed::<u16>(e, sock, native),
        Scalar::U8 => recv_typed::<u8>(e, sock, native),
        _ => recv_typed::<u8>(e, sock, DType::native(Scalar::U8)),
    }
}

both_backends! {
    /// `numpy.save` streams of every supported dtype (both byte orders), C and F order, 0-d,
    /// empty and larger than the read-ahead, back to back on one connection, are received by
    /// `Engine::recv_any` with numpy's dtype, shape, order and bytes, `format() == Npy` and
    /// `checksum_verified() == false`; then the clean close reads as
    /// `UnexpectedEof { transferred: 0, expected: 32 }`.
    fn numpy_save_stream_engine_recv_any(backend) {
        receive_numpy_stream(backend, Call::EngineAny, "[null]");
    }

    /// The same streams through a read-ahead `Receiver` (many small `.npy` messages decoded
    /// from one read), nothing left buffered at the end.
    fn numpy_save_stream_receiver(backend) {
        receive_numpy_stream(backend, Call::ReceiverAny, "[null]");
    }

    /// Format versions 2.0 and 3.0 (32-bit `HEADER_LEN`) alternate with 1.0 on one
    /// connection, through both calls.
    fn numpy_format_versions_2_and_3(backend) {
        receive_numpy_stream(backend, Call::EngineAny, "[[1, 0], [2, 0], [3, 0]]");
        receive_numpy_stream(backend, Call::ReceiverAny, "[[3, 0], [2, 0], [1, 0]]");
    }

    /// `Engine::recv_array::<T>` of every case: the native dtypes of a Rust element type
    /// arrive with numpy's bytes; a byte-swapped dtype, complex or bool is
    /// `FrameError::DtypeMismatch` naming both dtypes, the message consumed so the next
    /// receive reads the next array (the rejected-message rule, as for RGXF).
    fn numpy_save_stream_recv_array_typed(backend) {
        if !numpy_available() {
            return;
        }
        let cases = numpy_cases();
        let (sock, py) = numpy_sender(&cases, "[null]");
        let mut e = util::engine(&util::opts(backend));
        let mut delivered = 0;
        for (i, (d, shape, _)) in cases.iter().enumerate() {
            let dtype = dt(d);
            let untyped = matches!(dtype.scalar(), Scalar::C64 | Scalar::C128 | Scalar::Bool);
            match recv_typed_for(&mut e, &sock, dtype) {
                Ok(bytes) => {
                    assert!(dtype.is_native() && !untyped, "case {i} {d} delivered");
                    util::assert_bytes_eq(&bytes, &arange_bytes(dtype, shape), d);
                    delivered += 1;
                }
                Err(Error::Frame(FrameError::DtypeMismatch { wire, wanted })) => {
                    assert!(!dtype.is_native() || untyped, "case {i} {d} rejected");
                    assert_eq!(wire, *d, "case {i}");
                    let want = if untyped { DType::native(Scalar::U8) } else { DType::native(dtype.scalar()) };
                    assert_eq!(wanted, want.to_string(), "case {i}");
                }
                Err(err) => panic!("case {i} {d}: {err}"),
            }
        }
        // Native: 11 scalar kinds × 2 layouts, plus <f8 0-d, <f4 empty, <f2 1-D, <f8 large.
        assert_eq!(delivered, 11 * 2 + 4);
        drop(sock);
        py.success(CHILD_LIMIT);
    }

    /// `recv_array_into` a caller's slice: a `.npy` array of the slice's dtype and length is
    /// received into it and its header returned (flags 0: no checksum); one of another length
    /// is `ShapeMismatch` and consumed, so the array after it arrives whole.
    fn npy_recv_array_into(backend) {
        let (tx, rx) = util::tcp_pair();
        let t = std::thread::spawn(move || {
            let mut e = ringxfer::Engine::new(backend).unwrap();
            let a: Vec<f64> = (0..12).map(f64::from).collect();
            let b: Vec<f64> = (0..7).map(|i| f64::from(i) * 0.5).collect();
            e.send_view(&tx, ArrayView::new(&a, &[3, 4], Order::F), WireFormat::Npy).unwrap();
            e.send_view(&tx, ArrayView::new(&b, &[7], Order::C), WireFormat::Npy).unwrap();
            e.send_view(&tx, ArrayView::new(&a, &[12], Order::C), WireFormat::Npy).unwrap();
        });
        let mut e = util::engine(&util::opts(backend));
        let mut out = vec![0f64; 12];
        let h = e.recv_array_into(&rx, &mut out).unwrap();
        assert_eq!((h.shape.as_slice(), h.order, h.flags, h.payload_len), (&[3u64, 4][..], Order::F, 0, 96));
        assert_eq!(out, (0..12).map(f64::from).collect::<Vec<_>>());
        match e.recv_array_into(&rx, &mut out) {
            Err(Error::Frame(FrameError::ShapeMismatch { shape, needed: 7, len: 12 })) => {
                assert_eq!(shape, [7]);
            }
            other => panic!("{other:?}"),
        }
        out.fill(-1.0);
        let h = e.recv_array_into(&rx, &mut out).unwrap();
        assert_eq!(h.shape, [12]);
        assert_eq!(out, (0..12).map(f64::from).collect::<Vec<_>>());
        t.join().unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Mixed streams
// ---------------------------------------------------------------------------------------------

/// The messages of the mixed stream: (format, dtype, shape, order). Small ones (many fit one
/// read-ahead), one larger than the read-ahead in each format, a 0-d and an empty one.
fn mixed_messages() -> Vec<(WireFormat, &'static str, Vec<u64>, Order)> {
    use WireFormat::{Npy, Rgxf};
    vec![
        (Npy, "<f8", vec![10], Order::C),
        (Rgxf, ">i4", vec![3, 4], Order::F),
        (Npy, ">f2", vec![2, 5], Order::F),
        (Npy, "<c16", vec![], Order::C),
        (Rgxf, "<f8", vec![], Order::C),
        (Npy, "|b1", vec![0, 3], Order::C),
        (Rgxf, "<u2", vec![0], Order::C),
        (Npy, "<f4", vec![300, 400], Order::F),
        (Rgxf, "<f8", vec![70_000], Order::C),
        (Npy, "<i8", vec![3], Order::C),
        (Rgxf, "|u1", vec![5], Order::C),
    ]
}

fn send_mixed(backend: Backend, sock: TcpStream) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut e = ringxfer::Engine::new(backend).unwrap();
        for (f, d, shape, order) in mixed_messages() {
            let dtype = dt(d);
            let bytes = arange_bytes(dtype, &shape);
            let view = ArrayView {
                dtype,
                bytes: &bytes,
                shape: &shape,
                order,
            };
            e.send_view(&sock, view, f).unwrap();
        }
        sock.shutdown(Shutdown::Write).unwrap();
    })
}

#[track_caller]
fn check_mixed(
    a: &AnyArray,
    (f, d, shape, order): &(WireFormat, &str, Vec<u64>, Order),
    what: &str,
) {
    let dtype = dt(d);
    let order = match f {
        WireFormat::Npy if !npy::writes_fortran_order(shape, *order) => Order::C,
        _ => *order,
    };
    assert_eq!(
        (
            a.format(),
            a.dtype(),
            a.shape(),
            a.order(),
            a.checksum_verified()
        ),
        (*f, dtype, &shape[..], order, *f == WireFormat::Rgxf),
        "{what}"
    );
    util::assert_bytes_eq(a.bytes(), &arange_bytes(dtype, shape), what);
}

both_backends! {
    /// `.npy`, RGXF, `.npy`, … on one connection through a read-ahead `Receiver`: every
    /// message arrives in its format (`.npy` unchecksummed, RGXF checked), small ones decoded
    /// from one read, large ones partly from the read-ahead and the rest straight into the
    /// array; the clean close follows.
    fn mixed_stream_through_receiver(backend) {
        let (tx, rx) = util::tcp_pair();
        let t = send_mixed(backend, tx);
        let mut e = util::engine(&util::opts(backend));
        let mut r = e.receiver(&rx);
        for (i, m) in mixed_messages().iter().enumerate() {
            let a = r.recv_any().unwrap_or_else(|err| panic!("message {i} {m:?}: {err}"));
            check_mixed(&a, m, &format!("message {i}"));
        }
        assert!(matches!(
            r.recv_any(),
            Err(Error::UnexpectedEof { transferred: 0, expected: 32 })
        ));
        t.join().unwrap();
    }

    /// The same stream through the plain `Engine::recv_any`, which never reads past the
    /// message it is in: after each message the socket holds exactly the rest of the stream.
    fn mixed_stream_through_engine(backend) {
        let (tx, rx) = util::tcp_pair();
        let t = send_mixed(backend, tx);
        t.join().unwrap();
        let mut e = util::engine(&util::opts(backend));
        let msgs = mixed_messages();
        for (i, m) in msgs.iter().enumerate() {
            let a = e.recv_any(&rx).unwrap_or_else(|err| panic!("message {i} {m:?}: {err}"));
            check_mixed(&a, m, &format!("message {i}"));
        }
        assert!(matches!(
            e.recv_any(&rx),
            Err(Error::UnexpectedEof { transferred: 0, expected: 32 })
        ));
    }

    /// A read-ahead `Receiver` that took the start of a `.npy` message hands it back with
    /// `take_buffered`: those bytes then the socket's are exactly the rest of the stream.
    fn receiver_hands_back_a_npy_start(backend) {
        let (tx, rx) = util::tcp_pair();
        let t = send_mixed(backend, tx);
        t.join().unwrap();
        let mut e = util::engine(&util::opts(backend));
        let mut r = e.receiver(&rx);
        let first = r.recv_any().unwrap();
        check_mixed(&first, &mixed_messages()[0], "first");
        let mut rest = r.take_buffered();
        assert!(!rest.is_empty() && rest.len() <= READ_AHEAD);
        drop(r);
        (&rx).read_to_end(&mut rest).unwrap();
        // Re-send the rest through a fresh pair and receive it with the plain call.
        let (tx2, rx2) = util::tcp_pair();
        let w = std::thread::spawn(move || util::raw_write_then_shutdown(&tx2, &rest));
        for (i, m) in mixed_messages().iter().enumerate().skip(1) {
            let a = e.recv_any(&rx2).unwrap_or_else(|err| panic!("message {i}: {err}"));
            check_mixed(&a, m, &format!("message {i}"));
        }
        w.join().unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile headers and cut streams
// ---------------------------------------------------------------------------------------------

/// Bytes after the hostile part, to see how far the receiver read.
const TAIL: usize = 1000;

/// Writes `head` then [`TAIL`] bytes and half-closes; receives once with the plain
/// `Engine::recv_any` (options `o`), and returns the result, the largest allocation the
/// receive made, and how many bytes were left unread on the socket.
fn hostile(o: &Options, head: &[u8]) -> (ringxfer::Result<AnyArray>, usize, usize) {
    let (tx, rx) = util::tcp_pair();
    let mut bytes = head.to_vec();
    bytes.extend(std::iter::repeat_n(0xA5u8, TAIL));
    util::raw_write_then_shutdown(&tx, &bytes);
    let mut e = util::engine(o);
    let (r, largest) = largest_alloc_during(|| e.recv_any(&rx));
    let mut left = Vec::new();
    (&rx).read_to_end(&mut left).unwrap();
    (r, largest, left.len())
}

/// The `FrameError::Npy` inside `r`, or a panic naming what came instead.
#[track_caller]
fn npy_err(r: ringxfer::Result<AnyArray>) -> NpyError {
    match r {
        Err(Error::Frame(FrameError::Npy(e))) => e,
        other => panic!("expected FrameError::Npy, got {other:?}"),
    }
}

both_backends! {
    /// A version-2.0 prefix declaring a 4 GiB dict: `HeaderTooLong` from the 12-byte prefix,
    /// no buffer beyond the first 32-byte read, and the receiver read no more than that first
    /// read (the RGXF prefix length; the stream is malformed: close it).
    fn npy_huge_header_len(backend) {
        let mut head = b"\x93NUMPY\x02\x00".to_vec();
        head.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        let (r, largest, left) = hostile(&util::opts(backend), &head);
        assert_eq!(
            npy_err(r),
            NpyError::HeaderTooLong { header_len: 12 + 0xFFFF_FFF0, limit: npy::MAX_HEADER_LEN }
        );
        assert!(largest <= 4096, "largest allocation {largest} bytes");
        assert_eq!(left, head.len() + TAIL - 32);
        // A version-1.0 header may declare at most 65 535 + 10 bytes: within the cap, so the
        // receiver reads it (and no more) before the dict is rejected.
        let mut head = b"\x93NUMPY\x01\x00".to_vec();
        head.extend_from_slice(&0xFFF6u16.to_le_bytes()); // 10 + 65 526 = 65 536 bytes
        head.extend(std::iter::repeat_n(b' ', 0xFFF5));
        head.push(b'\n');
        let (r, largest, left) = hostile(&util::opts(backend), &head);
        assert_eq!(
            npy_err(r),
            NpyError::Syntax {
                offset: 65_526,
                message: "expected '{', found the end of the header".into()
            }
        );
        assert!(largest <= npy::MAX_HEADER_LEN + 4096, "largest allocation {largest} bytes");
        assert_eq!(left, TAIL);
    }

    /// A dict with an unknown key, a shape whose byte size overflows 64 bits, an unsupported
    /// dtype, a bad version and a wrong magic byte: each its exact `NpyError`; a rejected
    /// header is consumed whole (the stream is then malformed: close it), a wrong magic or
    /// version as far as it was read.
    fn npy_bad_dicts_and_prefixes(backend) {
        let o = util::opts(backend);
        let head = wrap("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), 'x': 1}");
        let (r, _, left) = hostile(&o, &head);
        assert_eq!(npy_err(r), NpyError::UnknownKey("x".into()));
        assert_eq!(left, TAIL);

        let head = wrap("{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4), }");
        let (r, largest, left) = hostile(&o, &head);
        assert_eq!(
            npy_err(r),
            NpyError::ShapeOverflow { shape: vec![1 << 62, 4], itemsize: 8 }
        );
        assert!(largest <= 4096, "largest allocation {largest} bytes");
        assert_eq!(left, TAIL);

        let head = wrap("{'descr': '|O', 'fortran_order': False, 'shape': (3,), }");
        let (r, _, left) = hostile(&o, &head);
        assert_eq!(npy_err(r), NpyError::UnsupportedDtype("'|O'".into()));
        assert_eq!(left, TAIL);

        let mut head = wrap("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }");
        head[6] = 4;
        let (r, _, left) = hostile(&o, &head);
        assert_eq!(npy_err(r), NpyError::UnsupportedVersion { major: 4, minor: 0 });
        assert_eq!(left, head.len() + TAIL - 32);

        let (r, _, left) = hostile(&o, b"\x93NUMPZ\x01\x00");
        assert_eq!(npy_err(r), NpyError::BadMagic(b"\x93NUMPZ".to_vec()));
        assert_eq!(left, 8 + TAIL - 32);

        // Any other first byte is the RGXF error of old: `BadMagic` of that one byte.
        let (r, _, _) = hostile(&o, b"GET / HTTP/1.1\r\n");
        assert!(matches!(r, Err(Error::Frame(FrameError::BadMagic(b))) if b == b"G"));
    }

    /// A payload over `max_payload_bytes`: `FrameError::TooLarge` (the same variant as for
    /// RGXF) once the header is parsed, nothing allocated for it (512 KiB would be on the
    /// heap), the payload left unread (the stream is inside the message: close it).
    fn npy_payload_over_the_limit(backend) {
        let o = Options { max_payload_bytes: 256 << 10, ..util::opts(backend) };
        let head = wrap("{'descr': '<f8', 'fortran_order': False, 'shape': (65536,), }");
        let (r, largest, left) = hostile(&o, &head);
        match r {
            Err(Error::Frame(FrameError::TooLarge { payload_len, limit })) => {
                assert_eq!((payload_len, limit), (512 << 10, 256 << 10));
            }
            other => panic!("{other:?}"),
        }
        assert!(largest <= 4096, "largest allocation {largest} bytes");
        assert_eq!(left, TAIL);
        // At the limit exactly it is received.
        let o = Options { max_payload_bytes: 512 << 10, ..util::opts(backend) };
        let (tx, rx) = util::tcp_pair();
        let data: Vec<f64> = (0..65536).map(f64::from).collect();
        let t = std::thread::spawn(move || {
            let mut e = ringxfer::Engine::new(backend).unwrap();
            e.send_view(&tx, ArrayView::new(&data, &[65536], Order::C), WireFormat::Npy).unwrap();
        });
        let a = util::engine(&o).recv_array::<f64>(&rx).unwrap();
        assert_eq!(a.len(), 65536);
        assert_eq!(a[65535], 65535.0);
        t.join().unwrap();
    }

    /// A `.npy` stream cut short: inside the magic, inside the dict, inside the payload —
    /// `UnexpectedEof` counting the bytes of the step (8, then the header's 64) or, once the
    /// header is parsed, of the whole message (header + payload, no trailer).
    fn npy_truncated(backend) {
        let o = util::opts(backend);
        let head = wrap("{'descr':'<f8','fortran_order':False,'shape':(1000,)}");
        assert_eq!(head.len(), 64);
        let cut = |bytes: &[u8]| {
            let (tx, rx) = util::tcp_pair();
            util::raw_write_then_shutdown(&tx, bytes);
            util::engine(&o).recv_any(&rx)
        };
        let eof = |r: ringxfer::Result<AnyArray>| match r {
            Err(Error::UnexpectedEof { transferred, expected }) => (transferred, expected),
            other => panic!("{other:?}"),
        };
        assert_eq!(eof(cut(b"\x93NUMP")), (5, 8));
        assert_eq!(eof(cut(&head[..40])), (40, 64));
        let mut msg = head.clone();
        msg.extend(std::iter::repeat_n(7u8, 3000));
        assert_eq!(eof(cut(&msg)), (64 + 3000, 64 + 8000));
        // Through a read-ahead receiver: the same counts.
        let (tx, rx) = util::tcp_pair();
        util::raw_write_then_shutdown(&tx, &msg);
        let mut e = util::engine(&o);
        assert_eq!(eof(e.receiver(&rx).recv_any()), (64 + 3000, 64 + 8000));
    }

    /// `Engine::recv_npy_payload_into` after the caller read and parsed the 64-byte header:
    /// the payload byte-exact in the caller's memory; another length is `ShapeMismatch` with
    /// the payload consumed (the next `.npy` message on the connection arrives whole); a
    /// payload cut short is `UnexpectedEof` counting the whole message, header included —
    /// the counts `recv_any` gives for the same stream.
    fn npy_payload_into_callers_memory(backend) {
        let o = util::opts(backend);
        let head = wrap("{'descr':'<f8','fortran_order':False,'shape':(1000,)}");
        let h = npy::parse_header(&head, u64::MAX).unwrap();
        assert_eq!(h.header_len, 64);
        let payload = arange_bytes("<f8".parse().unwrap(), &[1000]);
        let read_head = |rx: &TcpStream| {
            let mut got = [0u8; 64];
            (&*rx).read_exact(&mut got).unwrap();
            assert_eq!(&got[..], &head[..]);
        };
        // Whole, then a wrong length (consumed), then whole again: one connection.
        let mut bytes = Vec::new();
        for _ in 0..3 {
            bytes.extend_from_slice(&head);
            bytes.extend_from_slice(&payload);
        }
        let (tx, rx) = util::tcp_pair();
        util::raw_write_then_shutdown(&tx, &bytes);
        let mut e = util::engine(&o);
        let mut out = vec![0u8; 8000];
        read_head(&rx);
        e.recv_npy_payload_into(&rx, &h, &mut out).unwrap();
        assert_eq!(out, payload);
        read_head(&rx);
        let mut short = vec![0x5Au8; 4000];
        match e.recv_npy_payload_into(&rx, &h, &mut short) {
            Err(Error::Frame(FrameError::ShapeMismatch { shape, needed, len })) => {
                assert_eq!((shape, needed, len), (vec![1000], 1000, 500), "elements");
            }
            other => panic!("{other:?}"),
        }
        assert!(short.iter().all(|&b| b == 0x5A), "out untouched");
        read_head(&rx);
        let mut again = vec![0u8; 8000];
        e.recv_npy_payload_into(&rx, &h, &mut again).unwrap();
        assert_eq!(again, payload);
        // Cut inside the payload: the whole message's counts.
        let (tx, rx) = util::tcp_pair();
        let mut cut = head.clone();
        cut.extend_from_slice(&payload[..3000]);
        util::raw_write_then_shutdown(&tx, &cut);
        read_head(&rx);
        let mut out = vec![0u8; 8000];
        match e.recv_npy_payload_into(&rx, &h, &mut out) {
            Err(Error::UnexpectedEof {
                transferred,
                expected,
            }) => assert_eq!((transferred, expected), (64 + 3000, 64 + 8000)),
            other => panic!("{other:?}"),
        }
        assert_eq!(out[..3000], payload[..3000]);
    }
}

both_backends! {
    /// The striped receive stays RGXF only: a `.npy` header where a striped array's header
    /// belongs (stream 0, after valid stripe prefixes) is `BadMagic` of its first byte on
    /// stream 0, as before `.npy` receive existed.
    fn striped_receive_refuses_npy(backend) {
        use ringxfer::stripe::{StripePrefix, stripes};
        let g = stripes(8192, 2);
        let prefix = |stream: u32| {
            let r = &g[stream as usize];
            StripePrefix {
                stream,
                streams: 2,
                array_id: 7,
                offset: r.start,
                len: r.end - r.start,
                payload_len: 8192,
            }
            .encode()
        };
        let (tx0, rx0) = util::tcp_pair();
        let (tx1, rx1) = util::tcp_pair();
        let mut s0 = prefix(0).to_vec();
        s0.extend(wrap("{'descr':'<f8','fortran_order':False,'shape':(1024,)}"));
        util::raw_write_then_shutdown(&tx0, &s0);
        util::raw_write_then_shutdown(&tx1, &prefix(1));
        match util::engine(&util::opts(backend)).recv_any_striped(&[rx0, rx1]) {
            Err(Error::Stream { stream: 0, source, .. }) => {
                assert!(
                    matches!(*source, Error::Frame(FrameError::BadMagic(ref b)) if b == b"\x93"),
                    "{source:?}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
