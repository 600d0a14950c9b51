//! The syscall layer, and the crate's `unsafe` code: the raw Linux
//! backend where `build.rs` enables it, a stub that answers
//! [`Error::Unsupported`](crate::Error::Unsupported) everywhere else, and
//! the few memory operations both share. The rest of the crate calls only
//! what is here. Outside it there is no `unsafe` block: only `unsafe fn`
//! contracts (`lock_raw`, `unlock_raw`, `boot::Output::borrow_raw`) and
//! the record of held locks' `unsafe impl Zeroed` (a zeroed record is a
//! valid, empty one).
//!
//! - `linux`: one typed wrapper per system call (x86_64, aarch64, riscv64).
//! - `unsupported`: the same functions, answering `Unsupported`.
//! - `secret_pages`: the guarded, canaried pages behind one secret.
//! - `process`: a value of the calling process's own, which a forked child
//!   finds fresh (the crate's record of held locks, and words such as a
//!   cached process ID).
//! - `mem`: volatile zeroing and page touching, no system call.
//! - `scan`: the SIMD byte search of the status parser, with its portable
//!   fallback.

#[cfg(mlock_raw)]
mod linux;
#[cfg(mlock_raw)]
pub(crate) use linux::*;

#[cfg(not(mlock_raw))]
mod unsupported;
#[cfg(not(mlock_raw))]
pub(crate) use unsupported::*;

mod scan;
pub(crate) use scan::{search, Search};

#[cfg(mlock_raw)]
mod secret_pages;
#[cfg(mlock_raw)]
pub(crate) use secret_pages::{Opened, SecretPages};

#[cfg(mlock_raw)]
mod process;
#[cfg(mlock_raw)]
pub(crate) use process::{ForkLocal, PerProcess, Zeroed};

mod mem;
pub(crate) use mem::{touch, zeroize};

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
