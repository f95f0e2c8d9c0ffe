//! numpy dtypes of the arrays ringxfer moves, and the `arange` test pattern.
//!
//! A [`DType`] is a [`Scalar`] type plus a [`ByteOrder`], written the way numpy's `dtype.str`
//! writes it: `<f8` (little-endian float64), `>i4` (big-endian int32), `|u1` (one byte: no
//! byte order). [`DType::from_str`](std::str::FromStr) also accepts numpy's short forms
//! (`f8`, `=i4`, `!u2`), names (`float64`, `int32`, `uint8`, `double`, …) and one-letter
//! codes (`d`, `f`, `q`, `B`, `D`, `?`, …); forms without an explicit order mean the native
//! order, as in numpy.
//!
//! Complex types (`c8` = numpy `complex64`, `c16` = `complex128`) are two floats, real then
//! imaginary, and their byte order applies to **each component separately**: `>c16` is two
//! big-endian `f8`s, not one byte-reversed 16-byte number. [`DType::component_size`] is the
//! unit a byte swap works on, and [`swap_byte_order`] swaps per component.
//!
//! The **arange pattern** is what `np.arange(n).astype(dtype)` holds: element `i` equals `i`
//! converted to the dtype (integers wrap modulo 2^bits like numpy's C casts, so a `u1` array
//! counts 0‥255 and starts again; floats round to nearest-even, so they are exact up to 2^53
//! for `f8`, 2^24 for `f4` and 2048 for `f2`, and `f2` is infinite from 65520 on; complex
//! element `i` is `i + 0j`, the real part rounded as for the float of its component size; `bool` element `i` is `i != 0`), stored in the dtype's byte
//! order. [`fill_arange`] writes it and [`verify_arange`] checks it, both at memory speed:
//! elements are built in a small typed stack buffer and copied or compared as bytes, with no
//! allocation.
//!
//! ```
//! use ringxfer::dtype::{DType, fill_arange, verify_arange};
//!
//! let dt: DType = "float32".parse()?;
//! assert_eq!(dt.to_string(), "<f4"); // on a little-endian machine
//! let mut buf = vec![0u8; 10 * dt.itemsize()];
//! fill_arange(dt, &mut buf);
//! assert_eq!(&buf[4..8], &1f32.to_ne_bytes());
//! assert_eq!(verify_arange(dt, &buf), Ok(()));
//! buf[9 * 4] ^= 1;
//! assert_eq!(verify_arange(dt, &buf), Err(9));
//! # Ok::<(), ringxfer::Error>(())
//! ```

use std::fmt;
use std::str::FromStr;

use bytemuck::Pod;
use half::f16;

/// The element type of an array, without byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scalar {
    /// IEEE 754 binary64 (`f8`, numpy `float64`).
    F64,
    /// IEEE 754 binary32 (`f4`, numpy `float32`).
    F32,
    /// IEEE 754 binary16 (`f2`, numpy `float16`, also called `half`); in Rust
    /// [`half::f16`](https://docs.rs/half/2/half/struct.f16.html).
    F16,
    /// Signed 64-bit integer (`i8`, numpy `int64`).
    I64,
    /// Signed 32-bit integer (`i4`, numpy `int32`).
    I32,
    /// Signed 16-bit integer (`i2`, numpy `int16`).
    I16,
    /// Signed 8-bit integer (`i1`, numpy `int8`).
    I8,
    /// Unsigned 64-bit integer (`u8`, numpy `uint64`).
    U64,
    /// Unsigned 32-bit integer (`u4`, numpy `uint32`).
    U32,
    /// Unsigned 16-bit integer (`u2`, numpy `uint16`).
    U16,
    /// Unsigned 8-bit integer (`u1`, numpy `uint8`).
    U8,
    /// Complex of two IEEE 754 binary32, real then imaginary (`c8`, numpy `complex64`: the
    /// bit count is the whole element's, as in numpy).
    C64,
    /// Complex of two IEEE 754 binary64, real then imaginary (`c16`, numpy `complex128`).
    C128,
    /// Boolean, one byte holding 0 or 1 (`b1`, numpy `bool`).
    Bool,
}

impl Scalar {
    /// Size of one element in bytes.
    pub fn itemsize(self) -> usize {
        match self {
            Scalar::C128 => 16,
            Scalar::F64 | Scalar::I64 | Scalar::U64 | Scalar::C64 => 8,
            Scalar::F32 | Scalar::I32 | Scalar::U32 => 4,
            Scalar::F16 | Scalar::I16 | Scalar::U16 => 2,
            Scalar::I8 | Scalar::U8 | Scalar::Bool => 1,
        }
    }

    /// Size in bytes of the unit whose bytes a byte-order conversion reverses: the size of one
    /// component (4 for `c8`, 8 for `c16`, whose real and imaginary parts are swapped
    /// separately), else [`Scalar::itemsize`].
    pub fn component_size(self) -> usize {
        match self {
            Scalar::C64 => 4,
            Scalar::C128 => 8,
            other => other.itemsize(),
        }
    }

