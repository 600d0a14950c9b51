//! Buffers for one secret: [`LockedBuf`] and [`SealedBuf`], on
//! `memfd_secret(2)` or locked anonymous pages, between guard pages.

use core::fmt;
use core::ops::{Deref, DerefMut};

use crate::held::{Hold, Kind};
use crate::sys;
pub use crate::sys::{Backing, Guards};
use crate::Error;

/// The memory shared by [`LockedBuf`] and [`SealedBuf`], and its entry in
/// the crate's record of held locks (so that a [`LockGuard`](crate::LockGuard)
/// over the secret's bytes, or [`unlock`](crate::unlock) of them, leaves
/// the pages locked). The entry leaves the record before the pages are
/// unmapped ([`give_up`]).
fn pages<const N: usize>(
    backing: Option<Backing>,
    sealed: bool,
) -> Result<(sys::SecretPages, Hold), Error> {
    if N == 0 {
        return Err(Error::InvalidArgument);
    }
    let pages = sys::SecretPages::new(N, backing, sealed)?;
    let hold = hold(pages.region())?;
    Ok((pages, hold))
}

/// The record's entry for the data pages of a secret buffer or a pool.
pub(super) fn hold(region: &sys::Region) -> Result<Hold, Error> {
    let (addr, len) = region.data_pages();
    let kind = match region.backing() {
        Backing::SecretMem => Kind::SecretMem,
        Backing::Anonymous => Kind::Secret,
    };
    Hold::new(addr, len, kind)
}

/// A buffer's or a pool's drop, before its fields': the entry leaves the
/// record, then the pages are zeroed and unmapped. One inherited through
/// `fork(2)` holds nothing of this process's: its pages are left as the
/// kernel gave them to the child (absent, or wiped). Sealed pages
/// (`mseal(2)`) stay, and so does their entry.
pub(super) fn give_up(region: &mut sys::Region, hold: &mut Hold) {
    if region.msealed() && hold.is_ours() {
        // The pages stay mapped and locked: so does their entry.
        hold.keep_forever();
    } else if !hold.release() {
        region.disown();
    }
}

/// The secret bytes as an array (their slice has exactly `N` bytes).
pub(super) fn array<const N: usize>(bytes: &[u8]) -> &[u8; N] {
    match bytes.try_into() {
        Ok(array) => array,
        Err(_) => unreachable!("a secret's slice has N bytes"),
    }
}

/// The secret bytes as a writable array.
pub(super) fn array_mut<const N: usize>(bytes: &mut [u8]) -> &mut [u8; N] {
    match bytes.try_into() {
        Ok(array) => array,
        Err(_) => unreachable!("a secret's slice has N bytes"),
    }
}

/// The constructors and the backing queries, the same for [`LockedBuf`]
/// and [`SealedBuf`] (`$sealed` says which): one place for what the two
/// share.
macro_rules! constructors {
    ($buf:ident, $sealed:expr, $what:literal) => {
        impl<const N: usize> $buf<N> {
            #[doc = concat!($what, ", backed by `memfd_secret(2)` when the")]
            /// kernel offers it (`ENOSYS` from the call, as on a kernel
            /// without `CONFIG_SECRETMEM`, one before 6.5 booted without
            /// `secretmem.enable=1`, or under a seccomp filter, means it
            /// does not) and by an anonymous locked mapping otherwise.
            ///
            /// # Errors
            /// - [`Error::InvalidArgument`] for `N == 0`.
            /// - [`Error::TooManyLocks`] when the crate's record of held
            ///   locks is full (see [Locks that others
            ///   hold](crate#locks-that-others-hold)).
            /// - [`Error::ResourceLimit`] when the data pages exceed
            ///   `RLIMIT_MEMLOCK`, or [`Error::PermissionDenied`] when that
            ///   limit is 0, for a process without `CAP_IPC_LOCK` (with
            ///   either backing); everything mapped so far is released
            ///   first.
            /// - [`Error::Unsupported`] on a target without the raw backend.
            pub fn new() -> Result<Self, Error> {
                Self::make(None)
            }

            #[doc = concat!($what, " with the given backing, or an error if")]
            /// it cannot be had: no silent fallback.
            ///
            /// # Errors
            /// As [`new`](Self::new), and [`Error::Unsupported`] for
            /// [`Backing::SecretMem`] when the kernel does not offer
            /// `memfd_secret(2)`.
            pub fn with_backing(backing: Backing) -> Result<Self, Error> {
                Self::make(Some(backing))
            }

            fn make(backing: Option<Backing>) -> Result<Self, Error> {
                pages::<N>(backing, $sealed).map(|(pages, hold)| $buf { pages, hold })
            }

            /// Which memory holds the secret.
            #[must_use]
            pub fn backing(&self) -> Backing {
                self.pages.region().backing()
            }

            /// How the guard pages are made: guard regions in the data's
            /// own mapping where the kernel offers them (Linux 6.13+,
            /// anonymous backing), `PROT_NONE` pages otherwise.
            #[must_use]
            pub fn guards(&self) -> Guards {
                self.pages.region().guards()
            }

            /// Whether a child made by `fork(2)` is kept from the secret:
            /// `true` when the kernel applied `MADV_DONTFORK` or
            /// `MADV_WIPEONFORK`, `false` where `madvise(2)` accepts advice
            /// it ignores (QEMU user mode before 8.0), in which case a
            /// child inherits a copy-on-write copy.
            #[must_use]
            pub fn fork_protected(&self) -> bool {
                self.pages.region().fork_protected()
            }
        }
    };
}

