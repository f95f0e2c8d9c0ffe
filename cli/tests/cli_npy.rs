//! numpy's `.npy` stream through the CLI, against python3's numpy with no ringxfer code on the
//! Python side:
//!
//! * `numpy.save` streams → `ringxfer recv` and → `ringxfer serve`: one JSON line per array,
//!   every field checked (`"format":"npy"`, `"verified":false`, numpy's dtype, shape, order,
//!   bytes, the CRC-32 python computed, the arange pattern);
//! * hostile `.npy` headers and a stalled `.npy` header → `serve`'s error lines (exact kind
//!   and counts; the header deadline bounds a `.npy` header too);
//! * `ringxfer send --format npy` → `numpy.lib.format.read_array` on the socket, equal to
//!   numpy's own arange, for `>f8`, `<f2`, `c16`, `|b1`, F order, 0-d and empty;
//! * `--format` is a send flag: a usage error for recv and in raw mode.
//!
//! Each runs on both backends (`--backend blocking`, and `uring` where io_uring is
//! available). Skips (printed) without python3/numpy unless `RINGXFER_TEST_REQUIRE_NUMPY=1`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

mod util;
use util::bin::{BIN, backends, spawn_serve, transfer};
use util::npy::wrap;
use util::proc::Lines;
use util::py::{Python, numpy_available};

/// A python3 child or a CLI child is given this long.
const LIMIT: Duration = Duration::from_secs(120);

/// Starts `cmd` with stdout and stderr piped: the child (killed when dropped) and its stdout
/// and stderr lines.
fn spawn(cmd: &mut Command) -> (util::proc::Killed, Lines, Lines) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Lines::new(child.stdout.take().unwrap());
    let err = Lines::new(child.stderr.take().unwrap());
    (util::proc::Killed(child), out, err)
}

/// Waits for a [`spawn`]ed child (at most [`LIMIT`]); returns its status (`None`: killed),
/// its stdout lines as JSON and its stderr.
fn finish(
    child: &mut util::proc::Killed,
    out: &Lines,
    err: &Lines,
) -> (Option<std::process::ExitStatus>, Vec<Value>, String) {
    let status = util::proc::wait_deadline(&mut child.0, LIMIT);
    // Every line up to the end of each pipe (the child has exited, or was killed).
    let got = out
        .rest(Duration::from_secs(20))
        .iter()
        .map(|l| parse(l))
        .collect();
    (status, got, err.rest(Duration::from_secs(20)).join("\n"))
}

