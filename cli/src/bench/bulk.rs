//! `ringxfer bench`: the main job.
//!
//! The arange array (by default 50,000,000 `<f8`, 400 MB) is generated once, and its CRC-32
//! computed once, before any run. Each run opens a fresh loopback TCP connection; a sender
//! thread sends the array with `Engine::send_from` (or a pre-registered guard with
//! `--registered`) while the main thread receives it with `Engine::recv_into` into one receive
//! buffer allocated once and filled with `0xAA` before every run (so the buffer is pre-touched
//! and a run that moved nothing cannot pass). Connection and engine setup (and registration)
//! happen before a barrier both threads wait on; the clock starts when they pass it and stops
//! at the later of "receiver has every byte" and "sender returned". Each run is then verified:
//! the CRC-32 of the received bytes must equal the array's.
//!
//! Arrays below 256 MiB are sent many times back to back per run so that a run lasts at least
//! 0.25 s, each transfer checked ([`super::batch`]); each run also reports the SQEs and CQEs
//! both ends' engines used ([`ringxfer::Engine::stats`]).
//!
//! The other modes live beside this one (`super::fresh`, `super::many`, `super::pingpong`)
//! and share the backend selection, the loop over repeats, the host block and the statistics
//! of `super::common`.

use std::net::{TcpListener, TcpStream};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use ringxfer::dtype::fill_arange;
use ringxfer::{ActiveBackend, Backend, Engine, EngineStats, Options, UringTuning};
use serde::Serialize;

use super::args::BenchArgs;
use super::batch::{Batch, MIN_RUN_SECS, PerEnd, Spots};
use super::common::{
    BenchSockBufs, Host, Report, cpu_cell, loopback_pair, select_backends, verdict,
};
use crate::args::ArraySpec;
use crate::buffer::Buffer;
use crate::failure::Failure;
use crate::measure::{
    Cpu, CpuClock, CpuPair, CpuPerGb, Progress, SockBufArgs, SockBufs, count, recv_chunked,
    say_notices,
};
use crate::report::gbytes_per_s;
use crate::report::median;
use crate::report::refusal;

/// The reverse direction of a `--bidir` run (server to client, at the same time as the
/// forward one).
#[derive(Debug, Serialize)]
struct Reverse {
    seconds: f64,
    gbytes_per_s: f64,
    /// Same checks as the forward direction's, on the client's receive buffer.
    verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// CPU seconds of the reverse sending and receiving threads.
    cpu: CpuPair,
}

/// One measured run, as in the JSON `runs` array.
#[derive(Debug, Serialize)]
struct RunRecord {
    /// `"uring"` or `"blocking"`.
    backend: String,
    /// 1-based repeat number.
    repeat: u32,
    /// The array's bytes (one transfer).
    bytes: usize,
    /// Times the array was sent, back to back on the run's connection (1 for arrays of
    /// 256 MiB and more; see `super::batch`).
    transfers_per_run: u64,
    /// Bytes moved in the run: `bytes` times `transfers_per_run` (what `gbytes_per_s` and
    /// the CPU per GB are computed from).
    total_bytes: usize,
    seconds: f64,
    gbytes_per_s: f64,
    /// CRC-32 of the last received array equals the array's, every earlier transfer passed
    /// its spot check, and the stream ended right after the last array.
    verified: bool,
    /// SQEs each end's engine submitted during the run (0 on the blocking backend; a uring
    /// run with 0 is a bug: every uring transfer goes through the ring).
    sqes: PerEnd,
    /// CQEs each end's engine reaped during the run (`SEND_ZC` notifications included).
    cqes: PerEnd,
    /// `SEND_ZC` notification CQEs among `cqes`.
    notifs: PerEnd,
    /// What the sending engine's zero-copy sends did (adaptive `--send-op auto`, the
    /// default: see `ringxfer::uring::zc_policy`).
    send_zc: SendZcRecord,
    /// What failed when `verified` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// With `--registered`: both arrays were registered with the kernel for this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    registered: Option<bool>,
    /// CPU seconds of the sending and the receiving thread during the run.
    cpu: CpuPair,
    /// `--bidir`: the other direction (the fields above are the client-to-server one).
    #[serde(skip_serializing_if = "Option::is_none")]
    reverse: Option<Reverse>,
}

/// The sending engine's `SEND_ZC` figures of one run, as in the JSON `send_zc` of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
struct SendZcRecord {
    /// `SEND_ZC` requests submitted (trial and kept ones; every send with `--send-op
    /// send-zc`).
    attempted: u64,
    /// Of their usage reports (adaptive only): the kernel copied the bytes anyway.
    copied: u64,
    /// Of their usage reports (adaptive only): the bytes left from the array's own pages.
    kept: u64,
    /// Destinations switched to plain `SEND` because the kernel copies (0 or 1 here): after
    /// the trial, or at once, without one, for a local peer (loopback: no `SEND_ZC` at all).
    switched: u64,
}

