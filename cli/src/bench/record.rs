//! The one run record and the one summary of every bench mode, as in the `--json` report's
//! `runs` and `summary` arrays (and the rows of the text tables).
//!
//! A [`RunRecord`] holds what every mode reports about a run (backend, repeat, bytes, seconds,
//! verified, error, CPU), the mode's kind of run when it has kinds (`receive` of `--fresh`,
//! `path` of `--count-arrays` and `--pingpong`), and the mode's own fields ([`Detail`],
//! flattened into the run's object). A [`Summary`] is one cell — runs of the same backend, kind
//! and size — with the figures its runs have: median, min and max GB/s and arrays/s, CPU per
//! GB, the reverse direction's median (`--bidir`), round-trip percentiles (`--pingpong`).
//! [`summarize`] makes the cells, in the order their first run ran.

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use ringxfer::EngineStats;

use super::batch::PerEnd;
use crate::measure::{CpuPair, CpuPerGb};
use crate::report::median;

/// The kind of a run within its backend, under the mode's own key: `{"receive": "fresh"}`,
/// `{"path": "batched"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Label {
    /// The JSON key.
    pub(crate) key: &'static str,
    /// The kind's name.
    pub(crate) name: &'static str,
}

impl Serialize for Label {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(self.key, self.name)?;
        m.end()
    }
}

/// One measured run, as in the JSON `runs` array.
#[derive(Debug, Serialize)]
pub(crate) struct RunRecord {
    /// `"uring"` or `"blocking"`.
    pub(crate) backend: String,
    /// The mode's kind of run, under its key (none for the main job).
    #[serde(flatten)]
    pub(crate) kind: Option<Label>,
    /// 1-based repeat number.
    pub(crate) repeat: u32,
    /// Main job and `--fresh`: the array's bytes (one transfer); `--count-arrays`: payload
    /// bytes of all arrays of the run; `--pingpong`: the message's payload bytes.
    pub(crate) bytes: u64,
    /// The run under the clock (`--pingpong`: warm-up included).
    pub(crate) seconds: f64,
    /// 10^9 bytes per second of the bytes moved ([`RunRecord::moved`]); none for
    /// `--pingpong`, which measures latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) gbytes_per_s: Option<f64>,
    /// Every check of the run passed (what each mode checks: its module docs).
    pub(crate) verified: bool,
    /// What failed when `verified` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// CPU seconds of the sending and the receiving thread during the run (`--pingpong`:
    /// the echoing and the timing thread).
    pub(crate) cpu: CpuPair,
    /// The mode's own fields.
    #[serde(flatten)]
    pub(crate) detail: Detail,
}

impl RunRecord {
    /// Bytes the run moved: the main job's `total_bytes`, else `bytes`.
    pub(crate) fn moved(&self) -> u64 {
        match &self.detail {
            Detail::Bulk(b) => b.total_bytes,
            _ => self.bytes,
        }
    }

    /// `verified`, and with `--bidir` the reverse direction's too.
    pub(crate) fn all_verified(&self) -> bool {
        self.verified
            && match &self.detail {
                Detail::Bulk(b) => b.reverse.as_ref().is_none_or(|r| r.verified),
                _ => true,
            }
    }

    /// The cell of the summary this run belongs to.
    fn cell(&self) -> (&str, Option<Label>, u64) {
        (&self.backend, self.kind, self.bytes)
    }
}

/// A mode's own fields of a run.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Detail {
    /// The main job.
    Bulk(BulkRun),
    /// `--fresh`.
    Fresh {
        /// `fresh` only: the pool held recycled memory of this size when the run started
        /// (false for the first fresh run of the process, and for arrays below 1 MiB, which
        /// live on the heap).
        #[serde(skip_serializing_if = "Option::is_none")]
        recycled: Option<bool>,
    },
    /// `--count-arrays`.
    Many {
        /// Arrays in the run.
        arrays: u64,
        arrays_per_s: f64,
    },
    /// `--pingpong`.
    Pingpong(PingRun),
}

