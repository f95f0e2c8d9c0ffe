//! What the bench modes share: the backends `--backend` selects, the engines, the loop over
//! repeats, backends and kinds (the order alternates), the clock of one run, the loopback
//! connections, the host block, the statistics and the cells of the text tables.

use std::net::{TcpListener, TcpStream};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use ringxfer::{Backend, Engine, Options};
use serde::Serialize;

use super::args::{BenchArgs, BenchBackend};
use crate::failure::Failure;
use crate::measure::{Cpu, CpuPair, Progress, SockBufArgs, SockBufs, say_notices, with_cpu};
use crate::report::median;

/// One sending and one receiving engine per backend, alive across all repeats.
pub(crate) fn engine_pairs(
    backends: &[Backend],
    opts: &Options,
) -> Result<Vec<(Backend, Engine, Engine)>, Failure> {
    let mut engines = Vec::new();
    for &b in backends {
        let o = Options {
            backend: b,
            ..opts.clone()
        };
        let tx = Engine::with_options(o.clone())?;
        let rx = Engine::with_options(o)?;
        engines.push((b, tx, rx));
    }
    Ok(engines)
}

/// The socket buffers of the report, before the first run fills in the effective sizes.
pub(crate) fn requested_bufs(a: &BenchArgs) -> BenchSockBufs {
    BenchSockBufs {
        sndbuf_requested: a.sockbufs.sndbuf,
        rcvbuf_requested: a.sockbufs.rcvbuf,
        ..BenchSockBufs::default()
    }
}

/// Runs every repeat: per repeat each backend (the order alternates between repeats), and
/// within a backend each of `kinds(backend)` (the order alternates too). `measure` runs one
/// transfer (its failure ends the bench, named by backend, kind and repeat); then both
/// engines' notices are said and `record` gets the backend, the kind, the 1-based repeat and
/// what `measure` returned.
pub(crate) fn for_each_run<'k, K: Copy + 'k, M>(
    engines: &mut [(Backend, Engine, Engine)],
    repeat: u32,
    kinds: impl Fn(Backend) -> &'k [K],
    kind_name: impl Fn(K) -> &'static str,
    mut measure: impl FnMut(&mut Engine, &mut Engine, K) -> Result<M, Failure>,
    mut record: impl FnMut(Backend, K, u32, M),
    progress: Option<&Progress>,
) -> Result<(), Failure> {
    for r in 0..repeat {
        let n = engines.len();
        for i in 0..n {
            let (backend, tx, rx) = &mut engines[(i + r as usize) % n];
            let ks = kinds(*backend);
            for j in 0..ks.len() {
                let kind = ks[(j + r as usize) % ks.len()];
                if let Some(p) = progress {
                    p.set_label(&backend.to_string());
                }
                let m = measure(tx, rx, kind).map_err(|f| {
                    Failure::runtime(format!(
                        "{backend} {} run {}: {}",
                        kind_name(kind),
                        r + 1,
                        f.message
                    ))
                })?;
                say_notices("bench", tx);
                say_notices("bench", rx);
                record(*backend, kind, r + 1, m);
            }
        }
    }
    Ok(())
}

/// One side of a run under the clock: start, end, what it returned, its CPU.
pub(crate) type Clocked<T> = (Instant, Instant, T, Option<Cpu>);

/// Waits at the barrier, then runs `op` under the clock: its start instant, the end instant
/// and value `op` returned, and the CPU the calling thread spent.
pub(crate) fn clocked<T>(
    barrier: &Barrier,
    op: impl FnOnce() -> ringxfer::Result<(Instant, T)>,
) -> ringxfer::Result<Clocked<T>> {
    barrier.wait();
    let (r, cpu) = with_cpu(|| {
        let start = Instant::now();
        op().map(|(end, v)| (start, end, v))
    });
    r.map(|(s, e, v)| (s, e, v, cpu))
}

/// Joins the two sides of a run: its seconds (from the earlier start to the later end), what
/// the receiver returned, and both threads' CPU; or why a side failed (both when both did).
pub(crate) fn joined<T>(
    sent: thread::Result<ringxfer::Result<Clocked<()>>>,
    got: ringxfer::Result<Clocked<T>>,
) -> Result<(f64, T, CpuPair), Failure> {
    joined_as(["send", "recv"], sent, got)
}

