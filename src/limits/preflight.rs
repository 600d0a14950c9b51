//! [`preflight`]: will `mlockall(2)` succeed, and if not, why? Answered
//! from the same numbers the kernel checks, without locking anything.

use super::{cgroup, ipc_lock, memlock_limit, CgroupMemory, IpcLock, Limit};
use crate::sys::OpenMode;
use crate::{procfs, status, Error, Flags};

/// What [`preflight`] found: the numbers the kernel checks in
/// `mlockall(2)` and the outcome they predict for [`lock_all`].
///
/// [`lock_all`]: crate::lock_all
///
/// # References
/// - [`mlockall(2)`](https://man7.org/linux/man-pages/man2/mlockall.2.html)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preflight {
    flags: Flags,
    predicted: Option<Error>,
    ipc_lock: IpcLock,
    limit: Limit,
    size: Option<u64>,
    locked: Option<u64>,
    rss: Option<u64>,
    cgroup: Option<CgroupMemory>,
}

impl Preflight {
    /// The flags the prediction is for.
    #[must_use]
    pub fn flags(&self) -> Flags {
        self.flags
    }

    /// Whether [`lock_all`](crate::lock_all) with these flags is predicted
    /// to succeed.
    #[must_use]
    pub fn will_succeed(&self) -> bool {
        self.predicted.is_none()
    }

    /// The error [`lock_all`](crate::lock_all) is predicted to return:
    /// [`Error::InvalidArgument`], [`Error::PermissionDenied`],
    /// [`Error::ResourceLimit`] or [`Error::Unsupported`]; `None` when it
    /// is predicted to succeed.
    #[must_use]
    pub fn predicted_error(&self) -> Option<Error> {
        self.predicted
    }

    /// What `CAP_IPC_LOCK` did for the prediction: [`ipc_lock`]'s answer
    /// when the report was made ([`IpcLock::Absent`] without the raw
    /// backend).
    #[must_use]
    pub fn ipc_lock(&self) -> IpcLock {
        self.ipc_lock
    }

    /// `RLIMIT_MEMLOCK` as read (`prlimit64(2)`); the kernel compares
    /// against the soft value. Without the raw backend this is 0 and 0.
    #[must_use]
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// `VmSize` in bytes: what `MCL_CURRENT` must fit under the limit.
    /// `None` when `/proc` was not read (not mounted, or not needed: see
    /// [`preflight`]).
    #[must_use]
    pub fn size_bytes(&self) -> Option<u64> {
        self.size
    }

    /// `VmLck` in bytes, as it was before the call; `None` when `/proc`
    /// was not read.
    #[must_use]
    pub fn locked_bytes(&self) -> Option<u64> {
        self.locked
    }

    /// The memory limits of the process's cgroup ([`cgroup_memory`]);
    /// `None` when there is no memory controller to read, or it could not
    /// be read (a missing cgroup never fails `preflight`).
    ///
    /// [`cgroup_memory`]: super::cgroup_memory
    #[must_use]
    pub fn cgroup(&self) -> Option<CgroupMemory> {
        self.cgroup
    }

    /// How much memory the lock will hold once it is made, as far as
    /// `/proc/self/status` tells: `VmSize` with `CURRENT` (every mapping
    /// is faulted in; an upper bound, since `PROT_NONE` guard regions are
    /// counted but never populated), `VmRSS` with `CURRENT | ONFAULT`
    /// (what is resident now; the rest as it is touched), `VmLck` for
    /// `FUTURE` alone. `None` when `/proc` was not read.
    #[must_use]
    pub fn bytes_to_lock(&self) -> Option<u64> {
        if !self.flags.contains(Flags::CURRENT) {
            self.locked
        } else if self.flags.contains(Flags::ONFAULT) {
            self.rss
        } else {
            self.size
        }
    }

    /// Whether the lock would come near the cgroup's memory limit:
    /// [`bytes_to_lock`](Preflight::bytes_to_lock) at or above three
    /// quarters of the cgroup's limit
    /// ([`CgroupMemory::is_near_limit`]). Locked memory is charged to the
    /// cgroup and cannot be reclaimed, so such a process is OOM-killed
    /// rather than swapped when the rest of the cgroup grows; `mlockall`
    /// itself still succeeds. Not part of
    /// [`will_succeed`](Preflight::will_succeed): a warning.
    #[must_use]
    pub fn near_cgroup_limit(&self) -> bool {
        match (self.cgroup, self.bytes_to_lock()) {
            (Some(cgroup), Some(bytes)) => cgroup.is_near_limit(bytes),
            _ => false,
        }
    }

    /// What to do about the predicted failure: the text of
    /// [`Error::as_str`] for [`Preflight::predicted_error`].
    #[must_use]
    pub fn fix(&self) -> Option<&'static str> {
        self.predicted.as_ref().map(Error::as_str)
    }
}

