//! `Region`: guard page, locked data pages, guard page, on
//! `memfd_secret(2)` or anonymous memory; and `SecretPages`, the region of
//! one secret (`LockedBuf`, `SealedBuf`), laid out like libsodium's
//! `sodium_malloc`.
#![allow(unsafe_code)]

use super::linux::{
    self, advise_fork, getpid, guard_install, madvise, mlock, page_size, prlimit64, protect,
    Reservation,
};
use super::mem::zeroize;
use super::{Advice, Backing, BorrowedFd, ForkAdvice, Guards, LockMode, Protection, Resource};
use crate::Error;

/// Bytes of canary in front of a secret.
const CANARY_LEN: usize = 16;

/// Guard page, data pages, guard page: the memory behind one secret
/// ([`SecretPages`]) or one pool ([`PoolPages`](super::PoolPages)), on
/// `memfd_secret(2)` or locked anonymous pages, left out of core dumps and
/// kept from forked children. Its drop zeroes the data pages and unmaps
/// the whole, unless the pages are a forked child's copy or sealed for the
/// life of the process ([`Region::mseal`]).
///
/// The data pages are either a `memfd_secret(2)` mapping (`MAP_SHARED`,
/// mapped with `MAP_FIXED` over the middle of the reservation, which is
/// ours) or the reservation's own anonymous pages made read-write. The
/// guards are guard regions or `PROT_NONE` pages ([`Guards`]).
pub(crate) struct Region {
    reservation: Reservation,
    page: usize,
    backing: Backing,
    guards: Guards,
    /// Set by [`disown`](Self::disown) in a forked child: [`Drop`] leaves
    /// the memory alone.
    disowned: bool,
    fork_protected: bool,
    /// The data pages are `MADV_DONTFORK`: a child has nothing mapped
    /// there (and may map something else there).
    absent_in_child: bool,
    /// `mseal(2)`ed: never unmapped.
    sealed_for_life: bool,
}

// SAFETY: a Region owns its mapping like a Box<[u8]> owns its bytes;
// nothing in it is tied to the creating thread.
unsafe impl Send for Region {}
// SAFETY: no `&self` method changes the mapping.
unsafe impl Sync for Region {}

impl Region {
    /// Maps, backs and locks `data_len` bytes (a multiple of the page
    /// size) between two guard pages. `want` is the backing the caller
    /// requires, or `None` for `memfd_secret` when the kernel offers it and
    /// anonymous memory otherwise. `one_mapping`: where the guards are
    /// guard regions, lock them with the data (one VMA, two more pages
    /// charged to `RLIMIT_MEMLOCK`) rather than lock the data alone (the
    /// lock splits the mapping in three).
    pub(super) fn new(
        data_len: usize,
        want: Option<Backing>,
        one_mapping: bool,
    ) -> Result<Region, Error> {
        let page = page_size();
        let total = data_len
            .checked_add(2 * page)
            .ok_or(Error::InvalidArgument)?;
        let reservation = Reservation::new(total)?;
        let (addr, data) = (reservation.addr, reservation.addr + page);
        let advise = |addr, len, advice| {
            // SAFETY: the reservation is ours and nothing refers to it yet;
            // a child is kept from it, and the handle it inherits is
            // disowned there (`Region::disown`).
            unsafe { advise_fork(addr, len, advice) }
        };
        // QEMU user mode before 8.0 answers every madvise with 0 and
        // applies none: an advice no kernel defines tells it apart (see
        // `sys::process`). Guard markers are trusted only where it fails.
        let honoured = !advise(data, page, ForkAdvice::Undefined);
        let anonymous = || back_anonymous(addr, total, page, honoured, one_mapping);
        let (backing, guards) = match want {
            Some(Backing::Anonymous) => anonymous()?,
            Some(Backing::SecretMem) => back_secretmem(data, data_len)?,
            None => match back_secretmem(data, data_len) {
                Err(Error::Unsupported) => anonymous()?,
                other => other?,
            },
        };

        // Fork: a shared secretmem mapping would be shared with a child, so
        // it must not be inherited at all; private anonymous pages are
        // inherited zero-filled, so the child's copy of the handle still
        // points at memory of its own. Before 4.14 (no WIPEONFORK) the
        // anonymous pages are left out as well.
        // Guard regions locked with the data are advised with it, so that
        // the whole stays one mapping.
        let (at, len) = match (guards, one_mapping) {
            (Guards::Regions, true) => (addr, total),
            _ => (data, data_len),
        };
        let (advised, absent_in_child) = match backing {
            Backing::SecretMem => (advise(addr, total, ForkAdvice::DontFork), true),
            Backing::Anonymous => match advise(at, len, ForkAdvice::WipeOnFork) {
                true => (true, false),
                false => (advise(at, len, ForkAdvice::DontFork), true),
            },
        };
        let fork_protected = advised && honoured;
        Ok(Region {
            reservation,
            page,
            backing,
            guards,
            disowned: false,
            fork_protected,
            absent_in_child: absent_in_child && fork_protected,
            sealed_for_life: false,
        })
    }

    pub(super) fn data_addr(&self) -> usize {
        self.reservation.addr + self.page
    }

