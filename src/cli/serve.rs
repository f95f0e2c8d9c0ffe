//! `ringxfer serve`: receives framed arrays from any number of clients.
//!
//! The first line on stdout is `listening ADDR` with the bound address (so `--listen
//! 127.0.0.1:0` works: read the port from it). Each accepted connection gets its own thread
//! and its own [`Engine`], and receives framed arrays back to back with `Engine::recv_any`
//! until the client closes between two messages (a clean close, not reported). Every array
//! gives one line (see [`ArrayLine`]), then is dropped: a connection holds at most one array
//! at a time. A broken client (bad header, checksum mismatch, a message cut short, a reset,
//! `--timeout` without progress) gives one [`ErrorLine`] and its connection is closed; the
//! other connections and the listener carry on. Lines are written whole under stdout's lock
//! and flushed, so concurrent connections never interleave within a line.
//!
//! **Limits.** At most `--max-clients` connections are served at once; while that many are
//! open the server stops accepting, so further clients wait in the kernel's listen backlog
//! (their connect completes and their first bytes are buffered by the kernel) until a
//! connection closes; a client beyond the backlog too sees its connect time out. Each header's
//! `payload_len` is checked against `--max-payload` before anything is allocated, so the
//! arrays held at once take at most `max-clients × max-payload` bytes. Dropped arrays' memory
//! goes to the library's process-wide pool for reuse by the next receive on any connection
//! (fresh arrays at pre-touched speed); the pool keeps at most `--recycle` bytes (its cap is
//! the largest `recycle_bytes` any engine asked for) and keeps them until the process exits,
//! also after the connections close. So the worst case is `max-clients × max-payload +
//! recycle` bytes, plus ~2 MiB of thread stack per connection. `--timeout` bounds how long a
//! silent client holds its slot.
//!
//! **Server output back to the client** (like iperf3's `--get-server-output`). When a client
//! closes its write side cleanly between two arrays, the server writes back on the same
//! connection the per-array report lines it printed for that connection (in JSON, one object
//! per line, whatever its own `--json`), then closes. `ringxfer send --get-server-output`
//! half-closes after its last array and reads them; a client that did not ask has closed its
//! socket altogether, so the write fails (EPIPE / ECONNRESET) and is ignored silently. After a
//! broken message nothing is written back.
//!
//! Each array line carries the CPU (user and system seconds) the connection's thread spent
//! receiving it, and the socket's effective SO_SNDBUF / SO_RCVBUF; `--sndbuf` / `--rcvbuf` are
//! set on the listening socket before listen(), so accepted connections inherit them.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use clap::Args;
use ringxfer::{Engine, Options, frame};

use super::framed::{ErrorLine, Outcome, emit, recv_one};
use super::measure::{SockBufArgs, say_notices};
use super::{BackendArg, Failure, TuningArgs, size};

/// Arguments of `ringxfer serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on: 127.0.0.1:5000, [::]:5000; port 0 picks a free port (printed on
    /// the first line).
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// Engine backend of every connection.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    backend: BackendArg,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// Largest payload accepted per array, checked against each header before anything is
    /// allocated (a larger one is reported and its connection closed), e.g. 400MB, 1GiB
    /// [default: 8GiB].
    #[arg(long, value_parser = size::parse_size, value_name = "BYTES")]
    max_payload: Option<u64>,
    /// Bytes of dropped arrays' memory kept for reuse by later receives on any connection
    /// (one process-wide pool, kept until exit; 0: none), e.g. 512MiB [default: the
    /// library's, 2GiB].
    #[arg(long, value_parser = size::parse_size, value_name = "BYTES")]
    recycle: Option<u64>,
    /// Close a connection when no byte moves for this many seconds, inside a message or
    /// while waiting for the next one [default: wait forever].
    #[arg(long, value_name = "SECS", value_parser = super::parse_secs)]
    timeout: Option<Duration>,
    /// Most connections served at once; further clients wait in the listen backlog until one
    /// closes.
    #[arg(long, value_name = "N", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_clients: u32,
    #[command(flatten)]
    tuning: TuningArgs,
    #[command(flatten)]
    sockbufs: SockBufArgs,
}

/// Counts open connections against `--max-clients`.
#[derive(Debug)]
struct Slots {
    open: Mutex<u32>,
    freed: Condvar,
    max: u32,
}

/// One open connection's slot; frees it when dropped (also when its thread panics).
struct Slot(Arc<Slots>);