    /// numpy's kind character: `'f'`, `'i'`, `'u'`, `'c'` or `'b'`.
    pub fn kind(self) -> char {
        match self {
            Scalar::F64 | Scalar::F32 | Scalar::F16 => 'f',
            Scalar::I64 | Scalar::I32 | Scalar::I16 | Scalar::I8 => 'i',
            Scalar::U64 | Scalar::U32 | Scalar::U16 | Scalar::U8 => 'u',
            Scalar::C64 | Scalar::C128 => 'c',
            Scalar::Bool => 'b',
        }
    }

    /// numpy's name: `"float64"`, `"int32"`, `"uint8"`, ….
    pub fn name(self) -> &'static str {
        match self {
            Scalar::F64 => "float64",
            Scalar::F32 => "float32",
            Scalar::F16 => "float16",
            Scalar::I64 => "int64",
            Scalar::I32 => "int32",
            Scalar::I16 => "int16",
            Scalar::I8 => "int8",
            Scalar::U64 => "uint64",
            Scalar::U32 => "uint32",
            Scalar::U16 => "uint16",
            Scalar::U8 => "uint8",
            Scalar::C64 => "complex64",
            Scalar::C128 => "complex128",
            Scalar::Bool => "bool",
        }
    }

    /// The scalar of a kind character and size (`('f', 8)` is [`Scalar::F64`]).
    pub(crate) fn from_kind(kind: char, size: usize) -> Option<Scalar> {
        Some(match (kind, size) {
            ('f', 8) => Scalar::F64,
            ('f', 4) => Scalar::F32,
            ('f', 2) => Scalar::F16,
            ('i', 8) => Scalar::I64,
            ('i', 4) => Scalar::I32,
            ('i', 2) => Scalar::I16,
            ('i', 1) => Scalar::I8,
            ('u', 8) => Scalar::U64,
            ('u', 4) => Scalar::U32,
            ('u', 2) => Scalar::U16,
            ('u', 1) => Scalar::U8,
            ('c', 8) => Scalar::C64,
            ('c', 16) => Scalar::C128,
            ('b', 1) => Scalar::Bool,
            _ => return None,
        })
    }

    /// The scalar of a numpy type name or one-letter type code (C types as on x86-64/aarch64
    /// Linux, where `long` is 64 bits).
    fn from_name(name: &str) -> Option<Scalar> {
        Some(match name {
            "float64" | "double" | "float" | "d" => Scalar::F64,
            "float32" | "single" | "f" => Scalar::F32,
            "float16" | "half" | "e" => Scalar::F16,
            "int64" | "int" | "long" | "longlong" | "q" | "l" => Scalar::I64,
            "int32" | "intc" | "i" => Scalar::I32,
            "int16" | "short" | "h" => Scalar::I16,
            "int8" | "byte" | "b" => Scalar::I8,
            "uint64" | "uint" | "ulong" | "ulonglong" | "Q" | "L" => Scalar::U64,
            "uint32" | "uintc" | "I" => Scalar::U32,
            "uint16" | "ushort" | "H" => Scalar::U16,
            "uint8" | "ubyte" | "B" => Scalar::U8,
            "complex64" | "csingle" | "F" => Scalar::C64,
            "complex128" | "cdouble" | "complex" | "D" => Scalar::C128,
            "bool" | "bool_" | "?" => Scalar::Bool,
            _ => return None,
        })
    }
}

/// Byte order of the elements in memory and on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ByteOrder {
    /// Least significant byte first (`<`).
    Little,
    /// Most significant byte first (`>`).
    Big,
}

impl ByteOrder {
    /// The byte order of the machine this runs on.
    pub const NATIVE: ByteOrder = if cfg!(target_endian = "little") {
        ByteOrder::Little
    } else {
        ByteOrder::Big
    };
}

/// A numpy dtype: element type and byte order. Parses and displays like numpy's `dtype.str`.
///
/// One-byte types have no byte order: their order is normalized to the native one, so `>u1`
/// and `<u1` are the same dtype and both display as `|u1`, as in numpy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DType {
    scalar: Scalar,
    order: ByteOrder,
}

impl DType {
    /// `scalar` in byte order `order` (ignored for one-byte types).
    pub fn new(scalar: Scalar, order: ByteOrder) -> DType {
        let order = if scalar.itemsize() == 1 {
            ByteOrder::NATIVE
        } else {
            order
        };
        DType { scalar, order }
    }

    /// `scalar` in the native byte order: what a Rust `&[f64]` etc. holds.
    pub fn native(scalar: Scalar) -> DType {
        DType::new(scalar, ByteOrder::NATIVE)
    }

    /// The element type.
    pub fn scalar(self) -> Scalar {
        self.scalar
    }

