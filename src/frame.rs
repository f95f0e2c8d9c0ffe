//! The framed-array codec: header and trailer of `docs/PROTOCOL.md`, version 1.
//!
//! Pure functions over byte slices, no I/O: [`Header::encode`], [`Header::decode`] (in two
//! steps: [`decode_prefix`] on the fixed 32 bytes says how long the header is, then the whole
//! header is decoded and checked) and the 8-byte trailer. Every rejection is a distinct
//! [`FrameError`]; nothing here allocates more than `8 × ndim ≤ 256` bytes.

use crate::dtype::DType;

/// `RGXF`: first four bytes of every framed message.
pub const MAGIC: [u8; 4] = *b"RGXF";
/// `RGXE`: last four bytes of every framed message (the trailer's end marker).
pub const END_MAGIC: [u8; 4] = *b"RGXE";
/// The only version this crate speaks.
pub const VERSION: u16 = 1;
/// Bytes of the fixed part of the header (before the shape).
pub const PREFIX_LEN: usize = 32;
/// Bytes of the trailer.
pub const TRAILER_LEN: usize = 8;
/// Most dimensions a header may carry (numpy 1.x `NPY_MAXDIMS`).
pub const MAX_NDIM: usize = 32;
/// Flag bit 0: the trailer carries the payload's CRC-32.
pub const FLAG_PAYLOAD_CRC32: u16 = 1;
/// Default receiver limit on `payload_len`: 8 GiB (2^33 bytes).
pub const DEFAULT_MAX_PAYLOAD_BYTES: u64 = 8 << 30;

/// Memory order of the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Order {
    /// Row-major (numpy `order='C'`), the last index varies fastest.
    #[default]
    C,
    /// Column-major (numpy `order='F'`), the first index varies fastest.
    F,
}

impl Order {
    fn byte(self) -> u8 {
        match self {
            Order::C => b'C',
            Order::F => b'F',
        }
    }
}

impl std::fmt::Display for Order {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Order::C => "C",
            Order::F => "F",
        })
    }
}

impl std::str::FromStr for Order {
    type Err = crate::dtype::UnknownName;
    fn from_str(s: &str) -> Result<Order, Self::Err> {
        match s {
            "C" | "c" => Ok(Order::C),
            "F" | "f" => Ok(Order::F),
            _ => Err(crate::dtype::UnknownName(format!(
                "order {s:?}: expected C or F"
            ))),
        }
    }
}

/// The stream format of an array on the wire ([`crate::Engine::send_view`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WireFormat {
    /// ringxfer's framed message (`docs/PROTOCOL.md`): header, payload, and a trailer with the
    /// payload's CRC-32, which the receiver checks.
    #[default]
    Rgxf,
    /// numpy's `.npy` format ([`crate::npy`]): what `numpy.save(sock.makefile('wb'), a)`
    /// writes, so `numpy.load(sock.makefile('rb'))` reads it with no ringxfer code. **No
    /// checksum travels**: corrupted payload bytes go undetected.
    Npy,
}

impl WireFormat {
    /// The format a stream starting with byte `first` is in: `R` (of `RGXF`) or `\x93` (of
    /// `\x93NUMPY`); `None` for any other byte. Lets a receiver tell the two apart from the
    /// first byte, then check the rest of the magic: [`MAGIC`] (the crate-internal
    /// `frame::check_magic`, which every framed receive call runs) or
    /// [`crate::npy::check_magic`].
    pub fn of_first_byte(first: u8) -> Option<WireFormat> {
        match first {
            b if b == MAGIC[0] => Some(WireFormat::Rgxf),
            // The first byte of numpy's magic `\x93NUMPY` (`crate::npy::MAGIC`).
            0x93 => Some(WireFormat::Npy),
            _ => None,
        }
    }
}

impl std::str::FromStr for WireFormat {
    type Err = crate::dtype::UnknownName;
    fn from_str(s: &str) -> Result<WireFormat, crate::dtype::UnknownName> {
        match s.trim().to_ascii_lowercase().as_str() {
            "rgxf" => Ok(WireFormat::Rgxf),
            "npy" => Ok(WireFormat::Npy),
            other => Err(crate::dtype::UnknownName(format!(
                "unknown wire format {other:?} (expected rgxf or npy)"
            ))),
        }
    }
}

