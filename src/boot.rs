//! Early boot: what an initramfs `/init` or a static helper needs around
//! locking, before any libc or `/proc` is there.

use crate::sys::{self, BorrowedFd};
use crate::Error;

/// Mounts procfs at `/proc` unless it is already there; returns whether it
/// mounted it.
///
/// Locking does not need `/proc`, but [`status`](crate::status()) does. The
/// mount is `nosuid,nodev,noexec`. Needs `CAP_SYS_ADMIN` (PID 1 has it)
/// and an existing `/proc` directory.
///
/// # Errors
/// - [`Error::NeedsCapSysAdmin`] (`EPERM`):
///   no `CAP_SYS_ADMIN`.
/// - [`Error::ProcUnavailable`]: there is no `/proc` directory to mount on.
/// - [`Error::Unsupported`] on a target without the raw backend.
///
/// # References
/// - [`mount(2)`](https://man7.org/linux/man-pages/man2/mount.2.html),
///   [`proc(5)`](https://man7.org/linux/man-pages/man5/proc.5.html)
pub fn mount_proc() -> Result<bool, Error> {
    if crate::procfs::is_mounted()? {
        return Ok(false);
    }
    sys::mount_proc(c"/proc")
        .map_err(|e| crate::procfs::proc_error(e).eperm_means(Error::NeedsCapSysAdmin))?;
    Ok(true)
}

/// A descriptor [`write_all`] may write to: standard output or standard
/// error, or a raw descriptor the caller vouches for.
///
/// Writing to a descriptor number the program does not own is a bug of the
/// kind Rust's I/O safety rules out: if `3` was closed and reopened by
/// another part of the program, a write to `3` lands in someone else's
/// file. The safe constructors name only standard output and standard
/// error, which every process is given (for PID 1 the kernel opens both on
/// `/dev/console`) and which std's own `stdout()`/`stderr()` also write to
/// by number. Any other descriptor goes through the `unsafe`
/// [`borrow_raw`](Self::borrow_raw), like `std::os::fd::BorrowedFd`, which
/// `no_std` code cannot use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    fd: BorrowedFd<'static>,
}

impl Output {
    /// Standard output (descriptor 1); the console for PID 1.
    pub const STDOUT: Output = Output {
        fd: BorrowedFd::STDOUT,
    };
    /// Standard error (descriptor 2); the console for PID 1.
    pub const STDERR: Output = Output {
        fd: BorrowedFd::STDERR,
    };

    /// A raw descriptor, for [`write_all`].
    ///
    /// # Safety
    /// `fd` must be open and must stay open, owned by the caller or
    /// lent to it, for as long as the returned value is used: writing to a
    /// descriptor that was closed and reused writes into another owner's
    /// file or socket.
    #[allow(unsafe_code)] // An `unsafe fn` for its contract; it has no unsafe block.
    #[must_use]
    pub const unsafe fn borrow_raw(fd: i32) -> Output {
        Output {
            fd: BorrowedFd::new(fd),
        }
    }

    /// The descriptor number.
    #[must_use]
    pub const fn as_raw(self) -> i32 {
        self.fd.raw()
    }
}

/// Writes all of `bytes` to `out` ([`Output::STDOUT`], [`Output::STDERR`],
/// or a descriptor from [`Output::borrow_raw`]), retrying short writes and
/// `EINTR`.
///
/// # Errors
/// - The first error from `write(2)` other than `EINTR`, such as
///   [`Error::Os`] with `EBADF` for a closed descriptor.
/// - [`Error::ShortWrite`]: `write(2)` took nothing (a full device).
///
/// # References
/// - [`write(2)`](https://man7.org/linux/man-pages/man2/write.2.html)
pub fn write_all(out: Output, mut bytes: &[u8]) -> Result<(), Error> {
    while !bytes.is_empty() {
        match sys::write(out.fd, bytes) {
            Ok(0) => return Err(Error::ShortWrite),
            Ok(n) => bytes = &bytes[n.min(bytes.len())..],
            Err(Error::Interrupted) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Powers the machine off (`reboot(LINUX_REBOOT_CMD_POWER_OFF)`), as PID 1
/// must instead of exiting. Returns only on failure, with the error.
///
/// Call `sync(2)` first if file systems were written; an initramfs has none
/// that matter.
///
/// # References
/// - [`reboot(2)`](https://man7.org/linux/man-pages/man2/reboot.2.html)
#[must_use = "power_off returns only on failure"]
pub fn power_off() -> Error {
    sys::power_off().eperm_means(Error::NeedsCapSysBoot)
}

/// This process's ID (`getpid(2)`); 1 for the `/init` the kernel started.
/// Answers 0 on a target without the raw backend.
///
/// # References
/// - [`getpid(2)`](https://man7.org/linux/man-pages/man2/getpid.2.html)
#[must_use]
pub fn pid() -> u32 {
    sys::getpid()
}

/// Ends the process with `code` (`exit_group(2)`), as a `#![no_std]`
/// program without a C runtime must: no destructors run and no buffers are
/// flushed (this crate buffers nothing). PID 1 should call [`power_off`]
/// instead; the kernel panics when init exits.
///
/// On a target without the raw backend there is no way to end the
/// process, and this spins forever.
///
/// # References
/// - [`exit_group(2)`](https://man7.org/linux/man-pages/man2/exit_group.2.html)
#[doc(alias = "exit_group")]
pub fn exit(code: i32) -> ! {
    sys::exit_group(code)
}
