//! `ForkLocal`: a per-process word that a child of `fork(2)` sees as 0,
//! kept in a page the kernel wipes on fork.
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// A per-process value that, once set, reads as unset (0) again in a
/// child made by `fork(2)`: a cache of a fact about this process that a
/// child has to find out for itself (its process ID; whether its `/proc`,
/// which may be in another mount namespace, is procfs).
///
/// The value is the first word of its own anonymous page, marked
/// `MADV_WIPEONFORK` (`madvise(2)`, Linux 4.14+): the kernel gives a forked
/// child that page zero-filled, so the child sees 0, with no `getpid` on
/// the fast path. Where the page cannot be had (an older kernel rejects the
/// advice, the mapping fails) nothing is ever stored, and the caller works
/// the value out every time.
///
/// QEMU user mode before 8.0 answers every `madvise` with 0 and applies
/// none, so a child there would inherit the value. Before it trusts the
/// page, [`wipe_on_fork_page`](super::linux::wipe_on_fork_page) also asks for advice no kernel defines: a real
/// kernel refuses it with EINVAL, and an `madvise` that accepts it is one
/// that ignores advice.
///
/// A `clone(CLONE_VM)` child shares the page and so the value; `vfork`
/// children only `exec` or `_exit`, which is all such a child may do.
pub(crate) struct ForkLocal {
    /// [`NO_PAGE`], [`NO_FLAG`], or the address of the value's page.
    page: AtomicUsize,
}

/// [`ForkLocal::page`] before the first `set`.
const NO_PAGE: usize = 0;
/// [`ForkLocal::page`] when no wipe-on-fork page can be had.
pub(super) const NO_FLAG: usize = 1;

impl ForkLocal {
    /// No value, and no page yet.
    pub(crate) const fn new() -> ForkLocal {
        ForkLocal {
            page: AtomicUsize::new(NO_PAGE),
        }
    }

    /// What [`set`](Self::set) stored in this process since it was forked
    /// (or started), or 0. One load and, once the page exists, one more.
    #[inline]
    pub(crate) fn get(&self) -> u32 {
        match self.page.load(Ordering::Acquire) {
            NO_PAGE | NO_FLAG => 0,
            page => Self::word(page).load(Ordering::Relaxed),
        }
    }

    /// Stores `value`, making the page on first use. Does nothing where no
    /// page can be had.
    ///
    /// Only loads and stores, no read-modify-write: on aarch64 a
    /// compare-and-swap links compiler-rt's outline-atomics helpers and
    /// their start-up probe, about 1.2 KiB in a static `no_std` binary. The
    /// price is that threads making their first call at the same moment
    /// each map a page and the last store wins; the others' pages stay
    /// mapped, unused (one page per such thread, once per process). A page
    /// is never unmapped once it may have been published, so no thread can
    /// touch an unmapped page.
    #[cold]
    pub(crate) fn set(&self, value: u32) {
        let mut page = self.page.load(Ordering::Acquire);
        if page == NO_PAGE {
            page = super::linux::wipe_on_fork_page();
            self.page.store(page, Ordering::Release);
        }
        if page != NO_FLAG {
            Self::word(page).store(value, Ordering::Relaxed);
        }
    }

    /// The value's word at the start of `page`.
    #[inline(always)]
    fn word(page: usize) -> &'static AtomicU32 {
        // SAFETY: `page` came from `wipe_on_fork_page` through `set`, which
        // publishes only the address of a read-write page it mapped and
        // never unmaps (no safe code can unmap it either), so the word stays
        // valid for the rest of the process, and of any forked child, which
        // inherits the mapping. A page address is aligned for an AtomicU32,
        // and every bit pattern is a valid u32; all accesses to the word go
        // through this AtomicU32.
        unsafe { &*(page as *const AtomicU32) }
    }
}
