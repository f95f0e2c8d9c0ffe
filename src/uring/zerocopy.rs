//! `SEND_ZC` notification CQEs: waiting for the kernel to release the caller's pages, bounded
//! by the idle timeout, and aborting the connection when a stalled peer keeps them.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::flight::{Flight, borrowed};

impl Flight<'_> {
    /// Waits for outstanding `SEND_ZC` notifications until `deadline` (`None`: for as long
    /// as it takes). True once there are none left (every result CQE must be in already).
    pub(super) fn wait_notifs(&mut self, deadline: Option<Instant>) -> bool {
        while self.busy() {
            match self.wait_until(deadline) {
                Ok(true) => {}
                Ok(false) => return false,
                Err(_) => std::process::abort(), // see cancel_and_drain
            }
            self.reap(None);
        }
        true
    }

    /// Waits until the kernel has released every page a `SEND_ZC` of this transfer sent
    /// from. Each notification counts as progress; with an idle timeout, when none comes for
    /// `idle` the peer has stopped taking data and the pages sit in the socket's queue for
    /// good, so the connection is aborted ([`Flight::abort`]) and the notifications then
    /// come. Returns true when it had to abort.
    pub(super) fn settle_notifs(&mut self, fd: RawFd, idle: Option<Duration>) -> bool {
        let Some(t) = idle else {
            self.wait_notifs(None);
            return false;
        };
        loop {
            let before = self.notifs.len();
            if self.wait_notifs(Some(Instant::now() + t)) {
                return false;
            }
            if !self.holds_pages() {
                self.drain(); // only cancel CQEs are left: they come at once
                return false;
            }
            if self.notifs.len() == before {
                self.abort(fd);
                return true;
            }
        }
    }

    /// True while a `SEND_ZC` notification is due: the kernel may still read the caller's
    /// pages.
    pub(super) fn holds_pages(&self) -> bool {
        !self.notifs.is_empty()
    }

    /// Aborts the connection on `fd` so that the kernel drops the data queued on it — and
    /// with it every reference to the caller's pages — then waits for every notification.
    ///
    /// `connect(fd, AF_UNSPEC)` dissolves a TCP association without closing the caller's
    /// descriptor (connect(2); the kernel runs `tcp_disconnect`, which sends RST and purges
    /// the write queue); `shutdown(SHUT_RDWR)` follows for other families.
    pub(super) fn abort(&mut self, fd: RawFd) {
        // SAFETY: `addr` is a valid, fully initialised `sockaddr` of family AF_UNSPEC and
        // `len` is its size; connect only reads it. `fd` is the caller's open socket.
        unsafe {
            let mut addr: libc::sockaddr = std::mem::zeroed();
            addr.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
            let len = std::mem::size_of::<libc::sockaddr>() as libc::socklen_t;
            libc::connect(fd, &addr, len);
        }
        let _ = socket2::SockRef::from(&borrowed(fd)).shutdown(std::net::Shutdown::Both);
        self.wait_notifs(None);
    }
}
