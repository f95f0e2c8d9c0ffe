//! Helpers shared by the integration tests (each `tests/*.rs` file is its own crate and
//! includes this module with `mod util;`, so not every helper is used by every file).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytemuck::Pod;
use ringxfer::{Backend, Engine, Options, RecvOp, RegisterPolicy, SendOp, UringTuning};
use socket2::{Domain, Protocol, Socket, Type};

/// Set to `1` to make a missing io_uring a test failure instead of a skip (CI machines that are
/// known to have it).
pub const REQUIRE_URING_ENV: &str = "RINGXFER_TEST_REQUIRE_URING";

/// True when io_uring can be used here. When it cannot, prints why (so a skipped uring
/// variant is visible with `--nocapture`) and returns false — or panics when
/// `RINGXFER_TEST_REQUIRE_URING=1`. The same idea as tokio-rs/io-uring's `require!`.
pub fn uring_available() -> bool {
    let p = ringxfer::probe();
    if p.available {
        return true;
    }
    let reason = p.reason.as_deref().unwrap_or("no reason given");
    if std::env::var(REQUIRE_URING_ENV).is_ok_and(|v| v == "1") {
        panic!("io_uring unavailable but {REQUIRE_URING_ENV}=1: {reason}");
    }
    eprintln!("skipped: io_uring unavailable: {reason}");
    false
}

/// Returns from the enclosing test (a skip) when io_uring is unavailable.
#[macro_export]
macro_rules! require_uring {
    () => {
        if !$crate::util::uring_available() {
            return;
        }
    };
}

