//! How many arrays framed `ringxfer recv` takes, as a newcomer runs it: two real processes
//! over loopback TCP (one connection, and striped over two streams) and a Unix socket, on
//! both backends.
//!
//! * Without `--arrays`, recv takes every array until the sender closes between two messages:
//!   three arrays sent, three lines, each the arange pattern with the sender's CRC-32 (which
//!   the test computes itself), exit 0 on both sides.
//! * A close inside a message stays the typed end-of-stream error, with its exact message.
//! * `--arrays 2` against a 3-array sender fails on both sides (exit 1): recv names the extra
//!   data, and the sender prints recv's one-line reason (`ringxfer recv: rejected: …`) instead
//!   of reporting a delivery nobody took.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ringxfer::dtype::{DType, fill_arange};
use ringxfer::{Backend, Engine, Order};
use serde_json::Value;
use util::bin::{backends, finish_recv, json, run, spawn_recv, spawn_unix, transfer};

/// The sender's flags in every test: three `<f4` arrays of shape (100, 50) (20,000 bytes).
const SEND: [&str; 7] = [
    "--arrays", "3", "--dtype", "f4", "--shape", "100,50", "--json",
];

/// CRC-32 of the arange pattern `send` sends for `SEND`, as the reports print it.
fn arange_crc() -> String {
    let mut b = vec![0u8; 100 * 50 * 4];
    fill_arange("<f4".parse::<DType>().unwrap(), &mut b);
    format!("{:08x}", util::crc32_chunked(&b))
}

/// Raw `recv`'s flags for the array of [`send_arange_striped`]: 5,000 `<f4` over 3 streams.
const RAW_3: [&str; 7] = [
    "--raw",
    "--streams",
    "3",
    "--dtype",
    "f4",
    "--count",
    "5000",
];

/// Connects 3 streams to `addr` and sends the `<f4` (100, 50) arange array over them with the
/// library: framed (`send_array_striped`) or raw (`send_striped`). The streams stay open.
fn send_arange_striped(addr: &str, framed: bool) -> Vec<TcpStream> {
    let socks: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let dtype: DType = "<f4".parse().unwrap();
    let mut bytes = vec![0u8; 100 * 50 * 4];
    fill_arange(dtype, &mut bytes);
    let mut eng = Engine::new(Backend::Blocking).unwrap();
    match framed {
        true => eng.send_array_striped(&socks, dtype, &bytes, &[100, 50], Order::C),
        false => eng.send_striped(&socks, &bytes),
    }
    .unwrap();
    socks
}

/// The first line of a striped framed `recv --json`: that array, over 3 streams, the arange
/// pattern with its CRC-32.
fn assert_striped_line(out: &str, what: &str) {
    let line = json(out.lines().next().unwrap());
    assert_eq!(
        (&line["streams"], &line["arange"], &line["crc32"]),
        (
            &Value::from(3),
            &Value::from(true),
            &Value::from(arange_crc())
        ),
        "{what}: {out}"
    );
}

/// The receiver's three lines: arrays 1, 2, 3, each `<f4` (100, 50), 20,000 bytes, CRC-32
/// checked and equal to the arange pattern's, over `streams` streams (absent: one
/// connection).
fn check_three(lines: &[Value], streams: Option<usize>, what: &str) {
    let crc = arange_crc();
    assert_eq!(lines.len(), 3, "{what}: {lines:?}");
    for (k, v) in lines.iter().enumerate() {
        assert_eq!(v["array"], k as u64 + 1, "{what}: {v}");
        assert_eq!(v["dtype"], "<f4", "{what}: {v}");
        assert_eq!(v["shape"], serde_json::json!([100, 50]), "{what}: {v}");
        assert_eq!(v["bytes"], 20_000, "{what}: {v}");
        assert_eq!(v["verified"], true, "{what}: {v}");
        assert_eq!(v["arange"], true, "{what}: {v}");
        assert_eq!(v["crc32"], crc.as_str(), "{what}: {v}");
        assert_eq!(
            v["streams"].as_u64(),
            streams.map(|s| s as u64),
            "{what}: {v}"
        );
    }
}

