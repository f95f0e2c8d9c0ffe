//! How `ringxfer bench` measures small arrays: many transfers per run, each one checked.
//!
//! One 64 KiB transfer takes tens of microseconds, about what waking the two threads at the
//! start barrier costs, so a run of one transfer measures mostly noise. Arrays below
//! [`BATCH_BELOW_BYTES`] are therefore sent K times back to back per run, on the run's one
//! connection with the run's two engines, and the run's throughput is K × bytes over the time
//! of the whole batch (from the barrier until the receiver has the last byte and the sender has
//! returned) — criterion's batching, with a run lasting at least [`MIN_RUN_SECS`].
//!
//! **Choosing K** ([`Batch`]). Each backend starts at K = 1. A run shorter than
//! [`MIN_RUN_SECS`] is a calibration run: it is not reported, K grows to what the run's own
//! pace says would last 1.2 × [`MIN_RUN_SECS`] (at least doubling), and the run is done again
//! on a fresh connection. K is kept for that backend's later runs and grows the same way when
//! one of them falls short (the machine got slower), so every reported run lasts at least
//! [`MIN_RUN_SECS`]. At 64 KiB this settles after two or three short runs (a few tens of ms).
//!
//! Arrays of [`BATCH_BELOW_BYTES`] and more (the main job's 400 MB) stay one transfer per run:
//! such a transfer lasts tens of milliseconds or more, where the barrier's cost is below
//! 0.1 %, and their figures stay comparable with earlier reports.
//!
//! **Checking every transfer** ([`Spots`]). The last transfer of a run is checked byte for
//! byte (CRC-32 of the whole buffer, after the clock, as for a one-transfer run). The receive
//! buffer is reused, so the earlier ones are spot-checked inside the clock: 17 windows of 8
//! bytes spread over the array are set to the complement of the expected bytes before each
//! transfer and compared after it (a few dozen loads and stores per transfer, well under 1 %
//! of a 64 KiB transfer), which catches a transfer that wrote nothing or put bytes in the wrong
//! place. With `--registered` the receive buffer belongs to the registration guard, which
//! gives no write access, so the windows are compared but not re-poisoned. After the clock the
//! receiver also checks that the stream ends exactly after K × bytes (the sender closes; not
//! one byte more arrives), so no transfer moved more or fewer bytes than the array.

use serde::Serialize;

/// A batched run lasts at least this many seconds.
pub const MIN_RUN_SECS: f64 = 0.25;

/// Arrays of at least this many bytes (256 MiB) are one transfer per run.
pub const BATCH_BELOW_BYTES: usize = 256 << 20;

/// Windows compared per transfer besides the last one ([`Spots`]).
const SPOTS: usize = 16;

/// Transfers per run for one backend; see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    k: u64,
    batched: bool,
}

impl Batch {
    /// K = 1, growing when `bytes` is below [`BATCH_BELOW_BYTES`] (and not 0).
    pub fn for_size(bytes: usize) -> Batch {
        Batch {
            k: 1,
            batched: bytes > 0 && bytes < BATCH_BELOW_BYTES,
        }
    }

    /// True when runs are batched (K may grow).
    pub fn batched(&self) -> bool {
        self.batched
    }

    /// Transfers in the next run.
    pub fn transfers(&self) -> u64 {
        self.k
    }

    /// After a run of `self.transfers()` transfers that lasted `seconds`: true when it counts;
    /// false when it was too short, in which case K has grown and the run must be done again.
    pub fn accept(&mut self, seconds: f64) -> bool {
        if !self.batched || seconds >= MIN_RUN_SECS {
            return true;
        }
        self.k = grown(self.k, seconds);
        false
    }
}

/// The K that a run of `k` transfers in `seconds` says would last 1.2 × [`MIN_RUN_SECS`], and
/// at least `2 k`.
fn grown(k: u64, seconds: f64) -> u64 {
    let want = (k as f64 * MIN_RUN_SECS * 1.2 / seconds.max(1e-9)).ceil();
    let want = if want >= u64::MAX as f64 {
        u64::MAX
    } else {
        want as u64
    };
    want.max(k.saturating_mul(2))
}

