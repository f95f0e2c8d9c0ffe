//! `ringxfer send|recv --raw --streams N`, rails (several `--listen`/`--connect` addresses),
//! `--bidir`, and `bench --streams/--bidir`: two real processes over loopback, byte-exact
//! (the receiver checks the arange pattern and both print the array's CRC-32), on both
//! backends; and the usage errors and stream-count mismatches, which must fail clearly and
//! not hang.

mod util;

use util::bin::{
    assert_two_rails_of_two, backends, finish_recv, json, peers, run, spawn_recv, transfer,
    transfer_from_listening_sender,
};

/// Sender and receiver with the same streams/rails; both JSON reports, checked for the
/// fields every striped transfer has.
fn pair(
    recv_listen: &str,
    rails: usize,
    common: &[&str],
) -> (serde_json::Value, serde_json::Value) {
    let mut rargs = vec!["--raw", "--json", "--listen", recv_listen];
    rargs.extend_from_slice(common);
    let mut sargs = vec!["--raw", "--json"];
    sargs.extend_from_slice(common);
    let ((sc, so, se), (rc, ro, re)) = transfer(&rargs, rails, &sargs);
    assert_eq!((sc, rc), (0, 0), "send: {so}{se}\nrecv: {ro}{re}");
    (json(&so), json(&ro))
}

/// 1,000,003 u8 elements: stripes of 4 KiB multiples with an odd tail.
const N: &str = "1000003";

#[test]
fn streams_3_raw_byte_exact() {
    for b in backends() {
        let (s, r) = pair(
            "127.0.0.1:0",
            1,
            &[
                "--streams",
                "3",
                "--dtype",
                "u1",
                "--count",
                N,
                "--backend",
                b,
            ],
        );
        for v in [&s, &r] {
            assert_eq!(v["streams"], 3, "{b}: {v}");
            assert_eq!(v["bytes"], 1_000_003, "{b}: {v}");
            assert_eq!(v["backend"], b);
            assert_eq!(v["peers"].as_array().unwrap().len(), 3);
        }
        assert_eq!(r["verified"], true, "{b}: {r}");
        assert_eq!(s["crc32"], r["crc32"], "{b}");
        assert_eq!(s["peer_bytes_discarded"], 0);
        // Stream i of the sender is stream i of the receiver: same peer pairs in order.
        let sp = peers(&s);
        assert!(sp.iter().all(|p| *p == sp[0]), "one rail: {sp:?}");
    }
}

#[test]
fn rails_on_two_loopback_addresses_byte_exact() {
    for b in backends() {
        let (s, r) = pair(
            "127.0.0.1:0,127.0.0.2:0",
            2,
            &[
                "--streams",
                "2",
                "--dtype",
                "u1",
                "--count",
                N,
                "--backend",
                b,
            ],
        );
        assert_eq!(s["streams"], 4, "{b}: {s}");
        assert_eq!(r["streams"], 4);
        assert_eq!(s["streams_per_rail"], 2);
        assert_eq!(r["verified"], true, "{b}: {r}");
        assert_eq!(s["crc32"], r["crc32"]);
        assert_two_rails_of_two(&peers(&s));
    }
}