/// `recv` with no `--arrays` takes all three arrays of `send --arrays 3`, on one connection
/// and striped over two streams (recv given neither --streams nor --arrays).
#[test]
fn recv_without_arrays_takes_every_array_tcp() {
    for b in backends() {
        for streams in [None, Some(2)] {
            let what = format!("{b} streams {streams:?}");
            let n = streams.map(|s| s.to_string());
            let mut sargs = SEND.to_vec();
            sargs.extend(["--backend", b]);
            if let Some(n) = &n {
                sargs.extend(["--streams", n.as_str()]);
            }
            let ((sc, so, se), (rc, ro, re)) = transfer(
                &["--listen", "127.0.0.1:0", "--json", "--backend", b],
                1,
                &sargs,
            );
            assert_eq!((sc, rc), (0, 0), "{what}\nsend: {so}{se}\nrecv: {ro}{re}");
            let s = json(&so);
            assert_eq!(
                (&s["arrays"], &s["bytes"]),
                (&3.into(), &60_000.into()),
                "{s}"
            );
            assert_eq!(s["crc32"], arange_crc().as_str(), "{s}");
            let lines: Vec<Value> = ro.lines().map(json).collect();
            check_three(&lines, streams, &what);
        }
    }
}

/// A command's `(exit code, stdout, stderr)`.
type Ran = (i32, String, String);

/// `ringxfer recv --listen unix:PATH RECV…` and `ringxfer send --connect unix:PATH SEND…`
/// (PATH in a fresh folder named after `name`): each side's [`Ran`], the sender's first.
fn unix_transfer(name: &str, recv: &[&str], send: &[&str]) -> (Ran, Ran) {
    let dir = util::tmpdir("cli-recv-count", name);
    let path = dir.join("s.sock");
    let addr = format!("unix:{}", path.display());
    let mut rargs = vec!["recv", "--listen", addr.as_str()];
    rargs.extend_from_slice(recv);
    let (k, err) = spawn_unix(&rargs, &path);
    let mut sargs = vec!["send", "--connect", addr.as_str()];
    sargs.extend_from_slice(send);
    let s = run(&sargs);
    let r = finish_recv(k, err);
    let _ = std::fs::remove_dir_all(&dir);
    (s, r)
}

/// The same over a Unix socket (`unix:PATH`).
#[test]
fn recv_without_arrays_takes_every_array_unix() {
    for b in backends() {
        let mut sargs = vec!["--backend", b];
        sargs.extend(SEND);
        let ((sc, so, se), (rc, ro, re)) =
            unix_transfer(&format!("unix-{b}"), &["--json", "--backend", b], &sargs);
        assert_eq!((sc, rc), (0, 0), "{b}\nsend: {so}{se}\nrecv: {ro}{re}");
        let lines: Vec<Value> = ro.lines().map(json).collect();
        check_three(&lines, None, b);
    }
}

/// `recv --arrays 2` against `send --arrays 3` over a Unix socket, which has no reset: recv
/// exits 1 naming the 856 extra bytes, and the sender exits 1 with recv's one line, read
/// before recv's close.
#[test]
fn unix_recv_arrays_2_rejects_a_third_array() {
    for b in backends() {
        let ((sc, so, se), (rc, ro, re)) = unix_transfer(
            &format!("unix-reject-{b}"),
            &["--arrays", "2", "--backend", b],
            &["--arrays", "3", "--count", "100", "--backend", b],
        );
        let why = "856 extra bytes after array 2 of 2 (--arrays 2)";
        assert_eq!((sc, rc), (1, 1), "{b}\nsend: {so}{se}\nrecv: {ro}{re}");
        assert_eq!(so, "", "{b}");
        assert_eq!(
            se,
            format!("ringxfer send: ringxfer recv: rejected: {why}\n"),
            "{b}"
        );
        assert_eq!(re.trim(), format!("ringxfer recv: {why}"), "{b}");
        assert_eq!(ro.lines().count(), 3, "{b}: {ro}");
    }
}

/// One framed message as `Engine::send_array` writes it: 100 `<f8` (48 header + 800
/// payload + 8 trailer bytes).
fn message() -> Vec<u8> {
    let (a, mut b) = util::unix_pair();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        b.read_to_end(&mut v).unwrap();
        v
    });
    let data: Vec<f64> = (0..100).map(f64::from).collect();
    let mut eng = Engine::new(Backend::Blocking).unwrap();
    eng.send_array(&a, &data, &[100], Order::C).unwrap();
    drop(a);
    let m = reader.join().unwrap();
    assert_eq!(m.len(), 856);
    m
}

