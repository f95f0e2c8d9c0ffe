//! The `.npy` codec (`ringxfer::npy`) and `.npy` sends (`Engine::send_view` with
//! `WireFormat::Npy`), against numpy itself where it matters:
//!
//! * `encode_header` writes byte for byte what `numpy.save` writes (a python3 child);
//! * files numpy writes (every supported dtype, C and F order, 0-d, empty, versions 1.0–3.0)
//!   parse to the right header, and their data is the arange pattern;
//! * hostile headers (lengths, dict literals, dtypes, shapes) get the exact `NpyError`;
//! * property tests: encode → parse round trips, and arbitrary bytes or token soups never
//!   panic and keep error texts small;
//! * a `.npy` stream sent over loopback TCP on both backends is read by
//!   `numpy.load(sock.makefile('rb'))`.
//!
//! Skips (printed) when python3 or numpy is missing, unless `RINGXFER_TEST_REQUIRE_NUMPY=1`
//! (see `tests/util/py.rs`); uring variants skip when io_uring is unavailable, unless
//! `RINGXFER_TEST_REQUIRE_URING=1`.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use proptest::prelude::*;
use ringxfer::dtype::{DType, fill_arange};
use ringxfer::frame::{self, FrameError};
use ringxfer::npy::{self, NpyError, Version};
use ringxfer::{ArrayView, Error, Order, WireFormat};

mod util;
use util::npy::{ALL_DTYPES, CHILD_LIMIT, cases_json, dt, order_name, wrap, wrap_aligned};
use util::py::{Python, numpy_available};

/// A prefix of `version` declaring `len` dict bytes.
fn prefix(version: (u8, u8), len: u32) -> Vec<u8> {
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version.0, version.1]);
    if version.0 == 1 {
        out.extend_from_slice(&(len as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&len.to_le_bytes());
    }
    out
}

fn parse(dict: &str) -> Result<npy::NpyHeader, NpyError> {
    npy::parse_header(&wrap(dict), u64::MAX)
}

// ---------------------------------------------------------------------------------------------
// Against numpy
// ---------------------------------------------------------------------------------------------

/// Shapes for the numpy comparisons: 0-d, empty (with a 16-digit dimension beside a zero),
/// 1-d, 2-d and 3-d, a `(1, 5)` that is both C- and F-contiguous, and 32 dimensions.
fn numpy_shapes() -> Vec<Vec<u64>> {
    vec![
        vec![],
        vec![0],
        vec![7],
        vec![2, 3],
        vec![3, 0, 2],
        vec![4, 1, 3],
        vec![1, 5],
        vec![0, 1_000_000_000_000_000],
        vec![1_000_000_000_000_000, 0],
        vec![1; 32],
    ]
}

const SAVE_HEADERS: &str = r#"
import io, json, sys
import numpy as np
for dtype, shape, order in json.loads(sys.argv[1]):
    a = np.zeros(tuple(shape), dtype=np.dtype(dtype), order=order)
    buf = io.BytesIO()
    np.save(buf, a)
    v = buf.getvalue()
    print(v[: len(v) - a.nbytes].hex())
"#;

/// `encode_header` is byte for byte what `numpy.save` writes, for every dtype, the shapes of
/// [`numpy_shapes`] and both orders (numpy decides `fortran_order` by contiguity:
/// `npy::writes_fortran_order`).
#[test]
fn encode_matches_numpy_save_byte_for_byte() {
    if !numpy_available() {
        return;
    }
    let mut cases = Vec::new();
    for d in ALL_DTYPES {
        for shape in numpy_shapes() {
            for order in [Order::C, Order::F] {
                cases.push((d, shape.clone(), order));
            }
        }
    }
    let json = cases_json(&cases);
    let out = Python::start(SAVE_HEADERS, &[&json]).success(CHILD_LIMIT);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), cases.len(), "one header per case");
    for ((d, shape, order), hex) in cases.iter().zip(lines) {
        let ours = npy::encode_header(dt(d), shape, *order);
        let theirs: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(
            ours.escape_ascii().to_string(),
            theirs.escape_ascii().to_string(),
            "{d} {shape:?} {order:?}"
        );
    }
    // The cases cover both values of fortran_order.
    assert!(npy::writes_fortran_order(&[2, 3], Order::F));
    assert!(!npy::writes_fortran_order(&[1, 5], Order::F));
    assert!(!npy::writes_fortran_order(&[3, 0, 2], Order::F));
    assert!(!npy::writes_fortran_order(&[2, 3], Order::C));
}

const WRITE_FILES: &str = r#"
import json, os, sys
import numpy as np
import numpy.lib.format as fmt
out = sys.argv[1]
for name, dtype, shape, order, version in json.loads(sys.argv[2]):
    n = 1
    for d in shape:
        n *= d
    a = np.arange(n).astype(np.dtype(dtype)).reshape(tuple(shape), order=order)
    path = os.path.join(out, name)
    if version is None:
        np.save(path, a)
    else:
        with open(path, "wb") as f:
            fmt.write_array(f, a, version=tuple(version))
"#;

