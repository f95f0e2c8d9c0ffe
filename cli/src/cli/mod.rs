//! Command-line interface: argument definitions (clap derive), the pieces the subcommands
//! share, and the dispatcher.
//!
//! * [`bench`] — the main job: the arange array over loopback TCP between two threads, both
//!   backends alternating, every run verified by CRC-32. `bench --fresh` ([`bench_fresh`])
//!   compares receiving into a new array per message with pre-touched memory and the naive
//!   `vec![0; n]`; `bench --count-arrays` ([`bench_many`]) measures streams of small framed
//!   arrays, batched and one at a time; `bench --pingpong` ([`bench_pingpong`]) measures
//!   echo round-trip latency (µs) of raw and framed messages.
//!   The main job batches arrays below 256 MiB into runs of at least 0.25 s ([`batch`]).
//! * [`xfer`] — `send` / `recv` of one array between two processes (or a numpy peer) in raw
//!   mode; [`framed`] — the same commands in framed mode (the default): header, payload and
//!   trailer of `docs/PROTOCOL.md`, several arrays per connection.
//! * [`serve`] — receives framed arrays from any number of clients, one line per array.
//! * [`probe`] — what io_uring offers on this machine.
//! * [`measure`] — per-thread CPU cost, progress lines (`-i`), socket buffer sizes
//!   (`--sndbuf` / `--rcvbuf`) and the engine's notices, shared by the commands above.
//!
//! Units: sizes are bytes, counts are elements; throughput is GB/s = 10^9 bytes/s and
//! Gbit/s = 10^9 bits/s. Exit status: 0 on success, 1 on a failed or unverified transfer,
//! 2 on a usage error.

mod batch;
mod bench;
mod bench_common;
mod bench_fresh;
mod bench_many;
mod bench_pingpong;
mod framed;
mod measure;
mod probe;
mod serve;
mod size;
mod streams;
mod xfer;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ringxfer::dtype::DType;
use ringxfer::{Backend, RecvOp, SendOp, UringTuning};

/// Elements in the default array: the recipe's 50,000,000 float64 (400 MB).
const DEFAULT_COUNT: u64 = 50_000_000;

/// Zero-copy bulk transfer of large arrays over stream sockets (io_uring or blocking).
#[derive(Debug, Parser)]
#[command(name = "ringxfer", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Send an arange array over loopback TCP between two threads and measure each backend.
    ///
    /// Each repeat runs every selected backend once (the order alternates between repeats);
    /// the clock runs from a barrier both threads pass once connected until the last byte is
    /// received and the sender has returned. Every run is verified by CRC-32.
    ///
    /// Arrays below 256 MiB are sent K times back to back per run on one connection, K grown
    /// until a run lasts at least 0.25 s (shorter runs are done again, not reported), each
    /// transfer checked; each run reports K and the SQEs and CQEs both ends' engines used
    /// (0 on the blocking backend and for transfers below the uring backend's
    /// direct_below_bytes, 512 KiB, which take a direct syscall).
    ///
    /// `--fresh` measures fresh-array receives (framed) against pre-touched memory and the
    /// naive `vec![0u8; n]` + blocking receive; `--count-arrays N` measures N small framed
    /// arrays per connection, batched and one at a time. Both print medians per backend and
    /// mode and their ratios. `--pingpong [N]` measures latency instead: N echo round trips
    /// of one message per run, raw and framed, median / p90 / p99 in µs.
    ///
    /// Every run reports the CPU (user and system seconds) of the sending and the receiving
    /// thread, and the summary the median CPU seconds per 10^9 bytes of each end. The split
    /// between user and system comes from the kernel's 10 ms tick samples; the sum has
    /// nanosecond resolution (/proc/thread-self/schedstat).
    Bench(bench::BenchArgs),
    /// Send the arange pattern of a dtype to a peer: framed arrays (the default), or just the
    /// array bytes with --raw.
    Send(xfer::XferArgs),
    /// Receive arrays from a peer and check that they hold the arange pattern: framed (the
    /// default; dtype and shape come from the header), or raw bytes with --raw.
    Recv(xfer::XferArgs),
    /// Receive framed arrays from any number of clients, one line per array or error.
    ///
    /// Prints `listening ADDR` first (the bound address, so port 0 works), then one line per
    /// received array and one per broken client, whose connection is closed while the others
    /// are served on. Each connection holds at most one array at a time, so arrays take at
    /// most max-clients x max-payload bytes (plus the --recycle pool). Runs until killed.
    ///
    /// Each array line carries the receiving thread's CPU (user and system seconds) and the
    /// socket's effective buffer sizes.
    ///
    /// Server output to the client (iperf3's --get-server-output): when a client closes its
    /// write side cleanly between arrays, serve writes back on that connection the lines it
    /// printed for it, as JSON (one object per line, whatever --json says), then closes.
    /// `ringxfer send --get-server-output` half-closes after its last array and prints them,
    /// so one command shows both ends' figures. A client that did not ask has closed its
    /// socket; the failed write (EPIPE/ECONNRESET) is ignored. Nothing is written back after a
    /// broken message.
    ///
    /// Defaults for a network: --timeout 30, --header-timeout 5, --max-clients 128; when every
    /// slot is taken a newcomer evicts the connection idle longest (--evict-idle) or is
    /// refused with a one-line reason. --auth-key FILE requires each client to prove a shared
    /// key first (docs/PROTOCOL.md).
    Serve(serve::ServeArgs),
    /// Report what io_uring offers on this machine.
    Probe(probe::ProbeArgs),
}

