//! `ringxfer bench --count-arrays N`: a stream of many small framed arrays on one connection.
//!
//! Each run sends N framed 1-D arrays of `--dtype` (default `<f8`) with `--size` bytes each
//! (default 4 KiB = 512 elements; or `--count` elements) over one fresh loopback TCP
//! connection, through one of two paths:
//!
//! * `batched`: the sender calls `Engine::send_arrays` with `--batch` arrays at a time
//!   (default 64; the library packs headers, small payloads and trailers into one buffer),
//!   the receiver reads with `Engine::receiver(&sock)` and `Receiver::recv_any` per array
//!   (read-ahead: many messages per completion / `read`);
//! * `per-array`: the recipe's way, `Engine::send_array_bytes` per array and unbuffered
//!   `Engine::recv_any` per array.
//!
//! Each repeat measures both paths on each backend (the order of backends and of paths
//! alternates between repeats); one sending and one receiving engine per backend live across
//! all repeats. Payloads: the sender holds 64 distinct arrays, consecutive slices of one
//! arange pattern, and array `k` carries slice `k % 64`, so a reordered, repeated or lost
//! array changes what the receiver sees (for one-byte dtypes, whose arange wraps at 256, the
//! slices may coincide). The clock is the main bench's (barrier, then until the receiver has
//! all N arrays and the sender has returned). Inside it the receiver checks each array as a
//! consumer would look at it: dtype, shape and order from the header, the library's payload
//! checksum flag, and its bytes compared with the slice it must hold. After the clock the
//! stream must end cleanly (no extra message). Throughput counts payload bytes only (not the
//! 48-byte header and 8-byte trailer of each array).

use std::net::TcpStream;
use std::time::Instant;

use ringxfer::dtype::DType;
use ringxfer::{AnyArray, ArrayView, Backend, Engine, Error, Options, Order};
use serde::Serialize;

use super::args::{BenchArgs, PathArg};
use super::common::{
    Measured, arange_slices, cpu_cell, kind_cell, over_loopback, per_gb_cell, ratio, ratio_cell,
    spread_or_zero, verified_cell,
};
use super::record::{Detail, Label, RunRecord, Summary, median_in};
use super::runner::{self, Mode, Pair};
use crate::args::ArraySpec;
use crate::buffer::Buffer;
use crate::failure::Failure;
use crate::measure::{Progress, SockBufArgs, count};
use crate::report::gbytes_per_s;

/// Array size without --size/--count.
const DEFAULT_ARRAY_BYTES: u64 = 4096;
/// Distinct payloads the sender cycles through.
const DISTINCT: usize = 64;
/// Arrays per `send_arrays` call without --batch.
const DEFAULT_BATCH: u32 = 64;

/// Arrays per run without an explicit N: 100,000 up to 4 KiB, then about 1 GB of payload
/// per run (15,258 at 64 KiB), at least 1,000.
pub fn default_arrays(array_bytes: usize) -> u64 {
    (1_000_000_000 / array_bytes.max(1) as u64).clamp(1_000, 100_000)
}

/// How the arrays travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Batched,
    PerArray,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Batched => "batched",
            Path::PerArray => "per-array",
        }
    }

    fn label(self) -> Label {
        Label {
            key: "path",
            name: self.name(),
        }
    }
}

/// This mode's own fields of the `--json` report ([`Report`](super::runner::Report) adds the
/// common ones).
#[derive(Debug, Serialize)]
struct Fields {
    mode: &'static str,
    dtype: String,
    shape: [u64; 1],
    array_bytes: usize,
    arrays: u64,
    batch: u32,
    distinct_arrays: usize,
    /// Median arrays/s of uring batched over blocking per-array (issue 3's goal: >= 2).
    ratio_uring_batched_over_blocking_per_array: Option<f64>,
    /// Median arrays/s of uring batched over blocking batched (what io_uring adds to batching).
    ratio_uring_batched_over_blocking_batched: Option<f64>,
    /// Median arrays/s of uring per-array over blocking per-array.
    ratio_uring_per_array_over_blocking_per_array: Option<f64>,
}

