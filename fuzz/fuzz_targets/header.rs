//! cargo-fuzz target for the header decoder. From this directory:
//!
//! ```text
//! cargo +nightly fuzz run header corpus/header ../tests/corpus/header
//! ```
//!
//! (new inputs go to `corpus/header`, ignored by git; the committed seeds in
//! `tests/corpus/header` are read as a starting corpus). Each input is decoded against every
//! limit in [`LIMITS`], with the invariants of `tests/fuzz_header.rs`: no panic, and an accepted
//! header has ndim <= 32, length 40 + 8 * ndim, payload_len == product(shape) * itemsize
//! without overflow, and payload_len <= the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringxfer::frame::{self, DEFAULT_MAX_PAYLOAD_BYTES, Header, MAX_NDIM, PREFIX_LEN};

const LIMITS: [u64; 4] = [0, 4096, DEFAULT_MAX_PAYLOAD_BYTES, u64::MAX];

fuzz_target!(|b: &[u8]| {
    for limit in LIMITS {
        if let Some(p) = b.first_chunk::<PREFIX_LEN>()
            && let Ok(p) = frame::decode_prefix(p, limit)
        {
            assert!(p.ndim <= MAX_NDIM && p.header_len == 40 + 8 * p.ndim);
            assert!(p.payload_len <= limit);
        }
        if let Ok(h) = Header::decode(b, limit) {
            assert!(h.shape.len() <= MAX_NDIM);
            assert_eq!(b.len(), 40 + 8 * h.shape.len());
            assert_eq!(
                frame::payload_bytes(&h.shape, h.dtype.itemsize()),
                Some(h.payload_len)
            );
            assert!(h.payload_len <= limit);
        }
    }
});
