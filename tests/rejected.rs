//! The one rule for a rejected framed message (crate docs, "Rejected messages"), for every
//! receive call on both backends: a message rejected for the caller's expectation (dtype, byte
//! order, length) is consumed and the next good message arrives byte-exact; a message over
//! `max_payload_bytes` is refused at its prefix and leaves the stream inside it.

mod util;

use std::os::unix::net::UnixStream;
use std::thread;

use ringxfer::dtype::{ByteOrder, DType, Scalar};
use ringxfer::{Error, FrameError, Header, Options, Order, PREFIX_LEN};
use util::*;

/// The good message sent after each rejected one: 1000 `f64` (0, 1, …) of shape `[10, 100]`.
const GOOD: usize = 1000;

/// One way of receiving, run on a fresh engine (or one receiver) for both messages.
#[derive(Debug, Clone, Copy)]
enum Call {
    EngineArray,
    EngineInto,
    EngineAny,
    ReceiverArray,
    ReceiverInto,
    ReceiverAny,
}

/// The calls that take an expectation (`T`, or `T` and a length).
const EXPECTING: [Call; 4] = [
    Call::EngineArray,
    Call::EngineInto,
    Call::ReceiverArray,
    Call::ReceiverInto,
];

const ALL: [Call; 6] = [
    Call::EngineArray,
    Call::EngineInto,
    Call::EngineAny,
    Call::ReceiverArray,
    Call::ReceiverInto,
    Call::ReceiverAny,
];

/// A message to send: dtype, element bytes, shape.
struct Msg {
    dtype: DType,
    bytes: Vec<u8>,
    shape: Vec<u64>,
}

fn good() -> Msg {
    let data: Vec<f64> = (0..GOOD).map(|i| i as f64).collect();
    Msg {
        dtype: DType::native(Scalar::F64),
        bytes: bytemuck::cast_slice(&data).to_vec(),
        shape: vec![10, 100],
    }
}

/// `n` elements of `dtype`, bytes `0, 1, 2, …` (mod 251).
fn msg(dtype: DType, n: usize) -> Msg {
    Msg {
        dtype,
        bytes: (0..n * dtype.itemsize()).map(|i| (i % 251) as u8).collect(),
        shape: vec![n as u64],
    }
}

/// Sends `bad` then the good message on `a` (from a thread: a large bad payload does not fit
/// the socket buffer).
fn send_both(o: &Options, a: UnixStream, bad: Msg) -> thread::JoinHandle<()> {
    let o = o.clone();
    thread::spawn(move || {
        let mut e = engine(&o);
        for m in [bad, good()] {
            // The receiver may stop reading after a refused prefix: a failed send is its
            // business, not this thread's.
            let r = e.send_array_bytes(&a, m.dtype, &m.bytes, &m.shape, Order::C);
            if r.is_err() {
                return;
            }
        }
    })
}

/// The good message's values, as a check of what a call returned.
fn assert_good(values: &[f64], shape: &[u64], what: &str) {
    assert_eq!(shape, &[10, 100], "{what}: shape");
    let want: Vec<f64> = (0..GOOD).map(|i| i as f64).collect();
    assert_same(values, &want, what);
}

/// Receives twice with `call` on `b`: returns the first result's error and checks (when
/// `second_is_good`) that the second receive gives the good message byte-exact, else returns
/// the second error too.
fn receive_twice(
    o: &Options,
    call: Call,
    b: &UnixStream,
    second_is_good: bool,
) -> (Error, Option<Error>) {
    let mut e = engine(o);
    let mut out = vec![0f64; GOOD];
    let what = format!("{call:?} ({:?})", o.backend);
    let mut rx = e.receiver(b);
    let mut once = |out: &mut [f64]| -> Result<(Vec<f64>, Vec<u64>), Error> {
        match call {
            Call::EngineArray | Call::EngineInto | Call::EngineAny => unreachable!(),
            Call::ReceiverArray => rx
                .recv_array::<f64>()
                .map(|a| (a.to_vec(), a.shape().to_vec())),
            Call::ReceiverInto => rx.recv_array_into(out).map(|h| (out.to_vec(), h.shape)),
            Call::ReceiverAny => rx
                .recv_any()
                .and_then(|a| a.into_typed::<f64>(false))
                .map(|a| (a.to_vec(), a.shape().to_vec())),
        }
    };
    let engine_once = |out: &mut [f64]| -> Result<(Vec<f64>, Vec<u64>), Error> {
        let mut e = engine(o);
        match call {
            Call::EngineArray => e
                .recv_array::<f64>(b)
                .map(|a| (a.to_vec(), a.shape().to_vec())),
            Call::EngineInto => e.recv_array_into(b, out).map(|h| (out.to_vec(), h.shape)),
            Call::EngineAny => e
                .recv_any(b)
                .and_then(|a| a.into_typed::<f64>(false))
                .map(|a| (a.to_vec(), a.shape().to_vec())),
            _ => unreachable!(),
        }
    };
    let plain = matches!(call, Call::EngineArray | Call::EngineInto | Call::EngineAny);
    let mut run = |out: &mut [f64]| if plain { engine_once(out) } else { once(out) };
    let first = run(&mut out)
        .err()
        .unwrap_or_else(|| panic!("{what}: first receive succeeded"));
    let second = run(&mut out);
    if second_is_good {
        let (values, shape) =
            second.unwrap_or_else(|e| panic!("{what}: good message after rejection: {e}"));
        assert_good(&values, &shape, &what);
        (first, None)
    } else {
        (first, second.err())
    }
}