impl std::fmt::Display for WireFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WireFormat::Rgxf => "rgxf",
            WireFormat::Npy => "npy",
        })
    }
}

/// Why a framed message was rejected. See `docs/PROTOCOL.md`, "What a receiver must reject".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The message does not start with `RGXF`. Carries the bytes received up to the first
    /// one that differs (1 to 4 bytes): a receiver rejects a peer as soon as a byte is wrong,
    /// without waiting for the rest of the 32-byte prefix (`check_magic`).
    #[error("bad magic b\"{}\" (expected b\"RGXF\")", .0.escape_ascii())]
    BadMagic(Vec<u8>),
    /// A striped message's stripe prefix (`RGXS`, docs/PROTOCOL.md "Striped arrays") is
    /// malformed or disagrees with the other streams (magic, version, checksum, array id,
    /// stream count, index, geometry); the string says which.
    #[error("bad stripe prefix: {0}")]
    BadStripe(String),
    /// The version field is not 1.
    #[error("unsupported frame version {0} (this build speaks 1)")]
    UnsupportedVersion(u16),
    /// `header_len` does not match `40 + 8 * ndim`.
    #[error("header_len {header_len} does not match ndim {ndim}")]
    BadHeaderLen {
        /// The declared header length.
        header_len: u16,
        /// The declared ndim.
        ndim: u8,
    },
    /// More than [`MAX_NDIM`] dimensions.
    #[error("ndim {0} exceeds the limit of 32")]
    TooManyDims(u8),
    /// The dtype field is not a canonical numpy `dtype.str` ringxfer knows. Carries the
    /// field's bytes with the trailing NUL padding removed, escaped as Rust's
    /// [`u8::escape_ascii`] does (`<f8\x00abc` for `<f8`, a NUL, then `abc`), so bytes
    /// after a NUL or outside ASCII are shown, never hidden.
    #[error("unknown dtype \"{0}\"")]
    UnknownDtype(String),
    /// The order byte is not `C` or `F`.
    #[error("bad order byte {0:#04x} (expected 'C' or 'F')")]
    BadOrder(u8),
    /// Unknown flag bits, a non-zero `reserved` field or a non-zero `pad` (the 4 bytes after
    /// the header CRC). The message names the field(s) at fault.
    #[error("{}", unsupported_text(*flags, *reserved, *pad))]
    UnsupportedFlags {
        /// The flags field.
        flags: u16,
        /// The reserved field.
        reserved: u32,
        /// The pad field after the header CRC.
        pad: u32,
    },
    /// The header's CRC-32 does not match its bytes.
    #[error("header checksum mismatch: header says {expected:08x}, bytes give {actual:08x}")]
    HeaderChecksum {
        /// CRC carried in the header.
        expected: u32,
        /// CRC computed over the received header bytes.
        actual: u32,
    },
    /// `product(shape) * itemsize` does not fit in 64 bits.
    #[error("shape {shape:?} x itemsize {itemsize} overflows 64 bits")]
    ShapeOverflow {
        /// The shape.
        shape: Vec<u64>,
        /// Bytes per element.
        itemsize: usize,
    },
    /// `payload_len` differs from `product(shape) * itemsize`.
    #[error("payload_len {payload_len} != product(shape) x itemsize = {computed}")]
    LengthMismatch {
        /// Declared payload bytes.
        payload_len: u64,
        /// Bytes the shape and dtype imply.
        computed: u64,
    },
    /// `payload_len` exceeds the receiver's limit; nothing was allocated.
    #[error("payload of {payload_len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Declared payload bytes.
        payload_len: u64,
        /// The receiver's `max_payload_bytes`.
        limit: u64,
    },
    /// The trailer's end marker is not `RGXE`: the stream is out of sync.
    #[error("bad trailer {0:02x?} (expected \"RGXE\"): stream out of sync")]
    BadTrailer([u8; 4]),
    /// The payload's CRC-32 does not match the trailer.
    #[error(
        "payload checksum mismatch: sender says {expected:08x}, received bytes give {actual:08x}"
    )]
    PayloadChecksum {
        /// CRC carried in the trailer.
        expected: u32,
        /// CRC of the received payload.
        actual: u32,
    },
    /// A `.npy` stream's header was rejected ([`crate::npy`]; numpy's format carries no
    /// checksum and no trailer).
    #[error("{0}")]
    Npy(#[from] NpyError),
    /// A typed receive found another dtype on the wire.
    #[error("dtype mismatch: the message carries {wire}, the caller asked for {wanted}")]
    DtypeMismatch {
        /// numpy string of the dtype on the wire.
        wire: String,
        /// numpy string of the dtype asked for.
        wanted: String,
    },
    /// The caller's slice length does not match the shape.
    #[error("shape {shape:?} needs {needed} elements, the slice has {len}")]
    ShapeMismatch {
        /// The shape.
        shape: Vec<u64>,
        /// product(shape).
        needed: u64,
        /// Elements in the slice.
        len: u64,
    },
}

