//! `ringxfer serve` under load and under garbage (issue "Faults and limits", cases 9 and 10),
//! the built binary as a child process, clients on threads of this test:
//!
//! * **64 concurrent clients** each send 3 framed arrays of 1–4 MiB (8 dtypes, 1-, 2- and
//!   3-D shapes, C and F order) through the library, while 6 hostile clients connect at
//!   the same moment: 2 send random bytes, 2 close in the middle of a header, 2 announce a
//!   payload over `--max-payload`. Every one of the 192 arrays is reported verified (CRC)
//!   and holding the arange pattern, each hostile client gets one error line of the right
//!   kind, a client that comes afterwards is served, and the server's peak memory stays
//!   within the bound below.
//! * **Garbage**: random byte streams (15 seeds, 4 MiB each, five flavours from pure noise to
//!   valid headers with noise after them) into `serve --max-payload 1MiB`: every
//!   connection gets exactly one error line, nothing is allocated beyond the limit (peak
//!   RSS and peak virtual size checked), and a valid client is served afterwards.
//!
//! **Memory bound of the load test** (`--max-payload 4MiB --recycle 16MiB`): each connection
//! holds at most one array (≤ 4 MiB) at a time, and the process-wide recycling pool at most
//! 16 MiB, so the arrays take ≤ 64 × 4 MiB + 16 MiB = 272 MiB. On top of the server's
//! starting RSS we allow 1 MiB per connection (thread stack, ring, socket bookkeeping) and
//! 64 MiB of slack (allocator arenas): peak RSS ≤ start + 64 × (4 + 1) MiB + 16 MiB + 64 MiB.

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use ringxfer::dtype::{DType, fill_arange};
use ringxfer::frame::{Header, header_len};
use ringxfer::{Backend, Engine, Order};
use serde_json::Value;
use util::bin::{assert_arange_line, spawn_serve};
use util::proc::{Killed, Lines, proc_status_kib};
use util::*;

const MIB: u64 = 1 << 20;
const GOOD: usize = 64;
const ARRAYS: usize = 3;

fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object: {line:?}: {e}"))
}

/// The arange payload of `count` elements of `dtype`.
fn arange(dtype: DType, count: u64) -> Vec<u8> {
    let mut b = vec![0u8; count as usize * dtype.itemsize()];
    fill_arange(dtype, &mut b);
    b
}

/// Array `k` of good client `i`: dtype, shape and order; 1–4 MiB of payload.
fn spec(i: usize, k: usize) -> (DType, Vec<u64>, Order) {
    let dtypes = ["<f8", "<f4", ">i4", "|u1", "<i8", ">f8", "<u2", "<i2"];
    let d: DType = dtypes[(i + k) % dtypes.len()].parse().unwrap();
    let bytes = MIB + ((i * ARRAYS + k) as u64 * 337 * 1024) % (3 * MIB);
    let count = (bytes / d.itemsize() as u64) & !15;
    match k % 3 {
        0 => (d, vec![count], Order::C),
        1 => (d, vec![count / 8, 8], Order::F),
        _ => (d, vec![2, count / 16, 8], Order::C),
    }
}

/// `n` bytes of xorshift noise from `seed`.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; n];
    fill_pattern(&mut v, seed ^ 0x5eed);
    v
}

