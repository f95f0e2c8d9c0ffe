//! `ringxfer serve`: receives framed arrays from any number of clients.
//!
//! Each message is an RGXF framed array or numpy's `.npy` stream (what `numpy.save` writes),
//! told apart by its first byte (`R` or `\x93`); a `.npy` header is read in the library's
//! bounded steps (at most 64 KiB, under the same header deadline) and carries no checksum, so
//! its line says `"format":"npy"` and `"verified":false`. Messages of both formats may follow
//! each other on one connection.
//!
//! The first line on stdout is `listening ADDR` with the bound address (so `--listen
//! 127.0.0.1:0` works: read the port from it). Each accepted connection gets its own thread
//! and its own [`Engine`], and receives framed arrays back to back — each header read by the
//! connection's thread under the deadlines below, then the payload with
//! `Engine::recv_any_after_header` — until the client closes between two messages (a clean
//! close, not reported). Every array
//! gives one line (see [`ArrayLine`](crate::xfer::framed::ArrayLine)), then is dropped: a connection holds at most one array
//! at a time. A broken client (bad header, checksum mismatch, a message cut short, a reset, a
//! deadline missed, a failed handshake) gives one [`ErrorLine`] and its connection is closed;
//! the other connections and the listener carry on. Lines are written whole under stdout's
//! lock and flushed, so concurrent connections never interleave within a line.
//!
//! **Striped arrays** (`ringxfer send --streams N`, rails): a connection whose first bytes are a
//! stripe prefix (`RGXS`) is one stream of an array; streams are grouped by array id and the
//! array is received over all of them ([`stripes`]).
//!
//! **Files** (`--out-dir DIR`): each array is received straight into a mapped `.npy` file in
//! DIR instead of memory, named by [`crate::files::serve_name`] and renamed into place once
//! whole and checked ([`crate::files::to_file`]); its line names the file.
//!
//! **Authentication** (`--auth-key FILE`): every connection first runs the handshake of
//! [`ringxfer::auth`] (`docs/PROTOCOL.md`), bounded by `--header-timeout`; a client without
//! the key is reported (`auth_wrong_key`, `auth_unauthenticated`, …) and closed before one
//! byte of an array is read. Without it, serving on a non-loopback address prints a warning.
//!
//! **Deadlines** (defaults fit a server on a network; 0 turns each off):
//! * `--header-timeout` (5 s): a connection must deliver its first whole header within this
//!   long of its start (of the handshake's end, with `--auth-key`); each later header must be
//!   whole within this long of its first byte. Otherwise: one `header_timeout` line, closed.
//! * `--timeout` (30 s): no byte for this long, inside a message or between two, and a header
//!   that has begun must be whole within this long of its first byte: `timed_out`.
//!
//! **A failed array** (a rejected header, a payload over `--max-payload`, a CRC mismatch, a
//! file `--out-dir` could not write, a timeout) is one line, and the client is told the same
//! error, `ringxfer serve: array N: ERROR`, before its connection is reset ([`tell_failed`]):
//! `ringxfer send` prints it in its error, and no sender takes the close for delivery.
//!
//! **Connection slots.** At most `--max-clients` connections are served at once. The server
//! always accepts; a client that finds every slot taken waits in the server's queue (at most
//! twice `--max-clients` clients, room for a striped group's streams waiting behind another
//! group; [`QUEUE_WAIT`] each) until a slot frees, and meanwhile takes the
//! slot of the connection that has been idle longest — waiting for a header, or in the
//! handshake — once that one has been idle `--evict-idle` seconds (1 s; 0: never evict):
//! the evicted connection is reported (`evicted`) and closed. A client for whom no slot comes
//! (every slot busy moving arrays) is refused: it gets one line
//! `ringxfer serve: refused: …` and is closed, and the server prints one `refused` line. So
//! clients that connect and go quiet can hold slots only until someone else needs them.
//! A striped array's streams are admitted as one group: its first stream seen takes all of
//! the group's slots at once or waits, and its other streams pass waiting clients
//! ([`stripes`], "Admission per group"); parked streams can add up to twice
//! `--max-clients` threads.
//!
//! **Memory.** Each header's `payload_len` is checked against `--max-payload` before anything
//! is allocated, so the arrays held at once take at most `max-clients × max-payload` bytes.
//! Dropped arrays' memory goes to the library's process-wide pool for reuse by the next receive
//! on any connection; the pool keeps at most `--recycle` bytes until the process exits. Each
//! connection also keeps at most [`SERVER_OUTPUT_BYTES`] of report lines for the client
//! (below), however many arrays it sends. So the worst case is `max-clients × (max-payload +
//! 64 KiB) + recycle` bytes, plus ~2 MiB of thread stack per connection.
//!
//! **Server output back to the client** (like iperf3's `--get-server-output`). When a client
//! closes its write side cleanly between two arrays, the server writes back on the same
//! connection the per-array report lines it printed for that connection (in JSON, one object
//! per line, whatever its own `--json`), then closes. It keeps the most recent lines that fit
//! in [`SERVER_OUTPUT_BYTES`]; when older ones were dropped, a last line
//! `{"dropped_lines": N, …}` says how many. `ringxfer send --get-server-output` half-closes
//! after its last array and reads them; a client that did not ask has closed its socket, so
//! the write fails (EPIPE / ECONNRESET) and is ignored silently. After a broken message
//! nothing is written back.
//!
//! Each array line carries the CPU (user and system seconds) the connection's thread spent
//! receiving it, and the socket's effective SO_SNDBUF / SO_RCVBUF; `--sndbuf` / `--rcvbuf` are
//! set on the listening socket before listen(), so accepted connections inherit them.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::net::Shutdown;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use ringxfer::auth::{self, AuthKey};
use ringxfer::npy;
use ringxfer::{self as frame, Header};
use ringxfer::{Backend, Engine, Options};
use rustix::net::RecvFlags;
use socket2::SockRef;

use crate::args::{BACKENDS, LibraryEnum, TuningArgs, display_name};
use crate::failure::Failure;
use crate::measure::{SockBufArgs, say_notices};
use crate::net::{Conn, Listener};
use crate::size;
use crate::xfer::framed::{ErrorLine, Outcome, emit, report_one};

