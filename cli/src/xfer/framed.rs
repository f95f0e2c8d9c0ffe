//! Framed mode of `ringxfer send` / `ringxfer recv` (the default), and the per-array report
//! lines that `recv` and `serve` share.
//!
//! `send --file PATH` sends a `.npy` file's data from its mapping instead, with the file's
//! dtype, shape and order; `recv --out PATH` writes the array to a `.npy` file instead of
//! checking it (both in [`crate::files`]).
//!
//! `send` builds the arange pattern of `--dtype` once (element `i` is `i` cast to the dtype,
//! in the dtype's byte order, in memory order whatever `--order` says) and sends it `--arrays`
//! times back to back on one connection with `Engine::send_view`: header, payload and
//! trailer of `docs/PROTOCOL.md`. Its clock runs from the established connection to the return
//! of the last send; GB/s counts payload bytes only (not the 48+ header and 8 trailer bytes
//! per array).
//!
//! `send --format npy` sends each array as numpy's `.npy` stream instead (`Engine::send_view`
//! with `WireFormat::Npy`: the header `numpy.save` writes, then the payload; no trailer, no
//! checksum), which `numpy.lib.format.read_array` reads from the socket with no ringxfer code.
//!
//! `recv` receives arrays with `Engine::recv_any` (without `--arrays`, every array until the
//! sender closes between two messages, at least one; with `--arrays K` exactly K; with
//! `--out` exactly one) — RGXF or `.npy`, told apart by
//! each message's first byte; a `.npy` array's line says `"format":"npy"` and
//! `"verified":false` (no checksum travels in `.npy`) — and prints one line per
//! array, exactly like `serve`; it fails (exit status 1) on an error, on an array that is not
//! the arange pattern, and on one that differs from what `--dtype`, `--shape` (or
//! `--count`/`--size` as a 1-D shape) and `--order` say, where given. Each array's clock starts when its first header byte is
//! readable (so time spent waiting for the sender to start is not counted) and stops when
//! `recv_any` returns (payload received, CRC-32 checked). Each line also carries the CPU
//! (user and system seconds) the receiving thread spent over that stretch, and the socket's
//! effective SO_SNDBUF / SO_RCVBUF; `send` reports its own thread's CPU over its clock.
//!
//! After the last array `send` always closes gracefully ([`ringxfer::close::finish`]):
//! half-close (`shutdown(SHUT_WR)`), then read until the peer's end of stream, so the close
//! never becomes a reset that loses the tail of the data (C16). It exits 1 saying delivery is
//! not confirmed when the peer resets or does not close within `--timeout` (30 s without
//! one). `recv`, after its `--arrays K` (or its one `--out` array), reads on until the peer
//! closes ([`ringxfer::close::expect_eof`], same bound) and exits 1 naming the extra bytes
//! when more came (a third array to `--arrays 2`, say); it then tells the sender why in one
//! line and aborts the connection ([`crate::net::reject_and_abort`]), so the sender cannot
//! take the close for a confirmed delivery: `ringxfer send` exits 1 with
//! `ringxfer recv: rejected: N extra bytes after array K of K (--arrays K) (delivery not
//! confirmed: the peer reset the connection …)`. Any other failure of `recv` once connected
//! (a rejected header, a CRC or dtype mismatch, `--out` with no room, a timeout) is told the
//! same way, its own error as the line ([`super::striped::Link::tell_failure`]): an array
//! that arrived whole but was not taken is no delivery either.
//!
//! With `--streams N` or rails each array is striped ([`super::striped`]): the same loop, with
//! `Engine::send_array_striped` / `Engine::recv_any_striped` on the streams instead of one
//! connection, and every stream closed in stream order.
//!
//! `send --get-server-output` is the same graceful close, keeping what it reads instead of
//! discarding it: `ringxfer serve`, seeing a clean close between arrays, writes back the JSON
//! lines it printed for this connection, then closes. `send` prints them after its own report
//! (inside its JSON object as `"server": [...]`).

use crate::net::Conn;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use ringxfer::dtype::{DType, fill_arange, verify_arange};
use ringxfer::{Engine, Error, Options, Order};
use serde::Serialize;

use super::args::{Role, Shape, XferArgs};
use super::striped::Link;
use crate::buffer::Buffer;
use crate::failure::Failure;
use crate::files::NpyFile;
use crate::measure::{Cpu, Progress, SockBufs, count, cpu_text, say_notices, with_cpu};
use crate::net::close_outcome;
use crate::report::crc32_hex;
use crate::report::gbytes_per_s;

/// numpy's way of writing a shape: `()`, `(5,)`, `(20, 10, 5)`.
pub fn shape_str(shape: &[u64]) -> String {
    match shape {
        [] => "()".to_owned(),
        [d] => format!("({d},)"),
        _ => {
            let mut s = String::from("(");
            for (i, d) in shape.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                let _ = write!(s, "{d}");
            }
            s.push(')');
            s
        }
    }
}

