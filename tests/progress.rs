//! Progress hooks (src/driver.rs, "Progress hooks"): a recording hook sees a transfer's bytes
//! in stream order, contiguous, each once, covering exactly the transfer — receives only
//! bytes already received — on both backends, also under forced short completions (4 KiB
//! socket buffers, a slow peer, probe cancels). And the framed CRC-32 computed through the
//! hook: exactly `crc32fast::hash` of the payload, a corrupted byte still a
//! `PayloadChecksum` with both values (single and striped arrays).

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ringxfer::dtype::DType;
use ringxfer::frame::{FrameError, Header, encode_trailer};
use ringxfer::progress_testing::{Recorder, recv_recorded, send_recorded};
use ringxfer::stripe::{StripePrefix, stripes};
use ringxfer::{Backend, Engine, Error, Options, Order};
use util::*;

const MIB: usize = 1 << 20;

/// The hook's calls are contiguous from 0, none empty, and their bytes are `want`.
fn assert_covers(rec: &Recorder, want: &[u8], what: &str) {
    let mut at = 0u64;
    for (k, (off, bytes)) in rec.calls.iter().enumerate() {
        assert_eq!(*off, at, "{what}: call {k} starts at {off}, expected {at}");
        assert!(!bytes.is_empty(), "{what}: call {k} is empty");
        let (s, e) = (at as usize, at as usize + bytes.len());
        assert!(
            e <= want.len(),
            "{what}: call {k} ends at {e} > {}",
            want.len()
        );
        assert_bytes_eq(bytes, &want[s..e], &format!("{what}: call {k}"));
        at += bytes.len() as u64;
    }
    assert_eq!(at, want.len() as u64, "{what}: bytes covered");
}

/// Writes `data` in `piece`-byte writes, pausing `pause` after every `every` bytes.
fn slow_writer(mut w: TcpStream, data: Vec<u8>, piece: usize, every: usize, pause: Duration) {
    for (k, c) in data.chunks(piece).enumerate() {
        w.write_all(c).unwrap();
        if ((k + 1) * piece) % every == 0 {
            std::thread::sleep(pause);
        }
    }
}

/// Receives a 3-part stream (5 bytes, `mid` bytes, 8 bytes) with a recording hook.
fn recv_three_parts(o: &Options, rx: &TcpStream, mid: usize) -> (Vec<u8>, Recorder) {
    let mut e = engine(o);
    let (mut a, mut b, mut c) = (vec![0u8; 5], poison_vec::<u8>(mid, 1), vec![0u8; 8]);
    let (r, rec) = recv_recorded(&mut e, rx, vec![&mut a, &mut b, &mut c], None);
    assert_eq!(r.expect("receive"), (13 + mid) as u64);
    (a.into_iter().chain(b).chain(c).collect(), rec)
}

