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

/// Whether the kernel lets this process lock memory past
/// `RLIMIT_MEMLOCK`: `CAP_IPC_LOCK` is in its effective set (`capget(2)`)
/// *and* it is in the initial user namespace, as the kernel checks it
/// (`capable(CAP_IPC_LOCK)` in `can_do_mlock`). This is the crate's one
/// meaning of "has IPC_LOCK"; [`Preflight::has_ipc_lock`](super::Preflight::has_ipc_lock)
/// gives the same answer.
///
/// Inside a container's user namespace the capability can be effective
/// there and still not count: this answers `false` then. The namespace is
/// read from `/proc/self/uid_map` (the initial namespace maps every uid to
/// itself); without `/proc` the process is taken to be in the initial
/// namespace, the common case in early boot.
///
/// For the capability bit alone, see [`ipc_lock_in_effective_set`].
///
/// # Errors
/// [`Error::Unsupported`] on a target without the raw backend.
///
/// # References
/// - [`capget(2)`](https://man7.org/linux/man-pages/man2/capget.2.html)
/// - [`capabilities(7)`](https://man7.org/linux/man-pages/man7/capabilities.7.html)
/// - [`user_namespaces(7)`](https://man7.org/linux/man-pages/man7/user_namespaces.7.html)
#[doc(alias = "CAP_IPC_LOCK")]
pub fn has_ipc_lock() -> Result<bool, Error> {
    Ok(ipc_lock_in_effective_set()? && super::preflight::in_initial_user_namespace())
}

/// Whether `CAP_IPC_LOCK` is in the process's effective set (`capget(2)`),
/// in whatever user namespace the process is. Whether the kernel honours
/// it for locking is [`has_ipc_lock`].
///
/// # Errors
/// [`Error::Unsupported`] on a target without the raw backend.
///
/// # References
/// - [`capget(2)`](https://man7.org/linux/man-pages/man2/capget.2.html)
/// - [`capabilities(7)`](https://man7.org/linux/man-pages/man7/capabilities.7.html)
#[doc(alias = "capget")]
pub fn ipc_lock_in_effective_set() -> Result<bool, Error> {
    sys::capget_effective().map(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}
