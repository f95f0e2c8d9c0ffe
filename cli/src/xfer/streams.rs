//! `ringxfer send|recv --raw` over several connections: `--streams N`, rails (several
//! `--listen` / `--connect` addresses) and `--bidir`. Framed striping ([`super::striped`])
//! opens, accepts and closes its streams with the functions here.
//!
//! The array is striped with [`Engine::send_striped`] / [`Engine::recv_striped`]: stream `i`
//! carries the `i`-th contiguous, 4 KiB-aligned stripe ([`ringxfer::stripes`]), which the
//! receiver writes in place. Raw mode has no header, so both ends must agree on the streams
//! and their order:
//!
//! * the sender connects its streams one after another in rail order (rail 0's N streams,
//!   then rail 1's, …), each connect complete before the next;
//! * the receiver binds every rail first, then accepts, rail by rail in order, that rail's N
//!   connections in accept order (a listen queue is FIFO in handshake order).
//!
//! The receiver checks the count: once its first connection is in, each further one must come
//! within `--timeout` ([`STREAMS_PATIENCE`] without it) or it fails saying how many came;
//! and once the first byte (or end of stream) is readable on stream 0 — the sender connects
//! every stream before sending anything — a connection still pending on any rail means the
//! sender opened more streams than this side expects, which fails too. Neither mismatch hangs.
//! A listening *sender* (`send --listen`, the receiver connecting) has no byte to wait for —
//! a receiver sends nothing — so it looks for a pending connection after its data, and again
//! after every stream is closed (the receiver closes only once it has received, after all its
//! connects): one there means the receiver opened more streams than this side.
//!
//! `--bidir`: each side sends the arange array and receives one of the same size on the same
//! connections at the same time, on two threads with an engine each, so each direction has
//! its own clock (from a barrier both threads pass to the end of its striped call) and its own
//! CPU figure. Both directions are verified.
//!
//! After the data, every stream is ended as the single-stream command does, in stream order:
//! the sender closes each gracefully ([`ringxfer::close::finish`]), the receiver checks each
//! for extra bytes ([`ringxfer::close::expect_eof`]) and closes it; with `--bidir` both sides
//! do the graceful close and any byte the peer sent after the array is an extra-bytes error.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use ringxfer::dtype::verify_arange;
use ringxfer::{Engine, Options};
use serde::Serialize;
use socket2::SockRef;

use super::args::{Role, XferArgs};
use super::raw::{Memory, memory};
use crate::args::ArraySpec;
use crate::failure::Failure;
use crate::measure::{Cpu, SockBufs, cpu_text, say_notices, with_cpu};
use crate::net::{Conn, close_outcome, connect_retry, handshake};
use crate::report::crc32_hex;
use crate::report::gbytes_per_s;
use ringxfer::file::MappedFile;

/// How long the receiver waits for each further connection after the first, without
/// `--timeout`: 10 s (the sender connects its streams back to back).
pub const STREAMS_PATIENCE: Duration = Duration::from_secs(10);

/// One direction's figures.
#[derive(Debug, Serialize)]
struct Direction {
    bytes: usize,
    seconds: f64,
    gbytes_per_s: f64,
    /// CPU of the thread that moved this direction's bytes, over its clock.
    cpu: Option<Cpu>,
}

