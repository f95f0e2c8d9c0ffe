//! Loopback TCP throughput in one run: ringxfer's uring and blocking backends beside a tokio
//! (epoll) reference, `cargo bench --bench throughput`.
//!
//! # What is measured
//!
//! Criterion ids are `MEMORY/PEER/SIZE`:
//!
//! * `PEER`: `uring` and `blocking` are ringxfer [`Engine`]s on both ends (`send_from` /
//!   `recv_into`); `tokio` is what a Rust user would write without ringxfer: a
//!   current-thread tokio runtime on each end, `TcpStream::write_all` / `read_exact`
//!   (edge-triggered epoll and non-blocking `read`/`write` underneath).
//! * `SIZE`: 4KiB, 64KiB, 1MiB, 16MiB, 64MiB (2^20 units) and 400MB (10^6: the recipe's 50,000,000
//!   `f64`). Throughput is set with [`Throughput::Bytes`], so criterion prints bytes per
//!   second in *binary* units (MiB/s, GiB/s = 2^30 bytes/s); multiply GiB/s by 1.0737 to
//!   compare with `ringxfer bench`, which prints GB/s (10^9 bytes/s).
//! * `MEMORY`, where the receiver puts the bytes:
//!   * `pretouched`: one buffer per (peer, size), allocated and filled with `0xAA` before
//!     measuring, reused by every iteration (`recv_into` / `read_exact`). This is the
//!     memoryview recipe's `recv_into` a preallocated array.
//!   * `fresh`: `vec![0u8; size]` allocated inside the iteration, received into, dropped at its
//!     end: the same code on every peer, so it compares the transports on memory that is not
//!     yet mapped. For 64MiB and 400MB glibc serves the `calloc` with a new `mmap`, so the
//!     receive page-faults every 4 KiB page and the drop unmaps it; at 1MiB and below glibc
//!     recycles heap memory (its mmap threshold grows to 32 MiB after the first large free),
//!     so `fresh` there costs a `memset` rather than page faults.
//!   * `framed`: ringxfer's own fresh-array path, `send_array` / `recv_any` per iteration with
//!     the array dropped at its end (the engine recycles dropped arrays' memory, so after the
//!     first iteration the mapping is already touched). It adds the 48+8-byte header and
//!     trailer and a CRC-32 of the payload on both ends, so it has no tokio counterpart; it is
//!     here to show what framing costs against `pretouched`. `ringxfer bench --fresh` measures
//!     the same path with a stopwatch instead of criterion.
//!
//! # How
//!
//! One loopback TCP connection per (memory, peer, size), kept open for all its iterations. A
//! sender thread owns the array (built once) and sends it each time the measured thread asks on
//! a channel, so one iteration is "ask, then receive every byte": the sender is already blocked
//! in (or about to enter) its send. Both ends set `TCP_NODELAY`: with a persistent connection
//! and one small write per iteration, Nagle's algorithm could otherwise hold a 4 KiB write
//! behind a delayed ACK of the previous one; the library itself never touches socket options.
//!
//! Sizes of 64MiB and more use flat sampling with 10 samples and short warm-up and measurement
//! times, so the whole `cargo bench` stays within a few minutes on a 2-core machine.

use std::hint::black_box;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group,
    criterion_main, measurement::WallTime,
};
use ringxfer::{Backend, Engine, Order};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The array sizes, with their labels.
const SIZES: &[(&str, usize)] = &[
    ("4KiB", 4 << 10),
    ("64KiB", 64 << 10),
    ("1MiB", 1 << 20),
    ("16MiB", 16 << 20),
    ("64MiB", 64 << 20),
    ("400MB", 400_000_000),
];

/// Who is on both ends of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    /// A ringxfer [`Engine`] with this backend.
    Ringxfer(Backend),
    /// tokio `TcpStream` on a current-thread runtime.
    Tokio,
}

impl Peer {
    fn name(self) -> String {
        match self {
            Peer::Ringxfer(b) => b.to_string(),
            Peer::Tokio => "tokio".to_owned(),
        }
    }
}

/// Where the receiver puts the bytes (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Memory {
    Pretouched,
    Fresh,
    Framed,
}

impl Memory {
    fn name(self) -> &'static str {
        match self {
            Memory::Pretouched => "pretouched",
            Memory::Fresh => "fresh",
            Memory::Framed => "framed",
        }
    }

    fn peers(self) -> &'static [Peer] {
        const ALL: &[Peer] = &[
            Peer::Ringxfer(Backend::Uring),
            Peer::Ringxfer(Backend::Blocking),
            Peer::Tokio,
        ];
        match self {
            Memory::Pretouched | Memory::Fresh => ALL,
            Memory::Framed => &ALL[..2],
        }
    }
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime")
}

/// The receiving end of a connection.
enum Receiver {
    Ringxfer {
        engine: Box<Engine>,
        sock: TcpStream,
    },
    Tokio {
        rt: tokio::runtime::Runtime,
        sock: tokio::net::TcpStream,
    },
}

impl Receiver {
    /// Fills every byte of `buf`.
    fn recv_into(&mut self, buf: &mut [u8]) {
        match self {
            Receiver::Ringxfer { engine, sock } => engine.recv_into(sock, buf).expect("recv"),
            Receiver::Tokio { rt, sock } => {
                rt.block_on(sock.read_exact(buf)).expect("read_exact");
            }
        }
    }

