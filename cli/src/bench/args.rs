//! The flags of `ringxfer bench`.

use std::time::Duration;

use clap::{Args, ValueEnum};

use ringxfer::Prefault;

use crate::args::ArrayArgs;
use crate::args::TuningArgs;
use crate::args::{LibraryEnum, PREFAULTS, serde_name};
use crate::measure::SockBufArgs;
use crate::size;

/// `--backend` values of the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchBackend {
    /// io_uring only.
    Uring,
    /// The blocking std loop only.
    Blocking,
    /// Both, alternating within each repeat.
    Both,
}

/// Arguments of `ringxfer bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which backend(s) to measure.
    #[arg(long, value_enum, default_value_t = BenchBackend::Both)]
    pub(crate) backend: BenchBackend,
    #[command(flatten)]
    pub(crate) array: ArrayArgs,
    /// Runs per backend (per backend and mode with --fresh / --count-arrays; per backend,
    /// size and path with --pingpong).
    #[arg(long, default_value_t = 5, value_name = "R",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) repeat: u32,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Register the arrays (send and receive) as fixed buffers before the clock starts,
    /// instead of one-shot calls.
    #[arg(long, conflicts_with_all = ["fresh", "count_arrays", "pingpong"])]
    pub(crate) registered: bool,
    /// Fail a run when no byte moves for this many seconds.
    #[arg(long, value_name = "SECS", value_parser = crate::args::parse_secs)]
    pub(crate) timeout: Option<Duration>,
    #[command(flatten)]
    pub(crate) tuning: TuningArgs,
    /// Fresh-receive mode (framed): per backend, receive the array into a buffer touched
    /// once before the runs (`recv_array_into`) and as a new array per message (`recv_any`,
    /// dropped after each run so the engine can recycle its memory), and on the blocking
    /// backend the naive baseline: raw bytes into `vec![0u8; n]` allocated inside the clock.
    /// Native dtypes with a Rust element type only (f8, f4, i8, i4, i2, i1, u8, u4, u2, u1).
    #[arg(long, conflicts_with_all = ["count_arrays", "pingpong"])]
    pub(crate) fresh: bool,
    /// --fresh: how fresh receive memory is prepared [default: the library's, huge]: none
    /// (pages fault in during the receive), huge (MADV_HUGEPAGE, pages fault in during the
    /// receive 2 MiB at a time), populate (MADV_POPULATE_WRITE first),
    /// huge-populate (MADV_HUGEPAGE, then MADV_POPULATE_WRITE), ahead (uring: MADV_POPULATE_WRITE
    /// in 2 MiB slices ahead of the receive point while the receive runs).
    #[arg(long, value_parser = LibraryEnum::new(PREFAULTS, serde_name), requires = "fresh")]
    pub(crate) prefault: Option<Prefault>,
    /// --fresh: bytes of dropped arrays' memory kept for reuse (0: no recycling), e.g.
    /// 1GiB [default: the library's, 2GiB].
    #[arg(long, value_parser = size::parse_size, value_name = "BYTES", requires = "fresh")]
    pub(crate) recycle: Option<u64>,
    /// Many-small-arrays mode: N framed 1-D arrays of --dtype (default f8) with --size bytes
    /// each (default 4KiB; or --count elements) on one connection per run, batched (`send_arrays` + `Receiver`)
    /// and one at a time (`send_array_bytes` + `recv_any`), on each backend.
    /// Without N: 100000 arrays of up to 4 KiB, fewer for larger arrays (about 1 GB a run).
    #[arg(long, value_name = "N", num_args = 0..=1, conflicts_with = "pingpong",
          value_parser = size::parse_count)]
    pub(crate) count_arrays: Option<Option<u64>>,
    /// --count-arrays: arrays per `send_arrays` call in the batched path [default: 64].
    #[arg(long, value_name = "K", requires = "count_arrays",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) batch: Option<u32>,
    /// --count-arrays: which path(s) to measure.
    #[arg(long, value_enum, requires = "count_arrays", default_value_t = PathArg::Both)]
    pub(crate) path: PathArg,
    /// Report progress every SECS on stderr while the runs go: a progress bar on a terminal,
    /// else one line per interval (`[  1.00-  2.00 s]  3.9 GB  31.20 Gbit/s`). The main job
    /// then receives in 64 MiB `recv_into` calls so bytes can be counted during a run (the
    /// stream is the same; without -i each run is one call); --fresh counts each run as it
    /// ends, --count-arrays each array.
    #[arg(short = 'i', long, value_name = "SECS", value_parser = crate::args::parse_secs,
          conflicts_with_all = ["registered", "pingpong"])]
    pub(crate) interval: Option<Duration>,
    /// Latency mode: N echo round trips per run (default 200) of one message, thread A
    /// sending and waiting for the whole echo, thread B echoing, over loopback TCP; raw
    /// (`send_from`/`recv_into`), framed (`send_array_bytes`/`recv_any`) and framed with
    /// `send_arrays`, on each backend. Message size: --size/--count, or without them a sweep
    /// of 16 B, 100 KB and 1 MB. Prints median, p90 and p99 round-trip µs and the framed/raw
    /// median ratio per backend and size.
    #[arg(long, value_name = "N", num_args = 0..=1,
          value_parser = size::parse_count)]
    pub(crate) pingpong: Option<Option<u64>>,
    #[command(flatten)]
    pub(crate) sockbufs: SockBufArgs,
    /// Main job: stripe the array over N loopback TCP connections per run
    /// (`Engine::send_striped` / `recv_striped`: one contiguous 4 KiB-aligned stripe per
    /// connection, received in place); 1 = one connection with `send_from` / `recv_into`.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub(crate) streams: u32,
    /// Main job: both directions at once on the same connection(s), as iperf3 --bidir: each
    /// end sends the array and receives it, on two threads with an engine each; both
    /// directions verified, each with its own clock and GB/s.
    #[arg(long, conflicts_with = "registered")]
    pub(crate) bidir: bool,
}

/// `--path` values of `--count-arrays`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PathArg {
    /// `send_arrays` in batches, `Receiver::recv_any` (read-ahead).
    Batched,
    /// `send_array_bytes` and `Engine::recv_any` per array (the recipe's way).
    PerArray,
    /// Both.
    Both,
}