/// The `--json` report of a striped or `--bidir` transfer.
#[derive(Debug, Serialize)]
struct Report {
    role: &'static str,
    backend: &'static str,
    dtype: String,
    count: u64,
    bytes: usize,
    /// Connections in all: rails x streams_per_rail.
    streams: usize,
    streams_per_rail: u32,
    /// The `--listen` / `--connect` addresses, one per rail.
    rails: Vec<String>,
    /// Each stream's peer address, in stream order.
    peers: Vec<String>,
    bidir: bool,
    /// The array's direction for `send` / `recv` (the sent one with `--bidir`).
    seconds: f64,
    gbytes_per_s: f64,
    /// CRC-32 of the array sent (send), or received (recv).
    crc32: String,
    /// recv and `--bidir`: the received bytes are the arange pattern.
    #[serde(skip_serializing_if = "Option::is_none")]
    verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_bad_element: Option<u64>,
    cpu: Option<Cpu>,
    /// `--bidir`: this side's sending direction.
    #[serde(skip_serializing_if = "Option::is_none")]
    sent: Option<Direction>,
    /// `--bidir`: this side's receiving direction.
    #[serde(skip_serializing_if = "Option::is_none")]
    received: Option<Direction>,
    /// Stream 0's effective buffer sizes (every stream gets the same `--sndbuf`/`--rcvbuf`).
    socket_buffers: SockBufs,
    /// send (and `--bidir`): bytes the peer sent that were read and discarded while closing.
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_bytes_discarded: Option<u64>,
    /// send `--file`: the file sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    /// recv `--out`: the file written.
    #[serde(skip_serializing_if = "Option::is_none")]
    out: Option<String>,
}

/// Runs a raw `send` / `recv` with several streams, rails or `--bidir`.
// Over 100 lines: the striped transfer's sequence (engines, connections per rail, the two
// directions' threads, the checks of every stream, the close of each) shares the streams and
// buffers it opened; `open_streams`, `close_streams` and `print` are split off already.
pub(crate) fn run(
    role: Role,
    a: &XferArgs,
    rails: &[String],
    spec: ArraySpec,
    opts: &Options,
    file: Option<MappedFile>,
) -> Result<(), Failure> {
    if a.registered {
        return Err(Failure::usage(
            "--registered is for one stream without --bidir (the striped calls are one-shot)",
        ));
    }
    if a.interval.is_some() {
        return Err(Failure::usage(
            "-i/--interval is for one stream without --bidir (striped transfers report at the end)",
        ));
    }
    let new_engine = || -> Result<Engine, Failure> {
        let e = crate::report::engine(role.name(), opts.clone())?;
        Ok(e)
    };
    let mut tx_engine = new_engine()?;
    let mut rx_engine = if a.bidir { Some(new_engine()?) } else { None };
    let backend = tx_engine.backend().name();

    let sends = role == Role::Send || a.bidir;
    let receives = role == Role::Recv || a.bidir;
    // Send: the arange pattern or `--file`; receive: a buffer to check or the `--out` file.
    let none = |r: bool| {
        if r {
            spec
        } else {
            ArraySpec { bytes: 0, ..spec }
        }
    };
    let data = memory(Role::Send, a, none(sends), file)?;
    let mut got = memory(Role::Recv, a, none(receives), None)?;
    let to_file = matches!(got, Memory::Out(_));
    let got_bytes = got
        .writable()
        .expect("receive memory is a buffer or an --out file");

    let (socks, listeners) = open_streams(role, a, rails)?;
    // A listening side that only sends gets no byte on stream 0 to wait for (the receiver
    // sends nothing): it looks for an extra connection after the data and the close instead.
    let send_only = listeners.as_deref().filter(|_| !receives);
    if let (Some(l), true) = (&listeners, receives) {
        check_no_extra(&socks, l, a)?;
    }
    let peers: Vec<String> = socks.iter().map(|(_, p)| p.to_string()).collect();
    let socks: Vec<TcpStream> = socks.into_iter().map(|(s, _)| s).collect();
    let bufs = SockBufs::of(&socks[0]);

    // The data, on the clock(s).
    let (sent, received) = if a.bidir {
        let rx = rx_engine.as_mut().expect("bidir has two engines");
        let barrier = Barrier::new(2);
        let (s, r) = thread::scope(|sc| {
            let t = sc.spawn(|| {
                barrier.wait();
                timed(|| tx_engine.send_striped(&socks, data.bytes()))
            });
            barrier.wait();
            let r = timed(|| rx.recv_striped(&socks, got_bytes));
            (t.join(), r)
        });
        let s = s.map_err(|_| Failure::runtime("the sending thread panicked"))?;
        match (s, r) {
            (Ok(s), Ok(r)) => (Some(s), Some(r)),
            (Err(e), Ok(_)) => return Err(Failure::runtime(format!("send: {e}"))),
            (Ok(_), Err(e)) => return Err(Failure::runtime(format!("recv: {e}"))),
            (Err(s), Err(r)) => return Err(Failure::runtime(format!("recv: {r}; send: {s}"))),
        }
    } else if sends {
        (
            Some(timed(|| tx_engine.send_striped(&socks, data.bytes()))?),
            None,
        )
    } else {
        (
            None,
            Some(timed(|| tx_engine.recv_striped(&socks, got_bytes))?),
        )
    };
    say_notices(role.name(), &tx_engine);
    if let Some(rx) = &rx_engine {
        say_notices(role.name(), rx);
    }

    if let Some(l) = send_only {
        no_pending(peers.len(), l, a, "receiver")?;
    }
    // Off the clock: end every stream, in stream order.
    let closed = close_streams(role, a, socks, &peers, None);
    // The receiver closes a stream only once it has received, so after every stream was
    // closed all its connections are in: one still pending is one too many.
    let closed = closed.and_then(|n| match send_only {
        Some(l) => no_pending(peers.len(), l, a, "receiver").map(|()| n),
        None => Ok(n),
    });

    let check = (receives && !to_file).then(|| verify_arange(spec.dtype, got.bytes()));
    let dir = |t: Option<(f64, Option<Cpu>)>| {
        t.map(|(seconds, cpu)| Direction {
            bytes: spec.bytes,
            seconds,
            gbytes_per_s: gbytes_per_s(spec.bytes, seconds),
            cpu,
        })
    };
    let (sent, received) = (dir(sent), dir(received));
    let main = match role {
        Role::Send => sent.as_ref(),
        Role::Recv => received.as_ref(),
    }
    .expect("this role's direction ran");
    let report = Report {
        role: role.name(),
        backend,
        dtype: spec.dtype.to_string(),
        count: spec.count,
        bytes: spec.bytes,
        streams: peers.len(),
        streams_per_rail: a.streams,
        rails: rails.to_vec(),
        peers: peers.clone(),
        bidir: a.bidir,
        seconds: main.seconds,
        gbytes_per_s: main.gbytes_per_s,
        crc32: crc32_hex(if role == Role::Send {
            data.bytes()
        } else {
            got.bytes()
        }),
        verified: check.map(|c| c.is_ok()),
        first_bad_element: check.and_then(|c| c.err()),
        cpu: main.cpu,
        socket_buffers: bufs,
        peer_bytes_discarded: match (&closed, sends) {
            (Ok(n), true) => Some(*n),
            _ => None,
        },
        sent: a.bidir.then_some(sent).flatten(),
        received: a.bidir.then_some(received).flatten(),
        file: a.files.file.as_ref().map(|f| f.display().to_string()),
        out: a.files.out.as_ref().map(|f| f.display().to_string()),
    };
    print(&report, a.json)?;
    if let Some(Err(i)) = check {
        let item = spec.dtype.itemsize() as u64;
        return Err(Failure::runtime(format!(
            "received data is not the {} arange pattern: first mismatch at element {i} \
             (byte offset {}, stream {})",
            spec.dtype,
            i * item,
            stream_of(spec.bytes, peers.len(), i * item)
        )));
    }
    closed?;
    got.commit()
}