/// Report bytes kept per connection for `--get-server-output` (the most recent lines).
pub const SERVER_OUTPUT_BYTES: usize = 64 << 10;

/// How long a client that found every slot taken waits in the queue before it is refused.
pub const QUEUE_WAIT: Duration = Duration::from_secs(2);

/// Arguments of `ringxfer serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on: 127.0.0.1:5000, [::]:5000 (port 0 picks a free port, printed on
    /// the first line), or unix:PATH for a Unix domain socket (an existing file at PATH is an
    /// error; a client on it is named unix:PATH#N, the N-th accepted).
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// Engine backend of every connection.
    #[arg(long, value_parser = LibraryEnum::new(BACKENDS, display_name), default_value_t = Backend::Auto)]
    backend: Backend,
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
    /// while waiting for the next one, or when a header is not whole this long after its
    /// first byte; 0: wait forever.
    #[arg(long, value_name = "SECS", value_parser = parse_limit, default_value = "30")]
    timeout: Limit,
    /// Close a connection whose first header is not whole within SECS of its start (of the
    /// end of the handshake, with --auth-key), or any later header within SECS of its first
    /// byte; also the deadline of the handshake. 0: no deadline (the handshake then gets 10 s).
    #[arg(long, value_name = "SECS", value_parser = parse_limit, default_value = "5")]
    header_timeout: Limit,
    /// Most connections served at once. A client that finds them all taken waits up to 2 s
    /// for a slot, takes the slot of a connection idle for --evict-idle, or is refused with
    /// a one-line reason.
    #[arg(long, value_name = "N", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_clients: u32,
    /// When every slot is taken and a client waits: close the connection that has waited
    /// longest for a header (or in the handshake), once it has waited SECS; 0: never.
    #[arg(long, value_name = "SECS", value_parser = parse_limit, default_value = "1")]
    evict_idle: Limit,
    /// Shared-key authentication: each client must prove it holds the key in FILE (its
    /// bytes, trailing whitespace trimmed, at least 16) before it may send arrays
    /// (docs/PROTOCOL.md). Make one with `head -c 32 /dev/urandom > FILE`.
    #[arg(long, value_name = "FILE")]
    auth_key: Option<PathBuf>,
    /// Write every received array to a .npy file in DIR (an existing directory) instead of
    /// checking and dropping it, named PEER-cCONN-aN.npy: the client's address with every
    /// character but letters, digits, '.' and '-' made '_', the server's connection number,
    /// the array's number on its connection (127.0.0.1_40312-c3-a1.npy). Received into a
    /// mapping of .NAME.PID.part, renamed to NAME once whole and checked, never over an
    /// existing file (that array's connection is closed with an out_file line instead); each
    /// line names its file.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    #[command(flatten)]
    tuning: TuningArgs,
    #[command(flatten)]
    sockbufs: SockBufArgs,
}

/// A duration flag where 0 means "none".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub Option<Duration>);

/// Parses a non-negative number of seconds; 0 is "none".
fn parse_limit(s: &str) -> Result<Limit, String> {
    let v = s
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| *v >= 0.0)
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| format!("bad duration {s:?}: expected seconds (0: none)"))?;
    Ok(Limit((!v.is_zero()).then_some(v)))
}

mod stripes;

/// What the connection threads share with the accept loop.
struct Limits {
    json: bool,
    /// `--out-dir`.
    out_dir: Option<PathBuf>,
    header_timeout: Option<Duration>,
    key: Option<Arc<AuthKey>>,
    /// `--max-clients`: also the most streams of one striped array.
    max_clients: u32,
    /// Striped arrays' streams being gathered ([`stripes`]).
    groups: stripes::Groups,
}

/// One open connection, as the slot table sees it.
struct Slot {
    /// A handle on the socket, to shut it down on eviction.
    sock: Conn,
    /// Since when it has been waiting for a header or in the handshake (`None`: moving an
    /// array).
    idle_since: Option<Instant>,
    evicted: Arc<AtomicBool>,
    /// The striped group (array id) whose seat it holds; `None`: an ordinary slot.
    group: Option<u64>,
    /// Parked: a stream of group (array id) admitted to an ordinary slot before its prefix
    /// was seen, waiting for its group's room ([`SlotHandle::adopt`]); not counted as used.
    parked: Option<u64>,
    /// The seat in `group` was lent to a client that had sent nothing yet, when no slot was
    /// free: it may be a stream of that group whose sender waits for its earlier streams
    /// ([`SlotHandle::settle`]).
    lent: bool,
}

/// The seats of one admitted striped group ([`stripes`]): `streams` slots counted from its
/// first stream's admission, `held` of them by connected streams, the rest reserved.
struct Seats {
    streams: u32,
    held: u32,
}

/// The slot table: open connections and admitted groups.
#[derive(Default)]
struct Table {
    conns: HashMap<u64, Slot>,
    groups: HashMap<u64, Seats>,
}

impl Table {
    /// Slots in use: every ordinary connection, and every admitted group's whole count.
    fn used(&self) -> usize {
        let ordinary = self
            .conns
            .values()
            .filter(|s| s.group.is_none() && s.parked.is_none())
            .count();
        ordinary
            + self
                .groups
                .values()
                .map(|g| g.streams as usize)
                .sum::<usize>()
    }

    /// Admits group `id` of `streams` streams (the caller checked its room): its parked
    /// streams take their seats at once.
    fn open_group(&mut self, id: u64, streams: u32) {
        let mut held = 0;
        for s in self.conns.values_mut() {
            if s.parked == Some(id) && held < streams {
                (s.parked, s.group) = (None, Some(id));
                held += 1;
            }
        }
        self.groups.insert(id, Seats { streams, held });
    }

    /// True when group `id` is admitted and has a seat not yet taken.
    fn has_seat(&self, id: u64) -> bool {
        self.groups.get(&id).is_some_and(|g| g.held < g.streams)
    }