/// Files numpy writes (`numpy.save`, and `write_array` with versions 2.0 and 3.0) for every
/// dtype, C and F order, 0-d and empty parse to the dtype, shape, order, version and length
/// numpy gave them, and their data is the arange pattern in memory order.
#[test]
fn numpy_files_parse_to_the_right_header() {
    if !numpy_available() {
        return;
    }
    let dir = temp_dir("files");
    let shapes: [(&[u64], Order, Order); 6] = [
        // (shape, order asked of numpy, order numpy writes)
        (&[], Order::C, Order::C),
        (&[0], Order::C, Order::C),
        (&[5], Order::F, Order::C),
        (&[3, 4], Order::C, Order::C),
        (&[3, 4], Order::F, Order::F),
        (&[2, 0, 3], Order::F, Order::C),
    ];
    let mut cases = Vec::new();
    for (k, d) in ALL_DTYPES.iter().enumerate() {
        for (j, (shape, asked, written)) in shapes.iter().enumerate() {
            // Versions 2.0 and 3.0 for some dtypes, 1.0 (numpy.save's choice) for all.
            let versions: &[Option<(u8, u8)>] = if k % 5 == 0 && j == 4 {
                &[None, Some((2, 0)), Some((3, 0))]
            } else {
                &[None]
            };
            for v in versions {
                let name = format!("a{k}_{j}_{}.npy", v.map_or(1, |v| v.0));
                cases.push((name, *d, shape.to_vec(), *asked, *written, *v));
            }
        }
    }
    let json = serde_json::to_string(
        &cases
            .iter()
            .map(|(name, d, s, asked, _, v)| (name, d, s, order_name(*asked), v))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    Python::start(WRITE_FILES, &[dir.to_str().unwrap(), &json]).success(CHILD_LIMIT);
    for (name, d, shape, _, written, v) in &cases {
        let file = std::fs::read(dir.join(name)).unwrap();
        let what = format!("{name}: {d} {shape:?} {written:?} {v:?}");
        let header_len = npy::header_len_from_prefix(&file[..12]).unwrap();
        let h = npy::parse_header(&file[..header_len], u64::MAX)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let version = match v {
            None | Some((1, _)) => Version::V1_0,
            Some((2, _)) => Version::V2_0,
            Some(_) => Version::V3_0,
        };
        let n: u64 = shape.iter().product();
        assert_eq!(
            (h.dtype, &h.shape, h.order, h.version, h.header_len % 64),
            (dt(d), shape, *written, version, 0),
            "{what}"
        );
        assert_eq!(h.payload_len, n * dt(d).itemsize() as u64, "{what}");
        assert_eq!(
            file.len() as u64,
            h.header_len as u64 + h.payload_len,
            "{what}"
        );
        let mut want = vec![0u8; h.payload_len as usize];
        fill_arange(h.dtype, &mut want);
        assert!(file[h.header_len..] == want[..], "{what}: data");
        // numpy.save's header (version 1.0) is what encode_header writes for what it says.
        if h.version == Version::V1_0 {
            let again = npy::encode_header(h.dtype, &h.shape, h.order);
            assert!(again == file[..h.header_len], "{what}: re-encoded header");
        }
        // The file helper reads the same header and finds the length right.
        let f = std::fs::File::open(dir.join(name)).unwrap();
        assert_eq!(npy::read_file_header(&f, u64::MAX).unwrap(), h, "{what}");
        // The frame header of the same array carries no checksum flag.
        let fh = h.frame_header();
        assert_eq!(
            (fh.dtype, fh.flags, fh.payload_len),
            (h.dtype, 0, h.payload_len)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `read_file_header` of a file cut short, with a byte too many, shorter than its header,
/// empty, not `.npy`, or over the limit: the exact `NpyError` inside an `InvalidData` error.
#[test]
fn file_header_checks_the_file_length() {
    let dir = temp_dir("file-length");
    let head = npy::encode_header(dt("<f4"), &[3, 5], Order::C);
    let mut whole = head.clone();
    whole.extend(std::iter::repeat_n(7u8, 60));
    let read = |bytes: &[u8], limit: u64| {
        let path = dir.join("a.npy");
        std::fs::write(&path, bytes).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        npy::read_file_header(&f, limit).map_err(|e| {
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
            e.get_ref()
                .and_then(|e| e.downcast_ref::<NpyError>())
                .cloned()
                .expect("an NpyError inside")
        })
    };
    let h = read(&whole, u64::MAX).unwrap();
    assert_eq!(
        (h.header_len, h.payload_len, &h.shape[..]),
        (128, 60, &[3, 5][..])
    );
    let length = |file_len| NpyError::FileLength {
        file_len,
        header_len: 128,
        payload_len: 60,
    };
    assert_eq!(read(&whole[..187], u64::MAX), Err(length(187)));
    let mut longer = whole.clone();
    longer.push(0);
    assert_eq!(read(&longer, u64::MAX), Err(length(189)));
    assert_eq!(read(&head, u64::MAX), Err(length(128)));
    assert_eq!(
        read(&head[..100], u64::MAX),
        Err(NpyError::Truncated {
            needed: 128,
            got: 100
        })
    );
    assert_eq!(
        read(&head[..11], u64::MAX),
        Err(NpyError::Truncated {
            needed: 128,
            got: 11
        })
    );
    assert_eq!(
        read(&head[..9], u64::MAX),
        Err(NpyError::Truncated { needed: 10, got: 9 })
    );
    assert_eq!(
        read(&[], u64::MAX),
        Err(NpyError::Truncated { needed: 8, got: 0 })
    );
    assert_eq!(
        read(b"RGXF....", u64::MAX),
        Err(NpyError::BadMagic(b"R".to_vec()))
    );
    assert_eq!(
        read(&whole, 59),
        Err(NpyError::TooLarge {
            payload_len: 60,
            limit: 59
        })
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringxfer-npy-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------------------------------------
// Hostile headers
// ---------------------------------------------------------------------------------------------

#[test]
fn hostile_header_lengths() {
    // HEADER_LEN 0: the data would start at byte 10.
    assert_eq!(
        npy::header_len_from_prefix(&prefix((1, 0), 0)),
        Err(NpyError::Misaligned { header_len: 10 })
    );
    // One short of and exactly at the 64-byte boundary; 16-byte alignment (old numpy) too.
    assert_eq!(
        npy::header_len_from_prefix(&prefix((1, 0), 53)),
        Err(NpyError::Misaligned { header_len: 63 })
    );
    assert_eq!(npy::header_len_from_prefix(&prefix((1, 0), 54)), Ok(64));
    assert_eq!(npy::header_len_from_prefix(&prefix((1, 0), 38)), Ok(48));
    assert_eq!(npy::header_len_from_prefix(&prefix((2, 0), 36)), Ok(48));
    // The largest 1.0 length overshoots the 64 KiB cap by 9 bytes; a huge 2.0 length is
    // refused before anything is read.
    assert_eq!(
        npy::header_len_from_prefix(&prefix((1, 0), 65535)),
        Err(NpyError::HeaderTooLong {
            header_len: 65545,
            limit: npy::MAX_HEADER_LEN
        })
    );
    assert_eq!(
        npy::header_len_from_prefix(&prefix((2, 0), u32::MAX)),
        Err(NpyError::HeaderTooLong {
            header_len: 12 + u64::from(u32::MAX),
            limit: 65536
        })
    );
    assert_eq!(
        npy::header_len_from_prefix(&prefix((3, 0), 65536 - 12)),
        Ok(65536)
    );
    assert_eq!(
        npy::header_len_from_prefix(&prefix((3, 0), 65536 - 12 + 16)),
        Err(NpyError::HeaderTooLong {
            header_len: 65552,
            limit: 65536
        })
    );
    // Too few bytes for the prefix, or for the header the prefix announces.
    assert_eq!(
        npy::header_len_from_prefix(&prefix((1, 0), 54)[..9]),
        Err(NpyError::Truncated { needed: 10, got: 9 })
    );
    assert_eq!(
        npy::header_len_from_prefix(&prefix((2, 0), 52)[..10]),
        Err(NpyError::Truncated {
            needed: 12,
            got: 10
        })
    );
    assert_eq!(
        npy::version_from_start(b"\x93NUMPY\x01"),
        Err(NpyError::Truncated { needed: 8, got: 7 })
    );
    let whole = wrap("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }");
    assert_eq!(
        npy::parse_header(&whole[..127], u64::MAX),
        Err(NpyError::Truncated {
            needed: 128,
            got: 127
        })
    );
    let mut longer = whole.clone();
    longer.push(0);
    assert_eq!(
        npy::parse_header(&longer, u64::MAX),
        Err(NpyError::Truncated {
            needed: 128,
            got: 129
        })
    );
    // Versions and magic.
    for (major, minor) in [(0, 0), (1, 1), (4, 0), (255, 255)] {
        assert_eq!(
            npy::header_len_from_prefix(&prefix((major, minor), 54)),
            Err(NpyError::UnsupportedVersion { major, minor })
        );
    }
    assert_eq!(
        npy::header_len_from_prefix(b"\x93NUMPZ\x01\x00\x36\x00"),
        Err(NpyError::BadMagic(b"\x93NUMPZ".to_vec()))
    );
    assert_eq!(
        npy::check_magic(b"RGXF"),
        Err(NpyError::BadMagic(b"R".to_vec()))
    );
    assert_eq!(npy::check_magic(b"\x93NU"), Ok(()));
    // Not ended by a newline.
    let mut b = whole.clone();
    *b.last_mut().unwrap() = b' ';
    assert_eq!(
        npy::parse_header(&b, u64::MAX),
        Err(NpyError::NotTerminated(b' '))
    );
}

#[test]
fn hostile_dict_literals() {
    use NpyError::*;
    let syntax = |offset: usize, message: &str| Syntax {
        offset,
        message: message.to_owned(),
    };
    let wrong = |key: &'static str, expected: &'static str, found: &str| WrongType {
        key,
        expected,
        found: found.to_owned(),
    };
    let shape_type = |found: &str| wrong("shape", "a tuple of integers", found);
    let dims33 = format!("({})", vec!["1"; 33].join(", "));
    let cases: Vec<(String, NpyError)> = vec![
        // Keys.
        (
            "{'descr': '<f8', 'fortran_order': False, }".into(),
            MissingKey("shape"),
        ),
        (
            "{'shape': (3,), 'fortran_order': False}".into(),
            MissingKey("descr"),
        ),
        (
            "{'descr': '<f8', 'shape': (3,)}".into(),
            MissingKey("fortran_order"),
        ),
        ("{}".into(), MissingKey("descr")),
        (
            "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), 'x': 1, }".into(),
            UnknownKey("x".into()),
        ),
        (
            "{'descr': '<f8', 'descr': '<f4', 'fortran_order': False, 'shape': (3,)}".into(),
            DuplicateKey("descr"),
        ),
        (
            "{'shape': (3,), 'descr': '<f8', 'fortran_order': False, 'shape': (4,)}".into(),
            DuplicateKey("shape"),
        ),
        // Shapes.
        (
            "{'descr': '<f8', 'fortran_order': False, 'shape': ((2,),), }".into(),
            shape_type("a nested tuple"),
        ),
        (
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2, (3, 4)), }".into(),
            shape_type("a nested tuple"),
        ),
        (
            "{'descr': '<f8', 'fortran_order': False, 'shape': (-1,), }".into(),
            BadDim {
                index: 0,
                text: "-1".into(),
            },
        ),
        (
            "{'descr': '<f8', 'fortran_order': False, 'shape': (4, 18446744073709551616), }".into(),
            BadDim {
                index: 1,
                text: "18446744073709551616".into(),
            },
        ),
        (
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2**64,), }".into(),
            syntax(52, "expected ',' or ')' in the shape, found '*'"),
        ),
        (
            "{'descr': '<f8', 'fortran_order': False, 'shape': (18446744073709551615,), }".into(),
            ShapeOverflow {
                shape: vec![u64::MAX],
                itemsize: 8,
            },
        ),
        (
            "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }".into(),
            ShapeOverflow {
                shape: vec![1 << 32, 1 << 32],
                itemsize: 8,
            },
        ),
        (
            format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {dims33}, }}"),
            TooManyDims,
        ),
        (
            "{'descr': '<f8', 'fortran_order': False, 'shape': [2], }".into(),
            shape_type("a list"),
        ),
        (
            "{'descr': '<f8', 'fortran_order': False, 'shape': 3, }".into(),
            shape_type("the integer 3"),
        ),
        (
            "{'descr': '<f8', 'fortran_order': False, 'shape': (3), }".into(),
            shape_type("(3), an integer in parentheses"),
        ),
        (
            "{'descr': '<f8', 'fortran_order': False, 'shape': (,), }".into(),
            syntax(51, "expected a dimension or ')' in the shape, found ','"),
        ),
        (
            "{'descr': '<f8', 'fortran_order': False, 'shape': (03,), }".into(),
            syntax(51, "integers must be plain decimal, found 03"),
        ),
        (
            "{'descr': '<f8', 'fortran_order': False, 'shape': (3.0,), }".into(),
            syntax(51, "integers must be plain decimal, found 3.0"),
        ),
        // Other types.
        (
            "{'descr': '<f8', 'fortran_order': 1, 'shape': (3,), }".into(),
            wrong("fortran_order", "True or False", "the integer 1"),
        ),
        (
            "{'descr': '<f8', 'fortran_order': 'False', 'shape': (3,), }".into(),
            wrong("fortran_order", "True or False", "the string 'False'"),
        ),
        (
            "{'descr': '<f8', 'fortran_order': None, 'shape': (3,), }".into(),
            wrong("fortran_order", "True or False", "None"),
        ),
        (
            "{'descr': 8, 'fortran_order': False, 'shape': (3,), }".into(),
            wrong("descr", "a dtype string such as '<f8'", "the integer 8"),
        ),
        // Dtypes ringxfer does not carry.
        (
            "{'descr': '|O', 'fortran_order': False, 'shape': (3,), }".into(),
            UnsupportedDtype("'|O'".into()),
        ),
        (
            "{'descr': '|V8', 'fortran_order': False, 'shape': (3,), }".into(),
            UnsupportedDtype("'|V8'".into()),
        ),
        (
            "{'descr': '<U8', 'fortran_order': False, 'shape': (3,), }".into(),
            UnsupportedDtype("'<U8'".into()),
        ),
        (
            "{'descr': '<f16', 'fortran_order': False, 'shape': (3,), }".into(),
            UnsupportedDtype("'<f16'".into()),
        ),
        (
            "{'descr': '!f8', 'fortran_order': False, 'shape': (3,), }".into(),
            UnsupportedDtype("'!f8'".into()),
        ),
        (
            "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }".into(),
            UnsupportedDtype("[…] (a structured dtype: a list of fields)".into()),
        ),
        (
            "{'descr': ('<f4', (2,)), 'fortran_order': False, 'shape': (3,), }".into(),
            UnsupportedDtype("(…) (a sub-array dtype: a tuple)".into()),
        ),
        // Strings and the dict itself.
        (
            "{'descr': \"<f8, 'fortran_order': False, 'shape': (3,), }".into(),
            syntax(10, "unterminated string"),
        ),
        (
            "{'descr': '\\x3cf8', 'fortran_order': False, 'shape': (3,), }".into(),
            syntax(10, "escape sequences in strings are not supported"),
        ),
        (
            "{'descr': '<f8' 'fortran_order': False, 'shape': (3,), }".into(),
            syntax(16, "expected ',' or '}', found the string 'fortran_order'"),
        ),
        (
            "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), } x".into(),
            syntax(58, "expected only spaces after the dict, found x"),
        ),
        (
            "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), ".into(),
            syntax(
                118,
                "expected a quoted key or '}', found the end of the header",
            ),
        ),
        (
            "['descr', '<f8']".into(),
            syntax(0, "expected '{', found '['"),
        ),
        (
            "{descr: '<f8'}".into(),
            syntax(1, "expected a quoted key or '}', found descr"),
        ),
        (
            "{'descr' '<f8'}".into(),
            syntax(9, "expected ':', found the string '<f8'"),
        ),
    ];
    for (dict, want) in &cases {
        assert_eq!(parse(dict).as_ref(), Err(want), "{dict}");
        // Every rejection reads as a frame error of its own kind.
        let e: Error = FrameError::from(want.clone()).into();
        assert_eq!(e.kind(), want.kind(), "{dict}");
        assert!(e.kind().starts_with("npy_"));
    }
}