/// The stream whose stripe holds byte `offset` of a `len`-byte array over `n` streams.
fn stream_of(len: usize, n: usize, offset: u64) -> usize {
    ringxfer::stripes(len as u64, n)
        .iter()
        .position(|r| r.contains(&offset))
        .unwrap_or(0)
}

/// Runs `op` on the clock: its seconds and the calling thread's CPU.
fn timed(op: impl FnOnce() -> ringxfer::Result<()>) -> ringxfer::Result<(f64, Option<Cpu>)> {
    let ((r, seconds), cpu) = with_cpu(|| {
        let t = Instant::now();
        let r = op();
        (r, t.elapsed().as_secs_f64())
    });
    r.map(|()| (seconds, cpu))
}

/// Prints the report as text or JSON.
fn print(r: &Report, json: bool) -> Result<(), Failure> {
    if json {
        return crate::report::print_json(r);
    }
    let verified = match r.verified {
        Some(true) => ", arange pattern verified",
        Some(false) => ", ARANGE PATTERN MISMATCH",
        None => "",
    };
    let over = format!(
        "over {} stream(s) ({} rail(s) x {}: {})",
        r.streams,
        r.rails.len(),
        r.streams_per_rail,
        r.peers.join(" ")
    );
    match (&r.sent, &r.received) {
        (Some(s), Some(g)) => println!(
            "{} (bidir): {} x {} = {} bytes each way {over}: sent in {:.4} s: {:.3} GB/s \
             ({:.2} Gbit/s), {}; received in {:.4} s: {:.3} GB/s ({:.2} Gbit/s), {}; backend {}, \
             crc32 of the array {}{verified}",
            r.role,
            r.count,
            r.dtype,
            r.bytes,
            s.seconds,
            s.gbytes_per_s,
            s.gbytes_per_s * 8.0,
            cpu_text(s.cpu),
            g.seconds,
            g.gbytes_per_s,
            g.gbytes_per_s * 8.0,
            cpu_text(g.cpu),
            r.backend,
            r.crc32,
        ),
        _ => println!(
            "{}: {} x {} = {} bytes {over} in {:.4} s: {:.3} GB/s ({:.2} Gbit/s), backend {}, \
             crc32 {}{verified}, {}",
            r.role,
            r.count,
            r.dtype,
            r.bytes,
            r.seconds,
            r.gbytes_per_s,
            r.gbytes_per_s * 8.0,
            r.backend,
            r.crc32,
            cpu_text(r.cpu)
        ),
    }
    Ok(())
}

