//! Many transfers at once, with borrowed arrays: [`Engine::scope`].
//!
//! # Why no SQE can outlive a borrow
//!
//! [`Engine::scope`] hands the closure a [`Scope`] that only *records* transfers: nothing is
//! submitted while the closure runs. Every socket and array a transfer names is borrowed for
//! `'env`, a lifetime parameter of `scope` itself, so the borrow checker keeps each of them
//! alive (and, for receives, unaliased) until `scope` returns. After the closure returns,
//! `scope` runs the whole set and returns only when every transfer has settled: every CQE of
//! every SQE reaped and every `SEND_ZC` notification in (on the blocking backend: every
//! thread joined). That holds on success, on any transfer's error (the others are canceled and
//! drained first) and on panic (the ring's in-flight state cancels and drains in `Drop`, the
//! scoped threads are joined by `std::thread::scope`).
//!
//! `mem::forget` cannot break this: forgetting the `Scope` (or anything in the closure) only
//! forgets recorded intentions — no SQE exists yet — and the `&mut Scope` the closure gets
//! cannot be moved out of it. There is no guard whose destructor the invariant depends on, which
//! is exactly what makes scoped APIs sound where leak-based ones are not (the `thread::scoped`
//! lesson).

use std::os::fd::{AsFd, BorrowedFd};

use bytemuck::Pod;

use crate::driver::{Bufs, Transfer};
use crate::{Engine, Error, Result};

/// Records the transfers of one [`Engine::scope`] call. See the [module docs](self).
#[derive(Debug, Default)]
pub struct Scope<'env> {
    transfers: Vec<Transfer<'env>>,
}

impl<'env> Scope<'env> {
    /// Adds a send of every byte of `data` (`size_of_val(data)` bytes) on `sock`. Returns the
    /// transfer's index in [`ScopeOutcome::results`].
    pub fn send<T: Pod, S: AsFd>(&mut self, sock: &'env S, data: &'env [T]) -> usize {
        self.transfers.push(Transfer::send(
            sock.as_fd(),
            vec![bytemuck::cast_slice(data)],
        ));
        self.transfers.len() - 1
    }

    /// Adds a receive filling every byte of `data` from `sock`. Returns the transfer's index
    /// in [`ScopeOutcome::results`].
    pub fn recv<T: Pod, S: AsFd>(&mut self, sock: &'env S, data: &'env mut [T]) -> usize {
        self.transfers.push(Transfer::recv(
            sock.as_fd(),
            vec![bytemuck::cast_slice_mut(data)],
        ));
        self.transfers.len() - 1
    }

    /// Adds a send of raw parts, back to back as one stream.
    pub(crate) fn send_parts(&mut self, fd: BorrowedFd<'env>, parts: Vec<&'env [u8]>) {
        self.transfers.push(Transfer::send(fd, parts));
    }

    /// Adds a receive filling raw parts, back to back as one stream.
    pub(crate) fn recv_parts(&mut self, fd: BorrowedFd<'env>, parts: Vec<&'env mut [u8]>) {
        self.transfers.push(Transfer::recv(fd, parts));
    }
}

/// What an [`Engine::scope`] did: one result per transfer, in the order they were added.
#[derive(Debug)]
pub struct ScopeOutcome {
    results: Vec<Result<u64>>,
}

impl ScopeOutcome {
    /// Each transfer's result: `Ok(bytes moved)`, its own error (with `transferred` and
    /// `expected` bytes), or [`Error::Canceled`] when another transfer failed first.
    pub fn results(&self) -> &[Result<u64>] {
        &self.results
    }

    /// The results, by value.
    pub fn into_results(self) -> Vec<Result<u64>> {
        self.results
    }

    /// `Ok` when every transfer succeeded; else the first error that is not a
    /// [`Error::Canceled`] (the one that made the others stop), or the first error.
    pub fn into_result(self) -> Result<()> {
        let mut first = None;
        for r in self.results {
            match r {
                Ok(_) => {}
                Err(e @ Error::Canceled { .. }) => {
                    first.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Engine {
    /// Runs many transfers at once — several sockets, both directions — with borrowed arrays,
    /// the way [`std::thread::scope`] works: the closure records transfers on the [`Scope`];
    /// they all run when it returns, and `scope` returns only when every one of them has
    /// completed (see the [module docs](crate::scope) for why no SQE can outlive a borrow).
    ///
    /// The uring backend keeps every transfer in flight on the engine's one ring (one link
    /// chain per transfer, all transfers together); the blocking backend runs them on scoped
    /// threads. When a transfer fails, the others still running are canceled and settled as
    /// [`Error::Canceled`] with their own byte counts; each transfer's result is reported.
    ///
    /// At most one transfer per socket and direction (two sends on one socket would
    /// interleave their bytes): a second one is an [`Error::InvalidInput`] result for it, and
    /// nothing runs. Every socket must be a stream socket ([`Error::NotStream`]).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::os::unix::net::UnixStream;
    /// let (a1, a2) = UnixStream::pair()?;
    /// let (b1, b2) = UnixStream::pair()?;
    /// let x = vec![1.5f64; 100_000];
    /// let mut y = vec![0f64; 100_000];
    /// let z = vec![7u32; 50_000];
    /// let mut w = vec![0u32; 50_000];
    /// let mut engine = ringxfer::Engine::new(ringxfer::Backend::Auto)?;
    /// engine
    ///     .scope(|s| {
    ///         s.send(&a1, &x);
    ///         s.recv(&a2, &mut y);
    ///         s.send(&b2, &z);
    ///         s.recv(&b1, &mut w);
    ///     })
    ///     .into_result()?;
    /// assert_eq!((x, z), (y, w));
    /// # Ok(()) }
    /// ```
    pub fn scope<'env, F>(&mut self, f: F) -> ScopeOutcome
    where
        F: FnOnce(&mut Scope<'env>),
    {
        let mut scope = Scope::default();
        f(&mut scope);
        self.run_scope(scope)
    }

    /// Checks and runs the transfers a [`Scope`] recorded.
    pub(crate) fn run_scope(&mut self, mut scope: Scope<'_>) -> ScopeOutcome {
        let checks: Vec<Result<()>> = scope
            .transfers
            .iter()
            .enumerate()
            .map(|(i, t)| {
                crate::sock::check_stream(&t.fd, t.bufs.len())?;
                let fd = std::os::fd::AsRawFd::as_raw_fd(&t.fd);
                let twice = scope.transfers[..i].iter().any(|u| {
                    std::os::fd::AsRawFd::as_raw_fd(&u.fd) == fd && u.bufs.dir() == t.bufs.dir()
                });
                if twice {
                    return Err(Error::InvalidInput(format!(
                        "transfer {i}: a second {} on the same socket in one scope",
                        match t.bufs {
                            Bufs::Send(_) => "send",
                            Bufs::Recv(_) => "receive",
                        }
                    )));
                }
                Ok(())
            })
            .collect();
        if checks.iter().any(Result::is_err) {
            let results = checks
                .into_iter()
                .zip(&scope.transfers)
                .map(|(c, t)| {
                    c.and(Err(Error::Canceled {
                        transferred: 0,
                        expected: t.bufs.len(),
                    }))
                })
                .collect();
            return ScopeOutcome { results };
        }
        if scope.transfers.is_empty() {
            return ScopeOutcome {
                results: Vec::new(),
            };
        }
        ScopeOutcome {
            results: self.run_set(&mut scope.transfers, false),
        }
    }
}
