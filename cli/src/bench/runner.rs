//! The one runner of every bench mode: backend selection, the engines or per-backend state,
//! the loop over repeats, backends and kinds (the order alternates), calibration (a run the
//! mode does not accept is done again), the per-run records and rows, the summary with its
//! medians and spread, the ratio and verdict lines, the `--json` report, and the result (a
//! failure when a run did not verify).
//!
//! A mode ([`Mode`]) says what differs: its per-backend state, its kinds of run, how one run
//! is measured and recorded, its table and its ratios.

use ringxfer::{Backend, Engine, Options};
use serde::Serialize;

use super::args::BenchArgs;
use super::common::{BenchSockBufs, Host, Measured, requested_bufs, select_backends};
use super::record::{RunRecord, Summary, summarize};
use crate::failure::Failure;
use crate::measure::{Progress, say_notices};

/// The `--json` report of every bench mode: the mode's own fields (`F`, flattened into the
/// top level), then what all modes report: the runs and the summary.
#[derive(Debug, Serialize)]
pub(crate) struct Report<F> {
    /// The mode's own fields.
    #[serde(flatten)]
    pub(crate) mode: F,
    /// Runs per backend (and kind).
    pub(crate) repeat: u32,
    /// The uring knobs, when uring was measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) uring_tuning: Option<ringxfer::UringTuning>,
    /// Why uring was skipped with `--backend both`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) uring_unavailable: Option<String>,
    /// The machine.
    pub(crate) host: Host,
    /// Socket buffer sizes, asked and effective.
    pub(crate) socket_buffers: BenchSockBufs,
    /// Every run, in the order run.
    pub(crate) runs: Vec<RunRecord>,
    /// Per backend (and kind): median, min, max.
    pub(crate) summary: Vec<Summary>,
}

/// What a bench mode brings to the [runner](run).
pub(crate) trait Mode {
    /// What the mode keeps per backend across all runs: its engines, or what a run makes its
    /// engines from, and calibration.
    type Ends;
    /// A kind of run within a backend (`()` for a mode with one kind).
    type Kind: Copy;
    /// What one run's receiving side got or found (see [`Measured`]).
    type Got;
    /// The mode's own top-level fields of the `--json` report.
    type Fields: Serialize;

    /// The engine options: `base` (backend, `--timeout`, the uring tuning) with the mode's
    /// own settings.
    fn options(&self, base: Options) -> Options {
        base
    }
    /// The state of one backend; `opts` has its backend set.
    fn ends(&self, opts: &Options) -> Result<Self::Ends, Failure>;
    /// Groups of runs done one after the other, each with all its repeats (`--pingpong`'s
    /// message sizes); 1 by default.
    fn phases(&self) -> usize {
        1
    }
    /// The kinds run on `backend` in `phase`, in the first repeat's order.
    fn kinds(&self, phase: usize, backend: Backend) -> Vec<Self::Kind>;
    /// The kind's name in a failure's message (`None`: the mode has one kind).
    fn kind_name(kind: Self::Kind) -> Option<&'static str>;
    /// The text report's lines before the first run.
    fn print_header(&self, a: &BenchArgs, opts: &Options);
    /// Bytes the progress bar (`-i`) expects over all runs.
    fn progress_total(&self, backends: &[Backend], repeat: u32) -> u64;
    /// Measures one run.
    fn measure(
        &mut self,
        ends: &mut Self::Ends,
        kind: Self::Kind,
        progress: Option<&Progress>,
    ) -> Result<Measured<Self::Got>, Failure>;
    /// Calibration: false when the run does not count and must be done again (the mode has
    /// adjusted `ends`); true by default.
    fn accept(&mut self, _ends: &mut Self::Ends, _m: &Measured<Self::Got>) -> bool {
        true
    }
    /// The record of a run (after its checks).
    fn record(
        &mut self,
        backend: Backend,
        kind: Self::Kind,
        repeat: u32,
        m: Measured<Self::Got>,
    ) -> RunRecord;
    /// Row `n` (1-based) of the run table.
    fn print_row(&self, n: usize, rec: &RunRecord);
    /// The mode's ratios, from the summary (which it may complete): its JSON fields and the
    /// text lines printed under the summary table.
    fn conclude(&self, summary: &mut [Summary], runs: &[RunRecord]) -> (Self::Fields, Vec<String>);
    /// The text summary table.
    fn print_summary(&self, summary: &[Summary]);
    /// Added to the failure's message when runs did not verify.
    fn unverified_note(&self) -> String {
        String::new()
    }
}

