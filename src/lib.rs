//! Keep a Linux process's memory in RAM.
//!
//! `mlock` wraps `mlockall(2)`, `mlock2(2)`, `munlockall(2)` and the few
//! calls around them that a program needs to lock its memory and to know
//! that it worked. It is `#![no_std]`, allocates nothing, and links no libc:
//! every call is an inline-asm syscall (through the `syscalls` crate) with
//! constants from `linux-raw-sys`. It runs in a static musl binary, in an
//! initramfs `/init` before `/proc` is mounted, and in any ordinary program.
//!
//! The raw backend exists on Linux for x86_64, aarch64, riscv64, i686,
//! 32-bit arm, s390x and little-endian powerpc64, with 4, 16 or 64 KiB
//! pages. On every other target the crate still compiles, and every call
//! returns [`Error::Unsupported`].
//!
//! # Three reasons to lock memory
//!
//! - **Swap daemons.** A process that serves a swap device (a ublk, NBD or
//!   zram-backed helper) deadlocks if the kernel swaps out the daemon's own
//!   pages: to free memory the kernel writes to the device, and the daemon
//!   needs its swapped-out memory to serve that write.
//!   `lock_all(CURRENT | FUTURE)` pins everything it has and will have;
//!   [`daemon`] has the rest of what such a daemon needs.
//! - **Secrets.** A key written to swap can outlive the process on disk.
//!   [`secret::LockedBuf`] holds a secret in `memfd_secret(2)` pages where
//!   the kernel offers them (locked pages otherwise), out of core dumps,
//!   between guard pages, behind a canary, kept from forked children and
//!   zeroed on drop; [`secret`] also turns core dumps off.
//! - **Real time.** A page fault on a critical path costs microseconds, and
//!   a major fault from swap costs milliseconds. Lock, then pre-fault
//!   ([`daemon::prefault`]).
//!
//! # Map
//!
//! At the root, what every user needs to lock memory and to know that it
//! worked; everything else in a module named for its job.
//!
//! | where | what |
//! |---|---|
//! | root: locking | [`lock_all`], [`unlock_all`], [`Flags`]; [`lock`], [`lock_on_fault`], [`unlock`], [`LockGuard`]; [`lock_raw`], [`lock_on_fault_raw`], [`unlock_raw`] (`unsafe`, any address) |
//! | root: policy | [`lock_with`] a [`Config`]; [`Requirement`] (required or best-effort, everywhere in the crate) and [`Outcome`] (what a best-effort action did) |
//! | root: did it work? | [`locked_bytes`], [`is_locked`], [`status()`], [`Status`]; [`Error`] (each names its fix); [`BACKEND_AVAILABLE`] |
//! | [`status`](mod@status) | `/proc/self/status` in depth: [`status::StatusReader`] (a kept descriptor), [`status::StatusParser`] (your own bytes) |
//! | [`limits`] | `RLIMIT_MEMLOCK`, `CAP_IPC_LOCK`, the cgroup's memory limits, and [`limits::preflight`]: will locking work, and if not, why |
//! | [`daemon`] | the swap-daemon kit: IO_FLUSHER, `SCHED_FIFO`, `oom_score_adj`, pre-faulting, and the recipe [`daemon::harden_swap_daemon`] |
//! | [`secret`] | [`secret::LockedBuf`], [`secret::SealedBuf`], [`secret::Pool`] for many small secrets, core dumps |
//! | [`boot`] | an initramfs `/init` without libc: mount `/proc`, write to the console, power off |
//!
//! Which flags to use, and the two rules that hold for all of them:
//!
#![doc = include_str!("../docs/flags.md")]
//!
//! # Locks that others hold
//!
//! The kernel does not count locks: one `munlock(2)` unlocks every page in
//! its range, whoever locked it. The crate keeps its own record, so that
//! its locks compose:
//!
//! - dropping a [`LockGuard`], or [`unlock`], never unlocks a page that
//!   another live [`LockGuard`], a [`secret::LockedBuf`] or a
//!   [`secret::SealedBuf`] holds;
//! - while [`lock_all`] is in force (from its success to [`unlock_all`]),
//!   dropping a guard unlocks nothing: a drop is implicit, and defers to
//!   `lock_all`;
//! - an explicit [`unlock`] or [`unlock_raw`] under [`lock_all`] is a
//!   carve-out, as `munlock(2)` after `mlockall(2)` is in the kernel: it
//!   unlocks the pages that no guard or secret buffer holds, and the kernel
//!   splits the mapping around them (its own selftest, `mlock2-tests`,
//!   checks that). A daemon that locked everything can release a large
//!   cache or a mapped file this way;
//! - [`unlock_all`] locks the guards' and buffers' ranges again after
//!   `munlockall(2)`;
//! - [`lock`] or a [`LockGuard`] over the pages of a live secret buffer
//!   makes no system call: they are locked already (and `mlock(2)` of
//!   `memfd_secret` memory would fail with `ENOMEM`).
//!
//! **One record per process.** The record lives in a page that the kernel
//! gives a child of `fork(2)` zero-filled (`MADV_WIPEONFORK`, Linux 4.14+):
//! a child starts with no entries and no `lock_all` in force, whatever its
//! parent's threads were doing at the fork, and a guard or secret buffer it
//! inherited is dropped as someone else's (nothing unlocked, zeroed or
//! checked). Process IDs play no part, so a child that has its ancestor's
//! PID (in a new PID namespace) is told apart as well. Where the kernel
//! does not apply `MADV_WIPEONFORK` (Linux before 4.14; QEMU user mode
//! before 8.0, which accepts every `madvise` advice and applies none), the
//! crate tells processes apart by `getpid(2)` instead, and there a
//! descendant with its ancestor's PID shares the ancestor's record.
//!
//! **Nothing waits.** The record is a table of atomics: no call waits for
//! another thread, so no thread, of whatever scheduling class, can be held
//! up by another, and these calls are async-signal-safe, even from a
//! handler that interrupted the same thread inside one of them:
//! [`lock_all`], [`unlock_all`], [`lock`], [`lock_on_fault`], [`unlock`],
//! [`lock_raw`], [`unlock_raw`], [`LockGuard::new`],
//! [`LockGuard::on_fault`] and a guard's drop, and the constructors and
//! drops of [`secret::LockedBuf`] and [`secret::SealedBuf`]. (A process's
//! first call maps the record's page with `mmap(2)`, itself
//! async-signal-safe.) A lock and an unlock of the same pages on two
//! threads at once end with the pages locked: after its system call each
//! side looks again, and locks again if the other may have undone it. If
//! the kernel refuses that second lock (another thread took the last of
//! `RLIMIT_MEMLOCK` in those microseconds), the unlock wins.
//!
//! What the crate cannot see: memory locked outside it (`mlock(2)` or
//! `mlockall(2)` through libc, another crate, or a C library), and plain
//! [`lock`] calls, which take a lock nobody owns. A guard or [`unlock`]
//! over such pages unlocks them, as `munlock(2)` would. A program that
//! locks its address space with libc's `mlockall` should lock through this
//! crate instead, or never drop a guard while it relies on that lock. A
//! `clone(2)` child that shares the parent's memory (`CLONE_VM`) without
//! being its thread shares the record too, though not its locks: do not
//! lock through the crate in both. The record holds up to 128 distinct
//! ranges at once; one more guard or buffer fails with
//! [`Error::TooManyLocks`], before any system call.
//!
//! # References
//! - [`mlockall(2)`](https://man7.org/linux/man-pages/man2/mlockall.2.html),
//!   [`mlock2(2)`](https://man7.org/linux/man-pages/man2/mlock2.2.html),
//!   [`madvise(2)`](https://man7.org/linux/man-pages/man2/madvise.2.html),
//!   [`prlimit(2)`](https://man7.org/linux/man-pages/man2/prlimit.2.html),
//!   [`capabilities(7)`](https://man7.org/linux/man-pages/man7/capabilities.7.html),
//!   [`proc_pid_status(5)`](https://man7.org/linux/man-pages/man5/proc_pid_status.5.html)
#![no_std]
#![deny(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod boot;
pub mod daemon;
mod error;
mod flags;
mod held;
pub mod limits;
mod lock;
mod policy;
mod procfs;
pub mod secret;
#[cfg(feature = "serde")]
mod serde_impls;
pub mod status;
mod sys;

pub use error::Error;
pub use flags::Flags;
pub use lock::{
    lock, lock_all, lock_on_fault, lock_on_fault_raw, lock_raw, unlock, unlock_all, unlock_raw,
    LockGuard,
};
pub use policy::{lock_with, Config, Outcome, Requirement};
pub use status::{is_locked, locked_bytes, status, Status};

/// Whether this build has the raw syscall backend (Linux on x86_64,
/// aarch64, riscv64, i686, arm, s390x or powerpc64le). Without it every
/// call returns [`Error::Unsupported`].
pub const BACKEND_AVAILABLE: bool = cfg!(mlock_raw);

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The Rust examples of docs/doctor.md, as doctests. (docs/swap-daemon.md
/// and docs/troubleshooting.md are part of the item docs of
/// [`harden_swap_daemon`] and [`Error`], and tested there.)
#[cfg(doctest)]
#[doc = include_str!("../docs/doctor.md")]
pub struct DoctorDoctests;

/// The Rust examples of docs/secrets.md ("Keeping a secret"), compiled and
/// run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/secrets.md")]
pub struct SecretsDoctests;
