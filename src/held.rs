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
//!   a count for identical ranges). Unlocking a range munlocks only the
//!   pages no other entry covers.
//! - **The whole address space:** from a successful `lock_all` until
//!   `unlock_all`, a guard's drop munlocks nothing (`MCL_CURRENT` locked
//!   every page, and under `MCL_FUTURE` every new one). An explicit
//!   `unlock` still munlocks, as `munlock(2)` after `mlockall(2)` does in
//!   the kernel.
//!
//! # One record per process
//!
//! The record lives in a page of its own ([`sys::PerProcess`]) that a child
//! of `fork(2)` gets zero-filled: the child starts with an empty table, no
//! `lock_all` in force and the record's lock free, whatever the parent's
//! threads were doing at the fork, and nothing compares process IDs.
//! Entries carry the record's *generation*, set on first use in each
//! process, so that a guard or secret buffer inherited through fork is
//! recognised as someone else's when the child drops it.
//!
//! # The lock
//!
//! The table is guarded by a lock word: 0 when free, else the holder's
//! thread ID (`gettid(2)`) and two flags. A waiter sleeps in the kernel
//! (`futex(2)`), so it cannot starve a holder of a lower scheduling class on
//! its CPU. A thread that finds its own ID in the word was interrupted
//! inside the record by a signal handler that now calls the crate again:
//! that call returns [`Error::Reentered`], and a drop, which cannot fail,
//! is *deferred*: it is counted in its slot, and the interrupted holder
//! carries it out before it lets go of the lock.
//!
//! The lock is held while the table is read or changed and while
//! `munlock`/`munlockall` run, never across `mlock`/`mlockall` (which may
//! fault in gigabytes): an entry is made *before* its pages are locked, so
//! an unlock either sees it or ran entirely before the pages are locked.
//!
//! `lock_all` does not take the lock. It waits until a holder it finds
//! there has left, calls `mlockall`, marks itself in force, and then looks
//! at a count that every unlock through the record raises before it looks
//! at that mark: if an unlock ran meanwhile, it may have come after the
//! `mlockall`, and `lock_all` calls `mlockall` again once that unlock is
//! done. A drop is never held up by a `lock_all`, and a `lock_all` that
//! fails leaves nothing to undo. With no guards, `lock_all` +
//! `unlock_all` cost one atomic read-modify-write beyond their system
//! calls.
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
/// locked before they are held and never unlocked through the record.
const SECRET: usize = 2;
/// Set with [`SECRET`] for `memfd_secret` pages, which the kernel keeps
/// locked through `munlockall` and which `mlock(2)` cannot lock again.
const SECRET_MEM: usize = 4;
/// The flag bits of [`Slot::start`].
const FLAGS: usize = ON_FAULT | SECRET | SECRET_MEM;

/// [`Record::lock`]: someone sleeps on the word; the holder wakes them.
const WAITERS: u32 = 1 << 31;
/// [`Record::lock`]: a slot has deferred drops to carry out.
const DEFERRED: u32 = 1 << 30;
/// [`Record::lock`]: the holder's thread ID (Linux's are below 2^22).
const HOLDER: u32 = DEFERRED - 1;

/// What holds a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A [`LockGuard`](crate::LockGuard) of `mlock(2)`.
    Lock,
    /// A [`LockGuard`](crate::LockGuard) of `mlock2(MLOCK_ONFAULT)`.
    OnFault,
    /// The data pages of a secret buffer on locked anonymous memory.
    Secret,
    /// The data pages of a secret buffer on `memfd_secret(2)` memory.
    SecretMem,
}

/// One entry: a page-aligned range `[start, end)` (flags in the low bits
/// of `start`) and how many holders hold exactly that range. `count == 0`
/// is a free slot. `dropped` counts drops made while they could not be
/// carried out ([`Record::defer`]); `dropped <= count`.
struct Slot {
    start: AtomicUsize,
    end: AtomicUsize,
    count: AtomicUsize,
    dropped: AtomicUsize,
}