impl From<&EngineStats> for SendZcRecord {
    fn from(st: &EngineStats) -> Self {
        SendZcRecord {
            attempted: st.zc_attempted,
            copied: st.zc_copied,
            kept: st.zc_kept,
            switched: st.zc_switched,
        }
    }
}

/// The `note:` line about adaptive zero-copy: what the uring runs' sending engines tried and
/// what the kernel's usage reports made them do, or that they switched without a trial (a
/// local peer). `None` when no run did either.
fn send_zc_note(runs: &[RunRecord]) -> Option<String> {
    let tried: Vec<&SendZcRecord> = runs
        .iter()
        .map(|r| &r.send_zc)
        .filter(|z| z.copied + z.kept > 0)
        .collect();
    if tried.is_empty() {
        let local = runs
            .iter()
            .filter(|r| r.send_zc.attempted == 0 && r.send_zc.switched > 0)
            .count();
        return (local > 0).then(|| {
            format!(
                "note: send_zc: plain SEND without a trial in {local} uring run(s): the peer is \
                 local, where the kernel copies every zero-copy send (--zc-trial-local tries anyway)"
            )
        });
    }
    let sum = |f: fn(&SendZcRecord) -> u64| tried.iter().map(|z| f(z)).sum::<u64>();
    let (attempted, copied, kept) = (sum(|z| z.attempted), sum(|z| z.copied), sum(|z| z.kept));
    let switched = tried.iter().filter(|z| z.switched > 0).count();
    let outcome = if switched > 0 {
        format!(
            "switched to plain SEND for the rest in {switched} of {} run(s) (the kernel copies on this path: loopback and veth always do)",
            tried.len()
        )
    } else {
        "kept SEND_ZC".to_owned()
    };
    Some(format!(
        "note: send_zc: {attempted} SEND_ZC request(s) in {} uring run(s), usage reports {copied} copied / {kept} zero-copy: {outcome}",
        tried.len()
    ))
}

/// Per-backend statistics, as in the JSON `summary` array.
#[derive(Debug, Serialize)]
struct Summary {
    backend: String,
    runs: usize,
    median_gbytes_per_s: f64,
    min_gbytes_per_s: f64,
    max_gbytes_per_s: f64,
    /// Median user + system CPU seconds per 10^9 bytes, each end.
    cpu_s_per_gb: CpuPerGb,
    /// `--bidir`: median GB/s of the reverse direction.
    #[serde(skip_serializing_if = "Option::is_none")]
    reverse_median_gbytes_per_s: Option<f64>,
}

/// This mode's own fields of the `--json` report ([`Report`] adds the common ones).
#[derive(Debug, Serialize)]
struct Mode {
    dtype: String,
    count: u64,
    bytes: usize,
    /// Loopback TCP connections per run, the array striped over them.
    streams: u32,
    /// Both directions at once (`--bidir`).
    bidir: bool,
    /// `"one-shot"` or `"pre-registered"`.
    mode: &'static str,
    crc32: String,
    /// Batched runs (arrays below 256 MiB): each lasts at least this many seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    min_run_seconds: Option<f64>,
    /// Batched runs: runs that fell short of `min_run_seconds` (calibration included) and
    /// were done again with more transfers; not in `runs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    short_runs_redone: Option<u32>,
    ratio_uring_over_blocking: Option<f64>,
}

