//! The `ringxfer` binary where io_uring is denied (issue "Faults and limits", case 7): a child
//! process installs a seccomp filter that makes `io_uring_setup` fail with `EPERM` (what
//! container default profiles do) and runs the binary, which inherits the filter:
//! `--backend auto` transfers and says why it is blocking, once; `--backend uring` fails with
//! one line and exit status 1; `probe` reports it.

mod util;

use std::io::Read;
use std::time::Duration;

use util::bin::{command, run};
use util::proc::{Killed, Lines, wait_deadline};
use util::seccomp::{assert_names_eperm, deny_io_uring_setup};

/// Names the child's role; the child test does nothing without it.
const ROLE_ENV: &str = "RINGXFER_TEST_CLI_FAULTS_CHILD";

/// Runs [`child_cli_uring_denied`] in a child process (the filter must not touch the other
/// tests).
#[test]
fn cli_uring_denied_by_seccomp() {
    util::proc::run_child_test(
        "child_cli_uring_denied",
        &[(ROLE_ENV, "uring-denied")],
        Duration::from_secs(120),
    );
}

/// The child of [`cli_uring_denied_by_seccomp`]: installs the filter, then checks the CLI
/// under it against the probe's reason.
#[test]
#[ignore = "run by cli_uring_denied_by_seccomp in a child process"]
fn child_cli_uring_denied() {
    if std::env::var(ROLE_ENV).ok().as_deref() != Some("uring-denied") {
        return;
    }
    deny_io_uring_setup();
    let p = ringxfer::probe();
    assert!(!p.available, "probe says available under the filter: {p:?}");
    let reason = p.reason.clone().expect("the probe gives a reason");
    assert_names_eperm(&reason, "probe");
    cli_under_filter(&reason);
}

/// The CLI under the filter: `--backend auto` transfers and says why it is blocking, once;
/// `--backend uring` fails with one line and a non-zero exit status.
fn cli_under_filter(reason: &str) {
    let count = "3000000"; // f8: 24 MB
    // The binary inherits the filter.
    let mut recv = command(&[
        "recv",
        "--raw",
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "auto",
    ])
    .args(["--dtype", "f8", "--count", count, "--json"])
    .spawn()
    .unwrap();
    let recv_out = recv.stdout.take().unwrap();
    let recv_err = Lines::new(recv.stderr.take().unwrap());
    let recv = Killed(recv);
    // stderr: the fallback line, then `listening on ADDR`.
    let mut recv_stderr = Vec::new();
    let addr = loop {
        let l = recv_err
            .next(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("recv said no address: {recv_stderr:?}"));
        recv_stderr.push(l.clone());
        if let Some(a) = l.strip_prefix("ringxfer recv: listening on ") {
            break a.to_owned();
        }
    };
    let (code, send_out, send_err) = run(&[
        "send",
        "--raw",
        "--connect",
        &addr,
        "--backend",
        "auto",
        "--dtype",
        "f8",
        "--count",
        count,
        "--json",
    ]);
    assert_eq!(code, 0, "send --backend auto: {send_err}");
    let mut recv = recv;
    let rst = wait_deadline(&mut recv.0, Duration::from_secs(60)).expect("recv hung");
    let mut recv_stdout = String::new();
    { recv_out }.read_to_string(&mut recv_stdout).unwrap();
    recv_stderr.extend(recv_err.rest(Duration::from_secs(20)));
    assert!(rst.success(), "recv --backend auto: {rst}: {recv_stderr:?}");
    eprintln!("CLI send --backend auto, stderr: {send_err:?}");
    eprintln!("CLI recv --backend auto, stderr: {recv_stderr:?}");
    for (side, stdout, stderr) in [
        ("send", send_out.clone(), send_err.clone()),
        ("recv", recv_stdout.clone(), recv_stderr.join("\n")),
    ] {
        let said = format!("ringxfer {side}: using the blocking backend: {reason}");
        assert_eq!(
            stderr.lines().filter(|l| *l == said).count(),
            1,
            "{side} --backend auto: the fallback reason once on stderr: {stderr:?}"
        );
        assert_eq!(
            stderr.matches("io_uring_setup").count(),
            1,
            "{side}: said once: {stderr:?}"
        );
        let v: serde_json::Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{side}: not one JSON object: {stdout:?}: {e}"));
        assert_eq!(v["backend"], "blocking", "{side}: {v}");
        assert_eq!(v["bytes"], 24_000_000, "{side}: {v}");
        if side == "recv" {
            assert_eq!(v["verified"], true, "{v}");
        }
    }
    let crc =
        |s: &str| serde_json::from_str::<serde_json::Value>(s.trim()).unwrap()["crc32"].clone();
    assert_eq!(crc(&send_out), crc(&recv_stdout), "CRC-32 of both sides");

    // `--backend uring`: one clear line, exit status 1, before any connection is made.
    for args in [
        &["send", "--raw", "--connect", "127.0.0.1:1", "--count", "10"][..],
        &["recv", "--raw", "--listen", "127.0.0.1:0", "--count", "10"],
        &["send", "--connect", "127.0.0.1:1", "--count", "10"],
        &["serve", "--listen", "127.0.0.1:0"],
    ] {
        let mut a = args.to_vec();
        a.extend(["--backend", "uring"]);
        let (code, out, err) = run(&a);
        assert_eq!(code, 1, "{a:?}: stderr {err:?}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{a:?}: one line on stderr: {err:?}");
        let line = lines[0];
        assert!(
            line.starts_with(&format!("ringxfer {}: ", args[0]))
                && line.contains("io_uring backend unavailable"),
            "{a:?}: {line:?}"
        );
        assert_names_eperm(line, &format!("{a:?}"));
        eprintln!("{a:?} -> exit 1: {line}");
        assert!(!out.contains("listening"), "{a:?}: started anyway: {out:?}");
    }

    // `ringxfer probe` reports it and exits 0.
    let (code, out, err) = run(&["probe", "--json"]);
    assert_eq!(code, 0, "probe: {err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["available"], false, "{v}");
    assert_eq!(v["auto_backend"], "blocking", "{v}");
    assert_eq!(v["reason"], reason, "{v}");
}
