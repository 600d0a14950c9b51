//! Settings of the calling thread that let it serve I/O while memory runs
//! out: `PR_SET_IO_FLUSHER` and `SCHED_FIFO`.

use crate::sys::{self, PrctlInt};
use crate::Error;

/// `prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0)`: marks the calling thread as part
/// of the I/O path (Linux 5.6+).
///
/// A process that serves block or file-system I/O (a ublk server, a
/// FUSE daemon, a user-space swap backend) allocates memory while it
/// handles a request. With the flag set, the kernel allocates for it as for
/// its own I/O paths: reclaim does not start new I/O (`PF_MEMALLOC_NOIO`),
/// so it cannot recurse into the device the thread serves, and the thread
/// is throttled only on its own device's congestion (`PF_LOCAL_THROTTLE`).
///
/// The flag belongs to the calling thread, and threads and processes
/// created after the call inherit it (also across `execve(2)`): set it on
/// the main thread before spawning the I/O workers. This function always
/// passes 1; passing 0 would clear the flag (see [`clear_io_flusher`]).
///
/// # Errors
/// - [`Error::NeedsCapSysResource`]
///   (`EPERM`): the thread lacks `CAP_SYS_RESOURCE`.
/// - [`Error::Unsupported`]: the kernel is older than 5.6 (it answers
///   `EINVAL` to the unknown option), or the target has no backend.
///
/// # References
/// - [`PR_SET_IO_FLUSHER(2const)`](https://man7.org/linux/man-pages/man2/PR_SET_IO_FLUSHER.2const.html)
/// - [`prctl(2)`](https://man7.org/linux/man-pages/man2/prctl.2.html)
#[doc(alias = "PR_SET_IO_FLUSHER")]
#[doc(alias = "prctl")]
pub fn set_io_flusher() -> Result<(), Error> {
    io_flusher_prctl(PrctlInt::SetIoFlusher, 1).map(drop)
}

/// `prctl(PR_SET_IO_FLUSHER, 0, 0, 0, 0)`: clears the flag that
/// [`set_io_flusher`] sets, for the calling thread (Linux 5.6+).
///
/// # Errors
/// As [`set_io_flusher`].
///
/// # References
/// - [`PR_SET_IO_FLUSHER(2const)`](https://man7.org/linux/man-pages/man2/PR_SET_IO_FLUSHER.2const.html)
#[doc(alias = "PR_SET_IO_FLUSHER")]
pub fn clear_io_flusher() -> Result<(), Error> {
    io_flusher_prctl(PrctlInt::SetIoFlusher, 0).map(drop)
}

/// `prctl(PR_GET_IO_FLUSHER, 0, 0, 0, 0)`: whether the calling thread has
/// the flag that [`set_io_flusher`] sets (Linux 5.6+).
///
/// # Errors
/// As [`set_io_flusher`]: the kernel asks for `CAP_SYS_RESOURCE` to read
/// the flag, too.
///
/// # References
/// - [`PR_GET_IO_FLUSHER(2const)`](https://man7.org/linux/man-pages/man2/PR_GET_IO_FLUSHER.2const.html)
#[doc(alias = "PR_GET_IO_FLUSHER")]
pub fn is_io_flusher() -> Result<bool, Error> {
    io_flusher_prctl(PrctlInt::GetIoFlusher, 0).map(|v| v != 0)
}

fn io_flusher_prctl(option: PrctlInt, arg: usize) -> Result<usize, Error> {
    // The arguments passed here are always valid, so EINVAL means a kernel
    // before 5.6, which does not know the option.
    sys::prctl_int(option, arg).map_err(|e| {
        e.read_as(Error::InvalidArgument, Error::Unsupported)
            .eperm_means(Error::NeedsCapSysResource)
    })
}

