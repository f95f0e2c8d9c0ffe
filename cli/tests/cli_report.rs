//! What the CLI reports besides throughput (issue 4, items 1 and 2), with the built binary as
//! a child process: CPU seconds per end, interval lines on stderr (`-i`), effective socket
//! buffer sizes (`--sndbuf` / `--rcvbuf`), and `send --get-server-output` against `serve`.

mod util;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use util::bin::{BIN, spawn_serve};
use util::proc::Killed;

fn run(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).output().expect("run ringxfer");
    assert!(
        out.status.success(),
        "ringxfer {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(out: &[u8]) -> Value {
    let s = String::from_utf8_lossy(out);
    let last = s
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .expect("a JSON line");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {s}"))
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// `{"user_s": u, "system_s": s}` with both finite and >= 0; returns u + s.
#[track_caller]
fn cpu_total(c: &Value) -> f64 {
    let (u, s) = (num(&c["user_s"]), num(&c["system_s"]));
    assert!(
        u >= 0.0 && s >= 0.0 && u.is_finite() && s.is_finite(),
        "{c}"
    );
    u + s
}

/// Interval lines of stderr: `[  0.00-  0.02 s]  123.4 MB  45.67 Gbit/s`, as (from, to, bits/s).
fn interval_lines(stderr: &[u8]) -> Vec<(f64, f64, f64)> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix('[')?;
            let (span, tail) = rest.split_once(" s]")?;
            let (from, to) = span.split_once('-')?;
            let gbit = tail.trim().strip_suffix(" Gbit/s")?.rsplit(' ').next()?;
            Some((
                from.trim().parse().ok()?,
                to.trim().parse().ok()?,
                gbit.parse().ok()?,
            ))
        })
        .collect()
}

#[test]
fn bench_reports_cpu_per_end_and_per_gb() {
    let d = json(&run(&["bench", "--size", "40MB", "--repeat", "2", "--json"]).stdout);
    // The existing fields are still there.
    for k in ["dtype", "count", "bytes", "runs", "summary", "host"] {
        assert!(d.get(k).is_some(), "{k} missing: {d}");
    }
    for r in d["runs"].as_array().unwrap() {
        assert_eq!(r["verified"], true);
        assert!(num(&r["seconds"]) > 0.0);
        let rx = cpu_total(&r["cpu"]["receiver"]);
        let tx = cpu_total(&r["cpu"]["sender"]);
        // Receiving 40 MB costs CPU; neither end can use more CPU than 2x the wall time
        // plus the readings' slack.
        assert!(rx > 0.0, "receiver cpu 0: {r}");
        assert!(tx > 0.0, "sender cpu 0: {r}");
        let wall = num(&r["seconds"]);
        assert!(
            rx < wall + 0.05 && tx < wall + 0.05,
            "cpu above wall time: {r}"
        );
    }
    for s in d["summary"].as_array().unwrap() {
        let per_gb = &s["cpu_s_per_gb"];
        assert!(num(&per_gb["receiver"]) > 0.0, "{s}");
        assert!(num(&per_gb["sender"]) > 0.0, "{s}");
        // At least 0.1 GB/s per CPU second on any machine this runs on.
        assert!(num(&per_gb["receiver"]) < 10.0, "{s}");
    }
}

#[test]
fn bench_modes_report_cpu() {
    let d = json(
        &run(&[
            "bench", "--fresh", "--size", "8MB", "--repeat", "1", "--json",
        ])
        .stdout,
    );
    for r in d["runs"].as_array().unwrap() {
        assert!(cpu_total(&r["cpu"]["receiver"]) > 0.0, "{r}");
        cpu_total(&r["cpu"]["sender"]);
    }
    assert!(d["summary"][0]["cpu_s_per_gb"].get("receiver").is_some());
    let d = json(&run(&["bench", "--count-arrays", "2000", "--repeat", "1", "--json"]).stdout);
    for r in d["runs"].as_array().unwrap() {
        assert!(cpu_total(&r["cpu"]["receiver"]) > 0.0, "{r}");
        assert!(cpu_total(&r["cpu"]["sender"]) > 0.0, "{r}");
    }
}

