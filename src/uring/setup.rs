//! Ring setup: the sizes and setup flags every engine's ring (and the probe's) is built with,
//! the registered ring fd, and the thread that owns a ring.
//!
//! # Setup flags
//!
//! The probe decides once per process which of these levels the kernel takes, best first
//! (liburing's `io_uring_setup_flags(7)` calls the first "the default mode"):
//!
//! | level    | `io_uring_setup` flags                            | kernel |
//! |----------|---------------------------------------------------|--------|
//! | `defer`  | `SINGLE_ISSUER \| DEFER_TASKRUN`                  | 6.1    |
//! | `single` | `SINGLE_ISSUER`                                   | 6.0    |
//! | `coop`   | `COOP_TASKRUN \| TASKRUN_FLAG`                    | 5.19   |
//! | `none`   | (none)                                            | 5.6    |
//!
//! The automatic choice tries `defer`, then `coop`, then `none` (`single` is only reachable by
//! forcing it). A kernel that does not know a flag refuses the setup with `EINVAL`; any other
//! error ends the probe (io_uring is then unavailable and says why).
//!
//! `RINGXFER_RING_FLAGS=LEVEL[,fd|,nofd]` forces a level (and whether the ring fd is
//! registered) for the whole process — a **diagnostic** for measuring the flags and for
//! testing each fallback level; a kernel that refuses the forced level makes io_uring
//! unavailable with that reason, and a value that is not one of these does too.
//!
//! # The owning thread
//!
//! `SINGLE_ISSUER` ties a ring to one task (thread): submissions and `DEFER_TASKRUN` waits
//! from any other fail with `EEXIST`. A registered ring fd is an index into the registering
//! thread's own table. An [`crate::Engine`] is `Send`, so its ring may be used from several
//! threads one after another. Such rings are created with `IORING_SETUP_R_DISABLED` and
//! enabled (`IORING_REGISTER_ENABLE_RINGS`, which makes the caller the issuer) by the first
//! thread that uses them; when a later call comes from another thread, the ring is rebuilt
//! for that thread. That is sound because between calls the ring holds nothing: every call
//! drains every CQE before it returns, and registered buffers live only as long as a
//! registration guard, which borrows the engine and is neither `Send` nor `Sync`, so all its
//! calls come from the thread that made it. Rebuilding costs one `io_uring_setup` (not
//! measured separately; it is part of every engine creation);
//! an engine that stays on one thread never pays it.

use std::io;
use std::thread::{self, ThreadId};
use std::time::Duration;

use io_uring::IoUring;

use super::registry::FileTable;

/// SQ size: one chain of at most [`MAX_CHAIN_SQES`] plus its `POLL_ADD`, or the cancels of one
/// chain. Small on purpose: before Linux 5.12 ring memory counts against `RLIMIT_MEMLOCK`
/// (and without `CAP_IPC_LOCK` a 64 KiB limit refused a 512/4096-entry ring with ENOMEM here
/// even on 6.18); 64 SQEs + 256 CQEs is 8 KiB.
pub(crate) const SQ_ENTRIES: u32 = 64;
/// CQ size: a chain's CQEs plus the `SEND_ZC` notifications still to come.
pub(crate) const CQ_ENTRIES: u32 = 256;
/// Longest link chain ([`UringTuning::chain_sqes`](super::UringTuning::chain_sqes) is clamped
/// to it).
pub const MAX_CHAIN_SQES: u32 = 32;

/// The environment variable that forces the ring's setup flags (a diagnostic; see the module
/// docs of `src/uring/setup.rs`).
pub const RING_FLAGS_ENV: &str = "RINGXFER_RING_FLAGS";

// Kernel ABI (include/uapi/linux/io_uring.h); the io-uring crate keeps its copy private.
const IORING_SETUP_R_DISABLED: u32 = 1 << 6;
const IORING_SETUP_COOP_TASKRUN: u32 = 1 << 8;
const IORING_SETUP_TASKRUN_FLAG: u32 = 1 << 9;
const IORING_SETUP_SINGLE_ISSUER: u32 = 1 << 12;
const IORING_SETUP_DEFER_TASKRUN: u32 = 1 << 13;
const IORING_ENTER_GETEVENTS: u32 = 1 << 0;
const IORING_ENTER_EXT_ARG: u32 = 1 << 3;
const IORING_ENTER_REGISTERED_RING: u32 = 1 << 4;
const IORING_REGISTER_RING_FDS: libc::c_uint = 20;
const IORING_UNREGISTER_RING_FDS: libc::c_uint = 21;