    /// Makes `need` slots free, evicting the connections idle longest once they have been
    /// idle `evict_idle` (shut down and told so), or evicts nothing and returns false.
    fn make_room(&mut self, need: usize, max: usize, evict_idle: Option<Duration>) -> bool {
        let short = (self.used() + need).saturating_sub(max);
        if short == 0 {
            return true;
        }
        let Some(limit) = evict_idle else {
            return false;
        };
        let now = Instant::now();
        let mut idle: Vec<(u64, Instant)> = self
            .conns
            .iter()
            .filter(|(_, s)| s.group.is_none())
            .filter_map(|(id, s)| s.idle_since.map(|t| (*id, t)))
            .filter(|&(_, t)| now.duration_since(t) >= limit)
            .collect();
        if idle.len() < short {
            return false;
        }
        idle.sort_by_key(|&(_, t)| t);
        for (victim, _) in idle.into_iter().take(short) {
            let v = self
                .conns
                .remove(&victim)
                .expect("the victim is in the table");
            v.evicted.store(true, Ordering::SeqCst);
            // Wakes the victim's thread (its peek returns end of stream).
            let _ = v.sock.shutdown(Shutdown::Both);
        }
        true
    }
}

/// The connection slots (`--max-clients`).
struct Slots {
    open: Mutex<Table>,
    /// Signalled when a slot is freed ([`SlotHandle::adopt`] waits on it).
    freed: Condvar,
    max: usize,
    evict_idle: Option<Duration>,
}

/// A connection's own handle on its slot; frees it when dropped (also on a panic).
struct SlotHandle {
    id: u64,
    slots: Arc<Slots>,
    evicted: Arc<AtomicBool>,
}

/// Who [`Slots::admit`] may admit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Admit {
    /// Anyone there is room for.
    Any,
    /// A client ahead in the queue is still waiting: only streams of admitted groups, and
    /// clients that have sent nothing yet (a striped sender may send a stream's prefix only
    /// once its earlier streams move: a stream of an admitted group looks like this, and a
    /// stream of a waiting group parks, [`SlotHandle::adopt`]).
    Members,
}

impl Slots {
    /// Takes a slot for `sock` (its stripe prefix's array id and stream count when it sent
    /// one, `stripe`): a seat of its admitted group; for the first stream of a group, all of
    /// the group's `streams` slots at once; otherwise one slot. Room is made by evicting
    /// connections idle `--evict-idle` ([`Table::make_room`]). `None` when there is no room.
    fn admit(
        this: &Arc<Slots>,
        id: u64,
        sock: &Conn,
        stripe: Option<(u64, u32)>,
        who: Admit,
    ) -> Option<SlotHandle> {
        let mut t = this.open.lock().unwrap_or_else(|p| p.into_inner());
        let mut lent = false;
        let group = match stripe {
            Some((g, _)) if t.has_seat(g) => Some(g),
            _ if who == Admit::Members && has_sent(sock) => return None,
            Some((g, n)) if n as usize <= this.max && !t.groups.contains_key(&g) => {
                if !t.make_room(n as usize, this.max, this.evict_idle) {
                    return None;
                }
                t.open_group(g, n);
                this.freed.notify_all();
                if !t.has_seat(g) {
                    return None;
                }
                Some(g)
            }
            _ => {
                if t.make_room(1, this.max, this.evict_idle) {
                    None
                } else if stripe.is_none() && !has_sent(sock) {
                    // Lend it a free seat of an admitted group, if any.
                    let g = t.groups.iter().find(|(_, g)| g.held < g.streams)?;
                    lent = true;
                    Some(*g.0)
                } else {
                    return None;
                }
            }
        };
        let handle = sock.try_clone().ok()?;
        if let Some(g) = group {
            t.groups.get_mut(&g).expect("admitted above").held += 1;
        }
        let evicted = Arc::new(AtomicBool::new(false));
        t.conns.insert(
            id,
            Slot {
                sock: handle,
                idle_since: Some(Instant::now()),
                evicted: Arc::clone(&evicted),
                group,
                parked: None,
                lent,
            },
        );
        Some(SlotHandle {
            id,
            slots: Arc::clone(this),
            evicted,
        })
    }
}

impl SlotHandle {
    /// Marks the connection idle (waiting for a header) from now, or busy (`false`).
    fn set_idle(&self, idle: bool) {
        let mut t = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = t.conns.get_mut(&self.id) {
            s.idle_since = idle.then(Instant::now);
        }
    }

    fn evicted(&self) -> bool {
        self.evicted.load(Ordering::SeqCst)
    }

    /// A connection admitted to an ordinary slot (before its prefix was seen) turned out to
    /// be a stream of striped group `id` (`streams` streams): makes its slot a seat of the
    /// group. When the group is not admitted yet, the stream parks (gives its slot back,
    /// keeping its thread; at most `--max-clients` streams park at once) and waits up to
    /// `wait` until the group's `streams` slots are free, then admits the group with every
    /// parked stream of it. False when parking is full or the slots did not come free. A
    /// count above `--max-clients`, or a group with every seat taken, leaves the slot
    /// ordinary (true): the stream is refused when it joins.
    fn adopt(&self, id: u64, streams: u32, wait: Duration) -> bool {
        let (max, deadline) = (self.slots.max, Instant::now() + wait);
        let mut t = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        if streams as usize > max {
            return true;
        }
        let parked = t.conns.values().filter(|s| s.parked.is_some()).count();
        let admitted = t.groups.contains_key(&id);
        let Some(mine) = t.conns.get_mut(&self.id) else {
            return true;
        };
        if mine.group.is_some() {
            return true;
        }
        if !admitted && parked >= 2 * max {
            return false;
        }
        mine.parked = Some(id);
        loop {
            if t.conns[&self.id].group.is_some() {
                return true;
            }
            if t.has_seat(id) {
                t.groups.get_mut(&id).expect("it has a seat").held += 1;
                let mine = t
                    .conns
                    .get_mut(&self.id)
                    .expect("a parked slot is not evicted");
                (mine.parked, mine.group) = (None, Some(id));
                return true;
            }
            if !t.groups.contains_key(&id) && t.used() + streams as usize <= max {
                t.open_group(id, streams);
                self.slots.freed.notify_all();
                continue;
            }
            // Its group's seats all held by its streams (none lent): an index twice, refused
            // when it joins.
            let lent = t.conns.values().any(|c| c.lent && c.group == Some(id));
            let full = t.groups.contains_key(&id) && !lent;
            if full || Instant::now() >= deadline {
                let mine = t
                    .conns
                    .get_mut(&self.id)
                    .expect("a parked slot is not evicted");
                mine.parked = None;
                return full;
            }
            t = self.slots.wait_freed(t, deadline);
        }
    }
}

