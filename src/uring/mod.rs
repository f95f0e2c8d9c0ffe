//! The io_uring backend: the only module with `unsafe`.
//!
//! # How a transfer runs
//!
//! The [planner](crate::planner) cuts the array into segments (≤ `segment_bytes`, never across
//! a registered 1 GiB slot, never over the kernel's 0x7ffff000-byte per-call cap) and hands out
//! one **link chain** at a time: `chain_sqes` send (or recv) SQEs, each with `MSG_WAITALL`,
//! joined with `IOSQE_IO_LINK`. `MSG_WAITALL` makes the kernel retry a partial transfer inside
//! the request, so a CQE shorter than its SQE only happens on error, EOF, signal or cancel —
//! and then the link fails and the rest of the chain completes with `-ECANCELED`. The planner
//! then restarts from the first byte not yet confirmed. Only one chain is in flight per call,
//! because several unlinked sends in flight on one TCP socket reorder the stream after a short
//! send (observed on this project's machine: a 400 MB array corrupted 3 runs out of 3).
//!
//! # The invariant
//!
//! `Ring::transfer` never returns — on success, error or panic unwinding — while the kernel
//! still owns an SQE that points into the caller's memory: on success every CQE (and, for
//! `SEND_ZC`, every notification CQE) has been reaped; on error the in-flight SQEs are
//! canceled with `IORING_OP_ASYNC_CANCEL` and every CQE is drained first. If even draining
//! fails, the process aborts rather than return with memory lent to the kernel.
//!
//! # Bounded waits
//!
//! With an idle timeout `T` every wait is bounded: a chain that has produced no CQE for
//! `T/10` (at most 100 ms) is canceled and re-planned,
//! which makes the bytes moved inside its `MSG_WAITALL` requests visible, so the timeout fires
//! between `T` and `T + T/10` after the last byte moved. `SEND_ZC` notification CQEs count
//! as progress; when none has come for `T` (or when the timeout fired and one probe interval
//! later the kernel still holds pages), the peer has stopped taking data and the pages sit in
//! the socket's queue: the connection is aborted (`connect(AF_UNSPEC)`, RST) so that the
//! kernel drops that data and posts the notifications, and the call returns
//! [`Error::TimedOutAborted`]. Without an idle timeout the call waits, like a blocking send.
//!
//! # Completion queue overflow
//!
//! The CQ has 256 entries and chains share half of it, but a set of more than 128 transfers
//! keeps at least one SQE per transfer in flight, and their CQEs (plus `SEND_ZC`
//! notifications) can come due faster than a wait reaps them. The kernel then keeps the extra
//! CQEs in its overflow list and flags `IORING_SQ_CQ_OVERFLOW` (`IORING_FEAT_NODROP`, Linux
//! 5.5). Every `io_uring_enter` made while the flag is up sets `GETEVENTS`, which moves them
//! into the CQ as room frees up, and the completion loop reaps the whole CQ after every wait,
//! so nothing is lost or counted twice ([`crate::EngineStats::cq_overflow_flushes`] counts
//! those calls). A submission the kernel refuses with `EBUSY` while CQEs overflow
//! (io_uring_enter(2)) is retried after reaping and flushing (`Flight::push`); Linux 6.18 here
//! never refused one, so that branch is not exercised by the tests. A CQE the kernel could
//! not even keep in its list (an atomic allocation failed: the next enter fails with
//! `EBADR`) leaves an SQE whose completion never comes; draining then cannot prove the
//! kernel is done with the caller's memory, and the process aborts (above). Test:
//! `tests/scope.rs`, `c14_*` (800 transfers in one set, the overflow path asserted taken).
//!
//! # Measured choice of ops
//!
//! `scripts/tune.sh 5` (400 MB f64 over loopback TCP, 2-vCPU VM, Linux 6.18.44, 2026-11-29;
//! median GB/s of 5 runs, the blocking baseline measured alternately in the same run):
//!
//! | uring configuration                          | uring | blocking | ratio |
//! |----------------------------------------------|-------|----------|-------|
//! | `SEND`/`RECV` + `MSG_WAITALL`, 4 MiB × 8 (default) | 4.85 | 3.61 | 1.34 |
//! | `WRITE_FIXED` send, one-shot (registers)     | 4.06  | 3.65     | 1.11  |
//! | `SEND_ZC` send, one-shot (registers)         | 2.31  | 3.51     | 0.66  |
//! | `READ_FIXED` recv, one-shot (registers)      | 4.46  | 3.54     | 1.26  |
//! | pre-registered, default ops                  | 5.04  | 3.85     | 1.31  |
//! | pre-registered, `WRITE_FIXED`                | 4.77  | 3.79     | 1.26  |
//! | pre-registered, `SEND_ZC`                    | 2.38  | 3.73     | 0.64  |
//! | pre-registered, `READ_FIXED`                 | 4.87  | 3.71     | 1.32  |
//! | segments 1 / 2 / 4 / 8 / 16 / 64 MiB (chain 8) | 4.48 / 5.04 / 4.97 / 4.73 / 4.77 / 4.62 | | |
//! | chains of 1 / 2 / 4 / 8 / 16 / 32 (4 MiB)    | 4.85 / 4.80 / 4.85 / 4.97 / 4.82 / 4.77 | | |
//!
//! Chosen: `SEND`/`RECV` with `MSG_WAITALL` from the array's own address, 4 MiB segments,
//! 8 per chain. Fixed buffers do not pay on loopback (both ends copy anyway; a `SEND_ZC` skb
//! delivered locally is copied again and its notification CQE adds work), so one-shot calls
//! register only for the ops that need it ([`crate::RegisterPolicy::Auto`]); registration
//! itself costs 12.7 ms per 400 MB of touched memory. `IORING_OP_SEND` with
//! `IORING_RECVSEND_FIXED_BUF` fails with `EINVAL` on 6.18 (measured), so a registered send
//! uses `SEND_ZC` or `WRITE_FIXED`. Every transfer goes through the ring, whatever its size
//! (an earlier direct-syscall bypass below 512 KiB is gone; the README's size table has the
//! figures).
//!
//! # Ring setup flags
//!
//! Rings are set up with `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN` when the
//! kernel takes them (6.1), else `COOP_TASKRUN | TASKRUN_FLAG` (5.19), else none; the probe
//! decides once per process ([`Probe::ring_flags`], printed by `ringxfer probe` and in the
//! bench JSON's `host.probe.ring_flags`). `RINGXFER_RING_FLAGS=none|coop|single|defer[,fd]`
//! forces a level (a diagnostic, see `src/uring/setup.rs`, which also explains how a
//! `SINGLE_ISSUER` ring follows an engine moved to another thread). Every wait is an
//! `io_uring_enter` with `GETEVENTS` (`submit_and_wait`, or the timed `EXT_ARG` wait), which
//! is what runs `DEFER_TASKRUN`'s deferred completion work; a bare submit adds `GETEVENTS`
//! when the kernel flags pending task work.
//!
//! `scripts/ring_flags.sh 5` (loopback TCP, `ringxfer bench --size S --repeat 5 --json` per
//! line with `RINGXFER_RING_FLAGS` set; small sizes batched into runs of ≥ 0.25 s; 2-vCPU VM,
//! Linux 6.18.44; median GB/s of 5 runs [min–max], uring and blocking alternating in the same
//! invocation; ratio = uring/blocking medians; the last column the uring ends' median CPU s
//! per 10⁹ bytes, send/recv). First measured on a machine loaded by three other builders
//! (load average 5–9, two or three passes: the "ratio, loaded" column); re-measured on the
//! **idle** machine (2026-12-01 12:26 UTC, load average 1.7, one pass: every other column):
//!
//! | size   | flags (level)         | uring GB/s        | blocking GB/s     | ratio idle | ratio, loaded       | CPU s/GB send/recv |
//! |--------|-----------------------|-------------------|-------------------|------------|---------------------|--------------------|
//! | 400 MB | none                  | 2.77 [2.02–2.86]  | 2.55 [1.66–2.73]  | 1.09       | 0.89 / 0.84         | 0.31 / 0.22        |
//! | 400 MB | coop                  | 2.61 [2.29–2.73]  | 2.52 [2.47–2.75]  | 1.03       | 0.79 / 0.76         | 0.31 / 0.24        |
//! | 400 MB | single                | 2.73 [2.11–3.18]  | 2.80 [2.70–2.93]  | 0.98       | 0.71 / 0.84         | 0.30 / 0.24        |
//! | 400 MB | single+defer          | 2.65 [2.42–2.96]  | 2.95 [2.77–3.02]  | 0.90       | 0.91 / 0.97         | 0.31 / 0.23        |
//! | 400 MB | single+defer, reg. fd | 2.36 [2.17–2.61]  | 2.41 [2.36–2.60]  | 0.98       | 0.92 / 0.94         | 0.32 / 0.27        |
//! | 1 MiB  | none                  | 2.89 [1.37–3.02]  | 2.25 [2.06–2.86]  | 1.29       | 0.76 / 1.05 / 1.00  | 0.30 / 0.22        |
//! | 1 MiB  | coop                  | 2.88 [2.71–3.39]  | 2.97 [2.72–3.57]  | 0.97       | 1.01 / 0.92 / 0.94  | 0.29 / 0.22        |
//! | 1 MiB  | single                | 3.27 [1.66–3.40]  | 3.45 [2.09–4.36]  | 0.95       | 0.83 / 0.85 / 0.97  | 0.29 / 0.19        |
//! | 1 MiB  | single+defer          | 2.79 [2.19–4.12]  | 3.29 [2.60–3.63]  | 0.85       | 1.00 / 0.94 / 1.08  | 0.24 / 0.20        |
//! | 1 MiB  | single+defer, reg. fd | 3.53 [2.32–3.96]  | 2.62 [2.14–3.71]  | 1.35       | 0.95 / 0.98 / 1.06  | 0.25 / 0.18        |
//! | 64 KiB | none                  | 2.08 [1.95–2.20]  | 2.24 [2.14–3.10]  | 0.93       | 0.56 / 0.82 / 0.91  | 0.48 / 0.29        |
//! | 64 KiB | coop                  | 2.00 [1.41–2.30]  | 2.24 [1.93–2.42]  | 0.89       | 0.71 / 0.51 / 0.51  | 0.49 / 0.31        |
//! | 64 KiB | single                | 2.03 [1.90–2.26]  | 2.29 [2.27–2.47]  | 0.88       | 0.84 / 0.42 / 0.42  | 0.44 / 0.30        |
//! | 64 KiB | single+defer          | 2.19 [1.86–2.63]  | 2.36 [2.31–2.60]  | 0.93       | 0.73 / 0.93 / 0.57  | 0.43 / 0.26        |
//! | 64 KiB | single+defer, reg. fd | 2.19 [1.92–2.23]  | 2.34 [2.25–2.98]  | 0.94       | 0.95 / 0.72 / 0.88  | 0.45 / 0.24        |
//!
//! Idle, the uring runs of every level fall inside each other's [min–max] at every size, and
//! so do the blocking runs measured beside them (whose medians move 2.25–3.45 GB/s at 1 MiB
//! between lines of the same invocation order): the ratio column is noise of ±0.2. What the
//! idle pass does show beyond the noise is CPU: `single+defer` used the least sender CPU per
//! byte at 1 MiB (0.24 vs 0.29–0.30 s/GB) and the least receiver CPU at 64 KiB (0.26 vs
//! 0.29–0.31), the completion work running in the waiting thread instead of interrupting it.
//! Loaded: **every flag's effect is within the noise**: the
//! same configuration's ratio moves by up to 0.4 between passes minutes apart, and no level
//! wins every pass at any size (`coop` and `single` alone had the lowest 64 KiB ratios in two
//! passes of three, 0.51 and 0.42, with their own runs spread 0.83–2.13 GB/s). Chosen: `SINGLE_ISSUER | DEFER_TASKRUN` — the kernel's
//! recommended mode (`io_uring_setup_flags(7)`), never measurably worse here, and the one
//! whose completion work runs only in the waiting thread — and the ring fd **not**
//! registered: no measurable gain, while a registration lives in the registering thread's
//! table (16 slots), so an engine moved to another thread would leave its old ring pinned
//! there until that thread exits. Fixed files for the sockets: see "Fixed files" below.
//! Re-measured in the same sitting, 400 MB, `--repeat 3`, default flags:
//! segments 1 / 4 / 16 MiB gave ratios 0.52 / 1.03 / 1.24 and chains of 1 / 8 / 32 gave
//! 0.75 / 0.82 / 0.79, spreads again wider than the differences, so the table above (4 MiB ×
//! 8) stands.
//!
//! # Fixed files
//!
//! [`UringTuning::fixed_files`] installs a set's sockets in the ring's sparse file table
//! (`src/uring/registry.rs`) and addresses every SQE of their chains with `IOSQE_FIXED_FILE`,
//! sparing the kernel a `fget`/`fput` of the socket's file per SQE. The sockets are the
//! caller's and only lent for one call, and a filled slot holds the socket open (no FIN after
//! the caller's `close`), so every set pays one `io_uring_register(FILES_UPDATE)` to install
//! them and one to empty the slots: two syscalls per call against one file lookup saved per
//! SQE (1 SQE per end at 64 KiB and 1 MiB, 16 at 64 MiB, 96 at 400 MB). The SQE and CQE counts are the same
//! with and without (`EngineStats::fixed_file_sqes` says which SQEs used the table).
//!
//! `cargo run --release --example ring_ab -- SIZE 31 default fixed blocking` (loopback TCP,
//! one connection per run, runs of 512 MiB, the three configurations rotating within each of
//! 31 rounds; 2-vCPU VM, Linux 6.18.44; **machine loaded by two other builders, load
//! average 4.2–5.7**); median GB/s [min–max], and each end's median CPU s per 10⁹ bytes,
//! send / recv:
//!
//! | size   | default (fd)               | fixed files                | blocking          |
//! |--------|----------------------------|----------------------------|-------------------|
//! | 64 KiB | 1.26 [0.68–2.08], 0.195 / 0.328 | 1.20 [0.69–1.72], 0.226 / 0.328 | 1.44 [0.88–2.19] |
//! | 1 MiB  | 1.00 [0.62–2.45], 0.195 / 0.469 | 1.02 [0.67–1.31], 0.209 / 0.484 | 1.08 [0.65–1.65] |
//! | 64 MiB | 1.25 [0.88–1.53], 0.221 / 0.323 | 1.23 [0.93–1.66], 0.225 / 0.317 | 1.46 [1.02–1.90] |
//! | 400 MB | 1.26 [0.72–2.06], 0.251 / 0.354 | 1.09 [0.66–1.99], 0.244 / 0.343 | 1.26 [0.79–2.38] |
//!
//! (400 MB: 21 rounds, one transfer per run, 96 SQEs per end, load 5.6–6.2.)
//! An earlier pass (21 rounds, load 2.4–5.9) gave default / fixed 1.30 / 0.93 GB/s at 64 KiB,
//! 2.31 / 2.23 at 1 MiB and 1.27 / 1.41 at 64 MiB. Throughput differences are inside the
//! spread at 1 MiB and 64 MiB; the CPU figure, less sensitive to the load, shows the cost: at
//! 64 KiB the sender spends 16 % more CPU per byte (the two syscalls, about 2 µs on a 13 µs
//! send), at 1 MiB 7 %, at 64 MiB nothing measurable either way, at 400 MB (96 lookups
//! spared per end) 3 % less — within the noise, and not faster. **Default off**: it does
//! not pay for one-shot calls at any size measured; it is kept as a knob (`--fixed-files`)
//! for hosts where the file lookup costs more (a process whose fd table is shared by many
//! threads makes every `fget` an atomic on a shared cache line).
//!
//! # Mid sizes: what was tried
//!
//! Below 16 MiB the ring's receive is one `MSG_WAITALL` `RECV` per transfer; one that finds
//! only part of its bytes re-arms its poll and sleeps until task work runs it again, where a
//! blocking `recv` keeps the socket and loops in the kernel. `examples/ring_ab.rs` counts the
//! receiving thread's sleeps (`voluntary_ctxt_switches`) per transfer, which does not depend
//! on CPU speed: in the least loaded pass (1 MiB back to back, 21 rounds, load 2.3–2.7) the
//! uring receiver slept 6.45 times per transfer against 2.14 for the blocking one (GB/s
//! 2.31 [0.88–4.40] against 1.93 [1.06–4.36]); under the later load (4–5) the receiver is
//! always behind the sender, finds the bytes already queued and sleeps 0.04–0.2 times per
//! transfer on every backend. Tried as knobs, measured with
//! `ring_ab -- SIZE 21 --ack CONFIG...` (`--ack`: each transfer acknowledged, so every receive
//! starts on an empty socket; load 4.0–4.9), median GB/s [min–max] and receiver sleeps per
//! transfer:
//!
//! | size   | configuration                         | GB/s              | sleeps |
//! |--------|---------------------------------------|-------------------|--------|
//! | 1 MiB  | default (one 1 MiB `RECV`)            | 1.13 [0.66–1.68]  | 0.16   |
//! | 1 MiB  | `POLL_FIRST` after the first (no-op: one `RECV`; a noise control) | 1.00 [0.76–1.85] | 0.20 |
//! | 1 MiB  | 256 KiB segments (4 linked `RECV`s)   | 1.00 [0.70–1.77]  | 0.14   |
//! | 1 MiB  | 256 KiB segments + `POLL_FIRST`       | 0.99 [0.65–1.50]  | 0.13   |
//! | 1 MiB  | blocking                              | 1.00 [0.51–1.66]  | 0.15   |
//! | 16 MiB | default (4 × 4 MiB)                   | 0.91 [0.54–1.16]  | 1.38   |
//! | 16 MiB | `POLL_FIRST` after the first          | 0.78 [0.56–1.19]  | 2.00   |
//! | 16 MiB | 1 MiB segments                        | 0.72 [0.53–1.22]  | 1.75   |
//! | 16 MiB | 1 MiB segments + `POLL_FIRST`         | 0.72 [0.46–1.11]  | 4.50   |
//! | 16 MiB | blocking                              | 0.79 [0.58–1.65]  | 0.88   |
//!
//! Back to back (no `--ack`, 31 rounds): 1 MiB default 1.03, 256 KiB segments 1.04, with
//! `POLL_FIRST` 1.07, 128 KiB segments with `POLL_FIRST` 1.08, blocking 1.05 GB/s (spreads
//! 0.65–3.01); 64 MiB (15 rounds) default 1.04, `POLL_FIRST` 1.01, blocking 1.25.
//! `IORING_RECVSEND_POLL_FIRST` (Linux 5.19) on the `RECV`s behind the first of a chain —
//! the socket is known to be drained when the one before it completes — and smaller linked
//! segments at mid sizes helped nowhere beyond the noise (the least loaded 1 MiB pass showed
//! 256 KiB segments with `POLL_FIRST` at 2.55 sleeps against 4.99 without, which the loaded
//! passes did not repeat), so neither is kept (the knob, `recv_poll_first`, and the
//! `ring_ab` config `pollfirst` that measured it are in commit fe50fcf).
//!
//! Not tried: `min_wait_usec` in `io_uring_getevents_arg` (`IORING_FEAT_MIN_TIMEOUT`,
//! io_uring_enter(2): wait that long for `min_complete` CQEs, then return with at least one)
//! — a set waits for one CQE, so it changes nothing without a new wait strategy, and the wait
//! loop (`Flight::wait_until`) was out of this change's scope; `TASKRUN_FLAG` beside
//! `DEFER_TASKRUN` (it only lets a bare submit notice pending task work, and a set submits
//! bare only when its SQ is full).
//!
//! Tried and dropped: spinning before sleeping. An experiment build (patch not kept) that
//! flushed the ring (`io_uring_enter(GETEVENTS)`, `min_complete` 0) in a loop for up to 50 or
//! 200 µs before each sleeping wait, so that partial reads are retried without a wake-up:
//! `ring_ab SIZE 11 --ask default spin=50 [spin=200] blocking`. Loaded machine (load average
//! 2.8): 1 MiB default 0.89, spin=50 0.71, spin=200 0.78, blocking 0.87 GB/s; 64 KiB 1.05,
//! 0.62, 0.44, 1.10 — the spinning receiver takes the CPU the sender needs. Idle (load 1.6):
//! 1 MiB 1.64, spin=50 1.79, blocking 1.73; 64 KiB 1.01, 0.96, 0.93, with the receiver's CPU
//! per GB doubled at 64 KiB (0.48 → 0.99 s/GB). Nothing that pays on a shared 2-core machine.
//!
//! Tried and dropped: a fixed `SO_RCVLOWAT` on the receiving socket (256 KiB or 1 MiB), so
//! that a `RECV` is woken once per quarter-MiB instead of per arrival. With `ring_ab 1MiB 1
//! default+lowat=256KiB` (an experiment build setting the option on the receiving socket)
//! the blocking backend ran (1.58 GB/s) but the uring receiver **stalled for good** (killed
//! after 20 s; why was not investigated: setting the mark also clamps the window to it when it
//! grows the buffer, `tcp_set_rcvlowat`, and the poll re-arming a partial `MSG_WAITALL`
//! `RECV` waits for the mark). A mark that follows each request's remaining bytes would need
//! a setsockopt per re-arm, which the ring cannot issue between a request's partial reads.
//!
//! # Adaptive zero-copy
//!
//! [`SendOp::Auto`] (the default): on loopback (above) `SEND_ZC` costs half the throughput,
//! on a real NIC it saves the copy, and only the kernel knows which path a socket is on. A
//! send of at least one segment to a peer IP not judged yet puts [`zc_policy::ZC_TRIAL_SENDS`]
//! trial `SEND_ZC`s of [`zc_policy::ZC_TRIAL_BYTES`] with `IORING_SEND_ZC_REPORT_USAGE` at the
//! head of its chain (the rest plain `SEND`, linked behind them, so the stream never waits for
//! a notification); the notifications' usage bits decide per destination ([`zc_policy`]),
//! remembered in the ring. The trial is at most 1 MiB of `SEND_ZC` per destination and engine.
//!
//! **No trial toward a local peer.** A peer at a loopback address or at the socket's own
//! address ([`zc_policy::is_local_peer`]) is decided `Switch` at once: "all packets generated
//! with MSG_ZEROCOPY that are looped to a local socket will incur a deferred copy" (the
//! kernel's `Documentation/networking/msg_zerocopy.rst`, *Loopback*), so the trial can only
//! say so — and on this path it is not free. With the trial, the 400 MB main job ran at
//! uring/blocking 0.80–0.84 against 0.97–1.04 with [`SendOp::Send`] (idle machine), and
//! `--size 64MiB` (16 transfers per run on one connection, the trial in the first only) lost
//! too, although after the switch every SQE is the same `IORING_OP_SEND` as with `Send` and
//! the trial adds 4 SQEs to 96. The cost is in the connection, not in the engine:
//!
//! * 3 × 64 MiB on one loopback connection (a throwaway probe printing `TCP_INFO` after each
//!   transfer; 10 alternating rounds, machine loaded): with the trial 2.25 GB/s median
//!   [1.85–3.31] against 2.80 [1.88–4.41] with `Send`; the sender spent a median 18 % of its
//!   busy time limited by the receiver's window (`tcpi_rwnd_limited / tcpi_busy_time`)
//!   against 6 % with `Send`, and the receiver's autotuned `SO_RCVBUF` was 3.1 MB against
//!   5.5 MB. After the first 64 MiB (18 runs each, three sittings) it was at most 3.6 MB in
//!   17 runs of 18 with the trial (median 1.8 MB), in 5 of 18 with `Send` (median 7.2 MB).
//! * The same chain with the 4 trial slots sent as plain `SEND` (same 256 KiB cuts, same
//!   SQEs): 4.2–33.5 MB after the first 64 MiB (10 runs, median 7.8 MB): the cuts are not
//!   it, `SEND_ZC` is.
//! * The `tcp:tcp_rcvbuf_grow` tracepoint (3 traced runs each) points at the start of the
//!   connection: while the trial's segments arrive — copied on delivery, the deferred copy —
//!   the receiver's `scaling_ratio` (payload per truesize, × 256) was 209 at its first
//!   autotuning step in 2 runs of 3, against 252 with `Send`, and its buffer grew from a
//!   smaller base. Autotuning never shrinks a buffer and grows it only as the measured rate
//!   grows, which a window-limited sender keeps low, consistent with an effect that lasts for
//!   hundreds of MB. The kernel path in between was not traced further.
//!
//! With the local rule, `Auto` on loopback is `Send` plus a `getsockopt`, a `getpeername`
//! and a `getsockname` per transfer of at least one segment. Measured with one binary,
//! `ringxfer bench --repeat 3 --json` with `--send-op send`, the default (`Auto`) or
//! `--zc-trial-local` (the trial as before), invocations alternating (in both orders),
//! 2026-12-01, 2-vCPU VM **loaded by two other builders (load average 2.5–12)**: per
//! invocation the uring/blocking ratio of the medians of 3 runs; median [min–max] over the
//! invocations; "vs `Send`" the per-cycle ratio of the two ratios; CPU s per 10⁹ bytes of
//! the uring ends, send/recv:
//!
//! | size   | sends                  | n  | uring/blocking      | vs `Send`           | CPU s/GB      |
//! |--------|------------------------|----|---------------------|---------------------|---------------|
//! | 400 MB | `Send`                 | 25 | 0.829 [0.505–1.139] |                     | 0.158 / 0.205 |
//! | 400 MB | `Auto` (default)       | 25 | 0.875 [0.533–1.198] | 1.028 [0.514–1.423] | 0.146 / 0.207 |
//! | 400 MB | `Auto`, trial on lo    | 10 | 0.748 [0.561–0.886] | 0.849 [0.638–1.090] | 0.153 / 0.225 |
//! | 64 MiB | `Send`                 | 50 | 0.905 [0.425–1.270] |                     | 0.180 / 0.231 |
//! | 64 MiB | `Auto` (default)       | 50 | 0.889 [0.508–1.257] | 0.983 [0.602–1.718] | 0.185 / 0.221 |
//! | 64 MiB | `Auto`, trial on lo    | 10 | 0.917 [0.798–1.233] | 0.990 [0.708–1.309] | 0.208 / 0.209 |
//! | 64 MiB | `Send` vs `Send` (A/A) | 20 | 0.853 [0.584–1.195] | 1.037 [0.595–1.509] | 0.177 / 0.249 |
//!
//! So the default costs nothing measurable against `Send` (+2.8 % and −1.7 %, inside the
//! ±4 % an A/A pair shows here), while the trial on loopback still cost 15 % of the main job
//! in the same sitting (at 64 MiB it did not show under this load). Toward veth (another
//! network namespace on this host) the kernel copies too, but the peer's address is not
//! local, so the trial runs there (4 `SEND_ZC`s per connection, counted with `perf stat -e
//! io_uring:io_uring_submit_req --filter 'opcode == 47'`); 24 alternating pairs of 400 MB
//! `ringxfer send`/`recv --raw` over an unshaped veth gave `Auto`/`Send` 0.96 [0.44–1.81]
//! per pair at load average 5–12: not resolvable here, and left as it is.
//! [`UringTuning::zc_trial_local`] (CLI `--zc-trial-local`) runs the trial toward local
//! peers anyway, to test it or to measure its cost.

