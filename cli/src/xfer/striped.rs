//! Framed `send` / `recv` over several streams: `--streams N` and rails (several `--listen` /
//! `--connect` addresses) without `--raw`.
//!
//! Each array goes out with [`Engine::send_array_striped`](ringxfer::Engine::send_array_striped)
//! and comes in with [`Engine::recv_any_striped`](ringxfer::Engine::recv_any_striped): every
//! stream starts with a 56-byte stripe prefix (docs/PROTOCOL.md, "Striped arrays": magic
//! `RGXS`, array id, stream index, stream count, the stripe's offset and length, the payload
//! length), stream 0 also carries the array's header (dtype, shape, order). So the receiver
//! needs neither `--count`/`--dtype` nor the order of the streams.
//!
//! **Connections.** The side that connects opens them as raw striping does (rail 0's N, then
//! rail 1's, …; `super::streams`), so it must know N: `send --connect` (and `recv --connect`)
//! take `--streams`. A listening `recv` learns N instead: it binds every rail, accepts one
//! connection on rail 0 and peeks its first bytes. When they are a stripe prefix, the prefix's
//! stream count is the total; it must split evenly over the rails (the sender puts the same
//! number on each) and be at most 1024 per rail (the `--streams` limit), and it is checked
//! before anything is sized by it. The rest are accepted rail by rail with the raw mode's
//! accept logic and bounds (each further connection within `--timeout`, 10 s without it; a
//! connection still pending once stream 0 has data is one too many). When the first bytes are
//! not a stripe prefix, a single-address `recv` without `--streams` carries on with that one
//! connection as an ordinary framed receive; with rails or `--streams N` it fails.
//!
//! **Several arrays** (`--arrays K`) go back to back on the same connections, each with its
//! own prefixes (and a fresh array id). **Files**: `send --file x.npy` sends from the file's
//! mapping; `recv --out` reads the stripe prefixes and stream 0's header
//! ([`Engine::recv_striped_header`](ringxfer::Engine::recv_striped_header)), creates the
//! `.npy` file at the array's size, and receives every stripe straight into its part of the
//! file's mapping
//! ([`Engine::recv_striped_payload_into`](ringxfer::Engine::recv_striped_payload_into)), as
//! single-stream `--out` does: no copy. A mismatch with `--dtype`/`--shape`/`--order` fails
//! before any payload byte is read; a failed receive deletes the file.
//!
//! **Closing**: as in raw striping, every stream in stream order (graceful close on the
//! sender, the extra-bytes check on the receiver). A `recv` without `--arrays` ends when
//! stream 0 is at its end where the next stripe prefix would start (every other stream must
//! then be at its end too); one with `--arrays K` (or `--out`) that finds more on stream 0
//! after K arrays rejects it at once ([`Streams::finish_recv`]).
//! `send --get-server-output`: the server's lines come back on stream 0 (a `ringxfer serve`
//! writes them there once stream 0 closes between arrays), so stream 0's graceful close keeps
//! what it reads, as with one connection; the other streams are closed after it.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use std::path::Path;

use ringxfer::{Engine, STRIPE_MAGIC, STRIPE_PREFIX_LEN, StripePrefix, StripedHeader};

use super::args::{Role, XferArgs};
use super::framed::{ArrayLine, ErrorLine, Outcome, emit, recv_one_with, wait_readable};
use super::streams::{accept_rails, bind_rails, check_no_extra, close_streams, open_streams};
use crate::failure::Failure;
use crate::files::OutFile;
use crate::measure::Progress;
use crate::net::{Conn, connect};

/// Most streams per rail, as `--streams` allows.
const MAX_PER_RAIL: usize = 1024;

/// The connection(s) of one framed `send` / `recv`.
pub(super) enum Link {
    /// One connection and its peer as printed.
    One(Conn, String),
    /// Several streams.
    Striped(Streams),
}

