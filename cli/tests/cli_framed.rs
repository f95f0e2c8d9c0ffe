//! The framed CLI as a user runs it: the built `ringxfer` binary as a child process
//! (`ringxfer serve`, framed `send` and `recv`), its stdout read line by line.
//!
//! The clients are the library (`Engine::send_array_bytes`), the binary itself, and hostile
//! peers writing garbage with plain `std` writes.

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use ringxfer::dtype::{DType, fill_arange};
use ringxfer::{Backend, Engine, Order};
use serde_json::Value;
use util::bin::{BIN, assert_arange_line, spawn_serve, transfer};

fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object: {line:?}: {e}"))
}

/// The arange payload of `count` elements of `dtype`.
fn arange(dtype: DType, count: u64) -> Vec<u8> {
    let mut b = vec![0u8; count as usize * dtype.itemsize()];
    fill_arange(dtype, &mut b);
    b
}

/// What good client `i` sends: three arrays of its own dtype, shape and order.
fn client_arrays(i: usize) -> Vec<(DType, Vec<u64>, Order)> {
    let dtypes = ["<f8", "<f4", ">i4", "|u1", "<i8", ">f8", "<u2", "<i2"];
    let d: DType = dtypes[i % dtypes.len()].parse().unwrap();
    vec![
        (d, vec![20, 10, 5], Order::F),
        (d, if i % 2 == 0 { vec![] } else { vec![0] }, Order::C),
        (d, vec![1 << 16, 4], Order::C),
    ]
}

/// 8 concurrent good clients (3 framed arrays each, through the library) and 2 garbage
/// clients (random bytes; one closing mid-header): 24 verified arrays and 2 error lines, and
/// the server still serves a client that comes afterwards.
#[test]
fn serve_many_clients_and_garbage() {
    let (_server, lines, addr) = spawn_serve(&["--json", "--timeout", "20"]);
    let start = Arc::new(Barrier::new(10));
    let mut good = Vec::new();
    for i in 0..8 {
        let start = Arc::clone(&start);
        good.push(thread::spawn(move || {
            let sock = TcpStream::connect(addr).expect("connect");
            let me = sock.local_addr().unwrap().to_string();
            let mut e = Engine::new(Backend::Auto).unwrap();
            start.wait();
            for (d, shape, order) in client_arrays(i) {
                let n = shape.iter().product::<u64>();
                e.send_array_bytes(&sock, d, &arange(d, n), &shape, order)
                    .expect("send_array_bytes");
            }
            (me, i)
        }));
    }
    // Random bytes (the first is not 'R', so the magic is wrong) and a client that closes
    // after 20 bytes of a valid-looking prefix.
    let mut garbage = Vec::new();
    for g in 0..2 {
        let start = Arc::clone(&start);
        garbage.push(thread::spawn(move || {
            let mut sock = TcpStream::connect(addr).expect("connect");
            let me = sock.local_addr().unwrap().to_string();
            let mut bytes = vec![0u8; 4096];
            let mut s = 0x9e37_79b9_7f4a_7c15u64 ^ g;
            for b in bytes.iter_mut() {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                *b = s as u8;
            }
            bytes[0] = b'X';
            if g == 1 {
                bytes.truncate(20);
                bytes[..4].copy_from_slice(b"RGXF");
            }
            start.wait();
            // The server may close first (bad magic after 32 bytes): a failed write is fine.
            let _ = sock.write_all(&bytes);
            let _ = sock.shutdown(Shutdown::Write);
            // Wait for the server to close its side before dropping ours.
            let _ = sock.read(&mut [0u8; 1]);
            (me, g)
        }));
    }
    let good: Vec<(String, usize)> = good.into_iter().map(|h| h.join().unwrap()).collect();
    let garbage: Vec<(String, u64)> = garbage.into_iter().map(|h| h.join().unwrap()).collect();

    let got: Vec<Value> = lines
        .take(26, Duration::from_secs(60))
        .iter()
        .map(|l| json(l))
        .collect();
    let (arrays, errors): (Vec<&Value>, Vec<&Value>) =
        got.iter().partition(|v| v.get("error").is_none());
    assert_eq!((arrays.len(), errors.len()), (24, 2), "{got:#?}");
    for (peer, i) in &good {
        let mine: Vec<&&Value> = arrays.iter().filter(|v| v["peer"] == *peer).collect();
        assert_eq!(mine.len(), 3, "client {i} ({peer}): {mine:#?}");
        for (k, (d, shape, order)) in client_arrays(*i).into_iter().enumerate() {
            let v = mine
                .iter()
                .find(|v| v["array"] == k as u64 + 1)
                .unwrap_or_else(|| panic!("client {i}: no array {}", k + 1));
            assert_arange_line(v, d, &shape, order);
            assert!(v["seconds"].as_f64().unwrap() >= 0.0, "{v}");
            assert!(v["gbytes_per_s"].as_f64().is_some(), "{v}");
        }
    }
    for (peer, g) in &garbage {
        let e = errors
            .iter()
            .find(|v| v["peer"] == *peer)
            .unwrap_or_else(|| panic!("no error line for garbage client {g}: {errors:#?}"));
        assert_eq!(e["array"], 1, "{e}");
        assert!(e["error"].as_str().is_some_and(|s| !s.is_empty()), "{e}");
        if *g == 0 {
            assert_eq!(e["kind"], "bad_magic", "{e}");
        } else {
            assert_eq!(e["kind"], "unexpected_eof", "{e}");
            assert_eq!(
                (&e["transferred"], &e["expected"]),
                (&20.into(), &32.into())
            );
        }
    }

    // Still serving.
    let sock = TcpStream::connect(addr).expect("connect after the garbage");
    let d: DType = "<f8".parse().unwrap();
    Engine::new(Backend::Auto)
        .unwrap()
        .send_array_bytes(&sock, d, &arange(d, 1000), &[10, 100], Order::C)
        .unwrap();
    let v = json(&lines.take(1, Duration::from_secs(10))[0]);
    assert_eq!(
        (&v["peer"], &v["shape"], &v["verified"], &v["arange"]),
        (
            &sock.local_addr().unwrap().to_string().into(),
            &serde_json::json!([10, 100]),
            &true.into(),
            &true.into()
        )
    );
}