mod flight;
pub mod mapping;
mod probe;
mod registry;
mod setup;
mod sigpipe;
mod sockq;
pub mod zc_policy;
mod zerocopy;

pub use probe::{Probe, probe};
pub(crate) use registry::Registration;
use setup::CQ_ENTRIES;
pub use setup::MAX_CHAIN_SQES;
pub use setup::{RING_FLAGS_ENV, RingFlags, RingSetup};
use setup::{RingIo, build_ring};
pub(crate) use sockq::unsent_bytes;

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types};

use crate::driver::{Bufs, HOOK_SLICE, Progress, Transfer};
use crate::error::{Error, Result};
use crate::planner::{Direction, PlanError};
use flight::{Flight, Job, MAX_JOBS, POLL_ID, borrowed};
use registry::{Span, spans_of};
use sigpipe::SigpipeBlocked;
use zc_policy::{SEND_ZC_REPORT_USAGE, ZC_TRIAL_BYTES, ZcChoice, ZcDecision, ZcPolicy};

/// `msg_flags` of a `SEND`/`SEND_ZC`: `MSG_WAITALL` (retry a partial send inside the
/// request), `MSG_NOSIGNAL` (`EPIPE`, not `SIGPIPE`), and `MSG_MORE` on every SQE that does
/// not end the transfer, so the stream is corked between them (a framed message's header,
/// payload and trailer leave as full segments; the last SQE pushes: case C17).
fn send_flags(more_follows: bool) -> i32 {
    let more = if more_follows { libc::MSG_MORE } else { 0 };
    libc::MSG_WAITALL | libc::MSG_NOSIGNAL | more
}