impl Link {
    /// A framed receive failed here: tells the sender why, one line `ringxfer recv: WHY` on
    /// stream 0 (the receiver's own error; `ringxfer send` prints it in front of its error),
    /// then makes every stream's close a reset ([`crate::net::say_and_abort`]), so that no
    /// sender takes the close for delivery.
    pub(super) fn tell_failure(&self, why: &str) {
        match self {
            Link::One(sock, _) => tell_sender(sock, why),
            Link::Striped(s) => {
                tell_sender(&s.first, why);
                s.socks.iter().for_each(crate::net::abort);
            }
        }
    }
}

/// Tells the sender on `sock` why the receive failed, one line `ringxfer recv: WHY`, and makes
/// the close a reset ([`crate::net::say_and_abort`]).
pub(super) fn tell_sender(sock: &Conn, why: &str) {
    crate::net::say_and_abort(sock, &format!("ringxfer recv: {why}\n"));
}

/// The streams of a striped framed transfer, in stream order.
pub(super) struct Streams {
    pub(super) socks: Vec<TcpStream>,
    /// Each stream's peer address.
    pub(super) peers: Vec<String>,
    /// Stream 0 again (a duplicated descriptor), for the calls that take a [`Conn`].
    pub(super) first: Conn,
}

impl Streams {
    fn new(socks: Vec<(TcpStream, SocketAddr)>) -> Result<Streams, Failure> {
        let first = socks[0]
            .0
            .try_clone()
            .map_err(|e| Failure::runtime(format!("stream 0: {e}")))?;
        let peers = socks.iter().map(|(_, p)| p.to_string()).collect();
        Ok(Streams {
            socks: socks.into_iter().map(|(s, _)| s).collect(),
            peers,
            first: Conn::Tcp(first),
        })
    }

    /// Receives array `array` striped over the streams (waiting for stream 0's first byte as
    /// [`recv_one`](super::framed::recv_one) does) and reports it with `"streams"` and
    /// `"peers"`.
    pub(super) fn recv_one(&self, engine: &mut Engine, array: u64) -> Outcome {
        let out = recv_one_with(engine, &self.first, &self.peers[0], array, |e| {
            e.recv_any_striped(&self.socks)
        });
        match out {
            Outcome::Array(line) => Outcome::Array(self.mark(line)),
            other => other,
        }
    }

    /// `recv --out`: receives the one striped array straight into a new `.npy` file (not
    /// yet committed): the stripe prefixes and stream 0's header first, checked against
    /// `--dtype`, `--shape`, `--order` where given, then every stripe in place into its part
    /// of the file's mapping ([`super::framed::recv_file`]).
    pub(super) fn recv_file(
        &self,
        a: &XferArgs,
        engine: &mut Engine,
        out: &Path,
        progress: Option<&Progress>,
    ) -> Result<(ArrayLine, OutFile), Failure> {
        let (line, file) = super::framed::recv_file(
            (a, engine, progress),
            (&self.first, &self.peers[0], out),
            |e| e.recv_striped_header(&self.socks),
            StripedHeader::header,
            |e, h, payload| e.recv_striped_payload_into(&self.socks, h, payload),
        )?;
        Ok((self.mark(line), file))
    }

    /// `line` with this transfer's streams and peers.
    fn mark(&self, line: ArrayLine) -> ArrayLine {
        ArrayLine {
            streams: Some(self.socks.len()),
            peers: Some(self.peers.clone()),
            ..line
        }
    }

    /// Ends every stream in stream order (see [`close_streams`]): bytes the peer sent that
    /// were discarded while closing.
    pub(super) fn close(self, role: Role, a: &XferArgs) -> Result<u64, Failure> {
        self.close_until(role, a, None)
    }

    /// [`Streams::close`], the receive side's checks bounded by `until` ([`close_streams`]).
    fn close_until(self, role: Role, a: &XferArgs, until: Option<Instant>) -> Result<u64, Failure> {
        let Streams {
            socks,
            peers,
            first,
        } = self;
        drop(first);
        close_streams(role, a, socks, &peers, until)
    }

