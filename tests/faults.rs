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
//!   falls back to blocking and says why, transfers still work, `Uring` is a clear error;
//!   and the `ringxfer` binary started from that child (it inherits the filter) does the
//!   same on its command line.

mod util;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ringxfer::dtype::DType;
use ringxfer::frame::{Header, TRAILER_LEN};
use ringxfer::{
    Backend, Engine, Error, Options, Order, RecvOp, RegisterPolicy, SendOp, UringTuning,
};
use util::proc::{BIN, Killed, Lines, Output, child_test_command, wait_deadline};
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

/// uring options with the fixed-buffer / zero-copy opcodes (registration on every call).
fn fixed_ops(send_op: SendOp, recv_op: RecvOp) -> Options {
    Options {
        backend: Backend::Uring,
        uring: UringTuning {
            send_op,
            recv_op,
            ..UringTuning::default()
        },
        register: RegisterPolicy::Always,
        ..Options::default()
    }
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

/// `AUDIT_ARCH_*` of this target (linux/audit.h), checked first by the filter.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

/// Installs, for every thread of this process and everything it starts, a seccomp filter
/// under which `io_uring_setup` fails with `EPERM` and every other syscall is allowed: what
/// Docker's and containerd's default profiles do.
fn deny_io_uring_setup() {
    let st = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let ret = libc::BPF_RET | libc::BPF_K;
    let mut filter = [
        st(load, 0, 0, 4), // seccomp_data.arch
        st(jeq, 1, 0, AUDIT_ARCH),
        st(ret, 0, 0, libc::SECCOMP_RET_ALLOW), // another ABI: not ours to judge
        st(load, 0, 0, 0),                      // seccomp_data.nr
        st(jeq, 0, 1, libc::SYS_io_uring_setup as u32),
        st(ret, 0, 0, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        st(ret, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "prctl(PR_SET_NO_NEW_PRIVS)");
    // SAFETY: `prog` points to `filter`, which outlives the call (the kernel copies it).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &prog as *const libc::sock_fprog,
        )
    };
    assert_eq!(
        rc,
        0,
        "seccomp(SET_MODE_FILTER, TSYNC): {}",
        std::io::Error::last_os_error()
    );
    // The filter works: a raw io_uring_setup is refused with EPERM.
    let mut params = [0u8; 120]; // struct io_uring_params
    // SAFETY: io_uring_setup(1, params) with a writable, large-enough params struct; it is
    // refused before the kernel looks at it.
    let rc = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    let err = std::io::Error::last_os_error();
    assert!(
        rc == -1 && err.raw_os_error() == Some(libc::EPERM),
        "io_uring_setup under the filter: rc {rc}, {err}"
    );
}

/// A reason names EPERM (by name or by its text) and the likely cause.
#[track_caller]
fn assert_names_eperm(reason: &str, what: &str) {
    assert!(
        reason.contains("EPERM")
            || reason.contains("Operation not permitted")
            || reason.contains("os error 1)"),
        "{what}: the reason does not name EPERM: {reason:?}"
    );
    assert!(
        reason.contains("io_uring_setup"),
        "{what}: the reason does not name io_uring_setup: {reason:?}"
    );
    assert!(
        reason.contains("seccomp"),
        "{what}: the reason does not hint at seccomp: {reason:?}"
    );
}

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
/// and the CLI under it.
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

    cli_under_filter(&reason);
}

/// Runs the `ringxfer` binary with `args` (it inherits the filter) and returns its exit
/// status, stdout and stderr; killed after 60 s.
fn cli(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let mut c = std::process::Command::new(BIN)
        .args(args)
        .env_remove("RINGXFER_BACKEND")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Output::collect(&mut c);
    let st = wait_deadline(&mut c, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("ringxfer {args:?} hung"));
    let (o, e) = out.finish();
    (st, o, e)
}

