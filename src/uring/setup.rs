//! Ring setup: the sizes every engine's ring (and the probe's) is built with.

use io_uring::IoUring;

/// SQ size: one chain of at most [`MAX_CHAIN_SQES`] plus its `POLL_ADD`, or the cancels of one
/// chain. Small on purpose: before Linux 5.12 ring memory counts against `RLIMIT_MEMLOCK`
/// (and without `CAP_IPC_LOCK` a 64 KiB limit refused a 512/4096-entry ring with ENOMEM here
/// even on 6.18); 64 SQEs + 256 CQEs is 8 KiB.
pub(crate) const SQ_ENTRIES: u32 = 64;
/// CQ size: a chain's CQEs plus the `SEND_ZC` notifications still to come.
pub(crate) const CQ_ENTRIES: u32 = 256;
/// Longest link chain ([`UringTuning::chain_sqes`] is clamped to it).
pub const MAX_CHAIN_SQES: u32 = 32;

/// Builds a ring of the size every engine uses (the probe uses it too, so "available" means
/// "an engine's ring can be set up").
pub(crate) fn build_ring() -> std::io::Result<IoUring> {
    IoUring::builder()
        .setup_cqsize(CQ_ENTRIES)
        .build(SQ_ENTRIES)
}
