//! What the subcommands measure besides time: per-thread CPU cost, progress while a transfer
//! runs (`-i`), socket buffer sizes (`--sndbuf` / `--rcvbuf`), and the engine's notices.
//!
//! **CPU.** [`CpuClock`] reads the calling thread's CPU figures from `/proc/thread-self`, with
//! no `unsafe` (`getrusage(RUSAGE_THREAD)` would need it, and no well-kept safe crate offers
//! per-thread user/system time): `schedstat`'s first field is the thread's time on a CPU in
//! nanoseconds, and `stat`'s utime/stime fields are the kernel's tick samples of where that
//! time went (in `USER_HZ` = 100 ticks per second on Linux, i.e. 10 ms resolution). A run's
//! user and system seconds are its on-CPU nanoseconds split in the proportion of the ticks
//! that fell in the run; a run too short to catch a tick (under ~10 ms) is split in the
//! proportion of the thread's ticks so far, as the kernel itself does for `getrusage`, and all
//! counted as user time when the thread has none yet (the kernel's rule too). So user +
//! system has nanosecond resolution; the split is as good as the tick sampling. Where
//! `schedstat` is missing (kernels without `CONFIG_SCHED_INFO`) both come from the ticks
//! alone, at 10 ms resolution. Each reading first yields the CPU (`sched_yield`, about a
//! microsecond) so that the kernel brings the running thread's runtime up to date.
//!
//! **Progress.** [`Progress`] counts bytes moved (fed by the transfer code) and reports them
//! from its own thread on stderr: an indicatif bar when stderr is a terminal, else one line per
//! interval like iperf3's (`[  1.00-  2.00 s]  3.9 GB  31.20 Gbit/s`), plus a last line for the
//! partial interval at the end (a reporter woken late on a loaded machine skips the boundaries
//! already passed, so such a line spans more than one interval). It exists only with `-i`: raw
//! transfers are then split into [`CHUNK`]-byte `send_from` / `recv_into` calls on the same
//! engine (the byte stream is identical) so the counter moves during a transfer; without `-i`
//! nothing is chunked and the measured path is the one-call path.

use std::io::{self, IsTerminal, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::size;

/// Bytes per `send_from` / `recv_into` call when progress is on.
pub const CHUNK: usize = 64 << 20;

/// Linux's `USER_HZ`: the unit of utime/stime in `/proc/*/stat` (fixed at 100 on Linux,
/// whatever the kernel's internal HZ).
const USER_HZ: f64 = 100.0;

// ---------------------------------------------------------------------------------------------
// CPU

/// User and system CPU seconds of one thread over one stretch of work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Cpu {
    /// Seconds in user mode.
    pub user_s: f64,
    /// Seconds in the kernel.
    pub system_s: f64,
}

impl Cpu {
    /// user + system.
    pub fn total(&self) -> f64 {
        self.user_s + self.system_s
    }
}

/// The CPU of both ends of a bench run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuPair {
    /// The sending thread (`null` where `/proc/thread-self` cannot be read).
    pub sender: Option<Cpu>,
    /// The receiving thread.
    pub receiver: Option<Cpu>,
}

/// Median CPU seconds per 10^9 bytes of each end, as in a summary's `cpu_s_per_gb`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuPerGb {
    /// Sender's user + system seconds per 10^9 bytes (median over runs).
    pub sender: Option<f64>,
    /// Receiver's.
    pub receiver: Option<f64>,
}

impl CpuPerGb {
    /// Medians over `runs` (each: bytes moved and both ends' CPU).
    pub fn median_of(runs: impl Iterator<Item = (f64, CpuPair)> + Clone) -> CpuPerGb {
        let per = |pick: fn(&CpuPair) -> Option<Cpu>| {
            let mut v: Vec<f64> = runs
                .clone()
                .filter(|(bytes, _)| *bytes > 0.0)
                .filter_map(|(bytes, c)| pick(&c).map(|c| c.total() / (bytes / 1e9)))
                .collect();
            v.sort_by(f64::total_cmp);
            (!v.is_empty()).then(|| crate::report::median(&v))
        };
        CpuPerGb {
            sender: per(|c| c.sender),
            receiver: per(|c| c.receiver),
        }
    }
}

/// A reading of the calling thread's CPU counters; [`CpuClock::cpu_since`] on the same thread
/// gives the [`Cpu`] spent in between.
#[derive(Debug, Clone, Copy)]
pub struct CpuClock {
    /// On-CPU nanoseconds (`schedstat`), when readable.
    ns: Option<u64>,
    /// utime ticks.
    utime: u64,
    /// stime ticks.
    stime: u64,
}

