//! `SecretPages`: the memory behind one secret (`LockedBuf`,
//! `SealedBuf`), laid out like libsodium's `sodium_malloc` between guard
//! pages, on `memfd_secret(2)` or locked anonymous pages.
#![allow(unsafe_code)]

use super::linux::{
    self, advise_fork, getpid, madvise, mlock, munlock, page_size, prlimit64, protect, Reservation,
};
use super::mem::zeroize;
use super::{Advice, Backing, BorrowedFd, ForkAdvice, LockMode, Protection, Resource};
use crate::Error;

/// Bytes of canary in front of a secret.
const CANARY_LEN: usize = 16;

/// The pages of one secret (`LockedBuf`, `SealedBuf`), laid out like
/// libsodium's `sodium_malloc`:
///
/// ```text
/// | guard page | data pages: ... canary (16) | secret (N) | guard page |
/// ```
///
/// The guards are `PROT_NONE`; the secret ends exactly where the trailing
/// guard starts, so one byte past it faults for every `N`. The canary, 16
/// random bytes from `getrandom(2)`, sits right in front of the secret; its
/// copy lives in this struct, and [`Drop`] compares the two.
///
/// The data pages are either a `memfd_secret(2)` mapping (`MAP_SHARED`,
/// mapped with `MAP_FIXED` over the middle of the reservation, which is
/// ours) or the reservation's own anonymous pages made read-write.
///
/// When `sealed`, the data pages are `PROT_NONE` except while an
/// [`Opened`] borrows them, and no slice of them is ever handed out
/// otherwise: [`SecretPages::bytes`] refuses.
pub(crate) struct SecretPages {
    region: Reservation,
    page: usize,
    len: usize,
    backing: Backing,
    canary: [u8; CANARY_LEN],
    /// Set by [`disown`](Self::disown) in a forked child: [`Drop`] leaves
    /// the memory alone.
    disowned: bool,
    sealed: bool,
    fork_protected: bool,
    /// The data pages are `MADV_DONTFORK`: a child has nothing mapped
    /// there (and may map something else there).
    absent_in_child: bool,
}

// SAFETY: SecretPages owns its mapping like a Box<[u8]> owns its bytes;
// nothing in it is tied to the creating thread.
unsafe impl Send for SecretPages {}
// SAFETY: `&self` methods only read (`bytes`); every change of protection
// takes `&mut self`.
unsafe impl Sync for SecretPages {}

