//! `ringxfer bench --pingpong [N]`: round-trip latency of one message and its echo.
//!
//! Two threads share one loopback TCP connection per run. Thread A (the main thread) sends a
//! message and waits for the whole echo; thread B receives the message and sends it back.
//! Each round trip is timed on thread A from just before its send to the return of its
//! receive, and reported in microseconds (µs). Three paths, measured on each backend:
//!
//! * `raw`: the array bytes alone, `Engine::send_from` / `Engine::recv_into` into a buffer
//!   allocated and touched before the run — the floor;
//! * `framed`: one framed array per message (header, payload, trailer of
//!   `docs/PROTOCOL.md`), `Engine::send_array_bytes` / `Engine::recv_any`: the byte-level
//!   forms of `send_array` / `recv_array`, on the same wire path, so any `--dtype` works;
//! * `send_arrays`: the same message sent with `Engine::send_arrays` and one array.
//!
//! Sizes: `--size` or `--count` (elements of `--dtype`, default `<f8`) measures one size;
//! without them the bench sweeps 16 B, 100 KB and 1 MB (10^3 / 10^6 bytes). Each repeat
//! (`--repeat`, default 5) runs every size; within a size every backend (the order alternates
//! between repeats) and within a backend every path (alternating too), N round trips per run
//! (default 200, so 1,000 per backend, size and path) after a few untimed warm-up round
//! trips (slow start, first-touch page faults). One sending and one echoing engine per
//! backend live across all runs; each run opens a fresh connection.
//!
//! Payloads alternate between two consecutive slices of one arange pattern, so a stale or
//! repeated echo is caught. After each round trip (outside its clock) thread A checks the
//! echo: the bytes equal what it sent, and for the framed paths the header's dtype, shape and
//! order and the library's payload checksum flag.
//!
//! Reported per run and per (backend, size, path) over all its round trips: median, p90,
//! p99 (nearest rank), min and max µs; per framed path also its median over the raw median of
//! the same backend and size (a Nagle / delayed-ACK stall shows as a ratio in the thousands).

use std::net::TcpStream;
use std::time::Instant;

use ringxfer::{AnyArray, ArrayView, Backend, Engine, Options, Order};
use serde::Serialize;

use super::args::BenchArgs;
use super::common::{
    Measured, arange_slices, kind_cell, over_loopback, ratio, ratio_cell, verified_cell,
};
use super::record::{Detail, Label, Latency, PingRun, RunRecord, Summary};
use super::runner::{self, Mode, Pair};
use crate::args::ArraySpec;
use crate::buffer::Buffer;
use crate::failure::Failure;
use crate::measure::{Progress, SockBufArgs};

/// Round trips per run without an explicit N.
pub const DEFAULT_ROUND_TRIPS: u64 = 200;
/// Untimed round trips at the start of every run.
pub const WARMUP_ROUND_TRIPS: u64 = 5;
/// Message sizes in bytes without --size / --count: 16 B, 100 KB, 1 MB.
pub const DEFAULT_SIZES: [u64; 3] = [16, 100_000, 1_000_000];
/// Distinct payloads the sender alternates between.
const DISTINCT: usize = 2;

/// How a message travels (both ways).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Raw,
    Framed,
    SendArrays,
}

impl Path {
    const ALL: [Path; 3] = [Path::Raw, Path::Framed, Path::SendArrays];

    fn name(self) -> &'static str {
        match self {
            Path::Raw => "raw",
            Path::Framed => "framed",
            Path::SendArrays => "send_arrays",
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
    /// Message sizes in bytes, in the order measured.
    sizes: Vec<usize>,
    /// Timed round trips per run.
    round_trips: u64,
    /// Untimed round trips before them.
    warmup_round_trips: u64,
}

/// The messages of one size: what is sent, and what each echo must hold.
struct Messages {
    spec: ArraySpec,
    shape: [u64; 1],
    /// `DISTINCT` consecutive slices of one arange pattern.
    payloads: Buffer,
}

impl Messages {
    fn new(spec: ArraySpec) -> Result<Messages, Failure> {
        let payloads = arange_slices(&spec, DISTINCT)?;
        Ok(Messages {
            spec,
            shape: [spec.count],
            payloads,
        })
    }

