//! numpy interop (issue 3, item 6): ringxfer and `scripts/numpy_peer.py`, a separate Python
//! process using only numpy and the standard library, exchange framed arrays
//! (`docs/PROTOCOL.md`) over loopback TCP, in both directions and on both backends.
//!
//! Every payload is the arange pattern in memory order (`np.arange(n).astype(dtype)`, which
//! `dtype::fill_arange` writes): the Python receiver checks header CRC, payload CRC, trailer,
//! pattern, dtype, shape and order and prints one JSON line per array; the Rust receiver checks
//! dtype, shape, order and `verify_arange` on the bytes.
//!
//! Skips (with the reason printed) when `python3 -c 'import numpy'` fails — set
//! `RINGXFER_TEST_REQUIRE_NUMPY=1` to make that a failure (`scripts/test.sh` installs numpy
//! first) — and skips the uring variants when io_uring is unavailable
//! (`RINGXFER_TEST_REQUIRE_URING=1` makes that a failure). Every child process is killed after
//! [`CHILD_LIMIT`], and the Rust side has an idle timeout, so nothing hangs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringxfer::dtype::{DType, Scalar, fill_arange, verify_arange};
use ringxfer::frame::{self, Header};
use ringxfer::{Backend, Engine, Error, FrameError, Options, Order};
use serde_json::Value;

mod util;
use util::py::numpy_available;
use util::uring_available;

/// A child process still running after this long is killed and the test fails.
const CHILD_LIMIT: Duration = Duration::from_secs(60);
/// Idle timeout of the Rust engines: a peer that stalls fails the test instead of hanging it.
const IDLE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Skips
// ---------------------------------------------------------------------------------------------

/// Returns from the test (a printed skip) when numpy, or for `Backend::Uring` io_uring, is
/// missing.
fn can_run(backend: Backend) -> bool {
    numpy_available() && (backend != Backend::Uring || uring_available())
}

fn engine(backend: Backend) -> Engine {
    let e = Engine::with_options(Options {
        backend,
        idle_timeout: Some(IDLE),
        ..Options::default()
    })
    .unwrap_or_else(|e| panic!("Engine::with_options({backend}): {e}"));
    if backend != Backend::Auto {
        assert_eq!(e.backend().name(), backend.to_string());
    }
    e
}

// ---------------------------------------------------------------------------------------------
// The Python peer as a child process
// ---------------------------------------------------------------------------------------------

/// `python3 scripts/numpy_peer.py …` with stdout read line by line on a thread, stderr
/// collected, and a kill on drop (a failing test leaves no process behind).
struct Peer {
    child: Child,
    started: Instant,
    what: String,
    lines: mpsc::Receiver<String>,
    stderr: Option<JoinHandle<String>>,
}

/// What a finished peer left: exit status, stdout lines, stderr.
struct Finished {
    status: ExitStatus,
    stdout: Vec<String>,
    stderr: String,
    what: String,
}

impl Finished {
    /// The stdout lines that are JSON objects (the per-array reports).
    fn json(&self) -> Vec<Value> {
        self.stdout
            .iter()
            .filter(|l| l.starts_with('{'))
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("{}: bad JSON {l:?}: {e}", self.what))
            })
            .collect()
    }

    #[track_caller]
    fn assert_success(&self) {
        assert!(
            self.status.success(),
            "{} exited with {}\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.status,
            self.stdout.join("\n"),
            self.stderr
        );
    }
}

