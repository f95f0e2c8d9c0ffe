//! The flags of `send` and `recv`: the role, the endpoint (`--listen` / `--connect`), the array,
//! the backend and its knobs, and the flags only framed mode has.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use ringxfer::Order;

use ringxfer::Backend;

use crate::measure::SockBufArgs;
use ringxfer::MAX_NDIM;

use crate::args::TuningArgs;
use crate::args::{ArrayArgs, BACKENDS, LibraryEnum, display_name};
use crate::failure::Failure;
use crate::size;

/// Which side of the transfer this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends the arange pattern, or a file (`--file`).
    Send,
    /// Receives and checks it, or writes a file (`--out`).
    Recv,
}

impl Role {
    /// `"send"` or `"recv"`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Send => "send",
            Role::Recv => "recv",
        }
    }
}

/// Where the connection comes from: exactly one of `--listen` / `--connect`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct Endpoint {
    /// Listen on ADDR (e.g. 127.0.0.1:5000, [::]:5000, or unix:PATH for a Unix domain socket,
    /// whose file is removed once the connection is accepted) and accept one connection.
    /// Several comma-separated TCP addresses are rails (A,B), each accepting --streams
    /// connections (see --streams for the order; framed, the count comes from the sender).
    #[arg(long, value_name = "ADDR[,ADDR...]")]
    pub(crate) listen: Option<String>,
    /// Connect to ADDR (host:port, or unix:PATH for a Unix domain socket), retrying while the
    /// peer is not listening yet (see --connect-timeout). Several comma-separated TCP
    /// addresses are rails, each getting --streams connections.
    #[arg(long, value_name = "ADDR[,ADDR...]")]
    pub(crate) connect: Option<String>,
}

impl Endpoint {
    /// The addresses of `--listen` or `--connect` (one per rail), in the order given.
    ///
    /// # Errors
    /// A usage error for an empty address (`A,,B`, a trailing comma).
    pub(crate) fn rails(&self) -> Result<Vec<String>, Failure> {
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
    pub(crate) endpoint: Endpoint,
    /// How long --connect keeps retrying a refused or missing peer, in seconds; the first
    /// retry is said once on stderr.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = crate::args::parse_secs)]
    pub(crate) connect_timeout: Duration,
    /// Raw mode: the wire carries only the array bytes, no header (the receiver must be told
    /// --dtype and --count). Without it, arrays are framed (docs/PROTOCOL.md).
    #[arg(long)]
    pub(crate) raw: bool,
    #[command(flatten)]
    pub(crate) array: ArrayArgs,
    #[command(flatten)]
    pub(crate) framed: FramedArgs,
    #[command(flatten)]
    pub(crate) files: FileArgs,
    /// Engine backend.
    #[arg(long, value_parser = LibraryEnum::new(BACKENDS, display_name), default_value_t = Backend::Auto)]
    pub(crate) backend: Backend,
    /// Print JSON (one object per line) instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Fail when no byte moves for this many seconds (default: wait forever). Also bounds the
    /// wait for the peer's close after the data (send: the graceful close; recv: the
    /// extra-bytes check), 30 s without it.
    #[arg(long, value_name = "SECS", value_parser = crate::args::parse_secs)]
    pub(crate) timeout: Option<Duration>,
    /// Raw mode: register the array as fixed buffers before the connection is made.
    #[arg(long)]
    pub(crate) registered: bool,
    #[command(flatten)]
    pub(crate) tuning: TuningArgs,
    /// Report progress every SECS on stderr: a bar on a terminal, else one line per interval
    /// (`[  1.00-  2.00 s]  3.9 GB  31.20 Gbit/s`). Raw mode then moves the array in 64 MiB
    /// calls (the same bytes on the wire); framed mode counts whole arrays.
    #[arg(short = 'i', long, value_name = "SECS", value_parser = crate::args::parse_secs,
          conflicts_with = "registered")]
    pub(crate) interval: Option<Duration>,
    #[command(flatten)]
    pub(crate) sockbufs: SockBufArgs,
    /// send (framed): print the lines the server (`ringxfer serve`) sends back after the last
    /// array, its per-array reports (like iperf3's --get-server-output). Every send
    /// half-closes and reads until the peer closes; this keeps what arrives instead of
    /// discarding it. With --streams / rails the lines come back on stream 0.
    #[arg(long)]
    pub(crate) get_server_output: bool,
    /// Connections per rail (address), each array striped over all of them (total = rails x
    /// N): stream i carries the i-th contiguous stripe (4 KiB-aligned), received in place.
    /// Order: the side that connects opens its streams one after another in rail order (rail
    /// 0's N, then rail 1's, ...), each connect complete before the next; the listening side
    /// accepts per rail in order that rail's N connections in accept order, and fails when the
    /// sender opens fewer (none more for --timeout, 10 s without it) or more (an extra
    /// connection is pending once the data starts). --raw: both sides must give the same rails
    /// and N. Framed (RGXF only, not --format npy): every stream starts with a stripe prefix
    /// (array id, stream index and count, offset and length: docs/PROTOCOL.md), so a listening
    /// recv (or serve) learns N from it and needs neither --streams nor --count/--dtype; recv
    /// --connect needs --streams.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub(crate) streams: u32,
    /// Raw mode: both directions at once (as iperf3 --bidir): each side sends the arange array
    /// and receives one of the same size on the same connection(s), both checked; the report
    /// gives each direction's time and GB/s (each direction has its own engine and thread).
    #[arg(long)]
    pub(crate) bidir: bool,
    /// Shared-key authentication: prove (and make the peer prove) the key in FILE right after
    /// the connection is made, before any array moves (docs/PROTOCOL.md). The side that
    /// connects is the client, the side that listens the server; both need the same file.
    #[arg(long, value_name = "FILE")]
    pub(crate) auth_key: Option<PathBuf>,
}