/// Runs `ringxfer bench`.
// About 110 lines: the main job's sequence (array and CRC once, then per repeat and backend
// the K calibration loop around `run_once`, the record and its row); header, record, row and
// report are their own functions, and what is left is the loop that owns the buffers.
pub fn run(a: &BenchArgs) -> Result<(), Failure> {
    let spec = a.array.resolve()?;
    let tuning = a.tuning.tuning()?;
    let (backends, uring_unavailable) = select_backends(a.backend)?;

    // The array and its checksum, once, outside every measurement.
    let mut send = Buffer::zeroed(spec.bytes)?;
    fill_arange(spec.dtype, send.bytes_mut());
    let send_crc = crc32fast::hash(send.bytes());
    let mut recv = Buffer::zeroed(spec.bytes)?;
    let mut back = Buffer::zeroed(if a.bidir { spec.bytes } else { 0 })?;

    let defaults = Options::default();
    let opts = Options {
        idle_timeout: a.timeout,
        uring: tuning.clone(),
        ..defaults
    };
    let mode = if a.registered {
        "pre-registered"
    } else {
        "one-shot"
    };
    if !a.json {
        print_header(a, &spec, mode, send_crc);
    }

    let mut runs = Vec::new();
    // Transfers per run, per backend (see `super::batch`).
    let mut batches: Vec<Batch> = backends
        .iter()
        .map(|_| Batch::for_size(spec.bytes))
        .collect();
    let mut warned_refusal = false;
    let mut bufs = BenchSockBufs::default();
    let progress = Progress::start(
        a.interval,
        (spec.bytes as u64).saturating_mul(u64::from(a.repeat) * backends.len() as u64),
    );
    for r in 0..a.repeat {
        // Alternate which backend goes first, so neither always runs on a warmer machine.
        let mut order = backends.clone();
        order.rotate_left(r as usize % backends.len());
        for backend in order {
            if let Some(p) = &progress {
                p.set_label(&backend.to_string());
            }
            let batch = &mut batches[backends.iter().position(|&b| b == backend).unwrap_or(0)];
            let m = loop {
                recv.bytes_mut().fill(0xAA);
                back.bytes_mut().fill(0xAA);
                let m = run_once(
                    &Options {
                        backend,
                        ..opts.clone()
                    },
                    a.registered,
                    &a.sockbufs,
                    progress.as_ref(),
                    (send.bytes(), recv.bytes_mut()),
                    Shape {
                        transfers: batch.transfers(),
                        streams: a.streams as usize,
                        back: a.bidir.then(|| back.bytes_mut()),
                    },
                )
                .map_err(|e| Failure::runtime(format!("{backend} run {}: {}", r + 1, e.message)))?;
                if batch.accept(m.seconds) {
                    break m;
                }
            };
            if let Some(reason) = m.refused.as_deref()
                && !warned_refusal
            {
                eprintln!("ringxfer bench: the kernel refused to register the array: {reason}");
                warned_refusal = true;
            }
            if runs.is_empty() {
                bufs = BenchSockBufs {
                    sndbuf_requested: a.sockbufs.sndbuf,
                    rcvbuf_requested: a.sockbufs.rcvbuf,
                    ..m.bufs
                };
            }
            let rec = record(
                backend,
                r + 1,
                &spec,
                a.registered,
                &m,
                send_crc,
                recv.bytes(),
                back.bytes(),
            );
            if !a.json {
                print_row(runs.len() + 1, &rec, progress.is_some());
            }
            runs.push(rec);
        }
    }
    if let Some(p) = progress {
        p.finish();
    }

    let setup = Setup {
        spec,
        mode,
        send_crc,
        tuning,
        backends,
        uring_unavailable,
    };
    report(a, &setup, runs, bufs, &batches)
}

/// What a bench run keeps fixed across its runs, for the report.
struct Setup {
    spec: ArraySpec,
    mode: &'static str,
    send_crc: u32,
    tuning: UringTuning,
    backends: Vec<Backend>,
    uring_unavailable: Option<String>,
}

/// The summary per backend, the ratio and the verdict, as JSON or text; a failure when any
/// run did not verify.
fn report(
    a: &BenchArgs,
    setup: &Setup,
    runs: Vec<RunRecord>,
    bufs: BenchSockBufs,
    batches: &[Batch],
) -> Result<(), Failure> {
    let summary: Vec<Summary> = setup
        .backends
        .iter()
        .map(|&b| summarize(b.to_string(), &runs))
        .collect();
    let median_of = |b: &str| {
        summary
            .iter()
            .find(|s| s.backend == b)
            .map(|s| s.median_gbytes_per_s)
    };
    let ratio = match (median_of("uring"), median_of("blocking")) {
        (Some(u), Some(b)) if b > 0.0 => Some(u / b),
        _ => None,
    };

    let (bad, total) = (
        runs.iter()
            .filter(|r| !r.verified || r.reverse.as_ref().is_some_and(|b| !b.verified))
            .count(),
        runs.len(),
    );
    let batched = batches.iter().any(Batch::batched);
    if a.json {
        let report = Report {
            mode: Mode {
                dtype: setup.spec.dtype.to_string(),
                count: setup.spec.count,
                bytes: setup.spec.bytes,
                streams: a.streams,
                bidir: a.bidir,
                mode: setup.mode,
                crc32: format!("{:08x}", setup.send_crc),
                min_run_seconds: batched.then_some(MIN_RUN_SECS),
                short_runs_redone: batched.then(|| batches.iter().map(Batch::redone).sum()),
                ratio_uring_over_blocking: ratio,
            },
            repeat: a.repeat,
            uring_tuning: setup
                .backends
                .contains(&Backend::Uring)
                .then(|| setup.tuning.clone()),
            uring_unavailable: setup.uring_unavailable.clone(),
            host: Host::here(),
            socket_buffers: bufs,
            runs,
            summary,
        };
        crate::report::print_json(&report)?;
    } else {
        print_summary(&summary, ratio);
        if batched {
            let redone: u32 = batches.iter().map(Batch::redone).sum();
            println!(
                "K: transfers per run; {redone} run(s) shorter than {MIN_RUN_SECS} s (calibration \
                 included) were done again with a larger K and are not shown"
            );
        }
        println!(
            "SQEs/CQEs: submitted/reaped by the sending/receiving engine in the run (CQEs include \
             SEND_ZC notifications)"
        );
        if let Some(note) = send_zc_note(&runs) {
            println!("{note}");
        }
    }

    if bad > 0 {
        return Err(Failure::runtime(format!(
            "{bad} of {total} runs did not verify (the array's crc32 is {:08x}; each \
             run's line says what failed)",
            setup.send_crc
        )));
    }
    Ok(())
}

