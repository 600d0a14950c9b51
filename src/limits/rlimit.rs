//! `RLIMIT_MEMLOCK` and `CAP_IPC_LOCK`, read from the kernel directly: no
//! `/proc` needed, so they work in early boot.

use crate::sys::{self, Resource};
use crate::Error;

/// A resource limit's soft and hard values, in bytes. `None` means
/// unlimited (`RLIM_INFINITY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limit {
    /// The soft limit: what the kernel enforces now.
    pub soft: Option<u64>,
    /// The hard limit: the ceiling an unprivileged process may raise the
    /// soft limit to.
    pub hard: Option<u64>,
}

impl Limit {
    fn from_raw((soft, hard): (u64, u64)) -> Limit {
        let finite = |v: u64| if v == u64::MAX { None } else { Some(v) };
        Limit {
            soft: finite(soft),
            hard: finite(hard),
        }
    }

    fn to_raw(self) -> (u64, u64) {
        (self.soft.unwrap_or(u64::MAX), self.hard.unwrap_or(u64::MAX))
    }
}

/// `prlimit64(0, RLIMIT_MEMLOCK, NULL, &old)`: the process's memory-lock
/// limit.
///
/// Without `CAP_IPC_LOCK`, the kernel refuses to lock more than the soft
/// limit (`ENOMEM`), and refuses any lock when it is 0 (`EPERM`).
///
/// # Errors
/// [`Error::Unsupported`] on a target without the raw backend.
///
/// # References
/// - [`getrlimit(2)`](https://man7.org/linux/man-pages/man2/getrlimit.2.html)
#[doc(alias = "RLIMIT_MEMLOCK")]
#[doc(alias = "prlimit64")]
pub fn memlock_limit() -> Result<Limit, Error> {
    sys::prlimit64(Resource::MemLock, None).map(Limit::from_raw)
}

/// Sets `RLIMIT_MEMLOCK` to `limit`; returns the limit as it was.
///
/// Lowering is always allowed. Raising the hard limit needs
/// `CAP_SYS_RESOURCE`.
///
/// # Errors
/// - [`Error::NeedsCapSysResource`]
///   (`EPERM`): raising the hard limit without `CAP_SYS_RESOURCE`.
/// - [`Error::InvalidArgument`] (`EINVAL`): soft above hard.
/// - [`Error::Unsupported`] on a target without the raw backend.
///
/// # References
/// - [`getrlimit(2)`](https://man7.org/linux/man-pages/man2/getrlimit.2.html)
pub fn set_memlock_limit(limit: Limit) -> Result<Limit, Error> {
    sys::prlimit64(Resource::MemLock, Some(limit.to_raw()))
        .map(Limit::from_raw)
        .map_err(|e| e.eperm_means(Error::NeedsCapSysResource))
}

/// Raises the soft `RLIMIT_MEMLOCK` to the hard one, which needs no
/// privilege; returns the limit now in force.
///
/// # Errors
/// [`Error::Unsupported`] on a target without the raw backend.
///
/// # References
/// - [`getrlimit(2)`](https://man7.org/linux/man-pages/man2/getrlimit.2.html)
pub fn raise_memlock_limit() -> Result<Limit, Error> {
    let now = memlock_limit()?;
    if now.soft == now.hard {
        return Ok(now);
    }
    let raised = Limit {
        soft: now.hard,
        hard: now.hard,
    };
    set_memlock_limit(raised)?;
    Ok(raised)
}

/// The capability number of `CAP_IPC_LOCK` (capabilities(7)).
#[cfg(target_os = "linux")]
pub(crate) const CAP_IPC_LOCK: u32 = linux_raw_sys::general::CAP_IPC_LOCK;
#[cfg(not(target_os = "linux"))]
pub(crate) const CAP_IPC_LOCK: u32 = 14;

/// What `CAP_IPC_LOCK` does for this process's locking
/// (capabilities(7)): the answer of [`ipc_lock`], and of
/// [`Preflight::ipc_lock`](super::Preflight::ipc_lock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpcLock {
    /// In the effective set, in the initial user namespace:
    /// `RLIMIT_MEMLOCK` does not apply.
    Honoured,
    /// In the effective set, but the process is in a child user namespace
    /// (a rootless container, say): the kernel asks about the initial
    /// namespace (`capable(CAP_IPC_LOCK)` in `can_do_mlock`), so
    /// `RLIMIT_MEMLOCK` still applies.
    InChildNamespace,
    /// Not in the effective set: `RLIMIT_MEMLOCK` applies.
    Absent,
}

impl IpcLock {
    /// Whether the kernel lets the process lock past `RLIMIT_MEMLOCK`
    /// (only [`IpcLock::Honoured`]).
    #[must_use]
    pub const fn lifts_limit(self) -> bool {
        matches!(self, IpcLock::Honoured)
    }
}

/// What `CAP_IPC_LOCK` does for this process: whether it is in the
/// effective set (`capget(2)`), and whether the kernel counts it, which it
/// does only in the initial user namespace. This is the crate's one answer
/// to "may this process lock past `RLIMIT_MEMLOCK`":
/// [`IpcLock::lifts_limit`].
///
/// The namespace is read from `/proc/self/uid_map` (the initial namespace
/// maps every uid to itself); without `/proc` the process is taken to be
/// in the initial namespace, the common case in early boot.
///
/// ```no_run
/// use mlock::limits::{ipc_lock, IpcLock};
///
/// match ipc_lock()? {
///     IpcLock::Honoured => println!("RLIMIT_MEMLOCK does not apply"),
///     IpcLock::InChildNamespace => println!("CAP_IPC_LOCK is set, but not counted here"),
///     IpcLock::Absent => println!("RLIMIT_MEMLOCK applies"),
/// }
/// # Ok::<(), mlock::Error>(())
/// ```
///
/// # Errors
/// [`Error::Unsupported`] on a target without the raw backend.
///
/// # References
/// - [`capget(2)`](https://man7.org/linux/man-pages/man2/capget.2.html)
/// - [`capabilities(7)`](https://man7.org/linux/man-pages/man7/capabilities.7.html)
/// - [`user_namespaces(7)`](https://man7.org/linux/man-pages/man7/user_namespaces.7.html)
#[doc(alias = "CAP_IPC_LOCK")]
#[doc(alias = "capget")]
pub fn ipc_lock() -> Result<IpcLock, Error> {
    let effective = sys::capget_effective()? & (1 << CAP_IPC_LOCK) != 0;
    Ok(match effective {
        false => IpcLock::Absent,
        true if super::preflight::in_initial_user_namespace() => IpcLock::Honoured,
        true => IpcLock::InChildNamespace,
    })
}
