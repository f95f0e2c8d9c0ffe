//! Connections of `send`, `recv`, `serve` and the streams: listening or connecting over TCP
//! (`host:port`) or a Unix domain socket (`unix:PATH`), retrying while the peer is not there
//! yet (`--connect-timeout`), the shared-key handshake, and what the end of a connection means
//! for the exit status.

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ringxfer::auth::{self, AuthKey};
use socket2::SockRef;

use crate::failure::Failure;
use crate::measure::SockBufArgs;
use crate::xfer::args::{Endpoint, Role};

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

/// How long [`with_server_word`] waits for the peer's line: `serve` may write it from
/// another thread than the one whose close broke this send (a refused striped group), and a
/// loaded machine can delay that thread; 1 s, paid only by a failed send to a peer that
/// neither wrote nor closed.
const SERVER_WORD_WAIT: Duration = Duration::from_secs(1);

/// When a transfer failed because the peer closed or reset, the peer may have said why
/// first (`serve` writes `ringxfer serve: refused: …` before closing): read what it sent and
/// put its first line in front of the failure. The read waits up to [`SERVER_WORD_WAIT`] for
/// the line: over several streams another stream can fail (`serve` closing a refused group)
/// before stream 0's line has arrived. Only a failed transfer pays the wait, and only when
/// the peer sent nothing and did not close.
pub fn with_server_word(sock: &Conn, f: Failure) -> Failure {
    let mut buf = [0u8; 512];
    let _ = sock.set_nonblocking(false);
    let _ = sock.set_read_timeout(Some(SERVER_WORD_WAIT));
    let n = sock.read_once(&mut buf).unwrap_or(0);
    let _ = sock.set_read_timeout(None);
    match server_line(&buf[..n]) {
        Some(line) => Failure {
            message: format!("{line} ({})", f.message),
            ..f
        },
        None => f,
    }
}

/// The first line of `bytes` when it is a ringxfer receiver's message: `ringxfer serve:` (a
/// refusal, or why an array was not taken) or `ringxfer recv:` (a rejection,
/// [`reject_and_abort`], or the receiver's own error for a failed receive).
pub fn server_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().next()?;
    (line.starts_with("ringxfer serve: ") || line.starts_with("ringxfer recv: "))
        .then(|| line.to_owned())
}

/// How the line of [`reject_and_abort`] starts.
pub const REJECTED: &str = "ringxfer recv: rejected: ";

/// A receiver that rejects what the sender sent (more arrays than `--arrays` took) tells the
/// sender why, one line `ringxfer recv: rejected: WHY` (which `ringxfer send` puts in front of
/// its error, as it does a server's refusal), then aborts the connection: `SO_LINGER` 0, so
/// that dropping the socket afterwards sends a TCP reset instead of a FIN. A sender closing
/// gracefully ([`ringxfer::close::finish`]) then gets `PeerReset` ("delivery not confirmed"),
/// whatever program it is: a plain close would let it report success for arrays nobody took.
/// The line is written before the reset, and Linux hands the peer's application the bytes
/// that arrived before a reset, then `ECONNRESET`. On a Unix socket there is no reset
/// (`SO_LINGER` does not apply): the line and the close are what the sender sees. The caller
/// drops the socket (every descriptor of it) right after. Best effort: a peer already gone
/// changes nothing.
pub fn reject_and_abort<S: AsFd>(sock: &S, why: &str) {
    say_and_abort(sock, &format!("{REJECTED}{why}\n"));
}

/// Writes `line` (one line, newline included) to the peer, waiting at most 1 s, then makes
/// the close a reset ([`abort`]): what [`reject_and_abort`] and `serve`'s failed arrays do.
pub fn say_and_abort<S: AsFd>(sock: &S, line: &str) {
    let s = SockRef::from(sock);
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = io::Write::write_all(&mut &*s, line.as_bytes());
    abort(sock);
}

