//! Fixed buffers: the caller's array registered with `IORING_REGISTER_BUFFERS` in slots of at
//! most 1 GiB (one iovec each: a larger one fails with `EFAULT`, case C09), and the RAII guard
//! that borrows the array for as long as the kernel has it in its table. Fixed files: a set's
//! sockets installed in the ring's sparse file table for the length of one set
//! ([`FileTable`], [`super::UringTuning::fixed_files`]).

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use super::{Ring, UringTuning};
use crate::error::{Error, Result};
use crate::planner::{Direction, MAX_SLOT_BYTES};

/// Slots of a ring's sparse file table: the first this many transfers of a set get one when
/// [`super::UringTuning::fixed_files`] is on (the rest address their socket by fd). The table
/// is registered on first use and lives as long as the ring (`io_uring_setup` → close).
pub(super) const FILE_SLOTS: u32 = 64;

/// `IORING_REGISTER_FILES_UPDATE`'s value that empties a slot (`include/uapi/linux/io_uring.h`
/// has `IORING_REGISTER_FILES_SKIP` = -2 for "leave it"; -1 clears it).
const EMPTY_SLOT: RawFd = -1;

/// A ring's sparse file table (`IORING_REGISTER_FILES2` with `IORING_RSRC_REGISTER_SPARSE`,
/// Linux 5.19) and which of its slots hold a set's sockets.
///
/// A slot holds a reference to the socket's file, so a socket left installed would stay open
/// (no FIN to the peer) after the caller closed its fd: slots are emptied when the set that
/// filled them ends (on unwind, at the next set or when the ring is dropped).
#[derive(Debug, Default)]
pub(super) struct FileTable {
    /// The sparse table is registered (`Err`: the kernel refused it, with the errno; not
    /// tried again on this ring).
    table: Option<std::result::Result<(), i32>>,
    /// Slots `0..installed` hold sockets.
    installed: u32,
}

impl FileTable {
    /// Installs `fds` in slots `0..fds.len()` (at most [`FILE_SLOTS`]), registering the sparse
    /// table first when this ring has none: slot `i` then addresses `fds[i]` with
    /// `types::Fixed(i)`. Costs one `io_uring_register` (two the first time). `Err`: the
    /// kernel refused the table (`EINVAL` before 5.19, `EMFILE` over `RLIMIT_NOFILE`) or the
    /// update (`EBADF`: not an open fd); nothing is installed then.
    ///
    /// Only to be called from the ring's issuer thread while nothing is in flight.
    pub(super) fn install(&mut self, ring: &io_uring::IoUring, fds: &[RawFd]) -> io::Result<()> {
        self.clear(ring);
        let fds = &fds[..fds.len().min(FILE_SLOTS as usize)];
        let table = *self.table.get_or_insert_with(|| {
            match ring.submitter().register_files_sparse(FILE_SLOTS) {
                Ok(()) => Ok(()),
                Err(e) => Err(e.raw_os_error().unwrap_or(libc::EINVAL)),
            }
        });
        table.map_err(io::Error::from_raw_os_error)?;
        let n = ring.submitter().register_files_update(0, fds)?;
        self.installed = n as u32;
        if n != fds.len() {
            self.clear(ring);
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        Ok(())
    }

    /// The fixed-file slot of a set's transfer `job`, when its socket is installed.
    pub(super) fn slot(&self, job: usize) -> Option<u32> {
        u32::try_from(job).ok().filter(|&j| j < self.installed)
    }

    /// Empties the slots a set filled (one `io_uring_register`); the sockets' files are no
    /// longer referenced by the ring. Only while nothing is in flight.
    pub(super) fn clear(&mut self, ring: &io_uring::IoUring) {
        if self.installed > 0 {
            let empty = vec![EMPTY_SLOT; self.installed as usize];
            // An error leaves slots that the next install overwrites and the ring's close
            // releases; nothing to undo here.
            let _ = ring.submitter().register_files_update(0, &empty);
            self.installed = 0;
        }
    }
}

/// Why a registration was refused, naming `RLIMIT_MEMLOCK` and its value for `ENOMEM`.
pub(super) fn refusal(e: &Error) -> String {
    match e.raw_os_error().and(match e {
        Error::Setup { source, .. } => crate::sock::explain_pinning(source),
        _ => None,
    }) {
        Some(why) => format!("{e} ({why})"),
        None => e.to_string(),
    }
}

/// The registered-buffer table of one ring: the caller's array split into slots of ≤ 1 GiB.
#[derive(Debug)]
pub(super) struct Slots {
    pub(super) base: usize,
    pub(super) len: usize,
    pub(super) slot_bytes: u64,
}

impl Slots {
    /// The registered memory as spans, one per slot, each with its buffer index.
    pub(super) fn spans(&self) -> Vec<Span> {
        let step = self.slot_bytes as usize;
        (0..self.len.div_ceil(step))
            .map(|i| Span {
                ptr: (self.base + i * step) as *mut u8,
                len: (self.len - i * step).min(step),
                buf_index: Some(i as u16),
            })
            .collect()
    }
}

/// A piece of the stream: `len` bytes at `ptr`, in registered buffer `buf_index` if any.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    pub(super) ptr: *mut u8,
    pub(super) len: usize,
    pub(super) buf_index: Option<u16>,
}

impl Span {
    pub(super) fn plain(ptr: *const u8, len: usize) -> Span {
        Span {
            ptr: ptr as *mut u8,
            len,
            buf_index: None,
        }
    }
}

