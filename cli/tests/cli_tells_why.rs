//! A receiver that does not take an array tells the sender why, and the sender fails with that
//! reason: real `ringxfer serve` / `recv` / `send` processes over loopback TCP, one connection
//! and striped, on both backends.
//!
//! * `serve` writes `ringxfer serve: array N: ERROR` (the error of its own line) and resets
//!   the connection; `recv` writes its own error line `ringxfer recv: …` and resets. The
//!   sender prints that line in its error, exit 1, whether it was still sending (a payload
//!   over `--max-payload`: its send broke) or had sent everything and was closing (a small
//!   array, or one whose dtype recv did not expect: before, its graceful close saw a plain
//!   close and it reported a delivery nobody took, exit 0).
//! * A hand-written client whose message fails the CRC-32 check reads exactly that line, then
//!   a reset, not an end of stream.

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use ringxfer::{Header, Order};
use util::bin::{backends, finish_recv, json, run, spawn_recv, spawn_serve};

/// `ringxfer send --connect ADDR --dtype f8 --count COUNT --streams STREAMS --timeout 10
/// --backend B`: `(exit code, stdout, stderr)`.
fn send_f8(addr: &str, count: &str, streams: &str, b: &str) -> (i32, String, String) {
    run(&[
        "send",
        "--connect",
        addr,
        "--dtype",
        "f8",
        "--count",
        count,
        "--streams",
        streams,
        "--timeout",
        "10",
        "--backend",
        b,
    ])
}

/// `serve --max-payload 20000`: an array of 30,000 bytes (fits in the socket buffers: the
/// sender is closing when the reset comes) and one of 8,000,000 bytes (the sender is still
/// sending), over 1 stream and over 3.
#[test]
fn serve_tells_the_sender_why_an_array_was_not_taken() {
    for b in backends() {
        let (_serve, lines, addr) =
            spawn_serve(&["--json", "--max-payload", "20000", "--backend", b]);
        let addr = addr.to_string();
        for (count, bytes) in [("3750", 30_000), ("1000000", 8_000_000)] {
            for streams in ["1", "3"] {
                let what = format!("{b}, {bytes} bytes, {streams} stream(s)");
                let (code, out, err) = send_f8(&addr, count, streams, b);
                let line = json(&lines.take(1, Duration::from_secs(20))[0]);
                assert_eq!(line["kind"], "too_large", "{what}: {line}");
                let error = line["error"].as_str().unwrap();
                assert!(
                    error.ends_with(&format!(
                        "framed message rejected: payload of {bytes} bytes exceeds the limit \
                         of 20000 bytes"
                    )),
                    "{what}: {error}"
                );
                assert_eq!((code, out.as_str()), (1, ""), "{what}: {err}");
                let said = format!("ringxfer serve: array 1: {error}");
                assert!(
                    err.starts_with("ringxfer send: ") && err.contains(&said),
                    "{what}: the sender's error lacks the server's line {said:?}: {err}"
                );
            }
        }
        assert_eq!(
            lines.drain_for(Duration::from_millis(200)),
            Vec::<String>::new()
        );
    }
}

/// A framed message with a wrong CRC-32 trailer, written by hand, then the write side shut:
/// the client reads `ringxfer serve: array 1: ERROR` (the server line's own error) and then a
/// reset. Before, it read a plain end of stream, which a graceful close takes for delivery.
#[test]
fn serve_failing_a_checksum_says_so_and_resets() {
    let header = Header::new("<f8".parse().unwrap(), &[1000], Order::C).unwrap();
    let mut msg = header.encode();
    msg.extend_from_slice(&[7u8; 8000]);
    msg.extend_from_slice(&[0, 0, 0, 0]);
    msg.extend_from_slice(b"RGXE");
    for b in backends() {
        let (_serve, lines, addr) = spawn_serve(&["--json", "--backend", b]);
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(&msg).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        let end = s.read_to_end(&mut got);
        let line = json(&lines.take(1, Duration::from_secs(20))[0]);
        assert_eq!(line["kind"], "payload_checksum", "{b}: {line}");
        assert_eq!(
            String::from_utf8_lossy(&got),
            format!(
                "ringxfer serve: array 1: {}\n",
                line["error"].as_str().unwrap()
            ),
            "{b}"
        );
        assert_eq!(
            end.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::ConnectionReset),
            "{b}: the close after a failed array must be a reset"
        );
    }
}

