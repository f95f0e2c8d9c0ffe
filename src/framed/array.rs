//! The arrays of framed mode: [`Element`] (Rust types with a numpy dtype), [`AnyArray`] and
//! [`Array`] (what a receive returns), [`ArrayView`] (what [`Engine::send_arrays`] takes).
//!
//! [`Engine::send_arrays`]: crate::Engine::send_arrays

use std::marker::PhantomData;

use bytemuck::Pod;

use crate::Result;
use crate::buffer::AlignedBuf;
use crate::dtype::{DType, Scalar};
use crate::frame::{self, FrameError, Header, Order, WireFormat};

/// Rust element types with a numpy dtype (native byte order).
pub trait Element: Pod {
    /// The element type.
    const SCALAR: Scalar;
}

macro_rules! element {
    ($($t:ty => $s:ident),* $(,)?) => {
        $(impl Element for $t { const SCALAR: Scalar = Scalar::$s; })*
    };
}
element!(f64 => F64, f32 => F32, i64 => I64, i32 => I32, i16 => I16, i8 => I8,
         u64 => U64, u32 => U32, u16 => U16, u8 => U8, half::f16 => F16);

/// A received array of any dtype: the header's description plus page-aligned payload bytes.
#[derive(Debug)]
pub struct AnyArray {
    header: Header,
    data: AlignedBuf,
    format: WireFormat,
}

impl AnyArray {
    /// A received array: `header`, its payload memory (`header.payload_len` bytes) and the
    /// format it came in.
    pub(crate) fn new(header: Header, data: AlignedBuf, format: WireFormat) -> AnyArray {
        AnyArray {
            header,
            data,
            format,
        }
    }

    /// The stream format the array came in: [`WireFormat::Rgxf`] (ringxfer's framed message)
    /// or [`WireFormat::Npy`] (numpy's `.npy` stream, which carries no checksum, so
    /// [`AnyArray::checksum_verified`] is false).
    pub fn format(&self) -> WireFormat {
        self.format
    }

    /// The payload bytes, writable: the memory a receive filled (e.g. to hand it, without
    /// a copy, to another owner such as the Python binding's numpy arrays, which keep the
    /// `AnyArray` alive as their base object).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.data.as_bytes_mut()
    }

    /// The dtype on the wire (byte order included).
    pub fn dtype(&self) -> DType {
        self.header.dtype
    }

    /// Dimensions, in elements.
    pub fn shape(&self) -> &[u64] {
        &self.header.shape
    }

    /// Memory order of the payload.
    pub fn order(&self) -> Order {
        self.header.order
    }

    /// The payload bytes (`product(shape) * itemsize`).
    pub fn bytes(&self) -> &[u8] {
        self.data.as_bytes()
    }

    /// True when the sender set the payload-checksum flag, so the payload was verified
    /// against its CRC-32 (a mismatch is an error, never a returned array). False means the
    /// sender did not checksum it: nothing was verified — always the case for an array
    /// received as `.npy` ([`AnyArray::format`]), whose format carries no checksum.
    pub fn checksum_verified(&self) -> bool {
        self.header.flags & frame::FLAG_PAYLOAD_CRC32 != 0
    }

    /// The typed array. Elements in a foreign byte order are byte-swapped in place when
    /// `convert_byte_order` is true.
    ///
    /// # Errors
    /// [`FrameError::DtypeMismatch`] naming both dtypes when the element type differs, or
    /// when the byte order differs and `convert_byte_order` is false (data is never silently
    /// reinterpreted).
    pub fn into_typed<T: Element>(mut self, convert_byte_order: bool) -> Result<Array<T>> {
        let wanted = DType::native(T::SCALAR);
        let wire = self.header.dtype;
        if wire.scalar() != T::SCALAR || (!wire.is_native() && !convert_byte_order) {
            return Err(FrameError::DtypeMismatch {
                wire: wire.to_string(),
                wanted: wanted.to_string(),
            }
            .into());
        }
        if !wire.is_native() {
            // Per component: a complex element is two floats, each swapped on its own.
            crate::dtype::swap_byte_order(wire, self.data.as_bytes_mut());
            self.header.dtype = wanted;
        }
        Ok(Array {
            any: self,
            _t: PhantomData,
        })
    }
}

/// A received array of `T`: owned page-aligned data, shape and order.
#[derive(Debug)]
pub struct Array<T> {
    any: AnyArray,
    _t: PhantomData<T>,
}

impl<T: Element> Array<T> {
    /// The elements, in memory order ([`Array::order`]).
    pub fn as_slice(&self) -> &[T] {
        bytemuck::cast_slice(self.any.bytes())
    }

    /// The elements, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        bytemuck::cast_slice_mut(self.any.data.as_bytes_mut())
    }

    /// Dimensions, in elements.
    pub fn shape(&self) -> &[u64] {
        self.any.shape()
    }

    /// Memory order.
    pub fn order(&self) -> Order {
        self.any.order()
    }

    /// Number of elements (`product(shape)`; 1 for a 0-d array).
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// True when the array has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The untyped view (dtype, bytes).
    pub fn as_any(&self) -> &AnyArray {
        &self.any
    }
}

impl<T: Element> std::ops::Deref for Array<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

/// An array to send with [`Engine::send_arrays`](crate::Engine::send_arrays): element bytes of `dtype`, `shape`, `order`.
#[derive(Debug, Clone, Copy)]
pub struct ArrayView<'a> {
    /// Element type and byte order of `bytes`.
    pub dtype: DType,
    /// The elements in memory order; `product(shape) * itemsize` bytes.
    pub bytes: &'a [u8],
    /// Dimensions, in elements.
    pub shape: &'a [u64],
    /// Memory order.
    pub order: Order,
}

impl<'a> ArrayView<'a> {
    /// A view of native-order elements.
    pub fn new<T: Element>(data: &'a [T], shape: &'a [u64], order: Order) -> Self {
        ArrayView {
            dtype: DType::native(T::SCALAR),
            bytes: bytemuck::cast_slice(data),
            shape,
            order,
        }
    }
}
