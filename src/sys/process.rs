//! `PerProcess`: a value of the calling process's own, in a page that a
//! child of `fork(2)` does not share.
#![allow(unsafe_code)]

use core::marker::PhantomData;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use super::linux::{getpid, wipe_on_fork, Mapping};
use crate::Error;

/// Types for which all-zero bytes are a valid value, made of atomics (or
/// other `Sync` parts) only, so that a page the kernel zero-fills holds a
/// fresh value that every thread may use at once.
///
/// # Safety
/// The all-zero bit pattern must be a valid `Self`, and `Self` must need
/// no `Drop` (its page is never freed).
pub(crate) unsafe trait Zeroed: Sync {}

/// The page: the value, and in front of it the process that made it.
#[repr(C)]
struct Page<T> {
    /// `getpid()` of the process that mapped the page, where the kernel
    /// does not wipe it on fork; 0 where it does.
    owner: AtomicU32,
    value: T,
}

/// [`PerProcess::at`]'s low bit: the page is `MADV_WIPEONFORK`.
const WIPED: usize = 1;

/// A `T` of this process's own, made zeroed by the first [`get`](Self::get)
/// and never freed.
///
/// The value lives in an anonymous page of its own. Where the kernel
/// honours `MADV_WIPEONFORK` (`madvise(2)`, Linux 4.14+), a child of
/// `fork(2)` gets that page zero-filled, so it finds a fresh `T` at the
/// same address, whatever the parent's threads were doing with theirs at
/// the fork, and no system call is needed to tell the two processes
/// apart. Where it does not (Linux before 4.14; QEMU user mode before 8.0,
/// which ignores `madvise`), the page records `getpid()` of its maker,
/// each `get` compares it with the caller's, and a process that finds
/// another's page maps a fresh one. That fallback tells processes apart by
/// PID, so it cannot see a fork child that got its parent's PID (a new PID
/// namespace): the crate's docs say so.
///
/// A `clone(CLONE_VM)` child without `CLONE_THREAD` shares the page, as it
/// shares all memory.
pub(crate) struct PerProcess<T> {
    /// 0 before the first `get`, else the page's address, with [`WIPED`].
    at: AtomicUsize,
    value: PhantomData<T>,
}

impl<T: Zeroed + 'static> PerProcess<T> {
    /// No page yet.
    pub(crate) const fn new() -> PerProcess<T> {
        PerProcess {
            at: AtomicUsize::new(0),
            value: PhantomData,
        }
    }

    /// This process's value: one load once the page exists (and, in the
    /// fallback, a `getpid`).
    ///
    /// # Errors
    /// The error of `mmap(2)` if the first call of a process cannot map
    /// its page.
    #[inline]
    pub(crate) fn get(&self) -> Result<&T, Error> {
        let at = self.at.load(Ordering::Acquire);
        if at & WIPED != 0 {
            return Ok(&Self::page(at).value);
        }
        if at != 0 {
            let page = Self::page(at);
            if page.owner.load(Ordering::Relaxed) == getpid() {
                return Ok(&page.value);
            }
        }
        self.make(at)
    }

    /// Maps a zeroed page and publishes it in place of `old` (nothing, or
    /// another process's page); a thread that loses the race unmaps its own
    /// and takes the winner's.
    #[cold]
    fn make(&self, old: usize) -> Result<&T, Error> {
        let mapping = Mapping::new(core::mem::size_of::<Page<T>>())?;
        let wiped = wipe_on_fork(&mapping);
        let at = mapping.addr as usize | usize::from(wiped);
        if !wiped {
            Self::page(at).owner.store(getpid(), Ordering::Relaxed);
        }
        match self
            .at
            .compare_exchange(old, at, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                // Published: never unmapped from here on.
                core::mem::forget(mapping);
                Ok(&Self::page(at).value)
            }
            Err(_) => {
                // Another thread published first; ours was never seen.
                drop(mapping);
                self.get()
            }
        }
    }

    /// The page at `at` (its [`WIPED`] bit ignored).
    #[inline(always)]
    fn page(at: usize) -> &'static Page<T> {
        // SAFETY: `at` was made by `make` from a fresh read-write mapping of
        // at least `size_of::<Page<T>>()` bytes, page-aligned (so aligned
        // for `Page<T>`, whose alignment is far below a page), zero-filled by
        // the kernel (a valid `Page<T>`: `T: Zeroed`, and a zero `AtomicU32`)
        // and never unmapped once published, so the reference is valid for
        // the rest of the process and of any forked child, which inherits
        // the mapping (zeroed again where `WIPED`). Only `Sync` parts are
        // shared through it, and only by shared reference.
        unsafe { &*((at & !WIPED) as *const Page<T>) }
    }
}
