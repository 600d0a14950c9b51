//! The swap-daemon kit: what a process that serves swap or block I/O needs
//! beyond `mlockall(2)`, and [`harden_swap_daemon`], which applies it in the
//! right order.
//!
//! `mlockall(MCL_CURRENT | MCL_FUTURE)` keeps the daemon's pages from being
//! swapped out, but the daemon still allocates: a new stack page, a kernel
//! buffer for its next request. Under memory pressure such an allocation
//! enters reclaim, reclaim writes dirty pages out, and the write can be
//! queued to the very device the daemon serves: the daemon then waits for
//! itself. Pre-faulting moves the daemon's own allocations out of the
//! pressure window; `PR_SET_IO_FLUSHER` makes the kernel's allocations on
//! its behalf skip I/O-issuing reclaim; a low `oom_score_adj` keeps the OOM
//! killer off it.

use core::fmt;

use crate::sys::{self, Advice, PrctlInt};
use crate::{lock_with, raise_memlock_limit, set_memlock_limit, status, Config, Error, Flags};
use crate::{oom, Limit, Outcome};

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
/// - [`Error::PermissionDenied`] (`EPERM`): the thread lacks
///   `CAP_SYS_RESOURCE`.
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
    match sys::prctl_int(option, arg) {
        // The arguments passed here are always valid, so EINVAL means a
        // kernel before 5.6, which does not know the option.
        Err(Error::InvalidArgument) => Err(Error::Unsupported),
        other => other,
    }
}

/// How many bytes each frame of the stack walk owns. Smaller than the
/// smallest page (4 KiB) so that a frame cannot span a guard page.
const STACK_CHUNK: usize = 2048;
/// The distance between two touches on the stack: well under a page, so
/// that the walk cannot jump over a guard page.
const STACK_STEP: usize = 512;
/// The distance between two touches of a region: the smallest page size of
/// the supported architectures.
const PAGE_STEP: usize = 4096;

/// Pre-faults `bytes` of the calling thread's stack, below the caller's
/// frame: the classic real-time "stack prefault".
///
/// Call it after [`lock_all`](crate::lock_all)`(CURRENT | FUTURE)`. The main
/// thread's stack grows on demand, one page fault at a time, and under
/// `MCL_FUTURE` each new page is allocated and locked at that fault, which
/// can come exactly when memory is short. Touching the stack now makes
/// those pages resident and locked before pressure arrives. (Thread stacks
/// mapped under `MCL_FUTURE`, and everything `MCL_CURRENT` locks without
/// `ONFAULT`, are populated by the kernel already; with `ONFAULT` nothing
/// is, and this matters for every thread.)
///
/// The stack is walked from the caller's frame downwards in frames of 2 KiB
/// with a touch every 512 bytes (volatile, so the compiler cannot drop
/// them), so the walk never skips a guard page. Keep `bytes` well under
/// the thread's stack size: 8 MiB for a main thread by default
/// (`RLIMIT_STACK`), 2 MiB for a `std::thread`. Asking for more than the
/// stack holds overflows it, which ends the process with `SIGSEGV` (never
/// corrupts memory). `bytes` is rounded up to a multiple of 2 KiB; 0 does
/// nothing.
///
/// # References
/// - [`mlockall(2)`](https://man7.org/linux/man-pages/man2/mlockall.2.html)
///   (notes on real-time processes and stack prefaulting)
#[inline(never)]
pub fn prefault_stack(bytes: usize) {
    if bytes > 0 {
        touch_stack(bytes.div_ceil(STACK_CHUNK));
    }
}

/// One frame of the stack walk: touches its own chunk, then recurses for
/// the rest. Using `chunk` after the call keeps it live, so the frames
/// stack up instead of being reused by a tail call.
#[inline(never)]
fn touch_stack(chunks: usize) {
    let mut chunk = [0u8; STACK_CHUNK];
    sys::touch(&mut chunk, STACK_STEP);
    if chunks > 1 {
        touch_stack(chunks - 1);
    }
    core::hint::black_box(&mut chunk);
}

/// How [`prefault`] faulted a region in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prefault {
    /// One `madvise(MADV_POPULATE_WRITE)` call (Linux 5.14+).
    Populated,
    /// A touch loop, because the kernel does not know
    /// `MADV_POPULATE_WRITE` (or, on a kernel with pages larger than 4 KiB,
    /// the region does not start on a page boundary).
    Touched,
}

