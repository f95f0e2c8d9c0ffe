//! Work done while the ring waits: a transfer's progress hook ([`Progress`]), and the one hook
//! ringxfer uses, the payload CRC-32 of a framed message ([`PayloadCrc`]).
//!
//! A framed message's CRC-32 used to be a separate pass over the whole payload — before the
//! send on the sender, after the receive on the receiver — which on a memory-bandwidth-bound
//! machine reads every byte from DRAM a second time (issue 11: framed 400 MB at 1.58 GB/s
//! against 2.65 for the raw calls). With a hook the backend hands the bytes over while they
//! are still in cache, and the uring backend does it while its requests are in flight, when
//! the thread would otherwise sleep (see [`crate::driver`], "Progress hooks").

/// A transfer's progress hook (see [`crate::driver`], "Progress hooks"): the backend calls
/// [`Progress::bytes`] with the transfer's stream bytes in order — each call continues where
/// the previous one ended, and once the transfer succeeds the calls have covered exactly its
/// bytes (a receive with `at_least`: exactly the bytes received).
pub(crate) trait Progress: Send + std::fmt::Debug {
    /// `bytes` are the transfer's stream bytes `[offset, offset + bytes.len())`: for a
    /// receive, bytes the backend has confirmed received (the kernel no longer writes there);
    /// for a send, bytes about to be handed to the kernel, or already handed to it.
    fn bytes(&mut self, offset: u64, bytes: &[u8]);
}

/// The CRC-32 (zlib polynomial, `crc32fast`) of the payload part of a transfer: the stream
/// bytes `[skip, skip + len)` (a send's header comes before its payload; a receive's trailer
/// after it). Bytes outside that window are ignored.
#[derive(Debug, Clone, Default)]
pub(crate) struct PayloadCrc {
    hasher: crc32fast::Hasher,
    skip: u64,
    len: u64,
}

impl PayloadCrc {
    /// A CRC of the `len` payload bytes that start `skip` bytes into the transfer, continuing
    /// `hasher` (bytes hashed before the transfer, e.g. from a read-ahead buffer).
    pub(crate) fn new(hasher: crc32fast::Hasher, skip: u64, len: u64) -> PayloadCrc {
        PayloadCrc { hasher, skip, len }
    }

    /// The CRC-32 of every byte hashed.
    pub(crate) fn finalize(self) -> u32 {
        self.hasher.finalize()
    }

    /// The hasher, to continue with more bytes.
    pub(crate) fn into_hasher(self) -> crc32fast::Hasher {
        self.hasher
    }
}

impl Progress for PayloadCrc {
    fn bytes(&mut self, offset: u64, bytes: &[u8]) {
        let end = offset + bytes.len() as u64;
        let (from, to) = (offset.max(self.skip), end.min(self.skip + self.len));
        if from < to {
            self.hasher
                .update(&bytes[(from - offset) as usize..(to - offset) as usize]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_crc_hashes_only_its_window_in_any_cut() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        // A 10-byte header, 982 payload bytes, an 8-byte trailer.
        let want = crc32fast::hash(&data[10..992]);
        for cut in [1usize, 3, 10, 64, 500, 1000] {
            let mut c = PayloadCrc::new(crc32fast::Hasher::new(), 10, 982);
            for (k, chunk) in data.chunks(cut).enumerate() {
                c.bytes((k * cut) as u64, chunk);
            }
            assert_eq!(c.finalize(), want, "cut {cut}");
        }
        // Continuing a hasher that already took the first bytes of the payload.
        let mut h = crc32fast::Hasher::new();
        h.update(&data[..100]);
        let mut c = PayloadCrc::new(h, 0, 900);
        c.bytes(0, &data[100..]);
        assert_eq!(c.finalize(), crc32fast::hash(&data[..1000]));
    }
}
