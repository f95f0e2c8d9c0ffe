//! A striped framed array received straight into the caller's memory, in two steps:
//! `Engine::recv_striped_header` (every stripe prefix and stream 0's header, checked) and
//! `Engine::recv_striped_payload_into` (every stripe in place into the caller's `&mut [u8]`,
//! each stripe's CRC-32 checked). Both backends: byte-exact over 4 streams given in another
//! order than the sender's, the header fields of an F-order `>f8` array, a buffer of the wrong
//! length or step 1's sockets in another order (nothing read: a second call with the right
//! ones receives the array), a stream that
//! closes early (named, with its counts), forced short completions (4 KiB socket buffers on
//! every stream), a corrupted payload byte (`PayloadChecksum` naming the stream).

mod util;

use std::io::Write;
use std::net::{Shutdown, TcpStream};

use ringxfer::dtype::DType;
use ringxfer::frame::FrameError;
use ringxfer::stripe::stripes;
use ringxfer::{Engine, Error, Header, Options, Order, StripedHeader};
use util::*;

/// `len` bytes whose byte `i` is `i % 251`: 251 is prime, so a stripe (a multiple of 4096
/// bytes) put at another stripe's place, or shifted, changes the bytes.
fn positions(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn pairs(n: usize) -> (Vec<TcpStream>, Vec<TcpStream>) {
    (0..n).map(|_| tcp_pair()).unzip()
}

/// Sends `bytes` of `dtype` as `shape`/`order` striped over `tx` with the library, on a
/// thread; returns the sockets when done.
fn send_on_thread(
    o: &Options,
    tx: Vec<TcpStream>,
    dtype: &str,
    bytes: Vec<u8>,
    shape: &[u64],
    order: Order,
) -> std::thread::JoinHandle<Vec<TcpStream>> {
    let (o, dtype, shape) = (o.clone(), dtype.parse::<DType>().unwrap(), shape.to_vec());
    std::thread::spawn(move || {
        engine(&o)
            .send_array_striped(&tx, dtype, &bytes, &shape, order)
            .unwrap_or_else(|e| panic!("send_array_striped: {e}"));
        tx
    })
}

/// Step 1 on `rx`, panicking with the error.
fn step1(e: &mut Engine, rx: &[TcpStream]) -> StripedHeader {
    e.recv_striped_header(rx)
        .unwrap_or_else(|e| panic!("recv_striped_header: {e}"))
}

/// The `Error::Stream` parts of `r`, or a panic naming what came instead.
fn stream_err(r: ringxfer::Result<()>) -> (usize, String, Error) {
    match r {
        Err(Error::Stream {
            stream,
            peer,
            source,
        }) => (stream, peer, *source),
        other => panic!("want Error::Stream, got {other:?}"),
    }
}

both_backends! {
    /// 4 streams, given to the receiver in reverse order, 10 MB + 5 bytes of `|u1` with a
    /// position pattern: step 1 says which socket carries which stripe, step 2 fills a
    /// poisoned caller buffer byte-exact.
    fn four_streams_into_a_caller_buffer_byte_exact(backend) {
        let o = opts(backend);
        let (tx, mut rx) = pairs(4);
        rx.reverse();
        let len = 10_000_005;
        let data = positions(len);
        let sender = send_on_thread(&o, tx, "|u1", data.clone(), &[len as u64], Order::C);
        let mut e = engine(&o);
        let h = step1(&mut e, &rx);
        assert_eq!(h.dtype().to_string(), "|u1");
        assert_eq!((h.shape(), h.order()), (&[len as u64][..], Order::C));
        assert_eq!((h.payload_len(), h.streams()), (len as u64, 4));
        let sockets: Vec<Option<usize>> = (0..5).map(|k| h.socket_of(k)).collect();
        assert_eq!(sockets, [Some(3), Some(2), Some(1), Some(0), None]);
        let mut out: Vec<u8> = poison_vec(len, 11);
        e.recv_striped_payload_into(&rx, &h, &mut out)
            .unwrap_or_else(|e| panic!("recv_striped_payload_into: {e}"));
        assert_bytes_eq(&out, &data, "4 streams into the caller's buffer");
        let _tx = sender.join().unwrap();
    }

    /// A `>f8` array of shape 3 x 5 x 7 in F order over 2 streams: every header field exact,
    /// then the payload (big-endian bytes, as sent) byte-exact.
    fn f_order_big_endian_f8_header_fields(backend) {
        let o = opts(backend);
        let (tx, rx) = pairs(2);
        let data: Vec<u8> = (0..105u32).flat_map(|i| (f64::from(i) * 0.25).to_be_bytes()).collect();
        let sender = send_on_thread(&o, tx, ">f8", data.clone(), &[3, 5, 7], Order::F);
        let mut e = engine(&o);
        let h = step1(&mut e, &rx);
        let want = Header::new(">f8".parse().unwrap(), &[3, 5, 7], Order::F).unwrap();
        assert_eq!(h.header(), &want);
        assert_eq!(h.dtype().to_string(), ">f8");
        assert_eq!((h.shape(), h.order()), (&[3u64, 5, 7][..], Order::F));
        assert_eq!((h.payload_len(), h.streams()), (840, 2));
        // 840 bytes: all of it is stripe 0 (stripes are multiples of 4096 bytes).
        assert_eq!(stripes(840, 2), vec![0..840, 840..840]);
        let mut out = vec![0u8; 840];
        e.recv_striped_payload_into(&rx, &h, &mut out).unwrap();
        assert_bytes_eq(&out, &data, ">f8 F order");
        let _tx = sender.join().unwrap();
    }

    /// `out` one byte short, then one byte long, then the sockets without the last: each is
    /// `InvalidInput` with both numbers, `out` untouched, nothing read — the streams are still
    /// at the start of their stripes, so a call with the right buffer receives the array.
    fn wrong_length_reads_nothing(backend) {
        let o = opts(backend);
        let (tx, rx) = pairs(4);
        let len = 50_000;
        let data = positions(len);
        let sender = send_on_thread(&o, tx, "|u1", data.clone(), &[len as u64], Order::C);
        let mut e = engine(&o);
        let h = step1(&mut e, &rx);
        let cases: [(&[TcpStream], usize); 3] = [(&rx, len - 1), (&rx, len + 1), (&rx[..3], len)];
        for (socks, out_len) in cases {
            let mut out = vec![0xa5u8; out_len];
            match e.recv_striped_payload_into(socks, &h, &mut out) {
                Err(Error::InvalidInput(m)) => assert_eq!(
                    m,
                    format!(
                        "recv_striped_payload_into: {} socket(s) and {out_len} bytes of out for \
                         an array of 50000 payload bytes striped over 4 streams (nothing was \
                         read)",
                        socks.len()
                    )
                ),
                other => panic!("{out_len} bytes: want InvalidInput, got {other:?}"),
            }
            assert!(out.iter().all(|&b| b == 0xa5), "out untouched");
        }
        let mut out = vec![0u8; len];
        e.recv_striped_payload_into(&rx, &h, &mut out).unwrap();
        assert_bytes_eq(&out, &data, "after the refused calls");
        let _tx = sender.join().unwrap();
    }

    /// Step 2 given the sockets of step 1 in another order (two streams that carry stripes of
    /// the same length swapped, so each stripe's own CRC-32 would still match), or another
    /// array's sockets: `InvalidInput` saying so, nothing read, `out` untouched — the call
    /// with the sockets as step 1 had them then receives the array byte-exact.
    fn sockets_unlike_step_1_read_nothing(backend) {
        let o = opts(backend);
        let (tx, rx) = pairs(3);
        let (other_tx, other_rx) = pairs(3);
        let len = 30_000;
        let data = positions(len);
        assert_eq!(stripes(len as u64, 3), vec![0..12288, 12288..24576, 24576..30000]);
        let sender = send_on_thread(&o, tx, "|u1", data.clone(), &[len as u64], Order::C);
        let mut e = engine(&o);
        let h = step1(&mut e, &rx);
        let swapped: Vec<&TcpStream> = vec![&rx[1], &rx[0], &rx[2]];
        let other: Vec<&TcpStream> = other_rx.iter().collect();
        for (what, socks) in [("swapped", &swapped), ("another array's", &other)] {
            let mut out = vec![0xa5u8; len];
            match e.recv_striped_payload_into(socks, &h, &mut out) {
                Err(Error::InvalidInput(m)) => assert_eq!(
                    m,
                    "recv_striped_payload_into: the sockets are not those of step 1 in the same \
                     order (nothing was read)",
                    "{what}"
                ),
                other => panic!("{what}: want InvalidInput, got {other:?}"),
            }
            assert!(out.iter().all(|&b| b == 0xa5), "{what}: out untouched");
        }
        let mut out = vec![0u8; len];
        e.recv_striped_payload_into(&rx, &h, &mut out).unwrap();
        assert_bytes_eq(&out, &data, "after the refused calls");
        let _tx = sender.join().unwrap();
        drop((other_tx, other_rx));
    }

    /// Stream 1 of 3 sends its prefix and 5000 bytes of its 12288-byte stripe, then closes
    /// (FIN); streams 0 and 2 send theirs whole. Step 2 fails with `Error::Stream` naming the
    /// socket of stream 1 (index 1 in the receiver's list), its peer, and its own
    /// `UnexpectedEof { transferred: 5000, expected: 12288 + 8 }` (stripe and trailer); the
    /// 5000 bytes are in place in `out`, and stripes 0 and 2 arrived whole.
    fn a_stream_closing_early_is_named_with_its_counts(backend) {
        let o = opts(backend);
        let (tx, rx) = pairs(3);
        let len = 30_000;
        let data = positions(len);
        let header = Header::new("|u1".parse().unwrap(), &[len as u64], Order::C).unwrap();
        let g = stripes(len as u64, 3);
        assert_eq!(g, vec![0..12288, 12288..24576, 24576..30000]);
        for (i, s) in tx.iter().enumerate() {
            let mut w = striped_wire(&header, &data, (i, 3, 0x5eed));
            if i == 1 {
                w.truncate(ringxfer::STRIPE_PREFIX_LEN + 5000);
            }
            (&*s).write_all(&w).unwrap();
        }
        tx[1].shutdown(Shutdown::Write).unwrap();
        let peer1 = rx[1].peer_addr().unwrap().to_string();
        let mut e = engine(&o);
        let h = step1(&mut e, &rx);
        let mut out = vec![0u8; len];
        let (stream, peer, source) = stream_err(e.recv_striped_payload_into(&rx, &h, &mut out));
        assert_eq!((stream, peer), (1, peer1));
        assert!(
            matches!(source, Error::UnexpectedEof { transferred: 5000, expected: 12296 }),
            "{source:?}"
        );
        assert_bytes_eq(&out[..12288], &data[..12288], "stripe 0");
        assert_bytes_eq(&out[12288..17288], &data[12288..17288], "stream 1's 5000 bytes");
        assert_bytes_eq(&out[24576..], &data[24576..], "stripe 2");
        drop(tx);
    }

    /// 4 KiB `SO_RCVBUF`/`SO_SNDBUF` on every stream: every receive completes short, many
    /// times per stripe; 8 MiB + 11 bytes still arrive byte-exact into the caller's buffer.
    fn short_completions_every_stream(backend) {
        let o = opts(backend);
        let (tx, rx): (Vec<TcpStream>, Vec<TcpStream>) =
            (0..4).map(|_| tcp_pair_small_buffers(4096)).unzip();
        let len = (8 << 20) + 11;
        let data = positions(len);
        let sender = send_on_thread(&o, tx, "|u1", data.clone(), &[len as u64], Order::C);
        let mut e = engine(&o);
        let h = step1(&mut e, &rx);
        let mut out: Vec<u8> = poison_vec(len, 5);
        e.recv_striped_payload_into(&rx, &h, &mut out).unwrap();
        assert_bytes_eq(&out, &data, "4 KiB socket buffers");
        let _tx = sender.join().unwrap();
    }

    /// One payload byte of stripe 2 (of 3) flipped after its CRC-32 was computed: step 2
    /// receives every stripe whole and fails with `Error::Stream` naming that stream's socket
    /// and `PayloadChecksum` with the sent and the computed CRC-32; the flipped byte is in
    /// `out`.
    fn corrupted_payload_byte_is_a_checksum_error(backend) {
        let o = opts(backend);
        let (tx, mut rx) = pairs(3);
        rx.swap(0, 2); // stripe 2 arrives on socket 0
        let len = 30_000;
        let data = positions(len);
        let header = Header::new("|u1".parse().unwrap(), &[len as u64], Order::C).unwrap();
        let at = 25_000; // in stripe 2 (24576..30000)
        for (i, s) in tx.iter().enumerate() {
            let mut w = striped_wire(&header, &data, (i, 3, 0x5eed));
            if i == 2 {
                w[ringxfer::STRIPE_PREFIX_LEN + at - 24576] ^= 0x40;
            }
            (&*s).write_all(&w).unwrap();
        }
        let mut bad = data[24576..].to_vec();
        bad[at - 24576] ^= 0x40;
        let mut e = engine(&o);
        let h = step1(&mut e, &rx);
        let mut out = vec![0u8; len];
        let (stream, _, source) = stream_err(e.recv_striped_payload_into(&rx, &h, &mut out));
        assert_eq!(stream, 0);
        match source {
            Error::Frame(FrameError::PayloadChecksum { expected, actual }) => {
                assert_eq!(expected, crc32fast::hash(&data[24576..]));
                assert_eq!(actual, crc32fast::hash(&bad));
            }
            other => panic!("want PayloadChecksum, got {other:?}"),
        }
        assert_bytes_eq(&out[24576..], &bad, "stripe 2 as received");
        assert_bytes_eq(&out[..24576], &data[..24576], "stripes 0 and 1");
        drop(tx);
    }

    /// The typed call, `recv_array_striped_into::<T>`: three `<f8` arrays on the same 3
    /// streams. The first (800 bytes: two empty stripes) is asked for as `f32`
    /// (`DtypeMismatch` naming both dtypes), the
    /// second (12 MB: several 1 MiB discard rounds per stream) into one element too few
    /// (`ShapeMismatch` with both lengths): each is consumed, `out` untouched. The third then
    /// arrives byte-exact with its header — proof that the streams were left at its start.
    fn typed_into_consumes_an_array_that_does_not_fit(backend) {
        let o = opts(backend);
        let (tx, rx) = pairs(3);
        // 800 bytes: streams 1 and 2 carry empty stripes (only their trailers to discard).
        let first: Vec<f64> = (0..100).map(f64::from).collect();
        let second: Vec<f64> = (0..1_500_000).map(|i| f64::from(i) * 2.0).collect();
        let third: Vec<f64> = (0..37_000).map(|i| f64::from(i) - 0.5).collect();
        let (o2, t) = (o.clone(), third.clone());
        let sender = std::thread::spawn(move || {
            let mut e = engine(&o2);
            let f8: DType = "<f8".parse().unwrap();
            let arrays: [(&[f64], &[u64], Order); 3] = [
                (&first, &[10, 10], Order::F),
                (&second, &[1_500_000], Order::C),
                (&t, &[37, 1000], Order::F),
            ];
            for (a, shape, order) in arrays {
                e.send_array_striped(&tx, f8, bytemuck::cast_slice(a), shape, order).unwrap();
            }
            tx
        });
        let mut e = engine(&o);
        let mut out32 = vec![7.0f32; 100];
        match e.recv_array_striped_into(&rx, &mut out32) {
            Err(Error::Frame(FrameError::DtypeMismatch { wire, wanted })) => {
                assert_eq!((wire.as_str(), wanted.as_str()), ("<f8", "<f4"))
            }
            other => panic!("want DtypeMismatch, got {other:?}"),
        }
        assert!(out32.iter().all(|&x| x == 7.0), "out untouched");
        let mut short = vec![7.0f64; 1_499_999];
        match e.recv_array_striped_into(&rx, &mut short) {
            Err(Error::Frame(FrameError::ShapeMismatch { shape, needed, len })) => {
                assert_eq!((shape, needed, len), (vec![1_500_000], 1_500_000, 1_499_999))
            }
            other => panic!("want ShapeMismatch, got {other:?}"),
        }
        assert!(short.iter().all(|&x| x == 7.0), "out untouched");
        let mut out = vec![0f64; 37_000];
        let h = e.recv_array_striped_into(&rx, &mut out).unwrap();
        assert_eq!(h, Header::new("<f8".parse().unwrap(), &[37, 1000], Order::F).unwrap());
        assert_same(&out, &third, "the third array");
        let _tx = sender.join().unwrap();
    }
}
