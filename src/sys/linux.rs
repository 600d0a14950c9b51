//! The raw Linux backend: typed wrappers around the few system calls the
//! crate issues.
//!
//! # Safety
//!
//! Each wrapper turns one system call into a function whose arguments
//! make misuse impossible from safe code: pointers come from references or
//! slices (so they are valid for the length passed), out-parameters are
//! `&mut` to properly sized `#[repr(C)]` kernel structs, and a call that
//! takes a raw address (`mlock`, `munlock`, `madvise`, `mprotect`, a
//! fixed `mmap`) is an `unsafe fn` with its precondition spelled out. The
//! other files that hold `unsafe` code are listed in the `sys` module docs.
//!
//! The instruction itself comes from the `syscalls` crate's inline asm on
//! x86_64, aarch64, i686 and arm, and from the crate's own in `arch/` on
//! riscv64 (which also declares the vector registers clobbered), powerpc64
//! (`ctr` and `xer` clobbered, and the `cr0.SO` error flag) and s390x
//! (where the `syscalls` crate's asm needs a nightly feature). The numbers
//! are `linux-raw-sys`'s `__NR_*` for the target arch. None of that asm
//! claims `nomem` or `readonly`, so the compiler treats memory as
//! clobbered across every call. That matters for `mlockall`: with
//! `MCL_FUTURE | MCL_ONFAULT`, a store the compiler moved from after the
//! call to before it would land in a page that is not yet locked.
//!
//! Arguments go through the typed functions below rather than straight to
//! the asm, which takes every argument as a `usize`: here every
//! pointer is converted with `as usize` from a pointer, every length is a
//! `usize` already, and every flag is a `u32` from `linux-raw-sys`, so
//! nothing is truncated or sign-extended by accident. On the 32-bit arches
//! (i686, arm) a 64-bit argument takes two registers (see [`read_to`]).
#![allow(unsafe_code)]

use core::ffi::CStr;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicUsize, Ordering};

use linux_raw_sys::general as c;
#[cfg(not(any(
    target_arch = "riscv64",
    target_arch = "powerpc64",
    target_arch = "s390x"
)))]
use syscalls::raw;

/// riscv64: the `ecall` asm, with the vector registers declared clobbered
/// (see the file).
#[cfg(target_arch = "riscv64")]
#[path = "arch/riscv64.rs"]
mod raw;

/// powerpc64: the `sc` asm, with `ctr` and `xer` declared clobbered and the
/// `cr0.SO` error convention turned into a negative return (see the file).
#[cfg(target_arch = "powerpc64")]
#[path = "arch/powerpc64.rs"]
mod raw;

/// s390x: the `svc 0` asm (the `syscalls` crate's needs a nightly feature
/// there; see the file).
#[cfg(target_arch = "s390x")]
#[path = "arch/s390x.rs"]
mod raw;

/// The call that maps memory: `mmap2` on the 32-bit arches (its offset is
/// in 4 KiB units; the crate always passes 0), `mmap` on the 64-bit ones
/// (s390x's takes its arguments in memory: see [`mmap6`]).
#[cfg(target_pointer_width = "32")]
const MMAP: u32 = c::__NR_mmap2;
#[cfg(target_pointer_width = "64")]
const MMAP: u32 = c::__NR_mmap;

/// `mmap(2)` with its six arguments, through the arch's convention: in
/// registers everywhere but s390x, where the kernel reads them from a block
/// of six words that `r2` points to.
///
/// # Safety
/// As for `mmap(2)`: with `MAP_FIXED` the range must be the caller's and
/// unreferenced; a mapping at the kernel's choice of address is always
/// sound.
#[inline(always)]
unsafe fn mmap6(addr: usize, len: usize, prot: u32, flags: u32, fd: usize, offset: usize) -> usize {
    #[cfg(not(target_arch = "s390x"))]
    // SAFETY: the caller's promise, passed on.
    unsafe {
        raw::syscall6(
            MMAP as usize,
            addr,
            len,
            prot as usize,
            flags as usize,
            fd,
            offset,
        )
    }
    #[cfg(target_arch = "s390x")]
    {
        let block = [addr, len, prot as usize, flags as usize, fd, offset];
        // SAFETY: the caller's promise; the kernel only reads the block,
        // which outlives the call.
        unsafe { raw::syscall1(MMAP as usize, block.as_ptr() as usize) }
    }
}

use super::{Advice, BorrowedFd, ForkAdvice, LockMode, OpenMode, PrctlInt, Protection, Resource};
use crate::Error;
use crate::Flags;

