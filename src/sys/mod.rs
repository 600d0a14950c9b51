//! The syscall layer: the raw Linux backend where `build.rs` enables it, a
//! stub that answers [`Error::Unsupported`](crate::Error::Unsupported)
//! everywhere else, and the few memory operations both share. The rest of
//! the crate calls only what is here.
//!
//! As in rustix, a function that takes a raw address is an `unsafe fn`
//! over typed flags (`mlock` with `LockMode`, `munlock`, `madvise` with
//! `Advice`, `protect` with `Protection`, `advise_fork` with `ForkAdvice`):
//! its caller vouches for the range.
//!
//! # Where the `unsafe` code is
//! Each file below allows `unsafe_code` (the crate denies it elsewhere),
//! and every block has a `SAFETY` note:
//! - `sys/linux.rs`: the system calls;
//! - `sys/arch/riscv64.rs`, `powerpc64.rs`, `s390x.rs`: those arches'
//!   system-call instructions (`ecall`, `sc`, `svc`);
//! - `sys/process.rs`: references into the per-process page;
//! - `sys/mem.rs`: volatile zeroing and page touching;
//! - `sys/secret_pages.rs`: the pages behind one secret;
//! - `sys/pool_pages.rs`: the slots of a pool of secrets;
//! - `sys/unsupported.rs`: the same `unsafe fn` signatures, no block;
//! - `held.rs`: the `mlock`/`munlock` of the ranges the record holds, and
//!   `unsafe impl Zeroed` for the record (a zeroed record is a valid,
//!   empty one);
//! - `secret/dump.rs` and `daemon/prefault.rs`: one `madvise` each, over
//!   the pages of a slice the caller lends;
//! - `lock.rs` and `boot.rs`: `unsafe fn` contracts only (`lock_raw`,
//!   `lock_on_fault_raw`, `unlock_raw`, `boot::Output::borrow_raw`).
//!
//! # Files
//! - `linux`: one typed wrapper per system call (x86_64, aarch64, riscv64,
//!   i686, arm, s390x, powerpc64le).
//! - `arch/`: the system-call asm of riscv64 (the vector registers
//!   declared clobbered), powerpc64 (`ctr` and `xer` clobbered, the
//!   `cr0.SO` error flag) and s390x; x86_64, aarch64, i686 and arm use the
//!   `syscalls` crate's asm.
//! - `unsupported`: the same functions, answering `Unsupported`.
//! - `secret_pages`: the guarded, canaried pages behind one secret, and
//!   [`Backing`], which the public `secret` module re-exports (nothing in
//!   `sys` imports from the modules above it).
//! - `pool_pages`: a pool's pages, its bitmap of slots and their canaries;
//!   `pool_layout`, the sizes and offsets of those pages, for both backends.
//! - `process`: a value of the calling process's own, which a forked child
//!   finds fresh (the crate's record of held locks, and words such as a
//!   cached process ID).
//! - `mem`: volatile zeroing and page touching, no system call.

#[cfg(mlock_raw)]
mod linux;
#[cfg(mlock_raw)]
pub(crate) use linux::*;

#[cfg(not(mlock_raw))]
mod unsupported;
#[cfg(not(mlock_raw))]
pub(crate) use unsupported::*;

#[cfg(mlock_raw)]
mod secret_pages;
#[cfg(mlock_raw)]
pub(crate) use secret_pages::{Opened, Region, SecretPages};

#[cfg(mlock_raw)]
mod pool_pages;
#[cfg(mlock_raw)]
pub(crate) use pool_pages::{PoolPages, Slot};

mod pool_layout;
pub(crate) use pool_layout::{size_for as pool_size_for, MAX_LEN as POOL_MAX_LEN};

#[cfg(mlock_raw)]
mod process;
#[cfg(mlock_raw)]
pub(crate) use process::{pid, ForkLocal, PerProcess, Zeroed};