/// Faults in every page of `region`, writable, without changing a byte:
/// `madvise(MADV_POPULATE_WRITE)` on Linux 5.14+, a touch loop elsewhere.
///
/// Use it for memory that must be resident before pressure arrives and that
/// [`lock_all`](crate::lock_all) did not populate: a buffer mapped after
/// `lock_all(CURRENT | ONFAULT)`, or any buffer of an unlocked program.
/// Under `MCL_FUTURE` or an `mlock` of the region, the populated pages are
/// locked too.
///
/// The kernel works in pages: the first and last page are faulted in whole.
/// The `&mut` borrow is what makes this safe: the touch loop writes back
/// each byte it read, which no other reference may observe meanwhile.
///
/// ```
/// let mut table = vec![0u8; 1 << 20];
/// mlock::prefault(&mut table)?;
/// # Ok::<(), mlock::Error>(())
/// ```
///
/// # Errors
/// - [`Error::ResourceLimit`] (`ENOMEM`): the kernel could not allocate
///   the pages.
/// - [`Error::Os`]`(EFAULT)` or `(EHWPOISON)`: a page could not be
///   populated (a file-backed page beyond the end of its file, a poisoned
///   page).
/// - [`Error::Interrupted`]: a signal interrupted the population.
///
/// Without the raw backend, the touch loop runs and the answer is
/// [`Prefault::Touched`]. QEMU user mode (7.2) accepts the advice without
/// passing it on, so there the answer is [`Prefault::Populated`] and the
/// pages arrive at their first touch as usual.
///
/// # References
/// - [`madvise(2)`](https://man7.org/linux/man-pages/man2/madvise.2.html)
#[doc(alias = "MADV_POPULATE_WRITE")]
pub fn prefault(region: &mut [u8]) -> Result<Prefault, Error> {
    if region.is_empty() {
        return Ok(Prefault::Populated);
    }
    // madvise wants a page-aligned start. Rounding down to 4 KiB stays in
    // the page that holds the first byte on every page size, so the call
    // never reaches memory outside the region's pages; on a kernel with
    // larger pages a misaligned start answers EINVAL, and the loop below
    // does the work.
    let start = region.as_ptr() as usize;
    let aligned = start & !(PAGE_STEP - 1);
    let len = region.len() + (start - aligned);
    match sys::madvise(aligned as *const u8, len, Advice::PopulateWrite) {
        Ok(()) => Ok(Prefault::Populated),
        Err(Error::InvalidArgument) | Err(Error::Unsupported) => {
            sys::touch(region, PAGE_STEP);
            Ok(Prefault::Touched)
        }
        Err(e) => Err(e),
    }
}

/// Faults in every page of `region` by reading one byte per 4 KiB and
/// writing it back (volatile, so the compiler keeps every access), without
/// changing a byte. [`prefault`] does this where `MADV_POPULATE_WRITE` is
/// missing; call it directly to get the same behaviour on every kernel.
pub fn touch_pages(region: &mut [u8]) {
    sys::touch(region, PAGE_STEP);
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
/// completes, and memory can be freed again. The `dt007` scenario of
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
/// - [`Error::PermissionDenied`] (`EPERM`): the thread lacks
///   `CAP_SYS_NICE` and `RLIMIT_RTPRIO` is below `priority`.
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
    sys::sched_set_fifo(i32::from(priority))
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

/// 10: the real-time priority the README's recipe gives a swap daemon
/// ([`Hardening::realtime`]). Any of 1 to 99 reaches the reserve; a low
/// one leaves room above it for threads that must preempt the daemon.
pub const DEFAULT_REALTIME_PRIORITY: u8 = 10;

/// What to do with one step of [`harden_swap_daemon`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Requirement {
    /// Leave the step out.
    Skip,
    /// Try it; on failure record the error in the [`Report`] and go on.
    BestEffort,
    /// Try it; on failure stop with a [`HardenError`].
    Required,
}

/// 256 KiB: the default of [`Hardening::prefault_stack`].
pub const DEFAULT_STACK_PREFAULT: usize = 256 * 1024;

