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
//!   a count for identical ranges; a [`Pool`](crate::secret::Pool) has one
//!   for all its secrets). Unlocking a range munlocks only the
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
//! of `fork(2)` gets zero-filled: the child starts with an empty table and
//! no `lock_all` in force, whatever the parent's threads were doing at the
//! fork, and nothing compares process IDs. Entries carry the record's
//! *generation*, set on first use in each process, so that a guard or
//! secret buffer inherited through fork is recognised as someone else's
//! when the child drops it.
//!
//! # No lock
//!
//! Nothing in the record waits for anything: no thread can be held up by
//! another, whatever their scheduling classes, and a signal handler that
//! interrupted the crate can call it again. A slot is claimed with a
//! compare-and-swap, filled in, then published; holders are counted in the
//! same word, with a count of the slot's uses above them so that a slot
//! used again never looks like the one a reader saw before.
//!
//! What needs care is a lock and an unlock of the same pages at the same
//! time, each unaware of the other: an unlock that looked at the table (or
//! at `lock_all`'s mark) before a new entry (or the mark) was there can
//! land after the new `mlock` (or `mlockall`) and undo it. Both sides
//! close that window, each with a store and then a load (`SeqCst`, so at
//! least one of the two sees the other):
//!
//! - a locker publishes its entry (or mark), calls `mlock`, and then reads
//!   a count of unlocks that it read before: if the count moved, an
//!   unlock may have come after its system call, and it locks once more;
//! - an unlocker raises that count after its `munlock`, then looks at the
//!   table (and the mark) again, and locks again whatever a newcomer holds
//!   in its range (and, under `lock_all`, the range itself).
//!
//! A lock made again on someone else's behalf is looked at once more
//! afterwards: if that entry was given up (or `lock_all` ended) meanwhile,
//! its own unlock may have come first, and the pages no one holds are
//! unlocked again. `unlock_all` ends `lock_all` before its `munlockall`,
//! and locks the held ranges again the same way.
//!
//! What the record cannot see: locks taken outside the crate (`mlock` or
//! `mlockall` through libc or another crate) and plain [`lock`] calls,
//! which record nothing (a lock with no owner to release it).
//!
//! [`lock`]: crate::lock

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::sys::{self, LockMode};
use crate::Error;

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

/// [`Slot::state`]: the number of holders in the low bits; above them, a
/// count of the slot's uses.
const HOLDERS: usize = 0xffff;
/// [`Slot::state`]'s holders while the slot is being filled in.
const CLAIMED: usize = HOLDERS;
/// [`Slot::state`]: one more use of the slot.
const NEXT_USE: usize = HOLDERS + 1;

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
/// of `start`), written while the slot is [`CLAIMED`] and read only while
/// it has holders.
struct Slot {
    start: AtomicUsize,
    end: AtomicUsize,
    /// Uses and holders: see [`HOLDERS`].
    state: AtomicUsize,
}

impl Slot {
    /// The range (flags in its start), if the slot has holders, read
    /// together with the state it had.
    fn entry(&self) -> Option<(usize, usize, usize)> {
        let state = self.state.load(Ordering::SeqCst);
        if matches!(state & HOLDERS, 0 | CLAIMED) {
            return None;
        }
        let (key, end) = (
            self.start.load(Ordering::Relaxed),
            self.end.load(Ordering::Relaxed),
        );
        // Unchanged: the range is the one of that use of the slot.
        (self.state.load(Ordering::Acquire) == state).then_some((key, end, state))
    }
}