/// Makes the close of `sock` a reset (`SO_LINGER` 0; ignored on a Unix socket).
pub fn abort<S: AsFd>(sock: &S) {
    let _ = SockRef::from(sock).set_linger(Some(Duration::ZERO));
}

/// Keeps the first 512 bytes the peer sent (enough for a server's one-line message).
pub fn keep_head(said: &mut Vec<u8>, b: &[u8]) {
    let room = 512usize.saturating_sub(said.len());
    said.extend_from_slice(&b[..b.len().min(room)]);
}

/// The prefix of a Unix domain socket address: `unix:/run/ringxfer.sock`.
pub const UNIX_PREFIX: &str = "unix:";

/// The path of a `unix:PATH` address, `None` for a TCP one.
pub fn unix_path(addr: &str) -> Option<&str> {
    addr.strip_prefix(UNIX_PREFIX)
}

/// One connected stream socket: TCP, or a Unix domain socket (`unix:PATH`). The library
/// takes either (any `AsFd` stream socket).
#[derive(Debug)]
pub enum Conn {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A Unix domain stream socket.
    Unix(UnixStream),
}

impl AsFd for Conn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Conn::Tcp(s) => s.as_fd(),
            Conn::Unix(s) => s.as_fd(),
        }
    }
}

impl Conn {
    /// Switches non-blocking mode.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_nonblocking(on),
            Conn::Unix(s) => s.set_nonblocking(on),
        }
    }

    /// One `read(2)`.
    pub fn read_once(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => io::Read::read(&mut &*s, buf),
            Conn::Unix(s) => io::Read::read(&mut &*s, buf),
        }
    }

    /// `recv(2)` with `MSG_PEEK`: the bytes waiting, left in the socket.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        rustix::net::recv(self, buf, rustix::net::RecvFlags::PEEK)
            .map(|(n, _)| n)
            .map_err(io::Error::from)
    }

    /// SO_RCVTIMEO.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        SockRef::from(self).set_read_timeout(t)
    }

    /// SO_SNDTIMEO.
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        SockRef::from(self).set_write_timeout(t)
    }

    /// `shutdown(2)`.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        SockRef::from(self).shutdown(how)
    }

    /// A second handle on the same socket.
    pub fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
        })
    }
}

impl io::Write for &Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => (&*s).write(buf),
            Conn::Unix(s) => (&*s).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A listening socket: TCP, or a Unix domain socket (`unix:PATH`).
#[derive(Debug)]
pub enum Listener {
    /// Listening on a TCP address.
    Tcp(TcpListener),
    /// Listening on a Unix socket path (kept as given, `unix:PATH`).
    Unix(UnixListener, String),
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l, _) => l.as_fd(),
        }
    }
}

impl Listener {
    /// Listens on `addr` (`host:port` or `unix:PATH`), TCP with `sb`'s buffer sizes set
    /// before listen().
    pub fn bind(addr: &str, sb: &SockBufArgs) -> Result<Listener, Failure> {
        match unix_path(addr) {
            Some(path) => Ok(Listener::Unix(listen_unix(path)?, addr.to_owned())),
            None => sb
                .listen(addr)
                .map(Listener::Tcp)
                .map_err(|e| io_fail(format!("listen on {addr}"), e)),
        }
    }

    /// The bound address as printed: `127.0.0.1:5000` (the port the kernel chose for port
    /// 0), or `unix:PATH`.
    pub fn local(&self) -> Result<String, Failure> {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .map_err(|e| io_fail("local_addr".into(), e)),
            Listener::Unix(_, addr) => Ok(addr.clone()),
        }
    }

    /// True when only this machine can connect: a loopback TCP address or a Unix socket.
    pub fn is_local(&self) -> bool {
        match self {
            Listener::Tcp(l) => l.local_addr().is_ok_and(|a| a.ip().is_loopback()),
            Listener::Unix(..) => true,
        }
    }

    /// The next connection and its peer as printed (`host:port`; a Unix socket's peer has no
    /// name: `unix:PATH#N`, the N-th connection accepted, counted from 1).
    pub fn accept(&self, n: u64) -> io::Result<(Conn, String)> {
        match self {
            Listener::Tcp(l) => l.accept().map(|(s, p)| (Conn::Tcp(s), p.to_string())),
            Listener::Unix(l, addr) => l
                .accept()
                .map(|(s, _)| (Conn::Unix(s), format!("{addr}#{n}"))),
        }
    }
}

