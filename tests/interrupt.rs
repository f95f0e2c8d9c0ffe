//! Issue 11 (the Python binding's Ctrl-C): `Options::interrupt` stops a running transfer on
//! both backends within `INTERRUPT_POLL` (100 ms) of the check turning true, with
//! `Error::Interrupted` carrying the exact bytes moved, and no SQE left pointing into the
//! caller's array (bytes the peer sends afterwards stay in the socket, not in the array).

mod util;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ringxfer::{Backend, Error, INTERRUPT_POLL, Interrupt, Options};
use util::*;

const MIB: usize = 1 << 20;

/// Scheduling allowance on a loaded 2-core CI machine on top of [`INTERRUPT_POLL`]. Without
/// the poll these transfers never return (the peers stall), so the allowance only has to
/// tell "one poll" from "much later": 700 ms (it was 400 ms; a CI run shares its 2 vCPUs).
const SLACK: Duration = Duration::from_millis(700);

/// Options for `backend` with an interrupt check that turns true once `flag` is set.
fn with_flag(backend: Backend, flag: &Arc<AtomicBool>) -> Options {
    let f = Arc::clone(flag);
    Options {
        interrupt: Some(Interrupt::new(move || f.load(Ordering::Relaxed))),
        ..opts(backend)
    }
}

/// Sets `flag` after `delay`; returns when it did.
fn raise_after(flag: &Arc<AtomicBool>, delay: Duration) -> std::thread::JoinHandle<Instant> {
    let f = Arc::clone(flag);
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        f.store(true, Ordering::Relaxed);
        Instant::now()
    })
}

#[track_caller]
fn assert_prompt(raised: Instant, returned: Instant, what: &str) {
    let dt = returned.saturating_duration_since(raised);
    eprintln!("{what}: returned {dt:?} after the interrupt");
    assert!(
        dt <= INTERRUPT_POLL + SLACK,
        "{what}: returned {dt:?} after the interrupt, want ≤ {:?}",
        INTERRUPT_POLL + SLACK
    );
}