/// The opcode used for sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
#[non_exhaustive]
pub enum SendOp {
    /// The default: adaptive zero-copy (`src/uring/zc_policy.rs`). Sends on TCP sockets (IPv4/IPv6)
    /// try `IORING_OP_SEND_ZC` with `IORING_SEND_ZC_REPORT_USAGE` — from the registered
    /// buffer when the array is registered ([`crate::Engine::register_send`]); a one-shot
    /// call does not register for it — on a few small trial requests while the other
    /// segments go out as plain `SEND`; the notifications then decide per destination (peer
    /// IP), for the engine's life: where the kernel copied anyway (veth, a NIC without
    /// scatter-gather) the rest goes as plain `SEND`, where it really sent from the user
    /// pages every segment of at least `zc_policy::ZC_MIN_BYTES` goes as `SEND_ZC`.
    /// A local peer (a loopback address, or the socket's own address) is decided at once,
    /// without a trial: the kernel copies every zero-copy send delivered on this host, and a
    /// trial there slowed the whole connection down (module docs, "Adaptive zero-copy";
    /// [`UringTuning::zc_trial_local`] runs it anyway). So on loopback `Auto` sends exactly
    /// what [`SendOp::Send`] sends.
    /// Only transfers of at least one segment ([`UringTuning::segment_bytes`]) run trial
    /// requests, so small transfers never pay for trying. With an idle timeout
    /// ([`crate::Options::idle_timeout`]) sends are plain `SEND`: a `SEND_ZC`'s pages queued
    /// to a peer that stopped reading can only be released by aborting the connection
    /// ([`crate::Error::TimedOutAborted`]), while a copying send times out with
    /// [`crate::Error::TimedOut`] and leaves the socket usable.
    /// Other sockets (AF_UNIX) always use `SEND`. What happened is counted in
    /// [`crate::EngineStats`] (`zc_attempted`, `zc_copied`, `zc_kept`, and `zc_switched`,
    /// which counts local peers decided without a trial too).
    Auto,
    /// `IORING_OP_SEND` with `MSG_WAITALL` (Linux 5.6), from the array's address (a
    /// registration is not used: on Linux 6.18 `IORING_OP_SEND` rejects
    /// `IORING_RECVSEND_FIXED_BUF` with `EINVAL`, measured with `examples`-style runs in this
    /// project; only `SEND_ZC` takes a fixed buffer).
    Send,
    /// `IORING_OP_SEND_ZC` (Linux 6.0) from the registered buffer: no copy on the sending
    /// side; each SQE yields a result CQE and later a notification CQE once the kernel has
    /// released the pages. ringxfer returns only after every notification.
    SendZc,
    /// `IORING_OP_WRITE_FIXED` (Linux 5.1) on the socket: any short write breaks the link.
    WriteFixed,
}

