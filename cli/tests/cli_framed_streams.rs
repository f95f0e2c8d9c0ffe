//! Framed `ringxfer send|recv` over several streams (`--streams N`, rails): two real processes
//! over loopback, on both backends. The receiver is given no `--count`, `--dtype` or
//! `--streams`: it learns them from the stripe prefixes and stream 0's header. Byte-exact: the
//! receiver checks the arange pattern (or writes `--out`, compared with the source file) and
//! both print the CRC-32. Also the failures: a sender that opens fewer streams than its prefix
//! says, a stream that goes silent, and the usage errors; and `ringxfer serve` taking striped
//! arrays, refusing hostile stripe prefixes and dropping groups that never fill.

mod util;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ringxfer::dtype::DType;
use ringxfer::{Order, StripePrefix};
use serde_json::Value;
use util::bin::{
    assert_two_rails_of_two, backends, finish_recv, json, peers, run, spawn_recv, spawn_serve,
    transfer,
};

/// A framed pair: `recv --json --listen LISTEN RECV...` and `send --json SEND...`; both must
/// succeed. The sender's report and the receiver's lines.
fn framed(listen: &str, rails: usize, recv: &[&str], send: &[&str]) -> (Value, Vec<Value>) {
    let mut rargs = vec!["--json", "--listen", listen];
    rargs.extend_from_slice(recv);
    let mut sargs = vec!["--json"];
    sargs.extend_from_slice(send);
    let ((sc, so, se), (rc, ro, re)) = transfer(&rargs, rails, &sargs);
    assert_eq!((sc, rc), (0, 0), "send: {so}{se}\nrecv: {ro}{re}");
    (json(&so), ro.lines().map(json).collect())
}

/// The fields of one received striped array line.
fn check_line(r: &Value, s: &Value, array: u64, streams: usize, what: &str) {
    assert_eq!(r["array"], array, "{what}: {r}");
    assert_eq!(r["streams"], streams, "{what}: {r}");
    assert_eq!(r["peers"].as_array().unwrap().len(), streams, "{what}: {r}");
    assert_eq!(r["peer"], r["peers"][0], "{what}: {r}");
    assert_eq!(r["format"], "rgxf");
    assert_eq!(r["verified"], true, "{what}: {r}");
    assert_eq!(r["bytes"], s["bytes_per_array"], "{what}");
    assert_eq!(r["crc32"], s["crc32"], "{what}");
    assert_eq!(r["dtype"], s["dtype"], "{what}");
    assert_eq!(r["shape"], s["shape"], "{what}");
    assert_eq!(r["order"], s["order"], "{what}");
}

#[test]
fn streams_4_byte_exact_without_receiver_flags() {
    for b in backends() {
        let (s, lines) = framed(
            "127.0.0.1:0",
            1,
            &["--backend", b],
            &[
                "--streams",
                "4",
                "--dtype",
                "f4",
                "--count",
                "1000003",
                "--backend",
                b,
            ],
        );
        assert_eq!(s["streams"], 4, "{b}: {s}");
        assert_eq!(s["bytes"], 4_000_012);
        assert_eq!(s["peer_bytes_discarded"], 0);
        assert_eq!(s["backend"], b);
        assert_eq!(lines.len(), 1, "{b}: {lines:?}");
        let r = &lines[0];
        check_line(r, &s, 1, 4, b);
        assert_eq!(r["dtype"], "<f4");
        assert_eq!(r["shape"], serde_json::json!([1_000_003]));
        assert_eq!(r["bytes"], 4_000_012);
        assert_eq!(r["arange"], true, "{b}: {r}");
        assert_eq!(r["backend"], b);
    }
}

#[test]
fn streams_2_over_two_loopback_rails() {
    for b in backends() {
        let (s, lines) = framed(
            "127.0.0.1:0,127.0.0.2:0",
            2,
            &["--backend", b],
            &[
                "--streams",
                "2",
                "--dtype",
                "u2",
                "--count",
                "700001",
                "--backend",
                b,
            ],
        );
        assert_eq!(s["streams"], 4, "{b}: {s}");
        assert_two_rails_of_two(&peers(&s));
        assert_eq!(lines.len(), 1, "{b}: {lines:?}");
        check_line(&lines[0], &s, 1, 4, b);
        assert_eq!(lines[0]["bytes"], 1_400_002);
        assert_eq!(lines[0]["arange"], true);
    }
}

#[test]
fn three_arrays_striped_back_to_back() {
    for b in backends() {
        let (s, lines) = framed(
            "127.0.0.1:0",
            1,
            &["--arrays", "3", "--backend", b],
            &[
                "--streams",
                "3",
                "--arrays",
                "3",
                "--dtype",
                ">i8",
                "--shape",
                "20,1000,7",
                "--order",
                "F",
                "--backend",
                b,
            ],
        );
        assert_eq!((&s["arrays"], &s["bytes"]), (&3.into(), &3_360_000.into()));
        assert_eq!(lines.len(), 3, "{b}: {lines:?}");
        for (i, r) in lines.iter().enumerate() {
            check_line(r, &s, i as u64 + 1, 3, b);
            assert_eq!(r["dtype"], ">i8");
            assert_eq!(r["shape"], serde_json::json!([20, 1000, 7]));
            assert_eq!(r["order"], "F");
            assert_eq!(r["arange"], true, "{b}: {r}");
        }
    }
}