    /// The payload of round trip `k`.
    fn payload(&self, k: u64) -> &[u8] {
        let n = self.spec.bytes;
        let i = (k % DISTINCT as u64) as usize;
        &self.payloads.bytes()[i * n..(i + 1) * n]
    }

    /// `Ok` when the framed echo of round trip `k` is the message sent.
    fn check_framed(&self, k: u64, a: &AnyArray) -> Result<(), String> {
        if a.dtype() != self.spec.dtype || a.shape() != self.shape || a.order() != Order::C {
            return Err(format!(
                "round trip {k}: echo header says {} {:?} {:?}, sent {} {:?} C",
                a.dtype(),
                a.shape(),
                a.order(),
                self.spec.dtype,
                self.shape
            ));
        }
        if !a.checksum_verified() {
            return Err(format!("round trip {k}: echo without payload checksum"));
        }
        self.check_bytes(k, a.bytes())
    }

    /// `Ok` when the echoed bytes of round trip `k` are the ones sent.
    fn check_bytes(&self, k: u64, got: &[u8]) -> Result<(), String> {
        if got == self.payload(k) {
            Ok(())
        } else {
            Err(format!(
                "round trip {k}: echo differs from the message sent"
            ))
        }
    }
}

/// The message sizes to measure.
fn specs(a: &BenchArgs) -> Result<Vec<ArraySpec>, Failure> {
    let specs = if a.array.count_given() {
        vec![a.array.resolve()?]
    } else {
        let dtype = a.array.dtype();
        let item = dtype.itemsize() as u64;
        DEFAULT_SIZES
            .iter()
            .map(|&b| ArraySpec {
                dtype,
                count: b / item,
                bytes: (b / item * item) as usize,
            })
            .collect()
    };
    if specs.iter().any(|s| s.bytes == 0) {
        return Err(Failure::usage(
            "--pingpong needs a message of at least one element",
        ));
    }
    Ok(specs)
}

/// Runs `ringxfer bench --pingpong`.
pub fn run(a: &BenchArgs) -> Result<(), Failure> {
    let specs = specs(a)?;
    let round_trips = a.pingpong.flatten().unwrap_or(DEFAULT_ROUND_TRIPS);
    if round_trips == 0 {
        return Err(Failure::usage("--pingpong must be at least 1"));
    }
    let messages = specs
        .iter()
        .map(|&s| Messages::new(s))
        .collect::<Result<Vec<_>, _>>()?;
    runner::run(
        a,
        Pingpong {
            a,
            messages,
            round_trips,
        },
    )
}

/// The mode: the messages of each size (one phase of runs per size) and the round trips per
/// run.
struct Pingpong<'a> {
    a: &'a BenchArgs,
    messages: Vec<Messages>,
    round_trips: u64,
}

