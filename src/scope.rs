//! Many transfers at once, with borrowed arrays: [`Engine::scope`](crate::Engine::scope) (see [`Scope`]).

use std::os::fd::{AsFd, BorrowedFd};

use bytemuck::Pod;

use crate::driver::{Progress, Transfer};
use crate::{Error, Result};

/// Records the transfers of one [`Engine::scope`](crate::Engine::scope) call.
///
/// # Why no SQE can outlive a borrow
///
/// [`Engine::scope`](crate::Engine::scope) hands the closure a [`Scope`] that only *records* transfers: nothing is
/// submitted while the closure runs. Every socket and array a transfer names is borrowed for
/// `'env`, a lifetime parameter of `scope` itself, so the borrow checker keeps each of them
/// alive (and, for receives, unaliased) until `scope` returns. After the closure returns,
/// `scope` runs the whole set and returns only when every transfer has settled: every CQE of
/// every SQE reaped and every `SEND_ZC` notification in (on the blocking backend: every
/// thread joined). That holds on success, on any transfer's error (the others are canceled and
/// drained first) and on panic (the ring's in-flight state cancels and drains in `Drop`, the
/// scoped threads are joined by `std::thread::scope`).
///
/// `mem::forget` cannot break this: forgetting the `Scope` (or anything in the closure) only
/// forgets recorded intentions — no SQE exists yet — and the `&mut Scope` the closure gets
/// cannot be moved out of it. There is no guard whose destructor the invariant depends on, which
/// is exactly what makes scoped APIs sound where leak-based ones are not (the `thread::scoped`
/// lesson).
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
    /// The recorded transfers, in order.
    pub(crate) fn into_transfers(self) -> Vec<Transfer<'env>> {
        self.transfers
    }

    /// `hook`: work on the bytes as they move ([`crate::driver`], "Progress hooks").
    pub(crate) fn send_parts(
        &mut self,
        fd: BorrowedFd<'env>,
        parts: Vec<&'env [u8]>,
        hook: Option<&'env mut dyn Progress>,
    ) {
        let t = Transfer::send(fd, parts);
        self.transfers.push(Transfer {
            progress: hook,
            ..t
        });
    }

    /// Adds a receive filling raw parts, back to back as one stream (`hook` as for
    /// [`Scope::send_parts`]).
    pub(crate) fn recv_parts(
        &mut self,
        fd: BorrowedFd<'env>,
        parts: Vec<&'env mut [u8]>,
        hook: Option<&'env mut dyn Progress>,
    ) {
        let t = Transfer::recv(fd, parts);
        self.transfers.push(Transfer {
            progress: hook,
            ..t
        });
    }
}

/// What an [`Engine::scope`](crate::Engine::scope) did: one result per transfer, in the order they were added.
#[derive(Debug)]
pub struct ScopeOutcome {
    results: Vec<Result<u64>>,
}

impl ScopeOutcome {
    /// The outcome of a set whose transfers gave `results`, in the order they were recorded.
    pub(crate) fn new(results: Vec<Result<u64>>) -> ScopeOutcome {
        ScopeOutcome { results }
    }

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