/// The spans of `[ptr, ptr+len)`: the registration's slots when `slots` registers exactly
/// that memory, else one unregistered span.
pub(super) fn spans_of(ptr: *const u8, len: usize, slots: Option<&Slots>) -> Vec<Span> {
    match slots {
        Some(s) if s.base == ptr as usize && s.len == len => s.spans(),
        _ => vec![Span::plain(ptr, len)],
    }
}

impl Ring {
    /// Registers `[ptr, ptr + len)` as fixed buffers, one iovec per ≤ 1 GiB slot.
    ///
    /// # Safety
    ///
    /// The memory must stay valid (not freed, not unmapped) until [`Ring::unregister`] is
    /// called; the caller (a guard that borrows the array) guarantees it.
    pub(super) unsafe fn register(&mut self, ptr: *const u8, len: usize) -> Result<Slots> {
        if self.registered {
            self.unregister();
        }
        // The calling thread is the one every transfer of this registration comes from.
        self.claim()?;
        let slot_bytes = MAX_SLOT_BYTES;
        let iovecs: Vec<libc::iovec> = (0..len.div_ceil(slot_bytes as usize))
            .map(|i| {
                let off = i * slot_bytes as usize;
                libc::iovec {
                    iov_base: ptr.wrapping_add(off) as *mut libc::c_void,
                    iov_len: (len - off).min(slot_bytes as usize),
                }
            })
            .collect();
        if !iovecs.is_empty() {
            // SAFETY: every iovec lies inside the caller's array, which (by this function's
            // contract) outlives the registration; the table is dropped in `unregister`.
            unsafe { self.ring.submitter().register_buffers(&iovecs) }.map_err(|source| {
                Error::Setup {
                    what: "io_uring_register(IORING_REGISTER_BUFFERS)",
                    source,
                }
            })?;
            self.registered = true;
        }
        Ok(Slots {
            base: ptr as usize,
            len,
            slot_bytes,
        })
    }

    /// Drops the buffer table. Only called when no SQE is in flight (every transfer drains
    /// before returning), so the kernel holds no reference into it.
    pub(super) fn unregister(&mut self) {
        if std::mem::take(&mut self.registered) {
            // An error here means nothing was registered; nothing to undo.
            let _ = self.ring.submitter().unregister_buffers();
        }
    }

    /// Keeps the first registration refusal as a notice; returns the registration if any.
    pub(super) fn note_refusal(&mut self, r: Result<Slots>) -> Option<Slots> {
        match r {
            Ok(s) => Some(s),
            Err(e) => {
                self.register_refused.get_or_insert_with(|| {
                    format!(
                        "{}: transfers run unregistered (plain SEND/RECV)",
                        refusal(&e)
                    )
                });
                None
            }
        }
    }

    /// Registers `bytes` (read-only use: sends) for the life of the returned guard.
    pub(crate) fn register_send<'a>(&'a mut self, bytes: &'a [u8]) -> Registration<'a> {
        // SAFETY: the guard borrows `bytes` for 'a and unregisters in Drop.
        let slots = unsafe { self.register(bytes.as_ptr(), bytes.len()) };
        Registration::new(self, bytes.as_ptr() as *mut u8, bytes.len(), false, slots)
    }

    /// Registers `bytes` (sends and receives) for the life of the returned guard.
    pub(crate) fn register_recv<'a>(&'a mut self, bytes: &'a mut [u8]) -> Registration<'a> {
        // SAFETY: the guard borrows `bytes` exclusively for 'a and unregisters in Drop.
        let slots = unsafe { self.register(bytes.as_ptr(), bytes.len()) };
        Registration::new(self, bytes.as_mut_ptr(), bytes.len(), true, slots)
    }
}

/// An array registered as fixed buffers on a ring, borrowed for `'a`: the borrow checker
/// proves the array outlives the registration, and Drop unregisters.
pub(crate) struct Registration<'a> {
    ring: &'a mut Ring,
    ptr: *mut u8,
    len: usize,
    writable: bool,
    slots: Option<Slots>,
    reason: Option<String>,
    _borrow: PhantomData<&'a mut [u8]>,
}

impl<'a> Registration<'a> {
    pub(super) fn new(
        ring: &'a mut Ring,
        ptr: *mut u8,
        len: usize,
        writable: bool,
        slots: Result<Slots>,
    ) -> Self {
        let (slots, reason) = match slots {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(refusal(&e))),
        };
        Registration {
            ring,
            ptr,
            len,
            writable,
            slots,
            reason,
            _borrow: PhantomData,
        }
    }

    /// True when the kernel accepted the registration (and the array is not empty).
    pub(crate) fn is_registered(&self) -> bool {
        self.slots.is_some() && self.len > 0
    }

    /// Why the registration was refused.
    pub(crate) fn fallback_reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// The registered bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        // SAFETY: `[ptr, ptr+len)` is the slice borrowed for 'a (from a `&[u8]` or
        // `&mut [u8]`), and no SQE is in flight outside `transfer`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// Moves the whole array in direction `dir` on `fd`.
    pub(crate) fn transfer(
        &mut self,
        fd: BorrowedFd<'_>,
        dir: Direction,
        tuning: &UringTuning,
        idle_timeout: Option<Duration>,
    ) -> Result<()> {
        assert!(
            self.writable || dir == Direction::Send,
            "receive into a send-only registration"
        );
        // SAFETY: the memory is borrowed for 'a (exclusively when `writable`, which a receive
        // requires); `slots` describes the registration of exactly this memory on this ring.
        unsafe {
            self.ring.transfer(
                fd.as_raw_fd(),
                dir,
                &spans_of(self.ptr, self.len, self.slots.as_ref()),
                (tuning, idle_timeout),
                None,
            )
        }
        .map(drop)
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.ring.unregister();
    }
}
