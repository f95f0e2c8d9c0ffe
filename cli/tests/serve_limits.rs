//! `ringxfer serve`'s defaults for a server on a network (issue 8, items 5 and 6), the built
//! binary as a child process:
//!
//! * 128 clients that connect, send one byte and go quiet do not keep a valid client out: it
//!   is served within 5 s under the default settings (one idle client is evicted for it);
//! * with every slot busy moving an array, a new client is refused with a one-line reason
//!   (to it and on the server) instead of waiting forever;
//! * `--header-timeout`: a partial first header, a connection that sends nothing, and a
//!   partial later header are each dropped with one `header_timeout` line naming the bytes;
//! * a SIGSTOP/SIGCONT storm (each makes a receive with `SO_RCVTIMEO` fail with `EINTR`)
//!   does not keep a silent client's idle timeout from firing;
//! * `--get-server-output` keeps a bounded tail of lines: 100,000 tiny arrays on one
//!   connection leave serve's RSS within a few MiB, and the client is told how many lines
//!   were dropped.

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use ringxfer::dtype::{DType, fill_arange};
use ringxfer::frame::{Header, header_len};
use ringxfer::{ArrayView, Backend, Engine, Order};
use serde_json::Value;
use util::bin::{BIN, spawn_serve};
use util::proc::proc_status_kib;
use util::*;

fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object: {line:?}: {e}"))
}

/// The line in `got` about the client on `sock` (its `peer` is the socket's local address).
#[track_caller]
fn line_of(got: &[Value], sock: &TcpStream) -> Value {
    let me = sock.local_addr().unwrap().to_string();
    got.iter()
        .find(|v| v["peer"] == me)
        .unwrap_or_else(|| panic!("no line for {me}: {got:#?}"))
        .clone()
}

fn arange(dtype: DType, count: u64) -> Vec<u8> {
    let mut b = vec![0u8; count as usize * dtype.itemsize()];
    fill_arange(dtype, &mut b);
    b
}

/// Sends one `<f8` array of 16 elements from a new connection; returns the socket and its
/// local address (the server's `peer`).
fn valid_client(addr: std::net::SocketAddr, backend: Backend) -> (TcpStream, String) {
    let sock = TcpStream::connect(addr).expect("connect");
    let me = sock.local_addr().unwrap().to_string();
    let d: DType = "<f8".parse().unwrap();
    Engine::new(backend)
        .unwrap()
        .send_array_bytes(&sock, d, &arange(d, 16), &[16], Order::C)
        .expect("the valid client sends");
    (sock, me)
}

fn idle_clients_do_not_block(backend: Backend) {
    within(Duration::from_secs(60), "128 idle + 1 valid", move || {
        let (_server, lines, addr) = spawn_serve(&["--json", "--backend", &backend.to_string()]);
        let idle: Vec<TcpStream> = (0..128)
            .map(|_| {
                let mut s = TcpStream::connect(addr).expect("connect an idle client");
                s.write_all(b"R").unwrap();
                s
            })
            .collect();
        let idle_peers: Vec<String> = idle
            .iter()
            .map(|s| s.local_addr().unwrap().to_string())
            .collect();
        let t0 = Instant::now();
        let (_sock, me) = valid_client(addr, backend);
        // Lines until the valid client's array line.
        let mut seen = Vec::new();
        let served = loop {
            let left = Duration::from_secs(5).saturating_sub(t0.elapsed());
            match lines.next(left) {
                Some(l) => {
                    let v = json(&l);
                    if v["peer"] == me {
                        break v;
                    }
                    seen.push(v);
                }
                None => {
                    panic!("the valid client was not served within 5 s; lines so far: {seen:#?}")
                }
            }
        };
        let took = t0.elapsed();
        eprintln!("served after {took:?}");
        // The evicted client's line may come after the valid client's (how long after is up
        // to the scheduler): wait for it, then check that nothing more is said.
        if seen.is_empty() {
            seen.extend(
                lines
                    .take(1, Duration::from_secs(20))
                    .iter()
                    .map(|l| json(l)),
            );
        }
        seen.extend(
            lines
                .drain_for(Duration::from_millis(500))
                .iter()
                .map(|l| json(l)),
        );
        assert_eq!(
            (&served["verified"], &served["arange"], &served["bytes"]),
            (&true.into(), &true.into(), &128.into()),
            "{served}"
        );
        // It took an idle client's slot: that one was told so (one line, kind `evicted`),
        // and nobody else was dropped for it.
        assert_eq!(seen.len(), 1, "{seen:#?}");
        assert_eq!(seen[0]["kind"], "evicted", "{}", seen[0]);
        let victim = seen[0]["peer"].as_str().unwrap();
        let i = idle_peers
            .iter()
            .position(|p| p == victim)
            .expect("an idle client was evicted");
        let mut s = &idle[i];
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 16];
        assert_eq!(
            s.read(&mut b).unwrap(),
            0,
            "the evicted client sees the close"
        );
    });
}