/// The recipe [`harden_swap_daemon`] applies: which steps, and which of
/// them must succeed.
///
/// Const-constructible, like [`Config`]:
///
/// ```
/// use mlock::{Config, Hardening, Requirement};
///
/// static RECIPE: Hardening = Hardening::SWAP_DAEMON
///     .lock(Config::SWAP_DAEMON.required(true))
///     .io_flusher(Requirement::Required)
///     .oom_score_adj(-1000, Requirement::BestEffort);
/// assert!(RECIPE.lock_config().is_required());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hardening {
    lock: Config,
    raise_memlock_limit: bool,
    stack_bytes: usize,
    io_flusher: Requirement,
    oom: Requirement,
    oom_score_adj: i32,
    realtime: Requirement,
    realtime_priority: u8,
}

impl Hardening {
    /// Raise `RLIMIT_MEMLOCK`; lock with [`Config::SWAP_DAEMON`]
    /// (best-effort); pre-fault [`DEFAULT_STACK_PREFAULT`] bytes of stack;
    /// set IO_FLUSHER, best-effort; leave `oom_score_adj` alone.
    pub const SWAP_DAEMON: Hardening = Hardening {
        lock: Config::SWAP_DAEMON,
        raise_memlock_limit: true,
        stack_bytes: DEFAULT_STACK_PREFAULT,
        io_flusher: Requirement::BestEffort,
        oom: Requirement::Skip,
        oom_score_adj: 0,
        realtime: Requirement::Skip,
        realtime_priority: DEFAULT_REALTIME_PRIORITY,
    };

    /// [`Hardening::SWAP_DAEMON`] with `lock` as the locking policy.
    #[must_use]
    pub const fn new(lock: Config) -> Hardening {
        Hardening::SWAP_DAEMON.lock(lock)
    }

    /// Step 2: how to lock (flags, and whether a failure stops the recipe).
    #[must_use]
    pub const fn lock(self, lock: Config) -> Hardening {
        Hardening { lock, ..self }
    }

    /// Step 1: with `true` (the default), raise `RLIMIT_MEMLOCK` before
    /// locking: to unlimited with `CAP_SYS_RESOURCE`, else the soft limit
    /// to the hard one. Always best-effort.
    #[must_use]
    pub const fn raise_memlock_limit(self, raise: bool) -> Hardening {
        Hardening {
            raise_memlock_limit: raise,
            ..self
        }
    }

    /// Step 3: how many bytes of stack to pre-fault with
    /// [`prefault_stack`]; 0 skips the step. Keep it well under the calling
    /// thread's stack size.
    #[must_use]
    pub const fn prefault_stack(self, bytes: usize) -> Hardening {
        Hardening {
            stack_bytes: bytes,
            ..self
        }
    }

    /// Step 4: whether to set IO_FLUSHER ([`set_io_flusher`]).
    #[must_use]
    pub const fn io_flusher(self, requirement: Requirement) -> Hardening {
        Hardening {
            io_flusher: requirement,
            ..self
        }
    }

    /// Step 5: set `oom_score_adj` to `value` ([`set_oom_score_adj`](crate::set_oom_score_adj)),
    /// -1000 to 1000. [`harden_swap_daemon`] rejects a value out of range
    /// before it does anything.
    #[must_use]
    pub const fn oom_score_adj(self, value: i32, requirement: Requirement) -> Hardening {
        Hardening {
            oom: requirement,
            oom_score_adj: value,
            ..self
        }
    }

    /// Step 6: run the calling thread, and the threads it spawns
    /// afterwards, under `SCHED_FIFO` at `priority` ([`set_realtime`]).
    /// Left out by default; the README's recipe turns it on, because the
    /// `dt007` scenario stalls without it (see [`set_realtime`]).
    /// [`harden_swap_daemon`] rejects a priority outside 1..=99 before it
    /// does anything.
    #[must_use]
    pub const fn realtime(self, priority: u8, requirement: Requirement) -> Hardening {
        Hardening {
            realtime: requirement,
            realtime_priority: priority,
            ..self
        }
    }

    /// The real-time priority and whether step 6 runs.
    #[must_use]
    pub const fn realtime_setting(&self) -> (u8, Requirement) {
        (self.realtime_priority, self.realtime)
    }

    /// The locking policy.
    #[must_use]
    pub const fn lock_config(&self) -> Config {
        self.lock
    }

    /// Whether step 1 runs.
    #[must_use]
    pub const fn raises_memlock_limit(&self) -> bool {
        self.raise_memlock_limit
    }