impl Peer {
    fn spawn(args: &[String]) -> Peer {
        let script: PathBuf = [env!("CARGO_MANIFEST_DIR"), "scripts", "numpy_peer.py"]
            .iter()
            .collect();
        let what = format!("numpy_peer.py {}", args.join(" "));
        let mut child = Command::new("python3")
            .arg(&script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {what}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        Peer {
            child,
            started: Instant::now(),
            what,
            lines,
            stderr: Some(stderr),
        }
    }

    fn deadline(&self) -> Instant {
        self.started + CHILD_LIMIT
    }

    /// The address from the peer's first line, `listening HOST:PORT`.
    fn listening_addr(&mut self) -> SocketAddr {
        let left = self.deadline().saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => line
                .strip_prefix("listening ")
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| {
                    panic!("{}: first line {line:?} is not 'listening ADDR'", self.what)
                }),
            Err(_) => {
                let f = self.finish();
                panic!(
                    "{}: no 'listening' line (exit {}): {}",
                    f.what, f.status, f.stderr
                )
            }
        }
    }

    /// Waits for the child (killing it at the deadline: a test failure) and collects its
    /// output.
    fn finish(&mut self) -> Finished {
        let status = loop {
            match self.child.try_wait().expect("try_wait") {
                Some(s) => break s,
                None if Instant::now() >= self.deadline() => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    let err = self.stderr.take().map(|h| h.join().unwrap_or_default());
                    panic!(
                        "{} still running after {CHILD_LIMIT:?}: killed\nstderr:\n{}",
                        self.what,
                        err.unwrap_or_default()
                    );
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        // The reader thread ends at EOF on stdout, which the exit closed.
        let stdout: Vec<String> = self.lines.iter().collect();
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        Finished {
            status,
            stdout,
            stderr,
            what: self.what.clone(),
        }
    }

    /// Accepts one connection on `listener` from this peer, failing fast if the peer exits
    /// first and at the deadline.
    fn accept_from(&mut self, listener: &TcpListener) -> TcpStream {
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        loop {
            match listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).expect("blocking stream");
                    return s;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("accept: {e}"),
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                // It may have connected (and sent, and exited) after the accept above: its
                // connection then waits in the backlog.
                if let Ok((s, _)) = listener.accept() {
                    s.set_nonblocking(false).expect("blocking stream");
                    return s;
                }
                let f = self.finish();
                panic!("{} exited ({st}) before connecting: {}", f.what, f.stderr);
            }
            assert!(
                Instant::now() < self.deadline(),
                "{}: never connected",
                self.what
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cases and the two directions
// ---------------------------------------------------------------------------------------------

/// One array: numpy dtype string, shape in elements, memory order.
#[derive(Clone, Copy, Debug)]
struct Case {
    dtype: &'static str,
    shape: &'static [u64],
    order: Order,
}

const fn c(dtype: &'static str, shape: &'static [u64], order: Order) -> Case {
    Case {
        dtype,
        shape,
        order,
    }
}

impl Case {
    fn dt(&self) -> DType {
        self.dtype.parse().expect("test dtype parses")
    }

    fn elements(&self) -> u64 {
        self.shape.iter().product()
    }

    fn payload_len(&self) -> usize {
        (self.elements() as usize) * self.dt().itemsize()
    }

    /// The arange payload, as `np.arange(n).astype(dtype)` in memory order.
    fn payload(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.payload_len()];
        fill_arange(self.dt(), &mut v);
        v
    }

    /// `20,10,5`; empty for a 0-d array.
    fn shape_arg(&self) -> String {
        self.shape
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Who listens: the default puts the receiver of each direction's *other* side in charge of
/// connecting, so both `--listen` and `--connect` of the peer are exercised.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Listener {
    Python,
    Rust,
}

/// Connects the Rust side to a peer started with `args` (plus `--listen`/`--connect`).
fn connect(args: Vec<String>, who: Listener) -> (Peer, TcpStream) {
    match who {
        Listener::Python => {
            let mut a = args;
            a.push("--listen=127.0.0.1:0".into());
            let mut peer = Peer::spawn(&a);
            let addr = peer.listening_addr();
            let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
            (peer, s)
        }
        Listener::Rust => {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            let mut a = args;
            a.push(format!("--connect={}", l.local_addr().unwrap()));
            let mut peer = Peer::spawn(&a);
            let s = peer.accept_from(&l);
            (peer, s)
        }
    }
}

/// Rust sends `cases` back to back on one connection with `Engine::send_array_bytes`; the
/// Python peer receives, verifies and reports each; every report must say verified with the
/// right dtype, shape, order and bytes.
fn rust_to_python(backend: Backend, cases: &[Case], who: Listener) {
    let mut args: Vec<String> = vec![
        "recv".into(),
        "--json".into(),
        format!("--arrays={}", cases.len()),
    ];
    for k in cases {
        args.push(format!("--expect-dtype={}", k.dtype));
        args.push(format!("--expect-shape={}", k.shape_arg()));
        args.push(format!("--expect-order={}", k.order));
    }
    let (mut peer, sock) = connect(args, who);
    let mut e = engine(backend);
    let t0 = Instant::now();
    for k in cases {
        let bytes = k.payload();
        e.send_array_bytes(&sock, k.dt(), &bytes, k.shape, k.order)
            .unwrap_or_else(|err| panic!("{backend}: send_array_bytes {k:?}: {err}"));
    }
    drop(sock);
    let f = peer.finish();
    f.assert_success();
    let reports = f.json();
    assert_eq!(reports.len(), cases.len(), "{}: {:?}", f.what, f.stdout);
    for (k, r) in cases.iter().zip(&reports) {
        assert_eq!(r["verified"], Value::Bool(true), "{k:?}: {r}");
        assert_eq!(r["dtype"], k.dtype, "{k:?}: {r}");
        assert_eq!(r["order"], k.order.to_string(), "{k:?}: {r}");
        let shape: Vec<u64> = serde_json::from_value(r["shape"].clone()).unwrap();
        assert_eq!(shape, k.shape, "{k:?}: {r}");
        assert_eq!(
            r["bytes"].as_u64(),
            Some(k.payload_len() as u64),
            "{k:?}: {r}"
        );
    }
    eprintln!(
        "rust->python {backend} ({who:?} listens): {} arrays in {:?}",
        cases.len(),
        t0.elapsed()
    );
}

/// The Python peer sends `cases` back to back on one connection; Rust receives each with
/// `Engine::recv_any` and checks dtype, shape, order and the arange pattern, then sees the
/// clean close between messages.
fn python_to_rust(backend: Backend, cases: &[Case], who: Listener) {
    let mut args: Vec<String> = vec![
        "send".into(),
        "--json".into(),
        format!("--arrays={}", cases.len()),
    ];
    for k in cases {
        args.push(format!("--dtype={}", k.dtype));
        args.push(format!("--shape={}", k.shape_arg()));
        args.push(format!("--order={}", k.order));
    }
    let (mut peer, sock) = connect(args, who);
    let mut e = engine(backend);
    let t0 = Instant::now();
    for (i, k) in cases.iter().enumerate() {
        let a = e
            .recv_any(&sock)
            .unwrap_or_else(|err| panic!("{backend}: recv_any #{i} {k:?}: {err}"));
        assert_eq!(a.dtype(), k.dt(), "#{i} {k:?}");
        assert_eq!(a.dtype().to_string(), k.dtype, "#{i}: numpy's dtype.str");
        assert_eq!(a.shape(), k.shape, "#{i} {k:?}");
        assert_eq!(a.order(), k.order, "#{i} {k:?}");
        assert_eq!(a.bytes().len(), k.payload_len(), "#{i} {k:?}");
        assert_eq!(
            verify_arange(a.dtype(), a.bytes()),
            Ok(()),
            "#{i} {k:?}: first element that is not the arange pattern"
        );
    }
    // The peer closes after the last message: a clean EOF at a message boundary.
    match e.recv_any(&sock) {
        Err(Error::UnexpectedEof {
            transferred: 0,
            expected,
        }) => assert_eq!(expected, frame::PREFIX_LEN as u64),
        other => panic!("{backend}: after the last array expected a clean EOF, got {other:?}"),
    }
    drop(sock);
    let f = peer.finish();
    f.assert_success();
    assert_eq!(f.json().len(), cases.len(), "{}: {:?}", f.what, f.stdout);
    eprintln!(
        "python->rust {backend} ({who:?} listens): {} arrays in {:?}",
        cases.len(),
        t0.elapsed()
    );
}

/// For each case list: Rust→Python and Python→Rust on both backends. Python listens when it
/// receives and connects when it sends; the `roles` case flips both.
macro_rules! interop {
    ($( $(#[$meta:meta])* $name:ident: [$($case:expr),* $(,)?]; )*) => {$(
        $(#[$meta])*
        mod $name {
            use super::*;
            const CASES: &[Case] = &[$($case),*];

            #[test]
            fn rust_to_python_blocking() {
                if can_run(Backend::Blocking) {
                    rust_to_python(Backend::Blocking, CASES, Listener::Python);
                }
            }

            #[test]
            fn rust_to_python_uring() {
                if can_run(Backend::Uring) {
                    rust_to_python(Backend::Uring, CASES, Listener::Python);
                }
            }

            #[test]
            fn python_to_rust_blocking() {
                if can_run(Backend::Blocking) {
                    python_to_rust(Backend::Blocking, CASES, Listener::Rust);
                }
            }

            #[test]
            fn python_to_rust_uring() {
                if can_run(Backend::Uring) {
                    python_to_rust(Backend::Uring, CASES, Listener::Rust);
                }
            }
        }
    )*};
}

use Order::{C, F};

interop! {
    /// float64, the recipe's array.
    f8: [c("<f8", &[1000], C)];
    /// float32.
    f4: [c("<f4", &[250, 4], C)];
    /// float16: past 2048 (where steps become 2) and 65504 (the largest finite value, then
    /// inf), so numpy's rounding of `astype(float16)` shows; big-endian in Fortran order.
    f2: [c("<f2", &[70_000], C), c(">f2", &[300, 7], F)];
    /// int64.
    i8: [c("<i8", &[1000], C)];
    /// uint8, past 255 so the wrap of `astype` shows.
    u1: [c("|u1", &[1000], C)];
    /// complex128 (i + 0j), and complex64.
    c16: [c("<c16", &[100, 7], C), c("<c8", &[33], C)];
    /// Big-endian dtypes (C04): payload bytes in the dtype's order; a big-endian complex
    /// swaps each component.
    big_endian: [c(">i4", &[257], C), c(">f8", &[10, 10], F), c(">c16", &[50], C)];
    /// bool (`|b1`).
    bool_b1: [c("|b1", &[9], C)];
    /// C03: a 20x10x5 float64 array in Fortran order keeps shape, order and values.
    fortran_3d: [c("<f8", &[20, 10, 5], F), c(">i4", &[4, 3, 2], F)];
    /// C13: zero-length arrays (1-d and 3-d), each followed by another array on the same
    /// connection.
    zero_length_then_more: [
        c("<f8", &[0], C),
        c("<f8", &[5], C),
        c("<f4", &[3, 0, 2], F),
        c("|u1", &[3], C),
        c("<i8", &[0], C),
    ];
    /// 0-d arrays (shape `()`: one element), then a 1-d array.
    zero_d: [c("<f8", &[], C), c(">i4", &[], C), c("<f4", &[4], C)];
    /// 100 MB of float64 (12,500,000 elements).
    mb100: [c("<f8", &[12_500_000], C)];
}

/// The other roles of the peer: `recv --connect` (Rust listens and sends) and `send --listen`
/// (Rust connects and receives).
mod roles {
    use super::*;
    const CASES: &[Case] = &[
        c("<f8", &[20, 10, 5], F),
        c("<c16", &[0], C),
        c("|u1", &[7], C),
    ];

    #[test]
    fn blocking() {
        if can_run(Backend::Blocking) {
            rust_to_python(Backend::Blocking, CASES, Listener::Rust);
            python_to_rust(Backend::Blocking, CASES, Listener::Python);
        }
    }

    #[test]
    fn uring() {
        if can_run(Backend::Uring) {
            rust_to_python(Backend::Uring, CASES, Listener::Rust);
            python_to_rust(Backend::Uring, CASES, Listener::Python);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Typed receives of numpy arrays
// ---------------------------------------------------------------------------------------------

/// `recv_array::<f64>` of an `<f4` message is `DtypeMismatch` naming both dtypes and leaves
/// the connection usable; `recv_array::<i32>` of `>i4` fails the same way, while
/// `recv_any(..).into_typed::<i32>(true)` converts the byte order.
fn typed_receives(backend: Backend) {
    let cases = [
        c("<f4", &[10], C),
        c("<f4", &[10], C),
        c(">i4", &[2, 3], C),
        c(">i4", &[2, 3], F),
    ];
    let mut args: Vec<String> = vec!["send".into(), format!("--arrays={}", cases.len())];
    for k in &cases {
        args.push(format!("--dtype={}", k.dtype));
        args.push(format!("--shape={}", k.shape_arg()));
        args.push(format!("--order={}", k.order));
    }
    let (mut peer, sock) = connect(args, Listener::Rust);
    let mut e = engine(backend);
    let f8 = DType::native(Scalar::F64).to_string();
    let i4 = DType::native(Scalar::I32).to_string();

    let err = e.recv_array::<f64>(&sock).expect_err("<f4 received as f64");
    let msg = err.to_string();
    match err {
        Error::Frame(FrameError::DtypeMismatch { wire, wanted }) => {
            assert_eq!((wire.as_str(), wanted.as_str()), ("<f4", f8.as_str()));
        }
        other => panic!("expected DtypeMismatch, got {other:?}"),
    }
    assert!(msg.contains("<f4") && msg.contains(&f8), "{msg}");

    // The mismatched message was consumed whole: the next one arrives intact.
    let a = e.recv_array::<f32>(&sock).expect("second <f4 as f32");
    assert_eq!(a.shape(), &[10]);
    assert_eq!(a.as_slice(), (0..10).map(|i| i as f32).collect::<Vec<_>>());

    if cfg!(target_endian = "little") {
        let err = e.recv_array::<i32>(&sock).expect_err(">i4 received as i32");
        let msg = err.to_string();
        match err {
            Error::Frame(FrameError::DtypeMismatch { wire, wanted }) => {
                assert_eq!((wire.as_str(), wanted.as_str()), (">i4", i4.as_str()));
            }
            other => panic!("expected DtypeMismatch, got {other:?}"),
        }
        assert!(msg.contains(">i4") && msg.contains("<i4"), "{msg}");
    } else {
        let a = e.recv_array::<i32>(&sock).expect(">i4 is native here");
        assert_eq!(a.as_slice(), [0, 1, 2, 3, 4, 5]);
    }

    let any = e.recv_any(&sock).expect("recv_any >i4");
    assert_eq!(any.dtype().to_string(), ">i4");
    assert_eq!(verify_arange(any.dtype(), any.bytes()), Ok(()));
    let a = any
        .into_typed::<i32>(true)
        .expect("byte order converted on request");
    assert_eq!(a.shape(), &[2, 3]);
    assert_eq!(a.order(), F);
    assert_eq!(
        a.as_slice(),
        [0, 1, 2, 3, 4, 5],
        "values, not byte-reversed numbers"
    );
    assert_eq!(a.as_any().dtype().to_string(), i4);

    drop(sock);
    let f = peer.finish();
    f.assert_success();
}

mod typed {
    use super::*;

    #[test]
    fn dtype_mismatch_and_byte_order_blocking() {
        if can_run(Backend::Blocking) {
            typed_receives(Backend::Blocking);
        }
    }

    #[test]
    fn dtype_mismatch_and_byte_order_uring() {
        if can_run(Backend::Uring) {
            typed_receives(Backend::Uring);
        }
    }

    /// The typed sender: `Engine::send_array(&[f64], [20, 10, 5], F)` arrives in numpy as the
    /// arange pattern in Fortran memory order.
    fn send_array_typed(backend: Backend) {
        let args = vec![
            "recv".to_owned(),
            "--json".into(),
            "--arrays=1".into(),
            "--expect-dtype=<f8".into(),
            "--expect-shape=20,10,5".into(),
            "--expect-order=F".into(),
        ];
        let (mut peer, sock) = connect(args, Listener::Python);
        let data: Vec<f64> = (0..1000).map(f64::from).collect();
        engine(backend)
            .send_array(&sock, &data, &[20, 10, 5], F)
            .expect("send_array");
        drop(sock);
        let f = peer.finish();
        f.assert_success();
        assert_eq!(f.json()[0]["verified"], Value::Bool(true), "{:?}", f.stdout);
    }

    #[test]
    fn send_array_blocking() {
        if can_run(Backend::Blocking) {
            send_array_typed(Backend::Blocking);
        }
    }

    #[test]
    fn send_array_uring() {
        if can_run(Backend::Uring) {
            send_array_typed(Backend::Uring);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The peer itself checks what it receives, and the doc's example matches the codec
// ---------------------------------------------------------------------------------------------

/// A frame built by hand: ringxfer's header for `case`, `payload` as given, and a trailer
/// carrying `crc`.
fn raw_frame(case: &Case, payload: &[u8], crc: u32) -> Vec<u8> {
    let mut v = Header::new(case.dt(), case.shape, case.order)
        .expect("header")
        .encode();
    v.extend_from_slice(payload);
    v.extend_from_slice(&frame::encode_trailer(crc));
    v
}

/// The peer is a real verifier: a payload that does not match its CRC, and a payload that is
/// not the pattern (with a matching CRC), are reported `verified: false` with the reason and
/// a non-zero exit, while the good messages around them on the same connection verify; a bad
/// magic is a protocol error (exit 3).
#[test]
fn python_peer_rejects_what_it_must() {
    if !numpy_available() {
        return;
    }
    let k = c("<f8", &[16], C);
    let good = k.payload();
    let mut flipped = good.clone();
    flipped[8 * 5 + 3] ^= 0x10;

    let args = vec!["recv".to_owned(), "--json".into()];
    let (mut peer, mut sock) = connect(args, Listener::Python);
    sock.write_all(&raw_frame(&k, &good, crc32fast::hash(&good)))
        .unwrap();
    sock.write_all(&raw_frame(&k, &flipped, crc32fast::hash(&good)))
        .unwrap();
    sock.write_all(&raw_frame(&k, &flipped, crc32fast::hash(&flipped)))
        .unwrap();
    sock.write_all(&raw_frame(&k, &good, crc32fast::hash(&good)))
        .unwrap();
    drop(sock);
    let f = peer.finish();
    assert_eq!(
        f.status.code(),
        Some(1),
        "{} {:?} {}",
        f.what,
        f.stdout,
        f.stderr
    );
    let r = f.json();
    assert_eq!(r.len(), 4, "{:?}", f.stdout);
    let verified: Vec<_> = r.iter().map(|x| x["verified"].clone()).collect();
    assert_eq!(verified, [true, false, false, true].map(Value::Bool));
    let err1 = r[1]["error"].as_str().unwrap_or_default();
    assert!(err1.contains("PayloadChecksum"), "{err1}");
    let err2 = r[2]["error"].as_str().unwrap_or_default();
    assert!(err2.contains("element 5"), "{err2}");

    let args = vec!["recv".to_owned(), "--json".into()];
    let (mut peer, mut sock) = connect(args, Listener::Python);
    let mut bad = raw_frame(&k, &good, crc32fast::hash(&good));
    bad[0] = b'X';
    sock.write_all(&bad).unwrap();
    drop(sock);
    let f = peer.finish();
    assert_eq!(
        f.status.code(),
        Some(3),
        "{} {:?} {}",
        f.what,
        f.stdout,
        f.stderr
    );
    assert!(f.stderr.contains("BadMagic"), "{}", f.stderr);
}

/// The Python example in `docs/PROTOCOL.md` produces exactly the bytes ringxfer's codec
/// produces (header, payload, trailer) for a Fortran-order 3-d array and a 0-d array.
#[test]
fn protocol_doc_example_matches_the_codec() {
    if !numpy_available() {
        return;
    }
    let doc_path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "docs", "PROTOCOL.md"]
        .iter()
        .collect();
    let doc = std::fs::read_to_string(&doc_path).expect("docs/PROTOCOL.md");
    let start = doc
        .find("```python\n")
        .expect("a python block in PROTOCOL.md")
        + 10;
    let example = &doc[start..start + doc[start..].find("```").expect("end of block")];
    for k in [
        c("<f8", &[20, 10, 5], F),
        c(">i4", &[], C),
        c("<c16", &[3, 0], C),
    ] {
        let script = format!(
            "{example}\nimport sys\n\
             a = np.arange({n}).astype('{dt}').reshape(({shape}), order='{o}')\n\
             sys.stdout.write(frame(a, '{o}').hex())\n",
            n = k.elements(),
            dt = k.dtype,
            shape = k.shape.iter().map(|d| format!("{d},")).collect::<String>(),
            o = k.order,
        );
        let out = Command::new("python3")
            .args(["-c", &script])
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let payload = k.payload();
        let want = raw_frame(&k, &payload, crc32fast::hash(&payload));
        let want_hex: String = want.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(String::from_utf8_lossy(&out.stdout), want_hex, "{k:?}");
    }
}