/// Turns a raw return value into a `Result`: the kernel returns
/// `-4095..=-1` for errors, anything else is success.
#[inline(always)]
fn check(ret: usize) -> Result<usize, Error> {
    if ret > (-4096isize) as usize {
        // The negated value is in 1..=4095, which fits an i32.
        Err(Error::from_errno((ret as isize).wrapping_neg() as i32))
    } else {
        Ok(ret)
    }
}

/// `mlockall(2)`. The bits of [`Flags`] are the `MCL_*` values.
#[inline]
pub(crate) fn mlockall(flags: Flags) -> Result<(), Error> {
    // SAFETY: mlockall reads and writes no user memory; it only changes how
    // the kernel treats this process's mappings. Invalid flags are rejected
    // by the kernel with EINVAL.
    check(unsafe { raw::syscall1(c::__NR_mlockall as usize, flags.bits() as usize) }).map(drop)
}

/// `munlockall(2)`.
#[inline]
pub(crate) fn munlockall() -> Result<(), Error> {
    // SAFETY: munlockall takes no arguments and touches no user memory.
    check(unsafe { raw::syscall0(c::__NR_munlockall as usize) }).map(drop)
}

/// `mlock(2)` on `[addr, addr + len)` ([`LockMode::Now`]), or
/// `mlock2(2)` with `MLOCK_ONFAULT`, its only flag ([`LockMode::OnFault`]:
/// lock each page when it is first touched).
///
/// # Safety
/// The kernel validates the range and changes only whether its pages are
/// locked, never their contents or mappings. The caller promises that the
/// page-rounded range is one it may lock: locking is state that other
/// owners of those pages rely on.
#[inline]
pub(crate) unsafe fn mlock(addr: usize, len: usize, mode: LockMode) -> Result<(), Error> {
    // SAFETY: neither call reads nor writes the range (the function's
    // contract); an unmapped range fails with ENOMEM.
    let ret = unsafe {
        match mode {
            LockMode::Now => raw::syscall2(c::__NR_mlock as usize, addr, len),
            LockMode::OnFault => {
                let flags = c::MLOCK_ONFAULT as usize;
                raw::syscall3(c::__NR_mlock2 as usize, addr, len, flags)
            }
        }
    };
    check(ret).map(drop)
}

/// `munlock(2)` on `[addr, addr + len)`. Its only `ENOMEM` is part of the
/// range not mapped: [`Error::NotMapped`].
///
/// # Safety
/// As [`mlock`]: the caller promises that no one it answers to relies on
/// the range staying locked.
#[inline]
pub(crate) unsafe fn munlock(addr: usize, len: usize) -> Result<(), Error> {
    // SAFETY: munlock only clears the locked state of the pages; their
    // contents and mappings are unchanged.
    check(unsafe { raw::syscall2(c::__NR_munlock as usize, addr, len) })
        .map(drop)
        .map_err(|e| e.read_as(Error::ResourceLimit, Error::NotMapped))
}

/// `madvise(2)` with one of the non-destructive [`Advice`] values. Its
/// `ENOMEM` is no limit: for `MADV_POPULATE_WRITE` the kernel ran out of
/// memory ([`Error::OutOfMemory`]), for the others part of the range is not
/// mapped ([`Error::NotMapped`]).
///
/// # Safety
/// None of the [`Advice`] values changes the bytes a program reads; the
/// caller promises that the page-rounded range is its own (the advice
/// changes what a core dump holds, or faults pages in).
#[inline]
pub(crate) unsafe fn madvise(addr: usize, len: usize, advice: Advice) -> Result<(), Error> {
    let (advice, enomem) = match advice {
        Advice::DontDump => (c::MADV_DONTDUMP, Error::NotMapped),
        Advice::DoDump => (c::MADV_DODUMP, Error::NotMapped),
        Advice::PopulateWrite => (c::MADV_POPULATE_WRITE, Error::OutOfMemory),
    };
    // SAFETY: the advice values above change only core-dump flags or page
    // residency, never the bytes a program reads; destructive values such as
    // MADV_DONTNEED are not expressible through `Advice`.
    check(unsafe { raw::syscall3(c::__NR_madvise as usize, addr, len, advice as usize) })
        .map(drop)
        .map_err(|e| e.read_as(Error::ResourceLimit, enomem))
}

/// An owned private, anonymous, read-write mapping (`mmap(2)`), unmapped
/// on drop (`munmap(2)`). Its address never changes, so moving the handle
/// does not move the bytes.
#[derive(Debug)]
pub(super) struct Mapping {
    pub(super) addr: *mut u8,
    len: usize,
}