/// A rejected message for the caller's expectation, then the good one, for each call.
fn consumed_then_good(
    backend: ringxfer::Backend,
    calls: &[Call],
    bad: impl Fn() -> Msg,
    want: impl Fn(&Error) -> bool,
) {
    for &call in calls {
        let o = opts(backend);
        let (a, b) = UnixStream::pair().expect("socketpair");
        let t = send_both(&o, a, bad());
        let (first, _) = receive_twice(&o, call, &b, true);
        assert!(
            want(&first),
            "{call:?} ({backend}): rejected with {first:?}"
        );
        t.join().expect("sender");
    }
}

fn dtype_mismatch(wire: &str) -> impl Fn(&Error) -> bool + '_ {
    move |e| {
        matches!(e, Error::Frame(FrameError::DtypeMismatch { wire: w, wanted })
            if w == wire && *wanted == DType::native(Scalar::F64).to_string())
    }
}

fn foreign_f8() -> DType {
    let foreign = if cfg!(target_endian = "little") {
        ByteOrder::Big
    } else {
        ByteOrder::Little
    };
    DType::new(Scalar::F64, foreign)
}

both_backends! {
    /// `<i4` where `f64` is expected: `DtypeMismatch`, consumed, the next message arrives.
    fn wrong_dtype_is_consumed(backend) {
        let i4 = DType::native(Scalar::I32);
        consumed_then_good(backend, &EXPECTING, || msg(i4, 1000), dtype_mismatch(&i4.to_string()));
    }

    /// The same dtype in the other byte order (`>f8` on a little-endian host): consumed.
    fn wrong_byte_order_is_consumed(backend) {
        let f = foreign_f8();
        consumed_then_good(backend, &EXPECTING, || msg(f, 1000), dtype_mismatch(&f.to_string()));
    }

    /// A 3 MiB payload of another dtype (larger than the read-ahead and than one discard
    /// piece): consumed in pieces, the next message arrives.
    fn large_wrong_dtype_is_consumed(backend) {
        let i8 = DType::native(Scalar::I64);
        consumed_then_good(backend, &EXPECTING, || msg(i8, 3 << 17), dtype_mismatch(&i8.to_string()));
    }

    /// `recv_array_into` with an `out` of 1000 elements and a message of 999 `f64`:
    /// `ShapeMismatch { shape: [999], needed: 999, len: 1000 }`, consumed (it used to leave
    /// the payload in the socket: the next receive failed with `bad magic`).
    fn wrong_length_is_consumed(backend) {
        let f8 = DType::native(Scalar::F64);
        let want = |e: &Error| {
            matches!(e, Error::Frame(FrameError::ShapeMismatch { shape, needed: 999, len: 1000 })
                if shape == &[999])
        };
        consumed_then_good(backend, &[Call::EngineInto, Call::ReceiverInto], || msg(f8, 999), want);
    }

    /// A payload over `max_payload_bytes` is refused at its prefix (`TooLarge`) by every
    /// call, and the stream is left inside that message: the next receive of the same kind
    /// reads the header's shape field where a magic should be (`BadMagic` of its first byte).
    fn over_max_payload_leaves_the_stream(backend) {
        let f8 = DType::native(Scalar::F64);
        let bad = || msg(f8, 1000);
        let shape_byte = Header::new(f8, &[1000], Order::C).expect("header").encode()[PREFIX_LEN];
        for call in ALL {
            let o = Options { max_payload_bytes: 4096, ..opts(backend) };
            let (a, b) = UnixStream::pair().expect("socketpair");
            let t = send_both(&o, a, bad());
            let (first, second) = receive_twice(&o, call, &b, false);
            assert!(
                matches!(first, Error::Frame(FrameError::TooLarge { payload_len: 8000, limit: 4096 })),
                "{call:?} ({backend}): {first:?}"
            );
            match second {
                Some(Error::Frame(FrameError::BadMagic(got))) => {
                    assert_eq!(got, vec![shape_byte], "{call:?} ({backend})");
                }
                other => panic!("{call:?} ({backend}): second receive gave {other:?}"),
            }
            drop(b);
            t.join().expect("sender");
        }
    }
}

/// A `Receiver` can move to another thread with its engine borrow (as before the receive
/// paths became one): the compile-time check of `Send`.
#[test]
fn receiver_is_send() {
    fn is_send<T: Send>() {}
    is_send::<ringxfer::Receiver<'static, UnixStream>>();
    is_send::<ringxfer::Receiver<'static, &'static UnixStream>>();
}