    /// The bytes of stack step 3 pre-faults.
    #[must_use]
    pub const fn stack_bytes(&self) -> usize {
        self.stack_bytes
    }

    /// Step 4's requirement.
    #[must_use]
    pub const fn io_flusher_requirement(&self) -> Requirement {
        self.io_flusher
    }

    /// Step 5's value and requirement.
    #[must_use]
    pub const fn oom_score_adj_setting(&self) -> (i32, Requirement) {
        (self.oom_score_adj, self.oom)
    }
}

impl Default for Hardening {
    /// [`Hardening::SWAP_DAEMON`].
    fn default() -> Hardening {
        Hardening::SWAP_DAEMON
    }
}

/// The steps of [`harden_swap_daemon`], in the order it runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// 1. Raise `RLIMIT_MEMLOCK`.
    MemlockLimit,
    /// 2. `mlockall(2)`.
    Lock,
    /// 3. Pre-fault the stack.
    Stack,
    /// 4. `PR_SET_IO_FLUSHER`.
    IoFlusher,
    /// 5. `oom_score_adj`.
    OomScoreAdj,
    /// 6. `SCHED_FIFO`.
    Realtime,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 6] = [
        Stage::MemlockLimit,
        Stage::Lock,
        Stage::Stack,
        Stage::IoFlusher,
        Stage::OomScoreAdj,
        Stage::Realtime,
    ];

    /// A short name, for logs.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Stage::MemlockLimit => "raise RLIMIT_MEMLOCK",
            Stage::Lock => "mlockall",
            Stage::Stack => "pre-fault the stack",
            Stage::IoFlusher => "PR_SET_IO_FLUSHER",
            Stage::OomScoreAdj => "oom_score_adj",
            Stage::Realtime => "SCHED_FIFO",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one step of [`harden_swap_daemon`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step<T> {
    /// Not run: an earlier required step failed.
    NotReached,
    /// Not run: the [`Hardening`] leaves it out.
    Skipped,
    /// Done; the value says what took effect.
    Done(T),
    /// Failed, and the step was best-effort (a required step that fails
    /// ends in a [`HardenError`] instead).
    Failed(Error),
}

impl<T> Step<T> {
    /// Whether the step ran and succeeded.
    #[must_use]
    pub const fn is_done(&self) -> bool {
        matches!(self, Step::Done(_))
    }

    /// The error of a failed step.
    #[must_use]
    pub const fn error(&self) -> Option<Error> {
        match self {
            Step::Failed(e) => Some(*e),
            _ => None,
        }
    }

    /// A payload-free copy: which of the four cases this is.
    fn kind(&self) -> Step<()> {
        match self {
            Step::NotReached => Step::NotReached,
            Step::Skipped => Step::Skipped,
            Step::Done(_) => Step::Done(()),
            Step::Failed(e) => Step::Failed(*e),
        }
    }
}

/// What [`harden_swap_daemon`] did, step by step. A fixed-size `Copy`
/// value: no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Report {
    /// Step 1: the `RLIMIT_MEMLOCK` in force afterwards.
    pub memlock_limit: Step<Limit>,
    /// Step 2: the flags that took effect.
    pub lock: Step<Flags>,
    /// Step 3: the bytes of stack pre-faulted.
    pub stack: Step<usize>,
    /// Step 4: IO_FLUSHER is set on the calling thread.
    pub io_flusher: Step<()>,
    /// Step 5: the `oom_score_adj` now in force.
    pub oom_score_adj: Step<i32>,
    /// Step 6: the real-time priority the calling thread now runs at.
    pub realtime: Step<u8>,
    /// `VmLck` after the last step, in bytes, when memory was locked and
    /// `/proc` could be read.
    pub locked_bytes: Option<u64>,
}

impl Report {
    const fn new() -> Report {
        Report {
            memlock_limit: Step::NotReached,
            lock: Step::NotReached,
            stack: Step::NotReached,
            io_flusher: Step::NotReached,
            oom_score_adj: Step::NotReached,
            realtime: Step::NotReached,
            locked_bytes: None,
        }
    }

