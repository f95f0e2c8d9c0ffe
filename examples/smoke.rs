//! Quick smoke run of both backends over loopback.
use ringxfer::{Backend, Engine};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(50_000_000);
    for b in [
        Backend::Blocking,
        Backend::Uring,
        Backend::Blocking,
        Backend::Uring,
    ] {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let s = TcpStream::connect(addr).unwrap();
            let a: Vec<f64> = (0..n).map(|i| i as f64).collect();
            let mut e = Engine::new(b).unwrap();
            e.send_from(&s, &a).unwrap();
        });
        let (s, _) = l.accept().unwrap();
        let mut v = vec![0f64; n];
        v.iter_mut().for_each(|x| *x = 1.0);
        let mut e = Engine::new(b).unwrap();
        let t0 = Instant::now();
        e.recv_into(&s, &mut v).unwrap();
        let dt = t0.elapsed().as_secs_f64();
        t.join().unwrap();
        let ok = v.iter().enumerate().all(|(i, &x)| x == i as f64);
        println!("{b}: {:.3} GB/s ok={ok}", (n * 8) as f64 / dt / 1e9);
    }
}
