//! Locking the whole address space (`mlockall(2)`) and single regions
//! (`mlock(2)`, `mlock2(2)`).

use crate::held::{self, Hold, Kind};
use crate::sys::LockMode;
use crate::{Error, Flags};

/// `mlockall(flags)`: locks the process's pages into RAM.
///
/// `CURRENT` locks what is mapped now, `FUTURE` what is mapped later, and
/// `ONFAULT` defers each page's locking to its first touch. The lock is
/// process-wide state: it covers every thread, it is not inherited by a
/// child of `fork(2)`, and `execve(2)` clears it, `MCL_FUTURE` included.
///
/// Until [`unlock_all`], no [`LockGuard`] drop in this process unlocks
/// anything; an explicit [`unlock`] still does, as `munlock(2)` after
/// `mlockall(2)` does in the kernel (see [Locks that others
/// hold](crate#locks-that-others-hold)). A direct `mlockall(2)` through
/// libc is invisible to the crate and not protected this way.
///
/// ```no_run
/// use mlock::{lock_all, Flags};
///
/// // A swap daemon pins everything it has and everything it will map.
/// lock_all(Flags::CURRENT | Flags::FUTURE)?;
/// # Ok::<(), mlock::Error>(())
/// ```
///
/// # Errors
/// - [`Error::InvalidArgument`] for an empty set or `ONFAULT` without
///   `CURRENT` or `FUTURE`, before any syscall; also from a kernel older
///   than 4.4 when `ONFAULT` is set.
/// - [`Error::PermissionDenied`] (`EPERM`): no `CAP_IPC_LOCK` and
///   `RLIMIT_MEMLOCK` is 0.
/// - [`Error::ResourceLimit`] (`ENOMEM`): with `CURRENT`, the mapped size
///   exceeds `RLIMIT_MEMLOCK` and the process lacks `CAP_IPC_LOCK`.
/// - [`Error::Unsupported`] on a target without the raw backend.
///
/// # References
/// - [`mlockall(2)`](https://man7.org/linux/man-pages/man2/mlockall.2.html)
#[doc(alias = "mlockall")]
#[inline]
pub fn lock_all(flags: Flags) -> Result<(), Error> {
    if !flags.is_valid() {
        return Err(Error::InvalidArgument);
    }
    held::lock_all(flags)
}

/// `munlockall()`: unlocks every page of the process and clears
/// `MCL_FUTURE`, then locks again what live [`LockGuard`]s,
/// [`LockedBuf`](crate::secret::LockedBuf)s and [`SealedBuf`](crate::secret::SealedBuf)s
/// hold, as they locked it.
///
/// Regions locked with plain [`lock`] (or outside the crate) stay unlocked.
/// Between the two steps the held ranges are unlocked for the time of a
/// few syscalls; a [`LockedBuf`](crate::secret::LockedBuf) backed by
/// `memfd_secret(2)` is not affected at all (the kernel never unlocks
/// secret memory).
///
/// If `lock_all` succeeds on another thread while this call runs, which
/// of the two the kernel applied last is unknown: the crate then takes
/// `lock_all` to be in force (guards' drops keep deferring to it) until
/// the next `unlock_all`.
///
/// # Errors
/// [`Error::Unsupported`] on a target without the raw backend. Linux's
/// `munlockall` itself does not fail; locking a held range again can
/// (`mlock(2)`'s errors, say [`Error::ResourceLimit`] once the limit has
/// shrunk), and then the first such error is returned, after every other
/// range was locked again.
///
/// # References
/// - [`munlockall(2)`](https://man7.org/linux/man-pages/man2/munlockall.2.html)
#[doc(alias = "munlockall")]
#[inline]
pub fn unlock_all() -> Result<(), Error> {
    held::unlock_all()
}

/// Checks a raw range before it reaches the kernel: an empty range needs
/// no call, and one whose end overflows the address space is invalid.
/// Returns whether a syscall is needed.
#[inline]
fn range_needs_call(addr: *const u8, len: usize) -> Result<bool, Error> {
    if len == 0 {
        return Ok(false);
    }
    match (addr as usize).checked_add(len) {
        Some(_) => Ok(true),
        None => Err(Error::InvalidArgument),
    }
}

/// Locks the pages of `[addr, addr + len)`, now or on first touch, unless
/// a live secret buffer holds them already.
fn lock_range(addr: *const u8, len: usize, mode: LockMode) -> Result<(), Error> {
    if !range_needs_call(addr, len)? {
        return Ok(());
    }
    if held::held_by_secret(addr, len)? {
        // The pages of a live LockedBuf or SealedBuf: locked already.
        return Ok(());
    }
    // mlock2 is the only call that can lock on fault. Where it is ENOSYS
    // (Linux before 4.4, QEMU user mode) that is the answer: falling back
    // to mlock would fault in and lock pages the caller asked to leave
    // alone. A plain lock is mlock itself, which works where mlock2 does not.
    held::lock_pages(addr as usize, len, mode)
}

