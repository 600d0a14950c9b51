//! Core dumps: leaving pages out of them ([`exclude_from_dump`]), and
//! turning them off for the whole process, for good or for a scope.

use crate::sys::{self, Advice, PrctlInt, Resource};
use crate::Error;

/// Checks that a region is non-empty and does not overflow, as `madvise(2)`
/// wants; returns whether a syscall is needed.
#[allow(unsafe_code)] // One madvise, with its SAFETY note.
fn advise(region: &[u8], advice: Advice) -> Result<(), Error> {
    if region.is_empty() {
        return Ok(());
    }
    // SAFETY: the pages hold a slice the caller borrows, and the advice
    // changes only whether they appear in a core dump.
    unsafe { sys::madvise(region.as_ptr() as usize, region.len(), advice) }
}

/// `madvise(region, MADV_DONTDUMP)`: leaves the pages of `region` out of
/// core dumps (Linux 3.4+).
///
/// `madvise(2)` needs a page-aligned start: pass a region that starts on a
/// page boundary, such as a [`LockedBuf`](super::LockedBuf) or an `mmap`ed buffer. The whole
/// last page is excluded. An empty region is a no-op.
///
/// # Errors
/// - [`Error::InvalidArgument`] (`EINVAL`): the start is not page-aligned.
/// - [`Error::NotMapped`] (`ENOMEM`): part of the range is not mapped.
/// - [`Error::Unsupported`] on a target without the raw backend.
///
/// # References
/// - [`madvise(2)`](https://man7.org/linux/man-pages/man2/madvise.2.html)
/// - [`core(5)`](https://man7.org/linux/man-pages/man5/core.5.html)
#[doc(alias = "MADV_DONTDUMP")]
pub fn exclude_from_dump(region: &[u8]) -> Result<(), Error> {
    advise(region, Advice::DontDump)
}

/// `madvise(region, MADV_DODUMP)`: includes the pages of `region` in core
/// dumps again, undoing [`exclude_from_dump`].
///
/// # Errors
/// As [`exclude_from_dump`].
///
/// # References
/// - [`madvise(2)`](https://man7.org/linux/man-pages/man2/madvise.2.html)
#[doc(alias = "MADV_DODUMP")]
pub fn include_in_dump(region: &[u8]) -> Result<(), Error> {
    advise(region, Advice::DoDump)
}

/// Turns off core dumps for the whole process: `prctl(PR_SET_DUMPABLE, 0)`
/// and `RLIMIT_CORE` = 0, soft and hard.
///
/// Both are needed: `RLIMIT_CORE` = 0 stops ordinary core files, but a
/// `core_pattern` that pipes to a program ignores the limit, while
/// `PR_SET_DUMPABLE` = 0 stops every dump and also keeps other processes of
/// the same user from attaching with `ptrace(2)` or reading
/// `/proc/<pid>/mem`. `execve(2)` of a normal binary resets the dumpable
/// flag; the limit is inherited.
///
/// # Errors
/// [`Error::Unsupported`] on a target without the raw backend. Neither call
/// needs privilege, since a limit is only lowered.
///
/// # References
/// - [`prctl(2)`](https://man7.org/linux/man-pages/man2/prctl.2.html)
///   (`PR_SET_DUMPABLE`)
/// - [`getrlimit(2)`](https://man7.org/linux/man-pages/man2/getrlimit.2.html)
///   (`RLIMIT_CORE`)
/// - [`core(5)`](https://man7.org/linux/man-pages/man5/core.5.html)
#[doc(alias = "PR_SET_DUMPABLE")]
#[doc(alias = "RLIMIT_CORE")]
pub fn disable_core_dumps() -> Result<(), Error> {
    sys::prctl_int(PrctlInt::SetDumpable, 0)?;
    sys::prlimit64(Resource::Core, Some((0, 0)))?;
    Ok(())
}

/// Whether the process is dumpable (`prctl(PR_GET_DUMPABLE)`): `false`
/// after [`disable_core_dumps`].
///
/// # Errors
/// [`Error::Unsupported`] on a target without the raw backend.
///
/// # References
/// - [`prctl(2)`](https://man7.org/linux/man-pages/man2/prctl.2.html)
pub fn is_dumpable() -> Result<bool, Error> {
    sys::prctl_int(PrctlInt::GetDumpable, 0).map(|v| v != 0)
}

