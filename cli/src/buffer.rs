//! The arrays the commands send from and receive into.

use crate::failure::Failure;

/// A byte buffer on an 8-byte boundary (so typed fills take the fast path), allocated
/// without aborting on failure.
#[derive(Debug)]
pub struct Buffer {
    words: Vec<u64>,
    len: usize,
}

impl Buffer {
    /// `len` zero bytes; every page is written, so none faults later.
    pub fn zeroed(len: usize) -> Result<Buffer, Failure> {
        let n = len.div_ceil(8);
        let mut words = Vec::new();
        words
            .try_reserve_exact(n)
            .map_err(|_| Failure::runtime(format!("cannot allocate {len} bytes for the array")))?;
        words.resize(n, 0);
        Ok(Buffer { words, len })
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }

    /// The bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.words)[..self.len]
    }
}
