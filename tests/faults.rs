//! Faults across a real process boundary (issue "Faults and limits", cases 1 and 7):
//!
//! * **Peer killed.** The peer is this test binary re-run as a child process that writes
//!   (or reads) slowly; it is killed with SIGKILL while the engine is in the middle of
//!   receiving (or sending). The surviving side gets a typed error — `UnexpectedEof` with
//!   `0 < transferred < expected` on receive (the bytes the child got out before it died
//!   are delivered, in order), `Error::Io` with `ECONNRESET`/`EPIPE` on send — within a
//!   bounded time of the kill, and the same engine then moves another array byte-exact
//!   (nothing of the failed transfer is left in flight). Raw, pre-registered and framed,
//!   both backends.
//! * **io_uring denied.** A child installs a seccomp filter that makes `io_uring_setup`
//!   fail with `EPERM` (what container default profiles do): the probe says so, `Auto`
//!   falls back to blocking and says why, transfers still work, `Uring` is a clear error
//!   (the `ringxfer` binary under the same filter: cli/tests/cli_faults.rs).

mod util;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ringxfer::dtype::DType;
use ringxfer::frame::{Header, TRAILER_LEN};
use ringxfer::{Backend, Engine, Error, Options, Order, RecvOp, SendOp};
use util::proc::{Killed, Lines, child_test_command};
use util::seccomp::{assert_names_eperm, deny_io_uring_setup};
use util::*;

const MIB: usize = 1 << 20;

/// Names the child's role; the child tests do nothing without it.
const ROLE_ENV: &str = "RINGXFER_TEST_FAULTS_CHILD";
/// The parent's listening address, for the child to connect to.
const ADDR_ENV: &str = "RINGXFER_TEST_FAULTS_ADDR";
/// What a child prints once its first bytes moved.
const STARTED: &str = "FAULTS CHILD STARTED";
/// Bytes the slow child would move if nobody killed it (it needs > 2 s for them).
const TOTAL: usize = 64 * MIB;
/// Seed of the slow writer's pattern.
const SEED: u64 = 0xdead;
/// How long after the child's first bytes it is killed.
const KILL_AFTER: Duration = Duration::from_millis(300);
/// The surviving side must return within this of the kill.
const AFTER_KILL: Duration = Duration::from_secs(5);

fn role() -> Option<String> {
    std::env::var(ROLE_ENV).ok()
}

fn say_started() {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{STARTED}").unwrap();
    out.flush().unwrap();
}

// ---------------------------------------------------------------------------------------------
// The children
// ---------------------------------------------------------------------------------------------