/// Runs `recv --listen 127.0.0.1:0 --backend B` with no `--arrays`, writes `bytes` to it and
/// closes: recv's `(exit code, stdout, stderr)`.
fn recv_given(b: &str, bytes: &[u8]) -> (i32, String, String) {
    let (k, err, addr) = spawn_recv(&["--listen", "127.0.0.1:0", "--backend", b], 1);
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(bytes).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let r = finish_recv(k, err);
    drop(s);
    r
}

/// Without `--arrays`, the end of stream inside the second message is still an error: exit 1
/// with the typed end-of-stream message (bytes of that message received and expected). A
/// close before any array is one too; a close right after the first is success.
#[test]
fn recv_without_arrays_eof_inside_a_message_fails() {
    let m = message();
    for b in backends() {
        let mut bytes = m.clone();
        bytes.extend_from_slice(&m[..500]);
        let (rc, ro, re) = recv_given(b, &bytes);
        assert_eq!(rc, 1, "{b}: {ro}{re}");
        assert_eq!(ro.lines().count(), 2, "{b}: {ro}");
        assert_eq!(
            re.trim(),
            "ringxfer recv: array 2: peer closed the connection after 500 of 856 bytes",
            "{b}: {ro}"
        );

        let (rc, ro, re) = recv_given(b, &m);
        assert_eq!(rc, 0, "{b}: {ro}{re}");
        assert_eq!(ro.lines().count(), 1, "{b}: {ro}");
        assert!(
            ro.contains(" array 1: <f8 (100,) order C, 800 bytes"),
            "{b}: {ro}"
        );

        let (rc, ro, re) = recv_given(b, &[]);
        assert_eq!(rc, 1, "{b}: {ro}{re}");
        assert_eq!(ro, "", "{b}");
        assert_eq!(
            re.trim(),
            "ringxfer recv: peer closed the connection before sending any array",
            "{b}"
        );
    }
}

/// `recv --arrays 2` against `send --arrays 3` (one connection): recv prints the two arrays
/// and an `extra_bytes` line for the third message's 856 bytes and exits 1; the sender gets
/// recv's reason on the connection, then a reset, and exits 1 with both.
#[test]
fn recv_arrays_2_rejects_a_third_array() {
    for b in backends() {
        let ((sc, so, se), (rc, ro, re)) = transfer(
            &["--listen", "127.0.0.1:0", "--arrays", "2", "--backend", b],
            1,
            &["--arrays", "3", "--count", "100", "--backend", b],
        );
        let why = "856 extra bytes after array 2 of 2 (--arrays 2)";
        assert_eq!((sc, rc), (1, 1), "{b}\nsend: {so}{se}\nrecv: {ro}{re}");
        assert_eq!(so, "", "{b}: the sender reports no success");
        let said = format!("ringxfer recv: rejected: {why}\n");
        assert_eq!(
            se.trim(),
            format!(
                "ringxfer send: {} (delivery not confirmed: the peer reset the connection \
                 instead of closing it ({} bytes read from it first))",
                said.trim(),
                said.len()
            ),
            "{b}"
        );
        assert_eq!(re.trim(), format!("ringxfer recv: {why}"), "{b}");
        let lines: Vec<&str> = ro.lines().collect();
        assert_eq!(lines.len(), 3, "{b}: {ro}");
        assert!(
            lines[2]
                .ends_with(" array 3: ERROR [extra_bytes] 856 extra bytes after the expected data"),
            "{b}: {ro}"
        );
    }
}

