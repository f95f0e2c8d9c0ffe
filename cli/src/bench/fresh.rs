//! `ringxfer bench --fresh`: what receiving into a *new* array per message costs.
//!
//! The arange array (`--dtype`, `--count`/`--size`; by default 50,000,000 `<f8`, 400 MB) is
//! generated once, with its CRC-32. Each repeat runs, for each backend (the order alternates
//! between repeats, and so does the order of the receive kinds within a backend), one run per
//! receive kind, each over a fresh loopback TCP connection:
//!
//! * `pretouched`: framed; the receiver calls `Engine::recv_array_into` into one buffer
//!   allocated and touched before the first run (and filled with `0xAA` before every run,
//!   outside the clock);
//! * `fresh`: framed; the receiver calls `Engine::recv_any`, which allocates a new array per
//!   message, as users do. After the clock it is verified, filled with `0xAA` (so a later
//!   run that received nothing into recycled memory cannot pass) and dropped before the next
//!   run starts: the engine's pool (process-wide, shared by both backends) keeps its memory
//!   and the next fresh receive of the same size reuses it. The first fresh run of the process
//!   has nothing to reuse and pays the page faults; the `recycled` field says which runs had
//!   recycled memory waiting;
//! * `naive` (blocking backend only): raw bytes (`Engine::send_from` / `Engine::recv_into`,
//!   no header) into `vec![0u8; n]` allocated *inside* the clock: the baseline of issue 3.
//!
//! The framed sender uses `Engine::send_array_bytes` (header, payload, trailer). One sending
//! and one receiving engine per backend live across all repeats. The clock is the main
//! bench's: both threads pass a barrier once connected, the run lasts from the earlier start
//! to the later of "receiver has the whole array" and "sender returned". Every run is
//! verified after the clock: dtype, shape and order of the header, the library's own payload
//! checksum (framed), and the CRC-32 of the received bytes against the array's.

use std::net::TcpStream;
use std::time::Instant;

use ringxfer::Header;
use ringxfer::dtype::{DType, Scalar, fill_arange};
use ringxfer::{AnyArray, Backend, Engine, Options, Order};
use serde::Serialize;

use super::args::BenchArgs;
use super::common::{
    Measured, cpu_cell, kind_cell, over_loopback, per_gb_cell, ratio, ratio_cell, spread_or_zero,
    verified_cell,
};
use super::record::{Detail, Label, RunRecord, Summary, median_in};
use super::runner::{self, Mode, Pair};
use crate::args::ArraySpec;
use crate::buffer::Buffer;
use crate::failure::Failure;
use crate::measure::{Progress, SockBufArgs, count};
use crate::report::gbytes_per_s;

/// How the receiver gets its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Receive {
    Pretouched,
    Fresh,
    Naive,
}

impl Receive {
    fn name(self) -> &'static str {
        match self {
            Receive::Pretouched => "pretouched",
            Receive::Fresh => "fresh",
            Receive::Naive => "naive",
        }
    }

    fn label(self) -> Label {
        Label {
            key: "receive",
            name: self.name(),
        }
    }

    /// The kinds measured on `backend`: naive is the blocking baseline only.
    fn on(backend: Backend) -> &'static [Receive] {
        match backend {
            Backend::Blocking => &[Receive::Pretouched, Receive::Fresh, Receive::Naive],
            _ => &[Receive::Pretouched, Receive::Fresh],
        }
    }
}

/// Per-backend `fresh / pretouched` median ratios.
#[derive(Debug, Serialize)]
struct PerBackend {
    uring: Option<f64>,
    blocking: Option<f64>,
}

/// This mode's own fields of the `--json` report ([`Report`](super::runner::Report) adds the
/// common ones).
#[derive(Debug, Serialize)]
struct Fields {
    mode: &'static str,
    dtype: String,
    count: u64,
    bytes: usize,
    crc32: String,
    prefault: ringxfer::Prefault,
    recycle_bytes: usize,
    ratio_fresh_over_pretouched: PerBackend,
    ratio_fresh_uring_over_naive_blocking: Option<f64>,
}