/// Which setup flags a ring is built with (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
#[non_exhaustive]
pub enum RingSetup {
    /// No setup flags (Linux 5.6).
    None,
    /// `IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG` (Linux 5.19): completions do
    /// not interrupt the task; their work runs at its next kernel entry.
    Coop,
    /// `IORING_SETUP_SINGLE_ISSUER` (Linux 6.0): one thread submits.
    Single,
    /// `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN` (Linux 6.1): completion work
    /// runs only when the issuer waits (`io_uring_enter` with `GETEVENTS`).
    Defer,
}

impl RingSetup {
    /// The name used by `RINGXFER_RING_FLAGS`: `none`, `coop`, `single` or `defer`.
    pub fn name(self) -> &'static str {
        match self {
            RingSetup::None => "none",
            RingSetup::Coop => "coop",
            RingSetup::Single => "single",
            RingSetup::Defer => "defer",
        }
    }

    /// The kernel's names of the flags (without the `IORING_SETUP_` prefix).
    pub fn flag_names(self) -> &'static [&'static str] {
        match self {
            RingSetup::None => &[],
            RingSetup::Coop => &["COOP_TASKRUN", "TASKRUN_FLAG"],
            RingSetup::Single => &["SINGLE_ISSUER"],
            RingSetup::Defer => &["SINGLE_ISSUER", "DEFER_TASKRUN"],
        }
    }

    /// True when the ring belongs to the thread that enabled it (`SINGLE_ISSUER`).
    pub(crate) fn single_issuer(self) -> bool {
        matches!(self, RingSetup::Single | RingSetup::Defer)
    }

    fn bits(self) -> u32 {
        match self {
            RingSetup::None => 0,
            RingSetup::Coop => IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
            // Disabled until the thread that uses it enables it (it becomes the issuer).
            RingSetup::Single => IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_R_DISABLED,
            RingSetup::Defer => {
                IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED
            }
        }
    }
}

/// How every ring of this process is set up: decided once by the [probe](crate::probe()).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct RingFlags {
    /// The setup flags.
    pub setup: RingSetup,
    /// The ring's fd is registered (`IORING_REGISTER_RING_FDS`, Linux 5.18) and every
    /// `io_uring_enter` passes its index with `IORING_ENTER_REGISTERED_RING`, sparing the
    /// kernel a file-table lookup per call.
    pub registered_ring_fd: bool,
    /// True when `RINGXFER_RING_FLAGS` chose these, not the probe.
    pub forced: bool,
}

/// Whether the ring fd is registered when nothing forces it: chosen by the measurement in
/// `src/uring/mod.rs`.
const REGISTER_RING_FD_DEFAULT: bool = false;

/// What `RINGXFER_RING_FLAGS` asks for: the level and, if said, whether to register the fd.
/// `Err` names the bad value.
pub(crate) fn forced_flags() -> Result<Option<(RingSetup, bool)>, String> {
    let Ok(v) = std::env::var(RING_FLAGS_ENV) else {
        return Ok(None);
    };
    let bad = || {
        format!(
            "{RING_FLAGS_ENV}={v:?} is not one of none, coop, single, defer \
             (optionally followed by ,fd or ,nofd)"
        )
    };
    let (level, fd) = match v.split_once(',') {
        Some((l, "fd")) => (l, true),
        Some((l, "nofd")) => (l, false),
        Some(_) => return Err(bad()),
        None => (v.as_str(), REGISTER_RING_FD_DEFAULT),
    };
    let setup = match level {
        "none" => RingSetup::None,
        "coop" => RingSetup::Coop,
        "single" => RingSetup::Single,
        "defer" => RingSetup::Defer,
        _ => return Err(bad()),
    };
    Ok(Some((setup, fd)))
}

/// The levels the probe tries, best first (see the module docs).
pub(crate) const AUTO_LEVELS: &[RingSetup] = &[RingSetup::Defer, RingSetup::Coop, RingSetup::None];

/// Whether the ring fd is registered when the probe chooses.
pub(crate) const fn default_ring_fd() -> bool {
    REGISTER_RING_FD_DEFAULT
}

/// Builds a ring of the size every engine uses with `setup`'s flags, still disabled when the
/// level is `SINGLE_ISSUER` (see [`RingIo::enable`]).
pub(crate) fn build_raw(setup: RingSetup) -> io::Result<IoUring> {
    let mut b = IoUring::builder();
    b.setup_cqsize(CQ_ENTRIES);
    // The builder has no way to set arbitrary bits; use its methods for the ones it names.
    let bits = setup.bits();
    if bits & IORING_SETUP_R_DISABLED != 0 {
        b.setup_r_disabled();
    }
    if bits & IORING_SETUP_COOP_TASKRUN != 0 {
        b.setup_coop_taskrun();
    }
    if bits & IORING_SETUP_TASKRUN_FLAG != 0 {
        b.setup_taskrun_flag();
    }
    if bits & IORING_SETUP_SINGLE_ISSUER != 0 {
        b.setup_single_issuer();
    }
    if bits & IORING_SETUP_DEFER_TASKRUN != 0 {
        b.setup_defer_taskrun();
    }
    b.build(SQ_ENTRIES)
}