/// The words of [`FrameError::UnsupportedFlags`]: each field at fault.
fn unsupported_text(flags: u16, reserved: u32, pad: u32) -> String {
    let mut parts = Vec::new();
    let unknown = flags & !FLAG_PAYLOAD_CRC32;
    if unknown != 0 {
        parts.push(format!(
            "unsupported flag bits {unknown:#06x} in flags {flags:#06x} (this build knows \
             {FLAG_PAYLOAD_CRC32:#06x})"
        ));
    }
    if reserved != 0 {
        parts.push(format!("non-zero reserved field {reserved:#010x}"));
    }
    if pad != 0 {
        parts.push(format!("non-zero pad {pad:#010x} after the header CRC"));
    }
    if parts.is_empty() {
        parts.push(format!(
            "flags {flags:#06x}, reserved 0, pad 0 are supported"
        ));
    }
    parts.join("; ")
}

/// Checks the first bytes of a message against [`MAGIC`] as they arrive: `start` is what has
/// been received so far (any length; only the first 4 bytes matter). `Ok` while every byte
/// received matches, so a receiver can reject a stranger (an HTTP request, random bytes) at
/// its first wrong byte instead of waiting for 32.
pub fn check_magic(start: &[u8]) -> Result<(), FrameError> {
    match magic_mismatch(start, &MAGIC) {
        None => Ok(()),
        Some(bad) => Err(FrameError::BadMagic(bad.to_vec())),
    }
}

/// The bytes of `start` up to and including the first one that differs from `magic` (only
/// the first `magic.len()` bytes are looked at), or `None` while all of them match.
pub(crate) fn magic_mismatch<'a>(start: &'a [u8], magic: &[u8]) -> Option<&'a [u8]> {
    let n = start.len().min(magic.len());
    let i = start[..n].iter().zip(magic).position(|(a, b)| a != b)?;
    Some(&start[..=i])
}

impl FrameError {
    /// The error a receive reports for a rejected `.npy` header: [`FrameError::Npy`], except a
    /// payload over the receiver's limit, which is [`FrameError::TooLarge`] as for RGXF (one
    /// variant, `kind` `"too_large"`, for one rule whatever the format).
    pub fn of_npy(e: NpyError) -> FrameError {
        match e {
            NpyError::TooLarge { payload_len, limit } => {
                FrameError::TooLarge { payload_len, limit }
            }
            e => FrameError::Npy(e),
        }
    }

    /// The variant's stable snake-case name (`"bad_magic"`, `"too_large"`, …), as
    /// `ringxfer serve --json` prints it in `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            FrameError::BadMagic(_) => "bad_magic",
            FrameError::BadStripe(_) => "bad_stripe",
            FrameError::UnsupportedVersion(_) => "unsupported_version",
            FrameError::BadHeaderLen { .. } => "bad_header_len",
            FrameError::TooManyDims(_) => "too_many_dims",
            FrameError::UnknownDtype(_) => "unknown_dtype",
            FrameError::BadOrder(_) => "bad_order",
            FrameError::UnsupportedFlags { .. } => "unsupported_flags",
            FrameError::HeaderChecksum { .. } => "header_checksum",
            FrameError::ShapeOverflow { .. } => "shape_overflow",
            FrameError::LengthMismatch { .. } => "length_mismatch",
            FrameError::TooLarge { .. } => "too_large",
            FrameError::BadTrailer(_) => "bad_trailer",
            FrameError::PayloadChecksum { .. } => "payload_checksum",
            FrameError::Npy(e) => e.kind(),
            FrameError::DtypeMismatch { .. } => "dtype_mismatch",
            FrameError::ShapeMismatch { .. } => "shape_mismatch",
        }
    }
}