mod mem;
pub(crate) use mem::{touch, zeroize};

/// The memory behind a [`LockedBuf`](crate::secret::LockedBuf) or a [`SealedBuf`](crate::secret::SealedBuf).
///
/// Both are locked in RAM (so never written to swap), left out of core
/// dumps, surrounded by guard pages, and zeroed before they are released.
///
/// The enum is `#[non_exhaustive]`: a later version may add a backing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backing {
    /// A `memfd_secret(2)` mapping (Linux 5.14+; off by default before
    /// 6.5 unless the kernel was booted with `secretmem.enable=1`). Its
    /// pages are removed from the kernel's direct map: no other process,
    /// not even root through `/proc/<pid>/mem` or `process_vm_readv(2)`,
    /// can read them, and the kernel itself reaches them only through
    /// this process's page tables. `/proc/<pid>/maps` shows the mapping as
    /// `/secretmem (deleted)`.
    ///
    /// Costs: the pages are never swapped and are charged to
    /// `RLIMIT_MEMLOCK` like `mlock(2)`. Most kernels (6.1, 6.18) mark the
    /// mapping locked (`VM_LOCKED`, shown in `VmLck`) and check the limit
    /// at `mmap`; Debian's 6.12.117 does neither and charges each page when
    /// it is first touched, which [`LockedBuf::new`](crate::secret::LockedBuf::new) does for every page,
    /// so the limit is an error there too, not a `SIGBUS` later. While
    /// any secretmem mapping exists on the machine it
    /// cannot hibernate (the kernel refuses suspend-to-disk rather than
    /// write the secrets to the hibernation image). Taking pages out of the
    /// direct map splits its huge pages, which can cost the kernel some TLB
    /// efficiency.
    SecretMem,
    /// An anonymous private mapping (`mmap(2)`), locked with `mlock(2)` and
    /// marked `MADV_DONTDUMP`: out of swap and core dumps, but readable by
    /// root, by `ptrace(2)` and through `/proc/<pid>/mem`.
    Anonymous,
}

/// How the guard pages around a [`LockedBuf`](crate::secret::LockedBuf),
/// [`SealedBuf`](crate::secret::SealedBuf) or [`Pool`](crate::secret::Pool)
/// are made. Either way, any access to them faults (`SIGSEGV`).
///
/// The enum is `#[non_exhaustive]`: a later version may add a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Guards {
    /// Guard regions, `madvise(MADV_GUARD_INSTALL)` (Linux 6.13+): markers
    /// in the page tables of the data's own read-write anonymous mapping,
    /// installed before the data is locked (the kernel refuses them on
    /// locked memory). Used for [`Backing::Anonymous`] where the kernel
    /// offers them.
    ///
    /// A [`Pool`](crate::secret::Pool) then locks its whole mapping with
    /// `mlock2(MLOCK_ONFAULT)`, guards included, so that it stays one
    /// mapping (one line of `/proc/<pid>/maps`, one VMA against
    /// `vm.max_map_count`); the guard pages hold no memory but count
    /// towards `RLIMIT_MEMLOCK`, two pages per pool. A `LockedBuf` or
    /// `SealedBuf` locks its data pages only, so that only they count
    /// towards the limit, and the lock splits the mapping in three (one
    /// more than with `PROT_NONE` guards, whose mappings merge with their
    /// neighbours').
    Regions,
    /// Pages of their own mapped `PROT_NONE` (`mprotect(2)`), a mapping
    /// apart from the data on each side (neighbouring `PROT_NONE`
    /// mappings merge). Used for [`Backing::SecretMem`] (the kernel takes
    /// no guard markers in a `memfd_secret` mapping), on kernels before
    /// 6.13, and where new mappings are locked at once (after
    /// `mlockall(MCL_FUTURE)`, which the kernel's guard markers refuse).
    Pages,
}

