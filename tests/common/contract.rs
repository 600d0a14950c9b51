//! The contract between the test harness (`cargo xtask test`, `cargo
//! xtask vm`, `cargo xtask docker`) and the tests: the variables the
//! harness sets and the capability numbers both sides use. The tests
//! include it as `common::contract`, the xtask by path, so that the two
//! sides cannot spell a name differently.
#![allow(dead_code)]

/// Set to `1` for test runs whose runner is QEMU user mode (no `mlock2`,
/// the emulator's `/proc/self/status`, no seccomp).
pub const QEMU_USER_ENV: &str = "MLOCK_TEST_QEMU_USER";

/// The path of a prebuilt doctor example, for a test binary that cannot
/// build it with cargo (inside the VMs).
pub const DOCTOR_ENV: &str = "MLOCK_TEST_DOCTOR";

/// Set (to 1) where the suite is built with the arch's vector extension
/// and runs on a CPU that has it: the suite then requires the CPU to say
/// so.
pub const VECTOR_ENV: &str = "MLOCK_TEST_VECTOR";

/// `1` or `0` in the VMs: whether the kernel was booted with
/// `memfd_secret` on (`secretmem.enable=1`). Set by `xtask/vm/init.sh`.
pub const SECRETMEM_ENV: &str = "MLOCK_TEST_SECRETMEM";

/// `CAP_IPC_LOCK`, capabilities(7).
pub const CAP_IPC_LOCK: u32 = 14;

/// `CAP_SYS_RESOURCE`, capabilities(7).
pub const CAP_SYS_RESOURCE: u32 = 24;

/// The tests that cannot run under QEMU user mode, as libtest filters
/// (module paths, matched as substrings), each with the reason. The
/// harness passes each to libtest's `--skip` for those runs, so the tests
/// show as filtered out there, never as passed; they run natively and in
/// the VMs. Run under QEMU anyway, they fail saying why.
pub const QEMU_USER_NOT_RUN: &[(&str, &str)] = &[
    (
        "seccomp::",
        "QEMU user mode has no seccomp (PR_SET_SECCOMP is EINVAL, seccomp(2) ENOSYS)",
    ),
    (
        "abort_from_a_thread::",
        "QEMU 7.2 user mode fails an assertion (qemu_plugin_vcpu_init_hook) when a \
         process forked from a multi-threaded parent starts a thread",
    ),
    (
        "pid_reuse::",
        "QEMU user mode ignores madvise, so the crate tells processes apart by getpid, \
         which a process with its ancestor's PID defeats",
    ),
];
