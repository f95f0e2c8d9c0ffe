//! The flags several commands share and how they map onto the library's types: the array
//! (`--dtype`, `--count` / `--size`), durations, `--backend` and the uring knobs.
//!
//! Library enums are taken as they are, no mirror copies: [`LibraryEnum`] parses a flag into
//! the library's own value, spelled as the library spells it (`Display` for [`Backend`], the
//! `serde` names, kebab-case, for [`SendOp`], [`RecvOp`] and [`Prefault`]), and lists the
//! values for `--help` and for a bad value. The values each flag accepts are listed once, in
//! the consts below. (A `clap` feature in the library deriving `ValueEnum` would do the same,
//! but would put the library's long rustdoc, links and all, into `--help` and give the library
//! a second optional dependency for the CLI's sake.)

use std::ffi::OsStr;
use std::time::Duration;

use clap::Args;
use clap::builder::{PossibleValue, TypedValueParser};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use ringxfer::dtype::DType;
use ringxfer::{Backend, Prefault, RecvOp, SendOp, UringTuning};
use serde::Serialize;

use crate::failure::Failure;
use crate::size;

/// Elements in the default array: the recipe's 50,000,000 float64 (400 MB).
const DEFAULT_COUNT: u64 = 50_000_000;

/// `--backend` values of send, recv and serve: auto (io_uring when the probe says it works,
/// else blocking; RINGXFER_BACKEND overrides), uring (fails when unavailable), blocking.
pub const BACKENDS: &[Backend] = &[Backend::Auto, Backend::Uring, Backend::Blocking];
/// `--send-op` values.
pub const SEND_OPS: &[SendOp] = &[
    SendOp::Auto,
    SendOp::Send,
    SendOp::SendZc,
    SendOp::WriteFixed,
];
/// `--recv-op` values.
pub const RECV_OPS: &[RecvOp] = &[RecvOp::Recv, RecvOp::ReadFixed];
/// `bench --prefault` values.
pub const PREFAULTS: &[Prefault] = &[
    Prefault::None,
    Prefault::Huge,
    Prefault::Populate,
    Prefault::HugePopulate,
    Prefault::Ahead,
];

/// The library's `Display` spelling of a value.
pub fn display_name<T: std::fmt::Display>(v: &T) -> String {
    v.to_string()
}

/// The library's `serde` spelling of a unit variant (`SendOp::SendZc` -> `send-zc`).
pub fn serde_name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        other => panic!("not a unit variant: {other:?}"),
    }
}

/// A clap value parser onto a library enum: accepts exactly the names of `values`.
#[derive(Clone)]
pub struct LibraryEnum<T: 'static> {
    values: &'static [T],
    name: fn(&T) -> String,
}

impl<T: 'static> LibraryEnum<T> {
    /// Accepts `values`, each spelled `name(value)`.
    pub fn new(values: &'static [T], name: fn(&T) -> String) -> Self {
        LibraryEnum { values, name }
    }
}

impl<T: Copy + Send + Sync + 'static> TypedValueParser for LibraryEnum<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let given = value.to_string_lossy();
        if let Some(v) = self.values.iter().find(|v| (self.name)(v) == given) {
            return Ok(*v);
        }
        let mut err = clap::Error::new(ErrorKind::InvalidValue).with_cmd(cmd);
        if let Some(arg) = arg {
            err.insert(
                ContextKind::InvalidArg,
                ContextValue::String(arg.to_string()),
            );
        }
        err.insert(
            ContextKind::InvalidValue,
            ContextValue::String(given.into_owned()),
        );
        err.insert(
            ContextKind::ValidValue,
            ContextValue::Strings(self.values.iter().map(self.name).collect()),
        );
        Err(err)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            self.values
                .iter()
                .map(|v| PossibleValue::new((self.name)(v))),
        ))
    }
}

/// The array to move: dtype and either an element count or a byte size.
#[derive(Debug, Args)]
pub struct ArrayArgs {
    /// numpy dtype of the elements, any the library parses (`ringxfer::dtype::DType`'s
    /// `FromStr`), e.g. <f8, >i4, u1, float64 (no byte-order prefix = native order)
    /// [default: f8].
    #[arg(long, value_parser = parse_dtype)]
    dtype: Option<DType>,
    /// Number of elements [default: 50000000]; accepts 50_000_000 and 5e7.
    #[arg(long, value_parser = size::parse_count, conflicts_with = "size")]
    count: Option<u64>,
    /// Array size in bytes instead of --count: 4096, 400MB (10^6), 64MiB (2^20), 1GiB;
    /// must be a multiple of the item size.
    #[arg(long, value_parser = size::parse_size, value_name = "BYTES")]
    size: Option<u64>,
}

