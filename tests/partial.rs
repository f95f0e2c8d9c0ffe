//! Forced partial completions: 4 KiB socket buffers (`SO_SNDBUF`/`SO_RCVBUF` on both ends),
//! slow readers and slow writers, and case C06 (a non-blocking sender socket). 64 MiB must
//! arrive byte-exact (CRC-32 and a direct comparison), on both backends, several runs each.

mod util;

use std::time::{Duration, Instant};

use ringxfer::{Backend, Options, RecvOp, SendOp};
use util::*;

const MIB: usize = 1 << 20;
/// The requested socket buffer size (Linux doubles it).
const SMALL_BUF: usize = 4096;
/// Transfer size of every test here.
const BYTES: usize = 64 * MIB;
/// Runs per test.
const RUNS: usize = 3;
/// Bound on one run (a hang is a failure, not a stuck CI job).
const LIMIT: Duration = Duration::from_secs(120);

/// Checks `got` against `want` with CRC-32 (the zlib polynomial, as the CLI reports it) and
/// byte for byte.
fn verify(got: &[u8], want: &[u8], what: &str) {
    let (cg, cw) = (crc32_chunked(got), crc32_chunked(want));
    assert_bytes_eq(got, want, what);
    assert_eq!(cg, cw, "{what}: CRC-32 {cg:08x} != {cw:08x}");
}

/// Engine-to-engine over 4 KiB buffers; the receiver starts `recv_delay` late so the sender
/// fills the tiny buffers and its sends complete short.
fn small_buffers(send_opts: Options, recv_opts: Options, recv_delay: Duration, what: &str) {
    for run in 0..RUNS {
        let what = format!("{what}, run {run}");
        let w = what.clone();
        let (so, ro) = (send_opts.clone(), recv_opts.clone());
        let dt = within(LIMIT, &what, move || {
            let (tx, rx) = tcp_pair_small_buffers(SMALL_BUF);
            let data: Vec<u8> = pattern_vec(BYTES, run as u64 + 100);
            let mut got: Vec<u8> = poison_vec(BYTES, run as u64 + 100);
            let t0 = Instant::now();
            let sender = spawn_send(so, tx, data);
            std::thread::sleep(recv_delay);
            let r = engine(&ro).recv_into(&rx, &mut got);
            let (data, sr, _tx) = sender.join().expect("sender panicked");
            r.unwrap_or_else(|e| panic!("{w}: recv_into: {e}"));
            sr.unwrap_or_else(|e| panic!("{w}: send_from: {e}"));
            verify(&got, &data, &w);
            t0.elapsed()
        });
        eprintln!("{what}: {dt:?}");
    }
}

/// The engine sends over 4 KiB buffers to a plain `std` reader that reads small pieces and
/// sleeps now and then.
fn to_slow_reader(send_opts: Options, nonblocking_sender: bool, what: &str) {
    for run in 0..RUNS {
        let what = format!("{what}, run {run}");
        let w = what.clone();
        let so = send_opts.clone();
        let dt = within(LIMIT, &what, move || {
            let (tx, rx) = tcp_pair_small_buffers(SMALL_BUF);
            if nonblocking_sender {
                tx.set_nonblocking(true).unwrap();
            }
            let data: Vec<u8> = pattern_vec(BYTES, run as u64 + 200);
            let mut got: Vec<u8> = poison_vec(BYTES, run as u64 + 200);
            let t0 = Instant::now();
            let sender = spawn_send(so, tx, data);
            // Pieces of about 3 KiB, a 2 ms nap every 2048 reads (~6 MiB).
            slow_read_exact(&rx, &mut got, 3000, 2048, Duration::from_millis(2));
            let (data, sr, tx) = sender.join().expect("sender panicked");
            sr.unwrap_or_else(|e| panic!("{w}: send_from: {e}"));
            verify(&got, &data, &w);
            if nonblocking_sender {
                let s = socket2::SockRef::from(&tx);
                assert!(
                    s.nonblocking().unwrap(),
                    "{w}: the sender socket is no longer non-blocking"
                );
            }
            t0.elapsed()
        });
        eprintln!("{what}: {dt:?}");
    }
}

