//! Receive memory for fresh arrays: page-aligned, in huge pages where the system allows.
//!
//! A receiver that allocates a new array per message (what `numpy.zeros` per transfer does)
//! pays for first-touch page faults while the kernel copies into it: ~500 ms per 400 MB with
//! 4 KiB pages on this project's machine. [`AlignedBuf`] maps anonymous memory (page-aligned,
//! so any element type is aligned) and prepares it as [`Prefault`] says: by default it asks
//! for transparent huge pages (`MADV_HUGEPAGE`, Linux 2.6.38) and lets the receive fault them
//! in, one fault per 2 MiB instead of 512; the other variants pre-fault it in one call
//! (`MADV_POPULATE_WRITE`, Linux 5.14; skipped silently where unsupported) before the receive
//! starts, or, with [`Prefault::Ahead`], let the uring backend populate it slice by slice
//! while the receive's requests are in flight. Which of these pays is measured by
//! `ringxfer bench --fresh --recycle 0 --prefault …`; see the README.
//!
//! What pays most is not faulting at all: the kernel must zero every fresh page (~40 ms per
//! 400 MB at memory bandwidth, more with 4 KiB faults), which no advice avoids. So an
//! [`Engine`](crate::Engine) keeps a [`Pool`] of the mappings of arrays the caller has dropped
//! (up to [`crate::Options::recycle_bytes`]), and a fresh receive takes one of a fitting size:
//! its pages are already present, so the receive runs at pre-touched speed.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use memmap2::{Advice, MmapMut, MmapOptions};

/// How fresh memory is prepared before a receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum Prefault {
    /// Plain anonymous mapping: pages fault in during the receive, 4 KiB at a time unless the
    /// system's transparent huge pages are `always` (like `vec![0; n]`).
    None,
    /// `MADV_HUGEPAGE` (Linux 2.6.38) on the mapping, nothing faulted up front: pages fault in
    /// during the receive, 2 MiB at a time where transparent huge pages are `always` or
    /// `madvise` (`/sys/kernel/mm/transparent_hugepage/enabled`; with `never` this is
    /// [`Prefault::None`]). The default: one fault per 2 MiB instead of 512 halves the cost of
    /// a fresh 400 MB receive on this project's machine (README, "Fresh receive arrays", the
    /// command beside it). With THP `defrag` set to `madvise` or `always`, a fault may
    /// compact memory to find a huge page when free memory is fragmented.
    /// Every receive ([`Engine::recv_into`](crate::Engine::recv_into), the striped and
    /// framed receives into the caller's memory, [`Engine::scope`](crate::Engine::scope))
    /// gives its buffers of at least 4 MiB (numpy's own threshold for its allocations) the
    /// same advice on their 2 MiB-aligned part, so a fresh `vec![0; n]` or `numpy.zeros` array
    /// gains too; `None` leaves the caller's memory alone.
    #[default]
    Huge,
    /// `MADV_POPULATE_WRITE` the whole mapping up front (4 KiB pages).
    Populate,
    /// `MADV_HUGEPAGE`, then `MADV_POPULATE_WRITE` (2 MiB pages where THP allows).
    HugePopulate,
    /// Plain anonymous mapping, faulted in **while the receive runs**: the uring backend,
    /// while its requests are in flight, populates (`MADV_POPULATE_WRITE`, Linux 5.14) the
    /// next 2 MiB slices ahead of the receive point, at most 16 MiB ahead, entering the
    /// kernel between slices (see `src/uring/flight.rs`). Only for memory the engine did not
    /// recycle; the blocking backend faults in during `recv` as with `None`.
    Ahead,
}

/// Arrays below this size live on the heap (8-byte aligned `Vec<u64>`): an `mmap`/`munmap`
/// pair per small message would cost more than the message.
pub const MAP_THRESHOLD: usize = 1 << 20;

/// Zero-initialised bytes, 8-byte aligned (enough for every element type ringxfer knows):
/// heap memory below [`MAP_THRESHOLD`], a page-aligned anonymous mapping from there up.
#[derive(Debug)]
pub struct AlignedBuf {
    map: Option<MmapMut>,
    heap: Vec<u64>,
    len: usize,
    pool: Option<Arc<Pool>>,
    /// A new mapping, never touched (not recycled, not heap memory).
    fresh: bool,
}

/// Mappings of dropped arrays, kept for reuse by later receives (touched memory: no page
/// faults, no zeroing). Holds at most `cap` bytes; a mapping is reused for a request of `n`
/// bytes when its length is in `n ..= n + n/4` (so a 5 GiB mapping never backs a 1 MB array).
#[derive(Debug)]
pub struct Pool {
    cap: AtomicUsize,
    maps: Mutex<Vec<MmapMut>>,
}

impl Pool {
    /// A pool that keeps at most `cap` bytes (0: keeps nothing).
    pub fn new(cap: usize) -> Arc<Pool> {
        Arc::new(Pool {
            cap: AtomicUsize::new(cap),
            maps: Mutex::new(Vec::new()),
        })
    }

    /// The process-wide pool every [`Engine`](crate::Engine) with a non-zero
    /// [`crate::Options::recycle_bytes`] shares, so arrays dropped on one connection (or
    /// thread) back receives on the next. Its cap is the largest `recycle_bytes` any engine
    /// asked for.
    pub fn shared(cap: usize) -> Arc<Pool> {
        static SHARED: OnceLock<Arc<Pool>> = OnceLock::new();
        let p = SHARED.get_or_init(|| Pool::new(0));
        p.cap.fetch_max(cap, Ordering::Relaxed);
        Arc::clone(p)
    }

