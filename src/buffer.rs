//! Page-aligned receive memory for fresh arrays.
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

/// Page-aligned, zero-initialised bytes (an anonymous mapping; no allocation for length 0).
#[derive(Debug)]
pub struct AlignedBuf {
    map: Option<MmapMut>,
    len: usize,
}

impl AlignedBuf {
    /// `len` zero bytes prepared as `prefault` says.
    ///
    /// # Errors
    /// `ENOMEM` when the mapping cannot be made. Advice the kernel does not support is
    /// ignored (the memory then simply faults in on first touch).
    pub fn new(len: usize, prefault: Prefault) -> io::Result<AlignedBuf> {
        if len == 0 {
            return Ok(AlignedBuf { map: None, len });
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
        self.map.as_deref().unwrap_or(&[])
    }

    /// The bytes, mutably.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        self.map.as_deref_mut().unwrap_or(&mut [])
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
            assert_eq!(b.as_bytes().as_ptr() as usize % 4096, 0);
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