impl SecretPages {
    /// Maps, backs, locks and fills in a buffer for `len > 0` secret bytes.
    /// `want` is the backing the caller requires, or `None` for
    /// `memfd_secret` when the kernel offers it and anonymous memory
    /// otherwise.
    pub(crate) fn new(
        len: usize,
        want: Option<Backing>,
        sealed: bool,
    ) -> Result<SecretPages, Error> {
        let page = page_size();
        let data_len = len
            .checked_add(CANARY_LEN)
            .and_then(|n| n.checked_next_multiple_of(page))
            .ok_or(Error::InvalidArgument)?;
        let total = data_len
            .checked_add(2 * page)
            .ok_or(Error::InvalidArgument)?;
        let region = Reservation::new(total)?;
        let data = region.addr + page;
        let backing = match want {
            Some(Backing::Anonymous) => back_anonymous(data, data_len)?,
            Some(Backing::SecretMem) => back_secretmem(data, data_len)?,
            None => match back_secretmem(data, data_len) {
                Err(Error::Unsupported) => back_anonymous(data, data_len)?,
                other => other?,
            },
        };

        // Fork: a shared secretmem mapping would be shared with a child, so
        // it must not be inherited at all; private anonymous pages are
        // inherited zero-filled, so the child's copy of the handle still
        // points at memory of its own. Before 4.14 (no WIPEONFORK) the
        // anonymous pages are left out as well.
        let advise = |addr, len, advice| {
            // SAFETY: the reservation is ours and nothing refers to it yet;
            // a child is kept from it, and the handle it inherits is
            // disowned there (`SecretPages::disown`).
            unsafe { advise_fork(addr, len, advice) }
        };
        let (advised, absent_in_child) = match backing {
            Backing::SecretMem => (advise(region.addr, total, ForkAdvice::DontFork), true),
            Backing::Anonymous => match advise(data, data_len, ForkAdvice::WipeOnFork) {
                true => (true, false),
                false => (advise(data, data_len, ForkAdvice::DontFork), true),
            },
        };
        // QEMU user mode before 8.0 answers every madvise with 0 and
        // applies none: an advice no kernel defines tells it apart (see
        // `sys::process`).
        let honoured = !advise(data, page, ForkAdvice::Undefined);
        let fork_protected = advised && honoured;

        let mut canary = [0u8; CANARY_LEN];
        fill_random(&mut canary, data);
        let mut pages = SecretPages {
            region,
            page,
            len,
            backing,
            canary,
            disowned: false,
            sealed,
            fork_protected,
            absent_in_child: absent_in_child && fork_protected,
        };
        let at = pages.canary_addr();
        // SAFETY: the canary's 16 bytes lie inside the data pages, which are
        // mapped read-write and owned by `pages`; nothing refers to them.
        unsafe { core::ptr::copy_nonoverlapping(canary.as_ptr(), at as *mut u8, CANARY_LEN) };
        if sealed {
            // SAFETY: the data pages are `pages`' own, and no slice of them
            // exists yet.
            let sealing = unsafe { protect(pages.data_addr(), pages.data_len(), Protection::None) };
            if let Err(e) = sealing {
                // Not sealed after all: zero and release as usual.
                pages.sealed = false;
                return Err(e);
            }
        }
        Ok(pages)
    }

    fn data_addr(&self) -> usize {
        self.region.addr + self.page
    }

    fn data_len(&self) -> usize {
        self.region.len - 2 * self.page
    }

    fn secret_addr(&self) -> usize {
        self.data_addr() + self.data_len() - self.len
    }

    fn canary_addr(&self) -> usize {
        self.secret_addr() - CANARY_LEN
    }

    /// Which memory backs the secret.
    pub(crate) fn backing(&self) -> Backing {
        self.backing
    }

    /// The locked data pages, as a start and a length.
    pub(crate) fn data_pages(&self) -> (*const u8, usize) {
        (self.data_addr() as *const u8, self.data_len())
    }

    /// Marks a handle inherited through `fork(2)`: the pages are not this
    /// process's to zero, check, unlock or (where the child has nothing
    /// mapped there) unmap.
    pub(crate) fn disown(&mut self) {
        self.disowned = true;
    }

    /// Whether the kernel honours the fork advice (see `SecretPages::new`).
    pub(crate) fn fork_protected(&self) -> bool {
        self.fork_protected
    }

    /// The secret's bytes. Panics if the pages are sealed: their bytes are
    /// reachable only through [`open`](Self::open).
    pub(crate) fn bytes(&self) -> &[u8] {
        assert!(!self.sealed, "sealed secret pages have no standing slice");
        // SAFETY: unsealed pages are mapped read-write for the life of
        // `self`; the secret's `len` bytes lie inside them, and the borrow
        // of `self` stops `bytes_mut` and every protection change
        // (`open`, `drop`) while the slice lives.
        unsafe { core::slice::from_raw_parts(self.secret_addr() as *const u8, self.len) }
    }

    /// The secret's bytes, writable. Panics if the pages are sealed.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        assert!(!self.sealed, "sealed secret pages have no standing slice");
        // SAFETY: as in `bytes`, and the unique borrow of `self` makes this
        // the only reference to the bytes.
        unsafe { core::slice::from_raw_parts_mut(self.secret_addr() as *mut u8, self.len) }
    }

    /// Opens sealed pages for reading (`PROT_READ`) or for reading and
    /// writing, until the returned [`Opened`] drops. Unsealed pages are
    /// already open; this changes nothing for them.
    pub(crate) fn open(&mut self, writable: bool) -> Opened<'_> {
        if self.sealed {
            let prot = if writable {
                Protection::ReadWrite
            } else {
                Protection::Read
            };
            // SAFETY: the data pages are ours; opening them invalidates no
            // reference (none exists while they are sealed).
            if unsafe { protect(self.data_addr(), self.data_len(), prot) }.is_err() {
                // The pages are one whole mapping of ours, so the kernel
                // has no reason to refuse; handing out a slice of pages
                // that stayed PROT_NONE is not an option.
                fatal(b"mlock: mprotect refused to open a SealedBuf; aborting\n");
            }
        }
        Opened {
            pages: self,
            writable,
        }
    }
}