/// Opens every stream in the agreed order (see the module docs), each authenticated with
/// `--auth-key`; the listening side also returns its listeners (one per rail) for the
/// extra-connection check.
#[allow(clippy::type_complexity)]
pub(super) fn open_streams(
    role: Role,
    a: &XferArgs,
    rails: &[String],
) -> Result<(Vec<(TcpStream, SocketAddr)>, Option<Vec<TcpListener>>), Failure> {
    let per_rail = a.streams as usize;
    let total = rails.len() * per_rail;
    let mut out = Vec::with_capacity(total);
    if a.endpoint.connect.is_some() {
        for addr in rails {
            for _ in 0..per_rail {
                let Conn::Tcp(s) = connect_retry(
                    &format!("ringxfer {}", role.name()),
                    addr,
                    &a.sockbufs,
                    a.connect_timeout,
                )?
                else {
                    unreachable!("rails are TCP: checked by Endpoint::rails");
                };
                let peer = s.peer_addr().map_err(|e| fail("peer_addr".into(), e))?;
                handshake(&s, false)?;
                out.push((s, peer));
            }
        }
        return Ok((out, None));
    }
    let listeners = bind_rails(role, a, rails)?;
    let expected = format!(
        "({} rail(s) x --streams {per_rail}); both sides need the same rails and --streams",
        rails.len()
    );
    // The side that connects is the sender, except for a listening `send` (not `--bidir`).
    let peer_role = if role == Role::Send && !a.bidir {
        "receiver"
    } else {
        "sender"
    };
    accept_rails(a, &listeners, per_rail, &mut out, (peer_role, &expected))?;
    Ok((out, Some(listeners)))
}

fn fail(what: String, e: io::Error) -> Failure {
    Failure::runtime(format!("{what}: {e}"))
}

/// Binds every rail before accepting anything, so no connect of the sender is refused; says
/// the address on stderr where the kernel chose the port (`:0`).
pub(super) fn bind_rails(
    role: Role,
    a: &XferArgs,
    rails: &[String],
) -> Result<Vec<TcpListener>, Failure> {
    let mut listeners = Vec::with_capacity(rails.len());
    for addr in rails {
        let l = a
            .sockbufs
            .listen(addr)
            .map_err(|e| fail(format!("listen on {addr}"), e))?;
        let local = l.local_addr().map_err(|e| fail("local_addr".into(), e))?;
        if addr.ends_with(":0") {
            eprintln!("ringxfer {}: listening on {local}", role.name());
        }
        listeners.push(l);
    }
    Ok(listeners)
}