/// [`joined`] for sides named otherwise than send and recv: `names` are the spawned side's
/// (`sent`, reported as the sender's CPU) and the calling thread's (`got`, the receiver's).
pub(crate) fn joined_as<T>(
    names: [&str; 2],
    sent: thread::Result<ringxfer::Result<Clocked<()>>>,
    got: ringxfer::Result<Clocked<T>>,
) -> Result<(f64, T, CpuPair), Failure> {
    let [send, recv] = names;
    let sent = sent.map_err(|_| Failure::runtime(format!("the {send} thread panicked")))?;
    match (sent, got) {
        (Ok((s0, s1, (), scpu)), Ok((r0, r1, got, rcpu))) => Ok((
            (s1.max(r1) - s0.min(r0)).as_secs_f64(),
            got,
            CpuPair {
                sender: scpu,
                receiver: rcpu,
            },
        )),
        (Ok(_), Err(e)) => Err(Failure::runtime(format!("{recv}: {e}"))),
        (Err(e), Ok(_)) => Err(Failure::runtime(format!("{send}: {e}"))),
        (Err(s), Err(r)) => Err(Failure::runtime(format!("{recv}: {r}; {send}: {s}"))),
    }
}

/// The `verified` cell of a run's row: `yes`, or `NO (why)`.
pub(crate) fn verified_cell(error: Option<&String>) -> String {
    match error {
        None => "yes".to_owned(),
        Some(e) => format!("NO ({e})"),
    }
}

/// The plain verdict under the main job's table: `uring 1.38× blocking, median of 5 runs each`
/// (the ratio of the medians, two decimals); `None` without a ratio (one backend measured).
pub(crate) fn verdict(uring_over_blocking: Option<f64>, runs_each: usize) -> Option<String> {
    let r = uring_over_blocking?;
    let runs = if runs_each == 1 { "run" } else { "runs" };
    Some(format!(
        "uring {r:.2}× blocking, median of {runs_each} {runs} each"
    ))
}

/// A CPU seconds per GB cell of the summary table.
pub(crate) fn per_gb_cell(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.4}"))
}

/// `x / y` when both are known and `y` is positive.
pub(crate) fn ratio(x: Option<f64>, y: Option<f64>) -> Option<f64> {
    match (x, y) {
        (Some(x), Some(y)) if y > 0.0 => Some(x / y),
        _ => None,
    }
}

/// A ratio as printed after the summary table.
pub(crate) fn ratio_cell(r: Option<f64>) -> String {
    r.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.3}"))
}

/// The bench's result: a failure when any of `verified` is false.
pub(crate) fn all_verified(verified: impl Iterator<Item = bool>) -> Result<(), Failure> {
    let (mut bad, mut total) = (0, 0);
    for v in verified {
        total += 1;
        bad += usize::from(!v);
    }
    if bad > 0 {
        return Err(Failure::runtime(format!(
            "{bad} of {total} runs did not verify"
        )));
    }
    Ok(())
}

/// The `--json` report of every bench mode: the mode's own fields (`M`, flattened into the
/// top level), then what all modes report.
#[derive(Debug, Serialize)]
pub(crate) struct Report<M, R, S> {
    /// The mode's own fields.
    #[serde(flatten)]
    pub(crate) mode: M,
    /// Runs per backend (and kind).
    pub(crate) repeat: u32,
    /// The uring knobs, when uring was measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) uring_tuning: Option<ringxfer::UringTuning>,
    /// Why uring was skipped with `--backend both`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) uring_unavailable: Option<String>,
    /// The machine.
    pub(crate) host: Host,
    /// Socket buffer sizes, asked and effective.
    pub(crate) socket_buffers: BenchSockBufs,
    /// Every run, in the order run.
    pub(crate) runs: Vec<R>,
    /// Per backend (and kind): median, min, max.
    pub(crate) summary: Vec<S>,
}