/// A fixed-capacity buffer of `N` bytes for a secret: locked into RAM,
/// left out of core dumps, fenced by guard pages and a canary, kept from
/// forked children, and zeroed on drop.
///
/// The bytes live in a mapping of their own, not on the stack or the heap.
/// That costs no allocator (the crate needs neither `alloc` nor a global
/// allocator), and moving the `LockedBuf` does not move the secret, so no
/// stale copy is left behind at the old address.
///
/// **Backing.** [`new`](Self::new) uses `memfd_secret(2)` where the kernel
/// offers it and an anonymous locked mapping otherwise;
/// [`backing`](Self::backing) says which one a buffer got, and
/// [`with_backing`](Self::with_backing) requires one (an error, never a
/// silent fallback). See [`Backing`] for what each protects against and
/// what it costs.
///
/// **Layout.** The mapping is a guard page, the data pages, and another
/// guard page. The guards are guard regions (`MADV_GUARD_INSTALL`, Linux
/// 6.13+) where the kernel takes them, `PROT_NONE` pages otherwise;
/// [`guards`](Self::guards) says which ([`Guards`]). The secret is aligned to the *end* of the data
/// pages, so a read or write one byte past the end faults at once
/// (`SIGSEGV`) for every `N`. In front of the secret sit 16 random canary
/// bytes; a write before the start that stays within the data pages
/// changes them, and dropping the buffer then writes a message to stderr
/// and aborts the process (`SIGABRT`) instead of carrying on with corrupted
/// memory. A write further back hits the leading guard page. The buffer
/// takes `ceil((N + 16) / page size) + 2` pages of address space, of which
/// the data pages count towards `RLIMIT_MEMLOCK`. The bytes are not
/// aligned beyond 1.
///
/// **Fork.** A child made by `fork(2)` never sees the secret: a secretmem
/// mapping is marked `MADV_DONTFORK` (the child has nothing mapped there),
/// an anonymous one `MADV_WIPEONFORK` (Linux 4.14+; the child gets zeroed,
/// unlocked pages, so its copy of the handle still points at memory of its
/// own). In a child, treat an inherited buffer as gone: dropping it is
/// safe (it touches neither the memory nor the canary), but the bytes of a
/// secretmem buffer are not mapped there. [`fork_protected`](Self::fork_protected)
/// is `false` where the advice is accepted but not applied (QEMU user mode
/// before 8.0 ignores `madvise`).
///
/// On drop it checks the canary, zeroes the data pages with volatile
/// writes, unlocks and unmaps them.
///
/// ```no_run
/// use mlock::secret::{Backing, LockedBuf};
///
/// let mut key = LockedBuf::<32>::new()?;
/// key.as_mut().copy_from_slice(&[0x42; 32]);
/// assert_eq!(key.as_ref()[0], 0x42);
/// if key.backing() == Backing::SecretMem {
///     // Not even root can read it through /proc/<pid>/mem.
/// }
/// # Ok::<(), mlock::Error>(())
/// ```
///
/// A process without `CAP_IPC_LOCK` needs `RLIMIT_MEMLOCK` headroom for the
/// data pages of each buffer: one page for `N` up to the page size minus
/// 16 (the default limit is 8 MiB on recent kernels).
///
/// # References
/// - [`memfd_secret(2)`](https://man7.org/linux/man-pages/man2/memfd_secret.2.html),
///   [`mlock(2)`](https://man7.org/linux/man-pages/man2/mlock.2.html),
///   [`madvise(2)`](https://man7.org/linux/man-pages/man2/madvise.2.html),
///   [`mmap(2)`](https://man7.org/linux/man-pages/man2/mmap.2.html),
///   [`mprotect(2)`](https://man7.org/linux/man-pages/man2/mprotect.2.html),
///   [`getrandom(2)`](https://man7.org/linux/man-pages/man2/getrandom.2.html)
pub struct LockedBuf<const N: usize> {
    pages: sys::SecretPages,
    /// Given up before `pages` drops ([`give_up`]).
    hold: Hold,
}

