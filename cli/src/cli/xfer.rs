//! `ringxfer send` / `ringxfer recv`: arrays between two processes.
//!
//! Framed mode (the default) is in [`super::framed`]. Raw mode (`--raw`) puts exactly the array's bytes on the wire, nothing else: what a numpy peer doing
//! `sock.send(memoryview(a).cast('B'))` sends, or `sock.recv_into(memoryview(a).cast('B'))`
//! expects. Either side may listen (it accepts one connection); `--connect` retries for
//! [`CONNECT_RETRY`] so the peer may start second.
//!
//! The sender builds the arange pattern and its CRC-32 before connecting; the receiver
//! allocates (and touches) its buffer before connecting. The clock runs from the established
//! connection to the end of `send_from` (every byte handed to the kernel) or `recv_into`
//! (every byte received). Both report the CPU (user and system seconds) of the thread that
//! moved the bytes over the same stretch ([`super::measure`]), and the socket's effective
//! SO_SNDBUF / SO_RCVBUF (`--sndbuf` / `--rcvbuf` set them before connect or listen).
//!
//! After the array, `send` closes gracefully ([`ringxfer::close::finish`]: shut down its write
//! side, drain what the peer sends until the peer closes) so a close never becomes a reset
//! that loses the tail of the array (C16); when the peer resets or does not close within
//! `--timeout` (30 s without one) it exits 1 saying delivery is not confirmed. `recv` reads on
//! until the peer closes ([`ringxfer::close::expect_eof`], same bound) and exits 1 naming
//! the extra bytes when the peer sent more than the array. Neither wait is on the clock.
//!
//! With `-i SECS` progress goes to stderr while the transfer runs (a bar on a terminal, else a
//! line per interval), and the raw array moves in 64 MiB `send_from` / `recv_into` calls so
//! the bytes can be counted; without `-i` it is one call.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use clap::Args;
use ringxfer::auth::{self, AuthKey};
use ringxfer::dtype::{fill_arange, verify_arange};
use ringxfer::{ActiveBackend, Engine, Options};
use serde::Serialize;

use super::framed::FramedArgs;
use super::measure::{
    Cpu, Progress, SockBufArgs, SockBufs, cpu_text, recv_chunked, say_notices, send_chunked,
    with_cpu,
};
use super::{ArrayArgs, BackendArg, Buffer, Failure, TuningArgs, crc32_hex, gbytes_per_s};

/// How long `--connect` keeps retrying a refused or unreachable address.
pub(super) const CONNECT_RETRY: Duration = Duration::from_secs(10);

/// Which side of the transfer this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends the arange pattern.
    Send,
    /// Receives and checks it.
    Recv,
}

impl Role {
    /// `"send"` or `"recv"`.
    pub(super) fn name(self) -> &'static str {
        match self {
            Role::Send => "send",
            Role::Recv => "recv",
        }
    }
}

/// Where the connection comes from: exactly one of `--listen` / `--connect`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(super) struct Endpoint {
    /// Listen on ADDR (e.g. 127.0.0.1:5000, [::]:5000) and accept one connection. Raw mode:
    /// several comma-separated addresses are rails (A,B), each accepting --streams
    /// connections (see --streams for the order).
    #[arg(long, value_name = "ADDR[,ADDR...]")]
    pub(super) listen: Option<String>,
    /// Connect to ADDR (host:port), retrying for up to 10 s while the peer is not listening.
    /// Raw mode: several comma-separated addresses are rails, each getting --streams
    /// connections.
    #[arg(long, value_name = "ADDR[,ADDR...]")]
    pub(super) connect: Option<String>,
}

impl Endpoint {
    /// The addresses of `--listen` or `--connect` (one per rail), in the order given.
    ///
    /// # Errors
    /// A usage error for an empty address (`A,,B`, a trailing comma).
    pub(super) fn rails(&self) -> Result<Vec<String>, Failure> {
        let list = self.listen.as_ref().or(self.connect.as_ref());
        let Some(list) = list else {
            return Err(Failure::usage("one of --listen or --connect is required"));
        };
        let rails: Vec<String> = list.split(',').map(|a| a.trim().to_owned()).collect();
        if rails.iter().any(String::is_empty) {
            return Err(Failure::usage(format!(
                "empty address in {list:?}: rails are comma-separated host:port addresses"
            )));
        }
        Ok(rails)
    }
}