/// The arrays of one run: what is sent, and what each received array must hold.
struct Stream<'a> {
    dtype: DType,
    shape: [u64; 1],
    /// `DISTINCT` consecutive slices of one arange pattern.
    payloads: &'a [u8],
    array_bytes: usize,
    arrays: u64,
}

impl Stream<'_> {
    /// The payload of array `k`.
    fn payload(&self, k: u64) -> &[u8] {
        let i = (k % DISTINCT as u64) as usize;
        &self.payloads[i * self.array_bytes..(i + 1) * self.array_bytes]
    }

    /// `Ok` when received array `k` is the one sent.
    fn check(&self, k: u64, a: &AnyArray) -> Result<(), String> {
        if a.dtype() != self.dtype || a.shape() != self.shape || a.order() != Order::C {
            return Err(format!(
                "array {k}: header says {} {:?} {:?}, sent {} {:?} C",
                a.dtype(),
                a.shape(),
                a.order(),
                self.dtype,
                self.shape
            ));
        }
        if !a.checksum_verified() {
            return Err(format!("array {k}: no payload checksum"));
        }
        if a.bytes() != self.payload(k) {
            return Err(format!("array {k}: payload differs from the one sent"));
        }
        Ok(())
    }
}

/// Runs `ringxfer bench --count-arrays`.
pub fn run(a: &BenchArgs) -> Result<(), Failure> {
    runner::run(a, Many::new(a)?)
}

/// The mode: the arrays of a run (their payloads made once) and the paths measured.
struct Many<'a> {
    a: &'a BenchArgs,
    spec: ArraySpec,
    arrays: u64,
    batch: u32,
    paths: &'static [Path],
    /// `DISTINCT` consecutive slices of one arange pattern.
    payloads: Buffer,
    /// Payload bytes of a run.
    run_bytes: u64,
}

impl<'a> Many<'a> {
    fn new(a: &'a BenchArgs) -> Result<Many<'a>, Failure> {
        let spec = if a.array.count_given() {
            a.array.resolve()?
        } else {
            let dtype = a.array.dtype();
            let item = dtype.itemsize() as u64;
            ArraySpec {
                dtype,
                count: DEFAULT_ARRAY_BYTES / item,
                bytes: (DEFAULT_ARRAY_BYTES / item * item) as usize,
            }
        };
        let arrays = a
            .count_arrays
            .flatten()
            .unwrap_or_else(|| default_arrays(spec.bytes));
        if arrays == 0 {
            return Err(Failure::usage("--count-arrays must be at least 1"));
        }
        let payloads = arange_slices(&spec, DISTINCT)?;
        Ok(Many {
            a,
            spec,
            arrays,
            batch: a.batch.unwrap_or(DEFAULT_BATCH),
            paths: match a.path {
                PathArg::Batched => &[Path::Batched],
                PathArg::PerArray => &[Path::PerArray],
                PathArg::Both => &[Path::Batched, Path::PerArray],
            },
            payloads,
            run_bytes: arrays.saturating_mul(spec.bytes as u64),
        })
    }

    fn stream(&self) -> Stream<'_> {
        Stream {
            dtype: self.spec.dtype,
            shape: [self.spec.count],
            payloads: self.payloads.bytes(),
            array_bytes: self.spec.bytes,
            arrays: self.arrays,
        }
    }
}