/// Expands each test body once per backend:
///
/// ```ignore
/// both_backends! {
///     /// doc
///     #[ignore = "slow"]
///     fn name(backend) { ... uses `backend: Backend` ... }
/// }
/// ```
///
/// becomes `mod name { #[test] fn blocking() {..} #[test] fn uring() {..} }`, so
/// `cargo test name::uring` selects one variant. The uring variant is skipped (with the
/// reason printed) when io_uring is unavailable.
#[macro_export]
macro_rules! both_backends {
    ($( $(#[$meta:meta])* fn $name:ident($backend:ident) $body:block )*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                $(#[$meta])*
                #[test]
                fn blocking() {
                    let $backend = ::ringxfer::Backend::Blocking;
                    $body
                }

                $(#[$meta])*
                #[test]
                fn uring() {
                    $crate::require_uring!();
                    let $backend = ::ringxfer::Backend::Uring;
                    $body
                }
            }
        )*
    };
}

/// uring options with the given ops, segment size and chain length, registering the array
/// even for one-shot calls (`RegisterPolicy::Always`) so the fixed-buffer ops are exercised.
pub fn tuned(send_op: SendOp, recv_op: RecvOp, segment_bytes: u32, chain_sqes: u32) -> Options {
    Options {
        backend: Backend::Uring,
        uring: UringTuning {
            send_op,
            recv_op,
            segment_bytes,
            chain_sqes,
            ..UringTuning::default()
        },
        register: RegisterPolicy::Always,
        ..Options::default()
    }
}

/// uring options with the given ops and the default segment size and chain length,
/// registering the array even for one-shot calls (`RegisterPolicy::Always`): the
/// fixed-buffer and zero-copy opcodes.
pub fn fixed_ops(send_op: SendOp, recv_op: RecvOp) -> Options {
    Options {
        backend: Backend::Uring,
        uring: UringTuning {
            send_op,
            recv_op,
            ..UringTuning::default()
        },
        register: RegisterPolicy::Always,
        ..Options::default()
    }
}

/// Options for `backend` that put a uring transfer through the ring in several chains (64 KiB
/// segments, 4 per chain: many CQEs per transfer), with the idle timeout `idle` (its probe
/// cancels make `MSG_WAITALL` requests complete short; every uring wait is a timed one).
pub fn small_chains(backend: Backend, idle: Option<Duration>) -> Options {
    Options {
        backend,
        idle_timeout: idle,
        uring: UringTuning {
            segment_bytes: 64 << 10,
            chain_sqes: 4,
            ..UringTuning::default()
        },
        ..Options::default()
    }
}

/// Options for `backend`, everything else default.
pub fn opts(backend: Backend) -> Options {
    Options {
        backend,
        ..Options::default()
    }
}

/// An engine for `opts`; panics with the error (the uring variants only run when the probe
/// said io_uring works, so a failure here is a bug).
pub fn engine(opts: &Options) -> Engine {
    let e = Engine::with_options(opts.clone())
        .unwrap_or_else(|e| panic!("Engine::with_options({:?}): {e}", opts.backend));
    if opts.backend != Backend::Auto {
        assert_eq!(
            e.backend().name(),
            opts.backend.to_string(),
            "engine runs the requested backend"
        );
    }
    e
}

// ---------------------------------------------------------------------------------------------
// Data patterns
// ---------------------------------------------------------------------------------------------

/// xorshift64* step: a cheap, full-period, never-zero sequence.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// Fills `bytes` with a pseudo-random pattern determined by `seed`: not all-zero, and
/// different from one element (and one position) to the next, so a dropped, duplicated or
/// misplaced piece of the stream is caught by a byte comparison.
pub fn fill_pattern(bytes: &mut [u8], seed: u64) {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut chunks = bytes.chunks_exact_mut(8);
    for c in &mut chunks {
        c.copy_from_slice(&next(&mut s).to_le_bytes());
    }
    let tail = chunks.into_remainder();
    let last = next(&mut s).to_le_bytes();
    tail.copy_from_slice(&last[..tail.len()]);
}

/// Fills `bytes` with the complement of [`fill_pattern`] for the same seed: every byte
/// differs from the expected one, so a receive that skips any byte is caught.
pub fn fill_poison(bytes: &mut [u8], seed: u64) {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut chunks = bytes.chunks_exact_mut(8);
    for c in &mut chunks {
        c.copy_from_slice(&(!next(&mut s)).to_le_bytes());
    }
    let tail = chunks.into_remainder();
    let last = (!next(&mut s)).to_le_bytes();
    tail.copy_from_slice(&last[..tail.len()]);
}

/// A `Vec<T>` of `len` elements holding [`fill_pattern`]`(seed)`.
pub fn pattern_vec<T: Pod>(len: usize, seed: u64) -> Vec<T> {
    let mut v = vec![T::zeroed(); len];
    fill_pattern(bytemuck::cast_slice_mut(&mut v), seed);
    v
}

/// A `Vec<T>` of `len` elements holding [`fill_poison`]`(seed)`.
pub fn poison_vec<T: Pod>(len: usize, seed: u64) -> Vec<T> {
    let mut v = vec![T::zeroed(); len];
    fill_poison(bytemuck::cast_slice_mut(&mut v), seed);
    v
}

/// Asserts `got == want` byte for byte; on failure names the first differing byte and how
/// many differ, instead of printing megabytes.
#[track_caller]
pub fn assert_bytes_eq(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    if got == want {
        return;
    }
    let first = got.iter().zip(want).position(|(a, b)| a != b).unwrap();
    let count = got.iter().zip(want).filter(|(a, b)| a != b).count();
    let end = (first + 16).min(got.len());
    panic!(
        "{what}: {count} of {} bytes differ; first at byte {first}: got {:02x?}, want {:02x?}",
        got.len(),
        &got[first..end],
        &want[first..end],
    );
}

/// `(transferred, expected, timeout_ms)` of the `Error::TimedOut` in `r`; panics naming `what`
/// on any other result.
#[track_caller]
pub fn timed_out<T: std::fmt::Debug>(r: ringxfer::Result<T>, what: &str) -> (u64, u64, u64) {
    match r {
        Err(ringxfer::Error::TimedOut {
            transferred,
            expected,
            timeout_ms,
        }) => (transferred, expected, timeout_ms),
        other => panic!("{what}: want TimedOut, got {other:?}"),
    }
}

/// `assert_bytes_eq` for typed slices.
#[track_caller]
pub fn assert_same<T: Pod>(got: &[T], want: &[T], what: &str) {
    assert_bytes_eq(bytemuck::cast_slice(got), bytemuck::cast_slice(want), what);
}

/// CRC-32 (zlib polynomial) of `bytes`, computed in 64 MiB chunks.
pub fn crc32_chunked(bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for c in bytes.chunks(64 << 20) {
        h.update(c);
    }
    h.finalize()
}

/// The bytes stream `i` of `n` carries for a striped framed array (`payload` described by
/// `header`, array id `id`), as `Engine::send_array_striped` sends them: the stripe prefix,
/// on stream 0 the header, the stripe, its trailer with the stripe's CRC-32. Built by hand so
/// a test can cut or alter them.
pub fn striped_wire(
    header: &ringxfer::Header,
    payload: &[u8],
    (i, n, id): (usize, usize, u64),
) -> Vec<u8> {
    let r = &ringxfer::stripes(payload.len() as u64, n)[i];
    let stripe = &payload[r.start as usize..r.end as usize];
    let mut v = ringxfer::StripePrefix {
        stream: i as u32,
        streams: n as u32,
        array_id: id,
        offset: r.start,
        len: r.end - r.start,
        payload_len: payload.len() as u64,
    }
    .encode()
    .to_vec();
    if i == 0 {
        v.extend_from_slice(&header.encode());
    }
    v.extend_from_slice(stripe);
    v.extend_from_slice(&ringxfer::frame::encode_trailer(crc32fast::hash(stripe)));
    v
}

// ---------------------------------------------------------------------------------------------
// Sockets
// ---------------------------------------------------------------------------------------------

/// A connected loopback TCP pair `(client, server)`.
pub fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    (client, server)
}