#[test]
fn accepted_dict_variants() {
    let native = DType::native(ringxfer::dtype::Scalar::F64);
    for (dict, dtype, shape, order) in [
        // numpy's own form.
        (
            "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
            "<f8",
            &[3][..],
            Order::C,
        ),
        // Double quotes, no trailing comma, other key order, tabs and newlines.
        (
            "{\"shape\": (2, 3), \"fortran_order\": True, \"descr\": \">i4\"}",
            ">i4",
            &[2, 3],
            Order::F,
        ),
        (
            "{\t'descr' :'|u1' ,\n'fortran_order':False,'shape':( 2 , 3 , )}",
            "|u1",
            &[2, 3],
            Order::C,
        ),
        (
            "{'descr': '<f2', 'fortran_order': False, 'shape': ()}",
            "<f2",
            &[],
            Order::C,
        ),
        (
            "{'descr': '|b1', 'fortran_order': False, 'shape': (0,)}",
            "|b1",
            &[0],
            Order::C,
        ),
        (
            "{'descr': '>c16', 'fortran_order': True, 'shape': (1, 2, 3)}",
            ">c16",
            &[1, 2, 3],
            Order::F,
        ),
    ] {
        let h = parse(dict).unwrap_or_else(|e| panic!("{dict}: {e}"));
        assert_eq!(
            (h.dtype, &h.shape[..], h.order),
            (dt(dtype), shape, order),
            "{dict}"
        );
    }
    // `=`, `|` and no byte order at all mean the native order; one-byte types have none.
    for descr in ["=f8", "|f8", "f8"] {
        let h = parse(&format!(
            "{{'descr': '{descr}', 'fortran_order': False, 'shape': (1,)}}"
        ))
        .unwrap();
        assert_eq!(h.dtype, native, "{descr}");
    }
    assert_eq!(
        parse("{'descr': '>u1', 'fortran_order': False, 'shape': (1,)}")
            .unwrap()
            .dtype,
        dt("|u1")
    );
    // 32 dimensions, the most a header may have; a 16-byte aligned (old numpy) header.
    let dims = format!("({})", vec!["1"; 32].join(", "));
    let h = parse(&format!(
        "{{'descr': '<f8', 'fortran_order': False, 'shape': {dims}}}"
    ))
    .unwrap();
    assert_eq!(h.shape, vec![1; 32]);
    let old = wrap_aligned(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
        16,
    );
    assert_eq!(old.len(), 80);
    let h = npy::parse_header(&old, u64::MAX).unwrap();
    assert_eq!((h.header_len, h.payload_len), (80, 24));
}

