//! A/B measurement of uring tunings ([`ringxfer::UringTuning`]) against each other and the
//! blocking backend, alternating within one run — a tool for choosing defaults, not an example
//! of the API.
//!
//! ```text
//! cargo run --release --example ring_ab -- SIZE ROUNDS [--ack|--ask] CONFIG...
//! cargo run --release --example ring_ab -- 1MiB 21 default fixed blocking
//! ```
//!
//! `--ack`: after each transfer the receiver writes one byte back and the sender waits for it
//! (plain `write`/`read` on the same sockets) before the next, so every receive starts on an
//! empty socket and waits for the data as it arrives — the case where a `MSG_WAITALL` receive
//! sleeps and wakes per arrival.
//!
//! `--ask`: the pattern of `benches/throughput.rs`: before each transfer the receiver asks the
//! sender on a channel (`std::sync::mpsc`) and then enters its receive, so the receive is
//! usually submitted on an empty socket before the sender has sent anything.
//!
//! Every round runs every CONFIG once, in an order rotated by one per round, each on a new
//! loopback TCP connection: `K` back-to-back transfers of SIZE pre-touched bytes (K = 512 MiB /
//! SIZE, at least 1) between a sending thread and the receiving main thread, each with its own
//! engine kept for the whole run. The last transfer of every run is checked byte for byte.
//!
//! A CONFIG is `blocking`, or `+`-joined uring knobs: `default`, `fixed` (fixed files),
//! `seg=BYTES`, `chain=N`.
//!
//! Printed per CONFIG: median GB/s (10⁹ bytes/s) [min–max] over the rounds, and per transfer
//! the medians of the SQEs and CQEs of each end and of each end's voluntary context switches
//! (`voluntary_ctxt_switches` of `/proc/thread-self/status`: how often the thread slept — a
//! count that does not depend on how loaded the CPUs are), and each end's median CPU seconds
//! (`/proc/thread-self/schedstat`) per 10⁹ bytes.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Barrier;
use std::time::Instant;

use ringxfer::{Backend, Engine, EngineStats, Options, UringTuning};

/// Bytes moved per run (K transfers of SIZE).
const RUN_BYTES: usize = 512 << 20;

fn parse_size(s: &str) -> usize {
    let (num, mult) = [
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("MB", 1_000_000),
    ]
    .iter()
    .find_map(|&(suf, m)| s.strip_suffix(suf).map(|n| (n, m)))
    .unwrap_or((s, 1));
    num.parse::<usize>()
        .unwrap_or_else(|_| panic!("bad size {s:?}"))
        * mult
}

/// The options of one CONFIG.
fn options(config: &str) -> Options {
    if config == "blocking" {
        return Options {
            backend: Backend::Blocking,
            ..Options::default()
        };
    }
    let mut t = UringTuning::default();
    for knob in config.split('+') {
        match knob.split_once('=') {
            None if knob == "default" => {}
            None if knob == "fixed" => t.fixed_files = true,
            Some(("seg", v)) => t.segment_bytes = parse_size(v) as u32,
            Some(("chain", v)) => t.chain_sqes = v.parse().expect("chain=N"),
            _ => panic!("unknown knob {knob:?} in {config:?}"),
        }
    }
    Options {
        backend: Backend::Uring,
        uring: t,
        ..Options::default()
    }
}

/// The calling thread's on-CPU nanoseconds so far (`/proc/thread-self/schedstat`).
fn cpu_ns() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    s.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("schedstat")
}

/// The calling thread's voluntary context switches so far.
fn voluntary_switches() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/status").expect("/proc/thread-self");
    s.lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("voluntary_ctxt_switches")
}

fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (b, _) = l.accept().unwrap();
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    (a, b)
}

/// One run's figures, per transfer where it says so.
struct Run {
    gbps: f64,
    /// Per transfer: (sender SQEs, sender CQEs, receiver SQEs, receiver CQEs).
    ring: [f64; 4],
    /// Per transfer: voluntary context switches of the sender and the receiver.
    switches: [f64; 2],
    /// CPU seconds per 10⁹ bytes of the sender and the receiver.
    cpu: [f64; 2],
}