/// A borrow of [`SecretPages`] opened by [`SecretPages::open`]; seals the
/// pages again on drop.
pub(crate) struct Opened<'a> {
    pages: &'a mut SecretPages,
    writable: bool,
}

impl Opened<'_> {
    /// The secret's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `open` made the pages readable, and they stay so until
        // `self` drops; the slice borrows `self`.
        unsafe {
            core::slice::from_raw_parts(self.pages.secret_addr() as *const u8, self.pages.len)
        }
    }

    /// The secret's bytes, writable. Panics on a read-only opening.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        assert!(self.writable, "secret pages opened read-only");
        // SAFETY: `open(true)` made the pages writable until `self` drops;
        // the unique borrow of `self` (which holds the unique borrow of the
        // pages) makes this the only reference.
        unsafe {
            core::slice::from_raw_parts_mut(self.pages.secret_addr() as *mut u8, self.pages.len)
        }
    }
}

impl Drop for Opened<'_> {
    fn drop(&mut self) {
        if self.pages.sealed {
            // Fails only if the kernel cannot allocate for the change, in
            // which case the pages stay open (less protected, not unsound).
            // SAFETY: the data pages are ours, and the only slices of them
            // borrowed `self`, which is going.
            let _ = unsafe {
                protect(
                    self.pages.data_addr(),
                    self.pages.data_len(),
                    Protection::None,
                )
            };
        }
    }
}

impl Drop for SecretPages {
    fn drop(&mut self) {
        if self.disowned {
            // A forked child's copy of the handle. Its secretmem pages are
            // absent (the range may hold a mapping of the child's since),
            // so leave the range alone; wiped or inherited anonymous pages
            // are the child's own, unmapped with the region.
            if self.absent_in_child {
                self.region.len = 0;
            }
            return;
        }
        let (data, data_len) = (self.data_addr(), self.data_len());
        // SAFETY: the data pages are ours; opening them invalidates no
        // reference.
        if self.sealed && unsafe { protect(data, data_len, Protection::ReadWrite) }.is_err() {
            fatal(b"mlock: mprotect refused to open a SealedBuf for zeroing; aborting\n");
        }
        let at = self.canary_addr();
        let mut intact = true;
        for (i, expected) in self.canary.iter().enumerate() {
            // SAFETY: the canary lies inside the data pages, readable now.
            intact &= unsafe { ((at + i) as *const u8).read_volatile() } == *expected;
        }
        // SAFETY: the data pages are mapped read-write and owned by `self`;
        // no reference into them survives (every slice borrowed `self`).
        zeroize(unsafe { core::slice::from_raw_parts_mut(data as *mut u8, data_len) });
        if self.backing == Backing::Anonymous {
            // SAFETY: the data pages are ours, and the buffer left the
            // crate's record before its drop reached here.
            let _ = unsafe { munlock(data, data_len) };
        }
        if !intact {
            fatal(
                b"mlock: the canary in front of a LockedBuf or SealedBuf was overwritten \
                  (a write before the start of the secret); aborting\n",
            );
        }
        // The region unmaps itself.
    }
}