both_backends! {
    /// Issue 8 item 6: 128 idle clients + 1 valid client under the default settings.
    fn serve_128_idle_clients_and_a_valid_one(backend) { idle_clients_do_not_block(backend) }
}

/// Every slot busy moving an array: a newcomer is refused after the queue wait, with one line
/// to it and one `refused` line on the server; the busy client is not disturbed.
#[test]
fn serve_refuses_when_every_slot_is_busy() {
    within(Duration::from_secs(60), "refusal", || {
        let (_server, lines, addr) = spawn_serve(&["--json", "--max-clients", "1"]);
        // The busy one: a 1 MiB array, its payload trickled in 4 KiB every 50 ms.
        let d: DType = "|u1".parse().unwrap();
        let payload = arange(d, 1 << 20);
        let head = Header::new(d, &[1 << 20], Order::C).unwrap().encode();
        let busy = TcpStream::connect(addr).unwrap();
        let busy_peer = busy.local_addr().unwrap().to_string();
        let trickle = thread::spawn(move || {
            let mut s = &busy;
            s.write_all(&head).unwrap();
            let t0 = Instant::now();
            for c in payload.chunks(4096) {
                if t0.elapsed() > Duration::from_secs(4) {
                    break;
                }
                s.write_all(c).unwrap();
                thread::sleep(Duration::from_millis(50));
            }
            busy
        });
        thread::sleep(Duration::from_millis(300));
        let t0 = Instant::now();
        let mut newcomer = TcpStream::connect(addr).unwrap();
        let me = newcomer.local_addr().unwrap().to_string();
        newcomer
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut told = String::new();
        newcomer.read_to_string(&mut told).unwrap();
        let took = t0.elapsed();
        assert!(
            told.starts_with(
                "ringxfer serve: refused: every connection slot (--max-clients) is busy"
            ),
            "{told:?}"
        );
        assert_eq!(told.matches('\n').count(), 1, "one line: {told:?}");
        assert!(
            (Duration::from_millis(1900)..Duration::from_secs(5)).contains(&took),
            "refused after {took:?} (the queue wait is 2 s)"
        );
        let v = json(&lines.take(1, Duration::from_secs(5))[0]);
        assert_eq!(
            (&v["peer"], &v["kind"]),
            (&me.into(), &"refused".into()),
            "{v}"
        );
        // The busy client was left alone.
        let busy = trickle.join().unwrap();
        drop(busy);
        let v = json(&lines.take(1, Duration::from_secs(10))[0]);
        assert_eq!(v["peer"], busy_peer, "{v}");
        assert_eq!(
            v["kind"], "unexpected_eof",
            "cut short by its own close: {v}"
        );
    });
}