/// The text report's lines before the first run: what is measured, and the run table's head.
fn print_header(a: &BenchArgs, spec: &ArraySpec, mode: &str, send_crc: u32) {
    println!(
        "ringxfer bench: {} x {} arange = {} bytes ({:.1} MB), loopback TCP, {} repeat(s), \
         {mode}, receive buffer pre-touched, crc32 {send_crc:08x}",
        spec.count,
        spec.dtype,
        spec.bytes,
        spec.bytes as f64 / 1e6,
        a.repeat,
    );
    if a.streams > 1 {
        println!(
            "striped over {} loopback TCP connections per run (one contiguous stripe each)",
            a.streams
        );
    }
    if a.bidir {
        println!(
            "bidir: both directions at once on the same connection(s); GB/s is the \
             client-to-server direction, rev GB/s the other"
        );
    }
    if Batch::for_size(spec.bytes).batched() {
        println!(
            "small array: each run sends it K times back to back on one connection (K grown \
             until a run lasts >= {MIN_RUN_SECS} s), throughput = K x bytes / run seconds"
        );
    }
    println!(
        "{:>3}  {:<8}  {:>7}  {:>9}  {:>7}  {:>8}  {:>6}  {:>6}  {:>15}  {:>15}  verified",
        "run",
        "backend",
        "K",
        "seconds",
        "GB/s",
        "Gbit/s",
        "tx cpu",
        "rx cpu",
        "SQEs tx/rx",
        "CQEs tx/rx"
    );
}

/// The record of run `repeat` (1-based) of `backend`: `m` checked against the array's CRC-32
/// (the received copy and, with `--bidir`, the reverse direction's).
#[allow(clippy::too_many_arguments)] // the run's facts, each used once; a struct would only rename them
fn record(
    backend: Backend,
    repeat: u32,
    spec: &ArraySpec,
    registered: bool,
    m: &Measured,
    send_crc: u32,
    received: &[u8],
    back: &[u8],
) -> RunRecord {
    let crc_ok = crc32fast::hash(received) == send_crc;
    let failed = m.failed_check.clone().or_else(|| {
        (!crc_ok).then(|| {
            let last = m.transfers;
            format!("crc mismatch in transfer {last} of {last}")
        })
    });
    let verified = failed.is_none();
    let (tx, rx) = m.stats;
    let moved = spec.bytes.saturating_mul(m.transfers as usize);
    let reverse = m.back.as_ref().map(|b| {
        let error = b.failed_check.clone().or_else(|| {
            (crc32fast::hash(back) != send_crc).then(|| {
                let last = m.transfers;
                format!("crc mismatch in transfer {last} of {last}")
            })
        });
        Reverse {
            seconds: b.seconds,
            gbytes_per_s: gbytes_per_s(moved, b.seconds),
            verified: error.is_none(),
            error,
            cpu: b.cpu,
        }
    });
    RunRecord {
        backend: backend.to_string(),
        repeat,
        bytes: spec.bytes,
        transfers_per_run: m.transfers,
        total_bytes: moved,
        seconds: m.seconds,
        gbytes_per_s: gbytes_per_s(moved, m.seconds),
        verified,
        sqes: PerEnd {
            sender: tx.sqes,
            receiver: rx.sqes,
        },
        cqes: PerEnd {
            sender: tx.cqes,
            receiver: rx.cqes,
        },
        notifs: PerEnd {
            sender: tx.notifs,
            receiver: rx.notifs,
        },
        send_zc: SendZcRecord::from(&tx),
        error: failed,
        registered: registered.then_some(m.registered),
        cpu: m.cpu,
        reverse,
    }
}