/// Writes one line to stdout under its lock and flushes, so lines from concurrent threads
/// never interleave and each is visible at once. A closed stdout is ignored (the transfer is
/// the job; the report is best effort).
pub fn emit(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// One received array, as printed by `recv` and `serve` (a JSON object with `--json`).
#[derive(Debug, Serialize)]
pub struct ArrayLine {
    /// The peer's address.
    pub peer: String,
    /// 1-based number of the array on its connection.
    pub array: u64,
    /// `"uring"` or `"blocking"`.
    pub backend: &'static str,
    /// The stream format the array came in: `"rgxf"` or `"npy"` (numpy's `.npy`).
    pub format: String,
    /// numpy `dtype.str` from the header.
    pub dtype: String,
    /// Dimensions in elements (`[]` for a 0-d array).
    pub shape: Vec<u64>,
    /// `"C"` or `"F"`.
    pub order: Order,
    /// Payload bytes.
    pub bytes: u64,
    /// From the first header byte being readable to the checked payload.
    pub seconds: f64,
    /// Payload bytes per second / 10^9.
    pub gbytes_per_s: f64,
    /// The payload's CRC-32 matched the trailer (`recv_any` rejects a mismatch, so every
    /// delivered RGXF array has it); false for a `.npy` array: no checksum travels in `.npy`,
    /// so nothing was verified.
    pub verified: bool,
    /// The payload is the arange pattern of its dtype (what `ringxfer send` sends); not
    /// checked (absent) when the array went to a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arange: Option<bool>,
    /// With `arange: false`: index of the first element that differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad_element: Option<u64>,
    /// `recv --out`, `serve --out-dir`: the `.npy` file the array was written to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// CRC-32 (zlib) of the payload, as `ringxfer send` prints it.
    pub crc32: String,
    /// CPU of the receiving thread over the clock's stretch (`null` where it cannot be read).
    pub cpu: Option<Cpu>,
    /// The connection's effective buffer sizes, as the kernel reports them before the
    /// array is received (stream 0's for a striped array).
    pub socket_buffers: SockBufs,
    /// A striped array (`recv --streams`/rails): the streams it came over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streams: Option<usize>,
    /// A striped array: each stream's peer address, in accept order (`peer` is the first's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<String>>,
}

/// One received array, for its [`ArrayLine`].
#[derive(Debug)]
pub struct Received<'a> {
    /// The stream format it came in.
    pub format: ringxfer::WireFormat,
    /// The payload's checksum was verified (always false for `.npy`: none travels).
    pub verified: bool,
    /// From the header.
    pub dtype: DType,
    /// From the header.
    pub shape: &'a [u64],
    /// From the header.
    pub order: Order,
    /// The payload (checked against the arange pattern unless it went to `file`).
    pub payload: &'a [u8],
    /// The file it was written to.
    pub file: Option<&'a std::path::Path>,
}

impl<'a> Received<'a> {
    /// What a receive that allocated its own array (`a`) got, written to `file` if given.
    pub fn of(a: &'a ringxfer::AnyArray, file: Option<&'a std::path::Path>) -> Self {
        Received {
            format: a.format(),
            verified: a.checksum_verified(),
            dtype: a.dtype(),
            shape: a.shape(),
            order: a.order(),
            payload: a.bytes(),
            file,
        }
    }
}

impl ArrayLine {
    /// The line of array `array` of `peer`, received by `backend` in `seconds` with `cpu`,
    /// on a socket with `socket_buffers`.
    pub fn of(
        peer: &str,
        array: u64,
        backend: &'static str,
        r: Received<'_>,
        (seconds, cpu, socket_buffers): (f64, Option<Cpu>, SockBufs),
    ) -> ArrayLine {
        let check = r.file.is_none().then(|| verify_arange(r.dtype, r.payload));
        ArrayLine {
            peer: peer.to_owned(),
            array,
            backend,
            format: r.format.to_string(),
            dtype: r.dtype.to_string(),
            shape: r.shape.to_vec(),
            order: r.order,
            bytes: r.payload.len() as u64,
            seconds,
            gbytes_per_s: gbytes_per_s(r.payload.len(), seconds),
            verified: r.verified,
            arange: check.map(|c| c.is_ok()),
            first_bad_element: check.and_then(|c| c.err()),
            file: r.file.map(|f| f.display().to_string()),
            crc32: crc32_hex(r.payload),
            cpu,
            socket_buffers,
            streams: None,
            peers: None,
        }
    }

    /// The line to print: JSON or text.
    pub fn render(&self, json: bool) -> String {
        if json {
            return serde_json::to_string(self)
                .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        }
        format!(
            "{} array {}: {}{} {} order {}, {} bytes{} in {:.4} s: {:.3} GB/s, backend {}, \
             crc32 {} {}, {}, {}",
            self.peer,
            self.array,
            if self.format == "npy" { ".npy " } else { "" },
            self.dtype,
            shape_str(&self.shape),
            self.order,
            self.bytes,
            self.peers.as_ref().map_or_else(String::new, |p| format!(
                " over {} streams ({})",
                p.len(),
                p.join(" ")
            )),
            self.seconds,
            self.gbytes_per_s,
            self.backend,
            self.crc32,
            if self.verified {
                "verified"
            } else {
                "not verified (no checksum travels in .npy)"
            },
            match (&self.file, self.first_bad_element) {
                (Some(f), _) => format!("written to {f}"),
                (None, None) => "arange pattern ok".to_owned(),
                (None, Some(i)) => format!("NOT the arange pattern (element {i})"),
            },
            cpu_text(self.cpu)
        )
    }
}

