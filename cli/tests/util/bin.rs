//! The built `ringxfer` binary for the CLI's integration tests (`env!("CARGO_BIN_EXE_…")`
//! exists only inside the binary's package, so this part of the helpers lives here).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use super::proc::{Killed, Lines, Output, wait_deadline};

/// The `ringxfer` binary built for the integration tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_ringxfer");

/// Starts `ringxfer serve --listen 127.0.0.1:0 ARGS...` (stderr inherited) and returns it,
/// its stdout lines and the address from its first line (`listening ADDR`).
pub fn spawn_serve(args: &[&str]) -> (Killed, Lines, SocketAddr) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("RINGXFER_BACKEND")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn ringxfer serve");
    let out = child.stdout.take().unwrap();
    let child = Killed(child);
    let lines = Lines::new(out);
    let first = lines
        .next(Duration::from_secs(20))
        .expect("serve printed no first line");
    let addr = first
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("first line {first:?} is not `listening ADDR`"));
    let addr = SocketAddr::from_str(addr).expect("an address");
    assert_ne!(addr.port(), 0, "the bound port, not 0");
    (child, lines, addr)
}

/// `ringxfer ARGS` ready to spawn: stdin empty, stdout and stderr piped, and
/// `RINGXFER_BACKEND` removed (so only `--backend` chooses).
pub fn command(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("RINGXFER_BACKEND")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Connects to the Unix socket a listener is binding at `path`, retrying for at most `limit`.
/// The file appears at `bind(2)`, before `listen(2)`: a connect in between is refused
/// (`ECONNREFUSED`), so the file's existence alone does not mean the listener accepts.
#[track_caller]
pub fn connect_unix(path: &std::path::Path, limit: Duration) -> std::os::unix::net::UnixStream {
    let deadline = std::time::Instant::now() + limit;
    loop {
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(s) => return s,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("connect to {}: {e}", path.display()),
        }
    }
}

/// Runs `ringxfer ARGS` to completion, with no deadline: its `Output`.
pub fn output(args: &[&str]) -> std::process::Output {
    command(args).output().expect("run ringxfer")
}

/// Starts `ringxfer ARGS` (stdout and stderr piped).
pub fn spawn(args: &[&str]) -> std::process::Child {
    command(args).spawn().expect("spawn ringxfer")
}

/// Bytes of a child's output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Waits until a Unix socket at `path` is listening, at most `limit`. Its file appears at
/// `bind(2)`, before `listen(2)`: a connect in between is refused (`ECONNREFUSED`, which
/// `ringxfer send` reports on stderr as a retry), so the file's existence is not enough. The
/// listening state is read from `/proc/net/unix` (its `Flags` column has `__SO_ACCEPTCON`,
/// `0x10000`, once `listen(2)` ran; see `unix_seq_show` in net/unix/af_unix.c), without
/// connecting: a `recv` takes its first connection as its peer.
#[track_caller]
pub fn wait_unix_listening(path: &std::path::Path, limit: Duration) {
    /// `__SO_ACCEPTCON` (include/linux/net.h): the socket is listening.
    const ACCEPTCON: u32 = 1 << 16;
    let want = path.to_str().expect("a UTF-8 socket path");
    let deadline = std::time::Instant::now() + limit;
    loop {
        let table = std::fs::read_to_string("/proc/net/unix").expect("read /proc/net/unix");
        // `Num RefCount Protocol Flags Type St Inode Path`.
        let listening = table.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() == 8
                && f[7] == want
                && u32::from_str_radix(f[3], 16).is_ok_and(|flags| flags & ACCEPTCON != 0)
        });
        if listening {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} is not a listening socket after {limit:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `ringxfer ARGS` to completion (at most 90 s); `(exit code, stdout, stderr)`.
pub fn run(args: &[&str]) -> (i32, String, String) {
    let mut child = command(args).spawn().expect("spawn ringxfer");
    let out = Output::collect(&mut child);
    let st = wait_deadline(&mut child, Duration::from_secs(90));
    let (o, e) = out.finish();
    let st = st.unwrap_or_else(|| panic!("ringxfer {args:?} hung:\n{o}\n{e}"));
    (st.code().expect("exit code"), o, e)
}

/// `--backend` values to run: blocking always, uring where io_uring works.
pub fn backends() -> Vec<&'static str> {
    let mut v = vec!["blocking"];
    if super::uring_available() {
        v.push("uring");
    }
    v
}

/// Starts `ringxfer recv ARGS` (each listen address ending in `:0`) and returns it, its
/// stderr lines and the comma-joined addresses it says it listens on, `rails` of them.
pub fn spawn_recv(args: &[&str], rails: usize) -> (Killed, Lines, String) {
    spawn_listening("recv", args, rails)
}

