//! Framed arrays through the engine: batches of small arrays, read-ahead receiver, mixed
//! sizes, empty and 0-d arrays, tiny socket buffers — both backends, byte-exact.

mod util;

use std::thread;

use ringxfer::dtype::DType;
use ringxfer::{ArrayView, Error, FrameError, Order};
use util::*;

/// The messages of one batch: many small arrays around a few large, empty and 0-d ones.
fn batch() -> Vec<(Vec<u8>, Vec<u64>, DType, Order)> {
    let f8: DType = "<f8".parse().unwrap();
    let u1: DType = "|u1".parse().unwrap();
    let mut v = Vec::new();
    for i in 0..300u64 {
        let (len, shape) = match i % 7 {
            0 => (4096, vec![512]),
            1 => (65536, vec![64, 128]),
            2 => (16, vec![2]),
            3 => (0, vec![3, 0, 2]),
            4 => (8, vec![]),
            5 => (3_000_008, vec![375_001]),
            _ => (65544, vec![8193]),
        };
        let mut b = vec![0u8; len];
        fill_pattern(&mut b, i + 1);
        let order = if i % 2 == 0 { Order::C } else { Order::F };
        v.push((b, shape, f8, order));
    }
    v.push((vec![7u8; 5], vec![5], u1, Order::C));
    v
}

fn check_batch(backend: ringxfer::Backend, small_buffers: bool) {
    check_batch_with(opts(backend), small_buffers)
}

fn check_batch_with(o: ringxfer::Options, small_buffers: bool) {
    let msgs = batch();
    let (a, b) = if small_buffers {
        tcp_pair_small_buffers(4096)
    } else {
        tcp_pair()
    };
    let o2 = o.clone();
    let sent = msgs.clone();
    let t = thread::spawn(move || {
        let mut e = engine(&o2);
        let views: Vec<ArrayView<'_>> = sent
            .iter()
            .map(|(b, s, d, ord)| ArrayView {
                dtype: *d,
                bytes: b,
                shape: s,
                order: *ord,
            })
            .collect();
        // Half in one batch, then one at a time: both paths interleave on one connection.
        let (first, rest) = views.split_at(views.len() / 2);
        e.send_arrays(&a, first).expect("send batch");
        for v in rest {
            e.send_array_bytes(&a, v.dtype, v.bytes, v.shape, v.order)
                .expect("send one");
        }
    });
    let mut e = engine(&o);
    let mut rx = e.receiver(&b);
    for (i, (bytes, shape, dtype, order)) in msgs.iter().enumerate() {
        let got = rx.recv_any().unwrap_or_else(|e| panic!("message {i}: {e}"));
        assert_eq!(got.dtype(), *dtype, "message {i}");
        assert_eq!(got.shape(), &shape[..], "message {i}");
        assert_eq!(got.order(), *order, "message {i}");
        assert_bytes_eq(got.bytes(), bytes, &format!("message {i}"));
    }
    t.join().expect("sender");
    // Clean close between messages: EOF naming 0 of the 32 prefix bytes.
    match rx.recv_any() {
        Err(Error::UnexpectedEof {
            transferred: 0,
            expected: 32,
        }) => {}
        other => panic!("expected a clean EOF, got {other:?}"),
    }
}

both_backends! {
    /// 301 framed arrays of mixed sizes, batch-sent and read ahead, arrive in order.
    fn mixed_batch_round_trip(backend) {
        check_batch(backend, false);
    }

    /// The same with 4 KiB socket buffers: every read-ahead and payload is short.
    fn mixed_batch_tiny_socket_buffers(backend) {
        check_batch(backend, true);
    }

    /// With the default options (transfers under 512 KiB take the direct syscall path on
    /// the uring backend, larger ones the ring), the mixed batch arrives the same.
    fn mixed_batch_default_direct_path(backend) {
        check_batch_with(opts(backend), false);
    }

    /// Unbuffered `recv_array` of a Fortran-order 3-D array, then a 0-d one (C03, C13).
    fn typed_fortran_then_scalar(backend) {
        let (a, b) = unix_pair();
        let o = opts(backend);
        let o2 = o.clone();
        let t = thread::spawn(move || {
            let mut e = engine(&o2);
            let data: Vec<f64> = (0..1000).map(f64::from).collect();
            e.send_array(&a, &data, &[20, 10, 5], Order::F).unwrap();
            e.send_array(&a, &[0f64; 0], &[0], Order::C).unwrap();
            e.send_array(&a, &[42i32], &[], Order::C).unwrap();
        });
        let mut e = engine(&o);
        let arr = e.recv_array::<f64>(&b).unwrap();
        assert_eq!((arr.shape(), arr.order()), (&[20u64, 10, 5][..], Order::F));
        assert!(arr.iter().enumerate().all(|(i, &x)| x == i as f64));
        let empty = e.recv_array::<f64>(&b).unwrap();
        assert_eq!((empty.shape(), empty.len()), (&[0u64][..], 0));
        let wrong = e.recv_array::<f64>(&b);
        match wrong {
            Err(Error::Frame(FrameError::DtypeMismatch { wire, wanted })) => {
                assert_eq!((wire.as_str(), wanted.as_str()), ("<i4", "<f8"));
            }
            other => panic!("expected DtypeMismatch, got {other:?}"),
        }
        t.join().unwrap();
    }

    /// A shape that does not match the slice is refused before anything is sent.
    fn shape_mismatch_is_refused(backend) {
        let (a, _b) = unix_pair();
        let mut e = engine(&opts(backend));
        match e.send_array(&a, &[1f32; 10], &[3, 3], Order::C) {
            Err(Error::InvalidArray(FrameError::ShapeMismatch { needed: 9, len: 10, .. })) => {}
            other => panic!("expected ShapeMismatch, got {other:?}"),
        }
    }
}