impl Mapping {
    /// Maps `len` bytes (`len > 0`), rounded up to whole pages by the kernel.
    #[inline]
    pub(super) fn new(len: usize) -> Result<Mapping, Error> {
        // SAFETY: a private anonymous mapping at an address of the kernel's
        // choosing (addr = NULL, no MAP_FIXED) cannot overlap or replace any
        // existing mapping.
        let addr = check(unsafe {
            mmap6(
                0,
                len,
                c::PROT_READ | c::PROT_WRITE,
                c::MAP_PRIVATE | c::MAP_ANONYMOUS,
                usize::MAX, // fd = -1
                0,
            )
        })?;
        Ok(Mapping {
            addr: addr as *mut u8,
            len,
        })
    }
}

impl Drop for Mapping {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the mapping is ours, and no reference to it can outlive
        // `self`. munmap of a valid mapping cannot fail.
        let _ = unsafe { raw::syscall2(c::__NR_munmap as usize, self.addr as usize, self.len) };
    }
}

// SAFETY: a Mapping is plain owned memory, like a Box<[u8]>; nothing in it
// is tied to the thread that created it.
unsafe impl Send for Mapping {}
// SAFETY: shared access only reads through `as_slice`, as with `&[u8]`.
unsafe impl Sync for Mapping {}

/// `prctl(2)` for an option whose arguments are plain integers and whose
/// result is the return value.
///
/// Only the options listed in [`PrctlInt`] can be passed, so no pointer
/// argument is ever interpreted by the kernel.
#[inline]
pub(crate) fn prctl_int(option: PrctlInt, arg2: usize) -> Result<usize, Error> {
    let option = match option {
        PrctlInt::SetDumpable => linux_raw_sys::prctl::PR_SET_DUMPABLE,
        PrctlInt::GetDumpable => linux_raw_sys::prctl::PR_GET_DUMPABLE,
        PrctlInt::SetIoFlusher => linux_raw_sys::prctl::PR_SET_IO_FLUSHER,
        PrctlInt::GetIoFlusher => linux_raw_sys::prctl::PR_GET_IO_FLUSHER,
    };
    // SAFETY: each of these options takes integer arguments only (the unused
    // ones must be zero, and are) and writes no user memory.
    check(unsafe { raw::syscall5(c::__NR_prctl as usize, option as usize, arg2, 0, 0, 0) })
}

/// `sched_setscheduler(0, SCHED_FIFO, &{ priority })`: real-time FIFO
/// scheduling for the calling thread.
pub(crate) fn sched_set_fifo(priority: i32) -> Result<(), Error> {
    // The kernel's `struct sched_param` is one int.
    let param: i32 = priority;
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param
    // (a single int) that outlives the call and that the kernel only reads.
    check(unsafe {
        raw::syscall3(
            c::__NR_sched_setscheduler as usize,
            0,
            c::SCHED_FIFO as usize,
            &param as *const i32 as usize,
        )
    })
    .map(drop)
}

/// `sched_getscheduler(0)`: the calling thread's policy (`SCHED_OTHER` 0,
/// `SCHED_FIFO` 1, `SCHED_RR` 2, ...).
pub(crate) fn sched_policy() -> Result<u32, Error> {
    // SAFETY: no pointer arguments; pid 0 is the calling thread.
    check(unsafe { raw::syscall1(c::__NR_sched_getscheduler as usize, 0) }).map(|p| p as u32)
}

/// `sched_getparam(0)`: the calling thread's static priority (1 to 99
/// under `SCHED_FIFO`/`SCHED_RR`, else 0).
pub(crate) fn sched_priority() -> Result<u32, Error> {
    let mut param: i32 = 0;
    // SAFETY: pid 0 is the calling thread; `param` is a valid, writable
    // sched_param (a single int) that outlives the call.
    check(unsafe {
        raw::syscall2(
            c::__NR_sched_getparam as usize,
            0,
            &mut param as *mut i32 as usize,
        )
    })?;
    Ok(param as u32)
}

/// `prlimit64(2)` on this process: optionally sets `resource` to
/// `new = (soft, hard)`, and returns the limit as it was before.
/// `RLIM64_INFINITY` is `u64::MAX`.
#[inline]
pub(crate) fn prlimit64(resource: Resource, new: Option<(u64, u64)>) -> Result<(u64, u64), Error> {
    let resource = match resource {
        Resource::MemLock => c::RLIMIT_MEMLOCK,
        Resource::Core => c::RLIMIT_CORE,
        Resource::RtPrio => c::RLIMIT_RTPRIO,
    };
    let new = new.map(|(soft, hard)| c::rlimit64 {
        rlim_cur: soft,
        rlim_max: hard,
    });
    let new_ptr = new.as_ref().map_or(0, |n| n as *const c::rlimit64 as usize);
    let mut old = c::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: pid 0 is this process; `new_ptr` is NULL or points to a valid
    // rlimit64 that outlives the call and that the kernel only reads; `old`
    // is a valid, writable rlimit64.
    check(unsafe {
        raw::syscall4(
            c::__NR_prlimit64 as usize,
            0,
            resource as usize,
            new_ptr,
            &mut old as *mut c::rlimit64 as usize,
        )
    })?;
    Ok((old.rlim_cur, old.rlim_max))
}