/// A connection that failed, as printed by `recv` and `serve`.
#[derive(Debug, Serialize)]
pub struct ErrorLine {
    /// The peer's address.
    pub peer: String,
    /// 1-based number of the array (message) that failed on its connection.
    pub array: u64,
    /// The error, in words.
    pub error: String,
    /// A stable name for the kind of failure: the `FrameError` variant in snake case
    /// (`bad_magic`, `too_large`, `payload_checksum`, …), `unexpected_eof`, `timed_out`,
    /// `connection_reset`, `io`, `setup`.
    pub kind: &'static str,
    /// Bytes of the message received before the failure, where the error says.
    pub transferred: Option<u64>,
    /// Bytes of the message expected, where the error says.
    pub expected: Option<u64>,
}

/// Said after a framed receiver's "bad magic" (a first byte that starts neither `RGXF` nor
/// `\x93NUMPY`): a raw sender's bytes begin with array data.
pub const NO_HEADER_HINT: &str = "the peer sent no RGXF or .npy header: did it use --raw?";

/// Said after a raw receiver's pattern mismatch when the bytes begin with a frame header.
pub const FRAMED_DATA_HINT: &str = "the data starts with an RGXF header: the peer sent framed arrays (drop --raw here, or add \
     it there)";

impl ErrorLine {
    /// The line for `e` on array `array` of `peer`.
    pub fn new(peer: &str, array: u64, e: &Error) -> ErrorLine {
        // A striped stream's counts are its own error's (as `Error::transferred` gives them).
        let counted = match e {
            Error::Stream { source, .. } => source.as_ref(),
            e => e,
        };
        let expected = match counted {
            Error::UnexpectedEof { expected, .. }
            | Error::Io { expected, .. }
            | Error::TimedOut { expected, .. } => Some(*expected),
            _ => None,
        };
        ErrorLine {
            peer: peer.to_owned(),
            array,
            error: match e {
                Error::Frame(ringxfer::FrameError::BadMagic(_)) => format!("{e}: {NO_HEADER_HINT}"),
                _ => e.to_string(),
            },
            kind: e.kind(),
            transferred: e.transferred(),
            expected,
        }
    }

    /// The line to print: JSON or text.
    pub fn render(&self, json: bool) -> String {
        if json {
            return serde_json::to_string(self)
                .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        }
        format!(
            "{} array {}: ERROR [{}] {}",
            self.peer, self.array, self.kind, self.error
        )
    }
}

/// What one receive on a connection gave.
#[derive(Debug)]
pub enum Outcome {
    /// A whole array, checked (the array itself is already dropped).
    Array(ArrayLine),
    /// The peer closed cleanly between messages.
    Closed,
    /// The message failed; the connection must be closed.
    Failed(ErrorLine),
}

/// Waits until the first byte of the next message is readable (or the peer closes, or
/// nothing comes for `idle`), then receives one framed array with [`Engine::recv_any`],
/// reports it and drops it.
pub fn recv_one(engine: &mut Engine, sock: &Conn, peer: &str, array: u64) -> Outcome {
    recv_one_with(engine, sock, peer, array, |e| e.recv_any(sock))
}

/// [`recv_one`] with another receive than `recv_any` (a striped one, waiting on stream 0).
pub fn recv_one_with(
    engine: &mut Engine,
    sock: &Conn,
    peer: &str,
    array: u64,
    receive: impl FnOnce(&mut Engine) -> ringxfer::Result<ringxfer::AnyArray>,
) -> Outcome {
    let idle = engine.options().idle_timeout;
    match wait_readable(sock, idle) {
        Ok(true) => {}
        Ok(false) => return Outcome::Closed,
        Err(e) => return Outcome::Failed(ErrorLine::new(peer, array, &e)),
    }
    report_one(engine, sock, peer, array, None, receive)
}

/// Receives one framed array with `receive`, reports it and drops it. The clock starts at
/// `started` (the first header byte), or now.
pub fn report_one(
    engine: &mut Engine,
    sock: &Conn,
    peer: &str,
    array: u64,
    started: Option<Instant>,
    receive: impl FnOnce(&mut Engine) -> ringxfer::Result<ringxfer::AnyArray>,
) -> Outcome {
    let socket_buffers = SockBufs::of(sock);
    let ((got, seconds), cpu) = with_cpu(|| {
        let t = started.unwrap_or_else(Instant::now);
        let got = receive(engine);
        (got, t.elapsed().as_secs_f64())
    });
    match got {
        Ok(a) => {
            let received = Received::of(&a, None);
            let line = ArrayLine::of(
                peer,
                array,
                engine.backend().name(),
                received,
                (seconds, cpu, socket_buffers),
            );
            drop(a);
            Outcome::Array(line)
        }
        // Cannot follow a successful peek, but a clean close is never an error.
        Err(Error::UnexpectedEof { transferred: 0, .. }) => Outcome::Closed,
        Err(e) => Outcome::Failed(ErrorLine::new(peer, array, &e)),
    }
}