/// A guard that turns core dumps off for the whole process and, when it
/// drops, turns them back to what they were: the dumpable flag
/// (`PR_SET_DUMPABLE`) and the soft `RLIMIT_CORE`.
///
/// Made by [`disable_core_dumps_with_guard`]. Unlike
/// [`disable_core_dumps`], it lowers only the *soft* core limit: lowering
/// the hard limit cannot be undone without `CAP_SYS_RESOURCE`, and the soft
/// limit is the one the kernel applies when it writes a core file. The
/// hard limit is left as it was.
///
/// The settings are process-wide: guards that overlap must drop in the
/// reverse order of their creation (as scopes do), or the later one
/// restores a state the earlier one made. While the guard lives, other
/// processes of the same user cannot `ptrace(2)` the process or read
/// `/proc/<pid>/mem`; after it drops, they can again if they could before.
///
/// A dumpable value of 2 (`suid_dumpable`, set by the kernel after a
/// credential change) cannot be restored through `prctl(2)`, which
/// accepts only 0 and 1; the guard restores 1 then, the closest value a
/// process may set. [`restore`](Self::restore) reports errors that `Drop`
/// has to ignore.
///
/// ```no_run
/// let guard = mlock::secret::disable_core_dumps_with_guard()?;
/// assert!(!mlock::secret::is_dumpable()?);
/// // ... work with a secret ...
/// guard.restore()?;
/// # Ok::<(), mlock::Error>(())
/// ```
///
/// # References
/// - [`prctl(2)`](https://man7.org/linux/man-pages/man2/prctl.2.html)
///   (`PR_SET_DUMPABLE`, `PR_GET_DUMPABLE`)
/// - [`getrlimit(2)`](https://man7.org/linux/man-pages/man2/getrlimit.2.html)
///   (`RLIMIT_CORE`)
/// - [`core(5)`](https://man7.org/linux/man-pages/man5/core.5.html)
#[derive(Debug)]
#[must_use = "dropping the guard turns core dumps back on at once"]
pub struct CoreDumpGuard {
    dumpable: usize,
    core_soft: u64,
    restored: bool,
}

/// Turns core dumps off (`PR_SET_DUMPABLE` 0, soft `RLIMIT_CORE` 0) and
/// returns a [`CoreDumpGuard`] that turns them back to their previous state
/// when it drops. The counterpart of os-memlock's
/// `disable_core_dumps_with_guard`, on Linux.
///
/// # Errors
/// [`Error::Unsupported`] on a target without the raw backend. If the
/// limit cannot be lowered, the dumpable flag is restored before the error
/// is returned.
///
/// # References
/// - [`prctl(2)`](https://man7.org/linux/man-pages/man2/prctl.2.html)
/// - [`getrlimit(2)`](https://man7.org/linux/man-pages/man2/getrlimit.2.html)
/// - [`core(5)`](https://man7.org/linux/man-pages/man5/core.5.html)
#[doc(alias = "PR_SET_DUMPABLE")]
pub fn disable_core_dumps_with_guard() -> Result<CoreDumpGuard, Error> {
    let dumpable = sys::prctl_int(PrctlInt::GetDumpable, 0)?;
    let (soft, hard) = sys::prlimit64(Resource::Core, None)?;
    sys::prctl_int(PrctlInt::SetDumpable, 0)?;
    if let Err(e) = sys::prlimit64(Resource::Core, Some((0, hard))) {
        let _ = sys::prctl_int(PrctlInt::SetDumpable, dumpable.min(1));
        return Err(e);
    }
    Ok(CoreDumpGuard {
        dumpable,
        core_soft: soft,
        restored: false,
    })
}

impl CoreDumpGuard {
    /// Restores both settings now and reports the first error.
    ///
    /// # Errors
    /// From `prlimit64(2)` or `prctl(2)`, for instance
    /// [`Error::InvalidArgument`] if the hard limit was lowered below the
    /// saved soft limit meanwhile.
    pub fn restore(mut self) -> Result<(), Error> {
        self.restored = true;
        self.put_back()
    }

    fn put_back(&self) -> Result<(), Error> {
        let (_, hard) = sys::prlimit64(Resource::Core, None)?;
        let limit = sys::prlimit64(Resource::Core, Some((self.core_soft, hard)));
        let flag = sys::prctl_int(PrctlInt::SetDumpable, self.dumpable.min(1));
        limit.and(flag).map(drop)
    }
}

impl Drop for CoreDumpGuard {
    fn drop(&mut self) {
        if !self.restored {
            let _ = self.put_back();
        }
    }
}