/// Calls `$body` with `$t` bound to the Rust element type of `$scalar`; `None` for the
/// scalars without one (complex, bool).
macro_rules! with_element {
    ($scalar:expr, $t:ident => $body:expr) => {
        match $scalar {
            Scalar::F64 => {
                type $t = f64;
                Some($body)
            }
            Scalar::F32 => {
                type $t = f32;
                Some($body)
            }
            Scalar::I64 => {
                type $t = i64;
                Some($body)
            }
            Scalar::I32 => {
                type $t = i32;
                Some($body)
            }
            Scalar::I16 => {
                type $t = i16;
                Some($body)
            }
            Scalar::I8 => {
                type $t = i8;
                Some($body)
            }
            Scalar::U64 => {
                type $t = u64;
                Some($body)
            }
            Scalar::U32 => {
                type $t = u32;
                Some($body)
            }
            Scalar::U16 => {
                type $t = u16;
                Some($body)
            }
            Scalar::U8 => {
                type $t = u8;
                Some($body)
            }
            Scalar::F16 | Scalar::C64 | Scalar::C128 | Scalar::Bool => None,
        }
    };
}

/// `Engine::recv_array_into` for the element type of `dtype` (native, checked by the caller)
/// into `out` (8-byte aligned).
fn recv_into_typed(
    engine: &mut Engine,
    sock: &TcpStream,
    dtype: DType,
    out: &mut [u8],
) -> ringxfer::Result<Header> {
    with_element!(dtype.scalar(), T => {
        engine.recv_array_into::<T>(sock, bytemuck::cast_slice_mut(out))
    })
    .expect("dtype checked by the caller")
}

/// Overwrites a received array with `0xAA` (through the typed view: `AnyArray` is read-only).
fn poison(a: AnyArray) {
    let dtype = a.dtype();
    let _ = with_element!(dtype.scalar(), T => {
        if let Ok(mut t) = a.into_typed::<T>(false) {
            let b: &mut [u8] = bytemuck::cast_slice_mut(t.as_mut_slice());
            b.fill(0xAA);
        }
    });
}

/// What a receive left behind, checked after the clock.
enum Got {
    Into(Header),
    Fresh(AnyArray),
    Naive(Vec<u8>),
}

/// Runs `ringxfer bench --fresh`.
pub fn run(a: &BenchArgs) -> Result<(), Failure> {
    runner::run(a, Fresh::new(a)?)
}

/// The mode: the array (made once, with its CRC-32), the pre-touched receive buffer, and the
/// receive memory settings.
struct Fresh<'a> {
    a: &'a BenchArgs,
    spec: ArraySpec,
    send: Buffer,
    send_crc: u32,
    /// Allocated and touched once (`Buffer::zeroed` writes every page), before any run.
    pre: Buffer,
    prefault: ringxfer::Prefault,
    recycle_bytes: usize,
}

impl<'a> Fresh<'a> {
    fn new(a: &'a BenchArgs) -> Result<Fresh<'a>, Failure> {
        let spec = a.array.resolve()?;
        if !spec.dtype.is_native()
            || with_element!(spec.dtype.scalar(), T => size_of::<T>()).is_none()
        {
            return Err(Failure::usage(format!(
                "--fresh needs a native dtype with a Rust element type (f8, f4, i8, i4, i2, i1, \
                 u8, u4, u2, u1), not {}",
                spec.dtype
            )));
        }
        let defaults = Options::default();
        let recycle_bytes = match a.recycle {
            Some(b) => usize::try_from(b)
                .map_err(|_| Failure::usage(format!("--recycle {b} is too large")))?,
            None => defaults.recycle_bytes,
        };
        let mut send = Buffer::zeroed(spec.bytes)?;
        fill_arange(spec.dtype, send.bytes_mut());
        let send_crc = crc32fast::hash(send.bytes());
        Ok(Fresh {
            a,
            spec,
            send,
            send_crc,
            pre: Buffer::zeroed(spec.bytes)?,
            prefault: a.prefault.unwrap_or(defaults.prefault),
            recycle_bytes,
        })
    }
}

/// What a run's receiver got, checked.
struct Checked {
    /// `fresh`: the pool held recycled memory of the array's size when the run started.
    recycled: Option<bool>,
    check: Result<(), String>,
}

impl Mode for Fresh<'_> {
    type Ends = Pair;
    type Kind = Receive;
    type Got = Checked;
    type Fields = Fields;

