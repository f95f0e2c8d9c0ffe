//! Fuzzing of the header decoder (`frame::decode_prefix`, `frame::Header::decode`; issue 3,
//! item 3) with proptest, plus the corpus seeds in `tests/corpus/header/`.
//!
//! Three properties, each run for [`cases`] inputs: **100,000 in a release build, 10,000 in
//! a debug build**, or `RINGXFER_FUZZ_CASES` when set (e.g. `RINGXFER_FUZZ_CASES=1000000
//! cargo test --release --test fuzz_header`):
//!
//! * arbitrary byte strings of 0..600 bytes;
//! * byte strings that start with a valid magic and version (so they get past the first
//!   checks), with `header_len` matching `ndim` half of the time and a correct header CRC
//!   half of the time;
//! * mutations of valid headers and of every corpus seed: byte flips, truncations,
//!   extensions, and field rewrites (ndim and shape, payload_len, dtype, flags, order) with the
//!   header CRC recomputed so the later checks are reached.
//!
//! Each input is decoded against a limit drawn from {0, 1, 4096, 1 GiB, 8 GiB, u64::MAX}.
//! Asserted: no panic; an accepted prefix has `ndim <= 32`, `header_len == 40 + 8 * ndim` and
//! `payload_len <= limit`; an accepted header also has `payload_len == product(shape) *
//! itemsize` (no overflow), `payload_len <= limit`, `ndim <= 32`, length `40 + 8 * ndim`,
//! agrees with its prefix, and re-encodes to the same bytes (apart from the dtype spelling
//! and the CRC that covers it).
//!
//! Seeds are named `<outcome>-<description>.bin`: `ok-…` must decode, any other outcome is the
//! snake-case `FrameError` variant it must be rejected with (limit: the default 8 GiB).
//! `RINGXFER_WRITE_CORPUS=1 cargo test --test fuzz_header write_corpus` regenerates them from
//! the hand encoder of `tests/wire`.

mod wire;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use ringxfer::frame::{self, DEFAULT_MAX_PAYLOAD_BYTES, Header, MAX_NDIM, PREFIX_LEN};
use wire::{RawHeader, frame_kind};

/// Inputs per property: `RINGXFER_FUZZ_CASES`, else 100,000 (release) or 10,000 (debug).
fn cases() -> u32 {
    std::env::var("RINGXFER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) {
            10_000
        } else {
            100_000
        })
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        // Failures are reported with the shrunk input; no regression file in the source tree.
        failure_persistence: None,
        ..Config::default()
    })
}

const LIMITS: [u64; 6] = [0, 1, 4096, 1 << 30, DEFAULT_MAX_PAYLOAD_BYTES, u64::MAX];

/// Decodes `b` both ways against `limit` and asserts the invariants of an accepted header.
/// Returns whether the header was accepted.
fn check(b: &[u8], limit: u64) -> bool {
    let prefix = b
        .first_chunk::<PREFIX_LEN>()
        .map(|p| frame::decode_prefix(p, limit));
    if let Some(Ok(p)) = &prefix {
        assert!(p.ndim <= MAX_NDIM, "prefix ndim {}", p.ndim);
        assert_eq!(p.header_len, 40 + 8 * p.ndim, "prefix header_len");
        assert!(p.payload_len <= limit, "prefix payload_len over the limit");
    }
    let Ok(h) = Header::decode(b, limit) else {
        return false;
    };
    let ndim = h.shape.len();
    assert!(ndim <= MAX_NDIM, "accepted ndim {ndim}");
    assert_eq!(b.len(), 40 + 8 * ndim, "accepted header length");
    assert_eq!(
        frame::payload_bytes(&h.shape, h.dtype.itemsize()),
        Some(h.payload_len),
        "payload_len == product(shape) * itemsize, without overflow"
    );
    assert!(
        h.payload_len <= limit,
        "accepted payload_len over the limit"
    );
    assert_eq!(
        h.flags & !frame::FLAG_PAYLOAD_CRC32,
        0,
        "unknown flags accepted"
    );
    let p = prefix
        .expect("a decoded header has a prefix")
        .expect("the prefix of an accepted header is accepted");
    assert_eq!(
        (p.ndim, p.payload_len),
        (ndim, h.payload_len),
        "prefix agrees"
    );
    let again = h.encode();
    assert_eq!(again.len(), b.len());
    let crc_at = 32 + 8 * ndim;
    assert_eq!(again[..8], b[..8], "magic, version, header_len");
    assert_eq!(again[16..crc_at], b[16..crc_at], "order .. shape");
    true
}