impl Mode for Many<'_> {
    type Ends = Pair;
    type Kind = Path;
    type Got = Result<(), String>;
    type Fields = Fields;

    fn ends(&self, opts: &Options) -> Result<Pair, Failure> {
        Pair::new(opts)
    }

    fn kinds(&self, _phase: usize, _backend: Backend) -> Vec<Path> {
        self.paths.to_vec()
    }

    fn kind_name(path: Path) -> Option<&'static str> {
        Some(path.name())
    }

    fn print_header(&self, a: &BenchArgs, _opts: &Options) {
        print_header(a, &self.spec, self.arrays, self.batch, self.run_bytes);
    }

    fn progress_total(&self, backends: &[Backend], repeat: u32) -> u64 {
        let runs = u64::from(repeat) * (backends.len() * self.paths.len()) as u64;
        self.run_bytes.saturating_mul(runs)
    }

    fn measure(
        &mut self,
        pair: &mut Pair,
        path: Path,
        progress: Option<&Progress>,
    ) -> Result<Measured<Result<(), String>>, Failure> {
        let (stream, batch, sockbufs) = (self.stream(), self.batch, &self.a.sockbufs);
        pair.measure(|tx, rx| run_once(tx, rx, path, batch, &stream, sockbufs, progress))
    }

    fn record(
        &mut self,
        backend: Backend,
        path: Path,
        repeat: u32,
        m: Measured<Result<(), String>>,
    ) -> RunRecord {
        let (arrays, seconds) = (self.arrays, m.seconds);
        RunRecord {
            backend: backend.to_string(),
            kind: Some(path.label()),
            repeat,
            bytes: self.run_bytes,
            seconds,
            gbytes_per_s: Some(gbytes_per_s(self.run_bytes as usize, seconds)),
            verified: m.got.is_ok(),
            error: m.got.err(),
            cpu: m.cpu,
            detail: Detail::Many {
                arrays,
                arrays_per_s: if seconds > 0.0 {
                    arrays as f64 / seconds
                } else {
                    0.0
                },
            },
        }
    }

    fn print_row(&self, n: usize, rec: &RunRecord) {
        print_row(n, rec);
    }

    fn conclude(&self, summary: &mut [Summary], _runs: &[RunRecord]) -> (Fields, Vec<String>) {
        let med = |b: &str, p: Path| {
            median_in(summary, b, Some(p.name()), |s| {
                s.arrays_per_s.map(|a| a.median)
            })
        };
        let vs_per_array = ratio(med("uring", Path::Batched), med("blocking", Path::PerArray));
        let vs_batched = ratio(med("uring", Path::Batched), med("blocking", Path::Batched));
        let per_array = ratio(
            med("uring", Path::PerArray),
            med("blocking", Path::PerArray),
        );
        let line = |what: &str, r: Option<f64>| {
            format!("ratio uring {what} (median arrays/s): {}", ratio_cell(r))
        };
        let lines = vec![
            line("batched / blocking per-array", vs_per_array),
            line("batched / blocking batched", vs_batched),
            line("per-array / blocking per-array", per_array),
        ];
        let fields = Fields {
            mode: "count-arrays",
            dtype: self.spec.dtype.to_string(),
            shape: [self.spec.count],
            array_bytes: self.spec.bytes,
            arrays: self.arrays,
            batch: self.batch,
            distinct_arrays: DISTINCT,
            ratio_uring_batched_over_blocking_per_array: vs_per_array,
            ratio_uring_batched_over_blocking_batched: vs_batched,
            ratio_uring_per_array_over_blocking_per_array: per_array,
        };
        (fields, lines)
    }

    fn print_summary(&self, summary: &[Summary]) {
        print_summary(summary);
    }
}

/// The text report's lines before the first run.
fn print_header(a: &BenchArgs, spec: &ArraySpec, arrays: u64, batch: u32, run_bytes: u64) {
    println!(
        "ringxfer bench --count-arrays: {arrays} framed arrays of {} x {} = {} bytes per run \
         ({:.1} MB), batches of {batch}, loopback TCP, {} repeat(s)",
        spec.count,
        spec.dtype,
        spec.bytes,
        run_bytes as f64 / 1e6,
        a.repeat,
    );
    println!(
        "{:>3}  {:<8}  {:<9}  {:>9}  {:>10}  {:>7}  {:>6}  {:>6}  verified",
        "run", "backend", "path", "seconds", "arrays/s", "GB/s", "tx cpu", "rx cpu"
    );
}