    fn options(&self, base: Options) -> Options {
        Options {
            prefault: self.prefault,
            recycle_bytes: self.recycle_bytes,
            ..base
        }
    }

    fn ends(&self, opts: &Options) -> Result<Pair, Failure> {
        Pair::new(opts)
    }

    fn kinds(&self, _phase: usize, backend: Backend) -> Vec<Receive> {
        Receive::on(backend).to_vec()
    }

    fn kind_name(kind: Receive) -> Option<&'static str> {
        Some(kind.name())
    }

    fn print_header(&self, a: &BenchArgs, opts: &Options) {
        print_header(a, &self.spec, opts, self.send_crc);
    }

    fn progress_total(&self, backends: &[Backend], repeat: u32) -> u64 {
        let kinds: usize = backends.iter().map(|&b| Receive::on(b).len()).sum();
        (self.spec.bytes as u64).saturating_mul(u64::from(repeat) * kinds as u64)
    }

    fn measure(
        &mut self,
        pair: &mut Pair,
        kind: Receive,
        progress: Option<&Progress>,
    ) -> Result<Measured<Checked>, Failure> {
        let spec = self.spec;
        if kind == Receive::Pretouched {
            self.pre.bytes_mut().fill(0xAA);
        }
        let recycled = (kind == Receive::Fresh).then(|| pair.rx.recycled_bytes() >= spec.bytes);
        let (send, pre) = (self.send.bytes(), self.pre.bytes_mut());
        let sockbufs = &self.a.sockbufs;
        let m = pair.measure(|tx, rx| run_once(tx, rx, kind, &spec, sockbufs, send, pre))?;
        count(progress, spec.bytes);
        Ok(m.map(|got| Checked {
            recycled,
            check: verify(got, &spec, self.send_crc, self.pre.bytes()),
        }))
    }

    fn record(
        &mut self,
        backend: Backend,
        kind: Receive,
        repeat: u32,
        m: Measured<Checked>,
    ) -> RunRecord {
        RunRecord {
            backend: backend.to_string(),
            kind: Some(kind.label()),
            repeat,
            bytes: self.spec.bytes as u64,
            seconds: m.seconds,
            gbytes_per_s: Some(gbytes_per_s(self.spec.bytes, m.seconds)),
            verified: m.got.check.is_ok(),
            error: m.got.check.err(),
            cpu: m.cpu,
            detail: Detail::Fresh {
                recycled: m.got.recycled,
            },
        }
    }

    fn print_row(&self, n: usize, rec: &RunRecord) {
        print_row(n, rec);
    }

    fn conclude(&self, summary: &mut [Summary], _runs: &[RunRecord]) -> (Fields, Vec<String>) {
        let med = |b: &str, k: Receive| {
            median_in(summary, b, Some(k.name()), Summary::median_gbytes_per_s)
        };
        let per_backend = PerBackend {
            uring: ratio(
                med("uring", Receive::Fresh),
                med("uring", Receive::Pretouched),
            ),
            blocking: ratio(
                med("blocking", Receive::Fresh),
                med("blocking", Receive::Pretouched),
            ),
        };
        let over_naive = ratio(
            med("uring", Receive::Fresh),
            med("blocking", Receive::Naive),
        );
        let lines = vec![
            format!(
                "ratio fresh/pretouched (median/median): uring {}, blocking {}",
                ratio_cell(per_backend.uring),
                ratio_cell(per_backend.blocking)
            ),
            format!(
                "ratio fresh uring / naive blocking (median/median): {}",
                ratio_cell(over_naive)
            ),
        ];
        let spec = &self.spec;
        let fields = Fields {
            mode: "fresh",
            dtype: spec.dtype.to_string(),
            count: spec.count,
            bytes: spec.bytes,
            crc32: format!("{:08x}", self.send_crc),
            prefault: self.prefault,
            recycle_bytes: self.recycle_bytes,
            ratio_fresh_over_pretouched: per_backend,
            ratio_fresh_uring_over_naive_blocking: over_naive,
        };
        (fields, lines)
    }

    fn print_summary(&self, summary: &[Summary]) {
        print_summary(summary);
    }
}

