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

/// The page of [`PerProcess::get`] where it is not (yet) a wipe-on-fork
/// one: `at` if it is this process's, else a new page of `len` bytes,
/// zeroed, marked wipe-on-fork (or stamped with this process's ID where
/// the kernel cannot wipe it) and published in `at_word` in place of `at`.
/// A thread that loses the race to publish unmaps its page and takes the
/// winner's. One copy for every `T`.
#[cold]
#[inline(never)]
fn page_of_this_process(at_word: &AtomicUsize, at: usize, len: usize) -> Result<usize, Error> {
    // Every page starts with `Page::owner`.
    let owner = |at: usize| {
        // SAFETY: `at` is a page published here (or about to be): mapped
        // read-write, page-aligned, at least 4 bytes long, never unmapped
        // once published, and only ever accessed through this atomic.
        unsafe { &*(at as *const AtomicU32) }
    };
    let me = getpid();
    if at != 0 && owner(at).load(Ordering::Relaxed) == me {
        return Ok(at);
    }
    let mapping = Mapping::new(len)?;
    let wiped = wipe_on_fork(&mapping);
    let new = mapping.addr as usize | usize::from(wiped);
    if !wiped {
        owner(new).store(me, Ordering::Relaxed);
    }
    match at_word.compare_exchange(at, new, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            // Published: never unmapped from here on.
            core::mem::forget(mapping);
            Ok(new)
        }
        // Another thread of this process published first (only this
        // process's threads write here); ours was never seen, and dropping
        // it unmaps it.
        Err(now) => Ok(now),
    }
}

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
        let at = match at & WIPED {
            0 => page_of_this_process(&self.at, at, core::mem::size_of::<Page<T>>())?,
            _ => at,
        };
        Ok(&Self::page(at).value)
    }

    /// The page at `at` (its [`WIPED`] bit ignored).
    #[inline(always)]
    fn page(at: usize) -> &'static Page<T> {
        // SAFETY: `at` was made by `page_of_this_process` from a fresh read-write mapping of
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

// SAFETY: a zero AtomicU32 is a valid one, and it needs no Drop.
unsafe impl Zeroed for AtomicU32 {}

/// A per-process word that reads 0 until [`set`](Self::set) in each
/// process: a cache of a fact about this process that a child of `fork(2)`
/// has to find out for itself (its process ID; whether its `/proc`, which
/// may be in another mount namespace, is procfs). A [`PerProcess`] word:
/// where no page can be mapped, it stays 0 and the caller works the value
/// out every time.
pub(crate) struct ForkLocal(PerProcess<AtomicU32>);

impl ForkLocal {
    /// Unset.
    pub(crate) const fn new() -> ForkLocal {
        ForkLocal(PerProcess::new())
    }

    /// What [`set`](Self::set) stored in this process, or 0.
    #[inline]
    pub(crate) fn get(&self) -> u32 {
        self.0.get().map_or(0, |word| word.load(Ordering::Relaxed))
    }

    /// Stores `value` for this process.
    #[inline]
    pub(crate) fn set(&self, value: u32) {
        if let Ok(word) = self.0.get() {
            word.store(value, Ordering::Relaxed);
        }
    }
}

/// This process's ID: `getpid(2)` once per process, then one load from a
/// [`ForkLocal`] (every call asks where no page can be mapped).
pub(crate) fn pid() -> u32 {
    static PID: ForkLocal = ForkLocal::new();
    match PID.get() {
        0 => {
            let pid = getpid();
            PID.set(pid);
            pid
        }
        pid => pid,
    }
}
