//! numpy's `.npy` format: a pure codec for its header, no I/O (like the chain planner,
//! `src/planner.rs`: plain data in, plain data out).
//!
//! The layout (numpy's `numpy.lib.format` documentation, NEP 1):
//!
//! | bytes | field |
//! |---|---|
//! | 6 | magic `\x93NUMPY` ([`MAGIC`]) |
//! | 2 | format version, major then minor: 1.0, 2.0 or 3.0 ([`Version`]) |
//! | 2 (1.0) or 4 (2.0, 3.0) | `HEADER_LEN`, little-endian: bytes of the dict text that follows |
//! | `HEADER_LEN` | a Python dict literal, `{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }`, padded with spaces and ended by `\n` so the data starts at a multiple of 64 bytes |
//! | rest | the array's bytes in memory order (`product(shape) * itemsize`) |
//!
//! Versions 1.0 and 2.0 encode the dict in latin-1, 3.0 in UTF-8; this parser accepts ASCII
//! outside the strings, so all three read the same way.
//!
//! **Reading** is bounded and in steps, so a socket receiver never reads or allocates more
//! than the header allows: [`check_magic`] as the first bytes arrive, [`header_len_from_prefix`]
//! on the first 10 (version 1.0) or 12 (2.0, 3.0) bytes says how many bytes the whole header has
//! (at most [`MAX_HEADER_LEN`]), then [`parse_header`] checks all of it. The dict is read by a
//! small hand-written tokenizer for exactly this grammar: single- or double-quoted strings
//! without escapes, `True`/`False`, non-negative decimal integers, tuples, whitespace, an
//! optional trailing comma; exactly the keys `descr`, `fortran_order` and `shape`, each once.
//! Every rejection is a distinct [`NpyError`]; the parser allocates the shape (at most
//! [`frame::MAX_NDIM`] dimensions) and error texts of at most a few dozen bytes, nothing in
//! proportion to a hostile header.
//!
//! **Files**: [`read_file_header`] reads a file's header the same bounded way and checks the
//! file's length against it (the only function here that does I/O).
//!
//! **Writing**: [`encode_header`] produces the bytes `numpy.save` writes for the same array
//! (checked byte for byte against numpy in `tests/npy.rs`).
//!
//! `.npy` carries **no checksum**: a receiver of a `.npy` stream cannot detect corrupted
//! payload bytes the way the RGXF trailer's CRC-32 does (`docs/PROTOCOL.md`).
//!
//! ```
//! use ringxfer::npy;
//! use ringxfer::Order;
//!
//! let dtype = ">f8".parse()?;
//! let head = npy::encode_header(dtype, &[2, 3], Order::F);
//! assert_eq!(head.len(), 128); // data starts at a multiple of 64 bytes
//! assert_eq!(npy::header_len_from_prefix(&head[..10])?, 128);
//! let h = npy::parse_header(&head, u64::MAX)?;
//! assert_eq!((h.dtype, &h.shape[..], h.order, h.payload_len), (dtype, &[2, 3][..], Order::F, 48));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::dtype::{ByteOrder, DType, Scalar};
use crate::frame::{self, MAX_NDIM, Order};

/// `\x93NUMPY`: the first six bytes of every `.npy` stream.
pub const MAGIC: [u8; 6] = *b"\x93NUMPY";

/// Largest whole header accepted (prefix plus dict text), in bytes: 64 KiB. numpy's own reader
/// refuses dicts over 10000 bytes unless told otherwise (`max_header_size`); this cap is looser
/// so any version-1.0 header (whose length field is 16 bits) is read, while a version-2.0
/// `HEADER_LEN` of up to 4 GiB can never make a receiver read or allocate more than this.
pub const MAX_HEADER_LEN: usize = 64 << 10;

/// The alignment current numpy (2.4 checked) pads the header to, in bytes: the data starts
/// at a multiple of it. [`encode_header`] writes this.
pub const ARRAY_ALIGN: usize = 64;

/// The alignment a read header must have, in bytes: older numpy padded to 16, so both 16 and
/// 64 are accepted (every multiple of 64 is one of 16).
pub const MIN_ALIGN: usize = 16;

/// Bytes of the magic and the version, after which the length of the prefix is known.
pub const START_LEN: usize = 8;