impl CpuClock {
    /// The calling thread's counters now; `None` when `/proc/thread-self/stat` cannot be read.
    pub fn now() -> Option<CpuClock> {
        // The kernel brings a running thread's sum_exec_runtime up to date only at scheduler
        // events (tick, sleep, yield); yielding first makes the reading current instead of up
        // to a tick old.
        thread::yield_now();
        let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
        let (utime, stime) = parse_stat(&stat)?;
        let ns = std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok());
        Some(CpuClock { ns, utime, stime })
    }

    /// The CPU the calling thread (the one that read `self`) spent since `self`.
    pub fn cpu_since(&self) -> Option<Cpu> {
        Some(self.cpu_until(&CpuClock::now()?))
    }

    /// The CPU spent from `self` to `end` (two readings of the same thread).
    pub fn cpu_until(&self, end: &CpuClock) -> Cpu {
        let du = end.utime.saturating_sub(self.utime);
        let ds = end.stime.saturating_sub(self.stime);
        let total = match (self.ns, end.ns) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e9,
            _ => {
                return Cpu {
                    user_s: du as f64 / USER_HZ,
                    system_s: ds as f64 / USER_HZ,
                };
            }
        };
        // Ticks of this stretch when it caught any, else the thread's so far.
        let (u, s) = if du + ds > 0 {
            (du, ds)
        } else {
            (end.utime, end.stime)
        };
        let user_s = if s == 0 {
            total
        } else if u == 0 {
            0.0
        } else {
            total * u as f64 / (u + s) as f64
        };
        Cpu {
            user_s,
            system_s: total - user_s,
        }
    }
}