/// Runs `strategy` through `check`, counting inputs and accepted headers; prints the counts.
fn fuzz<S: Strategy>(
    name: &str,
    strategy: S,
    input: impl Fn(S::Value) -> (Vec<u8>, u64),
) -> (u64, u64) {
    let (seen, accepted) = (AtomicU64::new(0), AtomicU64::new(0));
    runner()
        .run(&strategy, |v| {
            let (b, limit) = input(v);
            seen.fetch_add(1, Ordering::Relaxed);
            if check(&b, limit) {
                accepted.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
        .unwrap();
    let (seen, accepted) = (seen.into_inner(), accepted.into_inner());
    eprintln!("{name}: {seen} inputs decoded, {accepted} accepted");
    assert!(seen >= u64::from(cases()), "{name}: only {seen} inputs");
    (seen, accepted)
}

/// The seeds in `tests/corpus/header/`, sorted by name.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir();
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "bin").then(|| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&p).unwrap())
            })
        })
        .collect();
    v.sort();
    v
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/header")
}

/// The kinds of rejection the header decoder has; the corpus must hold a seed of each.
const HEADER_KINDS: [&str; 12] = [
    "bad_magic",
    "unsupported_version",
    "bad_header_len",
    "too_many_dims",
    "unknown_dtype",
    "bad_order",
    "unsupported_flags",
    "header_checksum",
    "shape_overflow",
    "length_mismatch",
    "too_large",
    "ok",
];

#[test]
fn corpus_seeds_decode_as_named() {
    let seeds = corpus();
    assert!(seeds.len() >= 20, "only {} seeds", seeds.len());
    for kind in HEADER_KINDS {
        assert!(
            seeds
                .iter()
                .any(|(n, _)| n.starts_with(&format!("{kind}-"))),
            "no seed of kind {kind}"
        );
    }
    for (name, bytes) in &seeds {
        let want = name.split('-').next().unwrap();
        let got = Header::decode(bytes, DEFAULT_MAX_PAYLOAD_BYTES);
        match (&got, want) {
            (Ok(_), "ok") => {}
            (Err(e), w) if frame_kind(e) == w => {}
            _ => panic!("seed {name}: got {got:?}, want {want}"),
        }
        assert_eq!(
            check(bytes, DEFAULT_MAX_PAYLOAD_BYTES),
            want == "ok",
            "{name}"
        );
    }
}

#[test]
fn arbitrary_bytes() {
    let strategy = (
        prop::collection::vec(any::<u8>(), 0..600),
        prop::sample::select(&LIMITS[..]),
    );
    fuzz("arbitrary_bytes", strategy, |v| v);
}

#[test]
fn bytes_after_a_valid_magic() {
    let strategy = (
        0u8..=40,
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..400),
        prop::sample::select(&LIMITS[..]),
    );
    fuzz(
        "bytes_after_a_valid_magic",
        strategy,
        |(ndim, consistent, crc, tail, limit)| {
            let mut b = b"RGXF\x01\x00".to_vec();
            b.extend_from_slice(&tail);
            if b.len() >= PREFIX_LEN {
                b[17] = ndim;
                if consistent {
                    b[6..8].copy_from_slice(&(40 + 8 * u16::from(ndim)).to_le_bytes());
                }
                if crc {
                    fix_crc(&mut b);
                }
            }
            (b, limit)
        },
    );
}

/// One edit of a header's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    /// XOR one byte (index taken modulo the length).
    Flip(usize, u8),
    /// Keep only the first `n % (len + 1)` bytes.
    Truncate(usize),
    /// Append bytes.
    Extend(Vec<u8>),
    /// New ndim byte and shape (ndim entries), header_len and CRC recomputed.
    Reshape(u8, Vec<u64>),
    /// New payload_len, CRC recomputed.
    PayloadLen(u64),
    /// New dtype field, CRC recomputed.
    Dtype([u8; 8]),
    /// New flags, reserved and order fields, CRC recomputed.
    Fields(u16, u32, u8),
}

/// Dimensions and lengths around the edges: 0, 1, powers of two near overflow, u64::MAX.
fn edgy_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(3),
        Just(1 << 31),
        Just(1 << 32),
        Just(1 << 61),
        Just(1 << 63),
        Just(u64::MAX / 3),
        Just(u64::MAX),
        0u64..1_000_000,
        any::<u64>(),
    ]
}