/// Parses the command line and runs the subcommand; the process's exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let (name, result) = match cli.command {
        Command::Bench(a) => ("bench", bench::run(&a)),
        Command::Send(a) => ("send", xfer::run(xfer::Role::Send, &a)),
        Command::Recv(a) => ("recv", xfer::run(xfer::Role::Recv, &a)),
        Command::Serve(a) => ("serve", serve::run(&a)),
        Command::Probe(a) => ("probe", probe::run(&a)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("ringxfer {name}: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Why a subcommand failed: a one-line message for stderr and the exit status.
#[derive(Debug)]
pub struct Failure {
    /// Exit status: 1 for a failed transfer or check, 2 for a usage error.
    pub code: u8,
    /// One line, printed after `ringxfer <subcommand>: `.
    pub message: String,
}

impl Failure {
    /// A failed transfer or check (exit status 1).
    pub fn runtime(message: impl Into<String>) -> Failure {
        Failure {
            code: 1,
            message: message.into(),
        }
    }

    /// A usage error (exit status 2, as clap's own).
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }
}

impl From<ringxfer::Error> for Failure {
    fn from(e: ringxfer::Error) -> Failure {
        match e {
            ringxfer::Error::InvalidInput(_) => Failure::usage(e.to_string()),
            _ => Failure::runtime(e.to_string()),
        }
    }
}

/// The array to move: dtype and either an element count or a byte size.
#[derive(Debug, Args)]
pub struct ArrayArgs {
    /// numpy dtype of the elements: <f8, >f8, f4, <i8, i4, i2, |i1, u8, u4, u2, |u1,
    /// float64, int32, uint8, … (no byte-order prefix = native order) [default: f8].
    #[arg(long, value_parser = parse_dtype)]
    dtype: Option<DType>,
    /// Number of elements [default: 50000000]; accepts 50_000_000 and 5e7.
    #[arg(long, value_parser = size::parse_count, conflicts_with = "size")]
    count: Option<u64>,
    /// Array size in bytes instead of --count: 4096, 400MB (10^6), 64MiB (2^20), 1GiB;
    /// must be a multiple of the item size.
    #[arg(long, value_parser = size::parse_size, value_name = "BYTES")]
    size: Option<u64>,
}

/// A resolved [`ArrayArgs`].
#[derive(Debug, Clone, Copy)]
pub struct ArraySpec {
    /// Element type and byte order.
    pub dtype: DType,
    /// Number of elements.
    pub count: u64,
    /// `count * itemsize`.
    pub bytes: usize,
}

impl ArrayArgs {
    /// The dtype: `--dtype`, or `f8` when not given.
    pub fn dtype(&self) -> DType {
        self.dtype.unwrap_or_default()
    }

    /// `--dtype`, when given.
    pub fn dtype_given(&self) -> Option<DType> {
        self.dtype
    }

    /// True when `--count` or `--size` was given.
    pub fn count_given(&self) -> bool {
        self.count.is_some() || self.size.is_some()
    }

    /// The element count and byte size, checked against the address space.
    pub fn resolve(&self) -> Result<ArraySpec, Failure> {
        let dtype = self.dtype();
        let item = dtype.itemsize() as u64;
        let count = match (self.count, self.size) {
            (Some(n), _) => n,
            (None, Some(b)) if b % item != 0 => {
                return Err(Failure::usage(format!(
                    "--size {b} is not a multiple of the {} item size ({item} bytes)",
                    dtype
                )));
            }
            (None, Some(b)) => b / item,
            (None, None) => DEFAULT_COUNT,
        };
        let bytes = count
            .checked_mul(item)
            .and_then(|b| usize::try_from(b).ok())
            .filter(|&b| b <= isize::MAX as usize)
            .ok_or_else(|| Failure::usage(format!("{count} elements of {dtype} is too large")))?;
        Ok(ArraySpec {
            dtype,
            count,
            bytes,
        })
    }
}

fn parse_dtype(s: &str) -> Result<DType, String> {
    s.parse().map_err(|e: ringxfer::Error| match e {
        ringxfer::Error::InvalidInput(m) => m,
        other => other.to_string(),
    })
}

/// Parses a positive number of seconds (`30`, `0.5`).
fn parse_secs(s: &str) -> Result<Duration, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| *v > 0.0)
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| format!("bad duration {s:?}: expected a positive number of seconds"))
}