/// The `.npy` format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// 1.0: 16-bit `HEADER_LEN`, latin-1 dict.
    V1_0,
    /// 2.0 (numpy 1.9): 32-bit `HEADER_LEN`, latin-1 dict; numpy writes it only when the
    /// header does not fit 1.0.
    V2_0,
    /// 3.0 (numpy 1.17): 32-bit `HEADER_LEN`, UTF-8 dict.
    V3_0,
}

impl Version {
    /// Bytes before the dict text: magic, version and `HEADER_LEN` (10 for 1.0, 12 otherwise).
    pub fn prefix_len(self) -> usize {
        match self {
            Version::V1_0 => 10,
            Version::V2_0 | Version::V3_0 => 12,
        }
    }

    /// `(major, minor)` as written in bytes 6 and 7.
    pub fn number(self) -> (u8, u8) {
        match self {
            Version::V1_0 => (1, 0),
            Version::V2_0 => (2, 0),
            Version::V3_0 => (3, 0),
        }
    }
}

/// A parsed `.npy` header.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NpyHeader {
    /// Element type and byte order (`descr`).
    pub dtype: DType,
    /// Dimensions in elements (`shape`); empty for a 0-d array.
    pub shape: Vec<u64>,
    /// Memory order of the data (`fortran_order`: `True` is [`Order::F`]).
    pub order: Order,
    /// Bytes of the whole header, prefix included: the offset of the data from the start of
    /// the stream (a multiple of [`MIN_ALIGN`]).
    pub header_len: usize,
    /// The format version.
    pub version: Version,
    /// Bytes of data after the header: `product(shape) * itemsize`.
    pub payload_len: u64,
}

impl NpyHeader {
    /// The same array described as an RGXF frame header, with no flag set: no checksum
    /// travels in `.npy`, so [`crate::AnyArray::checksum_verified`] of an array received from
    /// one is false.
    pub fn frame_header(&self) -> frame::Header {
        frame::Header {
            dtype: self.dtype,
            order: self.order,
            shape: self.shape.clone(),
            payload_len: self.payload_len,
            flags: 0,
        }
    }
}

pub use crate::frame::NpyError;

/// Checks the first bytes of a stream against [`MAGIC`] as they arrive (any length; only the
/// first 6 bytes matter): `Ok` while every byte received matches.
pub fn check_magic(start: &[u8]) -> Result<(), NpyError> {
    match frame::magic_mismatch(start, &MAGIC) {
        None => Ok(()),
        Some(bad) => Err(NpyError::BadMagic(bad.to_vec())),
    }
}

/// Checks magic and version in the first [`START_LEN`] (8) bytes and returns the version,
/// whose [`Version::prefix_len`] says how many bytes to read before
/// [`header_len_from_prefix`].
pub fn version_from_start(start: &[u8]) -> Result<Version, NpyError> {
    check_magic(start)?;
    let Some(&[major, minor]) = start.get(MAGIC.len()..START_LEN) else {
        return Err(NpyError::Truncated {
            needed: START_LEN as u64,
            got: start.len() as u64,
        });
    };
    match (major, minor) {
        (1, 0) => Ok(Version::V1_0),
        (2, 0) => Ok(Version::V2_0),
        (3, 0) => Ok(Version::V3_0),
        _ => Err(NpyError::UnsupportedVersion { major, minor }),
    }
}

/// Reads the prefix (magic, version, `HEADER_LEN`: the first 10 bytes for version 1.0, 12 for
/// 2.0 and 3.0; `prefix` may hold more, which are ignored) and returns the bytes of the whole
/// header, prefix included: the offset where the data starts. Checked before anything more is
/// read: at most [`MAX_HEADER_LEN`], a multiple of [`MIN_ALIGN`].
///
/// # Errors
/// [`NpyError::BadMagic`], [`NpyError::UnsupportedVersion`], [`NpyError::Truncated`] (fewer
/// bytes than the prefix), [`NpyError::HeaderTooLong`], [`NpyError::Misaligned`].
pub fn header_len_from_prefix(prefix: &[u8]) -> Result<usize, NpyError> {
    versioned_header_len(prefix).map(|(_, len)| len)
}