/// Row `n` of the run table; `flush_stderr` first lets the interval lines (`-i`) go out.
fn print_row(n: usize, rec: &RunRecord, flush_stderr: bool) {
    if flush_stderr {
        // Let the interval lines on stderr go out before this row.
        let _ = std::io::Write::flush(&mut std::io::stderr());
    }
    println!(
        "{:>3}  {:<8}  {:>7}  {:>9.4}  {:>7.3}  {:>8.2}  {:>6}  {:>6}  {:>15}  {:>15}  {}{}{}",
        n,
        rec.backend,
        rec.transfers_per_run,
        rec.seconds,
        rec.gbytes_per_s,
        rec.gbytes_per_s * 8.0,
        cpu_cell(rec.cpu.sender),
        cpu_cell(rec.cpu.receiver),
        format!("{}/{}", rec.sqes.sender, rec.sqes.receiver),
        format!("{}/{}", rec.cqes.sender, rec.cqes.receiver),
        match &rec.error {
            None => "yes".to_owned(),
            Some(why) => format!("NO ({why})"),
        },
        match rec.registered {
            Some(true) => ", registered",
            Some(false) => ", not registered",
            None => "",
        },
        match &rec.reverse {
            None => String::new(),
            Some(b) => format!(
                "; rev {:.4} s {:.3} GB/s, cpu {}/{}, verified {}",
                b.seconds,
                b.gbytes_per_s,
                cpu_cell(b.cpu.sender),
                cpu_cell(b.cpu.receiver),
                match &b.error {
                    None => "yes".to_owned(),
                    Some(why) => format!("NO ({why})"),
                }
            ),
        }
    );
}

/// The human summary table and the ratio line.
fn print_summary(summary: &[Summary], ratio: Option<f64>) {
    println!();
    println!(
        "{:<8}  {:>4}  {:>11}  {:>8}  {:>8}  {:>13}  {:>10}  {:>10}  {:>13}  {:>13}",
        "backend",
        "runs",
        "median GB/s",
        "min GB/s",
        "max GB/s",
        "median Gbit/s",
        "min Gbit/s",
        "max Gbit/s",
        "tx cpu s/GB",
        "rx cpu s/GB"
    );
    let per_gb = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.4}"));
    for s in summary {
        if let Some(r) = s.reverse_median_gbytes_per_s {
            println!(
                "{:<8}  reverse direction (--bidir): median {r:.3} GB/s",
                s.backend
            );
        }
        println!(
            "{:<8}  {:>4}  {:>11.3}  {:>8.3}  {:>8.3}  {:>13.2}  {:>10.2}  {:>10.2}  {:>13}  {:>13}",
            s.backend,
            s.runs,
            s.median_gbytes_per_s,
            s.min_gbytes_per_s,
            s.max_gbytes_per_s,
            s.median_gbytes_per_s * 8.0,
            s.min_gbytes_per_s * 8.0,
            s.max_gbytes_per_s * 8.0,
            per_gb(s.cpu_s_per_gb.sender),
            per_gb(s.cpu_s_per_gb.receiver),
        );
    }
    println!(
        "cpu: user + system seconds of the sending / receiving thread per 10^9 bytes (median)"
    );
    match ratio {
        Some(r) => println!("ratio uring/blocking (median/median): {r:.3}"),
        None => println!("ratio uring/blocking: n/a (needs both backends, with bytes moved)"),
    }
    if let Some(v) = verdict(ratio, summary.iter().map(|s| s.runs).min().unwrap_or(0)) {
        println!("{v}");
    }
}

/// Median, min and max throughput of `backend`'s runs.
fn summarize(backend: String, runs: &[RunRecord]) -> Summary {
    let mut v: Vec<f64> = runs
        .iter()
        .filter(|r| r.backend == backend)
        .map(|r| r.gbytes_per_s)
        .collect();
    v.sort_by(f64::total_cmp);
    Summary {
        backend: backend.clone(),
        runs: v.len(),
        median_gbytes_per_s: median(&v),
        min_gbytes_per_s: v.first().copied().unwrap_or(0.0),
        max_gbytes_per_s: v.last().copied().unwrap_or(0.0),
        cpu_s_per_gb: CpuPerGb::median_of(
            runs.iter()
                .filter(|r| r.backend == backend)
                .map(|r| (r.total_bytes as f64, r.cpu)),
        ),
        reverse_median_gbytes_per_s: {
            let mut r: Vec<f64> = runs
                .iter()
                .filter(|r| r.backend == backend)
                .filter_map(|r| r.reverse.as_ref().map(|b| b.gbytes_per_s))
                .collect();
            r.sort_by(f64::total_cmp);
            (!r.is_empty()).then(|| median(&r))
        },
    }
}

