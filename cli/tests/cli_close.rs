//! The CLI's end of a connection (issue 8, items 1, 8 and 10; case C16): `ringxfer send`
//! closes gracefully and says when delivery is not confirmed, `ringxfer recv` reports bytes
//! after the expected data, error counts under `-i` are of the whole array, and
//! `send --get-server-output` says it timed out. Real `ringxfer` processes against peers
//! written here, over loopback TCP; the send tests run on both backends.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use util::bin::{backends, finish_recv, run, spawn_listening, spawn_recv};
use util::{GREETING, arange_u1, slow_greeting_reader, small_rcvbuf_listener, small_rcvbuf_socket};

/// The array: 20,000,000 `u1` bytes.
const N: usize = 20_000_000;
/// C16 / issue 8 item 1, exactly as reported: `send --connect … --raw --dtype u1 --size
/// 20000000` to a slow listener that greets first. The listener gets every byte and the
/// sender exits 0 (before: exit 0, the listener got ~17 MB, then ECONNRESET).
#[test]
fn c16_raw_send_connect_delivers_every_byte() {
    for b in backends() {
        let (l, addr) = small_rcvbuf_listener();
        let addr = addr.to_string();
        let peer = thread::spawn(move || slow_greeting_reader(l.accept().unwrap().0));
        let (code, out, err) = run(&[
            "send",
            "--connect",
            &addr,
            "--raw",
            "--dtype",
            "u1",
            "--size",
            "20000000",
            "--backend",
            b,
            "--json",
        ]);
        let got = peer.join().unwrap();
        let got = got.unwrap_or_else(|(n, e)| panic!("{b}: the peer lost bytes: {n} then {e}"));
        util::assert_bytes_eq(&got, &arange_u1(N), b);
        assert_eq!(code, 0, "{b}: {out}\n{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["peer_bytes_discarded"], GREETING, "{b}: {out}");
    }
}

/// The same with framed mode and `send --listen`: the slow peer connects, greets, reads
/// header + 20,000,000 payload bytes + trailer.
#[test]
fn c16_framed_send_listen_delivers_every_byte() {
    for b in backends() {
        let (child, lines, addr) = spawn_listening(
            "send",
            &[
                "--listen",
                "127.0.0.1:0",
                "--dtype",
                "u1",
                "--size",
                "20000000",
                "--backend",
                b,
            ],
            1,
        );
        let s = small_rcvbuf_socket();
        s.connect(&addr.parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let got = slow_greeting_reader(s.into());
        let (code, _, err) = finish_recv(child, lines);
        let got = got.unwrap_or_else(|(n, e)| panic!("{b}: the peer lost bytes: {n} then {e}"));
        // 1-D header (48) + payload + trailer (8), the payload the u1 arange.
        assert_eq!(got.len(), 48 + N + 8, "{b}");
        util::assert_bytes_eq(&got[48..48 + N], &arange_u1(N), b);
        assert_eq!(&got[48 + N + 4..], b"RGXE");
        assert_eq!(code, 0, "{b}: {err}");
    }
}

/// A peer that reads everything, then resets instead of closing: the sender cannot confirm
/// delivery and exits 1 saying so (before: exit 0).
#[test]
fn send_reports_a_peer_reset_as_unconfirmed() {
    for b in backends() {
        let (l, addr) = small_rcvbuf_listener();
        let addr = addr.to_string();
        let peer = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(&[7u8; GREETING]).unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            util::reset(s);
            got.len()
        });
        let (code, out, err) = run(&[
            "send",
            "--connect",
            &addr,
            "--raw",
            "--dtype",
            "u1",
            "--size",
            "100000",
            "--backend",
            b,
        ]);
        assert_eq!(peer.join().unwrap(), 100_000);
        assert_eq!(code, 1, "{b}: {out}\n{err}");
        assert!(
            err.contains(&format!(
                "ringxfer send: delivery not confirmed: the peer reset the connection instead \
                 of closing it ({GREETING} bytes read from it first); bytes the peer had not \
                 read are lost"
            )),
            "{b}: {err}"
        );
    }
}

/// A peer on `l` that reads everything and does not close until told (or 30 s pass): the
/// sender to tell it, and the thread, which returns the count of bytes it read.
fn silent_reader(l: TcpListener) -> (mpsc::Sender<()>, thread::JoinHandle<usize>) {
    let (tx, rx) = mpsc::channel::<()>();
    let peer = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        let _ = rx.recv_timeout(Duration::from_secs(30));
        got.len()
    });
    (tx, peer)
}

/// A peer that reads everything and never closes: the sender gives up at `--timeout` and
/// exits 1 (before: exit 0 at once).
#[test]
fn send_reports_a_peer_that_never_closes() {
    for b in backends() {
        let (l, addr) = small_rcvbuf_listener();
        let addr = addr.to_string();
        let (tx, peer) = silent_reader(l);
        let (code, out, err) = run(&[
            "send",
            "--connect",
            &addr,
            "--raw",
            "--dtype",
            "u1",
            "--size",
            "1000",
            "--timeout",
            "1",
            "--backend",
            b,
        ]);
        tx.send(()).unwrap();
        assert_eq!(peer.join().unwrap(), 1000);
        assert_eq!(code, 1, "{b}: {out}\n{err}");
        assert!(
            err.contains(
                "ringxfer send: delivery not confirmed: timed out after 1 s waiting for the \
                 peer to close the connection (0 bytes read from it meanwhile)"
            ),
            "{b}: {err}"
        );
    }
}

