//! Policy: what to lock, and what to do when the kernel says no.

use crate::{lock_all, status, Error, Flags};

/// How to lock the process: the flags, and what to do when locking fails.
///
/// Const-constructible, so a daemon's policy can live in a `static`:
///
/// ```
/// use mlock::{Config, Flags};
///
/// static POLICY: Config = Config::new(Flags::CURRENT.union(Flags::FUTURE)).required(true);
/// assert!(POLICY.is_required());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Config {
    flags: Flags,
    required: bool,
    retry_without_onfault: bool,
}

impl Config {
    /// `CURRENT | FUTURE`, best-effort, retrying without `ONFAULT` (which
    /// does not apply to these flags). The setting a swap daemon wants, with
    /// `.required(true)` if it must not run unlocked.
    pub const SWAP_DAEMON: Config = Config::new(Flags::CURRENT.union(Flags::FUTURE));

    /// A best-effort policy for `flags` that retries without `ONFAULT` when
    /// the kernel rejects it.
    #[must_use]
    pub const fn new(flags: Flags) -> Config {
        Config {
            flags,
            required: false,
            retry_without_onfault: true,
        }
    }

    /// With `true`, [`lock_with`] returns the error when locking fails; with
    /// `false` (best-effort, the default) it reports
    /// [`Outcome::Failed`] and the program runs on unlocked.
    #[must_use]
    pub const fn required(self, required: bool) -> Config {
        Config { required, ..self }
    }

    /// With `true` (the default), when the kernel answers `EINVAL` to flags
    /// holding `ONFAULT` (Linux before 4.4 does not know `MCL_ONFAULT`),
    /// [`lock_with`] tries again without it; [`Outcome::Locked`] then
    /// reports the flags that took effect.
    #[must_use]
    pub const fn retry_without_onfault(self, retry: bool) -> Config {
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

    /// Whether a failure to lock is an error.
    #[must_use]
    pub const fn is_required(&self) -> bool {
        self.required
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

/// What [`lock_with`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use]
pub enum Outcome {
    /// The process is locked.
    Locked {
        /// The flags that took effect: the configured ones, less `ONFAULT`
        /// if the kernel rejected it and the policy allowed a retry.
        flags: Flags,
        /// `VmLck` after the call, in bytes, when `/proc` could be read.
        bytes: Option<u64>,
    },
    /// Locking failed, and the policy is best-effort: the program runs on,
    /// unlocked.
    Failed(Error),
    /// This target, or this kernel, cannot lock memory at all (`ENOSYS`),
    /// and the policy is best-effort.
    Unsupported,
}

impl Outcome {
    /// Whether the process was locked.
    #[must_use]
    pub const fn is_locked(&self) -> bool {
        matches!(self, Outcome::Locked { .. })
    }
}

/// Locks the process by `config`: [`lock_all`] with its flags, one retry
/// without `ONFAULT` if allowed, then the required-versus-best-effort
/// decision.
///
/// ```no_run
/// use mlock::{lock_with, Config, Outcome};
///
/// match lock_with(&Config::SWAP_DAEMON)? {
///     Outcome::Locked { bytes, .. } => println!("locked {bytes:?} bytes"),
///     Outcome::Failed(e) => eprintln!("running unlocked: {e}"),
///     Outcome::Unsupported => eprintln!("no memory locking here"),
/// }
/// # Ok::<(), mlock::Error>(())
/// ```
///
/// # Errors
/// - [`Error::InvalidArgument`] for invalid flags (see
///   [`Flags::is_valid`]), whatever the policy: that is a bug, not an
///   environment to tolerate.
/// - With `required`, the error from `mlockall(2)`, as [`lock_all`]
///   describes.
///
/// # References
/// - [`mlockall(2)`](https://man7.org/linux/man-pages/man2/mlockall.2.html)
pub fn lock_with(config: &Config) -> Result<Outcome, Error> {
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
    match result {
        Ok(()) => Ok(Outcome::Locked {
            flags,
            bytes: status::status().ok().and_then(|s| s.locked_bytes()),
        }),
        Err(e) if config.required => Err(e),
        Err(Error::Unsupported) => Ok(Outcome::Unsupported),
        Err(e) => Ok(Outcome::Failed(e)),
    }
}