    /// Receives one framed array and drops it (its memory goes back to the engine's pool).
    fn recv_framed(&mut self) {
        match self {
            Receiver::Ringxfer { engine, sock } => {
                let a = engine.recv_any(sock).expect("recv_any");
                black_box(a.bytes().len());
            }
            Receiver::Tokio { .. } => unreachable!("framed arrays are ringxfer's"),
        }
    }
}

/// A connected pair: the measured receiver and a sender thread that sends the array once per
/// message on `go`.
struct Pair {
    go: mpsc::Sender<()>,
    rx: Receiver,
    sender: Option<thread::JoinHandle<()>>,
}

impl Pair {
    fn new(peer: Peer, framed: bool, size: usize) -> Pair {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let (go, asks) = mpsc::channel::<()>();
        let sender = thread::spawn(move || send_loop(peer, framed, size, addr, &asks));
        let (sock, _) = l.accept().expect("accept");
        sock.set_nodelay(true).expect("TCP_NODELAY");
        let rx = match peer {
            Peer::Ringxfer(backend) => Receiver::Ringxfer {
                engine: Box::new(Engine::new(backend).expect("engine")),
                sock,
            },
            Peer::Tokio => {
                let rt = current_thread_runtime();
                sock.set_nonblocking(true).expect("O_NONBLOCK");
                let sock = {
                    let _ctx = rt.enter();
                    tokio::net::TcpStream::from_std(sock).expect("tokio stream")
                };
                Receiver::Tokio { rt, sock }
            }
        };
        Pair {
            go,
            rx,
            sender: Some(sender),
        }
    }
}

/// The sender thread: connects, builds the array, then sends it once per message on `asks`
/// until the channel closes.
fn send_loop(peer: Peer, framed: bool, size: usize, addr: SocketAddr, asks: &mpsc::Receiver<()>) {
    let data = pattern(size);
    let s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("TCP_NODELAY");
    match peer {
        Peer::Ringxfer(backend) => {
            let mut e = Engine::new(backend).expect("engine");
            let shape = [size as u64];
            while asks.recv().is_ok() {
                if framed {
                    e.send_array(&s, &data, &shape, Order::C)
                        .expect("send_array");
                } else {
                    e.send_from(&s, &data).expect("send");
                }
            }
        }
        Peer::Tokio => {
            let rt = current_thread_runtime();
            s.set_nonblocking(true).expect("O_NONBLOCK");
            let mut s = {
                let _ctx = rt.enter();
                tokio::net::TcpStream::from_std(s).expect("tokio stream")
            };
            while asks.recv().is_ok() {
                rt.block_on(s.write_all(&data)).expect("write_all");
            }
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        // Closing the channel ends the sender's loop.
        let (tx, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.go, tx));
        if let Some(h) = self.sender.take() {
            h.join().expect("sender thread");
        }
    }
}

/// The bytes every sender sends.
fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 31 + 7) as u8).collect()
}

/// Sampling settings by size: big arrays get 10 flat samples and short times.
fn configure(g: &mut BenchmarkGroup<'_, WallTime>, size: usize) {
    g.throughput(Throughput::Bytes(size as u64));
    if size >= 64 << 20 {
        g.sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(if size >= 256 << 20 { 4 } else { 2 }));
    } else {
        g.sampling_mode(SamplingMode::Auto)
            .sample_size(30)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(1));
    }
}

fn throughput(c: &mut Criterion) {
    let uring_ok = ringxfer::probe().available;
    if !uring_ok {
        eprintln!(
            "skipping uring: {}",
            ringxfer::probe().reason.as_deref().unwrap_or("unavailable")
        );
    }
    for memory in [Memory::Pretouched, Memory::Fresh, Memory::Framed] {
        let mut g = c.benchmark_group(memory.name());
        for &(label, size) in SIZES {
            configure(&mut g, size);
            // The pre-touched buffer, shared by the peers of this size.
            let mut buf = match memory {
                Memory::Pretouched => vec![0xAAu8; size],
                Memory::Fresh | Memory::Framed => Vec::new(),
            };
            for &peer in memory.peers() {
                if peer == Peer::Ringxfer(Backend::Uring) && !uring_ok {
                    continue;
                }
                let mut pair = Pair::new(peer, memory == Memory::Framed, size);
                // A criterion filter (`cargo bench -- 400MB`, `-- --list`) skips the closure:
                // then there are no received bytes to check.
                let mut ran = false;
                g.bench_function(BenchmarkId::new(peer.name(), label), |b| {
                    ran = true;
                    b.iter(|| {
                        pair.go.send(()).expect("sender alive");
                        match memory {
                            Memory::Pretouched => pair.rx.recv_into(&mut buf),
                            Memory::Fresh => {
                                let mut v = vec![0u8; size];
                                pair.rx.recv_into(&mut v);
                                black_box(&v);
                            }
                            Memory::Framed => pair.rx.recv_framed(),
                        }
                    })
                });
                if memory == Memory::Pretouched && ran {
                    // The last iteration must have delivered the whole array, in order.
                    assert!(buf == pattern(size), "{} {label}: wrong bytes", peer.name());
                    buf.fill(0xAA);
                }
            }
        }
        g.finish();
    }
}

criterion_group!(benches, throughput);
criterion_main!(benches);
