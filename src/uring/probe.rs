//! One-time probe of what the running kernel's io_uring offers.

use std::sync::OnceLock;

use io_uring::{IoUring, opcode};

use super::setup::{self, RingFlags, RingSetup};

/// What the io_uring probe found. Obtained with [`probe`]; computed once per process.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Probe {
    /// True when a ring could be set up and every opcode ringxfer needs is supported.
    pub available: bool,
    /// Why io_uring is not usable (`None` when it is), e.g.
    /// `"io_uring_setup failed: Operation not permitted (os error 1)"` under a seccomp profile
    /// or with `kernel.io_uring_disabled=2`.
    pub reason: Option<String>,
    /// `uname -r` of the running kernel (from `/proc/sys/kernel/osrelease`).
    pub kernel_release: String,
    /// Names of the opcodes ringxfer can use that the kernel reports as supported
    /// (`IORING_REGISTER_PROBE`, Linux 5.6).
    pub opcodes: Vec<&'static str>,
    /// `IORING_OP_SEND_ZC` is supported (Linux 6.0).
    pub send_zc: bool,
    /// `IORING_FEAT_EXT_ARG` (Linux 5.11): waits with a timeout, needed for idle timeouts.
    pub ext_arg: bool,
    /// How every ring of this process is set up (`None` when no ring could be): the best
    /// level of `SINGLE_ISSUER | DEFER_TASKRUN`, then `COOP_TASKRUN | TASKRUN_FLAG`, then no
    /// flags, that the kernel accepts — or what `RINGXFER_RING_FLAGS` forces.
    pub ring_flags: Option<RingFlags>,
}

/// Opcodes without which the uring backend does not run (Linux 5.6 has them all).
const REQUIRED: &[(u8, &str)] = &[
    (opcode::Send::CODE, "SEND"),
    (opcode::Recv::CODE, "RECV"),
    (opcode::PollAdd::CODE, "POLL_ADD"),
    (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
];

/// Opcodes used when available.
const OPTIONAL: &[(u8, &str)] = &[
    (opcode::SendZc::CODE, "SEND_ZC"),
    (opcode::ReadFixed::CODE, "READ_FIXED"),
    (opcode::WriteFixed::CODE, "WRITE_FIXED"),
];

/// Probes io_uring once per process (ring setup + `IORING_REGISTER_PROBE`) and caches it.
pub fn probe() -> &'static Probe {
    static PROBE: OnceLock<Probe> = OnceLock::new();
    PROBE.get_or_init(run_probe)
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn run_probe() -> Probe {
    let kernel_release = kernel_release();
    let mut p = Probe {
        available: false,
        reason: None,
        kernel_release,
        opcodes: Vec::new(),
        send_zc: false,
        ext_arg: false,
        ring_flags: None,
    };
    let (ring, flags) = match setup_ring() {
        Ok(r) => r,
        Err(why) => {
            p.reason = Some(why);
            return p;
        }
    };
    p.ext_arg = ring.params().is_feature_ext_arg();
    let mut probe = io_uring::Probe::new();
    if let Err(e) = ring.submitter().register_probe(&mut probe) {
        p.reason = Some(format!(
            "IORING_REGISTER_PROBE failed: {e} (kernel older than 5.6)"
        ));
        return p;
    }
    let missing: Vec<&str> = REQUIRED
        .iter()
        .filter(|(code, _)| !probe.is_supported(*code))
        .map(|(_, name)| *name)
        .collect();
    for (code, name) in REQUIRED.iter().chain(OPTIONAL) {
        if probe.is_supported(*code) {
            p.opcodes.push(name);
        }
    }
    p.send_zc = probe.is_supported(opcode::SendZc::CODE);
    if missing.is_empty() {
        p.available = true;
        p.ring_flags = Some(flags);
    } else {
        p.reason = Some(format!(
            "kernel lacks io_uring opcodes {}",
            missing.join(", ")
        ));
    }
    p
}

/// Sets up the probe's ring with the best flags the kernel accepts (or the forced ones): the
/// ring and the flags every engine's ring will use, or why none could be set up.
fn setup_ring() -> Result<(IoUring, RingFlags), String> {
    let explain = |e: &std::io::Error| {
        let hint = match e.raw_os_error() {
            Some(libc::EPERM) => " (seccomp filter or kernel.io_uring_disabled)",
            Some(libc::ENOSYS) => " (kernel built without io_uring)",
            _ => "",
        };
        format!("io_uring_setup failed: {e}{hint}")
    };
    match setup::forced_flags()? {
        Some((level, registered_ring_fd)) => {
            let ring = setup::build_raw(level).map_err(|e| {
                format!(
                    "{}={} forces IORING_SETUP flags [{}]: {}",
                    setup::RING_FLAGS_ENV,
                    std::env::var(setup::RING_FLAGS_ENV).unwrap_or_default(),
                    level.flag_names().join(" | "),
                    explain(&e)
                )
            })?;
            let flags = RingFlags {
                setup: level,
                registered_ring_fd,
                forced: true,
            };
            Ok((ring, flags))
        }
        None => {
            let mut last = None;
            for &level in setup::AUTO_LEVELS {
                match setup::build_raw(level) {
                    Ok(ring) => {
                        let flags = RingFlags {
                            setup: level,
                            registered_ring_fd: setup::default_ring_fd(),
                            forced: false,
                        };
                        return Ok((ring, flags));
                    }
                    // A flag this kernel does not know: try the next level.
                    Err(e)
                        if e.raw_os_error() == Some(libc::EINVAL) && level != RingSetup::None =>
                    {
                        last = Some(e);
                    }
                    Err(e) => return Err(explain(&e)),
                }
            }
            Err(explain(&last.expect("the last level returns")))
        }
    }
}
