//! The swap-daemon recipe: which steps to take and how much each matters
//! ([`Hardening`]), taking them in order ([`harden_swap_daemon`]), and what
//! each did ([`Report`], [`HardenError`]).

use core::fmt;

use super::thread::{fifo_priority, realtime_ceiling};
use super::{
    is_io_flusher, oom, prefault_stack, set_io_flusher, set_realtime, DEFAULT_REALTIME_PRIORITY,
};
use crate::limits::{memlock_limit, raise_memlock_limit, set_memlock_limit, Limit};
use crate::{lock_with, status, Config, Error, Flags, Outcome, Requirement};

/// 256 KiB: the stack [`Hardening::SWAP_DAEMON`] pre-faults
/// ([`Hardening::with_stack_prefault`]).
pub const DEFAULT_STACK_PREFAULT: usize = 256 * 1024;

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

    /// The stage's place in [`Stage::ALL`].
    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The recipe [`harden_swap_daemon`] applies: which steps, with which
/// values, and for each whether it is [`Requirement::Required`],
/// [`Requirement::BestEffort`], or left out ([`Hardening::without`]).
///
/// Const-constructible, like [`Config`]. The setters are named `with_*`
/// (and [`without`](Hardening::without)); they only describe, and the
/// functions that act are [`harden_swap_daemon`] and the free functions
/// each step calls.
///
/// ```
/// use mlock::daemon::{Hardening, Stage};
/// use mlock::{Config, Requirement};
///
/// static RECIPE: Hardening = Hardening::SWAP_DAEMON
///     .with_lock(Config::SWAP_DAEMON.with_requirement(Requirement::Required))
///     .with_io_flusher(Requirement::Required)
///     .with_oom_score_adj(-1000, Requirement::BestEffort);
/// assert_eq!(RECIPE.requirement(Stage::Lock), Some(Requirement::Required));
/// assert_eq!(RECIPE.requirement(Stage::Realtime), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hardening {
    lock: Config,
    /// Each stage's requirement, by [`Stage::index`]; `None` leaves it out.
    steps: [Option<Requirement>; 6],
    stack_bytes: usize,
    oom_score_adj: i32,
    realtime_priority: u8,
}

impl Hardening {
    /// Raise `RLIMIT_MEMLOCK`; lock with [`Config::SWAP_DAEMON`]; pre-fault
    /// [`DEFAULT_STACK_PREFAULT`] bytes of stack; set IO_FLUSHER; all
    /// best-effort. `oom_score_adj` (-1000 when turned on) and `SCHED_FIFO`
    /// ([`DEFAULT_REALTIME_PRIORITY`] when turned on) are left out.
    pub const SWAP_DAEMON: Hardening = Hardening {
        lock: Config::SWAP_DAEMON,
        steps: [
            Some(Requirement::BestEffort),
            Some(Requirement::BestEffort),
            Some(Requirement::BestEffort),
            Some(Requirement::BestEffort),
            None,
            None,
        ],
        stack_bytes: DEFAULT_STACK_PREFAULT,
        oom_score_adj: oom::OOM_SCORE_ADJ_MIN,
        realtime_priority: DEFAULT_REALTIME_PRIORITY,
    };

    /// [`Hardening::SWAP_DAEMON`] with `lock` as the locking policy.
    #[must_use]
    pub const fn new(lock: Config) -> Hardening {
        Hardening::SWAP_DAEMON.with_lock(lock)
    }

    const fn with_step(mut self, stage: Stage, step: Option<Requirement>) -> Hardening {
        self.steps[stage.index()] = step;
        self
    }

    /// Step 2: how to lock, and, by the [`Config`]'s
    /// [`requirement`](Config::requirement), whether a failure stops the
    /// recipe. Turns the step on if it was left out.
    #[must_use]
    pub const fn with_lock(self, lock: Config) -> Hardening {
        Hardening { lock, ..self }.with_step(Stage::Lock, Some(lock.requirement()))
    }

    /// Step 1: raise `RLIMIT_MEMLOCK` before locking: to unlimited with
    /// `CAP_SYS_RESOURCE`, else the soft limit to the hard one
    /// ([`set_memlock_limit`], [`raise_memlock_limit`]).
    #[must_use]
    pub const fn with_memlock_limit(self, requirement: Requirement) -> Hardening {
        self.with_step(Stage::MemlockLimit, Some(requirement))
    }