/// Arguments of `ringxfer send` and `ringxfer recv`.
#[derive(Debug, Args)]
pub struct XferArgs {
    #[command(flatten)]
    pub(super) endpoint: Endpoint,
    /// Raw mode: the wire carries only the array bytes, no header (the receiver must be told
    /// --dtype and --count). Without it, arrays are framed (docs/PROTOCOL.md).
    #[arg(long)]
    pub(super) raw: bool,
    #[command(flatten)]
    pub(super) array: ArrayArgs,
    #[command(flatten)]
    pub(super) framed: FramedArgs,
    /// Engine backend.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub(super) backend: BackendArg,
    /// Print JSON (one object per line) instead of text.
    #[arg(long)]
    pub(super) json: bool,
    /// Fail when no byte moves for this many seconds (default: wait forever). Also bounds the
    /// wait for the peer's close after the data (send: the graceful close; recv: the
    /// extra-bytes check), 30 s without it.
    #[arg(long, value_name = "SECS", value_parser = super::parse_secs)]
    pub(super) timeout: Option<Duration>,
    /// Raw mode: register the array as fixed buffers before the connection is made.
    #[arg(long)]
    pub(super) registered: bool,
    #[command(flatten)]
    pub(super) tuning: TuningArgs,
    /// Report progress every SECS on stderr: a bar on a terminal, else one line per interval
    /// (`[  1.00-  2.00 s]  3.9 GB  31.20 Gbit/s`). Raw mode then moves the array in 64 MiB
    /// calls (the same bytes on the wire); framed mode counts whole arrays.
    #[arg(short = 'i', long, value_name = "SECS", value_parser = super::parse_secs,
          conflicts_with = "registered")]
    pub(super) interval: Option<Duration>,
    #[command(flatten)]
    pub(super) sockbufs: SockBufArgs,
    /// send (framed): print the lines the server (`ringxfer serve`) sends back after the last
    /// array, its per-array reports (like iperf3's --get-server-output). Every send
    /// half-closes and reads until the peer closes; this keeps what arrives instead of
    /// discarding it.
    #[arg(long)]
    pub(super) get_server_output: bool,
    /// Raw mode: connections per rail (address), the array striped over all of them (total =
    /// rails x N): stream i carries the i-th contiguous stripe (4 KiB-aligned), received in
    /// place. Both sides must give the same rails and N. Order: the sender connects its streams
    /// one after another in rail order (rail 0's N, then rail 1's, ...), each connect complete
    /// before the next; the receiver accepts per rail in order that rail's N connections in
    /// accept order, and fails when the sender opens fewer (none more for --timeout, 10 s
    /// without it) or more (an extra connection is pending once the data starts).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub(super) streams: u32,
    /// Raw mode: both directions at once (as iperf3 --bidir): each side sends the arange array
    /// and receives one of the same size on the same connection(s), both checked; the report
    /// gives each direction's time and GB/s (each direction has its own engine and thread).
    #[arg(long)]
    pub(super) bidir: bool,
    /// Shared-key authentication: prove (and make the peer prove) the key in FILE right after
    /// the connection is made, before any array moves (docs/PROTOCOL.md). The side that
    /// connects is the client, the side that listens the server; both need the same file.
    #[arg(long, value_name = "FILE")]
    pub(super) auth_key: Option<PathBuf>,
}

/// `--auth-key`, loaded once at start-up by [`run`] (so a bad key file fails before anything
/// else) and used by [`connect`].
static AUTH_KEY: OnceLock<Option<Arc<AuthKey>>> = OnceLock::new();

/// The `--json` report.
#[derive(Debug, Serialize)]
struct Report {
    role: &'static str,
    backend: &'static str,
    /// Connections the array moved over (1 here; see `super::streams`).
    streams: u32,
    dtype: String,
    count: u64,
    bytes: usize,
    seconds: f64,
    gbytes_per_s: f64,
    crc32: String,
    /// recv only: the bytes are the arange pattern.
    #[serde(skip_serializing_if = "Option::is_none")]
    verified: Option<bool>,
    /// recv only, when not verified: index of the first element that differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    first_bad_element: Option<u64>,
    /// With `--registered`: the kernel accepted the registration.
    #[serde(skip_serializing_if = "Option::is_none")]
    registered: Option<bool>,
    peer: String,
    /// CPU of the thread that moved the bytes, over the clock's stretch.
    cpu: Option<Cpu>,
    /// The socket's effective buffer sizes.
    socket_buffers: SockBufs,
    /// send only: bytes the peer sent that were read and discarded while closing gracefully.
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_bytes_discarded: Option<u64>,
}

