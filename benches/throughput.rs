//! Loopback TCP throughput, blocking vs uring, in one run: `cargo bench --bench throughput`.
//!
//! One connection per (backend, size); a sender thread sends the array each time the measured
//! receiver asks for it, so an iteration is one whole `recv_into` of `size` bytes (the sender
//! is already blocked in, or about to enter, `send_from`). Throughput is reported in bytes/s
//! (criterion prints GB/s as GiB-free decimal units with `Throughput::Bytes`).

use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringxfer::{Backend, Engine};

/// A connected pair with a sender thread that sends `size` bytes per message on the channel.
struct Pair {
    go: mpsc::Sender<()>,
    sock: TcpStream,
    sender: Option<thread::JoinHandle<()>>,
}

impl Pair {
    fn new(backend: Backend, size: usize) -> Pair {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let (go, rx) = mpsc::channel::<()>();
        let sender = thread::spawn(move || {
            let s = TcpStream::connect(addr).expect("connect");
            let data: Vec<u8> = (0..size).map(|i| (i * 31 + 7) as u8).collect();
            let mut e = Engine::new(backend).expect("engine");
            while rx.recv().is_ok() {
                e.send_from(&s, &data).expect("send");
            }
        });
        let (sock, _) = l.accept().expect("accept");
        Pair {
            go,
            sock,
            sender: Some(sender),
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let (tx, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.go, tx));
        if let Some(h) = self.sender.take() {
            h.join().expect("sender thread");
        }
    }
}

fn throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("loopback_tcp");
    for &(label, size) in &[
        ("1MiB", 1usize << 20),
        ("64MiB", 64 << 20),
        ("400MB", 400_000_000),
    ] {
        g.throughput(Throughput::Bytes(size as u64));
        if size >= 64 << 20 {
            g.sample_size(10);
        } else {
            g.sample_size(50);
        }
        let mut buf = vec![0xAAu8; size];
        for backend in [Backend::Blocking, Backend::Uring] {
            if backend == Backend::Uring && !ringxfer::probe().available {
                eprintln!("skipping uring: {:?}", ringxfer::probe().reason);
                continue;
            }
            let pair = Pair::new(backend, size);
            let mut e = Engine::new(backend).expect("engine");
            g.bench_with_input(
                BenchmarkId::new(backend.to_string(), label),
                &size,
                |b, _| {
                    b.iter(|| {
                        pair.go.send(()).expect("sender alive");
                        e.recv_into(&pair.sock, &mut buf).expect("recv");
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