    /// The byte order (native for one-byte types).
    pub fn order(self) -> ByteOrder {
        self.order
    }

    /// Size of one element in bytes.
    pub fn itemsize(self) -> usize {
        self.scalar.itemsize()
    }

    /// Size in bytes of the byte-swap unit ([`Scalar::component_size`]): 4 for `c8`, 8 for
    /// `c16`, the item size otherwise.
    pub fn component_size(self) -> usize {
        self.scalar.component_size()
    }

    /// True when the elements are in the machine's byte order.
    pub fn is_native(self) -> bool {
        self.order == ByteOrder::NATIVE
    }
}

impl Default for DType {
    /// `float64` in native order (`<f8` on x86-64), the recipe's array.
    fn default() -> Self {
        DType::native(Scalar::F64)
    }
}

impl fmt::Display for DType {
    /// numpy's `dtype.str`: `<f8`, `>i4`, `|u1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let order = match (self.itemsize(), self.order) {
            (1, _) => '|',
            (_, ByteOrder::Little) => '<',
            (_, ByteOrder::Big) => '>',
        };
        write!(f, "{order}{}{}", self.scalar.kind(), self.itemsize())
    }
}

/// A name `str::parse` does not know: not a dtype ringxfer handles ([`DType`]'s `FromStr`),
/// or not `C`/`F` ([`Order`](crate::Order)'s). The message says what was expected. Converts
/// into [`Error::InvalidInput`](crate::Error::InvalidInput), so `?` works in functions
/// returning [`crate::Result`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnknownName(pub(crate) String);

impl FromStr for DType {
    type Err = UnknownName;

    /// Parses `<f8`, `>i2`, `|u1`, `=f4`, `!u4`, `f8`, `float64`, `uint8`, `d`, ….
    ///
    /// Also `<c16`, `>c8`, `complex128`, `D`, `|b1`, `bool`, `?`, and float16 as `<f2`,
    /// `>f2`, `f2`, `float16`, `half`, `e`.
    ///
    /// # Errors
    /// [`UnknownName`] for anything else (including types ringxfer does not handle,
    /// such as `f16` (numpy `float128`), `c32`, `U8` or `O`).
    fn from_str(s: &str) -> Result<DType, UnknownName> {
        let bad = || {
            UnknownName(format!(
                "unknown dtype {s:?} (expected a numpy type such as <f8, >i4, |u1, <c16, |b1, <f2, f4, float64, uint8)"
            ))
        };
        let t = s.trim();
        let (order, rest) = match t.chars().next() {
            Some('<') => (ByteOrder::Little, &t[1..]),
            Some('>' | '!') => (ByteOrder::Big, &t[1..]),
            Some('=' | '|') => (ByteOrder::NATIVE, &t[1..]),
            _ => (ByteOrder::NATIVE, t),
        };
        let by_code = || {
            let mut chars = rest.chars();
            let kind = chars.next()?;
            let size: usize = chars.as_str().parse().ok()?;
            Scalar::from_kind(kind, size)
        };
        let scalar = by_code()
            .or_else(|| Scalar::from_name(rest))
            .ok_or_else(bad)?;
        Ok(DType::new(scalar, order))
    }
}

/// Writes the arange pattern of `dtype` into `out`: element `i` is `i` converted to the dtype,
/// in its byte order (see the [module docs](self)).
///
/// `out` need not be aligned. When its length is not a multiple of the item size, the last
/// `out.len() % itemsize` bytes are the leading bytes of the next element, so any prefix of
/// a pattern is itself a pattern.
pub fn fill_arange(dtype: DType, out: &mut [u8]) {
    let swap = !dtype.is_native();
    match dtype.scalar {
        Scalar::F64 => fill::<f64>(swap, out),
        Scalar::F32 => fill::<f32>(swap, out),
        Scalar::F16 => fill::<f16>(swap, out),
        Scalar::I64 => fill::<i64>(swap, out),
        Scalar::I32 => fill::<i32>(swap, out),
        Scalar::I16 => fill::<i16>(swap, out),
        Scalar::I8 => fill::<i8>(swap, out),
        Scalar::U64 => fill::<u64>(swap, out),
        Scalar::U32 => fill::<u32>(swap, out),
        Scalar::U16 => fill::<u16>(swap, out),
        Scalar::U8 => fill::<u8>(swap, out),
        Scalar::C64 => fill::<[f32; 2]>(swap, out),
        Scalar::C128 => fill::<[f64; 2]>(swap, out),
        Scalar::Bool => fill::<Bool8>(swap, out),
    }
}

