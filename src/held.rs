//! The crate's record of the locks it holds, so that its own locks compose.
//!
//! The kernel does not count locks: one `munlock(2)` clears the lock of
//! every page in its range, whoever locked it, and `munlockall(2)` clears
//! them all. So that dropping one [`LockGuard`](crate::LockGuard) cannot
//! unlock pages that another part of the program still holds, the crate
//! records what it holds and consults the record before it unlocks:
//!
//! - **Regions:** each live [`LockGuard`](crate::LockGuard),
//!   [`LockedBuf`](crate::secret::LockedBuf) and [`SealedBuf`](crate::secret::SealedBuf)
//!   has an entry in a fixed table of page ranges ([`SLOTS`] of them, with
//!   a count for identical ranges). An unlock of a range munlocks only the
//!   pages no other entry covers.
//! - **The whole address space:** from a successful [`lock_all`] until
//!   [`unlock_all`], in the process that called it (a forked child inherits
//!   no locks and sees the record as clear), nothing is munlocked at all:
//!   `MCL_CURRENT` locked every page, and under `MCL_FUTURE` every new one.
//!
//! The table is a static array of atomics behind a spin lock, so it needs
//! neither an allocator nor `std`. The lock is held only while the table
//! is read or changed and while `munlock`/`munlockall` run, never across
//! `mlock`/`mlockall` (which may fault in gigabytes): an entry is made
//! *before* its pages are locked, so a concurrent unlock either sees it or
//! runs entirely before the pages are locked.
//!
//! What the record cannot see: locks taken outside the crate (`mlock` or
//! `mlockall` through libc or another crate) and plain [`lock`] calls,
//! which record nothing (a lock with no owner to release it).
//!
//! [`lock`]: crate::lock

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use crate::{sys, Error};

/// How many distinct page ranges the crate can hold locked at once through
/// guards and secret buffers. One more is [`Error::TooManyLocks`].
pub(crate) const SLOTS: usize = 128;

/// Set in [`Slot::start`] for a range locked on fault (`MLOCK_ONFAULT`);
/// starts are page-aligned, so the low bits are free.
const ON_FAULT: usize = 1;
/// Set in [`Slot::start`] for the data pages of a secret buffer, which are
/// locked (or `memfd_secret` pages, never swapped) before they are held.
const SECRET: usize = 2;
/// The flag bits of [`Slot::start`].
const FLAGS: usize = ON_FAULT | SECRET;

/// What holds a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A [`LockGuard`](crate::LockGuard) of `mlock(2)`.
    Lock,
    /// A [`LockGuard`](crate::LockGuard) of `mlock2(MLOCK_ONFAULT)`.
    OnFault,
    /// The data pages of a [`LockedBuf`](crate::secret::LockedBuf) or
    /// [`SealedBuf`](crate::secret::SealedBuf), already locked.
    Secret,
}

/// One entry: a page-aligned range `[start, end)` and how many holders
/// hold exactly that range. `count == 0` is a free slot.
struct Slot {
    start: AtomicUsize,
    end: AtomicUsize,
    count: AtomicUsize,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            start: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
            count: AtomicUsize::new(0),
        }
    }
}

/// The table. Every field is read and written only with [`TABLE_LOCK`]
/// held; the lock's acquire and release order the accesses, so they are
/// `Relaxed` themselves.
static TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];

/// 0 when free, else `getpid() + 1` of the holder.
static TABLE_LOCK: AtomicU32 = AtomicU32::new(0);

/// `getpid() + 1` of the process in which the crate's `mlockall` last
/// succeeded, 0 after `munlockall`.
static ALL_LOCKED_BY: AtomicU32 = AtomicU32::new(0);

/// `lock_all` calls between their entry in the record and their result:
/// while any runs, the address space may be about to be locked whole.
static ALL_PENDING: AtomicUsize = AtomicUsize::new(0);

/// The held table lock; released on drop.
struct Table {
    me: u32,
}