fn dtype_field() -> impl Strategy<Value = [u8; 8]> {
    prop_oneof![
        prop::sample::select(
            &[
                "<f8", ">f8", "<f4", "<i8", ">i4", "<i2", "|i1", "<u8", "<u4", ">u2", "|u1",
                "<c16", "<c8", "f8", "=f4", "|f8", "float64", "double", "d", "", "<x9", "<f16",
                "<U8", "<f2", ">f2", "f2", "float16", "<f1",
            ][..]
        )
        .prop_map(wire::dtype_field),
        any::<[u8; 8]>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, m)| Mutation::Flip(i, m)),
        any::<usize>().prop_map(Mutation::Truncate),
        prop::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Extend),
        (0u8..=40)
            .prop_flat_map(|n| (Just(n), prop::collection::vec(edgy_u64(), usize::from(n))))
            .prop_map(|(n, s)| Mutation::Reshape(n, s)),
        (0u8..=34, 0usize..=40).prop_map(|(n, k)| Mutation::Reshape(n, vec![2; k])),
        edgy_u64().prop_map(Mutation::PayloadLen),
        dtype_field().prop_map(Mutation::Dtype),
        (
            prop_oneof![Just(1u16), Just(0), any::<u16>()],
            prop_oneof![Just(0u32), any::<u32>()],
            prop_oneof![Just(b'C'), Just(b'F'), any::<u8>()]
        )
            .prop_map(|(f, r, o)| Mutation::Fields(f, r, o)),
    ]
}

/// Rewrites the header CRC (and zeroes the pad) where the ndim byte says they are, if the
/// bytes are long enough.
fn fix_crc(b: &mut Vec<u8>) {
    if b.len() < PREFIX_LEN {
        return;
    }
    let at = 32 + 8 * usize::from(b[17]);
    if b.len() < at + 8 {
        b.resize(at + 8, 0);
    }
    let crc = crc32fast::hash(&b[..at]);
    b[at..at + 4].copy_from_slice(&crc.to_le_bytes());
    b[at + 4..at + 8].fill(0);
    b.truncate(at + 8);
}

fn apply(b: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::Flip(i, mask) if !b.is_empty() => {
            let n = b.len();
            b[i % n] ^= mask;
        }
        Mutation::Flip(..) => {}
        Mutation::Truncate(n) => b.truncate(n % (b.len() + 1)),
        Mutation::Extend(more) => b.extend_from_slice(more),
        Mutation::Reshape(ndim, shape) => {
            b.resize(PREFIX_LEN.max(b.len()), 0);
            b.truncate(PREFIX_LEN);
            b[17] = *ndim;
            let hl = 40 + 8 * u16::from(*ndim);
            b[6..8].copy_from_slice(&hl.to_le_bytes());
            for d in shape {
                b.extend_from_slice(&d.to_le_bytes());
            }
            fix_crc(b);
        }
        Mutation::PayloadLen(v) if b.len() >= PREFIX_LEN => {
            b[24..32].copy_from_slice(&v.to_le_bytes());
            fix_crc(b);
        }
        Mutation::Dtype(d) if b.len() >= PREFIX_LEN => {
            b[8..16].copy_from_slice(d);
            fix_crc(b);
        }
        Mutation::Fields(flags, reserved, order) if b.len() >= PREFIX_LEN => {
            b[16] = *order;
            b[18..20].copy_from_slice(&flags.to_le_bytes());
            b[20..24].copy_from_slice(&reserved.to_le_bytes());
            fix_crc(b);
        }
        Mutation::PayloadLen(_) | Mutation::Dtype(_) | Mutation::Fields(..) => {}
    }
}

/// Valid headers to start from, besides the corpus.
fn valid_headers() -> Vec<Vec<u8>> {
    [
        RawHeader::valid("<f8", &[1000], b'C'),
        RawHeader::valid("<f4", &[20, 10, 5], b'F'),
        RawHeader::valid(">i4", &[], b'C'),
        RawHeader::valid("|u1", &[0], b'C'),
        RawHeader::valid("<i8", &[1; 32], b'F'),
        RawHeader::valid("<u2", &[7, 0, 1 << 40], b'C'),
    ]
    .iter()
    .map(RawHeader::encode)
    .collect()
}

#[test]
fn mutated_headers_and_seeds() {
    let mut starts = valid_headers();
    starts.extend(corpus().into_iter().map(|(_, b)| b));
    for s in &starts {
        let _ = check(s, DEFAULT_MAX_PAYLOAD_BYTES);
    }
    let strategy = (
        prop::sample::select(starts),
        prop::collection::vec(mutation(), 1..5),
        prop::sample::select(&LIMITS[..]),
    );
    let (seen, accepted) = fuzz(
        "mutated_headers_and_seeds",
        strategy,
        |(mut b, muts, limit)| {
            for m in &muts {
                apply(&mut b, m);
            }
            (b, limit)
        },
    );
    // The mutations must reach the accepting path too, not only rejections.
    assert!(
        accepted * 100 >= seen,
        "only {accepted} of {seen} mutated headers accepted"
    );
}

