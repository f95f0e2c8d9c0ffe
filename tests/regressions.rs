//! One test per case of `shared/cases` that applies to the engine (raw arrays, no framing),
//! named after the case id. Cases tested elsewhere, where their area lives:
//!
//! * C01 (one transfer over 2 GiB): `tests/large.rs`, `large::c01_single_transfer_over_2gib`
//!   (ignored: run with `--release -- --ignored`); the planner's side in
//!   `tests/planner_prop.rs`, `c01_geometry_by_hand`.
//! * C05 (small message delivered at once): `tests/roundtrip.rs`, `c05_…`.
//! * C06 (short send on a non-blocking socket): `tests/partial.rs`, `c06_…`.
//! * C07 (short WAITALL completion when the peer shuts down) and C11 (EOF, no busy loop):
//!   `tests/eof.rs`, `c07_…`, `c11_…`.
//! * C09 (a registered buffer over 1 GiB): the public API always registers 1 GiB slots, so
//!   a small slot size cannot be forced here; the planner property test covers slot
//!   boundaries inside segments, and `tests/large.rs` moves 1.5 GiB through two slots with a
//!   segment size that does not divide 1 GiB.
//! * C02, C03, C04 and C13's framed form concern the frame codec, not the raw engine.

mod util;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use ringxfer::{Backend, Options, RecvOp, RegisterPolicy, SendOp};
use util::*;

const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// C08: pinning refused
// ---------------------------------------------------------------------------------------------

/// Environment variable that turns [`c08_child`] on (it only runs in the child process).
const C08_CHILD_ENV: &str = "RINGXFER_TEST_C08_CHILD";

/// Runs this test binary again as a child that runs only the ignored test `name` (with
/// `RINGXFER_TEST_C08_CHILD=1`), killing it after `limit`; asserts it passed. Children run one
/// at a time.
fn run_child(name: &str, limit: Duration) {
    // The children's locked memory (rings, registrations) is accounted per user, across
    // processes: two children at once would refuse each other's rings. One at a time.
    static ONE_CHILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_CHILD.lock().unwrap_or_else(|e| e.into_inner());
    util::proc::run_child_test(name, &[(C08_CHILD_ENV, "1")], limit);
}

/// C08: `io_uring_register_buffers` refused (ENOMEM: `RLIMIT_MEMLOCK` 64 KiB, no
/// `CAP_IPC_LOCK`) — the transfer still delivers, unregistered, and the guard says why. The
/// limit and the capability drop must not touch the other tests, so this re-runs the test
/// binary as a child that runs only [`c08_child_registration_refused`].
#[test]
fn c08_pinning_refused_still_delivers() {
    require_uring!();
    run_child("c08_child_registration_refused", Duration::from_secs(60));
}

/// C08 for `SEND_ZC`: zero-copy sends pin the pages they send, which the same 64 KiB
/// limit refuses; the array must still arrive (a copying send is the obvious fallback).
#[test]
fn c08_send_zc_pinning_refused_still_delivers() {
    require_uring!();
    if !ringxfer::probe().send_zc {
        eprintln!("skipped: SEND_ZC unsupported");
        return;
    }
    run_child("c08_child_send_zc", Duration::from_secs(60));
}

/// WRITE_FIXED to a closed peer in a process whose SIGPIPE disposition is the default (as
/// in C or Python hosts; Rust binaries ignore SIGPIPE): must return `EPIPE`/`ECONNRESET`,
/// not kill the process (sock_write_iter has no MSG_NOSIGNAL).
#[test]
fn write_fixed_to_closed_peer_does_not_kill_with_sigpipe() {
    require_uring!();
    run_child("write_fixed_sigpipe_child", Duration::from_secs(30));
}

