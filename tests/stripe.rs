//! Issue 9, section 3 (library, raw mode): one array striped over N streams, each stripe
//! written in place; byte-exact on both backends with 1–8 streams, under forced short
//! completions on every stream; a stream reset mid-transfer and a stalled stream give
//! `Error::Stream` naming the stream and its peer, with no stripe left in flight.

mod util;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ringxfer::stripe::stripes;
use ringxfer::{Error, Options};
use util::*;

const MIB: usize = 1 << 20;

/// Sends `len` bytes striped over the pairs' first ends, receives on the second ends.
fn striped(o: Options, pairs: Vec<(TcpStream, TcpStream)>, len: usize, what: &str) {
    let (tx, rx): (Vec<TcpStream>, Vec<TcpStream>) = pairs.into_iter().unzip();
    let data: Vec<u8> = pattern_vec(len, len as u64);
    let d = data.clone();
    let o2 = o.clone();
    let sender = std::thread::spawn(move || engine(&o2).send_striped(&tx, &d).map(|()| tx));
    let mut got: Vec<u8> = poison_vec(len, 3);
    engine(&o)
        .recv_striped(&rx, &mut got)
        .unwrap_or_else(|e| panic!("{what}: recv: {e}"));
    sender
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("{what}: send: {e}"));
    assert_bytes_eq(&got, &data, what);
}

both_backends! {
    fn striped_1_2_4_8_streams(backend) {
        for n in [1, 2, 4, 8] {
            let pairs = (0..n).map(|_| tcp_pair()).collect();
            striped(opts(backend), pairs, 64 * MIB + 3, &format!("{n} streams"));
        }
    }

    fn striped_small_and_empty_stripes(backend) {
        for (n, len) in [(4, 100), (3, 10_000), (8, 0), (2, 4097)] {
            let pairs = (0..n).map(|_| tcp_pair()).collect();
            striped(opts(backend), pairs, len, &format!("{n} streams, {len} bytes"));
        }
    }

    /// 4 KiB socket buffers on every stream: every SQE / syscall is short.
    fn striped_short_completions_every_stream(backend) {
        let pairs = (0..4).map(|_| tcp_pair_small_buffers(4096)).collect();
        striped(opts(backend), pairs, 8 * MIB + 11, "4 KiB buffers");
    }

    /// Stream 2 of 3 is reset by its peer after 1,000 bytes of its stripe: the receiver gets
    /// `Error::Stream { stream: 2, peer, source }` with that stream's own counts, promptly,
    /// and the other streams' stripes are canceled (nothing left in flight: the engine is
    /// reused at once).
    fn striped_stream_reset(backend) {
        within(Duration::from_secs(30), "stream reset", move || {
            let o = opts(backend);
            let pairs: Vec<(TcpStream, TcpStream)> = (0..3).map(|_| tcp_pair()).collect();
            let (tx, rx): (Vec<TcpStream>, Vec<TcpStream>) = pairs.into_iter().unzip();
            let peer_addr = rx[2].peer_addr().unwrap().to_string();
            let len = 12 * MIB;
            let g = stripes(len as u64, 3);
            let peer = std::thread::spawn(move || {
                let mut tx = tx;
                // Streams 0 and 1: half their stripes, then silence (connection open).
                for s in &tx[..2] {
                    (&*s).write_all(&vec![1u8; MIB]).unwrap();
                }
                (&tx[2]).write_all(&[2u8; 1000]).unwrap();
                std::thread::sleep(Duration::from_millis(200));
                let t2 = tx.pop().unwrap();
                reset(t2);
                tx
            });
            let mut got = vec![0u8; len];
            let mut e = engine(&o);
            let t0 = Instant::now();
            let r = e.recv_striped(&rx, &mut got);
            let dt = t0.elapsed();
            let _keep = peer.join().unwrap();
            eprintln!("{backend:?}: {r:?} after {dt:?}");
            match r {
                Err(Error::Stream { stream: 2, peer, source }) => {
                    assert_eq!(peer, peer_addr);
                    match *source {
                        Error::Io { transferred: 1000, expected, .. }
                        | Error::UnexpectedEof { transferred: 1000, expected } => {
                            assert_eq!(expected, g[2].end - g[2].start)
                        }
                        other => panic!("stream 2's own error: {other:?}"),
                    }
                }
                other => panic!("want Stream {{ stream: 2 }}, got {other:?}"),
            }
            assert!(dt < Duration::from_secs(5), "took {dt:?}");
            assert_eq!(&got[g[2].start as usize..g[2].start as usize + 1000], &[2u8; 1000][..]);
            assert!(got[..MIB].iter().all(|&b| b == 1));
            // Reusable at once.
            let pairs = (0..2).map(|_| tcp_pair()).collect();
            striped(o.clone(), pairs, MIB, "after the reset");
        });
    }

    /// A stalled stream (idle timeout 500 ms): `Error::Stream` wrapping `TimedOut` with the
    /// stream's own counts.
    fn striped_stalled_stream_times_out(backend) {
        within(Duration::from_secs(30), "stalled stream", move || {
            let o = Options { idle_timeout: Some(Duration::from_millis(500)), ..opts(backend) };
            let pairs: Vec<(TcpStream, TcpStream)> = (0..2).map(|_| tcp_pair()).collect();
            let (tx, rx): (Vec<TcpStream>, Vec<TcpStream>) = pairs.into_iter().unzip();
            let len = 2 * MIB;
            let g = stripes(len as u64, 2);
            (&tx[0]).write_all(&vec![5u8; (g[0].end - g[0].start) as usize]).unwrap();
            (&tx[1]).write_all(&[6u8; 777]).unwrap();
            let mut got = vec![0u8; len];
            let r = engine(&o).recv_striped(&rx, &mut got);
            match r {
                Err(Error::Stream { stream: 1, source, .. }) => assert!(
                    matches!(*source, Error::TimedOut { transferred: 777, timeout_ms: 500, .. }),
                    "{source:?}"
                ),
                other => panic!("want Stream {{ stream: 1, TimedOut }}, got {other:?}"),
            }
            drop(tx);
        });
    }
}