/// The same striped over two streams: recv sees another stripe prefix on stream 0 after its
/// two arrays, says so at once and aborts every stream; the sender (wherever the reset found
/// it: in its third send or in its close) exits 1 with recv's reason in its message.
#[test]
fn striped_recv_arrays_2_rejects_a_third_array() {
    for b in backends() {
        let ((sc, so, se), (rc, ro, re)) = transfer(
            &[
                "--listen",
                "127.0.0.1:0",
                "--arrays",
                "2",
                "--json",
                "--backend",
                b,
            ],
            1,
            &[
                "--arrays",
                "3",
                "--count",
                "100",
                "--streams",
                "2",
                "--backend",
                b,
            ],
        );
        assert_eq!((sc, rc), (1, 1), "{b}\nsend: {so}{se}\nrecv: {ro}{re}");
        assert_eq!(so, "", "{b}: the sender reports no success");
        let why = "more data after array 2 of 2 (--arrays 2): another array's stripe prefix \
                   on stream 0";
        let lines: Vec<Value> = ro.lines().map(json).collect();
        assert_eq!(lines.len(), 3, "{b}: {ro}");
        assert_eq!(lines[2]["kind"], "extra_bytes", "{b}: {ro}");
        assert_eq!(lines[2]["array"], 3, "{b}: {ro}");
        assert_eq!(lines[2]["error"], why, "{b}: {ro}");
        let peer0 = lines[0]["peer"].as_str().unwrap();
        assert_eq!(
            re.trim(),
            format!("ringxfer recv: stream 0 ({peer0}): {why}"),
            "{b}"
        );
        let se = se.trim();
        assert!(
            se.starts_with("ringxfer send: ")
                && se.contains(&format!("ringxfer recv: rejected: {why} ("))
                && se.lines().count() == 1,
            "{b}: {se}"
        );
    }
}