/// Accepts, rail by rail in order, `per_rail` connections on each listener in accept order,
/// each authenticated with `--auth-key`, appending to `out`; the first `out.len()` streams
/// (counted from rail 0) are already in. The first connection may take as long as the sender
/// takes to start; each further one must come within `--timeout` ([`STREAMS_PATIENCE`]
/// without it), else the failure says how many came and, in `expected`, which side connects
/// (`"sender"` or `"receiver"`) and what was expected.
pub(super) fn accept_rails(
    a: &XferArgs,
    listeners: &[TcpListener],
    per_rail: usize,
    out: &mut Vec<(TcpStream, SocketAddr)>,
    (peer_role, expected): (&str, &str),
) -> Result<(), Failure> {
    let total = listeners.len() * per_rail;
    let patience = a.timeout.unwrap_or(STREAMS_PATIENCE);
    for (r, l) in listeners.iter().enumerate() {
        let local = l.local_addr().map_err(|e| fail("local_addr".into(), e))?;
        for k in 0..per_rail {
            if r * per_rail + k < out.len() {
                continue;
            }
            let wait = (!out.is_empty()).then_some(patience);
            let (s, peer) = accept_within(l, wait).map_err(|e| {
                if e.kind() == io::ErrorKind::WouldBlock {
                    Failure::runtime(format!(
                        "rail {r} ({local}): {k} of its {per_rail} stream(s) connected, then \
                         none within {:.1} s: the {peer_role} opened fewer streams than the \
                         {total} expected {expected}",
                        patience.as_secs_f64(),
                    ))
                } else {
                    fail(format!("accept on {local}"), e)
                }
            })?;
            handshake(&s, true)?;
            out.push((s, peer));
        }
    }
    Ok(())
}

/// Accepts one connection on `l`, within `wait` when given (`WouldBlock` when none came).
fn accept_within(l: &TcpListener, wait: Option<Duration>) -> io::Result<(TcpStream, SocketAddr)> {
    // SO_RCVTIMEO bounds accept() on Linux; an accepted socket inherits it, so it is cleared
    // there.
    SockRef::from(l).set_read_timeout(wait)?;
    let (s, peer) = l.accept()?;
    SockRef::from(&s).set_read_timeout(None)?;
    Ok((s, peer))
}

/// The receiver's check that the sender opened no more streams than expected: the sender
/// connects every stream before its first byte, so once stream 0 has a byte (or its end) to
/// read, any connection still pending on a rail is one too many.
pub(super) fn check_no_extra(
    socks: &[(TcpStream, SocketAddr)],
    listeners: &[TcpListener],
    a: &XferArgs,
) -> Result<(), Failure> {
    let (s0, peer0) = &socks[0];
    // A signal may interrupt the wait (EINTR, seen under load): wait again.
    let peek = || loop {
        match s0.peek(&mut [0u8; 1]) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    };
    s0.set_read_timeout(a.timeout)
        .and_then(|()| peek())
        .and_then(|_| s0.set_read_timeout(None))
        .map_err(|e| Failure::runtime(format!("stream 0 ({peer0}): waiting for the data: {e}")))?;
    no_pending(socks.len(), listeners, a, "sender")
}

/// Fails when a connection is pending on any rail (a non-blocking accept): the peer (its
/// `peer_role`, as the message names it) opened more than the `accepted` streams.
fn no_pending(
    accepted: usize,
    listeners: &[TcpListener],
    a: &XferArgs,
    peer_role: &str,
) -> Result<(), Failure> {
    for (r, l) in listeners.iter().enumerate() {
        l.set_nonblocking(true)
            .map_err(|e| Failure::runtime(format!("rail {r}: {e}")))?;
        if let Ok((_, peer)) = l.accept() {
            return Err(Failure::runtime(format!(
                "the {peer_role} opened more streams than the {accepted} expected: another connection \
                 from {peer} on rail {r} ({}); both sides need the same rails and --streams",
                a.endpoint.rails()?[r]
            )));
        }
    }
    Ok(())
}