#[test]
#[ignore = "child of write_fixed_to_closed_peer_does_not_kill_with_sigpipe"]
fn write_fixed_sigpipe_child() {
    if std::env::var(C08_CHILD_ENV).as_deref() != Ok("1") {
        return;
    }
    // SAFETY: restoring the default disposition of SIGPIPE in this child process only.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    for register in [RegisterPolicy::Always, RegisterPolicy::Never] {
        let (tx, rx) = tcp_pair();
        drop(rx);
        std::thread::sleep(Duration::from_millis(50));
        let o = Options {
            register,
            ..tuned(SendOp::WriteFixed, RecvOp::Recv, 65536, 8)
        };
        let data: Vec<u8> = pattern_vec(8 * MIB, 5);
        let r = engine(&o).send_from(&tx, &data);
        let errno = r.as_ref().err().and_then(|e| e.raw_os_error());
        assert!(
            matches!(errno, Some(libc::EPIPE) | Some(libc::ECONNRESET)),
            "{register:?}: {r:?}"
        );
    }
}

/// Puts the calling thread (and the threads it spawns) under C08's conditions.
fn c08_conditions() {
    set_memlock(64 << 10);
    assert!(drop_cap_ipc_lock(), "capset: cannot drop CAP_IPC_LOCK");
    assert!(!can_pin(4 * MIB as u64), "pinning still allowed");
}

/// Drops `CAP_IPC_LOCK` from this thread's effective and permitted sets (threads it spawns
/// inherit that). Returns false when `capget`/`capset` are refused.
fn drop_cap_ipc_lock() -> bool {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    const CAP_IPC_LOCK: u32 = 14;
    let mut h = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: capget writes two `Data` (version 3) into `d`; `h` is a valid header.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) };
    if rc != 0 {
        return false;
    }
    d[0].effective &= !(1 << CAP_IPC_LOCK);
    d[0].permitted &= !(1 << CAP_IPC_LOCK);
    // SAFETY: capset reads the header and two `Data`; both are valid.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &h, d.as_ptr()) };
    rc == 0
}

/// Sets `RLIMIT_MEMLOCK` (soft and hard) for the whole (child) process.
fn set_memlock(bytes: u64) {
    let lim = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: `lim` is a valid rlimit.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
    assert_eq!(rc, 0, "setrlimit(RLIMIT_MEMLOCK)");
}

/// The child of [`c08_pinning_refused_still_delivers`]; does nothing unless
/// `RINGXFER_TEST_C08_CHILD=1`.
#[test]
#[ignore = "run by c08_pinning_refused_still_delivers in a child process"]
fn c08_child_registration_refused() {
    if std::env::var(C08_CHILD_ENV).as_deref() != Ok("1") {
        return;
    }
    c08_conditions();

    // Ring memory counts against the same 64 KiB here (and a dropped ring is unaccounted
    // only later, by the kernel's exit work), so the whole test uses one engine per side.
    let so = tuned(SendOp::WriteFixed, RecvOp::Recv, 65536, 8);
    let ro = tuned(SendOp::WriteFixed, RecvOp::ReadFixed, 65536, 8);
    let mut e_rx = engine(&ro);
    let mut e_tx = engine(&so);
    let (b1, b2) = (4 * MIB + 3, 2 * MIB + 1);
    let (tx, rx) = tcp_pair();
    let sender = std::thread::spawn(move || {
        // 1. A pre-registered guard: registration is refused, the guard says why.
        let d1: Vec<u8> = pattern_vec(b1, 8);
        let mut g = e_tx.register_send(&d1);
        let reg = (g.is_registered(), g.fallback_reason().map(str::to_owned));
        let r1 = g.send(&tx);
        drop(g);
        // 2. A one-shot call that wants a registration (`RegisterPolicy::Always`).
        let d2: Vec<u8> = pattern_vec(b2, 9);
        let r2 = e_tx.send_from(&tx, &d2);
        (d1, d2, r1, r2, reg)
    });
    let mut g1: Vec<u8> = poison_vec(b1, 8);
    let mut g = e_rx.register_recv(&mut g1);
    let rreg = (g.is_registered(), g.fallback_reason().map(str::to_owned));
    let r1 = g.recv(&rx);
    drop(g);
    let mut g2: Vec<u8> = poison_vec(b2, 9);
    let r2 = e_rx.recv_into(&rx, &mut g2);
    let (d1, d2, s1, s2, sreg) = sender.join().unwrap();
    r1.expect("C08: recv through a refused registration");
    s1.expect("C08: send through a refused registration");
    r2.expect("C08: one-shot recv, registration refused");
    s2.expect("C08: one-shot send, registration refused");
    assert_bytes_eq(&g1, &d1, "C08 guards");
    assert_bytes_eq(&g2, &d2, "C08 one-shot");
    for (side, (registered, reason)) in [("recv", rreg), ("send", sreg)] {
        assert!(
            !registered,
            "C08 {side}: registered despite a 64 KiB memlock limit"
        );
        let reason = reason.unwrap_or_else(|| panic!("C08 {side}: no fallback reason"));
        eprintln!("C08 {side} guard: {reason}");
        assert!(
            reason.contains("Cannot allocate memory") || reason.contains("ENOMEM"),
            "C08 {side}: reason does not name ENOMEM: {reason}"
        );
        // Issue 8 item 10: the reason names the limit and its value (64 KiB here).
        assert!(
            reason.contains("RLIMIT_MEMLOCK is 65536 bytes"),
            "C08 {side}: reason does not name RLIMIT_MEMLOCK and its value: {reason}"
        );
    }
}