/// The main job's own fields of a run.
#[derive(Debug, Serialize)]
pub(crate) struct BulkRun {
    /// Times the array was sent, back to back on the run's connection (1 for arrays of
    /// 256 MiB and more; see `super::batch`).
    pub(crate) transfers_per_run: u64,
    /// Bytes moved in the run: `bytes` times `transfers_per_run` (what `gbytes_per_s` and
    /// the CPU per GB are computed from).
    pub(crate) total_bytes: u64,
    /// SQEs each end's engine submitted during the run (0 on the blocking backend; a uring
    /// run with 0 is a bug: every uring transfer goes through the ring).
    pub(crate) sqes: PerEnd,
    /// CQEs each end's engine reaped during the run (`SEND_ZC` notifications included).
    pub(crate) cqes: PerEnd,
    /// `SEND_ZC` notification CQEs among `cqes`.
    pub(crate) notifs: PerEnd,
    /// SQEs among `sqes` that addressed the socket through the ring's file table
    /// (`--fixed-files`; 0 without it).
    pub(crate) fixed_file_sqes: PerEnd,
    /// What the sending engine's zero-copy sends did (adaptive `--send-op auto`, the
    /// default: see `ringxfer::uring::zc_policy`).
    pub(crate) send_zc: SendZcRecord,
    /// With `--registered`: both arrays were registered with the kernel for this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) registered: Option<bool>,
    /// `--bidir`: the other direction (the run's own fields are the client-to-server one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reverse: Option<Reverse>,
}

/// The reverse direction of a `--bidir` run (server to client, at the same time as the
/// forward one).
#[derive(Debug, Serialize)]
pub(crate) struct Reverse {
    pub(crate) seconds: f64,
    pub(crate) gbytes_per_s: f64,
    /// Same checks as the forward direction's, on the client's receive buffer.
    pub(crate) verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// CPU seconds of the reverse sending and receiving threads.
    pub(crate) cpu: CpuPair,
}

/// The sending engine's `SEND_ZC` figures of one run, as in the JSON `send_zc` of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct SendZcRecord {
    /// `SEND_ZC` requests submitted (trial and kept ones; every send with `--send-op
    /// send-zc`).
    pub(crate) attempted: u64,
    /// Of their usage reports (adaptive only): the kernel copied the bytes anyway.
    pub(crate) copied: u64,
    /// Of their usage reports (adaptive only): the bytes left from the array's own pages.
    pub(crate) kept: u64,
    /// Destinations switched to plain `SEND` because the kernel copies (0 or 1 here): after
    /// the trial, or at once, without one, for a local peer (loopback: no `SEND_ZC` at all).
    pub(crate) switched: u64,
}

impl From<&EngineStats> for SendZcRecord {
    fn from(st: &EngineStats) -> Self {
        SendZcRecord {
            attempted: st.zc_attempted,
            copied: st.zc_copied,
            kept: st.zc_kept,
            switched: st.zc_switched,
        }
    }
}

/// `--pingpong`'s own fields of a run: its round-trip figures (and, not in the JSON, every
/// timed round trip, for the cell's percentiles).
#[derive(Debug, Serialize)]
pub(crate) struct PingRun {
    #[serde(flatten)]
    pub(crate) latency: Latency,
    /// Timed round trips, µs, in the order they ran.
    #[serde(skip)]
    pub(crate) rtts_us: Vec<f64>,
}

/// Round-trip times in µs: the figures of one run and of one (backend, size, path) cell.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Latency {
    /// Timed round trips (warm-up excluded).
    pub(crate) round_trips: usize,
    pub(crate) median_us: f64,
    /// 90th percentile, nearest rank.
    pub(crate) p90_us: f64,
    /// 99th percentile, nearest rank.
    pub(crate) p99_us: f64,
    pub(crate) min_us: f64,
    pub(crate) max_us: f64,
}

impl Latency {
    /// The figures of `us`, sorted in place (zeros when empty).
    pub(crate) fn of(us: &mut [f64]) -> Latency {
        us.sort_by(f64::total_cmp);
        Latency {
            round_trips: us.len(),
            median_us: median(us),
            p90_us: percentile(us, 90.0),
            p99_us: percentile(us, 99.0),
            min_us: us.first().copied().unwrap_or(0.0),
            max_us: us.last().copied().unwrap_or(0.0),
        }
    }
}

