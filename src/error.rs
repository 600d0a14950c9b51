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
    /// `EPERM` (or procfs's `EACCES`) from a call that needs one
    /// capability: which one, so that the message names the fix.
    MissingCapability(Capability),
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
    /// entry). Detected before any syscall; there is no errno.
    TooManyLocks,
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
    /// detected the condition itself. [`Error::MissingCapability`] answers
    /// `EPERM`; [`Error::NotMapped`] and [`Error::OutOfMemory`] answer
    /// `ENOMEM`. [`Error::Malformed`], [`Error::TooManyLocks`] and
    /// [`Error::ShortWrite`] have no errno.
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
            Error::MissingCapability(_) => errno::EPERM,
            Error::NotDumpable => errno::EACCES,
            Error::NotMapped | Error::OutOfMemory => errno::ENOMEM,
            Error::Malformed | Error::TooManyLocks | Error::ShortWrite => return None,
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
        match self {
            Error::PermissionDenied => {
                "permission denied (EPERM): locking memory needs CAP_IPC_LOCK or a nonzero \
                 RLIMIT_MEMLOCK; grant the capability with `setcap cap_ipc_lock+ep <binary>`, \
                 docker `--cap-add=IPC_LOCK`, or systemd `AmbientCapabilities=CAP_IPC_LOCK`"
            }
            Error::MissingCapability(cap) => cap.fix(),
            Error::ResourceLimit => {
                "out of lockable memory (ENOMEM): the request exceeds RLIMIT_MEMLOCK; raise the \
                 limit with `ulimit -l unlimited`, docker `--ulimit memlock=-1:-1`, or systemd \
                 `LimitMEMLOCK=infinity`, or grant CAP_IPC_LOCK (with lock_raw, also: part of \
                 the range is not mapped)"
            }
            Error::NotMapped => {
                "not mapped (ENOMEM): part of the range is not mapped in this process; pass \
                 memory the program owns"
            }
            Error::OutOfMemory => {
                "out of memory (ENOMEM): the kernel could not allocate the pages; free memory \
                 or add swap (RLIMIT_MEMLOCK is not involved)"
            }
            Error::NotDumpable => {
                "access denied (EACCES): the process is not dumpable (after a uid change or with \
                 file capabilities), so its /proc/self files belong to root; set \
                 PR_SET_DUMPABLE to 1 first, or set the value from outside (systemd \
                 `OOMScoreAdjust=`)"
            }
            Error::ShortWrite => {
                "short write: the kernel took only part of a write that must go whole; retry, \
                 and check the file (a procfs value takes one write)"
            }
            Error::InvalidArgument => {
                "invalid argument (EINVAL): empty or contradictory flags, an overflowing range, \
                 or flags this kernel does not know (MCL_ONFAULT needs Linux 4.4+)"
            }
            Error::WouldBlock => {
                "resource temporarily unavailable (EAGAIN): some pages could not be locked, or \
                 a new mapping under MCL_FUTURE would exceed RLIMIT_MEMLOCK; raise \
                 RLIMIT_MEMLOCK (`LimitMEMLOCK=infinity`) or grant CAP_IPC_LOCK"
            }
            Error::Interrupted => "interrupted by a signal (EINTR): retry the call",
            Error::Unsupported => {
                "unsupported (ENOSYS): this kernel, emulator or target does not implement the \
                 call (QEMU user mode lacks mlock2; MLOCK_ONFAULT needs Linux 4.4+)"
            }
            Error::ProcUnavailable => {
                "/proc is not mounted or is not procfs: mount it with `mount -t proc proc /proc`; \
                 locking itself does not need /proc"
            }
            Error::Malformed => {
                "/proc returned text that is not in the kernel's format (overflow, missing unit, \
                 duplicate or truncated field)"
            }
            Error::TooManyLocks => {
                "too many locked regions held at once (128 distinct page ranges through \
                 LockGuard, LockedBuf and SealedBuf): drop guards you no longer need, or lock \
                 one larger region"
            }
            Error::Os(_) => "unexpected error from the kernel",
        }
    }
}

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

/// A capability one call needs, carried by [`Error::MissingCapability`]
/// so that the error names the fix (`capabilities(7)`).
///
/// The enum is `#[non_exhaustive]`: a later version may name more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Capability {
    /// `CAP_SYS_RESOURCE`: `PR_SET_IO_FLUSHER`, lowering `oom_score_adj`,
    /// raising the hard `RLIMIT_MEMLOCK`.
    SysResource,
    /// `CAP_SYS_NICE` (or an `RLIMIT_RTPRIO` at least the priority):
    /// `SCHED_FIFO`.
    SysNice,
    /// `CAP_SYS_ADMIN`: mounting `/proc`.
    SysAdmin,
    /// `CAP_SYS_BOOT`: powering the machine off.
    SysBoot,
}

impl Capability {
    /// The capability's name, as `capabilities(7)` writes it.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Capability::SysResource => "CAP_SYS_RESOURCE",
            Capability::SysNice => "CAP_SYS_NICE",
            Capability::SysAdmin => "CAP_SYS_ADMIN",
            Capability::SysBoot => "CAP_SYS_BOOT",
        }
    }

    /// The message of [`Error::MissingCapability`] for it.
    const fn fix(&self) -> &'static str {
        match self {
            Capability::SysResource => {
                "permission denied (EPERM): this call (PR_SET_IO_FLUSHER, lowering \
                 oom_score_adj, raising the hard RLIMIT_MEMLOCK) needs CAP_SYS_RESOURCE; docker \
                 `--cap-add=SYS_RESOURCE`, systemd `AmbientCapabilities=CAP_SYS_RESOURCE`"
            }
            Capability::SysNice => {
                "permission denied (EPERM): SCHED_FIFO needs CAP_SYS_NICE or an RLIMIT_RTPRIO at \
                 least the priority; docker `--cap-add=SYS_NICE`, systemd \
                 `AmbientCapabilities=CAP_SYS_NICE` or `LimitRTPRIO=99`"
            }
            Capability::SysAdmin => {
                "permission denied (EPERM): mounting /proc needs CAP_SYS_ADMIN (PID 1 has it)"
            }
            Capability::SysBoot => {
                "permission denied (EPERM): powering off needs CAP_SYS_BOOT (PID 1 has it)"
            }
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Error {
    /// `EACCES` as [`Error::from_errno`] maps it.
    pub(crate) const ACCESS_DENIED: Error = Error::Os(errno::EACCES as i32);

    /// `self`, with `EPERM` read as missing `cap`: for calls whose only
    /// `EPERM` is that capability.
    pub(crate) const fn eperm_needs(self, cap: Capability) -> Error {
        match self {
            Error::PermissionDenied => Error::MissingCapability(cap),
            e => e,
        }
    }
}