impl Table {
    /// Takes the lock, spinning (then yielding the CPU) while another
    /// thread of this process holds it.
    ///
    /// A lock word naming another process was inherited through `fork(2)`
    /// from a thread that does not exist here, and is taken over: the
    /// holder's pid is stored rather than a flag so that a child forked
    /// while a thread of its parent held the lock does not wait forever.
    /// (Threads share `getpid`; a `clone(CLONE_VM)` child without
    /// `CLONE_THREAD` that shares the table is not supported.)
    fn lock() -> Table {
        let me = sys::getpid().wrapping_add(1);
        let mut spins = 0u32;
        loop {
            match TABLE_LOCK.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Table { me },
                Err(0) => {}
                Err(holder) if holder != me => {
                    if TABLE_LOCK
                        .compare_exchange(holder, me, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        return Table { me };
                    }
                }
                Err(_) if spins < 64 => {
                    spins += 1;
                    core::hint::spin_loop();
                }
                Err(_) => sys::sched_yield(),
            }
        }
    }

    /// Whether the address space is (or may be about to be) locked whole
    /// by the crate's `lock_all` in this process.
    fn all_locked(&self) -> bool {
        ALL_PENDING.load(Ordering::Relaxed) > 0 || ALL_LOCKED_BY.load(Ordering::Relaxed) == self.me
    }

    /// The largest end of the entries that cover `at`, if any.
    fn covered_until(&self, at: usize) -> Option<usize> {
        TABLE
            .iter()
            .filter(|s| s.count.load(Ordering::Relaxed) > 0)
            .filter(|s| s.start.load(Ordering::Relaxed) & !FLAGS <= at)
            .map(|s| s.end.load(Ordering::Relaxed))
            .filter(|&end| end > at)
            .max()
    }

    /// The first start of an entry after `at`, or `usize::MAX`.
    fn next_start(&self, at: usize) -> usize {
        TABLE
            .iter()
            .filter(|s| s.count.load(Ordering::Relaxed) > 0)
            .map(|s| s.start.load(Ordering::Relaxed) & !FLAGS)
            .filter(|&start| start > at)
            .min()
            .unwrap_or(usize::MAX)
    }

    /// `munlock(2)` of the pages of `[start, end)` (page-aligned) that no
    /// entry covers; nothing while `lock_all` holds the address space.
    /// Returns the first error.
    fn unlock_uncovered(&self, start: usize, end: usize) -> Result<(), Error> {
        if self.all_locked() {
            return Ok(());
        }
        let mut result = Ok(());
        let mut at = start;
        while at < end {
            if let Some(covered) = self.covered_until(at) {
                at = covered;
                continue;
            }
            let next = self.next_start(at).min(end);
            if let Err(e) = sys::munlock(at as *const u8, next - at) {
                result = result.and(Err(e));
            }
            at = next;
        }
        result
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        TABLE_LOCK.store(0, Ordering::Release);
    }
}

/// `[addr, addr + len)` widened to whole pages, or `None` if the end
/// overflows.
fn pages(addr: *const u8, len: usize) -> Option<(usize, usize)> {
    let page = sys::page_size();
    let start = addr as usize & !(page - 1);
    let end = (addr as usize)
        .checked_add(len)?
        .checked_next_multiple_of(page)?;
    Some((start, end))
}

/// One holder's entry in the table; taken out again on drop, without
/// unlocking anything (for memory that is about to be unmapped).
#[derive(Debug)]
pub(crate) struct Hold {
    /// The slot, or `usize::MAX` for an empty range or a released hold.
    slot: usize,
}

impl Hold {
    /// Records `[addr, addr + len)` (non-empty, not overflowing) as held,
    /// before the caller locks it.
    ///
    /// # Errors
    /// [`Error::TooManyLocks`] when every slot holds another range;
    /// [`Error::InvalidArgument`] if the page-rounded end overflows.
    pub(crate) fn new(addr: *const u8, len: usize, kind: Kind) -> Result<Hold, Error> {
        if len == 0 {
            return Ok(Hold { slot: usize::MAX });
        }
        let (start, end) = pages(addr, len).ok_or(Error::InvalidArgument)?;
        let key = match kind {
            Kind::Lock => start,
            Kind::OnFault => start | ON_FAULT,
            Kind::Secret => start | SECRET,
        };
        let _table = Table::lock();
        let mut free = None;
        for (i, slot) in TABLE.iter().enumerate() {
            let count = slot.count.load(Ordering::Relaxed);
            if count == 0 {
                free = free.or(Some(i));
            } else if slot.start.load(Ordering::Relaxed) == key
                && slot.end.load(Ordering::Relaxed) == end
            {
                slot.count.store(count + 1, Ordering::Relaxed);
                return Ok(Hold { slot: i });
            }
        }
        let i = free.ok_or(Error::TooManyLocks)?;
        TABLE[i].start.store(key, Ordering::Relaxed);
        TABLE[i].end.store(end, Ordering::Relaxed);
        TABLE[i].count.store(1, Ordering::Relaxed);
        Ok(Hold { slot: i })
    }