/// The nearest-rank `p`-th percentile of sorted values: the smallest value with at least `p`
/// percent of the values at or below it (0 when empty).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median, min and max of one figure over a cell's runs, serialized as
/// `median_UNIT`, `min_UNIT`, `max_UNIT` (e.g. `median_gbytes_per_s`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Spread {
    unit: &'static str,
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Spread {
    /// The spread of `values` (zeros when empty).
    pub(crate) fn of(unit: &'static str, values: impl IntoIterator<Item = f64>) -> Spread {
        let mut v: Vec<f64> = values.into_iter().collect();
        v.sort_by(f64::total_cmp);
        Spread {
            unit,
            median: median(&v),
            min: v.first().copied().unwrap_or(0.0),
            max: v.last().copied().unwrap_or(0.0),
        }
    }
}

impl Serialize for Spread {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry(&format!("median_{}", self.unit), &self.median)?;
        m.serialize_entry(&format!("min_{}", self.unit), &self.min)?;
        m.serialize_entry(&format!("max_{}", self.unit), &self.max)?;
        m.end()
    }
}

/// Statistics of one cell (backend, kind, size), as in the JSON `summary` array.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    pub(crate) backend: String,
    #[serde(flatten)]
    pub(crate) kind: Option<Label>,
    /// `--pingpong`: the message size of the cell (each size is a cell of its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) bytes: Option<u64>,
    /// Runs in the cell.
    pub(crate) runs: usize,
    /// `--count-arrays`: `median_arrays_per_s`, `min_…`, `max_…`.
    #[serde(flatten)]
    pub(crate) arrays_per_s: Option<Spread>,
    /// `median_gbytes_per_s`, `min_…`, `max_…` (all modes but `--pingpong`).
    #[serde(flatten)]
    pub(crate) gbytes_per_s: Option<Spread>,
    /// Median user + system CPU seconds per 10^9 bytes moved, each end (all modes but
    /// `--pingpong`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cpu_s_per_gb: Option<CpuPerGb>,
    /// `--bidir`: median GB/s of the reverse direction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reverse_median_gbytes_per_s: Option<f64>,
    /// `--pingpong`: the figures of every timed round trip of the cell's runs.
    #[serde(flatten)]
    pub(crate) latency: Option<Latency>,
    /// `--pingpong`, framed paths: this path's median over the raw median of the same
    /// backend and size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) median_over_raw: Option<f64>,
}

impl Summary {
    /// The cell's median GB/s (`--pingpong`: none).
    pub(crate) fn median_gbytes_per_s(&self) -> Option<f64> {
        self.gbytes_per_s.map(|s| s.median)
    }
}

/// One summary per cell (backend, kind, size) of `runs`, in the order of each cell's first
/// run.
pub(crate) fn summarize(runs: &[RunRecord]) -> Vec<Summary> {
    let mut cells: Vec<(&str, Option<Label>, u64)> = Vec::new();
    for r in runs {
        if !cells.contains(&r.cell()) {
            cells.push(r.cell());
        }
    }
    cells
        .into_iter()
        .map(|cell| cell_summary(runs.iter().filter(|r| r.cell() == cell).collect()))
        .collect()
}

/// The summary of one cell's runs (at least one).
fn cell_summary(mine: Vec<&RunRecord>) -> Summary {
    let first = mine[0];
    let throughput = first.gbytes_per_s.is_some();
    let mut rtts: Vec<f64> = Vec::new();
    let mut reverse: Vec<f64> = Vec::new();
    let mut arrays: Vec<f64> = Vec::new();
    for r in &mine {
        match &r.detail {
            Detail::Pingpong(p) => rtts.extend(&p.rtts_us),
            Detail::Bulk(b) => reverse.extend(b.reverse.as_ref().map(|b| b.gbytes_per_s)),
            Detail::Many { arrays_per_s, .. } => arrays.push(*arrays_per_s),
            Detail::Fresh { .. } => {}
        }
    }
    let pingpong = matches!(first.detail, Detail::Pingpong(_));
    Summary {
        backend: first.backend.clone(),
        kind: first.kind,
        bytes: pingpong.then_some(first.bytes),
        runs: mine.len(),
        arrays_per_s: matches!(first.detail, Detail::Many { .. })
            .then(|| Spread::of("arrays_per_s", arrays)),
        gbytes_per_s: throughput
            .then(|| Spread::of("gbytes_per_s", mine.iter().filter_map(|r| r.gbytes_per_s))),
        cpu_s_per_gb: throughput
            .then(|| CpuPerGb::median_of(mine.iter().map(|r| (r.moved() as f64, r.cpu)))),
        reverse_median_gbytes_per_s: (!reverse.is_empty()).then(|| Spread::of("", reverse).median),
        latency: pingpong.then(|| Latency::of(&mut rtts)),
        median_over_raw: None,
    }
}