/// The record of one process. The table (the slots' ranges and counts,
/// `used`, `generation`) is read and written only with the lock held; the
/// other fields are also read (and `locked_all`, `unlocked_all`, `dropped`
/// and the lock's flags written) without it, with the orderings noted
/// where they are used.
struct Record {
    /// The lock: 0, or the holder's thread ID with [`WAITERS`] and
    /// [`DEFERRED`].
    lock: AtomicU32,
    /// Raised (with the lock held) before every unlock through the record.
    unlocks: AtomicUsize,
    /// How many `lock_all` calls have succeeded in this process.
    locked_all: AtomicUsize,
    /// `locked_all` as `unlock_all` read it before its `munlockall`:
    /// `lock_all` is in force while the two differ.
    unlocked_all: AtomicUsize,
    /// Nonzero once the record has held an entry in this process; a hold
    /// made under another generation was inherited through `fork(2)`.
    generation: AtomicUsize,
    /// Slots `[0, used)` may be in use; the rest are free.
    used: AtomicUsize,
    /// Slots in use.
    live: AtomicUsize,
    /// Slots in use for secret buffers.
    secrets: AtomicUsize,
    slots: [Slot; SLOTS],
}

// SAFETY: a zeroed Record is a valid, empty one (the lock free, nothing
// pending, no entries, no generation yet): it is made of atomics only, and
// needs no Drop.
#[allow(unsafe_code)]
unsafe impl sys::Zeroed for Record {}

/// This process's record.
static RECORD: sys::PerProcess<Record> = sys::PerProcess::new();

/// The last generation handed out. Not in the record's page, so a forked
/// child continues the count from its parent's: its own generation is
/// higher than that of every hold it inherited.
static GENERATIONS: AtomicUsize = AtomicUsize::new(0);

/// The held lock; released on drop.
struct Held<'r> {
    record: &'r Record,
}

impl Record {
    /// Takes the lock, sleeping while another thread holds it.
    ///
    /// # Errors
    /// [`Error::Reentered`] when the holder is the calling thread: a signal
    /// handler interrupted it inside the record.
    #[inline(never)]
    fn enter(&self) -> Result<Held<'_>, Error> {
        let me = sys::gettid() & HOLDER;
        let mut word = self.lock.load(Ordering::Relaxed);
        // Once a thread has slept, it takes the lock with WAITERS set: other
        // sleepers may remain, and the next release must wake them.
        let mut slept = 0;
        loop {
            if word & HOLDER == 0 {
                // SeqCst: the store-load pairs with `lock_all` (see there).
                match self.lock.compare_exchange_weak(
                    word,
                    word | me | slept,
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Ok(Held { record: self }),
                    Err(now) => word = now,
                }
                continue;
            }
            if word & HOLDER == me {
                return Err(Error::Reentered);
            }
            word = self.sleep(word);
            slept = WAITERS;
        }
    }

    /// Sleeps until the lock word, held as `word`, changes; returns its new
    /// value.
    #[cold]
    fn sleep(&self, word: u32) -> u32 {
        if word & WAITERS == 0 {
            if let Err(now) = self.lock.compare_exchange(
                word,
                word | WAITERS,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                return now;
            }
        }
        sys::futex_wait(&self.lock, word | WAITERS);
        self.lock.load(Ordering::SeqCst)
    }

    /// Whether `lock_all` is in force.
    fn lock_all_in_force(&self) -> bool {
        self.locked_all.load(Ordering::SeqCst) != self.unlocked_all.load(Ordering::SeqCst)
    }

    /// Counts a drop of the entry in `slot` that cannot be carried out now
    /// (the lock's holder is this thread, interrupted by a signal handler),
    /// for the holder to finish before it lets go.
    fn defer(&self, slot: usize) {
        self.slots[slot].dropped.fetch_add(1, Ordering::Relaxed);
        self.lock.fetch_or(DEFERRED, Ordering::Relaxed);
    }
}