impl Slots {
    /// Waits for a free slot and takes it. Returns it and whether it had to wait.
    fn acquire(this: &Arc<Slots>) -> (Slot, bool) {
        let mut open = this.open.lock().unwrap_or_else(|p| p.into_inner());
        let waited = *open >= this.max;
        while *open >= this.max {
            open = this.freed.wait(open).unwrap_or_else(|p| p.into_inner());
        }
        *open += 1;
        (Slot(Arc::clone(this)), waited)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.0.open.lock().unwrap_or_else(|p| p.into_inner());
        *open -= 1;
        self.0.freed.notify_one();
    }
}

/// Runs `ringxfer serve` (until killed; returns only when it cannot listen).
pub fn run(a: &ServeArgs) -> Result<(), Failure> {
    let opts = Options {
        backend: a.backend.backend(),
        idle_timeout: a.timeout,
        uring: a.tuning.tuning()?,
        max_payload_bytes: a.max_payload.unwrap_or(frame::DEFAULT_MAX_PAYLOAD_BYTES),
        ..Options::default()
    };
    let opts = match a.recycle {
        Some(r) => Options {
            recycle_bytes: usize::try_from(r)
                .map_err(|_| Failure::usage(format!("--recycle {r}: too large")))?,
            ..opts
        },
        None => opts,
    };
    // Fail now, not once per client, when the backend cannot work at all.
    let probe_engine = Engine::with_options(opts.clone())?;
    if let Some(reason) = probe_engine.fallback_reason() {
        eprintln!("ringxfer serve: using the blocking backend: {reason}");
    }
    drop(probe_engine);

    let listener: TcpListener = a
        .sockbufs
        .listen(a.listen.as_str())
        .map_err(|e| Failure::runtime(format!("listen on {}: {e}", a.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::runtime(format!("local_addr: {e}")))?;
    emit(&format!("listening {local}"));

    let slots = Arc::new(Slots {
        open: Mutex::new(0),
        freed: Condvar::new(),
        max: a.max_clients,
    });
    let full_said = AtomicBool::new(false);
    loop {
        let (slot, waited) = Slots::acquire(&slots);
        if waited && !full_said.swap(true, Ordering::Relaxed) {
            eprintln!(
                "ringxfer serve: {} connections open (--max-clients); further clients wait in \
                 the listen backlog until one closes",
                a.max_clients
            );
        }
        let (sock, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("ringxfer serve: accept: {e}");
                // EMFILE and the like: give closing connections a moment instead of spinning.
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let peer = peer.to_string();
        let (opts, json) = (opts.clone(), a.json);
        let spawned = thread::Builder::new().name(format!("serve {peer}")).spawn({
            let peer = peer.clone();
            move || {
                let _slot = slot;
                serve_connection(sock, &peer, opts, json);
            }
        });
        if let Err(e) = spawned {
            // The closure (socket and slot included) was dropped: the connection is closed.
            let e = ringxfer::Error::Setup {
                what: "spawning the connection's thread",
                source: e,
            };
            emit(&ErrorLine::new(&peer, 1, &e).render(json));
        }
    }
}

/// Receives arrays on one connection until the client closes or breaks; on a clean close,
/// writes the connection's lines (JSON) back to the client.
fn serve_connection(sock: TcpStream, peer: &str, opts: Options, json: bool) {
    let mut engine = match Engine::with_options(opts) {
        Ok(e) => e,
        Err(e) => {
            emit(&ErrorLine::new(peer, 1, &e).render(json));
            return;
        }
    };
    let mut sent_back = String::new();
    for array in 1.. {
        match recv_one(&mut engine, &sock, peer, array) {
            Outcome::Array(line) => {
                emit(&line.render(json));
                sent_back.push_str(&line.render(true));
                sent_back.push('\n');
            }
            Outcome::Closed => {
                say_notices("serve", &engine);
                write_back(&sock, &sent_back, engine.options().idle_timeout);
                return;
            }
            Outcome::Failed(line) => {
                emit(&line.render(json));
                say_notices("serve", &engine);
                return;
            }
        }
    }
}

/// Writes `lines` to a client that closed its write side, ignoring every error: a client
/// that did not ask for them has closed its socket (EPIPE / ECONNRESET). Waits at most the
/// idle timeout (10 s without one) for a client that half-closed but does not read.
fn write_back(sock: &TcpStream, lines: &str, idle: Option<Duration>) {
    if lines.is_empty() {
        return;
    }
    let _ = sock.set_write_timeout(Some(idle.unwrap_or(Duration::from_secs(10))));
    let mut s = sock;
    let _ = s.write_all(lines.as_bytes());
    let _ = s.flush();
}