/// The child of [`c08_send_zc_pinning_refused_still_delivers`]; does nothing unless
/// `RINGXFER_TEST_C08_CHILD=1`.
#[test]
#[ignore = "run by c08_send_zc_pinning_refused_still_delivers in a child process"]
fn c08_child_send_zc() {
    if std::env::var(C08_CHILD_ENV).as_deref() != Ok("1") {
        return;
    }
    c08_conditions();
    // One uring engine (the sender); the receiver is blocking, to keep ring memory low.
    let mut e = engine(&tuned(SendOp::SendZc, RecvOp::Recv, 65536, 1));
    // One-shot (unregistered: the registration is refused anyway), then through a guard.
    for guard in [false, true] {
        let (tx, rx) = tcp_pair();
        let n = 4 * MIB + 3;
        let reader = std::thread::spawn(move || {
            let mut got: Vec<u8> = poison_vec(n, 21);
            let r = engine(&opts(Backend::Blocking)).recv_into(&rx, &mut got);
            (got, r)
        });
        let data: Vec<u8> = pattern_vec(n, 21);
        let r = if guard {
            e.register_send(&data).send(&tx)
        } else {
            e.send_from(&tx, &data)
        };
        drop(tx);
        let (got, rr) = reader.join().unwrap();
        r.unwrap_or_else(|e| panic!("C08 SEND_ZC (guard={guard}): send: {e}"));
        rr.unwrap_or_else(|e| panic!("C08 SEND_ZC (guard={guard}): recv: {e}"));
        assert_bytes_eq(&got, &data, "C08 SEND_ZC");
    }
}

// ---------------------------------------------------------------------------------------------
// C10: zero-copy buffer reused too early
// ---------------------------------------------------------------------------------------------