/// Effective socket buffer sizes of both ends of a bench connection (the kernel's figures,
/// read once connected, before the first transfer).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct BenchSockBufs {
    /// `--sndbuf` as asked, when given.
    pub(crate) sndbuf_requested: Option<u64>,
    /// `--rcvbuf` as asked, when given.
    pub(crate) rcvbuf_requested: Option<u64>,
    /// The sending socket's.
    pub(crate) sender: SockBufs,
    /// The receiving socket's.
    pub(crate) receiver: SockBufs,
}

/// The machine the bench ran on.
#[derive(Debug, Serialize)]
pub(crate) struct Host {
    kernel_release: &'static str,
    cpus: usize,
    probe: &'static ringxfer::Probe,
}

impl Host {
    /// This machine.
    pub(crate) fn here() -> Host {
        let probe = ringxfer::probe();
        Host {
            kernel_release: &probe.kernel_release,
            cpus: thread::available_parallelism().map_or(0, |n| n.get()),
            probe,
        }
    }
}

/// The backends `--backend` selects, uring first, and why uring was dropped from `both`.
///
/// # Errors
/// With `--backend uring` when io_uring is unavailable.
pub(crate) fn select_backends(
    which: BenchBackend,
) -> Result<(Vec<Backend>, Option<String>), Failure> {
    // Creating a uring engine is the real test: the probe's small ring can pass where the
    // full-size one fails (e.g. ENOMEM under a small RLIMIT_MEMLOCK).
    let uring_error = || {
        Engine::new(Backend::Uring).err().map(|e| match e {
            ringxfer::Error::UringUnavailable(_) => e.to_string(),
            _ => format!("io_uring backend unavailable: {e}"),
        })
    };
    Ok(match which {
        BenchBackend::Uring => match uring_error() {
            Some(e) => return Err(Failure::runtime(e)),
            None => (vec![Backend::Uring], None),
        },
        BenchBackend::Blocking => (vec![Backend::Blocking], None),
        BenchBackend::Both => match uring_error() {
            Some(e) => {
                eprintln!("ringxfer bench: {e}; measuring the blocking backend only");
                (vec![Backend::Blocking], Some(e))
            }
            None => (vec![Backend::Uring, Backend::Blocking], None),
        },
    })
}

/// A CPU figure for the run table: user + system seconds.
pub(crate) fn cpu_cell(c: Option<Cpu>) -> String {
    c.map_or_else(|| "n/a".to_owned(), |c| format!("{:.3}", c.total()))
}

/// Median, min and max of `values` (zeros when empty).
pub(crate) fn stats(values: impl IntoIterator<Item = f64>) -> (f64, f64, f64) {
    let mut v: Vec<f64> = values.into_iter().collect();
    v.sort_by(f64::total_cmp);
    (
        median(&v),
        v.first().copied().unwrap_or(0.0),
        v.last().copied().unwrap_or(0.0),
    )
}

/// A connected loopback TCP pair `(client, server)`, set up by one thread (loopback connect
/// completes from the backlog), with `--sndbuf` / `--rcvbuf` set on both sockets before the
/// connection is made (on the listener for the accepted one).
pub(crate) fn loopback_pair(bufs: &SockBufArgs) -> Result<(TcpStream, TcpStream), Failure> {
    let io = |what: &str, e: std::io::Error| Failure::runtime(format!("{what}: {e}"));
    let listener: TcpListener = bufs
        .listen("127.0.0.1:0")
        .map_err(|e| io("bind 127.0.0.1:0", e))?;
    let addr = listener.local_addr().map_err(|e| io("local_addr", e))?;
    let client = bufs
        .connect(&addr, Duration::from_secs(10))
        .map_err(|e| io("connect", e))?;
    let (server, _) = listener.accept().map_err(|e| io("accept", e))?;
    Ok((client, server))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_line() {
        assert_eq!(
            verdict(Some(1.3849), 5).as_deref(),
            Some("uring 1.38× blocking, median of 5 runs each")
        );
        assert_eq!(
            verdict(Some(0.5), 1).as_deref(),
            Some("uring 0.50× blocking, median of 1 run each")
        );
        assert_eq!(verdict(None, 5), None);
    }
}
