//! A seccomp filter under which `io_uring_setup` fails with `EPERM`, as container default
//! profiles do, for the tests that check the fallback (tests/faults.rs for the library,
//! cli/tests/cli_faults.rs for the binary).

/// `AUDIT_ARCH_*` of this target (linux/audit.h), checked first by the filter.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

/// Installs, for every thread of this process and everything it starts, a seccomp filter
/// under which `io_uring_setup` fails with `EPERM` and every other syscall is allowed: what
/// Docker's and containerd's default profiles do.
pub fn deny_io_uring_setup() {
    let st = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let ret = libc::BPF_RET | libc::BPF_K;
    let mut filter = [
        st(load, 0, 0, 4), // seccomp_data.arch
        st(jeq, 1, 0, AUDIT_ARCH),
        st(ret, 0, 0, libc::SECCOMP_RET_ALLOW), // another ABI: not ours to judge
        st(load, 0, 0, 0),                      // seccomp_data.nr
        st(jeq, 0, 1, libc::SYS_io_uring_setup as u32),
        st(ret, 0, 0, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        st(ret, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "prctl(PR_SET_NO_NEW_PRIVS)");
    // SAFETY: `prog` points to `filter`, which outlives the call (the kernel copies it).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &prog as *const libc::sock_fprog,
        )
    };
    assert_eq!(
        rc,
        0,
        "seccomp(SET_MODE_FILTER, TSYNC): {}",
        std::io::Error::last_os_error()
    );
    // The filter works: a raw io_uring_setup is refused with EPERM.
    let mut params = [0u8; 120]; // struct io_uring_params
    // SAFETY: io_uring_setup(1, params) with a writable, large-enough params struct; it is
    // refused before the kernel looks at it.
    let rc = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    let err = std::io::Error::last_os_error();
    assert!(
        rc == -1 && err.raw_os_error() == Some(libc::EPERM),
        "io_uring_setup under the filter: rc {rc}, {err}"
    );
}

/// A reason names EPERM (by name or by its text) and the likely cause.
#[track_caller]
pub fn assert_names_eperm(reason: &str, what: &str) {
    assert!(
        reason.contains("EPERM")
            || reason.contains("Operation not permitted")
            || reason.contains("os error 1)"),
        "{what}: the reason does not name EPERM: {reason:?}"
    );
    assert!(
        reason.contains("io_uring_setup"),
        "{what}: the reason does not name io_uring_setup: {reason:?}"
    );
    assert!(
        reason.contains("seccomp"),
        "{what}: the reason does not hint at seccomp: {reason:?}"
    );
}