/// The CLI under the filter: `--backend auto` transfers and says why it is blocking, once;
/// `--backend uring` fails with one line and a non-zero exit status.
fn cli_under_filter(reason: &str) {
    let count = "3000000"; // f8: 24 MB
    let mut recv = std::process::Command::new(BIN)
        .args([
            "recv",
            "--raw",
            "--listen",
            "127.0.0.1:0",
            "--backend",
            "auto",
        ])
        .args(["--dtype", "f8", "--count", count, "--json"])
        .env_remove("RINGXFER_BACKEND")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let recv_out = recv.stdout.take().unwrap();
    let recv_err = Lines::new(recv.stderr.take().unwrap());
    let recv = Killed(recv);
    // stderr: the fallback line, then `listening on ADDR`.
    let mut recv_stderr = Vec::new();
    let addr = loop {
        let l = recv_err
            .next(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("recv said no address: {recv_stderr:?}"));
        recv_stderr.push(l.clone());
        if let Some(a) = l.strip_prefix("ringxfer recv: listening on ") {
            break a.to_owned();
        }
    };
    let (st, send_out, send_err) = cli(&[
        "send",
        "--raw",
        "--connect",
        &addr,
        "--backend",
        "auto",
        "--dtype",
        "f8",
        "--count",
        count,
        "--json",
    ]);
    assert!(st.success(), "send --backend auto: {st}: {send_err}");
    let mut recv = recv;
    let rst = wait_deadline(&mut recv.0, Duration::from_secs(60)).expect("recv hung");
    let mut recv_stdout = String::new();
    { recv_out }.read_to_string(&mut recv_stdout).unwrap();
    recv_stderr.extend(recv_err.drain_for(Duration::from_millis(200)));
    assert!(rst.success(), "recv --backend auto: {rst}: {recv_stderr:?}");
    eprintln!("CLI send --backend auto, stderr: {send_err:?}");
    eprintln!("CLI recv --backend auto, stderr: {recv_stderr:?}");
    for (side, stdout, stderr) in [
        ("send", send_out.clone(), send_err.clone()),
        ("recv", recv_stdout.clone(), recv_stderr.join("\n")),
    ] {
        let said = format!("ringxfer {side}: using the blocking backend: {reason}");
        assert_eq!(
            stderr.lines().filter(|l| *l == said).count(),
            1,
            "{side} --backend auto: the fallback reason once on stderr: {stderr:?}"
        );
        assert_eq!(
            stderr.matches("io_uring_setup").count(),
            1,
            "{side}: said once: {stderr:?}"
        );
        let v: serde_json::Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{side}: not one JSON object: {stdout:?}: {e}"));
        assert_eq!(v["backend"], "blocking", "{side}: {v}");
        assert_eq!(v["bytes"], 24_000_000, "{side}: {v}");
        if side == "recv" {
            assert_eq!(v["verified"], true, "{v}");
        }
    }
    let crc =
        |s: &str| serde_json::from_str::<serde_json::Value>(s.trim()).unwrap()["crc32"].clone();
    assert_eq!(crc(&send_out), crc(&recv_stdout), "CRC-32 of both sides");

    // `--backend uring`: one clear line, exit status 1, before any connection is made.
    for args in [
        &["send", "--raw", "--connect", "127.0.0.1:1", "--count", "10"][..],
        &["recv", "--raw", "--listen", "127.0.0.1:0", "--count", "10"],
        &["send", "--connect", "127.0.0.1:1", "--count", "10"],
        &["serve", "--listen", "127.0.0.1:0"],
    ] {
        let mut a = args.to_vec();
        a.extend(["--backend", "uring"]);
        let (st, out, err) = cli(&a);
        assert_eq!(st.code(), Some(1), "{a:?}: {st}, stderr {err:?}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{a:?}: one line on stderr: {err:?}");
        let line = lines[0];
        assert!(
            line.starts_with(&format!("ringxfer {}: ", args[0]))
                && line.contains("io_uring backend unavailable"),
            "{a:?}: {line:?}"
        );
        assert_names_eperm(line, &format!("{a:?}"));
        eprintln!("{a:?} -> exit 1: {line}");
        assert!(!out.contains("listening"), "{a:?}: started anyway: {out:?}");
    }

    // `ringxfer probe` reports it and exits 0.
    let (st, out, err) = cli(&["probe", "--json"]);
    assert!(st.success(), "probe: {st}: {err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["available"], false, "{v}");
    assert_eq!(v["auto_backend"], "blocking", "{v}");
    assert_eq!(v["reason"], reason, "{v}");
}
