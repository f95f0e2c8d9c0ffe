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
use std::sync::Barrier;
use std::thread;
use std::time::Instant;

use ringxfer::dtype::{DType, fill_arange};
use ringxfer::{AnyArray, ArrayView, Backend, Engine, Error, Options, Order};
use serde::Serialize;

use super::args::{BenchArgs, PathArg};
use super::common::{Host, Report, cpu_cell, loopback_pair, select_backends, stats};
use super::common::{
    all_verified, clocked, engine_pairs, for_each_run, joined, per_gb_cell, ratio, ratio_cell,
    requested_bufs, verified_cell,
};
use crate::args::ArraySpec;
use crate::buffer::Buffer;
use crate::failure::Failure;
use crate::measure::{CpuPair, CpuPerGb, Progress, SockBufArgs, SockBufs, count};
use crate::report::gbytes_per_s;
use crate::report::print_json;

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
}

/// One measured run, as in the JSON `runs` array.
#[derive(Debug, Serialize)]
struct RunRecord {
    backend: String,
    path: &'static str,
    /// 1-based repeat number.
    repeat: u32,
    arrays: u64,
    /// Payload bytes of all arrays.
    bytes: u64,
    seconds: f64,
    arrays_per_s: f64,
    gbytes_per_s: f64,
    /// Every array had the sent dtype, shape, order, checksum flag and bytes, in order, and
    /// the stream ended cleanly after the last one.
    verified: bool,
    /// The first thing that did not verify.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// CPU seconds of the sending and the receiving thread during the run.
    cpu: CpuPair,
}

/// Statistics per (backend, path), as in the JSON `summary` array.
#[derive(Debug, Serialize)]
struct Summary {
    backend: String,
    path: &'static str,
    runs: usize,
    median_arrays_per_s: f64,
    min_arrays_per_s: f64,
    max_arrays_per_s: f64,
    median_gbytes_per_s: f64,
    min_gbytes_per_s: f64,
    max_gbytes_per_s: f64,
    /// Median user + system CPU seconds per 10^9 payload bytes, each end.
    cpu_s_per_gb: CpuPerGb,
}

/// This mode's own fields of the `--json` report ([`Report`] adds the common ones).
#[derive(Debug, Serialize)]
struct Mode {
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
// Longer than ~100 lines on purpose: this is the mode's one sequence (plan, the shared
// runner `common::for_each_run` with this mode's measure and record closures, summary,
// report); the closures borrow this function's buffers and tables, so moving them out would
// only thread those borrows through more signatures. Printing and summarizing are split off.
pub fn run(a: &BenchArgs) -> Result<(), Failure> {
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
    let batch = a.batch.unwrap_or(DEFAULT_BATCH);
    let paths: &'static [Path] = match a.path {
        PathArg::Batched => &[Path::Batched],
        PathArg::PerArray => &[Path::PerArray],
        PathArg::Both => &[Path::Batched, Path::PerArray],
    };
    let tuning = a.tuning.tuning()?;
    let (backends, uring_unavailable) = select_backends(a.backend)?;
    let opts = Options {
        idle_timeout: a.timeout,
        uring: tuning.clone(),
        ..Options::default()
    };

    let total = spec
        .bytes
        .checked_mul(DISTINCT)
        .ok_or_else(|| Failure::usage(format!("--size {} is too large", spec.bytes)))?;
    let mut payloads = Buffer::zeroed(total)?;
    fill_arange(spec.dtype, payloads.bytes_mut());
    let stream = Stream {
        dtype: spec.dtype,
        shape: [spec.count],
        payloads: payloads.bytes(),
        array_bytes: spec.bytes,
        arrays,
    };
    let run_bytes = arrays.saturating_mul(spec.bytes as u64);

    let mut engines = engine_pairs(&backends, &opts)?;

    if !a.json {
        print_header(a, &spec, arrays, batch, run_bytes);
    }

    let mut runs: Vec<RunRecord> = Vec::new();
    let mut bufs = requested_bufs(a);
    let progress = Progress::start(
        a.interval,
        run_bytes.saturating_mul(u64::from(a.repeat) * (backends.len() * paths.len()) as u64),
    );
    for_each_run(
        &mut engines,
        a.repeat,
        |_| paths,
        Path::name,
        |tx, rx, path| run_once(tx, rx, path, batch, &stream, &a.sockbufs, progress.as_ref()),
        |backend, path, repeat, m| {
            if runs.is_empty() {
                (bufs.sender, bufs.receiver) = m.bufs;
            }
            let (seconds, check) = (m.seconds, m.check);
            let rec = RunRecord {
                backend: backend.to_string(),
                path: path.name(),
                repeat,
                arrays,
                bytes: run_bytes,
                seconds,
                arrays_per_s: if seconds > 0.0 {
                    arrays as f64 / seconds
                } else {
                    0.0
                },
                gbytes_per_s: gbytes_per_s(run_bytes as usize, seconds),
                verified: check.is_ok(),
                error: check.err(),
                cpu: m.cpu,
            };
            if !a.json {
                print_row(runs.len() + 1, &rec);
            }
            runs.push(rec);
        },
        progress.as_ref(),
    )?;
    if let Some(p) = progress {
        p.finish();
    }

    let summary = summarize(&backends, paths, &runs);
    let med = |b: &str, p: Path| {
        summary
            .iter()
            .find(|s| s.backend == b && s.path == p.name())
            .map(|s| s.median_arrays_per_s)
    };
    let vs_per_array = ratio(med("uring", Path::Batched), med("blocking", Path::PerArray));
    let vs_batched = ratio(med("uring", Path::Batched), med("blocking", Path::Batched));
    let per_array = ratio(
        med("uring", Path::PerArray),
        med("blocking", Path::PerArray),
    );