/// `capget(2)` for this process: returns the 64-bit effective set.
#[inline]
pub(crate) fn capget_effective() -> Result<u64, Error> {
    let mut header = c::__user_cap_header_struct {
        version: c::_LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let empty = c::__user_cap_data_struct {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    };
    // Version 3 uses two data structs: capabilities 0-31, then 32-63.
    let mut data = [empty; 2];
    // SAFETY: header is a valid v3 header for this process (pid 0); data is
    // the array of two structs that version 3 writes.
    check(unsafe {
        raw::syscall2(
            c::__NR_capget as usize,
            &mut header as *mut _ as usize,
            data.as_mut_ptr() as usize,
        )
    })?;
    Ok(u64::from(data[0].effective) | (u64::from(data[1].effective) << 32))
}

/// An owned file descriptor, closed on drop.
#[derive(Debug)]
pub(crate) struct Fd(i32);

impl Fd {
    /// The descriptor, borrowed for as long as `self` lives.
    #[inline]
    pub(crate) fn borrow(&self) -> BorrowedFd<'_> {
        BorrowedFd::new(self.0)
    }
}

impl Drop for Fd {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own the descriptor and nothing uses it after drop. An
        // error from close is not actionable for a read-only file.
        let _ = unsafe { raw::syscall1(c::__NR_close as usize, self.0 as usize) };
    }
}

/// `openat(2)` relative to the current directory (`AT_FDCWD`); aarch64 and
/// riscv64 have no plain `open`. Descriptors are close-on-exec, and the
/// last path component must not be a symbolic link (`O_NOFOLLOW`).
#[inline]
pub(crate) fn open(path: &CStr, mode: OpenMode) -> Result<Fd, Error> {
    let access = match mode {
        OpenMode::Read => c::O_RDONLY,
        OpenMode::Write => c::O_WRONLY,
    };
    let flags = access | c::O_CLOEXEC | c::O_NOFOLLOW;
    // SAFETY: `path` is a NUL-terminated string that outlives the call; mode
    // 0 is ignored without O_CREAT.
    let fd = check(unsafe {
        raw::syscall4(
            c::__NR_openat as usize,
            c::AT_FDCWD as isize as usize,
            path.as_ptr() as usize,
            flags as usize,
            0,
        )
    })?;
    // A successful openat returns a small non-negative int.
    Ok(Fd(fd as i32))
}

/// `read(2)` into `buf`; returns the number of bytes read (0 at end of file).
#[inline]
pub(crate) fn read(fd: &Fd, buf: &mut [u8]) -> Result<usize, Error> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    check(unsafe {
        raw::syscall3(
            c::__NR_read as usize,
            fd.0 as usize,
            buf.as_mut_ptr() as usize,
            buf.len(),
        )
    })
}

/// `getdents64(2)`: the next directory entries of `fd` into `buf`
/// (`struct linux_dirent64` records); 0 at the end of the directory.
pub(crate) fn getdents64(fd: &Fd, buf: &mut [u8]) -> Result<usize, Error> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes, which is all
    // the kernel writes.
    check(unsafe {
        raw::syscall3(
            c::__NR_getdents64 as usize,
            fd.0 as usize,
            buf.as_mut_ptr() as usize,
            buf.len(),
        )
    })
}

