//! `Engine::empty_array`: an array in the engine's receive memory (recycled pages of dropped
//! arrays when one fits) that the caller fills with a raw receive — both backends, real
//! sockets, byte-exact.

mod util;

use ringxfer::dtype::{DType, Scalar};
use ringxfer::{Error, FrameError, Order, WireFormat};
use util::*;

both_backends! {
    /// Shape, dtype, order and length as asked; a raw receive fills it byte for byte.
    fn filled_by_recv_into(backend) {
        let (tx, rx) = tcp_pair();
        let want: Vec<u8> = pattern_vec(3 * 5 * 7 * 4, 11);
        let sender = spawn_send(opts(backend), tx, want.clone());
        let mut e = engine(&opts(backend));
        let dt = DType::native(Scalar::F32);
        let mut a = e.empty_array(dt, &[3, 5, 7], Order::F).expect("empty_array");
        assert_eq!(a.shape(), &[3, 5, 7]);
        assert_eq!(a.dtype(), dt);
        assert_eq!(a.order(), Order::F);
        assert_eq!(a.format(), WireFormat::Rgxf);
        assert!(!a.checksum_verified(), "nothing was received into it by a framed receive");
        assert_eq!(a.bytes().len(), want.len());
        e.recv_into(&rx, a.bytes_mut()).expect("recv_into");
        let (_, sent, _tx) = sender.join().expect("sender thread");
        sent.expect("send");
        assert_bytes_eq(a.bytes(), &want, "empty_array filled by recv_into");
    }

    /// A dropped array's mapping is handed out again, old bytes and all (a fresh mapping
    /// would read zeros): the recycling that spares a fresh receive its page faults. The two
    /// variants use sizes the pool's fit rule keeps apart (they run in parallel).
    fn recycles_dropped_arrays(backend) {
        let e = engine(&opts(backend));
        let dt = DType::native(Scalar::U8);
        let n: usize = if backend == ringxfer::Backend::Uring { 16 << 20 } else { 8 << 20 };
        let mut a = e.empty_array(dt, &[n as u64], Order::C).expect("first");
        fill_pattern(a.bytes_mut(), 5);
        let (addr, marked) = (a.bytes().as_ptr(), a.bytes().to_vec());
        drop(a);
        let b = e.empty_array(dt, &[n as u64], Order::C).expect("second");
        assert_eq!(b.bytes().as_ptr(), addr, "the same mapping came back");
        assert_bytes_eq(b.bytes(), &marked, "the recycled mapping keeps its old bytes");
    }

    /// 0-d and empty arrays.
    fn scalar_and_empty(backend) {
        let e = engine(&opts(backend));
        let a = e.empty_array(DType::native(Scalar::F64), &[], Order::C).expect("0-d");
        assert_eq!((a.shape().len(), a.bytes().len()), (0, 8));
        let z = e.empty_array(DType::native(Scalar::F64), &[4, 0], Order::C).expect("empty");
        assert_eq!(z.bytes().len(), 0);
    }

    /// A shape whose byte length overflows is the caller's mistake, named.
    fn overflowing_shape_is_invalid_array(backend) {
        let e = engine(&opts(backend));
        let err = e
            .empty_array(DType::native(Scalar::F64), &[u64::MAX / 4, 3], Order::C)
            .expect_err("overflow");
        assert!(
            matches!(err, Error::InvalidArray(FrameError::ShapeOverflow { ref shape, itemsize: 8 })
                if shape == &[u64::MAX / 4, 3]),
            "{err:?}"
        );
    }
}