/// One hostile client of [`hostile_npy_into_serve`]: its bytes, whether it stalls after them
/// (else it half-closes), and serve's error line for it: error, kind, transferred, expected.
type Hostile = (Vec<u8>, bool, String, &'static str, Value, Value);

/// The arrays python3 writes: (dtype, shape, order asked of numpy).
fn cases() -> Value {
    json!([
        [">f8", [4, 5], "F"],
        ["<f2", [7], "C"],
        ["<c16", [3, 2], "C"],
        ["|b1", [2, 3], "F"],
        ["<f8", [], "C"],
        ["<i4", [0, 3], "C"],
        ["<u2", [3, 4], "F"],
        [">i8", [300, 200], "C"],
    ])
}

/// Connects to argv[1] (`host:port`) and writes each case of argv[2] with `numpy.save` (the
/// file is an object whose `write` is `sock.sendall`: `numpy.save` on `sock.makefile('wb')`
/// fails, numpy 2.4, not seekable); prints one JSON line per array with what the receiver
/// must report (numpy's `dtype.str`, shape, the `fortran_order` numpy wrote, bytes and the
/// zlib CRC-32 of the data); then half-closes and prints what the peer wrote back until it
/// closed (serve's lines for `--get-server-output`; nothing from recv).
const SAVE: &str = r#"
import json, socket, sys, zlib
import numpy as np
import numpy.lib.format as fmt
host, port = sys.argv[1].rsplit(":", 1)
sock = socket.create_connection((host, int(port)))
class W:
    def write(self, b):
        sock.sendall(b)
for dtype, shape, order in json.loads(sys.argv[2]):
    n = 1
    for d in shape:
        n *= d
    a = np.arange(n).astype(np.dtype(dtype)).reshape(tuple(shape), order=order)
    np.save(W(), a)
    h = fmt.header_data_from_array_1_0(a)
    print(json.dumps({"dtype": a.dtype.str, "shape": list(a.shape),
                      "order": "F" if h["fortran_order"] else "C", "bytes": a.nbytes,
                      "crc32": "%08x" % zlib.crc32(a.tobytes(order="F" if h["fortran_order"] else "C")),
                      "peer": "%s:%d" % sock.getsockname()}), flush=True)
sock.shutdown(socket.SHUT_WR)
back = b""
while True:
    b = sock.recv(65536)
    if not b:
        break
    back += b
print(json.dumps({"back": back.decode()}))
"#;

/// The line python3 says the receiver must print for array `k` (1-based) of `backend`, with
/// the fields only the receiver knows (time, CPU, buffers) taken from `got`.
fn want_line(py: &Value, k: usize, backend: &str, got: &Value) -> Value {
    json!({
        "peer": py["peer"],
        "array": k,
        "backend": backend,
        "format": "npy",
        "dtype": py["dtype"],
        "shape": py["shape"],
        "order": py["order"],
        "bytes": py["bytes"],
        "seconds": got["seconds"],
        "gbytes_per_s": got["gbytes_per_s"],
        "verified": false,
        "arange": true,
        "crc32": py["crc32"],
        "cpu": got["cpu"],
        "socket_buffers": got["socket_buffers"],
    })
}

/// Python's per-array lines and its last line (what came back), from its stdout.
fn python_lines(out: &str) -> (Vec<Value>, Value) {
    let mut v: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let last = v.pop().expect("python printed nothing");
    (v, last)
}

fn parse(l: &str) -> Value {
    serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}"))
}

/// `numpy.save` streams → `ringxfer recv --json --arrays 8`: exit 0, one exact line per
/// array.
#[test]
fn numpy_save_into_recv() {
    if !numpy_available() {
        return;
    }
    let n = cases().as_array().unwrap().len().to_string();
    for backend in backends() {
        let (mut recv, out, err) = spawn(
            Command::new(BIN)
                .args(["recv", "--listen", "127.0.0.1:0", "--json", "--arrays", &n])
                .args(["--backend", backend, "--timeout", "60"]),
        );
        let first = err.next(LIMIT).expect("recv says where it listens");
        let addr = first.rsplit(' ').next().unwrap().to_owned();
        let py = Python::start(SAVE, &[&addr, &cases().to_string()]);
        let (py_arrays, back) = python_lines(&py.success(LIMIT));
        let (status, got, stderr) = finish(&mut recv, &out, &err);
        assert!(
            status.is_some_and(|s| s.success()),
            "{backend}: {status:?} {stderr}"
        );
        assert_eq!(got.len(), py_arrays.len(), "{backend}: {got:#?}");
        for (k, (g, p)) in got.iter().zip(&py_arrays).enumerate() {
            assert_eq!(
                *g,
                want_line(p, k + 1, backend, g),
                "{backend} array {}",
                k + 1
            );
        }
        assert_eq!(back, json!({"back": ""}));
    }
}

/// `numpy.save` streams → `ringxfer serve --json`: one exact line per array, and the same
/// lines written back to the client that half-closed.
#[test]
fn numpy_save_into_serve() {
    if !numpy_available() {
        return;
    }
    for backend in backends() {
        let (_serve, lines, addr) = spawn_serve(&["--json", "--backend", backend]);
        let py = Python::start(SAVE, &[&addr.to_string(), &cases().to_string()]);
        let (py_arrays, back) = python_lines(&py.success(LIMIT));
        let got: Vec<Value> = lines
            .take(py_arrays.len(), LIMIT)
            .iter()
            .map(|l| parse(l))
            .collect();
        for (k, (g, p)) in got.iter().zip(&py_arrays).enumerate() {
            assert_eq!(
                *g,
                want_line(p, k + 1, backend, g),
                "{backend} array {}",
                k + 1
            );
        }
        let written_back: Vec<Value> = back["back"].as_str().unwrap().lines().map(parse).collect();
        assert_eq!(written_back, got, "{backend}: the lines sent back");
    }
}