/// What one run measured.
struct Measured {
    seconds: f64,
    /// Transfers of the array in the run.
    transfers: u64,
    /// Both the send and the receive array were registered with the kernel.
    registered: bool,
    /// Why the uring backend's kernel refused a registration (`--registered` only).
    refused: Option<String>,
    /// Both threads' CPU.
    cpu: CpuPair,
    /// Effective socket buffer sizes.
    bufs: BenchSockBufs,
    /// SQEs and CQEs of the sending and the receiving engine during the run.
    stats: (EngineStats, EngineStats),
    /// The first check that failed besides the last transfer's CRC (done by the caller): a
    /// spot check of an earlier transfer, or bytes after the last one.
    failed_check: Option<String>,
    /// `--bidir`: the reverse direction.
    back: Option<Back>,
}

/// The reverse direction of a `--bidir` run.
struct Back {
    seconds: f64,
    cpu: CpuPair,
    failed_check: Option<String>,
}

/// What a run moves besides the array: how often, over how many connections, and (with
/// `--bidir`) into which buffer the reverse direction receives.
struct Shape<'a> {
    /// Times the array is sent.
    transfers: u64,
    /// Loopback connections, the array striped over them.
    streams: usize,
    /// `--bidir`: the client's receive buffer.
    back: Option<&'a mut [u8]>,
}

/// Timestamps of one side of a run.
struct Side {
    start: Instant,
    end: Instant,
    registered: bool,
    refused: Option<String>,
    cpu: Option<Cpu>,
    /// What the side's engine used during the clock.
    stats: EngineStats,
    /// Receiving side: the first check that failed.
    failed_check: Option<String>,
}

/// `n` connected loopback TCP pairs `(clients, servers)`, stream `i` of one end connected to
/// stream `i` of the other (each connect completes from the backlog before the next, and the
/// accept queue is FIFO), buffers as [`loopback_pair`].
fn loopback_streams(
    bufs: &SockBufArgs,
    n: usize,
) -> Result<(Vec<TcpStream>, Vec<TcpStream>), Failure> {
    if n == 1 {
        let (c, s) = loopback_pair(bufs)?;
        return Ok((vec![c], vec![s]));
    }
    let io = |what: &str, e: std::io::Error| Failure::runtime(format!("{what}: {e}"));
    let listener: TcpListener = bufs
        .listen("127.0.0.1:0")
        .map_err(|e| io("bind 127.0.0.1:0", e))?;
    let addr = listener.local_addr().map_err(|e| io("local_addr", e))?;
    let mut clients = Vec::with_capacity(n);
    let mut servers = Vec::with_capacity(n);
    for _ in 0..n {
        let c = bufs
            .connect(&addr, Duration::from_secs(10))
            .map_err(|e| io("connect", e))?;
        let (s, peer) = listener.accept().map_err(|e| io("accept", e))?;
        // Same pair, whatever the accept queue held.
        if Some(peer) != c.local_addr().ok() {
            return Err(Failure::runtime(format!(
                "accepted {peer}, expected {:?}",
                c.local_addr()
            )));
        }
        clients.push(c);
        servers.push(s);
    }
    Ok((clients, servers))
}