impl Slots {
    /// Waits on [`Slots::freed`] with the table's lock `t`, until `deadline` at the latest (a
    /// poisoned lock is taken over: the table stays consistent between statements).
    fn wait_freed<'a>(
        &self,
        t: std::sync::MutexGuard<'a, Table>,
        deadline: Instant,
    ) -> std::sync::MutexGuard<'a, Table> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.freed
            .wait_timeout(t, left)
            .unwrap_or_else(|p| p.into_inner())
            .0
    }
}

impl Table {
    /// Gives back a seat of group `g`; the group's admission ends with its last seat.
    fn leave(&mut self, g: u64) {
        let seats = self
            .groups
            .get_mut(&g)
            .expect("a held seat's group is admitted");
        seats.held -= 1;
        if seats.held == 0 {
            self.groups.remove(&g);
        }
    }
}

impl SlotHandle {
    /// Once the connection's first bytes are seen (`stripe`: its prefix's array id, or
    /// `None`): a connection on a lent seat ([`Slot::lent`]) keeps it when it is a stream of
    /// that group, else gives it back; not striped, it then waits up to `wait` for an
    /// ordinary slot. False when none came free: it is refused.
    fn settle(&self, stripe: Option<u64>, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut t = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mine) = t.conns.get_mut(&self.id).filter(|s| s.lent) else {
            return true;
        };
        mine.lent = false;
        let g = mine.group.expect("a lent slot holds a seat");
        if stripe == Some(g) {
            return true;
        }
        mine.group = None;
        t.leave(g);
        self.slots.freed.notify_all();
        // Striped: `adopt` finds its group a place. Otherwise it now counts as used.
        while stripe.is_none() && t.used() > self.slots.max {
            if Instant::now() >= deadline {
                return false;
            }
            t = self.slots.wait_freed(t, deadline);
        }
        true
    }
}

impl Drop for SlotHandle {
    fn drop(&mut self) {
        let mut t = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        let group = t.conns.remove(&self.id).and_then(|s| s.group);
        if let Some(g) = group {
            t.leave(g);
        }
        self.slots.freed.notify_all();
    }
}

/// Runs `ringxfer serve` (until killed; returns only when it cannot listen).
// About 110 lines: the accept loop (slots, the queue of waiting clients, eviction of the
// longest-idle header wait, refusal) reads and changes the same slot state on every turn, so
// it stays one loop; each connection is `serve_connection`.
pub fn run(a: &ServeArgs) -> Result<(), Failure> {
    let key = crate::net::load_key(a.auth_key.as_ref())?;
    let opts = Options {
        backend: a.backend,
        idle_timeout: a.timeout.0,
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
    let probe_engine = crate::report::engine("serve", opts.clone())?;
    drop(probe_engine);

    let listener = Listener::bind(&a.listen, &a.sockbufs)?;
    let local = listener.local()?;
    if key.is_none() && !listener.is_local() {
        eprintln!(
            "ringxfer serve: warning: listening on {local} without --auth-key: anyone who can \
             reach this port can send arrays"
        );
    }
    emit(&format!("listening {local}"));

    let slots = Arc::new(Slots {
        open: Mutex::new(Table::default()),
        freed: Condvar::new(),
        max: a.max_clients as usize,
        evict_idle: a.evict_idle.0,
    });
    if let Some(dir) = &a.out_dir {
        crate::files::check_out_dir(dir)?;
    }
    let limits = Arc::new(Limits {
        json: a.json,
        out_dir: a.out_dir.clone(),
        header_timeout: a.header_timeout.0,
        key,
        max_clients: a.max_clients,
        groups: stripes::Groups::default(),
    });
    let listen_ref = SockRef::from(&listener);
    let mut queue: VecDeque<(Conn, String, Instant)> = VecDeque::new();
    let mut next_id = 0u64;
    let mut accepted = 0u64;
    loop {
        // Block in accept while nobody waits for a slot; otherwise come back every 20 ms to
        // place the waiting (Linux's accept() honours SO_RCVTIMEO).
        let tick = (!queue.is_empty()).then(|| Duration::from_millis(20));
        if let Err(e) = listen_ref.set_read_timeout(tick) {
            eprintln!("ringxfer serve: SO_RCVTIMEO on the listener: {e}");
        }
        match listener.accept(accepted + 1).inspect(|_| accepted += 1) {
            Ok((sock, peer)) if queue.len() >= 2 * a.max_clients as usize => {
                // A full queue: make room by dropping the longest-waiting queued client that
                // has sent nothing yet (silent clients must not lock out working ones), else
                // turn the newcomer away.
                match queue.iter().position(|(s, _, _)| !has_sent(s)) {
                    Some(i) => {
                        let (idle, idle_peer, _) = queue.remove(i).expect("index in range");
                        refuse(
                            idle,
                            idle_peer,
                            "dropped from the full queue of waiting clients: sent nothing",
                            a,
                        );
                        queue.push_back((sock, peer, Instant::now()));
                    }
                    None => refuse(sock, peer, "the queue of waiting clients is full", a),
                }
            }
            Ok((sock, peer)) => queue.push_back((sock, peer, Instant::now())),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                eprintln!("ringxfer serve: accept: {e}");
                // EMFILE and the like: give closing connections a moment instead of spinning.
                thread::sleep(Duration::from_millis(100));
            }
        }
        // Clients that have sent bytes go first: a queue of silent connections must not
        // keep a working client waiting behind them.
        if let Some(i) = queue.iter().position(|(s, _, _)| has_sent(s)) {
            let ready = queue.remove(i).expect("index in range");
            queue.push_front(ready);
        }
        // In queue order, except that once a client must wait, only streams of admitted
        // striped groups pass it (they hold their group's seats already).
        let mut who = Admit::Any;
        let mut i = 0;
        while i < queue.len() {
            let (sock, _, since) = &queue[i];
            let stripe = match stripes::peek_now(sock) {
                Some(p) if p.streams > a.max_clients => {
                    let (sock, peer, _) = queue.remove(i).expect("index in range");
                    let line = stripes::too_many(&peer, p.streams, a.max_clients);
                    tell_and_close(&sock, &line, None, a.json);
                    continue;
                }
                p => p.map(|p| (p.array_id, p.streams)),
            };
            next_id += 1;
            match Slots::admit(&slots, next_id, sock, stripe, who) {
                Some(slot) => {
                    let (sock, peer, _) = queue.remove(i).expect("index in range");
                    spawn_connection(sock, peer, slot, &opts, &limits);
                }
                None if since.elapsed() >= QUEUE_WAIT => {
                    let (sock, peer, _) = queue.remove(i).expect("index in range");
                    refuse(
                        sock,
                        peer,
                        "every connection slot (--max-clients) is busy moving arrays",
                        a,
                    );
                }
                None => {
                    who = Admit::Members;
                    i += 1;
                }
            }
        }
    }
}