impl Mode for Pingpong<'_> {
    type Ends = Pair;
    /// The size (index into `messages`) and the path.
    type Kind = (usize, Path);
    type Got = Pinged;
    type Fields = Fields;

    fn ends(&self, opts: &Options) -> Result<Pair, Failure> {
        Pair::new(opts)
    }

    fn phases(&self) -> usize {
        self.messages.len()
    }

    fn kinds(&self, phase: usize, _backend: Backend) -> Vec<(usize, Path)> {
        Path::ALL.map(|p| (phase, p)).to_vec()
    }

    fn kind_name((_, path): (usize, Path)) -> Option<&'static str> {
        Some(path.name())
    }

    fn print_header(&self, a: &BenchArgs, _opts: &Options) {
        let sizes: Vec<String> = self.sizes().iter().map(usize::to_string).collect();
        println!(
            "ringxfer bench --pingpong: echo round trips of one {} array per message, \
             bytes {}, paths {}, loopback TCP, {} timed (+{WARMUP_ROUND_TRIPS} \
             warm-up) per run, {} repeat(s); times in µs",
            self.messages[0].spec.dtype,
            sizes.join(", "),
            Path::ALL.map(Path::name).join(", "),
            self.round_trips,
            a.repeat,
        );
        println!(
            "{:>3}  {:<8}  {:>9}  {:<11}  {:>10}  {:>10}  {:>10}  {:>10}  verified",
            "run", "backend", "bytes", "path", "median µs", "p90 µs", "p99 µs", "max µs"
        );
    }

    fn progress_total(&self, _backends: &[Backend], _repeat: u32) -> u64 {
        0 // -i is refused with --pingpong
    }

    fn measure(
        &mut self,
        pair: &mut Pair,
        (i, path): (usize, Path),
        _progress: Option<&Progress>,
    ) -> Result<Measured<Pinged>, Failure> {
        let (m, n, sockbufs) = (&self.messages[i], self.round_trips, &self.a.sockbufs);
        pair.measure(|tx, rx| {
            run_once(tx, rx, path, m, n, sockbufs)
                .map_err(|f| Failure::runtime(format!("{} bytes: {}", m.spec.bytes, f.message)))
        })
    }

    fn record(
        &mut self,
        backend: Backend,
        (i, path): (usize, Path),
        repeat: u32,
        m: Measured<Pinged>,
    ) -> RunRecord {
        let (rtts_us, check) = m.got;
        RunRecord {
            backend: backend.to_string(),
            kind: Some(path.label()),
            repeat,
            bytes: self.messages[i].spec.bytes as u64,
            seconds: m.seconds,
            gbytes_per_s: None,
            verified: check.is_ok(),
            error: check.err(),
            cpu: m.cpu,
            detail: Detail::Pingpong(PingRun {
                latency: Latency::of(&mut rtts_us.clone()),
                rtts_us,
            }),
        }
    }

    fn print_row(&self, n: usize, rec: &RunRecord) {
        let Detail::Pingpong(PingRun { latency: l, .. }) = &rec.detail else {
            return;
        };
        println!(
            "{:>3}  {:<8}  {:>9}  {:<11}  {:>10.1}  {:>10.1}  {:>10.1}  {:>10.1}  {}",
            n,
            rec.backend,
            rec.bytes,
            kind_cell(rec.kind),
            l.median_us,
            l.p90_us,
            l.p99_us,
            l.max_us,
            verified_cell(rec.error.as_ref())
        );
    }

    fn conclude(&self, summary: &mut [Summary], _runs: &[RunRecord]) -> (Fields, Vec<String>) {
        let median_us = |s: &Summary| s.latency.map(|l| l.median_us);
        for i in 0..summary.len() {
            let s = &summary[i];
            if s.kind.map(|k| k.name) != Some(Path::Raw.name()) {
                let raw = summary
                    .iter()
                    .find(|r| {
                        r.backend == s.backend
                            && r.bytes == s.bytes
                            && r.kind.map(|k| k.name) == Some(Path::Raw.name())
                    })
                    .and_then(median_us);
                summary[i].median_over_raw = ratio(median_us(&summary[i]), raw);
            }
        }
        let fields = Fields {
            mode: "pingpong",
            dtype: self.messages[0].spec.dtype.to_string(),
            sizes: self.sizes(),
            round_trips: self.round_trips,
            warmup_round_trips: WARMUP_ROUND_TRIPS,
        };
        let lines = vec![
            "round trip: thread A sends, thread B receives and echoes, until A has the whole \
             echo; x raw = median / raw median (same backend and size)"
                .to_owned(),
        ];
        (fields, lines)
    }

    fn print_summary(&self, summary: &[Summary]) {
        print_summary(summary);
    }
}