/// `shape.transfers` transfers of `data` into `recv`, back to back over fresh loopback
/// connections (with `--bidir`, also from the server end into `shape.back` at the same time).
///
/// Each end (the client's and the server's) owns its sockets and closes them when its sides
/// return, so a failed receive unblocks the other end's sender (EPIPE/ECONNRESET).
fn run_once(
    opts: &Options,
    registered: bool,
    sockbufs: &SockBufArgs,
    progress: Option<&Progress>,
    (data, recv): (&[u8], &mut [u8]),
    shape: Shape<'_>,
) -> Result<Measured, Failure> {
    let (clients, servers) = loopback_streams(sockbufs, shape.streams)?;
    let bufs = BenchSockBufs {
        sender: SockBufs::of(&clients[0]),
        receiver: SockBufs::of(&servers[0]),
        ..BenchSockBufs::default()
    };
    let bidir = shape.back.is_some();
    let barrier = Barrier::new(if bidir { 4 } else { 2 });
    let run = Run {
        opts,
        registered,
        transfers: shape.transfers,
        barrier: &barrier,
    };
    let run = &run;
    let back = shape.back;

    let (client, (got, back_sent)) = thread::scope(|s| {
        // The client end: sends the array; with --bidir also receives the reverse one.
        let client = s.spawn(move || {
            let clients = clients;
            thread::scope(|s2| {
                let rx = back.map(|b| s2.spawn(|| recv_side(run, &clients, (data, b), None)));
                let sent = send_side(run, &clients, data);
                (sent, rx.map(|h| h.join()))
            })
        });
        // The server end (this thread): receives; with --bidir also sends the reverse array.
        let servers = servers;
        let server = thread::scope(|s2| {
            let tx = bidir.then(|| s2.spawn(|| send_side(run, &servers, data)));
            let got = recv_side(run, &servers, (data, recv), progress);
            (got, tx.map(|h| h.join()))
        });
        drop(servers);
        (client.join(), server)
    });
    let (sent, back_got) = client.map_err(|_| Failure::runtime("the client thread panicked"))?;
    let (sent, got) = both(sent, got, "")?;
    let back = match (back_sent, back_got) {
        (Some(bs), Some(bg)) => {
            let bs = bs.map_err(|_| Failure::runtime("the reverse sender thread panicked"))?;
            let bg = bg.map_err(|_| Failure::runtime("the reverse receiver thread panicked"))?;
            let (bs, bg) = both(bs, bg, "reverse ")?;
            Some(Back {
                seconds: (bs.end.max(bg.end) - bs.start.min(bg.start)).as_secs_f64(),
                cpu: CpuPair {
                    sender: bs.cpu,
                    receiver: bg.cpu,
                },
                failed_check: bg.failed_check,
            })
        }
        _ => None,
    };
    Ok(Measured {
        seconds: (sent.end.max(got.end) - sent.start.min(got.start)).as_secs_f64(),
        transfers: shape.transfers,
        registered: sent.registered && got.registered,
        refused: sent.refused.or(got.refused),
        cpu: CpuPair {
            sender: sent.cpu,
            receiver: got.cpu,
        },
        bufs,
        stats: (sent.stats, got.stats),
        failed_check: got.failed_check,
        back,
    })
}

/// Both sides of one direction, or what failed. When one side fails the other usually fails
/// in turn (EOF or a reset), so both are said.
fn both(
    sent: ringxfer::Result<Side>,
    got: ringxfer::Result<Side>,
    dir: &str,
) -> Result<(Side, Side), Failure> {
    match (sent, got) {
        (Ok(s), Ok(g)) => Ok((s, g)),
        (Ok(_), Err(e)) => Err(Failure::runtime(format!("{dir}recv: {e}"))),
        (Err(e), Ok(_)) => Err(Failure::runtime(format!("{dir}send: {e}"))),
        (Err(s), Err(r)) => Err(Failure::runtime(format!("{dir}recv: {r}; {dir}send: {s}"))),
    }
}

/// What both sides of a run share.
struct Run<'a> {
    opts: &'a Options,
    registered: bool,
    /// Times the array is sent.
    transfers: u64,
    barrier: &'a Barrier,
}

/// A sending side: engine (and registration) before the barrier, then the sends (striped
/// over `socks` when there are several), then `shutdown(SHUT_WR)` on each socket so the
/// receiver sees the end of the stream right after the last array (the socket itself stays
/// open for a `--bidir` receive on it).
fn send_side(run: &Run<'_>, socks: &[TcpStream], data: &[u8]) -> ringxfer::Result<Side> {
    let mut engine = engine(run.opts, run.barrier)?;
    let uring = engine.backend() == ActiveBackend::Uring;
    let before = engine.stats();
    let (start, end, cpu, registered, refused) = if run.registered {
        let mut guard = engine.register_send(data);
        let refused = refusal(uring, guard.is_registered(), guard.fallback_reason());
        let (start, end, cpu) = timed(run.barrier, || {
            (0..run.transfers).try_for_each(|_| guard.send(&socks[0]))
        })?;
        (start, end, cpu, guard.is_registered(), refused)
    } else {
        let (start, end, cpu) = timed(run.barrier, || {
            (0..run.transfers).try_for_each(|_| match socks {
                [one] => engine.send_from(one, data),
                many => engine.send_striped(many, data),
            })
        })?;
        (start, end, cpu, false, None)
    };
    for s in socks {
        s.shutdown(std::net::Shutdown::Write)
            .map_err(|source| ringxfer::Error::Io {
                op: "shutdown",
                transferred: data.len() as u64 * run.transfers,
                expected: data.len() as u64 * run.transfers,
                source,
            })?;
    }
    say_notices("bench", &engine);
    Ok(Side {
        start,
        end,
        registered,
        refused,
        cpu,
        stats: engine.stats().since(&before),
        failed_check: None,
    })
}