/// A decoded or to-be-sent header.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Header {
    /// Element type and byte order.
    pub dtype: DType,
    /// Memory order of the payload.
    pub order: Order,
    /// Dimensions (elements), numpy `a.shape`.
    pub shape: Vec<u64>,
    /// Payload bytes.
    pub payload_len: u64,
    /// Flag bits (bit 0 `PAYLOAD_CRC32`: the trailer carries the payload's CRC-32).
    pub flags: u16,
}

/// What the fixed 32-byte prefix says before the shape is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Prefix {
    /// Total header bytes (`40 + 8 * ndim`).
    pub header_len: usize,
    /// Number of dimensions.
    pub ndim: usize,
    /// Declared payload bytes (not yet checked against the shape).
    pub payload_len: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// `product(shape) * itemsize` in u64, or `None` on overflow.
///
/// numpy's rule: the product of the *non-zero* dimensions times the item size must fit, so
/// `[0, 2^62, 4]` and `[2^62, 4, 0]` are both rejected whatever the position of the zero
/// (numpy: "array is too big"), and any shape with a zero dimension then holds 0 bytes.
pub fn payload_bytes(shape: &[u64], itemsize: usize) -> Option<u64> {
    let bytes = shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(itemsize as u64, |acc, &d| acc.checked_mul(d))?;
    Some(if shape.contains(&0) { 0 } else { bytes })
}

/// Header length for `ndim` dimensions.
pub fn header_len(ndim: usize) -> usize {
    PREFIX_LEN + 8 * ndim + 8
}

/// Checks the fixed prefix (magic, version, ndim, header_len, payload limit) and says how
/// many header bytes to read in total. Rejects an oversized payload here, before the caller
/// reads or allocates anything more.
pub fn decode_prefix(b: &[u8; PREFIX_LEN], max_payload_bytes: u64) -> Result<Prefix, FrameError> {
    check_magic(b)?;
    let version = u16_at(b, 4);
    if version != VERSION {
        return Err(FrameError::UnsupportedVersion(version));
    }
    let declared = u16_at(b, 6);
    let ndim = b[17];
    if usize::from(ndim) > MAX_NDIM {
        return Err(FrameError::TooManyDims(ndim));
    }
    if usize::from(declared) != header_len(ndim.into()) {
        return Err(FrameError::BadHeaderLen {
            header_len: declared,
            ndim,
        });
    }
    let payload_len = u64_at(b, 24);
    if payload_len > max_payload_bytes {
        return Err(FrameError::TooLarge {
            payload_len,
            limit: max_payload_bytes,
        });
    }
    Ok(Prefix {
        header_len: declared.into(),
        ndim: ndim.into(),
        payload_len,
    })
}

impl Header {
    /// A header for an array of `dtype` with `shape` in `order`, payload CRC flag set.
    pub fn new(dtype: DType, shape: &[u64], order: Order) -> Result<Header, FrameError> {
        if shape.len() > MAX_NDIM {
            return Err(FrameError::TooManyDims(shape.len().min(255) as u8));
        }
        let payload_len =
            payload_bytes(shape, dtype.itemsize()).ok_or_else(|| FrameError::ShapeOverflow {
                shape: shape.to_vec(),
                itemsize: dtype.itemsize(),
            })?;
        Ok(Header {
            dtype,
            order,
            shape: shape.to_vec(),
            payload_len,
            flags: FLAG_PAYLOAD_CRC32,
        })
    }

    /// Encoded length in bytes (`40 + 8 * ndim`).
    pub fn encoded_len(&self) -> usize {
        header_len(self.shape.len())
    }