impl Pingpong<'_> {
    /// The message sizes in bytes, in the order measured.
    fn sizes(&self) -> Vec<usize> {
        self.messages.iter().map(|m| m.spec.bytes).collect()
    }
}

/// The human summary table (its explanation line comes from [`Mode::conclude`]).
fn print_summary(summary: &[Summary]) {
    println!();
    println!(
        "{:<8}  {:>9}  {:<11}  {:>11}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}  {:>9}",
        "backend",
        "bytes",
        "path",
        "round trips",
        "median µs",
        "p90 µs",
        "p99 µs",
        "min µs",
        "max µs",
        "x raw"
    );
    for s in summary {
        let Some(l) = &s.latency else { continue };
        let path = kind_cell(s.kind);
        println!(
            "{:<8}  {:>9}  {:<11}  {:>11}  {:>10.1}  {:>10.1}  {:>10.1}  {:>10.1}  {:>10.1}  {:>9}",
            s.backend,
            s.bytes.unwrap_or(0),
            path,
            l.round_trips,
            l.median_us,
            l.p90_us,
            l.p99_us,
            l.min_us,
            l.max_us,
            match path {
                "raw" => String::new(),
                _ => ratio_cell(s.median_over_raw),
            }
        );
    }
}

/// Thread A: `WARMUP_ROUND_TRIPS + n` round trips; when the last echo arrived, every timed
/// round trip in µs, and the checks of the echoes. A raw echo lands in `echo` (the message's
/// size, touched before the run; poisoned before every round trip, outside the clock).
fn ping(
    e: &mut Engine,
    sock: &TcpStream,
    path: Path,
    m: &Messages,
    n: u64,
    echo: &mut [u8],
) -> ringxfer::Result<(Instant, Pinged)> {
    let mut rtts = Vec::with_capacity(n as usize);
    let mut check = Ok(());
    for k in 0..WARMUP_ROUND_TRIPS + n {
        let msg = m.payload(k);
        // An echo that moved nothing cannot pass.
        echo.fill(0xAA);
        let t0 = Instant::now();
        let framed = match path {
            Path::Raw => {
                e.send_from(sock, msg)?;
                e.recv_into(sock, echo)?;
                None
            }
            Path::Framed => {
                e.send_array_bytes(sock, m.spec.dtype, msg, &m.shape, Order::C)?;
                Some(e.recv_any(sock)?)
            }
            Path::SendArrays => {
                e.send_arrays(sock, &[view(m, msg)])?;
                Some(e.recv_any(sock)?)
            }
        };
        let dt = t0.elapsed();
        if k >= WARMUP_ROUND_TRIPS {
            rtts.push(dt.as_secs_f64() * 1e6);
        }
        if check.is_ok() {
            check = match &framed {
                Some(a) => m.check_framed(k, a),
                None => m.check_bytes(k, echo),
            };
        }
    }
    Ok((Instant::now(), (rtts, check)))
}

/// What thread A brings back from a run: its timed round trips in µs, in the order they ran,
/// and the checks of the echoes (the first that failed).
type Pinged = (Vec<f64>, Result<(), String>);

/// `bytes` as the one array of a `send_arrays` call.
fn view<'a>(m: &'a Messages, bytes: &'a [u8]) -> ArrayView<'a> {
    ArrayView {
        dtype: m.spec.dtype,
        bytes,
        shape: &m.shape,
        order: Order::C,
    }
}

