//! The machine's own ceilings for a loopback transfer, as context for the benchmarks: CRC-32
//! (`crc32fast`) over 400 MB cold and over a 4 MiB buffer hot in cache, and a 400 MB
//! `copy_from_slice` into never-touched memory (each 4 KiB page faulted in and zeroed by the
//! kernel during the copy) and into touched memory. A loopback TCP transfer copies every
//! byte twice in the kernel (sender's buffer → socket buffer → receiver's buffer).
//!
//! ```text
//! cargo run --release --example mem_speed [ROUNDS]
//! ```
//!
//! Prints GB/s (10⁹ bytes/s) per round; not a test of ringxfer.

use std::hint::black_box;
use std::time::Instant;

const N: usize = 400_000_000;
const HOT: usize = 4 << 20;

fn gbps(bytes: usize, t: Instant) -> f64 {
    bytes as f64 / t.elapsed().as_secs_f64() / 1e9
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(3, |r| r.parse().expect("ROUNDS: a number"));
    let src: Vec<u8> = (0..N).map(|i| (i * 7 + i / 4093) as u8).collect();
    for round in 1..=rounds {
        let t = Instant::now();
        let crc = black_box(crc32fast::hash(black_box(&src)));
        let cold = gbps(N, t);

        let t = Instant::now();
        let mut h = crc32fast::Hasher::new();
        for _ in 0..100 {
            h.update(black_box(&src[..HOT]));
        }
        black_box(h.finalize());
        let hot = gbps(100 * HOT, t);

        let t = Instant::now();
        let mut dst = vec![0u8; N]; // calloc'd: pages fault in during the copy
        dst.copy_from_slice(&src);
        let fresh = gbps(N, t);
        black_box(&dst);

        let t = Instant::now();
        dst.copy_from_slice(&src);
        let touched = gbps(N, t);
        black_box(&dst);

        println!(
            "round {round}: crc32 cold {cold:.2} GB/s, hot {hot:.2} GB/s (crc {crc:08x}); \
             copy into fresh memory {fresh:.2} GB/s, into touched memory {touched:.2} GB/s"
        );
    }
}