    pub(super) fn data_len(&self) -> usize {
        self.reservation.len - 2 * self.page
    }

    /// Which memory backs the data pages.
    pub(crate) fn backing(&self) -> Backing {
        self.backing
    }

    /// How the guard pages are made.
    pub(crate) fn guards(&self) -> Guards {
        self.guards
    }

    /// The locked data pages, as a start and a length.
    pub(crate) fn data_pages(&self) -> (*const u8, usize) {
        (self.data_addr() as *const u8, self.data_len())
    }

    /// Whether the kernel honours the fork advice (see [`Region::new`]).
    pub(crate) fn fork_protected(&self) -> bool {
        self.fork_protected
    }

    /// Marks a handle inherited through `fork(2)`: the pages are not this
    /// process's to zero, check, unlock or (where the child has nothing
    /// mapped there) unmap.
    pub(crate) fn disown(&mut self) {
        self.disowned = true;
    }

    /// Whether [`disown`](Self::disown) was called.
    pub(super) fn disowned(&self) -> bool {
        self.disowned
    }

    /// Whether [`mseal`](Self::mseal) succeeded.
    pub(crate) fn msealed(&self) -> bool {
        self.sealed_for_life
    }

    /// Seals the whole mapping, guards included, with `mseal(2)`: from now
    /// on the kernel refuses to unmap, move or reprotect it, and the drop
    /// zeroes the data pages and leaves the mapping (and its lock) for the
    /// rest of the process.
    ///
    /// # Errors
    /// [`Error::Unsupported`] where the kernel has no `mseal` (`ENOSYS`:
    /// before 6.10, and on 32-bit kernels); the kernel's error otherwise.
    pub(crate) fn mseal(&mut self) -> Result<(), Error> {
        // SAFETY: the mapping is ours, and once sealed it is never
        // unmapped or reprotected: `Drop` leaves it.
        unsafe { linux::mseal(self.reservation.addr, self.reservation.len) }?;
        self.sealed_for_life = true;
        Ok(())
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if self.disowned {
            // A forked child's copy of the handle. Its secretmem pages are
            // absent (the range may hold a mapping of the child's since),
            // so leave the range alone; wiped or inherited anonymous pages
            // are the child's own, unmapped with the reservation.
            if self.absent_in_child {
                self.reservation.len = 0;
            }
            return;
        }
        // SAFETY: the data pages are mapped read-write (an owner that
        // sealed them with `PROT_NONE` opened them before its drop ended)
        // and owned by `self`; no reference into them survives.
        zeroize(unsafe {
            core::slice::from_raw_parts_mut(self.data_addr() as *mut u8, self.data_len())
        });
        if self.sealed_for_life {
            // The kernel would refuse the munmap; the pages stay, zeroed.
            self.reservation.len = 0;
        }
        // Otherwise the reservation unmaps itself, which unlocks it.
    }
}

/// The pages of one secret (`LockedBuf`, `SealedBuf`), laid out like
/// libsodium's `sodium_malloc`:
///
/// ```text
/// | guard page | data pages: ... canary (16) | secret (N) | guard page |
/// ```
///
/// The secret ends exactly where the trailing guard starts, so one byte
/// past it faults for every `N`. The canary, 16 random bytes from
/// `getrandom(2)`, sits right in front of the secret; its copy lives in
/// this struct, and [`Drop`] compares the two.
///
/// When `sealed`, the data pages are `PROT_NONE` except while an
/// [`Opened`] borrows them, and no slice of them is ever handed out
/// otherwise: [`SecretPages::bytes`] refuses.
pub(crate) struct SecretPages {
    region: Region,
    len: usize,
    canary: [u8; CANARY_LEN],
    sealed: bool,
}

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
        let data_len = len
            .checked_add(CANARY_LEN)
            .and_then(|n| n.checked_next_multiple_of(page_size()))
            .ok_or(Error::InvalidArgument)?;
        let region = Region::new(data_len, want, false)?;
        let mut canary = [0u8; CANARY_LEN];
        fill_random(&mut canary, region.data_addr());
        let mut pages = SecretPages {
            region,
            len,
            canary,
            sealed: false,
        };
        let at = pages.canary_addr();
        // SAFETY: the canary's 16 bytes lie inside the data pages, which are
        // mapped read-write and owned by `pages`; nothing refers to them.
        unsafe { core::ptr::copy_nonoverlapping(canary.as_ptr(), at as *mut u8, CANARY_LEN) };
        if sealed {
            let (data, data_len) = (pages.region.data_addr(), pages.region.data_len());
            // SAFETY: the data pages are `pages`' own, and no slice of them
            // exists yet. On failure they stay read-write, and are zeroed
            // and released as usual.
            unsafe { protect(data, data_len, Protection::None) }?;
            pages.sealed = true;
        }
        Ok(pages)
    }

    fn secret_addr(&self) -> usize {
        self.region.data_addr() + self.region.data_len() - self.len
    }

    fn canary_addr(&self) -> usize {
        self.secret_addr() - CANARY_LEN
    }

    /// The mapping: backing, guards, fork advice, sealing.
    pub(crate) fn region(&self) -> &Region {
        &self.region
    }

    /// The mapping, to disown or seal.
    pub(crate) fn region_mut(&mut self) -> &mut Region {
        &mut self.region
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
            if unsafe { protect(self.region.data_addr(), self.region.data_len(), prot) }.is_err() {
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
            let region = &self.pages.region;
            // Fails only if the kernel cannot allocate for the change, in
            // which case the pages stay open (less protected, not unsound).
            // SAFETY: the data pages are ours, and the only slices of them
            // borrowed `self`, which is going.
            let _ = unsafe { protect(region.data_addr(), region.data_len(), Protection::None) };
        }
    }
}