/// A connected loopback TCP pair `(client, server)` whose four buffers are `buf` bytes
/// (`SO_SNDBUF` and `SO_RCVBUF` on both ends; the kernel doubles the value). The listener's
/// `SO_RCVBUF` is set before `listen` so the accepted socket inherits it (and the window scale
/// is negotiated for it); the client's before `connect`.
pub fn tcp_pair_small_buffers(buf: usize) -> (TcpStream, TcpStream) {
    let listener = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    listener.set_recv_buffer_size(buf).unwrap();
    listener.set_send_buffer_size(buf).unwrap();
    listen_on_loopback(&listener);
    let addr = listener.local_addr().unwrap();

    let client = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    client.set_recv_buffer_size(buf).unwrap();
    client.set_send_buffer_size(buf).unwrap();
    client.connect(&addr).unwrap();
    let (server, _) = listener.accept().unwrap();
    // Set again after accept: the inherited values are what we asked for, but be explicit.
    server.set_recv_buffer_size(buf).unwrap();
    server.set_send_buffer_size(buf).unwrap();
    for (name, s) in [("client", &client), ("server", &server)] {
        let (snd, rcv) = (s.send_buffer_size().unwrap(), s.recv_buffer_size().unwrap());
        // Linux reports twice the value set (bookkeeping overhead), with a small floor.
        assert!(
            snd <= 4 * buf.max(4608) && rcv <= 4 * buf.max(4608),
            "{name}: SO_SNDBUF {snd}, SO_RCVBUF {rcv} not small"
        );
    }
    (client.into(), server.into())
}

/// What the slow peer of case C16 ([`slow_greeting_reader`]) sends first and the sender never
/// reads: `b"hello" * 100`, in bytes.
pub const GREETING: usize = 500;

/// An IPv4 TCP socket with `SO_RCVBUF` 64 KiB, set before `listen` or `connect` so the
/// connection has a small receive window (case C16's reproduction).
pub fn small_rcvbuf_socket() -> Socket {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    s.set_recv_buffer_size(64 << 10).unwrap();
    s
}

/// Binds `s` to 127.0.0.1 on a free port and listens (backlog 1).
fn listen_on_loopback(s: &Socket) {
    let any_port: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    s.bind(&any_port.into()).unwrap();
    s.listen(1).unwrap();
}