    /// Takes the entry out and munlocks the pages of its range that no
    /// other entry covers (nothing while `lock_all` holds everything).
    pub(crate) fn unlock(&mut self) -> Result<(), Error> {
        if self.slot == usize::MAX {
            return Ok(());
        }
        let table = Table::lock();
        let slot = &TABLE[self.slot];
        let (start, end) = (
            slot.start.load(Ordering::Relaxed) & !FLAGS,
            slot.end.load(Ordering::Relaxed),
        );
        Self::take_out(slot);
        self.slot = usize::MAX;
        table.unlock_uncovered(start, end)
    }

    fn take_out(slot: &Slot) {
        let count = slot.count.load(Ordering::Relaxed);
        slot.count.store(count.saturating_sub(1), Ordering::Relaxed);
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.slot != usize::MAX {
            let _table = Table::lock();
            Self::take_out(&TABLE[self.slot]);
        }
    }
}

/// `munlock(2)` of the pages of `[addr, addr + len)` that no entry holds;
/// nothing while `lock_all` holds the address space.
pub(crate) fn unlock(addr: *const u8, len: usize) -> Result<(), Error> {
    if len == 0 {
        return Ok(());
    }
    let (start, end) = pages(addr, len).ok_or(Error::InvalidArgument)?;
    Table::lock().unlock_uncovered(start, end)
}

/// `mlockall(flags)`, recorded: from the call on, until [`unlock_all`],
/// nothing is munlocked in this process.
pub(crate) fn lock_all(flags: crate::Flags) -> Result<(), Error> {
    {
        let _table = Table::lock();
        let pending = ALL_PENDING.load(Ordering::Relaxed);
        ALL_PENDING.store(pending + 1, Ordering::Relaxed);
    }
    let result = sys::mlockall(flags);
    let table = Table::lock();
    let pending = ALL_PENDING.load(Ordering::Relaxed);
    ALL_PENDING.store(pending.saturating_sub(1), Ordering::Relaxed);
    if result.is_ok() {
        ALL_LOCKED_BY.store(table.me, Ordering::Relaxed);
    }
    result
}

/// Whether the pages of `[addr, addr + len)` all lie in the data pages of
/// one live secret buffer: locked already, so locking them again is
/// needless (and for `memfd_secret` pages, which `mlock(2)` cannot
/// populate, an `ENOMEM` that would name the wrong fix).
pub(crate) fn held_by_secret(addr: *const u8, len: usize) -> bool {
    let Some((start, end)) = pages(addr, len) else {
        return false;
    };
    let _table = Table::lock();
    TABLE.iter().any(|s| {
        let key = s.start.load(Ordering::Relaxed);
        s.count.load(Ordering::Relaxed) > 0
            && key & SECRET != 0
            && key & !FLAGS <= start
            && s.end.load(Ordering::Relaxed) >= end
    })
}

/// `munlockall(2)`, then every held range locked again as it was taken
/// (`mlock`, or `mlock2` with `MLOCK_ONFAULT`). Between the two calls the
/// held pages are briefly unlocked; errors of the second are ignored (a
/// range can only fail if it was unmapped under a forgotten guard).
pub(crate) fn unlock_all() -> Result<(), Error> {
    let _table = Table::lock();
    sys::munlockall()?;
    ALL_LOCKED_BY.store(0, Ordering::Relaxed);
    for slot in TABLE.iter() {
        if slot.count.load(Ordering::Relaxed) == 0 {
            continue;
        }
        let start = slot.start.load(Ordering::Relaxed);
        let end = slot.end.load(Ordering::Relaxed);
        let addr = (start & !FLAGS) as *const u8;
        let len = end - (start & !FLAGS);
        let _ = if start & ON_FAULT != 0 {
            sys::mlock_onfault(addr, len)
        } else {
            sys::mlock(addr, len)
        };
    }
    Ok(())
}