/// A resolved [`ArrayArgs`].
#[derive(Debug, Clone, Copy)]
pub struct ArraySpec {
    /// Element type and byte order.
    pub dtype: DType,
    /// Number of elements.
    pub count: u64,
    /// `count * itemsize`.
    pub bytes: usize,
}

impl ArrayArgs {
    /// The dtype: `--dtype`, or `f8` when not given.
    pub fn dtype(&self) -> DType {
        self.dtype.unwrap_or_default()
    }

    /// `--dtype`, when given.
    pub fn dtype_given(&self) -> Option<DType> {
        self.dtype
    }

    /// True when `--count` or `--size` was given.
    pub fn count_given(&self) -> bool {
        self.count.is_some() || self.size.is_some()
    }

    /// The element count and byte size, checked against the address space.
    pub fn resolve(&self) -> Result<ArraySpec, Failure> {
        let dtype = self.dtype();
        let item = dtype.itemsize() as u64;
        let count = match (self.count, self.size) {
            (Some(n), _) => n,
            (None, Some(b)) if b % item != 0 => {
                return Err(Failure::usage(format!(
                    "--size {b} is not a multiple of the {} item size ({item} bytes)",
                    dtype
                )));
            }
            (None, Some(b)) => b / item,
            (None, None) => DEFAULT_COUNT,
        };
        let bytes = count
            .checked_mul(item)
            .and_then(|b| usize::try_from(b).ok())
            .filter(|&b| b <= isize::MAX as usize)
            .ok_or_else(|| Failure::usage(format!("{count} elements of {dtype} is too large")))?;
        Ok(ArraySpec {
            dtype,
            count,
            bytes,
        })
    }
}

pub fn parse_dtype(s: &str) -> Result<DType, String> {
    s.parse()
        .map_err(|e: ringxfer::dtype::UnknownName| e.to_string())
}

/// Parses a positive number of seconds (`30`, `0.5`).
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| *v > 0.0)
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| format!("bad duration {s:?}: expected a positive number of seconds"))
}

/// Knobs of the uring backend ([`UringTuning`]); unset ones keep the library's defaults.
#[derive(Debug, Args)]
pub struct TuningArgs {
    /// uring send opcode [default: the library's, auto]: auto (adaptive: SEND_ZC with usage
    /// reports on a few trial requests per destination, plain SEND from then on where the
    /// kernel copies; no trial toward a local peer, which always copies), send
    /// (IORING_OP_SEND with MSG_WAITALL), send-zc (IORING_OP_SEND_ZC from the registered
    /// array), write-fixed (IORING_OP_WRITE_FIXED on the socket).
    #[arg(long, value_parser = LibraryEnum::new(SEND_OPS, serde_name))]
    send_op: Option<SendOp>,
    /// uring receive opcode [default: the library's, recv]: recv (IORING_OP_RECV with
    /// MSG_WAITALL), read-fixed (IORING_OP_READ_FIXED into the registered array).
    #[arg(long, value_parser = LibraryEnum::new(RECV_OPS, serde_name))]
    recv_op: Option<RecvOp>,
    /// uring bytes per SQE, e.g. 16MiB [default: the library's].
    #[arg(long, value_parser = size::parse_size, value_name = "BYTES")]
    segment: Option<u64>,
    /// uring SQEs per link chain, 1..=32 [default: the library's].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=ringxfer::MAX_CHAIN_SQES as i64))]
    chain: Option<u32>,
    /// With --send-op auto: run the zero-copy trial toward local peers too (loopback, the
    /// socket's own address), which the library skips because the kernel copies there anyway
    /// and the trial slows the connection down; shows the trial and its cost on loopback.
    #[arg(long)]
    zc_trial_local: bool,
    /// uring: address the sockets through the ring's fixed-file table (one
    /// io_uring_register to install them per call, one to remove them) instead of by fd
    /// [default: the library's, off].
    #[arg(long)]
    fixed_files: bool,
}

impl TuningArgs {
    /// The library defaults with the given knobs applied.
    pub fn tuning(&self) -> Result<UringTuning, Failure> {
        let mut t = UringTuning::default();
        if let Some(op) = self.send_op {
            t.send_op = op;
        }
        if let Some(op) = self.recv_op {
            t.recv_op = op;
        }
        if let Some(seg) = self.segment {
            let max = u64::from(ringxfer::MAX_IO_BYTES);
            if seg == 0 || seg > max {
                return Err(Failure::usage(format!(
                    "--segment {seg} out of range (1..={max} bytes)"
                )));
            }
            t.segment_bytes = seg as u32;
        }
        if let Some(n) = self.chain {
            t.chain_sqes = n;
        }
        t.zc_trial_local |= self.zc_trial_local;
        t.fixed_files |= self.fixed_files;
        Ok(t)
    }
}