/// How `mlock` locks a range: `mlock(2)`, or `mlock2(2)` with
/// `MLOCK_ONFAULT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockMode {
    /// `mlock(2)`: fault every page in and lock it now.
    Now,
    /// `mlock2(MLOCK_ONFAULT)` (Linux 4.4+): lock each page when it is
    /// first touched.
    OnFault,
}

/// The `madvise(2)` advice values the crate uses. None of them changes the
/// contents of memory, which is what makes `madvise` safe to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Advice {
    /// `MADV_DONTDUMP`: leave the range out of core dumps.
    DontDump,
    /// `MADV_DODUMP`: undo `MADV_DONTDUMP`.
    DoDump,
    /// `MADV_POPULATE_WRITE` (Linux 5.14+): fault the range in, writable,
    /// without changing its contents.
    PopulateWrite,
}

/// The protections a secret's data pages take (`mprotect(2)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg(mlock_raw)]
pub(crate) enum Protection {
    /// `PROT_NONE`: every access faults.
    None,
    /// `PROT_READ`.
    Read,
    /// `PROT_READ | PROT_WRITE`.
    ReadWrite,
}

/// What a child of `fork(2)` gets of a range (`madvise(2)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg(mlock_raw)]
pub(crate) enum ForkAdvice {
    /// `MADV_DONTFORK`: nothing mapped there in the child.
    DontFork,
    /// `MADV_WIPEONFORK` (Linux 4.14+): zero-filled pages in the child.
    WipeOnFork,
    /// An advice no kernel defines, which a real kernel refuses with
    /// `EINVAL`: accepted, it shows an `madvise` that ignores its advice
    /// (QEMU user mode before 8.0).
    Undefined,
}

/// The `prctl(2)` options `prctl_int` accepts: integer arguments only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrctlInt {
    /// `PR_SET_DUMPABLE`.
    SetDumpable,
    /// `PR_GET_DUMPABLE`.
    GetDumpable,
    /// `PR_SET_IO_FLUSHER` (Linux 5.6+).
    SetIoFlusher,
    /// `PR_GET_IO_FLUSHER` (Linux 5.6+).
    GetIoFlusher,
}

/// The resource limits the crate reads and sets (`getrlimit(2)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resource {
    /// `RLIMIT_MEMLOCK`.
    MemLock,
    /// `RLIMIT_CORE`.
    Core,
    /// `RLIMIT_RTPRIO`: the highest real-time priority a thread without
    /// `CAP_SYS_NICE` may set.
    RtPrio,
}

/// A descriptor borrowed for `write`: an owned [`Fd`] through
/// [`Fd::borrow`], standard output or error, or a number the crate's caller
/// vouched for ([`boot::Output::borrow_raw`](crate::boot::Output::borrow_raw),
/// an `unsafe fn`). The lifetime ties a borrowed [`Fd`] to its owner, so
/// the descriptor cannot be written after it is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BorrowedFd<'a> {
    raw: i32,
    owner: core::marker::PhantomData<&'a Fd>,
}

impl BorrowedFd<'_> {
    /// Standard output, descriptor 1, open in every process.
    pub(crate) const STDOUT: BorrowedFd<'static> = BorrowedFd::new(1);
    /// Standard error, descriptor 2, open in every process.
    pub(crate) const STDERR: BorrowedFd<'static> = BorrowedFd::new(2);

    /// Borrows `raw`. Only for [`Fd::borrow`], the constants above, and
    /// `boot::Output::borrow_raw`, whose caller vouches for the number.
    pub(crate) const fn new<'a>(raw: i32) -> BorrowedFd<'a> {
        BorrowedFd {
            raw,
            owner: core::marker::PhantomData,
        }
    }

    /// The number, for the system call.
    pub(crate) const fn raw(self) -> i32 {
        self.raw
    }
}

/// How `open` opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenMode {
    /// `O_RDONLY`.
    Read,
    /// `O_WRONLY`.
    Write,
}
