//! Arrays over 1 GiB (two or three registered 1 GiB slots) and case C01 (one transfer of
//! 2,560,000,000 bytes, over the kernel's 0x7ffff000-byte per-call cap).
//!
//! These need several GiB of memory and a release build, so they are `#[ignore]`d; run them
//! with `cargo test --release --test large -- --ignored` (every name starts with `large::`, so
//! `cargo test --release -- --ignored large` selects them too). They take a process-wide lock
//! so at most one runs at a time: a test holds at most two copies of its array (sender and
//! receiver), 5.1 GB for C01.

mod util;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ringxfer::{Backend, Options, RecvOp, RegisterPolicy, SendOp};
use util::*;

/// 1.5 GiB: two registered slots (1 GiB + 0.5 GiB).
const BYTES_1_5_GIB: usize = 3 << 29;
/// Case C01: one float32 array of 2,560,000,000 bytes.
const C01_BYTES: usize = 2_560_000_000;
/// Bound on one large transfer.
const LIMIT: Duration = Duration::from_secs(300);

/// Serialises the tests of this file (memory).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Checks `got` against `want` by CRC-32 computed in chunks, then byte for byte.
fn verify(got: &[u8], want: &[u8], what: &str) {
    let t0 = Instant::now();
    let (cg, cw) = (crc32_chunked(got), crc32_chunked(want));
    assert_eq!(cg, cw, "{what}: CRC-32 {cg:08x} != {cw:08x}");
    assert_bytes_eq(got, want, what);
    eprintln!("{what}: verified (CRC-32 {cg:08x}) in {:?}", t0.elapsed());
}

/// One-shot `send_from`/`recv_into` of `elems` elements of `T` with `o` on both ends.
fn one_shot<T: bytemuck::Pod + Send>(o: Options, elems: usize, what: &str) {
    let _serial = serial();
    let what = format!("{what} ({} bytes)", elems * size_of::<T>());
    let w = what.clone();
    within(LIMIT, &what, move || {
        let t0 = Instant::now();
        let data: Vec<T> = pattern_vec(elems, 0x1a26e);
        let mut got: Vec<T> = poison_vec(elems, 0x1a26e);
        eprintln!("{w}: arrays ready in {:?}", t0.elapsed());
        let (tx, rx) = tcp_pair();
        let t0 = Instant::now();
        let sender = spawn_send(o.clone(), tx, data);
        let r = engine(&o).recv_into(&rx, &mut got);
        let (data, sr, _tx) = sender.join().expect("sender panicked");
        let dt = t0.elapsed();
        r.unwrap_or_else(|e| panic!("{w}: recv_into: {e}"));
        sr.unwrap_or_else(|e| panic!("{w}: send_from: {e}"));
        let bytes = (elems * size_of::<T>()) as f64;
        eprintln!("{w}: {dt:?}, {:.2} GB/s", bytes / dt.as_secs_f64() / 1e9);
        verify(bytemuck::cast_slice(&got), bytemuck::cast_slice(&data), &w);
    });
}

/// Both ends pre-register their array (`register_send` / `register_recv`) and transfer it
/// through the guards; the registration must hold (two slots for 1.5 GiB) where pinning is
/// allowed.
fn guarded(o: Options, bytes: usize, what: &str) {
    let _serial = serial();
    let w = what.to_owned();
    within(LIMIT, what, move || {
        let data: Vec<u8> = pattern_vec(bytes, 0x6a);
        let mut got: Vec<u8> = poison_vec(bytes, 0x6a);
        let (tx, rx) = tcp_pair();
        let so = o.clone();
        let t0 = Instant::now();
        let sender = std::thread::spawn(move || {
            let mut e = engine(&so);
            let mut g = e.register_send(&data);
            check_registered(
                g.is_registered(),
                g.fallback_reason(),
                bytes as u64,
                "register_send",
            );
            let r = g.send(&tx);
            drop(g);
            (data, r, tx)
        });
        let mut e = engine(&o);
        let mut g = e.register_recv(&mut got);
        check_registered(
            g.is_registered(),
            g.fallback_reason(),
            bytes as u64,
            "register_recv",
        );
        let r = g.recv(&rx);
        drop(g);
        let (data, sr, _tx) = sender.join().expect("sender panicked");
        let dt = t0.elapsed();
        r.unwrap_or_else(|e| panic!("{w}: guard recv: {e}"));
        sr.unwrap_or_else(|e| panic!("{w}: guard send: {e}"));
        eprintln!(
            "{w}: {dt:?}, {:.2} GB/s",
            bytes as f64 / dt.as_secs_f64() / 1e9
        );
        verify(&got, &data, &w);
    });
}