/// Blocks until `sock` has a byte to read (`Ok(true)`) or the peer closed (`Ok(false)`),
/// peeking so the byte stays for `recv_any`. With `idle`, gives up after that long with
/// [`Error::TimedOut`] (0 of the next message's bytes received). `SO_RCVTIMEO` is set to the
/// time left before each peek, so an interrupted peek (`EINTR`: a signal handler without
/// `SA_RESTART`, or SIGSTOP/SIGCONT with a receive timeout set) resumes with what is left
/// instead of starting the wait over.
pub(crate) fn wait_readable(sock: &Conn, idle: Option<Duration>) -> Result<bool, Error> {
    let io_err = |source: io::Error| Error::Io {
        op: "recv(MSG_PEEK)",
        transferred: 0,
        expected: ringxfer::PREFIX_LEN as u64,
        source,
    };
    let deadline = idle.map(|t| Instant::now() + t);
    let mut b = [0u8; 1];
    let r = loop {
        if let Some(d) = deadline {
            match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => {
                    sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                        .map_err(io_err)?;
                }
                _ => break Err(io::Error::from(io::ErrorKind::TimedOut)),
            }
        }
        match sock.peek(&mut b) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => break r,
        }
    };
    if idle.is_some() {
        sock.set_read_timeout(None).map_err(io_err)?;
    }
    match r {
        Ok(n) => Ok(n > 0),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(Error::TimedOut {
                transferred: 0,
                expected: ringxfer::PREFIX_LEN as u64,
                timeout_ms: idle.unwrap_or_default().as_millis() as u64,
            })
        }
        Err(e) => Err(io_err(e)),
    }
}

/// Runs framed `ringxfer send` or `ringxfer recv`.
pub fn run(role: Role, a: &XferArgs, rails: &[String]) -> Result<(), Failure> {
    if a.registered {
        return Err(Failure::usage(
            "--registered is for --raw mode (framed sends use one-shot calls)",
        ));
    }
    let opts = Options {
        backend: a.backend,
        idle_timeout: a.timeout,
        uring: a.tuning.tuning()?,
        max_payload_bytes: a
            .framed
            .max_payload
            .unwrap_or(ringxfer::DEFAULT_MAX_PAYLOAD_BYTES),
        ..Options::default()
    };
    match role {
        Role::Send => {
            if a.framed.max_payload.is_some() {
                return Err(Failure::usage("--max-payload is a receiver's limit (recv)"));
            }
            send(a, opts, rails)
        }
        Role::Recv if a.framed.format.is_some() => Err(Failure::usage(
            "--format is for send (recv takes RGXF and .npy, told apart by the first byte)",
        )),
        Role::Recv if a.get_server_output => Err(Failure::usage(
            "--get-server-output is for send (it asks a ringxfer serve peer for its lines)",
        )),
        Role::Recv => recv(a, opts, rails),
    }
}

/// The engine, saying on stderr when `auto` fell back to blocking.
fn engine(role: Role, opts: Options) -> Result<Engine, Failure> {
    let engine = crate::report::engine(role.name(), opts)?;
    Ok(engine)
}

/// The `--json` report of framed `send`.
#[derive(Debug, Serialize)]
struct SendReport {
    role: &'static str,
    backend: &'static str,
    /// `"rgxf"` or `"npy"` (`--format`).
    format: String,
    dtype: String,
    shape: Vec<u64>,
    order: Order,
    arrays: u64,
    /// Payload bytes of all arrays (headers and trailers not counted).
    bytes: u64,
    /// Payload bytes of one array.
    bytes_per_array: u64,
    seconds: f64,
    gbytes_per_s: f64,
    /// CRC-32 (zlib) of one array's payload (every array is the same).
    crc32: String,
    peer: String,
    /// CPU of the sending thread over the clock's stretch.
    cpu: Option<Cpu>,
    /// The socket's effective buffer sizes.
    socket_buffers: SockBufs,
    /// With `--get-server-output`: the lines the server sent back (JSON objects; a line that
    /// is not JSON as a string).
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<Vec<serde_json::Value>>,
    /// Without `--get-server-output`: bytes the peer sent that were read and discarded while
    /// closing gracefully.
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_bytes_discarded: Option<u64>,
    /// `--file`: the `.npy` file sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    /// Striped (`--streams`/rails): the streams each array went over.
    #[serde(skip_serializing_if = "Option::is_none")]
    streams: Option<usize>,
    /// Striped: each stream's peer address, in stream order (`peer` is stream 0's).
    #[serde(skip_serializing_if = "Option::is_none")]
    peers: Option<Vec<String>>,
}

/// The dtype and shape of the arrays `send` sends: `--shape`, else `--count`/`--size`
/// elements as 1-D.
fn send_spec(a: &XferArgs) -> Result<(DType, Vec<u64>, usize), Failure> {
    let dtype = a.array.dtype();
    let shape = match &a.framed.shape {
        Some(Shape(s)) => s.clone(),
        None => vec![a.array.resolve()?.count],
    };
    let bytes = ringxfer::Header::new(dtype, &shape, Order::C)
        .ok()
        .map(|h| h.payload_len)
        .and_then(|b| usize::try_from(b).ok())
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or_else(|| {
            Failure::usage(format!(
                "shape {} of {dtype} is too large",
                shape_str(&shape)
            ))
        })?;
    Ok((dtype, shape, bytes))
}

/// What framed `send` sends: the arange pattern the flags describe, or a `.npy` file's data
/// (`--file`), sent from its mapping.
enum Source {
    Pattern(Buffer),
    Npy(NpyFile),
}

impl Source {
    fn payload(&self) -> &[u8] {
        match self {
            Source::Pattern(b) => b.bytes(),
            Source::Npy(f) => f.payload(),
        }
    }
}

