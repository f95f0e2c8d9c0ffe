//! One array over several streams: each stream carries one contiguous **stripe**, which the
//! receiver writes in place into its part of the array (no reassembly copy).
//!
//! # Geometry (raw mode: both sides compute it; framed striping will carry it)
//!
//! For an array of `len` bytes over `n` streams, every stripe but the last holds
//! `q = ceil(ceil(len / n) / 4096) * 4096` bytes (a multiple of 4 KiB, so stripes start on
//! page boundaries of a page-aligned array); stripe `i` is bytes
//! `[min(i·q, len), min((i+1)·q, len))`. Stripes at the end may be empty when `len` is small
//! (an empty stripe moves nothing on its stream). Both ends must use the same `n` and the same
//! order of streams: stream `i` of the sender must be connected to stream `i` of the
//! receiver.
//!
//! The streams may go over different paths ("rails": several addresses, as with several
//! NICs); ringxfer only sees sockets. All stripes move at once through [`Engine::scope`]: on
//! the uring backend on one ring, on the blocking backend on one thread per stream.

use std::ops::Range;
use std::os::fd::AsFd;

use bytemuck::Pod;
use socket2::SockRef;

use crate::{Engine, Error, Result};

/// Stripe boundaries are multiples of this many bytes.
pub const STRIPE_ALIGN: u64 = 4096;

/// The byte range of each of `n` stripes of an array of `len` bytes (see the module docs).
///
/// # Panics
/// When `n` is 0.
pub fn stripes(len: u64, n: usize) -> Vec<Range<u64>> {
    assert!(n > 0, "at least one stream");
    let per = len.div_ceil(n as u64).div_ceil(STRIPE_ALIGN) * STRIPE_ALIGN;
    (0..n as u64)
        .map(|i| (i * per).min(len)..((i + 1) * per).min(len))
        .collect()
}

/// The peer address of `sock` for messages ("127.0.0.1:5000", "unix", or "?").
fn peer_name<S: AsFd>(sock: &S) -> String {
    match SockRef::from(sock).peer_addr() {
        Ok(a) => match a.as_socket() {
            Some(sa) => sa.to_string(),
            None => "unix".to_owned(),
        },
        Err(_) => "?".to_owned(),
    }
}

/// The striped call's error: the first stream that failed on its own (others report
/// [`Error::Canceled`] after it), as [`Error::Stream`].
fn first_failure(peers: Vec<String>, results: Vec<Result<u64>>) -> Result<()> {
    let mut canceled = None;
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(_) => {}
            Err(e @ Error::Canceled { .. }) => {
                canceled.get_or_insert((i, e));
            }
            Err(e) => return Err(stream_error(&peers, i, e)),
        }
    }
    canceled.map_or(Ok(()), |(i, e)| Err(stream_error(&peers, i, e)))
}

fn stream_error(peers: &[String], i: usize, e: Error) -> Error {
    Error::Stream {
        stream: i,
        peer: peers[i].clone(),
        source: Box::new(e),
    }
}

impl Engine {
    /// Sends `data` striped over `socks` (stream `i` carries stripe `i`, see the
    /// [module docs](crate::stripe)), all streams at once. Returns when every stripe is
    /// sent.
    ///
    /// # Errors
    /// [`Error::Stream`] naming the first stream that failed, its peer address and (in its
    /// `source`) that stream's own error with the bytes of its stripe moved so far; the other
    /// streams were canceled and drained — no stripe is left in flight.
    /// [`Error::InvalidInput`] for no sockets or the same socket twice.
    pub fn send_striped<T: Pod, S: AsFd>(&mut self, socks: &[S], data: &[T]) -> Result<()> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        if socks.is_empty() {
            return Err(Error::InvalidInput("send_striped: no streams".to_owned()));
        }
        let geometry = stripes(bytes.len() as u64, socks.len());
        // Taken now: after a reset the kernel no longer knows a stream's peer.
        let peers = socks.iter().map(peer_name).collect();
        let results = self
            .scope(|s| {
                for (sock, r) in socks.iter().zip(&geometry) {
                    s.send(sock, &bytes[r.start as usize..r.end as usize]);
                }
            })
            .into_results();
        first_failure(peers, results)
    }

    /// Receives an array striped over `socks` into `data`, each stripe written in place.
    /// Errors as [`Engine::send_striped`]; on error, which bytes of `data` are valid depends
    /// on each stream's count.
    pub fn recv_striped<T: Pod, S: AsFd>(&mut self, socks: &[S], data: &mut [T]) -> Result<()> {
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(data);
        if socks.is_empty() {
            return Err(Error::InvalidInput("recv_striped: no streams".to_owned()));
        }
        let geometry = stripes(bytes.len() as u64, socks.len());
        let mut parts: Vec<&mut [u8]> = Vec::with_capacity(socks.len());
        let mut rest = bytes;
        for r in &geometry {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut((r.end - r.start) as usize);
            parts.push(head);
            rest = tail;
        }
        let peers = socks.iter().map(peer_name).collect();
        let results = self
            .scope(|s| {
                for (sock, part) in socks.iter().zip(parts) {
                    s.recv(sock, part);
                }
            })
            .into_results();
        first_failure(peers, results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_covers_the_array_in_order() {
        for len in [
            0u64,
            1,
            4095,
            4096,
            4097,
            100_000,
            400_000_000,
            (5 << 30) + 3,
        ] {
            for n in 1..=9 {
                let g = stripes(len, n);
                assert_eq!(g.len(), n);
                assert_eq!(g[0].start, 0);
                assert_eq!(g[n - 1].end, len, "len {len} n {n}");
                for w in g.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                    assert!(w[0].start % STRIPE_ALIGN == 0 || w[0].start == len);
                }
            }
        }
        assert_eq!(stripes(10_000, 3), vec![0..4096, 4096..8192, 8192..10_000]);
        assert_eq!(stripes(100, 4), vec![0..100, 100..100, 100..100, 100..100]);
    }
}