/// Runs `ringxfer send` or `ringxfer recv`.
pub fn run(role: Role, a: &XferArgs) -> Result<(), Failure> {
    let _ = AUTH_KEY.set(super::serve::load_key(a.auth_key.as_ref())?);
    let rails = a.endpoint.rails()?;
    let multi = a.streams > 1 || rails.len() > 1 || a.bidir;
    if !a.raw {
        if multi {
            return Err(Failure::usage(
                "--streams > 1, several --listen/--connect addresses (rails) and --bidir need \
                 --raw: framed striping is not implemented yet",
            ));
        }
        return super::framed::run(role, a);
    }
    if let Some(flag) = a.framed.given() {
        return Err(Failure::usage(format!(
            "{flag} is for framed mode, not --raw"
        )));
    }
    if a.get_server_output {
        return Err(Failure::usage(
            "--get-server-output is for framed mode (a ringxfer serve peer), not --raw",
        ));
    }
    let spec = a.array.resolve()?;
    let opts = Options {
        backend: a.backend.backend(),
        idle_timeout: a.timeout,
        uring: a.tuning.tuning()?,
        ..Options::default()
    };
    if multi {
        return super::streams::run(role, a, &rails, spec, &opts);
    }
    let mut engine = Engine::with_options(opts)?;
    if let Some(reason) = engine.fallback_reason() {
        eprintln!(
            "ringxfer {}: using the blocking backend: {reason}",
            role.name()
        );
    }
    let backend = engine.backend().name();

    let mut buf = Buffer::zeroed(spec.bytes)?;
    let send_crc = (role == Role::Send).then(|| {
        fill_arange(spec.dtype, buf.bytes_mut());
        crc32_hex(buf.bytes())
    });

    let progress = Progress::start(a.interval, spec.bytes as u64);
    let t = transfer(role, a, &mut engine, &mut buf, progress.as_ref());
    if let Some(p) = progress {
        p.finish();
    }
    let Moved {
        seconds,
        registered,
        peer,
        cpu,
        bufs,
        closed,
    } = t?;
    say_notices(role.name(), &engine);

    let (crc32, check) = match send_crc {
        Some(crc) => (crc, None),
        None => (
            crc32_hex(buf.bytes()),
            Some(verify_arange(spec.dtype, buf.bytes())),
        ),
    };
    let report = Report {
        role: role.name(),
        backend,
        streams: 1,
        dtype: spec.dtype.to_string(),
        count: spec.count,
        bytes: spec.bytes,
        seconds,
        gbytes_per_s: gbytes_per_s(spec.bytes, seconds),
        crc32,
        verified: check.map(|c| c.is_ok()),
        first_bad_element: check.and_then(|c| c.err()),
        registered,
        peer: peer.to_string(),
        cpu,
        socket_buffers: bufs,
        peer_bytes_discarded: match (role, &closed) {
            (Role::Send, Ok(n)) => Some(*n),
            _ => None,
        },
    };
    if a.json {
        let json = serde_json::to_string(&report)
            .map_err(|e| Failure::runtime(format!("cannot encode the report: {e}")))?;
        println!("{json}");
    } else {
        println!(
            "{}: {} x {} = {} bytes in {:.4} s: {:.3} GB/s ({:.2} Gbit/s), backend {}, peer {}, \
             crc32 {}{}, {}",
            report.role,
            report.count,
            report.dtype,
            report.bytes,
            report.seconds,
            report.gbytes_per_s,
            report.gbytes_per_s * 8.0,
            report.backend,
            report.peer,
            report.crc32,
            match report.verified {
                Some(true) => ", arange pattern verified",
                Some(false) => ", ARANGE PATTERN MISMATCH",
                None => "",
            },
            cpu_text(report.cpu)
        );
    }
    if let Some(Err(i)) = check {
        let item = spec.dtype.itemsize() as u64;
        return Err(Failure::runtime(format!(
            "received data is not the {} arange pattern: first mismatch at element {i} \
             (byte offset {})",
            spec.dtype,
            i * item
        )));
    }
    closed.map(drop).or_else(|e| {
        close_outcome(
            role,
            e,
            &format!("the {} bytes expected (--count/--size)", spec.bytes),
        )
    })
}

