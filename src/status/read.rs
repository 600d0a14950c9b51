//! Reading `/proc/self/status`: [`status`] opens, reads and closes it;
//! [`StatusReader`] keeps it open for a poller. Both feed a stack buffer
//! to the parser of the kernel's text, and remember per process (until a
//! fork) the process ID and that `/proc` is procfs.

use core::mem::MaybeUninit;

use super::{Status, StatusParser};
use crate::procfs;
use crate::sys::{self, Fd, OpenMode};
use crate::Error;

const PATH: &core::ffi::CStr = c"/proc/self/status";

/// The stack buffer: one read holds the usual 1.4 KiB text.
const READ_CHUNK: usize = 2048;

/// Set once `/proc` was seen to be procfs in this process; clear again in
/// a forked child, which may have another `/proc`.
static PROC_CHECKED: sys::ForkLocal = sys::ForkLocal::new();

/// This process's ID: `getpid(2)` once per process, then one load from a
/// wipe-on-fork page ([`sys::ForkLocal`]).
fn pid() -> u32 {
    static PID: sys::ForkLocal = sys::ForkLocal::new();
    match PID.get() {
        0 => {
            let pid = sys::getpid();
            PID.set(pid);
            pid
        }
        pid => pid,
    }
}

/// Opens `/proc/self/status`, checked to be procfs (`fstatfs(2)`); a pass
/// is remembered for [`status`].
fn open_status() -> Result<Fd, Error> {
    let fd = procfs::open_proc(PATH, OpenMode::Read)?;
    PROC_CHECKED.set(1);
    Ok(fd)
}

/// Reads an open status file from its start (`read`, or `pread` from 0)
/// into the parser. A short read ending in a newline is the last: procfs
/// formats the whole `seq_file` on the first read and returns all that is
/// left. Else it reads on to the end, or until the parser has the six.
fn read_status(fd: &Fd, positional: bool) -> Result<Status, Error> {
    // Not zeroed first: the kernel writes what is read.
    let mut buf = [MaybeUninit::uninit(); READ_CHUNK];
    let mut parser = StatusParser::of_kernel_text();
    let mut offset: u64 = 0;
    loop {
        let data = sys::read_to(fd, &mut buf, positional.then_some(offset))?;
        let last = data.len() < READ_CHUNK && (data.is_empty() || data.last() == Some(&b'\n'));
        parser.feed(data);
        if last || parser.is_done() {
            return parser.result();
        }
        offset += data.len() as u64;
    }
}

/// Reads and parses `/proc/self/status`: one `openat`, one `read` into a
/// stack buffer (more for a file over 2 KiB), one `close`, no allocation
/// ([`StatusReader`] saves the `openat` and the `close`). The parse stops
/// after the six fields of [the kernel's own
/// text](mod@crate::status#the-kernels-own-text), with the answer
/// [`Status::parse`] of the whole text gives.
///
/// **Is `/proc` procfs?** A container or a test can mount anything at
/// `/proc`. The first call in a process checks the file with `fstatfs(2)`
/// and remembers only a pass; a child of `fork(2)`, which may have
/// unshared its mount namespace, checks again. (The flag lives in a page
/// marked `MADV_WIPEONFORK`, `madvise(2)`, which the kernel zero-fills in a
/// forked child; without that advice, before Linux 4.14 or under an
/// emulator that ignores it, every call checks.) Something mounted over
/// `/proc` after a process's first call is not caught by later calls;
/// [`StatusReader::open`] checks every time.
///
/// # Errors
/// - [`Error::ProcUnavailable`]: `/proc` is not mounted, or is not procfs.
/// - [`Error::Malformed`]: see [`Status::parse`].
/// - [`Error::Unsupported`] on a target without the raw backend.
///
/// # References
/// - [`proc_pid_status(5)`](https://man7.org/linux/man-pages/man5/proc_pid_status.5.html)
pub fn status() -> Result<Status, Error> {
    let fd = procfs::open_proc_once(PATH, OpenMode::Read, &PROC_CHECKED)?;
    read_status(&fd, false)
}

