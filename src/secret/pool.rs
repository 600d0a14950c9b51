//! [`Pool`]: many small secrets in one locked mapping.

use core::fmt;

use super::buf::{give_up, hold};
use crate::held::Hold;
use crate::sys;
use crate::sys::{Backing, Guards};
use crate::Error;

/// Many small secrets in one locked mapping: a pool of slots for keys of a
/// few to a few hundred bytes, taken and given back by any thread.
///
/// A [`LockedBuf`](super::LockedBuf) costs a mapping, two guard pages, at
/// least one locked page and an entry in the crate's record of held locks
/// (128 at most) per secret. A pool pays those once: [`Pool::new`] maps
/// the pool's pages once, with the same backing as a `LockedBuf`
/// (`memfd_secret(2)` where the kernel offers it, one descriptor per pool,
/// locked anonymous pages otherwise), left out of core dumps, kept from
/// forked children and between guard pages, and takes one entry in the
/// record whatever it holds. [`alloc`](Pool::alloc) then hands out a
/// [`PoolBuf`] of `N` bytes from it without a system call.
///
/// ```no_run
/// use mlock::secret::Pool;
///
/// // Room for 10,000 keys of 32 bytes: 640 KiB and a bitmap.
/// let pool = Pool::new(Pool::size_for(32, 10_000))?;
/// let mut key = pool.alloc::<32>()?;
/// key.as_bytes_mut().copy_from_slice(&[0x42; 32]);
/// assert_eq!(key.as_bytes()[0], 0x42);
/// drop(key); // canaries checked, zeroed, the slot free again
/// # Ok::<(), mlock::Error>(())
/// ```
///
/// **Layout.** The pool's data pages hold a 16-byte random key, a bitmap
/// with one bit per 16-byte granule, and the granules. A secret of `N`
/// bytes takes `ceil((N + 32) / 16)` granules (64 bytes for `N` = 32):
/// a 16-byte canary, the secret (aligned to 16), a 16-byte canary right
/// after its last byte, padding. Both canaries are derived from the key
/// and the slot's address. [`Pool::size_for`] computes the bytes for a
/// number of secrets; 100,000 secrets of 32 bytes fit in 7 MiB, under the
/// default 8 MiB `RLIMIT_MEMLOCK` of an unprivileged process.
///
/// **What a pool gives up against a `LockedBuf`.** The secrets are
/// neighbours: a write past the end of one, or before its start, lands in
/// a canary and then in the next secret, and is caught when the slot is
/// freed (the process aborts), not at the faulting instruction as a guard
/// page would catch it; an over-read of a few bytes past the end reads a
/// canary or a neighbouring secret instead of faulting. Only the pool's
/// two ends have guard pages. Choose a `LockedBuf` (or a
/// [`SealedBuf`](super::SealedBuf)) for a few long-lived keys whose
/// overflow must fault at once, and a pool for many keys (a key per peer
/// or per session) or keys made and dropped often.
///
/// **Threads.** `Pool` is `Send` and `Sync`: any thread may allocate, and
/// a [`PoolBuf`] may be dropped on any thread. A slot is taken with one
/// compare-and-swap on a bitmap word and given back with one atomic
/// `and`; nothing waits for a lock.
///
/// **Fork.** As for a `LockedBuf`: a child of `fork(2)` never sees the
/// secrets (its copy of the pool is absent or zero-filled). In a child,
/// [`alloc`](Pool::alloc) on an inherited pool fails with
/// [`Error::NotMapped`], and dropping inherited `PoolBuf`s and the pool
/// touches nothing.
///
/// **Drop.** Dropping the pool (after all its `PoolBuf`s, which borrow
/// it) zeroes its pages, then unmaps them.
///
/// # References
/// - [`memfd_secret(2)`](https://man7.org/linux/man-pages/man2/memfd_secret.2.html),
///   [`mlock(2)`](https://man7.org/linux/man-pages/man2/mlock.2.html),
///   [`madvise(2)`](https://man7.org/linux/man-pages/man2/madvise.2.html),
///   [`mseal(2)`](https://man7.org/linux/man-pages/man2/mseal.2.html)
pub struct Pool {
    pages: sys::PoolPages,
    /// Given up before `pages` drops ([`give_up`]).
    hold: Hold,
}

impl Drop for Pool {
    fn drop(&mut self) {
        give_up(self.pages.region_mut(), &mut self.hold);
    }
}

impl Pool {
    /// The largest secret a slot holds, in bytes: 992.
    pub const MAX_SECRET: usize = sys::POOL_MAX_LEN;

    /// A pool of `bytes` bytes (rounded up to whole pages), backed by
    /// `memfd_secret(2)` when the kernel offers it and by an anonymous
    /// locked mapping otherwise.
    ///
    /// All of it is locked now: `bytes` count towards `RLIMIT_MEMLOCK`
    /// (plus two pages where the guards are guard regions, see
    /// [`Guards::Regions`]).
    ///
    /// # Errors
    /// - [`Error::TooManyLocks`] when the crate's record of held locks is
    ///   full.
    /// - [`Error::ResourceLimit`] when the pages exceed `RLIMIT_MEMLOCK`,
    ///   or [`Error::PermissionDenied`] when that limit is 0, for a
    ///   process without `CAP_IPC_LOCK`.
    /// - [`Error::InvalidArgument`] when `bytes` overflows once rounded.
    /// - [`Error::Unsupported`] on a target without the raw backend.
    pub fn new(bytes: usize) -> Result<Pool, Error> {
        Self::make(bytes, None)
    }