/// The opcode used for receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
#[non_exhaustive]
pub enum RecvOp {
    /// `IORING_OP_RECV` with `MSG_WAITALL` (Linux 5.6): each SQE completes only when full
    /// (or on EOF/error).
    Recv,
    /// `IORING_OP_READ_FIXED` (Linux 5.1) into the registered buffer; returns what the socket
    /// holds, so short results (and broken links) are the norm.
    ReadFixed,
}

/// Knobs of the uring backend. The defaults are the measured best on loopback TCP.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct UringTuning {
    /// Send opcode.
    pub send_op: SendOp,
    /// Receive opcode.
    pub recv_op: RecvOp,
    /// Bytes per SQE (clamped to 1..=0x7ffff000).
    pub segment_bytes: u32,
    /// SQEs per link chain (clamped to 1..=[`MAX_CHAIN_SQES`]).
    pub chain_sqes: u32,
    /// [`SendOp::Auto`] only: run the zero-copy trial toward local peers too (loopback
    /// addresses, the socket's own address). Default `false`: the kernel copies every
    /// zero-copy send delivered on this host, and a trial there is not free — its `SEND_ZC`s
    /// hold the receiving socket's buffer autotuning back for the rest of the connection
    /// (see "Adaptive zero-copy" in `src/uring/mod.rs`). For diagnostics and tests of
    /// the trial on a machine that only has loopback.
    pub zc_trial_local: bool,
    /// Address each transfer's socket through the ring's sparse file table
    /// (`IOSQE_FIXED_FILE`, Linux 5.19 for the sparse table) instead of by fd: each set
    /// installs its sockets (one `io_uring_register(IORING_REGISTER_FILES_UPDATE)`) and
    /// empties their slots when it ends (another), so that the kernel skips the per-SQE
    /// `fget`/`fput` of the socket's file. At most 64 transfers of a set get a slot; the
    /// rest, and every transfer when the kernel refuses the table, use their fd (counted:
    /// [`crate::EngineStats::fixed_file_sqes`]). Default `false`: measured not to pay for
    /// one-shot calls (see "Fixed files" in `src/uring/mod.rs`).
    pub fixed_files: bool,
}