    /// Appends the encoded header to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(self.encoded_len() as u16).to_le_bytes());
        let mut dt = [0u8; 8];
        let s = self.dtype.to_string();
        dt[..s.len()].copy_from_slice(s.as_bytes());
        out.extend_from_slice(&dt);
        out.push(self.order.byte());
        out.push(self.shape.len() as u8);
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&self.payload_len.to_le_bytes());
        for d in &self.shape {
            out.extend_from_slice(&d.to_le_bytes());
        }
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
    }

    /// The encoded header.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut v);
        v
    }

    /// Decodes and checks a whole header (`b.len()` must be the `header_len` announced by
    /// [`decode_prefix`]; a shorter slice is `BadHeaderLen`).
    pub fn decode(b: &[u8], max_payload_bytes: u64) -> Result<Header, FrameError> {
        let Some(prefix_bytes) = b.first_chunk::<PREFIX_LEN>() else {
            return Err(FrameError::BadHeaderLen {
                header_len: b.len().min(u16::MAX.into()) as u16,
                ndim: 0,
            });
        };
        let prefix = decode_prefix(prefix_bytes, max_payload_bytes)?;
        if b.len() != prefix.header_len {
            return Err(FrameError::BadHeaderLen {
                header_len: b.len().min(u16::MAX.into()) as u16,
                ndim: prefix.ndim as u8,
            });
        }
        let crc_at = PREFIX_LEN + 8 * prefix.ndim;
        let expected = u32_at(b, crc_at);
        let actual = crc32fast::hash(&b[..crc_at]);
        if expected != actual {
            return Err(FrameError::HeaderChecksum { expected, actual });
        }
        let flags = u16_at(b, 18);
        let reserved = u32_at(b, 20);
        let pad = u32_at(b, crc_at + 4);
        if flags & !FLAG_PAYLOAD_CRC32 != 0 || reserved != 0 || pad != 0 {
            return Err(FrameError::UnsupportedFlags {
                flags,
                reserved,
                pad,
            });
        }
        let raw = &b[8..16];
        let end = raw.iter().position(|&c| c == 0).unwrap_or(8);
        // Only numpy's canonical `dtype.str` is accepted: an explicit byte order (`<`, `>`, or
        // `|` for one-byte types). `f8` or `=f8` would mean "the receiver's order" (C04).
        let dtype = std::str::from_utf8(&raw[..end])
            .ok()
            .filter(|_| raw[end..].iter().all(|&c| c == 0))
            .and_then(|text| text.parse::<DType>().ok().filter(|d| d.to_string() == text));
        let Some(dtype) = dtype else {
            // The whole field up to its NUL padding, escaped: junk after a NUL is shown.
            let used = raw.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
            return Err(FrameError::UnknownDtype(
                raw[..used].escape_ascii().to_string(),
            ));
        };
        let order = match b[16] {
            b'C' => Order::C,
            b'F' => Order::F,
            other => return Err(FrameError::BadOrder(other)),
        };
        let shape: Vec<u64> = (0..prefix.ndim)
            .map(|i| u64_at(b, PREFIX_LEN + 8 * i))
            .collect();
        let computed =
            payload_bytes(&shape, dtype.itemsize()).ok_or_else(|| FrameError::ShapeOverflow {
                shape: shape.clone(),
                itemsize: dtype.itemsize(),
            })?;
        if computed != prefix.payload_len {
            return Err(FrameError::LengthMismatch {
                payload_len: prefix.payload_len,
                computed,
            });
        }
        Ok(Header {
            dtype,
            order,
            shape,
            payload_len: prefix.payload_len,
            flags,
        })
    }
}

/// The trailer for a payload whose CRC-32 is `crc` (0 when the flag is clear).
pub fn encode_trailer(crc: u32) -> [u8; TRAILER_LEN] {
    let mut t = [0u8; TRAILER_LEN];
    t[..4].copy_from_slice(&crc.to_le_bytes());
    t[4..].copy_from_slice(&END_MAGIC);
    t
}