    /// A pool with the given backing, or an error if it cannot be had: no
    /// silent fallback.
    ///
    /// # Errors
    /// As [`new`](Self::new), and [`Error::Unsupported`] for
    /// [`Backing::SecretMem`] when the kernel does not offer
    /// `memfd_secret(2)`.
    pub fn with_backing(bytes: usize, backing: Backing) -> Result<Pool, Error> {
        Self::make(bytes, Some(backing))
    }

    fn make(bytes: usize, backing: Option<Backing>) -> Result<Pool, Error> {
        let pages = sys::PoolPages::new(bytes, backing)?;
        let hold = hold(pages.region())?;
        Ok(Pool { pages, hold })
    }

    /// The bytes a pool needs to hold `count` secrets of `len` bytes
    /// (`1..=`[`Pool::MAX_SECRET`]) at once: their slots (a slot never
    /// straddles two words of the bitmap, so `64 / ceil((len + 32) / 16)`
    /// slots share 1 KiB), and the key and bitmap in front of them. For a
    /// pool of secrets of several sizes, add up the sizes.
    #[must_use]
    pub const fn size_for(len: usize, count: usize) -> usize {
        sys::pool_size_for(len, count)
    }

    /// A zeroed secret of `N` bytes from the pool, between two canaries.
    ///
    /// # Errors
    /// - [`Error::PoolFull`] when no run of free granules is long enough:
    ///   drop secrets, or make the pool larger ([`Pool::size_for`]).
    /// - [`Error::InvalidArgument`] for `N == 0` or `N` above
    ///   [`Pool::MAX_SECRET`] (use a [`LockedBuf`](super::LockedBuf)).
    /// - [`Error::NotMapped`] for a pool inherited through `fork(2)`: its
    ///   pages are not this process's.
    pub fn alloc<const N: usize>(&self) -> Result<PoolBuf<'_, N>, Error> {
        if N == 0 || N > Self::MAX_SECRET {
            return Err(Error::InvalidArgument);
        }
        if !self.hold.is_ours() {
            return Err(Error::NotMapped);
        }
        let slot = self.pages.take(N).ok_or(Error::PoolFull)?;
        Ok(PoolBuf { pool: self, slot })
    }

    /// Which memory holds the secrets.
    #[must_use]
    pub fn backing(&self) -> Backing {
        self.pages.region().backing()
    }

    /// How the guard pages at the pool's two ends are made.
    #[must_use]
    pub fn guards(&self) -> Guards {
        self.pages.region().guards()
    }

    /// Whether a child made by `fork(2)` is kept from the secrets (see
    /// [`LockedBuf::fork_protected`](super::LockedBuf::fork_protected)).
    #[must_use]
    pub fn fork_protected(&self) -> bool {
        self.pages.region().fork_protected()
    }

    /// Seals the pool's mapping with `mseal(2)` for the rest of the
    /// process, as [`LockedBuf::mseal`](super::LockedBuf::mseal) does: the
    /// kernel then refuses to unmap it, move it or change its protection.
    /// Allocation goes on as before. Dropping the pool zeroes its pages
    /// but leaves them mapped and locked, with the pool's entry in the
    /// record, until the process exits.
    ///
    /// # Errors
    /// [`Error::Unsupported`] where the kernel has no `mseal` (before
    /// 6.10, and 32-bit kernels; a 32-bit process on a 64-bit kernel has
    /// it); the pool is unchanged then.
    pub fn mseal(&mut self) -> Result<(), Error> {
        self.pages.region_mut().mseal()
    }

    /// Whether [`mseal`](Self::mseal) sealed the pool's mapping.
    #[must_use]
    pub fn is_msealed(&self) -> bool {
        self.pages.region().msealed()
    }
}

impl fmt::Debug for Pool {
    /// Prints the backing and the guards, never a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("backing", &self.backing())
            .field("guards", &self.guards())
            .finish_non_exhaustive()
    }
}

/// A secret of `N` bytes in a [`Pool`]: zeroed when allocated, its
/// canaries checked and its slot zeroed when dropped.
///
/// The accessors are those of a [`LockedBuf`](super::LockedBuf). The
/// bytes are aligned to 16. Moving a `PoolBuf` does not move the secret.
pub struct PoolBuf<'a, const N: usize> {
    pool: &'a Pool,
    slot: sys::Slot<'a>,
}

impl<const N: usize> Drop for PoolBuf<'_, N> {
    /// Gives the slot back (the slot's own drop checks, zeroes and frees
    /// it); a `PoolBuf` inherited through `fork(2)` touches nothing.
    fn drop(&mut self) {
        if !self.pool.hold.is_ours() {
            self.slot.disown();
        }
    }
}

impl<const N: usize> PoolBuf<'_, N> {
    /// The secret's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; N] {
        super::buf::array(self.slot.bytes())
    }

    /// The secret's bytes, writable.
    pub fn as_bytes_mut(&mut self) -> &mut [u8; N] {
        super::buf::array_mut(self.slot.bytes_mut())
    }

    /// Overwrites the secret with zeros through volatile writes. The drop
    /// zeroes the whole slot as well.
    pub fn clear(&mut self) {
        sys::zeroize(self.slot.bytes_mut());
    }
}

impl<const N: usize> AsRef<[u8]> for PoolBuf<'_, N> {
    fn as_ref(&self) -> &[u8] {
        self.slot.bytes()
    }
}

impl<const N: usize> AsMut<[u8]> for PoolBuf<'_, N> {
    fn as_mut(&mut self) -> &mut [u8] {
        self.slot.bytes_mut()
    }
}

impl<const N: usize> fmt::Debug for PoolBuf<'_, N> {
    /// Prints the capacity and the backing, never the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuf")
            .field("len", &N)
            .field("backing", &self.pool.backing())
            .finish_non_exhaustive()
    }
}