impl Default for UringTuning {
    fn default() -> Self {
        UringTuning {
            send_op: SendOp::Auto,
            recv_op: RecvOp::Recv,
            segment_bytes: 4 << 20,
            chain_sqes: 8,
            zc_trial_local: false,
            fixed_files: false,
        }
    }
}

/// One io_uring instance.
pub(crate) struct Ring {
    ring: RingIo,
    registered: bool,
    /// Set once `SEND_ZC` was refused for lack of pinnable memory: the reason; sends then use
    /// `IORING_OP_SEND`.
    zc_refused: Option<String>,
    /// Registrations refused so far (one-shot calls fall back silently otherwise).
    register_refused: Option<String>,
    /// Epoch of the last set (12 bits, in every `user_data`): a late notification of an
    /// earlier set can never be taken for one of the current set.
    epoch: u64,
    /// SQEs pushed and CQEs reaped over the ring's life ([`crate::Engine::stats`]).
    stats: crate::stats::EngineStats,
    /// [`SendOp::Auto`]: the zero-copy trial and decision of each destination (peer IP)
    /// this ring has sent to, for its life (at most [`MAX_ZC_DESTS`]).
    zc_dests: HashMap<IpAddr, ZcPolicy>,
    /// The engine's interrupt check ([`crate::Options::interrupt`]), polled by every set.
    interrupt: Option<crate::Interrupt>,
}

/// Most destinations whose zero-copy decision a ring remembers; past it an arbitrary one is
/// forgotten (and tried again if it comes back).
const MAX_ZC_DESTS: usize = 1024;

/// The destination key of [`SendOp::Auto`]: the peer's IP address when `fd` is a connected
/// IPv4/IPv6 socket (IPv4-mapped IPv6 addresses as IPv4) whose send buffer holds at least
/// `zc_policy::ZC_MIN_SNDBUF` bytes, and whether that peer is on this host
/// ([`zc_policy::is_local_peer`]); `None`: plain `SEND` throughout.
fn zc_destination(fd: RawFd) -> Option<(IpAddr, bool)> {
    let fd = borrowed(fd);
    let sock = socket2::SockRef::from(&fd);
    if sock.send_buffer_size().ok()? < zc_policy::ZC_MIN_SNDBUF {
        return None;
    }
    let ip = |a: socket2::SockAddr| Some(a.as_socket()?.ip().to_canonical());
    let peer = ip(sock.peer_addr().ok()?)?;
    let local = ip(sock.local_addr().ok()?)?;
    Some((peer, zc_policy::is_local_peer(peer, local)))
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("registered", &self.registered)
            .finish_non_exhaustive()
    }
}

impl Ring {
    /// Creates a ring of `SQ_ENTRIES` SQEs and `CQ_ENTRIES` CQEs, with the probe's setup
    /// flags, for the calling thread (another thread using it later gets a new one: see
    /// [`Ring::claim`]).
    pub(crate) fn new() -> Result<Ring> {
        let ring = build_ring().map_err(|source| Error::Setup {
            what: "io_uring_setup",
            source,
        })?;
        Ok(Ring {
            ring,
            registered: false,
            zc_refused: None,
            register_refused: None,
            epoch: 0,
            stats: Default::default(),
            zc_dests: HashMap::new(),
            interrupt: None,
        })
    }

    /// This ring, polling `interrupt` in every set it runs.
    pub(crate) fn with_interrupt(mut self, interrupt: Option<crate::Interrupt>) -> Ring {
        self.interrupt = interrupt;
        self
    }

    /// Makes the ring usable from the calling thread: the first caller enables it; a
    /// `SINGLE_ISSUER` ring (or one whose fd is registered) belongs to the thread that
    /// enabled it, so a call from another thread rebuilds it for this one (see
    /// `src/uring/setup.rs`). Called before a set runs and before a registration; while a
    /// buffer is registered every call comes from the registering thread (the guard borrows
    /// the engine and is not `Send`), so a registered ring is never rebuilt.
    fn claim(&mut self) -> Result<()> {
        self.ring.ready_here().map_err(|source| Error::Setup {
            what: "io_uring_setup",
            source,
        })
    }

    /// The setup flags of this ring.
    pub(crate) fn flags(&self) -> RingFlags {
        self.ring.flags()
    }

    /// Moves the bytes of `spans`, in order, as one stream through socket `fd`: a set of one
    /// job ([`Ring::run_set`]).
    ///
    /// # Safety
    ///
    /// As [`Ring::run_set`].
    unsafe fn transfer(
        &mut self,
        fd: RawFd,
        dir: Direction,
        spans: &[Span],
        (tuning, idle): (&UringTuning, Option<Duration>),
        at_least: Option<u64>,
    ) -> Result<u64> {
        let job = Job::new(fd, dir, spans, tuning.segment_bytes, at_least);
        // SAFETY: forwarded from this function's contract.
        let mut r = unsafe { self.run_set(vec![job], &mut [None], tuning, idle) };
        r.pop().expect("one result per job")
    }