#[test]
fn one_stream_per_rail_by_default() {
    let (s, r) = pair(
        "127.0.0.1:0,127.0.0.2:0",
        2,
        &[
            "--dtype",
            "f8",
            "--count",
            "300001",
            "--backend",
            "blocking",
        ],
    );
    assert_eq!(
        (s["streams"].as_u64(), r["streams"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(r["verified"], true);
}

#[test]
fn bidir_verified_both_ways() {
    for b in backends() {
        let (s, r) = pair(
            "127.0.0.1:0",
            1,
            &[
                "--bidir",
                "--streams",
                "2",
                "--dtype",
                "i4",
                "--count",
                "700001",
                "--backend",
                b,
            ],
        );
        for v in [&s, &r] {
            assert_eq!(v["bidir"], true);
            assert_eq!(v["verified"], true, "{b}: {v}");
            assert_eq!(v["sent"]["bytes"], 2_800_004, "{b}: {v}");
            assert_eq!(v["received"]["bytes"], 2_800_004, "{b}: {v}");
            assert!(v["sent"]["gbytes_per_s"].as_f64().unwrap() > 0.0);
            assert!(v["received"]["gbytes_per_s"].as_f64().unwrap() > 0.0);
        }
        assert_eq!(s["crc32"], r["crc32"], "{b}");
        assert_eq!(s["peer_bytes_discarded"], 0);
        assert_eq!(r["peer_bytes_discarded"], 0);
    }
}

#[test]
fn bidir_one_stream_text_names_both_directions() {
    let common = [
        "--raw",
        "--bidir",
        "--size",
        "1MiB",
        "--backend",
        "blocking",
    ];
    let ((sc, so, se), (rc, ro, re)) = transfer(
        &[&["--listen", "127.0.0.1:0"][..], &common].concat(),
        1,
        &common,
    );
    assert_eq!((sc, rc), (0, 0), "{so}{se}{ro}{re}");
    for out in [&so, &ro] {
        assert!(
            out.contains("(bidir): 131072 x <f8 = 1048576 bytes each way"),
            "{out}"
        );
        assert!(out.contains("; received in "), "{out}");
        assert!(out.contains("arange pattern verified"), "{out}");
    }
}

#[test]
fn bench_streams_json_fields() {
    let mut args = vec![
        "bench",
        "--streams",
        "2",
        "--json",
        "--size",
        "1MiB",
        "--repeat",
        "1",
        "--backend",
    ];
    for b in backends() {
        args.push(b);
        let (c, o, e) = run(&args);
        args.pop();
        assert_eq!(c, 0, "{o}{e}");
        let v = json(&o);
        assert_eq!(v["streams"], 2, "{v}");
        assert_eq!(v["bidir"], false);
        let runs = v["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0]["verified"], true);
        assert_eq!(runs[0]["bytes"], 1 << 20);
        assert!(runs[0].get("reverse").is_none());
        if b == "uring" {
            // Two streams each way: at least one SQE per stream and transfer at each end.
            let k = runs[0]["transfers_per_run"].as_u64().unwrap();
            assert!(runs[0]["sqes"]["sender"].as_u64().unwrap() >= 2 * k, "{v}");
        }
    }
}

#[test]
fn bench_bidir_json_reverse_direction() {
    let (c, o, e) = run(&[
        "bench",
        "--bidir",
        "--streams",
        "3",
        "--json",
        "--size",
        "1MiB",
        "--repeat",
        "1",
        "--backend",
        "blocking",
    ]);
    assert_eq!(c, 0, "{o}{e}");
    let v = json(&o);
    assert_eq!(
        (v["streams"].as_u64(), v["bidir"].as_bool()),
        (Some(3), Some(true))
    );
    let rev = &v["runs"][0]["reverse"];
    assert_eq!(rev["verified"], true, "{v}");
    assert!(rev["gbytes_per_s"].as_f64().unwrap() > 0.0);
    assert!(
        v["summary"][0]["reverse_median_gbytes_per_s"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

#[test]
fn bench_text_says_streams() {
    let (c, o, e) = run(&[
        "bench",
        "--streams",
        "4",
        "--size",
        "256KiB",
        "--repeat",
        "1",
        "--backend",
        "blocking",
    ]);
    assert_eq!(c, 0, "{o}{e}");
    assert!(
        o.contains("striped over 4 loopback TCP connections per run"),
        "{o}"
    );
}

#[test]
fn framed_bidir_is_a_usage_error() {
    for args in [
        &["recv", "--listen", "127.0.0.1:0", "--bidir"][..],
        &[
            "send",
            "--connect",
            "127.0.0.1:9",
            "--bidir",
            "--streams",
            "2",
        ][..],
    ] {
        let (c, o, e) = run(args);
        assert_eq!(c, 2, "{args:?}: {o}{e}");
        assert_eq!(
            e.trim_end(),
            format!(
                "ringxfer {}: --bidir needs --raw: framed mode sends one way",
                args[0]
            ),
            "{args:?}"
        );
    }
}

#[test]
fn bad_streams_values_are_usage_errors() {
    for (args, says) in [
        (
            &[
                "send",
                "--raw",
                "--connect",
                "127.0.0.1:9",
                "--streams",
                "0",
            ][..],
            "invalid value '0' for '--streams <N>'",
        ),
        (
            &["send", "--raw", "--connect", "127.0.0.1:9,,127.0.0.2:9"][..],
            "empty address in \"127.0.0.1:9,,127.0.0.2:9\"",
        ),
        (
            &["bench", "--streams", "2", "--pingpong"][..],
            "--streams and --bidir are for the main job",
        ),
        (
            &["bench", "--streams", "2", "--registered"][..],
            "--registered is for one stream",
        ),
        (
            &[
                "send",
                "--raw",
                "--connect",
                "127.0.0.1:9",
                "--streams",
                "2",
                "--registered",
            ][..],
            "--registered is for one stream without --bidir",
        ),
    ] {
        let (c, o, e) = run(args);
        assert_eq!(c, 2, "{args:?}: {o}{e}");
        assert!(e.contains(says), "{args:?}: {e}");
    }
}

/// A raw receiver expecting `recv_streams` streams of 8 MiB (`--timeout recv_timeout`) and a
/// sender opening `send_streams` (`--timeout 5`), blocking backend: the receiver exits 1 and
/// says `says` on stderr; the sender, which cannot confirm delivery, exits 1 too.
#[track_caller]
fn mismatched_streams_fail(recv_streams: &str, recv_timeout: &str, send_streams: &str, says: &str) {
    let common = ["--raw", "--size", "8MiB", "--backend", "blocking"];
    let recv = ["--listen", "127.0.0.1:0", "--streams", recv_streams];
    let send = ["--streams", send_streams, "--timeout", "5"];
    let ((sc, so, se), (rc, ro, re)) = transfer(
        &[&recv[..], &common, &["--timeout", recv_timeout]].concat(),
        1,
        &[&send[..], &common].concat(),
    );
    assert_eq!(rc, 1, "{ro}{re}");
    assert!(re.contains(says), "{re}");
    assert_eq!(sc, 1, "the sender cannot confirm delivery: {so}{se}");
}

#[test]
fn sender_with_fewer_streams_fails_clearly() {
    mismatched_streams_fail(
        "3",
        "1",
        "2",
        "2 of its 3 stream(s) connected, then none within 1.0 s",
    );
}

#[test]
fn sender_with_more_streams_fails_clearly() {
    mismatched_streams_fail(
        "2",
        "5",
        "3",
        "the sender opened more streams than the 2 expected",
    );
}

#[test]
fn extra_bytes_on_one_stream_are_reported() {
    // A hand-made sender: two streams, the right stripes, and 5 more bytes on stream 1.
    use std::io::Write;
    let (k, err, addr) = spawn_recv(
        &[
            "--raw",
            "--listen",
            "127.0.0.1:0",
            "--streams",
            "2",
            "--dtype",
            "u1",
            "--count",
            "10000",
            "--backend",
            "blocking",
            "--timeout",
            "5",
        ],
        1,
    );
    let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    let mut a = std::net::TcpStream::connect(&addr).unwrap();
    let mut b = std::net::TcpStream::connect(&addr).unwrap();
    a.write_all(&data[..8192]).unwrap();
    b.write_all(&data[8192..]).unwrap();
    b.write_all(b"extra").unwrap();
    a.shutdown(std::net::Shutdown::Write).unwrap();
    b.shutdown(std::net::Shutdown::Write).unwrap();
    let (rc, ro, re) = finish_recv(k, err);
    assert_eq!(rc, 1, "{ro}{re}");
    assert!(re.contains("stream 1 ("), "{re}");
    assert!(re.contains("5 extra bytes after stream 1's stripe"), "{re}");
}

/// `send --raw --listen --streams N` with the receiver connecting: the listening sender has no
/// byte to wait for on stream 0 (a raw receiver sends nothing), so it must not wait for one
/// (it did, until --timeout or forever). Byte-exact on both backends; and a receiver that
/// opens one stream more is caught by the listening sender (after the data: 8 MiB do not fit
/// in the socket buffers, so they move only once the receiver, every stream connected,
/// reads), exit 1; one that opens one fewer too, named as the receiver.
#[test]
fn listening_sender_streams_to_a_connecting_receiver() {
    for b in backends() {
        let common = ["--raw", "--streams", "2", "--dtype", "u1", "--count", N];
        let sargs = [
            &["--json", "--listen", "127.0.0.1:0", "--timeout", "5"][..],
            &common,
            &["--backend", b],
        ]
        .concat();
        let rargs = [
            &["--json", "--timeout", "5"][..],
            &common,
            &["--backend", b],
        ]
        .concat();
        let ((sc, so, se), (rc, ro, re), _) = transfer_from_listening_sender(&sargs, &rargs);
        assert_eq!((sc, rc), (0, 0), "{b}: send: {so}{se}\nrecv: {ro}{re}");
        let (s, r) = (json(&so), json(&ro));
        for v in [&s, &r] {
            assert_eq!(v["streams"], 2, "{b}: {v}");
            assert_eq!(v["bytes"], 1_000_003, "{b}: {v}");
            assert_eq!(v["backend"], b);
        }
        assert_eq!(r["verified"], true, "{b}: {r}");
        assert_eq!(s["crc32"], r["crc32"], "{b}");
        assert_eq!(s["peer_bytes_discarded"], 0, "{b}");

        let sizes = ["--raw", "--size", "8MiB", "--timeout", "5", "--backend", b];
        let sargs = [&["--listen", "127.0.0.1:0", "--streams", "2"][..], &sizes].concat();
        let rargs = [&["--streams", "3"][..], &sizes].concat();
        let ((sc, so, se), (rc, ro, re), _) = transfer_from_listening_sender(&sargs, &rargs);
        assert_eq!((sc, so.as_str()), (1, ""), "{b}: {se}");
        let (head, tail) = se.trim_end().split_once(" from 127.0.0.1:").expect(&se);
        assert_eq!(
            head,
            "ringxfer send: the receiver opened more streams than the 2 expected: another \
             connection",
            "{b}"
        );
        // The rail as given (`127.0.0.1:0`), after the receiver's own port.
        let (port, rest) = tail.split_once(' ').expect(&se);
        assert!(port.parse::<u16>().is_ok(), "{b}: {se}");
        assert_eq!(
            rest, "on rail 0 (127.0.0.1:0); both sides need the same rails and --streams",
            "{b}"
        );
        assert_eq!(
            rc, 1,
            "{b}: the receiver's third stream never gets its stripe: {ro}{re}"
        );

        // One stream fewer: the listening sender names the receiver as the side that
        // connected too few, within its --timeout.
        let sizes = ["--raw", "--size", "8MiB", "--timeout", "1", "--backend", b];
        let sargs = [&["--listen", "127.0.0.1:0", "--streams", "3"][..], &sizes].concat();
        let rargs = [&["--streams", "2"][..], &sizes].concat();
        let ((sc, so, se), (rc, ro, re), addr) = transfer_from_listening_sender(&sargs, &rargs);
        assert_eq!((sc, so.as_str()), (1, ""), "{b}: {se}");
        assert_eq!(
            se.trim_end(),
            format!(
                "ringxfer send: rail 0 ({addr}): 2 of its 3 stream(s) connected, then none \
                 within 1.0 s: the receiver opened fewer streams than the 3 expected (1 rail(s) \
                 x --streams 3); both sides need the same rails and --streams"
            ),
            "{b}"
        );
        assert_eq!(rc, 1, "{b}: {ro}{re}");
    }
}