/// `read(2)` from where `fd` stands (`offset` `None`), or `pread64(2)` at
/// `offset`, into `buf`, which need not be initialised: returns the bytes
/// read, at the start of `buf`. Reading into a fresh stack buffer without
/// zeroing it first saves the zeroing (2 KiB for a status read).
#[inline]
pub(crate) fn read_to<'a>(
    fd: &Fd,
    buf: &'a mut [MaybeUninit<u8>],
    offset: Option<u64>,
) -> Result<&'a [u8], Error> {
    let (call, offset) = match offset {
        None => (c::__NR_read, 0),
        Some(offset) => (c::__NR_pread64, offset),
    };
    // The 64-bit offset: one register on the 64-bit arches; on the 32-bit
    // ones two, low word first (both are little-endian), and arm's EABI
    // starts a 64-bit pair at an even register, so its offset follows an
    // unused fourth argument. (`read` ignores the arguments after its
    // third.)
    #[cfg(target_pointer_width = "64")]
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes, initialised
    // or not, and the kernel only writes to it.
    let ret = unsafe {
        raw::syscall4(
            call as usize,
            fd.0 as usize,
            buf.as_mut_ptr() as usize,
            buf.len(),
            offset as usize,
        )
    };
    #[cfg(target_arch = "x86")]
    let rest = [offset as usize, (offset >> 32) as usize, 0];
    #[cfg(target_arch = "arm")]
    let rest = [0, offset as usize, (offset >> 32) as usize];
    #[cfg(target_pointer_width = "32")]
    // SAFETY: as above; `pread64` finds its offset as laid out above.
    let ret = unsafe {
        raw::syscall6(
            call as usize,
            fd.0 as usize,
            buf.as_mut_ptr() as usize,
            buf.len(),
            rest[0],
            rest[1],
            rest[2],
        )
    };
    let n = check(ret)?;
    // The kernel never returns more than asked; `min` keeps that from
    // being an assumption.
    let n = n.min(buf.len());
    // SAFETY: the kernel wrote the first `n` bytes of `buf`, so they are
    // initialised; the result borrows `buf`, so nothing writes them while
    // it lives.
    Ok(unsafe { core::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) })
}

/// `write(2)` of `buf` to the borrowed descriptor `fd`; returns the bytes
/// written.
#[inline]
pub(crate) fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> Result<usize, Error> {
    let fd = fd.raw();
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes. Writing to a
    // descriptor does not touch this process's memory otherwise.
    check(unsafe {
        raw::syscall3(
            c::__NR_write as usize,
            fd as usize,
            buf.as_ptr() as usize,
            buf.len(),
        )
    })
}

/// `fstatfs(2)`: whether `fd` is on procfs (`PROC_SUPER_MAGIC`). A container
/// or a test can mount anything at `/proc`.
#[inline]
pub(crate) fn is_procfs(fd: &Fd) -> Result<bool, Error> {
    // Not zeroed first (84 to 120 bytes): the kernel fills it in.
    let mut buf = MaybeUninit::<c::statfs64>::uninit();
    // SAFETY: `buf` is valid for writes of a `statfs64`: on the 64-bit
    // arches `fstatfs` writes a `struct statfs`, which is laid out as
    // `statfs64` there; on the 32-bit ones `fstatfs64` writes a `statfs64`
    // of the size it is told (84 bytes on i686 and arm, whose ABIs pack it).
    #[cfg(target_pointer_width = "64")]
    let ret = unsafe {
        raw::syscall2(
            c::__NR_fstatfs as usize,
            fd.0 as usize,
            buf.as_mut_ptr() as usize,
        )
    };
    #[cfg(target_pointer_width = "32")]
    // SAFETY: as above.
    let ret = unsafe {
        raw::syscall3(
            c::__NR_fstatfs64 as usize,
            fd.0 as usize,
            core::mem::size_of::<c::statfs64>(),
            buf.as_mut_ptr() as usize,
        )
    };
    check(ret)?;
    // SAFETY: a successful fstatfs wrote the whole struct, and a statfs64
    // is plain integers.
    let buf = unsafe { buf.assume_init() };
    Ok(buf.f_type as u64 == u64::from(c::PROC_SUPER_MAGIC))
}

/// Marks a fresh mapping `MADV_WIPEONFORK` (Linux 4.14+): a child of
/// `fork(2)` gets it zero-filled. Returns whether the kernel applied the
/// advice. QEMU user mode before 8.0 answers every `madvise` with 0 and
/// applies none; an advice no kernel defines tells it apart: a real kernel
/// refuses it with `EINVAL`.
pub(super) fn wipe_on_fork(mapping: &Mapping) -> bool {
    let (addr, len) = (mapping.addr as usize, mapping.len);
    // SAFETY: the mapping is ours and nothing refers to it yet, so wiping
    // it in a future child changes no memory anyone relies on; the probe's
    // advice (`int` -1) is one no kernel defines, so a kernel rejects it
    // without acting.
    let (wipe, probe) = unsafe {
        (
            raw::syscall3(
                c::__NR_madvise as usize,
                addr,
                len,
                c::MADV_WIPEONFORK as usize,
            ),
            raw::syscall3(c::__NR_madvise as usize, addr, len, u32::MAX as usize),
        )
    };
    wipe == 0 && probe != 0
}

/// `getpid(2)`.
#[inline]
pub(crate) fn getpid() -> u32 {
    // SAFETY: getpid takes no arguments and cannot fail.
    unsafe { raw::syscall0(c::__NR_getpid as usize) as u32 }
}