/// Thread B: receives `total` messages along `path` and sends each straight back; a raw
/// message lands in `buf` (the message's size).
fn echo(
    e: &mut Engine,
    sock: &TcpStream,
    path: Path,
    total: u64,
    buf: &mut [u8],
) -> ringxfer::Result<()> {
    for _ in 0..total {
        match path {
            Path::Raw => {
                e.recv_into(sock, buf)?;
                e.send_from(sock, buf)?;
            }
            Path::Framed => {
                let a = e.recv_any(sock)?;
                e.send_array_bytes(sock, a.dtype(), a.bytes(), a.shape(), a.order())?;
            }
            Path::SendArrays => {
                let a = e.recv_any(sock)?;
                let v = ArrayView {
                    dtype: a.dtype(),
                    bytes: a.bytes(),
                    shape: a.shape(),
                    order: a.order(),
                };
                e.send_arrays(sock, &[v])?;
            }
        }
    }
    Ok(())
}

/// One run of `n` timed round trips over a fresh loopback connection: `tx` pings from the
/// calling thread, `rx` echoes from a spawned one.
fn run_once(
    tx: &mut Engine,
    rx: &mut Engine,
    path: Path,
    m: &Messages,
    n: u64,
    sockbufs: &SockBufArgs,
) -> Result<Measured<Pinged>, Failure> {
    // The raw paths' receive buffers, allocated and touched outside every clock.
    let raw_len = if path == Path::Raw { m.spec.bytes } else { 0 };
    let (mut ping_buf, mut echo_buf) = (Buffer::zeroed(raw_len)?, Buffer::zeroed(raw_len)?);
    let echo_buf = echo_buf.bytes_mut();
    over_loopback(
        sockbufs,
        ["echo", "ping"],
        |sock| echo(rx, sock, path, WARMUP_ROUND_TRIPS + n, echo_buf),
        |sock| ping(tx, sock, path, m, n, ping_buf.bytes_mut()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::common::loopback_pair;

    #[test]
    fn every_path_echoes_and_verifies() {
        let mut backends = vec![Backend::Blocking];
        if ringxfer::probe().available {
            backends.push(Backend::Uring);
        }
        let dtype = "f8".parse().unwrap();
        // 24,000 bytes = 3,000 f8: above the socket's first segment, below the direct-path
        // threshold.
        let m = Messages::new(ArraySpec {
            dtype,
            count: 3000,
            bytes: 24_000,
        })
        .unwrap();
        for b in backends {
            let mut tx = Engine::new(b).unwrap();
            let mut rx = Engine::new(b).unwrap();
            for path in Path::ALL {
                let r = run_once(&mut tx, &mut rx, path, &m, 7, &SockBufArgs::default())
                    .unwrap_or_else(|f| panic!("{b} {}: {}", path.name(), f.message));
                let (rtts_us, check) = r.got;
                assert_eq!(rtts_us.len(), 7);
                assert!(rtts_us.iter().all(|&us| us > 0.0));
                check.unwrap_or_else(|e| panic!("{b} {}: {e}", path.name()));
            }
        }
    }

    #[test]
    fn a_wrong_echo_does_not_verify() {
        let m = Messages::new(ArraySpec {
            dtype: "u1".parse().unwrap(),
            count: 16,
            bytes: 16,
        })
        .unwrap();
        assert!(m.check_bytes(0, m.payload(0)).is_ok());
        assert!(
            m.check_bytes(1, m.payload(0))
                .unwrap_err()
                .contains("round trip 1: echo differs")
        );
        // A framed echo of the other payload, and one of another dtype.
        let (client, server) = loopback_pair(&SockBufArgs::default()).unwrap();
        let mut e = Engine::new(Backend::Blocking).unwrap();
        e.send_array_bytes(&client, m.spec.dtype, m.payload(0), &m.shape, Order::C)
            .unwrap();
        let a = e.recv_any(&server).unwrap();
        assert!(m.check_framed(0, &a).is_ok());
        assert!(m.check_framed(1, &a).unwrap_err().contains("differs"));
        e.send_array_bytes(&client, "i2".parse().unwrap(), m.payload(0), &[8], Order::C)
            .unwrap();
        let a = e.recv_any(&server).unwrap();
        assert!(m.check_framed(0, &a).unwrap_err().contains("header says"));
    }
}