/// [`header_len_from_prefix`] with the version.
fn versioned_header_len(prefix: &[u8]) -> Result<(Version, usize), NpyError> {
    let version = version_from_start(prefix)?;
    let p = version.prefix_len();
    let Some(field) = prefix.get(START_LEN..p) else {
        return Err(NpyError::Truncated {
            needed: p as u64,
            got: prefix.len() as u64,
        });
    };
    // 2 or 4 bytes, little-endian: zero-extended to a u32 either way.
    let mut le = [0u8; 4];
    le[..field.len()].copy_from_slice(field);
    let declared = u64::from(u32::from_le_bytes(le));
    let header_len = p as u64 + declared;
    if header_len > MAX_HEADER_LEN as u64 {
        return Err(NpyError::HeaderTooLong {
            header_len,
            limit: MAX_HEADER_LEN,
        });
    }
    if header_len % MIN_ALIGN as u64 != 0 {
        return Err(NpyError::Misaligned { header_len });
    }
    Ok((version, header_len as usize))
}

/// Parses and checks a whole header: `bytes` must be exactly the header
/// ([`header_len_from_prefix`] bytes; the data that follows belongs to the caller).
/// `max_payload_bytes` bounds `product(shape) * itemsize`.
///
/// # Errors
/// The errors of [`header_len_from_prefix`]; [`NpyError::Truncated`] when `bytes` is not
/// exactly the announced header; [`NpyError::NotTerminated`]; then, in this order, the dict's
/// grammar ([`NpyError::Syntax`]), keys (unknown, duplicate: as met; missing: at the end),
/// values ([`NpyError::WrongType`], [`NpyError::UnsupportedDtype`], [`NpyError::BadDim`],
/// [`NpyError::TooManyDims`]) and size ([`NpyError::ShapeOverflow`],
/// [`NpyError::TooLarge`]).
pub fn parse_header(bytes: &[u8], max_payload_bytes: u64) -> Result<NpyHeader, NpyError> {
    let (version, header_len) = versioned_header_len(bytes)?;
    if bytes.len() != header_len {
        return Err(NpyError::Truncated {
            needed: header_len as u64,
            got: bytes.len() as u64,
        });
    }
    let text = &bytes[version.prefix_len()..];
    match text.last() {
        Some(b'\n') => {}
        Some(&other) => return Err(NpyError::NotTerminated(other)),
        None => return Err(NpyError::NotTerminated(0)),
    }
    let dict = Parser::new(text).dict()?;
    let itemsize = dict.dtype.itemsize();
    let payload_len =
        frame::payload_bytes(&dict.shape, itemsize).ok_or_else(|| NpyError::ShapeOverflow {
            shape: dict.shape.clone(),
            itemsize,
        })?;
    if payload_len > max_payload_bytes {
        return Err(NpyError::TooLarge {
            payload_len,
            limit: max_payload_bytes,
        });
    }
    Ok(NpyHeader {
        dtype: dict.dtype,
        shape: dict.shape,
        order: dict.order,
        header_len,
        version,
        payload_len,
    })
}

/// Reads and checks the header of a `.npy` file, and that the file holds exactly the header
/// plus `payload_len` bytes of data: what a sender checks before mapping the file and sending
/// `header_len..` of it. Reads at most 12 bytes, then the header (at most
/// [`MAX_HEADER_LEN`]), by position (`pread`: the file's offset is left alone). The one
/// function of this module that does I/O.
///
/// # Errors
/// The OS error of reading the file; or an [`NpyError`] as [`parse_header`] returns it, or
/// [`NpyError::FileLength`], inside an [`std::io::Error`] of kind `InvalidData` (get it back
/// with `err.get_ref().and_then(|e| e.downcast_ref::<NpyError>())`).
pub fn read_file_header(
    file: &std::fs::File,
    max_payload_bytes: u64,
) -> std::io::Result<NpyHeader> {
    use std::os::unix::fs::FileExt;
    let file_len = file.metadata()?.len();
    let mut start = [0u8; 12];
    let n = file_len.min(start.len() as u64) as usize;
    file.read_exact_at(&mut start[..n], 0)?;
    let header_len = header_len_from_prefix(&start[..n])?;
    if header_len as u64 > file_len {
        return Err(NpyError::Truncated {
            needed: header_len as u64,
            got: file_len,
        }
        .into());
    }
    let mut head = vec![0u8; header_len];
    file.read_exact_at(&mut head, 0)?;
    let h = parse_header(&head, max_payload_bytes)?;
    if (h.header_len as u64).checked_add(h.payload_len) != Some(file_len) {
        return Err(NpyError::FileLength {
            file_len,
            header_len: h.header_len,
            payload_len: h.payload_len,
        }
        .into());
    }
    Ok(h)
}

