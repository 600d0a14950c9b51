//! Which threads of this process carry the per-thread settings of the
//! recipe (IO_FLUSHER, a real-time policy), read from
//! `/proc/self/task/*/stat` without allocating.

use crate::procfs;
use crate::sys::{self, OpenMode};
use crate::Error;

/// `PF_MEMALLOC_NOIO | PF_LOCAL_THROTTLE`: the task flags
/// `PR_SET_IO_FLUSHER` sets (`include/linux/sched.h`).
const IO_FLUSHER_FLAGS: u64 = 0x0008_0000 | 0x0010_0000;

/// What [`audit_threads`] found: how many threads the process has, how
/// many carry IO_FLUSHER and a real-time policy, and the first thread (by
/// thread ID, in `/proc/self/task` order) that lacks each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct ThreadAudit {
    /// Threads seen.
    pub threads: u32,
    /// Threads with IO_FLUSHER (`PF_MEMALLOC_NOIO` and `PF_LOCAL_THROTTLE`).
    pub io_flusher: u32,
    /// Threads under `SCHED_FIFO` or `SCHED_RR`.
    pub realtime: u32,
    /// The first thread without IO_FLUSHER.
    pub first_without_io_flusher: Option<u32>,
    /// The first thread under neither real-time policy.
    pub first_not_realtime: Option<u32>,
}

impl ThreadAudit {
    /// Whether every thread has IO_FLUSHER and a real-time policy.
    #[must_use]
    pub const fn all_hardened(&self) -> bool {
        self.threads > 0 && self.io_flusher == self.threads && self.realtime == self.threads
    }
}

/// Reads the flags and the scheduling policy of every thread of this
/// process from `/proc/self/task/<tid>/stat` (fields 9 and 41), with
/// `getdents64(2)` and stack buffers: no allocation.
///
/// IO_FLUSHER and the policy belong to a thread. [`harden_swap_daemon`]
/// sets them on the thread that calls it, and threads spawned afterwards
/// inherit them; a thread that existed before, or one a library started,
/// does not. A daemon can call this after start-up (and from a health
/// check) to see that every thread that may serve I/O is covered. A
/// thread that exits while it is read is left out.
///
/// [`harden_swap_daemon`]: super::harden_swap_daemon
///
/// ```no_run
/// let audit = mlock::daemon::audit_threads()?;
/// if let Some(tid) = audit.first_without_io_flusher {
///     eprintln!("thread {tid} of {} has no IO_FLUSHER", audit.threads);
/// }
/// # Ok::<(), mlock::Error>(())
/// ```
///
/// # Errors
/// [`Error::ProcUnavailable`] without procfs at `/proc`;
/// [`Error::Malformed`] for a `stat` line not as the kernel writes it;
/// [`Error::Unsupported`] without the raw backend.
///
/// # References
/// - [`proc_pid_stat(5)`](https://man7.org/linux/man-pages/man5/proc_pid_stat.5.html)
/// - [`getdents64(2)`](https://man7.org/linux/man-pages/man2/getdents64.2.html)
/// - [`PR_SET_IO_FLUSHER(2const)`](https://man7.org/linux/man-pages/man2/PR_SET_IO_FLUSHER.2const.html)
pub fn audit_threads() -> Result<ThreadAudit, Error> {
    let dir = procfs::open_proc(c"/proc/self/task", OpenMode::Read)?;
    let mut audit = ThreadAudit::default();
    let mut entries = [0u8; 1024];
    loop {
        let n = sys::getdents64(&dir, &mut entries)?;
        if n == 0 {
            return Ok(audit);
        }
        let mut at = 0;
        // struct linux_dirent64: d_ino (8), d_off (8), d_reclen (2),
        // d_type (1), then the name, NUL-terminated.
        while let Some(record) = entries.get(at..n) {
            let Some(&[lo, hi]) = record.get(16..18) else {
                break;
            };
            let len = usize::from(u16::from_ne_bytes([lo, hi]));
            let name = record.get(19..len.max(19)).unwrap_or_default();
            let name = name.split(|&b| b == 0).next().unwrap_or_default();
            if let Some(tid) = procfs::parse_u64(name) {
                audit_one(&mut audit, tid as u32)?;
            }
            if len == 0 {
                break;
            }
            at += len;
        }
    }
}

/// Adds thread `tid`'s flags and policy to `audit`.
fn audit_one(audit: &mut ThreadAudit, tid: u32) -> Result<(), Error> {
    // "/proc/self/task/<tid>/stat", NUL-terminated: procfs takes no
    // leading zeros.
    let mut path = [0u8; 40];
    let mut len = 0;
    let mut push = |bytes: &[u8]| {
        for &b in bytes {
            if let Some(slot) = path.get_mut(len) {
                *slot = b;
                len += 1;
            }
        }
    };
    push(b"/proc/self/task/");
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    let mut rest = tid;
    while at == digits.len() || rest > 0 {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (rest % 10) as u8;
        }
        rest /= 10;
    }
    push(digits.get(at..).unwrap_or_default());
    push(b"/stat\0");
    let path = core::ffi::CStr::from_bytes_until_nul(&path).map_err(|_| Error::Malformed)?;
    let Ok(fd) = sys::open(path, OpenMode::Read) else {
        return Ok(()); // The thread exited.
    };
    let mut buf = [0u8; 1024];
    let line = procfs::read_whole(&fd, &mut buf)?;
    // The fields after the command, which is in parentheses and may hold
    // anything: field 3 (state) is the first.
    let close = line
        .iter()
        .rposition(|&b| b == b')')
        .ok_or(Error::Malformed)?;
    let mut fields = line
        .get(close + 2..)
        .unwrap_or_default()
        .split(|&b| b == b' ');
    let flags = fields.nth(9 - 3).and_then(procfs::parse_u64);
    let policy = fields.nth(41 - 9 - 1).and_then(procfs::parse_u64);
    let (Some(flags), Some(policy)) = (flags, policy) else {
        return Err(Error::Malformed);
    };
    audit.threads += 1;
    if flags & IO_FLUSHER_FLAGS == IO_FLUSHER_FLAGS {
        audit.io_flusher += 1;
    } else {
        audit.first_without_io_flusher.get_or_insert(tid);
    }
    // SCHED_FIFO is 1 and SCHED_RR is 2 on every architecture.
    if policy == 1 || policy == 2 {
        audit.realtime += 1;
    } else {
        audit.first_not_realtime.get_or_insert(tid);
    }
    Ok(())
}
