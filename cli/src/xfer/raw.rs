//! `ringxfer send` / `ringxfer recv`: arrays between two processes.
//!
//! Framed mode (the default) is in [`super::framed`]. Raw mode (`--raw`) puts exactly the array's bytes on the wire, nothing else: what a numpy peer doing
//! `sock.send(memoryview(a).cast('B'))` sends, or `sock.recv_into(memoryview(a).cast('B'))`
//! expects. Either side may listen (it accepts one connection); `--connect` retries for
//! `--connect-timeout` seconds (10 by default) so the peer may start second.
//!
//! The sender builds the arange pattern and its CRC-32 before connecting; the receiver
//! allocates (and touches) its buffer before connecting. `--file PATH` sends every byte of
//! a file from its mapping instead (as `u1` elements); `--out PATH` receives the
//! `--count`/`--size` bytes into a mapped new file instead of checking them, renamed into
//! place only when the command succeeds ([`crate::files`]). The clock runs from the established
//! connection to the end of `send_from` (every byte handed to the kernel) or `recv_into`
//! (every byte received). Both report the CPU (user and system seconds) of the thread that
//! moved the bytes over the same stretch ([`crate::measure`]), and the socket's effective
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

use std::time::Instant;

use ringxfer::dtype::{fill_arange, verify_arange};
use ringxfer::{ActiveBackend, Engine, Options};
use serde::Serialize;

use super::args::{Role, XferArgs};
use crate::args::ArraySpec;
use crate::buffer::Buffer;
use crate::failure::Failure;
use crate::files::OutFile;
use crate::measure::{
    Cpu, Progress, SockBufs, cpu_text, recv_chunked, say_notices, send_chunked, with_cpu,
};
use crate::net::{Conn, close_outcome, connect, keep_head, server_line, with_server_word};
use crate::report::crc32_hex;
use crate::report::gbytes_per_s;
use ringxfer::dtype::{DType, Scalar};
use ringxfer::file::MappedFile;

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
    /// send `--file`: the file sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    /// recv `--out`: the file written.
    #[serde(skip_serializing_if = "Option::is_none")]
    out: Option<String>,
}