mod large {
    use super::*;

    both_backends! {
        /// 1.5 GiB of u8, one-shot; on uring registered for the call (two 1 GiB slots).
        #[ignore = "1.5 GiB: run with --release -- --ignored"]
        fn u8_1_5gib_one_shot(backend) {
            let o = Options { backend, register: RegisterPolicy::Always, ..Options::default() };
            one_shot::<u8>(o, BYTES_1_5_GIB, &format!("1.5 GiB one-shot {backend}"))
        }

        /// C01: one float32 array of 2,560,000,000 bytes as one transfer: no call may pass
        /// more than 0x7ffff000 bytes to the kernel, and short transfers are progress.
        #[ignore = "2.56 GB x 2 in memory: run with --release -- --ignored"]
        fn c01_single_transfer_over_2gib(backend) {
            one_shot::<f32>(opts(backend), C01_BYTES / 4, &format!("C01 {backend}"))
        }
    }

    /// 1.5 GiB through pre-registered guards with the default ops (`SEND` from the fixed
    /// buffer where the kernel supports it, `RECV`).
    #[test]
    #[ignore = "1.5 GiB: run with --release -- --ignored"]
    fn uring_u8_1_5gib_guards_default_ops() {
        require_uring!();
        let o = Options {
            backend: Backend::Uring,
            register: RegisterPolicy::Always,
            ..Options::default()
        };
        guarded(o, BYTES_1_5_GIB, "1.5 GiB guards, default ops");
    }

    /// 1.5 GiB through pre-registered guards with the fixed-buffer ops and a segment size
    /// that does not divide 1 GiB, so a segment meets the slot boundary and must be split
    /// there (case C09's kind: a slot boundary inside a segment never corrupts data).
    #[test]
    #[ignore = "1.5 GiB: run with --release -- --ignored"]
    fn uring_u8_1_5gib_guards_fixed_ops_odd_segment() {
        require_uring!();
        let o = tuned(SendOp::WriteFixed, RecvOp::ReadFixed, 10_000_019, 8);
        guarded(
            o,
            BYTES_1_5_GIB,
            "1.5 GiB guards, WRITE_FIXED/READ_FIXED, 10,000,019 B segments",
        );
    }

    /// As above with `SEND_ZC` from the registered slots.
    #[test]
    #[ignore = "1.5 GiB: run with --release -- --ignored"]
    fn uring_u8_1_5gib_guards_send_zc_odd_segment() {
        require_uring!();
        if !ringxfer::probe().send_zc {
            eprintln!("skipped: SEND_ZC unsupported");
            return;
        }
        let o = tuned(SendOp::SendZc, RecvOp::Recv, 10_000_019, 8);
        guarded(
            o,
            BYTES_1_5_GIB,
            "1.5 GiB guards, SEND_ZC/RECV, 10,000,019 B segments",
        );
    }

    /// C01 on uring with segments of the full per-call cap (`u32::MAX` is clamped to
    /// 0x7ffff000): unregistered, so only the cap splits the array.
    #[test]
    #[ignore = "2.56 GB x 2 in memory: run with --release -- --ignored"]
    fn uring_c01_max_segments_unregistered() {
        require_uring!();
        let o = Options {
            register: RegisterPolicy::Never,
            ..tuned(SendOp::Send, RecvOp::Recv, u32::MAX, 4)
        };
        one_shot::<f32>(o, C01_BYTES / 4, "C01 uring, max segments, unregistered");
    }

    /// C01 on uring registered (three slots: 1 GiB, 1 GiB, the rest) with max segments and
    /// the fixed-buffer ops.
    #[test]
    #[ignore = "2.56 GB x 2 in memory: run with --release -- --ignored"]
    fn uring_c01_registered_fixed_ops() {
        require_uring!();
        let o = tuned(SendOp::WriteFixed, RecvOp::ReadFixed, u32::MAX, 4);
        one_shot::<f32>(
            o,
            C01_BYTES / 4,
            "C01 uring, registered, WRITE_FIXED/READ_FIXED",
        );
    }
}