/// `sched_setscheduler(0, SCHED_FIFO, priority)`: real-time FIFO
/// scheduling for the calling thread, at `priority` 1 (lowest) to 99.
///
/// A swap daemon needs it for more than latency. When memory runs out, the
/// daemon's reply to the kernel (a socket buffer, a page for a request)
/// needs a page like everyone else's allocation; with IO_FLUSHER it may
/// not write anything out to get one, and the memory hog competing with it
/// takes every page that reclaim frees. The page allocator gives a
/// real-time task a share of the reserve below the `min` watermark that
/// ordinary tasks cannot touch (`ALLOC_HARDER` in Linux 6.1,
/// `ALLOC_MIN_RESERVE` from 6.3, set for `rt_task()` callers in
/// `gfp_to_alloc_flags`), so the daemon's reply goes out, the write
/// completes, and memory can be freed again. The swap-deadlock scenario of
/// `cargo xtask vm` measured it: a daemon with the lock and IO_FLUSHER but
/// without this step looped in reclaim inside `unix_stream_sendmsg`, and
/// the machine stalled; with it, the same run served the whole hog.
///
/// Threads created after the call inherit the policy (as with
/// IO_FLUSHER, call it on the main thread before spawning the I/O
/// workers). A real-time thread that spins starves normal ones, down to
/// the kernel's real-time throttling (`sched_rt_runtime_us`, 95 % of each
/// second by default): serve requests, do not poll.
///
/// # Errors
/// - [`Error::InvalidArgument`]: `priority` is 0 or above 99.
/// - [`Error::NeedsCapSysNice`] (`EPERM`):
///   the thread lacks `CAP_SYS_NICE` and `RLIMIT_RTPRIO` is below
///   `priority`.
/// - [`Error::Unsupported`]: the target has no backend.
///
/// # References
/// - [`sched_setscheduler(2)`](https://man7.org/linux/man-pages/man2/sched_setscheduler.2.html)
/// - [`sched(7)`](https://man7.org/linux/man-pages/man7/sched.7.html)
#[doc(alias = "sched_setscheduler")]
#[doc(alias = "SCHED_FIFO")]
pub fn set_realtime(priority: u8) -> Result<(), Error> {
    if !(1..=99).contains(&priority) {
        return Err(Error::InvalidArgument);
    }
    sys::sched_set_fifo(i32::from(priority)).map_err(|e| e.eperm_means(Error::NeedsCapSysNice))
}

/// `sched_getscheduler(0)`: whether the calling thread runs under a
/// real-time policy (`SCHED_FIFO` or `SCHED_RR`).
///
/// # Errors
/// [`Error::Unsupported`] when the target has no backend.
///
/// # References
/// - [`sched_getscheduler(2)`](https://man7.org/linux/man-pages/man2/sched_getscheduler.2.html)
#[doc(alias = "sched_getscheduler")]
pub fn is_realtime() -> Result<bool, Error> {
    // SCHED_FIFO is 1 and SCHED_RR is 2 on every architecture.
    sys::sched_policy().map(|p| p == 1 || p == 2)
}

/// The highest real-time priority this thread may set: 99 with
/// `CAP_SYS_NICE`, else the soft `RLIMIT_RTPRIO` (0: none). The recipe
/// caps its priority at it, as multipathd does.
pub(crate) fn realtime_ceiling() -> Result<u8, Error> {
    const CAP_SYS_NICE: u32 = 23; // capabilities(7)
    if sys::capget_effective()? & (1 << CAP_SYS_NICE) != 0 {
        return Ok(99);
    }
    let (soft, _) = sys::prlimit64(sys::Resource::RtPrio, None)?;
    Ok(soft.min(99) as u8)
}

/// The calling thread's real-time priority as the kernel reports it
/// (`sched_getscheduler(2)`, `sched_getparam(2)`): `Some` under
/// `SCHED_FIFO`, else `None`.
pub(crate) fn fifo_priority() -> Result<Option<u8>, Error> {
    const SCHED_FIFO: u32 = 1; // sched(7), on every architecture
    match sys::sched_policy()? {
        SCHED_FIFO => Ok(Some(sys::sched_priority()?.min(99) as u8)),
        _ => Ok(None),
    }
}

/// 10: the real-time priority the README's recipe gives a swap daemon
/// ([`Hardening::with_realtime`](super::Hardening::with_realtime)). Any of 1 to 99 reaches the reserve; a low
/// one leaves room above it for threads that must preempt the daemon.
pub const DEFAULT_REALTIME_PRIORITY: u8 = 10;