/// Runs `ringxfer send` or `ringxfer recv`.
// About 130 lines: one raw transfer in order (the source or sink — pattern, mapped file or
// output file —, the connection, the clock, the end-of-stream or graceful-close check, the
// report), sharing the buffers and the socket it opened; the striped case is `streams::run`.
pub fn run(role: Role, a: &XferArgs, rails: &[String], multi: bool) -> Result<(), Failure> {
    let file = a
        .files
        .file
        .as_deref()
        .map(crate::files::open_raw)
        .transpose()?;
    let spec = match &file {
        // `--raw --file`: the file's bytes, as `u1` elements.
        Some(m) => ArraySpec {
            dtype: DType::native(Scalar::U8),
            count: m.len() as u64,
            bytes: m.len(),
        },
        None => a.array.resolve()?,
    };
    let opts = Options {
        backend: a.backend,
        idle_timeout: a.timeout,
        uring: a.tuning.tuning()?,
        ..Options::default()
    };
    if multi {
        return super::streams::run(role, a, rails, spec, &opts, file);
    }
    let mut engine = crate::report::engine(role.name(), opts)?;
    let backend = engine.backend().name();

    let mut mem = memory(role, a, spec, file)?;
    let send_crc = (role == Role::Send).then(|| crc32_hex(mem.bytes()));

    let progress = Progress::start(a.interval, spec.bytes as u64);
    let data = match &mut mem {
        Memory::Buffer(b) if role == Role::Send => Data::Send(b.bytes()),
        Memory::Buffer(b) => Data::Recv(b.bytes_mut()),
        Memory::File(m) => Data::Send(m.bytes()),
        Memory::Out(o) => Data::Recv(o.bytes_mut()),
    };
    let t = transfer(a, &mut engine, data, progress.as_ref());
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

    let buf = &mem;
    let (crc32, check) = match (send_crc, buf) {
        (Some(crc), _) => (crc, None),
        (None, Memory::Out(_)) => (crc32_hex(buf.bytes()), None),
        (None, _) => (
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
        file: a.files.file.as_ref().map(|f| f.display().to_string()),
        out: a.files.out.as_ref().map(|f| f.display().to_string()),
    };
    if a.json {
        crate::report::print_json(&report)?;
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
            match (&report.file, &report.out, report.verified) {
                (Some(f), _, _) => format!(", from {f}"),
                (_, Some(f), _) => format!(", written to {f}"),
                (_, _, Some(true)) => ", arange pattern verified".to_owned(),
                (_, _, Some(false)) => ", ARANGE PATTERN MISMATCH".to_owned(),
                _ => String::new(),
            },
            cpu_text(report.cpu)
        );
    }
    if let Some(Err(i)) = check {
        let item = spec.dtype.itemsize() as u64;
        let hint = if buf.bytes().starts_with(&ringxfer::MAGIC) {
            format!("; {}", super::framed::FRAMED_DATA_HINT)
        } else {
            String::new()
        };
        return Err(Failure::runtime(format!(
            "received data is not the {} arange pattern: first mismatch at element {i} \
             (byte offset {}){hint}",
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
    })?;
    mem.commit()
}

/// The memory raw mode moves: a buffer (the arange pattern to send, or to receive and
/// check), a mapped file to send (`--file`), or a new mapped file to receive into (`--out`).
pub(super) enum Memory {
    Buffer(Buffer),
    File(MappedFile),
    Out(OutFile),
}

impl Memory {
    /// The memory to receive into: a buffer, or an `--out` file (`None`: a file to send).
    pub(super) fn writable(&mut self) -> Option<&mut [u8]> {
        match self {
            Memory::Buffer(b) => Some(b.bytes_mut()),
            Memory::File(_) => None,
            Memory::Out(o) => Some(o.bytes_mut()),
        }
    }

    /// `--out`: renames the received file into place. Called only once the whole exchange
    /// succeeded (the peer closed after the data); dropped instead, the file is deleted.
    pub(super) fn commit(self) -> Result<(), Failure> {
        match self {
            Memory::Out(o) => o.commit().map(drop).map_err(Failure::runtime),
            _ => Ok(()),
        }
    }

    pub(super) fn bytes(&self) -> &[u8] {
        match self {
            Memory::Buffer(b) => b.bytes(),
            Memory::File(m) => m.bytes(),
            Memory::Out(o) => o.bytes(),
        }
    }
}

/// The memory for `role`: `file` (already mapped) to send, a new `--out` file of
/// `spec.bytes` to receive into, else a buffer (filled with the arange pattern to send).
pub(super) fn memory(
    role: Role,
    a: &XferArgs,
    spec: ArraySpec,
    file: Option<MappedFile>,
) -> Result<Memory, Failure> {
    if let Some(m) = file {
        return Ok(Memory::File(m));
    }
    if let (Role::Recv, Some(out)) = (role, &a.files.out) {
        crate::files::check_out(out)?;
        return OutFile::create(out, spec.bytes as u64)
            .map(Memory::Out)
            .map_err(Failure::runtime);
    }
    let mut buf = Buffer::zeroed(spec.bytes)?;
    if role == Role::Send {
        fill_arange(spec.dtype, buf.bytes_mut());
    }
    Ok(Memory::Buffer(buf))
}

/// The bytes to move, by direction.
enum Data<'a> {
    Send(&'a [u8]),
    Recv(&'a mut [u8]),
}

/// What [`transfer`] measured.
struct Moved {
    /// Seconds the transfer took.
    seconds: f64,
    /// Whether the array was registered (`None` without `--registered`).
    registered: Option<bool>,
    peer: String,
    cpu: Option<Cpu>,
    bufs: SockBufs,
    /// How the connection ended: send: the peer's bytes discarded by the graceful close;
    /// recv: the end-of-stream check (`Ok(0)`).
    closed: ringxfer::Result<u64>,
}

/// Registers the array (with `--registered`, before the connection so the peer does not
/// wait for it), connects and moves the array.
fn transfer(
    a: &XferArgs,
    engine: &mut Engine,
    data: Data<'_>,
    p: Option<&Progress>,
) -> Result<Moved, Failure> {
    let uring = engine.backend() == ActiveBackend::Uring;
    match (data, a.registered) {
        (Data::Send(bytes), true) => {
            let role = Role::Send;
            let mut g = engine.register_send(bytes);
            warn_refusal(role, uring, g.is_registered(), g.fallback_reason());
            let m = connected(role, a, |s| g.send(s))?;
            Ok(Moved {
                registered: Some(g.is_registered()),
                ..m
            })
        }
        (Data::Send(bytes), false) => {
            connected(Role::Send, a, |s| send_chunked(engine, s, bytes, p))
        }
        (Data::Recv(bytes), true) => {
            let role = Role::Recv;
            let mut g = engine.register_recv(bytes);
            warn_refusal(role, uring, g.is_registered(), g.fallback_reason());
            let m = connected(role, a, |s| g.recv(s))?;
            Ok(Moved {
                registered: Some(g.is_registered()),
                ..m
            })
        }
        (Data::Recv(bytes), false) => {
            connected(Role::Recv, a, |s| recv_chunked(engine, s, bytes, p))
        }
    }
}

/// Opens the connection and runs `op` on it, timed (clock and CPU); then, off the clock,
/// ends it: send closes gracefully, recv checks that nothing follows (both bounded by
/// `--timeout`, [`ringxfer::close::DEFAULT_CLOSE_TIMEOUT`] without it).
fn connected(
    role: Role,
    a: &XferArgs,
    op: impl FnOnce(&Conn) -> ringxfer::Result<()>,
) -> Result<Moved, Failure> {
    let (sock, peer) = connect(role, &a.endpoint, &a.sockbufs, a.connect_timeout)?;
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
            // The receiver said why it did not take the array: over a Unix socket (no reset)
            // its close after the line is a plain one, no confirmation either.
            if let Some(line) = server_line(&said) {
                return Err(Failure::runtime(match &r {
                    Err(e) => format!("{line} (delivery not confirmed: {e})"),
                    Ok(_) => line,
                }));
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

/// Says once on stderr why the kernel refused to register the array (the transfer still
/// runs, unregistered).
fn warn_refusal(role: Role, uring: bool, registered: bool, reason: Option<&str>) {
    if let Some(reason) = crate::report::refusal(uring, registered, reason) {
        eprintln!(
            "ringxfer {}: the kernel refused to register the array: {reason}",
            role.name()
        );
    }
}
