//! The crate's error type: one small `Copy` enum for every call.

use core::fmt;

/// errno values, from `linux-raw-sys` on Linux. Elsewhere no syscall is ever
/// made, so no errno is ever decoded; the asm-generic values stand in so that
/// [`Error::errno`] still answers.
mod errno {
    #[cfg(target_os = "linux")]
    pub(super) use linux_raw_sys::errno::{
        EACCES, EAGAIN, EINTR, EINVAL, ENOENT, ENOMEM, ENOSYS, EPERM,
    };

    #[cfg(not(target_os = "linux"))]
    mod generic {
        pub(crate) const EPERM: u32 = 1;
        pub(crate) const ENOENT: u32 = 2;
        pub(crate) const EINTR: u32 = 4;
        pub(crate) const EACCES: u32 = 13;
        pub(crate) const EAGAIN: u32 = 11;
        pub(crate) const ENOMEM: u32 = 12;
        pub(crate) const EINVAL: u32 = 22;
        pub(crate) const ENOSYS: u32 = 38;
    }
    #[cfg(not(target_os = "linux"))]
    pub(super) use generic::*;
}

/// Why a call failed.
///
/// Each variant maps one errno (see [`Error::errno`]) or one condition the
/// crate detects before it makes a syscall. [`Display`](fmt::Display) and
/// [`Error::as_str`] name the usual cause and the fix, so a daemon can log
/// the error as it is.
///
/// The enum is `#[non_exhaustive]`: match the variants you handle and keep a
/// `_` arm.
///
#[doc = include_str!("../docs/troubleshooting.md")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// `EPERM` from locking: the process lacks `CAP_IPC_LOCK` and its
    /// `RLIMIT_MEMLOCK` is 0 (`mlockall(2)`, `mlock(2)`); or `EPERM` from
    /// another call whose privilege the crate cannot name.
    PermissionDenied,
    /// `EPERM` (or procfs's `EACCES`) from a call that needs
    /// `CAP_SYS_RESOURCE`: `PR_SET_IO_FLUSHER`, lowering `oom_score_adj`,
    /// raising the hard `RLIMIT_MEMLOCK`.
    NeedsCapSysResource,
    /// `EPERM` from `SCHED_FIFO`: it needs `CAP_SYS_NICE`, or an
    /// `RLIMIT_RTPRIO` at least the priority.
    NeedsCapSysNice,
    /// `EPERM` from mounting `/proc`: it needs `CAP_SYS_ADMIN`.
    NeedsCapSysAdmin,
    /// `EPERM` from powering off: it needs `CAP_SYS_BOOT`.
    NeedsCapSysBoot,
    /// `ENOMEM` from locking: it would exceed `RLIMIT_MEMLOCK` for a process
    /// without `CAP_IPC_LOCK` (or, for [`lock_raw`](crate::lock_raw), part
    /// of the range is not mapped, which the kernel reports the same way).
    ResourceLimit,
    /// `ENOMEM` from a call on a range that is not all mapped
    /// (`munlock(2)` through [`unlock_raw`](crate::unlock_raw)).
    NotMapped,
    /// `ENOMEM` where the kernel ran out of memory itself: populating pages
    /// (`MADV_POPULATE_WRITE`) or mapping a secret. No limit is involved.
    OutOfMemory,
    /// The kernel took only part of a write (or none of it) to a file that
    /// needs it whole: a procfs file, the console. There is no errno.
    ShortWrite,
    /// `EACCES` opening a `/proc/self` file for writing: the process is not
    /// dumpable (it changed its uid, or runs a binary with file
    /// capabilities), so procfs gives its files to root.
    NotDumpable,
    /// `EINVAL`, or arguments the crate rejected before making the call:
    /// empty or contradictory flags, a range whose end overflows.
    InvalidArgument,
    /// `EAGAIN`: some of the memory could not be locked (`mlock(2)`), or,
    /// after `MCL_FUTURE`, a new mapping would exceed `RLIMIT_MEMLOCK`.
    WouldBlock,
    /// `EINTR`: a signal interrupted the call.
    Interrupted,
    /// `ENOSYS`: the kernel (or the emulator running this process) does not
    /// implement the call, or this target has no backend at all.
    Unsupported,
    /// `/proc` is not mounted (`ENOENT` on `/proc/self/...`), or what is
    /// mounted there is not procfs. Common in early boot and in minimal
    /// containers; locking itself does not need `/proc`.
    ProcUnavailable,
    /// `/proc` answered with text the crate could not parse as the kernel
    /// writes it: a number that overflows, a missing unit, a field that
    /// appears twice, a truncated line.
    Malformed,
    /// The crate's record of held locks is full: [`LockGuard`](crate::LockGuard),
    /// [`LockedBuf`](crate::secret::LockedBuf) and [`SealedBuf`](crate::secret::SealedBuf)
    /// hold 128 distinct page ranges already (identical ranges share one
    /// entry). Many small secrets belong in one
    /// [`Pool`](crate::secret::Pool), which takes one entry. Detected
    /// before any syscall; there is no errno.
    TooManyLocks,
    /// The call returned success, but reading the setting back shows the
    /// kernel did not apply it: a seccomp filter that fakes success
    /// (`SECCOMP_RET_ERRNO` with 0), or an emulator that ignores the call.
    /// There is no errno.
    NotHonoured,
    /// A [`Pool`](crate::secret::Pool) has no run of free slots for the
    /// secret asked for: drop secrets, or make the pool larger
    /// ([`Pool::size_for`](crate::secret::Pool::size_for)). Detected
    /// without a syscall; there is no errno.
    PoolFull,
    /// Any other errno, as the kernel returned it.
    Os(i32),
}