/// `mount(2)` of a fresh procfs at `target`, `nosuid,nodev,noexec`.
#[inline]
pub(crate) fn mount_proc(target: &CStr) -> Result<(), Error> {
    let flags = c::MS_NOSUID | c::MS_NODEV | c::MS_NOEXEC;
    // SAFETY: the strings are NUL-terminated and outlive the call; data is
    // NULL. Mounting changes the file-system namespace, not memory.
    check(unsafe {
        raw::syscall5(
            c::__NR_mount as usize,
            c"proc".as_ptr() as usize,
            target.as_ptr() as usize,
            c"proc".as_ptr() as usize,
            flags as usize,
            0,
        )
    })
    .map(drop)
}

/// `reboot(2)` with `LINUX_REBOOT_CMD_POWER_OFF`. Returns only on failure.
#[inline]
pub(crate) fn power_off() -> Error {
    // SAFETY: reboot takes integer arguments only. On success the machine
    // stops; memory safety of this process is not at stake either way.
    let ret = unsafe {
        raw::syscall4(
            c::__NR_reboot as usize,
            c::LINUX_REBOOT_MAGIC1 as usize,
            c::LINUX_REBOOT_MAGIC2 as usize,
            c::LINUX_REBOOT_CMD_POWER_OFF as usize,
            0,
        )
    };
    match check(ret) {
        Err(e) => e,
        Ok(_) => Error::Unsupported,
    }
}

/// `exit_group(2)`: ends every thread of the process with `code`.
#[inline]
pub(crate) fn exit_group(code: i32) -> ! {
    // SAFETY: exit_group takes one integer and never returns; no memory of
    // this process is used after it.
    unsafe {
        raw::syscall1(c::__NR_exit_group as usize, code as isize as usize);
    }
    // The kernel does not return from exit_group.
    loop {
        core::hint::spin_loop();
    }
}

/// The kernel's page size, probed once and cached (see
/// [`probe_page_size`]); 0 until the first call.
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// The kernel's page size: 4 KiB on x86_64, i686, armv7, s390x and
/// riscv64; 4, 16 or 64 KiB on aarch64; 4 or 64 KiB on powerpc64. Racing first calls each probe and store the same value.
#[inline]
pub(crate) fn page_size() -> usize {
    match PAGE_SIZE.load(Ordering::Relaxed) {
        0 => {
            let size = probe_page_size();
            PAGE_SIZE.store(size, Ordering::Relaxed);
            size
        }
        size => size,
    }
}

/// Finds the page size without libc or the auxiliary vector: `madvise(2)`
/// rejects a start that is not page-aligned with `EINVAL`, so inside a
/// fresh 128 KiB reservation (page-aligned, at least two pages for every
/// size) the first of the offsets 4 KiB and 16 KiB that `MADV_NORMAL`
/// accepts is the page size; if neither is, pages are 64 KiB.
#[cold]
fn probe_page_size() -> usize {
    const LARGEST: usize = 64 * 1024;
    let Ok(region) = Reservation::new(2 * LARGEST) else {
        return 4096;
    };
    for candidate in [4096, 16 * 1024] {
        // SAFETY: MADV_NORMAL only resets the readahead hint of pages of our
        // own reservation; it changes no memory.
        let ret = unsafe {
            raw::syscall3(
                c::__NR_madvise as usize,
                region.addr + candidate,
                1,
                c::MADV_NORMAL as usize,
            )
        };
        if ret == 0 {
            return candidate;
        }
    }
    LARGEST
}

/// An owned private anonymous `PROT_NONE` mapping: address space that no
/// other mapping can take, unmapped on drop unless `len` was set to 0.
pub(super) struct Reservation {
    pub(super) addr: usize,
    pub(super) len: usize,
}

impl Reservation {
    /// Reserves `len` bytes of address space, `PROT_NONE`.
    pub(super) fn new(len: usize) -> Result<Reservation, Error> {
        // SAFETY: a private anonymous mapping at an address of the kernel's
        // choosing cannot overlap or replace any existing mapping.
        let addr = check(unsafe {
            mmap6(
                0,
                len,
                c::PROT_NONE,
                c::MAP_PRIVATE | c::MAP_ANONYMOUS,
                usize::MAX, // fd = -1
                0,
            )
        })?;
        Ok(Reservation { addr, len })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: the range is ours (mapped by `new`, possibly remapped
            // inside by `SecretPages`), and no reference into it outlives
            // its owner. munmap of an owned range cannot fail.
            let _ = unsafe { raw::syscall2(c::__NR_munmap as usize, self.addr, self.len) };
        }
    }
}