/// Checks the end marker and returns the carried payload CRC.
pub fn decode_trailer(t: &[u8; TRAILER_LEN]) -> Result<u32, FrameError> {
    let end: [u8; 4] = t[4..].try_into().expect("4 bytes");
    if end != END_MAGIC {
        return Err(FrameError::BadTrailer(end));
    }
    Ok(u32_at(t, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f8() -> DType {
        "<f8".parse().unwrap()
    }

    #[test]
    fn round_trip_and_python_layout() {
        let h = Header::new(f8(), &[20, 10, 5], Order::F).unwrap();
        let b = h.encode();
        assert_eq!(b.len(), 40 + 24);
        assert_eq!(&b[0..4], b"RGXF");
        assert_eq!(&b[8..16], b"<f8\0\0\0\0\0");
        assert_eq!(b[16], b'F');
        assert_eq!(u64_at(&b, 24), 20 * 10 * 5 * 8);
        assert_eq!(Header::decode(&b, u64::MAX).unwrap(), h);
    }

    #[test]
    fn float16_header_round_trip() {
        for (text, shape) in [("<f2", &[3, 4][..]), (">f2", &[5][..])] {
            let dt: DType = text.parse().unwrap();
            let h = Header::new(dt, shape, Order::C).unwrap();
            let b = h.encode();
            assert_eq!(&b[8..16], format!("{text}\0\0\0\0\0").as_bytes());
            assert_eq!(h.payload_len, shape.iter().product::<u64>() * 2);
            assert_eq!(Header::decode(&b, u64::MAX).unwrap(), h);
        }
    }

    #[test]
    fn zero_d_and_empty() {
        for shape in [&[][..], &[0][..], &[3, 0, 2][..]] {
            let h = Header::new(f8(), shape, Order::C).unwrap();
            assert_eq!(
                Header::decode(&h.encode(), 0).ok().map(|d| d.payload_len),
                if shape.is_empty() { None } else { Some(0) }
            );
        }
        let h = Header::new(f8(), &[], Order::C).unwrap();
        assert_eq!(h.payload_len, 8);
        assert_eq!(Header::decode(&h.encode(), 8).unwrap(), h);
    }

    #[test]
    fn dtype_needs_explicit_byte_order_and_empty_shapes_never_overflow() {
        let mut b = Header::new(f8(), &[2], Order::C).unwrap().encode();
        b[8..16].copy_from_slice(b"f8\0\0\0\0\0\0");
        let crc = crc32fast::hash(&b[..40]);
        b[40..44].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            Header::decode(&b, u64::MAX),
            Err(FrameError::UnknownDtype("f8".into()))
        );
        assert_eq!(payload_bytes(&[3, 0], 8), Some(0));
        assert_eq!(payload_bytes(&[0, 1 << 62, 4], 8), None);
        assert_eq!(payload_bytes(&[1 << 62, 4, 0], 8), None);
        assert_eq!(payload_bytes(&[u64::MAX, 2], 8), None);
    }

    #[test]
    fn rejections_are_distinct() {
        let good = Header::new(f8(), &[4, 4], Order::C).unwrap().encode();
        let mut b = good.clone();
        b[0] = b'X';
        assert!(matches!(
            Header::decode(&b, u64::MAX),
            Err(FrameError::BadMagic(_))
        ));
        let mut b = good.clone();
        b[4] = 2;
        assert_eq!(
            Header::decode(&b, u64::MAX),
            Err(FrameError::UnsupportedVersion(2))
        );
        let mut b = good.clone();
        b[17] = 33;
        assert_eq!(
            Header::decode(&b, u64::MAX),
            Err(FrameError::TooManyDims(33))
        );
        let mut b = good.clone();
        b[33] ^= 1; // shape changed, CRC not
        assert!(matches!(
            Header::decode(&b, u64::MAX),
            Err(FrameError::HeaderChecksum { .. })
        ));
        assert_eq!(
            Header::decode(&good, 100),
            Err(FrameError::TooLarge {
                payload_len: 128,
                limit: 100
            })
        );
        assert!(matches!(
            Header::new(f8(), &[u64::MAX, 2], Order::C),
            Err(FrameError::ShapeOverflow { .. })
        ));
        assert!(matches!(
            decode_trailer(b"\0\0\0\0RGXX"),
            Err(FrameError::BadTrailer(_))
        ));
        assert_eq!(decode_trailer(&encode_trailer(0xdeadbeef)), Ok(0xdeadbeef));
    }

    /// Issue 8, item 10: messages name the field at fault and show the bytes as they are.
    #[test]
    fn messages_name_the_field_and_show_the_bytes() {
        let good = Header::new(f8(), &[4, 4], Order::C).unwrap().encode();
        let recrc = |b: &mut Vec<u8>| {
            let crc = crc32fast::hash(&b[..48]);
            b[48..52].copy_from_slice(&crc.to_le_bytes());
        };
        // Junk after the NUL padding of the dtype field is shown, escaped.
        let mut b = good.clone();
        b[8..16].copy_from_slice(b"<f8\0junk");
        recrc(&mut b);
        let e = Header::decode(&b, u64::MAX).unwrap_err();
        assert_eq!(e, FrameError::UnknownDtype(r"<f8\x00junk".into()));
        assert_eq!(e.to_string(), r#"unknown dtype "<f8\x00junk""#);
        // A non-zero pad is named as the pad, not as flags.
        let mut b = good.clone();
        b[52..56].copy_from_slice(&1u32.to_le_bytes());
        let e = Header::decode(&b, u64::MAX).unwrap_err();
        assert_eq!(
            e,
            FrameError::UnsupportedFlags {
                flags: 1,
                reserved: 0,
                pad: 1
            }
        );
        assert_eq!(
            e.to_string(),
            "non-zero pad 0x00000001 after the header CRC"
        );
        let e = FrameError::UnsupportedFlags {
            flags: 3,
            reserved: 7,
            pad: 0,
        };
        assert_eq!(
            e.to_string(),
            "unsupported flag bits 0x0002 in flags 0x0003 (this build knows 0x0001); \
             non-zero reserved field 0x00000007"
        );
        // The magic is checked byte by byte.
        assert_eq!(check_magic(b""), Ok(()));
        assert_eq!(check_magic(b"RG"), Ok(()));
        assert_eq!(check_magic(b"RGXF\xff"), Ok(()));
        assert_eq!(
            check_magic(b"GET /"),
            Err(FrameError::BadMagic(b"G".to_vec()))
        );
        assert_eq!(
            check_magic(b"RGXE"),
            Err(FrameError::BadMagic(b"RGXE".to_vec()))
        );
        assert_eq!(
            FrameError::BadMagic(b"RG\x00".to_vec()).to_string(),
            r#"bad magic b"RG\x00" (expected b"RGXF")"#
        );
    }
}

/// Why a `.npy` header was rejected ([`crate::npy`]). Defined beside [`FrameError`], which
/// carries it, so that the frame codec does not depend on the `.npy` codec (which depends on
/// the frame codec). Carried as [`FrameError::Npy`] when it comes from
/// a receive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NpyError {
    /// The stream does not start with `\x93NUMPY`; carries the bytes received up to the first
    /// one that differs (1 to 6 bytes).
    #[error("bad .npy magic b\"{}\" (expected b\"\\x93NUMPY\")", .0.escape_ascii())]
    BadMagic(Vec<u8>),
    /// A version other than 1.0, 2.0 or 3.0.
    #[error("unsupported .npy version {major}.{minor} (this build reads 1.0, 2.0 and 3.0)")]
    UnsupportedVersion {
        /// Byte 6.
        major: u8,
        /// Byte 7.
        minor: u8,
    },
    /// Fewer bytes than the step needs: the prefix (10 or 12 bytes) for
    /// [`header_len_from_prefix`](crate::npy::header_len_from_prefix), or exactly the announced
    /// header for [`parse_header`](crate::npy::parse_header).
    #[error(".npy header needs {needed} bytes, got {got}")]
    Truncated {
        /// Bytes the step needs.
        needed: u64,
        /// Bytes given.
        got: u64,
    },
    /// The whole header (prefix plus `HEADER_LEN`) would exceed [`MAX_HEADER_LEN`](crate::npy::MAX_HEADER_LEN); nothing
    /// more was read.
    #[error(".npy header of {header_len} bytes exceeds the limit of {limit} bytes")]
    HeaderTooLong {
        /// Declared bytes of the whole header.
        header_len: u64,
        /// [`MAX_HEADER_LEN`](crate::npy::MAX_HEADER_LEN).
        limit: usize,
    },
    /// The data would start at byte `header_len`, not a multiple of [`MIN_ALIGN`](crate::npy::MIN_ALIGN) (16): the
    /// header is not padded as every numpy writes it (a `HEADER_LEN` of 0 is one such).
    #[error(".npy data would start at byte {header_len}, not a multiple of 16")]
    Misaligned {
        /// Declared bytes of the whole header.
        header_len: u64,
    },
    /// The header's last byte is not `\n`.
    #[error(".npy header does not end with a newline (last byte {0:#04x})")]
    NotTerminated(u8),
    /// The dict text does not follow the grammar; `offset` is a byte offset into the dict
    /// text (after the prefix).
    #[error(".npy header syntax error at byte {offset} of the dict: {message}")]
    Syntax {
        /// Byte offset into the dict text.
        offset: usize,
        /// What was expected and what was found.
        message: String,
    },
    /// A key other than `descr`, `fortran_order`, `shape` (escaped, at most 32 bytes shown).
    #[error(".npy header has unknown key '{0}'")]
    UnknownKey(String),
    /// A key appears twice.
    #[error(".npy header has key '{0}' twice")]
    DuplicateKey(&'static str),
    /// A required key is missing.
    #[error(".npy header has no '{0}' key")]
    MissingKey(&'static str),
    /// A key's value has the wrong type (`fortran_order: 1`, `shape: [2]`, `shape: (3)`,
    /// nested tuples, …).
    #[error(".npy header key '{key}' must be {expected}, found {found}")]
    WrongType {
        /// The key.
        key: &'static str,
        /// What the value must be.
        expected: &'static str,
        /// What it is.
        found: String,
    },
    /// `descr` names a dtype ringxfer does not carry: object (`O`), void (`V8`), string or
    /// unicode (`S8`, `<U8`), structured (a list of fields), sub-array (a tuple), `<f16`, ….
    /// Escaped, at most 32 bytes shown.
    #[error(".npy header descr {0} is not a dtype ringxfer supports")]
    UnsupportedDtype(String),
    /// A dimension is negative or does not fit 64 bits.
    #[error(".npy header shape[{index}] = {text}: not a non-negative integer below 2^64")]
    BadDim {
        /// Position in the shape.
        index: usize,
        /// The dimension as written (escaped, at most 32 bytes shown).
        text: String,
    },
    /// More than [`MAX_NDIM`] (32) dimensions; counting stops at the first one too many.
    #[error(".npy header shape has more than 32 dimensions")]
    TooManyDims,
    /// `product(shape) * itemsize` does not fit 64 bits.
    #[error(".npy header shape {shape:?} x itemsize {itemsize} overflows 64 bits")]
    ShapeOverflow {
        /// The shape.
        shape: Vec<u64>,
        /// Bytes per element.
        itemsize: usize,
    },
    /// A `.npy` file's length is not its header plus its data
    /// ([`read_file_header`](crate::npy::read_file_header)): cut
    /// short, or with bytes after the array.
    #[error(
        ".npy file of {file_len} bytes does not hold its {header_len}-byte header plus \
         {payload_len} bytes of data"
    )]
    FileLength {
        /// Bytes in the file.
        file_len: u64,
        /// Bytes of the header.
        header_len: usize,
        /// Bytes of data the header describes.
        payload_len: u64,
    },
    /// The data (`product(shape) * itemsize` bytes) exceeds the caller's limit; nothing was
    /// allocated.
    #[error(".npy data of {payload_len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Bytes of data the header describes.
        payload_len: u64,
        /// The caller's limit.
        limit: u64,
    },
}