impl<const N: usize> Drop for LockedBuf<N> {
    fn drop(&mut self) {
        give_up(self.pages.region_mut(), &mut self.hold);
    }
}

constructors!(LockedBuf, false, "A zeroed buffer of `N` bytes");

impl<const N: usize> LockedBuf<N> {
    /// Seals the buffer's mapping (data and guard pages) with `mseal(2)`
    /// for the rest of the process: from now on the kernel refuses to
    /// unmap it, move it, change its protection (a guard page made
    /// readable, say) or map something over it (`EPERM`), whoever asks.
    /// The bytes stay readable and writable through the buffer.
    ///
    /// The memory can no longer be freed: dropping the buffer zeroes the
    /// secret (and checks the canary) but leaves the pages mapped and
    /// locked, and the buffer's entry in the crate's record of held locks
    /// taken, until the process exits. Seal buffers that live as long as
    /// the process (a long-term key), not one per request.
    ///
    /// # Errors
    /// [`Error::Unsupported`] where the kernel has no `mseal` (`ENOSYS`:
    /// before 6.10, and 32-bit kernels, which build it out; a 32-bit
    /// process on a 64-bit kernel has it); the buffer is unchanged then. [`Error::PermissionDenied`] under a seccomp filter
    /// that refuses the call that way.
    ///
    /// # References
    /// [`mseal(2)`](https://man7.org/linux/man-pages/man2/mseal.2.html),
    /// the kernel's `Documentation/userspace-api/mseal.rst`
    pub fn mseal(&mut self) -> Result<(), Error> {
        self.pages.region_mut().mseal()
    }

    /// Whether [`mseal`](Self::mseal) sealed the buffer's mapping.
    #[must_use]
    pub fn is_msealed(&self) -> bool {
        self.pages.region().msealed()
    }

    /// Overwrites the secret with zeros through volatile writes, which the
    /// compiler cannot remove as dead stores. `Drop` does the same before it
    /// unlocks.
    pub fn clear(&mut self) {
        sys::zeroize(self.pages.bytes_mut());
    }

    /// The secret's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; N] {
        array(self.pages.bytes())
    }

    /// The secret's bytes, writable.
    pub fn as_bytes_mut(&mut self) -> &mut [u8; N] {
        array_mut(self.pages.bytes_mut())
    }
}

impl<const N: usize> AsRef<[u8]> for LockedBuf<N> {
    fn as_ref(&self) -> &[u8] {
        self.pages.bytes()
    }
}

impl<const N: usize> AsMut<[u8]> for LockedBuf<N> {
    fn as_mut(&mut self) -> &mut [u8] {
        self.pages.bytes_mut()
    }
}

impl<const N: usize> fmt::Debug for LockedBuf<N> {
    /// Prints the capacity and the backing, never the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockedBuf")
            .field("len", &N)
            .field("backing", &self.backing())
            .finish_non_exhaustive()
    }
}