/// Real files instead of the arange pattern: `send --file`, `recv --out` (see
/// [`crate::files`]).
#[derive(Debug, Args)]
pub struct FileArgs {
    /// send: send this file instead of the arange pattern, mapped and sent from the mapping
    /// (no copy into a buffer). Framed (the default): a .npy file (versions 1.0-3.0), whose
    /// header gives dtype, shape and order; it is checked before connecting (a bad header or
    /// a length that does not match it: exit 1, nothing sent). --raw: any file, every byte
    /// of it as it is (a .npy file is sent whole, header included).
    #[arg(long, value_name = "PATH",
          conflicts_with_all = ["dtype", "count", "size", "shape", "order", "out"])]
    pub file: Option<PathBuf>,
    /// recv: write the received array to PATH instead of checking the arange pattern.
    /// Framed: exactly one array (a second one is an error, as with --arrays 1), as a .npy
    /// file that numpy.load reads back; --raw: the
    /// --count/--size bytes as they came. Received straight into a mapping of a temporary
    /// file next to PATH (.NAME.PID.part), renamed to PATH only when the command succeeds
    /// and deleted otherwise. PATH must not exist (nothing is overwritten).
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
}

/// The flags that only framed mode has.
#[derive(Debug, Args)]
pub struct FramedArgs {
    /// Dimensions of each array in elements, comma-separated: 20,10,5; 0 for an empty
    /// dimension; '' (an empty string) for a 0-d scalar. send: instead of --count (which
    /// sends a 1-D array); recv: each received array must have this shape.
    #[arg(long, value_parser = parse_shape, conflicts_with_all = ["count", "size"])]
    pub shape: Option<Shape>,
    /// Memory order of the payload: C (row-major) or F (column-major) [default: C]. recv:
    /// each received array must be in this order.
    #[arg(long, value_parser = parse_order)]
    pub order: Option<Order>,
    /// send: arrays to send back to back on the connection(s) [default: 1]. recv: without
    /// it, every array until the sender closes between two arrays (at least one; a close
    /// inside an array is an error); with it, exactly N: more is an error on both sides (recv
    /// tells the sender why in one line and aborts the connection, so the sender exits 1 too).
    /// recv --out takes exactly one array.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub arrays: Option<u64>,
    /// recv: largest payload accepted per array, checked against each header before
    /// anything is allocated, e.g. 400MB, 1GiB [default: 8GiB].
    #[arg(long, value_parser = size::parse_size, value_name = "BYTES")]
    pub max_payload: Option<u64>,
    /// send: the stream format of each array: rgxf (ringxfer's framed message, payload
    /// CRC-32 checked by the receiver) or npy (numpy's .npy stream, what numpy.save writes,
    /// read by numpy.lib.format.read_array on the socket; no checksum travels) [default:
    /// rgxf]. recv and serve take either, told apart by the first byte.
    #[arg(long, value_name = "FORMAT", value_parser = parse_format)]
    pub format: Option<ringxfer::WireFormat>,
}

impl FramedArgs {
    /// The first framed-only flag given, if any (raw mode rejects them).
    pub fn given(&self) -> Option<&'static str> {
        [
            (self.shape.is_some(), "--shape"),
            (self.order.is_some(), "--order"),
            (self.arrays.is_some(), "--arrays"),
            (self.max_payload.is_some(), "--max-payload"),
            (self.format.is_some(), "--format"),
        ]
        .into_iter()
        .find_map(|(given, name)| given.then_some(name))
    }
}

/// Parses `--format`: `rgxf` or `npy`.
fn parse_format(s: &str) -> Result<ringxfer::WireFormat, String> {
    s.parse()
        .map_err(|e: ringxfer::dtype::UnknownName| e.to_string())
}

/// A parsed `--shape`: dimensions in elements (empty for a 0-d array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape(pub Vec<u64>);

/// Parses `20,10,5`, `(20, 10, 5)`, `5,` (numpy's 1-tuple), `0`, `` and `()` (0-d). Each
/// dimension accepts the forms of `--count` (`1_000`, `1e3`).
pub(crate) fn parse_shape(s: &str) -> Result<Shape, String> {
    let t = s.trim();
    let t = t
        .strip_prefix('(')
        .and_then(|u| u.strip_suffix(')'))
        .unwrap_or(t)
        .trim();
    if t.is_empty() {
        return Ok(Shape(Vec::new()));
    }
    // One trailing comma is allowed, as in numpy's `(5,)`.
    let t = t.strip_suffix(',').unwrap_or(t);
    let dims = t
        .split(',')
        .map(|d| {
            size::parse_count(d.trim())
                .map_err(|_| format!("bad shape {s:?}: {d:?} is not a dimension (e.g. 20,10,5)"))
        })
        .collect::<Result<Vec<u64>, String>>()?;
    if dims.len() > MAX_NDIM {
        return Err(format!(
            "bad shape {s:?}: {} dimensions, at most {MAX_NDIM}",
            dims.len()
        ));
    }
    Ok(Shape(dims))
}

fn parse_order(s: &str) -> Result<Order, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("bad order {s:?}: expected C or F"))
}