/// `mprotect(2)` of `[addr, addr + len)`.
///
/// # Safety
/// The range is mapped and the caller's own (the data pages of its
/// `SecretPages`), and no reference into it exists that the new
/// protection would invalidate (a slice of pages about to be `None`).
pub(super) unsafe fn protect(addr: usize, len: usize, prot: Protection) -> Result<(), Error> {
    let prot = match prot {
        Protection::None => c::PROT_NONE,
        Protection::Read => c::PROT_READ,
        Protection::ReadWrite => c::PROT_READ | c::PROT_WRITE,
    };
    // SAFETY: the caller's promise: the range is its own, and no reference
    // relies on the protection it had.
    check(unsafe { raw::syscall3(c::__NR_mprotect as usize, addr, len, prot as usize) }).map(drop)
}

/// `madvise(2)` of `[addr, addr + len)` with one of the fork advices;
/// whether the kernel accepted it.
///
/// # Safety
/// The range is the caller's own and nothing in a forked child relies on
/// inheriting it as it is (with `WipeOnFork` the child finds zeros, with
/// `DontFork` nothing). No advice changes this process's memory.
pub(super) unsafe fn advise_fork(addr: usize, len: usize, advice: ForkAdvice) -> bool {
    let advice = match advice {
        ForkAdvice::DontFork => c::MADV_DONTFORK,
        ForkAdvice::WipeOnFork => c::MADV_WIPEONFORK,
        ForkAdvice::Undefined => u32::MAX,
    };
    // SAFETY: the caller's promise; the advice only changes what a future
    // child inherits.
    unsafe { raw::syscall3(c::__NR_madvise as usize, addr, len, advice as usize) == 0 }
}

/// `madvise(2)` of `[addr, addr + len)` with `MADV_GUARD_INSTALL` (Linux
/// 6.13+): every access to the range faults (`SIGSEGV`) from now on, as on a
/// `PROT_NONE` page, but the range stays part of its mapping (no new VMA).
/// Whether the kernel accepted it: it refuses an unknown advice, a locked
/// range (`VM_LOCKED`, as under `mlockall(MCL_FUTURE)`) and a mapping that
/// is not private anonymous memory (`EINVAL`).
///
/// # Safety
/// The range is the caller's own and nothing refers into it: whatever it
/// held is dropped, and any later access faults.
pub(super) unsafe fn guard_install(addr: usize, len: usize) -> bool {
    // SAFETY: the caller's promise; the range's contents are the caller's
    // to discard.
    unsafe {
        raw::syscall3(
            c::__NR_madvise as usize,
            addr,
            len,
            c::MADV_GUARD_INSTALL as usize,
        ) == 0
    }
}

/// `mseal(2)` (Linux 6.10+; 64-bit kernels only, which offer it to their
/// 32-bit processes too; `ENOSYS` on a 32-bit kernel) of `[addr, addr + len)`: from now
/// on, for the rest of the process, the kernel refuses `munmap(2)`,
/// `mremap(2)`, `mprotect(2)`, a `MAP_FIXED` `mmap(2)` over the range and
/// discarding `madvise(2)` advice (`EPERM`). Not inherited by `execve`.
///
/// # Safety
/// The range is the caller's own, and it gives up unmapping it: nothing
/// may rely on the range being unmapped or reprotected later (its owner is
/// never dropped, or its drop leaves the mapping alone).
pub(super) unsafe fn mseal(addr: usize, len: usize) -> Result<(), Error> {
    // SAFETY: the caller's promise; sealing changes no byte of the range.
    check(unsafe { raw::syscall3(c::__NR_mseal as usize, addr, len, 0) }).map(drop)
}

/// `memfd_secret(2)` (Linux 5.14+) with `O_CLOEXEC`: a new descriptor for
/// memory removed from the kernel's direct map.
#[cfg(not(any(target_arch = "arm", target_arch = "powerpc64")))]
pub(super) fn memfd_secret() -> Result<Fd, Error> {
    // SAFETY: memfd_secret takes flags only (O_CLOEXEC) and returns a new
    // descriptor, which `Fd` owns from here on.
    let fd = check(unsafe { raw::syscall1(c::__NR_memfd_secret as usize, c::O_CLOEXEC as usize) })?;
    Ok(Fd(fd as i32))
}

/// `memfd_secret(2)` on arm and powerpc64, whose kernels have no such
/// system call (it needs an arch that can take pages out of its direct
/// map; the call has no number in their tables): [`Error::Unsupported`], as
/// `ENOSYS` is elsewhere.
#[cfg(any(target_arch = "arm", target_arch = "powerpc64"))]
pub(super) fn memfd_secret() -> Result<Fd, Error> {
    Err(Error::Unsupported)
}