impl NpyError {
    /// The variant's stable snake-case name, prefixed `npy_` (`"npy_bad_magic"`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            NpyError::BadMagic(_) => "npy_bad_magic",
            NpyError::UnsupportedVersion { .. } => "npy_unsupported_version",
            NpyError::Truncated { .. } => "npy_truncated",
            NpyError::HeaderTooLong { .. } => "npy_header_too_long",
            NpyError::Misaligned { .. } => "npy_misaligned",
            NpyError::NotTerminated(_) => "npy_not_terminated",
            NpyError::Syntax { .. } => "npy_syntax",
            NpyError::UnknownKey(_) => "npy_unknown_key",
            NpyError::DuplicateKey(_) => "npy_duplicate_key",
            NpyError::MissingKey(_) => "npy_missing_key",
            NpyError::WrongType { .. } => "npy_wrong_type",
            NpyError::UnsupportedDtype(_) => "npy_unsupported_dtype",
            NpyError::BadDim { .. } => "npy_bad_dim",
            NpyError::TooManyDims => "npy_too_many_dims",
            NpyError::ShapeOverflow { .. } => "npy_shape_overflow",
            NpyError::FileLength { .. } => "npy_file_length",
            NpyError::TooLarge { .. } => "npy_too_large",
        }
    }
}