/// `--max-clients 1` with eviction off: a second client waits (in serve's queue, up to 2 s)
/// while the first holds the only slot; `--timeout 1` closes the silent first one with a
/// `timed_out` line, and then the second is served.
#[test]
fn serve_max_clients_and_idle_timeout() {
    let (_server, lines, addr) = spawn_serve(&[
        "--json",
        "--max-clients",
        "1",
        "--timeout",
        "1",
        "--evict-idle",
        "0",
    ]);
    // The silent client's 1 s starts once serve took it, after its connect: measured from
    // before the connect (measured from after the other client's send, the bound depended on
    // how long that send took on a loaded machine).
    let t0 = Instant::now();
    let silent = TcpStream::connect(addr).unwrap();
    thread::sleep(Duration::from_millis(100));
    let waiting = TcpStream::connect(addr).unwrap(); // completes from the backlog
    let d: DType = "<i4".parse().unwrap();
    Engine::new(Backend::Auto)
        .unwrap()
        .send_array_bytes(&waiting, d, &arange(d, 100), &[100], Order::C)
        .unwrap();
    let first = json(&lines.take(1, Duration::from_secs(10))[0]);
    assert_eq!(first["peer"], silent.local_addr().unwrap().to_string());
    assert_eq!(first["kind"], "timed_out", "{first}");
    assert!(
        t0.elapsed() >= Duration::from_millis(950),
        "the 1 s timeout came after {:?}",
        t0.elapsed()
    );
    let second = json(&lines.take(1, Duration::from_secs(10))[0]);
    assert_eq!(second["peer"], waiting.local_addr().unwrap().to_string());
    assert_eq!(
        (&second["verified"], &second["arange"]),
        (&true.into(), &true.into())
    );
}