/// A listener on 127.0.0.1 made from a [`small_rcvbuf_socket`], and its address.
pub fn small_rcvbuf_listener() -> (TcpListener, std::net::SocketAddr) {
    let l = small_rcvbuf_socket();
    listen_on_loopback(&l);
    let l: TcpListener = l.into();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// Case C16's peer: sends [`GREETING`] bytes of `hello`, then reads slowly (1 ms sleep per
/// 64 KiB read) until end of stream, then closes. Returns every byte it read, or the error
/// that ended its reads with the count so far.
pub fn slow_greeting_reader(mut s: TcpStream) -> Result<Vec<u8>, (usize, std::io::Error)> {
    s.write_all(&b"hello".repeat(100)).unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return Err((got.len(), e)),
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `i % 256` for every byte `i < n`: the `u1` arange pattern.
pub fn arange_u1(n: usize) -> Vec<u8> {
    (0..n).map(|i| i as u8).collect()
}

/// A connected Unix stream socket pair.
pub fn unix_pair() -> (UnixStream, UnixStream) {
    UnixStream::pair().expect("socketpair")
}

/// Closes the connection with a TCP reset (`SO_LINGER` 0, then drop).
pub fn reset(sock: TcpStream) {
    let s = Socket::from(sock);
    s.set_linger(Some(Duration::ZERO)).unwrap();
    drop(s);
}

/// Writes `bytes` with plain `std` `write_all`, then shuts down the write side.
pub fn raw_write_then_shutdown(mut sock: &TcpStream, bytes: &[u8]) {
    sock.write_all(bytes).expect("raw write_all");
    sock.shutdown(Shutdown::Write).expect("shutdown(Write)");
}

/// Reads exactly `out.len()` bytes with plain `std` reads of at most `piece` bytes, sleeping
/// `pause` every `pause_every` reads: a slow reader.
pub fn slow_read_exact<R: Read>(
    mut sock: R,
    out: &mut [u8],
    piece: usize,
    pause_every: usize,
    pause: Duration,
) {
    let mut pos = 0;
    let mut reads = 0usize;
    while pos < out.len() {
        // Vary the piece a little so reads do not line up with the sender's segments.
        let want = (piece - (reads % 7) * (piece / 16)).max(1);
        let end = out.len().min(pos + want);
        let n = sock.read(&mut out[pos..end]).expect("slow reader: read");
        assert!(n > 0, "slow reader: EOF after {pos} of {} bytes", out.len());
        pos += n;
        reads += 1;
        if pause_every > 0 && reads % pause_every == 0 {
            std::thread::sleep(pause);
        }
    }
}

/// Writes `bytes` with plain `std` writes of at most `piece` bytes, sleeping `pause` every
/// `pause_every` writes: a slow writer.
pub fn slow_write_all<W: Write>(
    mut sock: W,
    bytes: &[u8],
    piece: usize,
    pause_every: usize,
    pause: Duration,
) {
    for (i, c) in bytes.chunks(piece.max(1)).enumerate() {
        sock.write_all(c).expect("slow writer: write_all");
        if pause_every > 0 && (i + 1) % pause_every == 0 {
            std::thread::sleep(pause);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Threads and deadlines
// ---------------------------------------------------------------------------------------------

/// Runs `f` on its own thread and returns its result, or panics when it has not finished
/// within `limit` (a hang becomes a test failure; the stuck thread is left behind and dies
/// with the test process). A panic inside `f` is re-raised here.
#[track_caller]
pub fn within<R: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (tx, rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        let r = f();
        let _ = tx.send(r);
    });
    match rx.recv_timeout(limit) {
        Ok(r) => {
            let _ = h.join();
            r
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match h.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => unreachable!("thread ended without a result"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what} did not return within {limit:?} (hang)")
        }
    }
}

/// Spawns a sender thread: a fresh engine with `opts` sends `data` on `sock`, and the thread
/// hands back the data, the result and the socket.
pub fn spawn_send<T, S>(
    opts: Options,
    sock: S,
    data: Vec<T>,
) -> JoinHandle<(Vec<T>, ringxfer::Result<()>, S)>
where
    T: Pod + Send + 'static,
    S: std::os::fd::AsFd + Send + 'static,
{
    std::thread::spawn(move || {
        let mut e = engine(&opts);
        let r = e.send_from(&sock, &data);
        (data, r, sock)
    })
}

/// Sends `data` from `tx` to `rx` with engines built from `send_opts`/`recv_opts` (the sender
/// on its own thread) and asserts the received array equals it byte for byte. Returns the
/// elapsed time. Bounded by `limit`.
pub fn round_trip_with<T, S>(
    send_opts: Options,
    recv_opts: Options,
    tx: S,
    rx: S,
    data: Vec<T>,
    limit: Duration,
    what: &str,
) -> Duration
where
    T: Pod + Send + 'static,
    S: std::os::fd::AsFd + Send + 'static,
{
    let what_owned = what.to_owned();
    within(limit, what, move || {
        let n = data.len();
        let seed = 0xfeed ^ n as u64;
        let mut got: Vec<T> = poison_vec(n, seed);
        let t0 = Instant::now();
        let sender = spawn_send(send_opts, tx, data);
        let mut e = engine(&recv_opts);
        let r = e.recv_into(&rx, &mut got);
        let (data, sr, _tx) = sender.join().expect("sender thread panicked");
        let dt = t0.elapsed();
        if let Err(e) = r {
            panic!("{what_owned}: recv_into failed: {e} ({e:?})");
        }
        if let Err(e) = sr {
            panic!("{what_owned}: send_from failed: {e} ({e:?})");
        }
        assert_same(&got, &data, &what_owned);
        dt
    })
}

/// [`round_trip_with`] with the same options on both sides.
pub fn round_trip<T, S>(opts: Options, tx: S, rx: S, data: Vec<T>, what: &str) -> Duration
where
    T: Pod + Send + 'static,
    S: std::os::fd::AsFd + Send + 'static,
{
    round_trip_with(
        opts.clone(),
        opts,
        tx,
        rx,
        data,
        Duration::from_secs(120),
        what,
    )
}

/// CPU time consumed so far by the calling thread.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID always exists on
    // Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// True when registering `bytes` bytes as fixed buffers should succeed here: the calling
/// thread (capabilities are per thread) has
/// `CAP_IPC_LOCK` or `RLIMIT_MEMLOCK` allows it. Tests that pre-register assert the guard is
/// registered only then (elsewhere the documented fallback is what runs, and they say so).
pub fn can_pin(bytes: u64) -> bool {
    /// `CAP_IPC_LOCK` (linux/capability.h).
    const CAP_IPC_LOCK: u32 = 14;
    let cap_ipc_lock = std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0);
    if cap_ipc_lock {
        return true;
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    rc == 0 && (lim.rlim_cur == libc::RLIM_INFINITY || lim.rlim_cur >= bytes + (1 << 20))
}

/// Asserts a pre-registered guard really is registered where pinning is allowed; elsewhere
/// prints the fallback reason (the transfer must still work).
#[track_caller]
pub fn check_registered(registered: bool, reason: Option<&str>, bytes: u64, what: &str) {
    if bytes == 0 {
        // Nothing to register: an empty array is documented as never registered.
        return;
    }
    if can_pin(bytes) {
        assert!(
            registered,
            "{what}: registration of {bytes} bytes refused although pinning is allowed: {reason:?}"
        );
    } else if !registered {
        eprintln!("{what}: not registered here (no CAP_IPC_LOCK, low RLIMIT_MEMLOCK): {reason:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/// Child processes: the `ringxfer` binary, this test binary re-run as a child, `/proc` reads.
/// A fresh, empty directory for one test's files: `$TMPDIR/ringxfer-<test>-<pid>-<name>`.
pub fn tmpdir(test: &str, name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ringxfer-{test}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes `bytes` to `dir/name` and returns the path as a string (for a command line).
pub fn write_file(dir: &std::path::Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_owned()
}

/// Runs the `#[ignore]`d test `child` of this test binary in a child process under `ulimit -Sn
/// nofile` with `env` set (the child's body runs only when it sees `env`), and asserts that it
/// ran and passed.
pub fn run_child_test(nofile: u32, child: &str, env: (&str, &str)) {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("sh")
        .args(["-c", &format!("ulimit -Sn {nofile} && exec \"$0\" \"$@\"")])
        .arg(exe)
        .args(["--exact", child, "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(env.0, env.1)
        .output()
        .expect("spawn the child test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child failed: {text}");
    assert!(text.contains("1 passed"), "the child ran: {text}");
}

/// Shared pieces of the `.npy` tests.
pub mod npy;
pub mod proc;

/// `python3` with numpy as a child process: the skip rule and a bounded run.
pub mod py;
pub mod seccomp;