    /// Runs a set of transfers on this ring, all at once (see [`crate::driver`]): one result
    /// per transfer, in order. Nothing is registered.
    pub(crate) fn run_transfers(
        &mut self,
        transfers: &mut [Transfer<'_>],
        tuning: &UringTuning,
        idle: Option<Duration>,
        register: bool,
    ) -> Vec<Result<u64>> {
        if let (
            [
                t @ Transfer {
                    progress: None,
                    prefault_ahead: false,
                    ..
                },
            ],
            true,
        ) = (&mut *transfers, register)
        {
            // One array, registered for this one call (the fixed-buffer ops need it).
            let dir = t.bufs.dir();
            let span = match &mut t.bufs {
                Bufs::Send(p) if p.len() == 1 => Some((p[0].as_ptr() as *mut u8, p[0].len())),
                Bufs::Recv(p) if p.len() == 1 => Some((p[0].as_mut_ptr(), p[0].len())),
                _ => None,
            };
            if let Some(span) = span {
                // SAFETY: the span is the one slice `transfers` borrows for the whole call
                // (shared for a send, exclusive for a receive).
                let r = unsafe { self.one_shot(t.fd, dir, span, true, (tuning, idle)) };
                return vec![r.map(|()| span.1 as u64)];
            }
        }
        let mut hooks: Vec<Option<&mut dyn Progress>> = Vec::with_capacity(transfers.len());
        let jobs = transfers
            .iter_mut()
            .map(|t| {
                hooks.push(t.progress.as_mut().map(|h| &mut **h as &mut dyn Progress));
                let spans: Vec<Span> = match &mut t.bufs {
                    Bufs::Send(p) => p.iter().map(|b| Span::plain(b.as_ptr(), b.len())).collect(),
                    Bufs::Recv(p) => p
                        .iter_mut()
                        .map(|b| Span::plain(b.as_mut_ptr(), b.len()))
                        .collect(),
                };
                let dir = t.bufs.dir();
                let mut job = Job::new(
                    t.fd.as_raw_fd(),
                    dir,
                    &spans,
                    tuning.segment_bytes,
                    t.at_least,
                );
                job.prefault_ahead = t.prefault_ahead;
                job
            })
            .collect();
        // SAFETY: every span is a slice that `transfers` borrows for the whole call — shared
        // for sends (only read), exclusive for receives (so no two receive spans overlap and
        // nobody else touches them) — and none claims a registered buffer.
        unsafe { self.run_set(jobs, &mut hooks, tuning, idle) }
    }

    /// Runs every job of a set to completion on this ring, all at once: one link chain in
    /// flight per job, the chains of all jobs in flight together. Returns one result per job,
    /// in order. When a job fails, every other job still running is canceled and settled as
    /// [`Error::Canceled`] with its own byte counts; jobs already done keep their `Ok`.
    ///
    /// A job with `at_least: Some(min)` (receives only) is done as soon as `min` bytes have
    /// arrived, issuing one `RECV` without `MSG_WAITALL` at a time so that whatever the socket
    /// holds beyond `min` (up to the spans' length) comes in the same completion; its result
    /// is the bytes received. Otherwise a job moves every byte and its result is the total.
    ///
    /// `hooks[i]`, when given, is job `i`'s progress hook ([`crate::driver`], "Progress
    /// hooks"): while any hook has bytes it may be given, the loop hands over a slice of at
    /// most [`HOOK_SLICE`] bytes and then only flushes the ring (no wait); it blocks in its
    /// wait only when no hook has work. A job that succeeded has had every byte handed over
    /// before this returns. A receive job with `prefault_ahead` ([`crate::Prefault::Ahead`])
    /// is worked on the same way: one `MADV_POPULATE_WRITE` slice ahead of its receive
    /// point per round ([`Flight::prefault_work`]).
    ///
    /// # Safety
    ///
    /// Every span's `[ptr, ptr + len)` must be valid for reads (send) or writes (recv) for the
    /// duration of the call and not accessed by anyone else meanwhile (the safe wrappers hold
    /// `&[u8]` / `&mut [u8]`); no two jobs' receive spans overlap. A span's `buf_index`, when
    /// `Some`, must be the index of a registered buffer of this ring that contains the whole
    /// span. At most one job per socket and direction.
    unsafe fn run_set(
        &mut self,
        mut jobs: Vec<Job>,
        hooks: &mut [Option<&mut dyn Progress>],
        tuning: &UringTuning,
        idle: Option<Duration>,
    ) -> Vec<Result<u64>> {
        if jobs.len() > MAX_JOBS {
            // The job index must fit the SQE's user data: nothing is submitted, every job
            // fails saying so (a panic here took the CLI down with 5 rails x 1024 streams).
            let why = format!(
                "{} transfers at once: the uring backend runs at most {MAX_JOBS} in one set",
                jobs.len()
            );
            return jobs
                .iter()
                .map(|_| Err(Error::InvalidInput(why.clone())))
                .collect();
        }
        if let Err(e) = self.claim() {
            // Nothing was submitted: every job fails with the setup error.
            let errno = e.raw_os_error().unwrap_or(libc::EIO);
            return jobs.iter().map(|_| Err(setup_error(errno))).collect();
        }
        self.epoch = (self.epoch + 1) & 0xfff;
        let n = jobs.len();
        // With an idle timeout, no zero-copy: pages of a SEND_ZC queued to a peer that stops
        // reading are only released by aborting the connection (`TimedOutAborted`), where a
        // copying send returns `TimedOut` and leaves the socket usable (case C12).
        if tuning.send_op == SendOp::Auto && idle.is_none() {
            self.pick_zc_destinations(&mut jobs, tuning);
        }
        // WRITE_FIXED on a socket goes through `sock_write_iter`, which has no MSG_NOSIGNAL: a
        // closed peer would raise SIGPIPE in this thread and kill a host process that has
        // not ignored it (C and Python hosts; Rust binaries ignore it). Block it meanwhile.
        let _sigpipe = (tuning.send_op == SendOp::WriteFixed
            && jobs.iter().any(|j| j.dir == Direction::Send))
        .then(SigpipeBlocked::new);
        if tuning.fixed_files {
            let fds: Vec<RawFd> = jobs.iter().map(|j| j.fd).collect();
            // Refused: every SQE addresses its socket by fd, as without the knob.
            let _ = self.ring.install_files(&fds);
        }
        // Keep every CQE that can be due at once within the CQ: chains share half of it.
        let share = (CQ_ENTRIES as usize / 2 / n.max(1)).max(1);
        let chain_max = (tuning.chain_sqes.clamp(1, MAX_CHAIN_SQES) as usize).min(share);
        let mut interrupted = false;
        let mut flight = Flight {
            ring: &mut self.ring,
            epoch: self.epoch,
            jobs,
            stats: &mut self.stats,
            zc_dests: &mut self.zc_dests,
        };
        loop {
            // Plan and push the next chain of every job that has none in flight.
            let refused = self.zc_refused.is_some();
            // SAFETY: this function's contract, passed on unchanged (same spans, same ring).
            unsafe { push_chains(&mut flight, tuning, chain_max, idle, refused) };
            if flight.jobs.iter().all(Job::settled) {
                break;
            }
            // Work on the bytes the ring has moved (or is about to) while the rest is in
            // flight; then only flush the ring, without sleeping.
            let worked = flight.hook_work(hooks, HOOK_SLICE) | flight.prefault_work();
            // Until the interrupt check fires, every wait wakes within INTERRUPT_POLL to poll it.
            let poll_interrupt = self.interrupt.is_some() && !interrupted;
            let deadline = match worked {
                true => Some(Instant::now()),
                false => flight.deadline(idle, poll_interrupt),
            };
            if let Err(source) = flight.wait_until(deadline) {
                // The ring itself failed: every job still running fails with it.
                fail_all(&mut flight, &source);
                break;
            }
            flight.reap();
            if poll_interrupt && self.interrupt.as_ref().is_some_and(crate::Interrupt::fired) {
                // Cancel every chain; the loop drains them and each job settles Interrupted.
                interrupted = true;
                flight.interrupt();
            }
            check_chains(&mut flight, tuning, idle, &mut self.zc_refused);
            flight.check_pages(idle);
        }
        // The rest of every successful job's bytes (nothing is in flight any more).
        flight.hook_work(hooks, u64::MAX);
        let results = flight
            .jobs
            .iter_mut()
            .map(|j| j.result.take().expect("settled"))
            .collect();
        drop(flight);
        // Every job is settled: no SQE refers to a slot any more.
        self.ring.clear_files();
        results
    }

    /// Adaptive zero-copy ([`SendOp::Auto`]): the destination of every send job that could
    /// send `SEND_ZC` — one that runs a trial (at least one segment) or one of at least
    /// `ZC_MIN_BYTES` while some destination kept zero-copy; the lookup costs three syscalls,
    /// so smaller sends skip it — keeping at most [`MAX_ZC_DESTS`] destinations' policies. A
    /// new local destination ([`zc_policy::is_local_peer`]) is decided `Switch` at once
    /// (counted in `zc_switched`) unless [`UringTuning::zc_trial_local`] asks for a trial.
    fn pick_zc_destinations(&mut self, jobs: &mut [Job], tuning: &UringTuning) {
        let kept = self
            .zc_dests
            .values()
            .any(|p| p.decision() == Some(ZcDecision::Keep));
        for j in jobs.iter_mut().filter(|j| j.dir == Direction::Send) {
            let could_zc = j.len >= u64::from(tuning.segment_bytes)
                || (kept && j.len >= u64::from(zc_policy::ZC_MIN_BYTES));
            let dest = could_zc.then(|| zc_destination(j.fd)).flatten();
            j.zc_dest = dest.map(|(ip, _)| ip);
            let Some((ip, local)) = dest else { continue };
            if self.zc_dests.contains_key(&ip) {
                continue;
            }
            if self.zc_dests.len() >= MAX_ZC_DESTS {
                let forget = self.zc_dests.keys().next().copied();
                forget.map(|k| self.zc_dests.remove(&k));
            }
            let policy = if local && !tuning.zc_trial_local {
                self.stats.zc_switched += 1;
                ZcPolicy::decided(ZcDecision::Switch)
            } else {
                ZcPolicy::default()
            };
            self.zc_dests.insert(ip, policy);
        }
    }
}

/// One round of [`Ring::run_set`]: plans and pushes the next chain of every job that has none
/// in flight (or settles it: done, or stopped after another job failed). `zc_refused`: the
/// ring switched to copying sends.
///
/// # Safety
///
/// The contract of [`Ring::run_set`], for `flight`'s jobs.
unsafe fn push_chains(
    flight: &mut Flight<'_>,
    tuning: &UringTuning,
    chain_max: usize,
    idle: Option<Duration>,
    zc_refused: bool,
) {
    for i in 0..flight.jobs.len() {
        let j = &mut flight.jobs[i];
        if j.result.is_some() || j.chain_open {
            continue;
        }
        if j.stop {
            j.result = Some(Err(j.canceled_error()));
            continue;
        }
        let max = if j.at_least.is_some() { 1 } else { chain_max };
        // Adaptive zero-copy: this destination's policy, unless SEND_ZC was refused.
        let policy = match j.zc_dest {
            Some(ip) if !zc_refused => Some(flight.zc_dests.entry(ip).or_default()),
            _ => None,
        };
        // Only a transfer of at least one segment runs trial requests: a smaller one
        // (one SQE) would be all trial, and pays the cost of trying for nothing.
        let trial_ok = j.len >= u64::from(tuning.segment_bytes);
        let trials = match &policy {
            Some(p) if trial_ok => p.trial_slots(),
            _ => 0,
        };
        let caps = vec![ZC_TRIAL_BYTES; trials as usize];
        let Some(chain) = j.plan.next_chain_capped(max, &caps) else {
            j.result = Some(Ok(j.plan.confirmed()));
            flight.start_pages_wait(i, idle);
            continue;
        };
        // How each SQE of the chain goes out (adaptive sends only).
        let choices: Option<Vec<ZcChoice>> = policy.map(|p| {
            let choices = chain.sqes.iter().map(|s| match p.choose(s.len) {
                ZcChoice::Trial if !trial_ok => ZcChoice::Copy,
                ZcChoice::Trial => {
                    p.begin_trial();
                    ZcChoice::Trial
                }
                c => c,
            });
            choices.collect()
        });
        let entries = chain_entries(flight, i, &chain, tuning, zc_refused, choices.as_deref());
        let j = &mut flight.jobs[i];
        j.chain_open = true;
        j.quiet_since = Instant::now();
        // SAFETY: each entry points inside one span of job `i` (the planner never
        // crosses a piece boundary nor plans past the end), which the caller keeps
        // valid and unaliased for this whole call; a fixed entry uses the
        // `buf_index` of the registered slot that contains its span (this function's
        // contract). Every path out of `Ring::run_set` reaps every CQE first (its
        // loop ends only when every job is settled; `Flight`'s Drop on unwind).
        unsafe { flight.push(i, &entries) };
    }
}

/// The ring itself failed (`io_uring_enter`): every job still running fails with it, and
/// everything in flight is canceled and drained.
fn fail_all(flight: &mut Flight<'_>, source: &std::io::Error) {
    for i in 0..flight.jobs.len() {
        let j = &mut flight.jobs[i];
        if j.result.is_none() {
            j.result = Some(Err(Error::Io {
                op: "io_uring_enter",
                transferred: j.plan.confirmed(),
                expected: j.len,
                source: std::io::Error::from(source.kind()),
            }));
            j.stop = true;
        }
        flight.cancel(i);
    }
    flight.drain();
}

/// After a reap: settles every chain whose CQEs are all in, and cancels a chain that has been
/// quiet for a probe interval (or the idle timeout) so the bytes inside its `MSG_WAITALL`
/// requests show.
fn check_chains(
    flight: &mut Flight<'_>,
    tuning: &UringTuning,
    idle: Option<Duration>,
    zc_refused: &mut Option<String>,
) {
    let now = Instant::now();
    for i in 0..flight.jobs.len() {
        let j = &flight.jobs[i];
        if j.chain_open && j.plan.pending() == 0 {
            settle(flight, i, tuning, idle, zc_refused);
            continue;
        }
        if flight.recancel_if_due(i, now) {
            // The chain's cancel missed (see `flight::RECANCEL`): sent again.
            continue;
        }
        let j = &flight.jobs[i];
        if let (Some(t), true, false) = (idle, j.chain_open, j.canceled) {
            // A probe: no CQE for a probe interval (or the idle timeout is up) —
            // cancel the chain so that bytes inside its MSG_WAITALL requests show.
            let p = crate::blocking::probe_interval(t);
            if now >= j.quiet_since + p || now >= j.last_progress + t {
                flight.cancel(i);
            }
        }
    }
}

/// The error of every job of a set that could not start: the ring could not be claimed for
/// this thread (`errno` of the rebuild).
fn setup_error(errno: i32) -> Error {
    Error::Setup {
        what: "io_uring_setup",
        source: std::io::Error::from_raw_os_error(errno),
    }
}

/// Job `i`'s chain has every CQE in: confirm progress, turn a probe that found nothing for
/// the idle timeout into `TimedOut`, a failure into the job's error (and stop the rest of the
/// set). A refused `SEND_ZC` switches the ring to copying sends (`zc_refused` says why).
fn settle(
    flight: &mut Flight<'_>,
    i: usize,
    tuning: &UringTuning,
    idle: Option<Duration>,
    zc_refused: &mut Option<String>,
) {
    let j = &mut flight.jobs[i];
    j.chain_open = false;
    let canceled = std::mem::take(&mut j.canceled);
    match j.plan.settle() {
        Ok(moved) => {
            if moved > 0 {
                j.last_progress = Instant::now();
            }
            if j.stop {
                j.result = Some(Err(j.canceled_error()));
            } else if let Some(t) =
                idle.filter(|&t| canceled && moved == 0 && j.last_progress.elapsed() >= t)
            {
                j.result = Some(Err(Error::TimedOut {
                    transferred: j.plan.confirmed(),
                    expected: j.len,
                    timeout_ms: t.as_millis() as u64,
                }));
            } else if j.at_least.is_some_and(|min| j.plan.confirmed() >= min) {
                j.result = Some(Ok(j.plan.confirmed()));
            }
        }
        // SEND_ZC refused: C08 (zero-copy sends pin the pages they send, which
        // RLIMIT_MEMLOCK without CAP_IPC_LOCK refuses: ENOMEM, or ENOBUFS from the
        // socket's optmem), or a socket family without zero-copy (EOPNOTSUPP, e.g.
        // AF_UNIX). Nothing of the failed SQE was sent (the planner confirmed what was):
        // fall back to copying SENDs for the rest of this ring's life, and say so once.
        // Under `SendOp::Auto`, `EINVAL` too: Linux 6.0/6.1 know SEND_ZC but not
        // IORING_SEND_ZC_REPORT_USAGE (once: a plain SEND failing with it is an error).
        Err(PlanError::Os { errno, .. })
            if (matches!(errno, libc::ENOMEM | libc::ENOBUFS | libc::EOPNOTSUPP)
                || (errno == libc::EINVAL && tuning.send_op == SendOp::Auto))
                // Once refused, sends are plain SENDs: their failure is the transfer's (it
                // re-planned forever before).
                && zc_refused.is_none()
                && matches!(tuning.send_op, SendOp::SendZc | SendOp::Auto)
                && j.dir == Direction::Send
                && !j.stop =>
        {
            if zc_refused.is_none() {
                let why = std::io::Error::from_raw_os_error(errno);
                let hint = match crate::sock::explain_pinning(&why) {
                    _ if errno == libc::EOPNOTSUPP => {
                        "this socket type has no zero-copy send (e.g. AF_UNIX)".to_owned()
                    }
                    Some(pinning) => pinning,
                    None => "the socket's optmem (net.core.optmem_max) is exhausted".to_owned(),
                };
                *zc_refused = Some(format!(
                    "SEND_ZC refused ({why}): {hint}; falling back to copying IORING_OP_SEND"
                ));
            }
        }
        Err(e) => {
            j.result = Some(Err(plan_error(j, e)));
            for k in 0..flight.jobs.len() {
                if k != i && flight.jobs[k].result.is_none() {
                    flight.jobs[k].stop = true;
                    flight.cancel(k);
                }
            }
        }
    }
    if flight.jobs[i].result.is_some() {
        flight.start_pages_wait(i, idle);
    }
}

/// The error for a planner failure of job `j`.
fn plan_error(j: &Job, e: PlanError) -> Error {
    let (op, expected) = match j.dir {
        Direction::Send => ("send", j.len),
        Direction::Recv => ("recv", j.len),
    };
    match e {
        PlanError::Eof { transferred } => crate::sock::eof(&borrowed(j.fd), transferred, expected),
        PlanError::WriteZero { transferred } => Error::Io {
            op,
            transferred,
            expected,
            source: std::io::ErrorKind::WriteZero.into(),
        },
        PlanError::Os { errno, transferred } => Error::Io {
            op,
            transferred,
            expected,
            source: std::io::Error::from_raw_os_error(errno),
        },
        PlanError::ChainOrder { offset, short_at } => Error::ChainOrder { offset, short_at },
    }
}

/// Evaluates `$build` with `$fd` bound to the socket's io_uring target: `types::Fixed(slot)`
/// (the opcode builders then set `IOSQE_FIXED_FILE`) when `$slot` is `Some`, else
/// `types::Fd($raw)`. The builders take either through a sealed trait that cannot be named
/// here, hence a macro rather than a generic function.
macro_rules! with_target {
    ($slot:expr, $raw:expr, |$fd:ident| $build:expr) => {
        match $slot {
            Some(slot) => {
                let $fd = types::Fixed(slot);
                $build
            }
            None => {
                let $fd = types::Fd($raw);
                $build
            }
        }
    };
}

/// The SQEs of job `i`'s next `chain`: an optional linked `POLL_ADD` (after `-EAGAIN`), then
/// one op per planned SQE, linked, the last unlinked. `choices` (adaptive sends only): how
/// each SQE goes out; its `SEND_ZC`s ask for usage reports and are listed in the job's
/// `zc_reports`. The socket is addressed by its fixed-file slot when the set installed it
/// ([`UringTuning::fixed_files`]).
fn chain_entries(
    flight: &mut Flight<'_>,
    i: usize,
    chain: &crate::planner::Chain,
    tuning: &UringTuning,
    zc_refused: bool,
    choices: Option<&[ZcChoice]>,
) -> Vec<squeue::Entry> {
    let mut reports = Vec::new();
    let j = &flight.jobs[i];
    let slot = flight.ring.files.slot(i);
    let n = chain.sqes.len();
    let mut entries = Vec::with_capacity(n + 1);
    if chain.poll_first {
        let events = match j.dir {
            Direction::Send => libc::POLLOUT,
            Direction::Recv => libc::POLLIN,
        } as u32;
        let poll = with_target!(slot, j.fd, |fd| opcode::PollAdd::new(fd, events).build());
        entries.push(
            poll.flags(squeue::Flags::IO_LINK)
                .user_data(flight.ud(i, POLL_ID)),
        );
    }
    let recv_flags = if j.at_least.is_some() {
        0
    } else {
        libc::MSG_WAITALL
    };
    let send_op = match tuning.send_op {
        SendOp::SendZc | SendOp::Auto if zc_refused => SendOp::Send,
        op => op,
    };
    let mut zc_sqes = 0;
    for (k, s) in chain.sqes.iter().enumerate() {
        let span = j.spans[s.slot as usize];
        let p = span
            .ptr
            .wrapping_add((s.offset - j.starts[s.slot as usize]) as usize);
        let more = s.offset + u64::from(s.len) < j.len;
        let choice = choices.and_then(|c| c.get(k).copied());
        let ud = flight.ud(i, s.id);
        let e = with_target!(slot, j.fd, |fd| match (j.dir, span.buf_index) {
            (Direction::Send, idx) => match (send_op, idx) {
                (SendOp::SendZc, idx) => {
                    zc_sqes += 1;
                    opcode::SendZc::new(fd, p, s.len)
                        .buf_index(idx)
                        .flags(send_flags(more))
                        .build()
                }
                (SendOp::Auto, idx)
                    if matches!(choice, Some(ZcChoice::Trial | ZcChoice::ZeroCopy)) =>
                {
                    zc_sqes += 1;
                    reports.push((ud, choice == Some(ZcChoice::Trial)));
                    opcode::SendZc::new(fd, p, s.len)
                        .buf_index(idx)
                        .flags(send_flags(more))
                        .zc_flags(SEND_ZC_REPORT_USAGE)
                        .build()
                }
                (SendOp::WriteFixed, Some(idx)) => opcode::WriteFixed::new(fd, p, s.len, idx)
                    .offset(u64::MAX)
                    .build(),
                _ => opcode::Send::new(fd, p, s.len)
                    .flags(send_flags(more))
                    .build(),
            },
            (Direction::Recv, Some(idx)) if tuning.recv_op == RecvOp::ReadFixed => {
                opcode::ReadFixed::new(fd, p, s.len, idx)
                    .offset(u64::MAX)
                    .build()
            }
            (Direction::Recv, _) => opcode::Recv::new(fd, p, s.len).flags(recv_flags).build(),
        });
        let e = e.user_data(ud);
        entries.push(if k + 1 < n {
            e.flags(squeue::Flags::IO_LINK)
        } else {
            e
        });
    }
    flight.jobs[i].zc_reports.extend(reports);
    flight.stats.zc_attempted += zc_sqes;
    if slot.is_some() {
        flight.stats.fixed_file_sqes += entries.len() as u64;
    }
    entries
}

impl Ring {
    /// The ring's cumulative SQE/CQE counters ([`crate::Engine::stats`]).
    pub(crate) fn stats(&self) -> crate::stats::EngineStats {
        crate::stats::EngineStats {
            cq_overflow_flushes: self.ring.overflow_flushes,
            ..self.stats
        }
    }