/// Child: connects to the parent and writes [`TOTAL`] bytes of the pattern slowly (64 KiB
/// every 2 ms), preceded by a framed header when the role is `slow-framed-writer`. The
/// parent kills it long before it is done.
#[test]
#[ignore = "run by the killed_mid_recv tests in a child process"]
fn child_slow_writer() {
    let Some(role) = role() else { return };
    let framed = match role.as_str() {
        "slow-writer" => false,
        "slow-framed-writer" => true,
        _ => return,
    };
    let mut sock = TcpStream::connect(std::env::var(ADDR_ENV).unwrap()).unwrap();
    let data: Vec<u8> = pattern_vec(TOTAL, SEED);
    if framed {
        let h = Header::new(
            DType::native(ringxfer::dtype::Scalar::U8),
            &[TOTAL as u64],
            Order::C,
        )
        .unwrap();
        sock.write_all(&h.encode()).unwrap();
    }
    for (i, piece) in data.chunks(64 << 10).enumerate() {
        sock.write_all(piece).unwrap();
        if i == 0 {
            say_started();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("slow writer: wrote all {TOTAL} bytes: the parent never killed it");
}

/// Child: connects to the parent and reads slowly (16 KiB every 2 ms) until killed; the
/// bytes it has not read yet make its death a reset for the parent.
#[test]
#[ignore = "run by the killed_mid_send tests in a child process"]
fn child_slow_reader() {
    if role().as_deref() != Some("slow-reader") {
        return;
    }
    let mut sock = TcpStream::connect(std::env::var(ADDR_ENV).unwrap()).unwrap();
    let mut buf = vec![0u8; 16 << 10];
    let mut first = true;
    loop {
        match sock.read(&mut buf) {
            Ok(0) => panic!("slow reader: EOF: the parent never killed it"),
            Ok(_) => {}
            Err(e) => panic!("slow reader: {e}"),
        }
        if first {
            say_started();
            first = false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Starts child test `name` with `role`, connected to a fresh listener of ours. Returns the
/// child (killed on drop), its stdout lines and our end of the connection.
fn start_child(name: &str, role: &str) -> (Killed, Lines, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut child = child_test_command(name, &[(ROLE_ENV, role), (ADDR_ENV, &addr)])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child");
    let lines = Lines::new(child.stdout.take().unwrap());
    let child = Killed(child);
    let (sock, _) = listener.accept().expect("the child connects");
    (child, lines, sock)
}

/// Waits for the child's "started" line, gives it [`KILL_AFTER`] more, then SIGKILLs and
/// reaps it. Returns the moment of the kill.
fn kill_when_started(mut child: Killed, lines: &Lines) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.next(left) {
            Some(l) if l.contains(STARTED) => break,
            Some(_) => {}
            None => panic!("the child never said it started"),
        }
    }
    std::thread::sleep(KILL_AFTER);
    let t = Instant::now();
    child.0.kill().expect("SIGKILL the child");
    let st = child.0.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(libc::SIGKILL),
        "the child died of SIGKILL ({st})"
    );
    t
}

/// The engine that survived a fault moves another array, byte-exact, in both directions
/// (so no SQE, registration or socket state of the failed transfer is left behind).
fn engine_still_works(e: &mut Engine, what: &str) {
    let n = 8 * MIB + 13;
    // Receive.
    let (tx, rx) = tcp_pair();
    let data: Vec<u8> = pattern_vec(n, 77);
    let sender = spawn_send(opts(Backend::Blocking), tx, data);
    let mut got: Vec<u8> = poison_vec(n, 77);
    e.recv_into(&rx, &mut got)
        .unwrap_or_else(|err| panic!("{what}: recv after the fault: {err}"));
    let (data, r, _tx) = sender.join().unwrap();
    r.unwrap();
    assert_bytes_eq(&got, &data, &format!("{what}: recv after the fault"));
    // Send.
    let (tx, rx) = tcp_pair();
    let reader = std::thread::spawn(move || {
        let mut got: Vec<u8> = poison_vec(n, 78);
        (&rx).read_exact(&mut got).unwrap();
        got
    });
    let data: Vec<u8> = pattern_vec(n, 78);
    e.send_from(&tx, &data)
        .unwrap_or_else(|err| panic!("{what}: send after the fault: {err}"));
    assert_bytes_eq(
        &reader.join().unwrap(),
        &data,
        &format!("{what}: send after the fault"),
    );
}

// ---------------------------------------------------------------------------------------------
// Peer killed mid-receive
// ---------------------------------------------------------------------------------------------

/// How the receiving side receives.
#[derive(Debug, Clone, Copy, PartialEq)]
enum RecvKind {
    /// `Engine::recv_into`.
    Raw,
    /// `Engine::register_recv` then `RegisteredRecv::recv`.
    Guard,
    /// `Engine::recv_any` of a framed message.
    FramedAny,
    /// `Engine::receiver(..).recv_any()` (read-ahead).
    FramedReceiver,
}

fn killed_mid_recv(o: Options, kind: RecvKind) {
    let what = format!(
        "{:?} {:?} {kind:?}: sender SIGKILLed mid-receive",
        o.backend, o.uring.recv_op
    );
    let w = what.clone();
    within(Duration::from_secs(90), &what, move || {
        let framed = matches!(kind, RecvKind::FramedAny | RecvKind::FramedReceiver);
        let role = if framed {
            "slow-framed-writer"
        } else {
            "slow-writer"
        };
        let (child, lines, sock) = start_child("child_slow_writer", role);
        let receiver = std::thread::spawn(move || {
            let mut e = engine(&o);
            let mut got: Vec<u8> = poison_vec(TOTAL, SEED);
            let r = match kind {
                RecvKind::Raw => e.recv_into(&sock, &mut got),
                RecvKind::Guard => e.register_recv(&mut got).recv(&sock),
                RecvKind::FramedAny => e.recv_any(&sock).map(drop),
                RecvKind::FramedReceiver => e.receiver(&sock).recv_any().map(drop),
            };
            (e, got, r, Instant::now())
        });
        let killed_at = kill_when_started(child, &lines);
        let (mut e, got, r, returned_at) = receiver.join().expect("receiver panicked");
        let after = returned_at.saturating_duration_since(killed_at);
        assert!(
            returned_at > killed_at,
            "{w}: the receive returned before the kill: {r:?}"
        );
        assert!(after < AFTER_KILL, "{w}: returned {after:?} after the kill");
        let header_len = ringxfer::frame::header_len(1) as u64;
        let (transferred, expected) = match r {
            Err(Error::UnexpectedEof {
                transferred,
                expected,
            }) => (transferred, expected),
            other => panic!("{w}: want UnexpectedEof, got {other:?}"),
        };
        if framed {
            let whole = header_len + TOTAL as u64 + TRAILER_LEN as u64;
            assert_eq!(expected, whole, "{w}: expected = the whole message");
            assert!(
                transferred > header_len && transferred < header_len + TOTAL as u64,
                "{w}: transferred {transferred} of {expected}"
            );
        } else {
            assert_eq!(expected, TOTAL as u64, "{w}: expected");
            assert!(
                transferred > 0 && transferred < expected,
                "{w}: transferred {transferred} of {expected}"
            );
            // What the child got out before it died arrived, in order.
            let want: Vec<u8> = pattern_vec(TOTAL, SEED);
            let t = transferred as usize;
            assert_bytes_eq(&got[..t], &want[..t], &format!("{w}: the valid prefix"));
        }
        eprintln!("{w}: UnexpectedEof {transferred} of {expected}, {after:?} after the kill");
        engine_still_works(&mut e, &w);
    });
}

both_backends! {
    fn killed_mid_recv_raw(backend) { killed_mid_recv(opts(backend), RecvKind::Raw) }
    fn killed_mid_recv_registered(backend) { killed_mid_recv(opts(backend), RecvKind::Guard) }
    fn killed_mid_recv_framed(backend) { killed_mid_recv(opts(backend), RecvKind::FramedAny) }
    fn killed_mid_recv_framed_read_ahead(backend) {
        killed_mid_recv(opts(backend), RecvKind::FramedReceiver)
    }
}

// ---------------------------------------------------------------------------------------------
// Peer killed mid-send
// ---------------------------------------------------------------------------------------------

/// How the sending side sends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum SendKind {
    /// `Engine::send_from`.
    Raw,
    /// `Engine::register_send` then `RegisteredSend::send`.
    Guard,
    /// `Engine::send_array`.
    Framed,
}

fn killed_mid_send(o: Options, kind: SendKind) {
    let what = format!(
        "{:?} {:?} {kind:?}: receiver SIGKILLed mid-send",
        o.backend, o.uring.send_op
    );
    let w = what.clone();
    let n = 256 * MIB;
    let data: Vec<u8> = pattern_vec(n, 5);
    within(Duration::from_secs(90), &what, move || {
        let (child, lines, sock) = start_child("child_slow_reader", "slow-reader");
        let sender = std::thread::spawn(move || {
            let mut e = engine(&o);
            let r = match kind {
                SendKind::Raw => e.send_from(&sock, &data),
                SendKind::Guard => e.register_send(&data).send(&sock),
                SendKind::Framed => e.send_array(&sock, &data, &[n as u64], Order::C),
            };
            (e, r, Instant::now())
        });
        let killed_at = kill_when_started(child, &lines);
        let (mut e, r, returned_at) = sender.join().expect("sender panicked");
        assert!(
            returned_at > killed_at,
            "{w}: the send returned before the kill: {r:?}"
        );
        let after = returned_at - killed_at;
        assert!(after < AFTER_KILL, "{w}: returned {after:?} after the kill");
        let whole = match kind {
            SendKind::Framed => (ringxfer::frame::header_len(1) + n + TRAILER_LEN) as u64,
            _ => n as u64,
        };
        match &r {
            Err(
                err @ Error::Io {
                    transferred,
                    expected,
                    ..
                },
            ) => {
                let errno = err.raw_os_error();
                assert!(
                    matches!(errno, Some(libc::ECONNRESET) | Some(libc::EPIPE)),
                    "{w}: want ECONNRESET or EPIPE, got {err} ({err:?})"
                );
                assert_eq!(*expected, whole, "{w}: expected");
                assert!(
                    *transferred > 0 && transferred < expected,
                    "{w}: transferred {transferred} of {expected}"
                );
                eprintln!("{w}: {err}, {after:?} after the kill");
            }
            other => panic!("{w}: want Error::Io (ECONNRESET/EPIPE), got {other:?}"),
        }
        engine_still_works(&mut e, &w);
    });
}

both_backends! {
    fn killed_mid_send_raw(backend) { killed_mid_send(opts(backend), SendKind::Raw) }
    fn killed_mid_send_registered(backend) { killed_mid_send(opts(backend), SendKind::Guard) }
    fn killed_mid_send_framed(backend) { killed_mid_send(opts(backend), SendKind::Framed) }
}

/// The peer dies while the kernel still holds `SEND_ZC` notifications, `WRITE_FIXED` and
/// `READ_FIXED` SQEs pointing into registered memory: the call still returns, typed, and
/// the engine (with its registrations gone) still works.
#[test]
fn killed_mid_transfer_fixed_and_zero_copy_ops_uring() {
    require_uring!();
    killed_mid_recv(fixed_ops(SendOp::Send, RecvOp::ReadFixed), RecvKind::Raw);
    killed_mid_recv(fixed_ops(SendOp::Send, RecvOp::ReadFixed), RecvKind::Guard);
    if ringxfer::probe().send_zc {
        killed_mid_send(fixed_ops(SendOp::SendZc, RecvOp::Recv), SendKind::Raw);
        killed_mid_send(fixed_ops(SendOp::SendZc, RecvOp::Recv), SendKind::Guard);
    } else {
        eprintln!("SEND_ZC unsupported: its variant skipped");
    }
    killed_mid_send(fixed_ops(SendOp::WriteFixed, RecvOp::Recv), SendKind::Raw);
    killed_mid_send(fixed_ops(SendOp::WriteFixed, RecvOp::Recv), SendKind::Guard);
}

// ---------------------------------------------------------------------------------------------
// io_uring denied by seccomp
// ---------------------------------------------------------------------------------------------

/// Case 7: a process where `io_uring_setup` is refused with EPERM (see
/// [`child_uring_denied`]).
#[test]
fn uring_denied_by_seccomp() {
    proc::run_child_test(
        "child_uring_denied",
        &[(ROLE_ENV, "uring-denied")],
        Duration::from_secs(120),
    );
}

/// The child of [`uring_denied_by_seccomp`]: installs the filter, then checks the library
/// under it.
#[test]
#[ignore = "run by uring_denied_by_seccomp in a child process"]
fn child_uring_denied() {
    if role().as_deref() != Some("uring-denied") {
        return;
    }
    // Nothing in this process has probed io_uring yet (the probe is cached per process).
    deny_io_uring_setup();

    // The probe.
    let p = ringxfer::probe();
    assert!(!p.available, "probe says available under the filter: {p:?}");
    let reason = p.reason.clone().expect("the probe gives a reason");
    eprintln!("probe reason: {reason}");
    assert_names_eperm(&reason, "probe");

    // `Auto` falls back and says why, once.
    let auto = Engine::new(Backend::Auto).expect("Auto works without io_uring");
    assert_eq!(auto.backend(), ringxfer::ActiveBackend::Blocking);
    assert_eq!(auto.fallback_reason(), Some(reason.as_str()));
    let notices = auto.notices();
    assert_eq!(
        notices.iter().filter(|n| n.contains(&reason)).count(),
        1,
        "notices name the fallback once: {notices:?}"
    );
    drop(auto);

    // `Uring` is a typed error carrying the reason.
    match Engine::new(Backend::Uring) {
        Err(Error::UringUnavailable(r)) => {
            assert_eq!(r, reason, "UringUnavailable carries the probe's reason");
            let msg = Error::UringUnavailable(r).to_string();
            assert!(msg.contains("io_uring backend unavailable"), "{msg}");
        }
        other => panic!("Engine::new(Uring) under the filter: {other:?}"),
    }
    // `Blocking` is unaffected and has nothing to say.
    let b = Engine::new(Backend::Blocking).unwrap();
    assert_eq!(b.fallback_reason(), None);
    assert!(b.notices().is_empty(), "{:?}", b.notices());

    // Transfers through `Auto` engines: raw (one-shot functions and an engine), framed.
    let n = 32 * MIB + 5;
    let (tx, rx) = tcp_pair();
    let sender = std::thread::spawn(move || {
        let data: Vec<u8> = pattern_vec(n, 70);
        ringxfer::send_from(&tx, &data).expect("send_from (Auto)");
        let mut e = Engine::new(Backend::Auto).unwrap();
        e.send_from(&tx, &data).expect("Engine(Auto).send_from");
        let f: Vec<f64> = pattern_vec(1 << 20, 71);
        e.send_array(&tx, &f, &[1024, 1024], Order::F)
            .expect("send_array (Auto)");
        (data, f)
    });
    let mut got1: Vec<u8> = poison_vec(n, 70);
    let mut got2: Vec<u8> = poison_vec(n, 70);
    let mut e = Engine::new(Backend::Auto).unwrap();
    e.recv_into(&rx, &mut got1).expect("recv_into (Auto)");
    ringxfer::recv_into(&rx, &mut got2).expect("recv_into (one-shot Auto)");
    let arr = e.recv_array::<f64>(&rx).expect("recv_array (Auto)");
    let (data, f) = sender.join().unwrap();
    assert_bytes_eq(&got1, &data, "Auto raw transfer under the filter");
    assert_bytes_eq(&got2, &data, "one-shot raw transfer under the filter");
    assert_eq!(arr.shape(), &[1024, 1024]);
    assert_eq!(arr.order(), Order::F);
    assert_same(arr.as_slice(), &f, "Auto framed transfer under the filter");
}
