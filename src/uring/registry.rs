//! Fixed buffers: the caller's array registered with `IORING_REGISTER_BUFFERS` in slots of at
//! most 1 GiB (one iovec each: a larger one fails with `EFAULT`, case C09), and the RAII guard
//! that borrows the array for as long as the kernel has it in its table.

use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use super::{Ring, UringTuning};
use crate::error::{Error, Result};
use crate::planner::{Direction, MAX_SLOT_BYTES};

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
