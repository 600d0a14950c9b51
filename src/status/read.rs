//! Reading `/proc/self/status` into a stack buffer: [`status`] opens,
//! reads and closes it; [`StatusReader`] keeps it open for a poller.

use core::mem::MaybeUninit;

use super::{Status, StatusParser};
use crate::procfs;
use crate::sys::{self, Fd, OpenMode};
use crate::Error;

const PATH: &core::ffi::CStr = c"/proc/self/status";

/// The stack buffer: one read holds the usual 1.4 KiB text.
const READ_CHUNK: usize = 2048;

/// Set once `/proc` was seen to be procfs in this process (clear in a
/// forked child, which may have another `/proc`).
static PROC_CHECKED: sys::ForkLocal = sys::ForkLocal::new();

/// Opens `/proc/self/status`, checked to be procfs; remembered for [`status`].
fn open_status() -> Result<Fd, Error> {
    let fd = procfs::open_proc(PATH, OpenMode::Read)?;
    PROC_CHECKED.set(1);
    Ok(fd)
}

/// Reads an open status file from its start into the parser, to the end
/// or the six fields (a short read ending in a newline is the last).
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
/// stack buffer (more over 2 KiB), one `close`, no allocation. The parse
/// stops after the six fields of [the kernel's own
/// text](mod@crate::status#the-kernels-own-text).
///
/// **Is `/proc` procfs?** The first call in a process checks with
/// `fstatfs(2)` and remembers a pass in a page marked `MADV_WIPEONFORK`
/// (`madvise(2)`), so a forked child checks again (every call, where the
/// advice is ignored). A later mount over `/proc` is not caught;
/// [`StatusReader::open`] checks every time.
///
/// # Errors
/// [`Error::ProcUnavailable`]: `/proc` is not mounted, or is not procfs;
/// [`Error::Malformed`] (see [`Status::parse`]); [`Error::Unsupported`]
/// without the raw backend.
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
/// As [`locked_bytes`]: without procfs at `/proc`,
/// [`Error::ProcUnavailable`], never a guessed `false`.
///
/// # References
/// - [`proc_pid_status(5)`](https://man7.org/linux/man-pages/man5/proc_pid_status.5.html)
pub fn is_locked() -> Result<bool, Error> {
    locked_bytes().map(|n| n > 0)
}

/// A `/proc/self/status` kept open, for a daemon that polls it:
/// [`StatusReader::read`] re-reads it with `pread(2)` at offset 0 (the
/// kernel formats it afresh), without the `openat` and `close` of
/// [`status`].
///
/// **Fork.** The descriptor names the process that opened it, so a forked
/// child would read its parent's `VmLck`: [`read`] compares the caller's
/// process ID (`getpid(2)`, once per process, kept in a page marked
/// `MADV_WIPEONFORK`) with the one recorded at open, and reopens the file
/// in another process. The descriptor is close-on-exec.
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
    /// Opens `/proc/self/status`, checking every time that it is procfs.
    ///
    /// # Errors
    /// [`Error::ProcUnavailable`]: `/proc` is not mounted, or is not
    /// procfs; [`Error::Unsupported`] without the raw backend.
    ///
    /// # References
    /// - [`open(2)`](https://man7.org/linux/man-pages/man2/open.2.html)
    /// - [`statfs(2)`](https://man7.org/linux/man-pages/man2/statfs.2.html)
    pub fn open() -> Result<StatusReader, Error> {
        let pid = sys::pid();
        Ok(StatusReader {
            fd: open_status()?,
            pid,
        })
    }

    /// Reads and parses the status of the calling process: one `pread`
    /// (more over 2 KiB); a child of `fork(2)` reopens the file first.
    ///
    /// # Errors
    /// [`Error::Malformed`] (see [`Status::parse`]); [`Error::ProcUnavailable`]
    /// when reopening after a fork found no procfs at `/proc`.
    ///
    /// # References
    /// - [`pread(2)`](https://man7.org/linux/man-pages/man2/pread.2.html)
    /// - [`proc_pid_status(5)`](https://man7.org/linux/man-pages/man5/proc_pid_status.5.html)
    pub fn read(&mut self) -> Result<Status, Error> {
        let pid = sys::pid();
        if pid != self.pid {
            self.fd = open_status()?;
            self.pid = pid;
        }
        read_status(&self.fd, true)
    }

    /// The process whose status the descriptor reads.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }
}