/// Builds a ring with the probe's flags, not yet enabled: the first thread that uses it does
/// that ([`RingIo::ready_here`]). `Err` when the probe found io_uring unusable, or when the
/// setup fails.
pub(crate) fn build_ring() -> io::Result<RingIo> {
    let p = super::probe();
    let Some(flags) = p.ring_flags else {
        return Err(io::Error::other(
            p.reason
                .clone()
                .unwrap_or_else(|| "io_uring unavailable".into()),
        ));
    };
    Ok(RingIo {
        ring: build_raw(flags.setup)?,
        flags,
        owner: None,
        ring_index: None,
        files: FileTable::default(),
        overflow_flushes: 0,
    })
}

/// A ring with its flags, its owning thread and its registered fd: what the completion loop
/// submits and waits through. Derefs to the [`IoUring`] for the queues; `submit*` go through
/// [`RingIo::enter`], which uses the registered fd when there is one.
pub(crate) struct RingIo {
    ring: IoUring,
    flags: RingFlags,
    /// The thread the ring was enabled for (`None`: not enabled yet).
    owner: Option<ThreadId>,
    /// Index of the registered ring fd in the owner's table.
    ring_index: Option<u32>,
    /// The sparse file table of fixed files (see `src/uring/registry.rs`); a rebuilt ring
    /// starts without one.
    pub(super) files: FileTable,
    /// `enter` calls made while the kernel flagged overflowed CQEs
    /// ([`crate::EngineStats::cq_overflow_flushes`]).
    pub(super) overflow_flushes: u64,
}

impl std::ops::Deref for RingIo {
    type Target = IoUring;
    fn deref(&self) -> &IoUring {
        &self.ring
    }
}

impl std::ops::DerefMut for RingIo {
    fn deref_mut(&mut self) -> &mut IoUring {
        &mut self.ring
    }
}

impl RingIo {
    /// The flags the ring was built with.
    pub(crate) fn flags(&self) -> RingFlags {
        self.flags
    }

    /// Installs a set's sockets in the ring's file table ([`FileTable::install`]).
    pub(super) fn install_files(&mut self, fds: &[std::os::fd::RawFd]) -> io::Result<()> {
        self.files.install(&self.ring, fds)
    }

    /// Empties the slots a set filled ([`FileTable::clear`]).
    pub(super) fn clear_files(&mut self) {
        self.files.clear(&self.ring)
    }

    /// Makes the ring usable from the calling thread: enables it on first use; rebuilds it
    /// when it belongs to another thread (`SINGLE_ISSUER`, or a registered ring fd).
    ///
    /// Only to be called while nothing is in flight and no buffer is registered.
    pub(crate) fn ready_here(&mut self) -> io::Result<()> {
        let bound = self.flags.setup.single_issuer() || self.ring_index.is_some();
        match self.owner {
            None => self.enable(),
            Some(t) if bound && t != thread::current().id() => self.rebuild_here(),
            Some(_) => Ok(()),
        }
    }

    /// Makes the ring ready for the calling thread: enables a disabled ring (the caller
    /// becomes its issuer) and registers its fd in this thread's table when asked.
    fn enable(&mut self) -> io::Result<()> {
        if self.flags.setup.single_issuer() {
            self.ring.submitter().register_enable_rings()?;
        }
        self.owner = Some(thread::current().id());
        if self.flags.registered_ring_fd {
            // Refused (e.g. EBUSY: the thread's table of 16 is full): enter by fd instead.
            self.ring_index = self.register_fd().ok();
        }
        Ok(())
    }

    /// Replaces the ring by a new one for the calling thread, with the same flags.
    fn rebuild_here(&mut self) -> io::Result<()> {
        let ring = build_raw(self.flags.setup)?;
        self.unregister_fd();
        self.ring = ring;
        self.owner = None;
        self.ring_index = None;
        self.files = FileTable::default();
        self.enable()
    }

    fn register_fd(&self) -> io::Result<u32> {
        use std::os::fd::AsRawFd;
        #[repr(C)]
        struct RsrcUpdate {
            offset: u32,
            resv: u32,
            data: u64,
        }
        let mut up = RsrcUpdate {
            offset: u32::MAX,
            resv: 0,
            data: self.ring.as_raw_fd() as u64,
        };
        // SAFETY: IORING_REGISTER_RING_FDS reads and writes one `io_uring_rsrc_update`
        // (layout above, as in the uapi header), which lives across the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                self.ring.as_raw_fd(),
                IORING_REGISTER_RING_FDS,
                &mut up as *mut RsrcUpdate,
                1u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(up.offset)
    }