    /// What `stage` did, without its payload.
    #[must_use]
    pub fn step(&self, stage: Stage) -> Step<()> {
        match stage {
            Stage::MemlockLimit => self.memlock_limit.kind(),
            Stage::Lock => self.lock.kind(),
            Stage::Stack => self.stack.kind(),
            Stage::IoFlusher => self.io_flusher.kind(),
            Stage::OomScoreAdj => self.oom_score_adj.kind(),
            Stage::Realtime => self.realtime.kind(),
        }
    }

    /// The best-effort steps that failed, in order.
    pub fn failures(&self) -> impl Iterator<Item = (Stage, Error)> + '_ {
        Stage::ALL
            .into_iter()
            .filter_map(|stage| self.step(stage).error().map(|e| (stage, e)))
    }

    /// Whether every step that was asked for ran and succeeded.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        Stage::ALL
            .into_iter()
            .all(|s| matches!(self.step(s), Step::Done(()) | Step::Skipped))
    }
}

impl fmt::Display for Report {
    /// One line per step: `mlockall: done`, `PR_SET_IO_FLUSHER: failed:
    /// <error and fix>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, stage) in Stage::ALL.into_iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{stage}: ")?;
            match self.step(stage) {
                Step::NotReached => f.write_str("not reached")?,
                Step::Skipped => f.write_str("skipped")?,
                Step::Done(()) => f.write_str("done")?,
                Step::Failed(e) => write!(f, "failed: {e}")?,
            }
        }
        Ok(())
    }
}

/// A required step of [`harden_swap_daemon`] failed (or the
/// [`Hardening`] itself is invalid): which step, why, and what the earlier
/// steps did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HardenError {
    /// The step that failed.
    pub stage: Stage,
    /// Why.
    pub error: Error,
    /// The steps before it, as they ran; this step and the later ones are
    /// [`Step::NotReached`].
    pub report: Report,
}

impl fmt::Display for HardenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.stage, self.error)
    }
}

impl core::error::Error for HardenError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<HardenError> for Error {
    fn from(e: HardenError) -> Error {
        e.error
    }
}