/// C10: with `SEND_ZC` from registered buffers, `send_from` returns only after the kernel
/// has released the pages: the caller overwrites the array at once, and the late reader
/// still gets the original bytes. One-shot and through a guard.
#[test]
fn c10_send_zc_caller_overwrites_after_return() {
    require_uring!();
    if !ringxfer::probe().send_zc {
        eprintln!("skipped: SEND_ZC unsupported");
        return;
    }
    for guard in [false, true] {
        for (segment, chain) in [(65536u32, 8u32), (MIB as u32, 1)] {
            let what = format!("C10 guard={guard} segment={segment} chain={chain}");
            let w = what.clone();
            within(Duration::from_secs(60), &what, move || {
                let bytes = 8 * MIB + 5;
                let o = tuned(SendOp::SendZc, RecvOp::Recv, segment, chain);
                let (tx, rx) = tcp_pair();
                let want: Vec<u8> = pattern_vec(bytes, 10);
                let reader = std::thread::spawn(move || {
                    // Start late, so the last pieces are still queued when send returns.
                    std::thread::sleep(Duration::from_millis(100));
                    let mut got: Vec<u8> = poison_vec(bytes, 10);
                    (&rx).read_exact(&mut got).unwrap();
                    got
                });
                let mut data = want.clone();
                let mut e = engine(&o);
                if guard {
                    let mut g = e.register_send(&data);
                    g.send(&tx).expect("C10 send");
                } else {
                    e.send_from(&tx, &data).expect("C10 send");
                }
                // The engine returned: the array is the caller's again.
                fill_poison(&mut data, 10);
                let got = reader.join().unwrap();
                assert_bytes_eq(&got, &want, &w);
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// C12: the peer announces data and stalls
// ---------------------------------------------------------------------------------------------

/// C12 (receive side): the peer sends part of the array and stalls with the connection
/// open. With an idle timeout the receive fails with `TimedOut` naming the bytes so far, in
/// about the timeout, not never.
fn c12_recv_stall(o: Options) {
    let what = format!("C12 recv stall {:?} {:?}", o.backend, o.uring.recv_op);
    let w = what.clone();
    within(Duration::from_secs(20), &what, move || {
        let timeout = Duration::from_millis(300);
        let o = Options {
            idle_timeout: Some(timeout),
            ..o
        };
        let (tx, rx) = tcp_pair();
        let part: Vec<u8> = pattern_vec(MIB + 7, 12);
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let p = part.clone();
        let peer = std::thread::spawn(move || {
            (&tx).write_all(&p).unwrap();
            let _ = done_rx.recv(); // stall, connection open
            tx
        });
        let mut got: Vec<u8> = poison_vec(4 * MIB, 12);
        let t0 = Instant::now();
        let r = engine(&o).recv_into(&rx, &mut got);
        let dt = t0.elapsed();
        done_tx.send(()).unwrap();
        peer.join().unwrap();
        assert_eq!(
            timed_out(r, &w),
            (part.len() as u64, 4 * MIB as u64, 300),
            "{w}: (transferred, expected, timeout_ms)"
        );
        assert!(
            dt >= timeout,
            "{w}: gave up after {dt:?}, before the timeout"
        );
        assert!(dt < Duration::from_secs(5), "{w}: took {dt:?}");
        assert_bytes_eq(&got[..part.len()], &part, &format!("{w}: prefix"));
        eprintln!("{w}: TimedOut after {dt:?}");
    });
}

/// C12: the timer restarts on progress: a peer that sends in pieces with pauses shorter than
/// the timeout, for longer than the timeout in total, completes.
fn c12_progress_resets_timer(o: Options) {
    let what = format!("C12 progress {:?} {:?}", o.backend, o.uring.recv_op);
    let w = what.clone();
    within(Duration::from_secs(30), &what, move || {
        let o = Options {
            idle_timeout: Some(Duration::from_millis(600)),
            ..o
        };
        let (tx, rx) = tcp_pair();
        let data: Vec<u8> = pattern_vec(2 * MIB, 13);
        let peer = std::thread::spawn(move || {
            // 10 pieces, 150 ms apart: 1.5 s in all.
            slow_write_all(&tx, &data, 2 * MIB / 10 + 1, 1, Duration::from_millis(150));
            (data, tx)
        });
        let mut got: Vec<u8> = poison_vec(2 * MIB, 13);
        let t0 = Instant::now();
        let r = engine(&o).recv_into(&rx, &mut got);
        let dt = t0.elapsed();
        let (data, _tx) = peer.join().unwrap();
        r.unwrap_or_else(|e| panic!("{w}: {e}"));
        assert_bytes_eq(&got, &data, &w);
        eprintln!("{w}: done in {dt:?}");
    });
}

/// C12 (send side): the peer never reads; with an idle timeout the send fails with
/// `TimedOut` and the bytes the kernel took.
fn c12_send_stall(o: Options) {
    let what = format!("C12 send stall {:?} {:?}", o.backend, o.uring.send_op);
    let w = what.clone();
    within(Duration::from_secs(20), &what, move || {
        let o = Options {
            idle_timeout: Some(Duration::from_millis(300)),
            ..o
        };
        let (tx, rx) = tcp_pair();
        let data: Vec<u8> = pattern_vec(64 * MIB, 14);
        let t0 = Instant::now();
        let r = engine(&o).send_from(&tx, &data);
        let dt = t0.elapsed();
        let (transferred, expected, timeout_ms) = timed_out(r, &w);
        assert!(transferred < expected, "{w}: transferred {transferred}");
        assert_eq!(expected, 64 * MIB as u64, "{w}: expected");
        assert_eq!(timeout_ms, 300, "{w}: timeout_ms");
        // Exactly the confirmed bytes are in the stream, in order: a caller may resume from
        // `transferred` without losing or repeating a byte.
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = vec![0u8; transferred as usize];
        (&rx)
            .read_exact(&mut got)
            .unwrap_or_else(|e| panic!("{w}: reading the {transferred} confirmed bytes: {e}"));
        assert_bytes_eq(&got, &data[..got.len()], &format!("{w}: stream"));
        std::thread::sleep(Duration::from_millis(200));
        rx.set_nonblocking(true).unwrap();
        let mut extra = vec![0u8; 1 << 20];
        match (&rx).read(&mut extra) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok(n) => {
                panic!("{w}: {n} bytes beyond the {transferred} confirmed ones are in the stream")
            }
            Err(e) => panic!("{w}: read: {e}"),
        }
        assert!(dt < Duration::from_secs(5), "{w}: took {dt:?}");
        eprintln!("{w}: TimedOut after {dt:?}");
    });
}

both_backends! {
    fn c12_peer_stalls_recv_times_out(backend) { c12_recv_stall(opts(backend)) }
    fn c12_progress_resets_idle_timer(backend) { c12_progress_resets_timer(opts(backend)) }
    fn c12_peer_never_reads_send_times_out(backend) { c12_send_stall(opts(backend)) }
}

#[test]
fn uring_c12_fixed_ops() {
    require_uring!();
    c12_recv_stall(tuned(SendOp::Send, RecvOp::ReadFixed, 65536, 8));
    c12_progress_resets_timer(tuned(SendOp::Send, RecvOp::ReadFixed, 65536, 8));
    c12_send_stall(tuned(SendOp::WriteFixed, RecvOp::Recv, 65536, 8));
}

// ---------------------------------------------------------------------------------------------
// C13: a zero-length array is not a close
// ---------------------------------------------------------------------------------------------

/// C13 (engine form): sending and receiving an empty array on an open connection returns at
/// once and moves nothing; the next array on the same connection arrives intact.
fn c13(backend: Backend) {
    within(Duration::from_secs(20), "C13", move || {
        let o = opts(backend);
        let (tx, rx) = tcp_pair();
        let so = o.clone();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let sender = std::thread::spawn(move || {
            let mut e = engine(&so);
            e.send_from(&tx, &[] as &[f64]).expect("send empty");
            let empty: [i64; 0] = [];
            e.register_send(&empty).send(&tx).expect("guard send empty");
            go_rx.recv().unwrap();
            let next: Vec<f64> = pattern_vec(MIB / 8 + 3, 15);
            e.send_from(&tx, &next).expect("send next");
            (next, tx)
        });
        let mut e = engine(&o);
        let t0 = Instant::now();
        let mut empty: [f64; 0] = [];
        e.recv_into(&rx, &mut empty).expect("recv empty");
        let mut empty2: [i64; 0] = [];
        e.register_recv(&mut empty2)
            .recv(&rx)
            .expect("guard recv empty");
        let dt = t0.elapsed();
        assert!(dt < Duration::from_secs(1), "empty receives took {dt:?}");
        go_tx.send(()).unwrap();
        let mut got: Vec<f64> = poison_vec(MIB / 8 + 3, 15);
        e.recv_into(&rx, &mut got).expect("recv next");
        let (next, _tx) = sender.join().unwrap();
        assert_same(&got, &next, "C13 next array");
    });
}

both_backends! {
    fn c13_empty_array_then_next_on_open_connection(backend) { c13(backend) }
}
