//! Arrays beyond 4 GiB (issue "Faults and limits", case 8): one 5 GiB `u8` array
//! (5 × 2^30 bytes) round-trips byte-exact over loopback TCP in raw mode (`send_from` /
//! `recv_into`, and through registered fixed buffers: five 1 GiB slots) and in framed mode
//! (`send_array` + `recv_any`, `send_array` + `recv_array_into`), both backends. Every
//! offset, length and count past 2^32 must survive: the pattern never repeats, so a wrap
//! at 4 GiB (or at 2 GiB) is a byte mismatch, not a silent pass.
//!
//! Ignored by default (release only: `cargo test --release --test huge -- --ignored`, or
//! `cargo test --release -- --ignored huge_`). The tests take turns on one lock and share
//! one sender array (built once), so the process holds at most the 5 GiB source plus one
//! 5 GiB destination: ~10 GiB at peak, whatever the number of test threads.

mod util;

use std::net::TcpStream;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use ringxfer::dtype::{DType, Scalar};
use ringxfer::{Backend, Options, Order, RecvOp, RegisterPolicy, SendOp, UringTuning};
use util::*;

/// 5 GiB.
const N: usize = 5 << 30;
/// How long one test may take (it needs ~10–20 s here).
const LIMIT: Duration = Duration::from_secs(600);

/// One 5 GiB test at a time.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The 5 GiB source array ([`fill_pattern`], a fixed seed per 64 MiB), built on first use.
fn source() -> &'static [u8] {
    static DATA: OnceLock<Vec<u8>> = OnceLock::new();
    DATA.get_or_init(|| {
        let t0 = Instant::now();
        let mut v = vec![0u8; N];
        // 64 MiB chunks, each with a seed of its own (so nothing repeats), on two threads.
        std::thread::scope(|s| {
            let mut first: Vec<(usize, &mut [u8])> = v.chunks_mut(64 << 20).enumerate().collect();
            let second = first.split_off(first.len() / 2);
            for part in [first, second] {
                s.spawn(move || {
                    for (i, c) in part {
                        fill_pattern(c, 5 + ((i as u64) << 20));
                    }
                });
            }
        });
        eprintln!("built the 5 GiB source in {:?}", t0.elapsed());
        v
    })
}

/// Compares `got` with the source: whole-buffer comparison, and a few named offsets around
/// the 2 GiB and 4 GiB boundaries and at the end, so a failure says where.
#[track_caller]
fn check(got: &[u8], what: &str) {
    let want = source();
    assert_eq!(got.len(), want.len(), "{what}: length");
    for at in [0, (2 << 30) - 1, 2 << 30, (4 << 30) - 1, 4 << 30, N - 1] {
        assert_eq!(got[at], want[at], "{what}: byte {at}");
    }
    let t0 = Instant::now();
    assert_bytes_eq(got, want, what);
    eprintln!("{what}: compared 5 GiB in {:?}", t0.elapsed());
}

/// Runs `recv` on this thread and a sender (`send` with its own engine) on another, over a
/// fresh loopback TCP pair; returns the receive side's result and the elapsed time.
fn transfer<R: Send + 'static>(
    send_opts: Options,
    send: fn(&mut ringxfer::Engine, &TcpStream, &'static [u8]) -> ringxfer::Result<()>,
    recv: impl FnOnce(&TcpStream) -> R + Send + 'static,
    what: &str,
) -> (R, Duration) {
    let data = source();
    let w = what.to_owned();
    within(LIMIT, what, move || {
        let (tx, rx) = tcp_pair();
        let t0 = Instant::now();
        let sender = std::thread::spawn(move || {
            let mut e = engine(&send_opts);
            let r = send(&mut e, &tx, data);
            (r, tx)
        });
        let got = recv(&rx);
        let (sr, _tx) = sender.join().expect("sender panicked");
        let dt = t0.elapsed();
        sr.unwrap_or_else(|e| panic!("{w}: send: {e} ({e:?})"));
        eprintln!(
            "{w}: 5 GiB in {dt:?} ({:.2} GB/s)",
            N as f64 / dt.as_secs_f64() / 1e9
        );
        (got, dt)
    })
}

fn raw(o: Options, what: &str) {
    let _one = one_at_a_time();
    let w = what.to_owned();
    let ro = o.clone();
    let (got, _) = transfer(
        o,
        |e, s, d| e.send_from(s, d),
        move |rx| {
            let mut got = vec![0u8; N];
            engine(&ro)
                .recv_into(rx, &mut got)
                .unwrap_or_else(|e| panic!("{w}: recv_into: {e} ({e:?})"));
            got
        },
        what,
    );
    check(&got, what);
}

fn framed_recv_any(backend: Backend) {
    let _one = one_at_a_time();
    let what = format!("{backend:?} framed send_array + recv_any");
    let w = what.clone();
    let (arr, _) = transfer(
        opts(backend),
        |e, s, d| e.send_array(s, d, &[5, 1 << 30], Order::C),
        move |rx| {
            engine(&opts(backend))
                .recv_any(rx)
                .unwrap_or_else(|e| panic!("{w}: recv_any: {e} ({e:?})"))
        },
        &what,
    );
    assert_eq!(arr.dtype(), DType::native(Scalar::U8));
    assert_eq!(arr.shape(), &[5, 1 << 30]);
    assert_eq!(arr.order(), Order::C);
    assert!(arr.checksum_verified(), "the payload CRC was checked");
    check(arr.bytes(), &what);
}

fn framed_recv_array_into(backend: Backend) {
    let _one = one_at_a_time();
    let what = format!("{backend:?} framed send_array + recv_array_into");
    let w = what.clone();
    let ((header, got), _) = transfer(
        opts(backend),
        |e, s, d| e.send_array(s, d, &[1 << 30, 5], Order::F),
        move |rx| {
            let mut got = vec![0u8; N];
            let h = engine(&opts(backend))
                .recv_array_into(rx, &mut got)
                .unwrap_or_else(|e| panic!("{w}: recv_array_into: {e} ({e:?})"));
            (h, got)
        },
        &what,
    );
    assert_eq!(header.shape, vec![1 << 30, 5]);
    assert_eq!(header.order, Order::F);
    assert_eq!(header.payload_len, N as u64);
    check(&got, &what);
}

both_backends! {
    #[ignore = "5 GiB: release only"]
    fn huge_raw_5gib(backend) {
        raw(opts(backend), &format!("{backend:?} raw send_from + recv_into"))
    }

    #[ignore = "5 GiB: release only"]
    fn huge_framed_5gib_recv_any(backend) { framed_recv_any(backend) }

    #[ignore = "5 GiB: release only"]
    fn huge_framed_5gib_recv_array_into(backend) { framed_recv_array_into(backend) }
}

/// Raw through registered fixed buffers on both sides (`WRITE_FIXED` / `READ_FIXED`): the
/// 5 GiB arrays are five 1 GiB slots each, slot indices and offsets past 4 GiB.
#[test]
#[ignore = "5 GiB: release only"]
fn huge_raw_5gib_fixed_buffers_uring() {
    require_uring!();
    let o = Options {
        backend: Backend::Uring,
        uring: UringTuning {
            send_op: SendOp::WriteFixed,
            recv_op: RecvOp::ReadFixed,
            ..UringTuning::default()
        },
        register: RegisterPolicy::Always,
        ..Options::default()
    };
    raw(o, "Uring raw WRITE_FIXED + READ_FIXED, registered");
}