both_backends! {
    /// The peer sends 1 MiB + 7 bytes of an 8 MiB array and stalls with the connection open:
    /// the receive ends `Interrupted { 1 MiB + 7, 8 MiB }` promptly, those bytes are in the
    /// array, and what the peer sends afterwards is left in the socket, not in the array.
    fn recv_stalled(backend) {
        within(Duration::from_secs(30), "recv_stalled", move || {
            let (mut tx, rx) = tcp_pair();
            let part: Vec<u8> = pattern_vec(MIB + 7, 11);
            tx.write_all(&part).unwrap();
            let flag = Arc::new(AtomicBool::new(false));
            let mut e = engine(&with_flag(backend, &flag));
            let mut got: Vec<u8> = poison_vec(8 * MIB, 12);
            let poison = got.clone();
            let raiser = raise_after(&flag, Duration::from_millis(300));
            let r = e.recv_into(&rx, &mut got);
            let returned = Instant::now();
            assert_prompt(raiser.join().unwrap(), returned, "recv_stalled");
            match r {
                Err(Error::Interrupted { transferred, expected }) => {
                    assert_eq!((transferred, expected), ((MIB + 7) as u64, (8 * MIB) as u64));
                }
                other => panic!("want Interrupted, got {other:?}"),
            }
            assert_bytes_eq(&got[..MIB + 7], &part, "bytes before the interrupt");
            // Nothing of the call still reads into the array: later bytes stay in the socket.
            let later: Vec<u8> = pattern_vec(4096, 13);
            tx.write_all(&later).unwrap();
            let mut back = vec![0u8; 4096];
            (&rx).read_exact(&mut back).unwrap();
            assert_bytes_eq(&back, &later, "bytes after the interrupt, read from the socket");
            assert_bytes_eq(&got[MIB + 7..], &poison[MIB + 7..], "array past the interrupt");
        });
    }

    /// A send of 64 MiB to a peer that does not read ends `Interrupted` promptly, and the
    /// peer then reads exactly `transferred` bytes (the array's prefix) before EOF.
    fn send_stalled(backend) {
        within(Duration::from_secs(30), "send_stalled", move || {
            let (tx, rx) = tcp_pair();
            let data: Vec<u8> = pattern_vec(64 * MIB, 21);
            let flag = Arc::new(AtomicBool::new(false));
            let mut e = engine(&with_flag(backend, &flag));
            let raiser = raise_after(&flag, Duration::from_millis(300));
            let r = e.send_from(&tx, &data);
            let returned = Instant::now();
            assert_prompt(raiser.join().unwrap(), returned, "send_stalled");
            let transferred = match r {
                Err(Error::Interrupted { transferred, expected }) => {
                    assert_eq!(expected, (64 * MIB) as u64);
                    assert!(transferred < expected, "a stalled peer cannot take it all");
                    transferred
                }
                other => panic!("want Interrupted, got {other:?}"),
            };
            drop(tx);
            let mut got = Vec::new();
            (&rx).read_to_end(&mut got).unwrap();
            assert_eq!(got.len() as u64, transferred, "peer got exactly the bytes counted");
            assert_bytes_eq(&got, &data[..got.len()], "the prefix sent");
        });
    }

    /// Striped receive over two streams, both stalled: every stream stops `Interrupted`
    /// (none reads `Canceled`), reported through `Error::Stream`.
    fn striped_stalled(backend) {
        within(Duration::from_secs(30), "striped_stalled", move || {
            let pairs = [tcp_pair(), tcp_pair()];
            let rxs: Vec<_> = pairs.iter().map(|(_, rx)| rx.try_clone().unwrap()).collect();
            let flag = Arc::new(AtomicBool::new(false));
            let mut e = engine(&with_flag(backend, &flag));
            let mut got = vec![0u8; 4 * MIB];
            let raiser = raise_after(&flag, Duration::from_millis(300));
            let r = e.recv_striped(&rxs, &mut got);
            assert_prompt(raiser.join().unwrap(), Instant::now(), "striped_stalled");
            match r {
                Err(Error::Stream { source, .. }) => match *source {
                    Error::Interrupted { transferred: 0, expected } => {
                        assert_eq!(expected, (2 * MIB) as u64, "each stream's stripe");
                    }
                    other => panic!("want Interrupted, got {other:?}"),
                },
                other => panic!("want Stream(Interrupted), got {other:?}"),
            }
        });
    }

    /// The same through a registration guard (fixed buffers on uring, a borrow on blocking):
    /// `Interrupted` with the exact count, the prefix in the array.
    fn registered_recv_stalled(backend) {
        within(Duration::from_secs(30), "registered_recv_stalled", move || {
            let (mut tx, rx) = tcp_pair();
            let part: Vec<u8> = pattern_vec(3 * MIB + 1, 41);
            tx.write_all(&part).unwrap();
            let flag = Arc::new(AtomicBool::new(false));
            let mut e = engine(&with_flag(backend, &flag));
            let mut got: Vec<u8> = poison_vec(8 * MIB, 42);
            let raiser = raise_after(&flag, Duration::from_millis(300));
            let r = e.register_recv(&mut got).recv(&rx);
            assert_prompt(raiser.join().unwrap(), Instant::now(), "registered_recv_stalled");
            match r {
                Err(Error::Interrupted { transferred, expected }) => {
                    assert_eq!((transferred, expected), ((3 * MIB + 1) as u64, (8 * MIB) as u64));
                }
                other => panic!("want Interrupted, got {other:?}"),
            }
            assert_bytes_eq(&got[..3 * MIB + 1], &part, "bytes before the interrupt");
        });
    }

    /// A check that never fires changes nothing (the array arrives byte for byte) and is
    /// polled while the transfer runs.
    fn never_fires(backend) {
        let calls = Arc::new(AtomicU64::new(0));
        let c = Arc::clone(&calls);
        let o = Options {
            interrupt: Some(Interrupt::new(move || {
                c.fetch_add(1, Ordering::Relaxed);
                false
            })),
            ..opts(backend)
        };
        let (tx, rx) = tcp_pair();
        round_trip(o, tx, rx, pattern_vec::<f64>(2 * MIB, 31), "never_fires");
        assert!(calls.load(Ordering::Relaxed) > 0, "the check was polled");
    }
}