/// Checks that `data` holds the arange pattern of `dtype` (as written by [`fill_arange`]).
///
/// # Errors
/// `Err(i)` with the index of the first element that differs (a trailing partial element
/// counts as element `data.len() / itemsize`).
pub fn verify_arange(dtype: DType, data: &[u8]) -> std::result::Result<(), u64> {
    let swap = !dtype.is_native();
    match dtype.scalar {
        Scalar::F64 => verify::<f64>(swap, data),
        Scalar::F32 => verify::<f32>(swap, data),
        Scalar::F16 => verify::<f16>(swap, data),
        Scalar::I64 => verify::<i64>(swap, data),
        Scalar::I32 => verify::<i32>(swap, data),
        Scalar::I16 => verify::<i16>(swap, data),
        Scalar::I8 => verify::<i8>(swap, data),
        Scalar::U64 => verify::<u64>(swap, data),
        Scalar::U32 => verify::<u32>(swap, data),
        Scalar::U16 => verify::<u16>(swap, data),
        Scalar::U8 => verify::<u8>(swap, data),
        Scalar::C64 => verify::<[f32; 2]>(swap, data),
        Scalar::C128 => verify::<[f64; 2]>(swap, data),
        Scalar::Bool => verify::<Bool8>(swap, data),
    }
}

/// Converts the elements of `data` between `dtype`'s byte order and the other one, in place:
/// reverses the bytes of every [`DType::component_size`] unit, so a complex element's real and
/// imaginary parts are swapped each on its own and stay in place (`>c16` → `<c16` is two `f8`
/// swaps, never one 16-byte reversal). One-byte types are left alone.
///
/// `data` need not be aligned; a trailing partial unit (`data.len()` not a multiple of the
/// component size) is left as it is.
pub fn swap_byte_order(dtype: DType, data: &mut [u8]) {
    match dtype.component_size() {
        8 => swap_units::<u64>(data),
        4 => swap_units::<u32>(data),
        2 => swap_units::<u16>(data),
        _ => {}
    }
}

/// Reverses the bytes of every `size_of::<T>()` unit of `data`.
fn swap_units<T: Pod + SwapBytes>(data: &mut [u8]) {
    let whole = data.len() / size_of::<T>() * size_of::<T>();
    let body = &mut data[..whole];
    match bytemuck::try_cast_slice_mut::<u8, T>(body) {
        Ok(typed) => typed.iter_mut().for_each(|v| *v = v.swap()),
        Err(_) => body
            .chunks_exact_mut(size_of::<T>())
            .for_each(|c| c.reverse()),
    }
}

/// Unsigned integers as byte-swap units.
trait SwapBytes {
    fn swap(self) -> Self;
}

macro_rules! swap_unit {
    ($($t:ty),*) => {$(
        impl SwapBytes for $t {
            #[inline(always)]
            fn swap(self) -> Self {
                self.swap_bytes()
            }
        }
    )*};
}
swap_unit!(u64, u32, u16);

/// A Rust element type with numpy's `int64 -> T` cast.
trait Elem: Pod {
    /// `i` as numpy's `astype` converts an `int64` (wrapping integers, rounding floats).
    fn from_index(i: u64) -> Self;
    /// The value with its bytes reversed.
    fn swapped(self) -> Self;
}

macro_rules! int_elem {
    ($($t:ty),*) => {$(
        impl Elem for $t {
            #[inline(always)]
            fn from_index(i: u64) -> Self {
                // Truncation to the low bits is exactly numpy's C cast.
                i as $t
            }
            #[inline(always)]
            fn swapped(self) -> Self {
                self.swap_bytes()
            }
        }
    )*};
}
int_elem!(i64, i32, i16, i8, u64, u32, u16, u8);

macro_rules! float_elem {
    ($($t:ty),*) => {$(
        impl Elem for $t {
            #[inline(always)]
            fn from_index(i: u64) -> Self {
                // Round to nearest, ties to even: the C conversion numpy uses.
                i as $t
            }
            #[inline(always)]
            fn swapped(self) -> Self {
                <$t>::from_bits(self.to_bits().swap_bytes())
            }
        }
    )*};
}
float_elem!(f64, f32);

impl Elem for f16 {
    #[inline(always)]
    fn from_index(i: u64) -> Self {
        // `i as f64` is exact below 2^53, and every index from 65520 up rounds to infinity
        // either way, so this is one round-to-nearest-even step from `i` to binary16: numpy's
        // `astype(float16)` (65504 is the largest finite value; 2049 rounds to 2048).
        f16::from_f64(i as f64)
    }
    #[inline(always)]
    fn swapped(self) -> Self {
        f16::from_bits(self.to_bits().swap_bytes())
    }
}

/// A complex element `[re, im]`: numpy's cast puts `i` in the real part (rounded as for the
/// component float) and zero in the imaginary part; byte order applies to each part.
macro_rules! complex_elem {
    ($($t:ty),*) => {$(
        impl Elem for [$t; 2] {
            #[inline(always)]
            fn from_index(i: u64) -> Self {
                [<$t as Elem>::from_index(i), 0.0]
            }
            #[inline(always)]
            fn swapped(self) -> Self {
                [self[0].swapped(), self[1].swapped()]
            }
        }
    )*};
}
complex_elem!(f64, f32);