/// A version-2.0 header of exactly [`npy::MAX_HEADER_LEN`] bytes around `dict`.
fn largest(dict: &str) -> Vec<u8> {
    let mut text = dict.as_bytes().to_vec();
    text.resize(npy::MAX_HEADER_LEN - 12 - 1, b' ');
    text.push(b'\n');
    let mut out = prefix((2, 0), text.len() as u32);
    out.extend_from_slice(&text);
    out
}

/// Headers of the largest accepted size: mostly padding is fine; a 64 KiB shape stops at the
/// 33rd dimension; a 64 KiB dtype string is shown cut to 32 bytes.
#[test]
fn largest_headers() {
    let h = npy::parse_header(
        &largest("{'descr': '<f2', 'fortran_order': True, 'shape': (2, 3)}"),
        u64::MAX,
    )
    .unwrap();
    assert_eq!(
        (h.header_len, h.payload_len, h.order),
        (65536, 12, Order::F)
    );
    let dims = "1, ".repeat(20_000);
    assert_eq!(
        npy::parse_header(
            &largest(&format!(
                "{{'descr': '<f8', 'fortran_order': False, 'shape': ({dims})}}"
            )),
            u64::MAX
        ),
        Err(NpyError::TooManyDims)
    );
    let descr = "x".repeat(60_000);
    let e = npy::parse_header(
        &largest(&format!(
            "{{'descr': '{descr}', 'fortran_order': False, 'shape': ()}}"
        )),
        u64::MAX,
    )
    .unwrap_err();
    assert_eq!(
        e,
        NpyError::UnsupportedDtype(format!("'{}…'", "x".repeat(32)))
    );
    check_rejected(&e);
}