impl Held<'_> {
    /// The slots in use.
    fn in_use(&self) -> impl Iterator<Item = &Slot> {
        let used = self.record.used.load(Ordering::Relaxed);
        self.record.slots[..used]
            .iter()
            .filter(|s| s.count.load(Ordering::Relaxed) > 0)
    }

    /// `munlock(2)` of the pages of `[start, end)` (page-aligned) that no
    /// entry covers; nothing if `implicit` (a drop) and `lock_all` is in
    /// force. Returns the first error.
    ///
    /// The count of unlocks is raised before `lock_all`'s mark is read, and
    /// `lock_all` sets the mark before it reads the count (both `SeqCst`):
    /// either this unlock sees `lock_all` in force, or `lock_all` sees the
    /// count changed and locks again once this holder has left.
    fn unlock_uncovered(&self, start: usize, end: usize, implicit: bool) -> Result<(), Error> {
        let record = self.record;
        record.unlocks.fetch_add(1, Ordering::SeqCst);
        if implicit && record.lock_all_in_force() {
            return Ok(());
        }
        let mut result = Ok(());
        let mut at = start;
        while at < end {
            // How far the entries that cover `at` reach, and where the next
            // one starts.
            let (mut covered, mut next) = (at, end);
            for s in self.in_use() {
                let (from, to) = (
                    s.start.load(Ordering::Relaxed) & !FLAGS,
                    s.end.load(Ordering::Relaxed),
                );
                if from <= at {
                    covered = covered.max(to);
                } else {
                    next = next.min(from);
                }
            }
            if covered > at {
                at = covered;
                continue;
            }
            if let Err(e) = sys::munlock(at as *const u8, next - at) {
                result = result.and(Err(e));
            }
            at = next;
        }
        result
    }

    /// Takes `n` holders out of the entry in `slot`; returns its range and
    /// whether it was a guard's (whose pages the caller may unlock).
    fn take_out(&self, slot: usize, n: usize) -> (usize, usize, bool) {
        let record = self.record;
        let s = &record.slots[slot];
        let key = s.start.load(Ordering::Relaxed);
        let count = s.count.load(Ordering::Relaxed) - n;
        s.count.store(count, Ordering::Relaxed);
        if count == 0 {
            record.live.fetch_sub(1, Ordering::Relaxed);
            if key & SECRET != 0 {
                record.secrets.fetch_sub(1, Ordering::Relaxed);
            }
            let mut used = record.used.load(Ordering::Relaxed);
            while used > 0 && record.slots[used - 1].count.load(Ordering::Relaxed) == 0 {
                used -= 1;
            }
            record.used.store(used, Ordering::Relaxed);
        }
        (
            key & !FLAGS,
            s.end.load(Ordering::Relaxed),
            key & SECRET == 0,
        )
    }

    /// Carries out the deferred drops: takes their holders out and unlocks
    /// a guard's pages that no one else holds, unless `lock_all` is in
    /// force.
    #[cold]
    #[inline(never)]
    fn drain(&self) {
        let record = self.record;
        for slot in 0..record.used.load(Ordering::Relaxed) {
            let n = record.slots[slot].dropped.swap(0, Ordering::Relaxed);
            if n == 0 {
                continue;
            }
            let (start, end, guard) = self.take_out(slot, n);
            if guard {
                // A drop cannot report an error: as in `LockGuard`'s Drop.
                let _ = self.unlock_uncovered(start, end, true);
            }
        }
    }

    /// Locks every entry's range again as it was taken, after
    /// `munlockall`. `memfd_secret` pages were never unlocked.
    fn relock(&self) -> Result<(), Error> {
        let mut result = Ok(());
        for s in self.in_use() {
            let key = s.start.load(Ordering::Relaxed);
            let addr = (key & !FLAGS) as *const u8;
            let len = s.end.load(Ordering::Relaxed) - (key & !FLAGS);
            let locked = if key & SECRET_MEM != 0 {
                Ok(())
            } else if key & ON_FAULT != 0 {
                sys::mlock_onfault(addr, len)
            } else {
                sys::mlock(addr, len)
            };
            result = result.and(locked);
        }
        result
    }
}

