//! Connections of `send`, `recv` and the streams: listening or connecting (retrying while the
//! peer is not there yet), the shared-key handshake, and what the end of a connection means
//! for the exit status.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ringxfer::auth::{self, AuthKey};

use crate::failure::Failure;
use crate::measure::SockBufArgs;
use crate::xfer::args::{Endpoint, Role};

/// How long `--connect` keeps retrying a refused or unreachable address.
pub const CONNECT_RETRY: Duration = Duration::from_secs(10);

/// `--auth-key`, loaded once at start-up by `send` / `recv` (so a bad key file fails before
/// anything else) and used by [`connect`].
static AUTH_KEY: OnceLock<Option<Arc<AuthKey>>> = OnceLock::new();

/// Sets `--auth-key` for [`connect`] and [`handshake`], once per process (a second call is
/// ignored).
pub fn set_auth_key(key: Option<Arc<AuthKey>>) {
    let _ = AUTH_KEY.set(key);
}

/// Loads `--auth-key FILE` (shared by serve, send and recv): a clear usage error (exit status
/// 2) when the file is unreadable, empty or not a key.
pub fn load_key(path: Option<&PathBuf>) -> Result<Option<Arc<AuthKey>>, Failure> {
    path.map(|p| {
        AuthKey::from_file(p)
            .map(Arc::new)
            .map_err(|e| Failure::usage(format!("--auth-key: {e}")))
    })
    .transpose()
}

/// What the end of the connection means for the exit status, after the data itself moved
/// (and, for recv, was checked): `e` from [`ringxfer::close::finish`] (send) or
/// [`ringxfer::close::expect_eof`] (recv). `expected` names what recv asked for.
pub fn close_outcome(role: Role, e: ringxfer::Error, expected: &str) -> Result<(), Failure> {
    use ringxfer::Error;
    match (role, e) {
        (Role::Send, e) => Err(Failure::runtime(format!(
            "delivery not confirmed: {e}{}",
            if matches!(e, Error::PeerReset { .. }) {
                "; bytes the peer had not read are lost"
            } else {
                ""
            }
        ))),
        (Role::Recv, Error::ExtraBytes { extra, peer_closed }) => Err(Failure::runtime(format!(
            "{extra} extra bytes after {expected}{}",
            if peer_closed {
                ""
            } else {
                " (counted until the wait for the peer's close ran out)"
            }
        ))),
        // Everything expected arrived and was checked; the peer just did not say it is done.
        (Role::Recv, e @ Error::PeerNotClosed { read: 0, .. }) => {
            eprintln!("ringxfer recv: note: {e}; no extra byte arrived");
            Ok(())
        }
        (Role::Recv, e) => Err(Failure::runtime(format!("after {expected}: {e}"))),
    }
}

/// When a transfer failed because the peer closed or reset, the peer may have said why
/// first (`serve` writes `ringxfer serve: refused: …` before closing): read what it sent,
/// without waiting, and put its first line in front of the failure.
pub fn with_server_word(sock: &TcpStream, f: Failure) -> Failure {
    let mut buf = [0u8; 512];
    let _ = sock.set_nonblocking(true);
    let n = std::io::Read::read(&mut &*sock, &mut buf).unwrap_or(0);
    let _ = sock.set_nonblocking(false);
    match server_line(&buf[..n]) {
        Some(line) => Failure {
            message: format!("{line} ({})", f.message),
            ..f
        },
        None => f,
    }
}

/// The first line of `bytes` when it is a `ringxfer serve:` message (e.g. a refusal).
pub fn server_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().next()?;
    line.starts_with("ringxfer serve:").then(|| line.to_owned())
}

/// Keeps the first 512 bytes the peer sent (enough for a server's one-line message).
pub fn keep_head(said: &mut Vec<u8>, b: &[u8]) {
    let room = 512usize.saturating_sub(said.len());
    said.extend_from_slice(&b[..b.len().min(room)]);
}

/// Opens the one connection, listening or connecting as asked, with `--sndbuf` / `--rcvbuf`
/// set before listen() or connect(), and with `--auth-key` runs the handshake on it (the
/// listening side as the server), within [`auth::DEFAULT_TIMEOUT`].
pub fn connect(
    role: Role,
    ep: &Endpoint,
    sb: &SockBufArgs,
) -> Result<(TcpStream, SocketAddr), Failure> {
    let (sock, peer) = open(role, ep, sb)?;
    handshake(&sock, ep.listen.is_some())?;
    Ok((sock, peer))
}

/// With `--auth-key`, runs the shared-key handshake on `sock` (as the server when this side
/// listened), within [`auth::DEFAULT_TIMEOUT`]; nothing without it.
pub fn handshake(sock: &TcpStream, listened: bool) -> Result<(), Failure> {
    match AUTH_KEY.get() {
        Some(Some(key)) if listened => auth::authenticate_server(sock, key, auth::DEFAULT_TIMEOUT)?,
        Some(Some(key)) => auth::authenticate_client(sock, key, auth::DEFAULT_TIMEOUT)?,
        _ => {}
    }
    Ok(())
}

/// The connection of [`connect`], before the handshake.
fn open(role: Role, ep: &Endpoint, sb: &SockBufArgs) -> Result<(TcpStream, SocketAddr), Failure> {
    let fail = |what: String, e: io::Error| Failure::runtime(format!("{what}: {e}"));
    match (&ep.listen, &ep.connect) {
        (Some(addr), _) => {
            let l: TcpListener = sb
                .listen(addr.as_str())
                .map_err(|e| fail(format!("listen on {addr}"), e))?;
            let local = l.local_addr().map_err(|e| fail("local_addr".into(), e))?;
            if addr.ends_with(":0") {
                // The kernel chose the port: say which one the peer should use.
                eprintln!("ringxfer {}: listening on {local}", role.name());
            }
            l.accept()
                .map_err(|e| fail(format!("accept on {local}"), e))
        }
        (None, Some(addr)) => {
            let s = connect_retry(addr, sb, CONNECT_RETRY)?;
            let peer = s.peer_addr().map_err(|e| fail("peer_addr".into(), e))?;
            Ok((s, peer))
        }
        (None, None) => Err(Failure::usage("one of --listen or --connect is required")),
    }
}

/// Connects to `addr`, retrying every 50 ms for up to `patience` while the peer is not
/// accepting yet (refused, or its address not resolvable yet).
pub fn connect_retry(
    addr: &str,
    sb: &SockBufArgs,
    patience: Duration,
) -> Result<TcpStream, Failure> {
    let deadline = Instant::now() + patience;
    loop {
        let attempt = addr.to_socket_addrs().and_then(|addrs| {
            let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
            for a in addrs {
                match sb.connect(&a, Duration::from_secs(2)) {
                    Ok(s) => return Ok(s),
                    Err(e) => last = e,
                }
            }
            Err(last)
        });
        match attempt {
            Ok(s) => return Ok(s),
            // A malformed address will not get better by waiting.
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                return Err(Failure::runtime(format!("connect to {addr}: {e}")));
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(Failure::runtime(format!(
                    "connect to {addr}: {e} (gave up after {} s)",
                    patience.as_secs()
                )));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}