/// `--header-timeout 1`: a first header cut at 20 bytes, a connection that sends nothing, and
/// a later header cut at 40 of its 64 bytes are each dropped with one `header_timeout` line
/// (byte counts as the library's: of the prefix, then of the whole message); the default idle
/// timeout (30 s) would not have fired yet.
#[test]
fn serve_header_deadline() {
    within(Duration::from_secs(60), "header deadline", || {
        let (_server, lines, addr) = spawn_serve(&["--json", "--header-timeout", "1"]);
        let three_d = Header::new("<f8".parse().unwrap(), &[4, 4, 4], Order::C)
            .unwrap()
            .encode();
        assert_eq!(three_d.len(), header_len(3));

        let t0 = Instant::now();
        let mut partial = TcpStream::connect(addr).unwrap();
        partial.write_all(&three_d[..20]).unwrap();
        let silent = TcpStream::connect(addr).unwrap();
        let (later, later_peer) = valid_client(addr, Backend::Auto);
        let mut got: Vec<Value> = lines
            .take(2, Duration::from_secs(5))
            .iter()
            .map(|l| json(l))
            .collect();
        // The valid array comes first; then the later partial header.
        let served = got.iter().position(|v| v["peer"] == later_peer).unwrap();
        assert_eq!(got.remove(served)["verified"], true);
        let mut l = &later;
        l.write_all(&three_d[..40]).unwrap();
        got.extend(
            lines
                .take(2, Duration::from_secs(5))
                .iter()
                .map(|l| json(l)),
        );
        let took = t0.elapsed();
        let p = line_of(&got, &partial);
        assert_eq!(
            (&p["kind"], &p["array"], &p["transferred"], &p["expected"]),
            (&"header_timeout".into(), &1.into(), &20.into(), &32.into()),
            "{p}"
        );
        let s = line_of(&got, &silent);
        assert_eq!(
            (&s["kind"], &s["array"], &s["transferred"], &s["expected"]),
            (&"header_timeout".into(), &1.into(), &0.into(), &32.into()),
            "{s}"
        );
        let l = line_of(&got, &later);
        assert_eq!(
            (&l["kind"], &l["array"], &l["transferred"], &l["expected"]),
            (
                &"header_timeout".into(),
                &2.into(),
                &40.into(),
                &(header_len(3) as u64 + 4 * 4 * 4 * 8 + 8).into()
            ),
            "{l}"
        );
        assert!(took < Duration::from_secs(8), "{took:?}");
        let extra = lines.drain_for(Duration::from_millis(300));
        assert!(extra.is_empty(), "{extra:#?}");
    });
}

/// `--timeout` bounds a header that has begun, also with `--header-timeout 0` (no header
/// deadline): a client that stops inside an RGXF header and one inside a `.npy` header each
/// get a `timed_out` line about 1 s after their first byte, with the bytes they sent (before,
/// a stall inside a header escaped `--timeout` altogether: breaker review).
#[test]
fn serve_idle_timeout_inside_a_header() {
    within(
        Duration::from_secs(60),
        "idle timeout inside a header",
        || {
            let (_server, lines, addr) =
                spawn_serve(&["--json", "--header-timeout", "0", "--timeout", "1"]);
            let rgxf = Header::new("<f8".parse().unwrap(), &[4, 4, 4], Order::C)
                .unwrap()
                .encode();
            let npy = ringxfer::npy::encode_header("<f8".parse().unwrap(), &[4, 4, 4], Order::C);
            let t0 = Instant::now();
            let mut a = TcpStream::connect(addr).unwrap();
            a.write_all(&rgxf[..20]).unwrap();
            let mut b = TcpStream::connect(addr).unwrap();
            b.write_all(&npy[..40]).unwrap();
            let got: Vec<Value> = lines
                .take(2, Duration::from_secs(5))
                .iter()
                .map(|l| json(l))
                .collect();
            let took = t0.elapsed();
            let l = line_of(&got, &a);
            assert_eq!(
                (&l["kind"], &l["transferred"], &l["expected"]),
                (&"timed_out".into(), &20.into(), &32.into()),
                "{l}"
            );
            let l = line_of(&got, &b);
            assert_eq!(
                (&l["kind"], &l["transferred"]),
                (&"timed_out".into(), &40.into()),
                "{l}"
            );
            assert!(
                took >= Duration::from_millis(950) && took < Duration::from_secs(4),
                "{took:?}"
            );
        },
    );
}

/// The defaults are those of a server on a network (and 0 turns a deadline off).
#[test]
fn serve_defaults_in_help() {
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let flag = |name: &str| {
        let at = help
            .find(name)
            .unwrap_or_else(|| panic!("{name} missing: {help}"));
        let rest = &help[at..];
        let end = rest.find("\n  -").unwrap_or(rest.len());
        rest[..end].split_whitespace().collect::<Vec<_>>().join(" ")
    };
    assert!(flag("--timeout <SECS>").contains("[default: 30]"), "{help}");
    assert!(
        flag("--header-timeout <SECS>").contains("[default: 5]"),
        "{help}"
    );
    assert!(
        flag("--evict-idle <SECS>").contains("[default: 1]"),
        "{help}"
    );
    assert!(
        flag("--max-clients <N>").contains("[default: 128]"),
        "{help}"
    );
    assert!(flag("--auth-key <FILE>").contains("FILE"), "{help}");
}