/// A receiving side: engine (and registration) before the barrier, then the receives
/// (striped over `socks` when there are several), each but the last spot-checked ([`Spots`])
/// inside the clock; after the clock, a check that every stream ends right after the last
/// array.
fn recv_side(
    run: &Run<'_>,
    socks: &[TcpStream],
    (want, buf): (&[u8], &mut [u8]),
    progress: Option<&Progress>,
) -> ringxfer::Result<Side> {
    let mut engine = engine(run.opts, run.barrier)?;
    let uring = engine.backend() == ActiveBackend::Uring;
    let before = engine.stats();
    let spots = Spots::of(buf.len());
    let n = run.transfers;
    // The first failed spot check: transfer number (1-based) and offset.
    let mut bad: Option<(u64, usize)> = None;
    let mut check = |i: u64, got: &[u8]| {
        if bad.is_none() {
            bad = spots.first_mismatch(got, want).map(|o| (i + 1, o));
        }
    };
    if n > 1 {
        spots.poison(buf, want);
    }
    let (start, end, cpu, registered, refused) = if run.registered {
        let mut guard = engine.register_recv(buf);
        let refused = refusal(uring, guard.is_registered(), guard.fallback_reason());
        let (start, end, cpu) = timed(run.barrier, || {
            for i in 0..n {
                guard.recv(&socks[0])?;
                if i + 1 < n {
                    check(i, guard.as_bytes());
                }
            }
            Ok(())
        })?;
        (start, end, cpu, guard.is_registered(), refused)
    } else {
        let (start, end, cpu) = timed(run.barrier, || {
            for i in 0..n {
                match socks {
                    [one] => recv_chunked(&mut engine, one, buf, progress)?,
                    many => {
                        engine.recv_striped(many, buf)?;
                        count(progress, buf.len());
                    }
                }
                if i + 1 < n {
                    check(i, buf);
                    spots.poison(buf, want);
                }
            }
            Ok(())
        })?;
        (start, end, cpu, false, None)
    };
    say_notices("bench", &engine);
    let stats = engine.stats().since(&before);
    let failed_check = match bad {
        Some((i, off)) => Some(format!(
            "transfer {i} of {n}: wrong bytes at offset {off} (spot check)"
        )),
        None => socks.iter().enumerate().find_map(|(k, s)| {
            ringxfer::close::expect_eof(s, run.opts.idle_timeout)
                .err()
                .map(|e| format!("after transfer {n} of {n}, stream {k}: {e}"))
        }),
    };
    Ok(Side {
        start,
        end,
        registered,
        refused,
        cpu,
        stats,
        failed_check,
    })
}

/// An engine for one side; on failure it still meets the other side at the barrier, so
/// neither thread waits forever.
fn engine(opts: &Options, barrier: &Barrier) -> ringxfer::Result<Engine> {
    Engine::with_options(opts.clone()).inspect_err(|_| {
        barrier.wait();
    })
}

/// Waits at the barrier, then runs `op`; its start and end instants and the CPU the calling
/// thread spent in it (read just outside the clock).
fn timed(
    barrier: &Barrier,
    op: impl FnOnce() -> ringxfer::Result<()>,
) -> ringxfer::Result<(Instant, Instant, Option<Cpu>)> {
    barrier.wait();
    let cpu = CpuClock::now();
    let start = Instant::now();
    op()?;
    let end = Instant::now();
    Ok((start, end, cpu.and_then(|c| c.cpu_since())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_run_is_verified_on_every_backend() {
        let mut backends = vec![Backend::Blocking];
        if ringxfer::probe().available {
            backends.push(Backend::Uring);
        } else {
            eprintln!("skipping uring: {:?}", ringxfer::probe().reason);
        }
        let dtype = "f8".parse().unwrap();
        let mut data = Buffer::zeroed(1 << 20).unwrap();
        fill_arange(dtype, data.bytes_mut());
        for backend in backends {
            for (registered, transfers) in [(false, 1), (true, 1), (false, 3), (true, 3)] {
                let mut recv = vec![0xAAu8; 1 << 20];
                let opts = Options {
                    backend,
                    ..Options::default()
                };
                let m = run_once(
                    &opts,
                    registered,
                    &SockBufArgs::default(),
                    None,
                    (data.bytes(), &mut recv),
                    Shape {
                        transfers,
                        streams: 1,
                        back: None,
                    },
                )
                .unwrap_or_else(|f| panic!("{backend}: {}", f.message));
                let what = format!("{backend} registered={registered} transfers={transfers}");
                assert!(m.seconds > 0.0);
                assert_eq!(m.transfers, transfers);
                assert_eq!(m.failed_check, None, "{what}");
                assert_eq!(recv, data.bytes(), "{what}");
                // 1 MiB: one 4 MiB-segment SQE per transfer and end.
                let per_end = match backend {
                    Backend::Uring => EngineStats {
                        sqes: transfers,
                        cqes: transfers,
                        ..EngineStats::default()
                    },
                    _ => EngineStats::default(),
                };
                assert_eq!(m.stats, (per_end, per_end), "{what}");
            }
        }
    }
}