/// The text report's lines before the first run.
fn print_header(a: &BenchArgs, spec: &ArraySpec, opts: &Options, send_crc: u32) {
    println!(
        "ringxfer bench --fresh: {} x {} arange = {} bytes ({:.1} MB), loopback TCP, {} \
         repeat(s), prefault {}, recycle {} bytes, crc32 {send_crc:08x}",
        spec.count,
        spec.dtype,
        spec.bytes,
        spec.bytes as f64 / 1e6,
        a.repeat,
        serde_json::to_value(opts.prefault)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        opts.recycle_bytes,
    );
    println!(
        "{:>3}  {:<8}  {:<10}  {:>9}  {:>7}  {:>6}  {:>6}  verified",
        "run", "backend", "receive", "seconds", "GB/s", "tx cpu", "rx cpu"
    );
}

/// Row `n` of the run table.
fn print_row(n: usize, rec: &RunRecord) {
    println!(
        "{:>3}  {:<8}  {:<10}  {:>9.4}  {:>7.3}  {:>6}  {:>6}  {}{}",
        n,
        rec.backend,
        kind_cell(rec.kind),
        rec.seconds,
        rec.gbytes_per_s.unwrap_or(0.0),
        cpu_cell(rec.cpu.sender),
        cpu_cell(rec.cpu.receiver),
        verified_cell(rec.error.as_ref()),
        match rec.detail {
            Detail::Fresh {
                recycled: Some(true),
            } => ", recycled memory",
            Detail::Fresh {
                recycled: Some(false),
            } => ", new memory",
            _ => "",
        }
    );
}

/// The text summary table.
fn print_summary(summary: &[Summary]) {
    println!();
    println!(
        "{:<8}  {:<10}  {:>4}  {:>11}  {:>8}  {:>8}  {:>11}  {:>11}",
        "backend",
        "receive",
        "runs",
        "median GB/s",
        "min GB/s",
        "max GB/s",
        "tx cpu s/GB",
        "rx cpu s/GB"
    );
    for s in summary {
        let (g, cpu) = (
            spread_or_zero(s.gbytes_per_s),
            s.cpu_s_per_gb.unwrap_or_default(),
        );
        println!(
            "{:<8}  {:<10}  {:>4}  {:>11.3}  {:>8.3}  {:>8.3}  {:>11}  {:>11}",
            s.backend,
            kind_cell(s.kind),
            s.runs,
            g.median,
            g.min,
            g.max,
            per_gb_cell(cpu.sender),
            per_gb_cell(cpu.receiver),
        );
    }
}

/// Checks what one run received; poisons and drops a fresh array.
fn verify(got: Got, spec: &ArraySpec, crc: u32, pre: &[u8]) -> Result<(), String> {
    let header_ok = |dtype: DType, shape: &[u64], order: Order| -> Result<(), String> {
        if dtype != spec.dtype || shape != [spec.count] || order != Order::C {
            return Err(format!(
                "header says {dtype} {shape:?} {order:?}, sent {} [{}] C",
                spec.dtype, spec.count
            ));
        }
        Ok(())
    };
    let crc_ok = |b: &[u8]| -> Result<(), String> {
        let got = crc32fast::hash(b);
        (got == crc)
            .then_some(())
            .ok_or_else(|| format!("crc32 {got:08x} != {crc:08x}"))
    };
    match got {
        Got::Into(h) => header_ok(h.dtype, &h.shape, h.order).and_then(|()| crc_ok(pre)),
        Got::Fresh(arr) => {
            let r = header_ok(arr.dtype(), arr.shape(), arr.order())
                .and_then(|()| {
                    arr.checksum_verified()
                        .then_some(())
                        .ok_or_else(|| "sent without a payload checksum".to_owned())
                })
                .and_then(|()| crc_ok(arr.bytes()));
            poison(arr);
            r
        }
        Got::Naive(v) => crc_ok(&v),
    }
}