/// Opens the one connection, listening or connecting as asked, with `--sndbuf` / `--rcvbuf`
/// set before listen() or connect() (TCP; on a Unix socket once connected), and with
/// `--auth-key` runs the handshake on it (the listening side as the server), within
/// [`auth::DEFAULT_TIMEOUT`]. Returns the connection and the peer's address as printed
/// (`host:port`, or `unix:PATH`).
pub fn connect(
    role: Role,
    ep: &Endpoint,
    sb: &SockBufArgs,
    patience: Duration,
) -> Result<(Conn, String), Failure> {
    let (sock, peer) = open(role, ep, sb, patience)?;
    handshake(&sock, ep.listen.is_some())?;
    Ok((sock, peer))
}

/// With `--auth-key`, runs the shared-key handshake on `sock` (as the server when this side
/// listened), within [`auth::DEFAULT_TIMEOUT`]; nothing without it.
pub fn handshake<S: AsFd>(sock: &S, listened: bool) -> Result<(), Failure> {
    match AUTH_KEY.get() {
        Some(Some(key)) if listened => auth::authenticate_server(sock, key, auth::DEFAULT_TIMEOUT)?,
        Some(Some(key)) => auth::authenticate_client(sock, key, auth::DEFAULT_TIMEOUT)?,
        _ => {}
    }
    Ok(())
}

fn io_fail(what: String, e: io::Error) -> Failure {
    Failure::runtime(format!("{what}: {e}"))
}

/// The connection of [`connect`], before the handshake.
fn open(
    role: Role,
    ep: &Endpoint,
    sb: &SockBufArgs,
    patience: Duration,
) -> Result<(Conn, String), Failure> {
    let who = format!("ringxfer {}", role.name());
    match (&ep.listen, &ep.connect) {
        (Some(addr), _) => match unix_path(addr) {
            Some(path) => {
                let l = listen_unix(path)?;
                let accepted = l.accept();
                // The one connection is made (or failed): the name is not needed any more.
                let _ = std::fs::remove_file(path);
                let (s, _) = accepted.map_err(|e| io_fail(format!("accept on {addr}"), e))?;
                sb.apply_to(&s)
                    .map_err(|e| io_fail("--sndbuf / --rcvbuf".into(), e))?;
                Ok((Conn::Unix(s), addr.clone()))
            }
            None => {
                let l: TcpListener = sb
                    .listen(addr.as_str())
                    .map_err(|e| io_fail(format!("listen on {addr}"), e))?;
                let local = l
                    .local_addr()
                    .map_err(|e| io_fail("local_addr".into(), e))?;
                if addr.ends_with(":0") {
                    // The kernel chose the port: say which one the peer should use.
                    eprintln!("{who}: listening on {local}");
                }
                let (s, peer) = l
                    .accept()
                    .map_err(|e| io_fail(format!("accept on {local}"), e))?;
                Ok((Conn::Tcp(s), peer.to_string()))
            }
        },
        (None, Some(addr)) => {
            let s = connect_retry(&who, addr, sb, patience)?;
            let peer = match &s {
                Conn::Tcp(t) => t
                    .peer_addr()
                    .map_err(|e| io_fail("peer_addr".into(), e))?
                    .to_string(),
                Conn::Unix(_) => addr.clone(),
            };
            Ok((s, peer))
        }
        (None, None) => Err(Failure::usage("one of --listen or --connect is required")),
    }
}

