//! `SEND_ZC` notification CQEs: waiting for the kernel to release the caller's pages, bounded
//! by the idle timeout, and aborting the connection when a stalled peer keeps them.
//!
//! A notification counts as progress. When a job has its result but the kernel still holds
//! pages of it, the wait is bounded: by one probe interval after an idle timeout fired, else by
//! the idle timeout since the last notification. Past that bound the peer has stopped taking
//! data and the pages sit in the socket's queue for good, so the connection is aborted
//! ([`abort_connection`]); the kernel then drops the queued data and posts the notifications,
//! and the job's result becomes [`Error::TimedOutAborted`]. Without an idle timeout the wait is
//! unbounded, like a blocking send.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::flight::{Flight, borrowed};
use crate::error::Error;

impl Flight<'_> {
    /// Job `i` just got its result: if the kernel still holds pages of it, start the clock
    /// that bounds the wait for them.
    pub(super) fn start_pages_wait(&mut self, i: usize, idle: Option<Duration>) {
        let j = &mut self.jobs[i];
        if j.notifs.is_empty() {
            return;
        }
        j.pages_deadline = match (idle, &j.result) {
            (Some(t), Some(Err(Error::TimedOut { .. }))) => {
                Some(Instant::now() + crate::blocking::probe_interval(t))
            }
            (Some(t), _) => Some(j.last_progress + t),
            (None, _) => None,
        };
    }

    /// At a wake-up: moves each pages deadline with the last notification, and aborts the
    /// connection of every job whose deadline passed while the kernel still holds its pages.
    pub(super) fn check_pages(&mut self, idle: Option<Duration>) {
        let Some(t) = idle else { return };
        let now = Instant::now();
        for j in &mut self.jobs {
            if j.aborted || j.notifs.is_empty() {
                continue;
            }
            let Some(deadline) = j.pages_deadline else {
                continue;
            };
            let timed_out = matches!(j.result, Some(Err(Error::TimedOut { .. })));
            let deadline = if timed_out {
                deadline
            } else {
                j.last_progress + t
            };
            j.pages_deadline = Some(deadline);
            if now < deadline {
                continue;
            }
            abort_connection(j.fd);
            j.aborted = true;
            if matches!(j.result, Some(Ok(_)) | Some(Err(Error::TimedOut { .. }))) {
                j.result = Some(Err(Error::TimedOutAborted {
                    transferred: j.plan.confirmed(),
                    expected: j.len,
                    timeout_ms: t.as_millis() as u64,
                }));
            }
        }
    }
}

/// Aborts the connection on `fd` so that the kernel drops the data queued on it — and with it
/// every reference to the caller's pages.
///
/// `connect(fd, AF_UNSPEC)` dissolves a TCP association without closing the caller's
/// descriptor (connect(2); the kernel runs `tcp_disconnect`, which sends RST and purges the
/// write queue); `shutdown(SHUT_RDWR)` follows for other families.
pub(super) fn abort_connection(fd: RawFd) {
    // SAFETY: `addr` is a valid, fully initialised `sockaddr` of family AF_UNSPEC and `len`
    // is its size; connect only reads it. `fd` is the caller's open socket.
    unsafe {
        let mut addr: libc::sockaddr = std::mem::zeroed();
        addr.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
        let len = std::mem::size_of::<libc::sockaddr>() as libc::socklen_t;
        libc::connect(fd, &addr, len);
    }
    let _ = socket2::SockRef::from(&borrowed(fd)).shutdown(std::net::Shutdown::Both);
}