both_backends! {
    /// A receive over three parts, the sender writing as fast as it can.
    fn recv_hook_covers_the_stream_in_order(b) {
        let (tx, rx) = tcp_pair();
        let data: Vec<u8> = pattern_vec(3 * MIB + 17 + 13, 7);
        let d = data.clone();
        let w = std::thread::spawn(move || slow_writer(tx, d, 1 << 20, usize::MAX, Duration::ZERO));
        let (got, rec) = recv_three_parts(&small_chains(b, None), &rx, 3 * MIB + 17);
        w.join().unwrap();
        assert_bytes_eq(&got, &data, "received");
        assert_covers(&rec, &data, "recv hook");
    }

    /// The same over 4 KiB socket buffers from a writer that pauses 40 ms every 256 KiB,
    /// with a 300 ms idle timeout: the receive's requests complete short (probe cancels every
    /// 30 ms on uring, short `read`s on blocking), and the hook still sees each byte once.
    fn recv_hook_under_short_completions(b) {
        let (tx, rx) = tcp_pair_small_buffers(4096);
        let data: Vec<u8> = pattern_vec(MIB + 13, 8);
        let d = data.clone();
        let pause = Duration::from_millis(40);
        let w = std::thread::spawn(move || slow_writer(tx, d, 16 << 10, 256 << 10, pause));
        let o = small_chains(b, Some(Duration::from_millis(300)));
        let (got, rec) = recv_three_parts(&o, &rx, MIB);
        w.join().unwrap();
        assert_bytes_eq(&got, &data, "received");
        assert_covers(&rec, &data, "recv hook, short completions");
        assert!(rec.calls.len() > 1, "one call for a paused stream: {}", rec.calls.len());
    }

    /// A send over three parts (header, payload, trailer sized): the hook covers exactly the
    /// stream before the call returns; with 4 KiB buffers and a reader that pauses.
    fn send_hook_covers_the_stream(b) {
        for small in [false, true] {
            let (tx, rx) = if small { tcp_pair_small_buffers(4096) } else { tcp_pair() };
            let (h, p, t): (Vec<u8>, Vec<u8>, Vec<u8>) =
                (pattern_vec(40, 1), pattern_vec(3 * MIB + 5, 2), pattern_vec(8, 3));
            let want: Vec<u8> = [&h[..], &p[..], &t[..]].concat();
            let n = want.len();
            let reader = std::thread::spawn(move || {
                let mut got = vec![0u8; n];
                let mut rx = rx;
                for c in got.chunks_mut(256 << 10) {
                    rx.read_exact(c).unwrap();
                    if small {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                got
            });
            let idle = small.then_some(Duration::from_secs(5));
            let mut e = engine(&small_chains(b, idle));
            let (r, rec) = send_recorded(&mut e, &tx, vec![&h, &p, &t]);
            assert_eq!(r.expect("send"), n as u64);
            assert_covers(&rec, &want, &format!("send hook, small buffers {small}"));
            assert_bytes_eq(&reader.join().unwrap(), &want, "sent");
        }
    }

    /// A receive done after `at_least` bytes: the hook covers exactly the bytes received.
    fn at_least_hook_covers_what_arrived(b) {
        let (mut tx, rx) = tcp_pair();
        let data: Vec<u8> = pattern_vec(1000, 9);
        tx.write_all(&data).unwrap();
        let mut e = engine(&small_chains(b, None));
        let mut buf = vec![0u8; 64 << 10];
        let (r, rec) = recv_recorded(&mut e, &rx, vec![&mut buf], Some(10));
        let n = r.expect("receive") as usize;
        assert!((10..=1000).contains(&n), "received {n}");
        assert_covers(&rec, &data[..n], "at_least hook");
    }

    /// A framed array of 3 MiB + 8 (the hook path on both ends): byte-exact, and the wire's
    /// trailer is `crc32fast::hash` of the payload.
    fn framed_crc_is_the_payload_crc(b) {
        let (tx, mut rx) = tcp_pair();
        let data: Vec<f64> = pattern_vec(3 * MIB / 8 + 1, 11);
        let d = data.clone();
        let s = std::thread::spawn(move || engine(&opts(b)).send_array(&tx, &d, &[d.len() as u64], Order::C));
        let head = Header::new("<f8".parse().unwrap(), &[data.len() as u64], Order::C).unwrap().encode();
        let mut wire = vec![0u8; head.len() + data.len() * 8 + 8];
        rx.read_exact(&mut wire).unwrap();
        s.join().unwrap().expect("send_array");
        let payload: &[u8] = bytemuck::cast_slice(&data);
        let want = [&head[..], payload, &encode_trailer(crc32fast::hash(payload))[..]].concat();
        assert_bytes_eq(&wire, &want, "wire");
        // And the engine's receive of the same message.
        let (tx, rx) = tcp_pair();
        let w = std::thread::spawn(move || slow_writer(tx, want, 1 << 20, usize::MAX, Duration::ZERO));
        let a = engine(&opts(b)).recv_array::<f64>(&rx).expect("recv_array");
        w.join().unwrap();
        assert_same(a.as_slice(), &data, "received");
    }

    /// One flipped payload byte of a 3 MiB message (most of it received by the hooked
    /// transfer, not the read-ahead): `PayloadChecksum` with the sender's and the received
    /// CRC-32.
    fn corrupted_byte_is_a_checksum_error(b) {
        let data: Vec<u8> = pattern_vec(3 * MIB, 12);
        let head = Header::new("|u1".parse().unwrap(), &[data.len() as u64], Order::C).unwrap().encode();
        for at in [0, 100_000, data.len() - 1] {
            let mut bad = data.clone();
            bad[at] ^= 0x40;
            let msg = [&head[..], &bad[..], &encode_trailer(crc32fast::hash(&data))[..]].concat();
            let (tx, rx) = tcp_pair();
            let w = std::thread::spawn(move || slow_writer(tx, msg, 1 << 20, usize::MAX, Duration::ZERO));
            let r = engine(&opts(b)).recv_any(&rx);
            w.join().unwrap();
            let want = FrameError::PayloadChecksum {
                expected: crc32fast::hash(&data),
                actual: crc32fast::hash(&bad),
            };
            match r {
                Err(Error::Frame(e)) => assert_eq!(e, want, "byte {at}"),
                other => panic!("byte {at}: {other:?}"),
            }
        }
    }

    /// A striped array (2 streams, 3 MiB) sent by the engine arrives exactly and each stream's
    /// trailer is the CRC-32 of its stripe; one flipped byte in stripe 1 is that stream's
    /// `PayloadChecksum`.
    fn striped_crc_through_the_hook(b) {
        let data: Vec<u8> = pattern_vec(3 * MIB, 13);
        let dt: DType = "|u1".parse().unwrap();
        let shape = [data.len() as u64];
        let ((tx0, rx0), (tx1, rx1)) = (tcp_pair(), tcp_pair());
        let d = data.clone();
        let s = std::thread::spawn(move || engine(&opts(b)).send_array_striped(&[tx0, tx1], dt, &d, &shape, Order::C));
        let a = engine(&opts(b)).recv_any_striped(&[rx0, rx1]).expect("recv_any_striped");
        s.join().unwrap().expect("send_array_striped");
        assert_bytes_eq(a.bytes(), &data, "striped");
        // The same array written by hand, one byte of stripe 1 flipped.
        let geo = stripes(data.len() as u64, 2);
        let head = Header::new(dt, &shape, Order::C).unwrap().encode();
        let flip = geo[1].start as usize + 4321;
        let mut bad = data.clone();
        bad[flip] ^= 1;
        let ((tx0, rx0), (tx1, rx1)) = (tcp_pair(), tcp_pair());
        let mut writers = Vec::new();
        for (i, mut tx) in [tx0, tx1].into_iter().enumerate() {
            let r = geo[i].start as usize..geo[i].end as usize;
            let prefix = StripePrefix {
                stream: i as u32,
                streams: 2,
                array_id: 77,
                offset: r.start as u64,
                len: r.len() as u64,
                payload_len: data.len() as u64,
            };
            let mut msg = prefix.encode().to_vec();
            if i == 0 {
                msg.extend_from_slice(&head);
            }
            msg.extend_from_slice(&bad[r.clone()]);
            msg.extend_from_slice(&encode_trailer(crc32fast::hash(&data[r])));
            writers.push(std::thread::spawn(move || tx.write_all(&msg).map(|()| tx)));
        }
        let r = engine(&opts(b)).recv_any_striped(&[rx0, rx1]);
        for w in writers {
            w.join().unwrap().unwrap();
        }
        let (r1, d1) = (geo[1].start as usize, geo[1].end as usize);
        let want = FrameError::PayloadChecksum {
            expected: crc32fast::hash(&data[r1..d1]),
            actual: crc32fast::hash(&bad[r1..d1]),
        };
        match r {
            Err(Error::Stream { stream: 1, source, .. }) => match *source {
                Error::Frame(e) => assert_eq!(e, want),
                other => panic!("stream 1: {other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }
}

both_backends! {
    /// `Prefault::Ahead` with recycling off (every receive a new mapping): framed arrays of
    /// 40 MiB + 8 (more than twice the prefault distance) arrive byte-exact, three in a row on
    /// one connection, while the uring backend populates ahead of the receive point.
    fn prefault_ahead_receives_exactly(b) {
        let o = Options {
            prefault: ringxfer::Prefault::Ahead,
            recycle_bytes: 0,
            ..small_chains(b, None)
        };
        let data: Vec<f64> = pattern_vec(5 * MIB + 1, 15);
        let (tx, rx) = tcp_pair();
        let d = data.clone();
        let s = std::thread::spawn(move || {
            let mut e = engine(&opts(b));
            (0..3).try_for_each(|_| e.send_array(&tx, &d, &[d.len() as u64], Order::F))
        });
        let mut e = engine(&o);
        for k in 0..3 {
            let a = e.recv_array::<f64>(&rx).unwrap_or_else(|e| panic!("array {k}: {e}"));
            assert_eq!(a.shape(), &[data.len() as u64]);
            assert_same(a.as_slice(), &data, &format!("array {k}"));
        }
        s.join().unwrap().expect("send_array");
    }
}

/// A small framed array (below the overlap threshold) still leaves in one transfer: on the
/// uring backend one SQE for header, payload and trailer (`ringxfer bench --pingpong`'s
/// latency depends on it).
#[test]
fn small_framed_send_is_one_sqe() {
    require_uring!();
    let (tx, mut rx) = tcp_pair();
    let data: Vec<f32> = pattern_vec(1000, 14);
    let mut e = Engine::with_options(opts(Backend::Uring)).unwrap();
    let before = e.stats();
    e.send_array(&tx, &data, &[1000], Order::C).unwrap();
    let sqes = e.stats().since(&before).sqes;
    let head = Header::new("<f4".parse().unwrap(), &[1000], Order::C)
        .unwrap()
        .encode();
    let mut wire = vec![0u8; head.len() + 4000 + 8];
    rx.read_exact(&mut wire).unwrap();
    assert_eq!(&wire[..head.len()], &head[..]);
    // The planner cuts one chain at the three parts: header, payload, trailer.
    assert_eq!(
        sqes, 3,
        "one chain of three SQEs, not a second transfer for the trailer"
    );
}