/// `mlock(region)`: faults in and locks the pages that hold `region`.
///
/// The kernel works in whole pages: the first and last page are locked
/// whole, including bytes outside `region`. An empty slice is a no-op.
///
/// The lock has no owner: the crate records nothing, and it lasts until
/// [`unlock`], [`unlock_all`], or the drop of a [`LockGuard`] over the same
/// pages when nothing else the crate knows of holds them. To hold a lock
/// that other code cannot end, use a [`LockGuard`] (and
/// [`core::mem::forget`] it to keep the region locked for good).
///
/// # Errors
/// - [`Error::ResourceLimit`] (`ENOMEM`): the locked total would exceed
///   `RLIMIT_MEMLOCK` without `CAP_IPC_LOCK`.
/// - [`Error::PermissionDenied`] (`EPERM`): no `CAP_IPC_LOCK` and
///   `RLIMIT_MEMLOCK` is 0.
/// - [`Error::WouldBlock`] (`EAGAIN`): some pages could not be locked.
/// - [`Error::Unsupported`] on a target without the raw backend.
///
/// # References
/// - [`mlock(2)`](https://man7.org/linux/man-pages/man2/mlock.2.html)
#[doc(alias = "mlock")]
#[inline]
pub fn lock(region: &[u8]) -> Result<(), Error> {
    lock_range(region.as_ptr(), region.len(), LockMode::Now)
}

/// `mlock2(region, MLOCK_ONFAULT)`: locks the pages of `region` as they are
/// first touched, without faulting them in now (Linux 4.4+).
///
/// # Errors
/// As [`lock`], and [`Error::Unsupported`] where `mlock2` is `ENOSYS`
/// (Linux before 4.4, QEMU user mode). The crate never silently falls back
/// to `mlock`, which would fault in the whole region.
///
/// # References
/// - [`mlock2(2)`](https://man7.org/linux/man-pages/man2/mlock2.2.html)
#[doc(alias = "mlock2")]
#[doc(alias = "MLOCK_ONFAULT")]
#[inline]
pub fn lock_on_fault(region: &[u8]) -> Result<(), Error> {
    lock_range(region.as_ptr(), region.len(), LockMode::OnFault)
}

/// `munlock(region)`: unlocks the pages that hold `region`, except those
/// the crate knows another holder keeps locked.
///
/// The kernel works in whole pages, and its locks do not nest, so the
/// crate munlocks only the pages of `region` that no live [`LockGuard`],
/// [`LockedBuf`](crate::secret::LockedBuf) or [`SealedBuf`](crate::secret::SealedBuf)
/// holds. Pages locked by plain [`lock`] calls or outside the crate are
/// unlocked (see [Locks that others hold](crate#locks-that-others-hold)).
///
/// Under [`lock_all`] too: `munlock(2)` after `mlockall(2)` is a
/// carve-out, and the kernel splits the mapping so that the rest stays
/// locked (with `MCL_FUTURE`, memory mapped later is still locked). A
/// guard's drop, which is implicit, unlocks nothing while `lock_all` is in
/// force; this call is the caller's decision, and never answers `Ok` with
/// the pages it was to unlock still locked.
///
/// ```no_run
/// use mlock::{lock_all, unlock, Flags};
///
/// let cache = vec![0u8; 64 << 20];
/// lock_all(Flags::CURRENT | Flags::FUTURE)?;
/// // The cache may be swapped; everything else stays in RAM.
/// unlock(&cache)?;
/// # Ok::<(), mlock::Error>(())
/// ```
///
/// # Errors
/// [`Error::NotMapped`] (`ENOMEM`) if part of a range it munlocks is
/// not mapped; [`Error::Unsupported`] on a target without the raw backend.
///
/// # References
/// - [`munlock(2)`](https://man7.org/linux/man-pages/man2/munlock.2.html)
#[doc(alias = "munlock")]
#[inline]
pub fn unlock(region: &[u8]) -> Result<(), Error> {
    if !range_needs_call(region.as_ptr(), region.len())? {
        return Ok(());
    }
    held::unlock(region.as_ptr(), region.len())
}

/// `mlock(addr, len)` on a raw range: [`lock`] for memory that is not a
/// slice (for `mlock2(MLOCK_ONFAULT)`, [`lock_on_fault_raw`]).
///
/// A zero `len` is a no-op; a range whose end overflows is
/// [`Error::InvalidArgument`] without a syscall.
///
/// # Safety
/// The kernel validates the range, so no memory is read or written. The
/// caller still promises that the page-rounded range belongs to it: the
/// lock changes state that other owners of those pages (a [`LockGuard`], a
/// [`LockedBuf`](crate::secret::LockedBuf)) rely on.
///
/// # Errors
/// As [`lock`].
///
/// # References
/// - [`mlock(2)`](https://man7.org/linux/man-pages/man2/mlock.2.html)
#[allow(unsafe_code)] // An `unsafe fn` for its contract; it has no unsafe block.
#[inline]
pub unsafe fn lock_raw(addr: *const u8, len: usize) -> Result<(), Error> {
    lock_range(addr, len, LockMode::Now)
}