    /// Bytes held.
    pub fn held_bytes(&self) -> usize {
        self.lock().iter().map(|m| m.len()).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<MmapMut>> {
        // A panic while holding the lock cannot leave the Vec inconsistent.
        self.maps.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self, n: usize) -> Option<MmapMut> {
        let mut maps = self.lock();
        let best = maps
            .iter()
            .enumerate()
            .filter(|(_, m)| m.len() >= n && m.len() - n <= n / 4)
            .min_by_key(|(_, m)| m.len())
            .map(|(i, _)| i)?;
        Some(maps.swap_remove(best))
    }

    fn give(&self, m: MmapMut) {
        let mut maps = self.lock();
        let held: usize = maps.iter().map(|m| m.len()).sum();
        if held + m.len() <= self.cap.load(Ordering::Relaxed) {
            maps.push(m);
        }
        // else: dropped here, unmapped.
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if let (Some(m), Some(pool)) = (self.map.take(), self.pool.take()) {
            pool.give(m);
        }
    }
}

impl AlignedBuf {
    /// `len` zero bytes prepared as `prefault` says.
    ///
    /// # Errors
    /// `ENOMEM` when the mapping cannot be made. Advice the kernel does not support is
    /// ignored (the memory then simply faults in on first touch).
    pub fn new(len: usize, prefault: Prefault) -> io::Result<AlignedBuf> {
        if len < MAP_THRESHOLD {
            return Ok(AlignedBuf {
                map: None,
                heap: vec![0u64; len.div_ceil(8)],
                len,
                pool: None,
                fresh: false,
            });
        }
        let map = MmapOptions::new().len(len).map_anon()?;
        if matches!(prefault, Prefault::Huge | Prefault::HugePopulate) {
            let _ = map.advise(Advice::HugePage);
        }
        if matches!(prefault, Prefault::Populate | Prefault::HugePopulate) {
            let _ = map.advise(Advice::PopulateWrite);
        }
        Ok(AlignedBuf {
            map: Some(map),
            heap: Vec::new(),
            len,
            pool: None,
            fresh: true,
        })
    }

    /// `len` bytes for a receive that overwrites all of them: a recycled mapping from `pool`
    /// when one fits (its old contents are still there until overwritten), else
    /// [`AlignedBuf::new`]. Either way the memory returns to `pool` when dropped.
    pub fn for_receive(len: usize, prefault: Prefault, pool: &Arc<Pool>) -> io::Result<AlignedBuf> {
        let mut b = match pool.take(len) {
            Some(map) => AlignedBuf {
                map: Some(map),
                heap: Vec::new(),
                len,
                pool: None,
                fresh: false,
            },
            None => AlignedBuf::new(len, prefault)?,
        };
        if b.map.is_some() {
            b.pool = Some(Arc::clone(pool));
        }
        Ok(b)
    }

    /// True for a new mapping (not recycled from a pool, not heap memory) that
    /// [`Prefault::Ahead`] should fault in during the receive.
    pub fn is_fresh_mapping(&self) -> bool {
        self.fresh
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length buffer.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.map {
            Some(m) => &m[..self.len],
            None => &bytemuck::cast_slice(&self.heap)[..self.len],
        }
    }

    /// The bytes, mutably.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        match &mut self.map {
            Some(m) => &mut m[..self.len],
            None => &mut bytemuck::cast_slice_mut(&mut self.heap)[..self.len],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_recycles_fitting_mappings_only() {
        let pool = Pool::new(8 << 20);
        let a = AlignedBuf::for_receive(4 << 20, Prefault::None, &pool).unwrap();
        assert!(a.is_fresh_mapping(), "a new mapping is fresh");
        let addr = a.as_bytes().as_ptr();
        drop(a);
        assert_eq!(pool.held_bytes(), 4 << 20);
        let too_small = AlignedBuf::for_receive(2 << 20, Prefault::None, &pool).unwrap();
        assert_ne!(
            too_small.as_bytes().as_ptr(),
            addr,
            "4 MiB must not back 2 MiB"
        );
        let b = AlignedBuf::for_receive((4 << 20) - 100, Prefault::None, &pool).unwrap();
        assert_eq!(b.as_bytes().as_ptr(), addr, "reused");
        assert!(!b.is_fresh_mapping(), "a recycled mapping is not fresh");
        let heap = AlignedBuf::for_receive(MAP_THRESHOLD - 1, Prefault::Ahead, &pool).unwrap();
        assert!(!heap.is_fresh_mapping(), "heap memory is not a mapping");
        assert_eq!(b.len(), (4 << 20) - 100);
        drop((b, too_small));
        assert_eq!(pool.held_bytes(), 6 << 20);
        let big = AlignedBuf::for_receive(5 << 20, Prefault::None, &pool).unwrap();
        drop(big); // 6 + 5 > 8 MiB: unmapped, not kept
        assert_eq!(pool.held_bytes(), 6 << 20);
    }

    #[test]
    fn zeroed_and_aligned() {
        for p in [
            Prefault::None,
            Prefault::Huge,
            Prefault::Populate,
            Prefault::HugePopulate,
            Prefault::Ahead,
        ] {
            let mut b = AlignedBuf::new(3 << 20, p).unwrap();
            assert_eq!(b.len(), 3 << 20);
            assert_eq!(
                b.as_bytes().as_ptr() as usize % 4096,
                0,
                "mapped: page-aligned"
            );
            assert!(b.as_bytes().iter().all(|&x| x == 0));
            b.as_bytes_mut()[12345] = 7;
            assert_eq!(b.as_bytes()[12345], 7);
        }
        assert!(
            AlignedBuf::new(0, Prefault::default())
                .unwrap()
                .as_bytes()
                .is_empty()
        );
    }
}