/// A Unix domain socket listening on `path`. An existing file at `path` is not removed (it
/// may be another server's socket): that is an error naming it.
pub fn listen_unix(path: &str) -> Result<UnixListener, Failure> {
    UnixListener::bind(path).map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::AddrInUse {
            " (the file exists: remove it if no server uses it)"
        } else {
            ""
        };
        io_fail(format!("listen on {UNIX_PREFIX}{path}"), e).with_suffix(hint)
    })
}

/// Connects to `addr` (`host:port` or `unix:PATH`), retrying every 50 ms for up to `patience`
/// while the peer is not accepting yet (refused, its socket file not there yet, or its address
/// not resolvable yet). The first failed attempt says on stderr, once, that it is retrying.
pub fn connect_retry(
    who: &str,
    addr: &str,
    sb: &SockBufArgs,
    patience: Duration,
) -> Result<Conn, Failure> {
    let deadline = Instant::now() + patience;
    let mut said = false;
    loop {
        let attempt = match unix_path(addr) {
            Some(path) => UnixStream::connect(path).and_then(|s| {
                sb.apply_to(&s)?;
                Ok(Conn::Unix(s))
            }),
            None => addr.to_socket_addrs().and_then(|addrs| {
                let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
                for a in addrs {
                    match sb.connect(&a, Duration::from_secs(2)) {
                        Ok(s) => return Ok(Conn::Tcp(s)),
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }),
        };
        match attempt {
            Ok(s) => return Ok(s),
            // A malformed address will not get better by waiting.
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                return Err(Failure::runtime(format!("connect to {addr}: {e}")));
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(Failure::runtime(format!(
                    "connect to {addr}: {e} (gave up after {} s, --connect-timeout)",
                    patience.as_secs_f64()
                )));
            }
            Err(e) => {
                if !said {
                    eprintln!(
                        "{who}: connect to {addr}: {e}; retrying for up to {} s \
                         (--connect-timeout)",
                        patience.as_secs_f64()
                    );
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Peeks (leaves unread) `buf.len()` bytes of `sock`, waiting until that many are there, the
/// peer closes, or `deadline` passes: `recv(MSG_PEEK | MSG_WAITALL)` under `SO_RCVTIMEO`, so
/// the wait sleeps in the kernel (no polling loop); an interrupted wait (`EINTR`) resumes
/// with the time left. Returns the bytes peeked: all of them, or fewer when the peer closed,
/// the socket was shut down, or the deadline passed after some came. On a Unix domain socket
/// the kernel does not wait for more with `MSG_PEEK` (`unix_stream_read_generic` stops at the
/// end of the queue): fewer come back when the bytes so far were written apart — which a
/// sender's one 56-byte stripe prefix (one write, one buffer) never is; measured: a prefix
/// written as 8 + 48 bytes 0.4 s apart gives `serve --listen unix:PATH` a `bad_stripe` line.
///
/// # Errors
/// `TimedOut` when the deadline passed with nothing to read; the OS error otherwise.
pub fn peek_full<S: AsFd>(
    sock: &S,
    buf: &mut [u8],
    deadline: Option<Instant>,
) -> io::Result<usize> {
    use rustix::net::RecvFlags;
    let s = SockRef::from(sock);
    let r = loop {
        let left = match deadline {
            None => None,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(l) if !l.is_zero() => Some(l),
                _ => break Err(io::Error::from(io::ErrorKind::TimedOut)),
            },
        };
        s.set_read_timeout(left)?;
        match rustix::net::recv(sock, &mut *buf, RecvFlags::PEEK | RecvFlags::WAITALL) {
            Ok((_, n)) => break Ok(n),
            Err(e) if e == rustix::io::Errno::INTR => {}
            Err(e) if e == rustix::io::Errno::AGAIN => {
                break Err(io::Error::from(io::ErrorKind::TimedOut));
            }
            Err(e) => break Err(e.into()),
        }
    };
    s.set_read_timeout(None)?;
    r
}