/// The record of one process: atomics, read and written with the
/// orderings noted where they are used.
struct Record {
    /// Raised by every unlock once its `munlock` (or `munlockall`) is done.
    unlocks: AtomicUsize,
    /// How many `lock_all` calls have succeeded in this process.
    locked_all: AtomicUsize,
    /// `locked_all` as `unlock_all` read it before its `munlockall`:
    /// `lock_all` is in force while the two differ.
    unlocked_all: AtomicUsize,
    /// Nonzero once the record has held an entry in this process; a hold
    /// made under another generation was inherited through `fork(2)`.
    generation: AtomicUsize,
    /// Slots `[0, used)` have been used; the rest never were.
    used: AtomicUsize,
    /// Secret buffers' entries, made or being made.
    secrets: AtomicUsize,
    slots: [Slot; SLOTS],
}

// SAFETY: a zeroed Record is a valid, empty one (no unlocks, no lock_all,
// no entries, no generation yet): it is made of atomics only, and needs no
// Drop.
#[allow(unsafe_code)]
unsafe impl sys::Zeroed for Record {}

/// This process's record.
static RECORD: sys::PerProcess<Record> = sys::PerProcess::new();

/// The last generation handed out. Not in the record's page, so a forked
/// child continues the count from its parent's: its own generation is
/// higher than that of every hold it inherited.
static GENERATIONS: AtomicUsize = AtomicUsize::new(0);

impl Record {
    /// Whether `lock_all` is in force.
    fn lock_all_in_force(&self) -> bool {
        self.locked_all.load(Ordering::SeqCst) != self.unlocked_all.load(Ordering::SeqCst)
    }

    /// The slots that may have been used.
    fn used_slots(&self) -> &[Slot] {
        let used = self.used.load(Ordering::SeqCst).min(SLOTS);
        &self.slots[..used]
    }

    /// The entries: ranges (flags in the start) that have holders.
    fn entries(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.used_slots()
            .iter()
            .filter_map(Slot::entry)
            .map(|(key, end, _)| (key, end))
    }

    /// Whether the pages `[start, end)` lie within one secret buffer's.
    fn in_secret(&self, start: usize, end: usize) -> bool {
        self.secrets.load(Ordering::Relaxed) != 0
            && self
                .entries()
                .any(|(key, to)| key & SECRET != 0 && key & !FLAGS <= start && to >= end)
    }

    /// The record's generation in this process, set on first use.
    fn generation(&self) -> usize {
        let generation = self.generation.load(Ordering::Acquire);
        if generation != 0 {
            return generation;
        }
        let new = GENERATIONS.fetch_add(1, Ordering::Relaxed) + 1;
        match self
            .generation
            .compare_exchange(0, new, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => new,
            Err(first) => first,
        }
    }

    /// The count of unlocks, read before an entry or mark is made (see
    /// [`settle`](Self::settle)).
    fn unlocks(&self) -> usize {
        self.unlocks.load(Ordering::SeqCst)
    }

    /// After a locker's system call (`lock`, which published its entry or
    /// mark first): if the count of unlocks moved since `seen`, an unlock
    /// may have come after it, and `lock` runs once more. One more is
    /// enough: the unlocks that raised the count had their `munlock` done
    /// by then, and any later one sees the entry or mark (see the module
    /// docs).
    fn settle(
        &self,
        seen: usize,
        mut lock: impl FnMut() -> Result<(), Error>,
    ) -> Result<(), Error> {
        lock()?;
        if self.unlocks() != seen {
            lock()?;
        }
        Ok(())
    }