/// What the end of the connection means for the exit status, after the data itself moved
/// (and, for recv, was checked): `e` from [`ringxfer::close::finish`] (send) or
/// [`ringxfer::close::expect_eof`] (recv). `expected` names what recv asked for.
pub(super) fn close_outcome(role: Role, e: ringxfer::Error, expected: &str) -> Result<(), Failure> {
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

/// What [`transfer`] measured.
struct Moved {
    /// Seconds the transfer took.
    seconds: f64,
    /// Whether the array was registered (`None` without `--registered`).
    registered: Option<bool>,
    peer: SocketAddr,
    cpu: Option<Cpu>,
    bufs: SockBufs,
    /// How the connection ended: send: the peer's bytes discarded by the graceful close;
    /// recv: the end-of-stream check (`Ok(0)`).
    closed: ringxfer::Result<u64>,
}

/// Registers the array (with `--registered`, before the connection so the peer does not
/// wait for it), connects and moves the array.
fn transfer(
    role: Role,
    a: &XferArgs,
    engine: &mut Engine,
    buf: &mut Buffer,
    p: Option<&Progress>,
) -> Result<Moved, Failure> {
    let uring = engine.backend() == ActiveBackend::Uring;
    match (role, a.registered) {
        (Role::Send, true) => {
            let mut g = engine.register_send(buf.bytes());
            warn_refusal(role, uring, g.is_registered(), g.fallback_reason());
            let m = connected(role, a, |s| g.send(s))?;
            Ok(Moved {
                registered: Some(g.is_registered()),
                ..m
            })
        }
        (Role::Send, false) => connected(role, a, |s| send_chunked(engine, s, buf.bytes(), p)),
        (Role::Recv, true) => {
            let mut g = engine.register_recv(buf.bytes_mut());
            warn_refusal(role, uring, g.is_registered(), g.fallback_reason());
            let m = connected(role, a, |s| g.recv(s))?;
            Ok(Moved {
                registered: Some(g.is_registered()),
                ..m
            })
        }
        (Role::Recv, false) => {
            let bytes = buf.bytes_mut();
            connected(role, a, |s| recv_chunked(engine, s, bytes, p))
        }
    }
}

/// Opens the connection and runs `op` on it, timed (clock and CPU); then, off the clock,
/// ends it: send closes gracefully, recv checks that nothing follows (both bounded by
/// `--timeout`, [`ringxfer::close::DEFAULT_CLOSE_TIMEOUT`] without it).
fn connected(
    role: Role,
    a: &XferArgs,
    op: impl FnOnce(&TcpStream) -> ringxfer::Result<()>,
) -> Result<Moved, Failure> {
    let (sock, peer) = connect(role, &a.endpoint, &a.sockbufs)?;
    let bufs = SockBufs::of(&sock);
    let ((r, seconds), cpu) = with_cpu(|| {
        let t = Instant::now();
        let r = op(&sock);
        (r, t.elapsed().as_secs_f64())
    });
    r.map_err(|e| with_server_word(&sock, Failure::from(e)))?;
    let closed = match role {
        Role::Send => {
            let mut said = Vec::new();
            let r = ringxfer::close::finish_with(&sock, a.timeout, |b| keep_head(&mut said, b));
            if let (Err(e), Some(line)) = (&r, server_line(&said)) {
                return Err(Failure::runtime(format!(
                    "{line} (delivery not confirmed: {e})"
                )));
            }
            r.map(|f| f.peer_bytes)
        }
        Role::Recv => ringxfer::close::expect_eof(&sock, a.timeout).map(|()| 0),
    };
    Ok(Moved {
        seconds,
        registered: None,
        peer,
        cpu,
        bufs,
        closed,
    })
}

/// When a transfer failed because the peer closed or reset, the peer may have said why
/// first (`serve` writes `ringxfer serve: refused: …` before closing): read what it sent,
/// without waiting, and put its first line in front of the failure.
pub(super) fn with_server_word(sock: &TcpStream, f: Failure) -> Failure {
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
pub(super) fn server_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().next()?;
    line.starts_with("ringxfer serve:").then(|| line.to_owned())
}

/// Keeps the first 512 bytes the peer sent (enough for a server's one-line message).
pub(super) fn keep_head(said: &mut Vec<u8>, b: &[u8]) {
    let room = 512usize.saturating_sub(said.len());
    said.extend_from_slice(&b[..b.len().min(room)]);
}

/// Says once on stderr why the kernel refused to register the array (the transfer still
/// runs, unregistered).
fn warn_refusal(role: Role, uring: bool, registered: bool, reason: Option<&str>) {
    if let Some(reason) = super::refusal(uring, registered, reason) {
        eprintln!(
            "ringxfer {}: the kernel refused to register the array: {reason}",
            role.name()
        );
    }
}

/// Opens the one connection, listening or connecting as asked, with `--sndbuf` / `--rcvbuf`
/// set before listen() or connect(), and with `--auth-key` runs the handshake on it (the
/// listening side as the server), within [`auth::DEFAULT_TIMEOUT`].
pub(super) fn connect(
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
pub(super) fn handshake(sock: &TcpStream, listened: bool) -> Result<(), Failure> {
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
pub(super) fn connect_retry(
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