/// One transfer over a fresh loopback connection: the sender on a spawned thread, the
/// receiver on this one; what the receiver got.
fn run_once(
    tx: &mut Engine,
    rx: &mut Engine,
    kind: Receive,
    spec: &ArraySpec,
    sockbufs: &SockBufArgs,
    data: &[u8],
    pre: &mut [u8],
) -> Result<Measured<Got>, Failure> {
    let (dtype, shape) = (spec.dtype, [spec.count]);
    let send = |sock: &TcpStream| match kind {
        Receive::Naive => tx.send_from(sock, data),
        _ => tx.send_array_bytes(sock, dtype, data, &shape, Order::C),
    };
    let recv = |sock: &TcpStream| {
        let got = match kind {
            Receive::Pretouched => Got::Into(recv_into_typed(rx, sock, dtype, pre)?),
            Receive::Fresh => Got::Fresh(rx.recv_any(sock)?),
            Receive::Naive => {
                let mut v = vec![0u8; data.len()];
                rx.recv_into(sock, &mut v)?;
                Got::Naive(v)
            }
        };
        Ok((Instant::now(), got))
    };
    over_loopback(sockbufs, ["send", "recv"], send, recv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_per_backend() {
        assert_eq!(Receive::on(Backend::Uring).len(), 2);
        assert_eq!(
            Receive::on(Backend::Blocking).last(),
            Some(&Receive::Naive),
            "naive is the blocking baseline"
        );
    }

    #[test]
    fn every_kind_round_trips_and_verifies() {
        let mut backends = vec![Backend::Blocking];
        if ringxfer::probe().available {
            backends.push(Backend::Uring);
        }
        let dtype: DType = "f8".parse().unwrap();
        let count = 300_000; // 2.4 MB: above the heap threshold, so the pool is used
        let spec = ArraySpec {
            dtype,
            count,
            bytes: count as usize * 8,
        };
        let mut data = Buffer::zeroed(spec.bytes).unwrap();
        fill_arange(dtype, data.bytes_mut());
        let crc = crc32fast::hash(data.bytes());
        let mut pre = Buffer::zeroed(spec.bytes).unwrap();
        for b in backends {
            let mut tx = Engine::new(b).unwrap();
            let mut rx = Engine::new(b).unwrap();
            for &kind in Receive::on(b) {
                for _ in 0..2 {
                    pre.bytes_mut().fill(0xAA);
                    let m = run_once(
                        &mut tx,
                        &mut rx,
                        kind,
                        &spec,
                        &SockBufArgs::default(),
                        data.bytes(),
                        pre.bytes_mut(),
                    )
                    .unwrap_or_else(|f| panic!("{b} {}: {}", kind.name(), f.message));
                    assert!(m.seconds > 0.0);
                    verify(m.got, &spec, crc, pre.bytes())
                        .unwrap_or_else(|e| panic!("{b} {}: {e}", kind.name()));
                }
            }
        }
    }

    #[test]
    fn a_wrong_array_does_not_verify() {
        let dtype: DType = "u1".parse().unwrap();
        let spec = ArraySpec {
            dtype,
            count: 4,
            bytes: 4,
        };
        let crc = crc32fast::hash(&[0, 1, 2, 3]);
        assert!(verify(Got::Naive(vec![0, 1, 2, 3]), &spec, crc, &[]).is_ok());
        assert!(verify(Got::Naive(vec![0, 1, 2, 4]), &spec, crc, &[]).is_err());
        let h = Header::new(dtype, &[2, 2], Order::C).unwrap();
        assert!(verify(Got::Into(h), &spec, crc, &[0, 1, 2, 3]).is_err());
    }
}