/// Row `n` of the run table.
fn print_row(n: usize, rec: &RunRecord) {
    let arrays_per_s = match rec.detail {
        Detail::Many { arrays_per_s, .. } => arrays_per_s,
        _ => 0.0,
    };
    println!(
        "{:>3}  {:<8}  {:<9}  {:>9.4}  {:>10.0}  {:>7.3}  {:>6}  {:>6}  {}",
        n,
        rec.backend,
        kind_cell(rec.kind),
        rec.seconds,
        arrays_per_s,
        rec.gbytes_per_s.unwrap_or(0.0),
        cpu_cell(rec.cpu.sender),
        cpu_cell(rec.cpu.receiver),
        verified_cell(rec.error.as_ref())
    );
}

/// The text summary table.
fn print_summary(summary: &[Summary]) {
    println!();
    println!(
        "{:<8}  {:<9}  {:>4}  {:>15}  {:>12}  {:>12}  {:>11}  {:>11}  {:>11}",
        "backend",
        "path",
        "runs",
        "median arrays/s",
        "min arrays/s",
        "max arrays/s",
        "median GB/s",
        "tx cpu s/GB",
        "rx cpu s/GB"
    );
    for s in summary {
        let (a, cpu) = (
            spread_or_zero(s.arrays_per_s),
            s.cpu_s_per_gb.unwrap_or_default(),
        );
        println!(
            "{:<8}  {:<9}  {:>4}  {:>15.0}  {:>12.0}  {:>12.0}  {:>11.3}  {:>11}  {:>11}",
            s.backend,
            kind_cell(s.kind),
            s.runs,
            a.median,
            a.min,
            a.max,
            spread_or_zero(s.gbytes_per_s).median,
            per_gb_cell(cpu.sender),
            per_gb_cell(cpu.receiver),
        );
    }
}

/// Sends the stream on `sock` along `path`.
fn send(
    tx: &mut Engine,
    sock: &TcpStream,
    path: Path,
    batch: u32,
    s: &Stream<'_>,
) -> ringxfer::Result<()> {
    match path {
        Path::PerArray => {
            for k in 0..s.arrays {
                tx.send_array_bytes(sock, s.dtype, s.payload(k), &s.shape, Order::C)?;
            }
        }
        Path::Batched => {
            let mut views = Vec::with_capacity(batch as usize);
            let mut k = 0;
            while k < s.arrays {
                let end = s.arrays.min(k + u64::from(batch));
                views.clear();
                views.extend((k..end).map(|i| ArrayView {
                    dtype: s.dtype,
                    bytes: s.payload(i),
                    shape: &s.shape,
                    order: Order::C,
                }));
                tx.send_arrays(sock, &views)?;
                k = end;
            }
        }
    }
    Ok(())
}

/// Receives the stream from `sock` along `path`: when the last array arrived, and the result
/// of the checks (the first array that did not verify, or a message after the last one).
fn recv(
    rx: &mut Engine,
    sock: &TcpStream,
    path: Path,
    s: &Stream<'_>,
    progress: Option<&Progress>,
) -> ringxfer::Result<(Instant, Result<(), String>)> {
    let mut check = Ok(());
    let mut note = |k: u64, a: &AnyArray| {
        count(progress, a.bytes().len());
        if check.is_ok() {
            check = s.check(k, a);
        }
    };
    let (end, after) = match path {
        Path::PerArray => {
            for k in 0..s.arrays {
                note(k, &rx.recv_any(sock)?);
            }
            (Instant::now(), rx.recv_any(sock))
        }
        Path::Batched => {
            let mut r = rx.receiver(sock);
            for k in 0..s.arrays {
                note(k, &r.recv_any()?);
            }
            (Instant::now(), r.recv_any())
        }
    };
    match after {
        Err(Error::UnexpectedEof { transferred: 0, .. }) => {}
        Ok(_) => check = check.and(Err(format!("more than {} arrays arrived", s.arrays))),
        Err(e) => return Err(e),
    }
    Ok((end, check))
}

