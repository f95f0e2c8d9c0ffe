//! Issue 9, section 3 (framed): an array striped over N streams with the stripe geometry in
//! a per-stream prefix (docs/PROTOCOL.md, "Striped arrays"): the receiver needs no prior
//! knowledge — not the size, dtype, shape, nor the order of the streams. Both backends;
//! hostile prefixes are refused before anything is allocated.

mod util;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use ringxfer::dtype::DType;
use ringxfer::frame::FrameError;
use ringxfer::stripe::{STRIPE_PREFIX_LEN, StripePrefix, stripes};
use ringxfer::{Error, Options, Order};
use util::*;

fn pairs(n: usize) -> (Vec<TcpStream>, Vec<TcpStream>) {
    (0..n).map(|_| tcp_pair()).unzip()
}

fn round_trip(o: Options, n: usize, shape: &[u64], order: Order) {
    let (tx, mut rx) = pairs(n);
    rx.reverse(); // the receiver lists the streams in another order: the prefixes say which
    let count: u64 = shape.iter().product();
    let data: Vec<f64> = (0..count).map(|i| i as f64 * 0.5 - 3.0).collect();
    let d = data.clone();
    let shp = shape.to_vec();
    let o2 = o.clone();
    let sender = std::thread::spawn(move || {
        let dt: DType = "<f8".parse().unwrap();
        engine(&o2)
            .send_array_striped(&tx, dt, bytemuck::cast_slice(&d), &shp, order)
            .map(|()| tx)
    });
    let a = engine(&o)
        .recv_any_striped(&rx)
        .unwrap_or_else(|e| panic!("{n} streams: {e}"));
    let _tx = sender.join().unwrap().unwrap();
    assert_eq!(a.shape(), shape);
    assert_eq!(a.order(), order);
    assert_eq!(a.dtype().to_string(), "<f8");
    let got: &[f64] = bytemuck::cast_slice(a.bytes());
    assert_eq!(got, &data[..], "{n} streams");
}

both_backends! {
    fn framed_striped_round_trip_any_stream_order(backend) {
        for n in [1, 2, 3, 4] {
            round_trip(opts(backend), n, &[1000, 37], Order::F);
            round_trip(opts(backend), n, &[3], Order::C);
            round_trip(opts(backend), n, &[0, 5], Order::C);
        }
        round_trip(opts(backend), 4, &[2_000_000], Order::C); // 16 MB
    }

    /// The receiver is given fewer sockets than the array was striped over: a typed error
    /// naming the stream, before any payload allocation.
    fn framed_striped_count_mismatch(backend) {
        let o = Options { idle_timeout: Some(Duration::from_secs(2)), ..opts(backend) };
        let (tx, rx) = pairs(3);
        let data = vec![1u8; 100_000];
        let dt: DType = "|u1".parse().unwrap();
        let o2 = o.clone();
        let sender = std::thread::spawn(move || {
            let _ = engine(&o2).send_array_striped(&tx, dt, &data, &[100_000], Order::C);
            tx
        });
        let r = engine(&o).recv_any_striped(&rx[..2]);
        match r {
            Err(Error::Stream { source, .. }) => match *source {
                Error::Frame(FrameError::BadStripe(ref why)) => {
                    assert!(why.contains("striped over 3 streams, 2 sockets"), "{why}")
                }
                other => panic!("{other:?}"),
            },
            other => panic!("want Stream(BadStripe), got {other:?}"),
        }
        drop(rx);
        let _ = sender.join();
    }

    /// Hand-made hostile prefixes: bad magic, bad CRC, a geometry that does not match, two
    /// streams claiming the same index, two arrays mixed.
    fn framed_striped_hostile_prefixes(backend) {
        let good = |stream: u32, id: u64| {
            let g = stripes(8192, 2);
            let r = &g[stream as usize];
            StripePrefix {
                stream,
                streams: 2,
                array_id: id,
                offset: r.start,
                len: r.end - r.start,
                payload_len: 8192,
            }
        };
        let mut bad_crc = good(1, 7).encode();
        bad_crc[20] ^= 1;
        let mut bad_magic = good(1, 7).encode();
        bad_magic[0] = b'X';
        let mut wrong_geometry = good(1, 7);
        wrong_geometry.offset = 100;
        let cases: Vec<([u8; STRIPE_PREFIX_LEN], [u8; STRIPE_PREFIX_LEN], &str)> = vec![
            (good(0, 7).encode(), bad_crc, "prefix CRC-32"),
            (good(0, 7).encode(), bad_magic, "magic"),
            (good(0, 7).encode(), wrong_geometry.encode(), "the geometry says"),
            (good(0, 7).encode(), good(0, 7).encode(), "stream index 0 twice"),
            (good(0, 7).encode(), good(1, 8).encode(), "array id"),
        ];
        for (p0, p1, want) in cases {
            let (tx, rx) = pairs(2);
            (&tx[0]).write_all(&p0).unwrap();
            (&tx[1]).write_all(&p1).unwrap();
            let r = engine(&opts(backend)).recv_any_striped(&rx);
            match r {
                Err(Error::Stream { stream: 1, source, .. }) => match *source {
                    Error::Frame(FrameError::BadStripe(ref why)) => {
                        assert!(why.contains(want), "{want}: {why}")
                    }
                    other => panic!("{want}: {other:?}"),
                },
                other => panic!("{want}: want Stream {{ stream: 1, BadStripe }}, got {other:?}"),
            }
        }
    }
}