fn one_run(
    engines: &mut (Engine, Engine),
    data: &[u8],
    got: &mut [u8],
    k: usize,
    pace: Pace,
) -> Run {
    let (tx_sock, rx_sock) = tcp_pair();
    got.fill(0);
    let (tx, rx) = (&mut engines.0, &mut engines.1);
    let (tx0, rx0) = (tx.stats(), rx.stats());
    let barrier = Barrier::new(2);
    let (ask_tx, ask_rx) = std::sync::mpsc::channel::<()>();
    let ack = pace == Pace::Ack;
    let (barrier, tx_sock, data) = (&barrier, &tx_sock, data);
    let tx_engine: &mut Engine = &mut *tx;
    let (secs, (tx_sw, tx_ns), (rx_sw, rx_ns)) = std::thread::scope(|s| {
        let h = s.spawn(move || {
            let (ask_rx, tx) = (ask_rx, tx_engine);
            barrier.wait();
            let (sw, ns) = (voluntary_switches(), cpu_ns());
            for _ in 0..k {
                if pace == Pace::Ask {
                    ask_rx.recv().expect("ask");
                }
                tx.send_from(tx_sock, data).expect("send");
                if ack {
                    (&*tx_sock).read_exact(&mut [0u8]).expect("ack");
                }
            }
            (voluntary_switches() - sw, cpu_ns() - ns)
        });
        barrier.wait();
        let (t0, sw, ns) = (Instant::now(), voluntary_switches(), cpu_ns());
        for _ in 0..k {
            if pace == Pace::Ask {
                ask_tx.send(()).expect("ask");
            }
            rx.recv_into(&rx_sock, got).expect("recv");
            if ack {
                (&rx_sock).write_all(&[1]).expect("ack");
            }
        }
        let rx = (voluntary_switches() - sw, cpu_ns() - ns);
        let tx = h.join().expect("sender");
        (t0.elapsed().as_secs_f64(), tx, rx)
    });
    assert!(got == data, "wrong bytes");
    let per = |a: &EngineStats, b: &EngineStats| {
        let d = a.since(b);
        [d.sqes as f64 / k as f64, d.cqes as f64 / k as f64]
    };
    let (t, r) = (per(&tx.stats(), &tx0), per(&rx.stats(), &rx0));
    Run {
        gbps: (data.len() * k) as f64 / secs / 1e9,
        ring: [t[0], t[1], r[0], r[1]],
        switches: [tx_sw as f64 / k as f64, rx_sw as f64 / k as f64],
        cpu: [tx_ns, rx_ns].map(|ns| ns as f64 / (data.len() * k) as f64),
    }
}

/// How transfers follow each other in a run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pace {
    /// Back to back.
    Free,
    /// `--ack`: the receiver acknowledges each transfer with one byte on the socket.
    Ack,
    /// `--ask`: the receiver asks for each transfer on a channel first.
    Ask,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    assert!(args.len() >= 3, "usage: ring_ab SIZE ROUNDS CONFIG...");
    let size = parse_size(&args[0]);
    let rounds: usize = args[1].parse().expect("ROUNDS");
    let pace = match args[2].as_str() {
        "--ack" => Pace::Ack,
        "--ask" => Pace::Ask,
        _ => Pace::Free,
    };
    let configs = &args[2 + usize::from(pace != Pace::Free)..];
    // Paced transfers also wait a round trip each: a quarter of the bytes per run.
    let k = (RUN_BYTES / if pace == Pace::Free { 1 } else { 4 } / size).max(1);
    let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 4093) as u8).collect();
    let mut got = vec![0u8; size];
    let mut engines: Vec<(Engine, Engine)> = configs
        .iter()
        .map(|c| {
            let o = options(c);
            let e = || Engine::with_options(o.clone()).expect("engine");
            (e(), e())
        })
        .collect();
    let mut runs: Vec<Vec<Run>> = configs.iter().map(|_| Vec::new()).collect();
    for r in 0..rounds {
        for n in 0..configs.len() {
            let c = (n + r) % configs.len();
            runs[c].push(one_run(&mut engines[c], &data, &mut got, k, pace));
        }
        eprint!(".");
        std::io::stderr().flush().ok();
    }
    eprintln!();
    let mode = match pace {
        Pace::Free => "",
        Pace::Ack => ", each acknowledged",
        Pace::Ask => ", each asked for",
    };
    println!("size {size} bytes, {k} transfers per run{mode}, {rounds} rounds");
    for (c, rs) in configs.iter().zip(&mut runs) {
        let mut g: Vec<f64> = rs.iter().map(|r| r.gbps).collect();
        let (lo, hi) = (
            g.iter().copied().fold(f64::INFINITY, f64::min),
            g.iter().copied().fold(0.0, f64::max),
        );
        let m = |f: &dyn Fn(&Run) -> f64| median(&mut rs.iter().map(f).collect::<Vec<_>>());
        println!(
            "{c:<22} {:5.2} GB/s [{lo:5.2}-{hi:5.2}]  per transfer: sqes/cqes send {:.2}/{:.2} recv {:.2}/{:.2}  \
             sleeps send {:.2} recv {:.2}  CPU s/GB send {:.3} recv {:.3}",
            median(&mut g),
            m(&|r| r.ring[0]),
            m(&|r| r.ring[1]),
            m(&|r| r.ring[2]),
            m(&|r| r.ring[3]),
            m(&|r| r.switches[0]),
            m(&|r| r.switches[1]),
            m(&|r| r.cpu[0]),
            m(&|r| r.cpu[1]),
        );
    }
}
