//! Receive memory for fresh arrays: page-aligned and prefaulted for large ones.
//!
//! A receiver that allocates a new array per message (what `numpy.zeros` per transfer does)
//! pays for first-touch page faults while the kernel copies into it: ~500 ms per 400 MB with
//! 4 KiB pages on this project's machine. [`AlignedBuf`] maps anonymous memory (page-aligned,
//! so any element type is aligned), asks for transparent huge pages (`MADV_HUGEPAGE`, Linux
//! 2.6.38) and pre-faults it in one call (`MADV_POPULATE_WRITE`, Linux 5.14; skipped silently
//! where unsupported) before the receive starts. Which of these pays is measured by
//! `ringxfer bench --fresh`; see the README.

use std::io;

use memmap2::{Advice, MmapMut, MmapOptions};

/// How fresh memory is prepared before a receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Prefault {
    /// Plain anonymous mapping: pages fault in during the receive (like `vec![0; n]`).
    None,
    /// `MADV_POPULATE_WRITE` the whole mapping up front (4 KiB pages).
    Populate,
    /// `MADV_HUGEPAGE`, then `MADV_POPULATE_WRITE` (2 MiB pages where THP allows).
    #[default]
    HugePopulate,
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
            });
        }
        let map = MmapOptions::new().len(len).map_anon()?;
        if prefault == Prefault::HugePopulate {
            let _ = map.advise(Advice::HugePage);
        }
        if prefault != Prefault::None {
            let _ = map.advise(Advice::PopulateWrite);
        }
        Ok(AlignedBuf {
            map: Some(map),
            heap: Vec::new(),
            len,
        })
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
            Some(m) => m,
            None => &bytemuck::cast_slice(&self.heap)[..self.len],
        }
    }

    /// The bytes, mutably.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        match &mut self.map {
            Some(m) => m,
            None => &mut bytemuck::cast_slice_mut(&mut self.heap)[..self.len],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_and_aligned() {
        for p in [Prefault::None, Prefault::Populate, Prefault::HugePopulate] {
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