impl Drop for SecretPages {
    /// Opens sealed pages and checks the canary; the region's own drop
    /// then zeroes and releases the pages.
    fn drop(&mut self) {
        if self.region.disowned() {
            return;
        }
        let (data, data_len) = (self.region.data_addr(), self.region.data_len());
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
        if !intact {
            // SAFETY: the data pages are mapped read-write and owned by
            // `self`; no reference into them survives.
            zeroize(unsafe { core::slice::from_raw_parts_mut(data as *mut u8, data_len) });
            fatal(
                b"mlock: the canary in front of a LockedBuf or SealedBuf was overwritten \
                  (a write before the start of the secret); aborting\n",
            );
        }
        // The region zeroes and unmaps itself.
    }
}

/// Backs `[data, data + len)` of a reservation with `memfd_secret(2)`
/// (Linux 5.14+): pages removed from the kernel's direct map, locked
/// (`VM_LOCKED`, charged to `RLIMIT_MEMLOCK`) and never dumped.
fn back_secretmem(data: usize, len: usize) -> Result<(Backing, Guards), Error> {
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
    Ok((Backing::SecretMem, Guards::Pages))
}

/// Makes a reservation `[addr, addr + total)` a guard page, read-write
/// data pages and a guard page: guard regions in one read-write mapping
/// where `try_guards` and the kernel takes the markers, otherwise
/// `PROT_NONE` guard pages. The data is locked with `mlock(2)`, or, with
/// guard regions and `one_mapping`, the whole range with
/// `mlock2(MLOCK_ONFAULT)` and the data faulted in. Either way the whole is
/// left out of core dumps.
fn back_anonymous(
    addr: usize,
    total: usize,
    page: usize,
    try_guards: bool,
    one_mapping: bool,
) -> Result<(Backing, Guards), Error> {
    let (data, data_len, last) = (addr + page, total - 2 * page, addr + total - page);
    if try_guards {
        // SAFETY: the reservation is the caller's, and nothing refers to it
        // yet; no byte of it matters so far.
        unsafe { protect(addr, total, Protection::ReadWrite) }?;
        // SAFETY: as above; the guard pages hold nothing.
        let installed = unsafe { guard_install(addr, page) && guard_install(last, page) };
        if installed {
            // SAFETY: as above; locking, faulting in and the dump advice
            // change no byte of the range.
            unsafe {
                if one_mapping {
                    mlock(addr, total, LockMode::OnFault)?;
                    madvise(data, data_len, Advice::PopulateWrite)?;
                } else {
                    mlock(data, data_len, LockMode::Now)?;
                }
                madvise(addr, total, Advice::DontDump)?;
            }
            return Ok((Backing::Anonymous, Guards::Regions));
        }
        // SAFETY: as above. Refused (a kernel before 6.13, or a mapping
        // locked at birth under MCL_FUTURE): plain PROT_NONE pages (a
        // marker the first page may have taken faults all the same).
        unsafe {
            protect(addr, page, Protection::None)?;
            protect(last, page, Protection::None)?;
        }
    } else {
        // SAFETY: the data pages are the middle of the caller's
        // reservation, to which nothing refers yet.
        unsafe { protect(data, data_len, Protection::ReadWrite) }?;
    }
    // SAFETY: as above; locking and advice change no byte of it.
    unsafe {
        mlock(data, data_len, LockMode::Now)?;
        madvise(data, data_len, Advice::DontDump)?;
    }
    Ok((Backing::Anonymous, Guards::Pages))
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
pub(super) fn fill_random(buf: &mut [u8], salt: usize) {
    if linux::getrandom_nonblock(buf) != Ok(buf.len()) {
        let mut x = (salt as u64) ^ (u64::from(getpid()) << 32) ^ (buf.as_ptr() as u64);
        for byte in buf.iter_mut() {
            // splitmix64's step: a cheap, well-spread sequence.
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            *byte = mix(x) as u8;
        }
    }
    if buf.iter().all(|&b| b == 0) {
        buf[0] = 0xa5;
    }
}

/// splitmix64's finaliser: spreads every bit of `x` over the result.
pub(super) fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Writes `message` to standard error (`write(2)` to fd 2) and ends the
/// process with `SIGABRT` raised on the calling thread, as `abort(3)`
/// would, without libc (see `linux::abort_self`).
#[cold]
pub(super) fn fatal(message: &[u8]) -> ! {
    let _ = linux::write(BorrowedFd::STDERR, message);
    linux::abort_self();
    linux::exit_group(134)
}