/// Backs `[data, data + len)` of a reservation with `memfd_secret(2)`
/// (Linux 5.14+): pages removed from the kernel's direct map, locked
/// (`VM_LOCKED`, charged to `RLIMIT_MEMLOCK`) and never dumped.
fn back_secretmem(data: usize, len: usize) -> Result<Backing, Error> {
    let fd = linux::memfd_secret()?;
    linux::ftruncate(&fd, len)?;
    // SAFETY: MAP_FIXED replaces only the middle of our own reservation,
    // to which no reference exists yet.
    let mapped = unsafe { linux::map_shared_fixed(data, len, &fd) };
    match mapped {
        Ok(_) => {}
        // secretmem's mmap checks RLIMIT_MEMLOCK itself and says EAGAIN;
        // report it as mlock(2) would (EPERM for a zero limit).
        Err(Error::WouldBlock) => return Err(memlock_refused()),
        Err(e) => return Err(e),
    }
    // The mapping holds the file; `fd` closes on return. Fault the pages in
    // now, and so that a refusal is an error, not a signal. Some kernels
    // (Debian's 6.12.117 seen) leave the mapping without VM_LOCKED and
    // charge RLIMIT_MEMLOCK when a page is first touched: a store from
    // this process then dies of SIGBUS. MADV_POPULATE_WRITE and
    // MAP_POPULATE go through get_user_pages, which refuses secretmem
    // (EINVAL). A store by the kernel on our behalf (clock_gettime writing
    // its result into each page) takes the same fault and returns EFAULT.
    let page = page_size();
    let mut at = data;
    while at < data + len {
        // SAFETY: `at` is the start of a page of the read-write mapping
        // just made, which nothing refers to yet; the kernel writes a
        // 16-byte timespec there, or fails with EFAULT.
        match unsafe { linux::kernel_store(at) } {
            Ok(_) => {}
            Err(Error::Os(e)) if e == linux_raw_sys::errno::EFAULT as i32 => {
                return Err(memlock_refused())
            }
            Err(e) => return Err(e),
        }
        at += page;
    }
    // SAFETY: the range is mapped read-write and nothing refers to it.
    zeroize(unsafe { core::slice::from_raw_parts_mut(data as *mut u8, len) });
    Ok(Backing::SecretMem)
}

/// Makes `[data, data + len)` of a reservation read-write, locks it
/// (`mlock(2)`) and leaves it out of core dumps.
fn back_anonymous(data: usize, len: usize) -> Result<Backing, Error> {
    // SAFETY: the range is the middle of a reservation of the caller's, to
    // which nothing refers yet.
    unsafe { protect(data, len, Protection::ReadWrite) }?;
    // SAFETY: as above; locking and advice change no byte of it.
    unsafe {
        mlock(data, len, LockMode::Now)?;
        madvise(data, len, Advice::DontDump)?;
    }
    Ok(Backing::Anonymous)
}

/// The error `mlock(2)` gives when `RLIMIT_MEMLOCK` is too small: `EPERM`
/// when the limit is 0, `ENOMEM` otherwise.
fn memlock_refused() -> Error {
    match prlimit64(Resource::MemLock, None) {
        Ok((0, _)) => Error::PermissionDenied,
        _ => Error::ResourceLimit,
    }
}

/// Fills `buf` from `getrandom(2)` without blocking; where it cannot (no
/// entropy yet in early boot, a kernel before 3.17), from a mix of `salt`,
/// the pid and the address of `buf`. Never all zeros.
fn fill_random(buf: &mut [u8], salt: usize) {
    if linux::getrandom_nonblock(buf) != Ok(buf.len()) {
        let mut x = (salt as u64) ^ (u64::from(getpid()) << 32) ^ (buf.as_ptr() as u64);
        for byte in buf.iter_mut() {
            // splitmix64's step: a cheap, well-spread sequence.
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            *byte = (z ^ (z >> 31)) as u8;
        }
    }
    if buf.iter().all(|&b| b == 0) {
        buf[0] = 0xa5;
    }
}

/// Writes `message` to standard error (`write(2)` to fd 2) and ends the
/// process with `SIGABRT` raised on the calling thread, as `abort(3)`
/// would, without libc (see `linux::abort_self`).
#[cold]
fn fatal(message: &[u8]) -> ! {
    let _ = linux::write(BorrowedFd::STDERR, message);
    linux::abort_self();
    linux::exit_group(134)
}