    /// Step 3: pre-fault `bytes` of stack ([`prefault_stack`]); 0 leaves
    /// the step out. It cannot fail. Keep `bytes` well under the calling
    /// thread's stack size.
    #[must_use]
    pub const fn with_stack_prefault(self, bytes: usize) -> Hardening {
        let step = if bytes == 0 {
            None
        } else {
            Some(Requirement::BestEffort)
        };
        Hardening {
            stack_bytes: bytes,
            ..self
        }
        .with_step(Stage::Stack, step)
    }

    /// Step 4: set IO_FLUSHER ([`set_io_flusher`]).
    #[must_use]
    pub const fn with_io_flusher(self, requirement: Requirement) -> Hardening {
        self.with_step(Stage::IoFlusher, Some(requirement))
    }

    /// Step 5: set `oom_score_adj` to `value`
    /// ([`set_oom_score_adj`](super::set_oom_score_adj)), -1000 to 1000.
    /// [`harden_swap_daemon`] rejects a value out of range before it does
    /// anything.
    #[must_use]
    pub const fn with_oom_score_adj(self, value: i32, requirement: Requirement) -> Hardening {
        Hardening {
            oom_score_adj: value,
            ..self
        }
        .with_step(Stage::OomScoreAdj, Some(requirement))
    }

    /// Step 6: run the calling thread, and the threads it spawns
    /// afterwards, under `SCHED_FIFO` at `priority` ([`set_realtime`]).
    /// Left out by [`Hardening::SWAP_DAEMON`]; the README's recipe turns it
    /// on, because the swap-deadlock scenario stalls without it (see
    /// [`set_realtime`]). [`harden_swap_daemon`] rejects a priority outside
    /// 1..=99 before it does anything.
    #[must_use]
    pub const fn with_realtime(self, priority: u8, requirement: Requirement) -> Hardening {
        Hardening {
            realtime_priority: priority,
            ..self
        }
        .with_step(Stage::Realtime, Some(requirement))
    }

    /// Leaves `stage` out: [`harden_swap_daemon`] reports it as
    /// [`Outcome::Skipped`]. A later `with_*` for it turns it on again.
    #[must_use]
    pub const fn without(self, stage: Stage) -> Hardening {
        self.with_step(stage, None)
    }

    /// Whether `stage` runs, and if so whether it is required.
    #[must_use]
    pub const fn requirement(&self, stage: Stage) -> Option<Requirement> {
        self.steps[stage.index()]
    }

    /// The locking policy of step 2.
    #[must_use]
    pub const fn lock_config(&self) -> Config {
        self.lock
    }

    /// The bytes of stack step 3 pre-faults (0 when it is left out).
    #[must_use]
    pub const fn stack_prefault_bytes(&self) -> usize {
        match self.requirement(Stage::Stack) {
            Some(_) => self.stack_bytes,
            None => 0,
        }
    }

    /// The value step 5 writes to `oom_score_adj`, when it runs.
    #[must_use]
    pub const fn oom_score_adj_value(&self) -> i32 {
        self.oom_score_adj
    }

    /// The `SCHED_FIFO` priority step 6 sets, when it runs.
    #[must_use]
    pub const fn realtime_priority(&self) -> u8 {
        self.realtime_priority
    }
}

impl Default for Hardening {
    /// [`Hardening::SWAP_DAEMON`].
    fn default() -> Hardening {
        Hardening::SWAP_DAEMON
    }
}

/// What [`harden_swap_daemon`] did, step by step. A fixed-size `Copy`
/// value: no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Report {
    /// Step 1: the `RLIMIT_MEMLOCK` in force afterwards, as read back.
    pub memlock_limit: Outcome<Limit>,
    /// Step 2: the flags that took effect.
    pub lock: Outcome<Flags>,
    /// Step 3: the bytes of stack pre-faulted.
    pub stack: Outcome<usize>,
    /// Step 4: IO_FLUSHER is set on the calling thread (read back).
    pub io_flusher: Outcome<()>,
    /// Step 5: the `oom_score_adj` now in force, as read back.
    pub oom_score_adj: Outcome<i32>,
    /// Step 6: the real-time priority the calling thread now runs at, as
    /// `sched_getparam(2)` reads it (capped at `RLIMIT_RTPRIO` without
    /// `CAP_SYS_NICE`).
    pub realtime: Outcome<u8>,
    /// `VmLck` after the last step, in bytes, when memory was locked and
    /// `/proc` could be read.
    pub locked_bytes: Option<u64>,
}