/// The array `send` sends and its dtype, shape and order: from `--file`'s header, or the
/// arange pattern of `--dtype` and `--shape` / `--count` / `--size` in `--order`. A file is
/// checked here, before anything connects.
fn send_source(a: &XferArgs) -> Result<(Source, DType, Vec<u64>, Order), Failure> {
    if let Some(path) = &a.files.file {
        let f = NpyFile::open(path)?;
        let h = f.header();
        let (dtype, shape, order) = (h.dtype, h.shape.clone(), h.order);
        return Ok((Source::Npy(f), dtype, shape, order));
    }
    let (dtype, shape, bytes) = send_spec(a)?;
    let mut buf = Buffer::zeroed(bytes)?;
    fill_arange(dtype, buf.bytes_mut());
    let order = a.framed.order.unwrap_or_default();
    Ok((Source::Pattern(buf), dtype, shape, order))
}

fn send(a: &XferArgs, opts: Options, rails: &[String]) -> Result<(), Failure> {
    let (source, dtype, shape, order) = send_source(a)?;
    let payload = source.payload();
    let bytes = payload.len();
    let arrays = a.framed.arrays.unwrap_or(1);
    let format = a.framed.format.unwrap_or_default();
    let mut engine = engine(Role::Send, opts)?;
    let crc32 = crc32_hex(payload);

    let link = super::striped::open_send(a, rails)?;
    let (first, peer, peers) = match &link {
        Link::One(c, p) => (c, p.clone(), None),
        Link::Striped(s) => (&s.first, s.peers[0].clone(), Some(s.peers.clone())),
    };
    let socket_buffers = SockBufs::of(first);
    let progress = Progress::start(a.interval, bytes as u64 * arrays);
    let ((sent, seconds), cpu) = with_cpu(|| {
        let t = Instant::now();
        let r: Result<(), Failure> = (0..arrays).try_for_each(|i| {
            let view = ringxfer::ArrayView {
                dtype,
                bytes: payload,
                shape: &shape,
                order,
            };
            let sent = match &link {
                Link::One(sock, _) => engine.send_view(sock, view, format),
                Link::Striped(s) => {
                    engine.send_array_striped(&s.socks, dtype, payload, &shape, order)
                }
            };
            sent.map_err(|e| {
                let f = crate::net::with_server_word(first, Failure::from(e));
                Failure {
                    message: format!("array {} of {arrays}: {}", i + 1, f.message),
                    ..f
                }
            })?;
            count(progress.as_ref(), bytes);
            Ok(())
        });
        (r, t.elapsed().as_secs_f64())
    });
    if let Some(p) = progress {
        p.finish();
    }
    sent?;
    say_notices("send", &engine);
    let (server, peer_bytes_discarded) = match link {
        Link::One(sock, _) => close_gracefully(&sock, a)?,
        Link::Striped(s) if a.get_server_output => {
            let (server, _) = close_gracefully(&s.first, a)?;
            s.close_after_first(a)?;
            (server, None)
        }
        Link::Striped(s) => (None, Some(s.close(Role::Send, a)?)),
    };

    let total = bytes as u64 * arrays;
    let r = SendReport {
        role: "send",
        backend: engine.backend().name(),
        format: format.to_string(),
        dtype: dtype.to_string(),
        shape,
        order,
        arrays,
        bytes: total,
        bytes_per_array: bytes as u64,
        seconds,
        gbytes_per_s: if seconds > 0.0 {
            total as f64 / seconds / 1e9
        } else {
            0.0
        },
        crc32,
        peer,
        cpu,
        socket_buffers,
        server,
        peer_bytes_discarded,
        file: a.files.file.as_ref().map(|f| f.display().to_string()),
        streams: peers.as_ref().map(Vec::len),
        peers,
    };
    if a.json {
        emit(&crate::report::json(&r)?);
    } else {
        emit(&format!(
            "send: {} array(s) of {} {} order {}{}{} = {} bytes in {:.4} s: {:.3} GB/s ({:.2} \
             Gbit/s), backend {}, peer {}{}, crc32 {}, {}",
            r.arrays,
            r.dtype,
            shape_str(&r.shape),
            r.order,
            r.file
                .as_ref()
                .map_or_else(String::new, |f| format!(" from {f}")),
            if r.format == "npy" {
                " as .npy (no checksum travels)"
            } else {
                ""
            },
            r.bytes,
            r.seconds,
            r.gbytes_per_s,
            r.gbytes_per_s * 8.0,
            r.backend,
            r.peer,
            r.peers.as_ref().map_or_else(String::new, |p| format!(
                ", striped over {} streams ({})",
                p.len(),
                p.join(" ")
            )),
            r.crc32,
            cpu_text(r.cpu)
        ));
        for v in r.server.iter().flatten() {
            emit(&format!("server: {}", server_text(v)));
        }
    }
    Ok(())
}

/// Ends a framed send with [`ringxfer::close::finish_with`], bounded by `--timeout`
/// ([`ringxfer::close::DEFAULT_CLOSE_TIMEOUT`] without it). With `--get-server-output` the
/// bytes the peer sends before closing are the server's lines (returned parsed); without it
/// they are discarded (their count returned).
fn close_gracefully(
    sock: &Conn,
    a: &XferArgs,
) -> Result<(Option<Vec<serde_json::Value>>, Option<u64>), Failure> {
    let mut kept = Vec::new();
    let keep = a.get_server_output;
    let done = ringxfer::close::finish_with(sock, a.timeout, |b| {
        if keep {
            kept.extend_from_slice(b);
        } else {
            crate::net::keep_head(&mut kept, b);
        }
    });
    // The server refused (its one line, then its close): the array was not received.
    if let (Ok(_), Some(line)) = (&done, crate::net::server_line(&kept)) {
        return Err(Failure::runtime(line));
    }
    match done {
        Ok(f) if !keep => Ok((None, Some(f.peer_bytes))),
        Ok(_) => {
            let text = String::from_utf8_lossy(&kept);
            let lines = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap_or_else(|_| serde_json::Value::from(l)))
                .collect();
            Ok((Some(lines), None))
        }
        Err(ringxfer::Error::PeerNotClosed { read, timeout_ms }) if keep => {
            Err(Failure::runtime(format!(
                "--get-server-output: timed out after {} s waiting for the server's lines and \
                 its close ({read} bytes received); delivery not confirmed",
                timeout_ms as f64 / 1000.0
            )))
        }
        Err(e) => match crate::net::server_line(&kept) {
            Some(line) => Err(Failure::runtime(format!(
                "{line} (delivery not confirmed: {e})"
            ))),
            None => close_outcome(Role::Send, e, "").map(|()| (None, None)),
        },
    }
}