#[test]
fn payload_limit_and_shape_overflow() {
    let b = wrap("{'descr': '<f8', 'fortran_order': False, 'shape': (13,), }");
    assert_eq!(
        npy::parse_header(&b, 100),
        Err(NpyError::TooLarge {
            payload_len: 104,
            limit: 100
        })
    );
    assert_eq!(npy::parse_header(&b, 104).unwrap().payload_len, 104);
    // A zero dimension makes the array empty whatever the others are, unless they overflow.
    let b = wrap("{'descr': '<f8', 'fortran_order': False, 'shape': (0, 1152921504606846976), }");
    assert_eq!(npy::parse_header(&b, 0).unwrap().payload_len, 0);
    let b =
        wrap("{'descr': '<f8', 'fortran_order': False, 'shape': (0, 4611686018427387904, 4), }");
    assert_eq!(
        npy::parse_header(&b, u64::MAX),
        Err(NpyError::ShapeOverflow {
            shape: vec![0, 1 << 62, 4],
            itemsize: 8
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------------

fn edgy_dim() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        0u64..100,
        Just(1 << 32),
        Just(1 << 62),
        Just(u64::MAX),
        any::<u64>(),
    ]
}

fn any_dtype() -> impl Strategy<Value = DType> {
    prop::sample::select(&ALL_DTYPES[..]).prop_map(dt)
}

fn any_order() -> impl Strategy<Value = Order> {
    prop_oneof![Just(Order::C), Just(Order::F)]
}

/// The invariants of any accepted header.
fn check_accepted(b: &[u8], h: &npy::NpyHeader, limit: u64) {
    assert_eq!(h.header_len, b.len());
    assert!(h.header_len <= npy::MAX_HEADER_LEN && h.header_len % npy::MIN_ALIGN == 0);
    assert!(h.shape.len() <= frame::MAX_NDIM);
    assert_eq!(
        frame::payload_bytes(&h.shape, h.dtype.itemsize()),
        Some(h.payload_len)
    );
    assert!(h.payload_len <= limit);
    // What it describes encodes to a header that parses back to the same array.
    let again = npy::encode_header(h.dtype, &h.shape, h.order);
    let h2 = npy::parse_header(&again, limit).unwrap();
    assert_eq!(
        (h2.dtype, &h2.shape, h2.payload_len),
        (h.dtype, &h.shape, h.payload_len)
    );
}

/// An error's text stays small whatever the input (no echo of a hostile header).
fn check_rejected(e: &NpyError) {
    let text = e.to_string();
    assert!(text.len() <= 400, "{} bytes: {text}", text.len());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// encode → parse gives back dtype, shape and order (as numpy writes it), or
    /// `ShapeOverflow` exactly when `product(shape) * itemsize` does not fit 64 bits.
    #[test]
    fn encode_parse_round_trip(
        dtype in any_dtype(),
        shape in prop::collection::vec(edgy_dim(), 0..=32),
        order in any_order(),
    ) {
        let b = npy::encode_header(dtype, &shape, order);
        prop_assert_eq!(b.len() % 64, 0);
        prop_assert_eq!(npy::header_len_from_prefix(&b), Ok(b.len()));
        let want_order = if npy::writes_fortran_order(&shape, order) { Order::F } else { Order::C };
        match frame::payload_bytes(&shape, dtype.itemsize()) {
            Some(len) => {
                let h = npy::parse_header(&b, u64::MAX).unwrap();
                prop_assert_eq!((h.dtype, &h.shape, h.order, h.payload_len, h.version),
                    (dtype, &shape, want_order, len, Version::V1_0));
                check_accepted(&b, &h, u64::MAX);
                prop_assert_eq!(npy::encode_header(h.dtype, &h.shape, h.order), b);
            }
            None => prop_assert_eq!(
                npy::parse_header(&b, u64::MAX),
                Err(NpyError::ShapeOverflow { shape: shape.clone(), itemsize: dtype.itemsize() })
            ),
        }
    }

    /// Arbitrary bytes behind a well-formed prefix, and arbitrary prefixes: never a panic,
    /// small error texts, and what is accepted is a consistent header.
    #[test]
    fn arbitrary_bytes_never_panic(
        version in prop_oneof![Just((1u8, 0u8)), Just((2, 0)), Just((3, 0)), any::<(u8, u8)>()],
        body in prop::collection::vec(any::<u8>(), 0..300),
        raw_prefix in prop::collection::vec(any::<u8>(), 0..16),
        limit in prop_oneof![Just(u64::MAX), any::<u64>()],
    ) {
        let mut b = prefix(version, body.len() as u32);
        b.extend_from_slice(&body);
        for input in [&b[..], &raw_prefix[..]] {
            let _ = npy::version_from_start(input);
            match npy::header_len_from_prefix(input) {
                Ok(n) => prop_assert!(n <= npy::MAX_HEADER_LEN && n % 16 == 0),
                Err(e) => check_rejected(&e),
            }
            match npy::parse_header(input, limit) {
                Ok(h) => check_accepted(input, &h, limit),
                Err(e) => check_rejected(&e),
            }
        }
    }

    /// Soups of the grammar's own tokens (the likeliest way to reach deep into the parser),
    /// and single-byte mutations of a valid header: never a panic; accepted ones are consistent.
    #[test]
    fn token_soups_and_mutations_never_panic(
        tokens in prop::collection::vec(prop::sample::select(&[
            "{", "}", "(", ")", "[", "]", ",", ":", " ", "'descr'", "'shape'",
            "'fortran_order'", "'<f8'", "'>f2'", "\"|b1\"", "'O'", "True", "False", "None", "0",
            "3", "-1", "18446744073709551616", "'", "\"", "\\", "\n", "1.5", "x",
        ][..]), 0..80),
        valid in (any_dtype(), prop::collection::vec(0u64..1000, 0..6), any_order()),
        flip in (any::<usize>(), 1u8..=255),
        limit in prop_oneof![Just(u64::MAX), 0u64..100_000],
    ) {
        let soup = wrap(&tokens.concat());
        let mut mutated = npy::encode_header(valid.0, &valid.1, valid.2);
        let at = flip.0 % mutated.len();
        mutated[at] ^= flip.1;
        for input in [&soup, &mutated] {
            match npy::parse_header(input, limit) {
                Ok(h) => check_accepted(input, &h, limit),
                Err(e) => check_rejected(&e),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sending `.npy` to numpy.load
// ---------------------------------------------------------------------------------------------

/// Reads the arrays a Rust sender wrote to a socket, with numpy's own reader of the format,
/// in one of two ways (argv[3]): `load`: every byte until the sender closes, then
/// `numpy.load` array after array from a `BytesIO` of them (`numpy.load` needs a seekable
/// file: on `sock.makefile('rb')` it raises `UnsupportedOperation`, numpy 2.4); `stream`:
/// `numpy.lib.format.read_array` straight from `sock.makefile('rb', buffering=0)` (a
/// buffered `makefile('rb')` makes numpy take its `fromfile` path, which needs a file
/// position and fails on a socket).
const LOAD_FROM_SOCKET: &str = r#"
import io, json, socket, sys
import numpy as np
import numpy.lib.format as fmt
port, cases, mode = int(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
sock = socket.create_connection(("127.0.0.1", port))
sock.settimeout(60)
raw = sock.makefile("rb", buffering=0)
if mode == "load":
    f = io.BytesIO(raw.read())
    read = lambda: np.load(f)
else:
    f = raw
    read = lambda: fmt.read_array(f)
for dtype, shape, order in cases:
    a = read()
    n = 1
    for d in shape:
        n *= d
    want = np.arange(n).astype(np.dtype(dtype)).reshape(tuple(shape), order=order)
    same = a.tobytes(order="A") == want.tobytes(order="A")
    print(json.dumps({"dtype": a.dtype.str, "shape": list(a.shape),
                      "fortran": bool(a.flags.f_contiguous and not a.flags.c_contiguous),
                      "same": same and a.shape == want.shape}))
print(json.dumps({"rest": len(f.read())}))
"#;

both_backends! {
    /// `.npy` streams sent back to back on one connection are read by numpy (`numpy.load` of
    /// the received bytes, and `numpy.lib.format.read_array` from the socket as they arrive;
    /// see [`LOAD_FROM_SOCKET`]) with the dtype, shape and order sent and the arange values,
    /// for little- and big-endian dtypes (`>f8`), float16, complex, bool, F order, 0-d and
    /// empty arrays; nothing follows the last one.
    fn numpy_load_reads_sent_npy(backend) {
        if !numpy_available() {
            return;
        }
        let cases: Vec<(&str, Vec<u64>, Order)> = vec![
            ("<f8", vec![1000], Order::C),
            (">f8", vec![20, 10, 5], Order::F),
            ("<f2", vec![70_000], Order::C),
            (">i4", vec![3, 4], Order::C),
            ("<c16", vec![5, 2], Order::F),
            ("|b1", vec![9], Order::C),
            ("|u1", vec![], Order::C),
            ("<f4", vec![3, 0, 2], Order::F),
            ("<f8", vec![0], Order::C),
            ("<i8", vec![1 << 20], Order::C),
        ];
        let json = cases_json(&cases);
        for mode in ["load", "stream"] {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port().to_string();
            let py = Python::start(LOAD_FROM_SOCKET, &[&port, &json, mode]);
            let (sock, _): (TcpStream, _) = listener.accept().unwrap();
            let mut e = util::engine(&util::opts(backend));
            let sent: ringxfer::Result<()> = cases.iter().try_for_each(|(d, shape, order)| {
                let dtype = dt(d);
                let mut bytes = vec![0u8; shape.iter().product::<u64>() as usize * dtype.itemsize()];
                fill_arange(dtype, &mut bytes);
                let view = ArrayView { dtype, bytes: &bytes, shape, order: *order };
                e.send_view(&sock, view, WireFormat::Npy)
            });
            drop(sock);
            let (status, out, err) = py.finish(CHILD_LIMIT);
            assert!(
                sent.is_ok() && status.is_some_and(|s| s.success()),
                "send: {sent:?}; python3: {status:?}\n{out}\n{err}"
            );
            let lines: Vec<serde_json::Value> =
                out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            assert_eq!(lines.len(), cases.len() + 1, "{out}");
            for ((d, shape, order), got) in cases.iter().zip(&lines) {
                let fortran = npy::writes_fortran_order(shape, *order);
                assert_eq!(
                    got,
                    &serde_json::json!({"dtype": dt(d).to_string(), "shape": shape,
                                        "fortran": fortran, "same": true}),
                    "{mode}: {d} {shape:?} {order:?}"
                );
            }
            assert_eq!(lines[cases.len()], serde_json::json!({"rest": 0}), "{mode}");
        }
    }

    /// The stream is exactly `encode_header` then the payload, nothing more (no trailer, no
    /// checksum), and a caller's wrong length is `ShapeMismatch` with nothing sent.
    fn npy_stream_is_header_then_payload(backend) {
        let (a, b) = util::unix_pair();
        let mut e = util::engine(&util::opts(backend));
        let dtype = dt(">f8");
        let mut bytes = vec![0u8; 6 * 8];
        fill_arange(dtype, &mut bytes);
        let view = ArrayView { dtype, bytes: &bytes[..40], shape: &[2, 3], order: Order::F };
        match e.send_view(&a, view, WireFormat::Npy) {
            Err(Error::InvalidArray(FrameError::ShapeMismatch { needed: 6, len: 5, .. })) => {}
            other => panic!("{other:?}"),
        }
        let view = ArrayView { bytes: &bytes, ..view };
        e.send_view(&a, view, WireFormat::Npy).unwrap();
        drop(a);
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut &b, &mut got).unwrap();
        let mut want = npy::encode_header(dtype, &[2, 3], Order::F);
        want.extend_from_slice(&bytes);
        assert_eq!(got, want);
    }
}

/// Writes arrays with `numpy.save` to a socket (through an object whose `write` is
/// `sendall`; see docs/PROTOCOL.md on why not `makefile('wb')`), then closes.
const SAVE_TO_SOCKET: &str = r#"
import json, socket, sys
import numpy as np
port, cases = int(sys.argv[1]), json.loads(sys.argv[2])
sock = socket.create_connection(("127.0.0.1", port))
sock.settimeout(60)
class Writer:
    def write(self, b):
        sock.sendall(b)
for dtype, shape, order in cases:
    n = 1
    for d in shape:
        n *= d
    np.save(Writer(), np.arange(n).astype(np.dtype(dtype)).reshape(tuple(shape), order=order))
sock.close()
"#;

both_backends! {
    /// The incremental reading steps on a real `numpy.save` stream, received with the engine:
    /// 8 bytes (`version_from_start`), the rest of the prefix (`header_len_from_prefix`), the
    /// rest of the header (`parse_header`), then exactly `payload_len` bytes, array after
    /// array; the data is the arange pattern and the stream ends after the last one.
    fn numpy_save_stream_reads_in_steps(backend) {
        if !numpy_available() {
            return;
        }
        let cases: Vec<(&str, Vec<u64>, Order, Order)> = vec![
            ("<f8", vec![1000], Order::C, Order::C),
            (">f8", vec![20, 10, 5], Order::F, Order::F),
            ("<f2", vec![3, 4], Order::C, Order::C),
            (">c8", vec![7], Order::F, Order::C),
            ("|b1", vec![], Order::C, Order::C),
            ("<u2", vec![2, 0], Order::F, Order::C),
        ];
        let json = serde_json::to_string(
            &cases.iter().map(|(d, s, o, _)| (d, s, order_name(*o))).collect::<Vec<_>>(),
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port().to_string();
        let py = Python::start(SAVE_TO_SOCKET, &[&port, &json]);
        let (sock, _): (TcpStream, _) = listener.accept().unwrap();
        let mut e = util::engine(&util::opts(backend));
        for (d, shape, _, written) in &cases {
            let mut head = vec![0u8; npy::START_LEN];
            e.recv_into(&sock, &mut head[..]).unwrap();
            let version = npy::version_from_start(&head).unwrap();
            head.resize(version.prefix_len(), 0);
            e.recv_into(&sock, &mut head[npy::START_LEN..]).unwrap();
            let header_len = npy::header_len_from_prefix(&head).unwrap();
            let prefix_len = head.len();
            head.resize(header_len, 0);
            e.recv_into(&sock, &mut head[prefix_len..]).unwrap();
            let h = npy::parse_header(&head, 1 << 20).unwrap();
            assert_eq!(
                (h.dtype, &h.shape, h.order, h.version),
                (dt(d), shape, *written, Version::V1_0),
                "{d} {shape:?}"
            );
            let mut data = vec![0u8; h.payload_len as usize];
            e.recv_into(&sock, &mut data[..]).unwrap();
            let mut want = vec![0u8; data.len()];
            fill_arange(h.dtype, &mut want);
            assert!(data == want, "{d} {shape:?}: data");
        }
        py.success(CHILD_LIMIT);
        ringxfer::close::expect_eof(&sock, Some(Duration::from_secs(10))).unwrap();
    }
}

/// `WireFormat` parses and prints its two names, and knows a stream by its first byte.
#[test]
fn wire_format_names() {
    assert_eq!("npy".parse::<WireFormat>().unwrap(), WireFormat::Npy);
    assert_eq!(" RGXF ".parse::<WireFormat>().unwrap(), WireFormat::Rgxf);
    assert_eq!(WireFormat::default(), WireFormat::Rgxf);
    assert_eq!(WireFormat::Npy.to_string(), "npy");
    let e = "npz".parse::<WireFormat>().unwrap_err();
    assert_eq!(
        Error::from(e).to_string(),
        Error::InvalidInput("unknown wire format \"npz\" (expected rgxf or npy)".into())
            .to_string()
    );
    // The first byte of a stream tells the formats apart.
    let rgxf = frame::Header::new(dt("<f8"), &[1], Order::C)
        .unwrap()
        .encode();
    let npy = npy::encode_header(dt("<f8"), &[1], Order::C);
    assert_eq!(WireFormat::of_first_byte(rgxf[0]), Some(WireFormat::Rgxf));
    assert_eq!(WireFormat::of_first_byte(npy[0]), Some(WireFormat::Npy));
    for other in [b'G', 0, b'{', 0x92, b'r'] {
        assert_eq!(WireFormat::of_first_byte(other), None, "{other:#04x}");
    }
}