/// `ringxfer send` (framed: big-endian dtype, 3-D Fortran order, 3 arrays; and a 0-d array)
/// into `ringxfer serve` in text mode.
#[test]
fn send_binary_into_serve_text_mode() {
    let (_server, lines, addr) = spawn_serve(&[]);
    let out = Command::new(BIN)
        .args(["send", "--connect", &addr.to_string(), "--json"])
        .args([
            "--dtype", ">i4", "--shape", "20,10,5", "--order", "F", "--arrays", "3",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let r = json(String::from_utf8_lossy(&out.stdout).trim());
    let d: DType = ">i4".parse().unwrap();
    let crc = format!("{:08x}", crc32fast::hash(&arange(d, 1000)));
    assert_eq!(
        (
            &r["dtype"],
            &r["shape"],
            &r["order"],
            &r["arrays"],
            &r["bytes"]
        ),
        (
            &">i4".into(),
            &serde_json::json!([20, 10, 5]),
            &"F".into(),
            &3.into(),
            &12000.into()
        )
    );
    assert_eq!(r["crc32"], crc);
    for (k, l) in lines.take(3, Duration::from_secs(10)).iter().enumerate() {
        assert!(
            l.contains(&format!(
                "array {}: >i4 (20, 10, 5) order F, 4000 bytes",
                k + 1
            )) && l.contains(&format!("crc32 {crc} verified"))
                && l.contains("arange pattern ok"),
            "{l}"
        );
    }
    let out = Command::new(BIN)
        .args([
            "send",
            "--connect",
            &addr.to_string(),
            "--dtype",
            "f8",
            "--shape",
            "",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let l = &lines.take(1, Duration::from_secs(10))[0];
    assert!(l.contains("<f8 () order C, 8 bytes"), "{l}");
}

/// Runs `ringxfer recv --listen 127.0.0.1:0 RECV_ARGS` and `ringxfer send --connect
/// SEND_ARGS` against it; returns recv's exit success, stdout lines and stderr.
fn recv_send(recv_args: &[&str], send_args: &[&str]) -> (bool, Vec<String>, String) {
    let recv = [&["--listen", "127.0.0.1:0"][..], recv_args].concat();
    // The sender's own result does not matter here: recv may close first on purpose.
    let (_send, (code, out, err)) = transfer(&recv, 1, send_args);
    (code == 0, out.lines().map(str::to_owned).collect(), err)
}

/// Framed `recv` gets dtype and shape from the header, checks the arange pattern, and checks
/// the expectations it was given.
#[test]
fn recv_binary_framed() {
    let (ok, lines, err) = recv_send(
        &["--arrays", "2", "--json"],
        &["--dtype", "u2", "--shape", "3,0,2", "--arrays", "2"],
    );
    assert!(ok, "{err}");
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (k, l) in lines.iter().enumerate() {
        let v = json(l);
        assert_eq!(
            (
                &v["array"],
                &v["dtype"],
                &v["shape"],
                &v["bytes"],
                &v["arange"]
            ),
            (
                &(k as u64 + 1).into(),
                &"<u2".into(),
                &serde_json::json!([3, 0, 2]),
                &0.into(),
                &true.into()
            )
        );
    }
    let (ok, lines, err) = recv_send(&["--dtype", "f4"], &["--dtype", "f8", "--count", "10"]);
    assert!(!ok, "a dtype other than --dtype must fail: {lines:?}");
    assert!(err.contains("dtype <f8 (expected <f4)"), "{err}");
    let (ok, _, err) = recv_send(&["--arrays", "3"], &["--count", "10", "--arrays", "2"]);
    assert!(!ok);
    assert!(err.contains("after 2 of 3 array(s)"), "{err}");
}

/// Flags of the other mode are usage errors (exit status 2), and raw mode keeps its
/// interface.
#[test]
fn mode_flags() {
    for args in [
        &["send", "--connect", "127.0.0.1:1", "--raw", "--shape", "3"][..],
        &["send", "--connect", "127.0.0.1:1", "--raw", "--arrays", "2"],
        &["send", "--connect", "127.0.0.1:1", "--registered"],
        &[
            "send",
            "--connect",
            "127.0.0.1:1",
            "--shape",
            "3",
            "--count",
            "3",
        ],
        &["send", "--connect", "127.0.0.1:1", "--shape", "3,x"],
        &["send", "--connect", "127.0.0.1:1", "--order", "K"],
        &[
            "recv",
            "--connect",
            "127.0.0.1:1",
            "--raw",
            "--max-payload",
            "1MB",
        ],
        &["serve", "--listen", "127.0.0.1:0", "--max-clients", "0"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
}