    /// Ends a striped receive of `got` arrays. With `fixed` (what fixed the number, as
    /// [`super::framed`] names it: `array K of K (--arrays K)`) stream 0 must now be at its
    /// end. When more comes there (the sender sent array `got + 1`), that is said at once —
    /// an `extra_bytes` line, and to the sender [`crate::net::reject_and_abort`] — and every
    /// stream is aborted, instead of reading stream 0 to its end (its sender may be blocked
    /// on another stream nobody reads any more). Otherwise, and without `fixed` (stream 0
    /// already at its end), every stream is closed in stream order ([`Streams::close`]: each
    /// other stream must be at its end too). One `--timeout` bounds the wait here and that
    /// close together: a sender that neither sends nor closes is waited for once.
    pub(super) fn finish_recv(
        self,
        a: &XferArgs,
        got: u64,
        fixed: Option<String>,
    ) -> Result<(), Failure> {
        let Some(fixed) = fixed else {
            return self.close(Role::Recv, a).map(drop);
        };
        let bound = a.timeout.unwrap_or(ringxfer::close::DEFAULT_CLOSE_TIMEOUT);
        let until = Instant::now() + bound;
        if !matches!(wait_readable(&self.first, Some(bound)), Ok(true)) {
            return self.close_until(Role::Recv, a, Some(until)).map(drop);
        }
        // What came: a whole stripe prefix is one write of the sender's; 1 s for the rest of
        // it to arrive is plenty (the reason only words the message).
        let mut b = [0u8; STRIPE_PREFIX_LEN];
        let deadline = Instant::now() + Duration::from_secs(1);
        let n = crate::net::peek_full(&self.first, &mut b, Some(deadline)).unwrap_or(0);
        let what = match StripePrefix::decode(&b) {
            Ok(_) if n == STRIPE_PREFIX_LEN => "another array's stripe prefix",
            _ => "bytes that are no stripe prefix",
        };
        let why = format!("more data after {fixed}: {what} on stream 0");
        emit(
            &ErrorLine {
                peer: self.peers[0].clone(),
                array: got + 1,
                error: why.clone(),
                kind: "extra_bytes",
                transferred: None,
                expected: None,
            }
            .render(a.json),
        );
        crate::net::reject_and_abort(&self.first, &why);
        self.socks.iter().for_each(crate::net::abort);
        Err(Failure::runtime(format!(
            "stream 0 ({}): {why}",
            self.peers[0]
        )))
    }

    /// `send --get-server-output`: stream 0 was closed already (the server's lines come back
    /// on it); ends the others in stream order.
    pub(super) fn close_after_first(self, a: &XferArgs) -> Result<u64, Failure> {
        let Streams {
            mut socks,
            peers,
            first,
        } = self;
        drop(first);
        drop(socks.remove(0));
        close_streams(Role::Send, a, socks, &peers, None)
    }
}

/// True when `send` / `recv` stripe: `--streams N` > 1 or several addresses (rails).
pub(super) fn wanted(a: &XferArgs, rails: &[String]) -> bool {
    a.streams > 1 || rails.len() > 1
}

/// `send`'s connections: one, or `rails × --streams` opened as raw striping opens them.
pub(super) fn open_send(a: &XferArgs, rails: &[String]) -> Result<Link, Failure> {
    if !wanted(a, rails) {
        let (c, p) = connect(Role::Send, &a.endpoint, &a.sockbufs, a.connect_timeout)?;
        return Ok(Link::One(c, p));
    }
    let (socks, _) = open_streams(Role::Send, a, rails)?;
    Ok(Link::Striped(Streams::new(socks)?))
}