/// Runs `mode`: every repeat of every phase, then the summary and the report.
pub(crate) fn run<M: Mode>(a: &BenchArgs, mut mode: M) -> Result<(), Failure> {
    let tuning = a.tuning.tuning()?;
    let (backends, uring_unavailable) = select_backends(a.backend)?;
    let opts = mode.options(Options {
        idle_timeout: a.timeout,
        uring: tuning.clone(),
        ..Options::default()
    });
    let mut ends = Vec::new();
    for &b in &backends {
        let o = Options {
            backend: b,
            ..opts.clone()
        };
        ends.push((b, mode.ends(&o)?));
    }
    if !a.json {
        mode.print_header(a, &opts);
    }
    let progress = Progress::start(a.interval, mode.progress_total(&backends, a.repeat));
    let mut runs = Vec::new();
    let mut bufs = requested_bufs(a);
    for phase in 0..mode.phases() {
        for r in 0..a.repeat {
            for_each_kind(
                &mut mode,
                &mut ends,
                phase,
                r,
                |mode, backend, kind, m| {
                    if runs.is_empty() {
                        (bufs.sender, bufs.receiver) = m.bufs;
                    }
                    let rec = mode.record(backend, kind, r + 1, m);
                    if !a.json {
                        if progress.is_some() {
                            // Let the interval lines on stderr go out before this row.
                            let _ = std::io::Write::flush(&mut std::io::stderr());
                        }
                        mode.print_row(runs.len() + 1, &rec);
                    }
                    runs.push(rec);
                },
                progress.as_ref(),
            )?;
        }
    }
    if let Some(p) = progress {
        p.finish();
    }

    let mut summary = summarize(&runs);
    let (fields, lines) = mode.conclude(&mut summary, &runs);
    let (bad, total) = (
        runs.iter().filter(|r| !r.all_verified()).count(),
        runs.len(),
    );
    if a.json {
        crate::report::print_json(&Report {
            mode: fields,
            repeat: a.repeat,
            uring_tuning: backends.contains(&Backend::Uring).then_some(tuning),
            uring_unavailable,
            host: Host::here(),
            socket_buffers: bufs,
            runs,
            summary,
        })?;
    } else {
        mode.print_summary(&summary);
        for l in lines {
            println!("{l}");
        }
    }
    if bad > 0 {
        return Err(Failure::runtime(format!(
            "{bad} of {total} runs did not verify{}",
            mode.unverified_note()
        )));
    }
    Ok(())
}

/// Repeat `r` (0-based) of `phase`: each backend (the order alternates between repeats, so
/// neither always runs on a warmer machine), and within a backend each kind (alternating
/// too); each run measured until the mode accepts it (its failure ends the bench, named by
/// backend, kind and repeat), then handed to `done`.
fn for_each_kind<M: Mode>(
    mode: &mut M,
    ends: &mut [(Backend, M::Ends)],
    phase: usize,
    r: u32,
    mut done: impl FnMut(&mut M, Backend, M::Kind, Measured<M::Got>),
    progress: Option<&Progress>,
) -> Result<(), Failure> {
    let n = ends.len();
    for i in 0..n {
        let (backend, e) = &mut ends[(i + r as usize) % n];
        let backend = *backend;
        let ks = mode.kinds(phase, backend);
        for j in 0..ks.len() {
            let kind = ks[(j + r as usize) % ks.len()];
            if let Some(p) = progress {
                p.set_label(&backend.to_string());
            }
            let m = loop {
                let m = mode.measure(e, kind, progress).map_err(|f| {
                    let k = M::kind_name(kind).map_or_else(String::new, |k| format!(" {k}"));
                    Failure::runtime(format!("{backend}{k} run {}: {}", r + 1, f.message))
                })?;
                if mode.accept(e, &m) {
                    break m;
                }
            };
            done(mode, backend, kind, m);
        }
    }
    Ok(())
}

/// One sending and one receiving engine of a backend, alive across all runs (the ends of
/// `--fresh`, `--count-arrays` and `--pingpong`).
pub(crate) struct Pair {
    pub(crate) tx: Engine,
    pub(crate) rx: Engine,
}

impl Pair {
    /// Both engines.
    pub(crate) fn new(opts: &Options) -> Result<Pair, Failure> {
        Ok(Pair {
            tx: Engine::with_options(opts.clone())?,
            rx: Engine::with_options(opts.clone())?,
        })
    }

