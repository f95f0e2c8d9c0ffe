//! `ringxfer bench --fresh` and `ringxfer bench --count-arrays` as a user runs them: the built
//! binary with `--json`, tiny sizes; every documented field present and every run verified.
//! The main job's own JSON (`ringxfer bench` without these flags) is checked unchanged, small
//! arrays batched (many transfers per run of at least 0.25 s) with their SQE/CQE counts.

mod util;

use std::process::Command;

use serde_json::Value;
use util::bin::BIN;
use util::uring_available;

/// Runs `ringxfer bench ARGS... --json`; its parsed stdout (panics unless it exits 0).
fn bench_json(args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .expect("run ringxfer");
    assert!(
        out.status.success(),
        "ringxfer bench {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON object ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Exit status of `ringxfer bench ARGS...`.
fn bench_status(args: &[&str]) -> Option<i32> {
    Command::new(BIN)
        .arg("bench")
        .args(args)
        .output()
        .expect("run ringxfer")
        .status
        .code()
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

#[test]
fn fresh_mode_json() {
    // 2.4 MB: above the library's heap threshold (1 MiB), so fresh arrays come from mappings
    // and the recycling pool is exercised.
    let d = bench_json(&["--fresh", "--count", "300000", "--repeat", "3"]);
    assert_eq!(d["mode"], "fresh");
    assert_eq!(d["bytes"], 2_400_000);
    assert!(d["host"]["cpus"].as_u64().unwrap() >= 1, "host block: {d}");
    let mut cells: Vec<(String, String)> = vec![
        ("blocking".into(), "pretouched".into()),
        ("blocking".into(), "fresh".into()),
        ("blocking".into(), "naive".into()),
    ];
    if uring_available() {
        cells.push(("uring".into(), "pretouched".into()));
        cells.push(("uring".into(), "fresh".into()));
    }
    let runs = d["runs"].as_array().unwrap();
    assert_eq!(runs.len(), cells.len() * 3, "{d}");
    for r in runs {
        for key in [
            "backend",
            "receive",
            "bytes",
            "seconds",
            "gbytes_per_s",
            "verified",
        ] {
            assert!(!r[key].is_null(), "run lacks {key}: {r}");
        }
        assert_eq!(r["verified"], true, "{r}");
        assert_eq!(r["bytes"], 2_400_000);
        assert!(num(r, "seconds") > 0.0 && num(r, "gbytes_per_s") > 0.0);
        assert_eq!(r["recycled"].is_boolean(), r["receive"] == "fresh", "{r}");
        let cell = (
            r["backend"].as_str().unwrap().to_owned(),
            r["receive"].as_str().unwrap().to_owned(),
        );
        assert!(cells.contains(&cell), "unexpected run {r}");
    }
    // One engine per backend across repeats: after the first fresh run, the dropped array's
    // memory is there for every later one.
    let fresh: Vec<&Value> = runs.iter().filter(|r| r["receive"] == "fresh").collect();
    assert!(
        fresh[1..].iter().all(|r| r["recycled"] == true),
        "{fresh:?}"
    );
    let summary = d["summary"].as_array().unwrap();
    assert_eq!(summary.len(), cells.len());
    for s in summary {
        let (med, min, max) = (
            num(s, "median_gbytes_per_s"),
            num(s, "min_gbytes_per_s"),
            num(s, "max_gbytes_per_s"),
        );
        assert!(0.0 < min && min <= med && med <= max, "{s}");
    }
    assert!(num(&d["ratio_fresh_over_pretouched"], "blocking") > 0.0);
    if uring_available() {
        assert!(num(&d["ratio_fresh_over_pretouched"], "uring") > 0.0);
        assert!(num(&d, "ratio_fresh_uring_over_naive_blocking") > 0.0);
    } else {
        assert!(d["ratio_fresh_uring_over_naive_blocking"].is_null());
    }
}

#[test]
fn fresh_mode_small_arrays_and_options() {
    // Below the heap threshold (nothing recycled), another dtype, no recycling, prefault.
    let d = bench_json(&[
        "--fresh",
        "--backend",
        "blocking",
        "--dtype",
        "u2",
        "--size",
        "64KiB",
        "--repeat",
        "2",
        "--recycle",
        "0",
        "--prefault",
        "populate",
    ]);
    assert_eq!(d["dtype"], "<u2");
    assert_eq!(d["prefault"], "populate");
    assert_eq!(d["recycle_bytes"], 0);
    let runs = d["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 6);
    assert!(runs.iter().all(|r| r["verified"] == true), "{d}");
    assert!(
        runs.iter()
            .filter(|r| r["receive"] == "fresh")
            .all(|r| r["recycled"] == false),
        "{d}"
    );
    assert!(d["ratio_fresh_over_pretouched"]["uring"].is_null());
}

fn check_count_arrays(d: &Value, arrays: u64, array_bytes: u64) {
    assert_eq!(d["mode"], "count-arrays");
    assert_eq!(d["arrays"], arrays);
    assert_eq!(d["array_bytes"], array_bytes);
    let mut cells = vec![("blocking", "batched"), ("blocking", "per-array")];
    if uring_available() {
        cells.push(("uring", "batched"));
        cells.push(("uring", "per-array"));
    }
    let runs = d["runs"].as_array().unwrap();
    assert_eq!(
        runs.len() as u64,
        cells.len() as u64 * d["repeat"].as_u64().unwrap()
    );
    for r in runs {
        assert_eq!(r["verified"], true, "{r}");
        assert_eq!(r["arrays"], arrays);
        assert_eq!(r["bytes"], arrays * array_bytes);
        let (secs, aps, gbs) = (
            num(r, "seconds"),
            num(r, "arrays_per_s"),
            num(r, "gbytes_per_s"),
        );
        assert!(secs > 0.0);
        assert!(
            (aps * secs - arrays as f64).abs() < 1e-6 * arrays as f64,
            "{r}"
        );
        assert!(
            (gbs * 1e9 * secs - (arrays * array_bytes) as f64).abs() < 1.0,
            "{r}"
        );
        let cell = (r["backend"].as_str().unwrap(), r["path"].as_str().unwrap());
        assert!(cells.contains(&cell), "unexpected run {r}");
    }
    for s in d["summary"].as_array().unwrap() {
        let (med, min, max) = (
            num(s, "median_arrays_per_s"),
            num(s, "min_arrays_per_s"),
            num(s, "max_arrays_per_s"),
        );
        assert!(0.0 < min && min <= med && med <= max, "{s}");
        assert!(num(s, "median_gbytes_per_s") > 0.0);
    }
    if uring_available() {
        for k in [
            "ratio_uring_batched_over_blocking_per_array",
            "ratio_uring_batched_over_blocking_batched",
            "ratio_uring_per_array_over_blocking_per_array",
        ] {
            assert!(num(d, k) > 0.0, "{k}");
        }
    }
}

#[test]
fn count_arrays_4k_json() {
    let d = bench_json(&[
        "--count-arrays",
        "3000",
        "--size",
        "4KiB",
        "--batch",
        "50",
        "--repeat",
        "2",
    ]);
    check_count_arrays(&d, 3000, 4096);
    assert_eq!(d["batch"], 50);
    assert_eq!(d["dtype"], "<f8");
    assert_eq!(d["shape"], serde_json::json!([512]));
}

#[test]
fn count_arrays_64k_json() {
    let d = bench_json(&[
        "--count-arrays",
        "300",
        "--size",
        "64KiB",
        "--dtype",
        "u1",
        "--repeat",
        "1",
    ]);
    check_count_arrays(&d, 300, 65536);
    assert_eq!(d["batch"], 64);
    assert_eq!(d["shape"], serde_json::json!([65536]));
}

#[test]
fn count_arrays_one_path_and_defaults() {
    // No --size: 4 KiB arrays; a large --batch (one send_arrays call per run).
    let d = bench_json(&[
        "--count-arrays",
        "500",
        "--path",
        "batched",
        "--batch",
        "1000",
        "--backend",
        "blocking",
        "--repeat",
        "1",
    ]);
    assert_eq!(d["array_bytes"], 4096);
    let runs = d["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["path"], "batched");
    assert_eq!(runs[0]["verified"], true);
    assert!(d["ratio_uring_batched_over_blocking_per_array"].is_null());
}

#[test]
fn usage_errors() {
    for args in [
        &["--fresh", "--count-arrays", "10"][..],
        &["--fresh", "--registered"],
        &["--count-arrays", "0"],
        &["--batch", "8"],
        &["--prefault", "populate"],
        &["--fresh", "--dtype", ">f8", "--count", "10"],
        &["--fresh", "--dtype", "c16", "--count", "10"],
    ] {
        assert_eq!(bench_status(args), Some(2), "{args:?}");
    }
}

#[test]
fn main_job_json_is_unchanged() {
    let d = bench_json(&["--count", "100000", "--repeat", "1"]);
    let keys: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
    for k in [
        "dtype",
        "count",
        "bytes",
        "repeat",
        "mode",
        "crc32",
        "host",
        "runs",
        "summary",
        "ratio_uring_over_blocking",
    ] {
        assert!(keys.contains(&k), "main job JSON lacks {k}: {keys:?}");
    }
    assert_eq!(d["mode"], "one-shot");
    for r in d["runs"].as_array().unwrap() {
        assert_eq!(r["verified"], true);
        assert!(r.get("receive").is_none() && r.get("path").is_none());
    }
}

/// Arrays of 256 MiB and more (the main job's 400 MB) stay one transfer per run: the run's
/// bytes are the array's, no batching fields, and the ring's SQEs are the planner's 4 MiB
/// segments (64 per end for 256 MiB) — on the sending end, with the default adaptive
/// zero-copy, the first chain's 4 trial `SEND_ZC`s of 256 KiB replace one 4 MiB segment
/// (+4 SQEs: 17 MiB in 8, then 239 MiB in 60) and add their 4 notification CQEs.
#[test]
fn large_arrays_stay_one_transfer_per_run() {
    let backend = if uring_available() {
        "uring"
    } else {
        "blocking"
    };
    let d = bench_json(&["--size", "256MiB", "--backend", backend, "--repeat", "1"]);
    assert_eq!(d["bytes"], 256u64 << 20);
    assert!(
        d.get("min_run_seconds").is_none(),
        "{}",
        d["min_run_seconds"]
    );
    assert!(d.get("short_runs_redone").is_none());
    let runs = d["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    assert_eq!(r["verified"], true, "{r}");
    assert_eq!(r["transfers_per_run"], 1, "{r}");
    assert_eq!(r["bytes"], 256u64 << 20, "{r}");
    assert_eq!(r["total_bytes"], 256u64 << 20, "{r}");
    let (tx_sqes, tx_cqes, rx) = if backend == "uring" {
        (64, 64, 64)
    } else {
        (0, 0, 0)
    };
    let sqes = serde_json::json!({"sender": tx_sqes, "receiver": rx});
    let cqes = serde_json::json!({"sender": tx_cqes, "receiver": rx});
    assert_eq!((&r["sqes"], &r["cqes"]), (&sqes, &cqes), "{r}");
    // Adaptive zero-copy is the default: toward the loopback peer it decides at once,
    // without a trial (one switched destination, no SEND_ZC); blocking counts nothing.
    let switched = u64::from(backend == "uring");
    let want_zc = serde_json::json!({"attempted": 0, "copied": 0, "kept": 0, "switched": switched});
    assert_eq!(r["send_zc"], want_zc, "{r}");
    let gbs = (256u64 << 20) as f64 / num(r, "seconds") / 1e9;
    assert!((num(r, "gbytes_per_s") - gbs).abs() < 1e-9 * gbs, "{r}");
}

/// Checks the `runs` batched runs of a `bench --size BYTES --json` report and returns them: each
/// run at least 0.25 s long, more than one transfer, its `total_bytes` K times the array's
/// and its GB/s their total over its seconds, verified; blocking runs used no SQE or CQE.
fn check_batched(d: &Value, array_bytes: u64, runs: usize) -> Vec<Value> {
    assert_eq!(d["bytes"], array_bytes);
    assert_eq!(num(d, "min_run_seconds"), 0.25);
    assert!(
        d["short_runs_redone"].as_u64().unwrap() >= 1,
        "K starts at 1: {d}"
    );
    assert!(
        d.get("direct_below_bytes").is_none(),
        "the bypass is gone: {d}"
    );
    let all = d["runs"].as_array().unwrap().clone();
    assert_eq!(all.len(), runs, "{d}");
    let zero = serde_json::json!({"sender": 0, "receiver": 0});
    for r in &all {
        assert_eq!(r["verified"], true, "{r}");
        assert!(r.get("error").is_none(), "{r}");
        let k = r["transfers_per_run"].as_u64().unwrap();
        assert!(k > 1, "{r}");
        let secs = num(r, "seconds");
        assert!(secs >= 0.25, "run shorter than 0.25 s: {r}");
        // `bytes` stays the array's (as in the main job's JSON); the run moved K of them.
        assert_eq!(r["bytes"], array_bytes, "{r}");
        assert_eq!(r["total_bytes"].as_u64().unwrap(), k * array_bytes, "{r}");
        let gbs = (k * array_bytes) as f64 / secs / 1e9;
        assert!((num(r, "gbytes_per_s") - gbs).abs() < 1e-9 * gbs, "{r}");
        if r["backend"] == "blocking" {
            assert_eq!((&r["sqes"], &r["cqes"]), (&zero, &zero), "{r}");
        }
    }
    all
}

/// `--fixed-files`: every uring SQE of a 1 MiB run (one per transfer and end) addresses the
/// socket through the ring's file table, and the SQE count is the same as without; without the
/// flag none does. Blocking runs count nothing.
#[test]
fn fixed_files_flag_counts_every_sqe() {
    let backends = if uring_available() { 2 } else { 1 };
    for fixed in [true, false] {
        let mut args = vec!["--size", "1MiB", "--repeat", "1"];
        if fixed {
            args.push("--fixed-files");
        }
        let d = bench_json(&args);
        for r in check_batched(&d, 1 << 20, backends) {
            let k = &r["transfers_per_run"];
            let ends = serde_json::json!({"sender": k, "receiver": k});
            let zero = serde_json::json!({"sender": 0, "receiver": 0});
            let (sqes, fixed_sqes) = match (r["backend"].as_str(), fixed) {
                (Some("uring"), true) => (&ends, &ends),
                (Some("uring"), false) => (&ends, &zero),
                _ => (&zero, &zero),
            };
            assert_eq!(
                (&r["sqes"], &r["fixed_file_sqes"]),
                (sqes, fixed_sqes),
                "fixed {fixed}: {r}"
            );
        }
    }
}

#[test]
fn small_arrays_are_batched_64k() {
    let d = bench_json(&["--size", "64KiB", "--repeat", "2"]);
    // Every uring transfer goes through the ring, 64 KiB too: one SEND (RECV) SQE and its
    // CQE per transfer and end.
    let backends = if uring_available() { 2 } else { 1 };
    for r in check_batched(&d, 64 << 10, 2 * backends) {
        if r["backend"] == "uring" {
            let k = &r["transfers_per_run"];
            let ends = serde_json::json!({"sender": k, "receiver": k});
            assert_eq!((&r["sqes"], &r["cqes"]), (&ends, &ends), "{r}");
        }
    }
}

#[test]
fn small_arrays_through_the_ring_count_their_sqes() {
    // 1 MiB goes through the ring: one 4 MiB-segment SEND (RECV) SQE and its CQE per
    // transfer and end.
    let d = bench_json(&["--size", "1MiB", "--repeat", "1"]);
    let runs = check_batched(&d, 1 << 20, if uring_available() { 2 } else { 1 });
    for r in runs.iter().filter(|r| r["backend"] == "uring") {
        let k = &r["transfers_per_run"];
        let ends = serde_json::json!({"sender": k, "receiver": k});
        assert_eq!((&r["sqes"], &r["cqes"]), (&ends, &ends), "{r}");
        assert_eq!(r["notifs"], serde_json::json!({"sender": 0, "receiver": 0}));
    }
}

#[test]
fn batched_registered_runs_are_verified() {
    // Pre-registered arrays, sent and received K times per run through their guards.
    let d = bench_json(&["--size", "1MiB", "--repeat", "1", "--registered"]);
    assert_eq!(d["mode"], "pre-registered");
    for r in check_batched(&d, 1 << 20, if uring_available() { 2 } else { 1 }) {
        if r["backend"] == "uring" {
            let k = &r["transfers_per_run"];
            let ends = serde_json::json!({"sender": k, "receiver": k});
            assert_eq!((&r["sqes"], &r["cqes"]), (&ends, &ends), "{r}");
        }
    }
}

/// Adaptive zero-copy as `bench` reports it. By default (`--send-op auto`) toward the loopback
/// peer each uring run's sending engine decides at once, without a trial — no `SEND_ZC`, one
/// switched destination — and the text report says so in a `note:` line. With
/// `--zc-trial-local` it tries 4 `SEND_ZC`s, all reported copied (loopback copies every
/// one), and switches. With `--send-op send` nothing is decided and there is no note.
#[test]
fn send_zc_adaptation_is_reported() {
    if !uring_available() {
        return;
    }
    let base = ["--size", "8MiB", "--backend", "uring"];
    let json = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        bench_json(&args)
    };
    let zc = |attempted: u64, copied: u64, switched: u64| serde_json::json!({"attempted": attempted, "copied": copied, "kept": 0, "switched": switched});
    for (extra, want, notifs) in [
        (&["--repeat", "2"][..], zc(0, 0, 1), 0),
        (&["--repeat", "2", "--send-op", "auto"][..], zc(0, 0, 1), 0),
        (&["--repeat", "2", "--zc-trial-local"][..], zc(4, 4, 1), 4),
        (&["--repeat", "1", "--send-op", "send"][..], zc(0, 0, 0), 0),
    ] {
        let d = json(extra);
        let runs = d["runs"].as_array().unwrap();
        assert_eq!(runs.len(), if extra[1] == "2" { 2 } else { 1 }, "{extra:?}");
        for r in runs {
            assert_eq!(r["verified"], true, "{extra:?}: {r}");
            assert_eq!(r["send_zc"], want, "{extra:?}: {r}");
            assert_eq!(r["notifs"]["sender"], notifs, "{extra:?}: {r}");
        }
    }
    let text = |extra: &[&str]| {
        let out = Command::new(BIN)
            .arg("bench")
            .args(base)
            .args(["--repeat", "1"])
            .args(extra)
            .output()
            .expect("run ringxfer");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let note = |out: &str| {
        let notes: Vec<&str> = out.lines().filter(|l| l.contains("send_zc")).collect();
        assert_eq!(notes.len(), 1, "{out}");
        notes[0].to_owned()
    };
    assert_eq!(
        note(&text(&[])),
        "note: send_zc: plain SEND without a trial in 1 uring run(s): the peer is local, where \
         the kernel copies every zero-copy send (--zc-trial-local tries anyway)"
    );
    let tried = note(&text(&["--zc-trial-local"]));
    assert!(
        tried.starts_with(
            "note: send_zc: 4 SEND_ZC request(s) in 1 uring run(s), usage reports 4 copied / 0 zero-copy"
        ) && tried.contains("switched to plain SEND for the rest in 1 of 1 run(s)"),
        "{tried}"
    );
    let send = text(&["--send-op", "send"]);
    assert!(!send.contains("send_zc"), "{send}");
}

#[test]
fn batched_text_report() {
    let out = Command::new(BIN)
        .args([
            "bench",
            "--size",
            "64KiB",
            "--repeat",
            "1",
            "--backend",
            "blocking",
        ])
        .output()
        .expect("run ringxfer");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let header = text
        .lines()
        .find(|l| l.starts_with("run "))
        .unwrap_or_else(|| panic!("no table header: {text}"));
    for col in ["K", "SQEs tx/rx", "CQEs tx/rx", "verified"] {
        assert!(header.contains(col), "{header}");
    }
    assert!(text.contains("K times back to back"), "{text}");
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("1  blocking"))
        .unwrap_or_else(|| panic!("no run row: {text}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert!(cells[2].parse::<u64>().unwrap() > 1, "{row}");
    assert_eq!(&cells[8..11], ["0/0", "0/0", "yes"], "{row}");
}

/// Checks a `bench --pingpong` report: the sizes, one run per backend, path, size and repeat,
/// each verified with `round_trips` timed round trips, and ordered percentiles everywhere.
fn check_pingpong(d: &Value, sizes: &[u64], round_trips: u64, repeat: u64, backends: &[&str]) {
    assert_eq!(d["mode"], "pingpong");
    assert_eq!(d["sizes"], serde_json::json!(sizes));
    assert_eq!(d["round_trips"], round_trips);
    assert_eq!(d["repeat"], repeat);
    assert!(d["warmup_round_trips"].as_u64().unwrap() >= 1, "{d}");
    assert!(d["host"]["cpus"].as_u64().unwrap() >= 1, "host block: {d}");
    let paths = ["raw", "framed", "send_arrays"];
    let ordered = |v: &Value| {
        let (min, med, p90, p99, max) = (
            num(v, "min_us"),
            num(v, "median_us"),
            num(v, "p90_us"),
            num(v, "p99_us"),
            num(v, "max_us"),
        );
        assert!(
            0.0 < min && min <= med && med <= p90 && p90 <= p99 && p99 <= max,
            "percentiles out of order: {v}"
        );
    };
    let runs = d["runs"].as_array().unwrap();
    assert_eq!(
        runs.len() as u64,
        (backends.len() * paths.len() * sizes.len()) as u64 * repeat,
        "{d}"
    );
    for r in runs {
        assert_eq!(r["verified"], true, "{r}");
        assert!(r.get("error").is_none(), "{r}");
        assert_eq!(r["round_trips"], round_trips, "{r}");
        assert!(num(r, "seconds") > 0.0);
        assert!(backends.contains(&r["backend"].as_str().unwrap()), "{r}");
        assert!(paths.contains(&r["path"].as_str().unwrap()), "{r}");
        assert!(sizes.contains(&r["bytes"].as_u64().unwrap()), "{r}");
        ordered(r);
    }
    let summary = d["summary"].as_array().unwrap();
    assert_eq!(summary.len(), backends.len() * paths.len() * sizes.len());
    for &b in backends {
        for &p in &paths {
            for &n in sizes {
                let s = summary
                    .iter()
                    .find(|s| s["backend"] == b && s["path"] == p && s["bytes"] == n)
                    .unwrap_or_else(|| panic!("no summary for {b} {p} {n}: {d}"));
                assert_eq!(s["runs"], repeat);
                assert_eq!(s["round_trips"], round_trips * repeat);
                ordered(s);
                if p == "raw" {
                    assert!(s.get("median_over_raw").is_none(), "{s}");
                } else {
                    let raw = summary
                        .iter()
                        .find(|s| s["backend"] == b && s["path"] == "raw" && s["bytes"] == n)
                        .unwrap();
                    let want = num(s, "median_us") / num(raw, "median_us");
                    assert!(
                        (num(s, "median_over_raw") - want).abs() < 1e-9 * want,
                        "{s}"
                    );
                }
            }
        }
    }
}

#[test]
fn pingpong_json() {
    let d = bench_json(&["--pingpong", "20", "--size", "4KiB", "--repeat", "2"]);
    let backends: &[&str] = if uring_available() {
        &["uring", "blocking"]
    } else {
        &["blocking"]
    };
    check_pingpong(&d, &[4096], 20, 2, backends);
    assert_eq!(d["dtype"], "<f8");
}

#[test]
fn pingpong_default_sizes() {
    // No --size / --count: the sweep 16 B, 100 KB, 1 MB (here of u1, one backend).
    let d = bench_json(&[
        "--pingpong",
        "3",
        "--backend",
        "blocking",
        "--dtype",
        "u1",
        "--repeat",
        "1",
    ]);
    check_pingpong(&d, &[16, 100_000, 1_000_000], 3, 1, &["blocking"]);
    assert_eq!(d["dtype"], "|u1");
    assert!(d["uring_tuning"].is_null());
}

#[test]
fn pingpong_usage_errors() {
    for (args, says) in [
        (&["--pingpong", "0"][..], "--pingpong must be at least 1"),
        (&["--pingpong", "--size", "0"], "at least one element"),
        (&["--pingpong", "--fresh"], "cannot be used with"),
        (
            &["--pingpong", "--count-arrays", "10"],
            "cannot be used with",
        ),
        (&["--pingpong", "--registered"], "cannot be used with"),
        (&["--pingpong", "-i", "1"], "cannot be used with"),
    ] {
        let out = Command::new(BIN)
            .arg("bench")
            .args(args)
            .output()
            .expect("run ringxfer");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