    /// `munlock(2)` of the pages of `[start, end)` (page-aligned) that no
    /// entry covers; nothing if `implicit` (a drop) and `lock_all` is in
    /// force. Then, if it unlocked anything, the unlocker's half of the
    /// module docs' protocol: the count raised, and the pages of `[start,
    /// end)` that an entry holds now (or, for a drop under a `lock_all` now
    /// in force, all of them) locked again. Returns the first error of the
    /// `munlock` calls.
    #[allow(unsafe_code)] // munlock and mlock of raw ranges, each with its SAFETY note.
    fn unlock_uncovered(&self, start: usize, end: usize, implicit: bool) -> Result<(), Error> {
        if implicit && self.lock_all_in_force() {
            return Ok(());
        }
        let mut result = Ok(());
        let mut unlocked = false;
        let mut at = start;
        while at < end {
            // How far the entries that cover `at` reach, and where the next
            // one starts.
            let (mut covered, mut next) = (at, end);
            for (key, to) in self.entries() {
                let from = key & !FLAGS;
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
            unlocked = true;
            // SAFETY: munlock changes no memory; no entry holds these
            // pages, and they lie in a range its owner gave up or asked to
            // unlock (module docs).
            if let Err(e) = unsafe { sys::munlock(at, next - at) } {
                result = result.and(Err(e));
            }
            at = next;
        }
        if unlocked {
            // SeqCst: the unlocker's store, then its loads.
            self.unlocks.fetch_add(1, Ordering::SeqCst);
            if implicit && self.lock_all_in_force() {
                // SAFETY: mlock changes no memory, and lock_all covers
                // these pages anyway.
                let _ = unsafe { sys::mlock(start, end - start, LockMode::Now) };
                if !self.lock_all_in_force() {
                    // unlock_all came meanwhile, perhaps before that lock.
                    let _ = self.unlock_uncovered(start, end, true);
                }
            }
            for slot in self.used_slots() {
                let Some((key, to, state)) = slot.entry() else {
                    continue;
                };
                let (from, to) = ((key & !FLAGS).max(start), to.min(end));
                if from < to {
                    let _ = self.lock_again(slot, key, state, from, to);
                }
            }
        }
        result
    }

    /// Locks `[from, to)` again for the entry `key` of `slot`, seen with
    /// `state`, and looks at the slot once more: if the entry was given up
    /// meanwhile, its drop may have unlocked before this lock, and the
    /// pages that no entry holds are unlocked again. (Each such round
    /// follows a drop on another thread, so the rounds end.)
    fn lock_again(
        &self,
        slot: &Slot,
        key: usize,
        state: usize,
        from: usize,
        to: usize,
    ) -> Result<(), Error> {
        let locked = lock_range(key, from, to);
        let now = slot.state.load(Ordering::SeqCst);
        if (now & !HOLDERS != state & !HOLDERS || now & HOLDERS == 0) && key & SECRET == 0 {
            let _ = self.unlock_uncovered(from, to, true);
        }
        locked
    }

    /// Takes one holder out of the entry in `slot`; returns its range and
    /// whether it was a guard's (whose pages the caller may unlock).
    fn take_out(&self, slot: usize) -> (usize, usize, bool) {
        let s = &self.slots[slot];
        let (key, end) = (
            s.start.load(Ordering::Relaxed),
            s.end.load(Ordering::Relaxed),
        );
        // SeqCst: the unlocker's view of the table (module docs).
        let state = s.state.fetch_sub(1, Ordering::SeqCst) - 1;
        if state & HOLDERS == 0 && key & SECRET != 0 {
            self.secrets.fetch_sub(1, Ordering::Relaxed);
        }
        (key & !FLAGS, end, key & SECRET == 0)
    }
}

/// Locks `[from, to)` as the entry with flags `key` was locked (`mlock`, or
/// `mlock2` with `MLOCK_ONFAULT`); `memfd_secret` pages are never unlocked
/// and need nothing.
fn lock_range(key: usize, from: usize, to: usize) -> Result<(), Error> {
    match key {
        _ if key & SECRET_MEM != 0 => Ok(()),
        _ if key & ON_FAULT != 0 => lock_pages(from, to - from, LockMode::OnFault),
        _ => lock_pages(from, to - from, LockMode::Now),
    }
}

/// The one `mlock` of the crate's single-range locks: a range a caller
/// locks (a slice, or a range the caller of `lock_raw` vouched for), or one
/// the record holds.
#[allow(unsafe_code)] // The one unsafe block: see its SAFETY note.
pub(crate) fn lock_pages(addr: usize, len: usize, mode: LockMode) -> Result<(), Error> {
    // SAFETY: mlock changes only whether the pages are locked, never their
    // contents or mappings; every caller locks a range it was given to
    // lock, or one an entry of the record holds.
    unsafe { sys::mlock(addr, len, mode) }
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
    /// The count of unlocks before the entry was made (see
    /// [`Record::settle`]).
    seen: usize,
    /// Whether the pages lay within a live secret buffer's (locked
    /// already) when the entry was made.
    in_secret: bool,
}

impl Hold {
    /// Records `[addr, addr + len)` (not overflowing) as held, before the
    /// caller locks it ([`lock`](Self::lock)). An empty range holds
    /// nothing.
    ///
    /// # Errors
    /// [`Error::TooManyLocks`] when every slot holds another range;
    /// [`Error::InvalidArgument`] if the page-rounded end overflows; the
    /// error of `mmap(2)` if the record's page cannot be mapped.
    pub(crate) fn new(addr: *const u8, len: usize, kind: Kind) -> Result<Hold, Error> {
        let mut hold = Hold {
            slot: NO_SLOT,
            generation: 0,
            seen: 0,
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
        hold.generation = record.generation();
        hold.seen = record.unlocks();
        hold.in_secret = record.in_secret(start, end);
        if key & SECRET != 0 {
            record.secrets.fetch_add(1, Ordering::Relaxed);
        }
        match claim(record, key, end) {
            Ok(slot) => hold.slot = slot,
            Err(e) => {
                if key & SECRET != 0 {
                    record.secrets.fetch_sub(1, Ordering::Relaxed);
                }
                return Err(e);
            }
        }
        Ok(hold)
    }

    /// Locks the recorded range with `lock` (its `mlock`) so that it
    /// stands against unlocks that ran meanwhile ([`Record::settle`]).
    ///
    /// # Errors
    /// `lock`'s.
    pub(crate) fn lock(&self, lock: impl FnMut() -> Result<(), Error>) -> Result<(), Error> {
        RECORD.get()?.settle(self.seen, lock)
    }

    /// Whether the range lay within a live secret buffer's pages when it
    /// was recorded: locked already, so locking it again is needless (and
    /// for `memfd_secret` pages, which `mlock(2)` cannot populate, an
    /// `ENOMEM` that would name the wrong fix).
    pub(crate) fn in_secret(&self) -> bool {
        self.in_secret
    }

    /// A guard's end: takes the entry out and munlocks the pages of its
    /// range that no other entry holds, unless `lock_all` is in force.
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

    /// Whether the hold is this process's, not one inherited through
    /// `fork(2)` (an empty hold is always ours).
    pub(crate) fn is_ours(&self) -> bool {
        self.slot == NO_SLOT
            || RECORD
                .get()
                .is_ok_and(|record| record.generation.load(Ordering::Relaxed) == self.generation)
    }

    /// Keeps the entry for the rest of the process: for pages that stay
    /// mapped and locked for good (`mseal(2)`).
    pub(crate) fn keep_forever(&mut self) {
        self.slot = NO_SLOT;
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
        let (start, end, _) = record.take_out(slot);
        if unlock {
            record.unlock_uncovered(start, end, true)?;
        }
        Ok(true)
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let _ = self.leave(false);
    }
}

/// Makes an entry for `[start, end)` with flags `key`: one more holder of
/// an identical entry, or a free slot claimed, filled in and published.
/// Returns the slot.
///
/// # Errors
/// [`Error::TooManyLocks`] when every slot holds another range.
fn claim(record: &Record, key: usize, end: usize) -> Result<usize, Error> {
    'scan: loop {
        let used = record.used.load(Ordering::SeqCst).min(SLOTS);
        let mut free = None;
        for (i, slot) in record.slots.iter().enumerate() {
            let Some((slot_key, slot_end, state)) = slot.entry() else {
                let state = slot.state.load(Ordering::Relaxed);
                if state & HOLDERS == 0 {
                    free = free.or(Some((i, state)));
                    if i >= used {
                        // Never used, nor any slot after it.
                        break;
                    }
                }
                continue;
            };
            if (slot_key, slot_end) == (key, end) && state & HOLDERS < CLAIMED - 1 {
                // SeqCst: a locker's store (module docs).
                if slot
                    .state
                    .compare_exchange(state, state + 1, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(i);
                }
                continue 'scan;
            }
        }
        let (i, state) = free.ok_or(Error::TooManyLocks)?;
        let slot = &record.slots[i];
        let claimed = (state & !HOLDERS) + NEXT_USE + CLAIMED;
        if slot
            .state
            .compare_exchange(state, claimed, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            continue;
        }
        if i >= used {
            record.used.fetch_max(i + 1, Ordering::SeqCst);
        }
        slot.start.store(key, Ordering::Relaxed);
        slot.end.store(end, Ordering::Relaxed);
        // SeqCst: published, a locker's store (module docs).
        slot.state.store(claimed - CLAIMED + 1, Ordering::SeqCst);
        return Ok(i);
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
    RECORD.get()?.unlock_uncovered(start, end, false)
}

/// `mlockall(flags)`, recorded: from its success until [`unlock_all`], no
/// guard's drop unlocks anything in this process. The mark in `locked_all`
/// is a locker's store, and [`Record::settle`] its load.
pub(crate) fn lock_all(flags: crate::Flags) -> Result<(), Error> {
    let record = RECORD.get()?;
    let seen = record.unlocks();
    record.settle(seen, || {
        sys::mlockall(flags)?;
        record.locked_all.fetch_add(1, Ordering::SeqCst);
        Ok(())
    })
}

/// `munlockall(2)`, then every held range locked again as it was taken
/// (`mlock`, or `mlock2` with `MLOCK_ONFAULT`). Between the two calls the
/// held pages are briefly unlocked.
///
/// An entry made meanwhile is made before its pages are locked: if it is
/// not there when the ranges are locked again, its `mlock` came after the
/// `munlockall` (the kernel orders the two system calls, and with them the
/// accesses around them). An entry given up meanwhile is looked at again
/// after its range was locked: if it is gone, the range is unlocked as its
/// drop would (the drop may have unlocked it before).
pub(crate) fn unlock_all() -> Result<(), Error> {
    let record = RECORD.get()?;
    // lock_all ends before the munlockall: a drop that still saw it in
    // force and locked its range again either did so before the
    // munlockall (which undoes it) or sees it ended and unlocks again.
    // A lock_all that succeeds from here on stays in force.
    let locked_all = record.locked_all.load(Ordering::SeqCst);
    record.unlocked_all.store(locked_all, Ordering::SeqCst);
    let unlocked = sys::munlockall();
    record.unlocks.fetch_add(1, Ordering::SeqCst);
    unlocked?;
    let mut result = Ok(());
    for slot in record.used_slots() {
        let Some((key, end, state)) = slot.entry() else {
            continue;
        };
        result = result.and(record.lock_again(slot, key, state, key & !FLAGS, end));
    }
    result
}

/// Whether the pages of `[addr, addr + len)` all lie in the data pages of
/// one live secret buffer: locked already, so locking them again is
/// needless (and for `memfd_secret` pages, which `mlock(2)` cannot
/// populate, an `ENOMEM` that would name the wrong fix).
///
/// # Errors
/// The error of `mmap(2)` if the record's page cannot be mapped.
pub(crate) fn held_by_secret(addr: *const u8, len: usize) -> Result<bool, Error> {
    let Some((start, end)) = pages(addr, len) else {
        return Ok(false);
    };
    // The caller borrows the bytes it locks: if they are a secret's, the
    // buffer's entry was made before the borrow reached this thread.
    Ok(RECORD.get()?.in_secret(start, end))
}