/// numpy `bool`: one byte, 0 or 1.
#[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
#[repr(transparent)]
struct Bool8(u8);

impl Elem for Bool8 {
    #[inline(always)]
    fn from_index(i: u64) -> Self {
        // np.arange(n).astype(bool): only element 0 is False.
        Bool8(u8::from(i != 0))
    }
    #[inline(always)]
    fn swapped(self) -> Self {
        self
    }
}

/// Elements built per round in the stack buffer (16 KiB for 8-byte types).
const STAGE: usize = 2048;

/// Fills `stage` with elements `start, start + 1, …` of the pattern.
#[inline(always)]
fn make<T: Elem>(swap: bool, start: u64, stage: &mut [T]) {
    if swap {
        for (k, s) in stage.iter_mut().enumerate() {
            *s = T::from_index(start + k as u64).swapped();
        }
    } else {
        for (k, s) in stage.iter_mut().enumerate() {
            *s = T::from_index(start + k as u64);
        }
    }
}

fn fill<T: Elem>(swap: bool, out: &mut [u8]) {
    let size = size_of::<T>();
    let whole = out.len() / size * size;
    let (body, tail) = out.split_at_mut(whole);
    // Aligned memory: build the elements in place.
    if let Ok(typed) = bytemuck::try_cast_slice_mut::<u8, T>(body) {
        for (c, chunk) in typed.chunks_mut(STAGE).enumerate() {
            make(swap, (c * STAGE) as u64, chunk);
        }
    } else {
        let mut stage = [T::zeroed(); STAGE];
        for (c, chunk) in body.chunks_mut(STAGE * size).enumerate() {
            let n = chunk.len() / size;
            make(swap, (c * STAGE) as u64, &mut stage[..n]);
            chunk.copy_from_slice(bytemuck::cast_slice(&stage[..n]));
        }
    }
    if !tail.is_empty() {
        let mut next = [T::zeroed()];
        make(swap, (whole / size) as u64, &mut next);
        tail.copy_from_slice(&bytemuck::bytes_of(&next[0])[..tail.len()]);
    }
}