/// `mlock2(addr, len, MLOCK_ONFAULT)` on a raw range: [`lock_on_fault`]
/// for memory that is not a slice.
///
/// A zero `len` is a no-op; a range whose end overflows is
/// [`Error::InvalidArgument`] without a syscall.
///
/// # Safety
/// As [`lock_raw`].
///
/// # Errors
/// As [`lock_on_fault`].
///
/// # References
/// - [`mlock2(2)`](https://man7.org/linux/man-pages/man2/mlock2.2.html)
#[allow(unsafe_code)] // An `unsafe fn` for its contract; it has no unsafe block.
#[inline]
pub unsafe fn lock_on_fault_raw(addr: *const u8, len: usize) -> Result<(), Error> {
    lock_range(addr, len, LockMode::OnFault)
}

/// `munlock(addr, len)` on a raw range, except the pages the crate knows
/// another holder keeps locked (as [`unlock`]).
///
/// # Safety
/// As [`lock_raw`]. The crate skips the pages of its own guards and
/// buffers (and unlocks under [`lock_all`], as [`unlock`] does); the caller
/// promises that no one it cannot see (a lock taken through libc, say)
/// relies on the rest staying locked.
///
/// # Errors
/// As [`unlock`].
///
/// # References
/// - [`munlock(2)`](https://man7.org/linux/man-pages/man2/munlock.2.html)
#[allow(unsafe_code)] // An `unsafe fn` for its contract; it has no unsafe block.
#[inline]
pub unsafe fn unlock_raw(addr: *const u8, len: usize) -> Result<(), Error> {
    if !range_needs_call(addr, len)? {
        return Ok(());
    }
    held::unlock(addr, len)
}

/// Keeps a region locked while it lives, and unlocks it on drop.
///
/// ```no_run
/// let table = [0u8; 4096];
/// {
///     let _guard = mlock::LockGuard::new(&table)?;
///     // `table` stays in RAM here.
/// }
/// # Ok::<(), mlock::Error>(())
/// ```
///
/// The guard borrows the region, so it cannot outlive it. Guards compose:
/// dropping one munlocks only the pages that no other live guard,
/// [`LockedBuf`](crate::secret::LockedBuf) or [`SealedBuf`](crate::secret::SealedBuf)
/// holds, and nothing while [`lock_all`] is in force (see [Locks that
/// others hold](crate#locks-that-others-hold)). Each guard takes an
/// entry in the crate's fixed record (128 distinct ranges).
#[must_use = "the region is unlocked as soon as the guard is dropped"]
#[derive(Debug)]
pub struct LockGuard<'a> {
    region: &'a [u8],
    hold: Hold,
}

impl<'a> LockGuard<'a> {
    /// Locks `region` with [`lock`] (`mlock(2)`).
    ///
    /// # Errors
    /// As [`lock`], and [`Error::TooManyLocks`] when the crate's record
    /// is full (before any syscall).
    pub fn new(region: &'a [u8]) -> Result<Self, Error> {
        Self::take(region, LockMode::Now)
    }

    /// Records the region, then locks it. The entry comes first, so that a
    /// guard dropped meanwhile on another thread sees it.
    fn take(region: &'a [u8], mode: LockMode) -> Result<Self, Error> {
        let (addr, len) = (region.as_ptr(), region.len());
        if !range_needs_call(addr, len)? {
            return Ok(LockGuard {
                region,
                hold: Hold::new(addr, 0, Kind::Lock)?,
            });
        }
        let kind = match mode {
            LockMode::Now => Kind::Lock,
            LockMode::OnFault => Kind::OnFault,
        };
        let mut hold = Hold::new(addr, len, kind)?;
        if !hold.in_secret() {
            if let Err(e) = hold.lock(|| held::lock_pages(addr as usize, len, mode)) {
                // The call may have locked part of the range, and a guard
                // dropped meanwhile left pages locked for this one: give
                // them up as a drop would.
                let _ = hold.unlock();
                return Err(e);
            }
        }
        Ok(LockGuard { region, hold })
    }

    /// Locks `region` with [`lock_on_fault`] (`mlock2(2)`,
    /// `MLOCK_ONFAULT`).
    ///
    /// # Errors
    /// As [`lock_on_fault`], and [`Error::TooManyLocks`] when the crate's
    /// record is full.
    pub fn on_fault(region: &'a [u8]) -> Result<Self, Error> {
        Self::take(region, LockMode::OnFault)
    }

    /// The locked region.
    #[must_use]
    pub fn region(&self) -> &'a [u8] {
        self.region
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // munlock of a region that was locked cannot fail: it is mapped (the
        // borrow keeps it alive) and unlocking needs no privilege.
        let _ = self.hold.unlock();
    }
}