/// The median of `figure` in the cell of `backend` and kind `kind` (the first such cell).
pub(crate) fn median_in(
    summary: &[Summary],
    backend: &str,
    kind: Option<&str>,
    figure: fn(&Summary) -> Option<f64>,
) -> Option<f64> {
    summary
        .iter()
        .find(|s| s.backend == backend && s.kind.map(|k| k.name) == kind)
        .and_then(figure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 90.0), 90.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        // 10 values: p90 is the 9th, p99 the 10th.
        let mut w: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        let l = Latency::of(&mut w);
        assert_eq!(
            l,
            Latency {
                round_trips: 10,
                median_us: 5.5,
                p90_us: 9.0,
                p99_us: 10.0,
                min_us: 1.0,
                max_us: 10.0,
            }
        );
    }

    fn run(backend: &str, kind: &'static str, bytes: u64, gb: f64, detail: Detail) -> RunRecord {
        RunRecord {
            backend: backend.to_owned(),
            kind: Some(Label {
                key: "path",
                name: kind,
            }),
            repeat: 1,
            bytes,
            seconds: 1.0,
            gbytes_per_s: Some(gb),
            verified: true,
            error: None,
            cpu: CpuPair::default(),
            detail,
        }
    }

    #[test]
    fn cells_in_first_run_order_with_their_spread() {
        let many = |a: f64| Detail::Many {
            arrays: 10,
            arrays_per_s: a,
        };
        let runs = [
            run("blocking", "b", 100, 2.0, many(20.0)),
            run("uring", "a", 100, 5.0, many(50.0)),
            run("blocking", "b", 100, 1.0, many(10.0)),
            run("blocking", "b", 100, 4.0, many(40.0)),
        ];
        let s = summarize(&runs);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].backend.as_str(), s[0].runs), ("blocking", 3));
        assert_eq!(
            s[0].gbytes_per_s.map(|g| (g.median, g.min, g.max)),
            Some((2.0, 1.0, 4.0))
        );
        assert_eq!(s[0].arrays_per_s.map(|g| g.median), Some(20.0));
        assert_eq!(s[0].bytes, None);
        assert_eq!(
            median_in(&s, "uring", Some("a"), Summary::median_gbytes_per_s),
            Some(5.0)
        );
        assert_eq!(
            median_in(&s, "uring", Some("b"), |s| s.median_gbytes_per_s()),
            None
        );
        let json = serde_json::to_value(&s[0]).unwrap();
        assert_eq!(json["path"], "b");
        assert_eq!(json["median_arrays_per_s"], 20.0);
        assert_eq!(json["max_gbytes_per_s"], 4.0);
        assert!(json.get("median_us").is_none());
        let json = serde_json::to_value(&runs[0]).unwrap();
        assert_eq!(
            (json["arrays"].as_u64(), json["arrays_per_s"].as_f64()),
            (Some(10), Some(20.0))
        );
    }

    #[test]
    fn pingpong_cells_pool_every_round_trip() {
        let ping = |us: &[f64]| {
            let mut rec = run(
                "uring",
                "raw",
                16,
                0.0,
                Detail::Pingpong(PingRun {
                    latency: Latency::of(&mut us.to_vec()),
                    rtts_us: us.to_vec(),
                }),
            );
            rec.gbytes_per_s = None;
            rec
        };
        let s = summarize(&[ping(&[1.0, 2.0]), ping(&[3.0, 4.0, 5.0])]);
        assert_eq!(s.len(), 1);
        let l = s[0].latency.unwrap();
        assert_eq!((l.round_trips, l.median_us, l.max_us), (5, 3.0, 5.0));
        assert_eq!(
            (s[0].bytes, s[0].gbytes_per_s, s[0].runs),
            (Some(16), None, 2)
        );
        assert!(s[0].cpu_s_per_gb.is_none());
    }
}
