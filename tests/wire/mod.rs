//! A hand-written encoder of framed messages, written from `docs/PROTOCOL.md` alone (not from
//! `src/frame.rs`), so the tests can build headers that break exactly one rule — with a
//! correct header CRC whenever the test is about something else — plus small socket helpers.
//! Shared by `tests/hostile.rs`, `tests/fuzz_header.rs` and `tests/cli_framed.rs`; each
//! includes it with `mod wire;`, so not every item is used by every file.
#![allow(dead_code)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;

use ringxfer::FrameError;
use socket2::Socket;

/// Every field of a v1 header, each settable to a wrong value. `None` means "the value a
/// correct encoder would write".
#[derive(Debug, Clone)]
pub struct RawHeader {
    /// Bytes 0..4, `RGXF`.
    pub magic: [u8; 4],
    /// Bytes 4..6.
    pub version: u16,
    /// Bytes 6..8; `None`: `40 + 8 * shape.len()`.
    pub header_len: Option<u16>,
    /// Bytes 8..16, NUL-padded.
    pub dtype: [u8; 8],
    /// Byte 16.
    pub order: u8,
    /// Byte 17; `None`: `shape.len()`.
    pub ndim: Option<u8>,
    /// Bytes 18..20.
    pub flags: u16,
    /// Bytes 20..24.
    pub reserved: u32,
    /// Bytes 24..32; `None`: `product(shape) * itemsize` (wrapping, for overflow tests).
    pub payload_len: Option<u64>,
    /// Bytes 32..32+8n (as many as there are entries, whatever `ndim` says).
    pub shape: Vec<u64>,
    /// The header CRC; `None`: CRC-32 of the bytes before it.
    pub crc: Option<u32>,
    /// The 4 bytes after the CRC.
    pub pad: u32,
}

/// `s` NUL-padded to the 8-byte dtype field (longer strings are cut).
pub fn dtype_field(s: &str) -> [u8; 8] {
    let mut f = [0u8; 8];
    let n = s.len().min(8);
    f[..n].copy_from_slice(&s.as_bytes()[..n]);
    f
}

/// Item size of a numpy type string such as `<f8` or `|u1` (the digits at its end; 1 when
/// there are none).
pub fn itemsize_of(dtype: &str) -> u64 {
    let digits: String = dtype
        .trim_end_matches('\0')
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().unwrap_or(1)
}

impl RawHeader {
    /// A correct header for `dtype` (numpy string), `shape`, `order` (`b'C'`/`b'F'`), with the
    /// payload-CRC flag set.
    pub fn valid(dtype: &str, shape: &[u64], order: u8) -> RawHeader {
        RawHeader {
            magic: *b"RGXF",
            version: 1,
            header_len: None,
            dtype: dtype_field(dtype),
            order,
            ndim: None,
            flags: 1,
            reserved: 0,
            payload_len: None,
            shape: shape.to_vec(),
            crc: None,
            pad: 0,
        }
    }

    /// The payload length this header announces.
    pub fn announced(&self) -> u64 {
        self.payload_len.unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&self.dtype).into_owned();
            self.shape
                .iter()
                .fold(itemsize_of(&text), |a, &d| a.wrapping_mul(d))
        })
    }

    /// The encoded header.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(40 + 8 * self.shape.len());
        b.extend_from_slice(&self.magic);
        b.extend_from_slice(&self.version.to_le_bytes());
        let hl = self
            .header_len
            .unwrap_or((40 + 8 * self.shape.len()) as u16);
        b.extend_from_slice(&hl.to_le_bytes());
        b.extend_from_slice(&self.dtype);
        b.push(self.order);
        b.push(self.ndim.unwrap_or(self.shape.len() as u8));
        b.extend_from_slice(&self.flags.to_le_bytes());
        b.extend_from_slice(&self.reserved.to_le_bytes());
        b.extend_from_slice(&self.announced().to_le_bytes());
        for d in &self.shape {
            b.extend_from_slice(&d.to_le_bytes());
        }
        let crc = self.crc.unwrap_or_else(|| crc32fast::hash(&b));
        b.extend_from_slice(&crc.to_le_bytes());
        b.extend_from_slice(&self.pad.to_le_bytes());
        b
    }

    /// The CRC a correct encoder writes for this header.
    pub fn correct_crc(&self) -> u32 {
        let b = RawHeader {
            crc: None,
            ..self.clone()
        }
        .encode();
        u32::from_le_bytes(b[b.len() - 8..b.len() - 4].try_into().unwrap())
    }
}

/// The 8-byte trailer: `crc` then `end` (`RGXE` when correct).
pub fn trailer(crc: u32, end: &[u8; 4]) -> [u8; 8] {
    let mut t = [0u8; 8];
    t[..4].copy_from_slice(&crc.to_le_bytes());
    t[4..].copy_from_slice(end);
    t
}

/// A whole correct message: header, `payload`, trailer with its CRC.
pub fn message(h: &RawHeader, payload: &[u8]) -> Vec<u8> {
    let mut m = h.encode();
    m.extend_from_slice(payload);
    m.extend_from_slice(&trailer(crc32fast::hash(payload), b"RGXE"));
    m
}

/// Sets the shape-derived fields to new values and recomputes `header_len`, `ndim`,
/// `payload_len` and the CRC (a mutation that stays self-consistent where it can).
pub fn reshaped(h: &RawHeader, shape: Vec<u64>) -> RawHeader {
    RawHeader {
        shape,
        header_len: None,
        ndim: None,
        payload_len: None,
        crc: None,
        ..h.clone()
    }
}

/// The snake-case name of a `FrameError` variant (as `ringxfer serve --json` prints `kind`).
pub fn frame_kind(e: &FrameError) -> &'static str {
    e.kind()
}

/// Stream transports the tests run over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `socketpair(AF_UNIX, SOCK_STREAM)`.
    Unix,
    /// A loopback TCP connection.
    Tcp,
}

/// A connected pair `(writer, reader)` over `t`, as `socket2::Socket`s (one type for both
/// transports).
pub fn pair(t: Transport) -> (Socket, Socket) {
    match t {
        Transport::Unix => {
            let (a, b) = UnixStream::pair().expect("socketpair");
            (
                Socket::from(std::os::fd::OwnedFd::from(a)),
                Socket::from(std::os::fd::OwnedFd::from(b)),
            )
        }
        Transport::Tcp => {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            let c = TcpStream::connect(l.local_addr().unwrap()).expect("connect");
            let (s, _) = l.accept().expect("accept");
            (Socket::from(c), Socket::from(s))
        }
    }
}

/// Writes all of `bytes` with plain `send` calls (no ringxfer code on the hostile side). A
/// receiver that gave up early may make this fail (EPIPE/ECONNRESET): that is returned, not
/// a panic.
pub fn write_all(sock: &Socket, bytes: &[u8]) -> std::io::Result<()> {
    let mut w = sock;
    w.write_all(bytes)
}

/// Resident set size of this process in bytes (`VmRSS` of `/proc/self/status`).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
