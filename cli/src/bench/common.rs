//! What the bench modes and their runner share: the backends `--backend` selects, the clock
//! of one run, the loopback connections, the host block, the `--json` report, the ratios and
//! the cells of the text tables.

use std::net::{TcpListener, TcpStream};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use ringxfer::dtype::fill_arange;
use ringxfer::{Backend, Engine};
use serde::Serialize;

use super::args::{BenchArgs, BenchBackend};
use super::record::{Label, Spread};
use crate::args::ArraySpec;
use crate::buffer::Buffer;
use crate::failure::Failure;
use crate::measure::{Cpu, CpuPair, SockBufArgs, SockBufs, with_cpu};

/// The socket buffers of the report, before the first run fills in the effective sizes.
pub(crate) fn requested_bufs(a: &BenchArgs) -> BenchSockBufs {
    BenchSockBufs {
        sndbuf_requested: a.sockbufs.sndbuf,
        rcvbuf_requested: a.sockbufs.rcvbuf,
        ..BenchSockBufs::default()
    }
}

/// What one run measured: its seconds (from the earlier start to the later end of its two
/// sides), both threads' CPU, the effective buffer sizes of its two ends' sockets (the
/// sending / spawned side's first), and what the mode's receiving side got or found (`T`).
#[derive(Debug)]
pub(crate) struct Measured<T> {
    pub(crate) seconds: f64,
    pub(crate) cpu: CpuPair,
    pub(crate) bufs: (SockBufs, SockBufs),
    pub(crate) got: T,
}

impl<T> Measured<T> {
    /// The same run with `f` applied to what was got.
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> Measured<U> {
        Measured {
            seconds: self.seconds,
            cpu: self.cpu,
            bufs: self.bufs,
            got: f(self.got),
        }
    }
}

/// One run over a fresh loopback TCP connection ([`loopback_pair`]): `spawned` runs on a new
/// thread with the client socket, `here` on the calling thread with the server socket, both
/// under the clock after a barrier; `spawned`'s end is when it returns, `here` returns its own
/// end instant with what it got. `names` name the two sides in a failure (`spawned`'s first;
/// its CPU is reported as the sender's).
///
/// Each side owns its socket and closes it when it returns, so a side that fails ends the
/// other's wait (EOF or a reset) instead of leaving it blocked.
pub(crate) fn over_loopback<T>(
    sockbufs: &SockBufArgs,
    names: [&str; 2],
    spawned: impl FnOnce(&TcpStream) -> ringxfer::Result<()> + Send,
    here: impl FnOnce(&TcpStream) -> ringxfer::Result<(Instant, T)>,
) -> Result<Measured<T>, Failure> {
    let (client, server) = loopback_pair(sockbufs)?;
    let bufs = (SockBufs::of(&client), SockBufs::of(&server));
    let barrier = Barrier::new(2);
    let (sent, got) = thread::scope(|s| {
        let barrier = &barrier;
        let side = s.spawn(move || {
            let sock = client;
            clocked(barrier, || spawned(&sock).map(|()| (Instant::now(), ())))
        });
        let got = {
            let sock = server;
            clocked(barrier, || here(&sock))
        };
        (side.join(), got)
    });
    let (seconds, got, cpu) = joined(names, sent, got)?;
    Ok(Measured {
        seconds,
        cpu,
        bufs,
        got,
    })
}

/// One side of a run under the clock: start, end, what it returned, its CPU.
type Clocked<T> = (Instant, Instant, T, Option<Cpu>);

/// Waits at the barrier, then runs `op` under the clock: its start instant, the end instant
/// and value `op` returned, and the CPU the calling thread spent.
fn clocked<T>(
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
/// the calling thread's side returned, and both threads' CPU (the spawned side's as the
/// sender's); or why a side failed (both when both did), each named by `names` (spawned,
/// calling).
fn joined<T>(
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

/// The kind cell of a row: the kind's name, or nothing.
pub(crate) fn kind_cell(kind: Option<Label>) -> &'static str {
    kind.map_or("", |k| k.name)
}

/// A summary's spread, zeros where the mode has none.
pub(crate) fn spread_or_zero(s: Option<Spread>) -> Spread {
    s.unwrap_or_else(|| Spread::of("", []))
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

/// `n` consecutive slices of `spec.bytes` bytes of one arange pattern of `spec.dtype` (the
/// distinct payloads of `--count-arrays` and `--pingpong`).
///
/// # Errors
/// A usage error when `n` slices do not fit in memory's address range.
pub(crate) fn arange_slices(spec: &ArraySpec, n: usize) -> Result<Buffer, Failure> {
    let total = spec
        .bytes
        .checked_mul(n)
        .ok_or_else(|| Failure::usage(format!("--size {} is too large", spec.bytes)))?;
    let mut payloads = Buffer::zeroed(total)?;
    fill_arange(spec.dtype, payloads.bytes_mut());
    Ok(payloads)
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