/// A plain `std` writer sends small pieces with pauses into the engine's receive over 4 KiB
/// buffers, so every receive completes in many small pieces.
fn from_slow_writer(recv_opts: Options, what: &str) {
    for run in 0..RUNS {
        let what = format!("{what}, run {run}");
        let w = what.clone();
        let ro = recv_opts.clone();
        let dt = within(LIMIT, &what, move || {
            let (tx, rx) = tcp_pair_small_buffers(SMALL_BUF);
            let data: Vec<u8> = pattern_vec(BYTES, run as u64 + 300);
            let mut got: Vec<u8> = poison_vec(BYTES, run as u64 + 300);
            let t0 = Instant::now();
            let writer = std::thread::spawn(move || {
                slow_write_all(&tx, &data, 5000, 1024, Duration::from_millis(2));
                (data, tx)
            });
            let r = engine(&ro).recv_into(&rx, &mut got);
            let (data, _tx) = writer.join().expect("writer panicked");
            r.unwrap_or_else(|e| panic!("{w}: recv_into: {e}"));
            verify(&got, &data, &w);
            t0.elapsed()
        });
        eprintln!("{what}: {dt:?}");
    }
}

both_backends! {
    /// Both ends tiny, receiver starts 50 ms late.
    fn small_buffers_late_receiver(backend) {
        small_buffers(opts(backend), opts(backend), Duration::from_millis(50), "late receiver")
    }

    /// Both ends tiny, receiver starts at once.
    fn small_buffers_prompt_receiver(backend) {
        small_buffers(opts(backend), opts(backend), Duration::ZERO, "prompt receiver")
    }

    /// The engine's sender against a slow `std` reader.
    fn small_buffers_slow_reader(backend) {
        to_slow_reader(opts(backend), false, "slow reader")
    }

    /// The engine's receiver against a slow `std` writer.
    fn small_buffers_slow_writer(backend) {
        from_slow_writer(opts(backend), "slow writer")
    }

    /// C06: non-blocking sender socket, SO_SNDBUF 4 KiB, 64 MiB to a slow reader: byte-exact,
    /// and the socket is non-blocking again afterwards.
    fn c06_nonblocking_sender_small_sndbuf_slow_reader(backend) {
        to_slow_reader(opts(backend), true, "C06 non-blocking sender")
    }
}

/// `READ_FIXED` returns whatever the socket holds, so over 4 KiB buffers nearly every SQE
/// is short and breaks its link: the resubmission path runs thousands of times.
#[test]
fn uring_read_fixed_from_slow_writer() {
    require_uring!();
    from_slow_writer(
        tuned(SendOp::Send, RecvOp::ReadFixed, 65536, 4),
        "READ_FIXED slow writer",
    );
}

/// `WRITE_FIXED` breaks the link on any short write: against a slow reader over 4 KiB
/// buffers most writes are short.
#[test]
fn uring_write_fixed_to_slow_reader() {
    require_uring!();
    to_slow_reader(
        tuned(SendOp::WriteFixed, RecvOp::Recv, 65536, 4),
        false,
        "WRITE_FIXED slow reader",
    );
}

/// Uring sender (fixed-buffer ops) to a late uring `READ_FIXED` receiver over 4 KiB buffers.
#[test]
fn uring_fixed_ops_small_buffers() {
    require_uring!();
    let o = tuned(SendOp::WriteFixed, RecvOp::ReadFixed, 65536, 8);
    small_buffers(o.clone(), o, Duration::from_millis(20), "fixed ops");
}

/// C06 with the fixed-buffer send op on a non-blocking socket.
#[test]
fn uring_c06_nonblocking_write_fixed() {
    require_uring!();
    to_slow_reader(
        tuned(SendOp::WriteFixed, RecvOp::Recv, 65536, 4),
        true,
        "C06 WRITE_FIXED non-blocking",
    );
}

/// C06: the receiving socket non-blocking as well (the engine must wait for readiness, not
/// spin or fail with EAGAIN).
fn nonblocking_receiver(backend: Backend) {
    let what = format!("{backend} non-blocking receiver");
    let w = what.clone();
    within(LIMIT, &what, move || {
        let (tx, rx) = tcp_pair_small_buffers(SMALL_BUF);
        rx.set_nonblocking(true).unwrap();
        let data: Vec<u8> = pattern_vec(16 * MIB + 5, 400);
        let mut got: Vec<u8> = poison_vec(16 * MIB + 5, 400);
        let writer = std::thread::spawn(move || {
            slow_write_all(&tx, &data, 5000, 1024, Duration::from_millis(2));
            (data, tx)
        });
        let r = engine(&opts(backend)).recv_into(&rx, &mut got);
        let (data, _tx) = writer.join().unwrap();
        r.unwrap_or_else(|e| panic!("{w}: recv_into: {e}"));
        verify(&got, &data, &w);
        assert!(
            socket2::SockRef::from(&rx).nonblocking().unwrap(),
            "{w}: receiver socket no longer non-blocking"
        );
    });
}

both_backends! {
    fn c06_nonblocking_receiver(backend) { nonblocking_receiver(backend) }
}