/// Some mutated headers must be accepted, or the mutation property only tests rejections.
#[test]
fn mutations_reach_acceptance() {
    let mut b = RawHeader::valid("<f8", &[4], b'C').encode();
    apply(&mut b, &Mutation::Reshape(3, vec![2, 3, 4]));
    apply(&mut b, &Mutation::PayloadLen(2 * 3 * 4 * 8));
    let h = Header::decode(&b, u64::MAX).expect("reshaped header with matching length");
    assert_eq!(h.shape, [2, 3, 4]);
    apply(&mut b, &Mutation::Dtype(wire::dtype_field(">i4")));
    assert!(matches!(
        Header::decode(&b, u64::MAX),
        Err(frame::FrameError::LengthMismatch {
            payload_len: 192,
            computed: 96
        })
    ));
}

/// Writes the corpus seeds (only with `RINGXFER_WRITE_CORPUS=1`).
#[test]
fn write_corpus() {
    if std::env::var("RINGXFER_WRITE_CORPUS").as_deref() != Ok("1") {
        return;
    }
    let v = RawHeader::valid;
    let good = v("<f8", &[4, 4], b'C');
    let mut seeds: Vec<(&str, Vec<u8>)> = vec![
        ("ok-f8-1d-1000", v("<f8", &[1000], b'C').encode()),
        ("ok-f4-3d-F-20x10x5", v("<f4", &[20, 10, 5], b'F').encode()),
        ("ok-i4-big-endian", v(">i4", &[7, 3], b'C').encode()),
        ("ok-u1-empty", v("|u1", &[0], b'C').encode()),
        ("ok-f8-0d-scalar", v("<f8", &[], b'C').encode()),
        ("ok-i8-32d", v("<i8", &[1; 32], b'F').encode()),
        (
            "ok-u2-zero-dim-beside-huge",
            v("<u2", &[3, 0, 1 << 40], b'C').encode(),
        ),
        ("ok-f8-2.5GB-C02", v("<f8", &[312_500_000], b'C').encode()),
        (
            "ok-no-crc-flag",
            RawHeader {
                flags: 0,
                ..good.clone()
            }
            .encode(),
        ),
        (
            "bad_magic-XGXF",
            RawHeader {
                magic: *b"XGXF",
                ..good.clone()
            }
            .encode(),
        ),
        (
            "unsupported_version-2",
            RawHeader {
                version: 2,
                ..good.clone()
            }
            .encode(),
        ),
        (
            "bad_header_len-off-by-8",
            RawHeader {
                header_len: Some(64),
                ..good.clone()
            }
            .encode(),
        ),
        ("bad_header_len-cut-at-40", good.encode()[..40].to_vec()),
        ("bad_header_len-20-bytes", good.encode()[..20].to_vec()),
        ("too_many_dims-33", v("<f8", &[1; 33], b'C').encode()),
        ("too_many_dims-255", v("|u1", &[1; 255], b'C').encode()),
        (
            "unknown_dtype-x9",
            RawHeader {
                dtype: wire::dtype_field("<x9"),
                payload_len: Some(128),
                ..good.clone()
            }
            .encode(),
        ),
        (
            "unknown_dtype-junk-after-nul",
            RawHeader {
                dtype: *b"<f8\0abc\0",
                ..good.clone()
            }
            .encode(),
        ),
        (
            "bad_order-Z",
            RawHeader {
                order: b'Z',
                ..good.clone()
            }
            .encode(),
        ),
        (
            "unsupported_flags-bit1",
            RawHeader {
                flags: 3,
                ..good.clone()
            }
            .encode(),
        ),
        (
            "unsupported_flags-reserved",
            RawHeader {
                reserved: 1,
                ..good.clone()
            }
            .encode(),
        ),
        (
            "unsupported_flags-pad",
            RawHeader {
                pad: 1,
                ..good.clone()
            }
            .encode(),
        ),
        (
            "header_checksum-flipped",
            RawHeader {
                crc: Some(good.correct_crc() ^ 1),
                ..good.clone()
            }
            .encode(),
        ),
        (
            "shape_overflow-4Gi-x-4Gi",
            RawHeader {
                payload_len: Some(16),
                ..v("<f8", &[1 << 32, 1 << 32], b'C')
            }
            .encode(),
        ),
        (
            "length_mismatch-81-for-80",
            RawHeader {
                payload_len: Some(81),
                ..v("<f8", &[10], b'C')
            }
            .encode(),
        ),
        (
            "too_large-300GB",
            v("<f8", &[37_500_000_000], b'C').encode(),
        ),
    ];
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in seeds.drain(..) {
        std::fs::write(dir.join(format!("{name}.bin")), bytes).unwrap();
    }
}
