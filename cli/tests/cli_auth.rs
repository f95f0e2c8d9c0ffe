//! `--auth-key` on `serve`, `send` and `recv` (issue 8 item 7; the library handshake itself
//! is tests/auth.rs): the right key is served, a wrong key and no key are rejected with one
//! line, an empty, too short or unreadable key file is a clear error at start-up (exit
//! status 2), and `serve` warns when it listens off loopback without a key.

mod util;

use std::time::Duration;

use serde_json::Value;
use util::bin::{Outcome, command, spawn_serve, transfer};
use util::proc::{Killed, Lines};
use util::{tmpdir, write_file};

const KEY_A: &[u8; 32] = b"an example key of 32 bytes: AAAA";
const KEY_B: &[u8; 32] = b"an example key of 32 bytes: BBBB";
const T: Duration = Duration::from_secs(5);

fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object: {line:?}: {e}"))
}

fn send(addr: &str, args: &[&str]) -> std::process::Output {
    command(&["send", "--connect", addr, "--count", "1000"])
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `serve --auth-key`: the right key is served (and gets its lines back), a wrong key and no
/// key are each rejected with one server line, before any array byte is read.
#[test]
fn cli_serve_auth_key() {
    let dir = tmpdir("cli-auth", "serve");
    let a = write_file(&dir, "a", KEY_A);
    let b = write_file(&dir, "b", KEY_B);
    let (_server, lines, addr) = spawn_serve(&["--json", "--auth-key", &a]);
    let addr = addr.to_string();

    let ok = send(
        &addr,
        &[
            "--auth-key",
            &a,
            "--arrays",
            "2",
            "--get-server-output",
            "--json",
        ],
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    let r = json(String::from_utf8_lossy(&ok.stdout).trim());
    assert_eq!(r["server"].as_array().map(Vec::len), Some(2), "{r}");
    for l in lines.take(2, T) {
        let v = json(&l);
        assert_eq!(
            (&v["verified"], &v["arange"]),
            (&true.into(), &true.into()),
            "{v}"
        );
    }

    let wrong = send(&addr, &["--auth-key", &b]);
    assert_eq!(wrong.status.code(), Some(1), "{}", stderr(&wrong));
    assert!(
        stderr(&wrong).contains("authentication failed: the server rejected our key"),
        "{}",
        stderr(&wrong)
    );
    let v = json(&lines.take(1, T)[0]);
    assert_eq!(
        (&v["kind"], &v["array"]),
        (&"auth_wrong_key".into(), &1.into()),
        "{v}"
    );

    // No key: the client's framed array is rejected at its magic, and the client is told
    // why (serve writes one refusal line; the client's graceful close reads it): exit 1
    // naming the missing key, for a small array and for one larger than the socket buffers.
    for count in ["8000", "8000000"] {
        let none = command(&["send", "--connect", &addr, "--size", count])
            .output()
            .unwrap();
        assert_eq!(none.status.code(), Some(1), "{}", stderr(&none));
        assert!(
            stderr(&none).contains("refused: this server requires authentication (--auth-key)"),
            "{count}: {}",
            stderr(&none)
        );
        let v = json(&lines.take(1, T)[0]);
        assert_eq!(v["kind"], "auth_unauthenticated", "{v}");
    }

    let extra = lines.drain_for(Duration::from_millis(300));
    assert!(extra.is_empty(), "one line per client: {extra:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A client with `--auth-key` that reaches a server without one finds out (exit status 1).
#[test]
fn cli_client_with_key_to_server_without() {
    let dir = tmpdir("cli-auth", "nokey-server");
    let a = write_file(&dir, "a", KEY_A);
    let (_server, lines, addr) = spawn_serve(&["--json"]);
    let o = send(&addr.to_string(), &["--auth-key", &a]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("authentication failed"),
        "{}",
        stderr(&o)
    );
    let v = json(&lines.take(1, T)[0]);
    assert_eq!(v["kind"], "bad_magic", "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `recv --listen 127.0.0.1:0 RECV` and `send --count 1000 SEND` against it: each
/// side's `(exit code, stdout, stderr)`, the sender's first.
fn recv_send(recv: &[&str], send_args: &[&str]) -> (Outcome, Outcome) {
    transfer(
        &[&["--listen", "127.0.0.1:0"][..], recv].concat(),
        1,
        &[&["--count", "1000"][..], send_args].concat(),
    )
}

/// `recv --listen --auth-key` with `send --connect --auth-key`, framed and raw; and with
/// different keys both fail.
#[test]
fn cli_recv_listen_send_connect_auth() {
    let dir = tmpdir("cli-auth", "recv");
    let a = write_file(&dir, "a", KEY_A);
    let b = write_file(&dir, "b", KEY_B);
    for raw in [false, true] {
        let mode: &[&str] = if raw { &["--raw"] } else { &[] };
        let recv_args: Vec<&str> = [mode, &["--count", "1000", "--auth-key", &a]].concat();
        let send_args: Vec<&str> = [mode, &["--auth-key", &a]].concat();
        let ((sc, _, se), (rc, _, re)) = recv_send(&recv_args, &send_args);
        assert_eq!((rc, sc), (0, 0), "raw {raw}: {re} / {se}");

        let send_args: Vec<&str> = [mode, &["--auth-key", &b]].concat();
        let ((sc, _, se), (rc, _, re)) = recv_send(&recv_args, &send_args);
        assert_eq!((rc, sc), (1, 1), "raw {raw}");
        assert!(
            re.contains("the peer's proof does not match our key"),
            "{re}"
        );
        assert!(se.contains("the server rejected our key"), "{se}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// An empty, too short, missing or unreadable (a directory) key file: exit status 2 with
/// the reason, before listening or connecting.
#[test]
fn cli_bad_key_files() {
    let dir = tmpdir("cli-auth", "bad");
    let empty = write_file(&dir, "empty", b"");
    let short = write_file(&dir, "short", b"abc\n");
    let missing = dir.join("missing").to_str().unwrap().to_owned();
    let dir_s = dir.to_str().unwrap().to_owned();
    let cases = [
        (empty.as_str(), "is empty"),
        (short.as_str(), "holds 3 bytes, fewer than 16"),
        (missing.as_str(), "No such file or directory"),
        (dir_s.as_str(), "cannot read the key file"),
    ];
    for (file, want) in cases {
        for cmd in [
            &["serve", "--listen", "127.0.0.1:0"][..],
            &["send", "--connect", "127.0.0.1:9"],
            &["recv", "--listen", "127.0.0.1:0"],
        ] {
            let mut child = command(cmd).args(["--auth-key", file]).spawn().unwrap();
            let out = util::proc::Output::collect(&mut child);
            let st = util::proc::wait_deadline(&mut child, Duration::from_secs(10))
                .unwrap_or_else(|| panic!("{cmd:?} --auth-key {file}: still running"));
            let (stdout, err) = out.finish();
            assert_eq!(st.code(), Some(2), "{cmd:?} {file}: {err}");
            assert!(
                err.contains("--auth-key: ") && err.contains(want),
                "{cmd:?}: {err}"
            );
            assert_eq!(err.lines().count(), 1, "one line: {err}");
            assert!(stdout.is_empty(), "nothing started: {stdout}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without --auth-key on a non-loopback address, serve warns on stderr (and still serves).
#[test]
fn cli_serve_warns_without_key_off_loopback() {
    let mut child = command(&["serve", "--listen", "0.0.0.0:0"])
        .spawn()
        .unwrap();
    let err = Lines::new(child.stderr.take().unwrap());
    let out = Lines::new(child.stdout.take().unwrap());
    let _child = Killed(child);
    assert!(out.next(T).unwrap().starts_with("listening 0.0.0.0:"));
    let w = err.next(T).expect("a warning");
    assert!(
        w.starts_with("ringxfer serve: warning: listening on 0.0.0.0:")
            && w.contains("without --auth-key"),
        "{w}"
    );
}