impl Error {
    /// Maps a positive errno value to its variant.
    #[must_use]
    pub const fn from_errno(errno: i32) -> Error {
        // The errno constants are small positive numbers; compare as u32.
        if errno <= 0 {
            return Error::Os(errno);
        }
        match errno as u32 {
            errno::EPERM => Error::PermissionDenied,
            errno::ENOMEM => Error::ResourceLimit,
            errno::EINVAL => Error::InvalidArgument,
            errno::EAGAIN => Error::WouldBlock,
            errno::EINTR => Error::Interrupted,
            errno::ENOSYS => Error::Unsupported,
            _ => Error::Os(errno),
        }
    }

    /// The errno this error stands for, if any.
    ///
    /// [`Error::Unsupported`] answers `ENOSYS` and
    /// [`Error::ProcUnavailable`] answers `ENOENT`, also when the crate
    /// detected the condition itself. The `NeedsCap*` variants answer
    /// `EPERM`; [`Error::NotMapped`] and [`Error::OutOfMemory`] answer
    /// `ENOMEM`. [`Error::Malformed`], [`Error::TooManyLocks`],
    /// [`Error::ShortWrite`], [`Error::NotHonoured`] and [`Error::PoolFull`]
    /// have no errno.
    #[must_use]
    pub const fn errno(&self) -> Option<i32> {
        let e = match self {
            Error::PermissionDenied => errno::EPERM,
            Error::ResourceLimit => errno::ENOMEM,
            Error::InvalidArgument => errno::EINVAL,
            Error::WouldBlock => errno::EAGAIN,
            Error::Interrupted => errno::EINTR,
            Error::Unsupported => errno::ENOSYS,
            Error::ProcUnavailable => errno::ENOENT,
            Error::NeedsCapSysResource
            | Error::NeedsCapSysNice
            | Error::NeedsCapSysAdmin
            | Error::NeedsCapSysBoot => errno::EPERM,
            Error::NotDumpable => errno::EACCES,
            Error::NotMapped | Error::OutOfMemory => errno::ENOMEM,
            Error::Malformed
            | Error::TooManyLocks
            | Error::ShortWrite
            | Error::NotHonoured
            | Error::PoolFull => return None,
            Error::Os(e) => return Some(*e),
        };
        Some(e as i32)
    }