/// utime and stime (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name (field
/// 2) is in parentheses and may hold spaces and parentheses, so fields are counted after the
/// last `)`.
fn parse_stat(s: &str) -> Option<(u64, u64)> {
    let rest = &s[s.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    // After ')': field 3 (state) is index 0, so utime (14) is index 11.
    let utime = f.nth(11)?.parse().ok()?;
    let stime = f.next()?.parse().ok()?;
    Some((utime, stime))
}

/// Runs `op` on the calling thread and measures its CPU.
pub fn with_cpu<T>(op: impl FnOnce() -> T) -> (T, Option<Cpu>) {
    let c = CpuClock::now();
    let r = op();
    (r, c.and_then(|c| c.cpu_since()))
}

/// One line of text for a [`Cpu`]: `cpu 0.012 user + 0.090 system s`.
pub fn cpu_text(c: Option<Cpu>) -> String {
    match c {
        Some(c) => format!("cpu {:.3} user + {:.3} system s", c.user_s, c.system_s),
        None => "cpu n/a".to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Progress

/// Where the reporter thread stands.
#[derive(Debug, Default)]
struct Stop {
    stopped: bool,
    /// When the transfer began (the connection is up): interval 0 starts here, like iperf3,
    /// not when the command started listening.
    begun: Option<Instant>,
    /// What is moving the bytes now, printed in each line (the bench: the backend).
    label: String,
}

/// Counts bytes moved and reports them on stderr from its own thread; see the module docs.
#[derive(Debug)]
pub struct Progress {
    bytes: Arc<AtomicU64>,
    stop: Arc<(Mutex<Stop>, Condvar)>,
    reporter: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts reporting every `interval` when given (`-i`); `None` otherwise. `total` is the
    /// byte count the bar fills up to (terminal only).
    pub fn start(interval: Option<Duration>, total: u64) -> Option<Progress> {
        let interval = interval?;
        let bytes = Arc::new(AtomicU64::new(0));
        let stop = Arc::new((Mutex::new(Stop::default()), Condvar::new()));
        let tty = io::stderr().is_terminal();
        let reporter = thread::Builder::new()
            .name("progress".into())
            .spawn({
                let (bytes, stop) = (Arc::clone(&bytes), Arc::clone(&stop));
                move || {
                    if tty {
                        bar(&bytes, &stop, total);
                    } else {
                        lines(&bytes, &stop, interval);
                    }
                }
            })
            .ok();
        Some(Progress {
            bytes,
            stop,
            reporter,
        })
    }

    /// Starts the interval clock (idempotent): call once the connection is up. The first
    /// [`Progress::add`] starts it too, for callers that never say.
    pub fn begin(&self) {
        let (m, cv) = &*self.stop;
        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
        if g.begun.is_none() {
            g.begun = Some(Instant::now());
            cv.notify_all();
        }
    }

    /// Names what moves the bytes from now on (the bench: the backend of the run), printed in
    /// every interval line that ends after this call.
    pub fn set_label(&self, label: &str) {
        let (m, _) = &*self.stop;
        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
        label.clone_into(&mut g.label);
    }

    /// Counts `n` more bytes moved.
    pub fn add(&self, n: u64) {
        self.begin();
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Stops the reporter after its last line (or the bar's last draw).
    pub fn finish(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        {
            let (m, cv) = &*self.stop;
            m.lock().unwrap_or_else(|p| p.into_inner()).stopped = true;
            cv.notify_all();
        }
        if let Some(h) = self.reporter.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Counts `n` bytes on `p`, when there is one.
pub fn count(p: Option<&Progress>, n: usize) {
    if let Some(p) = p {
        p.add(n as u64);
    }
}

/// Waits until `deadline` or until stopped; true when stopped.
fn wait_stop(stop: &(Mutex<Stop>, Condvar), deadline: Instant) -> bool {
    let (m, cv) = stop;
    let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if g.stopped {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        g = cv
            .wait_timeout(g, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

/// Waits until the transfer begins; `None` when stopped first.
fn wait_begin(stop: &(Mutex<Stop>, Condvar)) -> Option<Instant> {
    let (m, cv) = stop;
    let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if let Some(t) = g.begun {
            return Some(t);
        }
        if g.stopped {
            return None;
        }
        g = cv.wait(g).unwrap_or_else(|p| p.into_inner());
    }
}

/// The non-terminal reporter: one line per interval, and the partial last one. The clock
/// starts when the transfer begins.
fn lines(bytes: &AtomicU64, stop: &(Mutex<Stop>, Condvar), interval: Duration) {
    let Some(t0) = wait_begin(stop) else {
        return;
    };
    let (mut from, mut last) = (0.0f64, 0u64);
    let mut k = 1u32;
    loop {
        let stopped = wait_stop(stop, t0 + interval * k);
        let now = t0.elapsed().as_secs_f64();
        let b = bytes.load(Ordering::Relaxed);
        // The partial last interval only when something moved in it.
        if !stopped || b > last {
            let label = stop
                .0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .label
                .clone();
            let _ = writeln!(
                io::stderr().lock(),
                "{}",
                interval_line(from, now, b - last, &label)
            );
        }
        if stopped {
            return;
        }
        (from, last) = (now, b);
        k = next_tick(now, interval.as_secs_f64());
    }
}

/// The number of the interval boundary to report at next, after a report at `now` seconds:
/// the next boundary at least half an interval away. On time that is the following one; a
/// reporter woken late (a loaded machine) skips the boundaries already passed or about to
/// pass, so no line spans (next to) nothing — one that did would print as `[1.23-1.23 s]`.
fn next_tick(now: f64, interval: f64) -> u32 {
    ((now / interval) + 0.5).ceil() as u32
}

/// `[  1.00-  2.00 s]  3.9 GB  31.20 Gbit/s`, with a label after the span when there is one:
/// `[  1.00-  2.00 s]  uring  3.9 GB  31.20 Gbit/s`.
pub fn interval_line(from: f64, to: f64, bytes: u64, label: &str) -> String {
    let dt = to - from;
    let gbit = if dt > 0.0 {
        bytes as f64 * 8.0 / dt / 1e9
    } else {
        0.0
    };
    let label = if label.is_empty() {
        String::new()
    } else {
        format!("  {label}")
    };
    format!(
        "[{from:6.2}-{to:6.2} s]{label}  {}  {gbit:.2} Gbit/s",
        human_bytes(bytes)
    )
}

/// `3.9 GB`, `512.0 MB`, `12.0 kB`, `17 B` (powers of 10).
pub fn human_bytes(b: u64) -> String {
    let f = b as f64;
    if f >= 1e9 {
        format!("{:.1} GB", f / 1e9)
    } else if f >= 1e6 {
        format!("{:.1} MB", f / 1e6)
    } else if f >= 1e3 {
        format!("{:.1} kB", f / 1e3)
    } else {
        format!("{b} B")
    }
}

/// The terminal reporter: an indicatif bar, redrawn ten times a second.
fn bar(bytes: &AtomicU64, stop: &(Mutex<Stop>, Condvar), total: u64) {
    let pb = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {decimal_bytes}/{decimal_total_bytes} \
         {decimal_bytes_per_sec}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    let tick = Duration::from_millis(100);
    loop {
        let stopped = wait_stop(stop, Instant::now() + tick);
        pb.set_position(bytes.load(Ordering::Relaxed));
        if stopped {
            pb.finish();
            return;
        }
    }
}

/// `engine.send_from(sock, data)`, in [`CHUNK`]-byte calls counted on `p` when there is one.
pub fn send_chunked(
    engine: &mut ringxfer::Engine,
    sock: &impl AsFd,
    data: &[u8],
    p: Option<&Progress>,
) -> ringxfer::Result<()> {
    if let Some(p) = p {
        p.begin();
    }
    match p {
        None => engine.send_from(sock, data),
        Some(p) => {
            // Error counts are of the whole array, not of the chunk.
            let whole = data.len() as u64;
            for (i, c) in data.chunks(CHUNK).enumerate() {
                let before = (i * CHUNK) as u64;
                engine
                    .send_from(sock, c)
                    .map_err(|e| e.rebased(before, whole))?;
                p.add(c.len() as u64);
            }
            Ok(())
        }
    }
}

/// `engine.recv_into(sock, buf)`, in [`CHUNK`]-byte calls counted on `p` when there is one.
pub fn recv_chunked(
    engine: &mut ringxfer::Engine,
    sock: &impl AsFd,
    buf: &mut [u8],
    p: Option<&Progress>,
) -> ringxfer::Result<()> {
    if let Some(p) = p {
        p.begin();
    }
    match p {
        None => engine.recv_into(sock, buf),
        Some(p) => {
            // Error counts are of the whole array, not of the chunk.
            let whole = buf.len() as u64;
            for (i, c) in buf.chunks_mut(CHUNK).enumerate() {
                let (before, n) = ((i * CHUNK) as u64, c.len() as u64);
                engine
                    .recv_into(sock, c)
                    .map_err(|e| e.rebased(before, whole))?;
                p.add(n);
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Socket buffers

/// `--sndbuf` / `--rcvbuf`.
#[derive(Debug, Args, Clone, Copy, Default)]
pub struct SockBufArgs {
    /// SO_SNDBUF of the sockets, e.g. 4MiB (Linux doubles it for bookkeeping, and reports the
    /// doubled value, capped by net.core.wmem_max) [default: the kernel's autotuning].
    #[arg(long, value_parser = size::parse_size, value_name = "BYTES")]
    pub sndbuf: Option<u64>,
    /// SO_RCVBUF of the sockets, e.g. 4MiB; set on a listening socket before listen() so the
    /// accepted connection inherits it and the window scale fits (capped by
    /// net.core.rmem_max) [default: the kernel's autotuning].
    #[arg(long, value_parser = size::parse_size, value_name = "BYTES")]
    pub rcvbuf: Option<u64>,
}

/// SO_SNDBUF and SO_RCVBUF of a socket as the kernel reports them.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SockBufs {
    /// Effective SO_SNDBUF in bytes.
    pub sndbuf: usize,
    /// Effective SO_RCVBUF in bytes.
    pub rcvbuf: usize,
}

impl SockBufs {
    /// What the kernel reports for `sock` (zeros where it will not say).
    pub fn of(sock: &impl AsFd) -> SockBufs {
        let s = SockRef::from(sock);
        SockBufs {
            sndbuf: s.send_buffer_size().unwrap_or(0),
            rcvbuf: s.recv_buffer_size().unwrap_or(0),
        }
    }
}

impl SockBufArgs {
    /// Sets the requested sizes on a connected `sock` (a Unix socket: there is no listen()
    /// or connect() of ours to set them before).
    pub fn apply_to(&self, sock: &impl AsFd) -> io::Result<()> {
        self.apply(sock)
    }

    /// Sets the requested sizes on `sock`.
    pub fn apply(&self, sock: &impl AsFd) -> io::Result<()> {
        let s = SockRef::from(sock);
        let size = |b: u64| usize::try_from(b).unwrap_or(usize::MAX);
        if let Some(b) = self.sndbuf {
            s.set_send_buffer_size(size(b))?;
        }
        if let Some(b) = self.rcvbuf {
            s.set_recv_buffer_size(size(b))?;
        }
        Ok(())
    }

    /// A listening socket on `addr` (the first of its addresses that binds), with SO_REUSEADDR
    /// as std's, and the buffer sizes set before listen().
    pub fn listen(&self, addr: &str) -> io::Result<TcpListener> {
        let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address");
        for a in addr.to_socket_addrs()? {
            match self.listen_on(a) {
                Ok(l) => return Ok(l),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn listen_on(&self, a: SocketAddr) -> io::Result<TcpListener> {
        let s = Socket::new(Domain::for_address(a), Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        self.apply(&s)?;
        s.bind(&a.into())?;
        s.listen(1024)?;
        Ok(s.into())
    }

    /// Connects to `a` within `timeout`, the buffer sizes set before connect().
    pub fn connect(&self, a: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        let s = Socket::new(Domain::for_address(*a), Type::STREAM, Some(Protocol::TCP))?;
        self.apply(&s)?;
        s.connect_timeout(&(*a).into(), timeout)?;
        Ok(s.into())
    }
}

// ---------------------------------------------------------------------------------------------
// Notices

/// Says each of `engine`'s notices once per process on stderr (`ringxfer CMD: note: ...`),
/// skipping those already said (and the fallback reason, said when the engine was made).
pub fn say_notices(cmd: &str, engine: &ringxfer::Engine) {
    static SAID: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|p| p.into_inner());
    for n in engine.notices() {
        if engine.fallback_reason() == Some(n.as_str()) || said.contains(&n) {
            continue;
        }
        eprintln!("ringxfer {cmd}: note: {n}");
        said.push(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields() {
        let line = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 111 222 0 0 20 0 1 0 9";
        assert_eq!(parse_stat(line), Some((111, 222)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn cpu_split() {
        let a = CpuClock {
            ns: Some(0),
            utime: 10,
            stime: 0,
        };
        // 1 s on CPU, 1 user and 3 system ticks in the stretch.
        let b = CpuClock {
            ns: Some(1_000_000_000),
            utime: 11,
            stime: 3,
        };
        let c = a.cpu_until(&b);
        assert!((c.user_s - 0.25).abs() < 1e-9 && (c.system_s - 0.75).abs() < 1e-9);
        // No tick in the stretch: the thread's proportion so far.
        let d = CpuClock {
            ns: Some(1_000_000_000 + 4_000_000),
            ..b
        };
        let c = b.cpu_until(&d);
        assert!((c.total() - 0.004).abs() < 1e-12);
        assert!((c.system_s / c.total() - 3.0 / 14.0).abs() < 1e-9);
        // No schedstat: ticks alone.
        let e = CpuClock {
            ns: None,
            utime: 1,
            stime: 2,
        };
        let f = CpuClock {
            ns: None,
            utime: 2,
            stime: 5,
        };
        assert_eq!(
            e.cpu_until(&f),
            Cpu {
                user_s: 0.01,
                system_s: 0.03
            }
        );
    }

    #[test]
    fn this_thread_burns_cpu() {
        // A fixed amount of work, not of wall time: under load a 30 ms spin may get only a
        // few ms of CPU, and this must hold on a busy CI machine.
        let (_, c) = with_cpu(|| {
            let mut x = 0u64;
            for i in 0..100_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            x
        });
        let c = c.expect("/proc/thread-self readable");
        assert!(c.total() > 0.01 && c.total() < 10.0, "{c:?}");
    }

    #[test]
    fn late_reports_skip_passed_boundaries() {
        // On time: boundary 3 after boundary 2.
        assert_eq!(next_tick(0.040, 0.02), 3);
        assert_eq!(next_tick(0.0401, 0.02), 3);
        // Woken 1.4 intervals late, at 0.068: boundaries 3 (0.06, passed) and 4 (0.08, in
        // 0.6 intervals) -> 4; at 0.072, 0.08 is only 0.4 intervals away -> 5.
        assert_eq!(next_tick(0.068, 0.02), 4);
        assert_eq!(next_tick(0.072, 0.02), 5);
        for i in 0..1000 {
            let now = i as f64 * 0.0007;
            assert!(
                next_tick(now, 0.02) as f64 * 0.02 >= now + 0.01 - 1e-12,
                "{now}"
            );
        }
    }

    #[test]
    fn lines_format() {
        assert_eq!(
            interval_line(1.0, 2.0, 3_900_000_000, ""),
            "[  1.00-  2.00 s]  3.9 GB  31.20 Gbit/s"
        );
        assert_eq!(
            interval_line(0.0, 0.5, 1_000_000_000, "uring"),
            "[  0.00-  0.50 s]  uring  1.0 GB  16.00 Gbit/s"
        );
        assert_eq!(human_bytes(17), "17 B");
        assert_eq!(human_bytes(512_000_000), "512.0 MB");
    }
}