    let verdict = all_verified(runs.iter().map(|r| r.verified));
    if a.json {
        let report = Report {
            mode: Mode {
                mode: "count-arrays",
                dtype: spec.dtype.to_string(),
                shape: [spec.count],
                array_bytes: spec.bytes,
                arrays,
                batch,
                distinct_arrays: DISTINCT,
                ratio_uring_batched_over_blocking_per_array: vs_per_array,
                ratio_uring_batched_over_blocking_batched: vs_batched,
                ratio_uring_per_array_over_blocking_per_array: per_array,
            },
            repeat: a.repeat,
            uring_tuning: backends.contains(&Backend::Uring).then_some(tuning),
            uring_unavailable,
            host: Host::here(),
            socket_buffers: bufs,
            runs,
            summary,
        };
        print_json(&report)?;
    } else {
        print_summary(&summary, [vs_per_array, vs_batched, per_array]);
    }

    verdict
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
    println!(
        "{:>3}  {:<8}  {:<9}  {:>9.4}  {:>10.0}  {:>7.3}  {:>6}  {:>6}  {}",
        n,
        rec.backend,
        rec.path,
        rec.seconds,
        rec.arrays_per_s,
        rec.gbytes_per_s,
        cpu_cell(rec.cpu.sender),
        cpu_cell(rec.cpu.receiver),
        verified_cell(rec.error.as_ref())
    );
}

/// Median, min and max arrays/s and GB/s and the CPU per GB of each backend and path.
fn summarize(backends: &[Backend], paths: &[Path], runs: &[RunRecord]) -> Vec<Summary> {
    let mut summary = Vec::new();
    for &b in backends {
        for &p in paths {
            let mine = || {
                runs.iter()
                    .filter(move |x| x.backend == b.to_string() && x.path == p.name())
            };
            let (med_a, min_a, max_a) = stats(mine().map(|x| x.arrays_per_s));
            let (med_g, min_g, max_g) = stats(mine().map(|x| x.gbytes_per_s));
            summary.push(Summary {
                backend: b.to_string(),
                path: p.name(),
                runs: mine().count(),
                median_arrays_per_s: med_a,
                min_arrays_per_s: min_a,
                max_arrays_per_s: max_a,
                median_gbytes_per_s: med_g,
                min_gbytes_per_s: min_g,
                max_gbytes_per_s: max_g,
                cpu_s_per_gb: CpuPerGb::median_of(mine().map(|x| (x.bytes as f64, x.cpu))),
            });
        }
    }
    summary
}

/// The text summary table and the three ratios (uring batched / blocking per-array, uring
/// batched / blocking batched, uring per-array / blocking per-array).
fn print_summary(summary: &[Summary], ratios: [Option<f64>; 3]) {
    let [vs_per_array, vs_batched, per_array] = ratios;
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
        println!(
            "{:<8}  {:<9}  {:>4}  {:>15.0}  {:>12.0}  {:>12.0}  {:>11.3}  {:>11}  {:>11}",
            s.backend,
            s.path,
            s.runs,
            s.median_arrays_per_s,
            s.min_arrays_per_s,
            s.max_arrays_per_s,
            s.median_gbytes_per_s,
            per_gb_cell(s.cpu_s_per_gb.sender),
            per_gb_cell(s.cpu_s_per_gb.receiver),
        );
    }
    println!(
        "ratio uring batched / blocking per-array (median arrays/s): {}",
        ratio_cell(vs_per_array)
    );
    println!(
        "ratio uring batched / blocking batched (median arrays/s): {}",
        ratio_cell(vs_batched)
    );
    println!(
        "ratio uring per-array / blocking per-array (median arrays/s): {}",
        ratio_cell(per_array)
    );
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

/// What one run measured.
struct Measured {
    seconds: f64,
    /// The receiver's checks.
    check: Result<(), String>,
    cpu: CpuPair,
    /// Effective buffer sizes of the sending and the receiving socket.
    bufs: (SockBufs, SockBufs),
}

/// One run over a fresh loopback connection: its seconds, the receiver's checks and both
/// threads' CPU.
fn run_once(
    tx: &mut Engine,
    rx: &mut Engine,
    path: Path,
    batch: u32,
    stream: &Stream<'_>,
    sockbufs: &SockBufArgs,
    progress: Option<&Progress>,
) -> Result<Measured, Failure> {
    let (client, server) = loopback_pair(sockbufs)?;
    let bufs = (SockBufs::of(&client), SockBufs::of(&server));
    let barrier = Barrier::new(2);
    let (sent, got) = thread::scope(|sc| {
        let barrier = &barrier;
        let sender = sc.spawn(move || {
            let sock = client; // closed on return: the receiver's end-of-stream check needs it
            clocked(barrier, || {
                send(tx, &sock, path, batch, stream).map(|()| (Instant::now(), ()))
            })
        });
        // `server` moves in and closes on return, so a failed receive unblocks the sender.
        let got = {
            let sock = server;
            clocked(barrier, || recv(rx, &sock, path, stream, progress))
        };
        (sender.join(), got)
    });
    let (seconds, check, cpu) = joined(sent, got)?;
    Ok(Measured {
        seconds,
        check,
        cpu,
        bufs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
                m.check
                    .unwrap_or_else(|e| panic!("{b} {}: {e}", path.name()));
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
