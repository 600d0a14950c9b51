//! Policy: what to lock, and what to do when the kernel says no
//! ([`Config`], [`lock_with`]), and the crate's one way to say required or
//! best-effort ([`Requirement`]) and what a best-effort action did
//! ([`Outcome`]).

use crate::{lock_all, Error, Flags};

/// How to lock the process: the flags, and what to do when locking fails.
///
/// Const-constructible, so a daemon's policy can live in a `static`:
///
/// ```
/// use mlock::{Config, Flags, Requirement};
///
/// static POLICY: Config =
///     Config::new(Flags::CURRENT.union(Flags::FUTURE)).with_requirement(Requirement::Required);
/// assert_eq!(POLICY.requirement(), Requirement::Required);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Config {
    flags: Flags,
    requirement: Requirement,
    retry_without_onfault: bool,
}

impl Config {
    /// `CURRENT | FUTURE`, best-effort, retrying without `ONFAULT` (which
    /// does not apply to these flags). The setting a swap daemon wants, with
    /// `.with_requirement(Requirement::Required)` if it must not run
    /// unlocked.
    pub const SWAP_DAEMON: Config = Config::new(Flags::CURRENT.union(Flags::FUTURE));

    /// A best-effort policy for `flags` that retries without `ONFAULT` when
    /// the kernel rejects it.
    #[must_use]
    pub const fn new(flags: Flags) -> Config {
        Config {
            flags,
            requirement: Requirement::BestEffort,
            retry_without_onfault: true,
        }
    }

    /// With [`Requirement::Required`], [`lock_with`] returns the error when
    /// locking fails; with [`Requirement::BestEffort`] (the default) it
    /// answers [`Outcome::Failed`] and the program runs on unlocked.
    #[must_use]
    pub const fn with_requirement(self, requirement: Requirement) -> Config {
        Config {
            requirement,
            ..self
        }
    }

    /// With `true` (the default), when the kernel answers `EINVAL` to flags
    /// holding `ONFAULT` (Linux before 4.4 does not know `MCL_ONFAULT`),
    /// [`lock_with`] tries again without it; [`Outcome::Done`] then
    /// reports the flags that took effect.
    #[must_use]
    pub const fn with_onfault_retry(self, retry: bool) -> Config {
        Config {
            retry_without_onfault: retry,
            ..self
        }
    }

    /// The flags to lock with.
    #[must_use]
    pub const fn flags(&self) -> Flags {
        self.flags
    }

    /// Whether a failure to lock is an error ([`Requirement::Required`])
    /// or an [`Outcome::Failed`].
    #[must_use]
    pub const fn requirement(&self) -> Requirement {
        self.requirement
    }

    /// Whether `EINVAL` with `ONFAULT` is retried without it.
    #[must_use]
    pub const fn retries_without_onfault(&self) -> bool {
        self.retry_without_onfault
    }
}

impl Default for Config {
    /// [`Config::SWAP_DAEMON`].
    fn default() -> Config {
        Config::SWAP_DAEMON
    }
}

/// Whether a failure stops the program's plan or is only reported: the
/// one way the crate says "required" or "best-effort", for [`Config`] and
/// for every step of the swap-daemon recipe
/// ([`daemon::Hardening`](crate::daemon::Hardening)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Requirement {
    /// Try it; on failure report the error in an [`Outcome::Failed`] and
    /// go on.
    BestEffort,
    /// Try it; on failure return the error.
    Required,
}

/// What a best-effort action did: the answer of [`lock_with`], and of each
/// step in the swap-daemon recipe's
/// [`daemon::Report`](crate::daemon::Report). (A required action that fails
/// returns its error instead.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use]
pub enum Outcome<T> {
    /// Done; the value says what took effect.
    Done(T),
    /// Failed, and the action was best-effort: the program runs on
    /// without it. [`Error::Unsupported`] when the kernel or the target
    /// does not offer it.
    Failed(Error),
    /// Not run: the plan leaves it out. (Only recipe steps.)
    Skipped,
    /// Not run: an earlier required step failed. (Only recipe steps.)
    NotReached,
}

impl<T> Outcome<T> {
    /// Whether it ran and succeeded.
    #[must_use]
    pub const fn is_done(&self) -> bool {
        matches!(self, Outcome::Done(_))
    }

    /// The error of a failed action.
    #[must_use]
    pub const fn error(&self) -> Option<Error> {
        match self {
            Outcome::Failed(e) => Some(*e),
            _ => None,
        }
    }

    /// Maps the value of a [`Done`](Outcome::Done) with `f`, as
    /// [`Option::map`]; the other cases stay as they are. `.map(drop)`
    /// keeps only which case this is.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Done(value) => Outcome::Done(f(value)),
            Outcome::Failed(e) => Outcome::Failed(e),
            Outcome::Skipped => Outcome::Skipped,
            Outcome::NotReached => Outcome::NotReached,
        }
    }
}

/// Locks the process by `config`: [`lock_all`] with its flags, one retry
/// without `ONFAULT` if allowed, then the required-versus-best-effort
/// decision. Answers [`Outcome::Done`] with the flags that took effect (the
/// configured ones, less `ONFAULT` if the kernel rejected it and the policy
/// allowed a retry), or, best-effort, [`Outcome::Failed`]; never
/// `Skipped` or `NotReached`.
///
/// ```no_run
/// use mlock::{lock_with, Config, Outcome};
///
/// match lock_with(&Config::SWAP_DAEMON)? {
///     Outcome::Done(flags) => println!("locked with {flags:?}: {} bytes", mlock::locked_bytes()?),
///     Outcome::Failed(e) => eprintln!("running unlocked: {e}"),
///     _ => unreachable!("lock_with answers Done or Failed"),
/// }
/// # Ok::<(), mlock::Error>(())
/// ```
///
/// # Errors
/// - [`Error::InvalidArgument`] for invalid flags (see
///   [`Flags::is_valid`]), whatever the policy: that is a bug, not an
///   environment to tolerate.
/// - With [`Requirement::Required`], the error from `mlockall(2)`, as
///   [`lock_all`] describes.
///
/// # References
/// - [`mlockall(2)`](https://man7.org/linux/man-pages/man2/mlockall.2.html)
pub fn lock_with(config: &Config) -> Result<Outcome<Flags>, Error> {
    let mut flags = config.flags;
    if !flags.is_valid() {
        return Err(Error::InvalidArgument);
    }
    let mut result = lock_all(flags);
    if result == Err(Error::InvalidArgument)
        && config.retry_without_onfault
        && flags.contains(Flags::ONFAULT)
    {
        flags = flags.difference(Flags::ONFAULT);
        result = lock_all(flags);
    }
    match (result, config.requirement) {
        (Ok(()), _) => Ok(Outcome::Done(flags)),
        (Err(e), Requirement::Required) => Err(e),
        (Err(e), Requirement::BestEffort) => Ok(Outcome::Failed(e)),
    }
}