#[test]
fn file_striped_to_out_byte_exact() {
    for b in backends() {
        let dir = util::tmpdir("cli_framed_streams", &format!("file-{b}"));
        let dtype: DType = "<f8".parse().unwrap();
        let shape = [300u64, 701];
        let mut bytes = ringxfer::npy::encode_header(dtype, &shape, Order::F);
        let mut payload = vec![0u8; 300 * 701 * 8];
        util::fill_pattern(&mut payload, 9);
        bytes.extend_from_slice(&payload);
        let src = util::write_file(&dir, "x.npy", &bytes);
        let out = dir.join("b.npy").display().to_string();
        let (s, lines) = framed(
            "127.0.0.1:0",
            1,
            &["--out", &out, "--backend", b],
            &["--streams", "3", "--file", &src, "--backend", b],
        );
        assert_eq!(s["file"], src.as_str());
        assert_eq!(lines.len(), 1, "{b}: {lines:?}");
        check_line(&lines[0], &s, 1, 3, b);
        assert_eq!(lines[0]["file"], out.as_str());
        assert_eq!(lines[0]["order"], "F");
        assert_eq!(lines[0]["bytes"], payload.len());
        util::assert_bytes_eq(&std::fs::read(&out).unwrap(), &bytes, b);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// A `|u1` array of 30,000 bytes (`i % 251` at byte `i`) over 3 hand-made streams to `addr`,
/// of which stream `i` sends its first `sent[i]` bytes now (`usize::MAX`: all). The streams
/// (still open), the array's `.npy` header, the payload, and each stream's unsent bytes.
fn three_streams(addr: &str, sent: [usize; 3]) -> (Vec<TcpStream>, Vec<u8>, Vec<u8>, Vec<Vec<u8>>) {
    let len = 30_000usize;
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let dtype: DType = "|u1".parse().unwrap();
    let header = ringxfer::Header::new(dtype, &[len as u64], Order::C).unwrap();
    assert_eq!(
        ringxfer::stripes(len as u64, 3),
        vec![0..12288, 12288..24576, 24576..30000]
    );
    // Connected in stream order: the receiver accepts them in this order.
    let tx: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut rest = Vec::new();
    for (i, s) in tx.iter().enumerate() {
        let mut w = util::striped_wire(&header, &data, (i, 3, 0xf11e));
        rest.push(w.split_off(sent[i].min(w.len())));
        (&*s).write_all(&w).unwrap();
    }
    let head = ringxfer::npy::encode_header(dtype, &[len as u64], Order::C);
    (tx, head, data, rest)
}

/// [`three_streams`] where streams 0 and 2 send everything, stream 1 its prefix and 5,000 of
/// the 12,288 bytes of its stripe.
fn three_streams_stream_1_short(addr: &str) -> (Vec<TcpStream>, Vec<u8>, Vec<u8>, Vec<u8>) {
    let cut = ringxfer::STRIPE_PREFIX_LEN + 5000;
    let (tx, head, data, mut rest) = three_streams(addr, [usize::MAX, cut, usize::MAX]);
    (tx, head, data, rest.swap_remove(1))
}

/// A striped `recv --out --dtype <f4` given a `|u1` array fails on the header, before any
/// payload byte (the streams send only their prefixes and stream 0's header, and stay open),
/// with the mismatch as its message, and leaves no file. (Receiving the array first would
/// wait for the payload until `--timeout` and fail with a timeout instead.)
#[test]
fn striped_out_checks_the_header_before_the_payload() {
    for b in backends() {
        let dir = util::tmpdir("cli_framed_streams", &format!("expect-{b}"));
        let out = dir.join("b.npy");
        let out_s = out.to_str().unwrap();
        let (k, err, addr) = spawn_recv(
            &[
                "--listen",
                "127.0.0.1:0",
                "--out",
                out_s,
                "--dtype",
                "f4",
                "--timeout",
                "5",
                "--backend",
                b,
            ],
            1,
        );
        let p = ringxfer::STRIPE_PREFIX_LEN;
        let header_len = ringxfer::Header::new("|u1".parse().unwrap(), &[30_000], Order::C)
            .unwrap()
            .encode()
            .len();
        let (tx, ..) = three_streams(&addr, [p + header_len, p, p]);
        let (code, so, se) = finish_recv(k, err);
        assert_eq!(code, 1, "{b}: {so}{se}");
        assert_eq!(
            se.trim_end(),
            "ringxfer recv: array 1 of 1: dtype |u1 (expected <f4)",
            "{b}"
        );
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "{b}");
        drop(tx);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Waits (at most 20 s) for a temporary `.part` file in `dir` that is already `len` bytes
/// long and holds each `(offset, bytes)` of `want`: the stripes received so far, at their
/// places in the file. A receive into memory followed by a copy into the file creates the
/// file only once the whole array has arrived, so it never shows this while a stripe is
/// still incomplete.
fn part_file_showing(dir: &std::path::Path, len: usize, want: &[(usize, &[u8])]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline {
        seen = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        for p in &seen {
            let name = p.file_name().unwrap().to_string_lossy();
            if !(name.starts_with('.') && name.ends_with(".part")) {
                continue;
            }
            let Ok(b) = std::fs::read(p) else { continue };
            if b.len() == len && want.iter().all(|&(at, w)| &b[at..at + w.len()] == w) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no .part file of {len} bytes holding the stripes received so far in {dir:?}: {seen:?}");
}

/// A striped `recv --out` receives straight into the output file's mapping: while stream 1's
/// stripe is still incomplete, the temporary file already has the array's size and holds
/// stripes 0 and 2 and stream 1's first 5,000 bytes at their places. Then stream 1 closes
/// early: `recv` exits 1 with the error naming stream 1, its peer and its counts (5,000 of
/// its stripe's 12,288 bytes + 8 of trailer), and leaves no file at all.
#[test]
fn striped_out_receives_into_the_file_and_a_failure_leaves_none() {
    for b in backends() {
        let dir = util::tmpdir("cli_framed_streams", &format!("inplace-{b}"));
        let out = dir.join("b.npy");
        let (k, err, addr) = spawn_recv(
            &[
                "--json",
                "--listen",
                "127.0.0.1:0",
                "--out",
                out.to_str().unwrap(),
                "--backend",
                b,
            ],
            1,
        );
        let (tx, head, data, _rest) = three_streams_stream_1_short(&addr);
        let h = head.len();
        part_file_showing(
            &dir,
            h + data.len(),
            &[
                (h, &data[..12288]),
                (h + 12288, &data[12288..17288]),
                (h + 24576, &data[24576..]),
            ],
        );
        assert!(
            !out.exists(),
            "{b}: the file gets its name only once complete"
        );
        tx[1].shutdown(std::net::Shutdown::Write).unwrap();
        let peer1 = tx[1].local_addr().unwrap();
        let (code, so, se) = finish_recv(k, err);
        let error =
            format!("stream 1 ({peer1}): peer closed the connection after 5000 of 12296 bytes");
        assert_eq!(code, 1, "{b}: {so}{se}");
        let line = json(&so);
        assert_eq!(line["error"], error.as_str(), "{b}: {line}");
        assert_eq!(line["kind"], "unexpected_eof", "{b}: {line}");
        assert_eq!(line["peer"], tx[0].local_addr().unwrap().to_string(), "{b}");
        assert_eq!(
            (&line["transferred"], &line["expected"]),
            (&Value::from(5000), &Value::from(12296)),
            "{b}: {line}"
        );
        assert_eq!(
            se.trim_end(),
            format!("ringxfer recv: array 1 of 1: {error}"),
            "{b}"
        );
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 0, "{b}: {left:?}");
        drop(tx);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// `serve --out-dir` receives a striped array straight into the file's mapping (the
/// temporary file holds the stripes received so far while stream 1's is incomplete), then,
/// once stream 1 sends the rest, commits a `.npy` file byte-exact with the array.
#[test]
fn serve_out_dir_receives_a_striped_array_into_the_file() {
    for b in backends() {
        let dir = util::tmpdir("cli_framed_streams", &format!("serve-inplace-{b}"));
        let (_serve, lines, addr) =
            spawn_serve(&["--json", "--out-dir", dir.to_str().unwrap(), "--backend", b]);
        let (tx, head, data, rest) = three_streams_stream_1_short(&addr.to_string());
        let h = head.len();
        part_file_showing(
            &dir,
            h + data.len(),
            &[(h, &data[..12288]), (h + 12288, &data[12288..17288])],
        );
        (&tx[1]).write_all(&rest).unwrap();
        let r = json(&lines.next(Duration::from_secs(20)).expect("an array line"));
        assert_eq!(r["streams"], 3, "{b}: {r}");
        assert_eq!(r["bytes"], 30_000, "{b}: {r}");
        assert_eq!(r["dtype"], "|u1", "{b}: {r}");
        assert_eq!(r["verified"], true, "{b}: {r}");
        assert_eq!(
            r["crc32"],
            format!("{:08x}", crc32fast::hash(&data)).as_str(),
            "{b}: {r}"
        );
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{b}: {files:?}");
        assert_eq!(r["file"], files[0].display().to_string());
        let mut want = head.clone();
        want.extend_from_slice(&data);
        util::assert_bytes_eq(&std::fs::read(&files[0]).unwrap(), &want, b);
        drop(tx);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// The prefix of stream `stream` of `streams` for a `len`-byte payload (array id 7).
fn prefix(stream: u32, streams: u32, len: u64) -> [u8; ringxfer::STRIPE_PREFIX_LEN] {
    let r = &ringxfer::stripes(len, streams as usize)[stream as usize];
    StripePrefix {
        stream,
        streams,
        array_id: 7,
        offset: r.start,
        len: r.end - r.start,
        payload_len: len,
    }
    .encode()
}

#[test]
fn fewer_connections_than_the_prefix_says_fail_within_the_timeout() {
    for b in backends() {
        let (k, err, addr) = spawn_recv(
            &["--listen", "127.0.0.1:0", "--timeout", "1", "--backend", b],
            1,
        );
        // One connection whose prefix says three streams; the other two never come.
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(&prefix(0, 3, 10_000)).unwrap();
        let me = s.local_addr().unwrap();
        let (rc, ro, re) = finish_recv(k, err);
        drop(s);
        assert_eq!(rc, 1, "{b}: {ro}{re}");
        assert_eq!(ro, "");
        assert_eq!(
            re.trim_end(),
            format!(
                "ringxfer recv: rail 0 ({addr}): 1 of its 3 stream(s) connected, then none \
                 within 1.0 s: the sender opened fewer streams than the 3 expected (stream 0's \
                 stripe prefix from {me} says 3 over 1 rail(s))"
            ),
            "{b}"
        );
    }
}

#[test]
fn a_silent_stream_times_out_naming_it() {
    for b in backends() {
        let (k, err, addr) = spawn_recv(
            &[
                "--json",
                "--listen",
                "127.0.0.1:0",
                "--timeout",
                "1",
                "--backend",
                b,
            ],
            1,
        );
        // Stream 0 sends its prefix, the header, its stripe and trailer; stream 1 only its
        // prefix, then nothing.
        let len = 10_000u64;
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut s0 = TcpStream::connect(&addr).unwrap();
        let mut s1 = TcpStream::connect(&addr).unwrap();
        let header = ringxfer::Header::new("u1".parse().unwrap(), &[len], Order::C).unwrap();
        s1.write_all(&prefix(1, 2, len)).unwrap();
        s0.write_all(&prefix(0, 2, len)).unwrap();
        s0.write_all(&header.encode()).unwrap();
        s0.write_all(&data[..8192]).unwrap();
        s0.write_all(&ringxfer::frame::encode_trailer(crc32fast::hash(
            &data[..8192],
        )))
        .unwrap();
        let p1 = s1.local_addr().unwrap();
        let (rc, ro, re) = finish_recv(k, err);
        drop((s0, s1));
        assert_eq!(rc, 1, "{b}: {ro}{re}");
        let words = format!(
            "stream 1 ({p1}): no progress for 1000 ms after 0 of {} bytes",
            len - 8192 + 8
        );
        let line = json(&ro);
        assert_eq!(line["kind"], "timed_out", "{b}: {line}");
        assert_eq!(line["error"], words.as_str(), "{b}");
        assert_eq!(line["transferred"], 0);
        assert_eq!(re.trim_end(), format!("ringxfer recv: array 1: {words}"));
    }
}

/// A framed sender's arguments: 1,000 f8 elements (the default dtype), blocking backend,
/// `--timeout 5`.
const SEND_1000: [&str; 6] = ["--count", "1000", "--backend", "blocking", "--timeout", "5"];

/// The receiver's error line about stream 0, `ringxfer recv: stream 0 (127.0.0.1:PORT): WHY`:
/// asserts everything around the sender's port (its own, so any port number) and returns WHY.
#[track_caller]
fn stream_0_error(re: &str) -> &str {
    let (head, why) = re
        .trim_end()
        .split_once("): ")
        .expect("stream 0 (PEER): ...");
    assert!(
        head.starts_with("ringxfer recv: stream 0 (127.0.0.1:")
            && head[35..].parse::<u16>().is_ok(),
        "{re}"
    );
    why
}

#[test]
fn a_one_connection_sender_to_rails_fails_clearly() {
    let (k, err, addrs) = spawn_recv(
        &[
            "--listen",
            "127.0.0.1:0,127.0.0.2:0",
            "--backend",
            "blocking",
        ],
        2,
    );
    // The sender connects to the first rail only, unstriped.
    let first = addrs.split(',').next().unwrap();
    let (sc, so, se) = run(&[&["send", "--connect", first][..], &SEND_1000].concat());
    let (rc, ro, re) = finish_recv(k, err);
    assert_eq!(rc, 1, "{ro}{re}");
    assert_eq!(ro, "");
    assert_eq!(
        stream_0_error(&re),
        "the sender does not stripe (its first bytes are not a stripe prefix, RGXS): it sends \
         over one connection; give recv one address and no --streams"
    );
    assert_eq!(sc, 1, "the receiver closed without reading: {so}{se}");
}

#[test]
fn recv_streams_that_disagree_with_the_prefix_fail() {
    let ((sc, so, se), (rc, ro, re)) = transfer(
        &[
            "--listen",
            "127.0.0.1:0",
            "--streams",
            "3",
            "--backend",
            "blocking",
        ],
        1,
        &[&["--streams", "2"][..], &SEND_1000].concat(),
    );
    assert_eq!(rc, 1, "{ro}{re}");
    assert_eq!(
        stream_0_error(&re),
        "the stripe prefix says 2 stream(s) = 1 rail(s) x 2, but --streams 3 was given (a \
         listening recv learns the streams: --streams may be left out)"
    );
    assert_eq!(sc, 1, "the receiver closed without reading: {so}{se}");
}

#[test]
fn usage_errors() {
    for (args, says) in [
        (
            &[
                "send",
                "--connect",
                "127.0.0.1:9",
                "--streams",
                "2",
                "--format",
                "npy",
            ][..],
            "ringxfer send: --format npy cannot stripe: numpy's .npy stream has no place for \
             the stripe geometry; drop --format npy (RGXF stripes) or send over one connection",
        ),
        (
            &[
                "send",
                "--connect",
                "127.0.0.1:9,127.0.0.2:9",
                "--format",
                "npy",
            ][..],
            "ringxfer send: --format npy cannot stripe: numpy's .npy stream has no place for \
             the stripe geometry; drop --format npy (RGXF stripes) or send over one connection",
        ),
        (
            &["send", "--connect", "unix:/tmp/x.sock", "--streams", "2"][..],
            "ringxfer send: --streams > 1 and --bidir are for TCP; a unix:PATH socket is one \
             connection",
        ),
    ] {
        let (c, o, e) = run(args);
        assert_eq!(c, 2, "{args:?}: {o}{e}");
        assert_eq!(o, "");
        assert_eq!(e.trim_end(), says, "{args:?}");
    }
}

#[test]
fn serve_receives_a_striped_send() {
    for b in backends() {
        let (_serve, lines, addr) = spawn_serve(&["--json", "--backend", b]);
        let (sc, so, se) = run(&[
            "send",
            "--json",
            "--connect",
            &addr.to_string(),
            "--streams",
            "3",
            "--arrays",
            "2",
            "--dtype",
            "<u4",
            "--shape",
            "1000,333",
            "--backend",
            b,
            "--get-server-output",
        ]);
        assert_eq!(sc, 0, "{b}: {so}{se}");
        let s = json(&so);
        let mut printed = Vec::new();
        for i in 1..=2 {
            let r = json(&lines.next(Duration::from_secs(20)).expect("an array line"));
            check_line(&r, &s, i, 3, b);
            assert_eq!(r["bytes"], 1_332_000);
            assert_eq!(r["arange"], true, "{b}: {r}");
            assert_eq!(r["backend"], b);
            printed.push(r);
        }
        // --get-server-output: the same lines came back on stream 0.
        assert_eq!(s["server"], Value::Array(printed), "{b}");
        assert_eq!(
            lines.drain_for(Duration::from_millis(200)),
            Vec::<String>::new()
        );
    }
}

#[test]
fn serve_out_dir_writes_a_striped_file_once() {
    for b in backends() {
        let dir = util::tmpdir("cli_framed_streams", &format!("serve-{b}"));
        let out = dir.join("out");
        std::fs::create_dir(&out).unwrap();
        let mut bytes =
            ringxfer::npy::encode_header("<i2".parse().unwrap(), &[5, 40_001], Order::C);
        let mut payload = vec![0u8; 5 * 40_001 * 2];
        util::fill_pattern(&mut payload, 3);
        bytes.extend_from_slice(&payload);
        let src = util::write_file(&dir, "x.npy", &bytes);
        let (_serve, lines, addr) =
            spawn_serve(&["--json", "--out-dir", out.to_str().unwrap(), "--backend", b]);
        let (sc, so, se) = run(&[
            "send",
            "--json",
            "--connect",
            &addr.to_string(),
            "--streams",
            "2",
            "--file",
            &src,
            "--backend",
            b,
        ]);
        assert_eq!(sc, 0, "{b}: {so}{se}");
        let r = json(&lines.next(Duration::from_secs(20)).expect("an array line"));
        check_line(&r, &json(&so), 1, 2, b);
        let files: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(r["file"], files[0].display().to_string());
        util::assert_bytes_eq(&std::fs::read(&files[0]).unwrap(), &bytes, b);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// A connection to `addr` that sends the prefix of stream `stream` of `streams` of array
/// `id`, `len` payload bytes; and its local address as the server names it.
fn stream_with(addr: &str, stream: u32, streams: u32, id: u64, len: u64) -> (TcpStream, String) {
    let (offset, end) = if streams == 0 {
        (0, 0)
    } else {
        let r = &ringxfer::stripes(len, streams.min(8) as usize)[stream.min(7) as usize];
        (r.start, r.end)
    };
    let mut s = TcpStream::connect(addr).unwrap();
    let p = StripePrefix {
        stream,
        streams,
        array_id: id,
        offset,
        len: end - offset,
        payload_len: len,
    };
    s.write_all(&p.encode()).unwrap();
    let me = s.local_addr().unwrap().to_string();
    (s, me)
}

/// The next `n` lines of `serve`, by peer.
fn lines_by_peer(lines: &util::proc::Lines, n: usize) -> HashMap<String, Value> {
    lines
        .take(n, Duration::from_secs(20))
        .iter()
        .map(|l| {
            let v = json(l);
            (v["peer"].as_str().unwrap().to_owned(), v)
        })
        .collect()
}

#[test]
fn serve_refuses_hostile_prefixes_and_drops_incomplete_groups() {
    let (_serve, lines, addr) = spawn_serve(&[
        "--json",
        "--header-timeout",
        "1",
        "--max-clients",
        "4",
        "--backend",
        "blocking",
    ]);
    let addr = addr.to_string();
    let kind_error = |v: &Value| {
        (
            v["kind"].as_str().unwrap().to_owned(),
            v["error"].as_str().unwrap().to_owned(),
        )
    };
    let incomplete = |id: u64| {
        format!(
            "striped array id {id:#x}: 1 of its 2 streams connected within 1.0 s (--header-timeout); dropped"
        )
    };
    // A count of 0, and 2^32 - 1 (refused before anything is sized by it).
    let (_a, pa) = stream_with(&addr, 0, 0, 1, 10);
    let v = &lines_by_peer(&lines, 1)[&pa];
    assert_eq!(
        kind_error(v),
        (
            "bad_stripe".into(),
            "bad stripe prefix: stream 0 of 0".into()
        )
    );
    let (_b, pb) = stream_with(&addr, 0, u32::MAX, 2, 10);
    let v = &lines_by_peer(&lines, 1)[&pb];
    assert_eq!(
        kind_error(v),
        (
            "bad_stripe".into(),
            "a stripe prefix of 4294967295 streams: more than --max-clients 4".into()
        )
    );
    // One id, two payload lengths: whichever came second is refused, the other's group is
    // dropped after --header-timeout.
    let (_c, pc) = stream_with(&addr, 0, 2, 3, 10_000);
    let (_d, pd) = stream_with(&addr, 1, 2, 3, 20_000);
    let got = lines_by_peer(&lines, 2);
    let (refused, opener, says, first) = if got[&pc]["kind"] == "bad_stripe" {
        (&pc, &pd, (0, 10_000), 20_000)
    } else {
        (&pd, &pc, (1, 20_000), 10_000)
    };
    assert_eq!(
        kind_error(&got[refused]),
        (
            "bad_stripe".into(),
            format!(
                "stream {} of array id 0x3 says 2 streams / {} bytes, the group's first stream \
                 2 / {first}",
                says.0, says.1
            )
        )
    );
    assert_eq!(
        kind_error(&got[opener]),
        ("incomplete_stripes".into(), incomplete(3))
    );
    // One index twice.
    let (_e, pe) = stream_with(&addr, 0, 2, 4, 10_000);
    let (_f, pf) = stream_with(&addr, 0, 2, 4, 10_000);
    let got = lines_by_peer(&lines, 2);
    let (refused, opener) = if got[&pe]["kind"] == "bad_stripe" {
        (&pe, &pf)
    } else {
        (&pf, &pe)
    };
    assert_eq!(
        kind_error(&got[refused]),
        (
            "bad_stripe".into(),
            "stream index 0 of array id 0x4 twice".into()
        )
    );
    assert_eq!(
        kind_error(&got[opener]),
        ("incomplete_stripes".into(), incomplete(4))
    );
    // Two ids that never meet: two groups, both dropped.
    let (g, pg) = stream_with(&addr, 0, 2, 5, 10_000);
    let (h, ph) = stream_with(&addr, 1, 2, 6, 10_000);
    let got = lines_by_peer(&lines, 2);
    assert_eq!(
        kind_error(&got[&pg]),
        ("incomplete_stripes".into(), incomplete(5))
    );
    assert_eq!(
        kind_error(&got[&ph]),
        ("incomplete_stripes".into(), incomplete(6))
    );
    // Each dropped stream is told why (the server line's error), then reset.
    for (mut s, id) in [(g, 5), (h, 6)] {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut said = Vec::new();
        let end = s.read_to_end(&mut said);
        assert_eq!(
            String::from_utf8_lossy(&said),
            format!("ringxfer serve: array 1: {}\n", incomplete(id)),
            "id {id}"
        );
        assert_eq!(
            end.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::ConnectionReset),
            "id {id}"
        );
    }
    // The server carries on: a real striped array still arrives whole.
    let (sc, so, se) = run(&[
        "send",
        "--json",
        "--connect",
        &addr,
        "--streams",
        "2",
        "--count",
        "5000",
        "--backend",
        "blocking",
    ]);
    assert_eq!(sc, 0, "{so}{se}");
    let r = json(&lines.next(Duration::from_secs(20)).expect("an array line"));
    check_line(&r, &json(&so), 1, 2, "after the hostile prefixes");
    assert_eq!(r["arange"], true);
}

/// A connection evicted for a waiting client while the stripe prefix it sent was partial is
/// reported as evicted (kind `evicted`), not as a bad prefix: the evicting shutdown is what
/// ended the wait for the prefix's other bytes. The waiting client's array arrives whole.
#[test]
fn serve_evicting_a_partial_stripe_prefix_says_evicted() {
    for b in backends() {
        let (_serve, lines, addr) = spawn_serve(&[
            "--json",
            "--max-clients",
            "1",
            "--evict-idle",
            "1",
            "--header-timeout",
            "0",
            "--timeout",
            "0",
            "--backend",
            b,
        ]);
        let addr = addr.to_string();
        let mut idle = TcpStream::connect(&addr).unwrap();
        idle.write_all(&prefix(0, 2, 10_000)[..14]).unwrap();
        let idle_peer = idle.local_addr().unwrap().to_string();
        std::thread::sleep(Duration::from_millis(200));
        let (sc, so, se) = run(&[
            "send",
            "--json",
            "--connect",
            &addr,
            "--count",
            "1000",
            "--backend",
            b,
        ]);
        assert_eq!(sc, 0, "{b}: {so}{se}");
        let got = lines_by_peer(&lines, 2);
        let v = &got[&idle_peer];
        assert_eq!(v["kind"], "evicted", "{b}: {v}");
        let error = v["error"].as_str().unwrap();
        let secs = error
            .strip_prefix("evicted after ")
            .and_then(|e| {
                e.strip_suffix(
                    " s without a whole header: every connection slot (--max-clients) was \
                     taken and another client was waiting",
                )
            })
            .unwrap_or_else(|| panic!("{b}: {error}"));
        assert!(secs.parse::<f64>().unwrap() >= 1.0, "{b}: {error}");
        let s = json(&so);
        let r = got
            .values()
            .find(|v| v["kind"].is_null())
            .expect("the array line");
        assert_eq!(
            (&r["arange"], &r["bytes"], &r["crc32"]),
            (&Value::from(true), &s["bytes_per_array"], &s["crc32"]),
            "{b}: {r}"
        );
        // The evicted client sees its connection end.
        idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(
            std::io::Read::read(&mut idle, &mut [0u8; 16]).unwrap(),
            0,
            "{b}"
        );
    }
}

/// Two 6-stream senders at once against `--max-clients 8`: each group takes its 6 slots when
/// its first stream is admitted, its other streams pass any waiting client, and the other
/// group waits for slots instead of splitting them: both arrays arrive whole, 5 times over.
#[test]
fn serve_two_concurrent_6_stream_senders_both_arrive_with_8_slots() {
    for b in backends() {
        let (_serve, lines, addr) = spawn_serve(&["--json", "--max-clients", "8", "--backend", b]);
        let addr = addr.to_string();
        for trial in 1..=5 {
            let what = format!("{b}, trial {trial}");
            let count = ["300000", "300001"];
            let senders: Vec<_> = count
                .iter()
                .map(|&n| {
                    let addr = addr.clone();
                    std::thread::spawn(move || {
                        let args = ["send", "--json", "--connect", &addr, "--streams", "6"];
                        run(&[&args[..], &["--count", n, "--backend", b]].concat())
                    })
                })
                .collect();
            let sent: Vec<Value> = senders
                .into_iter()
                .map(|t| {
                    let (sc, so, se) = t.join().unwrap();
                    if sc != 0 {
                        let server = lines.drain_for(Duration::from_millis(500));
                        panic!("{what}: exit {sc}: {so}{se}\nserve: {server:#?}");
                    }
                    json(&so)
                })
                .collect();
            let got = lines_by_peer(&lines, 2);
            for (s, n) in sent.iter().zip([2_400_000u64, 2_400_008]) {
                assert_eq!(s["bytes"], n, "{what}: {s}");
                let r = got
                    .values()
                    .find(|r| r["bytes"] == n)
                    .unwrap_or_else(|| panic!("{what}: no line of {n} bytes in {got:?}"));
                check_line(r, s, 1, 6, &what);
                assert_eq!(r["arange"], true, "{what}: {r}");
            }
        }
        assert_eq!(
            lines.drain_for(Duration::from_millis(200)),
            Vec::<String>::new(),
            "{b}"
        );
    }
}

/// A group larger than `--max-clients` is refused, and the sender is told why: the server's
/// refusal line comes back on stream 0 and is the sender's error (exit 1), with and without
/// `--get-server-output`. The server prints one `bad_stripe` line per stream.
#[test]
fn serve_refusing_a_group_too_large_tells_the_sender_why() {
    for b in backends() {
        let (_serve, lines, addr) = spawn_serve(&["--json", "--max-clients", "4", "--backend", b]);
        let addr = addr.to_string();
        let why =
            "ringxfer serve: refused: a stripe prefix of 5 streams: more than --max-clients 4";
        for extra in [&[][..], &["--get-server-output"][..]] {
            let args = [
                "send",
                "--connect",
                &addr,
                "--streams",
                "5",
                "--count",
                "100000",
            ];
            let (sc, so, se) = run(&[&args[..], &["--backend", b], extra].concat());
            assert_eq!((sc, so.as_str()), (1, ""), "{b} {extra:?}: {se}");
            let said = match extra {
                [] => format!("ringxfer send: stream 0 ({addr}): {why}\n"),
                _ => format!("ringxfer send: {why}\n"),
            };
            // The server closes right after its line; when that close overtakes the
            // sender's own half-close, the sender adds why its close failed (e.g. ENOTCONN)
            // after the server's line: both are the truth, the server's line comes first.
            // When the server's close of another stream fails the send itself (EPIPE) before
            // the close, the sender waits for stream 0's line and reports it for the array,
            // with the stream's failure after it.
            let said = said.trim_end();
            let mid_array = format!("ringxfer send: array 1 of 1: {why} (stream ");
            if se.starts_with(&mid_array) {
                assert!(se.ends_with(")\n"), "{b} {extra:?}: {se}");
            } else {
                let rest = se
                    .strip_prefix(said)
                    .unwrap_or_else(|| panic!("{b} {extra:?}: {se}"));
                assert!(
                    rest == "\n"
                        || (rest.starts_with(" (delivery not confirmed: ")
                            && rest.ends_with(")\n")),
                    "{b} {extra:?}: {se}"
                );
            }
            for l in lines.take(5, Duration::from_secs(20)) {
                let v = json(&l);
                assert_eq!(
                    (&v["kind"], &v["error"]),
                    (
                        &Value::from("bad_stripe"),
                        &Value::from("a stripe prefix of 5 streams: more than --max-clients 4")
                    ),
                    "{b} {extra:?}"
                );
            }
        }
        assert_eq!(
            lines.drain_for(Duration::from_millis(200)),
            Vec::<String>::new(),
            "{b}"
        );
    }
}

/// Hostile or stalled striped arrays toward `recv --out` (3 hand-made streams): the header
/// over `--max-payload` (30,000 bytes against a limit of 20,000), and prefixes and header
/// that agree on a 16 GiB payload against the default 8 GiB limit, are refused on the header
/// — exit 1, the `TooLarge` message, and no file of any name (not even a `.part`: nothing is
/// created or sized before the check). A stream that stalls inside its stripe (stream 1
/// sends 5,000 of its 12,288 bytes and stays open) fails after `--timeout 1` naming it with
/// its counts, and its `.part` file, already created and partly filled, is removed.
#[test]
fn striped_out_refuses_too_large_and_a_stall_leaves_no_file() {
    for b in backends() {
        let dir = util::tmpdir("cli_framed_streams", &format!("hostile-{b}"));
        let out = dir.join("h.npy");
        let out_s = out.to_str().unwrap();
        let recv = |extra: &[&str]| {
            let mut args = vec!["--json", "--listen", "127.0.0.1:0", "--out", out_s];
            args.extend_from_slice(&["--timeout", "1", "--backend", b]);
            args.extend_from_slice(extra);
            spawn_recv(&args, 1)
        };
        // 1. Over --max-payload.
        let (k, err, addr) = recv(&["--max-payload", "20000"]);
        let (tx, ..) = three_streams(&addr, [usize::MAX; 3]);
        let (code, so, se) = finish_recv(k, err);
        let words =
            "framed message rejected: payload of 30000 bytes exceeds the limit of 20000 bytes";
        assert_eq!(code, 1, "{b}: {so}{se}");
        assert_eq!(
            json(&so)["error"],
            format!("stream 0 ({}): {words}", tx[0].local_addr().unwrap()),
            "{b}"
        );
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "{b}");
        drop(tx);
        // 2. 16 GiB, agreed by every prefix and the header.
        let (k, err, addr) = recv(&[]);
        let len: u64 = 16 << 30;
        let header = ringxfer::Header::new("|u1".parse().unwrap(), &[len], Order::C).unwrap();
        let tx: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(&addr).unwrap()).collect();
        for (i, s) in tx.iter().enumerate() {
            (&*s).write_all(&prefix(i as u32, 3, len)).unwrap();
        }
        (&tx[0]).write_all(&header.encode()).unwrap();
        let (code, so, se) = finish_recv(k, err);
        assert_eq!(code, 1, "{b}: {so}{se}");
        assert_eq!(
            json(&so)["error"],
            format!(
                "stream 0 ({}): framed message rejected: payload of {len} bytes exceeds the \
                 limit of {} bytes",
                tx[0].local_addr().unwrap(),
                8u64 << 30
            ),
            "{b}"
        );
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "{b}");
        drop(tx);
        // 3. A stall inside stream 1's stripe.
        let (k, err, addr) = recv(&[]);
        let (tx, head, data, _rest) = three_streams_stream_1_short(&addr);
        let h = head.len();
        part_file_showing(&dir, h + data.len(), &[(h + 12288, &data[12288..17288])]);
        let t0 = std::time::Instant::now();
        let (code, so, se) = finish_recv(k, err);
        assert_eq!(code, 1, "{b}: {so}{se}");
        let line = json(&so);
        assert_eq!(
            line["error"],
            format!(
                "stream 1 ({}): no progress for 1000 ms after 5000 of 12296 bytes",
                tx[1].local_addr().unwrap()
            ),
            "{b}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{b}: {:?}",
            t0.elapsed()
        );
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 0, "{b}: {left:?}");
        drop(tx);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// `recv --out` into a filesystem with no room for the array: a 2 MiB tmpfs (mounted in a
/// mount namespace of its own, `unshare -rm`, around the receiver) and an 8,000,000-byte
/// `|u1` array, over 1 stream and over 3. The filesystem's available bytes are checked once
/// the header says the array's size, before any payload byte and before a file is made:
/// `recv` exits 1 with the `out_file` error naming the directory and both numbers, and the
/// directory stays empty. Without the check the sparse file failed the receive mid-array,
/// after ~2 MB, with `Bad address (os error 14)` (the kernel's copy into the mapping
/// faulted).
#[test]
fn out_on_a_full_filesystem_is_refused_before_the_payload() {
    let src_dir = util::tmpdir("cli_framed_streams", "full-fs-src");
    let len = 8_000_000usize;
    let dtype: DType = "|u1".parse().unwrap();
    let mut npy = ringxfer::npy::encode_header(dtype, &[len as u64], Order::C);
    let head_len = npy.len();
    npy.extend((0..len).map(|i| (i % 251) as u8));
    let src = src_dir.join("a.npy");
    std::fs::write(&src, &npy).unwrap();
    for b in backends() {
        for streams in ["1", "3"] {
            let what = format!("{b}, {streams} stream(s)");
            let dir = util::tmpdir("cli_framed_streams", &format!("full-fs-{b}-{streams}"));
            let d = dir.to_str().unwrap();
            let script = format!(
                "mount -t tmpfs -o size=2m tmpfs {d} || exit 99; \
                 {bin} recv --json --listen 127.0.0.1:0 --out {d}/got.npy --timeout 5 \
                 --backend {b}; rc=$?; echo \"left: $(ls -A {d})\"; exit $rc",
                bin = util::bin::BIN
            );
            let mut child = std::process::Command::new("unshare")
                .args(["-rm", "sh", "-c", &script])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn unshare");
            let err = util::proc::Lines::new(child.stderr.take().unwrap());
            let first = err.take(1, Duration::from_secs(20));
            let addr = first[0]
                .strip_prefix("ringxfer recv: listening on ")
                .unwrap_or_else(|| panic!("{what}: {first:?}"))
                .to_owned();
            let (sc, so, se) = run(&[
                "send",
                "--connect",
                &addr,
                "--streams",
                streams,
                "--file",
                src.to_str().unwrap(),
                "--timeout",
                "5",
                "--backend",
                b,
            ]);
            assert_eq!(sc, 1, "{what}: the receiver closed early: {so}{se}");
            let (code, out, rest) = finish_recv(util::proc::Killed(child), err);
            assert_eq!(code, 1, "{what}: {out}{rest}");
            let mut lines = out.lines();
            let line = json(lines.next().unwrap());
            let error = format!(
                "{d}: no room for the array's {} bytes: the filesystem has {} bytes available",
                head_len + len,
                2 << 20
            );
            assert_eq!(line["error"], error.as_str(), "{what}");
            assert_eq!(line["kind"], "out_file", "{what}: {line}");
            assert_eq!(lines.next(), Some("left: "), "{what}: {out}");
            assert_eq!(
                rest.trim_end(),
                format!("ringxfer recv: array 1 of 1: {error}"),
                "{what}"
            );
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
    std::fs::remove_dir_all(&src_dir).unwrap();
}
