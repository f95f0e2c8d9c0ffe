//! What a new user of the CLI missed (issue 10, item 6), with the built binary as a child
//! process: Unix domain sockets on `send`, `recv` and `serve` (`unix:PATH`), `--connect`
//! saying once that it retries and giving up at `--connect-timeout`, the hints for a raw/framed
//! mismatch in either direction, the bench's plain verdict line, and the backend named in the
//! bench's `-i` lines. Exit codes and messages are asserted exactly.

mod util;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ringxfer::Backend;
use util::bin::{command, json, output, spawn, text, wait_unix_listening};
use util::proc::{Killed, Lines, wait_deadline};
use util::tmpdir;

const T: Duration = Duration::from_secs(20);

/// `recv --listen unix:PATH` and `send --connect unix:PATH`, framed or raw, on `backend`:
/// both exit 0, the receiver verified the arange pattern, both name the socket as the peer,
/// the CRC-32s agree, and the socket file is gone once the connection was accepted.
fn unix_send_recv(backend: Backend, raw: bool) {
    let dir = tmpdir("cli-gaps", &format!("unix-{backend}-{raw}"));
    let path = dir.join("s.sock");
    let addr = format!("unix:{}", path.display());
    let b = backend.to_string();
    let mut common = vec!["--count", "100000", "--json", "--backend", b.as_str()];
    if raw {
        common.push("--raw");
    }
    let mut recv_args = vec!["recv", "--listen", addr.as_str()];
    recv_args.extend(&common);
    let recv = spawn(&recv_args);
    wait_unix_listening(&path, T);
    let mut send_args = vec!["send", "--connect", addr.as_str()];
    send_args.extend(&common);
    let sent = output(&send_args);
    let got = recv.wait_with_output().unwrap();
    assert_eq!(sent.status.code(), Some(0), "send: {}", text(&sent.stderr));
    assert_eq!(got.status.code(), Some(0), "recv: {}", text(&got.stderr));
    let (s, r) = (json(&text(&sent.stdout)), json(&text(&got.stdout)));
    assert_eq!(s["bytes"], 800_000, "{s}");
    assert_eq!(r["bytes"], 800_000, "{r}");
    assert_eq!(s["peer"], addr.as_str(), "{s}");
    assert_eq!(r["peer"], addr.as_str(), "{r}");
    assert_eq!(s["backend"], b.as_str(), "{s}");
    assert_eq!(r["backend"], b.as_str(), "{r}");
    assert_eq!(s["crc32"], r["crc32"]);
    let verified = if raw { &r["verified"] } else { &r["arange"] };
    assert_eq!(verified, true, "{r}");
    assert!(
        !path.exists(),
        "the socket file is removed after the accept"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `serve --listen unix:PATH`: the first line names the socket, two clients' arrays each get
/// a line naming the client `unix:PATH#N`, verified.
fn unix_serve(backend: Backend) {
    let dir = tmpdir("cli-gaps", &format!("serve-{backend}"));
    let path = dir.join("serve.sock");
    let addr = format!("unix:{}", path.display());
    let b = backend.to_string();
    let mut child = command(&["serve", "--listen", &addr, "--json", "--backend", &b])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = Lines::new(child.stdout.take().unwrap());
    let _server = Killed(child);
    assert_eq!(
        lines.next(T).as_deref(),
        Some(format!("listening {addr}").as_str())
    );
    for (client, arrays) in [(1, "2"), (2, "1")] {
        let out = output(&[
            "send",
            "--connect",
            &addr,
            "--count",
            "5000",
            "--arrays",
            arrays,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let n: u64 = arrays.parse().unwrap();
        for (i, l) in lines.take(n as usize, T).iter().enumerate() {
            let v = json(l);
            assert_eq!(v["peer"], format!("{addr}#{client}"), "{v}");
            assert_eq!(v["array"], i as u64 + 1, "{v}");
            assert_eq!(v["bytes"], 40_000, "{v}");
            assert_eq!(v["backend"], b.as_str(), "{v}");
            assert_eq!(v["arange"], true, "{v}");
        }
    }
    drop(_server);
    let _ = std::fs::remove_dir_all(&dir);
}

both_backends! {
    fn unix_socket_framed(backend) { unix_send_recv(backend, false) }
    fn unix_socket_raw(backend) { unix_send_recv(backend, true) }
    fn unix_socket_serve(backend) { unix_serve(backend) }
}

/// A file already at the path: exit 1, one line naming it and what to do.
#[test]
fn unix_listen_on_an_existing_file() {
    let dir = tmpdir("cli-gaps", "exists");
    let path = dir.join("taken");
    std::fs::write(&path, b"").unwrap();
    let addr = format!("unix:{}", path.display());
    for cmd in ["recv", "serve"] {
        let out = output(&[cmd, "--listen", &addr]);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {}", text(&out.stderr));
        assert_eq!(
            text(&out.stderr),
            format!(
                "ringxfer {cmd}: listen on {addr}: Address already in use (os error 98) (the file \
                 exists: remove it if no server uses it)\n"
            )
        );
    }
    assert!(path.exists(), "not removed: it may be another server's");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Several streams or rails over a Unix socket: a usage error (exit 2).
#[test]
fn unix_socket_is_one_connection() {
    let out = output(&[
        "send",
        "--raw",
        "--connect",
        "unix:/nonexistent/a",
        "--streams",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "ringxfer send: --streams > 1 and --bidir are for TCP; a unix:PATH socket is one \
         connection\n"
    );
    let out = output(&["send", "--raw", "--connect", "unix:/a,unix:/b"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "ringxfer send: rails are TCP addresses; a unix:PATH socket is one connection: \
         \"unix:/a,unix:/b\"\n"
    );
}

/// Nobody listening: one line saying it retries, then one saying it gave up at
/// `--connect-timeout`; exit 1, not before the timeout.
#[test]
fn connect_says_it_retries_and_gives_up_at_the_timeout() {
    let dir = tmpdir("cli-gaps", "retry");
    let addr = format!("unix:{}", dir.join("nobody").display());
    let t0 = Instant::now();
    let out = output(&[
        "send",
        "--connect",
        &addr,
        "--count",
        "10",
        "--connect-timeout",
        "0.5",
    ]);
    let waited = t0.elapsed();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "ringxfer send: connect to {addr}: No such file or directory (os error 2); retrying \
             for up to 0.5 s (--connect-timeout)\nringxfer send: connect to {addr}: No such file \
             or directory (os error 2) (gave up after 0.5 s, --connect-timeout)\n"
        )
    );
    assert!(
        waited >= Duration::from_millis(500),
        "gave up after {waited:?}"
    );
    // TCP: the same two lines for a refused port.
    let out = output(&[
        "send",
        "--connect",
        "127.0.0.1:1",
        "--count",
        "10",
        "--connect-timeout",
        "0.2",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "ringxfer send: connect to 127.0.0.1:1: Connection refused (os error 111); retrying for \
         up to 0.2 s (--connect-timeout)\nringxfer send: connect to 127.0.0.1:1: Connection \
         refused (os error 111) (gave up after 0.2 s, --connect-timeout)\n"
    );
    // A bad value is a usage error.
    let out = output(&[
        "send",
        "--connect",
        "127.0.0.1:1",
        "--connect-timeout",
        "-1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The receiver starts late: the sender says once that it retries (however many attempts),
/// then connects and both succeed. The receiver starts only once the sender has said so (a
/// fixed pause let a sender that started late find the socket there, or hit it between
/// bind(2) and listen(2): `Connection refused` instead of `No such file or directory`).
#[test]
fn connect_retries_until_the_peer_listens() {
    let dir = tmpdir("cli-gaps", "late");
    let path = dir.join("late.sock");
    let addr = format!("unix:{}", path.display());
    let mut send = spawn(&[
        "send",
        "--connect",
        &addr,
        "--count",
        "1000",
        "--connect-timeout",
        "20",
    ]);
    let said = Lines::new(send.stderr.take().unwrap());
    let mut send = Killed(send);
    let first = said.take(1, T).remove(0);
    assert_eq!(
        first,
        format!(
            "ringxfer send: connect to {addr}: No such file or directory (os error 2); retrying \
             for up to 20 s (--connect-timeout)"
        )
    );
    let recv = output(&["recv", "--listen", &addr, "--count", "1000"]);
    let sent = wait_deadline(&mut send.0, T).expect("send hung");
    let rest = said.rest(T);
    assert_eq!(recv.status.code(), Some(0), "{}", text(&recv.stderr));
    assert_eq!(sent.code(), Some(0), "{first}\n{rest:#?}");
    assert_eq!(rest, Vec::<String>::new(), "said once: {first}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A framed receiver gets raw bytes: exit 1 with the hint; a raw receiver gets a framed
/// message: exit 1 with the other hint. Both backends.
fn mismatch_hints(backend: Backend) {
    let dir = tmpdir("cli-gaps", &format!("hint-{backend}"));
    let b = backend.to_string();
    for (recv_raw, want) in [
        (
            false,
            "ringxfer recv: array 1: framed message rejected: bad magic b\"\\x00\" \
             (expected b\"RGXF\"): the peer sent no RGXF or .npy header: did it use --raw?\n",
        ),
        (
            true,
            "ringxfer recv: received data is not the <f8 arange pattern: first mismatch at \
             element 0 (byte offset 0); the data starts with an RGXF header: the peer sent \
             framed arrays (drop --raw here, or add it there)\n",
        ),
    ] {
        let path = dir.join(format!("m{recv_raw}.sock"));
        let addr = format!("unix:{}", path.display());
        let mut r = vec![
            "recv",
            "--listen",
            &addr,
            "--count",
            "1000",
            "--backend",
            &b,
        ];
        let mut s = vec![
            "send",
            "--connect",
            &addr,
            "--count",
            "1000",
            "--backend",
            &b,
        ];
        if recv_raw {
            r.push("--raw");
        } else {
            s.push("--raw");
        }
        let recv = spawn(&r);
        wait_unix_listening(&path, T);
        let _ = output(&s);
        let got = recv.wait_with_output().unwrap();
        assert_eq!(got.status.code(), Some(1), "{}", text(&got.stderr));
        let stderr = text(&got.stderr);
        let last = stderr.lines().last().unwrap_or_default();
        assert_eq!(format!("{last}\n"), want, "{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

both_backends! {
    fn raw_framed_mismatch_hints(backend) { mismatch_hints(backend) }
}

/// The bench's verdict line: `uring X.XX× blocking, median of 2 runs each`, the ratio line's
/// value to two places; absent with one backend.
#[test]
fn bench_prints_a_verdict_line() {
    let out = output(&["bench", "--size", "8MB", "--repeat", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let verdicts: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("× blocking"))
        .collect();
    if !util::uring_available() {
        assert!(verdicts.is_empty(), "{stdout}");
        return;
    }
    assert_eq!(verdicts.len(), 1, "{stdout}");
    let ratio: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ratio uring/blocking (median/median): "))
        .expect("the ratio line")
        .parse()
        .unwrap();
    let v = verdicts[0];
    let shown = v
        .strip_prefix("uring ")
        .and_then(|r| r.strip_suffix("× blocking, median of 2 runs each"))
        .unwrap_or_else(|| panic!("verdict {v:?}"));
    assert_eq!(shown.len(), 4, "two decimals: {v:?}");
    let shown: f64 = shown.parse().unwrap();
    // The ratio line has three decimals, the verdict two of the same value.
    assert!((shown - ratio).abs() <= 0.0051, "{v:?} vs {ratio}");

    let out = output(&[
        "bench",
        "--size",
        "8MB",
        "--repeat",
        "1",
        "--backend",
        "blocking",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!text(&out.stdout).contains("× blocking"));
}

/// `bench -i`: each interval line names the backend moving the bytes; with both backends
/// both names appear, the first run's backend first.
#[test]
fn bench_interval_lines_name_the_backend() {
    let out = output(&[
        "bench", "--size", "40MB", "--repeat", "1", "-i", "0.05", "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let d = json(&text(&out.stdout));
    let first = d["runs"][0]["backend"].as_str().unwrap().to_owned();
    let labels: Vec<String> = text(&out.stderr)
        .lines()
        .filter_map(|l| {
            let tail = l.strip_prefix('[')?.split_once(" s]  ")?.1;
            Some(tail.split_whitespace().next()?.to_owned())
        })
        .collect();
    assert!(!labels.is_empty(), "{}", text(&out.stderr));
    assert_eq!(labels[0], first, "{labels:?}");
    for l in &labels {
        assert!(l == "uring" || l == "blocking", "{labels:?}");
    }
    let backends: Vec<&str> = d["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["backend"].as_str().unwrap())
        .collect();
    for b in &backends {
        assert!(
            labels.iter().any(|l| l == b),
            "{b} named in no line: {labels:?}"
        );
    }
}

/// `scripts/plot.py` writes under `target/` unless `--out` names a file (the committed
/// `docs/throughput.png` only when asked); the old second positional PNG is refused (exit 2).
#[test]
fn plot_py_writes_outside_docs_unless_asked() {
    let scripts = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts");
    let out_of = |argv: &str| {
        let o = Command::new("python3")
            .args([
                "-c",
                &format!(
                    "import sys; sys.path.insert(0, {scripts:?}); import plot; \
                     print(plot.parse_args({argv}).out)"
                ),
            ])
            .output()
            .expect("python3");
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stdout).trim().to_owned()
    };
    assert_eq!(out_of("[]"), "target/plot/throughput.png");
    assert_eq!(
        out_of("['docs/throughput.csv']"),
        "target/plot/throughput.png"
    );
    assert_eq!(
        out_of("['x.csv', '--out', 'docs/throughput.png']"),
        "docs/throughput.png"
    );
    let old = Command::new("python3")
        .args([
            &format!("{scripts}/plot.py"),
            "docs/throughput.csv",
            "docs/throughput.png",
        ])
        .output()
        .unwrap();
    assert_eq!(old.status.code(), Some(2), "{}", text(&old.stderr));
}