    /// Runs `op` with both engines, then says both engines' notices.
    pub(crate) fn measure<T>(
        &mut self,
        op: impl FnOnce(&mut Engine, &mut Engine) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let m = op(&mut self.tx, &mut self.rx)?;
        say_notices("bench", &self.tx);
        say_notices("bench", &self.rx);
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::{CpuPair, SockBufs};

    /// A mode that measures nothing: it logs each measure call, rejects the first run of each
    /// backend once (calibration), and fails where told.
    #[derive(Default)]
    struct Fake {
        /// Per measure call: the backend's calibration state before it.
        calls: Vec<bool>,
        fail_at: Option<usize>,
    }

    impl Mode for Fake {
        /// Calibrated yet.
        type Ends = bool;
        type Kind = char;
        type Got = usize;
        type Fields = ();

        fn ends(&self, _opts: &Options) -> Result<bool, Failure> {
            Ok(false)
        }
        fn kinds(&self, phase: usize, backend: Backend) -> Vec<char> {
            match (phase, backend) {
                (0, Backend::Uring) => vec!['a', 'b'],
                (0, _) => vec!['a', 'b', 'c'],
                _ => vec!['z'],
            }
        }
        fn kind_name(kind: char) -> Option<&'static str> {
            Some(if kind == 'b' { "bee" } else { "other" })
        }
        fn print_header(&self, _a: &BenchArgs, _opts: &Options) {}
        fn progress_total(&self, _backends: &[Backend], _repeat: u32) -> u64 {
            0
        }
        fn measure(
            &mut self,
            calibrated: &mut bool,
            _kind: char,
            _progress: Option<&Progress>,
        ) -> Result<Measured<usize>, Failure> {
            let n = self.calls.len();
            if self.fail_at == Some(n) {
                return Err(Failure::runtime("boom"));
            }
            self.calls.push(*calibrated);
            Ok(Measured {
                seconds: 1.0,
                cpu: CpuPair::default(),
                bufs: (SockBufs::default(), SockBufs::default()),
                got: n,
            })
        }
        fn accept(&mut self, calibrated: &mut bool, _m: &Measured<usize>) -> bool {
            std::mem::replace(calibrated, true)
        }
        fn record(&mut self, _b: Backend, _k: char, _r: u32, _m: Measured<usize>) -> RunRecord {
            unreachable!("for_each_kind hands runs to its caller")
        }
        fn print_row(&self, _n: usize, _rec: &RunRecord) {}
        fn conclude(&self, _s: &mut [Summary], _r: &[RunRecord]) -> ((), Vec<String>) {
            ((), Vec::new())
        }
        fn print_summary(&self, _summary: &[Summary]) {}
    }

    /// Every run `for_each_kind` hands on over `repeats`: (backend, kind, repeat, which
    /// measure call it was).
    fn runs(
        mode: &mut Fake,
        phase: usize,
        repeats: u32,
    ) -> Result<Vec<(Backend, char, u32, usize)>, Failure> {
        let mut ends = vec![(Backend::Uring, false), (Backend::Blocking, false)];
        let mut done = Vec::new();
        for r in 0..repeats {
            for_each_kind(
                mode,
                &mut ends,
                phase,
                r,
                |_, b, k, m| done.push((b, k, r + 1, m.got)),
                None,
            )?;
        }
        Ok(done)
    }

    #[test]
    fn backends_and_kinds_alternate_and_short_runs_are_redone() {
        let mut mode = Fake::default();
        let done = runs(&mut mode, 0, 2).unwrap();
        use Backend::{Blocking as B, Uring as U};
        assert_eq!(
            done,
            vec![
                // Repeat 1: uring first; its first run (call 0) was not accepted.
                (U, 'a', 1, 1),
                (U, 'b', 1, 2),
                // Blocking's first run (call 3) was not accepted either.
                (B, 'a', 1, 4),
                (B, 'b', 1, 5),
                (B, 'c', 1, 6),
                // Repeat 2: blocking first, each backend's kinds rotated by one.
                (B, 'b', 2, 7),
                (B, 'c', 2, 8),
                (B, 'a', 2, 9),
                (U, 'b', 2, 10),
                (U, 'a', 2, 11),
            ]
        );
        // The two redone runs were each backend's first, measured before calibration.
        let uncalibrated: Vec<usize> = (0..mode.calls.len()).filter(|&i| !mode.calls[i]).collect();
        assert_eq!(uncalibrated, vec![0, 3]);
        assert_eq!(mode.calls.len(), 12);
    }

    #[test]
    fn a_failed_run_ends_the_bench_named_by_backend_kind_and_repeat() {
        // Call 8 is repeat 2's blocking 'c' (calls 0 and 3 were redone).
        let mut mode = Fake {
            fail_at: Some(8),
            ..Fake::default()
        };
        let e = runs(&mut mode, 0, 2).unwrap_err();
        assert_eq!(e.message, "blocking other run 2: boom");
        let mut mode = Fake {
            fail_at: Some(2),
            ..Fake::default()
        };
        assert_eq!(
            runs(&mut mode, 0, 1).unwrap_err().message,
            "uring bee run 1: boom"
        );
    }

    #[test]
    fn phases_have_their_own_kinds() {
        let mut mode = Fake::default();
        let kinds: Vec<char> = runs(&mut mode, 1, 1).unwrap().iter().map(|r| r.1).collect();
        assert_eq!(kinds, vec!['z', 'z']);
    }
}