/// `recv`'s connections: a listening TCP `recv` learns the streams from the first stripe
/// prefix (module docs); otherwise as `send` opens them.
pub(super) fn open_recv(a: &XferArgs, rails: &[String]) -> Result<Link, Failure> {
    let tcp_listen = a.endpoint.listen.is_some() && crate::net::unix_path(&rails[0]).is_none();
    if !tcp_listen {
        if !wanted(a, rails) {
            let (c, p) = connect(Role::Recv, &a.endpoint, &a.sockbufs, a.connect_timeout)?;
            return Ok(Link::One(c, p));
        }
        let (socks, _) = open_streams(Role::Recv, a, rails)?;
        return Ok(Link::Striped(Streams::new(socks)?));
    }
    let listeners = bind_rails(Role::Recv, a, rails)?;
    let mut socks = Vec::new();
    accept_rails(a, &listeners[..1], 1, &mut socks, ("sender", ""))?;
    let peer0 = socks[0].1;
    let Some(raw) = peek_prefix(&socks[0].0, a.timeout)
        .map_err(|e| Failure::runtime(format!("stream 0 ({peer0}): waiting for the data: {e}")))?
    else {
        if wanted(a, rails) {
            return Err(Failure::runtime(format!(
                "stream 0 ({peer0}): the sender does not stripe (its first bytes are not a \
                 stripe prefix, RGXS): it sends over one connection; give recv one address and \
                 no --streams"
            )));
        }
        let (s, peer) = socks.pop().expect("one accepted");
        return Ok(Link::One(Conn::Tcp(s), peer.to_string()));
    };
    let per_rail = streams_per_rail(&raw, rails.len(), a.streams, &peer0)?;
    let expected = format!(
        "(stream 0's stripe prefix from {peer0} says {} over {} rail(s))",
        per_rail * rails.len(),
        rails.len()
    );
    accept_rails(a, &listeners, per_rail, &mut socks, ("sender", &expected))?;
    check_no_extra(&socks, &listeners, a)?;
    drop::<Vec<TcpListener>>(listeners);
    Ok(Link::Striped(Streams::new(socks)?))
}

/// The streams per rail a stripe prefix implies: its stream count, which must split evenly
/// over `rails`, be at most [`MAX_PER_RAIL`] per rail, and match `--streams` when given (> 1).
fn streams_per_rail(
    raw: &[u8; STRIPE_PREFIX_LEN],
    rails: usize,
    given: u32,
    peer0: &SocketAddr,
) -> Result<usize, Failure> {
    let fail = |what: String| Failure::runtime(format!("stream 0 ({peer0}): {what}"));
    let p = StripePrefix::decode(raw).map_err(|e| fail(e.to_string()))?;
    let total = p.streams as usize;
    if total % rails != 0 || total / rails > MAX_PER_RAIL {
        return Err(fail(format!(
            "the stripe prefix says {total} stream(s), which is not {rails} rail(s) x 1 to \
             {MAX_PER_RAIL}"
        )));
    }
    let per_rail = total / rails;
    if given > 1 && given as usize != per_rail {
        return Err(fail(format!(
            "the stripe prefix says {total} stream(s) = {rails} rail(s) x {per_rail}, but \
             --streams {given} was given (a listening recv learns the streams: --streams may \
             be left out)"
        )));
    }
    Ok(per_rail)
}

/// Peeks (leaves unread) the first bytes on `s`: the whole stripe prefix when they start with
/// its magic, `None` when they do not (or the peer closed first). Bounded by `timeout` when
/// given; the waits sleep in the kernel ([`crate::net::peek_full`]).
fn peek_prefix(
    s: &TcpStream,
    timeout: Option<Duration>,
) -> io::Result<Option<[u8; STRIPE_PREFIX_LEN]>> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut b = [0u8; STRIPE_PREFIX_LEN];
    let magic = STRIPE_MAGIC.len();
    let n = crate::net::peek_full(s, &mut b[..magic], deadline)?;
    if n < magic || b[..magic] != STRIPE_MAGIC {
        return Ok(None);
    }
    match crate::net::peek_full(s, &mut b, deadline)? {
        STRIPE_PREFIX_LEN => Ok(Some(b)),
        n => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "{n} of the {STRIPE_PREFIX_LEN} bytes of its stripe prefix, then the end or --timeout"
            ),
        )),
    }
}
