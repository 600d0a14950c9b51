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

/// Why [`QEMU_USER_32_NOT_RUN`]'s tests cannot run there.
const SMAPS_32: &str = "QEMU user mode runs a 32-bit guest inside address space it reserved \
    up front, and makes up /proc/self/smaps and maps for it (no Rss, Locked or VmFlags)";

/// The tests that QEMU user mode cannot run for a 32-bit guest (i686 on
/// another host, armv7), besides [`QEMU_USER_NOT_RUN`], with the reason:
/// the emulator serves the guest from one large mapping it reserved up
/// front, so the guest's own mappings are not the host kernel's. They run
/// in the armv7 and i686 VMs, and i686's natively.
pub const QEMU_USER_32_NOT_RUN: &[(&str, &str)] = &[
    ("a_forked_child_is_not_under_its_parents_lock_all", SMAPS_32),
    (
        "a_guard_dropped_under_lock_all_leaves_the_buffer_locked",
        SMAPS_32,
    ),
    (
        "a_guard_or_unlock_over_a_locked_buf_leaves_the_secret_locked",
        SMAPS_32,
    ),
    (
        "an_explicit_unlock_under_lock_all_unlocks_the_region",
        SMAPS_32,
    ),
    (
        "an_inner_guard_dropped_leaves_the_outer_guards_pages_locked",
        SMAPS_32,
    ),
    ("lock_all_future_locks_later_mappings", SMAPS_32),
    ("lock_all_onfault_locks_pages_only_when_touched", SMAPS_32),
    ("locked_slice_adds_its_pages", SMAPS_32),
    (
        "unlock_all_keeps_what_guards_hold_and_unlocks_the_rest",
        SMAPS_32,
    ),
    (
        "a_fork_child_locks_fresh_memory_where_its_parent_has_a_secret_buffer",
        SMAPS_32,
    ),
    (
        "a_fork_child_of_a_parent_holding_128_ranges_takes_128_of_its_own",
        SMAPS_32,
    ),
    (
        "a_fork_child_unlocks_pages_that_a_thread_of_its_parent_holds",
        SMAPS_32,
    ),
    (
        "an_explicit_unlock_under_lock_all_leaves_what_guards_and_buffers_hold",
        SMAPS_32,
    ),
    (
        "guards_taken_and_dropped_on_four_threads_keep_every_page_locked_as_the_live_guards_say",
        SMAPS_32,
    ),
    (
        "the_129th_distinct_range_is_too_many_locks_before_any_syscall",
        SMAPS_32,
    ),
    (
        "locked_buf_is_locked_excluded_from_dumps_and_cleared",
        SMAPS_32,
    ),
    (
        "new_takes_memfd_secret_where_the_kernel_offers_it",
        SMAPS_32,
    ),
    (
        "pool::guards_work_after_lock_all_current_and_future",
        SMAPS_32,
    ),
    ("pool::guards_work_after_the_swap_daemon_recipe", SMAPS_32),
    (
        "pool::slots_are_zeroed_aligned_distinct_locked_and_given_back",
        SMAPS_32,
    ),
    (
        "unlock_raw_of_unmapped_memory_is_not_mapped_and_says_so",
        "an unmapped 32-bit guest page is still mapped in QEMU's reservation, so munlock of \
         it succeeds",
    ),
    (
        "future_mappings_beyond_the_limit_fail_with_eagain",
        "QEMU maps a 32-bit guest's memory into its reservation with MAP_FIXED, which the \
         host refuses with EAGAIN, and QEMU passes that on instead of ENOMEM",
    ),
    (
        "another_process_cannot_read_a_secretmem_secret_through_proc_mem",
        "a 32-bit guest address is not the host address that /proc/<pid>/mem reads",
    ),
    (
        "pool::guards_are_guard_regions_where_the_kernel_offers_them_and_fault",
        "QEMU copies a 32-bit guest's write(2) buffer through its own mapping of the guard \
         page instead of letting the host kernel fault",
    ),
    (
        "sealed_buffers_fault_outside_a_borrow_and_on_writes_through_a_read",
        SMAPS_32,
    ),
    (
        "status_and_a_kept_reader_agree_with_std_while_the_layout_changes",
        "/proc/self/status is QEMU's own (a 64-bit process), whose VmSize does not grow \
         with a 32-bit guest's mappings",
    ),
];

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