/// Issue 8 item 10: `--get-server-output` against a server that reads but never answers
/// says it timed out and after how long (before: "Resource temporarily unavailable (os
/// error 11)").
#[test]
fn get_server_output_from_a_silent_server_times_out() {
    let (l, addr) = small_rcvbuf_listener();
    let addr = addr.to_string();
    let (tx, peer) = silent_reader(l);
    let (code, out, err) = run(&[
        "send",
        "--connect",
        &addr,
        "--count",
        "100",
        "--get-server-output",
        "--timeout",
        "1",
    ]);
    tx.send(()).unwrap();
    assert_eq!(peer.join().unwrap(), 48 + 800 + 8);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains(
            "ringxfer send: --get-server-output: timed out after 1 s waiting for the server's \
             lines and its close (0 bytes received); delivery not confirmed"
        ),
        "{err}"
    );
}

/// Starts `ringxfer recv --listen 127.0.0.1:0 ARGS`, connects, runs `peer` on the
/// connection, and returns recv's `(exit code, stdout, stderr)`.
fn recv_with_peer(args: &[&str], peer: impl FnOnce(TcpStream)) -> (i32, String, String) {
    let mut a = vec!["--listen", "127.0.0.1:0"];
    a.extend_from_slice(args);
    let (child, lines, addr) = spawn_recv(&a, 1);
    peer(TcpStream::connect(addr).unwrap());
    finish_recv(child, lines)
}

/// Issue 8 item 8: raw `recv --count 1000` given 1,500 bytes exits 1 naming the 500 extra
/// bytes (before: exit 0, "verified"); given exactly 1,000 it exits 0.
#[test]
fn raw_recv_reports_extra_bytes() {
    for (sent, code, msg) in [
        (
            1500,
            1,
            Some("ringxfer recv: 500 extra bytes after the 1000 bytes expected"),
        ),
        (1000, 0, None),
    ] {
        let (c, o, e) = recv_with_peer(
            &[
                "--raw",
                "--dtype",
                "u1",
                "--count",
                "1000",
                "--timeout",
                "10",
            ],
            |mut s| s.write_all(&arange_u1(sent)).unwrap(),
        );
        assert_eq!(c, code, "{sent}: {o}\n{e}");
        assert!(o.contains("arange pattern verified"), "{o}");
        if let Some(m) = msg {
            assert!(e.contains(m), "{sent}: {e}");
        }
    }
}

/// Issue 8 item 8: framed `recv --arrays 1` given two arrays exits 1 naming the second
/// message's 856 bytes (48 header + 800 payload + 8 trailer), with an `extra_bytes` line.
#[test]
fn framed_recv_reports_a_second_array() {
    let (c, o, e) = recv_with_peer(&["--arrays", "1", "--json", "--timeout", "10"], |s| {
        let mut eng = ringxfer::Engine::new(ringxfer::Backend::Blocking).unwrap();
        let data: Vec<f64> = (0..100).map(f64::from).collect();
        for _ in 0..2 {
            eng.send_array(&s, &data, &[100], ringxfer::Order::C)
                .unwrap();
        }
    });
    assert_eq!(c, 1, "{o}\n{e}");
    let last: serde_json::Value = serde_json::from_str(o.lines().last().unwrap()).unwrap();
    assert_eq!(last["kind"], "extra_bytes", "{o}");
    assert_eq!(last["array"], 2, "{o}");
    assert!(
        e.contains("ringxfer recv: 856 extra bytes after array 1 of 1 (--arrays 1)"),
        "{e}"
    );
}

/// Issue 8 item 10: with `-i` the raw array moves in 64 MiB calls; an error names bytes of
/// the whole array (70,000,000 of 100,000,000), not of the chunk (2,891,136 of 32,891,136).
#[test]
fn interval_error_counts_are_of_the_whole_array() {
    for b in backends() {
        let (c, o, e) = recv_with_peer(
            &[
                "--raw",
                "--dtype",
                "u1",
                "--size",
                "100000000",
                "-i",
                "5",
                "--backend",
                b,
            ],
            |mut s| {
                let chunk = arange_u1(1 << 20);
                let mut left = 70_000_000usize;
                while left > 0 {
                    let n = left.min(chunk.len());
                    s.write_all(&chunk[..n]).unwrap();
                    left -= n;
                }
            },
        );
        assert_eq!(c, 1, "{b}: {o}\n{e}");
        assert!(
            e.contains("peer closed the connection after 70000000 of 100000000 bytes"),
            "{b}: {e}"
        );
    }
}
