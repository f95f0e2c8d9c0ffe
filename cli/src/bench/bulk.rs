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
//! The other modes live beside this one (`super::fresh`, `super::many`, `super::pingpong`);
//! all run through `super::runner` (this mode's calibration is its `accept` hook, and its
//! engines are made inside each run, so its per-backend state is their options and K), with
//! the run record and summary of `super::record`.

use std::net::{TcpListener, TcpStream};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use ringxfer::dtype::fill_arange;
use ringxfer::{ActiveBackend, Backend, Engine, EngineStats, Options};
use serde::Serialize;

use super::args::BenchArgs;
use super::batch::{Batch, MIN_RUN_SECS, PerEnd, Spots};
use super::common::{
    Measured, cpu_cell, loopback_pair, per_gb_cell, ratio, spread_or_zero, verdict, verified_cell,
};
use super::record::{BulkRun, Detail, Reverse, RunRecord, SendZcRecord, Summary, median_in};
use super::runner::{self, Mode};
use crate::args::ArraySpec;
use crate::buffer::Buffer;
use crate::failure::Failure;
use crate::measure::{
    Cpu, CpuClock, CpuPair, Progress, SockBufArgs, SockBufs, count, recv_chunked, say_notices,
};
use crate::report::gbytes_per_s;
use crate::report::refusal;