/// Bytes a hostile client writes, then half-closes (or stays silent with `stall`): the error
/// line `serve` printed for it, and what serve wrote back on the connection before closing
/// it (as text).
fn hostile_line(
    addr: std::net::SocketAddr,
    bytes: &[u8],
    stall: bool,
    lines: &Lines,
) -> (Value, String) {
    let mut sock = TcpStream::connect(addr).unwrap();
    let peer = sock.local_addr().unwrap().to_string();
    sock.write_all(bytes).unwrap();
    if !stall {
        let _ = sock.shutdown(Shutdown::Write);
    }
    let v = parse(&lines.take(1, LIMIT)[0]);
    assert_eq!(v["peer"], peer.as_str());
    // serve closed the connection after the error line.
    let mut rest = Vec::new();
    sock.set_read_timeout(Some(LIMIT)).unwrap();
    let _ = sock.read_to_end(&mut rest);
    (v, String::from_utf8_lossy(&rest).into_owned())
}

/// Hostile `.npy` headers into `serve`: each gets one error line with the exact kind and
/// counts, and the server carries on. A `.npy` header that stalls after its first 8 bytes is
/// cut by `--header-timeout` (`header_timeout`, 8 of the 10-byte prefix). The same with
/// `--out-dir` (a cut payload counts the header too; no file is left), and each client is
/// told serve's error in one line before the close.
#[test]
fn hostile_npy_into_serve() {
    let dir = util::tmpdir("cli-npy", "hostile-out");
    let d = dir.to_str().unwrap();
    for (backend, out_dir) in backends().into_iter().flat_map(|b| [(b, false), (b, true)]) {
        let mut args = vec![
            "--json",
            "--backend",
            backend,
            "--max-payload",
            "1KiB",
            "--header-timeout",
            "1",
        ];
        if out_dir {
            args.extend(["--out-dir", d]);
        }
        let (_serve, lines, addr) = spawn_serve(&args);
        let mut huge = b"\x93NUMPY\x03\x00".to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        let mut cut = wrap("{'descr':'<f8','fortran_order':False,'shape':(100,)}");
        cut.extend_from_slice(&[0u8; 300]);
        let rejected = "framed message rejected: ";
        // (bytes, stall after them, error, kind, transferred, expected)
        let cases: [Hostile; 5] = [
            (
                wrap("{'descr':'<f8','fortran_order':False,'shape':(3,),'x':1}"),
                false,
                format!("{rejected}.npy header has unknown key 'x'"),
                "npy_unknown_key",
                Value::Null,
                Value::Null,
            ),
            (
                wrap("{'descr':'<f8','fortran_order':False,'shape':(129,)}"),
                false,
                format!("{rejected}payload of 1032 bytes exceeds the limit of 1024 bytes"),
                "too_large",
                Value::Null,
                Value::Null,
            ),
            (
                huge,
                false,
                format!(
                    "{rejected}.npy header of 4294967307 bytes exceeds the limit of 65536 bytes"
                ),
                "npy_header_too_long",
                Value::Null,
                Value::Null,
            ),
            (
                b"\x93NUMPY\x01\x00".to_vec(),
                true,
                "the header was not whole within 1000 ms of the connection's start (after 8 of \
                 10 bytes)"
                    .to_owned(),
                "header_timeout",
                json!(8),
                json!(10),
            ),
            // A cut payload after a good header: the library's counts, header included.
            (
                cut,
                false,
                "peer closed the connection after 364 of 864 bytes".to_owned(),
                "unexpected_eof",
                json!(364),
                json!(864),
            ),
        ];
        for (bytes, stall, error, kind, transferred, expected) in cases {
            let (mut v, told) = hostile_line(addr, &bytes, stall, &lines);
            v.as_object_mut().unwrap().remove("peer");
            assert_eq!(
                v,
                json!({"array": 1, "error": error, "kind": kind,
                       "transferred": transferred, "expected": expected}),
                "{backend}, --out-dir {out_dir}"
            );
            assert_eq!(
                told,
                format!("ringxfer serve: array 1: {error}\n"),
                "{backend}"
            );
            assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "no file left");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Reads argv[2] arrays from a listening socket with `numpy.lib.format.read_array` on
/// `makefile('rb', buffering=0)`; prints the port first, then per array whether it equals
/// numpy's own arange of the case (dtype, shape, order and bytes), then the bytes after the
/// last array (0: the sender closed).
const READ: &str = r#"
import json, socket, sys
import numpy as np
import numpy.lib.format as fmt
cases = json.loads(sys.argv[1])
arrays = int(sys.argv[2])
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
print(srv.getsockname()[1], flush=True)
sock, _ = srv.accept()
sock.settimeout(60)
f = sock.makefile("rb", buffering=0)
dtype, shape, order = cases
n = 1
for d in shape:
    n *= d
want = np.arange(n).astype(np.dtype(dtype)).reshape(tuple(shape), order=order)
for i in range(arrays):
    a = fmt.read_array(f)
    print(json.dumps({"dtype": a.dtype.str, "shape": list(a.shape),
                      "f": bool(a.flags.f_contiguous and not a.flags.c_contiguous),
                      "equal": bool(a.dtype == want.dtype and a.shape == want.shape
                                    and a.tobytes(order="A") == want.tobytes(order="A")
                                    and np.array_equal(a, want))}), flush=True)
print(json.dumps({"rest": len(f.read())}))
sock.close()
"#;

/// `ringxfer send --format npy` → python3's `numpy.lib.format.read_array`: every array equal
/// to numpy's own, in numpy's layout; send's JSON report says `"format":"npy"`.
#[test]
fn send_format_npy_into_numpy() {
    if !numpy_available() {
        return;
    }
    let cases: [(&str, &str, &str, Value, bool); 6] = [
        (">f8", "4,5", "F", json!([4, 5]), true),
        ("<f2", "70000", "C", json!([70000]), false),
        ("c16", "3,2", "C", json!([3, 2]), false),
        ("|b1", "2,3,4", "F", json!([2, 3, 4]), true),
        ("<i2", "", "C", json!([]), false),
        ("<f4", "3,0", "F", json!([3, 0]), false),
    ];
    for backend in backends() {
        for (dtype, shape, order, shape_json, fortran) in &cases {
            let case = json!([dtype, shape_json, order]).to_string();
            let (mut py, pyout, pyerr) =
                spawn(Command::new("python3").args(["-c", READ, &case, "2"]));
            let port = pyout.next(LIMIT).expect("python prints its port");
            let out = Command::new(BIN)
                .args(["send", "--connect", &format!("127.0.0.1:{port}"), "--json"])
                .args(["--format", "npy", "--dtype", dtype, "--shape", shape])
                .args(["--order", order, "--arrays", "2", "--backend", backend])
                .output()
                .unwrap();
            let what = format!("{backend} {dtype} ({shape}) {order}");
            assert!(out.status.success(), "{what}: {out:?}");
            let report = parse(String::from_utf8_lossy(&out.stdout).trim());
            assert_eq!(
                (&report["format"], &report["arrays"], &report["order"]),
                (&json!("npy"), &json!(2), &json!(order)),
                "{what}"
            );
            let (status, got, err) = finish(&mut py, &pyout, &pyerr);
            assert!(status.is_some_and(|s| s.success()), "{what}: {err}");
            let want_dtype = dtype.parse::<ringxfer::dtype::DType>().unwrap().to_string();
            let one =
                json!({"dtype": want_dtype, "shape": shape_json, "f": fortran, "equal": true});
            assert_eq!(got, [one.clone(), one, json!({"rest": 0})], "{what}");
        }
    }
}

/// `--format` is a send flag in framed mode: `recv --format` and `send --raw --format` are
/// usage errors (exit status 2), as is an unknown format.
#[test]
fn format_flag_is_for_framed_send() {
    let first_stderr_line = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(
        first_stderr_line(&["recv", "--connect", "127.0.0.1:1", "--format", "npy"]),
        "ringxfer recv: --format is for send (recv takes RGXF and .npy, told apart by the first \
         byte)"
    );
    let raw = first_stderr_line(&[
        "send",
        "--connect",
        "127.0.0.1:1",
        "--raw",
        "--format",
        "npy",
    ]);
    assert_eq!(raw, "ringxfer send: --format is for framed mode, not --raw");
    assert_eq!(
        first_stderr_line(&["send", "--connect", "127.0.0.1:1", "--format", "npz"]),
        "error: invalid value 'npz' for '--format <FORMAT>': unknown wire format \"npz\" \
         (expected rgxf or npy)"
    );
}

/// `ringxfer send --format npy` into `ringxfer recv` (text mode, both ends ringxfer): recv's
/// line names the `.npy` format and says nothing was verified; send's says no checksum
/// travels.
#[test]
fn send_npy_into_recv_text() {
    for backend in backends() {
        let ((sc, send_line, se), (rc, ro, re)) = transfer(
            &[
                "--listen",
                "127.0.0.1:0",
                "--arrays",
                "2",
                "--backend",
                backend,
            ],
            1,
            &[
                "--format",
                "npy",
                "--dtype",
                "f2",
                "--shape",
                "3,4",
                "--order",
                "F",
                "--arrays",
                "2",
                "--backend",
                backend,
            ],
        );
        assert_eq!(sc, 0, "{send_line}{se}");
        assert!(
            send_line.starts_with(
                "send: 2 array(s) of <f2 (3, 4) order F as .npy (no checksum travels) = 48 bytes"
            ),
            "{send_line}"
        );
        let lines: Vec<&str> = ro.lines().collect();
        assert_eq!(rc, 0, "{ro}{re}");
        assert_eq!(lines.len(), 2, "{lines:?}");
        for (k, l) in lines.iter().enumerate() {
            let want = format!("array {}: .npy <f2 (3, 4) order F, 24 bytes in ", k + 1);
            assert!(l.contains(&want), "{l}");
            assert!(
                l.contains(&format!(
                    "backend {backend}, crc32 {} not verified (no checksum travels in .npy), \
                     arange pattern ok, cpu ",
                    crc_of_f2_arange_3x4()
                )),
                "{l}"
            );
        }
    }
}

/// The CRC-32 (zlib) of `<f2` 0..12, as `ringxfer send` and `recv` print it.
fn crc_of_f2_arange_3x4() -> String {
    let dtype: ringxfer::dtype::DType = "<f2".parse().unwrap();
    let mut b = vec![0u8; 24];
    ringxfer::dtype::fill_arange(dtype, &mut b);
    format!("{:08x}", util::crc32_chunked(&b))
}

/// `--order F` on both ends of a `.npy` transfer of arrays that are both C- and
/// F-contiguous (1-D, a single row, empty): `.npy` writes them `fortran_order: False`, and
/// the receiver's order check takes that as a match (before, recv exited 1 with "order C
/// (expected F)" for its own sender's array).
#[test]
fn npy_order_f_of_a_both_contiguous_array_is_no_mismatch() {
    for backend in backends() {
        for shape in [
            vec!["--count", "5"],
            vec!["--shape", "1,5"],
            vec!["--shape", "0,3"],
        ] {
            let backend = ["--backend", backend];
            let recv = ["--listen", "127.0.0.1:0", "--order", "F", "--json"];
            let send = ["--format", "npy", "--order", "F"];
            let ((sc, so, se), (rc, ro, re)) = transfer(
                &[&recv[..], &shape, &backend].concat(),
                1,
                &[&send[..], &shape, &backend].concat(),
            );
            assert_eq!(sc, 0, "{shape:?}: {so}{se}");
            let lines: Vec<&str> = ro.lines().collect();
            assert_eq!(rc, 0, "{backend:?} {shape:?}: {lines:?} {re}");
            assert_eq!(lines.len(), 1, "{lines:?}");
            let l = parse(lines[0]);
            assert_eq!(l["format"], "npy", "{l}");
            assert_eq!(l["order"], "C", "{l}");
        }
    }
}
