//! Locking the whole address space (`mlockall(2)`) and single regions
//! (`mlock(2)`, `mlock2(2)`).

use crate::{sys, Error, Flags};

/// `mlockall(flags)`: locks the process's pages into RAM.
///
/// `CURRENT` locks what is mapped now, `FUTURE` what is mapped later, and
/// `ONFAULT` defers each page's locking to its first touch. The lock is
/// process-wide state: it covers every thread, it is not inherited by a
/// child of `fork(2)`, and `execve(2)` clears it, `MCL_FUTURE` included.
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
    sys::mlockall(flags.bits())
}

/// `munlockall()`: unlocks every page of the process and clears
/// `MCL_FUTURE`.
///
/// It also unlocks regions locked with [`lock`] and the pages of every
/// [`LockedBuf`](crate::LockedBuf): locks do not nest.
///
/// # Errors
/// [`Error::Unsupported`] on a target without the raw backend. Linux's
/// `munlockall` itself does not fail.
///
/// # References
/// - [`munlockall(2)`](https://man7.org/linux/man-pages/man2/munlockall.2.html)
#[doc(alias = "munlockall")]
#[inline]
pub fn unlock_all() -> Result<(), Error> {
    sys::munlockall()
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

/// Locks the pages of `[addr, addr + len)`, now or on first touch.
fn lock_range(addr: *const u8, len: usize, on_fault: bool) -> Result<(), Error> {
    if !range_needs_call(addr, len)? {
        return Ok(());
    }
    if on_fault {
        // mlock2 is the only call that can lock on fault. Where it is ENOSYS
        // (Linux before 4.4, QEMU user mode) say so: falling back to mlock
        // would fault in and lock pages the caller asked to leave alone.
        sys::mlock2(addr, len, MLOCK_ONFAULT)
    } else {
        // mlock2 without flags is mlock; calling mlock directly also works
        // where mlock2 is ENOSYS.
        sys::mlock(addr, len)
    }
}

#[cfg(target_os = "linux")]
const MLOCK_ONFAULT: u32 = linux_raw_sys::general::MLOCK_ONFAULT;
#[cfg(not(target_os = "linux"))]
const MLOCK_ONFAULT: u32 = 1;

/// `mlock(region)`: faults in and locks the pages that hold `region`.
///
/// The kernel works in whole pages: the first and last page are locked
/// whole, including bytes outside `region`. An empty slice is a no-op.
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
    lock_range(region.as_ptr(), region.len(), false)
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
    lock_range(region.as_ptr(), region.len(), true)
}

/// `munlock(region)`: unlocks the pages that hold `region`.
///
/// Locks do not nest: this unlocks the whole first and last page, even if
/// another part of the program locked them for its own data.
///
/// # Errors
/// [`Error::ResourceLimit`] (`ENOMEM`) if part of the range is not mapped;
/// [`Error::Unsupported`] on a target without the raw backend.
///
/// # References
/// - [`munlock(2)`](https://man7.org/linux/man-pages/man2/munlock.2.html)
#[doc(alias = "munlock")]
#[inline]
pub fn unlock(region: &[u8]) -> Result<(), Error> {
    if !range_needs_call(region.as_ptr(), region.len())? {
        return Ok(());
    }
    sys::munlock(region.as_ptr(), region.len())
}

/// `mlock(addr, len)`, or `mlock2(addr, len, MLOCK_ONFAULT)` when
/// `on_fault` is true, on a raw range.
///
/// A zero `len` is a no-op; a range whose end overflows is
/// [`Error::InvalidArgument`] without a syscall.
///
/// # Safety
/// The kernel validates the range, so no memory is read or written. The
/// caller still promises that the page-rounded range belongs to it: the
/// lock changes state that other owners of those pages (a [`LockGuard`], a
/// [`LockedBuf`](crate::LockedBuf)) rely on.
///
/// # Errors
/// As [`lock`] and [`lock_on_fault`].
///
/// # References
/// - [`mlock(2)`](https://man7.org/linux/man-pages/man2/mlock.2.html)
#[allow(unsafe_code)] // An `unsafe fn` for its contract; it has no unsafe block.
#[inline]
pub unsafe fn lock_raw(addr: *const u8, len: usize, on_fault: bool) -> Result<(), Error> {
    lock_range(addr, len, on_fault)
}

/// `munlock(addr, len)` on a raw range.
///
/// # Safety
/// As [`lock_raw`]: unlocking pages that another owner keeps locked (a
/// [`LockedBuf`](crate::LockedBuf) holding a secret) silently breaks its
/// guarantee.
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
    sys::munlock(addr, len)
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
/// The guard borrows the region, so it cannot outlive it. Locks do not nest
/// (see [`unlock`]): two guards over the same page unlock it when the
/// first is dropped.
#[must_use = "the region is unlocked as soon as the guard is dropped"]
#[derive(Debug)]
pub struct LockGuard<'a> {
    region: &'a [u8],
}

impl<'a> LockGuard<'a> {
    /// Locks `region` with [`lock`] (`mlock(2)`).
    ///
    /// # Errors
    /// As [`lock`].
    pub fn new(region: &'a [u8]) -> Result<Self, Error> {
        lock(region)?;
        Ok(LockGuard { region })
    }

    /// Locks `region` with [`lock_on_fault`] (`mlock2(2)`,
    /// `MLOCK_ONFAULT`).
    ///
    /// # Errors
    /// As [`lock_on_fault`].
    pub fn on_fault(region: &'a [u8]) -> Result<Self, Error> {
        lock_on_fault(region)?;
        Ok(LockGuard { region })
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
        let _ = unlock(self.region);
    }
}