/// `recv --dtype f4` given `<f8` (checked after the array arrived: the sender has sent
/// everything and is closing), and `recv --max-payload 20000` given 8,000,000 bytes (the
/// sender is still sending), over 1 stream and over 2: both exit 1, and the sender's error
/// carries recv's own last line.
#[test]
fn recv_tells_the_sender_why() {
    for b in backends() {
        for (recv_flag, value, count) in [
            ("--dtype", "f4", "1000"),
            ("--max-payload", "20000", "1000000"),
        ] {
            for streams in ["1", "2"] {
                let what = format!("{b}, recv {recv_flag} {value}, {streams} stream(s)");
                let (recv, err_lines, addr) = spawn_recv(
                    &[
                        "--listen",
                        "127.0.0.1:0",
                        recv_flag,
                        value,
                        "--timeout",
                        "10",
                        "--backend",
                        b,
                    ],
                    1,
                );
                let (code, out, err) = send_f8(&addr, count, streams, b);
                let (rc, _, rest) = finish_recv(recv, err_lines);
                assert_eq!(rc, 1, "{what}: {rest}");
                let said = rest.lines().last().unwrap_or_default();
                assert!(said.starts_with("ringxfer recv: array 1"), "{what}: {rest}");
                assert_eq!((code, out.as_str()), (1, ""), "{what}: {err}");
                assert!(
                    err.starts_with("ringxfer send: ") && err.contains(said),
                    "{what}: the sender's error lacks recv's line {said:?}: {err}"
                );
            }
        }
    }
}

/// `recv --out F` where F appears after recv started (it was free at start-up, so the array is
/// received, then cannot take its name): before, one stream committed after the sender's
/// close had completed and striped closed every stream before the commit, so the sender
/// exited 0 for a file nobody kept. One stream: the rename's own error; striped: the same
/// check made before the streams close. Either way the sender fails with recv's line, the
/// file that was there is untouched and no `.part` file is left.
#[test]
fn recv_out_whose_name_was_taken_tells_the_sender() {
    let dir = util::tmpdir("tells_why", "out_taken");
    for b in backends() {
        for streams in ["1", "2"] {
            let what = format!("{b}, {streams} stream(s)");
            let out = dir.join(format!("{b}-{streams}.npy"));
            let out_s = out.to_str().unwrap();
            let (recv, err_lines, addr) = spawn_recv(
                &[
                    "--listen",
                    "127.0.0.1:0",
                    "--out",
                    out_s,
                    "--timeout",
                    "10",
                    "--backend",
                    b,
                ],
                1,
            );
            std::fs::write(&out, b"mine").unwrap();
            let (code, stdout, err) = send_f8(&addr, "1000", streams, b);
            let (rc, recv_out, rest) = finish_recv(recv, err_lines);
            let said = if streams == "1" {
                format!(
                    "ringxfer recv: {out_s}: cannot rename the received file into place: File \
                     exists (os error 17)"
                )
            } else {
                format!(
                    "ringxfer recv: --out {out_s}: the file exists (ringxfer never overwrites: \
                     remove it or choose another name)"
                )
            };
            assert_eq!(
                (rc, recv_out.as_str(), rest.as_str()),
                (1, "", said.as_str()),
                "{what}"
            );
            assert_eq!((code, stdout.as_str()), (1, ""), "{what}: {err}");
            assert!(
                err.starts_with("ringxfer send: ") && err.contains(&format!("{said} (")),
                "{what}: the sender's error lacks recv's line {said:?}: {err}"
            );
            assert_eq!(std::fs::read(&out).unwrap(), b"mine", "{what}");
        }
    }
    let mut left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    let mut want: Vec<String> = backends()
        .iter()
        .flat_map(|b| [format!("{b}-1.npy"), format!("{b}-2.npy")])
        .collect();
    want.sort();
    assert_eq!(left, want);
}

/// `send --raw` of one byte over a Unix socket, to `recv` and to `serve` (both framed): the
/// receiver rejects it, says why and closes, and over a Unix socket that close is a plain one
/// (no reset), the byte read, nothing left unread. Before, raw send looked at the receiver's
/// line only when its close failed, and exited 0 here with its report, the receiver 1.
#[test]
fn raw_sender_over_unix_fails_with_the_receivers_line() {
    let dir = util::tmpdir("tells_why", "raw_unix");
    for b in backends() {
        for receiver in ["recv", "serve"] {
            let what = format!("{b}, {receiver}");
            let path = dir.join(format!("{b}-{receiver}.sock"));
            let addr = format!("unix:{}", path.display());
            let (k, err_lines) = util::bin::spawn_unix(
                &[
                    receiver,
                    "--listen",
                    &addr,
                    "--timeout",
                    "10",
                    "--backend",
                    b,
                ],
                &path,
            );
            let (code, out, err) = run(&[
                "send",
                "--raw",
                "--dtype",
                "u1",
                "--count",
                "1",
                "--connect",
                &addr,
                "--timeout",
                "10",
                "--backend",
                b,
            ]);
            let said = if receiver == "recv" {
                let (rc, _, rest) = finish_recv(k, err_lines);
                let said = "ringxfer recv: array 1: framed message rejected: bad magic b\"\\x00\" \
                            (expected b\"RGXF\"): the peer sent no RGXF or .npy header: did it \
                            use --raw?";
                assert_eq!((rc, rest.as_str()), (1, said), "{what}");
                said
            } else {
                drop((k, err_lines));
                "ringxfer serve: array 1: peer closed the connection after 1 of 32 bytes"
            };
            assert_eq!(
                (code, out.as_str(), err.as_str()),
                (1, "", format!("ringxfer send: {said}\n").as_str()),
                "{what}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