/// Predicts whether [`lock_all(flags)`](crate::lock_all) would succeed,
/// without locking anything, and says why not.
///
/// It applies the checks of the kernel's `mlockall(2)` (`mm/mlock.c`), in
/// the kernel's order, to the values it reads:
///
/// 1. Flags other than `CURRENT`/`FUTURE` with an optional `ONFAULT`:
///    [`Error::InvalidArgument`] (`EINVAL`).
/// 2. No `CAP_IPC_LOCK` and a soft `RLIMIT_MEMLOCK` of 0:
///    [`Error::PermissionDenied`] (`EPERM`).
/// 3. With `CURRENT`, no `CAP_IPC_LOCK`, and the mapped size (`total_vm`,
///    shown as `VmSize`) above the soft limit: [`Error::ResourceLimit`]
///    (`ENOMEM`). The kernel compares pages, `total_vm > limit >>
///    PAGE_SHIFT`; since `VmSize` is a whole number of pages, that is the
///    same as `VmSize` in bytes `>` the limit in bytes, whatever the page
///    size. `ONFAULT` does not change this check, and `FUTURE` alone is
///    never refused for size.
///
/// On a target without the raw backend the prediction is
/// [`Error::Unsupported`].
///
/// The crate's first call in a process maps its record of held locks (a
/// few KiB); `preflight` maps it before it reads `VmSize`, so that the
/// size it predicts for is the size `lock_all` will find.
///
/// Reading `/proc/self/status` (for `VmSize` and `VmLck`) is one
/// [`status()`](crate::status()) call, and `/proc/self/uid_map` one more
/// read, made whenever `/proc` is mounted. The cgroup's memory limits
/// ([`cgroup_memory`](super::cgroup_memory): `/proc/self/cgroup`,
/// `/proc/self/mountinfo` and the limit files) are read too, for the
/// warning [`Preflight::near_cgroup_limit`]; they never change the
/// prediction, since `mlockall(2)` does not check them. Under QEMU user mode the numbers
/// are the emulator's, which is what the host kernel checks, so the
/// prediction still holds there.
///
/// The prediction is for the process as it is now: mapping more memory,
/// changing the limit or dropping capabilities before `lock_all` changes
/// the answer. `CAP_IPC_LOCK` counts only in the initial user namespace
/// (the kernel's `capable()`): inside a container's user namespace the
/// capability that `capget(2)` reports does not lift the limit, and
/// `preflight` tells the two apart by `/proc/self/uid_map` (see
/// [`Preflight::ipc_lock`]).
///
/// ```no_run
/// use mlock::Flags;
/// use mlock::limits::preflight;
///
/// let check = preflight(Flags::CURRENT | Flags::FUTURE)?;
/// if !check.will_succeed() {
///     eprintln!(
///         "locking would fail: VmSize {:?} B, limit {:?} B: {}",
///         check.size_bytes(),
///         check.limit().soft,
///         check.fix().unwrap_or_default(),
///     );
/// }
/// # Ok::<(), mlock::Error>(())
/// ```
///
/// # Errors
/// - [`Error::ProcUnavailable`]: the answer depends on `VmSize` (`CURRENT`,
///   no `CAP_IPC_LOCK`, a finite nonzero limit) and `/proc` is not mounted.
///   When the answer does not depend on it, a missing `/proc` is not an
///   error and the sizes are `None`.
/// - [`Error::Malformed`]: `/proc/self/status` could not be parsed, or has
///   no `VmSize` line when one is needed.
/// - Any error of [`memlock_limit`](super::memlock_limit) or
///   [`ipc_lock`](super::ipc_lock).
///
/// # References
/// - [`mlockall(2)`](https://man7.org/linux/man-pages/man2/mlockall.2.html)
/// - [`getrlimit(2)`](https://man7.org/linux/man-pages/man2/getrlimit.2.html)
/// - [`capabilities(7)`](https://man7.org/linux/man-pages/man7/capabilities.7.html)
/// - [`proc_pid_status(5)`](https://man7.org/linux/man-pages/man5/proc_pid_status.5.html)
/// - [`cgroups(7)`](https://man7.org/linux/man-pages/man7/cgroups.7.html)
#[doc(alias = "mlockall")]
pub fn preflight(flags: Flags) -> Result<Preflight, Error> {
    if !crate::BACKEND_AVAILABLE {
        return Ok(Preflight {
            flags,
            predicted: Some(Error::Unsupported),
            ipc_lock: IpcLock::Absent,
            limit: Limit {
                soft: Some(0),
                hard: Some(0),
            },
            size: None,
            locked: None,
            rss: None,
            cgroup: None,
        });
    }
    // capable() asks about the initial user namespace: a capability held
    // only in a child namespace does not lift the limit (ipc_lock tells
    // the two apart).
    let ipc_lock = ipc_lock()?;
    let limit = memlock_limit()?;
    // `lock_all`'s first call in a process maps the crate's lock record;
    // map it now, so that `VmSize` below counts it.
    crate::held::prepare()?;
    // Why `VmSize` may be unknown, should the prediction need it.
    let (size, locked, rss, unknown) = match status::status() {
        Ok(s) => (
            s.size_bytes(),
            s.locked_bytes(),
            s.rss_bytes(),
            Error::Malformed,
        ),
        Err(Error::ProcUnavailable) => (None, None, None, Error::ProcUnavailable),
        Err(e) => return Err(e),
    };
    let predicted = predict(
        flags,
        ipc_lock.lifts_limit(),
        limit.soft,
        size.ok_or(unknown),
    )?;
    Ok(Preflight {
        flags,
        predicted,
        ipc_lock,
        limit,
        size,
        locked,
        rss,
        cgroup: cgroup::cgroup_memory().ok().flatten(),
    })
}