/// The least a stream's extra-bytes check waits in [`close_streams`] once the shared bound
/// ran out: enough for an end of stream already queued to be read.
const MIN_CLOSE_WAIT: Duration = Duration::from_millis(10);

/// Ends every stream in stream order: the graceful close (send, `--bidir`) or the
/// extra-bytes check (recv), each stream dropped right after, so a peer doing the same in the
/// same order is never waiting on a stream this side has not reached. The bytes discarded
/// while closing, summed. A stream on which the peer said why it refused it (`serve`'s one
/// line `ringxfer serve: refused: …`, written before it closes) fails with that line.
///
/// The extra-bytes checks wait for the streams' ends until `until` (`None`: one `--timeout`
/// from now), restarted for one `--timeout` each time a stream's end arrives, each at least
/// [`MIN_CLOSE_WAIT`] to read an end of stream already there: a sender that neither sends
/// more nor closes is waited for once, not once per stream, and one that closes its streams
/// one by one, each within `--timeout` of the last, is not cut short.
pub(super) fn close_streams(
    role: Role,
    a: &XferArgs,
    socks: Vec<TcpStream>,
    peers: &[String],
    until: Option<Instant>,
) -> Result<u64, Failure> {
    let expected = |i: usize| format!("stream {i}'s stripe (from {})", peers[i]);
    let bound = a.timeout.unwrap_or(ringxfer::close::DEFAULT_CLOSE_TIMEOUT);
    let mut until = until.unwrap_or_else(|| Instant::now() + bound);
    let mut discarded = 0;
    // `socks` may be the last streams only (the first closed already): number them so.
    let from = peers.len() - socks.len();
    for (k, s) in socks.into_iter().enumerate() {
        let i = from + k;
        let mut said = Vec::new();
        let r = match (role, a.bidir) {
            (Role::Recv, false) => match ringxfer::close::expect_eof(
                &s,
                Some(
                    until
                        .saturating_duration_since(Instant::now())
                        .max(MIN_CLOSE_WAIT),
                ),
            ) {
                // Its own wait may have been the last milliseconds of the shared bound: the
                // peer had the whole bound to close.
                Err(ringxfer::Error::PeerNotClosed { read, .. }) => {
                    Err(ringxfer::Error::PeerNotClosed {
                        read,
                        timeout_ms: u64::try_from(bound.as_millis()).unwrap_or(u64::MAX),
                    })
                }
                r => {
                    // This stream's end came: the peer is closing, and the next stream's
                    // end has a whole bound again (an idle bound, as `--timeout` is).
                    if r.is_ok() {
                        until = Instant::now() + bound;
                    }
                    r.map(|()| 0)
                }
            },
            _ => ringxfer::close::finish_with(&s, a.timeout, |b| {
                crate::net::keep_head(&mut said, b);
            })
            .map(|f| f.peer_bytes),
        };
        if let Some(line) = crate::net::server_line(&said) {
            let why = r
                .err()
                .map_or_else(String::new, |e| format!(" (delivery not confirmed: {e})"));
            return Err(Failure::runtime(format!(
                "stream {i} ({}): {line}{why}",
                peers[i]
            )));
        }
        match r {
            // With --bidir the array came before the close: anything after it is extra.
            Ok(n) if a.bidir && n > 0 => {
                return close_outcome(
                    Role::Recv,
                    ringxfer::Error::ExtraBytes {
                        extra: n,
                        peer_closed: true,
                    },
                    &expected(i),
                )
                .map(|()| 0);
            }
            Ok(n) => discarded += n,
            Err(e) => {
                let outcome = close_outcome(role, e, &expected(i));
                if role == Role::Recv && outcome.is_err() {
                    // Extra bytes on this stream (stream 0, the one that could say why, is
                    // closed already): its close is a reset, so a sender closing gracefully
                    // does not take it for delivery.
                    crate::net::abort(&s);
                }
                outcome.map_err(|f| Failure {
                    message: format!("stream {i} ({}): {}", peers[i], f.message),
                    ..f
                })?;
            }
        }
        drop(s);
    }
    Ok(discarded)
}