/// A [`LockedBuf`] whose pages are also no-access (`PROT_NONE`) except
/// inside an explicit borrow: [`read`](Self::read) and
/// [`write`](Self::write) return guards, [`with`](Self::with) and
/// [`with_mut`](Self::with_mut) take closures.
///
/// Between borrows any access to the secret faults (`SIGSEGV`): a stray
/// pointer, a Heartbleed-style over-read of a neighbouring buffer, or a
/// stale pointer kept from an earlier borrow crashes the process instead
/// of reading the key. A read borrow maps the pages `PROT_READ` only, so a
/// write through it faults as well. Everything else is as for
/// [`LockedBuf`]: backing, guard pages, canary, fork, zeroing.
///
/// Each borrow costs two `mprotect(2)` calls (and the TLB flushes they
/// imply): measured on a 2-core x86_64 machine at about 3 µs
/// per borrow of a 32-byte buffer (3.1 µs anonymous, 3.7 µs secretmem),
/// against 1.4 ns to read a [`LockedBuf`] directly. See `docs/secrets.md`;
/// `cargo bench --bench secret` prints the figures. Borrows take `&mut self`, so they never
/// overlap and the pages are never sealed under a live reference.
///
/// ```no_run
/// use mlock::secret::SealedBuf;
///
/// let mut key = SealedBuf::<32>::new()?;
/// key.with_mut(|bytes| bytes.copy_from_slice(&[7; 32]));
/// let first = key.with(|bytes| bytes[0]);
/// assert_eq!(first, 7);
/// # Ok::<(), mlock::Error>(())
/// ```
///
/// # References
/// - [`mprotect(2)`](https://man7.org/linux/man-pages/man2/mprotect.2.html),
///   and those of [`LockedBuf`]
pub struct SealedBuf<const N: usize> {
    pages: sys::SecretPages,
    /// Given up before `pages` drops ([`give_up`]).
    hold: Hold,
}

impl<const N: usize> Drop for SealedBuf<N> {
    fn drop(&mut self) {
        give_up(self.pages.region_mut(), &mut self.hold);
    }
}

constructors!(SealedBuf, true, "A zeroed, sealed buffer of `N` bytes");

impl<const N: usize> SealedBuf<N> {
    /// Opens the pages read-only (`PROT_READ`) until the guard drops.
    pub fn read(&mut self) -> SealedRef<'_, N> {
        SealedRef {
            opened: self.pages.open(false),
        }
    }

    /// Opens the pages read-write until the guard drops.
    pub fn write(&mut self) -> SealedMut<'_, N> {
        SealedMut {
            opened: self.pages.open(true),
        }
    }

    /// Runs `f` on the secret, opened read-only for the call.
    pub fn with<R>(&mut self, f: impl FnOnce(&[u8; N]) -> R) -> R {
        f(&self.read())
    }

    /// Runs `f` on the secret, opened read-write for the call.
    pub fn with_mut<R>(&mut self, f: impl FnOnce(&mut [u8; N]) -> R) -> R {
        f(&mut self.write())
    }

    /// Overwrites the secret with zeros (volatile writes), opening the
    /// pages for the purpose.
    pub fn clear(&mut self) {
        sys::zeroize(&mut self.write()[..]);
    }
}

impl<const N: usize> fmt::Debug for SealedBuf<N> {
    /// Prints the capacity and the backing, never the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedBuf")
            .field("len", &N)
            .field("backing", &self.backing())
            .finish_non_exhaustive()
    }
}

/// A read-only borrow of a [`SealedBuf`]: the pages are `PROT_READ` until
/// it drops, then `PROT_NONE` again.
pub struct SealedRef<'a, const N: usize> {
    opened: sys::Opened<'a>,
}

impl<const N: usize> Deref for SealedRef<'_, N> {
    type Target = [u8; N];

    fn deref(&self) -> &[u8; N] {
        array(self.opened.bytes())
    }
}

impl<const N: usize> fmt::Debug for SealedRef<'_, N> {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedRef")
            .field("len", &N)
            .finish_non_exhaustive()
    }
}

/// A read-write borrow of a [`SealedBuf`]: the pages are readable and
/// writable until it drops, then `PROT_NONE` again.
pub struct SealedMut<'a, const N: usize> {
    opened: sys::Opened<'a>,
}

impl<const N: usize> Deref for SealedMut<'_, N> {
    type Target = [u8; N];

    fn deref(&self) -> &[u8; N] {
        array(self.opened.bytes())
    }
}

impl<const N: usize> DerefMut for SealedMut<'_, N> {
    fn deref_mut(&mut self) -> &mut [u8; N] {
        array_mut(self.opened.bytes_mut())
    }
}

impl<const N: usize> fmt::Debug for SealedMut<'_, N> {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedMut")
            .field("len", &N)
            .finish_non_exhaustive()
    }
}