/// Stops and continues `pid` every 100 ms for `span` (each SIGCONT makes a receive that has a
/// timeout fail with `EINTR`, see signal(7)).
fn stop_cont_storm(pid: u32, span: Duration) -> thread::JoinHandle<u32> {
    thread::spawn(move || {
        let t0 = Instant::now();
        let mut n = 0;
        while t0.elapsed() < span {
            for sig in ["-STOP", "-CONT"] {
                let st = Command::new("kill")
                    .args([sig, &pid.to_string()])
                    .stderr(std::process::Stdio::null())
                    .status()
                    .unwrap();
                if !st.success() {
                    // The process has exited: the storm is over.
                    return n;
                }
            }
            n += 1;
            thread::sleep(Duration::from_millis(100));
        }
        n
    })
}

/// `--timeout 1` fires for a silent client (between two arrays) while serve is stopped and
/// continued every 100 ms: an interrupted wait resumes with the time left.
#[test]
fn serve_idle_timeout_survives_stop_cont_storm() {
    within(Duration::from_secs(60), "stop/cont storm", || {
        let (server, lines, addr) = spawn_serve(&["--json", "--timeout", "1"]);
        let (sock, me) = valid_client(addr, Backend::Auto);
        let first = json(&lines.take(1, Duration::from_secs(5))[0]);
        assert_eq!(first["peer"], me);
        let t0 = Instant::now();
        let storm = stop_cont_storm(server.pid(), Duration::from_secs(5));
        let line = lines.next(Duration::from_secs(10));
        let took = t0.elapsed();
        let rounds = storm.join().unwrap();
        let v = json(&line.expect("a timed_out line"));
        assert_eq!(
            (&v["peer"], &v["kind"], &v["array"]),
            (&me.into(), &"timed_out".into(), &2.into()),
            "{v}"
        );
        assert!(
            took < Duration::from_secs(4),
            "the 1 s idle timeout fired after {took:?}, during a storm of {rounds} stop/cont \
             rounds lasting 5 s"
        );
        drop(sock);
    });
}

/// `--get-server-output` on a connection with 100,000 arrays of 16 bytes: serve's RSS grows
/// by less than 8 MiB (it kept ~300 bytes per array before: 30 MB here), and the client gets
/// the kept tail plus a last line saying how many lines were dropped.
#[test]
fn serve_output_memory_is_bounded() {
    within(Duration::from_secs(120), "server output bound", || {
        const ARRAYS: usize = 100_000;
        const BATCH: usize = 1000;
        let (server, lines, addr) = spawn_serve(&[]);
        let pid = server.pid();
        // Drain the server's stdout so it never blocks on the pipe.
        let counter = thread::spawn(move || {
            let mut n = 0usize;
            while n < ARRAYS {
                match lines.next(Duration::from_secs(60)) {
                    Some(l) if l.contains("ERROR") => panic!("serve: {l}"),
                    Some(_) => n += 1,
                    None => break,
                }
            }
            n
        });
        let sock = TcpStream::connect(addr).unwrap();
        let mut e = Engine::new(Backend::Auto).unwrap();
        let data: Vec<f64> = (0..2).map(f64::from).collect();
        let shape = [2u64];
        let batch: Vec<ArrayView> = (0..BATCH)
            .map(|_| ArrayView::new(&data, &shape, Order::C))
            .collect();
        // Warm up (first arrays, pool, allocator), then measure from here.
        e.send_arrays(&sock, &batch).unwrap();
        thread::sleep(Duration::from_millis(500));
        let start = proc_status_kib(pid, "VmRSS").unwrap();
        for _ in 1..ARRAYS / BATCH {
            e.send_arrays(&sock, &batch).unwrap();
        }
        let printed = counter.join().unwrap();
        assert_eq!(printed, ARRAYS, "one line per array on the server");
        let end = proc_status_kib(pid, "VmRSS").unwrap();
        eprintln!("serve RSS {start} KiB after {BATCH} arrays, {end} KiB after {ARRAYS}");
        assert!(
            end <= start + 8 * 1024,
            "serve's RSS grew from {start} to {end} KiB over {ARRAYS} arrays"
        );
        sock.shutdown(Shutdown::Write).unwrap();
        let mut back = String::new();
        (&sock).take(16 << 20).read_to_string(&mut back).unwrap();
        let got: Vec<Value> = back.lines().map(json).collect();
        let last = got.last().unwrap();
        let kept = got.len() as u64 - 1;
        assert_eq!(last["kept_lines"], kept, "{last}");
        assert_eq!(last["dropped_lines"], ARRAYS as u64 - kept, "{last}");
        assert!(back.len() <= (64 << 10) + 512, "{} bytes", back.len());
        // The kept lines are the most recent ones, in order, ending with the last array.
        for (i, v) in got[..got.len() - 1].iter().enumerate() {
            assert_eq!(v["array"], (ARRAYS as u64 - kept + 1 + i as u64), "{v}");
        }
    });
}