/// True when the client on `sock` has sent at least one byte (a non-blocking peek).
fn has_sent(sock: &Conn) -> bool {
    let mut b = [0u8; 1];
    matches!(
        rustix::net::recv(sock, &mut b, RecvFlags::PEEK | RecvFlags::DONTWAIT),
        Ok((n, _)) if n > 0
    )
}

/// Turns `sock` away: one line to the client, one `refused` line on stdout, closed.
fn refuse(sock: Conn, peer: String, why: &str, a: &ServeArgs) {
    let reason = format!("{why} ({} connections); try again later", a.max_clients);
    let line = ErrorLine {
        peer,
        array: 1,
        error: format!("refused: {reason}"),
        kind: "refused",
        transferred: None,
        expected: None,
    };
    tell_and_close(&sock, &line, None, a.json);
}

/// Prints `line` and tells the client on `sock` why it is turned away, one line
/// `ringxfer serve: refused: …` (the sender prints it in its error), then shuts down the
/// write side. What the client sent is read and dropped first, so the close does not reset
/// the connection and discard the line: without `wait`, only what already arrived (at most
/// 64 KiB; the accept loop must not block); with it, until the client closes or `wait` has
/// passed (a stream refused in its own thread, whose sender may still be sending).
fn tell_and_close(sock: &Conn, line: &ErrorLine, wait: Option<Duration>, json: bool) {
    emit(&line.render(json));
    let why = line.error.strip_prefix("refused: ").unwrap_or(&line.error);
    let said = format!("ringxfer serve: refused: {why}\n");
    let mut s = sock;
    match wait {
        None => {
            let _ = sock.set_nonblocking(true);
            let mut sink = [0u8; 4096];
            for _ in 0..16 {
                match sock.read_once(&mut sink) {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
            }
            let _ = s.write_all(said.as_bytes());
            let _ = sock.shutdown(Shutdown::Write);
        }
        Some(wait) => {
            let _ = sock.set_write_timeout(Some(wait));
            let _ = s.write_all(said.as_bytes());
            let _ = ringxfer::close::finish_with(sock, Some(wait), |_| {});
        }
    }
}

/// Tells the client on `sock` why its array was not taken, one line
/// `ringxfer serve: array N: ERROR` (the words of the server's own error line; `ringxfer send`
/// prints it in front of its own error, exit 1), then closes with a reset
/// ([`crate::net::say_and_abort`]): a plain close after a message the server did not take
/// (a bad checksum, a file it could not write) would let the sender's graceful close report
/// success. A client that already went away loses nothing: the write fails, ignored.
fn tell_failed(sock: &Conn, line: &ErrorLine) {
    let said = format!("ringxfer serve: array {}: {}\n", line.array, line.error);
    crate::net::say_and_abort(sock, &said);
}

fn spawn_connection(
    sock: Conn,
    peer: String,
    slot: SlotHandle,
    opts: &Options,
    limits: &Arc<Limits>,
) {
    let (opts, limits) = (opts.clone(), Arc::clone(limits));
    let json = limits.json;
    let spawned = thread::Builder::new().name(format!("serve {peer}")).spawn({
        let peer = peer.clone();
        move || serve_connection(sock, &peer, opts, &limits, slot)
    });
    if let Err(e) = spawned {
        // The closure (socket and slot included) was dropped: the connection is closed.
        let e = ringxfer::Error::Spawn(e);
        emit(&ErrorLine::new(&peer, 1, &e).render(json));
    }
}

/// The line of a connection evicted for a waiting client.
fn evicted_line(peer: &str, array: u64, idle: Duration) -> ErrorLine {
    ErrorLine {
        peer: peer.to_owned(),
        array,
        error: format!(
            "evicted after {:.1} s without a whole header: every connection slot \
             (--max-clients) was taken and another client was waiting",
            idle.as_secs_f64()
        ),
        kind: "evicted",
        transferred: None,
        expected: None,
    }
}

/// Receives arrays on one connection until the client closes or breaks; on a clean close,
/// writes the connection's lines (JSON) back to the client.
fn serve_connection(sock: Conn, peer: &str, opts: Options, limits: &Limits, slot: SlotHandle) {
    let json = limits.json;
    let started = Instant::now();
    let mut engine = match Engine::with_options(opts) {
        Ok(e) => e,
        Err(e) => {
            emit(&ErrorLine::new(peer, 1, &e).render(json));
            return;
        }
    };
    if let Some(key) = &limits.key {
        let deadline = limits.header_timeout.unwrap_or(auth::DEFAULT_TIMEOUT);
        if let Err(e) = auth::authenticate_server(&sock, key, deadline) {
            if matches!(e, ringxfer::Error::Auth(auth::AuthError::Unauthenticated)) {
                // A client without --auth-key: tell it why before closing (it reads the line
                // when its send fails).
                let mut s = &sock;
                let _ = s.write_all(
                    b"ringxfer serve: refused: this server requires authentication (--auth-key)\n",
                );
            }
            let line = if slot.evicted() {
                evicted_line(peer, 1, started.elapsed())
            } else {
                ErrorLine::new(peer, 1, &e)
            };
            emit(&line.render(json));
            return;
        }
    }
    let idle = engine.options().idle_timeout;
    let max_payload = engine.options().max_payload_bytes;
    let mut sent_back = SentBack::default();
    let mut waiting_since = Instant::now();
    // A stream of a striped array? Its prefix is due by the first header's deadline (the
    // earlier of --header-timeout and --timeout, as for the first byte of a header).
    let first_wait = match (limits.header_timeout, idle) {
        (Some(h), Some(i)) => Some(h.min(i)),
        (h, i) => h.or(i),
    };
    let first_deadline = first_wait.map(|t| waiting_since + t);
    let first = stripes::peek_prefix(&sock, peer, first_deadline);
    let stripe = match &first {
        stripes::First::Prefix(p) => Some(p.array_id),
        _ => None,
    };
    if !slot.settle(stripe, QUEUE_WAIT) {
        let line = ErrorLine {
            peer: peer.to_owned(),
            array: 1,
            error: format!(
                "refused: every connection slot (--max-clients) is busy moving arrays ({} \
                 connections); try again later",
                limits.max_clients
            ),
            kind: "refused",
            transferred: None,
            expected: None,
        };
        let wait = limits.header_timeout.unwrap_or(stripes::GROUP_WAIT);
        return tell_and_close(&sock, &line, Some(wait), json);
    }
    match first {
        stripes::First::NotStriped => {}
        // Evicted while its prefix was partial: the shutdown ended the peek; say why.
        stripes::First::Bad(_) if slot.evicted() => {
            return emit(&evicted_line(peer, 1, started.elapsed()).render(json));
        }
        stripes::First::Bad(line) => {
            let wait = limits.header_timeout.unwrap_or(stripes::GROUP_WAIT);
            return tell_and_close(&sock, &line, Some(wait), json);
        }
        stripes::First::Prefix(p) => {
            slot.set_idle(false);
            if !slot.adopt(p.array_id, p.streams, QUEUE_WAIT) {
                let line = ErrorLine {
                    peer: peer.to_owned(),
                    array: 1,
                    error: format!(
                        "refused: striped array id {:#x}: {} connection slots (--max-clients {}) \
                         did not come free within {} s; try again later",
                        p.array_id,
                        p.streams,
                        limits.max_clients,
                        QUEUE_WAIT.as_secs()
                    ),
                    kind: "refused",
                    transferred: None,
                    expected: None,
                };
                let wait = limits.header_timeout.unwrap_or(stripes::GROUP_WAIT);
                return tell_and_close(&sock, &line, Some(wait), json);
            }
            let member = (sock, peer, slot);
            return stripes::join(&limits.groups, member, p, engine, limits);
        }
    }
    for array in 1.. {
        slot.set_idle(true);
        let limits3 = (idle, limits.header_timeout, max_payload);
        let next = read_header(&sock, peer, array, waiting_since, limits3);
        slot.set_idle(false);
        let outcome =
            match next {
                Next::Header(h, started) => {
                    match (&limits.out_dir, h) {
                        (Some(dir), head) => {
                            let path = dir.join(crate::files::serve_name(peer, slot.id, array));
                            match head {
                                Head::Rgxf(h) => crate::files::to_file(
                                    &mut engine,
                                    &sock,
                                    (peer, array),
                                    started,
                                    &h,
                                    &path,
                                ),
                                Head::Npy(h) => crate::files::npy_stream_to_file(
                                    &mut engine,
                                    &sock,
                                    (peer, array),
                                    started,
                                    &h,
                                    &path,
                                ),
                            }
                        }
                        (None, head) => {
                            report_one(&mut engine, &sock, peer, array, Some(started), |e| {
                                match head {
                                    Head::Rgxf(h) => e.recv_any_after_header(&sock, h),
                                    Head::Npy(h) => e.recv_any_after_npy_header(&sock, &h),
                                }
                            })
                        }
                    }
                }
                Next::Closed => Outcome::Closed,
                Next::Failed(line) => Outcome::Failed(line),
            };
        if slot.evicted() {
            emit(&evicted_line(peer, array, waiting_since.elapsed()).render(json));
            return;
        }
        match outcome {
            Outcome::Array(line) => {
                emit(&line.render(json));
                sent_back.push(line.render(true));
                waiting_since = Instant::now();
            }
            Outcome::Closed => {
                say_notices("serve", &engine);
                write_back(&sock, &sent_back.finish(), idle);
                return;
            }
            Outcome::Failed(line) => {
                emit(&line.render(json));
                tell_failed(&sock, &line);
                say_notices("serve", &engine);
                return;
            }
        }
    }
}

/// The report lines kept for `--get-server-output`: the most recent ones within
/// [`SERVER_OUTPUT_BYTES`], and how many older ones were dropped.
#[derive(Debug, Default)]
struct SentBack {
    lines: VecDeque<String>,
    bytes: usize,
    dropped: u64,
}

impl SentBack {
    fn push(&mut self, line: String) {
        self.bytes += line.len() + 1;
        self.lines.push_back(line);
        while self.bytes > SERVER_OUTPUT_BYTES {
            let Some(old) = self.lines.pop_front() else {
                break;
            };
            self.bytes -= old.len() + 1;
            self.dropped += 1;
        }
    }

    /// The text to send: the kept lines, then `{"dropped_lines": N, …}` when any were dropped.
    fn finish(self) -> String {
        let mut out = String::with_capacity(self.bytes + 128);
        for l in &self.lines {
            out.push_str(l);
            out.push('\n');
        }
        if self.dropped > 0 {
            let note = serde_json::json!({
                "dropped_lines": self.dropped,
                "kept_lines": self.lines.len(),
                "note": format!(
                    "the server keeps the most recent {SERVER_OUTPUT_BYTES} bytes of lines per connection"
                ),
            });
            out.push_str(&note.to_string());
            out.push('\n');
        }
        out
    }
}

/// Writes `lines` to a client that closed its write side, ignoring every error: a client
/// that did not ask for them has closed its socket (EPIPE / ECONNRESET). Waits at most the
/// idle timeout (10 s without one) for a client that half-closed but does not read.
fn write_back(sock: &Conn, lines: &str, idle: Option<Duration>) {
    if lines.is_empty() {
        return;
    }
    let _ = sock.set_write_timeout(Some(idle.unwrap_or(Duration::from_secs(10))));
    let mut s = sock;
    let _ = s.write_all(lines.as_bytes());
    let _ = s.flush();
}

/// A whole, valid header of either stream format.
enum Head {
    /// An RGXF header (payload and trailer follow).
    Rgxf(Header),
    /// A `.npy` header (the payload follows; no trailer, no checksum).
    Npy(npy::NpyHeader),
}

/// What reading the next header gave.
enum Next {
    /// A whole, valid header, and when its first byte was readable.
    Header(Head, Instant),
    /// The client closed cleanly before the next message.
    Closed,
    /// A deadline passed, the stream ended or broke inside the header, or the header was
    /// rejected: the line to print.
    Failed(ErrorLine),
}

/// Reads the next message's header under the deadlines (see the module docs), consuming it.
///
/// The first byte is awaited until the idle timeout (`idle`, from `since`) — for the first
/// message of a connection also at most `header` from `since` (the connection's start or the
/// handshake's end). From the first byte on, the header must be whole within `header` (for the
/// first message: `header` from `since`). Nothing is allocated beyond the header itself
/// (≤ 296 bytes for RGXF, ≤ 64 KiB for `.npy`); its payload length is checked against
/// `max_payload`. The first byte says the format: `\x93` is read by [`read_npy_header`].
// About 110 lines: one state machine (first byte, the rest of the header, each with its own
// deadline and its own error line), kept in one place so every path to an error line is seen
// together.
fn read_header(
    sock: &Conn,
    peer: &str,
    array: u64,
    since: Instant,
    (idle, header, max_payload): (Option<Duration>, Option<Duration>, u64),
) -> Next {
    let first = array == 1;
    let fail = |e: ringxfer::Error| Next::Failed(ErrorLine::new(peer, array, &e));
    let prefix = frame::PREFIX_LEN;
    let first_header_deadline = header.filter(|_| first).map(|h| since + h);
    let idle_deadline = idle.map(|t| since + t);
    let first_byte_deadline = match (first_header_deadline, idle_deadline) {
        (Some(h), Some(i)) => Some(h.min(i)),
        (h, i) => h.or(i),
    };
    let byte = match first_byte(sock, first_byte_deadline) {
        Wait::Ready(b) => b,
        Wait::Closed => return Next::Closed,
        Wait::Broken(source) => {
            return fail(ringxfer::Error::Io {
                op: "recv",
                transferred: 0,
                expected: prefix as u64,
                source,
            });
        }
        Wait::TimedOut => {
            let line = if first_header_deadline.is_some()
                && first_header_deadline == first_byte_deadline
            {
                ErrorLine {
                    peer: peer.to_owned(),
                    array,
                    error: format!(
                        "no whole header within {} ms of the connection's start: 0 of {prefix} \
                         bytes",
                        header.unwrap_or_default().as_millis()
                    ),
                    kind: "header_timeout",
                    transferred: Some(0),
                    expected: Some(prefix as u64),
                }
            } else {
                ErrorLine::new(
                    peer,
                    array,
                    &ringxfer::Error::TimedOut {
                        transferred: 0,
                        expected: prefix as u64,
                        timeout_ms: idle.unwrap_or_default().as_millis() as u64,
                    },
                )
            };
            return Next::Failed(line);
        }
    };
    let started = Instant::now();
    // The header must be whole by --header-timeout and, once it has begun, within --timeout
    // (the idle timeout, which a header trickling or stalled inside must not escape: a header
    // is at most 296 bytes for RGXF, 64 KiB for `.npy`).
    let header_deadline = header.map(|h| if first { since + h } else { started + h });
    let idle_in_header = idle.map(|t| started + t);
    let deadline = match (header_deadline, idle_in_header) {
        (Some(h), Some(i)) => Some(h.min(i)),
        (h, i) => h.or(i),
    };
    let by_idle =
        idle_in_header.is_some() && deadline == idle_in_header && deadline != header_deadline;
    let missed = |got: u64, want: u64| {
        if by_idle {
            return Next::Failed(ErrorLine {
                peer: peer.to_owned(),
                array,
                error: format!(
                    "the header was not whole within --timeout {} ms of its first byte (after \
                     {got} of {want} bytes)",
                    idle.unwrap_or_default().as_millis()
                ),
                kind: "timed_out",
                transferred: Some(got),
                expected: Some(want),
            });
        }
        Next::Failed(ErrorLine {
            peer: peer.to_owned(),
            array,
            error: format!(
                "the header was not whole within {} ms{} (after {got} of {want} bytes)",
                header.unwrap_or_default().as_millis(),
                if first {
                    " of the connection's start"
                } else {
                    " of its first byte"
                }
            ),
            kind: "header_timeout",
            transferred: Some(got),
            expected: Some(want),
        })
    };
    // A broken read inside the header, as the library reports it (bytes of the message).
    let broken = |r: Got, before: u64, whole: u64| match r {
        Got::Ended(got) => fail(ringxfer::Error::UnexpectedEof {
            transferred: before + got as u64,
            expected: whole,
        }),
        Got::Broken(got, source) => fail(ringxfer::Error::Io {
            op: "recv",
            transferred: before + got as u64,
            expected: whole,
            source,
        }),
        Got::TimedOut(got) => missed(before + got as u64, whole),
        Got::Whole => unreachable!("only failures are passed"),
    };
    if byte == npy::MAGIC[0] {
        return match read_npy_header(sock, deadline, max_payload) {
            Ok(h) => Next::Header(Head::Npy(h), started),
            Err(NpyFail::Read(r, before, whole)) => broken(r, before, whole),
            Err(NpyFail::Rejected(e)) => fail(frame::FrameError::of_npy(e).into()),
        };
    }
    let mut head = [0u8; HEADER_MAX];
    match read_exact_by(sock, &mut head[..prefix], deadline) {
        Got::Whole => {}
        r => return broken(r, 0, prefix as u64),
    }
    let p = match frame::decode_prefix(head[..prefix].try_into().expect("32 bytes"), max_payload) {
        Ok(p) => p,
        Err(e) => return fail(e.into()),
    };
    let whole = (p.header_len + frame::TRAILER_LEN) as u64 + p.payload_len;
    match read_exact_by(sock, &mut head[prefix..p.header_len], deadline) {
        Got::Whole => {}
        r => return broken(r, prefix as u64, whole),
    }
    match Header::decode(&head[..p.header_len], max_payload) {
        Ok(h) => Next::Header(Head::Rgxf(h), started),
        Err(e) => fail(e.into()),
    }
}

/// Why [`read_npy_header`] stopped.
enum NpyFail {
    /// A read broke: what it gave, the header bytes before it, and the bytes of the step
    /// (8, the prefix, then the whole header — as the library counts them).
    Read(Got, u64, u64),
    /// The header was rejected.
    Rejected(npy::NpyError),
}

/// Reads a `.npy` header by `deadline` in the library's bounded steps: magic and version (8
/// bytes), the prefix (10 or 12), then exactly the header it announces (at most
/// [`npy::MAX_HEADER_LEN`], 64 KiB, the only allocation), parsed with `max_payload` before
/// the payload is touched.
fn read_npy_header(
    sock: &Conn,
    deadline: Option<Instant>,
    max_payload: u64,
) -> Result<npy::NpyHeader, NpyFail> {
    let read =
        |buf: &mut [u8], before: usize, whole: usize| match read_exact_by(sock, buf, deadline) {
            Got::Whole => Ok(()),
            r => Err(NpyFail::Read(r, before as u64, whole as u64)),
        };
    let mut start = [0u8; 12];
    let s = npy::START_LEN;
    read(&mut start[..s], 0, s)?;
    let version = npy::version_from_start(&start[..s]).map_err(NpyFail::Rejected)?;
    let p = version.prefix_len();
    read(&mut start[s..p], s, p)?;
    let header_len = npy::header_len_from_prefix(&start[..p]).map_err(NpyFail::Rejected)?;
    let mut head = vec![0u8; header_len];
    head[..p].copy_from_slice(&start[..p]);
    read(&mut head[p..], p, header_len)?;
    npy::parse_header(&head, max_payload).map_err(NpyFail::Rejected)
}

/// The longest header: `header_len(MAX_NDIM)`.
const HEADER_MAX: usize = frame::PREFIX_LEN + 8 * frame::MAX_NDIM + 8;

/// What waiting for a message's first byte gave.
enum Wait {
    /// The first byte (peeked, still unread).
    Ready(u8),
    Closed,
    Broken(io::Error),
    TimedOut,
}

/// What a bounded read gave.
enum Got {
    /// Every byte asked for.
    Whole,
    /// The stream ended after this many.
    Ended(usize),
    /// An OS error after this many.
    Broken(usize, io::Error),
    /// The deadline passed after this many.
    TimedOut(usize),
}

/// Time left until `deadline` (`Ok(None)`: no deadline; `Err(())`: it passed).
fn left(deadline: Option<Instant>) -> Result<Option<Duration>, ()> {
    match deadline {
        None => Ok(None),
        Some(d) => match d.checked_duration_since(Instant::now()) {
            Some(l) if !l.is_zero() => Ok(Some(l)),
            _ => Err(()),
        },
    }
}

/// Waits in `poll(POLLIN | POLLRDHUP)` for at most the time left; `Ok(false)` when it passed.
/// An interrupted poll (`EINTR`: a signal, or SIGSTOP/SIGCONT) resumes with the time left,
/// so a signal storm cannot stretch a deadline.
fn poll_readable(sock: &Conn, deadline: Option<Instant>) -> io::Result<bool> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    loop {
        let Ok(left) = left(deadline) else {
            return Ok(false);
        };
        let t = left.map(|l| Timespec {
            tv_sec: l.as_secs() as _,
            tv_nsec: l.subsec_nanos().into(),
        });
        let mut fds = [PollFd::new(sock, PollFlags::IN | PollFlags::RDHUP)];
        match poll(&mut fds, t.as_ref()) {
            Ok(0) => {}
            Ok(_) => return Ok(true),
            Err(e) if e == rustix::io::Errno::INTR => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits until `sock` has a byte to read (peeked, not consumed) or the peer closed.
fn first_byte(sock: &Conn, deadline: Option<Instant>) -> Wait {
    let mut b = [0u8; 1];
    loop {
        match rustix::net::recv(sock, &mut b, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
            Ok((_, 0)) => return Wait::Closed,
            Ok(_) => return Wait::Ready(b[0]),
            Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::INTR => {
                match poll_readable(sock, deadline) {
                    Ok(true) => {}
                    Ok(false) => return Wait::TimedOut,
                    Err(e) => return Wait::Broken(e),
                }
            }
            Err(e) => return Wait::Broken(e.into()),
        }
    }
}

/// Reads exactly `buf.len()` bytes from `sock` by `deadline` (non-blocking reads,
/// `MSG_DONTWAIT`, between waits in [`poll_readable`]; the socket's own mode is untouched).
fn read_exact_by(sock: &Conn, buf: &mut [u8], deadline: Option<Instant>) -> Got {
    let mut got = 0;
    while got < buf.len() {
        match rustix::net::recv(sock, &mut buf[got..], RecvFlags::DONTWAIT) {
            Ok((_, 0)) => return Got::Ended(got),
            Ok((_, n)) => got += n,
            Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::INTR => {
                match poll_readable(sock, deadline) {
                    Ok(true) => {}
                    Ok(false) => return Got::TimedOut(got),
                    Err(e) => return Got::Broken(got, e),
                }
            }
            Err(e) => return Got::Broken(got, e.into()),
        }
    }
    Got::Whole
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse() {
        assert_eq!(parse_limit("0"), Ok(Limit(None)));
        assert_eq!(parse_limit("30"), Ok(Limit(Some(Duration::from_secs(30)))));
        assert_eq!(
            parse_limit("0.5"),
            Ok(Limit(Some(Duration::from_millis(500))))
        );
        assert!(parse_limit("-1").is_err());
        assert!(parse_limit("x").is_err());
    }

    #[test]
    fn sent_back_is_bounded() {
        let mut s = SentBack::default();
        let line = "x".repeat(99); // 100 bytes with its newline
        let n = 10_000u64;
        for _ in 0..n {
            s.push(line.clone());
            assert!(s.bytes <= SERVER_OUTPUT_BYTES);
        }
        let kept = (SERVER_OUTPUT_BYTES / 100) as u64;
        assert_eq!((s.lines.len() as u64, s.dropped), (kept, n - kept));
        let text = s.finish();
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["dropped_lines"], n - kept);
        assert_eq!(last["kept_lines"], kept);
        assert_eq!(text.lines().count() as u64, kept + 1);
    }
}