    /// The message, with the usual cause and fix, as a `&'static str`: for
    /// binaries that cannot afford `core::fmt` (an initramfs `/init`, say).
    /// [`Display`](fmt::Display) prints the same text, plus the errno
    /// number for [`Error::Os`].
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        MESSAGES[self.message_index()]
    }

    /// Where [`MESSAGES`] holds this error's message.
    const fn message_index(&self) -> usize {
        match self {
            Error::PermissionDenied => 0,
            Error::ResourceLimit => 1,
            Error::NotMapped => 2,
            Error::OutOfMemory => 3,
            Error::NotDumpable => 4,
            Error::ShortWrite => 5,
            Error::InvalidArgument => 6,
            Error::WouldBlock => 7,
            Error::Interrupted => 8,
            Error::Unsupported => 9,
            Error::ProcUnavailable => 10,
            Error::Malformed => 11,
            Error::TooManyLocks => 12,
            Error::Os(_) => 13,
            Error::NeedsCapSysResource => 14,
            Error::NeedsCapSysNice => 15,
            Error::NeedsCapSysAdmin => 16,
            Error::NeedsCapSysBoot => 17,
            Error::NotHonoured => 18,
            Error::PoolFull => 19,
        }
    }
}

/// The messages of [`Error::as_str`], in the order of
/// `Error::message_index`: one table, one lookup, which keeps a static
/// `/init` that links every message small. Short on purpose, for the
/// same reason: the cause, then the fix.
const MESSAGES: [&str; 20] = [
    "permission denied (EPERM): locking needs CAP_IPC_LOCK or a nonzero RLIMIT_MEMLOCK: \
     `setcap cap_ipc_lock+ep`, `--cap-add=IPC_LOCK`, `AmbientCapabilities=CAP_IPC_LOCK`",
    "out of lockable memory (ENOMEM): over RLIMIT_MEMLOCK: `ulimit -l unlimited`, \
     `--ulimit memlock=-1:-1`, `LimitMEMLOCK=infinity`, or CAP_IPC_LOCK",
    "not mapped (ENOMEM): part of the range is not mapped",
    "out of memory (ENOMEM): free memory or add swap",
    "access denied (EACCES): not dumpable, so /proc/self is root's (PR_SET_DUMPABLE 1)",
    "short write: the kernel took part of a write that goes whole",
    "invalid argument (EINVAL): bad flags or range (MCL_ONFAULT needs Linux 4.4)",
    "try again (EAGAIN): pages not lockable, or MCL_FUTURE over RLIMIT_MEMLOCK",
    "interrupted (EINTR): retry",
    "unsupported (ENOSYS): not in this kernel, emulator (QEMU: no mlock2) or target",
    "/proc is not mounted or is not procfs: `mount -t proc proc /proc`",
    "/proc text not in the kernel's format",
    "too many held locks (128 ranges): drop a guard",
    "unexpected error from the kernel",
    "permission denied (EPERM): needs CAP_SYS_RESOURCE (`--cap-add=SYS_RESOURCE`)",
    "permission denied (EPERM): needs CAP_SYS_NICE or RLIMIT_RTPRIO (`--cap-add=SYS_NICE`)",
    "permission denied (EPERM): needs CAP_SYS_ADMIN",
    "permission denied (EPERM): needs CAP_SYS_BOOT",
    "not honoured: success, but no effect",
    "pool full: see Pool::size_for",
];

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())?;
        if let Error::Os(e) = self {
            write!(f, " (errno {e})")?;
        }
        Ok(())
    }
}

impl core::error::Error for Error {}

impl Error {
    /// `ENOENT` as [`Error::from_errno`] maps it.
    pub(crate) const NOT_FOUND: Error = Error::Os(errno::ENOENT as i32);

    /// `EACCES` as [`Error::from_errno`] maps it.
    pub(crate) const ACCESS_DENIED: Error = Error::Os(errno::EACCES as i32);

    /// `self`, or `then` when `self` is `when`: for a call whose errno has
    /// one meaning that [`Error::from_errno`]'s general mapping cannot know
    /// (`EPERM` of a call that needs one capability, `ENOMEM` that is no
    /// limit, `ENOENT` under `/proc`). The crate's one way to re-read an
    /// errno.
    pub(crate) fn read_as(self, when: Error, then: Error) -> Error {
        if self == when {
            then
        } else {
            self
        }
    }

    /// `self`, with `EPERM` read as `needs` (a `NeedsCap*` variant).
    pub(crate) fn eperm_means(self, needs: Error) -> Error {
        self.read_as(Error::PermissionDenied, needs)
    }
}