/// The same storm on framed `recv --timeout 1` waiting for its second array: it fails with
/// the idle timeout on time (exit status 1) instead of restarting the wait at every `EINTR`.
#[test]
fn recv_idle_timeout_survives_stop_cont_storm() {
    use std::process::Stdio;
    use util::proc::{Killed, Lines, wait_deadline};
    within(Duration::from_secs(60), "recv stop/cont storm", || {
        let mut child = Command::new(BIN)
            .args([
                "recv",
                "--listen",
                "127.0.0.1:0",
                "--arrays",
                "2",
                "--timeout",
                "1",
            ])
            .env_remove("RINGXFER_BACKEND")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = Lines::new(child.stderr.take().unwrap());
        let mut child = Killed(child);
        let first = err
            .next(Duration::from_secs(10))
            .expect("where recv listens");
        let addr = first.rsplit(' ').next().unwrap().parse().unwrap();
        let (sock, _) = valid_client(addr, Backend::Auto);
        thread::sleep(Duration::from_millis(200));
        let t0 = Instant::now();
        let storm = stop_cont_storm(child.pid(), Duration::from_secs(5));
        let st = wait_deadline(&mut child.0, Duration::from_secs(10)).expect("recv exits");
        let took = t0.elapsed();
        let rounds = storm.join().unwrap();
        let msg = err.rest(Duration::from_secs(20)).join("\n");
        assert_eq!(st.code(), Some(1), "{msg}");
        assert!(
            msg.contains("array 2 of 2: no progress for 1000 ms"),
            "{msg}"
        );
        assert!(
            took < Duration::from_secs(4),
            "recv's 1 s idle timeout fired after {took:?}, during {rounds} stop/cont rounds"
        );
        drop(sock);
    });
}

/// Break-it report: with every slot held by an idle client and the waiting queue full of
/// silent connections, a working client must still get in (before, it was refused at once:
/// "the queue of waiting clients is full"). The newcomer displaces a silent queued
/// connection (told so), and clients that have sent bytes are placed before silent ones.
#[test]
fn serve_silent_queue_does_not_lock_out_a_working_client() {
    within(Duration::from_secs(60), "silent queue", move || {
        let (_server, lines, addr) = spawn_serve(&["--json", "--max-clients", "4"]);
        let in_slots: Vec<TcpStream> = (0..4)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"R").unwrap();
                s
            })
            .collect();
        thread::sleep(Duration::from_millis(300));
        let queued: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
        thread::sleep(Duration::from_millis(300));
        let t0 = Instant::now();
        let (_sock, me) = valid_client(addr, Backend::Auto);
        let mut seen = Vec::new();
        let served = loop {
            match lines.next(Duration::from_secs(5).saturating_sub(t0.elapsed())) {
                Some(l) => {
                    let v = json(&l);
                    if v["peer"] == me {
                        break v;
                    }
                    seen.push(v);
                }
                None => panic!("the working client was not served within 5 s: {seen:#?}"),
            }
        };
        eprintln!("served after {:?}; other lines: {seen:?}", t0.elapsed());
        assert_eq!(served["verified"], true, "{served}");
        assert!(
            !seen.iter().any(|v| v["peer"] == me),
            "the working client was not refused first: {seen:#?}"
        );
        drop((in_slots, queued));
    });
}