fn verify<T: Elem>(swap: bool, data: &[u8]) -> std::result::Result<(), u64> {
    let size = size_of::<T>();
    let mut stage = [T::zeroed(); STAGE];
    for (c, chunk) in data.chunks(STAGE * size).enumerate() {
        let n = chunk.len().div_ceil(size);
        let start = (c * STAGE) as u64;
        make(swap, start, &mut stage[..n]);
        let want = &bytemuck::cast_slice::<T, u8>(&stage[..n])[..chunk.len()];
        // Bytes, not values: -0.0 == 0.0 as floats but is a different pattern.
        if chunk != want {
            let byte = chunk
                .iter()
                .zip(want)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(start + (byte / size) as u64);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(s: &str) -> DType {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_and_displays_like_numpy() {
        let native = if cfg!(target_endian = "little") {
            '<'
        } else {
            '>'
        };
        for (input, want) in [
            ("<f8", "<f8".to_owned()),
            (">f8", ">f8".to_owned()),
            ("<f4", "<f4".to_owned()),
            ("<i8", "<i8".to_owned()),
            ("<i4", "<i4".to_owned()),
            (">i2", ">i2".to_owned()),
            ("|i1", "|i1".to_owned()),
            ("<u8", "<u8".to_owned()),
            (">u4", ">u4".to_owned()),
            ("<u2", "<u2".to_owned()),
            ("|u1", "|u1".to_owned()),
            (">u1", "|u1".to_owned()),
            ("u1", "|u1".to_owned()),
            ("!i4", ">i4".to_owned()),
            ("f8", format!("{native}f8")),
            ("=f4", format!("{native}f4")),
            ("float64", format!("{native}f8")),
            ("float32", format!("{native}f4")),
            ("int64", format!("{native}i8")),
            ("int16", format!("{native}i2")),
            ("uint8", "|u1".to_owned()),
            ("int8", "|i1".to_owned()),
            ("uint32", format!("{native}u4")),
            ("d", format!("{native}f8")),
            ("B", "|u1".to_owned()),
            (" <f8 ", "<f8".to_owned()),
            ("<c8", "<c8".to_owned()),
            (">c8", ">c8".to_owned()),
            ("<c16", "<c16".to_owned()),
            (">c16", ">c16".to_owned()),
            ("c16", format!("{native}c16")),
            ("complex64", format!("{native}c8")),
            ("complex128", format!("{native}c16")),
            ("complex", format!("{native}c16")),
            ("F", format!("{native}c8")),
            ("D", format!("{native}c16")),
            ("|b1", "|b1".to_owned()),
            (">b1", "|b1".to_owned()),
            ("b1", "|b1".to_owned()),
            ("bool", "|b1".to_owned()),
            ("?", "|b1".to_owned()),
            ("b", "|i1".to_owned()),
            ("<f2", "<f2".to_owned()),
            (">f2", ">f2".to_owned()),
            ("f2", format!("{native}f2")),
            ("=f2", format!("{native}f2")),
            ("float16", format!("{native}f2")),
            ("half", format!("{native}f2")),
            ("e", format!("{native}f2")),
        ] {
            assert_eq!(dt(input).to_string(), want, "input {input:?}");
            // Display output parses back to the same dtype.
            assert_eq!(dt(&want), dt(input));
        }
        assert_eq!(dt("<f8").itemsize(), 8);
        assert_eq!(dt("i2").itemsize(), 2);
        assert_eq!(dt("|u1").itemsize(), 1);
        assert_eq!(DType::default(), dt("float64"));
        assert_eq!(dt("<c8").itemsize(), 8);
        assert_eq!(dt(">c16").itemsize(), 16);
        assert_eq!(dt("|b1").itemsize(), 1);
        assert_eq!(dt(">c16").scalar().kind(), 'c');
        assert_eq!(dt("c8").scalar().name(), "complex64");
        assert_eq!(dt("D").scalar().name(), "complex128");
        assert_eq!(dt("?").scalar().name(), "bool");
        assert_eq!(dt(">f2").itemsize(), 2);
        assert_eq!(dt(">f2").component_size(), 2);
        assert_eq!(dt("e").scalar(), Scalar::F16);
        assert_eq!(dt("<f2").scalar().name(), "float16");
        assert_eq!(dt("<f2").scalar().kind(), 'f');
    }

    #[test]
    fn component_size_is_the_swap_unit() {
        for (s, item, comp) in [
            ("<c8", 8, 4),
            (">c16", 16, 8),
            ("<f8", 8, 8),
            (">i4", 4, 4),
            ("<u2", 2, 2),
            ("|u1", 1, 1),
            ("|b1", 1, 1),
        ] {
            assert_eq!(
                (dt(s).itemsize(), dt(s).component_size()),
                (item, comp),
                "{s}"
            );
            assert_eq!(dt(s).scalar().component_size(), comp, "{s}");
        }
    }

    #[test]
    fn rejects_unknown_dtypes() {
        for bad in [
            "", "<", "f1", "f3", "f16", "c4", "c32", "<c", "b2", "bool8", "O", "U8", "<x8",
            "float65", "u", "<>f8",
        ] {
            assert!(bad.parse::<DType>().is_err(), "{bad:?} parsed");
        }
    }

    /// The pattern by the definition, one element at a time, for comparison.
    fn reference(dtype: DType, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n as u64 {
            let mut b: Vec<u8> = match dtype.scalar() {
                Scalar::F64 => (i as f64).to_le_bytes().to_vec(),
                Scalar::F32 => (i as f32).to_le_bytes().to_vec(),
                // Written out from IEEE 754 binary16 below, independent of the `half` crate.
                Scalar::F16 => f16_bits_of_index(i).to_le_bytes().to_vec(),
                Scalar::I64 => (i as i64).to_le_bytes().to_vec(),
                Scalar::I32 => (i as i32).to_le_bytes().to_vec(),
                Scalar::I16 => (i as i16).to_le_bytes().to_vec(),
                Scalar::I8 => (i as i8).to_le_bytes().to_vec(),
                Scalar::U64 => i.to_le_bytes().to_vec(),
                Scalar::U32 => (i as u32).to_le_bytes().to_vec(),
                Scalar::U16 => (i as u16).to_le_bytes().to_vec(),
                Scalar::U8 => vec![i as u8],
                Scalar::Bool => vec![u8::from(i != 0)],
                // Real part i, imaginary part 0: built below, each part in its byte order.
                Scalar::C64 => [(i as f32).to_le_bytes(), 0f32.to_le_bytes()].concat(),
                Scalar::C128 => [(i as f64).to_le_bytes(), 0f64.to_le_bytes()].concat(),
            };
            if dtype.order() == ByteOrder::Big {
                // Each component on its own: a complex is two floats, not one number.
                b.chunks_mut(dtype.component_size())
                    .for_each(|c| c.reverse());
            }
            out.extend(b);
        }
        out
    }

    /// binary16 bits of `i` rounded to nearest-even, by the definition: `i` below 2048 is
    /// exact; from 2048 on the spacing is `2^(e-10)` for `i` in `[2^e, 2^(e+1))`; 65520 and up
    /// is +inf (`0x7c00`).
    fn f16_bits_of_index(i: u64) -> u16 {
        if i == 0 {
            return 0;
        }
        if i >= 65520 {
            return 0x7c00;
        }
        let e = 63 - i.leading_zeros(); // 2^e <= i < 2^(e+1), e <= 15
        let ulp_shift = e.saturating_sub(10);
        let (q, r) = (i >> ulp_shift, i & ((1u64 << ulp_shift) - 1));
        let half = if ulp_shift == 0 {
            1
        } else {
            1u64 << (ulp_shift - 1)
        };
        let q = if ulp_shift > 0 && (r > half || (r == half && q & 1 == 1)) {
            q + 1
        } else {
            q
        };
        // q is the significand with its implicit bit (1024..=2048); 2048 means the next binade.
        let (q, e) = if q == 2048 { (1024, e + 1) } else { (q, e) };
        let e = if ulp_shift == 0 { e } else { e.max(10) };
        // q * 2^ulp_shift with q in [1024, 2048) when e >= 10; for e < 10, q = i exactly.
        let (mant, exp) = if e >= 10 {
            (q - 1024, e)
        } else {
            ((i << (10 - e)) - 1024, e)
        };
        (((exp + 15) as u16) << 10) | mant as u16
    }

    #[test]
    fn f16_reference_agrees_with_known_values() {
        // Values from numpy: np.array([1, 2, 2049, 2051, 4097, 65504, 65519, 65520], 'f2')
        // .view('u2') = [0x3c00, 0x4000, 0x6800, 0x6802, 0x6c00, 0x7bff, 0x7bff, 0x7c00].
        for (i, bits) in [
            (1, 0x3c00),
            (2, 0x4000),
            (2049, 0x6800),
            (2051, 0x6802),
            (4097, 0x6c00),
            (65504, 0x7bff),
            (65519, 0x7bff),
            (65520, 0x7c00),
        ] {
            assert_eq!(f16_bits_of_index(i), bits, "reference {i}");
            assert_eq!(<f16 as Elem>::from_index(i).to_bits(), bits, "half {i}");
        }
        for i in 0..70_000 {
            assert_eq!(
                <f16 as Elem>::from_index(i).to_bits(),
                f16_bits_of_index(i),
                "element {i}"
            );
        }
        assert_eq!(<f16 as Elem>::from_index(u64::MAX).to_bits(), 0x7c00);
    }

    const ALL: [&str; 25] = [
        "<f8", ">f8", "<f4", ">f4", "<f2", ">f2", "<i8", ">i8", "<i4", ">i4", "<i2", ">i2", "|i1",
        "<u8", ">u8", "<u4", ">u4", "<u2", ">u2", "|u1", "<c8", ">c8", "<c16", ">c16", "|b1",
    ];

    #[test]
    fn arange_matches_the_definition_aligned_or_not() {
        let n = STAGE * 2 + 37; // crosses stage chunks, not a multiple of them
        for s in ALL {
            let d = dt(s);
            let want = reference(d, n);
            // Offsets 0..8 into a u64-aligned buffer exercise the aligned and staged paths.
            let mut backing = vec![0u64; want.len() / 8 + 2];
            for off in 0..8 {
                let buf = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut backing)[off..];
                let buf = &mut buf[..want.len()];
                buf.fill(0xAA);
                fill_arange(d, buf);
                assert_eq!(buf, &want[..], "{s} at offset {off}");
                assert_eq!(verify_arange(d, buf), Ok(()), "{s} at offset {off}");
            }
        }
    }

    #[test]
    fn partial_trailing_element_is_a_prefix_of_the_next() {
        for s in ALL {
            let d = dt(s);
            let want = reference(d, 11);
            for len in 0..want.len() {
                let mut buf = vec![0xAAu8; len];
                fill_arange(d, &mut buf);
                assert_eq!(buf, want[..len], "{s} len {len}");
                assert_eq!(verify_arange(d, &buf), Ok(()));
            }
        }
    }

    #[test]
    fn numpy_cast_semantics() {
        // u1 wraps modulo 256 and i1 wraps into negatives, like np.arange(n).astype(...).
        let mut b = vec![0u8; 600];
        fill_arange(dt("u1"), &mut b);
        assert_eq!(
            (b[255], b[256], b[257], b[599]),
            (255, 0, 1, (599 % 256) as u8)
        );
        fill_arange(dt("i1"), &mut b);
        assert_eq!((b[127] as i8, b[128] as i8, b[255] as i8), (127, -128, -1));
        // f4 is exact up to 2^24 and rounds to nearest-even beyond (numpy's C cast).
        assert_eq!(<f32 as Elem>::from_index(16_777_216), 16_777_216.0);
        assert_eq!(<f32 as Elem>::from_index(16_777_217), 16_777_216.0); // tie -> even
        assert_eq!(<f32 as Elem>::from_index(16_777_219), 16_777_220.0);
        assert_eq!(
            <f64 as Elem>::from_index((1 << 53) + 1),
            (1u64 << 53) as f64
        );
    }

    #[test]
    fn verify_reports_the_first_bad_element() {
        for s in ALL {
            let d = dt(s);
            let size = d.itemsize();
            let n = STAGE * 3;
            let mut buf = vec![0u8; n * size];
            fill_arange(d, &mut buf);
            for bad in [0, 1, STAGE - 1, STAGE, 2 * STAGE + 5, n - 1] {
                let mut b = buf.clone();
                // Flip the last byte of the element, then also a later one.
                b[bad * size + size - 1] ^= 0x40;
                if bad + 3 < n {
                    b[(bad + 3) * size] ^= 1;
                }
                assert_eq!(verify_arange(d, &b), Err(bad as u64), "{s} element {bad}");
            }
            // A truncated partial element that is wrong is reported as the next index.
            let mut b = buf[..5 * size + size.min(2) - 1].to_vec();
            if size > 1 {
                let last = b.len() - 1;
                b[last] ^= 0xFF;
                assert_eq!(verify_arange(d, &b), Err(5), "{s}");
            }
        }
    }

    #[test]
    fn complex_is_i_plus_0j_with_per_component_byte_order() {
        // np.arange(3).astype('>c16').tobytes().hex(), and the same for '<c8'.
        let mut b = vec![0u8; 3 * 16];
        fill_arange(dt(">c16"), &mut b);
        let mut want = Vec::new();
        for i in 0..3 {
            want.extend((i as f64).to_be_bytes());
            want.extend(0f64.to_be_bytes());
        }
        assert_eq!(b, want);
        assert_eq!(
            &b[16..32],
            &[0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        let mut b = vec![0u8; 3 * 8];
        fill_arange(dt("<c8"), &mut b);
        assert_eq!(&b[8..16], &[0, 0, 0x80, 0x3f, 0, 0, 0, 0]);
        // The real part rounds like f4 (numpy casts int64 -> complex64 straight to float32).
        let v = <[f32; 2] as Elem>::from_index(16_777_217);
        assert_eq!(v, [16_777_216.0, 0.0]);
        // A non-zero imaginary part is not the pattern.
        let mut b = vec![0u8; 4 * 16];
        fill_arange(dt("<c16"), &mut b);
        b[2 * 16 + 8..2 * 16 + 16].copy_from_slice(&1f64.to_le_bytes());
        assert_eq!(verify_arange(dt("<c16"), &b), Err(2));
    }

    #[test]
    fn bool_is_i_not_zero() {
        let mut b = vec![0xAAu8; 5];
        fill_arange(dt("|b1"), &mut b);
        assert_eq!(b, [0, 1, 1, 1, 1]);
        b[3] = 2; // truthy, but not numpy's canonical True byte
        assert_eq!(verify_arange(dt("?"), &b), Err(3));
    }

    #[test]
    fn swap_byte_order_swaps_each_component() {
        for (big, little) in [
            (">c16", "<c16"),
            (">c8", "<c8"),
            (">f8", "<f8"),
            (">i4", "<i4"),
            (">u2", "<u2"),
            (">i8", "<i8"),
            (">f2", "<f2"),
        ] {
            let n = 1000;
            let size = dt(big).itemsize();
            let mut want = vec![0u8; n * size];
            fill_arange(dt(little), &mut want);
            // Aligned and unaligned starts take the typed and the bytewise paths.
            let mut backing = vec![0u64; want.len() / 8 + 2];
            for off in [0, 1, 3] {
                let buf = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut backing)[off..];
                let buf = &mut buf[..want.len()];
                fill_arange(dt(big), buf);
                swap_byte_order(dt(big), buf);
                assert_eq!(buf, &want[..], "{big} -> {little} at offset {off}");
                swap_byte_order(dt(little), buf);
                assert_eq!(verify_arange(dt(big), buf), Ok(()), "{little} -> {big}");
            }
        }
        // Whole-element reversal would move the imaginary part into the real one.
        // (element 1 is 1+0j; element 0 is all zero bytes either way).
        let mut b = vec![0u8; 2 * 16];
        fill_arange(dt(">c16"), &mut b);
        let mut wrong = b[16..].to_vec();
        wrong.reverse();
        swap_byte_order(dt(">c16"), &mut b);
        assert_ne!(b[16..], wrong[..]);
        assert_eq!(b[16..24], 1f64.to_le_bytes());
        assert_eq!(b[24..32], 0f64.to_le_bytes());
        // One-byte types and a trailing partial unit are left alone.
        let mut b = vec![1u8, 2, 3];
        swap_byte_order(dt("|u1"), &mut b);
        swap_byte_order(dt("|b1"), &mut b);
        assert_eq!(b, [1, 2, 3]);
        let mut b = vec![1u8, 2, 3, 4, 5, 6];
        swap_byte_order(dt(">i4"), &mut b);
        assert_eq!(b, [4, 3, 2, 1, 5, 6]);
    }

    #[test]
    fn negative_zero_is_not_the_pattern() {
        let mut b = vec![0u8; 8 * 4];
        fill_arange(dt("<f8"), &mut b);
        b[..8].copy_from_slice(&(-0.0f64).to_le_bytes());
        assert_eq!(verify_arange(dt("<f8"), &b), Err(0));
    }
}