/// Writes `bytes` (the server may close first: a failed write is fine), half-closes, and
/// waits (≤ 30 s) for the server to close its side.
fn hostile_write(mut sock: TcpStream, bytes: &[u8]) {
    let _ = sock.write_all(bytes);
    let _ = sock.shutdown(Shutdown::Write);
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut sink = [0u8; 4096];
    loop {
        match sock.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Peak RSS and peak virtual size of `pid`, in KiB.
fn peaks(pid: u32) -> (u64, u64) {
    (
        proc_status_kib(pid, "VmHWM").expect("VmHWM"),
        proc_status_kib(pid, "VmPeak").expect("VmPeak"),
    )
}

/// A valid client after the trouble: one array, reported verified.
fn still_serves(lines: &Lines, addr: SocketAddr, backend: Backend, what: &str) {
    let sock = TcpStream::connect(addr).expect("connect after the load");
    let me = sock.local_addr().unwrap().to_string();
    let d: DType = "<f8".parse().unwrap();
    Engine::new(backend)
        .unwrap()
        .send_array_bytes(&sock, d, &arange(d, 100_000), &[1000, 100], Order::F)
        .expect("the last client sends");
    drop(sock);
    let v = json(&lines.take(1, Duration::from_secs(20))[0]);
    assert_eq!(v["peer"], me, "{what}: {v}");
    assert_eq!(v["shape"], serde_json::json!([1000, 100]), "{what}: {v}");
    assert_eq!(
        (&v["verified"], &v["arange"]),
        (&true.into(), &true.into()),
        "{what}: {v}"
    );
}

fn serve_load(backend: Backend) {
    within(Duration::from_secs(300), "serve under load", move || {
        serve_load_inner(backend)
    });
}

fn serve_load_inner(backend: Backend) {
    let what = format!("serve --backend {backend}, 64 clients + 6 hostile");
    let max_payload = 4 * MIB;
    let (server, lines, addr) = spawn_serve(&[
        "--json",
        "--backend",
        &backend.to_string(),
        "--max-payload",
        "4MiB",
        "--recycle",
        "16MiB",
        "--timeout",
        "60",
    ]);
    let pid = server.pid();
    let start_rss = proc_status_kib(pid, "VmRSS").unwrap();
    let (_, start_peak_vm) = peaks(pid);
    // Every client first makes what it sends (`ready`), then connects, then all start at
    // once (`start`): a client connected while others still made their megabytes sat
    // silent for as long, against serve's default 5 s --header-timeout on a loaded machine.
    let ready = Arc::new(Barrier::new(GOOD + 6));
    let start = Arc::new(Barrier::new(GOOD + 6));

    let mut good = Vec::new();
    for i in 0..GOOD {
        let (ready, start) = (Arc::clone(&ready), Arc::clone(&start));
        good.push(thread::spawn(move || {
            let payloads: Vec<(DType, Vec<u64>, Order, Vec<u8>)> = (0..ARRAYS)
                .map(|k| {
                    let (d, shape, order) = spec(i, k);
                    let p = arange(d, shape.iter().product());
                    (d, shape, order, p)
                })
                .collect();
            let mut e = Engine::new(backend).unwrap();
            ready.wait();
            let sock = TcpStream::connect(addr).expect("connect");
            let me = sock.local_addr().unwrap().to_string();
            start.wait();
            for (d, shape, order, p) in &payloads {
                e.send_array_bytes(&sock, *d, p, shape, *order)
                    .unwrap_or_else(|err| panic!("client {i}: send_array_bytes: {err}"));
            }
            (me, i)
        }));
    }

    // The hostile ones: what each sends, and the error line it must get.
    let three_d = Header::new("<f8".parse().unwrap(), &[4, 4, 4], Order::C)
        .unwrap()
        .encode();
    let huge = Header::new("|u1".parse().unwrap(), &[5 << 30], Order::C)
        .unwrap()
        .encode();
    let just_over = Header::new("|u1".parse().unwrap(), &[max_payload + 1], Order::C)
        .unwrap()
        .encode();
    let mut random0 = noise(64 << 10, 1);
    random0[0] = b'X';
    let mut random1 = noise(1 << 20, 2);
    random1[0] = b'Z';
    let hostile: Vec<(&str, Vec<u8>, &str)> = vec![
        ("random bytes", random0, "bad_magic"),
        ("random bytes, 1 MiB", random1, "bad_magic"),
        (
            "20 bytes of a prefix",
            three_d[..20].to_vec(),
            "unexpected_eof",
        ),
        (
            "prefix + 8 of 24 shape bytes",
            three_d[..40].to_vec(),
            "unexpected_eof",
        ),
        ("announces 5 GiB", huge, "too_large"),
        ("announces max-payload + 1", just_over, "too_large"),
    ];
    let mut bad = Vec::new();
    for (name, bytes, _) in &hostile {
        let (ready, start) = (Arc::clone(&ready), Arc::clone(&start));
        let (name, bytes) = (name.to_string(), bytes.clone());
        bad.push(thread::spawn(move || {
            ready.wait();
            let sock = TcpStream::connect(addr).expect("connect");
            let me = sock.local_addr().unwrap().to_string();
            start.wait();
            hostile_write(sock, &bytes);
            (me, name)
        }));
    }

    let got: Vec<Value> = lines
        .take(GOOD * ARRAYS + hostile.len(), Duration::from_secs(240))
        .iter()
        .map(|l| json(l))
        .collect();
    let good: Vec<(String, usize)> = good.into_iter().map(|h| h.join().unwrap()).collect();
    let bad: Vec<(String, String)> = bad.into_iter().map(|h| h.join().unwrap()).collect();
    let (arrays, errors): (Vec<&Value>, Vec<&Value>) =
        got.iter().partition(|v| v.get("error").is_none());
    assert_eq!(
        (arrays.len(), errors.len()),
        (GOOD * ARRAYS, hostile.len()),
        "{what}: errors {errors:#?}"
    );
    for (peer, i) in &good {
        let mine: Vec<&&Value> = arrays.iter().filter(|v| v["peer"] == *peer).collect();
        assert_eq!(mine.len(), ARRAYS, "{what}: client {i} ({peer}): {mine:#?}");
        for k in 0..ARRAYS {
            let (d, shape, order) = spec(*i, k);
            let v = mine
                .iter()
                .find(|v| v["array"] == k as u64 + 1)
                .unwrap_or_else(|| panic!("{what}: client {i}: no array {}", k + 1));
            let bytes = assert_arange_line(v, d, &shape, order);
            assert!((MIB - 1024..=max_payload).contains(&bytes), "{bytes}");
            assert_eq!(v["backend"], backend.to_string(), "{v}");
        }
    }
    for (peer, name) in &bad {
        let mine: Vec<&&Value> = errors.iter().filter(|v| v["peer"] == *peer).collect();
        assert_eq!(mine.len(), 1, "{what}: {name}: one error line: {errors:#?}");
        let e = mine[0];
        let kind = hostile.iter().find(|h| h.0 == name).unwrap().2;
        assert_eq!(e["kind"], kind, "{what}: {name}: {e}");
        assert_eq!(e["array"], 1, "{e}");
        match name.as_str() {
            "20 bytes of a prefix" => {
                assert_eq!(
                    (&e["transferred"], &e["expected"]),
                    (&20.into(), &32.into())
                )
            }
            "prefix + 8 of 24 shape bytes" => {
                let whole = header_len(3) as u64 + 4 * 4 * 4 * 8 + 8;
                assert_eq!(
                    (&e["transferred"], &e["expected"]),
                    (&40.into(), &whole.into()),
                    "{e}"
                )
            }
            _ => {}
        }
    }

    // Nothing more was said (no duplicate or stray lines).
    let extra = lines.drain_for(Duration::from_millis(300));
    assert!(extra.is_empty(), "{what}: stray lines {extra:#?}");

    let (hwm, peak_vm) = peaks(pid);
    let bound_kib = start_rss + (GOOD as u64 * (4 + 1) + 16 + 64) * 1024;
    eprintln!(
        "{what}: server RSS {start_rss} KiB at start, peak {hwm} KiB (bound {bound_kib} KiB); \
         peak virtual {start_peak_vm} -> {peak_vm} KiB"
    );
    assert!(
        hwm <= bound_kib,
        "{what}: server peak RSS {hwm} KiB over the bound {bound_kib} KiB"
    );
    // The 5 GiB announcement was refused before allocating: no 5 GiB mapping, even untouched.
    assert!(
        peak_vm < start_peak_vm + (3 << 20),
        "{what}: peak virtual size grew from {start_peak_vm} to {peak_vm} KiB"
    );

    still_serves(&lines, addr, backend, &what);
    assert!(
        server_alive(&server),
        "{what}: the server exited under load"
    );
}

fn server_alive(server: &Killed) -> bool {
    proc_status_kib(server.pid(), "VmRSS").is_some()
}

both_backends! {
    /// Case 9: 64 concurrent clients × 3 arrays, and 6 hostile ones at the same time.
    fn serve_64_clients_with_hostile_ones(backend) { serve_load(backend) }
}

// ---------------------------------------------------------------------------------------------
// Garbage
// ---------------------------------------------------------------------------------------------

/// Stream `seed` for the garbage test (4 MiB): five flavours, by `seed % 5`.
fn garbage_stream(seed: u64) -> (Vec<u8>, &'static str) {
    let n = 4 << 20;
    let mut s = noise(n, seed);
    let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let flavour = match seed % 5 {
        0 => {
            if &s[..4] == b"RGXF" {
                s[0] = b'X';
            }
            "pure noise"
        }
        1 => {
            // Magic and version right, the rest of the header noise.
            s[..4].copy_from_slice(b"RGXF");
            s[4..6].copy_from_slice(&1u16.to_le_bytes());
            "magic + version, then noise"
        }
        2 => {
            // A valid header of up to 1 MiB with one byte of it flipped, then noise.
            let dims = [next() % 512 + 1, next() % 256 + 1];
            let h = Header::new("<i2".parse().unwrap(), &dims, Order::C)
                .unwrap()
                .encode();
            s[..h.len()].copy_from_slice(&h);
            let at = (next() % h.len() as u64) as usize;
            s[at] ^= 1 << (next() % 8);
            "valid header with one bit flipped, then noise"
        }
        3 => {
            // A valid header of ≤ 1 MiB: the payload and trailer are noise.
            let len = next() % (1 << 20) + 1;
            let h = Header::new("|u1".parse().unwrap(), &[len], Order::F)
                .unwrap()
                .encode();
            s[..h.len()].copy_from_slice(&h);
            "valid header (<= 1 MiB), noise as payload and trailer"
        }
        _ => {
            // A valid header announcing 1 MiB + 1 .. 16 GiB.
            let len = (1 << 20) + 1 + next() % ((16 << 30) - (1 << 20));
            let h = Header::new("|u1".parse().unwrap(), &[len], Order::C)
                .unwrap()
                .encode();
            s[..h.len()].copy_from_slice(&h);
            "valid header over the limit, then noise"
        }
    };
    (s, flavour)
}

/// Case 10: random byte streams into `serve --max-payload 1MiB`.
fn garbage_into_serve(backend: Backend) {
    within(Duration::from_secs(180), "garbage into serve", move || {
        let what = format!("serve --backend {backend} --max-payload 1MiB, garbage");
        let (server, lines, addr) = spawn_serve(&[
            "--json",
            "--backend",
            &backend.to_string(),
            "--max-payload",
            "1MiB",
            "--timeout",
            "30",
        ]);
        let pid = server.pid();
        let start_rss = proc_status_kib(pid, "VmRSS").unwrap();
        let (_, start_peak_vm) = peaks(pid);
        let seeds: Vec<u64> = (100..115).collect();
        // Made, then connected, then started together (as in the load test: no connection
        // sits silent while others make their bytes).
        let ready = Arc::new(Barrier::new(seeds.len()));
        let start = Arc::new(Barrier::new(seeds.len()));
        let clients: Vec<_> = seeds
            .iter()
            .map(|&seed| {
                let (ready, start) = (Arc::clone(&ready), Arc::clone(&start));
                thread::spawn(move || {
                    let (bytes, flavour) = garbage_stream(seed);
                    ready.wait();
                    let sock = TcpStream::connect(addr).expect("connect");
                    let me = sock.local_addr().unwrap().to_string();
                    start.wait();
                    hostile_write(sock, &bytes);
                    (me, seed, flavour)
                })
            })
            .collect();
        let got: Vec<Value> = lines
            .take(seeds.len(), Duration::from_secs(120))
            .iter()
            .map(|l| json(l))
            .collect();
        let clients: Vec<(String, u64, &str)> =
            clients.into_iter().map(|h| h.join().unwrap()).collect();
        let extra = lines.drain_for(Duration::from_millis(300));
        assert!(extra.is_empty(), "{what}: stray lines {extra:#?}");
        for (peer, seed, flavour) in &clients {
            let mine: Vec<&Value> = got.iter().filter(|v| v["peer"] == *peer).collect();
            assert_eq!(
                mine.len(),
                1,
                "{what}: seed {seed} ({flavour}): one line: {got:#?}"
            );
            let e = mine[0];
            assert!(
                e["error"].as_str().is_some_and(|s| !s.is_empty()),
                "{what}: seed {seed} ({flavour}): want an error line, got {e}"
            );
            assert_eq!(e["array"], 1, "{e}");
            if flavour.starts_with("valid header over") {
                assert_eq!(e["kind"], "too_large", "{e}");
            }
            if flavour.starts_with("pure noise") {
                assert_eq!(e["kind"], "bad_magic", "{e}");
            }
            eprintln!("{what}: seed {seed} ({flavour}): {}", e["kind"]);
        }
        let (hwm, peak_vm) = peaks(pid);
        // ≤ 1 MiB per connection (only the ≤ 1 MiB headers allocate), plus stacks and
        // allocator slack.
        let bound_kib = start_rss + (seeds.len() as u64 * 2 + 32) * 1024;
        eprintln!(
            "{what}: server RSS {start_rss} KiB at start, peak {hwm} KiB (bound {bound_kib} \
             KiB); peak virtual {start_peak_vm} -> {peak_vm} KiB"
        );
        assert!(
            hwm <= bound_kib,
            "{what}: peak RSS {hwm} KiB over {bound_kib} KiB"
        );
        // Headers announcing up to 16 GiB were refused before any mapping was made.
        assert!(
            peak_vm < start_peak_vm + (3 << 20),
            "{what}: peak virtual size grew from {start_peak_vm} to {peak_vm} KiB"
        );
        still_serves(&lines, addr, backend, &what);
        assert!(server_alive(&server), "{what}: the server exited");
    });
}

both_backends! {
    /// Case 10: random streams (15 seeds, 4 MiB each) into serve with a 1 MiB limit.
    fn serve_garbage_streams_bounded(backend) { garbage_into_serve(backend) }
}