/// `VmLck` of this process, in bytes.
///
/// # Errors
/// As [`status`]; [`Error::Malformed`] if the kernel wrote no `VmLck` line.
///
/// # References
/// - [`proc_pid_status(5)`](https://man7.org/linux/man-pages/man5/proc_pid_status.5.html)
pub fn locked_bytes() -> Result<u64, Error> {
    status()?.locked_bytes().ok_or(Error::Malformed)
}

/// Whether any memory of this process is locked (`VmLck` > 0).
///
/// # Errors
/// As [`locked_bytes`]: [`Error::ProcUnavailable`] when `/proc` is not
/// mounted (or is not procfs). The crate cannot see the answer then, so it
/// does not guess `false`.
///
/// # References
/// - [`proc_pid_status(5)`](https://man7.org/linux/man-pages/man5/proc_pid_status.5.html)
pub fn is_locked() -> Result<bool, Error> {
    locked_bytes().map(|n| n > 0)
}

/// A `/proc/self/status` kept open, for a daemon that polls it.
/// [`StatusReader::read`] re-reads it with `pread(2)` at offset 0 (the
/// kernel formats the file afresh on each read from the start), saving
/// the `openat` and `close` of [`status`] (about 0.6x of its cost).
///
/// **Fork.** A descriptor on `/proc/self/status` names the process that
/// opened it: a forked child reading it would get the *parent's* `VmLck`.
/// So [`read`] compares the process ID recorded at open with the caller's
/// and, in another process, reopens the file first. (The descriptor is
/// close-on-exec.) The caller's ID (`getpid(2)`) is asked once per process
/// and kept in a page marked `MADV_WIPEONFORK` (`madvise(2)`), which a
/// forked child gets zero-filled; without that advice (before Linux 4.14,
/// or under an emulator that ignores it) every read calls `getpid`.
///
/// ```no_run
/// let mut reader = mlock::status::StatusReader::open()?;
/// let status = reader.read()?;
/// println!("locked: {:?} bytes", status.locked_bytes());
/// # Ok::<(), mlock::Error>(())
/// ```
///
/// [`read`]: StatusReader::read
///
/// # References
/// - [`proc_pid_status(5)`](https://man7.org/linux/man-pages/man5/proc_pid_status.5.html)
/// - [`pread(2)`](https://man7.org/linux/man-pages/man2/pread.2.html)
#[derive(Debug)]
pub struct StatusReader {
    fd: Fd,
    pid: u32,
}

impl StatusReader {
    /// Opens `/proc/self/status` and checks that it is procfs, every time
    /// (unlike [`status`], which checks once per process).
    ///
    /// # Errors
    /// - [`Error::ProcUnavailable`]: `/proc` is not mounted, or is not
    ///   procfs.
    /// - [`Error::Unsupported`] on a target without the raw backend.
    ///
    /// # References
    /// - [`open(2)`](https://man7.org/linux/man-pages/man2/open.2.html)
    /// - [`statfs(2)`](https://man7.org/linux/man-pages/man2/statfs.2.html)
    pub fn open() -> Result<StatusReader, Error> {
        let pid = pid();
        Ok(StatusReader {
            fd: open_status()?,
            pid,
        })
    }

    /// Reads and parses the status of the calling process: one `pread`
    /// (more over 2 KiB), and once per process a `getpid`; a child of
    /// `fork(2)` reopens the file first.
    ///
    /// # Errors
    /// - [`Error::Malformed`]: see [`Status::parse`].
    /// - [`Error::ProcUnavailable`]: reopening after a fork found no procfs
    ///   at `/proc`.
    ///
    /// # References
    /// - [`pread(2)`](https://man7.org/linux/man-pages/man2/pread.2.html)
    /// - [`proc_pid_status(5)`](https://man7.org/linux/man-pages/man5/proc_pid_status.5.html)
    pub fn read(&mut self) -> Result<Status, Error> {
        let pid = pid();
        if pid != self.pid {
            self.fd = open_status()?;
            self.pid = pid;
        }
        read_status(&self.fd, true)
    }

    /// The process ID this reader's descriptor describes: the one that
    /// opened it, or that last called [`read`](StatusReader::read).
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }
}