/// Applies the swap-daemon recipe in order, and reports each step:
///
/// 1. raise `RLIMIT_MEMLOCK` (to unlimited with `CAP_SYS_RESOURCE`, else
///    soft to hard), so that step 2 and every later mapping fit;
/// 2. [`lock_with`] the [`Hardening`]'s [`Config`]
///    (`CURRENT | FUTURE` by default);
/// 3. [`prefault_stack`], so that the stack pages exist, locked, before
///    pressure arrives;
/// 4. [`set_io_flusher`] (Linux 5.6+, `CAP_SYS_RESOURCE`), on the calling
///    thread and every thread it spawns afterwards;
/// 5. optionally, [`set_oom_score_adj`](crate::set_oom_score_adj) (lowering
///    it needs `CAP_SYS_RESOURCE`);
/// 6. optionally, [`set_realtime`] (`SCHED_FIFO`; `CAP_SYS_NICE` or
///    `RLIMIT_RTPRIO`), on the calling thread and every thread it spawns
///    afterwards.
///
/// Call it early on the main thread, before spawning the threads that
/// serve I/O. It allocates nothing.
///
/// ```no_run
/// use mlock::{harden_swap_daemon, Config, Hardening, Requirement};
///
/// let recipe = Hardening::new(Config::SWAP_DAEMON.required(true))
///     .oom_score_adj(-1000, Requirement::BestEffort);
/// let report = harden_swap_daemon(&recipe)?;
/// for (stage, error) in report.failures() {
///     eprintln!("warning: {stage}: {error}");
/// }
/// # Ok::<(), mlock::HardenError>(())
/// ```
///
/// # Errors
/// A [`HardenError`] naming the step, when a required step fails: the lock
/// (with `Config::required(true)`, the error [`lock_with`] returns),
/// IO_FLUSHER or `oom_score_adj` with [`Requirement::Required`]. Nothing
/// after that step runs. Best-effort failures are in the [`Report`].
///
/// An invalid [`Hardening`] (flags that [`Flags::is_valid`] rejects, an
/// `oom_score_adj` outside -1000..=1000) is a [`HardenError`] with
/// [`Error::InvalidArgument`] before any step runs, whatever the policy.
///
/// # References
/// - [`mlockall(2)`](https://man7.org/linux/man-pages/man2/mlockall.2.html)
/// - [`PR_SET_IO_FLUSHER(2const)`](https://man7.org/linux/man-pages/man2/PR_SET_IO_FLUSHER.2const.html)
/// - [`proc_pid_oom_score_adj(5)`](https://man7.org/linux/man-pages/man5/proc_pid_oom_score_adj.5.html)
/// - [`getrlimit(2)`](https://man7.org/linux/man-pages/man2/getrlimit.2.html)
///
/// The guide below is `docs/swap-daemon.md` of the repository.
///
#[doc = include_str!("../docs/swap-daemon.md")]
pub fn harden_swap_daemon(recipe: &Hardening) -> Result<Report, HardenError> {
    let mut report = Report::new();
    let fail = |stage, error, report| {
        Err(HardenError {
            stage,
            error,
            report,
        })
    };

    // A bad recipe is a bug in the caller: refuse it before changing
    // anything, whatever the policy.
    if !recipe.lock.flags().is_valid() {
        return fail(Stage::Lock, Error::InvalidArgument, report);
    }
    if recipe.oom != Requirement::Skip
        && !(oom::OOM_SCORE_ADJ_MIN..=oom::OOM_SCORE_ADJ_MAX).contains(&recipe.oom_score_adj)
    {
        return fail(Stage::OomScoreAdj, Error::InvalidArgument, report);
    }
    if recipe.realtime != Requirement::Skip && !(1..=99).contains(&recipe.realtime_priority) {
        return fail(Stage::Realtime, Error::InvalidArgument, report);
    }

    // 1. Room to lock in. With CAP_IPC_LOCK the limit does not bind
    // mlockall, but it still does for a child that loses the capability.
    report.memlock_limit = if recipe.raise_memlock_limit {
        let unlimited = Limit {
            soft: None,
            hard: None,
        };
        match set_memlock_limit(unlimited) {
            Ok(_) => Step::Done(unlimited),
            // Raising the hard limit needs CAP_SYS_RESOURCE; soft up to
            // hard needs nothing.
            Err(Error::PermissionDenied) => match raise_memlock_limit() {
                Ok(limit) => Step::Done(limit),
                Err(e) => Step::Failed(e),
            },
            Err(e) => Step::Failed(e),
        }
    } else {
        Step::Skipped
    };

    // 2. Lock.
    report.lock = match lock_with(&recipe.lock) {
        Ok(Outcome::Locked { flags, .. }) => Step::Done(flags),
        Ok(Outcome::Failed(e)) => Step::Failed(e),
        Ok(Outcome::Unsupported) => Step::Failed(Error::Unsupported),
        Err(e) => return fail(Stage::Lock, e, report),
    };

    // 3. Stack pages, now rather than at the first deep call under
    // pressure. Useful even unlocked: they are at least resident now.
    report.stack = if recipe.stack_bytes > 0 {
        prefault_stack(recipe.stack_bytes);
        Step::Done(recipe.stack_bytes)
    } else {
        Step::Skipped
    };

    // 4. No reclaim recursion into I/O from this thread's allocations.
    report.io_flusher = match recipe.io_flusher {
        Requirement::Skip => Step::Skipped,
        requirement => match set_io_flusher() {
            Ok(()) => Step::Done(()),
            Err(e) if requirement == Requirement::Required => {
                return fail(Stage::IoFlusher, e, report)
            }
            Err(e) => Step::Failed(e),
        },
    };

    // 5. Keep the OOM killer away.
    report.oom_score_adj = match recipe.oom {
        Requirement::Skip => Step::Skipped,
        requirement => match oom::set_oom_score_adj(recipe.oom_score_adj) {
            Ok(()) => Step::Done(recipe.oom_score_adj),
            Err(e) if requirement == Requirement::Required => {
                return fail(Stage::OomScoreAdj, e, report)
            }
            Err(e) => Step::Failed(e),
        },
    };

    // 6. A share of the memory reserve, and the CPU, when memory runs out.
    report.realtime = match recipe.realtime {
        Requirement::Skip => Step::Skipped,
        requirement => match set_realtime(recipe.realtime_priority) {
            Ok(()) => Step::Done(recipe.realtime_priority),
            Err(e) if requirement == Requirement::Required => {
                return fail(Stage::Realtime, e, report)
            }
            Err(e) => Step::Failed(e),
        },
    };

    if report.lock.is_done() {
        report.locked_bytes = status::status().ok().and_then(|s| s.locked_bytes());
    }
    Ok(report)
}