/// A server line (JSON) in words: an [`ArrayLine`] or an [`ErrorLine`].
fn server_text(v: &serde_json::Value) -> String {
    use serde_json::Value;
    let Value::Object(o) = v else {
        return v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    };
    let f = |k: &str| o.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
    let st = |k: &str| {
        o.get(k).map_or_else(String::new, |x| match x {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    if let Some(n) = o.get("dropped_lines") {
        return format!(
            "{n} earlier line(s) not kept by the server ({})",
            st("note")
        );
    }
    if o.contains_key("error") {
        return format!(
            "array {}: ERROR [{}] {}",
            st("array"),
            st("kind"),
            st("error")
        );
    }
    let cpu = o
        .get("cpu")
        .and_then(|c| serde_json::from_value::<CpuIn>(c.clone()).ok())
        .map(|c| Cpu {
            user_s: c.user_s,
            system_s: c.system_s,
        });
    format!(
        "array {}: {} bytes in {:.4} s: {:.3} GB/s ({:.2} Gbit/s), backend {}, crc32 {}, {}, {}",
        st("array"),
        st("bytes"),
        f("seconds"),
        f("gbytes_per_s"),
        f("gbytes_per_s") * 8.0,
        st("backend"),
        st("crc32"),
        match (o.get("file"), o.get("arange")) {
            (Some(_), _) => format!("written to {}", st("file")),
            (None, Some(Value::Bool(true))) => "arange pattern ok".to_owned(),
            (None, _) => "NOT the arange pattern".to_owned(),
        },
        cpu_text(cpu)
    )
}

/// The `cpu` object of a server line, read back.
#[derive(serde::Deserialize)]
struct CpuIn {
    user_s: f64,
    system_s: f64,
}

fn recv(a: &XferArgs, opts: Options, rails: &[String]) -> Result<(), Failure> {
    // What the caller expects of each array, from the flags given (checked before connecting).
    if a.framed.shape.is_none() && a.array.count_given() {
        a.array.resolve()?;
    }
    if let Some(out) = &a.files.out {
        if a.framed.arrays.is_some_and(|n| n > 1) {
            return Err(Failure::usage(
                "--out writes one array: --arrays must be 1 (serve --out-dir takes many)",
            ));
        }
        crate::files::check_out(out)?;
    }
    let mut engine = engine(Role::Recv, opts)?;
    let link = super::striped::open_recv(a, rails)?;
    let progress = Progress::start(a.interval, 0);
    let p = progress.as_ref();
    let r = match (&a.files.out, &link) {
        (Some(out), Link::One(sock, peer)) => recv_file(
            (a, &mut engine, p),
            (sock, peer, out),
            |e| e.recv_header(sock),
            |h| h,
            |e, h, payload| e.recv_payload_into(sock, h, payload),
        )
        .map(|r| (Some(r), 1)),
        (Some(out), Link::Striped(s)) => s.recv_file(a, &mut engine, out, p).map(|r| (Some(r), 1)),
        (None, _) => recv_arrays(a, &mut engine, &link, p).map(|n| (None, n)),
    };
    if let Some(p) = progress {
        p.finish();
    }
    say_notices("recv", &engine);
    let (received, got) = r.inspect_err(|f| link.tell_failure(&f.message))?;
    // Striped, every stream closes (finish_recv) before the commit: that the file's name is
    // still free is checked while stream 0 can still tell the sender.
    if let (Link::Striped(_), Some((_, file))) = (&link, &received) {
        file.ready()
            .map_err(Failure::runtime)
            .inspect_err(|f| link.tell_failure(&f.message))?;
    }
    let (sock, peer) = match link {
        Link::One(sock, peer) => (sock, peer),
        Link::Striped(s) => {
            s.finish_recv(a, got, fixed_count(a, got))?;
            return commit(received, a.json);
        }
    };
    // The connection is still open at the commit: a file that cannot get its name (one
    // created there meanwhile) is told to the sender like any other failure.
    let commit = |received| {
        commit(received, a.json).inspect_err(|f| super::striped::tell_sender(&sock, &f.message))
    };
    let Some(fixed) = fixed_count(a, got) else {
        // Received until the sender's close: its end of stream is already here.
        ringxfer::close::expect_eof(&sock, a.timeout)
            .or_else(|e| close_outcome(Role::Recv, e, &format!("array {got}")))?;
        return commit(received);
    };
    ringxfer::close::expect_eof(&sock, a.timeout).or_else(|e| {
        let extra = matches!(e, Error::ExtraBytes { .. });
        if extra {
            emit(&ErrorLine::new(&peer, got + 1, &e).render(a.json));
        }
        let r = close_outcome(Role::Recv, e, &fixed);
        if let (true, Err(f)) = (extra, &r) {
            crate::net::reject_and_abort(&sock, &f.message);
        }
        r
    })?;
    commit(received)
}

/// What fixed the number of arrays `recv` takes, as the extra-bytes error names it after the
/// `got`-th: `array K of K (--arrays K)`, or `array 1 of 1 (--out takes one array)`; `None`
/// when it receives until the sender closes (no `--arrays`, no `--out`).
fn fixed_count(a: &XferArgs, got: u64) -> Option<String> {
    match (a.framed.arrays, &a.files.out) {
        (Some(k), _) => Some(format!("array {got} of {k} (--arrays {k})")),
        (None, Some(_)) => Some(format!("array {got} of 1 (--out takes one array)")),
        (None, None) => None,
    }
}

/// `--out`: the file gets its name only now, after the whole exchange succeeded; then its
/// line.
fn commit(received: Option<(ArrayLine, crate::files::OutFile)>, json: bool) -> Result<(), Failure> {
    if let Some((line, file)) = received {
        file.commit().map_err(Failure::runtime)?;
        emit(&line.render(json));
    }
    Ok(())
}

/// What `recv` expects of each array, from the flags given: `--dtype`, `--shape` (or
/// `--count` / `--size` as a 1-D shape), `--order`.
pub(super) struct Expect {
    dtype: Option<DType>,
    shape: Option<Vec<u64>>,
    order: Option<Order>,
}

impl Expect {
    pub(super) fn of(a: &XferArgs) -> Result<Expect, Failure> {
        let shape = match &a.framed.shape {
            Some(Shape(s)) => Some(s.clone()),
            None if a.array.count_given() => Some(vec![a.array.resolve()?.count]),
            None => None,
        };
        Ok(Expect {
            dtype: a.array.dtype_given(),
            shape,
            order: a.framed.order,
        })
    }

    /// What differs from the expectation, in words (empty: all fits).
    pub(super) fn mismatches(&self, dtype: &str, shape: &[u64], order: Order) -> Vec<String> {
        let mut wrong = Vec::new();
        if let Some(d) = self.dtype.filter(|d| d.to_string() != dtype) {
            wrong.push(format!("dtype {dtype} (expected {d})"));
        }
        if let Some(s) = self.shape.as_ref().filter(|s| **s != shape) {
            wrong.push(format!(
                "shape {} (expected {})",
                shape_str(shape),
                shape_str(s)
            ));
        }
        // An array that is both C- and F-contiguous (at most one dimension longer than 1, or
        // none at all, or empty) has the same bytes in either order: `.npy` writes such an
        // array as `fortran_order: False` whatever the sender asked, so its order is no
        // mismatch.
        let both = shape.contains(&0) || shape.iter().filter(|&&d| d > 1).count() <= 1;
        if let Some(o) = self.order.filter(|o| *o != order && !both) {
            wrong.push(format!("order {order} (expected {o})"));
        }
        wrong
    }
}

/// `recv --out`: waits for the array's first byte on `sock`, reads its header with
/// `read_header` (one connection: [`Engine::recv_header`]; striped:
/// [`Engine::recv_striped_header`]), checks it against the flags (a mismatch fails before any
/// payload byte is read), then `receive`s the payload straight into a new `.npy` file's
/// mapping ([`crate::files::recv_npy`]), not yet committed (it gets its name after the
/// end-of-stream check).
pub(super) fn recv_file<H>(
    (a, engine, progress): (&XferArgs, &mut Engine, Option<&Progress>),
    (sock, peer, out): (&Conn, &str, &std::path::Path),
    read_header: impl FnOnce(&mut Engine) -> ringxfer::Result<H>,
    header_of: fn(&H) -> &ringxfer::Header,
    receive: impl FnOnce(&mut Engine, &H, &mut [u8]) -> ringxfer::Result<()>,
) -> Result<(ArrayLine, crate::files::OutFile), Failure> {
    let failed = |line: ErrorLine| failed_one(a, line);
    wait_first(a, engine, sock, peer)?;
    let started = Instant::now();
    let h = read_header(engine).map_err(|e| failed(ErrorLine::new(peer, 1, &e)))?;
    let header = header_of(&h);
    let wrong = Expect::of(a)?.mismatches(&header.dtype.to_string(), &header.shape, header.order);
    if !wrong.is_empty() {
        return Err(Failure::runtime(format!(
            "array 1 of 1: {}",
            wrong.join("; ")
        )));
    }
    let got = crate::files::recv_npy(
        engine,
        SockBufs::of(sock),
        (peer, 1),
        started,
        (header, ringxfer::WireFormat::Rgxf),
        out,
        |e, payload| receive(e, &h, payload),
    );
    let (line, file) = got.map_err(failed)?;
    count(progress, line.bytes as usize);
    Ok((line, file))
}

/// `recv --out`'s failure of its one array: the line printed, the failure returned.
pub(super) fn failed_one(a: &XferArgs, line: ErrorLine) -> Failure {
    emit(&line.render(a.json));
    Failure::runtime(format!("array 1 of 1: {}", line.error))
}

/// `recv --out`: waits until the array's first byte is readable on `sock`.
pub(super) fn wait_first(
    a: &XferArgs,
    engine: &Engine,
    sock: &Conn,
    peer: &str,
) -> Result<(), Failure> {
    match wait_readable(sock, engine.options().idle_timeout) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failure::runtime(
            "peer closed the connection after 0 of 1 array(s)",
        )),
        Err(e) => Err(failed_one(a, ErrorLine::new(peer, 1, &e))),
    }
}

/// The receive loop of framed `recv`: `--arrays K` arrays, or without it every array until
/// the sender closes between two messages (at least one). The number received.
fn recv_arrays(
    a: &XferArgs,
    engine: &mut Engine,
    link: &Link,
    progress: Option<&Progress>,
) -> Result<u64, Failure> {
    let of = a
        .framed
        .arrays
        .map_or_else(String::new, |k| format!(" of {k}"));
    let expect = Expect::of(a)?;
    let mut i = 0;
    while a.framed.arrays.is_none_or(|k| i < k) {
        i += 1;
        let outcome = match link {
            Link::One(sock, peer) => recv_one(engine, sock, peer, i),
            Link::Striped(s) => s.recv_one(engine, i),
        };
        match outcome {
            Outcome::Array(line) => {
                count(progress, line.bytes as usize);
                emit(&line.render(a.json));
                let mut wrong = expect.mismatches(&line.dtype, &line.shape, line.order);
                if let Some(e) = line.first_bad_element {
                    wrong.push(format!(
                        "data is not the {} arange pattern: first mismatch at element {e}",
                        line.dtype
                    ));
                }
                if !wrong.is_empty() {
                    return Err(Failure::runtime(format!(
                        "array {i}{of}: {}",
                        wrong.join("; ")
                    )));
                }
            }
            // The sender closed between two messages: with no --arrays, that ends the job.
            Outcome::Closed if a.framed.arrays.is_none() && i > 1 => return Ok(i - 1),
            Outcome::Closed => {
                return Err(Failure::runtime(match a.framed.arrays {
                    Some(k) => {
                        format!("peer closed the connection after {} of {k} array(s)", i - 1)
                    }
                    None => "peer closed the connection before sending any array".to_owned(),
                }));
            }
            Outcome::Failed(line) => {
                emit(&line.render(a.json));
                return Err(Failure::runtime(format!("array {i}{of}: {}", line.error)));
            }
        }
    }
    Ok(i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringxfer::FrameError;

    #[test]
    fn shapes() {
        let p = |s: &str| super::super::args::parse_shape(s).map(|Shape(v)| v);
        assert_eq!(p("20,10,5"), Ok(vec![20, 10, 5]));
        assert_eq!(p(" 20, 10 ,5 "), Ok(vec![20, 10, 5]));
        assert_eq!(p("(20, 10, 5)"), Ok(vec![20, 10, 5]));
        assert_eq!(p("5,"), Ok(vec![5]));
        assert_eq!(p("0"), Ok(vec![0]));
        assert_eq!(p("1e3,1_000"), Ok(vec![1000, 1000]));
        assert_eq!(p(""), Ok(vec![]));
        assert_eq!(p("()"), Ok(vec![]));
        assert!(p("3,,4").is_err());
        assert!(p("3,-4").is_err());
        assert!(p(&vec!["1"; 33].join(",")).is_err());
        assert_eq!(p(&vec!["1"; 32].join(",")).map(|v| v.len()), Ok(32));
        assert_eq!(shape_str(&[]), "()");
        assert_eq!(shape_str(&[5]), "(5,)");
        assert_eq!(shape_str(&[20, 10, 5]), "(20, 10, 5)");
    }

    #[test]
    fn server_lines_name_their_file() {
        let line = |extra: &str| {
            let v: serde_json::Value = serde_json::from_str(&format!(
                "{{\"array\": 2, \"bytes\": 80, \"seconds\": 0.5, \"gbytes_per_s\": 1.5, \
                 \"backend\": \"uring\", \"crc32\": \"466200d9\", \"cpu\": null{extra}}}"
            ))
            .unwrap();
            server_text(&v)
        };
        let head = "array 2: 80 bytes in 0.5000 s: 1.500 GB/s (12.00 Gbit/s), backend uring, \
                    crc32 466200d9";
        assert_eq!(
            line(", \"file\": \"out/p-c1-a2.npy\""),
            format!("{head}, written to out/p-c1-a2.npy, cpu n/a")
        );
        assert_eq!(
            line(", \"arange\": true"),
            format!("{head}, arange pattern ok, cpu n/a")
        );
        assert_eq!(
            line(", \"arange\": false"),
            format!("{head}, NOT the arange pattern, cpu n/a")
        );
    }

    #[test]
    fn error_kinds() {
        let e = Error::Frame(FrameError::TooLarge {
            payload_len: 2,
            limit: 1,
        });
        assert_eq!(e.kind(), "too_large");
        let l = ErrorLine::new("1.2.3.4:5", 2, &e);
        let v: serde_json::Value = serde_json::from_str(&l.render(true)).unwrap();
        assert_eq!(v["kind"], "too_large");
        assert_eq!(v["array"], 2);
        assert!(v["transferred"].is_null());
        let e = Error::UnexpectedEof {
            transferred: 20,
            expected: 32,
        };
        let v: serde_json::Value =
            serde_json::from_str(&ErrorLine::new("p", 1, &e).render(true)).unwrap();
        assert_eq!(
            (&v["transferred"], &v["expected"]),
            (&20.into(), &32.into())
        );
    }
}