/// `recv --out` takes exactly one array (as `--arrays 1`): a second one is rejected on both
/// sides, and no file is left behind.
#[test]
fn recv_out_takes_one_array() {
    let dir = util::tmpdir("cli-recv-count", "out");
    let out = dir.join("a.npy");
    let o = out.to_str().unwrap();
    for b in backends() {
        let ((sc, so, se), (rc, ro, re)) = transfer(
            &["--listen", "127.0.0.1:0", "--out", o, "--backend", b],
            1,
            &["--arrays", "2", "--count", "100", "--backend", b],
        );
        assert_eq!((sc, rc), (1, 1), "{b}\nsend: {so}{se}\nrecv: {ro}{re}");
        let why = "856 extra bytes after array 1 of 1 (--out takes one array)";
        assert_eq!(re.trim(), format!("ringxfer recv: {why}"), "{b}");
        assert!(
            se.contains(&format!("ringxfer recv: rejected: {why} (")),
            "{b}: {se}"
        );
        assert!(!out.exists(), "{b}: a rejected receive leaves no file");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Striped `recv --arrays 1 --timeout 2` over 3 streams, from a sender (the library's
/// `send_array_striped`) that sends its array and then neither sends more nor closes: recv
/// takes the array (exit 0) and notes once per stream that the peer did not close, after one
/// `--timeout` for all of it. Before, it waited 2 s for stream 0's next byte and then 2 s
/// more per stream (8 s).
#[test]
fn striped_recv_waits_once_for_a_sender_that_does_not_close() {
    for b in backends() {
        let (k, err, addr) = spawn_recv(
            &[
                "--listen",
                "127.0.0.1:0",
                "--arrays",
                "1",
                "--timeout",
                "2",
                "--json",
                "--backend",
                b,
            ],
            1,
        );
        let socks = send_arange_striped(&addr, true);
        let sent = Instant::now();
        let (rc, out, rest) = finish_recv(k, err);
        let waited = sent.elapsed();
        drop(socks);
        assert_eq!(rc, 0, "{b}: {out}{rest}");
        assert_striped_line(&out, b);
        let not_closed = ringxfer::Error::PeerNotClosed {
            read: 0,
            timeout_ms: 2000,
        };
        let note = format!("ringxfer recv: note: {not_closed}; no extra byte arrived");
        assert_eq!(
            rest.lines().collect::<Vec<_>>(),
            [note.as_str(); 3],
            "{b}: {rest}"
        );
        // One --timeout (2 s) bounds the close; one per stream would be 6 s (the old bug: 8
        // s). The upper bound leaves 3 s for a loaded machine (it was 4 s: 2 s of room).
        assert!(
            waited >= Duration::from_millis(1900) && waited < Duration::from_secs(5),
            "{b}: recv ended {waited:?} after the array: one --timeout (2 s) bounds the close"
        );
    }
}

/// Ends each of `socks` (shut its write side) one after another, `gap` apart, the first `gap`
/// from now; then keeps them open until the receiver closed each.
fn close_slowly(socks: Vec<TcpStream>, gap: Duration) {
    for s in &socks {
        std::thread::sleep(gap);
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    for mut s in socks {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut rest = Vec::new();
        assert_eq!(s.read_to_end(&mut rest).unwrap(), 0);
    }
}

/// A sender that closes its 3 streams one by one, 1 s apart (each close within recv's
/// `--timeout 2` of the last, all three 3 s after the data): striped `recv --arrays 1` and
/// raw `recv --raw --streams 3` take the array, exit 0 with nothing on stderr (no note that
/// the peer did not close). The shared bound restarts when a stream's end arrives: cut at 2 s
/// from the data, the third stream's end (3 s) was noted as never come.
#[test]
fn recv_waits_for_a_sender_closing_stream_by_stream() {
    let gap = Duration::from_secs(1);
    for b in backends() {
        let common = ["--listen", "127.0.0.1:0", "--timeout", "2", "--backend", b];
        let (k, err, addr) = spawn_recv(&[&common[..], &["--arrays", "1", "--json"]].concat(), 1);
        close_slowly(send_arange_striped(&addr, true), gap);
        let (rc, out, rest) = finish_recv(k, err);
        assert_eq!((rc, rest.as_str()), (0, ""), "{b}, striped: {out}");
        assert_striped_line(&out, b);

        let (k, err, addr) = spawn_recv(&[&common[..], &RAW_3[..], &["--json"]].concat(), 1);
        close_slowly(send_arange_striped(&addr, false), gap);
        let (rc, out, rest) = finish_recv(k, err);
        assert_eq!((rc, rest.as_str()), (0, ""), "{b}, raw: {out}");
        let line = json(out.lines().next().unwrap());
        assert_eq!(
            (
                &line["bytes"],
                &line["streams"],
                &line["verified"],
                &line["crc32"]
            ),
            (
                &Value::from(20_000),
                &Value::from(3),
                &Value::from(true),
                &Value::from(arange_crc())
            ),
            "{b}, raw: {out}"
        );
    }
}

/// Closes `socks` in stream order as a graceful sender does (shut the write side, read to the
/// peer's close): what each read ended with, `Ok(bytes)` or the error kind.
fn close_in_order(socks: Vec<TcpStream>) -> Vec<Result<usize, std::io::ErrorKind>> {
    socks
        .into_iter()
        .map(|mut s| {
            s.shutdown(std::net::Shutdown::Write).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).map_err(|e| e.kind())
        })
        .collect()
}

/// A sender that writes 5 bytes more on stream 2 after its stripe, then closes every stream
/// in order: striped `recv --arrays 1` and raw `recv --raw --streams 3` exit 1 naming them,
/// and stream 2 closes with a reset (streams 0 and 1, checked first, close plainly). Before,
/// stream 2 closed plainly too, and a sender closing gracefully took it for delivery.
#[test]
fn recv_resets_a_stream_with_extra_bytes() {
    for b in backends() {
        for striped in [true, false] {
            let what = format!("{b}, {}", if striped { "striped" } else { "raw" });
            let common = ["--listen", "127.0.0.1:0", "--timeout", "10", "--backend", b];
            let flags: &[&str] = if striped { &["--arrays", "1"] } else { &RAW_3 };
            let (k, err, addr) = spawn_recv(&[&common[..], flags].concat(), 1);
            let mut socks = send_arange_striped(&addr, striped);
            socks[2].write_all(b"extra").unwrap();
            let peer = socks[2].local_addr().unwrap().to_string();
            let ends = close_in_order(socks);
            let (rc, _, rest) = finish_recv(k, err);
            assert_eq!(
                ends,
                [Ok(0), Ok(0), Err(std::io::ErrorKind::ConnectionReset)],
                "{what}"
            );
            assert_eq!(
                (rc, rest.lines().last().unwrap_or_default()),
                (
                    1,
                    format!(
                        "ringxfer recv: stream 2 ({peer}): 5 extra bytes after stream 2's \
                         stripe (from {peer})"
                    )
                    .as_str()
                ),
                "{what}: {rest}"
            );
        }
    }
}