impl Report {
    const fn new() -> Report {
        Report {
            memlock_limit: Outcome::NotReached,
            lock: Outcome::NotReached,
            stack: Outcome::NotReached,
            io_flusher: Outcome::NotReached,
            oom_score_adj: Outcome::NotReached,
            realtime: Outcome::NotReached,
            locked_bytes: None,
        }
    }

    /// What `stage` did, without its payload.
    pub fn step(&self, stage: Stage) -> Outcome<()> {
        match stage {
            Stage::MemlockLimit => self.memlock_limit.map(drop),
            Stage::Lock => self.lock.map(drop),
            Stage::Stack => self.stack.map(drop),
            Stage::IoFlusher => self.io_flusher.map(drop),
            Stage::OomScoreAdj => self.oom_score_adj.map(drop),
            Stage::Realtime => self.realtime.map(drop),
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
            .all(|s| matches!(self.step(s), Outcome::Done(()) | Outcome::Skipped))
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
                Outcome::NotReached => f.write_str("not reached")?,
                Outcome::Skipped => f.write_str("skipped")?,
                Outcome::Done(()) => f.write_str("done")?,
                Outcome::Failed(e) => write!(f, "failed: {e}")?,
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
    /// [`Outcome::NotReached`].
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

/// `value` if `read_back` confirms it, else [`Error::NotHonoured`] (or the
/// read-back's own error): a call that said yes without effect is a
/// failure, never `Done`.
fn honoured<T: PartialEq>(value: T, read_back: Result<T, Error>) -> Result<T, Error> {
    match read_back {
        Ok(now) if now == value => Ok(value),
        Ok(_) => Err(Error::NotHonoured),
        Err(e) => Err(e),
    }
}

/// Runs one step by its requirement: `Skipped` when left out, the error
/// itself when a required step fails.
fn step<T>(
    requirement: Option<Requirement>,
    act: impl FnOnce() -> Result<T, Error>,
) -> Result<Outcome<T>, Error> {
    match requirement {
        None => Ok(Outcome::Skipped),
        Some(requirement) => match (act(), requirement) {
            (Ok(value), _) => Ok(Outcome::Done(value)),
            (Err(e), Requirement::Required) => Err(e),
            (Err(e), Requirement::BestEffort) => Ok(Outcome::Failed(e)),
        },
    }
}

/// Step 2's read-back: with `CURRENT`, `VmLck` must show locked memory,
/// and the mapping that holds this stack frame must be marked locked (`lo`
/// in its `VmFlags`, `/proc/self/smaps`). Without `/proc` (early boot)
/// there is nothing to read: `mlockall(2)`'s answer stands.
fn lock_read_back(flags: Flags) -> Result<(), Error> {
    if !flags.contains(Flags::CURRENT) {
        return Ok(());
    }
    match status::status() {
        Ok(s) if s.locked_bytes().unwrap_or(0) == 0 => return Err(Error::NotHonoured),
        Ok(_) => {}
        Err(Error::ProcUnavailable) => return Ok(()),
        Err(e) => return Err(e),
    }
    match stack_mapping_locked()? {
        Some(false) => Err(Error::NotHonoured),
        _ => Ok(()),
    }
}

/// Whether the mapping that holds this stack frame has `lo` among its
/// `VmFlags` in `/proc/self/smaps`; `None` if no mapping holds it (an
/// emulator's own view).
fn stack_mapping_locked() -> Result<Option<bool>, Error> {
    let frame = 0u8;
    let here = core::hint::black_box(&frame) as *const u8 as u64;
    let fd = crate::procfs::open_proc(c"/proc/self/smaps", crate::sys::OpenMode::Read)?;
    let (mut inside, mut locked) = (false, None);
    crate::procfs::for_each_line(&fd, |line| {
        let hex = |text: &[u8]| u64::from_str_radix(core::str::from_utf8(text).ok()?, 16).ok();
        let range = line.split(|&b| b == b' ').next().unwrap_or_default();
        if let Some((start, end)) = range
            .iter()
            .position(|&b| b == b'-')
            .and_then(|dash| Some((hex(range.get(..dash)?)?, hex(range.get(dash + 1..)?)?)))
        {
            inside = (start..end).contains(&here);
        } else if let (true, Some(names)) = (inside, line.strip_prefix(b"VmFlags:")) {
            locked = Some(names.split(|&b| b == b' ').any(|name| name == b"lo"));
            return true;
        }
        false
    })?;
    Ok(locked)
}

/// Step 1: `RLIMIT_MEMLOCK` to unlimited, or, without `CAP_SYS_RESOURCE`
/// (which raising the hard limit needs), the soft limit up to the hard one.
fn raise_limit() -> Result<Limit, Error> {
    let unlimited = Limit {
        soft: None,
        hard: None,
    };
    match set_memlock_limit(unlimited) {
        Ok(_) => Ok(unlimited),
        Err(Error::NeedsCapSysResource) => raise_memlock_limit(),
        Err(e) => Err(e),
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
/// 5. optionally, [`set_oom_score_adj`](super::set_oom_score_adj) (lowering
///    it needs `CAP_SYS_RESOURCE`);
/// 6. optionally, [`set_realtime`] (`SCHED_FIFO`; `CAP_SYS_NICE` or
///    `RLIMIT_RTPRIO`), on the calling thread and every thread it spawns
///    afterwards.
///
/// After each step the recipe reads the setting back from the kernel
/// (`prlimit64`, `VmLck` with `MCL_CURRENT`, `PR_GET_IO_FLUSHER`,
/// `/proc/self/oom_score_adj`, `sched_getscheduler`/`sched_getparam`): a
/// step whose call answered success without effect (a seccomp filter that
/// fakes it, an emulator) is [`Error::NotHonoured`], never `Done`. Without
/// `CAP_SYS_NICE` the real-time priority is capped at the soft
/// `RLIMIT_RTPRIO`.
///
/// Call it early on the main thread, before spawning the threads that
/// serve I/O: IO_FLUSHER and the real-time policy are per thread, and only
/// threads spawned afterwards inherit them. It allocates nothing.
///
/// ```no_run
/// use mlock::daemon::{harden_swap_daemon, Hardening};
/// use mlock::{Config, Requirement};
///
/// let recipe = Hardening::new(Config::SWAP_DAEMON.with_requirement(Requirement::Required))
///     .with_oom_score_adj(-1000, Requirement::BestEffort);
/// let report = harden_swap_daemon(&recipe)?;
/// for (stage, error) in report.failures() {
///     eprintln!("warning: {stage}: {error}");
/// }
/// # Ok::<(), mlock::daemon::HardenError>(())
/// ```
///
/// # Errors
/// A [`HardenError`] naming the step, when a step with
/// [`Requirement::Required`] fails (for the lock, the error [`lock_with`]
/// returns). Nothing after that step runs. Best-effort failures are in the
/// [`Report`].
///
/// An invalid [`Hardening`] (flags that [`Flags::is_valid`] rejects, an
/// `oom_score_adj` outside -1000..=1000, a real-time priority outside
/// 1..=99, for a step that runs) is a [`HardenError`] with
/// [`Error::InvalidArgument`] before any step runs, whatever the policy.
///
/// # References
/// - [`mlockall(2)`](https://man7.org/linux/man-pages/man2/mlockall.2.html)
/// - [`PR_SET_IO_FLUSHER(2const)`](https://man7.org/linux/man-pages/man2/PR_SET_IO_FLUSHER.2const.html)
/// - [`proc_pid_oom_score_adj(5)`](https://man7.org/linux/man-pages/man5/proc_pid_oom_score_adj.5.html)
/// - [`getrlimit(2)`](https://man7.org/linux/man-pages/man2/getrlimit.2.html)
/// - [`sched_setscheduler(2)`](https://man7.org/linux/man-pages/man2/sched_setscheduler.2.html)
/// - [`sched_getparam(2)`](https://man7.org/linux/man-pages/man2/sched_getparam.2.html)
/// - [`prlimit(2)`](https://man7.org/linux/man-pages/man2/prlimit.2.html)
///
/// The guide below is `docs/swap-daemon.md` of the repository.
///
#[doc = include_str!("../../docs/swap-daemon.md")]
pub fn harden_swap_daemon(recipe: &Hardening) -> Result<Report, HardenError> {
    let mut report = Report::new();
    let fail = |stage, error, report| {
        Err(HardenError {
            stage,
            error,
            report,
        })
    };
    let runs = |stage| recipe.requirement(stage).is_some();

    // A bad recipe is a bug in the caller: refuse it before changing
    // anything, whatever the policy.
    if runs(Stage::Lock) && !recipe.lock.flags().is_valid() {
        return fail(Stage::Lock, Error::InvalidArgument, report);
    }
    if runs(Stage::OomScoreAdj)
        && !(oom::OOM_SCORE_ADJ_MIN..=oom::OOM_SCORE_ADJ_MAX).contains(&recipe.oom_score_adj)
    {
        return fail(Stage::OomScoreAdj, Error::InvalidArgument, report);
    }
    if runs(Stage::Realtime) && !(1..=99).contains(&recipe.realtime_priority) {
        return fail(Stage::Realtime, Error::InvalidArgument, report);
    }

    // Runs a step by the recipe's requirement for it; a required step that
    // fails ends the recipe with what ran before it.
    macro_rules! run {
        ($stage:expr, $act:expr) => {
            match step(recipe.requirement($stage), $act) {
                Ok(outcome) => outcome,
                Err(e) => return fail($stage, e, report),
            }
        };
    }

    // 1. Room to lock in. With CAP_IPC_LOCK the limit does not bind
    // mlockall, but it still does for a child that loses the capability.
    report.memlock_limit = run!(Stage::MemlockLimit, || {
        let limit = raise_limit()?;
        honoured(limit, memlock_limit())
    });

    // 2. Lock: `lock_with` decides required versus best-effort itself, by
    // the recipe's requirement for the step.
    report.lock = match recipe.requirement(Stage::Lock) {
        None => Outcome::Skipped,
        Some(requirement) => match lock_with(&recipe.lock.with_requirement(requirement)) {
            Ok(Outcome::Done(flags)) => match (lock_read_back(flags), requirement) {
                (Ok(()), _) => Outcome::Done(flags),
                (Err(e), Requirement::Required) => return fail(Stage::Lock, e, report),
                (Err(e), Requirement::BestEffort) => Outcome::Failed(e),
            },
            Ok(outcome) => outcome,
            Err(e) => return fail(Stage::Lock, e, report),
        },
    };

    // 3. Stack pages, now rather than at the first deep call under
    // pressure. Useful even unlocked: they are at least resident now.
    let bytes = recipe.stack_bytes;
    report.stack = run!(Stage::Stack, || {
        prefault_stack(bytes);
        Ok(bytes)
    });

    // 4. No reclaim recursion into I/O from this thread's allocations.
    report.io_flusher = run!(Stage::IoFlusher, || {
        set_io_flusher()?;
        honoured(true, is_io_flusher()).map(drop)
    });

    // 5. Keep the OOM killer away.
    let value = recipe.oom_score_adj;
    report.oom_score_adj = run!(Stage::OomScoreAdj, || {
        oom::set_oom_score_adj(value)?;
        honoured(value, oom::oom_score_adj())
    });

    // 6. A share of the memory reserve, and the CPU, when memory runs out;
    // at most the priority RLIMIT_RTPRIO allows without CAP_SYS_NICE.
    let wanted = recipe.realtime_priority;
    report.realtime = run!(Stage::Realtime, || {
        let priority = match realtime_ceiling()? {
            ceiling @ 1.. => wanted.min(ceiling),
            _ => wanted, // refused: the error names the fix
        };
        set_realtime(priority)?;
        honoured(Some(priority), fifo_priority()).map(|_| priority)
    });

    if report.lock.is_done() {
        report.locked_bytes = status::status().ok().and_then(|s| s.locked_bytes());
    }
    Ok(report)
}