#[test]
fn bench_interval_lines_on_stderr_json_unchanged_on_stdout() {
    let out = run(&[
        "bench",
        "--backend",
        "blocking",
        "--size",
        "200MB",
        "--repeat",
        "2",
        "-i",
        "0.02",
        "--json",
    ]);
    // stdout is still exactly one JSON object.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let d: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(d["runs"].as_array().unwrap().len(), 2);
    let lines = interval_lines(&out.stderr);
    assert!(
        !lines.is_empty(),
        "no interval lines on stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Consecutive, starting at 0, each rate non-negative.
    assert_eq!(lines[0].0, 0.0);
    for w in lines.windows(2) {
        assert!((w[1].0 - w[0].1).abs() < 1e-9, "{lines:?}");
    }
    assert!(lines.iter().all(|l| l.2 >= 0.0 && l.1 > l.0));
    // Without -i: no interval line.
    let out = run(&["bench", "--size", "8MB", "--repeat", "1", "--json"]);
    assert!(interval_lines(&out.stderr).is_empty());
}

#[test]
fn bench_socket_buffers_are_reported() {
    let out = run(&[
        "bench", "--size", "8MB", "--repeat", "1", "--sndbuf", "64KiB", "--rcvbuf", "64KiB",
        "--json",
    ]);
    let d = json(&out.stdout);
    let b = &d["socket_buffers"];
    assert_eq!(b["sndbuf_requested"], 65536, "{b}");
    assert_eq!(b["rcvbuf_requested"], 65536, "{b}");
    // Linux doubles the value it is given (for bookkeeping) and reports the doubled one.
    assert_eq!(b["sender"]["sndbuf"], 131072, "{b}");
    assert_eq!(b["receiver"]["rcvbuf"], 131072, "{b}");
    assert!(
        d["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["verified"] == true)
    );
}

#[test]
fn send_gets_the_server_output() {
    // serve prints text; what it sends back is JSON all the same.
    let (_srv, lines, addr) = spawn_serve(&["--rcvbuf", "1MiB"]);
    let addr = addr.to_string();
    let out = run(&[
        "send",
        "--connect",
        &addr,
        "--size",
        "4MB",
        "--arrays",
        "3",
        "--get-server-output",
        "--json",
    ]);
    let d = json(&out.stdout);
    assert_eq!(d["role"], "send");
    cpu_total(&d["cpu"]);
    assert!(num(&d["socket_buffers"]["sndbuf"]) > 0.0);
    let server = d["server"].as_array().expect("server lines");
    assert_eq!(server.len(), 3, "{d}");
    for (i, l) in server.iter().enumerate() {
        assert_eq!(l["array"], i as u64 + 1, "{l}");
        assert_eq!(l["bytes"], 4_000_000);
        assert_eq!(l["arange"], true);
        assert_eq!(l["crc32"], d["crc32"]);
        cpu_total(&l["cpu"]);
        // --rcvbuf on serve's listener, inherited by the connection (doubled by Linux, capped
        // by net.core.rmem_max).
        assert!(num(&l["socket_buffers"]["rcvbuf"]) > 0.0, "{l}");
    }
    // serve printed the same three arrays (as text).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = 0;
    while seen < 3 && Instant::now() < deadline {
        if let Some(l) = lines.next(Duration::from_millis(100)) {
            assert!(l.contains("arange pattern ok"), "{l}");
            seen += 1;
        }
    }
    assert_eq!(seen, 3);

    // Text mode prints one `server:` line per array after its own.
    let out = run(&[
        "send",
        "--connect",
        &addr,
        "--size",
        "4MB",
        "--arrays",
        "2",
        "--get-server-output",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().next().unwrap().starts_with("send: 2 array(s)"),
        "{text}"
    );
    let server: Vec<&str> = text.lines().filter(|l| l.starts_with("server: ")).collect();
    assert_eq!(server.len(), 2, "{text}");
    assert!(server[1].contains("array 2:") && server[1].contains("arange pattern ok"));

    // A client that did not ask: serve's write-back fails quietly and it serves on.
    run(&["send", "--connect", &addr, "--size", "4MB", "--arrays", "2"]);
    let out = run(&[
        "send",
        "--connect",
        &addr,
        "--size",
        "8",
        "--get-server-output",
        "--json",
    ]);
    assert_eq!(json(&out.stdout)["server"].as_array().unwrap().len(), 1);
}

#[test]
fn get_server_output_is_for_framed_send() {
    for args in [
        &[
            "send",
            "--connect",
            "127.0.0.1:9",
            "--raw",
            "--get-server-output",
        ][..],
        &["recv", "--listen", "127.0.0.1:0", "--get-server-output"][..],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn raw_send_recv_report_cpu_buffers_and_intervals() {
    let mut recv = Command::new(BIN)
        .args([
            "recv",
            "--listen",
            "127.0.0.1:0",
            "--raw",
            "--size",
            "200MB",
            "--rcvbuf",
            "64KiB",
            "-i",
            "0.01",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `ringxfer recv: listening on ADDR` comes first on stderr; the rest is read after exit.
    let mut err = BufReader::new(recv.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    let addr = first
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();
    let recv = Killed(recv);
    let sent = run(&[
        "send",
        "--connect",
        &addr,
        "--raw",
        "--size",
        "200MB",
        "--sndbuf",
        "64KiB",
        "-i",
        "0.01",
        "--json",
    ]);
    let mut recv = recv;
    let mut stdout = String::new();
    std::io::Read::read_to_string(recv.0.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut err, &mut rest).unwrap();
    assert!(recv.0.wait().unwrap().success(), "{stdout}");

    let r = json(stdout.as_bytes());
    assert_eq!(r["verified"], true, "{r}");
    assert_eq!(r["socket_buffers"]["rcvbuf"], 131072, "{r}");
    assert!(cpu_total(&r["cpu"]) > 0.0, "{r}");
    let s = json(&sent.stdout);
    assert_eq!(s["socket_buffers"]["sndbuf"], 131072, "{s}");
    assert!(cpu_total(&s["cpu"]) > 0.0, "{s}");
    // Both ends print interval lines on stderr (not a terminal here).
    assert!(!interval_lines(&sent.stderr).is_empty());
    assert!(
        !interval_lines(&rest).is_empty(),
        "{}",
        String::from_utf8_lossy(&rest)
    );
}