/// The windows of the array checked after each transfer but the last; see the module docs.
#[derive(Debug, Clone)]
pub struct Spots {
    /// `(offset, len)` of each window.
    windows: Vec<(usize, usize)>,
}

impl Spots {
    /// [`SPOTS`] windows of up to 8 bytes evenly spread over `len` bytes, and the last 8.
    pub fn of(len: usize) -> Spots {
        let mut windows: Vec<(usize, usize)> = (0..SPOTS)
            .map(|j| j * len / SPOTS)
            .chain([len.saturating_sub(8)])
            .filter(|&o| o < len)
            .map(|o| (o, (len - o).min(8)))
            .collect();
        windows.sort_unstable();
        windows.dedup();
        Spots { windows }
    }

    /// Sets every window of `buf` to the complement of `want`'s bytes there.
    pub fn poison(&self, buf: &mut [u8], want: &[u8]) {
        for &(o, l) in &self.windows {
            for i in o..o + l {
                buf[i] = !want[i];
            }
        }
    }

    /// The offset of the first window where `got` differs from `want`.
    pub fn first_mismatch(&self, got: &[u8], want: &[u8]) -> Option<usize> {
        self.windows
            .iter()
            .find(|&&(o, l)| got[o..o + l] != want[o..o + l])
            .map(|&(o, _)| o)
    }
}

/// A figure of each end of a run, as in the JSON `sqes` / `cqes` / `notifs` of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PerEnd {
    /// The sending thread's engine.
    pub sender: u64,
    /// The receiving thread's engine.
    pub receiver: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_grows_until_runs_are_long_enough() {
        let mut b = Batch::for_size(64 << 10);
        assert!(b.batched());
        // 1 transfer in 100 µs: pace says 3000 for 0.3 s.
        assert!(!b.accept(100e-6));
        assert_eq!(b.transfers(), 3000);
        // Slower than the first run said (0.1 s for 3000): 9000.
        assert!(!b.accept(0.1));
        assert_eq!(b.transfers(), 9000);
        // Just short: at least doubled.
        assert!(!b.accept(0.249));
        assert_eq!(b.transfers(), 18000);
        assert!(b.accept(0.25));
        assert!(b.accept(3.0));
        assert_eq!(b.transfers(), 18000);
    }

    #[test]
    fn large_and_empty_arrays_are_one_transfer() {
        for bytes in [0, BATCH_BELOW_BYTES, 400_000_000] {
            let mut b = Batch::for_size(bytes);
            assert!(!b.batched());
            assert!(b.accept(0.001));
            assert_eq!(b.transfers(), 1);
        }
        assert!(Batch::for_size(BATCH_BELOW_BYTES - 1).batched());
    }

    #[test]
    fn spots_catch_a_stale_or_shifted_buffer() {
        let want: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        let s = Spots::of(want.len());
        assert_eq!(s.windows.len(), SPOTS + 1);
        assert_eq!(s.windows.last(), Some(&(4088, 8)));
        let mut buf = want.clone();
        assert_eq!(s.first_mismatch(&buf, &want), None);
        // A transfer that wrote nothing after the poison.
        s.poison(&mut buf, &want);
        assert_eq!(s.first_mismatch(&buf, &want), Some(0));
        // Bytes one place off.
        let shifted: Vec<u8> = want[1..].iter().copied().chain([0]).collect();
        assert_eq!(s.first_mismatch(&shifted, &want), Some(0));
        // Only the tail wrong.
        let mut tail = want.clone();
        tail[4095] ^= 1;
        assert_eq!(s.first_mismatch(&tail, &want), Some(4088));
    }

    #[test]
    fn spots_of_tiny_arrays() {
        assert!(Spots::of(0).windows.is_empty());
        assert_eq!(Spots::of(3).windows, vec![(0, 3), (1, 2), (2, 1)]);
        let s = Spots::of(20);
        assert!(s.windows.iter().all(|&(o, l)| o + l <= 20 && l > 0));
    }
}