    /// One-time notices about paths taken instead of the requested one (registration refused,
    /// `SEND_ZC` refused), oldest first.
    pub(crate) fn notices(&self) -> impl Iterator<Item = &str> {
        self.register_refused
            .iter()
            .chain(self.zc_refused.iter())
            .map(String::as_str)
    }

    /// One-shot transfer of `[ptr, ptr + len)`; registers it for this call when `register` is
    /// true (and the kernel agrees), then unregisters.
    ///
    /// # Safety
    ///
    /// The memory must be valid for reads (send) or writes (recv) and not otherwise accessed
    /// for the duration of the call.
    unsafe fn one_shot(
        &mut self,
        fd: BorrowedFd<'_>,
        dir: Direction,
        (ptr, len): (*mut u8, usize),
        register: bool,
        settings: (&UringTuning, Option<Duration>),
    ) -> Result<()> {
        let reg = if register {
            // SAFETY: the memory outlives this call (contract); we unregister below, after
            // `transfer` has drained every SQE.
            let r = unsafe { self.register(ptr, len) };
            self.note_refusal(r)
        } else {
            None
        };
        // SAFETY: forwarded from this function's contract; `reg` registers exactly this memory.
        let r = unsafe { self.transfer_all(fd, dir, &spans_of(ptr, len, reg.as_ref()), settings) };
        self.unregister();
        r
    }

    /// [`Ring::transfer`] of every byte of `spans`.
    ///
    /// # Safety
    ///
    /// As [`Ring::transfer`].
    unsafe fn transfer_all(
        &mut self,
        fd: BorrowedFd<'_>,
        dir: Direction,
        spans: &[Span],
        settings: (&UringTuning, Option<Duration>),
    ) -> Result<()> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.transfer(fd.as_raw_fd(), dir, spans, settings, None) }.map(drop)
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.unregister();
    }
}