/// `--backend` values of send, recv and serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// io_uring when the probe says it works, else blocking (RINGXFER_BACKEND overrides).
    Auto,
    /// io_uring; fails when unavailable.
    Uring,
    /// The blocking std loop.
    Blocking,
}

impl BackendArg {
    /// The library's backend.
    pub fn backend(self) -> Backend {
        match self {
            BackendArg::Auto => Backend::Auto,
            BackendArg::Uring => Backend::Uring,
            BackendArg::Blocking => Backend::Blocking,
        }
    }
}

/// `--send-op` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SendOpArg {
    /// Adaptive (the library's default): SEND_ZC with usage reports on a few trial requests
    /// per destination, plain SEND from then on where the kernel copies anyway.
    Auto,
    /// IORING_OP_SEND with MSG_WAITALL.
    Send,
    /// IORING_OP_SEND_ZC from the registered array.
    SendZc,
    /// IORING_OP_WRITE_FIXED on the socket.
    WriteFixed,
}

/// `--recv-op` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RecvOpArg {
    /// IORING_OP_RECV with MSG_WAITALL.
    Recv,
    /// IORING_OP_READ_FIXED into the registered array.
    ReadFixed,
}

/// Knobs of the uring backend ([`UringTuning`]); unset ones keep the library's defaults.
#[derive(Debug, Args)]
pub struct TuningArgs {
    /// uring send opcode [default: the library's].
    #[arg(long, value_enum)]
    send_op: Option<SendOpArg>,
    /// uring receive opcode [default: the library's].
    #[arg(long, value_enum)]
    recv_op: Option<RecvOpArg>,
    /// uring bytes per SQE, e.g. 16MiB [default: the library's].
    #[arg(long, value_parser = size::parse_size, value_name = "BYTES")]
    segment: Option<u64>,
    /// uring SQEs per link chain, 1..=32 [default: the library's].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=ringxfer::uring::MAX_CHAIN_SQES as i64))]
    chain: Option<u32>,
}

