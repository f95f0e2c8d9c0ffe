//! How many bytes this side has sent that the peer has not yet taken (`SIOCOUTQ`), for the
//! graceful close ([`crate::close::finish`]), which counts a peer still consuming them as
//! progress. Lives here because it needs one `ioctl` (this is the crate's `unsafe` module).

use std::os::fd::{AsRawFd, BorrowedFd};

/// `ioctl(SIOCOUTQ)` on a stream socket: TCP — bytes sent and not yet acknowledged by the
/// peer (a FIN counts as one); Unix stream — memory of the skbs the peer has not read yet.
/// `None` when the socket cannot tell (another family, an error).
pub(crate) fn unsent_bytes(fd: BorrowedFd<'_>) -> Option<u64> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (= TIOCOUTQ) writes one `int` through its argument, which points to
    // `n`, a live, writable `c_int`; `fd` is an open descriptor borrowed for the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &mut n as *mut libc::c_int) };
    (r == 0).then(|| u64::try_from(n).ok()).flatten()
}
