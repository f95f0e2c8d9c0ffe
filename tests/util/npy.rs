//! What the `.npy` tests share: the dtypes ringxfer carries, hand-made `.npy` headers, and the
//! python3 child's deadline.

use std::time::Duration;

use ringxfer::Order;
use ringxfer::dtype::DType;

/// Every dtype ringxfer carries, in both byte orders where it has one.
pub const ALL_DTYPES: [&str; 25] = [
    "<f8", ">f8", "<f4", ">f4", "<f2", ">f2", "<i8", ">i8", "<i4", ">i4", "<i2", ">i2", "|i1",
    "<u8", ">u8", "<u4", ">u4", "<u2", ">u2", "|u1", "<c8", ">c8", "<c16", ">c16", "|b1",
];

/// A python3 child is killed after this long.
pub const CHILD_LIMIT: Duration = Duration::from_secs(120);

/// The dtype named `s` (numpy's `dtype.str`, or any name ringxfer parses).
pub fn dt(s: &str) -> DType {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// `"C"` or `"F"`, as numpy's `order=` takes it.
pub fn order_name(o: Order) -> &'static str {
    match o {
        Order::C => "C",
        Order::F => "F",
    }
}

/// `[[dtype, shape, "C"|"F"], ...]`: array cases as JSON for a python3 child's argv.
pub fn cases_json<D: AsRef<str>>(cases: &[(D, Vec<u64>, Order)]) -> String {
    let v: Vec<(&str, &[u64], &str)> = cases
        .iter()
        .map(|(d, s, o)| (d.as_ref(), &s[..], order_name(*o)))
        .collect();
    serde_json::to_string(&v).expect("cases as JSON")
}

/// A version-1.0 header around `dict`, padded with spaces and `\n` to a multiple of `align`.
pub fn wrap_aligned(dict: &str, align: usize) -> Vec<u8> {
    let mut text = dict.as_bytes().to_vec();
    while (10 + text.len() + 1) % align != 0 {
        text.push(b' ');
    }
    text.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(text.len() as u16).to_le_bytes());
    out.extend_from_slice(&text);
    out
}

/// A version-1.0 header around `dict`, padded as numpy pads it (to 64 bytes).
pub fn wrap(dict: &str) -> Vec<u8> {
    wrap_aligned(dict, 64)
}
