//! The stub backend for targets without the raw syscall layer: every call
//! answers [`Error::Unsupported`]. It has the same functions as the Linux
//! backend, so the rest of the crate compiles unchanged (the `unsafe fn`
//! signatures included; there is no `unsafe` block here).
#![allow(unsafe_code)]

use core::ffi::CStr;

use super::{Advice, Backing, BorrowedFd, Guards, LockMode, OpenMode, PrctlInt, Resource};
use crate::Error;
use crate::Flags;

pub(crate) fn mlockall(_flags: Flags) -> Result<(), Error> {
    Err(Error::Unsupported)
}

pub(crate) fn munlockall() -> Result<(), Error> {
    Err(Error::Unsupported)
}

pub(crate) unsafe fn mlock(_addr: usize, _len: usize, _mode: LockMode) -> Result<(), Error> {
    Err(Error::Unsupported)
}

pub(crate) unsafe fn munlock(_addr: usize, _len: usize) -> Result<(), Error> {
    Err(Error::Unsupported)
}

pub(crate) unsafe fn madvise(_addr: usize, _len: usize, _advice: Advice) -> Result<(), Error> {
    Err(Error::Unsupported)
}

pub(crate) fn prctl_int(_option: PrctlInt, _arg2: usize) -> Result<usize, Error> {
    Err(Error::Unsupported)
}

pub(crate) fn sched_set_fifo(_priority: i32) -> Result<(), Error> {
    Err(Error::Unsupported)
}

pub(crate) fn sched_policy() -> Result<u32, Error> {
    Err(Error::Unsupported)
}

pub(crate) fn sched_priority() -> Result<u32, Error> {
    Err(Error::Unsupported)
}

pub(crate) fn getdents64(fd: &Fd, _buf: &mut [u8]) -> Result<usize, Error> {
    match fd.never {}
}

pub(crate) fn prlimit64(
    _resource: Resource,
    _new: Option<(u64, u64)>,
) -> Result<(u64, u64), Error> {
    Err(Error::Unsupported)
}

pub(crate) fn capget_effective() -> Result<u64, Error> {
    Err(Error::Unsupported)
}

/// Never constructed: `open` always fails here.
#[derive(Debug)]
pub(crate) struct Fd {
    never: core::convert::Infallible,
}

impl Fd {
    pub(crate) fn borrow(&self) -> BorrowedFd<'_> {
        match self.never {}
    }
}

pub(crate) fn open(_path: &CStr, _mode: OpenMode) -> Result<Fd, Error> {
    Err(Error::Unsupported)
}

pub(crate) fn read(fd: &Fd, _buf: &mut [u8]) -> Result<usize, Error> {
    match fd.never {}
}

pub(crate) fn read_to<'a>(
    fd: &Fd,
    _buf: &'a mut [core::mem::MaybeUninit<u8>],
    _offset: Option<u64>,
) -> Result<&'a [u8], Error> {
    match fd.never {}
}

pub(crate) fn write(_fd: BorrowedFd<'_>, _buf: &[u8]) -> Result<usize, Error> {
    Err(Error::Unsupported)
}

pub(crate) fn is_procfs(fd: &Fd) -> Result<bool, Error> {
    match fd.never {}
}

/// Without the backend no page can be had: the value stays 0.
pub(crate) struct ForkLocal;

impl ForkLocal {
    pub(crate) const fn new() -> ForkLocal {
        ForkLocal
    }

    pub(crate) fn get(&self) -> u32 {
        0
    }

    pub(crate) fn set(&self, _value: u32) {}
}

pub(crate) fn getpid() -> u32 {
    0
}

pub(crate) fn pid() -> u32 {
    0
}

/// Types for which all-zero bytes are a valid value (see the Linux
/// backend's `PerProcess`).
///
/// # Safety
/// As there: the all-zero bit pattern is a valid `Self`.
pub(crate) unsafe trait Zeroed: Sync {}

/// Without the backend there is no page: every `get` is `Unsupported`.
pub(crate) struct PerProcess<T>(core::marker::PhantomData<T>);

impl<T: Zeroed + 'static> PerProcess<T> {
    pub(crate) const fn new() -> PerProcess<T> {
        PerProcess(core::marker::PhantomData)
    }

    pub(crate) fn get(&self) -> Result<&T, Error> {
        Err(Error::Unsupported)
    }
}

/// No kernel to ask; the common size, for the crate's record of held
/// ranges (which stays empty here, as nothing can be locked).
pub(crate) fn page_size() -> usize {
    4096
}

pub(crate) fn mount_proc(_target: &CStr) -> Result<(), Error> {
    Err(Error::Unsupported)
}

pub(crate) fn power_off() -> Error {
    Error::Unsupported
}

pub(crate) fn exit_group(_code: i32) -> ! {
    // Without the backend there is no way to end the process; a program
    // that calls this on such a target waits forever.
    loop {
        core::hint::spin_loop();
    }
}

/// Never constructed: the constructors of its owners always fail here.
pub(crate) struct Region {
    never: core::convert::Infallible,
}

impl Region {
    pub(crate) fn backing(&self) -> Backing {
        match self.never {}
    }

    pub(crate) fn guards(&self) -> Guards {
        match self.never {}
    }

    pub(crate) fn fork_protected(&self) -> bool {
        match self.never {}
    }

    pub(crate) fn disown(&mut self) {
        match self.never {}
    }

    pub(crate) fn data_pages(&self) -> (*const u8, usize) {
        match self.never {}
    }

    pub(crate) fn msealed(&self) -> bool {
        match self.never {}
    }

    pub(crate) fn mseal(&mut self) -> Result<(), Error> {
        match self.never {}
    }
}

/// Never constructed: `new` always fails here.
pub(crate) struct SecretPages {
    region: Region,
}

impl SecretPages {
    pub(crate) fn new(
        _len: usize,
        _want: Option<Backing>,
        _sealed: bool,
    ) -> Result<SecretPages, Error> {
        Err(Error::Unsupported)
    }

    pub(crate) fn region(&self) -> &Region {
        &self.region
    }

    pub(crate) fn region_mut(&mut self) -> &mut Region {
        &mut self.region
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        match self.region.never {}
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        match self.region.never {}
    }

    pub(crate) fn open(&mut self, _writable: bool) -> Opened<'_> {
        match self.region.never {}
    }
}

/// Never constructed: `new` always fails here.
pub(crate) struct PoolPages {
    region: Region,
}

impl PoolPages {
    pub(crate) fn new(_bytes: usize, _want: Option<Backing>) -> Result<PoolPages, Error> {
        Err(Error::Unsupported)
    }

    pub(crate) fn region(&self) -> &Region {
        &self.region
    }

    pub(crate) fn region_mut(&mut self) -> &mut Region {
        &mut self.region
    }

    pub(crate) fn take(&self, _len: usize) -> Option<Slot<'_>> {
        match self.region.never {}
    }
}

/// Never constructed, like [`PoolPages`].
pub(crate) struct Slot<'a> {
    pool: &'a PoolPages,
}

impl Slot<'_> {
    pub(crate) fn disown(&mut self) {
        match self.pool.region.never {}
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        match self.pool.region.never {}
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        match self.pool.region.never {}
    }
}

/// Never constructed, like [`SecretPages`].
pub(crate) struct Opened<'a> {
    pages: &'a mut SecretPages,
}

impl Opened<'_> {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self.pages.region.never {}
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        match self.pages.region.never {}
    }
}
