//! The ring's setup flags (`SINGLE_ISSUER | DEFER_TASKRUN`, then `COOP_TASKRUN`, then none;
//! optionally a registered ring fd) and what `SINGLE_ISSUER` means for an `Engine` that is
//! `Send`: moved to another thread, it must keep working.
//!
//! Each forced level (`RINGXFER_RING_FLAGS`, read once per process by the probe) runs in a
//! child process: this test binary again, running only [`level_child`].

mod util;

use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use ringxfer::{Backend, Engine, Error, Options, RingFlags, RingSetup};
use util::*;

/// Set in the child: the `RINGXFER_RING_FLAGS` value it runs under.
const CHILD_ENV: &str = "RINGXFER_TEST_RING_FLAGS_CHILD";

/// Uring options that put every transfer through the ring, in several chains (64 KiB
/// segments, 4 per chain), with an idle timeout so every wait is a timed `EXT_ARG` wait.
fn ring_opts(idle: Option<Duration>) -> Options {
    small_chains(Backend::Uring, idle)
}

/// `a` sends `n` pattern bytes to `b` on `a_sock` → `b_sock` (the receiver on a scoped
/// thread), then `b` sends `n` other bytes back; both arrive byte for byte. The engines are
/// used from whatever thread calls this (and the receiver's from the scoped one).
fn both_ways(
    a: &mut Engine,
    b: &mut Engine,
    (a_sock, b_sock): (&TcpStream, &TcpStream),
    n: usize,
    what: &str,
) {
    for (dir, seed) in [("a->b", 11u64), ("b->a", 12)] {
        let data: Vec<u8> = pattern_vec(n, seed ^ n as u64);
        let mut got: Vec<u8> = poison_vec(n, seed);
        let (tx, rx, tx_sock, rx_sock) = if dir == "a->b" {
            (&mut *a, &mut *b, a_sock, b_sock)
        } else {
            (&mut *b, &mut *a, b_sock, a_sock)
        };
        let sqes_before = rx.stats().sqes;
        thread::scope(|s| {
            let h = s.spawn(|| rx.recv_into(rx_sock, &mut got));
            tx.send_from(tx_sock, &data)
                .unwrap_or_else(|e| panic!("{what} {dir}: send_from: {e} ({e:?})"));
            h.join()
                .unwrap()
                .unwrap_or_else(|e| panic!("{what} {dir}: recv_into: {e} ({e:?})"));
        });
        assert_bytes_eq(&got, &data, &format!("{what} {dir}"));
        let segments = n.div_ceil(64 << 10) as u64;
        assert!(
            rx.stats().sqes - sqes_before >= segments,
            "{what} {dir}: the receive went through the ring ({} SQEs for {segments} segments)",
            rx.stats().sqes - sqes_before
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Moving engines across threads (the process's own flags: `defer` where the kernel has it)
// ---------------------------------------------------------------------------------------------

#[test]
fn engine_is_send() {
    fn is_send<T: Send>() {}
    is_send::<Engine>();
}

/// An engine created on thread A and used there, moved to thread B and used again, then
/// moved back to A: every transfer arrives byte for byte, both directions.
#[test]
fn engine_moved_to_another_thread_keeps_working() {
    require_uring!();
    within(
        Duration::from_secs(60),
        "engine moved across threads",
        || {
            let (s1, s2) = tcp_pair();
            let (to_a, from_main) = std::sync::mpsc::channel::<(Engine, Engine)>();
            let (to_main, from_a) = std::sync::mpsc::channel::<(Engine, Engine)>();
            let (s1a, s2a) = (s1.try_clone().unwrap(), s2.try_clone().unwrap());
            // Thread A creates both engines and uses them, hands them over, gets them back and
            // uses them again.
            let a = thread::spawn(move || {
                let mut e1 = engine(&ring_opts(None));
                let mut e2 = engine(&ring_opts(Some(Duration::from_secs(10))));
                assert_eq!(e1.ring_flags(), ringxfer::probe().ring_flags);
                both_ways(&mut e1, &mut e2, (&s1a, &s2a), 1 << 20, "on A");
                to_main.send((e1, e2)).unwrap();
                let (mut e1, mut e2) = from_main.recv().unwrap();
                both_ways(&mut e1, &mut e2, (&s1a, &s2a), 300_001, "back on A");
            });
            let (mut e1, mut e2) = from_a.recv().unwrap();
            // Thread B (this one).
            both_ways(&mut e1, &mut e2, (&s1, &s2), 1 << 20, "moved to B");
            both_ways(&mut e1, &mut e2, (&s1, &s2), 777, "B again");
            to_a.send((e1, e2)).unwrap();
            a.join().expect("thread A");
        },
    );
}

/// An engine created on one thread and first used on another (the CLI and the bench build
/// engines before spawning the threads that use them), then registering there.
#[test]
fn engine_first_used_on_another_thread() {
    require_uring!();
    within(
        Duration::from_secs(60),
        "engine first used elsewhere",
        || {
            let (s1, s2) = tcp_pair();
            let mut e1 = engine(&ring_opts(None));
            let mut e2 = engine(&ring_opts(Some(Duration::from_secs(10))));
            thread::spawn(move || {
                both_ways(&mut e1, &mut e2, (&s1, &s2), 2 << 20, "first use on B");
                // A registration made on B, after the move.
                let data: Vec<u8> = pattern_vec(3 << 20, 99);
                let mut got: Vec<u8> = poison_vec(3 << 20, 98);
                thread::scope(|s| {
                    // The receiving registration is made (and used) on a third thread.
                    let h = s.spawn(|| e2.register_recv(&mut got).recv(&s2));
                    let mut rs = e1.register_send(&data);
                    rs.send(&s1).expect("registered send on B");
                    h.join().unwrap().expect("registered recv");
                });
                assert_bytes_eq(&got, &data, "registered transfer after the move");
            })
            .join()
            .expect("thread B");
        },
    );
}

/// `&mut Engine` lent to scoped threads one after another (each call from a new thread).
#[test]
fn engine_lent_to_scoped_threads_in_turn() {
    require_uring!();
    within(
        Duration::from_secs(60),
        "engine lent to scoped threads",
        || {
            let (s1, s2) = tcp_pair();
            let mut e1 = engine(&ring_opts(None));
            let mut e2 = engine(&ring_opts(None));
            for round in 0..4 {
                thread::scope(|s| {
                    s.spawn(|| {
                        both_ways(&mut e1, &mut e2, (&s1, &s2), 65_536 * 3 + round, "scoped")
                    });
                });
            }
        },
    );
}

// ---------------------------------------------------------------------------------------------
// The fallback chain: each level forced in a child process
// ---------------------------------------------------------------------------------------------

/// Runs this test binary as a child running only [`level_child`] under
/// `RINGXFER_RING_FLAGS=value`; returns its output, asserting it passed.
fn run_level(value: &str) -> String {
    util::proc::run_child_test(
        "level_child",
        &[(CHILD_ENV, value), (ringxfer::RING_FLAGS_ENV, value)],
        Duration::from_secs(60),
    )
}

macro_rules! level_tests {
    ($($name:ident: $value:literal;)*) => {$(
        /// Forces this level: the probe and the engines report it, round trips in both
        /// directions (plain and timed waits) arrive byte for byte, also after a thread move.
        #[test]
        fn $name() {
            require_uring!();
            let text = run_level($value);
            assert!(text.contains("level ok:"), "{}: {text}", $value);
        }
    )*};
}

level_tests! {
    forced_none: "none";
    forced_coop: "coop";
    forced_single: "single";
    forced_defer: "defer";
    forced_none_fd: "none,fd";
    forced_defer_fd: "defer,fd";
    forced_defer_nofd: "defer,nofd";
}

/// A value that names no level makes io_uring unavailable, naming the variable and value:
/// `Backend::Uring` fails with `UringUnavailable`, `Auto` falls back to blocking and says why.
#[test]
fn forced_bad_value_is_refused_with_reason() {
    require_uring!();
    run_level("fast");
}

/// Every field of `flags` (`RingFlags` is `#[non_exhaustive]`, so the test cannot build one to
/// compare with): setup, registered ring fd, forced.
fn parts(flags: Option<RingFlags>) -> Option<(RingSetup, bool, bool)> {
    flags.map(|f| (f.setup, f.registered_ring_fd, f.forced))
}

/// The child: checks what the forced value says (see [`level_tests`]).
#[test]
#[ignore = "child of the forced_* tests"]
fn level_child() {
    let Ok(value) = std::env::var(CHILD_ENV) else {
        return;
    };
    let p = ringxfer::probe();
    let (level, fd) = match value.split_once(',') {
        Some((l, f)) => (l, f == "fd"),
        None => (value.as_str(), false),
    };
    let setup = match level {
        "none" => RingSetup::None,
        "coop" => RingSetup::Coop,
        "single" => RingSetup::Single,
        "defer" => RingSetup::Defer,
        _ => {
            assert!(!p.available, "{value}: probe available");
            assert_eq!(p.ring_flags, None);
            let reason = p.reason.as_deref().unwrap_or_default();
            assert!(
                reason.contains(&format!("RINGXFER_RING_FLAGS={value:?}")),
                "reason names the variable and value: {reason}"
            );
            let r = Engine::new(Backend::Uring);
            assert!(
                matches!(&r, Err(Error::UringUnavailable(why)) if why == reason),
                "{r:?}"
            );
            let e = Engine::new(Backend::Auto).expect("auto engine");
            assert_eq!(e.backend().name(), "blocking");
            assert_eq!(e.fallback_reason(), Some(reason));
            assert_eq!(e.ring_flags(), None);
            println!("level ok: refused");
            return;
        }
    };
    if !p.available
        && p.reason
            .as_deref()
            .is_some_and(|r| r.contains("os error 22"))
    {
        // The kernel predates this level's flags (EINVAL): the refusal is the fallback
        // chain's trigger, checked here as the forced level's visible outcome.
        let r = Engine::new(Backend::Uring);
        assert!(matches!(r, Err(Error::UringUnavailable(_))), "{r:?}");
        println!("level ok: kernel refuses {value}: {:?}", p.reason);
        return;
    }
    assert!(p.available, "{value}: {:?}", p.reason);
    let want = (setup, fd, true);
    assert_eq!(parts(p.ring_flags), Some(want), "{value}: probe");
    let (s1, s2) = tcp_pair();
    let mut e1 = engine(&ring_opts(None));
    let mut e2 = engine(&ring_opts(Some(Duration::from_secs(10))));
    assert_eq!(parts(e1.ring_flags()), Some(want), "{value}: engine");
    both_ways(&mut e1, &mut e2, (&s1, &s2), (1 << 20) + 3, &value);
    // The same engines on another thread.
    thread::scope(|s| {
        s.spawn(|| {
            both_ways(
                &mut e1,
                &mut e2,
                (&s1, &s2),
                1 << 20,
                &format!("{value} moved"),
            )
        });
    });
    both_ways(&mut e1, &mut e2, (&s1, &s2), 4096, &format!("{value} back"));
    println!("level ok: {value}");
}