impl Drop for Held<'_> {
    /// Carries out deferred drops, then frees the lock and wakes the
    /// sleepers.
    fn drop(&mut self) {
        let record = self.record;
        let mut word = record.lock.load(Ordering::Relaxed);
        loop {
            if word & DEFERRED != 0 {
                record.lock.fetch_and(!DEFERRED, Ordering::Relaxed);
                self.drain();
                word = record.lock.load(Ordering::Relaxed);
                continue;
            }
            match record
                .lock
                .compare_exchange_weak(word, 0, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => word = now,
            }
        }
        if word & WAITERS != 0 {
            sys::futex_wake_all(&record.lock);
        }
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

/// A slot that is no hold: an empty range, or a hold already given up.
const NO_SLOT: usize = usize::MAX;

/// One holder's entry in the record.
#[derive(Debug)]
pub(crate) struct Hold {
    /// The slot, or [`NO_SLOT`].
    slot: usize,
    /// The record's generation when the entry was made.
    generation: usize,
    /// Whether the pages lie within a live secret buffer's (locked
    /// already) when the entry was made.
    in_secret: bool,
}

impl Hold {
    /// Records `[addr, addr + len)` (not overflowing) as held, before the
    /// caller locks it. An empty range holds nothing.
    ///
    /// # Errors
    /// [`Error::TooManyLocks`] when every slot holds another range;
    /// [`Error::InvalidArgument`] if the page-rounded end overflows;
    /// [`Error::Reentered`] from a signal handler that interrupted this
    /// thread inside the record; the error of `mmap(2)` if the record's
    /// page cannot be mapped.
    pub(crate) fn new(addr: *const u8, len: usize, kind: Kind) -> Result<Hold, Error> {
        let mut hold = Hold {
            slot: NO_SLOT,
            generation: 0,
            in_secret: false,
        };
        if len == 0 {
            return Ok(hold);
        }
        let (start, end) = pages(addr, len).ok_or(Error::InvalidArgument)?;
        let key = start
            | match kind {
                Kind::Lock => 0,
                Kind::OnFault => ON_FAULT,
                Kind::Secret => SECRET,
                Kind::SecretMem => SECRET | SECRET_MEM,
            };
        let record = RECORD.get()?;
        let held = record.enter()?;
        hold.generation = match record.generation.load(Ordering::Relaxed) {
            0 => {
                let generation = GENERATIONS.fetch_add(1, Ordering::Relaxed) + 1;
                record.generation.store(generation, Ordering::Relaxed);
                generation
            }
            generation => generation,
        };
        let used = record.used.load(Ordering::Relaxed);
        let mut free = None;
        for (i, slot) in record.slots[..used].iter().enumerate() {
            let count = slot.count.load(Ordering::Relaxed);
            if count == 0 {
                free = free.or(Some(i));
                continue;
            }
            let (slot_key, slot_end) = (
                slot.start.load(Ordering::Relaxed),
                slot.end.load(Ordering::Relaxed),
            );
            hold.in_secret |=
                slot_key & SECRET != 0 && slot_key & !FLAGS <= start && slot_end >= end;
            if slot_key == key && slot_end == end && hold.slot == NO_SLOT {
                slot.count.store(count + 1, Ordering::Relaxed);
                hold.slot = i;
            }
        }
        if hold.slot != NO_SLOT {
            return Ok(hold);
        }
        let i = match free {
            Some(i) => i,
            None if used < SLOTS => {
                record.used.store(used + 1, Ordering::Relaxed);
                used
            }
            None => return Err(Error::TooManyLocks),
        };
        let slot = &record.slots[i];
        slot.start.store(key, Ordering::Relaxed);
        slot.end.store(end, Ordering::Relaxed);
        slot.count.store(1, Ordering::Relaxed);
        // SeqCst: `unlock_all` reads `live` without the lock after its
        // `munlockall` (see there).
        record.live.fetch_add(1, Ordering::SeqCst);
        if key & SECRET != 0 {
            record.secrets.fetch_add(1, Ordering::Relaxed);
        }
        drop(held);
        hold.slot = i;
        Ok(hold)
    }

    /// Whether the range lay within a live secret buffer's pages when it
    /// was recorded: locked already, so locking it again is needless (and
    /// for `memfd_secret` pages, which `mlock(2)` cannot populate, an
    /// `ENOMEM` that would name the wrong fix).
    pub(crate) fn in_secret(&self) -> bool {
        self.in_secret
    }

    /// A guard's end: takes the entry out and munlocks the pages of its
    /// range that no other entry holds, unless `lock_all` is in force. If
    /// the record is busy in this very thread (a signal handler), the drop
    /// is deferred, and carried out when the interrupted call leaves it.
    pub(crate) fn unlock(&mut self) -> Result<(), Error> {
        self.leave(true).map(drop)
    }

    /// A secret buffer's end, before its pages are unmapped: takes the
    /// entry out without unlocking anything. Returns `false` for a hold
    /// inherited through `fork(2)`, which is not this process's to give
    /// up (nor are the pages behind it).
    pub(crate) fn release(&mut self) -> bool {
        matches!(self.leave(false), Ok(true))
    }

    /// Takes the entry out, once; munlocks what no one else holds if
    /// `unlock`. `Ok(false)` for an inherited hold.
    fn leave(&mut self, unlock: bool) -> Result<bool, Error> {
        let slot = core::mem::replace(&mut self.slot, NO_SLOT);
        if slot == NO_SLOT {
            return Ok(true);
        }
        // In the process that made the hold, its page exists and `get`
        // cannot fail; a failure is a child's first call.
        let Ok(record) = RECORD.get() else {
            return Ok(false);
        };
        if record.generation.load(Ordering::Relaxed) != self.generation {
            return Ok(false);
        }
        let Ok(held) = record.enter() else {
            // A signal handler on the thread that holds the record.
            record.defer(slot);
            return Ok(true);
        };
        let (start, end, _) = held.take_out(slot, 1);
        if unlock {
            held.unlock_uncovered(start, end, true)?;
        }
        Ok(true)
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let _ = self.leave(false);
    }
}

/// Maps this process's record if it is not mapped yet (a few KiB, which
/// count towards `VmSize` and, once locked, `RLIMIT_MEMLOCK`).
///
/// # Errors
/// The error of `mmap(2)`.
pub(crate) fn prepare() -> Result<(), Error> {
    RECORD.get().map(drop)
}

/// `munlock(2)` of the pages of `[addr, addr + len)` that no entry holds,
/// whether or not `lock_all` is in force (as `munlock(2)` after
/// `mlockall(2)` is a carve-out in the kernel).
pub(crate) fn unlock(addr: *const u8, len: usize) -> Result<(), Error> {
    if len == 0 {
        return Ok(());
    }
    let (start, end) = pages(addr, len).ok_or(Error::InvalidArgument)?;
    RECORD.get()?.enter()?.unlock_uncovered(start, end, false)
}

/// `mlockall(flags)`, recorded: from its success until [`unlock_all`], no
/// guard's drop unlocks anything in this process.
///
/// The count of unlocks is read before the lock word (both `SeqCst`): an
/// unlock whose holder took the lock after that read raises the count
/// after it, and a holder seen in the lock is waited out, its `munlock`
/// done, before `mlockall`. After `mlockall`, an unlock that the count
/// shows may have come after it; once it is done, `mlockall` again.
pub(crate) fn lock_all(flags: crate::Flags) -> Result<(), Error> {
    let record = RECORD.get()?;
    let mut seen = record.unlocks.load(Ordering::SeqCst);
    loop {
        wait_out(record)?;
        sys::mlockall(flags)?;
        record.locked_all.fetch_add(1, Ordering::SeqCst);
        let now = record.unlocks.load(Ordering::SeqCst);
        if now == seen {
            return Ok(());
        }
        seen = now;
    }
}

/// Waits until the thread that holds the lock now, if any, has left it.
///
/// # Errors
/// [`Error::Reentered`] when the holder is the calling thread.
#[inline]
fn wait_out(record: &Record) -> Result<(), Error> {
    let word = record.lock.load(Ordering::SeqCst);
    match word & HOLDER {
        0 => Ok(()),
        holder => wait_for(record, word, holder),
    }
}

/// [`wait_out`] of `holder`, seen in the lock word `word`.
#[cold]
#[inline(never)]
fn wait_for(record: &Record, mut word: u32, holder: u32) -> Result<(), Error> {
    if sys::gettid() & HOLDER == holder {
        return Err(Error::Reentered);
    }
    // A new holder after that one raises the count of unlocks after our
    // read of it: `lock_all` sees its unlock.
    while word & HOLDER == holder {
        word = record.sleep(word);
    }
    Ok(())
}

/// `munlockall(2)`, then every held range locked again as it was taken
/// (`mlock`, or `mlock2` with `MLOCK_ONFAULT`). Between the two calls the
/// held pages are briefly unlocked.
///
/// Without entries and with the lock free, the record's lock is not
/// taken: a guard taken meanwhile makes its entry before it locks, so if
/// `live` is still 0 after `munlockall` (the kernel orders the two system
/// calls, and with them the accesses around them), the guard's `mlock`
/// came after the `munlockall` and stands.
pub(crate) fn unlock_all() -> Result<(), Error> {
    let record = RECORD.get()?;
    let mut held = None;
    if record.live.load(Ordering::SeqCst) != 0 || record.lock.load(Ordering::SeqCst) & HOLDER != 0 {
        held = Some(record.enter()?);
    }
    let locked_all = record.locked_all.load(Ordering::SeqCst);
    sys::munlockall()?;
    // A lock_all that succeeded meanwhile may have come after the
    // munlockall: then it is still in force.
    record.unlocked_all.store(locked_all, Ordering::SeqCst);
    if held.is_none() && record.live.load(Ordering::SeqCst) != 0 {
        held = Some(record.enter()?);
    }
    match held {
        Some(held) => held.relock(),
        None => Ok(()),
    }
}

/// Whether the pages of `[addr, addr + len)` all lie in the data pages of
/// one live secret buffer: locked already, so locking them again is
/// needless (and for `memfd_secret` pages, which `mlock(2)` cannot
/// populate, an `ENOMEM` that would name the wrong fix).
///
/// # Errors
/// As [`Record::enter`], when there are secret buffers to look at.
pub(crate) fn held_by_secret(addr: *const u8, len: usize) -> Result<bool, Error> {
    let Some((start, end)) = pages(addr, len) else {
        return Ok(false);
    };
    let record = RECORD.get()?;
    // The caller borrows the bytes it locks: if they are a secret's, the
    // buffer's entry was made before the borrow reached this thread.
    if record.secrets.load(Ordering::Relaxed) == 0 {
        return Ok(false);
    }
    let held = record.enter()?;
    let within = held.in_use().any(|s| {
        let key = s.start.load(Ordering::Relaxed);
        key & SECRET != 0 && key & !FLAGS <= start && s.end.load(Ordering::Relaxed) >= end
    });
    Ok(within)
}