impl From<NpyError> for std::io::Error {
    /// An `InvalidData` error carrying the [`NpyError`].
    fn from(e: NpyError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

/// The header `numpy.save` writes for an array of `dtype`, `shape` (elements) and `order`
/// (`fortran_order` as numpy decides it: [`writes_fortran_order`]): version 1.0 (2.0 only if the dict did not fit 65535 bytes, which ringxfer's dtypes and
/// shapes never reach), the dict with its keys in sorted order, numpy's spare spaces for the
/// growth axis, then spaces and `\n` up to a multiple of [`ARRAY_ALIGN`] (64) bytes.
pub fn encode_header(dtype: DType, shape: &[u64], order: Order) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let fortran = if writes_fortran_order(shape, order) {
        "True"
    } else {
        "False"
    };
    let mut dict =
        format!("{{'descr': '{dtype}', 'fortran_order': {fortran}, 'shape': {tuple}, }}");
    // numpy leaves room to rewrite the growth axis (the first, or the last in Fortran order)
    // in place with up to 21 digits.
    let growth = if writes_fortran_order(shape, order) {
        dims.last()
    } else {
        dims.first()
    };
    if let Some(g) = growth {
        dict.push_str(&" ".repeat(21usize.saturating_sub(g.len())));
    }
    let with_newline = dict.len() + 1;
    // numpy pads a whole extra 64 bytes when the text is already aligned (padding is never 0).
    let text_len =
        |prefix: usize| with_newline + ARRAY_ALIGN - (prefix + with_newline) % ARRAY_ALIGN;
    let version = if text_len(Version::V1_0.prefix_len()) <= usize::from(u16::MAX) {
        Version::V1_0
    } else {
        Version::V2_0
    };
    let prefix = version.prefix_len();
    let text_len = text_len(prefix);
    let mut out = Vec::with_capacity(prefix + text_len);
    out.extend_from_slice(&MAGIC);
    let (major, minor) = version.number();
    out.extend_from_slice(&[major, minor]);
    match version {
        Version::V1_0 => out.extend_from_slice(&(text_len as u16).to_le_bytes()),
        _ => out.extend_from_slice(&(text_len as u32).to_le_bytes()),
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(prefix + text_len - 1, b' ');
    out.push(b'\n');
    out
}

/// numpy's `fortran_order` for an array of `shape` laid out in `order`: `True` only when the
/// layout is Fortran-contiguous and not also C-contiguous. An array with a zero dimension, or
/// with at most one dimension above 1 (0-d, 1-d, `(1, 5)`), is both, so numpy writes `False`
/// for it in either order; the bytes are the same either way.
pub fn writes_fortran_order(shape: &[u64], order: Order) -> bool {
    order == Order::F && !shape.contains(&0) && shape.iter().filter(|&&d| d != 1).count() > 1
}

/// `descr`'s dtype: an optional byte order (`<`, `>`, `|`, or `=` meaning native; none means
/// native too, as numpy reads it), a kind character and the item size in bytes.
fn parse_descr(s: &[u8]) -> Option<DType> {
    let (order, rest) = match s.split_first() {
        Some((b'<', r)) => (ByteOrder::Little, r),
        Some((b'>', r)) => (ByteOrder::Big, r),
        Some((b'|' | b'=', r)) => (ByteOrder::NATIVE, r),
        _ => (ByteOrder::NATIVE, s),
    };
    let (&kind, digits) = rest.split_first()?;
    if digits.is_empty() || digits.len() > 2 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let size: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Scalar::from_kind(char::from(kind), size).map(|sc| DType::new(sc, order))
}

/// At most 32 bytes of `b`, escaped, with `…` when cut: error texts stay small whatever the
/// header holds.
fn snippet(b: &[u8]) -> String {
    const SHOW: usize = 32;
    let mut s = b[..b.len().min(SHOW)].escape_ascii().to_string();
    if b.len() > SHOW {
        s.push('…');
    }
    s
}

/// One token of the dict grammar, borrowing from the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    /// `{ } ( ) [ ] : , -` and any other single byte.
    Punct(u8),
    /// A quoted string's contents.
    Str(&'a [u8]),
    /// Decimal digits.
    Int(&'a [u8]),
    /// A name: `True`, `False`, `None`, ….
    Word(&'a [u8]),
    /// End of the text.
    End,
}

impl Tok<'_> {
    /// How the token reads in an error message.
    fn describe(self) -> String {
        match self {
            Tok::Punct(c) => format!("'{}'", [c].escape_ascii()),
            Tok::Str(s) => format!("the string '{}'", snippet(s)),
            Tok::Int(d) => format!("the integer {}", snippet(d)),
            Tok::Word(w) => snippet(w),
            Tok::End => "the end of the header".to_owned(),
        }
    }
}

/// The three values a header must have.
struct Dict {
    dtype: DType,
    order: Order,
    shape: Vec<u64>,
}

/// Tokenizer and parser of the dict text.
struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
    /// Offset of the last token returned.
    at: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a [u8]) -> Self {
        Parser {
            text,
            pos: 0,
            at: 0,
        }
    }

    fn syntax(&self, message: String) -> NpyError {
        NpyError::Syntax {
            offset: self.at,
            message,
        }
    }

    /// The next token, skipping whitespace.
    fn next(&mut self) -> Result<Tok<'a>, NpyError> {
        let b = self.text;
        while self.pos < b.len() && matches!(b[self.pos], b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
        self.at = self.pos;
        let Some(&c) = b.get(self.pos) else {
            return Ok(Tok::End);
        };
        let start = self.pos;
        match c {
            b'\'' | b'"' => {
                let body = start + 1;
                let Some(len) = b[body..]
                    .iter()
                    .position(|&x| x == c || x == b'\\' || x == b'\n')
                else {
                    return Err(self.syntax("unterminated string".into()));
                };
                match b[body + len] {
                    b'\\' => {
                        Err(self.syntax("escape sequences in strings are not supported".into()))
                    }
                    b'\n' => Err(self.syntax("unterminated string".into())),
                    _ => {
                        self.pos = body + len + 1;
                        Ok(Tok::Str(&b[body..body + len]))
                    }
                }
            }
            b'0'..=b'9' => {
                let len = b[start..].iter().take_while(|x| x.is_ascii_digit()).count();
                self.pos = start + len;
                let digits = &b[start..self.pos];
                // A number glued to more (`3.0`, `1_000`, `0x10`, `3L`) or with a leading zero is
                // not the plain decimal this grammar has.
                let glued = b[self.pos..]
                    .iter()
                    .take_while(|x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.'))
                    .count();
                if glued > 0 || (digits.len() > 1 && digits[0] == b'0') {
                    return Err(self.syntax(format!(
                        "integers must be plain decimal, found {}",
                        snippet(&b[start..self.pos + glued])
                    )));
                }
                Ok(Tok::Int(digits))
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let len = b[start..]
                    .iter()
                    .take_while(|x| x.is_ascii_alphanumeric() || **x == b'_')
                    .count();
                self.pos = start + len;
                Ok(Tok::Word(&b[start..self.pos]))
            }
            _ => {
                self.pos += 1;
                Ok(Tok::Punct(c))
            }
        }
    }

    fn expect(&mut self, want: u8) -> Result<(), NpyError> {
        match self.next()? {
            Tok::Punct(c) if c == want => Ok(()),
            other => Err(self.syntax(format!(
                "expected '{}', found {}",
                char::from(want),
                other.describe()
            ))),
        }
    }

    /// The whole text: `{ key: value, … }` then only whitespace.
    fn dict(mut self) -> Result<Dict, NpyError> {
        const KEYS: [&str; 3] = ["descr", "fortran_order", "shape"];
        self.expect(b'{')?;
        let (mut dtype, mut order, mut shape) = (None, None, None);
        loop {
            let key = match self.next()? {
                Tok::Punct(b'}') => break,
                Tok::Str(k) => k,
                other => {
                    return Err(self.syntax(format!(
                        "expected a quoted key or '}}', found {}",
                        other.describe()
                    )));
                }
            };
            let Some(&name) = KEYS.iter().find(|k| k.as_bytes() == key) else {
                return Err(NpyError::UnknownKey(snippet(key)));
            };
            self.expect(b':')?;
            let seen = match name {
                "descr" => dtype.replace(self.descr()?).is_some(),
                "fortran_order" => order.replace(self.fortran_order()?).is_some(),
                _ => shape.replace(self.shape()?).is_some(),
            };
            if seen {
                return Err(NpyError::DuplicateKey(name));
            }
            match self.next()? {
                Tok::Punct(b',') => {}
                Tok::Punct(b'}') => break,
                other => {
                    return Err(
                        self.syntax(format!("expected ',' or '}}', found {}", other.describe()))
                    );
                }
            }
        }
        match self.next()? {
            Tok::End => {}
            other => {
                return Err(self.syntax(format!(
                    "expected only spaces after the dict, found {}",
                    other.describe()
                )));
            }
        }
        Ok(Dict {
            dtype: dtype.ok_or(NpyError::MissingKey("descr"))?,
            order: order.ok_or(NpyError::MissingKey("fortran_order"))?,
            shape: shape.ok_or(NpyError::MissingKey("shape"))?,
        })
    }

    fn descr(&mut self) -> Result<DType, NpyError> {
        match self.next()? {
            Tok::Str(s) => parse_descr(s)
                .ok_or_else(|| NpyError::UnsupportedDtype(format!("'{}'", snippet(s)))),
            Tok::Punct(b'[') => Err(NpyError::UnsupportedDtype(
                "[…] (a structured dtype: a list of fields)".into(),
            )),
            Tok::Punct(b'(') => Err(NpyError::UnsupportedDtype(
                "(…) (a sub-array dtype: a tuple)".into(),
            )),
            other => Err(NpyError::WrongType {
                key: "descr",
                expected: "a dtype string such as '<f8'",
                found: other.describe(),
            }),
        }
    }

    fn fortran_order(&mut self) -> Result<Order, NpyError> {
        match self.next()? {
            Tok::Word(b"True") => Ok(Order::F),
            Tok::Word(b"False") => Ok(Order::C),
            other => Err(NpyError::WrongType {
                key: "fortran_order",
                expected: "True or False",
                found: other.describe(),
            }),
        }
    }

    fn shape(&mut self) -> Result<Vec<u64>, NpyError> {
        let wrong = |found: String| NpyError::WrongType {
            key: "shape",
            expected: "a tuple of integers",
            found,
        };
        match self.next()? {
            Tok::Punct(b'(') => {}
            Tok::Punct(b'[') => return Err(wrong("a list".into())),
            other => return Err(wrong(other.describe())),
        }
        let mut dims = Vec::new();
        let mut comma = false;
        loop {
            let index = dims.len();
            let dim = match self.next()? {
                Tok::Punct(b')') if dims.is_empty() || comma => return Ok(dims),
                Tok::Int(d) => std::str::from_utf8(d)
                    .ok()
                    .and_then(|t| t.parse::<u64>().ok())
                    .ok_or_else(|| NpyError::BadDim {
                        index,
                        text: snippet(d),
                    })?,
                Tok::Punct(b'-') => {
                    let text = match self.next()? {
                        Tok::Int(d) => format!("-{}", snippet(d)),
                        other => format!("- followed by {}", other.describe()),
                    };
                    return Err(NpyError::BadDim { index, text });
                }
                Tok::Punct(b'(') => return Err(wrong("a nested tuple".into())),
                other => {
                    return Err(self.syntax(format!(
                        "expected a dimension or ')' in the shape, found {}",
                        other.describe()
                    )));
                }
            };
            if index == MAX_NDIM {
                return Err(NpyError::TooManyDims);
            }
            dims.push(dim);
            match self.next()? {
                Tok::Punct(b',') => comma = true,
                Tok::Punct(b')') if comma || dims.len() > 1 => return Ok(dims),
                // `(3)` is the integer 3 in Python, not a tuple.
                Tok::Punct(b')') => {
                    return Err(wrong(format!("({dim}), an integer in parentheses")));
                }
                other => {
                    return Err(self.syntax(format!(
                        "expected ',' or ')' in the shape, found {}",
                        other.describe()
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_switches_to_version_2_when_the_dict_outgrows_16_bits() {
        // 3000 dimensions of 20 digits: a dict of about 66 000 bytes (numpy itself stops at
        // 64 dimensions; ringxfer's senders at 32).
        let shape = vec![u64::MAX; 3000];
        let b = encode_header(DType::native(Scalar::U8), &shape, Order::C);
        assert_eq!(&b[..8], b"\x93NUMPY\x02\x00");
        let declared = u32::from_le_bytes(b[8..12].try_into().unwrap()) as usize;
        assert_eq!(12 + declared, b.len());
        assert_eq!(b.len() % ARRAY_ALIGN, 0);
        assert_eq!(b.last(), Some(&b'\n'));
        // Beyond what a reader accepts, which it says before reading the rest.
        assert_eq!(
            header_len_from_prefix(&b[..12]),
            Err(NpyError::HeaderTooLong {
                header_len: b.len() as u64,
                limit: MAX_HEADER_LEN
            })
        );
        // 32 dimensions stay version 1.0.
        let b = encode_header(DType::native(Scalar::U8), &[u64::MAX; 32], Order::F);
        assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
    }
}
