//! Keeping secrets out of swap and out of core dumps.

use core::fmt;

use crate::sys::{self, Advice, PrctlInt, Resource};
use crate::{lock, Error};

/// Checks that a region is non-empty and does not overflow, as `madvise(2)`
/// wants; returns whether a syscall is needed.
fn advise(region: &[u8], advice: Advice) -> Result<(), Error> {
    if region.is_empty() {
        return Ok(());
    }
    sys::madvise(region.as_ptr(), region.len(), advice)
}

/// `madvise(region, MADV_DONTDUMP)`: leaves the pages of `region` out of
/// core dumps (Linux 3.4+).
///
/// `madvise(2)` needs a page-aligned start: pass a region that starts on a
/// page boundary, such as a [`LockedBuf`] or an `mmap`ed buffer. The whole
/// last page is excluded. An empty region is a no-op.
///
/// # Errors
/// - [`Error::InvalidArgument`] (`EINVAL`): the start is not page-aligned.
/// - [`Error::ResourceLimit`] (`ENOMEM`): part of the range is not mapped.
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

/// A fixed-capacity buffer of `N` bytes for a secret: locked into RAM,
/// left out of core dumps, and zeroed on drop.
///
/// The bytes live in their own anonymous mapping (`mmap(2)`), not on the
/// stack or the heap. That costs no allocator (the crate needs neither
/// `alloc` nor a global allocator), and it has three consequences a buffer
/// inside the struct could not have:
/// - moving the `LockedBuf` does not move the secret, so no stale copy is
///   left behind at the old address;
/// - its pages hold nothing else, so unlocking them on drop cannot unlock a
///   neighbour's data, and `MADV_DONTDUMP` gets the page-aligned start it
///   needs;
/// - the pages are unmapped after use.
///
/// On drop it zeroes the bytes with volatile writes, then unlocks, then
/// unmaps.
///
/// ```no_run
/// use mlock::LockedBuf;
///
/// let mut key = LockedBuf::<32>::new()?;
/// key.as_mut().copy_from_slice(&[0x42; 32]);
/// assert_eq!(key.as_ref()[0], 0x42);
/// # Ok::<(), mlock::Error>(())
/// ```
///
/// A process without `CAP_IPC_LOCK` needs one page of `RLIMIT_MEMLOCK`
/// headroom per buffer (the default limit is 8 MiB on recent kernels).
///
/// # References
/// - [`mlock(2)`](https://man7.org/linux/man-pages/man2/mlock.2.html),
///   [`madvise(2)`](https://man7.org/linux/man-pages/man2/madvise.2.html),
///   [`mmap(2)`](https://man7.org/linux/man-pages/man2/mmap.2.html)
pub struct LockedBuf<const N: usize> {
    pages: sys::Mapping,
}

impl<const N: usize> LockedBuf<N> {
    /// Maps, locks and excludes from dumps a zeroed buffer of `N` bytes.
    ///
    /// # Errors
    /// - [`Error::InvalidArgument`] for `N == 0`.
    /// - [`Error::ResourceLimit`] or [`Error::PermissionDenied`] when the
    ///   page cannot be locked (see [`lock`](crate::lock)); the mapping is
    ///   released before the error is returned.
    /// - [`Error::Unsupported`] on a target without the raw backend.
    pub fn new() -> Result<Self, Error> {
        if N == 0 {
            return Err(Error::InvalidArgument);
        }
        let pages = sys::Mapping::new(N)?;
        lock(pages.as_slice())?;
        exclude_from_dump(pages.as_slice())?;
        Ok(LockedBuf { pages })
    }

    /// Overwrites the secret with zeros through volatile writes, which the
    /// compiler cannot remove as dead stores. `Drop` does the same before it
    /// unlocks.
    pub fn clear(&mut self) {
        sys::zeroize(self.pages.as_mut_slice());
    }

    /// The secret's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; N] {
        // The mapping is exactly N bytes long (the kernel rounds the pages,
        // not the slice), so the conversion cannot fail.
        match self.pages.as_slice().try_into() {
            Ok(array) => array,
            Err(_) => unreachable!("LockedBuf mapping has N bytes"),
        }
    }

    /// The secret's bytes, writable.
    pub fn as_bytes_mut(&mut self) -> &mut [u8; N] {
        match self.pages.as_mut_slice().try_into() {
            Ok(array) => array,
            Err(_) => unreachable!("LockedBuf mapping has N bytes"),
        }
    }
}

impl<const N: usize> AsRef<[u8]> for LockedBuf<N> {
    fn as_ref(&self) -> &[u8] {
        self.pages.as_slice()
    }
}

impl<const N: usize> AsMut<[u8]> for LockedBuf<N> {
    fn as_mut(&mut self) -> &mut [u8] {
        self.pages.as_mut_slice()
    }
}

impl<const N: usize> fmt::Debug for LockedBuf<N> {
    /// Prints the capacity, never the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockedBuf")
            .field("len", &N)
            .finish_non_exhaustive()
    }
}

impl<const N: usize> Drop for LockedBuf<N> {
    fn drop(&mut self) {
        // Zero first, while the pages are still locked, so the secret can
        // never be written to swap; then unlock. The mapping unmaps itself.
        self.clear();
        let _ = crate::unlock(self.pages.as_slice());
    }
}