/// One run over a fresh loopback connection: the sender on a spawned thread, the receiver
/// on this one; the receiver's checks.
fn run_once(
    tx: &mut Engine,
    rx: &mut Engine,
    path: Path,
    batch: u32,
    stream: &Stream<'_>,
    sockbufs: &SockBufArgs,
    progress: Option<&Progress>,
) -> Result<Measured<Result<(), String>>, Failure> {
    over_loopback(
        sockbufs,
        ["send", "recv"],
        |sock| send(tx, sock, path, batch, stream),
        |sock| recv(rx, sock, path, stream, progress),
    )
}

#[cfg(test)]
mod tests {
    use std::thread;

    use super::*;
    use crate::bench::common::loopback_pair;
    use ringxfer::dtype::fill_arange;

    #[test]
    fn defaults() {
        assert_eq!(default_arrays(4096), 100_000);
        assert_eq!(default_arrays(64 << 10), 15_258);
        assert_eq!(default_arrays(1 << 30), 1_000);
        assert_eq!(default_arrays(0), 100_000);
    }

    fn stream_of(payloads: &[u8], arrays: u64) -> Stream<'_> {
        Stream {
            dtype: "f8".parse().unwrap(),
            shape: [512],
            payloads,
            array_bytes: 4096,
            arrays,
        }
    }

    #[test]
    fn both_paths_round_trip_and_verify() {
        let mut backends = vec![Backend::Blocking];
        if ringxfer::probe().available {
            backends.push(Backend::Uring);
        }
        let mut payloads = vec![0u8; 4096 * DISTINCT];
        fill_arange("f8".parse().unwrap(), &mut payloads);
        let stream = stream_of(&payloads, 1000);
        for b in backends {
            let mut tx = Engine::new(b).unwrap();
            let mut rx = Engine::new(b).unwrap();
            for path in [Path::Batched, Path::PerArray] {
                // A batch size that does not divide the count: the last batch is short.
                let m = run_once(
                    &mut tx,
                    &mut rx,
                    path,
                    7,
                    &stream,
                    &SockBufArgs::default(),
                    None,
                )
                .unwrap_or_else(|f| panic!("{b} {}: {}", path.name(), f.message));
                assert!(m.seconds > 0.0);
                m.got.unwrap_or_else(|e| panic!("{b} {}: {e}", path.name()));
            }
        }
    }

    #[test]
    fn a_wrong_stream_does_not_verify() {
        let mut payloads = vec![0u8; 4096 * DISTINCT];
        fill_arange("f8".parse().unwrap(), &mut payloads);
        let sent = stream_of(&payloads, 100);
        let mut rx = Engine::new(Backend::Blocking).unwrap();
        let mut tx = Engine::new(Backend::Blocking).unwrap();
        // The receiver expects 99 arrays: the 100th is one too many.
        let short = stream_of(&payloads, 99);
        let (client, server) = loopback_pair(&SockBufArgs::default()).unwrap();
        let t = thread::scope(|sc| {
            sc.spawn(|| send(&mut tx, &client, Path::Batched, 64, &sent).map(|()| drop(client)));
            recv(&mut rx, &server, Path::Batched, &short, None).map(|(_, c)| c)
        });
        assert!(t.unwrap().unwrap_err().contains("more than 99"));
        // Array 1 checked against payload 0: differs.
        let a = {
            let (client, server) = loopback_pair(&SockBufArgs::default()).unwrap();
            let mut tx = Engine::new(Backend::Blocking).unwrap();
            tx.send_array_bytes(&client, sent.dtype, sent.payload(0), &sent.shape, Order::C)
                .unwrap();
            rx.recv_any(&server).unwrap()
        };
        assert!(sent.check(0, &a).is_ok());
        assert!(sent.check(1, &a).unwrap_err().contains("payload differs"));
    }
}
