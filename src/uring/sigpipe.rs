//! SIGPIPE blocked around `WRITE_FIXED` sends (`sock_write_iter` has no `MSG_NOSIGNAL`).

/// SIGPIPE blocked for the calling thread while it lives; a SIGPIPE raised meanwhile (by a
/// WRITE_FIXED to a closed socket: the error itself arrives as `-EPIPE` in the CQE) is
/// consumed before the old mask is restored. A SIGPIPE sent to this thread for another reason
/// in that window is swallowed too.
pub(super) struct SigpipeBlocked {
    old: libc::sigset_t,
    was_blocked: bool,
}

impl SigpipeBlocked {
    pub(super) fn pipe_set() -> libc::sigset_t {
        // SAFETY: sigemptyset/sigaddset initialise the set they are given; a zeroed sigset_t
        // is valid storage for them.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            set
        }
    }

    pub(super) fn new() -> SigpipeBlocked {
        let set = SigpipeBlocked::pipe_set();
        // SAFETY: both pointers are valid sigset_t; pthread_sigmask only touches this
        // thread's mask. `old` is fully written by the call (it cannot fail with valid args).
        unsafe {
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            let was_blocked = libc::sigismember(&old, libc::SIGPIPE) == 1;
            SigpipeBlocked { old, was_blocked }
        }
    }
}

impl Drop for SigpipeBlocked {
    fn drop(&mut self) {
        if self.was_blocked {
            return; // the caller keeps it blocked; leave any pending one to the caller
        }
        let set = SigpipeBlocked::pipe_set();
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid set and timespec; sigtimedwait with a zero timeout only dequeues a
        // pending SIGPIPE of this thread (or returns EAGAIN); then the saved mask is restored.
        unsafe {
            while libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) == libc::SIGPIPE {}
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut());
        }
    }
}