    /// Drops the registered fd from the owner's table; only possible from the owner (another
    /// thread's table entry lives until that thread exits, holding the old ring's file).
    fn unregister_fd(&mut self) {
        use std::os::fd::AsRawFd;
        if let Some(i) = self.ring_index.take()
            && self.owner == Some(thread::current().id())
        {
            #[repr(C)]
            struct RsrcUpdate {
                offset: u32,
                resv: u32,
                data: u64,
            }
            let up = RsrcUpdate {
                offset: i,
                resv: 0,
                data: 0,
            };
            // SAFETY: IORING_UNREGISTER_RING_FDS reads one `io_uring_rsrc_update`; `up`
            // lives across the call. An error leaves nothing to undo.
            let _ = unsafe {
                libc::syscall(
                    libc::SYS_io_uring_register,
                    self.ring.as_raw_fd(),
                    IORING_UNREGISTER_RING_FDS,
                    &up as *const RsrcUpdate,
                    1u32,
                )
            };
        }
    }

    /// `io_uring_enter`: submits what the SQ holds and, when `want > 0`, waits for that many
    /// CQEs, until `timeout` if given (`EXT_ARG`, Linux 5.11). `GETEVENTS` is also set when
    /// the kernel flags pending task work (`TASKRUN_FLAG`) or a CQ overflow, so
    /// `DEFER_TASKRUN` work runs on every wait.
    /// `getevents`: set `GETEVENTS` even with `want == 0` (run deferred task work, reap
    /// without waiting).
    fn enter(
        &mut self,
        want: u32,
        timeout: Option<Duration>,
        getevents: bool,
    ) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let (to_submit, taskrun, overflow) = {
            let sq = self.ring.submission();
            (sq.len() as u32, sq.taskrun(), sq.cq_overflow())
        };
        let mut flags = 0;
        if want > 0 || taskrun || overflow || getevents {
            flags |= IORING_ENTER_GETEVENTS;
        }
        self.overflow_flushes += u64::from(overflow);
        let (fd, reg) = match self.ring_index {
            Some(i) => (i as libc::c_int, IORING_ENTER_REGISTERED_RING),
            None => (self.ring.as_raw_fd(), 0),
        };
        #[repr(C)]
        struct GeteventsArg {
            sigmask: u64,
            sigmask_sz: u32,
            min_wait_usec: u32,
            ts: u64,
        }
        let ts;
        let arg;
        let (argp, argsz): (*const libc::c_void, usize) = match timeout {
            Some(t) => {
                ts = libc::timespec {
                    tv_sec: t.as_secs() as libc::time_t,
                    tv_nsec: t.subsec_nanos() as libc::c_long,
                };
                arg = GeteventsArg {
                    sigmask: 0,
                    sigmask_sz: 0,
                    min_wait_usec: 0,
                    ts: &ts as *const libc::timespec as u64,
                };
                flags |= IORING_ENTER_EXT_ARG;
                (
                    &arg as *const GeteventsArg as *const libc::c_void,
                    std::mem::size_of::<GeteventsArg>(),
                )
            }
            None => (std::ptr::null(), 0),
        };
        // SAFETY: `fd` is this ring's fd or its registered index (flagged); with EXT_ARG,
        // `argp` points to an `io_uring_getevents_arg` whose `ts` points to a timespec, both
        // alive across the call; SQEs handed over were pushed under their own contracts.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_io_uring_enter,
                fd,
                to_submit,
                want,
                flags | reg,
                argp,
                argsz,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(rc as usize)
    }

    /// Submits what the SQ holds.
    pub(crate) fn submit(&mut self) -> io::Result<usize> {
        self.enter(0, None, false)
    }

    /// Submits what the SQ holds and runs the kernel's pending completion work
    /// (`GETEVENTS` with `min_complete` 0: `DEFER_TASKRUN`'s deferred work runs only then),
    /// without waiting.
    pub(crate) fn submit_and_flush(&mut self) -> io::Result<usize> {
        self.enter(0, None, true)
    }

    /// Submits what the SQ holds and waits for `want` CQEs.
    pub(crate) fn submit_and_wait(&mut self, want: usize) -> io::Result<usize> {
        self.enter(want as u32, None, false)
    }

    /// Submits what the SQ holds and waits for `want` CQEs or `timeout` (`ETIME`).
    pub(crate) fn submit_and_wait_timeout(
        &mut self,
        want: usize,
        timeout: Duration,
    ) -> io::Result<usize> {
        self.enter(want as u32, Some(timeout), false)
    }
}

impl Drop for RingIo {
    fn drop(&mut self) {
        self.unregister_fd();
    }
}