impl TuningArgs {
    /// The library defaults with the given knobs applied.
    pub fn tuning(&self) -> Result<UringTuning, Failure> {
        let mut t = UringTuning::default();
        if let Some(op) = self.send_op {
            t.send_op = match op {
                SendOpArg::Auto => SendOp::Auto,
                SendOpArg::Send => SendOp::Send,
                SendOpArg::SendZc => SendOp::SendZc,
                SendOpArg::WriteFixed => SendOp::WriteFixed,
            };
        }
        if let Some(op) = self.recv_op {
            t.recv_op = match op {
                RecvOpArg::Recv => RecvOp::Recv,
                RecvOpArg::ReadFixed => RecvOp::ReadFixed,
            };
        }
        if let Some(seg) = self.segment {
            let max = u64::from(ringxfer::MAX_IO_BYTES);
            if seg == 0 || seg > max {
                return Err(Failure::usage(format!(
                    "--segment {seg} out of range (1..={max} bytes)"
                )));
            }
            t.segment_bytes = seg as u32;
        }
        if let Some(n) = self.chain {
            t.chain_sqes = n;
        }
        Ok(t)
    }
}

/// A byte buffer on an 8-byte boundary (so typed fills take the fast path), allocated
/// without aborting on failure.
#[derive(Debug)]
pub struct Buffer {
    words: Vec<u64>,
    len: usize,
}

impl Buffer {
    /// `len` zero bytes; every page is written, so none faults later.
    pub fn zeroed(len: usize) -> Result<Buffer, Failure> {
        let n = len.div_ceil(8);
        let mut words = Vec::new();
        words
            .try_reserve_exact(n)
            .map_err(|_| Failure::runtime(format!("cannot allocate {len} bytes for the array")))?;
        words.resize(n, 0);
        Ok(Buffer { words, len })
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }

    /// The bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.words)[..self.len]
    }
}

/// The kernel's reason for refusing a registration on the uring backend (on the blocking
/// backend there is nothing to register, which is not a refusal).
pub fn refusal(uring: bool, registered: bool, reason: Option<&str>) -> Option<String> {
    (uring && !registered).then(|| reason.unwrap_or("unknown reason").to_owned())
}

/// CRC-32 with the zlib polynomial, as Python's `'%08x' % zlib.crc32(b)` prints it.
pub fn crc32_hex(bytes: &[u8]) -> String {
    format!("{:08x}", crc32fast::hash(bytes))
}

/// Throughput in GB/s (10^9 bytes per second).
pub fn gbytes_per_s(bytes: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / seconds / 1e9
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn crc_matches_zlib() {
        // zlib.crc32(b"123456789") == 0xcbf43926, the standard check value.
        assert_eq!(crc32_hex(b"123456789"), "cbf43926");
        assert_eq!(crc32_hex(b""), "00000000");
    }

    #[test]
    fn array_resolution() {
        let parse = |args: &[&str]| {
            let mut v = vec!["ringxfer", "bench"];
            v.extend_from_slice(args);
            match Cli::try_parse_from(v).map(|c| c.command) {
                Ok(Command::Bench(b)) => b.array.resolve().map(|s| (s.count, s.bytes)),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(parse(&[]).unwrap(), (50_000_000, 400_000_000));
        assert_eq!(parse(&["--size", "1GiB"]).unwrap(), (1 << 27, 1 << 30));
        assert_eq!(
            parse(&["--dtype", "u1", "--size", "400MB"]).unwrap(),
            (400_000_000, 400_000_000)
        );
        assert_eq!(
            parse(&["--dtype", "f4", "--count", "5e6"]).unwrap(),
            (5_000_000, 20_000_000)
        );
        assert_eq!(parse(&["--size", "1001"]).unwrap_err().code, 2);
        assert!(Cli::try_parse_from(["ringxfer", "bench", "--count", "5", "--size", "8"]).is_err());
    }
}
