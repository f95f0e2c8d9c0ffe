//! Facts about the caller's socket that the engine checks (crate-private, no `unsafe`):
//! whether it is a stream socket, and whether an end of stream was the peer's close or our
//! own `shutdown(SHUT_RD)`.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use socket2::{SockRef, Type};

use crate::error::{Error, Result};

/// Fails with [`Error::NotStream`] unless `sock` is a `SOCK_STREAM` socket (one
/// `getsockopt(SO_TYPE)`). `expected` is the caller's byte count, for an OS error.
pub(crate) fn check_stream<S: AsFd>(sock: &S, expected: u64) -> Result<()> {
    match SockRef::from(sock).r#type() {
        Ok(t) if t == Type::STREAM => Ok(()),
        Ok(t) => Err(Error::NotStream {
            so_type: Some(t.into()),
        }),
        Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => {
            Err(Error::NotStream { so_type: None })
        }
        Err(source) => Err(Error::Io {
            op: "getsockopt(SO_TYPE)",
            transferred: 0,
            expected,
            source,
        }),
    }
}

/// The error for a receive that hit the end of the stream after `transferred` of `expected`
/// bytes: [`Error::Io`] with the socket's pending error (`SO_ERROR`, e.g. `ECONNRESET`) when
/// there is one, or with `ECONNRESET` when the TCP connection is in state `CLOSE` (what a
/// peer's reset leaves: a peer that closes normally leaves `CLOSE_WAIT`); a `MSG_WAITALL`
/// receive that was filling when the reset came returns its partial count, and the next
/// receive then reads 0 rather than the error, on either backend. [`Error::ReadShutdown`]
/// when the stream ended because this socket's receive side was shut down locally (a TCP
/// connection still `ESTABLISHED` or `FIN_WAIT1/2`: the peer's FIN has not arrived), else
/// [`Error::UnexpectedEof`]. Only runs on that error path.
pub(crate) fn eof<S: AsFd>(sock: &S, transferred: u64, expected: u64) -> Error {
    const ESTABLISHED: u8 = 0x01;
    const FIN_WAIT1: u8 = 0x04;
    const FIN_WAIT2: u8 = 0x05;
    const CLOSE: u8 = 0x07;
    let reset = |source: io::Error| Error::Io {
        op: "recv",
        transferred,
        expected,
        source,
    };
    if let Ok(Some(e)) = socket2::SockRef::from(sock).take_error() {
        return reset(e);
    }
    let state = tcp_state(sock.as_fd().as_raw_fd());
    // A TCP socket in state CLOSE is unhashed and so not listed in /proc/net/tcp at all.
    let closed = state == Some(CLOSE) || (state.is_none() && is_tcp(sock));
    match state {
        _ if closed => reset(io::Error::from_raw_os_error(libc::ECONNRESET)),
        Some(ESTABLISHED | FIN_WAIT1 | FIN_WAIT2) => Error::ReadShutdown {
            transferred,
            expected,
        },
        _ => Error::UnexpectedEof {
            transferred,
            expected,
        },
    }
}

/// True when `sock` is a TCP socket (IPv4 or IPv6 `SOCK_STREAM`, protocol TCP or unspecified).
fn is_tcp<S: AsFd>(sock: &S) -> bool {
    let s = socket2::SockRef::from(sock);
    matches!(s.domain(), Ok(d) if d == socket2::Domain::IPV4 || d == socket2::Domain::IPV6)
        && matches!(s.r#type(), Ok(t) if t == socket2::Type::STREAM)
        && !matches!(s.protocol(), Ok(Some(p)) if p != socket2::Protocol::TCP)
}

/// The TCP state (`include/net/tcp_states.h`: 1 = ESTABLISHED, 8 = CLOSE_WAIT, …) of socket
/// `fd`, from `/proc/self/net/tcp{,6}` looked up by the socket's inode; `None` for a non-TCP
/// socket or when procfs cannot tell.
fn tcp_state(fd: i32) -> Option<u8> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let inode = link
        .to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .to_owned();
    ["/proc/self/net/tcp", "/proc/self/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .find_map(|table| {
            table.lines().skip(1).find_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                (f.get(9) == Some(&inode.as_str()))
                    .then(|| u8::from_str_radix(f.get(3)?, 16).ok())
                    .flatten()
            })
        })
}

/// `RLIMIT_MEMLOCK` of this process as `/proc/self/limits` states it (soft limit, in bytes
/// or "unlimited"), for messages about refused registrations.
fn memlock_limit() -> Option<String> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))?;
    let soft = line["Max locked memory".len()..]
        .split_whitespace()
        .next()?;
    Some(soft.to_owned())
}

/// An OS error from a registration, with `RLIMIT_MEMLOCK` named when it is `ENOMEM`.
pub(crate) fn explain_pinning(e: &io::Error) -> Option<String> {
    if e.raw_os_error() != Some(libc::ENOMEM) {
        return None;
    }
    let limit = memlock_limit()
        .map(|l| match l.parse::<u64>() {
            Ok(b) => format!("{b} bytes"),
            Err(_) => l,
        })
        .unwrap_or_else(|| "unknown".to_owned());
    Some(format!(
        "pinning refused: RLIMIT_MEMLOCK is {limit} (raise it with `ulimit -l` or grant \
         CAP_IPC_LOCK)"
    ))
}