/// The `note:` line about adaptive zero-copy: what the uring runs' sending engines tried and
/// what the kernel's usage reports made them do, or that they switched without a trial (a
/// local peer). `None` when no run did either.
fn send_zc_note(runs: &[RunRecord]) -> Option<String> {
    let zc: Vec<&SendZcRecord> = runs
        .iter()
        .filter_map(|r| match &r.detail {
            Detail::Bulk(b) => Some(&b.send_zc),
            _ => None,
        })
        .collect();
    let tried: Vec<&SendZcRecord> = zc
        .iter()
        .copied()
        .filter(|z| z.copied + z.kept > 0)
        .collect();
    if tried.is_empty() {
        let local = zc
            .iter()
            .filter(|z| z.attempted == 0 && z.switched > 0)
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

/// This mode's own fields of the `--json` report ([`Report`](super::runner::Report) adds the
/// common ones).
#[derive(Debug, Serialize)]
struct Fields {
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
pub fn run(a: &BenchArgs) -> Result<(), Failure> {
    let spec = a.array.resolve()?;
    // The array and its checksum, once, outside every measurement.
    let mut send = Buffer::zeroed(spec.bytes)?;
    fill_arange(spec.dtype, send.bytes_mut());
    let send_crc = crc32fast::hash(send.bytes());
    let bulk = Bulk {
        a,
        spec,
        send,
        send_crc,
        recv: Buffer::zeroed(spec.bytes)?,
        back: Buffer::zeroed(if a.bidir { spec.bytes } else { 0 })?,
        mode: if a.registered {
            "pre-registered"
        } else {
            "one-shot"
        },
        batched: Batch::for_size(spec.bytes).batched(),
        redone: 0,
        warned_refusal: false,
    };
    runner::run(a, bulk)
}

/// The mode: the array and its CRC-32 (made once), the receive buffers (allocated once, filled
/// with `0xAA` before every run), and the calibration's count.
struct Bulk<'a> {
    a: &'a BenchArgs,
    spec: ArraySpec,
    send: Buffer,
    send_crc: u32,
    recv: Buffer,
    /// `--bidir`: the client's receive buffer (empty otherwise).
    back: Buffer,
    /// `"one-shot"` or `"pre-registered"`.
    mode: &'static str,
    /// Runs send the array K times ([`super::batch`]).
    batched: bool,
    /// Runs too short to count, done again with a larger K.
    redone: u32,
    warned_refusal: bool,
}

/// A backend's state: the options its runs make their engines with (each run makes its own,
/// on the threads that use them, before the barrier), and its transfers per run.
struct Ends {
    opts: Options,
    batch: Batch,
}

impl Mode for Bulk<'_> {
    type Ends = Ends;
    type Kind = ();
    type Got = Bulked;
    type Fields = Fields;

    fn ends(&self, opts: &Options) -> Result<Ends, Failure> {
        Ok(Ends {
            opts: opts.clone(),
            batch: Batch::for_size(self.spec.bytes),
        })
    }

    fn kinds(&self, _phase: usize, _backend: Backend) -> Vec<()> {
        vec![()]
    }

    fn kind_name((): ()) -> Option<&'static str> {
        None
    }

    fn print_header(&self, a: &BenchArgs, _opts: &Options) {
        print_header(a, &self.spec, self.mode, self.send_crc);
    }

    fn progress_total(&self, backends: &[Backend], repeat: u32) -> u64 {
        (self.spec.bytes as u64).saturating_mul(u64::from(repeat) * backends.len() as u64)
    }

    fn measure(
        &mut self,
        ends: &mut Ends,
        (): (),
        progress: Option<&Progress>,
    ) -> Result<Measured<Bulked>, Failure> {
        self.recv.bytes_mut().fill(0xAA);
        self.back.bytes_mut().fill(0xAA);
        let a = self.a;
        run_once(
            &ends.opts,
            a.registered,
            &a.sockbufs,
            progress,
            (self.send.bytes(), self.recv.bytes_mut()),
            Shape {
                transfers: ends.batch.transfers(),
                streams: a.streams as usize,
                back: a.bidir.then(|| self.back.bytes_mut()),
            },
        )
    }

    fn accept(&mut self, ends: &mut Ends, m: &Measured<Bulked>) -> bool {
        let ok = ends.batch.accept(m.seconds);
        self.redone += u32::from(!ok);
        ok
    }

    fn record(&mut self, backend: Backend, (): (), repeat: u32, m: Measured<Bulked>) -> RunRecord {
        if let Some(reason) = m.got.refused.as_deref()
            && !self.warned_refusal
        {
            eprintln!("ringxfer bench: the kernel refused to register the array: {reason}");
            self.warned_refusal = true;
        }
        record(backend, repeat, self, &m)
    }

    fn print_row(&self, n: usize, rec: &RunRecord) {
        print_row(n, rec);
    }

    fn conclude(&self, summary: &mut [Summary], runs: &[RunRecord]) -> (Fields, Vec<String>) {
        let med = |b: &str| median_in(summary, b, None, Summary::median_gbytes_per_s);
        let ratio = ratio(med("uring"), med("blocking"));
        let mut lines = vec![match ratio {
            Some(r) => format!("ratio uring/blocking (median/median): {r:.3}"),
            None => "ratio uring/blocking: n/a (needs both backends, with bytes moved)".to_owned(),
        }];
        lines.extend(verdict(
            ratio,
            summary.iter().map(|s| s.runs).min().unwrap_or(0),
        ));
        if self.batched {
            lines.push(format!(
                "K: transfers per run; {} run(s) shorter than {MIN_RUN_SECS} s (calibration \
                 included) were done again with a larger K and are not shown",
                self.redone
            ));
        }
        lines.push(
            "SQEs/CQEs: submitted/reaped by the sending/receiving engine in the run (CQEs \
             include SEND_ZC notifications)"
                .to_owned(),
        );
        lines.extend(send_zc_note(runs));
        let (a, spec) = (self.a, &self.spec);
        let fields = Fields {
            dtype: spec.dtype.to_string(),
            count: spec.count,
            bytes: spec.bytes,
            streams: a.streams,
            bidir: a.bidir,
            mode: self.mode,
            crc32: format!("{:08x}", self.send_crc),
            min_run_seconds: self.batched.then_some(MIN_RUN_SECS),
            short_runs_redone: self.batched.then_some(self.redone),
            ratio_uring_over_blocking: ratio,
        };
        (fields, lines)
    }

    fn print_summary(&self, summary: &[Summary]) {
        print_summary(summary);
    }

    fn unverified_note(&self) -> String {
        format!(
            " (the array's crc32 is {:08x}; each run's line says what failed)",
            self.send_crc
        )
    }
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
fn record(backend: Backend, repeat: u32, bulk: &Bulk<'_>, m: &Measured<Bulked>) -> RunRecord {
    let got = &m.got;
    let crc_failed = |received: &[u8]| {
        (crc32fast::hash(received) != bulk.send_crc).then(|| {
            let last = got.transfers;
            format!("crc mismatch in transfer {last} of {last}")
        })
    };
    let failed = got
        .failed_check
        .clone()
        .or_else(|| crc_failed(bulk.recv.bytes()));
    let (tx, rx) = got.stats;
    let moved = bulk.spec.bytes.saturating_mul(got.transfers as usize);
    let reverse = got.back.as_ref().map(|b| {
        let error = b
            .failed_check
            .clone()
            .or_else(|| crc_failed(bulk.back.bytes()));
        Reverse {
            seconds: b.seconds,
            gbytes_per_s: gbytes_per_s(moved, b.seconds),
            verified: error.is_none(),
            error,
            cpu: b.cpu,
        }
    });
    let per_end = |f: fn(&EngineStats) -> u64| PerEnd {
        sender: f(&tx),
        receiver: f(&rx),
    };
    RunRecord {
        backend: backend.to_string(),
        kind: None,
        repeat,
        bytes: bulk.spec.bytes as u64,
        seconds: m.seconds,
        gbytes_per_s: Some(gbytes_per_s(moved, m.seconds)),
        verified: failed.is_none(),
        error: failed,
        cpu: m.cpu,
        detail: Detail::Bulk(BulkRun {
            transfers_per_run: got.transfers,
            total_bytes: moved as u64,
            sqes: per_end(|s| s.sqes),
            cqes: per_end(|s| s.cqes),
            notifs: per_end(|s| s.notifs),
            fixed_file_sqes: per_end(|s| s.fixed_file_sqes),
            send_zc: SendZcRecord::from(&tx),
            registered: bulk.a.registered.then_some(got.registered),
            reverse,
        }),
    }
}

/// Row `n` of the run table.
fn print_row(n: usize, rec: &RunRecord) {
    let Detail::Bulk(b) = &rec.detail else {
        return;
    };
    let gbytes_per_s = rec.gbytes_per_s.unwrap_or(0.0);
    println!(
        "{:>3}  {:<8}  {:>7}  {:>9.4}  {:>7.3}  {:>8.2}  {:>6}  {:>6}  {:>15}  {:>15}  {}{}{}",
        n,
        rec.backend,
        b.transfers_per_run,
        rec.seconds,
        gbytes_per_s,
        gbytes_per_s * 8.0,
        cpu_cell(rec.cpu.sender),
        cpu_cell(rec.cpu.receiver),
        format!("{}/{}", b.sqes.sender, b.sqes.receiver),
        format!("{}/{}", b.cqes.sender, b.cqes.receiver),
        verified_cell(rec.error.as_ref()),
        match b.registered {
            Some(true) => ", registered",
            Some(false) => ", not registered",
            None => "",
        },
        match &b.reverse {
            None => String::new(),
            Some(r) => format!(
                "; rev {:.4} s {:.3} GB/s, cpu {}/{}, verified {}",
                r.seconds,
                r.gbytes_per_s,
                cpu_cell(r.cpu.sender),
                cpu_cell(r.cpu.receiver),
                verified_cell(r.error.as_ref()),
            ),
        }
    );
}

/// The human summary table and its CPU line (the ratio and verdict lines come from
/// [`Mode::conclude`]).
fn print_summary(summary: &[Summary]) {
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
    for s in summary {
        if let Some(r) = s.reverse_median_gbytes_per_s {
            println!(
                "{:<8}  reverse direction (--bidir): median {r:.3} GB/s",
                s.backend
            );
        }
        let (g, cpu) = (
            spread_or_zero(s.gbytes_per_s),
            s.cpu_s_per_gb.unwrap_or_default(),
        );
        println!(
            "{:<8}  {:>4}  {:>11.3}  {:>8.3}  {:>8.3}  {:>13.2}  {:>10.2}  {:>10.2}  {:>13}  {:>13}",
            s.backend,
            s.runs,
            g.median,
            g.min,
            g.max,
            g.median * 8.0,
            g.min * 8.0,
            g.max * 8.0,
            per_gb_cell(cpu.sender),
            per_gb_cell(cpu.receiver),
        );
    }
    println!(
        "cpu: user + system seconds of the sending / receiving thread per 10^9 bytes (median)"
    );
}

/// What one run found besides its clock, CPU and sockets ([`Measured`]).
#[derive(Debug)]
struct Bulked {
    /// Transfers of the array in the run.
    transfers: u64,
    /// Both the send and the receive array were registered with the kernel.
    registered: bool,
    /// Why the uring backend's kernel refused a registration (`--registered` only).
    refused: Option<String>,
    /// SQEs and CQEs of the sending and the receiving engine during the run.
    stats: (EngineStats, EngineStats),
    /// The first check that failed besides the last transfer's CRC (done by the caller): a
    /// spot check of an earlier transfer, or bytes after the last one.
    failed_check: Option<String>,
    /// `--bidir`: the reverse direction.
    back: Option<Back>,
}

/// The reverse direction of a `--bidir` run.
#[derive(Debug)]
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
) -> Result<Measured<Bulked>, Failure> {
    let (clients, servers) = loopback_streams(sockbufs, shape.streams)?;
    let bufs = (SockBufs::of(&clients[0]), SockBufs::of(&servers[0]));
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
        cpu: CpuPair {
            sender: sent.cpu,
            receiver: got.cpu,
        },
        bufs,
        got: Bulked {
            transfers: shape.transfers,
            registered: sent.registered && got.registered,
            refused: sent.refused.or(got.refused),
            stats: (sent.stats, got.stats),
            failed_check: got.failed_check,
            back,
        },
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
                assert_eq!(m.got.transfers, transfers);
                assert_eq!(m.got.failed_check, None, "{what}");
                assert_eq!(recv, data.bytes(), "{what}");
                // 1 MiB: one 4 MiB-segment SQE per transfer and end.
                let per_end = match backend {
                    Backend::Uring => {
                        let mut s = EngineStats::default();
                        s.sqes = transfers;
                        s.cqes = transfers;
                        s
                    }
                    _ => EngineStats::default(),
                };
                assert_eq!(m.got.stats, (per_end, per_end), "{what}");
            }
        }
    }
}