/// Whether this process is in the initial user namespace, as far as
/// `/proc/self/uid_map` tells: there, and only there in practice, the map
/// is the identity over every uid, `0 0 4294967295`. A child namespace
/// shows its own, narrower map (or none, before one is written). Without
/// `/proc` the answer is `true`, the common case.
pub(super) fn in_initial_user_namespace() -> bool {
    let Ok(fd) = procfs::open_proc(c"/proc/self/uid_map", OpenMode::Read) else {
        return true;
    };
    let mut buf = [0u8; 128];
    let text = match procfs::read_whole(&fd, &mut buf) {
        Ok(text) => text,
        // More than one line of map: not the initial namespace's.
        Err(Error::Malformed) => return false,
        Err(_) => return true,
    };
    let mut fields = text
        .split(u8::is_ascii_whitespace)
        .filter(|f| !f.is_empty());
    matches!(
        (fields.next(), fields.next(), fields.next(), fields.next()),
        (Some(b"0"), Some(b"0"), Some(b"4294967295"), None)
    )
}

/// The kernel's decision, given its inputs. `soft` is `None` for unlimited;
/// `size` is `VmSize` in bytes, or why it is unknown; that error is
/// returned only when the answer depends on the size.
fn predict(
    flags: Flags,
    lifted: bool,
    soft: Option<u64>,
    size: Result<u64, Error>,
) -> Result<Option<Error>, Error> {
    if !flags.is_valid() {
        return Ok(Some(Error::InvalidArgument));
    }
    if lifted {
        return Ok(None);
    }
    let Some(soft) = soft else {
        // RLIM_INFINITY >> PAGE_SHIFT exceeds any possible total_vm.
        return Ok(None);
    };
    if soft == 0 {
        return Ok(Some(Error::PermissionDenied));
    }
    if !flags.contains(Flags::CURRENT) {
        return Ok(None);
    }
    // The kernel: `total_vm > rlimit(RLIMIT_MEMLOCK) >> PAGE_SHIFT`, which
    // for a whole number of pages is `VmSize > soft`, in bytes.
    Ok((size? > soft).then_some(Error::ResourceLimit))
}

#[cfg(test)]
mod tests {
    use super::predict;
    use crate::{Error, Flags};

    const C: Flags = Flags::CURRENT;
    const F: Flags = Flags::FUTURE;
    const O: Flags = Flags::ONFAULT;

    #[test]
    fn kernel_order_and_comparison() {
        let p = |flags, cap, soft, size| predict(flags, cap, soft, size);
        // EINVAL comes first, whatever else holds.
        assert_eq!(
            p(O, false, Some(0), Ok(1)),
            Ok(Some(Error::InvalidArgument))
        );
        assert_eq!(
            p(Flags::empty(), true, None, Ok(1)),
            Ok(Some(Error::InvalidArgument))
        );
        // EPERM before ENOMEM, for every valid set.
        for flags in [C, F, C | F, C | O, F | O, C | F | O] {
            assert_eq!(
                p(flags, false, Some(0), Ok(1 << 30)),
                Ok(Some(Error::PermissionDenied))
            );
            assert_eq!(p(flags, true, Some(0), Ok(1 << 30)), Ok(None));
            assert_eq!(p(flags, false, None, Ok(u64::MAX)), Ok(None));
        }
        // Equal is allowed, one byte over is not (VmSize is whole pages).
        assert_eq!(p(C, false, Some(8192), Ok(8192)), Ok(None));
        assert_eq!(
            p(C | O, false, Some(8191), Ok(8192)),
            Ok(Some(Error::ResourceLimit))
        );
        assert_eq!(p(F | O, false, Some(1), Ok(8192)), Ok(None));
        // The size matters only when it decides.
        assert_eq!(p(F, false, Some(1), Err(Error::ProcUnavailable)), Ok(None));
        assert_eq!(
            p(C, false, Some(1), Err(Error::ProcUnavailable)),
            Err(Error::ProcUnavailable)
        );
    }
}