/// Starts `ringxfer COMMAND ARGS` (`send` or `recv`, each listen address ending in `:0`) and
/// returns it, its stderr lines and the comma-joined addresses it says it listens on, `rails`
/// of them.
pub fn spawn_listening(command: &str, args: &[&str], rails: usize) -> (Killed, Lines, String) {
    let mut child = self::command(&[command])
        .args(args)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn ringxfer {command}: {e}"));
    let err = Lines::new(child.stderr.take().unwrap());
    let addrs: Vec<String> = err
        .take(rails, Duration::from_secs(20))
        .into_iter()
        .map(|l| {
            l.strip_prefix(&format!("ringxfer {command}: listening on "))
                .unwrap_or_else(|| panic!("{l:?} is not `listening on ADDR`"))
                .to_owned()
        })
        .collect();
    (Killed(child), err, addrs.join(","))
}

/// Starts `ringxfer ARGS` listening on the Unix socket `path` (`--listen unix:PATH` among
/// `args`) and returns it and its stderr lines once the socket listens (at most 20 s; see
/// [`wait_unix_listening`]).
pub fn spawn_unix(args: &[&str], path: &std::path::Path) -> (Killed, Lines) {
    let mut child = spawn(args);
    let err = Lines::new(child.stderr.take().unwrap());
    let child = Killed(child);
    wait_unix_listening(path, Duration::from_secs(20));
    (child, err)
}

/// Waits for the process of [`spawn_recv`], [`spawn_unix`] or [`spawn_listening`] (at most 90 s): `(exit
/// code, stdout, rest of stderr)`.
pub fn finish_recv(mut k: Killed, err: Lines) -> (i32, String, String) {
    let mut out = String::new();
    let mut stdout = k.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
        out
    });
    let st = wait_deadline(&mut k.0, Duration::from_secs(90)).expect("recv hung");
    let out = reader.join().unwrap();
    let rest = err.rest(Duration::from_secs(20)).join("\n");
    (st.code().expect("exit code"), out, rest)
}

pub fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

/// Starts `ringxfer recv RECV` (listening on `rails` addresses ending in `:0`), runs `ringxfer
/// send --connect ADDRS SEND` to the addresses it says, and waits for both: each side's
/// `(exit code, stdout, stderr)`, the sender's first.
pub fn transfer(
    recv: &[&str],
    rails: usize,
    send: &[&str],
) -> ((i32, String, String), (i32, String, String)) {
    let (k, err, addrs) = spawn_recv(recv, rails);
    let mut sargs = vec!["send", "--connect", &addrs];
    sargs.extend_from_slice(send);
    let s = run(&sargs);
    (s, finish_recv(k, err))
}

/// Starts `ringxfer send SEND` listening on one address ending in `:0`, runs `ringxfer recv
/// --connect ADDR RECV` to the address it says, and waits for both: each side's `(exit code,
/// stdout, stderr)`, the sender's first (as [`transfer`], the other way round), and the
/// address the sender listened on.
pub fn transfer_from_listening_sender(send: &[&str], recv: &[&str]) -> (Outcome, Outcome, String) {
    let (k, err, addr) = spawn_listening("send", send, 1);
    let r = run(&[&["recv", "--connect", &addr][..], recv].concat());
    (finish_recv(k, err), r, addr)
}

/// What a finished `ringxfer` process gave: `(exit code, stdout, stderr)`.
pub type Outcome = (i32, String, String);

/// The `peers` of a JSON report, in stream order.
pub fn peers(report: &serde_json::Value) -> Vec<String> {
    report["peers"]
        .as_array()
        .unwrap_or_else(|| panic!("no peers array: {report}"))
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect()
}

/// Asserts the stream order of two rails of two streams each on 127.0.0.1 and 127.0.0.2:
/// rail 0's two streams (one peer), then rail 1's.
#[track_caller]
pub fn assert_two_rails_of_two(peers: &[String]) {
    assert!(
        peers[0].starts_with("127.0.0.1:") && peers[1] == peers[0],
        "{peers:?}"
    );
    assert!(
        peers[2].starts_with("127.0.0.2:") && peers[3] == peers[2],
        "{peers:?}"
    );
}

/// Asserts a JSON array line of `recv`/`serve` describes a verified arange array of `dtype`
/// with `shape` (elements) in `order`: its dtype, shape, order, bytes (elements × itemsize),
/// `verified` and `arange`. Returns the bytes.
#[track_caller]
pub fn assert_arange_line(
    v: &serde_json::Value,
    dtype: ringxfer::dtype::DType,
    shape: &[u64],
    order: ringxfer::Order,
) -> u64 {
    let bytes = shape.iter().product::<u64>() * dtype.itemsize() as u64;
    assert_eq!(v["dtype"], dtype.to_string(), "{v}");
    assert_eq!(v["shape"], serde_json::json!(shape), "{v}");
    assert_eq!(v["order"], order.to_string(), "{v}");
    assert_eq!(v["bytes"], bytes, "{v}");
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["arange"], true, "{v}");
    bytes
}