/// `ftruncate(2)`: sets the size of the file behind `fd`.
pub(super) fn ftruncate(fd: &Fd, len: usize) -> Result<(), Error> {
    // SAFETY: ftruncate changes the size of a file we own a descriptor to,
    // not this process's memory.
    check(unsafe { raw::syscall2(c::__NR_ftruncate as usize, fd.0 as usize, len) }).map(drop)
}

/// `mmap(2)` of `fd`, shared and read-write, over `[addr, addr + len)`
/// with `MAP_FIXED`.
///
/// # Safety
/// The range must belong to the caller (a [`Reservation`] it holds) and no
/// reference into it may exist: `MAP_FIXED` replaces whatever was mapped
/// there.
pub(super) unsafe fn map_shared_fixed(addr: usize, len: usize, fd: &Fd) -> Result<(), Error> {
    // SAFETY: the caller owns the range and nothing refers into it.
    check(unsafe {
        mmap6(
            addr,
            len,
            c::PROT_READ | c::PROT_WRITE,
            c::MAP_SHARED | c::MAP_FIXED,
            fd.0 as usize,
            0,
        )
    })
    .map(drop)
}

/// `clock_gettime(CLOCK_MONOTONIC, at)`: has the kernel store 16 bytes at
/// `at` on this process's behalf, which faults the page in from inside the
/// kernel (`EFAULT` where it cannot be had) instead of with a signal.
///
/// # Safety
/// `[at, at + 16)` must be writable memory the caller owns, to which no
/// reference exists.
pub(super) unsafe fn kernel_store(at: usize) -> Result<(), Error> {
    // SAFETY: the caller vouches for the 16 bytes at `at`.
    check(unsafe {
        raw::syscall2(
            c::__NR_clock_gettime as usize,
            c::CLOCK_MONOTONIC as usize,
            at,
        )
    })
    .map(drop)
}

/// `getrandom(2)` with `GRND_NONBLOCK` into `buf`: the bytes written, or
/// the error (`EAGAIN` before the pool is ready, `ENOSYS` before 3.17).
pub(super) fn getrandom_nonblock(buf: &mut [u8]) -> Result<usize, Error> {
    // SAFETY: `buf` is valid for writes of its length.
    check(unsafe {
        raw::syscall3(
            c::__NR_getrandom as usize,
            buf.as_mut_ptr() as usize,
            buf.len(),
            c::GRND_NONBLOCK as usize,
        )
    })
}

/// Ends the process with `SIGABRT` raised on the calling thread, as
/// `abort(3)` does, without libc: `SIGABRT` is unblocked on this thread and
/// sent to it (`tgkill(2)`), so the kernel delivers it before the call
/// returns, whichever thread calls. Should a handler return, the default
/// action is restored (`rt_sigaction(2)`) and the signal raised again;
/// `SIGKILL` is the last resort. A process-directed `kill` is not enough
/// from a second thread: the kernel hands a core-dumping signal to the
/// main thread, and the caller's next `SIGKILL` wins the race to end the
/// process.
pub(super) fn abort_self() {
    let (pid, tid) = (getpid() as usize, tid());
    let abrt = c::SIGABRT as usize;
    let only_abrt: u64 = 1 << (c::SIGABRT - 1);
    // `struct sigaction` with `SIG_DFL`, no flags and an empty mask: all
    // zeroes, as long as the largest arch's (32 bytes with `sa_restorer`).
    let default_action = [0usize; 4];
    let sigset_size = core::mem::size_of::<u64>();
    // SAFETY: signal-mask and signal-action calls on this thread and
    // process read the two local values (valid for their sizes) and write
    // nothing back (the old values are NULL); tgkill and kill touch no
    // memory of ours.
    unsafe {
        raw::syscall4(
            c::__NR_rt_sigprocmask as usize,
            c::SIG_UNBLOCK as usize,
            &only_abrt as *const u64 as usize,
            0,
            sigset_size,
        );
        raw::syscall3(c::__NR_tgkill as usize, pid, tid, abrt);
        raw::syscall4(
            c::__NR_rt_sigaction as usize,
            abrt,
            default_action.as_ptr() as usize,
            0,
            sigset_size,
        );
        raw::syscall3(c::__NR_tgkill as usize, pid, tid, abrt);
        raw::syscall2(c::__NR_kill as usize, pid, c::SIGKILL as usize);
    }
}

/// `gettid(2)`: the calling thread's ID.
fn tid() -> usize {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { raw::syscall0(c::__NR_gettid as usize) }
}
